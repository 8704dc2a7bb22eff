//! q7: highest bid — per 10 s tumbling window, every bid whose price equals the window's maximum
//! (ties kept). One windowed aggregate over all bids (a constant key) with a combiner that keeps
//! the bids at the running maximum.

use serde::{Deserialize, Serialize};
use shardflow_engine::{Pipeline, PipelineError, Trigger, Windowing};

use super::TUMBLE_MS;
use crate::combine::KeepMax;
use crate::csv::{CsvLine, CsvRow};
use crate::model::Event;

/// The fields of a bid q7 keeps in its window state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PricedBid {
    auction: i64,
    bidder: i64,
    price: i64,
    date_time: i64,
}

/// A bid at its window's highest price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Q7Row {
    /// Auction id.
    pub auction: i64,
    /// The price (the window's maximum).
    pub price: i64,
    /// Bidder id.
    pub bidder: i64,
    /// The bid's event time, epoch ms.
    pub date_time_ms: i64,
    /// The window's end (exclusive), epoch ms.
    pub window_end_ms: i64,
}

impl CsvRow for Q7Row {
    const HEADER: &'static str = "auction,price,bidder,date_time_ms,window_end_ms";
    fn write_csv(&self, line: &mut CsvLine<'_>) {
        line.int(self.auction)
            .int(self.price)
            .int(self.bidder)
            .int(self.date_time_ms)
            .int(self.window_end_ms);
    }
}

/// The q7 pipeline.
pub fn pipeline() -> Result<Pipeline<Event, Q7Row>, PipelineError> {
    Ok(super::events("nexmark-q7")?
        .filter_map(|e| {
            e.into_bid().map(|b| PricedBid {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                date_time: b.date_time,
            })
        })
        .key_by(|_| ())
        .window(Windowing::tumbling(TUMBLE_MS)?)
        .trigger(Trigger::at_watermark())
        .aggregate(KeepMax::by(|b: &PricedBid| b.price), |_, window, _pane, bids| {
            bids.into_iter()
                .map(|b| Q7Row {
                    auction: b.auction,
                    price: b.price,
                    bidder: b.bidder,
                    date_time_ms: b.date_time,
                    window_end_ms: window.end,
                })
                .collect::<Vec<_>>()
        })
        .flat_map(|rows| rows)
        .sink("q7"))
}
