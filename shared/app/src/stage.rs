//! A stage declared in code ([`StageDef`]): its source, pipeline, sinks and dead-letter
//! destination; as a Lambda stage, on the embedded runner, and as a description.

use std::path::{Path, PathBuf};

use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use shardflow_connectors::{
    DeadLetterDestination, S3DeadLetterSink, S3DeadLetterSinkConfig, SqsDeadLetterSink, SqsDeadLetterSinkConfig,
    DLQ_BUCKET_ENV, DLQ_URL_ENV,
};
use shardflow_engine::Pipeline;
use shardflow_lambda::{
    PartitionKeying, StageEnv, INPUT_STREAM_ENV, MAX_ATTEMPTS_ENV, PARALLELIZATION_FACTOR_ENV, SPILL_BUCKET_ENV,
    STAGE_ENV, STATE_TABLE_ENV,
};
use shardflow_local::{LocalRunner, RunSummary};

use crate::description::{AppDescription, EnvVar, SourceDescription, StageDescription, StageRole, StateNeeds};
use crate::error::AppError;
use crate::sink::{AppSinks, Sink, SinkSetup};
use crate::source::{Source, SourceDecoder};
use crate::vars::{ProcessEnv, Vars};

/// Where a stage's dead letters (undecodable, too late, poison records) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadLetters {
    /// An SQS queue (`SHARDFLOW_DLQ_URL`).
    #[default]
    Queue,
    /// An S3 bucket (`SHARDFLOW_DLQ_BUCKET`).
    Bucket,
}

impl DeadLetters {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            DeadLetters::Queue => "sqs",
            DeadLetters::Bucket => "s3",
        }
    }
}

/// The Lambda stage of a [`StageDef`].
pub type AppStage<In, Out> = shardflow_lambda::Stage<In, Out, SourceDecoder<In>, AppSinks<Out>, DeadLetterDestination>;

/// One stage of an application: a Lambda function reading one stream.
pub struct StageDef<In, Out> {
    name: String,
    function: Option<String>,
    source: Option<Source<In>>,
    pipeline: Option<Pipeline<In, Out>>,
    sinks: Vec<Sink<Out>>,
    dead_letters: DeadLetters,
    keying: PartitionKeying,
    spill: bool,
    role: StageRole,
}

impl<In, Out> StageDef<In, Out> {
    /// A stage named `name` (`[a-z][a-z0-9-]*`), with nothing yet: give it a source, a pipeline
    /// and sinks. Dead letters go to a queue; large state spills to S3.
    pub fn new(name: impl Into<String>) -> Self {
        StageDef {
            name: name.into(),
            function: None,
            source: None,
            pipeline: None,
            sinks: Vec::new(),
            dead_letters: DeadLetters::Queue,
            keying: PartitionKeying::Undeclared,
            spill: true,
            role: StageRole::Whole,
        }
    }

    /// Reads `source`.
    pub fn source(mut self, source: Source<In>) -> Self {
        self.source = Some(source);
        self
    }

    /// Runs `pipeline`.
    pub fn pipeline(mut self, pipeline: Pipeline<In, Out>) -> Self {
        self.pipeline = Some(pipeline);
        self
    }

    /// Writes every result to `sink` too (after the sinks declared before it).
    pub fn sink(mut self, sink: Sink<Out>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Sends dead letters to `dead_letters`.
    pub fn dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = dead_letters;
        self
    }

    /// How the pipeline's keys relate to the stream's partition keys (see
    /// [`shardflow_lambda::PartitionKeying`]; needed for a split of the input stream).
    pub fn keying(mut self, keying: PartitionKeying) -> Self {
        self.keying = keying;
        self
    }

    /// The function crate running the stage (default `<app>-<stage>`).
    pub fn function(mut self, crate_name: impl Into<String>) -> Self {
        self.function = Some(crate_name.into());
        self
    }

    /// Whether key groups too large for a DynamoDB item spill to the state bucket (default yes).
    pub fn spill(mut self, spill: bool) -> Self {
        self.spill = spill;
        self
    }

    /// Declares the stage's place in a split pipeline ([`StageRole`]; default
    /// [`StageRole::Whole`]) for its description and `shardflow synth`. A split stage's function
    /// runs with `shardflow_lambda::shuffle` (`UpstreamStage`, `DownstreamStage`, `StreamJoin`),
    /// not [`crate::run_stage`], which refuses it; a join across streams is declared whole with
    /// [`crate::JoinDef`] instead, whose stages `run_stage` does run.
    pub fn role(mut self, role: StageRole) -> Self {
        self.role = role;
        self
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<In: Send + 'static, Out: Send + 'static> StageDef<In, Out> {
    /// The stage's description in application `app`.
    pub fn description(&self, app: &str) -> StageDescription {
        StageDescription {
            name: self.name.clone(),
            function: self.function.clone().unwrap_or_else(|| format!("{app}-{}", self.name)),
            pipeline: self.pipeline.as_ref().map(|p| p.name().to_owned()),
            source: self.source.as_ref().map(|s| SourceDescription {
                stream: s.stream().to_owned(),
                format: s.format().to_owned(),
            }),
            sinks: self.sinks.iter().map(Sink::description).collect(),
            dead_letters: self.dead_letters.kind().to_owned(),
            state: StateNeeds {
                operators: self
                    .pipeline
                    .as_ref()
                    .map(|p| p.stateful_operators().iter().map(|o| o.id().to_owned()).collect())
                    .unwrap_or_default(),
                spill: self.spill,
            },
            env: self.stage_env(),
            role: self.role.clone(),
        }
    }

    /// The stage's own variables (its sinks' are in their descriptions).
    fn stage_env(&self) -> Vec<EnvVar> {
        stage_vars(self.spill, self.dead_letters)
    }

    /// Refuses the stage alone when its description does not validate.
    fn validate(&self) -> Result<(&Source<In>, &Pipeline<In, Out>), AppError> {
        if self.role != StageRole::Whole {
            return Err(AppError::setup(
                &self.name,
                "its role",
                "a split stage (upstream or downstream of a shuffle) runs with shardflow_lambda::shuffle \
                 (UpstreamStage, DownstreamStage, StreamJoin), not as a whole stage; declare a join across \
                 streams with JoinDef",
            ));
        }
        let app = AppDescription {
            app: "app".to_owned(),
            stages: vec![self.description("app")],
        };
        app.validate()?;
        match (&self.source, &self.pipeline) {
            (Some(source), Some(pipeline)) => Ok((source, pipeline)),
            // validate() refuses a stage without either.
            _ => Err(AppError::setup(&self.name, "validating", "no source or pipeline")),
        }
    }
}

impl<In, Out> StageDef<In, Out>
where
    In: Clone + Send + Sync + 'static,
    Out: Serialize + Send + Sync + 'static,
{
    /// The stage as a Lambda stage, its deployment and sinks read from `vars` (the variables of
    /// [`StageDef::description`] and its sinks') and the AWS SDK's own configuration (region,
    /// credentials, `AWS_ENDPOINT_URL`) from the process environment. Refuses a stage that does
    /// not validate, and names a missing variable.
    pub async fn lambda_stage(&self, vars: &dyn Vars) -> Result<AppStage<In, Out>, AppError> {
        let (source, pipeline) = self.validate()?;
        let env = stage_env(&self.name, vars, self.spill).await?;
        let sinks = build_sinks(&self.name, &self.sinks, vars, &env.sdk).await?;
        let dead_letters = dead_letter_destination(&self.name, self.dead_letters, vars, &env.sdk)?;
        env.stage(
            pipeline.clone(),
            source.decoder(),
            sinks,
            dead_letters,
            self.keying.clone(),
        )
        .map_err(|e| AppError::setup(&self.name, "setting up the stage", e))
    }

    /// Runs the stage's pipeline on the embedded runner over local files in its source's format
    /// (one partition per file), results to `<out_dir>/<pipeline sink>.jsonl` and dead letters
    /// and late records beside them; arrival time = event time.
    pub async fn run_local(&self, inputs: &[PathBuf], out_dir: &Path) -> Result<RunSummary, AppError> {
        let (source, pipeline) = self.validate()?;
        let local = |source| AppError::Local {
            stage: self.name.clone(),
            source,
        };
        let mut input = source
            .open_local(inputs)
            .map_err(|e| local(shardflow_local::RunnerError::Input(e)))?;
        LocalRunner::new(out_dir)
            .job(pipeline.clone())
            .run(input.as_mut())
            .await
            .map_err(local)
    }
}

/// The variables every stage reads (its sinks' are in their descriptions): with `spill`, the
/// spill bucket; the dead-letter destination's of `dead_letters`.
pub(crate) fn stage_vars(spill: bool, dead_letters: DeadLetters) -> Vec<EnvVar> {
    let var = |name: &str, required: bool, meaning: &str| EnvVar {
        name: name.to_owned(),
        required,
        meaning: meaning.to_owned(),
    };
    let mut env = vec![
        var(STAGE_ENV, true, "the stage's name: its state's key in the state table"),
        var(STATE_TABLE_ENV, true, "the state table"),
        var(INPUT_STREAM_ENV, false, "the input stream's ARN, read after a reshard"),
        var(
            MAX_ATTEMPTS_ENV,
            false,
            "attempts of a failing record before it is dead-lettered",
        ),
        var(
            PARALLELIZATION_FACTOR_ENV,
            false,
            "the event source mapping's factor (1)",
        ),
    ];
    if spill {
        env.push(var(SPILL_BUCKET_ENV, false, "the bucket large key groups spill to"));
    }
    env.push(match dead_letters {
        DeadLetters::Queue => var(DLQ_URL_ENV, true, "the dead-letter queue's URL"),
        DeadLetters::Bucket => var(DLQ_BUCKET_ENV, true, "the dead-letter bucket"),
    });
    env
}

/// The deployment of stage `name` read from `vars` (the variables of [`stage_vars`]) and the AWS
/// SDK's own configuration (region, credentials, `AWS_ENDPOINT_URL`) from the process
/// environment; the spill bucket only with `spill`.
pub(crate) async fn stage_env(name: &str, vars: &dyn Vars, spill: bool) -> Result<StageEnv, AppError> {
    let max_attempts = match vars.get(MAX_ATTEMPTS_ENV) {
        None => 3,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| AppError::setup(name, MAX_ATTEMPTS_ENV, format!("{v:?} is not a whole number >= 1")))?,
    };
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Ok(StageEnv {
        stage: vars.get(STAGE_ENV).unwrap_or_else(|| name.to_owned()),
        state_table: vars.require(name, STATE_TABLE_ENV, "the state table")?,
        spill_bucket: vars.get(SPILL_BUCKET_ENV).filter(|_| spill),
        input_stream: vars.get(INPUT_STREAM_ENV),
        max_attempts,
        sdk,
    })
}

/// `sinks` of stage `name`, built from `vars`, as one sink fed in declaration order.
pub(crate) async fn build_sinks<Out: Send + Sync + 'static>(
    name: &str,
    sinks: &[Sink<Out>],
    vars: &dyn Vars,
    sdk: &aws_config::SdkConfig,
) -> Result<AppSinks<Out>, AppError> {
    let mut built = Vec::with_capacity(sinks.len());
    for sink in sinks {
        let setup = SinkSetup {
            stage: name,
            sink: sink.name(),
            vars,
            sdk,
        };
        built.push(sink.build(&setup).await?);
    }
    Ok(AppSinks::new(built))
}

/// The dead-letter destination `dead_letters` of stage `name`, its address read from `vars`.
pub(crate) fn dead_letter_destination(
    name: &str,
    dead_letters: DeadLetters,
    vars: &dyn Vars,
    sdk: &aws_config::SdkConfig,
) -> Result<DeadLetterDestination, AppError> {
    Ok(match dead_letters {
        DeadLetters::Queue => {
            let url = vars.require(name, DLQ_URL_ENV, "the dead-letter queue's URL")?;
            DeadLetterDestination::Sqs(SqsDeadLetterSink::new(
                aws_sdk_sqs::Client::new(sdk),
                SqsDeadLetterSinkConfig::new(url),
            ))
        }
        DeadLetters::Bucket => {
            let bucket = vars.require(name, DLQ_BUCKET_ENV, "the dead-letter bucket")?;
            DeadLetterDestination::S3(S3DeadLetterSink::new(
                aws_sdk_s3::Client::new(sdk),
                S3DeadLetterSinkConfig::new(bucket),
            ))
        }
    })
}

/// A stage of any input and output type, as an [`crate::App`] holds it.
pub(crate) trait ErasedStage: Send + Sync {
    fn name(&self) -> &str;
    fn description(&self, app: &str) -> StageDescription;
    fn run_lambda(&self) -> LocalBoxFuture<'_, Result<(), lambda_runtime::Error>>;
    fn run_local<'a>(
        &'a self,
        inputs: &'a [PathBuf],
        out_dir: &'a Path,
    ) -> LocalBoxFuture<'a, Result<RunSummary, AppError>>;
}

impl<In, Out> ErasedStage for StageDef<In, Out>
where
    In: Clone + Send + Sync + 'static,
    Out: Serialize + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self, app: &str) -> StageDescription {
        StageDef::description(self, app)
    }

    fn run_lambda(&self) -> LocalBoxFuture<'_, Result<(), lambda_runtime::Error>> {
        Box::pin(async move {
            match self.lambda_stage(&ProcessEnv).await {
                // Boxed: the stage's future is deep enough to exceed the layout query depth inline.
                Ok(stage) => Box::pin(shardflow_lambda::run(stage)).await,
                Err(e) => Err(lambda_runtime::Error::from(e.to_string())),
            }
        })
    }

    fn run_local<'a>(
        &'a self,
        inputs: &'a [PathBuf],
        out_dir: &'a Path,
    ) -> LocalBoxFuture<'a, Result<RunSummary, AppError>> {
        Box::pin(StageDef::run_local(self, inputs, out_dir))
    }
}
