//! A [`ChangeSink`] into a Kinesis stream through the shared producer (`shardflow-kinesis`).

use shardflow_kinesis::{KinesisProducer, ProducerStats, StreamRecord, MAX_PARTITION_KEY_CHARS};

use crate::encode::Format;
use crate::event::ChangeEvent;
use crate::sink::{ChangeSink, SinkError};

/// Puts each event as one record in a [`Format`], keyed by the format's partition key (for the
/// generic formats [`partition_key`]), so one row's changes land in one shard in commit order.
/// `flush` resolves when the stream has stored every event sent so far — only then does the
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

/// The record's partition key: [`ChangeEvent::partition_key`] (`schema.table|key values`), or,
/// when that is longer than Kinesis allows, `schema.table|#<xxh3 of it>` — still one key per row.
pub fn partition_key(event: &ChangeEvent) -> String {
    let key = event.partition_key();
    if key.chars().count() <= MAX_PARTITION_KEY_CHARS {
        return key;
    }
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    let mut table: String = event
        .source
        .table
        .to_string()
        .chars()
        .take(MAX_PARTITION_KEY_CHARS - 20)
        .collect();
    table.push_str(&format!("|#{hash:016x}"));
    table
}

impl ChangeSink for KinesisSink {
    async fn send(&mut self, events: &[ChangeEvent]) -> Result<(), SinkError> {
        for event in events {
            let record = self.format.encode(event)?;
            self.producer
                .send(StreamRecord::new(record.partition_key, record.data))
                .await?;
            self.sent += 1;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(self.producer.flush().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Op, Source};
    use crate::lsn::Lsn;
    use crate::table::TableName;
    use crate::value::{ColumnValue, Row};

    fn keyed(text: &str) -> ChangeEvent {
        ChangeEvent {
            op: Op::Create,
            before: None,
            after: None,
            key: Row(vec![("id".into(), ColumnValue::Text(text.into()))]),
            source: Source {
                db: "d".into(),
                table: TableName::new("s", "t"),
                lsn: Lsn(1),
                commit_lsn: Lsn(1),
                tx_id: None,
                ts_ms: 0,
                snapshot: false,
            },
            ts_ms: 0,
        }
    }

    #[test]
    fn long_keys_are_hashed_within_the_kinesis_limit_and_stay_distinct() {
        assert_eq!(partition_key(&keyed("7")), "s.t|7");
        let a = partition_key(&keyed(&"a".repeat(300)));
        let b = partition_key(&keyed(&"b".repeat(300)));
        assert!(
            a.starts_with("s.t|#") && a.chars().count() <= MAX_PARTITION_KEY_CHARS,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(a, partition_key(&keyed(&"a".repeat(300))));
    }
}
