//! The deployed pipeline: its stage functions (every Lambda function whose environment names a
//! shardflow stage), their input streams (from their event source mappings), state tables and
//! blue/green control, and its Kinesis streams ([`discover_streams`]): every stream named with
//! the prefix or read or written by a stage, each with its role in the graph (source, shuffle
//! between stages, output), found from the streams themselves and the stages' mappings and
//! environments — nothing pipeline-specific.

use std::collections::BTreeMap;

use serde::Serialize;
use shardflow_bluegreen::{COLOUR_ENV, CONTROL_TABLE_ENV, DEPLOYMENT_ENV};
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
    /// The blue/green control table and deployment name it reads its cutover from, if any.
    pub control: Option<Control>,
    /// The function's memory, MB.
    pub memory_mb: Option<i32>,
    /// The function's architecture (`arm64`, `x86_64`).
    pub architecture: Option<String>,
    /// The function's environment (kept to find the streams it writes; never shown).
    #[serde(skip)]
    pub environment: BTreeMap<String, String>,
}

/// Where a blue/green deployment's cutover is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Control {
    /// The control table.
    pub table: String,
    /// The deployment's name in it.
    pub deployment: String,
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
                control: var(CONTROL_TABLE_ENV).filter(|t| !t.is_empty()).map(|table| Control {
                    table,
                    deployment: var(DEPLOYMENT_ENV).unwrap_or_else(|| "shop".to_owned()),
                }),
                memory_mb: f.memory_size(),
                architecture: f.architectures().first().map(|a| a.as_str().to_owned()),
                environment: vars
                    .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
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

/// A stream's place in the pipeline's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamRole {
    /// No stage writes it: the pipeline's input.
    Source,
    /// A stage writes it for another stage keyed differently: a variable naming it says
    /// `SHUFFLE`, or its name does.
    Shuffle,
    /// A stage writes it otherwise (results, or input of a next stage).
    Output,
}

/// A Kinesis stream of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeployedStream {
    /// Its name.
    pub name: String,
    /// Its open shards.
    pub shards: u32,
    /// Its retention, hours.
    pub retention_hours: u32,
    /// Its role.
    pub role: StreamRole,
    /// The functions writing it.
    pub written_by: Vec<String>,
    /// The functions reading it (through their event source mapping).
    pub read_by: Vec<String>,
}

/// The streams `stage` writes: the values of its environment that name one of `known` streams
/// (by name or ARN), with the variable, except variables of its input (`*INPUT*`) and the
/// stream it reads.
pub fn written_streams<'a>(stage: &'a DeployedStage, known: &[String]) -> Vec<(&'a str, String)> {
    stage
        .environment
        .iter()
        .filter(|(key, _)| !key.to_ascii_uppercase().contains("INPUT"))
        .filter_map(|(key, value)| {
            let name = stream_of_arn(value).unwrap_or(value);
            known
                .iter()
                .find(|k| k.as_str() == name && stage.stream.as_deref() != Some(name))
                .map(|k| (key.as_str(), k.clone()))
        })
        .collect()
}

/// The graph of `streams` (name, open shards, retention hours) and `stages`: who writes and reads
/// each stream, and its role.
pub fn stream_graph(stages: &[DeployedStage], streams: &[(String, u32, u32)]) -> Vec<DeployedStream> {
    let names: Vec<String> = streams.iter().map(|s| s.0.clone()).collect();
    streams
        .iter()
        .map(|(name, shards, retention_hours)| {
            let mut shuffle = name.to_ascii_lowercase().contains("shuffle");
            let mut written_by = Vec::new();
            for stage in stages {
                for (var, _) in written_streams(stage, &names).into_iter().filter(|(_, s)| s == name) {
                    shuffle |= var.to_ascii_uppercase().contains("SHUFFLE");
                    written_by.push(stage.function.clone());
                }
            }
            written_by.dedup();
            let read_by: Vec<String> = stages
                .iter()
                .filter(|s| s.stream.as_deref() == Some(name))
                .map(|s| s.function.clone())
                .collect();
            let role = match (shuffle, written_by.is_empty()) {
                (true, _) => StreamRole::Shuffle,
                (false, true) => StreamRole::Source,
                (false, false) => StreamRole::Output,
            };
            DeployedStream {
                name: name.clone(),
                shards: *shards,
                retention_hours: *retention_hours,
                role,
                written_by,
                read_by,
            }
        })
        .collect()
}

/// Every stream whose name starts with `prefix` (when not empty) or that a stage reads or writes,
/// with its shards and retention, as a graph with `stages`.
pub async fn discover_streams(
    kinesis: &aws_sdk_kinesis::Client,
    prefix: &str,
    stages: &[DeployedStage],
) -> Result<Vec<DeployedStream>, DashboardError> {
    let mut all = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let out = kinesis
            .list_streams()
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| DashboardError::aws("Kinesis", "ListStreams", e))?;
        all.extend(out.stream_names().iter().cloned());
        match out.next_token() {
            Some(t) if out.has_more_streams() && !t.is_empty() => next = Some(t.to_owned()),
            _ => break,
        }
    }
    let mut wanted: Vec<String> = all
        .iter()
        .filter(|name| {
            (!prefix.is_empty() && name.starts_with(prefix))
                || stages.iter().any(|s| {
                    s.stream.as_deref() == Some(name.as_str())
                        || !written_streams(s, std::slice::from_ref(*name)).is_empty()
                })
        })
        .cloned()
        .collect();
    wanted.sort();
    let mut streams = Vec::with_capacity(wanted.len());
    for name in wanted {
        let out = match kinesis.describe_stream_summary().stream_name(&name).send().await {
            Ok(out) => out,
            // Deleted between the listing and now.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                continue
            }
            Err(e) => return Err(DashboardError::aws("Kinesis", "DescribeStreamSummary", e)),
        };
        let Some(d) = out.stream_description_summary() else {
            continue;
        };
        let count = |n: i32| u32::try_from(n).unwrap_or(0);
        streams.push((name, count(d.open_shard_count()), count(d.retention_period_hours())));
    }
    Ok(stream_graph(stages, &streams))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(function: &str, input: &str, env: &[(&str, &str)]) -> DeployedStage {
        DeployedStage {
            function: function.to_owned(),
            stage: function.to_owned(),
            table: "state".to_owned(),
            stream: Some(input.to_owned()),
            mapping_state: Some("Enabled".to_owned()),
            colour: None,
            control: None,
            memory_mb: None,
            architecture: None,
            environment: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn streams_are_sources_shuffles_or_outputs_by_who_writes_them_and_how() {
        let stages = [
            stage(
                "p-keyby",
                "p-changes",
                &[
                    ("SHARDFLOW_SHUFFLE_STREAM", "p-by-product"),
                    ("SHARDFLOW_UPSTREAM_INPUT_STREAM", "p-changes"),
                ],
            ),
            stage(
                "p-shuffled",
                "p-by-product",
                &[("SHARDFLOW_UPSTREAM_INPUT_STREAM", "p-changes")],
            ),
            stage(
                "p-enrich",
                "p-changes",
                &[(
                    "SHARDFLOW_OUTPUT_STREAM",
                    "arn:aws:kinesis:us-east-1:000000000000:stream/p-enriched",
                )],
            ),
        ];
        let streams = [
            ("p-by-product".to_owned(), 4, 24),
            ("p-changes".to_owned(), 2, 168),
            ("p-enriched".to_owned(), 1, 24),
            ("p-revenue-shuffle".to_owned(), 4, 24),
        ];
        let graph = stream_graph(&stages, &streams);
        let role = |name: &str| graph.iter().find(|s| s.name == name).unwrap().role;
        assert_eq!(role("p-changes"), StreamRole::Source);
        assert_eq!(
            role("p-by-product"),
            StreamRole::Shuffle,
            "written through a SHUFFLE variable"
        );
        assert_eq!(role("p-enriched"), StreamRole::Output, "named by ARN");
        assert_eq!(
            role("p-revenue-shuffle"),
            StreamRole::Shuffle,
            "named a shuffle, no writer yet"
        );
        let by_product = graph.iter().find(|s| s.name == "p-by-product").unwrap();
        assert_eq!(by_product.written_by, ["p-keyby"]);
        assert_eq!(by_product.read_by, ["p-shuffled"]);
        assert_eq!(by_product.shards, 4);
        let changes = graph.iter().find(|s| s.name == "p-changes").unwrap();
        assert!(changes.written_by.is_empty(), "an *INPUT* variable does not write");
        assert_eq!(changes.read_by, ["p-keyby", "p-enrich"]);
    }

    #[test]
    fn a_stream_arn_names_its_stream() {
        assert_eq!(
            stream_of_arn("arn:aws:kinesis:us-east-1:000000000000:stream/shop-changes"),
            Some("shop-changes")
        );
        assert_eq!(stream_of_arn("arn:aws:sqs:us-east-1:000000000000:queue"), None);
    }
}
