//! Writing a batch's records as archive objects.

use std::io::Write;

use aws_sdk_s3::primitives::ByteStream;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::{StreamExt, TryStreamExt};
use shardflow_engine::Output;
use shardflow_stage::{ResultSink, SinkError};
use tracing::{info_span, Instrument};

use crate::key::ObjectKey;
use crate::record::ArchivedRecord;

/// Where an [`ArchiveSink`] writes.
#[derive(Debug, Clone)]
pub struct ArchiveSinkConfig {
    /// The bucket.
    pub bucket: String,
    /// The key prefix (no trailing `/`; empty for none).
    pub prefix: String,
    /// Objects written at the same time.
    pub concurrency: usize,
}

impl ArchiveSinkConfig {
    /// Writing under `prefix` of `bucket`, 4 objects at a time.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        ArchiveSinkConfig {
            bucket: bucket.into(),
            prefix: prefix.into().trim_end_matches('/').to_owned(),
            concurrency: 4,
        }
    }
}

/// Writes each emit's records as gzip NDJSON objects, one per run of records of one shard and
/// one hour of arrival, under the key of the run's first record (see the crate documentation for
/// why that is exactly once). The emit is the stage's batch, in sequence order.
pub struct ArchiveSink {
    client: aws_sdk_s3::Client,
    config: ArchiveSinkConfig,
}

impl ArchiveSink {
    /// A sink writing with `client` as `config` says.
    pub fn new(client: aws_sdk_s3::Client, config: ArchiveSinkConfig) -> Self {
        ArchiveSink { client, config }
    }

    async fn put(&self, key: String, body: Vec<u8>) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .content_encoding("gzip")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SinkError {
                sink: "archive".to_owned(),
                message: format!(
                    "PutObject s3://{}/{key}: {}",
                    self.config.bucket,
                    crate::s3_error::describe(e)
                ),
            })
    }
}

/// The runs of `records` that share an object, in order.
pub(crate) fn runs(records: &[&ArchivedRecord]) -> Vec<(ObjectKey, Vec<ArchivedRecord>)> {
    let mut runs: Vec<(ObjectKey, Vec<ArchivedRecord>)> = Vec::new();
    for &record in records {
        match runs.last_mut() {
            Some((key, run)) if key.holds(record) => run.push(record.clone()),
            _ => runs.push((ObjectKey::starting_at(record), vec![record.clone()])),
        }
    }
    runs
}

/// Gzip-compressed NDJSON of `records` (deterministic: the gzip header carries no time).
pub(crate) fn encode(records: &[ArchivedRecord]) -> Result<Vec<u8>, std::io::Error> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    for record in records {
        serde_json::to_writer(&mut gz, record)?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

impl ResultSink<ArchivedRecord> for ArchiveSink {
    async fn emit(&self, outputs: &[Output<ArchivedRecord>]) -> Result<(), SinkError> {
        let records: Vec<&ArchivedRecord> = outputs.iter().map(|o| &o.value).collect();
        let mut puts = Vec::new();
        for (key, run) in runs(&records) {
            let body = encode(&run).map_err(|e| SinkError {
                sink: "archive".to_owned(),
                message: format!("encoding {} records: {e}", run.len()),
            })?;
            puts.push(self.put(key.to_key(&self.config.prefix), body));
        }
        let span = info_span!("archive", bucket = %self.config.bucket, records = records.len(), objects = puts.len());
        futures_util::stream::iter(puts)
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .instrument(span)
            .await
            .map(|_| ())
    }
}
