//! Per-batch counts averaged from a function's log: the EMF line each batch prints
//! (`shardflow_stage::BatchMetrics::to_emf_line`) and, when present, Lambda's REPORT lines (text or
//! JSON log format) for the billed duration and memory.

use std::path::Path;

use serde_json::Value;
use shardflow_stage::{json_object_of, EmfRecord};

use crate::error::CostError;
use crate::profile::{Basis, BasisKind, StageProfile};
use crate::shop::LOG_EVENT_OVERHEAD_BYTES;

/// What a log's lines add up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmfSummary {
    /// EMF lines (batches) read.
    pub batches: u64,
    /// Of them, batches that committed state (`StateItemsWritten > 0`).
    pub commits: u64,
    /// Sum of `RecordsIn`.
    pub records_in: u64,
    /// Sum of `ResultsOut`.
    pub results_out: u64,
    /// Sum of `StateItemsWritten`.
    pub state_items_written: u64,
    /// Sum of `StateBytesWritten`.
    pub state_bytes_written: u64,
    /// Sum of `CommitDuration`, ms.
    pub commit_ms: u64,
    /// Bytes of the EMF lines, with CloudWatch's per-event overhead.
    pub emf_bytes: f64,
    /// REPORT lines read.
    pub reports: u64,
    /// Sum of their billed durations, ms.
    pub billed_ms: f64,
    /// The memory the last REPORT line gave, MB.
    pub memory_mb: Option<f64>,
    /// Bytes of every other line (Lambda's own, the stage's logs), with the per-event overhead.
    pub other_log_bytes: f64,
    /// EMF lines of other stages, skipped.
    pub other_stages: u64,
}

/// What Lambda's REPORT line of one invocation says (text or JSON log format).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvocationReport {
    /// The billed duration, ms.
    pub billed_ms: f64,
    /// The function's memory, MB, when the line gives it.
    pub memory_mb: Option<f64>,
}

impl InvocationReport {
    /// The REPORT line `line` holds (`json`: the JSON object it holds, if already parsed), or
    /// `None` for any other line.
    pub fn of_line(line: &str, json: Option<&Value>) -> Option<Self> {
        if let Some(metrics) = json
            .filter(|v| v.get("type").and_then(Value::as_str) == Some("platform.report"))
            .and_then(|v| v.get("record")?.get("metrics"))
        {
            return Some(InvocationReport {
                billed_ms: metrics.get("billedDurationMs").and_then(Value::as_f64)?,
                memory_mb: metrics.get("memorySizeMB").and_then(Value::as_f64),
            });
        }
        if !line.contains("REPORT RequestId:") {
            return None;
        }
        Some(InvocationReport {
            billed_ms: number_after(line, "Billed Duration:")?,
            memory_mb: number_after(line, "Memory Size:"),
        })
    }

    /// The REPORT line `line` is, if it is one.
    pub fn parse_line(line: &str) -> Option<Self> {
        Self::of_line(line, json_object_of(line).as_ref())
    }
}

/// The number after `label` up to the next space, e.g. `Billed Duration: 12 ms`.
fn number_after(line: &str, label: &str) -> Option<f64> {
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

impl EmfSummary {
    /// Adds up the lines of `text`, keeping only EMF lines of `stage` when given.
    pub fn parse(text: &str, stage: Option<&str>) -> Self {
        let mut s = EmfSummary::default();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            let bytes = trimmed.len() as f64 + LOG_EVENT_OVERHEAD_BYTES;
            let json = json_object_of(trimmed);
            if let Some(record) = json.as_ref().and_then(EmfRecord::from_value) {
                if stage.is_some_and(|want| record.stage != want) {
                    s.other_stages += 1;
                    continue;
                }
                s.add_batch(&record, bytes);
                continue;
            }
            s.other_log_bytes += bytes;
            if let Some(report) = InvocationReport::of_line(trimmed, json.as_ref()) {
                s.add_report(&report);
            }
        }
        s
    }

    /// Adds one batch's EMF line, `line_bytes` long with CloudWatch's per-event overhead.
    pub fn add_batch(&mut self, record: &EmfRecord, line_bytes: f64) {
        let m = record.metrics;
        self.batches += 1;
        self.records_in += m.records_in;
        self.results_out += m.results_out;
        if m.state_items_written > 0 {
            self.commits += 1;
            self.state_items_written += m.state_items_written;
            self.state_bytes_written += m.state_bytes_written;
            self.commit_ms += m.commit_ms;
        }
        self.emf_bytes += line_bytes;
    }

    /// Adds one invocation's REPORT line.
    pub fn add_report(&mut self, report: &InvocationReport) {
        self.reports += 1;
        self.billed_ms += report.billed_ms;
        self.memory_mb = report.memory_mb.or(self.memory_mb);
    }

    /// Reads and adds up the log file at `path` (see [`EmfSummary::parse`]); an error if it holds
    /// no EMF line of the stage.
    pub fn read(path: &Path, stage: Option<&str>) -> Result<Self, CostError> {
        let text = std::fs::read_to_string(path).map_err(|source| CostError::Read {
            path: path.to_owned(),
            source,
        })?;
        let summary = Self::parse(&text, stage);
        if summary.batches == 0 {
            return Err(CostError::NoMetrics {
                path: path.to_owned(),
                stage: stage.map(str::to_owned),
            });
        }
        Ok(summary)
    }

    /// Mean records per batch.
    pub fn records_per_batch(&self) -> f64 {
        ratio(self.records_in as f64, self.batches as f64)
    }

    /// Results per input record.
    pub fn results_per_record(&self) -> f64 {
        ratio(self.results_out as f64, self.records_in as f64)
    }

    /// Mean dirty items per commit (items written less the checkpoint item).
    pub fn dirty_items_per_commit(&self) -> f64 {
        ratio(self.state_items_written as f64, self.commits as f64) - 1.0
    }

    /// Mean bytes of a dirty item written.
    pub fn bytes_per_dirty_item(&self) -> f64 {
        ratio(
            self.state_bytes_written as f64,
            self.state_items_written.saturating_sub(self.commits) as f64,
        )
    }

    /// Replaces `profile`'s figures that the log measured, and says so in `basis`.
    pub fn apply(&self, profile: &mut StageProfile, origin: &str, basis: &mut Vec<Basis>) {
        let name = profile.name.clone();
        let mut measured = |figure: String| {
            basis.push(Basis::new(
                BasisKind::Measured,
                format!("{name}: {figure}"),
                format!("EMF lines of {origin}"),
            ))
        };
        measured(format!(
            "{} batches of {:.1} records on average (the model derives its own from the rate)",
            self.batches,
            self.records_per_batch()
        ));
        if self.records_in > 0 {
            profile.results_per_record = self.results_per_record();
            measured(format!("{:.4} results per input record", profile.results_per_record));
        }
        profile.emf_bytes_per_batch = ratio(self.emf_bytes, self.batches as f64);
        measured(format!("EMF line {:.0} B", profile.emf_bytes_per_batch));
        if self.commits > 0 {
            let dirty = self.dirty_items_per_commit().max(0.0);
            profile.state.dirty_items_per_batch = dirty;
            let item = self.bytes_per_dirty_item();
            if item > 0.0 && profile.state.live_items > 0.0 {
                profile.state.state_bytes = item * profile.state.live_items;
            }
            profile.commit_ms = ratio(self.commit_ms as f64, self.commits as f64);
            let note = if self.commits < self.batches {
                format!(
                    " (only {} of {} batches committed: per commit, taken as per batch)",
                    self.commits, self.batches
                )
            } else {
                String::new()
            };
            measured(format!(
                "{dirty:.1} dirty items of {item:.0} B per commit, commit {:.1} ms{note}",
                profile.commit_ms
            ));
        }
        if self.reports > 0 {
            profile.duration_ms_per_batch = ratio(self.billed_ms, self.reports as f64);
            profile.platform_log_bytes_per_invocation = ratio(self.other_log_bytes, self.reports as f64);
            if let Some(memory) = self.memory_mb {
                profile.memory_mb = memory;
            }
            measured(format!(
                "billed {:.1} ms per invocation at {} MB, {:.0} B of other log lines per invocation",
                profile.duration_ms_per_batch, profile.memory_mb, profile.platform_log_bytes_per_invocation
            ));
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_report_lines_give_the_billed_duration_and_memory() {
        let log = "START RequestId: 1 Version: $LATEST\n\
                   REPORT RequestId: 1\tDuration: 11.20 ms\tBilled Duration: 12 ms\tMemory Size: 256 MB\tMax Memory Used: 30 MB\n\
                   {\"time\":\"2026-12-05T00:00:00Z\",\"type\":\"platform.report\",\"record\":{\"requestId\":\"2\",\"metrics\":{\"durationMs\":17.5,\"billedDurationMs\":18,\"memorySizeMB\":512}}}\n";
        let s = EmfSummary::parse(log, None);
        assert_eq!(s.reports, 2);
        assert_eq!(s.billed_ms, 30.0);
        assert_eq!(s.memory_mb, Some(512.0));
        assert_eq!(s.batches, 0);
    }

    #[test]
    fn lines_that_are_not_json_or_are_damaged_are_counted_as_other_log_bytes() {
        let s = EmfSummary::parse("garbage\n{\"_aws\": {\n\n", Some("revenue"));
        assert_eq!(s.batches, 0);
        assert_eq!(s.other_log_bytes, 7.0 + 26.0 + 10.0 + 26.0);
    }
}
