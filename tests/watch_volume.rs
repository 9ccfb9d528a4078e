//! Many tiny files dropped at once: every one is submitted once and filed,
//! none lost or doubled.

mod watch_common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use paydrop::watch::{DONE, FAILED};
use watch_common::*;

/// Files dropped at once.
const FILES: u64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tiny_files_are_each_submitted_once() {
    // No result callbacks: this is about the files.
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let mut config = rig.config();
    config.watch.concurrency = 4;

    // Written first, then renamed into the inbox all at once.
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..FILES {
        let name = format!("tiny-{i:04}.csv");
        let bytes = payments(1000 + i, 3);
        want.insert(name.clone(), sha256_hex(&bytes));
        fs::write(rig.staging.join(&name), &bytes).unwrap();
    }
    let daemon = rig.daemon(config).await;
    for name in want.keys() {
        fs::rename(rig.staging.join(name), rig.inbox.join(name)).unwrap();
    }

    wait_until("every file filed with its report", || {
        let done = entries(&rig.sub(DONE));
        done.iter().filter(|n| n.ends_with(".report.json")).count() as u64 >= FILES
            || !entries(&rig.sub(FAILED)).is_empty()
    })
    .await;
    assert_eq!(entries(&rig.sub(FAILED)), Vec::<String>::new());
    rig.assert_inbox_and_processing_empty();

    // Each original name exactly once in done/, with its own content.
    let done = payment_files(&rig.sub(DONE));
    assert_eq!(done.len() as u64, FILES);
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for claimed in &done {
        let previous = got.insert(
            original_of(claimed).to_string(),
            sha256_of(&rig.sub(DONE).join(claimed)),
        );
        assert!(previous.is_none(), "{claimed} twice");
    }
    assert_eq!(got, want);

    // The provider: one batch per file, no content twice.
    let batches = rig.sandbox.batches();
    assert_eq!(batches.len() as u64, FILES);
    assert_eq!(rig.sandbox.requests(), FILES);
    let shas: BTreeSet<String> = batches.iter().map(|b| b.sha256.clone()).collect();
    assert_eq!(shas, want.values().cloned().collect::<BTreeSet<_>>());
    assert!(batches.iter().all(|b| b.rows == 3));

    let ledger = rig.ledger_batches();
    assert_eq!(ledger.len() as u64, FILES);
    assert!(ledger.iter().all(|b| b.is_accepted()));
    let m = daemon
        .metrics_when("paydrop_files_done_total", &FILES.to_string())
        .await;
    assert_eq!(metric(&m, "paydrop_files_claimed_total"), FILES.to_string());
    assert_eq!(metric(&m, "paydrop_files_deferred_total"), "0");
    daemon.stop().await;
}
