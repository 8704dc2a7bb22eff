//! `customer360`, the Lambda function of every stage of the customer-360 example: the tagging
//! stage of each table stream and the join stage, the one its `SHARDFLOW_STAGE` names; run with
//! `--describe` it prints the application's description for `shardflow synth`.
//!
//! The application: [`shardflow_customer360::app`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    shardflow_app::run_stage_from_env(shardflow_customer360::app()).await
}
