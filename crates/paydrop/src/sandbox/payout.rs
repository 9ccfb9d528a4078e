//! The sandbox's marketplace payout trigger
//! (`POST /api/paywall/marketplace/manual/trigger/start`, `../shared/SPEC.md`
//! §2): the same credential headers as `startdirect`, a JSON
//! [`PayoutTrigger`], and the provider's rules checked by the client's own
//! [`crate::payout::check`] against the sandbox's memory of successful
//! orders (per `CurrencyId`; "today" is [`SandboxConfig::as_of`], else
//! Istanbul's).
//!
//! | HTTP | `ErrorCode` | when |
//! |------|-------------|------|
//! | 200 | 0 | ordered; `Body` `{PayoutOrderId, CurrencyId, DateFrom, DateTo, TestMode}` |
//! | 401 | 401 | credential headers missing or wrong |
//! | 400 | 400 | the body is not a valid JSON order |
//! | 200 | [`code::DATE_TO_NOT_PAST`] | `DateTo` today or later without `TestMode` |
//! | 200 | [`code::RANGE_REVERSED`] | `DateFrom` after `DateTo` |
//! | 200 | [`code::ALREADY_ORDERED`] | overlaps a successful order, without `SkipExistsControl` |
//!
//! The delay, 429 and 500 fault switches apply as to `startdirect`.
//!
//! [`code::DATE_TO_NOT_PAST`]: crate::payout::code::DATE_TO_NOT_PAST
//! [`code::RANGE_REVERSED`]: crate::payout::code::RANGE_REVERSED
//! [`code::ALREADY_ORDERED`]: crate::payout::code::ALREADY_ORDERED

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tracing::info;

use super::{authorize, common_faults, Refusal, Shared};
use crate::api::{Envelope, PayoutTrigger};
use crate::payout::check;

/// One payout order the sandbox accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PayoutRecord {
    pub payout_order_id: i64,
    pub order: PayoutTrigger,
}

/// The first `PayoutOrderId`.
const FIRST_ORDER_ID: i64 = 9001;

pub(super) async fn trigger(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(faulted) = common_faults(&shared).await {
        return faulted;
    }
    if let Err(refusal) = authorize(&shared.config, &headers) {
        return refusal.into_response();
    }
    let order: PayoutTrigger = match serde_json::from_slice(&body) {
        Ok(o) => o,
        Err(e) => {
            return Refusal::bad_request(format!("the body is not a payout order: {e}"))
                .into_response()
        }
    };
    let today = shared.config.as_of.unwrap_or_else(crate::provider_today);
    let mut store = shared.store();
    let ordered = store
        .payouts
        .iter()
        .filter(|p| p.order.currency_id == order.currency_id)
        .map(|p| {
            let name = format!(
                "payout order {} ({} to {})",
                p.payout_order_id, p.order.date_from, p.order.date_to
            );
            (p.order.date_from, p.order.date_to, name)
        });
    if let Err(rule) = check(&order, today, ordered) {
        info!(code = rule.code(), message = %rule, "sandbox: payout order refused");
        return Refusal::business(rule.code(), rule.to_string()).into_response();
    }
    let id = FIRST_ORDER_ID + store.payouts.len() as i64;
    store.payouts.push(PayoutRecord {
        payout_order_id: id,
        order: order.clone(),
    });
    info!(payout_order_id = id, from = %order.date_from, to = %order.date_to, "sandbox: payout ordered");
    Json(Envelope::ok(
        "Payout order started",
        serde_json::json!({
            "PayoutOrderId": id,
            "CurrencyId": order.currency_id,
            "DateFrom": order.date_from.to_string(),
            "DateTo": order.date_to.to_string(),
            "TestMode": order.test_mode,
        }),
    ))
    .into_response()
}
