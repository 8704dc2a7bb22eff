//! Event-time buckets: a pipeline's results, besides going out one by one, collected per
//! event-time bucket in keyed state and handed out as one [`ClosedBucket`] when the watermark
//! passes the bucket (Firehose-like buffering, but deterministic).
//!
//! The operator sits in front of the sink ([`crate::Stream::sink_with_buckets`]). Each record
//! is forwarded unchanged (same id) and a copy is kept under the key `bucket start`
//! (`timestamp` rounded down to a multiple of the width). When the operator's watermark reaches
//! `start + width - 1 + grace`, the bucket is removed from state and its results, sorted by id,
//! go to the engine's bucket output ([`crate::Engine::drain_buckets`]).
//!
//! Why it is exact: the engine's results and watermarks do not depend on how its input is cut
//! into batches, and neither does what a bucket holds when it closes. A stage that reprocesses
//! records after a crash closes the same buckets with the same results; a writer that names the
//! object of a bucket after its start and its smallest result id (unique across shards: every
//! result is produced by one shard) overwrites it with the same bytes. A result arriving for a
//! bucket that already closed (possible only when `grace` is shorter than the pipeline's allowed
//! lateness) opens the bucket again and closes it with the next watermark advance, as a second
//! bucket of disjoint results.
//!
//! Merging shards: a child adopts every open bucket of its parents, uniting the results of the
//! same bucket. Splitting: the bucket key says nothing about which child owns a result, so
//! every child would adopt every open bucket; a stage using buckets must not be split (the
//! Lambda stage refuses splits of stages that do not declare their keying).

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::checkpointed::CheckpointedKeyedState;
use super::{Context, Operator};
use crate::error::StateError;
use crate::record::{Origin, Output, Record, ResultId};
use crate::restore::OperatorStates;
use crate::time::{DurationMs, Timestamp};
use crate::trigger::PaneInfo;
use crate::window::Window;

/// The operator kind (default ids `event_time_buckets-{n}`).
pub(crate) const KIND: &str = "event_time_buckets";

/// How results are bucketed: buckets of `width_ms` of event time, closed `grace_ms` after the
/// watermark passed their end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTimeBuckets {
    width_ms: DurationMs,
    grace_ms: DurationMs,
}

impl EventTimeBuckets {
    /// Buckets `width_ms` wide, closed as soon as the watermark passes their last millisecond.
    /// `None` unless the width is positive.
    pub fn new(width_ms: DurationMs) -> Option<Self> {
        (width_ms > 0).then_some(EventTimeBuckets { width_ms, grace_ms: 0 })
    }

    /// The same buckets, closed `grace_ms` later (give a pipeline's allowed lateness here so
    /// that late panes still land in their bucket). `None` if `grace_ms` is negative.
    pub fn with_grace(self, grace_ms: DurationMs) -> Option<Self> {
        (grace_ms >= 0).then_some(EventTimeBuckets { grace_ms, ..self })
    }

    /// The bucket width, ms.
    pub fn width_ms(&self) -> DurationMs {
        self.width_ms
    }

    /// The grace after a bucket's end, ms.
    pub fn grace_ms(&self) -> DurationMs {
        self.grace_ms
    }

    /// The start of the bucket holding `timestamp`.
    pub fn start_of(&self, timestamp: Timestamp) -> Timestamp {
        timestamp.div_euclid(self.width_ms).saturating_mul(self.width_ms)
    }

    /// The watermark at which the bucket starting at `start` closes.
    pub fn closes_at(&self, start: Timestamp) -> Timestamp {
        start.saturating_add(self.width_ms - 1).saturating_add(self.grace_ms)
    }
}

/// The results of one event-time bucket, handed out once when it closed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedBucket<T> {
    /// The bucket's first millisecond.
    pub start: Timestamp,
    /// The end of the bucket (exclusive).
    pub end: Timestamp,
    /// Its results, sorted by id (never empty).
    pub results: Vec<Output<T>>,
}

impl<T> ClosedBucket<T> {
    /// The smallest result id of the bucket: with `start`, a name of the bucket unique across
    /// the shards of a stage and the same every time the bucket closes.
    pub fn first_id(&self) -> Option<ResultId> {
        self.results.first().map(|o| o.id)
    }
}

/// One result as kept in state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept<T> {
    id: ResultId,
    timestamp: Timestamp,
    pane: Option<(Window, PaneInfo)>,
    value: T,
}

/// See the module documentation.
pub(crate) struct BucketResults<T> {
    buckets: EventTimeBuckets,
    max_key_groups: u16,
    next: Box<dyn Operator<T>>,
    /// The results of each open bucket, by its start; the watermark.
    keyed: CheckpointedKeyedState<Timestamp, Vec<Kept<T>>>,
    /// Starts of the open buckets (derived from the state).
    open: BTreeSet<Timestamp>,
}

impl<T> BucketResults<T>
where
    T: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(id: String, max_key_groups: u16, buckets: EventTimeBuckets, next: Box<dyn Operator<T>>) -> Self {
        BucketResults {
            buckets,
            max_key_groups,
            next,
            keyed: CheckpointedKeyedState::new(id, max_key_groups, ()),
            open: BTreeSet::new(),
        }
    }

    fn rebuild(&mut self) {
        self.open = self.keyed.state.iter().map(|(_, start, _)| *start).collect();
    }

    /// Adds `results` to the bucket starting at `start`, skipping ids it already holds.
    fn add(&mut self, start: Timestamp, results: impl IntoIterator<Item = Kept<T>>) {
        let group = self.keyed.state.group_of(&start);
        let kept = self.keyed.state.group_mut(group).entry(start).or_default();
        for r in results {
            if !kept.iter().any(|k| k.id == r.id) {
                kept.push(r);
            }
        }
        self.open.insert(start);
    }

    /// Closes every bucket due at `watermark`, oldest first, into the engine's bucket output.
    fn close_due(&mut self, cx: &mut Context, watermark: Timestamp) {
        let due: Vec<Timestamp> = self
            .open
            .iter()
            .copied()
            .take_while(|start| self.buckets.closes_at(*start) <= watermark)
            .collect();
        for start in due {
            self.open.remove(&start);
            let group = self.keyed.state.group_of(&start);
            let Some(mut kept) = self.keyed.state.group_mut(group).remove(&start) else {
                continue;
            };
            kept.sort_unstable_by_key(|k| k.id);
            let bucket = ClosedBucket {
                start,
                end: start.saturating_add(self.buckets.width_ms),
                results: kept
                    .into_iter()
                    .map(|k| Output {
                        id: k.id,
                        timestamp: k.timestamp,
                        pane: k.pane,
                        value: k.value,
                    })
                    .collect(),
            };
            if let Some(out) = cx.buckets.downcast_mut::<Vec<ClosedBucket<T>>>() {
                out.push(bucket);
            } else {
                debug_assert!(false, "bucket output of the wrong type");
            }
        }
    }
}

impl<T> Operator<T> for BucketResults<T>
where
    T: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        let pane = match r.origin {
            Origin::Pane { window, pane, .. } => Some((window, pane)),
            _ => None,
        };
        let kept = Kept {
            id: r.origin.result_id(&cx.pipeline),
            timestamp: r.timestamp,
            pane,
            value: r.value.clone(),
        };
        self.add(self.buckets.start_of(r.timestamp), [kept]);
        self.next.process(cx, r);
    }

    fn on_watermark(&mut self, cx: &mut Context, watermark: Timestamp) {
        // A bucket reopened by a late result closes at the next advance, even a small one.
        self.keyed.advance_watermark(watermark);
        self.close_due(cx, self.keyed.watermark);
        self.next.on_watermark(cx, watermark);
    }

    fn on_processing_time(&mut self, cx: &mut Context) {
        self.next.on_processing_time(cx);
    }

    fn snapshot(&mut self, full: bool, out: &mut Vec<crate::checkpoint::OperatorState>) -> Result<(), StateError> {
        out.push(self.keyed.snapshot(full)?);
        self.next.snapshot(full, out)
    }

    fn dirty_bytes(&mut self) -> usize {
        self.keyed.state.dirty_bytes() + self.next.dirty_bytes()
    }

    fn restore(&mut self, image: &OperatorStates<'_>) -> Result<(), StateError> {
        if self.keyed.restore(image)? {
            self.rebuild();
        }
        self.next.restore(image)
    }

    /// Unites each open bucket of the parent with this shard's bucket of the same start (the
    /// bucket key is not a partition key: `keep` does not apply, see the module documentation).
    fn adopt(&mut self, image: &OperatorStates<'_>, keep: &dyn Fn(&[u8]) -> bool) -> Result<(), StateError> {
        let mut parent: CheckpointedKeyedState<Timestamp, Vec<Kept<T>>> =
            CheckpointedKeyedState::new(self.keyed.id.clone(), self.max_key_groups, ());
        if parent.restore(image)? {
            let buckets: Vec<(Timestamp, Vec<Kept<T>>)> = parent
                .state
                .iter()
                .map(|(_, start, kept)| (*start, kept.clone()))
                .collect();
            for (start, kept) in buckets {
                self.add(start, kept);
            }
            self.keyed.advance_watermark(parent.watermark);
        }
        self.next.adopt(image, keep)
    }
}
