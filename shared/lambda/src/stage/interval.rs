//! A batch's way through the stage (see the crate documentation, "Interval commits"; one batch
//! is the shortest interval, not another path): it opens its shard at the last handled record —
//! warm, or from the checkpoint plus the gap read from Kinesis — and either commits or moves the
//! shard's progress item.

use super::*;

/// The records read back from Kinesis before a batch, processed.
struct Gap<Out> {
    /// Their outcome (results to emit again).
    outcome: BatchOutcome<Out>,
    /// The `GetRecords` calls the read took.
    get_records_calls: u64,
}

impl<Out> Gap<Out> {
    /// What the batch's EMF line says of this gap.
    fn counts(gap: Option<&Self>) -> GapCounts {
        gap.map_or_else(GapCounts::default, |g| GapCounts {
            records: g.outcome.records_in as u64,
            get_records_calls: g.get_records_calls,
        })
    }
}

/// A shard opened under interval commits: its engine at the last handled record.
struct IntervalShard<In, Out> {
    open: OpenShard<In, Out>,
    /// The gap read from Kinesis (its results emitted again), if there was one.
    gap: Option<Gap<Out>>,
    /// The progress item's sequence number as read (its next write is conditioned on it).
    progress_read: Option<SequenceNumber>,
    /// Batches since the last commit.
    batches_since_commit: u64,
    /// When the current interval started (epoch ms).
    interval_started_ms: u64,
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<In, Out, D, S, L> Stage<In, Out, D, S, L>
where
    In: Send + 'static,
    Out: Send + 'static,
    D: RecordDecoder<In>,
    S: ResultSink<Out>,
    L: DeadLetterSink,
{
    /// Handles one batch (see the crate documentation, "Interval commits"): open the shard at the
    /// last handled record (closing a gap from Kinesis), process, emit, and then either commit
    /// (interval due, a failure recorded, nothing committed yet, adopted state) or write the
    /// progress item and keep the engine warm.
    pub(super) async fn handle_batch(&self, batch: ShardBatch) -> Result<KinesisEventResponse, StageError> {
        let opened = self.open_interval(&batch.shard_id, &batch.stream).await?;
        self.crash_at(CrashPoint::AfterLoad)?;
        let IntervalShard {
            open:
                OpenShard {
                    mut store,
                    position,
                    start,
                    mut engine,
                    state_bytes,
                },
            gap,
            progress_read,
            batches_since_commit,
            interval_started_ms,
        } = opened;
        let gap_counts = Gap::counts(gap.as_ref());
        let outcome = self.process(&mut engine, &batch, &position);
        if let Some((at, message)) = outcome.panicked_at.clone() {
            // The engine saw part of the batch: start again from the committed state and the gap.
            drop(engine);
            let shard = self.open_cold(&batch.shard_id, &batch.stream).await?;
            if let Some(gap) = &shard.gap {
                self.emit(&gap.outcome).await?;
            }
            let open = shard.open;
            return self
                .handle_failure(
                    open.store,
                    &open.position,
                    open.engine,
                    open.start.adopted,
                    &batch,
                    at,
                    message,
                )
                .await;
        }
        if let Some(gap) = &gap {
            self.emit(&gap.outcome).await?;
        }
        if outcome.skipped_duplicates == outcome.records_in {
            tracing::info!(stage = %self.name, shard = %batch.shard_id, "batch already handled");
            self.print_metrics(&batch, &outcome, &engine, Default::default(), 0, gap_counts);
            self.warm.put(
                &batch.shard_id,
                WarmShard {
                    engine,
                    store,
                    position,
                    state_bytes,
                },
            );
            return Ok(batch_response(None));
        }
        self.emit(&outcome).await?;
        self.crash_at(CrashPoint::AfterEmit)?;
        let now = epoch_ms();
        let base_version = store.committed_version().unwrap_or(0);
        let last = outcome.last_sequence.clone();
        let interval = self.config.checkpoint_interval;
        // Measured only under a bytes bound (it costs a counting pass over the changed groups).
        let dirty_bytes = if interval.bytes.is_some() {
            engine.dirty_bytes() as u64
        } else {
            0
        };
        let due = start.adopted
            || base_version == 0
            || position.failure.is_some()
            || interval.due(
                batches_since_commit,
                now.saturating_sub(interval_started_ms),
                dirty_bytes,
            );
        let Some(last) = last.filter(|_| !due) else {
            let (done, stats, commit_ms) = self
                .commit_batch(&mut store, &mut engine, start.adopted, &outcome)
                .await?;
            // The progress item is written after the flip, not in its transaction, conditioned on
            // the sequence number read at open. Safe either way it goes: if the write is lost (a
            // crash here) or loses its condition (another container advanced the progress item
            // since, e.g. this is a zombie's commit), the progress item is either at or before the
            // new checkpoint's position — nothing to read — or beyond it, and then the next
            // container reads that gap from Kinesis. It only ever moves forward, so no handled
            // record is hidden behind it. Keeping it out of the transaction leaves the commit's
            // transactions (and their 100-action limit) as they are. At one batch it is not moved
            // at all (a write per batch saved): it is at or behind the new checkpoint already, as
            // the open closed any gap up to it, and a progress item at or behind the checkpoint
            // is ignored.
            let sequence_number = done.sequence_number.clone().filter(|_| !interval.every_batch());
            if let Some(sequence_number) = sequence_number {
                let progress = ShardProgress {
                    sequence_number,
                    container: self.container_id.clone(),
                    version: store.committed_version().unwrap_or(0),
                    batches_since_commit: 0,
                    interval_started_ms: now,
                };
                if let Err(e) = store.write_progress(&progress, progress_read.as_ref()).await {
                    tracing::info!(stage = %self.name, shard = %batch.shard_id, error = %e,
                        "progress item not moved to the commit (it stays behind or beyond it)");
                }
            }
            self.print_metrics(&batch, &outcome, &engine, stats, commit_ms, gap_counts);
            self.warm.put(
                &batch.shard_id,
                WarmShard {
                    engine,
                    store,
                    position: done,
                    state_bytes: state_bytes.max(stats.bytes_written),
                },
            );
            return Ok(batch_response(None));
        };
        let progress = ShardProgress {
            sequence_number: last.clone(),
            container: self.container_id.clone(),
            version: base_version,
            batches_since_commit: batches_since_commit + 1,
            interval_started_ms,
        };
        store.write_progress(&progress, progress_read.as_ref()).await?;
        self.crash_at(CrashPoint::AfterProgress)?;
        self.print_metrics(&batch, &outcome, &engine, Default::default(), 0, gap_counts);
        self.warm.put(
            &batch.shard_id,
            WarmShard {
                engine,
                store,
                position: ShardPosition {
                    sequence_number: Some(last),
                    failure: position.failure,
                },
                state_bytes,
            },
        );
        Ok(batch_response(None))
    }

    /// The shard's engine at the last record any container handled: this container's warm
    /// engine when the progress item names it, its position and its checkpoint version; else the
    /// checkpoint (warm when it is this container's and its engine is at it, loaded otherwise)
    /// and the gap up to the progress item read from Kinesis and processed.
    async fn open_interval(&self, shard: &str, stream: &str) -> Result<IntervalShard<In, Out>, StageError> {
        let Some(warm) = self.warm.take(shard) else {
            return self.open_cold(shard, stream).await;
        };
        let probe = warm.store.probe().await?;
        if warm.store.is_current_in(&probe) {
            let progress = ahead_of_checkpoint(&probe);
            let mine = progress.as_ref().is_some_and(|p| {
                p.container == self.container_id
                    && Some(&p.sequence_number) == warm.position.sequence_number.as_ref()
                    && Some(p.version) == warm.store.committed_version()
            });
            let at_checkpoint = warm.position.sequence_number == probe.sequence_number;
            if mine || at_checkpoint {
                let (batches_since_commit, interval_started_ms) = interval_of(progress.as_ref());
                let mut open = OpenShard {
                    store: warm.store,
                    position: warm.position,
                    start: Start {
                        image: None,
                        adopted: false,
                    },
                    engine: warm.engine,
                    state_bytes: warm.state_bytes,
                };
                let gap = match progress.filter(|_| !mine) {
                    Some(p) => Some(self.close_gap(&mut open, stream, shard, &p.sequence_number).await?),
                    None => None,
                };
                return Ok(IntervalShard {
                    open,
                    gap,
                    progress_read: probe.progress.map(|p| p.sequence_number),
                    batches_since_commit,
                    interval_started_ms,
                });
            }
        }
        tracing::info!(stage = %self.name, shard, "another container handled or committed since: reloading");
        self.open_cold(shard, stream).await
    }

    /// The shard from its checkpoint in the store, then the gap up to the progress item.
    async fn open_cold(&self, shard: &str, stream: &str) -> Result<IntervalShard<In, Out>, StageError> {
        let probe = self.store(shard).probe().await?;
        let mut open = self.load_shard(shard).await?;
        // The checkpoint loaded may be newer than the one probed: the gap starts at the loaded one.
        let progress = probe.progress.as_ref().filter(|p| {
            open.position
                .sequence_number
                .as_ref()
                .is_some_and(|c| p.sequence_number > *c)
        });
        let (batches_since_commit, interval_started_ms) = interval_of(progress);
        let gap = match progress {
            Some(p) => Some(self.close_gap(&mut open, stream, shard, &p.sequence_number).await?),
            None => None,
        };
        Ok(IntervalShard {
            open,
            gap,
            progress_read: probe.progress.map(|p| p.sequence_number),
            batches_since_commit,
            interval_started_ms,
        })
    }

    /// Reads the records after the open position up to `until` from Kinesis and processes them
    /// ([`process_batch`], as any batch), moving the position to `until`. Returns their outcome,
    /// whose results the caller emits again (the sinks absorb them by id), and the calls it took.
    async fn close_gap(
        &self,
        open: &mut OpenShard<In, Out>,
        stream: &str,
        shard: &str,
        until: &SequenceNumber,
    ) -> Result<Gap<Out>, StageError> {
        let Some(after) = open.position.sequence_number.clone() else {
            return Err(GapError {
                stream: stream.to_owned(),
                shard: shard.to_owned(),
                after: "(nothing committed)".into(),
                until: until.to_string(),
                reason: "a progress item without a checkpoint".into(),
            }
            .into());
        };
        let kinesis = self
            .kinesis
            .as_ref()
            .ok_or_else(|| StageError::NoKinesisClient(shard.to_owned()))?;
        let read = read_gap(kinesis, stream, shard, &after, until).await?;
        tracing::info!(stage = %self.name, shard, after = %after, until = %until, records = read.batch.records.len(),
            get_records_calls = read.get_records_calls, "read the records handled after the checkpoint from Kinesis");
        let outcome = self.process(&mut open.engine, &read.batch, &open.position);
        if let Some((at, message)) = &outcome.panicked_at {
            return Err(GapError {
                stream: stream.to_owned(),
                shard: shard.to_owned(),
                after: after.to_string(),
                until: until.to_string(),
                reason: format!("user code failed on gap record {at}: {message}"),
            }
            .into());
        }
        open.position.sequence_number = Some(until.clone());
        Ok(Gap {
            outcome,
            get_records_calls: read.get_records_calls,
        })
    }

    /// [`Stage::end_of_input`]: the shard opens at its last handled record (records handled since
    /// the checkpoint are read from Kinesis), and the final state commits at that position.
    pub(super) async fn end_of_input_at_last_record(
        &self,
        end: &EndOfInput,
    ) -> Result<KinesisEventResponse, StageError> {
        let IntervalShard { open, gap, .. } = self.open_interval(&end.shard_id, &end.stream).await?;
        self.warm.take(&end.shard_id);
        let OpenShard {
            store,
            position,
            start,
            engine,
            ..
        } = open;
        if store.committed_version().unwrap_or(0) == 0 && !start.adopted {
            tracing::info!(stage = %self.name, shard = %end.shard_id, "end of input of a shard without state");
            return Ok(batch_response(None));
        }
        if let Some(gap) = &gap {
            self.emit(&gap.outcome).await?;
        }
        self.finish_input(end, store, engine, start.adopted, &position).await
    }
}

/// The probe's progress item if it is beyond the checkpoint's position (records were handled
/// after the commit), `None` otherwise.
fn ahead_of_checkpoint(probe: &ShardProbe) -> Option<ShardProgress> {
    probe
        .progress
        .clone()
        .filter(|p| probe.sequence_number.as_ref().is_some_and(|c| p.sequence_number > *c))
}

/// Batches since the last commit and the interval's start, from a progress item beyond the
/// checkpoint (none: a fresh interval starting now).
fn interval_of(progress: Option<&ShardProgress>) -> (u64, u64) {
    progress.map_or((0, epoch_ms()), |p| (p.batches_since_commit, p.interval_started_ms))
}
