//! `revenue`, a Lambda stage: revenue and order count per product per minute (early and late panes) upserted into Postgres.
//!
//! The stage and its configuration: [`shardflow_shop_stages::revenue`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_lambda::run(shardflow_shop_stages::revenue().await?).await
}
