//! The provider client for `startdirect`: one HTTP call for one part of a
//! validated file, its rows streamed from disk as they are sent (see
//! the crate's `sent` module) through the compressor into the request, and the
//! provider's answer sorted by what it says about the money: accepted,
//! rejected, not processed, never sent, or ambiguous.
//!
//! A streamed body cannot be cloned, so a retry is a new call that reads the
//! file again (PITFALLS.md). Retries, backoff and the ledger are the caller's
//! ([`crate::submit`]); this module makes exactly one attempt.
//!
//! The request follows the provider's "3. File" page
//! (<https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/1.-payment/3.-file>,
//! docs/providers/paywall.md §6): `FileFormat` 5 always, `CallbackAddress`
//! only when there is one, `Amount` a plain decimal with `.`, and by default
//! the `File` part compressed on its own (`application/gzip`, `name.gz`),
//! as in the provider's own GZip example; whole-body `Content-Encoding`,
//! which no page documents, only when asked for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::multipart::{Form, Part};
use reqwest::{Body, StatusCode};
use rust_decimal::Decimal;

use crate::api::{field, BulkStart, Envelope, HEADER_API_CLIENT, HEADER_API_KEY, STARTDIRECT_PATH};
use crate::compress::{compress_stream, Codec, Compression};
use crate::config::Secret;
use crate::pattern::FILE_FORMAT_TXT;
use crate::sent::{part_stream, PartSource};
use crate::transport::{
    self, answered, describe, never_sent, read_capped, retry_after, Auth, SetupError, Timeouts,
};

/// The SDK's `MerchantUniqueCodeAlreadyExist` (docs/providers/paywall.md
/// §6.6, §8.2): on a resend it means the first attempt may have arrived.
const CODE_ALREADY_EXISTS: i64 = 119;

/// The merchant's credentials for the provider.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub api_key: Secret,
    pub api_client: Secret,
}

/// Where compression applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// The whole multipart body, with `Content-Encoding` (no page documents
    /// it: only on request).
    WholeBody,
    /// Only the `File` part, sent as `name.gz` / `name.br` (the default, as
    /// in the provider's example).
    FilePart,
}

/// The provider's `startdirect` client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

/// One part of a validated file, ready to send.
#[derive(Clone, Debug)]
pub struct PartRequest {
    /// Where the part's rows are, and what they hashed to when validated.
    pub source: PartSource,
    /// File name sent in the `File` part (sanitised before it goes into the
    /// part's header).
    pub file_name: String,
    pub file_pattern: u16,
    pub currency_id: u32,
    pub installment: u32,
    pub callback_address: Option<String>,
    pub half_2d: bool,
    pub amount: Decimal,
    pub merchant_unique_code: String,
    pub compression: Compression,
    pub mode: BodyMode,
}

/// The raw answer to one JSON call ([`Client::post_json`], [`Client::get`]).
#[derive(Clone, Debug)]
pub struct JsonReply {
    pub status: StatusCode,
    /// Where the answer came from, as errors show it
    /// ([`crate::transport::shown_url`]).
    pub url: String,
    pub text: String,
    pub retry_after: Option<Duration>,
}

/// A JSON call without an answer.
#[derive(Clone, Debug)]
pub struct NoReply {
    pub message: String,
    /// False only when nothing can have reached the provider (see
    /// `transport::never_sent`).
    pub maybe_received: bool,
}

/// How the provider answered one attempt, sorted by what it means for the
/// money.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `ErrorCode` 0 and `Result` true.
    Accepted { body: BulkStart, raw: String },
    /// A definite no: nothing was created at the provider.
    Rejected { status: u16, message: String },
    /// The provider said it did not process the request (429, 503, 408):
    /// safe to send again, honouring `Retry-After`.
    NotProcessed {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Nothing reached the provider: the connection was refused, the name
    /// did not resolve, the TLS handshake failed, or the URL is invalid.
    /// Safe to send again.
    NeverSent { message: String },
    /// Bytes were sent and no definite answer came (a timeout, a dropped
    /// connection, 500/502/504, an unreadable or incomplete answer, "this
    /// MerchantUniqueCode already exists"): the provider may have the batch.
    Ambiguous {
        status: Option<u16>,
        message: String,
    },
    /// paydrop stopped the request before its end because the rows it read
    /// were not the ones validated (or could not be read): the provider
    /// never had a complete request.
    Aborted { message: String },
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`); a call may take
    /// `timeout` as a whole.
    pub fn new(
        base: &str,
        credentials: Credentials,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Client, SetupError> {
        Ok(Client {
            auth: Auth::Keys(vec![
                (HEADER_API_KEY, credentials.api_key),
                (HEADER_API_CLIENT, credentials.api_client),
            ]),
            http: transport::client(Timeouts::bounded(timeout, connect_timeout))?,
            base: transport::base_url("the provider address", base)?,
        })
    }

    /// The credential headers of a call to `url`.
    fn auth_headers(&self, url: &str) -> Result<HeaderMap, NoReply> {
        self.auth.headers(url).map_err(|e| NoReply {
            message: e.to_string(),
            maybe_received: false,
        })
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
        let url = format!("{}{path}", self.base);
        let headers = self.auth_headers(&url)?;
        json_reply(build(&self.http, &url).headers(headers)).await
    }

    /// One GET of `path` with the credential headers, `headers` and `query`.
    pub async fn get(
        &self,
        path: &str,
        headers: &[(&'static str, &str)],
        query: &[(&str, &str)],
    ) -> Result<JsonReply, NoReply> {
        let url = format!("{}{path}", self.base);
        let mut all = self.auth_headers(&url)?;
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|_| NoReply {
                message: format!("{name} '{value}' is not allowed in a header"),
                maybe_received: false,
            })?;
            all.insert(HeaderName::from_static(name), value);
        }
        json_reply(self.http.get(&url).headers(all).query(query)).await
    }

    /// One GET of the base address, without credentials, to learn at start
    /// whether the provider can be reached: any HTTP answer says it can.
    /// Returns the status, or why no answer came.
    pub async fn probe(&self) -> Result<u16, String> {
        match self.http.get(&self.base).send().await {
            Ok(r) => Ok(r.status().as_u16()),
            Err(e) => Err(describe(&e)),
        }
    }

    /// The base address, as logs show it.
    pub fn shown_base(&self) -> String {
        crate::transport::shown_url(&self.base)
    }

    /// One attempt to submit `part`. `sent` counts the bytes of rows read
    /// into the request (for progress).
    pub async fn start_direct(&self, part: &PartRequest, sent: Arc<AtomicU64>) -> Answer {
        let url = format!("{}{STARTDIRECT_PATH}", self.base);
        let headers = match self.auth_headers(&url) {
            Ok(h) => h,
            Err(e) => {
                return Answer::NeverSent { message: e.message };
            }
        };
        let (rows, verdict) = part_stream(part.source.clone());
        let rows = rows.inspect_ok(move |chunk: &Bytes| {
            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        });
        let mut form = Form::new();
        for (name, value) in part.text_fields() {
            form = form.text(name, value);
        }
        let name = header_file_name(&part.file_name);
        let codec = part.compression.codec;
        let request = match (part.mode, codec) {
            (BodyMode::WholeBody, Codec::Gzip | Codec::Brotli) => {
                let file_part = Part::stream(Body::wrap_stream(rows))
                    .file_name(name)
                    .mime_str("text/plain")
                    .expect("a valid mime type");
                let form = form.part(field::FILE, file_part);
                let content_type = format!("multipart/form-data; boundary={}", form.boundary());
                let body = compress_stream(Box::pin(form.into_stream()), part.compression);
                self.http
                    .post(&url)
                    .headers(headers)
                    .header(CONTENT_TYPE, content_type)
                    .header(
                        CONTENT_ENCODING,
                        codec.content_encoding().unwrap_or("identity"),
                    )
                    .body(Body::wrap_stream(body))
            }
            _ => {
                // The provider's example: `application/gzip`, `name.gz`.
                // Brotli has no example: its common type and extension.
                let (name, mime) = match codec {
                    Codec::None => (name, "text/plain"),
                    Codec::Gzip => (format!("{name}{}", codec.suffix()), "application/gzip"),
                    Codec::Brotli => (format!("{name}{}", codec.suffix()), "application/x-brotli"),
                };
                let body = Body::wrap_stream(compress_stream(rows, part.compression));
                let file_part = Part::stream(body)
                    .file_name(name)
                    .mime_str(mime)
                    .expect("a valid mime type");
                self.http
                    .post(&url)
                    .headers(headers)
                    .multipart(form.part(field::FILE, file_part))
            }
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let stopped = verdict.lock().unwrap_or_else(|e| e.into_inner()).take();
                return match stopped {
                    Some(message) => Answer::Aborted { message },
                    None if never_sent(&e) => Answer::NeverSent {
                        message: describe(&e),
                    },
                    None => Answer::Ambiguous {
                        status: None,
                        message: describe(&e),
                    },
                };
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        match read_capped(response).await {
            Ok(text) => located(classify(status, &text, retry_after), &url),
            Err(e) => Answer::Ambiguous {
                status: Some(status.as_u16()),
                message: format!("{status}, then the answer broke off: {}", describe(&e)),
            },
        }
    }
}

/// Sends a JSON call and reads its (small) answer.
async fn json_reply(request: reqwest::RequestBuilder) -> Result<JsonReply, NoReply> {
    let no_reply = |e: reqwest::Error| NoReply {
        maybe_received: !never_sent(&e),
        message: describe(&e),
    };
    let response = request.send().await.map_err(no_reply)?;
    let status = response.status();
    let url = crate::transport::shown_url(response.url().as_str());
    let retry_after = retry_after(response.headers());
    let text = read_capped(response).await.map_err(no_reply)?;
    Ok(JsonReply {
        status,
        url,
        text,
        retry_after,
    })
}

/// A file name fit for the `File` part's `Content-Disposition`: reqwest
/// escapes `"` and `\` but leaves CR and LF raw, so a name holding them could
/// add headers to the part. [`crate::names::sanitise`] replaces what breaks a
/// line; quotes and backslashes go too, as a receiver may unescape them
/// differently.
fn header_file_name(name: &str) -> String {
    let clean: String = crate::names::sanitise(name)
        .chars()
        .map(|c| if matches!(c, '"' | '\\') { '?' } else { c })
        .take(200)
        .collect();
    if !clean.chars().any(char::is_alphanumeric) {
        "payments.txt".into()
    } else {
        clean
    }
}

impl PartRequest {
    /// The multipart text fields, in the provider's documented order; the
    /// `File` part comes last, so that the request cannot be complete before
    /// every row was read and checked.
    fn text_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            // Always 5 (TXT), the only format the provider accepts today.
            (field::FILE_FORMAT, FILE_FORMAT_TXT.to_string()),
            (field::FILE_PATTERN, self.file_pattern.to_string()),
            (field::CURRENCY_ID, self.currency_id.to_string()),
            (field::INSTALLMENT, self.installment.to_string()),
        ];
        // Optional on the English page: omitted rather than sent empty.
        if let Some(url) = self
            .callback_address
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        {
            fields.push((field::CALLBACK_ADDRESS, url.to_string()));
        }
        fields.extend([
            (field::HALF_2D, self.half_2d.to_string()),
            // rust_decimal prints plain digits with `.`, never an exponent.
            (field::AMOUNT, self.amount.to_string()),
            (
                field::MERCHANT_UNIQUE_CODE,
                self.merchant_unique_code.clone(),
            ),
        ]);
        fields
    }
}

/// Sorts an answer by what it says about the money. Both the HTTP status
/// and the envelope count: a 200 with `Result: false` is a refusal
/// (docs/providers/paywall.md §8.1).
fn classify(status: StatusCode, text: &str, retry_after: Option<Duration>) -> Answer {
    let envelope: Option<Envelope<serde_json::Value>> = serde_json::from_str(text).ok();
    let message = envelope
        .as_ref()
        .and_then(|e| e.message.clone())
        .unwrap_or_else(|| snippet(text));
    // 429 and 503 say the request was not handled; 408 that it was not
    // even read whole (RFC 9110 §15.5.9, §15.6.4, §15.5.20).
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::REQUEST_TIMEOUT
    ) {
        return Answer::NotProcessed {
            status: status.as_u16(),
            message: format!("{status}: {message}"),
            retry_after,
        };
    }
    // A 500, 502 or 504 may come after the batch was created.
    if status.is_server_error() {
        return Answer::Ambiguous {
            status: Some(status.as_u16()),
            message: format!("{status}: {message}"),
        };
    }
    let Some(envelope) = envelope else {
        return if status.is_success() {
            // A 2xx we cannot read may mean "accepted".
            Answer::Ambiguous {
                status: Some(status.as_u16()),
                message: format!("{status} with an unreadable answer: {}", snippet(text)),
            }
        } else {
            Answer::Rejected {
                status: status.as_u16(),
                message: format!("{status}: {message}"),
            }
        };
    };
    if envelope.error_code == CODE_ALREADY_EXISTS {
        return Answer::Ambiguous {
            status: Some(status.as_u16()),
            message: format!(
                "ErrorCode {CODE_ALREADY_EXISTS}: {message} (the provider already knows this \
                 MerchantUniqueCode: an earlier attempt may have arrived)"
            ),
        };
    }
    if !status.is_success() {
        return Answer::Rejected {
            status: status.as_u16(),
            message,
        };
    }
    if !envelope.is_success() {
        return Answer::Rejected {
            status: status.as_u16(),
            message: format!("ErrorCode {}: {message}", envelope.error_code),
        };
    }
    match envelope
        .body
        .and_then(|b| serde_json::from_value::<BulkStart>(b).ok())
    {
        Some(body) => Answer::Accepted {
            body,
            raw: text.to_string(),
        },
        None => Answer::Ambiguous {
            status: Some(status.as_u16()),
            message: "the provider reported success without a readable BulkPaymentId".into(),
        },
    }
}

/// A refusal or an unclear answer names its status and the address it came
/// from: a wrong base path is then plain to see.
fn located(answer: Answer, url: &str) -> Answer {
    match answer {
        Answer::Rejected { status, message } => Answer::Rejected {
            status,
            message: answered(status, "POST", url, &message),
        },
        Answer::Ambiguous {
            status: Some(status),
            message,
        } => Answer::Ambiguous {
            status: Some(status),
            message: answered(status, "POST", url, &message),
        },
        Answer::NotProcessed {
            status,
            message,
            retry_after,
        } => Answer::NotProcessed {
            status,
            message: answered(status, "POST", url, &message),
            retry_after,
        },
        other => other,
    }
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(300).collect();
    t.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_answers_by_what_they_say_about_the_money() {
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
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert!(matches!(
                classify(status, "", Some(Duration::from_secs(2))),
                Answer::NotProcessed { retry_after: Some(d), .. } if d.as_secs() == 2
            ));
        }
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::GATEWAY_TIMEOUT,
        ] {
            assert!(matches!(
                classify(status, "", None),
                Answer::Ambiguous {
                    status: Some(_),
                    ..
                }
            ));
        }
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, r#"{"ErrorCode":401,"Result":false,"Message":"bad key"}"#, None),
            Answer::Rejected { status: 401, ref message } if message == "bad key"
        ));
        assert!(matches!(
            classify(StatusCode::OK, "<html>", None),
            Answer::Ambiguous { .. }
        ));
        let success_without_id = r#"{"ErrorCode":0,"Result":true,"Message":"ok","Body":null}"#;
        assert!(matches!(
            classify(StatusCode::OK, success_without_id, None),
            Answer::Ambiguous { .. }
        ));
        let exists = r#"{"ErrorCode":119,"Result":false,"Message":"MerchantUniqueCode already exist","Body":{"x":1}}"#;
        assert!(matches!(
            classify(StatusCode::OK, exists, None),
            Answer::Ambiguous { ref message, .. } if message.contains("may have arrived")
        ));
    }

    #[test]
    fn text_fields_follow_the_published_request() {
        let dir = tempfile::tempdir().unwrap();
        let registry = crate::pattern::Registry::load(None).unwrap();
        let mut part = PartRequest {
            source: PartSource {
                path: dir.path().join("f.csv"),
                pattern: registry.get(1).unwrap().clone(),
                byte_start: 0,
                rows: 1,
                content_sha256: String::new(),
            },
            file_name: "f.csv".into(),
            file_pattern: 1,
            currency_id: 1,
            installment: 1,
            callback_address: None,
            half_2d: false,
            amount: "1234567.50".parse().unwrap(),
            merchant_unique_code: "m".into(),
            compression: Compression::none(),
            mode: BodyMode::FilePart,
        };
        let names = |p: &PartRequest| -> Vec<&'static str> {
            p.text_fields().into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(
            names(&part),
            [
                "FileFormat",
                "FilePattern",
                "CurrencyId",
                "Installment",
                "Half2D",
                "Amount",
                "MerchantUniqueCode"
            ]
        );
        let fields = part.text_fields();
        assert_eq!(fields[0].1, "5");
        assert_eq!(fields[5].1, "1234567.50");
        part.callback_address = Some(String::new());
        assert!(
            !names(&part).contains(&"CallbackAddress"),
            "an empty address is omitted"
        );
        part.callback_address = Some("https://m.example/cb".into());
        assert!(names(&part).contains(&"CallbackAddress"));
    }

    #[test]
    fn file_names_cannot_add_header_lines() {
        assert_eq!(
            header_file_name("pay\r\nX-Evil: 1\".csv"),
            "pay??X-Evil: 1?.csv"
        );
        assert_eq!(header_file_name("a\u{0}b\tc\u{7f}\\d.csv"), "a?b?c??d.csv");
        assert_eq!(header_file_name("\r\n"), "payments.txt");
        assert_eq!(header_file_name("ödemeler.csv"), "ödemeler.csv");
    }
}
