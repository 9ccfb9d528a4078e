//! What the client sends and reads, checked against examples transcribed
//! from the provider's pages (tests/fixtures/paywall, written from the pages
//! and never from paydrop's constants): the built-in patterns' columns, the
//! startdirect form fields and their values, the startdirect answer, and the
//! bulk inquiry's answers.

mod common_stub;
mod common_submit;

use std::path::PathBuf;

use common_stub::{Start, Stub, QUERY, SUMMARY};
use common_submit::{client_for, credentials, default_options, Spec, World, API_CLIENT, API_KEY};
use paydrop::inquiry::Inquiry;
use paydrop::ledger::State;
use paydrop::pattern::Registry;
use paydrop::validate::{validate_reader, Hooks, Options};

fn fixture(name: &str) -> String {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "paywall",
        name,
    ]
    .iter()
    .collect();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The field names of `startdirect-fields.txt`, in the page's order.
fn published_fields() -> Vec<String> {
    fixture("startdirect-fields.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn the_built_in_patterns_have_the_published_columns() {
    let registry = Registry::load(None).unwrap();
    for (id, file) in [(1, "pattern1-columns.txt"), (3, "pattern3-columns.txt")] {
        let published: Vec<String> = fixture(file)
            .trim()
            .split(',')
            .map(str::to_string)
            .collect();
        let ours: Vec<String> = registry
            .get(id)
            .unwrap()
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(ours, published, "pattern {id}");
    }
}

#[test]
fn published_pattern_3_rows_with_a_tckn_and_a_vkn_validate() {
    let registry = Registry::load(None).unwrap();
    let rows = fixture("pattern3-row.txt");
    let report = validate_reader(
        rows.as_bytes(),
        registry.get(3).unwrap(),
        &Options::default(),
        Hooks::default(),
    )
    .unwrap();
    assert!(report.is_valid(), "{:#?}", report.errors);
    assert!(!report.header_row);
    assert_eq!(report.rows_valid, 2);
    assert_eq!(
        report.totals.iter().next().unwrap().amount.to_string(),
        "361.95"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_carries_the_published_fields_and_the_published_answer_is_read() {
    let answer: &'static str = Box::leak(fixture("startdirect-answer.json").into_boxed_str());
    let stub = Stub::start(vec![Start::Answer(200, answer), Start::Accept(7)], vec![]).await;
    let client = client_for(&stub.base_url(), credentials(API_KEY, API_CLIENT));
    let world = World::start().await;
    let (path, generated) = world.generate("fields.csv", Spec::valid(25, 81));

    let done = world
        .submit_as(&path, &world.pattern, &client, &default_options())
        .await
        .expect("accepted");

    let sub = &done.batch.submissions[0];
    assert_eq!(
        (sub.state, sub.bulk_payment_id),
        (State::Accepted, Some(58120))
    );
    let seen = stub.starts().remove(0);
    let published = published_fields();
    assert!(
        seen.fields.iter().all(|f| published.contains(f)),
        "{:?} not all in {published:?}",
        seen.fields
    );
    // No CallbackAddress without one; File last; the rest in the page's order.
    let expected: Vec<&str> = published
        .iter()
        .map(String::as_str)
        .filter(|f| *f != "File" && *f != "CallbackAddress")
        .chain(["File"])
        .collect();
    assert_eq!(seen.fields, expected);
    assert_eq!(seen.text("FileFormat"), Some("5"));
    assert_eq!(seen.text("FilePattern"), Some("1"));
    assert_eq!(seen.text("CurrencyId"), Some("1"));
    let amount = seen.text("Amount").unwrap();
    assert!(
        amount.bytes().all(|b| b.is_ascii_digit() || b == b'.') && amount.contains('.'),
        "a plain decimal with '.': {amount}"
    );
    assert_eq!(
        amount.parse::<rust_decimal::Decimal>().unwrap(),
        generated.totals.amount(common_submit::try_currency())
    );
    // The File part as in the provider's GZip example.
    assert_eq!(seen.file_name.as_deref(), Some("fields.csv.gz"));
    assert_eq!(seen.file_type.as_deref(), Some("application/gzip"));
    assert_eq!(seen.file, std::fs::read(&path).unwrap());
    assert!(seen.headers.get("content-encoding").is_none());
    assert!(seen.complete);

    // With a callback address, it is sent.
    let (other, _) = world.generate("callback.csv", Spec::valid(5, 82));
    let opts = paydrop::submit::SubmitOptions {
        callback_address: Some("https://merchant.example/paydrop/cb".into()),
        ..default_options()
    };
    world
        .submit_as(&other, &world.pattern, &client, &opts)
        .await
        .expect("accepted");
    let seen = stub.starts().remove(1);
    assert_eq!(
        seen.text("CallbackAddress"),
        Some("https://merchant.example/paydrop/cb")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_inquiry_answers_read_as_found() {
    let summary: &'static str = Box::leak(fixture("bulk-query-summary.json").into_boxed_str());
    let paged: &'static str = Box::leak(fixture("bulk-query.json").into_boxed_str());
    // The summary alone; then a summary that is not there and the paged query.
    let stub = Stub::start(vec![], vec![(200, summary), (404, ""), (200, paged)]).await;
    let client = client_for(&stub.base_url(), credentials(API_KEY, API_CLIENT));
    for _ in 0..2 {
        match client.inquire("fixture-batch-0001").await {
            Inquiry::Found { summary, .. } => {
                assert!(summary.contains("3 payments, amount 361.95"), "{summary}")
            }
            other => panic!("expected Found, got {other:?}"),
        }
    }
    let asked = stub.seen();
    assert_eq!(asked.len(), 3);
    assert!(asked[..2].iter().all(|s| s.path == SUMMARY));
    assert_eq!(asked[2].path, QUERY);
    assert!(
        asked[2].query.as_deref().unwrap().contains("pageSize=1"),
        "{:?}",
        asked[2].query
    );
}
