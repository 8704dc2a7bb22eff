//! # shardflow-customer360
//!
//! The third example application: a customer-360 activity view over an OLTP database whose
//! tables arrive as change streams, one Kinesis stream per table (Debezium's topic-per-table
//! layout). Each of its twenty tables ([`TABLES`]) is read by a tagging stage of its own; all of
//! them write one shuffle stream keyed by customer, and one window-join stage joins the twenty
//! sides per customer and 10-second window into an [`Activity`] row, written to S3.
//!
//! ```
//! let app = shardflow_customer360::app().describe().unwrap();
//! // twenty table stages and the join stage, all served by one function
//! assert_eq!(app.stages.len(), shardflow_customer360::TABLES.len() + 1);
//! assert!(app.stages.iter().all(|s| s.function == shardflow_customer360::FUNCTION));
//! ```
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use shardflow_app::{App, JoinDef, Sink, Source};
use shardflow_engine::{Pipeline, SplitPipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_stage::Tagged;

/// The application's name: its resources' prefix.
pub const APP: &str = "customer360";
/// The join stage's name (and its input stages' prefix).
pub const JOIN: &str = "activity";
/// The function crate serving every stage.
pub const FUNCTION: &str = "customer360";
/// The S3 sink of the join's rows (its bucket variable is `SHARDFLOW_SINK_ACTIVITY_BUCKET`).
pub const SINK: &str = "activity";
/// The key prefix of the rows in the sink's bucket.
pub const SINK_PREFIX: &str = "activity";
/// The tumbling window of the join (10 s).
pub const WINDOW_MS: i64 = 10_000;
/// How far out of order a table's rows may arrive (1 s).
pub const OUT_OF_ORDERNESS_MS: i64 = 1_000;

/// The tables whose change streams the view joins, side by side (side `i` is `TABLES[i]`).
pub const TABLES: [&str; 20] = [
    "customers",
    "orders",
    "order-lines",
    "payments",
    "refunds",
    "shipments",
    "returns",
    "reviews",
    "tickets",
    "logins",
    "carts",
    "wishlists",
    "subscriptions",
    "invoices",
    "credits",
    "coupons",
    "referrals",
    "addresses",
    "devices",
    "surveys",
];

/// One changed row of any table: the customer it belongs to, its commit time and an amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The customer the row belongs to.
    pub customer: u32,
    /// The change's commit time (ms since the epoch): its event time.
    pub ts_ms: i64,
    /// The amount the row carries (cents; 0 for tables without one).
    pub cents: i64,
}

/// One customer's activity in one window across every table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// The customer.
    pub customer: u32,
    /// The window's start (ms since the epoch).
    pub window_start_ms: i64,
    /// Per table (side by side, as [`TABLES`]): the rows changed in the window.
    pub rows: Vec<u32>,
    /// Per table: the sum of the changed rows' amounts.
    pub cents: Vec<i64>,
}

/// The stream of table `table`'s changes (a logical name): `<table>-changes`.
pub fn stream_of(table: &str) -> String {
    format!("{table}-changes")
}

/// The join as a split pipeline: tagged rows keyed by customer, shuffled, windowed per 10 s and
/// joined across the [`TABLES`] at the watermark.
pub fn activity_split() -> SplitPipeline<Tagged<Row>, Tagged<Row>, Activity> {
    Pipeline::builder(JOIN)
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(OUT_OF_ORDERNESS_MS).expect("a non-negative bound"))
        .event_time(|t: &Tagged<Row>| t.value.ts_ms)
        .key_by(|t| t.value.customer)
        .shuffle()
        .expect("a keyed stream can be shuffled")
        .window(Windowing::tumbling(WINDOW_MS).expect("a positive size"))
        .trigger(Trigger::at_watermark())
        .join(
            TABLES.len(),
            |t| usize::from(t.side),
            |customer, window, lists| {
                vec![Activity {
                    customer: *customer,
                    window_start_ms: window.start,
                    rows: lists
                        .iter()
                        .map(|l| u32::try_from(l.len()).unwrap_or(u32::MAX))
                        .collect(),
                    cents: lists.iter().map(|l| l.iter().map(|t| t.value.cents).sum()).collect(),
                }]
            },
        )
        .sink(JOIN)
}

/// The application: one stage per table (`activity-<table>`, reading `<table>-changes` as JSON
/// [`Row`]s), the join stage `activity` writing each [`Activity`] row to S3, every stage served
/// by the [`FUNCTION`] crate.
pub fn app() -> App {
    let join = TABLES
        .iter()
        .fold(JoinDef::new(JOIN), |join, table| {
            join.input(*table, Source::json(stream_of(table)))
        })
        .pipeline(activity_split())
        .sink(Sink::s3(SINK, SINK_PREFIX))
        .function(FUNCTION);
    App::new(APP).join(join)
}

/// `n` sample rows of table number `table`, one a second from `base_ms` in commit order: five
/// customers in turn, amounts that say their table and row (`table * 1000 + j`).
pub fn sample_rows(table: usize, n: usize, base_ms: i64) -> Vec<Row> {
    let side = i64::try_from(table).unwrap_or(i64::MAX);
    (0..i64::try_from(n).unwrap_or(i64::MAX))
        .map(|j| Row {
            customer: u32::try_from((side * 7 + j) % 5).unwrap_or(0),
            ts_ms: base_ms + j * 1_000 + side * 37,
            cents: side * 1_000 + j,
        })
        .collect()
}
