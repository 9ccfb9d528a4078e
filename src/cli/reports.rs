//! `paydrop report …` and `paydrop reconcile`: arguments and terminal output
//! over [`paydrop::report`] and [`paydrop::reconcile`].

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::EXIT_INVALID;
use paydrop::config::{
    Config, ENV_CRAFTGATE_API_KEY, ENV_CRAFTGATE_SECRET_KEY, ENV_REPORT_EMAIL, ENV_REPORT_PASSWORD,
};
use paydrop::currency::Currency;
use paydrop::pattern::Registry;
use paydrop::reconcile::{self, Against, Key, Sent};
use paydrop::report::payzee::Login;
use paydrop::report::{CraftgateClient, Format, PaymentQuery, PayzeeClient};

#[derive(Subcommand)]
pub(super) enum ReportCommand {
    /// Craftgate's breakdown of one payment (signed with the API key and
    /// secret key). Craftgate states no rule relating the amounts: the
    /// payout split and bank commission checks are heuristics, printed as
    /// warnings, never a failure.
    Transactions(TransactionsArgs),
    /// Payzee's payment report (after a merchant login), streamed to CSV or
    /// JSON Lines; its declared totals are checked (exit 1 when they
    /// disagree). Every date is optional.
    Payments(PaymentsArgs),
}

#[derive(Args)]
pub(super) struct TransactionsArgs {
    /// The payment's id.
    payment_id: u64,
    /// Also write the breakdown as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Craftgate base URL [default: [breakdown] base_url].
    #[arg(long)]
    base: Option<String>,
}

#[derive(Args)]
pub(super) struct PaymentsArgs {
    /// First sales day (txnStartDate), yyyy-MM-dd.
    #[arg(long)]
    from: Option<String>,
    /// Last sales day (txnEndDate), yyyy-MM-dd, today at the latest.
    #[arg(long)]
    to: Option<String>,
    /// First payment (settlement) day (paymentStartDate), yyyy-MM-dd.
    #[arg(long)]
    payment_from: Option<String>,
    /// Last payment (settlement) day (paymentEndDate), yyyy-MM-dd.
    #[arg(long)]
    payment_to: Option<String>,
    /// Write the transactions here (replaced only once the whole report is
    /// read) instead of to stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// [default: jsonl for a .jsonl or .ndjson file, else csv]
    #[arg(long, value_parser = super::one_of(&Format::ALL, Format::name))]
    format: Option<Format>,
    /// Payment report base URL [default: [report] base_url].
    #[arg(long)]
    base: Option<String>,
    /// Login base URL [default: [report] auth_base_url, else the report's].
    #[arg(long)]
    auth_base: Option<String>,
    /// Print no summary (the rows, and errors, still go where they go).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub(super) struct ReconcileArgs {
    /// What was sent: a payment file (with --pattern), `ledger` for the
    /// configured ledger, or the path of a ledger database.
    #[arg(long)]
    sent: PathBuf,
    /// What the provider reports: a payment report written by `paydrop
    /// report payments` (CSV or JSON Lines), a payout export, any CSV / TSV
    /// with a header, or a result file.
    #[arg(long)]
    against: PathBuf,
    /// What rows are matched on.
    #[arg(long, value_parser = super::one_of(&Key::ALL, Key::name), default_value = "merchantUniqueCode")]
    key: Key,
    /// FilePattern of the --sent payment file.
    #[arg(long, short)]
    pattern: Option<u16>,
    /// Currency of the sent amounts when the pattern has no currency column.
    #[arg(long, default_value = "TRY")]
    currency: Currency,
    /// Only this ledger batch (repeatable) [default: every batch].
    #[arg(long = "batch")]
    batches: Vec<i64>,
    /// Column of --against holding the key [default: by --key, e.g.
    /// merchantUniqueCode, payzeeTrnOrderId, payoutOrderId].
    #[arg(long)]
    against_key_column: Option<String>,
    /// Column of --against holding the amount [default: amount, trnAmount,
    /// totalPayment, paymentAmount or transactionAmount].
    #[arg(long)]
    against_amount_column: Option<String>,
    /// Folder for the five sets and the summary (written whole or not at all).
    #[arg(short, long, default_value = "reconcile")]
    output: PathBuf,
    /// MiB of records held in memory; larger inputs are sorted on disk.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    memory_mb: u64,
    /// Print no summary: the exit status says whether anything needs
    /// attention, the files in --output say what.
    #[arg(short, long)]
    quiet: bool,
}

/// The Craftgate client from `[breakdown]` (and an optional override).
fn craftgate_client(config: &Config, base: Option<&str>) -> Result<CraftgateClient> {
    let c = &config.breakdown;
    let base = base
        .map(str::to_string)
        .or_else(|| c.base_url.clone())
        .context("no Craftgate address: pass --base or set [breakdown] base_url")?;
    let key = c.api_key.clone().with_context(|| {
        format!("no Craftgate API key: set {ENV_CRAFTGATE_API_KEY} or [breakdown] api_key")
    })?;
    let secret = c.secret_key.clone().with_context(|| {
        format!("no Craftgate secret key: set {ENV_CRAFTGATE_SECRET_KEY} or [breakdown] secret_key")
    })?;
    Ok(CraftgateClient::new(
        &base,
        key,
        secret,
        super::retry_policy(config),
        config.provider.report_timeouts(),
    )?)
}

/// The Payzee client from `[report]` (and optional overrides).
fn payzee_client(config: &Config, args: &PaymentsArgs) -> Result<PayzeeClient> {
    let c = &config.report;
    let base = args
        .base
        .clone()
        .or_else(|| c.base_url.clone())
        .context("no payment report address: pass --base or set [report] base_url")?;
    let auth_base = args
        .auth_base
        .clone()
        .or_else(|| c.auth_base_url.clone())
        .unwrap_or_else(|| base.clone());
    let login = Login {
        email: c.email.clone().with_context(|| {
            format!("no merchant login: set {ENV_REPORT_EMAIL} or [report] email")
        })?,
        password: c.password.clone().with_context(|| {
            format!("no merchant password: set {ENV_REPORT_PASSWORD} or [report] password")
        })?,
        lang: c.lang.clone(),
    };
    Ok(PayzeeClient::new(
        &base,
        &auth_base,
        login,
        super::retry_policy(config),
        config.provider.report_timeouts(),
    )?)
}

/// A temporary file beside `path`, persisted over it once complete (so
/// that a failure never leaves half a file).
fn staging(path: &Path) -> Result<(File, tempfile::TempPath)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(tempfile::Builder::new()
        .prefix(".paydrop-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?
        .into_parts())
}

fn persist(tmp: tempfile::TempPath, path: &Path) -> Result<()> {
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))
}

pub(super) async fn report_cmd(config: &Config, command: &ReportCommand) -> Result<ExitCode> {
    match command {
        ReportCommand::Transactions(args) => {
            let client = craftgate_client(config, args.base.as_deref())?;
            let breakdown = client.transactions(args.payment_id).await?;
            let mut out = io::stdout().lock();
            breakdown.print(&mut out)?;
            if let Some(path) = &args.csv {
                let (file, tmp) = staging(path)?;
                let mut w = BufWriter::new(file);
                breakdown.write_csv(&mut w)?;
                w.into_inner()
                    .map_err(io::IntoInnerError::into_error)?
                    .sync_all()?;
                persist(tmp, path)?;
                writeln!(out, "CSV written to {}", path.display())?;
            }
            // Heuristic warnings never fail: Craftgate states no such rule.
            Ok(ExitCode::SUCCESS)
        }
        ReportCommand::Payments(args) => {
            let query = PaymentQuery::new(
                (args.from.as_deref(), args.to.as_deref()),
                (args.payment_from.as_deref(), args.payment_to.as_deref()),
                paydrop::provider_today(),
            )?;
            let client = payzee_client(config, args)?;
            let by_name = args
                .output
                .as_ref()
                .and_then(|p| p.extension())
                .is_some_and(|e| {
                    e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson")
                });
            let format = args
                .format
                .unwrap_or(if by_name { Format::Jsonl } else { Format::Csv });
            let summary = match &args.output {
                Some(path) => {
                    let (file, tmp) = staging(path)?;
                    let (summary, file) = client.payments(&query, format, file).await?;
                    file.sync_all()?;
                    persist(tmp, path)?;
                    if !args.quiet {
                        let mut out = io::stdout().lock();
                        summary.print(&mut out)?;
                        writeln!(out, "written to {}", path.display())?;
                    }
                    summary
                }
                None => {
                    let (summary, _) = client.payments(&query, format, io::stdout()).await?;
                    if !args.quiet {
                        summary.print(&mut io::stderr())?;
                    }
                    summary
                }
            };
            Ok(if summary.problems().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_INVALID)
            })
        }
    }
}

pub(super) fn reconcile_cmd(
    config: &Config,
    registry: &Registry,
    args: &ReconcileArgs,
) -> Result<ExitCode> {
    let ledger = if args.sent == Path::new("ledger") {
        Some(config.ledger.path.clone())
    } else {
        reconcile::is_ledger(&args.sent).then(|| args.sent.clone())
    };
    let sent = match ledger {
        Some(path) => Sent::Ledger {
            path,
            registry: registry.clone(),
            batches: args.batches.clone(),
        },
        None => {
            if !args.batches.is_empty() {
                bail!("--batch chooses batches of the ledger; --sent is a payment file");
            }
            let id = args.pattern.context(
                "--sent is a payment file: give its FilePattern with --pattern N (or pass \
                 `--sent ledger`)",
            )?;
            Sent::File {
                path: args.sent.clone(),
                pattern: registry.get(id)?.clone(),
                currency: args.currency,
            }
        }
    };
    let against = Against {
        path: args.against.clone(),
        key_column: args.against_key_column.clone(),
        amount_column: args.against_amount_column.clone(),
    };
    let opts = reconcile::Options {
        key: args.key,
        memory: usize::try_from(args.memory_mb << 20).unwrap_or(usize::MAX),
        out_dir: args.output.clone(),
    };
    let summary = reconcile::reconcile(sent, against, &opts)?;
    if !args.quiet {
        write!(std::io::stdout().lock(), "{}", summary.text())?;
    }
    Ok(if summary.reconciled() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}
