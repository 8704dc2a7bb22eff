//! `shardflow dashboard`: serves the live page of a deployed pipeline until interrupted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shardflow_lifecycle::command::{runtime, Clients};

use crate::server::{poll_forever, start, Dashboard, DashboardConfig};
use crate::source::{CloudWatchLogs, CloudWatchMetrics, FileLogs, MetricsSource};

/// Arguments of `shardflow dashboard`.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Address to serve the page on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Watch the stage functions whose names start with this (e.g. the stack's name).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Read the functions' output from LocalStack's log files in DIR
    /// (`localstack/.state/logs/lambda`) instead of CloudWatch Logs.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Where the stages' figures come from: `cloudwatch` (the metrics CloudWatch extracts from
    /// their EMF lines, as on AWS), `logs` (the EMF lines themselves, as on LocalStack, which
    /// does not extract them), or `auto`: `logs` with `--log-dir` or an endpoint override
    /// (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_CLOUDWATCH`: an emulator), `cloudwatch` otherwise.
    #[arg(long, value_enum, default_value = "auto")]
    metrics: MetricsFrom,
    /// Seconds between reads of the pipeline (and page refreshes).
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// A stage's window (or session gap) in ms, as STAGE=MS, for the stalled-watermark
    /// highlight (repeatable; the shop's stages are known).
    #[arg(long = "window", value_name = "STAGE=MS")]
    windows: Vec<String>,
}

/// Where the stages' figures come from (see `--metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsFrom {
    /// CloudWatch metrics on AWS, the logs' EMF lines with an emulator or log files.
    Auto,
    /// The metrics CloudWatch extracted from the EMF lines.
    Cloudwatch,
    /// The EMF lines in the logs.
    Logs,
}

impl MetricsFrom {
    /// Whether to read CloudWatch metrics, given whether log files are read and the value of
    /// the endpoint override, if any.
    pub fn cloudwatch(self, log_files: bool, endpoint_override: Option<&str>) -> bool {
        match self {
            MetricsFrom::Cloudwatch => true,
            MetricsFrom::Logs => false,
            MetricsFrom::Auto => !log_files && endpoint_override.is_none_or(|e| e.trim().is_empty()),
        }
    }
}

/// Parses `STAGE=MS` pairs over `defaults`.
fn windows(pairs: &[String], mut defaults: BTreeMap<String, i64>) -> anyhow::Result<BTreeMap<String, i64>> {
    for pair in pairs {
        let (stage, ms) = pair
            .split_once('=')
            .with_context(|| format!("--window {pair:?}: expected STAGE=MS"))?;
        let ms: i64 = ms
            .parse()
            .with_context(|| format!("--window {pair:?}: {ms:?} is not a number of ms"))?;
        anyhow::ensure!(ms > 0, "--window {pair:?}: the window must be positive");
        defaults.insert(stage.to_owned(), ms);
    }
    Ok(defaults)
}

/// Runs `shardflow dashboard`; `known_windows` are the windows of the stages this build knows.
pub fn run(args: DashboardArgs, known_windows: BTreeMap<String, i64>) -> anyhow::Result<()> {
    let config = DashboardConfig {
        prefix: args.prefix.clone(),
        windows: windows(&args.windows, known_windows)?,
        interval: Duration::from_secs(args.interval.max(1)),
        ..DashboardConfig::default()
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL_CLOUDWATCH")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok();
    let cloudwatch = args.metrics.cloudwatch(args.log_dir.is_some(), endpoint.as_deref());
    runtime()?.block_on(async move {
        let clients = Clients::from_env().await;
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let metrics = cloudwatch.then(|| CloudWatchMetrics::new(aws_sdk_cloudwatch::Client::new(&aws)));
        match &args.log_dir {
            Some(dir) => serve(config, clients, FileLogs::new(dir), metrics, args.listen).await,
            None => {
                let logs = CloudWatchLogs::new(aws_sdk_cloudwatchlogs::Client::new(&aws));
                serve(config, clients, logs, metrics, args.listen).await
            }
        }
    })
}

async fn serve<S: MetricsSource + 'static>(
    config: DashboardConfig,
    clients: Clients,
    source: S,
    metrics: Option<CloudWatchMetrics>,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    let mut dashboard = Dashboard::new(config, clients, source);
    if let Some(metrics) = metrics {
        tracing::info!("figures from CloudWatch metrics");
        dashboard = dashboard.with_cloudwatch_metrics(metrics);
    }
    let dashboard = Arc::new(dashboard);
    let bound = start(dashboard.clone(), listen).await?;
    println!("shardflow dashboard on http://{bound}/ (Ctrl-C to stop)");
    tokio::select! {
        () = poll_forever(dashboard) => Ok(()),
        stop = tokio::signal::ctrl_c() => stop.context("waiting for Ctrl-C"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudwatch_metrics_are_read_on_aws_and_the_logs_on_an_emulator_or_log_files() {
        assert!(MetricsFrom::Auto.cloudwatch(false, None));
        assert!(!MetricsFrom::Auto.cloudwatch(false, Some("http://127.0.0.1:4566")));
        assert!(!MetricsFrom::Auto.cloudwatch(true, None));
        assert!(MetricsFrom::Cloudwatch.cloudwatch(false, Some("http://127.0.0.1:4566")));
        assert!(!MetricsFrom::Logs.cloudwatch(false, None));
    }

    #[test]
    fn windows_given_on_the_command_line_override_the_known_ones() {
        let known = BTreeMap::from([("revenue".to_owned(), 60_000)]);
        let w = windows(&["revenue=5000".into(), "archive=1000".into()], known).unwrap();
        assert_eq!(w["revenue"], 5_000);
        assert_eq!(w["archive"], 1_000);
        assert!(windows(&["revenue".into()], BTreeMap::new()).is_err());
        assert!(windows(&["revenue=-1".into()], BTreeMap::new()).is_err());
    }
}
