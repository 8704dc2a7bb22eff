//! The JSON forms of a result on the wire.

use serde::{Deserialize, Serialize};
use shardflow_engine::Output;

/// A result as one JSON message (SNS message, S3 object): its id, event time, window and pane,
/// and the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMessage<T> {
    /// The result's deterministic id, 32 hex digits.
    pub id: String,
    /// The result's event time (ms since the epoch; a window result carries its window's last ms).
    pub timestamp_ms: i64,
    /// The window's first ms, for a window result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start_ms: Option<i64>,
    /// The first ms after the window, for a window result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end_ms: Option<i64>,
    /// The pane's index (0, 1, ...: a later pane supersedes an earlier one), for a window result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pane_index: Option<u32>,
    /// `early`, `on_time` or `late`, for a window result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pane_timing: Option<String>,
    /// The result.
    pub value: T,
}

impl<'a, T> ResultMessage<&'a T> {
    /// The message of `output`, borrowing its value.
    pub fn of(output: &'a Output<T>) -> Self {
        ResultMessage {
            id: output.id.to_hex(),
            timestamp_ms: output.timestamp,
            window_start_ms: output.pane.map(|(w, _)| w.start),
            window_end_ms: output.pane.map(|(w, _)| w.end),
            pane_index: output.pane.map(|(_, p)| p.index),
            pane_timing: output.pane.map(|(_, p)| p.timing.as_str().to_owned()),
            value: &output.value,
        }
    }
}

/// A result as a Kinesis record for the next stage: `{"id": "<32 hex digits>", "value": ...}`.
/// The next stage decodes it and drops repeated ids with `Stream::deduplicate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KinesisEnvelope<T> {
    /// The result's deterministic id, 32 hex digits.
    pub id: String,
    /// The result.
    pub value: T,
}

impl<T> KinesisEnvelope<T> {
    /// The id as a number (`None` if it is not 32 hex digits): a cheap key to deduplicate on.
    pub fn id_u128(&self) -> Option<u128> {
        if self.id.len() != 32 {
            return None;
        }
        u128::from_str_radix(&self.id, 16).ok()
    }
}
