//! The asynchronous producer: [`KinesisProducer::send`] queues a record (waiting while the
//! buffer is full), a background task sends the queue as `PutRecords` calls (several in flight),
//! retries exactly the failed records with backoff and jitter, and [`KinesisProducer::flush`]
//! resolves once every record sent before it is stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::batch::{check_record, is_retryable, Backoff, InvalidRecord, PutRecordsLimits, RecordResult, StreamRecord};
use crate::queue::{NextCall, Queued, SendQueue};
use crate::transport::{CallError, PutRecordsTransport};

/// Buffer bytes charged per record on top of its data and key (the bookkeeping around it).
const RECORD_OVERHEAD_BYTES: usize = 96;

/// How the producer batches, retries and buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerConfig {
    /// `PutRecords` limits.
    pub limits: PutRecordsLimits,
    /// Backoff of a failed record's retries.
    pub backoff: Backoff,
    /// Bytes of records (data, key and a small overhead each) held until stored; `send` waits
    /// while the buffer is full. Raised to at least two maximal records.
    pub buffer_bytes: usize,
    /// `PutRecords` calls in flight at once.
    pub calls_in_flight: usize,
    /// Queued records one call looks through for keys not in flight.
    pub scan_window: usize,
}

impl Default for ProducerConfig {
    /// 32 MiB of buffer, 4 calls in flight, the service limits and [`Backoff::default`].
    fn default() -> Self {
        ProducerConfig {
            limits: PutRecordsLimits::default(),
            backoff: Backoff::default(),
            buffer_bytes: 32 << 20,
            calls_in_flight: 4,
            scan_window: 20_000,
        }
    }
}

/// Why the producer refused a record or stopped. After any error but [`ProducerError::Invalid`],
/// the producer has stopped: records not yet stored are dropped and every later call fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The record can never be put (too large, bad partition key); nothing was queued.
    #[error(transparent)]
    Invalid(#[from] InvalidRecord),
    /// A record failed with a code that retrying cannot fix.
    #[error("record with partition key {partition_key:?} was rejected: {code}: {message}")]
    Rejected {
        /// The record's partition key.
        partition_key: String,
        /// The error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// A record still failed after the configured number of retries.
    #[error("record with partition key {partition_key:?} still failed after {attempts} attempts: {last_error}")]
    RetriesExhausted {
        /// The record's partition key.
        partition_key: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last_error: String,
    },
    /// A whole call failed in a way retrying cannot fix.
    #[error("PutRecords failed: {0}")]
    Call(String),
    /// The service answered with a different number of results than records sent.
    #[error("PutRecords returned {got} results for {sent} records")]
    ResultCountMismatch {
        /// Records sent.
        sent: usize,
        /// Results received.
        got: usize,
    },
    /// The background task is gone (it panicked or the runtime is shutting down).
    #[error("the Kinesis producer stopped")]
    Stopped,
}

/// Counters of a producer since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Records stored by the stream.
    pub stored: u64,
    /// `PutRecords` calls completed (successfully or not).
    pub calls: u64,
    /// Record failures that were retried.
    pub retried: u64,
    /// Of those, failures for `ProvisionedThroughputExceededException` (per record or per call).
    pub throttled: u64,
}

#[derive(Default)]
struct Shared {
    failed: OnceLock<ProducerError>,
    stored: AtomicU64,
    calls: AtomicU64,
    retried: AtomicU64,
    throttled: AtomicU64,
}

enum Command {
    Record(StreamRecord, OwnedSemaphorePermit),
    Flush(oneshot::Sender<Result<(), ProducerError>>),
}

/// A Kinesis producer (see the crate documentation for its guarantees). Create it inside a Tokio
/// runtime; it runs a background task on that runtime. Dropping it stops the task at once,
/// abandoning records not yet stored, as a crash would: call [`flush`](Self::flush) first.
pub struct KinesisProducer {
    commands: mpsc::UnboundedSender<Command>,
    buffer: Arc<Semaphore>,
    shared: Arc<Shared>,
    config: ProducerConfig,
    task: JoinHandle<()>,
}

impl KinesisProducer {
    /// A producer sending through `transport` (e.g. [`crate::KinesisTransport`]).
    pub fn new<T: PutRecordsTransport>(transport: T, mut config: ProducerConfig) -> Self {
        config.buffer_bytes = config
            .buffer_bytes
            .max(2 * (config.limits.max_record_bytes + RECORD_OVERHEAD_BYTES))
            .min(Semaphore::MAX_PERMITS);
        config.calls_in_flight = config.calls_in_flight.max(1);
        let (commands, receiver) = mpsc::unbounded_channel();
        let buffer = Arc::new(Semaphore::new(config.buffer_bytes));
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            transport: Arc::new(transport),
            queue: SendQueue::new(config.limits, config.scan_window),
            config,
            shared: Arc::clone(&shared),
            buffer: Arc::clone(&buffer),
            rng: SmallRng::seed_from_u64(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
            ),
        };
        let task = tokio::spawn(worker.run(receiver));
        KinesisProducer {
            commands,
            buffer,
            shared,
            config,
            task,
        }
    }

    /// The configuration in force (after the buffer was raised to its minimum).
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// Queues `record`, waiting while the buffer is full. Refuses a record that can never be put
    /// ([`ProducerError::Invalid`], the producer stays usable); fails once the producer stopped.
    /// Records of one partition key are stored in the order they were sent.
    pub async fn send(&self, record: StreamRecord) -> Result<(), ProducerError> {
        check_record(&record, &self.config.limits)?;
        if let Some(e) = self.shared.failed.get() {
            return Err(e.clone());
        }
        let cost = u32::try_from(record.billed_bytes() + RECORD_OVERHEAD_BYTES).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.buffer)
            .acquire_many_owned(cost)
            .await
            .map_err(|_| self.stopped())?;
        self.commands
            .send(Command::Record(record, permit))
            .map_err(|_| self.stopped())
    }

    /// Resolves once every record sent before this call is stored by the stream, or with the
    /// error that stopped the producer.
    pub async fn flush(&self) -> Result<(), ProducerError> {
        let (done, wait) = oneshot::channel();
        self.commands.send(Command::Flush(done)).map_err(|_| self.stopped())?;
        wait.await.map_err(|_| self.stopped())?
    }

    /// Counters since the producer started.
    pub fn stats(&self) -> ProducerStats {
        ProducerStats {
            stored: self.shared.stored.load(Ordering::Relaxed),
            calls: self.shared.calls.load(Ordering::Relaxed),
            retried: self.shared.retried.load(Ordering::Relaxed),
            throttled: self.shared.throttled.load(Ordering::Relaxed),
        }
    }

    fn stopped(&self) -> ProducerError {
        self.shared.failed.get().cloned().unwrap_or(ProducerError::Stopped)
    }
}

impl Drop for KinesisProducer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Entry = Queued<OwnedSemaphorePermit>;

struct CallDone {
    entries: Vec<Entry>,
    result: Result<Vec<RecordResult>, CallError>,
}

struct Worker<T> {
    transport: Arc<T>,
    queue: SendQueue<OwnedSemaphorePermit>,
    config: ProducerConfig,
    shared: Arc<Shared>,
    buffer: Arc<Semaphore>,
    rng: SmallRng,
}

impl<T: PutRecordsTransport> Worker<T> {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut calls: JoinSet<CallDone> = JoinSet::new();
        let mut flushes: Vec<(u64, oneshot::Sender<Result<(), ProducerError>>)> = Vec::new();
        let mut open = true;
        loop {
            if !open && calls.is_empty() && self.queue.outstanding() == 0 {
                return;
            }
            let mut wake = None;
            while calls.len() < self.config.calls_in_flight {
                match self.queue.next_call(Instant::now().into_std()) {
                    NextCall::Call(entries) => {
                        let transport = Arc::clone(&self.transport);
                        calls.spawn(async move {
                            let records: Vec<StreamRecord> = entries.iter().map(|e| e.record.clone()).collect();
                            let result = transport.put_records(&records).await;
                            CallDone { entries, result }
                        });
                    }
                    NextCall::WaitUntil(t) => {
                        wake = Some(Instant::from_std(t));
                        break;
                    }
                    NextCall::Idle => break,
                }
            }
            tokio::select! {
                command = commands.recv(), if open => match command {
                    None => open = false,
                    Some(command) => {
                        self.accept(command, &mut flushes);
                        while let Ok(command) = commands.try_recv() {
                            self.accept(command, &mut flushes);
                        }
                    }
                },
                Some(done) = calls.join_next(), if !calls.is_empty() => {
                    let outcome = match done {
                        Ok(done) => self.complete(done),
                        Err(_) => Err(ProducerError::Stopped),
                    };
                    if let Err(e) = outcome {
                        self.fail(e, &mut calls, flushes);
                        return;
                    }
                    self.answer_flushes(&mut flushes);
                }
                () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
        }
    }

    fn accept(&mut self, command: Command, flushes: &mut Vec<(u64, oneshot::Sender<Result<(), ProducerError>>)>) {
        match command {
            Command::Record(record, permit) => {
                self.queue.push(record, permit);
            }
            Command::Flush(done) => match self.queue.last_seq() {
                Some(seq) if !self.queue.stored_through(seq) => flushes.push((seq, done)),
                _ => {
                    let _ = done.send(Ok(()));
                }
            },
        }
    }

    fn answer_flushes(&mut self, flushes: &mut Vec<(u64, oneshot::Sender<Result<(), ProducerError>>)>) {
        let mut waiting = Vec::with_capacity(flushes.len());
        for (seq, done) in flushes.drain(..) {
            if self.queue.stored_through(seq) {
                let _ = done.send(Ok(()));
            } else {
                waiting.push((seq, done));
            }
        }
        *flushes = waiting;
    }

    /// Applies a completed call's results: stored records are released, failed ones retried.
    fn complete(&mut self, done: CallDone) -> Result<(), ProducerError> {
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let results = match done.result {
            Ok(results) => results,
            Err(CallError::Retryable(message)) => {
                let throttled = message.contains("ProvisionedThroughputExceeded");
                for entry in done.entries {
                    self.retry(entry, message.clone(), throttled, now)?;
                }
                return Ok(());
            }
            Err(CallError::Fatal(message)) => return Err(ProducerError::Call(message)),
        };
        if results.len() != done.entries.len() {
            return Err(ProducerError::ResultCountMismatch {
                sent: done.entries.len(),
                got: results.len(),
            });
        }
        for (entry, result) in done.entries.into_iter().zip(results) {
            match result {
                RecordResult::Stored { .. } => {
                    self.shared.stored.fetch_add(1, Ordering::Relaxed);
                    self.queue.stored(entry);
                }
                RecordResult::Failed { code, message } if is_retryable(&code) => {
                    let throttled = code == "ProvisionedThroughputExceededException";
                    self.retry(entry, format!("{code}: {message}"), throttled, now)?;
                }
                RecordResult::Failed { code, message } => {
                    return Err(ProducerError::Rejected {
                        partition_key: entry.record.partition_key,
                        code,
                        message,
                    })
                }
            }
        }
        Ok(())
    }

    fn retry(&mut self, entry: Entry, error: String, throttled: bool, now: Instant) -> Result<(), ProducerError> {
        self.shared.retried.fetch_add(1, Ordering::Relaxed);
        if throttled {
            self.shared.throttled.fetch_add(1, Ordering::Relaxed);
        }
        let jitter: f64 = self.rng.random();
        let Some(delay) = self.config.backoff.delay(entry.attempts, jitter) else {
            return Err(ProducerError::RetriesExhausted {
                partition_key: entry.record.partition_key,
                attempts: entry.attempts + 1,
                last_error: error,
            });
        };
        tracing::debug!(key = %entry.record.partition_key, attempt = entry.attempts + 1, ?delay, %error, "retrying a record");
        self.queue
            .retry_later(entry, (now + delay.max(Duration::from_millis(1))).into_std());
        Ok(())
    }

    fn fail(
        &mut self,
        error: ProducerError,
        calls: &mut JoinSet<CallDone>,
        flushes: Vec<(u64, oneshot::Sender<Result<(), ProducerError>>)>,
    ) {
        tracing::error!(%error, "the Kinesis producer stopped");
        let _ = self.shared.failed.set(error.clone());
        self.buffer.close();
        calls.abort_all();
        self.queue.clear();
        for (_, done) in flushes {
            let _ = done.send(Err(error.clone()));
        }
    }
}
