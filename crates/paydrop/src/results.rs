//! The provider's result file: parsed as it streams in, matched to what was
//! submitted, summarised (paid / declined per reason, exact amounts), and
//! turned into a retry file of the declined rows that are worth retrying.
//!
//! The result file has one line per payment in the columns of
//! [`crate::api::CALLBACK_COLUMNS`]. A line is matched to the submitted row by
//! its `lineNumber` (and its `merchantUniqueCode` must agree), so a result for
//! a row that was never sent is refused rather than silently counted.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::Path;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::api::CALLBACK_COLUMNS;
use crate::pattern::Pattern;
use crate::validate::check;

/// `PaymentStatusId` of an approved payment.
pub const STATUS_SUCCESS: u32 = 1;

/// Bank response codes of soft declines, where the same card may well pay
/// later: insufficient funds, do not honour, issuer unavailable, system
/// malfunction, exceeds withdrawal limit / frequency.
const RETRYABLE: &[&str] = &["51", "05", "91", "96", "61", "65"];

/// Whether a decline with this bank code is worth retrying.
///
/// ```
/// assert!(paydrop::results::is_retryable("51"));
/// assert!(!paydrop::results::is_retryable("54")); // expired card
/// ```
pub fn is_retryable(bank_code: &str) -> bool {
    RETRYABLE.contains(&bank_code.trim())
}

/// One line of a result file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultLine {
    /// Line of the result file (1-based), for error messages.
    pub file_line: u64,
    pub line_number: i64,
    pub merchant_unique_code: String,
    pub amount: Decimal,
    pub approved: bool,
    /// `bankErrorCode` (or `providerErrorCode` / `paywallErrorCode` when the
    /// bank said nothing) of a declined payment.
    pub error_code: String,
    pub error_message: String,
}

/// A result file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("result file line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("reading the result file: {0}")]
    Io(#[from] io::Error),
}

/// Parses a result file line by line.
pub fn parse<R: Read>(reader: R) -> impl Iterator<Item = Result<ResultLine, ResultError>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut rec = csv::StringRecord::new();
    std::iter::from_fn(move || match rdr.read_record(&mut rec) {
        Ok(false) => None,
        Ok(true) => {
            let line = rec.position().map_or(0, |p| p.line());
            Some(line_from(&rec, line))
        }
        Err(e) => Some(Err(ResultError::Line {
            line: e.position().map_or(0, |p| p.line()),
            reason: e.to_string(),
        })),
    })
}

fn line_from(rec: &csv::StringRecord, line: u64) -> Result<ResultLine, ResultError> {
    // The values quoted in a reason may be anything the provider sent.
    let bad = |reason: String| ResultError::Line {
        line,
        reason: crate::mask::card_numbers(&reason),
    };
    if rec.len() != CALLBACK_COLUMNS.len() {
        return Err(bad(format!(
            "has {} fields, a result line has {}",
            rec.len(),
            CALLBACK_COLUMNS.len()
        )));
    }
    let col = |name: &str| {
        let i = CALLBACK_COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("known column");
        rec.get(i).unwrap_or("").trim()
    };
    let line_number = col("lineNumber").parse().map_err(|_| {
        bad(format!(
            "lineNumber '{}' is not a number",
            col("lineNumber")
        ))
    })?;
    let amount = check::decimal(col("amount").as_bytes(), b'.')
        .map_err(|(_, r)| bad(format!("amount '{}' {r}", col("amount"))))?;
    let status: u32 = col("PaymentStatusId").parse().map_err(|_| {
        bad(format!(
            "PaymentStatusId '{}' is not a number",
            col("PaymentStatusId")
        ))
    })?;
    let approved = status == STATUS_SUCCESS;
    let (code, message) = [
        ("bankErrorCode", "bankErrorMessage"),
        ("providerErrorCode", "providerErrorMessage"),
        ("paywallErrorCode", "providerErrorMessage"),
    ]
    .iter()
    .map(|(c, m)| (col(c), col(m)))
    .find(|(c, _)| !c.is_empty() && *c != "0" && *c != "00")
    .unwrap_or(("", ""));
    Ok(ResultLine {
        file_line: line,
        line_number,
        merchant_unique_code: col("merchantUniqueCode").to_string(),
        amount,
        approved,
        error_code: if approved {
            String::new()
        } else {
            code.to_string()
        },
        error_message: if approved {
            String::new()
        } else {
            message.to_string()
        },
    })
}

/// Count and exact amount.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub rows: u64,
    pub amount: Decimal,
}

impl Tally {
    pub fn add(&mut self, amount: Decimal) {
        self.rows += 1;
        self.amount += amount;
    }
}

/// Declines for one reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeclineTally {
    pub message: String,
    pub retryable: bool,
    pub rows: u64,
    pub amount: Decimal,
}

/// What a batch's results say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub paid: Tally,
    pub declined: Tally,
    /// Declines worth retrying (they are in the retry file).
    pub retryable: Tally,
    /// Declines by bank / provider error code.
    pub by_code: BTreeMap<String, DeclineTally>,
}

impl Summary {
    pub fn add(&mut self, line: &ResultLine) {
        if line.approved {
            self.paid.add(line.amount);
            return;
        }
        self.declined.add(line.amount);
        let retryable = is_retryable(&line.error_code);
        if retryable {
            self.retryable.add(line.amount);
        }
        let t = self.by_code.entry(line.error_code.clone()).or_default();
        t.message = crate::mask::card_numbers(&line.error_message);
        t.retryable = retryable;
        t.rows += 1;
        t.amount += line.amount;
    }
}

/// Writes the retry file: the rows of `original` whose line numbers are in
/// `retry`, in the original pattern, renumbered from 1, each with a new
/// unique code (`{code}-R{generation}`). Streams the original; returns the
/// rows written and their total.
pub fn write_retry_file(
    original: &Path,
    pattern: &Pattern,
    retry: &HashSet<i64>,
    generation: u32,
    out: &Path,
) -> io::Result<Tally> {
    let line_col = pattern.columns.iter().position(|c| c.line_number);
    let code_col = pattern.columns.iter().position(|c| c.unique);
    let amount_col = pattern.amount_column();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(pattern.delimiter)
        .from_reader(io::BufReader::with_capacity(
            64 * 1024,
            File::open(original)?,
        ));
    let tmp = out.with_extension("tmp");
    let mut w = csv::WriterBuilder::new()
        .delimiter(pattern.delimiter)
        .from_writer(BufWriter::new(crate::private::create(&tmp)?));
    let mut rec = csv::ByteRecord::new();
    let mut tally = Tally::default();
    let mut first = true;
    let mut row = 0i64;
    while rdr.read_byte_record(&mut rec)? {
        if std::mem::take(&mut first) && looks_like_header(&rec, pattern) {
            w.write_byte_record(&rec)?;
            continue;
        }
        row += 1;
        let number = match line_col {
            Some(c) => std::str::from_utf8(rec.get(c).unwrap_or_default())
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(row),
            None => row,
        };
        if !retry.contains(&number) {
            continue;
        }
        let mut fields: Vec<Vec<u8>> = rec.iter().map(<[u8]>::to_vec).collect();
        if let Some(c) = line_col {
            fields[c] = (tally.rows + 1).to_string().into_bytes();
        }
        if let Some(c) = code_col {
            fields[c] = retry_code(&fields[c], generation, pattern, c);
        }
        if let Some(a) = amount_col.and_then(|c| rec.get(c)) {
            if let Ok(d) = check::decimal(a, pattern.decimal_separator) {
                tally.amount += d;
            }
        }
        tally.rows += 1;
        w.write_record(&fields)?;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, out)?;
    Ok(tally)
}

pub(crate) fn looks_like_header(rec: &csv::ByteRecord, pattern: &Pattern) -> bool {
    pattern
        .columns
        .first()
        .zip(rec.get(0))
        .is_some_and(|(c, f)| {
            let f = f.strip_prefix(b"\xef\xbb\xbf").unwrap_or(f);
            c.name.as_bytes().eq_ignore_ascii_case(f.trim_ascii())
        })
}

/// `{code}-R{generation}`, shortened with a hash when it would exceed the
/// column's maximum length.
fn retry_code(code: &[u8], generation: u32, pattern: &Pattern, col: usize) -> Vec<u8> {
    let suffix = format!("-R{generation}");
    let max = match pattern.columns[col].kind {
        crate::pattern::ColumnType::String { max_len, .. } => max_len.unwrap_or(250),
        _ => 250,
    };
    let mut out = code.to_vec();
    if out.len() + suffix.len() > max {
        out = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(code)).into_bytes();
    }
    out.extend_from_slice(suffix.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_line(line: i64, code: &str, status: u32, bank: &str) -> String {
        format!(
            "1,{line},2026-11-25 20:00:00,{code},,Ayşe Yılmaz,454360******1234,12/30,10.50,1,Sandbox,1,,{},,,{bank},{},1,{status}",
            if status == 1 { 0 } else { 1 },
            if bank.is_empty() { "" } else { "Insufficient funds" },
        )
    }

    #[test]
    fn parses_and_summarises() {
        let file = [
            result_line(1, "A", 1, "00"),
            result_line(2, "B", 2, "51"),
            result_line(3, "C", 2, "54"),
        ]
        .join("\n");
        let lines: Vec<ResultLine> = parse(file.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].approved && lines[0].error_code.is_empty());
        assert_eq!(lines[1].error_code, "51");
        let mut s = Summary::default();
        lines.iter().for_each(|l| s.add(l));
        assert_eq!(s.paid.rows, 1);
        assert_eq!(s.declined.amount.to_string(), "21.00");
        assert_eq!(s.retryable.rows, 1);
        assert!(!s.by_code["54"].retryable);
    }

    #[test]
    fn refuses_malformed_lines_with_their_line() {
        let bad = "1,x,2026,A\n";
        let e = parse(bad.as_bytes()).next().unwrap().unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let bad = result_line(1, "A", 1, "00").replace("10.50", "1e5");
        let e = parse(bad.as_bytes()).next().unwrap().unwrap_err();
        assert!(e.to_string().contains("exponent"), "{e}");
    }
}
