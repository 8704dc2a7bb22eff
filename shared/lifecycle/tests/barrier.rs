//! The pause barrier against LocalStack (Lambda, Kinesis, DynamoDB, S3): a savepoint with a
//! function disables its Kinesis event source mapping, waits for the commits still in flight,
//! saves the state they left, and enables the mapping again (or leaves it disabled).
//!
//! The stage itself runs in-process: a task plays the function, committing batches while the
//! mapping is enabled and two more after it is disabled (invocations in flight).
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack.

#[path = "../../lambda/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{event, purchases, stage};
use shardflow_lifecycle::{create_savepoint, EventSourceBarrier, S3Location, SavepointOptions};

const SHARD: &str = "shardId-000000000000";

/// CRC-32 (IEEE), bit by bit: the zip checksum of a few bytes.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A zip archive holding one executable file `bootstrap` (stored, not compressed).
fn zip_with_bootstrap() -> Vec<u8> {
    let body = b"#!/bin/sh\nexit 1\n";
    let crc = crc32(body);
    let name = b"bootstrap";
    let mut out = Vec::new();
    let le16 = |v: u16| v.to_le_bytes();
    let le32 = |v: u32| v.to_le_bytes();
    // Local file header.
    out.extend_from_slice(&le32(0x0403_4b50));
    out.extend_from_slice(&le16(20)); // version needed
    out.extend_from_slice(&le16(0)); // flags
    out.extend_from_slice(&le16(0)); // stored
    out.extend_from_slice(&le32(0)); // time, date
    out.extend_from_slice(&le32(crc));
    out.extend_from_slice(&le32(body.len() as u32));
    out.extend_from_slice(&le32(body.len() as u32));
    out.extend_from_slice(&le16(name.len() as u16));
    out.extend_from_slice(&le16(0));
    out.extend_from_slice(name);
    out.extend_from_slice(body);
    let central = out.len() as u32;
    // Central directory entry (made by Unix, mode 0755).
    out.extend_from_slice(&le32(0x0201_4b50));
    out.extend_from_slice(&le16(0x031e));
    out.extend_from_slice(&le16(20));
    out.extend_from_slice(&le16(0));
    out.extend_from_slice(&le16(0));
    out.extend_from_slice(&le32(0));
    out.extend_from_slice(&le32(crc));
    out.extend_from_slice(&le32(body.len() as u32));
    out.extend_from_slice(&le32(body.len() as u32));
    out.extend_from_slice(&le16(name.len() as u16));
    out.extend_from_slice(&le16(0)); // extra
    out.extend_from_slice(&le16(0)); // comment
    out.extend_from_slice(&le16(0)); // disk
    out.extend_from_slice(&le16(0)); // internal attributes
    out.extend_from_slice(&le32(0o100_755 << 16));
    out.extend_from_slice(&le32(0)); // offset of the local header
    out.extend_from_slice(name);
    let central_len = out.len() as u32 - central;
    // End of central directory.
    out.extend_from_slice(&le32(0x0605_4b50));
    out.extend_from_slice(&le16(0));
    out.extend_from_slice(&le16(0));
    out.extend_from_slice(&le16(1));
    out.extend_from_slice(&le16(1));
    out.extend_from_slice(&le32(central_len));
    out.extend_from_slice(&le32(central));
    out.extend_from_slice(&le16(0));
    out
}

#[test]
fn crc32_is_the_zip_checksum() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

/// A function (never invoked: its stream stays empty) with an enabled Kinesis mapping.
async fn function_with_mapping(lambda: &aws_sdk_lambda::Client) -> (String, String, String) {
    let (kinesis, stream) = shardflow_testkit::kinesis_stream("barrier", 1).await;
    let arn = kinesis
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .unwrap()
        .stream_description_summary()
        .unwrap()
        .stream_arn()
        .to_owned();
    let function = shardflow_testkit::unique_name("barrier-fn");
    lambda
        .create_function()
        .function_name(&function)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role("arn:aws:iam::000000000000:role/lambda")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(zip_with_bootstrap()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let uuid = lambda
        .create_event_source_mapping()
        .function_name(&function)
        .event_source_arn(&arn)
        .starting_position(aws_sdk_lambda::types::EventSourcePosition::Latest)
        .send()
        .await
        .unwrap()
        .uuid
        .unwrap();
    let barrier = EventSourceBarrier::new(lambda.clone(), &function);
    for _ in 0..120 {
        if barrier.state_of(&uuid).await.unwrap() == "Enabled" {
            return (function, uuid, stream);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("mapping {uuid} never enabled");
}

async fn clean_up(lambda: &aws_sdk_lambda::Client, function: &str, uuid: &str, stream: &str) {
    let _ = lambda.delete_event_source_mapping().uuid(uuid).send().await;
    let _ = lambda.delete_function().function_name(function).send().await;
    let _ = shardflow_testkit::kinesis()
        .delete_stream()
        .stream_name(stream)
        .send()
        .await;
}

#[tokio::test]
async fn a_paused_savepoint_waits_for_commits_in_flight_and_enables_the_mapping_again() {
    let lambda = shardflow_testkit::lambda();
    let (function, uuid, stream) = function_with_mapping(&lambda).await;
    let barrier = EventSourceBarrier::new(lambda.clone(), &function);
    let blue = Arc::new(stage("barrier", None).await);
    blue.handle(event(SHARD, &purchases(0..10))).await.unwrap();
    // The "function": commits while the mapping is enabled, and twice more, 400 ms apart, once it
    // is disabled (invocations that were running when polling stopped).
    let playing = {
        let (blue, barrier, uuid) = (blue.clone(), barrier.clone(), uuid.clone());
        tokio::spawn(async move {
            let mut next = 10;
            while barrier.state_of(&uuid).await.unwrap() == "Enabled" {
                blue.handle(event(SHARD, &purchases(next..next + 5))).await.unwrap();
                next += 5;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                blue.handle(event(SHARD, &purchases(next..next + 5))).await.unwrap();
                next += 5;
            }
            next - 1
        })
    };
    let (_, bucket) = shardflow_testkit::bucket("barrier").await;
    let mut options = SavepointOptions::new("revenue", blue.table(), S3Location::new(&bucket, "paused"));
    options.barrier = Some(barrier.clone());
    options.quiet_period = Duration::from_millis(1500);
    options.max_attempts = 1;
    let report = create_savepoint(&shardflow_testkit::dynamodb(), &shardflow_testkit::s3(), &options)
        .await
        .unwrap();
    let last = playing.await.unwrap();
    let m = &report.manifest;
    assert_eq!(m.consistency.paused_function.as_deref(), Some(function.as_str()));
    assert_eq!(m.consistency.paused_mappings, vec![uuid.clone()]);
    assert!(m.consistency.single_cut);
    assert_eq!(
        m.shards[0].sequence_number.as_deref(),
        Some(format!("4965{last:020}").as_str()),
        "the savepoint holds the commits in flight"
    );
    assert_eq!(report.reread_shards, 0);
    assert_eq!(barrier.state_of(&uuid).await.unwrap(), "Enabled", "enabled again");

    // Leaving it disabled (the stage is being replaced).
    options.location = S3Location::new(&bucket, "final");
    options.leave_disabled = true;
    options.quiet_period = Duration::from_millis(200);
    let report = create_savepoint(&shardflow_testkit::dynamodb(), &shardflow_testkit::s3(), &options)
        .await
        .unwrap();
    assert_eq!(report.manifest.shards[0].sequence_number, m.shards[0].sequence_number);
    assert_eq!(barrier.state_of(&uuid).await.unwrap(), "Disabled");
    clean_up(&lambda, &function, &uuid, &stream).await;
}
