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
    pub fn at_watermark() -> Self {
        Trigger::default()
    }

    /// Also fire early panes.
    pub fn with_early_firings(mut self, firing: Firing) -> Self {
        self.early = Some(firing);
        self
    }

    /// Keep windows open `ms` after the watermark passed their end; late elements within it fire
    /// late panes (every element, unless [`Trigger::with_late_firings`] says otherwise).
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
    pub fn with_late_firings(mut self, firing: Firing) -> Self {
        self.late = Some(firing);
        self
    }

    /// Accumulating panes: each pane holds everything seen so far in the window.
    pub fn accumulating(mut self) -> Self {
        self.accumulation = Accumulation::Accumulating;
        self
    }

    /// Discarding panes: each pane holds only what arrived since the previous one.
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
