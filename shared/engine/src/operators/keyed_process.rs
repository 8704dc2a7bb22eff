//! The keyed process function: user code with per-key state and timers (Flink's
//! `KeyedProcessFunction`).
//!
//! For each record, [`KeyedProcessFunction::process`] gets the record's key, the value, and a
//! [`ProcessContext`] with the key's state (a value the function owns, `None` until it sets one),
//! the current watermark and processing time, and methods to emit results and to register or
//! delete event-time and processing-time timers of that key. When the watermark (or processing
//! time) reaches a timer, [`KeyedProcessFunction::on_timer`] is called with the same context.
//!
//! State and timers live in the key's entry of keyed state (key groups), so they are part of
//! checkpoints; the timer indexes are rebuilt on restore. A key whose state is `None` and which
//! has no timers is removed. Timers fire in (time, key) order; a timer registered for a time the
//! clock already passed fires at the next advance of that clock. Records are never late here:
//! the function sees every record and can compare its timestamp with the watermark itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::checkpointed::{CheckpointedKeyedState, Upgrade};
use super::{Context, Operator};
use crate::record::{Origin, Record, ResultId};
use crate::schema::{StateLayout, StateMigration};
use crate::state::{hash_into, StateKey};
use crate::time::{Timestamp, MIN_TIMESTAMP};

/// Which clock a timer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timer's time.
    EventTime,
    /// Fires when processing time reaches the timer's time.
    ProcessingTime,
}

/// User code with per-key state `S` and timers, producing `O`s from `T`s keyed by `K`.
pub trait KeyedProcessFunction<K, T, S, O>: Send + Sync + 'static {
    /// Handles one record of `key`.
    fn process(&self, key: &K, value: T, cx: &mut ProcessContext<'_, S, O>);
    /// A timer of `key` registered for `time` on `domain` fired.
    fn on_timer(&self, key: &K, time: Timestamp, domain: TimeDomain, cx: &mut ProcessContext<'_, S, O>);
}

/// What a process function sees and can do for one key (see the module documentation).
pub struct ProcessContext<'a, S, O> {
    state: &'a mut Option<S>,
    timers: &'a mut BTreeSet<(TimeDomain, Timestamp)>,
    output: &'a mut Vec<(Timestamp, O)>,
    timestamp: Timestamp,
    watermark: Timestamp,
    processing_time: Timestamp,
}

impl<S, O> ProcessContext<'_, S, O> {
    /// The key's state (`None` until set; set it to `None` to clear it).
    pub fn state(&mut self) -> &mut Option<S> {
        self.state
    }

    /// The event time of the record being processed, or the time of the firing timer.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The operator's current watermark.
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The current processing time.
    pub fn processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// Emits `value` with the current timestamp.
    pub fn emit(&mut self, value: O) {
        self.output.push((self.timestamp, value));
    }

    /// Emits `value` with event time `timestamp`.
    pub fn emit_at(&mut self, timestamp: Timestamp, value: O) {
        self.output.push((timestamp, value));
    }

    /// Registers a timer of this key (registering the same timer twice has no effect).
    pub fn register_timer(&mut self, domain: TimeDomain, time: Timestamp) {
        self.timers.insert((domain, time));
    }

    /// Deletes a timer of this key, if it is registered.
    pub fn delete_timer(&mut self, domain: TimeDomain, time: Timestamp) {
        self.timers.remove(&(domain, time));
    }
}

/// One key's state and timers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyEntry<S> {
    state: Option<S>,
    timers: BTreeSet<(TimeDomain, Timestamp)>,
}

impl<S> KeyEntry<S> {
    fn is_empty(&self) -> bool {
        self.state.is_none() && self.timers.is_empty()
    }
}

/// A key group's entries as generic over the function's state type (what a migration decodes).
struct EntryLayout<K>(std::marker::PhantomData<K>);

impl<K: StateKey> StateLayout for EntryLayout<K> {
    type With<A: Serialize + DeserializeOwned> = Vec<(K, KeyEntry<A>)>;

    fn map<A: Serialize + DeserializeOwned, B: Serialize + DeserializeOwned>(
        entries: Self::With<A>,
        f: &dyn Fn(A) -> B,
    ) -> Self::With<B> {
        entries
            .into_iter()
            .map(|(k, e)| {
                let entry = KeyEntry {
                    state: e.state.map(f),
                    timers: e.timers,
                };
                (k, entry)
            })
            .collect()
    }
}

/// See the module documentation.
pub(crate) struct KeyedProcess<K: StateKey, T, S, O> {
    key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
    function: Arc<dyn KeyedProcessFunction<K, T, S, O>>,
    next: Box<dyn Operator<O>>,
    /// Each key's state and timers, the watermark.
    keyed: CheckpointedKeyedState<K, KeyEntry<S>>,
    /// (domain, time) -> keys with such a timer; derived from the entries.
    timers: BTreeMap<(TimeDomain, Timestamp), BTreeSet<K>>,
}

impl<K, T, S, O> KeyedProcess<K, T, S, O>
where
    K: StateKey,
    T: 'static,
    S: Serialize + DeserializeOwned + Send + 'static,
    O: 'static,
{
    /// The operator `id`; `migration` reads the state of older schema versions.
    pub(crate) fn new<M: StateMigration<S>>(
        id: String,
        max_key_groups: u16,
        key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
        function: Arc<dyn KeyedProcessFunction<K, T, S, O>>,
        migration: Arc<M>,
        next: Box<dyn Operator<O>>,
    ) -> Self {
        let upgrade: Upgrade<K, KeyEntry<S>> =
            Arc::new(move |version, bytes| migration.upgrade::<EntryLayout<K>>(version, bytes));
        KeyedProcess {
            key_fn,
            function,
            next,
            keyed: CheckpointedKeyedState::new(id, max_key_groups, ()).upgrading(upgrade),
            timers: BTreeMap::new(),
        }
    }

    /// Runs `call` on `key`'s entry, then reconciles its timers with the index and emits what it
    /// produced; `cause` makes the results' ids deterministic.
    fn with_key(
        &mut self,
        cx: &mut Context,
        key: K,
        timestamp: Timestamp,
        cause: &[u8],
        call: impl FnOnce(&dyn KeyedProcessFunction<K, T, S, O>, &K, &mut ProcessContext<'_, S, O>),
    ) {
        let group = self.keyed.state.group_of(&key);
        let map = self.keyed.state.group_mut(group);
        let mut entry = map.remove(&key).unwrap_or(KeyEntry {
            state: None,
            timers: BTreeSet::new(),
        });
        let before = entry.timers.clone();
        let mut output = Vec::new();
        {
            let mut pcx = ProcessContext {
                state: &mut entry.state,
                timers: &mut entry.timers,
                output: &mut output,
                timestamp,
                watermark: self.keyed.watermark,
                processing_time: cx.processing_time,
            };
            call(&*self.function, &key, &mut pcx);
        }
        for t in before.difference(&entry.timers) {
            if let Some(keys) = self.timers.get_mut(t) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.timers.remove(t);
                }
            }
        }
        for t in entry.timers.difference(&before) {
            self.timers.entry(*t).or_default().insert(key.clone());
        }
        if !entry.is_empty() {
            self.keyed.state.group_mut(group).insert(key.clone(), entry);
        }
        for (i, (ts, value)) in output.into_iter().enumerate() {
            let id = self.result_id(&cx.pipeline, &key, cause, i as u32);
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

    fn result_id(&self, pipeline: &str, key: &K, cause: &[u8], index: u32) -> ResultId {
        let mut h = Xxh3::new();
        h.update(pipeline.as_bytes());
        h.update(&[0]);
        h.update(self.keyed.id.as_bytes());
        h.update(&[0]);
        hash_into(&mut h, key);
        h.update(cause);
        h.update(&index.to_le_bytes());
        ResultId(h.digest128())
    }

    /// Fires every timer of `domain` at or before `now`, in (time, key) order, including timers
    /// registered by the timers that fire.
    fn fire(&mut self, cx: &mut Context, domain: TimeDomain, now: Timestamp) {
        loop {
            let due = self
                .timers
                .range((domain, MIN_TIMESTAMP)..=(domain, now))
                .next()
                .map(|(t, keys)| (*t, keys.iter().next().cloned()));
            let Some(((_, time), Some(key))) = due else {
                return;
            };
            let group = self.keyed.state.group_of(&key);
            if let Some(entry) = self.keyed.state.group_mut(group).get_mut(&key) {
                entry.timers.remove(&(domain, time));
            }
            if let Some(keys) = self.timers.get_mut(&(domain, time)) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.timers.remove(&(domain, time));
                }
            }
            let mut cause = vec![match domain {
                TimeDomain::EventTime => 1u8,
                TimeDomain::ProcessingTime => 2u8,
            }];
            cause.extend_from_slice(&time.to_le_bytes());
            let timestamp = match domain {
                TimeDomain::EventTime => time,
                // A processing-time timer has no event time of its own: its results carry the watermark.
                TimeDomain::ProcessingTime => self.keyed.watermark,
            };
            self.with_key(cx, key, timestamp, &cause, |f, k, pcx| f.on_timer(k, time, domain, pcx));
        }
    }

    fn rebuild_timers(&mut self) {
        self.timers.clear();
        for (_, key, entry) in self.keyed.state.iter() {
            for t in &entry.timers {
                self.timers.entry(*t).or_default().insert(key.clone());
            }
        }
    }
}

impl<K, T, S, O> Operator<T> for KeyedProcess<K, T, S, O>
where
    K: StateKey,
    T: Send + 'static,
    S: Serialize + DeserializeOwned + Send + 'static,
    O: Send + 'static,
{
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        let key = (self.key_fn)(&r.value);
        let mut cause = vec![0u8];
        cause.extend_from_slice(&r.origin.result_id(&cx.pipeline).0.to_le_bytes());
        let value = r.value;
        self.with_key(cx, key, r.timestamp, &cause, move |f, k, pcx| f.process(k, value, pcx));
    }

    fn on_watermark(&mut self, cx: &mut Context, watermark: Timestamp) {
        if !self.keyed.advance_watermark(watermark) {
            return;
        }
        self.fire(cx, TimeDomain::EventTime, watermark);
        self.next.on_watermark(cx, watermark);
    }

    fn on_processing_time(&mut self, cx: &mut Context) {
        let now = cx.processing_time;
        self.fire(cx, TimeDomain::ProcessingTime, now);
        self.next.on_processing_time(cx);
    }

    checkpoint_hooks!(keyed, rebuild_timers);
}
