//! # shardflow-nexmark
//!
//! The Nexmark benchmark on shardflow.

pub mod cli;
