//! What a person wants to see of a running pipeline, derived from what its stages publish.
//!
//! The input is [`Observations`]: the EMF line every batch prints
//! ([`shardflow_stage::BatchMetrics`], read back as [`EmfRecord`]), the error lines of the
//! stages' logs, and samples of each shard's status (iterator age and live state, as
//! `shardflow status` reads them from the stream and the state table). [`Observations::overview`]
//! turns them into per stage and shard figures at a given wall clock, and
//! [`Observations::series`] into time series for the charts. Pure: no I/O, no clock.
//!
//! Where a stage's figures come from: the EMF lines carry the stage as their only dimension
//! (the shard is a property of the line), so the metrics CloudWatch extracts from them
//! ([`StagePeriod`], put with [`Observations::replace_periods`]) hold per-stage figures only.
//! When a stage has them, its totals, rates, charts and cost are CloudWatch's, and its shard rows
//! (watermark, lag, counts, commits per shard) still come from the EMF lines of its log; when it
//! has none (LocalStack, `--metrics logs`), everything comes from the lines.

use std::collections::BTreeMap;

use serde::Serialize;
use shardflow_cost::emf::InvocationReport;
use shardflow_stage::{json_object_of, EmfRecord};

/// How long the rates (records per second) look back from the wall clock.
pub const RATE_WINDOW_MS: i64 = 60_000;

/// An error a stage logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorLine {
    /// The stage whose log held it.
    pub stage: String,
    /// When it was logged (epoch ms), as far as known.
    pub at_ms: i64,
    /// What it says: a JSON line's message ([`error_message`]), a text line whole (trimmed).
    pub message: String,
}

/// One reading of a shard's status (from the stream and the state table, as `shardflow status`
/// takes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardSample {
    /// The stage.
    pub stage: String,
    /// The shard.
    pub shard: String,
    /// When it was read (epoch ms).
    pub at_ms: i64,
    /// Wall clock minus the arrival of the oldest record not yet checkpointed, if read.
    pub iterator_age_ms: Option<i64>,
    /// Key groups holding state.
    pub state_items: u64,
    /// Bytes of key-group state.
    pub state_bytes: u64,
}

/// One invocation of a stage's function, from Lambda's REPORT line (logs that have them:
/// CloudWatch Logs; LocalStack's output files do not).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Invocation {
    /// When it was logged (epoch ms).
    pub at_ms: i64,
    /// Its billed duration, ms.
    pub billed_ms: f64,
    /// The function's memory, MB, if the line gave it.
    pub memory_mb: Option<f64>,
}

/// The shard name of the batches read back from CloudWatch metrics, which are published on the
/// `Stage` dimension only (the shard is a property of the log line, not a dimension).
pub const ALL_SHARDS: &str = "all shards";

/// One period of a stage's metrics as CloudWatch aggregates the EMF lines (GetMetricData on the
/// `Stage` dimension): per metric the sum over the period's batches, except the watermark lag
/// (its maximum: the least watermark) and the commit duration (its mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagePeriod {
    /// The period's start, epoch ms.
    pub start_ms: i64,
    /// Its length, ms.
    pub period_ms: i64,
    /// The batches in it (the sample count of `RecordsIn`).
    pub batches: u64,
    /// Sums, with `watermark_lag_ms` the maximum and `commit_ms` the mean.
    pub metrics: shardflow_stage::BatchMetrics,
}

impl StagePeriod {
    /// The period as `batches` batches of `stage` on [`ALL_SHARDS`], spread evenly over it, whose
    /// counts add up to the period's sums (each batch with the maximum lag and the mean commit
    /// duration), so that every figure derived from batches holds for the period.
    pub fn batches_of(&self, stage: &str) -> Vec<EmfRecord> {
        let n = self.batches;
        if n == 0 {
            return Vec::new();
        }
        let total = self.metrics.values();
        let share = |value: u64, i: u64| value / n + u64::from(i < value % n);
        (0..n)
            .map(|i| {
                let mut metrics = shardflow_stage::BatchMetrics::from_values(total.map(|v| share(v, i)));
                // Not sums: the same in every batch.
                metrics.watermark_lag_ms = self.metrics.watermark_lag_ms;
                metrics.commit_ms = self.metrics.commit_ms;
                let offset = i64::try_from((i + 1) * u64::try_from(self.period_ms).unwrap_or(0) / n).unwrap_or(0);
                EmfRecord {
                    stage: stage.to_owned(),
                    shard: ALL_SHARDS.to_owned(),
                    timestamp_ms: self.start_ms + offset - 1,
                    metrics,
                }
            })
            .collect()
    }
}

/// Everything the dashboard has read of a pipeline.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// The batches' EMF lines, as the stages' logs hold them (one per batch and shard).
    pub batches: Vec<EmfRecord>,
    /// The periods of the stages' CloudWatch metrics, as batches on [`ALL_SHARDS`]
    /// ([`StagePeriod::batches_of`]); a stage that has any takes its totals from them.
    pub metric_batches: Vec<EmfRecord>,
    /// Per stage, the invocations its log reported.
    pub invocations: BTreeMap<String, Vec<Invocation>>,
    /// Errors the stages logged.
    pub errors: Vec<ErrorLine>,
    /// Status readings of the shards.
    pub samples: Vec<ShardSample>,
}

/// Whether a log line reports an error: a text line whose level (one of its first three words)
/// is `ERROR`, a JSON line whose `level` is `ERROR`, or the Lambda runtime's `errorMessage`.
pub fn is_error_line(line: &str) -> bool {
    if let Some(v) = json_object_of(line) {
        return v.get("errorMessage").is_some()
            || v.get("level")
                .and_then(|l| l.as_str())
                .is_some_and(|l| l.eq_ignore_ascii_case("error"));
    }
    line.split_whitespace().take(3).any(|w| w == "ERROR")
}

/// What an error line says: of a JSON line (tracing's JSON output, with
/// `AWS_LAMBDA_LOG_FORMAT=JSON`, or the runtime's error record) its `fields.message`, `message`
/// or `errorMessage`, whichever comes first; of a line in tracing's text format
/// (`ERROR span{fields}: message`, as the functions log by default) the message after the level
/// and the spans; any other line trimmed, whole.
pub fn error_message(line: &str) -> String {
    let line = line.trim();
    if let Some(v) = json_object_of(line) {
        let message = [
            v.get("fields").and_then(|f| f.get("message")),
            v.get("message"),
            v.get("errorMessage"),
        ]
        .into_iter()
        .flatten()
        .find_map(|m| m.as_str().map(str::to_owned));
        if let Some(message) = message {
            return message;
        }
    }
    let Some(rest) = line.strip_prefix("ERROR ") else {
        return line.to_owned();
    };
    let rest = rest.trim_start();
    after_spans(rest).unwrap_or(rest).to_owned()
}

/// The text after tracing's span context (`name{fields}:name{fields}: `), if `text` opens with
/// one: braces balanced outside quoted field values, then `": "`.
fn after_spans(text: &str) -> Option<&str> {
    let (mut depth, mut quoted, mut escaped, mut spans) = (0usize, false, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if depth > 0 => quoted = !quoted,
            _ if quoted => {}
            '{' => {
                depth += 1;
                spans = true;
            }
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    if let Some(message) = text[i + 1..].strip_prefix(": ") {
                        return Some(message);
                    }
                    if !text[i + 1..].starts_with(':') {
                        return None;
                    }
                }
            }
            ':' | '(' | ')' if depth == 0 && !spans => return None,
            _ => {}
        }
    }
    None
}

impl Observations {
    /// Adds the lines of `stage`'s log: EMF lines as batches, error lines as errors (dated
    /// `at_ms`, or the latest batch's time when not given).
    pub fn add_log(&mut self, stage: &str, text: &str, at_ms: Option<i64>) {
        for line in text.lines() {
            self.add_log_line(stage, line, at_ms);
        }
    }

    /// Adds one line of `stage`'s log (see [`Observations::add_log`]).
    pub fn add_log_line(&mut self, stage: &str, line: &str, at_ms: Option<i64>) {
        let line = line.trim();
        if let Some(record) = EmfRecord::parse_line(line) {
            self.batches.push(record);
        } else if let Some(report) = InvocationReport::parse_line(line) {
            let at_ms = at_ms
                .or_else(|| self.batches.last().map(|b| b.timestamp_ms))
                .unwrap_or(0);
            self.invocations.entry(stage.to_owned()).or_default().push(Invocation {
                at_ms,
                billed_ms: report.billed_ms,
                memory_mb: report.memory_mb,
            });
        } else if is_error_line(line) {
            let at_ms = at_ms
                .or_else(|| self.batches.last().map(|b| b.timestamp_ms))
                .unwrap_or(0);
            self.errors.push(ErrorLine {
                stage: stage.to_owned(),
                at_ms,
                message: error_message(line),
            });
        }
    }

    /// Puts `periods` of `stage`'s CloudWatch metrics in place of what earlier reads gave for
    /// the same periods (a period read while it was still open has grown since). From then on
    /// the stage's totals are the metrics'; its shard rows stay the log lines'.
    pub fn replace_periods(&mut self, stage: &str, periods: &[StagePeriod]) {
        let covered = |t: i64| periods.iter().any(|p| t >= p.start_ms && t < p.start_ms + p.period_ms);
        self.metric_batches
            .retain(|b| !(b.stage == stage && covered(b.timestamp_ms)));
        for p in periods {
            self.metric_batches.extend(p.batches_of(stage));
        }
    }

    /// The batches `stage`'s totals, rates, charts and cost are taken from: its CloudWatch
    /// metrics' if it has any, else its log lines'.
    pub fn stage_batches(&self, stage: &str) -> Vec<&EmfRecord> {
        let metrics: Vec<&EmfRecord> = self.metric_batches.iter().filter(|b| b.stage == stage).collect();
        if metrics.is_empty() {
            self.batches.iter().filter(|b| b.stage == stage).collect()
        } else {
            metrics
        }
    }

    /// Drops what is older than `from_ms` (the dashboard keeps the last hour).
    pub fn retain_since(&mut self, from_ms: i64) {
        self.batches.retain(|b| b.timestamp_ms >= from_ms);
        self.metric_batches.retain(|b| b.timestamp_ms >= from_ms);
        self.errors.retain(|e| e.at_ms >= from_ms);
        self.samples.retain(|s| s.at_ms >= from_ms);
        for invocations in self.invocations.values_mut() {
            invocations.retain(|i| i.at_ms >= from_ms);
        }
    }

    /// The stages seen (in batches, status readings or errors), sorted.
    pub fn stages(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .batches
            .iter()
            .chain(&self.metric_batches)
            .map(|b| b.stage.clone())
            .chain(self.samples.iter().map(|s| s.stage.clone()))
            // A stage failing every batch prints no EMF line, only its errors.
            .chain(self.errors.iter().map(|e| e.stage.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The batches of `stage`, per shard, each in time order: its log lines' (and a shard
    /// for every status reading); its CloudWatch metrics' on [`ALL_SHARDS`] only while no line
    /// of its log was read.
    fn shards_of(&self, stage: &str) -> BTreeMap<&str, Vec<&EmfRecord>> {
        let mut shards: BTreeMap<&str, Vec<&EmfRecord>> = BTreeMap::new();
        let lines = self.batches.iter().filter(|b| b.stage == stage);
        let batches: Vec<&EmfRecord> = if lines.clone().next().is_some() {
            lines.collect()
        } else {
            self.metric_batches.iter().filter(|b| b.stage == stage).collect()
        };
        for b in batches {
            shards.entry(b.shard.as_str()).or_default().push(b);
        }
        for s in self.samples.iter().filter(|s| s.stage == stage) {
            shards.entry(s.shard.as_str()).or_default();
        }
        for batches in shards.values_mut() {
            batches.sort_by_key(|b| b.timestamp_ms);
        }
        shards
    }

    /// The samples of `stage`'s `shard`, in time order.
    fn samples_of(&self, stage: &str, shard: &str) -> Vec<&ShardSample> {
        let mut samples: Vec<&ShardSample> = self
            .samples
            .iter()
            .filter(|s| s.stage == stage && s.shard == shard)
            .collect();
        samples.sort_by_key(|s| s.at_ms);
        samples
    }

    /// Every stage's figures at wall clock `now_ms`; `windows` gives a stage's window (or
    /// session gap) in ms, [`DEFAULT_WINDOW_MS`] for a stage it does not name.
    pub fn overview(&self, now_ms: i64, windows: &BTreeMap<String, i64>) -> Vec<StageView> {
        self.stages()
            .into_iter()
            .map(|stage| {
                let window_ms = windows.get(&stage).copied().unwrap_or(DEFAULT_WINDOW_MS);
                self.stage_view(&stage, window_ms, now_ms)
            })
            .collect()
    }

    fn stage_view(&self, stage: &str, window_ms: i64, now_ms: i64) -> StageView {
        let shards: Vec<ShardView> = self
            .shards_of(stage)
            .into_iter()
            .map(|(shard, batches)| shard_view(shard, &batches, &self.samples_of(stage, shard), now_ms))
            .collect();
        let holding = shards
            .iter()
            .filter(|s| s.watermark_ms.is_some())
            .min_by_key(|s| s.watermark_ms);
        let last_error = self
            .errors
            .iter()
            .filter(|e| e.stage == stage)
            .max_by_key(|e| e.at_ms)
            .cloned();
        let commits: Vec<u64> = shards.iter().filter_map(|s| s.commit_ms).collect();
        let mut figures = self.stage_batches(stage);
        figures.sort_by_key(|b| b.timestamp_ms);
        StageView {
            stage: stage.to_owned(),
            window_ms,
            watermark_ms: holding.and_then(|s| s.watermark_ms),
            watermark_lag_ms: holding.and_then(|s| s.watermark_lag_ms),
            held_by: holding.map(|s| s.shard.clone()),
            watermark_since_ms: holding.and_then(|s| s.watermark_since_ms),
            flow: Flow::of(&figures, now_ms),
            state_bytes: shards.iter().filter_map(|s| s.state_bytes).reduce(|a, b| a + b),
            state_items: shards.iter().filter_map(|s| s.state_items).reduce(|a, b| a + b),
            commit_ms: (!commits.is_empty()).then(|| commits.iter().sum::<u64>() / commits.len() as u64),
            last_error,
            shards,
        }
    }

    /// `stage`'s time series from `from_ms` to `to_ms` in `buckets` buckets.
    pub fn series(&self, stage: &str, from_ms: i64, to_ms: i64, buckets: usize) -> StageSeries {
        let buckets = buckets.max(1);
        let bucket_ms = ((to_ms - from_ms + buckets as i64 - 1) / buckets as i64).max(1);
        let mut series = StageSeries {
            stage: stage.to_owned(),
            bucket_ms,
            starts: (0..buckets).map(|i| from_ms + i as i64 * bucket_ms).collect(),
            records_in_per_sec: vec![0.0; buckets],
            results_out_per_sec: vec![0.0; buckets],
            late_records: vec![0; buckets],
            dead_letter_records: vec![0; buckets],
            watermarks: BTreeMap::new(),
            iterator_ages: BTreeMap::new(),
        };
        let per_sec = 1000.0 / bucket_ms as f64;
        for b in self.stage_batches(stage) {
            let Some(i) = bucket_of(b.timestamp_ms, from_ms, bucket_ms, buckets) else {
                continue;
            };
            let m = &b.metrics;
            series.records_in_per_sec[i] += m.records_in as f64 * per_sec;
            series.results_out_per_sec[i] += m.results_out as f64 * per_sec;
            series.late_records[i] += m.late_records;
            series.dead_letter_records[i] += m.dead_letter_records;
        }
        for (shard, batches) in self.shards_of(stage) {
            let watermarks: Vec<(i64, i64)> = batches
                .iter()
                .filter(|b| bucket_of(b.timestamp_ms, from_ms, bucket_ms, buckets).is_some())
                .filter_map(|b| Some((b.timestamp_ms, b.watermark_ms()?)))
                .collect();
            series.watermarks.insert(shard.to_owned(), watermarks);
            let ages: Vec<(i64, i64)> = self
                .samples_of(stage, shard)
                .into_iter()
                .filter(|s| s.at_ms >= from_ms && s.at_ms <= to_ms)
                .filter_map(|s| Some((s.at_ms, s.iterator_age_ms?)))
                .collect();
            if !ages.is_empty() {
                series.iterator_ages.insert(shard.to_owned(), ages);
            }
        }
        series
    }

    /// The earliest and latest batch times, if any batch was seen.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let times = self.batches.iter().chain(&self.metric_batches).map(|b| b.timestamp_ms);
        Some((times.clone().min()?, times.max()?))
    }
}

/// The window assumed for a stage the caller names none for: one minute.
pub const DEFAULT_WINDOW_MS: i64 = 60_000;

fn bucket_of(t: i64, from_ms: i64, bucket_ms: i64, buckets: usize) -> Option<usize> {
    let end = from_ms + bucket_ms * buckets as i64;
    if t < from_ms || t > end {
        return None;
    }
    // The series' end is inclusive: a batch exactly at the end falls in the last bucket.
    Some(usize::try_from((t - from_ms) / bucket_ms).ok()?.min(buckets - 1))
}

/// Per second over the [`RATE_WINDOW_MS`] before `now_ms`.
fn rate(batches: &[&EmfRecord], now_ms: i64, count: impl Fn(&EmfRecord) -> u64) -> f64 {
    let total: u64 = batches
        .iter()
        .filter(|b| b.timestamp_ms > now_ms - RATE_WINDOW_MS && b.timestamp_ms <= now_ms)
        .map(|b| count(b))
        .sum();
    total as f64 * 1000.0 / RATE_WINDOW_MS as f64
}

fn shard_view(shard: &str, batches: &[&EmfRecord], samples: &[&ShardSample], now_ms: i64) -> ShardView {
    let mut watermark: Option<i64> = None;
    let mut since: Option<i64> = None;
    for b in batches {
        if let Some(w) = b.watermark_ms() {
            if watermark.is_none_or(|old| w > old) {
                watermark = Some(w);
                since = Some(b.timestamp_ms);
            }
        }
    }
    let last_commit = batches.iter().rev().find(|b| b.metrics.state_items_written > 0);
    let last_sample = samples.last();
    ShardView {
        shard: shard.to_owned(),
        batches: batches.len() as u64,
        last_batch_ms: batches.last().map(|b| b.timestamp_ms),
        watermark_ms: watermark,
        watermark_lag_ms: watermark.map(|w| now_ms.saturating_sub(w)),
        watermark_since_ms: since,
        iterator_age_ms: samples.iter().rev().find_map(|s| s.iterator_age_ms),
        flow: Flow::of(batches, now_ms),
        state_items: last_sample.map(|s| s.state_items),
        state_bytes: last_sample.map(|s| s.state_bytes),
        state_bytes_written: last_commit.map(|b| b.metrics.state_bytes_written),
        commit_ms: last_commit.map(|b| b.metrics.commit_ms),
    }
}

/// Records through a shard or stage: rates over the last minute, counts over the whole range.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Flow {
    /// Records in per second over the last minute.
    pub records_in_per_sec: f64,
    /// Results out per second over the last minute.
    pub results_out_per_sec: f64,
    /// Records in over the whole range.
    pub records_in: u64,
    /// Results out over the whole range.
    pub results_out: u64,
    /// Late records over the whole range.
    pub late_records: u64,
    /// Dead-lettered records over the whole range.
    pub dead_letter_records: u64,
}

impl Flow {
    /// The flow of `batches` (a shard's or a stage's) at wall clock `now_ms`.
    fn of(batches: &[&EmfRecord], now_ms: i64) -> Self {
        let total = |count: fn(&EmfRecord) -> u64| batches.iter().map(|b| count(b)).sum::<u64>();
        Flow {
            records_in_per_sec: rate(batches, now_ms, |b| b.metrics.records_in),
            results_out_per_sec: rate(batches, now_ms, |b| b.metrics.results_out),
            records_in: total(|b| b.metrics.records_in),
            results_out: total(|b| b.metrics.results_out),
            late_records: total(|b| b.metrics.late_records),
            dead_letter_records: total(|b| b.metrics.dead_letter_records),
        }
    }
}

/// One shard of a stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardView {
    /// The shard id.
    pub shard: String,
    /// Batches seen.
    pub batches: u64,
    /// Time of its latest batch.
    pub last_batch_ms: Option<i64>,
    /// Its watermark (the latest a batch reported).
    pub watermark_ms: Option<i64>,
    /// Wall clock minus the watermark.
    pub watermark_lag_ms: Option<i64>,
    /// When the watermark last moved (the first batch that reported its current value).
    pub watermark_since_ms: Option<i64>,
    /// The latest iterator age read.
    pub iterator_age_ms: Option<i64>,
    /// What flowed through it.
    #[serde(flatten)]
    pub flow: Flow,
    /// Key groups holding state (latest status reading).
    pub state_items: Option<u64>,
    /// Bytes of live state (latest status reading).
    pub state_bytes: Option<u64>,
    /// Bytes the latest commit wrote.
    pub state_bytes_written: Option<u64>,
    /// Duration of the latest commit, ms.
    pub commit_ms: Option<u64>,
}

/// One stage: its shards and their sums.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageView {
    /// The stage.
    pub stage: String,
    /// Its window (or session gap), ms.
    pub window_ms: i64,
    /// The least watermark of its shards (what a downstream stage sees).
    pub watermark_ms: Option<i64>,
    /// Wall clock minus that watermark.
    pub watermark_lag_ms: Option<i64>,
    /// The shard holding that watermark.
    pub held_by: Option<String>,
    /// When that shard's watermark last moved.
    pub watermark_since_ms: Option<i64>,
    /// What flowed through all its shards.
    #[serde(flatten)]
    pub flow: Flow,
    /// Bytes of live state, all shards (from status readings).
    pub state_bytes: Option<u64>,
    /// Key groups holding state, all shards (from status readings).
    pub state_items: Option<u64>,
    /// Mean of the shards' latest commit durations, ms.
    pub commit_ms: Option<u64>,
    /// The latest error the stage logged.
    pub last_error: Option<ErrorLine>,
    /// Its shards, sorted.
    pub shards: Vec<ShardView>,
}

/// A stage's time series over a range cut into equal buckets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSeries {
    /// The stage.
    pub stage: String,
    /// The width of a bucket, ms.
    pub bucket_ms: i64,
    /// The buckets' start times.
    pub starts: Vec<i64>,
    /// Records in per second, all shards, per bucket.
    pub records_in_per_sec: Vec<f64>,
    /// Results out per second, all shards, per bucket.
    pub results_out_per_sec: Vec<f64>,
    /// Late records per bucket.
    pub late_records: Vec<u64>,
    /// Dead-lettered records per bucket.
    pub dead_letter_records: Vec<u64>,
    /// Per shard, (time, watermark) of every batch that had one.
    pub watermarks: BTreeMap<String, Vec<(i64, i64)>>,
    /// Per shard, (time, iterator age) of every status reading.
    pub iterator_ages: BTreeMap<String, Vec<(i64, i64)>>,
}
