//! The shop platform preset: the seed platform's stages as `infra/template.yaml` deploys them,
//! with default per-batch counts taken from what the repository measured, and every other figure
//! marked as an assumption ([`Platform::basis`]).

use crate::profile::{Basis, BasisKind, Platform, StageOutput, StageProfile, StateProfile, StreamRole, StreamSpec};

/// Bytes of one EMF line as `BatchMetrics::to_emf_line` prints it for a typical batch (a test
/// renders a real line and checks this figure against it).
pub const EMF_LINE_BYTES: f64 = 910.0;
/// CloudWatch Logs bills 26 bytes of overhead per log event on top of its text.
pub const LOG_EVENT_OVERHEAD_BYTES: f64 = 26.0;
/// Lambda's START, END and REPORT lines of one invocation with their overhead (assumed: about
/// 330 bytes of text).
pub const PLATFORM_LOG_BYTES: f64 = 330.0 + 3.0 * LOG_EVENT_OVERHEAD_BYTES;

/// The revenue stage's state per shard, measured on the deployed shop stack on LocalStack
/// (issue 19): 125 items.
pub const REVENUE_LIVE_ITEMS: f64 = 125.0;
/// ... holding 27.5 KiB.
pub const REVENUE_STATE_BYTES: f64 = 27.5 * 1_024.0;
/// Key groups a batch dirties: issue 19's estimate for the shop at 1,000 events/s over 4 shards.
pub const DIRTY_GROUPS_PER_BATCH: f64 = 20.0;
/// The checkpoint item: position, `ver`, engine state and a manifest entry per live group
/// (postcard: key group, 64-bit slot id, version, write time — about 20 bytes each). Assumed.
pub const CHECKPOINT_ITEM_BYTES: f64 = 3.0 * 1_024.0;

/// Results per input record measured by `shardflow demo` (300,000 events, seed 42, README).
pub mod measured_results_per_record {
    /// receipts: 23,520 results of 299,988 records.
    pub const RECEIPTS: f64 = 23_520.0 / 299_988.0;
    /// revenue: 39,217 results of 299,988 records.
    pub const REVENUE: f64 = 39_217.0 / 299_988.0;
    /// order_enrich: 24,446 results of 299,988 records.
    pub const ORDER_ENRICH: f64 = 24_446.0 / 299_988.0;
}

/// How the shop platform is deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopOptions {
    /// Shards of the CDC stream.
    pub shards: u32,
    /// Whether revenue and order-enrich read shuffle streams written by upstream key-by stages
    /// (issue 13) instead of the CDC stream.
    pub shuffle: bool,
    /// Shards of each shuffle stream (with `shuffle`; the template's default is 4).
    pub shuffle_shards: u32,
    /// Every function's memory, MB.
    pub memory_mb: f64,
    /// The CDC stream's retention, hours.
    pub source_retention_hours: u32,
}

impl Default for ShopOptions {
    fn default() -> Self {
        ShopOptions {
            shards: 4,
            shuffle: false,
            shuffle_shards: 4,
            memory_mb: 256.0,
            source_retention_hours: 168,
        }
    }
}

const CHANGES: &str = "changes";
const ENRICHED: &str = "enriched-orders";

/// The state profile of a keyed shop stage: revenue's measured state and issue 19's dirty groups.
fn keyed_state() -> StateProfile {
    StateProfile {
        live_items: REVENUE_LIVE_ITEMS,
        state_bytes: REVENUE_STATE_BYTES,
        dirty_items_per_batch: DIRTY_GROUPS_PER_BATCH,
        checkpoint_item_bytes: CHECKPOINT_ITEM_BYTES,
    }
}

/// A stage of the shop with the assumed durations.
fn stage(name: &str, input: &str, memory_mb: f64, keyed: bool) -> StageProfile {
    StageProfile {
        name: name.to_owned(),
        input_stream: input.to_owned(),
        memory_mb,
        duration_ms_per_batch: if keyed { 60.0 } else { 40.0 },
        load_ms: if keyed { 15.0 } else { 5.0 },
        commit_ms: if keyed { 20.0 } else { 10.0 },
        warm_check_ms: 5.0,
        keyed,
        state: if keyed { keyed_state() } else { StateProfile::default() },
        ..StageProfile::default()
    }
}

/// An upstream key-by stage writing `stream` (stateless: its checkpoint is its position).
fn key_by(name: &str, stream: &str, memory_mb: f64) -> StageProfile {
    StageProfile {
        output: Some(StageOutput::Shuffle {
            stream: stream.to_owned(),
            bytes_per_record: 280.0,
        }),
        ..stage(name, CHANGES, memory_mb, false)
    }
}

/// The shop platform as `options` deploys it.
pub fn shop(options: &ShopOptions) -> Platform {
    let m = options.memory_mb;
    let mut streams = vec![
        StreamSpec {
            name: CHANGES.to_owned(),
            shards: options.shards,
            retention_hours: options.source_retention_hours,
            record_bytes: 300.0,
            role: StreamRole::Source,
        },
        StreamSpec {
            name: ENRICHED.to_owned(),
            shards: 1,
            retention_hours: 24,
            record_bytes: 0.0,
            role: StreamRole::Output,
        },
    ];
    let mut stages = vec![
        StageProfile {
            s3_puts_per_batch: 1.0,
            // gzip NDJSON of base64 payloads with shard, sequence number and key.
            s3_put_bytes_per_record: 150.0,
            ..stage("archive", CHANGES, m, false)
        },
        StageProfile {
            results_per_record: measured_results_per_record::RECEIPTS,
            sns_messages_per_result: 1.0,
            ..stage("receipts", CHANGES, m, true)
        },
    ];
    let (revenue_input, enrich_input) = if options.shuffle {
        for name in ["revenue-shuffle", "order-enrich-shuffle"] {
            streams.push(StreamSpec {
                name: name.to_owned(),
                shards: options.shuffle_shards,
                retention_hours: 24,
                record_bytes: 0.0,
                role: StreamRole::Shuffle,
            });
        }
        stages.push(key_by("revenue-keyby", "revenue-shuffle", m));
        stages.push(key_by("order-enrich-keyby", "order-enrich-shuffle", m));
        ("revenue-shuffle", "order-enrich-shuffle")
    } else {
        (CHANGES, CHANGES)
    };
    stages.push(StageProfile {
        results_per_record: measured_results_per_record::REVENUE,
        ..stage("revenue", revenue_input, m, true)
    });
    stages.push(StageProfile {
        results_per_record: measured_results_per_record::ORDER_ENRICH,
        result_bytes: 1_000.0,
        // One object per shard and minute of event time (ENRICHED_ORDERS_BUCKET_MS).
        s3_bucket_objects_per_shard_hour: 60.0,
        output: Some(StageOutput::Records {
            stream: ENRICHED.to_owned(),
        }),
        ..stage("order-enrich", enrich_input, m, true)
    });
    Platform {
        name: "shop".to_owned(),
        streams,
        stages,
        basis: basis(options),
    }
}

fn basis(options: &ShopOptions) -> Vec<Basis> {
    use BasisKind::{Assumed, FromCode, Measured};
    let mut b = vec![
        Basis::new(
            Measured,
            "state per shard of a keyed stage: 125 items, 27.5 KiB",
            "the revenue stage on the deployed shop stack on LocalStack (issue 19); receipts and \
             order-enrich are assumed to hold the same",
        ),
        Basis::new(
            Measured,
            "items a commit writes = dirty key groups + 1 (the checkpoint item)",
            "cargo test -p shardflow-lambda --test batch_cost -- --nocapture",
        ),
        Basis::new(
            Measured,
            format!(
                "results per input record: receipts {:.4}, revenue {:.4}, order-enrich {:.4}",
                measured_results_per_record::RECEIPTS,
                measured_results_per_record::REVENUE,
                measured_results_per_record::ORDER_ENRICH
            ),
            "shardflow demo (300,000 generated shop events, seed 42; README)",
        ),
        Basis::new(
            Measured,
            format!("EMF line per batch: 12 metrics on the Stage dimension (the shard a property), {EMF_LINE_BYTES} B"),
            "BatchMetrics::to_emf_line (checked by this crate's tests)",
        ),
        Basis::new(
            FromCode,
            "a load reads the checkpoint item and every live item strongly consistent; a commit \
             writes dirty items + checkpoint in TransactWriteItems, then deletes each superseded slot",
            "shared/state-dynamodb/src/store.rs",
        ),
        Basis::new(
            FromCode,
            "receipts: one SNS message per result, PublishBatch of 10; order-enrich: one Kinesis \
             record per result and one S3 object per shard and minute of event time; archive: one \
             S3 object per batch",
            "shared/connectors (SnsSink, S3Sink EventTimeBuckets), shared/shop (order_enrich \
             sink_with_buckets), shared/archive",
        ),
        Basis::new(
            FromCode,
            format!(
                "batch size 500, batching window 1 s, 256 MB, arm64, CDC stream {} h retention, \
                 enriched-orders 1 shard 24 h",
                options.source_retention_hours
            ),
            "infra/template.yaml defaults (overridden by the flags)",
        ),
        Basis::new(
            Assumed,
            format!("{DIRTY_GROUPS_PER_BATCH} dirty key groups per batch in each keyed stage"),
            "issue 19's estimate for 1,000 events/s over 4 shards; not measured per stage",
        ),
        Basis::new(
            Assumed,
            format!("checkpoint item {CHECKPOINT_ITEM_BYTES} B"),
            "the manifest's postcard layout, ~20 B per live group",
        ),
        Basis::new(
            Assumed,
            "billed duration per batch: keyed stages 60 ms (15 load, 20 commit), others 40 ms; \
             a warm check 5 ms",
            "not measured on AWS; Lambda is a small share of every column",
        ),
        Basis::new(
            Assumed,
            "CDC record 300 B, enriched order 1,000 B, receipt 500 B, archive 150 B per record \
             gzipped",
            "sizes; each stays within one PUT payload unit and one 64 KB SNS chunk",
        ),
        Basis::new(
            Assumed,
            format!("Lambda's START/END/REPORT lines {PLATFORM_LOG_BYTES} B per invocation"),
            "typical line lengths plus 26 B per log event",
        ),
        Basis::new(
            Assumed,
            "commits at an interval: a warm batch reads the checkpoint and progress items and \
             writes the progress item; dirty groups accumulate as L·(1 − (1 − d/L)^k); reloads \
             per shard-hour as the flag says",
            "shared/lambda (warm state, interval commits)",
        ),
        Basis::new(
            Assumed,
            "Managed Flink: one application runs all four pipelines at the flag's events per KPU",
            "the README's Nexmark runs put Flink at 97k–265k events/s per core from a file; a \
             Kinesis source, Protobuf and RocksDB state cost more, so a conservative default",
        ),
    ];
    if options.shuffle {
        b.push(Basis::new(
            Assumed,
            "shuffle: 280 B per shuffled record in a frame, one frame per shuffle shard per upstream \
             batch plus a 100 B watermark; key-by stages are stateless (checkpoint = position)",
            "the 200 B payloads of cargo bench -p shardflow-shuffle --bench shuffle plus id overhead",
        ));
    }
    b
}
