//! The upstream half of a shuffle, one batch at a time: run the upstream engine over one input
//! partition's batch and pack its outputs, with watermark records, for the shuffle stream.
//!
//! # Protocol (per batch of one upstream partition)
//! 1. [`UpstreamBatch::begin`]: registers the partition in the engine if it is new, and then
//!    sends its watermark record (at its current watermark) to every shuffle shard before any of
//!    its data — so a downstream knows the partition exactly from when the upstream engine does.
//! 2. [`UpstreamBatch::push`] per input record, in order: each output goes to the shard owning
//!    its key group as a [`DataRecord`] with the id (stage, shard, sequence number, output index),
//!    the output's event time and provenance, and `wm_before`, the partition's watermark just
//!    before the input record.
//! 3. [`UpstreamBatch::finish`]: if the partition's watermark advanced during the batch, or the
//!    partition ended, its watermark record goes to every shard after the batch's data.
//! 4. The caller sends the [`Packed`] records ([`crate::pack`]'s sending protocol) and only then
//!    commits the upstream position and engine state. A retried batch restarts from the committed
//!    state and re-sends byte-identical records, which the downstream drops ([`crate::dedup`]).

use serde::Serialize;
use shardflow_engine::{Engine, PartitionId, ShuffleOutput, Timestamp};
use shardflow_stage::SequenceNumber;

use crate::pack::{PackError, Packed, Packer};
use crate::record::{DataRecord, RecordId, WatermarkRecord};
use crate::route::ShardMap;

/// Why an upstream batch could not be packed (the batch fails and is retried).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A record cannot be routed or is too large.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// A shuffled value cannot be encoded.
    #[error("a shuffled value cannot be encoded: {0}")]
    Encode(#[from] postcard::Error),
}

/// The upstream partition a batch comes from.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamShard<'a> {
    /// The upstream stage's name (part of every record id).
    pub stage: &'a str,
    /// The stream it reads.
    pub stream: &'a str,
    /// The partition (shard id): the upstream engine's partition name.
    pub shard: &'a str,
    /// The shards it was split or merged from, named in its watermark records so that the
    /// downstream retires them.
    pub parents: &'a [&'a str],
}

/// How a batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEnd {
    /// More records of the partition may follow.
    Open,
    /// The partition ended (a closed shard, the end of a bounded input).
    Closed,
}

/// One batch of one upstream partition under way (see the module documentation).
pub struct UpstreamBatch<'e, 'm, 's, In, S> {
    engine: &'e mut Engine<In, ShuffleOutput<S>>,
    shard: UpstreamShard<'s>,
    partition: PartitionId,
    packer: Packer<'m>,
    wm_start: Timestamp,
    payload: Vec<u8>,
}

impl<'e, 'm, 's, In: Send + 'static, S: Serialize + Send + 'static> UpstreamBatch<'e, 'm, 's, In, S> {
    /// Starts a batch of `shard` on `engine` (the upstream half of a split pipeline), packing for
    /// the shuffle shards of `map`. A partition new to the engine is registered and its watermark
    /// record goes first.
    pub fn begin(
        engine: &'e mut Engine<In, ShuffleOutput<S>>,
        map: &'m ShardMap,
        shard: UpstreamShard<'s>,
    ) -> Result<Self, UpstreamError> {
        let known = engine.partitions().iter().any(|p| p.name == shard.shard);
        let partition = engine.partition(shard.shard);
        let wm_start = engine.partition_watermark(partition);
        let mut batch = UpstreamBatch {
            engine,
            shard,
            partition,
            packer: Packer::new(map),
            wm_start,
            payload: Vec::new(),
        };
        if !known {
            batch.push_watermark(wm_start, false)?;
        }
        Ok(batch)
    }

    /// Processes input record `value` at `sequence` (its id in the shuffle) and `offset` (its
    /// position in the engine's result ids), which arrived at processing time `arrival`, and
    /// packs its outputs.
    pub fn push(
        &mut self,
        sequence: &SequenceNumber,
        offset: u64,
        arrival: Timestamp,
        value: In,
    ) -> Result<(), UpstreamError> {
        let wm_before = self.engine.partition_watermark(self.partition);
        self.engine.process(self.partition, offset, arrival, value);
        for (output_index, out) in (0u32..).zip(self.engine.drain_output_iter()) {
            self.payload.clear();
            self.payload = postcard::to_extend(&out.value.value, std::mem::take(&mut self.payload))?;
            self.packer.push_data(&DataRecord {
                id: RecordId {
                    stage: self.shard.stage,
                    source_shard: self.shard.shard,
                    sequence: std::borrow::Cow::Borrowed(sequence),
                    output_index,
                },
                key_group: out.value.key_group,
                timestamp: out.timestamp,
                origin: out.value.origin,
                wm_before,
                payload: &self.payload,
            })?;
        }
        Ok(())
    }

    /// Ends the batch: the partition's watermark record follows the data if the watermark
    /// advanced or the partition ended. Returns the Kinesis records to send, in order.
    pub fn finish(mut self, end: BatchEnd) -> Result<Packed, UpstreamError> {
        let wm_end = self.engine.partition_watermark(self.partition);
        if end == BatchEnd::Closed {
            self.engine.end_partition(self.partition);
        }
        if wm_end > self.wm_start || end == BatchEnd::Closed {
            self.push_watermark(wm_end, end == BatchEnd::Closed)?;
        }
        Ok(self.packer.finish())
    }

    fn push_watermark(&mut self, watermark: Timestamp, closed: bool) -> Result<(), UpstreamError> {
        self.packer.push_watermark(&WatermarkRecord {
            stage: self.shard.stage,
            source_stream: self.shard.stream,
            source_shard: self.shard.shard,
            watermark,
            closed,
            parents: self.shard.parents.to_vec(),
        })?;
        Ok(())
    }
}
