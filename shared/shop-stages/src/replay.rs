//! The shop's pipelines as targets of `shardflow replay`.

use shardflow_lifecycle::replay::command::ReplayTarget;
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
