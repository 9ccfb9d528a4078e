//! An embedded sandbox of the provider's `startdirect` endpoint
//! (`../shared/SPEC.md` §1): an axum server on 127.0.0.1 used by the
//! end-to-end tests, the README demo and `paydrop sandbox --port P`.
//!
//! It behaves like the provider as far as the SPEC describes it, and streams
//! like paydrop itself: the request body is decoded (`Content-Encoding: gzip`
//! or `br`) and parsed as multipart on the fly, the `File` part is decoded
//! again when it is compressed itself and written to a temporary file while
//! its sha256 is computed, and the file is then checked with the same
//! validator the client uses ([`crate::validate::validate_file`]). Nothing
//! holds a whole file in memory; full card numbers and the API key headers
//! are never logged.
//!
//! # Answers
//!
//! Every answer is an [`Envelope`]. Transport and protocol problems get an
//! HTTP error status whose number is also the `ErrorCode`; a request that
//! arrived complete and well-formed but whose *content* is refused gets
//! HTTP 200 with `Result: false` and one of the business codes in [`code`]
//! (as the provider does: the client must look at the envelope, not only at
//! the status).
//!
//! | HTTP | `ErrorCode` | when |
//! |------|-------------|------|
//! | 200 | 0 | batch created and enqueued, or a `MerchantUniqueCode` seen before (same `BulkPaymentId`, nothing new recorded) |
//! | 401 | 401 | `apikeypublic` / `apiclientpublic` missing or wrong |
//! | 400 | 400 | not multipart, a field missing, garbled or given twice, an undecodable body or `File` |
//! | 415 | 415 | a `Content-Encoding` other than `gzip`, `br` or `identity` |
//! | 429 | 429 | fault switch [`Faults::too_many`] (with `Retry-After`) |
//! | 500 | 500 | fault switch [`Faults::server_errors`] |
//! | 503 | 503 | fault switch [`Faults::unavailable`] |
//! | 200 | [`code::FILE_FORMAT`] | `FileFormat` other than 5 |
//! | 200 | [`code::UNKNOWN_PATTERN`] | `FilePattern` not in the registry |
//! | 200 | [`code::UNKNOWN_CURRENCY`] | `CurrencyId` unknown, or rows in another currency |
//! | 200 | [`code::INVALID_FILE`] | a row fails its pattern, or the file is not delimited text |
//! | 200 | [`code::TOO_MANY_ROWS`] | more rows than [`SandboxConfig::max_rows`] |
//! | 200 | [`code::AMOUNT_MISMATCH`] | `Amount` given and not exactly the file's total |
//!
//! Fault switches are applied before authentication, in this order: delay,
//! 429, 500, 503, drop mid-body; `accept_then_crash` is applied after the request
//! was fully processed (and, when accepted, recorded).
//!
//! # Result callback
//!
//! After [`SandboxConfig::callback_delay`], when `CallbackAddress` is not
//! empty, the result file is POSTed there as the provider publishes it
//! (docs/providers/paywall.md §3): `multipart/form-data` with a field `data`
//! (JSON: `BulkPaymentId`, `MerchantUniqueCode`, `Hash` made with
//! [`SandboxConfig::webhook_hash_key`], `HashFormat`, `HashKeyType`, one page
//! of one, …) and the part `file` (`result-{BulkPaymentId}.csv`, not
//! compressed): one line per payment in the order of [`CALLBACK_COLUMNS`],
//! comma-separated, UTF-8, no header, `PaymentStatusId` as the provider's
//! "Payment Statuses" page numbers them (4 successful, 5 failed, 3 a
//! pre-authorisation awaiting capture). Card
//! numbers are masked to first 6 / last 4 and identity numbers to first 2 /
//! last 2. Whether a row is declined is [`outcome`] of its
//! `merchantUniqueCode` and `lineNumber`, so tests can predict every line;
//! the codes written are in [`callback`].
//!
//! The receiving side (marketplace trigger, payouts export, breakdown,
//! payment report) is served by the independent `paydrop-sandbox` crate.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder};
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use chrono::NaiveDate;
use futures::stream::{self, BoxStream};
use futures::task::AtomicWaker;
use futures::{StreamExt, TryStreamExt};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tempfile::{TempDir, TempPath};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::io::{ReaderStream, StreamReader};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{
    field, BulkStart, Envelope, CALLBACK_COLUMNS, HEADER_API_CLIENT, HEADER_API_KEY,
    STARTDIRECT_PATH,
};
use crate::currency::Currency;
use crate::mask;
use crate::pattern::{ColumnType, Encoding, Pattern, Registry, FILE_FORMAT_TXT};
use crate::validate::{validate_file, Hooks, Options, Report};

/// `ErrorCode`s of refused requests (see the module documentation).
pub mod code {
    pub const BAD_REQUEST: i64 = 400;
    pub const UNAUTHORIZED: i64 = 401;
    pub const UNSUPPORTED_ENCODING: i64 = 415;
    pub const TOO_MANY_REQUESTS: i64 = 429;
    pub const SERVER_ERROR: i64 = 500;
    /// `FileFormat` other than 5 (delimited text).
    pub const FILE_FORMAT: i64 = 1001;
    /// `FilePattern` unknown to the sandbox's registry.
    pub const UNKNOWN_PATTERN: i64 = 1002;
    /// `CurrencyId` unknown, or rows in a currency other than `CurrencyId`'s.
    pub const UNKNOWN_CURRENCY: i64 = 1003;
    /// Some row breaks the pattern, or the file is not delimited text at all.
    pub const INVALID_FILE: i64 = 1010;
    /// More rows than the provider accepts in one file.
    pub const TOO_MANY_ROWS: i64 = 1011;
    /// `Amount` differs from the total of the file.
    pub const AMOUNT_MISMATCH: i64 = 1012;
}

/// The `CurrencyId`s the sandbox knows: the provider's official .NET SDK's
/// `Currency` enum (docs/providers/paywall.md §5.4). The client maps none of
/// them but TRY unless configured.
pub const CURRENCY_IDS: [(u32, &str); 7] = [
    (1, "TRY"),
    (2, "USD"),
    (3, "EUR"),
    (4, "BAM"),
    (5, "MKD"),
    (6, "ALL"),
    (7, "GBP"),
];

fn currency_for_id(id: u32) -> Option<Currency> {
    CURRENCY_IDS
        .iter()
        .find(|(i, _)| *i == id)
        .and_then(|(_, c)| Currency::lookup(c))
}

/// Codes written in the result callback.
pub mod callback {
    /// `paywallErrorCode` of an approved payment.
    pub const PAYWALL_OK: u32 = 0;
    /// `paywallErrorCode` of a payment the bank declined.
    pub const PAYWALL_DECLINED: u32 = 1;
    /// `bankErrorCode` / `bankErrorMessage` of an approved payment.
    pub const BANK_APPROVED: (&str, &str) = ("00", "Approved");
    /// `PaymentActivityTypeId`: a sale (`Half2D` false).
    pub const ACTIVITY_SALE: u32 = 1;
    /// `PaymentActivityTypeId`: a pre-authorisation (`Half2D` true).
    pub const ACTIVITY_PREAUTH: u32 = 2;
    /// `PaymentStatusId` of an approved payment.
    pub const STATUS_SUCCESS: u32 = 4;
    /// `PaymentStatusId` of an approved pre-authorisation (`Half2D`).
    pub const STATUS_AUTHORISED: u32 = 3;
    /// `PaymentStatusId` of a declined payment.
    pub const STATUS_FAILED: u32 = 5;
    /// `HashKeyType` of the callback's `Hash`: the webhook hash key.
    pub const HASH_KEY_TYPE: u32 = 4;
    /// `gatewayId`, `gatewayName` and `providerId` of every line.
    pub const GATEWAY: (u32, &str) = (1, "Sandbox");
    pub const PROVIDER_ID: u32 = 1;
}

/// A bank's reason for declining a payment (ISO 8583 response code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decline {
    pub code: &'static str,
    pub message: &'static str,
}

/// The reasons the sandbox declines with, chosen per row by [`outcome`].
pub const DECLINES: [Decline; 5] = [
    Decline {
        code: "51",
        message: "Insufficient funds",
    },
    Decline {
        code: "54",
        message: "Expired card",
    },
    Decline {
        code: "05",
        message: "Do not honour",
    },
    Decline {
        code: "14",
        message: "Invalid card number",
    },
    Decline {
        code: "57",
        message: "Transaction not permitted to cardholder",
    },
];

/// Whether the sandbox approves a row (`None`) or declines it, and why. A
/// pure function of its arguments: `merchant_unique_code` is the row's own
/// (the batch's when the pattern has no such column) and `line_number` the
/// row's `lineNumber` cell as written (its 1-based row number when the
/// pattern has no line-number column).
///
/// ```
/// use paydrop::sandbox::outcome;
/// assert_eq!(outcome(7, 0.0, "MUC-1", "1"), None);
/// assert!(outcome(7, 1.0, "MUC-1", "1").is_some());
/// assert_eq!(outcome(7, 0.5, "MUC-9", "9"), outcome(7, 0.5, "MUC-9", "9"));
/// ```
pub fn outcome(
    seed: u64,
    decline_rate: f64,
    merchant_unique_code: &str,
    line_number: &str,
) -> Option<Decline> {
    let mut key = Vec::with_capacity(merchant_unique_code.len() + line_number.len() + 1);
    key.extend_from_slice(merchant_unique_code.as_bytes());
    key.push(0x1f);
    key.extend_from_slice(line_number.as_bytes());
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(&key, seed);
    // The top 53 bits decide, the low bits pick the reason.
    let share = (h >> 11) as f64 / (1u64 << 53) as f64;
    (share < decline_rate).then(|| DECLINES[(h & 0x7ff) as usize % DECLINES.len()])
}

/// How the sandbox behaves.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Expected `apikeypublic`.
    pub api_key: String,
    /// Expected `apiclientpublic`.
    pub api_client: String,
    /// Patterns the files are checked against.
    pub registry: Registry,
    /// Most rows accepted in one file.
    pub max_rows: u64,
    /// Share of rows (0.0–1.0) declined in the result callback.
    pub decline_rate: f64,
    /// Seed of the per-row decline choice (see [`outcome`]).
    pub seed: u64,
    /// Wait between accepting a batch and posting its results.
    pub callback_delay: Duration,
    /// The sandbox's today: cards expiring before its month are refused;
    /// `None` means the provider's today (Istanbul).
    pub as_of: Option<NaiveDate>,
    /// Attempts to deliver a result callback.
    pub callback_attempts: u32,
    /// Wait after the first failed callback attempt; doubled after each.
    pub callback_backoff: Duration,
    /// The merchant's webhook hash key the callback's `Hash` is made with.
    pub webhook_hash_key: String,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            api_key: "sandbox-key".into(),
            api_client: "sandbox-client".into(),
            registry: Registry::load(None).expect("built-in patterns are valid"),
            max_rows: crate::PROVIDER_MAX_ROWS,
            decline_rate: 0.05,
            seed: 1,
            callback_delay: Duration::from_millis(200),
            as_of: None,
            callback_attempts: 5,
            callback_backoff: Duration::from_millis(200),
            webhook_hash_key: "sandbox-webhook-key".into(),
        }
    }
}

impl fmt::Debug for SandboxConfig {
    // By hand so that the key and client never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("api_key", &"***")
            .field("api_client", &"***")
            .field("max_rows", &self.max_rows)
            .field("decline_rate", &self.decline_rate)
            .field("seed", &self.seed)
            .field("callback_delay", &self.callback_delay)
            .field("as_of", &self.as_of)
            .field("webhook_hash_key", &"***")
            .finish_non_exhaustive()
    }
}

/// Failures to inject, changeable while the server runs. Each counter is
/// the number of coming requests that get the fault; it counts down.
#[derive(Debug)]
pub struct Faults {
    delay_ms: AtomicU64,
    /// Read the first piece of the body, then close the connection without
    /// answering.
    pub drop_mid_body: AtomicU32,
    /// Answer 429 with `Retry-After: retry_after_secs`.
    pub too_many: AtomicU32,
    pub retry_after_secs: AtomicU64,
    /// Answer 500.
    pub server_errors: AtomicU32,
    /// Answer 503 (the provider says it did not take the request).
    pub unavailable: AtomicU32,
    /// Process the request completely (recording the batch when it is
    /// accepted), then close the connection without answering.
    pub accept_then_crash: AtomicU32,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            delay_ms: AtomicU64::new(0),
            drop_mid_body: AtomicU32::new(0),
            too_many: AtomicU32::new(0),
            retry_after_secs: AtomicU64::new(1),
            server_errors: AtomicU32::new(0),
            unavailable: AtomicU32::new(0),
            accept_then_crash: AtomicU32::new(0),
        }
    }
}

impl Faults {
    /// Sleep this long before answering every request (zero: no delay).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }

    /// Turns every fault off.
    pub fn clear(&self) {
        self.set_delay(Duration::ZERO);
        for c in [
            &self.drop_mid_body,
            &self.too_many,
            &self.server_errors,
            &self.unavailable,
            &self.accept_then_crash,
        ] {
            c.store(0, Ordering::SeqCst);
        }
    }

    /// Counts one request down; true when it gets the fault.
    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// One batch the sandbox accepted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchRecord {
    pub bulk_payment_id: i64,
    pub merchant_unique_code: String,
    pub file_pattern: u16,
    pub currency_id: u32,
    pub installment: u32,
    pub half_2d: bool,
    /// The file's total (equal to `Amount` when it was given).
    pub amount: Decimal,
    /// Whether the request carried `Amount`.
    pub amount_given: bool,
    pub rows: u64,
    /// Size and sha256 (hex) of the decoded file.
    pub bytes: u64,
    pub sha256: String,
    /// The request's `Content-Encoding` (`gzip`, `br`), if any.
    pub content_encoding: Option<String>,
    /// How the `File` part itself was compressed (`gzip`, `br`), if at all.
    pub file_part_encoding: Option<String>,
    pub file_name: Option<String>,
    pub callback_address: String,
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<io::Result<()>>>,
}

impl Sandbox {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the `base` of the provider's URLs.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `startdirect` client for this sandbox, with the keys it accepts.
    pub fn client(&self, timeout: std::time::Duration) -> anyhow::Result<crate::upload::Client> {
        let config = &self.shared.config;
        crate::upload::Client::new(
            &self.base_url(),
            crate::upload::Credentials {
                api_key: crate::config::Secret::new(config.api_key.clone()),
                api_client: crate::config::Secret::new(config.api_client.clone()),
            },
            timeout,
            std::time::Duration::from_secs(5),
        )
    }

    /// The full `startdirect` URL.
    pub fn startdirect_url(&self) -> String {
        format!("{}{STARTDIRECT_PATH}", self.base_url())
    }

    /// The fault switches, shared with the running server.
    pub fn faults(&self) -> Arc<Faults> {
        self.shared.faults.clone()
    }

    /// Every batch accepted so far, in order.
    pub fn batches(&self) -> Vec<BatchRecord> {
        self.shared.store().batches.clone()
    }

    /// Requests received on `startdirect` (faulted ones included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Result callbacks delivered (answered with a 2xx).
    pub fn callbacks_delivered(&self) -> u64 {
        self.shared.callbacks_delivered.load(Ordering::SeqCst)
    }

    /// Stops accepting, lets requests in flight finish (for at most five
    /// seconds) and cancels pending callbacks.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Starts a sandbox on 127.0.0.1 with a free port.
pub async fn spawn(config: SandboxConfig) -> io::Result<Sandbox> {
    start(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
}

/// Runs a sandbox on `addr` (which must be a loopback address) until Ctrl-C.
pub async fn serve(config: SandboxConfig, addr: SocketAddr) -> io::Result<()> {
    let sandbox = start(config, addr).await?;
    info!(url = %sandbox.base_url(), "sandbox listening; Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    info!("sandbox stopping");
    sandbox.shutdown().await;
    Ok(())
}

async fn start(config: SandboxConfig, addr: SocketAddr) -> io::Result<Sandbox> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the sandbox only listens on 127.0.0.1, not {}", addr.ip()),
        ));
    }
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(io::Error::other)?;
    let shared = Arc::new(Shared {
        config,
        faults: Arc::new(Faults::default()),
        store: Mutex::new(Store::default()),
        next_id: AtomicI64::new(FIRST_BULK_PAYMENT_ID),
        requests: AtomicU64::new(0),
        callbacks_delivered: AtomicU64::new(0),
        dir: tempfile::Builder::new()
            .prefix("paydrop-sandbox-")
            .tempdir()?,
        cancel: CancellationToken::new(),
        http,
    });
    let app = Router::new()
        .route(STARTDIRECT_PATH, post(startdirect))
        .layer(DefaultBodyLimit::disable())
        .with_state(shared.clone());
    let cancel = shared.cancel.clone();
    let server = axum::serve(
        KillableListener(listener),
        app.into_make_service_with_connect_info::<Conn>(),
    )
    .with_graceful_shutdown(async move { cancel.cancelled().await });
    let server = tokio::spawn(async move { server.await });
    Ok(Sandbox {
        addr,
        shared,
        server: Some(server),
    })
}

const FIRST_BULK_PAYMENT_ID: i64 = 3467;

struct Shared {
    config: SandboxConfig,
    faults: Arc<Faults>,
    store: Mutex<Store>,
    next_id: AtomicI64,
    requests: AtomicU64,
    callbacks_delivered: AtomicU64,
    /// Uploaded and result files live here until they are no longer needed.
    dir: TempDir,
    cancel: CancellationToken,
    http: reqwest::Client,
}

#[derive(Default)]
struct Store {
    batches: Vec<BatchRecord>,
    /// `MerchantUniqueCode` → index in `batches`.
    by_code: HashMap<String, usize>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-written.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn existing(&self, merchant_unique_code: &str) -> Option<BatchRecord> {
        let store = self.store();
        let i = *store.by_code.get(merchant_unique_code)?;
        Some(store.batches[i].clone())
    }

    /// Records a batch, unless its code is already known: then the earlier
    /// batch is the answer and nothing is recorded (`false`).
    fn record(&self, mut batch: BatchRecord) -> (BatchRecord, bool) {
        let mut store = self.store();
        if let Some(&i) = store.by_code.get(&batch.merchant_unique_code) {
            return (store.batches[i].clone(), false);
        }
        batch.bulk_payment_id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let i = store.batches.len();
        store.by_code.insert(batch.merchant_unique_code.clone(), i);
        store.batches.push(batch.clone());
        (batch, true)
    }
}

fn bulk_start(b: &BatchRecord) -> BulkStart {
    BulkStart {
        bulk_payment_id: b.bulk_payment_id,
        merchant_unique_code: b.merchant_unique_code.clone(),
        processed_records: 0,
        total_records: b.rows,
        is_enqueued: true,
        message: Some("File-based bulk payment created and enqueued for processing".into()),
    }
}

// ---------------------------------------------------------------------------
// Connections that a handler can cut: the listener hands out streams whose
// reads and writes fail once the handler pulled the plug, so hyper drops the
// connection without sending a response.

struct KillableListener(TcpListener);

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let stream = KillableStream {
            io,
            kill: Kill::default(),
        };
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[derive(Clone, Default)]
struct Kill(Arc<(AtomicBool, AtomicWaker)>);

impl Kill {
    fn fire(&self) {
        self.0 .0.store(true, Ordering::SeqCst);
        self.0 .1.wake();
    }

    fn check(&self, cx: &mut Context<'_>) -> io::Result<()> {
        self.0 .1.register(cx.waker());
        if self.0 .0.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "sandbox fault: connection dropped",
            ))
        } else {
            Ok(())
        }
    }
}

struct KillableStream {
    io: TcpStream,
    kill: Kill,
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.kill.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.kill.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.kill.check(cx)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The connection a request came on, as a handler sees it.
#[derive(Clone)]
struct Conn(Kill);

impl Connected<axum::serve::IncomingStream<'_, KillableListener>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, KillableListener>) -> Self {
        Conn(stream.io().kill.clone())
    }
}

// ---------------------------------------------------------------------------
// The endpoint.

/// A refused request: the HTTP status and the envelope's code and message.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: i64,
    message: String,
}

impl Refusal {
    fn http(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code: i64::from(status.as_u16()),
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Refusal::http(StatusCode::BAD_REQUEST, message)
    }

    /// Refused content: HTTP 200, `Result: false`.
    fn business(code: i64, message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::OK,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(Envelope::<()>::error(self.code, self.message)),
        )
            .into_response()
    }
}

async fn startdirect(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(Conn(kill)): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let faults = &shared.faults;
    if let Some(faulted) = common_faults(&shared).await {
        // Early answers read the body first: a client still sending would
        // otherwise see the connection reset instead of the answer.
        drain(body).await;
        return faulted;
    }
    if Faults::take(&faults.drop_mid_body) {
        let _ = body.into_data_stream().next().await;
        kill.fire();
        warn!("sandbox fault: connection dropped in the middle of the body");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let crash = Faults::take(&faults.accept_then_crash);
    let answer = match handle(&shared, &headers, body).await {
        Ok(start) => Json(Envelope::ok(
            "File-based bulk payment created and enqueued",
            start,
        ))
        .into_response(),
        Err(refusal) => {
            info!(code = refusal.code, message = %refusal.message, "sandbox: request refused");
            refusal.into_response()
        }
    };
    if crash {
        kill.fire();
        warn!("sandbox fault: request processed, connection dropped before the answer");
    }
    answer
}

/// The faults every API call gets: the delay, then 429 (with
/// `Retry-After`) or 500 when their switch is on.
async fn common_faults(shared: &Shared) -> Option<Response> {
    let faults = &shared.faults;
    let delay = faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if Faults::take(&faults.too_many) {
        let secs = faults.retry_after_secs.load(Ordering::SeqCst);
        let mut answer = Refusal::http(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests; retry later",
        )
        .into_response();
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Some(answer);
    }
    if Faults::take(&faults.server_errors) {
        return Some(
            Refusal::http(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
                .into_response(),
        );
    }
    if Faults::take(&faults.unavailable) {
        return Some(
            Refusal::http(StatusCode::SERVICE_UNAVAILABLE, "service unavailable").into_response(),
        );
    }
    None
}

/// Reads and discards the rest of a body.
async fn drain(body: Body) {
    let mut data = body.into_data_stream();
    while let Some(Ok(_)) = data.next().await {}
}

/// Checks what the headers say, then reads the body.
async fn handle(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
) -> Result<BulkStart, Refusal> {
    let prelude = authorize(&shared.config, headers)
        .and_then(|()| Ok((body_codec(headers)?, boundary(headers)?)));
    match prelude {
        Ok((codec, boundary)) => accept(shared, codec, boundary, body).await,
        Err(refusal) => {
            drain(body).await;
            Err(refusal)
        }
    }
}

fn boundary(headers: &HeaderMap) -> Result<String, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    multer::parse_boundary(content_type)
        .map_err(|e| Refusal::bad_request(format!("the body must be multipart/form-data: {e}")))
}

fn authorize(config: &SandboxConfig, headers: &HeaderMap) -> Result<(), Refusal> {
    let given = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
    let key_ok = given(HEADER_API_KEY) == Some(config.api_key.as_bytes());
    let client_ok = given(HEADER_API_CLIENT) == Some(config.api_client.as_bytes());
    if key_ok && client_ok {
        Ok(())
    } else {
        Err(Refusal::http(
            StatusCode::UNAUTHORIZED,
            format!("missing or wrong {HEADER_API_KEY} / {HEADER_API_CLIENT} headers"),
        ))
    }
}

/// A compression the sandbox decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Gzip,
    Brotli,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Brotli => "br",
        }
    }

    /// Decodes `input` on the fly.
    fn decode<'a, R>(codec: Option<Codec>, input: R) -> Box<dyn AsyncRead + Send + Unpin + 'a>
    where
        R: AsyncBufRead + Send + Unpin + 'a,
    {
        match codec {
            None => Box::new(input),
            Some(Codec::Gzip) => {
                let mut d = GzipDecoder::new(input);
                // Parallel compressors write several members.
                d.multiple_members(true);
                Box::new(d)
            }
            Some(Codec::Brotli) => Box::new(BrotliDecoder::new(input)),
        }
    }
}

fn body_codec(headers: &HeaderMap) -> Result<Option<Codec>, Refusal> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(None),
        "gzip" | "x-gzip" => Ok(Some(Codec::Gzip)),
        "br" => Ok(Some(Codec::Brotli)),
        other => Err(Refusal::http(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding '{other}' is not supported; use gzip or br"),
        )),
    }
}

/// An error with its causes, for messages (multer hides the cause of
/// "failed to read stream", which is where decoding errors are).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The `File` part, stored decoded.
struct Upload {
    path: TempPath,
    bytes: u64,
    sha256: String,
    encoding: Option<Codec>,
    file_name: Option<String>,
}

/// The fields of one request, as received.
#[derive(Default)]
struct Form {
    file: Option<Upload>,
    text: HashMap<String, String>,
}

/// Longest text field accepted.
const TEXT_FIELD_LIMIT: u64 = 64 * 1024;

async fn read_form(
    dir: &Path,
    body: BoxStream<'static, io::Result<Bytes>>,
    boundary: String,
) -> Result<Form, Refusal> {
    let limits = multer::SizeLimit::new()
        .per_field(TEXT_FIELD_LIMIT)
        .for_field(field::FILE, u64::MAX);
    let mut multipart = multer::Multipart::with_constraints(
        body,
        boundary,
        multer::Constraints::new().size_limit(limits),
    );
    let mut form = Form::default();
    let garbled =
        |e: multer::Error| Refusal::bad_request(format!("bad multipart body: {}", chain(&e)));
    // After the first refusal the remaining parts are only skipped, so that
    // the whole body is read before the answer.
    let mut refusal = None;
    while let Some(part) = multipart.next_field().await.map_err(garbled)? {
        if refusal.is_some() {
            continue;
        }
        let name = part.name().unwrap_or_default().to_string();
        let twice = || Refusal::bad_request(format!("field {name} is given more than once"));
        if name == field::FILE {
            match store_file(dir, part).await {
                Ok(_) if form.file.is_some() => refusal = Some(twice()),
                Ok(upload) => form.file = Some(upload),
                Err(e) => refusal = Some(e),
            }
        } else {
            let value = part.text().await.map_err(garbled)?;
            if form.text.insert(name.clone(), value).is_some() {
                refusal = Some(twice());
            }
        }
    }
    refusal.map_or(Ok(form), Err)
}

/// Streams the `File` part to a temporary file, decoding it when it is
/// compressed, and hashes the decoded bytes on the way.
async fn store_file(dir: &Path, mut part: multer::Field<'static>) -> Result<Upload, Refusal> {
    let file_error = |e: &(dyn std::error::Error + 'static)| {
        Refusal::bad_request(format!(
            "field {} could not be read: {}",
            field::FILE,
            chain(e)
        ))
    };
    // The first bytes tell gzip apart even without a name or type.
    let mut head = BytesMut::new();
    while head.len() < 2 {
        match part.chunk().await.map_err(|e| file_error(&e))? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    let file_name = part.file_name().map(str::to_string);
    let encoding = part_codec(&part, &head);
    let rest = part.map_err(io::Error::other);
    let input = StreamReader::new(stream::iter([Ok(head.freeze())]).chain(rest));
    let mut decoded = Codec::decode(encoding, input);

    let tmp = tempfile::Builder::new()
        .prefix("upload-")
        .suffix(".txt")
        .tempfile_in(dir)
        .map_err(|e| server_error("cannot create a temporary file", &e))?;
    let (file, path) = tmp.into_parts();
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = decoded.read(&mut buf).await.map_err(|e| file_error(&e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
        out.write_all(&buf[..n])
            .await
            .map_err(|e| server_error("cannot write the upload", &e))?;
    }
    out.flush()
        .await
        .map_err(|e| server_error("cannot write the upload", &e))?;
    Ok(Upload {
        path,
        bytes,
        sha256: hex::encode(hasher.finalize()),
        encoding,
        file_name,
    })
}

fn server_error(what: &str, e: &io::Error) -> Refusal {
    warn!(error = %e, "{what}");
    Refusal::http(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {e}"))
}

/// Whether the `File` part is compressed: by its name, its type, its
/// `Content-Encoding` header, or gzip's magic bytes.
fn part_codec(part: &multer::Field<'_>, head: &[u8]) -> Option<Codec> {
    let name = part.file_name().unwrap_or_default().to_ascii_lowercase();
    let mime = part
        .content_type()
        .map(|m| m.essence_str().to_ascii_lowercase())
        .unwrap_or_default();
    let encoding = part
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if name.ends_with(".gz")
        || matches!(mime.as_str(), "application/gzip" | "application/x-gzip")
        || encoding == "gzip"
        || head.starts_with(&[0x1f, 0x8b])
    {
        Some(Codec::Gzip)
    } else if name.ends_with(".br")
        || matches!(mime.as_str(), "application/x-brotli" | "application/brotli")
        || encoding == "br"
    {
        Some(Codec::Brotli)
    } else {
        None
    }
}

/// The typed fields of a request.
struct Request {
    file: Upload,
    file_pattern: u16,
    file_format: u8,
    currency_id: u32,
    installment: u32,
    callback_address: String,
    half_2d: bool,
    amount: Option<Decimal>,
    merchant_unique_code: String,
}

impl Request {
    fn from_form(mut form: Form) -> Result<Request, Refusal> {
        let file = form.file.take().ok_or_else(|| missing(field::FILE))?;
        // Optional on the provider's English page.
        let callback_address = form
            .optional(field::CALLBACK_ADDRESS)
            .unwrap_or_default()
            .to_string();
        if !callback_address.is_empty() && reqwest::Url::parse(&callback_address).is_err() {
            return Err(Refusal::bad_request(format!(
                "{} '{callback_address}' is not a URL",
                field::CALLBACK_ADDRESS
            )));
        }
        let half_2d = match form.required(field::HALF_2D)?.trim() {
            v if v.eq_ignore_ascii_case("true") => true,
            v if v.eq_ignore_ascii_case("false") => false,
            v => return Err(garbled(field::HALF_2D, v, "true or false")),
        };
        let amount = match form.optional(field::AMOUNT) {
            None => None,
            Some(v) => match Decimal::from_str_exact(v) {
                Ok(d) if d > Decimal::ZERO => Some(d),
                _ => return Err(garbled(field::AMOUNT, v, "a positive decimal like 1250.75")),
            },
        };
        let merchant_unique_code = form
            .optional(field::MERCHANT_UNIQUE_CODE)
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
        Ok(Request {
            file_pattern: form.number(field::FILE_PATTERN)?,
            file_format: form.number(field::FILE_FORMAT)?,
            currency_id: form.number(field::CURRENCY_ID)?,
            installment: form.number(field::INSTALLMENT)?,
            file,
            callback_address,
            half_2d,
            amount,
            merchant_unique_code,
        })
    }
}

impl Form {
    fn required(&self, name: &str) -> Result<&str, Refusal> {
        self.text
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| missing(name))
    }

    /// A field that may be absent; empty counts as absent.
    fn optional(&self, name: &str) -> Option<&str> {
        self.text
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<T, Refusal> {
        let v = self.required(name)?.trim();
        v.parse()
            .map_err(|_| garbled(name, v, "a whole number in range"))
    }
}

fn missing(name: &str) -> Refusal {
    Refusal::bad_request(format!("field {name} is required"))
}

fn garbled(name: &str, value: &str, expected: &str) -> Refusal {
    let shown: String = value.chars().take(40).collect();
    Refusal::bad_request(format!("field {name} must be {expected}, not '{shown}'"))
}

/// Everything after the headers: decode, parse, check, record.
async fn accept(
    shared: &Arc<Shared>,
    codec: Option<Codec>,
    boundary: String,
    body: Body,
) -> Result<BulkStart, Refusal> {
    let raw = StreamReader::new(body.into_data_stream().map_err(io::Error::other));
    let decoded = ReaderStream::with_capacity(Codec::decode(codec, raw), 64 * 1024).boxed();
    let form = read_form(shared.dir.path(), decoded, boundary).await?;
    let request = Request::from_form(form)?;

    if let Some(earlier) = shared.existing(&request.merchant_unique_code) {
        if earlier.sha256 == request.file.sha256 {
            info!(
                bulk_payment_id = earlier.bulk_payment_id,
                "sandbox: MerchantUniqueCode seen before; answering with the earlier batch"
            );
        } else {
            warn!(
                bulk_payment_id = earlier.bulk_payment_id,
                "sandbox: MerchantUniqueCode seen before with a different file; \
                 answering with the earlier batch and ignoring this file"
            );
        }
        return Ok(bulk_start(&earlier));
    }
    let config = &shared.config;
    if request.file_format != FILE_FORMAT_TXT {
        return Err(Refusal::business(
            code::FILE_FORMAT,
            format!("FileFormat {} is not supported yet", request.file_format),
        ));
    }
    let pattern = config
        .registry
        .get(request.file_pattern)
        .map_err(|e| Refusal::business(code::UNKNOWN_PATTERN, e.to_string()))?
        .clone();
    let currency = currency_for_id(request.currency_id).ok_or_else(|| {
        Refusal::business(
            code::UNKNOWN_CURRENCY,
            format!("CurrencyId {} is not known", request.currency_id),
        )
    })?;
    let opts = Options {
        currency,
        as_of: config.as_of.unwrap_or_else(crate::provider_today),
        max_errors: 1,
        // A part of a split file starts at its own line number.
        first_line_number: None,
        ..Options::default()
    };
    let path = request.file.path.to_path_buf();
    let checked = pattern.clone();
    let report = tokio::task::spawn_blocking(move || {
        validate_file(&path, &checked, &opts, Hooks::default())
    })
    .await
    .map_err(|e| Refusal::http(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| Refusal::business(code::INVALID_FILE, format!("the file cannot be used: {e}")))?;
    let amount = check_report(&report, config.max_rows, currency, request.amount)?;

    let batch = BatchRecord {
        bulk_payment_id: 0,
        merchant_unique_code: request.merchant_unique_code.clone(),
        file_pattern: request.file_pattern,
        currency_id: request.currency_id,
        installment: request.installment,
        half_2d: request.half_2d,
        amount,
        amount_given: request.amount.is_some(),
        rows: report.rows_read,
        bytes: request.file.bytes,
        sha256: request.file.sha256.clone(),
        content_encoding: codec.map(|c| c.name().to_string()),
        file_part_encoding: request.file.encoding.map(|c| c.name().to_string()),
        file_name: request.file.file_name.clone(),
        callback_address: request.callback_address.clone(),
    };
    let (batch, created) = shared.record(batch);
    if created {
        info!(
            bulk_payment_id = batch.bulk_payment_id,
            rows = batch.rows,
            amount = %batch.amount,
            currency = currency.code,
            "sandbox: batch created and enqueued"
        );
        if !batch.callback_address.is_empty() {
            let job = CallbackJob {
                batch: batch.clone(),
                pattern,
                upload: request.file.path,
                header_row: report.header_row,
            };
            tokio::spawn(deliver(shared.clone(), job));
        }
    }
    Ok(bulk_start(&batch))
}

/// The provider's checks of a validated file; the total on success.
fn check_report(
    report: &Report,
    max_rows: u64,
    currency: Currency,
    amount: Option<Decimal>,
) -> Result<Decimal, Refusal> {
    if report.rows_read > max_rows {
        return Err(Refusal::business(
            code::TOO_MANY_ROWS,
            format!(
                "the file has {} transactions; at most {max_rows} are accepted in one file",
                report.rows_read
            ),
        ));
    }
    if !report.is_valid() {
        let first = report
            .errors
            .first()
            .map_or_else(String::new, |e| format!("; first: {e}"));
        return Err(Refusal::business(
            code::INVALID_FILE,
            format!(
                "{} of {} rows are invalid{first}",
                report.rows_invalid, report.rows_read
            ),
        ));
    }
    if let Some(other) = report.totals.iter().find(|t| t.currency != currency.code) {
        return Err(Refusal::business(
            code::UNKNOWN_CURRENCY,
            format!(
                "rows are in {} but CurrencyId means {currency}",
                other.currency
            ),
        ));
    }
    let total = report.totals.amount(currency);
    match amount {
        Some(given) if given != total => Err(Refusal::business(
            code::AMOUNT_MISMATCH,
            format!("Amount {given} does not equal the total of the file, {total} {currency}"),
        )),
        _ => Ok(total),
    }
}

// ---------------------------------------------------------------------------
// The result callback.

struct CallbackJob {
    batch: BatchRecord,
    pattern: Pattern,
    upload: TempPath,
    header_row: bool,
}

async fn deliver(shared: Arc<Shared>, job: CallbackJob) {
    let config = &shared.config;
    if !sleep_or_cancel(&shared.cancel, config.callback_delay).await {
        return;
    }
    let id = job.batch.bulk_payment_id;
    let dir = shared.dir.path().to_path_buf();
    let (seed, rate) = (config.seed, config.decline_rate);
    let written = tokio::task::spawn_blocking(move || {
        write_results(&job, &dir, seed, rate).map(|r| (job, r))
    })
    .await;
    let (job, results) = match written {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            return warn!(bulk_payment_id = id, error = %e, "cannot write the result file")
        }
        Err(e) => return warn!(bulk_payment_id = id, error = %e, "result writer failed"),
    };
    // The upload is no longer needed once its results are written.
    drop(job.upload);
    let mut backoff = config.callback_backoff;
    for attempt in 1..=config.callback_attempts.max(1) {
        match post_results(&shared.http, &job.batch, &results, &config.webhook_hash_key).await {
            Ok(()) => {
                shared.callbacks_delivered.fetch_add(1, Ordering::SeqCst);
                info!(bulk_payment_id = id, "sandbox: result callback delivered");
                return;
            }
            Err(e) => warn!(
                bulk_payment_id = id,
                attempt,
                error = format!("{e:#}"),
                "sandbox: result callback failed"
            ),
        }
        if attempt < config.callback_attempts && !sleep_or_cancel(&shared.cancel, backoff).await {
            return;
        }
        backoff = backoff.saturating_mul(2);
    }
    warn!(
        bulk_payment_id = id,
        "sandbox: giving up on the result callback"
    );
}

/// Sleeps; false when the sandbox stopped meanwhile.
async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// One delivery attempt, streaming the result file from disk (a streaming
/// body cannot be cloned, so each attempt reopens it).
async fn post_results(
    http: &reqwest::Client,
    batch: &BatchRecord,
    results: &Path,
    hash_key: &str,
) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(results).await?;
    let len = file.metadata().await?.len();
    let lines = count_lines(results)?;
    let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, 64 * 1024));
    let name = format!("result-{}.csv", batch.bulk_payment_id);
    let part = reqwest::multipart::Part::stream_with_length(body, len)
        .file_name(name.clone())
        .mime_str("text/csv")?;
    // `{key}###{bulkPaymentId}###{merchantUniqueCode}`, SHA-256, lower-case hex.
    let hash = hex::encode(Sha256::digest(format!(
        "{hash_key}###{}###{}",
        batch.bulk_payment_id, batch.merchant_unique_code
    )));
    let now = chrono::Utc::now()
        .with_timezone(&crate::PROVIDER_TZ)
        .to_rfc3339();
    let data = serde_json::json!({
        "Type": 1,
        "BulkPaymentId": batch.bulk_payment_id,
        "FileRecordId": batch.bulk_payment_id,
        "FileName": name,
        "FileSize": len,
        "LineCount": lines,
        "FileFormat": "TXT",
        "IsCompressed": false,
        "ErrorMessage": "",
        "DateTime": now,
        "CreatedAt": now,
        "FinishedAt": now,
        "DurationTime": 0.0,
        "Hash": hash,
        "HashFormat": "BulkPayment",
        "HashKeyType": callback::HASH_KEY_TYPE,
        "PageNumber": 1,
        "TotalPages": 1,
        "HasMorePages": false,
        "MerchantUniqueCode": batch.merchant_unique_code,
    });
    let form = reqwest::multipart::Form::new()
        .text("data", data.to_string())
        .part("file", part);
    // The callback URL may carry the merchant's secret: errors drop it.
    http.post(&batch.callback_address)
        .multipart(form)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(reqwest::Error::without_url)?;
    Ok(())
}

fn count_lines(path: &Path) -> io::Result<u64> {
    let mut reader = io::BufReader::new(std::fs::File::open(path)?);
    let mut lines = 0;
    loop {
        let buf = io::BufRead::fill_buf(&mut reader)?;
        if buf.is_empty() {
            return Ok(lines);
        }
        lines += memchr::memchr_iter(b'\n', buf).count() as u64;
        let n = buf.len();
        io::BufRead::consume(&mut reader, n);
    }
}

/// Where the callback's values come from in a pattern's columns.
struct Layout {
    line_number: Option<usize>,
    merchant_unique_code: Option<usize>,
    tracking_code: Option<usize>,
    card_owner: Option<usize>,
    card_number: Option<usize>,
    expiry: Option<usize>,
    identity: Option<usize>,
    amount: Option<usize>,
    provider_key: Option<usize>,
}

impl Layout {
    fn of(p: &Pattern) -> Layout {
        let by_kind = |f: fn(&ColumnType) -> bool| p.columns.iter().position(|c| f(&c.kind));
        let by_name = |names: &[&str]| names.iter().find_map(|n| p.column_index(n));
        Layout {
            line_number: p.columns.iter().position(|c| c.line_number),
            merchant_unique_code: by_name(&["merchantUniqueCode"]),
            tracking_code: by_name(&["trackingCode"]),
            card_owner: by_name(&["cardOwnerName", "cardOwner"]),
            card_number: by_kind(|k| matches!(k, ColumnType::CardNumber)),
            expiry: by_kind(|k| matches!(k, ColumnType::CardExpiry)),
            identity: by_kind(|k| {
                matches!(
                    k,
                    ColumnType::TrIdentity
                        | ColumnType::TrTaxNumber
                        | ColumnType::TrIdentityOrTaxNumber
                )
            }),
            amount: p.amount_column(),
            provider_key: by_name(&["providerKey"]),
        }
    }
}

/// Writes the result file of a batch next to its upload, row by row.
fn write_results(job: &CallbackJob, dir: &Path, seed: u64, rate: f64) -> io::Result<TempPath> {
    let pattern = &job.pattern;
    let layout = Layout::of(pattern);
    let mut input = std::fs::File::open(&job.upload)?;
    // The validator accepts a UTF-8 byte-order mark; skip it the same way.
    let mut bom = [0u8; 3];
    let n = input.read(&mut bom)?;
    if !(n == 3 && bom == [0xef, 0xbb, 0xbf]) {
        input.seek(SeekFrom::Start(0))?;
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(pattern.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(io::BufReader::with_capacity(256 * 1024, input));
    let out = tempfile::Builder::new()
        .prefix("result-")
        .suffix(".csv")
        .tempfile_in(dir)?;
    let (file, path) = out.into_parts();
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(io::BufWriter::with_capacity(256 * 1024, file));

    let batch = &job.batch;
    let now = chrono::Utc::now()
        .with_timezone(&crate::PROVIDER_TZ)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let activity = if batch.half_2d {
        callback::ACTIVITY_PREAUTH
    } else {
        callback::ACTIVITY_SALE
    };
    let text = |rec: &csv::ByteRecord, col: Option<usize>| -> String {
        let cell = col
            .and_then(|c| rec.get(c))
            .unwrap_or_default()
            .trim_ascii();
        match pattern.encoding {
            Encoding::Utf8 => String::from_utf8_lossy(cell).into_owned(),
            Encoding::Windows1254 => encoding_rs::WINDOWS_1254
                .decode_without_bom_handling(cell)
                .0
                .into_owned(),
        }
    };
    let mut rec = csv::ByteRecord::new();
    let mut skip_header = job.header_row;
    let mut row = 0u64;
    while reader
        .read_byte_record(&mut rec)
        .map_err(io::Error::other)?
    {
        if std::mem::take(&mut skip_header) {
            continue;
        }
        row += 1;
        let line_number = match layout.line_number {
            Some(_) => text(&rec, layout.line_number),
            None => row.to_string(),
        };
        let muc = match layout.merchant_unique_code {
            Some(_) => text(&rec, layout.merchant_unique_code),
            None => batch.merchant_unique_code.clone(),
        };
        let expiry_or_identity = match layout.identity {
            Some(_) if layout.expiry.is_none() => mask::identity(&text(&rec, layout.identity)),
            _ => text(&rec, layout.expiry),
        };
        let mut amount = text(&rec, layout.amount);
        if pattern.decimal_separator == b',' {
            amount = amount.replace(',', ".");
        }
        let provider_key = Some(text(&rec, layout.provider_key))
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "sandbox".into());
        let decline = outcome(seed, rate, &muc, &line_number);
        let approved = if batch.half_2d {
            callback::STATUS_AUTHORISED
        } else {
            callback::STATUS_SUCCESS
        };
        let (paywall, status) = match decline {
            None => (callback::PAYWALL_OK, approved),
            Some(_) => (callback::PAYWALL_DECLINED, callback::STATUS_FAILED),
        };
        let (provider_code, provider_message) = decline.map_or(("", ""), |d| (d.code, d.message));
        let (bank_code, bank_message) =
            decline.map_or(callback::BANK_APPROVED, |d| (d.code, d.message));
        let record: [String; CALLBACK_COLUMNS.len()] = [
            pattern.id.to_string(),
            line_number,
            now.clone(),
            muc,
            text(&rec, layout.tracking_code),
            text(&rec, layout.card_owner),
            mask::card(&text(&rec, layout.card_number)),
            expiry_or_identity,
            amount,
            callback::GATEWAY.0.to_string(),
            callback::GATEWAY.1.to_string(),
            callback::PROVIDER_ID.to_string(),
            provider_key,
            paywall.to_string(),
            provider_code.to_string(),
            provider_message.to_string(),
            bank_code.to_string(),
            bank_message.to_string(),
            activity.to_string(),
            status.to_string(),
        ];
        writer.write_record(record)?;
    }
    writer.flush()?;
    Ok(path)
}
