//! Helpers of the end-to-end tests: deploying the infrastructure template to the running
//! LocalStack with the project's own deploy command, and invoking functions through the AWS CLI
//! of LocalStack's venv (the same tools a person uses).
//!
//! The tests need LocalStack up (`localstack/up`, `source localstack/env`) and the function zips
//! built (`functions/package --all`); `scripts/test` does both.

pub mod shop;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The directory of this build's `shardflow` command (`target/<profile>`, the parent of the
/// test's own `deps`). `cargo test --workspace` builds it with the tests; run alone, a test
/// builds it first.
pub fn shardflow_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps")
        .to_path_buf();
    if !dir.join("shardflow").is_file() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "shardflow-cli", "--bin", "shardflow"]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.current_dir(repo_root()).status().expect("run cargo build");
        assert!(status.success(), "cargo build -p shardflow-cli failed");
    }
    dir
}

/// Panics with the command to run unless every function zip the template references exists.
pub fn require_function_zips(functions: &[&str]) {
    for f in functions {
        let zip = repo_root().join("out/lambda").join(format!("{f}.zip"));
        assert!(
            zip.is_file(),
            "{} is missing: build the functions first (functions/package --all, which scripts/test runs)",
            zip.display()
        );
    }
}

/// Deploys `template` (relative to the repository) as stack `stack` with `parameters` through
/// `localstack/deploy`, and returns the stack's outputs.
pub fn deploy(stack: &str, template: &str, parameters: &[(&str, &str)]) -> HashMap<String, String> {
    deploy_with_code(stack, template, parameters, &[])
}

/// [`deploy`], with other code for some functions: each `(function, zip)` of `code` deploys
/// `out/lambda/{zip}.zip` where the template names `{function}.zip` (`SHARDFLOW_FUNCTION_CODE`
/// of `localstack/deploy`).
pub fn deploy_with_code(
    stack: &str,
    template: &str,
    parameters: &[(&str, &str)],
    code: &[(&str, &str)],
) -> HashMap<String, String> {
    let root = repo_root();
    let function_code: Vec<String> = code.iter().map(|(f, zip)| format!("{f}={zip}")).collect();
    let output = Command::new(root.join("localstack/deploy"))
        .arg(stack)
        .arg(root.join(template))
        .args(parameters.iter().map(|(k, v)| format!("{k}={v}")))
        .env("SHARDFLOW_FUNCTION_CODE", function_code.join(","))
        .current_dir(&root)
        .output()
        .expect("run localstack/deploy");
    assert!(
        output.status.success(),
        "localstack/deploy {stack} {template} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the deploy command's outputs are not a JSON object ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Runs the AWS CLI of LocalStack's venv with `args` (against `AWS_ENDPOINT_URL`) and returns
/// its standard output.
pub fn aws(args: &[&str]) -> String {
    let root = repo_root();
    let venv = root.join("localstack/.venv/bin");
    let output = Command::new(venv.join("python"))
        .arg(venv.join("aws"))
        .args(args)
        .env("AWS_PAGER", "")
        .output()
        .expect("run the AWS CLI of localstack/.venv");
    assert!(
        output.status.success(),
        "aws {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Deletes a stack, best effort (the emulator keeps its streams' records in memory).
pub fn delete_stack(stack: &str) {
    let root = repo_root();
    let venv = root.join("localstack/.venv/bin");
    let _ = Command::new(venv.join("python"))
        .arg(venv.join("aws"))
        .args(["cloudformation", "delete-stack", "--stack-name", stack])
        .output();
}

/// Deletes its stack when dropped — at the end of a test and when it panics, so that a failed
/// run does not leave functions polling in the emulator for the next tests.
#[derive(Debug)]
pub struct StackGuard(pub String);

impl Drop for StackGuard {
    fn drop(&mut self) {
        delete_stack(&self.0);
    }
}

/// Invokes `function` synchronously with `payload` and returns its response (the function's
/// JSON answer, or the error document of a failed invocation).
pub fn invoke(function: &str, payload: &serde_json::Value) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let request = dir.path().join("request.json");
    let response = dir.path().join("response.json");
    std::fs::write(&request, payload.to_string()).expect("write the request");
    let request_arg = format!("fileb://{}", request.display());
    aws(&[
        "lambda",
        "invoke",
        "--function-name",
        function,
        "--payload",
        &request_arg,
        &response.to_string_lossy(),
    ]);
    let body = std::fs::read(&response).expect("read the response");
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}
