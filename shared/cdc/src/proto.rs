//! The generic Protobuf envelope: [`ChangeEvent`] as `shardflow.cdc.v1.ChangeEvent` of
//! `shardflow-schemas` ([`to_proto`]) and back ([`from_proto`]), losslessly: every
//! [`ColumnValue`] variant has its own `Value.kind`, and `from_proto(to_proto(e)) == e`.
//!
//! [`encode`] writes the same bytes as `to_proto(e).encode_to_vec()` straight from the event,
//! without building the intermediate message (which copies every column name and value): the
//! reader's hot path.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use shardflow_schemas::cdc::v1 as pb;

use crate::event::{ChangeEvent, Op, Source};
use crate::lsn::Lsn;
use crate::table::TableName;
use crate::value::{ColumnValue, Row};

/// The `source.connector` of every event this crate writes.
pub const CONNECTOR: &str = "postgresql";

/// A Protobuf envelope that does not describe a change event of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromProtoError {
    /// `op` is unspecified or unknown to this release.
    #[error("unknown op {0}")]
    UnknownOp(i32),
    /// The envelope has no `source`.
    #[error("change event without a source")]
    MissingSource,
    /// A column's value has no kind (or one newer than this release).
    #[error("column {0:?} has no value kind this release knows")]
    UnknownValueKind(String),
}

/// The Protobuf op of an [`Op`].
pub fn op_to_proto(op: Op) -> pb::Op {
    match op {
        Op::Create => pb::Op::Create,
        Op::Update => pb::Op::Update,
        Op::Delete => pb::Op::Delete,
        Op::Read => pb::Op::Read,
        Op::Truncate => pb::Op::Truncate,
    }
}

fn value_to_proto(value: &ColumnValue) -> pb::Value {
    use pb::value::Kind;
    let kind = match value {
        ColumnValue::Null => Kind::Null(true),
        ColumnValue::Bool(b) => Kind::Bool(*b),
        ColumnValue::Int(i) => Kind::Int(*i),
        ColumnValue::Float(f) => Kind::Float(*f),
        ColumnValue::Decimal(s) => Kind::Decimal(s.clone()),
        ColumnValue::Date(d) => Kind::Date(*d),
        ColumnValue::TimestampMicros(t) => Kind::TimestampMicros(*t),
        ColumnValue::ZonedTimestampMicros(t) => Kind::TimestamptzMicros(*t),
        ColumnValue::Text(s) => Kind::Text(s.clone()),
        ColumnValue::Unavailable => Kind::Unavailable(true),
    };
    pb::Value { kind: Some(kind) }
}

fn row_to_proto(row: &Row) -> pb::Row {
    pb::Row {
        columns: row
            .0
            .iter()
            .map(|(name, value)| pb::Column {
                name: name.clone(),
                value: Some(value_to_proto(value)),
            })
            .collect(),
    }
}

/// The event as the generic Protobuf envelope.
pub fn to_proto(event: &ChangeEvent) -> pb::ChangeEvent {
    let s = &event.source;
    pb::ChangeEvent {
        op: op_to_proto(event.op) as i32,
        before: event.before.as_ref().map(row_to_proto),
        after: event.after.as_ref().map(row_to_proto),
        key: Some(row_to_proto(&event.key)),
        source: Some(pb::Source {
            connector: CONNECTOR.to_owned(),
            db: s.db.clone(),
            schema: s.table.schema.clone(),
            table: s.table.name.clone(),
            lsn: s.lsn.0,
            commit_lsn: s.commit_lsn.0,
            tx_id: s.tx_id,
            ts_ms: s.ts_ms,
            snapshot: s.snapshot,
        }),
        ts_ms: event.ts_ms,
    }
}

// Field numbers of shardflow/cdc/v1/change.proto.
mod field {
    pub const EVENT_OP: u32 = 1;
    pub const EVENT_BEFORE: u32 = 2;
    pub const EVENT_AFTER: u32 = 3;
    pub const EVENT_KEY: u32 = 4;
    pub const EVENT_SOURCE: u32 = 5;
    pub const EVENT_TS_MS: u32 = 6;
    pub const ROW_COLUMNS: u32 = 1;
    pub const COLUMN_NAME: u32 = 1;
    pub const COLUMN_VALUE: u32 = 2;
    pub const SOURCE_CONNECTOR: u32 = 1;
    pub const SOURCE_DB: u32 = 2;
    pub const SOURCE_SCHEMA: u32 = 3;
    pub const SOURCE_TABLE: u32 = 4;
    pub const SOURCE_LSN: u32 = 5;
    pub const SOURCE_COMMIT_LSN: u32 = 6;
    pub const SOURCE_TX_ID: u32 = 7;
    pub const SOURCE_TS_MS: u32 = 8;
    pub const SOURCE_SNAPSHOT: u32 = 9;
}

/// Length of a varint field (as proto3 writes it: omitted when 0 unless `always`).
fn varint_field_len(tag: u32, v: u64, always: bool) -> usize {
    if v == 0 && !always {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

fn put_varint_field(tag: u32, v: u64, always: bool, buf: &mut Vec<u8>) {
    if v != 0 || always {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

fn bytes_field_len(tag: u32, len: usize, always: bool) -> usize {
    if len == 0 && !always {
        0
    } else {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }
}

fn put_bytes_field(tag: u32, bytes: &[u8], always: bool, buf: &mut Vec<u8>) {
    if !bytes.is_empty() || always {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(bytes.len() as u64, buf);
        buf.extend_from_slice(bytes);
    }
}

/// Starts an embedded message of `len` bytes.
fn put_message_header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn message_field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// The `Value` message: its oneof field (tag, and wire form).
fn value_len(value: &ColumnValue) -> usize {
    match value {
        ColumnValue::Null | ColumnValue::Bool(_) | ColumnValue::Unavailable => 2,
        ColumnValue::Int(i) | ColumnValue::TimestampMicros(i) | ColumnValue::ZonedTimestampMicros(i) => {
            1 + encoded_len_varint(*i as u64)
        }
        ColumnValue::Float(_) => 9,
        ColumnValue::Decimal(s) => bytes_field_len(5, s.len(), true),
        ColumnValue::Text(s) => bytes_field_len(9, s.len(), true),
        ColumnValue::Date(d) => 1 + encoded_len_varint(i64::from(*d) as u64),
    }
}

fn put_value(value: &ColumnValue, buf: &mut Vec<u8>) {
    match value {
        ColumnValue::Null => put_varint_field(1, 1, true, buf),
        ColumnValue::Bool(b) => put_varint_field(2, u64::from(*b), true, buf),
        ColumnValue::Int(i) => put_varint_field(3, *i as u64, true, buf),
        ColumnValue::Float(f) => {
            encode_key(4, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&f.to_le_bytes());
        }
        ColumnValue::Decimal(s) => put_bytes_field(5, s.as_bytes(), true, buf),
        ColumnValue::Date(d) => put_varint_field(6, i64::from(*d) as u64, true, buf),
        ColumnValue::TimestampMicros(t) => put_varint_field(7, *t as u64, true, buf),
        ColumnValue::ZonedTimestampMicros(t) => put_varint_field(8, *t as u64, true, buf),
        ColumnValue::Text(s) => put_bytes_field(9, s.as_bytes(), true, buf),
        ColumnValue::Unavailable => put_varint_field(10, 1, true, buf),
    }
}

fn column_len(name: &str, value: &ColumnValue) -> usize {
    bytes_field_len(field::COLUMN_NAME, name.len(), false) + message_field_len(field::COLUMN_VALUE, value_len(value))
}

fn row_len(row: &Row) -> usize {
    row.0
        .iter()
        .map(|(name, value)| message_field_len(field::ROW_COLUMNS, column_len(name, value)))
        .sum()
}

fn put_row(tag: u32, row: &Row, buf: &mut Vec<u8>) {
    put_message_header(tag, row_len(row), buf);
    for (name, value) in &row.0 {
        put_message_header(field::ROW_COLUMNS, column_len(name, value), buf);
        put_bytes_field(field::COLUMN_NAME, name.as_bytes(), false, buf);
        put_message_header(field::COLUMN_VALUE, value_len(value), buf);
        put_value(value, buf);
    }
}

fn source_len(s: &Source) -> usize {
    bytes_field_len(field::SOURCE_CONNECTOR, CONNECTOR.len(), false)
        + bytes_field_len(field::SOURCE_DB, s.db.len(), false)
        + bytes_field_len(field::SOURCE_SCHEMA, s.table.schema.len(), false)
        + bytes_field_len(field::SOURCE_TABLE, s.table.name.len(), false)
        + varint_field_len(field::SOURCE_LSN, s.lsn.0, false)
        + varint_field_len(field::SOURCE_COMMIT_LSN, s.commit_lsn.0, false)
        + s.tx_id
            .map_or(0, |tx| varint_field_len(field::SOURCE_TX_ID, u64::from(tx), true))
        + varint_field_len(field::SOURCE_TS_MS, s.ts_ms as u64, false)
        + varint_field_len(field::SOURCE_SNAPSHOT, u64::from(s.snapshot), false)
}

/// Appends the event's generic Protobuf envelope to `buf`: the bytes of
/// `to_proto(event).encode_to_vec()`, without the intermediate message.
pub fn encode(event: &ChangeEvent, buf: &mut Vec<u8>) {
    let op = op_to_proto(event.op) as i32;
    put_varint_field(field::EVENT_OP, op as u64, false, buf);
    if let Some(before) = &event.before {
        put_row(field::EVENT_BEFORE, before, buf);
    }
    if let Some(after) = &event.after {
        put_row(field::EVENT_AFTER, after, buf);
    }
    put_row(field::EVENT_KEY, &event.key, buf);
    let s = &event.source;
    put_message_header(field::EVENT_SOURCE, source_len(s), buf);
    put_bytes_field(field::SOURCE_CONNECTOR, CONNECTOR.as_bytes(), false, buf);
    put_bytes_field(field::SOURCE_DB, s.db.as_bytes(), false, buf);
    put_bytes_field(field::SOURCE_SCHEMA, s.table.schema.as_bytes(), false, buf);
    put_bytes_field(field::SOURCE_TABLE, s.table.name.as_bytes(), false, buf);
    put_varint_field(field::SOURCE_LSN, s.lsn.0, false, buf);
    put_varint_field(field::SOURCE_COMMIT_LSN, s.commit_lsn.0, false, buf);
    if let Some(tx) = s.tx_id {
        put_varint_field(field::SOURCE_TX_ID, u64::from(tx), true, buf);
    }
    put_varint_field(field::SOURCE_TS_MS, s.ts_ms as u64, false, buf);
    put_varint_field(field::SOURCE_SNAPSHOT, u64::from(s.snapshot), false, buf);
    put_varint_field(field::EVENT_TS_MS, event.ts_ms as u64, false, buf);
}

fn value_from_proto(name: &str, value: Option<pb::Value>) -> Result<ColumnValue, FromProtoError> {
    use pb::value::Kind;
    let kind = value
        .and_then(|v| v.kind)
        .ok_or_else(|| FromProtoError::UnknownValueKind(name.to_owned()))?;
    Ok(match kind {
        Kind::Null(_) => ColumnValue::Null,
        Kind::Bool(b) => ColumnValue::Bool(b),
        Kind::Int(i) => ColumnValue::Int(i),
        Kind::Float(f) => ColumnValue::Float(f),
        Kind::Decimal(s) => ColumnValue::Decimal(s),
        Kind::Date(d) => ColumnValue::Date(d),
        Kind::TimestampMicros(t) => ColumnValue::TimestampMicros(t),
        Kind::TimestamptzMicros(t) => ColumnValue::ZonedTimestampMicros(t),
        Kind::Text(s) => ColumnValue::Text(s),
        Kind::Unavailable(_) => ColumnValue::Unavailable,
    })
}

fn row_from_proto(row: pb::Row) -> Result<Row, FromProtoError> {
    row.columns
        .into_iter()
        .map(|c| {
            let value = value_from_proto(&c.name, c.value)?;
            Ok((c.name, value))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Row)
}

/// The change event a generic Protobuf envelope describes (the inverse of [`to_proto`]).
pub fn from_proto(event: pb::ChangeEvent) -> Result<ChangeEvent, FromProtoError> {
    let op = match pb::Op::try_from(event.op) {
        Ok(pb::Op::Create) => Op::Create,
        Ok(pb::Op::Update) => Op::Update,
        Ok(pb::Op::Delete) => Op::Delete,
        Ok(pb::Op::Read) => Op::Read,
        Ok(pb::Op::Truncate) => Op::Truncate,
        Ok(pb::Op::Unspecified) | Err(_) => return Err(FromProtoError::UnknownOp(event.op)),
    };
    let s = event.source.ok_or(FromProtoError::MissingSource)?;
    Ok(ChangeEvent {
        op,
        before: event.before.map(row_from_proto).transpose()?,
        after: event.after.map(row_from_proto).transpose()?,
        key: event.key.map(row_from_proto).transpose()?.unwrap_or_default(),
        source: Source {
            db: s.db,
            table: TableName::new(s.schema, s.table),
            lsn: Lsn(s.lsn),
            commit_lsn: Lsn(s.commit_lsn),
            tx_id: s.tx_id,
            ts_ms: s.ts_ms,
            snapshot: s.snapshot,
        },
        ts_ms: event.ts_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    fn source(tx_id: Option<u32>, snapshot: bool) -> Source {
        Source {
            db: "test".into(),
            table: TableName::new("shop", "orders"),
            lsn: Lsn(0x16_B374_D848),
            commit_lsn: Lsn(0x16_B374_D900),
            tx_id,
            ts_ms: 1_714_564_800_123,
            snapshot,
        }
    }

    fn every_kind() -> Row {
        Row(vec![
            ("n".into(), ColumnValue::Null),
            ("b".into(), ColumnValue::Bool(false)),
            ("i".into(), ColumnValue::Int(-9_000_000_000)),
            ("f".into(), ColumnValue::Float(f64::INFINITY)),
            ("d".into(), ColumnValue::Decimal("12.340".into())),
            ("day".into(), ColumnValue::Date(-3)),
            ("ts".into(), ColumnValue::TimestampMicros(1_500_000)),
            ("tz".into(), ColumnValue::ZonedTimestampMicros(-1)),
            ("t".into(), ColumnValue::Text("héllo".into())),
            ("big".into(), ColumnValue::Unavailable),
        ])
    }

    #[test]
    fn every_value_kind_round_trips_through_protobuf_bytes() {
        let event = ChangeEvent {
            op: Op::Update,
            before: Some(every_kind()),
            after: Some(every_kind()),
            key: Row(vec![("i".into(), ColumnValue::Int(-9_000_000_000))]),
            source: source(Some(7), false),
            ts_ms: 1_714_564_800_200,
        };
        let bytes = to_proto(&event).encode_to_vec();
        let mut direct = Vec::new();
        encode(&event, &mut direct);
        assert_eq!(direct, bytes, "the direct encoder writes prost's bytes");
        let decoded = pb::ChangeEvent::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.op(), pb::Op::Update);
        let src = decoded.source.as_ref().unwrap();
        assert_eq!(
            (src.connector.as_str(), src.schema.as_str(), src.table.as_str()),
            ("postgresql", "shop", "orders")
        );
        assert_eq!(src.tx_id, Some(7));
        assert_eq!(from_proto(decoded).unwrap(), event);
    }

    #[test]
    fn snapshot_rows_and_truncates_keep_absent_fields_absent() {
        let read = ChangeEvent {
            op: Op::Read,
            before: None,
            after: Some(Row(vec![("id".into(), ColumnValue::Int(1))])),
            key: Row(vec![("id".into(), ColumnValue::Int(1))]),
            source: source(None, true),
            ts_ms: 5,
        };
        let truncate = ChangeEvent {
            op: Op::Truncate,
            before: None,
            after: None,
            key: Row::default(),
            source: source(Some(9), false),
            ts_ms: 6,
        };
        for event in [read, truncate] {
            let mut direct = Vec::new();
            encode(&event, &mut direct);
            assert_eq!(direct, to_proto(&event).encode_to_vec());
            let decoded = pb::ChangeEvent::decode(to_proto(&event).encode_to_vec().as_slice()).unwrap();
            assert_eq!(decoded.before, None);
            assert_eq!(from_proto(decoded).unwrap(), event);
        }
    }

    #[test]
    fn envelopes_this_release_cannot_read_are_errors() {
        let mut e = to_proto(&ChangeEvent {
            op: Op::Create,
            before: None,
            after: Some(Row(vec![("id".into(), ColumnValue::Int(1))])),
            key: Row::default(),
            source: source(None, false),
            ts_ms: 0,
        });
        let mut unknown_kind = e.clone();
        if let Some(after) = unknown_kind.after.as_mut() {
            after.columns[0].value = Some(pb::Value { kind: None });
        }
        assert_eq!(
            from_proto(unknown_kind),
            Err(FromProtoError::UnknownValueKind("id".into()))
        );
        let mut no_source = e.clone();
        no_source.source = None;
        assert_eq!(from_proto(no_source), Err(FromProtoError::MissingSource));
        e.op = 42;
        assert_eq!(from_proto(e), Err(FromProtoError::UnknownOp(42)));
    }

    fn value() -> impl Strategy<Value = ColumnValue> {
        prop_oneof![
            Just(ColumnValue::Null),
            any::<bool>().prop_map(ColumnValue::Bool),
            any::<i64>().prop_map(ColumnValue::Int),
            // NaN != NaN: finite and infinite floats only, NaN is covered by the bytes check below.
            any::<f64>()
                .prop_filter("not NaN", |f| !f.is_nan())
                .prop_map(ColumnValue::Float),
            "[0-9]{1,20}\\.[0-9]{0,6}".prop_map(ColumnValue::Decimal),
            any::<i32>().prop_map(ColumnValue::Date),
            any::<i64>().prop_map(ColumnValue::TimestampMicros),
            any::<i64>().prop_map(ColumnValue::ZonedTimestampMicros),
            ".{0,40}".prop_map(ColumnValue::Text),
            Just(ColumnValue::Unavailable),
        ]
    }

    proptest! {
        #[test]
        fn any_event_round_trips(
            values in proptest::collection::vec(("[a-z_]{0,12}", value()), 0..12),
            op in prop_oneof![Just(Op::Create), Just(Op::Update), Just(Op::Delete), Just(Op::Read), Just(Op::Truncate)],
            tx_id in proptest::option::of(any::<u32>()),
            (lsn, commit_lsn) in (any::<u64>(), prop_oneof![Just(0u64), any::<u64>()]),
            (ts_ms, source_ts_ms) in (prop_oneof![Just(0i64), any::<i64>()], any::<i64>()),
            (db, schema) in ("[a-z]{0,6}", "[a-z]{0,6}"),
            (has_before, has_after, snapshot) in (any::<bool>(), any::<bool>(), any::<bool>()),
        ) {
            let row = Row(values);
            let event = ChangeEvent {
                op,
                before: has_before.then(|| row.clone()),
                after: has_after.then(|| row.clone()),
                key: Row(row.0.iter().take(1).cloned().collect()),
                source: Source {
                    db,
                    table: TableName::new(schema, "t"),
                    lsn: Lsn(lsn),
                    commit_lsn: Lsn(commit_lsn),
                    tx_id,
                    ts_ms: source_ts_ms,
                    snapshot,
                },
                ts_ms,
            };
            let bytes = to_proto(&event).encode_to_vec();
            let mut direct = Vec::new();
            encode(&event, &mut direct);
            prop_assert_eq!(&direct, &bytes);
            let back = from_proto(pb::ChangeEvent::decode(bytes.as_slice()).unwrap()).unwrap();
            prop_assert_eq!(back, event);
        }
    }

    #[test]
    fn nan_round_trips_as_nan() {
        let event = ChangeEvent {
            op: Op::Create,
            before: None,
            after: Some(Row(vec![("f".into(), ColumnValue::Float(f64::NAN))])),
            key: Row::default(),
            source: source(None, false),
            ts_ms: 0,
        };
        let back = from_proto(pb::ChangeEvent::decode(to_proto(&event).encode_to_vec().as_slice()).unwrap()).unwrap();
        assert!(matches!(back.after.unwrap().0[0].1, ColumnValue::Float(f) if f.is_nan()));
    }
}
