//! One archived record and the decoder that makes it from a Kinesis record.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use shardflow_stage::{DecodeError, InputRecord, RecordDecoder, ShardBatch};

/// A Kinesis record as the archive keeps it: one NDJSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedRecord {
    /// The stream's name.
    pub stream: String,
    /// The shard.
    pub shard_id: String,
    /// The record's sequence number (decimal, as Kinesis writes it).
    pub sequence_number: String,
    /// Its partition key.
    pub partition_key: String,
    /// Its approximate arrival time, epoch milliseconds.
    pub arrival_ms: i64,
    /// The payload, base64 in JSON.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

impl ArchivedRecord {
    /// The archived form of `record` of `batch`.
    pub fn of(batch: &ShardBatch, record: &InputRecord) -> Self {
        ArchivedRecord {
            stream: batch.stream.clone(),
            shard_id: batch.shard_id.clone(),
            sequence_number: record.sequence.to_string(),
            partition_key: record.partition_key.clone(),
            arrival_ms: record.arrival_ms,
            data: record.data.clone(),
        }
    }

    /// The payload as base64 (what the NDJSON line holds).
    pub fn data_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.data)
    }
}

/// Makes every record an [`ArchivedRecord`]; it never fails on a record with its metadata, since
/// the archive keeps bytes, not values.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveDecoder;

impl RecordDecoder<ArchivedRecord> for ArchiveDecoder {
    /// Payload alone: refused, an archived record needs its position.
    fn decode(&self, _data: &[u8]) -> Result<ArchivedRecord, DecodeError> {
        Err(DecodeError {
            format: "archive",
            reason: "an archived record needs its shard and sequence number (use decode_record)".to_owned(),
        })
    }

    fn decode_record(&self, batch: &ShardBatch, record: &InputRecord) -> Result<ArchivedRecord, DecodeError> {
        Ok(ArchivedRecord::of(batch, record))
    }
}
