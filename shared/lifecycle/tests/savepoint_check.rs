//! `check_savepoint` against LocalStack (DynamoDB, S3): a savepoint of a stage running the
//! revenue pipeline, checked against the same pipeline, the pipeline with a filter added before
//! its window (both restore everything), a pipeline whose window has another uid (its state
//! would be dropped: refused unless allowed), and pipelines of another name or key-group count
//! (refused), and with a damaged shard file (refused). Nothing is written to the stage.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack.

#[path = "../../lambda/tests/common/mod.rs"]
mod common;

use common::{event, purchases, revenue, Purchase, Row, TestStage};
use shardflow_engine::combine::{migrate_from, Count, Sum};
use std::sync::Arc;

use shardflow_engine::{
    Engine, Pipeline, RestoreOptions as EngineRestoreOptions, Trigger, WatermarkStrategy, Windowing,
};
use shardflow_lambda::{Stage, StageConfig};
use shardflow_lifecycle::{
    check_savepoint, check_stage, create_savepoint, restore_savepoint, stage_has_state, CheckOptions, CheckOutcome,
    CheckReport, CheckTarget, LifecycleError, LiveStage, RestoreOptions, S3Location, SavepointOptions,
};
use shardflow_stage::{JsonDecoder, MemoryDeadLetters, MemoryResultSink};
use shardflow_state_dynamodb::DynamoDbCheckpointStore;

const SHARD_A: &str = "shardId-000000000000";
const SHARD_B: &str = "shardId-000000000001";

/// The revenue pipeline of `common`, changed: named `name`, with `key_groups`, a filter before
/// the window if `filter`, and the window's uid if given.
fn variant(name: &str, key_groups: u16, filter: bool, uid: Option<&str>) -> Pipeline<Purchase, Row> {
    let keyed = Pipeline::builder(name)
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .max_key_groups(key_groups)
        .event_time(|p: &Purchase| p.ts_ms);
    let keyed = if filter {
        keyed.filter(|p: &Purchase| p.cents >= 0).key_by(|p| p.product)
    } else {
        keyed.key_by(|p| p.product)
    };
    let windowed = keyed
        .window(Windowing::tumbling(10_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
            (*k, w.start, n, c)
        });
    match uid {
        Some(uid) => windowed.uid(uid).unwrap().sink("revenue"),
        None => windowed.sink("revenue"),
    }
}

fn restored(report: &CheckReport) -> Vec<(&str, String, usize)> {
    report
        .operators
        .iter()
        .map(|o| (o.id.as_str(), o.outcome.to_string(), o.shards.len()))
        .collect()
}

/// A savepoint of a stage that ran the revenue pipeline on two shards.
struct Blue {
    client: aws_sdk_dynamodb::Client,
    table: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
    location: S3Location,
    saved: shardflow_lifecycle::SavepointReport,
}

async fn blue_savepoint(name: &str) -> Blue {
    let (_, bucket) = shardflow_testkit::bucket(name).await;
    let s3 = shardflow_testkit::s3();
    let (client, table) = shardflow_testkit::state_table(name).await;
    let blue: TestStage = Stage::new(
        "revenue",
        revenue(None),
        JsonDecoder::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client.clone(),
        &table,
        StageConfig::default(),
    )
    .unwrap();
    blue.handle(event(SHARD_A, &purchases(0..60))).await.unwrap();
    blue.handle(event(SHARD_B, &purchases(200..255))).await.unwrap();
    let location = S3Location::new(&bucket, "sp/1");
    let saved = create_savepoint(
        &client,
        &s3,
        &SavepointOptions::new("revenue", &table, location.clone()),
    )
    .await
    .unwrap();
    Blue {
        client,
        table,
        s3,
        bucket,
        location,
        saved,
    }
}

#[tokio::test]
async fn checks_report_per_operator_and_refuse_what_would_lose_state() {
    let Blue {
        s3,
        bucket,
        location,
        saved,
        ..
    } = blue_savepoint("sp-check").await;
    let strict = CheckOptions::default();
    let check = |target: CheckTarget, options: CheckOptions| {
        let s3 = s3.clone();
        let location = location.clone();
        async move { check_savepoint(&s3, &location, &target, options).await.unwrap() }
    };

    // (1) The same pipeline: everything restored.
    let same = check(CheckTarget::new("revenue", revenue(None)), strict).await;
    assert!(same.passed(), "{same}");
    assert!(same.checks.iter().all(|c| c.ok), "{same}");
    assert_eq!(same.shards, 2);
    assert_eq!(
        restored(&same),
        vec![("window_aggregate-0", "restored from window_aggregate-0".to_owned(), 2)]
    );
    same.ensure_passed().unwrap();
    let json = serde_json::to_value(&same).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["operators"][0]["outcome"], "restored");
    assert_eq!(json["operators"][0]["from"], "window_aggregate-0");

    // (2) A filter added before the window: its default id does not shift.
    let filtered = check(CheckTarget::new("revenue", variant("revenue", 128, true, None)), strict).await;
    assert!(filtered.passed(), "{filtered}");
    assert_eq!(restored(&filtered), restored(&same));

    // (3) The window under another uid: its state would be dropped, the new one starts empty.
    let renamed = || CheckTarget::new("revenue", variant("revenue", 128, false, Some("revenue-window")));
    let refused = check(renamed(), strict).await;
    assert!(!refused.passed(), "{refused}");
    assert_eq!(
        restored(&refused),
        vec![
            ("revenue-window", "starts empty".to_owned(), 2),
            ("window_aggregate-0", "dropped".to_owned(), 2),
        ]
    );
    assert_eq!(refused.ids(|o| *o == CheckOutcome::Dropped), ["window_aggregate-0"]);
    let err = refused.ensure_passed().unwrap_err();
    assert!(matches!(err, LifecycleError::CheckFailed { .. }), "{err}");
    assert!(
        err.to_string().contains("\"window_aggregate-0\"] would be dropped"),
        "{err}"
    );
    let table = refused.render_table();
    assert!(
        table.contains("dropped") && table.contains("starts empty") && table.contains("FAILED"),
        "{table}"
    );
    let allowed = check(
        renamed(),
        CheckOptions {
            allow_dropped_state: true,
            ..strict
        },
    )
    .await;
    assert!(allowed.passed(), "{allowed}");
    assert_eq!(restored(&allowed), restored(&refused));

    // (4) Another pipeline name or key-group count: refused, no operator restored.
    let other_name = check(CheckTarget::new("orders", variant("orders", 128, false, None)), strict).await;
    assert!(!other_name.passed());
    assert!(other_name.operators.is_empty());
    let failed: Vec<&str> = other_name
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["pipeline"]);
    let other_groups = check(CheckTarget::new("revenue", variant("revenue", 64, false, None)), strict).await;
    assert!(!other_groups.passed());
    let failed: Vec<&str> = other_groups
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["key groups"]);
    assert!(other_groups
        .ensure_passed()
        .unwrap_err()
        .to_string()
        .contains("savepoint 128, pipeline 64"));

    // An unreadable image: the shard is reported, the check fails.
    let file = &saved.manifest.shards[1].file;
    s3.put_object()
        .bucket(&bucket)
        .key(location.key(file))
        .body(b"not a checkpoint".to_vec().into())
        .send()
        .await
        .unwrap();
    let damaged = check(CheckTarget::new("revenue", revenue(None)), strict).await;
    assert!(!damaged.passed(), "{damaged}");
    assert_eq!(damaged.problems.len(), 1, "{damaged}");
    assert_eq!(damaged.problems[0].shard, SHARD_B);
    assert!(damaged.problems[0].reason.contains("corrupt"), "{damaged}");
    assert_eq!(
        restored(&damaged),
        vec![("window_aggregate-0", "restored from window_aggregate-0".to_owned(), 1)]
    );

    // Not a savepoint at all: an error.
    let err = check_savepoint(
        &s3,
        &S3Location::new(&bucket, "nothing"),
        &CheckTarget::new("revenue", revenue(None)),
        strict,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LifecycleError::Refused { .. }), "{err}");
}

#[tokio::test]
async fn a_restore_into_the_new_pipeline_refuses_dropped_state_naming_it_and_leaves_it_out_when_allowed() {
    let blue = blue_savepoint("sp-restore-rule").await;
    let restore = |stage: &str, target: Pipeline<Purchase, Row>, allow_dropped_state: bool| {
        let mut options = RestoreOptions::new(blue.location.clone(), stage, &blue.table);
        options.pipeline = Some(Arc::new(CheckTarget::new("revenue", target)));
        options.allow_dropped_state = allow_dropped_state;
        options
    };
    let renamed = || variant("revenue", 128, false, Some("revenue-window"));

    let err = restore_savepoint(&blue.client, &blue.s3, &restore("green", renamed(), false))
        .await
        .unwrap_err();
    match &err {
        LifecycleError::RestoreRefused {
            unmatched,
            starts_empty,
            target,
            ..
        } => {
            assert_eq!(unmatched, &["window_aggregate-0"]);
            assert_eq!(starts_empty, &["revenue-window"]);
            assert_eq!(target, "revenue");
        }
        other => panic!("expected a refused restore, got {other}"),
    }
    assert!(err.to_string().contains("--allow-dropped-state"), "{err}");
    assert_eq!(
        stage_has_state(&blue.client, &blue.table, "green").await.unwrap(),
        0,
        "nothing was written"
    );

    // Allowed: the dropped operator's state is left out, so a strict stage of the new pipeline
    // restores what was written.
    restore_savepoint(&blue.client, &blue.s3, &restore("green", renamed(), true))
        .await
        .unwrap();
    for shard in [SHARD_A, SHARD_B] {
        let loaded = DynamoDbCheckpointStore::new(blue.client.clone(), &blue.table, "green", shard)
            .load()
            .await
            .unwrap();
        let image = loaded.image.unwrap();
        assert_eq!(image.operator_metas().count(), 0, "{shard}");
        let (_, report) = Engine::restore_with(&renamed(), &image, EngineRestoreOptions::strict()).unwrap();
        assert_eq!(report.starts_empty(), ["revenue-window"]);
    }

    // A compatible change (a filter before the window) restores everything.
    restore_savepoint(
        &blue.client,
        &blue.s3,
        &restore("green-filtered", variant("revenue", 128, true, None), false),
    )
    .await
    .unwrap();
    let loaded = DynamoDbCheckpointStore::new(blue.client.clone(), &blue.table, "green-filtered", SHARD_A)
        .load()
        .await
        .unwrap();
    let ids: Vec<String> = loaded
        .image
        .unwrap()
        .operator_metas()
        .map(|(id, _)| id.to_owned())
        .collect();
    assert_eq!(ids, ["window_aggregate-0"]);
}

/// The revenue pipeline whose accumulator also counts large orders (a field added): with a
/// migration from version 1 if `migrated`.
fn with_large_orders(migrated: bool) -> Pipeline<Purchase, Row> {
    let keyed = Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.product)
        .window(Windowing::tumbling(10_000).unwrap())
        .trigger(Trigger::at_watermark());
    let combiner = (
        Count,
        Sum::of(|p: &Purchase| p.cents),
        Sum::of(|p: &Purchase| i64::from(p.cents > 150)),
    );
    let result = |k: &u32, w: &shardflow_engine::Window, _: &shardflow_engine::PaneInfo, (n, c, _): (u64, i64, i64)| {
        (*k, w.start, n, c)
    };
    if migrated {
        let from_v1 = migrate_from(combiner, 1, |(n, c): (u64, i64)| (n, c, 0i64));
        keyed.aggregate(from_v1, result).sink("revenue")
    } else {
        keyed.aggregate(combiner, result).sink("revenue")
    }
}

#[tokio::test]
async fn a_check_reports_a_migrated_accumulator_and_an_incompatible_one() {
    let blue = blue_savepoint("sp-check-schema").await;
    let check = |target: Pipeline<Purchase, Row>| {
        let s3 = blue.s3.clone();
        let location = blue.location.clone();
        async move {
            check_savepoint(
                &s3,
                &location,
                &CheckTarget::new("revenue", target),
                CheckOptions::default(),
            )
            .await
            .unwrap()
        }
    };
    let migrated = check(with_large_orders(true)).await;
    assert!(migrated.passed(), "{migrated}");
    assert_eq!(
        restored(&migrated),
        vec![(
            "window_aggregate-0",
            "migrated from window_aggregate-0 (schema version 1)".to_owned(),
            2
        )]
    );
    let incompatible = check(with_large_orders(false)).await;
    assert!(!incompatible.passed(), "{incompatible}");
    assert_eq!(incompatible.problems.len(), 2, "{incompatible}");
    assert!(
        incompatible.problems[0]
            .reason
            .contains("incompatible state: \"window_aggregate-0\""),
        "{incompatible}"
    );
}

#[tokio::test]
async fn a_live_stage_is_checked_from_its_committed_checkpoints_like_a_savepoint() {
    let blue = blue_savepoint("sp-check-live").await;
    let live = |stage: &str| LiveStage {
        stage: stage.to_owned(),
        table: blue.table.clone(),
        spill_bucket: None,
    };
    let check = |stage: &'static str, target: Pipeline<Purchase, Row>| {
        let (dynamodb, s3, live) = (blue.client.clone(), blue.s3.clone(), live(stage));
        async move {
            check_stage(
                &dynamodb,
                &s3,
                &live,
                &CheckTarget::new("revenue", target),
                CheckOptions::default(),
            )
            .await
            .unwrap()
        }
    };
    let same = check("revenue", revenue(None)).await;
    assert!(same.passed(), "{same}");
    assert_eq!(same.shards, 2);
    assert_eq!(
        restored(&same),
        vec![("window_aggregate-0", "restored from window_aggregate-0".to_owned(), 2)]
    );
    let renamed = check("revenue", variant("revenue", 128, false, Some("revenue-window"))).await;
    assert!(!renamed.passed(), "{renamed}");
    assert_eq!(renamed.ids(|o| *o == CheckOutcome::Dropped), ["window_aggregate-0"]);
    let other_groups = check("revenue", variant("revenue", 64, false, None)).await;
    let failed: Vec<&str> = other_groups
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["key groups"]);
    let nothing = check("nothing", revenue(None)).await;
    assert!(!nothing.passed(), "a stage without state: {nothing}");
}
