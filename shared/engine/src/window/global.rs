//! The global window.

use super::Window;
use crate::time::Timestamp;

/// One window spanning all of time. Its on-time pane fires only when the watermark reaches the
/// end of time (the end of a bounded input); use early firings for results before that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalWindows;

impl GlobalWindows {
    #[inline]
    pub(crate) fn assign(&self, _ts: Timestamp, mut f: impl FnMut(Window)) {
        f(Window::GLOBAL);
    }
}
