//! Payzee's merchant login and payment report call.
//!
//! Pages: "Authentication Merchant"
//! (<https://dev.unitedpayment.com/api-payzee/tr/api/authentication-services/authentication-merchant>)
//! and "Ödeme Raporu"
//! (<https://dev.unitedpayment.com/api-payzee/tr/api/rapor-servisleri/odeme-raporu>).
//!
//! 1. `POST {auth_base}/api/ppg/Securities/authenticationMerchant` with
//!    `{email, password, lang}`; the token is read from `result.token` (the
//!    page's sample) or a top-level `token` (its table). The login host is
//!    the integration mail's `authenticationBaseUrl`, which may differ from
//!    the report's `paymentBaseUrl`: both are configurable.
//! 2. `POST {base}/api/ppg/Report/GetPaymentList` with `Authorization:
//!    Bearer {token}` and the dates asked for (`txnStartDate`, `txnEndDate`,
//!    `paymentStartDate`, `paymentEndDate`, all optional, `yyyy-MM-dd`).
//!
//! The token's lifetime is not documented: it is kept for the client's
//! life, and a call answered 401 logs in once more and is sent once more.
//! The password, the e-mail and the token are never logged.

use std::io::{self, Write};
use std::sync::Mutex;

use chrono::NaiveDate;
use futures::TryStreamExt;
use reqwest::StatusCode;

use super::json::{self, Value};
use super::payments::{write_payments, Format, PaymentSummary};
use super::{provider_message, send, text, ReportError};
use crate::config::{Secret, ENV_REPORT_EMAIL, ENV_REPORT_PASSWORD};
use crate::transport::{self, describe, read_capped, Auth, RetryPolicy, SetupError, Timeouts};

/// Path of the merchant login.
pub const LOGIN_PATH: &str = "/api/ppg/Securities/authenticationMerchant";
/// Path of the payment report.
pub const PAYMENT_LIST_PATH: &str = "/api/ppg/Report/GetPaymentList";

/// The dates of a payment report request; every one is optional, as the
/// page publishes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentQuery {
    pub txn: (Option<NaiveDate>, Option<NaiveDate>),
    pub payment: (Option<NaiveDate>, Option<NaiveDate>),
}

/// Parses a `yyyy-MM-dd` date given as `name`.
pub fn parse_date(name: &str, value: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .ok()
        .filter(|_| value.trim().len() == 10)
        .ok_or_else(|| format!("{name} '{value}' is not a date: write yyyy-MM-dd, e.g. 2021-10-01"))
}

impl PaymentQuery {
    /// Checks the dates (as typed) before anything is sent: each is a
    /// date, a range runs forward, and a sales date is not after `today`
    /// (Istanbul). Payment dates may be ahead: settlements are scheduled.
    pub fn new(
        txn: (Option<&str>, Option<&str>),
        payment: (Option<&str>, Option<&str>),
        today: NaiveDate,
    ) -> Result<PaymentQuery, ReportError> {
        let dates = || -> Result<PaymentQuery, String> {
            let d = |name: &str, v: Option<&str>| v.map(|v| parse_date(name, v)).transpose();
            let q = PaymentQuery {
                txn: (d("--from", txn.0)?, d("--to", txn.1)?),
                payment: (
                    d("--payment-from", payment.0)?,
                    d("--payment-to", payment.1)?,
                ),
            };
            for ((a, b), (an, bn)) in [
                (q.txn, ("--from", "--to")),
                (q.payment, ("--payment-from", "--payment-to")),
            ] {
                if let (Some(a), Some(b)) = (a, b) {
                    if a > b {
                        return Err(format!(
                            "{an} {a} is after {bn} {b}: the range must run forward"
                        ));
                    }
                }
            }
            if let Some(to) = q.txn.1.or(q.txn.0).filter(|d| *d > today) {
                return Err(format!(
                    "the sales date {to} is in the future (today is {today} in Istanbul): no sales exist yet"
                ));
            }
            Ok(q)
        };
        dates().map_err(|e| ReportError::Dates(format!("{e}; nothing was sent")))
    }

    /// The request body: the page's table names, only the dates given.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        for (name, d) in [
            ("txnStartDate", self.txn.0),
            ("txnEndDate", self.txn.1),
            ("paymentStartDate", self.payment.0),
            ("paymentEndDate", self.payment.1),
        ] {
            if let Some(d) = d {
                body.insert(name.into(), d.format("%Y-%m-%d").to_string().into());
            }
        }
        body.into()
    }
}

/// The merchant login.
#[derive(Clone)]
pub struct Login {
    pub email: String,
    pub password: Secret,
    /// `TR` or `EN`.
    pub lang: String,
}

/// A client of Payzee's report service.
pub struct PayzeeClient {
    http: reqwest::Client,
    base: String,
    auth_base: String,
    login: Login,
    retry: RetryPolicy,
    /// The token of the last login.
    token: Mutex<Option<Secret>>,
}

impl PayzeeClient {
    /// `base` serves the report, `auth_base` the login.
    pub fn new(
        base: &str,
        auth_base: &str,
        login: Login,
        retry: RetryPolicy,
        timeouts: Timeouts,
    ) -> Result<Self, ReportError> {
        Ok(PayzeeClient {
            http: transport::client(timeouts)?,
            base: transport::base_url("the payment report address", base)
                .map_err(SetupError::from)?,
            auth_base: transport::base_url("the report login address", auth_base)
                .map_err(SetupError::from)?,
            login,
            retry,
            token: Mutex::new(None),
        })
    }

    fn unauthorized(detail: String) -> ReportError {
        ReportError::Unauthorized {
            service: "Payzee",
            detail,
            hint: format!(
                "Check the merchant login ({ENV_REPORT_EMAIL} / {ENV_REPORT_PASSWORD} or [report] \
                 email / password) and the addresses ([report] auth_base_url, base_url)"
            ),
        }
    }

    /// Logs in and keeps the token.
    async fn log_in(&self) -> Result<Secret, ReportError> {
        let url = format!("{}{LOGIN_PATH}", self.auth_base);
        let body = serde_json::json!({
            "email": self.login.email,
            "password": self.login.password.expose(),
            "lang": self.login.lang,
        });
        let answer = send(self.retry, "the merchant login", || {
            self.http.post(&url).json(&body)
        })
        .await?;
        let text = match answer {
            Ok(r) => read_capped(r)
                .await
                .map_err(|e| ReportError::Setup(describe(&e)))?,
            Err(refusal) if refusal.status == StatusCode::UNAUTHORIZED => {
                return Err(Self::unauthorized(refusal.detail()))
            }
            Err(refusal) => {
                return Err(ReportError::Refused {
                    status: refusal.status.as_u16(),
                    message: format!("the login: {}", refusal.detail()),
                })
            }
        };
        let v = json::Reader::new(text.as_bytes(), text.len() + 1).value()?;
        let failed = v.get("fail") == Some(&Value::Bool(true))
            || v.get("statusCode")
                .and_then(Value::text)
                .is_some_and(|s| s != "200");
        let token = [text_of(&v, "result.token"), text_of(&v, "token")]
            .into_iter()
            .flatten()
            .next();
        match token {
            Some(t) if !failed => {
                tracing::info!("logged in to the payment report");
                let token = Secret::new(t);
                *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
                Ok(token)
            }
            _ => Err(Self::unauthorized(format!(
                "the login failed: {}",
                provider_message(&text)
            ))),
        }
    }

    /// The cached token, or a new one.
    async fn token(&self) -> Result<Secret, ReportError> {
        let cached = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match cached {
            Some(t) => Ok(t),
            None => self.log_in().await,
        }
    }

    /// Streams the payment report of `query` into `out` as `format`;
    /// returns what was read and the writer.
    pub async fn payments<W: Write + Send + 'static>(
        &self,
        query: &PaymentQuery,
        format: Format,
        out: W,
    ) -> Result<(PaymentSummary, W), ReportError> {
        let url = format!("{}{PAYMENT_LIST_PATH}", self.base);
        let body = query.body();
        let mut relogged = false;
        let response = loop {
            let bearer = Auth::Bearer(self.token().await?)
                .headers(&url)
                .map_err(|_| ReportError::Setup("the report token is not a valid header".into()))?;
            let answer = send(self.retry, "the payment report", || {
                self.http.post(&url).headers(bearer.clone()).json(&body)
            })
            .await?;
            match answer {
                Ok(r) => break r,
                // The token expired (its lifetime is not published): one
                // new login, one more call.
                Err(refusal) if refusal.status == StatusCode::UNAUTHORIZED && !relogged => {
                    tracing::info!("the report token was refused; logging in again");
                    relogged = true;
                    *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Err(refusal) if refusal.status == StatusCode::UNAUTHORIZED => {
                    return Err(Self::unauthorized(format!(
                        "a fresh token was refused too: {}",
                        refusal.detail()
                    )))
                }
                Err(refusal) => {
                    return Err(ReportError::Refused {
                        status: refusal.status.as_u16(),
                        message: refusal.detail(),
                    })
                }
            }
        };
        let stream = response.bytes_stream().map_err(io::Error::other);
        let input = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        tokio::task::spawn_blocking(move || {
            let mut out = out;
            let summary = write_payments(io::BufReader::new(input), format, &mut out)?;
            Ok((summary, out))
        })
        .await
        .map_err(|e| ReportError::Setup(e.to_string()))?
    }
}

fn text_of(v: &Value, path: &str) -> Option<String> {
    Some(text(v, path)).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_optional_and_only_given_ones_are_sent() {
        let today = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let q = PaymentQuery::new((None, None), (None, None), today).unwrap();
        assert_eq!(q.body(), serde_json::json!({}));
        let q = PaymentQuery::new(
            (Some("2024-10-01"), None),
            (None, Some("2024-11-01")),
            today,
        )
        .unwrap();
        assert_eq!(
            q.body(),
            serde_json::json!({"txnStartDate": "2024-10-01", "paymentEndDate": "2024-11-01"})
        );
        let e = PaymentQuery::new(
            (Some("2024-10-02"), Some("2024-10-01")),
            (None, None),
            today,
        )
        .unwrap_err();
        assert!(e.to_string().contains("must run forward"), "{e}");
    }
}
