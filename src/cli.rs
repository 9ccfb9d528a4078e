//! The command line: argument parsing and terminal output only. Every command
//! is a thin layer over the library modules.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paydrop::callback;
use paydrop::compress::{Codec, Compression};
use paydrop::config::{
    Config, ENV_API_CLIENT, ENV_API_KEY, ENV_CRAFTGATE_API_KEY, ENV_CRAFTGATE_SECRET_KEY,
    ENV_EXPORT_TOKEN, ENV_REPORT_EMAIL, ENV_REPORT_PASSWORD, ENV_WEBHOOK_HASH_KEY,
};
use paydrop::currency::Currency;
use paydrop::export;
use paydrop::ledger::{Batch, Ledger, Resolution, State};
use paydrop::pattern::{Pattern, Registry};
use paydrop::payout;
use paydrop::submit::{submit_file, SubmitError, SubmitOptions};
use paydrop::transport::RetryPolicy;
use paydrop::upload::{BodyMode, Client, Credentials};
use paydrop::validate::{validate_file, Fatal, Hooks, Options, Report, RowError};
use paydrop::watch::{self, WatchHooks};
use paydrop::{mask, names};
use paydrop_generate::{generate, GenOptions};

mod doctor;
mod exit_codes;
#[cfg(test)]
mod help_tests;
mod patterns;
mod reports;
mod results;

/// Exit code for a file whose rows have errors.
pub const EXIT_INVALID: u8 = 1;
/// Exit code for input that cannot be used at all.
pub const EXIT_UNUSABLE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "paydrop",
    version,
    about = "Check, total and submit bulk card-payment files",
    after_long_help = exit_codes::TABLE
)]
struct Cli {
    /// Folder with custom pattern files (*.toml) [default: patterns_dir of
    /// the config, else ./patterns].
    #[arg(long, global = true, env = "PAYDROP_PATTERNS")]
    patterns_dir: Option<PathBuf>,
    /// Configuration file [default: ./paydrop.toml when present].
    #[arg(long, global = true, env = "PAYDROP_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every row of a payment file and total its amounts.
    Validate(ValidateArgs),
    /// List, print and check file patterns.
    Patterns {
        #[command(subcommand)]
        command: patterns::PatternsCommand,
    },
    /// Write a realistic payment file, optionally with deliberate errors.
    Gen(GenArgs),
    /// Validate a file, then send it to the provider's startdirect endpoint.
    Submit(SubmitArgs),
    /// Submissions awaiting an answer or of unknown outcome, and recent batches.
    Status(JsonArgs),
    /// Record what you found out about a part of unknown outcome: the
    /// provider has it (--received BULK_PAYMENT_ID) or not (--not-received:
    /// the next submit or daemon pass sends it under its original code).
    Resolve(ResolveArgs),
    /// Every row's outcome in a batch, as the provider's result callbacks
    /// said (CSV or JSON, card data never included).
    Results(results::ResultsArgs),
    /// Check the configuration, paths, callback settings and currency map,
    /// and probe the provider's address and credentials.
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    Man,
    /// The submission history in the ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Watch the configured inboxes and submit every file dropped there.
    Watch,
    /// Run the embedded sandbox provider on 127.0.0.1.
    Sandbox(SandboxArgs),
    /// Marketplace payouts: order payment of the settlements in the pool.
    Payout {
        #[command(subcommand)]
        command: PayoutCommand,
    },
    /// Payout exports: queue one, wait for it, and stream its rows or totals.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Read the provider's reports: a payment's breakdown, the payment report.
    Report {
        #[command(subcommand)]
        command: reports::ReportCommand,
    },
    /// Match what was sent with what the provider reports, and write the
    /// matched, missing, unknown and amount-mismatch sets (exit 1 when
    /// anything is unmatched).
    Reconcile(reports::ReconcileArgs),
    /// Run the whole job on generated files with built-in defaults.
    Demo {
        /// Rows in the generated files.
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
    },
}

#[derive(Subcommand)]
enum PayoutCommand {
    /// Order the payout of a date range (checked against the provider's
    /// rules and the orders in the ledger first).
    Trigger(TriggerArgs),
    /// Recent payout orders in the ledger, newest first.
    List {
        /// How many orders to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Ask the provider how an order went (the trigger's inquiry, by
    /// JobId). Without JOB: every recent order with a JobId.
    Status(StatusArgs),
}

#[derive(Args)]
struct StatusArgs {
    /// The JobId to inquire.
    job: Option<String>,
    /// The ledger's order this JobId belongs to (found in the provider's
    /// panel after a lost answer): it is recorded with the outcome.
    #[arg(long)]
    order: Option<i64>,
    /// Record --order as not ordered: the provider's panel shows no such
    /// order (only for an order without a definite answer).
    #[arg(long, requires = "order", conflicts_with = "job")]
    not_ordered: bool,
    /// Orders looked at without JOB.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Provider base URL [default: [provider] base_url or PAYDROP_BASE_URL].
    #[arg(long)]
    base: Option<String>,
}

#[derive(Args)]
struct TriggerArgs {
    /// ISO 4217 currency of the settlements (mapped to the provider's CurrencyId).
    #[arg(long)]
    currency: Currency,
    /// First day (DateFrom), yyyy-mm-dd.
    #[arg(long)]
    from: chrono::NaiveDate,
    /// Last day (DateTo), yyyy-mm-dd: yesterday at the latest (Istanbul) unless --test-mode.
    #[arg(long)]
    to: chrono::NaiveDate,
    /// TestMode: DateTo may be today or later.
    #[arg(long)]
    test_mode: bool,
    /// SkipExistsControl: order even dates already ordered. The merchant
    /// carries the risk of paying twice.
    #[arg(long)]
    skip_exists_control: bool,
    /// Provider base URL [default: [provider] base_url or PAYDROP_BASE_URL].
    #[arg(long)]
    base: Option<String>,
    /// The provider's today (default: today in Istanbul).
    #[arg(long)]
    as_of: Option<chrono::NaiveDate>,
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Export payouts: rows to stdout or -o FILE, or totals with --summary.
    Payments(ExportArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// A raw OData $filter, e.g. "paymentDate ge 2023-03-01 and (programName eq 'CSP Direct Bill Partner')"
    /// (fields: programName, enrollmentParticipantId, payoutOrderType, paymentId, paymentDate,
    /// payoutStatusUpdateTS, paymentAmount).
    #[arg(long, conflicts_with_all = ["from", "to", "program", "order_type", "payment_id", "participant"])]
    filter: Option<String>,
    /// paymentDate on or after this day.
    #[arg(long)]
    from: Option<chrono::NaiveDate>,
    /// paymentDate on or before this day.
    #[arg(long)]
    to: Option<chrono::NaiveDate>,
    /// programName, e.g. "CSP Indirect Provider".
    #[arg(long)]
    program: Option<String>,
    /// payoutOrderType, e.g. REBATE.
    #[arg(long)]
    order_type: Option<String>,
    /// paymentId.
    #[arg(long)]
    payment_id: Option<String>,
    /// enrollmentParticipantId.
    #[arg(long)]
    participant: Option<String>,
    /// File format requested from the provider.
    #[arg(
        long,
        value_parser = one_of(&paydrop::export::Format::ALL, paydrop::export::Format::name),
        default_value = "csv"
    )]
    format: paydrop::export::Format,
    /// Write the rows here (replaced only once the whole export is read).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Format of the rows written.
    #[arg(long, value_enum, default_value_t = OutFormat::Csv)]
    out_format: OutFormat,
    /// Print count and exact sum per status, program (when the file has
    /// programName), currency and month (without -o, no rows are written).
    #[arg(long)]
    summary: bool,
    /// Wait for (and download) an export queued before instead of a new one.
    #[arg(long, conflicts_with_all = ["filter", "from", "to", "program", "order_type", "payment_id", "participant"])]
    request_id: Option<String>,
    /// Export API base URL [default: [export] base_url or PAYDROP_EXPORT_BASE_URL].
    #[arg(long)]
    base: Option<String>,
    /// Seconds to wait for the export [default: [export] poll_timeout_secs,
    /// one hour]; processing may take up to 24 h: resume with --request-id.
    #[arg(long)]
    poll_timeout: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutFormat {
    /// Comma-separated, with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Recent batches, newest first.
    List {
        /// How many batches to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One batch with its parts, every attempt and its results' counts.
    Show {
        /// The batch (as `status` and `ledger list` show it).
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `--json` alone.
#[derive(Args)]
struct JsonArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SubmitArgs {
    /// The payment file.
    file: PathBuf,
    /// The provider's FilePattern number.
    #[arg(long, short)]
    pattern: u16,
    /// ISO 4217 currency of the amounts (mapped to the provider's CurrencyId).
    #[arg(long, default_value = "TRY")]
    currency: Currency,
    /// Number of instalments of every payment.
    #[arg(long, default_value_t = 1)]
    installment: u32,
    /// Take the payments as pre-authorisations.
    #[arg(long = "half2d")]
    half_2d: bool,
    /// Where the provider posts the result file.
    #[arg(long)]
    callback: Option<String>,
    /// gzip, br or none [default: [submit] compress, else gzip].
    #[arg(long)]
    compress: Option<Codec>,
    /// Compression level [default: the measured default of the codec].
    #[arg(long)]
    level: Option<u32>,
    /// Compress only the File part (file.csv.gz), as the provider's example
    /// does [default, unless `[submit] compress_file_part = false`].
    #[arg(long, conflicts_with = "compress_whole_body")]
    compress_file_part: bool,
    /// Compress the whole request body with Content-Encoding instead (no
    /// provider page documents it).
    #[arg(long)]
    compress_whole_body: bool,
    /// Provider base URL [default: [provider] base_url or PAYDROP_BASE_URL].
    #[arg(long)]
    base: Option<String>,
    /// Rows per submission [default: [submit] split_rows, else 150000].
    #[arg(long)]
    split_rows: Option<u64>,
    /// Longest line accepted, in bytes [default: [submit] max_line_bytes,
    /// else 1048576].
    #[arg(long)]
    max_line_bytes: Option<usize>,
    /// Send content (or rows) the ledger shows as sent again, with new
    /// codes: they will be paid twice.
    #[arg(long)]
    force: bool,
    /// Date against which card expiry is checked (default: today in Istanbul).
    #[arg(long)]
    as_of: Option<chrono::NaiveDate>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    /// Print nothing on success (errors still go to stderr).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct ResolveArgs {
    /// The batch (as `status` and `ledger list` show it).
    batch: i64,
    /// The part of the batch (1 for a file that was not split).
    part: u32,
    /// The provider has it, under this BulkPaymentId.
    #[arg(
        long,
        value_name = "BULK_PAYMENT_ID",
        conflicts_with = "not_received",
        required_unless_present = "not_received"
    )]
    received: Option<i64>,
    /// The provider does not have it: send it again under its original code.
    #[arg(long)]
    not_received: bool,
}

#[derive(Args)]
struct SandboxArgs {
    /// Port of the bulk payment (startdirect) sandbox.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port of the receiving side (marketplace trigger, payouts export,
    /// breakdown, payment report) [default: --port + 1].
    #[arg(long)]
    receiving_port: Option<u16>,
    /// Share of payments (0–1) the result callback declines.
    #[arg(long, default_value_t = 0.1)]
    decline_rate: f64,
    /// Rows in every payout export file (generated as it is downloaded).
    #[arg(long, default_value_t = 1000)]
    export_rows: u64,
    /// Serve payout export files gzipped.
    #[arg(long, conflicts_with = "export_zip")]
    export_gzip: bool,
    /// Serve payout export files as a zip of this many CSV files.
    #[arg(long)]
    export_zip: Option<u32>,
    /// Transactions in the payment report (generated as it is sent).
    #[arg(long, default_value_t = 1000)]
    report_rows: u64,
    /// Write the payment report's decimals as JSON numbers (`1234.56`)
    /// instead of the published sample's `1.234,56`.
    #[arg(long)]
    report_plain_numbers: bool,
}

#[derive(Args)]
struct ValidateArgs {
    /// The payment file.
    file: PathBuf,
    /// The provider's FilePattern number.
    #[arg(long, short)]
    pattern: u16,
    /// Write the full report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write every error (no limit) as TSV here: line, row, column, value, kind, reason.
    #[arg(long)]
    errors_tsv: Option<PathBuf>,
    /// Errors kept in the report; the rest are counted.
    #[arg(long, default_value_t = 1000)]
    max_errors: usize,
    /// Currency of the amounts when the pattern has no currency column.
    #[arg(long, default_value = "TRY")]
    currency: Currency,
    /// Date against which card expiry is checked (default: today in Istanbul).
    #[arg(long)]
    as_of: Option<chrono::NaiveDate>,
    /// Rows per submission; bigger files are split.
    #[arg(long, default_value_t = paydrop::PROVIDER_MAX_ROWS)]
    split_rows: u64,
    /// Longest line accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_line_bytes: usize,
    /// Print only the result line.
    #[arg(long, short, conflicts_with = "json")]
    quiet: bool,
    /// Print the full report as JSON (as --report writes it).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct GenArgs {
    /// The provider's FilePattern number.
    #[arg(long, short)]
    pattern: u16,
    /// Payment rows to write.
    #[arg(long, default_value_t = 1000)]
    rows: u64,
    /// Share of rows (0–1) with one deliberate error each.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Seed of the random rows: the same seed writes the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write a header row.
    #[arg(long)]
    header: bool,
    /// Write the list of deliberate errors (line, kind) as JSON here.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Card expiry dates are generated after this date (default: today).
    #[arg(long)]
    as_of: Option<chrono::NaiveDate>,
    /// Where to write the file (created 0600: it holds card numbers).
    #[arg(short, long)]
    output: PathBuf,
}

/// Runs the command line; the binary's `main` is only this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own report; its daemon's progress lines would bury
    // it (PAYDROP_LOG=info brings them back).
    let level = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log_json, level);
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`paydrop ledger list | head`): nothing left
        // to say to it, and nothing went wrong.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", masked(format!("{e:#}")));
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(|c| {
                matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::BrokenPipe)
            })
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                == Some(io::ErrorKind::BrokenPipe)
    })
}

/// A clap parser for one of a library enum's values, by name: the library
/// does not depend on clap.
fn one_of<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    name: fn(T) -> &'static str,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(all.iter().map(|t| name(*t))).map(move |s| {
        *all.iter()
            .find(|t| name(**t) == s)
            .expect("the parser accepts only listed names")
    })
}

/// What the command line prints of an error or a message it did not write
/// itself (the provider's, a library's): card numbers masked.
fn masked(text: impl std::fmt::Display) -> String {
    mask::card_numbers(&text.to_string())
}

fn init_logging(json: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYDROP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Every log line passes through the masking, whatever its fields hold.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || mask::MaskingWriter::new(io::stderr(), json))
        // Colour only for a person at a terminal: never into files, pipes or
        // journald, and never with NO_COLOR (https://no-color.org).
        .with_ansi(
            io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        );
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    let patterns_dir = cli
        .patterns_dir
        .clone()
        .or_else(|| config.patterns_dir.clone())
        .unwrap_or_else(|| PathBuf::from("patterns"));
    let registry = || Registry::load(Some(&patterns_dir)).map_err(anyhow::Error::from);
    match &cli.command {
        Command::Validate(args) => validate_cmd(&registry()?, &config, args),
        Command::Patterns { command } => patterns::patterns_cmd(&patterns_dir, command),
        Command::Gen(args) => gen_cmd(&registry()?, args),
        Command::Submit(args) => runtime()?.block_on(submit_cmd(&registry()?, &config, args)),
        Command::Status(args) => status_cmd(&config, args.json),
        Command::Results(args) => results::results_cmd(&config.ledger.path, args),
        Command::Doctor(args) => runtime()?.block_on(doctor::doctor_cmd(
            &config,
            cli.config.as_deref(),
            &patterns_dir,
            args,
        )),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Generated into memory: clap_complete panics on a failed write
            // (a closed pipe), and the script is a few kilobytes.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "paydrop", &mut script);
            io::stdout().lock().write_all(&script)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resolve(args) => resolve_cmd(&config, args),
        Command::Watch => runtime()?.block_on(watch_cmd(registry()?, config.clone())),
        Command::Ledger { command } => ledger_cmd(&config, command),
        Command::Sandbox(args) => runtime()?.block_on(sandbox_cmd(args)),
        Command::Payout { command } => runtime()?.block_on(payout_cmd(&config, command)),
        Command::Export {
            command: ExportCommand::Payments(args),
        } => runtime()?.block_on(export_cmd(&config, args)),
        Command::Report { command } => runtime()?.block_on(reports::report_cmd(&config, command)),
        Command::Reconcile(args) => reports::reconcile_cmd(&config, &registry()?, args),
        Command::Demo { rows } => runtime()?.block_on(demo_cmd(registry()?, *rows)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Exit codes of `submit` beyond 0–2.
pub const EXIT_ALREADY_SUBMITTED: u8 = 3;
pub const EXIT_REJECTED: u8 = 4;
pub const EXIT_UNKNOWN: u8 = 5;
/// Nothing reached the provider, or it said it did not process the file.
pub const EXIT_NOT_SENT: u8 = 6;

async fn submit_cmd(registry: &Registry, config: &Config, args: &SubmitArgs) -> Result<ExitCode> {
    let pattern = registry.get(args.pattern)?;
    let client = client_from(config, args.base.as_deref())?;
    let codec = match args.compress {
        Some(c) => c,
        None => config.submit.compress.parse().map_err(anyhow::Error::msg)?,
    };
    let compression =
        Compression::new(codec, args.level.or(config.submit.level)).map_err(anyhow::Error::msg)?;
    let configured = config.submit_options(args.currency)?;
    let opts = SubmitOptions {
        validate: paydrop::validate::Options {
            split_rows: args.split_rows.unwrap_or(config.submit.split_rows),
            max_line_bytes: args.max_line_bytes.unwrap_or(config.submit.max_line_bytes),
            as_of: args.as_of.unwrap_or_else(paydrop::provider_today),
            ..configured.validate.clone()
        },
        installment: args.installment,
        half_2d: args.half_2d,
        callback_address: args.callback.clone(),
        compression,
        mode: if args.compress_whole_body
            || !(args.compress_file_part || config.submit.compress_file_part)
        {
            BodyMode::WholeBody
        } else {
            BodyMode::FilePart
        },
        force: args.force,
        ..configured
    };
    let mut ledger = Ledger::open(&config.ledger.path)?;
    let sent = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(&args.file);
    let ticker = bar.clone().map(|bar| {
        let sent = sent.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(sent.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });
    let outcome = submit_file(&args.file, pattern, &mut ledger, &client, &opts, sent).await;
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut out = io::stdout().lock();
    match outcome {
        Ok(mut done) => {
            if args.callback.is_none() {
                done.notices.push(NO_CALLBACK_NOTICE.to_string());
            }
            if args.json {
                let notices: Vec<String> = done.notices.iter().map(masked).collect();
                serde_json::to_writer_pretty(
                    &mut out,
                    &serde_json::json!({
                        "accepted": true,
                        "batch": masked_batch(done.batch),
                        "notices": notices,
                    }),
                )?;
                writeln!(out)?;
            } else if !args.quiet {
                print_batch(&mut out, &done.batch)?;
                for n in &done.notices {
                    writeln!(out, "  notice   {n}")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(SubmitError::Invalid(report)) => {
            if args.json {
                serde_json::to_writer_pretty(
                    &mut out,
                    &serde_json::json!({ "accepted": false, "invalid": report }),
                )?;
                writeln!(out)?;
            } else {
                print_report(&mut out, &report, pattern)?;
                writeln!(out, "nothing was sent: fix the rows above and submit again")?;
            }
            Ok(ExitCode::from(EXIT_INVALID))
        }
        Err(e) => {
            eprintln!("error: {}: {}", names::path(&args.file), masked(&e));
            let code = match e {
                SubmitError::AlreadySubmitted { .. }
                | SubmitError::RowsAlreadySent { .. }
                | SubmitError::Conflict { .. }
                | SubmitError::InFlight { .. } => EXIT_ALREADY_SUBMITTED,
                SubmitError::Rejected { .. } => EXIT_REJECTED,
                SubmitError::Unknown { .. } => EXIT_UNKNOWN,
                SubmitError::NotSent { .. } => EXIT_NOT_SENT,
                _ => EXIT_UNUSABLE,
            };
            if args.json {
                serde_json::to_writer_pretty(
                    &mut out,
                    &serde_json::json!({
                        "accepted": false,
                        "error": masked(&e),
                        "exit_code": code,
                    }),
                )?;
                writeln!(out)?;
            }
            Ok(ExitCode::from(code))
        }
    }
}

/// Said after a submit without `--callback`: the provider posts a batch's
/// result file to the `CallbackAddress` sent with it, and its resend
/// (`bulk/send/callback`) takes no address (docs/providers/paywall.md §2,
/// https://developer.paywall.one/payment-orchestration-integration-document/callback-examples/bulk-file-callback).
const NO_CALLBACK_NOTICE: &str = "no --callback: the provider sends a batch's result file only \
     to the CallbackAddress submitted with it, so this batch's results will not come back and \
     `paydrop results` stays empty for it. See the outcomes in the provider's panel or its bulk \
     query (GET /api/paywall/payment/bulk/payment/query with the part's MerchantUniqueCode); \
     next time submit with --callback URL of a running `paydrop watch`, which records every row";

/// A batch as JSON output shows it: the provider's words may quote what it
/// was sent, so card numbers in them are masked.
fn masked_batch(mut b: Batch) -> Batch {
    for s in &mut b.submissions {
        for m in [&mut s.message, &mut s.response] {
            *m = m.as_deref().map(mask::card_numbers);
        }
    }
    b
}

fn print_batch(out: &mut impl Write, b: &Batch) -> io::Result<()> {
    writeln!(
        out,
        "batch {} — {} — pattern {}, {} rows, {} {}, {}{}",
        b.id,
        names::sanitise(&b.file),
        b.pattern,
        b.rows,
        b.currency,
        b.amount,
        b.compression,
        if b.generation > 0 {
            format!(", forced resubmission #{}", b.generation)
        } else {
            String::new()
        }
    )?;
    let parts = b.submissions.len();
    for s in &b.submissions {
        let outcome = match (s.state, s.bulk_payment_id) {
            (State::Accepted, Some(id)) => format!("accepted, BulkPaymentId {id}"),
            _ if s.outcome_unknown() => format!(
                "OUTCOME UNKNOWN, not sent again: `paydrop resolve {} {}` --received ID | \
                 --not-received",
                b.id, s.part
            ),
            (state, _) => format!("{state}: {}", masked(s.message.as_deref().unwrap_or(""))),
        };
        writeln!(
            out,
            "  part {}/{parts}  {} rows  {} {}  {}  {outcome}  ({} attempt{})",
            s.part,
            s.rows,
            b.currency,
            s.amount,
            s.merchant_unique_code,
            s.attempts,
            if s.attempts == 1 { "" } else { "s" }
        )?;
    }
    Ok(())
}

/// The provider client from the configuration (and an optional override).
fn client_from(config: &Config, base: Option<&str>) -> Result<Client> {
    let base = base
        .map(str::to_string)
        .or_else(|| config.provider.base_url.clone())
        .context(
            "no provider address: pass --base, set PAYDROP_BASE_URL, or [provider] base_url",
        )?;
    let credentials = Credentials {
        api_key: config.provider.api_key.clone().with_context(|| {
            format!("no API key: set {ENV_API_KEY} or [provider] api_key in paydrop.toml")
        })?,
        api_client: config.provider.api_client.clone().with_context(|| {
            format!("no API client: set {ENV_API_CLIENT} or [provider] api_client in paydrop.toml")
        })?,
    };
    Ok(Client::new(
        &base,
        credentials,
        Duration::from_secs(config.provider.timeout_secs),
        Duration::from_secs(config.provider.connect_timeout_secs),
    )?)
}

/// The `[submit]` retry policy, which the payout and export calls share.
fn retry_policy(config: &Config) -> RetryPolicy {
    let (max_attempts, base, max) = config.backoff();
    RetryPolicy {
        max_attempts,
        base,
        max,
    }
}

async fn payout_cmd(config: &Config, command: &PayoutCommand) -> Result<ExitCode> {
    let args = match command {
        PayoutCommand::Trigger(args) => args,
        PayoutCommand::List { limit } => {
            let ledger = Ledger::open(&config.ledger.path)?;
            let mut out = io::stdout().lock();
            for order in ledger.recent_payout_orders(*limit)? {
                writeln!(out, "{order}: {}", order.message.as_deref().unwrap_or(""))?;
                if let Some(i) = &order.inquiry {
                    writeln!(out, "  last inquiry: {i}")?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        PayoutCommand::Status(args) => return payout_status(config, args).await,
    };
    let client = client_from(config, args.base.as_deref())?;
    let order = payout::Order {
        currency: args.currency,
        currency_id: config.currency_id(args.currency)?,
        date_from: args.from,
        date_to: args.to,
        test_mode: args.test_mode,
        skip_exists_control: args.skip_exists_control,
    };
    let opts = payout::TriggerOptions {
        today: args.as_of.unwrap_or_else(paydrop::provider_today),
        retry: retry_policy(config),
    };
    let mut ledger = Ledger::open(&config.ledger.path)?;
    let warn = |w: &str| eprintln!("warning: {w}");
    match payout::trigger(&mut ledger, &client, &order, &opts, warn).await {
        Ok(done) => {
            writeln!(std::io::stdout().lock(), "{}: {}", done.order, done.message)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {}", masked(&e));
            Ok(ExitCode::from(payout_exit(&e)))
        }
    }
}

fn payout_exit(e: &payout::PayoutError) -> u8 {
    match e {
        payout::PayoutError::Rule(payout::RuleError::AlreadyOrdered { .. }) => {
            EXIT_ALREADY_SUBMITTED
        }
        payout::PayoutError::Rule(_) => EXIT_INVALID,
        payout::PayoutError::Refused { .. } => EXIT_REJECTED,
        payout::PayoutError::Unknown { .. } | payout::PayoutError::Unresolved { .. } => {
            EXIT_UNKNOWN
        }
        payout::PayoutError::Inquiry { .. } | payout::PayoutError::Ledger(_) => EXIT_UNUSABLE,
    }
}

/// `paydrop payout status [JOB] [--order N] [--not-ordered]`.
async fn payout_status(config: &Config, args: &StatusArgs) -> Result<ExitCode> {
    let ledger = Ledger::open(&config.ledger.path)?;
    let order = |id: i64| -> Result<paydrop::ledger::PayoutOrder> {
        ledger
            .payout_order(id)?
            .with_context(|| format!("there is no payout order #{id} in the ledger"))
    };
    if args.not_ordered {
        let o = order(args.order.expect("clap requires --order"))?;
        if matches!(o.state, State::Accepted | State::Rejected) {
            bail!("{o} has a definite answer already; nothing to record");
        }
        ledger.settle_payout_order(
            o.id,
            State::Rejected,
            "the merchant found no such order in the provider's panel",
        )?;
        writeln!(
            std::io::stdout().lock(),
            "{}: recorded as not ordered",
            order(o.id)?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = client_from(config, args.base.as_deref())?;
    let retry = retry_policy(config);
    let targets: Vec<(Option<paydrop::ledger::PayoutOrder>, String)> = match (&args.job, args.order)
    {
        (Some(job), Some(id)) => {
            let o = order(id)?;
            if o.job_id.as_deref().is_some_and(|j| j != job) {
                bail!("{o} already has another JobId");
            }
            vec![(Some(o), job.clone())]
        }
        (Some(job), None) => vec![(ledger.payout_order_by_job(job)?, job.clone())],
        (None, Some(id)) => {
            let o = order(id)?;
            let job = o.job_id.clone().with_context(|| {
                format!("{o} has no JobId: give the one the provider's panel shows (`payout status JOB --order {id}`)")
            })?;
            vec![(Some(o), job)]
        }
        (None, None) => {
            let mut v = Vec::new();
            for o in ledger.recent_payout_orders(args.limit)? {
                match o.job_id.clone() {
                    Some(j) => v.push((Some(o), j)),
                    None if matches!(o.state, State::Pending | State::Unknown) => {
                        writeln!(
                            std::io::stdout().lock(),
                            "{o}: no definite answer and no JobId; find it in the provider's \
                             panel and run `paydrop payout status JOBID --order {}`",
                            o.id
                        )?;
                    }
                    None => {}
                }
            }
            v
        }
    };
    let mut code = ExitCode::SUCCESS;
    for (o, job) in targets {
        let answer = match &o {
            Some(o) => payout::resolve(&ledger, &client, o, &job, retry)
                .await
                .map(|(o, i)| (Some(o), i)),
            None => payout::inquire(&client, &job, retry)
                .await
                .map(|i| (None, i)),
        };
        match answer {
            Ok((o, inquiry)) => {
                let who = o.map_or_else(|| format!("JobId {job}"), |o| o.to_string());
                writeln!(std::io::stdout().lock(), "{who}: {}", inquiry.describe())?;
                if inquiry.verdict() != payout::Verdict::Done {
                    code = ExitCode::from(EXIT_UNKNOWN);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::from(payout_exit(&e));
            }
        }
    }
    Ok(code)
}

/// The `$filter` of `paydrop export payments`.
fn export_filter(args: &ExportArgs) -> Result<Option<export::Filter>, export::FilterError> {
    use export::{Field, Filter};
    if let Some(raw) = &args.filter {
        return Filter::parse(raw).map(Some);
    }
    let mut parts = Vec::new();
    parts.extend(args.from.map(|d| Filter::ge(Field::PaymentDate, d)));
    parts.extend(args.to.map(|d| Filter::le(Field::PaymentDate, d)));
    for (field, value) in [
        (Field::ProgramName, &args.program),
        (Field::PayoutOrderType, &args.order_type),
        (Field::PaymentId, &args.payment_id),
        (Field::EnrollmentParticipantId, &args.participant),
    ] {
        parts.extend(value.as_deref().map(|v| Filter::eq(field, v)));
    }
    Ok(Filter::all_of(parts))
}

async fn export_cmd(config: &Config, args: &ExportArgs) -> Result<ExitCode> {
    // The filter is checked before anything else, the network included.
    let filter = match export_filter(args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {}", export::ExportError::from(e));
            return Ok(ExitCode::from(EXIT_UNUSABLE));
        }
    };
    let base = args
        .base
        .clone()
        .or_else(|| config.export.base_url.clone())
        .context(
            "no export API address: pass --base, set PAYDROP_EXPORT_BASE_URL, or [export] base_url",
        )?;
    let token = config.export.token.clone().with_context(|| {
        format!("no export API token: set {ENV_EXPORT_TOKEN} or [export] token in paydrop.toml")
    })?;
    let client = export::ExportClient::new(
        &base,
        token,
        retry_policy(config),
        Duration::from_secs(config.provider.timeout_secs),
        Duration::from_secs(config.provider.connect_timeout_secs),
    )?
    .with_columns(config.export.columns.clone());
    let poll = export::PollPolicy {
        first: Duration::from_millis(config.export.poll_ms),
        max: Duration::from_millis(config.export.poll_max_ms),
        timeout: Duration::from_secs(args.poll_timeout.unwrap_or(config.export.poll_timeout_secs)),
    };
    let (mut sink, target) = export_sink(args)?;
    let spinner = io::stderr().is_terminal().then(|| {
        let s = ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let outcome = async {
        let request = match &args.request_id {
            Some(id) => client.status(id).await?,
            None => client.queue(filter.as_ref(), args.format).await?,
        };
        tracing::info!(request_id = %request.request_id, "export request");
        let done = client
            .wait(request, poll, |r| {
                if let Some(s) = &spinner {
                    let status = match r.status {
                        export::ExportStatus::Queued => "queued",
                        export::ExportStatus::Processing => "processing",
                        export::ExportStatus::Failed => "failed",
                        export::ExportStatus::Completed => "completed",
                    };
                    s.set_message(format!("export {}: {status}", r.request_id));
                }
            })
            .await?;
        if let Some(s) = &spinner {
            s.set_message(format!("export {}: downloading", done.request_id));
        }
        let (info, summary) = client.download(&done, args.format, &mut sink).await?;
        Ok::<_, export::ExportError>((done, info, summary))
    }
    .await;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let (request, info, summary) = match outcome {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {}", masked(&e));
            return Ok(ExitCode::from(match e {
                export::ExportError::Failed { .. } => EXIT_REJECTED,
                export::ExportError::Timeout { .. } => EXIT_UNKNOWN,
                _ => EXIT_UNUSABLE,
            }));
        }
    };
    if let Some(t) = target {
        let path = args.output.as_ref().expect("a target only for -o");
        t.persist(path)
            .with_context(|| format!("moving the rows into {}", path.display()))?;
    }
    let mut out = io::stdout().lock();
    let to_stdout = args.output.is_none() && !args.summary;
    let mut report: Box<dyn Write> = if to_stdout {
        Box::new(io::stderr().lock())
    } else {
        Box::new(&mut out)
    };
    print_export(&mut report, &request, &info, &summary, args.summary)?;
    Ok(ExitCode::SUCCESS)
}

/// A new temporary file in `path`'s folder, which becomes `path` (persisted)
/// only once everything is written: a reader never sees half a file.
fn temp_beside(path: &Path, prefix: &str) -> Result<(File, tempfile::TempPath)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    Ok(tmp.into_parts())
}

/// Where `export payments` writes rows: the sink, and the temporary file
/// that becomes `-o` once everything was read.
fn export_sink(args: &ExportArgs) -> Result<(export::Sink, Option<tempfile::TempPath>)> {
    let (writer, target): (Box<dyn tokio::io::AsyncWrite + Send + Unpin>, _) =
        match (&args.output, args.summary) {
            (Some(path), _) => {
                let (file, temp_path) = temp_beside(path, ".paydrop-export-")?;
                (Box::new(tokio::fs::File::from_std(file)), Some(temp_path))
            }
            (None, true) => return Ok((export::Sink::Discard, None)),
            (None, false) => (Box::new(tokio::io::stdout()), None),
        };
    let sink = match args.out_format {
        OutFormat::Csv => export::Sink::csv(writer),
        OutFormat::Jsonl => export::Sink::jsonl(writer),
    };
    Ok((sink, target))
}

fn print_export(
    out: &mut dyn Write,
    request: &export::ExportRequest,
    info: &export::BlobInfo,
    summary: &export::Summary,
    totals: bool,
) -> io::Result<()> {
    writeln!(
        out,
        "export {}: {} rows, {} columns{}{}{}",
        request.request_id,
        summary.rows,
        summary.columns.len(),
        info.length
            .map_or_else(String::new, |n| format!(", {n} bytes")),
        if info.gzip { " (gzip)" } else { "" },
        match summary.entries {
            0 => String::new(),
            n => format!(" (zip of {n} files)"),
        }
    )?;
    let roles: Vec<String> = summary
        .roles
        .iter()
        .map(|(role, column)| format!("{role} = {column}"))
        .collect();
    writeln!(out, "  columns used: {}", roles.join(", "))?;
    if !summary.extra_columns.is_empty() {
        writeln!(
            out,
            "  extra columns kept: {}",
            summary.extra_columns.join(", ")
        )?;
    }
    if !totals {
        return Ok(());
    }
    let title = |role: &str| summary.roles.get(role).cloned();
    for (title, groups) in [
        (title("status"), &summary.by_status),
        (title("program"), &summary.by_program),
        (title("currency"), &summary.by_currency),
        (Some("month".to_string()), &summary.by_month),
    ] {
        let Some(title) = title else { continue };
        writeln!(out, "{title}")?;
        for (value, per_currency) in groups {
            for (currency, tally) in per_currency {
                let value = if value.is_empty() { "(none)" } else { value };
                writeln!(
                    out,
                    "  {value:<28} {currency} {:>18} ({} rows)",
                    tally.amount, tally.rows
                )?;
            }
        }
    }
    Ok(())
}

async fn watch_cmd(registry: Registry, config: Config) -> Result<ExitCode> {
    let client = client_from(&config, None)?;
    watch::run(
        config,
        registry,
        client,
        WatchHooks::default(),
        None,
        stop_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn status_cmd(config: &Config, json: bool) -> Result<ExitCode> {
    let ledger = Ledger::open(&config.ledger.path)?;
    let open = ledger.open_submissions()?;
    let overdue = std::time::Duration::from_secs(config.watch.results_overdue_secs);
    let awaiting = callback::progress::awaiting(&ledger, overdue, chrono::Utc::now())?;
    let recent = ledger.recent_batches(5)?;
    let outcomes = recent
        .iter()
        .map(|b| results::outcomes(&ledger, b))
        .collect::<Result<Vec<_>>>()?;
    let code = if open.iter().any(|s| s.outcome_unknown()) {
        ExitCode::from(EXIT_UNKNOWN)
    } else {
        ExitCode::SUCCESS
    };
    let mut out = io::stdout().lock();
    if json {
        let inboxes: Vec<serde_json::Value> = config
            .watch
            .inboxes
            .iter()
            .map(|inbox| {
                let counts: serde_json::Map<String, serde_json::Value> =
                    watch::inbox_counts(&inbox.path)
                        .iter()
                        .map(|(state, n)| (state.to_string(), (*n).into()))
                        .collect();
                serde_json::json!({ "path": inbox.path, "files": counts })
            })
            .collect();
        let open: Vec<serde_json::Value> = open
            .iter()
            .map(|s| {
                serde_json::json!({
                    "batch": s.batch_id,
                    "part": s.part,
                    "code": s.merchant_unique_code,
                    "rows": s.rows,
                    "amount": s.amount,
                    "outcome_unknown": s.outcome_unknown(),
                    "message": s.message.as_deref().map(mask::card_numbers),
                })
            })
            .collect();
        let recent: Vec<serde_json::Value> = recent
            .into_iter()
            .zip(&outcomes)
            .map(|(b, o)| {
                let results = o.json(&b.currency);
                serde_json::json!({ "batch": masked_batch(b), "results": results })
            })
            .collect();
        let awaiting: Vec<String> = awaiting.iter().map(ToString::to_string).collect();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "ledger": config.ledger.path,
                "inboxes": inboxes,
                "awaiting_results": awaiting,
                "open": open,
                "recent": recent,
            }),
        )?;
        writeln!(out)?;
        return Ok(code);
    }
    writeln!(out, "ledger {}", config.ledger.path.display())?;
    for inbox in &config.watch.inboxes {
        let counts: Vec<String> = watch::inbox_counts(&inbox.path)
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        writeln!(out, "inbox {}: {}", inbox.path.display(), counts.join(", "))?;
        for (path, kind) in watch::skipped(&inbox.path) {
            writeln!(
                out,
                "  skipped {} ({kind}): only regular files are taken",
                names::path(&path)
            )?;
        }
    }
    if !awaiting.is_empty() {
        writeln!(out, "accepted, awaiting the provider's results:")?;
        for a in &awaiting {
            writeln!(out, "  {a}")?;
        }
    }
    if open.is_empty() {
        writeln!(out, "no submission is waiting or of unknown outcome")?;
    } else {
        writeln!(out, "submissions without a final answer:")?;
        for s in &open {
            let what = if s.outcome_unknown() {
                format!(
                    "OUTCOME UNKNOWN: the provider may or may not have it, and paydrop will not \
                     send it again by itself ({}). A submit or daemon pass asks the provider's \
                     bulk inquiry again; or find out and run `paydrop resolve {} {} \
                     --received BULK_PAYMENT_ID` or `--not-received`",
                    s.message.as_deref().unwrap_or("no answer"),
                    s.batch_id,
                    s.part
                )
            } else if s.attempts > 0 {
                format!(
                    "pending, not sent yet: {}",
                    s.message.as_deref().unwrap_or("not taken by the provider")
                )
            } else {
                "pending, not sent yet".into()
            };
            writeln!(
                out,
                "  batch {} part {}  {}  {} rows  {}  {what}",
                s.batch_id, s.part, s.merchant_unique_code, s.rows, s.amount
            )?;
        }
    }
    if !recent.is_empty() {
        writeln!(out, "recent batches:")?;
        for (b, o) in recent.iter().zip(&outcomes) {
            print_batch(&mut out, b)?;
            writeln!(out, "  results  {}", o.line(&b.currency))?;
        }
    }
    Ok(code)
}

fn resolve_cmd(config: &Config, args: &ResolveArgs) -> Result<ExitCode> {
    let ledger = Ledger::open(&config.ledger.path)?;
    let sub = ledger.submission(args.batch, args.part)?.with_context(|| {
        format!(
            "no part {} of batch {} in {}",
            args.part,
            args.batch,
            config.ledger.path.display()
        )
    })?;
    if !sub.outcome_unknown() {
        eprintln!(
            "error: batch {} part {} is {} ({}), not of unknown outcome: nothing to resolve",
            args.batch,
            args.part,
            sub.state,
            sub.message.as_deref().unwrap_or("")
        );
        return Ok(ExitCode::from(EXIT_UNUSABLE));
    }
    let (resolution, note) = match args.received {
        Some(id) => {
            if let Some(other) = ledger.submission_by_bulk_id(id)? {
                eprintln!(
                    "error: BulkPaymentId {id} already belongs to batch {} part {}; check the id",
                    other.batch_id, other.part
                );
                return Ok(ExitCode::from(EXIT_UNUSABLE));
            }
            (
                Resolution::Received {
                    bulk_payment_id: Some(id),
                },
                format!("received as BulkPaymentId {id}, says the operator"),
            )
        }
        None => (
            Resolution::NotReceived,
            "not received, says the operator: sent again under its original code by the next \
             submit or daemon pass"
                .to_string(),
        ),
    };
    ledger.resolve(sub.id, &resolution, &note)?;
    writeln!(
        std::io::stdout().lock(),
        "batch {} part {} ({}): {note}",
        args.batch,
        args.part,
        sub.merchant_unique_code
    )?;
    Ok(ExitCode::SUCCESS)
}

fn ledger_cmd(config: &Config, command: &LedgerCommand) -> Result<ExitCode> {
    let ledger = Ledger::open(&config.ledger.path)?;
    let mut out = io::stdout().lock();
    match command {
        LedgerCommand::List { limit, json } => {
            let batches = ledger.recent_batches(*limit)?;
            if *json {
                let batches: Vec<Batch> = batches.into_iter().map(masked_batch).collect();
                serde_json::to_writer_pretty(&mut out, &batches)?;
                writeln!(out)?;
            } else {
                for b in &batches {
                    print_batch(&mut out, b)?;
                }
            }
        }
        LedgerCommand::Show { id, json } => {
            let b = ledger
                .batch(*id)?
                .with_context(|| format!("no batch {id} in {}", config.ledger.path.display()))?;
            let outcomes = results::outcomes(&ledger, &b)?;
            if *json {
                let mut attempts: Vec<Vec<paydrop::ledger::Attempt>> = b
                    .submissions
                    .iter()
                    .map(|s| ledger.attempts(s.id))
                    .collect::<Result<_, _>>()?;
                // The provider's words may quote what it was sent.
                attempts
                    .iter_mut()
                    .flatten()
                    .for_each(|a| a.message = a.message.as_deref().map(mask::card_numbers));
                let results = outcomes.json(&b.currency);
                serde_json::to_writer_pretty(
                    &mut out,
                    &serde_json::json!({
                        "batch": masked_batch(b),
                        "attempts": attempts,
                        "results": results,
                    }),
                )?;
                writeln!(out)?;
            } else {
                print_batch(&mut out, &b)?;
                writeln!(out, "  sha256 {}  created {}", b.sha256, b.created_at)?;
                writeln!(out, "  results  {}", outcomes.line(&b.currency))?;
                for s in &b.submissions {
                    for a in ledger.attempts(s.id)? {
                        writeln!(
                            out,
                            "    part {} attempt {}: {} → {} {} {}",
                            s.part,
                            a.id,
                            a.started_at.format("%H:%M:%S%.3f"),
                            a.finished_at
                                .map(|t| t.format("%H:%M:%S%.3f").to_string())
                                .unwrap_or_else(|| "never finished".into()),
                            a.outcome.as_deref().unwrap_or("?"),
                            masked(a.message.as_deref().unwrap_or(""))
                        )?;
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn sandbox_cmd(args: &SandboxArgs) -> Result<ExitCode> {
    // The independent provider (crates/sandbox), written from the pages, not
    // from this client: one config, served on both ports.
    let mut config = paydrop_sandbox::SandboxConfig::default();
    config.bulk.decline_rate = args.decline_rate;
    // The sandbox accepts the same credentials the client sends, so one
    // environment serves both; without them it uses its public test ones.
    let env = |name: &str| std::env::var(name).ok();
    if let Some(key) = env(ENV_API_KEY) {
        config.bulk.keys.api_key = key.as_str().into();
        config.marketplace.api_key = key;
    }
    if let Some(client) = env(ENV_API_CLIENT) {
        config.bulk.keys.api_client = client.as_str().into();
        config.marketplace.api_client = client;
    }
    config.export.content =
        paydrop_sandbox::export::Content::Generated(paydrop_sandbox::export::Generated {
            rows: args.export_rows,
            seed: 1,
            schema: paydrop_sandbox::export::Schema::default(),
        });
    config.export.encoding = match (args.export_gzip, args.export_zip) {
        (true, _) => paydrop_sandbox::export::Encoding::GzipFile,
        (_, Some(entries)) => paydrop_sandbox::export::Encoding::Zip { entries },
        _ => paydrop_sandbox::export::Encoding::Plain,
    };
    config.report.rows = args.report_rows;
    config.report.sloppy_numbers = !args.report_plain_numbers;
    for (name, slot) in [
        (ENV_EXPORT_TOKEN, &mut config.export.token),
        (ENV_REPORT_EMAIL, &mut config.report.email),
        (ENV_REPORT_PASSWORD, &mut config.report.password),
        (ENV_CRAFTGATE_API_KEY, &mut config.breakdown.api_key),
        (ENV_CRAFTGATE_SECRET_KEY, &mut config.breakdown.secret_key),
    ] {
        if let Some(v) = env(name) {
            *slot = v;
        }
    }
    if let Some(key) = env(ENV_WEBHOOK_HASH_KEY) {
        config.bulk.webhook_hash_key = key.as_str().into();
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let receiving_port = args.receiving_port.unwrap_or(args.port.wrapping_add(1));
    let receiving_addr = std::net::SocketAddr::from(([127, 0, 0, 1], receiving_port));
    eprintln!(
        "sandbox: bulk payments on http://{addr} (keys {ENV_API_KEY} / {ENV_API_CLIENT}, default \
         sandbox-key / sandbox-client); marketplace trigger, payouts export, breakdown and \
         payment report on http://{receiving_addr} (export token {ENV_EXPORT_TOKEN}, default \
         sandbox-export-token; Craftgate keys {ENV_CRAFTGATE_API_KEY} / \
         {ENV_CRAFTGATE_SECRET_KEY}, default sandbox-craftgate-api-key / \
         sandbox-craftgate-secret-key; Payzee login {ENV_REPORT_EMAIL} / {ENV_REPORT_PASSWORD}, \
         default merchant@sandbox.example / sandbox-pass); result callbacks signed with \
         {ENV_WEBHOOK_HASH_KEY} (default sandbox-webhook-key); Ctrl-C stops both"
    );
    tokio::try_join!(
        paydrop_sandbox::serve(config.clone(), addr),
        paydrop_sandbox::serve(config, receiving_addr)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn validate_cmd(registry: &Registry, config: &Config, args: &ValidateArgs) -> Result<ExitCode> {
    let pattern = match registry.get(args.pattern) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_UNUSABLE));
        }
    };
    let opts = Options {
        max_errors: args.max_errors,
        as_of: args.as_of.unwrap_or_else(paydrop::provider_today),
        currency: args.currency,
        split_rows: args.split_rows,
        max_line_bytes: args.max_line_bytes,
        limits: config.limits(),
        ..Options::default()
    };
    let mut tsv = match &args.errors_tsv {
        Some(path) => Some(errors_tsv(path)?),
        None => None,
    };
    let mut write_failed = None;
    let mut on_error = |e: &RowError| {
        if let Some(w) = tsv.as_mut() {
            if let Err(err) = write_tsv_row(w, e) {
                write_failed.get_or_insert(err);
            }
        }
    };
    let bar = progress_bar(&args.file);
    let progress = |bytes: u64| {
        if let Some(b) = &bar {
            b.set_position(bytes)
        }
    };
    let hooks = Hooks {
        on_error: Some(&mut on_error),
        progress: Some(&progress),
        ..Hooks::default()
    };
    let outcome = validate_file(&args.file, pattern, &opts, hooks);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(mut w) = tsv {
        w.flush()?;
    }
    if let Some(e) = write_failed {
        return Err(e).context("writing the errors TSV");
    }
    let report = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {}", names::path(&args.file), masked(&e));
            if let Fatal::Encoding { .. } | Fatal::Input(_) = e {
                eprintln!("nothing was validated; the file was not changed");
            }
            return Ok(ExitCode::from(EXIT_UNUSABLE));
        }
    };
    if let Some(path) = &args.report {
        let mut w = BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        serde_json::to_writer_pretty(&mut w, &report)?;
        w.flush()?;
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else if args.quiet {
        writeln!(out, "{}", verdict(&report))?;
    } else {
        print_report(&mut out, &report, pattern)?;
    }
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}

fn errors_tsv(path: &Path) -> Result<BufWriter<File>> {
    let mut w =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    writeln!(w, "line\trow\tcolumn\tvalue\tkind\treason")?;
    Ok(w)
}

fn write_tsv_row(w: &mut impl Write, e: &RowError) -> io::Result<()> {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let kind = serde_json::to_value(e.kind).map_err(io::Error::other)?;
    writeln!(
        w,
        "{}\t{}\t{}\t{}\t{}\t{}",
        e.line,
        e.row,
        e.column.as_deref().unwrap_or(""),
        clean(e.value.as_deref().unwrap_or("")),
        kind.as_str().unwrap_or(""),
        clean(&e.reason)
    )
}

/// A byte progress bar for big files on an interactive terminal.
fn progress_bar(path: &Path) -> Option<ProgressBar> {
    let len = std::fs::metadata(path).ok()?.len();
    if !io::stderr().is_terminal() || len < 16 << 20 {
        return None;
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .ok()?,
    );
    Some(bar)
}

fn verdict(r: &Report) -> String {
    let name = names::sanitise(r.file.as_deref().unwrap_or("input"));
    if r.is_valid() {
        format!("{name}: VALID, {} rows, {}", r.rows_read, totals_line(r))
    } else {
        format!(
            "{name}: INVALID, {} of {} rows have errors ({} errors)",
            r.rows_invalid, r.rows_read, r.errors_total
        )
    }
}

fn totals_line(r: &Report) -> String {
    let parts: Vec<String> = r
        .totals
        .iter()
        .map(|t| format!("{} {} over {} rows", t.currency, t.amount, t.rows))
        .collect();
    if parts.is_empty() {
        "no amounts".into()
    } else {
        parts.join(", ")
    }
}

/// Errors printed on the terminal; the JSON report and TSV hold all.
const TERMINAL_ERRORS: usize = 20;

fn print_report(out: &mut impl Write, r: &Report, pattern: &Pattern) -> io::Result<()> {
    writeln!(
        out,
        "{} — pattern {} \"{}\"",
        names::sanitise(r.file.as_deref().unwrap_or("input")),
        pattern.id,
        pattern.name
    )?;
    writeln!(
        out,
        "  rows     {} read, {} valid, {} invalid{}",
        r.rows_read,
        r.rows_valid,
        r.rows_invalid,
        if r.header_row {
            " (plus a header row)"
        } else {
            ""
        }
    )?;
    writeln!(out, "  bytes    {}  sha256 {}", r.bytes, r.sha256)?;
    writeln!(out, "  totals   {} (valid rows)", totals_line(r))?;
    if r.parts.len() > 1 {
        for p in &r.parts {
            let t: Vec<String> = p
                .totals
                .iter()
                .map(|t| format!("{} {}", t.currency, t.amount))
                .collect();
            writeln!(
                out,
                "  part {}   rows {}–{} ({} rows) {}",
                p.index,
                p.first_row,
                p.first_row + p.rows - 1,
                p.rows,
                t.join(", ")
            )?;
        }
    }
    for w in &r.warnings {
        writeln!(out, "  warning  {w}")?;
    }
    if r.errors_total > 0 {
        let shown = r.errors.len().min(TERMINAL_ERRORS);
        writeln!(out, "  errors   {} (first {shown}):", r.errors_total)?;
        for e in &r.errors[..shown] {
            writeln!(out, "    {e}")?;
        }
        if r.errors_total as usize > shown {
            writeln!(
                out,
                "    … {} more in the --report JSON / --errors-tsv file",
                r.errors_total as usize - shown
            )?;
        }
    }
    writeln!(out, "{}", verdict(r))
}

fn gen_cmd(registry: &Registry, args: &GenArgs) -> Result<ExitCode> {
    let pattern = registry.get(args.pattern)?;
    let opts = GenOptions {
        rows: args.rows,
        error_rate: args.error_rate,
        seed: args.seed,
        header: args.header.then_some(true),
        as_of: args.as_of.unwrap_or_else(paydrop::provider_today),
        ..GenOptions::default()
    };
    // Generated card numbers use real issuers' BINs and pass Luhn: kept
    // private like any file of card numbers.
    let out = paydrop::private::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let g = generate(out, pattern, &opts)?;
    if let Some(path) = &args.manifest {
        serde_json::to_writer_pretty(File::create(path)?, &g)?;
    }
    writeln!(
        std::io::stdout().lock(),
        "{}: {} rows, {} with deliberate errors",
        args.output.display(),
        g.rows,
        g.planted.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn demo_cmd(registry: Registry, rows: u64) -> Result<ExitCode> {
    crate::demo::run(registry, rows, &mut io::stdout()).await?;
    Ok(ExitCode::SUCCESS)
}
