//! The provider's result file: parsed as it streams in, each line's outcome
//! read as the provider's system-data pages define it, summarised (paid /
//! declined per reason / not final, exact amounts), and turned into a retry
//! file of the declined rows that are worth retrying.
//!
//! One line per payment, comma-separated, no header. The English callback
//! page lists 20 columns ([`crate::api::CALLBACK_COLUMNS`]), the Turkish
//! result-file page the first 18 of them (without `PaymentActivityTypeId`
//! and `PaymentStatusId`); insurance lines carry `identityNumber` where card
//! lines carry `expiryDate`, which changes no position read here
//! (docs/providers/paywall.md §2,
//! <https://developer.paywall.one/payment-orchestration-integration-document/callback-examples/bulk-file-callback>).
//! `cardNumber` and `cardOwner` are never kept: a result file may carry a
//! card number, and nothing read from it writes one anywhere.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::mask;
use crate::pattern::Pattern;
use crate::read::{Input, Kind, Records};
use crate::totals::{Tally, TallyOverflow};
use crate::validate::check;

/// Positions in a result line (the same in the 18- and 20-column forms).
mod col {
    pub const LINE_NUMBER: usize = 1;
    pub const MERCHANT_UNIQUE_CODE: usize = 3;
    pub const AMOUNT: usize = 8;
    pub const PAYWALL_ERROR_CODE: usize = 13;
    pub const PROVIDER_ERROR_CODE: usize = 14;
    pub const PROVIDER_ERROR_MESSAGE: usize = 15;
    pub const BANK_ERROR_CODE: usize = 16;
    pub const BANK_ERROR_MESSAGE: usize = 17;
    pub const ACTIVITY_TYPE: usize = 18;
    pub const STATUS: usize = 19;
}

/// `PaymentStatusId` values ("Payment Statuses",
/// <https://developer.paywall.one/payment-orchestration-integration-document/system-data/payment-statuses>).
pub mod status {
    pub const CREATED: u32 = 1;
    pub const STARTED: u32 = 2;
    /// A pre-authorisation succeeded and waits for its capture.
    pub const AWAITING_SETTLEMENT: u32 = 3;
    pub const SUCCESSFUL: u32 = 4;
    pub const FAILED: u32 = 5;
    /// Failed; the provider's PayJump recovery retries it.
    pub const PAYJUMP: u32 = 6;
    pub const FAILED_ON_QUERY: u32 = 7;
}

/// `PaymentActivityTypeId` of a sale, the only value the provider's examples
/// show (its table is not public: docs/providers/paywall.md §5.2).
pub const ACTIVITY_SALE: u32 = 1;

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

/// What a result line says happened to one payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `PaymentStatusId` 4 of a sale.
    Paid,
    /// `PaymentStatusId` 3: a pre-authorisation (`Half2D`) waiting for its
    /// capture.
    Authorised,
    /// `PaymentStatusId` 5 or 7, or an 18-column line carrying an error code.
    Declined,
    /// `PaymentStatusId` 1, 2 or 6: the provider is not done with it.
    Pending,
    /// Anything else (an undocumented status, status 4 of another activity
    /// than a sale, an 18-column line without an error code, a line that
    /// cannot be split): not paid until the provider's bulk query confirms it.
    Review,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Paid => "paid",
            Outcome::Authorised => "authorised",
            Outcome::Declined => "declined",
            Outcome::Pending => "pending",
            Outcome::Review => "review",
        }
    }

    /// Whether the row is settled one way or the other.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Outcome::Paid | Outcome::Authorised | Outcome::Declined
        )
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "paid" => Outcome::Paid,
            "authorised" => Outcome::Authorised,
            "declined" => Outcome::Declined,
            "pending" => Outcome::Pending,
            "review" => Outcome::Review,
            other => return Err(format!("outcome '{other}'")),
        })
    }
}

/// One line of a result file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultLine {
    /// Line of the result file (1-based), for error messages.
    pub file_line: u64,
    pub line_number: i64,
    pub merchant_unique_code: String,
    pub amount: Decimal,
    pub outcome: Outcome,
    /// `PaymentStatusId` (absent in the 18-column form).
    pub status_id: Option<u32>,
    /// `bankErrorCode` (or `providerErrorCode` / `paywallErrorCode` when the
    /// bank said nothing) of a declined payment.
    pub error_code: String,
    /// The provider's message of a declined payment; why a line is pending
    /// or under review.
    pub error_message: String,
}

impl ResultLine {
    pub fn is_paid(&self) -> bool {
        self.outcome == Outcome::Paid
    }
}

/// A result file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("result file line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("reading the result file: {0}")]
    Io(#[from] io::Error),
}

/// Parses a result file line by line; a header row (`patternNo,…`) and
/// blank lines are skipped.
pub fn parse<R: Read>(reader: R) -> impl Iterator<Item = Result<ResultLine, ResultError>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut rec = csv::ByteRecord::new();
    let mut first = true;
    std::iter::from_fn(move || loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => return None,
            Ok(true) => {
                let line = rec.position().map_or(0, |p| p.line());
                let blank = rec.len() == 1 && rec[0].trim_ascii().is_empty();
                let header = std::mem::take(&mut first)
                    && rec
                        .get(0)
                        .is_some_and(|f| f.trim_ascii().eq_ignore_ascii_case(b"patternNo"));
                if blank || header {
                    continue;
                }
                return Some(line_from(&rec, line));
            }
            Err(e) => {
                return Some(Err(match e.kind() {
                    csv::ErrorKind::Io(_) => match e.into_kind() {
                        csv::ErrorKind::Io(io) => ResultError::Io(io),
                        _ => unreachable!("matched above"),
                    },
                    _ => ResultError::Line {
                        line: e.position().map_or(0, |p| p.line()),
                        reason: e.to_string(),
                    },
                }))
            }
        }
    })
}

/// A cell as text, trimmed.
fn raw(rec: &csv::ByteRecord, i: usize) -> String {
    String::from_utf8_lossy(rec.get(i).unwrap_or_default().trim_ascii()).into_owned()
}

/// A cell as text to keep or show: anything shaped like a card number masked.
fn text(rec: &csv::ByteRecord, i: usize) -> String {
    mask::card_numbers(&raw(rec, i))
}

fn line_from(rec: &csv::ByteRecord, line: u64) -> Result<ResultLine, ResultError> {
    // The values quoted in a reason may be anything the provider sent.
    let bad = |reason: String| ResultError::Line {
        line,
        reason: mask::card_numbers(&reason),
    };
    if rec.len() <= col::AMOUNT {
        return Err(bad(format!(
            "has {} fields; a result line has 18 or 20",
            rec.len()
        )));
    }
    let line_number = raw(rec, col::LINE_NUMBER).parse().map_err(|_| {
        bad(format!(
            "lineNumber '{}' is not a number",
            text(rec, col::LINE_NUMBER)
        ))
    })?;
    let amount = check::decimal(rec[col::AMOUNT].trim_ascii(), b'.')
        .map_err(|(_, r)| bad(format!("amount '{}' {r}", text(rec, col::AMOUNT))))?;
    let (outcome, status_id, error_code, error_message) = interpret(rec);
    Ok(ResultLine {
        file_line: line,
        line_number,
        // Compared with the code sent, never shown unmasked (see the callback).
        merchant_unique_code: raw(rec, col::MERCHANT_UNIQUE_CODE),
        amount,
        outcome,
        status_id,
        error_code,
        error_message,
    })
}

/// The first error code that is not a success code, with its message:
/// the bank's, else the provider's, else the provider network's own.
fn failure(rec: &csv::ByteRecord) -> Option<(String, String)> {
    [
        (col::BANK_ERROR_CODE, col::BANK_ERROR_MESSAGE),
        (col::PROVIDER_ERROR_CODE, col::PROVIDER_ERROR_MESSAGE),
        (col::PAYWALL_ERROR_CODE, col::PROVIDER_ERROR_MESSAGE),
    ]
    .into_iter()
    .map(|(c, m)| (text(rec, c), text(rec, m)))
    .find(|(c, _)| !c.trim_start_matches('0').is_empty())
}

/// Outcome, status, error code and message of a line, as docs §5 reads them.
fn interpret(rec: &csv::ByteRecord) -> (Outcome, Option<u32>, String, String) {
    let failure = failure(rec);
    let declined = |status| {
        let (code, message) = failure.clone().unwrap_or_default();
        (Outcome::Declined, status, code, message)
    };
    let unsettled = |outcome, status, why: String| (outcome, status, String::new(), why);
    match rec.len() {
        18 => match failure {
            Some(_) => declined(None),
            None => unsettled(
                Outcome::Review,
                None,
                "no PaymentStatusId (18-column line) and no error code".into(),
            ),
        },
        20 => {
            let raw = text(rec, col::STATUS);
            let Ok(status) = raw.parse::<u32>() else {
                return unsettled(
                    Outcome::Review,
                    None,
                    format!("PaymentStatusId '{raw}' is not a number"),
                );
            };
            let activity = text(rec, col::ACTIVITY_TYPE);
            match status {
                status::SUCCESSFUL if activity == ACTIVITY_SALE.to_string() => {
                    (Outcome::Paid, Some(status), String::new(), String::new())
                }
                status::SUCCESSFUL => unsettled(
                    Outcome::Review,
                    Some(status),
                    format!(
                        "status 4 (successful) of PaymentActivityTypeId '{activity}', not a sale"
                    ),
                ),
                status::AWAITING_SETTLEMENT => (
                    Outcome::Authorised,
                    Some(status),
                    String::new(),
                    String::new(),
                ),
                status::FAILED | status::FAILED_ON_QUERY => declined(Some(status)),
                status::CREATED | status::STARTED | status::PAYJUMP => unsettled(
                    Outcome::Pending,
                    Some(status),
                    format!("status {status} ({})", status_name(status)),
                ),
                other => unsettled(
                    Outcome::Review,
                    Some(other),
                    format!("PaymentStatusId {other} is not a documented status"),
                ),
            }
        }
        n => unsettled(
            Outcome::Review,
            None,
            format!("the line has {n} fields (18 or 20 expected): a comma in a message?"),
        ),
    }
}

fn status_name(status: u32) -> &'static str {
    match status {
        status::CREATED => "created",
        status::STARTED => "started",
        status::PAYJUMP => "PayJump: failed, being retried by the provider",
        _ => "unknown",
    }
}

/// Declines for one reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeclineTally {
    pub message: String,
    pub retryable: bool,
    #[serde(flatten)]
    pub tally: Tally,
}

/// What a batch's results say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub paid: Tally,
    /// Pre-authorisations waiting for their capture.
    pub authorised: Tally,
    pub declined: Tally,
    /// Declines worth retrying (they are in the retry file).
    pub retryable: Tally,
    /// Rows the provider reported as not final, or in a way that does not
    /// say: neither paid nor declined until its bulk query confirms them.
    pub unsettled: Tally,
    /// Declines by bank / provider error code.
    pub by_code: BTreeMap<String, DeclineTally>,
    /// Unsettled rows by reason.
    pub unsettled_by_reason: BTreeMap<String, Tally>,
}

impl Summary {
    /// Counts one result line; an overflowing total is an error, never a
    /// panic (the amounts come from the provider).
    pub fn add(&mut self, line: &ResultLine) -> Result<(), TallyOverflow> {
        match line.outcome {
            Outcome::Paid => self.paid.add(line.amount),
            Outcome::Authorised => self.authorised.add(line.amount),
            Outcome::Pending | Outcome::Review => {
                self.unsettled.add(line.amount)?;
                self.unsettled_by_reason
                    .entry(line.error_message.clone())
                    .or_default()
                    .add(line.amount)
            }
            Outcome::Declined => {
                self.declined.add(line.amount)?;
                let retryable = is_retryable(&line.error_code);
                if retryable {
                    self.retryable.add(line.amount)?;
                }
                let t = self.by_code.entry(line.error_code.clone()).or_default();
                t.message = mask::card_numbers(&line.error_message);
                t.retryable = retryable;
                t.tally.add(line.amount)
            }
        }
    }

    /// Whether a declined line goes to the retry file.
    pub fn is_retry(line: &ResultLine) -> bool {
        line.outcome == Outcome::Declined && is_retryable(&line.error_code)
    }
}

/// Writes the retry file: the rows of the original file named by
/// [`RetryWriter::push`] (in ascending line order), in the original pattern,
/// renumbered from 1, each with a new unique code (`{code}-R{generation}`).
/// The original is read once, in step with the line numbers: memory stays
/// flat whatever the number of rows. The file holds full card numbers (it is
/// to be submitted), so it is created readable by its owner only.
pub struct RetryWriter<'p> {
    pattern: &'p Pattern,
    records: Records<'p, Input<File>>,
    w: csv::Writer<BufWriter<File>>,
    rec: csv::ByteRecord,
    original: PathBuf,
    tmp: PathBuf,
    out: PathBuf,
    generation: u32,
    line_col: Option<usize>,
    code_col: Option<usize>,
    /// Position of the last row read among the data rows.
    row: i64,
    tally: Tally,
}

impl<'p> RetryWriter<'p> {
    pub fn create(
        original: &Path,
        pattern: &'p Pattern,
        generation: u32,
        out: &Path,
        max_line_bytes: usize,
    ) -> io::Result<RetryWriter<'p>> {
        // Read as `validate` read it when it was sent.
        let (records, _) = Records::open(pattern, File::open(original)?, max_line_bytes);
        let tmp = out.with_extension("tmp");
        let w = csv::WriterBuilder::new()
            .delimiter(pattern.delimiter)
            .from_writer(BufWriter::new(crate::private::create(&tmp)?));
        Ok(RetryWriter {
            pattern,
            records,
            w,
            rec: csv::ByteRecord::new(),
            original: original.to_path_buf(),
            tmp,
            out: out.to_path_buf(),
            generation,
            line_col: pattern.line_number_column(),
            code_col: pattern.payment_code_column(),
            row: 0,
            tally: Tally::default(),
        })
    }

    /// Copies the row with this line number; line numbers come in ascending
    /// order. Returns the physical line of the original it stands on.
    pub fn push(&mut self, line_number: i64) -> io::Result<u64> {
        loop {
            let kind = self.records.next(&mut self.rec).map_err(io::Error::from)?;
            match kind {
                None => return Err(self.missing(line_number)),
                Some(Kind::Header { .. }) => {
                    self.w.write_byte_record(&self.rec)?;
                    continue;
                }
                Some(Kind::Row(row)) => self.row = row as i64,
            }
            let number = match self.line_col {
                Some(c) => std::str::from_utf8(self.rec.get(c).unwrap_or_default())
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(self.row),
                None => self.row,
            };
            if number > line_number {
                return Err(self.missing(line_number));
            }
            if number == line_number {
                self.copy()?;
                return Ok(self.rec.position().map_or(0, |p| p.line()));
            }
        }
    }

    fn missing(&self, line_number: i64) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "row {line_number} of the results is not in {}: was the file changed after \
                 it was sent?",
                self.original.display()
            ),
        )
    }

    fn copy(&mut self) -> io::Result<()> {
        let mut fields: Vec<Vec<u8>> = self.rec.iter().map(<[u8]>::to_vec).collect();
        if let Some(c) = self.line_col {
            fields[c] = (self.tally.rows + 1).to_string().into_bytes();
        }
        if let Some(c) = self.code_col {
            fields[c] = retry_code(&fields[c], self.generation, self.pattern, c);
        }
        // The row was validated before it was sent: an amount that no longer
        // reads means the file changed since.
        let amount = match self.pattern.amount_column() {
            None => Some(Decimal::ZERO),
            Some(c) => self
                .rec
                .get(c)
                .and_then(|a| check::decimal(a, self.pattern.decimal_separator).ok()),
        };
        let Some(amount) = amount else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the amount of row {} of {} does not read: was the file changed after it \
                     was sent?",
                    self.row,
                    self.original.display()
                ),
            ));
        };
        self.tally
            .add(amount)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.w.write_record(&fields)?;
        Ok(())
    }

    /// Completes the file under its name; the rows written and their total.
    pub fn finish(mut self) -> io::Result<Tally> {
        self.w.flush()?;
        self.w.get_ref().get_ref().sync_all()?;
        drop(self.w);
        std::fs::rename(&self.tmp, &self.out)?;
        Ok(self.tally)
    }
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

    /// A 20-column line (18 with `short`).
    fn result_line(line: i64, code: &str, status: u32, bank: &str, short: bool) -> String {
        let mut cells = vec![
            "1".to_string(),
            line.to_string(),
            "2026-11-25 20:00:00".into(),
            code.into(),
            String::new(),
            "Ayşe Yılmaz".into(),
            "454360******1234".into(),
            "12/30".into(),
            "10.50".into(),
            "1".into(),
            "Gateway".into(),
            "1".into(),
            String::new(),
            if bank.is_empty() { "0" } else { "1" }.into(),
            String::new(),
            String::new(),
            bank.into(),
            if bank.is_empty() {
                ""
            } else {
                "Insufficient funds"
            }
            .into(),
            "1".into(),
            status.to_string(),
        ];
        if short {
            cells.truncate(18);
        }
        cells.join(",")
    }

    fn parse_all(text: &str) -> Vec<ResultLine> {
        parse(text.as_bytes()).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn reads_statuses_as_the_provider_defines_them() {
        let file = [
            result_line(1, "A", status::SUCCESSFUL, "", false),
            result_line(2, "B", status::FAILED, "51", false),
            result_line(3, "C", status::FAILED_ON_QUERY, "54", false),
            result_line(4, "D", status::AWAITING_SETTLEMENT, "", false),
            result_line(5, "E", status::STARTED, "", false),
            result_line(6, "F", 9, "", false),
        ]
        .join("\n");
        let lines = parse_all(&file);
        let outcomes: Vec<Outcome> = lines.iter().map(|l| l.outcome).collect();
        use Outcome::*;
        assert_eq!(
            outcomes,
            [Paid, Declined, Declined, Authorised, Pending, Review]
        );
        assert_eq!(lines[1].error_code, "51");
        assert_eq!(lines[0].status_id, Some(4));
        let mut s = Summary::default();
        lines.iter().for_each(|l| s.add(l).unwrap());
        assert_eq!(s.paid.rows, 1);
        assert_eq!(s.declined.amount.to_string(), "21.00");
        assert_eq!(s.retryable.rows, 1);
        assert!(!s.by_code["54"].retryable);
        assert_eq!(s.unsettled.rows, 2);
        assert_eq!(s.authorised.rows, 1);
    }

    #[test]
    fn totals_near_the_decimal_limit_are_an_error_not_a_panic() {
        let huge = Decimal::MAX.to_string();
        for (status, bank) in [(status::SUCCESSFUL, ""), (status::FAILED, "51"), (9, "")] {
            let line = result_line(1, "A", status, bank, false).replace("10.50", &huge);
            let line = &parse_all(&line)[0];
            let mut s = Summary::default();
            s.add(line).unwrap();
            let e = s.add(line).unwrap_err();
            assert!(e.to_string().contains("overflows"), "{e}");
        }
    }

    #[test]
    fn a_success_of_another_activity_is_not_a_paid_sale() {
        let line = result_line(1, "A", status::SUCCESSFUL, "", false);
        let other = line.replace(",1,4", ",2,4");
        assert_eq!(parse_all(&other)[0].outcome, Outcome::Review);
    }

    #[test]
    fn eighteen_columns_decline_by_code_and_never_claim_a_payment() {
        let file = [
            result_line(1, "A", 0, "", true),
            result_line(2, "B", 0, "51", true),
        ]
        .join("\n");
        let lines = parse_all(&file);
        assert_eq!(lines[0].outcome, Outcome::Review);
        assert_eq!(lines[1].outcome, Outcome::Declined);
        assert_eq!(lines[1].error_code, "51");
    }

    #[test]
    fn skips_a_header_and_blank_lines_and_masks_card_numbers_in_messages() {
        let line = result_line(1, "A", status::FAILED, "51", false)
            .replace("Insufficient funds", "card 4506349116543218 refused");
        let file = format!("patternNo,lineNumber\n\n{line}\n");
        let lines = parse_all(&file);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].error_message, "card 450634******3218 refused");
    }

    #[test]
    fn a_line_with_extra_commas_is_kept_for_review() {
        let line = result_line(1, "A", status::FAILED, "51", false)
            .replace("Insufficient funds", "Insufficient, funds");
        let l = &parse_all(&line)[0];
        assert_eq!((l.outcome, l.line_number), (Outcome::Review, 1));
    }

    #[test]
    fn refuses_lines_that_name_no_row() {
        let bad = "1,x,2026,A\n";
        let e = parse(bad.as_bytes()).next().unwrap().unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let bad = result_line(1, "A", 4, "", false).replace("10.50", "1e5");
        let e = parse(bad.as_bytes()).next().unwrap().unwrap_err();
        assert!(e.to_string().contains("exponent"), "{e}");
        let bad = result_line(1, "A", 4, "", false).replace(",1,2026", ",No4506349116543218,2026");
        let e = parse(bad.as_bytes()).next().unwrap().unwrap_err();
        assert!(e.to_string().contains("450634******3218"), "{e}");
    }
}
