//! What a stage function is invoked with: a Kinesis batch (from its event source mapping, or
//! from a replay of the archive), or the end of a bounded input of one shard.
//!
//! # End of input
//! A live Kinesis stream never ends, so a live stage fires a window only when later records move
//! its watermark past it. A replay of archived records (Beam's bounded source) does end: after a
//! shard's last batch, `shardflow replay --invoke ... --finish` sends
//! `{"shardflowEndOfInput": {"stream": NAME, "shardId": ID}}`, and the stage moves that shard's
//! watermark to the end of time, emits every window still open and commits (position unchanged).
//! Records of the shard that arrive after it are late. It is idempotent (a second end of input
//! finds nothing open) and meant for a stage that consumes a bounded input — sent to a live stage
//! it would close every open window early.

use serde::{Deserialize, Serialize};
use shardflow_stage::{BatchError, ShardBatch};

/// The key of an end-of-input request's payload.
pub const END_OF_INPUT_KEY: &str = "shardflowEndOfInput";

/// The end of a bounded input of one shard (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndOfInput {
    /// The stream's name (as in the event source ARN of the shard's batches).
    pub stream: String,
    /// The shard, e.g. `shardId-000000000000`.
    pub shard_id: String,
}

impl EndOfInput {
    /// The request's JSON payload.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ END_OF_INPUT_KEY: self })
    }
}

/// One invocation's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageRequest {
    /// A batch of one shard.
    Batch(ShardBatch),
    /// The end of one shard's bounded input.
    EndOfInput(EndOfInput),
}

impl StageRequest {
    /// Reads an invocation's payload: an end-of-input request if it has the key
    /// [`END_OF_INPUT_KEY`], otherwise a Kinesis event ([`ShardBatch::from_value`]).
    pub fn from_value(mut value: serde_json::Value) -> Result<Self, BatchError> {
        match value.as_object_mut().and_then(|o| o.remove(END_OF_INPUT_KEY)) {
            Some(end) => serde_json::from_value(end)
                .map(StageRequest::EndOfInput)
                .map_err(|e| BatchError::NotAnEvent(format!("{END_OF_INPUT_KEY}: {e}"))),
            None => ShardBatch::from_value(value).map(StageRequest::Batch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_of_input_round_trips_and_a_kinesis_event_stays_a_batch() {
        let end = EndOfInput {
            stream: "changes".into(),
            shard_id: "shardId-000000000001".into(),
        };
        assert_eq!(
            StageRequest::from_value(end.to_json()).unwrap(),
            StageRequest::EndOfInput(end)
        );
        let empty = StageRequest::from_value(serde_json::json!({ "Records": [] })).unwrap();
        assert!(matches!(empty, StageRequest::Batch(b) if b.records.is_empty()));
        let bad = StageRequest::from_value(serde_json::json!({ END_OF_INPUT_KEY: { "stream": 1 } }));
        assert!(bad.unwrap_err().to_string().contains(END_OF_INPUT_KEY));
    }
}
