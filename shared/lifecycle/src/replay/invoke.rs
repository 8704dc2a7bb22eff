//! Replay fanned out as Lambda invocations: archived records of each shard sent to a stage
//! function as the Kinesis events its event source mapping would deliver, shards in parallel,
//! each shard's batches in order, one at a time.
//!
//! The function is a stage of a deployment that consumes no live stream (its mappings disabled,
//! e.g. a stack deployed with `EventSourceMappingsEnabled=false` and its own outputs), so that
//! its state table holds only the replay's progress. Each invocation is what Lambda's poller
//! would do: a failed invocation is sent again (the stage skips what it committed); a partial
//! batch response resends from the reported record, as a mapping with `ReportBatchItemFailures`
//! retries from it; a record that keeps failing is dead-lettered by the stage itself after its
//! attempts, so the replay moves on. With [`InvokeReplayOptions::finish`], each shard's input
//! then ends ([`shardflow_lambda::EndOfInput`]): its open windows fire, as in a local replay.
//!
//! Each archived shard is replayed as a shard of its own, in parallel with the others: the
//! archive does not keep the stream's lineage, so across a reshard of the live stream a key's
//! state is not handed from a parent shard to its children as the live stage does. A window a
//! key had open across a split or merge can then differ from the live result; replay an archive
//! written before and after a reshard separately, or locally as one bounded stream.

use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::Client;
use futures_util::{StreamExt, TryStreamExt};
use shardflow_lambda::EndOfInput;
use shardflow_stage::ShardBatch;

use crate::error::LifecycleError;

/// Lambda's limit on a synchronous invocation's request payload is 6 MB; batches stay below
/// this many bytes of JSON.
pub const MAX_REPLAY_PAYLOAD_BYTES: usize = 5 << 20;
/// JSON of one record besides its base64 payload and partition key (generous).
const RECORD_OVERHEAD_BYTES: usize = 512;

/// How a replay invokes a stage function.
#[derive(Debug, Clone)]
pub struct InvokeReplayOptions {
    /// The function (name or ARN).
    pub function: String,
    /// The ARN of the archived stream, as the events name it (the stage derives its partition
    /// names, and so its result ids, from the stream's name).
    pub event_source_arn: String,
    /// The region the events name.
    pub region: String,
    /// Records per invocation at most (the mapping's `BatchSize`).
    pub batch_size: usize,
    /// Request payload bytes per invocation at most.
    pub max_payload_bytes: usize,
    /// Shards replayed at once.
    pub concurrency: usize,
    /// Whether each shard's input ends after its last record (see the module documentation).
    pub finish: bool,
    /// Attempts of one invocation (failed or partially failed) before the replay gives up.
    pub max_attempts: u32,
    /// Pause before a retry (doubled per attempt, up to 10 s).
    pub retry_delay: Duration,
}

impl InvokeReplayOptions {
    /// Options to replay into `function` the records of the stream `event_source_arn`: batches of
    /// 500 records, 4 shards at a time, no end of input, 10 attempts.
    pub fn new(function: &str, event_source_arn: &str, region: &str) -> Self {
        InvokeReplayOptions {
            function: function.to_owned(),
            event_source_arn: event_source_arn.to_owned(),
            region: region.to_owned(),
            batch_size: 500,
            max_payload_bytes: MAX_REPLAY_PAYLOAD_BYTES,
            concurrency: 4,
            finish: false,
            max_attempts: 10,
            retry_delay: Duration::from_millis(200),
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvokeReplayReport {
    /// Shards replayed.
    pub shards: usize,
    /// Records sent at least once.
    pub records: usize,
    /// Invocations that succeeded (batches and ends of input).
    pub invocations: usize,
    /// Invocations sent again after a failure or a partial batch response.
    pub retries: usize,
}

impl std::ops::AddAssign for InvokeReplayReport {
    fn add_assign(&mut self, o: Self) {
        self.shards += o.shards;
        self.records += o.records;
        self.invocations += o.invocations;
        self.retries += o.retries;
    }
}

/// Called with the number of records of each batch the function has taken (for a progress bar).
pub type ReplayProgress<'a> = &'a (dyn Fn(usize) + Send + Sync);

/// Replays `shards` (each one shard's records in sequence order, e.g. read from the archive)
/// into the function of `options` (see the module documentation); `progress` hears of every
/// batch done.
pub async fn invoke_replay(
    client: &Client,
    shards: Vec<ShardBatch>,
    options: &InvokeReplayOptions,
    progress: ReplayProgress<'_>,
) -> Result<InvokeReplayReport, LifecycleError> {
    if options.batch_size == 0 || options.concurrency == 0 || options.max_attempts == 0 {
        return Err(LifecycleError::Invalid(
            "batch size, concurrency and attempts must be at least 1".into(),
        ));
    }
    futures_util::stream::iter(shards)
        .map(|shard| replay_shard(client, shard, options, progress))
        .buffer_unordered(options.concurrency)
        .try_fold(InvokeReplayReport::default(), |mut total, one| async move {
            total += one;
            Ok(total)
        })
        .await
}

async fn replay_shard(
    client: &Client,
    shard: ShardBatch,
    options: &InvokeReplayOptions,
    progress: ReplayProgress<'_>,
) -> Result<InvokeReplayReport, LifecycleError> {
    let mut report = InvokeReplayReport {
        shards: 1,
        records: shard.records.len(),
        ..Default::default()
    };
    let mut from = 0;
    let mut attempts = 0;
    while from < shard.records.len() {
        let end = batch_end(&shard, from, options);
        let batch = ShardBatch {
            stream: shard.stream.clone(),
            shard_id: shard.shard_id.clone(),
            records: shard.records[from..end].to_vec(),
        };
        let payload = batch.to_event_json(&options.event_source_arn, &options.region);
        let failure = match invoke(client, &options.function, &payload).await {
            Ok(None) => None,
            Ok(Some(id)) => Some(match batch.records.iter().position(|r| r.sequence.to_string() == id) {
                Some(at) => (from + at, format!("the stage reported record {id} as failed")),
                None => (from, format!("the stage reported an unknown item {id:?} as failed")),
            }),
            Err(reason) => Some((from, reason)),
        };
        let Some((resume, reason)) = failure else {
            report.invocations += 1;
            attempts = 0;
            progress(end - from);
            from = end;
            continue;
        };
        give_up_or_wait(options, &shard.shard_id, &mut attempts, reason, &mut report).await?;
        from = resume;
    }
    if options.finish {
        finish_shard(client, &shard, options, &mut report).await?;
    }
    Ok(report)
}

async fn finish_shard(
    client: &Client,
    shard: &ShardBatch,
    options: &InvokeReplayOptions,
    report: &mut InvokeReplayReport,
) -> Result<(), LifecycleError> {
    let end = EndOfInput {
        stream: shard.stream.clone(),
        shard_id: shard.shard_id.clone(),
    }
    .to_json();
    let mut attempts = 0;
    loop {
        match invoke(client, &options.function, &end).await {
            Ok(_) => {
                report.invocations += 1;
                return Ok(());
            }
            Err(reason) => {
                let reason = format!("end of input: {reason}");
                give_up_or_wait(options, &shard.shard_id, &mut attempts, reason, report).await?;
            }
        }
    }
}

/// Counts a failed attempt: gives up after [`InvokeReplayOptions::max_attempts`], otherwise
/// counts the retry and waits before it.
async fn give_up_or_wait(
    options: &InvokeReplayOptions,
    shard: &str,
    attempts: &mut u32,
    reason: String,
    report: &mut InvokeReplayReport,
) -> Result<(), LifecycleError> {
    *attempts += 1;
    if *attempts >= options.max_attempts {
        return Err(LifecycleError::Replay {
            function: options.function.clone(),
            shard: shard.to_owned(),
            attempts: *attempts,
            reason,
        });
    }
    tracing::warn!(shard, attempts = *attempts, %reason, "replay invocation failed; sending again");
    report.retries += 1;
    tokio::time::sleep(backoff(options.retry_delay, *attempts)).await;
    Ok(())
}

fn backoff(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1 << attempts.min(6)).min(Duration::from_secs(10))
}

/// The end of the batch that starts at `from`: at most `batch_size` records and
/// `max_payload_bytes` of estimated JSON, and at least one record.
fn batch_end(shard: &ShardBatch, from: usize, options: &InvokeReplayOptions) -> usize {
    let mut bytes = 64 + options.event_source_arn.len();
    let mut end = from;
    for r in shard.records[from..].iter().take(options.batch_size) {
        let size = r.data.len().div_ceil(3) * 4
            + r.partition_key.len()
            + shard.shard_id.len()
            + options.event_source_arn.len()
            + RECORD_OVERHEAD_BYTES;
        if end > from && bytes + size > options.max_payload_bytes {
            break;
        }
        bytes += size;
        end += 1;
    }
    end
}

/// Invokes the function synchronously; `Ok` holds the first item of a partial batch response,
/// `Err` why the invocation failed.
async fn invoke(client: &Client, function: &str, payload: &serde_json::Value) -> Result<Option<String>, String> {
    let bytes = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
    let out = client
        .invoke()
        .function_name(function)
        .payload(Blob::new(bytes))
        .send()
        .await
        .map_err(|e| LifecycleError::aws("lambda", "Invoke", e).to_string())?;
    let body = out.payload().map(|b| String::from_utf8_lossy(b.as_ref()).into_owned());
    if let Some(kind) = out.function_error() {
        return Err(format!("{kind}: {}", body.unwrap_or_default()));
    }
    Ok(body.as_deref().and_then(first_failure))
}

/// The lowest-sequence item of a `{"batchItemFailures": [{"itemIdentifier": ...}]}` response.
fn first_failure(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value
        .get("batchItemFailures")?
        .as_array()?
        .iter()
        .filter_map(|f| f.get("itemIdentifier")?.as_str().map(str::to_owned))
        .min_by(|a, b| (a.len(), a).cmp(&(b.len(), b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardflow_stage::{InputRecord, SequenceNumber};

    fn shard(sizes: &[usize]) -> ShardBatch {
        ShardBatch {
            stream: "s".into(),
            shard_id: "shardId-000000000000".into(),
            records: sizes
                .iter()
                .enumerate()
                .map(|(i, n)| InputRecord {
                    sequence: SequenceNumber::parse(&format!("{}", 1000 + i)).unwrap(),
                    partition_key: "k".into(),
                    arrival_ms: 0,
                    data: vec![0; *n],
                })
                .collect(),
        }
    }

    #[test]
    fn batches_respect_the_record_count_and_the_payload_size() {
        let mut o = InvokeReplayOptions::new("f", "arn:aws:kinesis:us-east-1:1:stream/s", "us-east-1");
        o.batch_size = 3;
        let s = shard(&[10; 7]);
        assert_eq!(
            (batch_end(&s, 0, &o), batch_end(&s, 3, &o), batch_end(&s, 6, &o)),
            (3, 6, 7)
        );
        o.batch_size = 100;
        o.max_payload_bytes = 4000;
        let big = shard(&[1500, 1500, 1500, 9000, 10]);
        assert_eq!(
            batch_end(&big, 0, &o),
            1,
            "two records of 1500 bytes (2000 as base64) exceed 4000"
        );
        assert_eq!(batch_end(&big, 3, &o), 4, "a record alone is sent even above the limit");
        o.max_payload_bytes = MAX_REPLAY_PAYLOAD_BYTES;
        assert_eq!(batch_end(&big, 0, &o), 5);
    }

    #[test]
    fn the_lowest_failed_item_is_resent_first() {
        let body = r#"{"batchItemFailures":[{"itemIdentifier":"1010"},{"itemIdentifier":"999"}]}"#;
        assert_eq!(first_failure(body).as_deref(), Some("999"));
        assert_eq!(first_failure(r#"{"batchItemFailures":[]}"#), None);
        assert_eq!(first_failure("null"), None);
    }
}
