//! Why a project command failed.

use std::path::PathBuf;

/// Why `new`, `deploy`, `destroy` or `put` failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The project's name cannot name resources or crates.
    #[error("{name:?} cannot name a pipeline: {why} (pass --name NAME: lower-case letters, digits and '-', starting with a letter)")]
    BadName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The directory of a new project is not empty.
    #[error("{0} exists and is not empty: give `shardflow new` a new directory")]
    NotEmpty(PathBuf),
    /// No shardflow checkout was found.
    #[error("no shardflow checkout: {0}; pass --shardflow DIR (or set SHARDFLOW_HOME), or --git URL for `new`")]
    NoCheckout(String),
    /// The directory is not a project `shardflow new` made (or like it).
    #[error("{0} is not a pipeline project (no Cargo.toml with a [workspace]): run this in the directory `shardflow new` made, or pass --dir")]
    NotAProject(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A command it runs failed.
    #[error("{what} failed ({command}){log}")]
    Command {
        /// What was being done.
        what: String,
        /// The command line.
        command: String,
        /// The end of its output, and where the rest is.
        log: String,
    },
    /// A tool it needs is not installed.
    #[error("{tool} is needed and not installed. {how}")]
    MissingTool {
        /// The tool.
        tool: String,
        /// The exact commands that install it and what to run then.
        how: String,
    },
    /// The application cannot be deployed, or its template not made.
    #[error("the application cannot be deployed: {0}")]
    Synth(#[from] shardflow_synth::SynthError),
    /// The project's functions do not include one a stage names.
    #[error("stage `{stage}` runs the function `{function}`, which is not a binary of the project: add the crate functions/{function} (or name the function with `StageDef::function`)")]
    MissingFunction {
        /// The stage.
        stage: String,
        /// The function crate it names.
        function: String,
    },
    /// Something the deployment left is missing or not understood.
    #[error("{0}")]
    Deployment(String),
    /// Putting records failed.
    #[error("putting records onto {stream}: {message}")]
    Put {
        /// The stream.
        stream: String,
        /// What went wrong.
        message: String,
    },
}

impl ProjectError {
    /// An [`ProjectError::Io`] of `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ProjectError {
        let path = path.into();
        move |source| ProjectError::Io { path, source }
    }
}
