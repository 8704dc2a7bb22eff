//! A stage's deployment read from its function's environment: what the infrastructure template
//! sets, so that a function's `main` is the pipeline, its decoder and its sinks and nothing else.
//!
//! | variable | meaning |
//! |---|---|
//! | `SHARDFLOW_STAGE` | the stage's name: its state lives under it (required) |
//! | `SHARDFLOW_STATE_TABLE` | the checkpoint table (required) |
//! | `SHARDFLOW_SPILL_BUCKET` | the bucket for key groups too large for an item (optional) |
//! | `SHARDFLOW_INPUT_STREAM` | the input stream's name or ARN, whose shard lineage the stage reads after a reshard (optional: without it every shard is an original one) |
//! | `SHARDFLOW_MAX_ATTEMPTS` | attempts of a failing record before it is dead-lettered as poison (default 3) |
//! | `SHARDFLOW_PARALLELIZATION_FACTOR` | the event source mapping's factor (only 1 is accepted) |
//! | `SHARDFLOW_CHECKPOINT_INTERVAL_BATCHES`, `SHARDFLOW_CHECKPOINT_INTERVAL_MS`, `SHARDFLOW_CHECKPOINT_INTERVAL_BYTES` | how often a shard commits: every N batches, N ms, or once more than N bytes of state changed, whichever comes first (default every batch) |
//! | `SHARDFLOW_ALLOW_DROPPED_STATE` | `true`: a restore drops checkpointed state of operators the pipeline no longer has instead of refusing (default: refuse; see the crate documentation, "Restores") |

use std::sync::Arc;

use crate::config::{IntervalLimits, PartitionKeying, StageConfig};
use crate::lineage::KinesisLineage;
use crate::stage::{Stage, StageError};
use shardflow_engine::Pipeline;
use shardflow_stage::{optional_var, required_var, DeadLetterSink, EnvError, RecordDecoder, ResultSink};
use shardflow_state_dynamodb::SpillBucket;

/// The stage's name.
pub const STAGE_ENV: &str = "SHARDFLOW_STAGE";
/// The checkpoint table.
pub const STATE_TABLE_ENV: &str = "SHARDFLOW_STATE_TABLE";
/// The spill bucket.
pub const SPILL_BUCKET_ENV: &str = "SHARDFLOW_SPILL_BUCKET";
/// The input stream (name or ARN).
pub const INPUT_STREAM_ENV: &str = "SHARDFLOW_INPUT_STREAM";
/// Attempts before a failing record is poison.
pub const MAX_ATTEMPTS_ENV: &str = "SHARDFLOW_MAX_ATTEMPTS";

/// What the environment says about a stage, and the AWS configuration to reach its services.
#[derive(Debug, Clone)]
pub struct StageEnv {
    /// The stage's name ([`STAGE_ENV`]).
    pub stage: String,
    /// The checkpoint table ([`STATE_TABLE_ENV`]).
    pub state_table: String,
    /// The spill bucket ([`SPILL_BUCKET_ENV`]).
    pub spill_bucket: Option<String>,
    /// The input stream ([`INPUT_STREAM_ENV`]).
    pub input_stream: Option<String>,
    /// Attempts of a failing record ([`MAX_ATTEMPTS_ENV`]).
    pub max_attempts: u32,
    /// The AWS SDK configuration (region, credentials and endpoint from the environment, as every
    /// SDK reads them; `AWS_ENDPOINT_URL` points it at LocalStack).
    pub sdk: aws_config::SdkConfig,
}

impl StageEnv {
    /// Reads the environment (see the module documentation) and the AWS SDK's configuration.
    pub async fn load() -> Result<Self, EnvError> {
        let stage = required_var(STAGE_ENV)?;
        let state_table = required_var(STATE_TABLE_ENV)?;
        let max_attempts = match optional_var(MAX_ATTEMPTS_ENV) {
            None => 3,
            Some(v) => v.parse().ok().filter(|n| *n >= 1).ok_or(EnvError::Invalid {
                name: MAX_ATTEMPTS_ENV,
                value: v,
                reason: "a whole number >= 1",
            })?,
        };
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(StageEnv {
            stage,
            state_table,
            spill_bucket: optional_var(SPILL_BUCKET_ENV),
            input_stream: optional_var(INPUT_STREAM_ENV),
            max_attempts,
            sdk,
        })
    }

    /// The stage of `pipeline` as deployed here: the checkpoint table's client, the spill bucket,
    /// the input stream's lineage, a Kinesis client for interval commits' gap reads, the attempts,
    /// the parallelization factor and the checkpoint interval of the environment.
    /// Fails as [`Stage::new`] does for a configuration the protocol cannot make exact, and when
    /// the checkpoint interval is not well inside the input's retention
    /// ([`crate::INPUT_RETENTION_HOURS_ENV`], [`Stage::check_interval`]).
    pub fn stage<In, Out, D, S, L>(
        &self,
        pipeline: Pipeline<In, Out>,
        decoder: D,
        sink: S,
        dead_letters: L,
        keying: PartitionKeying,
    ) -> Result<Stage<In, Out, D, S, L>, StageError>
    where
        In: Send + 'static,
        Out: Send + 'static,
        D: RecordDecoder<In>,
        S: ResultSink<Out>,
        L: DeadLetterSink,
    {
        let client = aws_sdk_dynamodb::Client::new(&self.sdk);
        let mut stage = Stage::new(
            &self.stage,
            pipeline,
            decoder,
            sink,
            dead_letters,
            client,
            &self.state_table,
            StageConfig::from_env(keying),
        )?
        .check_interval(&IntervalLimits::from_env().map_err(StageError::Unsupported)?)?
        .max_attempts(self.max_attempts)
        // Under interval commits a container reads the records another one handled after the
        // checkpoint from Kinesis (the stream's name comes with each batch).
        .with_kinesis(aws_sdk_kinesis::Client::new(&self.sdk));
        if let Some(bucket) = &self.spill_bucket {
            stage = stage.with_spill_bucket(SpillBucket::new(aws_sdk_s3::Client::new(&self.sdk), bucket));
        }
        if let Some(stream) = &self.input_stream {
            let lineage = KinesisLineage::new(aws_sdk_kinesis::Client::new(&self.sdk), stream);
            stage = stage.with_lineage(Arc::new(lineage));
        }
        Ok(stage)
    }
}

/// Why a stage could not be set up (the function then fails its init, which Lambda reports).
#[derive(Debug, thiserror::Error)]
pub enum StageSetupError {
    /// The environment lacks a variable or holds an invalid one.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The stage refused its configuration.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// A resource the stage needs at start could not be reached or prepared.
    #[error("{what}: {message}")]
    Resource {
        /// What was being prepared.
        what: &'static str,
        /// The error.
        message: String,
    },
}
