//! Reading a spooled pattern file: the provider's checks of every row,
//! streamed line by line (never the whole file in memory), and the reader
//! that finds rows again for the result file and the inquiry.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::fields;
use super::pattern::{self, FilePattern, Tail};
use crate::envelope::code;

/// Every this many rows the checker notes where a row starts, so that a
/// page of results or of the inquiry seeks close to its first row.
pub(crate) const INDEX_STEP: u64 = 100;

/// Longest `merchantUniqueCode`, in characters: "at most 250 characters"
/// (https://developer.paywall.one/payment-orchestration-integration-document/system-data/bulk-payment-file-information).
pub(crate) const MAX_CODE_CHARS: usize = 250;

const BOM: &[u8] = b"\xef\xbb\xbf";

/// The lines of a spooled file, one at a time, without their line ending.
pub(crate) struct Lines {
    reader: BufReader<File>,
    buf: Vec<u8>,
    offset: u64,
}

impl Lines {
    /// Reads from byte `offset` on.
    pub(crate) fn open(path: &Path, offset: u64) -> io::Result<Lines> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Lines {
            reader: BufReader::with_capacity(256 * 1024, file),
            buf: Vec::with_capacity(1024),
            offset,
        })
    }

    /// The next line and the offset it starts at.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        self.buf.clear();
        let start = self.offset;
        let n = self.reader.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.offset += n as u64;
        let mut line = self.buf.as_slice();
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        Ok(Some((start, line)))
    }

    /// Skips `n` lines.
    pub(crate) fn skip(&mut self, n: u64) -> io::Result<()> {
        for _ in 0..n {
            if self.next_line()?.is_none() {
                break;
            }
        }
        Ok(())
    }
}

/// One payment row, split on commas.
pub(crate) struct Row<'a> {
    pub(crate) pattern: FilePattern,
    pub(crate) fields: Vec<&'a str>,
}

impl<'a> Row<'a> {
    pub(crate) fn split(pattern: FilePattern, line: &'a str) -> Row<'a> {
        Row {
            pattern,
            fields: line.split(',').collect(),
        }
    }

    pub(crate) fn tail(&self, column: Tail) -> &'a str {
        self.fields[self.pattern.at(column)]
    }

    pub(crate) fn field(&self, i: usize) -> &'a str {
        self.fields[i]
    }
}

/// A file the checks passed.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) rows: u64,
    pub(crate) total: Decimal,
    /// Offset of row `k × INDEX_STEP`, for every k.
    pub(crate) index: Vec<u64>,
}

/// What the sandbox needs to know to check a file.
pub(crate) struct Rules {
    pub(crate) pattern: FilePattern,
    pub(crate) today: NaiveDate,
    pub(crate) minor_units: u32,
    pub(crate) max_rows: u64,
}

/// Why a file is refused: the envelope's `ErrorCode` and `Message`.
#[derive(Debug)]
pub(crate) struct Bad {
    pub(crate) code: i64,
    pub(crate) message: String,
}

pub(crate) enum CheckError {
    Bad(Bad),
    Io(io::Error),
}

impl From<io::Error> for CheckError {
    fn from(e: io::Error) -> Self {
        CheckError::Io(e)
    }
}

fn bad(code: i64, message: String) -> CheckError {
    CheckError::Bad(Bad { code, message })
}

/// Checks a whole spooled file, row by row, and totals it. Error codes:
/// the SDK's where one fits (docs §8.2), `InvalidData` (2) where none does
/// (the sandbox's own choice).
pub(crate) fn check(path: &Path, rules: &Rules) -> Result<Checked, CheckError> {
    let mut lines = Lines::open(path, 0)?;
    let mut seen = HashSet::new();
    let mut checked = Checked {
        rows: 0,
        total: Decimal::ZERO,
        index: Vec::new(),
    };
    while let Some((offset, raw)) = lines.next_line()? {
        let line_no = checked.rows + 1;
        // A UTF-8 byte-order mark is skipped, as .NET's readers do.
        let (offset, raw) = match raw.strip_prefix(BOM) {
            Some(rest) if line_no == 1 => (offset + BOM.len() as u64, rest),
            _ => (offset, raw),
        };
        if line_no == 1 && raw.is_empty() {
            if lines.next_line()?.is_none() {
                break; // only a newline (or a BOM): the file is empty
            }
            return Err(bad(
                code::INVALID_DATA,
                "line 1 is empty; every line must be one payment".into(),
            ));
        }
        if checked.rows == rules.max_rows {
            return Err(bad(
                code::INVALID_DATA,
                format!(
                    "the file has more than {} transactions; at most {} are accepted in one file",
                    rules.max_rows, rules.max_rows
                ),
            ));
        }
        let line = std::str::from_utf8(raw).map_err(|_| {
            bad(
                code::INVALID_DATA,
                format!("line {line_no} is not UTF-8 text; save the file as UTF-8"),
            )
        })?;
        if checked.rows.is_multiple_of(INDEX_STEP) {
            checked.index.push(offset);
        }
        let amount = check_line(line_no, line, rules, &mut seen).map_err(CheckError::Bad)?;
        checked.total = checked.total.checked_add(amount).ok_or_else(|| {
            bad(
                code::AMOUNT,
                format!("line {line_no}: the file's total overflows"),
            )
        })?;
        checked.rows += 1;
    }
    if checked.rows == 0 {
        return Err(bad(
            code::NO_DATA,
            "the file is empty: it holds no payment rows".into(),
        ));
    }
    Ok(checked)
}

fn check_line(
    line_no: u64,
    line: &str,
    rules: &Rules,
    seen: &mut HashSet<[u8; 16]>,
) -> Result<Decimal, Bad> {
    let invalid = |message: String| Bad {
        code: code::INVALID_DATA,
        message,
    };
    let pattern = rules.pattern;
    let columns = pattern.columns();
    if line.is_empty() {
        return Err(invalid(format!(
            "line {line_no} is empty; every line must be one payment"
        )));
    }
    let row = Row::split(pattern, line);
    if line_no == 1 && pattern::is_header(&row.fields) {
        return Err(invalid(
            "line 1 holds column names: pattern files have no header row; remove it".into(),
        ));
    }
    for (i, value) in row.fields.iter().enumerate() {
        let at = |what: &str| {
            let name = columns.get(i).copied().unwrap_or("(extra)");
            invalid(format!(
                "line {line_no}, column {} ({name}) holds {what}; the published row format is \
                 a plain comma join without quoting or line breaks",
                i + 1
            ))
        };
        if value.contains('"') {
            return Err(at("a quote character (\")"));
        }
        if value.contains('\r') {
            return Err(at("a carriage return"));
        }
    }
    if row.fields.len() != columns.len() {
        let hint = if row.fields.len() > columns.len() {
            " (a value holding a comma shifts the columns)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "line {line_no} has {} fields; pattern {} ({}) has {}: {}{hint}",
            row.fields.len(),
            pattern.id(),
            pattern.name(),
            columns.len(),
            columns.join(",")
        )));
    }
    check_card(line_no, &row, rules)?;
    check_tail(line_no, &row, rules, seen)
}

/// A column's refusal: line, column, the value (masked) and the reason.
fn refuse(code: i64, line_no: u64, row: &Row<'_>, i: usize, reason: &str) -> Bad {
    let name = row.pattern.columns()[i];
    let value = fields::shown(row.field(i));
    Bad {
        code,
        message: format!(
            "line {line_no}, column {} ({name}): '{value}' {reason}",
            i + 1
        ),
    }
}

/// The card columns: pattern 1's number and expiry, pattern 3's first 8 and
/// last 4 digits and identity number (column lists on
/// https://developer.paywall.one/payment-orchestration-integration-document/system-data/bulk-payment-file-information).
fn check_card(line_no: u64, row: &Row<'_>, rules: &Rules) -> Result<(), Bad> {
    let refuse = |code, i, reason: &str| Err(refuse(code, line_no, row, i, reason));
    match row.pattern {
        FilePattern::OpenCardSimple => {
            if !fields::card_number(row.field(0)) {
                return refuse(
                    code::INVALID_CARD_NUMBER,
                    0,
                    "is not a card number (12 to 19 digits passing the Luhn check)",
                );
            }
            let Some((year, month)) = fields::expiry(row.field(1)) else {
                return refuse(
                    code::INVALID_DATA,
                    1,
                    "is not an expiry the sandbox reads (MM/YY, MM/YYYY, MMYY or MMYYYY)",
                );
            };
            let today = (rules.today.year(), rules.today.month());
            if (year, month) < today {
                return refuse(
                    code::UNEXPECTED_CARD_EXPIRED,
                    1,
                    "is in the past: the card has expired",
                );
            }
        }
        FilePattern::InsuranceSimple => {
            if row.field(0).len() != 8 || !fields::digits(row.field(0)) {
                return refuse(
                    code::INVALID_CARD_NUMBER,
                    0,
                    "must be the card's first 8 digits",
                );
            }
            if row.field(1).len() != 4 || !fields::digits(row.field(1)) {
                return refuse(
                    code::INVALID_CARD_NUMBER,
                    1,
                    "must be the card's last 4 digits",
                );
            }
            let id = row.field(2);
            if !(fields::tckn(id) || fields::vkn(id)) {
                return refuse(
                    code::INVALID_DATA,
                    2,
                    "is neither a TCKN (11 digits with both check digits right) \
                     nor a VKN (10 digits with its check digit right)",
                );
            }
        }
    }
    Ok(())
}

/// The 15 columns both patterns share; the row's amount on success.
fn check_tail(
    line_no: u64,
    row: &Row<'_>,
    rules: &Rules,
    seen: &mut HashSet<[u8; 16]>,
) -> Result<Decimal, Bad> {
    let p = row.pattern;
    let refuse =
        |code, column: Tail, reason: &str| refuse(code, line_no, row, p.at(column), reason);
    let amount = fields::amount(row.tail(Tail::Amount), rules.minor_units)
        .map_err(|reason| refuse(code::AMOUNT, Tail::Amount, &reason))?;
    let line_number = row.tail(Tail::LineNumber);
    if !fields::digits(line_number) || line_number.parse::<u64>().map_or(true, |n| n == 0) {
        return Err(refuse(
            code::INVALID_DATA,
            Tail::LineNumber,
            "must be a whole number from 1",
        ));
    }
    // Only customerId, productCategory, productId and the routing columns
    // "may be left empty" on the page; the rest are required.
    for column in [Tail::CardOwnerName, Tail::TrackingCode] {
        if row.tail(column).trim().is_empty() {
            return Err(refuse(code::INVALID_DATA, column, "is required"));
        }
    }
    for column in [Tail::ProviderBased, Tail::PayRouteByPass, Tail::PosBased] {
        let v = row.tail(column);
        if !(v.is_empty() || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")) {
            return Err(refuse(
                code::INVALID_DATA,
                column,
                "must be true, false or empty",
            ));
        }
    }
    for column in [Tail::PayRouteType, Tail::PosId] {
        let v = row.tail(column);
        if !(v.is_empty() || fields::digits(v)) {
            return Err(refuse(
                code::INVALID_DATA,
                column,
                "must be a whole number or empty",
            ));
        }
    }
    let code = row.tail(Tail::MerchantUniqueCode);
    if code.trim().is_empty() {
        return Err(refuse(
            code::UNEXPECTED_MERCHANT_UNIQUE_CODE,
            Tail::MerchantUniqueCode,
            "is required: it identifies the payment for cancel, refund and inquiry",
        ));
    }
    if code.chars().count() > MAX_CODE_CHARS {
        return Err(refuse(
            code::UNEXPECTED_MERCHANT_UNIQUE_CODE,
            Tail::MerchantUniqueCode,
            "is longer than 250 characters",
        ));
    }
    // A digest, not the code: 16 bytes per row whatever the codes' length.
    let digest: [u8; 32] = Sha256::digest(code.as_bytes()).into();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    if !seen.insert(key) {
        return Err(refuse(
            code::MERCHANT_UNIQUE_CODE_ALREADY_EXIST,
            Tail::MerchantUniqueCode,
            "appears on an earlier line; it must be unique",
        ));
    }
    Ok(amount)
}

/// Calls `f` with rows `first..first + count` (0-based) of a checked file,
/// seeking close to the first one with the checker's index.
pub(crate) fn each_row(
    path: &Path,
    index: &[u64],
    pattern: FilePattern,
    first: u64,
    count: u64,
    mut f: impl FnMut(u64, &Row<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let slot = (first / INDEX_STEP) as usize;
    let mut lines = Lines::open(path, index.get(slot).copied().unwrap_or(0))?;
    lines.skip(first - slot as u64 * INDEX_STEP)?;
    for i in first..first.saturating_add(count) {
        let Some((_, raw)) = lines.next_line()? else {
            break;
        };
        let line =
            std::str::from_utf8(raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        f(i, &Row::split(pattern, line))?;
    }
    Ok(())
}
