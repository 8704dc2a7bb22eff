//! The end of a split pipeline's upstream half: values leave for the shuffle with their key
//! group and input provenance.

use std::sync::Arc;

use super::{Context, Operator};
use crate::record::{InputOrigin, Origin, Output, Record, ShuffleOutput};

/// Turns records into [`Output`]s of [`ShuffleOutput`]: the value, its key group and its
/// [`InputOrigin`].
pub(crate) struct ShuffleSink<T> {
    key_group: Arc<dyn Fn(&T) -> u16 + Send + Sync>,
}

impl<T> ShuffleSink<T> {
    pub(crate) fn new(key_group: Arc<dyn Fn(&T) -> u16 + Send + Sync>) -> Self {
        ShuffleSink { key_group }
    }
}

impl<T: Send + 'static> Operator<T> for ShuffleSink<T> {
    #[inline]
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        // The upstream half has no stateful operator (`shuffle` refuses one), so every record
        // derives from one input record.
        let Origin::Input {
            source, offset, index, ..
        } = r.origin
        else {
            debug_assert!(false, "a record without input provenance reached the shuffle");
            tracing::error!("a record without input provenance reached the shuffle; dropped");
            return;
        };
        let id = r.origin.result_id(&cx.pipeline);
        cx.results_total += 1;
        let key_group = (self.key_group)(&r.value);
        if let Some(out) = cx.output.downcast_mut::<Vec<Output<ShuffleOutput<T>>>>() {
            out.push(Output {
                id,
                timestamp: r.timestamp,
                pane: None,
                value: ShuffleOutput {
                    value: r.value,
                    key_group,
                    origin: InputOrigin { source, offset, index },
                },
            });
        } else {
            debug_assert!(false, "output buffer of the wrong type");
        }
    }
    terminal_hooks!();
}
