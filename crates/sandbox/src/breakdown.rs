//! Craftgate's payment transaction breakdown,
//! `GET /payment-reporting/v1/payments/{id}/transactions`.
//!
//! Sources: the payment-reporting docs (seed 003) and Craftgate's public
//! client libraries: craftgate-php-client `src/Util/Signature.php` and
//! `src/Adapter/PaymentReportingAdapter.php`, craftgate-python-client
//! `craftgate/utils/hash_generator.py`, craftgate-java-client
//! `ReportingPaymentTransaction.java`, `Payout.java`, `PayoutStatus.java`
//! (`docs/providers/receiving.md` §2).
//!
//! Every call must carry `x-api-key`, `x-rnd-key`, `x-auth-version` (`v1`,
//! or `1` as the Node and Go clients send) and `x-signature` =
//! base64(sha256(url + apiKey + secretKey + rnd + body)), the URL being the
//! base URL and the path with its query, percent-decoded. Anything else —
//! a Bearer token, a missing header, a wrong key or signature — gets 401
//! with Craftgate's error shape
//! `{"errors":{"errorCode","errorDescription"}}` (codes are the sandbox's
//! own: the pages publish none for authentication).
//!
//! The answer is the list envelope `{"data":{"items":[…],"page","size",
//! "totalSize"}}` with one to three items per payment, every field of
//! `ReportingPaymentTransaction`; money is written with eight decimals as
//! in the docs' example, and `refundablePrice`, `bankCommissionRate` and
//! `bankCommissionRateAmount` as strings, as the docs type them. In the
//! items of ids ending in 7 the merchant's payout is 0.01 more than
//! `paidPrice` less the sub-merchant's payout and the bank commission (no
//! rule of the provider relates them; the docs' example adds up).

use std::sync::Arc;

use axum::extract::{self, Path};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::countdown::{Busy, Fault};
use crate::mix::mix;
use crate::{Sandbox, Shared};

/// Settings of this surface.
#[derive(Clone, Debug)]
pub struct Config {
    pub api_key: String,
    pub secret_key: String,
    /// Seed of the generated items.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_key: "sandbox-craftgate-api-key".into(),
            secret_key: "sandbox-craftgate-secret-key".into(),
            seed: 1,
        }
    }
}

/// Highest payment id that exists.
pub const MAX_PAYMENT_ID: u64 = 999_999_999;

/// State of this surface while the sandbox runs.
pub(crate) struct State {
    config: Config,
    faults: Arc<Busy>,
}

impl State {
    pub(crate) fn new(config: Config) -> Self {
        State {
            config,
            faults: Arc::default(),
        }
    }
}

impl Sandbox {
    /// 429 / 500 switches of the breakdown.
    pub fn breakdown_faults(&self) -> Arc<Busy> {
        self.shared.breakdown.faults.clone()
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new().route(
        "/payment-reporting/v1/payments/{id}/transactions",
        get(transactions),
    )
}

/// Craftgate's error answer.
struct CraftgateError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl IntoResponse for CraftgateError {
    fn into_response(self) -> Response {
        info!(
            status = self.status.as_u16(),
            code = self.code,
            "sandbox breakdown: refused"
        );
        let body =
            json!({"errors": {"errorCode": self.code, "errorDescription": self.description}});
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert("retry-after", HeaderValue::from(0));
        }
        r
    }
}

fn unauthorized(why: &str) -> CraftgateError {
    CraftgateError {
        status: StatusCode::UNAUTHORIZED,
        code: "10",
        description: format!("Unauthorized: {why}"),
    }
}

/// `%XX` escapes decoded (as `decodeURIComponent` / .NET do; `+` stays).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The signature Craftgate's clients compute.
pub fn signature(url: &str, api_key: &str, secret_key: &str, rnd: &str, body: &str) -> String {
    let digest = Sha256::digest(format!("{url}{api_key}{secret_key}{rnd}{body}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn authenticate(
    config: &Config,
    base_url: &str,
    uri: &Uri,
    h: &HeaderMap,
) -> Result<(), CraftgateError> {
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    if header("authorization").is_some_and(|a| a.to_ascii_lowercase().starts_with("bearer")) {
        return Err(unauthorized(
            "Bearer tokens are not accepted; sign the request",
        ));
    }
    let (Some(key), Some(rnd), Some(version), Some(given)) = (
        header("x-api-key"),
        header("x-rnd-key"),
        header("x-auth-version"),
        header("x-signature"),
    ) else {
        return Err(unauthorized(
            "x-api-key, x-rnd-key, x-auth-version and x-signature are required",
        ));
    };
    if !matches!(version, "v1" | "1") {
        return Err(unauthorized("x-auth-version must be v1"));
    }
    if key != config.api_key {
        return Err(unauthorized("unknown x-api-key"));
    }
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = percent_decode(&format!("{base_url}{path_and_query}"));
    if given != signature(&url, key, &config.secret_key, rnd, "") {
        return Err(unauthorized("x-signature does not match the request"));
    }
    Ok(())
}

/// Eight decimals, as the docs' example writes money.
fn money(d: Decimal) -> Value {
    let mut d = d;
    d.rescale(8);
    Value::Number(d.to_string().parse().expect("a decimal is a JSON number"))
}

/// One item of a generated breakdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
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

/// The items of payment `id`.
pub fn items(seed: u64, id: u64) -> Vec<Item> {
    let h = mix(seed, id);
    let n = 1 + h % 3;
    (1..=n)
        .map(|k| {
            let h = mix(h, k);
            let price = Decimal::new((1_000 + h % 49_000) as i64, 2);
            let rate =
                [Decimal::ZERO, Decimal::new(25, 1), Decimal::new(5, 0)][(h >> 8) as usize % 3];
            let interest = (price * rate / Decimal::ONE_HUNDRED).round_dp(2);
            let paid = price + interest;
            let bank_rate = [Decimal::new(16, 1), Decimal::new(229, 2)][(h >> 12) as usize % 2];
            let bank = (paid * bank_rate / Decimal::ONE_HUNDRED).round_dp(2);
            let sub = (price * Decimal::new(9, 1)).round_dp(2);
            let mut merchant = paid - bank - sub;
            if id % 10 == 7 && k == n {
                merchant += Decimal::new(1, 2);
            }
            Item {
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

fn item_json(it: &Item) -> Value {
    let text = |d: Decimal| Value::String(d.to_string());
    json!({
        "id": it.id,
        "name": format!("Item {}", it.id),
        "externalId": format!("ext-{}", it.id),
        "createdDate": "2024-10-01T10:00:00",
        "price": money(it.price),
        "paidPrice": money(it.paid_price),
        "walletPrice": money(Decimal::ZERO),
        "refundablePrice": text(it.paid_price),
        "merchantCommissionRate": money(it.merchant_commission_rate),
        "merchantCommissionRateAmount": money(it.merchant_commission_rate_amount),
        "bankCommissionRate": text(it.bank_commission_rate),
        "bankCommissionRateAmount": text(it.bank_commission_rate_amount),
        "merchantPayoutAmount": money(it.merchant_payout_amount),
        "subMerchantMemberId": 512,
        "subMerchantMemberPrice": money(it.sub_merchant_member_price),
        "subMerchantMemberPayoutRate": 90,
        "subMerchantMemberPayoutAmount": money(it.sub_merchant_member_payout_amount),
        "subMerchantMember": {
            "id": 512,
            "createdDate": "2024-01-02T09:00:00",
            "updatedDate": "2024-06-01T12:30:00",
            "status": "ACTIVE",
            "isBuyer": false,
            "isSubMerchant": true,
            "memberType": "LIMITED_OR_JOINT_STOCK_COMPANY",
            "memberExternalId": "seller-512",
            "name": "Kırmızı Çini Atölyesi",
            "email": "seller512@example.com",
            "address": "Sandbox Sk. 1, İstanbul",
            "phoneNumber": "905550000512",
            "contactName": "Ece",
            "contactSurname": "Demir",
            "legalCompanyTitle": "Kırmızı Çini Ltd. Şti.",
            "taxOffice": "Kadıköy",
            "taxNumber": "1234567890",
            "settlementEarningsDestination": "IBAN",
            "negativeWalletAmountLimit": 0,
            "iban": "TR000000000000000000000512",
            "settlementDelayCount": 1
        },
        "transactionStatus": "APPROVED",
        "transactionStatusDate": "2024-10-02T10:00:00",
        "blockageResolvedDate": "2024-10-08T00:00:00",
        "refundStatus": "NO_REFUND",
        "payout": {
            "currency": "TRY",
            "parity": 1,
            "paidPrice": money(it.paid_price),
            "merchantPayoutAmount": money(it.merchant_payout_amount),
            "subMerchantMemberPayoutAmount": money(it.sub_merchant_member_payout_amount)
        },
        "payoutStatus": {
            "merchantStatus": "WAITING_FOR_PAYOUT",
            "merchantStatusDate": "2024-10-02T10:00:00",
            "subMerchantMemberStatus": "WAITING_FOR_PAYOUT",
            "subMerchantMemberStatusDate": "2024-10-02T10:00:00"
        }
    })
}

async fn transactions(
    extract::State(shared): extract::State<Arc<Shared>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, CraftgateError> {
    let state = &shared.breakdown;
    match state.faults.take() {
        Some(Fault::TooMany(_)) => {
            return Err(CraftgateError {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "429",
                description: "too many requests".into(),
            })
        }
        Some(Fault::ServerError) => {
            return Err(CraftgateError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "500",
                description: "sandbox fault".into(),
            })
        }
        None => {}
    }
    authenticate(&state.config, &shared.base_url, &uri, &headers)?;
    let not_found = || CraftgateError {
        status: StatusCode::NOT_FOUND,
        code: "1001",
        description: format!("payment {id} not found"),
    };
    let id: u64 = id.parse().map_err(|_| not_found())?;
    if id == 0 || id > MAX_PAYMENT_ID {
        return Err(not_found());
    }
    let list: Vec<Value> = items(state.config.seed, id).iter().map(item_json).collect();
    let n = list.len();
    Ok(
        Json(json!({"data": {"items": list, "page": 0, "size": n, "totalSize": n}}))
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_test_vectors_hold() {
        // craftgate-php-client unit-tests/Craftgate/Tests/Util/SignatureTest.php
        let s = |path: &str, body: &str| {
            signature(
                &percent_decode(&format!("http://localhost:8000{path}")),
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
        assert_eq!(
            s(
                "/onboarding/v1/members?name=Zeytinya%C4%9F%C4%B1%20%C3%9Cretim",
                ""
            ),
            "vxYA+5LH3F4m8tHQA2LpVBwzVgCqGRHue4XAgcVjjYQ="
        );
    }

    #[test]
    fn the_docs_example_adds_up_except_ids_ending_in_7() {
        for id in [12u64, 17] {
            for (k, it) in items(1, id).iter().enumerate() {
                let gap = it.paid_price
                    - it.bank_commission_rate_amount
                    - it.sub_merchant_member_payout_amount
                    - it.merchant_payout_amount;
                let last = k + 1 == items(1, id).len();
                assert_eq!(gap.is_zero(), !(id == 17 && last), "{id}/{k}");
            }
        }
    }
}
