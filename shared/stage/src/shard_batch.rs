//! A Kinesis batch as the runtime sees it: one stream, one shard, records in sequence order.

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use thiserror::Error;

/// Seconds since the epoch (a JSON number or numeric string) as whole milliseconds.
fn exact_arrival_ms(v: &serde_json::Value) -> Option<i64> {
    let text = match v {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => return None,
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let seconds: i64 = whole.parse().ok()?;
    let mut millis = 0i64;
    for (i, c) in frac.chars().take(3).enumerate() {
        millis += i64::from(c.to_digit(10)?) * 10i64.pow(2 - i as u32);
    }
    seconds.checked_mul(1000)?.checked_add(millis)
}

use crate::sequence::{SequenceNumber, SequenceNumberError};

/// Why an event is not a well-formed batch of one shard. These are faults of the event source
/// (Lambda never sends such a batch), so the whole invocation fails and Lambda retries it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// A record's `eventID` does not name its shard (`shardId-...:<sequence number>`).
    #[error("record {index}: eventID {event_id:?} does not name a shard")]
    NoShard {
        /// Position in the batch.
        index: usize,
        /// The eventID found.
        event_id: Option<String>,
    },
    /// Records of two shards (or streams) in one batch.
    #[error("record {index} is from {found}, the batch from {expected}")]
    MixedSources {
        /// Position in the batch.
        index: usize,
        /// The batch's stream/shard.
        expected: String,
        /// The record's stream/shard.
        found: String,
    },
    /// A record's sequence number is malformed.
    #[error("record {index}: {source}")]
    BadSequenceNumber {
        /// Position in the batch.
        index: usize,
        /// The parse error.
        #[source]
        source: SequenceNumberError,
    },
    /// A record's `approximateArrivalTimestamp` is not a non-negative number of seconds (with
    /// at most millisecond precision kept) within the range of an `i64` of milliseconds.
    #[error("record {index}: approximateArrivalTimestamp {found} is not a time in seconds")]
    BadArrivalTime {
        /// Position in the batch.
        index: usize,
        /// The value found, as JSON.
        found: String,
    },
    /// The payload is not a Kinesis event.
    #[error("not a Kinesis event: {0}")]
    NotAnEvent(String),
    /// Sequence numbers do not increase through the batch.
    #[error("record {index}: sequence number {sequence} does not follow {previous}")]
    OutOfOrder {
        /// Position in the batch.
        index: usize,
        /// The record's sequence number.
        sequence: SequenceNumber,
        /// The previous record's.
        previous: SequenceNumber,
    },
}

/// One record of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// Position in the shard.
    pub sequence: SequenceNumber,
    /// The producer's partition key.
    pub partition_key: String,
    /// When Kinesis received it (ms since the epoch): the record's processing time.
    pub arrival_ms: i64,
    /// The payload.
    pub data: Vec<u8>,
}

/// The name of a stream given by name or ARN (`arn:...:stream/NAME`): the name a
/// [`ShardBatch`] carries in [`ShardBatch::stream`].
pub fn stream_name(name_or_arn: &str) -> &str {
    name_or_arn
        .rsplit_once(":stream/")
        .map_or(name_or_arn, |(_, name)| name)
}

/// The records of one shard delivered in one invocation, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardBatch {
    /// Stream name (from the event source ARN), empty if the event carries none.
    pub stream: String,
    /// Shard id, e.g. `shardId-000000000003`.
    pub shard_id: String,
    /// The records.
    pub records: Vec<InputRecord>,
}

impl ShardBatch {
    /// Checks and converts a Lambda Kinesis event already parsed by `aws_lambda_events` (whose
    /// arrival times may be off in the sub-second digits; prefer [`ShardBatch::from_json`]). An empty event is an empty batch of no shard.
    pub fn from_event(event: KinesisEvent) -> Result<Self, BatchError> {
        let mut batch = ShardBatch {
            stream: String::new(),
            shard_id: String::new(),
            records: Vec::with_capacity(event.records.len()),
        };
        for (index, r) in event.records.into_iter().enumerate() {
            let shard = r
                .event_id
                .as_deref()
                .and_then(|id| id.split_once(':'))
                .map(|(shard, _)| shard.to_owned())
                .filter(|s| s.starts_with("shardId-"))
                .ok_or_else(|| BatchError::NoShard {
                    index,
                    event_id: r.event_id.clone(),
                })?;
            let stream = r
                .event_source_arn
                .as_deref()
                .filter(|arn| arn.contains(":stream/"))
                .map(|arn| stream_name(arn).to_owned())
                .unwrap_or_default();
            if index == 0 {
                batch.shard_id = shard;
                batch.stream = stream;
            } else if shard != batch.shard_id || stream != batch.stream {
                return Err(BatchError::MixedSources {
                    index,
                    expected: format!("{}/{}", batch.stream, batch.shard_id),
                    found: format!("{stream}/{shard}"),
                });
            }
            let sequence = SequenceNumber::parse(&r.kinesis.sequence_number)
                .map_err(|source| BatchError::BadSequenceNumber { index, source })?;
            if let Some(previous) = batch.records.last().map(|p| &p.sequence) {
                if &sequence <= previous {
                    return Err(BatchError::OutOfOrder {
                        index,
                        sequence,
                        previous: previous.clone(),
                    });
                }
            }
            batch.records.push(InputRecord {
                sequence,
                partition_key: r.kinesis.partition_key,
                arrival_ms: r.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
                data: r.kinesis.data.0,
            });
        }
        Ok(batch)
    }

    /// Parses a Lambda Kinesis event from its JSON payload, with exact arrival times.
    ///
    /// `aws_lambda_events` 1.2 reads the fractional part of `approximateArrivalTimestamp` as a
    /// count of milliseconds whatever its length, so `1545084650.98` (Kinesis drops trailing
    /// zeros) becomes 98 ms instead of 980 ms. Arrival time is the records' processing time, which
    /// drives early firings and idleness, so this reads it from the JSON number itself.
    pub fn from_json(payload: &[u8]) -> Result<Self, BatchError> {
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| BatchError::NotAnEvent(e.to_string()))?;
        Self::from_value(value)
    }

    /// Like [`ShardBatch::from_json`], from an already parsed JSON value.
    ///
    /// Each record's `approximateArrivalTimestamp` is read here and replaced by its whole seconds
    /// before `aws_lambda_events` sees it: its own parser multiplies the fractional digits
    /// unchecked (`1.04224376450473525252` overflows a `u64`, a panic in debug builds and a
    /// wrong time in release ones). An arrival time that is not a non-negative number of
    /// seconds is refused.
    pub fn from_value(mut value: serde_json::Value) -> Result<Self, BatchError> {
        let mut arrivals = Vec::new();
        if let Some(records) = value.get_mut("Records").and_then(serde_json::Value::as_array_mut) {
            for (index, record) in records.iter_mut().enumerate() {
                let Some(field) = record
                    .get_mut("kinesis")
                    .and_then(serde_json::Value::as_object_mut)
                    .and_then(|k| k.get_mut("approximateArrivalTimestamp"))
                else {
                    arrivals.push(None);
                    continue;
                };
                let ms = exact_arrival_ms(field)
                    .filter(|ms| *ms >= 0)
                    .ok_or_else(|| BatchError::BadArrivalTime {
                        index,
                        found: field.to_string(),
                    })?;
                *field = serde_json::Value::from(ms / 1000);
                arrivals.push(Some(ms));
            }
        }
        let event: KinesisEvent = serde_json::from_value(value).map_err(|e| BatchError::NotAnEvent(e.to_string()))?;
        let mut batch = Self::from_event(event)?;
        for (record, exact) in batch.records.iter_mut().zip(arrivals) {
            if let Some(ms) = exact {
                record.arrival_ms = ms;
            }
        }
        Ok(batch)
    }

    /// The first `n` records of the batch.
    pub fn truncated(&self, n: usize) -> ShardBatch {
        ShardBatch {
            stream: self.stream.clone(),
            shard_id: self.shard_id.clone(),
            records: self.records[..n.min(self.records.len())].to_vec(),
        }
    }

    /// The last sequence number of the batch.
    pub fn last_sequence(&self) -> Option<&SequenceNumber> {
        self.records.last().map(|r| &r.sequence)
    }

    /// The batch as the JSON payload Lambda's Kinesis event source mapping delivers
    /// (`{"Records": [...]}`), each record naming `event_source_arn` and the batch's shard, in
    /// `region`. It is what [`ShardBatch::from_value`] reads back to an equal batch (arrival times
    /// are whole milliseconds, written as seconds with up to three decimals); a replay of archived
    /// records invokes a stage function with it.
    pub fn to_event_json(&self, event_source_arn: &str, region: &str) -> serde_json::Value {
        let records: Vec<serde_json::Value> = self
            .records
            .iter()
            .map(|r| {
                let sequence = r.sequence.to_string();
                serde_json::json!({
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r.partition_key,
                        "sequenceNumber": sequence,
                        "data": BASE64.encode(&r.data),
                        "approximateArrivalTimestamp": arrival_seconds(r.arrival_ms),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": format!("{}:{sequence}", self.shard_id),
                    "eventName": "aws:kinesis:record",
                    "awsRegion": region,
                    "eventSourceARN": event_source_arn,
                })
            })
            .collect();
        serde_json::json!({ "Records": records })
    }
}

/// Milliseconds since the epoch as a JSON number of seconds, exact to the millisecond (the
/// shortest decimal that reads back as the same `f64`, e.g. `1545084650.98`).
fn arrival_seconds(ms: i64) -> serde_json::Value {
    let text = format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    text.parse::<serde_json::Number>()
        .map(serde_json::Value::Number)
        .unwrap_or_else(|_| serde_json::Value::from(ms / 1000))
}

#[cfg(test)]
mod tests {
    use super::{exact_arrival_ms, stream_name, InputRecord, SequenceNumber, ShardBatch};
    use serde_json::json;

    #[test]
    fn a_stream_is_named_alike_by_name_and_by_arn() {
        assert_eq!(
            stream_name("arn:aws:kinesis:us-east-1:000000000000:stream/shop-changes"),
            "shop-changes"
        );
        assert_eq!(stream_name("shop-changes"), "shop-changes");
    }

    #[test]
    fn an_event_written_for_a_batch_reads_back_as_the_same_batch() {
        let record = |seq: &str, arrival_ms: i64, data: &[u8]| InputRecord {
            sequence: SequenceNumber::parse(seq).unwrap(),
            partition_key: format!("orders:{arrival_ms}"),
            arrival_ms,
            data: data.to_vec(),
        };
        let batch = ShardBatch {
            stream: "changes".into(),
            shard_id: "shardId-000000000002".into(),
            records: vec![
                record(
                    "49590338271490256608559692538361571095921575989136588898",
                    1_545_084_650_980,
                    b"a",
                ),
                record(
                    "49590338271490256608559692538361571095921575989136588899",
                    1_545_084_650_007,
                    b"\x00\xff",
                ),
                record(
                    "49590338271490256608559692538361571095921575989136588900",
                    1_545_084_651_000,
                    b"",
                ),
            ],
        };
        let json = batch.to_event_json("arn:aws:kinesis:eu-west-1:123456789012:stream/changes", "eu-west-1");
        let text = json.to_string();
        assert!(
            text.contains("1545084650.98") && text.contains("1545084650.007"),
            "{text}"
        );
        assert_eq!(ShardBatch::from_value(json).unwrap(), batch);
    }

    #[test]
    fn arrival_seconds_become_exact_milliseconds() {
        assert_eq!(exact_arrival_ms(&json!(1545084650.987)), Some(1_545_084_650_987));
        assert_eq!(exact_arrival_ms(&json!(1545084650.98)), Some(1_545_084_650_980));
        assert_eq!(exact_arrival_ms(&json!(1545084650.9)), Some(1_545_084_650_900));
        assert_eq!(exact_arrival_ms(&json!(1545084650)), Some(1_545_084_650_000));
        assert_eq!(exact_arrival_ms(&json!("1545084650.25")), Some(1_545_084_650_250));
        assert_eq!(exact_arrival_ms(&json!(1545084650.98765)), Some(1_545_084_650_987));
        assert_eq!(exact_arrival_ms(&json!("soon")), None);
        assert_eq!(exact_arrival_ms(&json!(null)), None);
    }
}
