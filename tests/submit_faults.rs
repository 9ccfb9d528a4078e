//! Faults between paydrop and the provider never pay a file twice: storms of
//! 429 and 500, a provider that records a batch and then drops the
//! connection, and a paydrop process killed in the middle of an upload.

mod common_submit;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common_submit::{
    assert_notices, default_options, fast_retry, file_sha, guard, resuming_notice, Spec, World,
};
use paydrop::ledger::{Ledger, State, Submission};
use paydrop::submit::SubmitError;

/// The one submission of a one-part batch of `sha256`.
fn only_submission(world: &World, sha256: &str) -> Submission {
    let batch = world.only_batch_for(sha256);
    assert_eq!(batch.submissions.len(), 1, "{batch:#?}");
    batch.submissions[0].clone()
}

/// `n` retryable attempts with `status`, then one accepted: the ledger
/// history of a storm that passed.
fn assert_storm_history(ledger: &Ledger, sub: &Submission, n: usize, status: u16) {
    let attempts = ledger.attempts(sub.id).unwrap();
    assert_eq!(attempts.len(), n + 1, "{attempts:#?}");
    assert_eq!(sub.attempts as usize, n + 1);
    for a in &attempts[..n] {
        assert_eq!(a.outcome.as_deref(), Some("retryable"), "{a:#?}");
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

/// A storm of `n` faulted answers set up by `arm`, then success.
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
    let sub = only_submission(&world, &sha);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_storm_ends_in_one_batch() {
    storm(5, 500, |w| {
        w.faults().server_errors.store(5, Ordering::SeqCst)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_then_connection_dropped_is_retried_to_the_same_bulk_payment_id() {
    let world = World::start().await;
    let (path, _) = world.generate("crash.csv", Spec::valid(600, 41));
    let sha = file_sha(&path);
    world.faults().accept_then_crash.store(1, Ordering::SeqCst);

    let done = world
        .submit(&path, &default_options())
        .await
        .expect("submitted");

    let got = world.sandbox.batches();
    assert_eq!(got.len(), 1, "recorded once although sent twice: {got:#?}");
    assert_eq!(world.sandbox.requests(), 2);
    let sub = &done.batch.submissions[0];
    assert_eq!(got[0].merchant_unique_code, sub.merchant_unique_code);
    assert_eq!(got[0].sha256, sha);
    assert_eq!(
        (sub.state, sub.bulk_payment_id),
        (State::Accepted, Some(got[0].bulk_payment_id))
    );
    let attempts = world.ledger().attempts(sub.id).unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(
        (attempts[0].outcome.as_deref(), attempts[0].http_status),
        (Some("retryable"), None)
    );
    assert_eq!(
        (attempts[1].outcome.as_deref(), attempts[1].http_status),
        (Some("accepted"), Some(200))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_after_accept_then_crash_is_unknown_and_a_rerun_finds_the_batch() {
    let world = World::start().await;
    let (path, _) = world.generate("unknown.csv", Spec::valid(600, 42));
    let sha = file_sha(&path);
    world.faults().accept_then_crash.store(1, Ordering::SeqCst);
    let mut opts = default_options();
    opts.retry = fast_retry(1);

    let err = world.submit(&path, &opts).await.expect_err("no answer");
    let code = match err {
        SubmitError::Unknown {
            part: 1,
            ref code,
            attempts: 1,
            ..
        } => code.clone(),
        other => panic!("expected Unknown for part 1 after 1 attempt, got {other:?}"),
    };
    let recorded = world.sandbox.batches();
    assert_eq!(recorded.len(), 1, "the sandbox did record it");
    assert_eq!(recorded[0].merchant_unique_code, code);
    let sub = only_submission(&world, &sha);
    assert_eq!(sub.merchant_unique_code, code);
    assert_eq!(
        (sub.state, sub.bulk_payment_id, sub.attempts),
        (State::Unknown, None, 1)
    );
    assert!(sub.outcome_unknown() && !sub.interrupted);

    // `paydrop status` says so, with exit code 5.
    let status = world.run_cli(&["status"]).await;
    status.expect_code(5);
    assert!(
        status.stdout.contains("OUTCOME UNKNOWN"),
        "{}",
        status.all()
    );
    assert!(status.stdout.contains(&code), "{}", status.all());

    // Submitting again resumes the batch with the same code: still one batch.
    let opts = default_options();
    let done = world.submit(&path, &opts).await.expect("rerun");
    assert_eq!(done.batch.id, sub.batch_id);
    let resuming = resuming_notice(&done.batch);
    assert_notices(&done, &opts, &[&resuming]);
    assert_eq!(
        world.sandbox.batches(),
        recorded,
        "nothing new at the sandbox"
    );
    assert_eq!(world.sandbox.requests(), 2);
    let sub = only_submission(&world, &sha);
    assert_eq!(sub.merchant_unique_code, code);
    assert_eq!(
        (sub.state, sub.bulk_payment_id, sub.attempts),
        (State::Accepted, Some(recorded[0].bulk_payment_id), 2)
    );
    let status = world.run_cli(&["status"]).await;
    status.expect_code(0);
    assert!(
        status
            .stdout
            .contains("no submission is waiting or of unknown outcome"),
        "{}",
        status.all()
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
async fn killed_mid_upload_then_rerun_sends_exactly_one_batch() {
    let world = World::start().await;
    let (path, _) = world.generate("killed.csv", Spec::valid(3_000, 51));
    let sha = file_sha(&path);
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
    let sub = only_submission(&world, &sha);
    assert_eq!(sub.id, in_flight.id);
    assert_eq!(
        (sub.state, sub.bulk_payment_id, sub.attempts),
        (State::Pending, None, 1)
    );
    assert!(sub.interrupted && sub.outcome_unknown());
    let attempts = world.ledger().attempts(sub.id).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].finished_at, attempts[0].outcome.as_deref()),
        (None, None)
    );
    assert!(
        world.sandbox.batches().is_empty(),
        "the sandbox answered nothing yet"
    );
    let status = world.run_cli(&["status"]).await;
    status.expect_code(5);
    let unknown_line = format!(
        "  batch {} part 1  {}  3000 rows  {}  OUTCOME UNKNOWN",
        sub.batch_id, sub.merchant_unique_code, sub.amount
    );
    assert!(status.stdout.contains(&unknown_line), "{}", status.all());

    // The provider recovers; the same command finishes the job.
    let batch = world.only_batch_for(&sha);
    world.faults().clear();
    let rerun = world.run(world.cli_submit(&path, &[])).await;
    rerun.expect_code(0);
    let got = world.sandbox_batches_with(&sha);
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
    let sub = only_submission(&world, &sha);
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
async fn giving_up_on_part_1_of_2_then_rerunning_sends_each_part_once() {
    let world = World::start().await;
    let (path, _) = world.generate("two-parts.csv", Spec::valid(1_200, 43));
    let sha = file_sha(&path);
    world.faults().accept_then_crash.store(1, Ordering::SeqCst);
    let mut opts = default_options();
    opts.split_rows = 800;
    opts.retry = fast_retry(1);

    match world.submit(&path, &opts).await {
        Err(SubmitError::Unknown { part: 1, .. }) => {}
        other => panic!("expected Unknown for part 1, got {other:?}"),
    }
    let batch = world.only_batch_for(&sha);
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
    assert_eq!(world.sandbox.batches().len(), 1);
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
    other_split.split_rows = 500;
    match world.submit(&path, &other_split).await {
        Err(SubmitError::Conflict { batch: b, what }) => {
            assert_eq!(b, batch.id);
            assert_eq!(what, "it was split into 2 parts, now it would be 3");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(world.sandbox.requests(), 1);

    opts.retry = fast_retry(3);
    let done = world.submit(&path, &opts).await.expect("rerun");
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(
        world.sandbox.requests(),
        3,
        "part 1 resent once, part 2 sent once"
    );
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
async fn a_forced_submission_of_unknown_outcome_is_finished_not_sent_again() {
    let world = World::start().await;
    let (path, _) = world.generate("forced.csv", Spec::valid(500, 44));
    let sha = file_sha(&path);
    world
        .submit(&path, &default_options())
        .await
        .expect("first submit");

    // Forced, and the answer is lost: generation 1 is at the provider but
    // the ledger does not know.
    world.faults().accept_then_crash.store(1, Ordering::SeqCst);
    let mut forced = default_options();
    forced.force = true;
    forced.retry = fast_retry(1);
    let code = match world.submit(&path, &forced).await {
        Err(SubmitError::Unknown { code, .. }) => code,
        other => panic!("expected Unknown, got {other:?}"),
    };
    assert!(code.ends_with("-f1"), "{code}");
    assert_eq!(world.sandbox.batches().len(), 2);

    // The error says to run the same submit again: it must finish
    // generation 1 with its code, not start generation 2.
    forced.retry = fast_retry(3);
    let done = world
        .submit(&path, &forced)
        .await
        .expect("the same submit again");
    assert_eq!(done.batch.generation, 1);
    assert_eq!(done.batch.submissions[0].merchant_unique_code, code);
    let resuming = resuming_notice(&done.batch);
    assert_notices(&done, &forced, &[&resuming]);
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 2, "paid twice, not three times: {got:#?}");
    assert_eq!(
        done.batch.submissions[0].bulk_payment_id,
        Some(got[1].bulk_payment_id)
    );
    assert_eq!(world.ledger().batches_for(&sha).unwrap().len(), 2);
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
