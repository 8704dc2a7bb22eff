//! Output formats of change events (`--format`): each event becomes one record (its bytes and
//! the partition key that keeps one row's changes in order).

use prost::Message;

use crate::event::ChangeEvent;
use crate::kinesis_sink::partition_key;
use crate::shop::{to_shop, ShopMapError};

/// How change events are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The pipeline's generic Protobuf envelope `shardflow.cdc.v1.ChangeEvent` (any table, typed
    /// column values; see [`crate::proto`]). Partition key `schema.table|key values`.
    #[default]
    Protobuf,
    /// Debezium's JSON payload (see [`ChangeEvent`]'s serialization). Partition key as for
    /// `protobuf`.
    Json,
    /// The shop's typed envelope `shardflow.shop.v1.ChangeEvent`, for the shop's tables only (see
    /// [`crate::shop`]). Partition key `table:primary key`, as the shop's generator writes it.
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
