//! What every stateful operator checkpoints, and how: its keyed state in key groups, its
//! watermark, and operator-level meta. The operators' `snapshot` / `restore` / `adopt` hooks are
//! this type's (written out by `checkpoint_hooks!` in the parent module); each operator only
//! rebuilds what it derives from its state (timers, expiry queues) after a restore or an adoption.
//!
//! # Layout
//! One [`OperatorState`] per operator: the operator's id, its meta — the watermark as `i64`
//! little endian followed by the operator's [`OperatorMeta`] — and its key groups as
//! [`KeyedState`] encodes them.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::OperatorState;
use crate::error::StateError;
use crate::restore::OperatorStates;
use crate::state::{KeyedState, StateKey};
use crate::time::{Timestamp, MIN_TIMESTAMP};

/// Operator-level state a stateful operator keeps besides its watermark, stored after the
/// watermark in its checkpoint meta. `()` for operators that keep nothing else.
pub(crate) trait OperatorMeta: Sized {
    /// Appends the encoding.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads the bytes after the watermark; `None` if they are not an encoding of `Self`.
    fn decode(rest: &[u8]) -> Option<Self>;
    /// Takes over the meta of a closed parent shard (see [`CheckpointedKeyedState::adopt`]).
    fn adopt(&mut self, parent: Self);
}

impl OperatorMeta for () {
    fn encode(&self, _: &mut Vec<u8>) {}

    fn decode(rest: &[u8]) -> Option<Self> {
        rest.is_empty().then_some(())
    }

    fn adopt(&mut self, _: Self) {}
}

/// Which keys of a parent shard's state [`CheckpointedKeyedState::adopt`] takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdoptKeys {
    /// The keys whose encoding passes the caller's `keep`: the keys routed to this shard.
    Kept,
    /// Every key, whatever `keep` says: for state not keyed by the partition key.
    All,
}

/// Decodes a key group stored at an older schema version (the argument) into the current entries;
/// `None` if the operator has no migration from that version (see [`crate::schema`]).
pub(crate) type Upgrade<K, V> =
    std::sync::Arc<dyn Fn(u32, &[u8]) -> Option<Result<Vec<(K, V)>, postcard::Error>> + Send + Sync>;

/// The checkpointed state of one stateful operator (see the module documentation).
pub(crate) struct CheckpointedKeyedState<K, V, M = ()> {
    /// The operator's id ([`crate::StatefulOperator::id`]); names its checkpoint entry.
    pub(crate) id: String,
    /// The keyed state, in key groups.
    pub(crate) state: KeyedState<K, V>,
    /// The operator's watermark.
    pub(crate) watermark: Timestamp,
    /// Operator-level state besides the watermark.
    pub(crate) meta: M,
    adopt_keys: AdoptKeys,
    upgrade: Option<Upgrade<K, V>>,
}

impl<K: StateKey, V: Serialize + DeserializeOwned, M: OperatorMeta> CheckpointedKeyedState<K, V, M> {
    /// Empty state of operator `id` over `max_key_groups` groups, with `meta` and the watermark
    /// at the beginning of time; adopts the kept keys only.
    pub(crate) fn new(id: String, max_key_groups: u16, meta: M) -> Self {
        CheckpointedKeyedState {
            id,
            state: KeyedState::new(max_key_groups),
            watermark: MIN_TIMESTAMP,
            meta,
            adopt_keys: AdoptKeys::Kept,
            upgrade: None,
        }
    }

    /// The same state, reading key groups of older schema versions with `upgrade`.
    pub(crate) fn upgrading(mut self, upgrade: Upgrade<K, V>) -> Self {
        self.upgrade = Some(upgrade);
        self
    }

    /// The same state, adopting the keys `adopt_keys` says.
    pub(crate) fn adopting(mut self, adopt_keys: AdoptKeys) -> Self {
        self.adopt_keys = adopt_keys;
        self
    }

    /// Moves the watermark to `watermark` if that is later; whether it moved.
    pub(crate) fn advance_watermark(&mut self, watermark: Timestamp) -> bool {
        if watermark <= self.watermark {
            return false;
        }
        self.watermark = watermark;
        true
    }

    /// The operator's checkpoint: its meta and its changed key groups (all, if `full`).
    /// Clears the dirty marks.
    pub(crate) fn snapshot(&mut self, full: bool) -> Result<OperatorState, StateError> {
        let meta = encode_meta(self.watermark, &self.meta);
        self.state.operator_state(&self.id, meta, full)
    }

    /// Replaces the state with this operator's in `image`. Returns whether the image held the
    /// operator (if not, nothing changed); the caller then rebuilds what it derives from the state.
    pub(crate) fn restore(&mut self, image: &OperatorStates<'_>) -> Result<bool, StateError> {
        let Some((meta, groups)) = image.get(&self.id) else {
            return Ok(false);
        };
        match image.migration(&self.id) {
            None => self.state.restore_groups(groups, &self.id)?,
            Some(version) => self.restore_migrated(groups, version)?,
        }
        (self.watermark, self.meta) = self.decode_meta(meta)?;
        Ok(true)
    }

    /// Restores `groups`, stored at schema `version`, through the operator's migration. Each
    /// migrated entry goes to its key's group, which a migration that changes keys (the ids of a
    /// `deduplicate`) may move; every group is marked dirty.
    fn restore_migrated(&mut self, groups: &crate::checkpoint::KeyGroupBlobs, version: u32) -> Result<(), StateError> {
        let no_migration = || StateError::IncompatibleState {
            operators: vec![format!("{:?}: no migration from schema version {version}", self.id)],
        };
        let upgrade = self.upgrade.clone().ok_or_else(no_migration)?;
        let mut migrated = Vec::new();
        for (group, bytes) in groups {
            self.state.restore_entries(*group, Vec::new(), &self.id)?;
            if bytes.is_empty() {
                continue;
            }
            let entries = upgrade(version, bytes).ok_or_else(no_migration)?.map_err(|e| {
                StateError::codec(
                    format!("{} key group {group} (migrating from version {version})", self.id),
                    e,
                )
            })?;
            migrated.extend(entries);
        }
        for (key, value) in migrated {
            let group = self.state.group_of(&key);
            self.state.group_mut(group).insert(key, value);
        }
        Ok(())
    }

    /// Adds this operator's state in a closed parent shard's `image`: the keys [`AdoptKeys`]
    /// says, their groups marked dirty; the watermark becomes the later of the two, and the meta
    /// takes over the parent's as [`OperatorMeta::adopt`] says. Returns whether the image held the
    /// operator; the caller then rebuilds what it derives from the state.
    pub(crate) fn adopt(
        &mut self,
        image: &OperatorStates<'_>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<bool, StateError> {
        let Some((meta, groups)) = image.get(&self.id) else {
            return Ok(false);
        };
        if let Some(version) = image.migration(&self.id) {
            return Err(StateError::IncompatibleState {
                operators: vec![format!(
                    "{:?}: a parent shard's state of schema version {version} must be migrated, which adoption \
                     does not do: let the parents finish under the old build",
                    self.id
                )],
            });
        }
        match self.adopt_keys {
            AdoptKeys::Kept => self.state.adopt_groups(groups, &self.id, keep)?,
            AdoptKeys::All => self.state.adopt_groups(groups, &self.id, &|_| true)?,
        }
        let (watermark, meta) = self.decode_meta(meta)?;
        self.watermark = self.watermark.max(watermark);
        self.meta.adopt(meta);
        Ok(true)
    }

    fn decode_meta(&self, meta: &[u8]) -> Result<(Timestamp, M), StateError> {
        decode_meta(meta).ok_or_else(|| StateError::Mismatch(format!("{}: bad operator meta", self.id)))
    }
}

/// The checkpoint meta of a stateful operator: `watermark` (`i64` little endian), then `meta`.
fn encode_meta<M: OperatorMeta>(watermark: Timestamp, meta: &M) -> Vec<u8> {
    let mut out = watermark.to_le_bytes().to_vec();
    meta.encode(&mut out);
    out
}

/// Reads [`encode_meta`]'s output; `None` if `bytes` are not such an encoding.
pub(crate) fn decode_meta<M: OperatorMeta>(bytes: &[u8]) -> Option<(Timestamp, M)> {
    let watermark = Timestamp::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    Some((watermark, M::decode(&bytes[8..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_the_watermark_then_the_operator_meta() {
        assert_eq!(encode_meta(-2, &()), (-2i64).to_le_bytes());
        assert_eq!(decode_meta::<()>(&(-2i64).to_le_bytes()), Some((-2, ())));
        assert_eq!(decode_meta::<()>(&[0; 7]), None, "too short");
        assert_eq!(decode_meta::<()>(&[0; 9]), None, "trailing bytes");
    }
}
