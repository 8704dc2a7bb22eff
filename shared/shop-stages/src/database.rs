//! The Postgres connection of a stage: a URL in the environment, or a Secrets Manager secret.

use serde::Deserialize;
use shardflow_stage::{optional_var, EnvError};

use crate::StageSetupError;

/// A libpq connection string or URL (local runs, LocalStack).
pub const DATABASE_URL_ENV: &str = "SHARDFLOW_DATABASE_URL";
/// The ARN of a Secrets Manager secret holding the connection (deployments on AWS).
pub const DATABASE_SECRET_ARN_ENV: &str = "SHARDFLOW_DATABASE_SECRET_ARN";

/// The JSON of an RDS credentials secret (the shape RDS and `AWS::SecretsManager::Secret`
/// templates use).
#[derive(Debug, Deserialize)]
struct RdsSecret {
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    username: String,
    password: String,
    #[serde(default, alias = "dbname", alias = "database")]
    dbname: Option<String>,
}

fn default_port() -> u16 {
    5432
}

/// The connection string: [`DATABASE_URL_ENV`] if set, else the secret [`DATABASE_SECRET_ARN_ENV`]
/// names, whose value is a URL or RDS credentials JSON (`host`, `port`, `username`, `password`,
/// `dbname`).
pub async fn database_url(sdk: &aws_config::SdkConfig) -> Result<String, StageSetupError> {
    if let Some(url) = optional_var(DATABASE_URL_ENV) {
        return Ok(url);
    }
    let arn = optional_var(DATABASE_SECRET_ARN_ENV).ok_or(EnvError::Missing(DATABASE_URL_ENV))?;
    let secret = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|e| StageSetupError::Resource {
            what: "reading the database secret",
            message: format!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)),
        })?;
    let text = secret.secret_string().ok_or(StageSetupError::Resource {
        what: "reading the database secret",
        message: format!("secret {arn} has no string value"),
    })?;
    connection_string(text)
}

/// A secret's value as a connection string.
fn connection_string(secret: &str) -> Result<String, StageSetupError> {
    let secret = secret.trim();
    if !secret.starts_with('{') {
        return Ok(secret.to_owned());
    }
    let s: RdsSecret = serde_json::from_str(secret).map_err(|e| StageSetupError::Resource {
        what: "reading the database secret",
        message: format!("neither a URL nor RDS credentials JSON: {e}"),
    })?;
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut url = format!(
        "host={} port={} user={} password={}",
        quote(&s.host),
        s.port,
        quote(&s.username),
        quote(&s.password)
    );
    if let Some(db) = s.dbname {
        url.push_str(&format!(" dbname={}", quote(&db)));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_a_url_or_rds_credentials() {
        assert_eq!(connection_string("postgres://u@h/db\n").unwrap(), "postgres://u@h/db");
        assert_eq!(
            connection_string(r#"{"host":"db.example","username":"app","password":"it's","dbname":"shop"}"#).unwrap(),
            r"host='db.example' port=5432 user='app' password='it\'s' dbname='shop'"
        );
        assert!(connection_string(r#"{"host":"h"}"#).is_err());
    }
}
