//! Windows and window assigners.
//!
//! A [`Window`] is a half-open interval `[start, end)` of event time. Windows are aligned to the
//! Unix epoch (plus an optional offset), as in Flink and Beam. A window fires when the watermark
//! reaches its last millisecond ([`Window::max_timestamp`]).

mod global;
mod session;
mod sliding;
mod tumbling;

use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::time::{DurationMs, Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};

pub use global::GlobalWindows;
pub use session::{LateSessionRule, SessionWindows};
pub use sliding::SlidingWindows;
pub use tumbling::TumblingWindows;

/// A half-open interval of event time, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond in the window.
    pub start: Timestamp,
    /// First millisecond after the window.
    pub end: Timestamp,
}

impl Window {
    /// The window `[start, end)`.
    pub const fn new(start: Timestamp, end: Timestamp) -> Self {
        Window { start, end }
    }

    /// The one window of the global windowing: all of time.
    pub const GLOBAL: Window = Window {
        start: MIN_TIMESTAMP,
        end: MAX_TIMESTAMP,
    };

    /// The last millisecond that belongs to the window; the window fires when the watermark
    /// reaches it.
    pub const fn max_timestamp(&self) -> Timestamp {
        if self.end == MAX_TIMESTAMP {
            MAX_TIMESTAMP
        } else {
            self.end - 1
        }
    }

    /// Whether `ts` lies in the window.
    pub const fn contains(&self, ts: Timestamp) -> bool {
        self.start <= ts && ts < self.end
    }

    /// Whether two windows overlap (share at least one millisecond).
    pub const fn intersects(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The smallest window that covers both.
    pub fn span(&self, other: &Window) -> Window {
        Window::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// How records are assigned to windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Windowing {
    /// Fixed-size, non-overlapping windows.
    Tumbling(TumblingWindows),
    /// Fixed-size windows starting every `slide` (hopping windows); a record belongs to `size / slide` of them.
    Sliding(SlidingWindows),
    /// Per-key windows that close after a gap of inactivity; overlapping sessions merge.
    Session(SessionWindows),
    /// One window for all of time, fired by early firings or at the end of a bounded input.
    Global(GlobalWindows),
}

impl Windowing {
    /// Tumbling windows of `size` ms, aligned to the epoch: each record belongs to exactly one.
    ///
    /// ```
    /// use shardflow_engine::{combine::Sum, Pipeline, Window, Windowing};
    ///
    /// // (key, event time, amount)
    /// let sums = Pipeline::builder("tumbling")
    ///     .event_time(|r: &(char, i64, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::tumbling(10).unwrap())
    ///     .aggregate(Sum::of(|r: &(char, i64, i64)| r.2), |key, window, _pane, sum| (*key, *window, sum))
    ///     .sink("sums");
    /// let mut engine = sums.engine();
    /// let shard = engine.partition("shard-0");
    /// for (offset, r) in [('a', 1, 5), ('a', 9, 7), ('a', 10, 1), ('b', 3, 2)].into_iter().enumerate() {
    ///     engine.process(shard, offset as u64, 0, r);
    /// }
    /// engine.finish();
    /// let sums: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(sums, [('a', Window::new(0, 10), 12), ('b', Window::new(0, 10), 2), ('a', Window::new(10, 20), 1)]);
    /// ```
    pub fn tumbling(size: DurationMs) -> Result<Self, PipelineError> {
        Ok(Windowing::Tumbling(TumblingWindows::new(size, 0)?))
    }

    /// Sliding windows of `size` ms starting every `slide` ms, aligned to the epoch: a record
    /// belongs to every window that covers it.
    ///
    /// ```
    /// use shardflow_engine::{combine::Count, Pipeline, Window, Windowing};
    ///
    /// // (key, event time)
    /// let counts = Pipeline::builder("sliding")
    ///     .event_time(|r: &(char, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::sliding(10, 5).unwrap())
    ///     .aggregate(Count, |_key, window, _pane, n| (*window, n))
    ///     .sink("counts");
    /// let mut engine = counts.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, ('a', 3)); // in [-5, 5) and [0, 10)
    /// engine.process(shard, 1, 0, ('a', 7)); // in [0, 10) and [5, 15)
    /// engine.finish();
    /// let counts: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(counts, [(Window::new(-5, 5), 1), (Window::new(0, 10), 2), (Window::new(5, 15), 1)]);
    /// ```
    pub fn sliding(size: DurationMs, slide: DurationMs) -> Result<Self, PipelineError> {
        Ok(Windowing::Sliding(SlidingWindows::new(size, slide, 0)?))
    }

    /// Session windows closed by `gap` ms of inactivity of a key: a record at `ts` opens
    /// `[ts, ts + gap)`, and overlapping sessions of a key merge, whatever the arrival order.
    /// Sessions that only touch do not merge (Beam's rule; Flink merges them), and a late
    /// element is checked against its own proto-window before merging (Beam's rule; Flink's is
    /// [`SessionWindows::late_elements_merge_first`]): see [`SessionWindows`].
    ///
    /// ```
    /// use shardflow_engine::{combine::Count, Pipeline, Window, Windowing};
    ///
    /// // (key, event time)
    /// let sessions = Pipeline::builder("sessions")
    ///     .event_time(|r: &(char, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::session(10).unwrap())
    ///     .aggregate(Count, |key, window, _pane, n| (*key, *window, n))
    ///     .sink("sessions");
    /// let mut engine = sessions.engine();
    /// let shard = engine.partition("shard-0");
    /// // 0 and 15 are more than a gap apart; 8, arriving last, bridges them into one session.
    /// for (offset, r) in [('a', 0), ('a', 15), ('a', 40), ('a', 8)].into_iter().enumerate() {
    ///     engine.process(shard, offset as u64, 0, r);
    /// }
    /// engine.finish();
    /// let sessions: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(sessions, [('a', Window::new(0, 25), 3), ('a', Window::new(40, 50), 1)]);
    /// ```
    pub fn session(gap: DurationMs) -> Result<Self, PipelineError> {
        Ok(Windowing::Session(SessionWindows::new(gap)?))
    }

    /// The global window: all of a key's records in one window, which fires by early firings
    /// and, at the end of a bounded input, on time.
    ///
    /// ```
    /// use shardflow_engine::{combine::Sum, Firing, PaneTiming, Pipeline, Trigger, Windowing};
    ///
    /// // (key, event time, amount)
    /// let totals = Pipeline::builder("global")
    ///     .event_time(|r: &(char, i64, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::global())
    ///     .trigger(Trigger::at_watermark().with_early_firings(Firing::every_elements(2)))
    ///     .aggregate(Sum::of(|r: &(char, i64, i64)| r.2), |_key, _window, pane, sum| (pane.timing, sum))
    ///     .sink("totals");
    /// let mut engine = totals.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, ('a', 1, 1));
    /// engine.process(shard, 1, 0, ('a', 2, 2)); // the second element fires an early pane
    /// engine.process(shard, 2, 0, ('a', 3, 4));
    /// let early: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(early, [(PaneTiming::Early, 3)]);
    /// engine.finish(); // the end of the input fires the rest
    /// let rest: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(rest, [(PaneTiming::OnTime, 4)]);
    /// ```
    pub fn global() -> Self {
        Windowing::Global(GlobalWindows)
    }

    /// Whether windows of this kind merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, Windowing::Session(_))
    }

    /// Calls `f` with every window a record at `ts` belongs to, latest window last.
    #[inline]
    pub fn assign(&self, ts: Timestamp, f: impl FnMut(Window)) {
        match self {
            Windowing::Tumbling(w) => w.assign(ts, f),
            Windowing::Sliding(w) => w.assign(ts, f),
            Windowing::Session(w) => w.assign(ts, f),
            Windowing::Global(w) => w.assign(ts, f),
        }
    }

    /// The latest-ending window a record at `ts` belongs to (what decides whether it is too late).
    pub fn last_window(&self, ts: Timestamp) -> Window {
        let mut last = Window::GLOBAL;
        self.assign(ts, |w| last = w);
        last
    }
}

/// `ts` rounded down to a multiple of `size` after `offset` (works for negative timestamps).
#[inline]
pub(crate) fn align_down(ts: Timestamp, size: DurationMs, offset: DurationMs) -> Timestamp {
    ts - (ts - offset).rem_euclid(size)
}

pub(crate) fn positive(what: &'static str, v: DurationMs) -> Result<(), PipelineError> {
    if v <= 0 {
        return Err(PipelineError::InvalidParameter {
            what,
            reason: format!("must be positive, got {v}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(w: &Windowing, ts: Timestamp) -> Vec<Window> {
        let mut v = Vec::new();
        w.assign(ts, |x| v.push(x));
        v
    }

    #[test]
    fn tumbling_windows_are_epoch_aligned_and_half_open() {
        let w = Windowing::tumbling(10_000).unwrap();
        assert_eq!(
            windows(&w, 1_704_067_209_999),
            vec![Window::new(1_704_067_200_000, 1_704_067_210_000)]
        );
        assert_eq!(
            windows(&w, 1_704_067_210_000),
            vec![Window::new(1_704_067_210_000, 1_704_067_220_000)]
        );
        assert_eq!(windows(&w, -1), vec![Window::new(-10_000, 0)]);
    }

    #[test]
    fn sliding_windows_cover_size_over_slide_windows_latest_last() {
        let w = Windowing::sliding(10_000, 2_000).unwrap();
        let got = windows(&w, 1_704_067_201_812);
        assert_eq!(got.len(), 5);
        assert_eq!(got[4], Window::new(1_704_067_200_000, 1_704_067_210_000));
        assert_eq!(got[0], Window::new(1_704_067_192_000, 1_704_067_202_000));
        assert!(got.iter().all(|x| x.contains(1_704_067_201_812)));
    }

    #[test]
    fn sliding_with_size_not_a_multiple_of_slide_still_covers_ts() {
        let w = Windowing::sliding(5, 2).unwrap();
        for ts in -20..20 {
            let got = windows(&w, ts);
            assert!(got.iter().all(|x| x.contains(ts)), "{ts}: {got:?}");
            assert!(got.len() == 2 || got.len() == 3, "{ts}: {got:?}");
        }
    }

    #[test]
    fn session_assigns_proto_window_of_gap() {
        let w = Windowing::session(30).unwrap();
        assert_eq!(windows(&w, 100), vec![Window::new(100, 130)]);
    }

    #[test]
    fn zero_sizes_are_refused() {
        assert!(Windowing::tumbling(0).is_err());
        assert!(Windowing::sliding(10, 0).is_err());
        assert!(Windowing::sliding(10, 20).is_err());
        assert!(Windowing::session(-1).is_err());
    }

    #[test]
    fn global_window_fires_only_at_max_watermark() {
        assert_eq!(Window::GLOBAL.max_timestamp(), MAX_TIMESTAMP);
        assert_eq!(windows(&Windowing::global(), 5), vec![Window::GLOBAL]);
    }
}
