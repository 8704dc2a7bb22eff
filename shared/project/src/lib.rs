//! # shardflow-project
//!
//! A pipeline project of one's own, from an empty directory to a stack on LocalStack or AWS:
//!
//! * [`scaffold`] — `shardflow new DIR`: a Cargo workspace of its own depending on shardflow's
//!   crates (by path to a checkout, or by git), a pipeline in the four steps (input, transform,
//!   window and trigger, sink) declared as a `shardflow-app` application, its stage function, a
//!   golden test on the embedded runner over a sample input, a README. It builds and its tests
//!   pass straight away; its builds share the checkout's target directory.
//! * [`deploy`] — `shardflow deploy --local | --aws`: builds the project's functions (host
//!   builds for LocalStack, cargo-lambda for arm64 on AWS), zips them, synthesizes the template
//!   from the application's description (`shardflow-synth`, which refuses a configuration that
//!   cannot be deployed, with the fix), deploys it (LocalStack through the checkout's
//!   `localstack/deploy`), and prints the outputs and how to feed the stack;
//!   `shardflow destroy` removes it.
//! * [`put`] — `shardflow put FILE...`: JSON lines onto the deployed input stream.
//!
//! The long steps show a progress spinner ([`progress`]).
#![warn(missing_docs)]

pub mod deploy;
mod error;
pub mod pins;
pub mod progress;
pub mod put;
pub mod scaffold;
mod zip;

pub use error::ProjectError;
pub use zip::bootstrap_zip;

use std::path::{Path, PathBuf};

/// The shardflow checkout this crate was built from (where `shardflow new` points path
/// dependencies and `shardflow deploy --local` finds `localstack/`), if it is still there.
pub fn built_from_checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().ok()?;
    is_checkout(&root).then_some(root)
}

/// Whether `dir` is a shardflow checkout (has `shared/app/Cargo.toml` and `localstack/deploy`).
pub fn is_checkout(dir: &Path) -> bool {
    dir.join("shared/app/Cargo.toml").is_file() && dir.join("localstack/deploy").is_file()
}

/// The checkout `explicit` names, or `SHARDFLOW_HOME`, or the one this crate was built from.
pub fn checkout(explicit: Option<&Path>) -> Result<PathBuf, ProjectError> {
    let candidate = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SHARDFLOW_HOME").map(PathBuf::from))
        .or_else(built_from_checkout);
    match candidate {
        Some(dir) if is_checkout(&dir) => Ok(dir.canonicalize().unwrap_or(dir)),
        Some(dir) => Err(ProjectError::NoCheckout(format!(
            "{} is not a shardflow checkout (no shared/app/Cargo.toml or localstack/deploy)",
            dir.display()
        ))),
        None => Err(ProjectError::NoCheckout(
            "this shardflow was not built from a checkout that is still on disk".to_owned(),
        )),
    }
}
