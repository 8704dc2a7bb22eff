//! The watermark window of one snapshot chunk (DBLog, Debezium's incremental snapshot): which
//! selected rows may be emitted, and where in the stream.
//!
//! # Protocol
//! For each chunk of a table (rows after the previous chunk's last key, in primary-key order,
//! at most `snapshot_chunk_rows`), the reader (see [`crate::snapshot`] for the SQL side):
//! 1. commits a *low watermark*: an upsert of its row in the signal table (a table in the
//!    publication, so the upsert appears in the stream) with a fresh id;
//! 2. takes a fresh transaction id `X` and selects the chunk in a `REPEATABLE READ` transaction
//!    whose snapshot has `xmin >= X` (retrying until it has): every transaction whose commit
//!    record precedes the low watermark's got its id before `X`, so it has ended and is visible
//!    to the select. (Without this wait, a transaction that committed just before the low
//!    watermark but had not yet become visible — Postgres makes commits visible slightly after
//!    writing their WAL record — would be missing from the chunk *and* emitted before the window,
//!    so the chunk's stale row would later overwrite it.)
//! 3. commits a *high watermark* upsert with another id;
//! 4. reads the stream on. Between the two watermarks ([`Chunk::observe`]) every change of the
//!    chunk's table removes the changed keys (before and after images) from the chunk: the stream
//!    itself carries their newer state. At the high watermark the remaining rows are emitted as
//!    `op = r` events, in the stream at that position.
//!
//! # Why this is consistent
//! Let `S` be the select's snapshot. A transaction visible to `S` committed before `S` was taken,
//! so before the high watermark; if it committed after the low one, its keys were dropped. A
//! transaction invisible to `S` committed after the low watermark (step 2): before the high one
//! its keys are dropped, after it its events follow the chunk rows. So a chunk row is emitted
//! only if no change of its key committed inside the window, and then it equals the row's state
//! at the high watermark — never older than an event emitted before it. A row deleted in the
//! window is not emitted; a row inserted in the window comes from the stream.

use std::collections::HashMap;

use crate::event::{ChangeEvent, Op, Source};
use crate::lsn::Lsn;
use crate::table::TableName;
use crate::value::{ColumnValue, Row};

/// Signal-table column naming the reader's slot.
pub const SLOT_COLUMN: &str = "slot";
/// Signal-table column holding the current watermark id.
pub const WATERMARK_COLUMN: &str = "watermark";

/// The key of `image` (values of `key_columns`, `|`-separated as in partition keys), or `None`
/// if the image lacks a key column.
pub fn key_of(image: &Row, key_columns: &[String]) -> Option<String> {
    let mut key = String::new();
    for (i, column) in key_columns.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        key.push_str(&image.get(column)?.key_text());
    }
    Some(key)
}

/// What [`Chunk::observe`] decided about one stream event.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Deliver the event.
    Forward,
    /// A signal-table change (a watermark): not delivered.
    Swallow,
    /// This chunk's high watermark: deliver these snapshot rows here instead; the chunk is done.
    Close(Vec<ChangeEvent>),
}

/// One selected chunk waiting for its watermarks in the stream.
#[derive(Debug, Clone)]
pub struct Chunk {
    table: TableName,
    key_columns: Vec<String>,
    low: String,
    high: String,
    rows: Vec<Option<ChangeEvent>>,
    index: HashMap<String, usize>,
    open: bool,
    dropped: usize,
}

impl Chunk {
    /// A chunk of `table` (key columns `key_columns`) selected between the watermarks `low` and
    /// `high` (ids), holding `rows` (`op = r` events; their source is set when they are emitted).
    pub fn new(table: TableName, key_columns: Vec<String>, low: String, high: String, rows: Vec<ChangeEvent>) -> Self {
        let index = rows
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.after.as_ref().and_then(|a| key_of(a, &key_columns)).map(|k| (k, i)))
            .collect();
        Chunk {
            table,
            key_columns,
            low,
            high,
            rows: rows.into_iter().map(Some).collect(),
            index,
            open: false,
            dropped: 0,
        }
    }

    /// The table the chunk belongs to.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// Whether the low watermark was seen (and the high one not yet).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Rows dropped so far because their key changed inside the window.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    fn drop_key(&mut self, key: Option<String>) {
        if let Some(i) = key.and_then(|k| self.index.remove(&k)) {
            if self.rows[i].take().is_some() {
                self.dropped += 1;
            }
        }
    }

    /// Decides about the next stream event (in stream order). `signal` is the signal table and
    /// `slot` this reader's slot: signal-table events are never delivered; the chunk's own
    /// watermarks open and close its window. `now_ms` is the processing time of emitted rows.
    pub fn observe(&mut self, event: &ChangeEvent, signal: &TableName, slot: &str, now_ms: i64) -> Observed {
        if &event.source.table == signal {
            let ours = event.after.as_ref().and_then(|after| {
                let slot_matches = matches!(after.get(SLOT_COLUMN), Some(ColumnValue::Text(s)) if s == slot);
                match after.get(WATERMARK_COLUMN) {
                    Some(ColumnValue::Text(id)) if slot_matches => Some(id.as_str()),
                    _ => None,
                }
            });
            if ours == Some(self.low.as_str()) {
                self.open = true;
            } else if ours == Some(self.high.as_str()) && self.open {
                self.open = false;
                return Observed::Close(self.emit(&event.source, now_ms));
            }
            return Observed::Swallow;
        }
        if self.open && event.source.table == self.table {
            if event.op == Op::Truncate {
                self.dropped += self.index.len();
                self.index.clear();
                self.rows.iter_mut().for_each(|r| *r = None);
            } else {
                for image in [&event.before, &event.after].into_iter().flatten() {
                    let key = key_of(image, &self.key_columns);
                    self.drop_key(key);
                }
            }
        }
        Observed::Forward
    }

    /// The rows left, stamped with the high watermark's position and commit time.
    fn emit(&mut self, high: &Source, now_ms: i64) -> Vec<ChangeEvent> {
        self.index.clear();
        self.rows
            .iter_mut()
            .filter_map(Option::take)
            .map(|mut e| {
                e.source = Source {
                    db: high.db.clone(),
                    table: self.table.clone(),
                    lsn: high.lsn,
                    commit_lsn: high.commit_lsn,
                    tx_id: None,
                    ts_ms: high.ts_ms,
                    snapshot: true,
                };
                e.ts_ms = now_ms;
                e
            })
            .collect()
    }
}

/// A snapshot row of `table` (`op = r`) with a placeholder source, as a chunk holds it.
pub fn snapshot_row(table: &TableName, key_columns: &[String], after: Row) -> ChangeEvent {
    let key = Row(key_columns
        .iter()
        .map(|k| (k.clone(), after.get(k).cloned().unwrap_or(ColumnValue::Null)))
        .collect());
    ChangeEvent {
        op: Op::Read,
        before: None,
        after: Some(after),
        key,
        source: Source {
            db: String::new(),
            table: table.clone(),
            lsn: Lsn(0),
            commit_lsn: Lsn(0),
            tx_id: None,
            ts_ms: 0,
            snapshot: true,
        },
        ts_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TableName {
        TableName::new("s", "acct")
    }

    fn signal() -> TableName {
        TableName::new("public", "shardflow_cdc_signal")
    }

    fn row(id: i64, v: i64) -> Row {
        Row(vec![
            ("id".into(), ColumnValue::Int(id)),
            ("v".into(), ColumnValue::Int(v)),
        ])
    }

    fn change(table: TableName, op: Op, before: Option<Row>, after: Option<Row>, lsn: u64) -> ChangeEvent {
        ChangeEvent {
            op,
            before,
            after,
            key: Row::default(),
            source: Source {
                db: "test".into(),
                table,
                lsn: Lsn(lsn),
                commit_lsn: Lsn(lsn + 1),
                tx_id: Some(lsn as u32),
                ts_ms: lsn as i64 * 10,
                snapshot: false,
            },
            ts_ms: 0,
        }
    }

    fn watermark(slot: &str, id: &str, lsn: u64) -> ChangeEvent {
        let after = Row(vec![
            (SLOT_COLUMN.into(), ColumnValue::Text(slot.into())),
            ("table_name".into(), ColumnValue::Text("s.acct".into())),
            (WATERMARK_COLUMN.into(), ColumnValue::Text(id.into())),
        ]);
        change(signal(), Op::Update, None, Some(after), lsn)
    }

    fn chunk(ids: &[i64]) -> Chunk {
        let key = vec!["id".to_owned()];
        let rows = ids.iter().map(|id| snapshot_row(&t(), &key, row(*id, 0))).collect();
        Chunk::new(t(), key, "L1".into(), "H1".into(), rows)
    }

    fn ids(rows: &[ChangeEvent]) -> Vec<i64> {
        rows.iter()
            .map(|e| match e.key.get("id") {
                Some(ColumnValue::Int(i)) => *i,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn keys_changed_inside_the_window_are_dropped_and_the_rest_emitted_at_the_high_watermark() {
        let mut c = chunk(&[1, 2, 3, 4, 5]);
        let sig = signal();
        // Before the low watermark: changes are delivered and do not touch the chunk.
        assert_eq!(
            c.observe(&change(t(), Op::Update, None, Some(row(1, 9)), 10), &sig, "me", 0),
            Observed::Forward
        );
        assert_eq!(c.observe(&watermark("me", "L1", 20), &sig, "me", 0), Observed::Swallow);
        assert!(c.is_open());
        let inside = [
            change(t(), Op::Update, Some(row(2, 0)), Some(row(2, 1)), 21),
            change(t(), Op::Delete, Some(row(3, 0)), None, 22),
            // A key change drops the old key (before image) and the new one.
            change(t(), Op::Update, Some(row(4, 0)), Some(row(40, 0)), 23),
            change(TableName::new("s", "other"), Op::Update, None, Some(row(5, 1)), 24),
            change(t(), Op::Create, None, Some(row(6, 0)), 25),
        ];
        for e in &inside {
            assert_eq!(c.observe(e, &sig, "me", 0), Observed::Forward);
        }
        assert_eq!(c.dropped(), 3);
        // Another reader's watermark and a stale id of this one are swallowed without effect.
        assert_eq!(
            c.observe(&watermark("other", "H1", 26), &sig, "me", 0),
            Observed::Swallow
        );
        assert_eq!(c.observe(&watermark("me", "H0", 27), &sig, "me", 0), Observed::Swallow);
        assert!(c.is_open());
        let Observed::Close(rows) = c.observe(&watermark("me", "H1", 30), &sig, "me", 77) else {
            panic!("the high watermark closes the chunk")
        };
        assert_eq!(ids(&rows), vec![1, 5]);
        let r = &rows[0];
        assert_eq!(r.op, Op::Read);
        assert_eq!(r.source.table, t());
        assert_eq!(
            (r.source.lsn, r.source.commit_lsn, r.source.ts_ms),
            (Lsn(30), Lsn(31), 300)
        );
        assert_eq!((r.source.tx_id, r.source.snapshot, r.ts_ms), (None, true, 77));
        assert!(!c.is_open());
        // After the high watermark nothing is dropped any more.
        c.observe(&change(t(), Op::Delete, Some(row(1, 9)), None, 40), &sig, "me", 0);
        assert_eq!(c.dropped(), 3);
    }

    #[test]
    fn a_high_watermark_before_the_low_one_emits_nothing_and_a_truncate_drops_all() {
        let sig = signal();
        let mut c = chunk(&[1, 2]);
        assert_eq!(c.observe(&watermark("me", "H1", 5), &sig, "me", 0), Observed::Swallow);
        c.observe(&watermark("me", "L1", 6), &sig, "me", 0);
        c.observe(&change(t(), Op::Truncate, None, None, 7), &sig, "me", 0);
        assert_eq!(
            c.observe(&watermark("me", "H1", 8), &sig, "me", 0),
            Observed::Close(vec![])
        );
        assert_eq!(c.dropped(), 2);
    }

    #[test]
    fn composite_keys_join_their_values() {
        let r = Row(vec![
            ("order_id".into(), ColumnValue::Int(9)),
            ("line_no".into(), ColumnValue::Int(2)),
        ]);
        assert_eq!(
            key_of(&r, &["order_id".into(), "line_no".into()]).as_deref(),
            Some("9|2")
        );
        assert_eq!(key_of(&r, &["missing".into()]), None);
    }
}
