//! Issue 5 item 1: the marketplace payout trigger. Every rule is checked
//! locally (with an injected Istanbul "today") and by the sandbox, orders
//! are recorded in the ledger before and after the call, and the binary
//! prints what the merchant must know.

mod common_export;

use std::sync::atomic::Ordering;

use chrono::{Days, NaiveDate};
use common_export::*;
use paydrop::api::{PayoutTrigger, PAYOUT_TRIGGER_PATH};
use paydrop::currency::Currency;
use paydrop::ledger::{Ledger, State};
use paydrop::payout::{self, code, Order, PayoutError, RuleError, TriggerOptions};
use paydrop::sandbox::Sandbox;
use paydrop::upload::Client;
use serde_json::json;
use tempfile::TempDir;

fn d(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

/// The provider's "today" in these tests, for the client and the sandbox.
const TODAY: &str = "2026-03-15";

struct World {
    sandbox: Sandbox,
    dir: TempDir,
    ledger: Ledger,
    client: Client,
}

async fn world() -> World {
    let sandbox = spawn(paydrop::sandbox::SandboxConfig {
        as_of: Some(d(TODAY)),
        ..config()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let client = client_for(&sandbox.base_url(), credentials(API_KEY, API_CLIENT));
    World {
        sandbox,
        dir,
        ledger,
        client,
    }
}

fn order(from: &str, to: &str) -> Order {
    Order {
        currency: Currency::lookup("TRY").unwrap(),
        currency_id: 1,
        date_from: d(from),
        date_to: d(to),
        test_mode: false,
        skip_exists_control: false,
    }
}

impl World {
    /// Orders with today = [`TODAY`]; returns the outcome and the warnings.
    async fn trigger(
        &mut self,
        o: &Order,
    ) -> (Result<payout::Triggered, PayoutError>, Vec<String>) {
        let opts = TriggerOptions {
            today: d(TODAY),
            retry: fast_retry(4),
        };
        let mut warnings = Vec::new();
        let result = guard(
            "trigger",
            payout::trigger(&mut self.ledger, &self.client, o, &opts, |w| {
                warnings.push(w.to_string())
            }),
        )
        .await;
        (result, warnings)
    }

    fn states(&self) -> Vec<State> {
        let mut orders = self.ledger.recent_payout_orders(100).unwrap();
        orders.reverse();
        orders.into_iter().map(|o| o.state).collect()
    }
}

#[test]
fn the_body_has_the_documented_fields_and_date_format() {
    let body = PayoutTrigger {
        currency_id: 1,
        date_from: d("2024-05-01"),
        date_to: d("2024-05-04"),
        test_mode: false,
        skip_exists_control: true,
    };
    assert_eq!(
        serde_json::to_value(&body).unwrap(),
        json!({"CurrencyId": 1, "DateFrom": "2024-05-01", "DateTo": "2024-05-04",
               "TestMode": false, "SkipExistsControl": true})
    );
}

#[tokio::test]
async fn date_to_is_yesterday_at_the_latest() {
    let mut w = world().await;
    for to in ["2026-03-15", "2026-03-16", "2027-01-01"] {
        let (result, _) = w.trigger(&order("2026-03-01", to)).await;
        let e = result.unwrap_err();
        assert!(
            matches!(e, PayoutError::Rule(RuleError::DateToNotPast { .. })),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("2026-03-15 in Istanbul") && text.contains("latest DateTo is 2026-03-14"),
            "{text}"
        );
        assert!(text.contains("nothing was sent"), "{text}");
    }
    assert!(
        w.sandbox.payout_orders().is_empty(),
        "nothing reached the provider"
    );
    assert!(w.states().is_empty(), "a refused order is not recorded");

    let (result, warnings) = w.trigger(&order("2026-03-01", "2026-03-14")).await;
    let done = result.unwrap();
    assert_eq!(done.order.state, State::Accepted);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(w.sandbox.payout_orders().len(), 1);
}

#[tokio::test]
async fn date_from_after_date_to_is_refused() {
    let mut w = world().await;
    let (result, _) = w.trigger(&order("2026-03-10", "2026-03-09")).await;
    let e = result.unwrap_err();
    assert!(
        matches!(e, PayoutError::Rule(RuleError::RangeReversed { .. })),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("DateFrom 2026-03-10 is after DateTo 2026-03-09"),
        "{e}"
    );
    let (result, _) = w.trigger(&order("2026-03-09", "2026-03-09")).await;
    assert!(result.is_ok(), "a one-day range is fine");
}

#[tokio::test]
async fn an_overlapping_range_is_refused_naming_the_earlier_order() {
    let mut w = world().await;
    let (first, _) = w.trigger(&order("2026-03-01", "2026-03-10")).await;
    let first = first.unwrap().order;
    for (from, to) in [
        ("2026-03-10", "2026-03-12"),
        ("2026-02-20", "2026-03-01"),
        ("2026-03-03", "2026-03-04"),
        ("2026-02-01", "2026-03-14"),
    ] {
        let (result, _) = w.trigger(&order(from, to)).await;
        let e = result.unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, PayoutError::Rule(RuleError::AlreadyOrdered { .. })),
            "{text}"
        );
        assert!(
            text.contains(&format!("payout order #{}", first.id))
                && text.contains("2026-03-01 to 2026-03-10")
                && text.contains("--skip-exists-control"),
            "{text}"
        );
    }
    assert_eq!(w.sandbox.payout_orders().len(), 1);
    // Another currency has its own pool; the next days are free.
    let usd = Order {
        currency: Currency::lookup("USD").unwrap(),
        currency_id: 2,
        ..order("2026-03-01", "2026-03-10")
    };
    assert!(w.trigger(&usd).await.0.is_ok());
    assert!(w
        .trigger(&order("2026-03-11", "2026-03-14"))
        .await
        .0
        .is_ok());
    assert_eq!(w.states(), vec![State::Accepted; 3]);
}

#[tokio::test]
async fn skip_exists_control_orders_anyway_and_warns_of_paying_twice() {
    let mut w = world().await;
    w.trigger(&order("2026-03-01", "2026-03-10"))
        .await
        .0
        .unwrap();
    let skip = Order {
        skip_exists_control: true,
        ..order("2026-03-05", "2026-03-12")
    };
    let (result, warnings) = w.trigger(&skip).await;
    let done = result.unwrap();
    assert!(done.order.skip_exists_control);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("merchant carries the risk of paying twice")
            && warnings[0].contains("payout order #1"),
        "{warnings:?}"
    );
    let sent = w.sandbox.payout_orders();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].order.skip_exists_control);
}

#[tokio::test]
async fn test_mode_lifts_the_yesterday_rule_only() {
    let mut w = world().await;
    let test = Order {
        test_mode: true,
        ..order("2026-03-14", "2026-03-20")
    };
    let done = w.trigger(&test).await.0.unwrap();
    assert!(done.order.test_mode);
    assert!(w.sandbox.payout_orders()[0].order.test_mode);
    let reversed = Order {
        test_mode: true,
        ..order("2026-03-21", "2026-03-20")
    };
    assert!(matches!(
        w.trigger(&reversed).await.0,
        Err(PayoutError::Rule(RuleError::RangeReversed { .. }))
    ));
    // A test order counts for the exists control like any other.
    assert!(matches!(
        w.trigger(&order("2026-03-14", "2026-03-14")).await.0,
        Err(PayoutError::Rule(RuleError::AlreadyOrdered { .. }))
    ));
}

/// Posts a raw order to the sandbox, bypassing the client's checks.
async fn post_raw(
    sandbox: &Sandbox,
    body: serde_json::Value,
    key: &str,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{PAYOUT_TRIGGER_PATH}", sandbox.base_url()))
        .header("apikeypublic", key)
        .header("apiclientpublic", API_CLIENT)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn raw(from: &str, to: &str, test_mode: bool, skip: bool) -> serde_json::Value {
    json!({"CurrencyId": 1, "DateFrom": from, "DateTo": to, "TestMode": test_mode,
           "SkipExistsControl": skip})
}

#[tokio::test]
async fn the_sandbox_enforces_the_same_rules_server_side() {
    let w = world().await;
    let s = &w.sandbox;
    let code_of = |v: &serde_json::Value| v["ErrorCode"].as_i64().unwrap();
    let (status, v) = post_raw(s, raw("2026-03-01", "2026-03-15", false, false), API_KEY).await;
    assert_eq!((status, code_of(&v)), (200, code::DATE_TO_NOT_PAST), "{v}");
    assert_eq!(v["Result"], false);
    let (_, v) = post_raw(s, raw("2026-03-05", "2026-03-01", false, false), API_KEY).await;
    assert_eq!(code_of(&v), code::RANGE_REVERSED, "{v}");
    let (_, v) = post_raw(s, raw("2026-03-01", "2026-03-05", false, false), API_KEY).await;
    assert_eq!(code_of(&v), 0, "{v}");
    assert!(v["Body"]["PayoutOrderId"].as_i64().is_some(), "{v}");
    let (_, v) = post_raw(s, raw("2026-03-05", "2026-03-06", false, false), API_KEY).await;
    assert_eq!(code_of(&v), code::ALREADY_ORDERED, "{v}");
    assert!(
        v["Message"]
            .as_str()
            .unwrap()
            .contains("2026-03-01 to 2026-03-05"),
        "{v}"
    );
    let (_, v) = post_raw(s, raw("2026-03-05", "2026-03-06", false, true), API_KEY).await;
    assert_eq!(code_of(&v), 0, "{v}");
    let (_, v) = post_raw(s, raw("2026-03-10", "2026-03-20", true, false), API_KEY).await;
    assert_eq!(code_of(&v), 0, "test mode: {v}");
    let (status, _) = post_raw(s, raw("2026-04-01", "2026-04-02", true, false), "wrong").await;
    assert_eq!(status, 401);
    let (status, v) = post_raw(
        s,
        json!({"CurrencyId": 1, "DateFrom": "01.03.2026"}),
        API_KEY,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(s.payout_orders().len(), 3);
}

#[tokio::test]
async fn a_refusal_by_the_provider_is_recorded_as_rejected() {
    let mut w = world().await;
    // Ordered elsewhere (another machine): this ledger does not know it.
    post_raw(
        &w.sandbox,
        raw("2026-03-01", "2026-03-05", false, false),
        API_KEY,
    )
    .await;
    let e = w
        .trigger(&order("2026-03-04", "2026-03-06"))
        .await
        .0
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, PayoutError::Refused { .. }), "{text}");
    assert!(
        text.contains(&format!("ErrorCode {}", code::ALREADY_ORDERED)),
        "{text}"
    );
    assert_eq!(w.states(), vec![State::Rejected]);
    let recorded = &w.ledger.recent_payout_orders(1).unwrap()[0];
    assert!(
        recorded.message.as_deref().unwrap().contains("overlaps"),
        "{recorded:?}"
    );
}

#[tokio::test]
async fn busy_and_failing_answers_are_retried() {
    let mut w = world().await;
    let faults = w.sandbox.faults();
    faults.retry_after_secs.store(0, Ordering::SeqCst);
    faults.too_many.store(2, Ordering::SeqCst);
    faults.server_errors.store(1, Ordering::SeqCst);
    let done = w
        .trigger(&order("2026-03-01", "2026-03-05"))
        .await
        .0
        .unwrap();
    assert_eq!(done.order.state, State::Accepted);
    assert_eq!(w.sandbox.payout_orders().len(), 1);
}

#[tokio::test]
async fn with_skip_exists_control_an_answer_that_may_hide_an_order_is_not_retried() {
    let mut w = world().await;
    w.sandbox.faults().server_errors.store(1, Ordering::SeqCst);
    let skip = Order {
        skip_exists_control: true,
        ..order("2026-03-01", "2026-03-05")
    };
    let e = w.trigger(&skip).await.0.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, PayoutError::Unknown { .. }), "{text}");
    assert!(text.contains("a retry could pay twice"), "{text}");
    assert_eq!(w.states(), vec![State::Unknown]);
    assert!(w.sandbox.payout_orders().is_empty());
}

#[tokio::test]
async fn the_binary_orders_refuses_and_warns() {
    let w = world().await;
    let dir = w.dir.path();
    let trigger = |args: &[&str]| {
        let mut cmd = paydrop(&w.sandbox, dir);
        cmd.args(["payout", "trigger", "--currency", "TRY", "--as-of", TODAY])
            .args(args);
        cmd
    };
    let (code, out, err) = run(trigger(&["--from", "2026-03-01", "--to", "2026-03-10"])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("payout order #1 (TRY 2026-03-01 to 2026-03-10"),
        "{out}"
    );

    let (code, _, err) = run(trigger(&["--from", "2026-03-08", "--to", "2026-03-12"])).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("overlaps payout order #1"), "{err}");

    let (code, out, err) = run(trigger(&[
        "--from",
        "2026-03-08",
        "--to",
        "2026-03-12",
        "--skip-exists-control",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: --skip-exists-control") && err.contains("paying twice"),
        "{err}"
    );
    assert!(out.contains("payout order #2"), "{out}");

    let (code, _, err) = run(trigger(&["--from", "2026-03-14", "--to", "2026-03-15"])).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not in the past"), "{err}");
    let (code, out, err) = run(trigger(&[
        "--from",
        "2026-03-14",
        "--to",
        "2026-03-15",
        "--test-mode",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("test mode"), "{out}");

    let mut list = paydrop(&w.sandbox, dir);
    list.args(["payout", "list"]);
    let (code, out, err) = run(list).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(w.sandbox.payout_orders().len(), 3);

    let all = format!("{out}{err}");
    for secret in [API_KEY, API_CLIENT] {
        assert!(!all.contains(secret), "a credential leaked:\n{all}");
    }
}

#[tokio::test]
async fn the_binary_uses_the_istanbul_date_by_default() {
    let w = world().await;
    // The sandbox answers for its fixed day; this checks only the client's
    // default "today". Retried if Istanbul's date changes meanwhile.
    for _ in 0..3 {
        let today = paydrop::provider_today();
        let mut cmd = paydrop(&w.sandbox, w.dir.path());
        let to = today.to_string();
        let from = today.checked_sub_days(Days::new(3)).unwrap().to_string();
        cmd.args([
            "payout",
            "trigger",
            "--currency",
            "TRY",
            "--from",
            &from,
            "--to",
            &to,
        ]);
        let (code, _, err) = run(cmd).await;
        if paydrop::provider_today() != today {
            continue;
        }
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(&format!("it is {today} in Istanbul")), "{err}");
        return;
    }
    panic!("Istanbul's date kept changing");
}
