//! The drop-folder daemon's file lifecycle: a dropped file is taken only once
//! it is completely written, submitted once, filed under `done/` or
//! `failed/` beside a report, and its results become `results.json` and a
//! retry file; names and contents never collide; the inbox may disappear.

mod watch_common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::time::Duration;

use paydrop::ledger::State;
use paydrop::validate::{validate_file, Hooks, Options};
use paydrop::watch::{DONE, FAILED, PROCESSING};
use rand::{RngCore, SeedableRng};
use rust_decimal::Decimal;
use watch_common::*;

/// The sandbox's decline choice in the happy path.
const SANDBOX_SEED: u64 = 11;
const DECLINE_RATE: f64 = 0.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_file_is_submitted_filed_and_its_results_and_retry_file_written() {
    let rig = Rig::start_with(|s| {
        s.bulk.seed = SANDBOX_SEED;
        s.bulk.decline_rate = DECLINE_RATE;
    })
    .await;
    let (seed, rows) = (1, 40);
    let bytes = payments(seed, rows);
    let expected = outcomes(SANDBOX_SEED, DECLINE_RATE, seed, rows);
    let code_of = |d: &Option<paydrop_sandbox::bulk::Decline>| d.map(|d| d.bank_code);
    // The file must exercise every kind of line: paid, retryable declines
    // (51, 05) and declines not worth retrying.
    let retryable = paydrop::results::is_retryable;
    for code in ["51", "05"] {
        assert!(
            expected.iter().any(|e| code_of(&e.3) == Some(code)),
            "{code}"
        );
    }
    assert!(expected.iter().any(|e| e.3.is_none()));
    assert!(expected
        .iter()
        .any(|e| e.3.is_some_and(|d| !retryable(d.bank_code))));

    let daemon = rig.daemon(rig.config()).await;
    rig.drop_file("payments.csv", &bytes);
    let filed = rig.wait_filed(DONE, "payments.csv").await;
    let results_path = rig.wait_sidecar(&filed, "results.json").await;

    // Folders: the file, untouched, in done/ with its report, results and
    // retry file; nothing anywhere else.
    rig.assert_inbox_and_processing_empty();
    assert_eq!(entries(&rig.sub(FAILED)), Vec::<String>::new());
    let name = filed.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        entries(&rig.sub(DONE)),
        vec![
            name.clone(),
            format!("{name}.report.json"),
            format!("{name}.results.json"),
            format!("{name}.retry.csv"),
        ]
    );
    assert_eq!(fs::read(&filed).unwrap(), bytes);

    // The provider has exactly this content, once.
    let sha = sha256_hex(&bytes);
    let at_sandbox = rig.sandbox.batches();
    assert_eq!(at_sandbox.len(), 1, "{at_sandbox:#?}");
    let sb = &at_sandbox[0];
    assert_eq!(
        (sb.sha256.as_str(), sb.rows, sb.amount),
        (sha.as_str(), rows, total(seed, rows))
    );
    assert_eq!(sb.callback_address, Some(daemon.callback_url()));

    // The report names the BulkPaymentId.
    let report = read_json(&sidecar(&filed, "report.json"));
    assert_eq!(report["file"], "payments.csv");
    assert_eq!(report["state"], "done");
    assert!(report["reason"].is_null(), "{report:#}");
    assert_eq!(report_bulk_ids(&report), vec![sb.bulk_payment_id]);
    assert_eq!(report["batch"]["sha256"], sha.as_str());
    assert_eq!(report["validation"]["rows_read"], rows);
    assert_eq!(report["validation"]["rows_invalid"], 0);
    assert_eq!(
        report["batch"]["submissions"][0]["merchant_unique_code"],
        sb.merchant_unique_code.as_str()
    );

    // Results: every row, exact amounts, per code.
    let paid: Vec<_> = expected.iter().filter(|e| e.3.is_none()).collect();
    let declined: Vec<_> = expected.iter().filter(|e| e.3.is_some()).collect();
    let retry: Vec<_> = declined
        .iter()
        .filter(|e| retryable(e.3.unwrap().bank_code))
        .collect();
    let sum = |v: &[&&(u64, String, Decimal, Option<paydrop_sandbox::bulk::Decline>)]| -> Decimal {
        v.iter().map(|e| e.2).sum()
    };
    let r = read_json(&results_path);
    assert_eq!(
        r["bulk_payment_ids"],
        serde_json::json!([sb.bulk_payment_id])
    );
    let s = &r["summary"];
    assert_eq!(s["paid"]["rows"], paid.len());
    assert_eq!(s["declined"]["rows"], declined.len());
    assert_eq!(paid.len() + declined.len(), rows as usize);
    assert_eq!(
        json_dec(&s["paid"]["amount"]),
        paid.iter().map(|e| e.2).sum::<Decimal>()
    );
    assert_eq!(
        json_dec(&s["declined"]["amount"]),
        declined.iter().map(|e| e.2).sum::<Decimal>()
    );
    assert_eq!(
        json_dec(&s["paid"]["amount"]) + json_dec(&s["declined"]["amount"]),
        total(seed, rows)
    );
    assert_eq!(s["retryable"]["rows"], retry.len());
    assert_eq!(json_dec(&s["retryable"]["amount"]), sum(&retry));
    let mut by_code: BTreeMap<&str, (u64, Decimal)> = BTreeMap::new();
    for e in &declined {
        let t = by_code.entry(e.3.unwrap().bank_code).or_default();
        t.0 += 1;
        t.1 += e.2;
    }
    let got = s["by_code"].as_object().expect("by_code");
    assert_eq!(got.len(), by_code.len(), "{got:#?}");
    for (code, (n, amount)) in &by_code {
        let t = &got[*code];
        assert_eq!(t["rows"], *n, "{code}");
        assert_eq!(json_dec(&t["amount"]), *amount, "{code}");
        assert_eq!(t["retryable"], retryable(code), "{code}");
    }
    assert_eq!(r["retry"]["rows"], retry.len());
    assert_eq!(json_dec(&r["retry"]["amount"]), sum(&retry));

    // The retry file: exactly the retryable declined rows, in order,
    // renumbered from 1, with new unique codes, otherwise unchanged.
    let retry_path = sidecar(&filed, "retry.csv");
    assert_eq!(r["retry_file"], retry_path.display().to_string());
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(&retry_path)
        .unwrap();
    let got: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    let want: Vec<Vec<String>> = retry
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut cells = row_cells(seed, e.0);
            cells[3] = (i + 1).to_string();
            cells[9] = format!("{}-R1", e.1);
            cells
        })
        .collect();
    assert_eq!(got, want);
    let originals: std::collections::HashSet<String> =
        (1..=rows).map(|n| row_code(seed, n)).collect();
    assert!(got.iter().all(|c| !originals.contains(&c[9])));
    let check = validate_file(
        &retry_path,
        rig.pattern(),
        &Options::default(),
        Hooks::default(),
    )
    .expect("the retry file can be validated");
    assert!(check.is_valid(), "{:#?}", check.errors);
    assert_eq!(check.rows_read, retry.len() as u64);
    assert_eq!(
        check.totals.iter().map(|t| t.amount).sum::<Decimal>(),
        sum(&retry)
    );

    // Ledger: accepted, results recorded, the file's new place.
    let batches = rig.ledger_batches();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    assert_eq!(b.file, filed.display().to_string());
    assert_eq!(b.submissions.len(), 1);
    let sub = &b.submissions[0];
    assert_eq!(sub.state, State::Accepted);
    assert_eq!(sub.bulk_payment_id, Some(sb.bulk_payment_id));
    assert!(sub.results_at.is_some());
    assert_eq!(sub.attempts, 1);
    let lines = rig.ledger().results_of_batch(b.id).unwrap();
    assert_eq!(lines.len(), rows as usize);
    for (line, e) in lines.iter().zip(&expected) {
        assert_eq!(line.line_number, e.0 as i64);
        assert_eq!(line.is_paid(), e.3.is_none());
        assert_eq!(line.amount, e.2);
    }
    // The sandbox counts the delivery once it has the daemon's answer.
    wait_until("the callback counted as delivered", || {
        rig.sandbox.callbacks_delivered() == 1
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_file_is_taken_only_once_it_stops_growing() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let mut config = rig.config();
    config.watch.quiet_ms = 1000;
    let daemon = rig.daemon(config).await;

    let path = rig.inbox.join("growing.csv");
    let seed = 2;
    fs::write(&path, row(seed, 1)).unwrap();
    let mut rows = 1;
    // A line every 100 ms for about 3 s; the file must stay in the inbox
    // (opened without `create`: a claimed file would make this fail).
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rows += 1;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("the file was taken while it grew ({rows} rows): {e}"));
        f.write_all(row(seed, rows).as_bytes()).unwrap();
        drop(f);
        assert_eq!(entries(&rig.sub(PROCESSING)), Vec::<String>::new());
        assert_eq!(rig.sandbox.requests(), 0);
    }
    let bytes = fs::read(&path).unwrap();
    assert_eq!(bytes, payments(seed, rows));

    let filed = rig.wait_filed(DONE, "growing.csv").await;
    rig.assert_inbox_and_processing_empty();
    assert_eq!(sha256_of(&filed), sha256_hex(&bytes));
    let at_sandbox = rig.sandbox.batches();
    assert_eq!(at_sandbox.len(), 1, "processed once");
    assert_eq!(at_sandbox[0].sha256, sha256_hex(&bytes));
    assert_eq!(at_sandbox[0].rows, rows);
    assert_eq!(rig.sandbox.requests(), 1);
    assert_eq!(rig.ledger_batches().len(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_files_are_taken_and_part_and_dot_files_only_once_renamed() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;

    // Written completely elsewhere, then renamed into the inbox.
    let moved = payments(3, 5);
    fs::write(rig.staging.join("moved.csv"), &moved).unwrap();
    // Being written, by their names: ignored.
    let part = payments(4, 5);
    let hidden = payments(5, 5);
    fs::write(rig.inbox.join("late.csv.part"), &part).unwrap();
    fs::write(rig.inbox.join(".hidden.csv"), &hidden).unwrap();
    fs::rename(rig.staging.join("moved.csv"), rig.inbox.join("moved.csv")).unwrap();

    let filed = rig.wait_filed(DONE, "moved.csv").await;
    assert_eq!(fs::read(&filed).unwrap(), moved);
    // A second ordinary file dropped after them is done too; only then are
    // the ignored ones checked (they had every chance to be taken).
    rig.drop_file("sentinel.csv", &payments(6, 5));
    rig.wait_filed(DONE, "sentinel.csv").await;
    assert_eq!(
        entries(&rig.inbox),
        vec![".hidden.csv", DONE, FAILED, "late.csv.part", PROCESSING]
    );
    assert_eq!(fs::read(rig.inbox.join("late.csv.part")).unwrap(), part);
    assert_eq!(fs::read(rig.inbox.join(".hidden.csv")).unwrap(), hidden);
    assert_eq!(rig.sandbox.batches().len(), 2);

    // Renamed to ordinary names: taken.
    fs::rename(rig.inbox.join("late.csv.part"), rig.inbox.join("late.csv")).unwrap();
    fs::rename(rig.inbox.join(".hidden.csv"), rig.inbox.join("hidden.csv")).unwrap();
    let late = rig.wait_filed(DONE, "late.csv").await;
    let was_hidden = rig.wait_filed(DONE, "hidden.csv").await;
    assert_eq!(fs::read(&late).unwrap(), part);
    assert_eq!(fs::read(&was_hidden).unwrap(), hidden);
    rig.assert_inbox_and_processing_empty();
    let shas: Vec<String> = rig
        .sandbox
        .batches()
        .into_iter()
        .map(|b| b.sha256)
        .collect();
    assert_eq!(shas.len(), 4);
    for content in [&moved, &part, &hidden] {
        assert_eq!(rig.sandbox_batches_of(&sha256_hex(content)).len(), 1);
    }
    assert_eq!(entries(&rig.sub(FAILED)), Vec::<String>::new());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_non_text_files_fail_with_a_reason_and_unchanged_bytes() {
    let rig = Rig::start().await;
    let daemon = rig.daemon(rig.config()).await;

    let mut random = vec![0u8; 4096];
    rand_chacha::ChaCha8Rng::seed_from_u64(99).fill_bytes(&mut random);
    // Make sure the random bytes are not taken for gzip by chance.
    random[0] = 0xc3;
    random[1] = 0x28;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&payments(7, 20)).unwrap();
    let gzip = gz.finish().unwrap();
    let cases: [(&str, Vec<u8>, &[&str]); 3] = [
        ("empty.csv", Vec::new(), &["empty", "0 bytes"]),
        // Random bytes are read as (broken) rows: the validator names what
        // is wrong on each line (see the report's errors below).
        (
            "random.csv",
            random,
            &["rows are invalid; nothing was sent"],
        ),
        (
            "payments.csv.gz",
            gzip,
            &["gzip-compressed", "not delimited text"],
        ),
    ];
    for (name, bytes, _) in &cases {
        rig.drop_file(name, bytes);
    }
    for (name, bytes, why) in &cases {
        let filed = rig.wait_filed(FAILED, name).await;
        assert_eq!(sha256_of(&filed), sha256_hex(bytes), "{name} unchanged");
        assert_eq!(fs::metadata(&filed).unwrap().len(), bytes.len() as u64);
        let report = read_json(&sidecar(&filed, "report.json"));
        assert_eq!(report["file"], *name);
        assert_eq!(report["state"], "failed");
        let reason = report["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("{report:#}"));
        for w in *why {
            assert!(reason.contains(w), "{name}: '{reason}' should say '{w}'");
        }
        assert!(report["batch"].is_null(), "{report:#}");
        if *name == "random.csv" {
            let v = &report["validation"];
            assert_eq!(v["rows_valid"], 0, "{v:#}");
            assert_eq!(v["rows_invalid"], v["rows_read"]);
            assert!(reason.starts_with(&format!("{} of {} rows", v["rows_read"], v["rows_read"])));
            let errors = v["errors"].as_array().expect("errors");
            assert!(!errors.is_empty());
            assert!(
                errors.iter().all(|e| e["kind"] == "column_count"),
                "{errors:#?}"
            );
        }
    }
    rig.assert_inbox_and_processing_empty();
    assert_eq!(entries(&rig.sub(DONE)), Vec::<String>::new());
    assert_eq!(payment_files(&rig.sub(FAILED)).len(), 3);
    assert_eq!(rig.sandbox.requests(), 0, "nothing was sent");
    assert!(rig.ledger_batches().is_empty());
    let m = daemon.metrics_when("paydrop_files_failed_total", "3").await;
    assert_eq!(metric(&m, "paydrop_files_done_total"), "0");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_content_fails_and_equal_names_never_overwrite() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;

    let first = payments(8, 10);
    rig.drop_file("payments.csv", &first);
    let done_first = rig.wait_filed(DONE, "payments.csv").await;
    let bulk_id = report_bulk_ids(&read_json(&sidecar(&done_first, "report.json")));
    assert_eq!(bulk_id.len(), 1);
    assert_eq!(rig.sandbox.batches().len(), 1);

    // The same content under another name.
    rig.drop_file("copy-of-payments.csv", &first);
    let dup = rig.wait_filed(FAILED, "copy-of-payments.csv").await;
    let report = read_json(&sidecar(&dup, "report.json"));
    let reason = report["reason"].as_str().expect("a reason");
    assert!(reason.starts_with("duplicate"), "{reason}");
    assert!(
        reason.contains(&format!("BulkPaymentId {}", bulk_id[0])),
        "{reason}"
    );
    assert!(report["batch"].is_null());
    assert_eq!(fs::read(&dup).unwrap(), first);
    assert_eq!(rig.sandbox.batches().len(), 1, "no extra batch");
    assert_eq!(rig.sandbox.requests(), 1, "nothing was sent again");

    // Another payments.csv, different content, after the first was taken:
    // both end in done/, neither overwritten.
    let second = payments(9, 10);
    rig.drop_file("payments.csv", &second);
    wait_until("the second payments.csv in done/", || {
        rig.filed_as(DONE, "payments.csv")
            .iter()
            .all(|p| sidecar(p, "report.json").exists())
            && rig.filed_as(DONE, "payments.csv").len() == 2
    })
    .await;
    let mut contents: Vec<Vec<u8>> = rig
        .filed_as(DONE, "payments.csv")
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    contents.sort();
    let mut want = vec![first.clone(), second.clone()];
    want.sort();
    assert_eq!(contents, want);
    assert_eq!(rig.sandbox.batches().len(), 2);
    assert_eq!(rig.sandbox_batches_of(&sha256_hex(&second)).len(), 1);
    rig.assert_inbox_and_processing_empty();
    assert_eq!(payment_files(&rig.sub(FAILED)).len(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_content_dropped_twice_at_once_is_sent_once_and_one_copy_fails() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    // Both copies are claimed in the same pass and processed at once.
    let daemon = rig.daemon(rig.config()).await;
    let bytes = payments(10, 300);
    fs::write(rig.staging.join("a.csv"), &bytes).unwrap();
    fs::write(rig.staging.join("b.csv"), &bytes).unwrap();
    fs::rename(rig.staging.join("a.csv"), rig.inbox.join("a.csv")).unwrap();
    fs::rename(rig.staging.join("b.csv"), rig.inbox.join("b.csv")).unwrap();

    wait_until("both copies filed", || {
        let done = payment_files(&rig.sub(DONE));
        let failed = payment_files(&rig.sub(FAILED));
        done.len() + failed.len() == 2
            && done.iter().chain(&failed).all(|n| {
                rig.sub(DONE).join(format!("{n}.report.json")).exists()
                    || rig.sub(FAILED).join(format!("{n}.report.json")).exists()
            })
    })
    .await;
    let done = payment_files(&rig.sub(DONE));
    let failed = payment_files(&rig.sub(FAILED));
    assert_eq!(
        (done.len(), failed.len()),
        (1, 1),
        "done {done:?}, failed {failed:?}"
    );
    let batches = rig.sandbox.batches();
    assert_eq!(batches.len(), 1, "one batch at the provider");
    let report = read_json(&rig.sub(FAILED).join(format!("{}.report.json", failed[0])));
    let reason = report["reason"].as_str().expect("a reason");
    // Refused as a duplicate file once the first is accepted, or by its rows
    // while the first is still in flight (which of the two is timing).
    assert!(
        (reason.starts_with("duplicate")
            && reason.contains(&format!("BulkPaymentId {}", batches[0].bulk_payment_id)))
            || reason.starts_with("300 of the 300 rows of this file were already sent"),
        "{reason}"
    );
    rig.wait_ledger_file(&rig.sub(DONE).join(&done[0])).await;
    assert_eq!(rig.ledger_batches().len(), 1);
    rig.assert_inbox_and_processing_empty();
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_dropped_while_the_first_is_being_sent_fails_as_a_duplicate() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let faults = rig.sandbox.faults();
    // The provider takes a while to answer: the copy arrives meanwhile.
    faults.set_delay(Duration::from_millis(1500));
    let daemon = rig.daemon(rig.config()).await;
    let bytes = payments(14, 20);
    rig.drop_file("first.csv", &bytes);
    wait_until("the first copy in flight", || {
        rig.ledger()
            .open_submissions()
            .is_ok_and(|open| open.iter().any(|s| s.interrupted))
    })
    .await;
    rig.drop_file("second.csv", &bytes);

    let first = rig.wait_filed(DONE, "first.csv").await;
    let (state, second) = rig.wait_filed_anywhere("second.csv").await;
    assert_eq!(state, FAILED, "the copy is a duplicate");
    let batches = rig.sandbox.batches();
    assert_eq!(batches.len(), 1, "one batch at the provider");
    let report = read_json(&sidecar(&second, "report.json"));
    let reason = report["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("duplicate: this content was already submitted")
            && reason.contains(&format!("BulkPaymentId {}", batches[0].bulk_payment_id)),
        "{reason}"
    );
    assert!(report["batch"].is_null(), "{report:#}");
    assert_eq!(fs::read(&second).unwrap(), bytes);
    assert_eq!(
        report_bulk_ids(&read_json(&sidecar(&first, "report.json"))),
        vec![batches[0].bulk_payment_id]
    );
    // The batch stays the first copy's.
    let b = rig.wait_ledger_file(&first).await;
    assert_eq!(rig.ledger_batches().len(), 1);
    assert!(b.is_accepted());
    rig.assert_inbox_and_processing_empty();
    let m = daemon.metrics_when("paydrop_files_failed_total", "1").await;
    assert_eq!(metric(&m, "paydrop_files_done_total"), "1");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_and_recreated_inbox_is_still_watched() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    rig.drop_file("before.csv", &payments(11, 5));
    rig.wait_filed(DONE, "before.csv").await;

    // Deleted (with everything in it), left gone for a few passes of the
    // rescan, recreated empty; then deleted and recreated at once. The
    // daemon must neither get in the way of the deletion nor lose the inbox.
    for (seed, pause) in [(12, Duration::from_millis(500)), (13, Duration::ZERO)] {
        fs::remove_dir_all(&rig.inbox).expect("the daemon does not recreate folders meanwhile");
        tokio::time::sleep(pause).await;
        fs::create_dir(&rig.inbox).unwrap();

        let after = payments(seed, 5);
        let name = format!("after-{seed}.csv");
        rig.drop_file(&name, &after);
        let filed = rig.wait_filed(DONE, &name).await;
        assert_eq!(fs::read(&filed).unwrap(), after);
        rig.assert_inbox_and_processing_empty();
        assert_eq!(
            payment_files(&rig.sub(DONE)),
            vec![filed.file_name().unwrap().to_string_lossy().into_owned()]
        );
        assert_eq!(rig.sandbox_batches_of(&sha256_hex(&after)).len(), 1);
    }
    assert_eq!(rig.sandbox.batches().len(), 3);
    daemon.stop().await;
}
