//! Authentication, one place per scheme: keys in headers of their own, a
//! Bearer token, and Craftgate's signed headers. Each client only names its
//! scheme and keys. Every credential goes out as a sensitive header value,
//! which keeps it out of reqwest's and hyper's debug output; the errors name
//! the header, never its value.

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// How a service authenticates a request.
#[derive(Clone, Debug)]
pub(crate) enum Auth {
    /// Each key in a header of its own (the provider's `apikeypublic` and
    /// `apiclientpublic`).
    Keys(Vec<(&'static str, Secret)>),
    /// `Authorization: Bearer {token}` (the export API; Payzee after its
    /// login).
    Bearer(Secret),
    /// Craftgate's signature (see [`craftgate_signature`]): `x-api-key`,
    /// `x-rnd-key` (fresh per request), `x-auth-version: v1` and
    /// `x-signature`.
    CraftgateSigned { api_key: Secret, secret_key: Secret },
}

/// A credential that cannot be sent as a header value.
#[derive(Debug, thiserror::Error)]
#[error("{header} holds characters not allowed in an HTTP header (a stray line break?)")]
pub struct BadHeader {
    /// The header it was meant for.
    pub header: &'static str,
}

impl Auth {
    /// The headers of one request to `url` (the full URL, query included,
    /// as sent) without a body. Called once per attempt: a signature is
    /// fresh every time.
    pub(crate) fn headers(&self, url: &str) -> Result<HeaderMap, BadHeader> {
        let mut h = HeaderMap::new();
        match self {
            Auth::Keys(keys) => {
                for (name, secret) in keys {
                    h.insert(*name, sensitive(name, secret.expose())?);
                }
            }
            Auth::Bearer(token) => {
                let value = format!("Bearer {}", token.expose());
                h.insert(AUTHORIZATION, sensitive("Authorization", &value)?);
            }
            Auth::CraftgateSigned {
                api_key,
                secret_key,
            } => {
                let rnd = uuid::Uuid::new_v4().to_string();
                let signature =
                    craftgate_signature(url, api_key.expose(), secret_key.expose(), &rnd, "");
                h.insert("x-api-key", sensitive("x-api-key", api_key.expose())?);
                h.insert(
                    HeaderName::from_static("x-rnd-key"),
                    HeaderValue::from_str(&rnd).expect("a UUID"),
                );
                h.insert("x-auth-version", HeaderValue::from_static("v1"));
                h.insert("x-signature", sensitive("x-signature", &signature)?);
            }
        }
        Ok(h)
    }
}

fn sensitive(header: &'static str, value: &str) -> Result<HeaderValue, BadHeader> {
    let mut v = HeaderValue::from_str(value).map_err(|_| BadHeader { header })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Craftgate's `x-signature` of a request to `url` (already
/// percent-decoded) with `body` (empty for GET):
/// base64(sha256(url + apiKey + secretKey + rnd + body)), as every Craftgate
/// client library signs (craftgate-php-client `src/Util/Signature.php`,
/// craftgate-python-client `craftgate/utils/hash_generator.py`,
/// craftgate-java-client `HashGenerator.java`;
/// `docs/providers/receiving.md` §2.1).
///
/// ```
/// // craftgate-php-client unit-tests/Craftgate/Tests/Util/SignatureTest.php
/// use paydrop::transport::auth::craftgate_signature;
/// assert_eq!(
///     craftgate_signature("http://localhost:8000/installment/v1/installments", "api-key", "secret-key", "1234", ""),
///     "uK7LkWOEzVH+Px/YOiMuSXvPkHLR4KoA7PuykXcYovQ="
/// );
/// ```
pub fn craftgate_signature(
    url: &str,
    api_key: &str,
    secret_key: &str,
    rnd: &str,
    body: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [url, api_key, secret_key, rnd, body] {
        h.update(part.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_craftgate_vectors_hold() {
        // craftgate-php-client unit-tests/Craftgate/Tests/Util/SignatureTest.php
        let base = "http://localhost:8000";
        let s = |path: &str, body: &str| {
            craftgate_signature(
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
        let java = craftgate_signature(
            "http://api.craftgate.io/onboarding/v1/buyers",
            "api-key",
            "secret-key",
            "rand-2010",
            "",
        );
        assert!(java.eq_ignore_ascii_case("IBHUJ+OEQOI9WP6AJMXWKNYH2/BIZ568Q3SPMF6X8PA="));
        // docs/providers/receiving.md §2.1, own vector.
        assert_eq!(
            craftgate_signature(
                "https://sandbox-api.craftgate.io/payment-reporting/v1/payments/4242/transactions",
                "demo-api-key",
                "demo-secret-key",
                "rnd-0001",
                ""
            ),
            "FaQ9lye99xfPZ0cOEiAEnPtp+uCzcWa5HPGHv7uYARo="
        );
    }

    #[test]
    fn every_scheme_marks_its_credentials_sensitive_and_names_only_the_header() {
        let signed = Auth::CraftgateSigned {
            api_key: Secret::new("k"),
            secret_key: Secret::new("s"),
        }
        .headers("http://127.0.0.1/x")
        .unwrap();
        assert!(signed["x-api-key"].is_sensitive() && signed["x-signature"].is_sensitive());
        assert_eq!(signed["x-auth-version"], "v1");
        let url = "http://127.0.0.1/x";
        let rnd = signed["x-rnd-key"].to_str().unwrap();
        assert_eq!(
            signed["x-signature"].to_str().unwrap(),
            craftgate_signature(url, "k", "s", rnd, "")
        );
        let bearer = Auth::Bearer(Secret::new("t")).headers(url).unwrap();
        assert_eq!(bearer[AUTHORIZATION], "Bearer t");
        assert!(bearer[AUTHORIZATION].is_sensitive());
        let keys = Auth::Keys(vec![("apikeypublic", Secret::new("a"))])
            .headers(url)
            .unwrap();
        assert!(keys["apikeypublic"].is_sensitive());
        let e = Auth::Bearer(Secret::new("t0p\nS3CR3T"))
            .headers(url)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Authorization") && !e.contains("S3CR3T"), "{e}");
    }
}
