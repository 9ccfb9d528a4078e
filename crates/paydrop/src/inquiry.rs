//! The provider's bulk inquiry: does it have the batch sent under a given
//! MerchantUniqueCode? Asked before a part of unknown outcome is ever sent
//! again.
//!
//! Two published endpoints answer it, both keyed by the batch's
//! MerchantUniqueCode (docs/providers/paywall.md §6.5):
//! `GET …/bulk/payment/query/summary`
//! (<https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/5.-query-summary>)
//! and `GET …/bulk/payment/query`
//! (<https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/4.-query>),
//! which pages the payments (`pageSize` at most 1000). The page lists the
//! key in the same table as the header credentials, the official SDK sends
//! such keys as headers and a third-party client as a query string: paydrop
//! sends it both ways. The root fields may come bare or inside the envelope's
//! `Body`; both are read.
//!
//! What the pages do not say is what "not found" looks like. Only an answer
//! that says so plainly counts as not found (see [`Inquiry::NotFound`]);
//! anything else, including a 404 without the provider's envelope (a missing
//! endpoint), leaves the outcome unknown.

use serde_json::Value;

use crate::upload::Client;

/// The summary endpoint, asked first.
pub const SUMMARY_PATH: &str = "/api/paywall/payment/bulk/payment/query/summary";
/// The detailed endpoint, asked when the summary gives no definite answer.
pub const QUERY_PATH: &str = "/api/paywall/payment/bulk/payment/query";
/// The key's name, as header and as query parameter.
pub const CODE_PARAM: &str = "merchantuniquecode";

/// The SDK's `NoData` and `NotFound` error codes (docs/providers/paywall.md
/// §8.2): the provider's own way of saying it has nothing under the key.
const NOT_FOUND_CODES: [i64; 2] = [3, 404];

/// What the provider said about a MerchantUniqueCode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inquiry {
    /// The batch is there (`Result` true: "accepted for processing").
    Found {
        /// Only if the answer carries one: the pages do not list it.
        bulk_payment_id: Option<i64>,
        /// What the answer says, for the ledger and the user.
        summary: String,
    },
    /// The provider says plainly that it has no batch under the code: an
    /// envelope with `ErrorCode` 3 (`NoData`) or 404 (`NotFound`), or
    /// `Result` false with `TotalPaymentCount` 0.
    NotFound { summary: String },
    /// No definite answer (unreachable, 5xx, 401, an unknown shape).
    Indefinite { reason: String },
}

impl Client {
    /// Asks the summary endpoint, then the detailed one, until one answers
    /// definitely.
    pub async fn inquire(&self, merchant_unique_code: &str) -> Inquiry {
        let headers = [(CODE_PARAM, merchant_unique_code)];
        let summary = self
            .get(
                SUMMARY_PATH,
                &headers,
                &[(CODE_PARAM, merchant_unique_code)],
            )
            .await;
        let first = read(SUMMARY_PATH, summary);
        if !matches!(first, Inquiry::Indefinite { .. }) {
            return first;
        }
        let query = [
            (CODE_PARAM, merchant_unique_code),
            ("pageSize", "1"),
            ("pageNumber", "1"),
        ];
        let paged = self
            .get(
                QUERY_PATH,
                &[
                    (CODE_PARAM, merchant_unique_code),
                    ("pagesize", "1"),
                    ("pagenumber", "1"),
                ],
                &query,
            )
            .await;
        match read(QUERY_PATH, paged) {
            Inquiry::Indefinite { reason } => {
                let Inquiry::Indefinite { reason: first } = first else {
                    unreachable!("checked above")
                };
                Inquiry::Indefinite {
                    reason: format!("{first}; {reason}"),
                }
            }
            definite => definite,
        }
    }
}

/// Reads one answer of either endpoint.
fn read(path: &str, reply: Result<crate::upload::JsonReply, crate::upload::NoReply>) -> Inquiry {
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            return Inquiry::Indefinite {
                reason: format!("{path}: no answer ({})", e.message),
            }
        }
    };
    let indefinite = |why: &str| Inquiry::Indefinite {
        reason: format!("{path}: {} {why}", reply.status),
    };
    let Ok(root) = serde_json::from_str::<Value>(&reply.text) else {
        return indefinite("without a JSON answer");
    };
    let error_code = root.get("ErrorCode").and_then(Value::as_i64);
    let message = root
        .get("Message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if error_code.is_some_and(|c| NOT_FOUND_CODES.contains(&c))
        && root.get("Result").and_then(Value::as_bool) != Some(true)
    {
        return Inquiry::NotFound {
            summary: format!("ErrorCode {}: {message}", error_code.unwrap_or_default()),
        };
    }
    if !reply.status.is_success() || error_code.is_some_and(|c| c != 0) {
        let code = error_code.map_or_else(|| "no ErrorCode".into(), |c| format!("ErrorCode {c}"));
        return indefinite(&format!("{code}: {message}"));
    }
    // The totals sit at the root or in `Body`.
    let totals = match root.get("Body") {
        Some(body) if body.is_object() => body,
        _ => &root,
    };
    let count = totals.get("TotalPaymentCount").and_then(Value::as_i64);
    match totals.get("Result").and_then(Value::as_bool) {
        Some(true) => Inquiry::Found {
            bulk_payment_id: totals.get("BulkPaymentId").and_then(Value::as_i64),
            summary: describe(totals),
        },
        Some(false) if count == Some(0) => Inquiry::NotFound {
            summary: format!("Result false, TotalPaymentCount 0 {message}")
                .trim()
                .to_string(),
        },
        _ => indefinite("without a Result the pages define"),
    }
}

/// "6 payments (TRY amounts as sent: 1250.75): 4 successful, 1 unsuccessful,
/// 1 unprocessed" from the published totals.
fn describe(totals: &Value) -> String {
    let n = |k: &str| {
        totals
            .get(k)
            .map(Value::to_string)
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "the provider's bulk inquiry has it: {} payments, amount {}; {} successful, {} \
         unsuccessful, {} unprocessed",
        n("TotalPaymentCount"),
        n("TotalPaymentAmount"),
        n("TotalSuccessPaymentCount"),
        n("TotalUnsuccessfulPaymentCount"),
        n("TotalUnprocessedPaymentCount"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::{JsonReply, NoReply};
    use reqwest::StatusCode;

    fn answer(status: u16, text: &str) -> Result<JsonReply, NoReply> {
        Ok(JsonReply {
            status: StatusCode::from_u16(status).unwrap(),
            text: text.into(),
            url: String::new(),
            retry_after: None,
        })
    }

    #[test]
    fn reads_the_published_shapes_bare_and_wrapped() {
        let bare = r#"{"Result":true,"TotalPaymentCount":6,"TotalPaymentAmount":1250.75,
            "TotalSuccessPaymentCount":4,"TotalSuccessPaymentAmount":1000.0,
            "TotalUnsuccessfulPaymentCount":1,"TotalUnsuccessfulPaymentAmount":200.0,
            "TotalUnprocessedPaymentCount":1,"TotalUnprocessedPaymentAmount":50.75}"#;
        let Inquiry::Found {
            bulk_payment_id,
            summary,
        } = read(SUMMARY_PATH, answer(200, bare))
        else {
            panic!("found")
        };
        assert_eq!(bulk_payment_id, None);
        assert!(summary.contains("6 payments, amount 1250.75"), "{summary}");
        let wrapped = r#"{"ErrorCode":0,"Result":true,"Message":"","Body":{"Result":true,"TotalPaymentCount":2,"BulkPaymentId":77}}"#;
        assert!(matches!(
            read(SUMMARY_PATH, answer(200, wrapped)),
            Inquiry::Found {
                bulk_payment_id: Some(77),
                ..
            }
        ));
    }

    #[test]
    fn only_a_plain_no_is_not_found() {
        for no in [
            r#"{"ErrorCode":3,"Result":false,"Message":"No data"}"#,
            r#"{"ErrorCode":404,"Result":false,"Message":"Not found","Body":null}"#,
            r#"{"Result":false,"TotalPaymentCount":0}"#,
        ] {
            assert!(
                matches!(
                    read(SUMMARY_PATH, answer(200, no)),
                    Inquiry::NotFound { .. }
                ),
                "{no}"
            );
        }
        for unsure in [
            answer(404, ""),
            answer(404, "<html>not here</html>"),
            answer(500, r#"{"ErrorCode":500,"Result":false,"Message":"boom"}"#),
            answer(200, r#"{"ErrorCode":401,"Result":false,"Message":"key"}"#),
            answer(200, r#"{"Result":false,"TotalPaymentCount":3}"#),
            answer(200, r#"{"Result":false}"#),
            answer(200, r#"{"Something":"else"}"#),
            Err(NoReply {
                message: "connection refused".into(),
                maybe_received: false,
            }),
        ] {
            let shown = format!("{unsure:?}");
            assert!(
                matches!(read(SUMMARY_PATH, unsure), Inquiry::Indefinite { .. }),
                "{shown}"
            );
        }
    }
}
