//! Shuffled records: the data and watermark records an upstream stage sends, and their encoding.
//!
//! # Encoding (inside a frame of version 1, see [`crate::frame`])
//! ```text
//! data      = 0x01 str(stage) str(source_shard) seq(sequence) varint(output_index)
//!                  varint(key_group) zigzag(timestamp) u64-le(origin.source)
//!                  varint(origin.offset) varint(origin.index)
//!                  zigzag(timestamp − wm_before, wrapping) bytes(payload)
//! watermark = 0x02 str(stage) str(source_stream) str(source_shard) zigzag(watermark)
//!                  u8(flags: bit 0 = closed) varint(n) str(parent)×n
//! str/bytes = varint(length) raw bytes          varint = LEB128 (protobuf's)
//! seq       = varint(digits) the decimal digits two to a byte, high nibble first (an odd
//!             count ends with the nibble 0xF)
//! ```
//! A record's id — (stage, source shard, source sequence number, output index) — is a pure
//! function of the upstream input, so a retried upstream batch sends the same ids; the
//! downstream drops the repeats ([`crate::dedup`]). A data record also carries what the
//! downstream engine needs to give the value the results a single engine gives it: its input
//! provenance ([`InputOrigin`]: partition source hash, offset, `flat_map` index) and the
//! watermark its upstream partition had just before it (`wm_before`, stored as the distance
//! back from the timestamp, which is small for all but a partition's first records).

use std::borrow::Cow;

use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};
use shardflow_engine::{InputOrigin, Timestamp};
use shardflow_stage::{SequenceNumber, SequenceNumberError};
use thiserror::Error;

const DATA: u8 = 0x01;
const WATERMARK: u8 = 0x02;
const CLOSED: u8 = 0x01;

/// Why bytes are not a shuffled record (corruption, or a writer of another version). Its
/// `Display` is the reason a dead letter carries.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The bytes do not start with the shuffle magic: not written by a shuffle.
    #[error("not a shuffle frame (no magic)")]
    NotAFrame,
    /// A frame of a version this reader does not know (version skew between stages).
    #[error("shuffle frame version {found}, this stage reads version {supported}")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
        /// The version this code reads.
        supported: u8,
    },
    /// The frame's checksum does not match its bytes.
    #[error("shuffle frame checksum mismatch (corrupted)")]
    ChecksumMismatch,
    /// The bytes end inside a field.
    #[error("truncated shuffled record: {what} is cut off")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A record kind this reader does not know.
    #[error("unknown shuffled record kind {0:#04x}")]
    UnknownKind(u8),
    /// A field is not well formed.
    #[error("malformed shuffled record: {what} {reason}")]
    Malformed {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The source sequence number is not one.
    #[error("shuffled record: {0}")]
    SequenceNumber(#[from] SequenceNumberError),
}

/// The deterministic id of a shuffled data record. Ids of one upstream shard (stage, source
/// shard) are ordered by (sequence, output index): the order the upstream produces them in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordId<'a> {
    /// The upstream stage's name (one upstream stage reads one source stream).
    pub stage: &'a str,
    /// The source shard the input record came from.
    pub source_shard: &'a str,
    /// The input record's sequence number in its source shard.
    pub sequence: Cow<'a, SequenceNumber>,
    /// The index of this record among those the upstream made of that input record.
    pub output_index: u32,
}

/// A keyed record on its way to the shard that owns its key group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRecord<'a> {
    /// The deterministic id.
    pub id: RecordId<'a>,
    /// The key group of its key ([`crate::KeyGroupSpace::key_group`]); it picks the shard.
    pub key_group: u16,
    /// Its event time, ms.
    pub timestamp: Timestamp,
    /// The input record it derives from, as the downstream engine's `Origin::Input` names it.
    pub origin: InputOrigin,
    /// Its upstream partition's watermark just before its input record was processed: the
    /// downstream raises that partition's watermark to it before processing the record.
    pub wm_before: Timestamp,
    /// The encoded value (opaque to the shuffle).
    pub payload: &'a [u8],
}

/// An upstream shard's watermark, sent to every shard of the shuffle stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkRecord<'a> {
    /// The upstream stage's name.
    pub stage: &'a str,
    /// The stream the upstream stage reads.
    pub source_stream: &'a str,
    /// The upstream shard.
    pub source_shard: &'a str,
    /// The upstream shard's watermark, ms: no record at or before it will follow from this shard.
    pub watermark: Timestamp,
    /// The upstream shard has ended (end of input): nothing at all will follow from it.
    pub closed: bool,
    /// The shards the upstream shard was split or merged from (its `ParentShardId` and
    /// `AdjacentParentShardId`); the downstream retires them once it hears from a child.
    pub parents: Vec<&'a str>,
}

/// One shuffled record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShuffleRecord<'a> {
    /// A keyed data record.
    Data(DataRecord<'a>),
    /// An upstream shard's watermark.
    Watermark(WatermarkRecord<'a>),
}

fn str_len(s: &[u8]) -> usize {
    encoded_len_varint(s.len() as u64) + s.len()
}

fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn seq_len(seq: &SequenceNumber) -> usize {
    let digits = seq.as_str().len();
    encoded_len_varint(digits as u64) + digits.div_ceil(2)
}

fn put_seq(out: &mut Vec<u8>, seq: &SequenceNumber) {
    let digits = seq.as_str().as_bytes();
    encode_varint(digits.len() as u64, out);
    for pair in digits.chunks(2) {
        let hi = pair[0] - b'0';
        let lo = pair.get(1).map_or(0x0F, |d| d - b'0');
        out.push(hi << 4 | lo);
    }
}

/// A record that can be written into a frame.
pub trait Encode {
    /// Bytes [`Encode::encode`] writes.
    fn encoded_len(&self) -> usize;
    /// Appends the encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

impl Encode for DataRecord<'_> {
    fn encoded_len(&self) -> usize {
        1 + str_len(self.id.stage.as_bytes())
            + str_len(self.id.source_shard.as_bytes())
            + seq_len(&self.id.sequence)
            + encoded_len_varint(u64::from(self.id.output_index))
            + encoded_len_varint(u64::from(self.key_group))
            + encoded_len_varint(zigzag(self.timestamp))
            + 8
            + encoded_len_varint(self.origin.offset)
            + encoded_len_varint(u64::from(self.origin.index))
            + encoded_len_varint(zigzag(self.timestamp.wrapping_sub(self.wm_before)))
            + str_len(self.payload)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(DATA);
        put_bytes(out, self.id.stage.as_bytes());
        put_bytes(out, self.id.source_shard.as_bytes());
        put_seq(out, &self.id.sequence);
        encode_varint(u64::from(self.id.output_index), out);
        encode_varint(u64::from(self.key_group), out);
        encode_varint(zigzag(self.timestamp), out);
        out.extend_from_slice(&self.origin.source.to_le_bytes());
        encode_varint(self.origin.offset, out);
        encode_varint(u64::from(self.origin.index), out);
        encode_varint(zigzag(self.timestamp.wrapping_sub(self.wm_before)), out);
        put_bytes(out, self.payload);
    }
}

impl Encode for WatermarkRecord<'_> {
    fn encoded_len(&self) -> usize {
        1 + str_len(self.stage.as_bytes())
            + str_len(self.source_stream.as_bytes())
            + str_len(self.source_shard.as_bytes())
            + encoded_len_varint(zigzag(self.watermark))
            + 1
            + encoded_len_varint(self.parents.len() as u64)
            + self.parents.iter().map(|p| str_len(p.as_bytes())).sum::<usize>()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(WATERMARK);
        put_bytes(out, self.stage.as_bytes());
        put_bytes(out, self.source_stream.as_bytes());
        put_bytes(out, self.source_shard.as_bytes());
        encode_varint(zigzag(self.watermark), out);
        out.push(if self.closed { CLOSED } else { 0 });
        encode_varint(self.parents.len() as u64, out);
        for p in &self.parents {
            put_bytes(out, p.as_bytes());
        }
    }
}

/// Reads the fields of one encoded record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError::Truncated { what })?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        if self.0.is_empty() {
            return Err(DecodeError::Truncated { what });
        }
        decode_varint(&mut self.0).map_err(|_| DecodeError::Malformed {
            what,
            reason: "is not a varint",
        })
    }

    fn bounded<T: TryFrom<u64>>(&mut self, what: &'static str) -> Result<T, DecodeError> {
        T::try_from(self.varint(what)?).map_err(|_| DecodeError::Malformed {
            what,
            reason: "is out of range",
        })
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if len > self.0.len() {
            return Err(DecodeError::Truncated { what });
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn u64_le(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut le = [0u8; 8];
        le.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(le))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.bounded::<usize>(what)?;
        self.take(len, what)
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| DecodeError::Malformed {
            what,
            reason: "is not UTF-8",
        })
    }

    fn seq(&mut self) -> Result<SequenceNumber, DecodeError> {
        const WHAT: &str = "sequence number";
        let digits = self.bounded::<usize>(WHAT)?;
        let packed = self.take(digits.div_ceil(2), WHAT)?;
        let mut text = String::with_capacity(digits);
        for (i, b) in packed.iter().enumerate() {
            for (j, nibble) in [b >> 4, b & 0x0F].into_iter().enumerate() {
                if 2 * i + j == digits {
                    if nibble != 0x0F {
                        return Err(DecodeError::Malformed {
                            what: WHAT,
                            reason: "has a bad padding nibble",
                        });
                    }
                } else if nibble > 9 {
                    return Err(DecodeError::Malformed {
                        what: WHAT,
                        reason: "has a nibble that is not a digit",
                    });
                } else {
                    text.push(char::from(b'0' + nibble));
                }
            }
        }
        Ok(SequenceNumber::parse(&text)?)
    }
}

impl Encode for ShuffleRecord<'_> {
    fn encoded_len(&self) -> usize {
        match self {
            ShuffleRecord::Data(d) => d.encoded_len(),
            ShuffleRecord::Watermark(w) => w.encoded_len(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ShuffleRecord::Data(d) => d.encode(out),
            ShuffleRecord::Watermark(w) => w.encode(out),
        }
    }
}

impl<'a> ShuffleRecord<'a> {
    /// Decodes exactly one record from `bytes`, borrowing its strings and payload.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let record = match r.byte("kind")? {
            DATA => {
                let id = RecordId {
                    stage: r.str("stage")?,
                    source_shard: r.str("source shard")?,
                    sequence: Cow::Owned(r.seq()?),
                    output_index: r.bounded("output index")?,
                };
                let key_group = r.bounded("key group")?;
                let timestamp = unzigzag(r.varint("timestamp")?);
                let origin = InputOrigin {
                    source: r.u64_le("origin source")?,
                    offset: r.varint("origin offset")?,
                    index: r.bounded("origin index")?,
                };
                let wm_before = timestamp.wrapping_sub(unzigzag(r.varint("watermark before")?));
                ShuffleRecord::Data(DataRecord {
                    id,
                    key_group,
                    timestamp,
                    origin,
                    wm_before,
                    payload: r.bytes("payload")?,
                })
            }
            WATERMARK => {
                let (stage, source_stream, source_shard) =
                    (r.str("stage")?, r.str("source stream")?, r.str("source shard")?);
                let watermark = unzigzag(r.varint("watermark")?);
                let flags = r.byte("flags")?;
                if flags & !CLOSED != 0 {
                    return Err(DecodeError::Malformed {
                        what: "flags",
                        reason: "has unknown bits",
                    });
                }
                let n = r.bounded::<usize>("parents")?;
                // Every parent takes at least one byte: a count beyond the rest is corrupt.
                if n > r.0.len() {
                    return Err(DecodeError::Truncated { what: "parents" });
                }
                let parents = (0..n).map(|_| r.str("parent")).collect::<Result<_, _>>()?;
                ShuffleRecord::Watermark(WatermarkRecord {
                    stage,
                    source_stream,
                    source_shard,
                    watermark,
                    closed: flags & CLOSED != 0,
                    parents,
                })
            }
            kind => return Err(DecodeError::UnknownKind(kind)),
        };
        if !r.0.is_empty() {
            return Err(DecodeError::Malformed {
                what: "record",
                reason: "has trailing bytes",
            });
        }
        Ok(record)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    pub(crate) fn data<'a>(seq: &'a SequenceNumber, index: u32, group: u16, payload: &'a [u8]) -> DataRecord<'a> {
        DataRecord {
            id: RecordId {
                stage: "revenue-keyby",
                source_shard: "shardId-000000000002",
                sequence: Cow::Borrowed(seq),
                output_index: index,
            },
            key_group: group,
            timestamp: 1_704_067_200_123,
            origin: InputOrigin {
                source: 0x0123_4567_89ab_cdef,
                offset: 1_234,
                index: 0,
            },
            wm_before: 1_704_067_199_000,
            payload,
        }
    }

    fn round_trip(record: &ShuffleRecord<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        record.encode(&mut out);
        assert_eq!(out.len(), record.encoded_len());
        assert_eq!(&ShuffleRecord::decode(&out).unwrap(), record);
        out
    }

    #[test]
    fn a_data_record_round_trips_with_its_sequence_number_packed_two_digits_a_byte() {
        let s = seq("49590338271490256608559692538361571095921575989136588898");
        let bytes = round_trip(&ShuffleRecord::Data(data(&s, 3, 77, b"{\"cents\":250}")));
        // kind 1, stage 14, shard 21, 56 digits in 1 + 28, index 1, group 1, timestamp 6,
        // origin 8 + 2 + 1, watermark distance 2, payload 14.
        assert_eq!(bytes.len(), 100);
        let odd = seq("7");
        round_trip(&ShuffleRecord::Data(data(&odd, 0, 0, b"")));
    }

    #[test]
    fn a_watermark_record_round_trips_with_its_lineage() {
        round_trip(&ShuffleRecord::Watermark(WatermarkRecord {
            stage: "revenue-keyby",
            source_stream: "cdc",
            source_shard: "shardId-000000000004",
            watermark: -5,
            closed: true,
            parents: vec!["shardId-000000000001", "shardId-000000000002"],
        }));
    }

    #[test]
    fn corrupt_records_are_typed_errors() {
        let s = seq("123");
        let mut good = Vec::new();
        data(&s, 1, 2, b"xyz").encode(&mut good);
        assert_eq!(ShuffleRecord::decode(&[9]), Err(DecodeError::UnknownKind(9)));
        assert_eq!(ShuffleRecord::decode(&[]), Err(DecodeError::Truncated { what: "kind" }));
        assert_eq!(
            ShuffleRecord::decode(&good[..good.len() - 1]),
            Err(DecodeError::Truncated { what: "payload" })
        );
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            ShuffleRecord::decode(&long),
            Err(DecodeError::Malformed { .. })
        ));
        // The packed digits of "123" are 0x12 0x3F; a digit nibble above 9 is refused.
        let at = good.iter().position(|&b| b == 0x12).unwrap();
        let mut bad = good.clone();
        bad[at] = 0xA2;
        assert!(matches!(
            ShuffleRecord::decode(&bad),
            Err(DecodeError::Malformed { .. })
        ));
        let mut zero = good;
        zero[at] = 0x02;
        assert!(matches!(
            ShuffleRecord::decode(&zero),
            Err(DecodeError::SequenceNumber(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = ShuffleRecord::decode(&bytes);
        }

        #[test]
        fn data_records_round_trip(
            seq_num in any::<u128>(), index in any::<u32>(), group in any::<u16>(), ts in any::<i64>(),
            origin in any::<(u64, u64, u32)>(), wm_before in any::<i64>(),
            payload in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let s = seq(&seq_num.to_string());
            let mut record = data(&s, index, group, &payload);
            record.timestamp = ts;
            record.origin = InputOrigin { source: origin.0, offset: origin.1, index: origin.2 };
            record.wm_before = wm_before;
            round_trip(&ShuffleRecord::Data(record));
        }
    }
}
