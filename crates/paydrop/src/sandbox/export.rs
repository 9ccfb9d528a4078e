//! The sandbox's payouts export API (`../shared/SPEC.md` §3).
//!
//! | call | answer |
//! |------|--------|
//! | `POST /v1.0/payouts/payments?$filter=…&fileformat=csv\|tsv` | 202, the request `Queued`; 400 for a malformed `$filter` (checked by [`Filter::parse`]) or another `fileformat`; 401 without `Authorization: Bearer {export_token}` |
//! | `GET /v1.0/payouts/payments/{requestId}` | poll 1 `Queued`, then `Processing`, `Completed` from poll [`SandboxConfig::export_polls`] on (once the file's length is known); 404 for an unknown id |
//! | `GET /blobs/{requestId}?token=…` | the file, generated on the fly ([`ExportBlob`]); `Accept-Ranges: bytes` and 206 for `Range: bytes=N-` unless [`SandboxConfig::export_ranges`] is off; 403 for a wrong token |
//!
//! The fault switches delay, 429 and 500 apply to the two API calls like to
//! `startdirect`; [`Faults::export_failed`], [`Faults::export_stuck`],
//! [`Faults::export_unauthorized_mid_poll`] and [`Faults::drop_mid_blob`]
//! are this API's own. The filter is checked, recorded, and not applied:
//! the file is the same whatever it says.
//!
//! Generated files are a pure function of `(seed, rows, i)` ([`payout_row`]),
//! so tests can compute what the export must add up to; they are rendered
//! in chunks as they are sent, so a file of any size costs no memory. A
//! `Range` request renders (and gzips) the file again from the start and
//! skips to the offset: slow for huge offsets, but exact and memory-free.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use async_compression::tokio::bufread::GzipEncoder;
use async_compression::Level;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::{Days, NaiveDate, NaiveTime};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use rust_decimal::Decimal;
use serde::Serialize;
use tokio_util::io::{ReaderStream, StreamReader};
use tracing::{info, warn};

use super::{common_faults, Faults, Shared};
use crate::export::filter::Filter;
use crate::export::rows::{Format, COLUMNS};
use crate::export::{
    ExportList, ExportRequest, ExportStatus, HEADER_CORRELATION_ID, HEADER_REQUEST_ID,
    PAYMENTS_PATH,
};

/// What the sandbox's export files contain.
#[derive(Clone, Debug)]
pub enum ExportBlob {
    /// `rows` rows of [`payout_row`] with this seed, in the requested
    /// `fileformat`, header first.
    Generated { rows: u64, seed: u64 },
    /// These bytes as they are, whatever the format (for malformed files).
    Fixed(Bytes),
}

/// How the file is encoded on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BlobEncoding {
    #[default]
    Plain,
    /// A gzip file (`application/gzip`, no `Content-Encoding`): only its
    /// magic bytes say so.
    GzipFile,
    /// Gzip with `Content-Encoding: gzip`.
    GzipEncoded,
}

/// One call of the export API, as the sandbox received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportCall {
    pub method: String,
    pub path: String,
    /// The decoded `$filter`, when given.
    pub filter: Option<String>,
    pub ms_request_id: Option<String>,
    pub ms_correlation_id: Option<String>,
}

/// How the sandbox will treat one export request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Complete,
    Fail,
    Stuck,
}

pub(super) struct Job {
    request: ExportRequest,
    format: Format,
    polls: u32,
    fate: Fate,
    unauthorized_poll: bool,
    token: String,
    /// Length on the wire, once measured.
    length: Option<u64>,
}

/// The sandbox's export state.
#[derive(Default)]
pub(super) struct Exports {
    jobs: HashMap<String, Job>,
    pub(super) calls: Vec<ExportCall>,
    /// `Range` start of every blob download (`None`: the whole file).
    pub(super) blob_ranges: Vec<Option<u64>>,
}

const PRODUCTS: [&str; 4] = [
    "CSP Direct Bill Partner",
    "CSP Indirect Provider",
    "CSP Indirect Reseller",
    "CSP 2T Indirect Provider",
];
const ORDER_TYPES: [&str; 4] = ["REBATE", "COOP", "FEE", "INCENTIVE"];
const CURRENCIES: [&str; 4] = ["USD", "EUR", "TRY", "GBP"];
const STATUSES: [&str; 4] = ["Paid", "Sent", "Upcoming", "Failed"];
const METHODS: [&str; 2] = ["Wire", "PayPal"];
/// Names that need quoting: a delimiter, a quote, a line break.
const NAMES: [&str; 5] = [
    "Contoso Ltd",
    "Fabrikam, Inc.",
    "O'Brien \"Trading\" GmbH",
    "Northwind\r\nTraders",
    "Tailspin\tToys",
];
/// Generated payment dates cover three years from here.
const FIRST_DAY: (i32, u32, u32) = (2023, 1, 1);
const DAYS: u64 = 3 * 365;

/// One generated payout row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutRow {
    pub payment_id: String,
    pub payment_date: NaiveDate,
    pub payout_order_type: &'static str,
    pub program_name: &'static str,
    pub enrollment_participant_id: String,
    pub participant_name: &'static str,
    pub currency: &'static str,
    pub paid_amount: Decimal,
    pub payout_status: &'static str,
    pub payout_status_update_ts: String,
    pub payment_method: &'static str,
    pub payout_order_id: String,
}

/// Row `i` (0-based) of a generated export of `rows` rows: dates ascend
/// over three years, everything else follows from a hash of `(seed, i)`.
/// `FEE` rows are negative.
pub fn payout_row(seed: u64, rows: u64, i: u64) -> PayoutRow {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), seed);
    let pick = |shift: u32, n: usize| ((h >> shift) as usize) % n;
    let (y, m, d) = FIRST_DAY;
    let first = NaiveDate::from_ymd_opt(y, m, d).expect("valid date");
    let day = (i as u128 * DAYS as u128 / rows.max(1) as u128) as u64;
    let payment_date = first + Days::new(day);
    let order_type = ORDER_TYPES[pick(8, ORDER_TYPES.len())];
    let cents = ((h >> 24) % 5_000_000) as i64;
    let paid_amount = if order_type == "FEE" {
        Decimal::new(-(cents % 100_000), 2)
    } else {
        Decimal::new(cents, 2)
    };
    let secs = ((h >> 40) % 86_400) as u32;
    let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, (h % 1000) as u32 * 1_000_000)
        .expect("in range");
    PayoutRow {
        payment_id: format!("{:012}", 100_000_000_000 + i),
        payment_date,
        payout_order_type: order_type,
        program_name: PRODUCTS[pick(0, PRODUCTS.len())],
        enrollment_participant_id: format!("{}", 4_000_000 + (h >> 48) % 500),
        participant_name: NAMES[pick(4, NAMES.len())],
        currency: CURRENCIES[pick(12, CURRENCIES.len())],
        paid_amount,
        payout_status: STATUSES[pick(16, STATUSES.len())],
        payout_status_update_ts: payment_date
            .and_time(time)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string(),
        payment_method: METHODS[pick(20, METHODS.len())],
        payout_order_id: format!("PO-{}", 70_000 + day),
    }
}

/// Appends a field, quoted when it has to be.
fn push_field(out: &mut Vec<u8>, field: &str, delimiter: u8) {
    if field
        .bytes()
        .any(|b| b == delimiter || matches!(b, b'"' | b'\r' | b'\n'))
    {
        out.push(b'"');
        out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}

fn push_record<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = &'a str>, delimiter: u8) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        push_field(out, f, delimiter);
    }
    out.push(b'\n');
}

/// Rows `range` rendered in `format`.
fn render(seed: u64, rows: u64, range: std::ops::Range<u64>, format: Format) -> Bytes {
    let d = format.delimiter();
    let mut out = Vec::with_capacity((range.end - range.start) as usize * 200);
    for i in range {
        let r = payout_row(seed, rows, i);
        let (date, amount) = (r.payment_date.to_string(), r.paid_amount.to_string());
        push_record(
            &mut out,
            [
                r.payment_id.as_str(),
                &date,
                r.payout_order_type,
                r.program_name,
                &r.enrollment_participant_id,
                r.participant_name,
                r.currency,
                &amount,
                r.payout_status,
                &r.payout_status_update_ts,
                r.payment_method,
                &r.payout_order_id,
            ],
            d,
        );
    }
    Bytes::from(out)
}

/// A generated export file, unencoded: the header, then rows in chunks.
pub fn generated_file(
    seed: u64,
    rows: u64,
    format: Format,
) -> BoxStream<'static, io::Result<Bytes>> {
    const CHUNK: u64 = 2048;
    let mut header = Vec::new();
    push_record(
        &mut header,
        COLUMNS.iter().map(|(name, _)| *name),
        format.delimiter(),
    );
    let chunks = (0..rows.div_ceil(CHUNK)).map(move |c| {
        Ok(render(
            seed,
            rows,
            c * CHUNK..((c + 1) * CHUNK).min(rows),
            format,
        ))
    });
    stream::iter([Ok(Bytes::from(header))])
        .chain(stream::iter(chunks))
        .boxed()
}

/// The file on the wire: generated or fixed, gzipped when asked.
fn wire_bytes(
    blob: &ExportBlob,
    format: Format,
    encoding: BlobEncoding,
) -> BoxStream<'static, io::Result<Bytes>> {
    let plain = match blob {
        ExportBlob::Generated { rows, seed } => generated_file(*seed, *rows, format),
        ExportBlob::Fixed(bytes) => stream::iter([Ok(bytes.clone())]).boxed(),
    };
    match encoding {
        BlobEncoding::Plain => plain,
        BlobEncoding::GzipFile | BlobEncoding::GzipEncoded => ReaderStream::with_capacity(
            GzipEncoder::with_quality(StreamReader::new(plain), Level::Fastest),
            64 * 1024,
        )
        .boxed(),
    }
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

impl Shared {
    pub(super) fn exports(&self) -> std::sync::MutexGuard<'_, Exports> {
        self.exports.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A JSON error of the export API.
fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    info!(status = status.as_u16(), message = %message, "sandbox export API: refused");
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn bearer_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", shared.config.export_token);
    headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        == Some(expected.as_bytes())
}

fn unauthorized() -> Response {
    api_error(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "the Authorization header is missing or its Bearer token is not valid",
    )
}

fn record_call(shared: &Shared, method: &str, path: String, filter: Option<String>, h: &HeaderMap) {
    let text = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    shared.exports().calls.push(ExportCall {
        method: method.into(),
        path,
        filter,
        ms_request_id: text(HEADER_REQUEST_ID),
        ms_correlation_id: text(HEADER_CORRELATION_ID),
    });
}

fn answer(status: StatusCode, request: &ExportRequest) -> Response {
    let list = ExportList {
        value: vec![request.clone()],
        next_link: None,
        total_count: 1,
    };
    (status, Json(list)).into_response()
}

/// `POST /v1.0/payouts/payments`.
pub(super) async fn queue(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let filter = query.get("$filter").cloned();
    record_call(
        &shared,
        "POST",
        PAYMENTS_PATH.into(),
        filter.clone(),
        &headers,
    );
    if let Some(faulted) = common_faults(&shared).await {
        return faulted;
    }
    if !bearer_ok(&shared, &headers) {
        return unauthorized();
    }
    let format = match query.get("fileformat").map(|f| f.to_ascii_lowercase()) {
        None => Format::Csv,
        Some(f) if f == "csv" => Format::Csv,
        Some(f) if f == "tsv" => Format::Tsv,
        Some(other) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("fileformat '{other}' is not supported: use csv or tsv"),
            )
        }
    };
    if let Some(f) = &filter {
        if let Err(e) = Filter::parse(f) {
            return api_error(StatusCode::BAD_REQUEST, "BadRequest", e.to_string());
        }
    }
    let faults = &shared.faults;
    let fate = if Faults::take(&faults.export_failed) {
        Fate::Fail
    } else if Faults::take(&faults.export_stuck) {
        Fate::Stuck
    } else {
        Fate::Complete
    };
    let id = uuid::Uuid::new_v4().to_string();
    let request = ExportRequest {
        request_id: id.clone(),
        request_date_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        request_path: PAYMENTS_PATH.into(),
        request_query_string: filter.unwrap_or_default(),
        blob_location: String::new(),
        status: ExportStatus::Queued,
    };
    let config = &shared.config;
    let known = match &config.export_blob {
        ExportBlob::Fixed(b) if config.export_encoding == BlobEncoding::Plain => {
            Some(b.len() as u64)
        }
        _ => None,
    };
    shared.exports().jobs.insert(
        id.clone(),
        Job {
            request: request.clone(),
            format,
            polls: 0,
            fate,
            unauthorized_poll: Faults::take(&faults.export_unauthorized_mid_poll),
            token: uuid::Uuid::new_v4().simple().to_string(),
            length: known,
        },
    );
    if known.is_none() && fate == Fate::Complete {
        // "Processing": the file's length, for Content-Length and Range.
        let shared = shared.clone();
        tokio::spawn(async move {
            let config = &shared.config;
            let mut bytes = wire_bytes(&config.export_blob, format, config.export_encoding);
            let mut length = 0u64;
            while let Some(chunk) = bytes.next().await {
                match chunk {
                    Ok(c) => length += c.len() as u64,
                    Err(e) => return warn!(error = %e, "sandbox: cannot render the export"),
                }
            }
            if let Some(job) = shared.exports().jobs.get_mut(&id) {
                job.length = Some(length);
            }
        });
    }
    info!(request_id = %request.request_id, ?fate, "sandbox: export queued");
    answer(StatusCode::ACCEPTED, &request)
}

/// `GET /v1.0/payouts/payments/{requestId}`.
pub(super) async fn status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record_call(
        &shared,
        "GET",
        format!("{PAYMENTS_PATH}/{id}"),
        None,
        &headers,
    );
    if let Some(faulted) = common_faults(&shared).await {
        return faulted;
    }
    if !bearer_ok(&shared, &headers) {
        return unauthorized();
    }
    let polls_needed = shared.config.export_polls.max(1);
    let base = shared.base_url.clone();
    let mut exports = shared.exports();
    let Some(job) = exports.jobs.get_mut(&id) else {
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
    job.request.status = match job.fate {
        _ if job.polls == 1 => ExportStatus::Queued,
        Fate::Fail => ExportStatus::Failed,
        Fate::Complete if job.polls >= polls_needed && job.length.is_some() => {
            job.request.blob_location = format!("{base}/blobs/{id}?token={}", job.token);
            ExportStatus::Completed
        }
        _ => ExportStatus::Processing,
    };
    answer(StatusCode::OK, &job.request)
}

/// `GET /blobs/{requestId}?token=…`.
pub(super) async fn blob(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let config = &shared.config;
    let found = shared.exports().jobs.get(&id).and_then(|job| {
        let ok =
            job.request.status == ExportStatus::Completed && query.get("token") == Some(&job.token);
        ok.then_some((job.format, job.length))
    });
    let Some((format, Some(length))) = found else {
        return (
            StatusCode::FORBIDDEN,
            "AuthenticationFailed: the blob's token is missing, wrong or expired",
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
        .filter(|_| config.export_ranges && if_range_ok);
    shared.exports().blob_ranges.push(start);
    if start.is_some_and(|s| s >= length) {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{length}"))],
        )
            .into_response();
    }
    let from = start.unwrap_or(0);
    let full = wire_bytes(&config.export_blob, format, config.export_encoding);
    let body = if Faults::take(&shared.faults.drop_mid_blob) {
        let cut = from + (length - from) / 2;
        warn!(
            at = cut,
            "sandbox fault: dropping the connection in the middle of the blob"
        );
        // The error waits a moment, so that hyper sends the first half
        // (with the answer's head) before it cuts the connection.
        let drop = async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Err(io::Error::other(
                "sandbox fault: connection dropped mid-blob",
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
    if config.export_ranges {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    let content_type = match (config.export_encoding, format) {
        (BlobEncoding::GzipFile, _) => "application/gzip",
        (_, Format::Csv) => "text/csv",
        (_, Format::Tsv) => "text/tab-separated-values",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if config.export_encoding == BlobEncoding::GzipEncoded {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slices_cut_exactly() {
        let s = || {
            stream::iter([
                Ok(Bytes::from_static(b"abc")),
                Ok(Bytes::from_static(b"defg")),
            ])
            .boxed()
        };
        let got: Vec<Bytes> = slice(s(), 2, 5).try_collect().await.unwrap();
        assert_eq!(got.concat(), b"cde");
        let all: Vec<Bytes> = slice(s(), 0, 7).try_collect().await.unwrap();
        assert_eq!(all.concat(), b"abcdefg");
    }
}
