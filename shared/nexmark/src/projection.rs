//! Which strings of the events a query needs: a [`Projection`] names, as types, the string
//! fields the decoders ([`crate::decode`]) keep ([`String`]) and the ones they parse over
//! ([`Skipped`]), so that a query pays for no string it does not use.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;

/// A string field of the wire format as a [`Projection`] wants it: kept ([`String`]) or
/// skipped ([`Skipped`]).
pub trait TextField: DeserializeOwned {
    /// The field's value in the decoded [`Event`](crate::Event) (empty when skipped).
    fn into_string(self) -> String;
    /// The field for a JSON string without escapes or control characters whose content is
    /// `content` (the decoder's fast path), or `None` if the field must be UTF-8 and is not.
    /// Equals what deserializing that string gives.
    fn from_plain(content: &[u8]) -> Option<Self>;
}

impl TextField for String {
    #[inline]
    fn into_string(self) -> String {
        self
    }
    #[inline]
    fn from_plain(content: &[u8]) -> Option<Self> {
        std::str::from_utf8(content).ok().map(str::to_owned)
    }
}

/// A field that is parsed over (it must be present and be well-formed JSON, of any type) but
/// neither validated as UTF-8 nor copied: it decodes as an empty string.
#[derive(Debug, Clone, Copy, Default)]
pub struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Skipped)
    }
}

impl TextField for Skipped {
    #[inline]
    fn into_string(self) -> String {
        String::new()
    }
    #[inline]
    fn from_plain(_: &[u8]) -> Option<Self> {
        Some(Skipped)
    }
}

/// Which strings of each event kind a query needs, as types (so that the decoder is compiled
/// for exactly that set): every [`TextField`] is either [`String`] (kept) or [`Skipped`] (left
/// empty in the [`Event`](crate::Event)). Numbers (ids, prices, times) are always decoded and type-checked.
pub trait Projection {
    /// `Person::name`.
    type PersonName: TextField;
    /// The other strings of a person (e-mail, credit card, city, state, extra).
    type PersonDetails: TextField;
    /// The strings of an auction (item name, description, extra).
    type AuctionText: TextField;
    /// `Bid::channel` and `Bid::url`.
    type BidChannelUrl: TextField;
    /// `Bid::extra`.
    type BidExtra: TextField;
}

/// Every string kept: the complete model.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllText;

impl Projection for AllText {
    type PersonName = String;
    type PersonDetails = String;
    type AuctionText = String;
    type BidChannelUrl = String;
    type BidExtra = String;
}

/// No string kept: ids, prices and times only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NumbersOnly;

impl Projection for NumbersOnly {
    type PersonName = Skipped;
    type PersonDetails = Skipped;
    type AuctionText = Skipped;
    type BidChannelUrl = Skipped;
    type BidExtra = Skipped;
}
