//! A payment's breakdown as Craftgate reports it: every field of its items
//! (`ReportingPaymentTransaction` of the public clients, with the nested
//! `subMerchantMember`, `payout` and `payoutStatus`;
//! `docs/providers/receiving.md` §2.4), exact decimals, printed and written
//! as CSV.
//!
//! # Checks
//!
//! Craftgate states no rule relating the amounts of an item: the docs only
//! describe each field. paydrop therefore fails on nothing but unreadable
//! values; what it checks is a **heuristic**, reported as a warning that
//! says so:
//!
//! * **payout split (heuristic)** — `merchantPayoutAmount +
//!   subMerchantMemberPayoutAmount + bankCommissionRateAmount` against
//!   `paidPrice` (the docs' own example adds up this way);
//! * **bank commission rate (heuristic)** — `bankCommissionRateAmount`
//!   within one minor unit of `paidPrice × bankCommissionRate / 100`.
//!
//! Amounts are compared exactly; a missing amount skips the check.

use std::io::{self, Read, Write};

use rust_decimal::Decimal;

use super::json::{self, Value};
use super::{decimal, text, ReportError};
use crate::currency::Currency;
use crate::totals::Tally;

/// Largest breakdown answer read.
const MAX_BYTES: usize = 16 << 20;

/// Money and rate fields of an item, in output order (`payout.*` are the
/// fields of the nested `payout`).
pub const ITEM_MONEY: [&str; 16] = [
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
    "payout.parity",
    "payout.paidPrice",
    "payout.merchantPayoutAmount",
    "payout.subMerchantMemberPayoutAmount",
];

/// Text fields of an item, in output order.
pub const ITEM_TEXT: [&str; 35] = [
    "id",
    "name",
    "externalId",
    "createdDate",
    "transactionStatus",
    "transactionStatusDate",
    "blockageResolvedDate",
    "refundStatus",
    "payout.currency",
    "payoutStatus.merchantStatus",
    "payoutStatus.merchantStatusDate",
    "payoutStatus.subMerchantMemberStatus",
    "payoutStatus.subMerchantMemberStatusDate",
    "subMerchantMemberId",
    "subMerchantMember.id",
    "subMerchantMember.createdDate",
    "subMerchantMember.updatedDate",
    "subMerchantMember.status",
    "subMerchantMember.isBuyer",
    "subMerchantMember.isSubMerchant",
    "subMerchantMember.memberType",
    "subMerchantMember.memberExternalId",
    "subMerchantMember.name",
    "subMerchantMember.email",
    "subMerchantMember.address",
    "subMerchantMember.phoneNumber",
    "subMerchantMember.contactName",
    "subMerchantMember.contactSurname",
    "subMerchantMember.legalCompanyTitle",
    "subMerchantMember.taxOffice",
    "subMerchantMember.taxNumber",
    "subMerchantMember.settlementEarningsDestination",
    "subMerchantMember.negativeWalletAmountLimit",
    "subMerchantMember.iban",
    "subMerchantMember.settlementDelayCount",
];

/// One item of a payment's breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Values of [`ITEM_TEXT`] (empty when absent).
    pub text: Vec<String>,
    /// Values of [`ITEM_MONEY`].
    pub money: Vec<Option<Decimal>>,
}

/// A heuristic an item does not meet: a warning, never a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flag {
    pub rule: &'static str,
    pub message: String,
}

impl Item {
    fn from_value(v: &Value) -> Result<Item, String> {
        Ok(Item {
            text: ITEM_TEXT.iter().map(|k| text(v, k)).collect(),
            money: ITEM_MONEY
                .iter()
                .map(|k| decimal(v, k))
                .collect::<Result<_, _>>()?,
        })
    }

    /// A field of [`ITEM_TEXT`].
    pub fn text(&self, name: &str) -> &str {
        ITEM_TEXT
            .iter()
            .position(|k| *k == name)
            .map_or("", |i| &self.text[i])
    }

    /// A field of [`ITEM_MONEY`].
    pub fn money(&self, name: &str) -> Option<Decimal> {
        ITEM_MONEY
            .iter()
            .position(|k| *k == name)
            .and_then(|i| self.money[i])
    }

    /// The heuristics this item does not meet.
    pub fn check(&self) -> Vec<Flag> {
        let mut flags = Vec::new();
        let m = |k: &str| self.money(k);
        let unit = Currency::lookup(self.text("payout.currency"))
            .map_or(Decimal::new(1, 2), |c| Decimal::new(1, c.minor_units));
        if let (Some(paid), Some(merchant), Some(sub), Some(bank)) = (
            m("paidPrice"),
            m("merchantPayoutAmount"),
            m("subMerchantMemberPayoutAmount"),
            m("bankCommissionRateAmount"),
        ) {
            let split = merchant.checked_add(sub).and_then(|s| s.checked_add(bank));
            if let Some((split, gap)) = split
                .filter(|s| *s != paid)
                .and_then(|s| Some((s, s.checked_sub(paid)?)))
            {
                flags.push(Flag {
                    rule: "payout split (heuristic)",
                    message: format!(
                        "merchantPayoutAmount {merchant} + subMerchantMemberPayoutAmount {sub} + \
                         bankCommissionRateAmount {bank} = {split}, paidPrice is {paid} \
                         (difference {}); Craftgate states no such rule, so this is only a \
                         heuristic",
                        gap
                    ),
                });
            }
        }
        if let (Some(paid), Some(rate), Some(bank)) = (
            m("paidPrice"),
            m("bankCommissionRate"),
            m("bankCommissionRateAmount"),
        ) {
            let expected = paid.checked_mul(rate).map(|x| x / Decimal::ONE_HUNDRED);
            let off = |e: &Decimal| e.checked_sub(bank).is_some_and(|d| d.abs() > unit);
            if let Some(expected) = expected.filter(off) {
                flags.push(Flag {
                    rule: "bank commission rate (heuristic)",
                    message: format!(
                        "bankCommissionRateAmount is {bank}, {rate}% of paidPrice {paid} is {}; \
                         a heuristic, not a rule Craftgate states",
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
    /// `totalSize` of the list envelope, when given.
    pub total_size: Option<u64>,
}

impl Breakdown {
    /// Reads Craftgate's list envelope `{"data":{"items":[…]}}` (also
    /// `{"items":[…]}` or a bare array); `{"errors":…}` is the provider's
    /// error.
    pub fn parse<R: Read>(payment_id: u64, input: R) -> Result<Breakdown, ReportError> {
        let v = json::Reader::new(input, MAX_BYTES).value()?;
        if let Some(e) = v.get("errors") {
            return Err(ReportError::Provider(format!(
                "errorCode {}: {}",
                text(e, "errorCode"),
                text(e, "errorDescription")
            )));
        }
        let data = v.get("data").unwrap_or(&v);
        let Value::Array(items) = data.get("items").unwrap_or(data) else {
            return Err(ReportError::Provider(
                "the answer has no list of items (expected data.items)".into(),
            ));
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
            .collect::<Result<Vec<_>, _>>()?;
        let total_size = text(data, "totalSize").parse().ok();
        if total_size.is_some_and(|t: u64| t > items.len() as u64) {
            tracing::warn!(
                total = ?total_size,
                items = items.len(),
                "the breakdown says it has more items than it sent"
            );
        }
        Ok(Breakdown {
            payment_id,
            items,
            total_size,
        })
    }

    /// Items with a heuristic warning.
    pub fn flagged(&self) -> usize {
        self.items.iter().filter(|i| !i.check().is_empty()).count()
    }

    /// Sums of the amounts (not the rates nor the parity), checked.
    fn sums(&self) -> Vec<Option<Decimal>> {
        ITEM_MONEY
            .iter()
            .map(|k| {
                if k.ends_with("Rate") || k.ends_with("parity") {
                    return None;
                }
                let mut t = Tally::default();
                for m in self.items.iter().filter_map(|i| i.money(k)) {
                    t.add(m).ok()?;
                }
                Some(t.amount)
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
            "  {:<10} {:>12} {:>12} {:>10} {:>10} {:>12} {:>12}  status / refund / payout",
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
                "{} / {} / merchant {}, sub-merchant {}{}",
                item.text("transactionStatus"),
                item.text("refundStatus"),
                or_dash(item.text("payoutStatus.merchantStatus")),
                or_dash(item.text("payoutStatus.subMerchantMemberStatus")),
                if flags.is_empty() { "" } else { "  WARNING" }
            );
            let m = |k: &str| item.money(k).map_or_else(|| "-".into(), |d| d.to_string());
            row(out, item.text("id"), &m, &tail)?;
            if !item.text("subMerchantMember.name").is_empty() {
                writeln!(
                    out,
                    "      sub-merchant {} ({}), IBAN {}",
                    item.text("subMerchantMember.name"),
                    item.text("subMerchantMember.id"),
                    item.text("subMerchantMember.iban")
                )?;
            }
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
        match self.flagged() {
            0 => writeln!(out, "every item meets the heuristics"),
            n => writeln!(
                out,
                "{n} of {} items have heuristic warnings (Craftgate states no rule relating \
                 these amounts; check them by hand)",
                self.items.len()
            ),
        }
    }

    /// The breakdown as CSV: every field, the warnings, and a total row.
    pub fn write_csv<W: Write>(&self, out: W) -> io::Result<()> {
        let mut w = csv::Writer::from_writer(out);
        let header = ITEM_TEXT.iter().chain(&ITEM_MONEY).chain(&["heuristics"]);
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

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example item of `docs/providers/receiving.md` §2.4 (field names
    /// of the clients' `ReportingPaymentTransaction`).
    const EXAMPLE: &str = include_str!("../../../../tests/fixtures/craftgate/transactions.json");

    #[test]
    fn every_published_field_is_read() {
        let b = Breakdown::parse(4242, EXAMPLE.as_bytes()).unwrap();
        assert_eq!(b.items.len(), 1);
        let it = &b.items[0];
        assert_eq!(it.money("paidPrice"), Some(Decimal::new(25000, 2)));
        assert_eq!(it.money("refundablePrice"), Some(Decimal::new(25000, 2)));
        assert_eq!(it.money("payout.parity"), Some(Decimal::ONE));
        assert_eq!(it.text("payout.currency"), "TRY");
        assert_eq!(
            it.text("payoutStatus.subMerchantMemberStatus"),
            "WAITING_FOR_PAYOUT"
        );
        assert_eq!(
            it.text("subMerchantMember.iban"),
            "TR000000000000000000000512"
        );
        assert_eq!(it.text("subMerchantMember.isSubMerchant"), "true");
        assert!(it.check().is_empty(), "{:?}", it.check());
    }

    #[test]
    fn a_split_that_does_not_add_up_is_a_heuristic_warning() {
        let off = EXAMPLE.replace(
            "\"merchantPayoutAmount\":21.25",
            "\"merchantPayoutAmount\":21.26",
        );
        let b = Breakdown::parse(1, off.as_bytes()).unwrap();
        let flags = b.items[0].check();
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert!(flags[0].rule.contains("heuristic"));
        assert!(
            flags[0].message.contains("(difference 0.01)"),
            "{}",
            flags[0].message
        );
    }
}
