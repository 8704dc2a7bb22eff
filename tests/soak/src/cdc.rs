//! The CDC part of the feed: the shop's workload executed against the soak's own Postgres
//! (`shardflow_gen::postgres::load_shop`) while `shardflow cdc --format shop`, a child process
//! of the soak, puts the committed changes into the input stream; the reader is killed with
//! `SIGKILL` halfway and started again, resuming from its slot (at least once: a change it put but
//! had not confirmed comes again, byte for byte).
//!
//! The CDC phase comes after the generator's own feed: a change's event time is its commit time,
//! later than every generated event time, so the phase moves the watermarks on and no record of
//! either part is late because of the other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prost::Message as _;
use shardflow_schemas::ChangeEvent;
use shardflow_shop::{ShopConfig, ShopGenerator};

use crate::checks::Check;

/// The replication slot and publication of the soak's reader.
const SLOT: &str = "soak";
/// The Postgres schema of the shop's tables.
const SCHEMA: &str = "shop";
/// The shop's tables, as the reader names them.
const TABLES: &str = "shop.customers,shop.orders,shop.order_lines,shop.payments,shop.shipments";

/// The workload of the CDC phase: `events` changes from its own seed (orders and customers of
/// the same ids as the generator's feed are other rows in other windows: their event times are
/// the commit times).
pub fn workload(seed: u64, events: u64) -> ShopConfig {
    ShopConfig::new(seed ^ 0xcdc, events, 1)
}

/// Every change `load_shop` commits for `config`, in commit order (the generator's
/// transactions; the initial customers are inserted, so the reader sees them as creates).
pub fn committed_changes(config: &ShopConfig) -> Vec<ChangeEvent> {
    let mut generator = ShopGenerator::in_commit_order(config.clone());
    std::iter::from_fn(|| generator.next_transaction()).flatten().collect()
}

/// A connection to the soak's Postgres with the shop's tables created in their own schema.
pub async fn prepare(database_url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .context("connect to the soak's Postgres")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("the CDC workload's connection ended: {e}");
        }
    });
    shardflow_gen::postgres::prepare_schema(&client, SCHEMA, true)
        .await
        .context("create the shop's tables")?;
    Ok(client)
}

/// The `shardflow cdc` reader as a child process (its output appended to a log file).
#[derive(Debug, Clone)]
pub struct CdcReader {
    command: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Arc<Mutex<Option<Child>>>,
}

impl CdcReader {
    /// Starts `shardflow` (the binary `command`) reading the shop's tables of `database_url` into
    /// `stream` (endpoint and credentials from this process's environment), creating its slot
    /// and publication, and waits until the slot exists.
    pub async fn start(command: &Path, database_url: &str, stream: &str, log: &Path) -> anyhow::Result<CdcReader> {
        let args = [
            "cdc",
            "--database-url",
            database_url,
            "--slot",
            SLOT,
            "--publication",
            SLOT,
            "--tables",
            TABLES,
            "--format",
            "shop",
            "--stream",
            stream,
            "--create-slot",
            "--create-publication",
            "--snapshot",
            "never",
            "--signal-table",
            "shop.shardflow_cdc_signal",
        ]
        .map(str::to_owned)
        .to_vec();
        let reader = CdcReader {
            command: command.to_owned(),
            args,
            log: log.to_owned(),
            child: Arc::new(Mutex::new(None)),
        };
        reader.spawn()?;
        reader.await_slot(database_url, Duration::from_secs(60)).await?;
        Ok(reader)
    }

    fn spawn(&self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let child = Command::new(&self.command)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.command.display()))?;
        *self.child.lock().unwrap_or_else(PoisonError::into_inner) = Some(child);
        Ok(())
    }

    async fn await_slot(&self, database_url: &str, deadline: Duration) -> anyhow::Result<()> {
        let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let started = Instant::now();
        loop {
            let rows = client
                .query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&SLOT])
                .await?;
            if !rows.is_empty() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                anyhow::bail!(
                    "shardflow cdc exited ({status}) before creating its slot: see {}",
                    self.log.display()
                );
            }
            anyhow::ensure!(
                started.elapsed() < deadline,
                "shardflow cdc created no slot within {deadline:?}: see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The exit status, if the reader exited.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// `kill -9` of the reader, `down` of nothing, and a new reader on the same slot; what it did.
    pub async fn kill_and_restart(&self, down: Duration) -> anyhow::Result<String> {
        let pid = {
            let mut guard = self.child.lock().unwrap_or_else(PoisonError::into_inner);
            let child = guard.as_mut().context("no reader runs")?;
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the reader had already exited ({status}): see {}", self.log.display());
            }
            child.kill().context("SIGKILL the reader")?;
            child.wait()?;
            child.id()
        };
        tokio::time::sleep(down).await;
        self.spawn()?;
        Ok(format!(
            "SIGKILL of shardflow cdc (pid {pid}), started again after {:.0} s",
            down.as_secs_f64()
        ))
    }

    /// Stops the reader (SIGKILL; its slot keeps the position).
    pub fn stop(&self) {
        if let Some(child) = self.child.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The path of the `shardflow` command next to this binary (both are built by `cargo test
/// --workspace --no-run`).
pub fn shardflow_command() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let command = exe.parent().context("the soak's directory")?.join("shardflow");
    anyhow::ensure!(
        command.is_file(),
        "{} is missing: build it with cargo test --workspace --no-run",
        command.display()
    );
    Ok(command)
}

/// The stream's CDC records against the committed changes: every change arrived, none that was
/// not committed; a repeat (the same change — partition key and LSN — again, after the reader's
/// kill; its envelope's processing time differs) is allowed, the reader is at least once, and
/// counted. Returns the check and the repeats.
pub fn changes_arrived(cdc_records: &[&[u8]], committed: &[ChangeEvent]) -> (Check, usize) {
    let mut changes: std::collections::BTreeSet<(String, u64)> = std::collections::BTreeSet::new();
    let (mut readable, mut unreadable) = (0usize, 0usize);
    for data in cdc_records {
        let event = ChangeEvent::decode(*data).ok();
        let lsn = event.as_ref().and_then(|e| e.source.as_ref()).map(|s| s.lsn);
        match (event.as_ref().and_then(ChangeEvent::partition_key), lsn) {
            (Some(key), Some(lsn)) => {
                readable += 1;
                changes.insert((key, lsn));
            }
            _ => unreadable += 1,
        }
    }
    let repeats = readable - changes.len();
    let mut got: BTreeMap<String, i64> = BTreeMap::new();
    for (key, _) in changes {
        *got.entry(key).or_default() += 1;
    }
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for key in committed.iter().filter_map(ChangeEvent::partition_key) {
        *want.entry(key).or_default() += 1;
    }
    let missing: i64 = want
        .iter()
        .map(|(k, n)| (n - got.get(k).copied().unwrap_or(0)).max(0))
        .sum();
    let extra: i64 = got
        .iter()
        .map(|(k, n)| (n - want.get(k).copied().unwrap_or(0)).max(0))
        .sum();
    (
        Check::new(
            "the input stream holds every change committed to Postgres (CDC, at least once)",
            missing == 0 && extra == 0 && unreadable == 0,
            format!(
                "{} committed, {} CDC records: {missing} missing, {extra} not committed, {repeats} repeats, \
                 {unreadable} unreadable",
                committed.len(),
                cdc_records.len()
            ),
        ),
        repeats,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_invented_change_fails_the_cdc_check_and_a_repeat_does_not() {
        let committed = committed_changes(&workload(7, 40));
        assert!(committed.len() >= 40, "{} changes", committed.len());
        let records: Vec<Vec<u8>> = committed.iter().map(|e| e.encode_to_vec()).collect();
        let all: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let (check, repeats) = changes_arrived(&all, &committed);
        assert!(check.passed, "{}", check.detail);
        assert_eq!(repeats, 0);

        let repeated = [all.clone(), all[..3].to_vec()].concat();
        let (check, repeats) = changes_arrived(&repeated, &committed);
        assert!(check.passed, "{}", check.detail);
        assert_eq!(repeats, 3);

        // a repeat sent again after a restart carries another processing time: still a repeat
        let mut again = committed[5].clone();
        again.ts_ms += 1_000;
        let again = again.encode_to_vec();
        let (check, repeats) = changes_arrived(&[all.clone(), vec![again.as_slice()]].concat(), &committed);
        assert!(check.passed, "{}", check.detail);
        assert_eq!(repeats, 1);

        let (check, _) = changes_arrived(&all[1..], &committed);
        assert!(!check.passed, "a lost change passed: {}", check.detail);
        let (check, _) = changes_arrived(&all, &committed[1..]);
        assert!(!check.passed, "an invented change passed: {}", check.detail);
    }
}
