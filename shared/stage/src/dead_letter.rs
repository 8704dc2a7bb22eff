//! Records that could not be processed, with everything needed to replay them.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use shardflow_engine::LateRecord;

use crate::shard_batch::InputRecord;

/// Why a record left the normal path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// Its payload could not be decoded.
    Undecodable,
    /// It arrived after its window's allowed lateness (the late side output).
    Late,
    /// User code failed on it more often than the stage's retry limit.
    Poison,
}

/// A record routed to the dead-letter (or late) destination: the raw bytes, where it came from,
/// and why. Serialized as one JSON object (the SQS message body or an S3 object line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why it is here.
    pub kind: DeadLetterKind,
    /// The stage that refused it.
    pub stage: String,
    /// Stream name.
    pub stream: String,
    /// Shard id.
    pub shard_id: String,
    /// The record's sequence number.
    pub sequence_number: String,
    /// The record's partition key.
    pub partition_key: String,
    /// Arrival time in Kinesis (ms since the epoch).
    pub arrival_ms: i64,
    /// The reason, for a person.
    pub reason: String,
    /// The payload, base64.
    pub data_base64: String,
}

impl DeadLetter {
    /// A dead letter for `record` of `stage`/`stream`/`shard_id`.
    pub fn new(
        kind: DeadLetterKind,
        stage: &str,
        stream: &str,
        shard_id: &str,
        record: &InputRecord,
        reason: String,
    ) -> Self {
        DeadLetter {
            kind,
            stage: stage.to_owned(),
            stream: stream.to_owned(),
            shard_id: shard_id.to_owned(),
            sequence_number: record.sequence.to_string(),
            partition_key: record.partition_key.clone(),
            arrival_ms: record.arrival_ms,
            reason,
            data_base64: base64::engine::general_purpose::STANDARD.encode(&record.data),
        }
    }

    /// The reason of a dead letter of kind [`DeadLetterKind::Late`] for the record `late`
    /// names: its event time, the operator's watermark and allowed lateness, the window.
    pub fn late_reason(late: &LateRecord) -> String {
        format!(
            "event time {} is behind watermark {} beyond the allowed lateness of operator {} (window {:?})",
            late.timestamp, late.watermark, late.operator, late.window
        )
    }

    /// The payload's bytes (`None` if the base64 was tampered with).
    pub fn data(&self) -> Option<Vec<u8>> {
        base64::engine::general_purpose::STANDARD.decode(&self.data_base64).ok()
    }
}
