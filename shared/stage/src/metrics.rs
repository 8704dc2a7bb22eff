//! Per-batch metrics as CloudWatch Embedded Metric Format (EMF) log lines.
//!
//! One JSON object per batch, printed to stdout: CloudWatch Logs extracts the metrics named in
//! `_aws.CloudWatchMetrics` under the namespace `shardflow`, with the dimension `Stage` only.
//! The shard is a property of the line (`Shard`), not a dimension: every dimension value makes
//! its own billed custom metric, so a `Shard` dimension would multiply the metrics by the shard
//! count (and again at every reshard). Per-shard figures stay in the logs, where CloudWatch Logs
//! Insights (or `shardflow cost --emf`) reads them.

use serde_json::{json, Map, Value};

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchMetrics {
    /// Records in the batch.
    pub records_in: u64,
    /// Records skipped as already committed.
    pub duplicates_skipped: u64,
    /// Values the pipeline's `deduplicate` steps dropped as repeats of an id already seen (an
    /// upstream stage's result written twice to this stage's input).
    pub duplicates_dropped: u64,
    /// Records later than the allowed lateness.
    pub late_records: u64,
    /// Records sent to the dead-letter destination (undecodable or late).
    pub dead_letter_records: u64,
    /// Results emitted.
    pub results_out: u64,
    /// Wall clock minus watermark, ms (0 when there is no watermark yet).
    pub watermark_lag_ms: u64,
    /// Bytes of state written by the commit.
    pub state_bytes_written: u64,
    /// State items (key groups) written by the commit.
    pub state_items_written: u64,
    /// Duration of the commit, ms.
    pub commit_ms: u64,
    /// Records read back from Kinesis before the batch (a gap under interval commits).
    pub gap_records: u64,
    /// `GetRecords` calls of that read (throttled ones included).
    pub gap_get_records: u64,
}

/// The CloudWatch namespace of the metrics.
pub const EMF_NAMESPACE: &str = "shardflow";
/// The one dimension the metrics are published on (its value: the stage's name).
pub const EMF_DIMENSION: &str = "Stage";

/// Every metric of the line, (name, CloudWatch unit), in the order of [`BatchMetrics::values`].
pub const METRICS: [(&str, &str); 12] = [
    ("RecordsIn", "Count"),
    ("DuplicatesSkipped", "Count"),
    ("DuplicatesDropped", "Count"),
    ("LateRecords", "Count"),
    ("DeadLetterRecords", "Count"),
    ("ResultsOut", "Count"),
    ("WatermarkLag", "Milliseconds"),
    ("StateBytesWritten", "Bytes"),
    ("StateItemsWritten", "Count"),
    ("CommitDuration", "Milliseconds"),
    ("GapRecords", "Count"),
    ("GapGetRecords", "Count"),
];

impl BatchMetrics {
    /// The metrics in the order of [`METRICS`].
    pub fn values(&self) -> [u64; 12] {
        [
            self.records_in,
            self.duplicates_skipped,
            self.duplicates_dropped,
            self.late_records,
            self.dead_letter_records,
            self.results_out,
            self.watermark_lag_ms,
            self.state_bytes_written,
            self.state_items_written,
            self.commit_ms,
            self.gap_records,
            self.gap_get_records,
        ]
    }

    /// The metrics from their values in the order of [`METRICS`].
    pub fn from_values(v: [u64; 12]) -> Self {
        BatchMetrics {
            records_in: v[0],
            duplicates_skipped: v[1],
            duplicates_dropped: v[2],
            late_records: v[3],
            dead_letter_records: v[4],
            results_out: v[5],
            watermark_lag_ms: v[6],
            state_bytes_written: v[7],
            state_items_written: v[8],
            commit_ms: v[9],
            gap_records: v[10],
            gap_get_records: v[11],
        }
    }

    /// The EMF object for `stage` and `shard` at `timestamp_ms`: metrics on the dimension
    /// `Stage`, the shard as the property `Shard`.
    pub fn to_emf(&self, stage: &str, shard: &str, timestamp_ms: i64) -> Value {
        let definitions: Vec<Value> = METRICS
            .iter()
            .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": EMF_NAMESPACE,
                    "Dimensions": [[EMF_DIMENSION]],
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert(EMF_DIMENSION.into(), json!(stage));
        root.insert("Shard".into(), json!(shard));
        for ((name, _), value) in METRICS.iter().zip(self.values()) {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root)
    }

    /// The EMF object as one line.
    pub fn to_emf_line(&self, stage: &str, shard: &str, timestamp_ms: i64) -> String {
        self.to_emf(stage, shard, timestamp_ms).to_string()
    }
}

/// One EMF line of a stage read back: whose batch it was, when, and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmfRecord {
    /// The stage (dimension `Stage`).
    pub stage: String,
    /// The shard (dimension `Shard`).
    pub shard: String,
    /// `_aws.Timestamp`, epoch ms: the arrival time of the batch's last record.
    pub timestamp_ms: i64,
    /// The batch's metrics; a metric missing from the line reads as 0.
    pub metrics: BatchMetrics,
}

impl EmfRecord {
    /// The record an EMF object holds, if it is one of [`BatchMetrics::to_emf`]'s (it has `_aws`
    /// and `RecordsIn`); `None` for any other JSON value.
    pub fn from_value(v: &Value) -> Option<Self> {
        let aws = v.get("_aws")?;
        v.get("RecordsIn")?;
        let text = |name: &str| v.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut values = [0u64; 12];
        for (slot, (name, _)) in values.iter_mut().zip(METRICS.iter()) {
            *slot = v.get(*name).and_then(Value::as_u64).unwrap_or(0);
        }
        Some(EmfRecord {
            stage: text("Stage"),
            shard: text("Shard"),
            timestamp_ms: aws.get("Timestamp").and_then(Value::as_i64).unwrap_or(0),
            metrics: BatchMetrics::from_values(values),
        })
    }

    /// The record of a log line holding an EMF object: the whole line, or from its first `{`
    /// (log exports and LocalStack's function logs prefix lines).
    pub fn parse_line(line: &str) -> Option<Self> {
        Self::from_value(&json_object_of(line)?)
    }

    /// The watermark the line implies (timestamp minus `WatermarkLag`), if the stage had one (a
    /// lag of 0 means none yet).
    pub fn watermark_ms(&self) -> Option<i64> {
        (self.metrics.watermark_lag_ms > 0).then(|| {
            self.timestamp_ms
                .saturating_sub(i64::try_from(self.metrics.watermark_lag_ms).unwrap_or(i64::MAX))
        })
    }
}

/// The JSON object a log line holds, if any: the whole line, or from its first `{`.
pub fn json_object_of(line: &str) -> Option<Value> {
    let start = line.find('{')?;
    serde_json::from_str::<Value>(&line[start..])
        .ok()
        .filter(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_it_carries() {
        let m = BatchMetrics {
            records_in: 100,
            duplicates_skipped: 4,
            duplicates_dropped: 3,
            late_records: 2,
            commit_ms: 7,
            ..Default::default()
        };
        let v: Value =
            serde_json::from_str(&m.to_emf_line("revenue", "shardId-000000000001", 1_700_000_000_000)).unwrap();
        let defs = v["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        assert_eq!(defs.len(), 12);
        for d in defs {
            let name = d["Name"].as_str().unwrap();
            assert!(v[name].is_u64(), "{name} has a value");
        }
        assert_eq!(v["RecordsIn"], 100);
        assert_eq!(v["DuplicatesSkipped"], 4);
        assert_eq!(v["DuplicatesDropped"], 3);
        assert!(
            defs.iter()
                .any(|d| d["Name"] == "DuplicatesDropped" && d["Unit"] == "Count"),
            "{defs:?}"
        );
        assert_eq!(v["LateRecords"], 2);
        assert_eq!(v["Stage"], "revenue");
        assert_eq!(v["Shard"], "shardId-000000000001", "the shard stays a property");
    }

    #[test]
    fn emf_metrics_are_published_on_the_stage_dimension_only_so_their_count_does_not_grow_with_shards() {
        let line = |shard: &str| -> Value {
            serde_json::from_str(&BatchMetrics::default().to_emf_line("revenue", shard, 1_700_000_000_000)).unwrap()
        };
        let (a, b) = (line("shardId-000000000000"), line("shardId-000000000001"));
        let dimensions = &a["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
        assert_eq!(dimensions, &json!([["Stage"]]));
        assert_eq!(dimensions, &b["_aws"]["CloudWatchMetrics"][0]["Dimensions"]);
    }

    #[test]
    fn an_emf_line_reads_back_as_the_batch_that_printed_it() {
        let m = BatchMetrics {
            records_in: 250,
            late_records: 3,
            dead_letter_records: 1,
            results_out: 20,
            watermark_lag_ms: 4_000,
            state_bytes_written: 900,
            state_items_written: 5,
            commit_ms: 12,
            ..Default::default()
        };
        let line = format!(
            "[abcd1234] {}",
            m.to_emf_line("revenue", "shardId-000000000002", 1_700_000_010_000)
        );
        let r = EmfRecord::parse_line(&line).unwrap();
        assert_eq!(r.stage, "revenue");
        assert_eq!(r.shard, "shardId-000000000002");
        assert_eq!(r.timestamp_ms, 1_700_000_010_000);
        assert_eq!(r.metrics, m);
        assert_eq!(r.watermark_ms(), Some(1_700_000_006_000));
    }

    #[test]
    fn lines_that_are_not_emf_read_as_nothing() {
        assert_eq!(EmfRecord::parse_line("START RequestId: 1"), None);
        assert_eq!(EmfRecord::parse_line(r#"{"level":"ERROR","message":"x"}"#), None);
        assert_eq!(EmfRecord::parse_line(r#"{"_aws": {"#), None);
        let no_watermark = BatchMetrics::default().to_emf_line("s", "shard", 5);
        assert_eq!(EmfRecord::parse_line(&no_watermark).unwrap().watermark_ms(), None);
    }
}
