//! The keyed, windowed aggregation with triggers — also the engine of the N-way window join.
//!
//! State per key: the open windows of the key, each with its accumulator and pane bookkeeping
//! ([`WindowSlot`]). Timers are derived from that state and rebuilt on restore:
//! an event-time timer at each window's last millisecond (on-time pane) and, after it fired, at
//! that plus the allowed lateness (garbage collection); a processing-time timer for a pending
//! early or late firing.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::checkpointed::{CheckpointedKeyedState, Upgrade};
use super::{Context, Operator};
use crate::combine::Combiner;
use crate::lift::Lifted;
use crate::record::{Origin, Record, ResultId};
use crate::state::{hash_into, StateKey};
use crate::time::{Timestamp, MIN_TIMESTAMP};
use crate::trigger::{Accumulation, PaneInfo, PaneTiming, Trigger};
use crate::window::{LateSessionRule, Window, Windowing};

/// Builds a result from a key, its window, the pane and the combiner's output.
pub(crate) type ResultFn<K, A, O> = Arc<dyn Fn(&K, &Window, &PaneInfo, A) -> O + Send + Sync>;

/// One open window of one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WindowSlot<A> {
    window: Window,
    acc: A,
    /// Elements added since the last pane.
    pending: u32,
    /// Index of the next pane.
    next_pane: u32,
    /// Whether the on-time pane has fired (later panes are late).
    fired_on_time: bool,
    /// Processing time at which a pending early or late pane fires.
    deadline: Option<Timestamp>,
}

/// A key group's entries with accumulators of any type, for migrations (see [`crate::schema`]).
struct SlotLayout<K>(std::marker::PhantomData<K>);

impl<K: StateKey> crate::schema::StateLayout for SlotLayout<K> {
    type With<A: Serialize + serde::de::DeserializeOwned> = Vec<(K, Vec<WindowSlot<A>>)>;

    fn map<A: Serialize + serde::de::DeserializeOwned, B: Serialize + serde::de::DeserializeOwned>(
        entries: Self::With<A>,
        f: &dyn Fn(A) -> B,
    ) -> Self::With<B> {
        let slot = |s: WindowSlot<A>| WindowSlot {
            window: s.window,
            acc: f(s.acc),
            pending: s.pending,
            next_pane: s.next_pane,
            fired_on_time: s.fired_on_time,
            deadline: s.deadline,
        };
        entries
            .into_iter()
            .map(|(k, slots)| (k, slots.into_iter().map(slot).collect()))
            .collect()
    }
}

/// See the module documentation.
pub(crate) struct WindowAggregate<K: StateKey, T, C: Combiner<T>, O> {
    pub(crate) key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
    pub(crate) windowing: Windowing,
    pub(crate) trigger: Trigger,
    pub(crate) combiner: Arc<C>,
    pub(crate) result_fn: ResultFn<K, C::Out, O>,
    pub(crate) next: Box<dyn Operator<O>>,
    /// Each key's open windows, the watermark.
    keyed: CheckpointedKeyedState<K, Vec<WindowSlot<C::Acc>>>,
    event_timers: BTreeMap<Timestamp, Vec<(K, Window)>>,
    processing_timers: BTreeMap<Timestamp, Vec<(K, Window)>>,
    assigned: Vec<Window>,
    fired: Fired<K, C::Out>,
}

impl<K: StateKey, T, C: Combiner<T>, O> WindowAggregate<K, T, C, O> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        max_key_groups: u16,
        key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
        windowing: Windowing,
        trigger: Trigger,
        combiner: Arc<C>,
        result_fn: ResultFn<K, C::Out, O>,
        next: Box<dyn Operator<O>>,
    ) -> Self {
        let upgrading = combiner.clone();
        let upgrade: Upgrade<K, Vec<WindowSlot<C::Acc>>> =
            Arc::new(move |version, bytes| upgrading.upgrade::<SlotLayout<K>>(version, bytes));
        WindowAggregate {
            key_fn,
            windowing,
            trigger,
            combiner,
            result_fn,
            next,
            keyed: CheckpointedKeyedState::new(id, max_key_groups, ()).upgrading(upgrade),
            event_timers: BTreeMap::new(),
            processing_timers: BTreeMap::new(),
            assigned: Vec::new(),
            fired: Vec::new(),
        }
    }

    fn gc_time(&self, w: &Window) -> Timestamp {
        w.max_timestamp().saturating_add(self.trigger.allowed_lateness)
    }

    fn is_expired(&self, w: &Window) -> bool {
        self.gc_time(w) <= self.keyed.watermark && self.keyed.watermark > MIN_TIMESTAMP
    }

    /// Whether `proto`, a late element's own session proto-window, is kept under Flink's
    /// merge-first rule ([`crate::window::LateSessionRule::MergeFirst`]): it overlaps a session
    /// of `key` that is still within the allowed lateness, so the merged session is too.
    fn merges_into_live_session(&self, key: &K, proto: &Window) -> bool {
        let Windowing::Session(sessions) = &self.windowing else {
            return false;
        };
        if sessions.late_rule() != LateSessionRule::MergeFirst {
            return false;
        }
        let group = self.keyed.state.group_of(key);
        self.keyed.state.group(group).get(key).is_some_and(|slots| {
            slots
                .iter()
                .any(|s| s.window.intersects(proto) && !self.is_expired(&s.window))
        })
    }

    /// Emits the panes collected in `self.fired`, in order.
    fn emit_fired(&mut self, cx: &mut Context) {
        for (key, window, pane, out) in std::mem::take(&mut self.fired) {
            let id = result_id(&cx.pipeline, &self.keyed.id, &key, &window, &pane);
            let value = (self.result_fn)(&key, &window, &pane, out);
            self.next.process(
                cx,
                Record {
                    timestamp: window.max_timestamp(),
                    origin: Origin::Pane { id, window, pane },
                    value,
                },
            );
        }
    }

    fn add_to_windows(&mut self, cx: &mut Context, key: K, r: &Record<T>) {
        let group = self.keyed.state.group_of(&key);
        let now = cx.processing_time;
        let watermark = self.keyed.watermark;
        let lateness = self.trigger.allowed_lateness;
        let slots = self.keyed.state.group_mut(group).entry(key.clone()).or_default();
        for &window in &self.assigned {
            let slot = open_slot(
                slots,
                &key,
                window,
                watermark,
                lateness,
                &*self.combiner,
                &mut self.event_timers,
            );
            self.combiner.add(&mut slot.acc, &r.value);
            after_add(
                &self.trigger,
                &*self.combiner,
                slot,
                &key,
                now,
                &mut self.fired,
                &mut self.processing_timers,
            );
        }
    }

    /// Merges `acc`, the partial aggregate of `count` values of `key` in `window` made upstream
    /// (combiner lifting, [`crate::lift`]), as if the values were added one by one. Lifting sends
    /// a partial only while its window is open; one that finds it closed (not expected) counts
    /// its values as late elements, and one that finds it expired is refused as late.
    fn merge_partial(&mut self, cx: &mut Context, partial: Record<(K, Window, C::Acc, u32)>) {
        let (key, window, acc, count) = partial.value;
        if self.is_expired(&window) {
            tracing::warn!(operator = %self.keyed.id, ?window, "a partial aggregate arrived after its window expired");
            let refused = Record {
                timestamp: partial.timestamp,
                origin: partial.origin,
                value: (),
            };
            cx.refuse_late(&self.keyed.id, self.keyed.watermark, &refused, Some(window));
            return;
        }
        let group = self.keyed.state.group_of(&key);
        let now = cx.processing_time;
        let watermark = self.keyed.watermark;
        let lateness = self.trigger.allowed_lateness;
        let slots = self.keyed.state.group_mut(group).entry(key.clone()).or_default();
        let slot = open_slot(
            slots,
            &key,
            window,
            watermark,
            lateness,
            &*self.combiner,
            &mut self.event_timers,
        );
        self.combiner.merge(&mut slot.acc, acc);
        if slot.fired_on_time {
            for _ in 0..count {
                after_add(
                    &self.trigger,
                    &*self.combiner,
                    slot,
                    &key,
                    now,
                    &mut self.fired,
                    &mut self.processing_timers,
                );
            }
        } else {
            slot.pending = slot.pending.saturating_add(count);
        }
    }

    fn add_to_session(&mut self, cx: &mut Context, key: K, r: &Record<T>, proto: Window) {
        let group = self.keyed.state.group_of(&key);
        let watermark = self.keyed.watermark;
        let slots = self.keyed.state.group_mut(group).entry(key.clone()).or_default();
        let mut merged = proto;
        let mut absorbed: Vec<WindowSlot<C::Acc>> = Vec::new();
        let mut i = 0;
        while i < slots.len() {
            if slots[i].window.intersects(&merged) {
                merged = merged.span(&slots[i].window);
                absorbed.push(slots.swap_remove(i));
                i = 0; // the span grew: earlier slots may now intersect
            } else {
                i += 1;
            }
        }
        if absorbed.len() == 1 && absorbed[0].window == merged {
            slots.push(absorbed.pop().expect("one absorbed slot"));
        } else {
            let mut slot = WindowSlot {
                window: merged,
                acc: self.combiner.create(),
                pending: 0,
                next_pane: 0,
                fired_on_time: merged.max_timestamp() <= watermark,
                deadline: None,
            };
            for s in absorbed {
                self.combiner.merge(&mut slot.acc, s.acc);
                slot.pending += s.pending;
                slot.next_pane = slot.next_pane.max(s.next_pane);
                slot.deadline = match (slot.deadline, s.deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let t = if slot.fired_on_time {
                merged.max_timestamp().saturating_add(self.trigger.allowed_lateness)
            } else {
                merged.max_timestamp()
            };
            self.event_timers.entry(t).or_default().push((key.clone(), merged));
            if let Some(d) = slot.deadline {
                self.processing_timers.entry(d).or_default().push((key.clone(), merged));
            }
            slots.push(slot);
        }
        self.assigned.clear();
        self.assigned.push(merged);
        // The element itself: added to the (merged) session like any window.
        let slots = self.keyed.state.group_mut(group).entry(key.clone()).or_default();
        let at = slots
            .iter()
            .position(|s| s.window == merged)
            .expect("merged slot present");
        let now = cx.processing_time;
        let slot = &mut slots[at];
        self.combiner.add(&mut slot.acc, &r.value);
        after_add(
            &self.trigger,
            &*self.combiner,
            slot,
            &key,
            now,
            &mut self.fired,
            &mut self.processing_timers,
        );
    }

    /// Fires on-time panes and collects garbage up to the current watermark.
    fn fire_event_timers(&mut self) {
        let mut due: Vec<(Timestamp, K, Window)> = Vec::new();
        while let Some(entry) = self.event_timers.first_entry() {
            if *entry.key() > self.keyed.watermark {
                break;
            }
            let (t, list) = entry.remove_entry();
            due.extend(list.into_iter().map(|(k, w)| (t, k, w)));
        }
        if due.is_empty() {
            return;
        }
        due.sort_unstable_by(|a, b| (a.0, &a.2, &a.1).cmp(&(b.0, &b.2, &b.1)));
        due.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
        for (_, key, window) in due {
            self.on_event_timer(key, window);
        }
    }

    fn on_event_timer(&mut self, key: K, window: Window) {
        let group = self.keyed.state.group_of(&key);
        let gc_time = self.gc_time(&window);
        let watermark = self.keyed.watermark;
        let Some(slots) = self.keyed.state.group(group).get(&key) else {
            return;
        };
        let Some(at) = slots.iter().position(|s| s.window == window) else {
            return; // merged away or already collected
        };
        let slots = self.keyed.state.group_mut(group).get_mut(&key).expect("key present");
        let slot = &mut slots[at];
        if !slot.fired_on_time && window.max_timestamp() <= watermark {
            slot.fired_on_time = true;
            let fire = slot.pending > 0 || self.trigger.accumulation == Accumulation::Accumulating;
            if fire {
                let pane = PaneInfo {
                    timing: PaneTiming::OnTime,
                    index: slot.next_pane,
                };
                let out = take_pane(&*self.combiner, self.trigger.accumulation, slot, pane);
                self.fired.push((key.clone(), window, pane, out));
            }
            if gc_time > watermark {
                self.event_timers.entry(gc_time).or_default().push((key, window));
                return;
            }
        } else if slot.fired_on_time && slot.pending > 0 && gc_time <= watermark {
            // late elements still waiting for a processing-time firing: flush them before closing
            let pane = PaneInfo {
                timing: PaneTiming::Late,
                index: slot.next_pane,
            };
            let out = take_pane(&*self.combiner, self.trigger.accumulation, slot, pane);
            self.fired.push((key.clone(), window, pane, out));
        }
        if gc_time <= watermark {
            slots.swap_remove(at);
            if slots.is_empty() {
                self.keyed.state.group_mut(group).remove(&key);
            }
        }
    }

    fn fire_processing_timers(&mut self, now: Timestamp) {
        let mut due: Vec<(Timestamp, K, Window)> = Vec::new();
        while let Some(entry) = self.processing_timers.first_entry() {
            if *entry.key() > now {
                break;
            }
            let (t, list) = entry.remove_entry();
            due.extend(list.into_iter().map(|(k, w)| (t, k, w)));
        }
        if due.is_empty() {
            return;
        }
        due.sort_unstable_by(|a, b| (a.0, &a.2, &a.1).cmp(&(b.0, &b.2, &b.1)));
        due.dedup(); // the same timer registered twice; timers at other times are told apart below
        for (t, key, window) in due {
            let group = self.keyed.state.group_of(&key);
            let Some(slots) = self.keyed.state.group(group).get(&key) else {
                continue;
            };
            // Only the timer of the slot's current deadline fires it: a timer left behind by a
            // pane that fired otherwise (by count, on time) is stale, and firing on it would put
            // the pane at another place in the output than after a restore (timers rebuilt from
            // the deadlines alone).
            let Some(at) = slots.iter().position(|s| s.window == window && s.deadline == Some(t)) else {
                continue;
            };
            let slots = self.keyed.state.group_mut(group).get_mut(&key).expect("key present");
            let slot = &mut slots[at];
            slot.deadline = None;
            if slot.pending == 0 {
                continue;
            }
            let timing = if slot.fired_on_time {
                PaneTiming::Late
            } else {
                PaneTiming::Early
            };
            let pane = PaneInfo {
                timing,
                index: slot.next_pane,
            };
            let out = take_pane(&*self.combiner, self.trigger.accumulation, slot, pane);
            self.fired.push((key, window, pane, out));
        }
    }

    fn rebuild_timers(&mut self) {
        self.event_timers.clear();
        self.processing_timers.clear();
        let lateness = self.trigger.allowed_lateness;
        for (_, key, slots) in self.keyed.state.iter() {
            for s in slots {
                let t = if s.fired_on_time {
                    s.window.max_timestamp().saturating_add(lateness)
                } else {
                    s.window.max_timestamp()
                };
                self.event_timers.entry(t).or_default().push((key.clone(), s.window));
                if let Some(d) = s.deadline {
                    self.processing_timers
                        .entry(d)
                        .or_default()
                        .push((key.clone(), s.window));
                }
            }
        }
    }
}

type Fired<K, O> = Vec<(K, Window, PaneInfo, O)>;

/// The slot of `window` among a key's `slots`, opened (with its event-time timer) if absent.
fn open_slot<'s, K: Clone, T, C: Combiner<T>>(
    slots: &'s mut Vec<WindowSlot<C::Acc>>,
    key: &K,
    window: Window,
    watermark: Timestamp,
    lateness: Timestamp,
    combiner: &C,
    event_timers: &mut BTreeMap<Timestamp, Vec<(K, Window)>>,
) -> &'s mut WindowSlot<C::Acc> {
    let at = match slots.iter().position(|s| s.window == window) {
        Some(at) => at,
        None => {
            let fired_on_time = window.max_timestamp() <= watermark;
            slots.push(WindowSlot {
                window,
                acc: combiner.create(),
                pending: 0,
                next_pane: 0,
                fired_on_time,
                deadline: None,
            });
            let gc = window.max_timestamp().saturating_add(lateness);
            let t = if fired_on_time { gc } else { window.max_timestamp() };
            event_timers.entry(t).or_default().push((key.clone(), window));
            slots.len() - 1
        }
    };
    &mut slots[at]
}

/// Counts an element just added to `slot` and applies the early or late firing condition: fires
/// the pane now (into `fired`), or arms a processing-time deadline and its timer.
fn after_add<K: Clone, T, C: Combiner<T>>(
    trigger: &Trigger,
    combiner: &C,
    slot: &mut WindowSlot<C::Acc>,
    key: &K,
    now: Timestamp,
    fired: &mut Fired<K, C::Out>,
    processing_timers: &mut BTreeMap<Timestamp, Vec<(K, Window)>>,
) {
    slot.pending += 1;
    let (firing, timing) = if slot.fired_on_time {
        (trigger.late_firing(), PaneTiming::Late)
    } else {
        match trigger.early {
            Some(f) => (f, PaneTiming::Early),
            None => return,
        }
    };
    if firing.elements.is_some_and(|n| slot.pending >= n) {
        let pane = PaneInfo {
            timing,
            index: slot.next_pane,
        };
        let out = take_pane(combiner, trigger.accumulation, slot, pane);
        fired.push((key.clone(), slot.window, pane, out));
        return;
    }
    if let (Some(ms), None) = (firing.processing_ms, slot.deadline) {
        let deadline = now.saturating_add(ms);
        slot.deadline = Some(deadline);
        processing_timers
            .entry(deadline)
            .or_default()
            .push((key.clone(), slot.window));
    }
}

/// Extracts a pane from a slot and resets what the accumulation mode says.
fn take_pane<T, C: Combiner<T>>(
    combiner: &C,
    mode: Accumulation,
    slot: &mut WindowSlot<C::Acc>,
    pane: PaneInfo,
) -> C::Out {
    let out = combiner.extract(&slot.acc);
    if mode == Accumulation::Discarding {
        slot.acc = combiner.create();
    }
    slot.pending = 0;
    slot.next_pane = pane.index + 1;
    slot.deadline = None;
    out
}

fn result_id<K: serde::Serialize>(pipeline: &str, operator: &str, key: &K, w: &Window, pane: &PaneInfo) -> ResultId {
    let mut h = Xxh3::new();
    h.update(pipeline.as_bytes());
    h.update(&[0]);
    h.update(operator.as_bytes());
    h.update(&[0]);
    hash_into(&mut h, key);
    h.update(&w.start.to_le_bytes());
    h.update(&w.end.to_le_bytes());
    h.update(&pane.index.to_le_bytes());
    ResultId(h.digest128())
}

impl<K: StateKey, T: Send, C: Combiner<T>, O> Operator<T> for WindowAggregate<K, T, C, O>
where
    C::Out: Send,
{
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        let key = (self.key_fn)(&r.value);
        let mut assigned = std::mem::take(&mut self.assigned);
        assigned.clear();
        self.windowing.assign(r.timestamp, |w| assigned.push(w));
        let last = *assigned.last().unwrap_or(&Window::GLOBAL);
        assigned.retain(|w| !self.is_expired(w));
        if assigned.is_empty() && self.merges_into_live_session(&key, &last) {
            assigned.push(last);
        }
        self.assigned = assigned;
        if self.assigned.is_empty() {
            cx.refuse_late(&self.keyed.id, self.keyed.watermark, &r, Some(last));
            return;
        }
        if self.windowing.is_merging() {
            let proto = self.assigned[0];
            self.add_to_session(cx, key, &r, proto);
        } else {
            self.add_to_windows(cx, key, &r);
        }
        if !self.fired.is_empty() {
            self.emit_fired(cx);
        }
    }

    fn on_watermark(&mut self, cx: &mut Context, watermark: Timestamp) {
        if !self.keyed.advance_watermark(watermark) {
            return;
        }
        self.fire_event_timers();
        self.emit_fired(cx);
        self.next.on_watermark(cx, watermark);
    }

    fn on_processing_time(&mut self, cx: &mut Context) {
        if self
            .processing_timers
            .first_key_value()
            .is_some_and(|(t, _)| *t <= cx.processing_time)
        {
            self.fire_processing_timers(cx.processing_time);
            self.emit_fired(cx);
        }
        self.next.on_processing_time(cx);
    }

    checkpoint_hooks!(keyed, rebuild_timers);
}

/// A [`WindowAggregate`] fed with [`Lifted`] values: raw values as usual, partial aggregates
/// merged into their windows (combiner lifting, [`crate::lift`]).
pub(crate) struct LiftedWindowAggregate<K: StateKey, T, C: Combiner<T>, O> {
    pub(crate) inner: WindowAggregate<K, T, C, O>,
}

impl<K: StateKey, T: Send, C: Combiner<T>, O> Operator<Lifted<K, T, C::Acc>> for LiftedWindowAggregate<K, T, C, O>
where
    C::Out: Send,
{
    fn process(&mut self, cx: &mut Context, r: Record<Lifted<K, T, C::Acc>>) {
        let Record {
            timestamp,
            origin,
            value,
        } = r;
        match value {
            Lifted::Raw(value) => self.inner.process(
                cx,
                Record {
                    timestamp,
                    origin,
                    value,
                },
            ),
            Lifted::Partial {
                key,
                window,
                acc,
                count,
            } => {
                let partial = Record {
                    timestamp,
                    origin,
                    value: (key, window, acc, count),
                };
                self.inner.merge_partial(cx, partial);
                if !self.inner.fired.is_empty() {
                    self.inner.emit_fired(cx);
                }
            }
        }
    }

    fn on_watermark(&mut self, cx: &mut Context, watermark: Timestamp) {
        self.inner.on_watermark(cx, watermark);
    }

    fn on_processing_time(&mut self, cx: &mut Context) {
        self.inner.on_processing_time(cx);
    }

    fn snapshot(
        &mut self,
        full: bool,
        out: &mut Vec<crate::checkpoint::OperatorState>,
    ) -> Result<(), crate::error::StateError> {
        self.inner.snapshot(full, out)
    }

    fn dirty_bytes(&mut self) -> usize {
        self.inner.dirty_bytes()
    }

    fn restore(&mut self, image: &crate::restore::OperatorStates<'_>) -> Result<(), crate::error::StateError> {
        self.inner.restore(image)
    }

    fn adopt(
        &mut self,
        image: &crate::restore::OperatorStates<'_>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<(), crate::error::StateError> {
        self.inner.adopt(image, keep)
    }
}
