//! Helpers shared by the validator's integration tests: fixed dates and
//! options, hand-made pattern-1 rows with valid card numbers, generated files
//! on disk, and the `paydrop` binary.
//!
//! Each test binary uses a different subset of these.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use chrono::NaiveDate;
use paydrop::pattern::{Pattern, Registry};
use paydrop::validate::{validate_reader, ErrorKind, Fatal, Hooks, Options, Report, RowError};
use paydrop_generate::{generate, GenOptions, Generated};
use tempfile::NamedTempFile;

/// The payment date every test validates against (and generates relative to).
pub fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 15).expect("valid date")
}

/// `--as-of` for the binary, the same date as [`as_of`].
pub const AS_OF_ARG: &str = "2026-03-15";

/// A built-in pattern (1 or 3).
pub fn builtin(id: u16) -> Pattern {
    Registry::load(None)
        .expect("built-in patterns load")
        .get(id)
        .expect("built-in pattern")
        .clone()
}

/// Default options with the fixed date and room for every error.
pub fn options() -> Options {
    Options {
        as_of: as_of(),
        max_errors: 1_000_000,
        ..Options::default()
    }
}

/// Options without money bounds (beyond what `Decimal` holds), for tests of
/// huge amounts.
pub fn unbounded_options() -> Options {
    let unbounded = Some(paydrop::bounds::Bound::All(rust_decimal::Decimal::MAX));
    Options {
        limits: paydrop::bounds::Limits {
            max_row_amount: unbounded.clone(),
            max_file_total: unbounded,
        },
        ..options()
    }
}

/// Validates bytes held in memory.
pub fn validate_bytes(bytes: &[u8], pattern: &Pattern, opts: &Options) -> Result<Report, Fatal> {
    validate_reader(bytes, pattern, opts, Hooks::default())
}

/// Validates bytes against pattern 1 with [`options`].
pub fn validate1(bytes: &[u8]) -> Result<Report, Fatal> {
    validate_bytes(bytes, &builtin(1), &options())
}

/// Adds the Luhn check digit to `payload`.
pub fn with_check_digit(payload: &str) -> String {
    let digit = paydrop::validate::check::luhn_check_digit(payload.as_bytes());
    format!("{payload}{}", char::from(digit))
}

/// A Luhn-valid 16-digit card number, different for each `n`.
pub fn card(n: u64) -> String {
    with_check_digit(&format!("454360{:09}", n % 1_000_000_000))
}

/// The same card with its last digit changed: fails the Luhn check.
pub fn luhn_broken(card: &str) -> String {
    let (head, last) = card.split_at(card.len() - 1);
    let d = (last.as_bytes()[0] - b'0' + 1) % 10;
    format!("{head}{d}")
}

/// The 17 cells of a valid pattern-1 row for data row `row`.
pub fn row1_cells(row: u64) -> Vec<String> {
    let mut cells = vec![String::new(); 17];
    cells[0] = card(row);
    cells[1] = "12/30".into();
    cells[2] = "100.50".into();
    cells[3] = row.to_string();
    cells[4] = "Ayşe Yılmaz".into();
    cells[5] = format!("T{row}");
    cells[9] = format!("MUC-{row}");
    cells
}

/// A valid pattern-1 row (no line terminator) for data row `row`.
pub fn row1(row: u64) -> String {
    row1_cells(row).join(",")
}

/// A pattern-1 row with cell `col` replaced by `value`.
pub fn row1_with(row: u64, col: usize, value: &str) -> String {
    let mut cells = row1_cells(row);
    cells[col] = value.into();
    cells.join(",")
}

/// The header row naming `pattern`'s columns (no terminator).
pub fn header(pattern: &Pattern) -> String {
    let names: Vec<&str> = pattern.columns.iter().map(|c| c.name.as_str()).collect();
    names.join(",")
}

/// Lines joined with `\n`, and a final `\n`.
pub fn lines(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// (line, kind) of every error in the report.
pub fn error_set(report: &Report) -> BTreeSet<(u64, ErrorKind)> {
    report.errors.iter().map(|e| (e.line, e.kind)).collect()
}

/// The report's errors as (line, kind), in report order.
pub fn error_list(report: &Report) -> Vec<(u64, ErrorKind)> {
    report.errors.iter().map(|e| (e.line, e.kind)).collect()
}

/// The one error of a report that must have exactly one.
pub fn single_error(report: &Report) -> &RowError {
    assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
    &report.errors[0]
}

/// A temporary file holding `bytes`.
pub fn temp_file(bytes: &[u8]) -> NamedTempFile {
    let mut f = NamedTempFile::new().expect("temp file");
    f.write_all(bytes).expect("write temp file");
    f.flush().expect("flush temp file");
    f
}

/// Generator options with the fixed date.
pub fn gen_options(rows: u64, error_rate: f64, seed: u64) -> GenOptions {
    GenOptions {
        rows,
        error_rate,
        seed,
        as_of: as_of(),
        ..GenOptions::default()
    }
}

/// Generates a file in memory.
pub fn generate_bytes(pattern: &Pattern, opts: &GenOptions) -> (Vec<u8>, Generated) {
    let mut out = Vec::new();
    let generated = generate(&mut out, pattern, opts).expect("generate");
    (out, generated)
}

/// Generates a file on disk.
pub fn generate_file(pattern: &Pattern, opts: &GenOptions) -> (NamedTempFile, Generated) {
    let mut file = NamedTempFile::new().expect("temp file");
    let generated = generate(file.as_file_mut(), pattern, opts).expect("generate");
    (file, generated)
}

/// The card numbers (first cell of every line) of a pattern-1/3 file.
pub fn card_numbers(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.split(',').next())
        .filter(|c| c.len() >= 12 && c.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// Panics if `text` contains any of `cards` in full.
pub fn assert_no_card_in(text: &str, cards: &[String], what: &str) {
    for c in cards {
        assert!(
            !text.contains(c.as_str()),
            "{what} shows the full card number {c}:\n{text}"
        );
    }
}

/// The `paydrop` binary, with an empty patterns folder so that nothing on
/// the machine changes the built-in patterns.
pub fn paydrop(patterns_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paydrop"));
    cmd.env("PAYDROP_PATTERNS", patterns_dir)
        .env_remove("PAYDROP_LOG");
    cmd
}

/// Runs a command to the end, capturing its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run paydrop")
}

/// Exit code, stdout and stderr of a finished command.
pub fn outcome(out: &Output) -> (i32, String, String) {
    (
        out.status.code().expect("exited normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
