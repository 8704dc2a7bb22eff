//! `order-enrich`, a Lambda stage: orders joined with payments, shipments and customers, to a Kinesis stream and S3.
//!
//! The stage and its configuration: [`shardflow_shop_stages::order_enrich`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_lambda::run(shardflow_shop_stages::order_enrich().await?).await
}
