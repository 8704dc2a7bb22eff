//! `receipts`, a Lambda stage: completed purchases from the shop's CDC stream to one SNS receipt each, exactly once.
//!
//! The stage and its configuration: [`shardflow_shop_stages::receipts`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_lambda::run(shardflow_shop_stages::receipts().await?).await
}
