//! Issues 5 and 10, item 1: the marketplace payout trigger. Every rule is
//! checked locally (with an injected Istanbul "today") and by the
//! independent sandbox, orders are recorded in the ledger before and after
//! the call with their JobId, the inquiry reads a job back, and after a lost
//! answer nothing is ordered blind.

mod common_export;

use chrono::{Days, NaiveDate};
use common_export::*;
use paydrop::api::{PayoutTrigger, PAYOUT_TRIGGER_PATH};
use paydrop::currency::Currency;
use paydrop::ledger::{Ledger, State};
use paydrop::payout::{self, Order, PayoutError, RuleError, TriggerOptions, Verdict};
use paydrop::upload::Client;
use paydrop_sandbox::marketplace::{code, Outcome};
use paydrop_sandbox::Sandbox;
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
    world_with(Outcome::Success).await
}

async fn world_with(outcome: Outcome) -> World {
    let mut c = config();
    c.marketplace.today = Some(d(TODAY));
    c.marketplace.outcome = outcome;
    let sandbox = spawn(c).await;
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
        w.sandbox.marketplace_jobs().is_empty(),
        "nothing reached the provider"
    );
    assert!(w.states().is_empty(), "a refused order is not recorded");

    let (result, warnings) = w.trigger(&order("2026-03-01", "2026-03-14")).await;
    let done = result.unwrap();
    assert_eq!(done.order.state, State::Accepted);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(w.sandbox.marketplace_jobs().len(), 1);
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
    assert_eq!(w.sandbox.marketplace_jobs().len(), 1);
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
    let sent = w.sandbox.marketplace_jobs();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].skip_exists_control);
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
    assert!(w.sandbox.marketplace_jobs()[0].test_mode);
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
    assert_eq!(
        (status, code_of(&v)),
        (200, code::INVALID_PROCESS_TIME),
        "{v}"
    );
    assert_eq!(v["Result"], false);
    let (_, v) = post_raw(s, raw("2026-03-05", "2026-03-01", false, false), API_KEY).await;
    assert_eq!(code_of(&v), code::INVALID_DATA, "{v}");
    let (_, v) = post_raw(s, raw("2026-03-01", "2026-03-05", false, false), API_KEY).await;
    assert_eq!(code_of(&v), 0, "{v}");
    assert!(v["Body"]["JobId"].as_str().is_some(), "{v}");
    let (_, v) = post_raw(s, raw("2026-03-05", "2026-03-06", false, false), API_KEY).await;
    assert_eq!(code_of(&v), code::ALREADY_SUCCESS, "{v}");
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
    assert_eq!(s.marketplace_jobs().len(), 3);
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
        text.contains(&format!("ErrorCode {}", code::ALREADY_SUCCESS)),
        "{text}"
    );
    assert_eq!(w.states(), vec![State::Rejected]);
    let recorded = &w.ledger.recent_payout_orders(1).unwrap()[0];
    assert!(
        recorded
            .message
            .as_deref()
            .unwrap()
            .contains("already ordered"),
        "{recorded:?}"
    );
}

#[tokio::test]
async fn a_busy_answer_is_retried_as_nothing_was_ordered() {
    let mut w = world().await;
    w.sandbox.marketplace_faults().busy.too_many.set(2);
    let done = w
        .trigger(&order("2026-03-01", "2026-03-05"))
        .await
        .0
        .unwrap();
    assert_eq!(done.order.state, State::Accepted);
    assert_eq!(w.sandbox.marketplace_jobs().len(), 1);
}

#[tokio::test]
async fn a_server_error_is_not_repeated_blind() {
    let mut w = world().await;
    w.sandbox.marketplace_faults().busy.server_errors.set(1);
    for skip in [false, true] {
        let o = Order {
            skip_exists_control: skip,
            ..order("2026-03-01", "2026-03-05")
        };
        let e = w.trigger(&o).await.0.unwrap_err();
        let text = e.to_string();
        if skip {
            // The first order's outcome is still unknown: no second one.
            assert!(matches!(e, PayoutError::Unresolved { .. }), "{text}");
        } else {
            assert!(matches!(e, PayoutError::Unknown { .. }), "{text}");
            assert!(text.contains("not repeated"), "{text}");
        }
    }
    assert_eq!(w.states(), vec![State::Unknown]);
    assert!(w.sandbox.marketplace_jobs().is_empty());
}

#[tokio::test]
async fn the_job_id_is_recorded_and_the_inquiry_reads_it_back() {
    let mut w = world().await;
    let done = w
        .trigger(&order("2026-03-01", "2026-03-05"))
        .await
        .0
        .unwrap();
    let job = &w.sandbox.marketplace_jobs()[0];
    assert_eq!(done.order.job_id.as_deref(), Some(job.job_id.as_str()));
    let inquiry = payout::inquire(&w.client, &job.job_id, fast_retry(3))
        .await
        .unwrap();
    assert_eq!(inquiry.verdict(), Verdict::Done);
    assert!(inquiry.any_success);
    assert_eq!(inquiry.earning, Some(job.earning));
    let e = payout::inquire(
        &w.client,
        "00000000-0000-0000-0000-000000000000",
        fast_retry(3),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("ErrorCode 404"), "{e}");

    // The binary reads it back too, and records what it said.
    let mut cmd = paydrop(&w.sandbox, w.dir.path());
    cmd.args(["payout", "status"]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("JobId {}", job.job_id)) && out.contains("done: 3 of 3"),
        "{out}"
    );
    let recorded = Ledger::open(&w.dir.path().join("ledger.db"))
        .unwrap()
        .payout_order(done.order.id)
        .unwrap()
        .unwrap();
    assert!(recorded.inquiry.unwrap().starts_with("done"));
}

#[tokio::test]
async fn a_partial_job_is_reported_as_partial_never_as_done() {
    let mut w = world_with(Outcome::Partial).await;
    w.trigger(&order("2026-03-02", "2026-03-03"))
        .await
        .0
        .unwrap();
    let job = w.sandbox.marketplace_jobs()[0].job_id.clone();
    let mut cmd = paydrop(&w.sandbox, w.dir.path());
    cmd.args(["payout", "status", &job]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 5, "{out}{err}");
    assert!(
        out.contains("PARTIAL: 1 of 3 results succeeded (AnySuccess true)"),
        "{out}"
    );
    assert!(out.contains("IBAN rejected"), "{out}");
}

#[tokio::test]
async fn after_a_lost_answer_the_range_is_inquired_never_ordered_blind() {
    let mut w = world().await;
    w.sandbox.marketplace_faults().lose_answer.set(1);
    let e = w
        .trigger(&order("2026-03-01", "2026-03-05"))
        .await
        .0
        .unwrap_err();
    assert!(matches!(e, PayoutError::Unknown { .. }), "{e}");
    assert!(
        e.to_string().contains("payout status JOBID --order 1"),
        "{e}"
    );
    // The provider did order it; its answer was lost.
    let jobs = w.sandbox.marketplace_jobs();
    assert_eq!(jobs.len(), 1);

    // Any order touching these dates is refused before any call, even
    // with --skip-exists-control.
    for skip in [false, true] {
        let o = Order {
            skip_exists_control: skip,
            ..order("2026-03-04", "2026-03-08")
        };
        let e = w.trigger(&o).await.0.unwrap_err();
        assert!(matches!(e, PayoutError::Unresolved { .. }), "{e}");
    }
    assert_eq!(w.sandbox.marketplace_jobs().len(), 1, "nothing was sent");
    // Dates elsewhere are fine.
    w.trigger(&order("2026-03-10", "2026-03-11"))
        .await
        .0
        .unwrap();

    // The JobId from the provider's panel resolves the order.
    let mut cmd = paydrop(&w.sandbox, w.dir.path());
    cmd.args(["payout", "status", &jobs[0].job_id, "--order", "1"]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("payout order #1") && out.contains("done"),
        "{out}"
    );
    let o = w.ledger.payout_order(1).unwrap().unwrap();
    assert_eq!(o.state, State::Accepted);
    assert_eq!(o.job_id.as_deref(), Some(jobs[0].job_id.as_str()));
    // Now the overlap is a plain AlreadyOrdered, named.
    let e = w
        .trigger(&order("2026-03-04", "2026-03-08"))
        .await
        .0
        .unwrap_err();
    assert!(
        matches!(e, PayoutError::Rule(RuleError::AlreadyOrdered { .. })),
        "{e}"
    );
}

#[tokio::test]
async fn an_order_the_panel_does_not_show_can_be_recorded_as_not_ordered() {
    let mut w = world().await;
    w.sandbox.marketplace_faults().busy.server_errors.set(1);
    w.trigger(&order("2026-03-01", "2026-03-05"))
        .await
        .0
        .unwrap_err();
    let mut cmd = paydrop(&w.sandbox, w.dir.path());
    cmd.args(["payout", "status", "--order", "1", "--not-ordered"]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(w.states(), vec![State::Rejected]);
    w.trigger(&order("2026-03-01", "2026-03-05"))
        .await
        .0
        .unwrap();
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
    assert_eq!(w.sandbox.marketplace_jobs().len(), 3);

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
