//! `shardflow gen nexmark`: the Nexmark model from the `nexmark` crate, converted to
//! `shardflow-nexmark`'s model and written as the JSON lines `shardflow nexmark` reads
//! (`{"event_type":0|1|2,"person":..,"auction":..,"bid":..}`, camelCase fields, as
//! `nexmark_gen.py` writes them).
//!
//! The crate follows Beam's generator (event kinds 1:3:46, hot sellers/bidders/auctions,
//! out-of-order groups); its randomness differs from `nexmark_gen.py`, so the two streams are
//! alike in distribution, not byte for byte. Event time advances by `1 / event_rate` seconds per
//! event from `base_time_ms`, computed by the crate in `f32` (a few ms of rounding at tens of
//! millions of events, within the stream's out-of-orderness).

use serde::Serialize;
use shardflow_nexmark::model::{Auction, Bid, Event, Person};
use tokio::time::Instant;

use crate::output::{GenReport, Output, OutputError, Pacer};

/// 2024-01-01T00:00:00Z, the start of `nexmark_gen.py` (`shardflow gen nexmark --start
/// 1704067200000`; by default it starts at the current time).
pub const DEFAULT_BASE_TIME_MS: i64 = 1_704_067_200_000;

/// Parameters of the generated stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NexmarkGenConfig {
    /// Events to generate.
    pub events: u64,
    /// Events per second of event time.
    pub event_rate: u64,
    /// Bound on event-time disorder (Nexmark's out-of-order groups), ms; 0 for in order.
    pub max_disorder_ms: u64,
    /// Event time of the first event, epoch ms.
    pub base_time_ms: i64,
}

/// A generated value does not fit the model's integer types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nexmark generator produced {field} = {value}, out of range")]
pub struct OutOfRange {
    /// The field.
    pub field: &'static str,
    /// Its value.
    pub value: u64,
}

fn int(field: &'static str, value: u64) -> Result<i64, OutOfRange> {
    i64::try_from(value).map_err(|_| OutOfRange { field, value })
}

/// Converts an event of the `nexmark` crate into `shardflow-nexmark`'s model.
pub fn convert(event: ::nexmark::event::Event) -> Result<Event, OutOfRange> {
    use ::nexmark::event::Event as N;
    Ok(match event {
        N::Person(p) => Event::Person(Person {
            id: int("person.id", p.id as u64)?,
            name: p.name,
            email_address: p.email_address,
            credit_card: p.credit_card,
            city: p.city,
            state: p.state,
            date_time: int("person.date_time", p.date_time)?,
            extra: p.extra,
        }),
        N::Auction(a) => Event::Auction(Auction {
            id: int("auction.id", a.id as u64)?,
            item_name: a.item_name,
            description: a.description,
            initial_bid: int("auction.initial_bid", a.initial_bid as u64)?,
            reserve: int("auction.reserve", a.reserve as u64)?,
            date_time: int("auction.date_time", a.date_time)?,
            expires: int("auction.expires", a.expires)?,
            seller: int("auction.seller", a.seller as u64)?,
            category: int("auction.category", a.category as u64)?,
            extra: a.extra,
        }),
        N::Bid(b) => Event::Bid(Bid {
            auction: int("bid.auction", b.auction as u64)?,
            bidder: int("bid.bidder", b.bidder as u64)?,
            price: int("bid.price", b.price as u64)?,
            channel: b.channel,
            url: b.url,
            date_time: int("bid.date_time", b.date_time)?,
            extra: b.extra,
        }),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WirePerson<'a> {
    id: i64,
    name: &'a str,
    email_address: &'a str,
    credit_card: &'a str,
    city: &'a str,
    state: &'a str,
    date_time: i64,
    extra: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireAuction<'a> {
    id: i64,
    item_name: &'a str,
    description: &'a str,
    initial_bid: i64,
    reserve: i64,
    date_time: i64,
    expires: i64,
    seller: i64,
    category: i64,
    extra: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireBid<'a> {
    auction: i64,
    bidder: i64,
    price: i64,
    channel: &'a str,
    url: &'a str,
    date_time: i64,
    extra: &'a str,
}

#[derive(Serialize)]
struct WireEvent<'a> {
    event_type: u8,
    person: Option<WirePerson<'a>>,
    auction: Option<WireAuction<'a>>,
    bid: Option<WireBid<'a>>,
}

/// The event as one line of the bench's JSON format (no newline).
pub fn to_json(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    let wire = match event {
        Event::Person(p) => WireEvent {
            event_type: 0,
            person: Some(WirePerson {
                id: p.id,
                name: &p.name,
                email_address: &p.email_address,
                credit_card: &p.credit_card,
                city: &p.city,
                state: &p.state,
                date_time: p.date_time,
                extra: &p.extra,
            }),
            auction: None,
            bid: None,
        },
        Event::Auction(a) => WireEvent {
            event_type: 1,
            person: None,
            auction: Some(WireAuction {
                id: a.id,
                item_name: &a.item_name,
                description: &a.description,
                initial_bid: a.initial_bid,
                reserve: a.reserve,
                date_time: a.date_time,
                expires: a.expires,
                seller: a.seller,
                category: a.category,
                extra: &a.extra,
            }),
            bid: None,
        },
        Event::Bid(b) => WireEvent {
            event_type: 2,
            person: None,
            auction: None,
            bid: Some(WireBid {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: &b.channel,
                url: &b.url,
                date_time: b.date_time,
                extra: &b.extra,
            }),
        },
    };
    serde_json::to_vec(&wire)
}

/// The partition key of event number `n`: `person:<id>` and `auction:<id>` for the entities, and
/// for bids (whose hot auctions would serialize the producer on one key) `bid:<n>`, which spreads
/// them over the shards. Nexmark's queries order by event time, not by arrival.
pub fn partition_key(event: &Event, n: u64) -> String {
    match event {
        Event::Person(p) => format!("person:{}", p.id),
        Event::Auction(a) => format!("auction:{}", a.id),
        Event::Bid(_) => format!("bid:{n}"),
    }
}

/// The `nexmark` crate's generator for `config`.
pub fn generator(config: &NexmarkGenConfig) -> ::nexmark::EventGenerator {
    let rate = usize::try_from(config.event_rate.max(1)).unwrap_or(usize::MAX);
    let group = (config.event_rate.saturating_mul(config.max_disorder_ms) / 1000).max(1);
    let nexmark_config = ::nexmark::config::NexmarkConfig {
        base_time: u64::try_from(config.base_time_ms).unwrap_or(0),
        first_rate: rate,
        next_rate: rate,
        out_of_order_group_size: usize::try_from(group).unwrap_or(1),
        ..Default::default()
    };
    ::nexmark::EventGenerator::new(nexmark_config)
}

/// Generates `config.events` events into `output` at `rate` records/s of wall-clock time
/// (0: unpaced) and waits until everything is stored.
pub async fn generate(
    config: NexmarkGenConfig,
    rate: f64,
    output: &mut Output,
    mut progress: impl FnMut(u64),
) -> Result<GenReport, OutputError> {
    let pacer = Pacer::new(rate);
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    for raw in generator(&config).take(usize::try_from(config.events).unwrap_or(usize::MAX)) {
        pacer.wait_for(records).await;
        let event = convert(raw).map_err(|e| OutputError::Io(std::io::Error::other(e)))?;
        let data = to_json(&event).map_err(|e| OutputError::Io(e.into()))?;
        bytes += data.len() as u64;
        output.write(partition_key(&event, records), data).await?;
        records += 1;
        if records.is_multiple_of(10_000) {
            progress(records);
        }
    }
    let producer = output.finish().await?;
    Ok(GenReport {
        records,
        bytes,
        secs: started.elapsed().as_secs_f64(),
        producer,
    })
}
