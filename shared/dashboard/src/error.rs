//! Why the dashboard could not read or serve something.

use std::path::PathBuf;

/// The dashboard's errors.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] crate::chart::ChartError),
    /// A log file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A lock was poisoned by a panic elsewhere.
    #[error("the dashboard's state was left inconsistent by a panic")]
    Poisoned,
    /// A call to AWS, or a status read, failed.
    #[cfg(feature = "server")]
    #[error(transparent)]
    Lifecycle(#[from] shardflow_lifecycle::LifecycleError),
    /// The server could not listen or serve.
    #[error("serving the dashboard: {0}")]
    Serve(#[source] std::io::Error),
}

#[cfg(feature = "server")]
impl DashboardError {
    /// An AWS SDK error, with its chain of sources.
    pub fn aws<E: std::error::Error>(service: &'static str, operation: &'static str, e: E) -> Self {
        DashboardError::Lifecycle(shardflow_lifecycle::LifecycleError::aws(service, operation, e))
    }
}
