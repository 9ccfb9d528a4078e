//! Helpers of the payout export and payout trigger tests
//! (`tests/export_*.rs`, `tests/payout_*.rs`): the independent sandbox
//! crate on an ephemeral 127.0.0.1 port with fast polls, clients with tiny
//! retry delays, what a generated export must add up to (computed here from
//! the sandbox's payments, independently of paydrop's reader), and the
//! `paydrop` binary pointed at the sandbox.
//!
//! Each test binary uses a different subset of these (and of the
//! re-exported submit helpers).
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use paydrop::config::Secret;
use paydrop::export::{ExportClient, ExportError, Format, PollPolicy, Sink, Summary};
use paydrop_sandbox::export::{Content, Generated, Schema};
use paydrop_sandbox::{Sandbox, SandboxConfig};
use rust_decimal::Decimal;
use tempfile::TempDir;

#[path = "../common_submit/mod.rs"]
mod common_submit;
pub use common_submit::{
    client_for, credentials, fast_retry, guard, API_CLIENT, API_KEY, HANG_GUARD,
};

/// The export API's token in every test; distinctive, so that a leak into
/// any output is found by a plain substring search.
pub const TOKEN: &str = "tok-Jd83kQ-secret-bearer-0xZ1";

/// A sandbox config with the test credentials.
pub fn config() -> SandboxConfig {
    let mut c = SandboxConfig::default();
    c.marketplace.api_key = API_KEY.into();
    c.marketplace.api_client = API_CLIENT.into();
    c.export.token = TOKEN.into();
    c
}

/// [`config`] serving `rows` generated payments of `seed` in `schema`.
pub fn generated_in(rows: u64, seed: u64, schema: Schema) -> SandboxConfig {
    let mut c = config();
    c.export.content = Content::Generated(Generated { rows, seed, schema });
    c
}

/// [`generated_in`] the Earnings – Payments schema.
pub fn generated(rows: u64, seed: u64) -> SandboxConfig {
    generated_in(rows, seed, Schema::EarningsPayments)
}

pub async fn spawn(config: SandboxConfig) -> Sandbox {
    paydrop_sandbox::spawn(config)
        .await
        .expect("sandbox starts")
}

pub fn client(sandbox: &Sandbox, token: &str) -> ExportClient {
    ExportClient::new(
        &sandbox.base_url(),
        Secret::new(token),
        fast_retry(5),
        HANG_GUARD,
        Duration::from_secs(5),
    )
    .expect("client builds")
}

/// Polls every few milliseconds; gives up after `timeout`.
pub fn poll(timeout: Duration) -> PollPolicy {
    PollPolicy {
        first: Duration::from_millis(5),
        max: Duration::from_millis(20),
        timeout,
    }
}

/// Queue, wait and download into `sink`, as the CLI does.
pub async fn export(
    sandbox: &Sandbox,
    format: Format,
    sink: &mut Sink,
) -> Result<Summary, ExportError> {
    let c = client(sandbox, TOKEN);
    guard("export", async {
        let queued = c.queue(None, format).await?;
        let done = c.wait(queued, poll(HANG_GUARD), |_| {}).await?;
        Ok(c.download(&done, format, sink).await?.1)
    })
    .await
}

/// One group of totals: value → currency → (rows, amount).
pub type Totals = BTreeMap<String, BTreeMap<String, (u64, Decimal)>>;

/// What a generated export adds up to, per status, program, currency and
/// month, computed from the generator's rows.
pub struct Expected {
    pub rows: u64,
    pub by: BTreeMap<&'static str, Totals>,
}

pub fn expected(seed: u64, rows: u64) -> Expected {
    expected_filtered(seed, rows, None)
}

/// What a generated export adds up to after the sandbox applies `filter`.
pub fn expected_filtered(seed: u64, rows: u64, filter: Option<&str>) -> Expected {
    let g = Generated {
        rows,
        seed,
        schema: Schema::default(),
    };
    let mut by: BTreeMap<&'static str, Totals> = BTreeMap::new();
    let mut n = 0;
    for p in paydrop_sandbox::export::payments(&g, filter).expect("a filter the sandbox takes") {
        n += 1;
        let month = p.payment_date.format("%Y-%m").to_string();
        let keys = [
            ("status", p.status.to_string()),
            ("program", p.program_name.to_string()),
            ("currency", p.currency.to_string()),
            ("month", month),
        ];
        for (dimension, key) in keys {
            let slot = by
                .entry(dimension)
                .or_default()
                .entry(key)
                .or_default()
                .entry(p.currency.to_string())
                .or_insert((0, Decimal::ZERO));
            slot.0 += 1;
            slot.1 += p.total_payment;
        }
    }
    Expected { rows: n, by }
}

/// A summary's groups in the shape of [`Totals`].
pub fn totals(groups: &paydrop::export::Groups) -> Totals {
    groups
        .iter()
        .map(|(k, per)| {
            let per = per
                .iter()
                .map(|(c, t)| (c.clone(), (t.rows, t.amount)))
                .collect();
            (k.clone(), per)
        })
        .collect()
}

/// Panics unless `summary` is exactly what the generator's rows add up to.
pub fn assert_matches(summary: &Summary, want: &Expected) {
    assert_eq!(summary.rows, want.rows);
    assert_eq!(totals(&summary.by_status), want.by["status"], "by status");
    assert_eq!(
        totals(&summary.by_program),
        want.by["program"],
        "by program"
    );
    assert_eq!(
        totals(&summary.by_currency),
        want.by["currency"],
        "by currency"
    );
    assert_eq!(totals(&summary.by_month), want.by["month"], "by month");
}

/// The lines `--summary` must print for `want` (whitespace collapsed).
pub fn summary_lines(want: &Expected) -> Vec<String> {
    let mut lines = Vec::new();
    for dimension in ["status", "program", "currency", "month"] {
        for (value, per) in &want.by[dimension] {
            for (currency, (rows, amount)) in per {
                lines.push(format!("{value} {currency} {amount} ({rows} rows)"));
            }
        }
    }
    lines
}

/// Text with every run of whitespace made one space, line by line.
pub fn collapse(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The `paydrop` binary against `sandbox`, with its ledger and config in
/// `dir` (fast polls and retries) and the credentials in the environment.
pub fn paydrop(sandbox: &Sandbox, dir: &Path) -> Command {
    let config = dir.join("paydrop.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = {:?}\n\n[submit]\nbackoff_ms = 5\nbackoff_max_ms = 20\n\n\
             [export]\npoll_ms = 5\npoll_max_ms = 20\n",
            dir.join("ledger.db")
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paydrop"));
    cmd.current_dir(dir)
        .env("PAYDROP_CONFIG", &config)
        .env("PAYDROP_PATTERNS", dir.join("patterns"))
        .env("PAYDROP_BASE_URL", sandbox.base_url())
        .env("PAYDROP_EXPORT_BASE_URL", sandbox.base_url())
        .env("PAYDROP_EXPORT_TOKEN", TOKEN)
        .env("PAYDROP_API_KEY", API_KEY)
        .env("PAYDROP_API_CLIENT", API_CLIENT)
        .env("PAYDROP_LOG", "info")
        .env("NO_COLOR", "1");
    cmd
}

/// `paydrop export payments ARGS` against `sandbox` in a new folder:
/// exit code, stdout, stderr, and the folder.
pub async fn export_cli(sandbox: &Sandbox, args: &[&str]) -> (i32, String, String, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = paydrop(sandbox, dir.path());
    cmd.args(["export", "payments"]).args(args);
    let (code, out, err) = run(cmd).await;
    (code, out, err, dir)
}

/// Runs `cmd` on a blocking thread (the sandbox runs on this test's
/// runtime): exit code, stdout, stderr.
pub async fn run(mut cmd: Command) -> (i32, String, String) {
    let out = guard(
        "paydrop",
        tokio::task::spawn_blocking(move || cmd.output().expect("run paydrop")),
    )
    .await
    .expect("join");
    (
        out.status.code().expect("exited normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
