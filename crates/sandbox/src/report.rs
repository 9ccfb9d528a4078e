//! Payzee's payment report and merchant login.
//!
//! Pages: "Authentication Merchant"
//! (<https://dev.unitedpayment.com/api-payzee/tr/api/authentication-services/authentication-merchant>)
//! and "Ödeme Raporu"
//! (<https://dev.unitedpayment.com/api-payzee/tr/api/rapor-servisleri/odeme-raporu>, seed 004).
//!
//! | call | answer |
//! |------|--------|
//! | `POST /api/ppg/Securities/authenticationMerchant` `{email, password, lang}` | `{"fail":false,"statusCode":200,"result":{"userId","token"},"count":0,"errorCode":null,"errorDescription":null}` |
//! | `POST /api/ppg/Report/GetPaymentList` with `Authorization: Bearer {token}`, `{txnStartDate?, txnEndDate?, paymentStartDate?, paymentEndDate?}` (`yyyy-MM-dd`; the sample's `trnDate1`/`trnDate2` too) | `{"fail":false,"statusCode":200,"result":[…]}`, streamed as rendered |
//!
//! Failures answer `{"fail":true,"statusCode":N,"result":null,
//! "errorCode","errorDescription"}` with HTTP status N: 401 for wrong
//! credentials or a missing, unknown or expired token, 400 for a body or
//! date that cannot be read. The pages document no token lifetime; the
//! sandbox's is [`Config::token_calls`] calls or [`Config::token_ttl`].
//!
//! Every transaction carries the fields of the page's table and sample
//! (the totals repeated on each, as the sample shows), decimals written
//! with a decimal comma as the sample does (`0,00`, `1.234,56`) unless
//! [`Config::sloppy_numbers`] is off; every tenth transaction has its
//! optional text fields empty or null. All values are a pure function of
//! the seed and the index ([`transaction`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::{Days, NaiveDate};
use futures::{stream, StreamExt};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use crate::countdown::{Busy, Fault};
use crate::mix::mix;
use crate::{Sandbox, Shared};

pub const LOGIN_PATH: &str = "/api/ppg/Securities/authenticationMerchant";
pub const PAYMENT_LIST_PATH: &str = "/api/ppg/Report/GetPaymentList";

/// Settings of this surface.
#[derive(Clone, Debug)]
pub struct Config {
    pub email: String,
    pub password: String,
    /// Calls a token serves before it expires (`None`: no limit).
    pub token_calls: Option<u32>,
    /// How long a token lives (`None`: no limit).
    pub token_ttl: Option<Duration>,
    /// Transactions in every report.
    pub rows: u64,
    pub seed: u64,
    /// Decimal commas as in the published sample.
    pub sloppy_numbers: bool,
    /// Add a field no page names (`sandboxRiskScore`) to every transaction.
    pub unknown_field: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            email: "merchant@sandbox.example".into(),
            password: "sandbox-pass".into(),
            token_calls: None,
            token_ttl: None,
            rows: 1000,
            seed: 1,
            sloppy_numbers: true,
            unknown_field: false,
        }
    }
}

struct Token {
    issued: Instant,
    calls: u32,
}

/// State of this surface while the sandbox runs.
pub(crate) struct State {
    config: Config,
    faults: Arc<Busy>,
    tokens: Mutex<HashMap<String, Token>>,
    logins: Mutex<u32>,
}

impl State {
    pub(crate) fn new(config: Config) -> Self {
        State {
            config,
            faults: Arc::default(),
            tokens: Mutex::default(),
            logins: Mutex::default(),
        }
    }

    fn tokens(&self) -> MutexGuard<'_, HashMap<String, Token>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sandbox {
    /// Successful merchant logins so far.
    pub fn report_logins(&self) -> u32 {
        *self
            .shared
            .report
            .logins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// 429 / 500 switches of the report (the login is not faulted).
    pub fn report_faults(&self) -> Arc<Busy> {
        self.shared.report.faults.clone()
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(LOGIN_PATH, post(login))
        .route(PAYMENT_LIST_PATH, post(payment_list))
}

/// Payzee's failure answer.
struct Failure {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Failure {
            status,
            code,
            description: description.into(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        info!(
            status = self.status.as_u16(),
            code = self.code,
            "sandbox report: refused"
        );
        let body = json!({"fail": true, "statusCode": self.status.as_u16(), "result": null,
            "errorCode": self.code, "errorDescription": self.description});
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(0));
        }
        r
    }
}

#[derive(Deserialize)]
struct LoginRequest {
    email: Option<String>,
    password: Option<String>,
    lang: Option<String>,
}

async fn login(
    extract::State(shared): extract::State<Arc<Shared>>,
    body: Bytes,
) -> Result<Response, Failure> {
    let state = &shared.report;
    let r: LoginRequest = serde_json::from_slice(&body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "1",
            format!("the body is not JSON: {e}"),
        )
    })?;
    // The page: lang is required, TR or EN.
    if !matches!(r.lang.as_deref(), Some("TR" | "EN" | "tr" | "en")) {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "2",
            "lang must be TR or EN",
        ));
    }
    let c = &state.config;
    if r.email.as_deref() != Some(c.email.as_str())
        || r.password.as_deref() != Some(c.password.as_str())
    {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "3",
            "e-mail or password is wrong",
        ));
    }
    let token = format!("sbx-{}", uuid::Uuid::new_v4().simple());
    state.tokens().insert(
        token.clone(),
        Token {
            issued: Instant::now(),
            calls: 0,
        },
    );
    *state.logins.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    let body = json!({"fail": false, "statusCode": 200,
        "result": {"userId": 2_000_000_000_000_417u64, "token": token},
        "count": 0, "errorCode": null, "errorDescription": null});
    Ok(axum::Json(body).into_response())
}

/// Spends one call of the bearer's token.
fn authorize(state: &State, headers: &HeaderMap) -> Result<(), Failure> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let Some(given) = given else {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "4",
            "no bearer token: log in first",
        ));
    };
    let mut tokens = state.tokens();
    let Some(token) = tokens.get_mut(&given) else {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "5",
            "the token is not valid",
        ));
    };
    let c = &state.config;
    let spent = c.token_calls.is_some_and(|n| token.calls >= n);
    let old = c.token_ttl.is_some_and(|ttl| token.issued.elapsed() >= ttl);
    if spent || old {
        tokens.remove(&given);
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "6",
            "the token has expired: log in again",
        ));
    }
    token.calls += 1;
    Ok(())
}

/// The request body; the sample's `trnDate1`/`trnDate2` are accepted too.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentListRequest {
    #[serde(alias = "trnDate1")]
    txn_start_date: Option<String>,
    #[serde(alias = "trnDate2")]
    txn_end_date: Option<String>,
    payment_start_date: Option<String>,
    payment_end_date: Option<String>,
}

fn date(name: &str, v: &Option<String>) -> Result<Option<NaiveDate>, Failure> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .filter(|_| s.len() == 10)
            .map(Some)
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "7",
                    format!("{name} '{s}' is not yyyy-MM-dd"),
                )
            }),
    }
}

/// One generated transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub order_id: String,
    pub bank_order_number: String,
    pub amount: Decimal,
    pub commission_rate: Decimal,
    pub commission: Decimal,
    pub net_amount: Decimal,
    /// ISO 4217 numeric, as text (the page's `payzeeCurrencyCode`).
    pub currency: &'static str,
    pub masked_card: String,
    pub status: &'static str,
    /// Days after the first sales day asked for (modulo the range).
    pub day: u64,
    /// Optional text fields are empty (or null) in this one.
    pub sparse: bool,
}

/// Transaction `i` (1-based).
pub fn transaction(seed: u64, i: u64) -> Transaction {
    let h = mix(seed, i);
    let amount = Decimal::new((100 + h % 2_500_000) as i64, 2);
    let commission_rate = [
        Decimal::new(159, 2),
        Decimal::new(199, 2),
        Decimal::new(249, 2),
    ][(h >> 24) as usize % 3];
    let commission = (amount * commission_rate / Decimal::ONE_HUNDRED).round_dp(2);
    // The page's table: TL 949, USD 840, EUR 978.
    let currency = match (h >> 28) % 10 {
        0 => "840",
        1 => "978",
        _ => "949",
    };
    Transaction {
        order_id: format!("PZ-{seed}-{i:09}"),
        bank_order_number: format!("{seed}{i:010}"),
        amount,
        commission_rate,
        commission,
        net_amount: amount - commission,
        currency,
        masked_card: format!("454360******{:04}", (h >> 32) % 10_000),
        status: if (h >> 40).is_multiple_of(20) {
            "FAILED"
        } else {
            "SUCCESS"
        },
        day: (h >> 44) % 366,
        sparse: i.is_multiple_of(10),
    }
}

/// A decimal as the published sample writes it: `1.234,56`, `0,00`.
fn sloppy(d: Decimal) -> String {
    let plain = d.abs().to_string();
    let (int, frac) = plain.split_once('.').unwrap_or((&plain, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    let sign = if d.is_sign_negative() && !d.is_zero() {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped},{frac}")
    }
}

/// A JSON object written by hand so that numbers keep their exact (and
/// possibly sloppy) text.
fn object(fields: &[(&str, String)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(*k).to_string());
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

/// Transactions rendered per chunk of the streamed answer.
const CHUNK: u64 = 256;

async fn payment_list(
    extract::State(shared): extract::State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let state = &shared.report;
    match state.faults.take() {
        Some(Fault::TooMany(_)) => {
            return Err(Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "429",
                "too many requests",
            ))
        }
        Some(Fault::ServerError) => {
            return Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500",
                "sandbox fault",
            ))
        }
        None => {}
    }
    authorize(state, &headers)?;
    let request: PaymentListRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PaymentListRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "1",
                format!("the body is not JSON: {e}"),
            )
        })?
    };
    let start = date("txnStartDate", &request.txn_start_date)?;
    let end = date("txnEndDate", &request.txn_end_date)?;
    for (a, b, what) in [
        (start, end, "txnStartDate is after txnEndDate"),
        (
            date("paymentStartDate", &request.payment_start_date)?,
            date("paymentEndDate", &request.payment_end_date)?,
            "paymentStartDate is after paymentEndDate",
        ),
    ] {
        if let (Some(a), Some(b)) = (a, b) {
            if a > b {
                return Err(Failure::new(StatusCode::BAD_REQUEST, "8", what));
            }
        }
    }
    let first = start
        .or(end)
        .unwrap_or_else(|| NaiveDate::from_ymd_opt(2024, 1, 1).expect("a day"));
    let span = end.map_or(30, |e| (e - first).num_days().unsigned_abs() + 1);
    let c = state.config.clone();
    let num = move |d: Decimal| {
        if c.sloppy_numbers {
            sloppy(d)
        } else {
            d.to_string()
        }
    };
    // The totals come first on every transaction: one pass to add them up.
    let (mut total, mut net, mut commission) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for i in 1..=c.rows {
        let t = transaction(c.seed, i);
        total += t.amount;
        net += t.net_amount;
        commission += t.commission;
    }
    let (seed, rows, unknown) = (c.seed, c.rows, c.unknown_field);
    let render = move |i: u64| {
        let t = transaction(seed, i);
        let day = first + Days::new(t.day % span);
        let text = |s: &str| Value::from(s).to_string();
        let optional = |s: &str| {
            if t.sparse {
                "\"\"".to_string()
            } else {
                text(s)
            }
        };
        let mut fields = vec![
            ("bankOrderNumber", text(&t.bank_order_number)),
            ("cardBrand", text("VISA")),
            ("cardLoyaltyBrand", optional("Bonus")),
            ("cardTransferStatus", text("TRANSFERRED")),
            ("cardType", text("CREDIT")),
            ("commission", num(t.commission)),
            ("commissionRate", num(t.commission_rate)),
            ("eftStatus", optional("SENT")),
            ("headCommission", num(Decimal::new(0, 2))),
            ("headCommissionRate", num(Decimal::new(0, 1))),
            ("headIban", optional("TR000000000000000000000009")),
            ("headTradeName", optional("Sandbox Holding")),
            ("iban", text("TR330006100519786457841326")),
            ("installmentCount", "1".to_string()),
            ("issuerBankName", text("Demo Bank")),
            ("maskedCardNumber", text(&t.masked_card)),
            ("merchantNumber", text("1000001")),
            ("netAmount", num(t.net_amount)),
            (
                "payzeeAuthorizationNumber",
                text(&format!("A{:05}", i % 100_000)),
            ),
            ("payzeeCreateDate", text(&format!("{day}T12:00:00"))),
            ("payzeeCurrencyCode", text(t.currency)),
            ("payzeeDiscountRateAcq", num(Decimal::new(0, 2))),
            ("payzeeMerchantName", text("Sandbox Mağaza")),
            ("payzeeModifyDate", text(&format!("{day}T12:00:05"))),
            ("payzeePfAcquiredBankName", text("Demo Acquirer")),
            ("trnAmount", num(t.amount)),
            ("payzeeTrnDate", text(&format!("{day}T12:00:00"))),
            ("payzeeTrnOrderId", text(&t.order_id)),
            ("tradeName", text("Sandbox Mağaza Ltd")),
            ("transactionType", text("SALE")),
            ("trnStatus", text(t.status)),
            ("usedReward", num(Decimal::new(0, 2))),
            ("paymentType", text("T+1")),
            (
                "productId",
                if t.sparse { "null".into() } else { text("p-1") },
            ),
            (
                "productName",
                if t.sparse {
                    "null".into()
                } else {
                    text("Kupa")
                },
            ),
            ("totalCount", rows.to_string()),
            ("totalAmount", num(total)),
            ("totalNetAmount", num(net)),
            ("totalCommissionAmount", num(commission)),
            ("totalHeadCommissionAmount", num(Decimal::new(0, 2))),
        ];
        if unknown {
            fields.push(("sandboxRiskScore", text("low")));
        }
        object(&fields)
    };
    let head = Bytes::from_static(br#"{"fail":false,"statusCode":200,"result":["#);
    let chunks = stream::unfold(Some(1u64), move |next| async move {
        let from = next?;
        if from > rows {
            return Some((Bytes::from_static(b"]}"), None));
        }
        let to = rows.min(from + CHUNK - 1);
        let mut chunk = String::new();
        for i in from..=to {
            if i > 1 {
                chunk.push(',');
            }
            chunk.push_str(&render(i));
        }
        Some((Bytes::from(chunk), Some(to + 1)))
    });
    let body = stream::once(async move { head })
        .chain(chunks)
        .map(Ok::<_, std::convert::Infallible>);
    info!(rows, "sandbox report: streaming the payment report");
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sloppy_numbers_look_like_the_sample() {
        assert_eq!(sloppy(Decimal::new(123_456, 2)), "1.234,56");
        assert_eq!(sloppy(Decimal::new(0, 2)), "0,00");
        assert_eq!(sloppy(Decimal::new(-100_000, 2)), "-1.000,00");
    }
}
