//! Issue 2: the validator streams. Validating a file ten times larger (and
//! far larger than the 64 KiB buffers) costs no more memory than the
//! uniqueness index grows by, measured as the peak RSS of the `paydrop`
//! binary. No timing is asserted.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::*;

const SMALL_ROWS: u64 = 25_000;
const BIG_ROWS: u64 = 250_000;
/// Allowed growth: buffers and allocator slack, plus the uniqueness index.
const FIXED_SLACK: u64 = 8 << 20;
const PER_ROW: u64 = 16;

/// Peak resident memory of the process `cmd` starts, in bytes, and its exit
/// code: `/usr/bin/time -f %M` when it is installed, else [`poll_peak_rss`].
fn peak_rss(cmd: &Command) -> (i32, u64) {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return poll_peak_rss(cmd);
    }
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new(time);
    timed
        .args(["-f", "%M", "-o"])
        .arg(out_file.path())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = timed.status().expect("run under /usr/bin/time");
    let text = fs::read_to_string(out_file.path()).unwrap();
    // `time` notes a non-zero exit on a line of its own before the figure.
    let kib: u64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {text:?}"));
    (status.code().expect("exited"), kib * 1024)
}

/// Peak resident memory by reading `VmHWM` (the high-water mark) from
/// `/proc/<pid>/status` until the process exits.
fn poll_peak_rss(cmd: &Command) -> (i32, u64) {
    let mut child = Command::new(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn paydrop");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        // Read before reaping: a reaped (or zombie) process has no VmHWM.
        if let Ok(status) = fs::read_to_string(&status_path) {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            if let Some(kib) = hwm {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait().expect("wait for paydrop") {
            return (status.code().expect("exited"), peak_kib * 1024);
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn validate_cmd(file: &Path, patterns: &Path) -> Command {
    let mut cmd = paydrop(patterns);
    cmd.args(["validate", "-p", "1", "-q", "--as-of", AS_OF_ARG])
        .arg(file);
    cmd
}

#[test]
fn peak_memory_does_not_grow_with_the_file_beyond_the_uniqueness_index() {
    let pattern = builtin(1);
    let (small, _) = generate_file(&pattern, &gen_options(SMALL_ROWS, 0.0, 1));
    let (big, _) = generate_file(&pattern, &gen_options(BIG_ROWS, 0.0, 1));
    let big_len = fs::metadata(big.path()).unwrap().len();
    assert!(big_len > 25 << 20, "the big file is {big_len} bytes");

    let patterns = tempfile::tempdir().unwrap();
    let (code, small_rss) = peak_rss(&validate_cmd(small.path(), patterns.path()));
    assert_eq!(code, 0);
    let (code, big_rss) = peak_rss(&validate_cmd(big.path(), patterns.path()));
    assert_eq!(code, 0);

    let allowed = FIXED_SLACK + PER_ROW * (BIG_ROWS - SMALL_ROWS);
    let grew = big_rss.saturating_sub(small_rss);
    assert!(
        grew < allowed,
        "peak RSS grew by {grew} bytes ({small_rss} → {big_rss}) for a {big_len}-byte file; \
         allowed {allowed}"
    );
    // Far less than the file: nothing holds it whole.
    assert!(
        big_rss < big_len,
        "peak RSS {big_rss} ≥ file size {big_len}"
    );
}

#[test]
fn polling_proc_measures_a_plausible_peak() {
    let (file, _) = generate_file(&builtin(1), &gen_options(SMALL_ROWS, 0.0, 2));
    let patterns = tempfile::tempdir().unwrap();
    let (code, rss) = poll_peak_rss(&validate_cmd(file.path(), patterns.path()));
    assert_eq!(code, 0);
    assert!((1 << 20..256 << 20).contains(&rss), "peak RSS {rss}");
}
