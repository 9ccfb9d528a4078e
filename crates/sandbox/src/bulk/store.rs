//! What the bulk surface remembers: every accepted batch with its spooled
//! file, the ids it hands out, and every callback page it posted.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use tempfile::TempPath;

use super::config::DuplicateCode;
use super::file::{self, Row};
use super::pattern::FilePattern;

/// A compression the sandbox decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// RFC 1952 (`gzip`, `application/gzip`, `*.gz`).
    Gzip,
    /// RFC 7932 (`br`, `application/x-brotli`, `*.br`).
    Brotli,
}

impl Codec {
    /// Its `Content-Encoding` token.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Brotli => "br",
        }
    }
}

/// One batch the sandbox accepted, as a test sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchRecord {
    /// The id the sandbox answered with.
    pub bulk_payment_id: i64,
    /// The batch code: the request's `MerchantUniqueCode`, or the one the
    /// sandbox generated when it was absent.
    pub merchant_unique_code: String,
    /// Whether the request came without a `MerchantUniqueCode`.
    pub code_generated: bool,
    /// `FilePattern` (1 or 3).
    pub file_pattern: u16,
    /// `CurrencyId` (1 when it was absent).
    pub currency_id: u32,
    /// `Installment` as sent (absent: single payment).
    pub installment: Option<u32>,
    /// `Half2D` (false when absent).
    pub half_2d: bool,
    /// The file's total (equal to `Amount` when it was given).
    pub amount: Decimal,
    /// Whether the request carried `Amount`.
    pub amount_given: bool,
    /// Payment rows in the file.
    pub rows: u64,
    /// Size and sha256 (lowercase hex) of the decoded file, as stored.
    pub bytes: u64,
    /// See `bytes`.
    pub sha256: String,
    /// The request's `Content-Encoding`, if any.
    pub content_encoding: Option<Codec>,
    /// How the `File` part itself was compressed, if at all.
    pub file_part_encoding: Option<Codec>,
    /// The `File` part's file name and content type, as received.
    pub file_name: Option<String>,
    /// See `file_name`.
    pub file_content_type: Option<String>,
    /// `CallbackAddress`, if given.
    pub callback_address: Option<String>,
    /// Whether the request asked for `CallbackBodyCompression`.
    pub callback_compression: bool,
    /// The decoded file as the sandbox stored it (alive as long as the
    /// sandbox), for tests that compare it with what they sent.
    pub file: PathBuf,
}

/// One attempt series of posting one callback page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackRecord {
    /// The batch.
    pub bulk_payment_id: i64,
    /// `PageNumber` of the page (1 when paging is off).
    pub page_number: u64,
    /// `TotalPages`.
    pub total_pages: u64,
    /// Lines in the page's file.
    pub lines: u64,
    /// `IsCompressed`.
    pub compressed: bool,
    /// Attempts made (1 when the first one was answered 2xx).
    pub attempts: u32,
    /// Whether an attempt was answered 2xx.
    pub delivered: bool,
    /// Posted by the callback-resend endpoint.
    pub resent: bool,
}

/// The totals of a finished batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) success_count: u64,
    pub(crate) success_amount: Decimal,
    pub(crate) failed_count: u64,
    pub(crate) failed_amount: Decimal,
}

/// A batch the sandbox accepted, with what it needs to finish it.
pub(crate) struct Batch {
    pub(crate) record: BatchRecord,
    pub(crate) pattern: FilePattern,
    /// The decoded upload; deleted with the sandbox.
    pub(crate) spool: TempPath,
    /// Row offsets every `file::INDEX_STEP` rows.
    pub(crate) index: Vec<u64>,
    pub(crate) first_payment_id: i64,
    pub(crate) created_at: DateTime<Tz>,
    /// The sandbox's today when it was accepted (the resend's `Date`).
    pub(crate) accepted_on: NaiveDate,
    pub(crate) finished: OnceLock<(DateTime<Tz>, Totals)>,
}

impl Batch {
    /// Calls `f` with rows `first..first + count` (0-based) of the file.
    pub(crate) fn each_row(
        &self,
        first: u64,
        count: u64,
        f: impl FnMut(u64, &Row<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        file::each_row(&self.spool, &self.index, self.pattern, first, count, f)
    }
}

/// A batch about to be recorded.
pub(crate) struct NewBatch {
    pub(crate) record: BatchRecord,
    pub(crate) pattern: FilePattern,
    pub(crate) spool: TempPath,
    pub(crate) index: Vec<u64>,
    pub(crate) created_at: DateTime<Tz>,
    pub(crate) accepted_on: NaiveDate,
}

/// What `record` did with a batch.
pub(crate) enum Recorded {
    Created(Arc<Batch>),
    /// [`DuplicateCode::Dedupe`]: the earlier batch with that code.
    Earlier(Arc<Batch>),
    /// [`DuplicateCode::Reject`]: the earlier batch's id.
    Refused(i64),
}

/// The first `BulkPaymentId` (any number would do; not the page's 3467, so
/// that a test cannot pass by copying the page's example).
const FIRST_BULK_PAYMENT_ID: i64 = 5001;
const FIRST_PAYMENT_ID: i64 = 900_001;

pub(crate) struct Store {
    inner: Mutex<Inner>,
}

struct Inner {
    batches: Vec<Arc<Batch>>,
    by_code: HashMap<String, Vec<usize>>,
    next_bulk_id: i64,
    next_payment_id: i64,
    next_file_record_id: i64,
    callbacks: Vec<CallbackRecord>,
}

impl Store {
    pub(crate) fn new() -> Store {
        Store {
            inner: Mutex::new(Inner {
                batches: Vec::new(),
                by_code: HashMap::new(),
                next_bulk_id: FIRST_BULK_PAYMENT_ID,
                next_payment_id: FIRST_PAYMENT_ID,
                next_file_record_id: 1,
                callbacks: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every write below is a single push or insert: a panic elsewhere
        // cannot leave the store half-written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The batches recorded under `code`, in order.
    pub(crate) fn by_code(&self, code: &str) -> Vec<Arc<Batch>> {
        let inner = self.lock();
        inner
            .by_code
            .get(code)
            .map(|ix| ix.iter().map(|&i| inner.batches[i].clone()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn records(&self) -> Vec<BatchRecord> {
        self.lock()
            .batches
            .iter()
            .map(|b| b.record.clone())
            .collect()
    }

    pub(crate) fn batch(&self, bulk_payment_id: i64) -> Option<Arc<Batch>> {
        self.lock()
            .batches
            .iter()
            .find(|b| b.record.bulk_payment_id == bulk_payment_id)
            .cloned()
    }

    /// Records a batch under the duplicate-code rule, in one step, so that
    /// two uploads with the same code racing each other cannot both pass
    /// a `Reject`.
    pub(crate) fn record(&self, new: NewBatch, rule: DuplicateCode) -> Recorded {
        let mut inner = self.lock();
        let earlier = inner
            .by_code
            .get(&new.record.merchant_unique_code)
            .and_then(|ix| ix.first())
            .map(|&i| inner.batches[i].clone());
        match (earlier, rule) {
            (Some(b), DuplicateCode::Reject) => return Recorded::Refused(b.record.bulk_payment_id),
            (Some(b), DuplicateCode::Dedupe) => return Recorded::Earlier(b),
            _ => {}
        }
        let mut record = new.record;
        record.bulk_payment_id = inner.next_bulk_id;
        inner.next_bulk_id += 1;
        let first_payment_id = inner.next_payment_id;
        inner.next_payment_id += i64::try_from(record.rows).unwrap_or(i64::MAX / 2);
        let batch = Arc::new(Batch {
            record,
            pattern: new.pattern,
            spool: new.spool,
            index: new.index,
            first_payment_id,
            created_at: new.created_at,
            accepted_on: new.accepted_on,
            finished: OnceLock::new(),
        });
        let i = inner.batches.len();
        inner
            .by_code
            .entry(batch.record.merchant_unique_code.clone())
            .or_default()
            .push(i);
        inner.batches.push(batch.clone());
        Recorded::Created(batch)
    }

    /// An earlier batch with this code, if any (a cheap look before the
    /// file is checked; [`Store::record`] decides for good).
    pub(crate) fn first_with_code(&self, code: &str) -> Option<Arc<Batch>> {
        self.by_code(code).into_iter().next()
    }

    pub(crate) fn next_file_record_id(&self) -> i64 {
        let mut inner = self.lock();
        let id = inner.next_file_record_id;
        inner.next_file_record_id += 1;
        id
    }

    pub(crate) fn push_callback(&self, record: CallbackRecord) {
        self.lock().callbacks.push(record);
    }

    pub(crate) fn callbacks(&self) -> Vec<CallbackRecord> {
        self.lock().callbacks.clone()
    }
}
