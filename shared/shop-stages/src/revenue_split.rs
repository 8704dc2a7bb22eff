//! The `revenue` pipeline over the shuffle ([`shardflow_shop::pipelines::revenue_split`]): two
//! stages, so that revenue per product is exact on any number of CDC shards.
//!
//! - [`revenue_keyby()`], the upstream stage: decodes the CDC stream ([`crate::ShopDecoder`]),
//!   keys the inserted order lines by (product, currency) and writes them (combined per key and
//!   window where the pipeline lifts its aggregation) to the shuffle stream
//!   ([`crate::SHUFFLE_STREAM_ENV`]). Its `SHARDFLOW_INPUT_STREAM` is the CDC stream.
//! - [`revenue_shuffled()`], the downstream stage: reads the shuffle stream (its
//!   `SHARDFLOW_INPUT_STREAM`, whose lineage assigns each shard its key groups), windows and
//!   upserts each window's latest pane into the revenue table ([`crate::RevenueTableRow`], the
//!   blue/green gate [`crate::RevenueGate`]). It names its upstream ([`crate::UPSTREAM_STAGE_ENV`],
//!   [`crate::UPSTREAM_INPUT_STREAM_ENV`]) and the idleness timeout of silent upstream shards
//!   ([`crate::IDLENESS_MS_ENV`]).

use shardflow_lambda::StageEnv;
use shardflow_shop::pipelines::{revenue_split, KeyedSale, RevenueRow};

use crate::revenue::{revenue_sink, RevenueGate};
use crate::split::{keyby_stage, shuffled_stage, KeyByStage, ShuffledStage};
use crate::StageSetupError;

/// The upstream stage of the split revenue pipeline as deployed.
pub type RevenueKeyByStage = KeyByStage<KeyedSale>;

/// The downstream stage of the split revenue pipeline as deployed.
pub type RevenueShuffledStage = ShuffledStage<KeyedSale, RevenueRow, RevenueGate>;

/// The `revenue-keyby` stage of this function's environment: the upstream half of
/// [`revenue_split`] over the CDC stream, writing to the shuffle stream
/// [`crate::SHUFFLE_STREAM_ENV`].
pub async fn revenue_keyby() -> Result<RevenueKeyByStage, StageSetupError> {
    keyby_stage(&revenue_split()).await
}

/// The `revenue-shuffled` stage of this function's environment: the downstream half of
/// [`revenue_split`] over the shuffle stream, upserting each window's latest pane into the
/// revenue table in Postgres (created if missing).
pub async fn revenue_shuffled() -> Result<RevenueShuffledStage, StageSetupError> {
    let env = StageEnv::load().await?;
    let sink = revenue_sink(&env.sdk).await?;
    shuffled_stage(&env, revenue_split().downstream, sink)
}
