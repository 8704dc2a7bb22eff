//! `--format shop`: changes of the online shop's tables as the shop's typed envelope
//! (`shardflow.shop.v1.ChangeEvent` of `shardflow-schemas`), so that a Postgres holding the shop
//! schema (`shared/shop/sql/schema.sql`) feeds the shop pipelines directly.
//!
//! Tables are matched by name in any schema (`customers`, `orders`, `order_lines`, `payments`,
//! `shipments`); columns by the names of that schema: the proto field names, except that an
//! `*_at_ms` field is read from the `timestamp`/`timestamptz` column `*_at` (milliseconds since
//! the epoch, rounded down) and statuses are the lower-case names of the proto enums (`paid`).
//! Extra columns are ignored; a missing column, a value of the wrong type, an unknown status, an
//! unchanged TOAST value that was not sent, another table, or a truncate are errors
//! ([`ShopMapError`]): the reader stops rather than emit a wrong event. SQL `NULL` becomes the
//! proto default (0, empty), as proto3 has no null; with the default replica identity a delete's
//! `before` holds only the key columns, so its other fields are defaults too.
//!
//! `source.lsn` is the LSN of the change itself (it increases with every change of one row, which
//! is what the pipelines order a row's versions by), `source.tx_id` the transaction id (0 for
//! snapshot rows), `source.ts_ms` the commit time (the event time).

use shardflow_schemas::shop::v1 as shop;
use shardflow_schemas::{Entity, Table};

use crate::event::{ChangeEvent, Op};
use crate::proto::CONNECTOR;
use crate::table::TableName;
use crate::value::{ColumnValue, Row};

/// A change that has no faithful form in the shop's envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShopMapError {
    /// The table is not one of the shop's.
    #[error(
        "table {0} cannot be mapped to the shop envelope (shardflow.shop.v1): it is none of customers, \
         orders, order_lines, payments, shipments; capture it with --format protobuf or json"
    )]
    UnknownTable(TableName),
    /// The shop envelope has no truncate.
    #[error("table {0} was truncated, which the shop envelope (shardflow.shop.v1) cannot express")]
    Truncate(TableName),
    /// A column the entity needs is not in the row image.
    #[error("table {table}: column {column} is missing (see shared/shop/sql/schema.sql)")]
    MissingColumn {
        /// The table.
        table: TableName,
        /// The column.
        column: &'static str,
    },
    /// A column's value is not of the type the entity needs.
    #[error("table {table}: column {column} holds {found}, expected {expected} (see shared/shop/sql/schema.sql)")]
    WrongType {
        /// The table.
        table: TableName,
        /// The column.
        column: &'static str,
        /// What the entity needs.
        expected: &'static str,
        /// The value found.
        found: String,
    },
    /// A status column holds a name that is not one of its enum's.
    #[error("table {table}: column {column} holds the unknown status {value:?}")]
    UnknownStatus {
        /// The table.
        table: TableName,
        /// The column.
        column: &'static str,
        /// The value found.
        value: String,
    },
    /// An unchanged TOASTed value was not sent.
    #[error(
        "table {table}: column {column} is an unchanged TOAST value Postgres did not send; set REPLICA IDENTITY FULL"
    )]
    Unavailable {
        /// The table.
        table: TableName,
        /// The column.
        column: &'static str,
    },
}

/// One row image of one shop table, read column by column.
struct Image<'a> {
    table: &'a TableName,
    row: &'a Row,
}

impl Image<'_> {
    fn value(&self, column: &'static str) -> Result<Option<&ColumnValue>, ShopMapError> {
        match self.row.get(column) {
            None => Err(ShopMapError::MissingColumn {
                table: self.table.clone(),
                column,
            }),
            Some(ColumnValue::Null) => Ok(None),
            Some(ColumnValue::Unavailable) => Err(ShopMapError::Unavailable {
                table: self.table.clone(),
                column,
            }),
            Some(v) => Ok(Some(v)),
        }
    }

    fn wrong(&self, column: &'static str, expected: &'static str, found: &ColumnValue) -> ShopMapError {
        ShopMapError::WrongType {
            table: self.table.clone(),
            column,
            expected,
            found: format!("{found:?}"),
        }
    }

    fn i64(&self, column: &'static str) -> Result<i64, ShopMapError> {
        match self.value(column)? {
            None => Ok(0),
            Some(ColumnValue::Int(i)) => Ok(*i),
            Some(other) => Err(self.wrong(column, "an integer", other)),
        }
    }

    fn i32(&self, column: &'static str) -> Result<i32, ShopMapError> {
        match self.value(column)? {
            None => Ok(0),
            Some(v @ ColumnValue::Int(i)) => i32::try_from(*i).map_err(|_| self.wrong(column, "a 32-bit integer", v)),
            Some(other) => Err(self.wrong(column, "a 32-bit integer", other)),
        }
    }

    fn text(&self, column: &'static str) -> Result<String, ShopMapError> {
        match self.value(column)? {
            None => Ok(String::new()),
            Some(ColumnValue::Text(s)) => Ok(s.clone()),
            Some(other) => Err(self.wrong(column, "text", other)),
        }
    }

    /// Milliseconds since the epoch of the timestamp column `column`.
    fn millis(&self, column: &'static str) -> Result<i64, ShopMapError> {
        match self.value(column)? {
            None => Ok(0),
            Some(ColumnValue::ZonedTimestampMicros(us) | ColumnValue::TimestampMicros(us)) => Ok(us.div_euclid(1000)),
            Some(other) => Err(self.wrong(column, "a timestamp", other)),
        }
    }

    /// A status enum from its lower-case name: `from_name` gets the upper-case proto name.
    fn status(
        &self,
        column: &'static str,
        prefix: &str,
        from_name: impl Fn(&str) -> Option<i32>,
    ) -> Result<i32, ShopMapError> {
        let name = self.text(column)?;
        if name.is_empty() {
            return Ok(0);
        }
        from_name(&format!("{prefix}{}", name.to_ascii_uppercase())).ok_or_else(|| ShopMapError::UnknownStatus {
            table: self.table.clone(),
            column,
            value: name,
        })
    }
}

/// The entity a row image of `table` describes.
fn entity(table: Table, name: &TableName, row: &Row) -> Result<Entity, ShopMapError> {
    let r = Image { table: name, row };
    Ok(match table {
        Table::Customers => Entity::Customer(shop::Customer {
            customer_id: r.i64("customer_id")?,
            name: r.text("name")?,
            email: r.text("email")?,
            country: r.text("country")?,
            orders_count: r.i64("orders_count")?,
            last_order_at_ms: r.millis("last_order_at")?,
            created_at_ms: r.millis("created_at")?,
            updated_at_ms: r.millis("updated_at")?,
        }),
        Table::Orders => Entity::Order(shop::Order {
            order_id: r.i64("order_id")?,
            customer_id: r.i64("customer_id")?,
            status: r.status("status", "ORDER_STATUS_", |n| {
                shop::OrderStatus::from_str_name(n).map(|s| s as i32)
            })?,
            total_cents: r.i64("total_cents")?,
            currency: r.text("currency")?,
            line_count: r.i32("line_count")?,
            created_at_ms: r.millis("created_at")?,
            updated_at_ms: r.millis("updated_at")?,
        }),
        Table::OrderLines => Entity::OrderLine(shop::OrderLine {
            order_id: r.i64("order_id")?,
            line_no: r.i32("line_no")?,
            product_id: r.i64("product_id")?,
            quantity: r.i32("quantity")?,
            unit_price_cents: r.i64("unit_price_cents")?,
            currency: r.text("currency")?,
            created_at_ms: r.millis("created_at")?,
        }),
        Table::Payments => Entity::Payment(shop::Payment {
            payment_id: r.i64("payment_id")?,
            order_id: r.i64("order_id")?,
            customer_id: r.i64("customer_id")?,
            status: r.status("status", "PAYMENT_STATUS_", |n| {
                shop::PaymentStatus::from_str_name(n).map(|s| s as i32)
            })?,
            amount_cents: r.i64("amount_cents")?,
            currency: r.text("currency")?,
            method: r.text("method")?,
            created_at_ms: r.millis("created_at")?,
            updated_at_ms: r.millis("updated_at")?,
        }),
        Table::Shipments => Entity::Shipment(shop::Shipment {
            shipment_id: r.i64("shipment_id")?,
            order_id: r.i64("order_id")?,
            customer_id: r.i64("customer_id")?,
            status: r.status("status", "SHIPMENT_STATUS_", |n| {
                shop::ShipmentStatus::from_str_name(n).map(|s| s as i32)
            })?,
            carrier: r.text("carrier")?,
            tracking_number: r.text("tracking_number")?,
            created_at_ms: r.millis("created_at")?,
            updated_at_ms: r.millis("updated_at")?,
        }),
    })
}

/// The change as the shop's typed envelope (see the module documentation).
pub fn to_shop(event: &ChangeEvent) -> Result<shop::ChangeEvent, ShopMapError> {
    let name = &event.source.table;
    let table: Table = name
        .name
        .parse()
        .map_err(|_| ShopMapError::UnknownTable(name.clone()))?;
    let op = match event.op {
        Op::Create => shop::Op::Create,
        Op::Update => shop::Op::Update,
        Op::Delete => shop::Op::Delete,
        Op::Read => shop::Op::Read,
        Op::Truncate => return Err(ShopMapError::Truncate(name.clone())),
    };
    let image = |row: &Option<Row>| -> Result<Option<shop::Row>, ShopMapError> {
        row.as_ref()
            .map(|r| entity(table, name, r).map(shop::Row::from))
            .transpose()
    };
    let s = &event.source;
    Ok(shop::ChangeEvent {
        op: op as i32,
        before: image(&event.before)?,
        after: image(&event.after)?,
        source: Some(shop::Source {
            connector: CONNECTOR.to_owned(),
            db: s.db.clone(),
            schema: s.table.schema.clone(),
            table: s.table.name.clone(),
            lsn: s.lsn.0,
            tx_id: s.tx_id.map_or(0, i64::from),
            ts_ms: s.ts_ms,
        }),
        ts_ms: event.ts_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use crate::lsn::Lsn;

    fn event(table: &str, op: Op, before: Option<Row>, after: Option<Row>) -> ChangeEvent {
        ChangeEvent {
            op,
            before,
            after,
            key: Row::default(),
            source: Source {
                db: "shop".into(),
                table: TableName::new("sales", table),
                lsn: Lsn(500),
                commit_lsn: Lsn(600),
                tx_id: Some(77),
                ts_ms: 1_704_067_200_123,
                snapshot: false,
            },
            ts_ms: 1_704_067_200_300,
        }
    }

    fn order_row(status: &str) -> Row {
        Row(vec![
            ("order_id".into(), ColumnValue::Int(100_000)),
            ("customer_id".into(), ColumnValue::Int(3)),
            ("status".into(), ColumnValue::Text(status.into())),
            ("total_cents".into(), ColumnValue::Int(1250)),
            ("currency".into(), ColumnValue::Text("EUR".into())),
            ("line_count".into(), ColumnValue::Int(2)),
            (
                "created_at".into(),
                ColumnValue::ZonedTimestampMicros(1_704_067_200_123_999),
            ),
            (
                "updated_at".into(),
                ColumnValue::ZonedTimestampMicros(1_704_067_201_000_000),
            ),
            ("note".into(), ColumnValue::Text("extra columns are ignored".into())),
        ])
    }

    #[test]
    fn an_order_update_maps_to_the_typed_envelope() {
        let e = to_shop(&event(
            "orders",
            Op::Update,
            Some(order_row("pending")),
            Some(order_row("paid")),
        ))
        .unwrap();
        assert_eq!(e.op(), shop::Op::Update);
        let after = e.after_order().unwrap();
        assert_eq!(after.status(), shop::OrderStatus::Paid);
        assert_eq!(
            (after.order_id, after.customer_id, after.total_cents, after.line_count),
            (100_000, 3, 1250, 2)
        );
        assert_eq!(after.currency, "EUR");
        assert_eq!(
            after.created_at_ms, 1_704_067_200_123,
            "microseconds round down to milliseconds"
        );
        assert_eq!(e.before_order().unwrap().status(), shop::OrderStatus::Pending);
        let src = e.source.as_ref().unwrap();
        assert_eq!(
            (
                src.connector.as_str(),
                src.db.as_str(),
                src.schema.as_str(),
                src.table.as_str()
            ),
            ("postgresql", "shop", "sales", "orders")
        );
        assert_eq!((src.lsn, src.tx_id, src.ts_ms), (500, 77, 1_704_067_200_123));
        assert_eq!(e.ts_ms, 1_704_067_200_300);
        assert_eq!(e.partition_key().as_deref(), Some("orders:100000"));
    }

    #[test]
    fn nulls_become_proto_defaults() {
        let row = Row(vec![
            ("customer_id".into(), ColumnValue::Int(1)),
            ("name".into(), ColumnValue::Text("Ada 1".into())),
            ("email".into(), ColumnValue::Null),
            ("country".into(), ColumnValue::Text("DE".into())),
            ("orders_count".into(), ColumnValue::Int(0)),
            ("last_order_at".into(), ColumnValue::Null),
            ("created_at".into(), ColumnValue::TimestampMicros(-1_500)),
            ("updated_at".into(), ColumnValue::ZonedTimestampMicros(0)),
        ]);
        let e = to_shop(&event("customers", Op::Read, None, Some(row))).unwrap();
        let c = e.after_customer().unwrap();
        assert_eq!((c.email.as_str(), c.last_order_at_ms), ("", 0));
        assert_eq!(c.created_at_ms, -2, "rounds toward negative infinity");
        assert_eq!(e.op(), shop::Op::Read);
        assert_eq!(e.source.unwrap().tx_id, 77);
    }

    #[test]
    fn what_the_shop_envelope_cannot_hold_is_an_error_naming_table_and_column() {
        let unknown = to_shop(&event("widgets", Op::Create, None, Some(Row::default()))).unwrap_err();
        assert_eq!(unknown, ShopMapError::UnknownTable(TableName::new("sales", "widgets")));
        assert!(unknown.to_string().contains("--format protobuf or json"), "{unknown}");
        assert_eq!(
            to_shop(&event("orders", Op::Truncate, None, None)),
            Err(ShopMapError::Truncate(TableName::new("sales", "orders")))
        );
        let mut missing = order_row("paid");
        missing.0.retain(|(c, _)| c != "currency");
        assert_eq!(
            to_shop(&event("orders", Op::Create, None, Some(missing))),
            Err(ShopMapError::MissingColumn {
                table: TableName::new("sales", "orders"),
                column: "currency"
            })
        );
        let mut wrong = order_row("paid");
        wrong.0[3].1 = ColumnValue::Decimal("12.50".into());
        let err = to_shop(&event("orders", Op::Create, None, Some(wrong))).unwrap_err();
        assert!(
            matches!(
                &err,
                ShopMapError::WrongType {
                    column: "total_cents",
                    ..
                }
            ),
            "{err}"
        );
        let err = to_shop(&event("orders", Op::Create, None, Some(order_row("lost")))).unwrap_err();
        assert!(
            matches!(&err, ShopMapError::UnknownStatus { value, .. } if value == "lost"),
            "{err}"
        );
        let mut big = order_row("paid");
        big.0[5].1 = ColumnValue::Int(i64::from(i32::MAX) + 1);
        assert!(to_shop(&event("orders", Op::Create, None, Some(big))).is_err());
        let mut toast = order_row("paid");
        toast.0[4].1 = ColumnValue::Unavailable;
        assert!(matches!(
            to_shop(&event("orders", Op::Update, None, Some(toast))),
            Err(ShopMapError::Unavailable { column: "currency", .. })
        ));
    }
}
