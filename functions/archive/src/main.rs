//! `archive`, a Lambda stage: any Kinesis stream to S3 as gzip NDJSON partitioned by stream, date and hour, exactly once.
//!
//! The stage and its configuration: [`shardflow_archive::stage`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_lambda::run(shardflow_archive::stage().await?).await
}
