//! Issue 5 item 2: payout exports end to end against the sandbox — queue,
//! poll, stream the blob (plain, gzip, resumed with Range) and total it
//! exactly; rows written as CSV or JSON Lines; the headers of every call.

mod common_export;

use common_export::*;
use paydrop::export::{ExportError, Format, Sink};
use paydrop_sandbox::export::{Encoding, Schema};
use rust_decimal::Decimal;

/// The Earnings – Payments schema's columns, as the sandbox writes them.
fn columns() -> &'static [&'static str] {
    Schema::EarningsPayments.columns()
}

#[tokio::test]
async fn csv_and_tsv_totals_equal_the_generated_sums() {
    for format in [Format::Csv, Format::Tsv] {
        let sandbox = spawn(generated(3000, 7)).await;
        let summary = export(&sandbox, format, &mut Sink::Discard).await.unwrap();
        assert_matches(&summary, &expected(7, 3000));
        assert_eq!(summary.columns.len(), columns().len());
        // Every column no role uses passes through.
        assert_eq!(summary.extra_columns.len(), columns().len() - 6);
    }
}

#[tokio::test]
async fn the_binary_prints_exact_totals() {
    let want = expected(11, 2500);
    for format in ["csv", "tsv"] {
        let sandbox = spawn(generated(2500, 11)).await;
        let (code, out, err, _) = export_cli(&sandbox, &["--summary", "--format", format]).await;
        assert_eq!(code, 0, "{err}");
        let printed = collapse(&out);
        assert!(printed[0].contains(": 2500 rows, 18 columns, "), "{out}");
        for line in summary_lines(&want) {
            assert!(
                printed.contains(&line),
                "{format}: missing '{line}' in\n{out}"
            );
        }
        for title in [
            "paymentStatus",
            "programName",
            "paymentCurrencyCode",
            "month",
        ] {
            assert!(printed.iter().any(|l| l == title), "{out}");
        }
    }
}

#[tokio::test]
async fn gzip_is_unpacked_by_magic_bytes_and_by_content_encoding() {
    for encoding in [Encoding::GzipFile, Encoding::GzipEncoded] {
        let mut c = generated(4000, 3);
        c.export.encoding = encoding;
        let sandbox = spawn(c).await;
        let summary = export(&sandbox, Format::Csv, &mut Sink::Discard)
            .await
            .unwrap();
        assert_matches(&summary, &expected(3, 4000));
    }
}

#[tokio::test]
async fn a_download_cut_off_midway_resumes_with_range() {
    for encoding in [
        Encoding::Plain,
        Encoding::GzipFile,
        Encoding::Zip { entries: 2 },
    ] {
        let mut c = generated(20_000, 5);
        c.export.encoding = encoding;
        let sandbox = spawn(c).await;
        sandbox.export_faults().drop_mid_blob.set(1);
        let summary = export(&sandbox, Format::Csv, &mut Sink::Discard)
            .await
            .unwrap();
        assert_matches(&summary, &expected(5, 20_000));
        let ranges = sandbox.export_ranges();
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        assert_eq!(ranges[0], None);
        assert!(
            ranges[1].is_some_and(|start| start > 0),
            "{encoding:?}: {ranges:?}"
        );
    }
}

#[tokio::test]
async fn without_range_support_a_cut_off_download_is_a_clear_error() {
    let mut c = generated(20_000, 5);
    c.export.ranges = false;
    let sandbox = spawn(c).await;
    sandbox.export_faults().drop_mid_blob.set(1);
    let e = export(&sandbox, Format::Csv, &mut Sink::Discard)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ExportError::Download(_)), "{text}");
    assert!(
        text.contains("does not support resuming") && text.contains("run the command again"),
        "{text}"
    );
    assert!(
        !text.contains("sig="),
        "the blob's signature leaked: {text}"
    );
}

#[tokio::test]
async fn rows_are_written_as_csv_or_json_lines() {
    let rows = 1500;
    let want = expected(9, rows);
    let total: Decimal = want.by["currency"]
        .values()
        .flat_map(|per| per.values())
        .map(|t| t.1)
        .sum();
    let sandbox = spawn(generated(rows, 9)).await;
    let (code, out, err, dir) = export_cli(&sandbox, &["--format", "tsv", "-o", "rows.csv"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{rows} rows")), "{out}");
    let mut reader = csv::Reader::from_path(dir.path().join("rows.csv")).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, columns());
    let at = |name: &str| columns().iter().position(|c| *c == name).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len() as u64, rows);
    let sum: Decimal = records
        .iter()
        .map(|r| r[at("totalPayment")].parse::<Decimal>().unwrap())
        .sum();
    assert_eq!(sum, total);
    let name = at("participantName");
    assert!(
        records.iter().any(|r| &r[name] == "Northwind\r\nTraders")
            && records.iter().any(|r| &r[name] == "Tailspin\tToys"),
        "names with line breaks and tabs survive the re-encoding"
    );

    let mut cmd = paydrop(&sandbox, dir.path());
    cmd.args([
        "export",
        "payments",
        "-o",
        "rows.jsonl",
        "--out-format",
        "jsonl",
    ]);
    let (code, _, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(dir.path().join("rows.jsonl")).unwrap();
    let objects: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len() as u64, rows);
    let sum: Decimal = objects
        .iter()
        .map(|o| {
            o["totalPayment"]
                .as_str()
                .unwrap()
                .parse::<Decimal>()
                .unwrap()
        })
        .sum();
    assert_eq!(sum, total, "amounts are exact strings");
    assert_eq!(objects[0]["paymentID"], "200000000000");
}

#[tokio::test]
async fn without_output_or_summary_rows_go_to_stdout() {
    let sandbox = spawn(generated(40, 2)).await;
    let (code, out, err, _) = export_cli(&sandbox, &[]).await;
    assert_eq!(code, 0, "{err}");
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    assert_eq!(reader.records().count(), 40);
    assert!(err.contains("40 rows, 18 columns"), "{err}");
}

#[tokio::test]
async fn every_call_has_a_new_correlation_id_and_retries_keep_the_request_id() {
    let sandbox = spawn(generated(100, 1)).await;
    let faults = sandbox.export_faults();
    faults.busy.too_many.set(1);
    faults.busy.server_errors.set(1);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = paydrop(&sandbox, dir.path());
    cmd.args(["export", "payments", "--summary"])
        .env("PAYDROP_LOG", "debug");
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{out}{err}");

    let calls = sandbox.export_calls();
    let posts: Vec<_> = calls.iter().filter(|c| c.method == "POST").collect();
    assert_eq!(posts.len(), 3, "a 429 and a 500, then the POST: {calls:?}");
    let request_id = posts[0]
        .ms_request_id
        .clone()
        .expect("ms-requestid on the POST");
    assert!(posts
        .iter()
        .all(|p| p.ms_request_id.as_deref() == Some(&request_id)));
    let mut correlation: Vec<&str> = calls
        .iter()
        .map(|c| c.ms_correlation_id.as_deref().expect("ms-correlationid"))
        .collect();
    for id in &correlation {
        assert!(err.contains(id), "correlation id {id} is logged");
    }
    correlation.sort_unstable();
    correlation.dedup();
    assert_eq!(
        correlation.len(),
        calls.len(),
        "one correlation id per call"
    );
    assert!(calls
        .iter()
        .filter(|c| c.method == "GET")
        .all(|c| c.ms_request_id.is_none()));

    let all = format!("{out}{err}");
    assert!(!all.contains(TOKEN), "the Bearer token leaked:\n{all}");
    assert!(!all.contains("sig="), "the blob's signature leaked:\n{all}");
}
