//! The Nexmark queries as shardflow pipelines over [`Event`]s, with the semantics of
//! `bench/oracle.py` (and Flink SQL's): event time is the event's `dateTime`, the watermark
//! trails the largest event time of the input by 4 s, windows are aligned to the epoch, and every
//! window fires once, when the watermark passes its end.
//!
//! | query | result row (CSV columns) |
//! | --- | --- |
//! | [`q0`] | every bid: auction, bidder, price, date_time_ms, extra |
//! | [`agg`] | per auction and 10 s tumbling window: auction, window_start_ms, window_end_ms, bid_count, price_sum |
//! | [`q7`] | per 10 s tumbling window, every bid at the window's highest price: auction, price, bidder, date_time_ms, window_end_ms |
//! | [`q5`] | per hopping window (10 s every 2 s), every auction with the window's most bids: auction, num, window_start_ms, window_end_ms |
//! | [`q8`] | persons who opened an auction in the same 10 s tumbling window: id, name, window_start_ms |

pub mod agg;
pub mod q0;
pub mod q5;
pub mod q7;
pub mod q8;

use shardflow_engine::{Pipeline, PipelineError, Stream, WatermarkStrategy};

use crate::model::Event;

/// Size of the tumbling windows of agg, q7 and q8.
pub const TUMBLE_MS: i64 = 10_000;
/// Size of q5's hopping windows.
pub const HOP_SIZE_MS: i64 = 10_000;
/// Slide of q5's hopping windows.
pub const HOP_SLIDE_MS: i64 = 2_000;
/// The watermark's bounded out-of-orderness.
pub const WATERMARK_DELAY_MS: i64 = 4_000;

/// One of the Nexmark queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Query {
    /// Pass-through of every bid.
    Q0,
    /// Hot items: the auctions with the most bids per hopping window.
    Q5,
    /// Highest bid per tumbling window.
    Q7,
    /// New users: persons who opened an auction in the window they registered.
    Q8,
    /// Bid count and price sum per auction and tumbling window.
    Agg,
}

impl Query {
    /// Every query, in the order `--query all` runs them.
    pub const ALL: [Query; 5] = [Query::Q0, Query::Agg, Query::Q5, Query::Q7, Query::Q8];

    /// The query's name (`q0`, `agg`, ...), also the name of its output file.
    pub fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Q8 => "q8",
            Query::Agg => "agg",
        }
    }

    /// The CSV header of the query's results.
    pub fn header(self) -> &'static str {
        use crate::csv::CsvRow;
        match self {
            Query::Q0 => q0::Q0Row::HEADER,
            Query::Q5 => q5::Q5Row::HEADER,
            Query::Q7 => q7::Q7Row::HEADER,
            Query::Q8 => q8::Q8Row::HEADER,
            Query::Agg => agg::AggRow::HEADER,
        }
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The common start of every query: all events, event time `dateTime`, a 4 s bounded
/// out-of-orderness watermark.
fn events(name: &str) -> Result<Stream<Event, Event>, PipelineError> {
    Ok(Pipeline::builder::<Event>(name)
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(WATERMARK_DELAY_MS)?)
        .event_time(Event::date_time))
}
