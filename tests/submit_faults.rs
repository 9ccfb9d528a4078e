//! Faults between paydrop and the provider never pay a file twice, without
//! relying on the provider to deduplicate a repeated MerchantUniqueCode (no
//! page says it does): answers that say "not processed" (429, 503) are
//! retried; an attempt whose bytes went out without a definite answer (the
//! provider recorded the batch and dropped the connection, dropped it in the
//! middle of the body, answered 500, or paydrop was killed mid-upload) is
//! held as OUTCOME UNKNOWN and never sent again until `paydrop resolve` (or
//! the bulk inquiry, tests/submit_inquiry.rs) says it was not received.

mod common_stub;
mod common_submit;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common_stub::{Start, Stub};
use common_submit::{
    client_for, credentials, default_options, fast_retry, file_sha, guard, resuming_notice, Spec,
    World, API_CLIENT, API_KEY,
};
use paydrop::ledger::{Ledger, State, Submission};
use paydrop::submit::{SubmitError, SubmitOptions};
use paydrop_sandbox::bulk::DuplicateCode;

/// The one submission of a one-part batch whose file is at `path`.
fn only_submission(world: &World, path: &Path) -> Submission {
    let batches = world.ledger().recent_batches(100).unwrap();
    let mut mine: Vec<_> = batches
        .into_iter()
        .filter(|b| b.file == path.display().to_string())
        .collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    let batch = mine.remove(0);
    assert_eq!(batch.submissions.len(), 1, "{batch:#?}");
    batch.submissions[0].clone()
}

/// `n` attempts the provider did not process, answered `status`, then one
/// accepted: the ledger history of a storm that passed.
fn assert_storm_history(ledger: &Ledger, sub: &Submission, n: usize, status: u16) {
    let attempts = ledger.attempts(sub.id).unwrap();
    assert_eq!(attempts.len(), n + 1, "{attempts:#?}");
    assert_eq!(sub.attempts as usize, n + 1);
    for a in &attempts[..n] {
        assert_eq!(a.outcome.as_deref(), Some("not_processed"), "{a:#?}");
        assert_eq!(a.http_status, Some(status), "{a:#?}");
        assert!(a.finished_at.is_some());
        assert!(
            a.message
                .as_deref()
                .unwrap_or("")
                .contains(&status.to_string()),
            "{a:#?}"
        );
    }
    let last = &attempts[n];
    assert_eq!(
        (last.outcome.as_deref(), last.http_status),
        (Some("accepted"), Some(200))
    );
}

/// A storm of `n` "not processed" answers set up by `arm`, then success.
async fn storm(n: u32, status: u16, arm: impl FnOnce(&World)) {
    let world = World::start().await;
    let (path, _) = world.generate("storm.csv", Spec::valid(800, 31));
    let sha = file_sha(&path);
    arm(&world);
    let mut opts = default_options();
    opts.retry = fast_retry(n + 3);

    let done = world.submit(&path, &opts).await.expect("the storm passes");

    assert_eq!(world.sandbox.requests(), u64::from(n) + 1);
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].sha256, sha);
    let sub = only_submission(&world, &path);
    assert_eq!(sub.state, State::Accepted);
    assert_eq!(sub.bulk_payment_id, Some(got[0].bulk_payment_id));
    assert_eq!(done.batch.submissions[0].attempts, n + 1);
    assert_storm_history(&world.ledger(), &sub, n as usize, status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_with_retry_after_ends_in_one_batch() {
    storm(3, 429, |w| {
        let f = w.faults();
        f.retry_after_secs.store(1, Ordering::SeqCst);
        f.too_many.store(3, Ordering::SeqCst);
    })
    .await;
}

/// The sandbox has no 503 switch; a stub answers five 503s, then accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_storm_ends_in_one_batch() {
    let busy = Start::Answer(503, r#"{"ErrorCode":503,"Result":false,"Message":"busy"}"#);
    let mut starts = vec![busy; 5];
    starts.push(Start::Accept(7001));
    let stub = Stub::start(starts, vec![]).await;
    let world = World::start().await;
    let (path, _) = world.generate("storm.csv", Spec::valid(800, 31));
    let client = client_for(&stub.base_url(), credentials(API_KEY, API_CLIENT));
    let mut opts = default_options();
    opts.retry = fast_retry(8);

    let done = world
        .submit_as(&path, &world.pattern, &client, &opts)
        .await
        .expect("the storm passes");

    assert_eq!(stub.starts().len(), 6);
    let sub = only_submission(&world, &path);
    assert_eq!(
        (sub.state, sub.bulk_payment_id),
        (State::Accepted, Some(7001))
    );
    assert_eq!(done.batch.submissions[0].attempts, 6);
    assert_storm_history(&world.ledger(), &sub, 5, 503);
}

/// [`default_options`] with the bulk inquiry's "not found" believed only
/// 10 minutes after an attempt without an answer: the sandbox's inquiry
/// does not have a part whose upload was cut, and it stays UNKNOWN.
fn unsure_options() -> SubmitOptions {
    SubmitOptions {
        inquiry_grace: Duration::from_secs(600),
        ..default_options()
    }
}

/// Submits `path` once with `fault` armed for one request, expecting the
/// part to be held as unknown after that single request.
async fn held_unknown(world: &World, path: &Path, arm: impl FnOnce(&World)) -> (i64, String) {
    arm(world);
    let err = world
        .submit(path, &unsure_options())
        .await
        .expect_err("no definite answer");
    let (batch, code) = match err {
        SubmitError::Unknown {
            batch,
            part: 1,
            ref code,
            attempts: 1,
            ..
        } => (batch, code.clone()),
        other => panic!("expected Unknown for part 1 after 1 attempt, got {other:?}"),
    };
    assert_eq!(world.sandbox.requests(), 1, "sent once, not again");
    let sub = only_submission(world, path);
    assert_eq!(sub.merchant_unique_code, code);
    assert_eq!((sub.state, sub.bulk_payment_id), (State::Unknown, None));
    assert!(sub.outcome_unknown() && sub.ambiguous_at.is_some());
    (batch, code)
}

/// `paydrop status` shows the part as OUTCOME UNKNOWN with what to do, exit 5.
async fn assert_status_unknown(world: &World, batch: i64, code: &str) {
    let status = world.run_cli(&["status"]).await;
    status.expect_code(5);
    let line = status
        .stdout
        .lines()
        .find(|l| l.contains(code))
        .unwrap_or_else(|| panic!("{code} in status:\n{}", status.all()));
    assert!(line.contains("OUTCOME UNKNOWN"), "{line}");
    assert!(line.contains("will not send it again by itself"), "{line}");
    assert!(
        line.contains(&format!("paydrop resolve {batch} 1 --received")),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_then_connection_dropped_is_found_by_the_bulk_inquiry_and_never_resent() {
    let world = World::start().await;
    let (path, _) = world.generate("crash.csv", Spec::valid(600, 41));
    world.faults().accept_then_crash.store(1, Ordering::SeqCst);

    let done = world
        .submit(&path, &unsure_options())
        .await
        .expect("found by the inquiry");

    let recorded = world.sandbox.batches();
    assert_eq!(recorded.len(), 1, "the sandbox did record it");
    let sub = only_submission(&world, &path);
    assert_eq!(recorded[0].merchant_unique_code, sub.merchant_unique_code);
    assert_eq!(sub.state, State::Accepted);
    assert!(
        sub.message
            .as_deref()
            .unwrap_or("")
            .starts_with("found by the bulk inquiry"),
        "{sub:#?}"
    );
    assert!(done
        .notices
        .iter()
        .any(|n| n.contains("found by the bulk inquiry")));
    let attempts = world.ledger().attempts(sub.id).unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(
        (attempts[0].outcome.as_deref(), attempts[0].http_status),
        (Some("ambiguous"), None)
    );
    // The file is now "already submitted"; nothing was sent again.
    world.run(world.cli_submit(&path, &[])).await.expect_code(3);
    assert_eq!(world.sandbox.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_mid_body_is_held_unknown_and_resolved_as_not_received_then_sent_once() {
    let world = World::start().await;
    let (path, _) = world.generate("dropped.csv", Spec::valid(5_000, 45));
    let (batch, code) = held_unknown(&world, &path, |w| {
        w.faults().drop_mid_body.store(1, Ordering::SeqCst)
    })
    .await;
    assert!(
        world.sandbox.batches().is_empty(),
        "the sandbox has nothing"
    );
    assert_status_unknown(&world, batch, &code).await;

    let resolve = world
        .run_cli(&["resolve", &batch.to_string(), "1", "--not-received"])
        .await;
    resolve.expect_code(0);
    let sub = only_submission(&world, &path);
    assert_eq!(sub.state, State::Pending);
    assert!(!sub.outcome_unknown(), "{sub:#?}");
    assert_eq!(world.sandbox.requests(), 1, "resolve itself sends nothing");

    // The next submit sends it, under its original code, once.
    let rerun = world.run(world.cli_submit(&path, &[])).await;
    rerun.expect_code(0);
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].merchant_unique_code, code);
    assert_eq!(world.sandbox.requests(), 2);
    let sub = only_submission(&world, &path);
    assert_eq!(
        (sub.state, sub.bulk_payment_id, sub.attempts),
        (State::Accepted, Some(got[0].bulk_payment_id), 2)
    );
    assert!(sub.resolution.as_deref().unwrap_or("").contains("operator"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_ambiguous_and_never_retried() {
    let world = World::start().await;
    let (path, _) = world.generate("five-hundred.csv", Spec::valid(300, 46));
    let mut opts = default_options();
    opts.retry = fast_retry(5);
    world.faults().server_errors.store(5, Ordering::SeqCst);
    match world.submit(&path, &opts).await {
        Err(SubmitError::Unknown { message, .. }) => {
            assert!(message.contains("500"), "{message}")
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
    assert_eq!(
        world.sandbox.requests(),
        1,
        "a 500 may follow a created batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_declared_deduplicating_gets_the_same_code_again() {
    let world = World::start_with(|c| c.bulk.duplicate_code = DuplicateCode::Dedupe).await;
    let (path, _) = world.generate("dedup.csv", Spec::valid(600, 47));
    world.faults().accept_then_crash.store(1, Ordering::SeqCst);
    let opts = SubmitOptions {
        provider_deduplicates: true,
        ..default_options()
    };

    let done = world
        .submit(&path, &opts)
        .await
        .expect("resent and answered");

    let got = world.sandbox.batches();
    assert_eq!(got.len(), 1, "a sandbox set to deduplicate: {got:#?}");
    assert_eq!(world.sandbox.requests(), 2);
    let sub = &done.batch.submissions[0];
    assert_eq!(
        (sub.state, sub.bulk_payment_id),
        (State::Accepted, Some(got[0].bulk_payment_id))
    );
    assert!(
        done.notices
            .iter()
            .any(|n| n.contains("the config says the provider deduplicates")),
        "{:?}",
        done.notices
    );
}

/// Polls `ledger` until a submission has an attempt that was started and
/// not finished: the child is inside its HTTP call. (Each query reads the
/// latest committed state; the test never writes.)
async fn wait_for_attempt_in_flight(ledger: &Ledger) -> Submission {
    guard("waiting for the child's first attempt", async {
        loop {
            let open = ledger.open_submissions().expect("ledger reads");
            if let Some(s) = open.into_iter().find(|s| s.interrupted) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_upload_is_held_until_resolved_then_sent_exactly_once() {
    let world = World::start().await;
    let (path, _) = world.generate("killed.csv", Spec::valid(3_000, 51));
    // The sandbox holds every request without answering.
    world.faults().set_delay(Duration::from_secs(600));

    // Created (schema and all) before the child starts, so that the child
    // and this reader never set the ledger up concurrently.
    let watcher = world.ledger();
    let mut child = world
        .cli_submit(&path, &[])
        .spawn()
        .expect("paydrop starts");
    let in_flight = wait_for_attempt_in_flight(&watcher).await;
    guard("kill -9", child.kill())
        .await
        .expect("kill the child");
    let status = child.wait().await.unwrap();
    assert!(!status.success());

    // The ledger after the crash: one pending submission whose only attempt
    // never finished, so its outcome is unknown.
    let sub = only_submission(&world, &path);
    assert_eq!(sub.id, in_flight.id);
    assert_eq!(
        (sub.state, sub.bulk_payment_id, sub.attempts),
        (State::Pending, None, 1)
    );
    assert!(sub.interrupted && sub.outcome_unknown());
    let status = world.run_cli(&["status"]).await;
    status.expect_code(5);
    let unknown_line = format!(
        "  batch {} part 1  {}  3000 rows  {}  OUTCOME UNKNOWN",
        sub.batch_id, sub.merchant_unique_code, sub.amount
    );
    assert!(status.stdout.contains(&unknown_line), "{}", status.all());

    // Right after the kill the attempt may still be running in another
    // process (an attempt lasts up to the request timeout): left alone.
    world.faults().clear();
    let batch = world.ledger().batch(sub.batch_id).unwrap().unwrap();
    let rerun = world.run(world.cli_submit(&path, &[])).await;
    rerun.expect_code(3);
    assert!(
        rerun
            .stderr
            .contains("is being sent by another paydrop process"),
        "{}",
        rerun.all()
    );
    assert!(world.sandbox.batches().is_empty());

    // Once that timeout has passed, the same command does not send it again.
    let short = world.dir.path().join("short-timeout.toml");
    std::fs::write(&short, "[provider]\ntimeout_secs = 1\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let rerun = world
        .run(world.cli_submit(&path, &["--config", short.to_str().unwrap()]))
        .await;
    rerun.expect_code(5);
    // The sandbox's bulk inquiry does not have it, but a "not found" so soon
    // after an attempt without an answer is not believed.
    assert!(
        rerun
            .stderr
            .contains("the bulk inquiry does not have it yet"),
        "{}",
        rerun.all()
    );
    assert!(world.sandbox.batches().is_empty());
    let sub = only_submission(&world, &path);
    assert_eq!((sub.state, sub.attempts), (State::Unknown, 1));

    // The operator checked: not received. The next run sends it once.
    world
        .run_cli(&["resolve", &sub.batch_id.to_string(), "1", "--not-received"])
        .await
        .expect_code(0);
    let rerun = world
        .run(world.cli_submit(&path, &["--config", short.to_str().unwrap()]))
        .await;
    rerun.expect_code(0);
    let got = world.sandbox_batches_with(&file_sha(&path));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].merchant_unique_code, sub.merchant_unique_code);
    assert!(
        rerun.stdout.contains(&format!(
            "accepted, BulkPaymentId {}",
            got[0].bulk_payment_id
        )),
        "{}",
        rerun.all()
    );
    let notice = format!("  notice   {}", resuming_notice(&batch));
    assert!(rerun.stdout.contains(&notice), "{}", rerun.all());
    let sub = only_submission(&world, &path);
    assert_eq!(
        (sub.state, sub.bulk_payment_id, sub.attempts),
        (State::Accepted, Some(got[0].bulk_payment_id), 2)
    );
    let attempts = world.ledger().attempts(sub.id).unwrap();
    assert_eq!(
        attempts[0].finished_at, None,
        "the interrupted attempt stays on record"
    );
    assert_eq!(attempts[1].outcome.as_deref(), Some("accepted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_part_1_of_2_holds_the_file_and_part_2_goes_once_resolved() {
    let world = World::start().await;
    let (path, _) = world.generate("two-parts.csv", Spec::valid(1_200, 43));
    let sha = file_sha(&path);
    world.faults().drop_mid_body.store(1, Ordering::SeqCst);
    let mut opts = unsure_options();
    opts.validate.split_rows = 800;

    let batch_id = match world.submit(&path, &opts).await {
        Err(SubmitError::Unknown { part: 1, batch, .. }) => batch,
        other => panic!("expected Unknown for part 1, got {other:?}"),
    };
    let batch = world.only_batch_for(&sha);
    assert_eq!(batch.id, batch_id);
    let states: Vec<_> = batch
        .submissions
        .iter()
        .map(|s| (s.state, s.attempts))
        .collect();
    assert_eq!(
        states,
        [(State::Unknown, 1), (State::Pending, 0)],
        "part 2 was not sent"
    );
    assert!(world.sandbox.batches().is_empty());
    let status = world.run_cli(&["status"]).await;
    status.expect_code(5);
    assert!(
        status.stdout.contains("pending, not sent yet"),
        "{}",
        status.all()
    );

    // A rerun split differently is refused: the first split may be at the
    // provider.
    let mut other_split = opts.clone();
    other_split.validate.split_rows = 500;
    match world.submit(&path, &other_split).await {
        Err(SubmitError::Conflict { batch: b, what }) => {
            assert_eq!(b, batch.id);
            assert_eq!(what, "it was split into 2 parts, now it would be 3");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(world.sandbox.requests(), 1);

    world
        .run_cli(&["resolve", &batch.id.to_string(), "1", "--not-received"])
        .await
        .expect_code(0);
    let done = world.submit(&path, &opts).await.expect("rerun");
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(world.sandbox.requests(), 3, "part 1 sent again once");
    for (b, s) in got.iter().zip(&done.batch.submissions) {
        assert_eq!(b.merchant_unique_code, s.merchant_unique_code);
        assert_eq!(
            (s.state, s.bulk_payment_id),
            (State::Accepted, Some(b.bulk_payment_id))
        );
    }
    let attempts: Vec<u32> = done.batch.submissions.iter().map(|s| s.attempts).collect();
    assert_eq!(attempts, [2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_submission_of_unknown_outcome_is_held_not_sent_again() {
    let world = World::start().await;
    let (path, _) = world.generate("forced.csv", Spec::valid(500, 44));
    let sha = file_sha(&path);
    world
        .submit(&path, &default_options())
        .await
        .expect("first submit");

    // Forced, and the upload is cut: whether generation 1 is at the
    // provider is unknown (its inquiry does not have it yet).
    world.faults().drop_mid_body.store(1, Ordering::SeqCst);
    let mut forced = unsure_options();
    forced.force = true;
    let code = match world.submit(&path, &forced).await {
        Err(SubmitError::Unknown { code, .. }) => code,
        other => panic!("expected Unknown, got {other:?}"),
    };
    assert!(code.ends_with("-f1"), "{code}");
    assert_eq!(world.sandbox.batches().len(), 1);

    // The same forced submit again finishes generation 1 (it does not start
    // generation 2) and does not send it again.
    match world.submit(&path, &forced).await {
        Err(SubmitError::Unknown { code: c, .. }) => assert_eq!(c, code),
        other => panic!("expected Unknown again, got {other:?}"),
    }
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 1, "generation 1 not sent again: {got:#?}");
    assert_eq!(world.sandbox.requests(), 2);
    let batches = world.ledger().batches_for(&sha).unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1].generation, 1);
}

/// A submit and a `status` (or two submits) starting at once on a new
/// ledger: both must set it up without tripping over each other.
#[test]
fn processes_opening_a_new_ledger_at_once_all_succeed() {
    use std::sync::{Arc, Barrier};
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let barrier = Arc::new(Barrier::new(6));
        let openers: Vec<_> = (0..6)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Ledger::open(&path).map(|l| l.recent_batches(1).map(|b| b.len()))
                })
            })
            .collect();
        for opener in openers {
            let opened = opener.join().unwrap();
            assert!(matches!(opened, Ok(Ok(0))), "round {round}: {opened:?}");
        }
    }
}
