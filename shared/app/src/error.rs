//! Why an application's stage could not be set up or run.

use crate::description::ConfigErrors;

/// Why a stage could not be set up or run. Libraries' errors are kept as their messages, with
/// the stage (and sink) they concern.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The application's declaration is refused (see [`crate::AppDescription::validate`]).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// A variable a stage or sink needs is not set.
    #[error(
        "stage `{stage}` needs {var} ({meaning}): the synthesized template sets it; to run the stage by hand, export {var}"
    )]
    MissingVar {
        /// The stage.
        stage: String,
        /// The variable.
        var: String,
        /// What it holds.
        meaning: String,
    },
    /// The application has no stage of this name.
    #[error("application `{app}` has no stage `{stage}`; its stages: {known}")]
    UnknownStage {
        /// The application.
        app: String,
        /// The stage asked for.
        stage: String,
        /// The stages it has, comma-separated.
        known: String,
    },
    /// A resource of the stage could not be reached or prepared, or the stage refused its
    /// configuration.
    #[error("stage `{stage}`: {what}: {message}")]
    Setup {
        /// The stage.
        stage: String,
        /// What was being prepared.
        what: String,
        /// The underlying error.
        message: String,
    },
    /// The embedded runner failed.
    #[error("stage `{stage}` on the embedded runner: {source}")]
    Local {
        /// The stage.
        stage: String,
        /// The runner's error.
        #[source]
        source: shardflow_local::RunnerError,
    },
}

impl AppError {
    /// A [`AppError::Setup`] of `stage`.
    pub(crate) fn setup(stage: &str, what: &str, message: impl std::fmt::Display) -> Self {
        AppError::Setup {
            stage: stage.to_owned(),
            what: what.to_owned(),
            message: message.to_string(),
        }
    }
}
