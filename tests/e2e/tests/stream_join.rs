//! A join across twenty deployed streams (issue 13): the customer-360 example
//! (`shardflow-customer360`) synthesized by `shardflow synth` from its function binary's
//! description and deployed to LocalStack — twenty table streams, each read by its own tagging
//! stage, one shuffle stream, one twenty-way join stage writing to S3, all run by the real
//! `customer360` function. Its rows equal the embedded runner's over exactly the records the
//! table streams hold (each result once, same id and value), and the malformed row is
//! dead-lettered by its own table's stage.
//!
//! The rows go in two steps: first one row of every table, and only once every table stage has
//! committed it (so its records and watermark are in the shuffle stream) the rest. The join
//! stage then knows every upstream shard before any window can close, which is what makes its
//! results equal the single engine's whatever the twenty stages' interleaving (see
//! `shardflow_lambda::shuffle`'s join). A last row per table an hour later moves every
//! watermark past the sample's windows.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use shardflow_connectors::ResultMessage;
use shardflow_customer360::{app, sample_rows, stream_of, Activity, Row, JOIN, SINK, SINK_PREFIX, TABLES};
use shardflow_e2e::shop::{caught_up, drain_queue, eventually, put_records_in_order, read_lines, s3_results, DEADLINE};
use shardflow_e2e::{deploy, repo_root, require_function_zips, shardflow_dir, StackGuard};
use shardflow_stage::{DeadLetter, DeadLetterKind};

/// Rows per table after its first.
const ROWS: usize = 24;
/// The first row's time: the start of a window.
const BASE_MS: i64 = 1_700_000_000_000;
/// The table whose stream gets a malformed row.
const MALFORMED_IN: &str = "payments";
/// Where the last rows are: an hour after the sample, beyond every window of it.
const MOVER_MS: i64 = BASE_MS + 3_600_000;

/// The synthesized template of the customer-360 application, from its function's `--describe`.
fn synthesize(dir: &Path) -> std::path::PathBuf {
    let template = dir.join("customer360.yaml");
    let code_dir = repo_root().join("out/lambda");
    let output = Command::new(shardflow_dir().join("shardflow"))
        .arg("synth")
        .arg("--app-binary")
        .arg(shardflow_dir().join("customer360"))
        .arg("--code-dir")
        .arg(&code_dir)
        .arg("--out")
        .arg(&template)
        .output()
        .expect("run shardflow synth");
    assert!(
        output.status.success(),
        "shardflow synth failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    template
}

/// A table's rows as (partition key, JSON) records.
fn records(rows: &[Row]) -> Vec<(String, Vec<u8>)> {
    rows.iter()
        .map(|r| (format!("c{}", r.customer), serde_json::to_vec(r).expect("a row")))
        .collect()
}

/// The embedded runner's rows over what the table streams hold (`stored[i]`: table `i`'s
/// records in stream order), by result id, without the movers' windows (which only the end of
/// the embedded run closes).
async fn embedded(stored: &[Vec<Vec<u8>>]) -> BTreeMap<String, Activity> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files: Vec<_> = TABLES
        .iter()
        .zip(stored)
        .map(|(table, records)| {
            let path = dir.path().join(format!("{table}.jsonl"));
            let mut text = Vec::new();
            for r in records {
                text.extend_from_slice(r);
                text.push(b'\n');
            }
            std::fs::write(&path, text).expect("write a table's records");
            path
        })
        .collect();
    let out = dir.path().join("out");
    let summary = app().run_local(JOIN, &files, &out).await.expect("the embedded run");
    assert_eq!(
        summary.dead_letters, 1,
        "the embedded run dead-letters the malformed row"
    );
    read_lines::<Activity>(&out.join("activity.jsonl"))
        .into_iter()
        .filter(|l| l.value.window_start_ms < MOVER_MS - 60_000)
        .map(|l| (l.id, l.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_table_streams_joined_in_one_deployed_stage_equal_the_embedded_runner() {
    require_function_zips(&["customer360"]);
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let template = synthesize(dir.path());
    let stack = shardflow_testkit::unique_name("c360");
    // removes the stack also when its deploy fails
    let _guard = StackGuard(stack.clone());
    let outputs = deploy(
        &stack,
        &template.to_string_lossy(),
        &[
            ("Architecture", "x86_64"),
            ("StartingPosition", "TRIM_HORIZON"),
            ("FunctionTimeout", "30"),
            // every upstream shard is known before a window closes (see the module doc): a slow
            // table stage must not be released by the idleness rule while it catches up
            ("ShuffleIdlenessMs", "600000"),
        ],
    );
    let output = |id: String| {
        outputs
            .get(&id)
            .cloned()
            .unwrap_or_else(|| panic!("stack output {id}: {outputs:?}"))
    };
    let streams: Vec<String> = TABLES
        .iter()
        .map(|t| output(format!("{}Name", shardflow_synth::stream_id(&stream_of(t)))))
        .collect();
    let description = app().describe().expect("a valid application");
    let join = description.stage(JOIN).expect("the join stage");
    let sink = join.sinks.iter().find(|s| s.name == SINK).expect("the S3 sink");
    let bucket = output(format!("{}Name", shardflow_synth::sink_resource_id(JOIN, sink)));
    let state = output("StateTableName".to_owned());
    let dlq = output("DeadLetterQueueUrl".to_owned());

    // Step 1: the first row of every table, committed by every table stage.
    let samples: Vec<Vec<Row>> = (0..TABLES.len()).map(|i| sample_rows(i, ROWS + 1, BASE_MS)).collect();
    for (stream, rows) in streams.iter().zip(&samples) {
        put_records_in_order(stream, records(&rows[..1])).await;
    }
    for (table, stream) in TABLES.iter().zip(&streams) {
        caught_up(&format!("{JOIN}-{table}"), &state, stream, 1, started).await;
    }
    // Step 2: the rest, a malformed row, and the movers.
    let mut counts = Vec::with_capacity(TABLES.len());
    for ((table, stream), rows) in TABLES.iter().zip(&streams).zip(&samples) {
        let mut rest = records(&rows[1..]);
        if *table == MALFORMED_IN {
            rest.insert(3, ("bad".to_owned(), b"{\"customer\":".to_vec()));
        }
        let mover = Row {
            customer: 0,
            ts_ms: MOVER_MS,
            cents: 0,
        };
        rest.extend(records(&[mover]));
        counts.push(1 + rest.len());
        put_records_in_order(stream, rest).await;
    }
    let kinesis = shardflow_testkit::kinesis();
    let mut stored: Vec<Vec<Vec<u8>>> = Vec::with_capacity(TABLES.len());
    for (stream, count) in streams.iter().zip(counts) {
        let read = shardflow_testkit::read_stream(&kinesis, stream, count, DEADLINE).await;
        assert_eq!(read.len(), count, "{stream} holds every row put, once");
        stored.push(read.into_iter().map(|r| r.data).collect());
    }
    let expected = embedded(&stored).await;
    assert!(
        expected.len() >= 15,
        "the sample closes windows of every customer: {}",
        expected.len()
    );

    // The join stage's rows in S3: each once, equal to the embedded runner's.
    let got: BTreeMap<String, Activity> = eventually("every activity row in S3", started, || async {
        let results: Vec<ResultMessage<Activity>> = s3_results(&bucket, SINK_PREFIX).await;
        let rows: BTreeMap<String, Activity> = results.into_iter().map(|m| (m.id, m.value)).collect();
        if rows.len() >= expected.len() {
            Ok(rows)
        } else {
            Err(format!("{} of {} rows", rows.len(), expected.len()))
        }
    })
    .await;
    assert_eq!(got, expected, "the deployed join's rows");
    assert!(
        got.values().any(|a| a.rows.iter().all(|n| *n > 0)),
        "some customer and window has rows of all twenty tables"
    );

    // The malformed row: dead-lettered by the payments stage, with its reason.
    let sqs = shardflow_testkit::sqs();
    let letters: Vec<DeadLetter> = eventually("the malformed row's dead letter", started, || async {
        let mut bodies = Vec::new();
        drain_queue(&sqs, &dlq, &mut bodies).await;
        if bodies.is_empty() {
            return Err("no dead letter yet".to_owned());
        }
        Ok(bodies
            .iter()
            .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("a dead letter ({e}): {b}")))
            .collect())
    })
    .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        (letter.kind, letter.stage.as_str()),
        (DeadLetterKind::Undecodable, format!("{JOIN}-{MALFORMED_IN}").as_str())
    );
    assert!(!letter.reason.is_empty(), "the letter says why");
    eprintln!("stream join: {} rows in {:?}", got.len(), started.elapsed());
}
