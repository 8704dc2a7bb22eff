//! An application: named stages, run one at a time as Lambda functions or on the embedded
//! runner, and described for `shardflow synth`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use shardflow_local::RunSummary;

use crate::description::{AppDescription, ConfigErrors};
use crate::error::AppError;
use crate::join::{JoinDef, JoinPart};
use crate::stage::{ErasedStage, StageDef};

/// The argument that makes an application's function print its description instead of serving.
pub const DESCRIBE_ARG: &str = "--describe";

/// A pipeline application: its name (`[a-z][a-z0-9-]*`, the prefix of its resources) and stages.
pub struct App {
    name: String,
    stages: Vec<Box<dyn ErasedStage>>,
}

impl App {
    /// An application named `name` without stages.
    pub fn new(name: impl Into<String>) -> Self {
        App {
            name: name.into(),
            stages: Vec::new(),
        }
    }

    /// Adds `stage`.
    pub fn stage<In, Out>(mut self, stage: StageDef<In, Out>) -> Self
    where
        In: Clone + Send + Sync + 'static,
        Out: Serialize + Send + Sync + 'static,
    {
        self.stages.push(Box::new(stage));
        self
    }

    /// Adds the stages of `join`: one per input, then the join stage ([`JoinDef`]).
    pub fn join<T, Out>(mut self, join: JoinDef<T, Out>) -> Self
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        Out: Serialize + Send + Sync + 'static,
    {
        for part in JoinPart::all(join) {
            self.stages.push(Box::new(part));
        }
        self
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The description as declared, valid or not.
    pub fn description(&self) -> AppDescription {
        AppDescription {
            app: self.name.clone(),
            stages: self.stages.iter().map(|s| s.description(&self.name)).collect(),
        }
    }

    /// The description, or every reason the application cannot be deployed
    /// ([`AppDescription::validate`]).
    pub fn describe(&self) -> Result<AppDescription, ConfigErrors> {
        let description = self.description();
        description.validate()?;
        Ok(description)
    }

    fn find(&self, stage: &str) -> Result<&dyn ErasedStage, AppError> {
        self.stages
            .iter()
            .find(|s| s.name() == stage)
            .map(|s| s.as_ref())
            .ok_or_else(|| AppError::UnknownStage {
                app: self.name.clone(),
                stage: stage.to_owned(),
                known: self.stages.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "),
            })
    }

    /// Runs stage `stage` on the embedded runner over local files (see [`StageDef::run_local`]).
    pub async fn run_local(&self, stage: &str, inputs: &[PathBuf], out_dir: &Path) -> Result<RunSummary, AppError> {
        self.describe()?;
        self.find(stage)?.run_local(inputs, out_dir).await
    }
}

/// The `main` of the function of stage `stage`: serves Lambda invocations with the stage built
/// from the function's environment — or, when the process's first argument is
/// [`DESCRIBE_ARG`], prints the application's description as JSON and returns (what
/// `shardflow synth --app-binary` reads). A two-line `main`:
///
/// ```no_run
/// # fn app() -> shardflow_app::App { shardflow_app::App::new("clicks") }
/// #[tokio::main]
/// async fn main() -> Result<(), lambda_runtime::Error> {
///     lambda_runtime::tracing::init_default_subscriber();
///     shardflow_app::run_stage(app(), "sessions").await
/// }
/// ```
///
/// Fails (the function's init fails, which Lambda reports) when the application does not
/// validate, has no such stage, or its environment lacks a variable.
pub async fn run_stage(app: App, stage: &str) -> Result<(), lambda_runtime::Error> {
    if describe_requested(&app)? {
        return Ok(());
    }
    app.describe()?;
    let stage = app.find(stage)?;
    tracing::info!(app = %app.name, stage = %stage.name(), "starting the stage");
    stage.run_lambda().await
}

/// The `main` of a function that runs several stages of `app` (every stage of a [`JoinDef`],
/// say): as [`run_stage`], the stage being the one its environment names (`SHARDFLOW_STAGE`,
/// which the synthesized template sets to the stage's name).
pub async fn run_stage_from_env(app: App) -> Result<(), lambda_runtime::Error> {
    if describe_requested(&app)? {
        return Ok(());
    }
    let stage = shardflow_stage::required_var(shardflow_lambda::STAGE_ENV)?;
    run_stage(app, &stage).await
}

/// With [`DESCRIBE_ARG`] as the process's first argument, prints `app`'s description and says so.
fn describe_requested(app: &App) -> Result<bool, lambda_runtime::Error> {
    if std::env::args().nth(1).as_deref() != Some(DESCRIBE_ARG) {
        return Ok(false);
    }
    let json = serde_json::to_string_pretty(&app.describe()?)?;
    writeln!(std::io::stdout().lock(), "{json}")?;
    Ok(true)
}
