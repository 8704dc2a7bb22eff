//! Packing: the records bound for one shuffle shard aggregated into few Kinesis records.
//!
//! # Sending protocol (upstream stage, per batch)
//! 1. Read the shuffle stream's open shards into a [`ShardMap`]; push the batch's records in
//!    input order (an upstream shard's first batch starts with its [`WatermarkRecord`], so every
//!    downstream shard knows it before its data), then its watermark when it advanced.
//! 2. [`Packer::finish`] cuts each shard's records greedily into frames of at most 1 MiB (data
//!    plus partition key). Each Kinesis record names its shard by `ExplicitHashKey` = the shard's
//!    starting hash key and uses the shard id as partition key. Output is a pure function of
//!    (map, records): a retried batch re-sends byte-identical records.
//! 3. Send the calls of [`Packed::calls`] in order; a call holds at most one record per shard,
//!    and call `k + 1` is sent only once every record of call `k` is stored (failed entries are
//!    retried first). So each shard receives an upstream shard's records in order, which is what
//!    the downstream's high-water marks rely on ([`crate::dedup`]).
//! 4. If a stored entry's `ShardId` is not the record's [`PackedRecord::shard_id`], the shuffle
//!    stream was resharded meanwhile: read the map again and re-pack and re-send the whole batch
//!    (the downstream drops what it already has, and records of key groups a shard does not own).
//! 5. Commit the upstream position only after all calls are stored.

use std::ops::Range;

use crate::frame::{FrameWriter, FRAME_OVERHEAD};
use crate::record::{DataRecord, Encode, WatermarkRecord};
use crate::route::{RouteError, ShardMap};

/// Kinesis's largest record: data plus partition key, bytes.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Most records in one `PutRecords` call.
pub const MAX_CALL_RECORDS: usize = 500;
/// Most bytes (data plus partition keys) in one `PutRecords` call.
pub const MAX_CALL_BYTES: usize = 5 << 20;
/// Bytes in one PUT payload unit (25 KB); each record is billed in whole units.
pub const PAYLOAD_UNIT_BYTES: usize = 25 * 1024;

/// The PUT payload units a record of `bytes` bytes (data plus partition key) is billed for:
/// `⌈bytes / 25 KB⌉`, at least 1.
pub fn payload_units(bytes: usize) -> u64 {
    bytes.div_ceil(PAYLOAD_UNIT_BYTES).max(1) as u64
}

/// Why a record cannot be packed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// The record's key group has no shard.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The record alone does not fit in one Kinesis record.
    #[error("a shuffled record of {bytes} bytes in its frame exceeds the {limit}-byte Kinesis record limit")]
    RecordTooLarge {
        /// Its size in a frame of its own, with the partition key.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

/// One Kinesis record of the shuffle stream, ready for `PutRecords`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedRecord {
    /// Index of the destination shard in the [`ShardMap`] it was packed for.
    pub shard_index: usize,
    /// The destination shard (compare with the `ShardId` Kinesis answers).
    pub shard_id: String,
    /// The partition key (the destination shard id; the hash key below decides the shard).
    pub partition_key: String,
    /// `ExplicitHashKey`: the destination shard's starting hash key, decimal.
    pub explicit_hash_key: String,
    /// The frame ([`crate::frame`]).
    pub data: Vec<u8>,
    /// Shuffled records in the frame.
    pub records: usize,
}

impl PackedRecord {
    /// Bytes counted toward the Kinesis limits: data plus partition key.
    pub fn billed_bytes(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// PUT payload units it is billed for.
    pub fn payload_units(&self) -> u64 {
        payload_units(self.billed_bytes())
    }
}

/// Frames under construction for every shard of a map.
///
/// ```
/// use std::borrow::Cow;
/// use shardflow_engine::InputOrigin;
/// use shardflow_stage::SequenceNumber;
/// use shardflow_shuffle::{DataRecord, DedupState, Frame, KeyGroupSpace, Packer, RecordId, ShardMap,
///     ShuffleRecord, Verdict};
///
/// // Upstream: route by key group, pack, send the calls in order.
/// let map = ShardMap::even(KeyGroupSpace::new(128), 4);
/// let sequence = SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898")?;
/// let record = DataRecord {
///     id: RecordId { stage: "revenue-keyby", source_shard: "shardId-000000000000",
///                    sequence: Cow::Borrowed(&sequence), output_index: 0 },
///     key_group: map.space().key_group(&42u32),
///     timestamp: 1_704_067_200_000,
///     origin: InputOrigin { source: 7, offset: 0, index: 0 },
///     wm_before: 1_704_067_196_000,
///     payload: br#"{"product":42,"cents":250}"#,
/// };
/// let mut packer = Packer::new(&map);
/// packer.push_data(&record)?;
/// let packed = packer.finish();
/// assert_eq!(packed.calls(), [0..1]);
/// let put = &packed.records[0];
/// assert_eq!(map.owner_of_group(record.key_group)?.shard_id, put.shard_id);
///
/// // Downstream (the shard that owns the group): unpack, drop repeats.
/// let mut dedup = DedupState::new(map.groups_of(&put.shard_id).unwrap());
/// let mut verdicts = Vec::new();
/// for _delivery in 0..2 { // Lambda delivers at least once
///     for r in Frame::parse(&put.data)?.records() {
///         if let ShuffleRecord::Data(d) = r? {
///             verdicts.push(dedup.check(&d));
///         }
///     }
/// }
/// assert_eq!(verdicts, [Verdict::New, Verdict::Duplicate]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Packer<'m> {
    map: &'m ShardMap,
    max_record_bytes: usize,
    open: Vec<FrameWriter>,
    done: Vec<Vec<FrameWriter>>,
    scratch: Vec<u8>,
    data_records: usize,
}

impl<'m> Packer<'m> {
    /// A packer for the shards of `map`, with Kinesis's 1 MiB record limit.
    pub fn new(map: &'m ShardMap) -> Self {
        Self::with_max_record_bytes(map, MAX_RECORD_BYTES)
    }

    /// A packer whose Kinesis records hold at most `max_record_bytes` (data plus partition key).
    pub fn with_max_record_bytes(map: &'m ShardMap, max_record_bytes: usize) -> Self {
        let n = map.shards().len();
        Packer {
            map,
            max_record_bytes,
            open: (0..n).map(|_| FrameWriter::with_capacity(max_record_bytes)).collect(),
            done: vec![Vec::new(); n],
            scratch: Vec::new(),
            data_records: 0,
        }
    }

    /// Makes room for `cost` more bytes in `shard`'s open frame, closing it if full.
    fn room(&mut self, shard: usize, cost: usize) -> Result<(), PackError> {
        let key = self.map.shards()[shard].shard_id.len();
        let alone = FRAME_OVERHEAD + cost + key;
        if alone > self.max_record_bytes {
            return Err(PackError::RecordTooLarge {
                bytes: alone,
                limit: self.max_record_bytes,
            });
        }
        if self.open[shard].len() + cost + key > self.max_record_bytes {
            let full = std::mem::replace(&mut self.open[shard], FrameWriter::with_capacity(self.max_record_bytes));
            self.done[shard].push(full);
        }
        Ok(())
    }

    /// Adds `record` to the frames of the shard that owns its key group.
    #[inline]
    pub fn push_data(&mut self, record: &DataRecord<'_>) -> Result<(), PackError> {
        let shard = self.map.index_of_group(record.key_group)?;
        self.room(shard, FrameWriter::cost(record.encoded_len()))?;
        self.open[shard].push(record);
        self.data_records += 1;
        Ok(())
    }

    /// Adds `record` to the frames of every shard (after what was pushed before it).
    pub fn push_watermark(&mut self, record: &WatermarkRecord<'_>) -> Result<(), PackError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        record.encode(&mut scratch);
        let cost = FrameWriter::cost(scratch.len());
        let result = (0..self.open.len()).try_for_each(|shard| {
            self.room(shard, cost)?;
            self.open[shard].push_encoded(&scratch);
            Ok(())
        });
        self.scratch = scratch;
        result
    }

    /// The Kinesis records: round `r` holds the `r`-th record of every shard that has one, in
    /// hash-key order, so consecutive records rarely share a shard.
    pub fn finish(self) -> Packed {
        let Packer {
            map,
            open,
            mut done,
            data_records,
            ..
        } = self;
        for (frames, last) in done.iter_mut().zip(open) {
            if !last.is_empty() {
                frames.push(last);
            }
        }
        let rounds = done.iter().map(Vec::len).max().unwrap_or(0);
        let mut per_shard: Vec<_> = done.into_iter().map(Vec::into_iter).collect();
        let mut records = Vec::new();
        for _ in 0..rounds {
            for (shard_index, frames) in per_shard.iter_mut().enumerate() {
                if let Some(frame) = frames.next() {
                    let shard = &map.shards()[shard_index];
                    records.push(PackedRecord {
                        shard_index,
                        shard_id: shard.shard_id.clone(),
                        partition_key: shard.shard_id.clone(),
                        explicit_hash_key: shard.hash_key_range.start().to_string(),
                        records: frame.records(),
                        data: frame.finish(),
                    });
                }
            }
        }
        Packed { records, data_records }
    }
}

/// The Kinesis records of one upstream batch ([`Packer::finish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The records, in sending order.
    pub records: Vec<PackedRecord>,
    /// Data records packed into them.
    pub data_records: usize,
}

impl Packed {
    /// PUT payload units of all records.
    pub fn payload_units(&self) -> u64 {
        self.records.iter().map(PackedRecord::payload_units).sum()
    }

    /// The `PutRecords` calls, as consecutive ranges of [`Packed::records`]: each within
    /// [`MAX_CALL_RECORDS`] and [`MAX_CALL_BYTES`], and holding at most one record per shard
    /// (see the sending protocol above).
    pub fn calls(&self) -> Vec<Range<usize>> {
        let shards = self.records.iter().map(|r| r.shard_index + 1).max().unwrap_or(0);
        let mut in_call = vec![false; shards];
        let mut calls = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, r) in self.records.iter().enumerate() {
            let size = r.billed_bytes();
            if i > start && (i - start == MAX_CALL_RECORDS || bytes + size > MAX_CALL_BYTES || in_call[r.shard_index]) {
                calls.push(start..i);
                in_call.iter_mut().for_each(|b| *b = false);
                (start, bytes) = (i, 0);
            }
            in_call[r.shard_index] = true;
            bytes += size;
        }
        if start < self.records.len() {
            calls.push(start..self.records.len());
        }
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::record::tests::{data, seq};
    use crate::record::ShuffleRecord;
    use crate::route::KeyGroupSpace;
    use proptest::prelude::*;

    fn unpack_all(packed: &Packed) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        for r in &packed.records {
            for record in Frame::parse(&r.data).unwrap().records() {
                if let ShuffleRecord::Data(d) = record.unwrap() {
                    out.push((r.shard_index, d.payload.to_vec()));
                }
            }
        }
        out
    }

    #[test]
    fn records_of_one_shard_share_frames_and_every_shard_gets_the_watermark() {
        let map = ShardMap::even(KeyGroupSpace::new(8), 2);
        let s = seq("1");
        let mut p = Packer::new(&map);
        for g in 0..8 {
            p.push_data(&data(&s, u32::from(g), g, b"v")).unwrap();
        }
        p.push_watermark(&WatermarkRecord {
            stage: "up",
            source_stream: "cdc",
            source_shard: "shardId-000000000000",
            watermark: 10,
            closed: false,
            parents: vec![],
        })
        .unwrap();
        let packed = p.finish();
        assert_eq!(packed.records.len(), 2);
        assert_eq!(packed.records.iter().map(|r| r.records).collect::<Vec<_>>(), [5, 5]);
        assert_eq!(packed.records[1].explicit_hash_key, (1u128 << 127).to_string());
        assert_eq!(packed.records[1].partition_key, "shardId-000000000001");
        assert_eq!(packed.payload_units(), 2);
        assert_eq!(packed.data_records, 8);
    }

    #[test]
    fn a_record_too_large_for_any_kinesis_record_is_refused() {
        let map = ShardMap::even(KeyGroupSpace::new(1), 1);
        let s = seq("1");
        let big = vec![0u8; MAX_RECORD_BYTES];
        let mut p = Packer::new(&map);
        assert!(matches!(
            p.push_data(&data(&s, 0, 0, &big)),
            Err(PackError::RecordTooLarge {
                limit: MAX_RECORD_BYTES,
                ..
            })
        ));
        assert_eq!(
            p.push_data(&data(&s, 0, 1, b"")),
            Err(PackError::Route(RouteError::KeyGroupOutOfRange {
                group: 1,
                max_key_groups: 1
            }))
        );
    }

    #[test]
    fn calls_hold_one_record_per_shard_within_the_put_records_limits() {
        let map = ShardMap::even(KeyGroupSpace::new(4), 4);
        let s = seq("1");
        let payload = vec![7u8; 400_000];
        let mut p = Packer::new(&map);
        for i in 0..40u32 {
            p.push_data(&data(&s, i, (i % 4) as u16, &payload)).unwrap();
        }
        let packed = p.finish();
        let calls = packed.calls();
        assert_eq!(calls.iter().map(|c| c.len()).sum::<usize>(), packed.records.len());
        for call in calls {
            let records = &packed.records[call];
            let bytes: usize = records.iter().map(PackedRecord::billed_bytes).sum();
            assert!(bytes <= MAX_CALL_BYTES && records.len() <= MAX_CALL_RECORDS);
            let mut shards: Vec<usize> = records.iter().map(|r| r.shard_index).collect();
            shards.sort_unstable();
            shards.dedup();
            assert_eq!(shards.len(), records.len(), "one record per shard in a call");
        }
        assert_eq!(payload_units(0), 1);
        assert_eq!(payload_units(PAYLOAD_UNIT_BYTES), 1);
        assert_eq!(payload_units(PAYLOAD_UNIT_BYTES + 1), 2);
    }

    fn sizes() -> impl Strategy<Value = Vec<(u16, usize)>> {
        let size = prop_oneof![
            6 => 0usize..2_000,
            // Just small enough for a Kinesis record of its own (the envelope takes about 120 bytes).
            1 => (MAX_RECORD_BYTES - 400)..(MAX_RECORD_BYTES - 150),
            1 => 300_000usize..700_000,
        ];
        prop::collection::vec((0u16..16, size), 1..40)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn packing_round_trips_in_order_deterministically_within_the_record_limit(
            records in sizes(), shards in 1u16..=8
        ) {
            let map = ShardMap::even(KeyGroupSpace::new(16), shards);
            let s = seq("49590338271490256608559692538361571095921575989136588898");
            let payloads: Vec<Vec<u8>> = records.iter().enumerate()
                .map(|(i, &(_, len))| vec![i as u8; len]).collect();
            let pack = || {
                let mut p = Packer::new(&map);
                for (i, &(group, _)) in records.iter().enumerate() {
                    p.push_data(&data(&s, i as u32, group, &payloads[i])).unwrap();
                }
                p.finish()
            };
            let packed = pack();
            prop_assert_eq!(&packed, &pack());
            for r in &packed.records {
                prop_assert!(r.billed_bytes() <= MAX_RECORD_BYTES);
            }
            // Per shard, the payloads come back in push order.
            let got = unpack_all(&packed);
            for shard in 0..usize::from(shards) {
                let want: Vec<&Vec<u8>> = records.iter().zip(&payloads)
                    .filter(|((g, _), _)| map.index_of_group(*g).unwrap() == shard)
                    .map(|(_, p)| p).collect();
                let have: Vec<&Vec<u8>> = got.iter().filter(|(s, _)| *s == shard).map(|(_, p)| p).collect();
                prop_assert_eq!(want, have);
            }
        }
    }
}
