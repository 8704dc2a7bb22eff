//! Debezium-style change events.
//!
//! [`ChangeEvent`] serializes as the `payload` of a Debezium Postgres connector message
//! (`op`, `before`, `after`, `source`, `ts_ms`). Its fields are plain typed values; the Protobuf
//! envelopes are in [`crate::proto`] (generic) and [`crate::shop`] (the shop's tables).

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use crate::lsn::Lsn;
use crate::table::TableName;
use crate::value::Row;

/// Milliseconds between the Unix epoch and the Postgres epoch (2000-01-01 UTC).
pub const PG_EPOCH_UNIX_MS: i64 = 946_684_800_000;

/// Converts a Postgres timestamp (µs since 2000-01-01 UTC) to Unix epoch milliseconds.
pub fn pg_us_to_unix_ms(pg_us: i64) -> i64 {
    pg_us.div_euclid(1000).saturating_add(PG_EPOCH_UNIX_MS)
}

/// The kind of change, as Debezium's `op` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `c`: a row was inserted.
    Create,
    /// `u`: a row was updated.
    Update,
    /// `d`: a row was deleted.
    Delete,
    /// `r`: a row read by the initial snapshot.
    Read,
    /// `t`: the table was truncated (no row images).
    Truncate,
}

impl Op {
    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// Where a change came from (Debezium's `source` block).
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Database name.
    pub db: String,
    /// The changed table.
    pub table: TableName,
    /// LSN of the change's WAL record (for snapshot rows: the WAL position when the snapshot began).
    pub lsn: Lsn,
    /// LSN of the transaction's commit record; the slot is confirmed past it once delivered.
    /// Snapshot rows carry the snapshot's LSN.
    pub commit_lsn: Lsn,
    /// Transaction id (`txId`); for snapshot rows, the snapshot transaction's id.
    pub tx_id: Option<u32>,
    /// Commit time in Unix milliseconds (snapshot rows: when the snapshot began).
    pub ts_ms: i64,
    /// Whether the row comes from the initial snapshot.
    pub snapshot: bool,
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Source", 10)?;
        st.serialize_field("connector", "postgresql")?;
        st.serialize_field("db", &self.db)?;
        st.serialize_field("schema", &self.table.schema)?;
        st.serialize_field("table", &self.table.name)?;
        st.serialize_field("lsn", &self.lsn.0)?;
        st.serialize_field("commitLsn", &self.commit_lsn.0)?;
        st.serialize_field("txId", &self.tx_id)?;
        st.serialize_field("ts_ms", &self.ts_ms)?;
        st.serialize_field("snapshot", if self.snapshot { "true" } else { "false" })?;
        st.end()
    }
}

/// One change of one row (or, for [`Op::Truncate`], of one table).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// What happened.
    pub op: Op,
    /// The row before the change: for updates and deletes; complete only under
    /// `REPLICA IDENTITY FULL` (otherwise key columns only, or absent for updates that keep the key).
    pub before: Option<Row>,
    /// The row after the change: for creates, updates and snapshot reads.
    pub after: Option<Row>,
    /// The primary-key columns of the row (Debezium's message key); empty for truncates.
    pub key: Row,
    /// Where the change came from.
    pub source: Source,
    /// When the reader processed the change, Unix milliseconds.
    pub ts_ms: i64,
}

impl ChangeEvent {
    /// The partition key that keeps one row's changes in order: `schema.table` and the key values.
    pub fn partition_key(&self) -> String {
        let mut key = self.source.table.to_string();
        for (_, value) in &self.key.0 {
            key.push('|');
            key.push_str(&value.key_text());
        }
        key
    }

    /// The event as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl Serialize for ChangeEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("op", self.op.code())?;
        m.serialize_entry("before", &self.before)?;
        m.serialize_entry("after", &self.after)?;
        m.serialize_entry("source", &self.source)?;
        m.serialize_entry("ts_ms", &self.ts_ms)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ColumnValue;

    #[test]
    fn event_serializes_as_a_debezium_payload() {
        let event = ChangeEvent {
            op: Op::Create,
            before: None,
            after: Some(Row(vec![("id".into(), ColumnValue::Int(7))])),
            key: Row(vec![("id".into(), ColumnValue::Int(7))]),
            source: Source {
                db: "test".into(),
                table: TableName::new("public", "t"),
                lsn: Lsn(100),
                commit_lsn: Lsn(120),
                tx_id: Some(5),
                ts_ms: 1,
                snapshot: false,
            },
            ts_ms: 2,
        };
        let json: serde_json::Value = serde_json::from_str(&event.to_json().unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "op": "c", "before": null, "after": {"id": 7},
                "source": {"connector": "postgresql", "db": "test", "schema": "public", "table": "t",
                           "lsn": 100, "commitLsn": 120, "txId": 5, "ts_ms": 1, "snapshot": "false"},
                "ts_ms": 2
            })
        );
        assert_eq!(event.partition_key(), "public.t|7");
    }

    #[test]
    fn postgres_epoch_converts_to_unix_ms() {
        assert_eq!(pg_us_to_unix_ms(0), PG_EPOCH_UNIX_MS);
        assert_eq!(pg_us_to_unix_ms(1_500), PG_EPOCH_UNIX_MS + 1);
    }
}
