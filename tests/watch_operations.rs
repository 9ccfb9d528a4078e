//! What an operator sees of the daemon: `/metrics` and `/health` on their
//! own listener (series labelled by inbox and currency, gauges, Prometheus
//! text format), the callback listener serving nothing else, and the start
//! checks (missing inbox folder, unreachable provider); a wrong base path:
//! `watch_wrong_base.rs`.

mod watch_common;

use std::collections::BTreeMap;
use std::fs;

use paydrop::watch::{self, WatchHooks, DONE};
use serde_json::Value;
use watch_common::*;

/// `inbox="…",currency="…"` as the daemon writes it for the rig's inbox.
fn inbox_labels(rig: &Rig) -> String {
    let inbox = rig
        .inbox
        .display()
        .to_string()
        .replace('\\', r"\\")
        .replace('"', "\\\"");
    format!("inbox=\"{inbox}\",currency=\"TRY\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_labelled_by_inbox_and_currency_with_gauges() {
    let rig = Rig::start().await;
    let daemon = rig.daemon(rig.config()).await;
    let started = chrono::Utc::now().timestamp();
    let (seed, rows) = (71, 5);
    rig.drop_file("m.csv", &payments(seed, rows));
    rig.wait_filed(DONE, "m.csv").await;
    daemon.metrics_when("paydrop_files_done_total", "1").await;
    // The processing gauge drops just after the file is counted.
    let text = daemon.metrics_when("paydrop_files_processing", "0").await;

    // The format: one HELP and one TYPE per name, before its samples; every
    // sample a number.
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(
                typed.insert(name.into(), kind.into()).is_none(),
                "{name} twice"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: no HELP");
        } else if !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(typed.contains_key(name), "{name} sampled before its TYPE");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    assert!(!text.contains("Some("), "no Debug formatting:\n{text}");

    let labels = inbox_labels(&rig);
    let one = |name: &str| {
        let s = series(&text, name);
        assert_eq!(s.len(), 1, "{name}: {s:?}");
        assert_eq!(s[0].0, labels, "{name}");
        s[0].1
    };
    assert_eq!(one("paydrop_files_done_total"), 1.into());
    assert_eq!(one("paydrop_files_failed_total"), 0.into());
    assert_eq!(one("paydrop_rows_submitted_total"), rows.into());
    assert_eq!(one("paydrop_amount_submitted_total"), total(seed, rows));
    assert_eq!(one("paydrop_files_processing"), 0.into());
    assert_eq!(one("paydrop_files_waiting"), 0.into());
    let last = one("paydrop_last_success_timestamp_seconds");
    let now = chrono::Utc::now().timestamp();
    assert!(
        last >= started.into() && last <= now.into(),
        "{last} not in {started}..={now}"
    );
    for gauge in [
        "paydrop_parts_outcome_unknown",
        "paydrop_batches_awaiting_results",
        "paydrop_files_processing",
        "paydrop_last_success_timestamp_seconds",
    ] {
        assert_eq!(typed[gauge], "gauge", "{gauge}");
    }
    assert_eq!(metric(&text, "paydrop_parts_outcome_unknown"), "0");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_json_and_503_when_the_ledger_cannot_be_written() {
    let rig = Rig::start().await;
    let daemon = rig.daemon(rig.config()).await;
    let health = || async {
        let answer = http()
            .get(daemon.metrics_url("/health"))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.expect("/health answers JSON");
        (status, body)
    };
    let (status, body) = health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["inbox_files"], 0);
    assert!(body["last_success"].is_null(), "{body}");

    rig.drop_file("h.csv", &payments(72, 2));
    rig.wait_filed(DONE, "h.csv").await;
    daemon.metrics_when("paydrop_files_done_total", "1").await;
    let (status, body) = health().await;
    assert_eq!(status, 200, "{body}");
    let last = body["last_success"]
        .as_str()
        .expect("a time after a success");
    assert!(chrono::DateTime::parse_from_rfc3339(last).is_ok(), "{last}");

    // A ledger that is gone cannot be written: the daemon cannot work.
    let aside = rig.ledger_path.with_extension("aside");
    fs::rename(&rig.ledger_path, &aside).unwrap();
    let (status, body) = health().await;
    fs::rename(&aside, &rig.ledger_path).unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ok"], false);
    let problem = body["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("ledger") && problem.contains("cannot be written"),
        "{problem}"
    );
    assert_eq!(health().await.0, 200);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_listener_serves_no_metrics_and_no_debug_text() {
    let rig = Rig::start().await;
    let daemon = rig.daemon(rig.config()).await;
    for path in ["/metrics", "/health"] {
        let answer = http().get(daemon.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{path} on the callback listener");
    }
    // An unknown BulkPaymentId: the 404 names it as a number.
    let data = serde_json::json!({
        "BulkPaymentId": 9999,
        "Hash": "x",
        "HashKeyType": 4,
        "HashFormat": "BulkPayment",
    });
    let form = reqwest::multipart::Form::new()
        .text("data", data.to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"".to_vec()).file_name("r.txt"),
        );
    let answer = http()
        .post(daemon.callback_url())
        .multipart(form)
        .send()
        .await
        .unwrap();
    let text = answer.text().await.unwrap();
    assert!(!text.contains("Some("), "{text}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_inbox_folder_stops_the_start_unless_it_may_be_created() {
    let rig = Rig::start().await;
    let mut config = rig.config();
    let missing = rig.dir.path().join("no-such-inbox");
    config.watch.inboxes[0].path = missing.clone();
    let ended = guard(
        "a start that refuses",
        watch::run(
            config.clone(),
            rig.registry.clone(),
            rig.client(),
            WatchHooks::default(),
            None,
            std::future::pending(),
        ),
    )
    .await;
    let e = format!("{:#}", ended.expect_err("no start without the inbox"));
    assert!(
        e.contains("does not exist") && e.contains("create_inboxes") && e.contains("no-such-inbox"),
        "{e}"
    );
    assert!(!missing.exists(), "nothing made");

    config.watch.create_inboxes = true;
    let daemon = Daemon::start(
        config,
        rig.registry.clone(),
        rig.client(),
        WatchHooks::default(),
    )
    .await;
    assert!(missing.join("processing").is_dir());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_is_an_error_line_and_the_daemon_keeps_running() {
    init_logs();
    let rig = Rig::start().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut config = rig.config();
    config.provider.base_url = Some(base.clone());
    let daemon = rig.daemon(config).await;
    let line = wait_for("the ERROR about the provider", || {
        log_lines(&["ERROR", "cannot be reached", &base])
            .into_iter()
            .next()
    })
    .await;
    assert!(line.contains("base_url"), "{line}");
    let health = http()
        .get(daemon.metrics_url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "still running");
    daemon.stop().await;
}
