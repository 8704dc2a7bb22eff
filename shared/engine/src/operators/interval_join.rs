//! The interval join: `left ⋈ right` on a key where `left.ts + lower <= right.ts <= left.ts + upper`.
//!
//! Both sides are buffered per key in keyed state. A record is matched against the other side's
//! buffer when it arrives and the matches are emitted at once, with the later of the two
//! timestamps.
//!
//! A record *behind* the watermark (`ts < watermark`) is late and goes to the late side output;
//! a record *at* the watermark is joined. This is Flink's rule (`IntervalJoinOperator.isLate`:
//! `timestamp < currentWatermark`), although a watermark `W` says no more records `<= W` are
//! expected: the join keeps the one millisecond of slack Flink gives it, so that a pipeline moved
//! from Flink joins the same records.
//!
//! A buffered record is dropped once no partner that is not late can arrive: a left record at
//! `ts` when the watermark passes `ts + upper` (a right record at `ts + upper` is still joined
//! while the watermark is at it), a right record when it passes `ts - lower`. Flink drops them
//! when the watermark *reaches* those times, and so misses a partner that arrives exactly at the
//! watermark; this join does not.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::checkpointed::{CheckpointedKeyedState, Upgrade};
use super::{Context, Operator};
use crate::record::{Origin, Record, ResultId};
use crate::schema::{StateLayout, StateMigration};
use crate::state::StateKey;
use crate::time::{DurationMs, Timestamp};

/// Builds the result of one matched pair (key, left, right).
pub(crate) type PairFn<K, T, O> = Arc<dyn Fn(&K, &T, &T) -> O + Send + Sync>;

/// Which input of an interval join a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntervalJoinSide {
    /// The side whose timestamp the interval is relative to.
    Left,
    /// The side that must fall in the interval.
    Right,
    /// Neither: the record is ignored.
    Neither,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Buffered<T> {
    ts: Timestamp,
    id: u128,
    value: T,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Buffers<T> {
    left: Vec<Buffered<T>>,
    right: Vec<Buffered<T>>,
}

/// A key group's entries as generic over the buffered value type (what a migration decodes).
struct BuffersLayout<K>(std::marker::PhantomData<K>);

impl<K: StateKey> StateLayout for BuffersLayout<K> {
    type With<A: Serialize + DeserializeOwned> = Vec<(K, Buffers<A>)>;

    fn map<A: Serialize + DeserializeOwned, B: Serialize + DeserializeOwned>(
        entries: Self::With<A>,
        f: &dyn Fn(A) -> B,
    ) -> Self::With<B> {
        let side = |values: Vec<Buffered<A>>| -> Vec<Buffered<B>> {
            values
                .into_iter()
                .map(|b| Buffered {
                    ts: b.ts,
                    id: b.id,
                    value: f(b.value),
                })
                .collect()
        };
        entries
            .into_iter()
            .map(|(k, b)| {
                let buffers = Buffers {
                    left: side(b.left),
                    right: side(b.right),
                };
                (k, buffers)
            })
            .collect()
    }
}

impl<T> Default for Buffers<T> {
    fn default() -> Self {
        Buffers {
            left: Vec::new(),
            right: Vec::new(),
        }
    }
}

/// See the module documentation.
pub(crate) struct IntervalJoin<K: StateKey, T, O> {
    pub(crate) key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
    pub(crate) side_fn: Arc<dyn Fn(&T) -> IntervalJoinSide + Send + Sync>,
    pub(crate) lower: DurationMs,
    pub(crate) upper: DurationMs,
    pub(crate) join_fn: PairFn<K, T, O>,
    pub(crate) next: Box<dyn Operator<O>>,
    /// Each key's buffered records of both sides, the watermark.
    keyed: CheckpointedKeyedState<K, Buffers<T>>,
    cleanup: BTreeMap<Timestamp, Vec<K>>,
}

impl<K: StateKey, T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static, O> IntervalJoin<K, T, O> {
    /// The operator `id`; `migration` reads buffered values of older schema versions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new<M: StateMigration<T>>(
        id: String,
        max_key_groups: u16,
        key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
        side_fn: Arc<dyn Fn(&T) -> IntervalJoinSide + Send + Sync>,
        lower: DurationMs,
        upper: DurationMs,
        join_fn: PairFn<K, T, O>,
        migration: Arc<M>,
        next: Box<dyn Operator<O>>,
    ) -> Self {
        let upgrade: Upgrade<K, Buffers<T>> =
            Arc::new(move |version, bytes| migration.upgrade::<BuffersLayout<K>>(version, bytes));
        IntervalJoin {
            key_fn,
            side_fn,
            lower,
            upper,
            join_fn,
            next,
            keyed: CheckpointedKeyedState::new(id, max_key_groups, ()).upgrading(upgrade),
            cleanup: BTreeMap::new(),
        }
    }

    fn expiry(&self, side: IntervalJoinSide, ts: Timestamp) -> Timestamp {
        match side {
            IntervalJoinSide::Left => ts.saturating_add(self.upper),
            _ => ts.saturating_sub(self.lower),
        }
    }

    fn rebuild_cleanup(&mut self) {
        self.cleanup.clear();
        let mut timers: Vec<(Timestamp, K)> = Vec::new();
        for (_, key, b) in self.keyed.state.iter() {
            for l in &b.left {
                timers.push((l.ts.saturating_add(self.upper), key.clone()));
            }
            for r in &b.right {
                timers.push((r.ts.saturating_sub(self.lower), key.clone()));
            }
        }
        for (t, k) in timers {
            self.cleanup.entry(t).or_default().push(k);
        }
    }
}

fn pair_id(operator: &str, pipeline: &str, left: u128, right: u128) -> ResultId {
    let mut h = Xxh3::new();
    h.update(pipeline.as_bytes());
    h.update(&[0]);
    h.update(operator.as_bytes());
    h.update(&left.to_le_bytes());
    h.update(&right.to_le_bytes());
    ResultId(h.digest128())
}

impl<K, T, O> Operator<T> for IntervalJoin<K, T, O>
where
    K: StateKey,
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    O: Send,
{
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        let side = (self.side_fn)(&r.value);
        if side == IntervalJoinSide::Neither {
            return;
        }
        if r.timestamp < self.keyed.watermark {
            cx.refuse_late(&self.keyed.id, self.keyed.watermark, &r, None);
            return;
        }
        let key = (self.key_fn)(&r.value);
        let id = r.origin.result_id(&cx.pipeline).0;
        let group = self.keyed.state.group_of(&key);
        let buffers = self.keyed.state.group_mut(group).entry(key.clone()).or_default();
        let mut matches: Vec<(ResultId, Timestamp, O)> = Vec::new();
        let (lower, upper) = (self.lower, self.upper);
        match side {
            IntervalJoinSide::Left => {
                for b in &buffers.right {
                    if r.timestamp.saturating_add(lower) <= b.ts && b.ts <= r.timestamp.saturating_add(upper) {
                        let out = (self.join_fn)(&key, &r.value, &b.value);
                        matches.push((
                            pair_id(&self.keyed.id, &cx.pipeline, id, b.id),
                            r.timestamp.max(b.ts),
                            out,
                        ));
                    }
                }
            }
            _ => {
                for a in &buffers.left {
                    if a.ts.saturating_add(lower) <= r.timestamp && r.timestamp <= a.ts.saturating_add(upper) {
                        let out = (self.join_fn)(&key, &a.value, &r.value);
                        matches.push((
                            pair_id(&self.keyed.id, &cx.pipeline, a.id, id),
                            r.timestamp.max(a.ts),
                            out,
                        ));
                    }
                }
            }
        }
        let entry = Buffered {
            ts: r.timestamp,
            id,
            value: r.value,
        };
        match side {
            IntervalJoinSide::Left => buffers.left.push(entry),
            _ => buffers.right.push(entry),
        }
        let expiry = self.expiry(side, r.timestamp);
        self.cleanup.entry(expiry).or_default().push(key);
        for (id, ts, value) in matches {
            self.next.process(
                cx,
                Record {
                    timestamp: ts,
                    origin: Origin::Derived { id },
                    value,
                },
            );
        }
    }

    fn on_watermark(&mut self, cx: &mut Context, watermark: Timestamp) {
        if !self.keyed.advance_watermark(watermark) {
            return;
        }
        let (lower, upper) = (self.lower, self.upper);
        while let Some(entry) = self.cleanup.first_entry() {
            if *entry.key() >= watermark {
                break;
            }
            for key in entry.remove() {
                let group = self.keyed.state.group_of(&key);
                let map = self.keyed.state.group_mut(group);
                if let Some(b) = map.get_mut(&key) {
                    b.left.retain(|l| l.ts.saturating_add(upper) >= watermark);
                    b.right.retain(|r| r.ts.saturating_sub(lower) >= watermark);
                    if b.left.is_empty() && b.right.is_empty() {
                        map.remove(&key);
                    }
                }
            }
        }
        self.next.on_watermark(cx, watermark);
    }

    fn on_processing_time(&mut self, cx: &mut Context) {
        self.next.on_processing_time(cx);
    }

    checkpoint_hooks!(keyed, rebuild_cleanup);
}
