//! The result callback against the ledger: pages of a large batch in any
//! order and repeated, both result-line forms, result files that do not
//! match what was sent, partial and empty deliveries, a callback that comes
//! before the daemon stored its BulkPaymentId, parts whose results never
//! come, a request that never ends, and counters that count each row once.
//! The callbacks are built by hand from the provider's pages
//! (`common_callback`); the daemon starts from a ledger seeded as `submit`
//! leaves it.

mod common_callback;
mod watch_common;

use std::fs;
use std::time::Duration;

use common_callback::ledger::{accept, seed, Rows, Seeded};
use common_callback::{file, Callback, Line};
use paydrop::config::Config;
use paydrop::watch::DONE;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use watch_common::*;

fn seed_batch(rig: &Rig, name: &str, file_seed: u64, rows: u64, split: u64) -> Seeded {
    seeded(rig, name, file_seed, rows, split, true)
}

fn seeded(rig: &Rig, name: &str, file_seed: u64, rows: u64, split: u64, accepted: bool) -> Seeded {
    seed(
        &rig.ledger_path,
        &rig.sub(DONE),
        name,
        rows,
        split,
        accepted,
        Rows {
            text: &|n| row_cells(file_seed, n).join(","),
            sent: &|n| (row_code(file_seed, n), dec(&row_amount(file_seed, n))),
        },
    )
}

/// Whether row `n` is declined in these tests, and why.
fn decline(n: u64) -> Option<(&'static str, &'static str)> {
    match n {
        n if n % 17 == 0 => Some(("51", "Insufficient funds")),
        n if n % 23 == 0 => Some(("54", "Expired card")),
        _ => None,
    }
}

/// The honest result lines of rows `range` of file `file_seed`.
fn lines(file_seed: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Line> {
    range
        .map(|n| {
            let (code, amount) = (row_code(file_seed, n), row_amount(file_seed, n));
            match decline(n) {
                Some((bank, why)) => Line::declined(n, &code, &amount, bank, why),
                None => Line::paid(n, &code, &amount),
            }
        })
        .collect()
}

/// The whole result file of part `i`.
fn part_callback(s: &Seeded, file_seed: u64, i: usize) -> Callback {
    let sub = &s.batch.submissions[i];
    let (bulk, code) = s.part(i);
    let lines = lines(file_seed, sub.first_row..=sub.first_row + sub.rows - 1);
    Callback::new(WEBHOOK_KEY, bulk, &code, file(&lines))
}

fn progress_of(rig: &Rig, s: &Seeded, i: usize) -> paydrop::ledger::ResultProgress {
    rig.ledger()
        .result_progress(s.batch.submissions[i].id)
        .unwrap()
}

async fn post_ok(daemon: &Daemon, cb: &Callback) -> String {
    let (status, body) = cb.post(&daemon.callback_url()).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Rows counted by the daemon, by outcome.
async fn counted(daemon: &Daemon) -> [u64; 4] {
    let m = daemon.metrics().await;
    [
        "paydrop_rows_paid_total",
        "paydrop_rows_declined_total",
        "paydrop_rows_authorised_total",
        "paydrop_rows_unsettled_total",
    ]
    .map(|name| metric(&m, name).parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_250000_row_batch_in_1000_row_pages_is_complete_only_after_the_last_page() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    let (file_seed, rows) = (81, 250_000);
    let s = seed_batch(&rig, "big.csv", file_seed, rows, 150_000);
    assert_eq!(s.batch.submissions.len(), 2);
    let mut pages = Vec::new();
    for (i, sub) in s.batch.submissions.iter().enumerate() {
        let (bulk, code) = s.part(i);
        let total = sub.rows.div_ceil(1000) as u32;
        for p in 0..total {
            let first = sub.first_row + u64::from(p) * 1000;
            let last = (first + 999).min(sub.first_row + sub.rows - 1);
            let mut cb = Callback::new(
                WEBHOOK_KEY,
                bulk,
                &code,
                file(&lines(file_seed, first..=last)),
            )
            .page(p + 1, total);
            if p % 3 == 0 {
                cb = cb.gzipped();
            }
            cb.file_first = p % 5 == 0;
            pages.push((i, p + 1, cb));
        }
    }
    assert_eq!(pages.len(), 250);
    pages.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    let (last_part, last_page, last) = pages.pop().unwrap();
    let results = sidecar(&s.file, "results.json");
    for (k, (_, _, cb)) in pages.iter().enumerate() {
        let body = post_ok(&daemon, cb).await;
        assert!(
            body.starts_with("recorded 1000 results; results "),
            "{body}"
        );
        if k % 25 == 0 {
            // The provider sends a page twice: nothing new.
            let again = post_ok(&daemon, cb).await;
            assert!(again.starts_with("already recorded; results "), "{again}");
        }
    }
    // Every page but one: the batch is not complete, nothing is written.
    let p = progress_of(&rig, &s, last_part);
    let expected = s.batch.submissions[last_part].rows;
    assert!(!p.complete);
    assert_eq!(
        (p.rows_with_result, p.rows_sent, p.missing_pages.as_slice()),
        (
            expected - 1000,
            expected,
            [(last_page, last_page)].as_slice()
        )
    );
    assert_eq!(
        p.to_string(),
        format!(
            "results incomplete: {} of {expected} rows, {} of {} pages received, missing {last_page}",
            expected - 1000,
            expected / 1000 - 1,
            expected / 1000
        )
    );
    assert!(progress_of(&rig, &s, 1 - last_part).complete);
    assert!(!results.exists());
    assert_eq!(counted(&daemon).await, [0; 4]);
    let m = daemon.metrics().await;
    assert_eq!(metric(&m, "paydrop_results_incomplete_parts"), "1");

    let body = post_ok(&daemon, &last).await;
    assert_eq!(
        body,
        format!("recorded 1000 results; results complete: {expected} rows")
    );
    let r = read_json(&results);
    let declined = (1..=rows).filter(|&n| decline(n).is_some()).count() as u64;
    let retry = (1..=rows).filter(|&n| n % 17 == 0).count() as u64;
    assert_eq!(r["rows_sent"], rows);
    assert_eq!(r["summary"]["paid"]["rows"], rows - declined);
    assert_eq!(r["summary"]["declined"]["rows"], declined);
    assert_eq!(r["retry"]["rows"], retry);
    assert_eq!(
        json_dec(&r["summary"]["paid"]["amount"]) + json_dec(&r["summary"]["declined"]["amount"]),
        s.batch.amount
    );
    let retry_file = fs::read_to_string(sidecar(&s.file, "retry.csv")).unwrap();
    assert_eq!(retry_file.lines().count() as u64, retry);

    // Pages delivered again after completion change nothing, count nothing.
    for (_, _, cb) in pages.iter().take(3) {
        assert!(post_ok(&daemon, cb).await.starts_with("already recorded"));
    }
    assert_eq!(counted(&daemon).await, [rows - declined, declined, 0, 0]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eighteen_and_twenty_column_result_files_are_both_read() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    let rows = 40;

    // The 20-column form, insurance tab (identityNumber for expiryDate).
    let twenty = seed_batch(&rig, "twenty.csv", 91, rows, rows);
    let mut cb = part_callback(&twenty, 91, 0);
    let insurance: Vec<Line> = lines(91, 1..=rows)
        .into_iter()
        .map(|l| Line {
            insurance: true,
            ..l
        })
        .collect();
    cb.file = file(&insurance);
    assert!(String::from_utf8_lossy(&cb.file).contains(",10*******46,"));
    assert_eq!(
        post_ok(&daemon, &cb).await,
        "recorded 40 results; results complete: 40 rows"
    );
    let r = read_json(&sidecar(&twenty.file, "results.json"));
    assert_eq!(r["summary"]["paid"]["rows"], 37);
    assert_eq!(r["summary"]["declined"]["rows"], 3);
    assert!(r.get("note").is_none());

    // The 18-column form: no PaymentStatusId. A line with an error code is a
    // decline; one without is not taken as paid (the provider's bulk query
    // must confirm it).
    let eighteen = seed_batch(&rig, "eighteen.csv", 92, rows, rows);
    let mut cb = part_callback(&eighteen, 92, 0);
    let short: Vec<Line> = lines(92, 1..=rows).into_iter().map(Line::short).collect();
    cb.file = file(&short);
    assert!(String::from_utf8_lossy(&cb.file)
        .lines()
        .all(|l| l.split(',').count() == 18));
    post_ok(&daemon, &cb).await;
    let r = read_json(&sidecar(&eighteen.file, "results.json"));
    assert_eq!(r["summary"]["paid"]["rows"], 0);
    assert_eq!(r["summary"]["declined"]["rows"], 3);
    assert_eq!(r["summary"]["unsettled"]["rows"], 37);
    assert_eq!(r["retry"]["rows"], 2, "rows 17 and 34: insufficient funds");
    assert!(r["note"].as_str().unwrap().contains("bulk query"), "{r:#}");
    assert_eq!(counted(&daemon).await, [37, 6, 0, 37]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_files_that_do_not_match_what_was_sent_are_refused_and_record_nothing() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    let s = seed_batch(&rig, "t.csv", 93, 34, 34);
    let honest = lines(93, 1..=34);
    let with = |f: &dyn Fn(&mut Vec<Line>)| {
        let mut l = honest.clone();
        f(&mut l);
        let mut cb = part_callback(&s, 93, 0);
        cb.file = file(&l);
        cb
    };
    let card = "4506349116543218";
    let cases: Vec<(Callback, &str)> = vec![
        (
            with(&|l| l[2].amount = "999999.99".into()),
            "row 3 was sent with amount",
        ),
        (
            with(&|l| l[1].code = "SOMEONE-ELSE".into()),
            "row 2 was sent as merchantUniqueCode",
        ),
        (
            with(&|l| l.push(Line::paid(35, "W93-000035", "1.00"))),
            "lineNumber 35 is not a row sent in pd-t.csv-1of1",
        ),
        (
            with(&|l| l[0].line = card.parse().unwrap()),
            "lineNumber 450634******3218 is not a row sent",
        ),
        (
            with(&|l| l.push(honest[0].clone())),
            "row 1 appears twice in this delivery",
        ),
        // The attack: every amount ten times what was sent.
        (
            with(&|l| {
                for line in l.iter_mut() {
                    line.amount = format!("1{}", line.amount);
                }
            }),
            "row 1 was sent with amount",
        ),
    ];
    for (cb, says) in &cases {
        let (status, body) = cb.post(&daemon.callback_url()).await;
        assert_eq!(status, 422, "{body}");
        assert!(body.contains(says), "{says}: {body}");
        assert!(!body.contains(card), "{body}");
        let p = progress_of(&rig, &s, 0);
        assert_eq!(
            (p.rows_with_result, p.pages_received),
            (0, 0),
            "nothing stored"
        );
        assert!(!sidecar(&s.file, "results.json").exists());
    }
    let logged = log_lines(&["WARN", "result callback refused", "status=422"]);
    assert!(logged.len() >= cases.len(), "{logged:#?}");
    assert!(logs().contains("450634******3218") && !logs().contains(card));
    let m = daemon.metrics().await;
    assert_eq!(metric(&m, "paydrop_callbacks_mismatched_total"), "6");

    // The honest file is recorded; one that reports a row otherwise
    // afterwards is refused and changes nothing.
    post_ok(&daemon, &with(&|_| ())).await;
    let written = fs::read(sidecar(&s.file, "results.json")).unwrap();
    let flipped = with(&|l| l[16] = Line::paid(17, &l[16].code, &l[16].amount));
    let (status, body) = flipped.post(&daemon.callback_url()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("row 17 was reported declined (51) before, now paid"),
        "{body}"
    );
    assert_eq!(fs::read(sidecar(&s.file, "results.json")).unwrap(), written);
    let m = daemon.metrics().await;
    assert_eq!(metric(&m, "paydrop_callbacks_mismatched_total"), "7");
    assert_eq!(counted(&daemon).await, [31, 3, 0, 0]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_partial_deliveries_stay_incomplete_until_the_rest_arrives() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    let s = seed_batch(&rig, "p.csv", 94, 34, 34);
    let honest = lines(94, 1..=34);
    let results = sidecar(&s.file, "results.json");
    let mut cb = part_callback(&s, 94, 0);

    cb.file = Vec::new();
    assert_eq!(
        post_ok(&daemon, &cb).await,
        "recorded page 1: no result lines; results incomplete: 0 of 34 rows, all 1 pages received"
    );
    cb.file = file(&honest[..1]);
    assert_eq!(
        post_ok(&daemon, &cb).await,
        "recorded 1 results; results incomplete: 1 of 34 rows, all 1 pages received"
    );
    assert!(!results.exists());
    assert_eq!(counted(&daemon).await, [0; 4]);
    let status = rig
        .cli()
        .arg("status")
        .arg("--config")
        .arg(rig.write_config_file(""))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("pd-p.csv-1of1  34 rows  results incomplete: 1 of 34 rows"),
        "{text}"
    );

    // The complete delivery afterwards completes the batch.
    cb.file = file(&honest);
    assert_eq!(
        post_ok(&daemon, &cb).await,
        "recorded 33 results; results complete: 34 rows"
    );
    let r = read_json(&results);
    assert_eq!(r["summary"]["declined"]["rows"], 3);
    assert_eq!(r["retry"]["rows"], 2);
    let retry = fs::read_to_string(sidecar(&s.file, "retry.csv")).unwrap();
    assert!(
        retry.contains(&format!("{}-R1", row_cells(94, 17)[9])),
        "{retry}"
    );
    assert_eq!(counted(&daemon).await, [31, 3, 0, 0]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_before_the_bulk_payment_id_is_stored_waits_for_it() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let mut config = rig.config();
    config.watch.callback_wait_ms = 30_000;
    let daemon = rig.daemon(config).await;
    // The upload's answer is not recorded yet: the part is pending.
    let s = seeded(&rig, "early.csv", 95, 6, 3, false);
    let cb = part_callback(&s, 95, 0);
    let url = daemon.callback_url();
    let posted = tokio::spawn(async move { cb.post(&url).await });
    daemon
        .metrics_when("paydrop_callbacks_early_total", "1")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!posted.is_finished());
    accept(&rig.ledger_path, &s, 0);
    let (status, body) = guard("the early callback", posted).await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "recorded 3 results; results complete: 3 rows")
    );
    let m = daemon.metrics().await;
    assert_eq!(metric(&m, "paydrop_callbacks_early_total"), "1");

    // The BulkPaymentId of another part: a conflict, whatever the wait.
    accept(&rig.ledger_path, &s, 1);
    let (_, code) = s.part(1);
    let mut wrong = part_callback(&s, 95, 1);
    wrong = wrong.set("BulkPaymentId", json!(s.bulk_id(0))).set(
        "Hash",
        json!(common_callback::hash(WEBHOOK_KEY, s.bulk_id(0), &code)),
    );
    let (status, body) = wrong.post(&daemon.callback_url()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("does not belong to pd-early.csv-2of2"),
        "{body}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_for_a_part_never_recorded_as_accepted_gets_503_not_409() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let mut config = rig.config();
    config.watch.callback_wait_ms = 200;
    let daemon = rig.daemon(config).await;
    let s = seeded(&rig, "late.csv", 96, 3, 3, false);
    let cb = part_callback(&s, 96, 0);
    let answer = common_callback::client()
        .post(daemon.callback_url())
        .multipart(cb.form())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "30");
    let body = answer.text().await.unwrap();
    assert!(
        body.contains("pd-late.csv-1of1 is not yet recorded as accepted"),
        "{body}"
    );
    assert_eq!(progress_of(&rig, &s, 0).rows_with_result, 0);
    // Sent again once the part is accepted: recorded.
    accept(&rig.ledger_path, &s, 0);
    post_ok(&daemon, &cb).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_without_results_are_flagged_in_status_and_metrics() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let mut config = rig.config();
    config.watch.results_overdue_secs = 0;
    let daemon = rig.daemon(config).await;
    let s = seed_batch(&rig, "never.csv", 97, 4, 2);
    let m = daemon.metrics().await;
    assert_eq!(metric(&m, "paydrop_results_incomplete_parts"), "2");
    assert_eq!(metric(&m, "paydrop_results_overdue_parts"), "2");
    let config_file = rig.write_config_file("results_overdue_secs = 0");
    let status = || {
        let out = rig
            .cli()
            .arg("status")
            .arg("--config")
            .arg(&config_file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = status();
    assert!(
        text.contains("results incomplete: 0 of 2 rows, no page received"),
        "{text}"
    );
    assert_eq!(
        text.matches("OVERDUE: no complete results").count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("POST /api/paywall/payment/bulk/send/callback with Date")
            && text.contains("MerchantUniqueCode pd-never.csv-1of2")
            && text.contains("GET /api/paywall/payment/bulk/payment/query"),
        "{text}"
    );

    // Page 1 of 2 of the first part.
    let (bulk, code) = s.part(0);
    let page =
        |n: u64| Callback::new(WEBHOOK_KEY, bulk, &code, file(&lines(97, n..=n))).page(n as u32, 2);
    post_ok(&daemon, &page(1)).await;
    let text = status();
    assert!(
        text.contains("results incomplete: 1 of 2 rows, 1 of 2 pages received, missing 2"),
        "{text}"
    );
    post_ok(&daemon, &page(2)).await;
    post_ok(&daemon, &part_callback(&s, 97, 1)).await;
    let m = daemon.metrics().await;
    assert_eq!(metric(&m, "paydrop_results_incomplete_parts"), "0");
    assert_eq!(metric(&m, "paydrop_results_overdue_parts"), "0");
    assert!(!status().contains("OVERDUE"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_row_once_whatever_the_deliveries() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    let s = seed_batch(&rig, "once.csv", 98, 46, 23);
    // Part 1 whole, three times; part 2 in two pages, each twice, the second
    // page first.
    let whole = part_callback(&s, 98, 0);
    let (bulk, code) = s.part(1);
    let page =
        |p: u32, range| Callback::new(WEBHOOK_KEY, bulk, &code, file(&lines(98, range))).page(p, 2);
    let deliveries = [
        whole.clone(),
        page(2, 35..=46),
        whole.clone(),
        page(2, 35..=46).gzipped(),
        page(1, 24..=34),
        whole,
        page(1, 24..=34),
    ];
    for cb in &deliveries {
        post_ok(&daemon, cb).await;
    }
    assert_eq!(counted(&daemon).await, [42, 4, 0, 0]);
    let m = daemon.metrics().await;
    assert_eq!(metric(&m, "paydrop_callbacks_recorded_total"), "7");
    daemon.stop().await;

    // A restart counts nothing again, even with more deliveries.
    let daemon = rig.daemon(rig.config()).await;
    post_ok(&daemon, &deliveries[1]).await;
    assert_eq!(counted(&daemon).await, [0; 4]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_is_not_sent_whole_in_time_gets_408() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let mut config: Config = rig.config();
    config.watch.callback_timeout_secs = 1;
    let daemon = rig.daemon(config).await;
    let mut tcp = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    let head = format!(
        "POST /callback/{SECRET} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; \
         boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; \
         name=\"data\"\r\n\r\n{{\"BulkPay"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // … and nothing more.
    let mut answer = Vec::new();
    guard("the 408", tcp.read_to_end(&mut answer)).await.ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_with_another_hash_format_or_key_type_is_refused() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    let s = seed_batch(&rig, "h.csv", 99, 3, 3);
    let cb = part_callback(&s, 99, 0);
    for (wrong, says) in [
        (
            cb.clone().set("HashFormat", json!("Payment")),
            "HashFormat 'Payment' is not BulkPayment",
        ),
        (
            cb.clone().set("HashKeyType", json!(7)),
            "HashKeyType 7 is not configured",
        ),
    ] {
        let (status, body) = wrong.post(&daemon.callback_url()).await;
        assert_eq!((status, body.contains(says)), (401, true), "{body}");
    }
    assert_eq!(progress_of(&rig, &s, 0).pages_received, 0);
    // No HashKeyType at all means the webhook key; the page is recorded.
    post_ok(&daemon, &cb.without("HashKeyType").without("HashFormat")).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_complete_before_the_file_is_filed_are_written_once_it_is() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    // The file is not in done/ yet (a daemon stopped between the two).
    let s = seed(
        &rig.ledger_path,
        &rig.dir.path().join("elsewhere"),
        "later.csv",
        5,
        5,
        true,
        Rows {
            text: &|n| row_cells(100, n).join(","),
            sent: &|n| (row_code(100, n), dec(&row_amount(100, n))),
        },
    );
    post_ok(&daemon, &part_callback(&s, 100, 0)).await;
    daemon.stop().await;
    let filed = rig.sub(DONE).join("later.csv");
    fs::create_dir_all(rig.sub(DONE)).unwrap();
    fs::rename(&s.file, &filed).unwrap();
    rig.ledger()
        .set_batch_file(s.batch.id, &filed.display().to_string())
        .unwrap();
    assert!(!sidecar(&filed, "results.json").exists());
    // The next start writes them, and counts them once.
    let daemon = rig.daemon(rig.config()).await;
    rig.wait_sidecar(&filed, "results.json").await;
    daemon.metrics_when("paydrop_rows_paid_total", "5").await;
    daemon.stop().await;
}
