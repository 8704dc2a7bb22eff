//! `clickstream-sessions`, a Lambda stage: page views sessionized to DynamoDB and S3; run with
//! `--describe` it prints the clickstream application's description for `shardflow synth`.
//!
//! The stage: [`shardflow_clickstream::sessions_stage`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_app::run_stage(shardflow_clickstream::app(), shardflow_clickstream::SESSIONS_STAGE).await
}
