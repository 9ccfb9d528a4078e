//! The durable local ledger (SQLite, WAL, synchronous=FULL): what was sent,
//! when, under which MerchantUniqueCode, and what the provider answered.
//!
//! Every submission is written *before* its HTTP call and every attempt is
//! opened before and closed after it, so that after a crash the ledger tells
//! exactly which submissions may have reached the provider. That record is
//! what stops paydrop from ever paying the same file twice.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::results::{ResultError, ResultLine};

/// A ledger failure; the path is part of the message so that a user knows
/// which file to look at.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("ledger {path} cannot be opened: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("ledger holds an unreadable value: {0}")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, LedgerError>;

/// Where a submission stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Recorded; no answer from the provider yet. If an attempt was started
    /// and the process died, the provider may or may not have the batch.
    Pending,
    /// The provider accepted it (it has a BulkPaymentId).
    Accepted,
    /// The provider refused it; nothing was paid.
    Rejected,
    /// Bytes were sent and no definite answer came: the provider may or may
    /// not have it. Never sent again automatically (unless the provider is
    /// configured as deduplicating MerchantUniqueCodes) until the bulk
    /// inquiry or the operator (`paydrop resolve`) says it was not received.
    Unknown,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Accepted => "accepted",
            State::Rejected => "rejected",
            State::Unknown => "unknown",
        }
    }
}

impl FromStr for State {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => State::Pending,
            "accepted" => State::Accepted,
            "rejected" => State::Rejected,
            "unknown" => State::Unknown,
            other => return Err(LedgerError::Corrupt(format!("state '{other}'"))),
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one HTTP attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Accepted,
    Rejected,
    /// Nothing reached the provider (connection refused, DNS, TLS handshake,
    /// an invalid URL): safe to send again.
    NotSent,
    /// The provider answered that it did not process the request (429, 503,
    /// 408): safe to send again.
    NotProcessed,
    /// Bytes were sent and no definite answer came (a timeout, a dropped
    /// connection, a 500/502/504, an unreadable answer): the provider may
    /// have the batch.
    Ambiguous,
    /// paydrop stopped the request before its end (the file changed since
    /// it was validated): the provider never had a complete request.
    Aborted,
}

impl AttemptOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Accepted => "accepted",
            AttemptOutcome::Rejected => "rejected",
            AttemptOutcome::NotSent => "not_sent",
            AttemptOutcome::NotProcessed => "not_processed",
            AttemptOutcome::Ambiguous => "ambiguous",
            AttemptOutcome::Aborted => "aborted",
        }
    }
}

/// What the operator (`paydrop resolve`) or the provider's bulk inquiry
/// found out about a submission of unknown outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The provider has it: accepted, with its BulkPaymentId when known.
    Received { bulk_payment_id: Option<i64> },
    /// The provider does not have it: it is sent again, with its original
    /// MerchantUniqueCode, by the next submit or daemon pass.
    NotReceived,
}

/// Rows of a new file that were sent before in a batch that is accepted, of
/// unknown outcome or still in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SentBefore {
    /// How many of the file's rows.
    pub rows: u64,
    /// The first few of them, in file order.
    pub examples: Vec<SentExample>,
    /// The earlier parts that hold them.
    pub parts: Vec<EarlierPart>,
}

/// One row of a new file that was sent before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SentExample {
    /// Its `lineNumber` (its row in the file when the pattern has none).
    pub line_number: i64,
    /// Its payment code, when the pattern has one.
    pub code: Option<String>,
}

/// An earlier submission holding rows of a new file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EarlierPart {
    pub batch_id: i64,
    pub part: u32,
    pub file: String,
    pub state: State,
    pub bulk_payment_id: Option<i64>,
    pub updated_at: DateTime<Utc>,
    /// How many of the new file's rows it holds.
    pub rows: u64,
}

/// What [`Ledger::create_batch_claiming_rows`] did.
#[derive(Clone, Debug)]
pub enum Claim {
    /// The batch and its rows are recorded; `overlap` is what `force` let
    /// through (empty without it).
    Created { batch: Batch, overlap: SentBefore },
    /// Rows were sent before and `force` was not given: nothing recorded.
    Refused(SentBefore),
}

/// One delivery of result lines for a submission: a page of a callback (an
/// unpaged callback is page 1 of 1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultPage {
    pub number: u32,
    pub total: Option<u32>,
    pub has_more: Option<bool>,
    /// The provider's message about the batch as a whole.
    pub error_message: Option<String>,
}

/// What recording a page of results did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageRecorded {
    /// Stored (every line checked against the rows sent): `new_lines` rows
    /// got their outcome now, the others had the same one already.
    Stored {
        lines: u64,
        new_lines: u64,
        progress: ResultProgress,
        /// This page made the submission's results complete.
        completed: bool,
    },
    /// Nothing was stored: the page does not match what was sent.
    Mismatch(String),
    /// Nothing was stored: the page contradicts results recorded before.
    Conflict(String),
    /// Nothing was stored: the file could not be read to its end (too
    /// large once decompressed, broken gzip).
    Unreadable {
        kind: std::io::ErrorKind,
        reason: String,
    },
}

/// How far a submission's results are: rows with an outcome, pages in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResultProgress {
    pub rows_sent: u64,
    pub rows_with_result: u64,
    /// Pages received (distinct page numbers).
    pub pages_received: u32,
    /// How many pages there are, once a page said so (`TotalPages`, or the
    /// page with `HasMorePages` false).
    pub pages_expected: Option<u32>,
    /// Ranges of page numbers not received yet (of the expected ones).
    pub missing_pages: Vec<(u32, u32)>,
    /// The provider's latest message about the batch as a whole.
    pub error_message: Option<String>,
    /// Every page in and every row sent has exactly one outcome.
    pub complete: bool,
}

impl fmt::Display for ResultProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.complete {
            return write!(f, "results complete: {} rows", self.rows_sent);
        }
        write!(
            f,
            "results incomplete: {} of {} rows",
            self.rows_with_result, self.rows_sent
        )?;
        match self.pages_expected {
            None if self.pages_received == 0 => write!(f, ", no page received")?,
            None => write!(
                f,
                ", {} pages received, the last one not yet",
                self.pages_received
            )?,
            Some(n) if !self.missing_pages.is_empty() => {
                let missing: Vec<String> = self
                    .missing_pages
                    .iter()
                    .map(|&(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                write!(
                    f,
                    ", {} of {n} pages received, missing {}",
                    self.pages_received,
                    missing.join(", ")
                )?
            }
            Some(n) => write!(f, ", all {n} pages received")?,
        }
        if let Some(m) = &self.error_message {
            write!(f, "; the provider says: {m}")?;
        }
        Ok(())
    }
}

/// One row as it was sent: what its result line must echo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRow {
    /// The row's `lineNumber` cell (its 1-based row in the file when the
    /// pattern has no such column).
    pub line_number: i64,
    /// The row's payment code (`merchantUniqueCode`), when the pattern has one.
    pub code: Option<String>,
    pub amount: Decimal,
    /// The fingerprint the row is looked up under (see
    /// the crate's `sent` module): its code's, or the row's own without a code.
    pub identity: i64,
    /// The card number masked to its first 6 and last 4 digits, when the
    /// pattern has one (never the full number).
    pub card: Option<String>,
}

impl SentRow {
    /// A row identified by its payment code: the identity is the code's
    /// fingerprint.
    pub fn with_code(line_number: i64, code: String, amount: Decimal) -> SentRow {
        SentRow {
            line_number,
            identity: code_fingerprint(&code),
            code: Some(code),
            amount,
            card: None,
        }
    }
}

/// The 64-bit fingerprint under which a payment code is looked up (stored as
/// SQLite's signed integer).
pub fn code_fingerprint(code: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64(code.as_bytes()) as i64
}

/// What a batch is: one file sent as one or more parts, and how. Recorded
/// when the batch is created; only `file` changes after (it follows the
/// file to `done/`).
#[derive(Clone, Debug, Serialize)]
pub struct BatchInfo {
    pub sha256: String,
    pub file: String,
    pub pattern: u16,
    pub currency: String,
    pub currency_id: u32,
    pub installment: u32,
    pub half_2d: bool,
    pub compression: String,
    pub rows: u64,
    pub amount: Decimal,
    /// 0 for the first submission of this content, n for the n-th forced one.
    pub generation: u32,
}

impl Default for BatchInfo {
    /// Nothing yet, sent as the command line sends by default: pattern 1,
    /// TRY, one installment, no pre-authorisation, gzip, first generation.
    fn default() -> Self {
        BatchInfo {
            sha256: String::new(),
            file: String::new(),
            pattern: 1,
            currency: "TRY".into(),
            currency_id: crate::api::TRY_CURRENCY_ID,
            installment: 1,
            half_2d: false,
            compression: "gzip".into(),
            rows: 0,
            amount: Decimal::ZERO,
            generation: 0,
        }
    }
}

/// A batch about to be submitted.
#[derive(Clone, Debug)]
pub struct NewBatch {
    pub info: BatchInfo,
    pub parts: Vec<NewSubmission>,
}

impl std::ops::Deref for NewBatch {
    type Target = BatchInfo;
    fn deref(&self) -> &BatchInfo {
        &self.info
    }
}

#[derive(Clone, Debug)]
pub struct NewSubmission {
    pub part: u32,
    /// First data row of the part (1-based) in the whole file.
    pub first_row: u64,
    pub merchant_unique_code: String,
    pub rows: u64,
    pub amount: Decimal,
}

/// A file submitted (or being submitted) as one or more parts.
#[derive(Clone, Debug, Serialize)]
pub struct Batch {
    pub id: i64,
    #[serde(flatten)]
    pub info: BatchInfo,
    pub created_at: DateTime<Utc>,
    pub submissions: Vec<Submission>,
}

/// A batch's fields are read as its [`BatchInfo`]'s (`batch.file`).
impl std::ops::Deref for Batch {
    type Target = BatchInfo;
    fn deref(&self) -> &BatchInfo {
        &self.info
    }
}

impl Batch {
    /// True when every part was accepted.
    pub fn is_accepted(&self) -> bool {
        self.submissions.iter().all(|s| s.state == State::Accepted)
    }
}

/// One part: one call to `startdirect`.
#[derive(Clone, Debug, Serialize)]
pub struct Submission {
    pub id: i64,
    pub batch_id: i64,
    pub part: u32,
    pub first_row: u64,
    pub merchant_unique_code: String,
    pub rows: u64,
    pub amount: Decimal,
    pub state: State,
    /// When the provider's result file for this part was recorded.
    pub results_at: Option<DateTime<Utc>>,
    pub bulk_payment_id: Option<i64>,
    pub message: Option<String>,
    pub response: Option<String>,
    pub attempts: u32,
    /// An attempt was started and never finished: the process died mid-call.
    pub interrupted: bool,
    /// When the latest attempt without a definite outcome (ambiguous,
    /// interrupted) since the last resolution ended, or started if it never
    /// ended; `None` when the provider answered every attempt since.
    pub ambiguous_at: Option<DateTime<Utc>>,
    /// What `paydrop resolve` or the bulk inquiry last found out.
    pub resolution: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Submission {
    /// Whether the provider may hold this submission without our knowing.
    pub fn outcome_unknown(&self) -> bool {
        self.state == State::Unknown
            || (self.state == State::Pending && self.ambiguous_at.is_some())
    }
}

/// One HTTP attempt.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub http_status: Option<u16>,
    pub message: Option<String>,
}

/// A marketplace payout order (`paydrop payout trigger`): recorded
/// `pending` before the call, settled after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PayoutOrder {
    pub id: i64,
    pub currency: String,
    pub currency_id: u32,
    pub date_from: NaiveDate,
    pub date_to: NaiveDate,
    pub test_mode: bool,
    pub skip_exists_control: bool,
    /// `Accepted` means the provider ordered the payout.
    pub state: State,
    pub message: Option<String>,
    /// The provider's `JobId`, the key of the inquiry.
    pub job_id: Option<String>,
    /// What the last inquiry said.
    pub inquiry: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl fmt::Display for PayoutOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payout order #{} ({} {} to {}{}, {} on {}{})",
            self.id,
            self.currency,
            self.date_from,
            self.date_to,
            if self.test_mode { ", test mode" } else { "" },
            match self.state {
                State::Accepted => "ordered",
                other => other.as_str(),
            },
            self.created_at.format("%Y-%m-%d %H:%M UTC"),
            self.job_id
                .as_deref()
                .map_or_else(String::new, |j| format!(", JobId {j}"))
        )
    }
}

/// Schema migrations, applied in order; `PRAGMA user_version` is how many ran.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    file TEXT NOT NULL,
    pattern INTEGER NOT NULL,
    currency TEXT NOT NULL,
    currency_id INTEGER NOT NULL,
    installment INTEGER NOT NULL,
    half_2d INTEGER NOT NULL,
    compression TEXT NOT NULL,
    rows INTEGER NOT NULL,
    amount TEXT NOT NULL,
    generation INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (sha256, generation)
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY,
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    part INTEGER NOT NULL,
    merchant_unique_code TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL,
    amount TEXT NOT NULL,
    state TEXT NOT NULL,
    bulk_payment_id INTEGER,
    message TEXT,
    response TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    submission_id INTEGER NOT NULL REFERENCES submissions(id),
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT,
    http_status INTEGER,
    message TEXT
);
CREATE INDEX IF NOT EXISTS batches_sha ON batches(sha256);
CREATE INDEX IF NOT EXISTS attempts_sub ON attempts(submission_id);
",
    "
ALTER TABLE submissions ADD COLUMN first_row INTEGER NOT NULL DEFAULT 1;
ALTER TABLE submissions ADD COLUMN results_at TEXT;
CREATE TABLE results (
    submission_id INTEGER NOT NULL REFERENCES submissions(id),
    line_number INTEGER NOT NULL,
    row_code TEXT NOT NULL,
    approved INTEGER NOT NULL,
    error_code TEXT NOT NULL,
    error_message TEXT NOT NULL,
    amount TEXT NOT NULL,
    PRIMARY KEY (submission_id, line_number)
);
",
    "
CREATE TABLE payout_orders (
    id INTEGER PRIMARY KEY,
    currency TEXT NOT NULL,
    currency_id INTEGER NOT NULL,
    date_from TEXT NOT NULL,
    date_to TEXT NOT NULL,
    test_mode INTEGER NOT NULL,
    skip_exists_control INTEGER NOT NULL,
    state TEXT NOT NULL,
    message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX payout_orders_currency ON payout_orders(currency, date_from);
",
    // Every row sent, so that the same payment is never sent twice (looked up
    // by `code_fp`, a 64-bit fingerprint of the payment code) and every
    // result line can be checked against what was sent.
    "
CREATE TABLE sent_rows (
    submission_id INTEGER NOT NULL REFERENCES submissions(id),
    line_number INTEGER NOT NULL,
    code TEXT,
    code_fp INTEGER,
    amount TEXT NOT NULL,
    PRIMARY KEY (submission_id, line_number)
) WITHOUT ROWID;
CREATE INDEX sent_rows_code ON sent_rows(code_fp);
",
    // The marketplace trigger's JobId and the last inquiry's verdict.
    "
ALTER TABLE payout_orders ADD COLUMN job_id TEXT;
ALTER TABLE payout_orders ADD COLUMN inquiry TEXT;
",
    // What the operator or the bulk inquiry found out about a submission of
    // unknown outcome; attempts up to `resolved_attempt` no longer make it
    // ambiguous.
    "
ALTER TABLE submissions ADD COLUMN resolution TEXT;
ALTER TABLE submissions ADD COLUMN resolved_attempt INTEGER NOT NULL DEFAULT 0;
",
    // Result callbacks arrive in pages and may be repeated: every delivery
    // recorded, each row's outcome once (with the delivery that brought it),
    // and the moment a batch's results.json was written.
    "
CREATE TABLE result_deliveries (
    id INTEGER PRIMARY KEY,
    submission_id INTEGER NOT NULL REFERENCES submissions(id),
    page_number INTEGER NOT NULL,
    total_pages INTEGER,
    has_more INTEGER,
    lines INTEGER NOT NULL,
    new_lines INTEGER NOT NULL,
    error_message TEXT,
    received_at TEXT NOT NULL
);
CREATE INDEX result_deliveries_sub ON result_deliveries(submission_id, page_number);
ALTER TABLE results ADD COLUMN outcome TEXT;
ALTER TABLE results ADD COLUMN status_id INTEGER;
ALTER TABLE results ADD COLUMN delivery_id INTEGER;
ALTER TABLE batches ADD COLUMN results_written_at TEXT;
",
    // A sent row's card number masked to its first 6 and last 4 digits (what
    // may be kept), so that `paydrop results` can name the card.
    "
ALTER TABLE sent_rows ADD COLUMN card TEXT;
",
];

/// The states whose rows count as sent: the provider has them, may have
/// them, or is about to get them.
const HOLDS_ROWS: &str = "('accepted', 'unknown', 'pending')";

/// The ledger database.
pub struct Ledger {
    conn: Connection,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn time(s: String) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
}

fn decimal(s: String) -> rusqlite::Result<Decimal> {
    s.parse().map_err(|e: rust_decimal::Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(|source| LedgerError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // WAL lets `status` read while a submit writes; FULL makes every
        // commit durable before the HTTP call that depends on it.
        // Switching a new file to WAL takes a lock SQLite does not wait for
        // (busy_timeout does not apply): retry while another process that
        // opens the same new ledger does the same.
        let mut tries = 0;
        while let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
            match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy) if tries < 500 => tries += 1,
                _ => return Err(e.into()),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut conn = conn;
        let version = |c: &Connection| -> rusqlite::Result<usize> {
            c.pragma_query_value(None, "user_version", |r| r.get(0))
        };
        if version(&conn)? < MIGRATIONS.len() {
            // IMMEDIATE, and the version read again inside: two processes
            // opening a new or old ledger at once (a submit and a status)
            // must not both run a migration ("duplicate column name").
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version(&tx)?) {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", i + 1)?;
            }
            tx.commit()?;
        }
        Ok(Ledger { conn })
    }

    /// Records a batch and its parts (all `pending`) in one transaction.
    pub fn create_batch(&mut self, b: &NewBatch) -> Result<Batch> {
        let tx = self.conn.transaction()?;
        let batch_id = insert_batch(&tx, b)?;
        tx.commit()?;
        self.batch(batch_id)?
            .ok_or_else(|| LedgerError::Corrupt(format!("batch {batch_id} vanished")))
    }

    /// Records a batch, its parts and every row it will send, unless some of
    /// the rows were sent before in a batch that is accepted, of unknown
    /// outcome or in flight (`force` records it anyway). The check and the
    /// records are one IMMEDIATE transaction, so two processes cannot both
    /// claim the same rows. `rows` is called twice (to check, then to
    /// record) and yields each row with its part; the check is one index
    /// lookup per row.
    pub fn create_batch_claiming_rows<E, I>(
        &mut self,
        b: &NewBatch,
        mut rows: impl FnMut() -> std::result::Result<I, E>,
        force: bool,
    ) -> std::result::Result<Claim, E>
    where
        E: From<LedgerError>,
        I: Iterator<Item = std::result::Result<(u32, SentRow), E>>,
    {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(LedgerError::from)?;
        let overlap = sent_before(&tx, rows()?, None)?;
        if overlap.rows > 0 && !force {
            return Ok(Claim::Refused(overlap));
        }
        let batch_id = insert_batch(&tx, b)?;
        let parts: std::collections::HashMap<u32, i64> = tx
            .prepare("SELECT part, id FROM submissions WHERE batch_id = ?1")
            .and_then(|mut st| {
                st.query_map([batch_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(LedgerError::from)?;
        {
            let mut insert = tx.prepare(INSERT_SENT_ROW).map_err(LedgerError::from)?;
            for row in rows()? {
                let (part, row) = row?;
                let sub = parts.get(&part).copied().ok_or_else(|| {
                    LedgerError::Corrupt(format!("a row of part {part}, which the batch lacks"))
                })?;
                insert_sent_row(&mut insert, sub, &row)?;
            }
        }
        tx.commit().map_err(LedgerError::from)?;
        let batch = self
            .batch(batch_id)?
            .ok_or_else(|| LedgerError::Corrupt(format!("batch {batch_id} vanished")))?;
        Ok(Claim::Created { batch, overlap })
    }

    /// Makes a rejected submission hold its rows again before it is sent
    /// once more (a rerun of the same file), unless another batch has
    /// claimed some of them meanwhile: then nothing changes and they are
    /// returned. One IMMEDIATE transaction, like [`Self::create_batch_claiming_rows`].
    pub fn reclaim_rows(&mut self, submission_id: i64) -> Result<Option<SentBefore>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rows: Vec<SentRow> = tx
            .prepare(
                "SELECT line_number, code, amount, code_fp, card FROM sent_rows
                 WHERE submission_id = ?1 ORDER BY line_number",
            )?
            .query_map([submission_id], |r| {
                Ok(SentRow {
                    line_number: r.get(0)?,
                    code: r.get(1)?,
                    amount: decimal(r.get(2)?)?,
                    identity: r.get(3)?,
                    card: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let overlap = sent_before::<LedgerError, _>(
            &tx,
            rows.into_iter().map(|r| Ok((0, r))),
            Some(submission_id),
        )?;
        if overlap.rows > 0 {
            return Ok(Some(overlap));
        }
        tx.execute(
            "UPDATE submissions SET state = 'pending', updated_at = ?2
             WHERE id = ?1 AND state = 'rejected'",
            params![submission_id, now()],
        )?;
        tx.commit()?;
        Ok(None)
    }

    /// Records what was found out about a submission of unknown outcome.
    /// Attempts made so far no longer make it ambiguous; an accepted
    /// submission is never changed.
    pub fn resolve(&self, submission_id: i64, resolution: &Resolution, note: &str) -> Result<()> {
        let (state, bulk_payment_id) = match resolution {
            Resolution::Received { bulk_payment_id } => (State::Accepted, *bulk_payment_id),
            Resolution::NotReceived => (State::Pending, None),
        };
        self.conn.execute(
            "UPDATE submissions
             SET state = ?2, bulk_payment_id = COALESCE(?3, bulk_payment_id), message = ?4,
                 resolution = ?4, updated_at = ?5,
                 resolved_attempt = (SELECT COALESCE(MAX(id), 0) FROM attempts
                                     WHERE submission_id = ?1)
             WHERE id = ?1 AND state != 'accepted'",
            params![submission_id, state.as_str(), bulk_payment_id, note, now()],
        )?;
        Ok(())
    }

    /// The submission of `batch_id`'s part `part`.
    pub fn submission(&self, batch_id: i64, part: u32) -> Result<Option<Submission>> {
        Ok(self
            .submissions_where("s.batch_id = ?1 AND s.part = ?2", params![batch_id, part])?
            .into_iter()
            .next())
    }
}

/// Inserts a batch and its parts; returns the batch id.
fn insert_batch(tx: &rusqlite::Transaction<'_>, b: &NewBatch) -> Result<i64> {
    let t = now();
    tx.execute(
        "INSERT INTO batches (sha256, file, pattern, currency, currency_id, installment, half_2d,
                 compression, rows, amount, generation, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            b.sha256,
            b.file,
            b.pattern,
            b.currency,
            b.currency_id,
            b.installment,
            b.half_2d,
            b.compression,
            b.rows as i64,
            b.amount.to_string(),
            b.generation,
            t
        ],
    )?;
    let batch_id = tx.last_insert_rowid();
    for p in &b.parts {
        tx.execute(
            "INSERT INTO submissions (batch_id, part, merchant_unique_code, rows, amount, state,
                     created_at, updated_at, first_row)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?7)",
            params![
                batch_id,
                p.part,
                p.merchant_unique_code,
                p.rows as i64,
                p.amount.to_string(),
                t,
                p.first_row as i64
            ],
        )?;
    }
    Ok(batch_id)
}

const INSERT_SENT_ROW: &str =
    "INSERT INTO sent_rows (submission_id, line_number, code, code_fp, amount, card)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

fn insert_sent_row(
    insert: &mut rusqlite::Statement<'_>,
    submission_id: i64,
    row: &SentRow,
) -> Result<()> {
    insert.execute(params![
        submission_id,
        row.line_number,
        row.code,
        row.identity,
        row.amount.to_string(),
        row.card
    ])?;
    Ok(())
}

/// The rows among `rows` that were sent before (see [`HOLDS_ROWS`]) in a
/// submission other than `except`.
fn sent_before<E, I>(
    tx: &rusqlite::Transaction<'_>,
    rows: I,
    except: Option<i64>,
) -> std::result::Result<SentBefore, E>
where
    E: From<LedgerError>,
    I: Iterator<Item = std::result::Result<(u32, SentRow), E>>,
{
    let mut lookup = tx
        .prepare(&format!(
            "SELECT s.submission_id FROM sent_rows s JOIN submissions sub ON sub.id = s.submission_id
             WHERE s.code_fp = ?1 AND s.code IS ?2 AND sub.state IN {HOLDS_ROWS}
               AND sub.id IS NOT ?3"
        ))
        .map_err(LedgerError::from)?;
    let mut found = SentBefore::default();
    let mut per_submission: std::collections::BTreeMap<i64, u64> = Default::default();
    for row in rows {
        let (_, row) = row?;
        let mut hit = false;
        let mut subs = lookup
            .query(params![row.identity, row.code, except])
            .map_err(LedgerError::from)?;
        while let Some(r) = subs.next().map_err(LedgerError::from)? {
            let sub: i64 = r.get(0).map_err(LedgerError::from)?;
            *per_submission.entry(sub).or_default() += 1;
            hit = true;
        }
        if hit {
            found.rows += 1;
            if found.examples.len() < 3 {
                found.examples.push(SentExample {
                    line_number: row.line_number,
                    code: row.code.clone(),
                });
            }
        }
    }
    drop(lookup);
    let mut part = tx
        .prepare(
            "SELECT s.batch_id, s.part, b.file, s.state, s.bulk_payment_id, s.updated_at
             FROM submissions s JOIN batches b ON b.id = s.batch_id WHERE s.id = ?1",
        )
        .map_err(LedgerError::from)?;
    for (sub, rows) in per_submission {
        let earlier = part
            .query_row([sub], |r| {
                let state: String = r.get(3)?;
                Ok(EarlierPart {
                    batch_id: r.get(0)?,
                    part: r.get(1)?,
                    file: r.get(2)?,
                    state: state.parse().map_err(|e: LedgerError| {
                        rusqlite::Error::FromSqlConversionFailure(
                            3,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })?,
                    bulk_payment_id: r.get(4)?,
                    updated_at: time(r.get(5)?)?,
                    rows,
                })
            })
            .map_err(LedgerError::from)?;
        found.parts.push(earlier);
    }
    Ok(found)
}

impl Ledger {
    /// All batches of this content, oldest first.
    pub fn batches_for(&self, sha256: &str) -> Result<Vec<Batch>> {
        let ids: Vec<i64> = self
            .conn
            .prepare("SELECT id FROM batches WHERE sha256 = ?1 ORDER BY id")?
            .query_map([sha256], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.into_iter()
            .filter_map(|id| self.batch(id).transpose())
            .collect()
    }

    /// One batch with its submissions.
    pub fn batch(&self, id: i64) -> Result<Option<Batch>> {
        let batch = self
            .conn
            .query_row(
                "SELECT id, sha256, file, pattern, currency, currency_id, installment, half_2d,
                        compression, rows, amount, generation, created_at
                 FROM batches WHERE id = ?1",
                [id],
                |r| {
                    Ok(Batch {
                        id: r.get(0)?,
                        info: BatchInfo {
                            sha256: r.get(1)?,
                            file: r.get(2)?,
                            pattern: r.get(3)?,
                            currency: r.get(4)?,
                            currency_id: r.get(5)?,
                            installment: r.get(6)?,
                            half_2d: r.get(7)?,
                            compression: r.get(8)?,
                            rows: r.get::<_, i64>(9)? as u64,
                            amount: decimal(r.get(10)?)?,
                            generation: r.get(11)?,
                        },
                        created_at: time(r.get(12)?)?,
                        submissions: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut batch) = batch else {
            return Ok(None);
        };
        batch.submissions = self.submissions_where("s.batch_id = ?1", [id])?;
        Ok(Some(batch))
    }

    fn submissions_where<P: rusqlite::Params>(&self, cond: &str, p: P) -> Result<Vec<Submission>> {
        let sql = format!(
            "SELECT s.id, s.batch_id, s.part, s.merchant_unique_code, s.rows, s.amount, s.state,
                    s.bulk_payment_id, s.message, s.response, s.created_at, s.updated_at,
                    (SELECT COUNT(*) FROM attempts a WHERE a.submission_id = s.id),
                    (SELECT COUNT(*) FROM attempts a WHERE a.submission_id = s.id
                         AND a.finished_at IS NULL),
                    s.first_row, s.results_at,
                    -- 'retryable' is how ledgers before the ambiguity rule
                    -- wrote every failure: taken as ambiguous.
                    (SELECT MAX(COALESCE(a.finished_at, a.started_at)) FROM attempts a
                     WHERE a.submission_id = s.id AND a.id > s.resolved_attempt
                       AND (a.finished_at IS NULL OR a.outcome IN ('ambiguous', 'retryable'))),
                    s.resolution
             FROM submissions s WHERE {cond} ORDER BY s.batch_id, s.part"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(p, submission_from_row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r?);
        }
        Ok(out)
    }

    /// Submissions that are not settled: pending or of unknown outcome.
    pub fn open_submissions(&self) -> Result<Vec<Submission>> {
        self.submissions_where("s.state IN ('pending', 'unknown')", [])
    }

    /// Accepted submissions whose result file has not arrived yet.
    pub fn awaiting_results(&self) -> Result<Vec<Submission>> {
        self.submissions_where("s.state = 'accepted' AND s.results_at IS NULL", [])
    }

    /// One submission, by its id.
    pub fn submission_by_id(&self, id: i64) -> Result<Option<Submission>> {
        Ok(self
            .submissions_where("s.id = ?1", [id])?
            .into_iter()
            .next())
    }

    /// The submission with this MerchantUniqueCode.
    pub fn submission_by_code(&self, code: &str) -> Result<Option<Submission>> {
        Ok(self
            .submissions_where("s.merchant_unique_code = ?1", [code])?
            .into_iter()
            .next())
    }

    /// The most recent batches, newest first.
    pub fn recent_batches(&self, limit: usize) -> Result<Vec<Batch>> {
        let ids: Vec<i64> = self
            .conn
            .prepare("SELECT id FROM batches ORDER BY id DESC LIMIT ?1")?
            .query_map([limit as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.into_iter()
            .filter_map(|id| self.batch(id).transpose())
            .collect()
    }

    /// Opens an attempt; committed before the HTTP call starts.
    pub fn begin_attempt(&self, submission_id: i64) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO attempts (submission_id, started_at) VALUES (?1, ?2)",
            params![submission_id, now()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Opens an attempt only if the submission may be sent now: it is not
    /// accepted, no other attempt started after `busy_since` is still
    /// unfinished (another process may be sending it), and, unless
    /// `allow_ambiguous`, no attempt since the last resolution went without
    /// a definite answer. One statement, so two processes cannot both open
    /// one. `None` when it may not be sent.
    pub fn begin_attempt_if_free(
        &self,
        submission_id: i64,
        busy_since: DateTime<Utc>,
        allow_ambiguous: bool,
    ) -> Result<Option<i64>> {
        let busy_since = busy_since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let added = self.conn.execute(
            "INSERT INTO attempts (submission_id, started_at)
             SELECT s.id, ?2 FROM submissions s
             WHERE s.id = ?1 AND s.state != 'accepted'
               AND (?4 OR s.state != 'unknown')
               AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.submission_id = s.id
                               AND a.finished_at IS NULL AND a.started_at > ?3)
               AND (?4 OR NOT EXISTS (SELECT 1 FROM attempts a WHERE a.submission_id = s.id
                               AND a.id > s.resolved_attempt
                               AND (a.finished_at IS NULL
                                    OR a.outcome IN ('ambiguous', 'retryable'))))",
            params![submission_id, now(), busy_since, allow_ambiguous],
        )?;
        Ok((added == 1).then(|| self.conn.last_insert_rowid()))
    }

    /// Closes an attempt with its outcome.
    pub fn finish_attempt(
        &self,
        attempt_id: i64,
        outcome: AttemptOutcome,
        http_status: Option<u16>,
        message: &str,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE attempts SET finished_at = ?2, outcome = ?3, http_status = ?4, message = ?5
             WHERE id = ?1",
            params![attempt_id, now(), outcome.as_str(), http_status, message],
        )?;
        Ok(())
    }

    /// Attempts of a submission, oldest first.
    pub fn attempts(&self, submission_id: i64) -> Result<Vec<Attempt>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, started_at, finished_at, outcome, http_status, message
             FROM attempts WHERE submission_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([submission_id], |r| {
            Ok(Attempt {
                id: r.get(0)?,
                started_at: time(r.get(1)?)?,
                finished_at: r.get::<_, Option<String>>(2)?.map(time).transpose()?,
                outcome: r.get(3)?,
                http_status: r.get(4)?,
                message: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records where a batch's file now is (after a move to `done/`).
    pub fn set_batch_file(&self, batch_id: i64, file: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE batches SET file = ?2 WHERE id = ?1",
            params![batch_id, file],
        )?;
        Ok(())
    }

    /// The submission an accepted BulkPaymentId belongs to.
    pub fn submission_by_bulk_id(&self, bulk_payment_id: i64) -> Result<Option<Submission>> {
        Ok(self
            .submissions_where("s.bulk_payment_id = ?1", [bulk_payment_id])?
            .into_iter()
            .next())
    }

    /// Records one page of results of a submission, in one transaction:
    /// every line must name a row sent in it (line number, payment code and
    /// amount), and a row reported before must be reported the same way. A
    /// page delivered again adds only what it has that is new; a page that
    /// fails a check stores nothing. The submission's results are complete
    /// (`results_at` set) once every page is in and every row sent has an
    /// outcome.
    pub fn record_result_page<I>(
        &mut self,
        submission: &Submission,
        page: &ResultPage,
        lines: I,
    ) -> Result<PageRecorded>
    where
        I: IntoIterator<Item = std::result::Result<ResultLine, ResultError>>,
    {
        let sub = submission.id;
        let code = &submission.merchant_unique_code;
        let sent = self.sent_row_count(sub)?;
        if sent == 0 {
            return Ok(PageRecorded::Mismatch(format!(
                "{code} was sent before paydrop recorded the rows it sends: its results cannot \
                 be checked; reconcile it by hand (paydrop reconcile --sent ledger)"
            )));
        }
        if page.number == 0 || page.total.is_some_and(|t| t == 0 || page.number > t) {
            return Ok(PageRecorded::Mismatch(format!(
                "page {} of {} is not a page number",
                page.number,
                page.total
                    .map_or_else(|| "an unknown number".to_string(), |t| t.to_string())
            )));
        }
        if page.total.is_some_and(|t| u64::from(t) > sent) {
            return Ok(PageRecorded::Mismatch(format!(
                "TotalPages {} is more than the {sent} rows sent in {code}",
                page.total.unwrap_or_default()
            )));
        }
        // IMMEDIATE: two pages of one batch arrive at once; both read, then
        // write, and a deferred transaction could not upgrade its lock.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let (Some(total), Some(before)) = (
            page.total,
            tx.query_row(
                "SELECT MAX(total_pages) FROM result_deliveries WHERE submission_id = ?1",
                [sub],
                |r| r.get::<_, Option<u32>>(0),
            )?,
        ) {
            if total != before {
                return Ok(PageRecorded::Conflict(format!(
                    "TotalPages {total}, but an earlier page of {code} said {before}"
                )));
            }
        }
        tx.execute(
            "INSERT INTO result_deliveries (submission_id, page_number, total_pages, has_more,
                 lines, new_lines, error_message, received_at)
             VALUES (?1, ?2, ?3, ?4, 0, 0, ?5, ?6)",
            params![
                sub,
                page.number,
                page.total,
                page.has_more,
                page.error_message
                    .as_deref()
                    .filter(|m| !m.trim().is_empty()),
                now()
            ],
        )?;
        let delivery = tx.last_insert_rowid();
        let (mut count, mut new) = (0u64, 0u64);
        {
            let mut sent_row = tx.prepare(
                "SELECT code, amount FROM sent_rows WHERE submission_id = ?1 AND line_number = ?2",
            )?;
            let mut insert = tx.prepare(
                "INSERT INTO results (submission_id, line_number, row_code, approved, error_code,
                     error_message, amount, outcome, status_id, delivery_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (submission_id, line_number) DO NOTHING",
            )?;
            let mut earlier = tx.prepare(
                "SELECT COALESCE(outcome, CASE approved WHEN 1 THEN 'paid' ELSE 'declined' END),
                        error_code, delivery_id
                 FROM results WHERE submission_id = ?1 AND line_number = ?2",
            )?;
            for line in lines {
                let line = match line {
                    Ok(l) => l,
                    Err(ResultError::Io(e)) => {
                        return Ok(PageRecorded::Unreadable {
                            kind: e.kind(),
                            reason: e.to_string(),
                        })
                    }
                    Err(e) => return Ok(PageRecorded::Mismatch(e.to_string())),
                };
                let at = format!("result file line {}", line.file_line);
                let n = line.line_number;
                let Some((sent_code, sent_amount)) = sent_row
                    .query_row(params![sub, n], |r| {
                        Ok((r.get::<_, Option<String>>(0)?, decimal(r.get(1)?)?))
                    })
                    .optional()?
                else {
                    return Ok(PageRecorded::Mismatch(format!(
                        "{at}: lineNumber {n} is not a row sent in {code}"
                    )));
                };
                if let Some(c) = sent_code.filter(|c| *c != line.merchant_unique_code) {
                    return Ok(PageRecorded::Mismatch(format!(
                        "{at}: row {n} was sent as merchantUniqueCode '{c}', the result names \
                         '{}'",
                        line.merchant_unique_code
                    )));
                }
                if sent_amount != line.amount {
                    return Ok(PageRecorded::Mismatch(format!(
                        "{at}: row {n} was sent with amount {sent_amount}, the result says {}",
                        line.amount
                    )));
                }
                let added = insert.execute(params![
                    sub,
                    n,
                    line.merchant_unique_code,
                    line.is_paid(),
                    line.error_code,
                    line.error_message,
                    line.amount.to_string(),
                    line.outcome.as_str(),
                    line.status_id,
                    delivery
                ])?;
                count += 1;
                if added == 1 {
                    new += 1;
                    continue;
                }
                let (outcome, error_code, by): (String, String, Option<i64>) = earlier
                    .query_row(params![sub, n], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                if by == Some(delivery) {
                    return Ok(PageRecorded::Mismatch(format!(
                        "{at}: row {n} appears twice in this delivery"
                    )));
                }
                if outcome != line.outcome.as_str() || error_code != line.error_code {
                    let said = |outcome: &str, code: &str| match code {
                        "" => outcome.to_string(),
                        code => format!("{outcome} ({code})"),
                    };
                    return Ok(PageRecorded::Conflict(format!(
                        "{at}: row {n} was reported {} before, now {}; a recorded outcome is \
                         never changed (ask the provider's bulk query)",
                        said(&outcome, &error_code),
                        said(line.outcome.as_str(), &line.error_code)
                    )));
                }
            }
        }
        tx.execute(
            "UPDATE result_deliveries SET lines = ?2, new_lines = ?3 WHERE id = ?1",
            params![delivery, count as i64, new as i64],
        )?;
        let progress = result_progress(&tx, sub, Some(sent))?;
        if let Some(last) = progress.last_page {
            if progress.highest_page > last {
                return Ok(PageRecorded::Conflict(format!(
                    "page {} of {code} arrived, but the provider said its pages ended at page \
                     {last} (HasMorePages false)",
                    progress.highest_page
                )));
            }
        }
        let completed = progress.progress.complete && submission_results_at(&tx, sub)?.is_none();
        if completed {
            tx.execute(
                "UPDATE submissions SET results_at = ?2 WHERE id = ?1",
                params![sub, now()],
            )?;
        }
        tx.commit()?;
        Ok(PageRecorded::Stored {
            lines: count,
            new_lines: new,
            progress: progress.progress,
            completed,
        })
    }

    /// How far the results of a submission are.
    pub fn result_progress(&self, submission_id: i64) -> Result<ResultProgress> {
        Ok(result_progress(&self.conn, submission_id, None)?.progress)
    }

    /// Records that a batch's results.json was written; false when it had
    /// been already (then nothing is counted again).
    pub fn mark_results_written(&self, batch_id: i64) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE batches SET results_written_at = ?2
             WHERE id = ?1 AND results_written_at IS NULL",
            params![batch_id, now()],
        )?;
        Ok(changed == 1)
    }

    /// Whether a batch's results.json was written.
    pub fn results_written(&self, batch_id: i64) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT results_written_at IS NOT NULL FROM batches WHERE id = ?1",
                [batch_id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    /// Batches whose every part has complete results and whose results.json
    /// was not written yet (a crash came between the two).
    pub fn batches_with_unwritten_results(&self) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare(
            "SELECT b.id FROM batches b
             WHERE b.results_written_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM submissions s
                               WHERE s.batch_id = b.id AND s.results_at IS NULL)
               AND EXISTS (SELECT 1 FROM submissions s WHERE s.batch_id = b.id)
             ORDER BY b.id",
        )?;
        let ids = stmt.query_map([], |r| r.get(0))?;
        Ok(ids.collect::<rusqlite::Result<_>>()?)
    }

    /// Records the rows sent in one submission, in one transaction, before
    /// its first call. Rows already recorded for it (a resumed submission)
    /// are left as they are; returns how many rows the submission has now.
    pub fn record_sent_rows<E: From<LedgerError>>(
        &mut self,
        submission_id: i64,
        rows: impl IntoIterator<Item = std::result::Result<SentRow, E>>,
    ) -> std::result::Result<u64, E> {
        let existing = self.sent_row_count(submission_id)?;
        if existing > 0 {
            return Ok(existing);
        }
        let tx = self.conn.transaction().map_err(LedgerError::from)?;
        let mut count = 0u64;
        {
            let mut insert = tx.prepare(INSERT_SENT_ROW).map_err(LedgerError::from)?;
            for row in rows {
                insert_sent_row(&mut insert, submission_id, &row?)?;
                count += 1;
            }
        }
        tx.commit().map_err(LedgerError::from)?;
        Ok(count)
    }

    /// How many rows of a submission are recorded as sent.
    pub fn sent_row_count(&self, submission_id: i64) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM sent_rows WHERE submission_id = ?1",
            [submission_id],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Calls `f` with each row sent in one submission, in line order,
    /// reading them one at a time.
    pub fn each_sent_row<E: From<LedgerError>>(
        &self,
        submission_id: i64,
        mut f: impl FnMut(SentRow) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT line_number, code, amount, code_fp, card FROM sent_rows
                 WHERE submission_id = ?1 ORDER BY line_number",
            )
            .map_err(LedgerError::from)?;
        let rows = stmt
            .query_map([submission_id], |r| {
                Ok(SentRow {
                    line_number: r.get(0)?,
                    code: r.get(1)?,
                    amount: decimal(r.get(2)?)?,
                    identity: r.get(3)?,
                    card: r.get(4)?,
                })
            })
            .map_err(LedgerError::from)?;
        for row in rows {
            f(row.map_err(LedgerError::from)?)?;
        }
        Ok(())
    }

    /// The stored result lines of a batch, in line order.
    pub fn results_of_batch(&self, batch_id: i64) -> Result<Vec<ResultLine>> {
        let mut out = Vec::new();
        self.each_result("s.batch_id = ?1", batch_id, |line, _| {
            out.push(line);
            Ok::<_, LedgerError>(())
        })?;
        Ok(out)
    }

    /// Calls `f` with each stored result line of one submission, in line
    /// order, reading them one at a time (a part may have 150,000).
    pub fn each_result_of_submission<E: From<LedgerError>>(
        &self,
        submission_id: i64,
        mut f: impl FnMut(ResultLine) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.each_result("s.id = ?1", submission_id, |line, _| f(line))
    }

    /// Like [`Self::each_result_of_submission`], with the card of the row
    /// sent, masked to its first 6 and last 4 digits (`None` for rows sent
    /// before paydrop kept it, or by a pattern without a card).
    pub fn each_result_with_card<E: From<LedgerError>>(
        &self,
        submission_id: i64,
        f: impl FnMut(ResultLine, Option<String>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.each_result("s.id = ?1", submission_id, f)
    }

    fn each_result<E: From<LedgerError>>(
        &self,
        cond: &str,
        id: i64,
        mut f: impl FnMut(ResultLine, Option<String>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let sql = format!(
            "SELECT r.line_number, r.row_code,
                    COALESCE(r.outcome, CASE r.approved WHEN 1 THEN 'paid' ELSE 'declined' END),
                    r.error_code, r.error_message, r.amount, r.status_id, sr.card
             FROM results r JOIN submissions s ON s.id = r.submission_id
             LEFT JOIN sent_rows sr
               ON sr.submission_id = r.submission_id AND sr.line_number = r.line_number
             WHERE {cond} ORDER BY r.line_number"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(LedgerError::from)?;
        let rows = stmt
            .query_map([id], |r| {
                let outcome: String = r.get(2)?;
                let line = ResultLine {
                    file_line: 0,
                    line_number: r.get(0)?,
                    merchant_unique_code: r.get(1)?,
                    outcome: outcome.parse().map_err(|e: String| {
                        rusqlite::Error::FromSqlConversionFailure(
                            2,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })?,
                    error_code: r.get(3)?,
                    error_message: r.get(4)?,
                    amount: decimal(r.get(5)?)?,
                    status_id: r.get(6)?,
                };
                Ok((line, r.get::<_, Option<String>>(7)?))
            })
            .map_err(LedgerError::from)?;
        for row in rows {
            let (line, card) = row.map_err(LedgerError::from)?;
            f(line, card)?;
        }
        Ok(())
    }

    /// Settles a submission: accepted (with its BulkPaymentId), rejected or
    /// unknown. An accepted submission is never downgraded.
    pub fn settle(
        &self,
        submission_id: i64,
        state: State,
        bulk_payment_id: Option<i64>,
        message: &str,
        response: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE submissions
             SET state = ?2, bulk_payment_id = COALESCE(?3, bulk_payment_id), message = ?4,
                 response = COALESCE(?5, response), updated_at = ?6
             WHERE id = ?1 AND state != 'accepted'",
            params![
                submission_id,
                state.as_str(),
                bulk_payment_id,
                message,
                response,
                now()
            ],
        )?;
        Ok(())
    }
}

impl Ledger {
    /// Records a payout order as `pending`, before the call.
    pub fn begin_payout_order(
        &self,
        currency: &str,
        currency_id: u32,
        date_from: NaiveDate,
        date_to: NaiveDate,
        test_mode: bool,
        skip_exists_control: bool,
    ) -> Result<PayoutOrder> {
        let t = now();
        self.conn.execute(
            "INSERT INTO payout_orders (currency, currency_id, date_from, date_to, test_mode,
                 skip_exists_control, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
            params![
                currency,
                currency_id,
                date_from.to_string(),
                date_to.to_string(),
                test_mode,
                skip_exists_control,
                t
            ],
        )?;
        let id = self.conn.last_insert_rowid();
        self.payout_order(id)?
            .ok_or_else(|| LedgerError::Corrupt(format!("payout order {id} vanished")))
    }

    /// Records how a payout order ended.
    pub fn settle_payout_order(&self, id: i64, state: State, message: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE payout_orders SET state = ?2, message = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, state.as_str(), message, now()],
        )?;
        Ok(())
    }

    /// Records the `JobId` the provider gave an order.
    pub fn set_payout_job(&self, id: i64, job_id: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE payout_orders SET job_id = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, job_id, now()],
        )?;
        Ok(())
    }

    /// Records what an inquiry said of an order.
    pub fn set_payout_inquiry(&self, id: i64, inquiry: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE payout_orders SET inquiry = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, inquiry, now()],
        )?;
        Ok(())
    }

    /// The order that got `job_id`.
    pub fn payout_order_by_job(&self, job_id: &str) -> Result<Option<PayoutOrder>> {
        Ok(self
            .payout_orders_where("job_id = ?1", [job_id])?
            .into_iter()
            .next())
    }

    pub fn payout_order(&self, id: i64) -> Result<Option<PayoutOrder>> {
        Ok(self
            .payout_orders_where("id = ?1", [id])?
            .into_iter()
            .next())
    }

    /// Orders of `currency` whose dates overlap `from..=to`, oldest first.
    pub fn overlapping_payout_orders(
        &self,
        currency: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<PayoutOrder>> {
        // ISO dates compare as text.
        self.payout_orders_where(
            "currency = ?1 AND date_from <= ?3 AND date_to >= ?2",
            params![currency, from.to_string(), to.to_string()],
        )
    }

    /// The most recent payout orders, newest first.
    pub fn recent_payout_orders(&self, limit: usize) -> Result<Vec<PayoutOrder>> {
        let mut orders = self.payout_orders_where(
            "id IN (SELECT id FROM payout_orders ORDER BY id DESC LIMIT ?1)",
            [limit as i64],
        )?;
        orders.reverse();
        Ok(orders)
    }

    fn payout_orders_where<P: rusqlite::Params>(
        &self,
        cond: &str,
        p: P,
    ) -> Result<Vec<PayoutOrder>> {
        let sql = format!(
            "SELECT id, currency, currency_id, date_from, date_to, test_mode, skip_exists_control,
                    state, message, created_at, updated_at, job_id, inquiry
             FROM payout_orders WHERE {cond} ORDER BY id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(p, |r| {
            let date = |i: usize| -> rusqlite::Result<NaiveDate> {
                r.get::<_, String>(i)?
                    .parse()
                    .map_err(|e: chrono::ParseError| {
                        rusqlite::Error::FromSqlConversionFailure(
                            i,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })
            };
            let state: String = r.get(7)?;
            Ok(PayoutOrder {
                id: r.get(0)?,
                currency: r.get(1)?,
                currency_id: r.get(2)?,
                date_from: date(3)?,
                date_to: date(4)?,
                test_mode: r.get(5)?,
                skip_exists_control: r.get(6)?,
                state: state.parse().map_err(|e: LedgerError| {
                    rusqlite::Error::FromSqlConversionFailure(
                        7,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })?,
                message: r.get(8)?,
                job_id: r.get(11)?,
                inquiry: r.get(12)?,
                created_at: time(r.get(9)?)?,
                updated_at: time(r.get(10)?)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// [`ResultProgress`] with what checking a new page needs besides.
struct PageState {
    progress: ResultProgress,
    highest_page: u32,
    /// The highest page in when a delivery said `HasMorePages` false. The
    /// Bulk Transaction Callback page: false means "the callback run for
    /// this batch is finished", not that this page number is the last; a
    /// page delivered again may close the run
    /// (https://developer.paywall.one/payment-orchestration-integration-document/callback-examples/bulk-transaction-callback,
    /// docs/providers/paywall.md §3.2).
    last_page: Option<u32>,
}

fn submission_results_at(conn: &Connection, submission_id: i64) -> Result<Option<String>> {
    Ok(conn.query_row(
        "SELECT results_at FROM submissions WHERE id = ?1",
        [submission_id],
        |r| r.get(0),
    )?)
}

/// `rows_sent` when the caller just counted them (a count reads every row).
fn result_progress(
    conn: &Connection,
    submission_id: i64,
    rows_sent: Option<u64>,
) -> Result<PageState> {
    let rows_sent = match rows_sent {
        Some(n) => n,
        None => conn.query_row(
            "SELECT COUNT(*) FROM sent_rows WHERE submission_id = ?1",
            [submission_id],
            |r| r.get::<_, i64>(0),
        )? as u64,
    };
    // Each row with a result was added by exactly one delivery.
    let (rows_with_result, total, last, error_message): (
        i64,
        Option<u32>,
        Option<u32>,
        Option<String>,
    ) = conn.query_row(
        "SELECT COALESCE(SUM(new_lines), 0), MAX(total_pages),
                    (SELECT MAX(d.page_number) FROM result_deliveries d
                     WHERE d.submission_id = ?1 AND d.id <= (
                         SELECT MIN(id) FROM result_deliveries
                         WHERE submission_id = ?1 AND has_more = 0)),
                    (SELECT error_message FROM result_deliveries
                     WHERE submission_id = ?1 AND error_message IS NOT NULL
                     ORDER BY id DESC LIMIT 1)
             FROM result_deliveries WHERE submission_id = ?1",
        [submission_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let rows_with_result = rows_with_result as u64;
    let mut stmt = conn.prepare(
        "SELECT DISTINCT page_number FROM result_deliveries WHERE submission_id = ?1
         ORDER BY page_number",
    )?;
    let pages: Vec<u32> = stmt
        .query_map([submission_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let expected = total.or(last);
    let mut missing = Vec::new();
    if let Some(n) = expected {
        let mut next = 1u32;
        for &p in pages.iter().take_while(|&&p| p <= n) {
            if p > next {
                missing.push((next, p - 1));
            }
            next = p + 1;
        }
        if next <= n {
            missing.push((next, n));
        }
    }
    let complete =
        expected.is_some() && missing.is_empty() && rows_sent > 0 && rows_with_result == rows_sent;
    Ok(PageState {
        progress: ResultProgress {
            rows_sent,
            rows_with_result,
            pages_received: pages.len() as u32,
            pages_expected: expected,
            missing_pages: missing,
            error_message,
            complete,
        },
        highest_page: pages.last().copied().unwrap_or(0),
        last_page: last,
    })
}

fn submission_from_row(r: &Row<'_>) -> rusqlite::Result<Submission> {
    let state: String = r.get(6)?;
    Ok(Submission {
        id: r.get(0)?,
        batch_id: r.get(1)?,
        part: r.get(2)?,
        merchant_unique_code: r.get(3)?,
        rows: r.get::<_, i64>(4)? as u64,
        amount: decimal(r.get(5)?)?,
        state: state.parse().map_err(|e: LedgerError| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, e.into())
        })?,
        bulk_payment_id: r.get(7)?,
        message: r.get(8)?,
        response: r.get(9)?,
        created_at: time(r.get(10)?)?,
        updated_at: time(r.get(11)?)?,
        attempts: r.get(12)?,
        interrupted: r.get::<_, i64>(13)? > 0,
        first_row: r.get::<_, i64>(14)? as u64,
        results_at: r.get::<_, Option<String>>(15)?.map(time).transpose()?,
        ambiguous_at: r.get::<_, Option<String>>(16)?.map(time).transpose()?,
        resolution: r.get(17)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_batch(sha: &str, generation: u32) -> NewBatch {
        NewBatch {
            info: BatchInfo {
                sha256: sha.into(),
                file: "payments.csv".into(),
                rows: 3,
                amount: "30.00".parse().unwrap(),
                generation,
                ..BatchInfo::default()
            },
            parts: vec![
                NewSubmission {
                    part: 1,
                    first_row: 1,
                    merchant_unique_code: format!("{sha}-{generation}-1"),
                    rows: 2,
                    amount: "20.00".parse().unwrap(),
                },
                NewSubmission {
                    part: 2,
                    first_row: 3,
                    merchant_unique_code: format!("{sha}-{generation}-2"),
                    rows: 1,
                    amount: "10.00".parse().unwrap(),
                },
            ],
        }
    }

    #[test]
    fn records_survive_reopening_and_accepted_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let (sub, attempt) = {
            let mut l = Ledger::open(&path).unwrap();
            let b = l.create_batch(&new_batch("abc", 0)).unwrap();
            assert_eq!(b.submissions.len(), 2);
            let sub = b.submissions[0].id;
            let attempt = l.begin_attempt(sub).unwrap();
            (sub, attempt)
        };
        // A "crash" between begin and finish: the attempt stays open.
        let l = Ledger::open(&path).unwrap();
        let open = l.open_submissions().unwrap();
        assert_eq!(open.len(), 2);
        assert!(open[0].outcome_unknown() && !open[1].outcome_unknown());
        l.finish_attempt(attempt, AttemptOutcome::Accepted, Some(200), "ok")
            .unwrap();
        l.settle(sub, State::Accepted, Some(3467), "ok", Some("{}"))
            .unwrap();
        l.settle(sub, State::Unknown, None, "late timeout", None)
            .unwrap();
        let s = l.submission_by_code("abc-0-1").unwrap().unwrap();
        assert_eq!((s.state, s.bulk_payment_id), (State::Accepted, Some(3467)));
        assert_eq!(s.amount.to_string(), "20.00");
        let batches = l.batches_for("abc").unwrap();
        assert_eq!(batches.len(), 1);
        assert!(!batches[0].is_accepted());
    }

    #[test]
    fn sent_rows_are_recorded_once_per_submission_and_read_back_in_line_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.db")).unwrap();
        let b = l.create_batch(&new_batch("abc", 0)).unwrap();
        let sub = b.submissions[0].id;
        let rows = [
            sent_row(2, Some("MUC-2"), "5.50"),
            sent_row(1, None, "14.50"),
        ];
        let row = sent_row;
        fn ok(rows: &[SentRow]) -> impl Iterator<Item = Result<SentRow>> + '_ {
            rows.iter().cloned().map(Ok)
        }
        assert_eq!(l.record_sent_rows(sub, ok(&rows)).unwrap(), 2);
        // A resumed submission keeps what it has.
        assert_eq!(
            l.record_sent_rows(sub, ok(&[row(9, None, "1")])).unwrap(),
            2
        );
        let mut back = Vec::new();
        l.each_sent_row(sub, |r| {
            back.push(r);
            Ok::<_, LedgerError>(())
        })
        .unwrap();
        assert_eq!(back, [rows[1].clone(), rows[0].clone()]);
        assert_eq!(l.sent_row_count(b.submissions[1].id).unwrap(), 0);
        // A failure half-way records nothing.
        let failing = [
            Ok(row(1, Some("A"), "1")),
            Err(LedgerError::Corrupt("disk".into())),
        ];
        assert!(l.record_sent_rows(b.submissions[1].id, failing).is_err());
        assert_eq!(l.sent_row_count(b.submissions[1].id).unwrap(), 0);
    }

    fn sent_row(line: i64, code: Option<&str>, amount: &str) -> SentRow {
        let amount = amount.parse().unwrap();
        match code {
            Some(code) => SentRow::with_code(line, code.to_string(), amount),
            None => SentRow {
                line_number: line,
                code: None,
                amount,
                identity: line * 7919,
                card: None,
            },
        }
    }

    /// Rows of a two-part batch as `create_batch_claiming_rows` takes them.
    fn claim(
        l: &mut Ledger,
        sha: &str,
        generation: u32,
        codes: &[&str],
        force: bool,
    ) -> Result<Claim> {
        let rows: Vec<(u32, SentRow)> = codes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    if i < 2 { 1 } else { 2 },
                    sent_row(i as i64 + 1, Some(c), "10"),
                )
            })
            .collect();
        l.create_batch_claiming_rows(
            &new_batch(sha, generation),
            || Ok(rows.clone().into_iter().map(Ok)),
            force,
        )
    }

    #[test]
    fn rows_sent_in_a_batch_that_holds_them_are_refused_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.db")).unwrap();
        let Claim::Created { batch, overlap } =
            claim(&mut l, "a", 0, &["A", "B", "C"], false).unwrap()
        else {
            panic!("the first batch is created")
        };
        assert_eq!(overlap, SentBefore::default());
        assert_eq!(l.sent_row_count(batch.submissions[0].id).unwrap(), 2);
        assert_eq!(l.sent_row_count(batch.submissions[1].id).unwrap(), 1);
        l.settle(
            batch.submissions[0].id,
            State::Accepted,
            Some(3467),
            "ok",
            None,
        )
        .unwrap();
        l.settle(
            batch.submissions[1].id,
            State::Unknown,
            None,
            "timeout",
            None,
        )
        .unwrap();

        // Reordered, mixed with new rows, another content.
        let Claim::Refused(before) = claim(&mut l, "b", 0, &["X", "C", "A", "Y"], false).unwrap()
        else {
            panic!("refused")
        };
        assert_eq!(before.rows, 2);
        let examples: Vec<_> = before.examples.iter().map(|e| e.code.as_deref()).collect();
        assert_eq!(examples, [Some("C"), Some("A")]);
        let parts: Vec<_> = before
            .parts
            .iter()
            .map(|p| (p.batch_id, p.part, p.state, p.bulk_payment_id, p.rows))
            .collect();
        assert_eq!(
            parts,
            [
                (batch.id, 1, State::Accepted, Some(3467), 1),
                (batch.id, 2, State::Unknown, None, 1)
            ]
        );
        assert_eq!(l.recent_batches(10).unwrap().len(), 1, "nothing recorded");

        // A rejected part no longer holds its rows; --force passes the rest.
        l.settle(batch.submissions[1].id, State::Rejected, None, "no", None)
            .unwrap();
        let Claim::Refused(before) = claim(&mut l, "b", 0, &["X", "C", "A", "Y"], false).unwrap()
        else {
            panic!("refused")
        };
        assert_eq!(before.rows, 1);
        let Claim::Created { overlap, .. } =
            claim(&mut l, "b", 0, &["X", "C", "A", "Y"], true).unwrap()
        else {
            panic!("forced")
        };
        assert_eq!(overlap.rows, 1);
        assert_eq!(l.recent_batches(10).unwrap().len(), 2);

        // The rejected part cannot be sent again now: batch "b" holds its row.
        let rejected = batch.submissions[1].id;
        let taken = l
            .reclaim_rows(rejected)
            .unwrap()
            .expect("claimed meanwhile");
        assert_eq!((taken.rows, taken.parts[0].batch_id), (1, batch.id + 1));
        assert_eq!(
            l.submission(batch.id, 2).unwrap().unwrap().state,
            State::Rejected
        );
        // Once "b" is rejected too, it can: it holds its rows again.
        let b = l.recent_batches(1).unwrap().remove(0);
        for sub in &b.submissions {
            l.settle(sub.id, State::Rejected, None, "no", None).unwrap();
        }
        assert_eq!(l.reclaim_rows(rejected).unwrap(), None);
        assert_eq!(
            l.submission(batch.id, 2).unwrap().unwrap().state,
            State::Pending
        );
    }

    #[test]
    fn a_resolution_settles_an_unknown_part_and_clears_its_ambiguity() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.db")).unwrap();
        let b = l.create_batch(&new_batch("abc", 0)).unwrap();
        let (one, two) = (b.submissions[0].id, b.submissions[1].id);
        for sub in [one, two] {
            let a = l.begin_attempt(sub).unwrap();
            l.finish_attempt(a, AttemptOutcome::Ambiguous, None, "timed out")
                .unwrap();
            l.settle(sub, State::Unknown, None, "timed out", None)
                .unwrap();
        }
        let unknown = l.submission(b.id, 1).unwrap().unwrap();
        assert!(unknown.outcome_unknown() && unknown.ambiguous_at.is_some());

        l.resolve(
            one,
            &Resolution::Received {
                bulk_payment_id: Some(9),
            },
            "found",
        )
        .unwrap();
        let s = l.submission(b.id, 1).unwrap().unwrap();
        assert_eq!((s.state, s.bulk_payment_id), (State::Accepted, Some(9)));
        assert_eq!(s.resolution.as_deref(), Some("found"));

        l.resolve(two, &Resolution::NotReceived, "not there")
            .unwrap();
        let s = l.submission(b.id, 2).unwrap().unwrap();
        assert_eq!(s.state, State::Pending);
        assert!(!s.outcome_unknown() && s.ambiguous_at.is_none(), "{s:#?}");
        // A later attempt without an answer makes it unknown again.
        let a = l.begin_attempt(two).unwrap();
        let s = l.submission(b.id, 2).unwrap().unwrap();
        assert!(s.outcome_unknown() && s.interrupted);
        l.finish_attempt(a, AttemptOutcome::NotSent, None, "refused")
            .unwrap();
        assert!(!l.submission(b.id, 2).unwrap().unwrap().outcome_unknown());
        // An accepted part is never changed by a resolution.
        l.resolve(one, &Resolution::NotReceived, "late").unwrap();
        assert_eq!(
            l.submission(b.id, 1).unwrap().unwrap().state,
            State::Accepted
        );
    }

    /// A submission of `rows` rows sent (`C1`… at 1.00 each), accepted.
    fn sent_submission(l: &mut Ledger, rows: i64) -> Submission {
        let mut b = new_batch("pages", 0);
        b.parts.truncate(1);
        b.parts[0].rows = rows as u64;
        let b = l.create_batch(&b).unwrap();
        let sub = &b.submissions[0];
        let sent =
            (1..=rows).map(|n| Ok::<_, LedgerError>(sent_row(n, Some(&format!("C{n}")), "1.00")));
        l.record_sent_rows(sub.id, sent).unwrap();
        l.settle(sub.id, State::Accepted, Some(7), "ok", None)
            .unwrap();
        l.submission_by_id(sub.id).unwrap().unwrap()
    }

    fn result(
        n: i64,
        outcome: crate::results::Outcome,
    ) -> std::result::Result<ResultLine, ResultError> {
        Ok(ResultLine {
            file_line: n as u64,
            line_number: n,
            merchant_unique_code: format!("C{n}"),
            amount: "1".parse().unwrap(),
            outcome,
            status_id: None,
            error_code: String::new(),
            error_message: String::new(),
        })
    }

    fn page(number: u32, total: Option<u32>, has_more: Option<bool>) -> ResultPage {
        ResultPage {
            number,
            total,
            has_more,
            error_message: None,
        }
    }

    #[test]
    fn result_pages_complete_a_submission_in_any_order_and_once() {
        use crate::results::Outcome::{Declined, Paid};
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.db")).unwrap();
        let sub = sent_submission(&mut l, 5);
        let stored = |r: PageRecorded| match r {
            PageRecorded::Stored {
                new_lines,
                progress,
                completed,
                ..
            } => (new_lines, progress, completed),
            other => panic!("{other:?}"),
        };
        // Page 3 of 3 first, then page 1; page 1 again adds nothing.
        let (new, p, done) = stored(
            l.record_result_page(&sub, &page(3, Some(3), Some(false)), [result(5, Paid)])
                .unwrap(),
        );
        assert_eq!((new, done), (1, false));
        assert_eq!(
            p.to_string(),
            "results incomplete: 1 of 5 rows, 1 of 3 pages received, missing 1-2"
        );
        let first = || [result(1, Paid), result(2, Declined)];
        for expect in [2, 0] {
            let (new, p, _) = stored(
                l.record_result_page(&sub, &page(1, Some(3), Some(true)), first())
                    .unwrap(),
            );
            assert_eq!(new, expect);
            assert_eq!(p.missing_pages, [(2, 2)]);
        }
        // Pages that contradict what came: nothing stored.
        let r = l
            .record_result_page(&sub, &page(2, Some(4), None), [result(3, Paid)])
            .unwrap();
        assert!(
            matches!(&r, PageRecorded::Conflict(w) if w.contains("TotalPages 4")),
            "{r:?}"
        );
        let r = l
            .record_result_page(&sub, &page(2, None, None), [result(2, Paid)])
            .unwrap();
        assert!(
            matches!(&r, PageRecorded::Conflict(w) if w.contains("row 2 was reported declined before, now paid")),
            "{r:?}"
        );
        let r = l
            .record_result_page(&sub, &page(4, None, None), [result(3, Paid)])
            .unwrap();
        assert!(
            matches!(&r, PageRecorded::Conflict(w) if w.contains("ended at page 3")),
            "{r:?}"
        );
        assert_eq!(l.result_progress(sub.id).unwrap().rows_with_result, 3);
        // The last page completes it, once.
        let (_, p, done) = stored(
            l.record_result_page(
                &sub,
                &page(2, Some(3), Some(true)),
                [result(3, Paid), result(4, Paid)],
            )
            .unwrap(),
        );
        assert!(p.complete && done);
        assert_eq!(p.to_string(), "results complete: 5 rows");
        let at = l.submission_by_id(sub.id).unwrap().unwrap().results_at;
        assert!(at.is_some());
        let (_, _, again) = stored(
            l.record_result_page(&sub, &page(2, Some(3), Some(true)), [result(3, Paid)])
                .unwrap(),
        );
        assert!(!again);
        assert_eq!(l.submission_by_id(sub.id).unwrap().unwrap().results_at, at);
        assert!(l
            .batches_with_unwritten_results()
            .unwrap()
            .contains(&sub.batch_id));
        assert!(l.mark_results_written(sub.batch_id).unwrap());
        assert!(!l.mark_results_written(sub.batch_id).unwrap());
        assert!(l.results_written(sub.batch_id).unwrap());
    }

    #[test]
    fn results_of_a_submission_without_sent_rows_cannot_be_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.db")).unwrap();
        let b = l.create_batch(&new_batch("legacy", 0)).unwrap();
        let r = l
            .record_result_page(
                &b.submissions[0],
                &page(1, Some(1), Some(false)),
                [result(1, crate::results::Outcome::Paid)],
            )
            .unwrap();
        assert!(
            matches!(&r, PageRecorded::Mismatch(w) if w.contains("reconcile it by hand")),
            "{r:?}"
        );
    }

    #[test]
    fn the_same_code_cannot_be_recorded_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.db")).unwrap();
        l.create_batch(&new_batch("abc", 0)).unwrap();
        let mut again = new_batch("abc", 1);
        again.parts[0].merchant_unique_code = "abc-0-1".into();
        assert!(l.create_batch(&again).is_err());
        assert_eq!(l.recent_batches(10).unwrap().len(), 1, "rolled back whole");
    }
}
