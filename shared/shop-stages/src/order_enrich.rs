//! The `order-enrich` stage: orders joined with their payment, shipment and customer, to the next
//! stage's Kinesis stream and to S3.

use shardflow_connectors::{DeadLetterDestination, KinesisSink, KinesisSinkConfig, S3Sink, S3SinkConfig};
use shardflow_lambda::{required_var, BothSinks, PartitionKeying, Stage, StageEnv};
use shardflow_schemas::ChangeEvent;
use shardflow_shop::pipelines::EnrichedOrder;

use crate::{ShopDecoder, StageSetupError};

/// The stream enriched orders go to.
pub const OUTPUT_STREAM_ENV: &str = "SHARDFLOW_OUTPUT_STREAM";
/// The bucket enriched orders go to.
pub const OUTPUT_BUCKET_ENV: &str = "SHARDFLOW_OUTPUT_BUCKET";
/// The key prefix of enriched orders in the bucket.
pub const ENRICHED_ORDERS_PREFIX: &str = "enriched-orders";

/// The sinks of the `order-enrich` stage: the stream first, then S3.
pub type OrderEnrichSink = BothSinks<KinesisSink<EnrichedOrder>, S3Sink<EnrichedOrder>>;

/// The `order-enrich` stage as deployed.
pub type OrderEnrichStage = Stage<ChangeEvent, EnrichedOrder, ShopDecoder, OrderEnrichSink, DeadLetterDestination>;

/// The `order-enrich` stage of this function's environment. Records to the stream are partitioned
/// by order id; S3 holds one object per result (`enriched-orders/{date}/{id}.json`).
pub async fn order_enrich() -> Result<OrderEnrichStage, StageSetupError> {
    let env = StageEnv::load().await?;
    let stream = KinesisSink::new(
        aws_sdk_kinesis::Client::new(&env.sdk),
        KinesisSinkConfig::<EnrichedOrder>::new(required_var(OUTPUT_STREAM_ENV)?)
            .partition_key(|o| format!("orders:{}", o.value.order_id)),
    );
    let bucket = S3Sink::new(
        aws_sdk_s3::Client::new(&env.sdk),
        S3SinkConfig::new(required_var(OUTPUT_BUCKET_ENV)?, ENRICHED_ORDERS_PREFIX),
    );
    let dead_letters = DeadLetterDestination::from_env(&env.sdk)?;
    Ok(env.stage(
        shardflow_shop::pipelines::order_enrich(),
        ShopDecoder::new(),
        BothSinks::new(stream, bucket),
        dead_letters,
        PartitionKeying::Undeclared,
    )?)
}
