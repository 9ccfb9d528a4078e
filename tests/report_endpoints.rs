//! Issues 5 and 10, items 3 and 4: Craftgate's payment breakdown (signed
//! requests) and Payzee's payment report (merchant login, token expiry),
//! read from the independent sandbox (library and binary) and from
//! hand-made answers transcribed from the pages (`tests/fixtures/`).
//! Amounts are compared exactly; no timing is asserted.

use std::process::Command;
use std::time::Duration;

use paydrop::config::Secret;
use paydrop::report::payzee::Login;
use paydrop::report::{
    write_payments, CraftgateClient, Format, PaymentQuery, PayzeeClient, ReportError,
};
use paydrop::transport::{RetryPolicy, Timeouts};
use paydrop_sandbox::breakdown::items;
use paydrop_sandbox::report::{transaction, PAYMENT_LIST_PATH};
use paydrop_sandbox::{Sandbox, SandboxConfig};
use rust_decimal::Decimal;

/// Distinctive credentials, so that a leak is found by a substring search.
const API_KEY: &str = "cg-api-Qx71-key";
const SECRET_KEY: &str = "cg-secret-Vb93-key";
const EMAIL: &str = "finance@shop.example";
const PASSWORD: &str = "pw-Lk29-secret";

async fn start(tweak: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
    let mut config = SandboxConfig::default();
    config.breakdown.api_key = API_KEY.into();
    config.breakdown.secret_key = SECRET_KEY.into();
    config.report.email = EMAIL.into();
    config.report.password = PASSWORD.into();
    tweak(&mut config);
    paydrop_sandbox::spawn(config)
        .await
        .expect("sandbox starts")
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
    }
}

fn timeouts() -> Timeouts {
    Timeouts::streamed(Duration::from_secs(120), Duration::from_secs(10))
}

fn craftgate(sb: &Sandbox, secret: &str) -> CraftgateClient {
    CraftgateClient::new(
        &sb.base_url(),
        Secret::new(API_KEY),
        Secret::new(secret),
        retry(),
        timeouts(),
    )
    .unwrap()
}

fn payzee(sb: &Sandbox, password: &str) -> PayzeeClient {
    let login = Login {
        email: EMAIL.into(),
        password: Secret::new(password),
        lang: "EN".into(),
    };
    PayzeeClient::new(&sb.base_url(), &sb.base_url(), login, retry(), timeouts()).unwrap()
}

fn query() -> PaymentQuery {
    PaymentQuery::new(
        (Some("2024-10-01"), Some("2024-10-30")),
        (None, None),
        chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
    )
    .unwrap()
}

/// The binary with the sandbox's addresses and the test credentials.
fn paydrop(sb: &Sandbox) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paydrop"));
    let dir = tempfile::tempdir().unwrap().keep();
    let config = dir.join("paydrop.toml");
    std::fs::write(
        &config,
        format!(
            "[submit]\nbackoff_ms = 5\nbackoff_max_ms = 20\n\n[breakdown]\nbase_url = \"{0}\"\n\n\
             [report]\nbase_url = \"{0}\"\nauth_base_url = \"{0}\"\n",
            sb.base_url()
        ),
    )
    .unwrap();
    cmd.env("PAYDROP_CONFIG", config)
        .env("PAYDROP_CRAFTGATE_API_KEY", API_KEY)
        .env("PAYDROP_CRAFTGATE_SECRET_KEY", SECRET_KEY)
        .env("PAYDROP_REPORT_EMAIL", EMAIL)
        .env("PAYDROP_REPORT_PASSWORD", PASSWORD);
    cmd
}

async fn output(mut cmd: Command) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_secret(text: &str) {
    for s in [SECRET_KEY, PASSWORD, API_KEY] {
        assert!(!text.contains(s), "{s} leaked:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_breakdown_call_passes_with_every_field() {
    let sb = start(|_| {}).await;
    let b = craftgate(&sb, SECRET_KEY).transactions(12).await.unwrap();
    let want = items(1, 12);
    assert_eq!(b.items.len(), want.len());
    assert_eq!(b.items[0].money("paidPrice"), Some(want[0].paid_price));
    assert_eq!(
        b.items[0].money("bankCommissionRateAmount"),
        Some(want[0].bank_commission_rate_amount)
    );
    assert_eq!(b.items[0].money("payout.parity"), Some(Decimal::ONE));
    assert_eq!(b.items[0].text("subMerchantMember.taxOffice"), "Kadıköy");
    assert_eq!(
        b.items[0].text("payoutStatus.merchantStatusDate"),
        "2024-10-02T10:00:00"
    );
    assert_eq!(b.flagged(), 0);

    // Ids ending in 7: the last item's split is off by 0.01 — a heuristic
    // warning, not a failure.
    let warned = craftgate(&sb, SECRET_KEY).transactions(17).await.unwrap();
    assert_eq!(warned.flagged(), 1);
    let flags = warned.items.last().unwrap().check();
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0].rule, "payout split (heuristic)");
    assert!(
        flags[0].message.contains("(difference 0.01)"),
        "{}",
        flags[0].message
    );

    let e = craftgate(&sb, SECRET_KEY)
        .transactions(0)
        .await
        .unwrap_err();
    assert!(matches!(e, ReportError::NotFound { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("errorCode 1001: payment 0 not found"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_and_bearer_calls_get_401_with_craftgate_s_error() {
    let sb = start(|_| {}).await;
    let url = format!(
        "{}/payment-reporting/v1/payments/12/transactions",
        sb.base_url()
    );
    let http = reqwest::Client::new();
    for request in [http.get(&url), http.get(&url).bearer_auth("some-token")] {
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 401);
        let v: serde_json::Value = answer.json().await.unwrap();
        assert!(v["errors"]["errorCode"].is_string(), "{v}");
        assert!(v["errors"]["errorDescription"]
            .as_str()
            .unwrap()
            .starts_with("Unauthorized"));
    }
    // A wrong secret key signs wrongly: the provider's text is shown.
    let e = craftgate(&sb, "not-the-secret")
        .transactions(12)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ReportError::Unauthorized { .. }), "{text}");
    assert!(text.contains("x-signature does not match"), "{text}");
    assert!(text.contains("PAYDROP_CRAFTGATE_SECRET_KEY"), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn breakdown_on_the_command_line_with_csv() {
    let sb = start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("b.csv");
    let command = |id: &str| {
        let mut cmd = paydrop(&sb);
        cmd.args(["report", "transactions", id, "--csv"]).arg(&csv);
        cmd
    };
    let (code, out, err) = output(command("12")).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("every item meets the heuristics"), "{out}");
    let (code, out, err) = output(command("27")).await;
    assert_eq!(code, 0, "a heuristic never fails: {err}");
    assert!(
        out.contains("WARNING") && out.contains("payout split (heuristic)"),
        "{out}"
    );
    no_secret(&format!("{out}{err}"));
    let written = std::fs::read_to_string(csv).unwrap();
    assert!(written.starts_with("id,name,externalId"), "{written}");
    assert!(written.contains("subMerchantMember.iban"));
    assert!(written.contains("payout split (heuristic): merchantPayoutAmount"));
    assert!(written.lines().last().unwrap().starts_with("total,"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_logs_in_and_streams_sloppy_numbers_exactly() {
    const ROWS: u64 = 20_000;
    let sb = start(|c| c.report.rows = ROWS).await;

    // Without a token the report is refused in Payzee's shape.
    let raw = reqwest::Client::new()
        .post(format!("{}{PAYMENT_LIST_PATH}", sb.base_url()))
        .json(&query().body())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    let v: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(
        (v["fail"].clone(), v["statusCode"].clone()),
        (true.into(), 401.into())
    );
    assert!(v["errorDescription"].is_string(), "{v}");

    let (summary, out) = payzee(&sb, PASSWORD)
        .payments(&query(), Format::Jsonl, Vec::new())
        .await
        .unwrap();
    assert_eq!(sb.report_logins(), 1);
    let (mut amount, mut net) = (Decimal::ZERO, Decimal::ZERO);
    for i in 1..=ROWS {
        let t = transaction(1, i);
        amount += t.amount;
        net += t.net_amount;
    }
    assert_eq!(summary.transactions, ROWS);
    assert_eq!(summary.trn_amount, amount);
    assert_eq!(summary.net_amount, net);
    assert!(summary.problems().is_empty(), "{:?}", summary.problems());
    assert_eq!(summary.declared.amount, Some(amount));

    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, ROWS);
    for i in [1u64, 10, 777, ROWS] {
        let t = transaction(1, i);
        let v: serde_json::Value = serde_json::from_str(lines[i as usize - 1]).unwrap();
        assert_eq!(v["payzeeTrnOrderId"], t.order_id.as_str());
        assert_eq!(v["trnAmount"], t.amount.to_string().as_str());
        assert_eq!(v["commission"], t.commission.to_string().as_str());
        assert_eq!(v["payzeeCurrencyCode"], t.currency);
        // Every published field is kept, the sample-only ones too.
        for field in [
            "cardTransferStatus",
            "eftStatus",
            "payzeePfAcquiredBankName",
            "totalHeadCommissionAmount",
        ] {
            assert!(v.get(field).is_some(), "{field} in {v}");
        }
        if t.sparse {
            assert_eq!(
                v["headIban"], "",
                "an empty optional field is kept as it came"
            );
            assert!(v["productId"].is_null());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_survives_a_token_expiry_mid_run() {
    let sb = start(|c| {
        c.report.rows = 50;
        c.report.token_calls = Some(1);
    })
    .await;
    let client = payzee(&sb, PASSWORD);
    for _ in 0..3 {
        let (summary, _) = client
            .payments(&query(), Format::Csv, Vec::new())
            .await
            .unwrap();
        assert_eq!(summary.transactions, 50);
    }
    // One login per token: the first, then one after each expiry.
    assert_eq!(sb.report_logins(), 3);

    // A token that is dead on arrival: one more login, then a clear error.
    let sb = start(|c| c.report.token_ttl = Some(Duration::ZERO)).await;
    let e = payzee(&sb, PASSWORD)
        .payments(&query(), Format::Csv, Vec::new())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ReportError::Unauthorized { .. }), "{text}");
    assert!(
        text.contains("a fresh token was refused too") && text.contains("errorCode 6"),
        "{text}"
    );
    assert_eq!(sb.report_logins(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_shows_the_provider_s_text_and_never_the_password() {
    let sb = start(|_| {}).await;
    let e = payzee(&sb, "wrong-pw-77")
        .payments(&query(), Format::Csv, Vec::new())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ReportError::Unauthorized { .. }), "{text}");
    assert!(
        text.contains("errorCode 3: e-mail or password is wrong"),
        "{text}"
    );
    // The call it answered is named, address and all.
    assert!(
        text.contains(&format!("(from POST {}/", sb.base_url())),
        "{text}"
    );
    assert!(!text.contains("wrong-pw-77"), "{text}");

    let mut cmd = paydrop(&sb);
    cmd.env("PAYDROP_REPORT_PASSWORD", "wrong-pw-77").args([
        "report",
        "payments",
        "--from",
        "2024-10-01",
    ]);
    let (code, out, err) = output(cmd).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("HTTP 401") && err.contains("PAYDROP_REPORT_PASSWORD"),
        "{err}"
    );
    assert!(!format!("{out}{err}").contains("wrong-pw-77"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_pass_through_and_dates_are_optional() {
    let sb = start(|c| {
        c.report.rows = 30;
        c.report.unknown_field = true;
        c.report.sloppy_numbers = false;
    })
    .await;
    let faults = sb.report_faults();
    faults.too_many.set(1);
    faults.server_errors.set(1);
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("report.jsonl");
    let mut cmd = paydrop(&sb);
    cmd.args(["report", "payments", "-o"]).arg(&out_file);
    let (code, out, err) = output(cmd).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("30 transactions"), "{out}");
    no_secret(&format!("{out}{err}"));
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(text.lines().count(), 30);
    assert!(text
        .lines()
        .all(|l| l.contains(r#""sandboxRiskScore":"low""#)));

    // CSV keeps the published columns.
    let (summary, csv) = payzee(&sb, PASSWORD)
        .payments(&PaymentQuery::default(), Format::Csv, Vec::new())
        .await
        .unwrap();
    let mut r = csv::Reader::from_reader(&csv[..]);
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
            r#"{"fail":true,"statusCode":500,"errorCode":"E9","errorDescription":"boom","result":[]}"#,
            "errorCode E9: boom",
        ),
        (r#"{"fail":false,"statusCode":200}"#, "no \"result\""),
    ];
    for (input, needle) in cases {
        let e = write_payments(input.as_bytes(), Format::Csv, Vec::new()).unwrap_err();
        assert!(e.to_string().contains(needle), "{input}: {e}");
    }
}

#[test]
fn dates_outside_the_window_are_refused_before_any_call() {
    for (args, needle) in [
        (
            vec!["--from", "2024-10-31", "--to", "2024-10-01"],
            "must run forward",
        ),
        (vec!["--to", "2999-01-01"], "in the future"),
        (vec!["--from", "2024-13-01"], "'2024-13-01' is not a date"),
        (vec!["--from", "2024-1-1"], "write yyyy-MM-dd"),
        (
            vec!["--payment-from", "2024-11-05", "--payment-to", "2024-11-01"],
            "--payment-from 2024-11-05 is after --payment-to 2024-11-01",
        ),
    ] {
        // Nothing listens on port 9: a call would fail with another message.
        let out = Command::new(env!("CARGO_BIN_EXE_paydrop"))
            .env("PAYDROP_REPORT_EMAIL", EMAIL)
            .env("PAYDROP_REPORT_PASSWORD", PASSWORD)
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
async fn the_sandbox_refuses_a_reversed_range_itself() {
    let sb = start(|_| {}).await;
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!(
            "{}/api/ppg/Securities/authenticationMerchant",
            sb.base_url()
        ))
        .json(&serde_json::json!({"email": EMAIL, "password": PASSWORD, "lang": "TR"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["result"]["token"].as_str().unwrap().to_string();
    let answer = client
        .post(format!("{}{PAYMENT_LIST_PATH}", sb.base_url()))
        .bearer_auth(token)
        .json(&serde_json::json!({"trnDate1": "2024-12-02", "trnDate2": "2024-12-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let v: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(v["fail"], true);
    assert!(v["errorDescription"]
        .as_str()
        .unwrap()
        .contains("txnStartDate is after txnEndDate"));
}
