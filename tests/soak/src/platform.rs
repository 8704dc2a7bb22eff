//! The platform under test: `infra/template.yaml` deployed to LocalStack by the project's deploy
//! command (as tests/e2e does), its functions read from the stack's outputs (every output named
//! `...FunctionName`, its stage from the function's `SHARDFLOW_STAGE`), the functions pointed at
//! the fault proxy, and the stages whose outputs it does not check (order-enrich's pair) paused.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_lambda::types::{Environment, LastUpdateStatus};

/// Stages whose results are exact on any sharding of the input, with or without resharding
/// (keyed by the stream's partition key, none, or through the shuffle stream): the soak runs
/// them and checks their sinks.
pub const CHECKED_STAGES: [&str; 6] = [
    "receipts",
    "archive",
    "revenue-keyby",
    "revenue-shuffled",
    "order-enrich-keyby",
    "order-enrich-shuffled",
];

/// Shards of each shuffle stream (revenue's and order-enrich's) at the start.
pub const SHUFFLE_SHARDS: u32 = 2;

/// The services the functions reach through the proxy.
pub const PROXIED_SERVICES: [&str; 4] = ["DYNAMODB", "KINESIS", "SNS", "SQS"];

/// A deployed stage function.
#[derive(Debug, Clone)]
pub struct StageFunction {
    /// The function's name.
    pub function: String,
    /// Its stage (`SHARDFLOW_STAGE`; its key prefix in the state table).
    pub stage: String,
    /// The name of the stream its event source mapping reads.
    pub stream: String,
}

/// The deployed stack.
#[derive(Debug)]
pub struct Platform {
    /// The stack's name.
    pub stack: String,
    /// Its outputs.
    pub outputs: HashMap<String, String>,
    /// The Postgres table revenue-shuffled writes.
    pub revenue_table: String,
    /// The functions that run (and are checked).
    pub running: Vec<StageFunction>,
    /// The functions paused, with why.
    pub paused: Vec<(StageFunction, String)>,
}

impl Platform {
    /// The output `key`.
    pub fn output(&self, key: &str) -> anyhow::Result<String> {
        self.outputs
            .get(key)
            .cloned()
            .with_context(|| format!("the stack has no output {key}"))
    }

    /// The running functions' names.
    pub fn running_functions(&self) -> Vec<String> {
        self.running.iter().map(|f| f.function.clone()).collect()
    }
}

/// Deploys the template as `stack` with `shards` input shards and `timeout_s` function timeout,
/// its revenue stage writing the Postgres of `shardflow_testkit::postgres_url()` (the soak's own:
/// `tests/soak/run` sets it), pauses the stages not in [`CHECKED_STAGES`], and points the others
/// at `proxy_url`.
pub async fn deploy(stack: &str, shards: u32, timeout_s: u32, proxy_url: &str) -> anyhow::Result<Platform> {
    let database_url = shardflow_testkit::postgres_url();
    let revenue_table = stack.replace('-', "_");
    let outputs = shardflow_e2e::deploy(
        stack,
        "infra/template.yaml",
        &[
            ("Architecture", "x86_64"),
            ("DatabaseUrl", &database_url),
            ("RevenueTable", &revenue_table),
            ("ChangesShardCount", &shards.to_string()),
            ("RevenueShuffleShardCount", &SHUFFLE_SHARDS.to_string()),
            ("EnrichShuffleShardCount", &SHUFFLE_SHARDS.to_string()),
            ("FunctionTimeout", &timeout_s.to_string()),
        ],
    );
    let lambda = shardflow_testkit::lambda();
    let mut functions: Vec<&String> = outputs
        .iter()
        .filter(|(k, _)| k.ends_with("FunctionName"))
        .map(|(_, v)| v)
        .collect();
    functions.sort();
    let mut running = Vec::new();
    let mut paused = Vec::new();
    for function in functions {
        let config = lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
            .with_context(|| format!("read the configuration of {function}"))?;
        let variables = config
            .environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default();
        let stage = variables.get("SHARDFLOW_STAGE").cloned().unwrap_or_default();
        let stage_function = StageFunction {
            function: function.clone(),
            stage: stage.clone(),
            stream: input_stream(&lambda, function).await?,
        };
        if CHECKED_STAGES.contains(&stage.as_str()) {
            point_at_proxy(&lambda, function, variables, proxy_url).await?;
            running.push(stage_function);
        } else {
            shardflow_lifecycle::EventSourceBarrier::new(lambda.clone(), function)
                .pause()
                .await
                .with_context(|| format!("pause the mappings of {function}"))?;
            paused.push((
                stage_function,
                format!(
                    "stage {stage:?}: the soak does not check its outputs (not in CHECKED_STAGES), so it \
                     does not run it"
                ),
            ));
        }
    }
    if running.is_empty() {
        bail!("the stack has none of the stages {CHECKED_STAGES:?}");
    }
    Ok(Platform {
        stack: stack.to_owned(),
        outputs,
        revenue_table,
        running,
        paused,
    })
}

/// The name of the stream `function`'s event source mapping reads.
async fn input_stream(lambda: &aws_sdk_lambda::Client, function: &str) -> anyhow::Result<String> {
    let mappings = lambda
        .list_event_source_mappings()
        .function_name(function)
        .send()
        .await
        .with_context(|| format!("list the event source mappings of {function}"))?;
    mappings
        .event_source_mappings()
        .iter()
        .filter_map(|m| m.event_source_arn())
        .find_map(|arn| arn.split_once(":stream/").map(|(_, name)| name.to_owned()))
        .with_context(|| format!("{function} reads no Kinesis stream"))
}

/// Adds `AWS_ENDPOINT_URL_<SERVICE>` = the proxy for every [`PROXIED_SERVICES`] to the
/// function's environment (the SDKs prefer it to LocalStack's `AWS_ENDPOINT_URL`), and waits
/// until the update is in effect.
async fn point_at_proxy(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    mut variables: HashMap<String, String>,
    proxy_url: &str,
) -> anyhow::Result<()> {
    for service in PROXIED_SERVICES {
        variables.insert(format!("AWS_ENDPOINT_URL_{service}"), proxy_url.to_owned());
    }
    lambda
        .update_function_configuration()
        .function_name(function)
        .environment(Environment::builder().set_variables(Some(variables)).build())
        .send()
        .await
        .with_context(|| format!("point {function} at the proxy"))?;
    let started = Instant::now();
    loop {
        let config = lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await?;
        match config.last_update_status() {
            Some(LastUpdateStatus::Successful) | None => return Ok(()),
            Some(LastUpdateStatus::Failed) => {
                bail!("updating {function} failed: {:?}", config.last_update_status_reason())
            }
            _ if started.elapsed() > Duration::from_secs(60) => bail!("updating {function} took over 60 s"),
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}
