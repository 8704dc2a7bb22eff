//! Sliding (hopping) windows.

use super::{align_down, positive, Window};
use crate::error::PipelineError;
use crate::time::{DurationMs, Timestamp};

/// Windows of `size` ms that start every `slide` ms; a record belongs to about `size / slide` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    size: DurationMs,
    slide: DurationMs,
    offset: DurationMs,
}

impl SlidingWindows {
    /// Windows of `size` ms every `slide` ms (`0 < slide <= size`), shifted by `offset` ms.
    pub fn new(size: DurationMs, slide: DurationMs, offset: DurationMs) -> Result<Self, PipelineError> {
        positive("sliding window size", size)?;
        positive("sliding window slide", slide)?;
        if slide > size {
            return Err(PipelineError::InvalidParameter {
                what: "sliding window slide",
                reason: format!("slide {slide} is larger than size {size}: records would fall between windows"),
            });
        }
        Ok(SlidingWindows {
            size,
            slide,
            offset: offset.rem_euclid(slide),
        })
    }

    #[inline]
    pub(crate) fn assign(&self, ts: Timestamp, mut f: impl FnMut(Window)) {
        let last_start = align_down(ts, self.slide, self.offset);
        // Earliest window that still contains ts: start > ts - size.
        let mut start = last_start;
        while start - self.slide > ts - self.size {
            start -= self.slide;
        }
        while start <= last_start {
            f(Window::new(start, start.saturating_add(self.size)));
            start += self.slide;
        }
    }
}
