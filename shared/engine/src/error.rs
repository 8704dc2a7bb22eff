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
    /// [`Stream::uid`](crate::Stream::uid) followed a step that creates no stateful operator.
    #[error("uid {uid:?} follows `{step}`, which keeps no state: a uid names the stateful operator (aggregate, join, process, interval_join, deduplicate) of the step just before it")]
    UidOnStatelessStep {
        /// The step before the uid (`map`, `filter`, ..., or `event_time` at the start).
        step: &'static str,
        /// The uid refused.
        uid: String,
    },
    /// The operator already has a uid.
    #[error("the {step} operator already has uid {uid:?}; {refused:?} would rename it")]
    UidAlreadySet {
        /// The operator's kind.
        step: &'static str,
        /// Its uid.
        uid: String,
        /// The second uid, refused.
        refused: String,
    },
    /// A uid that cannot be an operator id (see [`Stream::uid`](crate::Stream::uid)).
    #[error("invalid uid {uid:?}: {reason}")]
    InvalidUid {
        /// The uid refused.
        uid: String,
        /// Why.
        reason: String,
    },
    /// A stateful operator precedes the shuffle marker ([`crate::KeyedStream::shuffle`]).
    #[error("operator {operator:?} keeps state before the shuffle marker: the upstream half of a split pipeline is stateless (move the operator after `shuffle`)")]
    StatefulBeforeShuffle {
        /// The operator's id.
        operator: String,
    },
    /// Two stateful operators of the pipeline would have the same id.
    #[error("operator id {id:?} is used twice in this pipeline: ids name state in checkpoints and must be unique")]
    DuplicateOperatorId {
        /// The id.
        id: String,
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
    /// The image holds state of operators the pipeline does not have, and the restore does not
    /// allow dropping it (see [`crate::restore::RestoreOptions`]). Typically an operator was
    /// removed, or its id changed (a renamed uid, a uid added or removed, an operator of the same
    /// kind added before one with a default id): `unmatched` then lists its old id and
    /// `starts_empty` its new one.
    #[error(
        "the checkpoint holds state of operator(s) {} that the pipeline does not have{}; \
         give the operators the ids their state is kept under (Stream::uid), or allow dropping the state",
        list(unmatched),
        if starts_empty.is_empty() { String::new() } else {
            format!(" (the pipeline's operator(s) {} find no state and would start empty)", list(starts_empty))
        }
    )]
    UnmatchedState {
        /// The ids of the image's operators the pipeline does not have, as stored in the image
        /// (a positional id of format version 1 is followed by the default id it reads as).
        unmatched: Vec<String>,
        /// The ids of the pipeline's stateful operators that find no state in the image.
        starts_empty: Vec<String>,
    },
    /// The stored state of operators does not fit the types the pipeline's operators keep
    /// (see [`crate::schema`]): a state type changed without a migration, a migration is
    /// missing, or the state was written by a newer build.
    #[error(
        "incompatible state: {}; the checkpoint's state cannot be read by this pipeline",
        operators.join("; ")
    )]
    IncompatibleState {
        /// Per operator, its id and why (`"id": why`).
        operators: Vec<String>,
    },
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

/// `a, b, c`, each quoted.
fn list(ids: &[String]) -> String {
    ids.iter().map(|id| format!("{id:?}")).collect::<Vec<_>>().join(", ")
}

impl StateError {
    pub(crate) fn codec(context: impl Into<String>, source: postcard::Error) -> Self {
        StateError::Codec {
            context: context.into(),
            source,
        }
    }
}
