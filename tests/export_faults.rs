//! Issue 5, payout exports: bad files and misbehaving APIs give clear
//! errors — a blob truncated mid-row, corrupt gzip, a header with extra or
//! missing columns, quoted fields with line breaks and delimiters, a status
//! that never completes, a 401 in the middle of polling, `Failed`.

mod common_export;

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use common_export::*;
use flate2::write::GzEncoder;
use paydrop::export::filter::{Field, Filter, Op, Value};
use paydrop::export::{ExportError, Format, Sink};
use paydrop_sandbox::export::Content;
use paydrop_sandbox::{Sandbox, SandboxConfig};

/// The "Payments download" columns of the payout statement (the last two
/// swapped: columns are found by name, whatever their order).
const HEADER: &str = "participantID,participantIDType,participantName,programName,earned,\
earnedUSD,withheldTax,salesTax,serviceFeeTax,totalPayment,currencyCode,paymentMethod,paymentId,\
paymentStatus,paymentDate,paymentStatusDescription";

fn row(n: u32, name: &str, amount: &str) -> String {
    format!(
        "4000001,MPN,{name},CSP Indirect Provider,{amount},{amount},0.00,0.00,0.00,{amount},USD,\
         Wire,{n:012},Sent,2024-02-0{},Payment sent",
        n % 9 + 1
    )
}

fn fixed(bytes: impl Into<Bytes>) -> SandboxConfig {
    let mut c = config();
    c.export.content = Content::Fixed(bytes.into());
    c
}

async fn export_of(
    bytes: impl Into<Bytes>,
    format: Format,
) -> Result<paydrop::export::Summary, ExportError> {
    let sandbox = spawn(fixed(bytes)).await;
    export(&sandbox, format, &mut Sink::Discard).await
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn file(rows: &[String]) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

#[tokio::test]
async fn a_blob_truncated_mid_row_is_reported() {
    let whole = file(&[
        row(1, "A", "10.00"),
        row(2, "B", "20.00"),
        row(3, "C", "30.00"),
    ]);
    // Cut inside the third row, and cut inside its last field.
    for cut in [whole.len() - 60, whole.len() - 2] {
        let e = export_of(whole[..cut].to_string(), Format::Csv)
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ExportError::Truncated { row: 3, .. }), "{text}");
        assert!(text.contains("truncated; download it again"), "{text}");
    }
    let summary = export_of(whole, Format::Csv).await.unwrap();
    assert_eq!(summary.rows, 3);
}

#[tokio::test]
async fn corrupt_and_cut_gzip_are_reported() {
    let packed = gzip(file(&(0..200).map(|n| row(n, "A", "1.00")).collect::<Vec<_>>()).as_bytes());
    let mut corrupt = packed.clone();
    let middle = corrupt.len() / 2;
    for b in &mut corrupt[middle..middle + 16] {
        *b ^= 0x5a;
    }
    let e = export_of(corrupt, Format::Csv).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ExportError::Gzip(_)), "{text}");
    assert!(text.contains("not valid gzip"), "{text}");

    let e = export_of(packed[..packed.len() * 2 / 3].to_vec(), Format::Csv)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ExportError::Gzip(_)), "{text}");
    assert!(text.contains("gzip stream ends early"), "{text}");

    let e = export_of(vec![0x1f, 0x8b, 0x08, 0, 0], Format::Csv)
        .await
        .unwrap_err();
    assert!(matches!(e, ExportError::Gzip(_)), "{e}");
}

#[tokio::test]
async fn extra_columns_are_kept_and_missing_ones_named() {
    let tsv = |header: &str, row: &str| format!("{header}\n{row}\n");
    let header = HEADER.replace(',', "\t");
    let line = row(1, "A", "12.50").replace(',', "\t");
    let extra = tsv(
        &format!("{header}\tcommission\tregion"),
        &format!("{line}\t0.25\tEMEA"),
    );
    let sandbox = spawn(fixed(extra)).await;
    let summary = export(&sandbox, Format::Tsv, &mut Sink::Discard)
        .await
        .unwrap();
    // Every column no role uses passes through, the unpublished ones too.
    assert!(summary
        .extra_columns
        .ends_with(&["commission".into(), "region".into()]));
    assert!(summary.extra_columns.contains(&"earnedUSD".to_string()));
    assert_eq!(summary.rows, 1);
    let (code, out, err, dir) = export_cli(
        &sandbox,
        &["--format", "tsv", "-o", "out.csv", "--out-format", "jsonl"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("extra columns kept: ") && out.contains("commission, region"),
        "{out}"
    );
    let written = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert!(
        written.contains(r#""commission":"0.25","region":"EMEA""#),
        "{written}"
    );

    let missing = tsv(
        &header
            .replace("\ttotalPayment", "")
            .replace("currencyCode\t", ""),
        "1\t2\t3",
    );
    let e = export_of(missing, Format::Tsv).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ExportError::Header { .. }), "{text}");
    assert!(
        text.contains("no amount column: looked for totalPayment / paymentAmount")
            && text.contains("no currency column: looked for paymentCurrencyCode / currencyCode")
            && text.contains("[export.columns]"),
        "{text}"
    );

    // A TSV file read as CSV has one column: the message says so.
    let e = export_of(tsv(&header, &line), Format::Csv)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("looks tab-separated: request it with --format tsv"),
        "{e}"
    );
}

#[tokio::test]
async fn quoted_fields_with_line_breaks_and_delimiters_are_one_field() {
    let rows = [
        row(1, "\"Adatum, \"\"Ltd\"\"\nsecond line\"", "10.00"),
        row(2, "\"tab\tand,comma\r\nand CRLF\"", "0.05"),
        row(3, "plain", "-2.50"),
        row(4, "plain", "1O.50"),
    ];
    let e = export_of(file(&rows), Format::Csv).await.unwrap_err();
    // Line numbers count the line breaks inside quotes: row 4 is on line 7.
    match &e {
        ExportError::Row {
            line,
            column,
            value,
            ..
        } => {
            assert_eq!(
                (*line, column.as_str(), value.as_str()),
                (7, "totalPayment", "1O.50"),
                "{e}"
            )
        }
        other => panic!("{other}"),
    }
    let summary = export_of(file(&rows[..3]), Format::Csv).await.unwrap();
    assert_eq!(summary.rows, 3);
    assert_eq!(
        summary.by_currency["USD"]["USD"].amount,
        "7.55".parse().unwrap()
    );
}

#[tokio::test]
async fn bad_rows_name_their_line_and_column() {
    let short = file(&[row(1, "A", "1.00"), "1,2,3".into(), row(3, "C", "1.00")]);
    let e = export_of(short, Format::Csv).await.unwrap_err();
    assert!(
        matches!(
            e,
            ExportError::Fields {
                line: 3,
                row: 2,
                found: 3,
                expected: 16
            }
        ),
        "{e}"
    );
    let bad_date = file(&[row(1, "A", "1.00").replace("2024-02-02", "02.02.2024")]);
    assert!(bad_date.contains("02.02.2024"));
    let e = export_of(bad_date, Format::Csv).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("line 2, column paymentDate: '02.02.2024'"),
        "{e}"
    );
    let e = export_of(String::new(), Format::Csv).await.unwrap_err();
    assert!(matches!(e, ExportError::Empty), "{e}");
    let long = row(1, "A", "1.00").replace("CSP Indirect Provider", &"P".repeat(300));
    let mut latin1 = file(&[long, row(2, "A", "1.00")]).into_bytes();
    let sent = latin1.windows(4).rposition(|w| w == b"Sent").unwrap();
    latin1[sent + 1] = 0xe9; // "Sént" in Latin-1: not UTF-8
    let e = export_of(latin1, Format::Csv).await.unwrap_err();
    assert!(
        e.to_string().contains("line 3, column paymentStatus")
            && e.to_string().contains("not UTF-8"),
        "{e}"
    );
}

#[tokio::test]
async fn a_failed_file_leaves_no_output_file() {
    let cut = HEADER.len() + 60;
    let sandbox = spawn(fixed(file(&[row(1, "A", "1.00")])[..cut].to_string())).await;
    let (code, _, err, dir) = export_cli(&sandbox, &["-o", "rows.csv"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("truncated"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("rows") || n.starts_with(".paydrop-export"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

async fn wait_error(sandbox: &Sandbox, timeout: Duration) -> ExportError {
    let c = client(sandbox, TOKEN);
    let queued = c.queue(None, Format::Csv).await.unwrap();
    guard("wait", c.wait(queued, poll(timeout), |_| {}))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_status_that_never_completes_times_out() {
    let sandbox = spawn(config()).await;
    sandbox.export_faults().stuck.set(1);
    let e = wait_error(&sandbox, Duration::from_millis(300)).await;
    let text = e.to_string();
    assert!(
        matches!(
            e,
            ExportError::Timeout {
                status: paydrop::export::ExportStatus::Processing,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("check again later with --request-id"),
        "{text}"
    );

    sandbox.export_faults().stuck.set(1);
    let (code, _, err, _) = export_cli(&sandbox, &["--summary", "--poll-timeout", "0"]).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("is still Queued"), "{err}");
}

#[tokio::test]
async fn a_401_mid_poll_says_how_to_resume() {
    let sandbox = spawn(config()).await;
    sandbox.export_faults().unauthorized_mid_poll.set(1);
    let e = wait_error(&sandbox, HANG_GUARD).await;
    let text = e.to_string();
    assert!(matches!(e, ExportError::Unauthorized { .. }), "{text}");
    assert!(
        text.contains("(401) while checking export request")
            && text.contains("PAYDROP_EXPORT_TOKEN")
            && text.contains("resume with --request-id"),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
    // The same request, resumed with a good token, completes.
    let request_id = sandbox.export_calls()[0].clone();
    assert_eq!(request_id.method, "POST");
    let c = client(&sandbox, TOKEN);
    let id = text
        .split("--request-id ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let status = c.status(&id).await.unwrap();
    let done = guard("resume", c.wait(status, poll(HANG_GUARD), |_| {}))
        .await
        .unwrap();
    let (_, summary) = c
        .download(&done, Format::Csv, &mut Sink::Discard)
        .await
        .unwrap();
    assert_eq!(summary.rows, 1000);
}

#[tokio::test]
async fn a_failed_export_suggests_a_new_request() {
    let sandbox = spawn(config()).await;
    sandbox.export_faults().failed.set(1);
    let e = wait_error(&sandbox, HANG_GUARD).await;
    assert!(matches!(e, ExportError::Failed { .. }), "{e}");
    assert!(e.to_string().contains("queue a new request"), "{e}");

    sandbox.export_faults().failed.set(1);
    let (code, _, err, _) = export_cli(&sandbox, &["--summary"]).await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("status Failed"), "{err}");
}

#[tokio::test]
async fn refusals_say_what_to_do() {
    let sandbox = spawn(config()).await;
    let e = client(&sandbox, "expired-token")
        .queue(None, Format::Csv)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("(401) while queueing") && text.contains("Get a new token"),
        "{text}"
    );
    assert!(!text.contains("expired-token"), "{text}");

    let e = client(&sandbox, TOKEN)
        .status("no-such-request")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ExportError::NotFound { .. }), "{text}");
    assert!(
        text.contains("export requests expire") && text.contains("base_url"),
        "{text}"
    );

    // A filter paydrop's own builder would refuse reaches the server's check.
    let bad = Filter::Cmp {
        field: Field::PaymentDate,
        op: Op::Eq,
        value: Value::Text("yesterday".into()),
    };
    let e = client(&sandbox, TOKEN)
        .queue(Some(&bad), Format::Csv)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ExportError::BadRequest { .. }), "{text}");
    assert!(
        text.contains("(400)") && text.contains("$filter="),
        "{text}"
    );

    sandbox.export_faults().busy.server_errors.set(100);
    let e = client(&sandbox, TOKEN)
        .queue(None, Format::Csv)
        .await
        .unwrap_err();
    assert!(matches!(e, ExportError::GaveUp { attempts: 5, .. }), "{e}");
}
