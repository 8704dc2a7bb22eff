//! The time of a savepoint and of a restore of a stage holding 100,000 keys' state, against
//! LocalStack. Ignored by default; run in release:
//!
//! ```text
//! AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
//!   cargo test --release -p shardflow-lifecycle --test measure -- --ignored --nocapture
//! ```
//!
//! `SHARDFLOW_MEASURE_KEYS` changes the key count, `SHARDFLOW_MEASURE_SHARDS` the shards (4).

use std::time::Instant;

use base64::Engine as _;
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::{Stage, StageConfig};
use shardflow_lifecycle::{
    create_savepoint, restore_savepoint, stage_status, RestoreOptions, S3Location, SavepointOptions, StatusOptions,
};
use shardflow_stage::{JsonDecoder, ShardBatch};
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct Purchase {
    customer: u32,
    cents: i64,
    ts_ms: i64,
}

type Row = (u32, i64, u64, i64);

/// Revenue per customer per hour: every key holds an open window until the hour ends.
fn hourly() -> Pipeline<Purchase, Row> {
    Pipeline::builder("hourly-revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.customer)
        .window(Windowing::tumbling(3_600_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
            (*k, w.start, n, c)
        })
        .sink("revenue")
}

fn batch(shard: &str, keys: std::ops::Range<u32>) -> ShardBatch {
    let records: Vec<serde_json::Value> = keys
        .map(|k| {
            let data = serde_json::to_vec(&Purchase {
                customer: k,
                cents: 100 + i64::from(k % 1000),
                ts_ms: 1_700_000_000_000 + i64::from(k % 1000),
            })
            .unwrap();
            let seq = format!("4965{k:020}");
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("c{k}"),
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": 1_700_000_000.5,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard}:{seq}"),
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/purchases",
            })
        })
        .collect();
    ShardBatch::from_value(serde_json::json!({ "Records": records })).unwrap()
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run in release with --ignored --nocapture"]
async fn savepoint_and_restore_of_100k_keys() {
    let keys = env("SHARDFLOW_MEASURE_KEYS", 100_000);
    let shards = env("SHARDFLOW_MEASURE_SHARDS", 4).max(1);
    let (client, table) = shardflow_testkit::state_table("measure").await;
    let (s3, bucket) = shardflow_testkit::bucket("measure").await;
    let stage = Stage::new(
        "hourly",
        hourly(),
        JsonDecoder::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client.clone(),
        &table,
        StageConfig::default(),
    )
    .unwrap();
    let per_shard = keys.div_ceil(shards);
    let started = Instant::now();
    for s in 0..shards {
        let shard = format!("shardId-{s:012}");
        let from = s * per_shard;
        let to = ((s + 1) * per_shard).min(keys);
        // Lambda batches are at most 10,000 records.
        for start in (from..to).step_by(10_000) {
            stage
                .handle(batch(&shard, start..(start + 10_000).min(to)))
                .await
                .unwrap();
        }
    }
    eprintln!(
        "stage: {keys} keys over {shards} shard(s) committed in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let source = stage_status(&client, &s3, None, None, &StatusOptions::new("hourly", &table))
        .await
        .unwrap();
    let items: usize = source.shards.iter().map(|s| s.state_items).sum();
    let bytes: u64 = source.shards.iter().map(|s| s.state_bytes).sum();
    eprintln!("state: {items} key-group items, {bytes} bytes");
    for run in 0..3 {
        let started = Instant::now();
        let report = create_savepoint(
            &client,
            &s3,
            &SavepointOptions::new("hourly", &table, S3Location::new(&bucket, &format!("run{run}"))),
        )
        .await
        .unwrap();
        let save_s = started.elapsed().as_secs_f64();
        let (target, table2) = shardflow_testkit::state_table("measure-green").await;
        let started = Instant::now();
        let restored = restore_savepoint(
            &target,
            &s3,
            &RestoreOptions::new(report.location.clone(), "green", &table2),
        )
        .await
        .unwrap();
        let restore_s = started.elapsed().as_secs_f64();
        let green = stage_status(&target, &s3, None, None, &StatusOptions::new("green", &table2))
            .await
            .unwrap();
        assert_eq!(green.shards.iter().map(|s| s.state_items).sum::<usize>(), items);
        assert_eq!(green.shards.iter().map(|s| s.state_bytes).sum::<u64>(), bytes);
        eprintln!(
            "run {run}: savepoint {save_s:.2} s ({} bytes written, {} shard(s)), restore {restore_s:.2} s ({} items written)",
            report.bytes_written,
            report.manifest.shards.len(),
            restored.items_written
        );
    }
}
