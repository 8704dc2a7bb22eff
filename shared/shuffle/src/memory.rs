//! The shuffle in one process: an in-memory shuffle stream ([`MemoryShuffle`]) and downstream
//! shards reading it ([`DownstreamShard`]), through the same halves as the Lambda stages
//! ([`crate::upstream`], [`crate::downstream`]). The embedded runner and the tests run the
//! two-stage topology with them.
//!
//! # Protocol
//! Upstream: pack a batch with [`crate::UpstreamBatch`] for [`MemoryShuffle::map`], then
//! [`MemoryShuffle::put`] it (as `PutRecords` would: each record stored on the shard that owns
//! its `ExplicitHashKey`, in order), then commit. Downstream: each shard reads its log from its
//! position ([`DownstreamShard::poll`]), and checkpoints engine, [`DownstreamState`] and position
//! together ([`DownstreamShard::checkpoint`]). A split or merge of the shuffle stream
//! ([`MemoryShuffle::split`], [`MemoryShuffle::merge`]) closes the parents' logs; once a parent's
//! log is read to its end, its children start from the parents' final checkpoints
//! ([`DownstreamShard::adopt`]).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::DeserializeOwned;
use shardflow_engine::state::key_group_of_encoded;
use shardflow_engine::time::DurationMs;
use shardflow_engine::{CheckpointImage, Engine, Pipeline, PipelineError, StateError, Timestamp};
use shardflow_stage::{InputRecord, SequenceNumber};

use crate::downstream::{process_batch, DownstreamReport, DownstreamState, ShuffleShard};
use crate::pack::Packed;
use crate::route::{RouteError, ShardMap, ShardRange};
use crate::watermark::Source;

/// Why an in-memory shuffle operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryShuffleError {
    /// The stream has no such open shard, or it cannot be split (fewer than two key groups).
    #[error("shuffle shard {0:?} cannot be resharded (unknown, closed or too small)")]
    Reshard(String),
    /// The new shard map is not valid.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// An engine could not be checkpointed or restored.
    #[error(transparent)]
    State(#[from] StateError),
    /// The downstream state could not be encoded or decoded.
    #[error("downstream shuffle state: {0}")]
    Codec(#[from] postcard::Error),
    /// A watermark setting is invalid.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// An in-memory shuffle stream: one ordered log per shard (closed parents kept), and the map of
/// the open shards.
#[derive(Debug, Clone)]
pub struct MemoryShuffle {
    map: ShardMap,
    logs: BTreeMap<String, Vec<InputRecord>>,
    next_sequence: u64,
    next_shard: u32,
}

impl MemoryShuffle {
    /// A stream with the open shards of `map`.
    pub fn new(map: ShardMap) -> Self {
        let logs = map.shards().iter().map(|s| (s.shard_id.clone(), Vec::new())).collect();
        let next_shard = map.shards().len() as u32;
        MemoryShuffle {
            map,
            logs,
            next_sequence: 1,
            next_shard,
        }
    }

    /// The open shards.
    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    /// Stores `packed`'s records in order, each on the open shard owning its `ExplicitHashKey`,
    /// arrived at `arrival`. Returns how many landed on another shard than they were packed for
    /// (packed for a stale map: re-pack and re-send the batch).
    pub fn put(&mut self, packed: &Packed, arrival: Timestamp) -> usize {
        let mut moved = 0;
        for record in &packed.records {
            let owner = match record.explicit_hash_key.parse::<u128>() {
                Ok(hash_key) => self.map.owner_of_hash_key(hash_key).shard_id.clone(),
                Err(_) => record.shard_id.clone(),
            };
            moved += usize::from(owner != record.shard_id);
            let sequence = SequenceNumber::parse(&self.next_sequence.to_string());
            self.next_sequence += 1;
            let Ok(sequence) = sequence else { continue };
            self.logs.entry(owner).or_default().push(InputRecord {
                sequence,
                partition_key: record.partition_key.clone(),
                arrival_ms: arrival,
                data: record.data.clone(),
            });
        }
        moved
    }

    /// The records stored on shard `shard_id` (open or closed), in order.
    pub fn records(&self, shard_id: &str) -> &[InputRecord] {
        self.logs.get(shard_id).map_or(&[], Vec::as_slice)
    }

    /// Appends a raw Kinesis record to `shard_id` (a foreign or corrupted writer).
    pub fn put_raw(&mut self, shard_id: &str, data: Vec<u8>, arrival: Timestamp) {
        if let Ok(sequence) = SequenceNumber::parse(&self.next_sequence.to_string()) {
            self.next_sequence += 1;
            self.logs.entry(shard_id.to_owned()).or_default().push(InputRecord {
                sequence,
                partition_key: shard_id.to_owned(),
                arrival_ms: arrival,
                data,
            });
        }
    }

    fn fresh_id(&mut self) -> String {
        self.next_shard += 1;
        format!("shardId-{:012}", self.next_shard - 1)
    }

    /// Splits open shard `shard_id` at its split point ([`ShardMap::split_point`]): whole key
    /// groups, half to each child. Returns the children's ids (lower, upper).
    pub fn split(&mut self, shard_id: &str) -> Result<(String, String), MemoryShuffleError> {
        let refuse = || MemoryShuffleError::Reshard(shard_id.to_owned());
        let at = self.map.split_point(shard_id).ok_or_else(refuse)?;
        let parent = self
            .map
            .shards()
            .iter()
            .find(|s| s.shard_id == shard_id)
            .cloned()
            .ok_or_else(refuse)?;
        let (lower, upper) = (self.fresh_id(), self.fresh_id());
        let children = [
            ShardRange::new(lower.clone(), *parent.hash_key_range.start()..=at - 1),
            ShardRange::new(upper.clone(), at..=*parent.hash_key_range.end()),
        ];
        self.replace(&[shard_id], children)?;
        Ok((lower, upper))
    }

    /// Merges the adjacent open shards `lower` and `upper` (in hash-key order). Returns the
    /// child's id.
    pub fn merge(&mut self, lower: &str, upper: &str) -> Result<String, MemoryShuffleError> {
        let find = |id: &str| self.map.shards().iter().position(|s| s.shard_id == id);
        let (Some(i), Some(j)) = (find(lower), find(upper)) else {
            return Err(MemoryShuffleError::Reshard(format!("{lower}+{upper}")));
        };
        if j != i + 1 {
            return Err(MemoryShuffleError::Reshard(format!("{lower}+{upper}")));
        }
        let range = *self.map.shards()[i].hash_key_range.start()..=*self.map.shards()[j].hash_key_range.end();
        let child = self.fresh_id();
        self.replace(&[lower, upper], [ShardRange::new(child.clone(), range)])?;
        Ok(child)
    }

    fn replace(
        &mut self,
        parents: &[&str],
        children: impl IntoIterator<Item = ShardRange>,
    ) -> Result<(), MemoryShuffleError> {
        let children: Vec<ShardRange> = children.into_iter().collect();
        let shards = self
            .map
            .shards()
            .iter()
            .filter(|s| !parents.contains(&s.shard_id.as_str()))
            .cloned()
            .chain(children.iter().cloned());
        self.map = ShardMap::new(self.map.space(), shards)?;
        for child in children {
            self.logs.entry(child.shard_id).or_default();
        }
        Ok(())
    }
}

/// A downstream shard's checkpoint: its engine's state, its [`DownstreamState`] and its position
/// in its log, taken together.
#[derive(Debug, Clone)]
pub struct DownstreamCheckpoint {
    /// The engine's full state.
    pub image: CheckpointImage,
    /// [`DownstreamState::encode`]'s bytes.
    pub state: Vec<u8>,
    /// Records of the log read.
    pub position: usize,
}

/// One shard of the keyed downstream stage over a [`MemoryShuffle`].
pub struct DownstreamShard<S, Out> {
    shard_id: String,
    engine: Engine<S, Out>,
    state: DownstreamState,
    position: usize,
}

impl<S: DeserializeOwned + Send + 'static, Out: Send + 'static> DownstreamShard<S, Out> {
    /// A new shard `shard_id` owning key groups `owned` of `pipeline` (a split pipeline's
    /// downstream half), consuming `sources`, with `idleness` for silent upstream shards.
    pub fn new(
        pipeline: &Pipeline<S, Out>,
        shard_id: &str,
        owned: Range<u16>,
        sources: impl IntoIterator<Item = Source>,
        idleness: Option<DurationMs>,
    ) -> Result<Self, MemoryShuffleError> {
        Ok(DownstreamShard {
            shard_id: shard_id.to_owned(),
            engine: pipeline.engine(),
            state: DownstreamState::new(owned, sources, idleness)?,
            position: 0,
        })
    }

    /// The shard id.
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// The engine.
    pub fn engine(&self) -> &Engine<S, Out> {
        &self.engine
    }

    /// The engine (drain its results and late records).
    pub fn engine_mut(&mut self) -> &mut Engine<S, Out> {
        &mut self.engine
    }

    /// The dedup marks and upstream watermarks.
    pub fn state(&self) -> &DownstreamState {
        &self.state
    }

    /// Records of its log read so far.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Whether its log is read to the end.
    pub fn caught_up(&self, shuffle: &MemoryShuffle) -> bool {
        self.position >= shuffle.records(&self.shard_id).len()
    }

    /// Reads up to `max` records of its log from its position as one batch of downstream stage
    /// `stage` ([`process_batch`]).
    pub fn poll(&mut self, shuffle: &MemoryShuffle, stage: &str, stream: &str, max: usize) -> DownstreamReport {
        let log = shuffle.records(&self.shard_id);
        let end = log.len().min(self.position.saturating_add(max));
        let batch = log.get(self.position..end).unwrap_or(&[]);
        let shard = ShuffleShard {
            stage,
            stream,
            shard_id: &self.shard_id,
        };
        let report = process_batch(&mut self.engine, &mut self.state, shard, batch);
        self.position = end.max(self.position);
        report
    }

    /// A checkpoint of engine, state and position.
    pub fn checkpoint(&mut self) -> Result<DownstreamCheckpoint, MemoryShuffleError> {
        Ok(DownstreamCheckpoint {
            image: CheckpointImage::new(self.engine.snapshot_full()?),
            state: self.state.encode()?,
            position: self.position,
        })
    }

    /// The shard as of `checkpoint` (a restart after a crash).
    pub fn restore(
        pipeline: &Pipeline<S, Out>,
        shard_id: &str,
        checkpoint: &DownstreamCheckpoint,
    ) -> Result<Self, MemoryShuffleError> {
        Ok(DownstreamShard {
            shard_id: shard_id.to_owned(),
            engine: Engine::restore(pipeline, &checkpoint.image)?,
            state: DownstreamState::decode(&checkpoint.state)?,
            position: checkpoint.position,
        })
    }

    /// Child shard `shard_id`, owning `owned`, of closed parents whose final checkpoints are
    /// `parents`: their keyed state of its key groups, their marks and upstream watermarks.
    pub fn adopt(
        pipeline: &Pipeline<S, Out>,
        shard_id: &str,
        owned: Range<u16>,
        parents: &[DownstreamCheckpoint],
        idleness: Option<DurationMs>,
    ) -> Result<Self, MemoryShuffleError> {
        let max_key_groups = pipeline.max_key_groups();
        let images: Vec<CheckpointImage> = parents.iter().map(|p| p.image.clone()).collect();
        let keep = |key: &[u8]| owned.contains(&key_group_of_encoded(key, max_key_groups));
        let engine = Engine::adopt(pipeline, &images, &keep)?;
        let states = parents
            .iter()
            .map(|p| DownstreamState::decode(&p.state))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DownstreamShard {
            shard_id: shard_id.to_owned(),
            engine,
            state: DownstreamState::adopt(&states, owned, idleness)?,
            position: 0,
        })
    }
}
