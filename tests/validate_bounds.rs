//! Money bounds (issue 9, item 8): a row above the per-row maximum and a
//! file above the per-file total are refused by validation, before anything
//! is sent, with the line, the masked value, the bound and the setting that
//! sets it. The attack: a card number pasted into the amount column
//! (`4155659970585567.59`) was a valid TRY amount.

mod watch_common;

use std::fs;
use std::path::Path;

use paydrop::bounds::{Bound, Limits};
use paydrop::pattern::Pattern;
use paydrop::validate::{validate_reader, ErrorKind, Hooks, Options, Report};
use watch_common::*;

const PASTED_CARD: &str = "4155659970585567.59";

/// Rows 1–4 of file `seed` with row `n`'s amount replaced.
fn with_amount(seed: u64, n: u64, amount: &str) -> Vec<u8> {
    let mut out = String::new();
    for row in 1..=4 {
        let mut cells = row_cells(seed, row);
        if row == n {
            cells[2] = amount.into();
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

/// `paydrop <args…>` in the rig's folder: exit code and all it printed.
fn run(rig: &Rig, args: &[&str], file: &Path) -> (Option<i32>, String) {
    let out = rig.cli().args(args).arg(file).output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn validate(pattern: &Pattern, file: &[u8], limits: Limits) -> Report {
    let opts = Options {
        limits,
        ..Options::default()
    };
    validate_reader(file, pattern, &opts, Hooks::default()).unwrap()
}

/// Asserts that the report has exactly one error, and that its reason says
/// `wanted`.
fn assert_one_reason(r: &Report, wanted: &str) {
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    let reason = &r.errors[0].reason;
    assert!(reason.contains(wanted), "expected\n{wanted}\nin\n{reason}");
}

/// Bounds with one per-row maximum for every currency.
fn row_max(amount: &str) -> Limits {
    Limits {
        max_row_amount: Some(Bound::All(dec(amount))),
        ..Limits::default()
    }
}

/// Bounds with this per-file total.
fn file_max(bound: Bound) -> Limits {
    Limits {
        max_file_total: Some(bound),
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_number_pasted_in_the_amount_column_is_refused_and_never_sent() {
    let rig = Rig::start().await;
    let file = rig.staging.join("pasted.csv");
    fs::write(&file, with_amount(501, 2, PASTED_CARD)).unwrap();

    let (code, out) = run(&rig, &["validate", "-p", "1"], &file);
    assert_eq!(code, Some(1), "{out}");
    let expected = "line 2, amount '415565******5567.59': is above the maximum TRY 10000000 for \
                    one row (set by the default of [submit] max_row_amount; set it in \
                    paydrop.toml, for every currency or per currency)";
    assert!(out.contains(expected), "expected\n{expected}\nin:\n{out}");
    assert!(!out.contains("4155659970585567"), "{out}");

    let base = rig.sandbox.base_url();
    let (code, out) = run(&rig, &["submit", "-p", "1", "--base", &base], &file);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("nothing was sent"), "{out}");
    assert_eq!(rig.sandbox.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_total_bound_of_the_config_refuses_the_file_before_it_is_sent() {
    let rig = Rig::start().await;
    let file = rig.staging.join("big-total.csv");
    // Four rows: rows 1–2 are within TRY 1,500, row 3 takes the total above.
    let bytes = with_amount(502, 3, "1000.00");
    fs::write(&file, &bytes).unwrap();
    let total_1_2 = dec(&row_amount(502, 1)) + dec(&row_amount(502, 2));
    assert!(total_1_2 < dec("1500") && total_1_2 + dec("1000") > dec("1500"));

    let config = rig.write_config_file("");
    let toml = fs::read_to_string(&config).unwrap().replace(
        "[submit]\n",
        "[submit]\nmax_file_total = { TRY = \"1500\" }\n",
    );
    fs::write(&config, toml).unwrap();
    let config = config.to_str().unwrap();

    let (code, out) = run(&rig, &["--config", config, "validate", "-p", "1"], &file);
    assert_eq!(code, Some(1), "{out}");
    let expected = "line 3, amount '1000.00': takes the file's TRY total to";
    assert!(out.contains(expected), "expected\n{expected}\nin:\n{out}");
    assert!(
        out.contains(
            "above the maximum TRY 1500 for one file (set by [submit] max_file_total.TRY in \
             paydrop.toml): nothing is sent; split the file before this line"
        ),
        "{out}"
    );

    let (code, out) = run(&rig, &["--config", config, "submit", "-p", "1"], &file);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(rig.sandbox.requests(), 0, "checked before anything is sent");

    // Within the bound, the same file goes through.
    let ok = rig.staging.join("small-total.csv");
    fs::write(&ok, with_amount(502, 3, "100.00")).unwrap();
    let (code, out) = run(&rig, &["--config", config, "submit", "-p", "1"], &ok);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn the_lower_of_the_pattern_max_and_the_config_bound_applies_and_is_named() {
    let registry = paydrop::pattern::Registry::load(None).unwrap();
    let p1 = registry.get(1).unwrap();
    let file = with_amount(503, 2, "600.00");

    // The config is lower: it is named.
    let r = validate(p1, &file, row_max("500"));
    assert_one_reason(
        &r,
        "maximum TRY 500 for one row (set by [submit] max_row_amount in paydrop.toml)",
    );
    let e = &r.errors[0];
    assert_eq!((e.line, e.kind), (2, ErrorKind::Range));
    assert_eq!(e.value.as_deref(), Some("600.00"));

    // A pattern whose `max` is lower: the pattern is named.
    let toml = p1
        .to_toml()
        .replace("max = \"999999999.99\"", "max = \"550\"");
    let custom = Pattern::from_toml(&toml, "patterns/1-capped.toml").unwrap();
    let r = validate(&custom, &file, Limits::default());
    assert_one_reason(
        &r,
        "maximum TRY 550 for one row (set by `max` of column amount in pattern 1 \
         (patterns/1-capped.toml))",
    );

    // Built in: no amount has ten integer digits, whatever the config says.
    let huge = Bound::All(rust_decimal::Decimal::MAX);
    let limits = Limits {
        max_row_amount: Some(huge.clone()),
        max_file_total: Some(huge),
    };
    let r = validate(p1, &with_amount(503, 1, "1000000000.00"), limits);
    assert_one_reason(
        &r,
        "maximum TRY 999999999.99 for one row (set by `max` of column amount in pattern 1 \
         (built-in))",
    );
}

#[test]
fn a_total_above_the_bound_is_one_error_on_the_row_that_crosses_it() {
    let registry = paydrop::pattern::Registry::load(None).unwrap();
    let p1 = registry.get(1).unwrap();
    let mut file = Vec::new();
    for n in 1..=6 {
        let mut cells = row_cells(504, n);
        cells[2] = "400.00".into();
        file.extend_from_slice(cells.join(",").as_bytes());
        file.push(b'\n');
    }
    let r = validate(p1, &file, file_max(Bound::All(dec("1000"))));
    assert_one_reason(
        &r,
        "takes the file's TRY total to 1200.00, above the maximum TRY 1000",
    );
    assert_eq!(
        (r.errors[0].line, r.errors[0].kind),
        (3, ErrorKind::FileTotal)
    );
    assert!(!r.is_valid());
    assert_eq!((r.rows_valid, r.rows_invalid), (5, 1));

    // Another currency has its own bound: per currency in the config.
    let per_currency = Bound::PerCurrency([("USD", dec("100"))].into());
    let r = validate(p1, &file, file_max(per_currency));
    assert!(r.is_valid(), "TRY keeps the default: {:?}", r.errors);
}
