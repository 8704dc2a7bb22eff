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
//!    With combiner lifting ([`UpstreamBatch::with_combiner`]), values go into partial
//!    aggregates where [`shardflow_engine::lift`] allows it, and partials are sent when due.
//! 3. [`UpstreamBatch::finish`]: the remaining partials, then, if the partition's watermark
//!    advanced during the batch or the partition ended, its watermark record to every shard.
//! 4. The caller sends the [`Packed`] records ([`crate::pack`]'s sending protocol) and only then
//!    commits the upstream position and engine state. A retried batch restarts from the committed
//!    state and re-sends byte-identical records, which the downstream drops ([`crate::dedup`]).

use serde::Serialize;
use shardflow_engine::{BatchCombiner, Engine, PartitionId, ShuffleOutput, Shuffled, Timestamp};
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
    /// An input record's position is not a sequence number (its id in the shuffle).
    #[error(transparent)]
    Sequence(#[from] shardflow_stage::SequenceNumberError),
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
    /// The other children of its parents (a split's second child), announced with it: see
    /// [`UpstreamBatch::begin`].
    pub siblings: &'a [&'a str],
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
    lifting: Option<Lifting<S>>,
}

/// The batch's combiner (combiner lifting) and where its partials get their ids.
struct Lifting<S> {
    combiner: Box<dyn BatchCombiner<S>>,
    /// Partials due, waiting to be packed.
    due: Vec<Shuffled<S>>,
    /// The last input record's sequence number and its next output index: the id of partials
    /// sent at the end of the batch.
    last: Option<(SequenceNumber, u32)>,
}

impl<'e, 'm, 's, In: Send + 'static, S: Serialize + Send + 'static> UpstreamBatch<'e, 'm, 's, In, S> {
    /// Starts a batch of `shard` on `engine` (the upstream half of a split pipeline), packing for
    /// the shuffle shards of `map`. A partition new to the engine is registered and its watermark
    /// record goes first, followed by one for each of its siblings at the same watermark: the
    /// record retires the parents downstream, and a split's other child, not heard from yet,
    /// must hold the downstream's watermark where the parent left it (it starts from the
    /// parent's state too), or the other shards would move the watermark past its first rows.
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
            lifting: None,
        };
        if !known {
            batch.push_watermark(wm_start, false)?;
            for sibling in shard.siblings {
                batch.packer.push_watermark(&WatermarkRecord {
                    stage: shard.stage,
                    source_stream: shard.stream,
                    source_shard: sibling,
                    watermark: wm_start,
                    closed: false,
                    parents: shard.parents.to_vec(),
                })?;
            }
        }
        Ok(batch)
    }

    /// Combines the batch's values with `combiner` (a lifted split pipeline's
    /// [`shardflow_engine::SplitPipeline::batch_combiner`]; `None` sends every value raw). A
    /// partial is sent before the first input record whose `wm_before` reaches its window's end,
    /// with ids of that record's outputs (partials first), or at the end of the batch after the
    /// last record's outputs: ids stay in sending order, as the downstream's marks need.
    pub fn with_combiner(mut self, combiner: Option<Box<dyn BatchCombiner<S>>>) -> Self {
        self.lifting = combiner.map(|combiner| Lifting {
            combiner,
            due: Vec::new(),
            last: None,
        });
        self
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
        let mut output_index = 0u32;
        if let Some(lifting) = &mut self.lifting {
            lifting.combiner.take_due(wm_before, &mut lifting.due);
            for partial in lifting.due.drain(..) {
                let at = next_index(&mut output_index);
                pack_one(&mut self.packer, &mut self.payload, self.shard, sequence, at, partial)?;
            }
        }
        self.engine.process(self.partition, offset, arrival, value);
        for out in self.engine.drain_output_iter() {
            let shuffled = Shuffled {
                output: out.value,
                timestamp: out.timestamp,
                wm_before,
            };
            let raw = match &mut self.lifting {
                Some(lifting) => lifting.combiner.offer(shuffled),
                None => Some(shuffled),
            };
            if let Some(raw) = raw {
                let at = next_index(&mut output_index);
                pack_one(&mut self.packer, &mut self.payload, self.shard, sequence, at, raw)?;
            }
        }
        if let Some(lifting) = &mut self.lifting {
            lifting.last = Some((sequence.clone(), output_index));
        }
        Ok(())
    }

    /// Ends the batch: the partition's watermark record follows the data if the watermark
    /// advanced or the partition ended. Returns the Kinesis records to send, in order.
    pub fn finish(mut self, end: BatchEnd) -> Result<Packed, UpstreamError> {
        if let Some(Lifting {
            mut combiner,
            mut due,
            last: Some((sequence, mut output_index)),
        }) = self.lifting.take()
        {
            combiner.take_all(&mut due);
            for partial in due {
                let at = next_index(&mut output_index);
                pack_one(&mut self.packer, &mut self.payload, self.shard, &sequence, at, partial)?;
            }
        }
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

/// The next output index of an input record.
fn next_index(index: &mut u32) -> u32 {
    let at = *index;
    *index = index.wrapping_add(1);
    at
}

/// Encodes `value` into `payload` and packs it as output `output_index` of input record
/// `sequence` of `shard`.
fn pack_one<S: Serialize>(
    packer: &mut Packer<'_>,
    payload: &mut Vec<u8>,
    shard: UpstreamShard<'_>,
    sequence: &SequenceNumber,
    output_index: u32,
    value: Shuffled<S>,
) -> Result<(), UpstreamError> {
    payload.clear();
    *payload = postcard::to_extend(&value.output.value, std::mem::take(payload))?;
    packer.push_data(&DataRecord {
        id: RecordId {
            stage: shard.stage,
            source_shard: shard.shard,
            sequence: std::borrow::Cow::Borrowed(sequence),
            output_index,
        },
        key_group: value.output.key_group,
        timestamp: value.timestamp,
        origin: value.output.origin,
        wm_before: value.wm_before,
        payload,
    })?;
    Ok(())
}
