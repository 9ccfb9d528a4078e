//! Payout exports (docs/providers/receiving.md §1): queue an export, wait for it,
//! then stream its file through the row reader without ever holding it.
//!
//! 1. `POST {base}/v1.0/payouts/payments?$filter=…&fileformat=csv|tsv`
//!    queues the export (expects 202). The `$filter` is built or checked by
//!    [`filter`] before anything is sent. `ms-requestid` is the POST's
//!    idempotency id, the same on its retries; `ms-correlationid` is new for
//!    every call and logged.
//! 2. `GET {base}/v1.0/payouts/payments/{requestId}` is polled with a
//!    growing interval through `Queued` / `Processing`, until `Completed`,
//!    `Failed` (queue a new request) or the configured timeout.
//! 3. `blobLocation` is downloaded by [`blob`] (resumed with `Range`,
//!    gunzipped when gzip). The Partner Center sample treats the file as a
//!    zip of CSV files (`Utils.cs` `DownloadBlob`, `ZipArchive`), so a zip
//!    (told by its magic bytes `PK\x03\x04`) is read entry after entry as
//!    it streams in; anything else is one CSV/TSV. Rows are read by [`rows`]
//!    with `csv-async`, their columns found by name ([`columns`]).
//!
//! Processing "can take up to 24 hours" (sample README, "Important
//! reminders"): paydrop waits `[export] poll_timeout_secs` (one hour by
//! default), then says how to come back with `--request-id`; the request
//! goes on at the provider meanwhile.
//!
//! 401, 403, 404 and 400 end with a message that says what to do; 429 and
//! 5xx are retried with backoff by the shared retry loop, honouring
//! `Retry-After`. The Bearer token
//! is a [`Secret`], sent as a sensitive header and never printed.

pub mod blob;
pub mod columns;
pub mod filter;
pub mod rows;
mod zip;

use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::config::{Secret, ENV_EXPORT_TOKEN};
use crate::transport::{
    self, describe, read_capped, retry_after, shown_url, Auth, Effect, Retry, RetryPolicy,
    SetupError, Step, Timeouts,
};
pub use blob::{BlobError, BlobInfo, GzipError};
pub use columns::{Mapping, Missing, Role};
pub use filter::{Field, Filter, FilterError};
pub use rows::{Format, Groups, RowReader, Sink, Summary, Tally};

/// Path of the payouts export API.
pub const PAYMENTS_PATH: &str = "/v1.0/payouts/payments";
/// A new id per call, for tracing at the provider.
pub const HEADER_CORRELATION_ID: &str = "ms-correlationid";
/// The idempotency id of a POST, reused on its retries.
pub const HEADER_REQUEST_ID: &str = "ms-requestid";

/// Where an export stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportStatus {
    /// Not started.
    Queued,
    Processing,
    /// Failed after the provider's retries: queue a new request.
    Failed,
    /// `blobLocation` holds the file.
    Completed,
}

/// One export request, as the API describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportRequest {
    pub request_id: String,
    #[serde(default)]
    pub request_date_time: String,
    #[serde(default)]
    pub request_path: String,
    #[serde(default)]
    pub request_query_string: String,
    #[serde(default)]
    pub blob_location: String,
    pub status: ExportStatus,
}

/// The API's answer: a list of requests (one for these calls).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportList {
    pub value: Vec<ExportRequest>,
    #[serde(default)]
    pub next_link: Option<String>,
    #[serde(default)]
    pub total_count: u64,
}

/// Why an export did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}; nothing was sent")]
    Filter(#[from] FilterError),
    #[error(
        "the export API refused the token (401) {during}: it is missing, expired or not valid for \
         this tenant. Get a new token and set {ENV_EXPORT_TOKEN} or [export] token{resume}"
    )]
    Unauthorized { during: String, resume: String },
    #[error(
        "the export token holds characters not allowed in an HTTP header (a stray line break?): \
         check {ENV_EXPORT_TOKEN} or [export] token"
    )]
    BadToken,
    #[error(
        "the export API forbids this (403) {during}: the token is valid but its account may not \
         read payouts; ask an administrator for access to payouts"
    )]
    Forbidden { during: String },
    #[error(
        "not found (404) {during}: check the export API address ([export] base_url, \
         PAYDROP_EXPORT_BASE_URL or --base){and_id}"
    )]
    NotFound { during: String, and_id: String },
    #[error("the export API refused the request as malformed (400) {during}: {message}")]
    BadRequest { during: String, message: String },
    #[error("the export API answered {status} {during}: {message}")]
    Api {
        status: u16,
        during: String,
        message: String,
    },
    #[error("no usable answer {during} after {attempts} attempts; the last: {last}")]
    GaveUp {
        during: String,
        attempts: u32,
        last: String,
    },
    #[error("unreadable answer {during}: {message}")]
    Unreadable { during: String, message: String },
    #[error(
        "export request {request_id} failed at the provider (status Failed, after its own \
         retries): queue a new request by running the command again without --request-id"
    )]
    Failed { request_id: String },
    #[error(
        "export request {request_id} is still {status:?} after {waited}s; the provider documents \
         up to 24 hours of processing and the request goes on there: check again later with \
         --request-id {request_id}, or wait longer (--poll-timeout, [export] poll_timeout_secs)"
    )]
    Timeout {
        request_id: String,
        status: ExportStatus,
        waited: u64,
    },
    #[error("export request {request_id} is Completed but has no blobLocation to download")]
    NoBlob { request_id: String },
    #[error("blobLocation is not a URL: {0}")]
    BadBlobUrl(String),
    #[error(transparent)]
    Download(#[from] BlobError),
    #[error("{0}; download the export again")]
    Gzip(#[from] GzipError),
    #[error("the export is empty: not even a header row")]
    Empty,
    #[error(
        "the export's header lacks a required column: {missing}{hint}; the header has: {found}",
        missing = .missing.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        found = .found.join(", ")
    )]
    Header {
        missing: Vec<Missing>,
        found: Vec<String>,
        hint: String,
    },
    #[error("the export is not a readable zip: {0}; download it again")]
    Zip(String),
    #[error("{at}: {message}")]
    Overflow { at: String, message: String },
    #[error(
        "the export ends in the middle of row {row} (after {bytes} bytes, without a final line \
         break): the file is truncated; download it again"
    )]
    Truncated { row: u64, line: u64, bytes: u64 },
    #[error("line {line} (row {row}) has {found} fields where the header has {expected}")]
    Fields {
        line: u64,
        row: u64,
        found: usize,
        expected: usize,
    },
    #[error("line {line}, column {column}: '{value}' {reason}")]
    Row {
        line: u64,
        column: String,
        value: String,
        reason: String,
    },
    #[error("line {line}: the export is not readable as CSV: {message}")]
    Csv { line: u64, message: String },
    #[error("reading the export: {0}")]
    Read(std::io::Error),
    #[error("writing the rows: {0}")]
    Output(std::io::Error),
}

impl ExportError {
    /// A read error from the download stack: a download or gzip failure
    /// when it is one.
    fn from_read(e: std::io::Error) -> ExportError {
        if e.get_ref()
            .is_some_and(|i| i.is::<BlobError>() || i.is::<GzipError>())
        {
            let inner = e.into_inner().expect("checked above");
            return match inner.downcast::<BlobError>() {
                Ok(b) => ExportError::Download(*b),
                Err(other) => match other.downcast::<GzipError>() {
                    Ok(g) => ExportError::Gzip(*g),
                    Err(other) => ExportError::Read(std::io::Error::other(other)),
                },
            };
        }
        ExportError::Read(e)
    }
}

/// How to wait for an export.
#[derive(Clone, Copy, Debug)]
pub struct PollPolicy {
    /// First wait between polls; doubled after each, up to `max`.
    pub first: Duration,
    pub max: Duration,
    /// Give up waiting after this long.
    pub timeout: Duration,
}

/// What a call is, for messages.
enum Call<'a> {
    Queue { query: &'a str },
    Poll { request_id: &'a str },
}

impl Call<'_> {
    fn during(&self) -> String {
        match self {
            Call::Queue { .. } => "while queueing the export".into(),
            Call::Poll { request_id } => format!("while checking export request {request_id}"),
        }
    }
}

/// A client of the payouts export API.
#[derive(Clone)]
pub struct ExportClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    retry: RetryPolicy,
    columns: Mapping,
}

impl ExportClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`). `timeout` bounds
    /// each API call; a blob download has no total time limit, only
    /// `connect_timeout` and a read timeout of the same length as `timeout`.
    pub fn new(
        base: &str,
        token: Secret,
        retry: RetryPolicy,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<ExportClient, SetupError> {
        Ok(ExportClient {
            auth: Auth::Bearer(token),
            http: transport::client(Timeouts::streamed(timeout, connect_timeout))?,
            base: transport::base_url("the export API address", base)?,
            retry,
            columns: Mapping::default(),
        })
    }

    /// Reads the export's columns with this mapping (`[export.columns]`).
    pub fn with_columns(mut self, columns: Mapping) -> Self {
        self.columns = columns;
        self
    }

    /// Queues an export; `filter` is sent as `$filter`.
    pub async fn queue(
        &self,
        filter: Option<&Filter>,
        format: Format,
    ) -> Result<ExportRequest, ExportError> {
        let mut query = String::new();
        if let Some(f) = filter {
            query.push_str("$filter=");
            query.push_str(&percent_encode(&f.to_string()));
            query.push('&');
        }
        query.push_str("fileformat=");
        query.push_str(format.name());
        let url = format!("{}{PAYMENTS_PATH}?{query}", self.base);
        let idempotency = uuid::Uuid::new_v4().to_string();
        self.call(
            Method::POST,
            &url,
            Some(&idempotency),
            Call::Queue { query: &query },
        )
        .await
    }

    /// The current state of an export request.
    pub async fn status(&self, request_id: &str) -> Result<ExportRequest, ExportError> {
        let url = format!(
            "{}{PAYMENTS_PATH}/{}",
            self.base,
            percent_encode(request_id)
        );
        self.call(Method::GET, &url, None, Call::Poll { request_id })
            .await
    }

    /// Polls until the request is `Completed`; `on_status` sees every answer.
    pub async fn wait(
        &self,
        mut request: ExportRequest,
        poll: PollPolicy,
        mut on_status: impl FnMut(&ExportRequest),
    ) -> Result<ExportRequest, ExportError> {
        let started = Instant::now();
        let mut interval = poll.first;
        loop {
            on_status(&request);
            match request.status {
                ExportStatus::Completed => return Ok(request),
                ExportStatus::Failed => {
                    return Err(ExportError::Failed {
                        request_id: request.request_id,
                    })
                }
                ExportStatus::Queued | ExportStatus::Processing => {}
            }
            let waited = started.elapsed();
            if waited >= poll.timeout {
                return Err(ExportError::Timeout {
                    request_id: request.request_id,
                    status: request.status,
                    waited: waited.as_secs(),
                });
            }
            tokio::time::sleep(interval.min(poll.timeout - waited)).await;
            interval = interval.saturating_mul(2).min(poll.max);
            request = self.status(&request.request_id).await?;
        }
    }

    /// Streams the file of a completed request into `sink`, checking and
    /// totalling every row.
    pub async fn download(
        &self,
        request: &ExportRequest,
        format: Format,
        sink: &mut Sink,
    ) -> Result<(BlobInfo, Summary), ExportError> {
        if request.blob_location.trim().is_empty() {
            return Err(ExportError::NoBlob {
                request_id: request.request_id.clone(),
            });
        }
        let url = Url::parse(request.blob_location.trim()).map_err(|e| {
            // The URL's token must not reach the message: only the error.
            ExportError::BadBlobUrl(e.to_string())
        })?;
        let (reader, info) = blob::open(&self.http, url, self.retry).await?;
        tracing::info!(url = %info.url, gzip = info.gzip, bytes = ?info.length, resumable = info.resumable, "downloading the export");
        let mut rows = RowReader::new(format, self.columns.clone());
        let mut input = tokio::io::BufReader::with_capacity(64 * 1024, reader);
        let head = input.fill_buf().await.map_err(ExportError::from_read)?;
        if head.starts_with(b"PK\x03\x04") {
            zip::read_entries(input, &mut rows, sink).await?;
        } else {
            rows.read(input, None, sink).await?;
        }
        Ok((info, rows.finish(sink).await?))
    }

    /// One API call with retries; the answer's first request.
    async fn call(
        &self,
        method: Method,
        url: &str,
        idempotency: Option<&str>,
        what: Call<'_>,
    ) -> Result<ExportRequest, ExportError> {
        let bearer = self.auth.headers(url).map_err(|_| ExportError::BadToken)?;
        // Every message names the call, its method and its address (without
        // query or credentials: `shown_url`).
        let during = format!("{} ({method} {})", what.during(), shown_url(url));
        // A GET reads; the POST carries its idempotency id (`ms-requestid`):
        // both may be sent again.
        let mut calls = Retry::new(self.retry, Effect::Idempotent, &during);
        while let Some(n) = calls.next().await {
            let correlation = uuid::Uuid::new_v4().to_string();
            tracing::info!(
                method = %method,
                path = %url_path(url),
                correlation_id = %correlation,
                ms_requestid = idempotency,
                attempt = n,
                "export API call"
            );
            let mut request = self
                .http
                .request(method.clone(), url)
                .headers(bearer.clone())
                .header(HEADER_CORRELATION_ID, &correlation);
            if let Some(id) = idempotency {
                request = request.header(HEADER_REQUEST_ID, id);
            }
            let (status, text, wait) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let wait = retry_after(response.headers());
                    match read_capped(response).await {
                        Ok(text) => (status, text, wait),
                        Err(e) => (status, describe(&e.without_url()), None),
                    }
                }
                Err(e) => (StatusCode::BAD_GATEWAY, describe(&e.without_url()), None),
            };
            if status.is_success() {
                return first_request(&text, &what);
            }
            let message = error_message(&text);
            if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                return Err(refusal(status, message, &what, during));
            }
            calls.judge(Step::<()>::Ambiguous {
                why: format!("{status}: {message}"),
                retry_after: wait,
            });
        }
        let e = calls.ended();
        Err(ExportError::GaveUp {
            during,
            attempts: e.attempts,
            last: e.last,
        })
    }
}

fn refusal(status: StatusCode, message: String, what: &Call<'_>, during: String) -> ExportError {
    let resume = match what {
        Call::Poll { request_id } => {
            format!("; the export goes on at the provider: resume with --request-id {request_id}")
        }
        Call::Queue { .. } => String::new(),
    };
    match status.as_u16() {
        401 => ExportError::Unauthorized { during, resume },
        403 => ExportError::Forbidden { during },
        404 => ExportError::NotFound {
            during,
            and_id: match what {
                Call::Poll { .. } => " and the request id: export requests expire".into(),
                Call::Queue { .. } => String::new(),
            },
        },
        400 => ExportError::BadRequest {
            during,
            message: match what {
                Call::Queue { query } => format!("{message} (query: {query})"),
                Call::Poll { .. } => message,
            },
        },
        code => ExportError::Api {
            status: code,
            during,
            message,
        },
    }
}

fn first_request(text: &str, what: &Call<'_>) -> Result<ExportRequest, ExportError> {
    let unreadable = |message: String| ExportError::Unreadable {
        during: what.during(),
        message,
    };
    let list: ExportList = serde_json::from_str(text).map_err(|e| unreadable(e.to_string()))?;
    list.value
        .into_iter()
        .next()
        .ok_or_else(|| unreadable("the answer lists no export request".into()))
}

/// The `message` (or `error.message`) of an error body, else its start.
fn error_message(text: &str) -> String {
    let json: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let field = json.as_ref().and_then(|j| {
        j.get("message")
            .or_else(|| j.get("error").and_then(|e| e.get("message")))
            .or_else(|| j.get("Message"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    });
    field.unwrap_or_else(|| {
        text.chars()
            .take(300)
            .collect::<String>()
            .trim()
            .to_string()
    })
}

fn url_path(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    let end = url[path..].find('?').map_or(url.len(), |i| path + i);
    &url[path..end]
}

/// Percent-encodes all but the unreserved characters of RFC 3986 (so a
/// space is `%20`, never `+`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_filters_for_the_query() {
        assert_eq!(percent_encode("a eq 'O''B'"), "a%20eq%20%27O%27%27B%27");
        assert_eq!(
            url_path("http://h:1/v1.0/payouts/payments?$filter=x"),
            "/v1.0/payouts/payments"
        );
    }

    #[test]
    fn reads_the_published_answer() {
        let sample = r#"{"value":[{"requestId":"93c2b3cf-c6d8-4e7e-ade1-007768a6eba4",
            "requestDateTime":"2023-05-25T21:20:46.3727561Z","requestPath":"/v1.0/payouts/payments",
            "requestQueryString":"paymentDate ge 2023-03-01 and paymentDate le 2023-04-12",
            "blobLocation":"","status":"Queued"}],"nextLink":null,"totalCount":1}"#;
        let r = first_request(sample, &Call::Poll { request_id: "x" }).unwrap();
        assert_eq!(r.status, ExportStatus::Queued);
        assert_eq!(r.request_id, "93c2b3cf-c6d8-4e7e-ade1-007768a6eba4");
    }
}
