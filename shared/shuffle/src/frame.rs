//! Frames: the versioned envelope of one Kinesis record of the shuffle stream.
//!
//! ```text
//! frame = "SFSH" version:u8 (varint(length) record)* checksum:u64-le
//! ```
//! `version` is 1; `checksum` is XXH3-64 of every byte before it. A reader refuses another
//! version ([`DecodeError::UnsupportedVersion`]) rather than guess, so version skew between
//! stages dead-letters instead of corrupting state; a new version is a new number, and a
//! downstream is deployed to read it before the upstream writes it.

use xxhash_rust::xxh3::xxh3_64;

use crate::record::{DecodeError, Encode, ShuffleRecord};

/// The first bytes of every frame.
pub const MAGIC: [u8; 4] = *b"SFSH";
/// The frame version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of a frame around its records: magic, version and checksum.
pub const FRAME_OVERHEAD: usize = MAGIC.len() + 1 + CHECKSUM_LEN;
const CHECKSUM_LEN: usize = 8;

/// Builds one frame, record by record.
#[derive(Debug, Clone)]
pub struct FrameWriter {
    buf: Vec<u8>,
    records: usize,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameWriter {
    /// An empty frame.
    pub fn new() -> Self {
        Self::with_capacity(4096)
    }

    /// An empty frame with room for `bytes` without reallocating (a packer reserves the record
    /// limit, so a frame is never copied as it grows).
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(FRAME_OVERHEAD));
        buf.extend_from_slice(&MAGIC);
        buf.push(VERSION);
        FrameWriter { buf, records: 0 }
    }

    /// Bytes the finished frame has now ([`FrameWriter::finish`] returns that many).
    pub fn len(&self) -> usize {
        self.buf.len() + CHECKSUM_LEN
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Records added.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes a record of `encoded_len` bytes adds to the frame (with its length prefix).
    pub fn cost(encoded_len: usize) -> usize {
        prost::encoding::encoded_len_varint(encoded_len as u64) + encoded_len
    }

    /// Appends `record`.
    pub fn push(&mut self, record: &impl Encode) {
        let len = record.encoded_len();
        prost::encoding::encode_varint(len as u64, &mut self.buf);
        record.encode(&mut self.buf);
        self.records += 1;
    }

    /// Appends a record already encoded (by [`Encode::encode`]).
    pub fn push_encoded(&mut self, encoded: &[u8]) {
        prost::encoding::encode_varint(encoded.len() as u64, &mut self.buf);
        self.buf.extend_from_slice(encoded);
        self.records += 1;
    }

    /// The frame's bytes, checksum appended.
    pub fn finish(mut self) -> Vec<u8> {
        let sum = xxh3_64(&self.buf);
        self.buf.extend_from_slice(&sum.to_le_bytes());
        self.buf
    }
}

/// A frame read from a Kinesis record, checked (magic, version, checksum) but not yet decoded.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Checks `data` and opens it; a corrupt or foreign frame is an error for the whole Kinesis
    /// record (dead-letter its bytes with the error as reason).
    pub fn parse(data: &'a [u8]) -> Result<Self, DecodeError> {
        if data.len() < MAGIC.len() || data[..MAGIC.len()] != MAGIC {
            return Err(DecodeError::NotAFrame);
        }
        let version = *data
            .get(MAGIC.len())
            .ok_or(DecodeError::Truncated { what: "version" })?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let split = data
            .len()
            .checked_sub(CHECKSUM_LEN)
            .filter(|&at| at > MAGIC.len())
            .ok_or(DecodeError::Truncated { what: "checksum" })?;
        let (covered, sum) = data.split_at(split);
        let mut expected = [0u8; CHECKSUM_LEN];
        expected.copy_from_slice(sum);
        if xxh3_64(covered) != u64::from_le_bytes(expected) {
            return Err(DecodeError::ChecksumMismatch);
        }
        Ok(Frame {
            body: &covered[MAGIC.len() + 1..],
        })
    }

    /// The encoded records, in the order they were written. A framing error ends the iteration
    /// after being yielded once.
    pub fn encoded_records(&self) -> EncodedRecords<'a> {
        EncodedRecords { rest: self.body }
    }

    /// The records, decoded in the order they were written; a record that does not decode is
    /// yielded as its error and the next ones still are (dead-letter it with
    /// [`Frame::encoded_records`]' bytes).
    pub fn records(&self) -> impl Iterator<Item = Result<ShuffleRecord<'a>, DecodeError>> + 'a {
        self.encoded_records()
            .map(|encoded| encoded.and_then(ShuffleRecord::decode))
    }
}

/// The encoded records of a frame ([`Frame::encoded_records`]).
#[derive(Debug, Clone)]
pub struct EncodedRecords<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for EncodedRecords<'a> {
    type Item = Result<&'a [u8], DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let mut rest = self.rest;
        let item = prost::encoding::decode_varint(&mut rest)
            .ok()
            .and_then(|len| usize::try_from(len).ok())
            .filter(|&len| len <= rest.len())
            .map(|len| {
                let (record, after) = rest.split_at(len);
                self.rest = after;
                record
            })
            .ok_or(DecodeError::Truncated { what: "record length" });
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::{data, seq};

    fn frame_of(n: u32) -> Vec<u8> {
        let s = seq("4959");
        let mut w = FrameWriter::new();
        for i in 0..n {
            w.push(&ShuffleRecord::Data(data(&s, i, 1, b"payload")));
        }
        let len = w.len();
        let bytes = w.finish();
        assert_eq!(bytes.len(), len);
        bytes
    }

    #[test]
    fn a_frame_yields_its_records_in_order() {
        let bytes = frame_of(3);
        let frame = Frame::parse(&bytes).unwrap();
        let indices: Vec<u32> = frame
            .records()
            .map(|r| match r.unwrap() {
                ShuffleRecord::Data(d) => d.id.output_index,
                ShuffleRecord::Watermark(_) => unreachable!(),
            })
            .collect();
        assert_eq!(indices, [0, 1, 2]);
        assert_eq!(Frame::parse(&frame_of(0)).unwrap().records().count(), 0);
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let bytes = frame_of(2);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(Frame::parse(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn another_version_or_a_foreign_record_is_refused_with_the_reason() {
        let mut bytes = frame_of(1);
        bytes[4] = 2;
        assert_eq!(
            Frame::parse(&bytes).unwrap_err(),
            DecodeError::UnsupportedVersion { found: 2, supported: 1 }
        );
        assert_eq!(
            Frame::parse(b"{\"id\":1}").unwrap_err().to_string(),
            "not a shuffle frame (no magic)"
        );
        assert_eq!(
            Frame::parse(b"SFSH\x01").unwrap_err(),
            DecodeError::Truncated { what: "checksum" }
        );
    }

    #[test]
    fn a_bad_length_prefix_behind_a_good_checksum_ends_the_records_with_an_error() {
        let mut w = FrameWriter::new();
        w.push_encoded(b"ab");
        let mut raw = w.buf.clone();
        raw.push(0x7F); // a length of 127 with nothing behind it
        let sum = xxh3_64(&raw);
        raw.extend_from_slice(&sum.to_le_bytes());
        let frame = Frame::parse(&raw).unwrap();
        let items: Vec<_> = frame.encoded_records().collect();
        assert_eq!(
            items,
            [Ok(&b"ab"[..]), Err(DecodeError::Truncated { what: "record length" })]
        );
    }
}
