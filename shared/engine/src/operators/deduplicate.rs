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

use super::checkpointed::{decode_meta, AdoptKeys, CheckpointedKeyedState, OperatorMeta, Upgrade};
use super::{Context, Operator};
use crate::checkpoint::CheckpointImage;
use crate::record::Record;
use crate::schema::{StateLayout, StateMigration};
use crate::state::StateKey;
use crate::time::{DurationMs, Timestamp};

/// The operator kind (default ids `deduplicate-{n}`; format version 1: `{position}-deduplicate`).
pub(crate) const KIND: &str = "deduplicate";

/// See the module documentation.
pub(crate) struct Deduplicate<I: StateKey, T> {
    id_fn: Arc<dyn Fn(&T) -> I + Send + Sync>,
    horizon: DurationMs,
    next: Box<dyn Operator<T>>,
    /// Each id seen and the event time of its first occurrence, the watermark, and the repeats
    /// dropped.
    seen: CheckpointedKeyedState<I, Timestamp, Dropped>,
    /// Ids by the watermark at which they are forgotten.
    expiry: BTreeMap<Timestamp, Vec<I>>,
}

/// Repeats dropped by one `deduplicate` operator since the pipeline started: its operator-level
/// state besides the watermark (`u64` little endian).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Dropped(u64);

impl OperatorMeta for Dropped {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }

    fn decode(rest: &[u8]) -> Option<Self> {
        Some(Dropped(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?)))
    }

    /// A parent's count stays the parent's: the engine's counter does not take it over either.
    fn adopt(&mut self, _: Self) {}
}

/// A key group's entries as generic over the id type (what a migration decodes; a migrated id
/// may belong to another key group, where the restore puts it).
struct SeenLayout;

impl StateLayout for SeenLayout {
    type With<A: serde::Serialize + serde::de::DeserializeOwned> = Vec<(A, Timestamp)>;

    fn map<A: serde::Serialize + serde::de::DeserializeOwned, B: serde::Serialize + serde::de::DeserializeOwned>(
        entries: Self::With<A>,
        f: &dyn Fn(A) -> B,
    ) -> Self::With<B> {
        entries.into_iter().map(|(id, ts)| (f(id), ts)).collect()
    }
}

impl<I: StateKey, T> Deduplicate<I, T> {
    /// The operator `id`; `migration` reads ids of older schema versions.
    pub(crate) fn new<M: StateMigration<I>>(
        id: String,
        max_key_groups: u16,
        id_fn: Arc<dyn Fn(&T) -> I + Send + Sync>,
        horizon: DurationMs,
        migration: Arc<M>,
        next: Box<dyn Operator<T>>,
    ) -> Self {
        let upgrade: Upgrade<I, Timestamp> =
            Arc::new(move |version, bytes| migration.upgrade::<SeenLayout>(version, bytes));
        Deduplicate {
            id_fn,
            horizon: horizon.max(0),
            next,
            // Every id a parent shard has seen is taken over, whatever the partition key: the
            // seen ids are keyed by result id, not by the partition key, and remembering an id in
            // both children of a split only drops a repeat a little longer — it never produces or
            // loses a result.
            seen: CheckpointedKeyedState::new(id, max_key_groups, Dropped::default())
                .adopting(AdoptKeys::All)
                .upgrading(upgrade),
            expiry: BTreeMap::new(),
        }
    }

    fn forget_at(&self, ts: Timestamp) -> Timestamp {
        ts.saturating_add(self.horizon)
    }
}

/// The repeats dropped by every `deduplicate` operator of an image whose engine state does not
/// carry the count (format version 1, where every operator has a positional id; default ids are
/// recognised too, a uid is not).
pub(crate) fn dropped_in(image: &CheckpointImage) -> u64 {
    let is_deduplicate = |id: &str| {
        crate::restore::legacy_id(id).is_some_and(|(_, kind)| kind == KIND)
            || crate::pipeline::default_id_parts(id).is_some_and(|(kind, _)| kind == KIND)
    };
    image
        .operator_metas()
        .filter(|(id, _)| is_deduplicate(id))
        .filter_map(|(_, meta)| decode_meta::<Dropped>(meta).map(|(_, Dropped(n))| n))
        .sum()
}

impl<I: StateKey, T> Deduplicate<I, T> {
    /// Rebuilds the expiry index from the seen ids.
    fn rebuild_expiry(&mut self) {
        self.expiry.clear();
        let mut timers: Vec<(Timestamp, I)> = self
            .seen
            .state
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
        if forget_at <= self.seen.watermark {
            cx.refuse_late(&self.seen.id, self.seen.watermark, &r, None);
            return;
        }
        let id = (self.id_fn)(&r.value);
        let group = self.seen.state.group_of(&id);
        if self.seen.state.group(group).contains_key(&id) {
            self.seen.meta.0 += 1;
            cx.duplicates_total += 1;
            return;
        }
        self.seen.state.group_mut(group).insert(id.clone(), r.timestamp);
        self.expiry.entry(forget_at).or_default().push(id);
        self.next.process(cx, r);
    }

    fn on_watermark(&mut self, cx: &mut Context, watermark: Timestamp) {
        if !self.seen.advance_watermark(watermark) {
            return;
        }
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for id in entry.remove() {
                let group = self.seen.state.group_of(&id);
                self.seen.state.group_mut(group).remove(&id);
            }
        }
        self.next.on_watermark(cx, watermark);
    }

    fn on_processing_time(&mut self, cx: &mut Context) {
        self.next.on_processing_time(cx);
    }

    checkpoint_hooks!(seen, rebuild_expiry);
}
