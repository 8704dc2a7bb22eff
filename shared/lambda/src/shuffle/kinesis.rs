//! Helpers of the shuffle stages: stand-ins for the decoder and sink a shuffle stage does not
//! use, and the records of a batch after the committed position.

use shardflow_engine::Output;
use shardflow_stage::{DecodeError, InputRecord, RecordDecoder, ResultSink, ShardBatch, SinkError};

/// The decoder of a stage that decodes its input itself (the downstream of a shuffle): refuses
/// every record.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDecoder;

impl<In> RecordDecoder<In> for NoDecoder {
    fn decode(&self, _data: &[u8]) -> Result<In, DecodeError> {
        Err(DecodeError {
            format: "shuffle",
            reason: "this stage decodes its input itself".into(),
        })
    }
}

/// The result sink of a stage whose results go elsewhere (the upstream of a shuffle writes to the
/// shuffle stream): refuses every result.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSink;

impl<Out: Sync> ResultSink<Out> for NoSink {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        Err(SinkError {
            sink: "none".into(),
            message: format!("{} results for a stage without a result sink", outputs.len()),
        })
    }
}

/// The records of `batch` after the committed position `committed` (the others are redelivered).
pub(crate) fn records_after<'b>(
    batch: &'b ShardBatch,
    committed: Option<&'b shardflow_stage::SequenceNumber>,
) -> impl Iterator<Item = &'b InputRecord> {
    batch
        .records
        .iter()
        .filter(move |r| committed.is_none_or(|c| &r.sequence > c))
}
