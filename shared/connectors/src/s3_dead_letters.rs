//! Dead letters to S3, one object each.

use aws_sdk_s3::primitives::ByteStream;
use futures_util::{StreamExt, TryStreamExt};
use shardflow_stage::DeadLetter;
use shardflow_stage::{DeadLetterSink, SinkError};
use tracing::{info_span, Instrument};

use crate::error::{sdk_error, sink_error};

/// Where an [`S3DeadLetterSink`] writes.
#[derive(Debug, Clone)]
pub struct S3DeadLetterSinkConfig {
    /// The sink's name in errors and spans.
    pub name: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix (default `dead-letters`).
    pub prefix: String,
    /// Objects written at the same time.
    pub concurrency: usize,
}

impl S3DeadLetterSinkConfig {
    /// Writing under `dead-letters/` of `bucket`, 8 objects at a time.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3DeadLetterSinkConfig {
            name: "s3-dead-letters".to_owned(),
            bucket: bucket.into(),
            prefix: "dead-letters".to_owned(),
            concurrency: 8,
        }
    }

    /// The object key of `letter`: `{prefix}/{stage}/{shard}/{sequence}-{kind}.json`.
    pub fn key(&self, letter: &DeadLetter) -> String {
        let kind = serde_json::to_value(letter.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!(
            "{}/{}/{}/{}-{kind}.json",
            self.prefix, letter.stage, letter.shard_id, letter.sequence_number
        )
    }
}

/// Writes each dead letter as one JSON object (the [`DeadLetter`]'s serde form) under the
/// deterministic key [`S3DeadLetterSinkConfig::key`].
///
/// Idempotence contract: the same record refused for the same reason has the same key and the
/// same content, so a resent dead letter overwrites its object with identical bytes — the bucket
/// holds each dead letter once, however often the batch is redelivered.
pub struct S3DeadLetterSink {
    client: aws_sdk_s3::Client,
    config: S3DeadLetterSinkConfig,
}

impl S3DeadLetterSink {
    /// A sink writing with `client` as `config` says.
    pub fn new(client: aws_sdk_s3::Client, config: S3DeadLetterSinkConfig) -> Self {
        S3DeadLetterSink { client, config }
    }

    async fn put(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let name = &self.config.name;
        let body = serde_json::to_vec(letter).map_err(|e| sink_error(name, "serializing a dead letter", e))?;
        let key = self.config.key(letter);
        self.client
            .put_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_error(name, &format!("PutObject {key}"), e))?;
        Ok(())
    }
}

impl DeadLetterSink for S3DeadLetterSink {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        let span = info_span!("s3_dead_letters", sink = %self.config.name, bucket = %self.config.bucket, letters = letters.len());
        // Collected first: a lazy `map` here makes the future not provably `Send`
        // (rust-lang/rust#102211).
        let puts: Vec<_> = letters.iter().map(|l| self.put(l)).collect();
        futures_util::stream::iter(puts)
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .instrument(span)
            .await
            .map(|_| ())
    }
}
