//! # shardflow-nexmark
//!
//! The Nexmark benchmark on shardflow: the event model ([`model`]), a never-panicking JSON-lines
//! decoder ([`decode`]), the queries q0, q5, q7, q8 and agg as engine pipelines ([`queries`]),
//! a runner that feeds a file through a query and writes CSV ([`run`]), and the
//! `shardflow nexmark` command ([`cli`]).

mod canonical;
pub mod cli;
pub mod combine;
pub mod csv;
pub mod decode;
pub mod model;
pub mod projection;
pub mod queries;
pub mod run;
mod swar;

pub use decode::{decode_event, decode_event_general, EventDecodeError};
pub use model::{Auction, Bid, Event, Person};
pub use projection::{AllText, NumbersOnly, Projection, Skipped};
pub use queries::Query;
pub use run::{run_query, RunError, RunReport};
