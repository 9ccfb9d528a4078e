//! Paywall's file-based bulk payment, as its public pages describe it
//! (digest with URLs: `docs/providers/paywall.md`):
//!
//! | route | module |
//! |---|---|
//! | `POST /api/paywall/payment/bulk/file/startdirect` | `startdirect` (fields, answer), `upload` (streamed body, compression, spool), `file` + `pattern` + `fields` (the sandbox's own reading of pattern files 1 and 3) |
//! | `GET /api/paywall/payment/bulk/payment/query` and `…/query/summary` | `query` |
//! | `POST /api/paywall/payment/bulk/send/callback` | `resend` |
//!
//! An accepted batch is finished after [`CallbackConfig::delay`]
//! (`finish`): each row's outcome is [`outcome`] of the seed and its
//! `merchantUniqueCode`, and the results are posted to the batch's
//! `CallbackAddress` (`callback`, `results`), page by page.
//!
//! # Answers
//!
//! Every answer is Paywall's envelope ([`crate::envelope`]). Transport and
//! authentication problems get their HTTP status, mirrored in `ErrorCode`;
//! a refusal of the content gets [`Config::refusal_status`] (200 by
//! default) with `Result: false`:
//!
//! | HTTP | `ErrorCode` | when |
//! |---|---|---|
//! | 401 | 4 `HeaderMissing` / 401 | `apikeypublic` / `apiclientpublic` absent / wrong |
//! | 400 | 400 | not multipart, a broken body, an undecodable `File`, a field given twice |
//! | 415 | 415 | a `Content-Encoding` other than gzip or br |
//! | 429, 500 | 429, 500 | fault switches ([`crate::faults`]) |
//! | refusal | 2 `InvalidData` | a required field missing or garbled; `FileFormat` not 5; `FilePattern` not 1 or 3; a header row, a quote, a wrong column count, an empty line, a bad identity number, a bad boolean or number column, more rows than [`Config::max_rows`] |
//! | refusal | 3 `NoData` | an empty file; an inquiry for an unknown code |
//! | refusal | 50 `InvalidCardNumber` | a card number failing Luhn; a `cardNoFirst`/`cardNoLast` of the wrong length |
//! | refusal | 51 `Amount` | a row's amount or `Amount` not a plain positive decimal within the currency's minor units |
//! | refusal | 52 `InvalidInstallment` | `Installment` outside 1–255 |
//! | refusal | 53 `InvalidCurrency` | `CurrencyId` not in [`Config::currencies`] |
//! | refusal | 101 `UnexpectedMerchantUniqueCode` | a row code empty or over 250 characters; a batch code over 250 |
//! | refusal | 106 `UnexpectedCardExpired` | an expiry before the sandbox's month |
//! | refusal | 112 `PaymentAmountNotConvenient` | `Amount` given and not the file's total |
//! | refusal | 119 `MerchantUniqueCodeAlreadyExist` | a row code repeated in the file; a batch code seen before under [`DuplicateCode::Reject`] |
//! | refusal | 166 `InvalidCallbackAddress` | `CallbackAddress` not an absolute http(s) URL |
//!
//! The numbers are the official SDK's (no page lists bulk error codes);
//! which one a refusal carries is the sandbox's choice.

mod callback;
mod clock;
mod config;
mod fields;
mod file;
mod finish;
mod outcome;
mod pattern;
mod query;
mod resend;
mod results;
mod startdirect;
mod store;
mod upload;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use chrono::NaiveDate;
use tempfile::TempDir;

pub use callback::callback_hash;
pub use config::{
    CallbackCompression, CallbackConfig, Config, Currency, DuplicateCode, PageOrder, ResultColumns,
};
pub use outcome::{outcome, status, Decline, ACTIVITY_SALE, DECLINES, PAYWALL_DECLINED};
pub use pattern::FilePattern;
pub use store::{BatchRecord, CallbackRecord, Codec};

use crate::{Sandbox, Shared};

/// State of this surface while the sandbox runs.
pub(crate) struct State {
    pub(crate) config: Config,
    /// Spooled uploads and result pages live here until the sandbox stops.
    dir: TempDir,
    store: store::Store,
    /// startdirect requests received, faulted ones included.
    requests: AtomicU64,
    /// Callback pages answered 2xx.
    delivered: AtomicU64,
    http: reqwest::Client,
}

impl State {
    pub(crate) fn new(config: Config) -> io::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(io::Error::other)?;
        Ok(State {
            config,
            dir: tempfile::Builder::new()
                .prefix("paydrop-sandbox-bulk-")
                .tempdir()?,
            store: store::Store::new(),
            requests: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            http,
        })
    }

    /// The sandbox's today: the configured one, or Istanbul's.
    fn today(&self) -> NaiveDate {
        self.config
            .today
            .unwrap_or_else(|| clock::now().date_naive())
    }

    /// Whether a batch's callback is gzip, given what its request asked.
    fn gzip_callback(&self, requested: bool) -> bool {
        match self.config.callback.compression {
            CallbackCompression::AsRequested => requested,
            CallbackCompression::Always => true,
            CallbackCompression::Never => false,
        }
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(startdirect::PATH, post(startdirect::handler))
        .route(query::PATH, get(query::handler::<true>))
        .route(query::SUMMARY_PATH, get(query::handler::<false>))
        .route(resend::PATH, post(resend::handler))
        // Payment files are large and streamed to disk.
        .layer(DefaultBodyLimit::disable())
}

/// The bulk surface, as tests see it.
impl Sandbox {
    /// The full startdirect URL.
    pub fn startdirect_url(&self) -> String {
        format!("{}{}", self.base_url(), startdirect::PATH)
    }

    /// Every batch accepted so far, in order.
    pub fn batches(&self) -> Vec<BatchRecord> {
        self.shared.bulk.store.records()
    }

    /// The decoded file of a batch, exactly as the sandbox stored it (read
    /// whole: for small test files; large ones via [`BatchRecord::file`]).
    pub fn batch_file_bytes(&self, bulk_payment_id: i64) -> io::Result<Vec<u8>> {
        let batch = self
            .shared
            .bulk
            .store
            .batch(bulk_payment_id)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no batch {bulk_payment_id}"),
                )
            })?;
        std::fs::read(&batch.spool)
    }

    /// Whether a batch is finished: its outcomes fixed, its inquiry final,
    /// its callback (if any) started.
    pub fn batch_finished(&self, bulk_payment_id: i64) -> bool {
        self.shared
            .bulk
            .store
            .batch(bulk_payment_id)
            .is_some_and(|b| b.finished.get().is_some())
    }

    /// startdirect requests received (faulted and refused ones included).
    pub fn requests(&self) -> u64 {
        self.shared.bulk.requests.load(Ordering::SeqCst)
    }

    /// Callback pages delivered (answered 2xx), repeats included.
    pub fn callbacks_delivered(&self) -> u64 {
        self.shared.bulk.delivered.load(Ordering::SeqCst)
    }

    /// Every callback page posted (or given up on), in order.
    pub fn callbacks(&self) -> Vec<CallbackRecord> {
        self.shared.bulk.store.callbacks()
    }
}
