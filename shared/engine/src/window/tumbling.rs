//! Tumbling (fixed) windows.

use super::{align_down, positive, Window};
use crate::error::PipelineError;
use crate::time::{DurationMs, Timestamp};

/// Fixed-size, non-overlapping windows `[k*size + offset, (k+1)*size + offset)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TumblingWindows {
    size: DurationMs,
    offset: DurationMs,
}

impl TumblingWindows {
    /// Windows of `size` ms, shifted by `offset` ms from the epoch.
    pub fn new(size: DurationMs, offset: DurationMs) -> Result<Self, PipelineError> {
        positive("tumbling window size", size)?;
        Ok(TumblingWindows {
            size,
            offset: offset.rem_euclid(size),
        })
    }

    /// The window size in ms.
    pub fn size(&self) -> DurationMs {
        self.size
    }

    #[inline]
    pub(crate) fn assign(&self, ts: Timestamp, mut f: impl FnMut(Window)) {
        let start = align_down(ts, self.size, self.offset);
        f(Window::new(start, start.saturating_add(self.size)));
    }
}
