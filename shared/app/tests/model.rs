//! The application model without services: descriptions carry the derived variables, and a
//! stage that cannot run is refused with the fix or the missing variable named.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shardflow_app::{App, AppError, Sink, SortKey, Source, StageDef, Vars};
use shardflow_engine::{Pipeline, WatermarkStrategy};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Click {
    user: String,
    ts_ms: i64,
}

fn pipeline() -> Pipeline<Click, Click> {
    Pipeline::builder("clicks")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).expect("a bound"))
        .event_time(|c: &Click| c.ts_ms)
        .sink("clicks")
}

fn stage() -> StageDef<Click, Click> {
    StageDef::new("copy")
        .source(Source::json("clicks"))
        .pipeline(pipeline())
        .sink(Sink::dynamodb("latest", |c: &Click| c.user.clone(), SortKey::Window))
        .sink(Sink::kinesis("forward", "copies", |c: &Click| c.user.clone()))
        .sink(Sink::sqs("work"))
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn the_description_names_every_sink_variable_and_stream() {
    let description = App::new("demo").stage(stage()).describe().expect("valid");
    let stage = &description.stages[0];
    assert_eq!(stage.function, "demo-copy");
    let sink_vars: Vec<&str> = stage
        .sinks
        .iter()
        .flat_map(|s| &s.env)
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        sink_vars,
        [
            "SHARDFLOW_SINK_LATEST_TABLE",
            "SHARDFLOW_SINK_LATEST_REGION",
            "SHARDFLOW_SINK_FORWARD_STREAM",
            "SHARDFLOW_SINK_WORK_QUEUE_URL"
        ]
    );
    assert_eq!(
        description.streams().into_iter().collect::<Vec<_>>(),
        ["clicks", "copies"]
    );
}

#[test]
fn an_app_with_a_stage_without_a_source_is_refused_before_it_runs() {
    let app = App::new("demo").stage(
        StageDef::<Click, Click>::new("copy")
            .pipeline(pipeline())
            .sink(Sink::s3("out", "p")),
    );
    let message = app.describe().expect_err("refused").to_string();
    assert!(
        message.contains("stage `copy` has no source: add `.source("),
        "{message}"
    );
}

#[tokio::test]
async fn a_stage_names_the_variable_it_misses() {
    let missing_table = vars(&[
        ("SHARDFLOW_STATE_TABLE", "state"),
        ("SHARDFLOW_DLQ_URL", "http://queue"),
        ("SHARDFLOW_SINK_FORWARD_STREAM", "copies"),
        ("SHARDFLOW_SINK_WORK_QUEUE_URL", "http://work"),
    ]);
    let err = stage().lambda_stage(&missing_table).await.err().expect("refused");
    assert!(
        matches!(&err, AppError::MissingVar { var, .. } if var == "SHARDFLOW_SINK_LATEST_TABLE"),
        "{err}"
    );
    assert!(err.to_string().contains("export SHARDFLOW_SINK_LATEST_TABLE"), "{err}");
    let missing_dlq = vars(&[
        ("SHARDFLOW_STATE_TABLE", "state"),
        ("SHARDFLOW_SINK_LATEST_TABLE", "t"),
        ("SHARDFLOW_SINK_FORWARD_STREAM", "copies"),
        ("SHARDFLOW_SINK_WORK_QUEUE_URL", "http://work"),
    ]);
    let err = stage().lambda_stage(&missing_dlq).await.err().expect("refused");
    assert!(err.to_string().contains("SHARDFLOW_DLQ_URL"), "{err}");
    assert_eq!(
        Vars::get(&missing_dlq, "SHARDFLOW_SINK_LATEST_TABLE").as_deref(),
        Some("t")
    );
}
