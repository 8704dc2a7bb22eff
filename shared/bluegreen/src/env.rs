//! A stage's colour and cutover, from its function's environment (what the template sets).

use shardflow_stage::{optional_var, EnvError};

use crate::control::ColourControl;
use crate::cutover::Colour;

/// The stage's colour (`blue` or `green`; default `blue`).
pub const COLOUR_ENV: &str = "SHARDFLOW_COLOUR";
/// The control table holding the cutover (unset: the stage writes everything live).
pub const CONTROL_TABLE_ENV: &str = "SHARDFLOW_CONTROL_TABLE";
/// The deployment's name in the control table (default `shop`).
pub const DEPLOYMENT_ENV: &str = "SHARDFLOW_DEPLOYMENT";

/// The stage's colour.
pub fn colour() -> Result<Colour, EnvError> {
    match optional_var(COLOUR_ENV) {
        None => Ok(Colour::Blue),
        Some(v) => v.parse().map_err(|_| EnvError::Invalid {
            name: COLOUR_ENV,
            value: v,
            reason: "blue or green",
        }),
    }
}

/// The stage's colour and the cutover it reads, when the environment names a control table (see
/// [`crate::ColourGate`]); `None`: a single-colour deployment. `sdk` reaches the control table.
pub fn blue_green(sdk: &aws_config::SdkConfig) -> Result<Option<(Colour, ColourControl)>, EnvError> {
    let Some(table) = optional_var(CONTROL_TABLE_ENV) else {
        return Ok(None);
    };
    let deployment = optional_var(DEPLOYMENT_ENV).unwrap_or_else(|| "shop".to_owned());
    let control = ColourControl::new(aws_sdk_dynamodb::Client::new(sdk), &table, &deployment);
    Ok(Some((colour()?, control)))
}

/// The table a colour's shadow results go to: `{table}_shadow_{colour}`.
pub fn shadow_table(table: &str, colour: Colour) -> String {
    format!("{table}_shadow_{}", colour.as_str())
}

/// The S3 prefix a colour's shadow results go to: `shadow/{colour}/{prefix}`.
pub fn shadow_prefix(prefix: &str, colour: Colour) -> String {
    format!("shadow/{}/{prefix}", colour.as_str())
}
