//! `shardflow gen shop`: the online shop's CDC stream ([`shardflow_shop::ShopGenerator`]) in
//! arrival order, one record per change, partition key `table:primary key`.

use prost::Message;
use shardflow_schemas::ChangeEvent;
use shardflow_shop::{ShopConfig, ShopGenerator};
use tokio::time::Instant;

use crate::output::{GenReport, Output, OutputError, Pacer};

/// How change events are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShopFormat {
    /// The pipeline's Protobuf envelope (length-delimited in a file, as the local runner reads).
    Protobuf,
    /// The envelope's serde JSON form (one line each in a file).
    Json,
}

/// The record of one change: its partition key and encoded bytes.
pub fn encode(event: &ChangeEvent, format: ShopFormat) -> Result<(String, Vec<u8>), serde_json::Error> {
    let key = event.partition_key().unwrap_or_else(|| {
        event
            .source
            .as_ref()
            .map_or_else(|| "shop".to_owned(), |s| s.table.clone())
    });
    let data = match format {
        ShopFormat::Protobuf => event.encode_to_vec(),
        ShopFormat::Json => serde_json::to_vec(event)?,
    };
    Ok((key, data))
}

/// Generates the stream `config` describes into `output` at `rate` records/s (0: unpaced) and
/// waits until everything is stored.
pub async fn generate(
    config: ShopConfig,
    format: ShopFormat,
    rate: f64,
    output: &mut Output,
    mut progress: impl FnMut(u64),
) -> Result<GenReport, OutputError> {
    let mut generator = ShopGenerator::new(config);
    let pacer = Pacer::new(rate);
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    while let Some((_shard, event)) = generator.next_event() {
        pacer.wait_for(records).await;
        let (key, data) = encode(&event, format).map_err(|e| OutputError::Io(e.into()))?;
        bytes += data.len() as u64;
        output.write(key, data).await?;
        records += 1;
        if records.is_multiple_of(10_000) {
            progress(records);
        }
    }
    let producer = output.finish().await?;
    Ok(GenReport {
        records,
        bytes,
        secs: started.elapsed().as_secs_f64(),
        producer,
    })
}
