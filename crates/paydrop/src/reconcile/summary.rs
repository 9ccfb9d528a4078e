//! What reconciling found: the count and exact sum of each set per
//! currency, each side's totals checked against the sets it was split into,
//! and the text a finance team signs off on.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde::Serialize;

use super::{ReconcileError, Result};
use crate::totals::Tally;

/// Count and exact sum per currency.
pub type Totals = BTreeMap<String, Tally>;

pub(super) fn add(totals: &mut Totals, currency: &str, amount: Decimal) -> Result<()> {
    totals
        .entry(currency.to_string())
        .or_default()
        .add(amount)
        .map_err(|_| ReconcileError::Overflow(format!("the {} total", or_none(currency))))
}

/// Words that mark a provider status as a payment that did not go through.
pub const FAILED_WORDS: [&str; 10] = [
    "fail",
    "declin",
    "refund",
    "reject",
    "revers",
    "cancel",
    "void",
    "error",
    "unsuccess",
    "chargeback",
];

/// Whether the provider's status says the payment did not go through.
pub fn is_failed(status: &str) -> bool {
    let s = status.to_lowercase();
    FAILED_WORDS.iter().any(|w| s.contains(w))
}

/// Amount mismatches of one currency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub rows: u64,
    pub sent: Decimal,
    pub provider: Decimal,
}

/// One side, as read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SideSummary {
    pub label: String,
    pub totals: Totals,
}

/// What reconciling found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub key: String,
    pub sent: SideSummary,
    pub provider: SideSummary,
    /// How the sides were joined.
    pub method: String,
    pub matched: Totals,
    /// Matched rows by the provider's status.
    pub matched_by_status: BTreeMap<String, Totals>,
    /// Pairs the provider reports as failed, declined, refunded, … (sent
    /// amounts), and by the provider's status.
    pub failed_at_provider: Totals,
    pub failed_by_status: BTreeMap<String, Totals>,
    pub amount_mismatch: BTreeMap<String, Mismatch>,
    pub missing_at_provider: Totals,
    pub unknown_at_provider: Totals,
    /// The provider's amounts of the matched and mismatched rows by the
    /// provider's own currency (empty when it names none), for its check.
    pub matched_at_provider: Totals,
    pub mismatch_at_provider: Totals,
    pub failed_provider_side: Totals,
    pub notes: Vec<String>,
    pub out_dir: String,
}

fn rows(t: &Totals) -> u64 {
    t.values().map(|t| t.rows).sum()
}

impl Summary {
    /// Rows that need attention: failed, missing, unknown or with another
    /// amount.
    pub fn attention(&self) -> u64 {
        rows(&self.failed_at_provider)
            + rows(&self.missing_at_provider)
            + rows(&self.unknown_at_provider)
            + self.amount_mismatch.values().map(|m| m.rows).sum::<u64>()
    }

    /// Every row matched with the same amount.
    pub fn reconciled(&self) -> bool {
        self.attention() == 0
    }

    /// The report a finance team signs off on.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "paydrop reconcile — key {}", self.key);
        for (name, side) in [("sent", &self.sent), ("provider", &self.provider)] {
            let _ = writeln!(s, "  {name:<9} {}", side.label);
            for (c, t) in &side.totals {
                let _ = writeln!(
                    s,
                    "            {} rows, {} {}",
                    t.rows,
                    or_none(c),
                    t.amount
                );
            }
        }
        let _ = writeln!(s, "  method    {}", self.method);
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  {:<22} {:>10}  {:<8} {:>20}",
            "set", "rows", "currency", "amount"
        );
        let set = |s: &mut String, name: &str, t: &Totals| {
            if t.is_empty() {
                let _ = writeln!(s, "  {name:<22} {:>10}", 0);
            }
            for (c, t) in t {
                let _ = writeln!(
                    s,
                    "  {name:<22} {:>10}  {:<8} {:>20}",
                    t.rows,
                    or_none(c),
                    t.amount
                );
            }
        };
        set(&mut s, "matched", &self.matched);
        if self.amount_mismatch.is_empty() {
            let _ = writeln!(s, "  {:<22} {:>10}", "amount mismatch", 0);
        }
        for (c, m) in &self.amount_mismatch {
            let _ = writeln!(
                s,
                "  {:<22} {:>10}  {:<8} {:>20}  sent, {} at the provider (difference {})",
                "amount mismatch",
                m.rows,
                or_none(c),
                m.sent,
                m.provider,
                m.provider
                    .checked_sub(m.sent)
                    .map_or_else(|| "out of range".into(), |d| d.to_string())
            );
        }
        set(&mut s, "failed at provider", &self.failed_at_provider);
        set(&mut s, "missing at provider", &self.missing_at_provider);
        set(&mut s, "unknown at provider", &self.unknown_at_provider);
        for (title, by_status) in [
            ("matched", &self.matched_by_status),
            ("failed at provider", &self.failed_by_status),
        ] {
            if by_status.len() < 2 && title == "matched" || by_status.is_empty() {
                continue;
            }
            let _ = writeln!(s, "  {title}, by the provider's status:");
            for (status, t) in by_status {
                for (c, t) in t {
                    let _ = writeln!(
                        s,
                        "    {:<20} {:>10}  {:<8} {:>20}",
                        or_none(status),
                        t.rows,
                        or_none(c),
                        t.amount
                    );
                }
            }
        }
        let _ = writeln!(s);
        for line in self.checks() {
            let _ = writeln!(s, "  check     {line}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note      {n}");
        }
        let _ = writeln!(s, "  files     {}", self.out_dir);
        if self.reconciled() {
            let _ = writeln!(
                s,
                "RECONCILED: all {} rows matched with the same amount",
                rows(&self.matched)
            );
        } else {
            let _ = writeln!(
                s,
                "NOT RECONCILED: {} rows need attention ({} failed at the provider, {} missing at \
                 the provider, {} unknown at the provider, {} with another amount)",
                self.attention(),
                rows(&self.failed_at_provider),
                rows(&self.missing_at_provider),
                rows(&self.unknown_at_provider),
                self.amount_mismatch.values().map(|m| m.rows).sum::<u64>()
            );
        }
        s
    }

    /// Each side's total against the sets it was split into.
    fn checks(&self) -> Vec<String> {
        let of = |t: &Totals, c: &str| t.get(c).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for (side, totals, alone) in [
            ("sent", &self.sent.totals, "missing"),
            ("provider", &self.provider.totals, "unknown"),
        ] {
            for (c, total) in totals {
                let parts = if side == "sent" {
                    let mm = self.amount_mismatch.get(c).cloned().unwrap_or_default();
                    let mismatch = Tally {
                        rows: mm.rows,
                        amount: mm.sent,
                    };
                    [
                        of(&self.matched, c),
                        mismatch,
                        of(&self.failed_at_provider, c),
                        of(&self.missing_at_provider, c),
                    ]
                } else {
                    [
                        of(&self.matched_at_provider, c),
                        of(&self.mismatch_at_provider, c),
                        of(&self.failed_provider_side, c),
                        of(&self.unknown_at_provider, c),
                    ]
                };
                let mut sum = Tally::default();
                let added = parts.iter().try_for_each(|t| sum.merge(t));
                let (rows, amount) = (sum.rows, sum.amount);
                let ok = added.is_ok() && rows == total.rows && amount == total.amount;
                out.push(format!(
                    "{side} {}: {} rows {} = matched + mismatch + failed + {alone} ({rows} rows {amount}) {}",
                    or_none(c),
                    total.rows,
                    total.amount,
                    if ok { "ok" } else { "DOES NOT ADD UP" }
                ));
            }
        }
        out
    }
}

/// A currency or status for the summary; `(none)` when a side names none.
fn or_none(c: &str) -> &str {
    if c.is_empty() {
        "(none)"
    } else {
        c
    }
}
