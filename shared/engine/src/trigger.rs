//! Triggers: when a window's pane is emitted, and what it contains.
//!
//! The model is Beam's `AfterWatermark.pastEndOfWindow()` with optional early and late firings:
//! - **early** panes fire before the watermark reaches the window's end, every N elements and/or
//!   N ms of processing time after the first element of the pane;
//! - the **on-time** pane fires when the watermark reaches the window's last millisecond; with
//!   accumulating panes it always fires (so a sink sees the complete result flagged on-time), with
//!   discarding panes only if elements arrived since the last pane;
//! - **late** panes fire for elements that arrive after the on-time pane but within the allowed
//!   lateness (every N late elements and/or N ms of processing time after the first one);
//! - elements later than the allowed lateness go to the late side output and are counted.
//!
//! Every pane carries a [`PaneInfo`] (timing and index) so that a sink can upsert the latest.

use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::time::DurationMs;

/// When a pane fired relative to the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PaneTiming {
    /// Before the watermark reached the end of the window.
    Early,
    /// When the watermark reached the end of the window.
    OnTime,
    /// After the on-time pane, for late data within the allowed lateness.
    Late,
}

impl PaneTiming {
    /// `early`, `on_time` or `late`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PaneTiming::Early => "early",
            PaneTiming::OnTime => "on_time",
            PaneTiming::Late => "late",
        }
    }
}

/// Which pane of a window a result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PaneInfo {
    /// Early, on-time or late.
    pub timing: PaneTiming,
    /// 0 for the window's first pane, then 1, 2, ... (a sink keeps the highest).
    pub index: u32,
}

/// Whether a pane contains everything seen so far in the window or only what arrived since the
/// previous pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accumulation {
    /// Each pane holds only the elements since the previous pane.
    #[default]
    Discarding,
    /// Each pane holds all elements of the window so far (later panes supersede earlier ones).
    Accumulating,
}

/// A repeated firing condition: every `elements` elements and/or `processing_ms` of processing
/// time after the first element of the pane, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Firing {
    /// Fire when this many elements arrived since the last pane.
    pub elements: Option<u32>,
    /// Fire this long (processing time) after the first element since the last pane.
    pub processing_ms: Option<DurationMs>,
}

impl Firing {
    /// Fire after every `n` elements.
    pub fn every_elements(n: u32) -> Self {
        Firing {
            elements: Some(n.max(1)),
            processing_ms: None,
        }
    }

    /// Fire `ms` of processing time after the first element of a pane.
    pub fn every_processing_ms(ms: DurationMs) -> Self {
        Firing {
            elements: None,
            processing_ms: Some(ms),
        }
    }

    /// Also fire after `n` elements.
    pub fn or_elements(mut self, n: u32) -> Self {
        self.elements = Some(n.max(1));
        self
    }
}

/// When panes fire and how they accumulate. The default fires once, on time, discarding, with no
/// allowed lateness (Flink's default event-time trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trigger {
    pub(crate) early: Option<Firing>,
    pub(crate) late: Option<Firing>,
    pub(crate) allowed_lateness: DurationMs,
    pub(crate) accumulation: Accumulation,
}

impl Trigger {
    /// Fire once when the watermark passes the end of the window.
    ///
    /// ```
    /// use shardflow_engine::{combine::Sum, PaneInfo, PaneTiming, Pipeline, Trigger, WatermarkStrategy, Windowing};
    ///
    /// // (key, event time, amount); the watermark trails the latest event time by 0 ms.
    /// let sums = Pipeline::builder("at-watermark")
    ///     .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
    ///     .event_time(|r: &(char, i64, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::tumbling(10).unwrap())
    ///     .trigger(Trigger::at_watermark())
    ///     .aggregate(Sum::of(|r: &(char, i64, i64)| r.2), |key, _window, _pane, sum| (*key, sum))
    ///     .sink("sums");
    /// let mut engine = sums.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, ('a', 1, 5));
    /// engine.process(shard, 1, 0, ('a', 8, 7));
    /// assert!(engine.drain_output().is_empty(), "watermark 8: [0, 10) is still open");
    /// engine.process(shard, 2, 0, ('b', 10, 1)); // watermark 10 passes 9, the window's last ms
    /// let out = engine.drain_output();
    /// assert_eq!(out.len(), 1);
    /// assert_eq!(out[0].value, ('a', 12));
    /// let on_time = PaneInfo { timing: PaneTiming::OnTime, index: 0 };
    /// assert_eq!(out[0].pane.map(|(_window, pane)| pane), Some(on_time));
    /// ```
    pub fn at_watermark() -> Self {
        Trigger::default()
    }

    /// Also fire early panes, before the watermark reaches the end of the window, whenever
    /// `firing` says.
    ///
    /// ```
    /// use shardflow_engine::{combine::Sum, Firing, PaneTiming, Pipeline, Trigger, WatermarkStrategy, Windowing};
    ///
    /// // (key, event time, amount)
    /// let sums = Pipeline::builder("early")
    ///     .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
    ///     .event_time(|r: &(char, i64, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::tumbling(10).unwrap())
    ///     .trigger(Trigger::at_watermark().with_early_firings(Firing::every_elements(2)))
    ///     .aggregate(Sum::of(|r: &(char, i64, i64)| r.2), |_key, _window, pane, sum| (pane.timing, pane.index, sum))
    ///     .sink("sums");
    /// let mut engine = sums.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, ('a', 1, 1));
    /// engine.process(shard, 1, 0, ('a', 2, 2)); // two elements: an early pane
    /// engine.process(shard, 2, 0, ('a', 3, 4));
    /// engine.process(shard, 3, 0, ('b', 10, 0)); // watermark 10: the on-time pane
    /// let panes: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(panes, [(PaneTiming::Early, 0, 3), (PaneTiming::OnTime, 1, 4)]);
    /// ```
    pub fn with_early_firings(mut self, firing: Firing) -> Self {
        self.early = Some(firing);
        self
    }

    /// Keep windows open `ms` after the watermark passed their end; late elements within it fire
    /// late panes (every element, unless [`Trigger::with_late_firings`] says otherwise). Elements
    /// later than that go to the late side output ([`crate::Engine::drain_late`]).
    ///
    /// ```
    /// use shardflow_engine::{combine::Sum, PaneTiming, Pipeline, Trigger, WatermarkStrategy, Window, Windowing};
    ///
    /// // (key, event time, amount)
    /// let sums = Pipeline::builder("late")
    ///     .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
    ///     .event_time(|r: &(char, i64, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::tumbling(10).unwrap())
    ///     .trigger(Trigger::at_watermark().with_allowed_lateness(20).unwrap())
    ///     .aggregate(Sum::of(|r: &(char, i64, i64)| r.2), |_key, window, pane, sum| {
    ///         (*window, pane.timing, pane.index, sum)
    ///     })
    ///     .sink("sums");
    /// let mut engine = sums.engine();
    /// let shard = engine.partition("shard-0");
    /// let [first, second] = [Window::new(0, 10), Window::new(10, 20)];
    /// engine.process(shard, 0, 0, ('a', 1, 1));
    /// engine.process(shard, 1, 0, ('b', 12, 2)); // watermark 12: [0, 10) fires on time
    /// engine.process(shard, 2, 0, ('a', 5, 4)); // late, within the lateness: a late pane
    /// let panes: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(panes, [(first, PaneTiming::OnTime, 0, 1), (first, PaneTiming::Late, 1, 4)]);
    /// engine.process(shard, 3, 0, ('b', 30, 0)); // watermark 30: [0, 10) is closed for good (9 + 20 < 30)
    /// let panes: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(panes, [(second, PaneTiming::OnTime, 0, 2)]);
    /// engine.process(shard, 4, 0, ('a', 6, 8)); // too late: not counted, but set aside
    /// assert!(engine.drain_output().is_empty());
    /// let late = engine.drain_late();
    /// assert_eq!((late.len(), late[0].timestamp, late[0].window), (1, 6, Some(first)));
    /// ```
    pub fn with_allowed_lateness(mut self, ms: DurationMs) -> Result<Self, PipelineError> {
        if ms < 0 {
            return Err(PipelineError::InvalidParameter {
                what: "allowed lateness",
                reason: format!("must not be negative, got {ms}"),
            });
        }
        self.allowed_lateness = ms;
        Ok(self)
    }

    /// How late panes fire (default: one per late element).
    ///
    /// ```
    /// use shardflow_engine::{combine::Count, Firing, PaneTiming, Pipeline, Trigger, WatermarkStrategy, Windowing};
    ///
    /// // (key, event time)
    /// let counts = Pipeline::builder("late-firings")
    ///     .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
    ///     .event_time(|r: &(char, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::tumbling(10).unwrap())
    ///     .trigger(
    ///         Trigger::at_watermark()
    ///             .with_allowed_lateness(100)
    ///             .unwrap()
    ///             .with_late_firings(Firing::every_elements(2)),
    ///     )
    ///     .aggregate(Count, |_key, _window, pane, n| (pane.timing, n))
    ///     .sink("counts");
    /// let mut engine = counts.engine();
    /// let shard = engine.partition("shard-0");
    /// for (offset, r) in [('a', 1), ('b', 50), ('a', 2), ('a', 3), ('a', 4)].into_iter().enumerate() {
    ///     engine.process(shard, offset as u64, 0, r);
    /// }
    /// let panes: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(panes, [(PaneTiming::OnTime, 1), (PaneTiming::Late, 2)], "the fourth waits for a partner");
    /// ```
    pub fn with_late_firings(mut self, firing: Firing) -> Self {
        self.late = Some(firing);
        self
    }

    /// Accumulating panes: each pane holds everything seen so far in the window (a sink keeps the
    /// latest pane). The on-time pane always fires, even with nothing new since the last one.
    ///
    /// ```
    /// use shardflow_engine::{combine::Sum, Firing, PaneTiming, Pipeline, Trigger, Windowing};
    ///
    /// // (key, event time, amount)
    /// let sums = Pipeline::builder("accumulating")
    ///     .event_time(|r: &(char, i64, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::tumbling(10).unwrap())
    ///     .trigger(Trigger::at_watermark().with_early_firings(Firing::every_elements(1)).accumulating())
    ///     .aggregate(Sum::of(|r: &(char, i64, i64)| r.2), |_key, _window, pane, sum| (pane.timing, sum))
    ///     .sink("sums");
    /// let mut engine = sums.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, ('a', 1, 1));
    /// engine.process(shard, 1, 0, ('a', 2, 2));
    /// engine.finish();
    /// let panes: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(panes, [(PaneTiming::Early, 1), (PaneTiming::Early, 3), (PaneTiming::OnTime, 3)]);
    /// ```
    pub fn accumulating(mut self) -> Self {
        self.accumulation = Accumulation::Accumulating;
        self
    }

    /// Discarding panes (the default): each pane holds only what arrived since the previous one
    /// (a sink adds panes up), and a pane with nothing new does not fire.
    ///
    /// ```
    /// use shardflow_engine::{combine::Sum, Firing, PaneTiming, Pipeline, Trigger, Windowing};
    ///
    /// // (key, event time, amount)
    /// let sums = Pipeline::builder("discarding")
    ///     .event_time(|r: &(char, i64, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::tumbling(10).unwrap())
    ///     .trigger(Trigger::at_watermark().with_early_firings(Firing::every_elements(1)).discarding())
    ///     .aggregate(Sum::of(|r: &(char, i64, i64)| r.2), |_key, _window, pane, sum| (pane.timing, sum))
    ///     .sink("sums");
    /// let mut engine = sums.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, ('a', 1, 1));
    /// engine.process(shard, 1, 0, ('a', 2, 2));
    /// engine.finish(); // nothing arrived since the last early pane: no on-time pane
    /// let panes: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(panes, [(PaneTiming::Early, 1), (PaneTiming::Early, 2)]);
    /// ```
    pub fn discarding(mut self) -> Self {
        self.accumulation = Accumulation::Discarding;
        self
    }

    /// The allowed lateness in ms.
    pub fn allowed_lateness(&self) -> DurationMs {
        self.allowed_lateness
    }

    /// The accumulation mode.
    pub fn accumulation(&self) -> Accumulation {
        self.accumulation
    }

    pub(crate) fn late_firing(&self) -> Firing {
        self.late.unwrap_or(Firing::every_elements(1))
    }
}
