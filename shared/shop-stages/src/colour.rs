//! The blue/green gate of a stage, from its function's environment.

use shardflow_connectors::{Colour, ColourControl};
use shardflow_lambda::StageEnv;
use shardflow_stage::{optional_var, EnvError};

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
/// [`shardflow_connectors::ColourGate`]); `None`: a single-colour deployment.
pub fn blue_green(env: &StageEnv) -> Result<Option<(Colour, ColourControl)>, EnvError> {
    let Some(table) = optional_var(CONTROL_TABLE_ENV) else {
        return Ok(None);
    };
    let deployment = optional_var(DEPLOYMENT_ENV).unwrap_or_else(|| "shop".to_owned());
    let control = ColourControl::new(aws_sdk_dynamodb::Client::new(&env.sdk), &table, &deployment);
    Ok(Some((colour()?, control)))
}
