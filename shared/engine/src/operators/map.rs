//! `map`: one value in, one value out.

use std::sync::Arc;

use super::{Context, Operator};
use crate::checkpoint::{CheckpointImage, OperatorState};
use crate::error::StateError;
use crate::record::Record;
use crate::time::Timestamp;

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
