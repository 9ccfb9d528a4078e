//! What the provider said about each row of a batch, as the ledger recorded
//! it from the result callbacks: `paydrop results BATCH` lists the rows
//! (streamed from the ledger, one row at a time), and the per-outcome
//! counts and exact totals that `status` and `ledger show` print.
//!
//! A row is named by its line in the file, its payment code and its card
//! masked to the first 6 and last 4 digits, which is all the ledger keeps of
//! a card (a result file's `cardNumber` is never stored).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use paydrop::ledger::{Batch, Ledger};
use paydrop::results::{Outcome, ResultLine};
use paydrop::totals::Tally;

use super::{masked, temp_beside};

#[derive(Args)]
pub struct ResultsArgs {
    /// The batch (as `status` and `ledger list` show it).
    batch: i64,
    /// Only the rows the provider declined.
    #[arg(long, conflicts_with = "paid")]
    declined: bool,
    /// Only the rows the provider paid.
    #[arg(long)]
    paid: bool,
    /// Write the rows to FILE instead of stdout (replaced only once every row
    /// is written).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// One JSON document (rows and totals) instead of CSV.
    #[arg(long)]
    json: bool,
    /// Print no totals (with -o, nothing at all).
    #[arg(short, long)]
    quiet: bool,
}

/// Rows and exact totals per outcome of one batch (its one currency), and
/// the rows without a recorded result.
pub struct Outcomes {
    pub by_outcome: BTreeMap<Outcome, Tally>,
    pub without_result: u64,
}

impl Outcomes {
    fn new() -> Outcomes {
        Outcomes {
            by_outcome: BTreeMap::new(),
            without_result: 0,
        }
    }

    fn count(&mut self, line: &ResultLine) -> Result<()> {
        self.by_outcome
            .entry(line.outcome)
            .or_default()
            .add(line.amount)
            .context("totalling the results")
    }

    fn finish(mut self, batch: &Batch) -> Outcomes {
        let recorded: u64 = self.by_outcome.values().map(|t| t.rows).sum();
        self.without_result = batch.rows.saturating_sub(recorded);
        self
    }

    /// `paid 45 (TRY 1234.50), declined 5 (TRY 100.00), no result yet 0 rows`.
    pub fn line(&self, currency: &str) -> String {
        let mut parts: Vec<String> = self
            .by_outcome
            .iter()
            .map(|(o, t)| format!("{} {} ({currency} {})", o.as_str(), t.rows, t.amount))
            .collect();
        parts.push(format!("no result yet {} rows", self.without_result));
        parts.join(", ")
    }

    pub fn json(&self, currency: &str) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("currency".into(), currency.into());
        for o in ALL_OUTCOMES {
            let t = self.by_outcome.get(&o).cloned().unwrap_or_default();
            map.insert(o.as_str().into(), serde_json::json!(t));
        }
        map.insert("without_result".into(), self.without_result.into());
        serde_json::Value::Object(map)
    }
}

/// Every outcome, so that a JSON reader finds each key even at zero.
const ALL_OUTCOMES: [Outcome; 5] = [
    Outcome::Paid,
    Outcome::Declined,
    Outcome::Authorised,
    Outcome::Pending,
    Outcome::Review,
];

/// Streams every recorded result line of `batch`, part by part, in line
/// order.
fn each_line(
    ledger: &Ledger,
    batch: &Batch,
    mut f: impl FnMut(u32, ResultLine, Option<String>) -> Result<()>,
) -> Result<()> {
    for s in &batch.submissions {
        ledger.each_result_with_card(s.id, |line, card| f(s.part, line, card))?;
    }
    Ok(())
}

/// The counts and totals of `batch`'s recorded results.
pub fn outcomes(ledger: &Ledger, batch: &Batch) -> Result<Outcomes> {
    let mut o = Outcomes::new();
    each_line(ledger, batch, |_, line, _| o.count(&line))?;
    Ok(o.finish(batch))
}

/// `paydrop results BATCH [--declined|--paid] [-o FILE] [--json] [-q]`.
pub fn results_cmd(ledger_path: &Path, args: &ResultsArgs) -> Result<ExitCode> {
    let ledger = Ledger::open(ledger_path)?;
    let batch = ledger
        .batch(args.batch)?
        .with_context(|| format!("no batch {} in {}", args.batch, ledger_path.display()))?;
    let wanted = |o: Outcome| match (args.paid, args.declined) {
        (true, _) => o == Outcome::Paid,
        (_, true) => o == Outcome::Declined,
        _ => true,
    };
    let (writer, target): (Box<dyn Write>, _) = match &args.output {
        Some(path) => {
            let (file, temp_path) = temp_beside(path, ".paydrop-results-")?;
            (Box::new(io::BufWriter::new(file)), Some(temp_path))
        }
        None => (Box::new(io::BufWriter::new(io::stdout().lock())), None),
    };
    let mut totals = Outcomes::new();
    let currency = batch.currency.clone();
    let mut w = if args.json {
        RowWriter::json(writer, &batch)?
    } else {
        RowWriter::csv(writer)?
    };
    each_line(&ledger, &batch, |part, line, card| {
        totals.count(&line)?;
        if wanted(line.outcome) {
            w.row(part, &line, card.as_deref().unwrap_or_default(), &currency)?;
        }
        Ok(())
    })?;
    let totals = totals.finish(&batch);
    w.finish(&totals, &currency)?;
    if let (Some(t), Some(path)) = (target, &args.output) {
        t.persist(path)
            .with_context(|| format!("moving the rows into {}", path.display()))?;
    }
    if !args.quiet && !args.json {
        let line = format!("batch {}: {}", batch.id, totals.line(&currency));
        // The rows own stdout unless they went to a file.
        if args.output.is_some() {
            writeln!(std::io::stdout().lock(), "{line}")?;
        } else {
            eprintln!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The listing's format: CSV with a header, or one JSON document written
/// as the rows come.
enum RowWriter {
    Csv(Box<csv::Writer<Box<dyn Write>>>),
    Json { out: Box<dyn Write>, first: bool },
}

const CSV_HEADER: [&str; 9] = [
    "part",
    "row",
    "code",
    "card",
    "amount",
    "currency",
    "status",
    "error_code",
    "message",
];

impl RowWriter {
    fn csv(out: Box<dyn Write>) -> Result<RowWriter> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(CSV_HEADER)?;
        Ok(RowWriter::Csv(Box::new(w)))
    }

    fn json(mut out: Box<dyn Write>, batch: &Batch) -> Result<RowWriter> {
        write!(
            out,
            "{{\"batch\":{},\"file\":{},\"currency\":{},\"rows\":[",
            batch.id,
            serde_json::to_string(&paydrop::names::sanitise(&batch.file))?,
            serde_json::to_string(&batch.currency)?
        )?;
        Ok(RowWriter::Json { out, first: true })
    }

    fn row(&mut self, part: u32, line: &ResultLine, card: &str, currency: &str) -> Result<()> {
        // The provider's words may quote what it was sent.
        let message = masked(&line.error_message);
        match self {
            RowWriter::Csv(w) => {
                let (part, row, amount) = (
                    part.to_string(),
                    line.line_number.to_string(),
                    line.amount.to_string(),
                );
                let fields: [&str; 9] = [
                    &part,
                    &row,
                    &line.merchant_unique_code,
                    card,
                    &amount,
                    currency,
                    line.outcome.as_str(),
                    &line.error_code,
                    &message,
                ];
                w.write_record(fields)?
            }
            RowWriter::Json { out, first } => {
                if !std::mem::take(first) {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(
                    &mut *out,
                    &serde_json::json!({
                        "part": part,
                        "row": line.line_number,
                        "code": line.merchant_unique_code,
                        "card": card,
                        "amount": line.amount,
                        "currency": currency,
                        "status": line.outcome.as_str(),
                        "error_code": line.error_code,
                        "message": message,
                    }),
                )?;
            }
        }
        Ok(())
    }

    fn finish(self, totals: &Outcomes, currency: &str) -> Result<()> {
        match self {
            RowWriter::Csv(mut w) => w.flush()?,
            RowWriter::Json { mut out, .. } => {
                write!(
                    out,
                    "],\"totals\":{}}}",
                    serde_json::to_string(&totals.json(currency))?
                )?;
                writeln!(out)?;
                out.flush()?;
            }
        }
        Ok(())
    }
}
