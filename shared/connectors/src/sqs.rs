//! Results to an SQS queue.

use std::sync::Arc;

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use serde::Serialize;
use shardflow_engine::Output;
use shardflow_stage::{ResultSink, SinkError};
use tracing::{info_span, Instrument};

use crate::batching::chunks;
use crate::error::sink_error;
use crate::message::ResultMessage;
use crate::retry::RetryPolicy;
use crate::sns::{MessageGroupFn, RESULT_ID_ATTRIBUTE};
use crate::sqs_batch::send_message_batch;

/// SQS limits: entries per `SendMessageBatch` and bytes per call (also the message limit).
const MAX_ENTRIES: usize = 10;
const MAX_CALL_BYTES: usize = 256 * 1024;

/// Where and how an [`SqsSink`] sends.
pub struct SqsSinkConfig<Out> {
    /// The sink's name in errors and spans.
    pub name: String,
    /// The queue's URL; a FIFO queue's ends in `.fifo`.
    pub queue_url: String,
    /// The `MessageGroupId` of a result on a FIFO queue (default: one group, `shardflow`).
    pub message_group: MessageGroupFn<Out>,
    /// Retries of entries SQS refused.
    pub retry: RetryPolicy,
}

impl<Out> SqsSinkConfig<Out> {
    /// Sending to `queue_url`, one message group, default retries.
    pub fn new(queue_url: impl Into<String>) -> Self {
        SqsSinkConfig {
            name: "sqs".to_owned(),
            queue_url: queue_url.into(),
            message_group: Arc::new(|_| "shardflow".to_owned()),
            retry: RetryPolicy::default(),
        }
    }

    /// The same configuration with `f` choosing the message group.
    pub fn message_group(mut self, f: impl Fn(&Output<Out>) -> String + Send + Sync + 'static) -> Self {
        self.message_group = Arc::new(f);
        self
    }
}

/// Sends each result as one JSON message ([`ResultMessage`]) with `SendMessageBatch`, 10 per
/// call, retrying only the entries SQS refused.
///
/// Idempotence contract: on a FIFO queue the `MessageDeduplicationId` is the result's id, so SQS
/// drops a resent result within its 5-minute deduplication interval. On a standard queue SQS
/// cannot deduplicate; every message carries the id in the attribute [`RESULT_ID_ATTRIBUTE`] and
/// consumers deduplicate (or upsert) on it. A later pane is a new message with a higher
/// `pane_index`.
pub struct SqsSink<Out> {
    client: aws_sdk_sqs::Client,
    config: SqsSinkConfig<Out>,
}

impl<Out> SqsSink<Out> {
    /// A sink sending with `client` as `config` says.
    pub fn new(client: aws_sdk_sqs::Client, config: SqsSinkConfig<Out>) -> Self {
        SqsSink { client, config }
    }

    fn entry(
        &self,
        index: usize,
        output: &Output<Out>,
        body: String,
    ) -> Result<SendMessageBatchRequestEntry, SinkError> {
        let name = &self.config.name;
        let id = output.id.to_hex();
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(id.clone())
            .build()
            .map_err(|e| sink_error(name, "building a message attribute", e))?;
        let fifo = self.config.queue_url.ends_with(".fifo");
        SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(body)
            .message_attributes(RESULT_ID_ATTRIBUTE, attribute)
            .set_message_deduplication_id(fifo.then(|| id.clone()))
            .set_message_group_id(fifo.then(|| (self.config.message_group)(output)))
            .build()
            .map_err(|e| sink_error(name, "building a message entry", e))
    }

    /// Sends one call's entries, retrying the refused ones.
    async fn send(&self, entries: Vec<SendMessageBatchRequestEntry>) -> Result<(), SinkError> {
        let c = &self.config;
        send_message_batch(&self.client, &c.name, &c.queue_url, &c.retry, entries).await
    }
}

impl<Out: Serialize + Send + Sync> ResultSink<Out> for SqsSink<Out> {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        let name = &self.config.name;
        let span = info_span!("sqs_emit", sink = %name, queue = %self.config.queue_url, results = outputs.len());
        let mut entries = Vec::with_capacity(outputs.len());
        let mut sizes = Vec::with_capacity(outputs.len());
        for (i, output) in outputs.iter().enumerate() {
            let body = serde_json::to_string(&ResultMessage::of(output))
                .map_err(|e| sink_error(name, "serializing a result", e))?;
            // The attribute and its name count towards the size limit, too.
            sizes.push(body.len() + RESULT_ID_ATTRIBUTE.len() + 48);
            entries.push(self.entry(i % MAX_ENTRIES, output, body)?);
        }
        let calls = chunks(&sizes, MAX_ENTRIES, MAX_CALL_BYTES).map_err(|i| {
            sink_error(
                name,
                "a result is too large for SQS",
                format!(
                    "result {} is {} bytes (limit {MAX_CALL_BYTES})",
                    outputs[i].id, sizes[i]
                ),
            )
        })?;
        async {
            for call in calls {
                // Entry ids must be unique within a call: renumber them from 0.
                let batch = entries[call]
                    .iter()
                    .enumerate()
                    .map(|(n, e)| {
                        let mut e = e.clone();
                        e.id = n.to_string();
                        e
                    })
                    .collect();
                self.send(batch).await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}
