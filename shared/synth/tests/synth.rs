//! `shardflow synth` on the clickstream example and on an application using every sink kind:
//! the templates pass cfn-lint (`infra/lint`), a wildcard action fails the check, and bad
//! configuration is refused with the fix.

use std::path::Path;
use std::process::Command;

use shardflow_app::description::address_suffix;
use shardflow_app::{env_var, AppDescription, EnvVar, SinkDescription, SourceDescription, StageDescription, StageRole};
use shardflow_synth::command::{run, SynthArgs};
use shardflow_synth::yaml::{get_att, list, map, reference, s, sub, Yaml};
use shardflow_synth::{check, synthesize, template, SynthError, SynthOptions};

fn clickstream() -> AppDescription {
    shardflow_clickstream::app().describe().expect("the example is valid")
}

fn sink(name: &str, kind: &str, target: Option<&str>) -> SinkDescription {
    SinkDescription {
        name: name.to_owned(),
        kind: kind.to_owned(),
        target: target.map(str::to_owned),
        env: vec![EnvVar {
            name: env_var(name, address_suffix(kind)),
            required: true,
            meaning: String::new(),
        }],
    }
}

/// The clickstream app, its sessions also forwarded on a stream to a second stage that writes
/// to SNS, SQS and Postgres and dead-letters to S3: every sink kind and both dead-letter kinds.
fn every_kind() -> AppDescription {
    let mut app = clickstream();
    app.stages[0]
        .sinks
        .push(sink("forward", "kinesis", Some("sessions-out")));
    app.stages.push(StageDescription {
        name: "notify".to_owned(),
        function: "clickstream-notify".to_owned(),
        pipeline: Some("notify".to_owned()),
        source: Some(SourceDescription {
            stream: "sessions-out".to_owned(),
            format: "json".to_owned(),
        }),
        sinks: vec![
            sink("alerts", "sns", None),
            sink("work", "sqs", None),
            sink("report", "postgres", Some("session_report")),
        ],
        dead_letters: "s3".to_owned(),
        state: app.stages[0].state.clone(),
        env: vec![],
        role: StageRole::Whole,
    });
    app
}

/// Runs `infra/lint` (cfn-lint) on `yaml`; panics with its findings if it fails.
fn lint(yaml: &str, name: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join(name);
    std::fs::write(&file, yaml).expect("write the template");
    let lint = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/lint");
    let output = Command::new(&lint).arg(&file).output().expect("run infra/lint");
    assert!(
        output.status.success(),
        "cfn-lint refused {name}:\n{}{}\n--- template ---\n{yaml}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_clickstream_template_passes_cfn_lint() {
    let yaml = synthesize(&clickstream(), &SynthOptions::default()).expect("a template");
    for expected in [
        "SessionsSessionsTableTable:",
        "SessionsSessionsArchiveBucket:",
        "PageViewsStream:",
        "SHARDFLOW_SINK_SESSIONS_TABLE_TABLE:",
        "BisectBatchOnFunctionError: true",
        "ReportBatchItemFailures",
        "Code: \"../out/lambda/clickstream-sessions.zip\"",
    ] {
        assert!(yaml.contains(expected), "{expected} missing from\n{yaml}");
    }
    lint(&yaml, "clickstream.yaml");
}

#[test]
fn a_template_with_every_sink_kind_passes_cfn_lint() {
    let yaml = synthesize(&every_kind(), &SynthOptions::default()).expect("a template");
    for expected in [
        "NotifyAlertsTopic:",
        "NotifyWorkQueue:",
        "NotifyReportDatabaseSecret:",
        "NotifyReportDatabaseUrl:",
        "SessionsOutStream:",
        "DeadLetterBucket:",
        "SHARDFLOW_SINK_REPORT_DATABASE_SECRET_ARN:",
    ] {
        assert!(yaml.contains(expected), "{expected} missing");
    }
    lint(&yaml, "every-kind.yaml");
}

/// The statements of the first role's policy in `template`.
fn first_role_statements(template: &mut Yaml) -> &mut Vec<Yaml> {
    let Some(Yaml::Map(resources)) = template.get_mut("Resources") else {
        panic!("no resources");
    };
    let (_, role) = resources
        .iter_mut()
        .find(|(_, r)| r.get("Type") == Some(&s("AWS::IAM::Role")))
        .expect("a role");
    let policies = role
        .get_mut("Properties")
        .and_then(|p| p.get_mut("Policies"))
        .expect("policies");
    let Yaml::List(policies) = policies else {
        panic!("a list")
    };
    match policies[0]
        .get_mut("PolicyDocument")
        .and_then(|d| d.get_mut("Statement"))
    {
        Some(Yaml::List(statements)) => statements,
        _ => panic!("no statements"),
    }
}

#[test]
fn a_wildcard_action_anywhere_fails_the_check() {
    let clean = template(&every_kind(), &SynthOptions::default()).expect("a template");
    check(&clean).expect("the synthesized template names its actions");
    for wildcard in ["dynamodb:*", "*", "s3:Put*"] {
        let mut bad = clean.clone();
        first_role_statements(&mut bad).push(map([
            ("Effect", s("Allow")),
            ("Action", list([s("sqs:SendMessage"), s(wildcard)])),
            ("Resource", s("arn:aws:dynamodb:us-east-1:1:table/t")),
        ]));
        match check(&bad) {
            Err(SynthError::WildcardActions(found)) => assert_eq!(found, [wildcard]),
            other => panic!("{wildcard} passed the check: {other:?}"),
        }
    }
}

#[test]
fn bad_configuration_is_refused_with_the_fix_before_anything_is_written() {
    let mut no_source = clickstream();
    no_source.stages[0].source = None;
    let message = synthesize(&no_source, &SynthOptions::default())
        .expect_err("refused")
        .to_string();
    assert!(
        message.contains("stage `sessions` has no source: add `.source("),
        "{message}"
    );

    let mut unknown_format = clickstream();
    if let Some(source) = unknown_format.stages[0].source.as_mut() {
        source.format = "avro".to_owned();
    }
    let message = synthesize(&unknown_format, &SynthOptions::default())
        .expect_err("refused")
        .to_string();
    assert!(message.contains("use one of json, protobuf, cdc"), "{message}");

    // Through the command: a Kinesis sink without its stream, from a description file.
    let mut no_address = clickstream();
    no_address.stages[0].sinks.push(sink("forward", "kinesis", None));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let description = dir.path().join("app.json");
    std::fs::write(&description, serde_json::to_vec(&no_address).expect("JSON")).expect("write");
    let out = dir.path().join("template.yaml");
    let message = run(SynthArgs {
        description: Some(description),
        app_binary: None,
        out: Some(out.clone()),
        code_dir: "out".to_owned(),
    })
    .expect_err("refused")
    .to_string();
    assert!(
        message.contains("sink `forward` (kinesis) has no address: give it the stream it writes"),
        "{message}"
    );
    assert!(!out.exists(), "nothing is written for a refused description");
}

/// A stage of `role` reading `stream` in `format`, writing `sinks`.
fn split_stage(
    name: &str,
    stream: &str,
    format: &str,
    sinks: Vec<SinkDescription>,
    role: StageRole,
) -> StageDescription {
    StageDescription {
        name: name.to_owned(),
        function: format!("split-{name}"),
        pipeline: Some(name.to_owned()),
        source: Some(SourceDescription {
            stream: stream.to_owned(),
            format: format.to_owned(),
        }),
        sinks,
        dead_letters: "sqs".to_owned(),
        state: clickstream().stages[0].state.clone(),
        env: vec![],
        role,
    }
}

/// Revenue cut at its `key_by`: `revenue-keyby` reads the orders and writes the shuffle stream
/// `revenue-shuffle`, `revenue-shuffled` windows it and writes DynamoDB.
fn keyed_after_shuffle() -> AppDescription {
    AppDescription {
        app: "shop".to_owned(),
        stages: vec![
            split_stage(
                "revenue-keyby",
                "orders",
                "json",
                vec![],
                StageRole::Upstream {
                    shuffle: "revenue-shuffle".to_owned(),
                },
            ),
            split_stage(
                "revenue-shuffled",
                "revenue-shuffle",
                "shuffle",
                vec![sink("revenue", "dynamodb", None)],
                StageRole::Downstream {
                    upstreams: vec!["revenue-keyby".to_owned()],
                },
            ),
        ],
    }
}

/// A join of `inputs` streams: `table{i}` reads `table{i}-changes` and writes `join-shuffle`;
/// `joined` joins them all.
fn stream_join(inputs: usize) -> AppDescription {
    let mut stages: Vec<StageDescription> = (0..inputs)
        .map(|i| {
            split_stage(
                &format!("table{i}"),
                &format!("table{i}-changes"),
                "json",
                vec![],
                StageRole::Upstream {
                    shuffle: "join-shuffle".to_owned(),
                },
            )
        })
        .collect();
    stages.push(split_stage(
        "joined",
        "join-shuffle",
        "shuffle",
        vec![sink("rows", "s3", Some("joined"))],
        StageRole::Downstream {
            upstreams: (0..inputs).map(|i| format!("table{i}")).collect(),
        },
    ));
    AppDescription {
        app: "tables".to_owned(),
        stages,
    }
}

/// Property `path` (keys, outer first) of resource `id` of `template`.
fn property<'a>(template: &'a Yaml, id: &str, path: &[&str]) -> &'a Yaml {
    let mut at = template
        .get("Resources")
        .and_then(|r| r.get(id))
        .and_then(|r| r.get("Properties"))
        .unwrap_or_else(|| panic!("no resource {id}"));
    for key in path {
        at = at.get(key).unwrap_or_else(|| panic!("{id} has no {key}"));
    }
    at
}

/// Variable `name` of function `id`.
fn variable<'a>(template: &'a Yaml, id: &str, name: &str) -> &'a Yaml {
    property(template, id, &["Environment", "Variables", name])
}

#[test]
fn a_keyed_stage_after_a_shuffle_gets_its_shuffle_stream_tick_and_upstream_and_passes_cfn_lint() {
    let app = keyed_after_shuffle();
    let t = template(&app, &SynthOptions::default()).expect("a template");
    assert_eq!(
        property(&t, "RevenueShuffleStream", &["ShardCount"]),
        &reference("RevenueShuffleShardCount")
    );
    assert_eq!(
        property(&t, "RevenueShuffleStream", &["RetentionPeriodHours"]),
        &reference("ShuffleRetentionHours")
    );
    assert!(t
        .get("Parameters")
        .and_then(|p| p.get("RevenueShuffleShardCount"))
        .is_some());
    let (up, down) = ("RevenueKeybyFunction", "RevenueShuffledFunction");
    assert_eq!(
        variable(&t, up, "SHARDFLOW_SHUFFLE_STREAM"),
        &reference("RevenueShuffleStream")
    );
    assert_eq!(variable(&t, down, "SHARDFLOW_UPSTREAM_STAGE"), &s("revenue-keyby"));
    assert_eq!(
        variable(&t, down, "SHARDFLOW_UPSTREAM_INPUT_STREAM"),
        &get_att("OrdersStream", "Arn")
    );
    assert_eq!(
        variable(&t, down, "SHARDFLOW_IDLENESS_MS"),
        &reference("ShuffleIdlenessMs")
    );
    assert_eq!(
        property(&t, "RevenueShuffledMapping", &["EventSourceArn"]),
        &get_att("RevenueShuffleStream", "Arn")
    );
    assert_eq!(
        property(&t, "RevenueKeybyTickPermission", &["SourceArn"]),
        &get_att("RevenueKeybyTickRule", "Arn")
    );
    let yaml = synthesize(&app, &SynthOptions::default()).expect("a template");
    for expected in [
        "Sid: \"WriteShuffle\"",
        "Input: \"{\\\"shardflowTick\\\": {}}\"",
        "RevenueShuffledIteratorAgeAlarm:",
    ] {
        assert!(yaml.contains(expected), "{expected} missing from\n{yaml}");
    }
    assert!(
        !yaml.contains("RevenueShuffledTickRule"),
        "only the upstream stage is ticked"
    );
    lint(&yaml, "keyed-after-shuffle.yaml");
}

#[test]
fn a_join_of_twenty_streams_through_one_shuffle_stream_passes_cfn_lint() {
    let app = stream_join(20);
    let t = template(&app, &SynthOptions::default()).expect("a template");
    let join_inputs = sub((0..20)
        .map(|i| format!("table{i}=${{Table{i}ChangesStream.Arn}}"))
        .collect::<Vec<_>>()
        .join(","));
    // the join stage reads them all, and every upstream finds its side among them
    assert_eq!(variable(&t, "JoinedFunction", "SHARDFLOW_JOIN_INPUTS"), &join_inputs);
    for i in 0..20 {
        let up = format!("Table{i}Function");
        assert_eq!(variable(&t, &up, "SHARDFLOW_JOIN_INPUTS"), &join_inputs);
        assert_eq!(
            variable(&t, &up, "SHARDFLOW_SHUFFLE_STREAM"),
            &reference("JoinShuffleStream")
        );
        property(&t, &format!("Table{i}TickRule"), &["ScheduleExpression"]);
        // provisioned, as asked: LocalStack makes a stream without a mode on-demand, ten at most
        assert_eq!(
            property(
                &t,
                &format!("Table{i}ChangesStream"),
                &["StreamModeDetails", "StreamMode"]
            ),
            &s("PROVISIONED")
        );
    }
    let yaml = synthesize(&app, &SynthOptions::default()).expect("a template");
    assert_eq!(yaml.matches("Sid: \"WriteShuffle\"").count(), 20, "{yaml}");
    lint(&yaml, "stream-join.yaml");
}

#[test]
fn a_broken_shuffle_or_join_is_refused_naming_the_fix() {
    let refused = |app: &AppDescription| {
        synthesize(app, &SynthOptions::default())
            .expect_err("refused")
            .to_string()
    };
    let mut no_downstream = keyed_after_shuffle();
    no_downstream.stages.pop();
    let message = refused(&no_downstream);
    assert!(
        message.contains("the shuffle stream `revenue-shuffle` that stage `revenue-keyby` writes has no downstream stage: add a downstream stage that reads `revenue-shuffle`"),
        "{message}"
    );

    let mut unnamed = keyed_after_shuffle();
    unnamed.stages[1].role = StageRole::Downstream {
        upstreams: vec!["revenue-other".to_owned()],
    };
    let message = refused(&unnamed);
    assert!(
        message.contains("names the upstream `revenue-other`, which is not a stage: add stage `revenue-other`"),
        "{message}"
    );
    assert!(
        message.contains("does not name it: add \"revenue-keyby\" to the upstreams of stage `revenue-shuffled`"),
        "{message}"
    );

    let mut plain_reader = keyed_after_shuffle();
    plain_reader.stages[1].role = StageRole::Whole;
    let message = refused(&plain_reader);
    assert!(
        message.contains("stage `revenue-shuffled` reads the shuffle format but is not a downstream stage: give it role `Downstream { upstreams }`"),
        "{message}"
    );

    let mut same_input = stream_join(3);
    if let Some(source) = same_input.stages[1].source.as_mut() {
        source.stream = "table0-changes".to_owned();
    }
    let message = refused(&same_input);
    assert!(
        message.contains("joins the stream `table0-changes` twice (upstream `table1`): read each input stream of a join with one upstream stage"),
        "{message}"
    );
}
