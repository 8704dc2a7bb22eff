//! Decoding the JSON-lines input: one event per line,
//! `{"event_type":0|1|2,"person":{..}|null,"auction":{..}|null,"bid":{..}|null}`.
//!
//! Decoding never panics: a malformed line is an [`EventDecodeError`] carrying its line number. Only
//! the strings a query's [`Projection`] asks for are validated and copied into the [`Event`]; the
//! others are parsed over (serde's `IgnoredAny`), so a query pays for no string it does not use.

use serde::Deserialize;

use crate::model::{Auction, Bid, Event, Person};
use crate::projection::{Projection, TextField};

/// Why a line is not an event. Every variant names the (1-based) line.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    /// Not JSON, or JSON of the wrong shape (a missing field, a string where a number belongs,
    /// invalid UTF-8).
    #[error("line {line}: {}", first_line(source))]
    Json {
        /// The line number.
        line: u64,
        /// What the JSON parser found.
        #[source]
        source: sonic_rs::Error,
    },
    /// `event_type` names a payload that is null or absent.
    #[error("line {line}: event_type {event_type} but no \"{field}\" object")]
    MissingPayload {
        /// The line number.
        line: u64,
        /// The event type given.
        event_type: u8,
        /// The payload field expected.
        field: &'static str,
    },
    /// `event_type` is not 0, 1 or 2.
    #[error("line {line}: unknown event_type {event_type} (expected 0 person, 1 auction or 2 bid)")]
    UnknownEventType {
        /// The line number.
        line: u64,
        /// The event type given.
        event_type: u8,
    },
    /// The line is longer than the reader accepts.
    #[error("line {line}: longer than {limit} bytes, skipped")]
    LineTooLong {
        /// The line number.
        line: u64,
        /// The limit in bytes.
        limit: usize,
    },
}

/// The first line of a parser error (sonic-rs appends an excerpt of the input on later lines).
fn first_line(e: &sonic_rs::Error) -> String {
    let message = e.to_string();
    message.lines().next().unwrap_or_default().trim_end().to_owned()
}

impl EventDecodeError {
    /// The line number of the malformed line.
    pub fn line(&self) -> u64 {
        match self {
            EventDecodeError::Json { line, .. }
            | EventDecodeError::MissingPayload { line, .. }
            | EventDecodeError::UnknownEventType { line, .. }
            | EventDecodeError::LineTooLong { line, .. } => *line,
        }
    }
}

#[derive(Deserialize)]
struct WireEvent<PN, PD, AT, BC, BE> {
    event_type: u8,
    #[serde(default = "none")]
    person: Option<WirePerson<PN, PD>>,
    #[serde(default = "none")]
    auction: Option<WireAuction<AT>>,
    #[serde(default = "none")]
    bid: Option<WireBid<BC, BE>>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePerson<N, D> {
    id: i64,
    name: N,
    email_address: D,
    credit_card: D,
    city: D,
    state: D,
    date_time: i64,
    extra: D,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAuction<T> {
    id: i64,
    item_name: T,
    description: T,
    initial_bid: i64,
    reserve: i64,
    date_time: i64,
    expires: i64,
    seller: i64,
    category: i64,
    extra: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBid<C, E> {
    auction: i64,
    bidder: i64,
    price: i64,
    channel: C,
    url: C,
    date_time: i64,
    extra: E,
}

type WireOf<P> = WireEvent<
    <P as Projection>::PersonName,
    <P as Projection>::PersonDetails,
    <P as Projection>::AuctionText,
    <P as Projection>::BidChannelUrl,
    <P as Projection>::BidExtra,
>;

/// Decodes line number `line` (1-based, for errors), keeping the strings `P` asks for.
///
/// A line in the canonical compact layout (the bench generator's) is decoded by a fast path
/// that matches its bytes directly; any other line by [`decode_event_general`]. Both give the
/// same event, and errors are always [`decode_event_general`]'s.
#[inline]
pub fn decode_event<P: Projection>(line: u64, bytes: &[u8]) -> Result<Event, EventDecodeError> {
    match crate::canonical::decode::<P>(bytes) {
        Some(event) => Ok(event),
        None => decode_event_general::<P>(line, bytes),
    }
}

/// Decodes line number `line` with serde and sonic-rs, whatever its layout (any whitespace, key
/// order, escapes and unknown keys): the decoder [`decode_event`] falls back to.
pub fn decode_event_general<P: Projection>(line: u64, bytes: &[u8]) -> Result<Event, EventDecodeError> {
    let wire: WireOf<P> = sonic_rs::from_slice(bytes).map_err(|source| EventDecodeError::Json { line, source })?;
    let event_type = wire.event_type;
    let missing = |field| EventDecodeError::MissingPayload {
        line,
        event_type,
        field,
    };
    match event_type {
        0 => {
            let w = wire.person.ok_or_else(|| missing("person"))?;
            Ok(Event::Person(Person {
                id: w.id,
                name: w.name.into_string(),
                email_address: w.email_address.into_string(),
                credit_card: w.credit_card.into_string(),
                city: w.city.into_string(),
                state: w.state.into_string(),
                date_time: w.date_time,
                extra: w.extra.into_string(),
            }))
        }
        1 => {
            let w = wire.auction.ok_or_else(|| missing("auction"))?;
            Ok(Event::Auction(Auction {
                id: w.id,
                item_name: w.item_name.into_string(),
                description: w.description.into_string(),
                initial_bid: w.initial_bid,
                reserve: w.reserve,
                date_time: w.date_time,
                expires: w.expires,
                seller: w.seller,
                category: w.category,
                extra: w.extra.into_string(),
            }))
        }
        2 => {
            let w = wire.bid.ok_or_else(|| missing("bid"))?;
            Ok(Event::Bid(Bid {
                auction: w.auction,
                bidder: w.bidder,
                price: w.price,
                channel: w.channel.into_string(),
                url: w.url.into_string(),
                date_time: w.date_time,
                extra: w.extra.into_string(),
            }))
        }
        event_type => Err(EventDecodeError::UnknownEventType { line, event_type }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::{AllText, NumbersOnly, Skipped};

    const BID: &str = r#"{"event_type":2,"person":null,"auction":null,"bid":{"auction":1007,"bidder":1001,"price":2514,"channel":"Google","url":"https://x/y","dateTime":1704067200004,"extra":"ab\"c"}}"#;
    const PERSON: &str = r#"{"event_type":0,"person":{"id":1000,"name":"Vicky Shultz","emailAddress":"a@b.com","creditCard":"0176 4000 3617 1655","city":"Boise","state":"OR","dateTime":1704067200000,"extra":"x"},"auction":null,"bid":null}"#;
    const AUCTION: &str = r#"{"event_type":1,"person":null,"auction":{"id":1001,"itemName":"it","description":"d","initialBid":9326,"reserve":234159,"dateTime":1704067200095,"expires":1704067200398,"seller":1000,"category":12,"extra":"e"},"bid":null}"#;

    #[test]
    fn decodes_every_event_kind_with_all_strings() {
        let Event::Bid(b) = decode_event::<AllText>(1, BID.as_bytes()).unwrap() else {
            panic!("not a bid")
        };
        assert_eq!(
            (b.auction, b.bidder, b.price, b.date_time),
            (1007, 1001, 2514, 1704067200004)
        );
        assert_eq!(
            (b.channel.as_str(), b.extra.as_str()),
            ("Google", "ab\"c"),
            "escapes are decoded"
        );
        let Event::Person(p) = decode_event::<AllText>(2, PERSON.as_bytes()).unwrap() else {
            panic!("not a person")
        };
        assert_eq!((p.id, p.name.as_str(), p.state.as_str()), (1000, "Vicky Shultz", "OR"));
        let Event::Auction(a) = decode_event::<AllText>(3, AUCTION.as_bytes()).unwrap() else {
            panic!("not an auction")
        };
        assert_eq!((a.id, a.seller, a.expires, a.category), (1001, 1000, 1704067200398, 12));
    }

    #[test]
    fn projection_leaves_unwanted_strings_empty_and_keeps_numbers() {
        struct NameOnly;
        impl Projection for NameOnly {
            type PersonName = String;
            type PersonDetails = Skipped;
            type AuctionText = Skipped;
            type BidChannelUrl = Skipped;
            type BidExtra = Skipped;
        }
        let Event::Bid(b) = decode_event::<NameOnly>(1, BID.as_bytes()).unwrap() else {
            panic!("not a bid")
        };
        assert!(b.extra.is_empty() && b.url.is_empty());
        assert_eq!(b.price, 2514);
        let Event::Person(p) = decode_event::<NameOnly>(1, PERSON.as_bytes()).unwrap() else {
            panic!("not a person")
        };
        assert_eq!(p.name, "Vicky Shultz");
        assert!(p.email_address.is_empty());
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line_number() {
        let cases: [(&[u8], &str); 6] = [
            (b"{\"event_type\":2", "EOF"),
            (b"not json", "column 4"),
            (
                br#"{"event_type":2,"person":null,"auction":null,"bid":null}"#,
                "no \"bid\"",
            ),
            (br#"{"event_type":7}"#, "unknown event_type 7"),
            (br#"{"event_type":2,"bid":{"auction":"x"}}"#, "invalid type"),
            (b"{\"event_type\":0,\"person\":{\"name\":\"\xff\"}}", "Invalid UTF-8"),
        ];
        for (input, expected) in cases {
            let err = decode_event::<AllText>(42, input).unwrap_err();
            assert_eq!(err.line(), 42);
            let msg = err.to_string();
            assert!(msg.starts_with("line 42: "), "{msg}");
            assert!(msg.contains(expected), "{msg:?} should mention {expected:?}");
        }
    }

    #[test]
    fn skipped_fields_must_still_be_present_and_well_formed_json() {
        let bid = |channel: &str, tail: &str| {
            format!(
                r#"{{"event_type":2,"bid":{{"auction":1,"bidder":2,"price":3,"channel":{channel},"url":"u","dateTime":5{tail}}}}}"#
            )
        };
        let ok = bid(r#""x""#, r#","extra":"e""#);
        assert_eq!(decode_event::<NumbersOnly>(1, ok.as_bytes()).unwrap().date_time(), 5);
        for (line, expected) in [
            (bid(r#""a\q""#, r#","extra":"e""#), "escape"),
            (bid("[1,2,,]", r#","extra":"e""#), "Invalid JSON value"),
            (bid("tru", r#","extra":"e""#), "Invalid literal"),
            (bid(r#""x""#, ""), "missing field `extra`"),
            (ok.clone() + " trailing", "trailing characters"),
        ] {
            let err = decode_event::<NumbersOnly>(7, line.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "{line}: {err:?} should mention {expected:?}");
        }
    }
}
