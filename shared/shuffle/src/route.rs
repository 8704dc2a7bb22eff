//! Routing: each key group is one point of Kinesis's 128-bit hash-key space, owned by one shard.
//!
//! Key group `g` of `G` owns the slice `[g·2¹²⁸/G, (g+1)·2¹²⁸/G)` of the hash-key space and is
//! sent to its midpoint (as the record's `ExplicitHashKey`). A point lies in exactly one shard, so
//! a key group is never cut by a shard boundary, and a split or merge of the shuffle stream moves
//! whole key groups. `CreateStream` with `N` shards starts shard `i` at `⌊i·2¹²⁸/N⌋`; when `G` is
//! a multiple of `N` those boundaries are slice boundaries, so every shard owns `G/N` whole
//! groups. [`ShardMap::split_point`] gives the `NewStartingHashKey` that keeps a split on a slice
//! boundary too.

use std::ops::{Range, RangeInclusive};

use serde::Serialize;
use thiserror::Error;

/// Longest partition key (and so shard id used as one) Kinesis accepts, in bytes of ASCII.
const MAX_SHARD_ID_LEN: usize = 256;

/// Why a key group or a shard list cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    /// The key group is not below the pipeline's number of key groups.
    #[error("key group {group} is out of range: the pipeline has {max_key_groups} key groups")]
    KeyGroupOutOfRange {
        /// The key group asked for.
        group: u16,
        /// The pipeline's number of key groups.
        max_key_groups: u16,
    },
    /// No shard was given.
    #[error("the shuffle stream has no open shard")]
    NoShards,
    /// A shard id is empty or longer than 256 bytes.
    #[error("shard id {shard_id:?} is empty or longer than 256 bytes")]
    InvalidShardId {
        /// The refused id (truncated to 300 characters).
        shard_id: String,
    },
    /// A shard's range ends before it starts.
    #[error("shard {shard_id} has an empty hash-key range")]
    EmptyRange {
        /// The shard.
        shard_id: String,
    },
    /// The open shards' ranges do not tile the hash-key space exactly once (a closed shard was
    /// passed along with its children, or one is missing).
    #[error("the shards' hash-key ranges leave a gap or overlap at hash key {at}")]
    NotATiling {
        /// The first hash key covered twice or not at all.
        at: u128,
    },
    /// A shard id appears twice.
    #[error("shard {shard_id} is listed twice")]
    DuplicateShard {
        /// The shard.
        shard_id: String,
    },
}

/// `⌊num·2¹²⁸/den⌋` for `num <= den`, `0 < den <= 2¹⁷` (exact, no overflow).
fn fraction_of_space(num: u32, den: u32) -> u128 {
    if num == 0 {
        return 0;
    }
    if num >= den {
        // 2¹²⁸ itself does not fit: callers only reach it as an exclusive end.
        return u128::MAX;
    }
    // Here den >= 2, so 2¹²⁸ = q·den + r with q < 2¹²⁸ and 0 <= r < den.
    let (den, num) = (u128::from(den), u128::from(num));
    let (mut q, mut r) = (u128::MAX / den, u128::MAX % den + 1);
    if r == den {
        q += 1;
        r = 0;
    }
    num * q + num * r / den
}

/// The pipeline's key groups laid out on the hash-key space.
///
/// Contract: `hash_key(g)` is strictly increasing in `g`, lies inside group `g`'s slice, and
/// depends only on `g` and the number of key groups (fixed for a pipeline's life, as the
/// engine's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyGroupSpace {
    max_key_groups: u16,
}

impl KeyGroupSpace {
    /// The space of `max_key_groups` key groups (0 counts as 1, as in the engine).
    pub fn new(max_key_groups: u16) -> Self {
        KeyGroupSpace {
            max_key_groups: max_key_groups.max(1),
        }
    }

    /// The number of key groups.
    pub fn max_key_groups(&self) -> u16 {
        self.max_key_groups
    }

    /// The key group of `key`: exactly the engine's [`shardflow_engine::state::key_group`].
    #[inline]
    pub fn key_group<K: Serialize + ?Sized>(&self, key: &K) -> u16 {
        shardflow_engine::state::key_group(key, self.max_key_groups)
    }

    fn check(&self, group: u16) -> Result<(), RouteError> {
        if group < self.max_key_groups {
            Ok(())
        } else {
            Err(RouteError::KeyGroupOutOfRange {
                group,
                max_key_groups: self.max_key_groups,
            })
        }
    }

    /// The hash key of `group`: the midpoint `⌊(2g+1)·2¹²⁸/2G⌋` of its slice.
    #[inline]
    pub fn hash_key(&self, group: u16) -> Result<u128, RouteError> {
        self.check(group)?;
        Ok(self.point(group))
    }

    #[inline]
    fn point(&self, group: u16) -> u128 {
        fraction_of_space(2 * u32::from(group) + 1, 2 * u32::from(self.max_key_groups))
    }

    /// The hash key of `group` as Kinesis's `ExplicitHashKey` (a decimal string).
    pub fn explicit_hash_key(&self, group: u16) -> Result<String, RouteError> {
        self.hash_key(group).map(|h| h.to_string())
    }

    /// The first hash key of `group`'s slice, `⌊g·2¹²⁸/G⌋` (a split there keeps groups whole
    /// and cuts no slice).
    pub fn slice_start(&self, group: u16) -> Result<u128, RouteError> {
        self.check(group)?;
        Ok(fraction_of_space(u32::from(group), u32::from(self.max_key_groups)))
    }

    /// The key groups whose hash key lies in `range`: a contiguous (possibly empty) run, since
    /// hash keys increase with the group.
    pub fn groups_in(&self, range: &RangeInclusive<u128>) -> Range<u16> {
        let first = |pred: &dyn Fn(u128) -> bool| -> u16 {
            // The first group whose point satisfies `pred` (monotone), or max_key_groups.
            let (mut lo, mut hi) = (0u16, self.max_key_groups);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if pred(self.point(mid)) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            lo
        };
        let start = first(&|p| p >= *range.start());
        let end = first(&|p| p > *range.end());
        start..end.max(start)
    }
}

/// One open shard of the shuffle stream, as `ListShards` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShardRange {
    /// The shard id (`shardId-000000000000`).
    pub shard_id: String,
    /// The hash keys it owns (`HashKeyRange`, inclusive at both ends).
    pub hash_key_range: RangeInclusive<u128>,
}

impl ShardRange {
    /// A shard owning `hash_key_range`.
    pub fn new(shard_id: impl Into<String>, hash_key_range: RangeInclusive<u128>) -> Self {
        ShardRange {
            shard_id: shard_id.into(),
            hash_key_range,
        }
    }
}

/// The open shards of the shuffle stream, sorted by hash key, tiling the whole space.
///
/// Contract: every hash key (so every key group) is owned by exactly one shard of the map.
/// Build it from the *open* shards only (`ListShards` with `ShardFilter` `AT_LATEST`, or the
/// shards without an `EndingSequenceNumber`); a closed parent overlaps its children and is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    space: KeyGroupSpace,
    shards: Vec<ShardRange>,
    /// The index of the shard owning each key group (routing a record is a lookup).
    owners: Vec<u32>,
}

impl ShardMap {
    /// The map of `shards` for the key groups of `space`.
    pub fn new(space: KeyGroupSpace, shards: impl IntoIterator<Item = ShardRange>) -> Result<Self, RouteError> {
        let mut shards: Vec<ShardRange> = shards.into_iter().collect();
        if shards.is_empty() {
            return Err(RouteError::NoShards);
        }
        shards.sort_by_key(|s| *s.hash_key_range.start());
        let mut next = Some(0u128);
        for s in &shards {
            if s.shard_id.is_empty() || s.shard_id.len() > MAX_SHARD_ID_LEN {
                return Err(RouteError::InvalidShardId {
                    shard_id: s.shard_id.chars().take(300).collect(),
                });
            }
            if s.hash_key_range.is_empty() {
                return Err(RouteError::EmptyRange {
                    shard_id: s.shard_id.clone(),
                });
            }
            match next {
                Some(at) if at == *s.hash_key_range.start() => next = s.hash_key_range.end().checked_add(1),
                Some(at) => return Err(RouteError::NotATiling { at }),
                None => {
                    return Err(RouteError::NotATiling {
                        at: *s.hash_key_range.start(),
                    })
                }
            }
        }
        if let Some(at) = next {
            return Err(RouteError::NotATiling { at });
        }
        let mut ids: Vec<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(RouteError::DuplicateShard {
                shard_id: w[0].to_owned(),
            });
        }
        Ok(Self::with_owners(space, shards))
    }

    fn with_owners(space: KeyGroupSpace, shards: Vec<ShardRange>) -> Self {
        let mut owners = Vec::with_capacity(usize::from(space.max_key_groups()));
        for (i, s) in shards.iter().enumerate() {
            let groups = space.groups_in(&s.hash_key_range);
            owners.resize(usize::from(groups.end), i as u32);
        }
        ShardMap { space, shards, owners }
    }

    /// `n` shards split evenly as `CreateStream` does (shard `i` starts at `⌊i·2¹²⁸/n⌋`), with
    /// ids `shardId-000000000000` onwards: the embedded runner's in-memory shuffle stream.
    pub fn even(space: KeyGroupSpace, n: u16) -> Self {
        let n = u32::from(n.max(1));
        let shards = (0..n).map(|i| {
            let start = fraction_of_space(i, n);
            let end = if i + 1 == n {
                u128::MAX
            } else {
                fraction_of_space(i + 1, n) - 1
            };
            ShardRange::new(format!("shardId-{i:012}"), start..=end)
        });
        Self::with_owners(space, shards.collect())
    }

    /// The key-group space routed over.
    pub fn space(&self) -> KeyGroupSpace {
        self.space
    }

    /// The shards, in hash-key order.
    pub fn shards(&self) -> &[ShardRange] {
        &self.shards
    }

    /// The index (into [`ShardMap::shards`]) of the shard owning `hash_key`.
    #[inline]
    pub fn index_of_hash_key(&self, hash_key: u128) -> usize {
        // The shards tile the space from 0, so the first start is 0 and this is never 0.
        self.shards.partition_point(|s| *s.hash_key_range.start() <= hash_key) - 1
    }

    /// The shard owning `hash_key`.
    pub fn owner_of_hash_key(&self, hash_key: u128) -> &ShardRange {
        &self.shards[self.index_of_hash_key(hash_key)]
    }

    /// The index (into [`ShardMap::shards`]) of the shard owning key group `group`.
    #[inline]
    pub fn index_of_group(&self, group: u16) -> Result<usize, RouteError> {
        // `owners` has one entry per key group.
        match self.owners.get(usize::from(group)) {
            Some(&i) => Ok(i as usize),
            None => Err(RouteError::KeyGroupOutOfRange {
                group,
                max_key_groups: self.space.max_key_groups,
            }),
        }
    }

    /// The shard owning key group `group`.
    pub fn owner_of_group(&self, group: u16) -> Result<&ShardRange, RouteError> {
        Ok(&self.shards[self.index_of_group(group)?])
    }

    /// The key groups shard `shard_id` owns (a contiguous run, possibly empty), or `None` if the
    /// map has no such shard.
    pub fn groups_of(&self, shard_id: &str) -> Option<Range<u16>> {
        let shard = self.shards.iter().find(|s| s.shard_id == shard_id)?;
        Some(self.space.groups_in(&shard.hash_key_range))
    }

    /// A `NewStartingHashKey` for `SplitShard` of `shard_id` that gives each child half of its
    /// key groups (the lower child the smaller half), on a slice boundary; `None` if there is no
    /// such shard or it owns fewer than two groups.
    pub fn split_point(&self, shard_id: &str) -> Option<u128> {
        let groups = self.groups_of(shard_id)?;
        if groups.len() < 2 {
            return None;
        }
        let mid = groups.start + (groups.end - groups.start) / 2;
        self.space.slice_start(mid).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn even_shards_start_where_create_stream_starts_them() {
        let map = ShardMap::even(KeyGroupSpace::new(128), 3);
        let starts: Vec<u128> = map.shards().iter().map(|s| *s.hash_key_range.start()).collect();
        // CreateStream's 3-shard stream: the boundaries Kinesis reports.
        assert_eq!(
            starts,
            [
                0,
                113_427_455_640_312_821_154_458_202_477_256_070_485,
                226_854_911_280_625_642_308_916_404_954_512_140_970
            ]
        );
        assert_eq!(*map.shards()[2].hash_key_range.end(), u128::MAX);
    }

    #[test]
    fn hash_keys_are_slice_midpoints_in_decimal() {
        let space = KeyGroupSpace::new(2);
        assert_eq!(space.hash_key(0), Ok(1u128 << 126));
        assert_eq!(space.hash_key(1), Ok(3u128 << 126));
        assert_eq!(space.explicit_hash_key(1).unwrap(), (3u128 << 126).to_string());
        assert_eq!(
            space.hash_key(2),
            Err(RouteError::KeyGroupOutOfRange {
                group: 2,
                max_key_groups: 2
            })
        );
        let full = KeyGroupSpace::new(u16::MAX);
        assert!(full.hash_key(u16::MAX - 1).unwrap() < u128::MAX);
    }

    #[test]
    fn key_groups_are_the_engines() {
        let space = KeyGroupSpace::new(128);
        for key in ["ann", "bob", "carol"] {
            assert_eq!(space.key_group(key), shardflow_engine::state::key_group(key, 128));
        }
    }

    #[test]
    fn evenly_split_shards_own_equally_many_whole_groups_when_groups_are_a_multiple() {
        for n in 1..=8u16 {
            for k in [1u16, 2, 16] {
                let space = KeyGroupSpace::new(n * k);
                let map = ShardMap::even(space, n);
                for (i, shard) in map.shards().iter().enumerate() {
                    let i = i as u16;
                    assert_eq!(map.groups_of(&shard.shard_id), Some(i * k..(i + 1) * k), "n={n} k={k}");
                }
            }
        }
    }

    #[test]
    fn a_split_at_the_split_point_halves_a_shards_groups() {
        let space = KeyGroupSpace::new(128);
        let map = ShardMap::even(space, 4);
        let parent = map.shards()[1].clone();
        let at = map.split_point(&parent.shard_id).unwrap();
        let split = ShardMap::new(
            space,
            map.shards()
                .iter()
                .filter(|s| s.shard_id != parent.shard_id)
                .cloned()
                .chain([
                    ShardRange::new("lo", *parent.hash_key_range.start()..=at - 1),
                    ShardRange::new("hi", at..=*parent.hash_key_range.end()),
                ]),
        )
        .unwrap();
        assert_eq!(split.groups_of("lo"), Some(32..48));
        assert_eq!(split.groups_of("hi"), Some(48..64));
        assert_eq!(split.owner_of_group(47).unwrap().shard_id, "lo");
    }

    #[test]
    fn a_closed_parent_listed_with_its_children_is_refused() {
        let space = KeyGroupSpace::new(8);
        let half = 1u128 << 127;
        let shards = [
            ShardRange::new("parent", 0..=u128::MAX),
            ShardRange::new("a", 0..=half - 1),
            ShardRange::new("b", half..=u128::MAX),
        ];
        assert_eq!(ShardMap::new(space, shards), Err(RouteError::NotATiling { at: 0 }));
        assert_eq!(
            ShardMap::new(space, [ShardRange::new("a", 0..=half - 1)]),
            Err(RouteError::NotATiling { at: half })
        );
        assert_eq!(ShardMap::new(space, []), Err(RouteError::NoShards));
        assert_eq!(
            ShardMap::new(
                space,
                [
                    ShardRange::new("a", 0..=half - 1),
                    ShardRange::new("a", half..=u128::MAX)
                ]
            ),
            Err(RouteError::DuplicateShard { shard_id: "a".into() })
        );
    }

    /// A random history of splits and merges over 1 to 8 shards, as Kinesis allows them: a split
    /// at any inner hash key of one shard, a merge of two adjacent shards.
    fn history() -> impl Strategy<Value = (u16, u16, Vec<(bool, usize, u128)>)> {
        (
            1u16..=8,
            1u16..=300,
            prop::collection::vec((any::<bool>(), any::<usize>(), any::<u128>()), 0..24),
        )
    }

    proptest! {
        #[test]
        fn every_key_group_lies_in_exactly_one_shard_after_any_split_merge_history(
            (n, groups, steps) in history()
        ) {
            let space = KeyGroupSpace::new(groups);
            let mut shards = ShardMap::even(space, n).shards().to_vec();
            let mut next_id = u32::from(n);
            for (split, pick, at) in steps {
                let i = pick % shards.len();
                let fresh = |next_id: &mut u32| { *next_id += 1; format!("shardId-{:012}", *next_id - 1) };
                if split && shards.len() < 8 {
                    let r = shards[i].hash_key_range.clone();
                    if r.start() == r.end() { continue; }
                    let point = r.start() + 1 + at % (r.end() - r.start());
                    let lo = ShardRange::new(fresh(&mut next_id), *r.start()..=point - 1);
                    let hi = ShardRange::new(fresh(&mut next_id), point..=*r.end());
                    shards.splice(i..=i, [lo, hi]);
                } else if !split && shards.len() > 1 {
                    let j = if i + 1 < shards.len() { i } else { i - 1 };
                    let merged = ShardRange::new(
                        fresh(&mut next_id),
                        *shards[j].hash_key_range.start()..=*shards[j + 1].hash_key_range.end(),
                    );
                    shards.splice(j..=j + 1, [merged]);
                }
                let map = ShardMap::new(space, shards.clone()).unwrap();
                let mut owned = vec![0u32; usize::from(groups)];
                for s in map.shards() {
                    for g in map.groups_of(&s.shard_id).unwrap() {
                        owned[usize::from(g)] += 1;
                        prop_assert_eq!(&map.owner_of_group(g).unwrap().shard_id, &s.shard_id);
                        prop_assert!(s.hash_key_range.contains(&space.hash_key(g).unwrap()));
                    }
                }
                prop_assert!(owned.iter().all(|&c| c == 1), "{:?}", owned);
            }
        }

        #[test]
        fn group_points_increase_and_stay_inside_their_slices(groups in 1u16..=u16::MAX) {
            let space = KeyGroupSpace::new(groups);
            let g = groups - 1;
            let point = space.hash_key(g).unwrap();
            prop_assert!(space.slice_start(g).unwrap() < point);
            if g > 0 {
                prop_assert!(space.hash_key(g - 1).unwrap() < space.slice_start(g).unwrap());
            }
        }
    }
}
