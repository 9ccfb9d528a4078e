//! Peak resident memory of a child process, for the memory tests of
//! reports and reconciliation.

use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `cmd` to its end; its exit code, peak resident memory (bytes) and
/// how long it took.
pub fn run_measured(cmd: &mut Command) -> (i32, u64, Duration) {
    let started = Instant::now();
    let mut child = cmd.spawn().expect("paydrop starts");
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let code = loop {
        // The high-water mark is read before the exit is collected: a reaped
        // process has no status file.
        let hwm = std::fs::read_to_string(&status).ok().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        peak_kib = peak_kib.max(hwm.unwrap_or(0));
        if let Some(done) = child.try_wait().unwrap() {
            break done.code().expect("exited");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (code, peak_kib * 1024, started.elapsed())
}
