//! Decoding the JSON-lines input: one event per line,
//! `{"event_type":0|1|2,"person":{..}|null,"auction":{..}|null,"bid":{..}|null}`.
//!
//! Decoding never panics: a malformed line is a [`DecodeError`] carrying its line number. The
//! wire structs borrow their strings from the line; only the strings the [`Projection`] asks for
//! are copied into the [`Event`], so a query pays for no allocation it does not use.

use std::borrow::Cow;

use serde::Deserialize;

use crate::model::{Auction, Bid, Event, Person};

/// Why a line is not an event. Every variant names the (1-based) line.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape (a missing field, a string where a number belongs,
    /// invalid UTF-8).
    #[error("line {line}: {source}")]
    Json {
        /// The line number.
        line: u64,
        /// What serde_json found.
        #[source]
        source: serde_json::Error,
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

impl DecodeError {
    /// The line number of the malformed line.
    pub fn line(&self) -> u64 {
        match self {
            DecodeError::Json { line, .. }
            | DecodeError::MissingPayload { line, .. }
            | DecodeError::UnknownEventType { line, .. }
            | DecodeError::LineTooLong { line, .. } => *line,
        }
    }
}

/// Which strings of each event kind to copy into the decoded [`Event`]; the others are left
/// empty. Numbers (ids, prices, times) are always decoded. Every field is still checked to be
/// well-formed JSON whatever the projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projection {
    /// `Person::name`.
    pub person_name: bool,
    /// The other strings of a person (e-mail, credit card, city, state, extra).
    pub person_details: bool,
    /// The strings of an auction (item name, description, extra).
    pub auction_strings: bool,
    /// `Bid::channel` and `Bid::url`.
    pub bid_channel_url: bool,
    /// `Bid::extra`.
    pub bid_extra: bool,
}

impl Projection {
    /// Every string.
    pub const ALL: Projection = Projection {
        person_name: true,
        person_details: true,
        auction_strings: true,
        bid_channel_url: true,
        bid_extra: true,
    };

    /// No string: numbers only.
    pub const NUMBERS: Projection = Projection {
        person_name: false,
        person_details: false,
        auction_strings: false,
        bid_channel_url: false,
        bid_extra: false,
    };
}

#[derive(Deserialize)]
struct WireEvent<'a> {
    event_type: u8,
    #[serde(borrow, default)]
    person: Option<WirePerson<'a>>,
    #[serde(borrow, default)]
    auction: Option<WireAuction<'a>>,
    #[serde(borrow, default)]
    bid: Option<WireBid<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePerson<'a> {
    id: i64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    email_address: Cow<'a, str>,
    #[serde(borrow)]
    credit_card: Cow<'a, str>,
    #[serde(borrow)]
    city: Cow<'a, str>,
    #[serde(borrow)]
    state: Cow<'a, str>,
    date_time: i64,
    #[serde(borrow)]
    extra: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAuction<'a> {
    id: i64,
    #[serde(borrow)]
    item_name: Cow<'a, str>,
    #[serde(borrow)]
    description: Cow<'a, str>,
    initial_bid: i64,
    reserve: i64,
    date_time: i64,
    expires: i64,
    seller: i64,
    category: i64,
    #[serde(borrow)]
    extra: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBid<'a> {
    auction: i64,
    bidder: i64,
    price: i64,
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    url: Cow<'a, str>,
    date_time: i64,
    #[serde(borrow)]
    extra: Cow<'a, str>,
}

#[inline]
fn keep(wanted: bool, s: Cow<'_, str>) -> String {
    if wanted {
        s.into_owned()
    } else {
        String::new()
    }
}

/// Decodes line number `line` (1-based, for errors), keeping the strings `projection` asks for.
pub fn decode_event(line: u64, bytes: &[u8], projection: Projection) -> Result<Event, DecodeError> {
    let wire: WireEvent<'_> = serde_json::from_slice(bytes).map_err(|source| DecodeError::Json { line, source })?;
    let missing = |field| DecodeError::MissingPayload {
        line,
        event_type: wire.event_type,
        field,
    };
    let p = projection;
    match wire.event_type {
        0 => {
            let w = wire.person.ok_or_else(|| missing("person"))?;
            Ok(Event::Person(Person {
                id: w.id,
                name: keep(p.person_name, w.name),
                email_address: keep(p.person_details, w.email_address),
                credit_card: keep(p.person_details, w.credit_card),
                city: keep(p.person_details, w.city),
                state: keep(p.person_details, w.state),
                date_time: w.date_time,
                extra: keep(p.person_details, w.extra),
            }))
        }
        1 => {
            let w = wire.auction.ok_or_else(|| missing("auction"))?;
            Ok(Event::Auction(Auction {
                id: w.id,
                item_name: keep(p.auction_strings, w.item_name),
                description: keep(p.auction_strings, w.description),
                initial_bid: w.initial_bid,
                reserve: w.reserve,
                date_time: w.date_time,
                expires: w.expires,
                seller: w.seller,
                category: w.category,
                extra: keep(p.auction_strings, w.extra),
            }))
        }
        2 => {
            let w = wire.bid.ok_or_else(|| missing("bid"))?;
            Ok(Event::Bid(Bid {
                auction: w.auction,
                bidder: w.bidder,
                price: w.price,
                channel: keep(p.bid_channel_url, w.channel),
                url: keep(p.bid_channel_url, w.url),
                date_time: w.date_time,
                extra: keep(p.bid_extra, w.extra),
            }))
        }
        event_type => Err(DecodeError::UnknownEventType { line, event_type }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BID: &str = r#"{"event_type":2,"person":null,"auction":null,"bid":{"auction":1007,"bidder":1001,"price":2514,"channel":"Google","url":"https://x/y","dateTime":1704067200004,"extra":"ab\"c"}}"#;
    const PERSON: &str = r#"{"event_type":0,"person":{"id":1000,"name":"Vicky Shultz","emailAddress":"a@b.com","creditCard":"0176 4000 3617 1655","city":"Boise","state":"OR","dateTime":1704067200000,"extra":"x"},"auction":null,"bid":null}"#;
    const AUCTION: &str = r#"{"event_type":1,"person":null,"auction":{"id":1001,"itemName":"it","description":"d","initialBid":9326,"reserve":234159,"dateTime":1704067200095,"expires":1704067200398,"seller":1000,"category":12,"extra":"e"},"bid":null}"#;

    #[test]
    fn decodes_every_event_kind_with_all_strings() {
        let Event::Bid(b) = decode_event(1, BID.as_bytes(), Projection::ALL).unwrap() else {
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
        let Event::Person(p) = decode_event(2, PERSON.as_bytes(), Projection::ALL).unwrap() else {
            panic!("not a person")
        };
        assert_eq!((p.id, p.name.as_str(), p.state.as_str()), (1000, "Vicky Shultz", "OR"));
        let Event::Auction(a) = decode_event(3, AUCTION.as_bytes(), Projection::ALL).unwrap() else {
            panic!("not an auction")
        };
        assert_eq!((a.id, a.seller, a.expires, a.category), (1001, 1000, 1704067200398, 12));
    }

    #[test]
    fn projection_leaves_unwanted_strings_empty_and_keeps_numbers() {
        let proj = Projection {
            person_name: true,
            ..Projection::NUMBERS
        };
        let Event::Bid(b) = decode_event(1, BID.as_bytes(), proj).unwrap() else {
            panic!("not a bid")
        };
        assert!(b.extra.is_empty() && b.url.is_empty());
        assert_eq!(b.price, 2514);
        let Event::Person(p) = decode_event(1, PERSON.as_bytes(), proj).unwrap() else {
            panic!("not a person")
        };
        assert_eq!(p.name, "Vicky Shultz");
        assert!(p.email_address.is_empty());
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line_number() {
        let cases: [(&[u8], &str); 6] = [
            (b"{\"event_type\":2", "EOF"),
            (b"not json", "expected"),
            (
                br#"{"event_type":2,"person":null,"auction":null,"bid":null}"#,
                "no \"bid\"",
            ),
            (br#"{"event_type":7}"#, "unknown event_type 7"),
            (br#"{"event_type":2,"bid":{"auction":"x"}}"#, "invalid type"),
            (b"{\"event_type\":0,\"person\":{\"name\":\"\xff\"}}", "invalid unicode"),
        ];
        for (input, expected) in cases {
            let err = decode_event(42, input, Projection::ALL).unwrap_err();
            assert_eq!(err.line(), 42);
            let msg = err.to_string();
            assert!(msg.starts_with("line 42: "), "{msg}");
            assert!(msg.contains(expected), "{msg:?} should mention {expected:?}");
        }
    }
}
