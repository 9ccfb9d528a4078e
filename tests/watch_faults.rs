//! The daemon under faults of its surroundings: a full disk when filing a
//! file, and a provider that is down for a while.

mod watch_common;

use std::fs;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use paydrop::ledger::State;
use paydrop::watch::{WatchHooks, DONE, FAILED, PROCESSING};
use watch_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_move_leaves_the_file_in_processing_until_a_later_pass() {
    let rig = Rig::start().await;
    let mut config = rig.config();
    // The pause after a deferred file: long enough to look at processing/.
    config.submit.backoff_max_ms = 1500;
    let hooks = WatchHooks {
        fail_moves: Arc::new(AtomicU32::new(1)),
    };
    let daemon = rig.daemon_with(config, hooks.clone()).await;
    let bytes = payments(21, 12);
    rig.drop_file("full-disk.csv", &bytes);

    let inbox = rig.inbox.display().to_string();
    let logged = wait_for("the failed move to be logged", || {
        let lines = log_lines(&["cannot move the file", &inbox]);
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert!(logged[0].contains("ERROR"), "{}", logged[0]);
    assert!(
        logged[0].contains("no space left on device"),
        "{}",
        logged[0]
    );
    assert_eq!(hooks.fail_moves.load(Ordering::SeqCst), 0);
    // Still ours, in processing/, and nothing filed yet.
    let processing = payment_files(&rig.sub(PROCESSING));
    assert_eq!(processing.len(), 1, "{processing:?}");
    assert_eq!(original_of(&processing[0]), "full-disk.csv");
    assert_eq!(entries(&rig.sub(DONE)), Vec::<String>::new());
    assert_eq!(entries(&rig.sub(FAILED)), Vec::<String>::new());
    // The provider has it already, and the ledger says so.
    assert_eq!(rig.sandbox.batches().len(), 1);
    let batches = rig.ledger_batches();
    assert_eq!(batches.len(), 1);
    assert!(batches[0].is_accepted());
    assert_eq!(
        batches[0].file,
        rig.sub(PROCESSING)
            .join(&processing[0])
            .display()
            .to_string()
    );

    // A later pass files it, without sending it again.
    let filed = rig.wait_filed(DONE, "full-disk.csv").await;
    assert_eq!(
        filed.file_name().unwrap().to_string_lossy(),
        processing[0].as_str()
    );
    assert_eq!(fs::read(&filed).unwrap(), bytes);
    rig.assert_inbox_and_processing_empty();
    let at_sandbox = rig.sandbox.batches();
    assert_eq!(at_sandbox.len(), 1, "exactly one batch");
    assert_eq!(at_sandbox[0].sha256, sha256_hex(&bytes));
    assert_eq!(rig.sandbox.requests(), 1, "sent once");
    let report = read_json(&sidecar(&filed, "report.json"));
    assert_eq!(report["state"], "done");
    assert_eq!(
        report_bulk_ids(&report),
        vec![at_sandbox[0].bulk_payment_id]
    );
    // Its results are written once it is in done/.
    let results = read_json(&rig.wait_sidecar(&filed, "results.json").await);
    assert_eq!(
        results["bulk_payment_ids"],
        serde_json::json!([at_sandbox[0].bulk_payment_id])
    );
    let ledger = rig.ledger_batches();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].file, filed.display().to_string());
    assert_eq!(ledger[0].submissions[0].attempts, 1);

    let m = daemon.metrics().await;
    assert_eq!(metric(&m, "paydrop_files_claimed_total"), "1");
    assert_eq!(metric(&m, "paydrop_files_deferred_total"), "1");
    assert_eq!(metric(&m, "paydrop_files_done_total"), "1");
    assert_eq!(metric(&m, "paydrop_files_failed_total"), "0");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_dropped_while_the_provider_is_down_are_sent_once_in_arrival_order() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let faults = rig.sandbox.faults();
    // The provider answers 429 (not processed, retry at once) to
    // everything until the fault is cleared.
    faults.retry_after_secs.store(0, Ordering::SeqCst);
    faults.too_many.store(u32::MAX, Ordering::SeqCst);
    let mut config = rig.config();
    // One file at a time: "arrival order" is the order of submission.
    config.watch.concurrency = 1;
    config.submit.max_attempts = 2;
    let daemon = rig.daemon(config).await;

    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("down-{i}.csv"), payments(30 + i, 6)))
        .collect();
    for (name, bytes) in &files {
        rig.drop_file(name, bytes);
        // Claimed before the next one arrives: the arrival order is fixed.
        wait_until(&format!("{name} claimed"), || {
            !rig.inbox.join(name).exists()
        })
        .await;
    }
    // The outage is 2 minutes; a few seconds of it (several rounds
    // of retries and deferrals) are enough here.
    wait_until("several failed attempts", || rig.sandbox.requests() >= 8).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(rig.sandbox.batches().is_empty());
    assert_eq!(payment_files(&rig.sub(PROCESSING)).len(), 3);
    // The provider comes back; `failed` requests were answered 429.
    let failed = u64::from(u32::MAX - faults.too_many.swap(0, Ordering::SeqCst));

    let mut filed = Vec::new();
    for (name, _) in &files {
        filed.push(rig.wait_filed(DONE, name).await);
    }
    rig.assert_inbox_and_processing_empty();
    assert_eq!(entries(&rig.sub(FAILED)), Vec::<String>::new());
    // Exactly once each, in arrival order.
    let at_sandbox = rig.sandbox.batches();
    let shas: Vec<String> = at_sandbox.iter().map(|b| b.sha256.clone()).collect();
    let want: Vec<String> = files.iter().map(|(_, b)| sha256_hex(b)).collect();
    assert_eq!(shas, want);
    let ids: Vec<i64> = at_sandbox.iter().map(|b| b.bulk_payment_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let reported: Vec<i64> = filed
        .iter()
        .flat_map(|f| report_bulk_ids(&read_json(&sidecar(f, "report.json"))))
        .collect();
    assert_eq!(reported, ids);
    for (f, (_, bytes)) in filed.iter().zip(&files) {
        assert_eq!(&fs::read(f).unwrap(), bytes);
    }
    // The first file went through the outage: several attempts, all with
    // the same code; every batch accepted.
    let ledger = rig.ledger_batches();
    assert_eq!(ledger.len(), 3);
    assert!(ledger.iter().all(|b| b.is_accepted()));
    let first = &ledger[0].submissions[0];
    assert_eq!(first.state, State::Accepted);
    assert_eq!(u64::from(first.attempts), failed + 1, "{first:#?}");
    assert_eq!(
        rig.sandbox.requests(),
        failed + 3,
        "the others were sent once"
    );
    assert!(ledger[1..].iter().all(|b| b.submissions[0].attempts == 1));
    let attempts = rig.ledger().attempts(first.id).unwrap();
    assert!(attempts[..attempts.len() - 1]
        .iter()
        .all(|a| a.http_status == Some(429)));
    assert_eq!(attempts.last().unwrap().http_status, Some(200));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_unknown_outcome_is_held_without_blocking_the_others() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let faults = rig.sandbox.faults();
    // The connection drops in the middle of the first upload; the sandbox's
    // bulk inquiry does not have it, and its "not found" is believed only
    // 10 minutes after the attempt.
    faults.drop_mid_body.store(1, Ordering::SeqCst);
    let mut config = rig.config();
    config.watch.concurrency = 1;
    config.submit.inquiry_grace_secs = 600;
    let daemon = rig.daemon(config).await;
    let held = payments(40, 8);
    rig.drop_file("held.csv", &held);
    wait_until("held.csv unknown", || {
        rig.ledger()
            .open_submissions()
            .is_ok_and(|o| o.iter().any(|s| s.state == State::Unknown))
    })
    .await;
    // Later files go through while it is held, and it is never sent again.
    for i in 0..3 {
        rig.drop_file(&format!("next-{i}.csv"), &payments(41 + i, 5));
    }
    for i in 0..3 {
        rig.wait_filed(DONE, &format!("next-{i}.csv")).await;
    }
    let processing = payment_files(&rig.sub(PROCESSING));
    assert_eq!(processing.len(), 1, "{processing:?}");
    assert_eq!(original_of(&processing[0]), "held.csv");
    // Looked at again (every second here), never sent again.
    wait_until("held.csv looked at again", || {
        log_lines(&["outcome unknown; the file stays in processing/", "held.csv"]).len() >= 2
    })
    .await;
    let at_sandbox = rig.sandbox.batches();
    assert_eq!(at_sandbox.len(), 3);
    assert_eq!(rig.sandbox.requests(), 4, "held.csv was sent once");
    let held_sha = sha256_hex(&held);
    assert!(rig.sandbox_batches_of(&held_sha).is_empty());
    daemon.stop().await;
}
