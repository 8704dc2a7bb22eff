//! `shardflow synth` on the clickstream example and on an application using every sink kind:
//! the templates pass cfn-lint (`infra/lint`), a wildcard action fails the check, and bad
//! configuration is refused with the fix.

use std::path::Path;
use std::process::Command;

use shardflow_app::description::address_suffix;
use shardflow_app::{env_var, AppDescription, EnvVar, SinkDescription, SourceDescription, StageDescription};
use shardflow_synth::command::{run, SynthArgs};
use shardflow_synth::yaml::{list, map, s, Yaml};
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
