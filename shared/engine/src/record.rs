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
            } => {
                let mut h = Xxh3::new();
                h.update(pipeline.as_bytes());
                h.update(&[0]);
                h.update(&source.to_le_bytes());
                h.update(&offset.to_le_bytes());
                h.update(&index.to_le_bytes());
                ResultId(h.digest128())
            }
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
