//! The daemon's HTTP side: the result callback (posted here by the test, in
//! the provider's published shape) refuses what it cannot match or trust and
//! records a result file once; `/metrics` counts what happened.

mod common_callback;
mod watch_common;

use std::fs;

use common_callback::{Callback, Line};
use paydrop::watch::{DONE, FAILED};
use serde_json::json;
use watch_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_matched_authenticated_and_recorded_once() {
    // The sandbox never posts: the test is the provider's callback.
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    let (seed, rows) = (51, 8);
    let bytes = payments(seed, rows);
    rig.drop_file("cb.csv", &bytes);
    let filed = rig.wait_filed(DONE, "cb.csv").await;
    let batch = rig.sandbox.batches().remove(0);
    let (bulk_id, code) = (batch.bulk_payment_id, batch.merchant_unique_code.clone());
    // Rows 2 and 5 declined (insufficient funds: retryable), 7 expired card.
    let lines: Vec<Line> = (1..=rows)
        .map(|n| {
            let cells = row_cells(seed, n);
            let (code, amount) = (&cells[9], &cells[2]);
            match n {
                2 | 5 => Line::declined(n, code, amount, "51", "Insufficient funds"),
                7 => Line::declined(n, code, amount, "54", "Expired card"),
                _ => Line::paid(n, code, amount),
            }
        })
        .collect();
    let results = common_callback::file(&lines);
    let callback = Callback::new(WEBHOOK_KEY, bulk_id, &code, results.clone());
    let results_path = sidecar(&filed, "results.json");
    let recorded = |rig: &Rig| {
        rig.ledger()
            .submission_by_code(&code)
            .unwrap()
            .unwrap()
            .results_at
    };
    let nothing_recorded = |rig: &Rig| {
        assert!(recorded(rig).is_none(), "nothing stored");
        assert!(rig
            .ledger()
            .results_of_batch(rig.ledger_batches()[0].id)
            .unwrap()
            .is_empty());
        assert!(!results_path.exists());
    };

    // An unknown batch: 404, logged, nothing stored.
    let other = Callback::new(WEBHOOK_KEY, 999_999, "pd-not-ours-1of1", results.clone());
    let (status, body) = other.post(&daemon.callback_url()).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("pd-not-ours-1of1"), "{body}");
    let logged = log_lines(&["result callback refused", "pd-not-ours-1of1"]);
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert!(logged[0].contains("status=404"), "{}", logged[0]);

    // A wrong secret: 401, nothing stored.
    let (status, body) = callback.post(&daemon.url("/callback/not-the-secret")).await;
    assert_eq!(status, 401, "{body}");
    // No secret at all while one is configured: 401.
    let (status, body) = callback.post(&daemon.url("/callback")).await;
    assert_eq!(status, 401, "{body}");
    // The right secret, but a Hash made with another key, or none: 401.
    let forged = callback.clone().set(
        "Hash",
        json!(common_callback::hash("not-the-key", bulk_id, &code)),
    );
    let (status, body) = forged.post(&daemon.callback_url()).await;
    assert_eq!(
        (status, body.as_str()),
        (
            401,
            "wrong Hash: made with another key, or over other values"
        )
    );
    let (status, body) = callback
        .clone()
        .without("Hash")
        .post(&daemon.callback_url())
        .await;
    assert_eq!(status, 401, "{body}");
    nothing_recorded(&rig);

    // The real one: recorded, results written.
    let (status, body) = callback.post(&daemon.callback_url()).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "recorded 8 results; results complete: 8 rows")
    );
    assert!(results_path.exists(), "written before the answer");
    let first = fs::read(&results_path).unwrap();
    let r = read_json(&results_path);
    assert_eq!(r["summary"]["paid"]["rows"], 5);
    assert_eq!(r["summary"]["declined"]["rows"], 3);
    assert_eq!(r["rows_sent"], 8);
    assert_eq!(
        json_dec(&r["summary"]["declined"]["amount"]),
        [2, 5, 7].iter().map(|&n| dec(&row_amount(seed, n))).sum()
    );
    assert_eq!(r["retry"]["rows"], 2);
    let retry_path = sidecar(&filed, "retry.csv");
    let retry = fs::read_to_string(&retry_path).unwrap();
    let want: String = [2, 5]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let mut cells = row_cells(seed, n);
            cells[3] = (i + 1).to_string();
            cells[9] = format!("{}-R1", cells[9]);
            cells.join(",") + "\n"
        })
        .collect();
    assert_eq!(retry, want);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&retry_path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the retry file holds full card numbers"
        );
    }
    let at = recorded(&rig).expect("recorded");

    // The same callback again, and gzipped: 200 "already recorded", nothing
    // changes.
    for again in [callback.clone(), callback.clone().gzipped()] {
        let (status, body) = again.post(&daemon.callback_url()).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "already recorded; results complete: 8 rows")
        );
    }
    assert_eq!(fs::read(&results_path).unwrap(), first);
    assert_eq!(recorded(&rig), Some(at));
    let stored = rig
        .ledger()
        .results_of_batch(rig.ledger_batches()[0].id)
        .unwrap();
    assert_eq!(stored.len(), rows as usize);
    assert_eq!(stored.iter().filter(|l| !l.is_paid()).count(), 3);

    let m = daemon.metrics().await;
    assert_eq!(metric(&m, "paydrop_callbacks_recorded_total"), "3");
    assert_eq!(metric(&m, "paydrop_callbacks_refused_total"), "5");
    assert_eq!(metric(&m, "paydrop_callbacks_unauthorized_total"), "4");
    assert_eq!(metric(&m, "paydrop_rows_paid_total"), "5");
    assert_eq!(metric(&m, "paydrop_rows_declined_total"), "3");
    assert_eq!(metric(&m, "paydrop_results_incomplete_parts"), "0");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_files_done_in_prometheus_text() {
    let rig = Rig::start().await;
    let daemon = rig.daemon(rig.config()).await;
    let before = daemon.metrics().await;
    assert_eq!(metric(&before, "paydrop_files_done_total"), "0");

    let good: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("m-{i}.csv"), payments(60 + i, 4 + i)))
        .collect();
    for (name, bytes) in &good {
        rig.drop_file(name, bytes);
    }
    rig.drop_file("m-empty.csv", b"");
    for (name, _) in &good {
        let filed = rig.wait_filed(DONE, name).await;
        rig.wait_sidecar(&filed, "results.json").await;
    }
    rig.wait_filed(FAILED, "m-empty.csv").await;
    let done = payment_files(&rig.sub(DONE)).len();
    assert_eq!(done, 3);

    // Counted just after the move: wait for the last one.
    daemon.metrics_when("paydrop_files_failed_total", "1").await;
    let answer = http()
        .get(daemon.metrics_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = answer.text().await.unwrap();
    // Prometheus text: every sample has its HELP and TYPE, and is a number.
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP paydrop_") || rest.starts_with("TYPE paydrop_"),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            text.contains(&format!("# TYPE {name} counter\n"))
                || text.contains(&format!("# TYPE {name} gauge\n")),
            "{name}"
        );
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    assert_eq!(metric(&text, "paydrop_files_done_total"), done.to_string());
    assert_eq!(metric(&text, "paydrop_files_failed_total"), "1");
    assert_eq!(metric(&text, "paydrop_files_claimed_total"), "4");
    assert_eq!(metric(&text, "paydrop_callbacks_recorded_total"), "3");
    let rows: u64 = good
        .iter()
        .map(|(_, b)| b.iter().filter(|&&c| c == b'\n').count() as u64)
        .sum();
    assert_eq!(
        metric(&text, "paydrop_rows_submitted_total"),
        rows.to_string()
    );
    let amount: rust_decimal::Decimal = (0..3).map(|i| total(60 + i, 4 + i)).sum();
    assert_eq!(
        dec(&metric(&text, "paydrop_amount_submitted_total")),
        amount
    );
    daemon.stop().await;
}
