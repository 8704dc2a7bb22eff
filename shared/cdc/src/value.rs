//! Column values: Postgres text output converted by type OID into typed values that serialize
//! the way Debezium's Postgres connector does (with `decimal.handling.mode=string` and
//! `time.precision.mode=adaptive`).

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Type OIDs of the built-in types this module converts (from `pg_type.dat`).
pub mod oid {
    /// `bool`
    pub const BOOL: u32 = 16;
    /// `int8`
    pub const INT8: u32 = 20;
    /// `int2`
    pub const INT2: u32 = 21;
    /// `int4`
    pub const INT4: u32 = 23;
    /// `oid`
    pub const OID: u32 = 26;
    /// `float4`
    pub const FLOAT4: u32 = 700;
    /// `float8`
    pub const FLOAT8: u32 = 701;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `timestamp` (without time zone)
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamptz`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
}

/// The value Debezium writes for an unchanged TOASTed column whose value Postgres did not send.
pub const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// A typed column value of a change event.
///
/// Designed to map one-to-one onto a Protobuf `oneof` (the `shardflow-schemas` envelope):
/// every variant holds a primitive.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValue {
    /// SQL NULL. JSON `null`.
    Null,
    /// `bool`. JSON boolean.
    Bool(bool),
    /// `int2`/`int4`/`int8`/`oid`. JSON number.
    Int(i64),
    /// `float4`/`float8`. JSON number; NaN and infinities as the strings `NaN`, `Infinity`, `-Infinity`.
    Float(f64),
    /// `numeric`, exact decimal text (Debezium `decimal.handling.mode=string`). JSON string.
    Decimal(String),
    /// `date`: days since 1970-01-01 (Debezium `io.debezium.time.Date`). JSON number.
    Date(i32),
    /// `timestamp`: microseconds since 1970-01-01 00:00 (Debezium `MicroTimestamp`). JSON number.
    TimestampMicros(i64),
    /// `timestamptz`: microseconds since the Unix epoch, serialized as an ISO-8601 UTC string
    /// (Debezium `ZonedTimestamp`).
    ZonedTimestampMicros(i64),
    /// Any other type (text, varchar, uuid, json, ...), and the special values `infinity`/BC
    /// dates that do not fit the typed variants: the Postgres text output. JSON string.
    Text(String),
    /// An unchanged TOASTed value that was not sent; serialized as [`UNAVAILABLE_VALUE`].
    Unavailable,
}

impl ColumnValue {
    /// Converts a column's Postgres text output (as sent by `pgoutput` or `simple_query`, with the
    /// session at `DateStyle=ISO` and `TimeZone=UTC`) into a typed value by its type OID.
    /// Text that does not parse as the type claims falls back to [`ColumnValue::Text`].
    pub fn from_text(type_oid: u32, text: &str) -> ColumnValue {
        let parsed = match type_oid {
            oid::BOOL => match text {
                "t" => Some(ColumnValue::Bool(true)),
                "f" => Some(ColumnValue::Bool(false)),
                _ => None,
            },
            oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => text.parse().ok().map(ColumnValue::Int),
            oid::FLOAT4 | oid::FLOAT8 => text.parse().ok().map(ColumnValue::Float),
            oid::NUMERIC => Some(ColumnValue::Decimal(text.to_owned())),
            oid::DATE => NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| {
                let days = d.signed_duration_since(NaiveDate::default()).num_days();
                i32::try_from(days).ok().map(ColumnValue::Date)
            }),
            oid::TIMESTAMP => NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|t| ColumnValue::TimestampMicros(t.and_utc().timestamp_micros())),
            oid::TIMESTAMPTZ => DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
                .ok()
                .map(|t| ColumnValue::ZonedTimestampMicros(t.timestamp_micros())),
            _ => None,
        };
        parsed.unwrap_or_else(|| ColumnValue::Text(text.to_owned()))
    }

    /// The value as text for a partition key: the Postgres text form for text-like values.
    pub fn key_text(&self) -> String {
        match self {
            ColumnValue::Null => "null".to_owned(),
            ColumnValue::Bool(b) => b.to_string(),
            ColumnValue::Int(i) => i.to_string(),
            ColumnValue::Float(f) => f.to_string(),
            ColumnValue::Decimal(s) | ColumnValue::Text(s) => s.clone(),
            ColumnValue::Date(d) => d.to_string(),
            ColumnValue::TimestampMicros(t) | ColumnValue::ZonedTimestampMicros(t) => t.to_string(),
            ColumnValue::Unavailable => UNAVAILABLE_VALUE.to_owned(),
        }
    }
}

impl Serialize for ColumnValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ColumnValue::Null => s.serialize_none(),
            ColumnValue::Bool(b) => s.serialize_bool(*b),
            ColumnValue::Int(i) => s.serialize_i64(*i),
            ColumnValue::Float(f) if f.is_nan() => s.serialize_str("NaN"),
            ColumnValue::Float(f) if f.is_infinite() => {
                s.serialize_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
            }
            ColumnValue::Float(f) => s.serialize_f64(*f),
            ColumnValue::Decimal(t) | ColumnValue::Text(t) => s.serialize_str(t),
            ColumnValue::Date(d) => s.serialize_i32(*d),
            ColumnValue::TimestampMicros(t) => s.serialize_i64(*t),
            ColumnValue::ZonedTimestampMicros(t) => match DateTime::from_timestamp_micros(*t) {
                Some(dt) => s.serialize_str(&dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                None => s.serialize_i64(*t),
            },
            ColumnValue::Unavailable => s.serialize_str(UNAVAILABLE_VALUE),
        }
    }
}

/// A row image: column names and values in table column order. Serializes as a JSON object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row(pub Vec<(String, ColumnValue)>);

impl Row {
    /// The value of the named column, if the row has it.
    pub fn get(&self, column: &str) -> Option<&ColumnValue> {
        self.0.iter().find(|(name, _)| name == column).map(|(_, v)| v)
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_convert_by_type_oid() {
        assert_eq!(ColumnValue::from_text(oid::BOOL, "t"), ColumnValue::Bool(true));
        assert_eq!(
            ColumnValue::from_text(oid::INT8, "-9000000000"),
            ColumnValue::Int(-9_000_000_000)
        );
        assert_eq!(ColumnValue::from_text(oid::FLOAT8, "1.5"), ColumnValue::Float(1.5));
        assert_eq!(
            ColumnValue::from_text(oid::NUMERIC, "12.340"),
            ColumnValue::Decimal("12.340".into())
        );
        assert_eq!(ColumnValue::from_text(25, "hi"), ColumnValue::Text("hi".into()));
        assert_eq!(ColumnValue::from_text(oid::INT4, "x"), ColumnValue::Text("x".into()));
    }

    #[test]
    fn dates_and_timestamps_convert_to_epoch_units() {
        assert_eq!(ColumnValue::from_text(oid::DATE, "1970-01-11"), ColumnValue::Date(10));
        assert_eq!(
            ColumnValue::from_text(oid::TIMESTAMP, "1970-01-01 00:00:01.5"),
            ColumnValue::TimestampMicros(1_500_000)
        );
        assert_eq!(
            ColumnValue::from_text(oid::TIMESTAMPTZ, "1970-01-01 01:00:00+01"),
            ColumnValue::ZonedTimestampMicros(0)
        );
        assert_eq!(
            ColumnValue::from_text(oid::TIMESTAMP, "infinity"),
            ColumnValue::Text("infinity".into())
        );
    }

    #[test]
    fn rows_serialize_as_debezium_json_objects() {
        let row = Row(vec![
            ("id".into(), ColumnValue::Int(1)),
            ("at".into(), ColumnValue::ZonedTimestampMicros(1_000)),
            ("f".into(), ColumnValue::Float(f64::NAN)),
            ("big".into(), ColumnValue::Unavailable),
            ("n".into(), ColumnValue::Null),
        ]);
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"id":1,"at":"1970-01-01T00:00:00.001Z","f":"NaN","big":"__debezium_unavailable_value","n":null}"#
        );
    }
}
