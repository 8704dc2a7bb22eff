//! The dead-letter destination a deployment configures: an SQS queue or an S3 bucket.

use shardflow_stage::DeadLetter;
use shardflow_stage::{optional_var, DeadLetterSink, EnvError, SinkError};

use crate::s3_dead_letters::{S3DeadLetterSink, S3DeadLetterSinkConfig};
use crate::sqs_dead_letters::{SqsDeadLetterSink, SqsDeadLetterSinkConfig};

/// The dead-letter queue's URL.
pub const DLQ_URL_ENV: &str = "SHARDFLOW_DLQ_URL";
/// The dead-letter bucket (used when no queue is set).
pub const DLQ_BUCKET_ENV: &str = "SHARDFLOW_DLQ_BUCKET";

/// Dead letters to an SQS queue or to S3, as the deployment chose.
pub enum DeadLetterDestination {
    /// An SQS queue (standard or FIFO).
    Sqs(SqsDeadLetterSink),
    /// An S3 bucket.
    S3(S3DeadLetterSink),
}

impl DeadLetterDestination {
    /// The destination the environment names: [`DLQ_URL_ENV`] (an SQS queue URL) or else
    /// [`DLQ_BUCKET_ENV`]; one of them must be set, since a stage that could not dead-letter a
    /// record would have to block its shard or lose the record.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, EnvError> {
        if let Some(url) = optional_var(DLQ_URL_ENV) {
            let client = aws_sdk_sqs::Client::new(sdk);
            return Ok(DeadLetterDestination::Sqs(SqsDeadLetterSink::new(
                client,
                SqsDeadLetterSinkConfig::new(url),
            )));
        }
        if let Some(bucket) = optional_var(DLQ_BUCKET_ENV) {
            let client = aws_sdk_s3::Client::new(sdk);
            return Ok(DeadLetterDestination::S3(S3DeadLetterSink::new(
                client,
                S3DeadLetterSinkConfig::new(bucket),
            )));
        }
        Err(EnvError::Missing(DLQ_URL_ENV))
    }
}

impl DeadLetterSink for DeadLetterDestination {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        match self {
            DeadLetterDestination::Sqs(sink) => sink.send(letters).await,
            DeadLetterDestination::S3(sink) => sink.send(letters).await,
        }
    }
}
