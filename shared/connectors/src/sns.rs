//! Results to an SNS topic.

use std::sync::Arc;

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use serde::Serialize;
use shardflow_engine::Output;
use shardflow_stage::{ResultSink, SinkError};
use tracing::{info_span, Instrument};

use crate::batching::chunks;
use crate::error::{sdk_error, sink_error};
use crate::message::ResultMessage;
use crate::retry::{entry_failure, send_with_retries, RetryPolicy};

/// The message attribute that carries a result's id (32 hex digits) on every message.
pub const RESULT_ID_ATTRIBUTE: &str = "shardflow-result-id";

/// SNS limits: entries per `PublishBatch` and bytes per batch (which is also the message limit).
const MAX_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Chooses a result's `MessageGroupId` on a FIFO topic (order holds within a group).
pub type MessageGroupFn<Out> = Arc<dyn Fn(&Output<Out>) -> String + Send + Sync>;

/// Where and how an [`SnsSink`] publishes.
pub struct SnsSinkConfig<Out> {
    /// The sink's name in errors and spans.
    pub name: String,
    /// The topic; a FIFO topic's ARN ends in `.fifo`.
    pub topic_arn: String,
    /// The `MessageGroupId` of a result on a FIFO topic (default: the constant `shardflow`, one
    /// ordered group). Ignored on a standard topic.
    pub message_group: MessageGroupFn<Out>,
    /// Retries of entries SNS refused.
    pub retry: RetryPolicy,
}

impl<Out> SnsSinkConfig<Out> {
    /// Publishing to `topic_arn`, one message group, default retries.
    pub fn new(topic_arn: impl Into<String>) -> Self {
        SnsSinkConfig {
            name: "sns".to_owned(),
            topic_arn: topic_arn.into(),
            message_group: Arc::new(|_| "shardflow".to_owned()),
            retry: RetryPolicy::default(),
        }
    }

    /// The same configuration with `f` choosing the message group.
    pub fn message_group(mut self, f: impl Fn(&Output<Out>) -> String + Send + Sync + 'static) -> Self {
        self.message_group = Arc::new(f);
        self
    }

    /// Whether the topic is a FIFO topic.
    pub fn is_fifo(&self) -> bool {
        self.topic_arn.ends_with(".fifo")
    }
}

/// Publishes each result as one JSON message ([`ResultMessage`]) with `PublishBatch`, 10 per
/// call, retrying only the entries SNS refused.
///
/// Idempotence contract: on a FIFO topic the `MessageDeduplicationId` is the result's id, so SNS
/// drops a republished result within its 5-minute deduplication interval — a redelivered batch
/// (the Lambda retries within seconds) publishes nothing new. On a standard topic SNS cannot
/// deduplicate; every message carries the id in the attribute [`RESULT_ID_ATTRIBUTE`] and
/// consumers must deduplicate on it (or upsert on it). In both cases a later pane of a window is
/// a new message with a higher `pane_index`, which supersedes the earlier one.
pub struct SnsSink<Out> {
    client: aws_sdk_sns::Client,
    config: SnsSinkConfig<Out>,
}

impl<Out> SnsSink<Out> {
    /// A sink publishing with `client` as `config` says.
    pub fn new(client: aws_sdk_sns::Client, config: SnsSinkConfig<Out>) -> Self {
        SnsSink { client, config }
    }

    fn entry(&self, index: usize, output: &Output<Out>, body: String) -> Result<PublishBatchRequestEntry, SinkError> {
        let id = output.id.to_hex();
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(id.clone())
            .build()
            .map_err(|e| sink_error(&self.config.name, "building a message attribute", e))?;
        let mut entry = PublishBatchRequestEntry::builder()
            .id(index.to_string())
            .message(body)
            .message_attributes(RESULT_ID_ATTRIBUTE, attribute);
        if self.config.is_fifo() {
            entry = entry
                .message_deduplication_id(id)
                .message_group_id((self.config.message_group)(output));
        }
        entry
            .build()
            .map_err(|e| sink_error(&self.config.name, "building a publish entry", e))
    }

    /// Publishes one call's entries, retrying the refused ones.
    async fn publish(&self, entries: Vec<PublishBatchRequestEntry>) -> Result<(), SinkError> {
        let name = &self.config.name;
        send_with_retries(name, "PublishBatch", &self.config.retry, entries, |entries| async {
            let response = self
                .client
                .publish_batch()
                .topic_arn(&self.config.topic_arn)
                .set_publish_batch_request_entries(Some(entries.clone()))
                .send()
                .await
                .map_err(|e| sdk_error(name, "PublishBatch", e))?;
            let failures = response
                .failed()
                .iter()
                .map(|f| {
                    let index = entries.iter().position(|e| e.id == f.id);
                    entry_failure(index, f.sender_fault, &f.code, f.message.as_deref())
                })
                .collect();
            Ok((entries, failures))
        })
        .await
    }
}

impl<Out: Serialize + Send + Sync> ResultSink<Out> for SnsSink<Out> {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        let span =
            info_span!("sns_emit", sink = %self.config.name, topic = %self.config.topic_arn, results = outputs.len());
        async {
            let name = &self.config.name;
            let bodies = outputs
                .iter()
                .map(|o| serde_json::to_string(&ResultMessage::of(o)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| sink_error(name, "serializing a result", e))?;
            // The attribute and its name count towards the size limit, too.
            let sizes: Vec<usize> = bodies
                .iter()
                .map(|b| b.len() + RESULT_ID_ATTRIBUTE.len() + 48)
                .collect();
            let calls = chunks(&sizes, MAX_ENTRIES, MAX_BATCH_BYTES).map_err(|i| {
                sink_error(
                    name,
                    "a result is too large for SNS",
                    format!(
                        "result {} is {} bytes (limit {MAX_BATCH_BYTES})",
                        outputs[i].id, sizes[i]
                    ),
                )
            })?;
            let mut bodies = bodies.into_iter();
            for call in calls {
                let mut entries = Vec::with_capacity(call.len());
                for (i, body) in call.clone().zip(bodies.by_ref()) {
                    entries.push(self.entry(i - call.start, &outputs[i], body)?);
                }
                self.publish(entries).await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}
