//! Kinesis sequence numbers.
//!
//! A sequence number is a decimal string of up to 128 digits (in practice 56) that increases
//! within a shard. It does not fit any integer type, so it is compared as a number: shorter is
//! smaller, equal lengths compare digit by digit. Leading zeros are not produced by Kinesis and
//! are refused, so that one number has one spelling.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The largest number of digits accepted (Kinesis documents sequence numbers as up to 128 digits).
pub const MAX_DIGITS: usize = 128;

/// Why a string is not a sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid Kinesis sequence number {value:?}: {reason}")]
pub struct SequenceNumberError {
    /// The refused value (truncated to 160 characters).
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A Kinesis sequence number, ordered numerically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Parses a sequence number.
    pub fn parse(value: &str) -> Result<Self, SequenceNumberError> {
        let err = |reason| SequenceNumberError {
            value: value.chars().take(160).collect(),
            reason,
        };
        if value.is_empty() {
            return Err(err("empty"));
        }
        if value.len() > MAX_DIGITS {
            return Err(err("longer than 128 digits"));
        }
        if !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("not all decimal digits"));
        }
        if value.len() > 1 && value.starts_with('0') {
            return Err(err("leading zero"));
        }
        Ok(SequenceNumber(value.to_owned()))
    }

    /// The decimal string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stable 64-bit digest, used as the record's offset inside the engine (its result ids).
    pub fn digest(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.0.as_bytes())
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SequenceNumber {
    type Err = SequenceNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SequenceNumber::parse(s)
    }
}

impl Serialize for SequenceNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SequenceNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SequenceNumber::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    #[test]
    fn orders_numerically_not_lexicographically() {
        assert!(seq("9") < seq("10"));
        assert!(
            seq("49590338271490256608559692538361571095921575989136588898")
                > seq("4959033827149025660855969253836157109592157598913658889")
        );
        assert!(
            seq("49590338271490256608559692538361571095921575989136588898")
                < seq("49590338271490256608559692538361571095921575989136588899")
        );
        assert_eq!(seq("0"), seq("0"));
    }

    #[test]
    fn refuses_what_kinesis_never_sends() {
        for bad in ["", "12a", "-1", "007", " 1", &"1".repeat(129)] {
            assert!(SequenceNumber::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let s = seq("49568167373333333333333333333333333333333333333333333333");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"49568167373333333333333333333333333333333333333333333333\"");
        assert_eq!(serde_json::from_str::<SequenceNumber>(&json).unwrap(), s);
        assert!(serde_json::from_str::<SequenceNumber>("\"x\"").is_err());
    }

    proptest! {
        #[test]
        fn order_agrees_with_u128_order(a in any::<u128>(), b in any::<u128>()) {
            let (sa, sb) = (seq(&a.to_string()), seq(&b.to_string()));
            prop_assert_eq!(sa.cmp(&sb), a.cmp(&b));
        }

        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = SequenceNumber::parse(&s);
        }
    }
}
