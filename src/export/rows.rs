//! The rows of a payout export: its columns, a row-by-row reader on top of
//! `csv-async` that checks every row as it streams past, exact totals, and
//! the writers of `-o` (CSV or JSON Lines). Nothing here holds more than one
//! row; the totals hold one entry per status, program, currency and month.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::task::{Context, Poll};

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use csv_async::{AsyncReaderBuilder, AsyncWriter, AsyncWriterBuilder, ByteRecord};
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use super::ExportError;

/// The columns paydrop knows, in the order the provider writes them, and
/// whether a file must have them. Files may order them differently and add
/// others (kept as they are); a missing required column is an error.
pub const COLUMNS: [(&str, bool); 12] = [
    ("paymentId", true),
    ("paymentDate", true),
    ("payoutOrderType", true),
    ("programName", true),
    ("enrollmentParticipantId", true),
    ("participantName", false),
    ("currency", true),
    ("paidAmount", true),
    ("payoutStatus", true),
    ("payoutStatusUpdateTS", true),
    ("paymentMethod", false),
    ("payoutOrderId", false),
];

/// The file format of an export (`fileformat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Csv,
    Tsv,
}

impl Format {
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

/// Rows and their exact sum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub rows: u64,
    pub amount: Decimal,
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
    /// Columns paydrop does not know, kept in `-o` output.
    pub extra_columns: Vec<String>,
    pub by_status: Groups,
    pub by_program: Groups,
    pub by_currency: Groups,
    /// By `yyyy-MM` of `paymentDate`.
    pub by_month: Groups,
}

/// A hash map with a fast hasher, for the running totals.
type Fast<V> = HashMap<String, V, Xxh3DefaultBuilder>;

/// The running totals: by status, program, currency and month, then by
/// currency. Hashed while rows stream past; sorted once at the end.
#[derive(Default)]
struct Running {
    rows: u64,
    groups: [Fast<Fast<Tally>>; 4],
}

impl Running {
    fn add(&mut self, row: &Row<'_>) {
        self.rows += 1;
        let keys = [row.status, row.program, row.currency, row.month];
        for (groups, key) in self.groups.iter_mut().zip(keys) {
            // Looked up by &str: a String is made only for a new key.
            let per_currency = match groups.get_mut(key) {
                Some(g) => g,
                None => groups.entry(key.to_string()).or_default(),
            };
            let tally = match per_currency.get_mut(row.currency) {
                Some(t) => t,
                None => per_currency.entry(row.currency.to_string()).or_default(),
            };
            tally.rows += 1;
            tally.amount += row.amount;
        }
    }

    fn into_summary(self, columns: Vec<String>, extra_columns: Vec<String>) -> Summary {
        let sorted = |g: Fast<Fast<Tally>>| -> Groups {
            g.into_iter()
                .map(|(k, per)| (k, per.into_iter().collect()))
                .collect()
        };
        let [by_status, by_program, by_currency, by_month] = self.groups.map(sorted);
        Summary {
            rows: self.rows,
            columns,
            extra_columns,
            by_status,
            by_program,
            by_currency,
            by_month,
        }
    }
}

/// Where rows go.
pub enum Sink {
    /// Nowhere: only the summary is wanted.
    Discard,
    /// Re-encoded as comma-separated CSV, header first.
    Csv(AsyncWriter<Box<dyn AsyncWrite + Send + Unpin>>),
    /// One JSON object a line, keyed by the header.
    Jsonl(JsonLines),
}

impl Sink {
    pub fn csv(out: Box<dyn AsyncWrite + Send + Unpin>) -> Sink {
        Sink::Csv(
            AsyncWriterBuilder::new()
                .buffer_capacity(256 * 1024)
                .create_writer(out),
        )
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
                    .map(|name| json_string(name))
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
    match e.into_kind() {
        csv_async::ErrorKind::Io(io) => ExportError::Output(io),
        other => ExportError::Output(std::io::Error::other(format!("{other:?}"))),
    }
}

fn header_not_utf8() -> ExportError {
    ExportError::Csv {
        line: 1,
        message: "the header row is not UTF-8 text".into(),
    }
}

/// Where the known columns are in this file.
struct Layout {
    payment_date: usize,
    currency: usize,
    paid_amount: usize,
    payout_status: usize,
    program_name: usize,
    status_ts: usize,
    width: usize,
}

impl Layout {
    fn of(header: &[String], format: Format) -> Result<Layout, ExportError> {
        let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let missing: Vec<String> = COLUMNS
            .iter()
            .filter(|(name, required)| *required && find(name).is_none())
            .map(|(name, _)| name.to_string())
            .collect();
        if !missing.is_empty() {
            let other = match format {
                Format::Csv => (b'\t', "tab-separated: request it with --format tsv"),
                Format::Tsv => (b',', "comma-separated: request it with --format csv"),
            };
            let hint = (header.len() == 1 && header[0].as_bytes().contains(&other.0))
                .then(|| format!("; the file looks {}", other.1));
            return Err(ExportError::Header {
                missing,
                found: header.to_vec(),
                hint: hint.unwrap_or_default(),
            });
        }
        let at = |name: &str| find(name).expect("required columns were checked");
        Ok(Layout {
            payment_date: at("paymentDate"),
            currency: at("currency"),
            paid_amount: at("paidAmount"),
            payout_status: at("payoutStatus"),
            program_name: at("programName"),
            status_ts: at("payoutStatusUpdateTS"),
            width: header.len(),
        })
    }
}

/// The values of one row that the summary needs, checked.
struct Row<'a> {
    status: &'a str,
    program: &'a str,
    currency: &'a str,
    month: &'a str,
    amount: Decimal,
}

impl Layout {
    fn row<'a>(&self, rec: &'a ByteRecord, header: &[String], line: u64) -> Result<Row<'a>, ExportError> {
        let bad = |i: usize, reason: &str| ExportError::Row {
            line,
            column: header[i].clone(),
            value: String::from_utf8_lossy(&rec[i]).chars().take(80).collect(),
            reason: reason.into(),
        };
        let text = |i: usize| std::str::from_utf8(&rec[i]).map_err(|_| bad(i, "is not UTF-8 text"));
        let amount_text = text(self.paid_amount)?;
        let amount = Decimal::from_str_exact(amount_text.trim())
            .map_err(|_| bad(self.paid_amount, "is not a decimal amount like 1250.75"))?;
        let date = text(self.payment_date)?;
        if !is_date_or_timestamp(date) {
            return Err(bad(
                self.payment_date,
                "is not an ISO date (2023-03-01) or timestamp",
            ));
        }
        let ts = text(self.status_ts)?;
        if !ts.is_empty() && !is_date_or_timestamp(ts) {
            return Err(bad(
                self.status_ts,
                "is not an ISO timestamp like 2019-09-25T23:11:55.647Z",
            ));
        }
        let currency = text(self.currency)?;
        if currency.is_empty() {
            return Err(bad(self.currency, "is empty"));
        }
        Ok(Row {
            status: text(self.payout_status)?,
            program: text(self.program_name)?,
            currency,
            month: &date[..7],
            amount,
        })
    }
}

/// `2023-03-01`, `2023-03-01T10:00:00Z` (any RFC 3339 offset) or a
/// timestamp without an offset.
fn is_date_or_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 || !is_date(&b[..10]) {
        return false;
    }
    b.len() == 10
        || is_utc_time(&b[10..])
        || DateTime::parse_from_rfc3339(s).is_ok()
        || NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
}

/// The number a run of ASCII digits (at most four) spells.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter()
        .try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
}

/// `yyyy-mm-dd`, a real day.
fn is_date(b: &[u8]) -> bool {
    let (Some(y), Some(m), Some(d)) = (digits(&b[..4]), digits(&b[5..7]), digits(&b[8..10])) else {
        return false;
    };
    b[4] == b'-' && b[7] == b'-' && NaiveDate::from_ymd_opt(y as i32, m, d).is_some()
}

/// `THH:MM:SS`, an optional fraction, then `Z`: the export's usual time,
/// checked without chrono (a third of the parsing time otherwise).
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

/// Reads an export row by row: checks the header, checks and totals every
/// row, and hands it to `sink`.
pub async fn read_rows<R>(input: R, format: Format, sink: &mut Sink) -> Result<Summary, ExportError>
where
    R: AsyncRead + Send + Unpin,
{
    let mut reader = AsyncReaderBuilder::new()
        .delimiter(format.delimiter())
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
        return Err(ExportError::Empty);
    }
    let mut header: Vec<String> = record
        .iter()
        .map(|h| std::str::from_utf8(h).map(|s| s.trim().to_string()))
        .collect::<Result<_, _>>()
        .map_err(|_| header_not_utf8())?;
    if let Some(first) = header.first_mut() {
        *first = first.trim_start_matches('\u{feff}').to_string();
    }
    let layout = Layout::of(&header, format)?;
    let mut summary = Running::default();
    let names: ByteRecord = header.iter().map(String::as_str).collect();
    sink.header(&names).await?;
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
            let last = !reader.read_byte_record(&mut next).await.map_err(csv_error)?;
            let tail = reader.get_ref();
            if last && tail.last != Some(b'\n') {
                return Err(truncated(tail, summary.rows + 1, line));
            }
            return Err(ExportError::Fields {
                line,
                row: summary.rows + 1,
                found: record.len(),
                expected: layout.width,
            });
        }
        summary.add(&layout.row(&record, &header, line)?);
        sink.row(&record, line).await?;
    }
    let tail = reader.get_ref();
    if tail.bytes > 0 && tail.last != Some(b'\n') {
        return Err(truncated(tail, summary.rows, 0));
    }
    sink.finish().await?;
    let extra = header
        .iter()
        .filter(|h| !COLUMNS.iter().any(|(c, _)| h.eq_ignore_ascii_case(c)))
        .cloned()
        .collect();
    Ok(summary.into_summary(header, extra))
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
    match e.into_kind() {
        csv_async::ErrorKind::Io(io) => ExportError::from_read(io),
        other => ExportError::Csv {
            line,
            message: format!("{other:?}"),
        },
    }
}
