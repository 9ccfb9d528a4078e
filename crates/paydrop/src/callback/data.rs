//! The callback's `data` field: its JSON read as the provider publishes it,
//! and the `Hash` that proves it comes from the provider.
//!
//! Keys and types: the example receivers of "Bulk Payment Callback Method"
//! and the JSON of "Bulk Transaction Callback"
//! (<https://developer.paywall.one/payment-orchestration-integration-document/example-codes/bulk-payment-callback-method>,
//! <https://developer.paywall.one/payment-orchestration-integration-document/callback-examples/bulk-transaction-callback>;
//! docs/providers/paywall.md §3.2). Keys are matched without regard to case
//! and unknown keys are ignored; a known key of the wrong type is refused.
//!
//! Hash: lowercase hex SHA-256 of `{key}###{BulkPaymentId}###{MerchantUniqueCode}`
//! under `HashFormat` `BulkPayment`, the key chosen by `HashKeyType`
//! (<https://developer.paywall.one/payment-orchestration-integration-document/hash-generation>;
//! docs §4).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{Secret, WatchConfig, ENV_WEBHOOK_HASH_KEY};
use crate::ledger::ResultPage;

/// The `HashFormat` of a bulk payment callback.
pub const HASH_FORMAT: &str = "BulkPayment";

/// What the callback's `data` says.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackData {
    /// `Type` (recorded, never used for a row's outcome: no type is defined
    /// for bulk files, docs §5.3).
    pub kind: Option<i64>,
    pub bulk_payment_id: i64,
    /// The batch-level code: the one paydrop sent with the part.
    pub merchant_unique_code: Option<String>,
    pub file_name: Option<String>,
    pub line_count: Option<i64>,
    pub is_compressed: bool,
    pub hash: Option<String>,
    pub hash_format: Option<String>,
    pub hash_key_type: Option<i64>,
    /// `PageNumber` / `TotalPages` / `HasMorePages` and `ErrorMessage`; a
    /// callback without paging keys is page 1 of 1.
    pub page: ResultPage,
}

/// A `data` value that cannot be read; the reason names the key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("data: {0}")]
pub struct DataError(String);

impl CallbackData {
    pub fn parse(json: &[u8]) -> Result<CallbackData, DataError> {
        let value: Value =
            serde_json::from_slice(json).map_err(|e| DataError(format!("not JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(DataError("not a JSON object".into()));
        };
        let keys = Keys(object);
        let page_number = keys.int("PageNumber")?;
        let total = keys.int("TotalPages")?;
        let has_more = keys.bool("HasMorePages")?;
        let unpaged = page_number.is_none() && total.is_none() && has_more.is_none();
        let page = ResultPage {
            number: page_number.map_or(Ok(1), |n| keys.page("PageNumber", n))?,
            total: if unpaged {
                Some(1)
            } else {
                total.map(|n| keys.page("TotalPages", n)).transpose()?
            },
            has_more: if unpaged { Some(false) } else { has_more },
            error_message: keys.string("ErrorMessage")?,
        };
        keys.string("FileFormat")?;
        for date in ["DateTime", "CreatedAt", "FinishedAt"] {
            keys.string(date)?;
        }
        Ok(CallbackData {
            kind: keys.int("Type")?,
            bulk_payment_id: keys
                .int("BulkPaymentId")?
                .ok_or_else(|| DataError("BulkPaymentId is missing".into()))?,
            merchant_unique_code: keys
                .string("MerchantUniqueCode")?
                .filter(|c| !c.trim().is_empty()),
            file_name: keys.string("FileName")?,
            line_count: keys.int("LineCount")?,
            is_compressed: keys.bool("IsCompressed")?.unwrap_or(false),
            hash: keys.string("Hash")?,
            hash_format: keys.string("HashFormat")?,
            hash_key_type: keys.int("HashKeyType")?,
            page,
        })
    }
}

/// The object's members, looked up without regard to case; `null` is absent.
struct Keys(Map<String, Value>);

impl Keys {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    fn wrong(&self, key: &str, what: &str) -> DataError {
        let mut shown = self.get(key).map(Value::to_string).unwrap_or_default();
        shown.truncate(40);
        DataError(format!("{key} is {shown}, not {what}"))
    }

    /// An integer (a number, or digits in a string).
    fn int(&self, key: &str) -> Result<Option<i64>, DataError> {
        match self.get(key) {
            None => Some(None),
            Some(Value::Number(n)) => n.as_i64().map(Some),
            Some(Value::String(s)) => s.trim().parse().ok().map(Some),
            Some(_) => None,
        }
        .ok_or_else(|| self.wrong(key, "an integer"))
    }

    /// Text (a number is taken as its text: `FileFormat` may be `"5"` or 5).
    fn string(&self, key: &str) -> Result<Option<String>, DataError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(self.wrong(key, "text")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, DataError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(self.wrong(key, "true or false")),
        }
    }

    fn page(&self, key: &str, n: i64) -> Result<u32, DataError> {
        u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| self.wrong(key, "a page number (1, 2, …)"))
    }
}

/// `Hash` of a bulk payment callback: lowercase hex SHA-256 of
/// `{key}###{bulkPaymentId}###{merchantUniqueCode}` (UTF-8).
///
/// ```
/// use paydrop::callback::bulk_payment_hash;
/// // The test vector of docs/providers/paywall.md §4.1.
/// assert_eq!(
///     bulk_payment_hash("demo-webhook-key", 4711, "batch-2025-001"),
///     "190b5ab0828730f6570ce2530cada65f5a8ae5e4468ed704ef1ab8cee277fe46"
/// );
/// ```
pub fn bulk_payment_hash(key: &str, bulk_payment_id: i64, merchant_unique_code: &str) -> String {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update(format!("###{bulk_payment_id}###").as_bytes());
    h.update(merchant_unique_code.as_bytes());
    hex::encode(h.finalize())
}

/// Compares without stopping at the first difference, so that the time taken
/// does not tell an attacker how much of a guess was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// The keys a callback's `Hash` may be made with, by `HashKeyType` (`None`:
/// absent or null).
pub struct HashKeys {
    keys: BTreeMap<Option<i64>, Secret>,
}

/// Why a callback's `Hash` is not accepted (never says what was expected).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("no Hash: a result callback must prove it comes from the provider")]
    Missing,
    #[error("HashFormat '{0}' is not {HASH_FORMAT}")]
    Format(String),
    #[error("HashKeyType {0} is not configured ([watch] webhook_key_types / hash_keys)")]
    KeyType(String),
    #[error("wrong Hash: made with another key, or over other values")]
    Mismatch,
}

impl HashKeys {
    /// The keys of `[watch]`; an error says what to configure.
    pub fn from_config(watch: &WatchConfig) -> Result<HashKeys, String> {
        let key_type = |t: &str| -> Result<Option<i64>, String> {
            match t.trim() {
                "none" => Ok(None),
                n => n.parse().map(Some).map_err(|_| {
                    format!("HashKeyType '{t}' in paydrop.toml is neither a number nor \"none\"")
                }),
            }
        };
        let webhook = watch.webhook_hash_key.as_ref().ok_or_else(|| {
            format!(
                "no webhook hash key: set {ENV_WEBHOOK_HASH_KEY} or [watch] webhook_hash_key to \
                 the \"System Webhook Hash Key\" of the provider's panel; result callbacks \
                 cannot be trusted without it"
            )
        })?;
        let mut keys = BTreeMap::new();
        for t in &watch.webhook_key_types {
            keys.insert(key_type(t)?, webhook.clone());
        }
        for (t, key) in &watch.hash_keys {
            if keys.insert(key_type(t)?, key.clone()).is_some() {
                return Err(format!(
                    "HashKeyType {t} is both in webhook_key_types and in [watch.hash_keys]"
                ));
            }
        }
        Ok(HashKeys { keys })
    }

    /// Checks `data`'s `Hash` with the key its `HashKeyType` names.
    pub fn verify(&self, data: &CallbackData) -> Result<(), HashError> {
        if let Some(f) = data.hash_format.as_deref() {
            if !f.trim().eq_ignore_ascii_case(HASH_FORMAT) {
                return Err(HashError::Format(f.chars().take(40).collect()));
            }
        }
        let given = data
            .hash
            .as_deref()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .ok_or(HashError::Missing)?;
        let key = self.keys.get(&data.hash_key_type).ok_or_else(|| {
            HashError::KeyType(data.hash_key_type.map_or("none".into(), |t| t.to_string()))
        })?;
        let expected = bulk_payment_hash(
            key.expose(),
            data.bulk_payment_id,
            data.merchant_unique_code.as_deref().unwrap_or(""),
        );
        if constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            Ok(())
        } else {
            Err(HashError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> HashKeys {
        let watch = WatchConfig {
            webhook_hash_key: Some(Secret::new("demo-webhook-key")),
            ..WatchConfig::default()
        };
        HashKeys::from_config(&watch).unwrap()
    }

    /// The example of docs §3.2 (its values made up there).
    const EXAMPLE: &str = r#"{"Type":1,"BulkPaymentId":4711,"FileRecordId":90,
        "FileName":"result_4711.txt","FileSize":2048,"LineCount":10,"FileFormat":"TXT",
        "IsCompressed":true,"ErrorMessage":"","DateTime":"2025-09-01T10:00:05.1234567+03:00",
        "CreatedAt":"2025-09-01T09:59:10.120","FinishedAt":"2025-09-01T10:00:05.1234999+03:00",
        "DurationTime":55.0,
        "Hash":"190b5ab0828730f6570ce2530cada65f5a8ae5e4468ed704ef1ab8cee277fe46",
        "HashFormat":"BulkPayment","HashKeyType":4,"PageNumber":1,"TotalPages":1,
        "HasMorePages":false,"MerchantUniqueCode":"batch-2025-001","SomethingNew":[1]}"#;

    #[test]
    fn reads_the_published_example_and_verifies_its_hash() {
        let d = CallbackData::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(d.bulk_payment_id, 4711);
        assert_eq!(d.merchant_unique_code.as_deref(), Some("batch-2025-001"));
        assert!(d.is_compressed);
        assert_eq!(d.hash_key_type, Some(4));
        assert_eq!(
            d.page,
            ResultPage {
                number: 1,
                total: Some(1),
                has_more: Some(false),
                error_message: Some(String::new()),
            }
        );
        assert_eq!(keys().verify(&d), Ok(()));
    }

    #[test]
    fn refuses_a_wrong_missing_or_foreign_hash() {
        let d = CallbackData::parse(EXAMPLE.as_bytes()).unwrap();
        let with = |f: &dyn Fn(&mut CallbackData)| {
            let mut d = d.clone();
            f(&mut d);
            keys().verify(&d)
        };
        assert_eq!(
            with(&|d| d.bulk_payment_id = 4712),
            Err(HashError::Mismatch)
        );
        assert_eq!(with(&|d| d.hash = None), Err(HashError::Missing));
        assert_eq!(
            with(&|d| d.hash = Some(" ".into())),
            Err(HashError::Missing)
        );
        assert_eq!(
            with(&|d| d.hash_key_type = Some(7)),
            Err(HashError::KeyType("7".into()))
        );
        assert_eq!(
            with(&|d| d.hash_format = Some("Payment".into())),
            Err(HashError::Format("Payment".into()))
        );
        // Upper-case hex, no HashFormat, no HashKeyType: accepted.
        assert_eq!(
            with(&|d| {
                d.hash = d.hash.as_ref().map(|h| h.to_uppercase());
                d.hash_format = None;
                d.hash_key_type = None;
            }),
            Ok(())
        );
    }

    #[test]
    fn tolerates_spellings_and_refuses_wrong_types() {
        let d = CallbackData::parse(
            br#"{"bulkPaymentId":"12","MerchantUniqueCode":null,"FileFormat":5,
                 "IsCompressed":"false","PageNumber":2,"HasMorePages":true}"#,
        )
        .unwrap();
        assert_eq!(d.bulk_payment_id, 12);
        assert_eq!(d.merchant_unique_code, None);
        assert_eq!(
            (d.page.number, d.page.total, d.page.has_more),
            (2, None, Some(true))
        );
        for (json, says) in [
            (r#"{"Hash":"x"}"#, "BulkPaymentId is missing"),
            (
                r#"{"BulkPaymentId":1.5}"#,
                "BulkPaymentId is 1.5, not an integer",
            ),
            (
                r#"{"BulkPaymentId":1,"IsCompressed":1}"#,
                "IsCompressed is 1",
            ),
            (r#"{"BulkPaymentId":1,"PageNumber":0}"#, "PageNumber is 0"),
            (r#"[1]"#, "not a JSON object"),
        ] {
            let e = CallbackData::parse(json.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn key_types_come_from_the_config() {
        let mut watch = WatchConfig::default();
        let e = HashKeys::from_config(&watch).err().unwrap();
        assert!(e.contains(ENV_WEBHOOK_HASH_KEY), "{e}");
        watch.webhook_hash_key = Some(Secret::new("w"));
        watch.webhook_key_types = vec!["none".into()];
        watch.hash_keys.insert("5".into(), Secret::new("other"));
        let keys = HashKeys::from_config(&watch).unwrap();
        let mut d =
            CallbackData::parse(br#"{"BulkPaymentId":1,"MerchantUniqueCode":"m"}"#).unwrap();
        d.hash = Some(bulk_payment_hash("w", 1, "m"));
        assert_eq!(keys.verify(&d), Ok(()));
        d.hash_key_type = Some(4);
        assert!(keys.verify(&d).is_err(), "4 is no longer the webhook key");
        d.hash_key_type = Some(5);
        d.hash = Some(bulk_payment_hash("other", 1, "m"));
        assert_eq!(keys.verify(&d), Ok(()));
        watch.hash_keys.insert("none".into(), Secret::new("x"));
        assert!(HashKeys::from_config(&watch).is_err());
    }
}
