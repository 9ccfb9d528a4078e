//! `paydrop doctor`: what paydrop would use (config, absolute paths, the
//! callback settings, the currency map) and whether the provider answers
//! with the configured base URL and credentials. Each finding is a line
//! rated ok / warn / fail; secrets are only ever said to be set or not.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use paydrop::config::{Config, ENV_API_CLIENT, ENV_API_KEY, ENV_BASE_URL};
use paydrop::pattern::Registry;
use paydrop::upload::{Client, Credentials};

use super::EXIT_INVALID;

#[derive(Args)]
pub struct DoctorArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Print only the warn and fail lines.
    #[arg(long, short, conflicts_with = "json")]
    quiet: bool,
}

/// How a finding is rated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One line of the doctor's report.
struct Finding {
    level: Level,
    /// What was looked at: `config`, `ledger`, `inbox`, `provider`…
    topic: &'static str,
    text: String,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, level: Level, topic: &'static str, text: impl Into<String>) {
        self.0.push(Finding {
            level,
            topic,
            text: text.into(),
        });
    }
}

/// `paydrop doctor [--json | -q]`: exit 0 when nothing failed, [`EXIT_INVALID`]
/// otherwise (warnings do not fail).
pub async fn doctor_cmd(
    config: &Config,
    config_file: Option<&Path>,
    patterns_dir: &Path,
    args: &DoctorArgs,
) -> Result<ExitCode> {
    let mut f = Findings::default();
    config_lines(&mut f, config_file)?;
    path_lines(&mut f, config, patterns_dir);
    callback_lines(&mut f, config);
    currency_lines(&mut f, config);
    provider_lines(&mut f, config).await;
    let failed = f.0.iter().any(|x| x.level == Level::Fail);
    let mut out = io::stdout().lock();
    if args.json {
        let lines: Vec<serde_json::Value> =
            f.0.iter()
                .map(|x| {
                    serde_json::json!({
                        "level": x.level.as_str(),
                        "topic": x.topic,
                        "text": x.text,
                    })
                })
                .collect();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({ "ok": !failed, "checks": lines }),
        )?;
        writeln!(out)?;
    } else {
        for x in f.0.iter().filter(|x| !args.quiet || x.level != Level::Ok) {
            writeln!(out, "{:<4}  {:<9} {}", x.level.as_str(), x.topic, x.text)?;
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}

fn config_lines(f: &mut Findings, config_file: Option<&Path>) -> Result<()> {
    let default = Path::new("paydrop.toml");
    let file = config_file.unwrap_or(default);
    if file.exists() {
        f.add(
            Level::Ok,
            "config",
            format!("{}", std::path::absolute(file)?.display()),
        );
    } else {
        f.add(
            Level::Warn,
            "config",
            "no paydrop.toml here and no --config / PAYDROP_CONFIG: built-in defaults and the \
             environment only",
        );
    }
    Ok(())
}

fn path_lines(f: &mut Findings, config: &Config, patterns_dir: &Path) {
    let ledger = &config.ledger.path;
    let folder = ledger.parent().filter(|p| !p.as_os_str().is_empty());
    if ledger.is_file() {
        f.add(Level::Ok, "ledger", ledger.display().to_string());
    } else if folder.is_none_or(Path::is_dir) {
        f.add(
            Level::Warn,
            "ledger",
            format!(
                "{} does not exist yet: the first command creates an empty one (if you have \
                 submitted before, this is the wrong path: paydrop would forget what was sent)",
                ledger.display()
            ),
        );
    } else {
        f.add(
            Level::Fail,
            "ledger",
            format!(
                "{}: its folder does not exist; create it or set [ledger] path",
                ledger.display()
            ),
        );
    }
    let shown = std::path::absolute(patterns_dir).unwrap_or_else(|_| patterns_dir.into());
    match Registry::load(Some(patterns_dir)) {
        Ok(r) if patterns_dir.is_dir() => f.add(
            Level::Ok,
            "patterns",
            format!(
                "{} ({} patterns with the built-in ones)",
                shown.display(),
                r.iter().count()
            ),
        ),
        Ok(_) => f.add(
            Level::Ok,
            "patterns",
            format!("{} does not exist: built-in patterns only", shown.display()),
        ),
        Err(e) => f.add(Level::Fail, "patterns", format!("{}: {e}", shown.display())),
    }
    if config.watch.inboxes.is_empty() {
        f.add(
            Level::Warn,
            "inbox",
            "no [[watch.inbox]]: `paydrop watch` has nothing to watch",
        );
    }
    for inbox in &config.watch.inboxes {
        let p = &inbox.path;
        let what = format!(
            "{} (pattern {}, {})",
            p.display(),
            inbox.pattern,
            inbox.currency
        );
        if p.is_dir() {
            f.add(Level::Ok, "inbox", what);
        } else if p.exists() {
            f.add(Level::Fail, "inbox", format!("{what} is not a folder"));
        } else {
            f.add(
                Level::Warn,
                "inbox",
                format!(
                    "{what} does not exist: `paydrop watch` creates it, but nobody can have \
                     dropped a file there yet; check the path"
                ),
            );
        }
    }
}

fn set(secret: bool) -> &'static str {
    if secret {
        "set"
    } else {
        "not set"
    }
}

fn callback_lines(f: &mut Findings, config: &Config) {
    let w = &config.watch;
    let bind = w.callback_bind.trim();
    let loopback = match bind.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => bind.starts_with("localhost:"),
    };
    let text = format!(
        "bind {bind}, url {}, callback_secret {}, webhook hash key {}",
        w.callback_url
            .as_deref()
            .map_or_else(|| "(derived from the bind)".into(), mask_url),
        set(w.callback_secret.is_some()),
        set(w.webhook_hash_key.is_some() || !w.hash_keys.is_empty()),
    );
    let level = if !loopback && w.callback_secret.is_none() {
        // `paydrop watch` refuses to start this way.
        f.add(
            Level::Fail,
            "callback",
            format!(
                "{text}: reachable from other machines without callback_secret; set it or bind \
                 to 127.0.0.1"
            ),
        );
        return;
    } else if w.webhook_hash_key.is_none() && w.hash_keys.is_empty() {
        Level::Warn
    } else {
        Level::Ok
    };
    f.add(level, "callback", text);
    if let (Some(url), Some(secret)) = (&w.callback_url, &w.callback_secret) {
        if !url.contains(secret.expose()) {
            f.add(
                Level::Warn,
                "callback",
                "callback_url does not end with /callback/<callback_secret>: the provider's \
                 result callbacks would be refused",
            );
        }
    }
}

/// The callback address with its path secret left out: only scheme, host
/// and port are shown.
fn mask_url(url: &str) -> String {
    match origin(url) {
        Some(origin) => format!("{origin}/…"),
        None => "(not a URL)".into(),
    }
}

/// `scheme://host[:port]` of `url`, parsed by hand (the CLI does not
/// depend on reqwest).
fn origin(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = url.len() - rest.len() + rest.find('/').unwrap_or(rest.len());
    Some(&url[..end])
}

fn currency_lines(f: &mut Findings, config: &Config) {
    let mut map = vec![format!(
        "TRY = {} (documented)",
        paydrop::api::TRY_CURRENCY_ID
    )];
    map.extend(
        config
            .submit
            .currency_ids
            .iter()
            .map(|(code, id)| format!("{code} = {id}")),
    );
    f.add(
        Level::Ok,
        "currency",
        format!("CurrencyId map: {}", map.join(", ")),
    );
}

/// A MerchantUniqueCode no batch can have: paydrop's own codes start
/// `pd-`, and this one is new on every run.
fn probe_code() -> String {
    format!("paydrop-doctor-probe-{}", uuid::Uuid::new_v4().simple())
}

async fn provider_lines(f: &mut Findings, config: &Config) {
    let p = &config.provider;
    let Some(base) = p.base_url.as_deref() else {
        f.add(
            Level::Fail,
            "provider",
            format!("no base URL: set {ENV_BASE_URL} or [provider] base_url"),
        );
        return;
    };
    let (Some(api_key), Some(api_client)) = (p.api_key.clone(), p.api_client.clone()) else {
        f.add(
            Level::Fail,
            "provider",
            format!(
                "{base}: API key {}, API client {}: set {ENV_API_KEY} and {ENV_API_CLIENT} (or \
                 [provider] api_key / api_client)",
                set(p.api_key.is_some()),
                set(p.api_client.is_some())
            ),
        );
        return;
    };
    let credentials = Credentials {
        api_key,
        api_client,
    };
    let client = match Client::new(
        base,
        credentials,
        Duration::from_secs(p.timeout_secs),
        Duration::from_secs(p.connect_timeout_secs),
    ) {
        Ok(c) => c,
        Err(e) => {
            f.add(Level::Fail, "provider", e.to_string());
            return;
        }
    };
    f.add(
        Level::Ok,
        "provider",
        format!("{base}, API key set, API client set"),
    );
    // The bulk inquiry's summary only reads: asked about a code no batch has,
    // a provider that knows the keys answers "not found" (ErrorCode 3/404)
    // (docs/providers/paywall.md §6.5,
    // https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/5.-query-summary).
    let code = probe_code();
    let path = paydrop::inquiry::SUMMARY_PATH;
    let headers = [(paydrop::inquiry::CODE_PARAM, code.as_str())];
    let reply = client
        .get(
            path,
            &headers,
            &[(paydrop::inquiry::CODE_PARAM, code.as_str())],
        )
        .await;
    let (level, text) = match reply {
        Err(e) => (
            Level::Fail,
            format!(
                "cannot reach {base}: {} (check the address, the network and TLS)",
                e.message
            ),
        ),
        Ok(r) => {
            let envelope: Option<i64> = serde_json::from_str::<serde_json::Value>(&r.text)
                .ok()
                .and_then(|v| v.get("ErrorCode").and_then(serde_json::Value::as_i64));
            let status = r.status.as_u16();
            // The envelope's ErrorCode may mirror HTTP codes (the SDK's
            // Unauthorized = 401, Forbidden = 403: docs/providers/paywall.md §8.1).
            if matches!(status, 401 | 403) || matches!(envelope, Some(401 | 403)) {
                (
                    Level::Fail,
                    format!(
                        "credentials refused by {base} (HTTP {status}): check {ENV_API_KEY} and \
                         {ENV_API_CLIENT} and that they belong to this base URL"
                    ),
                )
            } else if status == 404 && envelope.is_none() {
                (
                    Level::Fail,
                    format!(
                        "{base}{path} answered HTTP 404 without the provider's envelope: the \
                         base URL's path is probably wrong"
                    ),
                )
            } else if r.status.is_server_error() {
                (
                    Level::Warn,
                    format!("{base} answered HTTP {status}: the provider has a problem now"),
                )
            } else {
                (
                    Level::Ok,
                    format!(
                        "{base} answered the bulk inquiry (HTTP {status}): credentials accepted"
                    ),
                )
            }
        }
    };
    f.add(level, "probe", text);
}
