//! Replay of a stream's archive as a bounded stream: locally through the stages' own per-batch
//! code path ([`replay`]), or fanned out as invocations of a deployed stage function
//! ([`invoke_replay`]); `shardflow replay` ([`command`]) does either.
//!
//! Restores: an invoked replay runs in the stage function, whose cold loads of a shard's state
//! follow the restore rule of every runner (`shardflow-lambda`, "Restores": state of an operator
//! the function's pipeline does not have refuses the invocation, `RESTORE REFUSED`, unless the
//! function's `SHARDFLOW_ALLOW_DROPPED_STATE` is `true`; a refusal is retried like any failure
//! and then reported by [`invoke_replay`] with its message). A local replay restores nothing:
//! every shard starts from an empty engine.

pub mod command;
mod invoke;
mod local;

pub use invoke::{invoke_replay, InvokeReplayOptions, InvokeReplayReport, ReplayProgress, MAX_REPLAY_PAYLOAD_BYTES};
pub use local::{replay, shard_batches, ReplayError, ReplayOutcome};
