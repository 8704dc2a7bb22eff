//! The engine's error types.

use thiserror::Error;

/// Why a pipeline could not be built or instantiated.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PipelineError {
    /// A window or trigger parameter is out of range (e.g. a zero window size).
    #[error("invalid {what}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

/// Why state could not be snapshotted or restored.
#[derive(Debug, Error)]
pub enum StateError {
    /// The bytes are not a shardflow checkpoint (bad magic or truncated header).
    #[error("not a shardflow checkpoint: {0}")]
    NotACheckpoint(String),
    /// The checkpoint was written in a format this release cannot read.
    #[error("checkpoint format version {found} is not supported (this release reads {min}..={max})")]
    UnsupportedVersion {
        /// The version found in the bytes.
        found: u16,
        /// The oldest version this release reads.
        min: u16,
        /// The newest version this release reads.
        max: u16,
    },
    /// The checkpoint belongs to another pipeline, or its key-group count differs.
    #[error("checkpoint does not match this pipeline: {0}")]
    Mismatch(String),
    /// A value could not be encoded or decoded.
    #[error("state codec error in {context}: {source}")]
    Codec {
        /// Where the error happened (operator and key group).
        context: String,
        /// The underlying codec error.
        #[source]
        source: postcard::Error,
    },
}

impl StateError {
    pub(crate) fn codec(context: impl Into<String>, source: postcard::Error) -> Self {
        StateError::Codec {
            context: context.into(),
            source,
        }
    }
}
