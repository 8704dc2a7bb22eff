//! `filter` and `filter_map`: keep some values.

use std::sync::Arc;

use super::{Context, Operator};
use crate::checkpoint::{CheckpointImage, OperatorState};
use crate::error::StateError;
use crate::record::Record;
use crate::time::Timestamp;

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
