//! State schemas: the version, type and shape of each stateful operator's state, kept in
//! checkpoints beside the state, so that a restore can tell a changed state type from an
//! unchanged one.
//!
//! # What is stored
//! Every checkpoint carries, for each stateful operator `id`, an entry `@schema/{id}` without key
//! groups whose meta is the [`StateSchema`] of the operator's state (postcard): its version, the
//! Rust type name of the value the author chose (a window aggregate's accumulator
//! `Combiner::Acc`, a keyed process function's state `S`, the buffered values of an interval
//! join, the ids of a `deduplicate`) and its *shape*: the type as serde sees it, traced from its
//! `Deserialize` implementation (see [`shape`](StateSchema::shape)), e.g.
//! `Totals{count:u64,sum:i64}`. Checkpoints written before schemas existed (formats 1 and 2 as
//! first written) have no such entries: their state is version 1 of unknown type. Schema entries
//! written before shapes existed hold a version and a type name only; they are read as before.
//!
//! # The rule
//! A restore compares the stored schema of each operator it restores with the pipeline's
//! ([`crate::StatefulOperator::schema`]):
//! - same version and, where both sides have a shape, the same shape (the type may have been
//!   renamed or moved: the bytes decode the same); where either side lacks a shape, the same type
//!   name (or no stored schema at all and version 1): restored as stored;
//! - an older version (no stored schema counts as version 1) that the operator migrates from
//!   (a window aggregate's combiner wrapped in [`crate::combine::migrate_from`]; a keyed process
//!   function, an interval join or a `deduplicate` declared with a [`StateMigration`], see
//!   [`from_version`]): every key group is decoded as the old type and converted
//!   ([`crate::RestoreOutcome::Migrated`]), and the next snapshot is full, so the stored state
//!   is rewritten in the new type;
//! - anything else — the same version with another shape (a field added, removed, renamed or
//!   retyped in a struct of the same name, without a migration), the same version with another
//!   type name where a shape is missing, an older version without a migration, a newer version
//!   (state of a newer build) — refuses the restore with
//!   [`crate::StateError::IncompatibleState`], naming the operators, why, and the fix.
//!
//! The type name is `std::any::type_name`, which is stable for a type at a given path with a
//! given compiler but may change when the type is moved or renamed; the shape does not, so a move
//! is accepted when both sides have shapes. A type whose `Deserialize` cannot be traced (one that
//! asks for self-describing input, such as `serde_json::Value` or an untagged enum) has no shape
//! and is compared by name only: a field added to it is not detected.
//!
//! # Rollback
//! Restoring a newer build's savepoint into the build before it (a rollback) follows the same
//! rule, and the rule is to *accept* what the older build does not know about schema entries as
//! long as the state itself is compatible, and to refuse, naming the operators, where it is not:
//! - a schema entry is read field by field from its start and fields are only ever appended (the
//!   shape came after the version and the type name): the build before shapes reads a newer
//!   entry's version and type name and ignores the shape, so state of a version it knows restores;
//! - the schema entry of an operator the older pipeline does not have (the newer build added an
//!   operator) goes with that operator's state: the restore refuses the state as unmatched, naming
//!   the operator and not its schema entry, or drops both when dropping is allowed;
//! - state the newer build migrated to a newer version is refused ("written by a newer build"):
//!   roll back to the savepoint taken before the migration, or give the older build a migration
//!   back;
//! - a schema entry this build cannot read at all (a newer schema format) is refused: it is not
//!   taken for state written before schemas.
//!
//! Builds from before schema entries existed read `@schema/{id}` entries as state of operators
//! they do not have: rolling back to one needs allow-dropped-state, which then drops exactly the
//! schema entries (`savepoint check` lists them as dropped; nothing else may be listed).

mod migration;
mod shape;

pub(crate) use migration::decode_converted;
pub use migration::{from_version, FromVersion, NoMigration, StateLayout, StateMigration};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The prefix of the ids of schema entries in a checkpoint (see the module documentation); no
/// operator id may start with it.
pub const SCHEMA_ENTRY_PREFIX: &str = "@schema/";

/// The version, type and shape of a stateful operator's state (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSchema {
    /// The schema version: 1, or one more than the newest version the operator migrates from.
    pub version: u32,
    /// The Rust type name of the state value (`std::any::type_name`).
    pub type_name: String,
    /// The state type as serde sees it, rendered canonically (`Totals{count:u64,sum:i64}`; a
    /// rendering over 1 KiB is kept as its hash, `xxh3:` and 16 hex digits). `None` for a type
    /// whose `Deserialize` cannot be traced, and in schema entries written before shapes.
    pub shape: Option<String>,
}

/// The [`StateSchema`] as the release before shapes wrote it; still how a schema entry begins.
#[derive(Deserialize)]
struct StateSchemaWithoutShape {
    version: u32,
    type_name: String,
}

impl StateSchema {
    /// Version `version` of state of type `T`, with `T`'s shape.
    pub fn of<T: DeserializeOwned>(version: u32) -> Self {
        StateSchema {
            version,
            type_name: std::any::type_name::<T>().to_owned(),
            shape: shape::of::<T>(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        // A struct of an integer and strings always encodes.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Reads an entry of either form: with a shape, or as written before shapes (`shape: None`).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok().or_else(|| {
            let old: StateSchemaWithoutShape = postcard::from_bytes(bytes).ok()?;
            Some(StateSchema {
                version: old.version,
                type_name: old.type_name,
                shape: None,
            })
        })
    }
}

/// The id of the schema entry of operator `id`.
pub(crate) fn schema_entry_id(id: &str) -> String {
    format!("{SCHEMA_ENTRY_PREFIX}{id}")
}

/// Whether `id` is the id of a schema entry.
pub(crate) fn is_schema_entry(id: &str) -> bool {
    id.starts_with(SCHEMA_ENTRY_PREFIX)
}

/// How stored state of schema `stored` (`None`: written before schemas) is read by an operator
/// of schema `current` that migrates from the versions `migrates_from`: `Ok(None)` as stored,
/// `Ok(Some(v))` migrated from version `v`, `Err(why)` refused.
pub(crate) fn compare(
    stored: Option<&StateSchema>,
    current: &StateSchema,
    migrates_from: &[u32],
) -> Result<Option<u32>, String> {
    let (version, type_name) = match stored {
        Some(s) => (s.version, Some(s.type_name.as_str())),
        None => (1, None),
    };
    let shown = |v: u32, t: Option<&str>| match t {
        Some(t) => format!("version {v} ({t})"),
        None => format!("version {v} (written before state schemas)"),
    };
    if version == current.version {
        let stored_shape = stored.and_then(|s| s.shape.as_deref());
        return match (type_name, stored_shape, current.shape.as_deref()) {
            (_, Some(was), Some(is)) if was != is => Err(format!(
                "the shape of the state changed from {was} to {is} (type {}) without a new version: a field was \
                 added, removed, renamed or retyped; declare a migration from version {version} (combine::migrate_from \
                 for an accumulator, schema::from_version for the state of process, interval_join or deduplicate) \
                 or keep the old shape",
                current.type_name
            )),
            (_, Some(_), Some(_)) => Ok(None),
            (Some(t), _, _) if t != current.type_name => Err(format!(
                "the state type changed from {t} to {} without a new version: declare a migration from version {version} \
                 (combine::migrate_from for an accumulator, schema::from_version for the state of process, \
                 interval_join or deduplicate)",
                current.type_name
            )),
            _ => Ok(None),
        };
    }
    if version < current.version && migrates_from.contains(&version) {
        return Ok(Some(version));
    }
    let why = if version > current.version {
        "written by a newer build"
    } else {
        "the pipeline has no migration from it"
    };
    Err(format!(
        "stored state is {}, the pipeline's is {}: {why}",
        shown(version, type_name),
        shown(current.version, Some(&current.type_name))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_type_restores_another_type_needs_a_migration_and_newer_state_is_refused() {
        let v1 = StateSchema::of::<u64>(1);
        assert_eq!(compare(Some(&v1), &v1, &[]), Ok(None));
        assert_eq!(
            compare(None, &v1, &[]),
            Ok(None),
            "state from before schemas is version 1"
        );
        let changed = StateSchema::of::<(u64, i64)>(1);
        assert!(compare(Some(&v1), &changed, &[]).unwrap_err().contains("u64"));
        let v2 = StateSchema::of::<(u64, i64)>(2);
        assert_eq!(compare(Some(&v1), &v2, &[1]), Ok(Some(1)));
        assert_eq!(compare(None, &v2, &[1]), Ok(Some(1)));
        assert!(compare(Some(&v1), &v2, &[]).unwrap_err().contains("no migration"));
        assert!(compare(Some(&v2), &v1, &[]).unwrap_err().contains("newer build"));
        assert_eq!(StateSchema::decode(&v2.encode()), Some(v2));
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Totals {
        count: u64,
    }

    mod next {
        /// `Totals` of the next build: a field added.
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub struct Totals {
            pub count: u64,
            pub sum: i64,
        }
    }

    #[test]
    fn a_field_added_at_the_same_version_is_refused_where_both_sides_have_a_shape() {
        let stored = StateSchema::of::<Totals>(1);
        assert_eq!(stored.shape.as_deref(), Some("Totals{count:u64}"));
        let mut current = StateSchema::of::<next::Totals>(1);
        // The same path in the next build: only the shape tells them apart.
        current.type_name = stored.type_name.clone();
        let why = compare(Some(&stored), &current, &[]).unwrap_err();
        assert!(
            why.contains("Totals{count:u64}") && why.contains("Totals{count:u64,sum:i64}"),
            "{why}"
        );
        assert!(why.contains("migrate_from"), "{why}");
        let mut unshaped = stored.clone();
        unshaped.shape = None;
        assert_eq!(
            compare(Some(&unshaped), &current, &[]),
            Ok(None),
            "an entry written before shapes"
        );
        let migrating = StateSchema::of::<next::Totals>(2);
        assert_eq!(compare(Some(&stored), &migrating, &[1]), Ok(Some(1)));
    }

    #[test]
    fn a_type_moved_or_renamed_with_the_same_shape_restores_as_stored() {
        let stored = StateSchema::of::<Totals>(1);
        let mut moved = stored.clone();
        moved.type_name = "elsewhere::Totals".into();
        assert_eq!(compare(Some(&stored), &moved, &[]), Ok(None));
        moved.shape = None;
        assert!(
            compare(Some(&stored), &moved, &[]).is_err(),
            "without a shape the name decides"
        );
    }

    #[test]
    fn entries_of_both_forms_are_read_and_the_form_before_shapes_reads_the_new_one() {
        let with_shape = StateSchema::of::<Totals>(3);
        let old_form = postcard::to_allocvec(&(3u32, with_shape.type_name.as_str())).unwrap();
        let read = StateSchema::decode(&old_form).unwrap();
        assert_eq!((read.version, read.shape), (3, None));
        // What the build before shapes decodes from a new entry: the fields it knows.
        let by_old_build: StateSchemaWithoutShape = postcard::from_bytes(&with_shape.encode()).unwrap();
        assert_eq!(
            (by_old_build.version, by_old_build.type_name),
            (3, with_shape.type_name)
        );
    }
}
