//! Savepoints of key groups too large for an item (spilled to S3 by the store), against
//! LocalStack: the savepoint inlines them, a restore spills them again into the target's
//! bucket, and without a spill bucket the restore is refused before anything is written.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack.

use shardflow_engine::combine::Collect;
use shardflow_engine::{Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_lifecycle::{
    create_savepoint, restore_savepoint, stage_has_state, LifecycleError, RestoreOptions, S3Location, SavepointOptions,
};
use shardflow_stage::SequenceNumber;
use shardflow_state_dynamodb::{DynamoDbCheckpointStore, SpillBucket, MAX_INLINE_STATE_BYTES};

type Event = (u64, i64, String);
type Row = (u64, i64, usize);

const SHARD: &str = "shardId-000000000000";

/// Collects every event of a key: state grows with the payloads.
fn pipeline() -> Pipeline<Event, Row> {
    Pipeline::builder("blobs")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .max_key_groups(4)
        .event_time(|e: &Event| e.1)
        .key_by(|e| e.0)
        .window(Windowing::tumbling(1_000_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate(Collect, |k, w, _, v: Vec<Event>| (*k, w.start, v.len()))
        .sink("blobs")
}

#[tokio::test]
async fn spilled_key_groups_are_inlined_in_the_savepoint_and_spilled_again_on_restore() {
    let (client, table) = shardflow_testkit::state_table("sp-large").await;
    let (s3, spill) = shardflow_testkit::bucket("sp-large-spill").await;
    let (_, savepoints) = shardflow_testkit::bucket("sp-large-sp").await;
    let p = pipeline();
    let mut engine = p.engine();
    let part = engine.partition("x");
    for i in 0..40u64 {
        engine.process(part, i, 0, (i % 4, 1_000 + i as i64, "x".repeat(50_000)));
    }
    let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, "blobs", SHARD)
        .with_spill_bucket(Some(SpillBucket::new(s3.clone(), &spill)));
    store.load().await.unwrap();
    let stats = store
        .commit(
            &engine.snapshot().unwrap(),
            &SequenceNumber::parse("4965000000000000000000039").unwrap(),
        )
        .await
        .unwrap();
    assert!(stats.objects_written > 0, "{stats:?}");
    let original = store.load().await.unwrap().image.unwrap();

    let report = create_savepoint(
        &client,
        &s3,
        &SavepointOptions::new("blobs", &table, S3Location::new(&savepoints, "large")),
    )
    .await
    .unwrap();
    let entry = &report.manifest.shards[0];
    assert!(entry.state_bytes > 4 * MAX_INLINE_STATE_BYTES as u64 / 2, "{entry:?}");
    assert!(
        entry.size >= entry.state_bytes,
        "the file holds the spilled groups inline"
    );

    let (target, table2) = shardflow_testkit::state_table("sp-large-green").await;
    let (_, spill2) = shardflow_testkit::bucket("sp-large-spill2").await;
    let options = RestoreOptions::new(report.location.clone(), "green", &table2);
    let e = restore_savepoint(&target, &s3, &options).await.unwrap_err();
    assert!(
        matches!(&e, LifecycleError::Invalid(m) if m.contains("give a spill bucket")),
        "{e}"
    );
    assert_eq!(stage_has_state(&target, &table2, "green").await.unwrap(), 0);

    let mut options = options;
    options.spill_bucket = Some(spill2.clone());
    let restored = restore_savepoint(&target, &s3, &options).await.unwrap();
    assert_eq!(restored.objects_written, stats.objects_written);
    let listed = s3
        .list_objects_v2()
        .bucket(&spill2)
        .prefix("state/green/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), stats.objects_written);

    let mut green = DynamoDbCheckpointStore::new(target.clone(), &table2, "green", SHARD)
        .with_spill_bucket(Some(SpillBucket::new(s3.clone(), &spill2)));
    let loaded = green.load().await.unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.sequence_number.unwrap().as_str(), "4965000000000000000000039");
    assert_eq!(loaded.image.unwrap(), original, "the restored state is the saved state");
}
