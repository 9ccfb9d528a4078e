//! What the daemon writes: a file moved to `done/` or `failed/` beside its
//! `.report.json` (report first, file last), and the atomic JSON writer the
//! callback's outputs use too.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::inbox::{claim_name, shown, shown_name, Claimed, Inbox};
use super::scan::Scan;
use super::{Shared, FAILED};
use crate::ledger::Batch;
use crate::validate::{Fatal, Report};

/// Files a file that cannot be read straight from the inbox to `failed/`,
/// with a report saying why. When even that fails it stays in the inbox,
/// with one ERROR per rescan period.
pub(super) fn refuse_unreadable(
    shared: &Shared,
    index: usize,
    path: &Path,
    counter: u64,
    error: &Fatal,
    scan: &mut Scan,
    rescan: Duration,
) {
    let inbox = &shared.inboxes[index];
    let reason = unreadable_reason(error);
    let dest = inbox.sub(FAILED).join(claim_name(path, counter));
    let claimed_as = shown(&dest);
    let report = FileReport {
        file: &shown_name(path),
        claimed_as: claimed_as.clone(),
        state: FAILED,
        at: Utc::now(),
        reason: Some(reason.clone()),
        validation: None,
        batch: None,
        notices: &[],
    };
    let report_path = sibling(&dest, "report.json");
    let filed = std::fs::create_dir_all(inbox.sub(FAILED))
        .and_then(|()| write_json(&report_path, &report))
        .and_then(|()| {
            std::fs::rename(path, &dest).inspect_err(|_| {
                let _ = std::fs::remove_file(&report_path);
            })
        });
    match filed {
        Ok(()) => {
            shared
                .metrics
                .inbox(index)
                .files_failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(file = %shown(path), to = %claimed_as, reason = %reason, "filed unread");
        }
        Err(e) if scan.stuck(path, rescan) => tracing::error!(
            file = %shown(path),
            reason = %reason,
            error = %e,
            "cannot read the file, nor move it to failed/: it stays in the inbox until it is \
             readable or removed"
        ),
        Err(_) => {}
    }
}

/// Why a file could not be read, and what to do about it.
pub(super) fn unreadable_reason(error: &Fatal) -> String {
    #[cfg(unix)]
    let who = format!(
        "the paydrop daemon (uid {})",
        rustix::process::geteuid().as_raw()
    );
    #[cfg(not(unix))]
    let who = "the paydrop daemon".to_string();
    format!(
        "{error}; nothing was sent: {who} must be able to read the file: fix its permissions \
         (chmod / chown) and drop it into the inbox again"
    )
}

/// The report written beside a file in `done/` or `failed/`.
#[derive(Serialize)]
pub(super) struct FileReport<'a> {
    pub(super) file: &'a str,
    pub(super) claimed_as: String,
    pub(super) state: &'static str,
    pub(super) at: chrono::DateTime<Utc>,
    pub(super) reason: Option<String>,
    pub(super) validation: Option<&'a Report>,
    pub(super) batch: Option<&'a Batch>,
    pub(super) notices: &'a [String],
}

/// Writes the report, then moves the file beside it. The file moves last, so
/// a failure leaves it in `processing/`, to be handled again.
pub(super) fn file_away(
    shared: &Shared,
    inbox: &Inbox,
    claimed: &Claimed,
    state: &str,
    report: &FileReport<'_>,
) -> std::io::Result<PathBuf> {
    let dest = inbox
        .sub(state)
        .join(claimed.path.file_name().unwrap_or_default());
    let report_path = sibling(&dest, "report.json");
    if shared
        .hooks
        .fail_moves
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "injected: no space left on device",
        ));
    }
    std::fs::create_dir_all(inbox.sub(state))?;
    write_json(&report_path, report)?;
    std::fs::rename(&claimed.path, &dest)?;
    Ok(dest)
}

/// `done/x.csv` → `done/x.csv.{suffix}`.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes JSON to a temporary name, then renames: a reader never sees half.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = sibling(path, "tmp");
    let f = std::fs::File::create(&tmp)?;
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer_pretty(&mut w, value)?;
    use std::io::Write;
    w.flush()?;
    w.get_ref().sync_all()?;
    drop(w);
    std::fs::rename(&tmp, path)
}
