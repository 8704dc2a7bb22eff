//! # shardflow-schemas
//!
//! Protobuf messages (prost) shared by stages: the Debezium-style change envelope and the
//! seed platform's online-shop entities.
