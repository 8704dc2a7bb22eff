//! What the stages of the shop's split pipelines share: the upstream stage of a split pipeline
//! over the CDC stream, and the downstream stage of one over its shuffle stream, configured from
//! the function's environment.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use shardflow_connectors::DeadLetterDestination;
use shardflow_engine::ShuffleOutput;
use shardflow_lambda::shuffle::{DownstreamStage, NoDecoder, NoSink, UpstreamStage};
use shardflow_lambda::{PartitionKeying, Stage, StageEnv};
use shardflow_schemas::ChangeEvent;
use shardflow_shuffle::Source;
use shardflow_stage::{optional_var, required_var, stream_name, ResultSink};
use tracing::info;

use crate::{ShopDecoder, StageSetupError};

pub use shardflow_lambda::shuffle::{IDLENESS_MS_ENV, SHUFFLE_STREAM_ENV};
/// The upstream stage's name (required by every `*_shuffled` stage).
pub const UPSTREAM_STAGE_ENV: &str = "SHARDFLOW_UPSTREAM_STAGE";
/// The upstream stage's input stream, the CDC stream (name or ARN, compared by name with what
/// the upstream sends; required by every `*_shuffled` stage).
pub const UPSTREAM_INPUT_STREAM_ENV: &str = "SHARDFLOW_UPSTREAM_INPUT_STREAM";

/// The upstream stage of a split shop pipeline as deployed: the CDC stream in, the shuffle stream
/// out.
pub type KeyByStage<S> = UpstreamStage<ChangeEvent, S, ShopDecoder, DeadLetterDestination>;

/// The downstream stage of a split shop pipeline as deployed, with result sink `Sk`.
pub type ShuffledStage<S, Out, Sk> = DownstreamStage<S, Out, Sk, DeadLetterDestination>;

/// The upstream half of `split` over the CDC stream of this function's environment, writing to
/// the shuffle stream [`SHUFFLE_STREAM_ENV`] (combined per key and window where `split` lifts its
/// aggregation), undecodable changes to the dead-letter destination.
pub(crate) async fn keyby_stage<S, Out>(
    split: &shardflow_engine::SplitPipeline<ChangeEvent, S, Out>,
) -> Result<KeyByStage<S>, StageSetupError>
where
    S: Serialize + Send + Sync + 'static,
    Out: Send + 'static,
{
    let env = StageEnv::load().await?;
    let shuffle_stream = required_var(SHUFFLE_STREAM_ENV)?;
    let dead_letters = DeadLetterDestination::from_env(&env.sdk)?;
    let stage: Stage<ChangeEvent, ShuffleOutput<S>, ShopDecoder, NoSink, DeadLetterDestination> = env.stage(
        split.upstream.clone(),
        ShopDecoder::new(),
        NoSink,
        dead_letters,
        PartitionKeying::Undeclared,
    )?;
    info!(
        stage = %env.stage,
        pipeline = %split.whole.name(),
        shuffle_stream = %shuffle_stream,
        lifted = split.is_lifted(),
        "upstream stage ready"
    );
    let kinesis = aws_sdk_kinesis::Client::new(&env.sdk);
    let lifting = split.clone();
    Ok(UpstreamStage::new(stage, kinesis, &shuffle_stream).with_combiner(Arc::new(move || lifting.batch_combiner())))
}

/// The downstream half `downstream` over the shuffle stream of the environment `env` (its
/// `SHARDFLOW_INPUT_STREAM`, whose lineage assigns each shard its key groups), results to
/// `sink`; its upstream is [`UPSTREAM_STAGE_ENV`] over [`UPSTREAM_INPUT_STREAM_ENV`], silent
/// upstream shards released after [`IDLENESS_MS_ENV`].
pub(crate) fn shuffled_stage<S, Out, Sk>(
    env: &StageEnv,
    downstream: shardflow_engine::Pipeline<S, Out>,
    sink: Sk,
) -> Result<ShuffledStage<S, Out, Sk>, StageSetupError>
where
    S: DeserializeOwned + Send + 'static,
    Out: Send + 'static,
    Sk: ResultSink<Out>,
{
    // the upstream names its input stream in what it sends as its batches do: by name
    let source = Source::new(
        required_var(UPSTREAM_STAGE_ENV)?,
        stream_name(&required_var(UPSTREAM_INPUT_STREAM_ENV)?),
    );
    let idleness = shardflow_lambda::shuffle::idleness_ms(optional_var(IDLENESS_MS_ENV))?;
    let dead_letters = DeadLetterDestination::from_env(&env.sdk)?;
    let stage = env.stage(downstream, NoDecoder, sink, dead_letters, PartitionKeying::Undeclared)?;
    info!(stage = %env.stage, ?idleness, "downstream stage ready");
    Ok(DownstreamStage::new(stage, [source], idleness))
}
