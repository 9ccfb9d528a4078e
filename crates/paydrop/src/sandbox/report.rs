//! The sandbox's report endpoints (`../shared/SPEC.md` §4 and §5).
//!
//! | call | answer |
//! |------|--------|
//! | `GET /payment-reporting/v1/payments/{id}/transactions` | 200 `{"data":{"items":[…]}}`: the items of [`breakdown`]; 400 for an id that is not a number; 404 for 0 or an id above [`MAX_PAYMENT_ID`] |
//! | `POST /api/ppg/Report/GetPaymentList` | 200 `{"fail":false,"statusCode":200,"result":[…]}` with [`SandboxConfig::report_rows`] transactions of [`report_payment`], streamed as they are rendered; 400 `{"fail":true,…}` for dates [`crate::report::check_range`] refuses |
//!
//! Both answer 401 without `Authorization: Bearer {report_token}`
//! ([`SandboxConfig::report_token`]); the fault switches delay, 429 and 500
//! apply to them like to `startdirect`.
//!
//! Every value is a pure function of the sandbox seed and the payment id or
//! transaction index, so tests can compute what a report must add up to.
//! With [`SandboxConfig::report_sloppy_numbers`] (the default, like the
//! published sample) the payment report writes decimals with a decimal
//! comma: `0,00`, `12,50`, and `1.234,56` from 1000 up; the totals repeated
//! on every transaction are the exact sums.
//!
//! [`SandboxConfig::report_rows`]: super::SandboxConfig::report_rows
//! [`SandboxConfig::report_token`]: super::SandboxConfig::report_token
//! [`SandboxConfig::report_sloppy_numbers`]: super::SandboxConfig::report_sloppy_numbers

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{Days, NaiveDate};
use futures::{stream, StreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use tracing::info;

use super::{common_faults, Shared};
use crate::report::{check_range, parse_date};

/// Highest payment id the breakdown endpoint knows.
pub const MAX_PAYMENT_ID: u64 = 999_999_999;

/// A JSON value rendered by hand: numbers keep their exact text.
enum Field {
    Text(String),
    Number(String),
    Object(String),
}

fn object(fields: &[(&str, Field)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(*k).to_string());
        out.push(':');
        match v {
            Field::Text(s) => out.push_str(&serde_json::Value::from(s.as_str()).to_string()),
            Field::Number(n) | Field::Object(n) => out.push_str(n),
        }
    }
    out.push('}');
    out
}

fn money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn rng_for(seed: u64, n: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// One item of a generated breakdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakdownItem {
    pub id: u64,
    pub price: Decimal,
    pub paid_price: Decimal,
    pub merchant_commission_rate: Decimal,
    pub merchant_commission_rate_amount: Decimal,
    pub bank_commission_rate: Decimal,
    pub bank_commission_rate_amount: Decimal,
    pub merchant_payout_amount: Decimal,
    pub sub_merchant_member_price: Decimal,
    pub sub_merchant_member_payout_amount: Decimal,
}

/// The breakdown of payment `id`: one to three items that follow every rule
/// of [`crate::report`], except for ids ending in 7, whose last item pays
/// the merchant 0.01 more than the buyer paid (the payout split is off).
pub fn breakdown(seed: u64, id: u64) -> Vec<BreakdownItem> {
    let mut rng = rng_for(seed, id);
    let n = rng.gen_range(1..=3u64);
    (1..=n)
        .map(|k| {
            let price = Decimal::new(rng.gen_range(1_000..=50_000), 2);
            let rate =
                [Decimal::ZERO, Decimal::new(25, 1), Decimal::new(5, 0)][rng.gen_range(0..3)];
            let interest = money(price * rate / Decimal::ONE_HUNDRED);
            let paid = price + interest;
            let bank_rate = [Decimal::new(16, 1), Decimal::new(229, 2)][rng.gen_range(0..2)];
            let bank = money(paid * bank_rate / Decimal::ONE_HUNDRED);
            let sub = money(price * Decimal::new(9, 1));
            let mut merchant = paid - bank - sub;
            if id % 10 == 7 && k == n {
                merchant += Decimal::new(1, 2);
            }
            BreakdownItem {
                id: id * 10 + k,
                price,
                paid_price: paid,
                merchant_commission_rate: rate,
                merchant_commission_rate_amount: interest,
                bank_commission_rate: bank_rate,
                bank_commission_rate_amount: bank,
                merchant_payout_amount: merchant,
                sub_merchant_member_price: sub,
                sub_merchant_member_payout_amount: sub,
            }
        })
        .collect()
}

/// One transaction of the generated payment report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportPayment {
    pub order_id: String,
    pub bank_order_number: String,
    pub amount: Decimal,
    pub commission_rate: Decimal,
    pub commission: Decimal,
    pub net_amount: Decimal,
    /// ISO 4217 numeric.
    pub currency: u16,
    pub masked_card: String,
    pub status: &'static str,
    /// Days after the first sales date of the request (modulo its length).
    pub day: u64,
}

/// Transaction `i` (1-based) of the payment report.
pub fn report_payment(seed: u64, i: u64) -> ReportPayment {
    let mut rng = rng_for(seed, i);
    let amount = Decimal::new(rng.gen_range(100..=2_500_000), 2);
    let commission_rate = [
        Decimal::new(159, 2),
        Decimal::new(199, 2),
        Decimal::new(249, 2),
    ][rng.gen_range(0..3)];
    let commission = money(amount * commission_rate / Decimal::ONE_HUNDRED);
    let currency = match rng.gen_range(0..10) {
        0 => 840,
        1 => 978,
        _ => 949,
    };
    ReportPayment {
        order_id: format!("PZ-{seed}-{i:09}"),
        bank_order_number: format!("{seed}{i:010}"),
        amount,
        commission_rate,
        commission,
        net_amount: amount - commission,
        currency,
        masked_card: format!("454360******{:04}", rng.gen_range(0..10_000)),
        status: if rng.gen_bool(0.95) {
            "SUCCESS"
        } else {
            "FAILED"
        },
        day: rng.gen_range(0..366),
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

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    info!(status = status.as_u16(), message = %message, "sandbox report: refused");
    let body = object(&[
        ("fail", Field::Number("true".into())),
        ("statusCode", Field::Number(status.as_u16().to_string())),
        ("message", Field::Text(message)),
    ]);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The fault switches, then the token: the answer when either refuses.
async fn refused(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    if let Some(faulted) = common_faults(shared).await {
        return Some(faulted);
    }
    let expected = format!("Bearer {}", shared.config.report_token);
    let given = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    (given != Some(expected.as_bytes())).then(|| {
        refuse(
            StatusCode::UNAUTHORIZED,
            "the Authorization header is missing or its Bearer token is not valid",
        )
    })
}

pub(super) async fn transactions(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refused(&shared, &headers).await {
        return refusal;
    }
    let Ok(id) = id.parse::<u64>() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("payment id '{id}' is not a number"),
        );
    };
    if id == 0 || id > MAX_PAYMENT_ID {
        return refuse(StatusCode::NOT_FOUND, format!("payment {id} not found"));
    }
    let n = |d: Decimal| Field::Number(d.to_string());
    let items: Vec<String> = breakdown(shared.config.seed, id)
        .iter()
        .map(|it| {
            object(&[
                ("id", Field::Number(it.id.to_string())),
                ("name", Field::Text(format!("Item {}", it.id))),
                ("externalId", Field::Text(format!("ext-{}", it.id))),
                ("createdDate", Field::Text("2024-10-01T10:00:00".into())),
                ("price", n(it.price)),
                ("paidPrice", n(it.paid_price)),
                ("walletPrice", n(Decimal::ZERO)),
                ("refundablePrice", Field::Text(it.paid_price.to_string())),
                ("merchantCommissionRate", n(it.merchant_commission_rate)),
                (
                    "merchantCommissionRateAmount",
                    n(it.merchant_commission_rate_amount),
                ),
                (
                    "bankCommissionRate",
                    Field::Text(it.bank_commission_rate.to_string()),
                ),
                (
                    "bankCommissionRateAmount",
                    Field::Text(it.bank_commission_rate_amount.to_string()),
                ),
                ("merchantPayoutAmount", n(it.merchant_payout_amount)),
                ("subMerchantMemberId", Field::Number("42".into())),
                ("subMerchantMemberPrice", n(it.sub_merchant_member_price)),
                ("subMerchantMemberPayoutRate", n(Decimal::new(90, 0))),
                (
                    "subMerchantMemberPayoutAmount",
                    n(it.sub_merchant_member_payout_amount),
                ),
                ("transactionStatus", Field::Text("APPROVED".into())),
                (
                    "transactionStatusDate",
                    Field::Text("2024-10-02T10:00:00".into()),
                ),
                (
                    "blockageResolvedDate",
                    Field::Text("2024-10-08T00:00:00".into()),
                ),
                ("refundStatus", Field::Text("NO_REFUND".into())),
                (
                    "payout",
                    Field::Object(object(&[
                        ("paidPrice", n(it.paid_price)),
                        ("currency", Field::Text("TRY".into())),
                        ("merchantPayoutAmount", n(it.merchant_payout_amount)),
                        (
                            "subMerchantMemberPayoutAmount",
                            n(it.sub_merchant_member_payout_amount),
                        ),
                    ])),
                ),
                (
                    "payoutStatus",
                    Field::Object(object(&[
                        ("merchantStatus", Field::Text("WAITING_FOR_PAYOUT".into())),
                        (
                            "subMerchantMemberStatus",
                            Field::Text("WAITING_FOR_PAYOUT".into()),
                        ),
                    ])),
                ),
            ])
        })
        .collect();
    let body = format!(r#"{{"data":{{"items":[{}]}}}}"#, items.join(","));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The request body of the payment report (the sample's `trnDate1` /
/// `trnDate2` are accepted too).
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

/// The sales dates of a request, checked like the client checks them.
fn sales_dates(r: &PaymentListRequest, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), String> {
    let date =
        |name: &str, v: &Option<String>| v.as_deref().map(|v| parse_date(name, v)).transpose();
    let start = date("txnStartDate", &r.txn_start_date)?.unwrap_or(today);
    let end = date("txnEndDate", &r.txn_end_date)?.unwrap_or(today);
    check_range(("txnStartDate", start), ("txnEndDate", end), Some(today))?;
    let pay_start = date("paymentStartDate", &r.payment_start_date)?;
    let pay_end = date("paymentEndDate", &r.payment_end_date)?;
    if let (Some(s), Some(e)) = (pay_start, pay_end) {
        check_range(("paymentStartDate", s), ("paymentEndDate", e), None)?;
    }
    Ok((start, end))
}

/// Transactions rendered per chunk of the streamed answer.
const CHUNK_ROWS: u64 = 256;

pub(super) async fn payment_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = refused(&shared, &headers).await {
        return refusal;
    }
    let request: PaymentListRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PaymentListRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not JSON: {e}"),
                )
            }
        }
    };
    let today = shared.config.as_of.unwrap_or_else(crate::provider_today);
    let (start, end) = match sales_dates(&request, today) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let config = &shared.config;
    let (seed, rows, sloppy_numbers) = (
        config.seed,
        config.report_rows,
        config.report_sloppy_numbers,
    );
    let num = move |d: Decimal| {
        Field::Number(if sloppy_numbers {
            sloppy(d)
        } else {
            d.to_string()
        })
    };
    // The totals come first on every transaction: one pass to add them up.
    let (mut total, mut net, mut commission) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for i in 1..=rows {
        let p = report_payment(seed, i);
        total += p.amount;
        net += p.net_amount;
        commission += p.commission;
    }
    let span = (end - start).num_days().unsigned_abs() + 1;
    let render = move |i: u64| {
        let p = report_payment(seed, i);
        let date = start + Days::new(p.day % span);
        let text = |s: &str| Field::Text(s.to_string());
        object(&[
            ("bankOrderNumber", Field::Text(p.bank_order_number)),
            ("cardBrand", text("VISA")),
            ("cardType", text("CREDIT")),
            ("commission", num(p.commission)),
            ("commissionRate", num(p.commission_rate)),
            ("headCommission", num(Decimal::new(0, 2))),
            ("iban", text("TR330006100519786457841326")),
            ("installmentCount", Field::Number("1".into())),
            ("maskedCardNumber", Field::Text(p.masked_card)),
            ("merchantNumber", text("1000001")),
            ("netAmount", num(p.net_amount)),
            ("payzeeCurrencyCode", Field::Text(p.currency.to_string())),
            ("trnAmount", num(p.amount)),
            ("payzeeTrnDate", Field::Text(format!("{date} 12:00:00"))),
            ("payzeeTrnOrderId", Field::Text(p.order_id)),
            ("tradeName", text("Sandbox Mağaza")),
            ("transactionType", text("SALE")),
            ("trnStatus", text(p.status)),
            ("usedReward", num(Decimal::new(0, 2))),
            ("paymentType", text("ACCOUNT")),
            ("totalCount", Field::Number(rows.to_string())),
            ("totalAmount", num(total)),
            ("totalNetAmount", num(net)),
            ("totalCommissionAmount", num(commission)),
        ])
    };
    let head = Bytes::from_static(br#"{"fail":false,"statusCode":200,"result":["#);
    let chunks = stream::unfold(Some(1u64), move |next| async move {
        let first = next?;
        if first > rows {
            return Some((Bytes::from_static(b"]}"), None));
        }
        let last = rows.min(first + CHUNK_ROWS - 1);
        let mut chunk = String::new();
        for i in first..=last {
            if i > 1 {
                chunk.push(',');
            }
            chunk.push_str(&render(i));
        }
        Some((Bytes::from(chunk), Some(last + 1)))
    });
    let body = stream::once(async move { head })
        .chain(chunks)
        .map(Ok::<_, std::convert::Infallible>);
    info!(rows, %start, %end, "sandbox report: streaming the payment report");
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sloppy_numbers_read_back_exactly() {
        for d in [
            "0.00",
            "12.50",
            "1234.56",
            "1234567.8",
            "-1000.00",
            "999.99",
        ] {
            let d: Decimal = d.parse().unwrap();
            assert_eq!(
                crate::report::json::decimal(&sloppy(d)).unwrap(),
                d,
                "{}",
                sloppy(d)
            );
        }
        assert_eq!(sloppy("1234.56".parse().unwrap()), "1.234,56");
        assert_eq!(sloppy("0.00".parse().unwrap()), "0,00");
    }
}
