//! The daemon's result-callback server: receives the provider's result file
//! as published (`multipart/form-data` with a `file` part, gzip when
//! `IsCompressed`, and a `data` field of JSON; docs/providers/paywall.md §3,
//! <https://developer.paywall.one/payment-orchestration-integration-document/example-codes/bulk-payment-callback-method>),
//! trusts it only with the path secret *and* a correct `Hash`, reads it with
//! every part bounded, checks every line against the rows sent before
//! anything is recorded, records pages idempotently, and writes a batch's
//! results once every part's results are complete. It serves nothing else:
//! `/metrics` and `/health` have a listener of their own
//! (`[watch] metrics_bind`), and every other path is 404.
//!
//! | answer | when |
//! |---|---|
//! | 200 | the page is recorded (or was: nothing new) |
//! | 400 | not multipart, `data` or `file` missing or twice, `data` unreadable, a broken gzip |
//! | 401 | wrong or missing path secret; missing or wrong `Hash`, unknown `HashKeyType`, `HashFormat` not `BulkPayment` |
//! | 404 | no submission of that `MerchantUniqueCode` (or BulkPaymentId) |
//! | 408 | the request was not received whole within `callback_timeout_secs` |
//! | 409 | BulkPaymentId of another part; a row reported otherwise before; pages that disagree |
//! | 413 | a text field, `data`, the form's overhead or the file over its cap |
//! | 422 | a line that is not a row sent (line number, payment code, amount), a row twice |
//! | 503 | the part is not (yet) recorded as accepted after `callback_wait_ms` (with `Retry-After`) |

mod data;
mod form;
mod outputs;
pub mod progress;

use std::io::{self, BufRead, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio::sync::Mutex;

pub use data::{bulk_payment_hash, CallbackData, DataError, HashError, HashKeys, HASH_FORMAT};

use crate::config::Config;
use crate::ledger::{Ledger, LedgerError, PageRecorded, State as SubmissionState, Submission};
use crate::pattern::Registry;
use crate::{mask, results};
use data::constant_time_eq;
use form::{FormReader, Limits, Part, Spool};

/// The callback's counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub recorded: AtomicU64,
    pub refused: AtomicU64,
    pub unauthorized: AtomicU64,
    pub mismatched: AtomicU64,
    pub too_large: AtomicU64,
    pub early: AtomicU64,
    pub rows_paid: AtomicU64,
    pub rows_authorised: AtomicU64,
    pub rows_declined: AtomicU64,
    pub rows_unsettled: AtomicU64,
}

impl Metrics {
    fn render(&self, out: &mut String) {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            ("paydrop_callbacks_recorded_total", "Result pages recorded", &self.recorded),
            ("paydrop_callbacks_refused_total", "Result callbacks refused, for any reason", &self.refused),
            ("paydrop_callbacks_unauthorized_total", "Result callbacks refused for a wrong secret or Hash", &self.unauthorized),
            ("paydrop_callbacks_mismatched_total", "Result files refused: lines not matching the rows sent, or contradicting earlier results", &self.mismatched),
            ("paydrop_callbacks_too_large_total", "Result callbacks refused for a field or file over its cap", &self.too_large),
            ("paydrop_callbacks_early_total", "Result callbacks that came before the ledger knew their BulkPaymentId", &self.early),
            ("paydrop_rows_paid_total", "Payments reported paid (each row once, when its batch's results are complete)", &self.rows_paid),
            ("paydrop_rows_authorised_total", "Pre-authorisations reported waiting for capture (each row once)", &self.rows_authorised),
            ("paydrop_rows_declined_total", "Payments reported declined (each row once)", &self.rows_declined),
            ("paydrop_rows_unsettled_total", "Payments reported neither paid nor declined (each row once)", &self.rows_unsettled),
        ] {
            crate::watch::prometheus(out, "counter", name, help, c(v));
        }
    }
}

/// The callback server's state.
pub struct Receiver {
    config: Config,
    registry: Registry,
    keys: HashKeys,
    metrics: Metrics,
    /// Serialises the writing of results.json / retry files.
    outputs: Mutex<()>,
}

impl Receiver {
    /// Fails when the config lacks what a callback is checked with.
    pub fn new(
        config: Config,
        registry: Registry,
    ) -> Result<Arc<Receiver>, crate::config::ConfigError> {
        let keys = HashKeys::from_config(&config.watch)
            .map_err(crate::config::ConfigError::CallbackKeys)?;
        Ok(Arc::new(Receiver {
            config,
            registry,
            keys,
            metrics: Metrics::default(),
            outputs: Mutex::new(()),
        }))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs `f` on the ledger, on a blocking thread.
    async fn ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, Refusal> {
        let path = self.config.ledger.path.clone();
        tokio::task::spawn_blocking(move || f(&mut Ledger::open(&path)?))
            .await
            .map_err(|e| Refusal::internal(e.to_string()))?
            .map_err(|e| Refusal::internal(e.to_string()))
    }

    /// Where result files are spooled: beside the ledger.
    fn spool_dir(&self) -> PathBuf {
        self.config
            .ledger
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
    }

    fn wait(&self) -> Duration {
        Duration::from_millis(self.config.watch.callback_wait_ms)
    }

    async fn receive(&self, request: Request) -> Response {
        match self.try_receive(request).await {
            Ok(answer) => (StatusCode::OK, answer).into_response(),
            Err(refusal) => {
                self.count(&refusal);
                tracing::warn!(status = refusal.status.as_u16(), reason = %refusal.reason, "result callback refused");
                refusal.into_response()
            }
        }
    }

    fn count(&self, r: &Refusal) {
        let m = &self.metrics;
        m.refused.fetch_add(1, Ordering::Relaxed);
        let kind = match r.status {
            StatusCode::UNAUTHORIZED => &m.unauthorized,
            StatusCode::PAYLOAD_TOO_LARGE => &m.too_large,
            StatusCode::UNPROCESSABLE_ENTITY => &m.mismatched,
            StatusCode::CONFLICT if r.results => &m.mismatched,
            _ => return,
        };
        kind.fetch_add(1, Ordering::Relaxed);
    }

    async fn try_receive(&self, request: Request) -> Result<String, Refusal> {
        let (parts, body) = request.into_parts();
        let boundary = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| multer::parse_boundary(ct).ok())
            .ok_or_else(|| {
                Refusal::bad_request(
                    "not multipart/form-data: a result callback has a file part and a data field",
                )
            })?;
        let timeout = Duration::from_secs(self.config.watch.callback_timeout_secs);
        let delivery = tokio::time::timeout(timeout, self.read(body, boundary))
            .await
            .map_err(|_| {
                Refusal::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the callback was not received whole within {} s ([watch] \
                         callback_timeout_secs)",
                        timeout.as_secs()
                    ),
                )
            })??;
        let submission = self
            .accepted(delivery.submission.clone(), &delivery.data)
            .await?;
        self.record(submission, delivery).await
    }

    /// Reads the form: `data` first checked (Hash, then which part), the
    /// file spooled within the cap of that part.
    async fn read(&self, body: axum::body::Body, boundary: String) -> Result<Delivery, Refusal> {
        let w = &self.config.watch;
        let limits = Limits {
            field: w.callback_max_field_bytes,
            data: w.callback_max_data_bytes,
            file_before_data: self
                .config
                .submit
                .split_rows
                .max(1)
                .saturating_mul(w.callback_max_line_bytes),
        };
        let mut form = FormReader::new(body, boundary, limits, &self.spool_dir());
        let mut found: Option<(CallbackData, Submission, u64)> = None;
        let mut spool: Option<Spool> = None;
        while let Some(part) = form.next().await? {
            match part {
                Part::Data(bytes) => {
                    if found.is_some() {
                        return Err(Refusal::bad_request("two data fields"));
                    }
                    let data = CallbackData::parse(&bytes)
                        .map_err(|e| Refusal::bad_request(e.to_string()))?;
                    self.keys
                        .verify(&data)
                        .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
                    let submission = self.find(&data).await?;
                    let rows = submission.rows;
                    let cap = (rows + 1).saturating_mul(w.callback_max_line_bytes);
                    let why = format!(
                        "at most {} bytes for each of the {rows} rows sent in {}: [watch] \
                         callback_max_line_bytes",
                        w.callback_max_line_bytes, submission.merchant_unique_code
                    );
                    if let Some(s) = spool.as_ref().filter(|s| s.len > cap) {
                        return Err(Refusal::too_large(format!(
                            "the result file has {} bytes, more than {cap} ({why})",
                            s.len
                        )));
                    }
                    form.set_file_cap(cap, why);
                    found = Some((data, submission, cap));
                }
                Part::File(s) => {
                    if spool.replace(s).is_some() {
                        return Err(Refusal::bad_request("two file parts"));
                    }
                }
            }
        }
        let (data, submission, cap) = found.ok_or_else(|| {
            Refusal::bad_request("no data field: the callback's JSON (BulkPaymentId, Hash, …)")
        })?;
        let spool = spool.ok_or_else(|| Refusal::bad_request("no file part: the result file"))?;
        Ok(Delivery {
            data,
            submission,
            spool,
            cap,
        })
    }

    /// The submission the callback names. One named only by BulkPaymentId
    /// may not be recorded yet: it is waited for, briefly.
    async fn find(&self, data: &CallbackData) -> Result<Submission, Refusal> {
        let deadline = Instant::now() + self.wait();
        loop {
            let (code, id) = (data.merchant_unique_code.clone(), data.bulk_payment_id);
            let found = self
                .ledger(move |l| match &code {
                    Some(c) => l.submission_by_code(c.trim()),
                    None => l.submission_by_bulk_id(id),
                })
                .await?;
            match found {
                Some(s) => {
                    conflicting_id(&s, data)?;
                    return Ok(s);
                }
                None if data.merchant_unique_code.is_none() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                None => {
                    return Err(Refusal::new(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no submission {} / BulkPaymentId {} is known here",
                            data.merchant_unique_code.as_deref().unwrap_or("(no code)"),
                            data.bulk_payment_id
                        ),
                    ))
                }
            }
        }
    }

    /// The submission once the ledger holds it as accepted under the
    /// callback's BulkPaymentId. The provider may post before the daemon has
    /// recorded its answer to the upload: that is waited for, briefly, and
    /// then answered 503 so that the provider sends it again.
    async fn accepted(
        &self,
        mut sub: Submission,
        data: &CallbackData,
    ) -> Result<Submission, Refusal> {
        let deadline = Instant::now() + self.wait();
        let mut early = false;
        loop {
            conflicting_id(&sub, data)?;
            if sub.state == SubmissionState::Accepted && sub.bulk_payment_id.is_some() {
                return Ok(sub);
            }
            if !std::mem::replace(&mut early, true) {
                self.metrics.early.fetch_add(1, Ordering::Relaxed);
            }
            if Instant::now() >= deadline {
                let what = match sub.state {
                    SubmissionState::Pending => "not yet recorded as accepted (its upload is still being answered)".to_string(),
                    other => format!(
                        "recorded as {other}, yet the provider reports its results: it reached the \
                         provider as BulkPaymentId {}; settle that part, then have the results sent again",
                        data.bulk_payment_id
                    ),
                };
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{} is {what}", sub.merchant_unique_code),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let id = sub.id;
            sub = self
                .ledger(move |l| l.submission_by_id(id))
                .await?
                .ok_or_else(|| Refusal::internal(format!("submission {id} vanished")))?;
        }
    }

    /// Checks every line against the rows sent and records the page; writes
    /// the batch's results when they became complete.
    async fn record(&self, sub: Submission, delivery: Delivery) -> Result<String, Refusal> {
        let Delivery {
            data, spool, cap, ..
        } = delivery;
        let page = data.page.clone();
        let gzip = data.is_compressed;
        let max_line = self.config.watch.callback_max_line_bytes;
        let s = sub.clone();
        let recorded = self
            .ledger(move |l| {
                let reader = match open_results(&spool, gzip, cap, max_line) {
                    Ok(r) => r,
                    Err(e) => {
                        return Ok(PageRecorded::Unreadable {
                            kind: e.kind(),
                            reason: e.to_string(),
                        })
                    }
                };
                l.record_result_page(&s, &page, results::parse(reader))
            })
            .await?;
        let (lines, new_lines, progress) = match recorded {
            PageRecorded::Stored {
                lines,
                new_lines,
                progress,
                ..
            } => (lines, new_lines, progress),
            PageRecorded::Mismatch(why) => {
                return Err(Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, why))
            }
            PageRecorded::Conflict(why) => {
                let mut r = Refusal::new(StatusCode::CONFLICT, why);
                r.results = true;
                return Err(r);
            }
            PageRecorded::Unreadable { kind, reason } => {
                return Err(match kind {
                    io::ErrorKind::FileTooLarge => Refusal::too_large(reason),
                    _ => Refusal::bad_request(format!("the result file cannot be read: {reason}")),
                })
            }
        };
        self.metrics.recorded.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            batch = sub.batch_id,
            part = sub.part,
            page = data.page.number,
            pages = data.page.total.map_or_else(|| "?".to_string(), |t| t.to_string()),
            lines,
            new_lines,
            kind = data.kind.unwrap_or_default(),
            file = data.file_name.as_deref().unwrap_or(""),
            progress = %progress,
            "result page recorded"
        );
        if progress.complete {
            self.write_outputs(sub.batch_id).await;
        }
        Ok(match (lines, new_lines) {
            (0, _) => format!(
                "recorded page {}: no result lines; {progress}",
                data.page.number
            ),
            (_, 0) => format!("already recorded; {progress}"),
            (_, n) => format!("recorded {n} results; {progress}"),
        })
    }
}

/// A BulkPaymentId other than the part's own is a conflict, whatever else.
fn conflicting_id(sub: &Submission, data: &CallbackData) -> Result<(), Refusal> {
    match sub.bulk_payment_id {
        Some(own) if own != data.bulk_payment_id => Err(Refusal::new(
            StatusCode::CONFLICT,
            format!(
                "BulkPaymentId {} does not belong to {} (it has {own})",
                data.bulk_payment_id, sub.merchant_unique_code
            ),
        )),
        _ => Ok(()),
    }
}

/// A callback read whole and trusted, not yet recorded.
struct Delivery {
    data: CallbackData,
    submission: Submission,
    spool: Spool,
    /// Most bytes of the result file, decompressed too.
    cap: u64,
}

/// The spooled result file as text: gunzipped when `IsCompressed` says so
/// (or its first bytes are gzip's magic), never more than `cap` bytes, no
/// line longer than `max_line`.
fn open_results(
    spool: &Spool,
    gzip: bool,
    cap: u64,
    max_line: u64,
) -> io::Result<Box<dyn Read + Send>> {
    let mut file = io::BufReader::with_capacity(64 * 1024, spool.file.reopen()?);
    let magic = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip || magic {
        let unpacked = flate2::bufread::MultiGzDecoder::new(file);
        Box::new(Capped::new(unpacked, cap, max_line))
    } else {
        Box::new(Capped::new(file, cap, max_line))
    })
}

/// A reader that fails (`FileTooLarge`) past `cap` bytes, or at a line
/// longer than `max_line`: a small gzip may unpack to gigabytes, and the
/// line parser holds a whole line.
struct Capped<R> {
    inner: R,
    left: u64,
    cap: u64,
    line: u64,
    max_line: u64,
}

impl<R> Capped<R> {
    fn new(inner: R, cap: u64, max_line: u64) -> Self {
        Capped {
            inner,
            left: cap,
            cap,
            line: 0,
            max_line,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the cap tells a file of exactly `cap` bytes from a
        // larger one.
        let want = buf.len().min(self.left.saturating_add(1) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        let too_large = |what: String| Err(io::Error::new(io::ErrorKind::FileTooLarge, what));
        if n as u64 > self.left {
            return too_large(format!(
                "the result file is larger than {} bytes once decompressed",
                self.cap
            ));
        }
        self.left -= n as u64;
        // The line in progress, continued across reads.
        let (mut line, mut start) = (self.line, 0);
        for end in memchr::memchr_iter(b'\n', &buf[..n]).chain([n]) {
            line += (end - start) as u64;
            if line > self.max_line {
                return too_large(format!(
                    "the result file has a line longer than {} bytes: [watch] \
                     callback_max_line_bytes",
                    self.max_line
                ));
            }
            if end < n {
                (line, start) = (0, end + 1);
            }
        }
        self.line = line;
        Ok(n)
    }
}

/// Why a callback is refused: its status and a reason that can be logged
/// and answered (card-shaped numbers masked, no secret in it).
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    reason: String,
    /// A refusal about the result lines themselves (counted as mismatched).
    results: bool,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl AsRef<str>) -> Refusal {
        Refusal {
            status,
            reason: mask::card_numbers(reason.as_ref()),
            results: false,
        }
    }

    fn bad_request(reason: impl AsRef<str>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, reason)
    }

    fn too_large(reason: impl AsRef<str>) -> Refusal {
        Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, reason)
    }

    fn internal(reason: impl AsRef<str>) -> Refusal {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, reason)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, self.reason).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
        }
        // The rest of a refused request is not read: the connection ends here.
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        response
    }
}

/// Serves the callback until aborted; meanwhile
/// finishes results left unwritten by an earlier run.
pub async fn serve(listener: tokio::net::TcpListener, receiver: Arc<Receiver>) {
    let app = Router::new()
        .route("/callback", post(callback_open))
        .route("/callback/{secret}", post(callback_with_secret))
        .with_state(receiver.clone());
    let (_, served) = tokio::join!(receiver.catch_up(), axum::serve(listener, app));
    if let Err(e) = served {
        tracing::error!(error = %e, "callback server stopped");
    }
}

async fn callback_open(State(rx): State<Arc<Receiver>>, request: Request) -> Response {
    if rx.config.watch.callback_secret.is_some() {
        let refusal = Refusal::new(StatusCode::UNAUTHORIZED, "a secret is required");
        rx.count(&refusal);
        tracing::warn!("result callback without the secret refused");
        return refusal.into_response();
    }
    rx.receive(request).await
}

async fn callback_with_secret(
    State(rx): State<Arc<Receiver>>,
    UrlPath(secret): UrlPath<String>,
    request: Request,
) -> Response {
    let expected = rx.config.watch.callback_secret.as_ref();
    if !expected.is_some_and(|e| constant_time_eq(e.expose().as_bytes(), secret.as_bytes())) {
        let refusal = Refusal::new(StatusCode::UNAUTHORIZED, "wrong secret");
        rx.count(&refusal);
        tracing::warn!("result callback with a wrong secret refused");
        return refusal.into_response();
    }
    rx.receive(request).await
}

impl Receiver {
    /// The callbacks' counters and, from the ledger, the parts awaiting
    /// results or of unknown outcome, for `/metrics`.
    pub async fn render_metrics(&self, out: &mut String) {
        self.metrics.render(out);
        let overdue = Duration::from_secs(self.config.watch.results_overdue_secs);
        match self
            .ledger(move |l| progress::counts(l, overdue, chrono::Utc::now()))
            .await
        {
            Ok(counts) => counts.render(out),
            Err(e) => {
                tracing::error!(reason = %e.reason, "cannot count the parts awaiting results")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], cap: u64, max_line: u64, chunk: usize) -> io::Result<Vec<u8>> {
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        Capped::new(Chunks(data, chunk), cap, max_line).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn caps_the_size_and_every_line_across_reads() {
        let text = b"abc\ndefgh\nij\n";
        for chunk in [1, 2, 3, 64] {
            assert_eq!(read_all(text, 13, 5, chunk).unwrap(), text);
            let e = read_all(text, 12, 5, chunk).unwrap_err();
            assert!(e.to_string().contains("larger than 12 bytes"), "{e}");
            let e = read_all(text, 13, 4, chunk).unwrap_err();
            assert!(e.to_string().contains("line longer than 4"), "{e}");
            assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
            // A last line without its newline counts too.
            let e = read_all(b"ab\nabcdef", 100, 5, chunk).unwrap_err();
            assert!(e.to_string().contains("line longer"), "{e}");
        }
    }
}
