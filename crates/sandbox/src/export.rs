//! The Partner-Center-style asynchronous payouts export.
//!
//! Pages: "Create payments export request"
//! (<https://learn.microsoft.com/en-us/partner-center/developer/create-payments-export-request>),
//! "Get payments export request by Id"
//! (<https://learn.microsoft.com/en-us/partner-center/developer/get-payment-export-request-by-id>),
//! the sample repository microsoft/Partner-Center-Payout-APIs.
//!
//! | call | answer |
//! |------|--------|
//! | `POST /v1.0/payouts/payments?$filter=…&fileformat=csv\|tsv` | 202 with `{"value":[{requestId, requestDateTime, requestPath, requestQueryString, blobLocation:"", status:"Queued", processingStartDateTime}],"nextLink":null,"totalCount":1}`; 400 for a `$filter` ([`filter`]) or `fileformat` the pages do not show; 401 without `Authorization: Bearer {token}` |
//! | `GET /v1.0/payouts/payments/{requestId}` | 200, the same object: poll 1 `Queued`, then `Processing`, `Completed` from poll [`Config::polls`] on (with `blobLocation`); 404 for an unknown id |
//! | `GET /blobs/{requestId}/{file}?sig=…` | the file; `Accept-Ranges: bytes` and 206 for `Range: bytes=N-` unless [`Config::ranges`] is off; 403 for a wrong `sig` |
//!
//! The filter is applied: the file holds only the payments it selects. The
//! error body shape is not published; the sandbox answers
//! `{"error":{"code","message"}}`. The file is a zip of CSV files when
//! [`Encoding::Zip`] (as the sample treats the blob), else a bare CSV/TSV,
//! optionally gzip.

mod file;
pub mod filter;
mod zip;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use async_compression::tokio::bufread::GzipEncoder;
use async_compression::Level;
use axum::body::Body;
use axum::extract::{self, Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio_util::io::{ReaderStream, StreamReader};
use tracing::{info, warn};

use crate::countdown::{Busy, Countdown, Fault};
use crate::{Sandbox, Shared};
pub use file::{payment, Generated, Payment, Schema, TextFormat};
use filter::Filter;

/// The payments export path (learn page).
pub const PAYMENTS_PATH: &str = "/v1.0/payouts/payments";

/// What the export files contain.
#[derive(Clone, Debug)]
pub enum Content {
    /// Generated payments, filtered by the request's `$filter`.
    Generated(Generated),
    /// These bytes as they are, whatever was asked (for malformed files).
    Fixed(Bytes),
}

/// How the file is packed on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    #[default]
    Plain,
    /// A gzip file (`application/gzip`, no `Content-Encoding`): only its
    /// magic bytes say so.
    GzipFile,
    /// Gzip with `Content-Encoding: gzip`.
    GzipEncoded,
    /// A zip archive of this many CSV/TSV files, the rows split between
    /// them, each with the header.
    Zip { entries: u32 },
}

/// Settings of this surface.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Bearer token the API expects.
    pub token: String,
    pub content: Content,
    pub encoding: Encoding,
    /// The status poll from which an export is `Completed`.
    pub polls: u32,
    /// Whether downloads honour `Range`.
    pub ranges: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            token: "sandbox-export-token".into(),
            content: Content::Generated(Generated {
                rows: 1000,
                seed: 1,
                schema: Schema::default(),
            }),
            encoding: Encoding::Plain,
            polls: 3,
            ranges: true,
        }
    }
}

/// Fault switches of this surface.
#[derive(Debug, Default)]
pub struct Faults {
    /// 429 / 500 on the two API calls.
    pub busy: Busy,
    /// Export requests that end `Failed`.
    pub failed: Countdown,
    /// Export requests that never leave `Processing`.
    pub stuck: Countdown,
    /// Export requests whose second status poll is answered 401.
    pub unauthorized_mid_poll: Countdown,
    /// Downloads whose connection drops halfway through the file.
    pub drop_mid_blob: Countdown,
}

/// One call of the export API, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// The decoded `$filter`, when given.
    pub filter: Option<String>,
    pub ms_request_id: Option<String>,
    pub ms_correlation_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Complete,
    Fail,
    Stuck,
}

struct Job {
    request: Value,
    filter: Option<Filter>,
    format: TextFormat,
    polls: u32,
    fate: Fate,
    unauthorized_poll: bool,
    sig: String,
    /// Size on the wire, once measured.
    length: Option<u64>,
}

#[derive(Default)]
struct Store {
    jobs: HashMap<String, Job>,
    calls: Vec<Call>,
    ranges: Vec<Option<u64>>,
}

/// State of this surface while the sandbox runs.
pub(crate) struct State {
    config: Config,
    faults: Arc<Faults>,
    store: Mutex<Store>,
}

impl State {
    pub(crate) fn new(config: Config) -> Self {
        State {
            config,
            faults: Arc::default(),
            store: Mutex::default(),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sandbox {
    /// Every call of the export API so far (faulted ones included).
    pub fn export_calls(&self) -> Vec<Call> {
        self.shared.export.store().calls.clone()
    }

    /// The `Range` start of every download (`None`: the whole file).
    pub fn export_ranges(&self) -> Vec<Option<u64>> {
        self.shared.export.store().ranges.clone()
    }

    pub fn export_faults(&self) -> Arc<Faults> {
        self.shared.export.faults.clone()
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(PAYMENTS_PATH, post(queue))
        .route(&format!("{PAYMENTS_PATH}/{{request_id}}"), get(status))
        .route("/blobs/{request_id}/{name}", get(blob))
}

/// An error of the export API (its shape is not published).
fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    info!(status = status.as_u16(), %message, "sandbox export: refused");
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn unauthorized() -> Response {
    api_error(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "the Authorization header is missing or its Bearer token is not valid",
    )
}

/// Records the call, then applies the busy faults and the token.
fn admit(
    state: &State,
    method: &str,
    path: String,
    filter: Option<String>,
    h: &HeaderMap,
) -> Option<Response> {
    let text = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    state.store().calls.push(Call {
        method: method.into(),
        path,
        filter,
        ms_request_id: text("ms-requestid"),
        ms_correlation_id: text("ms-correlationid"),
    });
    match state.faults.busy.take() {
        Some(Fault::TooMany(secs)) => {
            let mut r = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "rate limited",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return Some(r);
        }
        Some(Fault::ServerError) => {
            return Some(api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "sandbox fault",
            ))
        }
        None => {}
    }
    let expected = format!("Bearer {}", state.config.token);
    (h.get(header::AUTHORIZATION).map(HeaderValue::as_bytes) != Some(expected.as_bytes()))
        .then(unauthorized)
}

fn answer(status: StatusCode, request: &Value) -> Response {
    let list = json!({"value": [request], "nextLink": null, "totalCount": 1});
    (status, Json(list)).into_response()
}

/// The file on the wire, from its start.
fn wire(
    config: &Config,
    filter: Option<Filter>,
    format: TextFormat,
) -> BoxStream<'static, io::Result<Bytes>> {
    let text = |part: u64, parts: u64| match &config.content {
        Content::Generated(g) => g.text(filter.clone(), format, part, parts),
        Content::Fixed(b) if part == 0 => stream::iter([Ok(b.clone())]).boxed(),
        Content::Fixed(_) => stream::empty().boxed(),
    };
    let gzip = |s: BoxStream<'static, io::Result<Bytes>>| {
        ReaderStream::with_capacity(
            GzipEncoder::with_quality(StreamReader::new(s), Level::Fastest),
            64 * 1024,
        )
        .boxed()
    };
    match config.encoding {
        Encoding::Plain => text(0, 1),
        Encoding::GzipFile | Encoding::GzipEncoded => gzip(text(0, 1)),
        Encoding::Zip { entries } => {
            let n = u64::from(entries.max(1));
            let ext = match format {
                TextFormat::Csv => "csv",
                TextFormat::Tsv => "tsv",
            };
            zip::archive(
                (0..n)
                    .map(|k| (format!("payments_{}.{ext}", k + 1), text(k, n)))
                    .collect(),
            )
        }
    }
}

fn file_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Zip { .. } => "payments.zip",
        Encoding::GzipFile => "payments.csv.gz",
        _ => "payments.csv",
    }
}

/// `POST /v1.0/payouts/payments`.
async fn queue(
    extract::State(shared): extract::State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let state = &shared.export;
    let raw_filter = query.get("$filter").cloned();
    if let Some(refused) = admit(
        state,
        "POST",
        PAYMENTS_PATH.into(),
        raw_filter.clone(),
        &headers,
    ) {
        return refused;
    }
    // The learn page's table spells it fileFormat, its URI fileformat.
    let format = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("fileformat"))
        .map(|(_, v)| v.to_ascii_lowercase());
    let format = match format.as_deref() {
        None | Some("csv") => TextFormat::Csv,
        Some("tsv") => TextFormat::Tsv,
        Some(other) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("fileformat '{other}' is not supported: csv or tsv"),
            )
        }
    };
    let filter = match raw_filter.as_deref().map(Filter::parse).transpose() {
        Ok(f) => f,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("$filter: {e}"),
            )
        }
    };
    let faults = &state.faults;
    let fate = if faults.failed.take() {
        Fate::Fail
    } else if faults.stuck.take() {
        Fate::Stuck
    } else {
        Fate::Complete
    };
    let id = uuid::Uuid::new_v4().to_string();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let request = json!({
        "requestId": id,
        "requestDateTime": now,
        "requestPath": PAYMENTS_PATH,
        "requestQueryString": raw_filter.unwrap_or_default(),
        "blobLocation": "",
        "status": "Queued",
        // In the REST reference's Export definition, not in the learn
        // page's sample: clients must take both.
        "processingStartDateTime": null,
    });
    state.store().jobs.insert(
        id.clone(),
        Job {
            request: request.clone(),
            filter: filter.clone(),
            format,
            polls: 0,
            fate,
            unauthorized_poll: faults.unauthorized_mid_poll.take(),
            sig: uuid::Uuid::new_v4().simple().to_string(),
            length: None,
        },
    );
    if fate == Fate::Complete {
        // "Processing": the file is rendered once to learn its length.
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut bytes = wire(&shared.export.config, filter, format);
            let mut length = 0u64;
            while let Some(chunk) = bytes.next().await {
                match chunk {
                    Ok(c) => length += c.len() as u64,
                    Err(e) => return warn!(error = %e, "sandbox export: cannot render the file"),
                }
            }
            if let Some(job) = shared.export.store().jobs.get_mut(&id) {
                job.length = Some(length);
            }
        });
    }
    answer(StatusCode::ACCEPTED, &request)
}

/// `GET /v1.0/payouts/payments/{requestId}`.
async fn status(
    extract::State(shared): extract::State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let state = &shared.export;
    if let Some(refused) = admit(
        state,
        "GET",
        format!("{PAYMENTS_PATH}/{id}"),
        None,
        &headers,
    ) {
        return refused;
    }
    let needed = state.config.polls.max(1);
    let base = &shared.base_url;
    let name = file_name(state.config.encoding);
    let mut store = state.store();
    let Some(job) = store.jobs.get_mut(&id) else {
        return api_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no export request {id}"),
        );
    };
    job.polls += 1;
    if job.unauthorized_poll && job.polls == 2 {
        return unauthorized();
    }
    let status = match job.fate {
        _ if job.polls == 1 => "Queued",
        Fate::Fail => "Failed",
        Fate::Complete if job.polls >= needed && job.length.is_some() => {
            job.request["blobLocation"] =
                format!("{base}/blobs/{id}/{name}?sv=2020-08-04&sig={}", job.sig).into();
            "Completed"
        }
        _ => "Processing",
    };
    job.request["status"] = status.into();
    if job.polls > 1 {
        job.request["processingStartDateTime"] = job.request["requestDateTime"].clone();
    }
    answer(StatusCode::OK, &job.request)
}

/// `GET /blobs/{requestId}/{name}?sig=…`.
async fn blob(
    extract::State(shared): extract::State<Arc<Shared>>,
    Path((id, _name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let state = &shared.export;
    let config = &state.config;
    let found = state.store().jobs.get(&id).and_then(|job| {
        let ok = job.request["status"] == "Completed" && query.get("sig") == Some(&job.sig);
        ok.then(|| (job.filter.clone(), job.format, job.length))
    });
    let Some((filter, format, Some(length))) = found else {
        return (
            StatusCode::FORBIDDEN,
            "AuthenticationFailed: the signature is missing, wrong or expired",
        )
            .into_response();
    };
    let etag = format!("\"{id}-{length}\"");
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| config.ranges && if_range_ok);
    state.store().ranges.push(start);
    if start.is_some_and(|s| s >= length) {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{length}"))],
        )
            .into_response();
    }
    let from = start.unwrap_or(0);
    let full = wire(config, filter, format);
    let body = if state.faults.drop_mid_blob.take() {
        let cut = from + (length - from) / 2;
        warn!(at = cut, "sandbox fault: dropping the connection mid-file");
        // The error waits a moment so that the first half (and the head)
        // leave before the connection is cut.
        let drop = async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Err(io::Error::other(
                "sandbox fault: connection dropped mid-file",
            ))
        };
        slice(full, from, cut).chain(stream::once(drop)).boxed()
    } else {
        slice(full, from, length)
    };
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length - from));
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
    if config.ranges {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    let content_type = match (config.encoding, format) {
        (Encoding::Zip { .. }, _) => "application/zip",
        (Encoding::GzipFile, _) => "application/gzip",
        (_, TextFormat::Csv) => "text/csv",
        (_, TextFormat::Tsv) => "text/tab-separated-values",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if config.encoding == Encoding::GzipEncoded {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(s) = start {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let range = format!("bytes {s}-{}/{length}", length - 1);
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&range).expect("ascii"),
        );
    }
    response
}

/// Bytes `start..end` of a stream.
fn slice(
    s: BoxStream<'static, io::Result<Bytes>>,
    start: u64,
    end: u64,
) -> BoxStream<'static, io::Result<Bytes>> {
    s.scan(0u64, move |pos, chunk| {
        let item = match chunk {
            _ if *pos >= end => None,
            Err(e) => Some(Err(e)),
            Ok(c) => {
                let (from, to) = (*pos, *pos + c.len() as u64);
                *pos = to;
                let (lo, hi) = (start.max(from), end.min(to));
                Some(Ok((lo < hi).then(|| {
                    c.slice((lo - from) as usize..(hi - from) as usize)
                })))
            }
        };
        futures::future::ready(item)
    })
    .try_filter_map(|c| futures::future::ready(Ok(c)))
    .boxed()
}

/// The payments a generated export holds after `filter`, in order (for
/// tests to compute totals with); an error for a filter the sandbox
/// refuses.
pub fn payments(
    g: &Generated,
    filter: Option<&str>,
) -> Result<impl Iterator<Item = Payment>, String> {
    let f = filter.map(Filter::parse).transpose()?;
    let (seed, rows) = (g.seed, g.rows);
    Ok((0..rows)
        .map(move |i| payment(seed, rows, i))
        .filter(move |p| f.as_ref().is_none_or(|f| f.matches(p))))
}
