//! A part whose attempt went unanswered is not sent again blindly: paydrop
//! asks the provider's bulk inquiry (docs/providers/paywall.md §6.5, keyed by
//! the batch MerchantUniqueCode, sent as header and as query parameter) and
//! acts only on a definite answer. The provider is a hand-written stub
//! (tests/common_stub) whose answers are typed out from the pages: the
//! summary's root fields (`Result`, `TotalPaymentCount`, …), and for "not
//! found" the envelope with the SDK's `NoData` code, which is what paydrop
//! documents it believes.

mod common_stub;
mod common_submit;

use std::time::Duration;

use common_stub::{Start, Stub, SUMMARY};
use common_submit::{credentials, default_options, Spec, World, API_CLIENT, API_KEY};
use paydrop::ledger::State;
use paydrop::submit::{SubmitError, SubmitOptions, Submitted};
use paydrop::upload::Client;

/// The summary of a batch the provider has (root fields, bare, as the page
/// shows them).
const FOUND: &str = r#"{"Result": true, "TotalPaymentCount": 40, "TotalPaymentAmount": 5123.45,
  "TotalSuccessPaymentCount": 38, "TotalSuccessPaymentAmount": 5000.00,
  "TotalUnsuccessfulPaymentCount": 2, "TotalUnsuccessfulPaymentAmount": 123.45,
  "TotalUnprocessedPaymentCount": 0, "TotalUnprocessedPaymentAmount": 0}"#;

/// The provider's envelope saying it has nothing under the code.
const NOT_FOUND: &str =
    r#"{"ErrorCode": 3, "Result": false, "Message": "Kayıt bulunamadı", "Body": null}"#;

/// A client for the stub whose requests time out after 2 s: a [`Start::Hang`]
/// is an attempt whose bytes went out and whose answer never came.
fn impatient(stub: &Stub) -> Client {
    Client::new(
        &stub.base_url(),
        credentials(API_KEY, API_CLIENT),
        Duration::from_secs(2),
        Duration::from_secs(2),
    )
    .unwrap()
}

async fn submit(
    world: &World,
    stub: &Stub,
    opts: &SubmitOptions,
) -> Result<Submitted, SubmitError> {
    let path = world.path("payments.csv");
    if !path.exists() {
        world.generate("payments.csv", Spec::valid(40, 61));
    }
    world
        .submit_as(&path, &world.pattern, &impatient(stub), opts)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_inquiry_finds_is_recorded_accepted_not_sent_again() {
    let world = World::start().await;
    let stub = Stub::start(vec![Start::Hang], vec![(200, FOUND)]).await;

    let done = submit(&world, &stub, &default_options())
        .await
        .expect("found by the inquiry");

    let sub = &done.batch.submissions[0];
    assert_eq!((sub.state, sub.bulk_payment_id), (State::Accepted, None));
    assert!(
        sub.resolution
            .as_deref()
            .unwrap_or("")
            .contains("found by the bulk inquiry: the provider's bulk inquiry has it: 40 payments"),
        "{sub:#?}"
    );
    assert!(done
        .notices
        .iter()
        .any(|n| n.contains("found by the bulk inquiry")));
    assert_eq!(stub.starts().len(), 1, "sent once");
    // The key went both as header and as query parameter, with the keys.
    let asked: Vec<_> = stub
        .seen()
        .into_iter()
        .filter(|s| s.path == SUMMARY)
        .collect();
    assert_eq!(asked.len(), 1);
    let code = &sub.merchant_unique_code;
    assert_eq!(
        asked[0].headers["merchantuniquecode"].to_str().unwrap(),
        code
    );
    assert_eq!(
        asked[0].query.as_deref(),
        Some(format!("merchantuniquecode={code}").as_str())
    );
    assert_eq!(asked[0].headers["apikeypublic"].to_str().unwrap(), API_KEY);
    let attempts = world.ledger().attempts(sub.id).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("ambiguous"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_inquiry_does_not_have_is_sent_once_more_under_its_code() {
    let world = World::start().await;
    let stub = Stub::start(
        vec![Start::Hang, Start::Accept(9001)],
        vec![(200, NOT_FOUND)],
    )
    .await;

    let done = submit(&world, &stub, &default_options())
        .await
        .expect("sent again and accepted");

    let sub = &done.batch.submissions[0];
    assert_eq!(
        (sub.state, sub.bulk_payment_id),
        (State::Accepted, Some(9001))
    );
    let starts = stub.starts();
    assert_eq!(starts.len(), 2);
    assert_eq!(
        starts[0].text("MerchantUniqueCode"),
        starts[1].text("MerchantUniqueCode"),
        "the original code"
    );
    assert!(sub
        .resolution
        .as_deref()
        .unwrap_or("")
        .contains("not received"));
    assert!(done
        .notices
        .iter()
        .any(|n| n.contains("sent again under its original code")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_not_found_is_not_believed_before_the_grace_period() {
    let world = World::start().await;
    let stub = Stub::start(vec![Start::Hang], vec![(200, NOT_FOUND)]).await;
    let opts = SubmitOptions {
        inquiry_grace: Duration::from_secs(600),
        ..default_options()
    };
    match submit(&world, &stub, &opts).await {
        Err(SubmitError::Unknown { message, .. }) => {
            assert!(message.contains("believed 600s after it"), "{message}")
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
    assert_eq!(stub.starts().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_definite_answer_it_stays_unknown_until_a_later_pass_finds_it() {
    let world = World::start().await;
    let stub = Stub::start(
        vec![Start::Hang],
        // Summary and detailed query of the first pass, then the summary of
        // the second.
        vec![
            (404, ""),
            (500, r#"{"ErrorCode":500,"Result":false,"Message":"boom"}"#),
            (200, FOUND),
        ],
    )
    .await;
    let err = submit(&world, &stub, &default_options())
        .await
        .expect_err("unknown");
    let SubmitError::Unknown { message, .. } = &err else {
        panic!("expected Unknown, got {err:?}")
    };
    assert!(message.contains("query/summary: 404"), "{message}");
    assert!(message.contains("query: 500"), "{message}");
    assert_eq!(stub.starts().len(), 1);

    let done = submit(&world, &stub, &default_options())
        .await
        .expect("found on the second pass");
    assert_eq!(done.batch.submissions[0].state, State::Accepted);
    assert_eq!(stub.starts().len(), 1, "never sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_after_an_unanswered_attempt_is_unknown_not_rejected() {
    let world = World::start().await;
    // The provider is declared deduplicating, so the part is sent again
    // after the first attempt went unanswered; the second is refused. The
    // first may still be there: the outcome is unknown.
    let stub = Stub::start(
        vec![
            Start::Hang,
            Start::Answer(
                400,
                r#"{"ErrorCode":2,"Result":false,"Message":"InvalidData"}"#,
            ),
        ],
        vec![],
    )
    .await;
    let opts = SubmitOptions {
        provider_deduplicates: true,
        ..default_options()
    };
    match submit(&world, &stub, &opts).await {
        Err(SubmitError::Unknown { message, .. }) => {
            assert!(message.contains("InvalidData"), "{message}");
            assert!(
                message.contains("after an earlier attempt without an answer"),
                "{message}"
            );
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
    let batch = world.ledger().recent_batches(1).unwrap().remove(0);
    assert_eq!(batch.submissions[0].state, State::Unknown);
    assert_eq!(stub.starts().len(), 2);
}
