//! The fault switches: each counts down per request, and each leaves the
//! sandbox's records as a real provider's would be.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

fn request(sb: &paydrop_sandbox::Sandbox, form: &Form) -> reqwest::RequestBuilder {
    startdirect(sb, form.encode(), &KEYS)
}

#[tokio::test]
async fn too_many_requests_with_retry_after_counts_down() {
    let sb = sandbox(bulk_config()).await;
    let faults = sb.faults();
    faults.too_many.store(2, Ordering::SeqCst);
    faults.retry_after_secs.store(7, Ordering::SeqCst);
    let form = Form::payments(&p1_file(2), 1, "f-429");
    for _ in 0..2 {
        let r = request(&sb, &form).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        let a = answer(r).await;
        assert_eq!(
            (a.error_code(), a.json["Result"].as_bool()),
            (429, Some(false))
        );
    }
    assert!(sb.batches().is_empty(), "a 429 records nothing");
    post(&sb, &form).await.bulk_payment_id();
    assert_eq!(sb.requests(), 3);
}

#[tokio::test]
async fn server_errors_then_normal_service() {
    let sb = sandbox(bulk_config()).await;
    sb.faults().server_errors.store(1, Ordering::SeqCst);
    let form = Form::payments(&p1_file(2), 1, "f-500");
    let a = post(&sb, &form).await;
    assert_eq!((a.status, a.error_code()), (500, 500));
    assert!(sb.batches().is_empty());
    post(&sb, &form).await.bulk_payment_id();
    // The inquiry sits behind the same switches.
    sb.faults().server_errors.store(1, Ordering::SeqCst);
    assert_eq!(
        get(&sb, SUMMARY, &[("merchantuniquecode", "f-500")])
            .await
            .status,
        500
    );
    assert_eq!(
        get(&sb, SUMMARY, &[("merchantuniquecode", "f-500")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_connection_dropped_mid_body_records_nothing() {
    let sb = sandbox(bulk_config()).await;
    sb.faults().drop_mid_body.store(1, Ordering::SeqCst);
    // Big enough that the client is still sending when the sandbox cuts.
    let form = Form::payments(&p1_file(40_000), 1, "f-drop");
    let sent = request(&sb, &form).send().await;
    let e = sent.expect_err("no answer");
    assert!(!e.is_connect(), "bytes were sent: {e}");
    assert!(sb.batches().is_empty());
    post(&sb, &form).await.bulk_payment_id();
    assert_eq!(sb.requests(), 2);
}

#[tokio::test]
async fn accept_then_crash_records_and_calls_back_without_answering() {
    let receiver = Receiver::start().await;
    let sb = sandbox(bulk_config()).await;
    sb.faults().accept_then_crash.store(1, Ordering::SeqCst);
    let form = Form::payments(&p1_file(3), 1, "f-crash").text("CallbackAddress", &receiver.url);
    let e = request(&sb, &form).send().await.expect_err("no answer");
    assert!(!e.is_connect(), "{e}");
    assert_eq!(sb.batches().len(), 1, "processed and recorded");
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].data["MerchantUniqueCode"], "f-crash");
    // A resend under the same code is refused (the default): the client
    // must ask the inquiry, not retry.
    post(&sb, &form).await.refused(119);
}

#[tokio::test]
async fn the_delay_holds_every_answer() {
    let sb = sandbox(bulk_config()).await;
    sb.faults().set_delay(Duration::from_millis(300));
    let start = Instant::now();
    post(&sb, &Form::payments(&p1_file(1), 1, "f-slow"))
        .await
        .bulk_payment_id();
    assert!(start.elapsed() >= Duration::from_millis(300));
    let timed_out = request(&sb, &Form::payments(&p1_file(1), 1, "f-slow-2"))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(timed_out.unwrap_err().is_timeout());
    sb.faults().clear();
    assert_eq!(sb.faults().delay(), Duration::ZERO);
}

/// Refuse-then-accept: while the window is open nothing listens, so a
/// connect fails (nothing was sent); afterwards the same port accepts.
#[tokio::test]
async fn connections_are_refused_then_accepted_again() {
    let sb = sandbox(bulk_config()).await;
    let form = Form::payments(&p1_file(2), 1, "f-refused");
    sb.faults()
        .refuse_connections_for(Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = request(&sb, &form).send().await.expect_err("refused");
    assert!(e.is_connect(), "a connect error: {e}");
    assert_eq!(sb.requests(), 0, "nothing reached the sandbox");
    tokio::time::sleep(Duration::from_millis(500)).await;
    post(&sb, &form).await.bulk_payment_id();
    // Cleared early, it listens again at once.
    sb.faults().refuse_connections_for(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(request(&sb, &form).send().await.unwrap_err().is_connect());
    sb.faults().clear();
    let mut listening = false;
    for _ in 0..50 {
        if http()
            .get(format!("{}{SUMMARY}", sb.base_url()))
            .send()
            .await
            .is_ok()
        {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(listening);
}

#[tokio::test]
async fn it_listens_only_on_loopback() {
    let outside = "0.0.0.0:0".parse().unwrap();
    let err = paydrop_sandbox::serve(paydrop_sandbox::SandboxConfig::default(), outside)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
