//! The `order_enrich` pipeline over the shuffle ([`shardflow_shop::pipelines::order_enrich_split`]):
//! two stages, so that the 4-way join per customer is exact on any number of CDC shards.
//!
//! - [`order_enrich_keyby()`], the upstream stage: decodes the CDC stream
//!   ([`crate::ShopDecoder`]), keeps the rows of `orders`, `payments`, `shipments` and
//!   `customers` (their after images, with their LSN), keys them by customer id and writes them to
//!   the shuffle stream ([`crate::SHUFFLE_STREAM_ENV`]). Its `SHARDFLOW_INPUT_STREAM` is the CDC
//!   stream. It also serves the scheduled tick (`{"shardflowTick": {}}`).
//! - [`order_enrich_shuffled()`], the downstream stage: reads the shuffle stream (its
//!   `SHARDFLOW_INPUT_STREAM`), runs the customers' sessions and the join, and writes the enriched
//!   orders to the Kinesis stream
//!   [`crate::OUTPUT_STREAM_ENV`] one by one, and to S3 [`crate::OUTPUT_BUCKET_ENV`] one object
//!   per shuffle shard and minute of event time, through the blue/green gate. It names its
//!   upstream ([`crate::UPSTREAM_STAGE_ENV`], [`crate::UPSTREAM_INPUT_STREAM_ENV`]) and the
//!   idleness timeout of silent upstream shards ([`crate::IDLENESS_MS_ENV`]).

use shardflow_lambda::StageEnv;
use shardflow_shop::pipelines::{order_enrich_split, EnrichInput, EnrichedOrder};

use crate::order_enrich::{enriched_orders_sink, OrderEnrichGate};
use crate::split::{keyby_stage, shuffled_stage, KeyByStage, ShuffledStage};
use crate::StageSetupError;

/// The upstream stage of the split order enrichment as deployed.
pub type OrderEnrichKeyByStage = KeyByStage<EnrichInput>;

/// The downstream stage of the split order enrichment as deployed.
pub type OrderEnrichShuffledStage = ShuffledStage<EnrichInput, EnrichedOrder, OrderEnrichGate>;

/// The `order-enrich-keyby` stage of this function's environment: the upstream half of
/// [`order_enrich_split`] over the CDC stream, writing to the shuffle stream
/// [`crate::SHUFFLE_STREAM_ENV`].
pub async fn order_enrich_keyby() -> Result<OrderEnrichKeyByStage, StageSetupError> {
    keyby_stage(&order_enrich_split()).await
}

/// The `order-enrich-shuffled` stage of this function's environment: the downstream half of
/// [`order_enrich_split`] over the shuffle stream, its enriched orders to the output stream and
/// S3 through the blue/green gate (`enriched_orders_sink`).
pub async fn order_enrich_shuffled() -> Result<OrderEnrichShuffledStage, StageSetupError> {
    let env = StageEnv::load().await?;
    let sink = enriched_orders_sink(&env.sdk)?;
    shuffled_stage(&env, order_enrich_split().downstream, sink)
}
