//! Issue 5, item 4: the payment report is parsed as it streams in. The peak
//! resident memory of `paydrop report payments` barely moves when the
//! report grows ten-fold (the embedded sandbox serves it from this test
//! process; only the client is measured). No timing is asserted.

mod common_rss;

use std::process::{Command, Stdio};

use common_rss::run_measured;
use paydrop_sandbox::SandboxConfig;

const SMALL: u64 = 10_000;
const BIG: u64 = 100_000;
/// Allowed growth: allocator slack, never the report itself.
const SLACK: u64 = 8 << 20;

async fn peak_for(rows: u64, dir: &std::path::Path) -> (u64, u64) {
    let mut config = SandboxConfig::default();
    config.report.rows = rows;
    let sb = paydrop_sandbox::spawn(config).await.unwrap();
    let out = dir.join(format!("report-{rows}.jsonl"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paydrop"));
    // The sandbox's published test login.
    cmd.env_remove("PAYDROP_CONFIG")
        .env("PAYDROP_REPORT_EMAIL", "merchant@sandbox.example")
        .env("PAYDROP_REPORT_PASSWORD", "sandbox-pass")
        .args([
            "report",
            "payments",
            "--from",
            "2024-10-01",
            "--to",
            "2024-10-31",
        ])
        .args(["--base", &sb.base_url(), "-o"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let (code, peak, took) = tokio::task::spawn_blocking(move || run_measured(&mut cmd))
        .await
        .unwrap();
    assert_eq!(code, 0);
    let bytes = std::fs::metadata(&out).unwrap().len();
    eprintln!(
        "{rows} transactions ({bytes} bytes of JSON Lines): peak RSS {:.1} MiB, {took:.1?}",
        peak as f64 / f64::from(1 << 20)
    );
    (peak, bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn peak_memory_does_not_grow_with_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let (small, _) = peak_for(SMALL, dir.path()).await;
    let (big, big_bytes) = peak_for(BIG, dir.path()).await;
    assert!(
        big < small + SLACK,
        "peak RSS grew from {small} to {big} bytes for {BIG} instead of {SMALL} transactions"
    );
    assert!(big < big_bytes, "peak RSS {big} ≥ output {big_bytes}");
}
