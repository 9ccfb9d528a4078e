//! The two sides: what was sent (a payment file, read by the pattern through
//! [`crate::read::Records`], or the ledger) and what the provider reports (a
//! table with a header, JSON Lines, or a result file), each streamed row by
//! row as [`Rec`]s.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use super::{refuse, Against, Context, Key, Rec, Result};
use crate::api::CALLBACK_COLUMNS;
use crate::currency::Currency;
use crate::ledger::{Batch, Ledger, State};
use crate::mask;
use crate::pattern::{ColumnType, Pattern, Registry};
use crate::read::{Kind, Records, DEFAULT_MAX_LINE_BYTES};
use crate::report::json;
use crate::results;
use crate::totals::Tally;
use crate::validate::check;

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

pub(super) type Emit<'a> = dyn FnMut(Rec) -> Result<()> + 'a;

pub(super) trait Side {
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
    let file = File::open(path).context(|| format!("cannot open {}", path.display()))?;
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
pub(super) struct PaymentFile {
    pub(super) path: PathBuf,
    pub(super) pattern: Pattern,
    pub(super) currency: Currency,
    pub(super) key: Key,
    /// First and last data row (1-based) to read.
    pub(super) rows: Option<(u64, u64)>,
    /// Put before `line N` in [`Rec::at`].
    pub(super) at_prefix: String,
}

impl PaymentFile {
    fn each(&self, emit: &mut Emit<'_>) -> Result<()> {
        let p = &self.pattern;
        let name = self.path.display();
        let key_col = (self.key == Key::OrderId)
            .then(|| p.column_index("orderId"))
            .flatten()
            .or_else(|| p.column_index("merchantUniqueCode"))
            .context(|| {
                format!(
                    "pattern {} has no merchantUniqueCode column to match on",
                    p.id
                )
            })?;
        let amount_col = p
            .amount_column()
            .context(|| format!("pattern {} has no amount column", p.id))?;
        let card_col = p
            .columns
            .iter()
            .position(|c| matches!(c.kind, ColumnType::CardNumber));
        let currency_col = p.currency_column();
        let file = File::open(&self.path).context(|| format!("cannot open {name}"))?;
        // The line limit of `validate`'s default: a file that validated with
        // a larger `--max-line-bytes` is not a payment file anyone sends.
        let (mut records, _) = Records::open(p, file, DEFAULT_MAX_LINE_BYTES);
        let mut rec = ByteRecord::new();
        while let Some(kind) = records
            .next(&mut rec)
            .context(|| format!("reading {name}"))?
        {
            let Kind::Row(row) = kind else { continue };
            match self.rows {
                Some((from, _)) if row < from => continue,
                Some((_, to)) if row > to => break,
                _ => {}
            }
            let line = rec.position().map_or(0, |pos| pos.line());
            let cell = |i: usize| p.decode(rec.get(i).unwrap_or_default()).trim().to_string();
            let key = cell(key_col);
            if key.is_empty() {
                refuse!("{name}: line {line}: {} is empty", p.columns[key_col].name);
            }
            let amount = check::decimal(
                rec.get(amount_col).unwrap_or_default().trim_ascii(),
                p.decimal_separator,
            )
            .map_err(|(_, why)| {
                super::ReconcileError::Input(format!(
                    "{name}: line {line}: the amount {why}; check the file with `paydrop validate`"
                ))
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
pub(super) struct LedgerSide {
    path: PathBuf,
    ledger: Ledger,
    registry: Registry,
    batches: Vec<Batch>,
    notes: Vec<String>,
}

impl LedgerSide {
    pub(super) fn open(
        path: &Path,
        registry: Registry,
        wanted: &[i64],
        key: Key,
    ) -> Result<LedgerSide> {
        if key != Key::MerchantUniqueCode {
            refuse!(
                "the ledger keeps results by merchantUniqueCode: use --key merchantUniqueCode, \
                 or pass the payment file itself as --sent"
            );
        }
        if !path.exists() {
            refuse!(
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
                refuse!("there is no batch {id} in the ledger {}", path.display());
            }
            batches.retain(|b| wanted.contains(&b.id));
        }
        if batches.is_empty() {
            refuse!(
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
                            declined.add(line.amount).map_err(|_| {
                                super::ReconcileError::Overflow("the declined total".into())
                            })?;
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
                    refuse!(
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
                    currency: Currency::lookup(&b.currency).context(|| {
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
            find(&cands).context(|| {
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
pub(super) struct ProviderFile {
    path: PathBuf,
    layout: Layout,
    key: Key,
    columns: Option<Columns>,
    overrides: Against,
}

impl ProviderFile {
    pub(super) fn open(against: Against, key: Key) -> Result<ProviderFile> {
        let mut first = Vec::new();
        open_text(&against.path)?
            .take(1 << 20)
            .read_until(b'\n', &mut first)?;
        let text = first.trim_ascii();
        let layout = if text.starts_with(b"{") {
            Layout::JsonLines
        } else if text.starts_with(b"[") {
            refuse!(
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
            refuse!("a result file carries merchantUniqueCode only: use --key merchantUniqueCode");
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
            .context(|| format!("reading {name}"))?
        {
            refuse!("{name} is empty");
        }
        let names = rec.iter().map(|n| n.trim().to_string()).collect();
        let cols = Columns::resolve(names, self.key, &self.overrides, &name)?;
        while reader
            .read_record(&mut rec)
            .context(|| format!("reading {name}"))?
        {
            let line = rec.position().map_or(0, |p| p.line());
            let get = |i: usize| rec.get(i).map(str::to_string);
            let r = cols
                .rec(get, format!("line {line}"))
                .context(|| format!("{name}: line {line}"))?;
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
                .context(|| format!("{name}: line {line}"))?;
            let json::Value::Object(members) = &v else {
                refuse!("{name}: line {line} is not a JSON object");
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
                .context(|| format!("{name}: line {line}"))?;
            emit(r)?;
        }
        self.columns = cols;
        Ok(())
    }

    fn results(&self, emit: &mut Emit<'_>) -> Result<()> {
        for line in results::parse(open_text(&self.path)?) {
            let line = line.context(|| self.path.display().to_string())?;
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
