//! Accepted parts still without complete results: what `paydrop status`
//! shows about each (rows and pages missing, overdue or not, what to do) and
//! what `/metrics` counts.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ledger::{Ledger, LedgerError, ResultProgress, Submission};
use crate::watch::prometheus;

/// One accepted part whose results are not complete.
#[derive(Clone, Debug)]
pub struct Awaiting {
    pub submission: Submission,
    pub progress: ResultProgress,
    /// Accepted this long ago.
    pub waiting: chrono::Duration,
    /// Waiting longer than `[watch] results_overdue_secs`.
    pub overdue: bool,
}

fn is_overdue(s: &Submission, overdue_after: Duration, now: DateTime<Utc>) -> bool {
    chrono::Duration::from_std(overdue_after).is_ok_and(|d| now - s.updated_at >= d)
}

/// Every accepted part without complete results, oldest first.
pub fn awaiting(
    ledger: &Ledger,
    overdue_after: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Awaiting>, LedgerError> {
    ledger
        .awaiting_results()?
        .into_iter()
        .map(|s| {
            Ok(Awaiting {
                progress: ledger.result_progress(s.id)?,
                waiting: now - s.updated_at,
                overdue: is_overdue(&s, overdue_after, now),
                submission: s,
            })
        })
        .collect()
}

impl fmt::Display for Awaiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.submission;
        write!(
            f,
            "batch {} part {}  BulkPaymentId {}  {}  {} rows  {}",
            s.batch_id,
            s.part,
            s.bulk_payment_id.unwrap_or_default(),
            s.merchant_unique_code,
            s.rows,
            self.progress
        )?;
        if self.overdue {
            let date = s.created_at.with_timezone(&crate::PROVIDER_TZ).date_naive();
            write!(
                f,
                "\n    OVERDUE: no complete results {} h after the provider accepted it. Ask the \
                 provider to send them again (POST /api/paywall/payment/bulk/send/callback with \
                 Date {date} and MerchantUniqueCode {code}; it works for batches up to 7 days \
                 old), or look the batch up with the bulk query (GET \
                 /api/paywall/payment/bulk/payment/query, merchantuniquecode {code}).",
                self.waiting.num_hours(),
                code = s.merchant_unique_code,
            )?;
        }
        Ok(())
    }
}

/// How many accepted parts await results (and their batches), how many of
/// them are overdue, and how many parts are of unknown outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub incomplete: u64,
    pub overdue: u64,
    pub batches: u64,
    pub unknown: u64,
}

pub fn counts(
    ledger: &Ledger,
    overdue_after: Duration,
    now: DateTime<Utc>,
) -> Result<Counts, LedgerError> {
    let parts = ledger.awaiting_results()?;
    let batches: std::collections::BTreeSet<i64> = parts.iter().map(|s| s.batch_id).collect();
    let unknown = ledger
        .open_submissions()?
        .iter()
        .filter(|s| s.outcome_unknown())
        .count() as u64;
    Ok(Counts {
        incomplete: parts.len() as u64,
        batches: batches.len() as u64,
        unknown,
        overdue: parts
            .iter()
            .filter(|s| is_overdue(s, overdue_after, now))
            .count() as u64,
    })
}

impl Counts {
    /// The ledger's gauges of `/metrics`.
    pub fn render(&self, out: &mut String) {
        prometheus(
            out,
            "gauge",
            "paydrop_results_incomplete_parts",
            "Accepted parts whose results are not complete yet",
            self.incomplete,
        );
        prometheus(
            out,
            "gauge",
            "paydrop_results_overdue_parts",
            "Accepted parts without complete results after results_overdue_secs: ask the provider to resend them",
            self.overdue,
        );
        prometheus(
            out,
            "gauge",
            "paydrop_batches_awaiting_results",
            "Batches with an accepted part whose results are not complete yet",
            self.batches,
        );
        prometheus(
            out,
            "gauge",
            "paydrop_parts_outcome_unknown",
            "Parts that may or may not have reached the provider: settle them (paydrop resolve)",
            self.unknown,
        );
    }
}
