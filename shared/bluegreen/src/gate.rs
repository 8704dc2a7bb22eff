//! [`ColourGate`]: a stage's sink that writes the results its colour owns live and the rest to
//! its shadow outputs.

use shardflow_engine::{ClosedBucket, Output};
use shardflow_stage::{ResultSink, SinkError};

use crate::control::ColourControl;
use crate::cutover::{position, Colour, Cutover};

/// A stage's sink in a blue/green deployment: results its colour owns go to `live`, the others
/// to `shadow` (see the module documentation). Idempotent because both sinks are.
pub struct ColourGate<L, S> {
    live: L,
    blue_green: Option<BlueGreen<S>>,
}

/// What a gated stage needs besides its live sink: its colour, the cutover, its shadow sink.
struct BlueGreen<S> {
    colour: Colour,
    control: ColourControl,
    shadow: S,
}

impl<S> BlueGreen<S> {
    /// The current cutover, read from the control table.
    async fn cutover(&self) -> Result<Cutover, SinkError> {
        self.control.load().await.map_err(|e| SinkError {
            sink: "colour-gate".to_owned(),
            message: e.to_string(),
        })
    }
}

impl<L, S> ColourGate<L, S> {
    /// A single-colour deployment: everything goes to `live`.
    pub fn single(live: L) -> Self {
        ColourGate { live, blue_green: None }
    }

    /// The gate of a stage of `colour`: what `control`'s cutover gives it goes to `live`, the rest
    /// to `shadow`.
    pub fn gated(colour: Colour, control: ColourControl, live: L, shadow: S) -> Self {
        ColourGate {
            live,
            blue_green: Some(BlueGreen {
                colour,
                control,
                shadow,
            }),
        }
    }

    /// The live sink.
    pub fn live(&self) -> &L {
        &self.live
    }

    /// The shadow sink (none for a single-colour deployment).
    pub fn shadow(&self) -> Option<&S> {
        self.blue_green.as_ref().map(|b| &b.shadow)
    }
}

impl<Out, L, S> ResultSink<Out> for ColourGate<L, S>
where
    Out: Clone + Send + Sync,
    L: ResultSink<Out>,
    S: ResultSink<Out>,
{
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        let Some(bg) = &self.blue_green else {
            return self.live.emit(outputs).await;
        };
        let cutover = bg.cutover().await?;
        let (mine, others): (Vec<Output<Out>>, Vec<Output<Out>>) = outputs
            .iter()
            .cloned()
            .partition(|o| cutover.owner(position(o)) == bg.colour);
        if !mine.is_empty() {
            self.live.emit(&mine).await?;
        }
        if !others.is_empty() {
            bg.shadow.emit(&others).await?;
        }
        Ok(())
    }

    /// Splits each bucket by owner: the results its colour owns make a bucket for `live`, the
    /// others one for `shadow` (each named by its own smallest id, so both stay idempotent).
    async fn emit_buckets(&self, buckets: &[ClosedBucket<Out>]) -> Result<(), SinkError> {
        let Some(bg) = &self.blue_green else {
            return self.live.emit_buckets(buckets).await;
        };
        let cutover = bg.cutover().await?;
        let mut mine = Vec::new();
        let mut others = Vec::new();
        for bucket in buckets {
            let (m, o): (Vec<Output<Out>>, Vec<Output<Out>>) = bucket
                .results
                .iter()
                .cloned()
                .partition(|r| cutover.owner(position(r)) == bg.colour);
            for (results, to) in [(m, &mut mine), (o, &mut others)] {
                if !results.is_empty() {
                    to.push(ClosedBucket {
                        start: bucket.start,
                        end: bucket.end,
                        results,
                    });
                }
            }
        }
        if !mine.is_empty() {
            self.live.emit_buckets(&mine).await?;
        }
        if !others.is_empty() {
            bg.shadow.emit_buckets(&others).await?;
        }
        Ok(())
    }
}
