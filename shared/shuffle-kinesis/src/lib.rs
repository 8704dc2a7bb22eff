//! # shardflow-shuffle-kinesis
//!
//! The Kinesis I/O of the shuffle's upstream side (issue 13): the pure `shardflow-shuffle`
//! routes, encodes and packs; this crate reads the shuffle stream's shard map from Kinesis
//! ([`map`]) and writes a packed batch into the stream by the sending protocol ([`writer`]):
//! calls in order, failed records retried with backoff and jitter, a reshard noticed from the
//! `ShardId`s Kinesis answers and followed by re-reading the map and re-packing the batch.
//!
//! ```no_run
//! # async fn upstream(client: aws_sdk_kinesis::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use shardflow_shuffle::{KeyGroupSpace, Packer, ShardMap};
//! use shardflow_shuffle_kinesis::{ShuffleWriter, WriterConfig};
//!
//! let space = KeyGroupSpace::new(128);
//! let mut writer = ShuffleWriter::new(client, "revenue-shuffle", WriterConfig::default());
//! // The batch's records, packed for whatever map is current (called again after a reshard).
//! let pack = |map: &ShardMap| {
//!     let packer = Packer::new(map);
//!     // packer.push_data(&record)?; ... for every output of the batch, then its watermark
//!     Ok(packer.finish())
//! };
//! let stats = writer.write(space, pack).await?;
//! // Every record is stored: commit the upstream position; report `stats` as metrics.
//! # let _ = stats; Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod map;
pub mod writer;

pub use map::{open_shard_map, ShardMapError, ShardMapReader};
pub use writer::{ShuffleWriter, WriteError, WriteStats, WriterConfig};
