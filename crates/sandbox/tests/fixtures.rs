//! The sandbox against the examples transcribed from the pages
//! (`tests/fixtures/paywall/`): it accepts the fixture payment files, and its
//! answers, callback `data`, hash and result lines have the fixtures' shape.

mod common;

use common::*;
use paydrop_sandbox::bulk::{self, callback_hash, outcome, ResultColumns};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn the_fixture_payment_files_are_accepted_as_sent() {
    let sb = sandbox(bulk_config()).await;
    for (name, pattern, rows) in [
        ("payments-pattern1.txt", 1, 3),
        ("payments-pattern3.txt", 3, 2),
    ] {
        let file = fixture_bytes(name);
        let a = post(&sb, &Form::payments(&file, pattern, name)).await;
        let id = a.bulk_payment_id();
        assert_eq!(a.json["Body"]["TotalRecords"], rows, "{name}");
        assert_eq!(sb.batch_file_bytes(id).unwrap(), file, "{name}");
        let batch = sb
            .batches()
            .into_iter()
            .find(|b| b.bulk_payment_id == id)
            .unwrap();
        assert_eq!((batch.file_pattern, batch.rows), (u16::from(pattern), rows));
        assert_eq!(batch.sha256, hex::encode(Sha256::digest(&file)));
    }
}

#[tokio::test]
async fn startdirect_answers_have_the_fixture_shapes() {
    let sb = sandbox(bulk_config()).await;
    let form = Form::payments(&fixture_bytes("payments-pattern1.txt"), 1, "batch-shape");
    let accepted = post(&sb, &form).await;
    assert!(accepted.accepted(), "{}", accepted.raw);
    assert_eq!(
        Shape::of(&accepted.raw),
        Shape::of(&fixture_text("startdirect-success.json"))
    );
    let refused = post(&sb, &form).await;
    refused.refused(119);
    assert_eq!(
        Shape::of(&refused.raw),
        Shape::of(&fixture_text("startdirect-refusal.json"))
    );
}

#[test]
fn the_hash_matches_the_vector_and_the_fixture_callbacks() {
    let v: Value = serde_json::from_str(&fixture_text("hash-vector.json")).unwrap();
    let key = v["key"].as_str().unwrap();
    let id = v["bulkPaymentId"].as_i64().unwrap();
    let code = v["merchantUniqueCode"].as_str().unwrap();
    assert_eq!(v["input"], format!("{key}###{id}###{code}"));
    assert_eq!(callback_hash(key, id, code), v["hash"].as_str().unwrap());
    for name in ["callback-data-single.json", "callback-data-partial.json"] {
        let data: Value = serde_json::from_str(&fixture_text(name)).unwrap();
        assert_eq!(data["Hash"], v["hash"], "{name}");
        assert_eq!(
            (
                data["BulkPaymentId"].as_i64(),
                data["MerchantUniqueCode"].as_str()
            ),
            (Some(id), Some(code))
        );
    }
}

/// Sends `file` with a callback and returns the callbacks received.
async fn callbacks_of(
    config: bulk::Config,
    file: &[u8],
    pattern: u8,
    expected: usize,
) -> (paydrop_sandbox::Sandbox, Vec<Received>) {
    let receiver = Receiver::start().await;
    let sb = sandbox(config).await;
    let form =
        Form::payments(file, pattern, "batch-fixture").text("CallbackAddress", &receiver.url);
    post(&sb, &form).await.bulk_payment_id();
    let got = receiver.wait_for(expected).await;
    (sb, got)
}

#[tokio::test]
async fn callback_data_has_exactly_the_fixture_keys_in_order() {
    let (_sb, single) =
        callbacks_of(bulk_config(), &fixture_bytes("payments-pattern1.txt"), 1, 1).await;
    assert_eq!(
        Shape::of(&single[0].data_raw),
        Shape::of(&fixture_text("callback-data-single.json"))
    );

    let mut config = bulk_config();
    config.callback.page_size = Some(2);
    let (_sb, pages) = callbacks_of(config, &p1_file(5), 1, 3).await;
    let second = pages.iter().find(|r| r.page() == 2).unwrap();
    assert_eq!(
        Shape::of(&second.data_raw),
        Shape::of(&fixture_text("callback-data-partial.json"))
    );
    assert_eq!(
        (
            &second.data["TotalPages"],
            &second.data["HasMorePages"],
            &second.data["LineCount"]
        ),
        (&Value::from(3), &Value::from(true), &Value::from(2))
    );
}

#[tokio::test]
async fn the_callback_hash_is_the_published_one_with_the_configured_key() {
    let mut config = bulk_config();
    config.webhook_hash_key = "demo-webhook-key".into();
    let (_sb, got) = callbacks_of(config, &fixture_bytes("payments-pattern1.txt"), 1, 1).await;
    let data = &got[0].data;
    let input = format!(
        "demo-webhook-key###{}###{}",
        data["BulkPaymentId"],
        data["MerchantUniqueCode"].as_str().unwrap()
    );
    assert_eq!(data["Hash"], hex::encode(Sha256::digest(input.as_bytes())));
    assert_eq!(
        (&data["HashFormat"], &data["HashKeyType"]),
        (&Value::from("BulkPayment"), &Value::from(4))
    );
}

/// The result lines of the fixture payment files against the fixture
/// result files: same column count, and the same values in every column
/// that does not depend on the time or on the bank's outcome.
#[tokio::test]
async fn result_lines_match_the_fixture_result_files() {
    let cases = [
        ("payments-pattern1.txt", 1, "open-card"),
        ("payments-pattern3.txt", 3, "insurance"),
    ];
    for (payments, pattern, kind) in cases {
        for (columns, count) in [(ResultColumns::Twenty, 20), (ResultColumns::Eighteen, 18)] {
            let mut config = bulk_config();
            config.callback.columns = columns;
            let (_sb, got) =
                callbacks_of(config.clone(), &fixture_bytes(payments), pattern, 1).await;
            let fixture = fixture_text(&format!("result-{kind}-{count}.txt"));
            let expected: Vec<Vec<&str>> =
                fixture.lines().map(|l| l.split(',').collect()).collect();
            let lines = got[0].lines();
            assert_eq!(lines.len(), expected.len(), "{kind} {count}");
            for (line, want) in lines.iter().zip(&expected) {
                let got: Vec<&str> = line.split(',').collect();
                assert_eq!(got.len(), count, "{line}");
                assert_eq!(want.len(), count);
                // Everything but dateTime (2) and the outcome (13 on).
                for i in (0..13).filter(|&i| i != 2) {
                    assert_eq!(got[i], want[i], "{kind} {count} column {i}: {line}");
                }
                let decline = outcome(config.seed, config.decline_rate, got[3]);
                assert_eq!(
                    got[13],
                    if decline.is_some() { "111" } else { "" },
                    "{line}"
                );
                if count == 20 {
                    assert_eq!(got[19], if decline.is_some() { "5" } else { "4" }, "{line}");
                }
            }
        }
    }
}

#[tokio::test]
async fn inquiry_answers_have_the_fixture_shapes() {
    let sb = sandbox(bulk_config()).await;
    let form = Form::payments(&fixture_bytes("payments-pattern1.txt"), 1, "batch-q");
    let id = post(&sb, &form).await.bulk_payment_id();
    wait_until(std::time::Duration::from_secs(10), || sb.batch_finished(id)).await;
    let page = get(
        &sb,
        &format!("{QUERY}?pageSize=2&pageNumber=1"),
        &[("merchantuniquecode", "batch-q")],
    )
    .await;
    assert_eq!(
        Shape::of(&page.raw),
        Shape::of(&fixture_text("query-answer.json"))
    );
    let summary = get(&sb, SUMMARY, &[("merchantuniquecode", "batch-q")]).await;
    assert_eq!(
        Shape::of(&summary.raw),
        Shape::of(&fixture_text("query-summary.json"))
    );
}

#[test]
fn shapes_tell_key_order_apart() {
    assert_eq!(
        Shape::of(r#"{"A":1,"B":{"C":[{"D":2}]}}"#),
        Shape::of(r#"{"A":9,"B":{"C":[{"D":"x"},{}]}}"#)
    );
    assert_ne!(Shape::of(r#"{"A":1,"B":2}"#), Shape::of(r#"{"B":2,"A":1}"#));
    assert_ne!(Shape::of(r#"{"A":{"B":1}}"#), Shape::of(r#"{"A":{"C":1}}"#));
    assert_ne!(
        Shape::of(r#"{"A":[{"B":1}]}"#),
        Shape::of(r#"{"A":[{"B":1,"C":2}]}"#)
    );
}
