//! Reading the provider's reports (`../shared/SPEC.md` §4 and §5): the
//! breakdown of one payment (`paydrop report transactions`) and the payment
//! report of a date range (`paydrop report payments`).
//!
//! # Authentication
//!
//! Both calls carry the report token as `Authorization: Bearer {token}`
//! ([`HEADER_TOKEN`]); the token comes from `PAYDROP_REPORT_TOKEN` or
//! `[report] token` in `paydrop.toml`, is held as a [`Secret`] and sent as a
//! sensitive header value, so it never reaches a log or an error. 429 and
//! 5xx answers and failed connections are retried with backoff (honouring
//! `Retry-After`); 401 asks for the token, 404 names what was not found.
//!
//! # Breakdown checks
//!
//! Every item of a payment's breakdown is checked with these rules (all
//! amounts exact; a missing payout or commission amount counts as 0, a
//! missing rate skips its rule; `unit` is the currency's minor unit, 0.01
//! for TRY, used only where a rate forces rounding):
//!
//! * **payout split** — `merchantPayoutAmount +
//!   subMerchantMemberPayoutAmount + bankCommissionRateAmount = paidPrice`,
//!   exactly: what the buyer paid is shared out completely between the
//!   merchant, the sub-merchant and the bank.
//! * **interest** — `price + merchantCommissionRateAmount = paidPrice`,
//!   exactly: the instalment interest passed on to the buyer is the only
//!   difference between the basket price and what was charged.
//! * **bank commission rate** — `bankCommissionRateAmount` is within one
//!   `unit` of `paidPrice × bankCommissionRate / 100`.
//! * **interest rate** — `merchantCommissionRateAmount` is within one `unit`
//!   of `price × merchantCommissionRate / 100`.
//!
//! An item that breaks a rule is flagged with the rule, both sides and the
//! difference; `paydrop report transactions` then exits with 1.
//!
//! # The payment report
//!
//! The answer `{"fail":false,"statusCode":200,"result":[…]}` is read as a
//! stream by [`PaymentList`]: it walks to `result` and parses one
//! transaction at a time (each at most [`MAX_TRANSACTION_BYTES`]), so the
//! memory used does not grow with the report. Numbers may be sloppy as in
//! the published sample (`0,00`, `1.234,56`): [`json::decimal`] documents how
//! they are read, exactly. `maskedCardNumber` is masked again to first 6 /
//! last 4 (a report that sends a whole card number is counted in the
//! summary). The totals the report declares (`totalCount`, `totalAmount`,
//! `totalNetAmount`, `totalCommissionAmount`, repeated on every transaction
//! as in the sample, or beside `result`) are checked against the sums of the
//! transactions.
//!
//! The transactions are written as CSV or JSON Lines with the columns of
//! [`PAYMENT_COLUMNS`]; in JSON Lines every value is a string (decimals
//! exact, never floats) or null.

pub mod json;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::Duration;

use chrono::NaiveDate;
use futures::TryStreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use rust_decimal::Decimal;

use crate::config::Secret;
use crate::currency::Currency;
use crate::mask;
use crate::results::Tally;
use crate::submit::RetryPolicy;
use crate::upload::{describe, read_capped, retry_after};
use json::{JsonError, Value};

/// Path of the payment report (Payzee).
pub const PAYMENT_LIST_PATH: &str = "/api/ppg/Report/GetPaymentList";
/// Prefix of the breakdown path: `{prefix}{id}/transactions`.
pub const TRANSACTIONS_PREFIX: &str = "/payment-reporting/v1/payments/";
/// The header carrying the report token, as `Bearer {token}`.
pub const HEADER_TOKEN: &str = "authorization";
/// Largest single transaction of a payment report.
pub const MAX_TRANSACTION_BYTES: usize = 1 << 20;
/// Largest breakdown answer (one payment's items).
const MAX_BREAKDOWN_BYTES: usize = 16 << 20;

/// The breakdown path of a payment.
pub fn transactions_path(payment_id: u64) -> String {
    format!("{TRANSACTIONS_PREFIX}{payment_id}/transactions")
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "the provider refused the report token (HTTP 401): set PAYDROP_REPORT_TOKEN or \
         [report] token in paydrop.toml"
    )]
    Unauthorized,
    #[error("{what} was not found at the provider (HTTP 404)")]
    NotFound { what: String },
    #[error("the provider refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("no answer after {attempts} attempts ({last}); try again later")]
    GaveUp { attempts: u32, last: String },
    #[error("the provider reported a failure: {0}")]
    Provider(String),
    #[error("{0}")]
    Dates(String),
    #[error("the report cannot be read: {0}")]
    Json(#[from] JsonError),
    #[error("transaction {index}{order}: {reason}")]
    Field {
        index: u64,
        order: String,
        reason: String,
    },
    #[error("writing the report: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Setup(String),
}

// ---------------------------------------------------------------------------
// The client.

/// A client for both report endpoints.
#[derive(Clone)]
pub struct ReportClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
    retry: RetryPolicy,
}

impl ReportClient {
    pub fn new(base: &str, token: Secret, retry: RetryPolicy) -> Result<Self, ReportError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A huge report streams for long; a stalled one does not.
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| ReportError::Setup(describe(&e)))?;
        Ok(ReportClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
            retry,
        })
    }

    fn authorization(&self) -> Result<HeaderValue, ReportError> {
        let mut v =
            HeaderValue::from_str(&format!("Bearer {}", self.token.expose())).map_err(|_| {
                ReportError::Setup("the report token has characters not allowed in a header".into())
            })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// Sends the request `build` makes until it gets a definite answer: a
    /// success, or an error other than 429 / 5xx / no connection.
    async fn call(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ReportError> {
        let auth = self.authorization()?;
        let attempts = self.retry.max_attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            let (last, wait) = match build(&self.http)
                .header(AUTHORIZATION, auth.clone())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r)
                    if r.status() == StatusCode::TOO_MANY_REQUESTS
                        || r.status().is_server_error() =>
                {
                    (
                        format!("HTTP {}", r.status().as_u16()),
                        retry_after(r.headers()),
                    )
                }
                Ok(r) => return Err(refusal(what, r).await),
                Err(e) if e.is_connect() || e.is_timeout() => (describe(&e), None),
                Err(e) => return Err(ReportError::Setup(describe(&e))),
            };
            if n >= attempts {
                return Err(ReportError::GaveUp { attempts, last });
            }
            tracing::warn!(attempt = n, answer = %last, "{what}: retrying");
            tokio::time::sleep(self.retry.delay(n - 1, wait)).await;
        }
    }

    /// The breakdown of one payment.
    pub async fn transactions(&self, payment_id: u64) -> Result<Breakdown, ReportError> {
        let url = format!("{}{}", self.base, transactions_path(payment_id));
        let response = self
            .call(&format!("payment {payment_id}"), |http| http.get(&url))
            .await?;
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| ReportError::Setup(describe(&e)))?
        {
            if body.len() + chunk.len() > MAX_BREAKDOWN_BYTES {
                return Err(ReportError::Json(JsonError::TooLarge {
                    offset: 0,
                    limit: MAX_BREAKDOWN_BYTES,
                }));
            }
            body.extend_from_slice(&chunk);
        }
        Breakdown::parse(payment_id, &body[..])
    }

    /// Streams the payment report of `query` into `out` as `format`;
    /// returns what was read and the writer.
    pub async fn payments<W: Write + Send + 'static>(
        &self,
        query: &PaymentQuery,
        format: Format,
        out: W,
    ) -> Result<(PaymentSummary, W), ReportError> {
        let url = format!("{}{PAYMENT_LIST_PATH}", self.base);
        let body = query.body();
        let response = self
            .call("the payment report", |http| http.post(&url).json(&body))
            .await?;
        let stream = response.bytes_stream().map_err(io::Error::other);
        let input = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        tokio::task::spawn_blocking(move || {
            let mut out = out;
            let summary = write_payments(io::BufReader::new(input), format, &mut out)?;
            Ok((summary, out))
        })
        .await
        .map_err(|e| ReportError::Setup(e.to_string()))?
    }
}

/// The error for a definite refusal, with the provider's message.
async fn refusal(what: &str, response: reqwest::Response) -> ReportError {
    let status = response.status();
    let text = read_capped(response).await.unwrap_or_default();
    match status {
        StatusCode::UNAUTHORIZED => ReportError::Unauthorized,
        StatusCode::NOT_FOUND => ReportError::NotFound { what: what.into() },
        _ => ReportError::Refused {
            status: status.as_u16(),
            message: provider_message(&text),
        },
    }
}

/// The message of an error answer (Payzee's `message`, Craftgate's
/// `errors.errorDescription`), else the start of the text; card numbers in
/// it are masked.
fn provider_message(text: &str) -> String {
    let v = json::Reader::new(text.as_bytes(), text.len() + 1)
        .value()
        .ok();
    let found = v.as_ref().and_then(|v| {
        v.get("message")
            .or_else(|| v.get("Message"))
            .or_else(|| v.get("errors").and_then(|e| e.get("errorDescription")))
            .and_then(Value::text)
    });
    let text = found.unwrap_or_else(|| text.chars().take(300).collect());
    mask::card_numbers(text.trim())
}

// ---------------------------------------------------------------------------
// Values of a JSON object.

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::text).unwrap_or_default()
}

fn decimal(v: &Value, key: &str) -> Result<Option<Decimal>, String> {
    v.get(key)
        .and_then(Value::text)
        .map(|t| json::decimal(&t).map_err(|e| format!("{key} {e}")))
        .transpose()
}

// ---------------------------------------------------------------------------
// The payment breakdown.

/// Money fields of a breakdown item, in output order.
pub const ITEM_MONEY: [&str; 12] = [
    "price",
    "paidPrice",
    "walletPrice",
    "refundablePrice",
    "merchantCommissionRate",
    "merchantCommissionRateAmount",
    "bankCommissionRate",
    "bankCommissionRateAmount",
    "merchantPayoutAmount",
    "subMerchantMemberPrice",
    "subMerchantMemberPayoutRate",
    "subMerchantMemberPayoutAmount",
];

/// Text fields of a breakdown item, in output order (`payoutStatus` is the
/// merchant's and the sub-merchant's status of the `payoutStatus` object).
pub const ITEM_TEXT: [&str; 11] = [
    "id",
    "name",
    "externalId",
    "createdDate",
    "subMerchantMemberId",
    "transactionStatus",
    "transactionStatusDate",
    "blockageResolvedDate",
    "refundStatus",
    "currency",
    "payoutStatus",
];

/// One item of a payment's breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Values of [`ITEM_TEXT`].
    pub text: Vec<String>,
    /// Values of [`ITEM_MONEY`].
    pub money: Vec<Option<Decimal>>,
}

/// A rule an item breaks (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flag {
    pub rule: &'static str,
    pub message: String,
}

impl Item {
    fn from_value(v: &Value) -> Result<Item, String> {
        let payout_status = v.get("payoutStatus").map_or_else(String::new, |s| {
            let part = |k: &str| s.get(k).and_then(Value::text);
            match (part("merchantStatus"), part("subMerchantMemberStatus")) {
                (None, None) => s.text().unwrap_or_default(),
                (m, sub) => format!(
                    "merchant {} / sub-merchant {}",
                    m.as_deref().unwrap_or("-"),
                    sub.as_deref().unwrap_or("-")
                ),
            }
        });
        let currency = v
            .get("currency")
            .or_else(|| v.get("payout").and_then(|p| p.get("currency")))
            .and_then(Value::text)
            .unwrap_or_default();
        let text = ITEM_TEXT
            .iter()
            .map(|k| match *k {
                "payoutStatus" => payout_status.clone(),
                "currency" => currency.clone(),
                _ => text(v, k),
            })
            .collect();
        let money = ITEM_MONEY
            .iter()
            .map(|k| decimal(v, k))
            .collect::<Result<_, _>>()?;
        Ok(Item { text, money })
    }

    /// A text field of [`ITEM_TEXT`].
    pub fn text(&self, name: &str) -> &str {
        ITEM_TEXT
            .iter()
            .position(|k| *k == name)
            .map_or("", |i| &self.text[i])
    }

    /// A money field of [`ITEM_MONEY`].
    pub fn money(&self, name: &str) -> Option<Decimal> {
        ITEM_MONEY
            .iter()
            .position(|k| *k == name)
            .and_then(|i| self.money[i])
    }

    /// The rules this item breaks.
    pub fn check(&self) -> Vec<Flag> {
        let mut flags = Vec::new();
        let Some(paid) = self.money("paidPrice") else {
            flags.push(Flag {
                rule: "paid price",
                message: "paidPrice is missing: nothing can be checked".into(),
            });
            return flags;
        };
        let z = |name: &str| self.money(name).unwrap_or_default();
        let unit = Currency::lookup(self.text("currency"))
            .map_or(Decimal::new(1, 2), |c| Decimal::new(1, c.minor_units));
        let split = z("merchantPayoutAmount")
            + z("subMerchantMemberPayoutAmount")
            + z("bankCommissionRateAmount");
        if split != paid {
            flags.push(Flag {
                rule: "payout split",
                message: format!(
                    "merchantPayoutAmount {} + subMerchantMemberPayoutAmount {} + \
                     bankCommissionRateAmount {} = {split}, but paidPrice is {paid} \
                     (difference {})",
                    z("merchantPayoutAmount"),
                    z("subMerchantMemberPayoutAmount"),
                    z("bankCommissionRateAmount"),
                    split - paid
                ),
            });
        }
        if let Some(price) = self.money("price") {
            let charged = price + z("merchantCommissionRateAmount");
            if charged != paid {
                flags.push(Flag {
                    rule: "interest",
                    message: format!(
                        "price {price} + merchantCommissionRateAmount {} = {charged}, but \
                         paidPrice is {paid} (difference {})",
                        z("merchantCommissionRateAmount"),
                        charged - paid
                    ),
                });
            }
        }
        for (rule, rate, base, amount) in [
            (
                "bank commission rate",
                "bankCommissionRate",
                Some(paid),
                "bankCommissionRateAmount",
            ),
            (
                "interest rate",
                "merchantCommissionRate",
                self.money("price"),
                "merchantCommissionRateAmount",
            ),
        ] {
            let (Some(r), Some(b)) = (self.money(rate), base) else {
                continue;
            };
            let expected = b * r / Decimal::ONE_HUNDRED;
            if (expected - z(amount)).abs() > unit {
                flags.push(Flag {
                    rule,
                    message: format!(
                        "{amount} is {}, but {r}% of {b} is {}",
                        z(amount),
                        expected.round_dp(unit.scale() + 2).normalize()
                    ),
                });
            }
        }
        flags
    }
}

/// A payment's breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct Breakdown {
    pub payment_id: u64,
    pub items: Vec<Item>,
}

impl Breakdown {
    /// Reads the answer: Craftgate's `{"data":{"items":[…]}}`, or
    /// `{"items":[…]}`, `{"data":[…]}` or a bare array.
    pub fn parse<R: Read>(payment_id: u64, input: R) -> Result<Breakdown, ReportError> {
        let v = json::Reader::new(input, MAX_BREAKDOWN_BYTES).value()?;
        if let Some(e) = v.get("errors") {
            return Err(ReportError::Provider(
                e.get("errorDescription")
                    .and_then(Value::text)
                    .unwrap_or_else(|| "errors without a description".into()),
            ));
        }
        let data = v.get("data").unwrap_or(&v);
        let items = match data.get("items").unwrap_or(data) {
            Value::Array(items) => items,
            _ => {
                return Err(ReportError::Provider(
                    "the answer has no list of items (expected data.items)".into(),
                ))
            }
        };
        let items = items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Item::from_value(v).map_err(|reason| ReportError::Field {
                    index: i as u64 + 1,
                    order: String::new(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Breakdown { payment_id, items })
    }

    /// Items that break a rule.
    pub fn flagged(&self) -> usize {
        self.items.iter().filter(|i| !i.check().is_empty()).count()
    }

    /// Sums of the money fields that add up (not the rates).
    fn sums(&self) -> Vec<Option<Decimal>> {
        ITEM_MONEY
            .iter()
            .map(|k| {
                (!k.ends_with("Rate")).then(|| self.items.iter().filter_map(|i| i.money(k)).sum())
            })
            .collect()
    }

    /// The breakdown as text for a terminal.
    pub fn print(&self, out: &mut impl Write) -> io::Result<()> {
        const SHOWN: [&str; 6] = [
            "price",
            "paidPrice",
            "merchantCommissionRateAmount",
            "bankCommissionRateAmount",
            "merchantPayoutAmount",
            "subMerchantMemberPayoutAmount",
        ];
        writeln!(
            out,
            "payment {} — {} items",
            self.payment_id,
            self.items.len()
        )?;
        writeln!(
            out,
            "  {:<10} {:>12} {:>12} {:>10} {:>10} {:>12} {:>12}  status / refund",
            "item", "price", "paidPrice", "interest", "bank comm", "merchant", "sub-merchant"
        )?;
        let row = |out: &mut dyn Write, label: &str, m: &dyn Fn(&str) -> String, tail: &str| {
            write!(out, "  {label:<10}")?;
            for (k, w) in SHOWN.iter().zip([12, 12, 10, 10, 12, 12]) {
                write!(out, " {:>w$}", m(k))?;
            }
            writeln!(out, "  {tail}")
        };
        for item in &self.items {
            let flags = item.check();
            let tail = format!(
                "{} / {}{}",
                item.text("transactionStatus"),
                item.text("refundStatus"),
                if flags.is_empty() { "" } else { "  FLAGGED" }
            );
            let m = |k: &str| item.money(k).map_or_else(|| "-".into(), |d| d.to_string());
            row(out, item.text("id"), &m, &tail)?;
            for f in flags {
                writeln!(out, "      ! {}: {}", f.rule, f.message)?;
            }
        }
        let sums = self.sums();
        let total = |k: &str| {
            let i = ITEM_MONEY.iter().position(|n| *n == k).unwrap_or(0);
            sums[i].map_or_else(String::new, |d| d.to_string())
        };
        row(out, "total", &total, "")?;
        let flagged = self.flagged();
        if flagged == 0 {
            writeln!(out, "every item adds up")
        } else {
            writeln!(
                out,
                "{flagged} of {} items do not add up (see the rules in `paydrop report \
                 transactions --help`)",
                self.items.len()
            )
        }
    }

    /// The breakdown as CSV: every field, the rules broken, and a total row.
    pub fn write_csv<W: Write>(&self, out: W) -> io::Result<()> {
        let mut w = csv::Writer::from_writer(out);
        let header = ITEM_TEXT.iter().chain(&ITEM_MONEY).chain(&["check"]);
        w.write_record(header)?;
        for item in &self.items {
            let check: Vec<String> = item
                .check()
                .into_iter()
                .map(|f| format!("{}: {}", f.rule, f.message))
                .collect();
            let money = item.money.iter().map(|m| m.map(|d| d.to_string()));
            w.write_record(
                item.text
                    .iter()
                    .cloned()
                    .chain(money.map(Option::unwrap_or_default))
                    .chain([check.join("; ")]),
            )?;
        }
        let mut total = vec![String::new(); ITEM_TEXT.len()];
        total[0] = "total".into();
        total.extend(
            self.sums()
                .into_iter()
                .map(|s| s.map(|d| d.to_string()).unwrap_or_default()),
        );
        total.push(String::new());
        w.write_record(total)?;
        w.flush()
    }
}

// ---------------------------------------------------------------------------
// The payment report: query.

/// The dates of a payment report request, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentQuery {
    pub txn_start: NaiveDate,
    pub txn_end: NaiveDate,
    pub payment: Option<(NaiveDate, NaiveDate)>,
}

/// Parses a `yyyy-MM-dd` date given as `name`.
pub fn parse_date(name: &str, value: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .ok()
        .filter(|_| value.trim().len() == 10)
        .ok_or_else(|| format!("{name} '{value}' is not a date: write yyyy-MM-dd, e.g. 2021-10-01"))
}

/// The report's date rules, shared with the sandbox: a range runs forward,
/// and a sales date cannot be after the provider's today (Istanbul).
/// Payment dates may be in the future: settlements are scheduled ahead.
pub fn check_range(
    (from_name, from): (&str, NaiveDate),
    (to_name, to): (&str, NaiveDate),
    today: Option<NaiveDate>,
) -> Result<(), String> {
    if from > to {
        return Err(format!(
            "{from_name} {from} is after {to_name} {to}: the range must run forward"
        ));
    }
    match today {
        Some(today) if to > today => Err(format!(
            "{to_name} {to} is in the future (today is {today} in Istanbul): no sales exist yet"
        )),
        _ => Ok(()),
    }
}

impl PaymentQuery {
    /// Checks the dates (as typed) before anything is sent.
    pub fn new(
        from: &str,
        to: &str,
        payment: Option<(&str, &str)>,
        today: NaiveDate,
    ) -> Result<PaymentQuery, ReportError> {
        let dates = || -> Result<PaymentQuery, String> {
            let txn_start = parse_date("--from", from)?;
            let txn_end = parse_date("--to", to)?;
            check_range(("--from", txn_start), ("--to", txn_end), Some(today))?;
            let payment = match payment {
                Some((pf, pt)) => {
                    let (pf, pt) = (
                        parse_date("--payment-from", pf)?,
                        parse_date("--payment-to", pt)?,
                    );
                    check_range(("--payment-from", pf), ("--payment-to", pt), None)?;
                    Some((pf, pt))
                }
                None => None,
            };
            Ok(PaymentQuery {
                txn_start,
                txn_end,
                payment,
            })
        };
        dates().map_err(|e| ReportError::Dates(format!("{e}; nothing was sent")))
    }

    /// The request body.
    pub fn body(&self) -> serde_json::Value {
        let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        let mut body = serde_json::json!({
            "txnStartDate": day(self.txn_start),
            "txnEndDate": day(self.txn_end),
        });
        if let Some((from, to)) = self.payment {
            body["paymentStartDate"] = day(from).into();
            body["paymentEndDate"] = day(to).into();
        }
        body
    }
}

// ---------------------------------------------------------------------------
// The payment report: transactions.

/// Text fields of a transaction, copied as they are.
const PAYMENT_TEXT: [&str; 10] = [
    "bankOrderNumber",
    "payzeeTrnDate",
    "trnStatus",
    "transactionType",
    "paymentType",
    "installmentCount",
    "cardBrand",
    "cardType",
    "merchantNumber",
    "iban",
];

/// Columns written for each transaction: the provider's names, plus
/// `currency` (the ISO alphabetic code of `payzeeCurrencyCode`).
pub const PAYMENT_COLUMNS: [&str; 18] = [
    "payzeeTrnOrderId",
    "trnAmount",
    "netAmount",
    "commission",
    "commissionRate",
    "currency",
    "payzeeCurrencyCode",
    "maskedCardNumber",
    PAYMENT_TEXT[0],
    PAYMENT_TEXT[1],
    PAYMENT_TEXT[2],
    PAYMENT_TEXT[3],
    PAYMENT_TEXT[4],
    PAYMENT_TEXT[5],
    PAYMENT_TEXT[6],
    PAYMENT_TEXT[7],
    PAYMENT_TEXT[8],
    PAYMENT_TEXT[9],
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
    pub order_id: String,
    pub trn_amount: Decimal,
    pub net_amount: Option<Decimal>,
    pub commission: Option<Decimal>,
    pub commission_rate: Option<Decimal>,
    pub currency: Currency,
    /// First 6 / last 4 at most.
    pub masked_card: String,
    /// The report sent more of the card number than that.
    pub remasked: bool,
    /// Values of the text fields, in [`PAYMENT_COLUMNS`] order.
    pub text: Vec<String>,
    pub declared: Declared,
}

impl Payment {
    fn from_value(v: &Value) -> Result<Payment, String> {
        let required = |k: &str| {
            Some(text(v, k))
                .filter(|t| !t.is_empty())
                .ok_or_else(|| format!("{k} is missing"))
        };
        let order_id = required("payzeeTrnOrderId")?;
        let code = required("payzeeCurrencyCode")?;
        let currency = Currency::lookup(if code.eq_ignore_ascii_case("TL") {
            "TRY"
        } else {
            &code
        })
        .ok_or_else(|| {
            format!("payzeeCurrencyCode '{code}' is not an ISO 4217 code (949 TL, 840 USD, …)")
        })?;
        let card = text(v, "maskedCardNumber");
        let masked_card = mask::card(&card);
        Ok(Payment {
            trn_amount: decimal(v, "trnAmount")?.ok_or("trnAmount is missing")?,
            net_amount: decimal(v, "netAmount")?,
            commission: decimal(v, "commission")?,
            commission_rate: decimal(v, "commissionRate")?,
            currency,
            remasked: masked_card != card,
            masked_card,
            text: PAYMENT_TEXT.iter().map(|k| text(v, k)).collect(),
            declared: Declared::from_value(v)?,
            order_id,
        })
    }

    /// Values in [`PAYMENT_COLUMNS`] order (`None` for absent decimals).
    pub fn cells(&self) -> Vec<Option<String>> {
        let d = |d: Option<Decimal>| d.map(|d| d.to_string());
        let mut cells = vec![
            Some(self.order_id.clone()),
            d(Some(self.trn_amount)),
            d(self.net_amount),
            d(self.commission),
            d(self.commission_rate),
            Some(self.currency.code.to_string()),
            Some(self.currency.numeric.to_string()),
            Some(self.masked_card.clone()),
        ];
        cells.extend(self.text.iter().map(|t| Some(t.clone())));
        cells
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
                                "message" | "Message" => self.message = v.text(),
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
                "fail {}, statusCode {}: {}",
                self.fail,
                self.status.as_deref().unwrap_or("-"),
                mask::card_numbers(self.message.as_deref().unwrap_or("no message"))
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
    /// `trnAmount` per currency.
    pub by_currency: BTreeMap<String, Tally>,
    /// Card numbers that arrived with more than first 6 / last 4.
    pub remasked: u64,
    /// The totals the report declares (first transaction, or envelope).
    pub declared: Declared,
    /// Transactions that declare other totals than the first one.
    pub inconsistent_declarations: u64,
}

impl PaymentSummary {
    fn add(&mut self, p: &Payment) {
        self.transactions += 1;
        self.trn_amount += p.trn_amount;
        self.net_amount += p.net_amount.unwrap_or_default();
        self.commission += p.commission.unwrap_or_default();
        self.by_currency
            .entry(p.currency.code.into())
            .or_default()
            .add(p.trn_amount);
        self.remasked += u64::from(p.remasked);
        if self.transactions == 1 {
            self.declared = p.declared.clone();
        } else if p.declared != self.declared {
            self.inconsistent_declarations += 1;
        }
    }

    /// Where the declared totals disagree with the transactions; empty when
    /// they agree (or none were declared).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
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
                    actual - d
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
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
        summary.add(&p);
        let cells = p.cells();
        if let Some(w) = csv_out.as_mut() {
            w.write_record(cells.iter().map(|c| c.as_deref().unwrap_or("")))
                .map_err(io::Error::from)?;
        }
        if let Some(w) = jsonl_out.as_mut() {
            // By hand, to keep the columns in their order.
            for (i, (k, v)) in PAYMENT_COLUMNS.iter().zip(&cells).enumerate() {
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
        // currency code and count in place of "string" and 0.
        let sample = r#"{ "fail": false, "statusCode": 200, "result": [ { "bankOrderNumber": "string", "cardBrand": "string", "cardLoyaltyBrand": "string", "cardTransferStatus": "string", "cardType": "string", "commission": 0.00, "commissionRate": 0,0, "eftStatus": "string", "headCommission": 0, "headCommissionRate": 0, "headIban": "string", "headTradeName": "string", "iban": "string", "installmentCount": 1, "issuerBankName": "string", "maskedCardNumber": "string", "merchantNumber": "string", "netAmount": 0,00, "payzeeAuthorizationNumber": "string", "payzeeCreateDate": "string", "payzeeCurrencyCode": "949", "payzeeDiscountRateAcq": 0, "payzeeMerchantName": "string", "payzeeModifyDate": "string", "payzeePfAcquiredBankName": "string", "trnAmount": 0, "payzeeTrnDate": "string", "payzeeTrnOrderId": "string", "tradeName": "string", "transactionType": "string", "trnStatus": "string", "usedReward": 0, "paymentType": "string", "totalCount": 1, "totalAmount": 0, "totalNetAmount": 0, "totalCommissionAmount": 0, "totalHeadCommissionAmount": 0 } ] }"#;
        let mut out = Vec::new();
        let s = write_payments(sample.as_bytes(), Format::Jsonl, &mut out).unwrap();
        assert_eq!(s.transactions, 1);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains(r#""netAmount":"0.00""#), "{line}");
        assert!(line.contains(r#""commissionRate":"0.0""#), "{line}");
        assert!(line.contains(r#""currency":"TRY""#), "{line}");
    }

    #[test]
    fn breakdown_rules() {
        let item = |payout: &str| {
            format!(
                r#"{{"data":{{"items":[{{"id":1,"price":100,"paidPrice":105.00,"merchantCommissionRate":5,
                "merchantCommissionRateAmount":5.00,"bankCommissionRate":2.5,"bankCommissionRateAmount":2.63,
                "merchantPayoutAmount":{payout},"subMerchantMemberPayoutAmount":90.00,
                "payout":{{"currency":"TRY"}}}}]}}}}"#
            )
        };
        let ok = Breakdown::parse(7, item("12.37").as_bytes()).unwrap();
        assert_eq!(ok.flagged(), 0, "{:?}", ok.items[0].check());
        let bad = Breakdown::parse(7, item("12.38").as_bytes()).unwrap();
        let flags = bad.items[0].check();
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].rule, "payout split");
        assert!(
            flags[0].message.contains("difference 0.01"),
            "{}",
            flags[0].message
        );
    }
}
