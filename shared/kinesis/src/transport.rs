//! Sending one `PutRecords` call: the [`PutRecordsTransport`] trait the producer drives, and its
//! implementation over the AWS SDK ([`KinesisTransport`]).

use std::future::Future;

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::put_records::PutRecordsError;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::batch::{is_retryable, RecordResult, StreamRecord};

/// Why a whole call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Worth retrying every record of the call (throttling, a timeout, a 5xx, a broken connection).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Retrying cannot help (no such stream, access denied, an invalid request).
    #[error("{0}")]
    Fatal(String),
}

/// Sends one `PutRecords` call and reports each record's result, in the order sent.
pub trait PutRecordsTransport: Send + Sync + 'static {
    /// Puts `records` (at most 500, within the call limits) in one call.
    fn put_records(
        &self,
        records: &[StreamRecord],
    ) -> impl Future<Output = Result<Vec<RecordResult>, CallError>> + Send;
}

/// `PutRecords` into one stream through the AWS SDK (whose own retry layer also retries
/// throttled and transient calls a few times).
#[derive(Debug, Clone)]
pub struct KinesisTransport {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
}

impl KinesisTransport {
    /// Puts into the stream `stream_name` with `client`.
    pub fn new(client: aws_sdk_kinesis::Client, stream_name: impl Into<String>) -> Self {
        KinesisTransport {
            client,
            stream_name: stream_name.into(),
        }
    }

    /// The stream written to.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }
}

/// The `PutRecords` request entries of `records` (a copy of each payload, as the SDK takes it),
/// with their explicit hash keys.
pub fn request_entries(records: &[StreamRecord]) -> Result<Vec<PutRecordsRequestEntry>, CallError> {
    records
        .iter()
        .map(|r| {
            PutRecordsRequestEntry::builder()
                .partition_key(&r.partition_key)
                .set_explicit_hash_key(r.explicit_hash_key.clone())
                .data(Blob::new(r.data.clone()))
                .build()
                .map_err(|e| CallError::Fatal(format!("building a PutRecords entry: {e}")))
        })
        .collect()
}

impl PutRecordsTransport for KinesisTransport {
    async fn put_records(&self, records: &[StreamRecord]) -> Result<Vec<RecordResult>, CallError> {
        let entries = request_entries(records)?;
        let output = self
            .client
            .put_records()
            .stream_name(&self.stream_name)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| classify(&self.stream_name, e))?;
        Ok(output
            .records()
            .iter()
            .map(|r| match r.error_code() {
                None => RecordResult::Stored {
                    shard_id: r.shard_id().unwrap_or_default().to_owned(),
                    sequence_number: r.sequence_number().unwrap_or_default().to_owned(),
                },
                Some(code) => RecordResult::Failed {
                    code: code.to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                },
            })
            .collect())
    }
}

/// Sorts a failed call into retryable and fatal.
fn classify<R: std::fmt::Debug>(stream: &str, e: SdkError<PutRecordsError, R>) -> CallError {
    let text = format!("PutRecords into {stream}: {}", DisplayErrorContext(&e));
    match &e {
        SdkError::ServiceError(service) => {
            let code = service.err().code();
            if code.is_some_and(is_retryable) || code.is_none() {
                CallError::Retryable(text)
            } else {
                CallError::Fatal(text)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            CallError::Retryable(text)
        }
        _ => CallError::Fatal(text),
    }
}

/// A Kinesis client configured from the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// credentials), as the AWS CLI would be.
pub async fn client_from_env() -> aws_sdk_kinesis::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    aws_sdk_kinesis::Client::new(&config)
}
