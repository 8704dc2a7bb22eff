//! `shardflow new DIR`: a pipeline project of one's own (see the crate's documentation). The
//! files are the templates under `shared/project/template/`, with the project's names filled
//! in; the sample input and the golden file are copied as they are.

use std::path::{Path, PathBuf};

use crate::error::ProjectError;
use crate::pins::{CheckoutBuilds, PINS_BUILD, PINS_DIR, PINS_LIB};

/// The one stage of a new project's application.
pub const STAGE: &str = "summaries";

/// Arguments of `shardflow new`.
#[derive(Debug, Clone, clap::Args)]
pub struct NewArgs {
    /// The project's directory (created; if it exists it must be empty).
    pub dir: PathBuf,
    /// The application's name, the prefix of its resources (default: the directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Depend on shardflow's crates in this git repository instead of a checkout on disk.
    #[arg(long, conflicts_with = "shardflow")]
    pub git: Option<String>,
    /// With --git: the commit, tag or branch to pin (default: the repository's default branch).
    #[arg(long, requires = "git")]
    pub rev: Option<String>,
    /// The shardflow checkout whose crates the project depends on by path (default:
    /// `SHARDFLOW_HOME`, or the checkout this `shardflow` was built from).
    #[arg(long)]
    pub shardflow: Option<PathBuf>,
    /// The target directory the project's builds use, written to `.cargo/config.toml`
    /// (default, with path dependencies: the one this `shardflow` was built into, so the
    /// dependencies compiled for it are reused; `CARGO_TARGET_DIR` still overrides it). `own`:
    /// the project's own `target/`.
    #[arg(long)]
    pub target_dir: Option<String>,
}

/// Where a project takes shardflow's crates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shardflow {
    /// A checkout on disk.
    Path(PathBuf),
    /// A git repository, at a revision or its default branch.
    Git {
        /// The repository's URL.
        url: String,
        /// The commit, tag or branch.
        rev: Option<String>,
    },
}

/// What a new project is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The application's name, also the pipeline crate's.
    pub name: String,
    /// Where shardflow's crates come from.
    pub shardflow: Shardflow,
    /// The target directory for `.cargo/config.toml` (`None`: the project's own).
    pub target_dir: Option<PathBuf>,
    /// The checkout's builds whose dependency features the project pins (with a shared target
    /// directory; see [`crate::pins`]).
    pub pins: Option<CheckoutBuilds>,
}

/// The shardflow crates a project depends on, by crate and directory in the checkout.
const CRATES: &[(&str, &str)] = &[("shardflow-app", "shared/app"), ("shardflow-engine", "shared/engine")];

/// Names a project may not take: its dependencies'.
const TAKEN: &[&str] = &["serde", "serde-json", "tokio", "tempfile", "lambda-runtime"];

/// Template files: (path in the project, text). `{{function}}` in a path is the function's name.
const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../template/Cargo.toml.tmpl")),
    (".gitignore", include_str!("../template/gitignore.tmpl")),
    ("README.md", include_str!("../template/README.md.tmpl")),
    (
        "pipeline/Cargo.toml",
        include_str!("../template/pipeline/Cargo.toml.tmpl"),
    ),
    (
        "pipeline/src/lib.rs",
        include_str!("../template/pipeline/src/lib.rs.tmpl"),
    ),
    (
        "pipeline/tests/golden.rs",
        include_str!("../template/pipeline/tests/golden.rs.tmpl"),
    ),
    (
        "pipeline/tests/data/readings.jsonl",
        include_str!("../template/pipeline/tests/data/readings.jsonl"),
    ),
    (
        "pipeline/tests/data/summaries.golden.jsonl",
        include_str!("../template/pipeline/tests/data/summaries.golden.jsonl"),
    ),
    (
        "functions/{{function}}/Cargo.toml",
        include_str!("../template/function/Cargo.toml.tmpl"),
    ),
    (
        "functions/{{function}}/src/main.rs",
        include_str!("../template/function/src/main.rs.tmpl"),
    ),
];

/// Checks `name` can name the application and its crates.
pub fn check_name(name: &str) -> Result<(), ProjectError> {
    let bad = |why: &str| {
        Err(ProjectError::BadName {
            name: name.to_owned(),
            why: why.to_owned(),
        })
    };
    if !shardflow_app::is_valid_name(name) || name.len() > 30 {
        return bad("not 1-30 lower-case letters, digits and '-' starting with a letter");
    }
    if name.starts_with("shardflow") || TAKEN.contains(&name) {
        return bad("a crate the project depends on has this name");
    }
    Ok(())
}

/// The application's name for directory `dir`: its last component in lower case, `_` and
/// spaces as `-`.
pub fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().to_lowercase().replace(['_', ' '], "-"))
        .unwrap_or_default()
}

/// The name of the function crate running stage `stage` of application `app`.
pub fn function_name(app: &str, stage: &str) -> String {
    format!("{app}-{stage}")
}

/// The target directory this executable was built into (`<target>/<profile>/shardflow`), if it
/// looks like one (cargo marks it with `CACHEDIR.TAG`).
pub fn own_target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let target = exe.parent()?.parent()?;
    target.join("CACHEDIR.TAG").is_file().then(|| target.to_path_buf())
}

impl Project {
    /// The project `args` ask for.
    pub fn from_args(args: &NewArgs) -> Result<Project, ProjectError> {
        let name = args.name.clone().unwrap_or_else(|| name_of(&args.dir));
        check_name(&name)?;
        let shardflow = match &args.git {
            Some(url) => Shardflow::Git {
                url: url.clone(),
                rev: args.rev.clone(),
            },
            None => Shardflow::Path(crate::checkout(args.shardflow.as_deref())?),
        };
        let target_dir = match args.target_dir.as_deref() {
            Some("own") => None,
            Some(dir) => Some(absolute(Path::new(dir))?),
            None if matches!(shardflow, Shardflow::Path(_)) => own_target_dir(),
            None => None,
        };
        let pins = match (&shardflow, &target_dir) {
            (Shardflow::Path(root), Some(_)) => Some(CheckoutBuilds::read(root)?),
            _ => None,
        };
        Ok(Project {
            name,
            shardflow,
            target_dir,
            pins,
        })
    }

    /// The `[workspace.dependencies]` lines of shardflow's crates.
    fn dependency_lines(&self) -> String {
        CRATES
            .iter()
            .map(|(krate, dir)| match &self.shardflow {
                Shardflow::Path(root) => format!("{krate} = {{ path = {} }}", toml_string(&root.join(dir))),
                Shardflow::Git { url, rev } => {
                    let rev = rev
                        .as_ref()
                        .map(|r| format!(", rev = {}", toml_str(r)))
                        .unwrap_or_default();
                    format!("{krate} = {{ git = {}{rev} }}", toml_str(url))
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `text` with the project's names filled in.
    fn render(&self, text: &str) -> String {
        let members = match self.pins {
            Some(_) => format!(r#""pipeline", "functions/*", "{PINS_DIR}""#),
            None => r#""pipeline", "functions/*""#.to_owned(),
        };
        text.replace("{{shardflow_deps}}", &self.dependency_lines())
            .replace("{{members}}", &members)
            .replace("{{function}}", &function_name(&self.name, STAGE))
            .replace("{{stage}}", STAGE)
            .replace("{{app_snake}}", &self.name.replace('-', "_"))
            .replace("{{app}}", &self.name)
    }

    /// Every file of the project: (path relative to its directory, contents).
    pub fn files(&self) -> Vec<(PathBuf, String)> {
        let mut files: Vec<(PathBuf, String)> = TEMPLATES
            .iter()
            .map(|(path, text)| (PathBuf::from(self.render(path)), self.render(text)))
            .collect();
        if let Some(pins) = &self.pins {
            let dir = PathBuf::from(PINS_DIR);
            let name = format!("{}-{PINS_DIR}", self.name);
            files.push((dir.join("Cargo.toml"), pins.manifest(&name)));
            files.push((dir.join("lib.rs"), PINS_LIB.to_owned()));
            files.push((dir.join("build.rs"), PINS_BUILD.to_owned()));
        }
        if let Some(target) = &self.target_dir {
            files.push((
                PathBuf::from(".cargo/config.toml"),
                format!(
                    "# Builds share this target directory with the shardflow checkout's, so the dependencies\n\
                     # compiled there are not compiled again. CARGO_TARGET_DIR overrides it.\n\
                     [build]\ntarget-dir = {}\n",
                    toml_string(target)
                ),
            ));
        }
        files
    }

    /// Writes the project into `dir` (created, or empty), with the checkout's `Cargo.lock` when
    /// it depends on one by path (the same versions as the checkout's builds). Returns the
    /// files written.
    pub fn create(&self, dir: &Path) -> Result<Vec<PathBuf>, ProjectError> {
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(ProjectError::io(dir))?;
            if entries.next().is_some() {
                return Err(ProjectError::NotEmpty(dir.to_path_buf()));
            }
        }
        let mut written = Vec::new();
        for (path, text) in self.files() {
            let file = dir.join(&path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(ProjectError::io(parent))?;
            }
            std::fs::write(&file, text).map_err(ProjectError::io(&file))?;
            written.push(path);
        }
        if let Shardflow::Path(root) = &self.shardflow {
            let lock = root.join("Cargo.lock");
            if lock.is_file() {
                std::fs::copy(&lock, dir.join("Cargo.lock")).map_err(ProjectError::io(&lock))?;
                written.push(PathBuf::from("Cargo.lock"));
            }
        }
        Ok(written)
    }
}

fn absolute(path: &Path) -> Result<PathBuf, ProjectError> {
    std::path::absolute(path).map_err(ProjectError::io(path))
}

/// A TOML basic string of `s`.
fn toml_str(s: &str) -> String {
    // JSON strings are TOML basic strings for everything `serde_json` escapes.
    serde_json::Value::String(s.to_owned()).to_string()
}

fn toml_string(path: &Path) -> String {
    toml_str(&path.to_string_lossy())
}

/// Runs `shardflow new`: writes the project and says what to do next.
pub fn run(args: NewArgs) -> Result<(), ProjectError> {
    let project = Project::from_args(&args)?;
    let files = project.create(&args.dir)?;
    let from = match &project.shardflow {
        Shardflow::Path(root) => format!("shardflow's crates from {}", root.display()),
        Shardflow::Git { url, rev } => format!(
            "shardflow's crates from {url}{}",
            rev.as_ref().map(|r| format!(" at {r}")).unwrap_or_default()
        ),
    };
    println!(
        "created the pipeline `{}` in {} ({} files; {from})",
        project.name,
        args.dir.display(),
        files.len()
    );
    if let Some(target) = &project.target_dir {
        println!("builds share the target directory {}", target.display());
    }
    println!(
        "\nnext:\n  cd {}\n  cargo test                 # the golden test on the embedded runner\n  \
         shardflow deploy --local   # on LocalStack (localstack/up && source localstack/env first)\n\
         \nthe pipeline is in pipeline/src/lib.rs; README.md says more",
        args.dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(shardflow: Shardflow) -> Project {
        Project {
            name: "room-temps".into(),
            shardflow,
            target_dir: Some(PathBuf::from("/t/target")),
            pins: None,
        }
    }

    fn file(project: &Project, path: &str) -> String {
        project
            .files()
            .into_iter()
            .find(|(p, _)| p == Path::new(path))
            .map(|(_, text)| text)
            .unwrap_or_else(|| panic!("no {path}"))
    }

    #[test]
    fn names_come_from_the_directory_and_unusable_ones_are_refused_with_the_fix() {
        assert_eq!(name_of(Path::new("/x/Room_Temps")), "room-temps");
        assert!(check_name("room-temps").is_ok());
        for bad in ["", "9lives", "shardflow-app", "tokio", &"a".repeat(31)] {
            let message = check_name(bad).expect_err(bad).to_string();
            assert!(message.contains("pass --name NAME"), "{message}");
        }
    }

    #[test]
    fn path_dependencies_point_into_the_checkout_and_git_ones_pin_the_revision() {
        let by_path = project(Shardflow::Path(PathBuf::from("/src/shardflow")));
        let manifest = file(&by_path, "Cargo.toml");
        assert!(
            manifest.contains(r#"shardflow-app = { path = "/src/shardflow/shared/app" }"#),
            "{manifest}"
        );
        assert!(manifest.contains(r#"room-temps = { path = "pipeline" }"#), "{manifest}");
        let by_git = project(Shardflow::Git {
            url: "https://example.com/shardflow.git".into(),
            rev: Some("abc123".into()),
        });
        let manifest = file(&by_git, "Cargo.toml");
        assert!(
            manifest.contains(r#"shardflow-engine = { git = "https://example.com/shardflow.git", rev = "abc123" }"#),
            "{manifest}"
        );
        assert!(!manifest.contains("{{"), "every placeholder is filled:\n{manifest}");
    }

    #[test]
    fn the_function_is_named_after_the_app_and_stage_and_the_target_dir_is_shared() {
        let p = project(Shardflow::Path(PathBuf::from("/src")));
        let main = file(&p, "functions/room-temps-summaries/src/main.rs");
        assert!(main.contains("room_temps::app(), room_temps::STAGE"), "{main}");
        let config = file(&p, ".cargo/config.toml");
        assert!(config.contains("target-dir = \"/t/target\""), "{config}");
        let own = Project { target_dir: None, ..p };
        assert!(own.files().iter().all(|(path, _)| !path.starts_with(".cargo")));
    }
}
