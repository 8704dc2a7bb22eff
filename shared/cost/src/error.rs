//! What can go wrong turning counts into dollars.

use std::path::PathBuf;

/// An error of the cost model or of `shardflow cost`.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A profile or price file is not the JSON the model expects.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A log file holds no EMF line of the stage.
    #[error("{path}: no EMF metrics line{}", stage.as_ref().map(|s| format!(" of stage {s}")).unwrap_or_default())]
    NoMetrics {
        /// The file.
        path: PathBuf,
        /// The stage whose lines were looked for, if any.
        stage: Option<String>,
    },
    /// `--emf` was not `STAGE=FILE`.
    #[error("--emf expects STAGE=FILE, got {0:?}")]
    EmfArgument(String),
    /// A profile or `--emf` names a stage the platform does not have.
    #[error("no stage {stage:?} in the platform (stages: {known})")]
    UnknownStage {
        /// The name given.
        stage: String,
        /// The stages there are.
        known: String,
    },
    /// A stage reads or writes a stream the platform does not declare.
    #[error("stage {stage:?} names stream {stream:?}, which the platform does not declare")]
    UnknownStream {
        /// The stage.
        stage: String,
        /// The stream.
        stream: String,
    },
    /// A figure of the workload, a profile or the prices is out of range.
    #[error("{what} must be {expected}, got {value}")]
    OutOfRange {
        /// Which figure.
        what: String,
        /// The range it must be in.
        expected: &'static str,
        /// What it was.
        value: f64,
    },
    /// Writing the table or the JSON failed.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// Encoding the JSON output failed.
    #[error("encoding the JSON output: {0}")]
    Encode(#[from] serde_json::Error),
}

/// `Ok(value)` when `value` is finite and `in_range`, otherwise [`CostError::OutOfRange`].
fn check(what: impl Into<String>, value: f64, in_range: bool, expected: &'static str) -> Result<f64, CostError> {
    if value.is_finite() && in_range {
        Ok(value)
    } else {
        Err(CostError::OutOfRange {
            what: what.into(),
            expected,
            value,
        })
    }
}

/// Checks that `value` is finite and at least `min`.
pub(crate) fn at_least(
    what: impl Into<String>,
    value: f64,
    min: f64,
    expected: &'static str,
) -> Result<f64, CostError> {
    check(what, value, value >= min, expected)
}

/// Checks that `value` is finite and in `min..=max`.
pub(crate) fn within(
    what: impl Into<String>,
    value: f64,
    min: f64,
    max: f64,
    expected: &'static str,
) -> Result<f64, CostError> {
    check(what, value, (min..=max).contains(&value), expected)
}
