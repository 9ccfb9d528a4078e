//! Paywall's response envelope, the refusals written in it, and the API key
//! headers every Paywall call carries. Shared by the Paywall surfaces
//! ([`crate::bulk`], and the marketplace trigger when it wants them).
//!
//! The envelope, as the startdirect page's example answer shows it
//! (https://developer.paywall.one/odeme-servisi/18.-toplu-islem-yontemi/1.-odeme/3.-dosya,
//! seed 002): `{"ErrorCodeType":1,"ErrorMessage":null,"ErrorCode":0,
//! "Result":true,"Message":"…","Body":{…}}`. `ErrorCode` 0 with `Result`
//! true is success; anything else carries `Message`. `ErrorCodeType` and
//! `ErrorMessage` are never explained; the sandbox writes them as the
//! example does (1 and null).

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// `ErrorCode` values the sandbox answers with. The names and numbers are
/// those of Paywall's official .NET SDK (`Models/Common/ErrorCodes.cs`,
/// github.com/paywallone/PayWall.NetCore, listed in
/// `docs/providers/paywall.md` §8.2); no page lists bulk-specific codes, so
/// which of them a refusal carries is the sandbox's own choice, said beside
/// each refusal.
pub mod code {
    pub const SUCCESS: i64 = 0;
    pub const UNSUCCESSFUL: i64 = 1;
    pub const INVALID_DATA: i64 = 2;
    pub const NO_DATA: i64 = 3;
    pub const HEADER_MISSING: i64 = 4;
    pub const INVALID_CARD_NUMBER: i64 = 50;
    pub const AMOUNT: i64 = 51;
    pub const INVALID_INSTALLMENT: i64 = 52;
    pub const INVALID_CURRENCY: i64 = 53;
    pub const UNEXPECTED_MERCHANT_UNIQUE_CODE: i64 = 101;
    pub const UNEXPECTED_CARD_EXPIRED: i64 = 106;
    pub const PAYMENT_ERROR: i64 = 111;
    pub const PAYMENT_AMOUNT_NOT_CONVENIENT: i64 = 112;
    pub const MERCHANT_UNIQUE_CODE_ALREADY_EXIST: i64 = 119;
    pub const CALLBACK_ADDRESS_MUST_BE_FILLED: i64 = 163;
    pub const INVALID_CALLBACK_ADDRESS: i64 = 166;
    /// The SDK's HTTP-mirroring codes (`BadRequest = 400` …).
    pub const BAD_REQUEST: i64 = 400;
    pub const UNAUTHORIZED: i64 = 401;
    pub const UNSUPPORTED_MEDIA_TYPE: i64 = 415;
    pub const TOO_MANY_REQUESTS: i64 = 429;
    pub const INTERNAL_EXCEPTION: i64 = 500;
}

/// One answer in Paywall's envelope; `Body` is null on refusals.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope<T> {
    /// Always 1, as in the page's examples (not explained anywhere).
    pub error_code_type: i64,
    /// Always null, as in the page's examples (not explained anywhere).
    pub error_message: Option<String>,
    /// 0 on success, else one of [`code`].
    pub error_code: i64,
    /// True on success.
    pub result: bool,
    /// Information or the reason of a refusal.
    pub message: String,
    /// The answer's content; null on refusals.
    pub body: Option<T>,
}

impl<T> Envelope<T> {
    /// A success carrying `body`.
    pub fn ok(message: impl Into<String>, body: T) -> Self {
        Envelope {
            error_code_type: 1,
            error_message: None,
            error_code: code::SUCCESS,
            result: true,
            message: message.into(),
            body: Some(body),
        }
    }
}

/// A refused call: the HTTP status, and the envelope's `ErrorCode` and
/// `Message`. Messages never hold a secret or a full card number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// The envelope's `ErrorCode`.
    pub code: i64,
    /// The envelope's `Message`: what was wrong and what to do.
    pub message: String,
    /// Seconds for a `Retry-After` header (429 only).
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal whose status is an HTTP error and whose `ErrorCode`
    /// mirrors it (the SDK has `BadRequest = 400`, `Unauthorized = 401`…).
    pub fn http(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code: i64::from(status.as_u16()),
            message: message.into(),
            retry_after: None,
        }
    }

    /// A refusal of the request's content, answered with `status` (the
    /// bulk config's `refusal_status`, HTTP 200 by default: a client must
    /// read `Result`, not only the status).
    pub fn content(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// HTTP 500: the sandbox itself failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Refusal::http(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let envelope = Envelope::<()> {
            error_code_type: 1,
            error_message: None,
            error_code: self.code,
            result: false,
            message: self.message,
            body: None,
        };
        let mut answer = (self.status, Json(envelope)).into_response();
        if let Some(secs) = self.retry_after {
            answer
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        answer
    }
}

/// A key or other secret: it prints as `***`, so it cannot reach a log by
/// accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must compare or use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Writes an amount as an exact JSON number (`125.50`), the way the
/// provider's examples show amounts, never through a float.
pub(crate) fn decimal_number<S: serde::Serializer>(
    amount: &rust_decimal::Decimal,
    s: S,
) -> Result<S::Ok, S::Error> {
    let raw = serde_json::value::RawValue::from_string(amount.to_string())
        .map_err(serde::ser::Error::custom)?;
    raw.serialize(s)
}

/// The merchant's API keys, as every Paywall call sends them in the
/// headers `apikeypublic` and `apiclientpublic`
/// (https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/1.-payment/3.-file).
#[derive(Clone, Debug)]
pub struct ApiKeys {
    /// The `apikeypublic` header's value.
    pub api_key: Secret,
    /// The `apiclientpublic` header's value.
    pub api_client: Secret,
}

impl Default for ApiKeys {
    fn default() -> Self {
        ApiKeys {
            api_key: "sandbox-key".into(),
            api_client: "sandbox-client".into(),
        }
    }
}

/// The header of the merchant's public key.
pub const HEADER_API_KEY: &str = "apikeypublic";
/// The header of the merchant's public client.
pub const HEADER_API_CLIENT: &str = "apiclientpublic";

impl ApiKeys {
    /// 401 unless both headers carry the configured keys: `HeaderMissing`
    /// (4, SDK) when one is absent, `Unauthorized` (401, SDK) when wrong.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let (Some(key), Some(client)) =
            (headers.get(HEADER_API_KEY), headers.get(HEADER_API_CLIENT))
        else {
            return Err(Refusal {
                code: code::HEADER_MISSING,
                ..Refusal::http(
                    StatusCode::UNAUTHORIZED,
                    format!("the headers {HEADER_API_KEY} and {HEADER_API_CLIENT} are required"),
                )
            });
        };
        if key.as_bytes() == self.api_key.expose().as_bytes()
            && client.as_bytes() == self.api_client.expose().as_bytes()
        {
            Ok(())
        } else {
            Err(Refusal::http(
                StatusCode::UNAUTHORIZED,
                format!("{HEADER_API_KEY} / {HEADER_API_CLIENT} are not valid for this merchant"),
            ))
        }
    }
}
