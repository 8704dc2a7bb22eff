//! Records flowing through a pipeline, their provenance, and the deterministic ids of results.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::time::Timestamp;
use crate::trigger::PaneInfo;
use crate::window::Window;

/// Index of an input partition (a Kinesis shard, a file, a simulated shard) in an engine.
pub type PartitionId = u32;

/// A deterministic, stable identifier of one result.
///
/// The same input processed again (a redelivered batch, a replay, a restore from a checkpoint)
/// yields the same id, so that every sink can deduplicate or upsert on it. Ids are 128-bit XXH3
/// hashes of the result's provenance; the hash function is fixed by the xxh3 specification and
/// therefore stable across releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResultId(pub u128);

impl ResultId {
    /// The id as 32 lowercase hex digits (for message attributes, object keys, SQL columns).
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

impl std::fmt::Display for ResultId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Derived (by stateless steps only) from one input record.
    Input {
        /// The input partition.
        partition: PartitionId,
        /// A stable hash of the partition's name ([`partition_source`]): what makes the ids of
        /// records at the same offset of two partitions distinct, whatever order the partitions
        /// were registered in.
        source: u64,
        /// The record's position in the partition (a line number, or a hash of a Kinesis sequence number).
        offset: u64,
        /// Which of the outputs of `flat_map` steps this is (0 when there were none).
        index: u32,
    },
    /// A pane of a window, fired by a windowed operator.
    Pane {
        /// The result's id (pipeline, operator, key, window, pane index).
        id: ResultId,
        /// The window.
        window: Window,
        /// The pane.
        pane: PaneInfo,
    },
    /// A result of another stateful operator: an interval-join match, or a value a keyed
    /// process function emitted.
    Derived {
        /// The result's id (pipeline, operator, and what produced it).
        id: ResultId,
    },
}

impl Origin {
    /// The deterministic id of a result with this origin, in pipeline `pipeline`.
    pub fn result_id(&self, pipeline: &str) -> ResultId {
        match *self {
            Origin::Input {
                partition: _,
                source,
                offset,
                index,
            } => input_result_id(pipeline, source, offset, index),
            Origin::Pane { id, .. } | Origin::Derived { id } => id,
        }
    }

    /// The same origin, for the `i`-th output of a `flat_map`.
    pub(crate) fn nth(self, i: u32) -> Origin {
        match self {
            Origin::Input {
                partition,
                source,
                offset,
                index,
            } => Origin::Input {
                partition,
                source,
                offset,
                index: index.wrapping_mul(65_599).wrapping_add(i),
            },
            Origin::Pane { id, window, pane } => Origin::Pane {
                id: ResultId(mix(id.0, i)),
                window,
                pane,
            },
            Origin::Derived { id } => Origin::Derived {
                id: ResultId(mix(id.0, i)),
            },
        }
    }
}

/// The provenance of a value derived by stateless steps from one input record, without the
/// engine-local partition id: what the upstream half of a split pipeline sends with each value,
/// so that the downstream engine gives it the [`Origin::Input`] it had
/// ([`crate::Engine::process_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputOrigin {
    /// [`partition_source`] of the input partition's name.
    pub source: u64,
    /// The input record's position in its partition.
    pub offset: u64,
    /// Which output of `flat_map` steps it is (0 when there were none).
    pub index: u32,
}

/// A value leaving the upstream half of a split pipeline ([`crate::SplitPipeline`]) for the
/// shuffle: the value, the key group of its key, and its input provenance. Its event time is the
/// [`Output::timestamp`] it comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShuffleOutput<T> {
    /// The value.
    pub value: T,
    /// The key group of the value's key (it picks the shuffle shard).
    pub key_group: u16,
    /// Where it came from.
    pub origin: InputOrigin,
}

/// The id of a result derived from input record (`source`, `offset`, `index`): the XXH3-128 hash
/// of the pipeline's name, a zero byte, then `source`, `offset` and `index` in little-endian.
/// Hashed in one call over a stack buffer (the same hash as feeding the parts to a streaming
/// hasher, which long pipeline names fall back to): this runs once per result of a stateless
/// pipeline.
#[inline]
fn input_result_id(pipeline: &str, source: u64, offset: u64, index: u32) -> ResultId {
    const TAIL: usize = 1 + 8 + 8 + 4;
    const BUF: usize = 128;
    let name = pipeline.as_bytes();
    if name.len() + TAIL > BUF {
        let mut h = Xxh3::new();
        h.update(name);
        h.update(&[0]);
        h.update(&source.to_le_bytes());
        h.update(&offset.to_le_bytes());
        h.update(&index.to_le_bytes());
        return ResultId(h.digest128());
    }
    let mut buf = [0u8; BUF];
    let (head, rest) = buf.split_at_mut(name.len());
    head.copy_from_slice(name);
    // rest[0] stays the zero separator.
    rest[1..9].copy_from_slice(&source.to_le_bytes());
    rest[9..17].copy_from_slice(&offset.to_le_bytes());
    rest[17..21].copy_from_slice(&index.to_le_bytes());
    ResultId(xxhash_rust::xxh3::xxh3_128(&buf[..name.len() + TAIL]))
}

/// The stable identity of an input partition in result ids: the XXH3 hash of its name.
pub fn partition_source(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

fn mix(id: u128, i: u32) -> u128 {
    if i == 0 {
        return id;
    }
    let mut h = Xxh3::new();
    h.update(&id.to_le_bytes());
    h.update(&i.to_le_bytes());
    h.digest128()
}

/// A value with its event time and provenance, as it flows between operators.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// Event time of the record.
    pub timestamp: Timestamp,
    /// Where the record came from.
    pub origin: Origin,
    /// The value.
    pub value: T,
}

/// A result of a pipeline, ready for a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Output<T> {
    /// The deterministic id to deduplicate or upsert on.
    pub id: ResultId,
    /// Event time of the result (a window result carries its window's last millisecond).
    pub timestamp: Timestamp,
    /// Window and pane, when the result is (derived from) a window's pane.
    pub pane: Option<(Window, PaneInfo)>,
    /// The value.
    pub value: T,
}

/// A record that arrived after its window's allowed lateness and was routed to the late side
/// output instead of being counted in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateRecord {
    /// The operator that refused it.
    pub operator: String,
    /// The input partition it came from, if it came from one directly.
    pub partition: Option<PartitionId>,
    /// Its position in that partition.
    pub offset: Option<u64>,
    /// Its event time.
    pub timestamp: Timestamp,
    /// The operator's watermark when it arrived.
    pub watermark: Timestamp,
    /// The latest window it would have belonged to.
    pub window: Option<Window>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The ids as every release so far has computed them: a streaming hash of the parts.
    fn streamed(pipeline: &str, source: u64, offset: u64, index: u32) -> ResultId {
        let mut h = Xxh3::new();
        h.update(pipeline.as_bytes());
        h.update(&[0]);
        h.update(&source.to_le_bytes());
        h.update(&offset.to_le_bytes());
        h.update(&index.to_le_bytes());
        ResultId(h.digest128())
    }

    fn input(source: u64, offset: u64, index: u32) -> Origin {
        Origin::Input {
            partition: 3,
            source,
            offset,
            index,
        }
    }

    #[test]
    fn input_ids_are_stable() {
        let id = input(partition_source("input"), 42, 0).result_id("nexmark-q0");
        assert_eq!(id, streamed("nexmark-q0", partition_source("input"), 42, 0));
        assert_ne!(id, input(partition_source("input"), 43, 0).result_id("nexmark-q0"));
        assert_ne!(id, input(partition_source("input"), 42, 1).result_id("nexmark-q0"));
        assert_ne!(id, input(partition_source("other"), 42, 0).result_id("nexmark-q0"));
        assert_ne!(id, input(partition_source("input"), 42, 0).result_id("nexmark-q1"));
    }

    proptest! {
        #[test]
        fn input_ids_equal_the_streaming_hash_for_any_pipeline_name(
            name in prop_oneof!["[a-z0-9-]{0,20}", ".{90,120}", "[a-z]{100,300}"],
            source in any::<u64>(),
            offset in any::<u64>(),
            index in any::<u32>(),
        ) {
            prop_assert_eq!(
                input(source, offset, index).result_id(&name),
                streamed(&name, source, offset, index)
            );
        }
    }
}
