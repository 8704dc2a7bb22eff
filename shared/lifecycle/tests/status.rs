//! `stage_status` against LocalStack (DynamoDB, S3, Kinesis, SQS): a stage fed with the real
//! records of a stream reports its checkpoint, watermark, pending records, state and the
//! dead-letter queue's depth, equal to what is known of it.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack.

#[path = "../../lambda/tests/common/mod.rs"]
mod common;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use base64::Engine as _;
use common::{purchase, revenue};
use shardflow_lambda::{Stage, StageConfig};
use shardflow_lifecycle::{render_table, stage_status, StageStatus, StatusOptions};
use shardflow_stage::{JsonDecoder, ShardBatch};
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink};

/// A record as read back from the stream.
struct Stored {
    sequence: String,
    data: Vec<u8>,
    arrival_ms: i64,
}

async fn read_shard(kinesis: &aws_sdk_kinesis::Client, stream: &str, shard: &str, expected: usize) -> Vec<Stored> {
    for _ in 0..50 {
        let mut it = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        let mut out = Vec::new();
        for _ in 0..10 {
            let Some(i) = it.take() else { break };
            let page = kinesis.get_records().shard_iterator(i).send().await.unwrap();
            for r in page.records() {
                let at = r.approximate_arrival_timestamp().unwrap();
                out.push(Stored {
                    sequence: r.sequence_number().to_owned(),
                    data: r.data().as_ref().to_vec(),
                    arrival_ms: at.secs() * 1000 + i64::from(at.subsec_nanos() / 1_000_000),
                });
            }
            if page.records().is_empty() {
                break;
            }
            it = page.next_shard_iterator;
        }
        if out.len() >= expected {
            return out;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{expected} records not readable from {shard}");
}

/// The Lambda event of `records` of `shard` of `stream`.
fn event(stream: &str, shard: &str, records: &[Stored]) -> ShardBatch {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "p",
                    "sequenceNumber": r.sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": r.arrival_ms as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard}:{}", r.sequence),
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"),
            })
        })
        .collect();
    ShardBatch::from_value(serde_json::json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn status_reports_positions_watermarks_backlog_state_and_dead_letters() {
    let (kinesis, stream) = shardflow_testkit::kinesis_stream("status", 2).await;
    let shards = kinesis.list_shards().stream_name(&stream).send().await.unwrap();
    let ids: Vec<String> = shards.shards().iter().map(|s| s.shard_id().to_owned()).collect();
    let hash_keys: Vec<String> = shards
        .shards()
        .iter()
        .map(|s| s.hash_key_range().unwrap().starting_hash_key().to_owned())
        .collect();
    // 50 purchases into the first shard, 10 into the second.
    for (i, shard) in (0..60u64).map(|i| (i, usize::from(i >= 50))) {
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("p{i}"))
            .explicit_hash_key(&hash_keys[shard])
            .data(Blob::new(purchase(i)))
            .send()
            .await
            .unwrap();
    }
    let first = read_shard(&kinesis, &stream, &ids[0], 50).await;
    assert_eq!(first.len(), 50);

    let (client, table) = shardflow_testkit::state_table("status").await;
    let stage = Stage::new(
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
    stage.handle(event(&stream, &ids[0], &first[..20])).await.unwrap();
    stage.handle(event(&stream, &ids[0], &first[20..30])).await.unwrap();

    let sqs = shardflow_testkit::sqs();
    let queue = sqs
        .create_queue()
        .queue_name(shardflow_testkit::unique_name("status-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    for i in 0..3 {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(format!("letter {i}"))
            .send()
            .await
            .unwrap();
    }

    let mut options = StatusOptions::new("revenue", &table);
    options.stream = Some(stream.clone());
    options.dlq_url = Some(queue.clone());
    let s3 = shardflow_testkit::s3();
    let before = common_now();
    let status = stage_status(&client, &s3, Some(&kinesis), Some(&sqs), &options)
        .await
        .unwrap();
    let after = common_now();

    // What one engine knows after the same 30 records.
    let p = revenue(None);
    let mut e = p.engine();
    let part = e.partition("x");
    for (i, r) in first[..30].iter().enumerate() {
        e.process(part, i as u64, 0, serde_json::from_slice(&r.data).unwrap());
    }
    let full = e.snapshot_full().unwrap();
    let groups = full.key_groups_written();
    let bytes: u64 = full
        .operators
        .iter()
        .flat_map(|o| &o.key_groups)
        .map(|g| g.bytes.len() as u64)
        .sum();

    assert_eq!(status.shards.len(), 2);
    let a = &status.shards[0];
    assert_eq!(a.shard, ids[0]);
    assert_eq!(a.version, 2, "two commits");
    assert_eq!(a.sequence_number.as_deref(), Some(first[29].sequence.as_str()));
    assert_eq!(a.watermark_ms, Some(e.watermark()));
    let lag = a.watermark_lag_ms.unwrap();
    assert!(lag >= before - e.watermark() && lag <= after - e.watermark(), "{lag}");
    assert_eq!(a.records_in, 30);
    assert_eq!((a.state_items, a.state_bytes), (groups, bytes));
    assert!(groups > 0);
    assert_eq!(a.spilled_items, 0);
    assert_eq!(a.pending_records, Some(20));
    assert!(!a.pending_at_least);
    let age = a.iterator_age_ms.unwrap();
    assert!(
        age >= before - first[30].arrival_ms - 1000 && age <= after - first[30].arrival_ms + 1000,
        "{age}"
    );
    assert_eq!(a.closed, Some(false));
    assert!(a.note.is_none(), "{:?}", a.note);

    // The second shard has no checkpoint: everything in it is pending.
    let b = &status.shards[1];
    assert_eq!(
        (b.shard.as_str(), b.version, b.sequence_number.as_deref()),
        (ids[1].as_str(), 0, None)
    );
    assert_eq!(b.pending_records, Some(10));
    assert_eq!((b.state_items, b.watermark_ms), (0, None));

    assert_eq!((status.dlq_depth, status.dlq_in_flight), (Some(3), Some(0)));

    let table_text = render_table(&status);
    assert!(
        table_text.contains(&ids[0]) && table_text.contains(&ids[1]),
        "{table_text}"
    );
    assert!(table_text.contains("dead letters: 3 queued"), "{table_text}");
    let json = serde_json::to_string(&status).unwrap();
    let back: StageStatus = serde_json::from_str(&json).unwrap();
    assert_eq!(back, status);

    // After the rest of the shard is processed, nothing is pending and the version moved on.
    stage.handle(event(&stream, &ids[0], &first[30..])).await.unwrap();
    let status = stage_status(
        &client,
        &s3,
        Some(&kinesis),
        None,
        &StatusOptions {
            dlq_url: None,
            ..options.clone()
        },
    )
    .await
    .unwrap();
    let a = &status.shards[0];
    assert_eq!(a.version, 3);
    assert_eq!(a.sequence_number.as_deref(), Some(first[49].sequence.as_str()));
    assert_eq!((a.pending_records, a.iterator_age_ms), (Some(0), Some(0)));
    assert_eq!(status.dlq_depth, None);

    // A polling caller leaves out a shard it is done with: neither table nor stream is read for it.
    let status = stage_status(
        &client,
        &s3,
        Some(&kinesis),
        None,
        &StatusOptions {
            dlq_url: None,
            skip_shards: [ids[1].clone()].into(),
            ..options.clone()
        },
    )
    .await
    .unwrap();
    let listed: Vec<&str> = status.shards.iter().map(|s| s.shard.as_str()).collect();
    assert_eq!(listed, [ids[0].as_str()]);
    kinesis.delete_stream().stream_name(&stream).send().await.unwrap();
}

fn common_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
