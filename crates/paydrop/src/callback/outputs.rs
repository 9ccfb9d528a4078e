//! A batch's results, written once they are complete: `x.csv.results.json`
//! (the summary) and `x.csv.retry.csv` (the declined rows worth retrying),
//! beside the file in `done/`. Both are written by streaming the ledger's
//! result lines and the original file in step: memory stays flat whatever
//! the batch's size. The daemon's counters of paid / declined rows move
//! once per batch, when its results.json is first written.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::Receiver;
use crate::config::Config;
use crate::ledger::{Ledger, LedgerError};
use crate::pattern::{Registry, UnknownPattern};
use crate::results::{RetryWriter, Summary};
use crate::totals::{Tally, TallyOverflow};
use crate::watch::{sibling, write_json, DONE};

/// Why a batch's results were not written; they are tried again on the
/// batch's next callback and when the daemon starts.
#[derive(Debug, thiserror::Error)]
enum OutputError {
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Pattern(#[from] UnknownPattern),
    /// Reading the original file, or writing results.json or the retry file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Overflow(#[from] TallyOverflow),
}

type Result<T, E = OutputError> = std::result::Result<T, E>;

#[derive(Serialize)]
struct ResultsReport<'a> {
    batch: i64,
    file: &'a str,
    bulk_payment_ids: Vec<i64>,
    rows_sent: u64,
    summary: &'a Summary,
    retry_file: Option<String>,
    retry: Option<Tally>,
    /// What to do about unsettled rows, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

const UNSETTLED_NOTE: &str = "some rows are neither paid nor declined per the result file \
    (see summary.unsettled_by_reason): confirm them with the provider's bulk query \
    (GET /api/paywall/payment/bulk/payment/query) before treating them as paid or sending them again";

impl Receiver {
    /// Writes the results of a batch whose every part has complete results
    /// and whose file is in `done/`; does nothing otherwise, or when they
    /// were written before. Safe to call any number of times.
    pub async fn write_outputs(&self, batch_id: i64) {
        let _guard = self.outputs.lock().await;
        let (config, registry) = (self.config.clone(), self.registry.clone());
        let written =
            tokio::task::spawn_blocking(move || write_batch(&config, &registry, batch_id)).await;
        match written {
            Ok(Ok(Some(s))) => {
                let m = &self.metrics;
                m.rows_paid.fetch_add(s.paid.rows, Ordering::Relaxed);
                m.rows_authorised
                    .fetch_add(s.authorised.rows, Ordering::Relaxed);
                m.rows_declined
                    .fetch_add(s.declined.rows, Ordering::Relaxed);
                m.rows_unsettled
                    .fetch_add(s.unsettled.rows, Ordering::Relaxed);
                tracing::info!(
                    batch = batch_id,
                    paid = s.paid.rows,
                    declined = s.declined.rows,
                    unsettled = s.unsettled.rows,
                    "results written"
                );
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(batch = batch_id, error = %e, "cannot write the results"),
            Err(e) => tracing::error!(batch = batch_id, error = %e, "results writer stopped"),
        }
    }

    /// Writes the results left unwritten by an earlier run (it stopped
    /// between the last page and the files).
    pub(crate) async fn catch_up(&self) {
        let path = self.config.ledger.path.clone();
        let pending = tokio::task::spawn_blocking(move || {
            Ledger::open(&path)?.batches_with_unwritten_results()
        })
        .await;
        match pending {
            Ok(Ok(ids)) => {
                for id in ids {
                    self.write_outputs(id).await;
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot look for unwritten results"),
            Err(e) => tracing::error!(error = %e, "cannot look for unwritten results"),
        }
    }
}

/// The summary when this call wrote the batch's results for the first time.
fn write_batch(config: &Config, registry: &Registry, batch_id: i64) -> Result<Option<Summary>> {
    let ledger = Ledger::open(&config.ledger.path)?;
    let Some(batch) = ledger.batch(batch_id)? else {
        return Ok(None);
    };
    if batch.submissions.iter().any(|s| s.results_at.is_none())
        || ledger.results_written(batch_id)?
    {
        return Ok(None);
    }
    let Some(file) = filed(&ledger, batch_id, &batch.file)? else {
        return Ok(None);
    };
    let pattern = registry.get(batch.pattern)?;
    let mut summary = Summary::default();
    let retry_path = sibling(&file, "retry.csv");
    let mut retry: Option<RetryWriter<'_>> = None;
    let mut rows_sent = 0;
    // Parts in order cover the file's rows in order: the retry file is
    // written in one pass over the original.
    for s in &batch.submissions {
        rows_sent += ledger.sent_row_count(s.id)?;
        ledger.each_result_of_submission(s.id, |line| -> Result<()> {
            summary.add(&line)?;
            if Summary::is_retry(&line) {
                let w = match &mut retry {
                    Some(w) => w,
                    None => retry.insert(RetryWriter::create(
                        &file,
                        pattern,
                        batch.generation + 1,
                        &retry_path,
                        config.submit.max_line_bytes,
                    )?),
                };
                w.push(line.line_number)?;
            }
            Ok(())
        })?;
    }
    let retry_tally = retry.map(RetryWriter::finish).transpose()?;
    write_json(
        &sibling(&file, "results.json"),
        &ResultsReport {
            batch: batch.id,
            file: &batch.file,
            bulk_payment_ids: batch
                .submissions
                .iter()
                .filter_map(|s| s.bulk_payment_id)
                .collect(),
            rows_sent,
            summary: &summary,
            retry_file: retry_tally
                .as_ref()
                .map(|_| retry_path.display().to_string()),
            retry: retry_tally,
            note: (summary.unsettled.rows > 0).then_some(UNSETTLED_NOTE),
        },
    )?;
    Ok(ledger.mark_results_written(batch_id)?.then_some(summary))
}

/// The batch's file once it is in `done/`. A crash between the move to
/// `done/` and the ledger update leaves the ledger naming `processing/`: the
/// file is found where it went, and the ledger corrected.
fn filed(ledger: &Ledger, batch_id: i64, recorded: &str) -> Result<Option<PathBuf>> {
    let mut file = PathBuf::from(recorded);
    if !file.exists() {
        let moved = file
            .parent()
            .and_then(Path::parent)
            .zip(file.file_name())
            .map(|(inbox, name)| inbox.join(DONE).join(name));
        if let Some(moved) = moved.filter(|m| m.exists()) {
            ledger.set_batch_file(batch_id, &moved.display().to_string())?;
            file = moved;
        }
    }
    let in_done = file
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == DONE);
    Ok(in_done.then_some(file))
}
