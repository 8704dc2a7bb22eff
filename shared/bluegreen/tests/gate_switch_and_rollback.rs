//! Blue/green with a cutover item in DynamoDB (LocalStack): two copies of a stage, each with its
//! own state, read the same shard at different speeds; the live output is switched to green and
//! rolled back to blue while both run. Every result reaches the live output exactly once, from
//! the colour that owns its window, and the live output equals one uninterrupted run's.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack (`source localstack/env`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use shardflow_bluegreen::{position, Colour, ColourControl, ColourError, ColourGate, Cutover};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Output, Pipeline, ResultId, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::{Stage, StageConfig};
use shardflow_stage::{InputRecord, JsonDecoder, SequenceNumber, ShardBatch};
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink, ResultSink, SinkError};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct Purchase {
    product: u32,
    cents: i64,
    ts_ms: i64,
}

type Row = (u32, i64, u64, i64);

const T0: i64 = 1_700_000_000_000;
const RECORDS: u64 = 300;
const BATCH: u64 = 10;

/// Revenue per product in 10-second windows with an early pane every 3 records (so that panes
/// of one window are written before and after a switch).
fn revenue() -> Pipeline<Purchase, Row> {
    Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.product)
        .window(Windowing::tumbling(10_000).unwrap())
        .trigger(
            Trigger::at_watermark()
                .with_early_firings(shardflow_engine::Firing::every_elements(3))
                .accumulating(),
        )
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
            (*k, w.start, n, c)
        })
        .sink("revenue")
}

fn purchase(i: u64) -> Purchase {
    Purchase {
        product: (i % 3) as u32,
        cents: 100 + i as i64,
        ts_ms: T0 + (i as i64) * 1_000,
    }
}

/// Records `range` of the shard as one batch.
fn batch(range: std::ops::Range<u64>) -> ShardBatch {
    ShardBatch {
        stream: "purchases".into(),
        shard_id: "shardId-000000000000".into(),
        records: range
            .map(|i| InputRecord {
                sequence: SequenceNumber::parse(&format!("4965{i:020}")).unwrap(),
                partition_key: format!("p{i}"),
                arrival_ms: T0 + (i as i64) * 1_000,
                data: serde_json::to_vec(&purchase(i)).unwrap(),
            })
            .collect(),
    }
}

/// A write to the live output: who wrote which result.
type LiveWrite = (Colour, Output<Row>);

/// The live output shared by both colours, remembering who wrote what.
#[derive(Clone, Default)]
struct LiveOutput {
    writes: Arc<Mutex<Vec<LiveWrite>>>,
}

struct LiveWriter {
    colour: Colour,
    output: LiveOutput,
}

impl ResultSink<Row> for LiveWriter {
    async fn emit(&self, outputs: &[Output<Row>]) -> Result<(), SinkError> {
        let mut writes = self.output.writes.lock().unwrap();
        writes.extend(outputs.iter().map(|o| (self.colour, o.clone())));
        Ok(())
    }
}

type GatedStage =
    Stage<Purchase, Row, JsonDecoder<Purchase>, ColourGate<LiveWriter, MemoryResultSink<Row>>, MemoryDeadLetters>;

async fn stage(colour: Colour, control: &ColourControl, live: &LiveOutput) -> GatedStage {
    let (client, table) = shardflow_testkit::state_table(&format!("bg-{}", colour.as_str())).await;
    let gate = ColourGate::gated(
        colour,
        control.clone(),
        LiveWriter {
            colour,
            output: live.clone(),
        },
        MemoryResultSink::new(),
    );
    Stage::new(
        "revenue",
        revenue(),
        JsonDecoder::new(),
        gate,
        MemoryDeadLetters::default(),
        client,
        &table,
        StageConfig::default(),
    )
    .unwrap()
}

async fn run(stage: &GatedStage, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let end = (i + BATCH).min(to);
        stage.handle(batch(i..end)).await.expect("a batch");
        i = end;
    }
}

/// A cut beyond every result position emitted so far (the largest event time seen plus a window).
fn cut_after(records_seen: u64) -> i64 {
    T0 + (records_seen as i64) * 1_000 + 10_000
}

#[tokio::test]
async fn switch_and_rollback_write_every_result_live_exactly_once() {
    let (client, table) = shardflow_testkit::state_table("bg-control").await;
    let control = ColourControl::new(client, &table, "shop");
    let live = LiveOutput::default();
    let blue = stage(Colour::Blue, &control, &live).await;
    let green = stage(Colour::Green, &control, &live).await;

    // blue is live and ahead; green catches up behind it
    run(&blue, 0, 120).await;
    run(&green, 0, 90).await;
    let start = control.load().await.unwrap();
    assert_eq!(start, Cutover::default());
    let to_green = control.switch(&start, Colour::Green, cut_after(120)).await.unwrap();
    // a concurrent switch from the same reading loses
    assert!(matches!(
        control.switch(&start, Colour::Green, cut_after(130)).await,
        Err(ColourError::Conflict(_))
    ));

    // green overtakes blue, then green is rolled back while blue lags
    run(&green, 90, 220).await;
    run(&blue, 120, 180).await;
    let current = control.load().await.unwrap();
    assert_eq!(current, to_green);
    let back = control.switch(&current, Colour::Blue, cut_after(220)).await.unwrap();
    run(&blue, 180, RECORDS).await;
    run(&green, 220, RECORDS).await;

    // one uninterrupted run
    let pipeline = revenue();
    let mut engine = pipeline.engine();
    let part = engine.partition("x");
    for i in 0..RECORDS {
        engine.process(part, i, T0 + (i as i64) * 1_000, purchase(i));
    }
    let fault_free: BTreeMap<ResultId, Output<Row>> = engine.drain_output().into_iter().map(|o| (o.id, o)).collect();

    let writes = live.writes.lock().unwrap().clone();
    let mut writers: BTreeMap<ResultId, BTreeSet<&str>> = BTreeMap::new();
    for (colour, o) in &writes {
        writers.entry(o.id).or_default().insert(colour.as_str());
        assert_eq!(
            back.owner(position(o)),
            *colour,
            "{o:?} was written live by its window's owner"
        );
    }
    assert!(
        writers.values().all(|w| w.len() == 1),
        "no result is written live by both colours"
    );
    let live_values: BTreeMap<ResultId, Row> = writes.iter().map(|(_, o)| (o.id, o.value)).collect();
    let want: BTreeMap<ResultId, Row> = fault_free.iter().map(|(id, o)| (*id, o.value)).collect();
    assert_eq!(
        live_values, want,
        "the live output is one uninterrupted run's, every result once"
    );
    let colours: BTreeSet<&str> = writers.values().flatten().copied().collect();
    assert_eq!(
        colours,
        BTreeSet::from(["blue", "green"]),
        "both colours wrote live in their turn"
    );
    // what a colour did not own went to its shadow output
    let shadow_writes = |s: &GatedStage| s.sink().shadow().map(|sh| sh.writes().len()).unwrap_or(0);
    assert!(shadow_writes(&green) > 0 && shadow_writes(&blue) > 0);
}
