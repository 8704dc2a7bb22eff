//! A join across streams declared with `JoinDef`: its stages' descriptions (one tagging stage per
//! input writing the shuffle stream, the join stage reading it with every input as an upstream),
//! and its deployed stages refusing an environment that is not their template's.

use std::collections::HashMap;

use shardflow_app::description::StageRole;
use shardflow_app::{App, AppError, JoinDef, Sink, Source};
use shardflow_engine::{Pipeline, SplitPipeline, Trigger, Windowing};
use shardflow_stage::Tagged;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Row {
    customer: u32,
    ts_ms: i64,
}

fn split() -> SplitPipeline<Tagged<Row>, Tagged<Row>, (u32, usize, usize)> {
    Pipeline::builder("activity")
        .event_time(|t: &Tagged<Row>| t.value.ts_ms)
        .key_by(|t| t.value.customer)
        .shuffle()
        .expect("a keyed stream")
        .window(Windowing::tumbling(10_000).expect("a size"))
        .trigger(Trigger::at_watermark())
        .join(
            2,
            |t| usize::from(t.side),
            |c, _w, lists| vec![(*c, lists[0].len(), lists[1].len())],
        )
        .sink("activity")
}

fn join() -> JoinDef<Row, (u32, usize, usize)> {
    JoinDef::new("activity")
        .input("orders", Source::json("orders-changes"))
        .input("payments", Source::json("payments-changes"))
        .pipeline(split())
        .sink(Sink::s3("rows", "activity"))
        .function("shop-activity")
}

#[test]
fn each_input_gets_a_tagging_stage_and_the_join_stage_reads_their_shuffle_stream() {
    let app = App::new("shop").join(join()).describe().expect("a valid application");
    let names: Vec<&str> = app.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["activity-orders", "activity-payments", "activity"]);
    for (stage, stream) in [
        ("activity-orders", "orders-changes"),
        ("activity-payments", "payments-changes"),
    ] {
        let s = app.stage(stage).expect("an input stage");
        assert_eq!(s.input_stream(), Some(stream));
        assert_eq!(
            s.role,
            StageRole::Upstream {
                shuffle: "activity-shuffle".to_owned()
            }
        );
        assert!(s.sinks.is_empty() && s.state.operators.is_empty());
        assert_eq!(s.function, "shop-activity");
    }
    let j = app.stage("activity").expect("the join stage");
    assert_eq!(j.input_stream(), Some("activity-shuffle"));
    assert_eq!(
        j.role,
        StageRole::Downstream {
            upstreams: vec!["activity-orders".to_owned(), "activity-payments".to_owned()]
        }
    );
    assert_eq!(j.sinks.len(), 1);
    assert!(!j.state.operators.is_empty(), "the window join keeps state");
}

#[tokio::test]
async fn a_deployed_stage_refuses_a_join_inputs_variable_its_template_did_not_set() {
    let join = join();
    let missing = join
        .lambda_input_stage(0, &HashMap::new())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&missing, AppError::MissingVar { var, .. } if var == "SHARDFLOW_JOIN_INPUTS"),
        "{missing}"
    );
    let other: HashMap<String, String> = [(
        "SHARDFLOW_JOIN_INPUTS".to_owned(),
        "activity-payments=payments-changes,activity-orders=orders-changes".to_owned(),
    )]
    .into();
    let swapped = join.lambda_join_stage(&other).await.err().expect("refused");
    assert!(
        swapped.to_string().contains("synthesize the template again"),
        "{swapped}"
    );
}
