//! `paydrop report …` and `paydrop reconcile`: arguments and terminal output
//! over [`paydrop::report`] and [`paydrop::reconcile`].

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::EXIT_INVALID;
use paydrop::config::{Config, ENV_REPORT_TOKEN};
use paydrop::currency::Currency;
use paydrop::pattern::Registry;
use paydrop::reconcile::{self, Against, Key, Sent};
use paydrop::report::{Format, PaymentQuery, ReportClient};
use paydrop::submit::RetryPolicy;

#[derive(Subcommand)]
pub(super) enum ReportCommand {
    /// The breakdown of one payment, its arithmetic checked (exit 1 when an
    /// item does not add up). Rules: merchantPayoutAmount +
    /// subMerchantMemberPayoutAmount + bankCommissionRateAmount = paidPrice;
    /// price + merchantCommissionRateAmount = paidPrice; each rate amount
    /// within one minor unit of its rate.
    Transactions(TransactionsArgs),
    /// The payment report of a date range, streamed to CSV or JSON Lines;
    /// its declared totals are checked (exit 1 when they disagree).
    Payments(PaymentsArgs),
}

#[derive(Args)]
pub(super) struct TransactionsArgs {
    /// The payment's id.
    payment_id: u64,
    /// Also write the breakdown as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Report API base URL [default: [report] base_url, else [provider]
    /// base_url or PAYDROP_BASE_URL].
    #[arg(long)]
    base: Option<String>,
}

#[derive(Args)]
pub(super) struct PaymentsArgs {
    /// First sales day (txnStartDate), yyyy-MM-dd.
    #[arg(long)]
    from: String,
    /// Last sales day (txnEndDate), yyyy-MM-dd, today at the latest.
    #[arg(long)]
    to: String,
    /// First payment (settlement) day, yyyy-MM-dd.
    #[arg(long, requires = "payment_to")]
    payment_from: Option<String>,
    /// Last payment (settlement) day, yyyy-MM-dd.
    #[arg(long, requires = "payment_from")]
    payment_to: Option<String>,
    /// Write the transactions here (replaced only once the whole report is
    /// read) instead of to stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// [default: jsonl for a .jsonl or .ndjson file, else csv]
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Report API base URL [default: [report] base_url, else [provider]
    /// base_url or PAYDROP_BASE_URL].
    #[arg(long)]
    base: Option<String>,
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
    #[arg(long, value_enum, default_value = "merchantUniqueCode")]
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
    /// paidAmount or transactionAmount].
    #[arg(long)]
    against_amount_column: Option<String>,
    /// Folder for the four sets and the summary.
    #[arg(short, long, default_value = "reconcile")]
    output: PathBuf,
    /// MiB of records held in memory; larger inputs are sorted on disk.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    memory_mb: u64,
}

/// The report client from the configuration (and an optional override).
fn report_client(config: &Config, base: Option<&str>) -> Result<ReportClient> {
    let base = base
        .map(str::to_string)
        .or_else(|| config.report.base_url.clone())
        .or_else(|| config.provider.base_url.clone())
        .context(
            "no report address: pass --base, or set [report] base_url, [provider] base_url or \
             PAYDROP_BASE_URL",
        )?;
    let token = config.report.token.clone().with_context(|| {
        format!("no report token: set {ENV_REPORT_TOKEN} or [report] token in paydrop.toml")
    })?;
    let (max_attempts, base_delay, max) = config.backoff();
    let retry = RetryPolicy {
        max_attempts,
        base: base_delay,
        max,
    };
    Ok(ReportClient::new(&base, token, retry)?)
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
            let client = report_client(config, args.base.as_deref())?;
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
            Ok(if breakdown.flagged() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_INVALID)
            })
        }
        ReportCommand::Payments(args) => {
            let payment = args.payment_from.as_deref().zip(args.payment_to.as_deref());
            let query =
                PaymentQuery::new(&args.from, &args.to, payment, paydrop::provider_today())?;
            let client = report_client(config, args.base.as_deref())?;
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
                    let mut out = io::stdout().lock();
                    summary.print(&mut out)?;
                    writeln!(out, "written to {}", path.display())?;
                    summary
                }
                None => {
                    let (summary, _) = client.payments(&query, format, io::stdout()).await?;
                    summary.print(&mut io::stderr())?;
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
    print!("{}", summary.text());
    Ok(if summary.reconciled() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}
