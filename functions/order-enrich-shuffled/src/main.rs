//! `order-enrich-shuffled`, a Lambda stage: the downstream half of the split order enrichment, orders joined with payments, shipments and customers per customer session from the shuffle stream, to a Kinesis stream and S3.
//!
//! The stage and its configuration: [`shardflow_shop_stages::order_enrich_shuffled`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_lambda::shuffle::run_downstream(shardflow_shop_stages::order_enrich_shuffled().await?).await
}
