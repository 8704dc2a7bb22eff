//! The lookup (enrichment) join: each record is joined with a row of a table found by key.

use std::sync::Arc;

use super::{Context, Operator};
use crate::record::Record;

/// A table to enrich records from (a dimension table, a cache of a database, a static map).
///
/// Contract: `lookup` is a pure read as far as the engine is concerned; an implementation that
/// reads a remote store must cache or preload, since it is called once per record.
pub trait LookupTable<K, V>: Send + Sync {
    /// The row for `key`, if there is one.
    fn lookup(&self, key: &K) -> Option<V>;
}

impl<K: std::hash::Hash + Eq + Send + Sync, V: Clone + Send + Sync, S: std::hash::BuildHasher + Send + Sync>
    LookupTable<K, V> for std::collections::HashMap<K, V, S>
{
    fn lookup(&self, key: &K) -> Option<V> {
        self.get(key).cloned()
    }
}

impl<K: Ord + Send + Sync, V: Clone + Send + Sync> LookupTable<K, V> for std::collections::BTreeMap<K, V> {
    fn lookup(&self, key: &K) -> Option<V> {
        self.get(key).cloned()
    }
}

/// See the module documentation. `join_fn` gets the row or `None` (so it decides between an inner
/// and a left join by what it returns).
pub(crate) struct LookupJoin<K, V, T, O> {
    pub(crate) table: Arc<dyn LookupTable<K, V>>,
    pub(crate) key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
    pub(crate) join_fn: Arc<dyn Fn(T, Option<V>) -> Option<O> + Send + Sync>,
    pub(crate) next: Box<dyn Operator<O>>,
}

impl<K, V, T, O> Operator<T> for LookupJoin<K, V, T, O> {
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        let row = self.table.lookup(&(self.key_fn)(&r.value));
        if let Some(value) = (self.join_fn)(r.value, row) {
            self.next.process(
                cx,
                Record {
                    timestamp: r.timestamp,
                    origin: r.origin,
                    value,
                },
            );
        }
    }
    stateless_hooks!();
}
