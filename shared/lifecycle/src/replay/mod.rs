//! Replay of a stream's archive as a bounded stream: locally through the stages' own per-batch
//! code path ([`replay`]), or fanned out as invocations of a deployed stage function
//! ([`invoke_replay`]); `shardflow replay` ([`command`]) does either.

pub mod command;
mod invoke;
mod local;

pub use invoke::{invoke_replay, InvokeReplayOptions, InvokeReplayReport, ReplayProgress, MAX_REPLAY_PAYLOAD_BYTES};
pub use local::{replay, shard_batches, ReplayError, ReplayOutcome};
