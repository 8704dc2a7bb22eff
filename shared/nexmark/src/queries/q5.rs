//! q5: hot items — per hopping window (10 s, every 2 s), every auction whose bid count is the
//! window's maximum (ties kept).
//!
//! Two windowed stages: bid counts per (auction, hopping window); then, keyed by the hopping
//! window's start, the counts with the largest value. A first-stage result carries the event time
//! of its window's last millisecond, so a 2 s tumbling window in the second stage catches exactly
//! the results of one hopping window, and fires as soon as the watermark has passed it.

use serde::{Deserialize, Serialize};
use shardflow_engine::combine::Count;
use shardflow_engine::{Pipeline, PipelineError, Trigger, Windowing};

use super::{HOP_SIZE_MS, HOP_SLIDE_MS};
use crate::combine::KeepMax;
use crate::csv::{CsvLine, CsvRow};
use crate::model::{Bid, Event};

/// The bid count of one auction in one hopping window (also q5's result row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q5Row {
    /// Auction id.
    pub auction: i64,
    /// Bids on it in the window.
    pub num: u64,
    /// Window start, epoch ms.
    pub window_start_ms: i64,
    /// Window end (exclusive), epoch ms.
    pub window_end_ms: i64,
}

impl CsvRow for Q5Row {
    const HEADER: &'static str = "auction,num,window_start_ms,window_end_ms";
    fn write_csv(&self, line: &mut CsvLine<'_>) {
        line.int(self.auction)
            .uint(self.num)
            .int(self.window_start_ms)
            .int(self.window_end_ms);
    }
}

/// The q5 pipeline.
pub fn pipeline() -> Result<Pipeline<Event, Q5Row>, PipelineError> {
    Ok(super::events("nexmark-q5")?
        .filter_map(Event::into_bid)
        .key_by(|b: &Bid| b.auction)
        .window(Windowing::sliding(HOP_SIZE_MS, HOP_SLIDE_MS)?)
        .trigger(Trigger::at_watermark())
        .aggregate(Count, |auction, window, _pane, num| Q5Row {
            auction: *auction,
            num,
            window_start_ms: window.start,
            window_end_ms: window.end,
        })
        .key_by(|c: &Q5Row| c.window_start_ms)
        .window(Windowing::tumbling(HOP_SLIDE_MS)?)
        .trigger(Trigger::at_watermark())
        .aggregate(KeepMax::by(|c: &Q5Row| c.num), |_, _, _, hottest| hottest)
        .flat_map(|rows| rows)
        .sink("q5"))
}
