//! Session windows: gap-based, merging.

use super::{positive, Window};
use crate::error::PipelineError;
use crate::time::{DurationMs, Timestamp};

/// A record at `ts` opens the proto-window `[ts, ts + gap)`; proto-windows of one key that
/// overlap are merged into one session (the windowed operator does the merging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    gap: DurationMs,
}

impl SessionWindows {
    /// Sessions closed by `gap` ms without a record of the key.
    pub fn new(gap: DurationMs) -> Result<Self, PipelineError> {
        positive("session gap", gap)?;
        Ok(SessionWindows { gap })
    }

    /// The inactivity gap in ms.
    pub fn gap(&self) -> DurationMs {
        self.gap
    }

    #[inline]
    pub(crate) fn assign(&self, ts: Timestamp, mut f: impl FnMut(Window)) {
        f(Window::new(ts, ts.saturating_add(self.gap)));
    }
}
