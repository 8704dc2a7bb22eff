//! agg: bid count and price sum per auction and 10 s tumbling window
//! (`TUMBLE 10 s: COUNT(*), SUM(price) GROUP BY auction`).

use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Pipeline, PipelineError, Trigger, Windowing};

use super::TUMBLE_MS;
use crate::csv::{CsvLine, CsvRow};
use crate::model::{Bid, Event};

/// One (auction, window) aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggRow {
    /// Auction id.
    pub auction: i64,
    /// Window start, epoch ms.
    pub window_start_ms: i64,
    /// Window end (exclusive), epoch ms.
    pub window_end_ms: i64,
    /// Bids on the auction in the window.
    pub bid_count: u64,
    /// Sum of their prices.
    pub price_sum: i64,
}

impl CsvRow for AggRow {
    const HEADER: &'static str = "auction,window_start_ms,window_end_ms,bid_count,price_sum";
    fn write_csv(&self, line: &mut CsvLine<'_>) {
        line.int(self.auction)
            .int(self.window_start_ms)
            .int(self.window_end_ms)
            .uint(self.bid_count)
            .int(self.price_sum);
    }
}

/// The agg pipeline.
pub fn pipeline() -> Result<Pipeline<Event, AggRow>, PipelineError> {
    Ok(super::events("nexmark-agg")?
        .filter_map(Event::into_bid)
        .key_by(|b: &Bid| b.auction)
        .window(Windowing::tumbling(TUMBLE_MS)?)
        .trigger(Trigger::at_watermark())
        .aggregate(
            (Count, Sum::of(|b: &Bid| b.price)),
            |auction, window, _pane, (bid_count, price_sum)| AggRow {
                auction: *auction,
                window_start_ms: window.start,
                window_end_ms: window.end,
                bid_count,
                price_sum,
            },
        )
        .sink("agg"))
}
