//! The EMF lines a stage really prints (`BatchMetrics::to_emf_line`), averaged into a stage's
//! profile, and the EMF line size the shop preset assumes checked against a real line.

use shardflow_cost::emf::EmfSummary;
use shardflow_cost::shop::{EMF_LINE_BYTES, LOG_EVENT_OVERHEAD_BYTES};
use shardflow_cost::{shop, BasisKind, CostError, ShopOptions};
use shardflow_stage::BatchMetrics;

fn batch(records_in: u64, results_out: u64, dirty: u64, commit_ms: u64) -> BatchMetrics {
    BatchMetrics {
        records_in,
        results_out,
        state_items_written: dirty + 1,
        state_bytes_written: dirty * 225,
        commit_ms,
        watermark_lag_ms: 1_500,
        ..Default::default()
    }
}

fn log() -> String {
    let shard = "shardId-000000000001";
    [
        "START RequestId: a Version: $LATEST".to_owned(),
        batch(250, 20, 18, 10).to_emf_line("revenue", shard, 1_700_000_000_000),
        "REPORT RequestId: a\tDuration: 41.30 ms\tBilled Duration: 42 ms\tMemory Size: 256 MB\tMax Memory Used: 31 MB"
            .to_owned(),
        batch(250, 30, 22, 14).to_emf_line("revenue", shard, 1_700_000_001_000),
        "REPORT RequestId: b\tDuration: 57.10 ms\tBilled Duration: 58 ms\tMemory Size: 256 MB\tMax Memory Used: 31 MB"
            .to_owned(),
        batch(500, 50, 20, 12).to_emf_line("revenue", shard, 1_700_000_002_000),
        "REPORT RequestId: c\tDuration: 49.00 ms\tBilled Duration: 50 ms\tMemory Size: 256 MB\tMax Memory Used: 31 MB"
            .to_owned(),
        // Another stage's line in the same file is not counted.
        batch(9_999, 0, 99, 99).to_emf_line("receipts", shard, 1_700_000_003_000),
    ]
    .join("\n")
}

#[test]
fn emf_lines_printed_by_batch_metrics_average_into_the_stage_profile() {
    let summary = EmfSummary::parse(&log(), Some("revenue"));
    assert_eq!(summary.batches, 3);
    assert_eq!(summary.other_stages, 1);
    assert_eq!(summary.commits, 3);
    assert_eq!(summary.records_per_batch(), 1_000.0 / 3.0);
    assert_eq!(summary.results_per_record(), 100.0 / 1_000.0);
    assert_eq!(summary.dirty_items_per_commit(), 20.0);
    assert_eq!(summary.bytes_per_dirty_item(), 225.0);
    assert_eq!(summary.reports, 3);
    assert_eq!(summary.billed_ms, 150.0);
    assert_eq!(summary.memory_mb, Some(256.0));

    let mut platform = shop(&ShopOptions::default());
    let mut basis = Vec::new();
    let revenue = platform.stage_mut("revenue").unwrap();
    revenue.state.dirty_items_per_batch = 99.0;
    summary.apply(revenue, "revenue.log", &mut basis);
    assert_eq!(revenue.state.dirty_items_per_batch, 20.0);
    assert_eq!(revenue.results_per_record, 0.1);
    assert_eq!(revenue.commit_ms, 12.0);
    assert_eq!(revenue.duration_ms_per_batch, 50.0);
    assert_eq!(revenue.state.state_bytes, 225.0 * 125.0);
    assert!(basis
        .iter()
        .all(|b| b.kind == BasisKind::Measured && b.source.contains("revenue.log")));
}

#[test]
fn the_emf_line_size_the_preset_assumes_is_within_5_percent_of_a_real_line() {
    let line = batch(250, 20, 20, 12).to_emf_line("order-enrich", "shardId-000000000003", 1_700_000_000_000);
    let real = line.len() as f64;
    assert!(
        (real - EMF_LINE_BYTES).abs() / real < 0.05,
        "a real line is {real} B, the preset assumes {EMF_LINE_BYTES}"
    );
    let summary = EmfSummary::parse(&line, None);
    assert_eq!(summary.emf_bytes, real + LOG_EVENT_OVERHEAD_BYTES);
}

#[test]
fn a_log_without_emf_lines_of_the_stage_is_an_error_naming_file_and_stage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipts.log");
    std::fs::write(&path, log()).unwrap();
    let err = EmfSummary::read(&path, Some("archive")).unwrap_err();
    assert!(matches!(err, CostError::NoMetrics { .. }));
    let text = err.to_string();
    assert!(text.contains("receipts.log") && text.contains("archive"), "{text}");
    let missing = EmfSummary::read(&dir.path().join("missing.log"), None).unwrap_err();
    assert!(matches!(missing, CostError::Read { .. }), "{missing}");
}
