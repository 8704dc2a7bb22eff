//! `shardflow deploy --local | --aws` and `shardflow destroy`: a project's functions built,
//! zipped, its template synthesized from the application's description, the stack deployed
//! and waited for, its outputs printed with how to feed it; and the stack removed.
//!
//! What a deployment leaves in `<project>/out/deploy/`: `lambda/<function>.zip`,
//! `template.yaml`, `deployment.json` (stack, target, outputs, input streams: what `put` and
//! `destroy` read), `outputs.env` (the outputs as shell variables) and the commands' logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shardflow_app::AppDescription;
use shardflow_synth::command::{read_description, SynthArgs};
use shardflow_synth::{sink_resource_id, stream_id, synthesize, SynthOptions};

use crate::error::ProjectError;
use crate::progress::step;

/// Where a stack goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// LocalStack (`AWS_ENDPOINT_URL`, else `127.0.0.1:$SHARDFLOW_LOCALSTACK_PORT`).
    Local,
    /// The AWS account and region of the AWS CLI's configuration.
    Aws,
}

/// `--local` or `--aws`, exactly one.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// LocalStack: host builds of the functions, deployed through the checkout's
    /// `localstack/deploy`.
    #[arg(long)]
    pub local: bool,
    /// AWS: arm64 builds with cargo-lambda, deployed with the AWS CLI.
    #[arg(long)]
    pub aws: bool,
}

impl TargetArgs {
    /// The target chosen.
    pub fn target(&self) -> Target {
        if self.aws {
            Target::Aws
        } else {
            Target::Local
        }
    }
}

/// Arguments of `shardflow deploy`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
    /// The stack's name (default: the application's name).
    #[arg(long)]
    pub stack: Option<String>,
    /// The project's directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// With --aws: the S3 bucket the function zips are uploaded to.
    #[arg(long)]
    pub bucket: Option<String>,
    /// The shardflow checkout whose `localstack/` deploys (default: `SHARDFLOW_HOME`, or the
    /// checkout this `shardflow` was built from).
    #[arg(long)]
    pub shardflow: Option<PathBuf>,
    /// Template parameters, `Key=Value` (e.g. `ShardCount=2`).
    pub parameters: Vec<String>,
}

/// Arguments of `shardflow destroy`.
#[derive(Debug, Clone, clap::Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
    /// The stack (default: the one `shardflow deploy` last made from the project).
    #[arg(long)]
    pub stack: Option<String>,
    /// The project's directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The shardflow checkout whose LocalStack AWS CLI is used (as for `deploy`).
    #[arg(long)]
    pub shardflow: Option<PathBuf>,
}

/// What a deployment left for `put` and `destroy`: `out/deploy/deployment.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The stack.
    pub stack: String,
    /// Where it is.
    pub target: Target,
    /// Its outputs.
    pub outputs: BTreeMap<String, String>,
    /// The output keys of the streams the stages read, in stage order.
    pub inputs: Vec<String>,
}

impl Deployment {
    /// The deployment recorded in project `dir`.
    pub fn read(dir: &Path) -> Result<Deployment, ProjectError> {
        let path = deploy_dir(dir).join("deployment.json");
        let text = std::fs::read_to_string(&path).map_err(|_| {
            ProjectError::Deployment(format!(
                "{} has no deployment ({} is missing): run `shardflow deploy` there first",
                dir.display(),
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| ProjectError::Deployment(format!("{}: not a deployment record: {e}", path.display())))
    }

    /// The name of the stream the deployment's only stage-input is, or why there is none.
    pub fn input_stream(&self) -> Result<&str, ProjectError> {
        match self.inputs.as_slice() {
            [key] => self
                .outputs
                .get(key)
                .map(String::as_str)
                .ok_or_else(|| ProjectError::Deployment(format!("stack {} has no output {key}", self.stack))),
            keys => Err(ProjectError::Deployment(format!(
                "stack {} reads {} streams ({}): name one with --stream",
                self.stack,
                keys.len(),
                keys.iter()
                    .filter_map(|k| self.outputs.get(k))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// `<project>/out/deploy`.
pub fn deploy_dir(project: &Path) -> PathBuf {
    project.join("out/deploy")
}

/// Checks `dir` is a Cargo workspace.
fn project_dir(dir: &Path) -> Result<PathBuf, ProjectError> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    if !text.contains("[workspace]") {
        return Err(ProjectError::NotAProject(dir.to_path_buf()));
    }
    Ok(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()))
}

/// The command line of `command`, for messages.
fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` (its standard error appended to `log`), returns its standard output; a
/// failure names the command and shows the end of the log.
fn run_logged(what: &str, mut command: Command, log: &Path) -> Result<String, ProjectError> {
    let line = command_line(&command);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(ProjectError::io(log))?;
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::from(file))
        .output()
        .map_err(|e| ProjectError::Command {
            what: what.to_owned(),
            command: line.clone(),
            log: format!(": {e}"),
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(25).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(ProjectError::Command {
        what: what.to_owned(),
        command: line,
        log: format!(
            " with {}; the end of {}:\n{}",
            output.status,
            log.display(),
            tail.join("\n")
        ),
    })
}

/// The binaries `cargo build --message-format=json` reported, by name.
fn executables(messages: &str) -> BTreeMap<String, PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_owned();
            let exe = m["executable"].as_str()?;
            Some((name, PathBuf::from(exe)))
        })
        .collect()
}

/// Builds every binary of the project for this host; returns them by name.
fn build_host(project: &Path, log: &Path) -> Result<BTreeMap<String, PathBuf>, ProjectError> {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args([
            "build",
            "--workspace",
            "--bins",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(project);
    let messages = step("building the functions for this host (cargo build)", || {
        run_logged("building the functions", cargo, log)
    })?;
    Ok(executables(&messages))
}

/// The application's description, from one of its function binaries.
fn describe(binaries: &BTreeMap<String, PathBuf>) -> Result<AppDescription, ProjectError> {
    let binary = binaries
        .values()
        .next()
        .ok_or_else(|| ProjectError::Deployment("the project has no function binaries (functions/*)".to_owned()))?;
    let args = SynthArgs {
        description: None,
        app_binary: Some(binary.clone()),
        out: None,
        code_dir: String::new(),
    };
    Ok(read_description(&args)?)
}

/// The Lambda architecture of this host.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x86_64",
    }
}

/// The command that builds `functions` for arm64 Lambda with cargo-lambda.
fn cargo_lambda_args(functions: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["lambda", "build", "--release", "--arm64", "--output-format", "zip"]
        .map(str::to_owned)
        .to_vec();
    for f in functions {
        args.push("-p".to_owned());
        args.push((*f).to_owned());
    }
    args
}

/// Builds `functions` for arm64 with cargo-lambda and copies their zips to `zips`; refuses,
/// with the commands to run, when cargo-lambda is missing.
fn build_aws(project: &Path, functions: &[&str], zips: &Path, log: &Path) -> Result<(), ProjectError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = cargo_lambda_args(functions);
    let present = Command::new(&cargo)
        .args(["lambda", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        return Err(ProjectError::MissingTool {
            tool: "cargo-lambda (for the arm64 builds of AWS)".to_owned(),
            how: format!(
                "Install it and zig, e.g. `pip install cargo-lambda==1.9.2 ziglang==0.17.1` (as infra/build does), \
                 or `cargo install --locked cargo-lambda` with zig on PATH; \
                 `rustup target add aarch64-unknown-linux-gnu`; then run `shardflow deploy --aws` again. \
                 It builds, in {}: cargo {}",
                project.display(),
                args.join(" ")
            ),
        });
    }
    let mut build = Command::new(&cargo);
    build.args(&args).current_dir(project);
    step("building the functions for arm64 (cargo lambda build)", || {
        run_logged("cargo lambda build", build, log)
    })?;
    let metadata = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(project)
        .output()
        .map_err(ProjectError::io(project))?;
    let target: serde_json::Value = serde_json::from_slice(&metadata.stdout)
        .map_err(|e| ProjectError::Deployment(format!("cargo metadata: {e}")))?;
    let target = PathBuf::from(target["target_directory"].as_str().unwrap_or("target"));
    for f in functions {
        let built = target.join("lambda").join(f).join("bootstrap.zip");
        let zip = zips.join(format!("{f}.zip"));
        std::fs::copy(&built, &zip).map_err(ProjectError::io(&built))?;
    }
    Ok(())
}

/// The AWS CLI for `target`: for LocalStack the checkout's venv one (else `aws`) with the
/// emulator's endpoint, for AWS `AWS_CLI` or `aws`.
fn aws_cli(target: Target, checkout: Option<&Path>) -> Command {
    match target {
        Target::Aws => Command::new(std::env::var_os("AWS_CLI").unwrap_or_else(|| "aws".into())),
        Target::Local => {
            let venv = checkout.map(|c| c.join("localstack/.venv/bin/aws"));
            let mut command = match venv.filter(|p| p.is_file()) {
                Some(aws) => Command::new(aws),
                None => Command::new("aws"),
            };
            let endpoint = local_endpoint();
            command.arg("--endpoint-url").arg(&endpoint);
            for (key, value) in local_env() {
                command.env(key, value);
            }
            command
        }
    }
}

/// LocalStack's endpoint: `AWS_ENDPOINT_URL`, else `http://127.0.0.1:$SHARDFLOW_LOCALSTACK_PORT`
/// (4566), as `localstack/env` sets it.
pub fn local_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        format!(
            "http://127.0.0.1:{}",
            std::env::var("SHARDFLOW_LOCALSTACK_PORT").unwrap_or_else(|_| "4566".to_owned())
        )
    })
}

/// The variables `localstack/env` sets, keeping any already set.
pub fn local_env() -> Vec<(&'static str, String)> {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let region = var("AWS_REGION", "us-east-1");
    vec![
        ("AWS_ENDPOINT_URL", local_endpoint()),
        ("AWS_ACCESS_KEY_ID", var("AWS_ACCESS_KEY_ID", "test")),
        ("AWS_SECRET_ACCESS_KEY", var("AWS_SECRET_ACCESS_KEY", "test")),
        ("AWS_DEFAULT_REGION", region.clone()),
        ("AWS_REGION", region),
        ("AWS_PAGER", String::new()),
    ]
}

/// Deploys the template `template` as `stack`; returns the outputs.
fn deploy_stack(
    args: &DeployArgs,
    checkout: Option<&Path>,
    stack: &str,
    template: &Path,
    log: &Path,
) -> Result<BTreeMap<String, String>, ProjectError> {
    let target = args.target.target();
    let outputs = match target {
        Target::Local => {
            let checkout = checkout.ok_or_else(|| ProjectError::NoCheckout("deploying to LocalStack".to_owned()))?;
            let mut deploy = Command::new(checkout.join("localstack/deploy"));
            deploy
                .arg(stack)
                .arg(template)
                .arg(format!("Architecture={}", host_architecture()))
                .args(&args.parameters)
                .envs(local_env());
            step(&format!("deploying stack {stack} to LocalStack"), || {
                run_logged("localstack/deploy", deploy, log)
            })?
        }
        Target::Aws => {
            let bucket = args.bucket.as_deref().ok_or_else(|| {
                ProjectError::Deployment("--aws needs --bucket BUCKET: an S3 bucket for the function zips".to_owned())
            })?;
            let packaged = template.with_file_name("packaged.yaml");
            let mut package = aws_cli(target, None);
            package
                .args(["cloudformation", "package", "--template-file"])
                .arg(template)
                .args(["--s3-bucket", bucket, "--s3-prefix", stack, "--output-template-file"])
                .arg(&packaged);
            step("uploading the function zips (aws cloudformation package)", || {
                run_logged("aws cloudformation package", package, log)
            })?;
            let mut deploy = aws_cli(target, None);
            deploy
                .args(["cloudformation", "deploy", "--stack-name", stack, "--template-file"])
                .arg(&packaged)
                .args(["--capabilities", "CAPABILITY_IAM", "--no-fail-on-empty-changeset"])
                .args(["--parameter-overrides", "Architecture=arm64"])
                .args(&args.parameters);
            step(&format!("deploying stack {stack} to AWS"), || {
                run_logged("aws cloudformation deploy", deploy, log)
            })?;
            let mut describe = aws_cli(target, None);
            describe.args([
                "cloudformation",
                "describe-stacks",
                "--stack-name",
                stack,
                "--query",
                "Stacks[0].Outputs",
                "--output",
                "json",
            ]);
            let listed = run_logged("aws cloudformation describe-stacks", describe, log)?;
            let listed: Vec<BTreeMap<String, String>> = serde_json::from_str(&listed).unwrap_or_default();
            return Ok(listed
                .into_iter()
                .filter_map(|o| Some((o.get("OutputKey")?.clone(), o.get("OutputValue")?.clone())))
                .collect());
        }
    };
    serde_json::from_str(&outputs)
        .map_err(|e| ProjectError::Deployment(format!("localstack/deploy printed no outputs ({e}): {outputs}")))
}

/// How to read what each sink writes, given the stack's outputs.
fn how_to_read(app: &AppDescription, outputs: &BTreeMap<String, String>, aws: &str) -> Vec<String> {
    let out = |key: String| outputs.get(&key).cloned().unwrap_or(key);
    let mut lines = Vec::new();
    for stage in &app.stages {
        for sink in &stage.sinks {
            let id = sink_resource_id(&stage.name, sink);
            let line = match sink.kind.as_str() {
                "dynamodb" => format!("{aws} dynamodb scan --table-name {}", out(format!("{id}Name"))),
                "s3" => format!(
                    "{aws} s3 ls --recursive s3://{}/{}/",
                    out(format!("{id}Name")),
                    sink.target.as_deref().unwrap_or_default().trim_matches('/')
                ),
                "sqs" => format!(
                    "{aws} sqs receive-message --max-number-of-messages 10 --queue-url {}",
                    out(format!("{id}Url"))
                ),
                "sns" => format!("subscribe a queue to the topic {}", out(format!("{id}Arn"))),
                "kinesis" => format!("the stream {} (read by its stage)", out(format!("{id}Name"))),
                _ => format!(
                    "the table {} of the database given as the stack's parameter",
                    sink.target.as_deref().unwrap_or_default()
                ),
            };
            lines.push(format!(
                "  {} ({} sink of stage {}): {line}",
                sink.name, sink.kind, stage.name
            ));
        }
    }
    lines
}

/// Runs `shardflow deploy`.
pub fn run(args: DeployArgs) -> Result<(), ProjectError> {
    let started = Instant::now();
    let target = args.target.target();
    let project = project_dir(&args.dir)?;
    let checkout = match target {
        Target::Local => Some(crate::checkout(args.shardflow.as_deref())?),
        Target::Aws => crate::checkout(args.shardflow.as_deref()).ok(),
    };
    let out = deploy_dir(&project);
    let zips = out.join("lambda");
    std::fs::create_dir_all(&zips).map_err(ProjectError::io(&zips))?;
    let log = out.join("deploy.log");
    std::fs::write(&log, "").map_err(ProjectError::io(&log))?;

    let binaries = build_host(&project, &log)?;
    let app = describe(&binaries)?;
    // refuses what cannot be deployed, with the fix, before anything is built for AWS or deployed
    let template = synthesize(
        &app,
        &SynthOptions {
            code_dir: "lambda".to_owned(),
        },
    )?;
    let functions: Vec<&str> = app.stages.iter().map(|s| s.function.as_str()).collect();
    for stage in &app.stages {
        if !binaries.contains_key(&stage.function) {
            return Err(ProjectError::MissingFunction {
                stage: stage.name.clone(),
                function: stage.function.clone(),
            });
        }
    }
    match target {
        Target::Local => step("zipping the functions", || {
            functions
                .iter()
                .try_for_each(|f| crate::zip::bootstrap_zip(&binaries[*f], &zips.join(format!("{f}.zip"))))
        })?,
        Target::Aws => build_aws(&project, &functions, &zips, &log)?,
    }
    let template_file = out.join("template.yaml");
    std::fs::write(&template_file, template).map_err(ProjectError::io(&template_file))?;
    let stack = args.stack.clone().unwrap_or_else(|| app.app.clone());
    let outputs = deploy_stack(&args, checkout.as_deref(), &stack, &template_file, &log)?;

    let inputs = app
        .stages
        .iter()
        .filter_map(|s| s.source.as_ref())
        .map(|s| format!("{}Name", stream_id(&s.stream)))
        .fold(Vec::new(), |mut keys, key| {
            if !keys.contains(&key) {
                keys.push(key);
            }
            keys
        });
    let deployment = Deployment {
        stack: stack.clone(),
        target,
        outputs: outputs.clone(),
        inputs,
    };
    write_deployment(&out, &deployment)?;
    print_summary(&app, &deployment, &project, started.elapsed());
    Ok(())
}

fn write_deployment(out: &Path, deployment: &Deployment) -> Result<(), ProjectError> {
    let json = out.join("deployment.json");
    let text = serde_json::to_string_pretty(deployment).unwrap_or_default();
    std::fs::write(&json, text + "\n").map_err(ProjectError::io(&json))?;
    let env = out.join("outputs.env");
    let lines: String = deployment
        .outputs
        .iter()
        .map(|(k, v)| format!("{k}='{}'\n", v.replace('\'', r"'\''")))
        .collect();
    std::fs::write(&env, lines).map_err(ProjectError::io(&env))
}

fn print_summary(app: &AppDescription, d: &Deployment, project: &Path, took: Duration) {
    let (place, flag, aws) = match d.target {
        Target::Local => ("LocalStack", "--local", "aws"),
        Target::Aws => ("AWS", "--aws", "aws"),
    };
    println!(
        "\nstack {} of application `{}` is deployed to {place} ({:.0} s)\n\noutputs (also in {}/):",
        d.stack,
        app.app,
        took.as_secs_f64(),
        deploy_dir(project).display()
    );
    let width = d.outputs.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in &d.outputs {
        println!("  {key:width$}  {value}");
    }
    let stream = d.input_stream().map(str::to_owned).unwrap_or_else(|e| e.to_string());
    println!("\nfeed it (JSON lines, one record each; each file's order is kept):\n  shardflow put FILE.jsonl   # onto {stream}");
    println!("results:");
    for line in how_to_read(app, &d.outputs, aws) {
        println!("{line}");
    }
    if let Some(table) = d.outputs.get("StateTableName") {
        for stage in &app.stages {
            let input = stage
                .source
                .as_ref()
                .and_then(|s| d.outputs.get(&format!("{}Name", stream_id(&s.stream))))
                .cloned()
                .unwrap_or_default();
            println!(
                "stage {}: shardflow status --stage {} --table {table} --stream {input}",
                stage.name, stage.name
            );
        }
    }
    if let Some(dlq) = d.outputs.get("DeadLetterQueueUrl") {
        println!("dead letters: {aws} sqs receive-message --queue-url {dlq}");
    }
    println!("remove it: shardflow destroy {flag}");
}

/// Deletes `stack` and waits until it is gone, emptying its buckets first (CloudFormation does
/// not delete a bucket with objects).
fn delete_stack(target: Target, checkout: Option<&Path>, stack: &str, log: &Path) -> Result<(), ProjectError> {
    let mut list = aws_cli(target, checkout);
    list.args([
        "cloudformation",
        "describe-stack-resources",
        "--stack-name",
        stack,
        "--query",
        "StackResources[?ResourceType=='AWS::S3::Bucket'].PhysicalResourceId",
        "--output",
        "json",
    ]);
    let buckets = run_logged("listing the stack's buckets", list, log)?;
    let buckets: Vec<String> = serde_json::from_str(&buckets).unwrap_or_default();
    for bucket in buckets {
        let mut empty = aws_cli(target, checkout);
        empty.args(["s3", "rm", "--recursive", "--quiet", &format!("s3://{bucket}")]);
        run_logged(&format!("emptying bucket {bucket}"), empty, log)?;
    }
    let mut delete = aws_cli(target, checkout);
    delete.args(["cloudformation", "delete-stack", "--stack-name", stack]);
    run_logged("aws cloudformation delete-stack", delete, log)?;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let mut status = aws_cli(target, checkout);
        status.args([
            "cloudformation",
            "describe-stacks",
            "--stack-name",
            stack,
            "--query",
            "Stacks[0].StackStatus",
            "--output",
            "text",
        ]);
        let output = status.stderr(Stdio::piped()).output().map_err(ProjectError::io(log))?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let error = String::from_utf8_lossy(&output.stderr);
        if (!output.status.success() && error.contains("does not exist")) || text == "DELETE_COMPLETE" {
            return Ok(());
        }
        if text == "DELETE_FAILED" {
            return Err(ProjectError::Deployment(format!(
                "stack {stack} could not be deleted (DELETE_FAILED): see its events, `aws cloudformation describe-stack-events --stack-name {stack}`"
            )));
        }
        if !output.status.success() {
            return Err(ProjectError::Deployment(format!(
                "reading stack {stack}'s status: {}",
                error.trim()
            )));
        }
        if Instant::now() > deadline {
            return Err(ProjectError::Deployment(format!(
                "stack {stack} is still {text} after 15 minutes"
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `shardflow destroy`.
pub fn destroy(args: DestroyArgs) -> Result<(), ProjectError> {
    let target = args.target.target();
    let recorded = Deployment::read(&args.dir).ok();
    let stack = match (&args.stack, &recorded) {
        (Some(stack), _) => stack.clone(),
        (None, Some(d)) if d.target == target => d.stack.clone(),
        _ => {
            return Err(ProjectError::Deployment(format!(
                "no stack named and no deployment to {} recorded in {}: pass --stack NAME",
                if target == Target::Local { "LocalStack" } else { "AWS" },
                deploy_dir(&args.dir).display()
            )))
        }
    };
    let checkout = crate::checkout(args.shardflow.as_deref()).ok();
    let out = deploy_dir(&args.dir);
    std::fs::create_dir_all(&out).map_err(ProjectError::io(&out))?;
    let log = out.join("destroy.log");
    std::fs::write(&log, "").map_err(ProjectError::io(&log))?;
    step(&format!("deleting stack {stack}"), || {
        delete_stack(target, checkout.as_deref(), &stack, &log)
    })?;
    if recorded.is_some_and(|d| d.stack == stack && d.target == target) {
        let record = out.join("deployment.json");
        std::fs::remove_file(&record).map_err(ProjectError::io(&record))?;
        let _ = std::fs::remove_file(out.join("outputs.env"));
    }
    println!("stack {stack} is deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binaries_are_read_from_cargos_json_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"temps"},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"temps-summaries"},"executable":"/t/debug/temps-summaries"}"#,
            r#"{"reason":"build-finished","success":true}"#,
            "not json",
        ]
        .join("\n");
        let found = executables(&messages);
        assert_eq!(
            found,
            BTreeMap::from([("temps-summaries".to_owned(), PathBuf::from("/t/debug/temps-summaries"))])
        );
    }

    #[test]
    fn the_arm64_build_is_cargo_lambdas_zip_build_of_every_function() {
        let args = cargo_lambda_args(&["temps-summaries"]);
        assert_eq!(
            args.join(" "),
            "lambda build --release --arm64 --output-format zip -p temps-summaries"
        );
    }

    #[test]
    fn a_deployment_names_its_input_stream_or_asks_for_one() {
        let mut d = Deployment {
            stack: "temps".into(),
            target: Target::Local,
            outputs: BTreeMap::from([
                ("ReadingsStreamName".into(), "temps-ReadingsStream-1".into()),
                ("OtherStreamName".into(), "temps-OtherStream-1".into()),
            ]),
            inputs: vec!["ReadingsStreamName".into()],
        };
        assert_eq!(d.input_stream().expect("one input"), "temps-ReadingsStream-1");
        d.inputs.push("OtherStreamName".into());
        let message = d.input_stream().expect_err("two inputs").to_string();
        assert!(message.contains("name one with --stream"), "{message}");
    }
}
