//! Combiner lifting: the upstream half of a split pipeline combines the values of one batch per
//! (key, window) and shuffles partial accumulators, which the downstream merges.
//!
//! # Protocol
//! A lifted split pipeline ([`crate::WindowedStream::aggregate_lifted`]) shuffles [`Lifted`]
//! values. Its upstream half makes only [`Lifted::Raw`] values; per upstream batch, a
//! [`BatchCombiner`] ([`crate::SplitPipeline::batch_combiner`]) takes each in turn:
//! - a value is merged into the partial of its (key, window) only if every window it belongs to
//!   ends above its partition's watermark before it (`wm_before`). Otherwise it might be late, or
//!   a late firing, downstream: it is sent raw, as unlifted.
//! - a partial carries the `wm_before`, event time and provenance of its first value, and the
//!   number of values in it. It is sent before the first value whose `wm_before` reaches its
//!   window's last millisecond ([`BatchCombiner::take_due`]), and at the end of the batch
//!   ([`BatchCombiner::take_all`]).
//!
//! Downstream, a partial is merged into its window like that many values added there. Why this
//! is exact: **if every upstream partition is known downstream before the combined watermark
//! passes it** (the embedded runner registers all partitions first; a resharded upstream's
//! children start at their parents' watermark), the downstream watermark at any value of
//! partition `p` is at most `p`'s watermark then (it is the minimum over the partitions), and
//! within `p`'s batch only `p`'s watermark moves, which stays below the window's end until the
//! partial is sent. So the window is open at every value of the partial in the single
//! engine and at the partial downstream, and a combiner's merge equals adding the values
//! (exactly for integer sums, counts, min, max, top-N; [`crate::combine::Mean`]'s floating sum only
//! when the sums are exact, e.g. integers below 2⁵³).
//!
//! Not covered: an upstream partition that first speaks after the combined watermark passed its
//! values (a late-joining shard), or one released by idleness: its values may be late
//! downstream while its own watermark says they are not. A partial that finds its window fired
//! counts as that many late elements (its late panes may group differently), one that finds it
//! expired is one late record; run such inputs unlifted where late output must be exact.
//!
//! Lifting applies to non-merging windows (tumbling, sliding, global) with triggers that fire at
//! the watermark, with or without allowed lateness and late firings by element count. Early
//! firings (by count or processing time), late firings by processing time and session windows
//! fall back to the unlifted plan: every value is sent raw (the same results, more shuffle
//! records). [`crate::SplitPipeline::is_lifted`] tells which plan a pipeline got.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::combine::Combiner;
use crate::record::{InputOrigin, ShuffleOutput};
use crate::state::{key_group, StateKey};
use crate::time::Timestamp;
use crate::trigger::Trigger;
use crate::window::{Window, Windowing};

/// A value of a lifted split pipeline's shuffle: one value, or the partial aggregate of several
/// values of one key in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Lifted<K, T, A> {
    /// A value, as an unlifted pipeline shuffles it.
    Raw(T),
    /// Values of `key` in `window`, combined into `acc`.
    Partial {
        /// The key.
        key: K,
        /// The window.
        window: Window,
        /// The combiner's accumulator of the values.
        acc: A,
        /// How many values it holds.
        count: u32,
    },
}

/// A value bound for the shuffle: its key group and provenance, its event time, and its
/// partition's watermark just before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shuffled<S> {
    /// The value, its key group and provenance.
    pub output: ShuffleOutput<S>,
    /// Its event time.
    pub timestamp: Timestamp,
    /// Its upstream partition's watermark just before it.
    pub wm_before: Timestamp,
}

/// Combines the values of one upstream batch into partials (see the module documentation). A
/// new one per batch.
pub trait BatchCombiner<S>: Send {
    /// Takes `value` into a partial (`None`), or gives it back to be sent raw.
    fn offer(&mut self, value: Shuffled<S>) -> Option<Shuffled<S>>;
    /// Moves the partials whose window's last millisecond is at or below `watermark` (the
    /// partition's watermark before the next value) into `out`, oldest window first.
    fn take_due(&mut self, watermark: Timestamp, out: &mut Vec<Shuffled<S>>);
    /// Moves every partial into `out` (the end of the batch), oldest window first.
    fn take_all(&mut self, out: &mut Vec<Shuffled<S>>);
}

/// Makes a [`BatchCombiner`] per batch.
pub type BatchCombinerFactory<S> = Arc<dyn Fn() -> Box<dyn BatchCombiner<S>> + Send + Sync>;

/// Whether `windowing` and `trigger` allow lifting (see the module documentation).
pub(crate) fn can_lift(windowing: &Windowing, trigger: &Trigger) -> bool {
    !windowing.is_merging() && trigger.early.is_none() && trigger.late.is_none_or(|f| f.processing_ms.is_none())
}

/// One partial under way.
struct Partial<K, A> {
    key: K,
    window: Window,
    acc: A,
    count: u32,
    first: (InputOrigin, Timestamp, Timestamp),
}

/// The [`BatchCombiner`] of a windowed aggregation with combiner `C`.
pub(crate) struct WindowPartials<K: StateKey, T, C: Combiner<T>> {
    key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
    windowing: Windowing,
    combiner: Arc<C>,
    max_key_groups: u16,
    /// Partials by (key, window), as indices into `partials`.
    index: FxHashMap<(K, Window), usize>,
    partials: Vec<Option<Partial<K, C::Acc>>>,
    /// Indices of the partials by their window's last millisecond, in creation order.
    by_end: BTreeMap<Timestamp, Vec<usize>>,
    windows: Vec<Window>,
}

impl<K: StateKey, T, C: Combiner<T>> WindowPartials<K, T, C> {
    pub(crate) fn new(
        key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
        windowing: Windowing,
        combiner: Arc<C>,
        max_key_groups: u16,
    ) -> Self {
        WindowPartials {
            key_fn,
            windowing,
            combiner,
            max_key_groups,
            index: FxHashMap::default(),
            partials: Vec::new(),
            by_end: BTreeMap::new(),
            windows: Vec::new(),
        }
    }

    fn emit(&mut self, at: usize, out: &mut Vec<Shuffled<Lifted<K, T, C::Acc>>>) {
        let Some(p) = self.partials.get_mut(at).and_then(Option::take) else {
            return;
        };
        self.index.remove(&(p.key.clone(), p.window));
        let (origin, timestamp, wm_before) = p.first;
        out.push(Shuffled {
            output: ShuffleOutput {
                key_group: key_group(&p.key, self.max_key_groups),
                value: Lifted::Partial {
                    key: p.key,
                    window: p.window,
                    acc: p.acc,
                    count: p.count,
                },
                origin,
            },
            timestamp,
            wm_before,
        });
    }
}

impl<K, T, C> BatchCombiner<Lifted<K, T, C::Acc>> for WindowPartials<K, T, C>
where
    K: StateKey,
    T: Send + 'static,
    C: Combiner<T>,
{
    fn offer(&mut self, value: Shuffled<Lifted<K, T, C::Acc>>) -> Option<Shuffled<Lifted<K, T, C::Acc>>> {
        let Lifted::Raw(raw) = &value.output.value else {
            return Some(value);
        };
        self.windows.clear();
        let windows = &mut self.windows;
        self.windowing.assign(value.timestamp, |w| windows.push(w));
        if self.windows.is_empty() || self.windows.iter().any(|w| w.max_timestamp() <= value.wm_before) {
            return Some(value);
        }
        let key = (self.key_fn)(raw);
        for &window in &self.windows {
            let at = match self.index.get(&(key.clone(), window)) {
                Some(&at) => at,
                None => {
                    let at = self.partials.len();
                    self.partials.push(Some(Partial {
                        key: key.clone(),
                        window,
                        acc: self.combiner.create(),
                        count: 0,
                        first: (value.output.origin, value.timestamp, value.wm_before),
                    }));
                    self.index.insert((key.clone(), window), at);
                    self.by_end.entry(window.max_timestamp()).or_default().push(at);
                    at
                }
            };
            if let Some(Some(p)) = self.partials.get_mut(at) {
                self.combiner.add(&mut p.acc, raw);
                p.count = p.count.saturating_add(1);
            }
        }
        None
    }

    fn take_due(&mut self, watermark: Timestamp, out: &mut Vec<Shuffled<Lifted<K, T, C::Acc>>>) {
        while let Some(entry) = self.by_end.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for at in entry.remove() {
                self.emit(at, out);
            }
        }
    }

    fn take_all(&mut self, out: &mut Vec<Shuffled<Lifted<K, T, C::Acc>>>) {
        for (_, list) in std::mem::take(&mut self.by_end) {
            for at in list {
                self.emit(at, out);
            }
        }
        self.partials.clear();
        self.index.clear();
    }
}
