//! `stage_status`: where each shard of a stage is, how far behind, how much state it holds.
//!
//! # Status
//! [`stage_status`] reports per shard the checkpointed sequence number, `ver`, watermark and its
//! lag behind the wall clock, how far the stream is ahead of the checkpoint (the
//! `MillisBehindLatest` of a `GetRecords` after the checkpointed sequence number, and the age of
//! the oldest unprocessed record — the iterator age), the live state's key groups and bytes, and
//! the dead-letter queue's depth. It reads every shard's live state the way the stage loads it
//! (slot items and spilled objects), so its cost grows with the state: with `--watch` on a large
//! stage, refresh less often.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_kinesis::types::ShardIteratorType;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use shardflow_engine::EngineMetrics;
use shardflow_state_dynamodb::{DynamoDbCheckpointStore, SpillBucket, MAX_INLINE_STATE_BYTES};

use crate::error::LifecycleError;
use crate::savepoint::now_ms;
use crate::shards::{check_stage_name, stage_checkpoints};

/// Records read after the checkpoint to count what is pending (one `GetRecords` page).
const PENDING_PAGE: i32 = 1000;
/// Empty `GetRecords` pages followed before giving up on finding the next record.
const MAX_EMPTY_PAGES: usize = 5;

/// What to report on.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// The stage.
    pub stage: String,
    /// Its state table.
    pub table: String,
    /// Its input stream: adds how far behind each shard is, and shards without a checkpoint.
    pub stream: Option<String>,
    /// Its dead-letter queue (SQS URL): adds the queue's depth.
    pub dlq_url: Option<String>,
    /// Shards read at once (default 8).
    pub concurrency: usize,
    /// Shards to leave out, neither read from the table nor from the stream: for a caller that
    /// polls, the closed shards an earlier status showed read to their end (they cannot change).
    pub skip_shards: BTreeSet<String>,
}

impl StatusOptions {
    /// Status from the table alone.
    pub fn new(stage: &str, table: &str) -> Self {
        StatusOptions {
            stage: stage.to_owned(),
            table: table.to_owned(),
            stream: None,
            dlq_url: None,
            concurrency: 8,
            skip_shards: BTreeSet::new(),
        }
    }
}

/// One shard's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// The shard id.
    pub shard: String,
    /// The checkpointed sequence number (`None`: nothing committed).
    pub sequence_number: Option<String>,
    /// The checkpoint's `ver` (0: no checkpoint).
    pub version: u64,
    /// The shard engine's combined watermark (epoch ms), once it has one.
    pub watermark_ms: Option<i64>,
    /// Wall clock minus the watermark (ms).
    pub watermark_lag_ms: Option<i64>,
    /// Records the shard's engine has processed (over its life, adopted parents included).
    pub records_in: u64,
    /// Key groups holding state.
    pub state_items: usize,
    /// Bytes of key-group state.
    pub state_bytes: u64,
    /// Key groups spilled to S3.
    pub spilled_items: usize,
    /// Attempts of a record on which user code keeps failing, if any.
    pub failing_attempts: Option<u32>,
    /// `MillisBehindLatest` of a `GetRecords` after the checkpoint: how far the checkpoint is
    /// behind the tip of the shard (with a stream).
    pub millis_behind_latest: Option<i64>,
    /// Records after the checkpoint in the first page read (at most 1000; see
    /// `pending_at_least`).
    pub pending_records: Option<u64>,
    /// Whether more records than `pending_records` may be pending (the page was full).
    pub pending_at_least: bool,
    /// Wall clock minus the arrival time of the oldest record not yet checkpointed (the
    /// iterator age; 0 when nothing is pending).
    pub iterator_age_ms: Option<i64>,
    /// Whether the shard is closed (split or merged; with a stream).
    pub closed: Option<bool>,
    /// Why the stream figures are missing, if they are.
    pub note: Option<String>,
}

/// A stage's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageStatus {
    /// The stage.
    pub stage: String,
    /// Its table.
    pub table: String,
    /// Its stream, if given.
    pub stream: Option<String>,
    /// When the status was taken (epoch ms).
    pub at_ms: i64,
    /// Every shard with a checkpoint or in the stream, sorted by id.
    pub shards: Vec<ShardStatus>,
    /// Messages in the dead-letter queue (`ApproximateNumberOfMessages`).
    pub dlq_depth: Option<u64>,
    /// Messages of the queue being received (`ApproximateNumberOfMessagesNotVisible`).
    pub dlq_in_flight: Option<u64>,
}

impl ShardStatus {
    /// Whether the shard is closed and the stage committed its every record: nothing about it
    /// changes any more (see [`StatusOptions::skip_shards`]).
    pub fn is_drained(&self) -> bool {
        self.closed == Some(true) && self.pending_records == Some(0) && self.sequence_number.is_some()
    }
}

/// Reads the status of `options.stage`. `kinesis` is needed with a stream, `sqs` with a
/// dead-letter queue.
pub async fn stage_status(
    dynamodb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    kinesis: Option<&aws_sdk_kinesis::Client>,
    sqs: Option<&aws_sdk_sqs::Client>,
    options: &StatusOptions,
) -> Result<StageStatus, LifecycleError> {
    check_stage_name(&options.stage)?;
    let checkpoints = stage_checkpoints(dynamodb, &options.table, &options.stage).await?;
    let now = now_ms();
    let mut shards: BTreeMap<String, ShardStatus> = stream::iter(
        checkpoints
            .iter()
            .filter(|c| !options.skip_shards.contains(&c.shard))
            .map(|c| shard_state(dynamodb, s3, &options.table, &options.stage, &c.shard, now)),
    )
    .buffer_unordered(options.concurrency.max(1))
    .try_collect::<Vec<_>>()
    .await?
    .into_iter()
    .map(|s| (s.shard.clone(), s))
    .collect();
    if let Some(stream) = &options.stream {
        let kinesis = kinesis.ok_or_else(|| LifecycleError::Invalid("a stream needs a Kinesis client".into()))?;
        for (id, closed) in list_shards(kinesis, stream).await? {
            if !options.skip_shards.contains(&id) {
                shards.entry(id.clone()).or_insert_with(|| empty(&id)).closed = Some(closed);
            }
        }
        let behind: Vec<(String, Result<Behind, LifecycleError>)> = stream::iter(shards.values().map(|s| {
            let shard = s.shard.clone();
            let seq = s.sequence_number.clone();
            async move {
                let b = behind(kinesis, stream, &shard, seq.as_deref(), now).await;
                (shard, b)
            }
        }))
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
        for (shard, b) in behind {
            if let Some(s) = shards.get_mut(&shard) {
                match b {
                    Ok(b) => {
                        s.millis_behind_latest = b.millis_behind_latest;
                        s.pending_records = Some(b.pending);
                        s.pending_at_least = b.pending_at_least;
                        s.iterator_age_ms = Some(b.iterator_age_ms);
                    }
                    Err(e) => s.note = Some(e.to_string()),
                }
            }
        }
    }
    let (dlq_depth, dlq_in_flight) = match &options.dlq_url {
        Some(url) => {
            let sqs = sqs.ok_or_else(|| LifecycleError::Invalid("a dead-letter queue needs an SQS client".into()))?;
            let (depth, in_flight) = queue_depth(sqs, url).await?;
            (Some(depth), Some(in_flight))
        }
        None => (None, None),
    };
    Ok(StageStatus {
        stage: options.stage.clone(),
        table: options.table.clone(),
        stream: options.stream.clone(),
        at_ms: now,
        shards: shards.into_values().collect(),
        dlq_depth,
        dlq_in_flight,
    })
}

fn empty(shard: &str) -> ShardStatus {
    ShardStatus {
        shard: shard.to_owned(),
        sequence_number: None,
        version: 0,
        watermark_ms: None,
        watermark_lag_ms: None,
        records_in: 0,
        state_items: 0,
        state_bytes: 0,
        spilled_items: 0,
        failing_attempts: None,
        millis_behind_latest: None,
        pending_records: None,
        pending_at_least: false,
        iterator_age_ms: None,
        closed: None,
        note: None,
    }
}

/// A shard's committed state (the store's `load`: every live group is read, spilled ones too).
async fn shard_state(
    dynamodb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    table: &str,
    stage: &str,
    shard: &str,
    now: i64,
) -> Result<ShardStatus, LifecycleError> {
    // A spilled group's pointer names its own bucket; the bucket here only lends its client.
    let mut store = DynamoDbCheckpointStore::new(dynamodb.clone(), table, stage, shard)
        .with_spill_bucket(Some(SpillBucket::new(s3.clone(), "")));
    let loaded = store.load().await?;
    let mut status = empty(shard);
    status.version = loaded.version;
    status.sequence_number = loaded.sequence_number.map(|s| s.as_str().to_owned());
    status.failing_attempts = loaded.failure.map(|f| f.attempts);
    if let Some(image) = &loaded.image {
        let (metrics, _) = EngineMetrics::of_checkpoint(image)?;
        status.records_in = metrics.records_in;
        if metrics.watermark > i64::MIN {
            status.watermark_ms = Some(metrics.watermark);
            status.watermark_lag_ms = Some(now.saturating_sub(metrics.watermark));
        }
        for (id, _) in image.operator_metas() {
            if let Some((_, groups)) = image.operator(id) {
                status.state_items += groups.len();
                status.state_bytes += groups.values().map(|b| b.len() as u64).sum::<u64>();
                status.spilled_items += groups.values().filter(|b| b.len() > MAX_INLINE_STATE_BYTES).count();
            }
        }
    }
    Ok(status)
}

/// Every shard of `stream` and whether it is closed.
async fn list_shards(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Result<Vec<(String, bool)>, LifecycleError> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = match token.take() {
            Some(t) => kinesis.list_shards().next_token(t),
            None => kinesis.list_shards().stream_name(stream),
        };
        let out = request
            .send()
            .await
            .map_err(|e| LifecycleError::aws("Kinesis", "ListShards", e))?;
        for s in out.shards() {
            let closed = s
                .sequence_number_range()
                .is_some_and(|r| r.ending_sequence_number().is_some());
            shards.push((s.shard_id().to_owned(), closed));
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(shards),
        }
    }
}

/// How far a shard's stream is ahead of its checkpoint.
struct Behind {
    millis_behind_latest: Option<i64>,
    pending: u64,
    pending_at_least: bool,
    iterator_age_ms: i64,
}

async fn behind(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    sequence: Option<&str>,
    now: i64,
) -> Result<Behind, LifecycleError> {
    let mut request = kinesis.get_shard_iterator().stream_name(stream).shard_id(shard);
    request = match sequence {
        Some(seq) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(seq),
        None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
    };
    let mut iterator = request
        .send()
        .await
        .map_err(|e| LifecycleError::aws("Kinesis", "GetShardIterator", e))?
        .shard_iterator;
    let mut result = Behind {
        millis_behind_latest: None,
        pending: 0,
        pending_at_least: false,
        iterator_age_ms: 0,
    };
    for _ in 0..MAX_EMPTY_PAGES {
        let Some(it) = iterator.take() else { break };
        let out = kinesis
            .get_records()
            .shard_iterator(it)
            .limit(PENDING_PAGE)
            .send()
            .await
            .map_err(|e| LifecycleError::aws("Kinesis", "GetRecords", e))?;
        result.millis_behind_latest = out.millis_behind_latest;
        if let Some(first) = out.records().first() {
            result.pending = out.records().len() as u64;
            result.pending_at_least = out.records().len() as i32 >= PENDING_PAGE;
            if let Some(arrival) = first.approximate_arrival_timestamp() {
                let arrival_ms = arrival.secs() * 1000 + i64::from(arrival.subsec_nanos() / 1_000_000);
                result.iterator_age_ms = now.saturating_sub(arrival_ms).max(0);
            }
            break;
        }
        // An empty page at the tip means nothing is pending; before it, read on.
        if out.millis_behind_latest.unwrap_or(0) == 0 {
            break;
        }
        iterator = out.next_shard_iterator;
    }
    Ok(result)
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<(u64, u64), LifecycleError> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| LifecycleError::aws("SQS", "GetQueueAttributes", e))?;
    let attr = |name: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((
        attr(QueueAttributeName::ApproximateNumberOfMessages),
        attr(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

/// A duration in ms as `850ms`, `12.3s`, `4m05s`, `3h20m`, `2d04h`.
fn duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let s = ms / 1000;
    let text = if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    };
    format!("{sign}{text}")
}

/// Bytes as `512B`, `3.4KiB`, `12.0MiB`, `1.2GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// Epoch ms as UTC `2023-11-14T22:13:20.000Z` (the raw number outside chrono's range).
fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// A sequence number shortened for the table (the JSON output has it whole).
fn short_sequence(seq: &str) -> String {
    if seq.len() <= 20 {
        seq.to_owned()
    } else {
        format!("{}…{}", &seq[..6], &seq[seq.len() - 12..])
    }
}

/// The status as an aligned text table, one row per shard, with a header line and the
/// dead-letter queue's depth.
pub fn render_table(status: &StageStatus) -> String {
    let dash = || "-".to_owned();
    let header = [
        "SHARD",
        "SEQUENCE",
        "VER",
        "WATERMARK",
        "WM LAG",
        "BEHIND",
        "PENDING",
        "ITER AGE",
        "ITEMS",
        "BYTES",
        "FAILING",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for s in &status.shards {
        let mut shard = s.shard.clone();
        if s.closed == Some(true) {
            shard.push_str(" (closed)");
        }
        rows.push(vec![
            shard,
            s.sequence_number.as_deref().map_or_else(dash, short_sequence),
            s.version.to_string(),
            s.watermark_ms.map_or_else(dash, timestamp),
            s.watermark_lag_ms.map_or_else(dash, duration),
            s.millis_behind_latest.map_or_else(dash, duration),
            s.pending_records.map_or_else(dash, |p| {
                if s.pending_at_least {
                    format!("≥{p}")
                } else {
                    p.to_string()
                }
            }),
            s.iterator_age_ms.map_or_else(dash, duration),
            s.state_items.to_string(),
            bytes(s.state_bytes),
            s.failing_attempts.map_or_else(dash, |a| format!("{a} attempts")),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "stage {} (table {}{})\n",
        status.stage,
        status.table,
        status
            .stream
            .as_deref()
            .map(|s| format!(", stream {s}"))
            .unwrap_or_default()
    );
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                let pad = w.saturating_sub(cell.chars().count());
                if c == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let items: usize = status.shards.iter().map(|s| s.state_items).sum();
    let total: u64 = status.shards.iter().map(|s| s.state_bytes).sum();
    out.push_str(&format!(
        "{} shard(s), {items} state item(s), {}",
        status.shards.len(),
        bytes(total)
    ));
    if let Some(depth) = status.dlq_depth {
        out.push_str(&format!(
            "; dead letters: {depth} queued, {} in flight",
            status.dlq_in_flight.unwrap_or(0)
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_naturally() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(12_000_000), "3h20m");
        assert_eq!(duration(-1500), "-1.5s");
        assert_eq!(timestamp(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(3 * 1024 + 400), "3.4KiB");
        assert_eq!(bytes(12 * 1024 * 1024), "12.0MiB");
        assert_eq!(short_sequence("12345"), "12345");
        assert_eq!(
            short_sequence("49651234567890123456789012345678901234567890123456789012"),
            "496512…123456789012"
        );
    }

    #[test]
    fn a_shard_is_drained_once_closed_committed_and_nothing_pending() {
        let mut s = empty("shardId-000000000000");
        s.closed = Some(true);
        s.pending_records = Some(0);
        assert!(!s.is_drained(), "never committed");
        s.sequence_number = Some("4965".into());
        assert!(s.is_drained());
        s.pending_records = Some(3);
        assert!(!s.is_drained(), "records pending");
        s.pending_records = Some(0);
        s.closed = Some(false);
        assert!(!s.is_drained(), "open: more records may come");
    }

    #[test]
    fn the_table_aligns_columns_and_sums_state() {
        let mut a = empty("shardId-000000000000");
        a.version = 7;
        a.sequence_number = Some("4965".into());
        a.state_items = 3;
        a.state_bytes = 2048;
        let mut b = empty("shardId-000000000001");
        b.closed = Some(true);
        b.pending_records = Some(1000);
        b.pending_at_least = true;
        let status = StageStatus {
            stage: "revenue".into(),
            table: "t".into(),
            stream: Some("s".into()),
            at_ms: 0,
            shards: vec![a, b],
            dlq_depth: Some(4),
            dlq_in_flight: Some(1),
        };
        let text = render_table(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "stage revenue (table t, stream s)");
        assert!(lines[1].starts_with("SHARD "), "{text}");
        assert!(lines[2].starts_with("shardId-000000000000 "), "{text}");
        assert!(lines[3].contains("(closed)") && lines[3].contains("≥1000"), "{text}");
        // Right-aligned numbers end in the same column.
        let ver = lines[1].find("VER").unwrap() + 3;
        assert_eq!(&lines[2][ver - 1..ver], "7", "{text}");
        assert_eq!(
            lines[4],
            "2 shard(s), 3 state item(s), 2.0KiB; dead letters: 4 queued, 1 in flight"
        );
    }
}
