//! `revenue-keyby`, a Lambda stage: the upstream half of the split revenue pipeline, the shop's CDC stream keyed by (product, currency) to the shuffle stream; it also serves the scheduled tick (`{"shardflowTick": {}}`).
//!
//! The stage and its configuration: [`shardflow_shop_stages::revenue_keyby`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_lambda::shuffle::run_upstream(shardflow_shop_stages::revenue_keyby().await?).await
}
