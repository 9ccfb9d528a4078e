//! The result callback, received by a tiny axum receiver: the published
//! multipart shape, the Hash, the lines, pages (complete, shuffled,
//! repeated), gzip, retries.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use paydrop_sandbox::bulk::{
    self, callback_hash, outcome, CallbackCompression, PageOrder, ResultColumns, DECLINES,
};
use serde_json::Value;

/// Sends `file` (pattern 1 unless said) with `extra` fields to a fresh
/// sandbox and receiver; the callbacks once `n` arrived.
async fn run(
    config: bulk::Config,
    file: &[u8],
    extra: &[(&str, &str)],
    n: usize,
) -> (paydrop_sandbox::Sandbox, Receiver, Vec<Received>) {
    let receiver = Receiver::start().await;
    let sb = sandbox(config).await;
    let mut form = Form::payments(file, 1, "cb-batch").text("CallbackAddress", &receiver.url);
    for (k, v) in extra {
        form = form.set(k, v);
    }
    post(&sb, &form).await.bulk_payment_id();
    let got = receiver.wait_for(n).await;
    (sb, receiver, got)
}

#[tokio::test]
async fn one_page_in_the_published_shape() {
    let config = bulk_config();
    let (seed, rate) = (config.seed, config.decline_rate);
    let (sb, _r, got) = run(config, &p1_file(3), &[], 1).await;
    let cb = &got[0];
    let batch = &sb.batches()[0];
    assert_eq!(cb.part_names, ["data", "file"]);
    assert_eq!(cb.content_type.as_deref(), Some("text/plain"));
    let d = &cb.data;
    assert_eq!(d["BulkPaymentId"], batch.bulk_payment_id);
    assert_eq!(d["MerchantUniqueCode"], "cb-batch");
    assert_eq!(
        d["Hash"],
        callback_hash("sandbox-webhook-key", batch.bulk_payment_id, "cb-batch")
    );
    assert_eq!(
        (&d["LineCount"], &d["FileSize"]),
        (&Value::from(3), &Value::from(cb.file.len()))
    );
    assert_eq!(d["FileName"].as_str(), cb.file_name.as_deref());
    assert_eq!(
        (&d["IsCompressed"], &d["FileFormat"], &d["Type"]),
        (&Value::from(false), &Value::from("TXT"), &Value::from(1))
    );
    assert_eq!(
        (&d["PageNumber"], &d["TotalPages"], &d["HasMorePages"]),
        (&Value::from(1), &Value::from(1), &Value::from(false))
    );
    assert_eq!(d["ErrorMessage"], "");
    assert!(d["DurationTime"].as_f64().unwrap() >= 0.0);
    let lines = cb.lines();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 20, "{line}");
        let card = luhn(&format!("454360{:09}", i));
        assert_eq!(f[6], format!("454360******{}", &card[12..]), "masked card");
        assert!(!line.contains(&card), "a full card number: {line}");
        assert_eq!(
            (f[0], f[1], f[3], f[7], f[8]),
            (
                "1",
                &*(i + 1).to_string(),
                &*format!("pay-{i}"),
                "12/39",
                &*format!("{}.25", 10 + i)
            )
        );
        let declined = outcome(seed, rate, f[3]).is_some();
        assert_eq!(f[19], if declined { "5" } else { "4" });
    }
    // Counted once the receiver has answered, which may be just after it
    // handed the callback over.
    wait_until(Duration::from_secs(10), || sb.callbacks_delivered() == 1).await;
    let record = &sb.callbacks()[0];
    assert_eq!(
        (
            record.attempts,
            record.delivered,
            record.lines,
            record.resent
        ),
        (1, true, 3, false)
    );
}

#[tokio::test]
async fn declines_carry_bank_codes_and_the_failed_status() {
    let mut config = bulk_config();
    config.decline_rate = 1.0;
    let (_sb, _r, got) = run(config, &p1_file(30), &[], 1).await;
    let codes: Vec<&str> = DECLINES.iter().map(|d| d.bank_code).collect();
    for line in got[0].lines() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!((f[13], f[18], f[19]), ("111", "1", "5"), "{line}");
        assert!(
            codes.contains(&f[16]) && f[14] == f[16] && !f[17].is_empty(),
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_pre_authorisation_waits_for_settlement() {
    let mut config = bulk_config();
    config.decline_rate = 0.0;
    let (_sb, _r, got) = run(config, &p1_file(3), &[("Half2D", "true")], 1).await;
    assert!(got[0].lines().iter().all(|l| l.ends_with(",1,3")));
}

#[tokio::test]
async fn large_batches_come_in_pages_of_1000_complete_and_once() {
    let (sb, _r, got) = run(bulk_config(), &p1_file(2500), &[], 3).await;
    let pages: Vec<(u64, u64, bool, usize)> = got
        .iter()
        .map(|r| {
            (
                r.page(),
                r.data["TotalPages"].as_u64().unwrap(),
                r.data["HasMorePages"] == true,
                r.lines().len(),
            )
        })
        .collect();
    assert_eq!(
        pages,
        [(1, 3, true, 1000), (2, 3, true, 1000), (3, 3, false, 500)]
    );
    let mut codes: Vec<String> = got
        .iter()
        .flat_map(|r| r.lines())
        .map(|l| l.split(',').nth(3).unwrap().to_string())
        .collect();
    codes.sort_by_key(|c| c[4..].parse::<u32>().unwrap());
    assert_eq!(
        codes,
        (0..2500).map(|i| format!("pay-{i}")).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|r| r.data["Hash"] == got[0].data["Hash"]));
    // Counted once the receiver has answered, which may be just after it
    // handed the callback over.
    wait_until(Duration::from_secs(10), || sb.callbacks_delivered() == 3).await;
}

#[tokio::test]
async fn shuffled_pages_and_a_page_delivered_twice() {
    let mut config = bulk_config();
    config.callback.page_size = Some(10);
    config.callback.order = PageOrder::Shuffled;
    config.callback.repeat_page = Some(2);
    config.callback.page_delay = Duration::from_millis(5);
    let (sb, _r, got) = run(config, &p1_file(45), &[], 6).await;
    let order: Vec<u64> = got.iter().map(Received::page).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 2, 2, 3, 4, 5]);
    assert_ne!(&order[..5], &[1, 2, 3, 4, 5], "shuffled");
    assert_eq!(order[5], 2, "the repeat comes last");
    let more: Vec<bool> = got.iter().map(|r| r.data["HasMorePages"] == true).collect();
    assert_eq!(more, [true, true, true, true, true, false]);
    let mut by_page: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for r in &got {
        let lines = r.lines();
        if let Some(earlier) = by_page.insert(r.page(), lines.clone()) {
            assert_eq!(earlier, lines, "a repeated page holds the same lines");
        }
    }
    let all: Vec<String> = by_page
        .values()
        .flatten()
        .map(|l| l.split(',').nth(3).unwrap().to_string())
        .collect();
    assert_eq!(all, (0..45).map(|i| format!("pay-{i}")).collect::<Vec<_>>());
    // Counted once the receiver has answered, which may be just after it
    // handed the callback over.
    wait_until(Duration::from_secs(10), || sb.callbacks_delivered() == 6).await;
}

#[tokio::test]
async fn gzip_when_the_request_asks_for_it() {
    let (_sb, _r, got) = run(
        bulk_config(),
        &p1_file(40),
        &[("CallbackBodyCompression", "true")],
        1,
    )
    .await;
    let cb = &got[0];
    assert_eq!(cb.data["IsCompressed"], true);
    assert_eq!(cb.content_type.as_deref(), Some("application/gzip"));
    assert!(cb.file_name.as_deref().unwrap().ends_with(".txt.gz"));
    assert_eq!(&cb.file[..2], [0x1f, 0x8b]);
    assert_eq!(
        cb.data["FileSize"],
        cb.file.len(),
        "the size of what was sent"
    );
    assert_eq!(cb.lines().len(), 40);
    assert!(cb.lines().iter().all(|l| l.split(',').count() == 20));
}

#[tokio::test]
async fn compression_can_be_forced_either_way() {
    let mut always = bulk_config();
    always.callback.compression = CallbackCompression::Always;
    let (_sb, _r, got) = run(always, &p1_file(2), &[], 1).await;
    assert_eq!(got[0].data["IsCompressed"], true);
    let mut never = bulk_config();
    never.callback.compression = CallbackCompression::Never;
    let (_sb, _r, got) = run(
        never,
        &p1_file(2),
        &[("CallbackBodyCompression", "true")],
        1,
    )
    .await;
    assert_eq!(got[0].data["IsCompressed"], false);
}

#[tokio::test]
async fn eighteen_columns_crlf_file_first_and_no_paging_when_configured() {
    let mut config = bulk_config();
    config.callback.columns = ResultColumns::Eighteen;
    config.callback.crlf = true;
    config.callback.file_part_first = true;
    config.callback.page_size = None;
    config.callback.paging_fields = false;
    let (_sb, _r, got) = run(config, &p1_file(1200), &[], 1).await;
    let cb = &got[0];
    assert_eq!(cb.part_names, ["file", "data"]);
    assert!(cb.data.get("PageNumber").is_none() && cb.data.get("HasMorePages").is_none());
    let text = cb.text();
    assert_eq!(text.matches("\r\n").count(), 1200);
    assert!(text.lines().all(|l| l.split(',').count() == 18));
}

#[tokio::test]
async fn insurance_lines_carry_the_identity_number() {
    let receiver = Receiver::start().await;
    let sb = sandbox(bulk_config()).await;
    let file = fixture_bytes("payments-pattern3.txt");
    let form = Form::payments(&file, 3, "cb-ins").text("CallbackAddress", &receiver.url);
    post(&sb, &form).await.bulk_payment_id();
    let got = receiver.wait_for(1).await;
    let lines = got[0].lines();
    let f: Vec<&str> = lines[0].split(',').collect();
    assert_eq!((f[0], f[6], f[7]), ("2", "454360******7890", "12345678950"));
    let f: Vec<&str> = lines[1].split(',').collect();
    assert_eq!((f[6], f[7]), ("540061******1231", "7341029584"));
}

#[tokio::test]
async fn a_failed_delivery_is_retried_until_answered() {
    let receiver = Receiver::start().await;
    receiver.fail_next(2);
    let sb = sandbox(bulk_config()).await;
    let form = Form::payments(&p1_file(3), 1, "cb-retry").text("CallbackAddress", &receiver.url);
    post(&sb, &form).await.bulk_payment_id();
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1);
    wait_until(Duration::from_secs(5), || !sb.callbacks().is_empty()).await;
    let record = &sb.callbacks()[0];
    assert_eq!((record.attempts, record.delivered), (3, true));
    // Counted once the receiver has answered, which may be just after it
    // handed the callback over.
    wait_until(Duration::from_secs(10), || sb.callbacks_delivered() == 1).await;
}

#[tokio::test]
async fn an_unreachable_address_is_given_up_after_the_attempts() {
    let mut config = bulk_config();
    config.callback.attempts = 3;
    let sb = sandbox(config).await;
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let form = Form::payments(&p1_file(3), 1, "cb-gone").text(
        "CallbackAddress",
        &format!("http://127.0.0.1:{port}/results"),
    );
    post(&sb, &form).await.bulk_payment_id();
    wait_until(Duration::from_secs(10), || !sb.callbacks().is_empty()).await;
    let record = &sb.callbacks()[0];
    assert_eq!((record.attempts, record.delivered), (3, false));
    assert_eq!(sb.callbacks_delivered(), 0);
}

#[tokio::test]
async fn no_callback_without_an_address() {
    let sb = sandbox(bulk_config()).await;
    let id = post(&sb, &Form::payments(&p1_file(3), 1, "cb-none"))
        .await
        .bulk_payment_id();
    wait_until(Duration::from_secs(5), || sb.batch_finished(id)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sb.callbacks().is_empty());
}
