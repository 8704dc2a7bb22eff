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

#[cfg(test)]
mod tests {
    use shardflow_engine::{PaneInfo, PaneTiming, ResultId, Window};

    use super::*;

    #[test]
    fn the_wire_forms_are_pinned() {
        let window = Window::new(60_000, 120_000);
        let output = Output {
            id: ResultId(0xabc),
            timestamp: window.max_timestamp(),
            pane: Some((
                window,
                PaneInfo {
                    timing: PaneTiming::Late,
                    index: 2,
                },
            )),
            value: ("k", 3),
        };
        assert_eq!(
            serde_json::to_string(&ResultMessage::of(&output)).ok(),
            Some(
                r#"{"id":"00000000000000000000000000000abc","timestamp_ms":119999,"window_start_ms":60000,"window_end_ms":120000,"pane_index":2,"pane_timing":"late","value":["k",3]}"#
                    .to_owned()
            )
        );
        let stateless = Output {
            pane: None,
            ..output.clone()
        };
        assert_eq!(
            serde_json::to_string(&ResultMessage::of(&stateless)).ok(),
            Some(r#"{"id":"00000000000000000000000000000abc","timestamp_ms":119999,"value":["k",3]}"#.to_owned())
        );
        let envelope = KinesisEnvelope {
            id: output.id.to_hex(),
            value: 5,
        };
        assert_eq!(
            serde_json::to_string(&envelope).ok(),
            Some(r#"{"id":"00000000000000000000000000000abc","value":5}"#.to_owned())
        );
        assert_eq!(envelope.id_u128(), Some(0xabc));
        assert_eq!(
            KinesisEnvelope {
                id: "xyz".to_owned(),
                value: 5
            }
            .id_u128(),
            None
        );
    }
}
