//! Crash safety of the daemon in-process: kill -9 is simulated by aborting
//! the daemon's tokio task (no cleanup of the daemon runs), then `watch::run`
//! is started again on the same folders and ledger. Whenever the crash
//! happens, the file ends in done/, the provider has exactly one batch of
//! its content and nothing stays in processing/.

mod watch_common;

use std::fs;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paydrop::ledger::{Resolution, State};
use paydrop::watch::{WatchHooks, DONE, FAILED, PROCESSING};
use watch_common::*;

/// After the restart: done/, one batch of `bytes`, nothing in processing/.
async fn assert_recovered(rig: &Rig, name: &str, bytes: &[u8]) -> serde_json::Value {
    let filed = rig.wait_filed(DONE, name).await;
    rig.wait_ledger_file(&filed).await;
    assert_eq!(fs::read(&filed).unwrap(), bytes);
    rig.assert_inbox_and_processing_empty();
    assert_eq!(entries(&rig.sub(FAILED)), Vec::<String>::new());
    let sha = sha256_hex(bytes);
    let at_sandbox = rig.sandbox_batches_of(&sha);
    assert_eq!(at_sandbox.len(), 1, "exactly one batch: {at_sandbox:#?}");
    assert_eq!(rig.sandbox.batches().len(), 1);
    let ledger = rig.ledger_batches();
    assert_eq!(ledger.len(), 1, "{ledger:#?}");
    assert_eq!(ledger[0].sha256, sha);
    assert_eq!(ledger[0].file, filed.display().to_string());
    let sub = &ledger[0].submissions[0];
    assert_eq!(sub.state, State::Accepted);
    assert_eq!(sub.bulk_payment_id, Some(at_sandbox[0].bulk_payment_id));
    let report = read_json(&sidecar(&filed, "report.json"));
    assert_eq!(report["state"], "done");
    assert_eq!(
        report_bulk_ids(&report),
        vec![at_sandbox[0].bulk_payment_id]
    );
    report
}

/// The one file in processing/.
fn only_in_processing(rig: &Rig, name: &str) -> String {
    let files = payment_files(&rig.sub(PROCESSING));
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(original_of(&files[0]), name);
    files[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_validation_resumes_from_processing() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    // Big enough that validating it takes a while (some 0.3 s in debug).
    let bytes = payments(41, 100_000);
    rig.drop_file("big.csv", &bytes);
    wait_until("big.csv claimed", || {
        !payment_files(&rig.sub(PROCESSING)).is_empty()
    })
    .await;
    daemon.kill().await;

    // Killed before anything was recorded or sent: during validation.
    let claimed = only_in_processing(&rig, "big.csv");
    assert!(rig.ledger_batches().is_empty(), "killed too late");
    assert_eq!(rig.sandbox.requests(), 0);

    let daemon = rig.daemon(rig.config()).await;
    let report = assert_recovered(&rig, "big.csv", &bytes).await;
    assert_eq!(report["validation"]["rows_read"], 100_000);
    assert_eq!(
        report["claimed_as"],
        rig.sub(PROCESSING).join(&claimed).display().to_string()
    );
    assert_eq!(rig.sandbox.requests(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_the_upload_holds_the_file_until_resolved_then_sends_it_once() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let faults = rig.sandbox.faults();
    // The provider holds the request; the daemon is killed meanwhile.
    faults.set_delay(Duration::from_secs(60));
    let daemon = rig.daemon(rig.config()).await;
    let old_callbacks = daemon.metrics_url("/health");
    let bytes = payments(42, 50);
    rig.drop_file("upload.csv", &bytes);
    let code = wait_for("an attempt started", || {
        let open = rig.ledger().open_submissions().ok()?;
        open.into_iter()
            .find(|s| s.interrupted)
            .map(|s| s.merchant_unique_code)
    })
    .await;
    daemon.kill().await;

    only_in_processing(&rig, "upload.csv");
    assert!(rig.sandbox.batches().is_empty());
    let open = rig.ledger().open_submissions().unwrap();
    assert_eq!(open.len(), 1);
    assert!(open[0].outcome_unknown(), "{:#?}", open[0]);
    // Nothing of the killed daemon answers any more.
    assert!(
        http().get(&old_callbacks).send().await.is_err(),
        "the killed daemon's callback server still answers"
    );

    // Restarted, with a request timeout after which the killed attempt
    // counts as interrupted: the outcome is unknown (the sandbox's bulk
    // inquiry does not have it, and a "not found" is believed only 10
    // minutes after the attempt), so the file is held, not sent again.
    faults.set_delay(Duration::ZERO);
    let mut config = rig.config();
    config.provider.timeout_secs = 1;
    config.submit.inquiry_grace_secs = 600;
    let daemon = rig.daemon(config).await;
    wait_until("the part held as unknown", || {
        rig.ledger()
            .open_submissions()
            .is_ok_and(|o| o.iter().any(|s| s.state == State::Unknown))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    only_in_processing(&rig, "upload.csv");
    assert_eq!(rig.sandbox.requests(), 1, "not sent again");

    // The operator finds it was not received: the next pass sends it once,
    // under its original code.
    let sub = rig.ledger().open_submissions().unwrap().remove(0);
    rig.ledger()
        .resolve(
            sub.id,
            &Resolution::NotReceived,
            "not received, says the test",
        )
        .unwrap();
    let report = assert_recovered(&rig, "upload.csv", &bytes).await;
    let at_sandbox = rig.sandbox.batches();
    assert_eq!(at_sandbox[0].merchant_unique_code, code, "the same code");
    let notices = report["notices"].to_string();
    assert!(notices.contains("resuming batch"), "{notices}");
    let sub = &rig.ledger_batches()[0].submissions[0];
    let attempts = rig.ledger().attempts(sub.id).unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert!(attempts[0].finished_at.is_none(), "the interrupted one");
    assert_eq!(attempts[1].http_status, Some(200));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_acceptance_before_the_move_files_without_resending() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let hooks = WatchHooks {
        fail_moves: Arc::new(AtomicU32::new(u32::MAX)),
    };
    let daemon = rig.daemon_with(rig.config(), hooks.clone()).await;
    let bytes = payments(43, 50);
    rig.drop_file("accepted.csv", &bytes);
    wait_until("the batch at the provider", || {
        rig.sandbox.batches().len() == 1
    })
    .await;
    let inbox = rig.inbox.display().to_string();
    wait_until("accepted in the ledger and the move failed", || {
        rig.ledger_batches()
            .first()
            .is_some_and(|b| b.is_accepted())
            && !log_lines(&["cannot move the file", &inbox]).is_empty()
    })
    .await;
    daemon.kill().await;

    only_in_processing(&rig, "accepted.csv");
    assert!(hooks.fail_moves.load(Ordering::SeqCst) < u32::MAX);
    assert_eq!(entries(&rig.sub(DONE)), Vec::<String>::new());

    let daemon = rig.daemon(rig.config()).await;
    let report = assert_recovered(&rig, "accepted.csv", &bytes).await;
    assert_eq!(rig.sandbox.requests(), 1, "not sent again");
    let notices = report["notices"].to_string();
    assert!(notices.contains("accepted before a restart"), "{notices}");
    assert_eq!(rig.ledger_batches()[0].submissions[0].attempts, 1);
    daemon.stop().await;
}
