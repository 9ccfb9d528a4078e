//! The export file: generated payments in one of the two published column
//! layouts, rendered as CSV or TSV in chunks while they are sent.
//!
//! The payments export's columns are not published with the API. The
//! sandbox writes the two schemas Partner Center documents for payments
//! (`docs/providers/receiving.md` §1.5):
//!
//! - [`Schema::PaymentsDownload`], "Payments download" / Export data →
//!   Payments (MicrosoftDocs partner-center-pr.fr-fr
//!   `partner-center/payout-statement.md`, table order);
//! - [`Schema::EarningsPayments`], the "Earnings – Payments report"
//!   (<https://learn.microsoft.com/en-us/partner-center/earnings/earnings-payments>,
//!   listed alphabetically, written in that order).
//!
//! Every row is a pure function of `(seed, rows, i)` ([`payment`]) so that
//! tests can compute what an export adds up to; the values that the filter
//! can select on but the file does not show (`payoutOrderType`,
//! `payoutStatusUpdateTS`) are part of it.

use std::io;

use bytes::Bytes;
use chrono::{DateTime, Days, NaiveDate, Utc};
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use rust_decimal::Decimal;

use super::filter::Filter;
use crate::mix::mix;

/// The column layout of a generated file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schema {
    /// 16 columns: `participantID, participantIDType, participantName,
    /// programName, earned, earnedUSD, withheldTax, salesTax, serviceFeeTax,
    /// totalPayment, currencyCode, paymentMethod, paymentId, paymentStatus,
    /// paymentStatusDescription, paymentDate`; dates `yyyy-MM-dd`.
    PaymentsDownload,
    /// 18 columns, alphabetical: `CIReferenceNumber, earned,
    /// earnedCurrencyCode, earnedUSD, participantID, participantIDType,
    /// participantName, paymentCurrencyCode, paymentDate, paymentID,
    /// paymentMethod, paymentStatus, paymentStatusDescription, programName,
    /// salesTax, serviceFeeTax, totalPayment, withheldTax`; dates as ISO
    /// timestamps.
    #[default]
    EarningsPayments,
}

impl Schema {
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Schema::PaymentsDownload => &[
                "participantID",
                "participantIDType",
                "participantName",
                "programName",
                "earned",
                "earnedUSD",
                "withheldTax",
                "salesTax",
                "serviceFeeTax",
                "totalPayment",
                "currencyCode",
                "paymentMethod",
                "paymentId",
                "paymentStatus",
                "paymentStatusDescription",
                "paymentDate",
            ],
            Schema::EarningsPayments => &[
                "CIReferenceNumber",
                "earned",
                "earnedCurrencyCode",
                "earnedUSD",
                "participantID",
                "participantIDType",
                "participantName",
                "paymentCurrencyCode",
                "paymentDate",
                "paymentID",
                "paymentMethod",
                "paymentStatus",
                "paymentStatusDescription",
                "programName",
                "salesTax",
                "serviceFeeTax",
                "totalPayment",
                "withheldTax",
            ],
        }
    }
}

/// Program names from the learn page's `programName` examples.
const PROGRAMS: [&str; 4] = [
    "CSP Indirect Provider",
    "CSP Direct Bill Partner",
    "CSP Indirect Reseller",
    "CSP 2T Indirect Provider",
];
/// `payoutOrderType` values of the sample README.
const ORDER_TYPES: [&str; 4] = ["REBATE", "COOP", "FEE", "SELL"];
const CURRENCIES: [&str; 4] = ["USD", "EUR", "TRY", "GBP"];
/// Statuses of the payout statement's table, with their friendly text.
const STATUSES: [(&str, &str); 5] = [
    ("Sent", "Payment sent to the bank"),
    ("Upcoming", "Payment will be sent in the next cycle"),
    ("In progress", "Payment is being processed"),
    ("Failed", "Payment failed; contact support"),
    ("Reversed", "Reversed by the bank; re-sent next cycle"),
];
const METHODS: [&str; 2] = ["Electronic bank transfer", "Credit note"];
/// Names that need quoting: a delimiter, a quote, a line break, a tab.
const NAMES: [&str; 5] = [
    "Contoso Ltd",
    "Fabrikam, Inc.",
    "O'Brien \"Trading\" GmbH",
    "Northwind\r\nTraders",
    "Tailspin\tToys",
];
/// Generated payment dates cover three years from here (the export's span
/// without a filter).
const FIRST_DAY: (i32, u32, u32) = (2023, 1, 1);
const DAYS: u64 = 3 * 365;

/// One generated payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// Empty for every 50th row: the page says paymentId is given for SAP
    /// payments only.
    pub payment_id: String,
    pub participant_id: String,
    pub participant_name: &'static str,
    pub program_name: &'static str,
    pub order_type: &'static str,
    pub currency: &'static str,
    pub earned: Decimal,
    pub withheld_tax: Decimal,
    pub sales_tax: Decimal,
    /// Net of withholding, sales tax included (payout statement).
    pub total_payment: Decimal,
    pub status: &'static str,
    pub status_description: &'static str,
    pub method: &'static str,
    pub payment_date: NaiveDate,
    pub status_updated: DateTime<Utc>,
}

/// Row `i` (0-based) of a generated export of `rows` rows: dates ascend
/// over three years; `FEE` payments are negative.
pub fn payment(seed: u64, rows: u64, i: u64) -> Payment {
    let h = mix(seed, i);
    let pick = |shift: u32, n: usize| ((h >> shift) as usize) % n;
    let (y, m, d) = FIRST_DAY;
    let first = NaiveDate::from_ymd_opt(y, m, d).expect("a valid day");
    let day = (u128::from(i) * u128::from(DAYS) / u128::from(rows.max(1))) as u64;
    let payment_date = first + Days::new(day);
    let order_type = ORDER_TYPES[pick(8, ORDER_TYPES.len())];
    let sign = if order_type == "FEE" { -1 } else { 1 };
    let earned = Decimal::new(sign * ((h >> 24) % 4_000_000) as i64 + sign, 2);
    let withheld_tax = if pick(40, 4) == 0 {
        (earned / Decimal::TEN).round_dp(2)
    } else {
        Decimal::ZERO
    };
    let sales_tax = Decimal::new(((h >> 44) % 500) as i64, 2) * Decimal::from(sign);
    let (status, status_description) = STATUSES[pick(16, STATUSES.len())];
    let status_updated = payment_date
        .and_hms_opt(
            (h % 24) as u32,
            ((h >> 5) % 60) as u32,
            ((h >> 11) % 60) as u32,
        )
        .expect("valid time")
        .and_utc();
    Payment {
        payment_id: if i % 50 == 49 {
            String::new()
        } else {
            format!("{:012}", 200_000_000_000 + i)
        },
        participant_id: format!("{}", 4_000_000 + (h >> 48) % 500),
        participant_name: NAMES[pick(4, NAMES.len())],
        program_name: PROGRAMS[pick(0, PROGRAMS.len())],
        order_type,
        currency: CURRENCIES[pick(12, CURRENCIES.len())],
        earned,
        withheld_tax,
        sales_tax,
        total_payment: earned - withheld_tax + sales_tax,
        status,
        status_description,
        method: METHODS[pick(20, METHODS.len())],
        payment_date,
        status_updated,
    }
}

impl Payment {
    /// The cells of the row in `schema`'s column order.
    fn cells(&self, schema: Schema) -> Vec<String> {
        let usd = |d: Decimal| {
            // A fixed made-up rate: earnedUSD only has to look plausible.
            let rate = match self.currency {
                "EUR" => Decimal::new(108, 2),
                "GBP" => Decimal::new(127, 2),
                "TRY" => Decimal::new(3, 2),
                _ => Decimal::ONE,
            };
            (d * rate).round_dp(2).to_string()
        };
        let value = |column: &str| -> String {
            match column {
                "CIReferenceNumber" => format!("CI-{}", self.participant_id),
                "participantID" => self.participant_id.clone(),
                "participantIDType" => "MPN".into(),
                "participantName" => self.participant_name.into(),
                "programName" => self.program_name.into(),
                "earned" => self.earned.to_string(),
                "earnedCurrencyCode" | "currencyCode" | "paymentCurrencyCode" => {
                    self.currency.into()
                }
                "earnedUSD" => usd(self.earned),
                "withheldTax" => self.withheld_tax.to_string(),
                "salesTax" => self.sales_tax.to_string(),
                "serviceFeeTax" => "0.00".into(),
                "totalPayment" => self.total_payment.to_string(),
                "paymentMethod" => self.method.into(),
                "paymentId" | "paymentID" => self.payment_id.clone(),
                "paymentStatus" => self.status.into(),
                "paymentStatusDescription" => self.status_description.into(),
                "paymentDate" => match schema {
                    Schema::PaymentsDownload => self.payment_date.format("%Y-%m-%d").to_string(),
                    Schema::EarningsPayments => {
                        format!("{}T00:00:00Z", self.payment_date.format("%Y-%m-%d"))
                    }
                },
                other => unreachable!("no column {other}"),
            }
        };
        schema.columns().iter().map(|c| value(c)).collect()
    }
}

/// The text format asked for with `fileformat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TextFormat {
    #[default]
    Csv,
    Tsv,
}

impl TextFormat {
    fn delimiter(self) -> u8 {
        match self {
            TextFormat::Csv => b',',
            TextFormat::Tsv => b'\t',
        }
    }
}

/// Appends one record, quoting a field (RFC 4180) when it holds the
/// delimiter, a quote or a line break.
fn push_record<S: AsRef<str>>(out: &mut Vec<u8>, fields: &[S], delimiter: u8) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        let f = f.as_ref();
        if f.bytes()
            .any(|b| b == delimiter || matches!(b, b'"' | b'\r' | b'\n'))
        {
            out.push(b'"');
            out.extend_from_slice(f.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(f.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// What a generated file holds.
#[derive(Clone, Debug)]
pub struct Generated {
    pub rows: u64,
    pub seed: u64,
    pub schema: Schema,
}

/// Rows rendered per chunk.
const CHUNK: u64 = 2048;

impl Generated {
    /// The rows `part` of `parts` holds (zip entries split the rows).
    fn range(&self, part: u64, parts: u64) -> std::ops::Range<u64> {
        let parts = parts.max(1);
        (self.rows * part / parts)..(self.rows * (part + 1) / parts)
    }

    /// The rows of `part` that pass `filter`, header first, in `format`.
    pub fn text(
        &self,
        filter: Option<Filter>,
        format: TextFormat,
        part: u64,
        parts: u64,
    ) -> BoxStream<'static, io::Result<Bytes>> {
        let me = self.clone();
        let range = self.range(part, parts);
        let d = format.delimiter();
        let mut header = Vec::new();
        push_record(&mut header, self.schema.columns(), d);
        let starts = (range.start..range.end).step_by(CHUNK as usize);
        let chunks = stream::iter(starts).map(move |start| {
            let mut out = Vec::with_capacity(CHUNK as usize * 220);
            for i in start..(start + CHUNK).min(range.end) {
                let p = payment(me.seed, me.rows, i);
                if filter.as_ref().is_none_or(|f| f.matches(&p)) {
                    push_record(&mut out, &p.cells(me.schema), d);
                }
            }
            Ok(Bytes::from(out))
        });
        stream::once(async move { Ok(Bytes::from(header)) })
            .chain(chunks)
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_payment_is_net_of_withholding_with_sales_tax() {
        for i in 0..200 {
            let p = payment(3, 200, i);
            assert_eq!(p.total_payment, p.earned - p.withheld_tax + p.sales_tax);
            assert_eq!(p.payment_id.is_empty(), i % 50 == 49);
        }
        let cells = payment(3, 200, 0).cells(Schema::PaymentsDownload);
        assert_eq!(cells.len(), Schema::PaymentsDownload.columns().len());
    }
}
