//! `shardflow put FILE...`: JSON lines onto a Kinesis stream, by default the input stream of the
//! stack `shardflow deploy` made from the project. Each line is one record, as is (a line the
//! stage cannot decode is its dead letter, as on a real stream); blank lines are skipped.
//!
//! Partition keys: by default a file's lines share one key, the file's name, so the stream keeps
//! each file's order — what the embedded runner does with a file (one partition per file);
//! `--key-field F` partitions by a top-level field of each line instead.

use std::path::{Path, PathBuf};

use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig, StreamRecord};

use crate::deploy::{local_env, Deployment, Target};
use crate::error::ProjectError;
use crate::progress::step;

/// Arguments of `shardflow put`.
#[derive(Debug, Clone, clap::Args)]
pub struct PutArgs {
    /// JSON-lines files, one record per line.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The stream's name (default: the input stream of the project's deployment, with
    /// LocalStack's endpoint when it is there).
    #[arg(long)]
    pub stream: Option<String>,
    /// Partition by this top-level field of each line (default: one key per file).
    #[arg(long)]
    pub key_field: Option<String>,
    /// The project's directory (where `shardflow deploy` recorded the stack).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// The records of `text` from file `name`.
pub fn records(name: &str, text: &str, key_field: Option<&str>) -> Vec<StreamRecord> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let key = key_field
                .and_then(|field| {
                    let value: serde_json::Value = serde_json::from_str(line).ok()?;
                    match &value[field] {
                        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                        serde_json::Value::Null => None,
                        other => Some(other.to_string()),
                    }
                })
                .unwrap_or_else(|| name.to_owned());
            let key: String = key.chars().take(shardflow_kinesis::MAX_PARTITION_KEY_CHARS).collect();
            StreamRecord::new(key, line.as_bytes().to_vec())
        })
        .collect()
}

/// Runs `shardflow put`.
pub fn run(args: PutArgs) -> Result<(), ProjectError> {
    let (stream, env) = match &args.stream {
        Some(stream) => (stream.clone(), Vec::new()),
        None => {
            let deployment = Deployment::read(&args.dir)?;
            let env = if deployment.target == Target::Local {
                local_env()
            } else {
                Vec::new()
            };
            (deployment.input_stream()?.to_owned(), env)
        }
    };
    let mut batches = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file).map_err(ProjectError::io(file))?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "input".to_owned());
        batches.push(records(&name, &text, args.key_field.as_deref()));
    }
    // a LocalStack deployment: its endpoint and test credentials, unless the environment has
    // its own (what `source localstack/env` sets); set before any thread starts
    for (key, value) in env {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
    let count: usize = batches.iter().map(Vec::len).sum();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProjectError::io(Path::new("the async runtime")))?;
    let failed = |message: String| ProjectError::Put {
        stream: stream.clone(),
        message,
    };
    step(&format!("putting {count} records onto {stream}"), || {
        runtime.block_on(async {
            let client = shardflow_kinesis::client_from_env().await;
            let producer = KinesisProducer::new(KinesisTransport::new(client, &stream), ProducerConfig::default());
            for record in batches.into_iter().flatten() {
                producer.send(record).await.map_err(|e| failed(e.to_string()))?;
            }
            producer.flush().await.map_err(|e| failed(e.to_string()))
        })
    })?;
    println!("put {count} records onto {stream}");
    Ok(())
}
