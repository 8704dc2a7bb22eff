//! The tick: a scheduled request to an upstream stage of a shuffle (see the module documentation
//! of [`crate::shuffle`], "Idle upstream shards: the tick").

use serde::{Deserialize, Serialize};
use shardflow_shuffle::{FrameWriter, Packed, PackedRecord, ShardMap};
use shardflow_stage::BatchError;

use crate::request::StageRequest;

/// The key of a tick request's payload: `{"shardflowTick": {}}`.
pub const TICK_KEY: &str = "shardflowTick";

/// A tick (an EventBridge schedule's constant input). It carries nothing: the stage sends a
/// heartbeat to every open shard of its shuffle stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {}

impl Tick {
    /// The request's JSON payload.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ TICK_KEY: self })
    }
}

/// One invocation's request to an upstream stage of a shuffle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamRequest {
    /// A tick.
    Tick(Tick),
    /// A batch (or an end of input, which the upstream stage refuses).
    Stage(StageRequest),
}

impl UpstreamRequest {
    /// Reads an invocation's payload: a tick if it has the key [`TICK_KEY`], otherwise a stage
    /// request ([`StageRequest::from_value`]).
    pub fn from_value(mut value: serde_json::Value) -> Result<Self, BatchError> {
        match value.as_object_mut().and_then(|o| o.remove(TICK_KEY)) {
            Some(tick) => serde_json::from_value(tick)
                .map(UpstreamRequest::Tick)
                .map_err(|e| BatchError::NotAnEvent(format!("{TICK_KEY}: {e}"))),
            None => StageRequest::from_value(value).map(UpstreamRequest::Stage),
        }
    }
}

/// One heartbeat per open shard of `map`: an empty frame addressed to the shard, which a
/// downstream reads as nothing but a later processing time.
pub(crate) fn heartbeats(map: &ShardMap) -> Packed {
    let records = map
        .shards()
        .iter()
        .enumerate()
        .map(|(shard_index, s)| PackedRecord {
            shard_index,
            shard_id: s.shard_id.clone(),
            partition_key: s.shard_id.clone(),
            explicit_hash_key: s.hash_key_range.start().to_string(),
            data: FrameWriter::new().finish(),
            records: 0,
        })
        .collect();
    Packed {
        records,
        data_records: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardflow_shuffle::{Frame, KeyGroupSpace};

    #[test]
    fn a_tick_round_trips_and_a_kinesis_event_stays_a_stage_request() {
        assert_eq!(
            UpstreamRequest::from_value(Tick::default().to_json()).unwrap(),
            UpstreamRequest::Tick(Tick {})
        );
        let empty = UpstreamRequest::from_value(serde_json::json!({ "Records": [] })).unwrap();
        assert!(matches!(empty, UpstreamRequest::Stage(StageRequest::Batch(b)) if b.records.is_empty()));
        let bad = UpstreamRequest::from_value(serde_json::json!({ TICK_KEY: 3 }));
        assert!(bad.unwrap_err().to_string().contains(TICK_KEY));
    }

    #[test]
    fn a_heartbeat_goes_to_every_shard_and_holds_no_record() {
        let map = ShardMap::even(KeyGroupSpace::new(128), 3);
        let packed = heartbeats(&map);
        assert_eq!(packed.records.len(), 3);
        for (record, shard) in packed.records.iter().zip(map.shards()) {
            assert_eq!(record.shard_id, shard.shard_id);
            let hash_key: u128 = record.explicit_hash_key.parse().unwrap();
            assert_eq!(map.owner_of_hash_key(hash_key).shard_id, shard.shard_id);
            assert_eq!(Frame::parse(&record.data).unwrap().records().count(), 0);
        }
    }
}
