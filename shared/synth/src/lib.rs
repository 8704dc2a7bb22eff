//! # shardflow-synth
//!
//! `shardflow synth`: an application's description ([`shardflow_app::AppDescription`], which its
//! function binaries print with `--describe`) as a CloudFormation template — per stage one
//! function with its own least-privilege role (named actions on named resources; a wildcard
//! action anywhere refuses the template), its log group, an event source mapping on its input
//! stream (partial batch responses, bisect, retry and age limits, failed batches to a queue),
//! and alarms on iterator age and errors; shared: the streams, the state table and spill bucket,
//! the dead-letter and failed-batch queues with their alarms; per sink its resource (SNS topic,
//! SQS queue, S3 bucket, DynamoDB table; a Postgres connection as a parameter kept in a secret).
//! Everything is encrypted at rest. A description that cannot be deployed is refused before
//! anything is written, with the fix ([`shardflow_app::AppDescription::validate`]).
#![warn(missing_docs)]

pub mod command;
mod policy;
mod template;
pub mod yaml;

pub use policy::{statement, wildcard_actions, Statement};
pub use template::{sink_resource_id, stream_id, SynthOptions};

use shardflow_app::{AppDescription, ConfigErrors};

/// Why no template was made.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The description cannot be deployed.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The template would allow wildcard actions.
    #[error("the template allows wildcard actions {0:?}: every statement must name its actions")]
    WildcardActions(Vec<String>),
    /// The description could not be read.
    #[error("reading the application's description from {from}: {message}")]
    Read {
        /// The file or binary it was read from.
        from: String,
        /// What went wrong.
        message: String,
    },
    /// The template could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The template of `app` as a YAML node: refused when `app` does not validate.
pub fn template(app: &AppDescription, options: &SynthOptions) -> Result<yaml::Yaml, SynthError> {
    app.validate()?;
    Ok(template::template(app, options))
}

/// Refuses a template that allows a wildcard action ([`wildcard_actions`]).
pub fn check(template: &yaml::Yaml) -> Result<(), SynthError> {
    let found = wildcard_actions(template);
    if found.is_empty() {
        Ok(())
    } else {
        Err(SynthError::WildcardActions(found))
    }
}

/// The template of `app` as CloudFormation YAML, checked ([`check`]).
pub fn synthesize(app: &AppDescription, options: &SynthOptions) -> Result<String, SynthError> {
    let template = template(app, options)?;
    check(&template)?;
    Ok(template.to_yaml())
}
