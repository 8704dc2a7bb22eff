//! The seed platform's pipelines over the shop's change stream, as engine pipelines.
//!
//! Each is a function returning a [`shardflow_engine::Pipeline`] whose input is the
//! [`ChangeEvent`] envelope, so the same value runs in `shardflow demo` and in the Lambda stages.
//! Common to all: event time is the commit time (`source.ts_ms`), watermarks allow
//! [`OUT_OF_ORDERNESS_MS`] of out-of-orderness per shard, and only row images *after* the change
//! are read (deletes carry none and are ignored).

mod order_enrich;
mod receipts;
mod receipts_next;
mod revenue;

use shardflow_engine::WatermarkStrategy;
use shardflow_schemas::ChangeEvent;

pub use order_enrich::{
    order_enrich, order_enrich_split, EnrichInput, EnrichedOrder, ENRICHED_ORDERS_BUCKET_MS, ENRICH_SESSION_GAP_MS,
};
pub use receipts::{receipts, Receipt, RECEIPTS_WINDOW_MS, RECEIPT_DEDUP_HORIZON_MS};
pub use receipts_next::{receipts_next, receipts_next_without_migration, FirstCompletion, ReceiptNext};
pub use revenue::{
    revenue, revenue_split, KeyedSale, LineSale, RevenueRow, REVENUE_ALLOWED_LATENESS_MS, REVENUE_EARLY_FIRING_MS,
    REVENUE_WINDOW_MS,
};

/// Each pipeline's window (the session gap for `order_enrich`) by pipeline name: how long a
/// watermark may stand still before its windows wait (the dashboard's highlights).
pub fn windows() -> std::collections::BTreeMap<String, i64> {
    [
        ("revenue", REVENUE_WINDOW_MS),
        ("receipts", RECEIPTS_WINDOW_MS),
        ("order_enrich", ENRICH_SESSION_GAP_MS),
    ]
    .into_iter()
    .map(|(name, ms)| (name.to_owned(), ms))
    .collect()
}

/// Bounded out-of-orderness of the shop's shards.
pub const OUT_OF_ORDERNESS_MS: i64 = 5_000;

fn watermarks() -> WatermarkStrategy {
    WatermarkStrategy::bounded_out_of_orderness(OUT_OF_ORDERNESS_MS).expect("a non-negative constant bound")
}

fn event_time(e: &ChangeEvent) -> i64 {
    e.event_time()
}
