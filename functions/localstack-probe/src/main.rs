//! `localstack-probe`: the Lambda function of the offline LocalStack smoke test.
//!
//! It consumes a Kinesis event source mapping with `ReportBatchItemFailures` on and,
//! for every record, proves that the function can reach each egress of a pipeline:
//!
//! * DynamoDB: an attempt counter per record id (`pk = "attempt#<id>"`, incremented on
//!   every delivery) and, once processed, the record itself (`pk = "record#<id>"`);
//! * S3: the record as `records/<id>.json`;
//! * SNS: one message per processed record.
//!
//! A record's data is JSON: `{"id": "r1", "fail_attempts": 0, "sleep_ms": 0, "alloc_mb": 0}`.
//! While a record has been delivered at most `fail_attempts` times, the function reports
//! it as a batch item failure and stops processing the batch, as an ordered stream
//! consumer must: Lambda then retries the batch from that record's sequence number.
//! `sleep_ms` delays the record (to exercise the function timeout); `alloc_mb` touches
//! that much memory first (to exercise the function's memory size).
//!
//! Configuration (environment): `TABLE_NAME`, `BUCKET_NAME`, `TOPIC_ARN`. The AWS SDK
//! reads the endpoint from `AWS_ENDPOINT_URL` as usual.

use std::time::Duration;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde::{Deserialize, Serialize};

/// What a record asks the probe to do.
#[derive(Debug, Deserialize)]
struct Command {
    id: String,
    #[serde(default)]
    fail_attempts: u64,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    alloc_mb: usize,
}

/// The partial batch response of a Kinesis event source mapping
/// (`FunctionResponseTypes: [ReportBatchItemFailures]`).
#[derive(Debug, Default, Serialize)]
struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Debug, Serialize)]
struct BatchItemFailure {
    #[serde(rename = "itemIdentifier")]
    item_identifier: String,
}

struct Probe {
    dynamodb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    sns: aws_sdk_sns::Client,
    table: String,
    bucket: String,
    topic_arn: String,
}

fn required_env(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set").into())
}

impl Probe {
    async fn from_env() -> Result<Self, Error> {
        let config = aws_config::load_from_env().await;
        // A custom endpoint (LocalStack) is addressed by host name or IP: use path-style
        // S3 URLs there; on AWS keep the default virtual-hosted style.
        let custom_endpoint =
            std::env::var_os("AWS_ENDPOINT_URL").is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(custom_endpoint)
            .build();
        Ok(Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sns: aws_sdk_sns::Client::new(&config),
            table: required_env("TABLE_NAME")?,
            bucket: required_env("BUCKET_NAME")?,
            topic_arn: required_env("TOPIC_ARN")?,
        })
    }

    /// Counts this delivery of record `id` and returns how many deliveries it has had.
    async fn count_attempt(&self, id: &str) -> Result<u64, Error> {
        let out = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("attempt#{id}")))
            .update_expression("ADD attempts :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await?;
        let attempts = out
            .attributes()
            .and_then(|a| a.get("attempts"))
            .and_then(|v| v.as_n().ok())
            .ok_or("UpdateItem returned no attempts attribute")?;
        Ok(attempts.parse()?)
    }

    /// Writes the effects of one record: DynamoDB item, S3 object, SNS message.
    async fn emit(&self, cmd: &Command, attempts: u64, record: &KinesisEventRecord, data: &str) -> Result<(), Error> {
        let seq = &record.kinesis.sequence_number;
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("record#{}", cmd.id)))
            .item("sequence_number", AttributeValue::S(seq.clone()))
            .item("partition_key", AttributeValue::S(record.kinesis.partition_key.clone()))
            .item("attempts", AttributeValue::N(attempts.to_string()))
            .item("data", AttributeValue::S(data.to_owned()))
            .send()
            .await?;
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(format!("records/{}.json", cmd.id))
            .content_type("application/json")
            .body(data.as_bytes().to_vec().into())
            .send()
            .await?;
        let message = serde_json::json!({
            "id": cmd.id,
            "attempts": attempts,
            "sequence_number": seq,
        });
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .message(message.to_string())
            .send()
            .await?;
        Ok(())
    }

    /// Processes one record. `Ok(true)`: done; `Ok(false)`: report it as failed.
    async fn process(&self, record: &KinesisEventRecord) -> Result<bool, Error> {
        let data = std::str::from_utf8(&record.kinesis.data)?;
        let cmd: Command = match serde_json::from_str(data) {
            Ok(cmd) => cmd,
            Err(err) => {
                // A record that can never be processed must not block the shard.
                tracing::warn!(
                    sequence_number = %record.kinesis.sequence_number,
                    error = %err,
                    "skipping a record that is not a probe command"
                );
                return Ok(true);
            }
        };
        let attempts = self.count_attempt(&cmd.id).await?;
        if cmd.alloc_mb > 0 {
            let ballast = vec![1u8; cmd.alloc_mb << 20];
            tracing::info!(id = %cmd.id, mb = cmd.alloc_mb, "allocated ballast");
            tokio::time::sleep(Duration::from_millis(500)).await;
            std::hint::black_box(&ballast);
        }
        if cmd.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(cmd.sleep_ms)).await;
        }
        if attempts <= cmd.fail_attempts {
            tracing::info!(id = %cmd.id, attempts, "failing record on purpose");
            return Ok(false);
        }
        self.emit(&cmd, attempts, record, data).await?;
        tracing::info!(id = %cmd.id, attempts, "processed record");
        Ok(true)
    }

    async fn handle(&self, event: LambdaEvent<KinesisEvent>) -> Result<BatchResponse, Error> {
        let records = &event.payload.records;
        tracing::info!(
            request_id = %event.context.request_id,
            records = records.len(),
            "received Kinesis batch"
        );
        let mut response = BatchResponse::default();
        for record in records {
            let ok = match self.process(record).await {
                Ok(ok) => ok,
                Err(err) => {
                    tracing::error!(
                        sequence_number = %record.kinesis.sequence_number,
                        error = %err,
                        "record failed"
                    );
                    false
                }
            };
            if !ok {
                // Ordered processing: stop here; Lambda checkpoints before this record
                // and delivers it (and everything after it) again.
                response.batch_item_failures.push(BatchItemFailure {
                    item_identifier: record.kinesis.sequence_number.clone(),
                });
                break;
            }
        }
        Ok(response)
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let probe = Probe::from_env().await?;
    let probe = &probe;
    lambda_runtime::run(service_fn(move |event| async move { probe.handle(event).await })).await
}
