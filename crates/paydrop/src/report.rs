//! Reading the providers' reports: Craftgate's breakdown of one payment
//! (`paydrop report transactions`, [`breakdown`] over [`craftgate`]) and
//! Payzee's payment report of a date range (`paydrop report payments`,
//! [`payments`] over [`payzee`]). Each service has its own address and
//! credentials:
//!
//! - Craftgate signs every request with the merchant's API key and secret
//!   key ([`crate::transport::auth::craftgate_signature`]); it takes no
//!   Bearer token.
//! - Payzee issues a token from a merchant login (e-mail, password, lang),
//!   on a login host of its own; paydrop logs in, keeps the token for the
//!   run, and logs in once more when a call answers 401.
//!
//! Credentials are [`Secret`](crate::config::Secret)s sent as sensitive
//! header values (or in the login body): they never reach a log or an
//! error. 429 and 5xx answers and failed connections are retried with
//! backoff by the shared retry loop (`send`), honouring `Retry-After`. The providers' own error
//! text (`errorCode` / `errorDescription`) is shown as it comes, card
//! numbers masked.

pub mod breakdown;
pub mod craftgate;
pub mod json;
pub mod payments;
pub mod payzee;

use std::io;

use reqwest::StatusCode;

use crate::mask;
use crate::transport::{
    describe, read_capped, retry_after, shown_url, Effect, Retry, RetryPolicy, SetupError, Step,
};
use json::{JsonError, Value};

pub use breakdown::{Breakdown, Flag, Item};
pub use craftgate::CraftgateClient;
pub use payments::{write_payments, Format, PaymentSummary, MAX_TRANSACTION_BYTES};
pub use payzee::{PaymentQuery, PayzeeClient, PAYMENT_LIST_PATH};

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{service} refused the credentials (HTTP 401): {detail}. {hint}")]
    Unauthorized {
        service: &'static str,
        detail: String,
        hint: String,
    },
    #[error("{what} was not found at the provider (HTTP 404): {detail}")]
    NotFound { what: String, detail: String },
    #[error("the provider refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("no answer after {attempts} attempts ({last}); try again later")]
    GaveUp { attempts: u32, last: String },
    #[error("the provider reported a failure: {0}")]
    Provider(String),
    #[error("{0}")]
    Dates(String),
    #[error("the report cannot be read: {0}")]
    Json(#[from] JsonError),
    #[error("transaction {index}{order}: {reason}")]
    Field {
        index: u64,
        order: String,
        reason: String,
    },
    #[error("writing the report: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Client(#[from] SetupError),
}

/// A definite answer other than success: its status, text and where it
/// came from.
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub text: String,
    /// The method and address (without query or credentials).
    pub at: String,
}

impl Refusal {
    /// The provider's message and the call it answered, for an error.
    pub fn detail(&self) -> String {
        format!("{} (from {})", provider_message(&self.text), self.at)
    }
}

/// Sends the request `build` makes through the shared retry loop until it
/// gets a definite answer: a success (`Ok(Ok)`), or a status other than 429
/// / 5xx (`Ok(Err)`). Every call here reads (a login, a report), so 429,
/// 5xx, failed connections and timeouts are retried; other transport errors
/// end the call.
pub(crate) async fn send(
    retry: RetryPolicy,
    what: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Result<reqwest::Response, Refusal>, ReportError> {
    let mut calls = Retry::new(retry, Effect::Idempotent, what);
    loop {
        if calls.next().await.is_none() {
            let e = calls.ended();
            return Err(ReportError::GaveUp {
                attempts: e.attempts,
                last: e.last,
            });
        }
        // Built once: the method is named in a refusal, the request sent.
        let (client, request) = build().build_split();
        let request = request.map_err(|e| ReportError::Setup(describe(&e)))?;
        let method = request.method().clone();
        let step = match client.execute(request).await {
            Ok(r) if r.status().is_success() => Step::Done(Ok(r)),
            Ok(r)
                if r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error() =>
            {
                Step::Ambiguous {
                    why: format!("HTTP {}", r.status().as_u16()),
                    retry_after: retry_after(r.headers()),
                }
            }
            Ok(r) => {
                let status = r.status();
                let at = format!("{method} {}", shown_url(r.url().as_str()));
                let text = read_capped(r).await.unwrap_or_default();
                Step::Done(Err(Refusal { status, text, at }))
            }
            Err(e) if e.is_connect() || e.is_timeout() => Step::failed(&e, describe(&e)),
            Err(e) => return Err(ReportError::Setup(describe(&e))),
        };
        if let Some(answer) = calls.judge(step) {
            return Ok(answer);
        }
    }
}

/// The provider's error text: `errorCode` / `errorDescription` (Payzee at
/// the top, Craftgate inside `errors`), else `responseCode` /
/// `responseMessage` or `message`, else the start of the text; card numbers
/// masked.
pub fn provider_message(text: &str) -> String {
    let v = json::Reader::new(text.as_bytes(), text.len() + 1)
        .value()
        .ok();
    let pair = |v: &Value, code: &str, description: &str| {
        let c = v.get(code).and_then(Value::text);
        let d = v.get(description).and_then(Value::text);
        match (c, d) {
            (None, None) => None,
            (c, d) => Some(format!(
                "{code} {}: {}",
                c.as_deref().unwrap_or("-"),
                d.as_deref().unwrap_or("no description")
            )),
        }
    };
    let found = v.as_ref().and_then(|v| {
        v.get("errors")
            .and_then(|e| pair(e, "errorCode", "errorDescription"))
            .or_else(|| pair(v, "errorCode", "errorDescription"))
            .or_else(|| pair(v, "responseCode", "responseMessage"))
            .or_else(|| {
                v.get("message")
                    .or_else(|| v.get("Message"))
                    .and_then(Value::text)
            })
    });
    let text = found.unwrap_or_else(|| text.chars().take(300).collect());
    mask::card_numbers(text.trim())
}

/// A text member of an object (`a.b` walks into `a`); empty when absent.
pub(crate) fn text(v: &Value, path: &str) -> String {
    member(v, path).and_then(Value::text).unwrap_or_default()
}

/// A decimal member, read exactly (sloppy commas included).
pub(crate) fn decimal(v: &Value, path: &str) -> Result<Option<rust_decimal::Decimal>, String> {
    member(v, path)
        .and_then(Value::text)
        .map(|t| json::decimal(&t).map_err(|e| format!("{path} {e}")))
        .transpose()
}

fn member<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_messages_of_both_services() {
        assert_eq!(
            provider_message(r#"{"errors":{"errorCode":"10","errorDescription":"Unauthorized"}}"#),
            "errorCode 10: Unauthorized"
        );
        assert_eq!(
            provider_message(
                r#"{"fail":true,"statusCode":401,"errorCode":"6","errorDescription":"expired"}"#
            ),
            "errorCode 6: expired"
        );
        assert_eq!(provider_message("plain"), "plain");
    }
}
