//! Operators: the steps of a pipeline, one per file.
//!
//! Every operator implements [`Operator`]: hooks for a record, a watermark, an advance of
//! processing time, a checkpoint and a restore. Operators are chained; each owns the next one and
//! pushes its results into it. Stateless operators forward every hook (`stateless_hooks!`);
//! stateful operators keep keyed state in key groups, their own watermark, and timers derived from
//! their state, and share one implementation of their checkpoint hooks (`checkpoint_hooks!` over
//! `CheckpointedKeyedState`).

/// The checkpoint hooks `snapshot`, `restore` and `adopt` of an operator, each ending with
/// `self.next`'s. Without arguments, a stateless operator's: they only forward. With
/// `(state, rebuild)`, a stateful operator's: first the hook of its
/// [`checkpointed::CheckpointedKeyedState`] in field `state`, then, after a restore or an
/// adoption that found the operator's state, `self.rebuild()` (which rebuilds what the operator
/// derives from its state: timers, expiry queues).
macro_rules! checkpoint_hooks {
    ($($state:ident, $rebuild:ident)?) => {
        fn snapshot(
            &mut self,
            full: bool,
            out: &mut Vec<$crate::checkpoint::OperatorState>,
        ) -> Result<(), $crate::error::StateError> {
            $(out.push(self.$state.snapshot(full)?);)?
            self.next.snapshot(full, out)
        }
        fn dirty_bytes(&mut self) -> usize {
            0 $(+ self.$state.state.dirty_bytes())? + self.next.dirty_bytes()
        }
        fn restore(&mut self, image: &$crate::restore::OperatorStates<'_>) -> Result<(), $crate::error::StateError> {
            $(if self.$state.restore(image)? {
                self.$rebuild();
            })?
            self.next.restore(image)
        }
        fn adopt(
            &mut self,
            image: &$crate::restore::OperatorStates<'_>,
            keep: &dyn Fn(&[u8]) -> bool,
        ) -> Result<(), $crate::error::StateError> {
            $(if self.$state.adopt(image, keep)? {
                self.$rebuild();
            })?
            self.next.adopt(image, keep)
        }
    };
}

/// The hooks of a stateless operator other than `process`: each goes straight to `self.next`.
macro_rules! stateless_hooks {
    () => {
        fn on_watermark(&mut self, cx: &mut $crate::operators::Context, wm: $crate::time::Timestamp) {
            self.next.on_watermark(cx, wm);
        }
        fn on_processing_time(&mut self, cx: &mut $crate::operators::Context) {
            self.next.on_processing_time(cx);
        }
        checkpoint_hooks!();
    };
}

/// The hooks of the last operator of a chain other than `process`: nothing follows it and it
/// keeps no state.
macro_rules! terminal_hooks {
    () => {
        fn on_watermark(&mut self, _: &mut $crate::operators::Context, _: $crate::time::Timestamp) {}
        fn on_processing_time(&mut self, _: &mut $crate::operators::Context) {}
        fn snapshot(
            &mut self,
            _: bool,
            _: &mut Vec<$crate::checkpoint::OperatorState>,
        ) -> Result<(), $crate::error::StateError> {
            Ok(())
        }
        fn dirty_bytes(&mut self) -> usize {
            0
        }
        fn restore(&mut self, _: &$crate::restore::OperatorStates<'_>) -> Result<(), $crate::error::StateError> {
            Ok(())
        }
        fn adopt(
            &mut self,
            _: &$crate::restore::OperatorStates<'_>,
            _: &dyn Fn(&[u8]) -> bool,
        ) -> Result<(), $crate::error::StateError> {
            Ok(())
        }
    };
}

mod checkpointed;
pub(crate) mod deduplicate;
pub(crate) mod event_time_buckets;
mod filter;
mod flat_map;
mod interval_join;
mod keyed_process;
mod lookup_join;
mod map;
mod shuffle_sink;
mod sink;
mod window_aggregate;

use std::any::Any;

use crate::checkpoint::OperatorState;
use crate::error::StateError;
use crate::record::{LateRecord, Origin, Record};
use crate::restore::OperatorStates;
use crate::time::Timestamp;
use crate::window::Window;

pub(crate) use deduplicate::Deduplicate;
pub(crate) use event_time_buckets::BucketResults;
pub use event_time_buckets::{ClosedBucket, EventTimeBuckets};
pub(crate) use filter::{Filter, FilterMap};
pub(crate) use flat_map::FlatMap;
pub use interval_join::IntervalJoinSide;
pub(crate) use interval_join::{IntervalJoin, PairFn};
pub(crate) use keyed_process::KeyedProcess;
pub use keyed_process::{KeyedProcessFunction, ProcessContext, TimeDomain};
pub(crate) use lookup_join::LookupJoin;
pub use lookup_join::LookupTable;
pub(crate) use map::Map;
pub(crate) use shuffle_sink::ShuffleSink;
pub(crate) use sink::Sink;
pub(crate) use window_aggregate::{LiftedWindowAggregate, ResultFn, WindowAggregate};

/// What an operator may touch besides its own state while it handles a hook.
pub struct Context {
    /// The pipeline's name (part of every result id).
    pub pipeline: String,
    /// The key-group count.
    pub max_key_groups: u16,
    /// Current processing time.
    pub processing_time: Timestamp,
    /// Records refused as too late, waiting to be drained.
    pub late: Vec<LateRecord>,
    /// Records refused as too late, in total.
    pub late_total: u64,
    /// Results produced, in total.
    pub results_total: u64,
    /// Values dropped by `deduplicate` as repeats of an id already seen, in total.
    pub duplicates_total: u64,
    /// The pipeline's output buffer (a `Vec<Output<Out>>` behind `Any`).
    pub(crate) output: Box<dyn Any + Send>,
    /// The pipeline's closed event-time buckets (a `Vec<ClosedBucket<Out>>` behind `Any`; empty
    /// unless the pipeline ends with [`crate::Stream::sink_with_buckets`]).
    pub(crate) buckets: Box<dyn Any + Send>,
}

impl Context {
    /// Routes `record` to the late side output: operator `operator`, at watermark `watermark`,
    /// refused it as too late (for `window`, the latest window it would have belonged to).
    pub(crate) fn refuse_late<T>(
        &mut self,
        operator: &str,
        watermark: Timestamp,
        record: &Record<T>,
        window: Option<Window>,
    ) {
        self.late_total += 1;
        let (partition, offset) = match record.origin {
            Origin::Input { partition, offset, .. } => (Some(partition), Some(offset)),
            _ => (None, None),
        };
        self.late.push(LateRecord {
            operator: operator.to_owned(),
            partition,
            offset,
            timestamp: record.timestamp,
            watermark,
            window,
        });
    }
}

/// A step of a pipeline. See the module documentation.
pub trait Operator<In>: Send {
    /// Handles one record.
    fn process(&mut self, cx: &mut Context, record: Record<In>);
    /// The watermark advanced to `watermark`: fire what is due, then forward it.
    fn on_watermark(&mut self, cx: &mut Context, watermark: Timestamp);
    /// Processing time advanced to `cx.processing_time`: fire what is due, then forward it.
    fn on_processing_time(&mut self, cx: &mut Context);
    /// Appends the state of this operator and the ones after it (changed key groups only,
    /// unless `full`).
    fn snapshot(&mut self, full: bool, out: &mut Vec<OperatorState>) -> Result<(), StateError>;
    /// The bytes of keyed state the next incremental snapshot of this operator and the ones after
    /// it would encode (see [`crate::state::KeyedState::dirty_bytes`]).
    fn dirty_bytes(&mut self) -> usize;
    /// Replaces the state of this operator and the ones after it with `image`'s (each operator
    /// reads its state by its id; one that finds none keeps its empty state).
    fn restore(&mut self, image: &OperatorStates<'_>) -> Result<(), StateError>;
    /// Adds to this operator's state (and the ones after it) the keys of `image` for which
    /// `keep(postcard(key))` holds, marking their groups dirty; the operator watermark becomes the
    /// larger of the two. Used to take over the state of closed parent shards.
    fn adopt(&mut self, image: &OperatorStates<'_>, keep: &dyn Fn(&[u8]) -> bool) -> Result<(), StateError>;
}
