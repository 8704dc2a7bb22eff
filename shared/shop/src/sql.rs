//! The shop in Postgres: its tables ([`SCHEMA_SQL`], `shared/shop/sql/schema.sql`) and each change
//! of the generated workload as one parameterized SQL statement ([`statement`]), so that executing
//! a generated transaction's statements in one database transaction reproduces it in the database
//! (and `shardflow cdc --format shop` reads the same typed changes back).
//!
//! Columns are the proto field names, except that an `*_at_ms` field is the `timestamptz` column
//! `*_at` (a `last_order_at_ms` of 0, "never", is `NULL`) and statuses are the enums' lower-case
//! names. Statements name tables unqualified: set the `search_path` to the shop's schema.

use shardflow_schemas::{ChangeEvent, Entity, Op, OrderStatus, PaymentStatus, ShipmentStatus};

/// The shop's tables, primary keys and replica identity, as SQL (unqualified names).
pub const SCHEMA_SQL: &str = include_str!("../sql/schema.sql");

/// A statement parameter, typed as its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    /// `bigint`.
    BigInt(i64),
    /// `integer`.
    Int(i32),
    /// `text` or `char(n)`.
    Text(String),
    /// `timestamptz`, milliseconds since the Unix epoch; `None` is `NULL`.
    Timestamp(Option<i64>),
}

/// One statement: SQL text with `$1..$n` placeholders and their values. The text depends only on
/// the table and the op, so a client can prepare it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// The values of `$1..$n`.
    pub params: Vec<SqlValue>,
}

/// A change that has no SQL form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// The change has no row image for its op (e.g. an insert without `after`).
    #[error("a {op} change without the row image it needs")]
    MissingImage {
        /// The op's proto name.
        op: &'static str,
    },
    /// `op` is unspecified or unknown.
    #[error("unknown op {0}")]
    UnknownOp(i32),
    /// A status field holds a number that is not one of its enum's values.
    #[error("{field} holds the unknown value {value}")]
    UnknownStatus {
        /// The field.
        field: &'static str,
        /// The value.
        value: i32,
    },
}

/// A status name as stored: the proto name without its prefix, lower case.
fn status_name(
    field: &'static str,
    proto_name: Option<&'static str>,
    prefix: &str,
    value: i32,
) -> Result<SqlValue, SqlError> {
    match proto_name {
        Some(name) if value != 0 => Ok(SqlValue::Text(
            name.strip_prefix(prefix).unwrap_or(name).to_ascii_lowercase(),
        )),
        _ => Err(SqlError::UnknownStatus { field, value }),
    }
}

fn at(ms: i64) -> SqlValue {
    SqlValue::Timestamp(Some(ms))
}

/// A row as SQL: its table, the number of leading key columns, and every column with its value.
struct Columns {
    table: &'static str,
    keys: usize,
    values: Vec<(&'static str, SqlValue)>,
}

fn columns(entity: &Entity) -> Result<Columns, SqlError> {
    use SqlValue::{BigInt, Int, Text};
    let (table, keys, values) = match entity {
        Entity::Customer(c) => (
            "customers",
            1,
            vec![
                ("customer_id", BigInt(c.customer_id)),
                ("name", Text(c.name.clone())),
                ("email", Text(c.email.clone())),
                ("country", Text(c.country.clone())),
                ("orders_count", BigInt(c.orders_count)),
                (
                    "last_order_at",
                    SqlValue::Timestamp((c.last_order_at_ms != 0).then_some(c.last_order_at_ms)),
                ),
                ("created_at", at(c.created_at_ms)),
                ("updated_at", at(c.updated_at_ms)),
            ],
        ),
        Entity::Order(o) => (
            "orders",
            1,
            vec![
                ("order_id", BigInt(o.order_id)),
                ("customer_id", BigInt(o.customer_id)),
                (
                    "status",
                    status_name(
                        "orders.status",
                        OrderStatus::try_from(o.status).ok().map(|s| s.as_str_name()),
                        "ORDER_STATUS_",
                        o.status,
                    )?,
                ),
                ("total_cents", BigInt(o.total_cents)),
                ("currency", Text(o.currency.clone())),
                ("line_count", Int(o.line_count)),
                ("created_at", at(o.created_at_ms)),
                ("updated_at", at(o.updated_at_ms)),
            ],
        ),
        Entity::OrderLine(l) => (
            "order_lines",
            2,
            vec![
                ("order_id", BigInt(l.order_id)),
                ("line_no", Int(l.line_no)),
                ("product_id", BigInt(l.product_id)),
                ("quantity", Int(l.quantity)),
                ("unit_price_cents", BigInt(l.unit_price_cents)),
                ("currency", Text(l.currency.clone())),
                ("created_at", at(l.created_at_ms)),
            ],
        ),
        Entity::Payment(p) => (
            "payments",
            1,
            vec![
                ("payment_id", BigInt(p.payment_id)),
                ("order_id", BigInt(p.order_id)),
                ("customer_id", BigInt(p.customer_id)),
                (
                    "status",
                    status_name(
                        "payments.status",
                        PaymentStatus::try_from(p.status).ok().map(|s| s.as_str_name()),
                        "PAYMENT_STATUS_",
                        p.status,
                    )?,
                ),
                ("amount_cents", BigInt(p.amount_cents)),
                ("currency", Text(p.currency.clone())),
                ("method", Text(p.method.clone())),
                ("created_at", at(p.created_at_ms)),
                ("updated_at", at(p.updated_at_ms)),
            ],
        ),
        Entity::Shipment(s) => (
            "shipments",
            1,
            vec![
                ("shipment_id", BigInt(s.shipment_id)),
                ("order_id", BigInt(s.order_id)),
                ("customer_id", BigInt(s.customer_id)),
                (
                    "status",
                    status_name(
                        "shipments.status",
                        ShipmentStatus::try_from(s.status).ok().map(|s| s.as_str_name()),
                        "SHIPMENT_STATUS_",
                        s.status,
                    )?,
                ),
                ("carrier", Text(s.carrier.clone())),
                ("tracking_number", Text(s.tracking_number.clone())),
                ("created_at", at(s.created_at_ms)),
                ("updated_at", at(s.updated_at_ms)),
            ],
        ),
    };
    Ok(Columns { table, keys, values })
}

/// `a = $i AND b = $j` over `names`, numbering from `first`.
fn conditions(names: &[&str], first: usize, separator: &str) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n} = ${}", first + i))
        .collect::<Vec<_>>()
        .join(separator)
}

/// The statement that applies `event` to the shop's tables: an insert for `c` and `r`, an update
/// of every non-key column (found by the key of `before`, or of `after` without one) for `u`, a
/// delete by key for `d`.
pub fn statement(event: &ChangeEvent) -> Result<Statement, SqlError> {
    let op = Op::try_from(event.op).map_err(|_| SqlError::UnknownOp(event.op))?;
    let missing = || SqlError::MissingImage { op: op.as_str_name() };
    match op {
        Op::Create | Op::Read => {
            let Columns {
                table, values: cols, ..
            } = columns(event.after_entity().ok_or_else(missing)?)?;
            let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
            let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
            Ok(Statement {
                sql: format!(
                    "INSERT INTO {table} ({}) VALUES ({})",
                    names.join(", "),
                    placeholders.join(", ")
                ),
                params: cols.into_iter().map(|(_, v)| v).collect(),
            })
        }
        Op::Update => {
            let after = event.after_entity().ok_or_else(missing)?;
            let Columns {
                table,
                keys,
                values: cols,
            } = columns(after)?;
            let key_cols = columns(event.before_entity().unwrap_or(after))?.values;
            let set: Vec<&str> = cols[keys..].iter().map(|(n, _)| *n).collect();
            let key_names: Vec<&str> = key_cols[..keys].iter().map(|(n, _)| *n).collect();
            let sql = format!(
                "UPDATE {table} SET {} WHERE {}",
                conditions(&set, 1, ", "),
                conditions(&key_names, set.len() + 1, " AND ")
            );
            let params = cols
                .into_iter()
                .skip(keys)
                .chain(key_cols.into_iter().take(keys))
                .map(|(_, v)| v)
                .collect();
            Ok(Statement { sql, params })
        }
        Op::Delete => {
            let Columns {
                table,
                keys,
                values: cols,
            } = columns(event.before_entity().ok_or_else(missing)?)?;
            let key_names: Vec<&str> = cols[..keys].iter().map(|(n, _)| *n).collect();
            Ok(Statement {
                sql: format!("DELETE FROM {table} WHERE {}", conditions(&key_names, 1, " AND ")),
                params: cols.into_iter().take(keys).map(|(_, v)| v).collect(),
            })
        }
        Op::Unspecified => Err(SqlError::UnknownOp(event.op)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardflow_schemas::{OrderLine, Row};

    fn line(quantity: i32) -> OrderLine {
        OrderLine {
            order_id: 9,
            line_no: 2,
            product_id: 31,
            quantity,
            unit_price_cents: 499,
            currency: "EUR".into(),
            created_at_ms: 1_000,
        }
    }

    fn change(op: Op, before: Option<OrderLine>, after: Option<OrderLine>) -> ChangeEvent {
        ChangeEvent {
            op: op as i32,
            before: before.map(|l| Row::from(Entity::OrderLine(l))),
            after: after.map(|l| Row::from(Entity::OrderLine(l))),
            source: None,
            ts_ms: 0,
        }
    }

    #[test]
    fn inserts_updates_and_deletes_become_parameterized_statements() {
        let insert = statement(&change(Op::Create, None, Some(line(1)))).unwrap();
        assert_eq!(
            insert.sql,
            "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents, currency, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        assert_eq!(insert.params[1], SqlValue::Int(2));
        assert_eq!(insert.params[6], SqlValue::Timestamp(Some(1_000)));

        let update = statement(&change(Op::Update, Some(line(1)), Some(line(3)))).unwrap();
        assert_eq!(
            update.sql,
            "UPDATE order_lines SET product_id = $1, quantity = $2, unit_price_cents = $3, currency = $4, \
             created_at = $5 WHERE order_id = $6 AND line_no = $7"
        );
        assert_eq!(update.params[1], SqlValue::Int(3));
        assert_eq!(update.params[5..], [SqlValue::BigInt(9), SqlValue::Int(2)]);

        let delete = statement(&change(Op::Delete, Some(line(3)), None)).unwrap();
        assert_eq!(
            delete.sql,
            "DELETE FROM order_lines WHERE order_id = $1 AND line_no = $2"
        );
        assert_eq!(delete.params, vec![SqlValue::BigInt(9), SqlValue::Int(2)]);
    }

    #[test]
    fn statuses_are_lower_case_names_and_never_is_null() {
        let order = shardflow_schemas::Order {
            order_id: 1,
            status: OrderStatus::Completed as i32,
            ..Default::default()
        };
        let insert = statement(&ChangeEvent {
            op: Op::Create as i32,
            after: Some(Entity::Order(order.clone()).into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(insert.params[2], SqlValue::Text("completed".into()));
        let customer = shardflow_schemas::Customer::default();
        let insert = statement(&ChangeEvent {
            op: Op::Read as i32,
            after: Some(Entity::Customer(customer).into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(insert.params[5], SqlValue::Timestamp(None));

        let bad = shardflow_schemas::Order { status: 99, ..order };
        assert_eq!(
            statement(&ChangeEvent {
                op: Op::Create as i32,
                after: Some(Entity::Order(bad).into()),
                ..Default::default()
            }),
            Err(SqlError::UnknownStatus {
                field: "orders.status",
                value: 99
            })
        );
        assert_eq!(
            statement(&change(Op::Create, None, None)),
            Err(SqlError::MissingImage { op: "OP_CREATE" })
        );
    }
}
