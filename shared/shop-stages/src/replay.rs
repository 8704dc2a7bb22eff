//! The shop's pipelines as targets of `shardflow replay` and `shardflow savepoint check`.

use shardflow_lifecycle::replay::command::ReplayTarget;
use shardflow_lifecycle::CheckTarget;
use shardflow_shop::pipelines;

use crate::ShopDecoder;

/// The shop's pipelines for a local replay of the CDC stream's archive
/// ([`shardflow_lifecycle::replay::command::run`]): `receipts`, `revenue` and `order-enrich`.
/// `revenue` and `order-enrich` are the whole pipelines (deployed as the pairs `revenue-keyby` →
/// shuffle stream → `revenue-shuffled` and `order-enrich-keyby` → shuffle stream →
/// `order-enrich-shuffled`, whose results equal them); a local replay runs each archived shard
/// in its own engine, so it is their exact result for a one-shard stream.
pub fn replay_targets() -> Vec<ReplayTarget> {
    vec![
        ReplayTarget::new("receipts", pipelines::receipts(), ShopDecoder::new()),
        ReplayTarget::new("revenue", pipelines::revenue(), ShopDecoder::new()),
        ReplayTarget::new("order-enrich", pipelines::order_enrich(), ShopDecoder::new()),
    ]
}

/// The shop's pipelines under their stages' names, for `shardflow savepoint check`
/// ([`shardflow_lifecycle::command::savepoint::run`]): `receipts`, the two halves of revenue
/// (`revenue-keyby`, `revenue-shuffled`) and of order-enrich (`order-enrich-keyby`,
/// `order-enrich-shuffled`); `revenue` and `order-enrich`, the whole pipelines, for savepoints of
/// the one-stage stages deployed before the shuffle; and the next release of
/// receipts, `receipts-next` (the function of that name), with its counter-example
/// `receipts-next-unmigrated` (the same change without the accumulator's migration, which the
/// check refuses: check a change before deploying it, README "Blue/green deploys").
pub fn check_targets() -> Vec<CheckTarget> {
    let revenue = pipelines::revenue_split();
    let order_enrich = pipelines::order_enrich_split();
    vec![
        CheckTarget::new("receipts", pipelines::receipts()),
        CheckTarget::new("receipts-next", pipelines::receipts_next()),
        CheckTarget::new("receipts-next-unmigrated", pipelines::receipts_next_without_migration()),
        CheckTarget::new("revenue-keyby", revenue.upstream),
        CheckTarget::new("revenue-shuffled", revenue.downstream),
        CheckTarget::new("revenue", pipelines::revenue()),
        CheckTarget::new("order-enrich-keyby", order_enrich.upstream),
        CheckTarget::new("order-enrich-shuffled", order_enrich.downstream),
        CheckTarget::new("order-enrich", pipelines::order_enrich()),
    ]
}
