//! [`LocalDirStateStore`]: the engine's checkpoints in a local directory.
//!
//! # Layout
//! ```text
//! <dir>/00000000000000000001.full.sfck   a full checkpoint (every key group), epoch 1
//! <dir>/00000000000000000002.incr.sfck   an incremental checkpoint (changed key groups), epoch 2
//! <dir>/00000000000000000003.incr.sfck   ...
//! <dir>/.tmp-*                          a write in progress (or interrupted by a crash): ignored
//! ```
//! Each file holds one [`Checkpoint`] in the engine's versioned encoding (`SFCK` header). A file
//! appears only complete (written to a temporary file, synced, then renamed). [`StateStore::load`]
//! folds the latest full checkpoint and the increments after it, which must have consecutive
//! epochs, into a [`CheckpointImage`]. Older files are removed by [`LocalDirStateStore::prune`],
//! newer ones (not confirmed by the caller's commit point) by
//! [`LocalDirStateStore::discard_after`].

use std::fs;
use std::path::{Path, PathBuf};

use shardflow_engine::{Checkpoint, CheckpointImage, Committed, StateError, StateStore};

use crate::fs_util::{atomic_write, TEMP_PREFIX};

/// Why the directory store failed.
#[derive(Debug, thiserror::Error)]
pub enum DirStoreError {
    /// A file could not be read, written, listed or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file does not decode, or does not apply to the files before it.
    #[error("checkpoint {path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decoding or folding error.
        #[source]
        source: StateError,
    },
    /// The files do not form a chain (a missing epoch, or increments without a base).
    #[error("broken checkpoint chain in {dir}: {reason}")]
    BrokenChain {
        /// The directory.
        dir: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A checkpoint was committed with an epoch not after the stored ones.
    #[error("checkpoint epoch {epoch} is not after the stored epoch {stored}")]
    OutOfOrder {
        /// The epoch committed.
        epoch: u64,
        /// The latest stored epoch.
        stored: u64,
    },
}

/// One checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    epoch: u64,
    full: bool,
    path: PathBuf,
}

/// A [`StateStore`] in a local directory (see the module documentation for the layout).
#[derive(Debug)]
pub struct LocalDirStateStore {
    dir: PathBuf,
    fsync: bool,
}

impl LocalDirStateStore {
    /// Opens (creating it if needed) the store in `dir` and removes leftover temporary files.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, DirStoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| DirStoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let store = LocalDirStateStore { dir, fsync: true };
        for entry in store.read_dir()? {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let path = entry.path();
                fs::remove_file(&path).map_err(|source| DirStoreError::Io { path, source })?;
            }
        }
        Ok(store)
    }

    /// Whether commits are synced to disk before they return (default true; tests may turn it
    /// off for speed).
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_dir(&self) -> Result<Vec<fs::DirEntry>, DirStoreError> {
        let io = |source| DirStoreError::Io {
            path: self.dir.clone(),
            source,
        };
        fs::read_dir(&self.dir).map_err(io)?.map(|e| e.map_err(io)).collect()
    }

    /// The checkpoint files, by epoch.
    fn entries(&self) -> Result<Vec<Entry>, DirStoreError> {
        let mut out = Vec::new();
        for e in self.read_dir()? {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".sfck") else {
                continue;
            };
            let (epoch, full) = match stem.split_once('.') {
                Some((n, "full")) => (n, true),
                Some((n, "incr")) => (n, false),
                _ => continue,
            };
            let Ok(epoch) = epoch.parse::<u64>() else {
                continue;
            };
            out.push(Entry {
                epoch,
                full,
                path: e.path(),
            });
        }
        out.sort_by_key(|e| (e.epoch, !e.full));
        Ok(out)
    }

    fn file_name(epoch: u64, full: bool) -> String {
        format!("{epoch:020}.{}.sfck", if full { "full" } else { "incr" })
    }

    /// The latest stored epoch, if any.
    pub fn latest_epoch(&self) -> Result<Option<u64>, DirStoreError> {
        Ok(self.entries()?.last().map(|e| e.epoch))
    }

    /// Removes checkpoints with an epoch after `epoch` (written but never confirmed by the
    /// caller's commit point). Returns how many were removed.
    pub fn discard_after(&self, epoch: u64) -> Result<usize, DirStoreError> {
        self.remove(|e| e.epoch > epoch)
    }

    /// Removes the checkpoints that the latest full checkpoint at or before `epoch` makes
    /// unnecessary (everything before it). Returns how many were removed.
    pub fn prune(&self, epoch: u64) -> Result<usize, DirStoreError> {
        let entries = self.entries()?;
        let Some(base) = entries
            .iter()
            .filter(|e| e.full && e.epoch <= epoch)
            .map(|e| e.epoch)
            .max()
        else {
            return Ok(0);
        };
        self.remove(|e| e.epoch < base)
    }

    fn remove(&self, pred: impl Fn(&Entry) -> bool) -> Result<usize, DirStoreError> {
        let mut n = 0;
        for e in self.entries()?.into_iter().filter(|e| pred(e)) {
            fs::remove_file(&e.path).map_err(|source| DirStoreError::Io {
                path: e.path.clone(),
                source,
            })?;
            n += 1;
        }
        Ok(n)
    }

    fn load_image(&self) -> Result<Option<CheckpointImage>, DirStoreError> {
        let entries = self.entries()?;
        let Some(base_at) = entries
            .iter()
            .rposition(|e| e.full)
            .or(if entries.is_empty() { None } else { Some(0) })
        else {
            return Ok(None);
        };
        let chain = &entries[base_at..];
        if !chain[0].full && chain[0].epoch != 1 {
            return Err(DirStoreError::BrokenChain {
                dir: self.dir.clone(),
                reason: format!("no full checkpoint before incremental epoch {}", chain[0].epoch),
            });
        }
        let mut image: Option<CheckpointImage> = None;
        let mut prev_epoch = None;
        for e in chain {
            if let Some(prev) = prev_epoch {
                if e.epoch != prev + 1 {
                    return Err(DirStoreError::BrokenChain {
                        dir: self.dir.clone(),
                        reason: format!("epoch {} follows {prev}", e.epoch),
                    });
                }
            }
            prev_epoch = Some(e.epoch);
            let bytes = fs::read(&e.path).map_err(|source| DirStoreError::Io {
                path: e.path.clone(),
                source,
            })?;
            let corrupt = |source| DirStoreError::Corrupt {
                path: e.path.clone(),
                source,
            };
            let cp = Checkpoint::decode(&bytes).map_err(corrupt)?;
            if cp.epoch != e.epoch {
                return Err(DirStoreError::BrokenChain {
                    dir: self.dir.clone(),
                    reason: format!("{} holds epoch {}", e.path.display(), cp.epoch),
                });
            }
            match image.as_mut() {
                None => image = Some(CheckpointImage::new(cp)),
                Some(img) => img.apply(cp).map_err(corrupt)?,
            }
        }
        Ok(image)
    }

    fn write_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), DirStoreError> {
        if let Some(stored) = self.latest_epoch()? {
            if checkpoint.epoch <= stored {
                return Err(DirStoreError::OutOfOrder {
                    epoch: checkpoint.epoch,
                    stored,
                });
            }
        }
        let bytes = checkpoint.encode().map_err(|source| DirStoreError::Corrupt {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.dir.join(Self::file_name(checkpoint.epoch, checkpoint.full));
        atomic_write(&path, &bytes, self.fsync).map_err(|source| DirStoreError::Io { path, source })
    }
}

impl StateStore for LocalDirStateStore {
    type Error = DirStoreError;
    /// The local runner commits positions in its run manifest.
    type Position = ();
    type CommitStats = ();

    async fn load(&mut self) -> Result<Option<Committed<()>>, DirStoreError> {
        Ok(self.load_image()?.map(|image| Committed { image, position: () }))
    }

    async fn commit(&mut self, checkpoint: &Checkpoint, _: &()) -> Result<(), DirStoreError> {
        self.write_checkpoint(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }
    use shardflow_engine::combine::Count;
    use shardflow_engine::{Engine, Pipeline, Trigger, Windowing};

    fn pipeline() -> Pipeline<(u32, i64), (u32, i64, u64)> {
        Pipeline::builder("count")
            .event_time(|v: &(u32, i64)| v.1)
            .key_by(|v| v.0)
            .window(Windowing::tumbling(1_000).unwrap())
            .trigger(Trigger::at_watermark())
            .aggregate(Count, |k, w, _, n| (*k, w.start, n))
            .sink("counts")
    }

    #[test]
    fn increments_fold_into_the_engine_state_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline();
        let mut engine = p.engine();
        let shard = engine.partition("s");
        let mut store = LocalDirStateStore::open(dir.path()).unwrap().with_fsync(false);
        assert!(block_on(store.load()).unwrap().is_none());
        for (i, key) in [1u32, 2, 1, 3].into_iter().enumerate() {
            engine.process(shard, i as u64, 0, (key, 100 + i as i64));
            let cp = if i == 0 {
                engine.snapshot_full()
            } else {
                engine.snapshot()
            }
            .unwrap();
            block_on(store.commit(&cp, &())).unwrap();
        }
        std::fs::write(dir.path().join(".tmp-junk"), b"x").unwrap();
        let mut reopened = LocalDirStateStore::open(dir.path()).unwrap();
        assert!(!dir.path().join(".tmp-junk").exists(), "leftover temp file removed");
        let image = block_on(reopened.load()).unwrap().unwrap().image;
        assert_eq!(image.epoch(), 4);
        let mut restored = Engine::restore(&p, &image).unwrap();
        restored.finish();
        engine.finish();
        let key = |o: &shardflow_engine::Output<(u32, i64, u64)>| o.value;
        let mut a: Vec<_> = restored.drain_output().iter().map(key).collect();
        let mut b: Vec<_> = engine.drain_output().iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(a, vec![(1, 0, 2), (2, 0, 1), (3, 0, 1)]);
    }

    #[test]
    fn prune_discard_and_chain_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline();
        let mut engine = p.engine();
        let shard = engine.partition("s");
        let mut store = LocalDirStateStore::open(dir.path()).unwrap().with_fsync(false);
        for i in 0..6u64 {
            engine.process(shard, i, 0, (i as u32, 10 * i as i64));
            let cp = if i % 3 == 0 {
                engine.snapshot_full()
            } else {
                engine.snapshot()
            }
            .unwrap();
            block_on(store.commit(&cp, &())).unwrap();
        }
        // epochs 1(full) 2 3 4(full) 5 6
        assert_eq!(store.discard_after(5).unwrap(), 1);
        assert_eq!(
            store.prune(5).unwrap(),
            3,
            "epochs 1..=3 are covered by the full epoch 4"
        );
        let image = block_on(store.load()).unwrap().unwrap().image;
        assert_eq!(image.epoch(), 5);
        let stale = engine.snapshot().unwrap(); // epoch 7: fine, after 5
        assert_eq!(stale.epoch, 7);
        let err = block_on(store.commit(&stale, &())).map(|_| ());
        assert!(err.is_ok());
        assert!(
            matches!(block_on(store.load()), Err(DirStoreError::BrokenChain { .. })),
            "epoch 6 is missing between 5 and 7"
        );
        let old = Checkpoint { epoch: 3, ..stale };
        assert!(matches!(
            block_on(store.commit(&old, &())),
            Err(DirStoreError::OutOfOrder { epoch: 3, stored: 7 })
        ));
    }
}
