//! JSON (serde) names of the Protobuf enums, used by the generated types' `#[serde(with)]`.
//!
//! prost keeps an enum field as `i32`; these modules write it as its name: the proto name without
//! the enum's prefix, lower case (`ORDER_STATUS_COMPLETED` -> `"completed"`), and `op` as
//! Debezium's letters (`c`, `u`, `d`, `r`). Reading accepts those names, the full proto names, and
//! the decimal number as a string, which is also how a value unknown to this release (a newer
//! schema) is written, so every value round-trips.

use serde::{Deserialize, Deserializer, Serializer};

/// The short name of a proto enum value name: prefix removed, lower case.
fn short_name(proto_name: &str, prefix: &str) -> String {
    proto_name
        .strip_prefix(prefix)
        .unwrap_or(proto_name)
        .to_ascii_lowercase()
}

fn parse_number<E: serde::de::Error>(s: &str, what: &str) -> Result<i32, E> {
    s.parse::<i32>().map_err(|_| E::custom(format!("unknown {what} {s:?}")))
}

macro_rules! enum_names {
    ($(#[$doc:meta])* $module:ident, $ty:ty, $prefix:literal) => {
        $(#[$doc])*
        pub mod $module {
            use super::*;

            /// Writes the enum's short name (or the number, if unknown).
            pub fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
                match <$ty>::try_from(*v) {
                    Ok(e) => s.serialize_str(&short_name(e.as_str_name(), $prefix)),
                    Err(_) => s.serialize_str(&v.to_string()),
                }
            }

            /// Reads a short name, a full proto name, or a number as a string.
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
                let s = String::deserialize(d)?;
                let upper = s.to_ascii_uppercase();
                if let Some(e) = <$ty>::from_str_name(&upper) {
                    return Ok(e as i32);
                }
                if let Some(e) = <$ty>::from_str_name(&format!("{}{}", $prefix, upper)) {
                    return Ok(e as i32);
                }
                parse_number(&s, stringify!($module))
            }
        }
    };
}

enum_names!(
    /// [`crate::OrderStatus`] as `"pending"`, `"paid"`, `"shipped"`, `"completed"`, `"cancelled"`.
    order_status,
    crate::OrderStatus,
    "ORDER_STATUS_"
);
enum_names!(
    /// [`crate::PaymentStatus`] as `"authorized"`, `"captured"`, `"failed"`, `"refunded"`.
    payment_status,
    crate::PaymentStatus,
    "PAYMENT_STATUS_"
);
enum_names!(
    /// [`crate::ShipmentStatus`] as `"shipped"`, `"delivered"`, `"returned"`.
    shipment_status,
    crate::ShipmentStatus,
    "SHIPMENT_STATUS_"
);

/// [`crate::Op`] as Debezium's letters: `c` (create), `u` (update), `d` (delete), `r` (read).
pub mod op {
    use super::*;
    use crate::Op;

    fn letter(op: Op) -> &'static str {
        match op {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Unspecified => "0",
        }
    }

    /// Writes `c`, `u`, `d` or `r` (or the number, if unknown).
    pub fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        match Op::try_from(*v) {
            Ok(op) => s.serialize_str(letter(op)),
            Err(_) => s.serialize_str(&v.to_string()),
        }
    }

    /// Reads a letter, a full proto name (`OP_CREATE`), or a number as a string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        let s = String::deserialize(d)?;
        let op = match s.as_str() {
            "c" => Some(Op::Create),
            "u" => Some(Op::Update),
            "d" => Some(Op::Delete),
            "r" => Some(Op::Read),
            other => Op::from_str_name(other),
        };
        match op {
            Some(op) => Ok(op as i32),
            None => parse_number(&s, "op"),
        }
    }
}
