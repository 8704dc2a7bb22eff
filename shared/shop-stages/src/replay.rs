//! The shop's pipelines as targets of `shardflow replay` and `shardflow savepoint check`.

use shardflow_lifecycle::replay::command::ReplayTarget;
use shardflow_lifecycle::CheckTarget;
use shardflow_shop::pipelines;

use crate::ShopDecoder;

/// The shop's pipelines under their stages' names (`receipts`, `revenue`, `order-enrich`), for
/// [`shardflow_lifecycle::replay::command::run`].
pub fn replay_targets() -> Vec<ReplayTarget> {
    vec![
        ReplayTarget::new("receipts", pipelines::receipts(), ShopDecoder::new()),
        ReplayTarget::new("revenue", pipelines::revenue(), ShopDecoder::new()),
        ReplayTarget::new("order-enrich", pipelines::order_enrich(), ShopDecoder::new()),
    ]
}

/// The shop's pipelines under their stages' names (`receipts`, `revenue`, `order-enrich`), for
/// `shardflow savepoint check` ([`shardflow_lifecycle::command::savepoint::run`]).
pub fn check_targets() -> Vec<CheckTarget> {
    vec![
        CheckTarget::new("receipts", pipelines::receipts()),
        CheckTarget::new("revenue", pipelines::revenue()),
        CheckTarget::new("order-enrich", pipelines::order_enrich()),
    ]
}
