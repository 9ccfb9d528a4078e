//! Craftgate's request signing and the breakdown call,
//! `GET {base}/payment-reporting/v1/payments/{id}/transactions`.
//!
//! Every Craftgate client library signs the same way
//! (craftgate-php-client `src/Util/Signature.php`, craftgate-python-client
//! `craftgate/utils/hash_generator.py`, craftgate-java-client
//! `HashGenerator.java`; `docs/providers/receiving.md` §2.1): headers
//! `x-api-key`, `x-rnd-key` (fresh per request), `x-auth-version: v1` and
//! `x-signature` = base64(sha256(url + apiKey + secretKey + rnd + body)),
//! where `url` is the base URL and the path with its query, percent-decoded,
//! and `body` the exact JSON sent (empty for a GET). The breakdown's path
//! holds only digits, so every client's URL normalisation agrees on it.

use std::time::Duration;

use base64::Engine;
use futures::TryStreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::{provider_message, send, Breakdown, ReportError};
use crate::config::{Secret, ENV_CRAFTGATE_API_KEY, ENV_CRAFTGATE_SECRET_KEY};
use crate::report::json::JsonError;
use crate::transport::describe;
use crate::transport::RetryPolicy;

/// Largest breakdown answer (one payment's items).
const MAX_BREAKDOWN_BYTES: usize = 16 << 20;

/// The breakdown path of a payment.
pub fn transactions_path(payment_id: u64) -> String {
    format!("/payment-reporting/v1/payments/{payment_id}/transactions")
}

/// Craftgate's `x-signature` of a request to `url` (already
/// percent-decoded) with `body` (empty for GET).
///
/// ```
/// // craftgate-php-client unit-tests/Craftgate/Tests/Util/SignatureTest.php
/// use paydrop::report::craftgate::sign;
/// assert_eq!(
///     sign("http://localhost:8000/installment/v1/installments", "api-key", "secret-key", "1234", ""),
///     "uK7LkWOEzVH+Px/YOiMuSXvPkHLR4KoA7PuykXcYovQ="
/// );
/// ```
pub fn sign(url: &str, api_key: &str, secret_key: &str, rnd: &str, body: &str) -> String {
    let mut h = Sha256::new();
    for part in [url, api_key, secret_key, rnd, body] {
        h.update(part.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A client of Craftgate's payment reporting.
#[derive(Clone)]
pub struct CraftgateClient {
    http: reqwest::Client,
    base: String,
    api_key: Secret,
    secret_key: Secret,
    retry: RetryPolicy,
}

impl CraftgateClient {
    pub fn new(
        base: &str,
        api_key: Secret,
        secret_key: Secret,
        retry: RetryPolicy,
    ) -> Result<Self, ReportError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| ReportError::Setup(describe(&e)))?;
        Ok(CraftgateClient {
            http,
            base: crate::transport::base_url("the breakdown address", base)
                .map_err(|e| ReportError::Setup(e.to_string()))?,
            api_key,
            secret_key,
            retry,
        })
    }

    /// The signed headers of a GET of `url`.
    fn headers(&self, url: &str) -> Result<HeaderMap, ReportError> {
        let rnd = uuid::Uuid::new_v4().to_string();
        let signature = sign(
            url,
            self.api_key.expose(),
            self.secret_key.expose(),
            &rnd,
            "",
        );
        let bad = |what: &str| {
            ReportError::Setup(format!(
                "the Craftgate {what} has characters not allowed in a header: check \
                 {ENV_CRAFTGATE_API_KEY} / {ENV_CRAFTGATE_SECRET_KEY} or [breakdown]"
            ))
        };
        let mut h = HeaderMap::new();
        let mut key = HeaderValue::from_str(self.api_key.expose()).map_err(|_| bad("API key"))?;
        key.set_sensitive(true);
        h.insert("x-api-key", key);
        h.insert("x-rnd-key", HeaderValue::from_str(&rnd).expect("a UUID"));
        h.insert("x-auth-version", HeaderValue::from_static("v1"));
        let mut sig = HeaderValue::from_str(&signature).expect("base64");
        sig.set_sensitive(true);
        h.insert("x-signature", sig);
        Ok(h)
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
                let detail = provider_message(&refusal.text);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_test_vectors_hold() {
        // craftgate-php-client unit-tests/Craftgate/Tests/Util/SignatureTest.php
        let base = "http://localhost:8000";
        let s = |path: &str, body: &str| {
            sign(
                &format!("{base}{path}"),
                "api-key",
                "secret-key",
                "1234",
                body,
            )
        };
        assert_eq!(
            s("/installment/v1/installments", ""),
            "uK7LkWOEzVH+Px/YOiMuSXvPkHLR4KoA7PuykXcYovQ="
        );
        assert_eq!(
            s(
                "/payment/v1/cards",
                r#"{"cardUserKey":"de050909-39a9-473c-a81a-f186dd55cfef"}"#
            ),
            "kQm62AfjXCw6rS6QBCLXta9tV1GqD/SXsAlYP+cEhG8="
        );
        // Signed decoded: /onboarding/v1/members?name=Zeytinya%C4%9F%C4%B1%20%C3%9Cretim
        assert_eq!(
            s("/onboarding/v1/members?name=Zeytinyağı Üretim", ""),
            "vxYA+5LH3F4m8tHQA2LpVBwzVgCqGRHue4XAgcVjjYQ="
        );
        // craftgate-java-client HashGeneratorTest.java, no body (the stored
        // copy of the test writes the expected value in capitals).
        let java = sign(
            "http://api.craftgate.io/onboarding/v1/buyers",
            "api-key",
            "secret-key",
            "rand-2010",
            "",
        );
        assert!(java.eq_ignore_ascii_case("IBHUJ+OEQOI9WP6AJMXWKNYH2/BIZ568Q3SPMF6X8PA="));
        // docs/providers/receiving.md §2.1, own vector.
        assert_eq!(
            sign(
                "https://sandbox-api.craftgate.io/payment-reporting/v1/payments/4242/transactions",
                "demo-api-key",
                "demo-secret-key",
                "rnd-0001",
                ""
            ),
            "FaQ9lye99xfPZ0cOEiAEnPtp+uCzcWa5HPGHv7uYARo="
        );
    }
}
