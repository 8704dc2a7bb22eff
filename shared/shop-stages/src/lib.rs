//! # shardflow-shop-stages
//!
//! The seed platform's pipelines ([`shardflow_shop::pipelines`]) as Lambda stages: for each, the
//! decoder, the sinks and the dead-letter destination its function's environment names. A
//! function's `main` is one call:
//!
//! ```no_run
//! # async fn main_of_receipts() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! shardflow_lambda::run(shardflow_shop_stages::receipts().await?).await
//! # }
//! ```
//!
//! Besides the stage variables of [`shardflow_lambda::StageEnv`] and the dead-letter destination
//! of [`shardflow_connectors::DeadLetterDestination`]:
//!
//! | stage | input | variables | output |
//! |---|---|---|---|
//! | [`receipts()`] | shop CDC (Protobuf `ChangeEvent`) | `SHARDFLOW_TOPIC_ARN` | one SNS message per completed purchase |
//! | [`receipts_next()`] | as `receipts` | as `receipts` | as `receipts`, with one column more: the next release of `receipts`, deployed over it from its savepoint (blue/green with new code) |
//! | [`revenue_keyby()`] | shop CDC | `SHARDFLOW_SHUFFLE_STREAM` | inserted order lines keyed by (product, currency) to the shuffle stream |
//! | [`revenue_shuffled()`] | the shuffle stream | `SHARDFLOW_UPSTREAM_STAGE`, `SHARDFLOW_UPSTREAM_INPUT_STREAM`, `SHARDFLOW_IDLENESS_MS`, `SHARDFLOW_DATABASE_URL` or `SHARDFLOW_DATABASE_SECRET_ARN`, `SHARDFLOW_REVENUE_TABLE` (default `shop_revenue`) | rows upserted in Postgres (table created if missing: [`REVENUE_TABLE_SQL`]) |
//! | [`order_enrich_keyby()`] | shop CDC | `SHARDFLOW_SHUFFLE_STREAM` | the rows of the four joined tables keyed by customer id to the shuffle stream |
//! | [`order_enrich_shuffled()`] | the shuffle stream | `SHARDFLOW_UPSTREAM_STAGE`, `SHARDFLOW_UPSTREAM_INPUT_STREAM`, `SHARDFLOW_IDLENESS_MS`, `SHARDFLOW_OUTPUT_STREAM`, `SHARDFLOW_OUTPUT_BUCKET` | enriched orders to a Kinesis stream and S3 (`enriched-orders/`) |
//!
//! [`replay_targets`] names them for `shardflow replay` (`shardflow_lifecycle::replay`).
//!
//! # Blue/green
//! With `SHARDFLOW_CONTROL_TABLE` set, every stage but `archive` writes through a
//! [`shardflow_bluegreen::ColourGate`]: the results its colour (`SHARDFLOW_COLOUR`)
//! owns go live, the others to its shadow outputs — the shadow topic
//! (`SHARDFLOW_SHADOW_TOPIC_ARN`), the table `{table}_shadow_{colour}`, the prefix
//! `shadow/{colour}/enriched-orders/`. `shardflow switch` and `shardflow rollback` move the cut;
//! `shardflow validate` compares a colour's shadow revenue with the live one.
//!
//! # Keys and shards
//! The CDC stream is partitioned by table and primary key. `receipts` keys by order id, which an
//! order's changes carry in their partition key, so it is exact on any number of shards.
//! `revenue` (per product) and `order-enrich` (per customer) key by other columns, and each runs
//! as a split pair over a shuffle stream (issue 13, `docs/shuffle-and-checkpoints.md`), exact on
//! any number of CDC shards: [`revenue_keyby()`] → shuffle stream → [`revenue_shuffled()`], and
//! [`order_enrich_keyby()`] → shuffle stream → [`order_enrich_shuffled()`].

#![warn(missing_docs)]

mod database;
mod order_enrich;
mod order_enrich_split;
mod receipts;
mod replay;
mod revenue;
mod revenue_split;
mod split;

pub use shardflow_lambda::StageSetupError;

pub use database::{database_url, DATABASE_SECRET_ARN_ENV, DATABASE_URL_ENV};
pub use order_enrich::{
    OrderEnrichGate, OrderEnrichSink, ENRICHED_ORDERS_PREFIX, OUTPUT_BUCKET_ENV, OUTPUT_STREAM_ENV,
};
pub use order_enrich_split::{
    order_enrich_keyby, order_enrich_shuffled, OrderEnrichKeyByStage, OrderEnrichShuffledStage,
};
pub use receipts::{
    receipts, receipts_next, ReceiptsNextStage, ReceiptsStage, ReceiptsStageOf, SHADOW_TOPIC_ARN_ENV, TOPIC_ARN_ENV,
};
pub use replay::{check_targets, replay_targets};
pub use revenue::{revenue_table_sql, RevenueGate, RevenueSink, RevenueTableRow, REVENUE_TABLE_ENV, REVENUE_TABLE_SQL};
pub use revenue_split::{revenue_keyby, revenue_shuffled, RevenueKeyByStage, RevenueShuffledStage};
pub use split::{
    KeyByStage, ShuffledStage, IDLENESS_MS_ENV, SHUFFLE_STREAM_ENV, UPSTREAM_INPUT_STREAM_ENV, UPSTREAM_STAGE_ENV,
};

/// The decoder of the shop's CDC stream: one Protobuf `ChangeEvent` per record.
pub type ShopDecoder = shardflow_stage::ProtobufDecoder<shardflow_schemas::ChangeEvent>;
