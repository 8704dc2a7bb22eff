//! Event time and processing time.
//!
//! Both clocks are plain milliseconds since the Unix epoch, as Kinesis' `approximateArrivalTimestamp`
//! and Debezium's `ts_ms` are. The engine never reads a wall clock: processing time is whatever the
//! caller says it is (a record's arrival time, or an explicit tick), so that a run is reproducible.

/// Milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// A length of time in milliseconds.
pub type DurationMs = i64;

/// The smallest timestamp: a watermark that promises nothing.
pub const MIN_TIMESTAMP: Timestamp = i64::MIN;

/// The largest timestamp: the watermark of a finished (bounded) input, which fires every window.
pub const MAX_TIMESTAMP: Timestamp = i64::MAX;
