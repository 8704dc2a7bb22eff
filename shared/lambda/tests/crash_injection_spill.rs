//! Crash injection with large state, against the DynamoDB and S3 of LocalStack: key groups over
//! `MAX_INLINE_STATE_BYTES` spill to S3, and invocations die at every step of the commit —
//! between the spill writes, between slot transactions, before and after the flip, between the
//! clean-up's deletes of superseded objects and items — and around it (after load, after the
//! sink, after the commit), with random batch boundaries and redeliveries of old batches. For
//! every seed: the sink ends with exactly the results of a fault-free run (zero lost, zero
//! duplicated, no write ever contradicting it), the committed state finishes the same, and every
//! load on the way found every spilled object its checkpoint points to, intact (a dangling
//! pointer or a checksum mismatch fails the invocation and the test).
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack (`source localstack/env`).

mod common;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use common::crash::{Dice, LambdaShard};
use shardflow_engine::combine::Collect;
use shardflow_engine::state::key_group;
use shardflow_engine::{Engine, Pipeline, ResultId, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::{CrashPoint, Stage, StageConfig};
use shardflow_stage::{InputRecord, JsonDecoder, SequenceNumber};
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink};
use shardflow_state_dynamodb::{CommitStep, DynamoDbCheckpointStore, SpillBucket, MAX_INLINE_STATE_BYTES};

const STREAM: &str = "blobs";
const SHARD: &str = "shardId-000000000000";
const KEY_GROUPS: u16 = 8;
const RECORDS: u64 = 240;
/// Payload of a heavy key's record: from the 12th of a 90 s window on, its key group spills.
const HEAVY_BYTES: usize = 32 * 1024;

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct Blob {
    key: u64,
    ts_ms: i64,
    payload: String,
}

/// Key, window start, records, payload bytes, digest of the payloads in order.
type Row = (u64, i64, usize, usize, u64);

/// Every record of a key in 90-second windows: a window of a heavy key grows past the inline limit.
fn pipeline() -> Pipeline<Blob, Row> {
    Pipeline::builder("blobs")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .max_key_groups(KEY_GROUPS)
        .event_time(|b: &Blob| b.ts_ms)
        .key_by(|b| b.key)
        .window(Windowing::tumbling(90_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate(Collect, |k, w, _, blobs: Vec<Blob>| {
            let mut h = std::hash::DefaultHasher::new();
            for b in &blobs {
                b.payload.hash(&mut h);
            }
            (
                *k,
                w.start,
                blobs.len(),
                blobs.iter().map(|b| b.payload.len()).sum(),
                h.finish(),
            )
        })
        .sink("blobs")
}

/// Two heavy keys in different key groups and a light one in a third.
fn keys() -> [u64; 3] {
    let group = |k: &u64| key_group(k, KEY_GROUPS);
    let a = 0u64;
    let b = (1..).find(|k| group(k) != group(&a)).unwrap_or_default();
    let c = (1..)
        .find(|k| group(k) != group(&a) && group(k) != group(&b))
        .unwrap_or_default();
    [a, b, c]
}

/// Record `i`: one per second, keys in turn; the heavy keys' payloads are 32 KB.
fn input() -> Vec<InputRecord> {
    let keys = keys();
    (0..RECORDS)
        .map(|i| {
            let key = keys[(i % 3) as usize];
            let len = if i % 3 == 2 { 8 } else { HEAVY_BYTES };
            let blob = Blob {
                key,
                ts_ms: 1_700_000_000_000 + (i as i64) * 1_000,
                payload: format!("{i:x}").repeat(len).chars().take(len).collect(),
            };
            InputRecord {
                sequence: SequenceNumber::parse(&format!("4965{i:020}")).unwrap(),
                partition_key: format!("k{key}"),
                arrival_ms: blob.ts_ms,
                data: serde_json::to_vec(&blob).unwrap(),
            }
        })
        .collect()
}

/// The fault-free run: every result by id, and the results of finishing the state.
fn fault_free(input: &[InputRecord]) -> (BTreeMap<ResultId, Row>, Vec<Row>) {
    let p = pipeline();
    let mut e = p.engine();
    let part = e.partition(&format!("{STREAM}/{SHARD}"));
    let mut largest_group = 0;
    for (i, r) in input.iter().enumerate() {
        e.process(part, i as u64, r.arrival_ms, serde_json::from_slice(&r.data).unwrap());
        if i % 10 == 0 {
            let cp = e.snapshot().unwrap();
            let groups = cp.operators.iter().flat_map(|o| o.key_groups.iter());
            largest_group = groups.map(|g| g.bytes.len()).max().unwrap_or(0).max(largest_group);
        }
    }
    assert!(
        largest_group > MAX_INLINE_STATE_BYTES,
        "the test needs key groups that spill: {largest_group}"
    );
    let emitted = e.drain_output().into_iter().map(|o| (o.id, o.value)).collect();
    e.finish();
    let mut rest: Vec<Row> = e.drain_output().into_iter().map(|o| o.value).collect();
    rest.sort();
    (emitted, rest)
}

fn probability(point: CrashPoint) -> f64 {
    match point {
        CrashPoint::AfterLoad => 0.05,
        CrashPoint::AfterEmit | CrashPoint::AfterCommit | CrashPoint::AfterProgress => 0.15,
        CrashPoint::Commit(CommitStep::AfterCleanUpDelete(_)) => 0.15,
        CrashPoint::Commit(_) => 0.1,
    }
}

type TestStage = Stage<Blob, Row, JsonDecoder<Blob>, MemoryResultSink<Row>, MemoryDeadLetters>;

async fn run_seed(seed: u64, input: &[InputRecord], want: &(BTreeMap<ResultId, Row>, Vec<Row>)) -> Dice {
    let dice = Dice::new(seed);
    let (client, table) = shardflow_testkit::state_table(&format!("spillcrash{seed}")).await;
    let (s3, bucket) = shardflow_testkit::bucket(&format!("spillcrash{seed}")).await;
    let stage: TestStage = Stage::new(
        "blobs",
        pipeline(),
        JsonDecoder::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client,
        &table,
        StageConfig::default(),
    )
    .unwrap()
    .with_spill_bucket(SpillBucket::new(s3.clone(), &bucket))
    .max_transaction_items(2)
    .with_crash_hook(dice.hook(probability));
    let mut shard = LambdaShard {
        stream: STREAM.into(),
        shard: SHARD.into(),
        records: input.to_vec(),
        position: 0,
    };
    let mut invocations = 0;
    while !shard.done() {
        invocations += 1;
        assert!(invocations < 1_000, "seed {seed}: no progress");
        shard.invoke(&stage, &dice, 40, &format!("seed {seed}")).await;
    }

    let (want_emitted, want_rest) = want;
    for o in stage.sink().writes() {
        assert_eq!(
            want_emitted.get(&o.id),
            Some(&o.value),
            "seed {seed}: a write that a fault-free run does not make"
        );
    }
    let got: BTreeMap<ResultId, Row> = stage.sink().distinct().into_iter().map(|o| (o.id, o.value)).collect();
    assert_eq!(&got, want_emitted, "seed {seed}: results lost");
    assert!(stage.dead_letters().letters().is_empty(), "seed {seed}");

    // The committed state (its spilled groups read back and verified) finishes the same.
    let mut store = DynamoDbCheckpointStore::new(stage.client().clone(), &table, "blobs", SHARD)
        .with_spill_bucket(Some(SpillBucket::new(s3.clone(), &bucket)));
    let loaded = store.load().await.unwrap();
    let mut engine = Engine::restore(&pipeline(), loaded.image.as_ref().unwrap()).unwrap();
    engine.finish();
    let mut rest: Vec<Row> = engine.drain_output().into_iter().map(|o| o.value).collect();
    rest.sort();
    assert_eq!(&rest, want_rest, "seed {seed}: committed state differs");
    let objects = s3.list_objects_v2().bucket(&bucket).send().await.unwrap().key_count();
    eprintln!(
        "seed {seed}: {invocations} invocations, {} crashes, {} objects left (live and orphans)",
        dice.total(),
        objects.unwrap_or_default()
    );
    dice
}

#[tokio::test]
async fn crashes_around_spills_and_clean_up_lose_and_duplicate_nothing() {
    let input = input();
    let want = fault_free(&input);
    let mut crashes: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 0..10 {
        let dice = run_seed(seed, &input, &want).await;
        for (kind, n) in dice.crashes.lock().unwrap().iter() {
            *crashes.entry(kind.clone()).or_default() += n;
        }
    }
    eprintln!("crashes by point: {crashes:?}");
    for kind in [
        "AfterLoad",
        "AfterEmit",
        "Commit(BeforeWrite)",
        "Commit(AfterSpillObject)",
        "Commit(AfterSpill)",
        "Commit(AfterSlotTransaction)",
        "Commit(BeforeFlip)",
        "Commit(AfterFlip)",
        "Commit(AfterCleanUpDelete)",
        "AfterCommit",
    ] {
        assert!(
            crashes.get(kind).is_some_and(|n| *n > 0),
            "no crash at {kind}: {crashes:?}"
        );
    }
}
