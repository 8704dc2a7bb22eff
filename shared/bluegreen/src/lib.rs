//! # shardflow-bluegreen
//!
//! Blue/green deployments of shardflow stages, in one place: the protocol (a [`Cutover`] of result
//! positions between two colours, kept in a DynamoDB control table by [`ColourControl`]), the
//! stage side ([`ColourGate`], a sink that writes what its colour owns live and the rest to its
//! shadow outputs, configured from the function's environment by [`blue_green`]), and the
//! operations `shardflow switch`, `rollback` and `validate` ([`commands`]). It sits above the
//! sinks of `shardflow-connectors` and below the stages that use it.
#![warn(missing_docs)]

pub mod commands;
mod control;
pub mod cutover;
mod env;
mod gate;

pub use control::ColourControl;
pub use cutover::{position, Colour, ColourError, Cutover, Segment};
pub use env::{blue_green, colour, shadow_prefix, shadow_table, COLOUR_ENV, CONTROL_TABLE_ENV, DEPLOYMENT_ENV};
pub use gate::ColourGate;
