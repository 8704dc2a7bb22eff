//! Where a stage reads its variables: the process environment, or a map in tests.

use std::collections::HashMap;

use crate::error::AppError;

/// A source of environment variables.
pub trait Vars: Send + Sync {
    /// The value of `name`, `None` when unset or empty (trimmed).
    fn get(&self, name: &str) -> Option<String>;

    /// The value of `name`, or an [`AppError::MissingVar`] of `stage` saying what it holds.
    fn require(&self, stage: &str, name: &str, meaning: &str) -> Result<String, AppError> {
        self.get(name).ok_or_else(|| AppError::MissingVar {
            stage: stage.to_owned(),
            var: name.to_owned(),
            meaning: meaning.to_owned(),
        })
    }
}

/// The process environment (what a Lambda function's configuration sets).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        shardflow_stage::optional_var(name)
    }
}

impl Vars for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}
