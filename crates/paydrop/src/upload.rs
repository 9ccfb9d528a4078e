//! The provider client for `startdirect`: one HTTP call for one part of a
//! validated file, streamed from disk through the compressor into the
//! request, and the provider's answer sorted into accepted, rejected, or
//! worth retrying.
//!
//! A streamed body cannot be cloned, so a retry is a new [`PartRequest::send`]
//! that reopens the file (PITFALLS.md). Retries, backoff and the ledger are the
//! caller's ([`crate::submit`]); this module makes exactly one attempt.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::multipart::{Form, Part};
use reqwest::{Body, StatusCode};
use rust_decimal::Decimal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use crate::api::{field, BulkStart, Envelope, HEADER_API_CLIENT, HEADER_API_KEY, STARTDIRECT_PATH};
use crate::compress::{compress_reader, compress_stream, Codec, Compression};
use crate::config::Secret;

/// Largest answer body read; a provider answer is a small JSON envelope.
const MAX_ANSWER: usize = 1 << 20;

/// The merchant's credentials for the provider.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub api_key: Secret,
    pub api_client: Secret,
}

/// Where compression applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// The whole multipart body, with `Content-Encoding`.
    WholeBody,
    /// Only the `File` part, sent as `name.csv.gz` / `.br`.
    FilePart,
}

/// The provider's `startdirect` client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
}

/// One part of a validated file, ready to send.
#[derive(Clone, Debug)]
pub struct PartRequest {
    pub path: PathBuf,
    /// File name sent in the `File` part.
    pub file_name: String,
    /// The header row's bytes (`0..0` when there is none), sent before the rows.
    pub header: Range<u64>,
    /// The part's rows.
    pub rows: Range<u64>,
    pub file_pattern: u16,
    pub file_format: u8,
    pub currency_id: u32,
    pub installment: u32,
    pub callback_address: Option<String>,
    pub half_2d: bool,
    pub amount: Decimal,
    pub merchant_unique_code: String,
    pub compression: Compression,
    pub mode: BodyMode,
}

/// The raw answer to one JSON call ([`Client::post_json`]).
#[derive(Clone, Debug)]
pub struct JsonReply {
    pub status: StatusCode,
    pub text: String,
    pub retry_after: Option<Duration>,
}

/// A JSON call without an answer.
#[derive(Clone, Debug)]
pub struct NoReply {
    pub message: String,
    /// False only when no connection was made: the provider cannot have
    /// seen the request.
    pub maybe_received: bool,
}

/// How the provider answered one attempt.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `ErrorCode` 0 and `Result` true.
    Accepted { body: BulkStart, raw: String },
    /// A definite no: nothing was created at the provider.
    Rejected { status: u16, message: String },
    /// 429, 5xx, a dropped connection or an unreadable answer: try again with
    /// the same MerchantUniqueCode.
    Retry {
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(
        base: &str,
        credentials: Credentials,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            credentials,
        })
    }

    fn auth_headers(&self) -> anyhow::Result<HeaderMap> {
        let mut h = HeaderMap::new();
        for (name, secret) in [
            (HEADER_API_KEY, &self.credentials.api_key),
            (HEADER_API_CLIENT, &self.credentials.api_client),
        ] {
            let mut v = HeaderValue::from_str(secret.expose()).map_err(|_| {
                anyhow::anyhow!("{name} contains characters not allowed in a header")
            })?;
            // Keeps the value out of reqwest's and hyper's debug output.
            v.set_sensitive(true);
            h.insert(name, v);
        }
        Ok(h)
    }

    /// One POST of `body` as JSON to `path` with the credential headers.
    pub async fn post_json<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<JsonReply, NoReply> {
        self.json_call(|http, url| http.post(url).json(body), path)
            .await
    }

    /// One GET of `path` with the credential headers and `extra` headers
    /// (e.g. the marketplace inquiry's `jobid`).
    pub async fn get_json(&self, path: &str, extra: &[(&str, &str)]) -> Result<JsonReply, NoReply> {
        self.json_call(
            |http, url| {
                extra
                    .iter()
                    .fold(http.get(url), |r, (name, value)| r.header(*name, *value))
            },
            path,
        )
        .await
    }

    async fn json_call(
        &self,
        build: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        path: &str,
    ) -> Result<JsonReply, NoReply> {
        let headers = self.auth_headers().map_err(|e| NoReply {
            message: e.to_string(),
            maybe_received: false,
        })?;
        let url = format!("{}{path}", self.base);
        let no_reply = |e: reqwest::Error| NoReply {
            maybe_received: !e.is_connect(),
            message: describe(&e),
        };
        let response = build(&self.http, &url)
            .headers(headers)
            .send()
            .await
            .map_err(no_reply)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = read_capped(response).await.map_err(no_reply)?;
        Ok(JsonReply {
            status,
            text,
            retry_after,
        })
    }

    /// One attempt to submit `part`. `sent` counts file bytes read into the
    /// request (for progress).
    pub async fn start_direct(&self, part: &PartRequest, sent: Arc<AtomicU64>) -> Answer {
        match self.try_start_direct(part, sent).await {
            Ok(answer) => answer,
            Err(e) => Answer::Retry {
                status: None,
                message: e,
                retry_after: None,
            },
        }
    }

    async fn try_start_direct(
        &self,
        part: &PartRequest,
        sent: Arc<AtomicU64>,
    ) -> Result<Answer, String> {
        let headers = self.auth_headers().map_err(|e| e.to_string())?;
        let file = part
            .open()
            .await
            .map_err(|e| format!("cannot read {}: {e}", part.path.display()))?;
        let file = counting(file, sent);
        let mut form = Form::new();
        for (name, value) in part.text_fields() {
            form = form.text(name, value);
        }
        let url = format!("{}{STARTDIRECT_PATH}", self.base);
        let mut request = self.http.post(&url).headers(headers);
        match (part.mode, part.compression.codec) {
            (_, Codec::None) | (BodyMode::FilePart, _) => {
                let (name, mime) = match part.mode {
                    BodyMode::FilePart if part.compression.codec != Codec::None => (
                        format!("{}{}", part.file_name, part.compression.codec.suffix()),
                        match part.compression.codec {
                            Codec::Gzip => "application/gzip",
                            _ => "application/x-brotli",
                        },
                    ),
                    _ => (part.file_name.clone(), "text/csv"),
                };
                let body = Body::wrap_stream(compress_reader(file, part.compression));
                let file_part = Part::stream(body)
                    .file_name(name)
                    .mime_str(mime)
                    .map_err(|e| e.to_string())?;
                request = request.multipart(form.part(field::FILE, file_part));
            }
            (BodyMode::WholeBody, codec) => {
                let file_part = Part::stream(Body::wrap_stream(
                    tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024),
                ))
                .file_name(part.file_name.clone())
                .mime_str("text/csv")
                .map_err(|e| e.to_string())?;
                let form = form.part(field::FILE, file_part);
                let content_type = format!("multipart/form-data; boundary={}", form.boundary());
                let body = compress_stream(Box::pin(form.into_stream()), part.compression);
                request = request
                    .header(CONTENT_TYPE, content_type)
                    .header(
                        CONTENT_ENCODING,
                        codec.content_encoding().unwrap_or("identity"),
                    )
                    .body(Body::wrap_stream(body));
            }
        }
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = read_capped(response).await.map_err(|e| describe(&e))?;
        Ok(classify(status, &text, retry_after))
    }
}

impl PartRequest {
    /// The multipart text fields, in the provider's documented order.
    fn text_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            (field::FILE_PATTERN, self.file_pattern.to_string()),
            (field::FILE_FORMAT, self.file_format.to_string()),
            (field::CURRENCY_ID, self.currency_id.to_string()),
            (field::INSTALLMENT, self.installment.to_string()),
            (
                field::CALLBACK_ADDRESS,
                self.callback_address.clone().unwrap_or_default(),
            ),
            (field::HALF_2D, self.half_2d.to_string()),
            (field::AMOUNT, self.amount.to_string()),
            (
                field::MERCHANT_UNIQUE_CODE,
                self.merchant_unique_code.clone(),
            ),
        ]
    }

    /// The part's bytes: the header row (if any) followed by its rows, read
    /// from disk as the request is sent.
    async fn open(&self) -> std::io::Result<impl AsyncRead + Send + Unpin + 'static> {
        // The first part's rows follow the header in the file: one range.
        let (head, body) = if self.header.is_empty() || self.rows.start == self.header.end {
            let start = if self.header.is_empty() {
                self.rows.start
            } else {
                self.header.start
            };
            (0..0, start..self.rows.end)
        } else {
            (self.header.clone(), self.rows.clone())
        };
        Ok(self.range(head).await?.chain(self.range(body).await?))
    }

    async fn range(&self, r: Range<u64>) -> std::io::Result<tokio::io::Take<tokio::fs::File>> {
        let mut f = tokio::fs::File::open(&self.path).await?;
        f.seek(SeekFrom::Start(r.start)).await?;
        Ok(f.take(r.end.saturating_sub(r.start)))
    }
}

/// Counts bytes as they are read.
fn counting<R: AsyncRead + Send + Unpin + 'static>(
    reader: R,
    counter: Arc<AtomicU64>,
) -> impl AsyncRead + Send + Unpin + 'static {
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024).inspect_ok(
        move |chunk: &Bytes| {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        },
    );
    tokio_util::io::StreamReader::new(stream)
}

/// Sorts an answer into accepted / rejected / retry.
fn classify(status: StatusCode, text: &str, retry_after: Option<Duration>) -> Answer {
    let envelope: Option<Envelope<BulkStart>> = serde_json::from_str(text).ok();
    let message = envelope
        .as_ref()
        .and_then(|e| e.message.clone())
        .unwrap_or_else(|| snippet(text));
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return Answer::Retry {
            status: Some(status.as_u16()),
            message: format!("{status}: {message}"),
            retry_after,
        };
    }
    if !status.is_success() {
        return Answer::Rejected {
            status: status.as_u16(),
            message,
        };
    }
    match envelope {
        Some(e) if e.is_success() => match e.body {
            Some(body) => Answer::Accepted {
                body,
                raw: text.to_string(),
            },
            None => Answer::Retry {
                status: Some(status.as_u16()),
                message: "the provider reported success without a BulkPaymentId".into(),
                retry_after: None,
            },
        },
        Some(e) => Answer::Rejected {
            status: status.as_u16(),
            message: format!(
                "ErrorCode {}: {}",
                e.error_code,
                e.message.unwrap_or_default()
            ),
        },
        // A 2xx we cannot read may still mean "accepted": only a retry with
        // the same code (deduplicated by the provider) finds out safely.
        None => Answer::Retry {
            status: Some(status.as_u16()),
            message: format!("unreadable answer: {}", snippet(text)),
            retry_after: None,
        },
    }
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(300).collect();
    t.trim().to_string()
}

/// The `Retry-After` of an answer.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Retry-After as seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    let secs = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// The body of a small answer, at most 1 MiB of it.
pub(crate) async fn read_capped(response: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = MAX_ANSWER.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A transport error without the noise; reqwest's messages never contain
/// header values, so no secret can leak through here.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_answers() {
        let ok = r#"{"ErrorCode":0,"Result":true,"Message":"ok","Body":{"BulkPaymentId":7,"MerchantUniqueCode":"m"}}"#;
        assert!(matches!(
            classify(StatusCode::OK, ok, None),
            Answer::Accepted { ref body, .. } if body.bulk_payment_id == 7
        ));
        let refused = r#"{"ErrorCode":12,"Result":false,"Message":"Amount mismatch"}"#;
        assert!(matches!(
            classify(StatusCode::OK, refused, None),
            Answer::Rejected { ref message, .. } if message.contains("Amount mismatch")
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, "", Some(Duration::from_secs(2))),
            Answer::Retry { retry_after: Some(d), .. } if d.as_secs() == 2
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, "", None),
            Answer::Retry { .. }
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, r#"{"ErrorCode":401,"Result":false,"Message":"bad key"}"#, None),
            Answer::Rejected { status: 401, ref message } if message == "bad key"
        ));
        assert!(matches!(
            classify(StatusCode::OK, "<html>", None),
            Answer::Retry { .. }
        ));
    }

    #[tokio::test]
    async fn part_bytes_put_the_header_before_every_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, b"h1,h2\na,1\nb,2\nc,3\n").unwrap();
        let mut part = PartRequest {
            path,
            file_name: "f.csv".into(),
            header: 0..6,
            rows: 6..14,
            file_pattern: 1,
            file_format: 5,
            currency_id: 1,
            installment: 1,
            callback_address: None,
            half_2d: false,
            amount: Decimal::ONE,
            merchant_unique_code: "m".into(),
            compression: Compression::none(),
            mode: BodyMode::WholeBody,
        };
        let read = |p: PartRequest| async move {
            let mut out = Vec::new();
            p.open().await.unwrap().read_to_end(&mut out).await.unwrap();
            out
        };
        assert_eq!(read(part.clone()).await, b"h1,h2\na,1\nb,2\n");
        part.rows = 14..18;
        assert_eq!(read(part.clone()).await, b"h1,h2\nc,3\n");
        part.header = 0..0;
        part.rows = 0..10;
        assert_eq!(read(part).await, b"h1,h2\na,1\n");
    }
}
