//! # shardflow-shop
//!
//! The seed platform's online shop on shardflow.

pub mod demo;
