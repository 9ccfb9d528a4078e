//! Upper bounds on money: the most one row may carry and the most one file
//! may total, in the file's currency. A card number pasted into the amount
//! column (`4155659970585567.59` is a valid decimal) or a file written in
//! minor units is refused by validation, before anything is sent.
//!
//! The bounds come from `[submit] max_row_amount` / `max_file_total` in
//! `paydrop.toml` (one amount for every currency, or one per currency), with
//! the defaults below; a pattern's `max` on its amount column applies too.
//! The provider's pages name no limit: these are the safe side.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::currency::Currency;

/// Default most one row may carry: 10,000,000 in the file's currency (about
/// 250,000 EUR as TRY). Generous for a card payment in TRY, USD, EUR or GBP;
/// currencies of small units (IDR, VND, …) need their own bound.
pub const DEFAULT_MAX_ROW_AMOUNT: Decimal = Decimal::from_parts(10_000_000, 0, 0, false, 0);

/// Default most one file may total: 100,000,000,000 in its currency.
pub const DEFAULT_MAX_FILE_TOTAL: Decimal = Decimal::from_parts(1_215_752_192, 23, 0, false, 0);

/// A bound: one amount for every currency, or one per ISO 4217 code
/// (currencies not listed keep the default). In TOML an amount is a string
/// or an integer (`"250000.00"`, `250000`); a float is refused, because it
/// cannot hold every decimal exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    All(Decimal),
    PerCurrency(BTreeMap<&'static str, Decimal>),
}

impl Bound {
    /// The bound for one currency, if it sets one.
    pub fn get(&self, currency: Currency) -> Option<Decimal> {
        match self {
            Bound::All(d) => Some(*d),
            Bound::PerCurrency(m) => m.get(currency.code).copied(),
        }
    }
}

/// The bounds validation applies, beyond the pattern's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `[submit] max_row_amount`; default [`DEFAULT_MAX_ROW_AMOUNT`].
    pub max_row_amount: Option<Bound>,
    /// `[submit] max_file_total`; default [`DEFAULT_MAX_FILE_TOTAL`].
    pub max_file_total: Option<Bound>,
}

/// One bound in force, and where it is set (for the error message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub value: Decimal,
    /// The setting that sets it, e.g. `[submit] max_row_amount in paydrop.toml`.
    pub key: String,
}

impl Limits {
    /// The most one row of `currency` may carry.
    ///
    /// ```
    /// use paydrop::{bounds::Limits, currency::Currency};
    /// let try_ = Currency::lookup("TRY").unwrap();
    /// let l = Limits::default().row(try_);
    /// assert_eq!(l.value.to_string(), "10000000");
    /// assert!(l.key.contains("[submit] max_row_amount"));
    /// ```
    pub fn row(&self, currency: Currency) -> Limit {
        limit(
            self.max_row_amount.as_ref(),
            currency,
            "max_row_amount",
            DEFAULT_MAX_ROW_AMOUNT,
        )
    }

    /// The most one file may total in `currency`.
    pub fn file_total(&self, currency: Currency) -> Limit {
        limit(
            self.max_file_total.as_ref(),
            currency,
            "max_file_total",
            DEFAULT_MAX_FILE_TOTAL,
        )
    }
}

fn limit(bound: Option<&Bound>, currency: Currency, key: &str, default: Decimal) -> Limit {
    match (bound, bound.and_then(|b| b.get(currency))) {
        (Some(Bound::All(_)), Some(value)) => Limit {
            value,
            key: format!("[submit] {key} in paydrop.toml"),
        },
        (_, Some(value)) => Limit {
            value,
            key: format!("[submit] {key}.{currency} in paydrop.toml"),
        },
        (_, None) => Limit {
            value: default,
            key: format!(
                "the default of [submit] {key}; set it in paydrop.toml, for every currency or \
                 per currency"
            ),
        },
    }
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BoundVisitor)
    }
}

struct BoundVisitor;

impl<'de> Visitor<'de> for BoundVisitor {
    type Value = Bound;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "an amount as a string or an integer (\"250000.00\"), or a table of them per \
             currency ({ TRY = \"250000\", USD = \"10000\" })",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bound, E> {
        amount(v).map(Bound::All).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bound, E> {
        amount(&v.to_string()).map(Bound::All).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bound, E> {
        amount(&v.to_string()).map(Bound::All).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Bound, E> {
        Err(E::custom(format!(
            "write the amount {v} as a string (\"{v}\"): a TOML float cannot hold every \
             decimal exactly"
        )))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bound, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((code, value)) = map.next_entry::<String, Bound>()? {
            let currency = Currency::lookup(&code).ok_or_else(|| {
                de::Error::custom(format!(
                    "'{code}' is not an ISO 4217 currency code (e.g. TRY, USD)"
                ))
            })?;
            let Bound::All(value) = value else {
                return Err(de::Error::custom(format!(
                    "{code}: one amount per currency, not a table"
                )));
            };
            out.insert(currency.code, value);
        }
        Ok(Bound::PerCurrency(out))
    }
}

/// A positive exact amount.
fn amount(text: &str) -> Result<Decimal, String> {
    let d = crate::validate::check::decimal(text.trim().as_bytes(), b'.')
        .map_err(|(_, why)| format!("'{text}' {why}: write plain digits, e.g. \"250000.00\""))?;
    if d <= Decimal::ZERO {
        return Err(format!("'{text}': a bound must be more than 0"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Section {
        max_row_amount: Option<Bound>,
        max_file_total: Option<Bound>,
    }

    fn parse(src: &str) -> Result<Limits, String> {
        let s: Section = toml::from_str(src).map_err(|e| e.to_string())?;
        Ok(Limits {
            max_row_amount: s.max_row_amount,
            max_file_total: s.max_file_total,
        })
    }

    fn cur(code: &str) -> Currency {
        Currency::lookup(code).unwrap()
    }

    #[test]
    fn defaults_are_exact() {
        assert_eq!(DEFAULT_MAX_ROW_AMOUNT.to_string(), "10000000");
        assert_eq!(DEFAULT_MAX_FILE_TOTAL.to_string(), "100000000000");
    }

    #[test]
    fn one_bound_or_one_per_currency_with_the_default_for_the_rest() {
        let l = parse("max_row_amount = \"250000.50\"\nmax_file_total = 5000000\n").unwrap();
        assert_eq!(l.row(cur("USD")).value.to_string(), "250000.50");
        assert_eq!(
            l.file_total(cur("TRY")).key,
            "[submit] max_file_total in paydrop.toml"
        );

        let l = parse("max_row_amount = { TRY = \"1000000\", usd = 20000 }\n").unwrap();
        assert_eq!(l.row(cur("TRY")).value.to_string(), "1000000");
        assert_eq!(l.row(cur("USD")).value.to_string(), "20000");
        assert_eq!(
            l.row(cur("USD")).key,
            "[submit] max_row_amount.USD in paydrop.toml"
        );
        assert_eq!(l.row(cur("EUR")).value, DEFAULT_MAX_ROW_AMOUNT);
        assert!(l.row(cur("EUR")).key.starts_with("the default"));
        assert_eq!(l.file_total(cur("TRY")).value, DEFAULT_MAX_FILE_TOTAL);
    }

    #[test]
    fn mistakes_are_named() {
        for (src, wanted) in [
            ("max_row_amount = 1.5\n", "as a string"),
            ("max_row_amount = \"1e5\"\n", "plain digits"),
            ("max_row_amount = \"1,000\"\n", "plain digits"),
            ("max_row_amount = 0\n", "more than 0"),
            ("max_row_amount = { XYZ = 5 }\n", "not an ISO 4217"),
        ] {
            let e = parse(src).unwrap_err();
            assert!(e.contains(wanted), "{src}: {e}");
        }
    }
}
