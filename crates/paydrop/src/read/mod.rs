//! The one reader of payment files: every command that reads a payment file
//! (validate, the retry-file writer, reconcile, the upload's second reading)
//! sees the same rows at the same lines.
//!
//! [`Records`] applies the pattern's rules: its delimiter; its header rule
//! (`present`, `absent`, or `auto`: the first record is a header when at
//! least half the pattern's column names stand in their places); a UTF-8
//! byte-order mark belongs to the file, not the first cell (UTF-8 patterns);
//! lines end at `\n`, `\r\n` or a lone `\r` (old Mac exports); blank lines
//! are no rows; a record's position is the physical line (1-based) and byte
//! where it starts. Through [`Input`] it also refuses what is not delimited
//! text, bounds the line length and hashes the bytes. Cells stay bytes:
//! decoding them ([`Pattern::decode`]) is the caller's, as only some cells
//! are ever needed as text.
//!
//! The sandbox crate reads payment files on its own and does not use this
//! module: it is the second, independent reading of the provider's pages.

mod input;

use std::io::Read;
use std::sync::Arc;

use csv::ByteRecord;

use crate::pattern::{Encoding, Header, Pattern};

pub use input::{input_error, Input, InputError, Tally};

/// A UTF-8 byte-order mark: part of the file, never of the first cell.
pub(crate) const BOM: &[u8] = b"\xef\xbb\xbf";

/// Longest line accepted unless configured otherwise (`max_line_bytes`).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// What a record read by [`Records::next`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The first record, a header by the pattern's rule; `exact` when it
    /// holds exactly the pattern's column names, in order (case and
    /// surrounding blanks ignored).
    Header { exact: bool },
    /// A payment row, with its position among the data rows (1-based).
    Row(u64),
}

/// The records of a payment file, in file order (see the module comment).
pub struct Records<'p, R> {
    pattern: &'p Pattern,
    rdr: csv::Reader<Lines<R>>,
    rows: u64,
    first: bool,
}

impl<'p, R: Read> Records<'p, Input<R>> {
    /// Reads a whole payment file, checked by [`Input`]: the tally counts and
    /// hashes the bytes read.
    pub fn open(
        pattern: &'p Pattern,
        reader: R,
        max_line_bytes: usize,
    ) -> (Records<'p, Input<R>>, Arc<Tally>) {
        let (input, tally) = Input::new(reader, max_line_bytes);
        (Records::unchecked(pattern, input), tally)
    }
}

impl<'p, R: Read> Records<'p, R> {
    /// Reads without [`Input`]'s checks: for a second pass over a file that
    /// was read through [`Records::open`] once already.
    pub fn unchecked(pattern: &'p Pattern, reader: R) -> Self {
        Records {
            pattern,
            rdr: csv_reader(pattern, Lines::new(reader)),
            rows: 0,
            first: true,
        }
    }

    /// Reads the next record into `rec` (its position set to the line and
    /// byte where it starts); `None` at the end of the file. Errors are the
    /// parser's, or [`InputError`]s inside its I/O errors (see
    /// [`input_error`]).
    pub fn next(&mut self, rec: &mut ByteRecord) -> Result<Option<Kind>, csv::Error> {
        if !self.rdr.read_byte_record(rec)? {
            return Ok(None);
        }
        self.rdr.get_mut().starts.fix(rec);
        if std::mem::take(&mut self.first) {
            if self.pattern.encoding == Encoding::Utf8 {
                strip_bom(rec);
            }
            if let Some(exact) = header(self.pattern, rec) {
                return Ok(Some(Kind::Header { exact }));
            }
        }
        self.rows += 1;
        Ok(Some(Kind::Row(self.rows)))
    }
}

/// Whether `rec`, a file's first record, is a header by the pattern's rule,
/// and if so whether it is exactly the pattern's header.
fn header(pattern: &Pattern, rec: &ByteRecord) -> Option<bool> {
    let cols = &pattern.columns;
    let hits = rec
        .iter()
        .zip(cols)
        .filter(|(f, c)| c.name.as_bytes().eq_ignore_ascii_case(f.trim_ascii()))
        .count();
    let is_header = match pattern.header {
        Header::Present => true,
        Header::Absent => false,
        Header::Auto => hits >= 1.max(cols.len() / 2),
    };
    is_header.then_some(rec.len() == cols.len() && hits == cols.len())
}

/// Takes a UTF-8 byte-order mark off the first cell.
pub(crate) fn strip_bom(rec: &mut ByteRecord) {
    let Some(rest) = rec.get(0).and_then(|f| f.strip_prefix(BOM)) else {
        return;
    };
    let mut clean = ByteRecord::with_capacity(rec.as_slice().len(), rec.len());
    clean.push_field(rest);
    rec.iter().skip(1).for_each(|f| clean.push_field(f));
    clean.set_position(rec.position().cloned());
    *rec = clean;
}

/// The CSV parser with the pattern's delimiter: no header handling (see
/// [`Records`]), any number of fields (a wrong count is the validator's
/// error to report), `\n`, `\r\n` and `\r` ending records.
pub(crate) fn csv_reader<R: Read>(pattern: &Pattern, reader: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(pattern.delimiter)
        .buffer_capacity(64 * 1024)
        .from_reader(reader)
}

/// Where the non-empty physical lines of the input start. The CSV parser's
/// record positions count only `\n` and point just past the previous record's
/// first terminator byte (before the `\n` of a CRLF, before blank lines), so a
/// record's line and first byte are taken from here instead. Line breaks are
/// `\n`, `\r\n` and a lone `\r`, as for the parser. Only the lines read ahead
/// of the parser and those inside the current record are held.
struct LineStarts {
    /// (first byte, 1-based line) of non-empty lines the parser has not passed.
    pending: std::collections::VecDeque<(u64, u64)>,
    bytes: u64,
    breaks: u64,
    /// The next byte starts a line.
    at_start: bool,
    /// The last byte was `\r` (a `\n` after it ends no further line).
    after_cr: bool,
}

impl LineStarts {
    fn new() -> Self {
        LineStarts {
            pending: std::collections::VecDeque::new(),
            bytes: 0,
            breaks: 0,
            at_start: true,
            after_cr: false,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        let mut from = 0;
        let ends = memchr::memchr2_iter(b'\n', b'\r', chunk).chain(std::iter::once(chunk.len()));
        for at in ends {
            if at > from {
                if self.at_start {
                    self.pending
                        .push_back((self.bytes + from as u64, self.breaks + 1));
                }
                self.at_start = false;
                self.after_cr = false;
            }
            let Some(&b) = chunk.get(at) else { break };
            if b == b'\r' || !self.after_cr {
                self.breaks += 1;
            }
            self.after_cr = b == b'\r';
            self.at_start = true;
            from = at + 1;
        }
        self.bytes += chunk.len() as u64;
    }

    /// Moves a record's position to where it really starts: the first
    /// non-empty line at or after the parser's position.
    fn fix(&mut self, rec: &mut ByteRecord) {
        let Some(mut pos) = rec.position().cloned() else {
            return;
        };
        while self.pending.front().is_some_and(|&(b, _)| b < pos.byte()) {
            self.pending.pop_front();
        }
        if let Some(&(byte, line)) = self.pending.front() {
            pos.set_byte(byte).set_line(line);
            rec.set_position(Some(pos));
        }
    }
}

/// A reader that shows every byte it passes on to its [`LineStarts`].
struct Lines<R> {
    inner: R,
    starts: LineStarts,
}

impl<R> Lines<R> {
    fn new(inner: R) -> Self {
        Lines {
            inner,
            starts: LineStarts::new(),
        }
    }
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.starts.feed(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Registry;

    /// (kind, line, byte, first cell) of every record.
    fn read(text: &[u8], header: Header) -> Vec<(Kind, u64, u64, String)> {
        let registry = Registry::load(None).unwrap();
        let mut pattern = registry.get(1).unwrap().clone();
        pattern.header = header;
        let (mut records, _) = Records::open(&pattern, text, 1000);
        let mut rec = ByteRecord::new();
        let mut out = Vec::new();
        while let Some(kind) = records.next(&mut rec).unwrap() {
            let pos = rec.position().unwrap();
            let first = String::from_utf8_lossy(&rec[0]).into_owned();
            out.push((kind, pos.line(), pos.byte(), first));
        }
        out
    }

    #[test]
    fn lines_end_at_lf_crlf_and_cr_and_blank_lines_are_no_rows() {
        for text in [&b"a,b\n\nc,d\n"[..], b"a,b\r\n\r\nc,d\r\n", b"a,b\r\rc,d"] {
            let rows = read(text, Header::Absent);
            let lines: Vec<_> = rows.iter().map(|r| (r.0, r.1, r.3.as_str())).collect();
            assert_eq!(
                lines,
                [(Kind::Row(1), 1, "a"), (Kind::Row(2), 3, "c")],
                "{text:?}"
            );
        }
        assert_eq!(read(b"a,b\r\n\r\nc,d", Header::Absent)[1].2, 7);
    }

    #[test]
    fn the_header_rule_of_the_pattern_and_the_bom() {
        let registry = Registry::load(None).unwrap();
        let names: Vec<&str> = registry
            .get(1)
            .unwrap()
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let header = format!("\u{feff}{}\n4506,x\n", names.join(","));
        let auto = read(header.as_bytes(), Header::Auto);
        assert_eq!(auto[0].0, Kind::Header { exact: true });
        assert_eq!(auto[0].3, names[0]);
        assert_eq!((auto[1].0, auto[1].1), (Kind::Row(1), 2));
        // Half the names is still a header (a misspelt one is reported).
        let half = format!("{},x\n1,2\n", names[..names.len() / 2].join(","));
        assert_eq!(
            read(half.as_bytes(), Header::Auto)[0].0,
            Kind::Header { exact: false }
        );
        assert_eq!(read(b"1,2\n", Header::Auto)[0].0, Kind::Row(1));
        assert_eq!(
            read(b"1,2\n", Header::Present)[0].0,
            Kind::Header { exact: false }
        );
        assert_eq!(read(header.as_bytes(), Header::Absent)[0].0, Kind::Row(1));
    }
}
