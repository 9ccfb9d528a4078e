//! Issue 5, payout exports: downloading and summarising an export far
//! larger than memory keeps the `paydrop` binary's peak RSS flat. The
//! sandbox generates 1,200,000 rows (about 240 MB) on the fly; the peak is
//! the process's `VmHWM` in `/proc/<pid>/status`, read until it exits. No
//! timing is asserted.

mod common_export;

use std::time::Duration;

use common_export::*;

const ROWS: u64 = 1_200_000;
const LIMIT: u64 = 64 << 20;

/// `VmHWM` of a live process, in bytes.
fn high_water_mark(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summarising_a_huge_export_keeps_peak_memory_flat() {
    let seed = 21;
    let sandbox = spawn(generated(ROWS, seed)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::from(paydrop(&sandbox, dir.path()));
    cmd.args(["export", "payments", "--summary"])
        .env("PAYDROP_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn paydrop");
    let pid = child.id().expect("running");
    let output = child.wait_with_output();
    tokio::pin!(output);
    let mut peak = 0u64;
    let output = guard("the big export", async {
        loop {
            tokio::select! {
                out = &mut output => break out.expect("paydrop ran"),
                _ = tokio::time::sleep(Duration::from_millis(5)) => {
                    peak = peak.max(high_water_mark(pid).unwrap_or(0));
                }
            }
        }
    })
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("{ROWS} rows")), "{stdout}");
    let want = expected(seed, ROWS);
    let printed = collapse(&stdout);
    for line in summary_lines(&want) {
        assert!(printed.contains(&line), "missing '{line}'");
    }

    let size: u64 = printed[0]
        .split(", ")
        .find_map(|part| part.strip_suffix(" bytes")?.parse().ok())
        .expect("the size is printed");
    assert!(size > 2 * LIMIT, "the export is {size} bytes");
    assert!(peak > 0, "VmHWM was read");
    assert!(
        peak < LIMIT,
        "peak RSS {peak} bytes for a {size}-byte export; the limit is {LIMIT}"
    );
    eprintln!(
        "export of {size} bytes ({ROWS} rows): peak RSS {} KiB",
        peak / 1024
    );
}
