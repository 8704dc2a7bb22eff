//! `revenue-shuffled`, a Lambda stage: the downstream half of the split revenue pipeline, revenue and order count per product per minute read from the shuffle stream and upserted into Postgres.
//!
//! The stage and its configuration: [`shardflow_shop_stages::revenue_shuffled`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_lambda::shuffle::run_downstream(shardflow_shop_stages::revenue_shuffled().await?).await
}
