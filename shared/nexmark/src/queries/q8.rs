//! q8: new users — persons who opened an auction in the same 10 s tumbling window in which they
//! registered: a two-way window join of persons (by id) and auctions (by seller), one row per
//! (id, name, window).

use serde::{Deserialize, Serialize};
use shardflow_engine::{Pipeline, PipelineError, Trigger, Windowing};

use super::TUMBLE_MS;
use crate::csv::{CsvLine, CsvRow};
use crate::model::Event;
use crate::projection::{Projection, Skipped};

/// The strings q8 reads: a person's name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Q8Text;

impl Projection for Q8Text {
    type PersonName = String;
    type PersonDetails = Skipped;
    type AuctionText = Skipped;
    type BidChannelUrl = Skipped;
    type BidExtra = Skipped;
}

/// What q8 joins: a person (side 0) or the seller of an auction (side 1), keyed by person id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Side {
    Person { id: i64, name: String },
    Seller { id: i64 },
}

impl Side {
    fn id(&self) -> i64 {
        match self {
            Side::Person { id, .. } | Side::Seller { id } => *id,
        }
    }

    fn index(&self) -> usize {
        match self {
            Side::Person { .. } => 0,
            Side::Seller { .. } => 1,
        }
    }
}

/// A person who opened an auction in the window they registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Q8Row {
    /// Person id.
    pub id: i64,
    /// Person name.
    pub name: String,
    /// Window start, epoch ms.
    pub window_start_ms: i64,
}

impl CsvRow for Q8Row {
    const HEADER: &'static str = "id,name,window_start_ms";
    fn write_csv(&self, line: &mut CsvLine<'_>) {
        line.int(self.id).text(&self.name).int(self.window_start_ms);
    }
}

/// The q8 pipeline.
pub fn pipeline() -> Result<Pipeline<Event, Q8Row>, PipelineError> {
    Ok(super::events("nexmark-q8")?
        .filter_map(|e| match e {
            Event::Person(p) => Some(Side::Person { id: p.id, name: p.name }),
            Event::Auction(a) => Some(Side::Seller { id: a.seller }),
            Event::Bid(_) => None,
        })
        .key_by(Side::id)
        .window(Windowing::tumbling(TUMBLE_MS)?)
        .trigger(Trigger::at_watermark())
        .join(2, Side::index, |id, window, sides| {
            if sides.get(1).is_none_or(Vec::is_empty) {
                return Vec::new();
            }
            let mut names: Vec<&str> = sides
                .first()
                .into_iter()
                .flatten()
                .filter_map(|s| match s {
                    Side::Person { name, .. } => Some(name.as_str()),
                    Side::Seller { .. } => None,
                })
                .collect();
            names.sort_unstable();
            names.dedup();
            names
                .into_iter()
                .map(|name| Q8Row {
                    id: *id,
                    name: name.to_owned(),
                    window_start_ms: window.start,
                })
                .collect()
        })
        .sink("q8"))
}
