//! The bulk inquiry: `GET /api/paywall/payment/bulk/payment/query` (totals
//! and a page of payments) and `GET …/query/summary` (totals only), keyed by
//! the batch `MerchantUniqueCode`. They answer from what the sandbox
//! recorded, so a client can learn whether an upload whose answer it lost
//! arrived.
//!
//! Sources: "4. Query"
//! (https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/4.-query)
//! and "5. Query / Summary"
//! (https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/5.-query-summary).
//! The pages list `merchantuniquecode`, `pageSize` (at most 1000) and the
//! page number (spelt `geNumber`) beside the key headers without saying
//! where they go; the official .NET SDK sends such parameters as headers,
//! a third-party client as a query string: the sandbox reads both (a header
//! wins), names case-insensitive, the page number as `pageNumber` or
//! `geNumber`, counted from 1.
//!
//! The answer is bare, as the page's example (`{"Result":true,
//! "TotalPaymentCount":6,…}`), or inside the envelope's `Body` when
//! configured. Before a batch is finished its payments have status 1
//! (Created) and count in none of the success, unsuccessful or unprocessed
//! totals; the sandbox has no disaster, so "unprocessed" stays 0.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rust_decimal::Decimal;
use serde::Serialize;

use super::outcome::{final_status, outcome, status, ACTIVITY_SALE};
use super::pattern::Tail;
use super::store::Batch;
use crate::conn::Cut;
use crate::envelope::{code, decimal_number, Envelope, Refusal};
use crate::{faults, Shared};

pub(crate) const PATH: &str = "/api/paywall/payment/bulk/payment/query";
pub(crate) const SUMMARY_PATH: &str = "/api/paywall/payment/bulk/payment/query/summary";

/// Most payments on one page (the query page: "Max: 1000").
const MAX_PAGE_SIZE: u64 = 1000;

/// The root of both answers; the paging keys only on the detailed one.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Inquiry {
    result: bool,
    total_payment_count: u64,
    #[serde(serialize_with = "decimal_number")]
    total_payment_amount: Decimal,
    total_success_payment_count: u64,
    #[serde(serialize_with = "decimal_number")]
    total_success_payment_amount: Decimal,
    total_unsuccessful_payment_count: u64,
    #[serde(serialize_with = "decimal_number")]
    total_unsuccessful_payment_amount: Decimal,
    total_unprocessed_payment_count: u64,
    #[serde(serialize_with = "decimal_number")]
    total_unprocessed_payment_amount: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_pages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payments: Option<Vec<Payment>>,
}

/// One item of `Payments`: the keys the page shows (its example is cut
/// after `ErrorMes…`, read as `ErrorMessage`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Payment {
    /// The row's own `merchantUniqueCode`.
    merchant_unique_code: String,
    payment_id: i64,
    #[serde(serialize_with = "decimal_number")]
    amount: Decimal,
    status: u8,
    /// Sale; the "Payment Types" table is not public, the sandbox writes
    /// the activity type of a sale (1).
    scope: u8,
    error_message: Option<String>,
}

/// The request's parameters, from headers or the query string.
struct Params<'a> {
    headers: &'a HeaderMap,
    query: HashMap<String, String>,
}

impl<'a> Params<'a> {
    fn new(headers: &'a HeaderMap, query: HashMap<String, String>) -> Self {
        let query = query
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Params { headers, query }
    }

    fn get(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| {
            self.headers
                .get(*n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| self.query.get(*n).cloned())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        })
    }
}

/// Both inquiry routes: `PAGED` is the detailed query, else the summary.
pub(crate) async fn handler<const PAGED: bool>(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(cut): ConnectInfo<Cut>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = Params::new(&headers, query);
    faults::guard(&shared.faults, cut, body, |_| async {
        match inquire(&shared, &params, PAGED).await {
            Ok(inquiry) if shared.bulk.config.inquiry_in_envelope => {
                Json(Envelope::ok("", inquiry)).into_response()
            }
            Ok(inquiry) => Json(inquiry).into_response(),
            Err(refusal) => refusal.into_response(),
        }
    })
    .await
}

async fn inquire(
    shared: &Arc<Shared>,
    params: &Params<'_>,
    paged: bool,
) -> Result<Inquiry, Refusal> {
    let bulk = &shared.bulk;
    let config = &bulk.config;
    config.keys.check(params.headers)?;
    let refuse = |code, message: String| Refusal::content(config.refusal_status, code, message);
    let code = params
        .get(&["merchantuniquecode"])
        .ok_or_else(|| refuse(code::INVALID_DATA, "merchantuniquecode is required".into()))?;
    let page = if paged {
        let number = |names: &[&str], what: &str| {
            let v = params
                .get(names)
                .ok_or_else(|| refuse(code::INVALID_DATA, format!("{what} is required")))?;
            v.parse::<u64>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                refuse(
                    code::INVALID_DATA,
                    format!("{what} must be a whole number from 1"),
                )
            })
        };
        let size = number(&["pagesize"], "pageSize")?;
        if size > MAX_PAGE_SIZE {
            return Err(refuse(
                code::INVALID_DATA,
                format!("pageSize {size} is more than {MAX_PAGE_SIZE}"),
            ));
        }
        Some((number(&["pagenumber", "genumber"], "pageNumber")?, size))
    } else {
        None
    };
    let batches = bulk.store.by_code(&code);
    if batches.is_empty() {
        return Err(refuse(
            code::NO_DATA,
            "no bulk payment has this MerchantUniqueCode".into(),
        ));
    }
    let mut inquiry = totals(&batches);
    if let Some((number, size)) = page {
        let (seed, rate) = (config.seed, config.decline_rate);
        let payments = tokio::task::spawn_blocking(move || {
            payments(
                &batches,
                (number - 1).saturating_mul(size),
                size,
                seed,
                rate,
            )
        })
        .await
        .map_err(|e| Refusal::internal(e.to_string()))?
        .map_err(|e| Refusal::internal(format!("cannot read the stored file: {e}")))?;
        inquiry.page_number = Some(number);
        inquiry.page_size = Some(size);
        inquiry.total_pages = Some(inquiry.total_payment_count.div_ceil(size));
        inquiry.payments = Some(payments);
    }
    Ok(inquiry)
}

/// The totals over every batch with the code (more than one only under
/// `DuplicateCode::PayAgain`).
fn totals(batches: &[Arc<Batch>]) -> Inquiry {
    let mut inquiry = Inquiry {
        result: true,
        total_payment_count: 0,
        total_payment_amount: Decimal::ZERO,
        total_success_payment_count: 0,
        total_success_payment_amount: Decimal::ZERO,
        total_unsuccessful_payment_count: 0,
        total_unsuccessful_payment_amount: Decimal::ZERO,
        total_unprocessed_payment_count: 0,
        total_unprocessed_payment_amount: Decimal::ZERO,
        page_number: None,
        page_size: None,
        total_pages: None,
        payments: None,
    };
    for b in batches {
        inquiry.total_payment_count += b.record.rows;
        inquiry.total_payment_amount += b.record.amount;
        if let Some((_, t)) = b.finished.get() {
            inquiry.total_success_payment_count += t.success_count;
            inquiry.total_success_payment_amount += t.success_amount;
            inquiry.total_unsuccessful_payment_count += t.failed_count;
            inquiry.total_unsuccessful_payment_amount += t.failed_amount;
        }
    }
    inquiry
}

/// Payments `skip..skip + take` of the batches, in order.
fn payments(
    batches: &[Arc<Batch>],
    mut skip: u64,
    take: u64,
    seed: u64,
    decline_rate: f64,
) -> io::Result<Vec<Payment>> {
    let mut out = Vec::new();
    for b in batches {
        let rows = b.record.rows;
        if skip >= rows {
            skip -= rows;
            continue;
        }
        let finished = b.finished.get().is_some();
        let want = take - out.len() as u64;
        b.each_row(skip, want.min(rows - skip), |i, row| {
            let code = row.tail(Tail::MerchantUniqueCode);
            let decline = outcome(seed, decline_rate, code);
            let amount = Decimal::from_str_exact(row.tail(Tail::Amount))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            out.push(Payment {
                merchant_unique_code: code.to_string(),
                payment_id: b.first_payment_id + i as i64,
                amount,
                status: if finished {
                    final_status(decline, b.record.half_2d)
                } else {
                    status::CREATED
                },
                scope: ACTIVITY_SALE,
                error_message: decline.filter(|_| finished).map(|d| d.message.to_string()),
            });
            Ok(())
        })?;
        skip = 0;
        if out.len() as u64 >= take {
            break;
        }
    }
    Ok(out)
}
