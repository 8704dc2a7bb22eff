//! # shardflow-nexmark
//!
//! The Nexmark benchmark on the engine, outside the Lambda data flow: a JSON-lines file of
//! events is decoded ([`decode`], [`projection`]) into the [`model`], fed through a query
//! pipeline ([`queries`]) by [`run`], and the results are written as CSV (`shardflow nexmark`,
//! [`cli`]). See `README.md` for the queries and the measurements.

#![warn(missing_docs)]

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
