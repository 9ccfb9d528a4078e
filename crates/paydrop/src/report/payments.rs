//! The payment report's transactions, read one at a time off the stream.
//!
//! The answer `{"fail":false,"statusCode":200,"result":[…]}` is walked by
//! [`PaymentList`] down to `result`, and one transaction is parsed at a time
//! (each at most [`MAX_TRANSACTION_BYTES`]), so memory does not grow with
//! the report. Numbers may be sloppy as in the published sample (`0,00`,
//! `1.234,56`): [`super::json::decimal`] reads them exactly.
//!
//! Every field of a transaction is kept: JSON Lines output writes all of
//! them, in the order received, unknown ones included (numbers as exact
//! decimal strings, `maskedCardNumber` masked again to first 6 / last 4,
//! plus `currency`, the ISO alphabetic code of `payzeeCurrencyCode`); CSV
//! output has the page's published fields ([`PAYMENT_COLUMNS`]). An empty
//! or null field never stops the report: the page marks no response field
//! required. A transaction without `trnAmount` is counted apart and makes
//! the summary report a problem; a value that is present but unreadable (a
//! broken number, an unknown currency code) stops it, naming the
//! transaction.
//!
//! The totals the report declares (`totalCount`, `totalAmount`,
//! `totalNetAmount`, `totalCommissionAmount`, repeated on every transaction
//! as in the sample, or beside `result`) are checked against the sums.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use rust_decimal::Decimal;

use super::json::{self, JsonError, Value};
use super::{decimal, text, ReportError};
use crate::currency::Currency;
use crate::mask;
use crate::totals::Tally;

/// Largest single transaction of a payment report.
pub const MAX_TRANSACTION_BYTES: usize = 1 << 20;

/// Decimal fields of a transaction (page table and sample).
const DECIMALS: [&str; 17] = [
    "commission",
    "commissionRate",
    "headCommission",
    "headCommissionRate",
    "installmentCount",
    "netAmount",
    "payzeeDiscountRateAcq",
    "trnAmount",
    "usedReward",
    "totalCount",
    "totalAmount",
    "totalNetAmount",
    "totalCommissionAmount",
    "totalHeadCommissionAmount",
    // Not decimals but numbers in the sample: kept exact all the same.
    "userId",
    "count",
    "statusCode",
];

/// Columns of the CSV output: the page's fields (table and sample, the
/// ones paydrop's summary uses first), plus `currency`.
pub const PAYMENT_COLUMNS: [&str; 41] = [
    "payzeeTrnOrderId",
    "trnAmount",
    "netAmount",
    "commission",
    "commissionRate",
    "currency",
    "payzeeCurrencyCode",
    "maskedCardNumber",
    "trnStatus",
    "transactionType",
    "paymentType",
    "payzeeTrnDate",
    "bankOrderNumber",
    "cardBrand",
    "cardLoyaltyBrand",
    "cardTransferStatus",
    "cardType",
    "eftStatus",
    "headCommission",
    "headCommissionRate",
    "headIban",
    "headTradeName",
    "iban",
    "installmentCount",
    "issuerBankName",
    "merchantNumber",
    "payzeeAuthorizationNumber",
    "payzeeCreateDate",
    "payzeeDiscountRateAcq",
    "payzeeMerchantName",
    "payzeeModifyDate",
    "payzeePfAcquiredBankName",
    "tradeName",
    "usedReward",
    "productId",
    "productName",
    "totalCount",
    "totalAmount",
    "totalNetAmount",
    "totalCommissionAmount",
    "totalHeadCommissionAmount",
];

/// The totals a report declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Declared {
    pub count: Option<Decimal>,
    pub amount: Option<Decimal>,
    pub net_amount: Option<Decimal>,
    pub commission: Option<Decimal>,
}

impl Declared {
    const KEYS: [&'static str; 4] = [
        "totalCount",
        "totalAmount",
        "totalNetAmount",
        "totalCommissionAmount",
    ];

    fn slot(&mut self, key: &str) -> Option<&mut Option<Decimal>> {
        match key {
            "totalCount" => Some(&mut self.count),
            "totalAmount" => Some(&mut self.amount),
            "totalNetAmount" => Some(&mut self.net_amount),
            "totalCommissionAmount" => Some(&mut self.commission),
            _ => None,
        }
    }

    fn from_value(v: &Value) -> Result<Declared, String> {
        let mut d = Declared::default();
        for k in Declared::KEYS {
            if let Some(slot) = d.slot(k) {
                *slot = decimal(v, k)?;
            }
        }
        Ok(d)
    }

    fn is_empty(&self) -> bool {
        *self == Declared::default()
    }
}

/// One transaction of the payment report.
#[derive(Clone, Debug, PartialEq)]
pub struct Payment {
    /// `payzeeTrnOrderId`, else `bankOrderNumber`; may be empty.
    pub order_id: String,
    pub trn_amount: Option<Decimal>,
    pub net_amount: Option<Decimal>,
    pub commission: Option<Decimal>,
    /// `None` when `payzeeCurrencyCode` is empty.
    pub currency: Option<Currency>,
    /// The report sent more of the card number than first 6 / last 4.
    pub remasked: bool,
    pub declared: Declared,
    /// Every member as received, numbers as exact decimal text, the card
    /// masked again, `currency` added.
    pub fields: Vec<(String, Option<String>)>,
}

impl Payment {
    fn from_value(v: &Value) -> Result<Payment, String> {
        let Value::Object(members) = v else {
            return Err("is not a JSON object".into());
        };
        let code = text(v, "payzeeCurrencyCode");
        let currency = if code.is_empty() {
            None
        } else {
            Some(
                Currency::lookup(if code.eq_ignore_ascii_case("TL") {
                    "TRY"
                } else {
                    &code
                })
                .ok_or_else(|| {
                    format!(
                        "payzeeCurrencyCode '{code}' is not an ISO 4217 code (949 TL, 840 USD, …)"
                    )
                })?,
            )
        };
        let mut remasked = false;
        let mut fields = Vec::with_capacity(members.len() + 1);
        for (k, value) in members {
            let cell = match value {
                Value::Null => None,
                Value::Number(_) | Value::String(_) if DECIMALS.contains(&k.as_str()) => {
                    match value.text() {
                        None => None,
                        Some(t) => Some(
                            json::decimal(&t)
                                .map_err(|e| format!("{k} {e}"))?
                                .to_string(),
                        ),
                    }
                }
                Value::Number(n) => Some(n.clone()),
                Value::String(s) if k == "maskedCardNumber" => {
                    let m = mask::card(s.trim());
                    remasked |= m != s.trim();
                    Some(m)
                }
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                // Nested values are not published; kept as compact JSON text.
                other => Some(format!("{other:?}")),
            };
            fields.push((k.clone(), cell));
        }
        fields.push(("currency".into(), currency.map(|c| c.code.to_string())));
        let order_id = Some(text(v, "payzeeTrnOrderId"))
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| text(v, "bankOrderNumber"));
        Ok(Payment {
            order_id,
            trn_amount: decimal(v, "trnAmount")?,
            net_amount: decimal(v, "netAmount")?,
            commission: decimal(v, "commission")?,
            currency,
            remasked,
            declared: Declared::from_value(v)?,
            fields,
        })
    }

    /// The value of a field as written.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    Start,
    Envelope { first: bool },
    Result { first: bool },
    Done,
}

/// The transactions of a payment report answer, read one at a time.
pub struct PaymentList<R> {
    reader: json::Reader<R>,
    walk: Walk,
    index: u64,
    saw_result: bool,
    fail: bool,
    status: Option<String>,
    error_code: Option<String>,
    message: Option<String>,
    /// Totals declared beside `result`.
    pub envelope_totals: Declared,
}

impl<R: Read> PaymentList<R> {
    pub fn new(input: R) -> Self {
        PaymentList {
            reader: json::Reader::new(input, MAX_TRANSACTION_BYTES),
            walk: Walk::Start,
            index: 0,
            saw_result: false,
            fail: false,
            status: None,
            error_code: None,
            message: None,
            envelope_totals: Declared::default(),
        }
    }

    fn step(&mut self) -> Result<Option<Payment>, ReportError> {
        loop {
            match self.walk {
                Walk::Start => {
                    self.reader.begin_object()?;
                    self.walk = Walk::Envelope { first: true };
                }
                Walk::Envelope { mut first } => {
                    let key = self.reader.next_key(&mut first)?;
                    self.walk = Walk::Envelope { first };
                    match key.as_deref() {
                        None => {
                            self.walk = Walk::Done;
                            return self.finish().map(|()| None);
                        }
                        Some("result") if self.reader.peek()? == Some(b'[') => {
                            self.reader.begin_array()?;
                            self.saw_result = true;
                            self.walk = Walk::Result { first: true };
                        }
                        Some(key) => {
                            let v = self.reader.value()?;
                            match key {
                                "fail" => self.fail = v == Value::Bool(true),
                                "statusCode" => self.status = v.text(),
                                "errorCode" | "responseCode" => self.error_code = v.text(),
                                "errorDescription" | "responseMessage" | "message" | "Message" => {
                                    self.message = self.message.take().or_else(|| v.text())
                                }
                                _ => {
                                    if let Some(slot) = self.envelope_totals.slot(key) {
                                        *slot = v
                                            .text()
                                            .map(|t| json::decimal(&t))
                                            .transpose()
                                            .map_err(|e| {
                                                ReportError::Provider(format!("{key} {e}"))
                                            })?;
                                    }
                                }
                            }
                        }
                    }
                }
                Walk::Result { mut first } => {
                    if !self.reader.next_element(&mut first)? {
                        self.walk = Walk::Envelope { first: false };
                        continue;
                    }
                    self.walk = Walk::Result { first };
                    self.index += 1;
                    let v = self.reader.value()?;
                    return Payment::from_value(&v).map(Some).map_err(|reason| {
                        let order = v
                            .get("payzeeTrnOrderId")
                            .and_then(Value::text)
                            .map_or_else(String::new, |o| format!(" (payzeeTrnOrderId {o})"));
                        ReportError::Field {
                            index: self.index,
                            order,
                            reason,
                        }
                    });
                }
                Walk::Done => return Ok(None),
            }
        }
    }

    /// Checks the envelope once it is complete.
    fn finish(&mut self) -> Result<(), ReportError> {
        if !self.reader.at_end()? {
            return Err(JsonError::Syntax {
                offset: self.reader.offset(),
                reason: "text after the end of the answer".into(),
            }
            .into());
        }
        let status_ok = self.status.as_deref().is_none_or(|s| s == "200");
        if self.fail || !status_ok {
            return Err(ReportError::Provider(format!(
                "fail {}, statusCode {}, errorCode {}: {}",
                self.fail,
                self.status.as_deref().unwrap_or("-"),
                self.error_code.as_deref().unwrap_or("-"),
                mask::card_numbers(self.message.as_deref().unwrap_or("no description"))
            )));
        }
        if !self.saw_result {
            return Err(ReportError::Provider(
                "the answer has no \"result\" list of transactions".into(),
            ));
        }
        Ok(())
    }
}

impl<R: Read> Iterator for PaymentList<R> {
    type Item = Result<Payment, ReportError>;

    fn next(&mut self) -> Option<Self::Item> {
        let step = self.step();
        if step.is_err() {
            self.walk = Walk::Done;
        }
        step.transpose()
    }
}

/// What a payment report held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentSummary {
    pub transactions: u64,
    pub trn_amount: Decimal,
    pub net_amount: Decimal,
    pub commission: Decimal,
    /// `trnAmount` per currency (`(none)` when the code is empty).
    pub by_currency: BTreeMap<String, Tally>,
    /// Transactions without `trnAmount`.
    pub without_amount: u64,
    /// Card numbers that arrived with more than first 6 / last 4.
    pub remasked: u64,
    /// The totals the report declares (first transaction, or envelope).
    pub declared: Declared,
    /// Transactions that declare other totals than the first one.
    pub inconsistent_declarations: u64,
}

fn checked(total: &mut Decimal, add: Option<Decimal>) -> Result<(), ReportError> {
    *total = total
        .checked_add(add.unwrap_or_default())
        .ok_or_else(|| ReportError::Provider(format!("the total {total} overflows")))?;
    Ok(())
}

impl PaymentSummary {
    fn add(&mut self, p: &Payment) -> Result<(), ReportError> {
        self.transactions += 1;
        checked(&mut self.trn_amount, p.trn_amount)?;
        checked(&mut self.net_amount, p.net_amount)?;
        checked(&mut self.commission, p.commission)?;
        match p.trn_amount {
            Some(a) => self
                .by_currency
                .entry(p.currency.map_or("(none)", |c| c.code).into())
                .or_default()
                .add(a)
                .map_err(|e| ReportError::Provider(e.to_string()))?,
            None => self.without_amount += 1,
        }
        self.remasked += u64::from(p.remasked);
        if self.transactions == 1 {
            self.declared = p.declared.clone();
        } else if p.declared != self.declared {
            self.inconsistent_declarations += 1;
        }
        Ok(())
    }

    /// Where the report disagrees with itself; empty when it does not.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.without_amount > 0 {
            out.push(format!(
                "{} transactions have no trnAmount: they are not in the sums",
                self.without_amount
            ));
        }
        if self.inconsistent_declarations > 0 {
            out.push(format!(
                "{} transactions declare other totals than the first one",
                self.inconsistent_declarations
            ));
        }
        let count = Decimal::from(self.transactions);
        for (key, declared, actual) in [
            ("totalCount", self.declared.count, count),
            ("totalAmount", self.declared.amount, self.trn_amount),
            ("totalNetAmount", self.declared.net_amount, self.net_amount),
            (
                "totalCommissionAmount",
                self.declared.commission,
                self.commission,
            ),
        ] {
            if let Some(d) = declared.filter(|d| *d != actual) {
                out.push(format!(
                    "{key} says {d}, the transactions add up to {actual} (difference {})",
                    actual
                        .checked_sub(d)
                        .map_or_else(|| "out of range".into(), |x| x.to_string())
                ));
            }
        }
        out
    }

    /// A few lines for the terminal.
    pub fn print(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "{} transactions", self.transactions)?;
        for (code, s) in &self.by_currency {
            writeln!(out, "  {code} {} over {} transactions", s.amount, s.rows)?;
        }
        writeln!(
            out,
            "  trnAmount {}  netAmount {}  commission {}",
            self.trn_amount, self.net_amount, self.commission
        )?;
        if self.remasked > 0 {
            writeln!(
                out,
                "  {} card numbers arrived unmasked and were masked to first 6 / last 4",
                self.remasked
            )?;
        }
        let problems = self.problems();
        if self.declared.is_empty() {
            writeln!(out, "  the report declares no totals to check")?;
        } else if problems.is_empty() {
            writeln!(out, "  declared totals agree with the transactions")?;
        }
        for p in problems {
            writeln!(out, "  TOTALS DISAGREE: {p}")?;
        }
        Ok(())
    }
}

/// Output format of the payment report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Csv, Format::Jsonl];

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// Reads a payment report answer from `input` and writes its transactions
/// to `out`, one at a time.
pub fn write_payments<R: Read, W: Write>(
    input: R,
    format: Format,
    out: W,
) -> Result<PaymentSummary, ReportError> {
    let mut list = PaymentList::new(input);
    let mut summary = PaymentSummary::default();
    let mut csv_out = None;
    let mut jsonl_out = None;
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(PAYMENT_COLUMNS).map_err(io::Error::from)?;
            csv_out = Some(w);
        }
        Format::Jsonl => jsonl_out = Some(io::BufWriter::new(out)),
    }
    for p in list.by_ref() {
        let p = p?;
        summary.add(&p)?;
        if let Some(w) = csv_out.as_mut() {
            w.write_record(PAYMENT_COLUMNS.iter().map(|c| p.field(c).unwrap_or("")))
                .map_err(io::Error::from)?;
        }
        if let Some(w) = jsonl_out.as_mut() {
            // By hand, to keep the members in their order.
            for (i, (k, v)) in p.fields.iter().enumerate() {
                w.write_all(if i == 0 { b"{" } else { b"," })?;
                serde_json::to_writer(&mut *w, k).map_err(io::Error::from)?;
                w.write_all(b":")?;
                serde_json::to_writer(&mut *w, v).map_err(io::Error::from)?;
            }
            w.write_all(b"}\n")?;
        }
    }
    if let Some(mut w) = csv_out {
        w.flush()?;
    }
    if let Some(mut w) = jsonl_out {
        w.flush()?;
    }
    if summary.declared.is_empty() {
        summary.declared = list.envelope_totals;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_sample_reads_exactly() {
        // The sample of seed 004 as published (not valid JSON), with a real
        // currency code in place of "string".
        let sample = include_str!("../../../../tests/fixtures/payzee/published-sample.json");
        let mut out = Vec::new();
        let s = write_payments(sample.as_bytes(), Format::Jsonl, &mut out).unwrap();
        assert_eq!(s.transactions, 1);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains(r#""netAmount":"0.00""#), "{line}");
        assert!(line.contains(r#""commissionRate":"0.0""#), "{line}");
        assert!(line.contains(r#""currency":"TRY""#), "{line}");
        assert!(line.contains(r#""eftStatus":"string""#), "{line}");
    }

    #[test]
    fn empty_optional_fields_never_abort() {
        let r = r#"{"fail":false,"statusCode":200,"result":[
            {"payzeeTrnOrderId":"","bankOrderNumber":"B-1","trnAmount":"","netAmount":null,
             "payzeeCurrencyCode":"","maskedCardNumber":"","commissionRate":"","headIban":null,
             "sandboxExtra":"kept"},
            {"payzeeTrnOrderId":"A","trnAmount":12,"payzeeCurrencyCode":"949"}]}"#;
        let mut out = Vec::new();
        let s = write_payments(r.as_bytes(), Format::Jsonl, &mut out).unwrap();
        assert_eq!(s.transactions, 2);
        assert_eq!(s.without_amount, 1);
        assert_eq!(s.by_currency["TRY"].amount, Decimal::new(12, 0));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""sandboxExtra":"kept""#), "{text}");
        assert!(text.contains(r#""headIban":null"#), "{text}");
    }
}
