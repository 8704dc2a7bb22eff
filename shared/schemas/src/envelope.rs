//! Typed access to change events: the table, the row images, the partition key.

use std::fmt;
use std::str::FromStr;

use crate::shop::v1::row::Entity;
use crate::shop::v1::{ChangeEvent, Customer, Order, OrderLine, Payment, Row, Shipment};

/// The shop's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `customers`, primary key `customer_id`.
    Customers,
    /// `orders`, primary key `order_id`.
    Orders,
    /// `order_lines`, primary key `(order_id, line_no)`.
    OrderLines,
    /// `payments`, primary key `payment_id`.
    Payments,
    /// `shipments`, primary key `shipment_id`.
    Shipments,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 5] = [
        Table::Customers,
        Table::Orders,
        Table::OrderLines,
        Table::Payments,
        Table::Shipments,
    ];

    /// The table's name in the database (and in `source.table`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Table::Customers => "customers",
            Table::Orders => "orders",
            Table::OrderLines => "order_lines",
            Table::Payments => "payments",
            Table::Shipments => "shipments",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A table name that is not one of the shop's tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown table {0:?}")]
pub struct UnknownTable(pub String);

impl FromStr for Table {
    type Err = UnknownTable;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Table::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTable(s.to_owned()))
    }
}

impl Entity {
    /// The table this row belongs to.
    pub fn table(&self) -> Table {
        match self {
            Entity::Customer(_) => Table::Customers,
            Entity::Order(_) => Table::Orders,
            Entity::OrderLine(_) => Table::OrderLines,
            Entity::Payment(_) => Table::Payments,
            Entity::Shipment(_) => Table::Shipments,
        }
    }

    /// The row's primary key as text (`order_id:line_no` for order lines).
    pub fn primary_key(&self) -> String {
        match self {
            Entity::Customer(c) => c.customer_id.to_string(),
            Entity::Order(o) => o.order_id.to_string(),
            Entity::OrderLine(l) => format!("{}:{}", l.order_id, l.line_no),
            Entity::Payment(p) => p.payment_id.to_string(),
            Entity::Shipment(s) => s.shipment_id.to_string(),
        }
    }
}

impl From<Entity> for Row {
    fn from(entity: Entity) -> Self {
        Row { entity: Some(entity) }
    }
}

macro_rules! image_accessors {
    ($($(#[$doc:meta])* $after:ident, $before:ident, $variant:ident, $ty:ty;)*) => {
        $(
            $(#[$doc])*
            /// The row after the change, if it is one of these.
            pub fn $after(&self) -> Option<&$ty> {
                match self.after_entity() {
                    Some(Entity::$variant(v)) => Some(v),
                    _ => None,
                }
            }

            $(#[$doc])*
            /// The row before the change, if it is one of these.
            pub fn $before(&self) -> Option<&$ty> {
                match self.before_entity() {
                    Some(Entity::$variant(v)) => Some(v),
                    _ => None,
                }
            }
        )*
    };
}

impl ChangeEvent {
    /// Event time: the commit time in the database (`source.ts_ms`), or 0 without a source.
    pub fn event_time(&self) -> i64 {
        self.source.as_ref().map_or(0, |s| s.ts_ms)
    }

    /// The table named in `source.table`, if it is one of the shop's.
    pub fn table(&self) -> Option<Table> {
        self.source.as_ref().and_then(|s| s.table.parse().ok())
    }

    /// The row image before the change (updates and deletes).
    pub fn before_entity(&self) -> Option<&Entity> {
        self.before.as_ref().and_then(|r| r.entity.as_ref())
    }

    /// The row image after the change (creates, updates and snapshot reads).
    pub fn after_entity(&self) -> Option<&Entity> {
        self.after.as_ref().and_then(|r| r.entity.as_ref())
    }

    /// The changed row: its image after the change, or before it for a delete.
    pub fn row_entity(&self) -> Option<&Entity> {
        self.after_entity().or_else(|| self.before_entity())
    }

    /// The Kinesis partition key a CDC reader uses for this change: `table:primary_key`, so that
    /// one row's changes stay in order in one shard. `None` if the event has no row image.
    pub fn partition_key(&self) -> Option<String> {
        self.row_entity().map(|e| format!("{}:{}", e.table(), e.primary_key()))
    }

    image_accessors! {
        after_customer, before_customer, Customer, Customer;
        after_order, before_order, Order, Order;
        after_order_line, before_order_line, OrderLine, OrderLine;
        after_payment, before_payment, Payment, Payment;
        after_shipment, before_shipment, Shipment, Shipment;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shop::v1::Source;
    use crate::Op;

    #[test]
    fn table_names_round_trip() {
        for t in Table::ALL {
            assert_eq!(t.as_str().parse::<Table>(), Ok(t));
        }
        assert!("nope".parse::<Table>().is_err());
    }

    #[test]
    fn delete_is_keyed_by_its_before_image() {
        let line = OrderLine {
            order_id: 9,
            line_no: 2,
            ..Default::default()
        };
        let ev = ChangeEvent {
            op: Op::Delete as i32,
            before: Some(Entity::OrderLine(line).into()),
            after: None,
            source: Some(Source {
                table: "order_lines".into(),
                ts_ms: 5,
                ..Default::default()
            }),
            ts_ms: 6,
        };
        assert_eq!(ev.partition_key().as_deref(), Some("order_lines:9:2"));
        assert_eq!(ev.table(), Some(Table::OrderLines));
        assert_eq!(ev.event_time(), 5);
        assert!(ev.after_order_line().is_none());
        assert_eq!(ev.before_order_line().map(|l| l.line_no), Some(2));
    }
}
