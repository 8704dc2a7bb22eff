//! Where the dashboard reads what stages publish: one [`MetricsSource`] trait for their logs, with
//! [`CloudWatchLogs`] (a function's log group `/aws/lambda/<function>`: on AWS, and on LocalStack,
//! which keeps a function's output there) and [`FileLogs`] (LocalStack's copy of each function's
//! output in `localstack/.state/logs/lambda/<function>.log`); and [`CloudWatchMetrics`], the
//! metrics CloudWatch extracts from the EMF lines on AWS (LocalStack does not extract them: there
//! the EMF lines are read from the logs).

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;

use shardflow_stage::{BatchMetrics, EMF_DIMENSION, EMF_METRICS, EMF_NAMESPACE};

use crate::error::DashboardError;
use crate::model::StagePeriod;

/// A line of a function's log and when it was written (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written, as far as the source knows.
    pub at_ms: i64,
    /// The line.
    pub text: String,
}

/// Reads the lines of a function's log.
pub trait MetricsSource: Send + Sync {
    /// The lines of `function`'s log written since `since_ms` that this source has not returned
    /// before.
    fn lines(&self, function: &str, since_ms: i64)
        -> impl Future<Output = Result<Vec<LogLine>, DashboardError>> + Send;
}

/// A function's log group in CloudWatch Logs.
#[derive(Debug, Clone)]
pub struct CloudWatchLogs {
    client: aws_sdk_cloudwatchlogs::Client,
    /// Per function, the time and count of the events at the latest time returned, so that the
    /// next read (from that time, inclusive) skips them.
    seen: std::sync::Arc<Mutex<HashMap<String, (i64, usize)>>>,
}

impl CloudWatchLogs {
    /// Reads through `client`.
    pub fn new(client: aws_sdk_cloudwatchlogs::Client) -> Self {
        CloudWatchLogs {
            client,
            seen: Default::default(),
        }
    }
}

/// The log group Lambda writes `function`'s output to.
pub fn log_group(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

impl MetricsSource for CloudWatchLogs {
    async fn lines(&self, function: &str, since_ms: i64) -> Result<Vec<LogLine>, DashboardError> {
        let (from, skip) = {
            let seen = self.seen.lock().map_err(|_| DashboardError::Poisoned)?;
            match seen.get(function) {
                Some(&(at, n)) if at >= since_ms => (at, n),
                _ => (since_ms, 0),
            }
        };
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .filter_log_events()
                .log_group_name(log_group(function))
                .start_time(from)
                .set_next_token(token.take())
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                // No log group yet: the function has not run.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    return Ok(Vec::new())
                }
                Err(e) => return Err(DashboardError::aws("CloudWatch Logs", "FilterLogEvents", e)),
            };
            for e in out.events() {
                if let (Some(at), Some(text)) = (e.timestamp(), e.message()) {
                    events.push(LogLine {
                        at_ms: at,
                        text: text.trim_end().to_owned(),
                    });
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        events.sort_by_key(|e| e.at_ms);
        // Events at `from` were returned last time up to `skip` of them.
        let at_from = events.iter().take_while(|e| e.at_ms == from).count();
        let fresh: Vec<LogLine> = events.into_iter().skip(skip.min(at_from)).collect();
        if let Some(last) = fresh.last() {
            let latest = last.at_ms;
            let mut n = fresh.iter().filter(|e| e.at_ms == latest).count();
            if latest == from {
                n += skip.min(at_from);
            }
            self.seen
                .lock()
                .map_err(|_| DashboardError::Poisoned)?
                .insert(function.to_owned(), (latest, n));
        }
        Ok(fresh)
    }
}

/// LocalStack's per-function output files (`<dir>/<function>.log`), read from where the last
/// read stopped; a line's time is when it was read.
#[derive(Debug)]
pub struct FileLogs {
    dir: PathBuf,
    offsets: Mutex<HashMap<String, u64>>,
}

impl FileLogs {
    /// Reads the files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileLogs {
            dir: dir.into(),
            offsets: Mutex::new(HashMap::new()),
        }
    }

    fn read_new(&self, function: &str, now_ms: i64) -> Result<Vec<LogLine>, DashboardError> {
        let path = self.dir.join(format!("{function}.log"));
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(DashboardError::Read { path, source }),
        };
        let mut offsets = self.offsets.lock().map_err(|_| DashboardError::Poisoned)?;
        let offset = offsets.get(function).copied().unwrap_or(0);
        let len = file
            .metadata()
            .map_err(|source| DashboardError::Read {
                path: path.clone(),
                source,
            })?
            .len();
        // A file that shrank was started anew (LocalStack's `up` wipes its state).
        let from = if len < offset { 0 } else { offset };
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(from))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|source| DashboardError::Read {
                path: path.clone(),
                source,
            })?;
        // Only whole lines: a line still being written is read next time.
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        offsets.insert(function.to_owned(), from + whole as u64);
        Ok(String::from_utf8_lossy(&bytes[..whole])
            .lines()
            .map(|l| LogLine {
                at_ms: now_ms,
                text: l.to_owned(),
            })
            .collect())
    }
}

impl MetricsSource for FileLogs {
    async fn lines(&self, function: &str, _since_ms: i64) -> Result<Vec<LogLine>, DashboardError> {
        self.read_new(function, crate::server::now_ms())
    }
}

/// The metrics CloudWatch extracted from the stages' EMF lines: namespace
/// [`EMF_NAMESPACE`], dimension [`EMF_DIMENSION`] = the stage, every metric of [`EMF_METRICS`],
/// read with GetMetricData in periods of [`CloudWatchMetrics::PERIOD_S`].
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchMetrics {
    /// The period read: a minute, the resolution of EMF's standard metrics.
    pub const PERIOD_S: i32 = 60;

    /// Reads through `client`.
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        CloudWatchMetrics { client }
    }

    /// The statistic read of metric `name`: the maximum lag (the least watermark), the mean commit
    /// duration, the sum of any count.
    fn statistic(name: &str) -> &'static str {
        match name {
            "WatermarkLag" => "Maximum",
            "CommitDuration" => "Average",
            _ => "Sum",
        }
    }

    /// `stage`'s periods from `from_ms` to `to_ms` (whole periods: `from_ms` is rounded down),
    /// each with its batches and metrics; periods without batches are left out.
    pub async fn periods(&self, stage: &str, from_ms: i64, to_ms: i64) -> Result<Vec<StagePeriod>, DashboardError> {
        use aws_sdk_cloudwatch::primitives::DateTime;
        use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};

        let period_ms = i64::from(Self::PERIOD_S) * 1000;
        let start = from_ms - from_ms.rem_euclid(period_ms);
        let query = |id: String, name: &str, stat: &str| {
            MetricDataQuery::builder()
                .id(id)
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(EMF_NAMESPACE)
                                .metric_name(name)
                                .dimensions(Dimension::builder().name(EMF_DIMENSION).value(stage).build())
                                .build(),
                        )
                        .period(Self::PERIOD_S)
                        .stat(stat)
                        .build(),
                )
                .return_data(true)
                .build()
        };
        let mut queries: Vec<MetricDataQuery> = EMF_METRICS
            .iter()
            .enumerate()
            .map(|(i, (name, _))| query(format!("m{i}"), name, Self::statistic(name)))
            .collect();
        queries.push(query("batches".to_owned(), EMF_METRICS[0].0, "SampleCount"));
        // Per period start: the batches and the values in EMF_METRICS' order.
        let mut by_start: std::collections::BTreeMap<i64, (u64, [u64; 12])> = Default::default();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from_millis(start))
                .end_time(DateTime::from_millis(to_ms))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| DashboardError::aws("CloudWatch", "GetMetricData", e))?;
            for result in out.metric_data_results() {
                let id = result.id().unwrap_or_default();
                for (t, v) in result.timestamps().iter().zip(result.values()) {
                    let Ok(at) = t.to_millis() else { continue };
                    let entry = by_start.entry(at).or_insert((0, [0; 12]));
                    // CloudWatch's statistics are doubles; the metrics are whole numbers.
                    let value = v.max(0.0).round() as u64;
                    if id == "batches" {
                        entry.0 = value;
                    } else if let Some(i) = id.strip_prefix('m').and_then(|i| i.parse::<usize>().ok()) {
                        if let Some(slot) = entry.1.get_mut(i) {
                            *slot = value;
                        }
                    }
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(by_start
            .into_iter()
            .filter(|(_, (batches, _))| *batches > 0)
            .map(|(start_ms, (batches, values))| StagePeriod {
                start_ms,
                period_ms,
                batches,
                metrics: BatchMetrics::from_values(values),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_log_file_is_read_once_line_by_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        std::fs::write(&path, "[ab] one\n[ab] tw").unwrap();
        let logs = FileLogs::new(dir.path());
        let first = logs.lines("f", 0).await.unwrap();
        assert_eq!(first.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["[ab] one"]);
        std::fs::write(&path, "[ab] one\n[ab] two\n[ab] three\n").unwrap();
        let next = logs.lines("f", 0).await.unwrap();
        assert_eq!(
            next.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["[ab] two", "[ab] three"]
        );
        assert!(logs.lines("f", 0).await.unwrap().is_empty());
        assert!(logs.lines("no-such-function", 0).await.unwrap().is_empty());
    }
}
