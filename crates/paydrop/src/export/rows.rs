//! The rows of a payout export: a row-by-row reader on top of `csv-async`
//! that finds its columns by name ([`super::columns`]), checks every row as
//! it streams past, exact totals, and the writers of `-o` (CSV or JSON
//! Lines). Nothing here holds more than one row; the totals hold one entry
//! per status, program, currency and month.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::task::{Context, Poll};

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use csv_async::{AsyncReaderBuilder, AsyncWriter, AsyncWriterBuilder, ByteRecord};
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::columns::{self, Found, Mapping, Role};
use super::ExportError;
pub use crate::totals::Tally;

/// The file format of an export (`fileformat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Csv,
    Tsv,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Csv, Format::Tsv];

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
        }
    }

    pub fn delimiter(self) -> u8 {
        match self {
            Format::Csv => b',',
            Format::Tsv => b'\t',
        }
    }
}

/// Totals by a value (a status, a program, a month), then by currency:
/// amounts of different currencies are never added together.
pub type Groups = BTreeMap<String, BTreeMap<String, Tally>>;

/// What a whole export adds up to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub rows: u64,
    /// The header as found.
    pub columns: Vec<String>,
    /// The column used for each role (`id`, `amount`, …).
    pub roles: BTreeMap<String, String>,
    /// Columns no role uses, passed through to `-o` untouched.
    pub extra_columns: Vec<String>,
    /// Zip entries read (0 for a bare CSV/TSV).
    pub entries: u64,
    pub by_status: Groups,
    pub by_program: Groups,
    pub by_currency: Groups,
    /// By `yyyy-MM` of the date column.
    pub by_month: Groups,
}

/// The running totals, one per combination of status, program, currency
/// and month: one hash lookup and one addition a row. The four groupings
/// are added up from these once, at the end. Combinations are few (a
/// handful of statuses, programs and currencies, 36 months for three years).
#[derive(Default)]
struct Running {
    rows: u64,
    /// Key: the four values, each preceded by its length.
    totals: HashMap<Box<[u8]>, Tally, BuildHasherDefault<Fx>>,
    key: Vec<u8>,
}

impl Running {
    /// Adds a row; `Ok(false)` when its values are not UTF-8 text (checked
    /// once per combination: the same bytes are the same text).
    fn add(&mut self, row: &Row<'_>) -> Result<bool, crate::totals::TallyOverflow> {
        self.key.clear();
        for value in [row.status, row.program, row.currency, &row.month[..]] {
            self.key
                .extend_from_slice(&(value.len() as u32).to_le_bytes());
            self.key.extend_from_slice(value);
        }
        let tally = match self.totals.get_mut(&self.key[..]) {
            Some(t) => t,
            None => {
                let values = [row.status, row.program, row.currency, &row.month[..]];
                if values.iter().any(|v| std::str::from_utf8(v).is_err()) {
                    return Ok(false);
                }
                self.totals.entry(self.key.clone().into()).or_default()
            }
        };
        tally.add(row.amount)?;
        self.rows += 1;
        Ok(true)
    }

    fn into_summary(self, mut summary: Summary) -> Result<Summary, crate::totals::TallyOverflow> {
        summary.rows = self.rows;
        for (key, tally) in self.totals {
            let [status, program, currency, month] = split_key(&key);
            for (groups, value) in [
                (&mut summary.by_status, status),
                (&mut summary.by_program, program),
                (&mut summary.by_currency, currency),
                (&mut summary.by_month, month),
            ] {
                groups
                    .entry(value.to_string())
                    .or_default()
                    .entry(currency.to_string())
                    .or_default()
                    .merge(&tally)?;
            }
        }
        Ok(summary)
    }
}

/// The four values of a [`Running`] key.
fn split_key(mut key: &[u8]) -> [&str; 4] {
    std::array::from_fn(|_| {
        let (len, rest) = key.split_at(4);
        let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
        let (value, rest) = rest.split_at(len);
        key = rest;
        std::str::from_utf8(value).expect("keys are made of str")
    })
}

/// A fast non-cryptographic hasher (rustc's `FxHash`) for the short keys
/// of the running totals, which are few and come from the merchant's own
/// export.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().expect("eight bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Where rows go.
pub enum Sink {
    /// Nowhere: only the summary is wanted.
    Discard,
    /// Re-encoded as comma-separated CSV, header first.
    Csv(Box<AsyncWriter<Box<dyn AsyncWrite + Send + Unpin>>>),
    /// One JSON object a line, keyed by the header.
    Jsonl(JsonLines),
}

impl Sink {
    pub fn csv(out: Box<dyn AsyncWrite + Send + Unpin>) -> Sink {
        Sink::Csv(Box::new(
            AsyncWriterBuilder::new()
                .buffer_capacity(256 * 1024)
                .create_writer(out),
        ))
    }

    pub fn jsonl(out: Box<dyn AsyncWrite + Send + Unpin>) -> Sink {
        Sink::Jsonl(JsonLines {
            out: tokio::io::BufWriter::with_capacity(256 * 1024, out),
            keys: Vec::new(),
            line: Vec::new(),
        })
    }

    async fn header(&mut self, header: &ByteRecord) -> Result<(), ExportError> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Csv(w) => w.write_byte_record(header).await.map_err(output),
            Sink::Jsonl(j) => {
                j.keys = header
                    .iter()
                    .map(json_string)
                    .collect::<Result<_, _>>()
                    .map_err(|_| header_not_utf8())?;
                Ok(())
            }
        }
    }

    async fn row(&mut self, record: &ByteRecord, line: u64) -> Result<(), ExportError> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Csv(w) => w.write_byte_record(record).await.map_err(output),
            Sink::Jsonl(j) => j.write(record, line).await,
        }
    }

    /// Flushes everything written.
    pub async fn finish(&mut self) -> Result<(), ExportError> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Csv(w) => w.flush().await.map_err(ExportError::Output),
            Sink::Jsonl(j) => {
                j.out.flush().await.map_err(ExportError::Output)?;
                j.out.shutdown().await.map_err(ExportError::Output)
            }
        }
    }
}

/// The JSON Lines writer.
pub struct JsonLines {
    out: tokio::io::BufWriter<Box<dyn AsyncWrite + Send + Unpin>>,
    /// The header names, JSON-quoted.
    keys: Vec<Vec<u8>>,
    line: Vec<u8>,
}

impl JsonLines {
    async fn write(&mut self, record: &ByteRecord, line: u64) -> Result<(), ExportError> {
        self.line.clear();
        self.line.push(b'{');
        for (i, (key, value)) in self.keys.iter().zip(record.iter()).enumerate() {
            if i > 0 {
                self.line.push(b',');
            }
            self.line.extend_from_slice(key);
            self.line.push(b':');
            let text = std::str::from_utf8(value).map_err(|_| ExportError::Row {
                line,
                column: String::from_utf8_lossy(&key[1..key.len() - 1]).into_owned(),
                value: String::from_utf8_lossy(value).into_owned(),
                reason: "is not UTF-8 text".into(),
            })?;
            serde_json::to_writer(&mut self.line, text).expect("writing to a Vec cannot fail");
        }
        self.line.extend_from_slice(b"}\n");
        self.out
            .write_all(&self.line)
            .await
            .map_err(ExportError::Output)
    }
}

fn json_string(bytes: &[u8]) -> Result<Vec<u8>, std::str::Utf8Error> {
    let text = std::str::from_utf8(bytes)?;
    Ok(serde_json::to_vec(text).expect("a string always serialises"))
}

fn output(e: csv_async::Error) -> ExportError {
    let text = e.to_string();
    match e.into_kind() {
        csv_async::ErrorKind::Io(io) => ExportError::Output(io),
        _ => ExportError::Output(std::io::Error::other(text)),
    }
}

fn header_not_utf8() -> ExportError {
    ExportError::Csv {
        line: 1,
        message: "the header row is not UTF-8 text".into(),
    }
}

/// Where the columns of the roles are in this file.
struct Layout {
    found: Found,
    amount: usize,
    currency: usize,
    date: usize,
    status: usize,
    program: Option<usize>,
    width: usize,
    dates: DateCheck,
}

impl Layout {
    fn of(header: &[String], format: Format, mapping: &Mapping) -> Result<Layout, ExportError> {
        let found = columns::find(header, mapping).map_err(|missing| {
            let other = match format {
                Format::Csv => (b'\t', "tab-separated: request it with --format tsv"),
                Format::Tsv => (b',', "comma-separated: request it with --format csv"),
            };
            let hint = (header.len() == 1 && header[0].as_bytes().contains(&other.0))
                .then(|| format!("; the file looks {}", other.1));
            ExportError::Header {
                missing,
                found: header.to_vec(),
                hint: hint.unwrap_or_default(),
            }
        })?;
        Ok(Layout {
            amount: found.index(Role::Amount),
            currency: found.index(Role::Currency),
            date: found.index(Role::Date),
            status: found.index(Role::Status),
            program: found.optional(Role::Program),
            found,
            width: header.len(),
            dates: DateCheck::default(),
        })
    }
}

/// The values of one row that the summary needs, checked.
struct Row<'a> {
    status: &'a [u8],
    program: &'a [u8],
    currency: &'a [u8],
    month: [u8; 7],
    amount: Decimal,
}

impl Layout {
    fn row<'a>(
        &mut self,
        rec: &'a ByteRecord,
        header: &[String],
        line: u64,
    ) -> Result<Row<'a>, ExportError> {
        let bad = |i: usize, reason: &str| ExportError::Row {
            line,
            column: header[i].clone(),
            value: String::from_utf8_lossy(&rec[i]).chars().take(80).collect(),
            reason: reason.into(),
        };
        let amount = std::str::from_utf8(&rec[self.amount])
            .ok()
            .and_then(|t| Decimal::from_str_exact(t.trim()).ok())
            .ok_or_else(|| bad(self.amount, "is not a decimal amount like 1250.75"))?;
        let month = self.dates.month(&rec[self.date]).ok_or_else(|| {
            bad(
                self.date,
                "is not a date paydrop reads (2023-03-01, 2023-03-01T10:00:00Z or 3/1/2023)",
            )
        })?;
        let currency = rec[self.currency].trim_ascii();
        if currency.is_empty() {
            return Err(bad(self.currency, "is empty"));
        }
        Ok(Row {
            status: rec[self.status].trim_ascii(),
            program: self.program.map_or(&b""[..], |i| rec[i].trim_ascii()),
            currency,
            month,
            amount,
        })
    }

    /// The error for a row whose grouping values are not all UTF-8.
    fn not_text(&self, rec: &ByteRecord, header: &[String], line: u64) -> ExportError {
        let i = [Some(self.status), self.program, Some(self.currency)]
            .into_iter()
            .flatten()
            .find(|&i| std::str::from_utf8(&rec[i]).is_err())
            .unwrap_or(self.date);
        ExportError::Row {
            line,
            column: header[i].clone(),
            value: String::from_utf8_lossy(&rec[i]).chars().take(80).collect(),
            reason: "is not UTF-8 text".into(),
        }
    }
}

/// Reads dates, remembering the day last found valid: exports come
/// sorted by date, so most rows repeat it. The date format of the file is
/// not documented: ISO dates and timestamps (`2023-03-01`,
/// `2023-03-01T10:00:00Z`, any RFC 3339 offset, or none) and the US form
/// Partner Center's reports use on screen (`3/1/2023`, optionally with a
/// time after a space) are read.
#[derive(Default)]
struct DateCheck {
    last: [u8; 10],
}

impl DateCheck {
    /// The `yyyy-MM` of a date cell.
    fn month(&mut self, b: &[u8]) -> Option<[u8; 7]> {
        let b = b.trim_ascii();
        if b.len() >= 10 && b[4] == b'-' {
            let day = &b[..10];
            if day != self.last {
                if !is_date(day) {
                    return None;
                }
                self.last.copy_from_slice(day);
            }
            let time_ok = b.len() == 10
                || is_utc_time(&b[10..])
                || std::str::from_utf8(b).is_ok_and(|s| {
                    DateTime::parse_from_rfc3339(s).is_ok()
                        || NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
                });
            return time_ok.then(|| b[..7].try_into().expect("seven bytes"));
        }
        let text = std::str::from_utf8(b).ok()?;
        let day = text.split(' ').next()?;
        let d = NaiveDate::parse_from_str(day, "%m/%d/%Y").ok()?;
        let m = d.format("%Y-%m").to_string();
        m.as_bytes().try_into().ok()
    }
}

/// The number a run of ASCII digits (at most four) spells.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// `yyyy-mm-dd`, a real day.
fn is_date(b: &[u8]) -> bool {
    let (Some(y), Some(m), Some(d)) = (digits(&b[..4]), digits(&b[5..7]), digits(&b[8..10])) else {
        return false;
    };
    b[4] == b'-' && b[7] == b'-' && NaiveDate::from_ymd_opt(y as i32, m, d).is_some()
}

/// `THH:MM:SS`, an optional fraction, then `Z`: the export's usual time,
/// checked without chrono's slower general parser.
fn is_utc_time(b: &[u8]) -> bool {
    if b.len() < 10 || b[0] != b'T' || b[3] != b':' || b[6] != b':' || b[b.len() - 1] != b'Z' {
        return false;
    }
    let (Some(h), Some(m), Some(s)) = (digits(&b[1..3]), digits(&b[4..6]), digits(&b[7..9])) else {
        return false;
    };
    let fraction = &b[9..b.len() - 1];
    let fraction_ok = fraction.is_empty()
        || (fraction.len() > 1
            && fraction[0] == b'.'
            && fraction[1..].iter().all(u8::is_ascii_digit));
    h < 24 && m < 60 && s < 61 && fraction_ok
}

/// Counts the bytes it passes on and remembers the last one, so that the
/// end of the stream can be told apart from the end of a complete file.
pub(crate) struct Tail<R> {
    inner: R,
    bytes: u64,
    last: Option<u8>,
}

impl<R> Tail<R> {
    pub(crate) fn new(inner: R) -> Self {
        Tail {
            inner,
            bytes: 0,
            last: None,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tail<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let filled = buf.filled();
            if filled.len() > before {
                self.bytes += (filled.len() - before) as u64;
                self.last = filled.last().copied();
            }
        }
        poll
    }
}

/// Reads the rows of one or more files of an export (the entries of a
/// zip), checking their header and totalling every row into one summary.
pub struct RowReader {
    format: Format,
    mapping: Mapping,
    /// The header and where the roles are, from the first file.
    layout: Option<(Vec<String>, Layout)>,
    running: Running,
    entries: u64,
}

impl RowReader {
    pub fn new(format: Format, mapping: Mapping) -> Self {
        RowReader {
            format,
            mapping,
            layout: None,
            running: Running::default(),
            entries: 0,
        }
    }

    /// Reads one file (`entry`: its name inside a zip) into `sink`; the
    /// header goes to `sink` once, and later files must have the same.
    pub async fn read<R>(
        &mut self,
        input: R,
        entry: Option<&str>,
        sink: &mut Sink,
    ) -> Result<(), ExportError>
    where
        R: AsyncRead + Send + Unpin,
    {
        let mut reader = AsyncReaderBuilder::new()
            .delimiter(self.format.delimiter())
            .has_headers(false)
            // Rows of the wrong width are reported here, with their line.
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .create_reader(Tail::new(input));
        let mut record = ByteRecord::new();
        if !reader
            .read_byte_record(&mut record)
            .await
            .map_err(csv_error)?
        {
            return Err(match entry {
                Some(name) => ExportError::Zip(format!("the entry {name} is empty")),
                None => ExportError::Empty,
            });
        }
        let mut header: Vec<String> = record
            .iter()
            .map(|h| std::str::from_utf8(h).map(|s| s.trim().to_string()))
            .collect::<Result<_, _>>()
            .map_err(|_| header_not_utf8())?;
        if let Some(first) = header.first_mut() {
            *first = first.trim_start_matches('\u{feff}').to_string();
        }
        if entry.is_some() {
            self.entries += 1;
        }
        let (header, layout) = match &mut self.layout {
            Some((known, layout)) => {
                if *known != header {
                    return Err(ExportError::Zip(format!(
                        "the entry {} has another header than the first one",
                        entry.unwrap_or("?")
                    )));
                }
                (&*known, layout)
            }
            None => {
                let layout = Layout::of(&header, self.format, &self.mapping)?;
                let names: ByteRecord = header.iter().map(String::as_str).collect();
                sink.header(&names).await?;
                let (h, l) = self.layout.insert((header, layout));
                (&*h, l)
            }
        };
        let running = &mut self.running;
        let at =
            |line: u64| entry.map_or_else(String::new, |e| format!("{e}: ")) + &line.to_string();
        loop {
            let more = reader
                .read_byte_record(&mut record)
                .await
                .map_err(csv_error)?;
            if !more {
                break;
            }
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != layout.width {
                // A short last row without a line break is where the file was cut.
                let mut next = ByteRecord::new();
                let last = !reader
                    .read_byte_record(&mut next)
                    .await
                    .map_err(csv_error)?;
                let tail = reader.get_ref();
                if last && tail.last != Some(b'\n') {
                    return Err(truncated(tail, running.rows + 1, line));
                }
                return Err(ExportError::Fields {
                    line,
                    row: running.rows + 1,
                    found: record.len(),
                    expected: layout.width,
                });
            }
            let row = layout.row(&record, header, line)?;
            let added = running.add(&row).map_err(|e| ExportError::Overflow {
                at: at(line),
                message: e.to_string(),
            })?;
            if !added {
                return Err(layout.not_text(&record, header, line));
            }
            sink.row(&record, line).await?;
        }
        let tail = reader.get_ref();
        if tail.bytes > 0 && tail.last != Some(b'\n') {
            return Err(truncated(tail, running.rows, 0));
        }
        Ok(())
    }

    /// Flushes `sink` and adds everything up.
    pub async fn finish(self, sink: &mut Sink) -> Result<Summary, ExportError> {
        sink.finish().await?;
        let Some((header, layout)) = self.layout else {
            return Err(ExportError::Zip("the archive holds no CSV file".into()));
        };
        let roles = Role::ALL
            .iter()
            .filter_map(|r| {
                layout
                    .found
                    .optional(*r)
                    .map(|i| (r.key().to_string(), header[i].clone()))
            })
            .collect();
        let extra_columns = header
            .iter()
            .enumerate()
            .filter(|(i, _)| !layout.found.uses(*i))
            .map(|(_, h)| h.clone())
            .collect();
        let summary = Summary {
            columns: header,
            roles,
            extra_columns,
            entries: self.entries,
            ..Summary::default()
        };
        self.running
            .into_summary(summary)
            .map_err(|e| ExportError::Overflow {
                at: "the totals".into(),
                message: e.to_string(),
            })
    }
}

/// Reads one CSV/TSV export row by row with the published column names:
/// checks the header, checks and totals every row, and hands it to `sink`.
pub async fn read_rows<R>(input: R, format: Format, sink: &mut Sink) -> Result<Summary, ExportError>
where
    R: AsyncRead + Send + Unpin,
{
    let mut reader = RowReader::new(format, Mapping::default());
    reader.read(input, None, sink).await?;
    reader.finish(sink).await
}

fn truncated<R>(tail: &Tail<R>, row: u64, line: u64) -> ExportError {
    ExportError::Truncated {
        row,
        line,
        bytes: tail.bytes,
    }
}

fn csv_error(e: csv_async::Error) -> ExportError {
    let line = e.position().map_or(0, |p| p.line());
    let message = e.to_string();
    match e.into_kind() {
        csv_async::ErrorKind::Io(io) => ExportError::from_read(io),
        _ => ExportError::Csv { line, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps() {
        for (ok, month) in [
            ("2024-02-29", "2024-02"),
            ("2019-09-25T23:11:55.647Z", "2019-09"),
            ("2019-09-25T23:11:55Z", "2019-09"),
            ("2019-09-25T23:11:55+03:00", "2019-09"),
            ("2019-09-25T23:11:55.1234567", "2019-09"),
            ("9/25/2019", "2019-09"),
            ("12/1/2019 12:00:00 AM", "2019-12"),
        ] {
            let m = DateCheck::default().month(ok.as_bytes());
            assert_eq!(m.as_ref().map(|m| &m[..]), Some(month.as_bytes()), "{ok}");
        }
        for bad in [
            "2023-02-29",
            "2019-09-25T24:11:55Z",
            "2019-09-25T23:11:55.Z",
            "2019-09-25 23:11",
            "25.09.2019",
            "2019-9-25",
            "13/1/2019",
            "",
        ] {
            assert!(
                DateCheck::default().month(bad.as_bytes()).is_none(),
                "{bad}"
            );
        }
    }
}
