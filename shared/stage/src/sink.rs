//! Where a stage's results and dead letters go: the sink traits every connector implements, and
//! sinks in memory for tests.

use std::future::Future;
use std::sync::Mutex;

use crate::DeadLetter;
use shardflow_engine::{ClosedBucket, Output, ResultId};
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

    /// Writes the event-time buckets a batch closed (pipelines ending with
    /// `Stream::sink_with_buckets`); returns only when they are durable. A bucket closes again
    /// with the same results after a redelivery, so writing it under a name made of its start and
    /// [`ClosedBucket::first_id`] is idempotent. Sinks that write results one by one ignore
    /// buckets (the default).
    fn emit_buckets(&self, buckets: &[ClosedBucket<Out>]) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = buckets;
        std::future::ready(Ok(()))
    }
}

/// A destination of dead letters (undecodable, late and poison records).
///
/// Contract: idempotent by (stage, shard, sequence number, kind).
pub trait DeadLetterSink: Send + Sync {
    /// Writes `letters`; returns only when they are durable.
    fn send(&self, letters: &[DeadLetter]) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// A result sink in memory, keeping every write (with duplicates) for inspection in tests.
#[derive(Debug, Default)]
pub struct MemoryResultSink<Out> {
    writes: Mutex<Vec<Output<Out>>>,
}

impl<Out: Clone> MemoryResultSink<Out> {
    /// An empty sink.
    pub fn new() -> Self {
        MemoryResultSink {
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

impl<Out: Clone + Send + Sync> ResultSink<Out> for MemoryResultSink<Out> {
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

/// Two sinks fed the same results, the first before the second (a stage that writes its results
/// to, say, the next stage's stream and an S3 archive). Idempotent because both are; an emit
/// that fails in either fails as a whole, and the redelivery writes both again.
#[derive(Debug)]
pub struct BothSinks<A, B> {
    first: A,
    second: B,
}

impl<A, B> BothSinks<A, B> {
    /// `first`, then `second`.
    pub fn new(first: A, second: B) -> Self {
        BothSinks { first, second }
    }
}

impl<Out: Sync, A: ResultSink<Out>, B: ResultSink<Out>> ResultSink<Out> for BothSinks<A, B> {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        self.first.emit(outputs).await?;
        self.second.emit(outputs).await
    }

    async fn emit_buckets(&self, buckets: &[ClosedBucket<Out>]) -> Result<(), SinkError> {
        self.first.emit_buckets(buckets).await?;
        self.second.emit_buckets(buckets).await
    }
}

/// A sink of `To` values fed a pipeline's `From` results through a conversion (a table row type
/// of the sink's crate made of a result type of the pipeline's crate, say). Ids, timestamps and
/// panes are kept.
pub struct MapSink<S, F> {
    inner: S,
    convert: F,
}

impl<S, F> MapSink<S, F> {
    /// `inner` fed `convert(value)` for every result.
    pub fn new(inner: S, convert: F) -> Self {
        MapSink { inner, convert }
    }
}

impl<From, To, S, F> ResultSink<From> for MapSink<S, F>
where
    From: Sync,
    To: Send + Sync,
    S: ResultSink<To>,
    F: Fn(&From) -> To + Send + Sync,
{
    async fn emit(&self, outputs: &[Output<From>]) -> Result<(), SinkError> {
        let converted: Vec<Output<To>> = outputs.iter().map(|o| self.output(o)).collect();
        self.inner.emit(&converted).await
    }

    async fn emit_buckets(&self, buckets: &[ClosedBucket<From>]) -> Result<(), SinkError> {
        let converted: Vec<ClosedBucket<To>> = buckets
            .iter()
            .map(|b| ClosedBucket {
                start: b.start,
                end: b.end,
                results: b.results.iter().map(|o| self.output(o)).collect(),
            })
            .collect();
        self.inner.emit_buckets(&converted).await
    }
}

impl<S, F> MapSink<S, F> {
    /// `o` with its value converted.
    fn output<From, To>(&self, o: &Output<From>) -> Output<To>
    where
        F: Fn(&From) -> To,
    {
        Output {
            id: o.id,
            timestamp: o.timestamp,
            pane: o.pane,
            value: (self.convert)(&o.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardflow_engine::ResultId;

    fn output(value: u32) -> Output<u32> {
        Output {
            id: ResultId(u128::from(value)),
            timestamp: i64::from(value),
            pane: None,
            value,
        }
    }

    #[tokio::test]
    async fn both_sinks_receive_every_result_and_a_map_sink_converts_values() {
        let both = BothSinks::new(
            MemoryResultSink::new(),
            MapSink::new(MemoryResultSink::new(), |v: &u32| v.to_string()),
        );
        both.emit(&[output(1), output(2)]).await.unwrap();
        assert_eq!(both.first.writes().iter().map(|o| o.value).collect::<Vec<_>>(), [1, 2]);
        let mapped = both.second.inner.writes();
        assert_eq!(mapped.iter().map(|o| o.value.as_str()).collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(mapped[1].id, output(2).id);
    }
}
