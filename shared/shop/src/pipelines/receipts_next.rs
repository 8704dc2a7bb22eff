//! `receipts_next`: the next release of [`receipts`](super::receipts), changed the way a pipeline
//! changes between two deploys, and deployed over the running `receipts` from its savepoint
//! (`tests/e2e/tests/blue_green.rs`, README "Blue/green deploys").
//!
//! What changed, against `receipts`:
//! - **a filter before the window**: only changes of the `orders` table go on (the others never
//!   completed a purchase, so the receipts stay the same). A stateless step: the window keeps its
//!   default id `window_aggregate-0` and so its state.
//! - **a field added to the window's accumulator**: the first completion of an order in its
//!   window also keeps the status the order completed from ([`FirstCompletion`]). The accumulator
//!   is at schema version 2, with a migration from version 1 (`receipts`' `Option<(Order, i64)>`,
//!   [`migrate_from`]): blue's state restores into it, reported as migrated; a completion stored
//!   by version 1 completes from an unknown status.
//! - **a column added to the output**: [`ReceiptNext::completed_from`]; every other field, and
//!   the result id, is `receipts`' ([`ReceiptNext::receipt`]).
//!
//! The pipeline keeps the name `receipts`: it is the same pipeline at its next version, and
//! restores check the name. [`receipts_next_without_migration`] is the same change without the
//! migration, the counter-example `shardflow savepoint check` must refuse.

use serde::{Deserialize, Serialize};
use shardflow_engine::combine::{from_fns, migrate_from, Combiner};
use shardflow_engine::Pipeline;
use shardflow_schemas::{ChangeEvent, Order, Table};

use super::receipts::{completion, receipts_trigger, receipts_windowing, Receipt};
use super::{event_time, watermarks};

/// The receipt of one completed purchase, as `receipts_next` publishes it: `receipts`' receipt
/// and one column more. A copy of [`Receipt`]'s fields on purpose, not a wrapper of it: it stands
/// for the output type of another release (a flattened wrapper would also change how the value
/// serializes in non-self-describing formats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptNext {
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
    /// New in this release: the order's status before it completed (`shipped`, `paid`, ...);
    /// `None` if the change carried no before image, or if the completion was stored by the
    /// previous release (its state did not keep it).
    pub completed_from: Option<String>,
}

impl ReceiptNext {
    /// The receipt without the new column: what `receipts` publishes for the same completion.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            receipt_id: self.receipt_id.clone(),
            order_id: self.order_id,
            customer_id: self.customer_id,
            total_cents: self.total_cents,
            currency: self.currency.clone(),
            line_count: self.line_count,
            ordered_at_ms: self.ordered_at_ms,
            completed_at_ms: self.completed_at_ms,
        }
    }
}

/// The first completion of an order in its window: the accumulator of `receipts_next`'s window
/// at schema version 2 (version 1, `receipts`', was `Option<(Order, i64)>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstCompletion {
    /// The order image after the completion.
    pub order: Order,
    /// The commit time of the completion.
    pub completed_at_ms: i64,
    /// Added in version 2: the order's status before the completion (see
    /// [`ReceiptNext::completed_from`]).
    pub completed_from: Option<String>,
}

impl FirstCompletion {
    /// The completion a version-1 accumulator stored: its previous status is unknown.
    fn from_v1((order, completed_at_ms): (Order, i64)) -> Self {
        FirstCompletion {
            order,
            completed_at_ms,
            completed_from: None,
        }
    }
}

/// The `receipts` pipeline at its next version (see the module documentation); sink `receipts`.
pub fn receipts_next() -> Pipeline<ChangeEvent, ReceiptNext> {
    receipts_with(migrate_from(first_completion(), 1, |old: Option<(Order, i64)>| {
        old.map(FirstCompletion::from_v1)
    }))
}

/// [`receipts_next`] without the migration of the accumulator from version 1: a restore of
/// `receipts`' state into it is refused (the accumulator's type and shape changed at the same
/// version). The counter-example for `shardflow savepoint check`; never deploy it.
pub fn receipts_next_without_migration() -> Pipeline<ChangeEvent, ReceiptNext> {
    receipts_with(first_completion())
}

/// The first completion of the window, kept until the pane fires.
fn first_completion() -> impl Combiner<FirstCompletion, Acc = Option<FirstCompletion>, Out = Option<FirstCompletion>> {
    from_fns(
        || None::<FirstCompletion>,
        |acc: &mut Option<FirstCompletion>, v: &FirstCompletion| {
            if acc.is_none() {
                *acc = Some(v.clone());
            }
        },
        |acc: &mut Option<FirstCompletion>, other: Option<FirstCompletion>| {
            if acc.is_none() {
                *acc = other;
            }
        },
        |acc: &Option<FirstCompletion>| acc.clone(),
    )
}

/// The completion `e` makes, with the status it completed from, if it completes a purchase.
fn first_completion_of(e: &ChangeEvent) -> Option<FirstCompletion> {
    let order = completion(e)?;
    let completed_from = e.before_order().map(|b| status_name(b.status()));
    Some(FirstCompletion {
        order,
        completed_at_ms: e.event_time(),
        completed_from,
    })
}

/// `shipped` for `ORDER_STATUS_SHIPPED`.
fn status_name(status: shardflow_schemas::OrderStatus) -> String {
    status
        .as_str_name()
        .trim_start_matches("ORDER_STATUS_")
        .to_ascii_lowercase()
}

/// `receipts_next` with the window's accumulator kept by `combiner`.
fn receipts_with<C>(combiner: C) -> Pipeline<ChangeEvent, ReceiptNext>
where
    C: Combiner<FirstCompletion, Acc = Option<FirstCompletion>, Out = Option<FirstCompletion>>,
{
    Pipeline::builder("receipts")
        .watermarks(watermarks())
        .event_time(event_time)
        // new: only changes of `orders` go on
        .filter(|e: &ChangeEvent| e.table() == Some(Table::Orders))
        .filter_map(|e: ChangeEvent| first_completion_of(&e))
        .key_by(|c| c.order.order_id)
        .window(receipts_windowing())
        .trigger(receipts_trigger())
        .aggregate(combiner, |_, _, pane, first| {
            // Only an order's first pane is its receipt; later panes are duplicates.
            first.filter(|_| pane.index == 0).map(receipt_next)
        })
        .filter_map(|r| r)
        .sink("receipts")
}

/// The receipt of an order's first completion.
fn receipt_next(c: FirstCompletion) -> ReceiptNext {
    let o = c.order;
    ReceiptNext {
        receipt_id: format!("rcpt-{}", o.order_id),
        order_id: o.order_id,
        customer_id: o.customer_id,
        total_cents: o.total_cents,
        currency: o.currency,
        line_count: o.line_count,
        ordered_at_ms: o.created_at_ms,
        completed_at_ms: c.completed_at_ms,
        completed_from: c.completed_from,
    }
}
