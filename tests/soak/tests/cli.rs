//! The soak command's interface, without LocalStack: `--help` names every option the issue
//! asks for, and a bad option is refused before anything is deployed. (The soak itself runs
//! with `tests/soak/run`, not in `cargo test`; this test also makes `cargo test --workspace`
//! build the binary with the workspace's features, so that `tests/soak/run` finds it built.)

use std::process::Command;

fn soak(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shardflow-soak"))
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run shardflow-soak")
}

#[test]
fn help_names_the_minutes_the_rate_the_seed_and_the_report_directory() {
    let out = soak(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--minutes",
        "--rate",
        "--seed",
        "--shards",
        "--out",
        "--function-timeout",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn an_unknown_option_is_refused_before_anything_is_deployed() {
    let out = soak(&["--minutes", "1", "--no-such-option"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-option"));
}
