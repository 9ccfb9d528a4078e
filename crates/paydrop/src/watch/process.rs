//! One claimed file through submit: the submit options from the inbox and
//! the config, the outcome mapped to a fate (done, failed, deferred, held),
//! the metrics counted, and the file handed to [`super::outputs`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::inbox::{shown, Claimed};
use super::outputs::{file_away, unreadable_reason, FileReport};
use super::{Shared, DONE, FAILED};
use crate::ledger::Ledger;
use crate::mask;
use crate::submit::{submit_file, SubmitError, SubmitOptions, Submitted};
use crate::validate::Fatal;

/// What happened to one file.
pub(super) enum Fate {
    Done,
    Failed,
    /// Stays in `processing/`; retried after the provider comes back.
    Deferred,
    /// A part's outcome is unknown: the file stays in `processing/` and is
    /// looked at again every `unknown_recheck_secs` (bulk inquiry, `paydrop
    /// resolve`), never sent again blindly and never in the way of others.
    Held,
}

/// Takes one claimed file through submit, counted as processing meanwhile.
pub(super) async fn process(shared: &Shared, claimed: &Claimed) -> Fate {
    let m = shared.metrics.inbox(claimed.inbox);
    m.files_processing.fetch_add(1, Ordering::Relaxed);
    let fate = process_one(shared, claimed).await;
    m.files_processing.fetch_sub(1, Ordering::Relaxed);
    fate
}

async fn process_one(shared: &Shared, claimed: &Claimed) -> Fate {
    let inbox = &shared.inboxes[claimed.inbox];
    let started = Instant::now();
    let mut ledger = match Ledger::open(&shared.config.ledger.path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "ledger unavailable; file waits in processing/");
            return Fate::Deferred;
        }
    };
    let configured = match shared.config.submit_options(inbox.currency) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "submit settings unusable; file waits in processing/");
            return Fate::Deferred;
        }
    };
    let opts = SubmitOptions {
        currency_id: inbox.currency_id,
        installment: inbox.installment,
        half_2d: inbox.half_2d,
        callback_address: Some(shared.callback_url.clone()),
        compression: inbox.compression,
        mode: inbox.mode,
        ..configured
    };
    let sent = Arc::new(AtomicU64::new(0));
    let outcome = submit_file(
        &claimed.path,
        &inbox.pattern,
        &mut ledger,
        &shared.client,
        &opts,
        sent.clone(),
    )
    .await;
    let m = shared.metrics.inbox(claimed.inbox);
    m.upload_bytes
        .fetch_add(sent.load(Ordering::Relaxed), Ordering::Relaxed);
    m.submit_millis
        .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    // Compared with the ledger's record, so not sanitised; shown through
    // `shown`.
    let claimed_path = claimed.path.display().to_string();
    let shown_path = shown(&claimed.path);
    let (fate, reason, report, batch, notices) = match outcome {
        // The batch was created for another file with the same content,
        // still in flight when this copy was claimed: the provider
        // deduplicated its codes, and this copy is a duplicate.
        Ok(Submitted { report, batch, .. }) if batch.file != claimed_path => (
            Fate::Failed,
            Some(format!(
                "duplicate: this content was already submitted: {}",
                crate::submit::describe_batch(&batch)
            )),
            Some(report),
            None,
            Vec::new(),
        ),
        Ok(Submitted {
            report,
            batch,
            notices,
        }) => {
            m.rows_submitted.fetch_add(batch.rows, Ordering::Relaxed);
            let mut sum = m.amount_submitted.lock().expect("metrics lock");
            match sum.checked_add(batch.amount) {
                Some(s) => *sum = s,
                None => {
                    tracing::warn!("the submitted-amount metric overflows; it stays where it was")
                }
            }
            (Fate::Done, None, Some(report), Some(batch), notices)
        }
        Err(SubmitError::AlreadySubmitted { sha, earlier }) => {
            // Ours from before a crash (accepted, not yet moved), or a
            // duplicate someone dropped.
            let own = ledger.batches_for(&sha).ok().and_then(|bs| {
                bs.into_iter()
                    .find(|b| b.is_accepted() && b.file == claimed_path)
            });
            match own {
                Some(b) => (
                    Fate::Done,
                    None,
                    None,
                    Some(b),
                    vec!["accepted before a restart".into()],
                ),
                None => (
                    Fate::Failed,
                    Some(format!(
                        "duplicate: this content was already submitted: {earlier}"
                    )),
                    None,
                    None,
                    Vec::new(),
                ),
            }
        }
        Err(SubmitError::Invalid(report)) => (
            Fate::Failed,
            Some(format!(
                "{} of {} rows are invalid; nothing was sent",
                report.rows_invalid, report.rows_read
            )),
            Some(*report),
            None,
            Vec::new(),
        ),
        Err(
            e @ (SubmitError::Unusable(_)
            | SubmitError::Rejected { .. }
            | SubmitError::Conflict { .. }
            | SubmitError::RowsAlreadySent { .. }
            | SubmitError::FileChanged { .. }
            | SubmitError::Currency { .. }),
        ) => {
            match &e {
                SubmitError::Unusable(f @ Fatal::Open { .. }) => {
                    if claimed.path.symlink_metadata().is_err() {
                        // Deleted while we worked: nothing left to file.
                        tracing::error!(file = %shown_path, error = %e, "file disappeared");
                        m.files_failed.fetch_add(1, Ordering::Relaxed);
                        return Fate::Failed;
                    }
                    // Unreadable (e.g. claimed by an older version): filed in
                    // failed/, never claimed again on a restart.
                    (
                        Fate::Failed,
                        Some(unreadable_reason(f)),
                        None,
                        None,
                        Vec::new(),
                    )
                }
                _ => (Fate::Failed, Some(e.to_string()), None, None, Vec::new()),
            }
        }
        Err(e @ (SubmitError::Unknown { .. } | SubmitError::InFlight { .. })) => {
            tracing::warn!(file = %claimed_path, error = %e, "outcome unknown; the file stays in processing/ and is not sent again until the bulk inquiry or `paydrop resolve` settles it");
            m.files_deferred.fetch_add(1, Ordering::Relaxed);
            return Fate::Held;
        }
        Err(
            e @ (SubmitError::NotSent { .. }
            | SubmitError::Ledger(_)
            | SubmitError::Spool(_)
            | SubmitError::Join(_)),
        ) => {
            tracing::warn!(file = %shown_path, error = %e, "no definite outcome; the file stays in processing/ and is retried");
            m.files_deferred.fetch_add(1, Ordering::Relaxed);
            return Fate::Deferred;
        }
    };
    let state = if matches!(fate, Fate::Done) {
        DONE
    } else {
        FAILED
    };
    let file_report = FileReport {
        file: &claimed.original,
        claimed_as: shown_path.clone(),
        state,
        at: Utc::now(),
        // A provider's message or an error may quote a value.
        reason: reason.map(|r| mask::card_numbers(&r)),
        validation: report.as_ref(),
        batch: batch.as_ref(),
        notices: &notices,
    };
    match file_away(shared, inbox, claimed, state, &file_report) {
        Ok(dest) => {
            if let Some(b) = &batch {
                if let Err(e) = ledger.set_batch_file(b.id, &dest.display().to_string()) {
                    tracing::error!(error = %e, "cannot record the new place of the file");
                }
            }
            if state == DONE {
                // The time first: a scrape that sees the count sees it.
                m.last_success
                    .fetch_max(Utc::now().timestamp(), Ordering::Relaxed);
                m.files_done.fetch_add(1, Ordering::Relaxed);
                tracing::info!(file = %claimed.original, to = %shown(&dest), "filed");
            } else {
                m.files_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %claimed.original, to = %shown(&dest), reason = file_report.reason.as_deref().unwrap_or(""), "filed in failed/");
            }
            if let Some(b) = &batch {
                shared.results.write_outputs(b.id).await;
            }
            fate
        }
        Err(e) => {
            tracing::error!(file = %shown_path, error = %e, "cannot move the file; it stays in processing/ and is retried");
            m.files_deferred.fetch_add(1, Ordering::Relaxed);
            Fate::Deferred
        }
    }
}
