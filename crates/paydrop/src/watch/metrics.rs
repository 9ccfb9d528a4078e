//! The daemon's own numbers and the listener that serves them: `/metrics`
//! (Prometheus text format) and `/health`, on `[watch] metrics_bind`, apart
//! from the callback listener.
//!
//! Every file series is labelled with its inbox and the inbox's currency, so
//! amounts are never added across currencies. The format:
//! <https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>
//! (one HELP and one TYPE line per metric name, label values with `\`, `"`
//! and line feeds escaped).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_decimal::Decimal;
use serde::Serialize;

use super::inbox::{inbox_counts, Inbox};
use crate::callback::Receiver;
use crate::names;

/// The counters and gauges of one inbox.
#[derive(Default)]
pub struct InboxMetrics {
    pub files_claimed: AtomicU64,
    pub files_done: AtomicU64,
    pub files_failed: AtomicU64,
    pub files_deferred: AtomicU64,
    /// Files being submitted right now (a gauge).
    pub files_processing: AtomicU64,
    pub rows_submitted: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub submit_millis: AtomicU64,
    /// Unix time of the last file filed in `done/`; 0 before the first.
    pub last_success: AtomicI64,
    /// Exact, printed as a decimal literal (never through a float).
    pub amount_submitted: Mutex<Decimal>,
}

/// The daemon's metrics: one set per inbox, in the config's order.
pub struct Metrics {
    inboxes: Vec<(Labels, PathBuf, InboxMetrics)>,
}

/// Picks one counter of an inbox's metrics.
type Counter = fn(&InboxMetrics) -> &AtomicU64;

/// The labels of an inbox's series.
struct Labels {
    inbox: String,
    currency: String,
}

impl Metrics {
    pub fn new(inboxes: &[Arc<Inbox>]) -> Metrics {
        Metrics {
            inboxes: inboxes
                .iter()
                .map(|i| {
                    let labels = Labels {
                        inbox: names::path(&i.dir),
                        currency: i.currency.code.to_string(),
                    };
                    (labels, i.dir.clone(), InboxMetrics::default())
                })
                .collect(),
        }
    }

    /// The metrics of the inbox at `index` in the config.
    pub fn inbox(&self, index: usize) -> &InboxMetrics {
        &self.inboxes[index].2
    }

    /// Files waiting in the inboxes (not yet claimed), all together.
    pub fn waiting(&self) -> usize {
        self.inboxes
            .iter()
            .map(|(_, dir, _)| inbox_counts(dir)[0].1)
            .sum()
    }

    /// When a file last went to `done/`, in any inbox.
    pub fn last_success(&self) -> Option<i64> {
        self.inboxes
            .iter()
            .map(|(_, _, m)| m.last_success.load(Ordering::Relaxed))
            .max()
            .filter(|t| *t > 0)
    }

    /// The Prometheus text exposition of the daemon's own series.
    pub fn render(&self, out: &mut String) {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counters: [(&str, &str, Counter); 7] = [
            (
                "paydrop_files_claimed_total",
                "Files taken from an inbox",
                |m| &m.files_claimed,
            ),
            (
                "paydrop_files_done_total",
                "Files submitted and moved to done/",
                |m| &m.files_done,
            ),
            (
                "paydrop_files_failed_total",
                "Files moved to failed/",
                |m| &m.files_failed,
            ),
            (
                "paydrop_files_deferred_total",
                "Files left in processing/ to retry later",
                |m| &m.files_deferred,
            ),
            (
                "paydrop_rows_submitted_total",
                "Payment rows accepted by the provider",
                |m| &m.rows_submitted,
            ),
            (
                "paydrop_upload_bytes_total",
                "File bytes streamed into uploads",
                |m| &m.upload_bytes,
            ),
            (
                "paydrop_submit_milliseconds_total",
                "Time spent validating and submitting",
                |m| &m.submit_millis,
            ),
        ];
        for (name, help, field) in counters {
            self.family(out, "counter", name, help, |m, _| c(field(m)).to_string());
        }
        self.family(
            out,
            "counter",
            "paydrop_amount_submitted_total",
            "Sum of accepted amounts, per currency",
            |m, _| m.amount_submitted.lock().expect("metrics lock").to_string(),
        );
        self.family(
            out,
            "gauge",
            "paydrop_files_processing",
            "Files being submitted now",
            |m, _| c(&m.files_processing).to_string(),
        );
        self.family(
            out,
            "gauge",
            "paydrop_files_waiting",
            "Files in the inbox, not yet taken",
            |_, dir| inbox_counts(dir)[0].1.to_string(),
        );
        self.family(
            out,
            "gauge",
            "paydrop_last_success_timestamp_seconds",
            "Unix time a file last went to done/ (0: not since the daemon started)",
            |m, _| m.last_success.load(Ordering::Relaxed).to_string(),
        );
    }

    /// One metric: its HELP and TYPE, then a sample per inbox.
    fn family(
        &self,
        out: &mut String,
        kind: &str,
        name: &str,
        help: &str,
        value: impl Fn(&InboxMetrics, &std::path::Path) -> String,
    ) {
        header(out, kind, name, help);
        for (labels, dir, m) in &self.inboxes {
            let _ = writeln!(
                out,
                "{name}{{inbox=\"{}\",currency=\"{}\"}} {}",
                escape(&labels.inbox),
                escape(&labels.currency),
                value(m, dir)
            );
        }
    }
}

/// The HELP and TYPE lines of a metric.
fn header(out: &mut String, kind: &str, name: &str, help: &str) {
    let help = help.replace('\\', r"\\").replace('\n', r"\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One metric without labels, with its HELP and TYPE.
pub(crate) fn prometheus(
    out: &mut String,
    kind: &str,
    name: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    header(out, kind, name, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// What the metrics listener reads.
#[derive(Clone)]
pub(super) struct Served {
    pub daemon: Arc<Metrics>,
    pub results: Arc<Receiver>,
    pub ledger: PathBuf,
}

/// Serves `/metrics` and `/health` until aborted.
pub(super) async fn serve(listener: tokio::net::TcpListener, served: Served) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(served);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

async fn metrics(State(s): State<Served>) -> Response {
    let mut out = String::new();
    s.daemon.render(&mut out);
    s.results.render_metrics(&mut out).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// `/health`'s answer.
#[derive(Serialize)]
struct Health {
    ok: bool,
    version: &'static str,
    /// Files waiting in the inboxes, not yet taken.
    inbox_files: usize,
    /// RFC 3339; null before the first file went to `done/`.
    last_success: Option<String>,
    /// Why the daemon cannot work, when it cannot.
    problems: Vec<String>,
}

/// 200 when the daemon can work, 503 with what stops it: the ledger must be
/// writable (nothing is submitted without a record before and after).
async fn health(State(s): State<Served>) -> Response {
    let ledger = s.ledger.clone();
    let problems = tokio::task::spawn_blocking(move || ledger_problem(&ledger))
        .await
        .unwrap_or_else(|e| Some(format!("the ledger check did not finish: {e}")))
        .into_iter()
        .collect::<Vec<_>>();
    let daemon = s.daemon.clone();
    let inbox_files = tokio::task::spawn_blocking(move || daemon.waiting())
        .await
        .unwrap_or_default();
    let health = Health {
        ok: problems.is_empty(),
        version: env!("CARGO_PKG_VERSION"),
        inbox_files,
        last_success: s
            .daemon
            .last_success()
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339()),
        problems,
    };
    let status = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(health)).into_response()
}

/// Why the ledger cannot be written, if it cannot: the file (or, before the
/// first file, its folder) must take writes.
fn ledger_problem(path: &std::path::Path) -> Option<String> {
    let shown = names::path(path);
    let writable = if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "it does not exist",
        ))
    };
    writable
        .err()
        .map(|e| format!("the ledger {shown} cannot be written: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped_as_the_text_format_wants() {
        assert_eq!(
            escape(
                r#"C:\in "box"
x"#
            ),
            r#"C:\\in \"box\"\nx"#
        );
        let mut out = String::new();
        prometheus(&mut out, "gauge", "paydrop_x", "a\\b\nc", 1);
        assert_eq!(
            out,
            "# HELP paydrop_x a\\\\b\\nc\n# TYPE paydrop_x gauge\npaydrop_x 1\n"
        );
    }
}
