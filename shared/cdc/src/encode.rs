//! Output formats of change events (`--format`): each event becomes one record (its bytes and
//! the partition key that keeps one row's changes in order).

use prost::Message;
use shardflow_kinesis::MAX_PARTITION_KEY_CHARS;

use crate::event::ChangeEvent;
use crate::shop::{to_shop, ShopMapError};

/// How change events are encoded: [`crate::proto`] describes the Protobuf envelope, [`ChangeEvent`]'s
/// serialization the JSON payload, [`crate::shop`] the shop's envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The pipeline's generic Protobuf envelope `shardflow.cdc.v1.ChangeEvent` (any table, typed
    /// column values). Partition key `schema.table|key values`.
    #[default]
    Protobuf,
    /// Debezium's JSON payload, one event per line. Partition key as for `protobuf`.
    Json,
    /// The shop's typed envelope `shardflow.shop.v1.ChangeEvent`, for the shop's tables only.
    /// Partition key `table:primary key`, as the shop's generator writes it.
    Shop,
}

impl Format {
    /// Whether records are text lines (JSON) rather than binary messages.
    pub fn is_text(self) -> bool {
        self == Format::Json
    }
}

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// JSON serialization failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The event has no form in the shop's envelope.
    #[error(transparent)]
    Shop(#[from] ShopMapError),
}

/// One encoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The record's partition key (at most 256 characters).
    pub partition_key: String,
    /// The record's bytes (one message or one JSON object, without framing).
    pub data: Vec<u8>,
}

impl Format {
    /// Encodes `event` as one record of this format.
    pub fn encode(self, event: &ChangeEvent) -> Result<Encoded, EncodeError> {
        match self {
            Format::Protobuf => {
                let mut data = Vec::with_capacity(256);
                crate::proto::encode(event, &mut data);
                Ok(Encoded {
                    partition_key: partition_key(event),
                    data,
                })
            }
            Format::Json => Ok(Encoded {
                partition_key: partition_key(event),
                data: serde_json::to_vec(event)?,
            }),
            Format::Shop => {
                let shop = to_shop(event)?;
                let key = shop.partition_key().unwrap_or_else(|| event.source.table.name.clone());
                Ok(Encoded {
                    partition_key: key,
                    data: shop.encode_to_vec(),
                })
            }
        }
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
