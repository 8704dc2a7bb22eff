//! One S3 object per event-time bucket (`S3KeyMode::EventTimeBuckets`) behind a Lambda stage
//! with interval commits, on LocalStack (a real stream, the state table, a bucket): two
//! containers taking turns, dying at random points of the protocol while Lambda redelivers to
//! either, end with exactly the objects — same keys, same bytes — of one container that never
//! crashed and committed every batch, and every result is in exactly one object.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use shardflow_connectors::{S3Sink, S3SinkConfig};
use shardflow_engine::combine::Count;
use shardflow_engine::{EventTimeBuckets, Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::{CheckpointInterval, EndOfInput, Stage, StageConfig, StageError};
use shardflow_stage::{InputRecord, JsonDecoder, MemoryDeadLetters, SequenceNumber, ShardBatch};

mod common;

const RECORDS: i64 = 150;
const BATCH: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Purchase {
    product: i64,
    ts_ms: i64,
}

/// Purchases of a product per 2-second window, emitted when the watermark passes the window,
/// and collected in 10-second buckets: results arrive in every batch, buckets close every few.
fn counts() -> Pipeline<Purchase, (i64, i64, u64)> {
    Pipeline::builder("counts")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(1_000).expect("non-negative"))
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.product)
        .window(Windowing::tumbling(2_000).expect("a window size"))
        .trigger(Trigger::at_watermark())
        .aggregate(Count, |k, w, _, n| (*k, w.start, n))
        .sink_with_buckets("counts", EventTimeBuckets::new(10_000).expect("positive"))
}

/// Purchase `i`: one of 5 products, one per 300 ms, every 4th a second late.
fn purchase(i: i64) -> Vec<u8> {
    let late = if i % 4 == 3 { 1_000 } else { 0 };
    serde_json::to_vec(&Purchase {
        product: i % 5,
        ts_ms: 1_700_000_000_000 + i * 300 - late,
    })
    .expect("serializable")
}

/// A stream of one shard holding the purchases, and its records as a Lambda batch carries them.
async fn stream() -> (aws_sdk_kinesis::Client, String, String, Vec<InputRecord>) {
    let (kinesis, stream) = shardflow_testkit::kinesis_stream("buckets", 1).await;
    for i in 0..RECORDS {
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("p{i}"))
            .data(Blob::new(purchase(i)))
            .send()
            .await
            .expect("PutRecord");
    }
    let read = shardflow_testkit::read_stream(&kinesis, &stream, RECORDS as usize, Duration::from_secs(30)).await;
    let shard = read[0].shard_id.clone();
    let records = read
        .into_iter()
        .map(|r| InputRecord {
            sequence: SequenceNumber::parse(&r.sequence_number).expect("a sequence number"),
            partition_key: r.partition_key,
            arrival_ms: 0,
            data: r.data,
        })
        .collect();
    (kinesis, stream, shard, records)
}

type CountStage = Stage<Purchase, (i64, i64, u64), JsonDecoder<Purchase>, S3Sink<(i64, i64, u64)>, MemoryDeadLetters>;

/// A container writing bucket objects under `prefix`, committing every `interval` batches.
fn container(
    table: (&aws_sdk_dynamodb::Client, &str),
    kinesis: &aws_sdk_kinesis::Client,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    interval: u64,
) -> CountStage {
    Stage::new(
        "counts",
        counts(),
        JsonDecoder::new(),
        S3Sink::new(s3.clone(), S3SinkConfig::new(bucket, prefix).event_time_buckets()),
        MemoryDeadLetters::default(),
        table.0.clone(),
        table.1,
        StageConfig::default(),
    )
    .expect("a stage")
    .with_checkpoint_interval(CheckpointInterval::batches(interval))
    .with_kinesis(kinesis.clone())
}

/// Every object under `prefix`, by its key without the prefix.
async fn objects(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for key in common::keys(s3, bucket, prefix).await {
        let body = common::object(s3, bucket, &key).await;
        out.insert(key[prefix.len()..].to_owned(), body);
    }
    out
}

#[tokio::test]
async fn buckets_written_through_crashes_and_redeliveries_equal_an_uninterrupted_runs_objects() {
    let (client, table) = shardflow_testkit::state_table("buckets").await;
    let (kinesis, stream, shard, records) = stream().await;
    let s3 = shardflow_testkit::s3();
    let bucket = common::bucket(&s3, "buckets").await;
    let batches: Vec<ShardBatch> = records
        .chunks(BATCH)
        .map(|c| ShardBatch {
            stream: stream.clone(),
            shard_id: shard.clone(),
            records: c.to_vec(),
        })
        .collect();
    let end = EndOfInput {
        stream: stream.clone(),
        shard_id: shard.clone(),
    };

    // The reference: one container, a commit every batch, no crash (its own state table).
    let (ref_client, ref_table) = shardflow_testkit::state_table("buckets-ref").await;
    let reference = container((&ref_client, &ref_table), &kinesis, &s3, &bucket, "ref", 1);
    for batch in &batches {
        reference.handle(batch.clone()).await.expect("a batch");
    }
    reference.end_of_input(&end).await.expect("end of input");

    // Two containers committing every 4 batches, dying at random protocol points.
    let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(19)));
    let die = {
        let rng = rng.clone();
        Arc::new(move |_| rng.lock().expect("the die").random_bool(0.12))
    };
    let containers = [
        container((&client, &table), &kinesis, &s3, &bucket, "run", 4).with_crash_hook(die.clone()),
        container((&client, &table), &kinesis, &s3, &bucket, "run", 4).with_crash_hook(die),
    ];
    let mut crashes = 0;
    for batch in &batches {
        loop {
            let turn = usize::from(rng.lock().expect("the die").random_bool(0.5));
            match containers[turn].handle(batch.clone()).await {
                Ok(response) => {
                    assert!(response.batch_item_failures.is_empty());
                    break;
                }
                // Lost the fencing race to a crashed invocation's commit, or died: redelivered.
                Err(StageError::InjectedCrash(_)) => crashes += 1,
                Err(StageError::Store(e)) => panic!("a single invocation at a time cannot lose a fence: {e}"),
                Err(e) => panic!("unexpected failure: {e}"),
            }
        }
    }
    loop {
        match containers[0].end_of_input(&end).await {
            Ok(_) => break,
            Err(StageError::InjectedCrash(_)) => crashes += 1,
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
    assert!(crashes >= 5, "the die must crash often enough to matter: {crashes}");

    let want = objects(&s3, &bucket, "ref").await;
    let got = objects(&s3, &bucket, "run").await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same bucket objects"
    );
    assert_eq!(got, want, "with the same bytes");
    assert!(want.len() >= 4, "several buckets: {:?}", want.keys());

    // Every result of one engine is in exactly one object.
    let mut ids = Vec::new();
    for body in want.values() {
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).expect("a JSON line");
            ids.push(v["id"].as_str().expect("an id").to_owned());
        }
    }
    let mut engine = counts().engine();
    let part = engine.partition("x");
    for i in 0..RECORDS {
        let p: Purchase = serde_json::from_slice(&purchase(i)).expect("a purchase");
        engine.process(part, i as u64, 0, p);
    }
    engine.finish();
    let mut expected: Vec<String> = engine.drain_output().iter().map(|o| o.id.to_hex()).collect();
    let written = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), written, "no result in two objects");
    expected.sort();
    assert_eq!(ids, expected, "every result of one engine, once");
}
