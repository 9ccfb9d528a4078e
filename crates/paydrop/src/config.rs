//! Configuration: `paydrop.toml` plus environment variables.
//!
//! Secrets (the provider's `apikeypublic` / `apiclientpublic`) come from the
//! environment or the config file, never from a command-line argument, where
//! `ps` would show them. [`Secret`] keeps them out of every `Debug` and
//! `Display`, so they cannot reach a log or an error by accident.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::bounds::{Bound, Limits};
use crate::compress::{Codec, Compression};
use crate::currency::Currency;
use crate::submit::SubmitOptions;
use crate::transport::{RetryPolicy, Timeouts};
use crate::upload::BodyMode;

/// Environment variables that override the file.
pub const ENV_API_KEY: &str = "PAYDROP_API_KEY";
pub const ENV_API_CLIENT: &str = "PAYDROP_API_CLIENT";
pub const ENV_BASE_URL: &str = "PAYDROP_BASE_URL";
pub const ENV_LEDGER: &str = "PAYDROP_LEDGER";
/// Bearer token and address of the payouts export API (`[export]`).
pub const ENV_EXPORT_TOKEN: &str = "PAYDROP_EXPORT_TOKEN";
pub const ENV_EXPORT_BASE_URL: &str = "PAYDROP_EXPORT_BASE_URL";
/// Payzee merchant login of the payment report (`[report]`).
pub const ENV_REPORT_EMAIL: &str = "PAYDROP_REPORT_EMAIL";
pub const ENV_REPORT_PASSWORD: &str = "PAYDROP_REPORT_PASSWORD";
/// Craftgate keys of the transaction breakdown (`[breakdown]`).
pub const ENV_CRAFTGATE_API_KEY: &str = "PAYDROP_CRAFTGATE_API_KEY";
pub const ENV_CRAFTGATE_SECRET_KEY: &str = "PAYDROP_CRAFTGATE_SECRET_KEY";
/// The merchant's "System Webhook Hash Key" (`[watch] webhook_hash_key`),
/// which proves that a result callback comes from the provider.
pub const ENV_WEBHOOK_HASH_KEY: &str = "PAYDROP_WEBHOOK_HASH_KEY";

/// A credential. Prints as `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the one place that needs it: the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub provider: ProviderConfig,
    #[serde(default)]
    pub ledger: LedgerConfig,
    #[serde(default)]
    pub submit: SubmitConfig,
    #[serde(default)]
    pub watch: WatchConfig,
    #[serde(default)]
    pub export: ExportConfig,
    #[serde(default)]
    pub report: ReportConfig,
    #[serde(default)]
    pub breakdown: BreakdownConfig,
    /// Folder of custom pattern files.
    pub patterns_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// e.g. `https://api.provider.example` (no trailing path).
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub api_client: Option<Secret>,
    /// Whole-request timeout; a 150,000-row upload on a slow link needs minutes.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// The longest silence while Payzee's payment report or Craftgate's
    /// breakdown streams in (`[report]`, `[breakdown]`); no bound on the
    /// whole, as a huge report streams for long.
    #[serde(default = "default_report_timeout")]
    pub report_timeout_secs: u64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            base_url: None,
            api_key: None,
            api_client: None,
            timeout_secs: default_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            report_timeout_secs: default_report_timeout(),
        }
    }
}

impl ProviderConfig {
    /// The timeouts of the report and breakdown calls.
    pub fn report_timeouts(&self) -> Timeouts {
        Timeouts::streamed(
            Duration::from_secs(self.report_timeout_secs),
            Duration::from_secs(self.connect_timeout_secs),
        )
    }
}

fn default_timeout() -> u64 {
    600
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_report_timeout() -> u64 {
    120
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    #[serde(default = "default_ledger")]
    pub path: PathBuf,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            path: default_ledger(),
        }
    }
}

fn default_ledger() -> PathBuf {
    PathBuf::from("paydrop-ledger.db")
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitConfig {
    /// `gzip`, `br` or `none`.
    #[serde(default = "default_codec")]
    pub compress: String,
    pub level: Option<u32>,
    /// Compress only the `File` part (`payments.csv.gz`, as in the
    /// provider's example: the default); false compresses the whole request
    /// body with `Content-Encoding`, which no page documents.
    #[serde(default = "yes")]
    pub compress_file_part: bool,
    #[serde(default = "default_split")]
    pub split_rows: u64,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// The provider's `CurrencyId` per ISO code. Only TRY = 1 is documented
    /// and built in; any other currency is refused unless it is listed here.
    #[serde(default)]
    pub currency_ids: BTreeMap<String, u32>,
    /// The most one row may carry, for every currency or per currency
    /// (default [`crate::bounds::DEFAULT_MAX_ROW_AMOUNT`]).
    pub max_row_amount: Option<Bound>,
    /// The most one file may total (default
    /// [`crate::bounds::DEFAULT_MAX_FILE_TOTAL`]).
    pub max_file_total: Option<Bound>,
    /// The provider deduplicates a repeated MerchantUniqueCode, so a part
    /// whose outcome is unknown may be sent again without asking. No page
    /// says so: leave it false unless the provider confirmed it in writing.
    #[serde(default)]
    pub provider_deduplicates: bool,
    /// How long after an attempt without an answer the bulk inquiry's "not
    /// found" is believed (the request may still be on its way or in
    /// processing at the provider).
    #[serde(default = "default_inquiry_grace")]
    pub inquiry_grace_secs: u64,
    /// Longest line of a payment file accepted, in bytes (`submit
    /// --max-line-bytes` for one run).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

impl Default for SubmitConfig {
    fn default() -> Self {
        SubmitConfig {
            compress: default_codec(),
            level: None,
            compress_file_part: true,
            split_rows: default_split(),
            max_attempts: default_attempts(),
            backoff_ms: default_backoff_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            currency_ids: BTreeMap::new(),
            max_row_amount: None,
            max_file_total: None,
            provider_deduplicates: false,
            inquiry_grace_secs: default_inquiry_grace(),
            max_line_bytes: default_max_line_bytes(),
        }
    }
}

fn default_codec() -> String {
    "gzip".into()
}
fn yes() -> bool {
    true
}
fn default_inquiry_grace() -> u64 {
    600
}
fn default_max_line_bytes() -> usize {
    crate::read::DEFAULT_MAX_LINE_BYTES
}
fn default_split() -> u64 {
    crate::PROVIDER_MAX_ROWS
}
fn default_attempts() -> u32 {
    8
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    60_000
}

/// The payouts export API (`paydrop export payments`), a service of its own:
/// its address and token are not the provider's.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// e.g. `https://api.partnercenter.example` (no trailing path).
    pub base_url: Option<String>,
    /// Bearer token; prefer `PAYDROP_EXPORT_TOKEN`.
    pub token: Option<Secret>,
    /// How long an export may stay `Queued` / `Processing` before paydrop
    /// gives up waiting (the request keeps running at the provider).
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout_secs: u64,
    /// First wait between two status polls; it grows to `poll_max_ms`.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    #[serde(default = "default_poll_max_ms")]
    pub poll_max_ms: u64,
    /// Which header column holds the id, amount, currency, date, status
    /// and program; unset roles use the published names.
    #[serde(default)]
    pub columns: crate::export::Mapping,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            base_url: None,
            token: None,
            poll_timeout_secs: default_poll_timeout(),
            poll_ms: default_poll_ms(),
            poll_max_ms: default_poll_max_ms(),
            columns: crate::export::Mapping::default(),
        }
    }
}

fn default_poll_timeout() -> u64 {
    3600
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_poll_max_ms() -> u64 {
    60_000
}

/// Payzee's payment report (`paydrop report payments`); retries follow
/// `[submit]`'s `max_attempts` / `backoff_ms` / `backoff_max_ms`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// The report service (the integration mail's `paymentBaseUrl`), e.g.
    /// `https://ppgpayment-test.birlesikodeme.com:20000`.
    pub base_url: Option<String>,
    /// The login service (the integration mail's `authenticationBaseUrl`);
    /// default: `base_url`.
    pub auth_base_url: Option<String>,
    /// Merchant login; prefer `PAYDROP_REPORT_EMAIL`.
    pub email: Option<String>,
    /// Prefer `PAYDROP_REPORT_PASSWORD`.
    pub password: Option<Secret>,
    /// `TR` or `EN` (the login's `lang`).
    #[serde(default = "default_lang")]
    pub lang: String,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            base_url: None,
            auth_base_url: None,
            email: None,
            password: None,
            lang: default_lang(),
        }
    }
}

fn default_lang() -> String {
    "EN".into()
}

/// Craftgate's payment transaction breakdown (`paydrop report
/// transactions`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakdownConfig {
    /// e.g. `https://api.craftgate.io` (sandbox `https://sandbox-api.craftgate.io`).
    pub base_url: Option<String>,
    /// Prefer `PAYDROP_CRAFTGATE_API_KEY`.
    pub api_key: Option<Secret>,
    /// Prefer `PAYDROP_CRAFTGATE_SECRET_KEY`.
    pub secret_key: Option<Secret>,
}

/// The drop-folder daemon (`paydrop watch`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    #[serde(default, rename = "inbox")]
    pub inboxes: Vec<InboxConfig>,
    /// A file is taken once its size and mtime have not changed for this long.
    #[serde(default = "default_quiet_ms")]
    pub quiet_ms: u64,
    /// Full rescan of every inbox, for events that never arrive.
    #[serde(default = "default_rescan_ms")]
    pub rescan_ms: u64,
    /// Files processed at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// On SIGTERM / Ctrl-C, how long work in flight may take to finish.
    #[serde(default = "default_shutdown_secs")]
    pub shutdown_secs: u64,
    /// Address the result-callback server listens on.
    #[serde(default = "default_callback_bind")]
    pub callback_bind: String,
    /// URL the provider is told to post results to; default
    /// `http://{callback_bind}/callback/{secret}`.
    pub callback_url: Option<String>,
    /// Shared secret in the callback path; without it anyone who can reach
    /// the port could post fake results.
    pub callback_secret: Option<Secret>,
    /// How often a file whose part is of unknown outcome is looked at again
    /// (the bulk inquiry asked again, `paydrop resolve` picked up); it stays
    /// in `processing/` meanwhile and never blocks other files.
    #[serde(default = "default_unknown_recheck")]
    pub unknown_recheck_secs: u64,
    /// The merchant's "System Webhook Hash Key" from the provider's panel:
    /// every result callback's `Hash` is checked with it. Prefer
    /// `PAYDROP_WEBHOOK_HASH_KEY`.
    pub webhook_hash_key: Option<Secret>,
    /// The `HashKeyType` values that mean the webhook hash key (`none`: the
    /// key absent or null). The provider's key-type table is not public; 4
    /// is the only value its examples show.
    #[serde(default = "default_webhook_key_types")]
    pub webhook_key_types: Vec<String>,
    /// Keys of other `HashKeyType` values (`"5" = "…"`); a callback naming a
    /// type that is neither here nor in `webhook_key_types` is refused.
    #[serde(default)]
    pub hash_keys: BTreeMap<String, Secret>,
    /// Longest text field of a callback other than `data`.
    #[serde(default = "default_callback_max_field_bytes")]
    pub callback_max_field_bytes: usize,
    /// Longest `data` JSON of a callback.
    #[serde(default = "default_callback_max_data_bytes")]
    pub callback_max_data_bytes: usize,
    /// The result file of a part may hold at most this many bytes per row
    /// sent (compressed as received, and again once decompressed).
    #[serde(default = "default_callback_max_line_bytes")]
    pub callback_max_line_bytes: u64,
    /// A callback must be received whole within this time.
    #[serde(default = "default_callback_timeout_secs")]
    pub callback_timeout_secs: u64,
    /// How long a callback that arrives before the ledger knows its
    /// BulkPaymentId (the provider answered the upload and posted at once)
    /// waits for it, before it is answered 503 to be sent again.
    #[serde(default = "default_callback_wait_ms")]
    pub callback_wait_ms: u64,
    /// An accepted part without complete results after this long is flagged
    /// in `status` and `/metrics`.
    #[serde(default = "default_results_overdue_secs")]
    pub results_overdue_secs: u64,
    /// Address `/metrics` and `/health` listen on, apart from the callback
    /// listener; loopback by default, as they have no authentication.
    #[serde(default = "default_metrics_bind")]
    pub metrics_bind: String,
    /// Make an inbox folder that does not exist at start; by default the
    /// daemon refuses to start, as a mistyped path would wait forever.
    #[serde(default)]
    pub create_inboxes: bool,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            inboxes: Vec::new(),
            quiet_ms: default_quiet_ms(),
            rescan_ms: default_rescan_ms(),
            concurrency: default_concurrency(),
            shutdown_secs: default_shutdown_secs(),
            callback_bind: default_callback_bind(),
            callback_url: None,
            callback_secret: None,
            unknown_recheck_secs: default_unknown_recheck(),
            webhook_hash_key: None,
            webhook_key_types: default_webhook_key_types(),
            hash_keys: BTreeMap::new(),
            callback_max_field_bytes: default_callback_max_field_bytes(),
            callback_max_data_bytes: default_callback_max_data_bytes(),
            callback_max_line_bytes: default_callback_max_line_bytes(),
            callback_timeout_secs: default_callback_timeout_secs(),
            callback_wait_ms: default_callback_wait_ms(),
            results_overdue_secs: default_results_overdue_secs(),
            metrics_bind: default_metrics_bind(),
            create_inboxes: false,
        }
    }
}

fn default_quiet_ms() -> u64 {
    2000
}
fn default_rescan_ms() -> u64 {
    5000
}
fn default_concurrency() -> usize {
    2
}
fn default_shutdown_secs() -> u64 {
    120
}
fn default_unknown_recheck() -> u64 {
    300
}
fn default_callback_bind() -> String {
    "127.0.0.1:8081".into()
}
fn default_metrics_bind() -> String {
    "127.0.0.1:9464".into()
}
fn default_webhook_key_types() -> Vec<String> {
    vec!["4".into(), "none".into()]
}
fn default_callback_max_field_bytes() -> usize {
    4 << 10
}
fn default_callback_max_data_bytes() -> usize {
    64 << 10
}
fn default_callback_max_line_bytes() -> u64 {
    4 << 10
}
fn default_callback_timeout_secs() -> u64 {
    300
}
fn default_callback_wait_ms() -> u64 {
    10_000
}
fn default_results_overdue_secs() -> u64 {
    6 * 3600
}

/// One watched folder and how its files are submitted.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    pub path: PathBuf,
    pub pattern: u16,
    #[serde(default = "default_currency")]
    pub currency: String,
    #[serde(default = "default_installment")]
    pub installment: u32,
    #[serde(default)]
    pub half_2d: bool,
    /// Overrides `[submit] compress` / `level` / `compress_file_part`.
    pub compress: Option<String>,
    pub level: Option<u32>,
    pub compress_file_part: Option<bool>,
}

fn default_currency() -> String {
    "TRY".into()
}
fn default_installment() -> u32 {
    1
}

/// Why the configuration cannot be used; nothing was done.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A key or value the file cannot have, with its line.
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: String,
        line: usize,
        message: String,
    },
    #[error(
        "config file {0} does not exist: pass an existing file, or none to use ./paydrop.toml"
    )]
    Missing(String),
    #[error(
        "the provider's CurrencyId for {0} is not known: its pages document only TRY (1). Ask \
         the provider for the id and add `{0} = <id>` under [submit.currency_ids] in \
         paydrop.toml; nothing was sent"
    )]
    UnknownCurrencyId(Currency),
    /// A `[submit]` value out of its range (compression codec or level).
    #[error("[submit] {0}")]
    Submit(String),
    /// The `[watch]` keys a result callback is checked with are missing or
    /// contradict each other; the message says what to set.
    #[error("{0}")]
    CallbackKeys(String),
}

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

impl Config {
    /// Reads `path` (an explicit path must exist; the default `paydrop.toml`
    /// may be absent), then applies the environment. Relative paths in the
    /// file are taken from the file's folder, those of the environment from
    /// the current one; both come out absolute, so that a command run from
    /// elsewhere opens the same ledger and inboxes (a new empty ledger would
    /// forget what was sent).
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let (path, must_exist) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("paydrop.toml"), false),
        };
        let mut config = if path.exists() {
            let src = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            toml::from_str(&src).map_err(|e| {
                let line = e
                    .span()
                    .map(|s| src[..s.start].matches('\n').count() + 1)
                    .unwrap_or(0);
                ConfigError::Syntax {
                    path: path.display().to_string(),
                    line,
                    message: e.message().to_string(),
                }
            })?
        } else if must_exist {
            return Err(ConfigError::Missing(path.display().to_string()));
        } else {
            Config::default()
        };
        let here = std::env::current_dir().map_err(|source| ConfigError::Read {
            path: "the current folder".into(),
            source,
        })?;
        let file_dir = match path.exists() {
            true => std::path::absolute(&path)
                .map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?
                .parent()
                .map_or_else(|| here.clone(), Path::to_path_buf),
            false => here.clone(),
        };
        config.resolve_paths(&file_dir);
        config.apply_env(|k| std::env::var(k).ok());
        config.resolve_paths(&here);
        Ok(config)
    }

    /// Makes every relative path of the config absolute against `dir`
    /// (absolute ones are left alone).
    fn resolve_paths(&mut self, dir: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        abs(&mut self.ledger.path);
        self.patterns_dir.iter_mut().for_each(abs);
        self.watch.inboxes.iter_mut().for_each(|i| abs(&mut i.path));
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(v) = var(ENV_API_KEY) {
            self.provider.api_key = Some(Secret(v));
        }
        if let Some(v) = var(ENV_API_CLIENT) {
            self.provider.api_client = Some(Secret(v));
        }
        if let Some(v) = var(ENV_BASE_URL) {
            self.provider.base_url = Some(v);
        }
        if let Some(v) = var(ENV_LEDGER) {
            self.ledger.path = PathBuf::from(v);
        }
        if let Some(v) = var(ENV_EXPORT_TOKEN) {
            self.export.token = Some(Secret(v));
        }
        if let Some(v) = var(ENV_EXPORT_BASE_URL) {
            self.export.base_url = Some(v);
        }
        if let Some(v) = var(ENV_REPORT_EMAIL) {
            self.report.email = Some(v);
        }
        if let Some(v) = var(ENV_REPORT_PASSWORD) {
            self.report.password = Some(Secret(v));
        }
        if let Some(v) = var(ENV_CRAFTGATE_API_KEY) {
            self.breakdown.api_key = Some(Secret(v));
        }
        if let Some(v) = var(ENV_CRAFTGATE_SECRET_KEY) {
            self.breakdown.secret_key = Some(Secret(v));
        }
        if let Some(v) = var(ENV_WEBHOOK_HASH_KEY) {
            self.watch.webhook_hash_key = Some(Secret(v));
        }
    }

    /// The provider's `CurrencyId` for `currency`: TRY's is documented, any
    /// other must be in `[submit.currency_ids]`.
    pub fn currency_id(&self, currency: Currency) -> Result<u32> {
        if let Some(id) = self.submit.currency_ids.get(currency.code) {
            return Ok(*id);
        }
        if currency.code == "TRY" {
            return Ok(crate::api::TRY_CURRENCY_ID);
        }
        Err(ConfigError::UnknownCurrencyId(currency))
    }

    /// The money bounds of the `[submit]` section, which validation applies.
    pub fn limits(&self) -> Limits {
        Limits {
            max_row_amount: self.submit.max_row_amount.clone(),
            max_file_total: self.submit.max_file_total.clone(),
        }
    }

    /// How `submit` and `watch` send a file in `currency`, as the `[submit]`
    /// and `[provider]` sections say; the command line or the inbox then
    /// sets what it chooses itself (installments, pre-authorisation, the
    /// callback address, …).
    pub fn submit_options(&self, currency: Currency) -> Result<SubmitOptions> {
        let (max_attempts, base, max) = self.backoff();
        let codec: Codec = self.submit.compress.parse().map_err(ConfigError::Submit)?;
        Ok(SubmitOptions {
            validate: crate::validate::Options {
                currency,
                split_rows: self.submit.split_rows,
                max_line_bytes: self.submit.max_line_bytes,
                limits: self.limits(),
                ..Default::default()
            },
            currency_id: self.currency_id(currency)?,
            installment: 1,
            half_2d: false,
            callback_address: None,
            compression: Compression::new(codec, self.submit.level).map_err(ConfigError::Submit)?,
            mode: if self.submit.compress_file_part {
                BodyMode::FilePart
            } else {
                BodyMode::WholeBody
            },
            force: false,
            retry: RetryPolicy {
                max_attempts,
                base,
                max,
            },
            provider_deduplicates: self.submit.provider_deduplicates,
            inquiry_grace: Duration::from_secs(self.submit.inquiry_grace_secs),
            attempt_timeout: Duration::from_secs(self.provider.timeout_secs),
            now: chrono::Utc::now(),
        })
    }

    /// The retry policy of the `[submit]` section.
    pub fn backoff(&self) -> (u32, Duration, Duration) {
        (
            self.submit.max_attempts.max(1),
            Duration::from_millis(self.submit.backoff_ms),
            Duration::from_millis(self.submit.backoff_max_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_the_config_files_not_the_current_folders() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("etc");
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join("paydrop.toml");
        std::fs::write(
            &file,
            "patterns_dir = \"patterns\"\n[ledger]\npath = \"../var/ledger.db\"\n\
             [[watch.inbox]]\npath = \"in\"\npattern = 1\n[[watch.inbox]]\n\
             path = \"/srv/abs\"\npattern = 1\n",
        )
        .unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert_eq!(c.ledger.path, sub.join("../var/ledger.db"));
        assert_eq!(c.patterns_dir.unwrap(), sub.join("patterns"));
        assert_eq!(c.watch.inboxes[0].path, sub.join("in"));
        assert_eq!(c.watch.inboxes[1].path, Path::new("/srv/abs"));
        // Without a ledger key, the default ledger sits beside the file too.
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            Config::load(Some(&file)).unwrap().ledger.path,
            sub.join("paydrop-ledger.db")
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("topsecret");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let mut c = Config::default();
        c.apply_env(|k| (k == ENV_API_KEY).then(|| "topsecret".to_string()));
        assert!(!format!("{c:?}").contains("topsecret"));
        assert_eq!(c.provider.api_key.unwrap().expose(), "topsecret");
    }

    #[test]
    fn only_try_has_a_currency_id_unless_the_config_maps_one() {
        let mut c = Config::default();
        let usd = Currency::lookup("USD").unwrap();
        assert_eq!(c.currency_id(Currency::lookup("TRY").unwrap()).unwrap(), 1);
        let e = c.currency_id(usd).unwrap_err().to_string();
        assert!(
            e.contains("[submit.currency_ids]") && e.contains("USD = <id>"),
            "{e}"
        );
        c.submit.currency_ids.insert("USD".into(), 2);
        assert_eq!(c.currency_id(usd).unwrap(), 2);
    }

    #[test]
    fn file_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("paydrop.toml");
        std::fs::write(&p, "[submit]\ncompress = \"gzip\"\nretries = 3\n").unwrap();
        let e = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains(":3:") && e.contains("retries"), "{e}");
    }
}
