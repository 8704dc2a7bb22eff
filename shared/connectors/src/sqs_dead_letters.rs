//! Dead letters to an SQS queue.

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use shardflow_stage::DeadLetter;
use shardflow_stage::{DeadLetterSink, SinkError};
use tracing::{info_span, Instrument};

use crate::batching::chunks;
use crate::error::sink_error;
use crate::retry::RetryPolicy;
use crate::sqs_batch::send_message_batch;

/// The message attribute that carries a dead letter's id ([`dead_letter_id`]) on every message.
pub const DEAD_LETTER_ID_ATTRIBUTE: &str = "shardflow-dead-letter-id";

/// SQS limits: entries per `SendMessageBatch` and bytes per batch.
const MAX_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// The longest `MessageDeduplicationId` SQS accepts.
const MAX_DEDUPLICATION_ID: usize = 128;

/// A dead letter's identity, `{stage}/{shard}/{sequence}/{kind}` — the same record refused for
/// the same reason is the same dead letter. When that is longer than the 128 characters of an SQS
/// deduplication id (or holds characters SQS does not allow there), it is replaced by the 32 hex
/// digits of its XXH3-128 hash, which is as deterministic.
pub fn dead_letter_id(letter: &DeadLetter) -> String {
    let kind = serde_json::to_value(letter.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let id = format!("{}/{}/{}/{kind}", letter.stage, letter.shard_id, letter.sequence_number);
    if id.len() <= MAX_DEDUPLICATION_ID && id.chars().all(|c| c.is_ascii_graphic()) {
        id
    } else {
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(id.as_bytes()))
    }
}

/// Where and how an [`SqsDeadLetterSink`] sends.
#[derive(Debug, Clone)]
pub struct SqsDeadLetterSinkConfig {
    /// The sink's name in errors and spans.
    pub name: String,
    /// The queue; a FIFO queue's URL ends in `.fifo`.
    pub queue_url: String,
    /// Retries of entries SQS refused.
    pub retry: RetryPolicy,
}

impl SqsDeadLetterSinkConfig {
    /// Sending to `queue_url` with default retries.
    pub fn new(queue_url: impl Into<String>) -> Self {
        SqsDeadLetterSinkConfig {
            name: "sqs-dead-letters".to_owned(),
            queue_url: queue_url.into(),
            retry: RetryPolicy::default(),
        }
    }

    /// Whether the queue is a FIFO queue.
    pub fn is_fifo(&self) -> bool {
        self.queue_url.ends_with(".fifo")
    }
}

/// Sends each dead letter as one JSON message body (the [`DeadLetter`]'s serde form: raw bytes
/// in base64, stage, stream, shard, sequence number and reason) with `SendMessageBatch`, 10 per
/// call, retrying only the entries SQS refused.
///
/// Idempotence contract: on a FIFO queue the `MessageDeduplicationId` is [`dead_letter_id`]
/// (and the `MessageGroupId` is `{stage}/{shard}`, keeping a shard's dead letters in order), so
/// SQS drops a resent dead letter within its 5-minute deduplication interval. On a standard queue
/// every message carries the id in the attribute [`DEAD_LETTER_ID_ATTRIBUTE`] for consumers to
/// deduplicate on.
pub struct SqsDeadLetterSink {
    client: aws_sdk_sqs::Client,
    config: SqsDeadLetterSinkConfig,
}

impl SqsDeadLetterSink {
    /// A sink sending with `client` as `config` says.
    pub fn new(client: aws_sdk_sqs::Client, config: SqsDeadLetterSinkConfig) -> Self {
        SqsDeadLetterSink { client, config }
    }

    fn entry(
        &self,
        index: usize,
        letter: &DeadLetter,
        body: String,
    ) -> Result<SendMessageBatchRequestEntry, SinkError> {
        let id = dead_letter_id(letter);
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(id.clone())
            .build()
            .map_err(|e| sink_error(&self.config.name, "building a message attribute", e))?;
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(body)
            .message_attributes(DEAD_LETTER_ID_ATTRIBUTE, attribute);
        if self.config.is_fifo() {
            entry = entry
                .message_deduplication_id(id)
                .message_group_id(format!("{}/{}", letter.stage, letter.shard_id));
        }
        entry
            .build()
            .map_err(|e| sink_error(&self.config.name, "building a send entry", e))
    }

    /// Sends one call's entries, retrying the refused ones.
    async fn send_batch(&self, entries: Vec<SendMessageBatchRequestEntry>) -> Result<(), SinkError> {
        let c = &self.config;
        send_message_batch(&self.client, &c.name, &c.queue_url, &c.retry, entries).await
    }
}

impl DeadLetterSink for SqsDeadLetterSink {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        let span = info_span!("sqs_dead_letters", sink = %self.config.name, queue = %self.config.queue_url, letters = letters.len());
        async {
            let name = &self.config.name;
            let bodies = letters
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| sink_error(name, "serializing a dead letter", e))?;
            let sizes: Vec<usize> = bodies
                .iter()
                .map(|b| b.len() + DEAD_LETTER_ID_ATTRIBUTE.len() + 160)
                .collect();
            let calls = chunks(&sizes, MAX_ENTRIES, MAX_BATCH_BYTES).map_err(|i| {
                sink_error(
                    name,
                    "a dead letter is too large for SQS (use the S3 dead-letter sink)",
                    format!(
                        "{} is {} bytes (limit {MAX_BATCH_BYTES})",
                        dead_letter_id(&letters[i]),
                        sizes[i]
                    ),
                )
            })?;
            let mut bodies = bodies.into_iter();
            for call in calls {
                let mut entries = Vec::with_capacity(call.len());
                for (i, body) in call.clone().zip(bodies.by_ref()) {
                    entries.push(self.entry(i - call.start, &letters[i], body)?);
                }
                self.send_batch(entries).await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}
