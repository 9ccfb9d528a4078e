//! Submissions that must not happen or must not succeed: the same file twice
//! (unless forced), an invalid file, refusals by the provider (whose message
//! reaches the user verbatim, and which are never retried); and the notice of
//! the provider's 23:00–00:00 window.

mod common_submit;

use chrono::{TimeZone, Utc};
use common_submit::{
    assert_notices, client_for, credentials, default_options, file_sha, generate_to, Spec, World,
};
use paydrop::ledger::State;
use paydrop::pattern::Pattern;
use paydrop::submit::{SubmitError, Submitted};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_file_is_refused_unless_forced_and_then_gets_new_codes() {
    let world = World::start().await;
    let (path, _) = world.generate("twice.csv", Spec::valid(500, 61));
    let sha = file_sha(&path);
    let opts = default_options();
    let first = world.submit(&path, &opts).await.expect("first submit");
    let first_sub = first.batch.submissions[0].clone();
    let first_id = first_sub.bulk_payment_id.expect("accepted");

    // Again: refused before anything is sent, naming the earlier batch.
    let err = world.submit(&path, &opts).await.expect_err("refused");
    match &err {
        SubmitError::AlreadySubmitted { sha: s, earlier } => {
            assert_eq!(s, &sha);
            assert!(
                earlier.starts_with(&format!("BulkPaymentId {first_id} on ")),
                "{earlier}"
            );
            assert!(
                earlier.ends_with(&format!("(batch {})", first.batch.id)),
                "{earlier}"
            );
        }
        other => panic!("expected AlreadySubmitted, got {other:?}"),
    }
    assert!(err
        .to_string()
        .contains(&format!("BulkPaymentId {first_id}")));
    assert_eq!(world.sandbox.requests(), 1, "nothing reached the sandbox");
    assert_eq!(world.sandbox.batches().len(), 1);
    // The binary says the same, with exit code 3.
    let cli = world.run(world.cli_submit(&path, &[])).await;
    cli.expect_code(3);
    assert!(
        cli.stderr.contains(&format!("BulkPaymentId {first_id}")),
        "{}",
        cli.all()
    );
    assert_eq!(world.sandbox.requests(), 1, "nothing reached the sandbox");

    // Forced: sent again under a new code, recorded as a second batch.
    let forced_opts = paydrop::submit::SubmitOptions {
        force: true,
        ..opts.clone()
    };
    let forced = world
        .submit(&path, &forced_opts)
        .await
        .expect("forced submit");
    let forced_sub = &forced.batch.submissions[0];
    assert_eq!(forced.batch.generation, 1);
    assert_ne!(forced.batch.id, first.batch.id);
    assert_eq!(
        forced_sub.merchant_unique_code,
        format!("{}-f1", first_sub.merchant_unique_code)
    );
    assert_notices(
        &forced,
        &forced_opts,
        &["--force: sending content already submitted 1 time(s) again, with new codes"],
    );
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got.iter().all(|b| b.sha256 == sha));
    assert_eq!(got[0].merchant_unique_code, first_sub.merchant_unique_code);
    assert_eq!(got[1].merchant_unique_code, forced_sub.merchant_unique_code);
    assert_eq!(forced_sub.bulk_payment_id, Some(got[1].bulk_payment_id));
    assert_ne!(got[1].bulk_payment_id, first_id);
    assert_eq!(world.ledger().batches_for(&sha).unwrap().len(), 2);

    // A third, unforced submit names the latest batch.
    match world.submit(&path, &opts).await {
        Err(SubmitError::AlreadySubmitted { earlier, .. }) => assert!(
            earlier.starts_with(&format!("BulkPaymentId {} on ", got[1].bulk_payment_id)),
            "{earlier}"
        ),
        other => panic!("expected AlreadySubmitted, got {other:?}"),
    }
    assert_eq!(world.sandbox.requests(), 2);
}

/// Submits a fresh valid file with `opts` changed by `tweak`, expecting a
/// refusal of part 1 after exactly one attempt and nothing recorded at the
/// sandbox; returns the refusal's message.
async fn refused(
    world: &World,
    path: &std::path::Path,
    pattern: &Pattern,
    client: &paydrop::upload::Client,
    tweak: impl FnOnce(&mut paydrop::submit::SubmitOptions),
) -> String {
    let sha = file_sha(path);
    let mut opts = default_options();
    tweak(&mut opts);
    let requests = world.sandbox.requests();
    let err = world
        .submit_as(path, pattern, client, &opts)
        .await
        .expect_err("refused");
    let message = match err {
        SubmitError::Rejected {
            part: 1,
            ref code,
            ref message,
        } => {
            assert_eq!(code, &paydrop::submit::merchant_unique_code(&sha, 1, 1, 0));
            message.clone()
        }
        other => panic!("expected Rejected for part 1, got {other:?}"),
    };
    assert_eq!(
        world.sandbox.requests(),
        requests + 1,
        "a refusal is not retried"
    );
    assert!(world.sandbox.batches().is_empty());
    let sub = &world.only_batch_for(&sha).submissions[0];
    assert_eq!(
        (sub.state, sub.attempts, sub.bulk_payment_id),
        (State::Rejected, 1, None)
    );
    assert_eq!(sub.message.as_deref(), Some(message.as_str()));
    let attempts = world.ledger().attempts(sub.id).unwrap();
    assert_eq!(attempts[0].outcome.as_deref(), Some("rejected"));
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_currency_id_is_refused_with_the_providers_message() {
    let world = World::start().await;
    let (path, _) = world.generate("currency.csv", Spec::valid(300, 71));
    let message = refused(&world, &path, &world.pattern, &world.client, |o| {
        o.currency_id = 99
    })
    .await;
    assert_refusal(
        &message,
        "ErrorCode 53: CurrencyId 99 is not a known currency",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_in_other_currencies_are_refused_before_sending() {
    // A custom pattern 2: pattern 1 plus a currency column; generated rows
    // are in TRY, USD and EUR. One submission carries one CurrencyId, so such
    // a file is refused locally and nothing reaches the provider.
    let src = include_str!("../crates/paydrop/patterns/1-open-card-simple.toml")
        .replacen("id = 1\n", "id = 2\n", 1)
        + "\n[[columns]]\nname = \"currency\"\ntype = \"currency\"\ncurrency = true\n";
    let pattern = Pattern::from_toml(&src, "test pattern 2").expect("pattern 2 is valid");
    let world = World::start().await;
    let path = world.path("mixed.csv");
    generate_to(&path, &pattern, Spec::valid(300, 72));
    let opts = default_options();
    match world.submit_as(&path, &pattern, &world.client, &opts).await {
        Err(SubmitError::Currency { found, expected }) => {
            assert_eq!(expected, "TRY");
            assert!(found.contains("USD") && found.contains("EUR"), "{found}");
        }
        other => panic!("expected a currency refusal, got {other:?}"),
    }
    assert_eq!(world.sandbox.requests(), 0, "nothing was sent");
    assert!(world.ledger().recent_batches(10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_field_is_refused_with_the_providers_message() {
    let world = World::start().await;
    let (path, _) = world.generate("garbled.csv", Spec::valid(300, 73));
    let message = refused(&world, &path, &world.pattern, &world.client, |o| {
        o.callback_address = Some("not a url".into())
    })
    .await;
    assert_refusal(
        &message,
        "ErrorCode 166: CallbackAddress is not an absolute http(s) URL",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_are_refused_once_and_not_retried() {
    let world = World::start().await;
    let (path, _) = world.generate("keys.csv", Spec::valid(300, 74));
    let wrong = client_for(
        &world.sandbox.base_url(),
        credentials("wrong-key", common_submit::API_CLIENT),
    );
    let message = refused(&world, &path, &world.pattern, &wrong, |_| {}).await;
    assert_refusal(
        &message,
        "apikeypublic / apiclientpublic are not valid for this merchant",
    );

    // With the keys fixed, the same submit resends the refused part under
    // its code and it is accepted: one batch at the sandbox and in the ledger.
    let sha = file_sha(&path);
    let refused_sub = world.only_batch_for(&sha).submissions[0].clone();
    let done = world
        .submit(&path, &default_options())
        .await
        .expect("accepted now");
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(world.sandbox.requests(), 2);
    let sub = &world.only_batch_for(&sha).submissions[0];
    assert_eq!(done.batch.id, refused_sub.batch_id);
    assert_eq!(sub.merchant_unique_code, refused_sub.merchant_unique_code);
    assert_eq!(got[0].merchant_unique_code, sub.merchant_unique_code);
    assert_eq!(
        (sub.state, sub.bulk_payment_id, sub.attempts),
        (State::Accepted, Some(got[0].bulk_payment_id), 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_never_sent() {
    let world = World::start().await;
    let (path, generated) = world.generate(
        "invalid.csv",
        Spec {
            error_rate: 0.02,
            ..Spec::valid(500, 81)
        },
    );
    assert_eq!(generated.planted.len(), 10);

    match world.submit(&path, &default_options()).await {
        Err(SubmitError::Invalid(report)) => {
            assert_eq!((report.rows_read, report.rows_invalid), (500, 10));
            let lines: Vec<u64> = report.errors.iter().map(|e| e.line).collect();
            let planted: Vec<u64> = generated.planted.iter().map(|p| p.line).collect();
            assert_eq!(lines, planted);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let cli = world.run(world.cli_submit(&path, &[])).await;
    cli.expect_code(1);
    assert!(
        cli.stdout
            .contains("nothing was sent: fix the rows above and submit again"),
        "{}",
        cli.all()
    );
    assert_eq!(world.sandbox.requests(), 0);
    assert!(world.sandbox.batches().is_empty());
    assert!(
        world.ledger().recent_batches(10).unwrap().is_empty(),
        "nothing recorded"
    );
}

/// Submits a fresh file at `now` and returns what paydrop reported.
async fn submitted_at(
    world: &World,
    name: &str,
    seed: u64,
    now: chrono::DateTime<Utc>,
) -> Submitted {
    let (path, _) = world.generate(name, Spec::valid(200, seed));
    let opts = paydrop::submit::SubmitOptions {
        now,
        ..default_options()
    };
    world.submit(&path, &opts).await.expect("submitted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_between_23_and_midnight_istanbul_gets_the_0200_notice() {
    let world = World::start().await;
    // 20:30 UTC is 23:30 in Istanbul (UTC+3 all year).
    let late = Utc.with_ymd_and_hms(2026, 11, 25, 20, 30, 0).unwrap();
    let done = submitted_at(&world, "late.csv", 91, late).await;
    assert_eq!(
        done.notices,
        ["submitted at 23:30 Istanbul time: the provider processes files sent between 23:00 and \
          00:00 only from 02:00 on 2026-11-26"]
    );
    assert!(done.batch.is_accepted(), "the file is sent all the same");

    // 19:00 UTC is 22:00 in Istanbul: no notice at all.
    let evening = Utc.with_ymd_and_hms(2026, 11, 25, 19, 0, 0).unwrap();
    let done = submitted_at(&world, "evening.csv", 92, evening).await;
    assert!(done.notices.is_empty(), "{:?}", done.notices);
    assert!(done.batch.is_accepted());
    assert_eq!(world.sandbox.batches().len(), 2);
}

#[test]
fn the_late_window_notice_crosses_month_and_year_ends() {
    let notice =
        paydrop::submit::late_window_notice(Utc.with_ymd_and_hms(2026, 12, 31, 20, 0, 0).unwrap())
            .expect("23:00 Istanbul is in the window");
    assert!(
        notice.contains("23:00 Istanbul time") && notice.ends_with("from 02:00 on 2027-01-01"),
        "{notice}"
    );
    assert_eq!(
        paydrop::submit::late_window_notice(Utc.with_ymd_and_hms(2026, 12, 31, 21, 0, 0).unwrap()),
        None,
        "00:00 Istanbul is past the window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_currency_without_a_configured_id_is_refused_naming_the_key() {
    let world = World::start().await;
    let (path, _) = world.generate("dollars.csv", Spec::valid(30, 65));
    // Only TRY's CurrencyId is documented: USD is refused before anything
    // is sent, and the message names the key that would allow it.
    let run = world
        .run(world.cli_submit(&path, &["--currency", "USD"]))
        .await;
    run.expect_code(2);
    assert!(
        run.stderr.contains("[submit.currency_ids]") && run.stderr.contains("USD = <id>"),
        "{}",
        run.all()
    );
    assert!(run.stderr.contains("nothing was sent"), "{}", run.all());
    assert_eq!(world.sandbox.requests(), 0);
    assert!(world.ledger().recent_batches(1).unwrap().is_empty());

    // Mapped in the config: sent with that id.
    std::fs::write(
        world.path("paydrop.toml"),
        "[submit.currency_ids]\nUSD = 2\n",
    )
    .unwrap();
    let run = world
        .run(world.cli_submit(&path, &["--currency", "USD"]))
        .await;
    run.expect_code(0);
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].currency_id, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_address_is_refused_at_once_and_nothing_is_recorded() {
    let world = World::start().await;
    let (path, _) = world.generate("no-scheme.csv", Spec::valid(3, 5));
    for (base, reason) in [
        ("127.0.0.1:8080", "is not an absolute URL"),
        ("ftp://127.0.0.1", "must start with http:// or https://"),
        ("http://user:s3cret@127.0.0.1", "carries a user or password"),
    ] {
        let mut cmd = world.cli(["submit".as_ref(), path.as_os_str()]);
        cmd.args(["--pattern", "1", "--base", base]);
        let run = world.run(cmd).await;
        run.expect_code(2);
        assert!(run.stderr.contains(reason), "{}", run.all());
        assert!(!run.all().contains("s3cret"), "{}", run.all());
        // Refused before any attempt: no retry, no colour codes in a pipe.
        assert!(!run.all().contains("retrying"), "{}", run.all());
        assert!(!run.all().contains('\u{1b}'), "{}", run.all());
    }
    assert!(world.ledger().recent_batches(10).unwrap().is_empty());
    assert!(world.sandbox.batches().is_empty());
}

/// A refusal names the HTTP status and the address, then the provider's
/// own message.
fn assert_refusal(message: &str, providers: &str) {
    assert!(
        message.starts_with("HTTP ")
            && message.contains(" from POST http://127.0.0.1:")
            && message.contains("/api/paywall/payment/bulk/file/startdirect: ")
            && message.ends_with(providers),
        "{message}"
    );
}
