//! The blue/green gate of a stage, from its function's environment.

use shardflow_connectors::{Colour, ColourControl, ColourGate};
use shardflow_lambda::{optional_var, EnvError, StageEnv};

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

/// The gate between `live` and `shadow` the environment configures (see
/// [`shardflow_connectors::ColourGate`]).
pub fn gate<L, S>(env: &StageEnv, live: L, shadow: S) -> Result<ColourGate<L, S>, EnvError> {
    let control = optional_var(CONTROL_TABLE_ENV).map(|table| {
        let deployment = optional_var(DEPLOYMENT_ENV).unwrap_or_else(|| "shop".to_owned());
        ColourControl::new(aws_sdk_dynamodb::Client::new(&env.sdk), &table, &deployment)
    });
    Ok(ColourGate::new(colour()?, control, live, shadow))
}
