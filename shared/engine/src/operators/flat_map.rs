//! `flat_map`: one value in, any number out.

use std::sync::Arc;

use super::{Context, Operator};
use crate::record::Record;

/// Emits every value `f` returns; the i-th output gets a provenance derived from its input's and
/// `i`, so that its result id stays deterministic.
pub(crate) struct FlatMap<T, U> {
    pub(crate) f: Arc<dyn Fn(T) -> Vec<U> + Send + Sync>,
    pub(crate) next: Box<dyn Operator<U>>,
}

impl<T, U> Operator<T> for FlatMap<T, U> {
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        for (i, value) in (self.f)(r.value).into_iter().enumerate() {
            self.next.process(
                cx,
                Record {
                    timestamp: r.timestamp,
                    origin: r.origin.nth(i as u32),
                    value,
                },
            );
        }
    }
    stateless_hooks!();
}
