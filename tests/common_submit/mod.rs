//! Helpers of the end-to-end tests of the submit pipeline (`tests/submit_*.rs`):
//! a [`World`] is one independent sandbox provider (`paydrop-sandbox`,
//! written from the provider's pages) on an ephemeral 127.0.0.1 port, a temporary folder for payment files and the ledger, and a client
//! for that sandbox; plus generated files, submit options with tiny retry
//! delays, the exact bytes each part must arrive as, and the `paydrop`
//! binary pointed at the same sandbox and ledger.
//!
//! Each test binary uses a different subset of these.
#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use paydrop::compress::{Codec, Compression};
use paydrop::config::Secret;
use paydrop::currency::Currency;
use paydrop::ledger::{Batch, Ledger};
use paydrop::pattern::{Pattern, Registry};
use paydrop::submit::{submit_file, SubmitError, SubmitOptions, Submitted};
use paydrop::transport::RetryPolicy;
use paydrop::upload::{BodyMode, Client, Credentials};
use paydrop_generate::{generate, GenOptions, Generated};
use paydrop_sandbox::bulk::BatchRecord;
use paydrop_sandbox::envelope::ApiKeys;
use paydrop_sandbox::faults::Faults;
use paydrop_sandbox::{Sandbox, SandboxConfig};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The merchant's credentials every sandbox expects. Distinctive, so that a
/// leak into any output is found by a plain substring search.
pub const API_KEY: &str = "pk-Zq81vT-secret-apikey-7fK2";
pub const API_CLIENT: &str = "cl-Wm55hR-secret-client-3pX9";

/// Hang guard of every network step; never a timing assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// Awaits `fut`, failing the test if it hangs.
pub async fn guard<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {HANG_GUARD:?}"))
}

/// The date cards are checked against (the provider's today, as the CLI).
pub fn today() -> NaiveDate {
    paydrop::provider_today()
}

pub fn try_currency() -> Currency {
    Currency::lookup("TRY").expect("TRY is known")
}

/// Built-in pattern 1 (Open Card – Simple).
pub fn pattern1() -> Pattern {
    Registry::load(None)
        .expect("built-in patterns load")
        .get(1)
        .expect("pattern 1 is built in")
        .clone()
}

pub fn credentials(key: &str, client: &str) -> Credentials {
    Credentials {
        api_key: Secret::new(key),
        api_client: Secret::new(client),
    }
}

/// A client for `base`; its timeout is only a hang guard.
pub fn client_for(base: &str, credentials: Credentials) -> Client {
    Client::new(base, credentials, HANG_GUARD, Duration::from_secs(5)).expect("client builds")
}

/// Retries with tiny delays (Retry-After is still honoured as a minimum).
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    }
}

/// Submit options as the CLI builds them: TRY, its CurrencyId, `codec` at
/// its default level, 150,000 rows per part, 6 fast attempts, a provider not
/// known to deduplicate codes (with the bulk inquiry's "not found" believed
/// at once), now, today.
pub fn options(codec: Codec, mode: BodyMode) -> SubmitOptions {
    let currency = try_currency();
    SubmitOptions {
        validate: paydrop::validate::Options {
            currency,
            split_rows: 150_000,
            as_of: today(),
            ..Default::default()
        },
        currency_id: paydrop::api::TRY_CURRENCY_ID,
        installment: 1,
        half_2d: false,
        callback_address: None,
        compression: Compression::new(codec, None).expect("default level is valid"),
        mode,
        force: false,
        retry: fast_retry(6),
        provider_deduplicates: false,
        inquiry_grace: Duration::ZERO,
        attempt_timeout: HANG_GUARD,
        now: Utc::now(),
    }
}

/// [`options`] with the `File` part gzipped (the CLI's default, as in the
/// provider's example).
pub fn default_options() -> SubmitOptions {
    options(Codec::Gzip, BodyMode::FilePart)
}

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub rows: u64,
    pub seed: u64,
    pub error_rate: f64,
    pub header: bool,
}

impl Spec {
    /// A valid file without a header row.
    pub fn valid(rows: u64, seed: u64) -> Spec {
        Spec {
            rows,
            seed,
            error_rate: 0.0,
            header: false,
        }
    }
}

/// Writes a generated file of `pattern` at `path`.
pub fn generate_to(path: &Path, pattern: &Pattern, spec: Spec) -> Generated {
    let opts = GenOptions {
        rows: spec.rows,
        seed: spec.seed,
        error_rate: spec.error_rate,
        header: Some(spec.header),
        as_of: today(),
        ..GenOptions::default()
    };
    let file = File::create(path).expect("create payment file");
    generate(file, pattern, &opts).expect("generate payment file")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The file's lines, each with its terminator.
pub fn lines_of(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

/// The exact bytes each part of `bytes` must arrive as, computed from the
/// lines alone: the payment rows without a header line or byte-order mark,
/// each ended by a single `\n` (the provider's files have no header; CRLF
/// and a missing final newline make no difference), `split_rows` per part.
pub fn expected_parts(bytes: &[u8], header: bool, split_rows: usize) -> Vec<Vec<u8>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let rows: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .skip(usize::from(header))
        .collect();
    rows.chunks(split_rows)
        .map(|chunk| {
            chunk
                .iter()
                .flat_map(|l| l.iter().copied().chain([b'\n']))
                .collect()
        })
        .collect()
}

/// The total of the amount column (pattern 1: the third cell) of the data
/// rows of a part's bytes, computed without the validator.
pub fn amount_sum(part: &[u8], header: bool) -> Decimal {
    lines_of(part)
        .into_iter()
        .skip(usize::from(header))
        .map(|l| {
            let text = std::str::from_utf8(l).expect("generated files are UTF-8");
            let cell = text.split(',').nth(2).expect("an amount cell");
            cell.parse::<Decimal>().expect("a decimal amount")
        })
        .sum()
}

/// The card numbers (first cell of every data line) of a pattern-1 file.
pub fn card_numbers(bytes: &[u8]) -> Vec<String> {
    lines_of(bytes)
        .into_iter()
        .filter_map(|l| std::str::from_utf8(l).ok()?.split(',').next())
        .filter(|c| c.len() >= 12 && c.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// A sandbox config expecting [`API_KEY`] / [`API_CLIENT`], checking cards
/// against [`today`], finishing batches at once.
pub fn sandbox_config() -> SandboxConfig {
    let mut config = SandboxConfig::default();
    config.bulk.keys = ApiKeys {
        api_key: API_KEY.into(),
        api_client: API_CLIENT.into(),
    };
    config.bulk.today = Some(today());
    config.bulk.callback.delay = Duration::ZERO;
    config.bulk.callback.backoff = Duration::from_millis(10);
    config
}

/// The outcome of one run of the `paydrop` binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Everything the user saw.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics, showing the output, unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code; output:\n{}",
            self.all()
        );
        self
    }
}

/// One sandbox, one folder, one ledger, one client.
pub struct World {
    pub sandbox: Sandbox,
    pub dir: TempDir,
    pub ledger_path: PathBuf,
    pub client: Client,
    pub pattern: Pattern,
    /// File bytes read into requests by every library submit of this world.
    pub sent: Arc<AtomicU64>,
}

impl World {
    /// A world whose sandbox has [`sandbox_config`].
    pub async fn start() -> World {
        World::start_with(|_| {}).await
    }

    /// A world whose sandbox has [`sandbox_config`] changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut SandboxConfig)) -> World {
        let mut config = sandbox_config();
        tweak(&mut config);
        let sandbox = paydrop_sandbox::spawn(config)
            .await
            .expect("sandbox starts");
        assert!(sandbox.addr().ip().is_loopback());
        let dir = tempfile::Builder::new()
            .prefix("paydrop-submit-test-")
            .tempdir()
            .expect("temp dir");
        let ledger_path = dir.path().join("ledger.db");
        let client = client_for(&sandbox.base_url(), credentials(API_KEY, API_CLIENT));
        World {
            sandbox,
            dir,
            ledger_path,
            client,
            pattern: pattern1(),
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn faults(&self) -> Arc<Faults> {
        self.sandbox.faults()
    }

    /// Generates a pattern-1 file `name` in the world's folder.
    pub fn generate(&self, name: &str, spec: Spec) -> (PathBuf, Generated) {
        let path = self.path(name);
        let generated = generate_to(&path, &self.pattern, spec);
        (path, generated)
    }

    /// Opens the world's ledger (the tests only read through it).
    pub fn ledger(&self) -> Ledger {
        Ledger::open(&self.ledger_path).expect("ledger opens")
    }

    /// The one batch of this content in the ledger.
    pub fn only_batch_for(&self, sha256: &str) -> Batch {
        let mut batches = self.ledger().batches_for(sha256).expect("ledger reads");
        assert_eq!(batches.len(), 1, "{batches:#?}");
        batches.remove(0)
    }

    /// Sandbox batches of content whose decoded sha256 is `sha256`.
    pub fn sandbox_batches_with(&self, sha256: &str) -> Vec<BatchRecord> {
        self.sandbox
            .batches()
            .into_iter()
            .filter(|b| b.sha256 == sha256)
            .collect()
    }

    /// Submits `path` as pattern 1 with the world's client and ledger.
    pub async fn submit(
        &self,
        path: &Path,
        opts: &SubmitOptions,
    ) -> Result<Submitted, SubmitError> {
        self.submit_as(path, &self.pattern, &self.client, opts)
            .await
    }

    /// Submits `path` as `pattern` with `client`.
    pub async fn submit_as(
        &self,
        path: &Path,
        pattern: &Pattern,
        client: &Client,
        opts: &SubmitOptions,
    ) -> Result<Submitted, SubmitError> {
        let mut ledger = self.ledger();
        let sent = self.sent.clone();
        guard(
            "submit",
            submit_file(path, pattern, &mut ledger, client, opts, sent),
        )
        .await
    }

    /// The `paydrop` binary run in the world's folder (so no stray
    /// `paydrop.toml` or `patterns/` applies), with the world's ledger and
    /// credentials and without any other `PAYDROP_*` setting.
    pub fn cli<I, S>(&self, args: I) -> tokio::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_paydrop"));
        for var in [
            "PAYDROP_BASE_URL",
            "PAYDROP_CONFIG",
            "PAYDROP_PATTERNS",
            "PAYDROP_LOG",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.current_dir(self.dir.path())
            .env("PAYDROP_API_KEY", API_KEY)
            .env("PAYDROP_API_CLIENT", API_CLIENT)
            .env("PAYDROP_LEDGER", &self.ledger_path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// `paydrop submit FILE --pattern 1 --base URL` plus `extra`.
    pub fn cli_submit(&self, file: &Path, extra: &[&str]) -> tokio::process::Command {
        let mut cmd = self.cli(["submit".as_ref(), file.as_os_str()]);
        cmd.args(["--pattern", "1", "--base", &self.sandbox.base_url()])
            .args(extra);
        cmd
    }

    /// Runs `cmd` to completion.
    pub async fn run(&self, mut cmd: tokio::process::Command) -> Run {
        let out = guard("paydrop binary", cmd.output())
            .await
            .expect("paydrop binary runs");
        Run::from_output(out)
    }

    /// Runs `paydrop ARGS` to completion.
    pub async fn run_cli(&self, args: &[&str]) -> Run {
        self.run(self.cli(args)).await
    }
}

/// Asserts that `done` reported exactly `expected` plus, when `opts.now`
/// falls in the provider's 23:00–00:00 window, its notice (options built
/// with `now = Utc::now()` may be in it while the tests run).
pub fn assert_notices(done: &Submitted, opts: &SubmitOptions, expected: &[&str]) {
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.extend(paydrop::submit::late_window_notice(opts.now));
    assert_eq!(done.notices, want);
}

/// The notice of a submit that resumes `batch`.
pub fn resuming_notice(batch: &Batch) -> String {
    format!(
        "resuming batch {} from {}: parts not yet accepted are finished under their \
         original MerchantUniqueCodes",
        batch.id,
        batch.created_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// sha256 (hex) of the file at `path`.
pub fn file_sha(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).expect("read payment file"))
}
