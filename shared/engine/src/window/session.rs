//! Session windows: gap-based, merging (the rules are documented on [`SessionWindows`]).

use super::{positive, Window};
use crate::error::PipelineError;
use crate::time::{DurationMs, Timestamp};

/// How a session windowing treats an element whose own proto-window is past the allowed
/// lateness (see [`SessionWindows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LateSessionRule {
    /// Late if its own proto-window is past the allowed lateness (Beam). The default.
    #[default]
    CheckOwnWindow,
    /// Merged first; late only if the merged session is past the allowed lateness (Flink).
    MergeFirst,
}

/// A record at `ts` opens the proto-window `[ts, ts + gap)`; proto-windows of one key that
/// overlap are merged into one session (the windowed operator does the merging).
///
/// # Which sessions merge
/// Sessions of a key merge when they *overlap* (share at least one millisecond). Sessions that
/// only touch do not: with a gap of 1, records at 0 and 1 open `[0, 1)` and `[1, 2)`, two
/// sessions. This is Beam's rule (`MergeOverlappingIntervalWindows`: `start < other.end`);
/// Flink's `TimeWindow.intersects` (`start <= other.end`) merges touching sessions into `[0, 2)`.
/// With Beam's rule a session is a maximal run of records less than `gap` apart (Flink's: at most
/// `gap` apart); a gap one millisecond longer groups records as Flink does, with sessions ending
/// one millisecond later.
///
/// # Late elements
/// An element's proto-window `[ts, ts + gap)` is past the allowed lateness when the watermark has
/// passed its end plus the lateness. What happens then depends on [`LateSessionRule`]:
/// - [`LateSessionRule::CheckOwnWindow`] (the default, Beam's `ReduceFnRunner`): the element is
///   late and dropped, even if its proto-window overlaps a session of the key that is still
///   within the allowed lateness.
/// - [`LateSessionRule::MergeFirst`] (Flink's `WindowOperator` with a `MergingWindowSet`): the
///   proto-window is merged first and the *merged* session is checked, so an element that merges
///   into a session still within the allowed lateness is kept (it extends that session and fires
///   a late pane as the trigger says); one that merges into nothing is late as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    gap: DurationMs,
    late_rule: LateSessionRule,
}

impl SessionWindows {
    /// Sessions closed by `gap` ms without a record of the key, with Beam's rule for late
    /// elements ([`LateSessionRule::CheckOwnWindow`]).
    pub fn new(gap: DurationMs) -> Result<Self, PipelineError> {
        positive("session gap", gap)?;
        Ok(SessionWindows {
            gap,
            late_rule: LateSessionRule::default(),
        })
    }

    /// The same sessions, with Flink's rule for late elements: an element whose own
    /// proto-window is past the allowed lateness is kept if it merges into a session of its key
    /// that is not ([`LateSessionRule::MergeFirst`]).
    ///
    /// ```
    /// use shardflow_engine::window::SessionWindows;
    /// use shardflow_engine::{combine::Count, Pipeline, Trigger, Window, WatermarkStrategy, Windowing};
    ///
    /// // (key, event time); sessions of gap 20 with 20 ms of allowed lateness, accumulating panes.
    /// let run = |sessions: SessionWindows| {
    ///     let counts = Pipeline::builder("sessions")
    ///         .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
    ///         .event_time(|r: &(char, i64)| r.1)
    ///         .key_by(|r| r.0)
    ///         .window(Windowing::Session(sessions))
    ///         .trigger(Trigger::at_watermark().with_allowed_lateness(20).unwrap().accumulating())
    ///         .aggregate(Count, |key, window, _pane, n| (*key, *window, n))
    ///         .sink("sessions");
    ///     let mut engine = counts.engine();
    ///     let shard = engine.partition("shard-0");
    ///     // 'a' opens [25, 45); 'z' moves the watermark to 50: [25, 45) fired on time and is
    ///     // within the lateness (44 + 20 > 50). Then 'a' at 9: its own [9, 29) is past the
    ///     // lateness (28 + 20 <= 50), but it overlaps [25, 45).
    ///     for (offset, r) in [('a', 25), ('z', 50), ('a', 9)].into_iter().enumerate() {
    ///         engine.process(shard, offset as u64, 0, r);
    ///     }
    ///     let a: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).filter(|v| v.0 == 'a').collect();
    ///     (a, engine.metrics().late_records)
    /// };
    /// // Beam's rule (the default): the element is late.
    /// let (panes, late) = run(SessionWindows::new(20).unwrap());
    /// assert_eq!((panes, late), (vec![('a', Window::new(25, 45), 1)], 1));
    /// // Flink's rule: it merges into [9, 45), which is within the lateness, and fires a late pane.
    /// let (panes, late) = run(SessionWindows::new(20).unwrap().late_elements_merge_first());
    /// assert_eq!((panes, late), (vec![('a', Window::new(25, 45), 1), ('a', Window::new(9, 45), 2)], 0));
    /// ```
    pub fn late_elements_merge_first(mut self) -> Self {
        self.late_rule = LateSessionRule::MergeFirst;
        self
    }

    /// The inactivity gap in ms.
    pub fn gap(&self) -> DurationMs {
        self.gap
    }

    /// How an element whose own proto-window is past the allowed lateness is treated.
    pub fn late_rule(&self) -> LateSessionRule {
        self.late_rule
    }

    #[inline]
    pub(crate) fn assign(&self, ts: Timestamp, mut f: impl FnMut(Window)) {
        f(Window::new(ts, ts.saturating_add(self.gap)));
    }
}
