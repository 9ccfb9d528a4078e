//! `POST /api/paywall/payment/bulk/send/callback`: posts a finished batch's
//! result callback again.
//!
//! Source: "7. Callback Retry"
//! (https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/7.-callback-retry):
//! JSON body `Date` (yyyy-MM-dd, the day the batch ran, required),
//! `MerchantUniqueCode` (the batch's, required), `CallbackBodyCompression`
//! (optional: gzip the callback); only for batches up to 7 days old; the
//! answer is `ErrorCode`, `Result`, `Message`. The sandbox answers at once
//! and posts in the background.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde::Deserialize;

use super::callback;
use crate::conn::Cut;
use crate::envelope::{code, Envelope, Refusal};
use crate::{faults, Shared};

pub(crate) const PATH: &str = "/api/paywall/payment/bulk/send/callback";

/// Batches older than this many days are not resent (the page).
const MAX_AGE_DAYS: i64 = 7;

/// The body; ASP.NET binds JSON names case-insensitively, so camelCase is
/// read too.
#[derive(Deserialize)]
struct ResendRequest {
    #[serde(rename = "Date", alias = "date")]
    date: Option<String>,
    #[serde(rename = "MerchantUniqueCode", alias = "merchantUniqueCode")]
    merchant_unique_code: Option<String>,
    #[serde(rename = "CallbackBodyCompression", alias = "callbackBodyCompression")]
    callback_body_compression: Option<bool>,
}

pub(crate) async fn handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(cut): ConnectInfo<Cut>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    faults::guard(&shared.faults, cut, body, |body| async {
        match resend(&shared, &headers, body).await {
            Ok(()) => Json(Envelope::<()> {
                body: None,
                ..Envelope::ok("The callback will be sent again", ())
            })
            .into_response(),
            Err(refusal) => refusal.into_response(),
        }
    })
    .await
}

async fn resend(shared: &Arc<Shared>, headers: &HeaderMap, body: Body) -> Result<(), Refusal> {
    let bulk = &shared.bulk;
    let config = &bulk.config;
    let checked = config.keys.check(headers);
    // The body is a few fields; it is read whole, up to a limit.
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.map_err(|e| {
        Refusal::http(
            axum::http::StatusCode::BAD_REQUEST,
            format!("the body could not be read: {e}"),
        )
    })?;
    checked?;
    let refuse = |code, message: String| Refusal::content(config.refusal_status, code, message);
    let request: ResendRequest = serde_json::from_slice(&bytes)
        .map_err(|e| refuse(code::INVALID_DATA, format!("the body must be JSON: {e}")))?;
    let date = request
        .date
        .as_deref()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .ok_or_else(|| refuse(code::INVALID_DATA, "Date (yyyy-MM-dd) is required".into()))?;
    let code = request
        .merchant_unique_code
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| refuse(code::INVALID_DATA, "MerchantUniqueCode is required".into()))?;
    if (bulk.today() - date).num_days() > MAX_AGE_DAYS {
        return Err(refuse(
            code::INVALID_DATA,
            format!("callbacks can be sent again for {MAX_AGE_DAYS} days only"),
        ));
    }
    let batches: Vec<_> = bulk
        .store
        .by_code(&code)
        .into_iter()
        .filter(|b| b.accepted_on == date)
        .collect();
    if batches.is_empty() {
        return Err(refuse(
            code::NO_DATA,
            format!("no bulk payment with this MerchantUniqueCode ran on {date}"),
        ));
    }
    if batches.iter().any(|b| b.record.callback_address.is_none()) {
        return Err(refuse(
            code::CALLBACK_ADDRESS_MUST_BE_FILLED,
            "the bulk payment was sent without a CallbackAddress".into(),
        ));
    }
    if batches.iter().any(|b| b.finished.get().is_none()) {
        return Err(refuse(
            code::UNSUCCESSFUL,
            "the bulk payment is not finished yet; its callback has not been sent".into(),
        ));
    }
    let gzip = bulk.gzip_callback(request.callback_body_compression.unwrap_or(false));
    for batch in batches {
        let shared = shared.clone();
        tokio::spawn(async move { callback::deliver(&shared, &batch, gzip, true).await });
    }
    Ok(())
}
