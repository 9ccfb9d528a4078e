//! Submitting a file: validate and total it, decide in the ledger whether it
//! may be sent, then send each part, recording every step.
//!
//! The order is what makes it safe: a file is validated completely before a
//! byte is sent (an invalid file is never sent); the batch, its
//! MerchantUniqueCodes and every row it sends are committed to the ledger
//! before the first call, after checking that no row was sent before; each
//! attempt is opened before and closed after its call. A MerchantUniqueCode
//! is derived from the content identity and the part number, so a rerun
//! after a crash or a second machine use the same code.
//!
//! No page says that the provider deduplicates a repeated MerchantUniqueCode
//! (docs/providers/paywall.md §6.6), so a part is sent again automatically
//! only when nothing can have reached the provider (never sent) or the
//! provider said it did not process it (429, 503). After an attempt without
//! a definite answer the part's outcome is unknown: the provider's bulk
//! inquiry is asked ([`crate::inquiry`]), and unless it answers definitely the
//! part is held until an operator runs `paydrop resolve`. Only a config that
//! declares the provider deduplicating ([`SubmitOptions::provider_deduplicates`])
//! sends it again blindly.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use crate::compress::Compression;
use crate::inquiry::Inquiry;
use crate::ledger::{
    AttemptOutcome, Batch, BatchInfo, Claim, Ledger, LedgerError, NewBatch, NewSubmission,
    Resolution, SentBefore, SentRow, State, Submission,
};
use crate::pattern::Pattern;
use crate::sent::PartSource;
use crate::transport::{Effect, Ended, Retry, RetryPolicy, Step};
use crate::upload::{Answer, BodyMode, Client, PartRequest};
use crate::validate::{validate_file, Fatal, Hooks, Options, Report, ValidRow};

/// How to submit.
#[derive(Clone, Debug)]
pub struct SubmitOptions {
    /// How the file is validated before anything is sent: the currency of
    /// a pattern without a currency column, the date cards must not have
    /// expired by, rows per part (the provider's limit is 150,000), the
    /// line limit and the money bounds.
    pub validate: Options,
    pub currency_id: u32,
    pub installment: u32,
    pub half_2d: bool,
    pub callback_address: Option<String>,
    pub compression: Compression,
    pub mode: BodyMode,
    /// Send again with new codes even though the ledger shows this content,
    /// or some of its rows, as sent.
    pub force: bool,
    pub retry: RetryPolicy,
    /// The provider is known to deduplicate a repeated MerchantUniqueCode
    /// (no page says so: `[submit] provider_deduplicates`, default false).
    /// Only then is a part of unknown outcome sent again without asking.
    pub provider_deduplicates: bool,
    /// The bulk inquiry's "not found" is believed only this long after the
    /// last attempt without an answer ended (the request may still have been
    /// on its way or in processing).
    pub inquiry_grace: Duration,
    /// The longest one attempt can take (the client's whole-request
    /// timeout): an unfinished attempt younger than this may be running in
    /// another process, and the part is left alone.
    pub attempt_timeout: Duration,
    /// The submission time, injectable for tests of the 23:00 window.
    pub now: DateTime<Utc>,
}

/// Why a submission did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Unusable(#[from] Fatal),
    #[error("the file has {} invalid rows; nothing was sent", .0.rows_invalid)]
    Invalid(Box<Report>),
    #[error(
        "this content (sha256 {sha}) was already submitted: {earlier}; nothing was sent \
         (use --force to send it again with new MerchantUniqueCodes)"
    )]
    AlreadySubmitted { sha: String, earlier: String },
    #[error("{}", describe_sent_before(.rows, .total))]
    RowsAlreadySent { rows: SentBefore, total: u64 },
    #[error(
        "an earlier, unfinished submission of this file (batch {batch}) differs: {what}; finish \
         it with the same options, or use --force to start a new one"
    )]
    Conflict { batch: i64, what: String },
    #[error("part {part} ({code}) was rejected by the provider: {message}")]
    Rejected {
        part: u32,
        code: String,
        message: String,
    },
    #[error(
        "part {part} ({code}), batch {batch}: OUTCOME UNKNOWN after {attempts} attempt(s): \
         {message}. The provider may or may not have it, and paydrop will not send it again by \
         itself. A later submit or daemon pass asks the provider's bulk inquiry again; or find \
         out (the provider's panel) and run `paydrop resolve {batch} {part} --received \
         BULK_PAYMENT_ID` or `--not-received`"
    )]
    Unknown {
        batch: i64,
        part: u32,
        code: String,
        attempts: u32,
        message: String,
    },
    #[error(
        "part {part} ({code}) of batch {batch} is being sent by another paydrop process (attempt \
         started {since}; an attempt lasts at most {timeout_secs}s): nothing was done here; run \
         again later"
    )]
    InFlight {
        batch: i64,
        part: u32,
        code: String,
        since: String,
        timeout_secs: u64,
    },
    #[error(
        "part {part} ({code}) was not taken by the provider after {attempts} attempt(s) ({message}); \
         nothing was paid: submit the same file again later (the same code is used)"
    )]
    NotSent {
        part: u32,
        code: String,
        attempts: u32,
        message: String,
    },
    #[error(
        "part {part} ({code}) was not sent: {message}. The request was stopped before its end, \
         so the provider cannot have accepted it; validate and submit the file again"
    )]
    FileChanged {
        part: u32,
        code: String,
        message: String,
    },
    #[error(
        "the file's rows are in {found}, but one submission carries one currency ({expected}): \
         split the file by currency and submit each with its --currency; nothing was sent"
    )]
    Currency { found: String, expected: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot spool the rows for the ledger: {0}")]
    Spool(io::Error),
    #[error("validation stopped unexpectedly: {0}")]
    Join(String),
}

/// A completed submission.
#[derive(Debug)]
pub struct Submitted {
    pub report: Report,
    pub batch: Batch,
    /// Things the user must know (the 23:00 window, a split, a resume).
    pub notices: Vec<String>,
}

/// The MerchantUniqueCode of one part: stable for the same content, part and
/// force generation.
///
/// ```
/// let sha = "5b1ae2527031c1e36da389def4d06c0bbdf42aae889abe8397120d48c2a9f9bd";
/// assert_eq!(paydrop::submit::merchant_unique_code(sha, 1, 2, 0), "pd-5b1ae2527031c1e36da389def4d06c0b-1of2");
/// assert_eq!(paydrop::submit::merchant_unique_code(sha, 1, 2, 3), "pd-5b1ae2527031c1e36da389def4d06c0b-1of2-f3");
/// ```
pub fn merchant_unique_code(sha256: &str, part: u32, parts: usize, generation: u32) -> String {
    let base = format!("pd-{}-{part}of{parts}", &sha256[..32.min(sha256.len())]);
    if generation == 0 {
        base
    } else {
        format!("{base}-f{generation}")
    }
}

/// The notice for a submission made in the provider's 23:00–00:00 window.
pub fn late_window_notice(now: DateTime<Utc>) -> Option<String> {
    let local = now.with_timezone(&crate::PROVIDER_TZ);
    (local.hour() == 23).then(|| {
        let next = local.date_naive().succ_opt().unwrap_or(local.date_naive());
        format!(
            "submitted at {} Istanbul time: the provider processes files sent between 23:00 and \
             00:00 only from 02:00 on {next}",
            local.format("%H:%M")
        )
    })
}

/// Validates `path`, then submits it (all parts) unless the ledger forbids
/// it. `progress` receives the bytes of rows sent so far.
pub async fn submit_file(
    path: &Path,
    pattern: &Pattern,
    ledger: &mut Ledger,
    client: &Client,
    opts: &SubmitOptions,
    sent: Arc<AtomicU64>,
) -> Result<Submitted, SubmitError> {
    let (report, mut spool) = validate(path, pattern, opts).await?;
    if !report.is_valid() {
        return Err(SubmitError::Invalid(Box::new(report)));
    }
    let currencies: Vec<&str> = report.totals.iter().map(|t| t.currency).collect();
    if currencies.iter().any(|c| *c != opts.validate.currency.code) {
        return Err(SubmitError::Currency {
            found: currencies.join(", "),
            expected: opts.validate.currency.code.to_string(),
        });
    }
    let mut notices = Vec::new();
    let batch = choose_batch(
        path,
        pattern,
        &report,
        ledger,
        opts,
        &mut notices,
        &mut spool,
    )?;
    if report.parts.len() > 1 {
        notices.push(format!(
            "{} rows sent as {} parts of at most {} rows",
            report.rows_read,
            report.parts.len(),
            report.split_rows
        ));
    }
    notices.extend(late_window_notice(opts.now));

    for (sub, part) in batch.submissions.iter().zip(&report.parts) {
        if sub.state == State::Accepted {
            continue;
        }
        if !may_send(ledger, client, batch.id, sub, opts, &mut notices).await? {
            continue;
        }
        let request = PartRequest {
            source: PartSource {
                path: path.to_path_buf(),
                pattern: pattern.clone(),
                byte_start: part.byte_start,
                rows: part.rows,
                content_sha256: part.content_sha256.clone(),
            },
            file_name: file_name(path),
            file_pattern: pattern.id,
            currency_id: opts.currency_id,
            installment: opts.installment,
            callback_address: opts.callback_address.clone(),
            half_2d: opts.half_2d,
            amount: sub.amount,
            merchant_unique_code: sub.merchant_unique_code.clone(),
            compression: opts.compression,
            mode: opts.mode,
        };
        send_with_retries(
            ledger,
            client,
            batch.id,
            sub,
            &request,
            opts,
            &sent,
            &mut notices,
        )
        .await?;
    }
    let batch = ledger.batch(batch.id)?.expect("the batch was just written");
    Ok(Submitted {
        report,
        batch,
        notices,
    })
}

/// Validates the file and spools every valid row's identity (see
/// [`RowSpool`]) for the ledger.
async fn validate(
    path: &Path,
    pattern: &Pattern,
    opts: &SubmitOptions,
) -> Result<(Report, RowSpool), SubmitError> {
    let path: PathBuf = path.to_path_buf();
    let pattern = pattern.clone();
    let vopts = opts.validate.clone();
    // csv on a blocking thread measured faster than csv-async (README).
    tokio::task::spawn_blocking(move || {
        let mut spool = RowSpool::new().map_err(Fatal::Io)?;
        let mut on_row = |row: &ValidRow<'_>| spool.push(row);
        let hooks = Hooks {
            on_row: Some(&mut on_row),
            ..Hooks::default()
        };
        let report = validate_file(&path, &pattern, &vopts, hooks)?;
        spool.finish().map_err(Fatal::Io)?;
        Ok((report, spool))
    })
    .await
    .map_err(|e| SubmitError::Join(e.to_string()))?
}

/// Records the rows of every part of a resumed batch that has none yet (a
/// batch from a ledger older than the row records); a part keeps the rows
/// it has.
fn record_missing_rows(
    ledger: &mut Ledger,
    batch: &Batch,
    spool: &mut RowSpool,
) -> Result<(), SubmitError> {
    let mut rows = spool.rows()?.peekable();
    for sub in &batch.submissions {
        let part = std::iter::from_fn(|| {
            rows.next_if(|r| r.as_ref().map_or(true, |(p, _)| *p == sub.part))
                .map(|r| r.map(|(_, row)| row))
        });
        // One transaction per part (≤150,000 rows): a few hundred ms of
        // SQLite work, on this thread like every other ledger write.
        ledger.record_sent_rows(sub.id, part)?;
    }
    Ok(())
}

/// The identity of every valid row (part, line number, payment code,
/// amount, fingerprint, card masked to first 6 / last 4), spooled to an
/// anonymous temporary file while the file is validated, so that memory
/// stays flat however many rows a file has. Holds no full card number.
struct RowSpool {
    file: BufWriter<File>,
    error: Option<io::Error>,
}

impl RowSpool {
    fn new() -> io::Result<Self> {
        Ok(RowSpool {
            file: BufWriter::with_capacity(1 << 16, tempfile::tempfile()?),
            error: None,
        })
    }

    fn push(&mut self, row: &ValidRow<'_>) {
        if self.error.is_some() {
            return;
        }
        let line_number = row.line_number.unwrap_or(row.row as i64);
        let amount = row.amount.map(|(_, a)| a).unwrap_or_default().to_string();
        let code = row.code.as_deref();
        let mut write = || -> io::Result<()> {
            self.file.write_all(&row.part.to_le_bytes())?;
            self.file.write_all(&line_number.to_le_bytes())?;
            self.file.write_all(&row.identity.to_le_bytes())?;
            write_text(&mut self.file, Some(&amount))?;
            write_text(&mut self.file, code)?;
            write_text(&mut self.file, row.card.as_deref())
        };
        if let Err(e) = write() {
            self.error = Some(e);
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        match self.error.take() {
            Some(e) => Err(e),
            None => self.file.flush(),
        }
    }

    /// The spooled rows in order, as (part, row), from the start each time
    /// it is called.
    fn rows(
        &mut self,
    ) -> Result<impl Iterator<Item = Result<(u32, SentRow), SubmitError>>, SubmitError> {
        self.file.flush().map_err(SubmitError::Spool)?;
        let mut file = self
            .file
            .get_ref()
            .try_clone()
            .map_err(SubmitError::Spool)?;
        file.seek(SeekFrom::Start(0)).map_err(SubmitError::Spool)?;
        let mut r = BufReader::with_capacity(1 << 16, file);
        Ok(std::iter::from_fn(move || {
            let mut part = [0u8; 4];
            match r.read_exact(&mut part) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
                Err(e) => return Some(Err(SubmitError::Spool(e))),
                Ok(()) => {}
            }
            let mut read = || -> io::Result<(u32, SentRow)> {
                let mut line = [0u8; 8];
                r.read_exact(&mut line)?;
                let mut identity = [0u8; 8];
                r.read_exact(&mut identity)?;
                let amount = read_text(&mut r)?.unwrap_or_default();
                let amount = amount
                    .parse()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let code = read_text(&mut r)?;
                let card = read_text(&mut r)?;
                let row = SentRow {
                    line_number: i64::from_le_bytes(line),
                    code,
                    amount,
                    identity: i64::from_le_bytes(identity),
                    card,
                };
                Ok((u32::from_le_bytes(part), row))
            };
            Some(read().map_err(SubmitError::Spool))
        }))
    }
}

/// `None` is written as the length `u32::MAX`.
fn write_text(w: &mut impl Write, text: Option<&str>) -> io::Result<()> {
    match text {
        Some(t) => {
            w.write_all(&(t.len() as u32).to_le_bytes())?;
            w.write_all(t.as_bytes())
        }
        None => w.write_all(&u32::MAX.to_le_bytes()),
    }
}

fn read_text(r: &mut impl Read) -> io::Result<Option<String>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len == u32::MAX {
        return Ok(None);
    }
    let mut buf = vec![0; len as usize];
    r.read_exact(&mut buf)?;
    String::from_utf8(buf)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Finds the batch to (re)send, or records a new one with its rows, or
/// refuses.
fn choose_batch(
    path: &Path,
    pattern: &Pattern,
    report: &Report,
    ledger: &mut Ledger,
    opts: &SubmitOptions,
    notices: &mut Vec<String>,
    spool: &mut RowSpool,
) -> Result<Batch, SubmitError> {
    let identity = &report.content_sha256;
    let earlier = ledger.batches_for(identity)?;
    // An unfinished latest batch (perhaps a forced one) may already be at the
    // provider: it is finished with its own codes, with or without --force,
    // unless it no longer matches (then --force starts a new one).
    let open = earlier.last().filter(|b| !b.is_accepted());
    let difference = open.and_then(|open| {
        if open.submissions.len() != report.parts.len() {
            Some(format!(
                "it was split into {} parts, now it would be {}",
                open.submissions.len(),
                report.parts.len()
            ))
        } else if open.currency != opts.validate.currency.code || open.pattern != pattern.id {
            Some(format!(
                "it was pattern {} in {}, now pattern {} in {}",
                open.pattern, open.currency, pattern.id, opts.validate.currency
            ))
        } else {
            None
        }
    });
    if let (Some(open), None) = (open, &difference) {
        notices.push(format!(
            "resuming batch {} from {}: parts not yet accepted are finished under their \
             original MerchantUniqueCodes",
            open.id,
            open.created_at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
        record_missing_rows(ledger, open, spool)?;
        return Ok(open.clone());
    }
    if !opts.force {
        if let Some(done) = earlier.iter().rev().find(|b| b.is_accepted()) {
            return Err(SubmitError::AlreadySubmitted {
                sha: identity.clone(),
                earlier: describe_batch(done),
            });
        }
        if let (Some(open), Some(what)) = (open, difference) {
            return Err(SubmitError::Conflict {
                batch: open.id,
                what,
            });
        }
    }
    let generation = earlier.iter().map(|b| b.generation + 1).max().unwrap_or(0);
    if generation > 0 {
        notices.push(format!(
            "--force: sending content already submitted {} time(s) again, with new codes",
            generation
        ));
    }
    let parts = report.parts.len();
    let amount_of = |t: &crate::totals::Totals| t.amount(opts.validate.currency);
    let new = NewBatch {
        info: BatchInfo {
            sha256: identity.clone(),
            file: path.display().to_string(),
            pattern: pattern.id,
            currency: opts.validate.currency.code.into(),
            currency_id: opts.currency_id,
            installment: opts.installment,
            half_2d: opts.half_2d,
            compression: opts.compression.to_string(),
            rows: report.rows_read,
            amount: amount_of(&report.totals),
            generation,
        },
        parts: report
            .parts
            .iter()
            .map(|p| NewSubmission {
                part: p.index,
                first_row: p.first_row,
                merchant_unique_code: merchant_unique_code(identity, p.index, parts, generation),
                rows: p.rows,
                amount: amount_of(&p.totals),
            })
            .collect(),
    };
    match ledger.create_batch_claiming_rows(&new, || spool.rows(), opts.force)? {
        Claim::Refused(rows) => Err(SubmitError::RowsAlreadySent {
            rows,
            total: report.rows_read,
        }),
        Claim::Created { batch, overlap } => {
            // A forced copy of the same content was announced above.
            if overlap.rows > 0 && generation == 0 {
                notices.push(format!(
                    "--force: sending {} rows again that were already sent ({})",
                    overlap.rows,
                    earlier_parts(&overlap)
                ));
            }
            Ok(batch)
        }
    }
}

/// "N of M rows of this file were already sent …", for the refusal.
fn describe_sent_before(rows: &SentBefore, total: &u64) -> String {
    let examples: Vec<String> = rows
        .examples
        .iter()
        .map(|e| match &e.code {
            // Payment codes are not card data, but a card number pasted into
            // the code column must not be printed whole either.
            Some(code) => format!(
                "{} (lineNumber {})",
                crate::mask::card_numbers(code),
                e.line_number
            ),
            None => format!("the row with lineNumber {}", e.line_number),
        })
        .collect();
    format!(
        "{} of the {total} rows of this file were already sent ({}), e.g. {}{}; nothing was sent. \
         Remove those rows, or use --force to send them again (they will be paid twice)",
        rows.rows,
        earlier_parts(rows),
        examples.join(", "),
        if rows.rows as usize > examples.len() {
            ", …"
        } else {
            ""
        }
    )
}

/// "batch 3 part 1 (BulkPaymentId 3467, accepted 2026-11-25 19:30 UTC): 500 rows; …".
fn earlier_parts(rows: &SentBefore) -> String {
    rows.parts
        .iter()
        .map(|p| {
            let what = match (p.state, p.bulk_payment_id) {
                (State::Accepted, Some(id)) => format!("BulkPaymentId {id}, accepted"),
                (State::Accepted, None) => "accepted".into(),
                (State::Unknown, _) => "OUTCOME UNKNOWN".into(),
                (_, _) => "in flight or not sent yet".into(),
            };
            format!(
                "batch {} part {} of {} ({what} {}): {} rows",
                p.batch_id,
                p.part,
                p.file,
                p.updated_at.format("%Y-%m-%d %H:%M UTC"),
                p.rows
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// "BulkPaymentId 3467 on 2026-11-25 19:30:00 UTC (batch 4)".
pub fn describe_batch(b: &Batch) -> String {
    let ids: Vec<String> = b
        .submissions
        .iter()
        .filter_map(|s| s.bulk_payment_id.map(|id| id.to_string()))
        .collect();
    format!(
        "BulkPaymentId {} on {} (batch {})",
        ids.join(", "),
        b.submissions
            .iter()
            .map(|s| s.updated_at)
            .max()
            .unwrap_or(b.created_at)
            .format("%Y-%m-%d %H:%M:%S UTC"),
        b.id
    )
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "payments.txt".into())
}

/// Whether a part that is not accepted may be sent now. A part without an
/// ambiguous attempt may; one of unknown outcome only when the provider
/// deduplicates, or when the bulk inquiry says plainly that it does not
/// have it (and the last attempt is old enough for that answer to hold).
/// When the inquiry finds it, it is recorded as accepted and `false`
/// returned; when it cannot tell, the part is held as unknown.
async fn may_send(
    ledger: &mut Ledger,
    client: &Client,
    batch_id: i64,
    sub: &Submission,
    opts: &SubmitOptions,
    notices: &mut Vec<String>,
) -> Result<bool, SubmitError> {
    let sub = ledger
        .submission(batch_id, sub.part)?
        .unwrap_or_else(|| sub.clone());
    if sub.state == State::Rejected && !sub.outcome_unknown() {
        // Its rows were free while it stood rejected: claimed again first.
        if let Some(rows) = ledger.reclaim_rows(sub.id)? {
            return Err(SubmitError::RowsAlreadySent {
                rows,
                total: sub.rows,
            });
        }
        return Ok(true);
    }
    if !sub.outcome_unknown() {
        return Ok(true);
    }
    in_flight_elsewhere(ledger, batch_id, &sub, opts)?;
    let code = &sub.merchant_unique_code;
    if opts.provider_deduplicates {
        notices.push(format!(
            "part {} ({code}) is of unknown outcome: sent again under the same code, because the \
             config says the provider deduplicates MerchantUniqueCodes",
            sub.part
        ));
        return Ok(true);
    }
    let inquiry = client.inquire(code).await;
    tracing::info!(part = sub.part, code = %code, answer = ?inquiry, "bulk inquiry");
    let held = |message: String| -> Result<bool, SubmitError> {
        ledger.settle(sub.id, State::Unknown, None, &message, None)?;
        Err(SubmitError::Unknown {
            batch: batch_id,
            part: sub.part,
            code: code.clone(),
            attempts: sub.attempts,
            message,
        })
    };
    match inquiry {
        Inquiry::Found {
            bulk_payment_id,
            summary,
        } => {
            let note = format!("found by the bulk inquiry: {summary}");
            ledger.resolve(sub.id, &Resolution::Received { bulk_payment_id }, &note)?;
            notices.push(format!("part {} ({code}) {note}", sub.part));
            Ok(false)
        }
        Inquiry::NotFound { summary } => {
            let since = sub.ambiguous_at.unwrap_or(sub.updated_at);
            let waited = (Utc::now() - since).to_std().unwrap_or_default();
            if waited < opts.inquiry_grace {
                return held(format!(
                    "the bulk inquiry does not have it yet ({summary}), but the last attempt \
                     without an answer was only {}s ago; that answer is believed {}s after it",
                    waited.as_secs(),
                    opts.inquiry_grace.as_secs()
                ));
            }
            let note = format!("not received, says the bulk inquiry ({summary})");
            ledger.resolve(sub.id, &Resolution::NotReceived, &note)?;
            notices.push(format!(
                "part {} ({code}) {note}: sent again under its original code",
                sub.part
            ));
            Ok(true)
        }
        Inquiry::Indefinite { reason } => {
            let last = ledger.attempts(sub.id)?.pop();
            let last = match last {
                Some(a) if a.finished_at.is_none() => {
                    "the last attempt was interrupted (the process stopped during the call)".into()
                }
                Some(a) => a.message.unwrap_or_default(),
                None => "no answer".into(),
            };
            held(format!(
                "{last}; the bulk inquiry gave no definite answer ({reason})"
            ))
        }
    }
}

/// Fails with [`SubmitError::InFlight`] when the part's latest attempt is
/// unfinished and young enough to be running in another process.
fn in_flight_elsewhere(
    ledger: &Ledger,
    batch_id: i64,
    sub: &Submission,
    opts: &SubmitOptions,
) -> Result<(), SubmitError> {
    if !sub.interrupted {
        return Ok(());
    }
    let last = ledger.attempts(sub.id)?.pop();
    match last {
        Some(a)
            if a.finished_at.is_none()
                && (Utc::now() - a.started_at)
                    .to_std()
                    .map_or(true, |age| age < opts.attempt_timeout) =>
        {
            Err(SubmitError::InFlight {
                batch: batch_id,
                part: sub.part,
                code: sub.merchant_unique_code.clone(),
                since: a.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                timeout_secs: opts.attempt_timeout.as_secs(),
            })
        }
        _ => Ok(()),
    }
}

/// Sends one part through the shared retry loop ([`Effect::Once`]: it moves
/// money), then records how it ended.
#[allow(clippy::too_many_arguments)]
async fn send_with_retries(
    // `&mut`: a shared `&Ledger` held across awaits would make the future
    // !Send, as a SQLite connection is not Sync.
    ledger: &mut Ledger,
    client: &Client,
    batch_id: i64,
    sub: &Submission,
    request: &PartRequest,
    opts: &SubmitOptions,
    sent: &Arc<AtomicU64>,
    notices: &mut Vec<String>,
) -> Result<(), SubmitError> {
    let (part, code) = (sub.part, &request.merchant_unique_code);
    let what = format!("part {part} ({code})");
    let mut retry = Retry::new(opts.retry, Effect::Once, &what);
    // `send_once` never reports a step `Ambiguous`: the loop ends by giving
    // up, and the ledger says whether an attempt went unanswered.
    let Ended { attempts, last, .. } = loop {
        let Some(n) = retry.next().await else {
            break retry.ended();
        };
        let step = send_once(
            ledger, client, batch_id, sub, request, opts, sent, notices, n,
        )
        .await?;
        if retry.judge(step).is_some() {
            return Ok(());
        }
    };
    let now = ledger
        .submission(batch_id, part)?
        .unwrap_or_else(|| sub.clone());
    if now.outcome_unknown() {
        ledger.settle(sub.id, State::Unknown, None, &last, None)?;
        return Err(SubmitError::Unknown {
            batch: batch_id,
            part,
            code: code.clone(),
            attempts: now.attempts,
            message: last,
        });
    }
    ledger.settle(sub.id, State::Pending, None, &last, None)?;
    Err(SubmitError::NotSent {
        part,
        code: code.clone(),
        attempts,
        message: last,
    })
}

/// Attempt `n` of a part: opened in the ledger before the call and closed
/// after it. `Done` when the part is settled (accepted, or found by the
/// inquiry); `NotTaken` when it may be sent again: it never reached the
/// provider, the provider did not process it (429, 503), or after an answer
/// that was not definite [`may_send`] cleared it (the bulk inquiry says the
/// provider does not have it, or the provider deduplicates). Never
/// `Ambiguous`: a part of unknown outcome is held, never sent again blind.
#[allow(clippy::too_many_arguments)]
async fn send_once(
    ledger: &mut Ledger,
    client: &Client,
    batch_id: i64,
    sub: &Submission,
    request: &PartRequest,
    opts: &SubmitOptions,
    sent: &Arc<AtomicU64>,
    notices: &mut Vec<String>,
    n: u32,
) -> Result<Step<()>, SubmitError> {
    let (part, code) = (sub.part, &request.merchant_unique_code);
    let busy_since =
        Utc::now() - chrono::TimeDelta::from_std(opts.attempt_timeout).unwrap_or_default();
    let Some(attempt) =
        ledger.begin_attempt_if_free(sub.id, busy_since, opts.provider_deduplicates)?
    else {
        // Another process got there first (or made it ambiguous).
        let now = ledger
            .submission(batch_id, part)?
            .unwrap_or_else(|| sub.clone());
        if now.state == State::Accepted {
            return Ok(Step::Done(()));
        }
        in_flight_elsewhere(ledger, batch_id, &now, opts)?;
        return Err(SubmitError::Unknown {
            batch: batch_id,
            part,
            code: code.clone(),
            attempts: now.attempts,
            message: now
                .message
                .unwrap_or_else(|| "an attempt went unanswered".into()),
        });
    };
    tracing::info!(part, code = %code, attempt = n, "sending");
    match client.start_direct(request, sent.clone()).await {
        Answer::Accepted { body, raw } => {
            let msg = format!("accepted as BulkPaymentId {}", body.bulk_payment_id);
            ledger.finish_attempt(attempt, AttemptOutcome::Accepted, Some(200), &msg)?;
            ledger.settle(
                sub.id,
                State::Accepted,
                Some(body.bulk_payment_id),
                &msg,
                Some(&raw),
            )?;
            tracing::info!(part, code = %code, bulk_payment_id = body.bulk_payment_id, "accepted");
            Ok(Step::Done(()))
        }
        Answer::Rejected { status, message } => {
            ledger.finish_attempt(attempt, AttemptOutcome::Rejected, Some(status), &message)?;
            Err(definite_failure(
                ledger,
                batch_id,
                sub,
                n,
                message,
                |message| SubmitError::Rejected {
                    part,
                    code: code.clone(),
                    message,
                },
            )?)
        }
        Answer::Aborted { message } => {
            ledger.finish_attempt(attempt, AttemptOutcome::Aborted, None, &message)?;
            tracing::error!(part, code = %code, error = %message, "upload stopped before its end");
            Err(definite_failure(
                ledger,
                batch_id,
                sub,
                n,
                message,
                |message| SubmitError::FileChanged {
                    part,
                    code: code.clone(),
                    message,
                },
            )?)
        }
        Answer::NeverSent { message } => {
            ledger.finish_attempt(attempt, AttemptOutcome::NotSent, None, &message)?;
            Ok(Step::NotTaken {
                why: format!("never reached the provider: {message}"),
                retry_after: None,
            })
        }
        Answer::NotProcessed {
            status,
            message,
            retry_after,
        } => {
            ledger.finish_attempt(
                attempt,
                AttemptOutcome::NotProcessed,
                Some(status),
                &message,
            )?;
            Ok(Step::NotTaken {
                why: format!("not processed by the provider: {message}"),
                retry_after,
            })
        }
        Answer::Ambiguous { status, message } => {
            ledger.finish_attempt(attempt, AttemptOutcome::Ambiguous, status, &message)?;
            tracing::warn!(part, code = %code, error = %message, "no definite answer");
            ledger.settle(sub.id, State::Unknown, None, &message, None)?;
            // Asks the bulk inquiry (or, with a deduplicating provider,
            // goes on).
            if !may_send(ledger, client, batch_id, sub, opts, notices).await? {
                return Ok(Step::Done(()));
            }
            Ok(Step::NotTaken {
                why: message,
                retry_after: None,
            })
        }
    }
}

/// Records a definite failure of a part (a refusal, an upload stopped by
/// paydrop): rejected, unless an earlier attempt went unanswered, in which
/// case the provider may still have that one and the part is unknown.
fn definite_failure(
    ledger: &mut Ledger,
    batch_id: i64,
    sub: &Submission,
    attempts: u32,
    message: String,
    error: impl FnOnce(String) -> SubmitError,
) -> Result<SubmitError, SubmitError> {
    let now = ledger
        .submission(batch_id, sub.part)?
        .unwrap_or_else(|| sub.clone());
    if now.outcome_unknown() {
        let message = format!(
            "{message}, after an earlier attempt without an answer: the provider may still have \
             that one"
        );
        ledger.settle(sub.id, State::Unknown, None, &message, None)?;
        return Ok(SubmitError::Unknown {
            batch: batch_id,
            part: sub.part,
            code: sub.merchant_unique_code.clone(),
            attempts,
            message,
        });
    }
    ledger.settle(sub.id, State::Rejected, None, &message, None)?;
    Ok(error(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_late_window_is_istanbul_time() {
        // 20:30 UTC is 23:30 in Istanbul (UTC+3).
        let late = Utc.with_ymd_and_hms(2026, 11, 25, 20, 30, 0).unwrap();
        let notice = late_window_notice(late).unwrap();
        assert!(
            notice.contains("23:30") && notice.contains("2026-11-26"),
            "{notice}"
        );
        let fine = Utc.with_ymd_and_hms(2026, 11, 25, 21, 0, 0).unwrap(); // 00:00 local
        assert!(late_window_notice(fine).is_none());
        let evening = Utc.with_ymd_and_hms(2026, 11, 25, 19, 59, 0).unwrap(); // 22:59
        assert!(late_window_notice(evening).is_none());
    }
}
