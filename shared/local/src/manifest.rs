//! The run manifest: the runner's commit point, beside the engines' checkpoints.
//!
//! # State directory layout
//! ```text
//! <state_dir>/MANIFEST.json     the last committed run checkpoint (this file)
//! <state_dir>/<pipeline>/       each pipeline's engine checkpoints (a LocalDirStateStore)
//! ```
//! A run checkpoint at epoch `e` is taken between two records: results and late records are
//! drained and the output files flushed, every engine snapshots (epoch `e`) into its store, and
//! then `MANIFEST.json` is replaced atomically with epoch `e`, each partition's next offset,
//! the scheduler's position, the processing-time clock and the length of every output file.
//! Replacing the manifest is the commit: a crash before it leaves epoch `e - 1` in force, and
//! the next run discards engine checkpoints after the manifest's epoch and cuts the output files
//! back to the recorded lengths before it goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fs_util::atomic_write;

/// The manifest's file name inside the state directory.
pub const MANIFEST_FILE: &str = "MANIFEST.json";
/// The manifest format this release writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Position of one input partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPosition {
    /// The partition's name.
    pub name: String,
    /// Offset of the next record to process (= records consumed so far).
    pub next_offset: u64,
    /// Whether its end was reached.
    pub ended: bool,
}

/// Where the round-robin scheduler stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cursor {
    /// The partition being read.
    pub partition: usize,
    /// Records taken from it in the current batch.
    pub taken: usize,
}

/// See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunManifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The caller's identification of the input (a resumed run must read the same input).
    pub input_id: String,
    /// The pipelines, in order.
    pub pipelines: Vec<String>,
    /// Records per partition per round-robin turn.
    pub batch_size: usize,
    /// The epoch of the checkpoint this manifest commits.
    pub epoch: u64,
    /// Whether the run had finished (every partition ended, every window fired).
    pub finished: bool,
    /// The simulated processing-time clock.
    pub clock: i64,
    /// The scheduler's position.
    pub cursor: Cursor,
    /// Every partition's position.
    pub partitions: Vec<PartitionPosition>,
    /// Length in bytes of every output file, by file name.
    pub outputs: BTreeMap<String, u64>,
    /// Records consumed in total (all partitions).
    pub records_consumed: u64,
    /// Dead letters written in total.
    pub dead_letters: u64,
}

/// Why the manifest could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The manifest's path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not a manifest this release reads.
    #[error("{path}: {reason}")]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl RunManifest {
    /// The manifest of `state_dir`, or `None` if no checkpoint was committed there yet.
    pub fn read(state_dir: &Path) -> Result<Option<RunManifest>, ManifestError> {
        let path = state_dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ManifestError::Io { path, source }),
        };
        let m: RunManifest = serde_json::from_slice(&bytes).map_err(|e| ManifestError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if m.version != MANIFEST_VERSION {
            return Err(ManifestError::Invalid {
                path,
                reason: format!("manifest version {} (this release reads {MANIFEST_VERSION})", m.version),
            });
        }
        Ok(Some(m))
    }

    /// Replaces the manifest of `state_dir` atomically (the commit point).
    pub(crate) fn write(&self, state_dir: &Path, fsync: bool) -> Result<(), ManifestError> {
        let path = state_dir.join(MANIFEST_FILE);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ManifestError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        atomic_write(&path, &bytes, fsync).map_err(|source| ManifestError::Io { path, source })
    }
}
