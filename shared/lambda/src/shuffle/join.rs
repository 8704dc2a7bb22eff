//! Joins across deployed streams (issue 13): several input streams — one per table, as in
//! Debezium's topic-per-table layout — each read by its own *tagging* upstream stage, all writing
//! into one shuffle stream, which one N-way window-join stage reads.
//!
//! # Topology
//! - **The join** is one split pipeline over [`Tagged`] values: event time and key of the tagged
//!   value, `.shuffle()`, windows, and `join(n, |t| usize::from(t.side), ..)` with one side per
//!   input stream. Its `whole` is the same join in one engine over the union of the inputs (one
//!   partition per stream and shard): the reference the deployed stages reproduce.
//! - **Input `i`** ([`StreamJoin::tagging_upstream`]): an [`UpstreamStage`] running the split's
//!   upstream half on input stream `i` with its own stage name and a [`TaggingDecoder`] of side
//!   `i`, so every value it shuffles says which stream it came from. Its shuffled records' ids and
//!   watermark records name its stage, so the upstream shards of two streams never mix in the
//!   join stage's dedup marks and watermark, even where their shard ids are the same.
//! - **The join stage** ([`StreamJoin::join_downstream`]): a [`DownstreamStage`] running the
//!   downstream half on the shuffle stream and consuming every input's [`Source`]; its watermark is
//!   the minimum over every upstream shard of every input stream (idleness releases silent ones).
//!
//! The downstream protocol's proof ([`shardflow_shuffle::downstream`]) is over upstream batches
//! in any global order, each of one upstream partition: an upstream shard of another stage is one
//! more partition, so the join stage's results are the single engine's over the union, fed the
//! same batches in the same order.
//!
//! # Deployed
//! Each function reads the join's inputs from [`JOIN_INPUTS_ENV`] ([`StreamJoin::from_env`]): a
//! tagging upstream function finds its side by its stage name (`SHARDFLOW_STAGE`), and reads its
//! table's stream (`SHARDFLOW_INPUT_STREAM`), writing to `SHARDFLOW_SHUFFLE_STREAM`; the join
//! function reads the shuffle stream (its `SHARDFLOW_INPUT_STREAM`) and consumes every input.

use serde::de::DeserializeOwned;
use serde::Serialize;
use shardflow_engine::time::DurationMs;
use shardflow_engine::ShuffleOutput;
use shardflow_shuffle::Source;
use shardflow_stage::{
    required_var, stream_name, DeadLetterSink, EnvError, RecordDecoder, ResultSink, Tagged, TaggingDecoder,
};
use thiserror::Error;

use super::{DownstreamStage, NoDecoder, NoSink, UpstreamStage};
use crate::stage::Stage;

/// The join's input streams, in side order: `stage=stream` entries separated by commas (e.g.
/// `join-orders=cdc-orders,join-payments=cdc-payments`); the first is side 0.
pub const JOIN_INPUTS_ENV: &str = "SHARDFLOW_JOIN_INPUTS";

/// The tagging upstream stage of one input of a join across streams: values `T` decoded by `D`,
/// dead letters to `L`.
pub type TaggingUpstream<T, D, L> = UpstreamStage<Tagged<T>, Tagged<T>, TaggingDecoder<D>, L>;

/// One input of a join across streams: the upstream stage that reads it and the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinInput {
    /// The tagging upstream stage's name.
    pub stage: String,
    /// The input stream it reads (name or ARN, as its records' watermark records name it).
    pub stream: String,
}

impl JoinInput {
    /// Input `stream`, read by stage `stage`.
    pub fn new(stage: impl Into<String>, stream: impl Into<String>) -> Self {
        JoinInput {
            stage: stage.into(),
            stream: stream.into(),
        }
    }
}

/// Why a join across streams cannot be set up.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JoinError {
    /// A join needs at least one input.
    #[error("a join across streams needs at least one input")]
    NoInputs,
    /// More inputs than sides fit in a [`Tagged`] value.
    #[error("{0} inputs: a join across streams takes at most 65536")]
    TooManyInputs(usize),
    /// Two inputs name the same stage (their shuffled records would be one upstream's).
    #[error("two inputs of the join are read by stage {0}")]
    DuplicateStage(String),
    /// Two inputs name the same stream.
    #[error("two inputs of the join read stream {0}")]
    DuplicateStream(String),
    /// A stage that is not one of the join's inputs.
    #[error("stage {0} reads none of the join's inputs")]
    UnknownStage(String),
    /// A stage whose decoder tags another side than its input's.
    #[error("stage {stage} tags its values with side {tags}, but its input is side {side}")]
    SideMismatch {
        /// The stage.
        stage: String,
        /// The side its decoder tags.
        tags: u16,
        /// Its input's side.
        side: u16,
    },
}

/// The inputs of a join across deployed streams, side by side (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamJoin {
    inputs: Vec<JoinInput>,
}

impl StreamJoin {
    /// The join of `inputs`, input `i` being side `i`. Refused: no input, more than 65536, or two
    /// inputs with the same stage or stream.
    pub fn new(inputs: impl IntoIterator<Item = JoinInput>) -> Result<Self, JoinError> {
        let inputs: Vec<JoinInput> = inputs.into_iter().collect();
        if inputs.is_empty() {
            return Err(JoinError::NoInputs);
        }
        if inputs.len() > usize::from(u16::MAX) + 1 {
            return Err(JoinError::TooManyInputs(inputs.len()));
        }
        for (i, input) in inputs.iter().enumerate() {
            let before = &inputs[..i];
            if before.iter().any(|b| b.stage == input.stage) {
                return Err(JoinError::DuplicateStage(input.stage.clone()));
            }
            if before.iter().any(|b| b.stream == input.stream) {
                return Err(JoinError::DuplicateStream(input.stream.clone()));
            }
        }
        Ok(StreamJoin { inputs })
    }

    /// The join of [`JOIN_INPUTS_ENV`].
    pub fn from_env() -> Result<Self, EnvError> {
        Self::parse(&required_var(JOIN_INPUTS_ENV)?)
    }

    /// The join of `spec`, [`JOIN_INPUTS_ENV`]'s format.
    pub fn parse(spec: &str) -> Result<Self, EnvError> {
        let invalid = |reason: &'static str| EnvError::Invalid {
            name: JOIN_INPUTS_ENV,
            value: spec.to_owned(),
            reason,
        };
        let inputs = spec
            .split(',')
            .map(|entry| {
                let (stage, stream) = entry
                    .trim()
                    .split_once('=')
                    .ok_or_else(|| invalid("entries are stage=stream"))?;
                let (stage, stream) = (stage.trim(), stream.trim());
                if stage.is_empty() || stream.is_empty() {
                    return Err(invalid("entries are stage=stream, neither empty"));
                }
                Ok(JoinInput::new(stage, stream))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(inputs).map_err(|e| match e {
            JoinError::DuplicateStage(_) | JoinError::DuplicateStream(_) => {
                invalid("each stage and each stream at most once")
            }
            JoinError::NoInputs
            | JoinError::TooManyInputs(_)
            | JoinError::UnknownStage(_)
            | JoinError::SideMismatch { .. } => invalid("between 1 and 65536 entries"),
        })
    }

    /// The number of sides (inputs): the `sides` of the pipeline's `join`.
    pub fn sides(&self) -> usize {
        self.inputs.len()
    }

    /// The inputs, side by side.
    pub fn inputs(&self) -> &[JoinInput] {
        &self.inputs
    }

    /// The side of the input read by `stage`.
    pub fn side_of(&self, stage: &str) -> Result<u16, JoinError> {
        self.inputs
            .iter()
            .position(|i| i.stage == stage)
            .and_then(|i| u16::try_from(i).ok())
            .ok_or_else(|| JoinError::UnknownStage(stage.to_owned()))
    }

    /// The decoder of stage `stage`'s input: `inner`, tagging with its side.
    pub fn decoder<D>(&self, stage: &str, inner: D) -> Result<TaggingDecoder<D>, JoinError> {
        Ok(TaggingDecoder::new(self.side_of(stage)?, inner))
    }

    /// What the join stage consumes: every input's stage and stream.
    pub fn sources(&self) -> Vec<Source> {
        // the upstreams name their input stream by name in what they send, as their batches do
        self.inputs
            .iter()
            .map(|i| Source::new(i.stage.as_str(), stream_name(&i.stream)))
            .collect()
    }

    /// The tagging upstream stage of one input: `stage` (the split's upstream half, named after
    /// one of the join's inputs, decoding with that input's [`StreamJoin::decoder`], with the
    /// input stream's lineage), writing to `shuffle_stream`.
    pub fn tagging_upstream<T, D, L>(
        &self,
        stage: Stage<Tagged<T>, ShuffleOutput<Tagged<T>>, TaggingDecoder<D>, NoSink, L>,
        kinesis: aws_sdk_kinesis::Client,
        shuffle_stream: &str,
    ) -> Result<TaggingUpstream<T, D, L>, JoinError>
    where
        T: Serialize + Send + Sync + 'static,
        D: RecordDecoder<T>,
        L: DeadLetterSink,
    {
        let side = self.side_of(stage.name())?;
        let tags = stage.decoder().side();
        if tags != side {
            return Err(JoinError::SideMismatch {
                stage: stage.name().to_owned(),
                tags,
                side,
            });
        }
        Ok(UpstreamStage::new(stage, kinesis, shuffle_stream))
    }

    /// The N-way join stage: `stage` (the split's downstream half, with the shuffle stream's
    /// lineage) consuming every input, silent upstream shards released after `idleness` ms.
    pub fn join_downstream<T, Out, Sk, L>(
        &self,
        stage: Stage<Tagged<T>, Out, NoDecoder, Sk, L>,
        idleness: Option<DurationMs>,
    ) -> DownstreamStage<Tagged<T>, Out, Sk, L>
    where
        T: DeserializeOwned + Send + 'static,
        Out: Send + 'static,
        Sk: ResultSink<Out>,
        L: DeadLetterSink,
    {
        DownstreamStage::new(stage, self.sources(), idleness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inputs_are_sides_in_order_and_each_stage_and_stream_is_one_input() {
        let join = StreamJoin::parse("j-orders=orders, j-payments = payments").unwrap();
        assert_eq!(join.sides(), 2);
        assert_eq!(join.side_of("j-payments"), Ok(1));
        assert_eq!(join.side_of("j-x"), Err(JoinError::UnknownStage("j-x".into())));
        assert_eq!(
            join.sources(),
            [Source::new("j-orders", "orders"), Source::new("j-payments", "payments")]
        );
        assert_eq!(join.decoder("j-orders", ()).unwrap().side(), 0);
        // deployed, the inputs are ARNs; what the upstreams send names the stream
        let deployed = StreamJoin::parse("j-orders=arn:aws:kinesis:us-east-1:000000000000:stream/orders").unwrap();
        assert_eq!(deployed.sources(), [Source::new("j-orders", "orders")]);
        for bad in ["", "a", "a=", "=s", "a=s,a=t", "a=s,b=s"] {
            assert!(StreamJoin::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            StreamJoin::new([JoinInput::new("a", "s"), JoinInput::new("a", "t")]),
            Err(JoinError::DuplicateStage("a".into()))
        );
        assert_eq!(StreamJoin::new(Vec::new()), Err(JoinError::NoInputs));
    }
}
