//! Turns decoded `pgoutput` messages into [`ChangeEvent`]s: keeps the relation descriptions,
//! tracks the open transaction, and maps tuple columns to named, typed values.
//!
//! Pure: no I/O, no clock (the caller passes the processing time).

use std::collections::{HashMap, HashSet};

use crate::event::{pg_us_to_unix_ms, ChangeEvent, Op, Source};
use crate::lsn::Lsn;
use crate::pgoutput::{OldTuple, PgOutputMessage, Relation, TupleData, TupleValue};
use crate::table::TableName;
use crate::value::{ColumnValue, Row};

/// A change message that the assembler cannot turn into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    /// A row change names a relation OID that no earlier `Relation` message described.
    #[error("change for relation oid {0} before its Relation message")]
    UnknownRelation(u32),
    /// A tuple's column count differs from its relation's.
    #[error("table {table}: tuple has {got} columns, relation has {expected}")]
    ColumnCountMismatch {
        /// The table.
        table: TableName,
        /// Columns in the Relation message.
        expected: usize,
        /// Columns in the tuple.
        got: usize,
    },
    /// A row change arrived outside `Begin`…`Commit`.
    #[error("row change outside a transaction at {0}")]
    OutsideTransaction(Lsn),
    /// A column came in binary format, which the reader never requests.
    #[error("table {0}: binary column value (the reader requests text format)")]
    BinaryValue(TableName),
}

/// What [`ChangeAssembler::apply`] saw, beyond the events it appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing that ends a transaction.
    Continue,
    /// A transaction committed; confirming `end_lsn` acknowledges it.
    Committed {
        /// The LSN just past the commit record.
        end_lsn: Lsn,
    },
}

#[derive(Debug, Clone)]
struct RelationShape {
    table: TableName,
    columns: Vec<(String, u32)>,
    key_columns: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct OpenTransaction {
    xid: u32,
    final_lsn: Lsn,
    commit_ts_ms: i64,
}

/// The decoding state of one stream: relations seen so far and the open transaction.
#[derive(Debug, Clone)]
pub struct ChangeAssembler {
    database: String,
    primary_keys: HashMap<TableName, Vec<String>>,
    only: Option<HashSet<TableName>>,
    relations: HashMap<u32, RelationShape>,
    open: Option<OpenTransaction>,
}

impl ChangeAssembler {
    /// An assembler for a stream of database `database`. `primary_keys` names the key columns of
    /// each table (tables absent from it use the Relation message's replica-identity key flags);
    /// `only`, if given, restricts events to those tables.
    pub fn new(
        database: impl Into<String>,
        primary_keys: HashMap<TableName, Vec<String>>,
        only: Option<HashSet<TableName>>,
    ) -> Self {
        ChangeAssembler {
            database: database.into(),
            primary_keys,
            only,
            relations: HashMap::new(),
            open: None,
        }
    }

    /// Whether a transaction has begun and not yet committed.
    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// Forgets any open transaction (call when a batch is abandoned; relations are kept).
    pub fn reset_transaction(&mut self) {
        self.open = None;
    }

    /// Applies one message found at WAL position `lsn`, appending the events it yields to `out`.
    /// `now_ms` becomes the events' processing time.
    pub fn apply(
        &mut self,
        lsn: Lsn,
        msg: PgOutputMessage,
        now_ms: i64,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<Applied, AssembleError> {
        match msg {
            PgOutputMessage::Begin(b) => {
                self.open = Some(OpenTransaction {
                    xid: b.xid,
                    final_lsn: b.final_lsn,
                    commit_ts_ms: pg_us_to_unix_ms(b.commit_time_pg_us),
                });
            }
            PgOutputMessage::Commit(c) => {
                self.open = None;
                return Ok(Applied::Committed { end_lsn: c.end_lsn });
            }
            PgOutputMessage::Origin(_) | PgOutputMessage::Type(_) => {}
            PgOutputMessage::Relation(rel) => self.add_relation(rel),
            PgOutputMessage::Insert(ins) => {
                let Some(shape) = self.shape(ins.relation_oid)? else {
                    return Ok(Applied::Continue);
                };
                let after = row(shape, &ins.new, None)?;
                out.push(self.event(shape, Op::Create, None, Some(after), lsn, now_ms)?);
            }
            PgOutputMessage::Update(upd) => {
                let Some(shape) = self.shape(upd.relation_oid)? else {
                    return Ok(Applied::Continue);
                };
                let before = match &upd.old {
                    Some(OldTuple::Key(t) | OldTuple::Full(t)) => Some(row(shape, t, None)?),
                    None => None,
                };
                let full_old = match &upd.old {
                    Some(OldTuple::Full(_)) => before.as_ref(),
                    _ => None,
                };
                let after = row(shape, &upd.new, full_old)?;
                out.push(self.event(shape, Op::Update, before, Some(after), lsn, now_ms)?);
            }
            PgOutputMessage::Delete(del) => {
                let Some(shape) = self.shape(del.relation_oid)? else {
                    return Ok(Applied::Continue);
                };
                let (OldTuple::Key(t) | OldTuple::Full(t)) = &del.old;
                let before = row(shape, t, None)?;
                out.push(self.event(shape, Op::Delete, Some(before), None, lsn, now_ms)?);
            }
            PgOutputMessage::Truncate(tr) => {
                for oid in tr.relation_oids {
                    if let Some(shape) = self.shape(oid)? {
                        out.push(self.event(shape, Op::Truncate, None, None, lsn, now_ms)?);
                    }
                }
            }
        }
        Ok(Applied::Continue)
    }

    fn add_relation(&mut self, rel: Relation) {
        let table = TableName::new(rel.namespace_or_catalog(), rel.name.clone());
        let key_columns = match self.primary_keys.get(&table) {
            Some(keys) => keys.clone(),
            None => rel
                .columns
                .iter()
                .filter(|c| c.is_key)
                .map(|c| c.name.clone())
                .collect(),
        };
        let columns = rel.columns.into_iter().map(|c| (c.name, c.type_oid)).collect();
        self.relations.insert(
            rel.oid,
            RelationShape {
                table,
                columns,
                key_columns,
            },
        );
    }

    /// The relation's shape, or `None` if the table is filtered out.
    fn shape(&self, oid: u32) -> Result<Option<&RelationShape>, AssembleError> {
        let shape = self.relations.get(&oid).ok_or(AssembleError::UnknownRelation(oid))?;
        Ok(match &self.only {
            Some(only) if !only.contains(&shape.table) => None,
            _ => Some(shape),
        })
    }

    fn event(
        &self,
        shape: &RelationShape,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
        lsn: Lsn,
        now_ms: i64,
    ) -> Result<ChangeEvent, AssembleError> {
        let tx = self.open.ok_or(AssembleError::OutsideTransaction(lsn))?;
        let key_source = after.as_ref().or(before.as_ref());
        let key = match (op, key_source) {
            (Op::Truncate, _) | (_, None) => Row::default(),
            (_, Some(image)) => Row(shape
                .key_columns
                .iter()
                .map(|k| (k.clone(), image.get(k).cloned().unwrap_or(ColumnValue::Null)))
                .collect()),
        };
        Ok(ChangeEvent {
            op,
            before,
            after,
            key,
            source: Source {
                db: self.database.clone(),
                table: shape.table.clone(),
                lsn,
                commit_lsn: tx.final_lsn,
                tx_id: Some(tx.xid),
                ts_ms: tx.commit_ts_ms,
                snapshot: false,
            },
            ts_ms: now_ms,
        })
    }
}

impl Relation {
    /// The schema name, with the empty name `pgoutput` sends for `pg_catalog` spelled out.
    fn namespace_or_catalog(&self) -> String {
        if self.namespace.is_empty() {
            "pg_catalog".to_owned()
        } else {
            self.namespace.clone()
        }
    }
}

/// Names and types a tuple's values. Unchanged TOAST values are taken from `old` when it holds
/// the full old row, and are [`ColumnValue::Unavailable`] otherwise.
fn row(shape: &RelationShape, tuple: &TupleData, old: Option<&Row>) -> Result<Row, AssembleError> {
    if tuple.columns.len() != shape.columns.len() {
        return Err(AssembleError::ColumnCountMismatch {
            table: shape.table.clone(),
            expected: shape.columns.len(),
            got: tuple.columns.len(),
        });
    }
    let mut values = Vec::with_capacity(tuple.columns.len());
    for (i, ((name, type_oid), value)) in shape.columns.iter().zip(&tuple.columns).enumerate() {
        let value = match value {
            TupleValue::Null => ColumnValue::Null,
            TupleValue::Text(text) => ColumnValue::from_text(*type_oid, text),
            TupleValue::UnchangedToast => old
                .and_then(|o| o.0.get(i))
                .map(|(_, v)| v.clone())
                .unwrap_or(ColumnValue::Unavailable),
            TupleValue::Binary(_) => return Err(AssembleError::BinaryValue(shape.table.clone())),
        };
        values.push((name.clone(), value));
    }
    Ok(Row(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::{build, decode};
    use crate::value::oid;

    fn t(s: &str) -> TupleValue {
        TupleValue::Text(s.to_owned())
    }

    fn feed(a: &mut ChangeAssembler, msgs: &[(u64, Vec<u8>)]) -> (Vec<ChangeEvent>, Vec<Lsn>) {
        let mut out = Vec::new();
        let mut commits = Vec::new();
        for (lsn, bytes) in msgs {
            match a.apply(Lsn(*lsn), decode(bytes).unwrap(), 99, &mut out).unwrap() {
                Applied::Committed { end_lsn } => commits.push(end_lsn),
                Applied::Continue => {}
            }
        }
        (out, commits)
    }

    fn relation_msg() -> Vec<u8> {
        build::relation(
            10,
            "public",
            "acct",
            b'f',
            &[
                (true, "id", oid::INT4),
                (true, "name", 25),
                (true, "balance", oid::NUMERIC),
            ],
        )
    }

    #[test]
    fn insert_update_delete_become_create_update_delete_events_with_images() {
        let mut a = ChangeAssembler::new(
            "test",
            HashMap::from([(TableName::new("public", "acct"), vec!["id".to_owned()])]),
            None,
        );
        let (events, commits) = feed(
            &mut a,
            &[
                (1, build::begin(50, 1_000_000, 7)),
                (2, relation_msg()),
                (3, build::insert(10, &[t("1"), t("ann"), t("5.00")])),
                (
                    4,
                    build::update(
                        10,
                        Some((b'O', &[t("1"), t("ann"), t("5.00")])),
                        &[t("1"), t("ann"), t("6.50")],
                    ),
                ),
                (5, build::delete(10, b'O', &[t("1"), t("ann"), t("6.50")])),
                (50, build::commit(50, 60, 1_000_000)),
            ],
        );
        assert_eq!(commits, vec![Lsn(60)]);
        let ops: Vec<Op> = events.iter().map(|e| e.op).collect();
        assert_eq!(ops, vec![Op::Create, Op::Update, Op::Delete]);
        let upd = &events[1];
        assert_eq!(
            upd.before.as_ref().unwrap().get("balance"),
            Some(&ColumnValue::Decimal("5.00".into()))
        );
        assert_eq!(
            upd.after.as_ref().unwrap().get("balance"),
            Some(&ColumnValue::Decimal("6.50".into()))
        );
        assert_eq!(upd.key, Row(vec![("id".into(), ColumnValue::Int(1))]));
        assert_eq!(events[2].after, None);
        assert_eq!(events[2].key, Row(vec![("id".into(), ColumnValue::Int(1))]));
        let src = &upd.source;
        assert_eq!((src.lsn, src.commit_lsn, src.tx_id), (Lsn(4), Lsn(50), Some(7)));
        assert_eq!(src.ts_ms, 946_684_800_000 + 1_000);
        assert_eq!(upd.ts_ms, 99);
    }

    #[test]
    fn unchanged_toast_is_filled_from_a_full_old_image_or_marked_unavailable() {
        let mut a = ChangeAssembler::new("test", HashMap::new(), None);
        let (events, _) = feed(
            &mut a,
            &[
                (1, build::begin(50, 0, 7)),
                (2, relation_msg()),
                (
                    3,
                    build::update(
                        10,
                        Some((b'O', &[t("1"), t("big"), t("1")])),
                        &[t("1"), TupleValue::UnchangedToast, t("2")],
                    ),
                ),
                (
                    4,
                    build::update(10, None, &[t("1"), TupleValue::UnchangedToast, t("3")]),
                ),
            ],
        );
        assert_eq!(
            events[0].after.as_ref().unwrap().get("name"),
            Some(&ColumnValue::Text("big".into()))
        );
        assert_eq!(
            events[1].after.as_ref().unwrap().get("name"),
            Some(&ColumnValue::Unavailable)
        );
        assert_eq!(events[1].before, None);
    }

    #[test]
    fn key_falls_back_to_relation_key_flags_without_a_known_primary_key() {
        let mut a = ChangeAssembler::new("test", HashMap::new(), None);
        let rel = build::relation(11, "s", "kv", b'd', &[(true, "k", 25), (false, "v", 25)]);
        let (events, _) = feed(
            &mut a,
            &[
                (1, build::begin(9, 0, 1)),
                (2, rel),
                (3, build::insert(11, &[t("a"), t("b")])),
            ],
        );
        assert_eq!(events[0].key, Row(vec![("k".into(), ColumnValue::Text("a".into()))]));
        assert_eq!(events[0].source.table, TableName::new("s", "kv"));
    }

    #[test]
    fn tables_outside_the_filter_yield_no_events() {
        let only = HashSet::from([TableName::new("public", "other")]);
        let mut a = ChangeAssembler::new("test", HashMap::new(), Some(only));
        let (events, commits) = feed(
            &mut a,
            &[
                (1, build::begin(9, 0, 1)),
                (2, relation_msg()),
                (3, build::insert(10, &[t("1"), t("a"), t("1")])),
                (9, build::commit(9, 10, 0)),
            ],
        );
        assert!(events.is_empty());
        assert_eq!(commits, vec![Lsn(10)]);
    }

    #[test]
    fn inconsistent_streams_are_errors_not_panics() {
        let mut a = ChangeAssembler::new("test", HashMap::new(), None);
        let mut out = Vec::new();
        let ins = decode(&build::insert(10, &[t("1")])).unwrap();
        assert_eq!(
            a.apply(Lsn(1), ins.clone(), 0, &mut out),
            Err(AssembleError::UnknownRelation(10))
        );
        a.apply(Lsn(2), decode(&relation_msg()).unwrap(), 0, &mut out).unwrap();
        assert_eq!(
            a.apply(Lsn(3), ins, 0, &mut out),
            Err(AssembleError::ColumnCountMismatch {
                table: TableName::new("public", "acct"),
                expected: 3,
                got: 1
            })
        );
        let ok = decode(&build::insert(10, &[t("1"), t("a"), t("1")])).unwrap();
        assert_eq!(
            a.apply(Lsn(4), ok, 0, &mut out),
            Err(AssembleError::OutsideTransaction(Lsn(4)))
        );
        assert!(out.is_empty());
    }
}
