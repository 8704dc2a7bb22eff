//! # shardflow-shuffle
//!
//! The shuffle between two Lambda stages (Flink's `keyBy` over Kinesis): an upstream stage
//! routes each record to the shard of a Kinesis *shuffle stream* that owns its key group
//! ([`route`]), encodes it ([`record`]) and packs the records bound for one shard into few Kinesis
//! records ([`frame`], [`pack`]); the keyed downstream stage unpacks them, drops redelivered
//! duplicates ([`dedup`]) and derives its input watermark from the upstream shards'
//! ([`watermark`]). [`upstream`] and [`downstream`] are the two halves per batch, shared by the
//! embedded runner and the Lambda stage. Pure: no I/O, no clock.
#![warn(missing_docs)]

pub mod dedup;
pub mod downstream;
pub mod frame;
pub mod memory;
pub mod pack;
pub mod record;
pub mod route;
pub mod upstream;
pub mod watermark;

pub use dedup::{DedupState, Position, Verdict};
pub use downstream::{late_dead_letters, DownstreamReport, DownstreamState, LateLetters, ShuffleShard};
pub use frame::{Frame, FrameWriter};
pub use memory::{DownstreamCheckpoint, DownstreamShard, MemoryShuffle, MemoryShuffleError};
pub use pack::{payload_units, PackError, Packed, PackedRecord, Packer};
pub use record::{DataRecord, DecodeError, Encode, RecordId, ShuffleRecord, WatermarkRecord};
pub use route::{KeyGroupSpace, RouteError, ShardMap, ShardRange};
pub use upstream::{BatchEnd, UpstreamBatch, UpstreamError, UpstreamShard};
pub use watermark::{Ignored, ShuffleWatermark, Source, WatermarkUpdate};
