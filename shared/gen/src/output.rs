//! Where generated records go (a Kinesis stream or a file) and how fast.

use std::path::Path;
use std::time::Duration;

use shardflow_kinesis::{KinesisProducer, ProducerError, ProducerStats, StreamRecord};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::time::Instant;

/// A generator's output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Writing the file failed.
    #[error("writing the output file: {0}")]
    Io(#[from] std::io::Error),
    /// The producer refused a record or stopped.
    #[error("kinesis: {0}")]
    Kinesis(#[from] ProducerError),
}

/// How a file output frames its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFraming {
    /// Each record prefixed by its length as a Protobuf varint (the shard files of the local runner).
    LengthDelimited,
    /// Each record followed by a newline (JSON lines).
    Lines,
}

/// A destination of generated records.
pub enum Output {
    /// Into a Kinesis stream through the producer.
    Stream(KinesisProducer),
    /// Into a file.
    File {
        /// The buffered file.
        writer: BufWriter<tokio::fs::File>,
        /// How records are framed.
        framing: FileFraming,
    },
}

impl Output {
    /// A file output, created or truncated.
    pub async fn file(path: &Path, framing: FileFraming) -> Result<Output, OutputError> {
        let file = tokio::fs::File::create(path).await?;
        Ok(Output::File {
            writer: BufWriter::with_capacity(1 << 20, file),
            framing,
        })
    }

    /// Writes one record (a file ignores the partition key).
    pub async fn write(&mut self, partition_key: String, data: Vec<u8>) -> Result<(), OutputError> {
        match self {
            Output::Stream(producer) => producer.send(StreamRecord::new(partition_key, data)).await?,
            Output::File { writer, framing } => match framing {
                FileFraming::LengthDelimited => {
                    let mut prefix = Vec::with_capacity(10);
                    prost::encoding::encode_varint(data.len() as u64, &mut prefix);
                    writer.write_all(&prefix).await?;
                    writer.write_all(&data).await?;
                }
                FileFraming::Lines => {
                    writer.write_all(&data).await?;
                    writer.write_all(b"\n").await?;
                }
            },
        }
        Ok(())
    }

    /// Resolves when everything written is stored: the stream acknowledged it, or the file is
    /// flushed. Returns the producer's counters for a stream.
    pub async fn finish(&mut self) -> Result<Option<ProducerStats>, OutputError> {
        match self {
            Output::Stream(producer) => {
                producer.flush().await?;
                Ok(Some(producer.stats()))
            }
            Output::File { writer, .. } => {
                writer.flush().await?;
                Ok(None)
            }
        }
    }
}

/// Paces a generator to `rate` records per second of wall-clock time (0: as fast as possible).
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    started: Instant,
}

impl Pacer {
    /// A pacer starting now.
    pub fn new(rate: f64) -> Self {
        Pacer {
            rate,
            started: Instant::now(),
        }
    }

    /// Waits until record number `n` (0-based) is due.
    pub async fn wait_for(&self, n: u64) {
        if self.rate > 0.0 && self.rate.is_finite() {
            let due = self.started + Duration::from_secs_f64(n as f64 / self.rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
    }
}

/// What a generator run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenReport {
    /// Records written (and, for a stream, acknowledged).
    pub records: u64,
    /// Bytes of record data.
    pub bytes: u64,
    /// Seconds from the first record to the last acknowledgement (or file flush).
    pub secs: f64,
    /// The producer's counters, for a stream.
    pub producer: Option<ProducerStats>,
}

impl GenReport {
    /// Records per second over the run.
    pub fn records_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.records as f64 / self.secs
        } else {
            0.0
        }
    }
}
