//! `revenue`: revenue and order count per product per minute, with early and late panes.
//!
//! Input: inserted order lines (`order_lines`, `op = c`). Key: (product, currency). Window:
//! 1-minute tumbling windows of commit time. Trigger: early panes every 10 s of processing time,
//! the on-time pane when the watermark passes the window, late panes (one per late line) for
//! 5 minutes of allowed lateness; panes accumulate, so each pane holds the window's totals so far
//! and a sink keeps, per (product, currency, window), the row with the highest pane index.
//! `order_count` counts lines, which is the number of orders since an order has at most one line
//! per product. Lines later than the allowed lateness go to the late side output.

use serde::{Deserialize, Serialize};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::trigger::Firing;
use shardflow_engine::{KeyedStream, Pipeline, SplitPipeline, Stream, Trigger, Windowing};
use shardflow_schemas::{ChangeEvent, Op};

use super::{event_time, watermarks};

/// The window size.
pub const REVENUE_WINDOW_MS: i64 = 60_000;
/// Early panes fire this long (processing time) after a window's first unreported line.
pub const REVENUE_EARLY_FIRING_MS: i64 = 10_000;
/// How long after the end of a window late lines still update it.
pub const REVENUE_ALLOWED_LATENESS_MS: i64 = 5 * 60_000;

/// One pane of one (product, currency, window): the window's totals so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevenueRow {
    /// The product.
    pub product_id: i64,
    /// The currency of the amounts.
    pub currency: String,
    /// Start of the window (inclusive, ms since the epoch).
    pub window_start_ms: i64,
    /// End of the window (exclusive).
    pub window_end_ms: i64,
    /// Sum of quantity x unit price of the window's lines, in cents.
    pub revenue_cents: i64,
    /// Number of orders (lines) of the product in the window.
    pub order_count: u64,
    /// `early`, `on_time` or `late`.
    pub pane: String,
    /// The pane's index in its window (0, 1, ...): a sink upserts the highest.
    pub pane_index: u32,
}

/// A line sold: what the revenue aggregation needs of an `order_lines` insert.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LineSale {
    amount_cents: i64,
}

/// What `revenue` keys: ((product, currency), the sale).
pub type KeyedSale = ((i64, String), LineSale);

/// The `revenue` pipeline (see the module documentation); sink `revenue`.
pub fn revenue() -> Pipeline<ChangeEvent, RevenueRow> {
    revenue_rows(sales()).sink("revenue")
}

/// The `revenue` pipeline cut at its key (`key_by(..).shuffle()`): its upstream half reads the
/// change stream, its downstream half owns the (product, currency) keys of a shuffle shard; its
/// `whole` is [`revenue`]. Across the hop its results equal [`revenue`]'s except the early panes,
/// which fire on processing time (each stage's own).
pub fn revenue_split() -> SplitPipeline<ChangeEvent, KeyedSale, RevenueRow> {
    let keyed = sales().shuffle().expect("nothing stateful before the key");
    revenue_rows(keyed).sink("revenue")
}

/// The inserted order lines keyed by (product, currency).
fn sales() -> KeyedStream<ChangeEvent, (i64, String), KeyedSale> {
    Pipeline::builder("revenue")
        .watermarks(watermarks())
        .event_time(event_time)
        .filter_map(|e: ChangeEvent| {
            if e.op() != Op::Create {
                return None;
            }
            let line = e.after_order_line()?;
            Some((
                (line.product_id, line.currency.clone()),
                LineSale {
                    amount_cents: i64::from(line.quantity).saturating_mul(line.unit_price_cents),
                },
            ))
        })
        .key_by(|(key, _)| key.clone())
}

/// The windows, trigger and aggregation of `revenue`, before or after a shuffle marker.
fn revenue_rows<In: Send + 'static, Up>(
    keyed: KeyedStream<In, (i64, String), KeyedSale, Up>,
) -> Stream<In, RevenueRow, Up> {
    let trigger = Trigger::at_watermark()
        .with_early_firings(Firing::every_processing_ms(REVENUE_EARLY_FIRING_MS))
        .with_allowed_lateness(REVENUE_ALLOWED_LATENESS_MS)
        .expect("a non-negative constant lateness")
        .accumulating();
    keyed
        .window(Windowing::tumbling(REVENUE_WINDOW_MS).expect("a positive constant window size"))
        .trigger(trigger)
        .aggregate(
            (Count, Sum::of(|(_, sale): &KeyedSale| sale.amount_cents)),
            |(product_id, currency), window, pane, (orders, cents)| RevenueRow {
                product_id: *product_id,
                currency: currency.clone(),
                window_start_ms: window.start,
                window_end_ms: window.end,
                revenue_cents: cents,
                order_count: orders,
                pane: pane.timing.as_str().to_owned(),
                pane_index: pane.index,
            },
        )
}
