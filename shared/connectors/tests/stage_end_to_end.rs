//! A Lambda stage writing to the real sinks, crashing at random points of its protocol while
//! Lambda redelivers: the Postgres table ends with exactly the latest pane of every window of a
//! fault-free run, and the S3 dead-letter prefix with each undecodable record once.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use shardflow_connectors::{PostgresRow, PostgresSink, PostgresSinkConfig, S3DeadLetterSink, S3DeadLetterSinkConfig};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Firing, Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::{CrashPoint, Stage, StageConfig, StageError};
use shardflow_stage::{JsonDecoder, ShardBatch};
use tokio_postgres::types::ToSql;

const SHARD: &str = "shardId-000000000000";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Purchase {
    product: i64,
    cents: i64,
    ts_ms: i64,
}

/// Revenue of a product in a 10-second window, so far.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Revenue {
    product: i64,
    window_start: i64,
    orders: i64,
    cents: i64,
}

impl PostgresRow for Revenue {
    const TABLE: &'static str = "revenue";
    const KEY_COLUMNS: &'static [&'static str] = &["product", "window_start"];
    const COLUMNS: &'static [&'static str] = &["orders", "cents"];
    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.product, &self.window_start, &self.orders, &self.cents]
    }
}

/// Tumbling 10 s windows with an early (accumulating) pane every 3 purchases of a product: many
/// panes per window, so that only the latest may remain.
fn revenue() -> Pipeline<Purchase, Revenue> {
    Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).expect("non-negative"))
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.product)
        .window(Windowing::tumbling(10_000).expect("a window size"))
        .trigger(
            Trigger::at_watermark()
                .with_early_firings(Firing {
                    elements: Some(3),
                    processing_ms: None,
                })
                .accumulating(),
        )
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| Revenue {
            product: *k,
            window_start: w.start,
            orders: n as i64,
            cents: c,
        })
        .sink("revenue")
}

/// 150 purchases of 7 products, one per 400 ms, every 23rd record undecodable.
fn input() -> Vec<Vec<u8>> {
    (0..150i64)
        .map(|i| {
            if i % 23 == 22 {
                format!("{{\"product\": {i}, \"cents\":").into_bytes()
            } else {
                serde_json::to_vec(&Purchase {
                    product: i * 5 % 7,
                    cents: 100 + i,
                    ts_ms: 1_795_651_200_000 + i * 400,
                })
                .expect("JSON")
            }
        })
        .collect()
}

fn sequence(i: usize) -> String {
    format!("4965{i:020}")
}

/// Records `start..end` of `input` as Lambda sends them.
fn event(input: &[Vec<u8>], start: usize, end: usize) -> ShardBatch {
    let records: Vec<serde_json::Value> = (start..end)
        .map(|i| {
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("p{i}"),
                    "sequenceNumber": sequence(i),
                    "data": base64::engine::general_purpose::STANDARD.encode(&input[i]),
                    "approximateArrivalTimestamp": 1_795_651_200.5 + i as f64,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{SHARD}:{}", sequence(i)),
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/purchases",
            })
        })
        .collect();
    ShardBatch::from_value(serde_json::json!({ "Records": records })).expect("a Kinesis event")
}

/// The latest pane of every window a fault-free engine fires for the decodable input.
fn fault_free(input: &[Vec<u8>]) -> Vec<Revenue> {
    let mut engine = revenue().engine();
    let part = engine.partition("x");
    for (i, data) in input.iter().enumerate() {
        if let Ok(p) = serde_json::from_slice::<Purchase>(data) {
            engine.process(part, i as u64, 0, p);
        }
    }
    let mut latest: BTreeMap<(i64, i64), (u32, Revenue)> = BTreeMap::new();
    for o in engine.drain_output() {
        let pane = o.pane.map(|(_, p)| p.index).unwrap_or(0);
        let entry = latest
            .entry((o.value.product, o.value.window_start))
            .or_insert((pane, o.value.clone()));
        if pane >= entry.0 {
            *entry = (pane, o.value);
        }
    }
    latest.into_values().map(|(_, r)| r).collect()
}

async fn run_seed(seed: u64, input: &[Vec<u8>]) -> usize {
    let admin = shardflow_testkit::postgres().await;
    let schema = format!("shardflow_connectors_stage_{seed}");
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.revenue (
                 product bigint NOT NULL, window_start bigint NOT NULL, orders bigint NOT NULL, cents bigint NOT NULL,
                 result_id text NOT NULL, pane_index bigint NOT NULL, PRIMARY KEY (product, window_start));"
        ))
        .await
        .expect("create the test table");
    let s3 = shardflow_testkit::s3();
    let bucket = common::bucket(&s3, "stage-dl").await;
    let (dynamodb, table) = shardflow_testkit::state_table(&format!("connectors-stage{seed}")).await;

    let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(seed)));
    let crashes = Arc::new(Mutex::new(0usize));
    let (hook_rng, hook_crashes) = (rng.clone(), crashes.clone());
    let stage = Stage::new(
        "revenue",
        revenue(),
        JsonDecoder::<Purchase>::new(),
        PostgresSink::<Revenue>::new(
            shardflow_testkit::postgres().await,
            PostgresSinkConfig::for_row::<Revenue>().table(format!("{schema}.revenue")),
        ),
        S3DeadLetterSink::new(s3.clone(), S3DeadLetterSinkConfig::new(&bucket)),
        dynamodb,
        &table,
        StageConfig::default(),
    )
    .expect("parallelization factor 1 is supported")
    .with_crash_hook(Arc::new(move |point: CrashPoint| {
        let p = match point {
            CrashPoint::AfterLoad => 0.05,
            CrashPoint::AfterEmit | CrashPoint::AfterCommit | CrashPoint::AfterProgress => 0.25,
            CrashPoint::Commit(_) => 0.1,
        };
        let crash = hook_rng.lock().map(|mut r| r.random_bool(p)).unwrap_or(false);
        if crash {
            *hook_crashes.lock().expect("the counter") += 1;
        }
        crash
    }));

    // Lambda's view: the position after the last batch that succeeded; now and then it
    // redelivers from an older position.
    let mut position = 0;
    let mut invocations = 0;
    while position < input.len() {
        invocations += 1;
        assert!(invocations < 1_000, "seed {seed}: no progress");
        let (start, size) = {
            let mut r = rng.lock().expect("the rng");
            let start = if r.random_bool(0.15) {
                position.saturating_sub(r.random_range(0..25))
            } else {
                position
            };
            (start, r.random_range(1..=30))
        };
        let end = (start + size).min(input.len());
        match stage.handle(event(input, start, end)).await {
            Ok(response) => {
                assert!(response.batch_item_failures.is_empty(), "seed {seed}: {response:?}");
                position = position.max(end);
            }
            Err(StageError::InjectedCrash(_)) | Err(StageError::Store(_)) => {}
            Err(e) => panic!("seed {seed}: unexpected error {e}"),
        }
    }

    let rows: Vec<Revenue> = admin
        .query(
            &format!(
                "SELECT product, window_start, orders, cents FROM {schema}.revenue ORDER BY product, window_start"
            ),
            &[],
        )
        .await
        .expect("read the table")
        .iter()
        .map(|r| Revenue {
            product: r.get(0),
            window_start: r.get(1),
            orders: r.get(2),
            cents: r.get(3),
        })
        .collect();
    assert_eq!(
        rows,
        fault_free(input),
        "seed {seed}: the table holds each window's latest pane"
    );

    let mut undecodable: Vec<String> = (0..input.len())
        .filter(|i| i % 23 == 22)
        .map(|i| format!("dead-letters/revenue/{SHARD}/{}-undecodable.json", sequence(i)))
        .collect();
    undecodable.sort();
    assert_eq!(
        common::keys(&s3, &bucket, "dead-letters/").await,
        undecodable,
        "seed {seed}: each undecodable record once"
    );
    let crashed = *crashes.lock().expect("the counter");
    crashed
}

#[tokio::test]
async fn crashes_and_redeliveries_leave_the_sinks_as_a_fault_free_run_would() {
    let input = input();
    assert!(fault_free(&input).len() > 20, "the input fills many windows");
    let mut crashes = 0;
    for seed in 0..4 {
        crashes += run_seed(seed, &input).await;
    }
    assert!(crashes > 10, "the test must actually crash: {crashes}");
}
