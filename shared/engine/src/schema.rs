//! State schemas: the version and type of each stateful operator's state, kept in checkpoints
//! beside the state, so that a restore can tell a changed state type from an unchanged one.
//!
//! # What is stored
//! Every checkpoint carries, for each stateful operator `id`, an entry `@schema/{id}` without key
//! groups whose meta is the [`StateSchema`] of the operator's state (postcard): its version and
//! the Rust type name of the value the author chose (a window aggregate's accumulator
//! `Combiner::Acc`, a keyed process function's state `S`, the buffered values of an interval
//! join, the ids of a `deduplicate`). Checkpoints written before schemas existed (formats 1 and
//! 2 as first written) have no such entries: their state is version 1 of unknown type.
//!
//! # The rule
//! A restore compares the stored schema of each operator it restores with the pipeline's
//! ([`crate::StatefulOperator::schema`]):
//! - same version, same type (or no stored schema and version 1): restored as stored;
//! - an older version (no stored schema counts as version 1) that the operator migrates from
//!   (a window aggregate's combiner wrapped in [`crate::combine::migrate_from`]): every key group
//!   is decoded as the old type and converted ([`crate::RestoreOutcome::Migrated`]), and the next
//!   snapshot is full, so the stored state is rewritten in the new type;
//! - anything else — the same version with another type (a type changed without a migration), an
//!   older version without a migration, a newer version (state of a newer build) — refuses the
//!   restore with [`crate::StateError::IncompatibleState`], naming the operators and why.
//!
//! The type name is `std::any::type_name`, which is stable for a type at a given path with a
//! given compiler but may change when the type is moved or renamed: such a move is refused as a
//! type change, loudly rather than misread; give the moved type a migration from the stored
//! version (an identity conversion) to accept it.

use serde::{Deserialize, Serialize};

/// The prefix of the ids of schema entries in a checkpoint (see the module documentation); no
/// operator id may start with it.
pub const SCHEMA_ENTRY_PREFIX: &str = "@schema/";

/// The version and type of a stateful operator's state (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSchema {
    /// The schema version: 1, or one more than the newest version the operator migrates from.
    pub version: u32,
    /// The Rust type name of the state value (`std::any::type_name`).
    pub type_name: String,
}

impl StateSchema {
    /// Version `version` of state of type `T`.
    pub fn of<T: ?Sized>(version: u32) -> Self {
        StateSchema {
            version,
            type_name: std::any::type_name::<T>().to_owned(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        // A struct of an integer and a string always encodes.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
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
        return match type_name {
            Some(t) if t != current.type_name => Err(format!(
                "the state type changed from {t} to {} without a new version: declare a migration from version {version} \
                 (combine::migrate_from)",
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
}
