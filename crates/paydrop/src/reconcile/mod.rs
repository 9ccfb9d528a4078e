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

mod join;
mod sides;
mod sort;
mod summary;

use std::fmt::Display;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

use crate::currency::Currency;
use crate::pattern::{Pattern, Registry};
use join::{hash_join, merge_join, publish, read_side, stage_text, Sets};
use sides::{LedgerSide, PaymentFile, ProviderFile, Side};
use sort::Sorter;

pub use join::{FAILED_CSV, MATCHED_CSV, MISMATCH_CSV, MISSING_CSV, UNKNOWN_CSV};
pub use summary::{is_failed, Mismatch, SideSummary, Summary, Totals, FAILED_WORDS};

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

/// Why reconciling stopped. Nothing is written to the output folder then.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An input that cannot be reconciled as it is; the message names the
    /// file, the line where there is one, and what to change.
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Csv(#[from] csv::Error),
    #[error("{0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("{0}")]
    Pattern(#[from] crate::pattern::UnknownPattern),
    #[error("{0} overflows: the amounts are beyond what is summed exactly; reconcile fewer rows at a time")]
    Overflow(String),
    #[error("writing summary.json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = ReconcileError> = std::result::Result<T, E>;

/// Names what failed, for the user: `{what}: {error}`, or `what` alone
/// when there is no error to quote.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| ReconcileError::Input(format!("{}: {e}", what())))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| ReconcileError::Input(what()))
    }
}

/// Stops with an [`ReconcileError::Input`] built like `format!`.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::reconcile::ReconcileError::Input(format!($($arg)*)))
    };
}
use refuse;

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
        .context(|| format!("creating {}", opts.out_dir.display()))?;
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
