//! What a scan of an inbox finds: the regular files that stopped changing
//! (ready to be claimed), and the entries it leaves alone, each reported once.
//!
//! Only regular files are taken. A symbolic link may point anywhere (moving
//! it moves the link, not the payments), a folder or a device is not a
//! payment file, and a FIFO would block the reader: each is skipped with one
//! WARN when first seen, not on every scan. A file that cannot be read is
//! not claimed (its outcome could never be recorded); the daemon files it in
//! `failed/`, and when even that fails, [`Scan::stuck`] keeps its ERROR to one
//! line per rescan period.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::{DONE, FAILED, PROCESSING};
use crate::validate::file_kind;

/// Whether a name is one the inbox ignores until it is renamed.
pub fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp")
}

/// An inbox entry that is not taken, and why (`"a symbolic link"`). The
/// inbox's own sub-folders and ignored names are not listed.
pub fn skipped(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, &'static str)> = entries
        .flatten()
        .filter_map(|e| {
            let kind = skip_reason(&e.file_name().to_string_lossy(), e.file_type().ok()?)?;
            Some((e.path(), kind))
        })
        .collect();
    out.sort();
    out
}

/// Why an entry is skipped, for an entry that is neither taken nor silently
/// ignored. The type is the entry's own: a link is not followed.
fn skip_reason(name: &str, t: std::fs::FileType) -> Option<&'static str> {
    let own_folder = t.is_dir() && [PROCESSING, DONE, FAILED].contains(&name);
    (!t.is_file() && !own_folder && !ignored(name)).then(|| file_kind(t))
}

/// What the scans of one daemon remember between passes.
#[derive(Default)]
pub struct Scan {
    /// Size, mtime, and since when they have not changed, per file.
    seen: HashMap<PathBuf, (u64, SystemTime, Instant)>,
    /// Entries skipped as not regular files, warned about once.
    skipped: HashSet<PathBuf>,
    /// Unreadable files that could not be filed: when their last ERROR was.
    stuck: HashMap<PathBuf, Instant>,
}

impl Scan {
    /// Regular files of `dir` whose size and mtime have not changed for
    /// `quiet`, oldest first. Other entries are skipped with one WARN each.
    pub fn stable_files(&mut self, dir: &Path, quiet: Duration) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut ready = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(t) = e.file_type() else { continue };
            if let Some(kind) = skip_reason(&name, t) {
                if self.skipped.insert(path.clone()) {
                    tracing::warn!(
                        file = %super::inbox::shown(&path),
                        kind,
                        "skipped: not a regular file; paydrop takes only regular files: put \
                         the file itself in the inbox (write it, then rename it)"
                    );
                }
                continue;
            }
            if !t.is_file() || ignored(&name) {
                continue;
            }
            self.skipped.remove(&path);
            // The entry's own metadata: a link is never followed.
            let Ok(meta) = e.metadata() else { continue };
            let size = meta.len();
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            match self.seen.get(&path) {
                Some(&(s, m, since)) if s == size && m == mtime => {
                    if now.duration_since(since) >= quiet {
                        self.seen.remove(&path);
                        ready.push((mtime, path));
                    }
                }
                _ => {
                    self.seen.insert(path, (size, mtime, now));
                }
            }
        }
        let gone = |p: &PathBuf| p.symlink_metadata().is_err();
        self.seen.retain(|p, _| !gone(p));
        self.skipped.retain(|p| !gone(p));
        self.stuck.retain(|p, _| !gone(p));
        // Arrival order: oldest first.
        ready.sort();
        ready.into_iter().map(|(_, p)| p).collect()
    }

    /// Whether to log, now, that `path` is stuck: at most once per `period`.
    pub fn stuck(&mut self, path: &Path, period: Duration) -> bool {
        let now = Instant::now();
        match self.stuck.get(path) {
            Some(last) if now.duration_since(*last) < period => false,
            _ => {
                self.stuck.insert(path.to_path_buf(), now);
                true
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_taken_and_each_other_entry_is_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("pay.csv"), "x").unwrap();
        std::fs::write(d.join("pay.csv.part"), "x").unwrap();
        std::fs::create_dir(d.join(PROCESSING)).unwrap();
        std::fs::create_dir(d.join("archive")).unwrap();
        std::os::unix::fs::symlink(d.join("pay.csv"), d.join("link.csv")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(d.join("pipe.csv"))
            .status()
            .unwrap();
        assert!(made.success());

        let listed: Vec<(String, &str)> = skipped(d)
            .into_iter()
            .map(|(p, k)| (p.file_name().unwrap().to_string_lossy().into_owned(), k))
            .collect();
        assert_eq!(
            listed,
            [
                ("archive".into(), "a folder"),
                ("link.csv".into(), "a symbolic link"),
                ("pipe.csv".into(), "a FIFO (named pipe)"),
            ]
        );

        let mut scan = Scan::default();
        assert!(
            scan.stable_files(d, Duration::ZERO).is_empty(),
            "first sight"
        );
        assert_eq!(scan.stable_files(d, Duration::ZERO), [d.join("pay.csv")]);
        assert_eq!(scan.skipped.len(), 3, "each remembered, so warned once");
    }

    #[test]
    fn a_stuck_file_is_reported_once_per_period() {
        let mut scan = Scan::default();
        let p = Path::new("/inbox/x.csv");
        assert!(scan.stuck(p, Duration::from_secs(60)));
        assert!(!scan.stuck(p, Duration::from_secs(60)));
        assert!(scan.stuck(p, Duration::ZERO));
    }
}
