//! Writing result rows as CSV: a header row, then one line per result (RFC 4180 quoting where a
//! field needs it). Integers are formatted with `itoa`, lines are appended to a reused buffer.

/// A result row that can be written as one CSV line.
pub trait CsvRow {
    /// The header row (column names, comma-separated, no newline).
    const HEADER: &'static str;
    /// Appends the row's fields, in header order, to `line`.
    fn write_csv(&self, line: &mut CsvLine<'_>);
}

/// One CSV line being written into a byte buffer; fields are separated automatically.
pub struct CsvLine<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> CsvLine<'a> {
    /// Starts a line at the end of `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        CsvLine { buf, first: true }
    }

    #[inline]
    fn separate(&mut self) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
    }

    /// Appends a signed integer field.
    #[inline]
    pub fn int(&mut self, v: i64) -> &mut Self {
        self.separate();
        self.buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    /// Appends an unsigned integer field.
    #[inline]
    pub fn uint(&mut self, v: u64) -> &mut Self {
        self.separate();
        self.buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    /// Appends a text field, quoted (with `"` doubled) if it holds a comma, quote or line break.
    #[inline]
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.separate();
        let bytes = s.as_bytes();
        if needs_quotes(bytes) {
            self.buf.push(b'"');
            for &b in bytes {
                if b == b'"' {
                    self.buf.push(b'"');
                }
                self.buf.push(b);
            }
            self.buf.push(b'"');
        } else {
            self.buf.extend_from_slice(bytes);
        }
        self
    }

    /// Ends the line.
    #[inline]
    pub fn end(self) {
        self.buf.push(b'\n');
    }
}

/// Whether a field holds a comma, a quote or a line break (CR or LF).
#[inline]
fn needs_quotes(bytes: &[u8]) -> bool {
    memchr::memchr3(b',', b'"', b'\n', bytes).is_some() || memchr::memchr(b'\r', bytes).is_some()
}

/// Appends `row` as one CSV line to `buf`.
#[inline]
pub fn write_row<R: CsvRow>(buf: &mut Vec<u8>, row: &R) {
    let mut line = CsvLine::new(buf);
    row.write_csv(&mut line);
    line.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_comma_separated_and_quoted_only_when_needed() {
        let mut buf = Vec::new();
        let mut line = CsvLine::new(&mut buf);
        line.int(-7)
            .uint(42)
            .text("Vicky Shultz")
            .text("a,b")
            .text("say \"hi\"");
        line.end();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "-7,42,Vicky Shultz,\"a,b\",\"say \"\"hi\"\"\"\n"
        );
    }

    #[test]
    fn line_breaks_anywhere_in_long_fields_are_quoted_and_other_control_bytes_are_not() {
        for special in [",", "\"", "\n", "\r"] {
            for at in 0..20 {
                let field = format!("{}{special}{}", "a".repeat(at), "b".repeat(19 - at));
                let mut buf = Vec::new();
                let mut line = CsvLine::new(&mut buf);
                line.text(&field);
                assert_eq!(buf.first(), Some(&b'"'), "{field:?}");
            }
        }
        let mut buf = Vec::new();
        let mut line = CsvLine::new(&mut buf);
        line.text("tab\there, no: \u{1}\u{b}\u{c}\u{e}-ok");
        assert_eq!(buf, "\"tab\there, no: \u{1}\u{b}\u{c}\u{e}-ok\"".as_bytes());
        let mut buf = Vec::new();
        CsvLine::new(&mut buf).text("tab\tonly \u{1}\u{b}\u{c}\u{e} éü");
        assert_eq!(buf, "tab\tonly \u{1}\u{b}\u{c}\u{e} éü".as_bytes());
    }
}
