//! Restoring a checkpoint image into a pipeline, explicitly: which operator gets which state.
//!
//! A stateful operator's state is found in an image under the operator's id (see
//! [`crate::StatefulOperator`]). [`crate::Engine::restore_with`] matches the image's operators
//! with the pipeline's and returns a [`RestoreReport`] saying, per operator, whether it was
//! restored, starts empty (the image holds nothing under its id: a new operator, or one whose
//! id changed), or had its state dropped (the image holds state the pipeline has no operator
//! for). State the pipeline has no operator for is refused with
//! [`StateError::UnmatchedState`] unless [`RestoreOptions::allow_dropped_state`] is set (Flink's
//! `allowNonRestoredState`): losing state is a decision, never a side effect of a changed
//! pipeline. [`crate::Engine::restore`] and [`crate::Engine::adopt`] follow the same rule with
//! the default (strict) options.
//!
//! # Format version 1 images
//! Checkpoints of format version 1 named operators by their position among all the pipeline's
//! steps, stateless ones included (`{position}-{kind}`, e.g. `3-window_aggregate`). Such an id is
//! read as the default id of the operator it belonged to: the image's positional ids of one kind,
//! in the order of their positions, are the default ids `{kind}-0`, `{kind}-1`, ... (the default
//! id counts the stateful operators of the kind before it, which is the order of their
//! positions). So a pipeline whose operators have default ids restores the state of the release
//! before, even if stateless steps were added or removed in the same change. An operator that
//! has a uid does not read a positional id: give it the default id as its uid for the first
//! deployment, or accept that it starts empty.
//!
//! # State schemas
//! Each operator's state is restored only if its stored schema fits the pipeline's (see
//! [`crate::schema`]): as stored, migrated ([`RestoreOutcome::Migrated`]), or refused with
//! [`StateError::IncompatibleState`] naming the operators. Dropping state is never a way around
//! an incompatible type: change the operator's uid for that.
//!
//! Schema entries are read only for the operators the pipeline restores: the entry of an
//! operator the pipeline does not have goes with that operator's state (refused with it, or
//! dropped with it when dropping is allowed) and is never itself a reason to refuse. This is what
//! makes a rollback to the build before work (see [`crate::schema`]).
//!
//! A store may still hold a positional entry beside the entry under the default id that
//! replaced it (a store that keeps operators a full checkpoint does not list); the positional
//! one is then stale and is reported as [`RestoreOutcome::Superseded`].

use std::collections::{BTreeMap, BTreeSet};

use crate::checkpoint::{CheckpointImage, KeyGroupBlobs, OperatorState};
use crate::error::StateError;
use crate::pipeline::{StatefulOperator, STATEFUL_KINDS};
use crate::schema::{self, StateSchema};

/// How a restore treats state the pipeline has no operator for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Drop (and report as [`RestoreOutcome::Dropped`]) the image's state of operators the
    /// pipeline does not have, instead of refusing the restore. Default `false`.
    pub allow_dropped_state: bool,
}

impl RestoreOptions {
    /// The default: state the pipeline has no operator for is refused.
    pub fn strict() -> Self {
        RestoreOptions::default()
    }

    /// State the pipeline has no operator for is dropped and reported.
    pub fn allowing_dropped_state() -> Self {
        RestoreOptions {
            allow_dropped_state: true,
        }
    }
}

/// What a restore did with one operator's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The pipeline's operator took over the state the image keeps under `from`: its own id, or
    /// the positional id of a format version 1 image.
    Restored {
        /// The id the image keeps the state under.
        from: String,
    },
    /// The pipeline's operator took over the state the image keeps under `from`, stored at the
    /// older schema `version` and converted by the operator's migration (see [`crate::schema`]).
    Migrated {
        /// The id the image keeps the state under.
        from: String,
        /// The stored schema version.
        version: u32,
    },
    /// The pipeline's operator found no state in the image and starts empty.
    StartsEmpty,
    /// The image's state of an operator the pipeline does not have was dropped (allowed by
    /// [`RestoreOptions::allow_dropped_state`]).
    Dropped,
    /// A positional entry of a format version 1 image that the image also holds under its default
    /// id `by`, written later: stale, not read.
    Superseded {
        /// The default id whose entry replaced it.
        by: String,
    },
}

/// One line of a [`RestoreReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRestore {
    /// For [`RestoreOutcome::Restored`] and [`RestoreOutcome::StartsEmpty`], the pipeline
    /// operator's id; for [`RestoreOutcome::Dropped`] and [`RestoreOutcome::Superseded`], the id
    /// the image keeps the state under.
    pub id: String,
    /// What happened to its state.
    pub outcome: RestoreOutcome,
}

/// What a restore did with every operator's state: first the pipeline's stateful operators, in
/// pipeline order, then the image's entries no operator read, in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// One line per operator.
    pub operators: Vec<OperatorRestore>,
}

impl RestoreReport {
    fn ids(&self, matches: impl Fn(&RestoreOutcome) -> bool) -> Vec<&str> {
        self.operators
            .iter()
            .filter(|o| matches(&o.outcome))
            .map(|o| o.id.as_str())
            .collect()
    }

    /// The ids of the pipeline's operators that were restored (as stored or migrated).
    pub fn restored(&self) -> Vec<&str> {
        self.ids(|o| matches!(o, RestoreOutcome::Restored { .. } | RestoreOutcome::Migrated { .. }))
    }

    /// The ids of the pipeline's operators whose state was migrated from an older schema.
    pub fn migrated(&self) -> Vec<&str> {
        self.ids(|o| matches!(o, RestoreOutcome::Migrated { .. }))
    }

    /// The ids of the pipeline's operators that start empty.
    pub fn starts_empty(&self) -> Vec<&str> {
        self.ids(|o| *o == RestoreOutcome::StartsEmpty)
    }

    /// The image's ids whose state was dropped.
    pub fn dropped(&self) -> Vec<&str> {
        self.ids(|o| *o == RestoreOutcome::Dropped)
    }

    /// Whether every operator of the pipeline was restored and no state was dropped.
    pub fn is_complete(&self) -> bool {
        self.operators.iter().all(|o| {
            matches!(
                o.outcome,
                RestoreOutcome::Restored { .. } | RestoreOutcome::Migrated { .. } | RestoreOutcome::Superseded { .. }
            )
        })
    }

    /// Whether every line is an operator of the pipeline restored under its own id as stored:
    /// nothing starts empty, was migrated, dropped, superseded or read under a format version 1
    /// id. What a
    /// runner logs is the report of a restore that is not plain.
    pub fn is_plain(&self) -> bool {
        self.operators
            .iter()
            .all(|o| matches!(&o.outcome, RestoreOutcome::Restored { from } if *from == o.id))
    }

    /// Logs what did not restore as it was stored: operators that start empty although the image
    /// holds state of others, dropped state (warnings), state read under another id (info).
    pub(crate) fn log(&self, pipeline: &str, image_has_state: bool) {
        for o in &self.operators {
            match &o.outcome {
                RestoreOutcome::StartsEmpty if image_has_state => tracing::warn!(
                    pipeline,
                    operator = %o.id,
                    "the checkpoint holds no state for this operator: it starts empty"
                ),
                RestoreOutcome::Dropped => {
                    tracing::warn!(pipeline, operator = %o.id, "state of an operator the pipeline does not have was dropped")
                }
                RestoreOutcome::Restored { from } if *from != o.id => {
                    tracing::info!(pipeline, operator = %o.id, from = %from, "state read under a format version 1 id")
                }
                RestoreOutcome::Migrated { from, version } => {
                    tracing::info!(pipeline, operator = %o.id, from = %from, version, "state migrated from an older schema version")
                }
                _ => {}
            }
        }
    }

    /// Whether the stored state must be rewritten whole: some state now lives under another id
    /// than in the image (an incremental checkpoint would hold only its changed key groups under
    /// the new id), was migrated (unchanged groups would stay in the old type), or was dropped.
    pub(crate) fn moves_state(&self) -> bool {
        self.operators.iter().any(|o| match &o.outcome {
            RestoreOutcome::Restored { from } => *from != o.id,
            RestoreOutcome::Migrated { .. } | RestoreOutcome::Dropped => true,
            RestoreOutcome::StartsEmpty | RestoreOutcome::Superseded { .. } => false,
        })
    }
}

/// The state of a pipeline's stateful operators in a checkpoint image, by the pipeline's
/// operator ids (what the operators' restore hooks read; made by a restore).
pub struct OperatorStates<'a> {
    image: &'a CheckpointImage,
    /// Pipeline id → the image's id, where they differ.
    aliases: BTreeMap<String, String>,
    /// Pipeline id → the stored schema version its state is migrated from.
    migrations: BTreeMap<String, u32>,
}

impl<'a> OperatorStates<'a> {
    /// The meta state and key groups of the pipeline's operator `id`, if the restore gave it any.
    pub fn get(&self, id: &str) -> Option<(&'a [u8], &'a KeyGroupBlobs)> {
        self.image.operator(self.aliases.get(id).map_or(id, String::as_str))
    }

    /// The older schema version the state of the pipeline's operator `id` is stored in, if it
    /// must be migrated (the operator decodes its key groups with its migration).
    pub fn migration(&self, id: &str) -> Option<u32> {
        self.migrations.get(id).copied()
    }
}

/// The schema entries of `operators` that every snapshot carries (see [`crate::schema`]).
pub(crate) fn schema_entries(operators: &[StatefulOperator]) -> Vec<OperatorState> {
    operators
        .iter()
        .map(|o| OperatorState {
            operator: schema::schema_entry_id(o.id()),
            meta: o.schema().encode(),
            key_groups: Vec::new(),
        })
        .collect()
}

/// The schema `image` stores for the state it keeps under `id`: `None` if it stores none (state
/// written before schemas); refused if the entry cannot be read (a newer build's schema format).
fn stored_schema(image: &CheckpointImage, id: &str) -> Result<Option<StateSchema>, String> {
    let Some((meta, _)) = image.operator(&schema::schema_entry_id(id)) else {
        return Ok(None);
    };
    StateSchema::decode(meta).map(Some).ok_or_else(|| {
        "its schema entry cannot be read: written by a newer build whose schema format this build does not know"
            .to_owned()
    })
}

/// The position and kind of a format version 1 positional id `{position}-{kind}` of a stateful
/// kind; `None` for any other id.
pub(crate) fn legacy_id(id: &str) -> Option<(u64, &'static str)> {
    let (position, kind) = id.split_once('-')?;
    if position.is_empty() || !position.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kind = STATEFUL_KINDS.into_iter().find(|k| *k == kind)?;
    Some((position.parse().ok()?, kind))
}

/// The default id each positional id of `image` reads as (see the module documentation).
fn legacy_reads_as(image: &CheckpointImage) -> BTreeMap<String, String> {
    let mut by_kind: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    for (id, _) in image.operator_metas() {
        if let Some((position, kind)) = legacy_id(id) {
            by_kind.entry(kind).or_default().push((position, id));
        }
    }
    let mut reads_as = BTreeMap::new();
    for (kind, mut ids) in by_kind {
        ids.sort_unstable();
        for (n, (_, id)) in ids.into_iter().enumerate() {
            reads_as.insert(id.to_owned(), format!("{kind}-{n}"));
        }
    }
    reads_as
}

/// Matches `image`'s operators with the pipeline's `operators` (see the module documentation):
/// what each operator reads, and the report; refuses unmatched state unless `options` allow
/// dropping it.
pub(crate) fn plan<'a>(
    operators: &[StatefulOperator],
    image: &'a CheckpointImage,
    options: RestoreOptions,
) -> Result<(OperatorStates<'a>, RestoreReport), StateError> {
    let reads_as = legacy_reads_as(image);
    let legacy_of: BTreeMap<&str, &str> = reads_as.iter().map(|(old, new)| (new.as_str(), old.as_str())).collect();
    let mut aliases = BTreeMap::new();
    let mut migrations = BTreeMap::new();
    let mut incompatible = Vec::new();
    let mut read = BTreeSet::new();
    let mut report = RestoreReport::default();
    for op in operators {
        let id = op.id();
        let from = if image.operator(id).is_some() {
            Some(id)
        } else {
            legacy_of.get(id).copied()
        };
        let outcome = match from {
            None => RestoreOutcome::StartsEmpty,
            Some(from) => {
                read.insert(from.to_owned());
                if from != id {
                    aliases.insert(id.to_owned(), from.to_owned());
                }
                let compared = stored_schema(image, from)
                    .and_then(|stored| schema::compare(stored.as_ref(), op.schema(), op.migrates_from()));
                match compared {
                    Ok(None) => RestoreOutcome::Restored { from: from.to_owned() },
                    Ok(Some(version)) => {
                        migrations.insert(id.to_owned(), version);
                        RestoreOutcome::Migrated {
                            from: from.to_owned(),
                            version,
                        }
                    }
                    Err(why) => {
                        incompatible.push(format!("{id:?}: {why}"));
                        RestoreOutcome::Restored { from: from.to_owned() }
                    }
                }
            }
        };
        report.operators.push(OperatorRestore {
            id: id.to_owned(),
            outcome,
        });
    }
    if !incompatible.is_empty() {
        return Err(StateError::IncompatibleState {
            operators: incompatible,
        });
    }
    let mut unmatched = Vec::new();
    for (id, _) in image.operator_metas() {
        if read.contains(id) || schema::is_schema_entry(id) {
            continue;
        }
        match reads_as.get(id) {
            Some(new) if image.operator(new).is_some() => report.operators.push(OperatorRestore {
                id: id.to_owned(),
                outcome: RestoreOutcome::Superseded { by: new.clone() },
            }),
            Some(new) => unmatched.push((id, format!("{id} (read as {new})"))),
            None => unmatched.push((id, id.to_owned())),
        }
    }
    if !unmatched.is_empty() && !options.allow_dropped_state {
        return Err(StateError::UnmatchedState {
            unmatched: unmatched.into_iter().map(|(_, shown)| shown).collect(),
            starts_empty: report.starts_empty().into_iter().map(str::to_owned).collect(),
        });
    }
    report
        .operators
        .extend(unmatched.into_iter().map(|(id, _)| OperatorRestore {
            id: id.to_owned(),
            outcome: RestoreOutcome::Dropped,
        }));
    Ok((
        OperatorStates {
            image,
            aliases,
            migrations,
        },
        report,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_ids_are_recognised_by_their_form() {
        assert_eq!(legacy_id("3-window_aggregate"), Some((3, "window_aggregate")));
        assert_eq!(legacy_id("10-deduplicate"), Some((10, "deduplicate")));
        assert_eq!(legacy_id("window_aggregate-3"), None, "a default id");
        assert_eq!(legacy_id("3-map"), None, "not a stateful kind");
        assert_eq!(legacy_id("-window_aggregate"), None);
        assert_eq!(legacy_id("revenue-window"), None);
    }
}
