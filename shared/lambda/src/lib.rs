//! # shardflow-lambda
//!
//! A shardflow pipeline as a Lambda stage. A function's `main` builds a [`Stage`] — the
//! pipeline, its input decoder, its sink, its dead-letter destination and the state table — and
//! calls [`run`].
//!
//! # Per batch (see [`Stage::handle`])
//! 1. Load the shard's checkpoint (position, engine state, a failing record's attempts) and
//!    restore the engine.
//! 2. Process the batch: skip records at or below the committed position (redelivery), decode
//!    (undecodable records become dead letters), run the engine; records later than the allowed
//!    lateness become dead letters of kind `late`.
//! 3. Emit the results to the sink and the dead letters to their destination. Both are
//!    idempotent by id, so a crash after this step and a redelivery repeat nothing visible.
//! 4. Commit the engine's changed state and the new position in one conditional commit; a
//!    stale or concurrent invocation loses the condition and fails, so Lambda redelivers.
//! 5. Answer with the partial batch response and print one EMF metrics line.
//!
//! If user code panics on a record, the records before it are committed, the record is reported
//! as the batch item failure (Lambda retries from it; bisect-compatible), and its attempts are
//! counted in the checkpoint; after [`Stage::max_attempts`] it is dead-lettered as `poison`, so a
//! poison record never blocks its shard.
#![warn(missing_docs)]

mod sink;
mod stage;

pub use sink::{DeadLetterSink, MemoryDeadLetters, MemorySink, ResultSink, SinkError};
pub use stage::{run, CrashPoint, Stage, StageCrashHook, StageError};
