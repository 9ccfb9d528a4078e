//! Craftgate's breakdown call,
//! `GET {base}/payment-reporting/v1/payments/{id}/transactions`, signed as
//! every Craftgate client library signs
//! ([`crate::transport::auth::craftgate_signature`]: the base URL and the
//! path with its query, percent-decoded, and the body, empty for a GET). The
//! breakdown's path holds only digits, so every client's URL normalisation
//! agrees on it.

use futures::TryStreamExt;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::{send, Breakdown, ReportError};
use crate::config::{Secret, ENV_CRAFTGATE_API_KEY, ENV_CRAFTGATE_SECRET_KEY};
use crate::report::json::JsonError;
use crate::transport::{self, describe, Auth, RetryPolicy, SetupError, Timeouts};

/// Largest breakdown answer (one payment's items).
const MAX_BREAKDOWN_BYTES: usize = 16 << 20;

/// The breakdown path of a payment.
pub fn transactions_path(payment_id: u64) -> String {
    format!("/payment-reporting/v1/payments/{payment_id}/transactions")
}

/// A client of Craftgate's payment reporting.
#[derive(Clone)]
pub struct CraftgateClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    retry: RetryPolicy,
}

impl CraftgateClient {
    pub fn new(
        base: &str,
        api_key: Secret,
        secret_key: Secret,
        retry: RetryPolicy,
        timeouts: Timeouts,
    ) -> Result<Self, ReportError> {
        Ok(CraftgateClient {
            auth: Auth::CraftgateSigned {
                api_key,
                secret_key,
            },
            http: transport::client(timeouts)?,
            base: transport::base_url("the breakdown address", base).map_err(SetupError::from)?,
            retry,
        })
    }

    /// The signed headers of a GET of `url`.
    fn headers(&self, url: &str) -> Result<HeaderMap, ReportError> {
        self.auth.headers(url).map_err(|_| {
            ReportError::Setup(format!(
                "the Craftgate API key has characters not allowed in a header: check \
                 {ENV_CRAFTGATE_API_KEY} or [breakdown] api_key"
            ))
        })
    }

    /// The breakdown of one payment.
    pub async fn transactions(&self, payment_id: u64) -> Result<Breakdown, ReportError> {
        let url = format!("{}{}", self.base, transactions_path(payment_id));
        let what = format!("payment {payment_id}");
        // Checked once here; every attempt then signs anew (fresh x-rnd-key).
        self.headers(&url)?;
        let answer = send(self.retry, &what, || {
            self.http
                .get(&url)
                .headers(self.headers(&url).unwrap_or_default())
        });
        let response = match answer.await? {
            Ok(r) => r,
            Err(refusal) => {
                let detail = refusal.detail();
                return Err(match refusal.status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ReportError::Unauthorized {
                        service: "Craftgate",
                        detail,
                        hint: format!(
                            "Check the API key and secret key ({ENV_CRAFTGATE_API_KEY}, \
                                 {ENV_CRAFTGATE_SECRET_KEY} or [breakdown] api_key / secret_key) \
                                 and [breakdown] base_url"
                        ),
                    },
                    StatusCode::NOT_FOUND => ReportError::NotFound { what, detail },
                    s => ReportError::Refused {
                        status: s.as_u16(),
                        message: detail,
                    },
                });
            }
        };
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| ReportError::Setup(describe(&e)))?
        {
            if body.len() + chunk.len() > MAX_BREAKDOWN_BYTES {
                return Err(ReportError::Json(JsonError::TooLarge {
                    offset: 0,
                    limit: MAX_BREAKDOWN_BYTES,
                }));
            }
            body.extend_from_slice(&chunk);
        }
        Breakdown::parse(payment_id, &body[..])
    }
}
