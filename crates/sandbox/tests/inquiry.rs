//! The bulk inquiry (query and summary) and the callback resend: they
//! answer from exactly what the sandbox accepted, so a client can learn
//! whether an upload whose answer it lost arrived.

mod common;

use std::time::Duration;

use common::*;
use paydrop_sandbox::bulk::{outcome, status};
use rust_decimal::Decimal;
use serde_json::Value;

fn decimal(v: &Value) -> Decimal {
    // The answer's amounts are exact JSON numbers; their text is the value.
    v.to_string()
        .parse()
        .unwrap_or_else(|_| panic!("not a decimal: {v}"))
}

#[tokio::test]
async fn before_the_batch_finishes_its_payments_are_created_then_final() {
    let mut config = bulk_config();
    config.callback.delay = Duration::from_millis(600);
    config.decline_rate = 0.3;
    let (seed, rate) = (config.seed, config.decline_rate);
    let sb = sandbox(config).await;
    let id = post(&sb, &Form::payments(&p1_file(20), 1, "q-1"))
        .await
        .bulk_payment_id();

    let early = get(
        &sb,
        &format!("{QUERY}?pageSize=1000&pageNumber=1"),
        &[("merchantuniquecode", "q-1")],
    )
    .await;
    assert_eq!(early.status, 200, "{}", early.raw);
    assert_eq!(early.json["Result"], true);
    assert_eq!(early.json["TotalPaymentCount"], 20);
    assert_eq!(decimal(&early.json["TotalPaymentAmount"]), p1_total(20));
    assert_eq!(early.json["TotalSuccessPaymentCount"], 0);
    let items = early.json["Payments"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert!(items.iter().all(|p| p["Status"] == status::CREATED));

    wait_until(Duration::from_secs(10), || sb.batch_finished(id)).await;
    let done = get(
        &sb,
        &format!("{QUERY}?pageSize=1000&pageNumber=1"),
        &[("merchantuniquecode", "q-1")],
    )
    .await;
    let items = done.json["Payments"].as_array().unwrap();
    let (mut ok, mut ok_sum, mut failed, mut failed_sum) = (0, Decimal::ZERO, 0, Decimal::ZERO);
    for (i, p) in items.iter().enumerate() {
        let code = format!("pay-{i}");
        assert_eq!(p["MerchantUniqueCode"], code.as_str());
        assert_eq!(
            decimal(&p["Amount"]),
            Decimal::new((10 + i as i64) * 100 + 25, 2)
        );
        assert_eq!(p["Scope"], 1);
        match outcome(seed, rate, &code) {
            None => {
                assert_eq!(
                    (&p["Status"], &p["ErrorMessage"]),
                    (&Value::from(4), &Value::Null)
                );
                ok += 1;
                ok_sum += decimal(&p["Amount"]);
            }
            Some(d) => {
                assert_eq!(
                    (&p["Status"], &p["ErrorMessage"]),
                    (&Value::from(5), &Value::from(d.message))
                );
                failed += 1;
                failed_sum += decimal(&p["Amount"]);
            }
        }
    }
    assert!(failed > 0 && ok > 0, "a decline rate of 0.3 over 20 rows");
    assert_eq!(done.json["TotalSuccessPaymentCount"], ok);
    assert_eq!(decimal(&done.json["TotalSuccessPaymentAmount"]), ok_sum);
    assert_eq!(done.json["TotalUnsuccessfulPaymentCount"], failed);
    assert_eq!(
        decimal(&done.json["TotalUnsuccessfulPaymentAmount"]),
        failed_sum
    );
    assert_eq!(done.json["TotalUnprocessedPaymentCount"], 0);
}

#[tokio::test]
async fn the_code_may_come_as_a_header_or_a_query_parameter() {
    let sb = sandbox(bulk_config()).await;
    post(&sb, &Form::payments(&p1_file(3), 1, "q-where"))
        .await
        .bulk_payment_id();
    let by_header = get(&sb, SUMMARY, &[("merchantuniquecode", "q-where")]).await;
    let by_query = get(&sb, &format!("{SUMMARY}?merchantUniqueCode=q-where"), &[]).await;
    let by_header_paged = get(
        &sb,
        QUERY,
        &[
            ("merchantuniquecode", "q-where"),
            ("pagesize", "2"),
            ("pagenumber", "2"),
        ],
    )
    .await;
    for a in [&by_header, &by_query, &by_header_paged] {
        assert_eq!(
            (a.status, &a.json["TotalPaymentCount"]),
            (200, &Value::from(3)),
            "{}",
            a.raw
        );
    }
    assert!(
        by_header.json.get("Payments").is_none(),
        "the summary has no payments"
    );
    assert_eq!(
        by_header_paged.json["Payments"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn pages_of_payments_cover_the_batch_once() {
    let sb = sandbox(bulk_config()).await;
    post(&sb, &Form::payments(&p1_file(250), 1, "q-pages"))
        .await
        .bulk_payment_id();
    let mut seen = Vec::new();
    for page in 1..=3 {
        // The page spells the page number `geNumber`; both are read.
        let name = if page == 2 { "geNumber" } else { "pageNumber" };
        let a = get(
            &sb,
            &format!("{QUERY}?pageSize=100&{name}={page}"),
            &[("merchantuniquecode", "q-pages")],
        )
        .await;
        assert_eq!(
            (
                &a.json["PageNumber"],
                &a.json["PageSize"],
                &a.json["TotalPages"]
            ),
            (&Value::from(page), &Value::from(100), &Value::from(3))
        );
        for p in a.json["Payments"].as_array().unwrap() {
            seen.push((
                p["PaymentId"].as_i64().unwrap(),
                p["MerchantUniqueCode"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert_eq!(seen.len(), 250);
    let codes: Vec<String> = (0..250).map(|i| format!("pay-{i}")).collect();
    assert_eq!(
        seen.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
        codes
    );
    assert!(
        seen.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "consecutive PaymentIds"
    );
    let past = get(
        &sb,
        &format!("{QUERY}?pageSize=100&pageNumber=4"),
        &[("merchantuniquecode", "q-pages")],
    )
    .await;
    assert_eq!(past.json["Payments"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn inquiry_refusals() {
    let sb = sandbox(bulk_config()).await;
    post(&sb, &Form::payments(&p1_file(3), 1, "q-r"))
        .await
        .bulk_payment_id();
    let code = [("merchantuniquecode", "q-r")];
    assert!(
        get(&sb, &format!("{QUERY}?pageSize=1001&pageNumber=1"), &code)
            .await
            .refused(2)
            .contains("1000")
    );
    assert!(get(&sb, &format!("{QUERY}?pageNumber=1"), &code)
        .await
        .refused(2)
        .contains("pageSize"));
    assert!(get(&sb, &format!("{QUERY}?pageSize=10"), &code)
        .await
        .refused(2)
        .contains("pageNumber"));
    assert!(
        get(&sb, &format!("{QUERY}?pageSize=10&pageNumber=0"), &code)
            .await
            .refused(2)
            .contains("from 1")
    );
    assert!(get(&sb, SUMMARY, &[])
        .await
        .refused(2)
        .contains("merchantuniquecode"));
    assert!(get(&sb, SUMMARY, &[("merchantuniquecode", "never-sent")])
        .await
        .refused(3)
        .contains("no bulk payment"));
    let no_keys = answer(
        http()
            .get(format!("{}{SUMMARY}?merchantuniquecode=q-r", sb.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((no_keys.status, no_keys.error_code()), (401, 4));
}

#[tokio::test]
async fn the_answer_can_sit_in_the_envelope() {
    let mut config = bulk_config();
    config.inquiry_in_envelope = true;
    let sb = sandbox(config).await;
    post(&sb, &Form::payments(&p1_file(3), 1, "q-env"))
        .await
        .bulk_payment_id();
    let a = get(&sb, SUMMARY, &[("merchantuniquecode", "q-env")]).await;
    assert_eq!(
        (&a.json["ErrorCode"], &a.json["Result"]),
        (&Value::from(0), &Value::from(true))
    );
    assert_eq!(a.json["Body"]["TotalPaymentCount"], 3);
}

/// An upload processed and recorded whose answer never came: the inquiry
/// shows it, the way a client learns it arrived.
#[tokio::test]
async fn after_accept_then_crash_the_inquiry_shows_the_batch() {
    let sb = sandbox(bulk_config()).await;
    sb.faults()
        .accept_then_crash
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let sent = startdirect(
        &sb,
        Form::payments(&p1_file(7), 1, "q-crash").encode(),
        &KEYS,
    )
    .send()
    .await;
    assert!(sent.is_err(), "no answer came: {sent:?}");
    assert!(!sent.unwrap_err().is_connect(), "the request was sent");
    let a = get(&sb, SUMMARY, &[("merchantuniquecode", "q-crash")]).await;
    assert_eq!(
        (a.status, &a.json["TotalPaymentCount"]),
        (200, &Value::from(7)),
        "{}",
        a.raw
    );
    assert_eq!(decimal(&a.json["TotalPaymentAmount"]), p1_total(7));
    assert_eq!(sb.batches().len(), 1);
    // And a code that never arrived is not found.
    get(&sb, SUMMARY, &[("merchantuniquecode", "q-never")])
        .await
        .refused(3);
}

async fn resend(sb: &paydrop_sandbox::Sandbox, body: Value) -> Answer {
    let mut request = http()
        .post(format!("{}{SEND_CALLBACK}", sb.base_url()))
        .json(&body);
    for (k, v) in KEYS {
        request = request.header(k, v);
    }
    answer(request.send().await.unwrap()).await
}

#[tokio::test]
async fn the_callback_can_be_sent_again_compressed() {
    let receiver = Receiver::start().await;
    let mut config = bulk_config();
    config.today = Some(chrono::NaiveDate::from_ymd_opt(2025, 9, 1).unwrap());
    let sb = sandbox(config).await;
    let form = Form::payments(&p1_file(5), 1, "q-again").text("CallbackAddress", &receiver.url);
    let id = post(&sb, &form).await.bulk_payment_id();
    let first = receiver.wait_for(1).await;
    assert_eq!(first[0].data["IsCompressed"], false);

    let a = resend(&sb, serde_json::json!({"Date": "2025-09-01", "MerchantUniqueCode": "q-again", "CallbackBodyCompression": true})).await;
    assert!(a.accepted(), "{}", a.raw);
    assert!(a.json["Body"].is_null());
    let both = receiver.wait_for(2).await;
    assert_eq!(
        (
            &both[1].data["IsCompressed"],
            &both[1].data["BulkPaymentId"]
        ),
        (&Value::from(true), &Value::from(id))
    );
    assert_eq!(both[1].lines(), first[0].lines(), "the same results");
    wait_until(Duration::from_secs(5), || sb.callbacks().len() == 2).await;
    assert!(sb.callbacks()[1].resent && sb.callbacks()[1].compressed);

    resend(
        &sb,
        serde_json::json!({"Date": "2025-08-31", "MerchantUniqueCode": "q-again"}),
    )
    .await
    .refused(3);
    resend(
        &sb,
        serde_json::json!({"Date": "2025-08-01", "MerchantUniqueCode": "q-again"}),
    )
    .await
    .refused(2);
    resend(&sb, serde_json::json!({"MerchantUniqueCode": "q-again"}))
        .await
        .refused(2);
    resend(
        &sb,
        serde_json::json!({"Date": "2025-09-01", "MerchantUniqueCode": "other"}),
    )
    .await
    .refused(3);
    post(&sb, &Form::payments(&p1_file(1), 1, "q-nocb"))
        .await
        .bulk_payment_id();
    resend(
        &sb,
        serde_json::json!({"date": "2025-09-01", "merchantUniqueCode": "q-nocb"}),
    )
    .await
    .refused(163);
}
