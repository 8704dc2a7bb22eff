//! Where the dashboard reads what stages print: one [`MetricsSource`] trait, with
//! [`CloudWatchLogs`] (a function's log group `/aws/lambda/<function>`: on AWS, and on LocalStack,
//! which keeps a function's output there) and [`FileLogs`] (LocalStack's copy of each function's
//! output in `localstack/.state/logs/lambda/<function>.log`).

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::error::DashboardError;

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
