//! The inboxes: each configured folder resolved, its notify watch kept
//! alive, ready files claimed into `processing/` (and found there again after
//! a restart), and the per-state counts `paydrop status` shows.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::Utc;
use tokio::sync::mpsc;

use super::scan::ignored;
use super::{Shared, DONE, FAILED, PROCESSING};
use crate::compress::{Codec, Compression};
use crate::config::{Config, InboxConfig};
use crate::currency::Currency;
use crate::pattern::{Pattern, Registry};
use crate::upload::BodyMode;
use crate::{mask, names};

/// A watched folder, resolved.
pub struct Inbox {
    pub dir: PathBuf,
    pub pattern: Pattern,
    pub currency: Currency,
    pub currency_id: u32,
    pub installment: u32,
    pub half_2d: bool,
    pub compression: Compression,
    pub mode: BodyMode,
}

impl Inbox {
    pub(super) fn resolve(
        cfg: &InboxConfig,
        config: &Config,
        registry: &Registry,
    ) -> Result<Inbox> {
        let currency: Currency = cfg.currency.parse().map_err(anyhow::Error::msg)?;
        let codec: Codec = cfg
            .compress
            .as_deref()
            .unwrap_or(&config.submit.compress)
            .parse()
            .map_err(anyhow::Error::msg)?;
        Ok(Inbox {
            dir: cfg.path.clone(),
            pattern: registry.get(cfg.pattern)?.clone(),
            currency,
            currency_id: config.currency_id(currency)?,
            installment: cfg.installment,
            half_2d: cfg.half_2d,
            compression: Compression::new(codec, cfg.level.or(config.submit.level))
                .map_err(anyhow::Error::msg)?,
            mode: if cfg
                .compress_file_part
                .unwrap_or(config.submit.compress_file_part)
            {
                BodyMode::FilePart
            } else {
                BodyMode::WholeBody
            },
        })
    }

    pub(super) fn sub(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(super) fn ensure_dirs(&self) -> std::io::Result<()> {
        for d in [PROCESSING, DONE, FAILED] {
            std::fs::create_dir_all(self.sub(d))?;
        }
        Ok(())
    }
}

/// A claimed file waiting for, or in, processing.
#[derive(Clone, Debug)]
pub(super) struct Claimed {
    pub(super) inbox: usize,
    pub(super) path: PathBuf,
    pub(super) original: String,
    /// At least [`BIG_FILE`] bytes: big files never take the last free slot.
    pub(super) big: bool,
}

/// Files of this size or more count as big for scheduling.
pub const BIG_FILE: u64 = 16 << 20;

pub(super) fn is_big(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() >= BIG_FILE)
}

/// Files left in `processing/` by an earlier run, in claim order.
pub(super) fn recover(shared: &Shared) -> VecDeque<Claimed> {
    let mut out = Vec::new();
    for (i, inbox) in shared.inboxes.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(inbox.sub(PROCESSING)) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_file() {
                let name = shown_name(&path);
                let original = name.splitn(3, '-').nth(2).unwrap_or(&name).to_string();
                out.push(Claimed {
                    inbox: i,
                    big: is_big(&path),
                    path,
                    original,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
    if !out.is_empty() {
        tracing::info!(files = out.len(), "resuming files left in processing/");
    }
    out.into()
}

/// (Re-)establishes the notify watcher of an inbox; the folder may have been
/// deleted and recreated, which silently ends a watch. The bool is whether
/// `processing/` existed since the watch began.
pub(super) fn keep_watching(
    watchers: &mut HashMap<usize, (notify::RecommendedWatcher, bool)>,
    i: usize,
    inbox: &Inbox,
    wake: &mpsc::Sender<()>,
) {
    use notify::Watcher;
    if !inbox.dir.is_dir() {
        watchers.remove(&i);
        return;
    }
    let complete = inbox.sub(PROCESSING).is_dir();
    match watchers.get_mut(&i) {
        // Recreated inbox: watch it anew. Its sub-folders are made when a
        // file needs them, not here: recreating them at once would undo an
        // `rm -rf` of the inbox under its feet ("Directory not empty").
        Some((_, had)) if *had && !complete => {
            watchers.remove(&i);
        }
        Some((_, had)) => {
            *had |= complete;
            return;
        }
        None => {}
    }
    let wake = wake.clone();
    let made = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the folder (every scan does) raises open and close events
        // on it: waking up for them made each scan cause the next one, about
        // 1,800 a second on an idle inbox. A closed writer still counts.
        if let Ok(e) = &event {
            use notify::event::{AccessKind, AccessMode, EventKind};
            if matches!(e.kind, EventKind::Access(k) if k != AccessKind::Close(AccessMode::Write)) {
                return;
            }
        }
        // Any other event just triggers a scan; a full queue means one is
        // pending.
        let _ = wake.try_send(());
    })
    .and_then(|mut w| {
        w.watch(&inbox.dir, notify::RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    match made {
        Ok(w) => {
            watchers.insert(i, (w, complete));
        }
        Err(e) => {
            tracing::warn!(dir = %inbox.dir.display(), error = %e, "no file events; relying on rescans")
        }
    }
}

/// Files paydrop writes beside a filed payment file.
fn is_sidecar(name: &str) -> bool {
    [".report.json", ".results.json", ".retry.csv"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Moves a file into `processing/` under a name that never collides.
pub(super) fn claim(inbox: &Inbox, path: &Path, counter: u64) -> std::io::Result<PathBuf> {
    let to = inbox.sub(PROCESSING).join(claim_name(path, counter));
    // The inbox may have been deleted and recreated meanwhile.
    std::fs::create_dir_all(inbox.sub(PROCESSING))?;
    std::fs::rename(path, &to)?;
    tracing::info!(file = %shown(path), claimed = %shown(&to), "claimed");
    Ok(to)
}

/// A path as logs and reports show it: sanitised (a name can hold a line
/// break) and masked (or a card number).
pub(super) fn shown(path: &Path) -> String {
    mask::card_numbers(&names::path(path))
}

/// A file name as logs and reports show it (see [`shown`]).
pub(super) fn shown_name(path: &Path) -> String {
    mask::card_numbers(&names::file_name(path))
}

/// `<time>-<n>-<name>`: unique, sorting in arrival order, and keeping the
/// original name (bytes and all) after the second dash.
pub(super) fn claim_name(path: &Path, counter: u64) -> std::ffi::OsString {
    let mut name = std::ffi::OsString::from(format!(
        "{}-{counter:06}-",
        Utc::now().format("%Y%m%dT%H%M%S%3fZ")
    ));
    name.push(path.file_name().unwrap_or_default());
    name
}

/// Files in each state of an inbox, for `paydrop status`.
pub fn inbox_counts(dir: &Path) -> [(String, usize); 4] {
    let count = |d: &Path, reports: bool| {
        std::fs::read_dir(d)
            .map(|es| {
                es.flatten()
                    // The entry itself: a link to a file is not a file here.
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        !(ignored(&n) || (reports && is_sidecar(&n)))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    [
        ("waiting".into(), count(dir, false)),
        (PROCESSING.into(), count(&dir.join(PROCESSING), false)),
        (DONE.into(), count(&dir.join(DONE), true)),
        (FAILED.into(), count(&dir.join(FAILED), true)),
    ]
}
