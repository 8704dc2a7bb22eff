//! The end of a pipeline: results go to the engine's output buffer.

use std::marker::PhantomData;

use super::{Context, Operator};
use crate::record::{Origin, Output, Record};

/// Turns records into [`Output`]s with their deterministic ids.
pub(crate) struct Sink<T> {
    pub(crate) _t: PhantomData<fn(T)>,
}

impl<T: Send + 'static> Operator<T> for Sink<T> {
    #[inline]
    fn process(&mut self, cx: &mut Context, r: Record<T>) {
        let id = r.origin.result_id(&cx.pipeline);
        let pane = match r.origin {
            Origin::Pane { window, pane, .. } => Some((window, pane)),
            _ => None,
        };
        cx.results_total += 1;
        if let Some(out) = cx.output.downcast_mut::<Vec<Output<T>>>() {
            out.push(Output {
                id,
                timestamp: r.timestamp,
                pane,
                value: r.value,
            });
        } else {
            debug_assert!(false, "output buffer of the wrong type");
        }
    }
    terminal_hooks!();
}
