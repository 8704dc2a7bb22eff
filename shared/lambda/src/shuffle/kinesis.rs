//! The shuffle stream on Kinesis: its open shards as a [`ShardMap`], and the ordered sending of
//! packed records ([`shardflow_shuffle::pack`]'s sending protocol).

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use shardflow_engine::Output;
use shardflow_shuffle::{KeyGroupSpace, Packed, PackedRecord, ShardMap, ShardRange};
use shardflow_stage::{DecodeError, InputRecord, RecordDecoder, ResultSink, ShardBatch, SinkError};

use super::ShuffleStageError;

/// How often the failed entries of one `PutRecords` call are sent again before the invocation
/// fails (Lambda then retries the whole batch, which re-sends byte-identical records).
const MAX_PUT_ATTEMPTS: u32 = 8;

fn kinesis_error(operation: &'static str, stream: &str, message: impl Into<String>) -> ShuffleStageError {
    ShuffleStageError::Kinesis {
        operation,
        stream: stream.to_owned(),
        message: message.into(),
    }
}

/// The open shards of shuffle stream `stream` (those without an ending sequence number) as a map
/// of the key groups of `space`.
pub async fn read_shard_map(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    space: KeyGroupSpace,
) -> Result<ShardMap, ShuffleStageError> {
    let mut open = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let request = match &next {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let out = request.send().await.map_err(|e| {
            kinesis_error(
                "ListShards",
                stream,
                aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
            )
        })?;
        for s in out.shards() {
            let closed = s
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_some();
            if closed {
                continue;
            }
            let range = s.hash_key_range();
            let parse = |v: Option<&str>| v.and_then(|v| v.parse::<u128>().ok());
            let (Some(start), Some(end)) = (
                parse(range.map(|r| r.starting_hash_key())),
                parse(range.map(|r| r.ending_hash_key())),
            ) else {
                return Err(kinesis_error(
                    "ListShards",
                    stream,
                    format!("shard {} has no 128-bit hash-key range", s.shard_id()),
                ));
            };
            open.push(ShardRange::new(s.shard_id(), start..=end));
        }
        next = out.next_token().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    ShardMap::new(space, open).map_err(|e| kinesis_error("ListShards", stream, e.to_string()))
}

fn entry(stream: &str, record: &PackedRecord) -> Result<PutRecordsRequestEntry, ShuffleStageError> {
    PutRecordsRequestEntry::builder()
        .data(Blob::new(record.data.clone()))
        .partition_key(&record.partition_key)
        .explicit_hash_key(&record.explicit_hash_key)
        .build()
        .map_err(|e| kinesis_error("PutRecords", stream, e.to_string()))
}

/// Sends `packed` to shuffle stream `stream` following the sending protocol: the calls of
/// [`Packed::calls`] in order, each only once every record of the previous one is stored, failed
/// entries of a call sent again (up to 8 times) before the next call. Fails
/// with [`ShuffleStageError::Resharded`] as soon as a record is stored on another shard than it
/// was packed for (the caller must not commit: the retry packs for the new map).
pub async fn send_packed(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    packed: &Packed,
) -> Result<(), ShuffleStageError> {
    for call in packed.calls() {
        let mut pending: Vec<&PackedRecord> = packed.records.get(call).unwrap_or_default().iter().collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            if attempt > MAX_PUT_ATTEMPTS {
                return Err(kinesis_error(
                    "PutRecords",
                    stream,
                    format!(
                        "{} records still failing after {MAX_PUT_ATTEMPTS} attempts",
                        pending.len()
                    ),
                ));
            }
            let entries = pending
                .iter()
                .map(|r| entry(stream, r))
                .collect::<Result<Vec<_>, _>>()?;
            let out = client
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    kinesis_error(
                        "PutRecords",
                        stream,
                        aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
                    )
                })?;
            let mut failed = Vec::new();
            for (record, result) in pending.iter().zip(out.records()) {
                match result.shard_id() {
                    Some(stored_on) if result.error_code().is_none() => {
                        if stored_on != record.shard_id {
                            return Err(ShuffleStageError::Resharded {
                                stream: stream.to_owned(),
                                packed_for: record.shard_id.clone(),
                                stored_on: stored_on.to_owned(),
                            });
                        }
                    }
                    _ => {
                        tracing::warn!(stream, shard = %record.shard_id, code = ?result.error_code(),
                            "shuffle record not stored; sending it again");
                        failed.push(*record);
                    }
                }
            }
            pending = failed;
        }
    }
    Ok(())
}

/// The decoder of a stage that decodes its input itself (the downstream of a shuffle): refuses
/// every record.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDecoder;

impl<In> RecordDecoder<In> for NoDecoder {
    fn decode(&self, _data: &[u8]) -> Result<In, DecodeError> {
        Err(DecodeError {
            format: "shuffle",
            reason: "this stage decodes its input itself".into(),
        })
    }
}

/// The result sink of a stage whose results go elsewhere (the upstream of a shuffle writes to the
/// shuffle stream): refuses every result.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSink;

impl<Out: Sync> ResultSink<Out> for NoSink {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        Err(SinkError {
            sink: "none".into(),
            message: format!("{} results for a stage without a result sink", outputs.len()),
        })
    }
}

/// The records of `batch` after the committed position `committed` (the others are redelivered).
pub(crate) fn records_after<'b>(
    batch: &'b ShardBatch,
    committed: Option<&'b shardflow_stage::SequenceNumber>,
) -> impl Iterator<Item = &'b InputRecord> {
    batch
        .records
        .iter()
        .filter(move |r| committed.is_none_or(|c| &r.sequence > c))
}
