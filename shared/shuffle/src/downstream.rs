//! The downstream half of a shuffle, one batch at a time: Kinesis records of one shuffle shard
//! in, frames parsed, repeats dropped, watermarks combined, values fed to the keyed engine.
//!
//! # Protocol (per batch of one shuffle shard)
//! For each Kinesis record, in order, each shuffled record of its frame, in order:
//! - a [`WatermarkRecord`] retires the parents it names ([`DedupState::retire_parents`]), raises
//!   its upstream partition ([`ShuffleWatermark::observe`]; the engine registers the partition
//!   when it is first heard of), and the engine's watermark follows the combined one. One from an
//!   unknown source is logged and ignored.
//! - a [`DataRecord`] is judged by [`DedupState::check`]; a new one raises its upstream
//!   partition's watermark to the record's `wm_before` ([`ShuffleWatermark::observe_data`]), the
//!   engine's watermark follows, and then its value is processed
//!   ([`Engine::process_from`]) with the event time and provenance it carries. Data of a retired
//!   upstream shard (a replay from before it ended or split) is dropped.
//! - A Kinesis record that is not a frame, or a shuffled record or value that does not decode,
//!   becomes a [`DeadLetter`] with its bytes and the reason; the rest of the batch goes on.
//! - A value the engine refuses as later than its allowed lateness goes to the engine's late
//!   side output, as in the single engine; [`late_dead_letters`] turns those of a batch into
//!   dead letters of kind `late` holding the shuffled records that carried them, as the
//!   single-engine stage does with its input records.
//!
//! The caller then emits the engine's results and commits the engine state and the
//! [`DownstreamState`] together with the shard position (one checkpoint).
//!
//! # Why the watermark is exact
//! Let upstream batches be handled one at a time in a global order (each is one partition's), and
//! compare with one engine fed the same batches in the same order. Between registrations of
//! partitions the minimum `m` over the registered partitions' watermarks only rises (each
//! partition's does), and a registration can only lower it; the single engine's watermark at a
//! record `r` is the largest `m` seen before `r`: `max(m(r⁻), m(g⁻) for every registration g
//! before r)`, where `x⁻` is the point just before `x`. The downstream shard sees:
//! - at each registration `g`, the partition's first watermark record, which follows the end of
//!   the previous batch, whose watermark record (sent when the watermark advanced during it)
//!   brought every other partition to its value at `g⁻`, and so computes `m(g⁻)`;
//! - at its data record `r` of a batch of partition `p`, `p`'s watermark just before `r`
//!   (`wm_before`), and every other partition at the end of its last batch, which is its value at
//!   `r⁻` (only `p` moves during `p`'s batch): so it computes `m(r⁻)`.
//!
//! It never sees a value above the single engine's (every value it sees is `m` at some earlier
//! point), and it takes the maximum, as the single engine does: its watermark at `r` is the single
//! engine's. A record is processed under it before its own timestamp can raise anything, as in
//! [`Engine::process`]. So windows fire, lateness is judged and late records are routed as in
//! the single engine (at fewer intermediate watermark steps, which does not change what fires).
//! Redeliveries do not break this: a repeated data record is dropped before it touches the
//! watermark, and a repeated watermark record carries a value already reached. Not covered:
//! idleness (it runs on each stage's own processing time, a liveness fallback for silent upstream
//! shards) and processing-time triggers (the downstream's arrival times are the shuffle's).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shardflow_engine::time::DurationMs;
use std::collections::HashMap;

use shardflow_engine::{Engine, LateRecord, PipelineError, Timestamp};
use shardflow_stage::{DeadLetter, DeadLetterKind, InputRecord};

use crate::dedup::{DedupState, Verdict};
use crate::frame::Frame;
use crate::record::{DataRecord, ShuffleRecord, WatermarkRecord};
use crate::watermark::{Ignored, ShuffleWatermark, Source, WatermarkUpdate};

/// What a downstream shard keeps in its checkpoint beside its engine's state: its dedup marks and
/// its upstream partitions' watermarks. Encoded with postcard ([`DownstreamState::encode`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownstreamState {
    /// Per upstream shard high-water marks.
    pub dedup: DedupState,
    /// Per upstream shard watermarks, combined.
    pub watermark: ShuffleWatermark,
}

impl DownstreamState {
    /// The state of a new shuffle shard owning key groups `owned`, consuming `sources`, with
    /// `idleness` (ms of processing time, `None` for never) for silent upstream shards.
    pub fn new(
        owned: std::ops::Range<u16>,
        sources: impl IntoIterator<Item = Source>,
        idleness: Option<DurationMs>,
    ) -> Result<Self, PipelineError> {
        Ok(DownstreamState {
            dedup: DedupState::new(owned),
            watermark: ShuffleWatermark::new(sources, idleness)?,
        })
    }

    /// The state of a shuffle shard owning `owned` that was split or merged from `parents`
    /// (their final states): their marks on its groups, their upstream partitions and the larger
    /// watermark.
    pub fn adopt<'p>(
        parents: impl IntoIterator<Item = &'p DownstreamState> + Clone,
        owned: std::ops::Range<u16>,
        idleness: Option<DurationMs>,
    ) -> Result<Self, PipelineError> {
        let dedup = DedupState::adopt(parents.clone().into_iter().map(|p| &p.dedup), owned);
        let mut watermark = ShuffleWatermark::new([], idleness)?;
        for parent in parents {
            watermark.adopt(&parent.watermark);
        }
        Ok(DownstreamState { dedup, watermark })
    }

    /// The postcard encoding stored in the checkpoint.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }

    /// Reads [`DownstreamState::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The downstream stage and the shuffle shard it reads (what its dead letters name).
#[derive(Debug, Clone, Copy)]
pub struct ShuffleShard<'a> {
    /// The downstream stage's name.
    pub stage: &'a str,
    /// The shuffle stream.
    pub stream: &'a str,
    /// The shuffle shard.
    pub shard_id: &'a str,
}

/// What one downstream batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DownstreamReport {
    /// Values processed by the engine.
    pub processed: u64,
    /// Data records dropped as repeats.
    pub duplicates: u64,
    /// Data records dropped because their key group is not this shard's.
    pub not_owned: u64,
    /// Watermark records ignored (unknown source or retired upstream shard).
    pub ignored_watermarks: u64,
    /// Records that do not decode, for the dead-letter destination.
    pub dead_letters: Vec<DeadLetter>,
}

/// Feeds the Kinesis records `records` of shuffle shard `shard` to `engine` (the downstream half
/// of a split pipeline) under `state` (see the module documentation). Each record's arrival is
/// the processing time of what it holds.
pub fn process_batch<S, Out>(
    engine: &mut Engine<S, Out>,
    state: &mut DownstreamState,
    shard: ShuffleShard<'_>,
    records: &[InputRecord],
) -> DownstreamReport
where
    S: DeserializeOwned + Send + 'static,
    Out: Send + 'static,
{
    let mut report = DownstreamReport::default();
    for record in records {
        let frame = match Frame::parse(&record.data) {
            Ok(frame) => frame,
            Err(e) => {
                report
                    .dead_letters
                    .push(dead_letter(shard, record, &record.data, e.to_string()));
                continue;
            }
        };
        for encoded in frame.encoded_records() {
            // A bad length prefix ends the frame: the whole Kinesis record is dead-lettered.
            let bytes = match encoded {
                Ok(bytes) => bytes,
                Err(e) => {
                    report
                        .dead_letters
                        .push(dead_letter(shard, record, &record.data, e.to_string()));
                    break;
                }
            };
            match ShuffleRecord::decode(bytes) {
                Ok(ShuffleRecord::Data(data)) => {
                    if let Err(reason) = feed_data(engine, state, &data, record.arrival_ms, &mut report) {
                        report.dead_letters.push(dead_letter(shard, record, bytes, reason));
                    }
                }
                Ok(ShuffleRecord::Watermark(w)) => feed_watermark(engine, state, &w, record.arrival_ms, &mut report),
                Err(e) => report
                    .dead_letters
                    .push(dead_letter(shard, record, bytes, e.to_string())),
            }
        }
    }
    report
}

/// Advances processing time to `now` for the engine and the upstream partitions' idleness (at
/// every invocation, and on a scheduled tick).
pub fn advance_processing_time<S: Send + 'static, Out: Send + 'static>(
    engine: &mut Engine<S, Out>,
    state: &mut DownstreamState,
    now: Timestamp,
) {
    engine.advance_processing_time(now);
    state.watermark.advance_processing_time(now);
    engine.advance_watermark(state.watermark.current());
}

/// Dedup, watermark, then the value; `Err` with the reason if the value does not decode.
fn feed_data<S: DeserializeOwned + Send + 'static, Out: Send + 'static>(
    engine: &mut Engine<S, Out>,
    state: &mut DownstreamState,
    data: &DataRecord<'_>,
    now: Timestamp,
    report: &mut DownstreamReport,
) -> Result<(), String> {
    match state.dedup.check(data) {
        Verdict::New => {}
        Verdict::Duplicate => {
            report.duplicates += 1;
            return Ok(());
        }
        Verdict::NotOwned => {
            report.not_owned += 1;
            return Ok(());
        }
    }
    let value: S = postcard::from_bytes(data.payload).map_err(|e| format!("shuffled value does not decode: {e}"))?;
    match state.watermark.observe_data(data, now) {
        WatermarkUpdate::Ignored(Ignored::Retired) => {
            // Its upstream shard ended or has children: a replay from before that, whose marks
            // are gone. Dropped rather than counted twice.
            tracing::warn!(
                stage = data.id.stage,
                shard = data.id.source_shard,
                "data of a retired upstream shard; dropped"
            );
            report.duplicates += 1;
            return Ok(());
        }
        WatermarkUpdate::Ignored(Ignored::UnknownSource) => {
            // Its upstream shard sends a watermark record before its first data, so this is
            // not expected; the value is still processed.
            tracing::warn!(
                stage = data.id.stage,
                shard = data.id.source_shard,
                "data of an unknown upstream shard"
            );
        }
        WatermarkUpdate::Advanced(_) | WatermarkUpdate::Unchanged => {}
    }
    engine.advance_watermark(state.watermark.current());
    let partition = engine.partition(data.id.source_shard);
    engine.process_from(partition, data.origin, data.timestamp, now, value);
    report.processed += 1;
    Ok(())
}

fn feed_watermark<S: Send + 'static, Out: Send + 'static>(
    engine: &mut Engine<S, Out>,
    state: &mut DownstreamState,
    w: &WatermarkRecord<'_>,
    now: Timestamp,
    report: &mut DownstreamReport,
) {
    state.dedup.retire_parents(w);
    match state.watermark.observe(w, now) {
        WatermarkUpdate::Ignored(Ignored::UnknownSource) => {
            report.ignored_watermarks += 1;
            tracing::warn!(
                stage = w.stage,
                stream = w.source_stream,
                shard = w.source_shard,
                "watermark record of a source this stage does not consume; ignored"
            );
            return;
        }
        WatermarkUpdate::Ignored(Ignored::Retired) => {
            report.ignored_watermarks += 1;
            tracing::debug!(
                stage = w.stage,
                shard = w.source_shard,
                "watermark record of a retired upstream shard"
            );
            return;
        }
        WatermarkUpdate::Advanced(_) | WatermarkUpdate::Unchanged => {}
    }
    engine.partition(w.source_shard);
    engine.advance_watermark(state.watermark.current());
}

/// The late values of one downstream batch as dead letters ([`late_dead_letters`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LateLetters {
    /// One dead letter of kind `late` per late value that came in a shuffled record of the batch.
    pub letters: Vec<DeadLetter>,
    /// Late values that derive from no shuffled record (a window's result refused by a later
    /// window): nothing to keep but the count, as in the single-engine stage.
    pub without_record: Vec<LateRecord>,
}

/// Dead letters of kind `late` for `late`, the values `engine` refused as too late while it
/// processed `records` of `shard` ([`process_batch`], then drained with
/// [`Engine::drain_late`]): each holds the shuffled record that carried the value (its bytes,
/// decodable with [`ShuffleRecord::decode`]), the Kinesis record's position, and the reason the
/// single-engine stage gives ([`DeadLetter::late_reason`]). A late value is matched to its
/// shuffled record by upstream shard, input offset and event time; each record at most once.
pub fn late_dead_letters<S: Send + 'static, Out: Send + 'static>(
    engine: &Engine<S, Out>,
    shard: ShuffleShard<'_>,
    records: &[InputRecord],
    late: &[LateRecord],
) -> LateLetters {
    let mut out = LateLetters::default();
    // (upstream shard, offset, event time) -> the late values waiting for their record.
    let mut waiting: HashMap<(&str, u64, Timestamp), Vec<&LateRecord>> = HashMap::new();
    for l in late {
        let name = l
            .partition
            .and_then(|p| engine.partitions().get(p as usize))
            .map(|p| p.name.as_str());
        match (name, l.offset) {
            (Some(name), Some(offset)) => waiting.entry((name, offset, l.timestamp)).or_default().push(l),
            _ => out.without_record.push(l.clone()),
        }
    }
    for record in records {
        if waiting.is_empty() {
            break;
        }
        let Ok(frame) = Frame::parse(&record.data) else {
            continue;
        };
        for bytes in frame.encoded_records().map_while(Result::ok) {
            let Ok(ShuffleRecord::Data(data)) = ShuffleRecord::decode(bytes) else {
                continue;
            };
            let at = (data.id.source_shard, data.origin.offset, data.timestamp);
            let Some(refused) = waiting.get_mut(&at) else { continue };
            if let Some(l) = refused.pop() {
                out.letters.push(DeadLetter::new(
                    DeadLetterKind::Late,
                    shard.stage,
                    shard.stream,
                    shard.shard_id,
                    &held(record, bytes),
                    DeadLetter::late_reason(l),
                ));
            }
            if refused.is_empty() {
                waiting.remove(&at);
            }
        }
    }
    out.without_record.extend(waiting.into_values().flatten().cloned());
    out
}

/// `record` holding `bytes` (one shuffled record of its frame) instead of its data.
fn held(record: &InputRecord, bytes: &[u8]) -> InputRecord {
    InputRecord {
        sequence: record.sequence.clone(),
        partition_key: record.partition_key.clone(),
        arrival_ms: record.arrival_ms,
        data: bytes.to_vec(),
    }
}

/// A dead letter for `bytes` (a Kinesis record, or one shuffled record of its frame).
fn dead_letter(shard: ShuffleShard<'_>, record: &InputRecord, bytes: &[u8], reason: String) -> DeadLetter {
    DeadLetter::new(
        DeadLetterKind::Undecodable,
        shard.stage,
        shard.stream,
        shard.shard_id,
        &held(record, bytes),
        reason,
    )
}
