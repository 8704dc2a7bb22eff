//! q0: pass-through — every bid, unchanged (`SELECT auction, bidder, price, dateTime, extra FROM bid`).

use shardflow_engine::{Pipeline, PipelineError};

use crate::csv::{CsvLine, CsvRow};
use crate::model::Event;
use crate::projection::{Projection, Skipped};

/// The strings q0 reads: a bid's `extra`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Q0Text;

impl Projection for Q0Text {
    type PersonName = Skipped;
    type PersonDetails = Skipped;
    type AuctionText = Skipped;
    type BidChannelUrl = Skipped;
    type BidExtra = String;
}

/// A bid as q0 outputs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Q0Row {
    /// Auction id.
    pub auction: i64,
    /// Bidder id.
    pub bidder: i64,
    /// Price.
    pub price: i64,
    /// Event time, epoch ms.
    pub date_time_ms: i64,
    /// The bid's `extra`.
    pub extra: String,
}

impl CsvRow for Q0Row {
    const HEADER: &'static str = "auction,bidder,price,date_time_ms,extra";
    fn write_csv(&self, line: &mut CsvLine<'_>) {
        line.int(self.auction)
            .int(self.bidder)
            .int(self.price)
            .int(self.date_time_ms)
            .text(&self.extra);
    }
}

/// The q0 pipeline.
pub fn pipeline() -> Result<Pipeline<Event, Q0Row>, PipelineError> {
    Ok(super::events("nexmark-q0")?
        .filter_map(|e| {
            e.into_bid().map(|b| Q0Row {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                date_time_ms: b.date_time,
                extra: b.extra,
            })
        })
        .sink("q0"))
}
