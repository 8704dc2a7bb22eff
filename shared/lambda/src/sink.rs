//! Where a stage's results and dead letters go.

use std::future::Future;
use std::sync::Mutex;

use shardflow_engine::{Output, ResultId};
use shardflow_runtime::DeadLetter;
use thiserror::Error;

/// A sink refused or failed a write. The batch is not committed and will be redelivered.
#[derive(Debug, Error)]
#[error("sink {sink} failed: {message}")]
pub struct SinkError {
    /// The sink's name.
    pub sink: String,
    /// What went wrong.
    pub message: String,
}

/// A destination of a stage's results.
///
/// Contract: idempotent by [`Output::id`] — writing a result again (after a redelivery) has the
/// effect of writing it once; a later pane of the same window supersedes an earlier one (the
/// pane index says which is later).
pub trait ResultSink<Out>: Send + Sync {
    /// Writes `outputs`; returns only when they are durable.
    fn emit(&self, outputs: &[Output<Out>]) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// A destination of dead letters (undecodable, late and poison records).
///
/// Contract: idempotent by (stage, shard, sequence number, kind).
pub trait DeadLetterSink: Send + Sync {
    /// Writes `letters`; returns only when they are durable.
    fn send(&self, letters: &[DeadLetter]) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// A result sink in memory, keeping every write (with duplicates) for inspection in tests and
/// in the local runner.
#[derive(Debug, Default)]
pub struct MemorySink<Out> {
    writes: Mutex<Vec<Output<Out>>>,
}

impl<Out: Clone> MemorySink<Out> {
    /// An empty sink.
    pub fn new() -> Self {
        MemorySink {
            writes: Mutex::new(Vec::new()),
        }
    }

    /// Every write, in order, duplicates included.
    pub fn writes(&self) -> Vec<Output<Out>> {
        self.writes.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// What an idempotent store holds: one result per id (the last write of it).
    pub fn distinct(&self) -> Vec<Output<Out>> {
        let mut by_id: std::collections::BTreeMap<ResultId, Output<Out>> = std::collections::BTreeMap::new();
        for o in self.writes() {
            by_id.insert(o.id, o);
        }
        by_id.into_values().collect()
    }
}

impl<Out: Clone + Send + Sync> ResultSink<Out> for MemorySink<Out> {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        self.writes
            .lock()
            .map_err(|_| SinkError {
                sink: "memory".into(),
                message: "poisoned lock".into(),
            })?
            .extend_from_slice(outputs);
        Ok(())
    }
}

/// Dead letters in memory.
#[derive(Debug, Default)]
pub struct MemoryDeadLetters {
    letters: Mutex<Vec<DeadLetter>>,
}

impl MemoryDeadLetters {
    /// Every dead letter sent, in order, duplicates included.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.letters.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl DeadLetterSink for MemoryDeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        self.letters
            .lock()
            .map_err(|_| SinkError {
                sink: "memory".into(),
                message: "poisoned lock".into(),
            })?
            .extend_from_slice(letters);
        Ok(())
    }
}
