//! Results to S3, one object per result (or per key and window, or per event-time bucket).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use shardflow_engine::{ClosedBucket, Output};
use shardflow_stage::{ResultSink, SinkError};
use tracing::{debug, info_span, Instrument};

use crate::error::{sdk_error, sink_error};
use crate::message::ResultMessage;

/// The user metadata of an object written in [`S3KeyMode::LatestPane`]: its pane index.
const PANE_INDEX_METADATA: &str = "shardflow-pane-index";
/// Compare-and-swap rounds of one object before giving up (only concurrent writers of the same
/// object lose a round).
const MAX_SWAP_ROUNDS: u32 = 8;

/// Which object a result goes to.
pub enum S3KeyMode<Out> {
    /// One object per result id: `{prefix}/{date}/{id}.json`. Every pane of a window is its own
    /// object (its pane index is in the JSON); rewriting a result overwrites it with the same bytes.
    PerResult,
    /// One object per (key, window): `{prefix}/{date}/{window_start_ms}-{window_end_ms}/{key}.json`,
    /// holding the window's latest pane. `key` names the result's key (used verbatim in the object
    /// key, so keep it free of characters S3 keys should avoid). A result without a window is
    /// written as in [`S3KeyMode::PerResult`].
    LatestPane {
        /// The key of a result's value.
        key: Arc<dyn Fn(&Out) -> String + Send + Sync>,
    },
    /// One object per closed event-time bucket of the stage's engine (a pipeline ending with
    /// `sink_with_buckets`): `{prefix}/{date}/{start_ms}-{end_ms}/{first_id}.ndjson`, one
    /// [`ResultMessage`] per line, sorted by id. Results are not written one by one. A bucket
    /// closes with the same results whatever the batching, and `first_id` (its smallest result
    /// id) tells apart the buckets of the same minute of different shards, so rewriting it after
    /// a redelivery overwrites the object with the same bytes.
    EventTimeBuckets,
}

/// Where and how an [`S3Sink`] writes.
pub struct S3SinkConfig<Out> {
    /// The sink's name in errors and spans.
    pub name: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix (no trailing `/`).
    pub prefix: String,
    /// Which object a result goes to.
    pub mode: S3KeyMode<Out>,
    /// Objects written at the same time.
    pub concurrency: usize,
}

impl<Out> S3SinkConfig<Out> {
    /// One object per result under `prefix` of `bucket`, 8 objects at a time.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        S3SinkConfig {
            name: "s3".to_owned(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            mode: S3KeyMode::PerResult,
            concurrency: 8,
        }
    }

    /// The same configuration keeping one object per (key, window) with its latest pane.
    pub fn latest_pane(mut self, key: impl Fn(&Out) -> String + Send + Sync + 'static) -> Self {
        self.mode = S3KeyMode::LatestPane { key: Arc::new(key) };
        self
    }

    /// The same configuration writing one object per closed event-time bucket instead of one
    /// per result (see [`S3KeyMode::EventTimeBuckets`]).
    pub fn event_time_buckets(mut self) -> Self {
        self.mode = S3KeyMode::EventTimeBuckets;
        self
    }

    /// The object key of `bucket` in [`S3KeyMode::EventTimeBuckets`] (`None` for an empty
    /// bucket, which is never written).
    pub fn bucket_key(&self, bucket: &ClosedBucket<Out>) -> Option<String> {
        let first = bucket.first_id()?;
        Some(format!(
            "{}/{}/{}-{}/{}.ndjson",
            self.prefix,
            day(bucket.start),
            bucket.start,
            bucket.end,
            first.to_hex()
        ))
    }

    /// The object key of `output` (see [`S3KeyMode`]). `{date}` is the UTC day (`YYYY-MM-DD`) of
    /// the window's start for a window result and of the result's event time otherwise
    /// (`undated` for the global window), so that a day's objects share a prefix.
    pub fn key(&self, output: &Output<Out>) -> String {
        let date = day(output.pane.map(|(w, _)| w.start).unwrap_or(output.timestamp));
        match (&self.mode, output.pane) {
            (S3KeyMode::LatestPane { key }, Some((window, _))) => format!(
                "{}/{date}/{}-{}/{}.json",
                self.prefix,
                window.start,
                window.end,
                key(&output.value)
            ),
            _ => format!("{}/{date}/{}.json", self.prefix, output.id.to_hex()),
        }
    }
}

/// The UTC day (`YYYY-MM-DD`) of `ms`, `undated` out of range.
fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "undated".to_owned())
}

/// Writes each result as one JSON object ([`ResultMessage`]) under a deterministic key.
///
/// Idempotence contract: in [`S3KeyMode::PerResult`] a result's key is a function of its id, so
/// rewriting it after a redelivery overwrites the object with identical bytes. In
/// [`S3KeyMode::LatestPane`] all panes of a (key, window) share one object, which records its
/// pane index in user metadata; a write replaces it only with a higher pane, by compare-and-swap
/// (`If-None-Match: *` for a new object, `If-Match: <etag>` for an existing one), so a redelivered
/// older pane changes nothing and the object ends with the latest pane whatever the order. In
/// [`S3KeyMode::EventTimeBuckets`] an object is a function of its bucket, which closes with the
/// same results after a redelivery: rewriting it writes the same bytes.
pub struct S3Sink<Out> {
    client: aws_sdk_s3::Client,
    config: S3SinkConfig<Out>,
}

impl<Out> S3Sink<Out> {
    /// A sink writing with `client` as `config` says.
    pub fn new(client: aws_sdk_s3::Client, config: S3SinkConfig<Out>) -> Self {
        S3Sink { client, config }
    }
}

impl<Out: Serialize + Send + Sync> S3Sink<Out> {
    fn body(&self, output: &Output<Out>) -> Result<Vec<u8>, SinkError> {
        serde_json::to_vec(&ResultMessage::of(output))
            .map_err(|e| sink_error(&self.config.name, "serializing a result", e))
    }

    /// Writes `output` to `key` unconditionally.
    async fn put(&self, key: String, output: &Output<Out>) -> Result<(), SinkError> {
        let body = self.body(output)?;
        self.put_bytes(key, "application/json", body).await
    }

    /// Writes `bucket` as NDJSON (its results are sorted by id) unconditionally.
    async fn put_bucket(&self, key: String, bucket: &ClosedBucket<Out>) -> Result<(), SinkError> {
        let mut body = Vec::new();
        for output in &bucket.results {
            body.extend(self.body(output)?);
            body.push(b'\n');
        }
        self.put_bytes(key, "application/x-ndjson", body).await
    }

    async fn put_bytes(&self, key: String, content_type: &str, body: Vec<u8>) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_error(&self.config.name, &format!("PutObject {key}"), e))?;
        Ok(())
    }

    /// Writes `output` to `key` unless the object there holds the same or a later pane.
    async fn put_if_later(&self, key: String, output: &Output<Out>) -> Result<(), SinkError> {
        let name = &self.config.name;
        let pane = output.pane.map(|(_, p)| p.index).unwrap_or(0);
        let body = self.body(output)?;
        for _ in 0..MAX_SWAP_ROUNDS {
            let head = self
                .client
                .head_object()
                .bucket(&self.config.bucket)
                .key(&key)
                .send()
                .await;
            let etag = match head {
                Ok(head) => {
                    let stored = head
                        .metadata()
                        .and_then(|m| m.get(PANE_INDEX_METADATA))
                        .and_then(|v| v.parse::<u32>().ok());
                    if stored.is_some_and(|stored| stored >= pane) {
                        debug!(sink = %name, key, pane, ?stored, "the object holds the same or a later pane");
                        return Ok(());
                    }
                    head.e_tag().map(str::to_owned)
                }
                Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => None,
                Err(e) => return Err(sdk_error(name, &format!("HeadObject {key}"), e)),
            };
            let mut put = self
                .client
                .put_object()
                .bucket(&self.config.bucket)
                .key(&key)
                .content_type("application/json")
                .metadata(PANE_INDEX_METADATA, pane.to_string())
                .body(ByteStream::from(body.clone()));
            put = match etag {
                Some(etag) => put.if_match(etag),
                None => put.if_none_match("*"),
            };
            match put.send().await {
                Ok(_) => return Ok(()),
                // 412: another writer changed the object since the HEAD; 409: a concurrent
                // conditional write. Read it again and decide again.
                Err(e)
                    if e.raw_response()
                        .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) =>
                {
                    debug!(sink = %name, key, pane, "lost a compare-and-swap round; retrying");
                }
                Err(e) => return Err(sdk_error(name, &format!("PutObject {key}"), e)),
            }
        }
        Err(sink_error(
            name,
            &format!("PutObject {key}"),
            format!("the object kept changing during {MAX_SWAP_ROUNDS} compare-and-swap rounds"),
        ))
    }
}

impl<Out: Serialize + Send + Sync> ResultSink<Out> for S3Sink<Out> {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        let span =
            info_span!("s3_emit", sink = %self.config.name, bucket = %self.config.bucket, results = outputs.len());
        let concurrency = self.config.concurrency.max(1);
        match &self.config.mode {
            S3KeyMode::PerResult => {
                // Collected first: a lazy `map` here makes the future not provably `Send`
                // (rust-lang/rust#102211).
                let puts: Vec<_> = outputs.iter().map(|o| self.put(self.config.key(o), o)).collect();
                futures_util::stream::iter(puts)
                    .buffer_unordered(concurrency)
                    .try_collect::<Vec<()>>()
                    .instrument(span)
                    .await?;
            }
            S3KeyMode::LatestPane { .. } => {
                // Only the latest pane of each object in this batch needs writing.
                let mut latest: BTreeMap<String, &Output<Out>> = BTreeMap::new();
                for output in outputs {
                    let pane = |o: &Output<Out>| o.pane.map(|(_, p)| p.index);
                    let entry = latest.entry(self.config.key(output)).or_insert(output);
                    if pane(output) > pane(entry) {
                        *entry = output;
                    }
                }
                let puts: Vec<_> = latest.into_iter().map(|(key, o)| self.put_if_later(key, o)).collect();
                futures_util::stream::iter(puts)
                    .buffer_unordered(concurrency)
                    .try_collect::<Vec<()>>()
                    .instrument(span)
                    .await?;
            }
            // Written when their bucket closes (`emit_buckets`).
            S3KeyMode::EventTimeBuckets => {}
        }
        Ok(())
    }

    async fn emit_buckets(&self, buckets: &[ClosedBucket<Out>]) -> Result<(), SinkError> {
        if !matches!(self.config.mode, S3KeyMode::EventTimeBuckets) {
            return Ok(());
        }
        let span = info_span!("s3_emit_buckets", sink = %self.config.name, bucket = %self.config.bucket,
            buckets = buckets.len());
        let puts: Vec<_> = buckets
            .iter()
            .filter_map(|b| Some(self.put_bucket(self.config.bucket_key(b)?, b)))
            .collect();
        futures_util::stream::iter(puts)
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .instrument(span)
            .await?;
        Ok(())
    }
}
