//! The decoder's fast path: a line in the canonical compact layout (the one the bench generator
//! writes — no whitespace, the keys of [`crate::decode`]'s wire format in their declared order,
//! `null` for the two absent payloads) decoded by direct byte matching instead of serde.
//!
//! It accepts a strict subset of what the general decoder ([`crate::decode::decode_event_general`])
//! accepts and yields exactly the event that decoder yields for the same projection. Anything
//! else gives `None`, and the caller falls back to the general decoder, so that errors and their
//! messages are always the general decoder's. Refused here (left to the general decoder):
//! whitespace, another key order or other keys, escapes (`\`) and control characters in strings,
//! a line that is not valid UTF-8, numbers with a leading zero, `-0`, a fraction, an exponent or
//! more than 18 digits, an `event_type` other than a single `0`, `1` or `2`, a non-null payload
//! for another event type, and any byte after the closing brace.

use crate::model::{Auction, Bid, Event, Person};
use crate::projection::{Projection, TextField};
use crate::swar;

/// At most this many digits in a number: every such number fits an `i64`.
const MAX_DIGITS: usize = 18;

/// Decodes `line` if it is in the canonical layout (see the module documentation).
#[inline]
pub(crate) fn decode<P: Projection>(line: &[u8]) -> Option<Event> {
    let mut c = Cursor {
        rest: line,
        non_ascii: false,
    };
    c.lit(b"{\"event_type\":")?;
    let (&kind, rest) = c.rest.split_first()?;
    c.rest = rest;
    let event = match kind {
        b'0' => Event::Person(person::<P>(&mut c)?),
        b'1' => Event::Auction(auction::<P>(&mut c)?),
        b'2' => Event::Bid(bid::<P>(&mut c)?),
        _ => return None,
    };
    if !c.rest.is_empty() {
        return None;
    }
    // Every byte outside the strings matched an ASCII literal or digit; the strings were ASCII
    // unless flagged. The general decoder refuses a line that is not UTF-8 as a whole.
    if c.non_ascii && std::str::from_utf8(line).is_err() {
        return None;
    }
    Some(event)
}

#[inline(always)]
fn person<P: Projection>(c: &mut Cursor<'_>) -> Option<Person> {
    c.lit(b",\"person\":{\"id\":")?;
    let id = c.int()?;
    c.lit(b",\"name\":")?;
    let name = c.text::<P::PersonName>()?;
    c.lit(b",\"emailAddress\":")?;
    let email_address = c.text::<P::PersonDetails>()?;
    c.lit(b",\"creditCard\":")?;
    let credit_card = c.text::<P::PersonDetails>()?;
    c.lit(b",\"city\":")?;
    let city = c.text::<P::PersonDetails>()?;
    c.lit(b",\"state\":")?;
    let state = c.text::<P::PersonDetails>()?;
    c.lit(b",\"dateTime\":")?;
    let date_time = c.int()?;
    c.lit(b",\"extra\":")?;
    let extra = c.text::<P::PersonDetails>()?;
    c.lit(b"},\"auction\":null,\"bid\":null}")?;
    Some(Person {
        id,
        name: name.into_string(),
        email_address: email_address.into_string(),
        credit_card: credit_card.into_string(),
        city: city.into_string(),
        state: state.into_string(),
        date_time,
        extra: extra.into_string(),
    })
}

#[inline(always)]
fn auction<P: Projection>(c: &mut Cursor<'_>) -> Option<Auction> {
    c.lit(b",\"person\":null,\"auction\":{\"id\":")?;
    let id = c.int()?;
    c.lit(b",\"itemName\":")?;
    let item_name = c.text::<P::AuctionText>()?;
    c.lit(b",\"description\":")?;
    let description = c.text::<P::AuctionText>()?;
    c.lit(b",\"initialBid\":")?;
    let initial_bid = c.int()?;
    c.lit(b",\"reserve\":")?;
    let reserve = c.int()?;
    c.lit(b",\"dateTime\":")?;
    let date_time = c.int()?;
    c.lit(b",\"expires\":")?;
    let expires = c.int()?;
    c.lit(b",\"seller\":")?;
    let seller = c.int()?;
    c.lit(b",\"category\":")?;
    let category = c.int()?;
    c.lit(b",\"extra\":")?;
    let extra = c.text::<P::AuctionText>()?;
    c.lit(b"},\"bid\":null}")?;
    Some(Auction {
        id,
        item_name: item_name.into_string(),
        description: description.into_string(),
        initial_bid,
        reserve,
        date_time,
        expires,
        seller,
        category,
        extra: extra.into_string(),
    })
}

#[inline(always)]
fn bid<P: Projection>(c: &mut Cursor<'_>) -> Option<Bid> {
    c.lit(b",\"person\":null,\"auction\":null,\"bid\":{\"auction\":")?;
    let auction = c.int()?;
    c.lit(b",\"bidder\":")?;
    let bidder = c.int()?;
    c.lit(b",\"price\":")?;
    let price = c.int()?;
    c.lit(b",\"channel\":")?;
    let channel = c.text::<P::BidChannelUrl>()?;
    c.lit(b",\"url\":")?;
    let url = c.text::<P::BidChannelUrl>()?;
    c.lit(b",\"dateTime\":")?;
    let date_time = c.int()?;
    c.lit(b",\"extra\":")?;
    let extra = c.text::<P::BidExtra>()?;
    c.lit(b"}}")?;
    Some(Bid {
        auction,
        bidder,
        price,
        channel: channel.into_string(),
        url: url.into_string(),
        date_time,
        extra: extra.into_string(),
    })
}

/// The unread rest of a line.
struct Cursor<'a> {
    rest: &'a [u8],
    /// A string read so far may hold a byte above 0x7f.
    non_ascii: bool,
}

impl<'a> Cursor<'a> {
    /// Consumes `s`, which must come next.
    #[inline(always)]
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        self.rest = self.rest.strip_prefix(s)?;
        Some(())
    }

    /// Consumes an integer: `0`, or an optional `-` and 1 to [`MAX_DIGITS`] digits not starting
    /// with `0`. What follows is checked by the next literal (a `.` or `e` will not match it).
    #[inline(always)]
    fn int(&mut self) -> Option<i64> {
        let (negative, digits) = match self.rest.split_first() {
            Some((b'-', tail)) => (true, tail),
            _ => (false, self.rest),
        };
        let mut value: i64 = 0;
        let mut len = 0;
        while let Some(&b) = digits.get(len) {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            if len == MAX_DIGITS {
                return None;
            }
            // At most MAX_DIGITS digits: no overflow.
            value = value * 10 + i64::from(digit);
            len += 1;
        }
        let first = *digits.first()?;
        if len == 0 || (first == b'0' && (len > 1 || negative)) {
            return None;
        }
        self.rest = &digits[len..];
        Some(if negative { -value } else { value })
    }

    /// Consumes a string without escapes or control characters.
    #[inline(always)]
    fn text<T: TextField>(&mut self) -> Option<T> {
        let body = self.rest.strip_prefix(b"\"")?;
        let len = plain_string_len(body, &mut self.non_ascii)?;
        let (content, tail) = body.split_at(len);
        self.rest = tail.get(1..)?;
        T::from_plain(content)
    }
}

/// The length of the string content at the start of `s` (the bytes before its closing quote),
/// or `None` if an escape, a control character or the end of `s` comes first. Sets `non_ascii`
/// if a byte above 0x7f is among them.
#[inline(always)]
fn plain_string_len(s: &[u8], non_ascii: &mut bool) -> Option<usize> {
    // Sixteen printable ASCII bytes at a time, none a quote or backslash (a branch-free test
    // that the compiler turns into vector compares); then the rest a word at a time, where the
    // exact stop is found and bytes above 0x7f are let through (and noted).
    let mut start = 0;
    let mut rest = s;
    while let Some((chunk, tail)) = rest.split_first_chunk::<16>() {
        let mut leave = 0u8;
        for &b in chunk {
            leave |= u8::from(b == b'"') | u8::from(b == b'\\') | u8::from(b.wrapping_sub(0x20) >= 0x60);
        }
        if leave != 0 {
            break;
        }
        rest = tail;
        start += 16;
    }
    let mut high = 0u64;
    for bytes in s[start..].chunks_exact(8) {
        let x = swar::word(bytes);
        let stops = swar::eq(x, b'"') | swar::eq(x, b'\\') | swar::less_than(x, 0x20);
        if stops != 0 {
            let at = swar::first(stops);
            high |= swar::non_ascii(swar::below(x, at));
            return finish_string(bytes[at], start + at, high, non_ascii);
        }
        high |= swar::non_ascii(x);
        start += 8;
    }
    for (i, &b) in s[start..].iter().enumerate() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return finish_string(b, start + i, high, non_ascii);
        }
        high |= u64::from(b & 0x80);
    }
    None
}

/// The string ends at `len` with `stop`: a quote ends it, anything else refuses it.
#[inline(always)]
fn finish_string(stop: u8, len: usize, high: u64, non_ascii: &mut bool) -> Option<usize> {
    *non_ascii |= high != 0;
    (stop == b'"').then_some(len)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::decode::{decode_event, decode_event_general};
    use crate::projection::{AllText, NumbersOnly};
    use crate::queries::{q0::Q0Text, q8::Q8Text};

    fn json_string(s: &str) -> String {
        serde_json::to_string(s).expect("a string serializes")
    }

    /// A line in the generator's layout (strings escaped as JSON requires).
    fn canonical(e: &Event) -> String {
        match e {
            Event::Person(p) => format!(
                r#"{{"event_type":0,"person":{{"id":{},"name":{},"emailAddress":{},"creditCard":{},"city":{},"state":{},"dateTime":{},"extra":{}}},"auction":null,"bid":null}}"#,
                p.id,
                json_string(&p.name),
                json_string(&p.email_address),
                json_string(&p.credit_card),
                json_string(&p.city),
                json_string(&p.state),
                p.date_time,
                json_string(&p.extra)
            ),
            Event::Auction(a) => format!(
                r#"{{"event_type":1,"person":null,"auction":{{"id":{},"itemName":{},"description":{},"initialBid":{},"reserve":{},"dateTime":{},"expires":{},"seller":{},"category":{},"extra":{}}},"bid":null}}"#,
                a.id,
                json_string(&a.item_name),
                json_string(&a.description),
                a.initial_bid,
                a.reserve,
                a.date_time,
                a.expires,
                a.seller,
                a.category,
                json_string(&a.extra)
            ),
            Event::Bid(b) => format!(
                r#"{{"event_type":2,"person":null,"auction":null,"bid":{{"auction":{},"bidder":{},"price":{},"channel":{},"url":{},"dateTime":{},"extra":{}}}}}"#,
                b.auction,
                b.bidder,
                b.price,
                json_string(&b.channel),
                json_string(&b.url),
                b.date_time,
                json_string(&b.extra)
            ),
        }
    }

    fn text() -> impl Strategy<Value = String> + Clone {
        prop_oneof![
            4 => "[a-z ,./:?&=@-]{0,40}",
            1 => "[a-z]{10,90}",
            1 => any::<String>(),
            1 => "[a-z\"\\\\\u{1}\u{1f}\u{7f}éü€😀]{0,20}",
        ]
    }

    fn int() -> impl Strategy<Value = i64> + Clone {
        prop_oneof![
            4 => 0..2_000_000_000_000i64,
            1 => any::<i64>(),
            1 => -20..20i64,
            1 => Just(999_999_999_999_999_999),
            1 => Just(1_000_000_000_000_000_000),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        event_of(text(), int())
    }

    /// Events whose canonical lines the fast path must take: strings without escapes or
    /// control characters, numbers of at most 18 digits.
    fn plain_event() -> impl Strategy<Value = Event> {
        event_of(
            "[a-zA-Z0-9 ,./:?&=@'éü€😀-]{0,70}",
            -999_999_999_999_999_999..=999_999_999_999_999_999i64,
        )
    }

    fn event_of(
        text: impl Strategy<Value = String> + Clone,
        int: impl Strategy<Value = i64> + Clone,
    ) -> impl Strategy<Value = Event> {
        let text = || text.clone();
        let int = || int.clone();
        prop_oneof![
            (int(), text(), text(), text(), text(), text(), int(), text()).prop_map(
                |(id, name, email_address, credit_card, city, state, date_time, extra)| {
                    Event::Person(Person {
                        id,
                        name,
                        email_address,
                        credit_card,
                        city,
                        state,
                        date_time,
                        extra,
                    })
                }
            ),
            (
                (int(), text(), text(), int(), int()),
                (int(), int(), int(), int(), text())
            )
                .prop_map(
                    |(
                        (id, item_name, description, initial_bid, reserve),
                        (date_time, expires, seller, category, extra),
                    )| {
                        Event::Auction(Auction {
                            id,
                            item_name,
                            description,
                            initial_bid,
                            reserve,
                            date_time,
                            expires,
                            seller,
                            category,
                            extra,
                        })
                    }
                ),
            (int(), int(), int(), text(), text(), int(), text()).prop_map(
                |(auction, bidder, price, channel, url, date_time, extra)| Event::Bid(Bid {
                    auction,
                    bidder,
                    price,
                    channel,
                    url,
                    date_time,
                    extra,
                })
            ),
        ]
    }

    /// A change to a line: replace, insert or delete one byte, or swap two ranges' contents.
    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(usize, u8),
        Insert(usize, u8),
        Delete(usize),
        Truncate(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let byte = prop_oneof![
            4 => prop::sample::select(b"{}[]\":,0123456789-+.eE \t\r\\nul/tr".to_vec()),
            1 => any::<u8>(),
        ];
        prop_oneof![
            (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Replace(i, b)),
            (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
            any::<usize>().prop_map(Mutation::Truncate),
        ]
    }

    fn apply(line: &mut Vec<u8>, m: &Mutation) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *m {
            Mutation::Replace(i, b) if !line.is_empty() => {
                let i = at(i, line.len());
                line[i] = b;
            }
            Mutation::Insert(i, b) => {
                let i = at(i, line.len() + 1);
                line.insert(i, b);
            }
            Mutation::Delete(i) if !line.is_empty() => {
                let i = at(i, line.len());
                line.remove(i);
            }
            Mutation::Truncate(i) => {
                let i = at(i, line.len() + 1);
                line.truncate(i);
            }
            _ => {}
        }
    }

    /// The fast path agrees with the general decoder wherever it accepts a line, and
    /// `decode_event` (fast path, then fallback) always gives the general decoder's result.
    fn agrees<P: Projection>(line: &[u8]) -> Result<(), TestCaseError> {
        let general = decode_event_general::<P>(9, line);
        if let Some(fast) = decode::<P>(line) {
            match &general {
                Ok(e) => prop_assert_eq!(e, &fast, "{}", String::from_utf8_lossy(line)),
                Err(err) => prop_assert!(
                    false,
                    "fast path accepted {:?}, the general decoder refused it: {}",
                    String::from_utf8_lossy(line),
                    err
                ),
            }
        }
        let combined = decode_event::<P>(9, line);
        match (&combined, &general) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            _ => prop_assert!(false, "{combined:?} vs {general:?}"),
        }
        Ok(())
    }

    fn agrees_for_every_projection(line: &[u8]) -> Result<(), TestCaseError> {
        agrees::<AllText>(line)?;
        agrees::<NumbersOnly>(line)?;
        agrees::<Q0Text>(line)?;
        agrees::<Q8Text>(line)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn valid_lines_decode_as_the_general_decoder_does(e in event()) {
            let line = canonical(&e);
            agrees_for_every_projection(line.as_bytes())?;
            prop_assert_eq!(decode_event_general::<AllText>(1, line.as_bytes()).ok(), Some(e));
        }

        #[test]
        fn plain_canonical_lines_take_the_fast_path(e in plain_event()) {
            let line = canonical(&e);
            prop_assert_eq!(decode::<AllText>(line.as_bytes()), Some(e));
            agrees_for_every_projection(line.as_bytes())?;
        }

        #[test]
        fn mutated_lines_decode_as_the_general_decoder_does(
            e in event(),
            mutations in prop::collection::vec(mutation(), 1..4),
        ) {
            let mut line = canonical(&e).into_bytes();
            for m in &mutations {
                apply(&mut line, m);
            }
            agrees_for_every_projection(&line)?;
        }
    }

    #[test]
    fn the_generators_layout_takes_the_fast_path() {
        let bid = r#"{"event_type":2,"person":null,"auction":null,"bid":{"auction":1012,"bidder":1001,"price":69497,"channel":"Facebook","url":"https://www.nexmark.com/ofo/gun/zw/item.htm?query=1","dateTime":1704067200381,"extra":"qkyvtxqyqzcxjiuvmknramxkqgjraaazobqoifdnzurrbfjxrkvwmhye"}}"#;
        let Some(Event::Bid(b)) = decode::<Q0Text>(bid.as_bytes()) else {
            panic!("not decoded by the fast path")
        };
        assert_eq!(
            (b.auction, b.bidder, b.price, b.date_time),
            (1012, 1001, 69497, 1704067200381)
        );
        assert_eq!(b.extra, "qkyvtxqyqzcxjiuvmknramxkqgjraaazobqoifdnzurrbfjxrkvwmhye");
        assert!(b.channel.is_empty() && b.url.is_empty(), "not kept by q0's projection");
        let person = r#"{"event_type":0,"person":{"id":1000,"name":"Vicky Shultz","emailAddress":"rzjgtl@s z.com","creditCard":"0176 4000 3617 1655","city":"San Francisco","state":"OR","dateTime":1704067200000,"extra":"wuc"},"auction":null,"bid":null}"#;
        let Some(Event::Person(p)) = decode::<Q8Text>(person.as_bytes()) else {
            panic!("not decoded by the fast path")
        };
        assert_eq!(
            (p.id, p.name.as_str(), p.date_time),
            (1000, "Vicky Shultz", 1704067200000)
        );
        let auction = r#"{"event_type":1,"person":null,"auction":{"id":1000,"itemName":"fuvmqw","description":"untc","initialBid":9326,"reserve":234159,"dateTime":1704067200095,"expires":1704067200398,"seller":1000,"category":12,"extra":"e"},"bid":null}"#;
        assert!(
            matches!(decode::<AllText>(auction.as_bytes()), Some(Event::Auction(a)) if a.seller == 1000 && a.item_name == "fuvmqw")
        );
    }

    #[test]
    fn lines_outside_the_canonical_layout_are_left_to_the_general_decoder() {
        let bid = |body: &str| format!(r#"{{"event_type":2,"person":null,"auction":null,"bid":{body}}}"#);
        let ok = r#"{"auction":1,"bidder":2,"price":3,"channel":"c","url":"u","dateTime":5,"extra":"e"}"#;
        assert!(decode::<AllText>(bid(ok).as_bytes()).is_some());
        for body in [
            r#"{"auction":1, "bidder":2,"price":3,"channel":"c","url":"u","dateTime":5,"extra":"e"}"#,
            r#"{"bidder":2,"auction":1,"price":3,"channel":"c","url":"u","dateTime":5,"extra":"e"}"#,
            r#"{"auction":01,"bidder":2,"price":3,"channel":"c","url":"u","dateTime":5,"extra":"e"}"#,
            r#"{"auction":-0,"bidder":2,"price":3,"channel":"c","url":"u","dateTime":5,"extra":"e"}"#,
            r#"{"auction":1.0,"bidder":2,"price":3,"channel":"c","url":"u","dateTime":5,"extra":"e"}"#,
            r#"{"auction":1e2,"bidder":2,"price":3,"channel":"c","url":"u","dateTime":5,"extra":"e"}"#,
            r#"{"auction":1234567890123456789,"bidder":2,"price":3,"channel":"c","url":"u","dateTime":5,"extra":"e"}"#,
            r#"{"auction":1,"bidder":2,"price":3,"channel":"c\"","url":"u","dateTime":5,"extra":"e"}"#,
            "{\"auction\":1,\"bidder\":2,\"price\":3,\"channel\":\"c\t\",\"url\":\"u\",\"dateTime\":5,\"extra\":\"e\"}",
            r#"{"auction":1,"bidder":2,"price":3,"channel":"c","url":"u","dateTime":5,"extra":"e","x":1}"#,
        ] {
            assert!(decode::<AllText>(bid(body).as_bytes()).is_none(), "{body}");
        }
        assert!(decode::<AllText>(format!("{} ", bid(ok)).as_bytes()).is_none());
        // Not UTF-8: refused here; the general decoder reports it.
        let not_utf8 = bid(ok).replace(r#""extra":"e""#, "\"extra\":\"\u{ff}\"");
        let mut not_utf8 = not_utf8.into_bytes();
        let at = not_utf8.iter().position(|&b| b == 0xc3).expect("the two-byte \\u{ff}");
        not_utf8.remove(at);
        assert!(decode::<NumbersOnly>(&not_utf8).is_none());
        assert!(decode_event_general::<Q0Text>(1, &not_utf8).is_err());
    }
}
