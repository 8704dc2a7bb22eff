//! Crash injection across a split of the shard mid-stream, against the DynamoDB of LocalStack:
//! invocations of the parent and of both children die at every point of the protocol (including
//! a child's first invocations, which adopt the parent's state, and inside multi-transaction
//! commits), with random batch boundaries, redeliveries of old batches of every shard, and stale
//! redeliveries of parent batches after the children started. For every seed the sink ends with
//! exactly the results of one engine over the whole input (zero lost, zero duplicated, no write
//! contradicting them), and the children's committed state finishes like it.
//!
//! The lineage is a [`FixedLineage`] (the real `ListShards` one is exercised by the resharding
//! tests); records go to the child owning MD5(partition key), as Kinesis routes them.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack (`source localstack/env`).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::by_customer::{revenue, Purchase, Row};
use common::crash::{Dice, LambdaShard};
use shardflow_engine::{Engine, ResultId};
use shardflow_lambda::{hash_key, CrashPoint, FixedLineage, PartitionKeying, ShardInfo, Stage, StageConfig};
use shardflow_stage::{InputRecord, JsonDecoder, SequenceNumber};
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink};
use shardflow_state_dynamodb::DynamoDbCheckpointStore;

const STREAM: &str = "purchases";
const PARENT: &str = "shardId-000000000000";
const CHILDREN: [&str; 2] = ["shardId-000000000001", "shardId-000000000002"];
/// The first hash key of the upper child.
const SPLIT: u128 = 1 << 127;
/// Records before the split (all in the parent), and in all. The split falls inside a window, so
/// that windows open at the split hold records of the parent and of a child.
const BEFORE_SPLIT: u64 = 95;
const RECORDS: u64 = 200;

fn lineage() -> FixedLineage {
    FixedLineage::new([
        ShardInfo {
            shard_id: PARENT.into(),
            parents: vec![],
            hash_key_range: 0..=u128::MAX,
        },
        ShardInfo {
            shard_id: CHILDREN[0].into(),
            parents: vec![PARENT.into()],
            hash_key_range: 0..=SPLIT - 1,
        },
        ShardInfo {
            shard_id: CHILDREN[1].into(),
            parents: vec![PARENT.into()],
            hash_key_range: SPLIT..=u128::MAX,
        },
    ])
}

fn record(i: u64, customer: &str, ts_ms: i64) -> InputRecord {
    let p = Purchase {
        customer: customer.to_owned(),
        cents: 100 + (i as i64 * 37) % 500,
        ts_ms,
    };
    InputRecord {
        sequence: SequenceNumber::parse(&format!("4965{i:020}")).unwrap(),
        partition_key: p.customer.clone(),
        arrival_ms: ts_ms,
        data: serde_json::to_vec(&p).unwrap(),
    }
}

/// The parent's records, then each child's: six customers, one purchase a second, and at the
/// end one purchase per child far enough ahead to close every window of the input.
fn input() -> (Vec<InputRecord>, [Vec<InputRecord>; 2]) {
    // Three customers of each child, taking turns.
    let names = |upper: bool| {
        (0..)
            .map(|n| format!("customer-{n}"))
            .filter(move |k| (hash_key(k) >= SPLIT) == upper)
            .take(3)
    };
    let customers: Vec<String> = names(false).zip(names(true)).flat_map(|(a, b)| [a, b]).collect();
    let child_of = |pk: &str| usize::from(hash_key(pk) >= SPLIT);
    let mut parent = Vec::new();
    let mut children: [Vec<InputRecord>; 2] = [Vec::new(), Vec::new()];
    for i in 0..RECORDS {
        let r = record(
            i,
            &customers[(i * 5 % 6) as usize],
            1_700_000_000_000 + i as i64 * 1_000,
        );
        if i < BEFORE_SPLIT {
            parent.push(r);
        } else {
            children[child_of(&r.partition_key)].push(r);
        }
    }
    for (side, upper) in [false, true].into_iter().enumerate() {
        let flush = (0..)
            .map(|n| format!("flush-{n}"))
            .find(|k| (hash_key(k) >= SPLIT) == upper)
            .unwrap_or_default();
        children[side].push(record(RECORDS + side as u64, &flush, 1_700_000_000_000 + 1_000_000));
    }
    (parent, children)
}

/// One engine over the whole input in order: every result by id, and the results of finishing.
fn one_engine(all: &[InputRecord]) -> (BTreeMap<ResultId, Row>, Vec<Row>) {
    let p = revenue();
    let mut e = p.engine();
    let part = e.partition("all");
    for (i, r) in all.iter().enumerate() {
        e.process(part, i as u64, r.arrival_ms, serde_json::from_slice(&r.data).unwrap());
    }
    let emitted = e.drain_output().into_iter().map(|o| (o.id, o.value)).collect();
    e.finish();
    let mut rest: Vec<Row> = e.drain_output().into_iter().map(|o| o.value).collect();
    rest.sort();
    (emitted, rest)
}

fn probability(point: CrashPoint) -> f64 {
    match point {
        CrashPoint::AfterLoad => 0.1,
        CrashPoint::AfterEmit | CrashPoint::AfterCommit | CrashPoint::AfterProgress => 0.2,
        CrashPoint::Commit(_) => 0.08,
    }
}

type TestStage = Stage<Purchase, Row, JsonDecoder<Purchase>, MemoryResultSink<Row>, MemoryDeadLetters>;

/// What one seed did.
#[derive(Default)]
struct Stats {
    invocations: usize,
    parent_crashes: usize,
    child_crashes: usize,
    stale_parent_redeliveries: usize,
}

async fn run_seed(seed: u64, want: &(BTreeMap<ResultId, Row>, Vec<Row>)) -> Stats {
    let mut stats = Stats::default();
    let dice = Dice::new(seed);
    let (client, table) = shardflow_testkit::state_table(&format!("splitcrash{seed}")).await;
    let config = StageConfig {
        parallelization_factor: 1,
        keying: PartitionKeying::KeyIsPartitionKey,
        ..StageConfig::default()
    };
    let stage: TestStage = Stage::new(
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
    .with_lineage(Arc::new(lineage()))
    .max_transaction_items(3)
    .with_crash_hook(dice.hook(probability));
    let (parent, children) = input();
    let shard = |id: &str, records: Vec<InputRecord>| LambdaShard {
        stream: STREAM.into(),
        shard: id.into(),
        records,
        position: 0,
    };
    let context = format!("seed {seed}");
    // Lambda reads the parent to its end before the children.
    let mut parent = shard(PARENT, parent);
    while !parent.done() {
        stats.invocations += 1;
        assert!(stats.invocations < 100_000, "{context}: no progress");
        parent.invoke(&stage, &dice, 30, &context).await;
    }
    stats.parent_crashes += dice.total();
    let writes_before_children = stage.sink().writes().len();
    let [a, b] = children;
    let mut children = [shard(CHILDREN[0], a), shard(CHILDREN[1], b)];
    let mut invocations = 0;
    while children.iter().any(|c| !c.done()) {
        invocations += 1;
        assert!(invocations < 1_000, "{context}: no progress in the children");
        if dice.chance(0.1) {
            // A stale retry of an old parent batch: every record is committed, nothing happens.
            let writes = stage.sink().writes().len();
            let start = dice.range(0..parent.records.len());
            let end = (start + dice.range(1..30)).min(parent.records.len());
            let _ = stage.handle(parent.batch(start..end)).await;
            assert_eq!(
                stage.sink().writes().len(),
                writes,
                "{context}: a stale parent batch emitted"
            );
            stats.stale_parent_redeliveries += 1;
            continue;
        }
        let pending: Vec<usize> = (0..2).filter(|&c| !children[c].done()).collect();
        let c = pending[dice.range(0..pending.len())];
        children[c].invoke(&stage, &dice, 30, &context).await;
    }
    stats.invocations += invocations;
    stats.child_crashes += dice.total() - stats.parent_crashes;
    assert!(stage.sink().writes().len() > writes_before_children, "{context}");

    let (want_emitted, want_rest) = want;
    for o in stage.sink().writes() {
        assert_eq!(
            want_emitted.get(&o.id),
            Some(&o.value),
            "{context}: a write that one engine does not make"
        );
    }
    let got: BTreeMap<ResultId, Row> = stage.sink().distinct().into_iter().map(|o| (o.id, o.value)).collect();
    assert_eq!(&got, want_emitted, "{context}: results lost");
    assert!(stage.dead_letters().letters().is_empty(), "{context}: nothing is late");

    // The children's committed state finishes like one engine (each has its keys, once).
    let mut rest = Vec::new();
    for child in CHILDREN {
        let mut store = DynamoDbCheckpointStore::new(stage.client().clone(), &table, "revenue", child);
        let loaded = store.load().await.unwrap();
        let mut engine = Engine::restore(&revenue(), loaded.image.as_ref().unwrap()).unwrap();
        engine.finish();
        rest.extend(engine.drain_output().into_iter().map(|o| o.value));
    }
    rest.sort();
    assert_eq!(&rest, want_rest, "{context}: committed state differs");
    stats
}

#[tokio::test]
async fn crashes_in_parent_and_children_across_a_split_lose_and_duplicate_nothing() {
    let (parent, children) = input();
    assert!(children.iter().all(|c| c.len() > 20), "both children get records");
    // Some window open at the split holds records of the parent and of a child for one key.
    let window_of = |ts: i64| ts - ts.rem_euclid(10_000);
    let first_child_record = children
        .iter()
        .flatten()
        .map(|r| r.arrival_ms)
        .min()
        .unwrap_or_default();
    let in_split_window = |r: &&InputRecord| window_of(r.arrival_ms) == window_of(first_child_record);
    assert!(
        parent.iter().filter(in_split_window).any(|p| children
            .iter()
            .flatten()
            .filter(in_split_window)
            .any(|c| c.partition_key == p.partition_key)),
        "the test needs a window spanning the split"
    );
    let all: Vec<InputRecord> = parent.into_iter().chain(children.into_iter().flatten()).collect();
    let mut ordered = all.clone();
    ordered.sort_by_key(|r| r.arrival_ms);
    let want = one_engine(&ordered);
    let mut stats = Stats::default();
    let seeds = 16;
    for seed in 0..seeds {
        let s = run_seed(seed, &want).await;
        stats.invocations += s.invocations;
        stats.parent_crashes += s.parent_crashes;
        stats.child_crashes += s.child_crashes;
        stats.stale_parent_redeliveries += s.stale_parent_redeliveries;
    }
    eprintln!(
        "{seeds} seeds: {} invocations, {} crashes in the parent, {} in the children, {} stale parent redeliveries",
        stats.invocations, stats.parent_crashes, stats.child_crashes, stats.stale_parent_redeliveries
    );
    assert!(
        stats.parent_crashes > 30 && stats.child_crashes > 30,
        "the test must crash both"
    );
    assert!(stats.stale_parent_redeliveries > 0);
}
