//! Running a query over a JSON-lines input: read in large blocks, split lines with `memchr`,
//! decode, feed the engine (one partition, arrival time constant: no processing-time triggers),
//! and write the results as CSV as they are produced.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use shardflow_engine::{Engine, Pipeline, PipelineError};

use crate::csv::{write_row, CsvRow};
use crate::decode::{decode_event, EventDecodeError};
use crate::model::Event;
use crate::projection::{NumbersOnly, Projection};
use crate::queries::{agg, q0, q5, q7, q8, Query};

/// Bytes read from the input at a time: small enough that the block, the lines decoded from it
/// and the CSV being written stay in a core's L2 cache (1 MiB blocks measured 2-5 % slower).
const READ_BLOCK: usize = 128 << 10;
/// Lines longer than this are reported as malformed and skipped (memory stays bounded).
pub const MAX_LINE_BYTES: usize = 16 << 20;
/// How many malformed lines a report keeps (all are counted).
pub const KEPT_ERRORS: usize = 10;
/// Lines between two drains of the engine's output: few enough that the pending results stay in
/// the CPU's cache.
const DRAIN_EVERY: u64 = 256;
/// Output buffered before it is written (like [`READ_BLOCK`], sized for the L2 cache).
const WRITE_CHUNK: usize = 128 << 10;

/// Why a run failed (malformed lines do not fail it: they are counted in the [`RunReport`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Reading the input failed.
    #[error("reading the input: {0}")]
    Read(#[source] std::io::Error),
    /// Writing the results failed.
    #[error("writing the results: {0}")]
    Write(#[source] std::io::Error),
    /// The query's pipeline could not be built.
    #[error("building the pipeline: {0}")]
    Pipeline(#[from] PipelineError),
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Events decoded and processed.
    pub events_in: u64,
    /// Result rows written (the header not counted).
    pub results_out: u64,
    /// Records the engine routed to the late side output.
    pub late_records: u64,
    /// Malformed lines (skipped).
    pub malformed_lines: u64,
    /// The first [`KEPT_ERRORS`] malformed lines' errors.
    pub first_errors: Vec<EventDecodeError>,
    /// Bytes read.
    pub bytes_in: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl RunReport {
    /// Events per second of wall time.
    pub fn events_per_second(&self) -> f64 {
        self.events_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `query` over `input`, writing a header and the result rows as CSV to `output`;
/// `progress` is called now and then with the number of bytes read so far.
pub fn run_query(
    query: Query,
    input: impl Read,
    output: impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<RunReport, RunError> {
    match query {
        Query::Q0 => run_pipeline::<q0::Q0Text, _>(&q0::pipeline()?, input, output, progress),
        Query::Q5 => run_pipeline::<NumbersOnly, _>(&q5::pipeline()?, input, output, progress),
        Query::Q7 => run_pipeline::<NumbersOnly, _>(&q7::pipeline()?, input, output, progress),
        Query::Q8 => run_pipeline::<q8::Q8Text, _>(&q8::pipeline()?, input, output, progress),
        Query::Agg => run_pipeline::<NumbersOnly, _>(&agg::pipeline()?, input, output, progress),
    }
}

/// Runs any pipeline over Nexmark events read from `input`, decoded with the strings `P` keeps
/// (see [`run_query`]).
pub fn run_pipeline<P: Projection, Out: CsvRow + Send + 'static>(
    pipeline: &Pipeline<Event, Out>,
    mut input: impl Read,
    mut output: impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let mut engine = pipeline.engine();
    let partition = engine.partition("input");
    let mut report = RunReport::default();
    let mut out = Vec::with_capacity(WRITE_CHUNK + (64 << 10));
    out.extend_from_slice(Out::HEADER.as_bytes());
    out.push(b'\n');

    let mut sink = |engine: &mut Engine<Event, Out>, out: &mut Vec<u8>, force: bool| -> Result<(), RunError> {
        for result in engine.drain_output_iter() {
            write_row(out, &result.value);
        }
        engine.drain_late();
        if force || out.len() >= WRITE_CHUNK {
            output.write_all(out).map_err(RunError::Write)?;
            out.clear();
        }
        Ok(())
    };

    let mut lines = LineReader::new();
    let mut line_no: u64 = 0;
    loop {
        let n = lines.fill(&mut input).map_err(RunError::Read)?;
        report.bytes_in += n as u64;
        let eof = n == 0;
        while let Some(line) = lines.next_line(eof) {
            line_no += 1;
            let bytes = match line {
                Line::Complete(bytes) => trim_line_end(bytes),
                Line::TooLong => {
                    report.record_error(EventDecodeError::LineTooLong {
                        line: line_no,
                        limit: MAX_LINE_BYTES,
                    });
                    continue;
                }
            };
            if bytes.is_empty() {
                continue;
            }
            match decode_event::<P>(line_no, bytes) {
                Ok(event) => engine.process(partition, line_no, 0, event),
                Err(e) => report.record_error(e),
            }
            if line_no.is_multiple_of(DRAIN_EVERY) {
                sink(&mut engine, &mut out, false)?;
            }
        }
        progress(report.bytes_in);
        if eof {
            break;
        }
    }
    engine.end_partition(partition);
    engine.finish();
    sink(&mut engine, &mut out, true)?;
    output.flush().map_err(RunError::Write)?;

    let metrics = engine.metrics();
    report.events_in = metrics.records_in;
    report.results_out = metrics.results_out;
    report.late_records = metrics.late_records;
    report.elapsed = started.elapsed();
    Ok(report)
}

impl RunReport {
    fn record_error(&mut self, e: EventDecodeError) {
        self.malformed_lines += 1;
        if self.first_errors.len() < KEPT_ERRORS {
            self.first_errors.push(e);
        }
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    match line.last() {
        Some(b'\r') => &line[..line.len() - 1],
        _ => line,
    }
}

/// A line handed out by [`LineReader`].
enum Line<'a> {
    Complete(&'a [u8]),
    /// A line longer than [`MAX_LINE_BYTES`] (its bytes are dropped).
    TooLong,
}

/// Splits a byte stream into lines, reading large blocks into one reusable buffer.
struct LineReader {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    start: usize,
    /// End of the valid bytes.
    end: usize,
    /// Dropping the rest of an overlong line up to its newline.
    skipping: bool,
}

impl LineReader {
    fn new() -> Self {
        LineReader {
            buf: vec![0; READ_BLOCK],
            start: 0,
            end: 0,
            skipping: false,
        }
    }

    /// Reads more bytes (after the unconsumed ones); returns how many (0 at end of input).
    fn fill(&mut self, input: &mut impl Read) -> std::io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // One line fills the buffer: grow it (the line limit bounds this).
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match input.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next line in the buffer, or `None` if more input is needed; at end of input the
    /// remaining bytes are the last line.
    fn next_line(&mut self, eof: bool) -> Option<Line<'_>> {
        loop {
            let pending = &self.buf[self.start..self.end];
            match memchr::memchr(b'\n', pending) {
                Some(i) => {
                    let line_start = self.start;
                    self.start += i + 1;
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if i > MAX_LINE_BYTES {
                        return Some(Line::TooLong);
                    }
                    return Some(Line::Complete(&self.buf[line_start..line_start + i]));
                }
                None if self.skipping => {
                    self.start = self.end;
                    return None;
                }
                None if pending.len() > MAX_LINE_BYTES => {
                    self.start = self.end;
                    self.skipping = !eof;
                    return Some(Line::TooLong);
                }
                None if eof && !pending.is_empty() => {
                    let line_start = self.start;
                    self.start = self.end;
                    return Some(Line::Complete(&self.buf[line_start..self.end]));
                }
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `chunk` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn all_lines(data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut input = Trickle { data, chunk };
        let mut reader = LineReader::new();
        let mut lines = Vec::new();
        loop {
            let n = reader.fill(&mut input).unwrap();
            while let Some(line) = reader.next_line(n == 0) {
                match line {
                    Line::Complete(b) => lines.push(b.to_vec()),
                    Line::TooLong => lines.push(b"<too long>".to_vec()),
                }
            }
            if n == 0 {
                return lines;
            }
        }
    }

    #[test]
    fn lines_split_across_reads_are_reassembled() {
        let data = b"first\nsecond line\n\nlast without newline";
        for chunk in [1, 3, 7, 1000] {
            assert_eq!(
                all_lines(data, chunk),
                vec![
                    b"first".to_vec(),
                    b"second line".to_vec(),
                    Vec::new(),
                    b"last without newline".to_vec()
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_the_next_line_still_read() {
        let mut data = vec![b'x'; MAX_LINE_BYTES + 10];
        data.extend_from_slice(b"\nnext\n");
        let lines = all_lines(&data, READ_BLOCK);
        assert_eq!(lines, vec![b"<too long>".to_vec(), b"next".to_vec()]);
    }
}
