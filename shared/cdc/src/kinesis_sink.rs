//! A [`ChangeSink`] into a Kinesis stream through the shared producer (`shardflow-kinesis`).

use shardflow_kinesis::{KinesisProducer, ProducerStats, StreamRecord};

use crate::encode::Format;
use crate::event::ChangeEvent;
use crate::sink::{ChangeSink, ChangeSinkError};

/// Puts each event as one record in a [`Format`], keyed by the format's partition key (for the
/// generic formats [`partition_key`](crate::encode::partition_key)), so one row's changes land in
/// one shard in commit order. `flush` resolves when the stream has stored every event sent so far — only then does the
/// reader confirm the LSN.
pub struct KinesisSink {
    producer: KinesisProducer,
    format: Format,
    sent: u64,
}

impl KinesisSink {
    /// A sink sending through `producer`, encoding events in `format`.
    pub fn new(producer: KinesisProducer, format: Format) -> Self {
        KinesisSink {
            producer,
            format,
            sent: 0,
        }
    }

    /// Events handed to the producer so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The producer's counters.
    pub fn stats(&self) -> ProducerStats {
        self.producer.stats()
    }
}

impl ChangeSink for KinesisSink {
    async fn send(&mut self, events: &[ChangeEvent]) -> Result<(), ChangeSinkError> {
        for event in events {
            let record = self.format.encode(event)?;
            self.producer
                .send(StreamRecord::new(record.partition_key, record.data))
                .await?;
            self.sent += 1;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ChangeSinkError> {
        Ok(self.producer.flush().await?)
    }
}
