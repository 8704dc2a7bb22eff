//! The deployed pipeline: its stage functions (every Lambda function whose environment names a
//! shardflow stage), their input streams (from their event source mappings) and state tables.

use serde::Serialize;
use shardflow_bluegreen::COLOUR_ENV;
use shardflow_lambda::{INPUT_STREAM_ENV, STAGE_ENV, STATE_TABLE_ENV};

use crate::error::DashboardError;

/// One deployed stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeployedStage {
    /// The Lambda function.
    pub function: String,
    /// The stage (its name in the state table and in the EMF lines).
    pub stage: String,
    /// Its state table.
    pub table: String,
    /// Its input stream, from its event source mapping (or its environment).
    pub stream: Option<String>,
    /// The mapping's state (`Enabled`, `Disabled`, ...).
    pub mapping_state: Option<String>,
    /// Its blue/green colour, if deployed with one.
    pub colour: Option<String>,
}

/// The stream name of a Kinesis stream ARN (`arn:aws:kinesis:region:account:stream/NAME`).
pub fn stream_of_arn(arn: &str) -> Option<&str> {
    arn.split_once(":stream/")
        .map(|(_, name)| name)
        .filter(|n| !n.is_empty())
}

/// Every stage function whose name starts with `prefix`, sorted by function name.
pub async fn discover(lambda: &aws_sdk_lambda::Client, prefix: &str) -> Result<Vec<DeployedStage>, DashboardError> {
    let mut stages = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = lambda
            .list_functions()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| DashboardError::aws("Lambda", "ListFunctions", e))?;
        for f in out.functions() {
            let Some(name) = f.function_name().filter(|n| n.starts_with(prefix)) else {
                continue;
            };
            let vars = f.environment().and_then(|e| e.variables());
            let var = |key: &str| vars.and_then(|v| v.get(key)).cloned();
            let (Some(stage), Some(table)) = (var(STAGE_ENV), var(STATE_TABLE_ENV)) else {
                continue;
            };
            let (stream, mapping_state) = mapping(lambda, name).await?;
            stages.push(DeployedStage {
                function: name.to_owned(),
                stage,
                table,
                stream: stream.or_else(|| var(INPUT_STREAM_ENV)),
                mapping_state,
                colour: var(COLOUR_ENV),
            });
        }
        match out.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    stages.sort_by(|a, b| a.function.cmp(&b.function));
    Ok(stages)
}

/// The Kinesis stream and state of `function`'s first Kinesis event source mapping.
async fn mapping(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> Result<(Option<String>, Option<String>), DashboardError> {
    let out = lambda
        .list_event_source_mappings()
        .function_name(function)
        .send()
        .await
        .map_err(|e| DashboardError::aws("Lambda", "ListEventSourceMappings", e))?;
    Ok(out
        .event_source_mappings()
        .iter()
        .find_map(|m| {
            let stream = stream_of_arn(m.event_source_arn()?)?;
            Some((Some(stream.to_owned()), m.state().map(str::to_owned)))
        })
        .unwrap_or((None, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_arn_names_its_stream() {
        assert_eq!(
            stream_of_arn("arn:aws:kinesis:us-east-1:000000000000:stream/shop-changes"),
            Some("shop-changes")
        );
        assert_eq!(stream_of_arn("arn:aws:sqs:us-east-1:000000000000:queue"), None);
    }
}
