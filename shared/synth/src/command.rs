//! `shardflow synth`: reads an application's description (a JSON file, or the output of one of
//! its function binaries run with `--describe`) and writes its CloudFormation template.

use std::io::Write;
use std::path::PathBuf;

use shardflow_app::{AppDescription, DESCRIBE_ARG};

use crate::{synthesize, SynthError, SynthOptions};

/// Arguments of `shardflow synth`.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// The application's description, a JSON file (what `<function> --describe` prints).
    #[arg(long, conflicts_with = "app_binary", required_unless_present = "app_binary")]
    pub description: Option<PathBuf>,
    /// A function binary of the application: run with `--describe` to get the description.
    #[arg(long)]
    pub app_binary: Option<PathBuf>,
    /// Where to write the template (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The functions' zips, relative to the template: `<code-dir>/<function>.zip`.
    #[arg(long, default_value = "../out/lambda")]
    pub code_dir: String,
}

/// Reads the description `args` names.
pub fn read_description(args: &SynthArgs) -> Result<AppDescription, SynthError> {
    let (from, json) = match (&args.description, &args.app_binary) {
        (Some(path), _) => (
            path.display().to_string(),
            std::fs::read(path).map_err(|e| SynthError::Read {
                from: path.display().to_string(),
                message: e.to_string(),
            })?,
        ),
        (None, Some(binary)) => {
            let from = format!("{} {DESCRIBE_ARG}", binary.display());
            let output = std::process::Command::new(binary)
                .arg(DESCRIBE_ARG)
                .output()
                .map_err(|e| SynthError::Read {
                    from: from.clone(),
                    message: e.to_string(),
                })?;
            if !output.status.success() {
                return Err(SynthError::Read {
                    from,
                    message: format!(
                        "exited with {}: {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    ),
                });
            }
            (from, output.stdout)
        }
        (None, None) => {
            return Err(SynthError::Read {
                from: "the arguments".to_owned(),
                message: "give --description FILE or --app-binary PATH".to_owned(),
            })
        }
    };
    serde_json::from_slice(&json).map_err(|e| SynthError::Read {
        from,
        message: format!("not an application description: {e}"),
    })
}

/// Runs `shardflow synth`.
pub fn run(args: SynthArgs) -> Result<(), SynthError> {
    let app = read_description(&args)?;
    let yaml = synthesize(
        &app,
        &SynthOptions {
            code_dir: args.code_dir.clone(),
        },
    )?;
    match &args.out {
        Some(path) => std::fs::write(path, yaml).map_err(|source| SynthError::Write {
            path: path.display().to_string(),
            source,
        }),
        None => std::io::stdout()
            .lock()
            .write_all(yaml.as_bytes())
            .map_err(|source| SynthError::Write {
                path: "standard output".to_owned(),
                source,
            }),
    }
}
