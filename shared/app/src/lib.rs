//! # shardflow-app
//!
//! A pipeline application declared in code. Each stage names its source (a Kinesis stream of
//! JSON, Protobuf or `shardflow cdc` change envelopes), its [`shardflow_engine::Pipeline`], its
//! sinks (SNS, SQS, S3, Kinesis, DynamoDB upsert, Postgres upsert, from `shardflow-connectors`) and
//! its dead-letter destination; the addresses are read from environment variables whose names
//! are derived from the sinks' names ([`env_var`]), so no assembly code per pipeline is needed.
//!
//! ```no_run
//! use shardflow_app::{App, Sink, Source, StageDef};
//! # #[derive(Clone, serde::Deserialize)] struct View { user: String, ts_ms: i64 }
//! # #[derive(serde::Serialize)] struct Row { user: String }
//! # fn pipeline() -> shardflow_engine::Pipeline<View, Row> { unimplemented!() }
//! let app = App::new("clicks").stage(
//!     StageDef::new("sessions")
//!         .source(Source::<View>::json("page-views"))
//!         .pipeline(pipeline())
//!         .sink(Sink::s3("archive", "sessions")),
//! );
//! ```
//!
//! A join across input streams ([`JoinDef`]) is one upstream stage per input stream and one
//! join stage, joined by a shuffle stream; [`App::join`] adds them all.
//!
//! The application gives (a) each stage as a Lambda function ([`run_stage`], a function's whole
//! `main`), (b) each stage on the embedded runner ([`App::run_local`], [`StageDef::run_local`])
//! for tests, and (c) its [`AppDescription`] (stages, sources, sinks, their kinds and variables,
//! state), which a function prints when run with `--describe` and `shardflow synth` turns into
//! CloudFormation. A configuration that cannot be deployed is refused with the fix
//! ([`AppDescription::validate`]).
#![warn(missing_docs)]

mod app;
pub mod description;
mod error;
mod join;
mod names;
mod sink;
mod source;
mod stage;
mod vars;

pub use app::{run_stage, run_stage_from_env, App, DESCRIBE_ARG};
pub use description::{
    AppDescription, ConfigError, ConfigErrors, EnvVar, SinkDescription, SourceDescription, StageDescription, StageRole,
    StateNeeds,
};
pub use error::AppError;
pub use join::{JoinDef, JoinInputStage, JoinStage};
pub use names::{env_var, is_valid_name, logical_id};
pub use shardflow_connectors::SortKey;
pub use sink::{AppSinks, DynSink, Sink, SinkSetup};
pub use source::{Source, SourceDecoder};
pub use stage::{AppStage, DeadLetters, StageDef};
pub use vars::{ProcessEnv, Vars};
