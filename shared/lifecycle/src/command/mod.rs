//! The `shardflow` subcommands this crate owns: `savepoint`, `status` and `replay` (each an
//! `Args` type and a `run` function the command line dispatches to).

mod clients;
pub mod savepoint;
pub mod status;

pub use clients::{runtime, Clients};
