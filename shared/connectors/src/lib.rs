//! # shardflow-connectors
//!
//! Destinations of a shardflow stage's results and dead letters, each an implementation of
//! [`shardflow_stage::ResultSink`] or [`shardflow_stage::DeadLetterSink`] that is idempotent
//! under redelivery:
//!
//! | sink | destination | idempotent by |
//! |---|---|---|
//! | [`SnsSink`] | SNS topic | FIFO: `MessageDeduplicationId` = result id; standard: attribute `shardflow-result-id` for consumers |
//! | [`S3Sink`] | S3 objects | deterministic object keys (per result id, or per key and window with the latest pane kept) |
//! | [`PostgresSink`] | Postgres table | upsert on the row's key, a row changes only for a later pane |
//! | [`DynamoDbSink`] | DynamoDB table | conditional `PutItem` per key and window, an item changes only for a later pane |
//! | [`KinesisSink`] | Kinesis stream (the next stage) | the id travels in the record; the next stage drops repeats (`Stream::deduplicate`) |
//! | [`SqsSink`] | SQS queue | FIFO: `MessageDeduplicationId` = result id; standard: attribute `shardflow-result-id` for consumers |
//! | [`SqsDeadLetterSink`] | SQS queue | FIFO: deduplication id = stage/shard/sequence/kind; standard: attribute `shardflow-dead-letter-id` |
//! | [`S3DeadLetterSink`] | S3 objects | deterministic key `dead-letters/{stage}/{shard}/{sequence}-{kind}.json` |
//!
//! A Lambda stage emits its results before it commits its checkpoint, so after a crash the same
//! results (same [`shardflow_engine::ResultId`]s) are emitted again; every sink here turns that
//! repeat into no change of the destination (or, where the service cannot, labels every message
//! with its id so that consumers can). Every failure is a [`shardflow_stage::SinkError`] that
//! carries the service's message; the stage then does not commit and the batch is redelivered.

#![warn(missing_docs)]

mod batching;
mod dead_letter_destination;
mod dynamodb;
mod error;
mod kinesis;
mod message;
mod postgres;
mod retry;
mod s3;
mod s3_dead_letters;
mod sns;
mod sqs;
mod sqs_batch;
mod sqs_dead_letters;

pub use dead_letter_destination::{DeadLetterDestination, DLQ_BUCKET_ENV, DLQ_URL_ENV};
pub use dynamodb::{
    create_upsert_table, item_value, DynamoDbItem, DynamoDbItemError, DynamoDbSink, DynamoDbSinkConfig, ItemKeyFn,
    SortKey, ITEM_RESULT_ID_ATTRIBUTE, MAX_ITEM_BYTES, PANE_INDEX_ATTRIBUTE, PANE_TIMING_ATTRIBUTE,
    PARTITION_KEY_ATTRIBUTE, SORT_KEY_ATTRIBUTE, WINDOW_END_ATTRIBUTE, WINDOW_START_ATTRIBUTE,
};
pub use kinesis::{KinesisSink, KinesisSinkConfig, PartitionKeyFn};
pub use message::{KinesisEnvelope, ResultMessage};
pub use postgres::{quote_identifier, PostgresRow, PostgresSink, PostgresSinkConfig};
pub use retry::RetryPolicy;
pub use s3::{S3KeyMode, S3Sink, S3SinkConfig};
pub use s3_dead_letters::{S3DeadLetterSink, S3DeadLetterSinkConfig};
pub use sns::{MessageGroupFn, SnsSink, SnsSinkConfig, RESULT_ID_ATTRIBUTE};
pub use sqs::{SqsSink, SqsSinkConfig};
pub use sqs_dead_letters::{dead_letter_id, SqsDeadLetterSink, SqsDeadLetterSinkConfig, DEAD_LETTER_ID_ATTRIBUTE};
