//! Record decoders: bytes of a Kinesis record into the pipeline's input type.
//!
//! A decoder never panics: whatever the bytes, it returns the value or a [`DecodeError`] whose
//! reason goes to the dead-letter destination with the raw record.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::shard_batch::{InputRecord, ShardBatch};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{format} decode error: {reason}")]
pub struct DecodeError {
    /// The format that was expected (`json`, `protobuf`, ...).
    pub format: &'static str,
    /// What went wrong, for a person.
    pub reason: String,
}

/// Turns a record's bytes into a pipeline input.
pub trait RecordDecoder<In>: Send + Sync {
    /// Decodes one record's payload.
    fn decode(&self, data: &[u8]) -> Result<In, DecodeError>;

    /// Decodes one record of `batch`, with its metadata (shard, sequence number, partition key,
    /// arrival time) at hand. The default decodes the payload alone ([`RecordDecoder::decode`]);
    /// decoders whose input carries the record's position (an archive, say) override it.
    fn decode_record(&self, batch: &ShardBatch, record: &InputRecord) -> Result<In, DecodeError> {
        let _ = batch;
        self.decode(&record.data)
    }
}

impl<In, F> RecordDecoder<In> for F
where
    F: Fn(&[u8]) -> Result<In, DecodeError> + Send + Sync,
{
    fn decode(&self, data: &[u8]) -> Result<In, DecodeError> {
        self(data)
    }
}

/// Decodes JSON (one value per record) with serde.
pub struct JsonDecoder<T>(PhantomData<fn() -> T>);

impl<T> JsonDecoder<T> {
    /// A JSON decoder for `T`.
    pub fn new() -> Self {
        JsonDecoder(PhantomData)
    }
}

impl<T> Default for JsonDecoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned> RecordDecoder<T> for JsonDecoder<T> {
    fn decode(&self, data: &[u8]) -> Result<T, DecodeError> {
        serde_json::from_slice(data).map_err(|e| DecodeError {
            format: "json",
            reason: e.to_string(),
        })
    }
}

/// Decodes a Protobuf message (one message per record, not length-delimited) with prost.
pub struct ProtobufDecoder<T>(PhantomData<fn() -> T>);

impl<T> ProtobufDecoder<T> {
    /// A Protobuf decoder for `T`.
    pub fn new() -> Self {
        ProtobufDecoder(PhantomData)
    }
}

impl<T> Default for ProtobufDecoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: prost::Message + Default> RecordDecoder<T> for ProtobufDecoder<T> {
    fn decode(&self, data: &[u8]) -> Result<T, DecodeError> {
        T::decode(data).map_err(|e| DecodeError {
            format: "protobuf",
            reason: e.to_string(),
        })
    }
}

/// A value tagged with the side it takes in a join across input streams: which stream it was
/// read from. Several input streams (one per table, Debezium's topic-per-table layout) feed one
/// window join ([`shardflow_engine`]'s `join(sides, side, ..)` with `|t| t.side as usize`), each
/// read by a stage whose [`TaggingDecoder`] gives its values its side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tagged<T> {
    /// The side: the index of the input stream among the join's inputs.
    pub side: u16,
    /// The value.
    pub value: T,
}

/// The decoder of one input stream of a join across streams: decodes with `inner` and tags each
/// value with the stream's `side` ([`Tagged`]); a record `inner` refuses is refused as it is.
#[derive(Debug, Clone)]
pub struct TaggingDecoder<D> {
    side: u16,
    inner: D,
}

impl<D> TaggingDecoder<D> {
    /// Tags what `inner` decodes with `side`.
    pub fn new(side: u16, inner: D) -> Self {
        TaggingDecoder { side, inner }
    }

    /// The side it tags values with.
    pub fn side(&self) -> u16 {
        self.side
    }
}

impl<T, D: RecordDecoder<T>> RecordDecoder<Tagged<T>> for TaggingDecoder<D> {
    fn decode(&self, data: &[u8]) -> Result<Tagged<T>, DecodeError> {
        self.inner.decode(data).map(|value| Tagged { side: self.side, value })
    }

    fn decode_record(&self, batch: &ShardBatch, record: &InputRecord) -> Result<Tagged<T>, DecodeError> {
        self.inner
            .decode_record(batch, record)
            .map(|value| Tagged { side: self.side, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Purchase {
        id: u64,
        cents: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Ping {
        #[prost(uint64, tag = "1")]
        id: u64,
        #[prost(string, tag = "2")]
        note: String,
    }

    #[test]
    fn a_tagging_decoder_tags_every_value_with_its_side_and_refuses_what_its_inner_one_refuses() {
        let d = TaggingDecoder::new(7, JsonDecoder::<Purchase>::new());
        assert_eq!(
            d.decode(br#"{"id":1,"cents":250}"#).unwrap(),
            Tagged {
                side: 7,
                value: Purchase { id: 1, cents: 250 }
            }
        );
        let err = RecordDecoder::<Tagged<Purchase>>::decode(&d, b"{").unwrap_err();
        assert_eq!(err.format, "json");
    }

    #[test]
    fn json_decodes_and_explains_failures() {
        let d = JsonDecoder::<Purchase>::new();
        assert_eq!(
            d.decode(br#"{"id":1,"cents":250}"#).unwrap(),
            Purchase { id: 1, cents: 250 }
        );
        let err = d.decode(br#"{"id":"x"}"#).unwrap_err();
        assert_eq!(err.format, "json");
        assert!(err.reason.contains("invalid type"), "{}", err.reason);
    }

    #[test]
    fn protobuf_decodes_and_explains_failures() {
        use prost::Message;
        let bytes = Ping {
            id: 7,
            note: "hi".into(),
        }
        .encode_to_vec();
        let d = ProtobufDecoder::<Ping>::new();
        assert_eq!(
            d.decode(&bytes).unwrap(),
            Ping {
                id: 7,
                note: "hi".into()
            }
        );
        assert_eq!(d.decode(&[0x0a, 0xff]).unwrap_err().format, "protobuf");
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = JsonDecoder::<Purchase>::new().decode(&bytes);
            let _ = ProtobufDecoder::<Ping>::new().decode(&bytes);
        }
    }
}
