//! Result callbacks built by hand as the provider publishes them, for the
//! tests of the daemon's receiver. Written from docs/providers/paywall.md
//! (§2 the result file, §3 the transport, §4 the Hash, §5 the statuses),
//! never from paydrop's own types or constants: a receiver that disagrees
//! with the pages fails here.
//!
//! - the request: `multipart/form-data`, a part `file` (the result file,
//!   gzip when `IsCompressed`) and a field `data` (JSON with the keys of §3.2);
//! - `Hash`: lowercase hex SHA-256 of `{key}###{BulkPaymentId}###{MerchantUniqueCode}`;
//! - a line: 20 comma-separated columns (18 without `PaymentActivityTypeId`
//!   and `PaymentStatusId`); `PaymentStatusId` 4 successful, 5 failed.
#![allow(dead_code)]

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// `PaymentStatusId` values of the provider's "Payment Statuses" page.
pub const SUCCESSFUL: u32 = 4;
pub const FAILED: u32 = 5;
pub const STARTED: u32 = 2;

/// One result line.
#[derive(Clone, Debug)]
pub struct Line {
    pub line: u64,
    pub code: String,
    pub amount: String,
    /// `PaymentStatusId`; `None` writes the 18-column form.
    pub status: Option<u32>,
    /// A decline's bank code and message.
    pub bank: Option<(String, String)>,
    /// Insurance: `identityNumber` in place of `expiryDate`.
    pub insurance: bool,
}

impl Line {
    pub fn paid(line: u64, code: &str, amount: &str) -> Line {
        Line {
            line,
            code: code.into(),
            amount: amount.into(),
            status: Some(SUCCESSFUL),
            bank: None,
            insurance: false,
        }
    }

    pub fn declined(line: u64, code: &str, amount: &str, bank: &str, message: &str) -> Line {
        Line {
            status: Some(FAILED),
            bank: Some((bank.into(), message.into())),
            ..Line::paid(line, code, amount)
        }
    }

    /// The 18-column form of the same line.
    pub fn short(mut self) -> Line {
        self.status = None;
        self
    }

    pub fn text(&self) -> String {
        let (bank_code, bank_message) = self.bank.clone().unwrap_or_default();
        let failed = self.bank.is_some();
        let mut cells: Vec<String> = vec![
            if self.insurance { "2" } else { "1" }.into(),
            self.line.to_string(),
            "2026-11-25 20:00:00".into(),
            self.code.clone(),
            format!("TRK{}", self.line),
            "Ayse Yilmaz".into(),
            "454360******1234".into(),
            if self.insurance {
                "10*******46"
            } else {
                "12/30"
            }
            .into(),
            self.amount.clone(),
            "7".into(),
            "Some Gateway".into(),
            "3".into(),
            "provider-key".into(),
            if failed { "111" } else { "" }.into(),
            if failed { "P-9" } else { "" }.into(),
            if failed { "Declined by the bank" } else { "" }.into(),
            bank_code,
            bank_message,
        ];
        if let Some(status) = self.status {
            cells.push("1".into());
            cells.push(status.to_string());
        }
        cells.join(",")
    }
}

/// A result file of these lines, `\n`-terminated.
pub fn file(lines: &[Line]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| l.text() + "\n")
        .collect::<String>()
        .into_bytes()
}

/// `Hash` of a bulk payment callback.
pub fn hash(key: &str, bulk_payment_id: i64, merchant_unique_code: &str) -> String {
    hex::encode(Sha256::digest(format!(
        "{key}###{bulk_payment_id}###{merchant_unique_code}"
    )))
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One callback request.
#[derive(Clone, Debug)]
pub struct Callback {
    pub data: Map<String, Value>,
    pub file: Vec<u8>,
    /// The `file` part before `data`.
    pub file_first: bool,
}

impl Callback {
    /// A whole (unpaged) result file with every key of §3.2 and a correct Hash.
    pub fn new(key: &str, bulk_payment_id: i64, code: &str, file: Vec<u8>) -> Callback {
        let lines = file.iter().filter(|&&b| b == b'\n').count();
        let data = json!({
            "Type": 1,
            "BulkPaymentId": bulk_payment_id,
            "FileRecordId": 90,
            "FileName": format!("result_{bulk_payment_id}.txt"),
            "FileSize": file.len(),
            "LineCount": lines,
            "FileFormat": "TXT",
            "IsCompressed": false,
            "ErrorMessage": "",
            "DateTime": "2026-11-25T20:00:05.1234567+03:00",
            "CreatedAt": "2026-11-25T19:59:10.120",
            "FinishedAt": "2026-11-25T20:00:05.1234999+03:00",
            "DurationTime": 55.0,
            "Hash": hash(key, bulk_payment_id, code),
            "HashFormat": "BulkPayment",
            "HashKeyType": 4,
            "MerchantUniqueCode": code,
        });
        let Value::Object(data) = data else {
            unreachable!()
        };
        Callback {
            data,
            file,
            file_first: false,
        }
    }

    /// Page `number` of `total` (`HasMorePages` while not the last).
    pub fn page(self, number: u32, total: u32) -> Callback {
        self.set("PageNumber", json!(number))
            .set("TotalPages", json!(total))
            .set("HasMorePages", json!(number < total))
    }

    /// The file gzipped, `IsCompressed` true.
    pub fn gzipped(mut self) -> Callback {
        self.file = gzip(&self.file);
        let size = self.file.len();
        self.set("IsCompressed", json!(true))
            .set("FileSize", json!(size))
    }

    pub fn set(mut self, key: &str, value: Value) -> Callback {
        self.data.insert(key.into(), value);
        self
    }

    pub fn without(mut self, key: &str) -> Callback {
        self.data.remove(key);
        self
    }

    pub fn form(&self) -> reqwest::multipart::Form {
        let data = Value::Object(self.data.clone()).to_string();
        let name = self.data["FileName"]
            .as_str()
            .unwrap_or("result.txt")
            .to_string();
        let part = reqwest::multipart::Part::bytes(self.file.clone()).file_name(
            if self.data.get("IsCompressed") == Some(&json!(true)) {
                format!("{name}.gz")
            } else {
                name
            },
        );
        let form = reqwest::multipart::Form::new();
        if self.file_first {
            form.part("file", part).text("data", data)
        } else {
            form.text("data", data).part("file", part)
        }
    }

    /// Posts it; the status and the answer's text.
    pub async fn post(&self, url: &str) -> (u16, String) {
        let answer = client()
            .post(url)
            .multipart(self.form())
            .send()
            .await
            .unwrap_or_else(|e| panic!("posting a callback to {url}: {e}"));
        let status = answer.status().as_u16();
        (status, answer.text().await.unwrap_or_default())
    }
}

/// An HTTP client for 127.0.0.1 (no proxy, a hang guard).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("http client")
}

pub mod ledger;
