//! Shared inputs and helpers of the engine's behaviour tests.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use shardflow_engine::{Output, PaneInfo, PaneTiming, Timestamp, WatermarkStrategy, Window};

/// A small input event: a key, an event time, a value, and the input (join side) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ev {
    pub key: u32,
    pub ts: Timestamp,
    pub v: i64,
    pub side: u8,
}

/// An event of side 0.
pub fn ev(key: u32, ts: Timestamp, v: i64) -> Ev {
    Ev { key, ts, v, side: 0 }
}

/// An event of side `side`.
pub fn ev_side(key: u32, ts: Timestamp, v: i64, side: u8) -> Ev {
    Ev { key, ts, v, side }
}

/// Bounded out-of-orderness of `ms`, no idleness.
pub fn ooo(ms: i64) -> WatermarkStrategy {
    WatermarkStrategy::bounded_out_of_orderness(ms).expect("non-negative")
}

pub fn early(index: u32) -> PaneInfo {
    PaneInfo {
        timing: PaneTiming::Early,
        index,
    }
}

pub fn on_time(index: u32) -> PaneInfo {
    PaneInfo {
        timing: PaneTiming::OnTime,
        index,
    }
}

pub fn late(index: u32) -> PaneInfo {
    PaneInfo {
        timing: PaneTiming::Late,
        index,
    }
}

pub fn w(start: Timestamp, end: Timestamp) -> Window {
    Window::new(start, end)
}

/// `(window, pane, value)` of every output, in order (panics on an output without a pane).
pub fn panes<T: Clone>(outs: &[Output<T>]) -> Vec<(Window, PaneInfo, T)> {
    outs.iter()
        .map(|o| {
            let (window, pane) = o.pane.expect("a windowed result carries its pane");
            (window, pane, o.value.clone())
        })
        .collect()
}

/// The values of the outputs, in order.
pub fn values<T: Clone>(outs: &[Output<T>]) -> Vec<T> {
    outs.iter().map(|o| o.value.clone()).collect()
}
