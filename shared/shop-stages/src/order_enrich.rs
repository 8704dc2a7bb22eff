//! Where the order enrichment's results go: the enriched orders' Kinesis stream and S3 objects,
//! behind the blue/green gate. The stages themselves are the pair in
//! [`crate::order_enrich_keyby()`] and [`crate::order_enrich_shuffled()`].

use shardflow_bluegreen::{blue_green, shadow_prefix, ColourGate};
use shardflow_connectors::{KinesisSink, KinesisSinkConfig, S3Sink, S3SinkConfig};
use shardflow_shop::pipelines::EnrichedOrder;
use shardflow_stage::{required_var, BothSinks};

use crate::StageSetupError;

/// The stream enriched orders go to.
pub const OUTPUT_STREAM_ENV: &str = "SHARDFLOW_OUTPUT_STREAM";
/// The bucket enriched orders go to.
pub const OUTPUT_BUCKET_ENV: &str = "SHARDFLOW_OUTPUT_BUCKET";
/// The key prefix of enriched orders in the bucket.
pub const ENRICHED_ORDERS_PREFIX: &str = "enriched-orders";

/// The sinks of the enriched orders (`order-enrich-shuffled`): the stream first, then S3.
pub type OrderEnrichSink = BothSinks<KinesisSink<EnrichedOrder>, S3Sink<EnrichedOrder>>;

/// The enriched orders' sinks behind the blue/green gate (shadow: S3 only).
pub type OrderEnrichGate = ColourGate<OrderEnrichSink, S3Sink<EnrichedOrder>>;

/// The result sink of `order-enrich-shuffled`: the stream [`OUTPUT_STREAM_ENV`], one record per
/// result as soon as it is produced, partitioned by order id; and S3 [`OUTPUT_BUCKET_ENV`], one
/// object per shuffle shard and minute of event time
/// (`enriched-orders/{date}/{start}-{end}/{first id}.ndjson`, see
/// [`shardflow_shop::pipelines::ENRICHED_ORDERS_BUCKET_MS`] and
/// [`shardflow_connectors::S3KeyMode::EventTimeBuckets`]), written when the watermark passes the
/// minute: an order reaches S3 up to a minute (plus the watermark's lag) after its event time.
/// Results its colour does not own (blue/green) go to S3 only, under
/// `shadow/{colour}/enriched-orders/`.
pub(crate) fn enriched_orders_sink(sdk: &aws_config::SdkConfig) -> Result<OrderEnrichGate, StageSetupError> {
    let stream = KinesisSink::new(
        aws_sdk_kinesis::Client::new(sdk),
        KinesisSinkConfig::<EnrichedOrder>::new(required_var(OUTPUT_STREAM_ENV)?)
            .partition_key(|o| format!("orders:{}", o.value.order_id)),
    );
    let bucket_name = required_var(OUTPUT_BUCKET_ENV)?;
    let s3 = |prefix: String| {
        S3Sink::new(
            aws_sdk_s3::Client::new(sdk),
            S3SinkConfig::new(bucket_name.clone(), prefix).event_time_buckets(),
        )
    };
    let live = BothSinks::new(stream, s3(ENRICHED_ORDERS_PREFIX.to_owned()));
    Ok(match blue_green(sdk)? {
        Some((colour, control)) => {
            let shadow = s3(shadow_prefix(ENRICHED_ORDERS_PREFIX, colour));
            ColourGate::gated(colour, control, live, shadow)
        }
        None => ColourGate::single(live),
    })
}
