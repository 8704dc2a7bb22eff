//! `filter` and `filter_map`: keep some values.

use std::sync::Arc;

use super::{Context, Operator};
use crate::record::Record;

/// Keeps the values for which `f` is true.
pub(crate) struct Filter<T> {
    pub(crate) f: Arc<dyn Fn(&T) -> bool + Send + Sync>,
    pub(crate) next: Box<dyn Operator<T>>,
}

/// Keeps the `Some` results of `f`.
pub(crate) struct FilterMap<T, U> {
    pub(crate) f: Arc<dyn Fn(T) -> Option<U> + Send + Sync>,
    pub(crate) next: Box<dyn Operator<U>>,
}

impl<T> Operator<T> for Filter<T> {
    #[inline]
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        if (self.f)(&r.value) {
            self.next.process(cx, r);
        }
    }
    stateless_hooks!();
}

impl<T, U> Operator<T> for FilterMap<T, U> {
    #[inline]
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        if let Some(value) = (self.f)(r.value) {
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
