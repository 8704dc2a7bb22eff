//! `receipts`: one receipt per completed purchase, exactly once.
//!
//! A purchase completes when an update of `orders` moves an order to `completed` (its before
//! image has another status). The completion is keyed by order id and windowed by its commit
//! time (1-minute tumbling windows); the first pane of an order's window fires at once (an early
//! pane per element) and is the receipt; any later pane of that window — a redelivered or
//! duplicated change, which has the same commit time and therefore lands in the same window — is
//! dropped. The receipt's result id is the pane's id, a function of the order id and the window
//! only, so a replay, a resume or a redelivered batch yields the same id and a sink can
//! deduplicate on it. The window's state is kept for [`RECEIPT_DEDUP_HORIZON_MS`] after its end
//! (allowed lateness); a completion arriving later than that goes to the late side output.

use serde::{Deserialize, Serialize};
use shardflow_engine::combine::from_fns;
use shardflow_engine::trigger::Firing;
use shardflow_engine::{Pipeline, Trigger, Windowing};
use shardflow_schemas::{ChangeEvent, Op, Order, OrderStatus};

use super::{event_time, watermarks};

/// The receipts' tumbling window: one minute.
pub const RECEIPTS_WINDOW_MS: i64 = 60_000;

/// How long after a completion's minute duplicates of it are still recognised.
pub const RECEIPT_DEDUP_HORIZON_MS: i64 = 60 * 60_000;

/// The receipt of one completed purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// `rcpt-<order id>`: stable, usable as a message deduplication id.
    pub receipt_id: String,
    /// The order.
    pub order_id: i64,
    /// Its customer.
    pub customer_id: i64,
    /// The amount paid, in cents.
    pub total_cents: i64,
    /// Its currency.
    pub currency: String,
    /// Number of order lines.
    pub line_count: i32,
    /// When the order was placed.
    pub ordered_at_ms: i64,
    /// When it completed (the commit time of the completion).
    pub completed_at_ms: i64,
}

/// The order image of a change that completes a purchase, if it is one.
pub(super) fn completion(e: &ChangeEvent) -> Option<Order> {
    if e.op() != Op::Update {
        return None;
    }
    let after = e.after_order()?;
    let was_completed = e.before_order().is_some_and(|b| b.status() == OrderStatus::Completed);
    (after.status() == OrderStatus::Completed && !was_completed).then(|| after.clone())
}

/// The receipts' windows: one-minute tumbling windows of an order's completions.
pub(super) fn receipts_windowing() -> Windowing {
    Windowing::tumbling(RECEIPTS_WINDOW_MS).expect("a positive constant window size")
}

/// The receipts' trigger: a (discarding) pane per completion at once, the window kept for
/// [`RECEIPT_DEDUP_HORIZON_MS`] after its end.
pub(super) fn receipts_trigger() -> Trigger {
    Trigger::at_watermark()
        .with_early_firings(Firing::every_elements(1))
        .with_allowed_lateness(RECEIPT_DEDUP_HORIZON_MS)
        .expect("a non-negative constant lateness")
        .discarding()
}

/// The `receipts` pipeline (see the module documentation); sink `receipts`.
pub fn receipts() -> Pipeline<ChangeEvent, Receipt> {
    let first_completion = from_fns(
        || None::<(Order, i64)>,
        |acc: &mut Option<(Order, i64)>, v: &(Order, i64)| {
            if acc.is_none() {
                *acc = Some(v.clone());
            }
        },
        |acc: &mut Option<(Order, i64)>, other: Option<(Order, i64)>| {
            if acc.is_none() {
                *acc = other;
            }
        },
        |acc: &Option<(Order, i64)>| acc.clone(),
    );
    Pipeline::builder("receipts")
        .watermarks(watermarks())
        .event_time(event_time)
        .filter_map(|e: ChangeEvent| completion(&e).map(|o| (o, e.event_time())))
        .key_by(|(o, _)| o.order_id)
        .window(receipts_windowing())
        .trigger(receipts_trigger())
        .aggregate(first_completion, |_, _, pane, first| {
            // Only an order's first pane is its receipt; later panes are duplicates.
            first.filter(|_| pane.index == 0).map(|(o, completed_at_ms)| Receipt {
                receipt_id: format!("rcpt-{}", o.order_id),
                order_id: o.order_id,
                customer_id: o.customer_id,
                total_cents: o.total_cents,
                currency: o.currency,
                line_count: o.line_count,
                ordered_at_ms: o.created_at_ms,
                completed_at_ms,
            })
        })
        .filter_map(|r| r)
        .sink("receipts")
}
