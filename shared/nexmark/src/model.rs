//! The Nexmark event model: people, auctions and bids, as written by the bench generator
//! (`nexmark_gen.py`) and read by Flink's Nexmark queries.
//!
//! Times are epoch milliseconds. Strings a query does not need may be left empty by the decoder
//! (see [`crate::projection::Projection`]); numbers are always present.

use serde::{Deserialize, Serialize};

/// A person who sells or bids (Nexmark's `Person`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Person id (unique per person event).
    pub id: i64,
    /// Full name, e.g. `"Vicky Shultz"`.
    pub name: String,
    /// E-mail address.
    pub email_address: String,
    /// Credit card number, as four groups of digits.
    pub credit_card: String,
    /// City.
    pub city: String,
    /// US state code.
    pub state: String,
    /// Event time, epoch ms.
    pub date_time: i64,
    /// Padding to the average event size.
    pub extra: String,
}

/// An auction opened by a seller (Nexmark's `Auction`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// Auction id.
    pub id: i64,
    /// Name of the item sold.
    pub item_name: String,
    /// Description of the item.
    pub description: String,
    /// Opening bid.
    pub initial_bid: i64,
    /// Reserve price.
    pub reserve: i64,
    /// Event time, epoch ms.
    pub date_time: i64,
    /// When the auction closes, epoch ms.
    pub expires: i64,
    /// Id of the person selling.
    pub seller: i64,
    /// Category id.
    pub category: i64,
    /// Padding to the average event size.
    pub extra: String,
}

/// A bid on an auction (Nexmark's `Bid`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// Id of the auction bid on.
    pub auction: i64,
    /// Id of the person bidding.
    pub bidder: i64,
    /// Price offered (in cents).
    pub price: i64,
    /// Channel the bid came through.
    pub channel: String,
    /// URL of the bid.
    pub url: String,
    /// Event time, epoch ms.
    pub date_time: i64,
    /// Padding to the average event size.
    pub extra: String,
}

/// One line of the input: a person, an auction or a bid (`event_type` 0, 1, 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// `event_type` 0.
    Person(Person),
    /// `event_type` 1.
    Auction(Auction),
    /// `event_type` 2.
    Bid(Bid),
}

impl Event {
    /// The event time of the event, epoch ms.
    #[inline]
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The bid, if the event is one.
    #[inline]
    pub fn into_bid(self) -> Option<Bid> {
        match self {
            Event::Bid(b) => Some(b),
            _ => None,
        }
    }
}
