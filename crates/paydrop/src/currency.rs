//! ISO 4217 currencies: alphabetic code, numeric code and minor units.
//!
//! Minor units decide how many decimals an amount may carry (TRY 2, JPY 0,
//! KWD 3). The table holds the currencies in active use; an unknown code is an
//! error rather than a guess, because a wrong minor unit misprices a payment.

use std::fmt;
use std::str::FromStr;

/// One ISO 4217 currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    /// Alphabetic code, e.g. `TRY`.
    pub code: &'static str,
    /// Numeric code, e.g. 949.
    pub numeric: u16,
    /// Decimal places of the minor unit, e.g. 2.
    pub minor_units: u32,
}

macro_rules! currencies {
    ($($code:literal $num:literal $minor:literal),* $(,)?) => {
        const TABLE: &[Currency] = &[
            $(Currency { code: $code, numeric: $num, minor_units: $minor }),*
        ];
    };
}

currencies! {
    "AED" 784 2, "AFN" 971 2, "ALL" 8 2, "AMD" 51 2, "AOA" 973 2, "ARS" 32 2,
    "AUD" 36 2, "AZN" 944 2, "BAM" 977 2, "BDT" 50 2, "BGN" 975 2, "BHD" 48 3,
    "BIF" 108 0, "BND" 96 2, "BOB" 68 2, "BRL" 986 2, "BYN" 933 2, "CAD" 124 2,
    "CHF" 756 2, "CLP" 152 0, "CNY" 156 2, "COP" 170 2, "CRC" 188 2, "CZK" 203 2,
    "DJF" 262 0, "DKK" 208 2, "DZD" 12 2, "EGP" 818 2, "ETB" 230 2, "EUR" 978 2,
    "GBP" 826 2, "GEL" 981 2, "GHS" 936 2, "GNF" 324 0, "HKD" 344 2, "HUF" 348 2,
    "IDR" 360 2, "ILS" 376 2, "INR" 356 2, "IQD" 368 3, "IRR" 364 2, "ISK" 352 0,
    "JOD" 400 3, "JPY" 392 0, "KES" 404 2, "KGS" 417 2, "KMF" 174 0, "KRW" 410 0,
    "KWD" 414 3, "KZT" 398 2, "LBP" 422 2, "LYD" 434 3, "MAD" 504 2, "MDL" 498 2,
    "MKD" 807 2, "MXN" 484 2, "MYR" 458 2, "NGN" 566 2, "NOK" 578 2, "NZD" 554 2,
    "OMR" 512 3, "PEN" 604 2, "PHP" 608 2, "PKR" 586 2, "PLN" 985 2, "PYG" 600 0,
    "QAR" 634 2, "RON" 946 2, "RSD" 941 2, "RUB" 643 2, "RWF" 646 0, "SAR" 682 2,
    "SEK" 752 2, "SGD" 702 2, "THB" 764 2, "TND" 788 3, "TRY" 949 2, "TWD" 901 2,
    "UAH" 980 2, "UGX" 800 0, "USD" 840 2, "UYU" 858 2, "UZS" 860 2, "VND" 704 0,
    "VUV" 548 0, "XAF" 950 0, "XOF" 952 0, "XPF" 953 0, "ZAR" 710 2,
}

impl Currency {
    /// Looks a currency up by alphabetic (`"TRY"`, any case) or numeric
    /// (`"949"`) code.
    ///
    /// ```
    /// use paydrop::currency::Currency;
    /// assert_eq!(Currency::lookup("949").unwrap().code, "TRY");
    /// assert_eq!(Currency::lookup("jpy").unwrap().minor_units, 0);
    /// assert!(Currency::lookup("XYZ").is_none());
    /// ```
    pub fn lookup(code: &str) -> Option<Currency> {
        let code = code.trim();
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) {
            let n: u16 = code.parse().ok()?;
            return TABLE.iter().copied().find(|c| c.numeric == n);
        }
        TABLE
            .iter()
            .copied()
            .find(|c| c.code.eq_ignore_ascii_case(code))
    }

    /// Every known currency, sorted by code.
    pub fn all() -> &'static [Currency] {
        TABLE
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl FromStr for Currency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::lookup(s).ok_or_else(|| {
            format!("unknown currency '{s}': use an ISO 4217 code such as TRY, USD, EUR or 949")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in TABLE.windows(2) {
            assert!(w[0].code < w[1].code, "{} before {}", w[0].code, w[1].code);
        }
        let mut nums: Vec<u16> = TABLE.iter().map(|c| c.numeric).collect();
        nums.sort_unstable();
        nums.dedup();
        assert_eq!(nums.len(), TABLE.len());
    }

    #[test]
    fn numeric_codes_from_the_payzee_report() {
        for (num, code) in [
            ("949", "TRY"),
            ("840", "USD"),
            ("978", "EUR"),
            ("826", "GBP"),
            ("392", "JPY"),
            ("643", "RUB"),
        ] {
            assert_eq!(Currency::lookup(num).unwrap().code, code);
        }
    }
}
