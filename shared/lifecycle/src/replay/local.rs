//! A local replay: the archive of a stream (written by the `archive` stage) as a bounded stream
//! through the same pipeline code, and the same per-batch code path, as the live stages.
//!
//! Each archived shard runs in its own engine, as it does in its Lambda stage: its records, in
//! sequence order and with their archived arrival times, go through
//! [`shardflow_stage::process_batch`] — the decoder, the engine partition named after the
//! stream and shard, dead letters for undecodable and late records — so results carry the same
//! deterministic ids as the live stage's. At the end of each shard the input ends (Beam's bounded
//! semantics): the watermark goes to the end of time and every window fires, which the live
//! stage does only when later data moves its watermark. A replay is therefore the live stream's
//! results for every window the live stage closed, plus the windows still open at the archive's
//! end.
//!
//! Processing-time early panes depend on when records arrived, which the archive keeps, and on
//! how batches fell, which it does not; their number can differ from the live stage's. Every
//! on-time, late and element-count pane, and every window's final value, is the same.
//!
//! The archive does not keep the stream's shard lineage: after a reshard of the live stream,
//! each child shard replays on an engine of its own rather than one that adopted its parents'
//! state, so a window a key had open across the split or merge can differ from the live one.

use shardflow_archive::ArchivedRecord;
use shardflow_engine::{Output, Pipeline};
use shardflow_stage::{process_batch, DeadLetter, InputRecord, RecordDecoder, SequenceNumber, ShardBatch};
use thiserror::Error;

/// Why a replay stopped.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// An archived record's sequence number is not one.
    #[error("shard {shard}: archived sequence number {sequence:?} is invalid: {reason}")]
    Sequence {
        /// The shard.
        shard: String,
        /// The value found.
        sequence: String,
        /// Why it is invalid.
        reason: String,
    },
    /// User code panicked on a record (the live stage would retry it, then dead-letter it as
    /// poison; a replay stops so that the cause can be fixed first).
    #[error("shard {shard}: user code failed on sequence number {sequence}: {message}")]
    UserCode {
        /// The shard.
        shard: String,
        /// The record.
        sequence: String,
        /// The panic's message.
        message: String,
    },
}

/// What a replay of one pipeline produced.
#[derive(Debug)]
pub struct ReplayOutcome<Out> {
    /// Every result, shard after shard, in the order the engines produced them.
    pub outputs: Vec<Output<Out>>,
    /// Undecodable and late records.
    pub dead_letters: Vec<DeadLetter>,
    /// Records read from the archive.
    pub records: usize,
}

/// Replays `records` (ordered by stream, shard and sequence number, as
/// [`ArchiveReader::read_stream`] returns them) through `pipeline` as stage `stage` would, in
/// batches of `batch_size` records.
pub fn replay<In: Send + 'static, Out: Send + 'static>(
    pipeline: &Pipeline<In, Out>,
    decoder: &dyn RecordDecoder<In>,
    stage: &str,
    records: &[ArchivedRecord],
    batch_size: usize,
) -> Result<ReplayOutcome<Out>, ReplayError> {
    let mut outcome = ReplayOutcome {
        outputs: Vec::new(),
        dead_letters: Vec::new(),
        records: records.len(),
    };
    for shard in records.chunk_by(|a, b| a.stream == b.stream && a.shard_id == b.shard_id) {
        let mut engine = pipeline.engine();
        for chunk in shard.chunks(batch_size.max(1)) {
            let batch = shard_batch(chunk)?;
            let done = process_batch(&mut engine, stage, &batch, decoder, None, None);
            if let Some((at, message)) = done.panicked_at {
                return Err(ReplayError::UserCode {
                    shard: batch.shard_id.clone(),
                    sequence: batch.records[at].sequence.to_string(),
                    message,
                });
            }
            outcome.outputs.extend(done.outputs);
            outcome.dead_letters.extend(done.dead_letters);
        }
        engine.finish();
        outcome.outputs.extend(engine.drain_output());
    }
    Ok(outcome)
}

/// The batch of archived records of one shard.
fn shard_batch(records: &[ArchivedRecord]) -> Result<ShardBatch, ReplayError> {
    let first = &records[0];
    let records = records
        .iter()
        .map(|r| {
            let sequence = SequenceNumber::parse(&r.sequence_number).map_err(|e| ReplayError::Sequence {
                shard: r.shard_id.clone(),
                sequence: r.sequence_number.clone(),
                reason: e.to_string(),
            })?;
            Ok(InputRecord {
                sequence,
                partition_key: r.partition_key.clone(),
                arrival_ms: r.arrival_ms,
                data: r.data.clone(),
            })
        })
        .collect::<Result<Vec<_>, ReplayError>>()?;
    Ok(ShardBatch {
        stream: first.stream.clone(),
        shard_id: first.shard_id.clone(),
        records,
    })
}

/// Every shard's archived records as one batch per shard.
pub fn shard_batches(records: &[ArchivedRecord]) -> Result<Vec<ShardBatch>, ReplayError> {
    records
        .chunk_by(|a, b| a.stream == b.stream && a.shard_id == b.shard_id)
        .map(shard_batch)
        .collect()
}
