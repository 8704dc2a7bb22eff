//! JSON-lines output files: results, the late side output and dead letters.
//!
//! Every file counts the bytes it has written, so that a checkpoint can record its length and a
//! resumed run can cut it back to that length (the results written after the checkpoint are
//! produced again, with the same ids): the files are exactly what one uninterrupted run writes.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use shardflow_engine::{LateRecord, Output, PaneInfo, Window};

/// An append-only JSON-lines file that knows its length.
pub(crate) struct JsonLinesSink {
    path: PathBuf,
    writer: BufWriter<File>,
    bytes: u64,
    line: Vec<u8>,
}

impl JsonLinesSink {
    /// Creates (or empties) the file.
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::create(path)?;
        Ok(Self::new(path, file, 0))
    }

    /// Opens the file cut back to `len` bytes (what a checkpoint recorded), for appending.
    pub(crate) fn truncated(path: &Path, len: u64) -> std::io::Result<Self> {
        let mut file = OpenOptions::new().create(true).write(true).truncate(false).open(path)?;
        let actual = file.metadata()?.len();
        if actual < len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} has {actual} bytes, the checkpoint recorded {len}", path.display()),
            ));
        }
        file.set_len(len)?;
        file.seek(SeekFrom::End(0))?;
        Ok(Self::new(path, file, len))
    }

    fn new(path: &Path, file: File, bytes: u64) -> Self {
        JsonLinesSink {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 16, file),
            bytes,
            line: Vec::with_capacity(256),
        }
    }

    /// Appends one value as a line.
    pub(crate) fn write<T: Serialize + ?Sized>(&mut self, value: &T) -> std::io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)?;
        self.line.push(b'\n');
        self.writer.write_all(&self.line)?;
        self.bytes += self.line.len() as u64;
        Ok(())
    }

    /// Writes buffered lines to the file; `sync` also makes them durable.
    pub(crate) fn flush(&mut self, sync: bool) -> std::io::Result<()> {
        self.writer.flush()?;
        if sync {
            self.writer.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// Bytes in the file (written so far, flushed or not).
    pub(crate) fn len(&self) -> u64 {
        self.bytes
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// A result as one JSON line: `{"id", "ts", "window"?, "pane"?, "value"}`.
#[derive(Serialize)]
pub(crate) struct ResultLine<'a, T> {
    /// The result's deterministic id (hex), to deduplicate or upsert on.
    id: String,
    /// Its event time.
    ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<Window>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pane: Option<PaneLine>,
    value: &'a T,
}

/// A pane as `{"timing": "early" | "on_time" | "late", "index": n}`.
#[derive(Serialize)]
pub(crate) struct PaneLine {
    timing: &'static str,
    index: u32,
}

impl From<PaneInfo> for PaneLine {
    fn from(p: PaneInfo) -> Self {
        PaneLine {
            timing: p.timing.as_str(),
            index: p.index,
        }
    }
}

impl<'a, T> ResultLine<'a, T> {
    pub(crate) fn new(o: &'a Output<T>) -> Self {
        ResultLine {
            id: o.id.to_hex(),
            ts: o.timestamp,
            window: o.pane.map(|(w, _)| w),
            pane: o.pane.map(|(_, p)| p.into()),
            value: &o.value,
        }
    }
}

/// A record of the late side output as one JSON line.
#[derive(Serialize)]
pub(crate) struct LateLine<'a> {
    pipeline: &'a str,
    operator: &'a str,
    partition: Option<&'a str>,
    offset: Option<u64>,
    event_time: i64,
    watermark: i64,
    window: Option<Window>,
}

impl<'a> LateLine<'a> {
    pub(crate) fn new(pipeline: &'a str, r: &'a LateRecord, partitions: &'a [String]) -> Self {
        LateLine {
            pipeline,
            operator: &r.operator,
            partition: r.partition.and_then(|p| partitions.get(p as usize)).map(String::as_str),
            offset: r.offset,
            event_time: r.timestamp,
            watermark: r.watermark,
            window: r.window,
        }
    }
}

/// A record that failed to decode, as one JSON line.
#[derive(Serialize)]
pub(crate) struct DeadLetterLine<'a> {
    partition: &'a str,
    offset: u64,
    reason: &'a str,
    raw_len: usize,
    /// The record as text, if it is UTF-8 (cut to 1 KiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    /// Otherwise its first 256 bytes in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_hex: Option<String>,
}

impl<'a> DeadLetterLine<'a> {
    pub(crate) fn new(partition: &'a str, offset: u64, reason: &'a str, raw: &'a [u8]) -> Self {
        let (text, hex) = match std::str::from_utf8(raw) {
            Ok(s) => {
                let mut end = s.len().min(1024);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                (Some(&s[..end]), None)
            }
            Err(_) => (
                None,
                Some(raw.iter().take(256).map(|b| format!("{b:02x}")).collect::<String>()),
            ),
        };
        DeadLetterLine {
            partition,
            offset,
            reason,
            raw_len: raw.len(),
            raw: text,
            raw_hex: hex,
        }
    }
}
