//! # shardflow-schemas
//!
//! Protobuf messages (prost) shared by stages: the shop's typed Debezium-style change envelope
//! ([`ChangeEvent`]) and its online-shop entities ([`Customer`], [`Order`], [`OrderLine`],
//! [`Payment`], [`Shipment`]), and the generic envelope of `shardflow cdc` for any table
//! ([`cdc::v1::ChangeEvent`]: row images as typed column values). The `.proto` files are under
//! `proto/` in this crate.
//!
//! Every shop message also derives serde, so the same types read and write JSON. The JSON form is
//! Debezium's (snake_case fields, integers as numbers, `op` as `c`/`u`/`d`/`r`, enums as lower
//! case names such as `"completed"`, a row image tagged by its table:
//! `"after": {"order": {...}}`), not the canonical proto3 JSON mapping. The serde form is
//! also what keyed state stores when a pipeline keeps these types in windows (postcard).
//!
//! ```
//! use prost::Message;
//! use shardflow_schemas::{ChangeEvent, Op};
//!
//! let json = r#"{"op":"c","after":{"order":{"order_id":7,"customer_id":3,"status":"pending",
//!     "total_cents":1250,"currency":"EUR"}},"source":{"table":"orders","ts_ms":1000},"ts_ms":1200}"#;
//! let event: ChangeEvent = serde_json::from_str(json).unwrap();
//! assert_eq!(event.op(), Op::Create);
//! assert_eq!(event.after_order().map(|o| o.total_cents), Some(1250));
//! let bytes = event.encode_to_vec();
//! assert_eq!(ChangeEvent::decode(bytes.as_slice()).unwrap(), event);
//! ```
#![warn(missing_docs)]

mod envelope;
pub mod serde_enum;

/// The generic change envelope of `shardflow cdc` (any table, typed column values).
pub mod cdc {
    /// Package `shardflow.cdc.v1`.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/shardflow.cdc.v1.rs"));
    }
}

/// The generated Protobuf types of the shop, by package.
pub mod shop {
    /// Package `shardflow.shop.v1`.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/shardflow.shop.v1.rs"));
    }
}

pub use envelope::{Table, UnknownTable};
pub use shop::v1::row::Entity;
pub use shop::v1::{
    ChangeEvent, Customer, Op, Order, OrderLine, OrderStatus, Payment, PaymentStatus, Row, Shipment, ShipmentStatus,
    Source,
};
