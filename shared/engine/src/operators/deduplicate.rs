//! `deduplicate`: drops a value whose id was already seen (at-least-once input made exactly-once).
//!
//! The ids seen are keyed state (the id is the key, so they spread over the key groups and move
//! with them), each remembered with the event time of its first occurrence `ts` until the
//! operator's watermark reaches `ts + horizon`. A repeat of the same id is dropped and counted in
//! [`crate::EngineMetrics::duplicates_dropped`].
//!
//! A repeat carries the same event time as the original (it is the same result, written again),
//! so it is recognised as long as it arrives before the watermark passes `ts + horizon`. A value
//! arriving later than that cannot be checked — its id may have been forgotten — and goes to the
//! late side output rather than through (a possible duplicate) or silently away (a possible new
//! value).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Context, Operator};
use crate::checkpoint::{CheckpointImage, OperatorState};
use crate::error::StateError;
use crate::record::{LateRecord, Origin, Record};
use crate::state::{KeyedState, StateKey};
use crate::time::{DurationMs, Timestamp, MIN_TIMESTAMP};

/// The operator kind in operator ids (`{position}-deduplicate`).
pub(crate) const KIND: &str = "deduplicate";

/// See the module documentation.
pub(crate) struct Deduplicate<I: StateKey, T> {
    id: String,
    id_fn: Arc<dyn Fn(&T) -> I + Send + Sync>,
    horizon: DurationMs,
    next: Box<dyn Operator<T>>,
    /// Each id seen and the event time of its first occurrence.
    seen: KeyedState<I, Timestamp>,
    /// Ids by the watermark at which they are forgotten.
    expiry: BTreeMap<Timestamp, Vec<I>>,
    watermark: Timestamp,
    /// Repeats dropped by this operator since the pipeline started (kept in checkpoints).
    dropped: u64,
}

impl<I: StateKey, T> Deduplicate<I, T> {
    pub(crate) fn new(
        id: String,
        max_key_groups: u16,
        id_fn: Arc<dyn Fn(&T) -> I + Send + Sync>,
        horizon: DurationMs,
        next: Box<dyn Operator<T>>,
    ) -> Self {
        Deduplicate {
            id,
            id_fn,
            horizon: horizon.max(0),
            next,
            seen: KeyedState::new(max_key_groups),
            expiry: BTreeMap::new(),
            watermark: MIN_TIMESTAMP,
            dropped: 0,
        }
    }

    fn forget_at(&self, ts: Timestamp) -> Timestamp {
        ts.saturating_add(self.horizon)
    }
}

/// Encodes the operator-level state: watermark, then the count of repeats dropped.
fn encode_meta(watermark: Timestamp, dropped: u64) -> Vec<u8> {
    let mut meta = watermark.to_le_bytes().to_vec();
    meta.extend_from_slice(&dropped.to_le_bytes());
    meta
}

fn decode_meta(meta: &[u8]) -> Option<(Timestamp, u64)> {
    let watermark = i64::from_le_bytes(meta.get(..8)?.try_into().ok()?);
    let dropped = u64::from_le_bytes(meta.get(8..16)?.try_into().ok()?);
    Some((watermark, dropped))
}

/// The repeats dropped by every `deduplicate` operator of the image (to restore the engine's
/// counter).
pub(crate) fn dropped_in(image: &CheckpointImage) -> u64 {
    image
        .operator_metas()
        .filter(|(id, _)| id.rsplit_once('-').is_some_and(|(_, kind)| kind == KIND))
        .filter_map(|(_, meta)| decode_meta(meta).map(|(_, dropped)| dropped))
        .sum()
}

impl<I: StateKey, T> Deduplicate<I, T> {
    fn read_meta(&self, meta: &[u8]) -> Result<(Timestamp, u64), StateError> {
        decode_meta(meta).ok_or_else(|| StateError::Mismatch(format!("{}: bad operator meta", self.id)))
    }

    /// Rebuilds the expiry index from the seen ids.
    fn rebuild_expiry(&mut self) {
        self.expiry.clear();
        let mut timers: Vec<(Timestamp, I)> = self
            .seen
            .iter()
            .map(|(_, id, ts)| (ts.saturating_add(self.horizon), id.clone()))
            .collect();
        timers.sort_unstable();
        for (t, id) in timers {
            self.expiry.entry(t).or_default().push(id);
        }
    }
}

impl<I: StateKey, T: Send> Operator<T> for Deduplicate<I, T> {
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        let forget_at = self.forget_at(r.timestamp);
        if forget_at <= self.watermark {
            cx.late_total += 1;
            let (partition, offset) = match r.origin {
                Origin::Input { partition, offset, .. } => (Some(partition), Some(offset)),
                _ => (None, None),
            };
            cx.late.push(LateRecord {
                operator: self.id.clone(),
                partition,
                offset,
                timestamp: r.timestamp,
                watermark: self.watermark,
                window: None,
            });
            return;
        }
        let id = (self.id_fn)(&r.value);
        let group = self.seen.group_of(&id);
        if self.seen.group(group).contains_key(&id) {
            self.dropped += 1;
            cx.duplicates_total += 1;
            return;
        }
        self.seen.group_mut(group).insert(id.clone(), r.timestamp);
        self.expiry.entry(forget_at).or_default().push(id);
        self.next.process(cx, r);
    }

    fn on_watermark(&mut self, cx: &mut Context, watermark: Timestamp) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for id in entry.remove() {
                let group = self.seen.group_of(&id);
                self.seen.group_mut(group).remove(&id);
            }
        }
        self.next.on_watermark(cx, watermark);
    }

    fn on_processing_time(&mut self, cx: &mut Context) {
        self.next.on_processing_time(cx);
    }

    fn snapshot(&mut self, full: bool, out: &mut Vec<OperatorState>) -> Result<(), StateError> {
        out.push(
            self.seen
                .operator_state(&self.id, encode_meta(self.watermark, self.dropped), full)?,
        );
        self.next.snapshot(full, out)
    }

    fn restore(&mut self, image: &CheckpointImage) -> Result<(), StateError> {
        if let Some(meta) = self.seen.restore_from(&self.id, image)? {
            (self.watermark, self.dropped) = self.read_meta(meta)?;
            self.rebuild_expiry();
        }
        self.next.restore(image)
    }

    /// Takes over every id a parent shard has seen, whatever `keep` says: the seen ids are keyed
    /// by result id, not by the partition key, and remembering an id in both children of a split
    /// only drops a repeat a little longer — it never produces or loses a result.
    fn adopt(&mut self, image: &CheckpointImage, keep: &dyn Fn(&[u8]) -> bool) -> Result<(), StateError> {
        if let Some(meta) = self.seen.adopt_from(&self.id, image, &|_| true)? {
            self.watermark = self.watermark.max(self.read_meta(meta)?.0);
            self.rebuild_expiry();
        }
        self.next.adopt(image, keep)
    }
}
