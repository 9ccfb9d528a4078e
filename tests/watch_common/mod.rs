//! Helpers of the drop-folder daemon's tests (`tests/watch_*.rs`): a [`Rig`]
//! is one independent sandbox provider (`paydrop-sandbox`, written from the
//! provider's pages) on an ephemeral 127.0.0.1 port and a
//! temporary folder with an inbox, a staging folder and a ledger; a
//! [`Daemon`] is `watch::run` on that rig in a tokio task, stopped gracefully
//! or "killed" (its task aborted, which runs no cleanup). Plus hand-made
//! pattern-1 payment files whose every row's outcome at the sandbox can be
//! predicted, folder listings, polling with a deadline (a hang guard, never
//! a timing assertion), captured logs and the `paydrop` binary.
//!
//! Each test binary uses a different subset of these.
#![allow(dead_code)]

use std::fs;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use paydrop::config::{Config, InboxConfig, Secret};
use paydrop::ledger::{Batch, Ledger};
use paydrop::pattern::{Pattern, Registry};
use paydrop::upload::{Client, Credentials};
use paydrop::watch::{self, WatchHooks, DONE, FAILED, PROCESSING};
use paydrop_sandbox::bulk::{self, BatchRecord, Decline};
use paydrop_sandbox::{Sandbox, SandboxConfig};
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The sandbox's default credentials (`bulk::Config::default()`).
pub const API_KEY: &str = "sandbox-key";
pub const API_CLIENT: &str = "sandbox-client";

/// The callback secret of every daemon a [`Rig`] configures.
pub const SECRET: &str = "cb-secret-5d1e9a";

/// The webhook hash key the sandbox signs its callbacks with
/// (`bulk::Config::default()`), and every daemon checks them with.
pub const WEBHOOK_KEY: &str = "sandbox-webhook-key";

/// Hang guard of every wait; never a timing assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// A callback delay no test outlives: the sandbox never posts results.
pub const NEVER: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// Logs: every test binary captures what the daemon logs, so that a test can
// check that an error was logged (and show the logs when a wait times out).

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per test binary).
pub fn init_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(move || Capture(writer.clone()))
            .try_init();
        buf
    });
}

/// Everything logged so far in this test binary.
pub fn logs() -> String {
    init_logs();
    let buf = LOGS.get().expect("initialised");
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// Logged lines containing every one of `needles`.
pub fn log_lines(needles: &[&str]) -> Vec<String> {
    logs()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// Waiting.

/// Polls `probe` until it returns `Some`, failing the test after
/// [`HANG_GUARD`] (the last log lines are shown).
pub async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() > deadline {
            let logs = logs();
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "timed out after {HANG_GUARD:?} waiting for {what}; last log lines:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_for`] a condition.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(what, || cond().then_some(())).await
}

/// Awaits `fut`, failing the test if it hangs.
pub async fn guard<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {HANG_GUARD:?}"))
}

// ---------------------------------------------------------------------------
// Payment files (pattern 1, no header).

/// Adds the Luhn check digit to `payload`.
fn with_check_digit(payload: &str) -> String {
    let digit = paydrop::validate::check::luhn_check_digit(payload.as_bytes());
    format!("{payload}{}", char::from(digit))
}

/// The merchantUniqueCode of row `n` of file `seed`.
pub fn row_code(seed: u64, n: u64) -> String {
    format!("W{seed}-{n:06}")
}

/// The amount of row `n` of file `seed` (exact, two decimals).
pub fn row_amount(seed: u64, n: u64) -> String {
    format!(
        "{}.{:02}",
        1 + (seed * 31 + n * 17) % 950,
        (seed + n * 7) % 100
    )
}

/// The 17 cells of valid pattern-1 row `n` of file `seed`.
pub fn row_cells(seed: u64, n: u64) -> Vec<String> {
    let mut cells = vec![String::new(); 17];
    cells[0] = with_check_digit(&format!(
        "454360{:09}",
        (seed * 100_003 + n) % 1_000_000_000
    ));
    cells[1] = "12/30".into();
    cells[2] = row_amount(seed, n);
    cells[3] = n.to_string();
    cells[4] = "Ayşe Yılmaz".into();
    cells[5] = format!("T{n}");
    cells[9] = row_code(seed, n);
    cells
}

/// Row `n` of file `seed`, with its `\n`.
pub fn row(seed: u64, n: u64) -> String {
    let mut s = row_cells(seed, n).join(",");
    s.push('\n');
    s
}

/// A valid pattern-1 file of `rows` rows; every `seed` gives other content.
pub fn payments(seed: u64, rows: u64) -> Vec<u8> {
    let mut out = String::new();
    for n in 1..=rows {
        out.push_str(&row(seed, n));
    }
    out.into_bytes()
}

/// The exact total of a file made by [`payments`].
pub fn total(seed: u64, rows: u64) -> Decimal {
    (1..=rows).map(|n| dec(&row_amount(seed, n))).sum()
}

pub fn dec(s: &str) -> Decimal {
    s.parse()
        .unwrap_or_else(|e| panic!("'{s}' is not a decimal: {e}"))
}

/// The decimal a JSON value holds (amounts are serialised as strings).
pub fn json_dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => dec(s),
        other => dec(&other.to_string()),
    }
}

/// What the sandbox (decline `rate`, `seed`) answers for each row of file
/// `file_seed`: (line number, code, amount, decline).
pub fn outcomes(
    sandbox_seed: u64,
    rate: f64,
    file_seed: u64,
    rows: u64,
) -> Vec<(u64, String, Decimal, Option<Decline>)> {
    (1..=rows)
        .map(|n| {
            let code = row_code(file_seed, n);
            let d = bulk::outcome(sandbox_seed, rate, &code);
            (n, code, dec(&row_amount(file_seed, n)), d)
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn sha256_of(path: &Path) -> String {
    sha256_hex(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

pub fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

// ---------------------------------------------------------------------------
// Folders.

/// The original name of a claimed file (`<time>-<n>-<original>`).
pub fn original_of(claimed: &str) -> &str {
    claimed.splitn(3, '-').nth(2).unwrap_or(claimed)
}

pub fn is_sidecar(name: &str) -> bool {
    [".report.json", ".results.json", ".retry.csv"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Every entry of `dir` (files and folders), sorted; empty when `dir` does
/// not exist.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|es| {
            es.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The payment files (no sidecars) directly in `dir`, sorted.
pub fn payment_files(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| dir.join(n).is_file() && !is_sidecar(n))
        .collect()
}

/// `x` → `x.{suffix}`.
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

// ---------------------------------------------------------------------------
// The rig.

/// One sandbox, one folder with an inbox, a staging folder and a ledger.
pub struct Rig {
    pub sandbox: Sandbox,
    pub sandbox_config: SandboxConfig,
    pub dir: TempDir,
    pub inbox: PathBuf,
    pub staging: PathBuf,
    pub ledger_path: PathBuf,
    pub registry: Registry,
}

impl Rig {
    /// A rig whose sandbox posts results 100 ms after accepting a batch.
    pub async fn start() -> Rig {
        Rig::start_with(|_| {}).await
    }

    /// A rig whose sandbox config is changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut SandboxConfig)) -> Rig {
        init_logs();
        let registry = Registry::load(None).expect("built-in patterns load");
        let mut config = SandboxConfig::default();
        config.bulk.callback.delay = Duration::from_millis(100);
        config.bulk.callback.backoff = Duration::from_millis(50);
        tweak(&mut config);
        let sandbox = paydrop_sandbox::spawn(config.clone())
            .await
            .expect("sandbox starts");
        let dir = test_dir();
        let inbox = dir.path().join("inbox");
        let staging = dir.path().join("staging");
        fs::create_dir_all(&inbox).expect("inbox");
        fs::create_dir_all(&staging).expect("staging");
        Rig {
            sandbox,
            sandbox_config: config,
            ledger_path: dir.path().join("ledger.db"),
            dir,
            inbox,
            staging,
            registry,
        }
    }

    pub fn pattern(&self) -> &Pattern {
        self.registry.get(1).expect("pattern 1")
    }

    /// The inbox configuration of every test: pattern 1, TRY, gzip.
    pub fn inbox_config(&self) -> InboxConfig {
        InboxConfig {
            path: self.inbox.clone(),
            pattern: 1,
            currency: "TRY".into(),
            installment: 1,
            half_2d: false,
            compress: Some("gzip".into()),
            level: Some(1),
            compress_file_part: None,
        }
    }

    /// A daemon config for this rig: quiet 200 ms, rescan 100 ms, callbacks
    /// on 127.0.0.1:0 with [`SECRET`], 3 fast attempts per submission.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.provider.base_url = Some(self.sandbox.base_url());
        config.ledger.path = self.ledger_path.clone();
        config.watch.inboxes.push(self.inbox_config());
        config.watch.quiet_ms = 200;
        config.watch.rescan_ms = 100;
        config.watch.concurrency = 2;
        config.watch.shutdown_secs = 30;
        config.watch.callback_bind = "127.0.0.1:0".into();
        config.watch.metrics_bind = "127.0.0.1:0".into();
        config.watch.callback_secret = Some(Secret::new(SECRET));
        config.watch.webhook_hash_key = Some(Secret::new(WEBHOOK_KEY));
        config.submit.max_attempts = 3;
        config.submit.backoff_ms = 20;
        config.submit.backoff_max_ms = 300;
        // A part of unknown outcome (or in flight in another task) is looked
        // at again soon; an attempt lasts at most the client's timeout.
        config.watch.unknown_recheck_secs = 1;
        config.provider.timeout_secs = HANG_GUARD.as_secs();
        config.submit.inquiry_grace_secs = 0;
        config
    }

    /// A client for this rig's sandbox.
    pub fn client(&self) -> Client {
        client_for(&self.sandbox.base_url())
    }

    /// Starts `watch::run` with `config` and no hooks.
    pub async fn daemon(&self, config: Config) -> Daemon {
        self.daemon_with(config, WatchHooks::default()).await
    }

    pub async fn daemon_with(&self, config: Config, hooks: WatchHooks) -> Daemon {
        let client = client_for(
            config
                .provider
                .base_url
                .as_deref()
                .unwrap_or(&self.sandbox.base_url()),
        );
        Daemon::start(config, self.registry.clone(), client, hooks).await
    }

    /// Write-then-rename into the inbox: `name.part` first, then `name`.
    pub fn drop_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let part = self.inbox.join(format!("{name}.part"));
        fs::write(&part, bytes).expect("write .part");
        let to = self.inbox.join(name);
        fs::rename(&part, &to).expect("rename into the inbox");
        to
    }

    pub fn sub(&self, state: &str) -> PathBuf {
        self.inbox.join(state)
    }

    /// The claimed names in `state` (done/failed/processing) whose original
    /// name is `original`.
    pub fn filed_as(&self, state: &str, original: &str) -> Vec<PathBuf> {
        payment_files(&self.sub(state))
            .into_iter()
            .filter(|n| original_of(n) == original)
            .map(|n| self.sub(state).join(n))
            .collect()
    }

    /// Waits until `original` is in `state` with its report; returns the
    /// filed path.
    pub async fn wait_filed(&self, state: &str, original: &str) -> PathBuf {
        wait_for(&format!("{original} in {state}/ with its report"), || {
            let found = self.filed_as(state, original);
            match found.as_slice() {
                [one] if sidecar(one, "report.json").exists() => Some(one.clone()),
                _ => None,
            }
        })
        .await
    }

    /// Waits until `original` is filed, in done/ or failed/, with its
    /// report; returns the state and the filed path.
    pub async fn wait_filed_anywhere(&self, original: &str) -> (&'static str, PathBuf) {
        wait_for(&format!("{original} filed with its report"), || {
            [DONE, FAILED].into_iter().find_map(|state| {
                let found = self.filed_as(state, original);
                match found.as_slice() {
                    [one] if sidecar(one, "report.json").exists() => Some((state, one.clone())),
                    _ => None,
                }
            })
        })
        .await
    }

    /// Waits for `x.{suffix}` beside a filed file.
    pub async fn wait_sidecar(&self, filed: &Path, suffix: &str) -> PathBuf {
        let path = sidecar(filed, suffix);
        wait_until(&format!("{}", path.display()), || path.exists()).await;
        path
    }

    /// Waits until the ledger has the batch of a filed file at its new place
    /// (recorded just after the move).
    pub async fn wait_ledger_file(&self, filed: &Path) -> Batch {
        let file = filed.display().to_string();
        wait_for(&format!("the ledger to know {file}"), || {
            self.ledger_batches().into_iter().find(|b| b.file == file)
        })
        .await
    }

    pub fn ledger(&self) -> Ledger {
        Ledger::open(&self.ledger_path).expect("ledger opens")
    }

    /// Every batch of the ledger, oldest first.
    pub fn ledger_batches(&self) -> Vec<Batch> {
        let mut b = self.ledger().recent_batches(100_000).expect("ledger read");
        b.reverse();
        b
    }

    /// The sandbox's batches of this content.
    pub fn sandbox_batches_of(&self, sha256: &str) -> Vec<BatchRecord> {
        self.sandbox
            .batches()
            .into_iter()
            .filter(|b| b.sha256 == sha256)
            .collect()
    }

    /// Asserts that nothing is left in the inbox or in processing/.
    pub fn assert_inbox_and_processing_empty(&self) {
        let waiting: Vec<String> = entries(&self.inbox)
            .into_iter()
            .filter(|n| ![PROCESSING, DONE, FAILED].contains(&n.as_str()))
            .collect();
        assert!(waiting.is_empty(), "left in the inbox: {waiting:?}");
        let processing = entries(&self.sub(PROCESSING));
        assert!(processing.is_empty(), "left in processing/: {processing:?}");
    }

    /// `paydrop` (the binary) with this rig's sandbox credentials in the
    /// environment, run in the rig's folder; PAYDROP_* of the caller removed.
    pub fn cli(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_paydrop"));
        for var in [
            "PAYDROP_BASE_URL",
            "PAYDROP_CONFIG",
            "PAYDROP_PATTERNS",
            "PAYDROP_LEDGER",
            "PAYDROP_LOG",
            "PAYDROP_API_KEY",
            "PAYDROP_API_CLIENT",
            "PAYDROP_WEBHOOK_HASH_KEY",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.current_dir(self.dir.path())
            .env("PAYDROP_API_KEY", API_KEY)
            .env("PAYDROP_API_CLIENT", API_CLIENT)
            .env("PAYDROP_WEBHOOK_HASH_KEY", WEBHOOK_KEY);
        cmd
    }

    /// `paydrop status --config {config}`, run to its end.
    pub fn status(&self, config: &Path) -> std::process::Output {
        self.cli()
            .arg("status")
            .arg("--config")
            .arg(config)
            .output()
            .expect("paydrop status runs")
    }

    /// Writes a `paydrop.toml` for the binary: this rig's sandbox, ledger and
    /// inbox, callbacks on 127.0.0.1:0. The credentials are not in it (they
    /// come from the environment, see [`Rig::cli`]).
    pub fn write_config_file(&self, extra_watch: &str) -> PathBuf {
        let toml = format!(
            r#"[provider]
base_url = "{base}"
timeout_secs = 60
connect_timeout_secs = 5

[ledger]
path = "{ledger}"

[submit]
max_attempts = 3
backoff_ms = 20
backoff_max_ms = 300
inquiry_grace_secs = 0

[watch]
quiet_ms = 200
rescan_ms = 100
concurrency = 2
unknown_recheck_secs = 1
callback_bind = "127.0.0.1:0"
metrics_bind = "127.0.0.1:0"
callback_secret = "{SECRET}"
{extra_watch}

[[watch.inbox]]
path = "{inbox}"
pattern = 1
currency = "TRY"
compress = "gzip"
level = 1
"#,
            base = self.sandbox.base_url(),
            ledger = self.ledger_path.display(),
            inbox = self.inbox.display(),
        );
        let path = self.dir.path().join("paydrop.toml");
        fs::write(&path, toml).expect("write the config file");
        path
    }
}

/// The rig's folder: on tmpfs where there is one. The ledger commits with
/// `synchronous=FULL`, and an fsync on a disk that other processes are
/// writing gigabytes to (a parallel build) can stall for over a minute; these
/// tests are about what the daemon does, not about the disk.
fn test_dir() -> TempDir {
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("paydrop-watch-test-");
        b
    };
    let shm = Path::new("/dev/shm");
    shm.is_dir()
        .then(|| builder().tempdir_in(shm).ok())
        .flatten()
        .unwrap_or_else(|| builder().tempdir().expect("temp dir"))
}

/// A client for `base` with the sandbox's credentials.
pub fn client_for(base: &str) -> Client {
    Client::new(
        base,
        Credentials {
            api_key: Secret::new(API_KEY),
            api_client: Secret::new(API_CLIENT),
        },
        HANG_GUARD,
        Duration::from_secs(5),
    )
    .expect("client builds")
}

/// A plain HTTP client for the daemon's callback server (no proxy).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(HANG_GUARD)
        .build()
        .expect("http client")
}

// ---------------------------------------------------------------------------
// The daemon.

/// `watch::run` in a tokio task.
pub struct Daemon {
    /// The callback server.
    pub addr: SocketAddr,
    /// `/metrics` and `/health`.
    pub metrics_addr: SocketAddr,
    task: JoinHandle<anyhow::Result<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Daemon {
    pub async fn start(
        config: Config,
        registry: Registry,
        client: Client,
        hooks: WatchHooks,
    ) -> Daemon {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(watch::run(
            config,
            registry,
            client,
            hooks,
            Some(ready_tx),
            async {
                let _ = stop_rx.await;
            },
        ));
        let listening = guard("the daemon's start", ready_rx)
            .await
            .expect("the daemon reports its listeners");
        Daemon {
            addr: listening.callback,
            metrics_addr: listening.metrics,
            task,
            stop: Some(stop_tx),
        }
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://{metrics_addr}{path}`.
    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.metrics_addr)
    }

    /// The callback URL with the secret.
    pub fn callback_url(&self) -> String {
        self.url(&format!("/callback/{SECRET}"))
    }

    /// Asks the daemon to stop (as SIGTERM does) and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        guard("the daemon's stop", &mut self.task)
            .await
            .expect("the daemon's task does not panic")
            .expect("the daemon stops cleanly");
    }

    /// kill -9: the task is aborted; no cleanup of the daemon runs.
    pub async fn kill(mut self) {
        self.task.abort();
        let ended = guard("the aborted daemon", &mut self.task).await;
        assert!(
            ended.as_ref().is_err_and(|e| e.is_cancelled()),
            "the daemon was still running when aborted"
        );
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let answer = http()
            .get(self.metrics_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(answer.status(), 200);
        answer.text().await.expect("metrics text")
    }
}

impl Daemon {
    /// The `/metrics` text once counter `name` reads `value` (counters are
    /// updated just after a file is filed: a test that saw the file waits
    /// for them).
    pub async fn metrics_when(&self, name: &str, value: &str) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let text = self.metrics().await;
            if metric(&text, name) == value {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never became {value}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of metric `name` in a Prometheus text exposition: its one
/// sample, or the sum of its labelled series (the daemon's tests use one
/// inbox and one currency).
pub fn metric(text: &str, name: &str) -> String {
    let found: Vec<Decimal> = series(text, name).into_iter().map(|(_, v)| v).collect();
    assert!(!found.is_empty(), "{name} in:\n{text}");
    found.into_iter().sum::<Decimal>().normalize().to_string()
}

/// The samples of metric `name`: the labels as written (`inbox="…",…`, or
/// empty) and the value.
pub fn series(text: &str, name: &str) -> Vec<(String, Decimal)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (labels, value) = r.rsplit_once("} ")?;
                    (labels.to_string(), value)
                }
                None => (String::new(), rest.strip_prefix(' ')?),
            };
            Some((labels, dec(value.trim())))
        })
        .collect()
}

/// The BulkPaymentIds in a report's `batch`.
pub fn report_bulk_ids(report: &Value) -> Vec<i64> {
    report["batch"]["submissions"]
        .as_array()
        .unwrap_or_else(|| panic!("a batch with submissions in {report:#}"))
        .iter()
        .map(|s| s["bulk_payment_id"].as_i64().expect("an accepted part"))
        .collect()
}
