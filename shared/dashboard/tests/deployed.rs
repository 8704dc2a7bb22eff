//! What the dashboard finds of a deployed pipeline on LocalStack besides its functions: the
//! streams (a shuffle stream among them, found by its name alone, before any stage uses it) and
//! a blue/green deployment's cutover and cut, read from a real control table.

use std::collections::BTreeMap;
use std::sync::Arc;

use shardflow_bluegreen::{Colour, ColourControl};
use shardflow_dashboard::colours::read_cutovers;
use shardflow_dashboard::deployment::{discover_streams, Control, DeployedStage, StreamRole};
use shardflow_dashboard::format::clock;
use shardflow_dashboard::server::{Dashboard, DashboardConfig};
use shardflow_dashboard::source::FileLogs;
use shardflow_lifecycle::command::Clients;

#[tokio::test]
async fn a_shuffle_stream_is_shown_with_its_role_and_shards_among_the_pipelines_streams() {
    let tag = format!(
        "graph{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let prefix = format!("shardflow-test-{tag}");
    let (kinesis, changes) = shardflow_testkit::kinesis_stream(&format!("{tag}-changes"), 1).await;
    let (_, shuffle) = shardflow_testkit::kinesis_stream(&format!("{tag}-revenue-shuffle"), 3).await;
    let (_, other) = shardflow_testkit::kinesis_stream("someone-elses", 1).await;

    let streams = discover_streams(&kinesis, &prefix, &[]).await.expect("streams");
    let names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [changes.as_str(), shuffle.as_str()],
        "only the pipeline's streams"
    );
    assert_eq!(streams[0].role, StreamRole::Source);
    assert_eq!((streams[1].role, streams[1].shards), (StreamRole::Shuffle, 3));
    assert!(!names.contains(&other.as_str()));

    // On the page: a row per stream with its role and shards.
    let logs = FileLogs::new(std::env::temp_dir().join(&tag));
    let config = DashboardConfig {
        prefix: prefix.clone(),
        ..DashboardConfig::default()
    };
    let dashboard = Arc::new(Dashboard::new(config, Clients::from_env().await, logs));
    dashboard.poll().await.expect("a read of the pipeline");
    let page = dashboard.page().expect("the page");
    assert!(
        page.contains(&format!("<tr data-stream=\"{shuffle}\" data-role=\"shuffle\">")),
        "the shuffle stream is not on the page"
    );
    assert!(page.contains(&format!("<tr data-stream=\"{changes}\" data-role=\"source\">")));
    let cost = dashboard.overview().expect("overview").cost.expect("a cost");
    let shuffle_cost = cost
        .streams
        .iter()
        .find(|s| s.stream == shuffle)
        .expect("the shuffle stream's cost");
    assert!(shuffle_cost.usd_per_hour > 0.0, "its shard-hours are priced");
}

#[tokio::test]
async fn the_cutover_in_the_control_table_gives_the_live_colour_the_cut_and_what_each_colour_owns() {
    let (dynamodb, table) = shardflow_testkit::state_table("dash-control").await;
    let control = Control {
        table: table.clone(),
        deployment: "shop".to_owned(),
    };
    let stage = |colour: &str| DeployedStage {
        function: format!("{colour}-revenue"),
        stage: "revenue".to_owned(),
        table: "state".to_owned(),
        stream: None,
        mapping_state: None,
        colour: Some(colour.to_owned()),
        control: Some(control.clone()),
        memory_mb: None,
        architecture: None,
        environment: BTreeMap::new(),
    };
    let stages = [stage("blue"), stage("green")];

    let (views, problems) = read_cutovers(&dynamodb, &stages).await;
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        (views[0].live.as_str(), views[0].cut_ms),
        ("blue", None),
        "no switch yet"
    );

    let cut = 1_796_612_400_000;
    let colours = ColourControl::new(dynamodb.clone(), &table, "shop");
    let current = colours.load().await.expect("the cutover");
    colours.switch(&current, Colour::Green, cut).await.expect("a switch");
    let (views, problems) = read_cutovers(&dynamodb, &stages).await;
    assert!(problems.is_empty(), "{problems:?}");
    let v = &views[0];
    assert_eq!((v.live.as_str(), v.cut_ms, v.version), ("green", Some(cut), 1));
    let green = v.stages.iter().find(|s| s.colour == "green").unwrap();
    assert!(green.live);
    assert_eq!(green.owns, format!("results from {} on", clock(cut)));
    let blue = v.stages.iter().find(|s| s.colour == "blue").unwrap();
    assert_eq!(blue.owns, format!("results before {}", clock(cut)));

    let missing = Control {
        table: format!("{table}-missing"),
        deployment: "shop".to_owned(),
    };
    let mut gone = stage("blue");
    gone.control = Some(missing);
    let (views, problems) = read_cutovers(&dynamodb, &[gone]).await;
    assert!(views.is_empty());
    assert_eq!(
        problems.len(),
        1,
        "an unreadable control table is a problem shown, not a crash"
    );
}
