//! `check_savepoint`: a dry-run restore of a pipeline (a new build's) against a savepoint.
//!
//! # Check
//! [`check_savepoint`] reads a savepoint's manifest and every shard file (verifying size,
//! checksum and header as a restore does), checks the savepoint format, the state format, the
//! pipeline name and the key-group count against the [`CheckTarget`], and restores each shard's
//! image into a fresh engine of the target's pipeline (`Engine::restore_with`, allowing dropped
//! state so that everything is reported). Nothing is written. The [`CheckReport`] says per
//! operator whether its state is restored (and from which id of the image), starts empty, is
//! dropped, migrated from an older state schema, or is a superseded entry; per shard whether its
//! image could be read and restored — a state type the pipeline cannot read is reported as the
//! shard's problem, `incompatible state: "operator": why`.
//! [`CheckReport::passed`] is `false` when a restore would lose state silently or fail: a
//! format, pipeline or key-group mismatch, an unreadable or incompatible image, or dropped
//! state unless [`CheckOptions::allow_dropped_state`] is set.
//!
//! [`check_stage`] does the same against a live stage's committed checkpoints in its state
//! table.

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use shardflow_engine::checkpoint::{CheckpointImage, FORMAT_VERSION, MIN_FORMAT_VERSION};
use shardflow_engine::{Engine, Pipeline, RestoreOutcome, RestoreReport, StateError};

use crate::error::LifecycleError;
use crate::manifest::{S3Location, MIN_SAVEPOINT_FORMAT_VERSION, SAVEPOINT_FORMAT, SAVEPOINT_FORMAT_VERSION};
use crate::restore::{read_manifest, read_shard};
use crate::shards::{check_stage_name, stage_checkpoints};
use shardflow_state_dynamodb::DynamoDbCheckpointStore;

type CheckFn = Box<dyn Fn(&CheckpointImage) -> Result<RestoreReport, StateError> + Send + Sync>;

/// A pipeline to check savepoints against, with its type erased so that a catalogue of
/// pipelines of different record types can be given to the `savepoint check` command.
pub struct CheckTarget {
    name: String,
    pipeline: String,
    max_key_groups: u16,
    check: CheckFn,
}

impl CheckTarget {
    /// `pipeline`, known to the command as `name` (e.g. the stage running it).
    pub fn new<In: Send + 'static, Out: Send + 'static>(name: &str, pipeline: Pipeline<In, Out>) -> Self {
        CheckTarget {
            name: name.to_owned(),
            pipeline: pipeline.name().to_owned(),
            max_key_groups: pipeline.max_key_groups(),
            check: Box::new(move |image| {
                Engine::restore_with(
                    &pipeline,
                    image,
                    shardflow_engine::RestoreOptions::allowing_dropped_state(),
                )
                .map(|(_, report)| report)
            }),
        }
    }

    /// A dry-run restore of `image` into a fresh engine of the pipeline, dropped state allowed
    /// (so that everything is reported).
    pub(crate) fn dry_run(&self, image: &CheckpointImage) -> Result<RestoreReport, StateError> {
        (self.check)(image)
    }

    /// The name the target is known by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pipeline's name (as its checkpoints record it).
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The pipeline's key-group count.
    pub fn max_key_groups(&self) -> u16 {
        self.max_key_groups
    }
}

impl std::fmt::Debug for CheckTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckTarget")
            .field("name", &self.name)
            .field("pipeline", &self.pipeline)
            .field("max_key_groups", &self.max_key_groups)
            .finish_non_exhaustive()
    }
}

/// How strict a check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Dropped state (an operator of the image the pipeline does not have) does not fail the
    /// check (as `RestoreOptions::allow_dropped_state` would let the restore go on).
    pub allow_dropped_state: bool,
    /// Shard files read at once (default 8).
    pub concurrency: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            allow_dropped_state: false,
            concurrency: 8,
        }
    }
}

/// One of the savepoint-level checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is checked (`savepoint format`, `state format`, `pipeline`, `key groups`).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found (and expected, if it failed).
    pub detail: String,
}

/// What a restore would do with one operator's state (as `shardflow_engine::RestoreOutcome`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CheckOutcome {
    /// The pipeline's operator takes over the state the image keeps under `from`.
    Restored {
        /// The image's id.
        from: String,
    },
    /// The pipeline's operator takes over the state the image keeps under `from`, stored at the
    /// older schema `version`, through its migration.
    Migrated {
        /// The image's id.
        from: String,
        /// The stored schema version.
        version: u32,
    },
    /// The pipeline's operator finds no state and starts empty.
    StartsEmpty,
    /// The image's state of an operator the pipeline does not have would be dropped.
    Dropped,
    /// A stale positional entry of a format version 1 image, replaced by `by`.
    Superseded {
        /// The default id whose entry replaced it.
        by: String,
    },
}

impl std::fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckOutcome::Restored { from } => write!(f, "restored from {from}"),
            CheckOutcome::Migrated { from, version } => write!(f, "migrated from {from} (schema version {version})"),
            CheckOutcome::StartsEmpty => f.write_str("starts empty"),
            CheckOutcome::Dropped => f.write_str("dropped"),
            CheckOutcome::Superseded { by } => write!(f, "superseded by {by}"),
        }
    }
}

impl From<&RestoreOutcome> for CheckOutcome {
    fn from(o: &RestoreOutcome) -> Self {
        match o {
            RestoreOutcome::Restored { from } => CheckOutcome::Restored { from: from.clone() },
            RestoreOutcome::Migrated { from, version } => CheckOutcome::Migrated {
                from: from.clone(),
                version: *version,
            },
            RestoreOutcome::StartsEmpty => CheckOutcome::StartsEmpty,
            RestoreOutcome::Dropped => CheckOutcome::Dropped,
            RestoreOutcome::Superseded { by } => CheckOutcome::Superseded { by: by.clone() },
        }
    }
}

/// One operator's outcome on some of the savepoint's shards (an operator whose outcome differs
/// between shards has a line per outcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorCheck {
    /// The pipeline operator's id, or for dropped and superseded state the image's id.
    pub id: String,
    /// What the restore would do.
    #[serde(flatten)]
    pub outcome: CheckOutcome,
    /// The shards it does so on.
    pub shards: Vec<String>,
}

/// A shard whose image cannot be restored into the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardProblem {
    /// The shard.
    pub shard: String,
    /// Why: an unreadable file, or state the pipeline's operators cannot read.
    pub reason: String,
}

/// What [`check_savepoint`] found; renders as a table ([`CheckReport::render_table`], also its
/// `Display`) and as JSON (`Serialize`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The savepoint.
    pub savepoint: String,
    /// The target's name.
    pub target: String,
    /// Whether dropped state was allowed.
    pub allow_dropped_state: bool,
    /// The savepoint-level checks, in order.
    pub checks: Vec<Check>,
    /// The shards in the savepoint.
    pub shards: usize,
    /// Per operator, pipeline operators first (in pipeline order), then the image's others.
    pub operators: Vec<OperatorCheck>,
    /// Shards that cannot be restored.
    pub problems: Vec<ShardProblem>,
    /// Whether a restore would go through without losing state silently.
    pub passed: bool,
}

impl CheckReport {
    /// Whether a restore would go through without losing state silently.
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// The ids with `outcome`'s kind on some shard.
    pub fn ids(&self, matches: impl Fn(&CheckOutcome) -> bool) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .operators
            .iter()
            .filter(|o| matches(&o.outcome))
            .map(|o| o.id.as_str())
            .collect();
        ids.dedup();
        ids
    }

    /// Why the check failed (empty if it passed).
    pub fn failures(&self) -> Vec<String> {
        let mut reasons: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        reasons.extend(self.problems.iter().map(|p| format!("shard {}: {}", p.shard, p.reason)));
        let dropped = self.ids(|o| *o == CheckOutcome::Dropped);
        if !dropped.is_empty() && !self.allow_dropped_state {
            reasons.push(format!(
                "state of {dropped:?} would be dropped (the pipeline has no operator with that id; \
                 give it that uid, or allow dropping it with --allow-dropped-state)"
            ));
        }
        reasons
    }

    /// `Ok` if the check passed, else [`LifecycleError::CheckFailed`] with the reasons.
    pub fn ensure_passed(&self) -> Result<(), LifecycleError> {
        if self.passed {
            return Ok(());
        }
        Err(LifecycleError::CheckFailed {
            savepoint: self.savepoint.clone(),
            target: self.target.clone(),
            reasons: self.failures(),
        })
    }

    /// The report as a text table.
    pub fn render_table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "savepoint {} against {}", self.savepoint, self.target);
        let w = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0).max(5);
        let _ = writeln!(out, "  {:<w$}  {:<6}  DETAIL", "CHECK", "RESULT");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "  {:<w$}  {:<6}  {}",
                c.name,
                if c.ok { "ok" } else { "FAILED" },
                c.detail
            );
        }
        if !self.operators.is_empty() {
            let w = self.operators.iter().map(|o| o.id.len()).max().unwrap_or(0).max(8);
            let outcomes: Vec<String> = self.operators.iter().map(|o| o.outcome.to_string()).collect();
            let wo = outcomes.iter().map(String::len).max().unwrap_or(0).max(7);
            let _ = writeln!(out, "  {:<w$}  {:<wo$}  SHARDS", "OPERATOR", "OUTCOME");
            for (o, outcome) in self.operators.iter().zip(&outcomes) {
                let _ = writeln!(
                    out,
                    "  {:<w$}  {:<wo$}  {}/{}",
                    o.id,
                    outcome,
                    o.shards.len(),
                    self.shards
                );
            }
        }
        for p in &self.problems {
            let _ = writeln!(out, "  shard {}: INCOMPATIBLE: {}", p.shard, p.reason);
        }
        if self.passed {
            let _ = writeln!(out, "PASSED: a restore keeps all of the savepoint's state");
        } else {
            let _ = writeln!(out, "FAILED:");
            for r in self.failures() {
                let _ = writeln!(out, "  - {r}");
            }
        }
        out
    }
}

impl CheckReport {
    /// Adds what the dry-run restore of `shard` found: its operators' outcomes, or its problem.
    fn add_shard(&mut self, shard: String, restored: Result<RestoreReport, LifecycleError>) {
        let r = match restored {
            Ok(r) => r,
            Err(e) => {
                self.problems.push(ShardProblem {
                    shard,
                    reason: e.to_string(),
                });
                return;
            }
        };
        for o in &r.operators {
            let outcome = CheckOutcome::from(&o.outcome);
            match self.operators.iter_mut().find(|c| c.id == o.id && c.outcome == outcome) {
                Some(line) => line.shards.push(shard.clone()),
                None => self.operators.push(OperatorCheck {
                    id: o.id.clone(),
                    outcome,
                    shards: vec![shard.clone()],
                }),
            }
        }
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render_table())
    }
}

/// Dry-runs a restore of the savepoint at `location` into `target`'s pipeline; see the module
/// doc. `Err` only if the savepoint cannot be read at all (no manifest, S3 failing); everything
/// else is in the report, whose [`CheckReport::passed`] says whether the restore is safe.
pub async fn check_savepoint(
    s3: &aws_sdk_s3::Client,
    location: &S3Location,
    target: &CheckTarget,
    options: CheckOptions,
) -> Result<CheckReport, LifecycleError> {
    let m = read_manifest(s3, location).await?;
    let check = |name: &str, ok: bool, detail: String| Check {
        name: name.to_owned(),
        ok,
        detail,
    };
    let mut checks = vec![
        check(
            "savepoint format",
            m.format == SAVEPOINT_FORMAT
                && (MIN_SAVEPOINT_FORMAT_VERSION..=SAVEPOINT_FORMAT_VERSION).contains(&m.format_version),
            format!(
                "{} version {} (this release reads {SAVEPOINT_FORMAT} versions {MIN_SAVEPOINT_FORMAT_VERSION} to \
                 {SAVEPOINT_FORMAT_VERSION})",
                m.format, m.format_version
            ),
        ),
        check(
            "state format",
            (MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&m.state_format_version),
            format!(
                "version {} (this release reads {MIN_FORMAT_VERSION} to {FORMAT_VERSION})",
                m.state_format_version
            ),
        ),
    ];
    checks.extend(target_checks(
        "savepoint",
        &[m.pipeline.as_str()],
        &[m.max_key_groups],
        target,
    ));
    checks.push(check(
        "shards",
        !m.shards.is_empty(),
        format!("{} in the savepoint", m.shards.len()),
    ));
    let mut report = CheckReport {
        savepoint: location.to_string(),
        target: target.name.clone(),
        allow_dropped_state: options.allow_dropped_state,
        shards: m.shards.len(),
        checks,
        operators: Vec::new(),
        problems: Vec::new(),
        passed: false,
    };
    if report.checks.iter().all(|c| c.ok) {
        let read: Vec<_> = stream::iter(
            m.shards
                .iter()
                .map(|entry| async { (entry.shard.clone(), read_shard(s3, location, &m, entry).await) }),
        )
        .buffered(options.concurrency.max(1))
        .collect()
        .await;
        for (shard, state) in read {
            let restored = match state {
                Ok(state) => target
                    .dry_run(&CheckpointImage::new(state.checkpoint))
                    .map_err(LifecycleError::from),
                Err(e) => Err(e),
            };
            report.add_shard(shard, restored);
        }
    }
    report.passed = report.failures().is_empty();
    Ok(report)
}

/// The pipeline-name and key-group checks of a `source` (a savepoint, a stage) whose checkpoints
/// are of `pipelines` with `groups` key groups, against `target`.
fn target_checks(source: &str, pipelines: &[&str], groups: &[u16], target: &CheckTarget) -> [Check; 2] {
    let shown_pipelines: Vec<String> = pipelines.iter().map(|p| format!("{p:?}")).collect();
    let shown_groups: Vec<String> = groups.iter().map(u16::to_string).collect();
    [
        Check {
            name: "pipeline".into(),
            ok: pipelines.iter().all(|p| *p == target.pipeline),
            detail: format!(
                "{source} {}, pipeline {:?}",
                shown_pipelines.join(", "),
                target.pipeline
            ),
        },
        Check {
            name: "key groups".into(),
            ok: groups.iter().all(|g| *g == target.max_key_groups),
            detail: format!(
                "{source} {}, pipeline {} (fixed for a pipeline's life)",
                shown_groups.join(", "),
                target.max_key_groups
            ),
        },
    ]
}

/// Where [`check_stage`] reads a live stage's checkpoints.
#[derive(Debug, Clone)]
pub struct LiveStage {
    /// The stage's name in the state table.
    pub stage: String,
    /// The state table.
    pub table: String,
    /// The stage's spill bucket, if it spilled large key groups to S3.
    pub spill_bucket: Option<String>,
}

/// Dry-runs a restore of a live stage's committed checkpoints (every shard's, read as the stage
/// reads them, through the store) into `target`'s pipeline: the same report as
/// [`check_savepoint`], with the stage as its source (no savepoint format to check; the state
/// format is the one this release's store reads). Checkpoints committed while the check runs are
/// not seen; pause the stage's event source mappings for a check of one cut. `Err` only if the
/// table cannot be scanned.
pub async fn check_stage(
    dynamodb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    live: &LiveStage,
    target: &CheckTarget,
    options: CheckOptions,
) -> Result<CheckReport, LifecycleError> {
    check_stage_name(&live.stage)?;
    let shards = stage_checkpoints(dynamodb, &live.table, &live.stage).await?;
    let spill = live
        .spill_bucket
        .as_deref()
        .map(|b| shardflow_state_dynamodb::SpillBucket::new(s3.clone(), b));
    let loaded: Vec<(String, Result<Option<CheckpointImage>, LifecycleError>)> = stream::iter(shards.iter().map(|c| {
        let spill = spill.clone();
        async move {
            let mut store = DynamoDbCheckpointStore::new(dynamodb.clone(), &live.table, &live.stage, &c.shard)
                .with_spill_bucket(spill);
            let image = store.load().await.map(|l| l.image).map_err(LifecycleError::from);
            (c.shard.clone(), image)
        }
    }))
    .buffered(options.concurrency.max(1))
    .collect()
    .await;
    let images: Vec<&CheckpointImage> = loaded.iter().filter_map(|(_, i)| i.as_ref().ok()?.as_ref()).collect();
    let mut pipelines: Vec<&str> = images.iter().map(|i| i.pipeline()).collect();
    pipelines.dedup();
    let mut groups: Vec<u16> = images.iter().map(|i| i.max_key_groups()).collect();
    groups.dedup();
    let mut checks = target_checks("stage", &pipelines, &groups, target).to_vec();
    checks.push(Check {
        name: "shards".into(),
        ok: !images.is_empty(),
        detail: format!("{} with committed state", images.len()),
    });
    let mut report = CheckReport {
        savepoint: format!("stage {} in table {}", live.stage, live.table),
        target: target.name.clone(),
        allow_dropped_state: options.allow_dropped_state,
        shards: images.len(),
        checks,
        operators: Vec::new(),
        problems: Vec::new(),
        passed: false,
    };
    if report.checks.iter().all(|c| c.ok) {
        for (shard, image) in loaded {
            match image {
                Ok(Some(image)) => report.add_shard(shard, target.dry_run(&image).map_err(LifecycleError::from)),
                Ok(None) => {}
                Err(e) => report.add_shard(shard, Err(e)),
            }
        }
    }
    report.passed = report.failures().is_empty();
    Ok(report)
}
