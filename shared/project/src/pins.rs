//! Dependency pins: a new project's builds resolve every third-party crate to the version and
//! features the shardflow checkout's own builds use, so that in a shared target directory they
//! reuse the checkout's compiled dependencies instead of compiling them again.
//!
//! Cargo compiles a crate once per (version, features, profile, dependencies). A project that
//! depends on a few of shardflow's crates resolves fewer features than the checkout's
//! workspace, whose members together ask for more (e.g. tokio's `process`, hyper's `server`),
//! so without pins it would compile tokio, hyper and everything above them — the AWS SDK —
//! a second time. The versions come from the checkout's `Cargo.lock` (copied); the features
//! from `cargo tree` of the checkout, for the two builds the project mirrors:
//!
//! * `cargo test --workspace` of the checkout (every member, dev-dependencies too): the
//!   project's `cargo test`;
//! * `functions/package --all` (every function crate, no dev-dependencies): the project's
//!   `shardflow deploy` build.
//!
//! The pins are one member crate of the project ([`PINS_DIR`]) that depends on each
//! third-party crate of those builds with exactly its features: in `[dependencies]` the
//! function build's, in `[dev-dependencies]` the test build's (cargo adds dev-dependencies'
//! features only when it builds tests), in `[build-dependencies]` the features the crates have
//! where they are compiled for build scripts and procedural macros. The crate's code is empty;
//! nothing links it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::error::ProjectError;

/// The pins crate's directory in a project.
pub const PINS_DIR: &str = "dependency-pins";

/// A third-party crate in a resolved build: (name, version).
pub type CrateVersion = (String, String);

/// The features of each third-party crate of a build, by where it is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedFeatures {
    /// Crates compiled for the target (the functions, tests and their libraries).
    pub target: BTreeMap<CrateVersion, BTreeSet<String>>,
    /// Crates compiled for build scripts and procedural macros.
    pub host: BTreeMap<CrateVersion, BTreeSet<String>>,
}

/// One node line of `cargo tree --format '{p} {f}'`.
#[derive(Debug, PartialEq, Eq)]
struct TreeNode {
    depth: usize,
    name: String,
    version: String,
    /// Not from a registry (a path or git dependency): not pinned.
    local: bool,
    proc_macro: bool,
    features: BTreeSet<String>,
}

/// A line of `cargo tree`'s indented output.
#[derive(Debug, PartialEq, Eq)]
enum TreeLine {
    /// A `[build-dependencies]` (or other section) header for the children at `depth + 1`.
    Section {
        depth: usize,
        build: bool,
    },
    Node(TreeNode),
}

/// Splits the tree-drawing prefix (four characters a level) from a line.
fn split_prefix(line: &str) -> (usize, &str) {
    let mut depth = 0;
    let mut rest = line;
    loop {
        let mut chars = rest.chars();
        let first = chars.next();
        if !matches!(first, Some('│' | '├' | '└' | ' ')) {
            return (depth, rest);
        }
        let group: String = rest.chars().take(4).collect();
        if group.chars().count() < 4 {
            return (depth, rest);
        }
        rest = &rest[group.len()..];
        depth += 1;
    }
}

fn parse_line(line: &str) -> Option<TreeLine> {
    if line.trim().is_empty() {
        return None;
    }
    let (depth, content) = split_prefix(line);
    if let Some(section) = content.strip_prefix('[') {
        return Some(TreeLine::Section {
            depth,
            build: section.starts_with("build-dependencies"),
        });
    }
    let mut words = content.split(' ');
    let name = words.next()?.to_owned();
    let version = words.next()?.strip_prefix('v')?.to_owned();
    let (mut local, mut proc_macro, mut features) = (false, false, BTreeSet::new());
    for word in words.filter(|w| !w.is_empty()) {
        match word {
            "(proc-macro)" => proc_macro = true,
            "(*)" => {}
            w if w.starts_with('(') => local = true,
            w if local && !w.contains(',') && w.ends_with(')') => {}
            w => features.extend(w.split(',').filter(|f| !f.is_empty()).map(str::to_owned)),
        }
    }
    Some(TreeLine::Node(TreeNode {
        depth,
        name,
        version,
        local,
        proc_macro,
        features,
    }))
}

/// A node of `cargo tree`'s graph: a crate with one feature set.
type NodeKey = (String, String, BTreeSet<String>, bool);

/// The features of each registry crate in `cargo tree -f '{p} {f}'` output (indented, with
/// its sections), split into target and host (build scripts' and procedural macros')
/// compilations. `cargo tree` lists a node's dependencies once (later occurrences end in
/// `(*)`), so the contexts are found on the graph: from the workspace members (target), an edge
/// of a `[build-dependencies]` section or to a procedural macro leads to host, and a host node's
/// dependencies are host too.
pub fn parse_tree(text: &str) -> ResolvedFeatures {
    let mut edges: BTreeMap<NodeKey, BTreeSet<(NodeKey, bool)>> = BTreeMap::new();
    let mut roots: Vec<NodeKey> = Vec::new();
    let mut local: BTreeSet<NodeKey> = BTreeSet::new();
    // per depth: the node last listed there, and whether its children's section is a build one
    let mut path: Vec<NodeKey> = Vec::new();
    let mut build_section: Vec<bool> = Vec::new();
    for line in text.lines().filter_map(parse_line) {
        match line {
            TreeLine::Section { depth, build } => {
                build_section.resize(depth + 1, false);
                build_section[depth] = build;
            }
            TreeLine::Node(node) => {
                let depth = node.depth;
                let key: NodeKey = (node.name, node.version, node.features, node.proc_macro);
                if node.local {
                    local.insert(key.clone());
                }
                if depth == 0 {
                    roots.push(key.clone());
                } else if let Some(parent) = path.get(depth - 1) {
                    let build = build_section.get(depth - 1).copied().unwrap_or(false);
                    edges.entry(parent.clone()).or_default().insert((key.clone(), build));
                }
                path.truncate(depth);
                path.push(key);
                build_section.resize(depth + 1, false);
                build_section[depth] = false;
            }
        }
    }
    let mut resolved = ResolvedFeatures::default();
    let mut seen: BTreeSet<(NodeKey, bool)> = BTreeSet::new();
    let mut queue: Vec<(NodeKey, bool)> = roots.into_iter().map(|r| (r, false)).collect();
    while let Some((key, host)) = queue.pop() {
        if !seen.insert((key.clone(), host)) {
            continue;
        }
        if !local.contains(&key) {
            let side = if host { &mut resolved.host } else { &mut resolved.target };
            side.entry((key.0.clone(), key.1.clone()))
                .or_default()
                .extend(key.2.iter().cloned());
        }
        for (child, build) in edges.get(&key).into_iter().flatten() {
            queue.push((child.clone(), host || *build || child.3));
        }
    }
    resolved
}

/// The function crates of a checkout: the directories under `functions/` with a manifest.
pub fn function_crates(checkout: &Path) -> Result<Vec<String>, ProjectError> {
    let dir = checkout.join("functions");
    let mut crates: Vec<String> = std::fs::read_dir(&dir)
        .map_err(ProjectError::io(&dir))?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    Ok(crates)
}

/// `cargo tree` of the checkout with `selection` and `edges`, parsed.
fn checkout_tree(checkout: &Path, selection: &[String], edges: &str) -> Result<ResolvedFeatures, ProjectError> {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["tree", "--locked", "--color", "never", "-e", edges, "-f", "{p} {f}"])
        .args(selection)
        .current_dir(checkout)
        // the checkout's own target directory and configuration
        .env_remove("CARGO_TARGET_DIR");
    let output = cargo.output().map_err(|e| ProjectError::Command {
        what: "reading the checkout's dependency features".to_owned(),
        command: format!("cargo tree -e {edges} {}", selection.join(" ")),
        log: format!(": {e}"),
    })?;
    if !output.status.success() {
        return Err(ProjectError::Command {
            what: "reading the checkout's dependency features".to_owned(),
            command: format!("cargo tree -e {edges} {}", selection.join(" ")),
            log: format!(":\n{}", String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(parse_tree(&String::from_utf8_lossy(&output.stdout)))
}

/// The two builds of a checkout a project mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutBuilds {
    /// `cargo test --workspace`.
    pub tests: ResolvedFeatures,
    /// `functions/package --all`: every function crate, without dev-dependencies.
    pub functions: ResolvedFeatures,
}

impl CheckoutBuilds {
    /// Reads both builds' features from `cargo tree` in `checkout`.
    pub fn read(checkout: &Path) -> Result<CheckoutBuilds, ProjectError> {
        let tests = checkout_tree(checkout, &["--workspace".to_owned()], "normal,build,dev")?;
        let selection: Vec<String> = function_crates(checkout)?
            .into_iter()
            .flat_map(|krate| ["-p".to_owned(), krate])
            .collect();
        let functions = checkout_tree(checkout, &selection, "normal,build")?;
        Ok(CheckoutBuilds { tests, functions })
    }

    /// The pins crate's `Cargo.toml` (package `name`).
    pub fn manifest(&self, name: &str) -> String {
        let mut host = self.tests.host.clone();
        for (krate, features) in &self.functions.host {
            host.entry(krate.clone()).or_default().extend(features.iter().cloned());
        }
        format!(
            "# Made by `shardflow new`: pins every third-party crate to the features shardflow's own builds\n\
             # give it, so builds in the shared target directory reuse its compiled dependencies (see\n\
             # shardflow-project's `pins` module). Remake it with the project after updating shardflow.\n\
             [package]\nname = \"{name}\"\nversion.workspace = true\nedition.workspace = true\npublish = false\n\
             \n[lib]\npath = \"lib.rs\"\ntest = false\ndoctest = false\n\n\
             [dependencies]\n{}\n[build-dependencies]\n{}\n[dev-dependencies]\n{}",
            dependency_table(&self.functions.target),
            dependency_table(&host),
            dependency_table(&self.tests.target),
        )
    }
}

/// One dependency line per crate: renamed by version, exact version, exact features.
fn dependency_table(crates: &BTreeMap<CrateVersion, BTreeSet<String>>) -> String {
    crates
        .iter()
        .map(|((name, version), features)| {
            let alias: String = format!("{name}-{version}")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let default = features.contains("default");
            let listed: Vec<String> = features
                .iter()
                .filter(|f| *f != "default")
                .map(|f| format!("{f:?}"))
                .collect();
            format!(
                "{alias} = {{ package = \"{name}\", version = \"={version}\", default-features = {default}, features = [{}] }}\n",
                listed.join(", ")
            )
        })
        .collect()
}

/// The pins crate's `lib.rs`.
pub const PINS_LIB: &str = "//! No code: this crate only pins dependency features (see its Cargo.toml).\n";

/// The pins crate's `build.rs`: none of its own; it makes cargo resolve the host pins.
pub const PINS_BUILD: &str =
    "//! Empty: it makes cargo resolve the host pins of Cargo.toml's [build-dependencies].\nfn main() {}\n";

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = "\
app v0.1.0 (/p/app) 
├── serde v1.0.229 alloc,default,derive,std
│   └── serde_derive v1.0.229 (proc-macro) default
│       └── proc-macro2 v1.0.107 default,proc-macro
├── shardflow-app v0.1.0 (/src/shared/app) 
│   ├── tokio v1.54.1 default,rt
│   │   [build-dependencies]
│   │   └── autocfg v1.5.0 
│   ├── either v1.19.0 std,use_std
│   └── rand v0.8.8 std
│       └── getrandom v0.2.17 std
├── tokio v1.54.1 default,rt (*)
[build-dependencies]
├── either v1.19.0 
└── rand v0.8.8 std (*)
[dev-dependencies]
└── tokio v1.54.1 default,macros
";

    fn features(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn key(name: &str, version: &str) -> CrateVersion {
        (name.to_owned(), version.to_owned())
    }

    #[test]
    fn build_dependencies_procedural_macros_and_all_below_them_are_host_compilations_even_when_listed_once() {
        let resolved = parse_tree(TREE);
        assert_eq!(
            resolved.target.keys().cloned().collect::<Vec<_>>(),
            vec![
                key("either", "1.19.0"),
                key("getrandom", "0.2.17"),
                key("rand", "0.8.8"),
                key("serde", "1.0.229"),
                key("tokio", "1.54.1")
            ]
        );
        // listed once, under a target node, but built for a build script too: through `(*)`
        assert_eq!(resolved.host[&key("getrandom", "0.2.17")], features(&["std"]));
        assert_eq!(
            resolved.target[&key("tokio", "1.54.1")],
            features(&["default", "macros", "rt"])
        );
        assert_eq!(resolved.target[&key("either", "1.19.0")], features(&["std", "use_std"]));
        assert_eq!(resolved.host[&key("either", "1.19.0")], features(&[]));
        assert_eq!(
            resolved.host[&key("proc-macro2", "1.0.107")],
            features(&["default", "proc-macro"])
        );
        assert!(resolved.host.contains_key(&key("serde_derive", "1.0.229")));
        assert!(resolved.host.contains_key(&key("autocfg", "1.5.0")));
        assert!(
            !resolved.target.keys().any(|(n, _)| n.starts_with("shardflow")),
            "path crates are not pinned"
        );
    }

    #[test]
    fn pins_name_each_version_apart_with_exact_versions_and_features() {
        let builds = CheckoutBuilds {
            tests: parse_tree(TREE),
            functions: parse_tree(TREE),
        };
        let manifest = builds.manifest("app-dependency-pins");
        assert!(
            manifest.contains(
                r#"tokio_1_54_1 = { package = "tokio", version = "=1.54.1", default-features = true, features = ["macros", "rt"] }"#
            ),
            "{manifest}"
        );
        assert!(
            manifest.contains(r#"either_1_19_0 = { package = "either", version = "=1.19.0", default-features = false, features = [] }"#),
            "{manifest}"
        );
    }
}
