//! Keyed state, partitioned into key groups.
//!
//! A key's group is `xxh3_64(postcard(key)) % max_key_groups` (Flink's key groups). The count is
//! fixed for a pipeline's life: state is stored and moved per key group, so a key finds its state
//! wherever its records arrive (after a reshard, or in another Lambda invocation). Both the hash
//! function (xxh3, specified) and the key encoding (postcard, a stable wire format) are stable
//! across releases.
//!
//! Every mutation marks its key group dirty; an incremental checkpoint writes exactly the dirty
//! groups, each as one blob (so DynamoDB items written per batch scale with dirty key groups, not
//! with records). [`KeyedState::dirty_bytes`] tells how many bytes those blobs hold, measuring
//! only the groups changed since it last looked.

use std::hash::Hash;

use postcard::ser_flavors::Flavor;
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

use crate::checkpoint::{CheckpointImage, KeyGroupBlobs, KeyGroupState, OperatorState};
use crate::error::StateError;

/// The default number of key groups (Flink's default lower bound for max parallelism).
pub const DEFAULT_MAX_KEY_GROUPS: u16 = 128;

/// What a type needs to be a key of keyed state.
pub trait StateKey: Hash + Eq + Ord + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Hash + Eq + Ord + Clone + Serialize + DeserializeOwned + Send + Sync + 'static> StateKey for T {}

/// A postcard flavor that feeds the encoding into an XXH3 hasher instead of a buffer.
pub(crate) struct HashFlavor<'a>(pub &'a mut Xxh3);

impl Flavor for HashFlavor<'_> {
    type Output = ();
    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.update(&[data]);
        Ok(())
    }
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.update(data);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// A postcard flavor that only counts the bytes of an encoding.
struct CountFlavor(usize);

impl Flavor for CountFlavor {
    type Output = usize;
    #[inline]
    fn try_push(&mut self, _: u8) -> postcard::Result<()> {
        self.0 += 1;
        Ok(())
    }
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0 += data.len();
        Ok(())
    }
    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.0)
    }
}

/// Feeds the stable encoding of `value` into `hasher`.
pub(crate) fn hash_into<T: Serialize + ?Sized>(hasher: &mut Xxh3, value: &T) {
    // Serializing into a hasher cannot fail for the serde data model postcard supports; a type
    // that postcard refuses (e.g. a map of unknown length) hashes as far as it got.
    let _ = postcard::serialize_with_flavor(value, HashFlavor(hasher));
}

/// The key group of `key` among `max_key_groups`.
#[inline]
pub fn key_group<K: Serialize + ?Sized>(key: &K, max_key_groups: u16) -> u16 {
    let mut h = Xxh3::new();
    hash_into(&mut h, key);
    (h.digest() % u64::from(max_key_groups.max(1))) as u16
}

/// The key group of a key given by its postcard encoding (what [`crate::Engine::adopt`]'s `keep`
/// receives): the same as [`key_group`] of the key.
pub fn key_group_of_encoded(encoded_key: &[u8], max_key_groups: u16) -> u16 {
    (xxhash_rust::xxh3::xxh3_64(encoded_key) % u64::from(max_key_groups.max(1))) as u16
}

/// Keyed state of one operator: a map per key group, with dirty tracking.
pub struct KeyedState<K, V> {
    max_key_groups: u16,
    groups: Vec<FxHashMap<K, V>>,
    dirty: Vec<bool>,
    /// Each group's encoded size when last encoded, decoded or measured.
    sizes: Vec<usize>,
    /// Whether a group may have changed since its size was taken.
    unmeasured: Vec<bool>,
}

impl<K: StateKey, V: Serialize + DeserializeOwned> KeyedState<K, V> {
    /// Empty state over `max_key_groups` groups.
    pub fn new(max_key_groups: u16) -> Self {
        let n = usize::from(max_key_groups.max(1));
        KeyedState {
            max_key_groups: max_key_groups.max(1),
            groups: (0..n).map(|_| FxHashMap::default()).collect(),
            dirty: vec![false; n],
            sizes: vec![0; n],
            unmeasured: vec![false; n],
        }
    }

    /// The key group of `key`.
    #[inline]
    pub fn group_of(&self, key: &K) -> u16 {
        key_group(key, self.max_key_groups)
    }

    /// The map of one key group, marked dirty (the caller is about to change it).
    #[inline]
    pub fn group_mut(&mut self, group: u16) -> &mut FxHashMap<K, V> {
        self.dirty[usize::from(group)] = true;
        self.unmeasured[usize::from(group)] = true;
        &mut self.groups[usize::from(group)]
    }

    /// The map of one key group, read only.
    pub fn group(&self, group: u16) -> &FxHashMap<K, V> {
        &self.groups[usize::from(group)]
    }

    /// Iterates over all (group, key, value).
    pub fn iter(&self) -> impl Iterator<Item = (u16, &K, &V)> {
        self.groups
            .iter()
            .enumerate()
            .flat_map(|(g, m)| m.iter().map(move |(k, v)| (g as u16, k, v)))
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.groups.iter().map(FxHashMap::len).sum()
    }

    /// Whether no key holds state.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(FxHashMap::is_empty)
    }

    /// Encodes the dirty groups (all groups if `full`) as `(group, bytes)`, entries sorted by key
    /// so that equal state gives equal bytes; an empty group encodes as empty bytes (a delete).
    /// Clears the dirty marks.
    pub fn snapshot(&mut self, full: bool, operator: &str) -> Result<Vec<(u16, Vec<u8>)>, StateError> {
        let mut out = Vec::new();
        for (g, map) in self.groups.iter().enumerate() {
            if !(full || self.dirty[g]) {
                continue;
            }
            if map.is_empty() {
                self.sizes[g] = 0;
                self.unmeasured[g] = false;
                if !full {
                    out.push((g as u16, Vec::new()));
                }
                continue;
            }
            let mut entries: Vec<(&K, &V)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let bytes = postcard::to_allocvec(&entries)
                .map_err(|e| StateError::codec(format!("{operator} key group {g}"), e))?;
            self.sizes[g] = bytes.len();
            self.unmeasured[g] = false;
            out.push((g as u16, bytes));
        }
        self.dirty.iter_mut().for_each(|d| *d = false);
        Ok(out)
    }

    /// Replaces one group with the decoded `bytes` (empty bytes: no state). Not marked dirty.
    pub fn restore_group(&mut self, group: u16, bytes: &[u8], operator: &str) -> Result<(), StateError> {
        let g = usize::from(group);
        if g >= self.groups.len() {
            return Err(StateError::Mismatch(format!(
                "{operator}: key group {group} out of range (max key groups {})",
                self.max_key_groups
            )));
        }
        let map = &mut self.groups[g];
        map.clear();
        self.sizes[g] = bytes.len();
        self.unmeasured[g] = false;
        if bytes.is_empty() {
            return Ok(());
        }
        let entries: Vec<(K, V)> =
            postcard::from_bytes(bytes).map_err(|e| StateError::codec(format!("{operator} key group {group}"), e))?;
        map.extend(entries);
        self.dirty[g] = false;
        Ok(())
    }

    /// Replaces one group's entries with `entries` (already decoded, e.g. by a migration), marked
    /// dirty: the group is rewritten by the next snapshot.
    pub fn restore_entries(&mut self, group: u16, entries: Vec<(K, V)>, operator: &str) -> Result<(), StateError> {
        let Some(map) = self.groups.get_mut(usize::from(group)) else {
            return Err(StateError::Mismatch(format!(
                "{operator}: key group {group} out of range (max key groups {})",
                self.max_key_groups
            )));
        };
        map.clear();
        map.extend(entries);
        self.dirty[usize::from(group)] = true;
        self.unmeasured[usize::from(group)] = true;
        Ok(())
    }

    /// Adds the entries of the decoded `bytes` whose key's encoding passes `keep` to one group
    /// (keys already present are replaced) and marks it dirty.
    pub fn adopt_group(
        &mut self,
        group: u16,
        bytes: &[u8],
        operator: &str,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<(), StateError> {
        let g = usize::from(group);
        if g >= self.groups.len() {
            return Err(StateError::Mismatch(format!(
                "{operator}: key group {group} out of range (max key groups {})",
                self.max_key_groups
            )));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let entries: Vec<(K, V)> =
            postcard::from_bytes(bytes).map_err(|e| StateError::codec(format!("{operator} key group {group}"), e))?;
        for (k, v) in entries {
            let encoded = postcard::to_allocvec(&k).map_err(|e| StateError::codec(format!("{operator} key"), e))?;
            if keep(&encoded) {
                self.groups[g].insert(k, v);
            }
        }
        self.dirty[g] = true;
        self.unmeasured[g] = true;
        Ok(())
    }

    /// The checkpoint of operator `operator`: its `meta` and its changed key groups (all, if
    /// `full`). Clears the dirty marks.
    pub fn operator_state(&mut self, operator: &str, meta: Vec<u8>, full: bool) -> Result<OperatorState, StateError> {
        let key_groups = self
            .snapshot(full, operator)?
            .into_iter()
            .map(|(key_group, bytes)| KeyGroupState { key_group, bytes })
            .collect();
        Ok(OperatorState {
            operator: operator.to_owned(),
            meta,
            key_groups,
        })
    }

    /// Replaces this state with operator `operator`'s key groups in `image`; returns the
    /// operator's meta, or `None` (state untouched) if the image holds no such operator.
    pub fn restore_from<'a>(
        &mut self,
        operator: &str,
        image: &'a CheckpointImage,
    ) -> Result<Option<&'a [u8]>, StateError> {
        let Some((meta, groups)) = image.operator(operator) else {
            return Ok(None);
        };
        self.restore_groups(groups, operator)?;
        Ok(Some(meta))
    }

    /// Replaces the groups listed in `groups` (operator `operator`'s, for errors) with their
    /// decoded bytes (see [`KeyedState::restore_group`]).
    pub fn restore_groups(&mut self, groups: &KeyGroupBlobs, operator: &str) -> Result<(), StateError> {
        for (g, bytes) in groups {
            self.restore_group(*g, bytes, operator)?;
        }
        Ok(())
    }

    /// Adds the keys of operator `operator`'s key groups in `image` that pass `keep` (see
    /// [`KeyedState::adopt_group`]); returns the operator's meta, or `None` if the image holds no
    /// such operator.
    pub fn adopt_from<'a>(
        &mut self,
        operator: &str,
        image: &'a CheckpointImage,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Option<&'a [u8]>, StateError> {
        let Some((meta, groups)) = image.operator(operator) else {
            return Ok(None);
        };
        self.adopt_groups(groups, operator, keep)?;
        Ok(Some(meta))
    }

    /// Adds the keys of `groups` (operator `operator`'s, for errors) that pass `keep` (see
    /// [`KeyedState::adopt_group`]).
    pub fn adopt_groups(
        &mut self,
        groups: &KeyGroupBlobs,
        operator: &str,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<(), StateError> {
        for (g, bytes) in groups {
            self.adopt_group(*g, bytes, operator, keep)?;
        }
        Ok(())
    }

    /// Number of dirty groups.
    pub fn dirty_groups(&self) -> usize {
        self.dirty.iter().filter(|d| **d).count()
    }

    /// The bytes the next incremental snapshot would encode: the summed encoded size of the dirty
    /// groups (an emptied group counts 0). Exact; the cost is one counting pass (no allocation,
    /// no sort) over the groups changed since the previous call or snapshot, whose sizes are then
    /// cached — at most what encoding those groups costs, and nothing for a group untouched since.
    pub fn dirty_bytes(&mut self) -> usize {
        let mut total = 0;
        for g in 0..self.groups.len() {
            if !self.dirty[g] {
                continue;
            }
            if self.unmeasured[g] {
                let map = &self.groups[g];
                // A map encodes as its length then each key and value: the bytes of the sorted
                // entry list the snapshot writes. Counting cannot fail for what postcard encodes;
                // a type it refuses counts as far as it got (the snapshot then reports the error).
                self.sizes[g] = if map.is_empty() {
                    0
                } else {
                    postcard::serialize_with_flavor(map, CountFlavor(0)).unwrap_or(0)
                };
                self.unmeasured[g] = false;
            }
            total += self.sizes[g];
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_are_stable_and_in_range() {
        // Pinned values: a change here breaks every stored checkpoint.
        assert_eq!(key_group(&1000u64, 128), key_group(&1000u64, 128));
        let g: Vec<u16> = (0u64..1000).map(|k| key_group(&k, 128)).collect();
        assert!(g.iter().all(|&x| x < 128));
        let distinct: std::collections::BTreeSet<_> = g.iter().collect();
        assert!(distinct.len() > 120, "keys spread over the groups: {}", distinct.len());
        assert_eq!(key_group(&"order-17", 128), key_group(&String::from("order-17"), 128));
    }

    #[test]
    fn incremental_snapshot_holds_only_dirty_groups_and_deletes() {
        let mut s: KeyedState<u64, u64> = KeyedState::new(16);
        let ga = s.group_of(&1);
        s.group_mut(ga).insert(1, 10);
        let snap = s.snapshot(false, "op").unwrap();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].0, ga);
        assert!(s.snapshot(false, "op").unwrap().is_empty(), "nothing changed since");
        s.group_mut(ga).remove(&1);
        let snap = s.snapshot(false, "op").unwrap();
        assert_eq!(snap, vec![(ga, Vec::new())], "an emptied group is written as a delete");
    }

    #[test]
    fn dirty_bytes_are_the_bytes_the_next_incremental_snapshot_encodes() {
        let mut s: KeyedState<String, Vec<i64>> = KeyedState::new(16);
        assert_eq!(s.dirty_bytes(), 0, "nothing changed");
        for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let g = s.group_of(&k.to_string());
            s.group_mut(g).insert(k.to_string(), vec![1_000_000; i + 1]);
        }
        let measured = s.dirty_bytes();
        let snap_len = |snap: &[(u16, Vec<u8>)]| snap.iter().map(|(_, b)| b.len()).sum::<usize>();
        let snap = s.snapshot(false, "op").unwrap();
        assert!(measured > 5 * 4, "{measured}");
        assert_eq!(measured, snap_len(&snap));
        assert_eq!(s.dirty_bytes(), 0, "the snapshot cleaned every group");

        // A group measured, then changed again, is measured again; others keep their size.
        let g = s.group_of(&"a".to_string());
        s.group_mut(g).insert("a".into(), vec![7; 100]);
        let first = s.dirty_bytes();
        s.group_mut(g).get_mut("a").unwrap().extend([7; 100]);
        let second = s.dirty_bytes();
        assert!(second > first + 100, "{first} -> {second}");
        let snap = s.snapshot(false, "op").unwrap();
        assert_eq!(second, snap_len(&snap));

        // An emptied group is a delete: no bytes.
        s.group_mut(g).clear();
        assert_eq!(s.dirty_bytes(), 0);
    }

    #[test]
    fn restore_round_trips() {
        let mut s: KeyedState<String, Vec<i64>> = KeyedState::new(8);
        for k in ["a", "b", "c", "d"] {
            let g = s.group_of(&k.to_string());
            s.group_mut(g).insert(k.to_string(), vec![1, 2, 3]);
        }
        let snap = s.snapshot(true, "op").unwrap();
        let mut r: KeyedState<String, Vec<i64>> = KeyedState::new(8);
        for (g, b) in &snap {
            r.restore_group(*g, b, "op").unwrap();
        }
        assert_eq!(r.len(), 4);
        assert_eq!(r.snapshot(true, "op").unwrap(), snap);
        assert!(r.restore_group(9, &[], "op").is_err());
    }
}
