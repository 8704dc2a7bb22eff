//! # shardflow-testkit
//!
//! Clients of the emulated AWS services for integration tests. The endpoint comes from
//! `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL` (as the AWS SDKs read them); `scripts/test`
//! starts LocalStack and sets them. A test that needs a service fails with a message saying so
//! when neither is set — it never passes without the service.
//!
//! [`browser`]: headless chromium for the browser tests of the dashboard and the demo report.

pub mod browser;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

/// The endpoint of `service` (e.g. `DYNAMODB`) from the environment.
pub fn endpoint(service: &str) -> String {
    std::env::var(format!("AWS_ENDPOINT_URL_{service}"))
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|_| {
            panic!(
                "set AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_{service}) to the emulator; \
                 scripts/test starts LocalStack and sets it (localstack/up, then source localstack/env)"
            )
        })
}

/// A DynamoDB client of the emulator, with static test credentials.
pub fn dynamodb() -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint("DYNAMODB"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// An S3 client of the emulator (path-style addressing, as LocalStack serves it), with static
/// test credentials.
pub fn s3() -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint("S3"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An SNS client of the emulator, with static test credentials.
pub fn sns() -> aws_sdk_sns::Client {
    let config = aws_sdk_sns::Config::builder()
        .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
        .region(aws_sdk_sns::config::Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint("SNS"))
        .build();
    aws_sdk_sns::Client::from_conf(config)
}

/// An SQS client of the emulator, with static test credentials.
pub fn sqs() -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint("SQS"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A Lambda client of the emulator, with static test credentials.
pub fn lambda() -> aws_sdk_lambda::Client {
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint("LAMBDA"))
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

/// A Kinesis client of the emulator, with static test credentials.
pub fn kinesis() -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint("KINESIS"))
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// The connection string of the test Postgres: `SHARDFLOW_TEST_DATABASE_URL`, or the machine's
/// local Postgres (127.0.0.1:5432, user `postgres`, database `test`).
pub fn postgres_url() -> String {
    std::env::var("SHARDFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// A connection to the test Postgres (its connection task spawned on the current tokio
/// runtime). Fails with a message naming the database when it cannot connect.
pub async fn postgres() -> tokio_postgres::Client {
    let url = postgres_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to the test Postgres at {url} (set SHARDFLOW_TEST_DATABASE_URL): {e}")
        });
    tokio::spawn(connection);
    client
}

fn test_credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "shardflow-testkit")
}

/// An S3 client and a fresh bucket (bucket names are lowercase and at most 63 characters).
pub async fn bucket(prefix: &str) -> (aws_sdk_s3::Client, String) {
    let client = s3();
    let mut name = unique_name(prefix).to_lowercase();
    name.truncate(63);
    client
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create the bucket in the emulator");
    (client, name)
}

/// An SQS client and a fresh standard queue's URL.
pub async fn queue(prefix: &str) -> (aws_sdk_sqs::Client, String) {
    let client = sqs();
    let url = client
        .create_queue()
        .queue_name(unique_name(prefix))
        .send()
        .await
        .expect("create the queue in the emulator")
        .queue_url()
        .expect("a queue URL")
        .to_owned();
    (client, url)
}

/// A name unique to this run, for tables, buckets and streams of one test.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("shardflow-test-{prefix}-{nanos}")
}

/// A DynamoDB client and a fresh state table.
pub async fn state_table(prefix: &str) -> (aws_sdk_dynamodb::Client, String) {
    let client = dynamodb();
    let table = unique_name(prefix);
    shardflow_state_dynamodb::create_state_table(&client, &table)
        .await
        .expect("create the state table in the emulator");
    (client, table)
}

/// A Kinesis client and a fresh stream of `shards` shards, waited for until it is active.
pub async fn kinesis_stream(prefix: &str, shards: i32) -> (aws_sdk_kinesis::Client, String) {
    let client = kinesis();
    let name = unique_name(prefix);
    // Kinesis allows a few streams in CREATING at once (LimitExceededException beyond): tests
    // that create many streams in parallel wait for their turn
    let mut attempt = 0;
    while let Err(e) = client
        .create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
    {
        let limited = e.as_service_error().is_some_and(|s| s.is_limit_exceeded_exception());
        attempt += 1;
        if !limited || attempt >= 120 {
            panic!(
                "create stream {name}: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for _ in 0..300 {
        let summary = client
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "describe stream {name}: {}",
                    aws_sdk_kinesis::error::DisplayErrorContext(e)
                )
            });
        let active = summary
            .stream_description_summary()
            .is_some_and(|s| s.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active);
        if active {
            return (client, name);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("stream {name} did not become active within 30 s");
}

/// A record read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// The shard it was stored in.
    pub shard_id: String,
    /// Its sequence number.
    pub sequence_number: String,
    /// Its partition key.
    pub partition_key: String,
    /// Its payload.
    pub data: Vec<u8>,
    /// When the stream stored it (`ApproximateArrivalTimestamp`, ms since the epoch; 0 when the
    /// stream did not say).
    pub arrival_ms: i64,
}

/// Reads every shard of `stream` from the start (each shard's records in stored order, shards one
/// after another) until at least `expected` records were read, or panics after `timeout`.
pub async fn read_stream(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    expected: usize,
    timeout: std::time::Duration,
) -> Vec<ReadRecord> {
    let started = std::time::Instant::now();
    loop {
        let records = read_stream_once(client, stream).await;
        if records.len() >= expected {
            return records;
        }
        assert!(
            started.elapsed() < timeout,
            "read {} of {expected} records from {stream} within {timeout:?}",
            records.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Reads every shard of `stream` from the start once: what it holds now (each shard's records in
/// stored order, shards one after another).
pub async fn read_stream_once(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<ReadRecord> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "list shards of {stream}: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            )
        });
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap_or_else(|e| panic!("shard iterator: {}", aws_sdk_kinesis::error::DisplayErrorContext(e)))
            .shard_iterator()
            .map(str::to_owned);
        while let Some(it) = iterator {
            let page = client
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get records: {}", aws_sdk_kinesis::error::DisplayErrorContext(e)));
            let n = page.records().len();
            out.extend(page.records().iter().map(|r| {
                ReadRecord {
                    shard_id: shard.shard_id().to_owned(),
                    sequence_number: r.sequence_number().to_owned(),
                    partition_key: r.partition_key().unwrap_or_default().to_owned(),
                    data: r.data().as_ref().to_vec(),
                    arrival_ms: r
                        .approximate_arrival_timestamp()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                }
            }));
            // Caught up with the shard (an empty page can also mean "behind, try on").
            let caught_up = page.millis_behind_latest().is_none_or(|ms| ms == 0);
            if caught_up && n < 10_000 {
                break;
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    out
}

/// Deletes a test stream (best effort: the emulator keeps every record of a stream in memory,
/// so tests delete theirs when done).
pub async fn delete_stream(client: &aws_sdk_kinesis::Client, stream: &str) {
    let _ = client
        .delete_stream()
        .stream_name(stream)
        .enforce_consumer_deletion(true)
        .send()
        .await;
}
