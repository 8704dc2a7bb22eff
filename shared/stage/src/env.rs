//! Reading a function's configuration from its environment variables.

use thiserror::Error;

/// A required variable is missing or a variable does not parse.
#[derive(Debug, Error)]
pub enum EnvError {
    /// A required variable is not set (or empty).
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable's value is not what it must be.
    #[error("environment variable {name} = {value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        reason: &'static str,
    },
}

/// Reads `name`; `None` when unset or empty.
pub fn optional_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Reads `name`, which must be set.
pub fn required_var(name: &'static str) -> Result<String, EnvError> {
    optional_var(name).ok_or(EnvError::Missing(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named_in_the_error() {
        let err = required_var("SHARDFLOW_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SHARDFLOW_TEST_SURELY_UNSET_VARIABLE is not set"
        );
    }
}
