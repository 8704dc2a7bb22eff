//! A join across input streams declared in code ([`JoinDef`]): one tagging upstream stage per
//! input stream, one shuffle stream, one N-way window-join stage — as Lambda stages, on the
//! embedded runner, and as descriptions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shardflow_connectors::DeadLetterDestination;
use shardflow_engine::SplitPipeline;
use shardflow_lambda::shuffle::{
    idleness_ms, run_downstream, run_upstream, DownstreamStage, NoDecoder, NoSink, StreamJoin, TaggingUpstream,
    IDLENESS_MS_ENV, JOIN_INPUTS_ENV, SHUFFLE_STREAM_ENV,
};
use shardflow_lambda::PartitionKeying;
use shardflow_local::{Input, InputError, Item, LocalRunner, RunSummary};
use shardflow_stage::Tagged;

use crate::description::{SourceDescription, StageDescription, StageRole, StateNeeds, SHUFFLE_FORMAT};
use crate::error::AppError;
use crate::sink::{AppSinks, Sink};
use crate::source::{Source, SourceDecoder};
use crate::stage::{build_sinks, dead_letter_destination, stage_env, stage_vars, DeadLetters, ErasedStage};
use crate::vars::{ProcessEnv, Vars};

/// The tagging upstream stage of one input of a [`JoinDef`].
pub type JoinInputStage<T> = TaggingUpstream<T, SourceDecoder<T>, DeadLetterDestination>;

/// The join stage of a [`JoinDef`].
pub type JoinStage<T, Out> = DownstreamStage<Tagged<T>, Out, AppSinks<Out>, DeadLetterDestination>;

/// A window join of several input streams (one per table, Debezium's topic-per-table layout),
/// deployed as one upstream stage per input — stage `<join>-<input>`, which decodes its stream,
/// tags each value with the input's side and writes it to the shuffle stream `<join>-shuffle`
/// keyed by the pipeline's key — and the join stage `<join>`, which reads the shuffle stream and
/// runs the windows and the join, writing its results to its sinks. Input `i` (in declaration
/// order) is side `i` of the pipeline's `join(n, |t| t.side as usize, ..)`.
///
/// ```
/// use shardflow_app::{App, JoinDef, Sink, Source};
/// use shardflow_engine::{Pipeline, Trigger, Windowing};
/// use shardflow_stage::Tagged;
/// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct Row { customer: u32, ts_ms: i64 }
/// let split = Pipeline::builder("activity")
///     .event_time(|t: &Tagged<Row>| t.value.ts_ms)
///     .key_by(|t| t.value.customer)
///     .shuffle()
///     .unwrap()
///     .window(Windowing::tumbling(10_000).unwrap())
///     .trigger(Trigger::at_watermark())
///     .join(2, |t| usize::from(t.side), |customer, window, lists| {
///         vec![(*customer, window.start, lists[0].len(), lists[1].len())]
///     })
///     .sink("activity");
/// let join = JoinDef::new("activity")
///     .input("orders", Source::json("orders-changes"))
///     .input("payments", Source::json("payments-changes"))
///     .pipeline(split)
///     .sink(Sink::s3("rows", "activity"));
/// let app = App::new("shop").join(join);
/// let stages: Vec<String> = app.describe().unwrap().stages.into_iter().map(|s| s.name).collect();
/// assert_eq!(stages, ["activity-orders", "activity-payments", "activity"]);
/// ```
pub struct JoinDef<T, Out> {
    name: String,
    function: Option<String>,
    inputs: Vec<(String, Source<T>)>,
    split: Option<SplitPipeline<Tagged<T>, Tagged<T>, Out>>,
    sinks: Vec<Sink<Out>>,
    dead_letters: DeadLetters,
}

impl<T, Out> JoinDef<T, Out> {
    /// The join named `name` (`[a-z][a-z0-9-]*`, the join stage's name and its input stages'
    /// prefix), with nothing yet: give it inputs, a split pipeline and sinks.
    pub fn new(name: impl Into<String>) -> Self {
        JoinDef {
            name: name.into(),
            function: None,
            inputs: Vec::new(),
            split: None,
            sinks: Vec::new(),
            dead_letters: DeadLetters::Queue,
        }
    }

    /// Adds input `name` (the next side), read from `source` by stage `<join>-<name>`.
    pub fn input(mut self, name: impl Into<String>, source: Source<T>) -> Self {
        self.inputs.push((name.into(), source));
        self
    }

    /// Runs `split`: a pipeline over tagged values cut by `.shuffle()` after its key, whose join
    /// has one side per input.
    pub fn pipeline(mut self, split: SplitPipeline<Tagged<T>, Tagged<T>, Out>) -> Self {
        self.split = Some(split);
        self
    }

    /// Writes every result of the join stage to `sink` too.
    pub fn sink(mut self, sink: Sink<Out>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Sends every stage's dead letters to `dead_letters` (default a queue).
    pub fn dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = dead_letters;
        self
    }

    /// The function crate running every stage of the join (default `<app>-<join>`); each stage
    /// finds its part by its name (`SHARDFLOW_STAGE`).
    pub fn function(mut self, crate_name: impl Into<String>) -> Self {
        self.function = Some(crate_name.into());
        self
    }

    /// The join stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The inputs' names, side by side.
    pub fn inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|(name, _)| name.as_str())
    }

    /// The name of the upstream stage reading input `input`: `<join>-<input>`.
    pub fn input_stage(&self, input: &str) -> String {
        format!("{}-{input}", self.name)
    }

    /// The shuffle stream's logical name: `<join>-shuffle`.
    pub fn shuffle_stream(&self) -> String {
        format!("{}-shuffle", self.name)
    }

    fn split(&self, stage: &str) -> Result<&SplitPipeline<Tagged<T>, Tagged<T>, Out>, AppError> {
        self.split
            .as_ref()
            .ok_or_else(|| AppError::setup(stage, "its pipeline", "the join has no pipeline: add `.pipeline(..)`"))
    }

    fn function_name(&self, app: &str) -> String {
        self.function.clone().unwrap_or_else(|| format!("{app}-{}", self.name))
    }

    /// The description of the upstream stage of input `side`.
    fn input_description(&self, app: &str, side: usize) -> StageDescription
    where
        Out: Send + 'static,
        T: Send + 'static,
    {
        let (input, source) = &self.inputs[side];
        StageDescription {
            name: self.input_stage(input),
            function: self.function_name(app),
            pipeline: self.split.as_ref().map(|s| s.whole.name().to_owned()),
            source: Some(SourceDescription {
                stream: source.stream().to_owned(),
                format: source.format().to_owned(),
            }),
            sinks: Vec::new(),
            dead_letters: self.dead_letters.kind().to_owned(),
            // the upstream half holds no keyed state
            state: StateNeeds {
                operators: Vec::new(),
                spill: false,
            },
            env: stage_vars(false, self.dead_letters),
            role: StageRole::Upstream {
                shuffle: self.shuffle_stream(),
            },
        }
    }

    /// The description of the join stage.
    fn join_description(&self, app: &str) -> StageDescription
    where
        Out: Send + 'static,
        T: Send + 'static,
    {
        StageDescription {
            name: self.name.clone(),
            function: self.function_name(app),
            pipeline: self.split.as_ref().map(|s| s.whole.name().to_owned()),
            source: Some(SourceDescription {
                stream: self.shuffle_stream(),
                format: SHUFFLE_FORMAT.to_owned(),
            }),
            sinks: self.sinks.iter().map(Sink::description).collect(),
            dead_letters: self.dead_letters.kind().to_owned(),
            state: StateNeeds {
                operators: self
                    .split
                    .as_ref()
                    .map(|s| {
                        s.downstream
                            .stateful_operators()
                            .iter()
                            .map(|o| o.id().to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
                spill: true,
            },
            env: stage_vars(true, self.dead_letters),
            role: StageRole::Downstream {
                upstreams: self.inputs.iter().map(|(input, _)| self.input_stage(input)).collect(),
            },
        }
    }

    /// The join's inputs as deployed ([`JOIN_INPUTS_ENV`], which `shardflow synth` sets), checked
    /// against the declared ones.
    fn stream_join(&self, stage: &str, vars: &dyn Vars) -> Result<StreamJoin, AppError> {
        let spec = vars.require(stage, JOIN_INPUTS_ENV, "the join's input stages and streams")?;
        let join = StreamJoin::parse(&spec).map_err(|e| AppError::setup(stage, JOIN_INPUTS_ENV, e))?;
        let declared: Vec<String> = self.inputs.iter().map(|(i, _)| self.input_stage(i)).collect();
        let deployed: Vec<&str> = join.inputs().iter().map(|i| i.stage.as_str()).collect();
        if deployed != declared {
            return Err(AppError::setup(
                stage,
                JOIN_INPUTS_ENV,
                format!(
                    "names the input stages {deployed:?}, the join declares {declared:?}: synthesize the template again"
                ),
            ));
        }
        Ok(join)
    }
}

impl<T, Out> JoinDef<T, Out>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    Out: Serialize + Send + Sync + 'static,
{
    /// The upstream stage of input `side` as deployed: its deployment read from `vars` (the
    /// description's variables, [`JOIN_INPUTS_ENV`] and [`SHUFFLE_STREAM_ENV`]).
    pub async fn lambda_input_stage(&self, side: usize, vars: &dyn Vars) -> Result<JoinInputStage<T>, AppError> {
        let (input, source) = self
            .inputs
            .get(side)
            .ok_or_else(|| AppError::setup(&self.name, "an input stage", format!("the join has no side {side}")))?;
        let name = self.input_stage(input);
        let split = self.split(&name)?;
        let join = self.stream_join(&name, vars)?;
        let shuffle = vars.require(&name, SHUFFLE_STREAM_ENV, "the shuffle stream it writes")?;
        let env = stage_env(&name, vars, false).await?;
        let setup = |what: &str, e: &dyn std::fmt::Display| AppError::setup(&name, what, e);
        let decoder = join
            .decoder(&env.stage, source.decoder())
            .map_err(|e| setup("its side", &e))?;
        let dead_letters = dead_letter_destination(&name, self.dead_letters, vars, &env.sdk)?;
        let stage = env
            .stage(
                split.upstream.clone(),
                decoder,
                NoSink,
                dead_letters,
                PartitionKeying::Undeclared,
            )
            .map_err(|e| setup("setting up the stage", &e))?;
        join.tagging_upstream(stage, aws_sdk_kinesis::Client::new(&env.sdk), &shuffle)
            .map_err(|e| setup("its side", &e))
    }

    /// The join stage as deployed: its deployment and sinks read from `vars` (the description's
    /// variables, [`JOIN_INPUTS_ENV`] and [`IDLENESS_MS_ENV`]).
    pub async fn lambda_join_stage(&self, vars: &dyn Vars) -> Result<JoinStage<T, Out>, AppError> {
        let split = self.split(&self.name)?;
        let join = self.stream_join(&self.name, vars)?;
        let idleness =
            idleness_ms(vars.get(IDLENESS_MS_ENV)).map_err(|e| AppError::setup(&self.name, IDLENESS_MS_ENV, e))?;
        let env = stage_env(&self.name, vars, true).await?;
        let sinks = build_sinks(&self.name, &self.sinks, vars, &env.sdk).await?;
        let dead_letters = dead_letter_destination(&self.name, self.dead_letters, vars, &env.sdk)?;
        let stage = env
            .stage(
                split.downstream.clone(),
                NoDecoder,
                sinks,
                dead_letters,
                PartitionKeying::Undeclared,
            )
            .map_err(|e| AppError::setup(&self.name, "setting up the stage", e))?;
        Ok(join.join_downstream(stage, idleness))
    }

    /// Runs the join on the embedded runner (the split pipeline over an in-memory shuffle) over
    /// local files in the inputs' formats: file `<input>.<ext>` or `<input>-<anything>.<ext>` is
    /// a partition of input `<input>` (the longest matching name). Results go to
    /// `<out_dir>/<pipeline sink>.jsonl`, dead letters and late records beside them.
    pub async fn run_local(&self, files: &[PathBuf], out_dir: &Path) -> Result<RunSummary, AppError> {
        let split = self.split(&self.name)?;
        let mut per_input: Vec<Vec<PathBuf>> = vec![Vec::new(); self.inputs.len()];
        for file in files {
            per_input[self.input_of(file)?].push(file.clone());
        }
        let local = |source| AppError::Local {
            stage: self.name.clone(),
            source,
        };
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for (side, ((name, source), files)) in self.inputs.iter().zip(per_input).enumerate() {
            let side = u16::try_from(side).map_err(|_| AppError::setup(&self.name, "its inputs", "more than 65536"))?;
            let input = source
                .open_local(&files)
                .map_err(|e| local(shardflow_local::RunnerError::Input(e)))?;
            inputs.push((side, name.clone(), input));
        }
        let mut union = TaggedInputs::new(inputs);
        LocalRunner::new(out_dir)
            .split_job(split.clone())
            .run(&mut union)
            .await
            .map_err(local)
    }

    /// The input a local file belongs to (see [`JoinDef::run_local`]).
    fn input_of(&self, file: &Path) -> Result<usize, AppError> {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.inputs
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| stem == *name || stem.starts_with(&format!("{name}-")))
            .max_by_key(|(_, (name, _))| name.len())
            .map(|(side, _)| side)
            .ok_or_else(|| {
                AppError::setup(
                    &self.name,
                    "its local input",
                    format!(
                        "{} names no input: call it `<input>.<ext>` or `<input>-<n>.<ext>`, inputs {}",
                        file.display(),
                        self.inputs().collect::<Vec<_>>().join(", ")
                    ),
                )
            })
    }
}

/// The inputs of a join as one input of tagged values: each input's partitions, named
/// `<input>/<partition>`, its values tagged with its side.
struct TaggedInputs<T> {
    inputs: Vec<(u16, String, Box<dyn Input<T>>)>,
    /// Per partition: (input index, the input's partition).
    partitions: Vec<(usize, usize)>,
}

impl<T> TaggedInputs<T> {
    fn new(inputs: Vec<(u16, String, Box<dyn Input<T>>)>) -> Self {
        let partitions = inputs
            .iter()
            .enumerate()
            .flat_map(|(i, (_, _, input))| (0..input.partitions().len()).map(move |p| (i, p)))
            .collect();
        TaggedInputs { inputs, partitions }
    }

    fn locate(&self, p: usize) -> Result<(usize, usize), InputError> {
        self.partitions.get(p).copied().ok_or_else(|| InputError {
            path: PathBuf::from(format!("partition {p}")),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such partition"),
        })
    }
}

impl<T> Input<Tagged<T>> for TaggedInputs<T> {
    fn partitions(&self) -> Vec<String> {
        self.inputs
            .iter()
            .flat_map(|(_, name, input)| input.partitions().into_iter().map(move |p| format!("{name}/{p}")))
            .collect()
    }

    fn next(&mut self, p: usize) -> Result<Option<Item<Tagged<T>>>, InputError> {
        let (i, local) = self.locate(p)?;
        let (side, _, input) = &mut self.inputs[i];
        let side = *side;
        Ok(input.next(local)?.map(|item| match item {
            Item::Value(value) => Item::Value(Tagged { side, value }),
            Item::Malformed { reason, raw } => Item::Malformed { reason, raw },
        }))
    }

    fn skip(&mut self, p: usize, n: u64) -> Result<u64, InputError> {
        let (i, local) = self.locate(p)?;
        self.inputs[i].2.skip(local, n)
    }
}

/// One stage of a [`JoinDef`] as an [`crate::App`] holds it: input `Some(side)`'s upstream stage,
/// or (`None`) the join stage.
pub(crate) struct JoinPart<T, Out> {
    join: Arc<JoinDef<T, Out>>,
    side: Option<usize>,
    name: String,
}

impl<T, Out> JoinPart<T, Out> {
    /// Every stage of `join`: the inputs' stages, then the join stage.
    pub(crate) fn all(join: JoinDef<T, Out>) -> Vec<JoinPart<T, Out>> {
        let join = Arc::new(join);
        let mut parts: Vec<JoinPart<T, Out>> = join
            .inputs
            .iter()
            .enumerate()
            .map(|(side, (input, _))| JoinPart {
                join: join.clone(),
                side: Some(side),
                name: join.input_stage(input),
            })
            .collect();
        parts.push(JoinPart {
            name: join.name.clone(),
            join,
            side: None,
        });
        parts
    }
}

impl<T, Out> ErasedStage for JoinPart<T, Out>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    Out: Serialize + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self, app: &str) -> StageDescription {
        match self.side {
            Some(side) => self.join.input_description(app, side),
            None => self.join.join_description(app),
        }
    }

    fn run_lambda(&self) -> LocalBoxFuture<'_, Result<(), lambda_runtime::Error>> {
        let failed = |e: AppError| lambda_runtime::Error::from(e.to_string());
        Box::pin(async move {
            match self.side {
                Some(side) => {
                    let stage = self.join.lambda_input_stage(side, &ProcessEnv).await.map_err(failed)?;
                    Box::pin(run_upstream(stage)).await
                }
                None => {
                    let stage = self.join.lambda_join_stage(&ProcessEnv).await.map_err(failed)?;
                    Box::pin(run_downstream(stage)).await
                }
            }
        })
    }

    fn run_local<'a>(
        &'a self,
        inputs: &'a [PathBuf],
        out_dir: &'a Path,
    ) -> LocalBoxFuture<'a, Result<RunSummary, AppError>> {
        Box::pin(async move {
            match self.side {
                Some(_) => Err(AppError::setup(
                    &self.name,
                    "running locally",
                    format!(
                        "an input stage runs as part of its join: run stage `{}`",
                        self.join.name
                    ),
                )),
                None => self.join.run_local(inputs, out_dir).await,
            }
        })
    }
}
