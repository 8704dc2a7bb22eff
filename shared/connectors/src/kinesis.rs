//! Results to a Kinesis stream: the input of the next stage.

use std::sync::Arc;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde::Serialize;
use shardflow_engine::Output;
use shardflow_stage::{ResultSink, SinkError};
use tracing::{info_span, Instrument};

use crate::batching::chunks;
use crate::error::{sdk_error, sink_error};
use crate::message::KinesisEnvelope;
use crate::retry::{send_with_retries, EntryFailure, RetryPolicy};

/// Kinesis limits: records per `PutRecords`, bytes per call and per record (data and partition key).
const MAX_RECORDS: usize = 500;
const MAX_CALL_BYTES: usize = 5 * 1024 * 1024;
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Chooses a result's partition key (1 to 256 characters; it picks the shard).
pub type PartitionKeyFn<Out> = Arc<dyn Fn(&Output<Out>) -> String + Send + Sync>;

/// Where and how a [`KinesisSink`] writes.
pub struct KinesisSinkConfig<Out> {
    /// The sink's name in errors and spans.
    pub name: String,
    /// The stream's name.
    pub stream_name: String,
    /// The partition key of a result (default: its id, spreading results evenly over shards).
    pub partition_key: PartitionKeyFn<Out>,
    /// Retries of records Kinesis refused.
    pub retry: RetryPolicy,
}

impl<Out> KinesisSinkConfig<Out> {
    /// Writing to `stream_name`, partitioned by result id, default retries.
    pub fn new(stream_name: impl Into<String>) -> Self {
        KinesisSinkConfig {
            name: "kinesis".to_owned(),
            stream_name: stream_name.into(),
            partition_key: Arc::new(|o| o.id.to_hex()),
            retry: RetryPolicy::default(),
        }
    }

    /// The same configuration with `f` choosing the partition key (e.g. the value's key, so that
    /// the next stage finds a key's records on one shard).
    pub fn partition_key(mut self, f: impl Fn(&Output<Out>) -> String + Send + Sync + 'static) -> Self {
        self.partition_key = Arc::new(f);
        self
    }
}

/// Writes each result as one record whose data is the JSON [`KinesisEnvelope`]
/// `{"id": "<hex>", "value": ...}`, with `PutRecords` (at most 500 records and 5 MiB per call),
/// retrying only the records Kinesis refused, with exponential backoff and full jitter.
///
/// Idempotence contract: Kinesis itself cannot deduplicate — a redelivered batch, or a retried
/// call whose answer was lost, writes the records again, and retried records may land after
/// later ones. The id travels with every record, so the next stage drops the repeats with
/// `Stream::deduplicate(|v| id, horizon_ms)` (horizon at least the time a redelivery can take);
/// its results are then those of one delivery.
pub struct KinesisSink<Out> {
    client: aws_sdk_kinesis::Client,
    config: KinesisSinkConfig<Out>,
}

impl<Out> KinesisSink<Out> {
    /// A sink writing with `client` as `config` says.
    pub fn new(client: aws_sdk_kinesis::Client, config: KinesisSinkConfig<Out>) -> Self {
        KinesisSink { client, config }
    }

    /// Writes one call's records, retrying the refused ones (every refusal of a record in a
    /// `PutRecords` answer — throughput exceeded, internal failure — is worth retrying).
    async fn put(&self, records: Vec<PutRecordsRequestEntry>) -> Result<(), SinkError> {
        let name = &self.config.name;
        send_with_retries(name, "PutRecords", &self.config.retry, records, |records| async {
            let response = self
                .client
                .put_records()
                .stream_name(&self.config.stream_name)
                .set_records(Some(records.clone()))
                .send()
                .await
                .map_err(|e| sdk_error(name, "PutRecords", e))?;
            // The answer's records are in the order of the request's.
            let failures = response
                .records()
                .iter()
                .enumerate()
                .filter_map(|(index, r)| {
                    r.error_code().map(|code| EntryFailure {
                        index,
                        retriable: true,
                        message: format!("{code}: {}", r.error_message().unwrap_or("")),
                    })
                })
                .collect();
            Ok((records, failures))
        })
        .await
    }
}

impl<Out: Serialize + Send + Sync> ResultSink<Out> for KinesisSink<Out> {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        let span = info_span!("kinesis_emit", sink = %self.config.name, stream = %self.config.stream_name, results = outputs.len());
        async {
            let name = &self.config.name;
            let mut records = Vec::with_capacity(outputs.len());
            let mut sizes = Vec::with_capacity(outputs.len());
            for output in outputs {
                let data = serde_json::to_vec(&KinesisEnvelope {
                    id: output.id.to_hex(),
                    value: &output.value,
                })
                .map_err(|e| sink_error(name, "serializing a result", e))?;
                let key = (self.config.partition_key)(output);
                sizes.push(data.len() + key.len());
                records.push((data, key));
            }
            let calls = chunks(&sizes, MAX_RECORDS, MAX_CALL_BYTES)
                .map_err(|i| sink_error(name, "a result is too large for Kinesis", format!("{} bytes", sizes[i])))?;
            if let Some(i) = sizes.iter().position(|&s| s > MAX_RECORD_BYTES) {
                return Err(sink_error(
                    name,
                    "a result is too large for a Kinesis record",
                    format!(
                        "result {} is {} bytes (limit {MAX_RECORD_BYTES})",
                        outputs[i].id, sizes[i]
                    ),
                ));
            }
            let mut records = records.into_iter();
            for call in calls {
                let mut entries = Vec::with_capacity(call.len());
                for (data, key) in records.by_ref().take(call.len()) {
                    entries.push(
                        PutRecordsRequestEntry::builder()
                            .data(Blob::new(data))
                            .partition_key(key)
                            .build()
                            .map_err(|e| sink_error(name, "building a record", e))?,
                    );
                }
                self.put(entries).await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}
