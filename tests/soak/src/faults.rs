//! Carrying out a scheduled fault: the proxy's rules, `kill -9` of function processes, a stop
//! and start of the soak's own Postgres, and resharding the input and shuffle streams.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_kinesis::types::StreamStatus;
use serde::Serialize;

use crate::procs::{function_processes, kill_9};
use crate::proxy::{Action, FaultProxy, Rule};
use crate::schedule::{Fault, FaultKind};

/// What a fault did.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    /// The fault as scheduled.
    pub fault: Fault,
    /// When it was carried out, from the start of the feed (ms).
    pub started_ms: u64,
    /// What it did (or why it could not).
    pub detail: String,
    /// Whether it was carried out.
    pub done: bool,
}

/// What faults act on.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The proxy.
    pub proxy: FaultProxy,
    /// The localstack/ directory of the LocalStack (its function processes run from under it).
    pub localstack_home: PathBuf,
    /// The functions that run.
    pub functions: Vec<String>,
    /// The function timeout.
    pub function_timeout: Duration,
    /// The input stream.
    pub stream: String,
    /// The shuffle stream between the revenue stages.
    pub shuffle_stream: String,
    /// The soak's own Postgres cluster (`tests/soak/postgres`): its script and data directory.
    pub postgres: SoakPostgres,
    /// A Kinesis client straight to LocalStack.
    pub kinesis: aws_sdk_kinesis::Client,
}

/// Carries out `fault` (a window's rule ends by itself at its end).
pub async fn inject(fault: &Fault, targets: &Targets, started_ms: u64) -> Injected {
    let result = match fault.kind {
        FaultKind::KillFunction => kill_function(fault, targets),
        FaultKind::FunctionTimeout => Ok(rule(
            targets,
            "dynamodb",
            Action::Stall(targets.function_timeout + Duration::from_secs(3)),
            fault,
        )),
        FaultKind::DynamoDbThrottle => Ok(rule(targets, "dynamodb", Action::Throttle, fault)),
        FaultKind::DynamoDbServerError => Ok(rule(targets, "dynamodb", Action::ServerError, fault)),
        FaultKind::KinesisThrottle => Ok(rule(targets, "kinesis", Action::Throttle, fault)),
        FaultKind::KinesisServerError => Ok(rule(targets, "kinesis", Action::ServerError, fault)),
        FaultKind::SnsOutage => Ok(rule(targets, "sns", Action::ServerError, fault)),
        FaultKind::SplitShard => split(targets, &targets.stream).await,
        FaultKind::MergeShards => merge(targets, &targets.stream).await,
        FaultKind::SplitShuffleShard => split(targets, &targets.shuffle_stream).await,
        FaultKind::MergeShuffleShards => merge(targets, &targets.shuffle_stream).await,
        FaultKind::PostgresRestart => targets.postgres.restart(fault.duration).await,
        FaultKind::KillCdcReader => Err(anyhow::anyhow!(
            "the CDC phase kills its reader itself (crate::cdc::CdcReader::kill_and_restart)"
        )),
    };
    Injected::logged(fault, started_ms, result)
}

impl Injected {
    /// The record of `fault` carried out at `started_ms` with `result` (what it did, or why it
    /// could not), logged.
    pub fn logged(fault: &Fault, started_ms: u64, result: anyhow::Result<String>) -> Injected {
        let (detail, done) = match result {
            Ok(detail) => (detail, true),
            Err(e) => (format!("{e:#}"), false),
        };
        tracing::info!(kind = fault.kind.name(), done, "{detail}");
        Injected {
            fault: fault.clone(),
            started_ms,
            detail,
            done,
        }
    }
}

fn rule(targets: &Targets, service: &str, action: Action, fault: &Fault) -> String {
    targets.proxy.add(Rule {
        service: service.to_owned(),
        action,
        probability: fault.probability,
        until: Instant::now() + fault.duration,
    });
    format!(
        "{service}: {action:?} on {:.0}% of the calls through the proxy for {} s",
        fault.probability * 100.0,
        fault.duration.as_secs()
    )
}

/// `kill -9` of the target function's processes; a function with none running is a fault not
/// carried out (the soak's check of the schedule fails).
fn kill_function(fault: &Fault, targets: &Targets) -> anyhow::Result<String> {
    let function = targets
        .functions
        .get(fault.target % targets.functions.len().max(1))
        .context("no function runs")?;
    let processes = function_processes(&targets.localstack_home, std::slice::from_ref(function));
    anyhow::ensure!(
        !processes.is_empty(),
        "{function}: no process running under {} (nothing to kill)",
        targets.localstack_home.display()
    );
    let killed: Vec<u32> = processes.iter().map(|p| p.pid).filter(|pid| kill_9(*pid)).collect();
    Ok(format!("{function}: kill -9 of pids {killed:?}"))
}

/// An open shard: (id, parent, starting hash key, ending hash key).
type OpenShard = (String, Option<String>, u128, u128);

/// The open shards of `stream`, by starting hash key.
async fn open_shards(targets: &Targets, stream: &str) -> anyhow::Result<Vec<OpenShard>> {
    let listed = targets.kinesis.list_shards().stream_name(stream).send().await?;
    let mut shards = Vec::new();
    for s in listed.shards() {
        if s.sequence_number_range()
            .is_some_and(|r| r.ending_sequence_number().is_some())
        {
            continue;
        }
        let range = s.hash_key_range().context("a shard without a hash key range")?;
        shards.push((
            s.shard_id().to_owned(),
            s.parent_shard_id().map(str::to_owned),
            range.starting_hash_key().parse::<u128>()?,
            range.ending_hash_key().parse::<u128>()?,
        ));
    }
    shards.sort_by_key(|s| s.2);
    Ok(shards)
}

async fn wait_active(targets: &Targets, stream: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let summary = targets
            .kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await?;
        if summary
            .stream_description_summary()
            .is_some_and(|s| s.stream_status() == &StreamStatus::Active)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the stream did not become active within 60 s")
}

/// Splits the open shard of `stream` with the widest hash key range in the middle.
async fn split(targets: &Targets, stream: &str) -> anyhow::Result<String> {
    let shards = open_shards(targets, stream).await?;
    let (shard, _, low, high) = shards
        .iter()
        .max_by_key(|s| s.3 - s.2)
        .cloned()
        .context("no open shard")?;
    targets
        .kinesis
        .split_shard()
        .stream_name(stream)
        .shard_to_split(&shard)
        .new_starting_hash_key((low + (high - low) / 2 + 1).to_string())
        .send()
        .await?;
    wait_active(targets, stream).await?;
    Ok(format!(
        "{stream}: split {shard}; {} open shards",
        open_shards(targets, stream).await?.len()
    ))
}

/// Merges two adjacent open shards of `stream`: two children of one split if there are, else
/// the first adjacent pair.
async fn merge(targets: &Targets, stream: &str) -> anyhow::Result<String> {
    let shards = open_shards(targets, stream).await?;
    let pairs: Vec<(&OpenShard, &OpenShard)> = shards
        .windows(2)
        .filter(|w| w[0].3.checked_add(1) == Some(w[1].2))
        .map(|w| (&w[0], &w[1]))
        .collect();
    let (a, b) = pairs
        .iter()
        .find(|(a, b)| a.1.is_some() && a.1 == b.1)
        .or(pairs.first())
        .copied()
        .context("no two adjacent open shards")?;
    targets
        .kinesis
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(&a.0)
        .adjacent_shard_to_merge(&b.0)
        .send()
        .await?;
    wait_active(targets, stream).await?;
    Ok(format!(
        "{stream}: merged {} and {}; {} open shards",
        a.0,
        b.0,
        open_shards(targets, stream).await?.len()
    ))
}

/// The soak's own Postgres cluster, run by `tests/soak/postgres` (so that restarting it does not
/// disturb the machine's Postgres).
#[derive(Debug, Clone)]
pub struct SoakPostgres {
    /// The `tests/soak/postgres` script.
    pub script: PathBuf,
    /// The cluster's data directory.
    pub dir: PathBuf,
}

impl SoakPostgres {
    /// Stops the cluster (fast shutdown: open connections are cut), keeps it down for `down`, and
    /// starts it again.
    pub async fn restart(&self, down: Duration) -> anyhow::Result<String> {
        self.run("stop").await?;
        tokio::time::sleep(down).await;
        self.run("start-again").await?;
        Ok(format!(
            "Postgres ({}) stopped, down for {} s, started again",
            self.dir.display(),
            down.as_secs()
        ))
    }

    async fn run(&self, command: &str) -> anyhow::Result<()> {
        let status = tokio::process::Command::new(&self.script)
            .arg(command)
            .arg(&self.dir)
            .status()
            .await
            .with_context(|| format!("run {} {command}", self.script.display()))?;
        anyhow::ensure!(status.success(), "{} {command}: {status}", self.script.display());
        Ok(())
    }
}
