//! # shardflow-testkit
//!
//! Clients of the emulated AWS services for integration tests. The endpoint comes from
//! `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL` (as the AWS SDKs read them); `scripts/test`
//! starts LocalStack and sets them. A test that needs a service fails with a message saying so
//! when neither is set — it never passes without the service.

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
