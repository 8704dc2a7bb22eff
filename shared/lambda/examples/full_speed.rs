//! One shard at full speed (issue 19): the stage handler driven with the recorded batches of a
//! saturated Kinesis shard — 10,000 records of ~200 B per second, revenue-like CDC changes in
//! Kinesis events of 500 records as Lambda delivers them — against the real DynamoDB state store
//! on LocalStack, at a checkpoint interval of one batch and of 30 s of input.
//!
//! It reports the CPU time this process spends per second of input, by phase, apart from the
//! emulator's:
//! - **phases, without I/O**: the same events replayed through the stage's own steps — event
//!   parse (JSON and base64, as the runtime hands the payload over), decode + process
//!   (`process_batch`), commit preparation (`Engine::snapshot` and encoding) — each timed with this
//!   thread's CPU clock (`/proc/thread-self/schedstat`, ns);
//! - **handler on LocalStack**: `Stage::serve` for every event, the process's user + system
//!   CPU time over the run (`/proc/self/stat`), which adds the store's request building and the
//!   SDK's HTTP work to the phases; the wall time; and the emulator's own CPU time (LocalStack and
//!   its children: DynamoDB Local), read from `/proc` for the session of the pid in
//!   `localstack/.state/localstack.pid` (or `SHARDFLOW_EMULATOR_PID`).
//!
//! The 30 s interval is counted in batches (600 = 30 s of input at 20 batches a second): the
//! replay runs faster than real time, so a wall-clock interval would never fall due. Results go
//! to an in-memory sink (a deployed stage's sink is another component's cost).
//!
//! ```sh
//! SHARDFLOW_LOCALSTACK_PORT=4603 localstack/up && source localstack/env
//! cargo run --release -p shardflow-lambda --example full_speed [-- SECONDS_OF_INPUT]
//! ```
//! Linux only (`/proc`). Target: at most a quarter of one vCPU per second of input.

use std::time::Instant;

use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Engine, Firing, Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::{CheckpointInterval, Stage, StageConfig, StageRequest};
use shardflow_stage::{process_batch, InputRecord, JsonDecoder, MemoryDeadLetters, MemoryResultSink};
use shardflow_stage::{SequenceNumber, ShardBatch};

/// Records per second of a saturated shard (2 MB/s of reads at ~200 B).
const RATE: u64 = 10_000;
/// Records per Kinesis event (the template's batch size).
const BATCH: u64 = 500;
/// Batches in 30 s of input.
const BATCHES_PER_30_S: u64 = 30 * RATE / BATCH;
/// Event time of record 0.
const T0: i64 = 1_700_000_000_000;
const STREAM: &str = "changes";
const SHARD: &str = "shardId-000000000000";

/// What the pipeline reads of a change event.
#[derive(Debug, Clone, serde::Deserialize)]
struct Change {
    op: String,
    source: Source,
    after: Option<Line>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Source {
    table: String,
    ts_ms: i64,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Line {
    product_id: i64,
    quantity: i64,
    unit_price_cents: i64,
    currency: String,
}

/// ((product, currency), window start, lines, revenue in cents).
type Row = ((i64, String), i64, u64, i64);

/// Like the shop's `revenue`: inserted order lines, revenue and count per (product, currency) in
/// 1-minute windows, early panes every 10 s, 5 minutes of allowed lateness, accumulating.
fn revenue() -> Pipeline<Change, Row> {
    Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(5_000).expect("a valid bound"))
        .event_time(|c: &Change| c.source.ts_ms)
        .filter_map(|c: Change| {
            if c.op != "c" || c.source.table != "order_lines" {
                return None;
            }
            let line = c.after?;
            Some(((line.product_id, line.currency), line.quantity * line.unit_price_cents))
        })
        .key_by(|(key, _)| key.clone())
        .window(Windowing::tumbling(60_000).expect("a valid size"))
        .trigger(
            Trigger::at_watermark()
                .with_early_firings(Firing::every_processing_ms(10_000))
                .with_allowed_lateness(300_000)
                .expect("a valid lateness")
                .accumulating(),
        )
        .aggregate(
            (Count, Sum::of(|(_, cents): &((i64, String), i64)| *cents)),
            |k, w, _, (n, c)| (k.clone(), w.start, n, c),
        )
        .sink("revenue")
}

/// Change `i`: an order line insert of one of 2,000 products, ~200 B of JSON.
fn change(i: u64) -> Vec<u8> {
    let ts = T0 + (i * 1_000 / RATE) as i64;
    format!(
        r#"{{"op":"c","source":{{"db":"shop","table":"order_lines","lsn":{lsn},"ts_ms":{ts}}},"after":{{"order_id":{order},"line_no":{line},"product_id":{product},"quantity":{q},"unit_price_cents":{price},"currency":"EUR"}},"ts_ms":{ts}}}"#,
        lsn = 1_000_000 + i * 64,
        order = i / 3,
        line = i % 3,
        product = (i * 7_919) % 2_000,
        q = 1 + i % 4,
        price = 199 + (i * 31) % 9_800,
    )
    .into_bytes()
}

/// The Kinesis events of `seconds` of input, as the Lambda runtime hands them to the function.
fn recorded_events(seconds: u64) -> Vec<Vec<u8>> {
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{STREAM}");
    (0..seconds * RATE / BATCH)
        .map(|b| {
            let records = (b * BATCH..(b + 1) * BATCH)
                .map(|i| InputRecord {
                    sequence: SequenceNumber::parse(&format!("4965{i:052}")).expect("digits"),
                    partition_key: format!("order_lines:{}", i / 3),
                    arrival_ms: T0 + (i * 1_000 / RATE) as i64 + 200,
                    data: change(i),
                })
                .collect();
            let batch = ShardBatch {
                stream: STREAM.into(),
                shard_id: SHARD.into(),
                records,
            };
            serde_json::to_vec(&batch.to_event_json(&arn, "us-east-1")).expect("an event serializes")
        })
        .collect()
}

/// The batch of an event, as the function reads it.
fn parse(event: &[u8]) -> StageRequest {
    let value: serde_json::Value = serde_json::from_slice(event).expect("recorded JSON");
    StageRequest::from_value(value).expect("a Kinesis event")
}

/// CPU time of the calling thread, ns (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat (Linux)")
}

/// User + system CPU time of process `pid` ("self" for this one), ms, from `/proc/PID/stat`.
fn process_cpu_ms(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name: utime and stime are fields 14 and 15 (USER_HZ ticks of 10 ms).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * 10.0)
}

/// The session of the emulator: LocalStack's pid (a session leader, see `localstack/up`).
fn emulator_session() -> Option<String> {
    if let Ok(pid) = std::env::var("SHARDFLOW_EMULATOR_PID") {
        return Some(pid);
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../localstack/.state/localstack.pid");
    std::fs::read_to_string(root).ok().map(|s| s.trim().to_owned())
}

/// CPU time of every process in session `sid` (the emulator and its children), ms.
fn session_cpu_ms(sid: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.split_whitespace().nth(3) == Some(sid))
                })
                .unwrap_or(false)
        })
        .filter_map(|pid| process_cpu_ms(&pid))
        .sum()
}

/// CPU ms of each phase over all events, replayed without I/O.
#[derive(Debug, Default)]
struct Phases {
    parse_ms: f64,
    process_ms: f64,
    prepare_ms: f64,
    commits: u64,
}

fn phases(events: &[Vec<u8>], commit_every: u64) -> Phases {
    let pipeline = revenue();
    let decoder = JsonDecoder::<Change>::new();
    let mut engine: Engine<Change, Row> = pipeline.engine();
    let mut p = Phases::default();
    let ms = |from: u64| (thread_cpu_ns() - from) as f64 / 1e6;
    for (n, event) in events.iter().enumerate() {
        let t = thread_cpu_ns();
        let StageRequest::Batch(batch) = parse(event) else {
            unreachable!("recorded events are batches")
        };
        p.parse_ms += ms(t);
        let t = thread_cpu_ns();
        let outcome = process_batch(&mut engine, "revenue", &batch, &decoder, None, None);
        std::hint::black_box(outcome.outputs.len());
        p.process_ms += ms(t);
        if (n as u64).is_multiple_of(commit_every) {
            let t = thread_cpu_ns();
            let checkpoint = engine.snapshot().expect("a snapshot");
            std::hint::black_box(checkpoint.encode().expect("an encoding").len());
            p.prepare_ms += ms(t);
            p.commits += 1;
        }
    }
    p
}

/// The handler over all events against LocalStack.
#[derive(Debug)]
struct Handled {
    own_cpu_ms: f64,
    wall_ms: f64,
    emulator_cpu_ms: Option<f64>,
    commits: u64,
}

async fn handled(events: &[Vec<u8>], interval: CheckpointInterval, commits: u64) -> anyhow::Result<Handled> {
    let (client, table) = shardflow_testkit::state_table("full-speed").await;
    let stage = Stage::new(
        "revenue",
        revenue(),
        JsonDecoder::<Change>::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client,
        &table,
        StageConfig::default(),
    )?
    .with_checkpoint_interval(interval)
    .with_metrics_writer(std::sync::Arc::new(|_: &str| {}));
    let session = emulator_session();
    let emulator_before = session.as_deref().map(session_cpu_ms);
    let own_before = process_cpu_ms("self").unwrap_or(0.0);
    let started = Instant::now();
    for event in events {
        let response = stage.serve(parse(event)).await?;
        anyhow::ensure!(response.batch_item_failures.is_empty(), "a batch failed");
    }
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let own_cpu_ms = process_cpu_ms("self").unwrap_or(0.0) - own_before;
    let emulator_cpu_ms = session
        .as_deref()
        .zip(emulator_before)
        .map(|(sid, before)| session_cpu_ms(sid) - before);
    Ok(Handled {
        own_cpu_ms,
        wall_ms,
        emulator_cpu_ms,
        commits,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args().nth(1).map_or(Ok(30), |s| s.parse())?;
    let events = recorded_events(seconds);
    let bytes: usize = events.iter().map(Vec::len).sum();
    println!(
        "{seconds} s of input: {} records of {} B of JSON in {} Kinesis events of {BATCH} ({:.1} MB of events)",
        seconds * RATE,
        change(0).len(),
        events.len(),
        bytes as f64 / 1e6
    );
    let n = events.len() as u64;
    let cases = [
        ("1 batch", 1, CheckpointInterval::batches(1)),
        (
            "30 s (600 batches)",
            BATCHES_PER_30_S,
            CheckpointInterval::batches(BATCHES_PER_30_S),
        ),
    ];
    println!();
    println!("| interval | commits | parse | decode + process | commit preparation | phases, vCPU | handler on LocalStack: own CPU | own vCPU | wall | emulator CPU |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, every, interval) in cases {
        let p = phases(&events, every);
        let h = handled(&events, interval, n.div_ceil(every)).await?;
        let input_ms = seconds as f64 * 1e3;
        let phases_ms = p.parse_ms + p.process_ms + p.prepare_ms;
        println!(
            "| {name} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.3} | {:.0} ms | {:.3} | {:.1} s | {} |",
            h.commits,
            p.parse_ms,
            p.process_ms,
            p.prepare_ms,
            phases_ms / input_ms,
            h.own_cpu_ms,
            h.own_cpu_ms / input_ms,
            h.wall_ms / 1e3,
            h.emulator_cpu_ms
                .map_or_else(|| "unknown".to_owned(), |ms| format!("{:.1} s", ms / 1e3)),
        );
        debug_assert_eq!(p.commits, h.commits);
    }
    println!();
    println!(
        "vCPU = CPU seconds per second of input ({seconds} s); target ≤ 0.25. Phases: thread CPU of each step \
         without I/O; handler: this process's user+system CPU (10 ms ticks) over every Stage::serve, \
         incl. the store's and SDK's work; emulator: LocalStack's session, apart."
    );
    Ok(())
}
