//! Exact money totals: per currency, with row counts, in `rust_decimal`.
//!
//! Adding never wraps or saturates: an overflow is reported to the caller,
//! which turns it into an error on the row that caused it. The total of a file
//! (or of one part of a split file) is what becomes the request's `Amount`.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::currency::Currency;

/// The sum of one currency's amounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CurrencyTotal {
    pub currency: &'static str,
    pub rows: u64,
    /// Serialised as a string so that no JSON reader turns it into a float.
    pub amount: Decimal,
}

/// Totals per currency, in first-seen order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Totals {
    by_currency: Vec<CurrencyTotal>,
}

/// Adding an amount would overflow the exact total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("adding {amount} to the {currency} total {total} overflows; split the file")]
pub struct Overflow {
    pub currency: &'static str,
    pub total: Decimal,
    pub amount: Decimal,
}

impl Totals {
    /// What the total would become; `Err` on overflow. Nothing changes.
    pub fn check_add(&self, currency: Currency, amount: Decimal) -> Result<Decimal, Overflow> {
        let total = self.amount(currency);
        total.checked_add(amount).ok_or(Overflow {
            currency: currency.code,
            total,
            amount,
        })
    }

    /// Adds one row's amount.
    ///
    /// ```
    /// use paydrop::{currency::Currency, totals::Totals};
    /// use rust_decimal::Decimal;
    /// let try_ = Currency::lookup("TRY").unwrap();
    /// let mut t = Totals::default();
    /// t.add(try_, Decimal::new(1050, 2)).unwrap();
    /// t.add(try_, Decimal::new(1, 2)).unwrap();
    /// assert_eq!(t.amount(try_).to_string(), "10.51");
    /// assert!(t.add(try_, Decimal::MAX).is_err());
    /// assert_eq!(t.rows(), 2);
    /// ```
    pub fn add(&mut self, currency: Currency, amount: Decimal) -> Result<(), Overflow> {
        let new_total = self.check_add(currency, amount)?;
        self.set(currency, new_total);
        Ok(())
    }

    /// Adds one row's amount to two totals (a file's and one of its parts'),
    /// or to neither when either would overflow (`first` is checked first).
    pub fn add_to_both(
        first: &mut Totals,
        second: &mut Totals,
        currency: Currency,
        amount: Decimal,
    ) -> Result<(), Overflow> {
        let a = first.check_add(currency, amount)?;
        let b = second.check_add(currency, amount)?;
        first.set(currency, a);
        second.set(currency, b);
        Ok(())
    }

    /// Counts one more row of `currency` whose total is now `new_total`.
    fn set(&mut self, currency: Currency, new_total: Decimal) {
        match self
            .by_currency
            .iter_mut()
            .find(|t| same_code(t.currency, currency.code))
        {
            Some(t) => {
                t.amount = new_total;
                t.rows += 1;
            }
            None => self.by_currency.push(CurrencyTotal {
                currency: currency.code,
                rows: 1,
                amount: new_total,
            }),
        }
    }

    /// The total for one currency (zero when none was added).
    pub fn amount(&self, currency: Currency) -> Decimal {
        self.by_currency
            .iter()
            .find(|t| same_code(t.currency, currency.code))
            .map_or(Decimal::ZERO, |t| t.amount)
    }

    /// Rows added, over all currencies.
    pub fn rows(&self) -> u64 {
        self.by_currency.iter().map(|t| t.rows).sum()
    }

    /// Per-currency totals.
    pub fn iter(&self) -> impl Iterator<Item = &CurrencyTotal> {
        self.by_currency.iter()
    }
}

/// Currency codes come from one static table, so equal codes are almost
/// always the same pointer; compare the text only when they are not.
fn same_code(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// Rows and their exact sum, for one group of the receiving side (a status,
/// a currency, a reconcile set). Adding is checked: an overflow is an error,
/// never a panic or a wrapped total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub rows: u64,
    pub amount: Decimal,
}

/// A [`Tally`] would overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("adding {amount} to the total {total} overflows the exact sum")]
pub struct TallyOverflow {
    pub total: Decimal,
    pub amount: Decimal,
}

impl Tally {
    /// Counts one row of `amount`.
    ///
    /// ```
    /// use paydrop::totals::Tally;
    /// use rust_decimal::Decimal;
    /// let mut t = Tally::default();
    /// t.add(Decimal::new(1050, 2)).unwrap();
    /// assert!(t.add(Decimal::MAX).is_err());
    /// assert_eq!((t.rows, t.amount.to_string()), (1, "10.50".to_string()));
    /// ```
    pub fn add(&mut self, amount: Decimal) -> Result<(), TallyOverflow> {
        self.merge(&Tally { rows: 1, amount })
    }

    /// Adds another tally's rows and amount.
    pub fn merge(&mut self, other: &Tally) -> Result<(), TallyOverflow> {
        let overflow = TallyOverflow {
            total: self.amount,
            amount: other.amount,
        };
        self.amount = self.amount.checked_add(other.amount).ok_or(overflow)?;
        self.rows += other.rows;
        Ok(())
    }
}
