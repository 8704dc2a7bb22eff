//! Where change events go, and when they count as delivered.

use std::future::Future;
use std::path::Path;

use tokio::io::{AsyncWriteExt, BufWriter};

use crate::encode::{EncodeError, Format};
use crate::event::ChangeEvent;

/// A sink failure. The reader stops without confirming anything past the last flushed batch.
#[derive(Debug, thiserror::Error)]
pub enum ChangeSinkError {
    /// Writing failed.
    #[error("sink I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An event could not be encoded.
    #[error("cannot encode a change event: {0}")]
    Encode(#[from] EncodeError),
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
    fn send(&mut self, events: &[ChangeEvent]) -> impl Future<Output = Result<(), ChangeSinkError>> + Send;

    /// Resolves once every event accepted by `send` so far is durably acknowledged.
    fn flush(&mut self) -> impl Future<Output = Result<(), ChangeSinkError>> + Send;
}

enum Target {
    Stdout(BufWriter<tokio::io::Stdout>),
    File(BufWriter<tokio::fs::File>),
}

/// Writes events to a file or stdout in a [`Format`]: JSON as one line per event, the Protobuf
/// formats as length-delimited messages (each prefixed by its length as a varint, as the local
/// runner's shard files are). `flush` flushes the buffer and, for regular files, `fsync`s the
/// data, so an acknowledged event survives a crash.
pub struct FileSink {
    target: Target,
    format: Format,
    framed: Vec<u8>,
    written: u64,
}

impl FileSink {
    /// A sink appending to `path` (created if missing).
    pub async fn append_to_file(path: &Path, format: Format) -> Result<Self, ChangeSinkError> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(Self::with_target(
            Target::File(BufWriter::with_capacity(1 << 20, file)),
            format,
        ))
    }

    /// A sink writing to standard output.
    pub fn stdout(format: Format) -> Self {
        Self::with_target(
            Target::Stdout(BufWriter::with_capacity(1 << 16, tokio::io::stdout())),
            format,
        )
    }

    fn with_target(target: Target, format: Format) -> Self {
        FileSink {
            target,
            format,
            framed: Vec::with_capacity(512),
            written: 0,
        }
    }

    /// How many events were written.
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl ChangeSink for FileSink {
    async fn send(&mut self, events: &[ChangeEvent]) -> Result<(), ChangeSinkError> {
        for event in events {
            let data = self.format.encode(event)?.data;
            self.framed.clear();
            if self.format.is_text() {
                self.framed.extend_from_slice(&data);
                self.framed.push(b'\n');
            } else {
                prost::encoding::encode_varint(data.len() as u64, &mut self.framed);
                self.framed.extend_from_slice(&data);
            }
            match &mut self.target {
                Target::Stdout(w) => w.write_all(&self.framed).await?,
                Target::File(w) => w.write_all(&self.framed).await?,
            }
            self.written += 1;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ChangeSinkError> {
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
pub struct MemoryChangeSink {
    /// Every event sent, in order.
    pub events: Vec<ChangeEvent>,
    /// How many times `flush` was called.
    pub flushes: usize,
}

impl ChangeSink for MemoryChangeSink {
    async fn send(&mut self, events: &[ChangeEvent]) -> Result<(), ChangeSinkError> {
        self.events.extend_from_slice(events);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ChangeSinkError> {
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
    use prost::Message;

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
        let mut sink = FileSink::append_to_file(&path, Format::Json).await.unwrap();
        sink.send(&[event(1), event(2)]).await.unwrap();
        sink.flush().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["source"]["lsn"], 2);
        assert_eq!(sink.written(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn file_sink_writes_protobuf_length_delimited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pb");
        let mut sink = FileSink::append_to_file(&path, Format::Protobuf).await.unwrap();
        sink.send(&[event(1), event(2)]).await.unwrap();
        sink.flush().await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut rest = bytes.as_slice();
        let mut back = Vec::new();
        while !rest.is_empty() {
            let pb = shardflow_schemas::cdc::v1::ChangeEvent::decode_length_delimited(&mut rest).unwrap();
            back.push(crate::proto::from_proto(pb).unwrap());
        }
        assert_eq!(back, vec![event(1), event(2)]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn flushing_to_a_device_that_cannot_sync_succeeds() {
        let mut sink = FileSink::append_to_file(Path::new("/dev/null"), Format::Protobuf)
            .await
            .unwrap();
        sink.send(&[event(1)]).await.unwrap();
        sink.flush().await.unwrap();
    }
}
