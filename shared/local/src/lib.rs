//! # shardflow-local
//!
//! The embedded default runner: runs a [`shardflow_engine::Pipeline`] over files or generated
//! data split into simulated shards, with checkpoints in a local directory kept through the same
//! [`shardflow_engine::StateStore`] trait the DynamoDB store implements.

pub mod memory;

pub use memory::peak_rss_bytes;
