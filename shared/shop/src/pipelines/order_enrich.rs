//! `order_enrich`: orders enriched with their payment, shipment and customer — a 4-way join.
//!
//! # Semantics
//! Every row of the four tables carries the customer id (payments and shipments denormalize it,
//! and checkout updates the customer's row in the order's transaction), so the four streams are
//! joined in one window join keyed by **customer id**, in **session windows** of commit time
//! with a gap of [`ENRICH_SESSION_GAP_MS`]: a customer's checkout, payment, shipment and
//! delivery, each less than the gap after the previous one, fall in one session. When the
//! watermark passes the end of a session, the session's rows are joined on **order id**: for
//! each order, the latest image (highest LSN) of the order, of its payment and of its shipment,
//! with the latest image of the customer in the session. An enriched order is emitted only when
//! all four are present (an inner join): an order whose payment failed (no shipment), or whose
//! parts fell into different sessions, produces nothing. Each session fires once (no allowed
//! lateness); a row that arrives after its session closed goes to the late side output.
//!
//! # Buckets
//! Besides going out one by one, the enriched orders are collected per minute of event time
//! ([`ENRICHED_ORDERS_BUCKET_MS`], `sink_with_buckets`): when the watermark passes a minute, its
//! orders come out as one closed bucket, which the Lambda stage writes to S3 as one object. An
//! enriched order carries its session's last millisecond as event time and is emitted when the
//! watermark passes it, so a bucket closes with every order of its minute, without grace.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shardflow_engine::{EventTimeBuckets, KeyedStream, Pipeline, SplitPipeline, Stream, Trigger, Windowing};
use shardflow_schemas::{ChangeEvent, Customer, Entity, Order, Payment, Shipment};

use super::{event_time, watermarks};

/// The event-time width of a bucket of enriched orders (one S3 object per shard and minute).
pub const ENRICHED_ORDERS_BUCKET_MS: i64 = 60_000;

/// Inactivity (commit time) that closes a customer's session.
pub const ENRICH_SESSION_GAP_MS: i64 = 120_000;

/// A row image that takes part in the join, with the LSN of its change (to find the latest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EnrichInput {
    /// An `orders` row.
    Order(u64, Order),
    /// A `payments` row.
    Payment(u64, Payment),
    /// A `shipments` row.
    Shipment(u64, Shipment),
    /// A `customers` row.
    Customer(u64, Customer),
}

impl EnrichInput {
    /// The join input of a change: its after image, if it is a row of one of the four tables.
    pub fn from_change(e: &ChangeEvent) -> Option<Self> {
        let lsn = e.source.as_ref().map_or(0, |s| s.lsn);
        Some(match e.after_entity()? {
            Entity::Order(o) => EnrichInput::Order(lsn, o.clone()),
            Entity::Payment(p) => EnrichInput::Payment(lsn, p.clone()),
            Entity::Shipment(s) => EnrichInput::Shipment(lsn, s.clone()),
            Entity::Customer(c) => EnrichInput::Customer(lsn, c.clone()),
            Entity::OrderLine(_) => return None,
        })
    }

    fn customer_id(&self) -> i64 {
        match self {
            EnrichInput::Order(_, o) => o.customer_id,
            EnrichInput::Payment(_, p) => p.customer_id,
            EnrichInput::Shipment(_, s) => s.customer_id,
            EnrichInput::Customer(_, c) => c.customer_id,
        }
    }

    fn side(&self) -> usize {
        match self {
            EnrichInput::Order(..) => 0,
            EnrichInput::Payment(..) => 1,
            EnrichInput::Shipment(..) => 2,
            EnrichInput::Customer(..) => 3,
        }
    }
}

/// An order with its payment, shipment and customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedOrder {
    /// The order.
    pub order_id: i64,
    /// Its status at the end of the session (e.g. `completed`).
    pub order_status: String,
    /// Order total in cents.
    pub total_cents: i64,
    /// Currency.
    pub currency: String,
    /// Number of lines.
    pub line_count: i32,
    /// When it was placed.
    pub ordered_at_ms: i64,
    /// The customer.
    pub customer_id: i64,
    /// Customer name.
    pub customer_name: String,
    /// Customer email.
    pub customer_email: String,
    /// Customer country.
    pub customer_country: String,
    /// The payment.
    pub payment_id: i64,
    /// Payment status (e.g. `captured`).
    pub payment_status: String,
    /// Payment method.
    pub payment_method: String,
    /// The shipment.
    pub shipment_id: i64,
    /// Shipment status (e.g. `delivered`).
    pub shipment_status: String,
    /// Carrier.
    pub carrier: String,
    /// Tracking number.
    pub tracking_number: String,
    /// Start of the customer's session.
    pub session_start_ms: i64,
    /// End of the session (last activity plus the gap).
    pub session_end_ms: i64,
}

fn latest<T: Clone>(slot: &mut Option<(u64, T)>, lsn: u64, row: &T) {
    if slot.as_ref().is_none_or(|(l, _)| lsn >= *l) {
        *slot = Some((lsn, row.clone()));
    }
}

fn status_name(proto_name: &str, prefix: &str) -> String {
    proto_name
        .strip_prefix(prefix)
        .unwrap_or(proto_name)
        .to_ascii_lowercase()
}

/// The join of one customer's session (see the module documentation).
fn join_session(window: &shardflow_engine::Window, lists: &[Vec<EnrichInput>]) -> Vec<EnrichedOrder> {
    type Parts = (Option<(u64, Order)>, Option<(u64, Payment)>, Option<(u64, Shipment)>);
    let mut customer: Option<(u64, Customer)> = None;
    let mut orders: BTreeMap<i64, Parts> = BTreeMap::new();
    for row in lists.iter().flatten() {
        match row {
            EnrichInput::Customer(l, c) => latest(&mut customer, *l, c),
            EnrichInput::Order(l, o) => latest(&mut orders.entry(o.order_id).or_default().0, *l, o),
            EnrichInput::Payment(l, p) => latest(&mut orders.entry(p.order_id).or_default().1, *l, p),
            EnrichInput::Shipment(l, s) => latest(&mut orders.entry(s.order_id).or_default().2, *l, s),
        }
    }
    let Some((_, customer)) = customer else {
        return Vec::new();
    };
    orders
        .into_values()
        .filter_map(|parts| match parts {
            (Some((_, o)), Some((_, p)), Some((_, s))) => Some(EnrichedOrder {
                order_id: o.order_id,
                order_status: status_name(o.status().as_str_name(), "ORDER_STATUS_"),
                total_cents: o.total_cents,
                currency: o.currency.clone(),
                line_count: o.line_count,
                ordered_at_ms: o.created_at_ms,
                customer_id: customer.customer_id,
                customer_name: customer.name.clone(),
                customer_email: customer.email.clone(),
                customer_country: customer.country.clone(),
                payment_id: p.payment_id,
                payment_status: status_name(p.status().as_str_name(), "PAYMENT_STATUS_"),
                payment_method: p.method.clone(),
                shipment_id: s.shipment_id,
                shipment_status: status_name(s.status().as_str_name(), "SHIPMENT_STATUS_"),
                carrier: s.carrier.clone(),
                tracking_number: s.tracking_number.clone(),
                session_start_ms: window.start,
                session_end_ms: window.end,
            }),
            _ => None,
        })
        .collect()
}

/// The `order_enrich` pipeline (see the module documentation); sink `enriched_orders`.
pub fn order_enrich() -> Pipeline<ChangeEvent, EnrichedOrder> {
    enriched_orders(join_inputs()).sink_with_buckets(ENRICHED_ORDERS_SINK, enriched_order_buckets())
}

/// The `order_enrich` pipeline cut at its key (`key_by(customer id).shuffle()`): its upstream half
/// reads the change stream and keeps the rows of the four tables, keyed by customer id; its
/// downstream half owns the customers of a shuffle shard and runs their sessions and the join.
/// Its `whole` is [`order_enrich`], and across the hop its results are [`order_enrich`]'s (same
/// ids, values, buckets and late records): the pipeline has no processing-time trigger.
pub fn order_enrich_split() -> SplitPipeline<ChangeEvent, EnrichInput, EnrichedOrder> {
    let keyed = join_inputs().shuffle().expect("nothing stateful before the key");
    enriched_orders(keyed).sink_with_buckets(ENRICHED_ORDERS_SINK, enriched_order_buckets())
}

/// The sink of `order_enrich`.
const ENRICHED_ORDERS_SINK: &str = "enriched_orders";

fn enriched_order_buckets() -> EventTimeBuckets {
    EventTimeBuckets::new(ENRICHED_ORDERS_BUCKET_MS).expect("a positive constant width")
}

/// The rows of the four joined tables, keyed by customer id.
fn join_inputs() -> KeyedStream<ChangeEvent, i64, EnrichInput> {
    Pipeline::builder("order_enrich")
        .watermarks(watermarks())
        .event_time(event_time)
        .filter_map(|e: ChangeEvent| EnrichInput::from_change(&e))
        .key_by(EnrichInput::customer_id)
}

/// The sessions and the 4-way join of `order_enrich`, before or after a shuffle marker.
fn enriched_orders<In: Send + 'static, Up>(
    keyed: KeyedStream<In, i64, EnrichInput, Up>,
) -> Stream<In, EnrichedOrder, Up> {
    keyed
        .window(Windowing::session(ENRICH_SESSION_GAP_MS).expect("a positive constant gap"))
        .trigger(Trigger::at_watermark())
        .join(4, EnrichInput::side, |_, window, lists| join_session(window, lists))
}
