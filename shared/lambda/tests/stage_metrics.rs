//! The EMF metrics line of a stage that reads another stage's Kinesis output, against the DynamoDB
//! of LocalStack: a result the upstream sink wrote twice (a new record, same id) is dropped by the
//! pipeline's `deduplicate` and counted as `DuplicatesDropped`; a batch Lambda redelivers is
//! skipped before the engine and counted as `DuplicatesSkipped`.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack (`source localstack/env`).

mod common;

use std::sync::{Arc, Mutex};

use common::event;
use shardflow_engine::{Pipeline, WatermarkStrategy};
use shardflow_lambda::{Stage, StageConfig};
use shardflow_stage::JsonDecoder;
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink};

const SHARD: &str = "shardId-000000000000";

/// The wire form of a result on the next stage's stream (shardflow-connectors' `KinesisEnvelope`:
/// `{"id": "<32 hex digits>", "value": ...}`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
struct Envelope {
    id: String,
    value: Total,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
struct Total {
    product: u32,
    window_start: i64,
    cents: i64,
}

/// The downstream pipeline: drop repeated ids, pass the totals on.
fn downstream() -> Pipeline<Envelope, Envelope> {
    Pipeline::builder("downstream")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(60_000).unwrap())
        .event_time(|e: &Envelope| e.value.window_start)
        .deduplicate(|e: &Envelope| u128::from_str_radix(&e.id, 16).ok(), 3_600_000)
        .sink("totals")
}

fn envelope(n: u64) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        id: format!("{:032x}", 0xfeed_0000 + n),
        value: Total {
            product: n as u32,
            window_start: 1_700_000_000_000 + n as i64 * 10_000,
            cents: 100 * n as i64,
        },
    })
    .unwrap()
}

fn metric(line: &serde_json::Value, name: &str) -> u64 {
    line[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} missing in {line}"))
}

#[tokio::test]
async fn a_result_written_twice_upstream_is_counted_as_dropped_in_the_emf_line() {
    let (client, table) = shardflow_testkit::state_table("metrics").await;
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let written = lines.clone();
    let stage = Stage::new(
        "downstream",
        downstream(),
        JsonDecoder::<Envelope>::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client,
        &table,
        StageConfig::default(),
    )
    .unwrap()
    .with_metrics_writer(Arc::new(move |line: &str| {
        written.lock().unwrap().push(line.to_owned())
    }));
    let emf = |i: usize| -> serde_json::Value { serde_json::from_str(&lines.lock().unwrap()[i]).unwrap() };

    // Results 1, 2, 3; then the upstream sink's retry wrote result 2 again, before 4 and 5.
    stage
        .handle(event(SHARD, &[(0, envelope(1)), (1, envelope(2)), (2, envelope(3))]))
        .await
        .unwrap();
    let second = event(SHARD, &[(3, envelope(2)), (4, envelope(4)), (5, envelope(5))]);
    stage.handle(second.clone()).await.unwrap();
    // Lambda redelivers the second batch.
    stage.handle(second).await.unwrap();

    assert_eq!(lines.lock().unwrap().len(), 3, "one line per batch");
    let first = emf(0);
    assert_eq!(
        (metric(&first, "RecordsIn"), metric(&first, "DuplicatesDropped")),
        (3, 0)
    );
    let second = emf(1);
    assert_eq!(metric(&second, "RecordsIn"), 3);
    assert_eq!(metric(&second, "DuplicatesDropped"), 1, "the upstream repeat: {second}");
    assert_eq!(metric(&second, "DuplicatesSkipped"), 0);
    assert_eq!(metric(&second, "ResultsOut"), 2);
    let declared = second["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
    assert!(
        declared.iter().any(|d| d["Name"] == "DuplicatesDropped"),
        "{declared:?}"
    );
    let redelivered = emf(2);
    assert_eq!(
        (
            metric(&redelivered, "DuplicatesSkipped"),
            metric(&redelivered, "DuplicatesDropped"),
            metric(&redelivered, "StateItemsWritten")
        ),
        (3, 0, 0),
        "a redelivered batch is skipped before the engine and commits nothing"
    );

    let mut ids: Vec<String> = stage.sink().distinct().into_iter().map(|o| o.value.id).collect();
    ids.sort();
    assert_eq!(
        ids,
        (1..=5u64)
            .map(|n| format!("{:032x}", 0xfeed_0000 + n))
            .collect::<Vec<_>>()
    );
    assert_eq!(stage.sink().writes().len(), 5, "the repeat never reached the sink");
}
