//! Turning the services' errors into [`SinkError`]s that keep the service's message.

use std::fmt::Display;

use shardflow_stage::SinkError;

/// A [`SinkError`] of the sink `sink` saying `what` failed and why.
pub(crate) fn sink_error(sink: &str, what: &str, cause: impl Display) -> SinkError {
    SinkError {
        sink: sink.to_owned(),
        message: format!("{what}: {cause}"),
    }
}

/// A [`SinkError`] for an error of an AWS SDK call, with the service's code and message (the
/// SDK's `Display` alone says only "service error").
pub(crate) fn sdk_error<E: std::error::Error>(sink: &str, what: &str, error: E) -> SinkError {
    sink_error(sink, what, aws_sdk_s3::error::DisplayErrorContext(error))
}

/// A [`SinkError`] for a Postgres error, with the server's message, detail and constraint (the
/// client error's `Display` alone says only "db error").
pub(crate) fn postgres_error(sink: &str, what: &str, error: tokio_postgres::Error) -> SinkError {
    match error.as_db_error() {
        Some(db) => {
            let mut message = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                message.push_str(&format!(" ({detail})"));
            }
            if let Some(constraint) = db.constraint() {
                message.push_str(&format!(" [constraint {constraint}]"));
            }
            sink_error(sink, what, message)
        }
        None => sink_error(sink, what, error),
    }
}
