//! `order-enrich-keyby`, a Lambda stage: the upstream half of the split order enrichment, the rows of the four joined tables from the shop's CDC stream keyed by customer id to the shuffle stream; it also serves the scheduled tick (`{"shardflowTick": {}}`).
//!
//! The stage and its configuration: [`shardflow_shop_stages::order_enrich_keyby`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_lambda::shuffle::run_upstream(shardflow_shop_stages::order_enrich_keyby().await?).await
}
