//! Reconciliation: does what the provider reports match what was sent?
//!
//! One side is what was **sent**: a payment file in a pattern, or the
//! ledger (its accepted submissions: the payments their result files
//! approved, or the rows of their files while no result file has arrived).
//! The other is what the **provider** reports: a payment report written by
//! `paydrop report payments` (CSV or JSON Lines), a payout export, any CSV /
//! TSV with a header, or a result file. Both sides are streamed.
//!
//! # Matching
//!
//! Rows are matched on a key ([`Key`]): on the sent side the pattern's
//! `merchantUniqueCode` column (`orderId` when the pattern has one and
//! `--key orderId` is asked for); on the provider's side the first column of
//! [`Key::candidates`] present in its header (or `--against-key-column`).
//! When a key occurs several times, the n-th occurrence on one side pairs
//! with the n-th on the other, in input order; a payment charged twice thus
//! leaves one row unknown at the provider. A pair whose amounts differ
//! (exactly, as decimals), or whose currencies differ where both sides name
//! one, is an amount mismatch.
//!
//! # Memory
//!
//! The smaller input (by size) is read first into memory up to half the
//! budget (`--memory-mb`). When it fits, the other side is streamed past it
//! (a hash join). When it does not, both sides are sorted on disk in runs of
//! bounded size and merged (an external sort-merge), so inputs of any size
//! need the same memory. Both paths give the same sets; rows come out in
//! the order of the streamed side (hash join) or of the key (sort-merge).
//!
//! # Statuses
//!
//! A pair whose provider row says the payment failed — its status contains
//! one of [`FAILED_WORDS`] (`failed`, `declined`, `refunded`, `rejected`,
//! `reversed`, `cancelled`, …, case ignored) — is not matched: it is its
//! own set, `failed at provider`, with exact totals, and needs attention
//! like the others. The providers publish no closed list of statuses
//! (Payzee's `trnStatus`, Partner Center's `paymentStatus`), so the words
//! are matched inside the status.
//!
//! # Output
//!
//! Five CSV files in the output folder — `matched.csv`,
//! `failed-at-provider.csv`, `missing-at-provider.csv`,
//! `unknown-at-provider.csv`, `amount-mismatch.csv` — card numbers masked
//! to first 6 / last 4, and `summary.txt` / `summary.json` with the count
//! and exact sum of each set per currency, checked against the totals of
//! each side. Every file is written under a temporary name in the output
//! folder and renamed into place only when the whole run succeeded: a
//! failed run leaves no partial file.

mod sort;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::api::CALLBACK_COLUMNS;
use crate::currency::Currency;
use crate::ledger::{Batch, Ledger, State};
use crate::mask;
use crate::pattern::{ColumnType, Header, Pattern, Registry};
use crate::report::json;
use crate::results;
use crate::totals::Tally;
use crate::validate::check;
use sort::{Sorted, Sorter};

/// Memory for held records unless told otherwise.
pub const DEFAULT_MEMORY: usize = 64 << 20;

/// One payment on one side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rec {
    pub key: String,
    pub amount: Decimal,
    /// ISO alphabetic code; empty when the side does not say.
    pub currency: String,
    /// Masked to first 6 / last 4; empty when the side has none.
    pub card: String,
    /// Where the row is, e.g. `line 12`.
    pub at: String,
    /// The provider's status of the payment (empty on the sent side).
    pub status: String,
    /// Input order on its side.
    pub seq: u64,
}

/// What rows are matched on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    MerchantUniqueCode,
    OrderId,
}

impl Key {
    pub const ALL: [Key; 2] = [Key::MerchantUniqueCode, Key::OrderId];

    pub fn name(self) -> &'static str {
        match self {
            Key::MerchantUniqueCode => "merchantUniqueCode",
            Key::OrderId => "orderId",
        }
    }

    /// Columns of the provider's side that hold this key, in order of
    /// preference: the payment report names it `payzeeTrnOrderId`, the
    /// payout export `paymentId` / `paymentID` (Partner Center's payments
    /// schemas).
    pub fn candidates(self) -> &'static [&'static str] {
        match self {
            Key::MerchantUniqueCode => &["merchantUniqueCode", "payzeeTrnOrderId"],
            Key::OrderId => &["orderId", "payzeeTrnOrderId", "paymentId", "paymentID"],
        }
    }
}

/// Columns of the provider's side holding the amount, currency, card and
/// status, in order of preference.
const AMOUNT_COLUMNS: &[&str] = &[
    "amount",
    "trnAmount",
    "totalPayment",
    "paymentAmount",
    "transactionAmount",
];
const CURRENCY_COLUMNS: &[&str] = &[
    "currency",
    "currencyCode",
    "paymentCurrencyCode",
    "payzeeCurrencyCode",
];
const CARD_COLUMNS: &[&str] = &["maskedCardNumber", "cardNumber"];
const STATUS_COLUMNS: &[&str] = &["trnStatus", "status", "paymentStatus", "transactionStatus"];

/// What was sent.
pub enum Sent {
    /// A payment file in `pattern`; `currency` applies when the pattern has
    /// no currency column.
    File {
        path: PathBuf,
        pattern: Pattern,
        currency: Currency,
    },
    /// The ledger's accepted submissions (of `batches`, or all when empty);
    /// `registry` reads the files of parts without results.
    Ledger {
        path: PathBuf,
        registry: Registry,
        batches: Vec<i64>,
    },
}

/// What the provider reports, and optionally which columns to use.
pub struct Against {
    pub path: PathBuf,
    pub key_column: Option<String>,
    pub amount_column: Option<String>,
}

pub struct Options {
    pub key: Key,
    /// Bytes of records held in memory.
    pub memory: usize,
    pub out_dir: PathBuf,
}

/// Whether `path` is a SQLite database (a ledger).
pub fn is_ledger(path: &Path) -> bool {
    let mut magic = [0u8; 16];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"SQLite format 3\0"
}

// ---------------------------------------------------------------------------
// The sides.

type Emit<'a> = dyn FnMut(Rec) -> Result<()> + 'a;

trait Side {
    /// What the side is, for the summary.
    fn label(&self) -> String;
    /// Roughly how much it holds, to choose which side to hold in memory.
    fn size(&self) -> u64;
    /// Calls `emit` with every row, in input order.
    fn each(&mut self, emit: &mut Emit<'_>) -> Result<()>;
    /// Things the reader of the summary must know.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// A reader past a UTF-8 byte-order mark.
fn open_text(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut r = BufReader::with_capacity(256 * 1024, file);
    if r.fill_buf()?.starts_with(b"\xef\xbb\xbf") {
        r.consume(3);
    }
    Ok(r)
}

/// A CSV reader whose records end at `\n`: with the default CRLF handling
/// the csv crate's line numbers lag by one in CRLF files. A `\r` left at the
/// end of a last field is trimmed with the rest of its whitespace.
fn line_reader<R: Read>(delimiter: u8, input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .has_headers(false)
        .flexible(true)
        .from_reader(input)
}

/// The rows of a payment file (or of the part `rows` of it).
struct PaymentFile {
    path: PathBuf,
    pattern: Pattern,
    currency: Currency,
    key: Key,
    /// First and last data row (1-based) to read.
    rows: Option<(u64, u64)>,
    /// Put before `line N` in [`Rec::at`].
    at_prefix: String,
}

impl PaymentFile {
    fn each(&self, emit: &mut Emit<'_>) -> Result<()> {
        let p = &self.pattern;
        let name = self.path.display();
        let key_col = (self.key == Key::OrderId)
            .then(|| p.column_index("orderId"))
            .flatten()
            .or_else(|| p.column_index("merchantUniqueCode"))
            .with_context(|| {
                format!(
                    "pattern {} has no merchantUniqueCode column to match on",
                    p.id
                )
            })?;
        let amount_col = p
            .amount_column()
            .with_context(|| format!("pattern {} has no amount column", p.id))?;
        let card_col = p
            .columns
            .iter()
            .position(|c| matches!(c.kind, ColumnType::CardNumber));
        let currency_col = p.currency_column();
        let mut reader = line_reader(p.delimiter, open_text(&self.path)?);
        let mut rec = csv::ByteRecord::new();
        let mut first = true;
        let mut row = 0u64;
        while reader
            .read_byte_record(&mut rec)
            .with_context(|| format!("reading {name}"))?
        {
            let line = rec.position().map_or(0, |pos| pos.line());
            if std::mem::take(&mut first)
                && match p.header {
                    Header::Present => true,
                    Header::Absent => false,
                    Header::Auto => results::looks_like_header(&rec, p),
                }
            {
                continue;
            }
            row += 1;
            match self.rows {
                Some((from, _)) if row < from => continue,
                Some((_, to)) if row > to => break,
                _ => {}
            }
            let cell = |i: usize| p.decode(rec.get(i).unwrap_or_default()).trim().to_string();
            let key = cell(key_col);
            if key.is_empty() {
                bail!("{name}: line {line}: {} is empty", p.columns[key_col].name);
            }
            let amount = check::decimal(
                rec.get(amount_col).unwrap_or_default().trim_ascii(),
                p.decimal_separator,
            )
            .map_err(|(_, why)| {
                anyhow::anyhow!(
                    "{name}: line {line}: the amount {why}; check the file with `paydrop validate`"
                )
            })?;
            let currency = match currency_col {
                Some(i) => currency_code(&cell(i)),
                None => self.currency.code.to_string(),
            };
            emit(Rec {
                key,
                amount,
                currency,
                card: card_col.map(|i| mask::card(&cell(i))).unwrap_or_default(),
                at: format!("{}line {line}", self.at_prefix),
                status: String::new(),
                seq: 0,
            })?;
        }
        Ok(())
    }
}

impl Side for PaymentFile {
    fn label(&self) -> String {
        format!("{} (pattern {})", self.path.display(), self.pattern.id)
    }

    fn size(&self) -> u64 {
        file_size(&self.path)
    }

    fn each(&mut self, emit: &mut Emit<'_>) -> Result<()> {
        PaymentFile::each(self, emit)
    }
}

/// An ISO alphabetic code for a currency cell (numeric codes too).
fn currency_code(cell: &str) -> String {
    Currency::lookup(cell).map_or_else(|| cell.trim().to_ascii_uppercase(), |c| c.code.into())
}

/// The ledger's accepted submissions.
struct LedgerSide {
    path: PathBuf,
    ledger: Ledger,
    registry: Registry,
    batches: Vec<Batch>,
    notes: Vec<String>,
}

impl LedgerSide {
    fn open(path: &Path, registry: Registry, wanted: &[i64], key: Key) -> Result<LedgerSide> {
        if key != Key::MerchantUniqueCode {
            bail!(
                "the ledger keeps results by merchantUniqueCode: use --key merchantUniqueCode, \
                 or pass the payment file itself as --sent"
            );
        }
        if !path.exists() {
            bail!(
                "there is no ledger at {}: set PAYDROP_LEDGER or [ledger] path",
                path.display()
            );
        }
        let ledger = Ledger::open(path)?;
        let mut batches = ledger.recent_batches(usize::MAX)?;
        batches.reverse();
        if !wanted.is_empty() {
            if let Some(id) = wanted
                .iter()
                .find(|id| !batches.iter().any(|b| b.id == **id))
            {
                bail!("there is no batch {id} in the ledger {}", path.display());
            }
            batches.retain(|b| wanted.contains(&b.id));
        }
        if batches.is_empty() {
            bail!(
                "the ledger {} holds no batches to reconcile",
                path.display()
            );
        }
        Ok(LedgerSide {
            path: path.to_path_buf(),
            ledger,
            registry,
            batches,
            notes: Vec::new(),
        })
    }
}

impl Side for LedgerSide {
    fn label(&self) -> String {
        format!(
            "ledger {} ({} batches)",
            self.path.display(),
            self.batches.len()
        )
    }

    fn size(&self) -> u64 {
        // About the size of a payment file row.
        self.batches.iter().map(|b| b.rows * 150).sum()
    }

    fn each(&mut self, emit: &mut Emit<'_>) -> Result<()> {
        for b in &self.batches {
            for s in &b.submissions {
                let part = format!("batch {} part {}", b.id, s.part);
                if s.state != State::Accepted {
                    self.notes.push(format!(
                        "{part}: {} rows {} {} are {} — not expected at the provider",
                        s.rows, b.currency, s.amount, s.state
                    ));
                    continue;
                }
                if s.results_at.is_some() {
                    let mut declined = Tally::default();
                    self.ledger.each_result_of_submission(s.id, |line| {
                        if !line.is_paid() {
                            declined
                                .add(line.amount)
                                .context("the declined total overflows")?;
                            return Ok(());
                        }
                        emit(Rec {
                            key: line.merchant_unique_code,
                            amount: line.amount,
                            currency: b.currency.clone(),
                            at: format!("batch {} line {}", b.id, line.line_number),
                            ..Rec::default()
                        })
                    })?;
                    if declined.rows > 0 {
                        self.notes.push(format!(
                            "{part}: {} payments ({} {}) were declined per the result file — \
                             not expected at the provider",
                            declined.rows, b.currency, declined.amount
                        ));
                    }
                    continue;
                }
                let file = PathBuf::from(&b.file);
                if !file.exists() {
                    bail!(
                        "{part} has no result file yet and its file {} is gone: wait for the \
                         results, or pass the payment file as --sent",
                        file.display()
                    );
                }
                self.notes.push(format!(
                    "{part}: no result file yet; its {} rows are taken from {}",
                    s.rows,
                    file.display()
                ));
                let source = PaymentFile {
                    path: file,
                    pattern: self.registry.get(b.pattern)?.clone(),
                    currency: Currency::lookup(&b.currency).with_context(|| {
                        format!("batch {} has an unknown currency {}", b.id, b.currency)
                    })?,
                    key: Key::MerchantUniqueCode,
                    rows: Some((s.first_row, s.first_row + s.rows.saturating_sub(1))),
                    at_prefix: format!("batch {} ", b.id),
                };
                source.each(emit)?;
            }
        }
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}

/// Which columns of a provider file are used.
#[derive(Clone, Debug)]
struct Columns {
    names: Vec<String>,
    key: usize,
    amount: usize,
    currency: Option<usize>,
    card: Option<usize>,
    status: Option<usize>,
}

impl Columns {
    fn resolve(names: Vec<String>, key: Key, against: &Against, file: &str) -> Result<Columns> {
        let find = |cands: &[&str]| {
            cands
                .iter()
                .find_map(|c| names.iter().position(|n| n.trim().eq_ignore_ascii_case(c)))
        };
        let required = |given: &Option<String>, cands: &[&str], what: &str, flag: &str| {
            let cands: Vec<&str> = match given {
                Some(g) => vec![g.as_str()],
                None => cands.to_vec(),
            };
            find(&cands).with_context(|| {
                format!(
                    "{file}: no {what} column: looked for {} among its columns ({}); name it \
                     with {flag}",
                    cands.join(" / "),
                    names.join(", ")
                )
            })
        };
        Ok(Columns {
            key: required(
                &against.key_column,
                key.candidates(),
                "key",
                "--against-key-column",
            )?,
            amount: required(
                &against.amount_column,
                AMOUNT_COLUMNS,
                "amount",
                "--against-amount-column",
            )?,
            currency: find(CURRENCY_COLUMNS),
            card: find(CARD_COLUMNS),
            status: find(STATUS_COLUMNS),
            names,
        })
    }

    fn describe(&self) -> String {
        format!(
            "key {}, amount {}",
            self.names[self.key].trim(),
            self.names[self.amount].trim()
        )
    }

    /// The record of a row whose cells `get` returns.
    fn rec(&self, get: impl Fn(usize) -> Option<String>, at: String) -> Result<Rec, String> {
        let key = get(self.key)
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| format!("{} is empty", self.names[self.key].trim()))?;
        let amount = get(self.amount)
            .ok_or_else(|| format!("{} is empty", self.names[self.amount].trim()))?;
        Ok(Rec {
            key: key.trim().to_string(),
            amount: json::decimal(&amount)?,
            currency: self
                .currency
                .and_then(&get)
                .map(|c| currency_code(&c))
                .unwrap_or_default(),
            card: self
                .card
                .and_then(&get)
                .map(|c| mask::card(c.trim()))
                .unwrap_or_default(),
            status: self
                .status
                .and_then(&get)
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            at,
            seq: 0,
        })
    }
}

/// How a provider file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// CSV or TSV with a header row.
    Table(u8),
    JsonLines,
    /// The provider's result file (no header, [`CALLBACK_COLUMNS`]).
    Results,
}

/// A provider file.
struct ProviderFile {
    path: PathBuf,
    layout: Layout,
    key: Key,
    columns: Option<Columns>,
    overrides: Against,
}

impl ProviderFile {
    fn open(against: Against, key: Key) -> Result<ProviderFile> {
        let mut first = Vec::new();
        open_text(&against.path)?
            .take(1 << 20)
            .read_until(b'\n', &mut first)?;
        let text = first.trim_ascii();
        let layout = if text.starts_with(b"{") {
            Layout::JsonLines
        } else if text.starts_with(b"[") {
            bail!(
                "{} is a JSON array: write the report as JSON Lines (`paydrop report payments \
                 --format jsonl`) or CSV",
                against.path.display()
            );
        } else {
            let fields: Vec<&[u8]> = text.split(|b| *b == b',').collect();
            let digits = |f: &[u8]| !f.is_empty() && f.iter().all(u8::is_ascii_digit);
            if fields.len() >= CALLBACK_COLUMNS.len() && digits(fields[0]) && digits(fields[1]) {
                Layout::Results
            } else if text.contains(&b'\t') {
                Layout::Table(b'\t')
            } else {
                Layout::Table(b',')
            }
        };
        if layout == Layout::Results && key != Key::MerchantUniqueCode {
            bail!("a result file carries merchantUniqueCode only: use --key merchantUniqueCode");
        }
        Ok(ProviderFile {
            path: against.path.clone(),
            layout,
            key,
            columns: None,
            overrides: against,
        })
    }

    fn table(&mut self, delimiter: u8, emit: &mut Emit<'_>) -> Result<()> {
        let name = self.path.display().to_string();
        // The header is read as a record: the csv crate's line numbers of
        // later records are then those of the file.
        let mut reader = line_reader(delimiter, open_text(&self.path)?);
        let mut rec = csv::StringRecord::new();
        if !reader
            .read_record(&mut rec)
            .with_context(|| format!("reading {name}"))?
        {
            bail!("{name} is empty");
        }
        let names = rec.iter().map(|n| n.trim().to_string()).collect();
        let cols = Columns::resolve(names, self.key, &self.overrides, &name)?;
        while reader
            .read_record(&mut rec)
            .with_context(|| format!("reading {name}"))?
        {
            let line = rec.position().map_or(0, |p| p.line());
            let get = |i: usize| rec.get(i).map(str::to_string);
            let r = cols
                .rec(get, format!("line {line}"))
                .map_err(|e| anyhow::anyhow!("{name}: line {line}: {e}"))?;
            emit(r)?;
        }
        self.columns = Some(cols);
        Ok(())
    }

    fn json_lines(&mut self, emit: &mut Emit<'_>) -> Result<()> {
        let name = self.path.display().to_string();
        let mut input = open_text(&self.path)?;
        let mut buf = Vec::new();
        let mut cols: Option<Columns> = None;
        for line in 1u64.. {
            buf.clear();
            if (&mut input)
                .take(json_line_limit())
                .read_until(b'\n', &mut buf)?
                == 0
            {
                break;
            }
            if buf.trim_ascii().is_empty() {
                continue;
            }
            let v = json::Reader::new(&buf[..], buf.len())
                .value()
                .with_context(|| format!("{name}: line {line}"))?;
            let json::Value::Object(members) = &v else {
                bail!("{name}: line {line} is not a JSON object");
            };
            let c = match &cols {
                Some(c) => c,
                None => cols.insert(Columns::resolve(
                    members.iter().map(|(k, _)| k.clone()).collect(),
                    self.key,
                    &self.overrides,
                    &name,
                )?),
            };
            let get = |i: usize| v.get(&c.names[i]).and_then(json::Value::text);
            let r = c
                .rec(get, format!("line {line}"))
                .map_err(|e| anyhow::anyhow!("{name}: line {line}: {e}"))?;
            emit(r)?;
        }
        self.columns = cols;
        Ok(())
    }

    fn results(&self, emit: &mut Emit<'_>) -> Result<()> {
        for line in results::parse(open_text(&self.path)?) {
            let line = line.with_context(|| self.path.display().to_string())?;
            let status = if line.is_paid() {
                "approved"
            } else {
                line.outcome.as_str()
            };
            emit(Rec {
                key: line.merchant_unique_code,
                amount: line.amount,
                at: format!("line {}", line.file_line),
                status: status.into(),
                ..Rec::default()
            })?;
        }
        Ok(())
    }
}

/// Longest JSON Lines line accepted.
fn json_line_limit() -> u64 {
    crate::report::MAX_TRANSACTION_BYTES as u64
}

impl Side for ProviderFile {
    fn label(&self) -> String {
        let what = match self.layout {
            Layout::Table(b'\t') => "TSV".to_string(),
            Layout::Table(_) => "CSV".to_string(),
            Layout::JsonLines => "JSON Lines".to_string(),
            Layout::Results => "result file".to_string(),
        };
        let cols = self
            .columns
            .as_ref()
            .map_or_else(String::new, |c| format!(", {}", c.describe()));
        format!("{} ({what}{cols})", self.path.display())
    }

    fn size(&self) -> u64 {
        file_size(&self.path)
    }

    fn each(&mut self, emit: &mut Emit<'_>) -> Result<()> {
        match self.layout {
            Layout::Table(d) => self.table(d, emit),
            Layout::JsonLines => self.json_lines(emit),
            Layout::Results => self.results(emit),
        }
    }
}

// ---------------------------------------------------------------------------
// The sets.

/// Count and exact sum per currency.
pub type Totals = BTreeMap<String, Tally>;

fn add(totals: &mut Totals, currency: &str, amount: Decimal) -> Result<()> {
    totals
        .entry(currency.to_string())
        .or_default()
        .add(amount)
        .with_context(|| format!("the {} total", or_none(currency)))
}

/// Words that mark a provider status as a payment that did not go through.
pub const FAILED_WORDS: [&str; 10] = [
    "fail",
    "declin",
    "refund",
    "reject",
    "revers",
    "cancel",
    "void",
    "error",
    "unsuccess",
    "chargeback",
];

/// Whether the provider's status says the payment did not go through.
pub fn is_failed(status: &str) -> bool {
    let s = status.to_lowercase();
    FAILED_WORDS.iter().any(|w| s.contains(w))
}

/// Amount mismatches of one currency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub rows: u64,
    pub sent: Decimal,
    pub provider: Decimal,
}

/// One side, as read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SideSummary {
    pub label: String,
    pub totals: Totals,
}

/// What reconciling found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub key: String,
    pub sent: SideSummary,
    pub provider: SideSummary,
    /// How the sides were joined.
    pub method: String,
    pub matched: Totals,
    /// Matched rows by the provider's status.
    pub matched_by_status: BTreeMap<String, Totals>,
    /// Pairs the provider reports as failed, declined, refunded, … (sent
    /// amounts), and by the provider's status.
    pub failed_at_provider: Totals,
    pub failed_by_status: BTreeMap<String, Totals>,
    pub amount_mismatch: BTreeMap<String, Mismatch>,
    pub missing_at_provider: Totals,
    pub unknown_at_provider: Totals,
    /// The provider's amounts of the matched and mismatched rows by the
    /// provider's own currency (empty when it names none), for its check.
    pub matched_at_provider: Totals,
    pub mismatch_at_provider: Totals,
    pub failed_provider_side: Totals,
    pub notes: Vec<String>,
    pub out_dir: String,
}

fn rows(t: &Totals) -> u64 {
    t.values().map(|t| t.rows).sum()
}

impl Summary {
    /// Rows that need attention: failed, missing, unknown or with another
    /// amount.
    pub fn attention(&self) -> u64 {
        rows(&self.failed_at_provider)
            + rows(&self.missing_at_provider)
            + rows(&self.unknown_at_provider)
            + self.amount_mismatch.values().map(|m| m.rows).sum::<u64>()
    }

    /// Every row matched with the same amount.
    pub fn reconciled(&self) -> bool {
        self.attention() == 0
    }

    /// The report a finance team signs off on.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "paydrop reconcile — key {}", self.key);
        for (name, side) in [("sent", &self.sent), ("provider", &self.provider)] {
            let _ = writeln!(s, "  {name:<9} {}", side.label);
            for (c, t) in &side.totals {
                let _ = writeln!(
                    s,
                    "            {} rows, {} {}",
                    t.rows,
                    or_none(c),
                    t.amount
                );
            }
        }
        let _ = writeln!(s, "  method    {}", self.method);
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  {:<22} {:>10}  {:<8} {:>20}",
            "set", "rows", "currency", "amount"
        );
        let set = |s: &mut String, name: &str, t: &Totals| {
            if t.is_empty() {
                let _ = writeln!(s, "  {name:<22} {:>10}", 0);
            }
            for (c, t) in t {
                let _ = writeln!(
                    s,
                    "  {name:<22} {:>10}  {:<8} {:>20}",
                    t.rows,
                    or_none(c),
                    t.amount
                );
            }
        };
        set(&mut s, "matched", &self.matched);
        if self.amount_mismatch.is_empty() {
            let _ = writeln!(s, "  {:<22} {:>10}", "amount mismatch", 0);
        }
        for (c, m) in &self.amount_mismatch {
            let _ = writeln!(
                s,
                "  {:<22} {:>10}  {:<8} {:>20}  sent, {} at the provider (difference {})",
                "amount mismatch",
                m.rows,
                or_none(c),
                m.sent,
                m.provider,
                m.provider
                    .checked_sub(m.sent)
                    .map_or_else(|| "out of range".into(), |d| d.to_string())
            );
        }
        set(&mut s, "failed at provider", &self.failed_at_provider);
        set(&mut s, "missing at provider", &self.missing_at_provider);
        set(&mut s, "unknown at provider", &self.unknown_at_provider);
        for (title, by_status) in [
            ("matched", &self.matched_by_status),
            ("failed at provider", &self.failed_by_status),
        ] {
            if by_status.len() < 2 && title == "matched" || by_status.is_empty() {
                continue;
            }
            let _ = writeln!(s, "  {title}, by the provider's status:");
            for (status, t) in by_status {
                for (c, t) in t {
                    let _ = writeln!(
                        s,
                        "    {:<20} {:>10}  {:<8} {:>20}",
                        or_none(status),
                        t.rows,
                        or_none(c),
                        t.amount
                    );
                }
            }
        }
        let _ = writeln!(s);
        for line in self.checks() {
            let _ = writeln!(s, "  check     {line}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note      {n}");
        }
        let _ = writeln!(s, "  files     {}", self.out_dir);
        if self.reconciled() {
            let _ = writeln!(
                s,
                "RECONCILED: all {} rows matched with the same amount",
                rows(&self.matched)
            );
        } else {
            let _ = writeln!(
                s,
                "NOT RECONCILED: {} rows need attention ({} failed at the provider, {} missing at \
                 the provider, {} unknown at the provider, {} with another amount)",
                self.attention(),
                rows(&self.failed_at_provider),
                rows(&self.missing_at_provider),
                rows(&self.unknown_at_provider),
                self.amount_mismatch.values().map(|m| m.rows).sum::<u64>()
            );
        }
        s
    }

    /// Each side's total against the sets it was split into.
    fn checks(&self) -> Vec<String> {
        let of = |t: &Totals, c: &str| t.get(c).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for (side, totals, alone) in [
            ("sent", &self.sent.totals, "missing"),
            ("provider", &self.provider.totals, "unknown"),
        ] {
            for (c, total) in totals {
                let parts = if side == "sent" {
                    let mm = self.amount_mismatch.get(c).cloned().unwrap_or_default();
                    let mismatch = Tally {
                        rows: mm.rows,
                        amount: mm.sent,
                    };
                    [
                        of(&self.matched, c),
                        mismatch,
                        of(&self.failed_at_provider, c),
                        of(&self.missing_at_provider, c),
                    ]
                } else {
                    [
                        of(&self.matched_at_provider, c),
                        of(&self.mismatch_at_provider, c),
                        of(&self.failed_provider_side, c),
                        of(&self.unknown_at_provider, c),
                    ]
                };
                let mut sum = Tally::default();
                let added = parts.iter().try_for_each(|t| sum.merge(t));
                let (rows, amount) = (sum.rows, sum.amount);
                let ok = added.is_ok() && rows == total.rows && amount == total.amount;
                out.push(format!(
                    "{side} {}: {} rows {} = matched + mismatch + failed + {alone} ({rows} rows {amount}) {}",
                    or_none(c),
                    total.rows,
                    total.amount,
                    if ok { "ok" } else { "DOES NOT ADD UP" }
                ));
            }
        }
        out
    }
}

/// A currency or status for the summary; `(none)` when a side names none.
fn or_none(c: &str) -> &str {
    if c.is_empty() {
        "(none)"
    } else {
        c
    }
}

/// An output file written under a temporary name beside its final one.
struct Staged {
    name: &'static str,
    writer: csv::Writer<BufWriter<File>>,
    path: tempfile::TempPath,
}

impl Staged {
    fn create(dir: &Path, name: &'static str, header: &[&str]) -> Result<Staged> {
        let (file, path) = tempfile::Builder::new()
            .prefix(&format!(".{name}-"))
            .tempfile_in(dir)
            .with_context(|| format!("creating a file in {}", dir.display()))?
            .into_parts();
        let mut writer = csv::Writer::from_writer(BufWriter::with_capacity(256 * 1024, file));
        writer.write_record(header)?;
        Ok(Staged { name, writer, path })
    }

    /// Flushed and synced, ready to be renamed into place.
    fn close(self) -> Result<(&'static str, tempfile::TempPath)> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", self.name, e.error()))?
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", self.name, e.error()))?;
        file.sync_all()?;
        Ok((self.name, self.path))
    }
}

/// Renames every staged file to its final name in `dir`.
fn publish(dir: &Path, files: Vec<(&'static str, tempfile::TempPath)>) -> Result<()> {
    for (name, path) in files {
        let target = dir.join(name);
        path.persist(&target)
            .with_context(|| format!("moving the result into {}", target.display()))?;
    }
    Ok(())
}

/// A whole text file, staged.
fn stage_text(
    dir: &Path,
    name: &'static str,
    text: &[u8],
) -> Result<(&'static str, tempfile::TempPath)> {
    use std::io::Write as _;
    let mut f = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempfile_in(dir)?;
    f.write_all(text)?;
    f.as_file().sync_all()?;
    Ok((name, f.into_temp_path()))
}

/// The five output files and what went into them.
struct Sets {
    matched: Staged,
    failed: Staged,
    mismatch: Staged,
    missing: Staged,
    unknown: Staged,
    summary: Summary,
}

/// Names of the output files.
pub const MATCHED_CSV: &str = "matched.csv";
pub const FAILED_CSV: &str = "failed-at-provider.csv";
pub const MISMATCH_CSV: &str = "amount-mismatch.csv";
pub const MISSING_CSV: &str = "missing-at-provider.csv";
pub const UNKNOWN_CSV: &str = "unknown-at-provider.csv";

const PAIR_HEADER: [&str; 8] = [
    "key",
    "currency",
    "amount",
    "sent_at",
    "provider_at",
    "provider_status",
    "card",
    "provider_amount",
];

impl Sets {
    fn create(dir: &Path, summary: Summary) -> Result<Sets> {
        Ok(Sets {
            matched: Staged::create(dir, MATCHED_CSV, &PAIR_HEADER[..7])?,
            failed: Staged::create(dir, FAILED_CSV, &PAIR_HEADER)?,
            mismatch: Staged::create(
                dir,
                MISMATCH_CSV,
                &[
                    "key",
                    "sent_currency",
                    "sent_amount",
                    "provider_currency",
                    "provider_amount",
                    "difference",
                    "sent_at",
                    "provider_at",
                    "provider_status",
                    "card",
                ],
            )?,
            missing: Staged::create(
                dir,
                MISSING_CSV,
                &["key", "currency", "amount", "sent_at", "card"],
            )?,
            unknown: Staged::create(
                dir,
                UNKNOWN_CSV,
                &[
                    "key",
                    "currency",
                    "amount",
                    "provider_at",
                    "provider_status",
                    "card",
                ],
            )?,
            summary,
        })
    }

    fn pair(&mut self, s: Rec, p: Rec) -> Result<()> {
        let same_currency =
            s.currency.is_empty() || p.currency.is_empty() || s.currency == p.currency;
        let currency = if s.currency.is_empty() {
            &p.currency
        } else {
            &s.currency
        };
        let card = if s.card.is_empty() { &p.card } else { &s.card };
        let summary = &mut self.summary;
        if is_failed(&p.status) {
            let amount = s.amount.to_string();
            let provider_amount = p.amount.to_string();
            self.failed.writer.write_record([
                &s.key,
                currency,
                &amount,
                &s.at,
                &p.at,
                &p.status,
                card,
                &provider_amount,
            ])?;
            add(&mut summary.failed_at_provider, currency, s.amount)?;
            add(&mut summary.failed_provider_side, &p.currency, p.amount)?;
            let by_status = summary.failed_by_status.entry(p.status.clone());
            add(by_status.or_default(), currency, s.amount)?;
        } else if s.amount == p.amount && same_currency {
            let amount = s.amount.to_string();
            self.matched
                .writer
                .write_record([&s.key, currency, &amount, &s.at, &p.at, &p.status, card])?;
            add(&mut summary.matched, currency, s.amount)?;
            add(&mut summary.matched_at_provider, &p.currency, p.amount)?;
            let by_status = summary.matched_by_status.entry(p.status.clone());
            add(by_status.or_default(), currency, s.amount)?;
        } else {
            let difference = p
                .amount
                .checked_sub(s.amount)
                .context("the difference of two amounts overflows")?;
            self.mismatch.writer.write_record([
                &s.key,
                &s.currency,
                &s.amount.to_string(),
                &p.currency,
                &p.amount.to_string(),
                &difference.to_string(),
                &s.at,
                &p.at,
                &p.status,
                card,
            ])?;
            let m = summary.amount_mismatch.entry(currency.clone()).or_default();
            let overflow = || anyhow::anyhow!("the amount mismatch total overflows");
            m.rows += 1;
            m.sent = m.sent.checked_add(s.amount).ok_or_else(overflow)?;
            m.provider = m.provider.checked_add(p.amount).ok_or_else(overflow)?;
            add(&mut summary.mismatch_at_provider, &p.currency, p.amount)?;
        }
        Ok(())
    }

    fn missing(&mut self, s: Rec) -> Result<()> {
        let amount = s.amount.to_string();
        self.missing
            .writer
            .write_record([&s.key, &s.currency, &amount, &s.at, &s.card])?;
        add(&mut self.summary.missing_at_provider, &s.currency, s.amount)
    }

    fn unknown(&mut self, p: Rec) -> Result<()> {
        let amount = p.amount.to_string();
        self.unknown.writer.write_record([
            &p.key,
            &p.currency,
            &amount,
            &p.at,
            &p.status,
            &p.card,
        ])?;
        add(&mut self.summary.unknown_at_provider, &p.currency, p.amount)
    }

    /// The row of one side that has no partner.
    fn alone(&mut self, rec: Rec, sent: bool) -> Result<()> {
        if sent {
            self.missing(rec)
        } else {
            self.unknown(rec)
        }
    }

    /// A pair, given as (held, streamed).
    fn pair_held(&mut self, held: Rec, streamed: Rec, held_is_sent: bool) -> Result<()> {
        if held_is_sent {
            self.pair(held, streamed)
        } else {
            self.pair(streamed, held)
        }
    }

    /// The staged files, closed, and the summary.
    fn finish(self) -> Result<(Vec<(&'static str, tempfile::TempPath)>, Summary)> {
        let files = [
            self.matched,
            self.failed,
            self.mismatch,
            self.missing,
            self.unknown,
        ]
        .into_iter()
        .map(Staged::close)
        .collect::<Result<Vec<_>>>()?;
        Ok((files, self.summary))
    }
}

/// Reads a side, numbering its rows and totalling them.
fn read_side(
    side: &mut dyn Side,
    totals: &mut Totals,
    mut sink: impl FnMut(Rec) -> Result<()>,
) -> Result<()> {
    let mut seq = 0u64;
    side.each(&mut |mut rec: Rec| {
        rec.seq = seq;
        seq += 1;
        add(totals, &rec.currency, rec.amount)?;
        sink(rec)
    })
}

/// Reconciles `sent` with `against`, writing the sets into `opts.out_dir`.
pub fn reconcile(sent: Sent, against: Against, opts: &Options) -> Result<Summary> {
    let mut sent_side: Box<dyn Side> = match sent {
        Sent::File {
            path,
            pattern,
            currency,
        } => Box::new(PaymentFile {
            path,
            pattern,
            currency,
            key: opts.key,
            rows: None,
            at_prefix: String::new(),
        }),
        Sent::Ledger {
            path,
            registry,
            batches,
        } => Box::new(LedgerSide::open(&path, registry, &batches, opts.key)?),
    };
    let mut provider_side: Box<dyn Side> = Box::new(ProviderFile::open(against, opts.key)?);
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".reconcile-runs-")
        .tempdir_in(&opts.out_dir)?;
    let summary = Summary {
        key: opts.key.name().into(),
        out_dir: opts.out_dir.display().to_string(),
        ..Summary::default()
    };
    let mut sets = Sets::create(&opts.out_dir, summary)?;

    let held_is_sent = sent_side.size() <= provider_side.size();
    let (held, streamed) = if held_is_sent {
        (&mut sent_side, &mut provider_side)
    } else {
        (&mut provider_side, &mut sent_side)
    };
    let mut held_totals = Totals::new();
    let mut streamed_totals = Totals::new();
    let half = (opts.memory / 2).max(1);
    let mut sorter = Sorter::new(half, work.path());
    read_side(held.as_mut(), &mut held_totals, |r| Ok(sorter.push(r)?))?;
    let held_name = if held_is_sent { "sent" } else { "provider's" };
    let method = match sorter.into_memory() {
        Ok(records) => {
            hash_join(
                records,
                held_is_sent,
                streamed.as_mut(),
                &mut streamed_totals,
                &mut sets,
            )?;
            format!("hash join (the {held_name} side held in memory)")
        }
        Err(sorter) => {
            let held_runs = sorter.runs();
            let held_sorted = sorter.finish()?;
            let mut other = Sorter::new(half, work.path());
            read_side(streamed.as_mut(), &mut streamed_totals, |r| {
                Ok(other.push(r)?)
            })?;
            let other_runs = other.runs();
            let other_sorted = other.finish()?;
            let (s, p) = if held_is_sent {
                (held_sorted, other_sorted)
            } else {
                (other_sorted, held_sorted)
            };
            merge_join(s, p, &mut sets)?;
            format!(
                "external sort-merge ({held_runs} + {other_runs} sorted runs on disk, {} MiB \
                 of records in memory at most)",
                opts.memory >> 20
            )
        }
    };
    let (sent_totals, provider_totals) = if held_is_sent {
        (held_totals, streamed_totals)
    } else {
        (streamed_totals, held_totals)
    };
    let (mut files, mut summary) = sets.finish()?;
    summary.method = method;
    summary.sent = SideSummary {
        label: sent_side.label(),
        totals: sent_totals,
    };
    summary.provider = SideSummary {
        label: provider_side.label(),
        totals: provider_totals,
    };
    summary.notes = sent_side.notes();
    files.push(stage_text(
        &opts.out_dir,
        "summary.txt",
        summary.text().as_bytes(),
    )?);
    let json = serde_json::to_vec_pretty(&summary)?;
    files.push(stage_text(&opts.out_dir, "summary.json", &json)?);
    publish(&opts.out_dir, files)?;
    Ok(summary)
}

/// The held side in memory, the other streamed past it.
fn hash_join(
    mut held: Vec<Rec>,
    held_is_sent: bool,
    streamed: &mut dyn Side,
    totals: &mut Totals,
    sets: &mut Sets,
) -> Result<()> {
    held.sort_unstable_by(|a, b| a.key.cmp(&b.key).then(a.seq.cmp(&b.seq)));
    // Key → (next unpaired, end) in `held`.
    let mut index: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, r) in held.iter().enumerate() {
        index
            .entry(r.key.clone())
            .and_modify(|e| e.1 = i + 1)
            .or_insert((i, i + 1));
    }
    let mut taken = vec![false; held.len()];
    read_side(streamed, totals, |rec| {
        match index.get_mut(&rec.key).filter(|(next, end)| next < end) {
            Some((next, _)) => {
                let partner = std::mem::take(&mut held[*next]);
                taken[*next] = true;
                *next += 1;
                sets.pair_held(partner, rec, held_is_sent)
            }
            None => sets.alone(rec, !held_is_sent),
        }
    })?;
    for (rec, taken) in held.into_iter().zip(taken) {
        if !taken {
            sets.alone(rec, held_is_sent)?;
        }
    }
    Ok(())
}

/// Both sides sorted by key, walked together.
fn merge_join(mut sent: Sorted, mut provider: Sorted, sets: &mut Sets) -> Result<()> {
    let mut s = sent.next().transpose()?;
    let mut p = provider.next().transpose()?;
    loop {
        match (s.take(), p.take()) {
            (None, None) => return Ok(()),
            (Some(x), None) => {
                sets.missing(x)?;
                s = sent.next().transpose()?;
            }
            (None, Some(y)) => {
                sets.unknown(y)?;
                p = provider.next().transpose()?;
            }
            (Some(x), Some(y)) => match x.key.cmp(&y.key) {
                std::cmp::Ordering::Equal => {
                    sets.pair(x, y)?;
                    s = sent.next().transpose()?;
                    p = provider.next().transpose()?;
                }
                std::cmp::Ordering::Less => {
                    sets.missing(x)?;
                    s = sent.next().transpose()?;
                    p = Some(y);
                }
                std::cmp::Ordering::Greater => {
                    sets.unknown(y)?;
                    p = provider.next().transpose()?;
                    s = Some(x);
                }
            },
        }
    }
}
