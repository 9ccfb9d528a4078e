//! Posting a finished batch's results to its `CallbackAddress`, as
//! published: `multipart/form-data` with a part `file` (the result file,
//! gzip when `IsCompressed`) and a text field `data` (JSON), page by page.
//!
//! Sources: "Bulk Payment Callback Method", the example receiver
//! (https://developer.paywall.one/payment-orchestration-integration-document/example-codes/bulk-payment-callback-method),
//! for the two parts and the JSON keys and types; "Bulk Transaction
//! Callback"
//! (https://developer.paywall.one/payment-orchestration-integration-document/callback-examples/bulk-transaction-callback)
//! for `PageNumber`, `TotalPages`, `HasMorePages` (partial callbacks of
//! 1,000 records) and the `Hash`; "Hash Generation"
//! (https://developer.paywall.one/payment-orchestration-integration-document/hash-generation)
//! for the `BulkPayment` hash format.
//!
//! The pages say nothing of retries; the sandbox retries an attempt that
//! fails (connection error, timeout, non-2xx) with a doubling backoff.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::io::ReaderStream;
use tracing::{info, warn};

use super::clock;
use super::config::{CallbackConfig, PageOrder};
use super::finish::sleep_or_cancel;
use super::outcome::mix;
use super::results::{self, PageFile, Style};
use super::store::{Batch, CallbackRecord};
use crate::Shared;

/// The `Hash` of a bulk callback: lowercase hex SHA-256 of
/// `{key}###{bulkPaymentId}###{merchantUniqueCode}` (the `BulkPayment`
/// format of the Hash Generation page), `key` being the merchant's System
/// Webhook Hash Key and the code the batch's.
///
/// ```
/// // The test vector of docs/providers/paywall.md §4.1.
/// assert_eq!(
///     paydrop_sandbox::bulk::callback_hash("demo-webhook-key", 4711, "batch-2025-001"),
///     "190b5ab0828730f6570ce2530cada65f5a8ae5e4468ed704ef1ab8cee277fe46"
/// );
/// ```
pub fn callback_hash(key: &str, bulk_payment_id: i64, merchant_unique_code: &str) -> String {
    let input = format!("{key}###{bulk_payment_id}###{merchant_unique_code}");
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// The `data` field, keys in the order of the example receiver's model,
/// then the paging keys of the bulk-transaction page.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Data {
    /// The callback-type table has no bulk entry; the bulk example uses 1.
    r#type: i32,
    bulk_payment_id: i64,
    file_record_id: i64,
    file_name: String,
    file_size: u64,
    line_count: u64,
    /// A string in the receiver's model; the type's name, as .NET writes an
    /// enum (the value is not shown on any page).
    file_format: &'static str,
    is_compressed: bool,
    /// The receiver's model makes it a required string: empty when the
    /// batch did not fail as a whole.
    error_message: String,
    date_time: String,
    created_at: String,
    finished_at: String,
    duration_time: f64,
    hash: String,
    hash_format: &'static str,
    hash_key_type: i16,
    merchant_unique_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_pages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    has_more_pages: Option<bool>,
}

/// Posts every page of a finished batch, in the configured order (plus a
/// repeated page when configured). `resent`: asked for by the resend call.
pub(crate) async fn deliver(shared: &Arc<Shared>, batch: &Arc<Batch>, gzip: bool, resent: bool) {
    let bulk = &shared.bulk;
    let cfg = &bulk.config.callback;
    let Some(&(finished_at, _)) = batch.finished.get() else {
        return;
    };
    let rows = batch.record.rows;
    let page_size = cfg.page_size.unwrap_or(rows).max(1);
    let total_pages = rows.div_ceil(page_size);
    let mut order: Vec<u64> = (1..=total_pages).collect();
    if cfg.order == PageOrder::Shuffled {
        shuffle(
            &mut order,
            bulk.config.seed ^ batch.record.bulk_payment_id as u64,
        );
    }
    if let Some(page) = cfg.repeat_page.filter(|p| (1..=total_pages).contains(p)) {
        order.push(page);
    }
    let style = Style {
        columns: cfg.columns,
        crlf: cfg.crlf,
        gzip,
        seed: bulk.config.seed,
        decline_rate: bulk.config.decline_rate,
        date_time: clock::with_offset(&finished_at),
    };
    let style = Arc::new(style);
    for (k, &page) in order.iter().enumerate() {
        if k > 0 && !sleep_or_cancel(&shared.cancel, cfg.page_delay).await {
            return;
        }
        let first = (page - 1) * page_size;
        let count = page_size.min(rows - first);
        let (dir, b, s) = (bulk.dir.path().to_path_buf(), batch.clone(), style.clone());
        let written =
            tokio::task::spawn_blocking(move || results::write_page(&dir, &b, first, count, &s))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                warn!(error = %e, "sandbox: cannot write a result page");
                return;
            }
        };
        let paging = Paging {
            page,
            total_pages,
            has_more: k + 1 < order.len(),
        };
        if !deliver_page(shared, batch, &file, gzip, paging, resent).await {
            return;
        }
    }
}

#[derive(Clone, Copy)]
struct Paging {
    page: u64,
    total_pages: u64,
    has_more: bool,
}

/// Posts one page until it is answered 2xx or the attempts run out, and
/// records the series; false when the sandbox stopped meanwhile.
async fn deliver_page(
    shared: &Arc<Shared>,
    batch: &Batch,
    file: &PageFile,
    gzip: bool,
    paging: Paging,
    resent: bool,
) -> bool {
    let bulk = &shared.bulk;
    let config = &bulk.config;
    let cfg = &config.callback;
    let record = &batch.record;
    let Some(url) = record.callback_address.as_deref() else {
        return true;
    };
    let Some(&(finished_at, _)) = batch.finished.get() else {
        return true;
    };
    let name = format!(
        "result_{}_{}.txt{}",
        record.bulk_payment_id,
        paging.page,
        if gzip { ".gz" } else { "" }
    );
    let with_paging = cfg.paging_fields;
    let data = Data {
        r#type: 1,
        bulk_payment_id: record.bulk_payment_id,
        file_record_id: bulk.store.next_file_record_id(),
        file_name: name.clone(),
        file_size: file.size,
        line_count: file.lines,
        file_format: "TXT",
        is_compressed: gzip,
        error_message: String::new(),
        date_time: clock::with_offset(&finished_at),
        created_at: clock::local_millis(&batch.created_at),
        finished_at: clock::with_offset(&finished_at),
        duration_time: (finished_at - batch.created_at).num_milliseconds() as f64 / 1000.0,
        hash: callback_hash(
            config.webhook_hash_key.expose(),
            record.bulk_payment_id,
            &record.merchant_unique_code,
        ),
        hash_format: "BulkPayment",
        hash_key_type: config.hash_key_type,
        merchant_unique_code: record.merchant_unique_code.clone(),
        page_number: with_paging.then_some(paging.page),
        total_pages: with_paging.then_some(paging.total_pages),
        has_more_pages: with_paging.then_some(paging.has_more),
    };
    let data = serde_json::to_string(&data).expect("the callback data serialises");
    let mut backoff = cfg.backoff;
    let mut attempts = 0;
    let mut delivered = false;
    while attempts < cfg.attempts.max(1) {
        if attempts > 0 {
            if !sleep_or_cancel(&shared.cancel, backoff).await {
                return false;
            }
            backoff = backoff.saturating_mul(2);
        }
        attempts += 1;
        match post(&bulk.http, url, &data, file, &name, gzip, cfg).await {
            Ok(()) => {
                delivered = true;
                break;
            }
            Err(e) => warn!(
                bulk_payment_id = record.bulk_payment_id,
                page = paging.page,
                attempts,
                error = %e,
                "sandbox: result callback attempt failed"
            ),
        }
    }
    if delivered {
        bulk.delivered.fetch_add(1, Ordering::SeqCst);
        info!(
            bulk_payment_id = record.bulk_payment_id,
            page = paging.page,
            "sandbox: result callback delivered"
        );
    }
    bulk.store.push_callback(CallbackRecord {
        bulk_payment_id: record.bulk_payment_id,
        page_number: paging.page,
        total_pages: paging.total_pages,
        lines: file.lines,
        compressed: gzip,
        attempts,
        delivered,
        resent,
    });
    true
}

/// One attempt, streaming the page's file from disk (a streamed body cannot
/// be cloned, so every attempt reopens it).
async fn post(
    http: &reqwest::Client,
    url: &str,
    data: &str,
    file: &PageFile,
    name: &str,
    gzip: bool,
    cfg: &CallbackConfig,
) -> Result<(), String> {
    let opened = tokio::fs::File::open(&file.path)
        .await
        .map_err(|e| e.to_string())?;
    let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(opened, 64 * 1024));
    let part = reqwest::multipart::Part::stream_with_length(body, file.size)
        .file_name(name.to_string())
        .mime_str(if gzip {
            "application/gzip"
        } else {
            "text/plain"
        })
        .map_err(|e| e.to_string())?;
    let form = reqwest::multipart::Form::new();
    let form = if cfg.file_part_first {
        form.part("file", part).text("data", data.to_string())
    } else {
        form.text("data", data.to_string()).part("file", part)
    };
    // The address may carry the merchant's path secret: errors drop it.
    http.post(url)
        .multipart(form)
        .timeout(cfg.timeout)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map(drop)
        .map_err(|e| e.without_url().to_string())
}

/// A Fisher–Yates shuffle drawn from `seed` (the same every run).
fn shuffle(pages: &mut [u64], seed: u64) {
    for i in (1..pages.len()).rev() {
        let j = (mix(seed, &(i as u64).to_le_bytes()) % (i as u64 + 1)) as usize;
        pages.swap(i, j);
    }
}
