//! Issue 2: on generated files the validator reports exactly the errors the
//! generator planted (same lines, same kinds, nothing more) and the same
//! exact totals.

mod common;

use std::collections::BTreeSet;

use common::*;
use paydrop::pattern::Pattern;
use paydrop::validate::{validate_file, ErrorKind, Hooks, Report};
use paydrop_generate::{GenOptions, Generated};

fn planted_set(g: &Generated) -> BTreeSet<(u64, ErrorKind)> {
    g.planted.iter().map(|p| (p.line, p.kind)).collect()
}

/// Generates, validates from disk, and checks the report against the plan.
fn round_trip(pattern: &Pattern, opts: &GenOptions) -> (Generated, Report) {
    let (file, generated) = generate_file(pattern, opts);
    let report = validate_file(file.path(), pattern, &options(), Hooks::default()).unwrap();
    let expected_errors = (opts.rows as f64 * opts.error_rate).round() as usize;
    assert_eq!(generated.planted.len(), expected_errors);
    // One error per planted row: no row is reported twice, none is missed.
    assert_eq!(planted_set(&generated).len(), generated.planted.len());
    assert_eq!(error_set(&report), planted_set(&generated));
    assert_eq!(report.errors.len(), generated.planted.len());
    assert_eq!(report.errors_total, generated.planted.len() as u64);
    assert_eq!(report.rows_read, opts.rows);
    assert_eq!(report.rows_invalid, generated.planted.len() as u64);
    assert_eq!(
        report.rows_valid,
        opts.rows - generated.planted.len() as u64
    );
    assert_eq!(report.totals, generated.totals);
    (generated, report)
}

#[test]
fn pattern_1_reports_exactly_the_planted_errors_and_totals() {
    let opts = gen_options(20_000, 0.01, 20_260_315);
    let (generated, report) = round_trip(&builtin(1), &opts);
    assert_eq!(generated.planted.len(), 200);
    assert!(!report.header_row);
    // The plan is varied enough to mean something.
    let kinds: BTreeSet<ErrorKind> = generated.planted.iter().map(|p| p.kind).collect();
    assert!(kinds.len() >= 12, "{kinds:?}");
    for kind in [
        ErrorKind::Luhn,
        ErrorKind::Expired,
        ErrorKind::Duplicate,
        ErrorKind::ColumnCount,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} never planted: {kinds:?}");
    }
    // Duplicates know where their code was first used.
    for e in report
        .errors
        .iter()
        .filter(|e| e.kind == ErrorKind::Duplicate)
    {
        assert!(
            e.reason
                .starts_with("merchantUniqueCode is also used on line "),
            "{e}"
        );
    }
}

#[test]
fn pattern_3_with_a_header_reports_exactly_the_planted_errors_and_totals() {
    let opts = GenOptions {
        header: Some(true),
        ..gen_options(20_000, 0.01, 3)
    };
    let (generated, report) = round_trip(&builtin(3), &opts);
    assert!(report.header_row);
    // The header is line 1: planted rows are numbered from line 2.
    assert!(generated.planted.iter().all(|p| p.line >= 2));
    assert!(generated
        .planted
        .iter()
        .any(|p| p.kind == ErrorKind::TrIdentity));
    assert!(generated
        .planted
        .iter()
        .any(|p| p.kind == ErrorKind::CardNumber));
}

#[test]
fn pattern_3_files_carry_card_parts_and_both_kinds_of_identity_number() {
    let mut out = Vec::new();
    let pattern = builtin(3);
    paydrop_generate::generate(&mut out, &pattern, &gen_options(200, 0.0, 4)).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lengths = BTreeSet::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 18, "{line}");
        assert_eq!((cells[0].len(), cells[1].len()), (8, 4), "{line}");
        assert!(cells[..3]
            .iter()
            .all(|c| c.bytes().all(|b| b.is_ascii_digit())));
        lengths.insert(cells[2].len());
    }
    assert_eq!(lengths, [10, 11].into(), "both VKN and TCKN");
    let report = validate_bytes(text.as_bytes(), &pattern, &options());
    assert!(report.unwrap().is_valid());
}

#[test]
fn many_seeds_and_rates_agree_with_the_plan() {
    for seed in 1..=6 {
        for (pattern, rate) in [(1, 0.05), (3, 0.2), (1, 0.5)] {
            round_trip(&builtin(pattern), &gen_options(1_000, rate, seed));
        }
    }
}

#[test]
fn a_clean_file_is_valid() {
    let (_, report) = round_trip(&builtin(1), &gen_options(5_000, 0.0, 9));
    assert!(report.is_valid());
    assert!(report.warnings.is_empty());
}

#[test]
fn windows_line_endings_keep_the_planted_lines() {
    let pattern = builtin(1);
    let opts = GenOptions {
        header: Some(true),
        ..gen_options(5_000, 0.02, 77)
    };
    let (bytes, generated) = generate_bytes(&pattern, &opts);
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains('\r'));
    let file = temp_file(text.replace('\n', "\r\n").as_bytes());
    let report = validate_file(file.path(), &pattern, &options(), Hooks::default()).unwrap();
    assert_eq!(error_set(&report), planted_set(&generated));
    assert_eq!(report.totals, generated.totals);
}

#[test]
fn a_windows_1254_pattern_with_decimal_commas_round_trips() {
    let src = r#"
id = 40
name = "Bank export"
delimiter = ";"
header = true
encoding = "windows-1254"
decimal_separator = ","

[[columns]]
name = "kart"
type = "card_number"

[[columns]]
name = "son_kullanma"
type = "card_expiry"

[[columns]]
name = "ad"
type = "string"
max_len = 40

[[columns]]
name = "tutar"
type = "decimal"
scale = 2
min = "0.01"
amount = true

[[columns]]
name = "sira"
type = "integer"
min = 1
line_number = true

[[columns]]
name = "referans"
type = "string"
unique = true
"#;
    let pattern = Pattern::from_toml(src, "bank.toml").unwrap();
    let (generated, report) = round_trip(&pattern, &gen_options(3_000, 0.03, 1254));
    assert!(report.header_row);
    assert!(!generated.totals.iter().next().unwrap().amount.is_zero());
}
