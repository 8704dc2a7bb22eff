//! Where change events go, and when they count as delivered.

use std::future::Future;
use std::path::Path;

use tokio::io::{AsyncWriteExt, BufWriter};

use crate::event::ChangeEvent;

/// A sink failure. The reader stops without confirming anything past the last flushed batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing failed.
    #[error("sink I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An event could not be encoded.
    #[error("sink encoding: {0}")]
    Encode(#[from] serde_json::Error),
    /// The destination refused events.
    #[error("sink rejected events: {0}")]
    Rejected(String),
    /// The Kinesis producer refused an event or stopped (e.g. gave up retrying).
    #[error("kinesis: {0}")]
    Kinesis(#[from] shardflow_kinesis::ProducerError),
}

/// A destination of change events with an explicit acknowledgement point.
///
/// The reader calls [`send`](ChangeSink::send) with events in commit order, then
/// [`flush`](ChangeSink::flush); only after `flush` returns `Ok` does it confirm the slot's LSN
/// to Postgres. A sink may buffer or pipeline inside `send`, but `flush` must not return before
/// every event sent so far is durably accepted by the destination.
pub trait ChangeSink {
    /// Accepts `events` (in order). May return before they are durable.
    fn send(&mut self, events: &[ChangeEvent]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Resolves once every event accepted by `send` so far is durably acknowledged.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;
}

enum Target {
    Stdout(BufWriter<tokio::io::Stdout>),
    File(BufWriter<tokio::fs::File>),
}

/// Writes each event as one line of Debezium JSON to a file or stdout. `flush` flushes the
/// buffer and, for regular files, `fsync`s the data, so an acknowledged event survives a crash.
pub struct JsonLinesSink {
    target: Target,
    line: Vec<u8>,
    written: u64,
}

impl JsonLinesSink {
    /// A sink appending to `path` (created if missing).
    pub async fn append_to_file(path: &Path) -> Result<Self, SinkError> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(Self::with_target(Target::File(BufWriter::with_capacity(1 << 20, file))))
    }

    /// A sink writing to standard output.
    pub fn stdout() -> Self {
        Self::with_target(Target::Stdout(BufWriter::with_capacity(1 << 16, tokio::io::stdout())))
    }

    fn with_target(target: Target) -> Self {
        JsonLinesSink {
            target,
            line: Vec::with_capacity(512),
            written: 0,
        }
    }

    /// How many events were written.
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl ChangeSink for JsonLinesSink {
    async fn send(&mut self, events: &[ChangeEvent]) -> Result<(), SinkError> {
        for event in events {
            self.line.clear();
            serde_json::to_writer(&mut self.line, event)?;
            self.line.push(b'\n');
            match &mut self.target {
                Target::Stdout(w) => w.write_all(&self.line).await?,
                Target::File(w) => w.write_all(&self.line).await?,
            }
            self.written += 1;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        match &mut self.target {
            Target::Stdout(w) => w.flush().await?,
            Target::File(w) => {
                w.flush().await?;
                match w.get_mut().sync_data().await {
                    // Devices and pipes (e.g. /dev/null) cannot be synced: flushed is all there is.
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }
}

/// Keeps events in memory; every `send` is acknowledged at once. For tests and embedding.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Every event sent, in order.
    pub events: Vec<ChangeEvent>,
    /// How many times `flush` was called.
    pub flushes: usize,
}

impl ChangeSink for MemorySink {
    async fn send(&mut self, events: &[ChangeEvent]) -> Result<(), SinkError> {
        self.events.extend_from_slice(events);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.flushes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Op, Source};
    use crate::lsn::Lsn;
    use crate::table::TableName;
    use crate::value::Row;

    fn event(i: u64) -> ChangeEvent {
        ChangeEvent {
            op: Op::Create,
            before: None,
            after: Some(Row::default()),
            key: Row::default(),
            source: Source {
                db: "d".into(),
                table: TableName::new("s", "t"),
                lsn: Lsn(i),
                commit_lsn: Lsn(i),
                tx_id: None,
                ts_ms: 0,
                snapshot: false,
            },
            ts_ms: 0,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn file_sink_appends_one_json_line_per_event_and_flush_makes_them_visible() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut sink = JsonLinesSink::append_to_file(&path).await.unwrap();
        sink.send(&[event(1), event(2)]).await.unwrap();
        sink.flush().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["source"]["lsn"], 2);
        assert_eq!(sink.written(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn flushing_to_a_device_that_cannot_sync_succeeds() {
        let mut sink = JsonLinesSink::append_to_file(Path::new("/dev/null")).await.unwrap();
        sink.send(&[event(1)]).await.unwrap();
        sink.flush().await.unwrap();
    }
}
