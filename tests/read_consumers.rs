//! Issue 12, item 3: one reading of a payment file. The same tricky files
//! (CR-only, CRLF, a byte-order mark, a header found by the pattern's `auto`
//! rule, blank lines, no final newline) go through every consumer of
//! `paydrop::read` — validate, the retry-file writer, reconcile — and each
//! must see the same rows on the same lines.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use paydrop::currency::Currency;
use paydrop::pattern::{Pattern, Registry};
use paydrop::read::DEFAULT_MAX_LINE_BYTES;
use paydrop::reconcile::{reconcile, Against, Key, Options, Sent, DEFAULT_MEMORY, MATCHED_CSV};
use paydrop::results::RetryWriter;
use paydrop::validate::{validate_file, ErrorKind, Hooks, Options as ValidateOptions};

/// Pattern-1 row `i` (1-based): its code is `MUC-{i}`, its amount `{i}0.00`.
fn row(i: u64) -> String {
    format!("4506349116543218,12/30,{i}0.00,{i},Ayşe Yılmaz,T{i},,,,MUC-{i},,,,,,,")
}

fn header(pattern: &Pattern) -> String {
    let names: Vec<&str> = pattern.columns.iter().map(|c| c.name.as_str()).collect();
    names.join(",")
}

/// A file, and the lines its rows 1, 2 and 3 stand on.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    lines: [u64; 3],
    header: bool,
}

fn cases(pattern: &Pattern) -> Vec<Case> {
    let h = header(pattern);
    let (r1, r2, r3) = (row(1), row(2), row(3));
    let case = |name, text: String, lines, header| Case {
        name,
        bytes: text.into_bytes(),
        lines,
        header,
    };
    vec![
        case(
            "LF, header",
            format!("{h}\n{r1}\n{r2}\n{r3}\n"),
            [2, 3, 4],
            true,
        ),
        case(
            "CRLF, header, blank lines",
            format!("{h}\r\n\r\n{r1}\r\n{r2}\r\n\r\n{r3}\r\n"),
            [3, 4, 6],
            true,
        ),
        case(
            "CR only, no final newline",
            format!("{r1}\r{r2}\r{r3}"),
            [1, 2, 3],
            false,
        ),
        case(
            "CR only, header, blank line",
            format!("{h}\r\r{r1}\r{r2}\r{r3}\r"),
            [3, 4, 5],
            true,
        ),
        case(
            "BOM, header, no final newline",
            format!("\u{feff}{h}\n{r1}\n{r2}\n{r3}"),
            [2, 3, 4],
            true,
        ),
        case(
            "BOM, no header",
            format!("\u{feff}{r1}\n{r2}\n{r3}\n"),
            [1, 2, 3],
            false,
        ),
        case(
            "blank lines before, between and after",
            format!("\n{r1}\n\n\n{r2}\n{r3}\n\n"),
            [2, 5, 6],
            false,
        ),
        case(
            "mixed line ends",
            format!("{h}\r\n{r1}\r{r2}\n\r\n{r3}"),
            [2, 3, 5],
            true,
        ),
    ]
}

/// validate: every row valid, with its code; then, with every card expired,
/// the line of each row (its error names it).
fn through_validate(path: &Path, pattern: &Pattern, case: &Case) -> Vec<(String, u64)> {
    let mut codes = Vec::new();
    let mut on_row = |r: &paydrop::validate::ValidRow<'_>| {
        codes.push(r.code.as_deref().unwrap_or_default().to_string());
    };
    let hooks = Hooks {
        on_row: Some(&mut on_row),
        ..Hooks::default()
    };
    let report = validate_file(path, pattern, &ValidateOptions::default(), hooks).unwrap();
    assert_eq!(report.errors, [], "{}", case.name);
    assert_eq!(report.rows_valid, 3, "{}", case.name);
    assert_eq!(report.header_row, case.header, "{}", case.name);

    let expired = ValidateOptions {
        as_of: NaiveDate::from_ymd_opt(2100, 1, 1).unwrap(),
        ..ValidateOptions::default()
    };
    let report = validate_file(path, pattern, &expired, Hooks::default()).unwrap();
    let lines: Vec<u64> = report
        .errors
        .iter()
        .filter(|e| e.kind == ErrorKind::Expired)
        .map(|e| e.line)
        .collect();
    assert_eq!(lines.len(), 3, "{}: {:?}", case.name, report.errors);
    codes.into_iter().zip(lines).collect()
}

/// The retry writer, asked for every row: the line each was found on, and
/// the codes it wrote (without the retry suffix).
fn through_retry_writer(path: &Path, pattern: &Pattern, case: &Case) -> Vec<(String, u64)> {
    let out = path.with_extension("retry.csv");
    let mut writer = RetryWriter::create(path, pattern, 1, &out, DEFAULT_MAX_LINE_BYTES).unwrap();
    let lines: Vec<u64> = (1..=3).map(|n| writer.push(n).unwrap()).collect();
    assert_eq!(writer.finish().unwrap().rows, 3, "{}", case.name);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut written: Vec<&str> = text.lines().collect();
    if case.header {
        assert_eq!(
            written.remove(0),
            header(pattern),
            "{}: the header",
            case.name
        );
    }
    let code_col = pattern.payment_code_column().unwrap();
    let codes = written.iter().map(|l| {
        let code = l.split(',').nth(code_col).unwrap();
        code.strip_suffix("-R1").unwrap().to_string()
    });
    codes.zip(lines).collect()
}

/// reconcile against a provider report of the same payments: every row
/// matched, each with the line it was sent on.
fn through_reconcile(path: &Path, pattern: &Pattern, case: &Case) -> Vec<(String, u64)> {
    let dir = path.parent().unwrap();
    let provider = dir.join("provider.csv");
    std::fs::write(
        &provider,
        "merchantUniqueCode,amount\nMUC-3,30.00\nMUC-1,10.00\nMUC-2,20.00\n",
    )
    .unwrap();
    let out_dir = dir.join("reconciled");
    let summary = reconcile(
        Sent::File {
            path: path.to_path_buf(),
            pattern: pattern.clone(),
            currency: Currency::lookup("TRY").unwrap(),
        },
        Against {
            path: provider,
            key_column: None,
            amount_column: None,
        },
        &Options {
            key: Key::MerchantUniqueCode,
            memory: DEFAULT_MEMORY,
            out_dir: out_dir.clone(),
        },
    )
    .unwrap();
    assert!(summary.reconciled(), "{}: {}", case.name, summary.text());
    let mut matched = csv::Reader::from_path(out_dir.join(MATCHED_CSV)).unwrap();
    let mut by_code = BTreeMap::new();
    for rec in matched.records() {
        let rec = rec.unwrap();
        let line = rec[3]
            .strip_prefix("line ")
            .unwrap()
            .parse::<u64>()
            .unwrap();
        by_code.insert(rec[0].to_string(), line);
    }
    by_code.into_iter().collect()
}

#[test]
fn every_consumer_sees_the_same_rows_on_the_same_lines() {
    let registry = Registry::load(None).unwrap();
    let pattern = registry.get(1).unwrap();
    for case in cases(pattern) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payments.csv");
        std::fs::write(&path, &case.bytes).unwrap();
        let want: Vec<(String, u64)> = (1..=3)
            .map(|i| (format!("MUC-{i}"), case.lines[i as usize - 1]))
            .collect();
        assert_eq!(
            through_validate(&path, pattern, &case),
            want,
            "validate: {}",
            case.name
        );
        assert_eq!(
            through_retry_writer(&path, pattern, &case),
            want,
            "the retry writer: {}",
            case.name
        );
        assert_eq!(
            through_reconcile(&path, pattern, &case),
            want,
            "reconcile: {}",
            case.name
        );
    }
}

/// The pattern's header rule is followed by every consumer: with `present`,
/// the first row is the header whatever it holds (validate reports it, the
/// retry writer copies it, row 1 is the next line).
#[test]
fn the_header_rule_is_the_patterns_everywhere() {
    let registry = Registry::load(None).unwrap();
    let mut pattern = registry.get(1).unwrap().clone();
    // `present`: the first row is the header even when it names no column.
    pattern.header = paydrop::pattern::Header::Present;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payments.csv");
    // Names of no column, but as many as the pattern has.
    let names: Vec<String> = (1..=pattern.columns.len())
        .map(|i| format!("h{i}"))
        .collect();
    let odd = names.join(",");
    let text = format!("{odd}\n{}\n{}\n{}\n", row(1), row(2), row(3));
    std::fs::write(&path, text).unwrap();
    let report = validate_file(
        &path,
        &pattern,
        &ValidateOptions::default(),
        Hooks::default(),
    )
    .unwrap();
    assert!(report.header_row);
    assert_eq!(report.rows_read, 3);
    assert_eq!(report.errors[0].kind, ErrorKind::Header);

    let out = dir.path().join("retry.csv");
    let mut writer = RetryWriter::create(&path, &pattern, 1, &out, DEFAULT_MAX_LINE_BYTES).unwrap();
    assert_eq!(writer.push(1).unwrap(), 2, "row 1 is on line 2");
    writer.finish().unwrap();
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.starts_with(&format!("{odd}\n")), "{written}");
}
