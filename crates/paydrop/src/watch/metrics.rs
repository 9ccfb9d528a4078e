//! The daemon's own counters, rendered for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use rust_decimal::Decimal;

use crate::callback::prometheus;

/// Counters for `/metrics` (Prometheus text format).
#[derive(Default)]
pub struct Metrics {
    pub files_claimed: AtomicU64,
    pub files_done: AtomicU64,
    pub files_failed: AtomicU64,
    pub files_deferred: AtomicU64,
    pub rows_submitted: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub submit_millis: AtomicU64,
    /// Exact, printed as a decimal literal (never through a float).
    pub amount_submitted: std::sync::Mutex<Decimal>,
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        for (name, help, v) in [
            (
                "paydrop_files_claimed_total",
                "Files taken from an inbox",
                c(&self.files_claimed),
            ),
            (
                "paydrop_files_done_total",
                "Files submitted and moved to done/",
                c(&self.files_done),
            ),
            (
                "paydrop_files_failed_total",
                "Files moved to failed/",
                c(&self.files_failed),
            ),
            (
                "paydrop_files_deferred_total",
                "Files left in processing/ to retry later",
                c(&self.files_deferred),
            ),
            (
                "paydrop_rows_submitted_total",
                "Payment rows accepted by the provider",
                c(&self.rows_submitted),
            ),
            (
                "paydrop_upload_bytes_total",
                "File bytes streamed into uploads",
                c(&self.upload_bytes),
            ),
            (
                "paydrop_submit_milliseconds_total",
                "Time spent validating and submitting",
                c(&self.submit_millis),
            ),
        ] {
            prometheus(&mut out, "counter", name, help, v);
        }
        let amount = *self.amount_submitted.lock().expect("metrics lock");
        prometheus(
            &mut out,
            "counter",
            "paydrop_amount_submitted_total",
            "Sum of accepted amounts, all currencies",
            amount,
        );
        out
    }
}
