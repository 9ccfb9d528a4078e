//! HTTP plumbing shared by every provider client: the base address checked
//! before anything is sent, the one client builder with the configured
//! timeouts, authentication ([`auth`]), the retry loop (`retry`), whether
//! a failed call can have reached the provider, `Retry-After`, capped answer
//! bodies and transport errors described without secrets. Each client keeps
//! only how it classifies its provider's answers.

pub mod auth;
mod retry;

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, RETRY_AFTER};

pub(crate) use auth::Auth;
pub use retry::RetryPolicy;
pub(crate) use retry::{Effect, Ended, Retry, Step};

/// The most of an answer body kept: answers are small JSON envelopes.
const MAX_ANSWER: usize = 1 << 20;

/// A base address that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {shown:?} {reason}")]
pub struct BadBaseUrl {
    what: &'static str,
    /// The address as given, without any user or password in it.
    shown: String,
    reason: &'static str,
}

/// Checks a base address before the first call: an absolute `http` or
/// `https` URL with a host and without user, password, query or fragment.
/// `what` names it in the error ("the provider address"). Returns it
/// without a trailing slash, as the clients append paths to it.
///
/// ```
/// use paydrop::transport::base_url;
/// assert_eq!(base_url("the provider address", "http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
/// let e = base_url("the provider address", "127.0.0.1:8080").unwrap_err();
/// assert!(e.to_string().contains("http://"), "{e}");
/// let e = base_url("the provider address", "https://me:s3cret@host").unwrap_err();
/// assert!(!e.to_string().contains("s3cret"), "{e}");
/// ```
pub fn base_url(what: &'static str, url: &str) -> Result<String, BadBaseUrl> {
    let bad = |shown: String, reason| BadBaseUrl {
        what,
        shown,
        reason,
    };
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = match reqwest::Url::parse(trimmed) {
        Ok(u) => u,
        Err(_) => {
            return Err(bad(
                crate::mask::card_numbers(trimmed),
                "is not an absolute URL: write it with its scheme, e.g. https://host or \
                 http://127.0.0.1:8080",
            ))
        }
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let mut shown = parsed.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(bad(
            shown.to_string(),
            "carries a user or password: give credentials in their own settings, never in the \
             address",
        ));
    }
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(
            parsed.to_string(),
            "must start with http:// or https://",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad(parsed.to_string(), "has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad(parsed.to_string(), "must not have a query or fragment"));
    }
    Ok(trimmed.to_string())
}

/// How long a call may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Making the connection (TCP and TLS).
    pub connect: Duration,
    /// The longest silence while the answer comes: a huge report or export
    /// streams for long, a stalled one does not.
    pub read: Duration,
    /// The whole call, when it has a bound (an upload); `None` for answers
    /// streamed for as long as they take.
    pub total: Option<Duration>,
}

impl Timeouts {
    /// A call bounded as a whole by `total` (an upload of a part).
    pub fn bounded(total: Duration, connect: Duration) -> Timeouts {
        Timeouts {
            connect,
            read: total,
            total: Some(total),
        }
    }

    /// A call whose answer streams as long as it takes, as long as no
    /// silence lasts `read` (a report, an export).
    pub fn streamed(read: Duration, connect: Duration) -> Timeouts {
        Timeouts {
            connect,
            read,
            total: None,
        }
    }
}

/// Why a client cannot be set up; nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    BaseUrl(#[from] BadBaseUrl),
    #[error("the HTTP client cannot be set up: {0}")]
    Client(String),
}

/// The HTTP client of every provider client: one builder, the timeouts
/// from the config.
pub(crate) fn client(t: Timeouts) -> Result<reqwest::Client, SetupError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(t.connect)
        .read_timeout(t.read);
    if let Some(total) = t.total {
        builder = builder.timeout(total);
    }
    builder
        .build()
        .map_err(|e| SetupError::Client(describe(&e)))
}

/// Whether a failed call cannot have reached the provider: no connection
/// was made (refused, DNS, TLS handshake, connect timeout) or the request
/// could not even be built (an invalid URL or header).
pub(crate) fn never_sent(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_builder()
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
/// header values, and the URL they quote is shown by [`shown_url`], so no
/// secret can leak through here.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), &shown_url(url.as_str()));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// A URL as errors and logs show it: without user, password, query (a
/// signed link's token) or fragment, and without the path secret that
/// follows `/callback/`.
///
/// ```
/// use paydrop::transport::shown_url;
/// assert_eq!(shown_url("https://u:pw@host/x/startdirect?sig=abc#f"), "https://host/x/startdirect");
/// assert_eq!(shown_url("http://127.0.0.1:8081/callback/s3cret"), "http://127.0.0.1:8081/callback/…");
/// ```
pub fn shown_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        // Not a URL: shown only up to where a query or userinfo could start.
        let end = url.find(['?', '#', '@']).unwrap_or(url.len());
        return crate::mask::card_numbers(&url[..end]);
    };
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    parsed.set_query(None);
    parsed.set_fragment(None);
    // The path is the URL's end now: cut it after `/callback/`.
    let mut shown = parsed.to_string();
    if let Some(at) = shown.find("/callback/") {
        shown.truncate(at + "/callback/".len());
        shown.push('…');
    }
    crate::mask::card_numbers(&shown)
}

/// A provider's answer that is not a success, as errors say it: the HTTP
/// status, the request (method and URL, without secrets) and the body's
/// message.
///
/// ```
/// use paydrop::transport::answered;
/// let m = answered(404, "POST", "http://h/wrong/startdirect?k=1", "404 Not Found: ");
/// assert_eq!(m, "HTTP 404 Not Found from POST http://h/wrong/startdirect: (no message in the answer)");
/// ```
pub fn answered(status: u16, method: &str, url: &str, message: &str) -> String {
    let status = reqwest::StatusCode::from_u16(status)
        .map_or_else(|_| status.to_string(), |s| s.to_string());
    // Messages often start with the status already.
    let message = message
        .strip_prefix(status.as_str())
        .map_or(message, |m| m.trim_start_matches(':').trim_start());
    let message = match message.trim() {
        "" => "(no message in the answer)",
        m => m,
    };
    format!("HTTP {status} from {method} {}: {message}", shown_url(url))
}
