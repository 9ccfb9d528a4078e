//! The streaming validator: checks every row of a payment file against its
//! pattern and totals the money, in one pass and in constant memory.
//!
//! It never stops at the first bad row: every error is reported (the first
//! `max_errors` kept in the [`Report`], all of them passed to an optional
//! callback) with its line, column, masked value and a reason a person can act
//! on. Only input that is not a delimited text file at all (empty, compressed,
//! wrongly encoded) is [`Fatal`]. Memory is the CSV buffer, one record, and a
//! 64-bit fingerprint per row for each `unique` column.
//!
//! ```
//! use paydrop::{pattern::Registry, validate::{validate_reader, Hooks, Options}};
//! let registry = Registry::load(None).unwrap();
//! let pattern = registry.get(1).unwrap();
//! let file = "4506349116543218,12/30,100.50,1,Ayşe Yılmaz,T1,,,,MUC-1,,,,,,,\n\
//!             4506349116543211,12/30,1e5,2,Ali Veli,T2,,,,MUC-2,,,,,,,\n";
//! let report = validate_reader(file.as_bytes(), pattern, &Options::default(), Hooks::default()).unwrap();
//! assert_eq!((report.rows_valid, report.rows_invalid), (1, 1));
//! assert_eq!(report.errors[0].line, 2);
//! assert_eq!(report.errors[0].value.as_deref(), Some("450634******3211"));
//! assert_eq!(report.totals.iter().next().unwrap().amount.to_string(), "100.50");
//! ```

pub mod check;
pub mod hint;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use chrono::{NaiveDate, NaiveDateTime};
use csv::ByteRecord;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::bounds::{Limit, Limits};
use crate::currency::Currency;
use crate::pattern::{Column, ColumnType, Encoding, Pattern, Quoting};
use crate::read::{input_error, InputError, Kind, Records};
use crate::sent::{self, ContentHasher};
use crate::totals::Totals;
use crate::{mask, PROVIDER_MAX_ROWS};

use check::Fail;

/// What went wrong in a cell or a row. Stable names, used in reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Header,
    ColumnCount,
    ControlChar,
    Required,
    Length,
    Regex,
    Integer,
    Range,
    Decimal,
    Scale,
    Date,
    DateTime,
    Boolean,
    Enum,
    CardNumber,
    Luhn,
    ExpiryFormat,
    Expired,
    Iban,
    TrIdentity,
    Currency,
    Email,
    Duplicate,
    LineNumber,
    Overflow,
    /// The row takes the file's total above `[submit] max_file_total`.
    FileTotal,
    /// A value holding the delimiter or a quote, in a pattern whose provider
    /// reads no quoting.
    Quoting,
}

/// One problem in one row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// Physical line in the file where the row starts (1-based; the header,
    /// if any, is line 1).
    pub line: u64,
    /// Position among the data rows (1-based); 0 for the header.
    pub row: u64,
    pub column: Option<String>,
    /// The offending value, masked when the column is sensitive.
    pub value: Option<String>,
    pub kind: ErrorKind,
    pub reason: String,
}

impl fmt::Display for RowError {
    /// Masked again: a `RowError` may be built outside the validator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(c) = &self.column {
            write!(f, ", {c}")?;
        }
        if let Some(v) = &self.value {
            write!(f, " '{}'", mask::card_numbers(v))?;
        }
        write!(f, ": {}", mask::card_numbers(&self.reason))
    }
}

/// A file that cannot be validated at all (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error(
        "{path} is {kind}, not a regular file: pass the payment file itself (paydrop does not \
         read from pipes, devices or folders)"
    )]
    NotRegular { path: String, kind: &'static str },
    #[error("{0}")]
    Input(#[from] InputError),
    #[error(
        "{path} is {kind}, not a CSV file: this is a spreadsheet; open it in the spreadsheet \
         program and save it as \"CSV UTF-8\" (File > Save As), then pass the .csv file"
    )]
    Spreadsheet { path: String, kind: &'static str },
    #[error("the file is empty (0 bytes): there is nothing to submit")]
    Empty,
    #[error("the file has no payment rows{}", if *header { " (only a header row)" } else { "" })]
    NoRows { header: bool },
    #[error(
        "line {line}, column {column}: not valid UTF-8 ({detail}); if the file comes from a \
         Turkish bank export it is probably Windows-1254: use a pattern with \
         encoding = \"windows-1254\""
    )]
    Encoding {
        line: u64,
        column: String,
        detail: String,
    },
    #[error("cannot read the file: {0}")]
    Io(io::Error),
}

/// How to validate.
#[derive(Clone, Debug)]
pub struct Options {
    /// Errors kept in the report; the rest are only counted.
    pub max_errors: usize,
    /// Cards that expired before this date's month are refused.
    pub as_of: NaiveDate,
    /// The currency of every row when the pattern has no currency column.
    pub currency: Currency,
    /// Rows per submission; larger files are split into parts this size.
    pub split_rows: u64,
    /// Longest line accepted, in bytes.
    pub max_line_bytes: usize,
    /// What the `line_number` column of the first row must be; `None` takes
    /// the first row's value (a provider receiving one part of a split file
    /// sees it start at 150,001).
    pub first_line_number: Option<i64>,
    /// The most a row may carry and a file may total (`[submit]
    /// max_row_amount` / `max_file_total`).
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_errors: 1000,
            as_of: crate::provider_today(),
            currency: Currency::lookup("TRY").expect("TRY is in the table"),
            split_rows: PROVIDER_MAX_ROWS,
            max_line_bytes: crate::read::DEFAULT_MAX_LINE_BYTES,
            first_line_number: Some(1),
            limits: Limits::default(),
        }
    }
}

/// Optional callbacks: every error (not just the first `max_errors`), and
/// progress in bytes read.
#[derive(Default)]
pub struct Hooks<'a> {
    pub on_error: Option<&'a mut dyn FnMut(&RowError)>,
    pub progress: Option<&'a dyn Fn(u64)>,
    /// Every valid row's identity, in file order: what the ledger remembers
    /// of each payment it sends.
    pub on_row: Option<&'a mut dyn FnMut(&ValidRow<'_>)>,
}

/// What identifies one valid row (see [`Hooks::on_row`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRow<'r> {
    /// The part (1-based) the row is sent in.
    pub part: u32,
    /// Position among the data rows (1-based).
    pub row: u64,
    /// The row's `line_number` cell, when the pattern has one.
    pub line_number: Option<i64>,
    /// The row's payment code cell (see [`Column::payment_code`]), when the
    /// pattern has one.
    pub code: Option<Cow<'r, str>>,
    /// The row's amount and currency, when the pattern has an amount.
    pub amount: Option<(Currency, Decimal)>,
    /// The fingerprint the ledger looks the row up under: its payment
    /// code's, or the row's own when the pattern has no payment code (see
    /// the crate's `sent` module).
    pub identity: i64,
    /// The card number masked to its first 6 and last 4 digits
    /// ([`Pattern::masked_card`]), to name the row in listings.
    pub card: Option<String>,
}

/// A consecutive run of at most `split_rows` rows: one submission.
#[derive(Clone, Debug, Serialize)]
pub struct Part {
    /// 1-based.
    pub index: u32,
    pub rows: u64,
    /// First data row (1-based) and the line it starts on.
    pub first_row: u64,
    pub first_line: u64,
    /// Byte range of the part's rows in the file (a header row, if any, is
    /// before it and is not sent).
    pub byte_start: u64,
    pub byte_end: u64,
    pub totals: Totals,
    /// sha256 (hex) of the part's rows as sent (see the crate's `sent` module): the
    /// upload checks the bytes it reads against it.
    pub content_sha256: String,
}

/// The outcome of validating one file.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub file: Option<String>,
    pub pattern: u16,
    pub pattern_name: String,
    pub bytes: u64,
    /// sha256 (hex) of the file's bytes exactly as they are on disk.
    pub sha256: String,
    /// sha256 (hex) of the payment rows as sent: no header, fields joined
    /// with the delimiter, `\n` after every row (see the crate's `sent` module). The
    /// content identity the ledger never sends twice: a copy with a header,
    /// CRLF line ends or no final newline has the same.
    pub content_sha256: String,
    pub as_of: NaiveDate,
    /// Whether the first row was a header, and its length in bytes.
    pub header_row: bool,
    pub header_bytes: u64,
    pub rows_read: u64,
    pub rows_valid: u64,
    pub rows_invalid: u64,
    pub errors_total: u64,
    pub errors: Vec<RowError>,
    /// Errors counted but not kept (beyond `max_errors`).
    pub errors_not_shown: u64,
    /// Totals of the valid rows.
    pub totals: Totals,
    pub split_rows: u64,
    pub parts: Vec<Part>,
    pub warnings: Vec<String>,
}

impl Report {
    /// True when every row passed.
    pub fn is_valid(&self) -> bool {
        self.errors_total == 0 && self.rows_read > 0
    }
}

/// Validates a file on disk. Duplicates are reported with the line of their
/// first occurrence (a second, cheap pass that runs only when there are
/// duplicates).
pub fn validate_file(
    path: &Path,
    pattern: &Pattern,
    opts: &Options,
    hooks: Hooks<'_>,
) -> Result<Report, Fatal> {
    let open = || open_regular(path);
    let head = hint::head(open()?).map_err(Fatal::Io)?;
    if let Some(kind) = hint::spreadsheet(&head, path) {
        return Err(Fatal::Spreadsheet {
            path: mask::card_numbers(&crate::names::path(path)),
            kind,
        });
    }
    let mut validator = Validator::new(pattern, opts, hooks);
    validator.run(open()?)?;
    if !validator.duplicates.is_empty() {
        validator.name_first_occurrences(open()?)?;
    }
    let mut report = validator.finish()?;
    // Shown, never opened again: sanitised and masked like any printed text.
    report.file = Some(mask::card_numbers(&crate::names::path(path)));
    Ok(report)
}

/// Opens a file for reading, refusing anything but a regular file at once: a
/// FIFO would block the read until some writer comes, a device may never
/// end, a folder cannot be read. The type is looked at before opening (opening
/// some devices does something) and again on the open file (the name may have
/// been replaced in between), which is opened non-blocking for that reason.
pub fn open_regular(path: &Path) -> Result<File, Fatal> {
    let shown = || crate::names::path(path);
    let open_error = |source| Fatal::Open {
        path: shown(),
        source,
    };
    let not_regular = |t: std::fs::FileType| {
        (!t.is_file()).then(|| Fatal::NotRegular {
            path: shown(),
            kind: file_kind(t),
        })
    };
    if let Some(e) = not_regular(std::fs::metadata(path).map_err(open_error)?.file_type()) {
        return Err(e);
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Reading a regular file ignores O_NONBLOCK.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(open_error)?;
    match not_regular(file.metadata().map_err(open_error)?.file_type()) {
        Some(e) => Err(e),
        None => Ok(file),
    }
}

/// What a non-regular file is, for messages ("a FIFO (named pipe)").
pub fn file_kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Validates any reader (first occurrences of duplicates are not named).
pub fn validate_reader<R: Read + Send>(
    reader: R,
    pattern: &Pattern,
    opts: &Options,
    hooks: Hooks<'_>,
) -> Result<Report, Fatal> {
    let mut validator = Validator::new(pattern, opts, hooks);
    validator.run(reader)?;
    validator.finish()
}

/// What the parsing side hands over: the header (with whether it is exactly
/// the pattern's), then batches of rows; or the error that ended parsing.
enum Parsed {
    Header(ByteRecord, bool),
    Rows(Vec<ByteRecord>),
}
type Batch = Result<Parsed, csv::Error>;

/// Records a batch, and batches queued between the parser and the checks
/// (a few hundred KiB in all).
const BATCH_RECORDS: usize = 512;
const BATCHES_IN_FLIGHT: usize = 4;

/// The parsing side of [`Validator::run`]: reads records into recycled
/// batches and sends them on, in order, ending with the parser's error if
/// any. Stops early when the checking side hangs up (it hit a fatal error).
fn parse_batches<R: Read>(
    mut records: Records<'_, R>,
    full: SyncSender<Batch>,
    empty: Receiver<Vec<ByteRecord>>,
) {
    let mut batch: Vec<ByteRecord> = Vec::with_capacity(BATCH_RECORDS);
    let mut n = 0;
    loop {
        if batch.len() <= n {
            batch.push(ByteRecord::new());
        }
        match records.next(&mut batch[n]) {
            Ok(Some(Kind::Row(_))) => {
                n += 1;
                if n == BATCH_RECORDS {
                    batch.truncate(n);
                    if full.send(Ok(Parsed::Rows(batch))).is_err() {
                        return;
                    }
                    batch = empty.try_recv().unwrap_or_default();
                    n = 0;
                }
            }
            Ok(Some(Kind::Header { exact })) => {
                let header = std::mem::take(&mut batch[n]);
                if full.send(Ok(Parsed::Header(header, exact))).is_err() {
                    return;
                }
            }
            Ok(None) => {
                batch.truncate(n);
                if n > 0 {
                    let _ = full.send(Ok(Parsed::Rows(batch)));
                }
                return;
            }
            Err(e) => {
                batch.truncate(n);
                if n == 0 || full.send(Ok(Parsed::Rows(batch))).is_ok() {
                    let _ = full.send(Err(e));
                }
                return;
            }
        }
    }
}

/// The uniqueness index of one column: a set of 64-bit fingerprints (already
/// well-mixed xxh3 hashes, used as their own hash) in one open-addressing
/// table with linear probing, at most 3/4 full: 8 bytes a slot, 11–21 bytes a
/// row. One array instead of hashbrown's control bytes plus slots means one
/// cache miss per new value instead of two, which was ~15% of the validator's
/// time on a million rows.
#[derive(Default)]
struct FingerprintSet {
    /// 0 marks an empty slot; a power of two long (or empty).
    slots: Vec<u64>,
    len: usize,
    /// Whether the fingerprint 0 is in the set (it cannot live in a slot).
    zero: bool,
}

impl FingerprintSet {
    /// Adds `fp`; false when it was already present.
    fn insert(&mut self, fp: u64) -> bool {
        if fp == 0 {
            return !std::mem::replace(&mut self.zero, true);
        }
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = fp as usize & mask;
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = fp;
                    self.len += 1;
                    return true;
                }
                s if s == fp => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Starts loading the slot that inserting `fp` will probe first, so that
    /// its cache miss overlaps the row's other checks instead of stalling the
    /// insert (the table is far larger than the caches).
    fn prefetch(&self, fp: u64) {
        let mask = self.slots.len().wrapping_sub(1);
        if let Some(slot) = self.slots.get(fp as usize & mask) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is a hint: it reads nothing the program can
            // see and cannot fault; `slot` is a live reference besides.
            #[allow(unsafe_code)]
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>((slot as *const u64).cast());
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = slot;
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(1024);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        let mask = size - 1;
        for fp in old.into_iter().filter(|&fp| fp != 0) {
            let mut i = fp as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = fp;
        }
    }
}

/// Seeds the fingerprint with the column so that two unique columns can share
/// nothing by accident.
fn fingerprint(column: usize, value: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(value, column as u64)
}

/// A duplicate kept in the report, waiting to learn its first occurrence.
struct Duplicate {
    error_index: usize,
    column: usize,
    fingerprint: u64,
}

/// What a cell held, when it matters beyond the row.
enum Value {
    Other,
    Amount(Decimal),
    Currency(Currency),
    Integer(i64),
}

struct Validator<'a, 'h> {
    pattern: &'a Pattern,
    opts: &'a Options,
    hooks: Hooks<'h>,
    report: Report,
    records: u64,
    uniques: Vec<(usize, FingerprintSet)>,
    duplicates: Vec<Duplicate>,
    part_open: bool,
    /// The first row's line number, once known.
    line_base: Option<i64>,
    /// The money bounds of each currency met so far.
    bounds: Vec<CurrencyBounds>,
    /// The content identity of the rows as sent (see `crate::sent`).
    content: Option<ContentHasher>,
    /// Set at the first row of one field: the other delimiter that would
    /// split it into the pattern's columns, if any.
    delimiter_hint: Option<Option<u8>>,
}

/// The bounds in force for one currency, resolved once per file.
struct CurrencyBounds {
    currency: Currency,
    /// The most one row may carry: the pattern's `max` or the configured bound.
    row: Limit,
    file_total: Limit,
    /// The file total went above the bound (reported once).
    exceeded: bool,
}

impl<'a, 'h> Validator<'a, 'h> {
    fn new(pattern: &'a Pattern, opts: &'a Options, hooks: Hooks<'h>) -> Self {
        let uniques = pattern
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.unique)
            .map(|(i, _)| (i, FingerprintSet::default()))
            .collect();
        Validator {
            pattern,
            opts,
            hooks,
            report: Report {
                file: None,
                pattern: pattern.id,
                pattern_name: pattern.name.clone(),
                bytes: 0,
                sha256: String::new(),
                content_sha256: String::new(),
                as_of: opts.as_of,
                header_row: false,
                header_bytes: 0,
                rows_read: 0,
                rows_valid: 0,
                rows_invalid: 0,
                errors_total: 0,
                errors: Vec::new(),
                errors_not_shown: 0,
                totals: Totals::default(),
                split_rows: opts.split_rows.max(1),
                parts: Vec::new(),
                warnings: Vec::new(),
            },
            records: 0,
            uniques,
            duplicates: Vec::new(),
            part_open: false,
            line_base: opts.first_line_number,
            bounds: Vec::new(),
            content: Some(ContentHasher::new()),
            delimiter_hint: None,
        }
    }

    /// One pass over the input. Parsing (and hashing, see [`Input`]) runs on
    /// a thread of its own, handing records over in batches; the checks run
    /// here, in file order, so errors, hooks and totals are exactly those of
    /// a sequential pass. With a second core free this takes the validator
    /// from ~30% to ~58% of the bare parser's throughput (`cargo bench
    /// --bench validate`); on one core it costs nothing measurable.
    fn run<R: Read + Send>(&mut self, reader: R) -> Result<(), Fatal> {
        let (records, tally) = Records::open(self.pattern, reader, self.opts.max_line_bytes);
        let (full_tx, full_rx) = sync_channel::<Batch>(BATCHES_IN_FLIGHT);
        let (empty_tx, empty_rx) = sync_channel::<Vec<ByteRecord>>(BATCHES_IN_FLIGHT + 2);
        std::thread::scope(|s| -> Result<(), Fatal> {
            // Owned here so that an early return hangs up on the parser.
            let full_rx = full_rx;
            std::thread::Builder::new()
                .name("paydrop-parse".into())
                .spawn_scoped(s, move || parse_batches(records, full_tx, empty_rx))
                .map_err(Fatal::Io)?;
            for parsed in &full_rx {
                let batch = match parsed.map_err(csv_fatal)? {
                    Parsed::Header(rec, exact) => {
                        self.header(&rec, exact);
                        continue;
                    }
                    Parsed::Rows(batch) => batch,
                };
                for rec in &batch {
                    self.record(rec)?;
                    if self.records.is_multiple_of(8192) {
                        if let Some(progress) = self.hooks.progress {
                            progress(tally.bytes());
                        }
                    }
                }
                let _ = empty_tx.try_send(batch);
            }
            Ok(())
        })?;
        self.report.bytes = tally.bytes();
        self.report.sha256 = tally.sha256_hex().unwrap_or_default();
        if let Some(progress) = self.hooks.progress {
            progress(tally.bytes());
        }
        if let Some(content) = self.content.take() {
            let mut content = content;
            if let Some(part) = self.report.parts.last_mut() {
                part.byte_end = self.report.bytes;
                part.content_sha256 = content.end_part();
            }
            self.report.content_sha256 = content.finish();
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Report, Fatal> {
        if self.report.bytes == 0 {
            return Err(Fatal::Empty);
        }
        if self.report.rows_read == 0 {
            return Err(Fatal::NoRows {
                header: self.report.header_row,
            });
        }
        let split = self.report.split_rows;
        if self.report.rows_read > split {
            let ranges: Vec<String> = self
                .report
                .parts
                .iter()
                .map(|p| format!("{}–{}", p.first_row, p.first_row + p.rows - 1))
                .collect();
            self.report.warnings.push(format!(
                "{} rows is more than {} per submission: the file will be submitted as {} parts \
                 (rows {})",
                self.report.rows_read,
                split,
                self.report.parts.len(),
                ranges.join(", ")
            ));
        }
        Ok(self.report)
    }

    fn record(&mut self, rec: &ByteRecord) -> Result<(), Fatal> {
        self.records += 1;
        let line = rec.position().map_or(0, |p| p.line());
        if self.records == 1 && !self.report.header_row && self.header_like(rec, line) {
            return Ok(());
        }
        self.row(rec, line)
    }

    /// Takes note of the header row, and reports it unless it is `exact`ly
    /// the pattern's (see [`Kind::Header`]).
    fn header(&mut self, rec: &ByteRecord, exact: bool) {
        self.report.header_row = true;
        if exact {
            return;
        }
        let cols = &self.pattern.columns;
        let got: Vec<String> = rec
            .iter()
            .map(|f| mask::card_numbers(&String::from_utf8_lossy(f)))
            .collect();
        let want: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        let reason = format!(
            "header does not match pattern {}: expected {}, found {}",
            self.pattern.id,
            want.join(","),
            got.join(",")
        );
        self.header_error(rec.position().map_or(0, |p| p.line()), reason);
    }

    /// An error of the header row (no column, no value).
    fn header_error(&mut self, line: u64, reason: String) {
        self.error(RowError {
            line,
            row: 0,
            column: None,
            value: None,
            kind: ErrorKind::Header,
            reason,
        });
    }

    /// A first record that the pattern does not read as a header but that
    /// looks like one is reported once, as a header error, instead of as a
    /// cascade of per-cell errors (and is not counted as a payment row, so
    /// the rows after it are numbered as the provider would number them).
    fn header_like(&mut self, rec: &ByteRecord, line: u64) -> bool {
        let cols = &self.pattern.columns;
        let fails = rec.len() != cols.len()
            || cols.iter().zip(rec.iter()).any(|(c, f)| {
                (f.is_empty() && c.required) || (!f.is_empty() && self.check(c, f).is_err())
            });
        let cells: Vec<&[u8]> = rec.iter().collect();
        let Some(reason) = hint::header_message(&cells, fails, self.pattern) else {
            return false;
        };
        self.report.header_row = true;
        self.header_error(line, reason);
        true
    }

    /// The reason of a row whose field count is wrong, with the delimiter
    /// hint when a row of one field would fit another delimiter: said in
    /// full at the first such row (and as a warning), referred to after.
    fn column_count_reason(&mut self, rec: &ByteRecord) -> String {
        let pattern = self.pattern;
        let want = pattern.columns.len();
        let other = (rec.len() == 1 && want > 1)
            .then(|| hint::other_delimiter(rec.get(0).unwrap_or_default(), pattern))
            .flatten();
        let first = self.delimiter_hint.is_none() && rec.len() == 1;
        if first {
            self.delimiter_hint = Some(other);
        }
        let hinted = other.is_some() && self.delimiter_hint == Some(other);
        let fields = match rec.len() {
            1 => "1 field".to_string(),
            n => format!("{n} fields"),
        };
        match other {
            Some(d) if first => {
                let message = hint::delimiter_message(d, pattern);
                self.report.warnings.push(message.clone());
                message
            }
            Some(d) if !hinted => hint::delimiter_message(d, pattern),
            Some(d) => format!(
                "has {fields}; with {} it would have {want} (see the first such row: the file \
                 looks delimited by {})",
                hint::shown(d),
                hint::shown(d)
            ),
            None => format!(
                "has {fields}; pattern {} has {want} columns (check the delimiter {} and that \
                 quotes are closed)",
                pattern.id,
                hint::shown(pattern.delimiter)
            ),
        }
    }

    fn row(&mut self, rec: &ByteRecord, line: u64) -> Result<(), Fatal> {
        let pattern = self.pattern;
        let row = self.report.rows_read + 1;
        self.report.rows_read = row;
        let start = rec.position().map_or(0, |p| p.byte());
        if self.report.header_row && row == 1 {
            self.report.header_bytes = start;
        }
        self.open_part(row, line, start);
        if let Some(content) = self.content.as_mut() {
            content.row(pattern, rec);
        }

        if rec.len() != pattern.columns.len() {
            let reason = self.column_count_reason(rec);
            self.error(RowError {
                line,
                row,
                column: None,
                value: None,
                kind: ErrorKind::ColumnCount,
                reason,
            });
            self.report.rows_invalid += 1;
            return Ok(());
        }
        // encoding_rs validates these mostly-ASCII rows with scattered Turkish
        // letters about 4× faster than std; std only names the bad byte.
        let bytes = rec.as_slice();
        // A valid whole can still hide a delimiter inside a character: then a
        // field starts with a continuation byte.
        if pattern.encoding == Encoding::Utf8
            && (encoding_rs::Encoding::utf8_valid_up_to(bytes) != bytes.len()
                || rec
                    .iter()
                    .any(|f| f.first().is_some_and(|b| (0x80..0xc0).contains(b))))
        {
            if let Some(fatal) = encoding_fatal(pattern, rec, line) {
                return Err(fatal);
            }
        }

        for (col, set) in &self.uniques {
            set.prefetch(fingerprint(*col, rec.get(*col).unwrap_or_default()));
        }

        let errors_before = self.report.errors_total;
        // NUL and line breaks never belong in a payment field; a line break
        // usually means a quote was left open and swallowed the next lines.
        let control = memchr::memchr3(0, b'\n', b'\r', rec.as_slice()).map(|pos| {
            let col = field_at(rec, pos);
            let f = rec.get(col).unwrap_or_default();
            let reason = if f.contains(&0) {
                "contains a NUL byte (0x00): the file is damaged or not text".to_string()
            } else {
                // Line breaks (`\n`, `\r\n`, lone `\r`) followed by more of the
                // field: each starts a line that the open quote swallowed.
                let breaks = (0..f.len())
                    .filter(|&i| f[i] == b'\r' || (f[i] == b'\n' && (i == 0 || f[i - 1] != b'\r')))
                    .count();
                let trailing = usize::from(f.ends_with(b"\n") || f.ends_with(b"\r"));
                let lines = breaks.saturating_sub(trailing);
                format!(
                    "contains a line break: a quote opened here is probably not closed \
                     (it swallowed {lines} following line(s))"
                )
            };
            (col, reason)
        });
        if let Some((col, reason)) = &control {
            self.cell_error(rec, line, row, *col, ErrorKind::ControlChar, reason.clone());
        }
        // The record's data holds the cells without delimiters: one search
        // tells whether any cell needs a look.
        let plain = pattern.quoting == Quoting::Rfc4180
            || memchr::memchr2(pattern.delimiter, b'"', rec.as_slice()).is_none();

        let mut amount = None;
        let mut currency = None;
        let mut line_number = None;
        // The record has exactly one field per column (checked above).
        for (i, (column, f)) in pattern.columns.iter().zip(rec.iter()).enumerate() {
            if control.as_ref().is_some_and(|(c, _)| *c == i) {
                continue;
            }
            if f.is_empty() {
                if column.required {
                    self.cell_error(
                        rec,
                        line,
                        row,
                        i,
                        ErrorKind::Required,
                        "is required but empty".into(),
                    );
                }
                continue;
            }
            // A value that fails its type says so first (an amount with
            // thousands grouping is a bad amount before it is a delimiter).
            let checked = match self.check(column, f) {
                Ok(_) if !plain && unquotable(f, pattern.delimiter).is_some() => {
                    Err(quoting_fail(f, pattern.delimiter))
                }
                other => other,
            };
            match checked {
                Ok(Value::Amount(d)) => amount = Some(d),
                Ok(Value::Currency(c)) => currency = Some(c),
                Ok(Value::Integer(n)) if column.line_number => {
                    line_number = Some(n);
                    let base = *self.line_base.get_or_insert(n - (row as i64 - 1));
                    let expected = base + (row as i64 - 1);
                    if n != expected {
                        self.cell_error(
                            rec,
                            line,
                            row,
                            i,
                            ErrorKind::LineNumber,
                            format!(
                                "is {n} but this is data row {row}, so it must be {expected}; {} \
                                 counts the rows {base}, {}, {}, …",
                                column.name,
                                base + 1,
                                base + 2
                            ),
                        );
                    }
                }
                Ok(_) => {}
                Err((kind, reason)) => {
                    self.cell_error(rec, line, row, i, kind, reason);
                    continue;
                }
            }
            if column.unique {
                self.check_unique(rec, line, row, i, f);
            }
        }

        let currency = currency.unwrap_or(self.opts.currency);
        if self.report.errors_total == errors_before {
            if let Some(amount) = amount {
                self.add_amount(rec, line, row, currency, amount);
            }
        }
        if self.report.errors_total == errors_before {
            self.report.rows_valid += 1;
            if let Some(on_row) = self.hooks.on_row.as_mut() {
                let code = pattern
                    .payment_code_column()
                    .and_then(|i| rec.get(i))
                    .map(|f| pattern.decode(f));
                let identity = sent::row_identity(pattern, rec, code.as_deref());
                on_row(&ValidRow {
                    part: self.report.parts.last().map_or(1, |p| p.index),
                    row,
                    line_number,
                    code,
                    amount: amount.map(|a| (currency, a)),
                    identity,
                    card: pattern.masked_card(rec),
                });
            }
        } else {
            self.report.rows_invalid += 1;
        }
        Ok(())
    }

    fn open_part(&mut self, row: u64, line: u64, start: u64) {
        // Rows arrive one by one from row 1, so a part is full exactly when
        // `(row - 1) % split == 0`; comparing counts spares a division a row.
        let split = self.report.split_rows;
        let full = self.report.parts.last().is_none_or(|p| p.rows >= split);
        debug_assert!(!self.part_open || full == (row - 1).is_multiple_of(split));
        if !self.part_open || full {
            if let Some(prev) = self.report.parts.last_mut() {
                prev.byte_end = start;
                if let Some(content) = self.content.as_mut() {
                    prev.content_sha256 = content.end_part();
                }
            }
            self.report.parts.push(Part {
                index: self.report.parts.len() as u32 + 1,
                rows: 0,
                first_row: row,
                first_line: line,
                byte_start: start,
                byte_end: start,
                totals: Totals::default(),
                content_sha256: String::new(),
            });
            self.part_open = true;
        }
        if let Some(part) = self.report.parts.last_mut() {
            part.rows += 1;
        }
    }

    fn add_amount(
        &mut self,
        rec: &ByteRecord,
        line: u64,
        row: u64,
        currency: Currency,
        amount: Decimal,
    ) {
        // Only the error paths need the column (a search over the columns).
        let col = || self.pattern.amount_column().unwrap_or(0);
        // Normalising never raises the scale: skip it for the common case.
        if amount.scale() > currency.minor_units
            && amount.normalize().scale() > currency.minor_units
        {
            let reason = match currency.minor_units {
                0 => format!("{currency} has no minor unit: amounts must be whole numbers"),
                n => format!(
                    "has {} decimal places; {currency} allows at most {n}",
                    amount.normalize().scale()
                ),
            };
            self.cell_error(rec, line, row, col(), ErrorKind::Scale, reason);
            return;
        }
        let b = self.bounds_of(currency);
        if amount > self.bounds[b].row.value {
            let Limit { value, key } = &self.bounds[b].row;
            let reason = format!(
                "is above the maximum {currency} {value} for one row (set by {key}): is this a \
                 card number or a reference in the amount column? If the amount is right, raise \
                 the bound"
            );
            self.cell_error(rec, line, row, col(), ErrorKind::Range, reason);
            return;
        }
        let max_total = self.bounds[b].file_total.value;
        let total = self.report.totals.check_add(currency, amount);
        if let Some(total) = total.ok().filter(|t| *t > max_total) {
            if !std::mem::replace(&mut self.bounds[b].exceeded, true) {
                let Limit { value, key } = &self.bounds[b].file_total;
                let reason = format!(
                    "takes the file's {currency} total to {total}, above the maximum {currency} \
                     {value} for one file (set by {key}): nothing is sent; split the file before \
                     this line, or raise the bound if the total is right"
                );
                self.cell_error(rec, line, row, col(), ErrorKind::FileTotal, reason);
                return;
            }
        }
        let part = self.report.parts.last_mut().expect("a part is open");
        match Totals::add_to_both(&mut self.report.totals, &mut part.totals, currency, amount) {
            Ok(()) => {}
            Err(e) => {
                self.cell_error(rec, line, row, col(), ErrorKind::Overflow, e.to_string());
            }
        }
    }

    /// Index of `currency`'s bounds in `self.bounds`, resolving them at its
    /// first row: the row bound is the pattern's `max` on the amount column
    /// or the configured one, whichever is lower.
    fn bounds_of(&mut self, currency: Currency) -> usize {
        if let Some(i) = self.bounds.iter().position(|b| b.currency == currency) {
            return i;
        }
        let mut row = self.opts.limits.row(currency);
        if let Some(column) = self
            .pattern
            .amount_column()
            .map(|c| &self.pattern.columns[c])
        {
            if let ColumnType::Decimal { max: Some(max), .. } = column.kind {
                if max <= row.value {
                    row = Limit {
                        value: max,
                        key: format!(
                            "`max` of column {} in pattern {} ({})",
                            column.name, self.pattern.id, self.pattern.source
                        ),
                    };
                }
            }
        }
        self.bounds.push(CurrencyBounds {
            currency,
            row,
            file_total: self.opts.limits.file_total(currency),
            exceeded: false,
        });
        self.bounds.len() - 1
    }

    fn check_unique(&mut self, rec: &ByteRecord, line: u64, row: u64, col: usize, f: &[u8]) {
        let fp = fingerprint(col, f);
        let set = &mut self
            .uniques
            .iter_mut()
            .find(|(c, _)| *c == col)
            .expect("unique columns are indexed")
            .1;
        if set.insert(fp) {
            return;
        }
        let name = &self.pattern.columns[col].name;
        let reason = format!("{name} is already used by an earlier row; it must be unique");
        if let Some(error_index) =
            self.cell_error(rec, line, row, col, ErrorKind::Duplicate, reason)
        {
            self.duplicates.push(Duplicate {
                error_index,
                column: col,
                fingerprint: fp,
            });
        }
    }

    /// Second pass: find the first line of each kept duplicate.
    fn name_first_occurrences<R: Read>(&mut self, reader: R) -> Result<(), Fatal> {
        let wanted: HashSet<(usize, u64)> = self
            .duplicates
            .iter()
            .map(|d| (d.column, d.fingerprint))
            .collect();
        let columns: Vec<usize> = self.uniques.iter().map(|(c, _)| *c).collect();
        let mut first: HashMap<(usize, u64), u64> = HashMap::new();
        let mut records = Records::unchecked(self.pattern, reader);
        let mut rec = ByteRecord::new();
        while let Some(kind) = records.next(&mut rec).map_err(csv_fatal)? {
            if matches!(kind, Kind::Header { .. }) || rec.len() != self.pattern.columns.len() {
                continue;
            }
            for &c in &columns {
                let key = (c, fingerprint(c, rec.get(c).unwrap_or_default()));
                if wanted.contains(&key) {
                    let line = rec.position().map_or(0, |p| p.line());
                    first.entry(key).or_insert(line);
                }
            }
            if first.len() == wanted.len() {
                break;
            }
        }
        for d in &self.duplicates {
            if let Some(line) = first.get(&(d.column, d.fingerprint)) {
                let e = &mut self.report.errors[d.error_index];
                let name = &self.pattern.columns[d.column].name;
                e.reason = format!("{name} is also used on line {line}; it must be unique");
            }
        }
        Ok(())
    }

    fn check(&self, column: &Column, f: &[u8]) -> Result<Value, Fail> {
        let fail = |kind, reason: String| Err((kind, reason));
        match &column.kind {
            ColumnType::String {
                min_len,
                max_len,
                regex,
            } => {
                // A UTF-8 cell has between ⌈bytes/4⌉ and `bytes` characters:
                // count them only when that range straddles a limit.
                let bytes = f.len();
                let sure = max_len.is_none_or(|m| bytes <= m)
                    && min_len.is_none_or(|m| bytes.div_ceil(4) >= m);
                let len = if sure || self.pattern.encoding == Encoding::Windows1254 || f.is_ascii()
                {
                    bytes
                } else {
                    utf8_chars(f)
                };
                if let Some(max) = max_len.filter(|m| len > *m) {
                    return fail(
                        ErrorKind::Length,
                        format!("has {len} characters; at most {max} allowed"),
                    );
                }
                if let Some(min) = min_len.filter(|m| len < *m) {
                    return fail(
                        ErrorKind::Length,
                        format!("has {len} characters; at least {min} required"),
                    );
                }
                if let Some(re) = regex {
                    if !re.is_match(&self.text(f)) {
                        let shown = &re.as_str()["^(?:".len()..re.as_str().len() - 2];
                        return fail(ErrorKind::Regex, format!("does not match /{shown}/"));
                    }
                }
                Ok(Value::Other)
            }
            ColumnType::Integer { min, max } => {
                let n = check::integer(f)?;
                range(n, *min, *max)?;
                Ok(Value::Integer(n))
            }
            ColumnType::Decimal { scale, min, max } => {
                let d = check::decimal(f, self.pattern.decimal_separator)?;
                if let Some(s) = scale.filter(|s| d.scale() > *s && d.normalize().scale() > *s) {
                    return fail(
                        ErrorKind::Scale,
                        format!(
                            "has {} decimal places; at most {s} allowed",
                            d.normalize().scale()
                        ),
                    );
                }
                if f[0] == b'-' && min.is_some_and(|m| m >= Decimal::ZERO) {
                    return fail(
                        ErrorKind::Range,
                        format!("must not be negative (minimum {})", min.unwrap_or_default()),
                    );
                }
                // An amount's maximum is checked with the configured bound,
                // which depends on the row's currency (`add_amount`).
                range(d, *min, if column.amount { None } else { *max })?;
                Ok(if column.amount {
                    Value::Amount(d)
                } else {
                    Value::Other
                })
            }
            ColumnType::Date { format } => {
                NaiveDate::parse_from_str(&self.text(f), format)
                    .map_err(|e| (ErrorKind::Date, format!("is not a date in {format}: {e}")))?;
                Ok(Value::Other)
            }
            ColumnType::DateTime { format } => {
                NaiveDateTime::parse_from_str(&self.text(f), format).map_err(|e| {
                    (
                        ErrorKind::DateTime,
                        format!("is not a date-time in {format}: {e}"),
                    )
                })?;
                Ok(Value::Other)
            }
            ColumnType::Boolean => check::boolean(f).map(|_| Value::Other),
            ColumnType::Enum { values } => {
                let t = self.text(f);
                if values.iter().any(|v| *v == t) {
                    Ok(Value::Other)
                } else {
                    fail(
                        ErrorKind::Enum,
                        format!("must be one of: {}", values.join(", ")),
                    )
                }
            }
            ColumnType::CardNumber => check::card_number(f).map(|_| Value::Other),
            ColumnType::CardFirst8 => {
                check::card_digits(f, 8, "first 8 digits").map(|_| Value::Other)
            }
            ColumnType::CardLast4 => {
                check::card_digits(f, 4, "last 4 digits").map(|_| Value::Other)
            }
            ColumnType::CardExpiry => check::card_expiry(f, self.opts.as_of).map(|_| Value::Other),
            ColumnType::Iban => check::iban(f).map(|_| Value::Other),
            ColumnType::TrIdentity => check::tr_identity(f).map(|_| Value::Other),
            ColumnType::TrTaxNumber => check::tr_tax_number(f).map(|_| Value::Other),
            ColumnType::TrIdentityOrTaxNumber => {
                check::tr_identity_or_tax_number(f).map(|_| Value::Other)
            }
            ColumnType::Currency => match Currency::lookup(&self.text(f)) {
                Some(c) => Ok(Value::Currency(c)),
                None => fail(
                    ErrorKind::Currency,
                    "is not an ISO 4217 currency code (e.g. TRY or 949)".into(),
                ),
            },
            ColumnType::Email => check::email(&self.text(f)).map(|_| Value::Other),
        }
    }

    /// The cell as text in the pattern's encoding.
    fn text<'b>(&self, f: &'b [u8]) -> Cow<'b, str> {
        match self.pattern.encoding {
            Encoding::Utf8 => String::from_utf8_lossy(f),
            Encoding::Windows1254 => encoding_rs::WINDOWS_1254.decode_without_bom_handling(f).0,
        }
    }

    /// Records an error in a cell; returns its index in the report if kept.
    fn cell_error(
        &mut self,
        rec: &ByteRecord,
        line: u64,
        row: u64,
        col: usize,
        kind: ErrorKind,
        reason: String,
    ) -> Option<usize> {
        let column = &self.pattern.columns[col];
        let value = display_value(column, &self.text(rec.get(col).unwrap_or_default()));
        self.error(RowError {
            line,
            row,
            column: Some(column.name.clone()),
            value: Some(value),
            kind,
            reason,
        })
    }

    /// Records an error. Its value and reason are masked here, whatever the
    /// column: a card number in the wrong column appears in both ("is
    /// 5289391525332536 but this is data row 3").
    fn error(&mut self, mut e: RowError) -> Option<usize> {
        e.reason = mask::card_numbers(&e.reason);
        e.value = e.value.map(|v| mask::card_numbers(&v));
        self.report.errors_total += 1;
        if let Some(cb) = self.hooks.on_error.as_mut() {
            cb(&e);
        }
        if self.report.errors.len() < self.opts.max_errors {
            self.report.errors.push(e);
            Some(self.report.errors.len() - 1)
        } else {
            self.report.errors_not_shown += 1;
            None
        }
    }
}

/// Where a cell holds the delimiter or a quote, which a plain join of
/// fields cannot carry (see [`Quoting`]).
fn unquotable(f: &[u8], delimiter: u8) -> Option<usize> {
    memchr::memchr2(delimiter, b'"', f)
}

/// The refusal of a cell that [`unquotable`] found, naming the character.
fn quoting_fail(f: &[u8], delimiter: u8) -> Fail {
    let d = (delimiter as char).escape_default();
    let what = match unquotable(f, delimiter).map(|i| f[i]) {
        Some(b'"') => "a quote character (\")".to_string(),
        _ => format!("the delimiter '{d}'"),
    };
    (
        ErrorKind::Quoting,
        format!(
            "contains {what}: the provider reads a row as its fields joined with '{d}' and \
             documents no quoting, so this value cannot be sent as it is; remove the character \
             (or, only if your provider confirmed it reads RFC 4180 quoting, set quoting = \
             \"rfc4180\" in the pattern)"
        ),
    )
}

fn range<T: PartialOrd + fmt::Display + Copy>(
    v: T,
    min: Option<T>,
    max: Option<T>,
) -> Result<(), Fail> {
    if let Some(m) = min.filter(|m| v < *m) {
        return Err((ErrorKind::Range, format!("is below the minimum {m}")));
    }
    if let Some(m) = max.filter(|m| v > *m) {
        return Err((ErrorKind::Range, format!("is above the maximum {m}")));
    }
    Ok(())
}

/// How a value appears in errors: masked when sensitive, printable, and cut
/// to a readable length.
fn display_value(column: &Column, text: &str) -> String {
    let masked = match column.kind {
        _ if !column.mask => mask::card_numbers(text),
        ColumnType::CardNumber => mask::card(text),
        _ => mask::identity(text),
    };
    let shown: String = masked.escape_debug().collect();
    match shown.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &shown[..cut]),
        None => shown,
    }
}

/// Characters in a cell of a UTF-8 file: its bytes that start a character.
/// Equal to `chars().count()` because `row` has already refused (as
/// [`Fatal::Encoding`]) any record that is not valid UTF-8; this avoids
/// decoding every non-ASCII name again.
fn utf8_chars(f: &[u8]) -> usize {
    debug_assert!(std::str::from_utf8(f).is_ok());
    f.iter().filter(|&&b| (b as i8) >= -0x40).count()
}

/// Index of the field that contains byte `pos` of the record's data.
fn field_at(rec: &ByteRecord, pos: usize) -> usize {
    let mut offset = 0;
    for (i, f) in rec.iter().enumerate() {
        offset += f.len();
        if pos < offset {
            return i;
        }
    }
    rec.len().saturating_sub(1)
}

/// The first field of the record that is not valid UTF-8, as a [`Fatal`].
fn encoding_fatal(pattern: &Pattern, rec: &ByteRecord, line: u64) -> Option<Fatal> {
    rec.iter().enumerate().find_map(|(col, f)| {
        let e = std::str::from_utf8(f).err()?;
        Some(Fatal::Encoding {
            line,
            column: pattern
                .columns
                .get(col)
                .map_or_else(|| format!("field {}", col + 1), |c| c.name.clone()),
            detail: format!("byte 0x{:02X}", f[e.valid_up_to()]),
        })
    })
}

/// The CSV reader of a pattern's files (the upload reads them with it too).
fn csv_fatal(e: csv::Error) -> Fatal {
    let text = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => match input_error(&io) {
            Some(ie) => Fatal::Input(ie.clone()),
            None => Fatal::Io(io),
        },
        _ => Fatal::Io(io::Error::other(text)),
    }
}
