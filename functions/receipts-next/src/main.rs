//! `receipts-next`, a Lambda stage: the `receipts` stage running the next release of its pipeline
//! (a filter before the window, a migrated accumulator, one column more in each receipt), deployed
//! in place of `receipts` from its savepoint (`SHARDFLOW_FUNCTION_CODE=receipts=receipts-next`
//! of `localstack/deploy`).
//!
//! The stage and its configuration: [`shardflow_shop_stages::receipts_next`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_lambda::run(shardflow_shop_stages::receipts_next().await?).await
}
