//! The `revenue` pipeline over the shuffle ([`shardflow_shop::pipelines::revenue_split`]): two
//! stages, so that revenue per product is exact on any number of CDC shards.
//!
//! - [`revenue_keyby()`], the upstream stage: decodes the CDC stream ([`crate::ShopDecoder`]),
//!   keys the inserted order lines by (product, currency) and writes them (combined per key and
//!   window where the pipeline lifts its aggregation) to the shuffle stream
//!   ([`SHUFFLE_STREAM_ENV`]). Its `SHARDFLOW_INPUT_STREAM` is the CDC stream.
//! - [`revenue_shuffled()`], the downstream stage: reads the shuffle stream (its
//!   `SHARDFLOW_INPUT_STREAM`, whose lineage assigns each shard its key groups), windows and
//!   upserts each window's latest pane into the revenue table ([`crate::RevenueTableRow`], the
//!   blue/green gate [`crate::RevenueGate`]). It names its upstream ([`UPSTREAM_STAGE_ENV`], [`UPSTREAM_INPUT_STREAM_ENV`]) and
//!   the idleness timeout of silent upstream shards ([`IDLENESS_MS_ENV`]).

use std::sync::Arc;

use shardflow_connectors::DeadLetterDestination;
use shardflow_engine::time::DurationMs;
use shardflow_engine::ShuffleOutput;
use shardflow_lambda::shuffle::{DownstreamStage, NoDecoder, NoSink, UpstreamStage};
use shardflow_lambda::{PartitionKeying, Stage, StageEnv};
use shardflow_schemas::ChangeEvent;
use shardflow_shop::pipelines::{revenue_split, KeyedSale, RevenueRow};
use shardflow_shuffle::Source;
use shardflow_stage::{optional_var, required_var, stream_name, EnvError};
use tracing::info;

use crate::revenue::{revenue_sink, RevenueGate};
use crate::{ShopDecoder, StageSetupError};

/// The shuffle stream the upstream stage writes (name or ARN; required by [`revenue_keyby()`]).
pub const SHUFFLE_STREAM_ENV: &str = "SHARDFLOW_SHUFFLE_STREAM";
/// The upstream stage's name (required by [`revenue_shuffled()`]).
pub const UPSTREAM_STAGE_ENV: &str = "SHARDFLOW_UPSTREAM_STAGE";
/// The upstream stage's input stream, the CDC stream (name or ARN, compared by name with what
/// the upstream sends; required by [`revenue_shuffled()`]).
pub const UPSTREAM_INPUT_STREAM_ENV: &str = "SHARDFLOW_UPSTREAM_INPUT_STREAM";
/// Milliseconds of processing time after which a silent upstream shard stops holding the
/// downstream watermark back (optional: without it, never).
pub const IDLENESS_MS_ENV: &str = "SHARDFLOW_IDLENESS_MS";

/// The upstream stage of the split revenue pipeline as deployed.
pub type RevenueKeyByStage = UpstreamStage<ChangeEvent, KeyedSale, ShopDecoder, DeadLetterDestination>;

/// The downstream stage of the split revenue pipeline as deployed.
pub type RevenueShuffledStage = DownstreamStage<KeyedSale, RevenueRow, RevenueGate, DeadLetterDestination>;

/// The `revenue-keyby` stage of this function's environment: the upstream half of
/// [`revenue_split`] over the CDC stream, writing to the shuffle stream [`SHUFFLE_STREAM_ENV`].
pub async fn revenue_keyby() -> Result<RevenueKeyByStage, StageSetupError> {
    let env = StageEnv::load().await?;
    let shuffle_stream = required_var(SHUFFLE_STREAM_ENV)?;
    let split = revenue_split();
    let dead_letters = DeadLetterDestination::from_env(&env.sdk)?;
    let stage: Stage<ChangeEvent, ShuffleOutput<KeyedSale>, ShopDecoder, NoSink, DeadLetterDestination> = env.stage(
        split.upstream.clone(),
        ShopDecoder::new(),
        NoSink,
        dead_letters,
        PartitionKeying::Undeclared,
    )?;
    info!(
        stage = %env.stage,
        shuffle_stream = %shuffle_stream,
        lifted = split.batch_combiner().is_some(),
        "revenue upstream stage ready"
    );
    let kinesis = aws_sdk_kinesis::Client::new(&env.sdk);
    let lifting = split.clone();
    Ok(UpstreamStage::new(stage, kinesis, &shuffle_stream).with_combiner(Arc::new(move || lifting.batch_combiner())))
}

/// The `revenue-shuffled` stage of this function's environment: the downstream half of
/// [`revenue_split`] over the shuffle stream, upserting each window's latest pane into the
/// revenue table in Postgres (created if missing).
pub async fn revenue_shuffled() -> Result<RevenueShuffledStage, StageSetupError> {
    let env = StageEnv::load().await?;
    // the upstream names its input stream in what it sends as its batches do: by name
    let source = Source::new(
        required_var(UPSTREAM_STAGE_ENV)?,
        stream_name(&required_var(UPSTREAM_INPUT_STREAM_ENV)?),
    );
    let idleness = idleness_ms()?;
    let sink = revenue_sink(&env.sdk).await?;
    let dead_letters = DeadLetterDestination::from_env(&env.sdk)?;
    let stage = env.stage(
        revenue_split().downstream,
        NoDecoder,
        sink,
        dead_letters,
        PartitionKeying::Undeclared,
    )?;
    info!(stage = %env.stage, ?idleness, "revenue downstream stage ready");
    Ok(DownstreamStage::new(stage, [source], idleness))
}

/// [`IDLENESS_MS_ENV`]: a whole number of milliseconds > 0, or unset.
fn idleness_ms() -> Result<Option<DurationMs>, EnvError> {
    optional_var(IDLENESS_MS_ENV)
        .map(|v| {
            v.parse::<DurationMs>()
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or(EnvError::Invalid {
                    name: IDLENESS_MS_ENV,
                    value: v,
                    reason: "a whole number of milliseconds > 0",
                })
        })
        .transpose()
}
