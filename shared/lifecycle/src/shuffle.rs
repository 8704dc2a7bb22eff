//! Restoring a shuffle's downstream stage onto another shuffle stream.
//!
//! A downstream stage's shards are the shards of *its* shuffle stream, and a blue/green copy has
//! a shuffle stream of its own (new shard ids, new sequence numbers). What a downstream shard's
//! state belongs to is not its shard id but the key groups it owns: its engine's keyed state, and
//! its dedup marks and upstream watermarks (`shardflow_shuffle::DownstreamState`), which are
//! keyed by upstream stage and upstream *input* shard — the CDC stream's shards, which both
//! copies read — and so hold in the new stream as they did in the old. So the restore
//! ([`ShuffleTarget`]) puts each saved shard under the open shard of the target stream that owns
//! exactly its key groups, without its position or failure record (sequence numbers of the old
//! stream mean nothing in the new one: the restored shard reads its stream from the start, which
//! holds only what the restored upstream sent). A savepoint whose shards do not match the target's
//! open shards one to one (the old stream was resharded, or the target has another shard count)
//! is refused: state is never split or merged here (the stages do that through their lineage).

use shardflow_shuffle::{DownstreamState, KeyGroupSpace, ShardMap};
use shardflow_shuffle_kinesis::ShardMapReader;

use crate::error::LifecycleError;
use crate::restore::ShardState;

/// The shuffle stream a restored downstream stage will read, when it is not the stream the
/// savepoint's stage read (see the module documentation of `shuffle`).
#[derive(Debug, Clone)]
pub struct ShuffleTarget {
    /// A Kinesis client (to list the stream's open shards).
    pub kinesis: aws_sdk_kinesis::Client,
    /// The stream's name or ARN.
    pub stream: String,
}

impl ShuffleTarget {
    /// The target stream `stream`, listed with `kinesis`.
    pub fn new(kinesis: aws_sdk_kinesis::Client, stream: &str) -> Self {
        ShuffleTarget {
            kinesis,
            stream: shardflow_stage::stream_name(stream).to_owned(),
        }
    }

    /// The stream's open shards and the key groups each owns.
    pub(crate) async fn shard_map(&self, max_key_groups: u16) -> Result<ShardMap, LifecycleError> {
        ShardMapReader::new(self.kinesis.clone(), &self.stream)
            .read(KeyGroupSpace::new(max_key_groups))
            .await
            .map_err(|e| LifecycleError::Invalid(format!("shuffle stream {}: {e}", self.stream)))
    }
}

/// Puts every shard of `shards` under the shard of `map` owning exactly its key groups, without
/// its position and failure record; refuses (naming `savepoint`) a shard without a shuffle state
/// and any mismatch.
pub(crate) fn assign_shards(savepoint: &str, shards: &mut [ShardState], map: &ShardMap) -> Result<(), LifecycleError> {
    let refuse = |reason: String| LifecycleError::Refused {
        location: savepoint.to_owned(),
        reason,
    };
    let mut taken: Vec<&str> = Vec::with_capacity(shards.len());
    for shard in shards.iter_mut() {
        let bytes = shard.shuffle_state.as_deref().ok_or_else(|| {
            refuse(format!(
                "shard {} has no shuffle state: not a savepoint of a shuffle's downstream stage (or of format \
                 version 1), so it cannot move to another shuffle stream",
                shard.entry.shard
            ))
        })?;
        let owned = DownstreamState::decode(bytes)
            .map_err(|e| LifecycleError::Corrupt {
                location: format!("{savepoint}/{}", shard.entry.shard),
                reason: format!("shuffle state: {e}"),
            })?
            .dedup
            .owned();
        let target = map
            .shards()
            .iter()
            .find(|t| map.groups_of(&t.shard_id).as_ref() == Some(&owned))
            .ok_or_else(|| {
                let open: Vec<String> = map
                    .shards()
                    .iter()
                    .filter_map(|t| map.groups_of(&t.shard_id).map(|g| format!("{} {g:?}", t.shard_id)))
                    .collect();
                refuse(format!(
                    "shard {} owns key groups {owned:?}, which no open shard of the target stream owns exactly \
                     (open: {open:?}); give the target stream the savepoint's shard layout",
                    shard.entry.shard
                ))
            })?;
        if taken.contains(&target.shard_id.as_str()) {
            return Err(refuse(format!(
                "two shards of the savepoint own key groups {owned:?} (the saved stream was resharded): \
                 restore it into its own stream"
            )));
        }
        taken.push(&target.shard_id);
        shard.target_shard.clone_from(&target.shard_id);
        shard.sequence_number = None;
        shard.failure = None;
    }
    if taken.len() != map.shards().len() {
        tracing::warn!(
            savepoint,
            restored = taken.len(),
            open = map.shards().len(),
            "open shards of the target shuffle stream without saved state start empty"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ShardEntry;
    use shardflow_engine::Checkpoint;
    use shardflow_shuffle::Source;
    use shardflow_stage::SequenceNumber;

    /// A saved shard `id` at a position, owning key groups `owned` (`None`: no shuffle state).
    fn saved(id: &str, owned: Option<std::ops::Range<u16>>) -> ShardState {
        let state = owned.map(|o| {
            DownstreamState::new(o, [Source::new("revenue-keyby", "cdc")], None)
                .unwrap()
                .encode()
                .unwrap()
        });
        ShardState {
            entry: ShardEntry {
                shard: id.into(),
                sequence_number: Some("7".into()),
                version: 1,
                epoch: 1,
                watermark: 0,
                processing_time: 0,
                key_groups: 0,
                state_bytes: 0,
                failure: None,
                file: "shards/x".into(),
                size: 0,
                xxh3: String::new(),
                shuffle_state: None,
            },
            checkpoint: Checkpoint {
                pipeline: "revenue".into(),
                max_key_groups: 128,
                epoch: 1,
                full: true,
                engine: Vec::new(),
                operators: Vec::new(),
            },
            sequence_number: Some(SequenceNumber::parse("7").unwrap()),
            failure: None,
            shuffle_state: state,
            target_shard: id.into(),
        }
    }

    fn refusal(shards: &mut [ShardState], map: &ShardMap) -> String {
        match assign_shards("s3://b/sp", shards, map) {
            Err(LifecycleError::Refused { reason, .. }) => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn saved_shards_go_under_the_target_shards_owning_their_key_groups_without_their_positions() {
        let map = ShardMap::even(KeyGroupSpace::new(128), 2);
        let (low, high) = (
            map.groups_of("shardId-000000000000").unwrap(),
            map.groups_of("shardId-000000000001").unwrap(),
        );
        // saved under other ids (a resharded stream's children), listed high first
        let mut shards = vec![
            saved("shardId-000000000007", Some(high)),
            saved("shardId-000000000006", Some(low)),
        ];
        assign_shards("s3://b/sp", &mut shards, &map).unwrap();
        let targets: Vec<&str> = shards.iter().map(|s| s.target_shard.as_str()).collect();
        assert_eq!(targets, ["shardId-000000000001", "shardId-000000000000"]);
        assert!(shards
            .iter()
            .all(|s| s.sequence_number.is_none() && s.failure.is_none()));
        assert!(shards.iter().all(|s| s.shuffle_state.is_some()), "the state goes along");
    }

    #[test]
    fn other_layouts_resharded_savepoints_and_shards_without_shuffle_state_are_refused() {
        let map = ShardMap::even(KeyGroupSpace::new(128), 2);
        let low = map.groups_of("shardId-000000000000").unwrap();
        let reason = refusal(&mut [saved("shardId-000000000000", Some(0..128))], &map);
        assert!(
            reason.contains("no open shard of the target stream owns exactly"),
            "{reason}"
        );
        let reason = refusal(
            &mut [
                saved("shardId-000000000000", Some(low.clone())),
                saved("shardId-000000000002", Some(low)),
            ],
            &map,
        );
        assert!(
            reason.contains("two shards of the savepoint own key groups"),
            "{reason}"
        );
        let reason = refusal(&mut [saved("shardId-000000000000", None)], &map);
        assert!(reason.contains("has no shuffle state"), "{reason}");
    }
}
