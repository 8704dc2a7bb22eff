//! Savepoints against LocalStack (DynamoDB, S3): a stage run in-process over part of its input,
//! saved, restored into another stage name in another table, and run over the rest gives exactly
//! the results of an uninterrupted run; mismatched or damaged savepoints and occupied targets are
//! refused.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack.

#[path = "../../lambda/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{event, purchases, revenue, Row, TestStage};
use shardflow_engine::ResultId;
use shardflow_lambda::{Stage, StageConfig};
use shardflow_lifecycle::{
    create_savepoint, restore_savepoint, stage_checkpoints, stage_has_state, LifecycleError, RestoreExpectations,
    RestoreOptions, S3Location, SavepointOptions, SavepointReport, MANIFEST_FILE,
};
use shardflow_stage::JsonDecoder;
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink};

const SHARD_A: &str = "shardId-000000000000";
const SHARD_B: &str = "shardId-000000000001";

/// A revenue stage named `name` over `table`.
fn stage_named(name: &str, client: &aws_sdk_dynamodb::Client, table: &str) -> TestStage {
    Stage::new(
        name,
        revenue(None),
        JsonDecoder::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client.clone(),
        table,
        StageConfig::default(),
    )
    .unwrap()
}

fn ids(stage: &TestStage) -> BTreeSet<ResultId> {
    stage.sink().distinct().into_iter().map(|o| o.id).collect()
}

fn values(stages: &[&TestStage]) -> Vec<Row> {
    let mut v: Vec<Row> = stages
        .iter()
        .flat_map(|s| s.sink().distinct())
        .map(|o| o.value)
        .collect();
    v.sort();
    v
}

async fn save(stage: &str, table: &str, s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> SavepointReport {
    let dynamodb = shardflow_testkit::dynamodb();
    create_savepoint(
        &dynamodb,
        s3,
        &SavepointOptions::new(stage, table, S3Location::new(bucket, prefix)),
    )
    .await
    .unwrap()
}

/// The first part of the input: shard A's purchases 0..70 in two batches, shard B's 200..255.
async fn run_first_part(stage: &TestStage) {
    stage.handle(event(SHARD_A, &purchases(0..60))).await.unwrap();
    stage.handle(event(SHARD_B, &purchases(200..255))).await.unwrap();
    stage.handle(event(SHARD_A, &purchases(60..70))).await.unwrap();
}

#[tokio::test]
async fn a_restored_stage_continues_exactly_where_the_savepoint_stopped() {
    let (_, bucket) = shardflow_testkit::bucket("sp-exact").await;
    let s3 = shardflow_testkit::s3();
    // The uninterrupted run.
    let (client, table_u) = shardflow_testkit::state_table("sp-uninterrupted").await;
    let uninterrupted = stage_named("revenue", &client, &table_u);
    run_first_part(&uninterrupted).await;
    uninterrupted.handle(event(SHARD_A, &purchases(70..130))).await.unwrap();
    uninterrupted
        .handle(event(SHARD_B, &purchases(255..330)))
        .await
        .unwrap();

    // The same input, saved after the first part and continued on another stage.
    let (client, table_blue) = shardflow_testkit::state_table("sp-blue").await;
    let blue = stage_named("revenue", &client, &table_blue);
    run_first_part(&blue).await;
    let report = save("revenue", &table_blue, &s3, &bucket, "sp/1").await;
    let m = &report.manifest;
    assert_eq!(
        (m.pipeline.as_str(), m.max_key_groups, m.stage.as_str()),
        ("revenue", 128, "revenue")
    );
    assert!(m.consistency.single_cut, "nothing ran during the read");
    let shards: Vec<(&str, Option<&str>, u64)> = m
        .shards
        .iter()
        .map(|s| (s.shard.as_str(), s.sequence_number.as_deref(), s.version))
        .collect();
    assert_eq!(
        shards,
        vec![
            (SHARD_A, Some("496500000000000000000069"), 2),
            (SHARD_B, Some("496500000000000000000254"), 1)
        ]
    );
    assert!(m
        .shards
        .iter()
        .all(|s| s.key_groups > 0 && s.state_bytes > 0 && s.size > 0));
    // Shard A's watermark is the one of an engine over the same records.
    let p = revenue(None);
    let mut e = p.engine();
    let part = e.partition("x");
    for i in 0..70u64 {
        e.process(part, i, 0, serde_json::from_slice(&common::purchase(i)).unwrap());
    }
    assert_eq!(m.shards[0].watermark, e.watermark());
    assert!(e.watermark() > 1_700_000_000_000);
    // Each shard's processing time is its last record's arrival (record i arrives at
    // 1,700,000,000.5 + i s); a restored mapping starts a margin before the earliest.
    let arrivals: Vec<i64> = m.shards.iter().map(|s| s.processing_time).collect();
    assert_eq!(arrivals, vec![1_700_000_069_500, 1_700_000_254_500]);
    assert_eq!(
        m.resume_at_ms(),
        Some(1_700_000_069_500 - shardflow_lifecycle::RESUME_MARGIN_MS)
    );

    let (client_green, table_green) = shardflow_testkit::state_table("sp-green").await;
    let mut options = RestoreOptions::new(report.location.clone(), "revenue-green", &table_green);
    options.expect = RestoreExpectations {
        pipeline: Some("revenue".into()),
        pipeline_version: None,
        max_key_groups: Some(128),
    };
    let restored = restore_savepoint(&client_green, &s3, &options).await.unwrap();
    assert_eq!(restored.manifest.shards.len(), 2);
    let seeded = stage_checkpoints(&client_green, &table_green, "revenue-green")
        .await
        .unwrap();
    assert_eq!(seeded.len(), 2);
    assert!(seeded.iter().all(|c| c.version == 1), "{seeded:?}");
    assert_eq!(seeded[0].sequence_number.as_deref(), Some("496500000000000000000069"));

    // The green stage's mapping starts before the savepoint: Lambda redelivers records the
    // savepoint covers, with other batch boundaries.
    let green = stage_named("revenue-green", &client_green, &table_green);
    green.handle(event(SHARD_A, &purchases(40..100))).await.unwrap();
    green.handle(event(SHARD_B, &purchases(230..330))).await.unwrap();
    green.handle(event(SHARD_A, &purchases(100..130))).await.unwrap();

    // No result twice, none lost: blue's and green's results are exactly the uninterrupted ones,
    // ids included.
    let (blue_ids, green_ids) = (ids(&blue), ids(&green));
    assert!(!green_ids.is_empty() && !blue_ids.is_empty());
    assert!(blue_ids.is_disjoint(&green_ids), "a result emitted by both stages");
    let both: BTreeSet<ResultId> = blue_ids.union(&green_ids).copied().collect();
    assert_eq!(both, ids(&uninterrupted));
    assert_eq!(values(&[&blue, &green]), values(&[&uninterrupted]));
    let mut want = common::expected(0..130);
    want.extend(common::expected(200..330));
    want.sort();
    assert_eq!(values(&[&blue, &green]), want);
}

#[tokio::test]
async fn a_savepoint_of_a_running_stage_restores_exactly() {
    let (_, bucket) = shardflow_testkit::bucket("sp-running").await;
    let s3 = shardflow_testkit::s3();
    let (client, table) = shardflow_testkit::state_table("sp-running").await;
    let blue = Arc::new(stage_named("revenue", &client, &table));
    blue.handle(event(SHARD_A, &purchases(0..10))).await.unwrap();
    // Blue keeps committing small batches while the savepoint reads it.
    let running = {
        let blue = blue.clone();
        tokio::spawn(async move {
            for start in (10..400).step_by(5) {
                blue.handle(event(SHARD_A, &purchases(start..start + 5))).await.unwrap();
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let dynamodb = shardflow_testkit::dynamodb();
    let mut options = SavepointOptions::new("revenue", &table, S3Location::new(&bucket, "running"));
    options.max_attempts = 50;
    let report = create_savepoint(&dynamodb, &s3, &options).await.unwrap();
    running.await.unwrap();
    let entry = &report.manifest.shards[0];
    let position: u64 = entry.sequence_number.as_deref().unwrap()[4..].parse().unwrap();
    assert!(position > 10 && position < 399, "saved mid-run, at {position}");

    let (client_green, table_green) = shardflow_testkit::state_table("sp-running-green").await;
    restore_savepoint(
        &client_green,
        &s3,
        &RestoreOptions::new(report.location.clone(), "green", &table_green),
    )
    .await
    .unwrap();
    let green = stage_named("green", &client_green, &table_green);
    green
        .handle(event(SHARD_A, &purchases(position.saturating_sub(17)..404)))
        .await
        .unwrap();
    // Green emits exactly what an engine emits after the savepoint's position.
    let p = revenue(None);
    let mut e = p.engine();
    let part = e.partition("x");
    for i in 0..404u64 {
        e.process(part, i, 0, serde_json::from_slice(&common::purchase(i)).unwrap());
        if i == position {
            e.drain_output();
        }
    }
    let mut after: Vec<Row> = e.drain_output().into_iter().map(|o| o.value).collect();
    after.sort();
    assert!(!after.is_empty());
    assert_eq!(values(&[&green]), after);
    eprintln!(
        "saved at {position} while running; {} shard(s) read again",
        report.reread_shards
    );
}

#[tokio::test]
async fn restores_refuse_mismatches_damage_and_occupied_stages() {
    let (_, bucket) = shardflow_testkit::bucket("sp-refuse").await;
    let s3 = shardflow_testkit::s3();
    let (client, table) = shardflow_testkit::state_table("sp-refuse").await;
    let blue = stage_named("revenue", &client, &table);

    // Nothing to save yet.
    let err = create_savepoint(
        &client,
        &s3,
        &SavepointOptions::new("revenue", &table, S3Location::new(&bucket, "empty")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LifecycleError::NoState { .. }), "{err}");

    run_first_part(&blue).await;
    let report = save("revenue", &table, &s3, &bucket, "good").await;
    // A prefix that holds a savepoint is not written over.
    let err = create_savepoint(
        &client,
        &s3,
        &SavepointOptions::new("revenue", &table, S3Location::new(&bucket, "good")),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("already holds a savepoint"), "{err}");

    let (target, table2) = shardflow_testkit::state_table("sp-refuse-target").await;
    let restore = |expect: RestoreExpectations, stage: &str, force: bool| {
        let mut o = RestoreOptions::new(report.location.clone(), stage, &table2);
        o.expect = expect;
        o.force = force;
        o
    };
    let refused = |e: LifecycleError| match e {
        LifecycleError::Refused { reason, .. } => reason,
        other => panic!("not refused: {other}"),
    };
    let wrong_groups = RestoreExpectations {
        max_key_groups: Some(64),
        ..Default::default()
    };
    let e = restore_savepoint(&target, &s3, &restore(wrong_groups, "green", false))
        .await
        .unwrap_err();
    assert!(refused(e).contains("128 key groups, expected 64"));
    let wrong_pipeline = RestoreExpectations {
        pipeline: Some("orders".into()),
        ..Default::default()
    };
    let e = restore_savepoint(&target, &s3, &restore(wrong_pipeline, "green", false))
        .await
        .unwrap_err();
    assert!(refused(e).contains("pipeline \"revenue\", expected \"orders\""));
    let wrong_version = RestoreExpectations {
        pipeline_version: Some("v2".into()),
        ..Default::default()
    };
    let e = restore_savepoint(&target, &s3, &restore(wrong_version, "green", false))
        .await
        .unwrap_err();
    assert!(refused(e).contains("pipeline version None, expected \"v2\""));
    assert_eq!(
        stage_has_state(&target, &table2, "green").await.unwrap(),
        0,
        "refusals write nothing"
    );

    // Not a savepoint, or an incomplete one.
    let mut o = restore(RestoreExpectations::default(), "green", false);
    o.savepoint = S3Location::new(&bucket, "nothing-here");
    let e = restore_savepoint(&target, &s3, &o).await.unwrap_err();
    assert!(refused(e).contains("no manifest.json"));

    // A restore, then a second one over it: refused unless forced.
    restore_savepoint(&target, &s3, &restore(RestoreExpectations::default(), "green", false))
        .await
        .unwrap();
    let e = restore_savepoint(&target, &s3, &restore(RestoreExpectations::default(), "green", false))
        .await
        .unwrap_err();
    assert!(
        matches!(e, LifecycleError::TargetNotEmpty { items, .. } if items > 2),
        "{e}"
    );
    // The forced restore replaces what green committed since.
    let green = stage_named("green", &target, &table2);
    green.handle(event(SHARD_A, &purchases(70..90))).await.unwrap();
    let forced = restore_savepoint(&target, &s3, &restore(RestoreExpectations::default(), "green", true))
        .await
        .unwrap();
    assert!(forced.items_deleted > 2);
    let seeded = stage_checkpoints(&target, &table2, "green").await.unwrap();
    assert!(seeded.iter().all(|c| c.version == 1), "{seeded:?}");
    assert_eq!(seeded[0].sequence_number.as_deref(), Some("496500000000000000000069"));

    // A damaged file is refused before anything is written.
    let file = report.location.key(&report.manifest.shards[1].file);
    s3.put_object()
        .bucket(&bucket)
        .key(&file)
        .body(b"SFCK\x01\x00garbage".to_vec().into())
        .send()
        .await
        .unwrap();
    let e = restore_savepoint(&target, &s3, &restore(RestoreExpectations::default(), "other", false))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, LifecycleError::Corrupt { reason, .. } if reason.contains("xxh3")),
        "{e}"
    );
    assert_eq!(stage_has_state(&target, &table2, "other").await.unwrap(), 0);

    // A manifest of a future format is refused with the versions in the message.
    let key = report.location.key(MANIFEST_FILE);
    let mut manifest: serde_json::Value = serde_json::from_slice(
        &s3.get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes(),
    )
    .unwrap();
    manifest["state_format_version"] = serde_json::json!(99);
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(serde_json::to_vec(&manifest).unwrap().into())
        .send()
        .await
        .unwrap();
    let e = restore_savepoint(&target, &s3, &restore(RestoreExpectations::default(), "other", false))
        .await
        .unwrap_err();
    assert!(refused(e).contains("state format version 99; this release reads versions 1 to 2"));
}
