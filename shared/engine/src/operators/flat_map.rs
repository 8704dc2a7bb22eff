//! `flat_map`: one value in, any number out.

use std::sync::Arc;

use super::{Context, Operator};
use crate::checkpoint::{CheckpointImage, OperatorState};
use crate::error::StateError;
use crate::record::Record;
use crate::time::Timestamp;

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
    fn on_watermark(&mut self, cx: &mut Context, wm: Timestamp) {
        self.next.on_watermark(cx, wm);
    }
    fn on_processing_time(&mut self, cx: &mut Context) {
        self.next.on_processing_time(cx);
    }
    fn snapshot(&mut self, full: bool, out: &mut Vec<OperatorState>) -> Result<(), StateError> {
        self.next.snapshot(full, out)
    }
    fn restore(&mut self, image: &CheckpointImage) -> Result<(), StateError> {
        self.next.restore(image)
    }
    fn adopt(&mut self, image: &CheckpointImage, keep: &dyn Fn(&[u8]) -> bool) -> Result<(), StateError> {
        self.next.adopt(image, keep)
    }
}
