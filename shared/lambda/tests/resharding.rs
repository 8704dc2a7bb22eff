//! A stage across Kinesis splits and merges, against the Kinesis and DynamoDB of LocalStack: the
//! children take over their keys of the parents' state, the results equal one engine over the
//! input, and no shard's watermark ever goes back — also when a parent's batches are still being
//! redelivered around the split.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack (`source localstack/env`).

mod common;

use std::sync::Arc;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use common::by_customer::{revenue, Purchase, Row};
use common::wait_active;
use shardflow_engine::{Engine, ResultId};
use shardflow_lambda::{hash_key, CrashPoint, KinesisLineage, PartitionKeying, Stage, StageConfig, StageError};
use shardflow_stage::{InputRecord, JsonDecoder, SequenceNumber, ShardBatch};
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink};
use shardflow_state_dynamodb::DynamoDbCheckpointStore;

type TestStage = Stage<Purchase, Row, JsonDecoder<Purchase>, MemoryResultSink<Row>, MemoryDeadLetters>;

async fn stage(keying: PartitionKeying, kinesis: &aws_sdk_kinesis::Client, stream: &str) -> TestStage {
    let (client, table) = shardflow_testkit::state_table("reshard").await;
    let config = StageConfig {
        parallelization_factor: 1,
        keying,
        ..StageConfig::default()
    };
    Stage::new(
        "revenue",
        revenue(),
        JsonDecoder::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client,
        &table,
        config,
    )
    .unwrap()
    .with_lineage(Arc::new(KinesisLineage::new(kinesis.clone(), stream)))
}

fn purchase(i: i64, customer: &str) -> Purchase {
    Purchase {
        customer: customer.to_owned(),
        cents: 100 + i,
        ts_ms: 1_700_000_000_000 + i * 1_000,
    }
}

async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, p: &Purchase) {
    kinesis
        .put_record()
        .stream_name(stream)
        .partition_key(&p.customer)
        .data(Blob::new(serde_json::to_vec(p).unwrap()))
        .send()
        .await
        .unwrap();
}

/// Every record of `shard`, as Lambda would deliver it (arrival time: the event time).
async fn read_shard(kinesis: &aws_sdk_kinesis::Client, stream: &str, shard: &str) -> ShardBatch {
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut records = Vec::new();
    loop {
        let out = kinesis.get_records().shard_iterator(&iterator).send().await.unwrap();
        for r in out.records() {
            let p: Purchase = serde_json::from_slice(r.data().as_ref()).unwrap();
            records.push(InputRecord {
                sequence: SequenceNumber::parse(r.sequence_number()).unwrap(),
                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                arrival_ms: p.ts_ms,
                data: r.data().as_ref().to_vec(),
            });
        }
        match out.next_shard_iterator() {
            Some(next) if !out.records().is_empty() => iterator = next.to_owned(),
            _ => break,
        }
    }
    ShardBatch {
        stream: stream.to_owned(),
        shard_id: shard.to_owned(),
        records,
    }
}

/// One engine over `input` in event-time order (no window is cut short, no record is late).
fn one_engine(mut input: Vec<Purchase>) -> Vec<(ResultId, Row)> {
    input.sort_by_key(|p| p.ts_ms);
    let p = revenue();
    let mut e = p.engine();
    let part = e.partition("all");
    for (i, r) in input.into_iter().enumerate() {
        e.process(part, i as u64, r.ts_ms, r);
    }
    let mut v: Vec<(ResultId, Row)> = e.drain_output().into_iter().map(|o| (o.id, o.value)).collect();
    v.sort();
    v
}

fn results(stage: &TestStage) -> Vec<(ResultId, Row)> {
    let mut v: Vec<(ResultId, Row)> = stage.sink().distinct().into_iter().map(|o| (o.id, o.value)).collect();
    v.sort();
    v
}

/// A partition key of the form `{prefix}{n}` whose hash key is on the given side of the split.
fn key_on_side(prefix: &str, upper: bool, split: u128) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|k| (hash_key(k) >= split) == upper)
        .unwrap_or_default()
}

/// A new stream of `shards` shards, active.
async fn create_stream(kinesis: &aws_sdk_kinesis::Client, prefix: &str, shards: i32) -> String {
    let stream = shardflow_testkit::unique_name(prefix);
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    wait_active(kinesis, &stream).await;
    stream
}

/// Every shard of `stream`: id, parents, and the first hash key it owns.
async fn shards(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, Vec<String>, u128)> {
    let out = kinesis.list_shards().stream_name(stream).send().await.unwrap();
    out.shards()
        .iter()
        .map(|s| {
            let parents = s
                .parent_shard_id()
                .into_iter()
                .chain(s.adjacent_parent_shard_id())
                .map(str::to_owned)
                .collect();
            let start = s.hash_key_range().unwrap().starting_hash_key().parse().unwrap();
            (s.shard_id().to_owned(), parents, start)
        })
        .collect()
}

/// The committed version and watermark of `shard` (`None` before its first commit).
async fn committed(stage: &TestStage, shard: &str) -> Option<(u64, i64)> {
    let mut store = DynamoDbCheckpointStore::new(stage.client().clone(), stage.table(), "revenue", shard);
    let loaded = store.load().await.unwrap();
    let image = loaded.image?;
    let engine: Engine<Purchase, Row> = Engine::restore(&revenue(), &image).unwrap();
    Some((loaded.version, engine.watermark()))
}

/// The records `range` of `batch`, as a batch of their own.
fn part(batch: &ShardBatch, range: std::ops::Range<usize>) -> ShardBatch {
    ShardBatch {
        stream: batch.stream.clone(),
        shard_id: batch.shard_id.clone(),
        records: batch.records[range].to_vec(),
    }
}

/// Handles `batch` in batches of `size` records, checking after each that the shard's committed
/// watermark is at least `floor` and never goes back.
async fn handle_in_parts(stage: &TestStage, batch: &ShardBatch, size: usize, floor: i64) {
    let mut last = floor;
    for start in (0..batch.records.len()).step_by(size) {
        let end = (start + size).min(batch.records.len());
        let r = stage.handle(part(batch, start..end)).await.unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        let (_, watermark) = committed(stage, &batch.shard_id).await.unwrap();
        assert!(
            watermark >= last,
            "{}: watermark went back from {last} to {watermark}",
            batch.shard_id
        );
        last = watermark;
    }
}

const CUSTOMERS: [&str; 8] = ["ann", "bob", "cid", "dee", "eve", "fay", "gus", "hal"];

#[tokio::test]
async fn split_children_adopt_their_keys_and_finish_like_one_engine() {
    let kinesis = shardflow_testkit::kinesis();
    let stream = shardflow_testkit::unique_name("split");
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &stream).await;
    let stage = stage(PartitionKeying::KeyIsPartitionKey, &kinesis, &stream).await;
    let parent = "shardId-000000000000";

    // 45 s of purchases in the parent; windows up to 40 s fire there, [40 s, 50 s) stays open.
    let mut input = Vec::new();
    for i in 0..45 {
        let p = purchase(i, CUSTOMERS[i as usize % CUSTOMERS.len()]);
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    let batch = read_shard(&kinesis, &stream, parent).await;
    assert_eq!(batch.records.len(), 45);
    stage.handle(batch).await.unwrap();
    let before_split = results(&stage).len();
    assert!(before_split > 0);

    let split = 1u128 << 127;
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(parent)
        .new_starting_hash_key(split.to_string())
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &stream).await;

    // 40 s more, then one late-enough record per child to close every window of the input.
    for i in 45..85 {
        let p = purchase(i, CUSTOMERS[i as usize % CUSTOMERS.len()]);
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    for upper in [false, true] {
        let p = purchase(200, &key_on_side("flush", upper, split));
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    let shards = kinesis.list_shards().stream_name(&stream).send().await.unwrap();
    let children: Vec<String> = shards
        .shards()
        .iter()
        .filter(|s| s.parent_shard_id() == Some(parent))
        .map(|s| s.shard_id().to_owned())
        .collect();
    assert_eq!(children.len(), 2, "{shards:?}");
    let mut child_records = 0;
    for child in &children {
        let batch = read_shard(&kinesis, &stream, child).await;
        child_records += batch.records.len();
        assert!(!batch.records.is_empty(), "both children get records");
        stage.handle(batch).await.unwrap();
    }
    assert_eq!(child_records, 42);
    let expected = one_engine(input);
    assert!(
        expected.iter().any(|(_, r)| r.1 == 1_700_000_040_000),
        "a window open at the split"
    );
    assert_eq!(results(&stage), expected);
}

#[tokio::test]
async fn a_merged_child_adopts_both_parents_and_its_watermark_never_goes_back() {
    let kinesis = shardflow_testkit::kinesis();
    let stream = create_stream(&kinesis, "merge", 2).await;
    // A merge needs no declared keying: the child owns every key of both parents.
    let stage = stage(PartitionKeying::Undeclared, &kinesis, &stream).await;
    let mut originals = shards(&kinesis, &stream).await;
    originals.sort_by_key(|s| s.2);
    assert_eq!(originals.len(), 2);
    let (lower, upper) = (originals[0].0.clone(), originals[1].0.clone());
    let boundary = originals[1].2;
    let lo: Vec<String> = (0..4)
        .map(|n| key_on_side(&format!("lo{n}-"), false, boundary))
        .collect();
    let hi: Vec<String> = (0..4)
        .map(|n| key_on_side(&format!("hi{n}-"), true, boundary))
        .collect();

    // The lower shard is at 44 s, the upper one lags at 29 s: its window [20 s, 30 s) is open.
    let mut input = Vec::new();
    for i in 0..45 {
        let p = purchase(i, &lo[i as usize % lo.len()]);
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    for i in 0..30 {
        let p = purchase(i, &hi[i as usize % hi.len()]);
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    for (shard, n) in [(&lower, 45), (&upper, 30)] {
        let batch = read_shard(&kinesis, &stream, shard).await;
        assert_eq!(batch.records.len(), n, "{shard}");
        handle_in_parts(&stage, &batch, 16, i64::MIN).await;
    }
    let (_, lower_watermark) = committed(&stage, &lower).await.unwrap();
    let (_, upper_watermark) = committed(&stage, &upper).await.unwrap();
    assert!(lower_watermark > upper_watermark, "{lower_watermark} {upper_watermark}");
    let before_merge = results(&stage).len();
    assert!(before_merge > 0);

    kinesis
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(&lower)
        .adjacent_shard_to_merge(&upper)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &stream).await;
    for i in 45..85 {
        let keys = if i % 2 == 0 { &lo } else { &hi };
        let p = purchase(i, &keys[i as usize % keys.len()]);
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    let p = purchase(200, "flush");
    put(&kinesis, &stream, &p).await;
    input.push(p);

    let child: Vec<_> = shards(&kinesis, &stream)
        .await
        .into_iter()
        .filter(|(_, parents, _)| parents.len() == 2)
        .collect();
    assert_eq!(child.len(), 1, "one merged child");
    let (child, parents, _) = child.into_iter().next().unwrap();
    assert!(parents.contains(&lower) && parents.contains(&upper), "{parents:?}");
    let batch = read_shard(&kinesis, &stream, &child).await;
    assert_eq!(batch.records.len(), 41);
    // The child starts at the larger parent watermark and never goes below it.
    handle_in_parts(&stage, &batch, 7, lower_watermark).await;

    let expected = one_engine(input);
    assert!(
        expected
            .iter()
            .any(|(_, r)| hi.contains(&r.0) && r.1 == 1_700_000_020_000),
        "the lagging parent's open window is in the expected results"
    );
    assert_eq!(results(&stage), expected);
    assert!(stage.dead_letters().letters().is_empty(), "nothing late, nothing lost");
    // Both parents' state is in the child: the parents' checkpoints are untouched by it.
    assert_eq!(committed(&stage, &lower).await.unwrap().1, lower_watermark);
    assert_eq!(committed(&stage, &upper).await.unwrap().1, upper_watermark);
}

#[tokio::test]
async fn a_split_during_redelivery_and_a_late_parent_redelivery_change_nothing() {
    let kinesis = shardflow_testkit::kinesis();
    let stream = create_stream(&kinesis, "splitredo", 1).await;
    let crash_at: Arc<std::sync::Mutex<Option<CrashPoint>>> = Arc::default();
    let hook = crash_at.clone();
    let stage = stage(PartitionKeying::KeyIsPartitionKey, &kinesis, &stream)
        .await
        .with_crash_hook(Arc::new(move |point| {
            let mut at = hook.lock().unwrap();
            if *at == Some(point) {
                *at = None;
                true
            } else {
                false
            }
        }));
    let crash_once = |point: CrashPoint| *crash_at.lock().unwrap() = Some(point);
    let parent = "shardId-000000000000";
    let mut input = Vec::new();
    for i in 0..45 {
        let p = purchase(i, CUSTOMERS[i as usize % CUSTOMERS.len()]);
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    let parent_batch = read_shard(&kinesis, &stream, parent).await;
    assert_eq!(parent_batch.records.len(), 45);
    stage.handle(part(&parent_batch, 0..20)).await.unwrap();
    // The next batch dies after its results went out, before its commit ...
    crash_once(CrashPoint::AfterEmit);
    assert!(matches!(
        stage.handle(part(&parent_batch, 10..45)).await,
        Err(StageError::InjectedCrash(CrashPoint::AfterEmit))
    ));
    // ... the shard is split while that batch waits for its redelivery ...
    let split = 1u128 << 127;
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(parent)
        .new_starting_hash_key(split.to_string())
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &stream).await;
    // ... whose redelivery dies once more, after the load, then goes through.
    crash_once(CrashPoint::AfterLoad);
    assert!(stage.handle(part(&parent_batch, 20..45)).await.is_err());
    stage.handle(part(&parent_batch, 20..45)).await.unwrap();
    let (parent_version, parent_watermark) = committed(&stage, parent).await.unwrap();

    for i in 45..85 {
        let p = purchase(i, CUSTOMERS[i as usize % CUSTOMERS.len()]);
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    for upper in [false, true] {
        let p = purchase(200, &key_on_side("flush", upper, split));
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    let children: Vec<String> = shards(&kinesis, &stream)
        .await
        .into_iter()
        .filter(|(_, parents, _)| parents.iter().any(|p| p == parent))
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(children.len(), 2);
    let mut child_batches = Vec::new();
    for child in &children {
        let batch = read_shard(&kinesis, &stream, child).await;
        assert!(batch.records.len() > 4, "{child}: {}", batch.records.len());
        // The children start: their first half is committed.
        handle_in_parts(&stage, &part(&batch, 0..batch.records.len() / 2), 5, parent_watermark).await;
        child_batches.push(batch);
    }
    let writes = stage.sink().writes().len();
    let mut child_state = Vec::new();
    for child in &children {
        child_state.push(committed(&stage, child).await);
    }

    // A parent batch redelivered now (a stale retry) is skipped record by record: nothing is
    // emitted, the parent's checkpoint does not move, the children's state is untouched.
    for range in [0..45, 20..45, 44..45] {
        let r = stage.handle(part(&parent_batch, range)).await.unwrap();
        assert!(r.batch_item_failures.is_empty());
    }
    assert_eq!(
        stage.sink().writes().len(),
        writes,
        "a redelivered parent batch emits nothing"
    );
    assert_eq!(
        committed(&stage, parent).await,
        Some((parent_version, parent_watermark)),
        "a redelivered parent batch commits nothing"
    );
    for (child, state) in children.iter().zip(&child_state) {
        assert_eq!(&committed(&stage, child).await, state, "{child} untouched");
    }

    // The children go on, from an overlapping redelivery of their own.
    for batch in &child_batches {
        let floor = committed(&stage, &batch.shard_id).await.unwrap().1;
        handle_in_parts(
            &stage,
            &part(batch, batch.records.len() / 3..batch.records.len()),
            6,
            floor,
        )
        .await;
    }
    assert_eq!(results(&stage), one_engine(input));
    assert!(stage.dead_letters().letters().is_empty());
    // The idempotent sink saw repeats (the crashed batch's emit) but never two values for one id.
    let mut by_id = std::collections::BTreeMap::new();
    for o in stage.sink().writes() {
        assert_eq!(
            *by_id.entry(o.id).or_insert_with(|| o.value.clone()),
            o.value,
            "{:?}",
            o.id
        );
    }
}

#[tokio::test]
async fn a_split_child_refuses_to_guess_its_keys_without_a_declared_keying() {
    let kinesis = shardflow_testkit::kinesis();
    let stream = shardflow_testkit::unique_name("nokeys");
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &stream).await;
    let stage = stage(PartitionKeying::Undeclared, &kinesis, &stream).await;
    let parent = "shardId-000000000000";
    put(&kinesis, &stream, &purchase(0, "ann")).await;
    stage.handle(read_shard(&kinesis, &stream, parent).await).await.unwrap();
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(parent)
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &stream).await;
    for c in CUSTOMERS {
        put(&kinesis, &stream, &purchase(1, c)).await;
    }
    let shards = kinesis.list_shards().stream_name(&stream).send().await.unwrap();
    let child = shards
        .shards()
        .iter()
        .find(|s| s.parent_shard_id() == Some(parent))
        .map(|s| s.shard_id().to_owned())
        .unwrap();
    let batch = read_shard(&kinesis, &stream, &child).await;
    assert!(matches!(
        stage.handle(batch).await,
        Err(StageError::ReshardRefused { .. })
    ));
}

#[tokio::test]
async fn a_parallelization_factor_above_one_is_refused() {
    let (client, table) = shardflow_testkit::state_table("pf").await;
    let config = StageConfig {
        parallelization_factor: 2,
        keying: PartitionKeying::KeyIsPartitionKey,
        ..StageConfig::default()
    };
    let stage = Stage::new(
        "revenue",
        revenue(),
        JsonDecoder::<Purchase>::new(),
        MemoryResultSink::<Row>::new(),
        MemoryDeadLetters::default(),
        client,
        &table,
        config,
    );
    assert!(matches!(stage, Err(StageError::Unsupported(_))));
}
