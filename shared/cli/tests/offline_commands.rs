//! `shardflow` commands that need no service, run as a user runs them: the help of `cdc` names
//! its real default format.

use std::process::{Command, Output};

fn shardflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardflow"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = shardflow(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "shardflow {}: {stdout}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn cdc_help_names_the_protobuf_default_and_every_format() {
    let help = ok(&["cdc", "--help"]);
    assert!(
        !help.contains("Debezium-style JSON events"),
        "the default is not JSON:\n{help}"
    );
    let about = help.lines().next().unwrap_or_default();
    assert!(
        about.contains("Protobuf") && about.contains("shardflow.cdc.v1.ChangeEvent"),
        "the first line names the default envelope: {about}"
    );
    assert!(
        about.contains("--format protobuf | json | shop"),
        "the first line names the formats: {about}"
    );
    assert!(help.contains("[default: protobuf]"), "{help}");
    for value in ["- protobuf:", "- json:", "- shop:"] {
        assert!(help.contains(value), "--help describes {value}\n{help}");
    }
    let short = ok(&["cdc", "-h"]);
    assert!(short.lines().next() == Some(about), "{short}");
    assert!(
        short.contains("[default: protobuf] [possible values: protobuf, json, shop]"),
        "{short}"
    );

    let overview = ok(&["--help"]);
    let cdc = overview
        .lines()
        .find(|l| l.trim_start().starts_with("cdc "))
        .unwrap_or_else(|| panic!("`shardflow --help` lists cdc:\n{overview}"));
    assert!(
        cdc.contains("Protobuf") && !cdc.contains("JSON events"),
        "the command list describes cdc by its default: {cdc}"
    );
}
