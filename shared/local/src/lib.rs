//! # shardflow-local
//!
//! The embedded default runner: runs [`shardflow_engine::Pipeline`]s over files or generated
//! data split into simulated shards, on a laptop or in a test, with no cloud and no emulator.
//! Its checkpoints go to a local directory through [`shardflow_engine::StateStore`], the trait
//! the Lambda stage's DynamoDB store implements too.
//!
//! - [`input`]: JSON-lines files ([`JsonLinesFiles`]), length-delimited Protobuf files
//!   ([`ProtobufFiles`]) and generators ([`IterInput`], or any [`Input`]).
//! - [`LocalRunner`]: round-robin shard interleaving, arrival times, output files
//!   (`<sink>.jsonl`, `late.jsonl`, `dead_letters.jsonl`), checkpoints and resume, a summary.
//! - [`LocalDirStateStore`]: engine checkpoints in a directory (layout in [`store`]);
//!   [`manifest`]: the run's commit point beside them.
#![warn(missing_docs)]

mod fs_util;
pub mod input;
mod job;
pub mod manifest;
pub mod memory;
pub mod runner;
mod sink;
mod split_job;
pub mod store;

pub use input::{Input, InputError, Item, IterInput, JsonLinesFiles, ProtobufFiles};
pub use manifest::RunManifest;
pub use memory::peak_rss_bytes;
pub use runner::{
    results_file, Arrival, BatchReport, LocalRunner, PipelineSummary, Progress, RunSummary, RunnerError, TimeFn,
    DEAD_LETTER_FILE, DEFAULT_SHUFFLE_SHARDS, LATE_FILE,
};
pub use store::{DirStoreError, LocalDirStateStore};
