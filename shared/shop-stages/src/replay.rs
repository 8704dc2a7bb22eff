//! The shop's pipelines as targets of `shardflow replay` and `shardflow savepoint check`.

use shardflow_lifecycle::replay::command::ReplayTarget;
use shardflow_lifecycle::CheckTarget;
use shardflow_shop::pipelines;

use crate::ShopDecoder;

/// The shop's pipelines for a local replay of the CDC stream's archive
/// ([`shardflow_lifecycle::replay::command::run`]): `receipts`, `revenue` and `order-enrich`.
/// `revenue` is the whole pipeline (deployed as the pair `revenue-keyby` → shuffle stream →
/// `revenue-shuffled`, whose on-time and late panes equal it); a local replay runs each
/// archived shard in its own engine, so it is revenue's exact result for a one-shard stream.
pub fn replay_targets() -> Vec<ReplayTarget> {
    vec![
        ReplayTarget::new("receipts", pipelines::receipts(), ShopDecoder::new()),
        ReplayTarget::new("revenue", pipelines::revenue(), ShopDecoder::new()),
        ReplayTarget::new("order-enrich", pipelines::order_enrich(), ShopDecoder::new()),
    ]
}

/// The shop's pipelines under their stages' names, for `shardflow savepoint check`
/// ([`shardflow_lifecycle::command::savepoint::run`]): `receipts`, the two halves of revenue
/// (`revenue-keyby`, `revenue-shuffled`), `order-enrich`; `revenue`, the whole pipeline, for
/// savepoints of the one-stage revenue deployed before the shuffle; and the next release of
/// receipts, `receipts-next` (the function of that name), with its counter-example
/// `receipts-next-unmigrated` (the same change without the accumulator's migration, which the
/// check refuses: check a change before deploying it, README "Blue/green deploys").
pub fn check_targets() -> Vec<CheckTarget> {
    let split = pipelines::revenue_split();
    vec![
        CheckTarget::new("receipts", pipelines::receipts()),
        CheckTarget::new("receipts-next", pipelines::receipts_next()),
        CheckTarget::new("receipts-next-unmigrated", pipelines::receipts_next_without_migration()),
        CheckTarget::new("revenue-keyby", split.upstream),
        CheckTarget::new("revenue-shuffled", split.downstream),
        CheckTarget::new("revenue", pipelines::revenue()),
        CheckTarget::new("order-enrich", pipelines::order_enrich()),
    ]
}
