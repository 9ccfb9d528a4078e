//! Downloading an export's blob as a stream: resumed with HTTP `Range` when
//! the connection drops and the server supports it, and gunzipped on the
//! fly when the blob is gzip (by `Content-Encoding` or its magic bytes).
//!
//! The blob URL carries its own access token: it is never logged nor put in
//! an error (only scheme, host and path are), and the Bearer token of the
//! export API is not sent to it.

use std::io;

use async_compression::tokio::bufread::GzipDecoder;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{
    HeaderMap, ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_RANGE,
    RANGE,
};
use reqwest::{StatusCode, Url};
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

use crate::transport::{describe, retry_after, Effect, Retry, RetryPolicy, Step};

/// Resumes in a row without a byte of progress before giving up.
const MAX_STALLED_RESUMES: u32 = 5;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the export file at {url} could not be fetched: {reason}")]
    Fetch { url: String, reason: String },
    #[error(
        "the download of {url} broke off after {received} bytes ({reason}) and the server does \
         not support resuming (no Accept-Ranges: bytes); run the command again"
    )]
    NotResumable {
        url: String,
        received: u64,
        reason: String,
    },
    #[error(
        "the download of {url} broke off after {received} bytes and could not be resumed: \
         {reason}; run the command again"
    )]
    ResumeFailed {
        url: String,
        received: u64,
        reason: String,
    },
}

/// What the server said about the blob.
#[derive(Clone, Debug, Default)]
pub struct BlobInfo {
    /// Scheme, host and path: the URL without its token.
    pub url: String,
    /// Size on the wire, when announced.
    pub length: Option<u64>,
    pub gzip: bool,
    pub resumable: bool,
}

/// The URL without query or fragment, for messages.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Opens the blob: the decoded bytes, and what the server said about it.
pub async fn open(
    http: &reqwest::Client,
    url: Url,
    retry: RetryPolicy,
) -> Result<(Box<dyn AsyncRead + Send + Unpin>, BlobInfo), BlobError> {
    let shown = redact(&url);
    let fetch_error = |reason: String| BlobError::Fetch {
        url: shown.clone(),
        reason,
    };
    let what = format!("the download of {shown}");
    let mut calls = Retry::new(retry, Effect::Idempotent, &what);
    let response = loop {
        if calls.next().await.is_none() {
            let e = calls.ended();
            return Err(fetch_error(format!("{} ({} attempts)", e.last, e.attempts)));
        }
        let step = match http.get(url.clone()).send().await {
            Ok(r) if r.status() == StatusCode::OK => Step::Done(r),
            Ok(r)
                if r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error() =>
            {
                Step::Ambiguous {
                    why: r.status().to_string(),
                    retry_after: retry_after(r.headers()),
                }
            }
            Ok(r) if matches!(r.status().as_u16(), 401 | 403 | 404) => {
                return Err(fetch_error(format!(
                    "{}: the link is refused or has expired; queue a new export",
                    r.status()
                )))
            }
            Ok(r) => return Err(fetch_error(format!("unexpected answer {}", r.status()))),
            Err(e) => {
                let e = e.without_url();
                Step::failed(&e, describe(&e))
            }
        };
        if let Some(r) = calls.judge(step) {
            break r;
        }
    };
    let headers = response.headers();
    let gzip_encoded = header(headers, CONTENT_ENCODING)
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip"));
    let mut info = BlobInfo {
        url: shown.clone(),
        length: header(headers, CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        gzip: gzip_encoded,
        resumable: header(headers, ACCEPT_RANGES).is_some_and(|v| v.contains("bytes")),
    };
    let resumable = Resumable {
        http: http.clone(),
        url,
        shown: shown.clone(),
        etag: header(headers, ETAG).filter(|e| !e.starts_with("W/")),
        total: info.length,
        ranges: info.resumable,
        received: 0,
        stalled: 0,
        retry,
        body: response.bytes_stream().boxed(),
    };
    let mut raw = stream::try_unfold(resumable, |mut r| async move {
        Ok::<_, io::Error>(r.next_chunk().await?.map(|chunk| (chunk, r)))
    })
    .boxed();
    // The first bytes tell gzip apart when no header says so.
    let mut head = BytesMut::new();
    while head.len() < 2 {
        match raw.try_next().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                let inner = e.into_inner();
                return Err(match inner.map(|b| b.downcast::<BlobError>()) {
                    Some(Ok(blob)) => *blob,
                    Some(Err(other)) => fetch_error(other.to_string()),
                    None => fetch_error("read error".into()),
                });
            }
        }
    }
    info.gzip |= head.starts_with(&[0x1f, 0x8b]);
    let bytes = StreamReader::new(stream::iter([Ok(head.freeze())]).chain(raw));
    let reader: Box<dyn AsyncRead + Send + Unpin> = if info.gzip {
        let mut d = GzipDecoder::new(bytes);
        d.multiple_members(true);
        Box::new(Gunzip(d))
    } else {
        Box::new(bytes)
    };
    Ok((reader, info))
}

fn header(h: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// A gzip error, told apart from the transport errors that pass through
/// the decoder.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GzipError(pub String);

struct Gunzip<R>(GzipDecoder<R>);

impl<R: tokio::io::AsyncBufRead + Unpin> AsyncRead for Gunzip<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0)
            .poll_read(cx, buf)
            .map_err(|e| {
                let is_transport = e.get_ref().is_some_and(|inner| inner.is::<BlobError>());
                if is_transport {
                    e
                } else if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::other(GzipError(
                        "the gzip stream ends early: the blob is truncated".into(),
                    ))
                } else {
                    io::Error::other(GzipError(format!("the blob is not valid gzip: {e}")))
                }
            })
    }
}

/// The body of the blob, resumed across broken connections.
struct Resumable {
    http: reqwest::Client,
    url: Url,
    shown: String,
    etag: Option<String>,
    total: Option<u64>,
    ranges: bool,
    received: u64,
    /// Resumes since the last byte received.
    stalled: u32,
    retry: RetryPolicy,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
}

impl Resumable {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let reason = match self.body.next().await {
                Some(Ok(chunk)) => {
                    self.received += chunk.len() as u64;
                    if !chunk.is_empty() {
                        self.stalled = 0;
                    }
                    return Ok(Some(chunk));
                }
                None => match self.total {
                    Some(total) if self.received < total => {
                        format!("the connection closed at byte {} of {total}", self.received)
                    }
                    _ => return Ok(None),
                },
                Some(Err(e)) => describe(&e.without_url()),
            };
            self.resume(reason).await.map_err(io::Error::other)?;
        }
    }

    async fn resume(&mut self, reason: String) -> Result<(), BlobError> {
        if !self.ranges {
            return Err(BlobError::NotResumable {
                url: self.shown.clone(),
                received: self.received,
                reason,
            });
        }
        let failed = |me: &Self, why: String| BlobError::ResumeFailed {
            url: me.shown.clone(),
            received: me.received,
            reason: format!("{reason}; then {why}"),
        };
        // The break counts as the first failed attempt: at most
        // MAX_STALLED_RESUMES resumes in a row follow it without a byte of
        // progress, however many the retry policy allows a call.
        let policy = RetryPolicy {
            max_attempts: MAX_STALLED_RESUMES + 1,
            ..self.retry
        };
        let what = format!("the resumed download of {}", self.shown);
        let mut calls =
            Retry::new(policy, Effect::Idempotent, &what).after_failures(self.stalled + 1);
        while let Some(n) = calls.next().await {
            self.stalled = n - 1;
            tracing::warn!(url = %self.shown, at = self.received, error = %reason, "resuming the export download");
            let mut request = self
                .http
                .get(self.url.clone())
                .header(RANGE, format!("bytes={}-", self.received));
            if let Some(etag) = &self.etag {
                request = request.header(IF_RANGE, etag);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    let e = e.without_url();
                    calls.judge(Step::<()>::failed(&e, describe(&e)));
                    continue;
                }
            };
            match response.status() {
                StatusCode::PARTIAL_CONTENT => {}
                StatusCode::OK => {
                    return Err(failed(
                        self,
                        "the server sent the whole file again (it changed meanwhile)".into(),
                    ))
                }
                s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                    calls.judge(Step::<()>::Ambiguous {
                        why: format!("the server answered {s}"),
                        retry_after: retry_after(response.headers()),
                    });
                    continue;
                }
                s => return Err(failed(self, format!("the server answered {s}"))),
            }
            let start =
                header(response.headers(), CONTENT_RANGE).and_then(|v| content_range_start(&v));
            if start != Some(self.received) {
                return Err(failed(
                    self,
                    match start {
                        Some(start) => format!(
                            "the server resumed at byte {start} instead of {}",
                            self.received
                        ),
                        None => format!(
                            "the server did not say where it resumed (no Content-Range) when \
                             asked for byte {}",
                            self.received
                        ),
                    },
                ));
            }
            tracing::info!(url = %self.shown, at = self.received, "export download resumed");
            self.body = response.bytes_stream().boxed();
            return Ok(());
        }
        Err(failed(
            self,
            format!("{} resumes without progress", self.stalled),
        ))
    }
}

/// The first byte of `bytes 100-199/200`.
fn content_range_start(v: &str) -> Option<u64> {
    v.strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_token() {
        let u: Url = "https://blob.example/exports/1.csv?sig=SECRET&se=2030"
            .parse()
            .unwrap();
        assert_eq!(redact(&u), "https://blob.example/exports/1.csv");
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
    }
}
