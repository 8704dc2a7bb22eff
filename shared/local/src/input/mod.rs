//! Inputs: named partitions (simulated shards) of records, read one record at a time.
//!
//! A record's *offset* is its index among its partition's records (0, 1, 2, ...), counting
//! malformed records too; the runner checkpoints offsets and, when it resumes, skips each
//! partition up to its checkpointed offset with [`Input::skip`] (which need not decode).

mod generated;
mod json_lines;
mod protobuf;

use std::path::PathBuf;

pub use generated::IterInput;
pub use json_lines::JsonLinesFiles;
pub use protobuf::ProtobufFiles;

/// One record read from a partition.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<In> {
    /// A decoded value.
    Value(In),
    /// A record that could not be decoded; it goes to the dead-letter file and the run goes on.
    Malformed {
        /// Why it could not be decoded.
        reason: String,
        /// Its bytes (as read, without framing).
        raw: Vec<u8>,
    },
}

/// Why an input could not be read (an I/O failure, not a malformed record).
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct InputError {
    /// The file (or partition name) being read.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// A source of records split into partitions.
///
/// Contract: `partitions()` is fixed for the input's life; `next(p)` returns `p`'s records in
/// order, then `None` forever; the same input opened again yields the same records (that is
/// what makes a resumed run equal to an uninterrupted one).
pub trait Input<In> {
    /// The partitions' names, in a fixed order (index = partition number).
    fn partitions(&self) -> Vec<String>;

    /// The next record of partition `p`, or `None` at its end.
    fn next(&mut self, p: usize) -> Result<Option<Item<In>>, InputError>;

    /// Skips up to `n` records of partition `p` (without decoding them where possible);
    /// returns how many were skipped (fewer at the partition's end).
    fn skip(&mut self, p: usize, n: u64) -> Result<u64, InputError> {
        let mut skipped = 0;
        while skipped < n && self.next(p)?.is_some() {
            skipped += 1;
        }
        Ok(skipped)
    }
}

/// The partition name of a file: its name without the extension (`shard-0.jsonl` -> `shard-0`).
pub(crate) fn partition_name(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
