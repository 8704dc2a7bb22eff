//! Reading a shard's gap from Kinesis: the records between the committed position and the
//! progress item's, which another container (or a crashed invocation) handled without a commit
//! (see the crate documentation, "Interval commits").

use std::time::Duration;

use aws_sdk_kinesis::operation::get_records::{GetRecordsError, GetRecordsOutput};
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use shardflow_stage::{InputRecord, SequenceNumber, ShardBatch};
use thiserror::Error;

/// `GetRecords` calls of one gap read, at most (a gap is at most one checkpoint interval).
const MAX_GET_RECORDS_CALLS: usize = 10_000;

/// The least time between two `GetRecords` calls of one gap read. A shard serves 5 calls a
/// second to all its readers; the event source mapping polls it about once a second (shared
/// throughput), so a gap read at 4 a second leaves it its share.
pub const GAP_GET_RECORDS_PACE: Duration = Duration::from_millis(250);
/// Calls of one `GetRecords` throttled with `ProvisionedThroughputExceededException` before
/// the gap read gives up (the invocation fails and Lambda retries); the wait doubles each time.
const MAX_THROTTLED_CALLS: u32 = 6;

/// A gap read from Kinesis: its records, and the `GetRecords` calls it took (throttled ones
/// included), for the batch's EMF line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GapRead {
    /// The records, as a batch of the shard.
    pub(crate) batch: ShardBatch,
    /// `GetRecords` calls made.
    pub(crate) get_records_calls: u64,
}

/// Why a gap could not be read.
#[derive(Debug, Error)]
#[error("gap of {stream}/{shard} after {after} up to {until}: {reason}")]
pub struct GapError {
    /// The stream.
    pub stream: String,
    /// The shard.
    pub shard: String,
    /// The committed position (exclusive).
    pub after: String,
    /// The progress item's position (inclusive).
    pub until: String,
    /// What went wrong.
    pub reason: String,
}

/// A Kinesis record as the stage's input (the conversion Lambda's event makes).
pub fn input_record(r: &Record) -> Result<InputRecord, shardflow_stage::SequenceNumberError> {
    Ok(InputRecord {
        sequence: SequenceNumber::parse(r.sequence_number())?,
        partition_key: r.partition_key().unwrap_or_default().to_owned(),
        arrival_ms: r
            .approximate_arrival_timestamp()
            .map_or(0, |t| t.to_millis().unwrap_or(0)),
        data: r.data().as_ref().to_vec(),
    })
}

/// The records of `shard` of `stream` after `after` up to and including `until`, read with
/// `GetShardIterator AFTER_SEQUENCE_NUMBER` and `GetRecords`, paced at
/// [`GAP_GET_RECORDS_PACE`] and backing off when throttled.
pub(crate) async fn read_gap(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    after: &SequenceNumber,
    until: &SequenceNumber,
) -> Result<GapRead, GapError> {
    let fail = |reason: String| GapError {
        stream: stream.to_owned(),
        shard: shard.to_owned(),
        after: after.to_string(),
        until: until.to_string(),
        reason,
    };
    if stream.is_empty() {
        return Err(fail("the batch names no stream".into()));
    }
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
        .starting_sequence_number(after.as_str())
        .send()
        .await
        .map_err(|e| {
            fail(format!(
                "GetShardIterator: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            ))
        })?
        .shard_iterator
        .ok_or_else(|| fail("GetShardIterator returned no iterator".into()))?;
    let mut records = Vec::new();
    let mut calls = 0;
    for _ in 0..MAX_GET_RECORDS_CALLS {
        let out = get_records_paced(kinesis, &iterator, &mut calls).await.map_err(|e| {
            fail(format!(
                "GetRecords: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            ))
        })?;
        for r in out.records() {
            let record = input_record(r).map_err(|e| fail(e.to_string()))?;
            if record.sequence > *until {
                return Err(fail(format!(
                    "no record {until}: the shard holds {} next",
                    record.sequence
                )));
            }
            let last = record.sequence == *until;
            records.push(record);
            if last {
                return Ok(GapRead {
                    batch: ShardBatch {
                        stream: stream.to_owned(),
                        shard_id: shard.to_owned(),
                        records,
                    },
                    get_records_calls: calls,
                });
            }
        }
        let caught_up = out.records().is_empty() && out.millis_behind_latest() == Some(0);
        match out.next_shard_iterator() {
            Some(next) if !caught_up => iterator = next.to_owned(),
            _ => return Err(fail("reached the end of the shard first (past retention?)".into())),
        }
    }
    Err(fail(format!("not reached in {MAX_GET_RECORDS_CALLS} GetRecords calls")))
}

/// One `GetRecords` of `iterator`, at least [`GAP_GET_RECORDS_PACE`] after the previous call of
/// this read (`calls` counts them), called again after a doubling wait while throttled.
async fn get_records_paced(
    kinesis: &aws_sdk_kinesis::Client,
    iterator: &str,
    calls: &mut u64,
) -> Result<GetRecordsOutput, aws_sdk_kinesis::error::SdkError<GetRecordsError>> {
    let mut wait = GAP_GET_RECORDS_PACE;
    let mut throttled = 0;
    loop {
        if *calls > 0 {
            tokio::time::sleep(wait).await;
        }
        *calls += 1;
        match kinesis.get_records().shard_iterator(iterator).send().await {
            Err(e)
                if throttled + 1 < MAX_THROTTLED_CALLS
                    && e.as_service_error()
                        .is_some_and(GetRecordsError::is_provisioned_throughput_exceeded_exception) =>
            {
                throttled += 1;
                tracing::info!(
                    throttled,
                    wait_ms = wait.as_millis() as u64,
                    "gap read throttled: backing off"
                );
                wait = wait.saturating_mul(2);
            }
            other => return other,
        }
    }
}
