//! The client against the independent sandbox (`paydrop-sandbox`, written
//! from the provider's pages, not from paydrop's code), end to end: the
//! `File` part as the provider decodes it, and result callbacks in the
//! published shape (`file` + `data` with its `Hash`, pages of 1,000 lines,
//! 18 or 20 columns) posted by the sandbox to the daemon's receiver.

mod common_submit;
mod watch_common;

use std::time::Duration;

use common_submit::{expected_parts, options, Spec, World};
use paydrop::compress::Codec;
use paydrop::results::Outcome;
use paydrop::upload::BodyMode;
use paydrop::watch::DONE;
use paydrop_sandbox::bulk::{self, ResultColumns};
use watch_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_or_brotli_file_part_decodes_to_exactly_the_rows_sent_without_header() {
    let world = World::start().await;
    for (codec, sandbox_codec, suffix) in [
        (Codec::Gzip, bulk::Codec::Gzip, ".gz"),
        (Codec::Brotli, bulk::Codec::Brotli, ".br"),
    ] {
        let name = format!("rows-{codec}.csv");
        let spec = Spec {
            header: true,
            ..Spec::valid(700, 3 + world.sandbox.batches().len() as u64)
        };
        let (path, _) = world.generate(&name, spec);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"cardNumber,"), "the file has a header");
        let rows = expected_parts(&bytes, true, 150_000).remove(0);

        world
            .submit(&path, &options(codec, BodyMode::FilePart))
            .await
            .expect("accepted");

        let batch = world.sandbox.batches().pop().expect("a batch");
        let stored = world
            .sandbox
            .batch_file_bytes(batch.bulk_payment_id)
            .unwrap();
        assert_eq!(stored, rows, "{codec}: the rows, no header");
        assert_eq!(batch.rows, 700, "{codec}");
        assert_eq!(batch.file_part_encoding, Some(sandbox_codec), "{codec}");
        assert_eq!(batch.content_encoding, None, "{codec}");
        assert_eq!(batch.file_name, Some(format!("{name}{suffix}")), "{codec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_signed_with_another_webhook_key_is_refused_and_records_nothing() {
    let rig = Rig::start_with(|s| {
        s.bulk.webhook_hash_key = "not-the-merchants-key".into();
        s.bulk.callback.attempts = 2;
        s.bulk.callback.backoff = Duration::from_millis(20);
    })
    .await;
    let daemon = rig.daemon(rig.config()).await;
    let bytes = payments(41, 12);
    rig.drop_file("forged.csv", &bytes);
    let filed = rig.wait_filed(DONE, "forged.csv").await;
    let given_up = wait_for("the sandbox to give the callback up", || {
        rig.sandbox.callbacks().into_iter().find(|c| !c.delivered)
    })
    .await;

    assert_eq!(given_up.attempts, 2, "every attempt refused");
    assert_eq!(rig.sandbox.callbacks_delivered(), 0);
    let batch = rig.wait_ledger_file(&filed).await;
    assert!(rig.ledger().results_of_batch(batch.id).unwrap().is_empty());
    let sub = &rig.ledger_batches()[0].submissions[0];
    assert!(sub.results_at.is_none(), "{sub:#?}");
    let progress = rig.ledger().result_progress(sub.id).unwrap();
    assert_eq!((progress.pages_received, progress.rows_with_result), (0, 0));
    assert!(!sidecar(&filed, "results.json").exists());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_1000_rows_comes_in_pages_and_is_complete_only_after_the_last() {
    // Three pages of 1,000, 1,000 and 500 lines, page 1 posted again last,
    // with a pause between pages so that the state after page 1 is seen.
    let rig = Rig::start_with(|s| {
        s.bulk.seed = 5;
        s.bulk.decline_rate = 0.2;
        s.bulk.callback.page_delay = Duration::from_secs(2);
        s.bulk.callback.repeat_page = Some(1);
    })
    .await;
    let daemon = rig.daemon(rig.config()).await;
    let (seed, rows) = (42, 2_500);
    rig.drop_file("paged.csv", &payments(seed, rows));
    let filed = rig.wait_filed(DONE, "paged.csv").await;
    let batch = rig.wait_ledger_file(&filed).await;
    let sub_id = batch.submissions[0].id;

    wait_until("page 1 delivered", || {
        rig.sandbox.callbacks_delivered() >= 1
    })
    .await;
    let early = rig.ledger().result_progress(sub_id).unwrap();
    if rig.sandbox.callbacks_delivered() == 1 {
        assert!(!early.complete, "{early:#?}");
        assert_eq!(early.rows_with_result, 1_000, "{early:#?}");
        assert!(!sidecar(&filed, "results.json").exists());
    }

    let results = rig.wait_sidecar(&filed, "results.json").await;
    let progress = rig.ledger().result_progress(sub_id).unwrap();
    assert!(progress.complete, "{progress:#?}");
    assert_eq!(
        (progress.pages_received, progress.pages_expected),
        (3, Some(3))
    );
    let posted = wait_for("every page posted, page 1 twice", || {
        let c = rig.sandbox.callbacks();
        (c.len() == 4).then_some(c)
    })
    .await;
    let pages: Vec<(u64, bool)> = posted
        .iter()
        .map(|c| (c.page_number, c.delivered))
        .collect();
    assert_eq!(
        pages,
        [(1, true), (2, true), (3, true), (1, true)],
        "{posted:#?}"
    );
    let lines = rig.ledger().results_of_batch(batch.id).unwrap();
    assert_eq!(lines.len(), rows as usize, "each row once");
    let expected = outcomes(5, 0.2, seed, rows);
    for (line, e) in lines.iter().zip(&expected) {
        assert_eq!(
            (line.line_number, line.is_paid(), line.amount),
            (e.0 as i64, e.3.is_none(), e.2)
        );
    }
    let r = read_json(&results);
    let paid = expected.iter().filter(|e| e.3.is_none()).count();
    assert_eq!(r["summary"]["paid"]["rows"], paid);
    assert_eq!(r["summary"]["declined"]["rows"], rows as usize - paid);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eighteen_and_twenty_column_result_files_are_both_recorded() {
    // 20 columns: paid or declined by PaymentStatusId. 18 columns (no
    // PaymentStatusId): a line with an error code is a decline, one without
    // is recorded but not taken as paid until the bulk query confirms it.
    for columns in [ResultColumns::Eighteen, ResultColumns::Twenty] {
        let rig = Rig::start_with(|s| {
            s.bulk.seed = 9;
            s.bulk.decline_rate = 0.4;
            s.bulk.callback.columns = columns;
        })
        .await;
        let daemon = rig.daemon(rig.config()).await;
        let (seed, rows) = (77, 30);
        rig.drop_file("columns.csv", &payments(seed, rows));
        let filed = rig.wait_filed(DONE, "columns.csv").await;
        let results = rig.wait_sidecar(&filed, "results.json").await;

        let batch = rig.wait_ledger_file(&filed).await;
        let lines = rig.ledger().results_of_batch(batch.id).unwrap();
        let expected = outcomes(9, 0.4, seed, rows);
        let declined = expected.iter().filter(|e| e.3.is_some()).count();
        assert!(declined > 0 && declined < rows as usize, "{columns:?}");
        assert_eq!(lines.len(), rows as usize, "{columns:?}");
        for (line, e) in lines.iter().zip(&expected) {
            let outcome = match (e.3, columns) {
                (Some(_), _) => Outcome::Declined,
                (None, ResultColumns::Twenty) => Outcome::Paid,
                (None, ResultColumns::Eighteen) => Outcome::Review,
            };
            assert_eq!(
                (line.line_number, line.outcome, line.amount),
                (e.0 as i64, outcome, e.2),
                "{columns:?}"
            );
            if let Some(d) = e.3 {
                assert_eq!(line.error_code, d.bank_code, "{columns:?}");
            }
        }
        let r = read_json(&results);
        let s = &r["summary"];
        assert_eq!(s["declined"]["rows"], declined, "{columns:?}");
        let paid = match columns {
            ResultColumns::Twenty => rows as usize - declined,
            ResultColumns::Eighteen => 0,
        };
        assert_eq!(s["paid"]["rows"], paid, "{columns:?}");
        daemon.stop().await;
    }
}
