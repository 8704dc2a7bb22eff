//! Crash injection: invocations die at random points of the protocol (after load, after the
//! sinks, between the transactions of a commit, before the flip, after the commit) and Lambda
//! redelivers, with random batch boundaries and occasional redelivery of old batches. For every
//! seed the idempotent sink ends with exactly the results of a fault-free run (same ids, same
//! values: zero lost, zero duplicated), and the committed state finishes the same.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{event, revenue, stage, Purchase, Row};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shardflow_engine::{Engine, ResultId};
use shardflow_lambda::{CrashPoint, StageError};
use shardflow_stage::ShardBatch;
use shardflow_state_dynamodb::DynamoDbCheckpointStore;

const SHARD: &str = "shardId-000000000000";
const RECORDS: u64 = 240;

/// 240 purchases of 37 products over 4 minutes, slightly out of order.
fn input() -> Vec<(u64, Vec<u8>)> {
    (0..RECORDS)
        .map(|i| {
            let p = Purchase {
                product: (i * 7 % 37) as u32,
                cents: 50 + (i as i64 * 13) % 400,
                ts_ms: 1_700_000_000_000 + (i as i64) * 1_000 - if i % 5 == 0 { 300 } else { 0 },
            };
            (i, serde_json::to_vec(&p).unwrap())
        })
        .collect()
}

/// The fault-free run: every result by id, and the results of finishing the state.
fn fault_free(input: &[(u64, Vec<u8>)]) -> (BTreeMap<ResultId, Row>, Vec<Row>) {
    let p = revenue(None);
    let mut e = p.engine();
    let part = e.partition(&format!("purchases/{SHARD}"));
    for (_, data) in input {
        e.process(part, 0, 0, serde_json::from_slice(data).unwrap());
    }
    let emitted = e.drain_output().into_iter().map(|o| (o.id, o.value)).collect();
    e.finish();
    let mut rest: Vec<Row> = e.drain_output().into_iter().map(|o| o.value).collect();
    rest.sort();
    (emitted, rest)
}

async fn run_seed(seed: u64, input: &[(u64, Vec<u8>)]) -> (usize, usize) {
    let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(seed)));
    let crashes = Arc::new(Mutex::new(0usize));
    let hook_rng = rng.clone();
    let hook_crashes = crashes.clone();
    let s = stage(&format!("crash{seed}"), None)
        .await
        .max_transaction_items(4)
        .with_crash_hook(Arc::new(move |point: CrashPoint| {
            let p = match point {
                CrashPoint::AfterLoad => 0.05,
                CrashPoint::AfterEmit | CrashPoint::AfterCommit | CrashPoint::AfterProgress => 0.2,
                CrashPoint::Commit(_) => 0.12,
            };
            let crash = hook_rng.lock().unwrap().random_bool(p);
            if crash {
                *hook_crashes.lock().unwrap() += 1;
            }
            crash
        }));
    // Lambda's view: the position after the last batch it saw succeed.
    let mut position = 0usize;
    let mut invocations = 0;
    while position < input.len() {
        invocations += 1;
        assert!(invocations < 2_000, "seed {seed}: no progress");
        let (start, size) = {
            let mut r = rng.lock().unwrap();
            // Now and then Lambda redelivers from an older position.
            let start = if r.random_bool(0.1) {
                position.saturating_sub(r.random_range(0..30))
            } else {
                position
            };
            (start, r.random_range(1..=40))
        };
        let end = (start + size).min(input.len());
        let batch: ShardBatch = event(SHARD, &input[start..end]);
        match s.handle(batch).await {
            Ok(r) => {
                assert!(r.batch_item_failures.is_empty(), "seed {seed}: {r:?}");
                position = position.max(end);
            }
            Err(StageError::InjectedCrash(_)) | Err(StageError::Store(_)) => {}
            Err(e) => panic!("seed {seed}: unexpected error {e}"),
        }
    }
    let (want_emitted, want_rest) = fault_free(input);
    let got: BTreeMap<ResultId, Row> = s.sink().distinct().into_iter().map(|o| (o.id, o.value)).collect();
    let missing: Vec<_> = want_emitted.iter().filter(|(id, v)| got.get(id) != Some(v)).collect();
    let extra: Vec<_> = got.iter().filter(|(id, _)| !want_emitted.contains_key(id)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "seed {seed}: {} results lost or changed (e.g. {:?}), {} unexpected (e.g. {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    // The committed state finishes like the fault-free engine.
    let mut store = DynamoDbCheckpointStore::new(s.client().clone(), s.table(), "revenue", SHARD);
    let loaded = store.load().await.unwrap();
    let mut engine = Engine::restore(&revenue(None), loaded.image.as_ref().unwrap()).unwrap();
    engine.finish();
    let mut rest: Vec<Row> = engine.drain_output().into_iter().map(|o| o.value).collect();
    rest.sort();
    assert_eq!(rest, want_rest, "seed {seed}: committed state differs");
    let crashed = *crashes.lock().unwrap();
    (invocations, crashed)
}

#[tokio::test]
async fn crashes_at_every_step_lose_and_duplicate_nothing() {
    let input = input();
    let mut total_crashes = 0;
    let mut total_invocations = 0;
    for seed in 0..12 {
        let (invocations, crashes) = run_seed(seed, &input).await;
        total_crashes += crashes;
        total_invocations += invocations;
    }
    assert!(total_crashes > 50, "the test must actually crash: {total_crashes}");
    eprintln!("12 seeds: {total_invocations} invocations, {total_crashes} injected crashes");
}
