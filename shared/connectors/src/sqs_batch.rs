//! One `SendMessageBatch` call with retries of the refused entries, shared by the SQS result
//! and dead-letter sinks.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use shardflow_stage::SinkError;

use crate::error::sdk_error;
use crate::retry::{entry_failure, send_with_retries, RetryPolicy};

/// Sends `entries` (at most one call's: 10, within the size limit) to `queue_url`, retrying
/// only the entries SQS refused as `retry` allows; `sink` names the sink in errors.
pub(crate) async fn send_message_batch(
    client: &aws_sdk_sqs::Client,
    sink: &str,
    queue_url: &str,
    retry: &RetryPolicy,
    entries: Vec<SendMessageBatchRequestEntry>,
) -> Result<(), SinkError> {
    send_with_retries(sink, "SendMessageBatch", retry, entries, |entries| async {
        let response = client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries.clone()))
            .send()
            .await
            .map_err(|e| sdk_error(sink, "SendMessageBatch", e))?;
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
