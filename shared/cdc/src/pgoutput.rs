//! A decoder for the binary messages of Postgres's `pgoutput` logical-decoding plugin,
//! protocol version 1 (the format described in the Postgres manual under "Logical
//! Replication Message Formats").
//!
//! Pure and total: [`decode`] never panics on any input; malformed bytes yield a
//! [`PgOutputError`]. Streaming (protocol ≥ 2) and two-phase messages are not requested by the
//! reader and are reported as [`PgOutputError::UnknownMessage`].

use crate::lsn::Lsn;

/// One decoded `pgoutput` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutputMessage {
    /// Start of a transaction (`B`).
    Begin(Begin),
    /// End of a transaction (`C`).
    Commit(Commit),
    /// The transaction was replayed from another node (`O`).
    Origin(Origin),
    /// Describes a table; sent before the first change of that table in a decoding session (`R`).
    Relation(Relation),
    /// Describes a non-built-in data type used by a column (`Y`).
    Type(TypeInfo),
    /// A new row (`I`).
    Insert(Insert),
    /// A changed row (`U`).
    Update(Update),
    /// A removed row (`D`).
    Delete(Delete),
    /// One or more tables were truncated (`T`).
    Truncate(Truncate),
}

/// `B`: the start of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 00:00:00 UTC (the Postgres epoch).
    pub commit_time_pg_us: i64,
    /// Transaction id.
    pub xid: u32,
}

/// `C`: the end of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Flags (currently unused by Postgres, 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// LSN just past the commit record: the position to confirm once the transaction is delivered.
    pub end_lsn: Lsn,
    /// Commit time, microseconds since the Postgres epoch.
    pub commit_time_pg_us: i64,
}

/// `O`: the origin of a replicated transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The commit LSN on the origin server.
    pub commit_lsn: Lsn,
    /// The origin's name.
    pub name: String,
}

/// `R`: a table's shape as of this point in the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The table's OID.
    pub oid: u32,
    /// Schema name (empty for `pg_catalog`).
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// `relreplident`: `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Columns in table order.
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Whether the column is part of the replica identity key (flag bit 1).
    pub is_key: bool,
    /// Column name.
    pub name: String,
    /// The column type's OID.
    pub type_oid: u32,
    /// The type modifier (`atttypmod`).
    pub type_modifier: i32,
}

/// `Y`: a data type's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// The type's OID.
    pub oid: u32,
    /// Schema name (empty for `pg_catalog`).
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// `I`: an inserted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// The table's OID (described by an earlier [`Relation`]).
    pub relation_oid: u32,
    /// The new row.
    pub new: TupleData,
}

/// The old row image carried by an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the replica identity key columns (others are null).
    Key(TupleData),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData),
}

/// `U`: an updated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The table's OID.
    pub relation_oid: u32,
    /// The old row, if the replica identity provides one (full identity, or a changed key).
    pub old: Option<OldTuple>,
    /// The new row.
    pub new: TupleData,
}

/// `D`: a deleted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// The table's OID.
    pub relation_oid: u32,
    /// The old row (key columns only, or the full row).
    pub old: OldTuple,
}

/// `T`: truncated tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Option bits: 1 = `CASCADE`, 2 = `RESTART IDENTITY`.
    pub options: u8,
    /// The truncated tables' OIDs.
    pub relation_oids: Vec<u32>,
}

/// A row's column values, in table column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleData {
    /// One entry per column.
    pub columns: Vec<TupleValue>,
}

/// One column value in a [`TupleData`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value that was not sent.
    UnchangedToast,
    /// `t`: the value in the type's text output format.
    Text(String),
    /// `b`: the value in the type's binary format (only if the `binary` option is requested).
    Binary(Vec<u8>),
}

/// Why bytes are not a valid `pgoutput` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgOutputError {
    /// The message is empty.
    #[error("empty pgoutput message")]
    Empty,
    /// The first byte is not a message tag this decoder knows.
    #[error("unknown pgoutput message tag {0:#04x}")]
    UnknownMessage(u8),
    /// The message ended before a field was complete.
    #[error("pgoutput message truncated while reading {0}")]
    Truncated(&'static str),
    /// A string field has no terminating NUL byte.
    #[error("unterminated string in {0}")]
    UnterminatedString(&'static str),
    /// A string or text value is not UTF-8.
    #[error("non-UTF-8 text in {0}")]
    InvalidUtf8(&'static str),
    /// A count or length field is negative.
    #[error("negative {0}")]
    NegativeLength(&'static str),
    /// A tuple column has an unknown kind byte.
    #[error("unknown tuple column kind {0:#04x}")]
    UnknownColumnKind(u8),
    /// An update or delete has an unexpected tuple marker.
    #[error("unexpected tuple marker {found:#04x} in {context}")]
    UnexpectedMarker {
        /// Where the marker was read.
        context: &'static str,
        /// The byte found.
        found: u8,
    },
    /// Bytes remain after a complete message.
    #[error("{0} trailing bytes after pgoutput message")]
    TrailingBytes(usize),
}

/// Decodes one `pgoutput` protocol-1 message.
pub fn decode(bytes: &[u8]) -> Result<PgOutputMessage, PgOutputError> {
    let (&tag, rest) = bytes.split_first().ok_or(PgOutputError::Empty)?;
    let mut r = Reader { buf: rest };
    let msg = match tag {
        b'B' => PgOutputMessage::Begin(Begin {
            final_lsn: Lsn(r.u64("begin final lsn")?),
            commit_time_pg_us: r.i64("begin commit time")?,
            xid: r.u32("begin xid")?,
        }),
        b'C' => PgOutputMessage::Commit(Commit {
            flags: r.u8("commit flags")?,
            commit_lsn: Lsn(r.u64("commit lsn")?),
            end_lsn: Lsn(r.u64("commit end lsn")?),
            commit_time_pg_us: r.i64("commit time")?,
        }),
        b'O' => PgOutputMessage::Origin(Origin {
            commit_lsn: Lsn(r.u64("origin lsn")?),
            name: r.cstr("origin name")?,
        }),
        b'R' => PgOutputMessage::Relation(decode_relation(&mut r)?),
        b'Y' => PgOutputMessage::Type(TypeInfo {
            oid: r.u32("type oid")?,
            namespace: r.cstr("type namespace")?,
            name: r.cstr("type name")?,
        }),
        b'I' => {
            let relation_oid = r.u32("insert relation oid")?;
            r.expect_marker(b'N', "insert")?;
            PgOutputMessage::Insert(Insert {
                relation_oid,
                new: r.tuple()?,
            })
        }
        b'U' => {
            let relation_oid = r.u32("update relation oid")?;
            let old = match r.u8("update tuple marker")? {
                b'N' => None,
                b'K' => Some(OldTuple::Key(r.tuple()?)),
                b'O' => Some(OldTuple::Full(r.tuple()?)),
                found => {
                    return Err(PgOutputError::UnexpectedMarker {
                        context: "update",
                        found,
                    })
                }
            };
            if old.is_some() {
                r.expect_marker(b'N', "update new tuple")?;
            }
            PgOutputMessage::Update(Update {
                relation_oid,
                old,
                new: r.tuple()?,
            })
        }
        b'D' => {
            let relation_oid = r.u32("delete relation oid")?;
            let old = match r.u8("delete tuple marker")? {
                b'K' => OldTuple::Key(r.tuple()?),
                b'O' => OldTuple::Full(r.tuple()?),
                found => {
                    return Err(PgOutputError::UnexpectedMarker {
                        context: "delete",
                        found,
                    })
                }
            };
            PgOutputMessage::Delete(Delete { relation_oid, old })
        }
        b'T' => {
            let n = r.count_i32("truncate relation count")?;
            let options = r.u8("truncate options")?;
            // Each OID takes 4 bytes: bound the allocation by what the buffer can hold.
            let mut relation_oids = Vec::with_capacity(n.min(r.buf.len() / 4));
            for _ in 0..n {
                relation_oids.push(r.u32("truncate relation oid")?);
            }
            PgOutputMessage::Truncate(Truncate { options, relation_oids })
        }
        other => return Err(PgOutputError::UnknownMessage(other)),
    };
    if !r.buf.is_empty() {
        return Err(PgOutputError::TrailingBytes(r.buf.len()));
    }
    Ok(msg)
}

fn decode_relation(r: &mut Reader<'_>) -> Result<Relation, PgOutputError> {
    let oid = r.u32("relation oid")?;
    let namespace = r.cstr("relation namespace")?;
    let name = r.cstr("relation name")?;
    let replica_identity = r.u8("relation replica identity")?;
    let n = r.count_i16("relation column count")?;
    // A column takes at least 10 bytes (flags, empty name, type oid, typmod).
    let mut columns = Vec::with_capacity(n.min(r.buf.len() / 10));
    for _ in 0..n {
        columns.push(RelationColumn {
            is_key: r.u8("column flags")? & 1 == 1,
            name: r.cstr("column name")?,
            type_oid: r.u32("column type oid")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

/// A bounds-checked cursor over a message body.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PgOutputError> {
        if self.buf.len() < n {
            return Err(PgOutputError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PgOutputError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, PgOutputError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, PgOutputError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, PgOutputError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, PgOutputError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, PgOutputError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, PgOutputError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn count_i16(&mut self, what: &'static str) -> Result<usize, PgOutputError> {
        usize::try_from(self.i16(what)?).map_err(|_| PgOutputError::NegativeLength(what))
    }

    fn count_i32(&mut self, what: &'static str) -> Result<usize, PgOutputError> {
        usize::try_from(self.i32(what)?).map_err(|_| PgOutputError::NegativeLength(what))
    }

    fn cstr(&mut self, what: &'static str) -> Result<String, PgOutputError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(PgOutputError::UnterminatedString(what))?;
        let bytes = self.take(end + 1, what)?;
        let text = bytes.get(..end).ok_or(PgOutputError::Truncated(what))?;
        std::str::from_utf8(text)
            .map(str::to_owned)
            .map_err(|_| PgOutputError::InvalidUtf8(what))
    }

    fn expect_marker(&mut self, want: u8, context: &'static str) -> Result<(), PgOutputError> {
        match self.u8(context)? {
            found if found == want => Ok(()),
            found => Err(PgOutputError::UnexpectedMarker { context, found }),
        }
    }

    fn tuple(&mut self) -> Result<TupleData, PgOutputError> {
        let n = self.count_i16("tuple column count")?;
        // A column takes at least its kind byte.
        let mut columns = Vec::with_capacity(n.min(self.buf.len()));
        for _ in 0..n {
            let value = match self.u8("tuple column kind")? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                b't' => {
                    let len = self.count_i32("text column length")?;
                    let bytes = self.take(len, "text column value")?;
                    let text =
                        std::str::from_utf8(bytes).map_err(|_| PgOutputError::InvalidUtf8("text column value"))?;
                    TupleValue::Text(text.to_owned())
                }
                b'b' => {
                    let len = self.count_i32("binary column length")?;
                    TupleValue::Binary(self.take(len, "binary column value")?.to_vec())
                }
                other => return Err(PgOutputError::UnknownColumnKind(other)),
            };
            columns.push(value);
        }
        Ok(TupleData { columns })
    }
}

/// Builders of well-formed messages (as Postgres encodes them), for tests and benchmarks.
pub mod build {
    use super::TupleValue;

    /// Appends a NUL-terminated string.
    pub fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// Appends tuple data.
    pub fn tuple(out: &mut Vec<u8>, values: &[TupleValue]) {
        out.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for v in values {
            match v {
                TupleValue::Null => out.push(b'n'),
                TupleValue::UnchangedToast => out.push(b'u'),
                TupleValue::Text(t) => {
                    out.push(b't');
                    out.extend_from_slice(&(t.len() as i32).to_be_bytes());
                    out.extend_from_slice(t.as_bytes());
                }
                TupleValue::Binary(b) => {
                    out.push(b'b');
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
    }

    /// A `B` message.
    pub fn begin(final_lsn: u64, ts: i64, xid: u32) -> Vec<u8> {
        let mut m = vec![b'B'];
        m.extend_from_slice(&final_lsn.to_be_bytes());
        m.extend_from_slice(&ts.to_be_bytes());
        m.extend_from_slice(&xid.to_be_bytes());
        m
    }

    /// A `C` message.
    pub fn commit(commit_lsn: u64, end_lsn: u64, ts: i64) -> Vec<u8> {
        let mut m = vec![b'C', 0];
        m.extend_from_slice(&commit_lsn.to_be_bytes());
        m.extend_from_slice(&end_lsn.to_be_bytes());
        m.extend_from_slice(&ts.to_be_bytes());
        m
    }

    /// An `R` message; columns are (is_key, name, type oid).
    pub fn relation(oid: u32, ns: &str, name: &str, ident: u8, cols: &[(bool, &str, u32)]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&oid.to_be_bytes());
        cstr(&mut m, ns);
        cstr(&mut m, name);
        m.push(ident);
        m.extend_from_slice(&(cols.len() as i16).to_be_bytes());
        for (key, col, ty) in cols {
            m.push(u8::from(*key));
            cstr(&mut m, col);
            m.extend_from_slice(&ty.to_be_bytes());
            m.extend_from_slice(&(-1i32).to_be_bytes());
        }
        m
    }

    /// An `I` message.
    pub fn insert(oid: u32, new: &[TupleValue]) -> Vec<u8> {
        let mut m = vec![b'I'];
        m.extend_from_slice(&oid.to_be_bytes());
        m.push(b'N');
        tuple(&mut m, new);
        m
    }

    /// A `U` message; `old` is (marker, values).
    pub fn update(oid: u32, old: Option<(u8, &[TupleValue])>, new: &[TupleValue]) -> Vec<u8> {
        let mut m = vec![b'U'];
        m.extend_from_slice(&oid.to_be_bytes());
        if let Some((marker, values)) = old {
            m.push(marker);
            tuple(&mut m, values);
        }
        m.push(b'N');
        tuple(&mut m, new);
        m
    }

    /// A `D` message.
    pub fn delete(oid: u32, marker: u8, old: &[TupleValue]) -> Vec<u8> {
        let mut m = vec![b'D'];
        m.extend_from_slice(&oid.to_be_bytes());
        m.push(marker);
        tuple(&mut m, old);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use proptest::prelude::*;

    fn text(s: &str) -> TupleValue {
        TupleValue::Text(s.to_owned())
    }

    #[test]
    fn begin_and_commit_carry_lsns_time_and_xid() {
        assert_eq!(
            decode(&begin(0x10, 42, 7)).unwrap(),
            PgOutputMessage::Begin(Begin {
                final_lsn: Lsn(0x10),
                commit_time_pg_us: 42,
                xid: 7
            })
        );
        assert_eq!(
            decode(&commit(0x10, 0x38, 42)).unwrap(),
            PgOutputMessage::Commit(Commit {
                flags: 0,
                commit_lsn: Lsn(0x10),
                end_lsn: Lsn(0x38),
                commit_time_pg_us: 42
            })
        );
    }

    #[test]
    fn relation_lists_columns_with_key_flags_and_types() {
        let msg = relation(
            16384,
            "public",
            "orders",
            b'f',
            &[(true, "id", 23), (false, "note", 25)],
        );
        let PgOutputMessage::Relation(rel) = decode(&msg).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(
            (rel.oid, rel.namespace.as_str(), rel.name.as_str()),
            (16384, "public", "orders")
        );
        assert_eq!(rel.replica_identity, b'f');
        assert_eq!(rel.columns.len(), 2);
        assert!(rel.columns[0].is_key && !rel.columns[1].is_key);
        assert_eq!((rel.columns[1].name.as_str(), rel.columns[1].type_oid), ("note", 25));
        assert_eq!(rel.columns[1].type_modifier, -1);
    }

    #[test]
    fn insert_tuple_keeps_null_unchanged_toast_text_and_binary_columns() {
        let values = [
            TupleValue::Null,
            TupleValue::UnchangedToast,
            text("héllo"),
            TupleValue::Binary(vec![0, 1]),
        ];
        let PgOutputMessage::Insert(ins) = decode(&insert(5, &values)).unwrap() else {
            panic!("not an insert")
        };
        assert_eq!(ins.relation_oid, 5);
        assert_eq!(ins.new.columns, values);
    }

    #[test]
    fn update_distinguishes_no_old_key_only_and_full_old_images() {
        let new = [text("1"), text("b")];
        let PgOutputMessage::Update(u) = decode(&update(5, None, &new)).unwrap() else {
            panic!()
        };
        assert_eq!(u.old, None);
        let old = [text("1"), TupleValue::Null];
        let PgOutputMessage::Update(u) = decode(&update(5, Some((b'K', &old)), &new)).unwrap() else {
            panic!()
        };
        assert!(matches!(u.old, Some(OldTuple::Key(_))));
        let full = [text("1"), text("a")];
        let PgOutputMessage::Update(u) = decode(&update(5, Some((b'O', &full)), &new)).unwrap() else {
            panic!()
        };
        assert_eq!(u.old, Some(OldTuple::Full(TupleData { columns: full.to_vec() })));
        assert_eq!(u.new.columns, new);
    }

    #[test]
    fn delete_carries_the_old_image() {
        let old = [text("9"), text("x")];
        let PgOutputMessage::Delete(d) = decode(&delete(5, b'O', &old)).unwrap() else {
            panic!()
        };
        assert_eq!(d.old, OldTuple::Full(TupleData { columns: old.to_vec() }));
        assert!(matches!(
            decode(&delete(5, b'N', &old)),
            Err(PgOutputError::UnexpectedMarker {
                context: "delete",
                found: b'N'
            })
        ));
    }

    #[test]
    fn truncate_origin_and_type_messages_decode() {
        let mut t = vec![b'T'];
        t.extend_from_slice(&2i32.to_be_bytes());
        t.push(1);
        t.extend_from_slice(&10u32.to_be_bytes());
        t.extend_from_slice(&11u32.to_be_bytes());
        assert_eq!(
            decode(&t).unwrap(),
            PgOutputMessage::Truncate(Truncate {
                options: 1,
                relation_oids: vec![10, 11]
            })
        );
        let mut o = vec![b'O'];
        o.extend_from_slice(&99u64.to_be_bytes());
        cstr(&mut o, "node_a");
        assert_eq!(
            decode(&o).unwrap(),
            PgOutputMessage::Origin(Origin {
                commit_lsn: Lsn(99),
                name: "node_a".into()
            })
        );
        let mut y = vec![b'Y'];
        y.extend_from_slice(&70000u32.to_be_bytes());
        cstr(&mut y, "public");
        cstr(&mut y, "mood");
        assert_eq!(
            decode(&y).unwrap(),
            PgOutputMessage::Type(TypeInfo {
                oid: 70000,
                namespace: "public".into(),
                name: "mood".into()
            })
        );
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        assert_eq!(decode(&[]), Err(PgOutputError::Empty));
        assert_eq!(decode(b"Z"), Err(PgOutputError::UnknownMessage(b'Z')));
        let b = begin(1, 2, 3);
        assert_eq!(decode(&b[..b.len() - 1]), Err(PgOutputError::Truncated("begin xid")));
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(PgOutputError::TrailingBytes(1)));
        let mut bad_len = vec![b'I', 0, 0, 0, 5, b'N', 0, 1, b't'];
        bad_len.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            decode(&bad_len),
            Err(PgOutputError::NegativeLength("text column length"))
        );
        let bad_kind = [b'I', 0, 0, 0, 5, b'N', 0, 1, b'x'];
        assert_eq!(decode(&bad_kind), Err(PgOutputError::UnknownColumnKind(b'x')));
        let unterminated = [b'Y', 0, 0, 0, 1, b'a'];
        assert_eq!(
            decode(&unterminated),
            Err(PgOutputError::UnterminatedString("type namespace"))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn arbitrary_bodies_after_a_valid_tag_never_panic(
            tag in proptest::sample::select(b"BCORYIUDT".to_vec()),
            body in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let mut msg = vec![tag];
            msg.extend_from_slice(&body);
            let _ = decode(&msg);
        }

        #[test]
        fn well_formed_inserts_round_trip(values in proptest::collection::vec(
            prop_oneof![
                Just(TupleValue::Null),
                Just(TupleValue::UnchangedToast),
                ".{0,12}".prop_map(TupleValue::Text),
            ], 0..20)) {
            let PgOutputMessage::Insert(ins) = decode(&insert(1, &values)).unwrap() else {
                return Err(TestCaseError::fail("not an insert"));
            };
            prop_assert_eq!(ins.new.columns, values);
        }
    }
}
