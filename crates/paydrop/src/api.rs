//! Wire types of the provider's bulk-file API (docs/providers/paywall.md
//! §6), used by the client ([`crate::upload`], [`crate::payout`]). The
//! sandbox (`crates/sandbox`) has its own reading of the pages and shares
//! none of these.

use serde::{Deserialize, Serialize};

/// Path of the bulk payment by file endpoint.
pub const STARTDIRECT_PATH: &str = "/api/paywall/payment/bulk/file/startdirect";
/// Path of the marketplace payout trigger (docs/providers/paywall.md §7).
pub const PAYOUT_TRIGGER_PATH: &str = "/api/paywall/marketplace/manual/trigger/start";
/// Path of the trigger's inquiry (Query page: header `jobid`).
pub const PAYOUT_INQUIRY_PATH: &str = "/api/paywall/marketplace/manual/trigger/inquiry";
/// Header carrying the merchant's public key (a secret: never logged).
pub const HEADER_API_KEY: &str = "apikeypublic";
/// Header carrying the merchant's public client (a secret: never logged).
pub const HEADER_API_CLIENT: &str = "apiclientpublic";

/// Multipart form field names of `startdirect`.
pub mod field {
    pub const FILE: &str = "File";
    pub const FILE_PATTERN: &str = "FilePattern";
    pub const FILE_FORMAT: &str = "FileFormat";
    pub const CURRENCY_ID: &str = "CurrencyId";
    pub const INSTALLMENT: &str = "Installment";
    pub const CALLBACK_ADDRESS: &str = "CallbackAddress";
    pub const HALF_2D: &str = "Half2D";
    pub const AMOUNT: &str = "Amount";
    pub const MERCHANT_UNIQUE_CODE: &str = "MerchantUniqueCode";
}

/// The envelope of every provider answer: `ErrorCode` 0 and `Result` true
/// mean success; anything else carries `Message`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope<T> {
    pub error_code: i64,
    pub result: bool,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default = "Option::default")]
    pub body: Option<T>,
}

impl<T> Envelope<T> {
    /// Success as the provider defines it.
    pub fn is_success(&self) -> bool {
        self.error_code == 0 && self.result
    }
}

/// `Body` of a successful `startdirect` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BulkStart {
    pub bulk_payment_id: i64,
    pub merchant_unique_code: String,
    #[serde(default)]
    pub processed_records: u64,
    #[serde(default)]
    pub total_records: u64,
    #[serde(default)]
    pub is_enqueued: bool,
    #[serde(default)]
    pub message: Option<String>,
}

/// JSON body of the marketplace payout trigger. Dates travel as `yyyy-MM-dd`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PayoutTrigger {
    pub currency_id: u32,
    #[serde(with = "ymd")]
    pub date_from: chrono::NaiveDate,
    #[serde(with = "ymd")]
    pub date_to: chrono::NaiveDate,
    #[serde(default)]
    pub test_mode: bool,
    #[serde(default)]
    pub skip_exists_control: bool,
}

/// `yyyy-MM-dd`, exactly (the provider's format for payout dates).
mod ymd {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&d.format("%Y-%m-%d"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let text = String::deserialize(d)?;
        NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map_err(|_| serde::de::Error::custom(format!("'{text}' is not a yyyy-MM-dd date")))
    }
}

/// Columns of the result file the provider posts to `CallbackAddress`
/// (pattern 3 has `identityNumber` in place of `expiryDate`).
pub const CALLBACK_COLUMNS: [&str; 20] = [
    "patternNo",
    "lineNumber",
    "dateTime",
    "merchantUniqueCode",
    "trackingCode",
    "cardOwner",
    "cardNumber",
    "expiryDate",
    "amount",
    "gatewayId",
    "gatewayName",
    "providerId",
    "providerKey",
    "paywallErrorCode",
    "providerErrorCode",
    "providerErrorMessage",
    "bankErrorCode",
    "bankErrorMessage",
    "PaymentActivityTypeId",
    "PaymentStatusId",
];

/// The provider's `CurrencyId` of TRY, the only one its pages document (the
/// default when `CurrencyId` is absent:
/// <https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/1.-payment/3.-file>).
/// Every other currency's id comes from `[submit.currency_ids]`: a wrong id
/// charges the wrong currency, so none is guessed.
pub const TRY_CURRENCY_ID: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_published_sample_answer() {
        let sample = r#"{"ErrorCodeType":1,"ErrorMessage":null,"ErrorCode":0,"Result":true,
            "Message":"File-based bulk payment created and enqueued",
            "Body":{"BulkPaymentId":3467,"MerchantUniqueCode":"bc110eb7-1c52-40e2-ae91-705d00cdbe8a",
            "ProcessedRecords":0,"TotalRecords":10,"IsEnqueued":true,
            "Message":"File-based bulk payment created and enqueued for processing"}}"#;
        let e: Envelope<BulkStart> = serde_json::from_str(sample).unwrap();
        assert!(e.is_success());
        assert_eq!(e.body.unwrap().bulk_payment_id, 3467);
    }
}
