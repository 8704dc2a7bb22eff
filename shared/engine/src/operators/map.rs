//! `map`: one value in, one value out.

use std::sync::Arc;

use super::{Context, Operator};
use crate::record::Record;

/// Applies `f` to every value; timestamp and provenance are kept.
pub(crate) struct Map<T, U> {
    pub(crate) f: Arc<dyn Fn(T) -> U + Send + Sync>,
    pub(crate) next: Box<dyn Operator<U>>,
}

impl<T, U> Operator<T> for Map<T, U> {
    #[inline]
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        let value = (self.f)(r.value);
        self.next.process(
            cx,
            Record {
                timestamp: r.timestamp,
                origin: r.origin,
                value,
            },
        );
    }
    stateless_hooks!();
}
