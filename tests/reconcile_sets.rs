//! Issues 5 and 10, item 5: reconciling what was sent with what the
//! provider reports, on small inputs where every set is known in advance:
//! the hash join and the external sort-merge must give the same sets and
//! the same exact totals, from CSV, JSON Lines and the ledger alike; rows
//! the provider reports as failed are their own set.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use paydrop::currency::Currency;
use paydrop::ledger::{
    BatchInfo, Ledger, LedgerError, NewBatch, NewSubmission, ResultPage, SentRow, State,
};
use paydrop::pattern::Registry;
use paydrop::reconcile::{
    reconcile, Against, Key, Options, Sent, Summary, DEFAULT_MEMORY, FAILED_CSV, MATCHED_CSV,
    MISMATCH_CSV, MISSING_CSV, UNKNOWN_CSV,
};
use paydrop::results::{Outcome, ResultError, ResultLine};
use paydrop::totals::Tally;
use rust_decimal::Decimal;

const SETS: [&str; 5] = [
    MATCHED_CSV,
    FAILED_CSV,
    MISMATCH_CSV,
    MISSING_CSV,
    UNKNOWN_CSV,
];

/// Sent row `i`: (merchantUniqueCode, amount, card number).
fn sent_row(i: u64) -> (String, Decimal, String) {
    (
        format!("PD-{i:06}"),
        Decimal::new(((i * 7919) % 400_000 + 100) as i64, 2),
        format!("{}", 4_543_600_000_000_000u64 + i),
    )
}

/// A pattern-1 line.
fn pattern1_line(line: u64, key: &str, amount: Decimal, card: &str) -> String {
    format!("{card},12/30,{amount},{line},Ayşe Yılmaz,,,,,{key},,,,,,,\n")
}

fn write_sent(path: &Path, rows: u64) {
    let mut text = String::new();
    for i in 1..=rows {
        let (k, a, c) = sent_row(i);
        text.push_str(&pattern1_line(i, &k, a, &c));
    }
    std::fs::write(path, text).unwrap();
}

/// `1234.56` as `1.234,56`.
fn comma_decimal(d: Decimal) -> String {
    let s = d.to_string();
    let (int, frac) = s.split_once('.').unwrap();
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push('.');
        }
        out.push(c);
    }
    format!("{out},{frac}")
}

/// What the provider side holds and what reconciling must find.
struct Case {
    /// (key, amount as written, status, card), in provider order.
    provider: Vec<(String, String, String, String)>,
    matched: Tally,
    /// Sent amounts of the pairs the provider reports as failed.
    failed: Tally,
    mismatch_sent: Tally,
    mismatch_provider: Decimal,
    missing: Tally,
    unknown: Tally,
}

/// Every 50th row missing, every 70th (+1) charged 0.01 more, every 11th
/// reported FAILED (or REFUNDED, every 13th), seven payments nobody sent
/// and one charged twice; written backwards, a third of the amounts with
/// decimal commas.
fn case(rows: u64) -> Case {
    let mut c = Case {
        provider: Vec::new(),
        matched: Tally::default(),
        failed: Tally::default(),
        mismatch_sent: Tally::default(),
        mismatch_provider: Decimal::ZERO,
        missing: Tally::default(),
        unknown: Tally::default(),
    };
    let cent = Decimal::new(1, 2);
    for i in (1..=rows).rev() {
        let (key, amount, card) = sent_row(i);
        if i % 50 == 0 {
            c.missing.add(amount).unwrap();
            continue;
        }
        let status = if i % 11 == 0 {
            "FAILED"
        } else if i % 13 == 0 {
            "Refunded"
        } else {
            "SUCCESS"
        };
        let charged = if i % 70 == 1 { amount + cent } else { amount };
        if status != "SUCCESS" {
            c.failed.add(amount).unwrap();
        } else if i % 70 == 1 {
            c.mismatch_sent.add(amount).unwrap();
            c.mismatch_provider += amount + cent;
        } else {
            c.matched.add(amount).unwrap();
        }
        let written = if i % 3 == 0 {
            comma_decimal(charged)
        } else {
            charged.to_string()
        };
        c.provider.push((
            key,
            written,
            status.into(),
            format!("{}******{}", &card[..6], &card[12..]),
        ));
    }
    for k in 1..=7 {
        let amount = Decimal::new(k * 100 + 5, 2);
        c.unknown.add(amount).unwrap();
        c.provider.push((
            format!("XX-{k}"),
            amount.to_string(),
            "SUCCESS".into(),
            String::new(),
        ));
    }
    let (key, amount, _) = sent_row(3);
    c.unknown.add(amount).unwrap();
    c.provider
        .push((key, amount.to_string(), "SUCCESS".into(), String::new()));
    c
}

fn write_provider_csv(path: &Path, c: &Case) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record([
        "payzeeTrnOrderId",
        "trnAmount",
        "payzeeCurrencyCode",
        "maskedCardNumber",
        "trnStatus",
    ])
    .unwrap();
    for (k, a, s, card) in &c.provider {
        w.write_record([k.as_str(), a, "949", card, s]).unwrap();
    }
    w.flush().unwrap();
}

fn write_provider_jsonl(path: &Path, c: &Case) {
    let mut text = String::new();
    for (k, a, s, card) in &c.provider {
        let v = serde_json::json!({"payzeeTrnOrderId": k, "trnAmount": a, "currency": "TRY",
            "maskedCardNumber": card, "trnStatus": s});
        writeln!(text, "{v}").unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn sent_file(path: &Path) -> Sent {
    Sent::File {
        path: path.to_path_buf(),
        pattern: Registry::load(None).unwrap().get(1).unwrap().clone(),
        currency: Currency::lookup("TRY").unwrap(),
    }
}

fn against(path: &Path) -> Against {
    Against {
        path: path.to_path_buf(),
        key_column: None,
        amount_column: None,
    }
}

fn run(sent: Sent, provider: &Path, memory: usize, out: &Path) -> Summary {
    let opts = Options {
        key: Key::MerchantUniqueCode,
        memory,
        out_dir: out.to_path_buf(),
    };
    reconcile(sent, against(provider), &opts).unwrap()
}

/// The lines of each output set, sorted (the two join methods write them in
/// different orders).
fn sets(dir: &Path) -> BTreeMap<&'static str, BTreeSet<String>> {
    SETS.iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            (*name, text.lines().map(str::to_string).collect())
        })
        .collect()
}

fn try_only(s: &BTreeMap<String, Tally>) -> Tally {
    assert_eq!(s.keys().collect::<Vec<_>>(), ["TRY"], "{s:?}");
    s["TRY"].clone()
}

fn assert_totals(s: &Summary, c: &Case) {
    assert_eq!(try_only(&s.matched), c.matched);
    assert_eq!(try_only(&s.failed_at_provider), c.failed);
    assert_eq!(try_only(&s.missing_at_provider), c.missing);
    assert_eq!(try_only(&s.unknown_at_provider), c.unknown);
    let m = &s.amount_mismatch["TRY"];
    assert_eq!(
        (m.rows, m.sent, m.provider),
        (
            c.mismatch_sent.rows,
            c.mismatch_sent.amount,
            c.mismatch_provider
        )
    );
    assert_eq!(
        s.attention(),
        c.failed.rows + c.missing.rows + c.unknown.rows + c.mismatch_sent.rows
    );
    assert!(!s.reconciled());
    let text = s.text();
    assert!(!text.contains("DOES NOT ADD UP"), "{text}");
    assert!(text.contains("NOT RECONCILED"), "{text}");
}

#[test]
fn every_set_is_found_with_exact_totals_by_both_join_methods() {
    const ROWS: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let sent = dir.path().join("sent.csv");
    let provider = dir.path().join("provider.csv");
    write_sent(&sent, ROWS);
    let c = case(ROWS);
    write_provider_csv(&provider, &c);

    let hashed = dir.path().join("hash");
    let s1 = run(sent_file(&sent), &provider, DEFAULT_MEMORY, &hashed);
    assert!(s1.method.starts_with("hash join"), "{}", s1.method);
    assert_totals(&s1, &c);
    // A budget of a few records: both sides go to disk in many runs.
    let sorted = dir.path().join("sorted");
    let s2 = run(sent_file(&sent), &provider, 16 * 1024, &sorted);
    assert!(
        s2.method.starts_with("external sort-merge"),
        "{}",
        s2.method
    );
    assert_totals(&s2, &c);
    assert!(sets(&hashed) == sets(&sorted), "the two methods disagree");

    let by_name = sets(&sorted);
    assert_eq!(by_name[MISSING_CSV].len() as u64, c.missing.rows + 1);
    let a50 = sent_row(50).1;
    assert!(by_name[MISSING_CSV].contains(&format!("PD-000050,TRY,{a50},line 50,454360******0050")));
    let a71 = sent_row(71).1;
    let cent = Decimal::new(1, 2);
    let want = format!("PD-000071,TRY,{a71},TRY,{},0.01,line 71,", a71 + cent);
    assert!(
        by_name[MISMATCH_CSV].iter().any(|l| l.starts_with(&want)),
        "{want}"
    );
    assert!(
        by_name[UNKNOWN_CSV]
            .iter()
            .any(|l| l.starts_with("PD-000003,TRY,")),
        "charged twice"
    );
    // A failed payment is its own set, never matched.
    let a11 = sent_row(11).1;
    let want = format!("PD-000011,TRY,{a11},line 11,");
    assert!(by_name[FAILED_CSV]
        .iter()
        .any(|l| l.starts_with(&want) && l.contains(",FAILED,454360******0011,")));
    assert!(!by_name[MATCHED_CSV]
        .iter()
        .any(|l| l.starts_with("PD-000011,")));
    assert!(!s2.matched_by_status.contains_key("FAILED"));
    assert_eq!(
        s2.failed_by_status["Refunded"]["TRY"].rows + s2.failed_by_status["FAILED"]["TRY"].rows,
        c.failed.rows
    );
    let written = std::fs::read_to_string(sorted.join("summary.txt")).unwrap();
    assert_eq!(written, s2.text());
    // Full card numbers of the sent file never reach the output.
    for set in SETS {
        let text = std::fs::read_to_string(sorted.join(set)).unwrap();
        assert!(!text.contains("4543600000000"), "{set}");
    }
}

#[test]
fn json_lines_reports_give_the_same_sets() {
    const ROWS: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let sent = dir.path().join("sent.csv");
    write_sent(&sent, ROWS);
    let c = case(ROWS);
    let (csv, jsonl) = (dir.path().join("p.csv"), dir.path().join("p.jsonl"));
    write_provider_csv(&csv, &c);
    write_provider_jsonl(&jsonl, &c);
    let a = run(
        sent_file(&sent),
        &csv,
        DEFAULT_MEMORY,
        &dir.path().join("a"),
    );
    let b = run(sent_file(&sent), &jsonl, 8 * 1024, &dir.path().join("b"));
    assert_totals(&b, &c);
    assert_eq!(a.matched, b.matched);
    // The same rows; only the provider's line numbers differ (no header).
    let keys = |d: &str| -> BTreeMap<&str, BTreeSet<String>> {
        sets(&dir.path().join(d))
            .into_iter()
            .map(|(name, lines)| {
                let keys = lines
                    .iter()
                    .map(|l| l.split(',').next().unwrap().to_string());
                (name, keys.collect())
            })
            .collect()
    };
    assert!(keys("a") == keys("b"));
}

/// Runs the binary in `dir` with `args` (split at spaces).
fn paydrop(args: &str, dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paydrop"))
        .current_dir(dir)
        .env_remove("PAYDROP_CONFIG")
        .env_remove("PAYDROP_LEDGER")
        .args(args.split(' '))
        .output()
        .unwrap()
}

#[test]
fn the_command_line_exits_1_until_everything_matches() {
    let dir = tempfile::tempdir().unwrap();
    write_sent(&dir.path().join("sent.csv"), 300);
    let c = case(300);
    write_provider_csv(&dir.path().join("report.csv"), &c);
    let out = paydrop(
        "reconcile --sent sent.csv -p 1 --against report.csv -o rec --memory-mb 1",
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!(
        "NOT RECONCILED: {} rows need attention ({} failed at the provider, {} missing at the \
         provider, {} unknown at the provider, {} with another amount)",
        c.failed.rows + c.missing.rows + c.unknown.rows + c.mismatch_sent.rows,
        c.failed.rows,
        c.missing.rows,
        c.unknown.rows,
        c.mismatch_sent.rows
    );
    assert!(stdout.contains(&want), "{stdout}");
    assert!(dir.path().join("rec/summary.json").exists());

    // The provider's report of exactly what was sent.
    let mut w = csv::Writer::from_path(dir.path().join("same.csv")).unwrap();
    w.write_record(["merchantUniqueCode", "amount"]).unwrap();
    for i in 1..=300 {
        let (k, a, _) = sent_row(i);
        w.write_record([k, a.to_string()]).unwrap();
    }
    w.flush().unwrap();
    let out = paydrop(
        "reconcile --sent sent.csv -p 1 --against same.csv -o ok",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("RECONCILED: all 300 rows matched"));

    let out = paydrop("reconcile --sent sent.csv --against same.csv", dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give its FilePattern with --pattern N"));
    let out = paydrop(
        "reconcile --sent sent.csv -p 1 --against sent.csv",
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no key column") && stderr.contains("--against-key-column"),
        "{stderr}"
    );
}

/// A ledger with one batch of two accepted parts: the first with its result
/// file (one payment declined), the second still waiting for it.
fn ledger_with_batch(dir: &Path) -> (PathBuf, PathBuf) {
    let file = dir.join("batch.csv");
    write_sent(&file, 5);
    let amount = |r: std::ops::RangeInclusive<u64>| r.map(|i| sent_row(i).1).sum::<Decimal>();
    let path = dir.join("ledger.db");
    let mut ledger = Ledger::open(&path).unwrap();
    let batch = ledger
        .create_batch(&NewBatch {
            info: BatchInfo {
                sha256: "ab".repeat(32),
                file: file.display().to_string(),
                rows: 5,
                amount: amount(1..=5),
                ..BatchInfo::default()
            },
            parts: vec![
                NewSubmission {
                    part: 1,
                    first_row: 1,
                    merchant_unique_code: "pd-ab-1of2".into(),
                    rows: 3,
                    amount: amount(1..=3),
                },
                NewSubmission {
                    part: 2,
                    first_row: 4,
                    merchant_unique_code: "pd-ab-2of2".into(),
                    rows: 2,
                    amount: amount(4..=5),
                },
            ],
        })
        .unwrap();
    for (i, s) in batch.submissions.iter().enumerate() {
        ledger
            .settle(s.id, State::Accepted, Some(100 + i as i64), "ok", None)
            .unwrap();
    }
    for (s, rows) in batch.submissions.iter().zip([1..=3u64, 4..=5]) {
        let rows = rows.map(|i| {
            let (key, amount, _) = sent_row(i);
            Ok::<_, LedgerError>(SentRow::with_code(i as i64, key, amount))
        });
        ledger.record_sent_rows(s.id, rows).unwrap();
    }
    let first = ledger.submission_by_code("pd-ab-1of2").unwrap().unwrap();
    let lines = (1..=3u64).map(|i| {
        let (key, amount, _) = sent_row(i);
        Ok::<_, ResultError>(ResultLine {
            file_line: i,
            line_number: i as i64,
            merchant_unique_code: key,
            amount,
            outcome: if i == 2 {
                Outcome::Declined
            } else {
                Outcome::Paid
            },
            status_id: Some(if i == 2 { 5 } else { 4 }),
            error_code: if i == 2 { "51".into() } else { String::new() },
            error_message: String::new(),
        })
    });
    let page = ResultPage {
        number: 1,
        total: Some(1),
        has_more: Some(false),
        error_message: None,
    };
    ledger.record_result_page(&first, &page, lines).unwrap();
    (path, file)
}

#[test]
fn the_ledger_expects_approved_results_and_unanswered_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = ledger_with_batch(dir.path());
    let provider = dir.path().join("report.csv");
    let mut w = csv::Writer::from_path(&provider).unwrap();
    w.write_record(["payzeeTrnOrderId", "trnAmount"]).unwrap();
    for i in [5u64, 3, 1] {
        let (k, a, _) = sent_row(i);
        w.write_record([k, a.to_string()]).unwrap();
    }
    w.flush().unwrap();
    let sent = || Sent::Ledger {
        path: ledger.clone(),
        registry: Registry::load(None).unwrap(),
        batches: Vec::new(),
    };
    for memory in [DEFAULT_MEMORY, 1024] {
        let out = dir.path().join(format!("out-{memory}"));
        let s = run(sent(), &provider, memory, &out);
        assert_eq!(try_only(&s.matched).rows, 3);
        let missing = try_only(&s.missing_at_provider);
        assert_eq!((missing.rows, missing.amount), (1, sent_row(4).1));
        assert!(s.unknown_at_provider.is_empty());
        let notes = s.notes.join("\n");
        assert!(notes.contains("batch 1 part 1: 1 payments"), "{notes}");
        assert!(
            notes.contains("batch 1 part 2: no result file yet"),
            "{notes}"
        );
        let missing = std::fs::read_to_string(out.join(MISSING_CSV)).unwrap();
        assert!(
            missing.contains("PD-000004,TRY,") && missing.contains(",batch 1 line 4,"),
            "{missing}"
        );
    }
    let opts = Options {
        key: Key::OrderId,
        memory: DEFAULT_MEMORY,
        out_dir: dir.path().join("x"),
    };
    let e = reconcile(sent(), against(&provider), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("use --key merchantUniqueCode"), "{e}");
}

#[test]
fn a_result_file_without_currencies_still_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let sent = dir.path().join("sent.csv");
    write_sent(&sent, 10);
    // The provider's result file: rows 1–9, row 4 declined, no header.
    let mut text = String::new();
    for i in 1..=9u64 {
        let (key, amount, _) = sent_row(i);
        // PaymentStatusId 4 successful, 5 failed (the provider's "Payment Statuses").
        let (status, bank) = if i == 4 { (5, "51") } else { (4, "00") };
        writeln!(
            text,
            "1,{i},2026-11-25 20:00:00,{key},,Ayşe,454360******0001,12/30,{amount},1,Sandbox,1,,0,,,{bank},x,1,{status}"
        )
        .unwrap();
    }
    let results = dir.path().join("result-3467.csv");
    std::fs::write(&results, text).unwrap();
    for memory in [DEFAULT_MEMORY, 1024] {
        let s = run(
            sent_file(&sent),
            &results,
            memory,
            &dir.path().join(format!("o{memory}")),
        );
        assert!(
            s.provider.label.contains("result file"),
            "{}",
            s.provider.label
        );
        assert_eq!(try_only(&s.matched).rows, 8);
        assert_eq!(try_only(&s.missing_at_provider).amount, sent_row(10).1);
        let failed = try_only(&s.failed_at_provider);
        assert_eq!((failed.rows, failed.amount), (1, sent_row(4).1));
        assert_eq!(s.failed_by_status["declined"]["TRY"].amount, sent_row(4).1);
        let text = s.text();
        assert!(!text.contains("DOES NOT ADD UP"), "{text}");
        assert!(text.contains("check     provider (none): 9 rows"), "{text}");
    }
}

#[test]
fn a_failed_run_leaves_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let sent = dir.path().join("sent.csv");
    write_sent(&sent, 200);
    let mut c = case(200);
    // A broken amount far into the provider's file.
    c.provider[150].1 = "12,34,5".into();
    let provider = dir.path().join("provider.csv");
    write_provider_csv(&provider, &c);
    let out = dir.path().join("out");
    for memory in [DEFAULT_MEMORY, 1024] {
        let opts = Options {
            key: Key::MerchantUniqueCode,
            memory,
            out_dir: out.clone(),
        };
        let e = reconcile(sent_file(&sent), against(&provider), &opts).unwrap_err();
        assert!(format!("{e:#}").contains("12,34,5"), "{e:#}");
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
