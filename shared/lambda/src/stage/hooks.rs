//! Narrow hooks into the stage's checkpoint machinery for the shuffle stages
//! ([`crate::shuffle`]): open a shard at its committed state (warm or loaded, without adoption),
//! find the committed checkpoints of its ancestors, commit at a position, keep it warm.

use super::*;

/// A shard at its committed state, before any adoption: the store (which also holds the committed
/// shuffle state), the position and the engine (`None` if the shard never committed).
pub(crate) struct CommittedShard<In, Out> {
    pub(crate) store: DynamoDbCheckpointStore,
    pub(crate) position: ShardPosition,
    pub(crate) engine: Option<Engine<In, Out>>,
    pub(crate) state_bytes: usize,
}

/// The committed checkpoint of an ancestor of a new shard.
pub(crate) struct Ancestor {
    /// Its engine state.
    pub(crate) image: CheckpointImage,
    /// Its opaque shuffle state, if it had one.
    pub(crate) shuffle_state: Option<Vec<u8>>,
    /// Its hash-key range, if the lineage knows it.
    pub(crate) range: Option<std::ops::RangeInclusive<u128>>,
}

impl<In, Out, D, S, L> Stage<In, Out, D, S, L>
where
    In: Send + 'static,
    Out: Send + 'static,
    D: RecordDecoder<In>,
    S: ResultSink<Out>,
    L: DeadLetterSink,
{
    /// The shard's committed state: this container's warm engine when the checkpoint item still
    /// holds the version it committed, loaded from the store otherwise. Adopts nothing.
    pub(crate) async fn open_committed(&self, shard: &str) -> Result<CommittedShard<In, Out>, StageError> {
        if let Some(warm) = self.warm.take(shard) {
            if warm.store.is_current().await? {
                return Ok(CommittedShard {
                    store: warm.store,
                    position: warm.position,
                    engine: Some(warm.engine),
                    state_bytes: warm.state_bytes,
                });
            }
            tracing::info!(stage = %self.name, shard, "another invocation committed since: reloading");
        }
        let mut store = self.store(shard);
        let committed = StateStore::load(&mut store).await?;
        let Some(committed) = committed else {
            return Ok(CommittedShard {
                store,
                position: ShardPosition::default(),
                engine: None,
                state_bytes: 0,
            });
        };
        Ok(CommittedShard {
            engine: Some(Engine::restore(&self.pipeline, &committed.image)?),
            state_bytes: committed.image.size_hint(),
            position: committed.position,
            store,
        })
    }

    /// The committed checkpoints of the nearest committed ancestors of `info` (through empty
    /// ancestors, up to [`MAX_ANCESTRY`] generations). Lambda processes a parent to its end
    /// before its children, so they are final.
    pub(crate) async fn committed_ancestors(&self, info: &ShardInfo) -> Result<Vec<Ancestor>, StageError> {
        let mut found = Vec::new();
        let mut pending: Vec<(String, usize)> = info.parents.iter().map(|p| (p.clone(), 1)).collect();
        while let Some((ancestor, depth)) = pending.pop() {
            let parent = self.lineage.shard(&ancestor).await?;
            let mut store = self.store(&ancestor);
            let loaded = StateStore::load(&mut store).await?;
            match (loaded.map(|c| c.image), parent) {
                (Some(image), parent) => found.push(Ancestor {
                    image,
                    shuffle_state: store.shuffle_state().map(<[u8]>::to_vec),
                    range: parent.map(|p| p.hash_key_range),
                }),
                // An ancestor that never committed: its state, if any, is still with its parents.
                (None, Some(p)) if depth < MAX_ANCESTRY => {
                    pending.extend(p.parents.into_iter().map(|g| (g, depth + 1)));
                }
                (None, _) => {}
            }
        }
        Ok(found)
    }

    /// The lineage of the stage's input stream.
    pub(crate) fn shard_lineage(&self) -> &dyn ShardLineage {
        self.lineage.as_ref()
    }

    /// The stage's pipeline.
    pub(crate) fn pipeline(&self) -> &Pipeline<In, Out> {
        &self.pipeline
    }

    /// The stage's record decoder.
    pub(crate) fn decoder(&self) -> &D {
        &self.decoder
    }

    /// Dies at `point` if the test hook says so.
    pub(crate) fn crash_point(&self, point: CrashPoint) -> Result<(), StageError> {
        self.crash_at(point)
    }

    /// Emits results and dead letters (idempotent sinks).
    pub(crate) async fn emit_outcome(&self, outcome: &BatchOutcome<Out>) -> Result<(), SinkError> {
        self.emit(outcome).await
    }

    /// Commits `open`'s engine state (full when `full`) at `open`'s position, with the shuffle
    /// state its store holds, prints the batch's metrics and keeps the shard warm.
    pub(crate) async fn commit_and_keep_warm(
        &self,
        batch: &ShardBatch,
        open: CommittedShard<In, Out>,
        full: bool,
        outcome: &BatchOutcome<Out>,
    ) -> Result<(), StageError> {
        let CommittedShard {
            mut store,
            position,
            engine,
            state_bytes,
        } = open;
        let Some(mut engine) = engine else {
            return Err(StageError::Unsupported("a commit without an engine".into()));
        };
        let checkpoint = if full {
            engine.snapshot_full()?
        } else {
            engine.snapshot()?
        };
        let started = Instant::now();
        let stats = StateStore::commit(&mut store, &checkpoint, &position).await?;
        let commit_ms = started.elapsed().as_millis() as u64;
        self.crash_at(CrashPoint::AfterCommit)?;
        self.print_metrics(batch, outcome, &engine, stats, commit_ms, GapCounts::default());
        self.keep_warm(
            &batch.shard_id,
            CommittedShard {
                store,
                position,
                engine: Some(engine),
                state_bytes: state_bytes.max(stats.bytes_written),
            },
        );
        Ok(())
    }

    /// Warns, once per stage built, that the configured checkpoint interval is not honoured: the
    /// stages of a shuffle commit every batch (see `crate::shuffle`, "Not (yet) supported").
    pub(crate) fn warn_interval_not_honoured(&self) {
        if !self.config.checkpoint_interval.every_batch() {
            tracing::warn!(stage = %self.name, interval = ?self.config.checkpoint_interval,
                "a shuffle stage commits every batch: the checkpoint interval is not honoured");
        }
    }

    /// Keeps `open` (at a committed state) warm for the shard's next batch.
    pub(crate) fn keep_warm(&self, shard: &str, open: CommittedShard<In, Out>) {
        if let Some(engine) = open.engine {
            self.warm.put(
                shard,
                WarmShard {
                    engine,
                    store: open.store,
                    position: open.position,
                    state_bytes: open.state_bytes,
                },
            );
        }
    }
}
