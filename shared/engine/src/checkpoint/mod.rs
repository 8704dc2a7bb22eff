//! Checkpoints: the engine's state as bytes, taken between any two records.
//!
//! # Protocol
//! - [`crate::Engine::snapshot`] returns an *incremental* [`Checkpoint`]: the engine-level state
//!   (watermarks of every partition, processing time, counters) in full, plus, per stateful
//!   operator, its small operator-level state and the bytes of every key group that changed since
//!   the previous snapshot (an empty blob deletes a group). Timers are not stored separately:
//!   they are part of the key groups' state and are rebuilt on restore.
//! - [`crate::Engine::snapshot_full`] returns every key group (a savepoint, or the base of a chain).
//! - A [`CheckpointImage`] folds a full checkpoint and the increments after it into the complete
//!   state; [`crate::Engine::restore`] turns an image back into an engine that behaves exactly
//!   like the one that was snapshotted.
//! - Results already drained from the engine are not part of a checkpoint: the caller emits them
//!   (idempotently, by [`crate::ResultId`]) before it commits the checkpoint.
//!
//! # Encoding
//! `b"SFCK"`, the format version as `u16` little endian, then the [`Checkpoint`] in postcard.
//! A reader accepts every version from [`MIN_FORMAT_VERSION`] to [`FORMAT_VERSION`]; a new
//! release that changes the layout bumps the version and keeps reading the old one.
//!
//! # Versions
//! - 1: operators are named by their position among all steps, `{position}-{kind}`.
//! - 2: operators are named by their ids ([`crate::StatefulOperator`]): a uid or the default id
//!   `{kind}-{n}`; the engine state may carry the count of repeats dropped by `deduplicate`
//!   after its version 1 fields (a version 1 reader ignores it). The postcard layout of
//!   [`Checkpoint`] is unchanged: a version 1 checkpoint decodes as it did, and a restore reads
//!   its positional ids as default ids (see [`crate::restore`]). The version was bumped so that a
//!   release that reads only version 1 refuses a version 2 checkpoint instead of finding none of
//!   its operators' state. Since schemas ([`crate::schema`]), a version 2 checkpoint also
//!   carries an entry `@schema/{id}` (no key groups) per operator: the layout is unchanged, a
//!   release without schemas would refuse these entries as state of unknown operators, and a
//!   checkpoint without them restores as state of schema version 1.

mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::StateError;

pub use store::{Committed, InMemoryStateStore, StateStore};

/// The format version this release writes.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version this release reads.
pub const MIN_FORMAT_VERSION: u16 = 1;
const MAGIC: &[u8; 4] = b"SFCK";

/// Encoded key groups of one operator, by key group.
pub type KeyGroupBlobs = BTreeMap<u16, Vec<u8>>;

/// The state of one key group of one operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupState {
    /// The key group.
    pub key_group: u16,
    /// Its encoded entries; empty means the group holds no state (delete it).
    pub bytes: Vec<u8>,
}

/// The state of one stateful operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    /// The operator's id ([`crate::StatefulOperator::id`], e.g. `window_aggregate-0` or a uid;
    /// in format version 1, its position and kind, e.g. `3-window_aggregate`).
    pub operator: String,
    /// Operator-level state (its watermark), always complete.
    pub meta: Vec<u8>,
    /// Key groups: the changed ones in an incremental checkpoint, all in a full one.
    pub key_groups: Vec<KeyGroupState>,
}

/// A snapshot of an engine (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The pipeline's name.
    pub pipeline: String,
    /// The pipeline's key-group count (fixed for its life).
    pub max_key_groups: u16,
    /// Sequence number of the snapshot, increasing by one per snapshot.
    pub epoch: u64,
    /// Whether every key group is included.
    pub full: bool,
    /// Engine-level state (watermarks, processing time, counters).
    pub engine: Vec<u8>,
    /// Per stateful operator.
    pub operators: Vec<OperatorState>,
}

impl Checkpoint {
    /// The versioned binary encoding.
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        let mut out = Vec::with_capacity(64 + self.size_hint());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        postcard::to_io(self, &mut out).map_err(|e| StateError::codec("checkpoint", e))?;
        Ok(out)
    }

    /// Decodes [`Checkpoint::encode`]'s output, of any supported format version.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() < 6 || &bytes[..4] != MAGIC {
            return Err(StateError::NotACheckpoint(format!(
                "{} bytes without the SFCK header",
                bytes.len()
            )));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(StateError::UnsupportedVersion {
                found: version,
                min: MIN_FORMAT_VERSION,
                max: FORMAT_VERSION,
            });
        }
        postcard::from_bytes(&bytes[6..]).map_err(|e| StateError::codec("checkpoint", e))
    }

    /// Bytes of key-group state it carries.
    pub fn size_hint(&self) -> usize {
        self.engine.len()
            + self
                .operators
                .iter()
                .map(|o| o.meta.len() + o.key_groups.iter().map(|g| g.bytes.len() + 4).sum::<usize>())
                .sum::<usize>()
    }

    /// Number of key groups it writes (changed or deleted).
    pub fn key_groups_written(&self) -> usize {
        self.operators.iter().map(|o| o.key_groups.len()).sum()
    }
}

/// The complete state of an engine: a full checkpoint with every later increment applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointImage {
    pipeline: String,
    max_key_groups: u16,
    epoch: u64,
    engine: Vec<u8>,
    operators: BTreeMap<String, (Vec<u8>, KeyGroupBlobs)>,
}

impl CheckpointImage {
    /// The image of a full checkpoint (or of the first incremental checkpoint of a fresh engine,
    /// which holds every group that has state).
    pub fn new(base: Checkpoint) -> Self {
        let mut image = CheckpointImage {
            pipeline: base.pipeline.clone(),
            max_key_groups: base.max_key_groups,
            epoch: base.epoch,
            engine: Vec::new(),
            operators: BTreeMap::new(),
        };
        image.apply_unchecked(base);
        image
    }

    /// Applies the next checkpoint: an increment, or a full checkpoint, which replaces the whole
    /// state (operators it does not list are removed).
    pub fn apply(&mut self, delta: Checkpoint) -> Result<(), StateError> {
        if delta.pipeline != self.pipeline || delta.max_key_groups != self.max_key_groups {
            return Err(StateError::Mismatch(format!(
                "increment of {}/{} key groups applied to {}/{}",
                delta.pipeline, delta.max_key_groups, self.pipeline, self.max_key_groups
            )));
        }
        if delta.epoch <= self.epoch {
            return Err(StateError::Mismatch(format!(
                "increment epoch {} is not after {}",
                delta.epoch, self.epoch
            )));
        }
        self.apply_unchecked(delta);
        Ok(())
    }

    fn apply_unchecked(&mut self, delta: Checkpoint) {
        self.epoch = delta.epoch;
        self.engine = delta.engine;
        if delta.full {
            let listed: std::collections::BTreeSet<&str> =
                delta.operators.iter().map(|o| o.operator.as_str()).collect();
            self.operators.retain(|id, _| listed.contains(id.as_str()));
        }
        for op in delta.operators {
            let entry = self.operators.entry(op.operator).or_default();
            entry.0 = op.meta;
            if delta.full {
                entry.1.clear();
            }
            for g in op.key_groups {
                if g.bytes.is_empty() {
                    entry.1.remove(&g.key_group);
                } else {
                    entry.1.insert(g.key_group, g.bytes);
                }
            }
        }
    }

    /// Bytes of encoded state it holds (engine, operator meta and every key group): a measure of
    /// the state's size, e.g. for a memory budget.
    pub fn size_hint(&self) -> usize {
        self.engine.len()
            + self
                .operators
                .values()
                .map(|(meta, groups)| meta.len() + groups.values().map(|b| b.len() + 4).sum::<usize>())
                .sum::<usize>()
    }

    /// The pipeline's name.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The key-group count.
    pub fn max_key_groups(&self) -> u16 {
        self.max_key_groups
    }

    /// The epoch of the last applied checkpoint.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Engine-level state.
    pub fn engine_state(&self) -> &[u8] {
        &self.engine
    }

    /// An operator's meta state and key groups, by the id the image keeps them under, if it has
    /// any (a restore reads them by the pipeline's ids, see [`crate::restore`]).
    pub fn operator(&self, id: &str) -> Option<(&[u8], &KeyGroupBlobs)> {
        self.operators.get(id).map(|(m, g)| (m.as_slice(), g))
    }

    /// Every operator's id (as the image keeps it) and meta state, in id order; the schema
    /// entries of the operators' state ([`crate::schema`]) are not operators and are left out.
    pub fn operator_metas(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.operators
            .iter()
            .filter(|(id, _)| !crate::schema::is_schema_entry(id))
            .map(|(id, (meta, _))| (id.as_str(), meta.as_slice()))
    }

    /// The image as one full checkpoint (a savepoint).
    pub fn to_checkpoint(&self) -> Checkpoint {
        Checkpoint {
            pipeline: self.pipeline.clone(),
            max_key_groups: self.max_key_groups,
            epoch: self.epoch,
            full: true,
            engine: self.engine.clone(),
            operators: self
                .operators
                .iter()
                .map(|(id, (meta, groups))| OperatorState {
                    operator: id.clone(),
                    meta: meta.clone(),
                    key_groups: groups
                        .iter()
                        .map(|(g, b)| KeyGroupState {
                            key_group: *g,
                            bytes: b.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(epoch: u64, full: bool, groups: &[(u16, &[u8])]) -> Checkpoint {
        Checkpoint {
            pipeline: "p".into(),
            max_key_groups: 8,
            epoch,
            full,
            engine: vec![epoch as u8],
            operators: vec![OperatorState {
                operator: "1-window_aggregate".into(),
                meta: vec![],
                key_groups: groups
                    .iter()
                    .map(|(g, b)| KeyGroupState {
                        key_group: *g,
                        bytes: b.to_vec(),
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn encoding_round_trips_and_is_versioned() {
        let c = cp(3, true, &[(1, b"abc"), (5, b"x")]);
        let bytes = c.encode().unwrap();
        assert_eq!(&bytes[..4], b"SFCK");
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), c);
        let mut future = bytes.clone();
        future[4] = 99;
        assert!(matches!(
            Checkpoint::decode(&future),
            Err(StateError::UnsupportedVersion { found: 99, .. })
        ));
        assert!(matches!(
            Checkpoint::decode(b"nope"),
            Err(StateError::NotACheckpoint(_))
        ));
        assert!(Checkpoint::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn image_applies_increments_and_deletes() {
        let mut img = CheckpointImage::new(cp(1, true, &[(1, b"a"), (2, b"b")]));
        img.apply(cp(2, false, &[(2, b""), (3, b"c")])).unwrap();
        let (_, groups) = img.operator("1-window_aggregate").unwrap();
        assert_eq!(groups.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(img.engine_state(), &[2]);
        assert!(img.apply(cp(2, false, &[])).is_err(), "epochs must increase");
        let mut renamed = cp(3, true, &[(4, b"d")]);
        renamed.operators[0].operator = "window_aggregate-0".into();
        img.apply(renamed).unwrap();
        let ids: Vec<&str> = img.operator_metas().map(|(id, _)| id).collect();
        assert_eq!(ids, ["window_aggregate-0"], "a full checkpoint replaces the operators");
        let mut other = cp(4, false, &[]);
        other.max_key_groups = 16;
        assert!(img.apply(other).is_err(), "key-group count is fixed");
    }
}
