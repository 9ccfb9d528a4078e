//! The settings of the bulk surface, with the defaults the pages suggest and,
//! where the pages are silent, the sandbox's own choice (said beside it).

use std::time::Duration;

use axum::http::StatusCode;
use chrono::NaiveDate;

use crate::envelope::{ApiKeys, Secret};

/// How the bulk surface behaves.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `apikeypublic` / `apiclientpublic` it accepts
    /// (default `sandbox-key` / `sandbox-client`).
    pub keys: ApiKeys,
    /// The merchant's "System Webhook Hash Key", the first part of every
    /// callback `Hash` (default `sandbox-webhook-key`).
    pub webhook_hash_key: Secret,
    /// The `HashKeyType` written beside the `Hash`: 4, the only value seen
    /// in a bulk callback example (docs/providers/paywall.md §4.3; the
    /// key-type table itself is not public).
    pub hash_key_type: i16,
    /// The currencies `CurrencyId` may name (default: [`Currency::sdk_table`]).
    pub currencies: Vec<Currency>,
    /// Most transactions in one file: 150,000, as the startdirect page says
    /// (https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/1.-payment/3.-file).
    pub max_rows: u64,
    /// The sandbox's today, for card expiry and the callback resend's 7 days;
    /// `None` is today in Europe/Istanbul.
    pub today: Option<NaiveDate>,
    /// What a repeated batch `MerchantUniqueCode` gets (the pages are
    /// silent; default [`DuplicateCode::Reject`]).
    pub duplicate_code: DuplicateCode,
    /// HTTP status of a refusal of the request's content (a field, the
    /// file, a duplicate). The pages do not say; the default 200 makes a
    /// client read `Result` and `ErrorCode`, as it must (docs §8.1).
    /// Authentication and transport problems always get their HTTP status.
    pub refusal_status: StatusCode,
    /// Write the inquiry answers inside the envelope's `Body` instead of
    /// bare, as the query page's example shows them (default `false`).
    pub inquiry_in_envelope: bool,
    /// Seed of the per-row outcome (see [`super::outcome`]).
    pub seed: u64,
    /// Share of rows (0.0–1.0) the bank declines.
    pub decline_rate: f64,
    /// The result callback.
    pub callback: CallbackConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keys: ApiKeys::default(),
            webhook_hash_key: "sandbox-webhook-key".into(),
            hash_key_type: 4,
            currencies: Currency::sdk_table(),
            max_rows: 150_000,
            today: None,
            duplicate_code: DuplicateCode::Reject,
            refusal_status: StatusCode::OK,
            inquiry_in_envelope: false,
            seed: 1,
            decline_rate: 0.05,
            callback: CallbackConfig::default(),
        }
    }
}

/// One currency `CurrencyId` may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Currency {
    /// Its `CurrencyId`.
    pub id: u32,
    /// ISO 4217 letters.
    pub code: String,
    /// Decimals an amount may carry (ISO 4217 minor units).
    pub minor_units: u32,
}

impl Currency {
    /// No currency page is public; Paywall's .NET SDK numbers them
    /// (`Models/Abstraction/IRequestParams.cs`, enum `Currency`,
    /// docs/providers/paywall.md §5.4). Minor units from ISO 4217.
    pub fn sdk_table() -> Vec<Currency> {
        [
            (1, "TRY"),
            (2, "USD"),
            (3, "EUR"),
            (4, "BAM"),
            (5, "MKD"),
            (6, "ALL"),
            (7, "GBP"),
        ]
        .into_iter()
        .map(|(id, code)| Currency {
            id,
            code: code.into(),
            minor_units: 2,
        })
        .collect()
    }
}

/// What a startdirect whose batch `MerchantUniqueCode` was accepted before
/// gets. No page says (docs §6.6), so tests can prove a client never relies
/// on deduplication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DuplicateCode {
    /// Refused with `MerchantUniqueCodeAlreadyExist` (119, SDK); nothing
    /// recorded.
    #[default]
    Reject,
    /// Answered with the earlier batch (same `BulkPaymentId`); nothing new
    /// recorded, the file ignored.
    Dedupe,
    /// A second batch under the same code: a provider that pays twice.
    PayAgain,
}

/// How many columns a result line has. The English callback page lists 20
/// (https://developer.paywall.one/payment-orchestration-integration-document/callback-examples/bulk-file-callback),
/// the Turkish result-file page 18, without `PaymentActivityTypeId` and
/// `PaymentStatusId` (docs §2.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResultColumns {
    /// The English page's 20 columns.
    #[default]
    Twenty,
    /// The Turkish page's 18 columns.
    Eighteen,
}

/// When the callback's `file` is gzip (`IsCompressed: true`).
///
/// The bulk-transaction callback page says compression "is applied only if
/// specified by you at the time the request is sent"
/// (https://developer.paywall.one/payment-orchestration-integration-document/callback-examples/bulk-transaction-callback),
/// and the callback-retry page names that switch: `CallbackBodyCompression`
/// (https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/7.-callback-retry).
/// It is not tied to how the upload itself was compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CallbackCompression {
    /// Gzip when the request said `CallbackBodyCompression=true`.
    #[default]
    AsRequested,
    /// Always gzip.
    Always,
    /// Never gzip, whatever the request asked.
    Never,
}

/// The order in which the pages of a partial callback are posted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PageOrder {
    /// Page 1 first.
    #[default]
    InOrder,
    /// A permutation drawn from the seed (the same every run).
    Shuffled,
}

/// The result callback.
#[derive(Clone, Debug)]
pub struct CallbackConfig {
    /// Wait between accepting a batch and finishing it (its outcomes are
    /// fixed then, the inquiry shows them, and the callback starts).
    pub delay: Duration,
    /// Records per callback. The bulk-transaction page: partial callbacks
    /// "in batches of 1,000", with `PageNumber`, `TotalPages`,
    /// `HasMorePages`. On by default, `Some(1000)`: the client cannot ask
    /// for it and so must be ready for it. `None`: one callback holding the
    /// whole file.
    pub page_size: Option<u64>,
    /// Write `PageNumber`, `TotalPages`, `HasMorePages` in `data` (default
    /// true). The page's C# receiver model has none of them; `false` lets a
    /// test send that shape (then `page_size` should be `None`).
    pub paging_fields: bool,
    /// Columns of a result line (default 20).
    pub columns: ResultColumns,
    /// When the `file` part is gzip (default: as the request asked).
    pub compression: CallbackCompression,
    /// Lines end with CRLF instead of LF (the pages do not say).
    pub crlf: bool,
    /// The order of the pages (default in order).
    pub order: PageOrder,
    /// Post this page a second time, after all the others (it then carries
    /// `HasMorePages: false`, the earlier ones true).
    pub repeat_page: Option<u64>,
    /// Wait between two pages.
    pub page_delay: Duration,
    /// Send the `file` part before the `data` field (default: `data` first;
    /// the pages do not say).
    pub file_part_first: bool,
    /// Attempts per page; an attempt fails on a connection error, a timeout
    /// or a non-2xx answer.
    pub attempts: u32,
    /// Wait after the first failed attempt; doubled after each.
    pub backoff: Duration,
    /// Time limit of one attempt.
    pub timeout: Duration,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            delay: Duration::from_millis(200),
            page_size: Some(1000),
            paging_fields: true,
            columns: ResultColumns::Twenty,
            compression: CallbackCompression::AsRequested,
            crlf: false,
            order: PageOrder::InOrder,
            repeat_page: None,
            page_delay: Duration::ZERO,
            file_part_first: false,
            attempts: 5,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(30),
        }
    }
}
