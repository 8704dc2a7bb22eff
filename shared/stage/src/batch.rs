//! Driving the engine over one shard batch.
//!
//! For every record in sequence order: a record at or below the last committed sequence number
//! is a redelivery and is skipped (its effects are already committed); a record that does not
//! decode becomes a dead letter and the batch goes on; every other record is processed by the
//! engine. Records the engine refuses as later than the allowed lateness come back as dead
//! letters of kind `late`, with their raw bytes, so that nothing is silently dropped.
//!
//! User code runs inside the engine. If it panics on a record, processing stops there and the
//! outcome says so ([`BatchOutcome::panicked_at`]): the engine may be half-way through that record
//! and must be discarded. The stage then commits the records before it and reports the panicking
//! record as the batch item failure; after a bounded number of attempts the record is passed as
//! `poison` (dead-lettered instead of processed) so that it can never block its shard.

use std::panic::{catch_unwind, AssertUnwindSafe};

use std::collections::HashMap;

use shardflow_engine::{ClosedBucket, Engine, Output};

use crate::dead_letter::{DeadLetter, DeadLetterKind};
use crate::decode::RecordDecoder;
use crate::sequence::SequenceNumber;
use crate::shard_batch::ShardBatch;

/// What processing one batch produced.
#[derive(Debug)]
pub struct BatchOutcome<Out> {
    /// Results to emit (idempotently, by id) before the checkpoint is committed.
    pub outputs: Vec<Output<Out>>,
    /// Event-time buckets the batch closed (pipelines ending with `sink_with_buckets` only),
    /// emitted with the results ([`crate::ResultSink::emit_buckets`]).
    pub buckets: Vec<ClosedBucket<Out>>,
    /// Undecodable and late records, with reasons.
    pub dead_letters: Vec<DeadLetter>,
    /// Records in the batch.
    pub records_in: usize,
    /// Records skipped as already committed (redelivery).
    pub skipped_duplicates: usize,
    /// Values the pipeline's `deduplicate` steps dropped as repeats of an id already seen — e.g.
    /// results an upstream stage's Kinesis sink wrote twice (the engine's
    /// `EngineMetrics::duplicates_dropped` over this batch).
    pub duplicates_dropped: usize,
    /// Records the engine processed.
    pub processed: usize,
    /// Records that failed to decode.
    pub undecodable: usize,
    /// Records refused as too late.
    pub late: usize,
    /// The position to commit: the last sequence number handled (all of the batch, or the records
    /// before the one that panicked).
    pub last_sequence: Option<SequenceNumber>,
    /// Index of the record whose processing panicked (processing stopped there; the engine must
    /// be discarded), with the panic message.
    pub panicked_at: Option<(usize, String)>,
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// The engine partition name of a shard of a stream.
pub fn partition_name(stream: &str, shard_id: &str) -> String {
    format!("{stream}/{shard_id}")
}

/// Processes `batch` with `engine` (see the module documentation). `committed` is the last
/// sequence number of this shard whose effects are committed.
/// `poison` names a record that already failed too often: it is dead-lettered, not processed.
pub fn process_batch<In: Send + 'static, Out: Send + 'static>(
    engine: &mut Engine<In, Out>,
    stage: &str,
    batch: &ShardBatch,
    decoder: &dyn RecordDecoder<In>,
    committed: Option<&SequenceNumber>,
    poison: Option<(&SequenceNumber, &str)>,
) -> BatchOutcome<Out> {
    let partition = engine.partition(&partition_name(&batch.stream, &batch.shard_id));
    let dropped_before = engine.metrics().duplicates_dropped;
    let dropped_since = |engine: &Engine<In, Out>| {
        usize::try_from(engine.metrics().duplicates_dropped.saturating_sub(dropped_before)).unwrap_or(usize::MAX)
    };
    let mut outcome = BatchOutcome {
        outputs: Vec::new(),
        buckets: Vec::new(),
        dead_letters: Vec::new(),
        records_in: batch.records.len(),
        skipped_duplicates: 0,
        duplicates_dropped: 0,
        processed: 0,
        undecodable: 0,
        late: 0,
        last_sequence: batch.last_sequence().cloned(),
        panicked_at: None,
    };
    let mut by_offset: HashMap<u64, usize> = HashMap::with_capacity(batch.records.len());
    for (i, record) in batch.records.iter().enumerate() {
        if committed.is_some_and(|c| &record.sequence <= c) {
            outcome.skipped_duplicates += 1;
            continue;
        }
        if let Some((_, reason)) = poison.filter(|(seq, _)| *seq == &record.sequence) {
            outcome.dead_letters.push(DeadLetter::new(
                DeadLetterKind::Poison,
                stage,
                &batch.stream,
                &batch.shard_id,
                record,
                reason.to_owned(),
            ));
            continue;
        }
        match decoder.decode_record(batch, record) {
            Ok(value) => {
                let offset = record.sequence.digest();
                by_offset.insert(offset, i);
                let step = catch_unwind(AssertUnwindSafe(|| {
                    engine.process(partition, offset, record.arrival_ms, value);
                }));
                if let Err(panic) = step {
                    outcome.panicked_at = Some((i, panic_message(panic.as_ref())));
                    outcome.last_sequence = i.checked_sub(1).map(|p| batch.records[p].sequence.clone());
                    outcome.duplicates_dropped = dropped_since(engine);
                    return outcome;
                }
                outcome.processed += 1;
            }
            Err(e) => {
                outcome.undecodable += 1;
                outcome.dead_letters.push(DeadLetter::new(
                    DeadLetterKind::Undecodable,
                    stage,
                    &batch.stream,
                    &batch.shard_id,
                    record,
                    e.to_string(),
                ));
            }
        }
    }
    for late in engine.drain_late() {
        outcome.late += 1;
        let record = late
            .offset
            .filter(|_| late.partition == Some(partition))
            .and_then(|o| by_offset.get(&o))
            .and_then(|&i| batch.records.get(i));
        let reason = DeadLetter::late_reason(&late);
        if let Some(record) = record {
            outcome.dead_letters.push(DeadLetter::new(
                DeadLetterKind::Late,
                stage,
                &batch.stream,
                &batch.shard_id,
                record,
                reason,
            ));
        } else {
            // A late value derived from a window result (not from one input record): report it
            // with no payload rather than lose the count.
            tracing::warn!(stage, %reason, "late record without a source record");
        }
    }
    outcome.outputs = engine.drain_output();
    outcome.buckets = engine.drain_buckets();
    outcome.duplicates_dropped = dropped_since(engine);
    outcome
}
