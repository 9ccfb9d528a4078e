//! Issue 5, items 3 and 4: the payment breakdown and the payment report,
//! read from the embedded sandbox (library and binary) and from hand-made
//! answers. Amounts are compared exactly; no timing is asserted.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use paydrop::config::Secret;
use paydrop::report::{write_payments, Format, PaymentQuery, ReportClient, ReportError};
use paydrop::sandbox::report::{breakdown, report_payment};
use paydrop::sandbox::{self, Sandbox, SandboxConfig};
use paydrop::submit::RetryPolicy;
use rust_decimal::Decimal;

const TOKEN: &str = "sandbox-report-token";

async fn start(tweak: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
    let mut config = SandboxConfig::default();
    tweak(&mut config);
    sandbox::spawn(config).await.expect("sandbox starts")
}

fn client(sb: &Sandbox, token: &str) -> ReportClient {
    let retry = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
    };
    ReportClient::new(&sb.base_url(), Secret::new(token), retry).unwrap()
}

fn query() -> PaymentQuery {
    PaymentQuery::new(
        "2024-10-01",
        "2024-10-30",
        None,
        chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
    )
    .unwrap()
}

fn paydrop(sb: &Sandbox, token: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paydrop"));
    cmd.env("PAYDROP_REPORT_TOKEN", token)
        .env("PAYDROP_BASE_URL", sb.base_url())
        .env_remove("PAYDROP_CONFIG");
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn breakdown_that_adds_up_and_one_that_is_flagged() {
    let sb = start(|_| {}).await;
    let c = client(&sb, TOKEN);
    let ok = c.transactions(12).await.unwrap();
    assert_eq!(ok.items.len(), breakdown(1, 12).len());
    assert_eq!(ok.flagged(), 0);
    let want = &breakdown(1, 12)[0];
    assert_eq!(ok.items[0].money("paidPrice"), Some(want.paid_price));
    assert_eq!(
        ok.items[0].money("bankCommissionRateAmount"),
        Some(want.bank_commission_rate_amount)
    );

    // Ids ending in 7: the last item pays out 0.01 more than was paid.
    let bad = c.transactions(17).await.unwrap();
    assert_eq!(bad.flagged(), 1);
    let flags = bad.items.last().unwrap().check();
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0].rule, "payout split");
    assert!(
        flags[0].message.contains("(difference 0.01)"),
        "{}",
        flags[0].message
    );

    let e = c.transactions(0).await.unwrap_err();
    assert!(matches!(e, ReportError::NotFound { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn breakdown_on_the_command_line_with_csv() {
    let sb = start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("b.csv");
    let command = |id: &str| {
        let mut cmd = paydrop(&sb, TOKEN);
        cmd.args(["report", "transactions", id, "--csv"]).arg(&csv);
        cmd
    };
    let (mut a, mut b) = (command("12"), command("27"));
    let (good, flagged) =
        tokio::task::spawn_blocking(move || (a.output().unwrap(), b.output().unwrap()))
            .await
            .unwrap();
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("every item adds up"));
    assert_eq!(flagged.status.code(), Some(1));
    let text = String::from_utf8_lossy(&flagged.stdout);
    assert!(
        text.contains("FLAGGED") && text.contains("payout split"),
        "{text}"
    );
    let written = std::fs::read_to_string(csv).unwrap();
    assert!(written.starts_with("id,name,externalId"), "{written}");
    assert!(written.contains("payout split: merchantPayoutAmount"));
    assert!(written.lines().last().unwrap().starts_with("total,"));
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_report_streams_sloppy_numbers_exactly() {
    const ROWS: u64 = 20_000;
    let sb = start(|c| c.report_rows = ROWS).await;

    // On the wire: decimal commas and dotted thousands, as the sample.
    let raw = reqwest::Client::new()
        .post(format!(
            "{}{}",
            sb.base_url(),
            paydrop::report::PAYMENT_LIST_PATH
        ))
        .bearer_auth(TOKEN)
        .json(&query().body())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains(r#""headCommission":0,00,"#), "{}", &raw[..400]);
    let grouped = regex::Regex::new(r#""trnAmount":\d{1,2}\.\d{3},\d{2},"#).unwrap();
    assert!(grouped.is_match(&raw));
    assert!(
        serde_json::from_str::<serde_json::Value>(&raw).is_err(),
        "not valid JSON"
    );

    let (summary, out) = client(&sb, TOKEN)
        .payments(&query(), Format::Jsonl, Vec::new())
        .await
        .unwrap();
    let (mut amount, mut net) = (Decimal::ZERO, Decimal::ZERO);
    for i in 1..=ROWS {
        let p = report_payment(1, i);
        amount += p.amount;
        net += p.net_amount;
    }
    assert_eq!(summary.transactions, ROWS);
    assert_eq!(summary.trn_amount, amount);
    assert_eq!(summary.net_amount, net);
    assert!(summary.problems().is_empty(), "{:?}", summary.problems());
    assert_eq!(summary.declared.amount, Some(amount));

    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, ROWS);
    for i in [1u64, 777, ROWS] {
        let p = report_payment(1, i);
        let v: serde_json::Value = serde_json::from_str(lines[i as usize - 1]).unwrap();
        assert_eq!(v["payzeeTrnOrderId"], p.order_id.as_str());
        assert_eq!(v["trnAmount"], p.amount.to_string().as_str());
        assert_eq!(v["commission"], p.commission.to_string().as_str());
        assert_eq!(v["payzeeCurrencyCode"], p.currency.to_string().as_str());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_report_to_csv_with_plain_numbers_and_retries() {
    let sb = start(|c| {
        c.report_rows = 300;
        c.report_sloppy_numbers = false;
    })
    .await;
    let faults = sb.faults();
    faults.retry_after_secs.store(0, Ordering::SeqCst);
    faults.too_many.store(1, Ordering::SeqCst);
    faults.server_errors.store(1, Ordering::SeqCst);
    let (summary, out) = client(&sb, TOKEN)
        .payments(&query(), Format::Csv, Vec::new())
        .await
        .unwrap();
    assert_eq!(summary.transactions, 300);
    let mut r = csv::Reader::from_reader(&out[..]);
    assert_eq!(
        r.headers().unwrap().iter().take(3).collect::<Vec<_>>(),
        ["payzeeTrnOrderId", "trnAmount", "netAmount"]
    );
    let sum: Decimal = r
        .records()
        .map(|rec| rec.unwrap()[1].parse::<Decimal>().unwrap())
        .sum();
    assert_eq!(sum, summary.trn_amount);
}

#[test]
fn declared_totals_are_checked_and_cards_masked_again() {
    let report = r#"{"fail":false,"statusCode":200,"result":[
      {"payzeeTrnOrderId":"A","trnAmount":1.234,56,"netAmount":1.200,00,"commission":34,56,
       "payzeeCurrencyCode":"949","maskedCardNumber":"4543601234567890",
       "totalCount":2,"totalAmount":1.235,56,"totalNetAmount":1.200,50,"totalCommissionAmount":35,06},
      {"payzeeTrnOrderId":"B","trnAmount":"0,00","netAmount":0,50,"commission":0,50,
       "payzeeCurrencyCode":"TL","maskedCardNumber":"454360******0001",
       "totalCount":2,"totalAmount":1.235,56,"totalNetAmount":1.200,50,"totalCommissionAmount":35,06}
    ]}"#;
    let mut out = Vec::new();
    let s = write_payments(report.as_bytes(), Format::Csv, &mut out).unwrap();
    assert_eq!(s.trn_amount.to_string(), "1234.56");
    assert_eq!(s.net_amount.to_string(), "1200.50");
    assert_eq!(s.remasked, 1);
    let problems = s.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("totalAmount says 1235.56, the transactions add up to 1234.56"),
        "{problems:?}"
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("454360******7890") && !text.contains("4543601234567890"));
    assert!(text.contains("A,1234.56,1200.00,34.56,,TRY,949"), "{text}");
}

#[test]
fn broken_reports_name_the_transaction_and_the_byte() {
    let cases = [
        (
            r#"{"result":[{"payzeeTrnOrderId":"A","trnAmount":1.23,4,"payzeeCurrencyCode":"949"}]}"#,
            "transaction 1 (payzeeTrnOrderId A): trnAmount '1.23,4'",
        ),
        (
            r#"{"result":[{"payzeeTrnOrderId":"A","trnAmount":1,"payzeeCurrencyCode":"999"}]}"#,
            "payzeeCurrencyCode '999' is not an ISO 4217 code",
        ),
        (r#"{"result":[{"payzeeTrnOrderId":"A","#, "ended early"),
        (
            r#"{"fail":true,"statusCode":500,"message":"boom","result":[]}"#,
            "boom",
        ),
        (r#"{"fail":false,"statusCode":200}"#, "no \"result\""),
    ];
    for (input, needle) in cases {
        let e = write_payments(input.as_bytes(), Format::Csv, Vec::new()).unwrap_err();
        assert!(e.to_string().contains(needle), "{input}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_gets_401_and_is_never_printed() {
    let sb = start(|_| {}).await;
    let e = client(&sb, "wrong-token-123")
        .transactions(12)
        .await
        .unwrap_err();
    assert!(matches!(e, ReportError::Unauthorized), "{e}");
    let mut cmd = paydrop(&sb, "wrong-token-123");
    cmd.args([
        "report",
        "payments",
        "--from",
        "2024-10-01",
        "--to",
        "2024-10-02",
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("PAYDROP_REPORT_TOKEN"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong-token-123")
            && !String::from_utf8_lossy(&out.stdout).contains("wrong-token-123")
    );
}

#[test]
fn dates_outside_the_window_are_refused_before_any_call() {
    for (args, needle) in [
        (
            vec!["--from", "2024-10-31", "--to", "2024-10-01"],
            "must run forward",
        ),
        (
            vec!["--from", "2024-10-01", "--to", "2999-01-01"],
            "in the future",
        ),
        (
            vec!["--from", "2024-13-01", "--to", "2024-10-01"],
            "'2024-13-01' is not a date",
        ),
        (
            vec!["--from", "2024-1-1", "--to", "2024-10-01"],
            "write yyyy-MM-dd",
        ),
        (
            vec![
                "--from",
                "2024-10-01",
                "--to",
                "2024-10-02",
                "--payment-from",
                "2024-11-05",
                "--payment-to",
                "2024-11-01",
            ],
            "--payment-from 2024-11-05 is after --payment-to 2024-11-01",
        ),
    ] {
        // Nothing listens on port 9: a call would fail with another message.
        let out = Command::new(env!("CARGO_BIN_EXE_paydrop"))
            .env("PAYDROP_REPORT_TOKEN", TOKEN)
            .env_remove("PAYDROP_CONFIG")
            .args(["report", "payments", "--base", "http://127.0.0.1:9"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle) && stderr.contains("nothing was sent"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_refuses_bad_dates_itself() {
    let sb = start(|c| c.as_of = chrono::NaiveDate::from_ymd_opt(2024, 12, 1)).await;
    let answer = reqwest::Client::new()
        .post(format!(
            "{}{}",
            sb.base_url(),
            paydrop::report::PAYMENT_LIST_PATH
        ))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"trnDate1": "2024-12-01", "trnDate2": "2024-12-02"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let v: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(v["fail"], true);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("txnEndDate 2024-12-02 is in the future"));
}
