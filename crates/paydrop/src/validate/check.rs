//! Checks of single values: card numbers, expiry dates, amounts, IBANs,
//! identity numbers. Each takes the raw cell bytes and returns the parsed value
//! or the reason, phrased for the person who has to fix the file.

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::ErrorKind;
use crate::mask;

/// A failed check: what kind of error and a reason a person can act on.
pub type Fail = (ErrorKind, String);

fn fail<T>(kind: ErrorKind, reason: impl Into<String>) -> Result<T, Fail> {
    Err((kind, reason.into()))
}

/// Luhn check over ASCII digits.
///
/// ```
/// assert!(paydrop::validate::check::luhn(b"4506349116543218"));
/// assert!(!paydrop::validate::check::luhn(b"4506349116543211"));
/// ```
pub fn luhn(digits: &[u8]) -> bool {
    luhn_sum(digits, 1).is_multiple_of(10)
}

/// The digit that makes `payload` followed by it pass the Luhn check.
///
/// ```
/// use paydrop::validate::check::luhn_check_digit;
/// assert_eq!(luhn_check_digit(b"450634911654321"), b'8');
/// ```
pub fn luhn_check_digit(payload: &[u8]) -> u8 {
    // The check digit will sit at position 0, so the payload's last digit is
    // the first one doubled.
    b'0' + ((10 - luhn_sum(payload, 0) % 10) % 10) as u8
}

/// Luhn sum with every digit at `doubled` parity (from the right) doubled.
fn luhn_sum(digits: &[u8], doubled: usize) -> u32 {
    digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let v = (d - b'0') as u32;
            match (i % 2 == doubled, v * 2) {
                (true, w) if w > 9 => w - 9,
                (true, w) => w,
                (false, _) => v,
            }
        })
        .sum()
}

pub fn card_number(v: &[u8]) -> Result<(), Fail> {
    if let Some(text) = std::str::from_utf8(v)
        .ok()
        .filter(|t| mask::is_scientific(t))
    {
        return fail(
            ErrorKind::CardNumber,
            format!(
                "looks like Excel scientific notation ({}): the card number was lost when the \
                 file was saved from Excel; format the column as text and export the card \
                 numbers again",
                mask::card(text)
            ),
        );
    }
    if !v.iter().all(u8::is_ascii_digit) {
        return fail(
            ErrorKind::CardNumber,
            "card number must be digits only (no spaces, dashes or letters)",
        );
    }
    if !(12..=19).contains(&v.len()) {
        return fail(
            ErrorKind::CardNumber,
            format!("card number has {} digits; it must have 12 to 19", v.len()),
        );
    }
    if !luhn(v) {
        return fail(
            ErrorKind::Luhn,
            "card number fails the Luhn check: a digit is mistyped",
        );
    }
    Ok(())
}

/// Parses `MM/YY`, `MMYY` or `YYYY-MM` into (year, month) and refuses a card
/// that expired before the month of `as_of`.
pub fn card_expiry(v: &[u8], as_of: NaiveDate) -> Result<(i32, u32), Fail> {
    let digits = |s: &[u8]| -> Option<u32> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0u32, |a, d| a * 10 + (d - b'0') as u32))
    };
    let parsed = match v.len() {
        5 if v[2] == b'/' => digits(&v[..2])
            .zip(digits(&v[3..]))
            .map(|(m, y)| (2000 + y, m)),
        4 => digits(&v[..2])
            .zip(digits(&v[2..]))
            .map(|(m, y)| (2000 + y, m)),
        7 if v[4] == b'-' => digits(&v[..4]).zip(digits(&v[5..])),
        _ => None,
    };
    let Some((year, month)) = parsed.filter(|(_, m)| (1..=12).contains(m)) else {
        return fail(
            ErrorKind::ExpiryFormat,
            "expiry must be MM/YY, MMYY or YYYY-MM with a month from 01 to 12",
        );
    };
    let year = year as i32;
    if (year, month) < (as_of.year(), as_of.month()) {
        return fail(
            ErrorKind::Expired,
            format!("card expired at the end of {month:02}/{year}; the payment date is {as_of}"),
        );
    }
    Ok((year, month))
}

/// Turkish identity number (TCKN): 11 digits, not starting with 0, and two
/// check digits.
///
/// ```
/// assert!(paydrop::validate::check::tr_identity(b"10000000146").is_ok());
/// assert!(paydrop::validate::check::tr_identity(b"10000000147").is_err());
/// ```
pub fn tr_identity(v: &[u8]) -> Result<(), Fail> {
    if v.len() != 11 || !v.iter().all(u8::is_ascii_digit) {
        return fail(
            ErrorKind::TrIdentity,
            "identity number must be exactly 11 digits",
        );
    }
    let d: Vec<u32> = v.iter().map(|b| (b - b'0') as u32).collect();
    if d[0] == 0 {
        return fail(ErrorKind::TrIdentity, "identity number cannot start with 0");
    }
    let first9: [u32; 9] = d[..9].try_into().expect("11 digits");
    let (c10, c11) = tr_identity_check_digits(&first9);
    if d[9] != c10 || d[10] != c11 {
        return fail(
            ErrorKind::TrIdentity,
            "identity number fails its check digits: a digit is mistyped",
        );
    }
    Ok(())
}

/// The two check digits of a TCKN whose first nine digits are given.
pub fn tr_identity_check_digits(first9: &[u32; 9]) -> (u32, u32) {
    let d = first9;
    let odd = d[0] + d[2] + d[4] + d[6] + d[8];
    let even = d[1] + d[3] + d[5] + d[7];
    let c10 = (odd * 7 + 90 - even) % 10;
    let c11 = (d.iter().sum::<u32>() + c10) % 10;
    (c10, c11)
}

/// Turkish tax number (VKN, Vergi Kimlik Numarası): 10 digits, the last a
/// check digit over the first nine. The algorithm is the one of
/// python-stdnum's `stdnum/tr/vkn.py`
/// (<https://github.com/arthurdejong/python-stdnum/blob/master/stdnum/tr/vkn.py>,
/// which cites the revenue administration's own check,
/// <https://www.turkiye.gov.tr/gib-intvrg-vergi-kimlik-numarasi-dogrulama>).
///
/// ```
/// assert!(paydrop::validate::check::tr_tax_number(b"4540536920").is_ok());
/// assert!(paydrop::validate::check::tr_tax_number(b"4540536921").is_err());
/// ```
pub fn tr_tax_number(v: &[u8]) -> Result<(), Fail> {
    if v.len() != 10 || !v.iter().all(u8::is_ascii_digit) {
        return fail(
            ErrorKind::TrIdentity,
            "tax number must be exactly 10 digits",
        );
    }
    let d: Vec<u32> = v.iter().map(|b| (b - b'0') as u32).collect();
    let first9: [u32; 9] = d[..9].try_into().expect("10 digits");
    if d[9] != tr_tax_check_digit(&first9) {
        return fail(
            ErrorKind::TrIdentity,
            "tax number fails its check digit: a digit is mistyped",
        );
    }
    Ok(())
}

/// The check digit of a VKN whose first nine digits are given: digit `k`
/// (from the left, 0-based) counts `c = (d + 9 - k) mod 10`, then
/// `c·2^(9-k) mod 9` (9 when that is 0 and `c` is not); the check digit
/// makes the sum a multiple of 10.
pub fn tr_tax_check_digit(first9: &[u32; 9]) -> u32 {
    let sum: u32 = first9
        .iter()
        .enumerate()
        .map(|(k, &d)| {
            let c = (d + 9 - k as u32) % 10;
            match (c * (1 << (9 - k))) % 9 {
                0 if c != 0 => 9,
                r => r,
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// A Turkish identity number (TCKN, 11 digits) or tax number (VKN, 10
/// digits), told apart by length, as the provider's `identityNumber` takes
/// either (docs/providers/paywall.md §1.4).
///
/// ```
/// use paydrop::validate::check::tr_identity_or_tax_number as check;
/// assert!(check(b"10000000146").is_ok() && check(b"4540536920").is_ok());
/// assert!(check(b"123456789").is_err());
/// ```
pub fn tr_identity_or_tax_number(v: &[u8]) -> Result<(), Fail> {
    match v.len() {
        10 => tr_tax_number(v),
        11 => tr_identity(v),
        n => fail(
            ErrorKind::TrIdentity,
            format!(
                "has {n} characters; an identity number (TCKN) has 11 digits, a tax number \
                 (VKN) 10"
            ),
        ),
    }
}

/// Exactly `n` digits of a card: its first 8 or last 4 (`what`).
pub fn card_digits(v: &[u8], n: usize, what: &str) -> Result<(), Fail> {
    if v.len() != n || !v.iter().all(u8::is_ascii_digit) {
        return fail(
            ErrorKind::CardNumber,
            format!("must be the card's {what}: exactly {n} digits"),
        );
    }
    Ok(())
}

/// ISO 13616 IBAN lengths per country (the SWIFT registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// ISO 13616 IBAN: country length and mod-97 == 1. Spaces are not allowed in a
/// file value (the provider wants the electronic form).
///
/// ```
/// assert!(paydrop::validate::check::iban(b"TR330006100519786457841326").is_ok());
/// assert!(paydrop::validate::check::iban(b"TR330006100519786457841327").is_err());
/// ```
pub fn iban(v: &[u8]) -> Result<(), Fail> {
    if v.len() < 4 || !v.iter().all(u8::is_ascii_alphanumeric) {
        return fail(
            ErrorKind::Iban,
            "IBAN must be letters and digits only, without spaces",
        );
    }
    let country = std::str::from_utf8(&v[..2]).unwrap_or("");
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country) else {
        return fail(
            ErrorKind::Iban,
            format!("IBAN country code '{country}' is unknown"),
        );
    };
    if v.len() != len {
        return fail(
            ErrorKind::Iban,
            format!(
                "a {country} IBAN has {len} characters, this one has {}",
                v.len()
            ),
        );
    }
    let mut rem = 0u32;
    for &b in v[4..].iter().chain(&v[..4]) {
        let b = b.to_ascii_uppercase();
        if b.is_ascii_digit() {
            rem = (rem * 10 + (b - b'0') as u32) % 97;
        } else {
            rem = (rem * 100 + (b - b'A' + 10) as u32) % 97;
        }
    }
    if rem != 1 {
        return fail(
            ErrorKind::Iban,
            "IBAN fails its mod-97 check: a character is mistyped",
        );
    }
    Ok(())
}

/// A plain e-mail address check: one `@`, a non-empty local part, a dotted
/// domain, no spaces.
pub fn email(v: &str) -> Result<(), Fail> {
    let ok = match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !v.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        fail(
            ErrorKind::Email,
            "not an e-mail address like name@example.com",
        )
    }
}

pub fn integer(v: &[u8]) -> Result<i64, Fail> {
    let (neg, digits) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return fail(
            ErrorKind::Integer,
            "must be a whole number written in digits (at most 18)",
        );
    }
    let n = digits.iter().fold(0i64, |a, d| a * 10 + (d - b'0') as i64);
    Ok(if neg { -n } else { n })
}

pub fn boolean(v: &[u8]) -> Result<bool, Fail> {
    match v {
        b"1" => Ok(true),
        b"0" => Ok(false),
        _ if v.eq_ignore_ascii_case(b"true") => Ok(true),
        _ if v.eq_ignore_ascii_case(b"false") => Ok(false),
        _ => fail(ErrorKind::Boolean, "must be true, false, 1 or 0"),
    }
}

/// Parses a plain decimal number (`-12.50`, or `12,50` with a `,` separator)
/// exactly. Exponents, grouping, NaN, infinities and spaces are refused with a
/// reason saying what to write instead.
///
/// ```
/// use paydrop::validate::check::decimal;
/// assert_eq!(decimal(b"1234.56", b'.').unwrap().to_string(), "1234.56");
/// assert_eq!(decimal(b"1234,56", b',').unwrap().to_string(), "1234.56");
/// assert!(decimal(b"1e5", b'.').is_err());
/// assert!(decimal(b"1.234,56", b'.').is_err());
/// ```
pub fn decimal(v: &[u8], sep: u8) -> Result<Decimal, Fail> {
    let (neg, body) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let mut mantissa: u128 = 0;
    let mut digits = 0u32;
    let mut scale = 0u32;
    let mut seen_sep = false;
    let mut int_digits = 0u32;
    for &b in body {
        match b {
            b'0'..=b'9' => {
                // A Decimal holds up to 29 significant digits exactly (a 96-bit
                // mantissa); whether a 29-digit one fits is checked at the end.
                if mantissa != 0 || b != b'0' {
                    digits += 1;
                }
                if digits > 29 {
                    return fail(
                        ErrorKind::Decimal,
                        "has more than 29 significant digits; no amount is that large",
                    );
                }
                mantissa = mantissa * 10 + (b - b'0') as u128;
                if seen_sep {
                    scale += 1;
                } else {
                    int_digits += 1;
                }
            }
            _ if b == sep && !seen_sep => seen_sep = true,
            _ => return Err(decimal_reason(v, sep)),
        }
    }
    if int_digits == 0 || (seen_sep && scale == 0) {
        return Err(decimal_reason(v, sep));
    }
    if scale > 28 {
        return fail(ErrorKind::Decimal, "has more than 28 decimal places");
    }
    let signed = if neg {
        -(mantissa as i128)
    } else {
        mantissa as i128
    };
    Decimal::try_from_i128_with_scale(signed, scale).map_err(|_| {
        (
            ErrorKind::Decimal,
            "is too large for an exact decimal".to_string(),
        )
    })
}

fn decimal_reason(v: &[u8], sep: u8) -> Fail {
    let other = if sep == b'.' { b',' } else { b'.' };
    let s = String::from_utf8_lossy(v);
    let lower = s.to_ascii_lowercase();
    let reason = if lower.contains("nan") || lower.contains("inf") {
        "is not a number".to_string()
    } else if v.iter().any(|&b| b == b'e' || b == b'E') {
        "uses exponent notation; write the number in plain digits (100000, not 1e5)".to_string()
    } else if let Some(written) = other_separator(v, sep) {
        let (name, sep_name) = match sep {
            b'.' => ("decimal comma", "'.'"),
            _ => ("decimal point", "','"),
        };
        format!("{name}: write {written} (this pattern's decimal separator is {sep_name})")
    } else if v.contains(&other) {
        format!(
            "contains '{}': this pattern's decimal separator is '{}' and numbers must not \
             contain thousands grouping",
            other as char, sep as char
        )
    } else if v.iter().any(u8::is_ascii_whitespace) {
        "contains spaces".to_string()
    } else if v.iter().filter(|&&b| b == sep).count() > 1 {
        format!("has more than one '{}'", sep as char)
    } else {
        format!(
            "is not a plain decimal number (digits with an optional '{}' and decimals, e.g. 0{}50)",
            sep as char, sep as char
        )
    };
    (ErrorKind::Decimal, reason)
}

/// A number written with the other decimal separator (`12,50` in a pattern
/// of `.`), as it should be written: one separator followed by one, two or
/// four and more digits. Three digits (`1,234`) could be thousands grouping
/// and are left to the general message.
fn other_separator(v: &[u8], sep: u8) -> Option<String> {
    let other = if sep == b'.' { b',' } else { b'.' };
    let body = v.strip_prefix(b"-").unwrap_or(v);
    let at = memchr::memchr(other, body)?;
    let (int, frac) = (&body[..at], &body[at + 1..]);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !digits(int) || !digits(frac) || frac.len() == 3 {
        return None;
    }
    let mut written = String::from_utf8_lossy(v).into_owned();
    written = written.replacen(other as char, &(sep as char).to_string(), 1);
    Some(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_refuses_what_the_issue_lists() {
        for (v, needle) in [
            ("1e5", "exponent"),
            ("NaN", "not a number"),
            ("1.234,56", "grouping"),
            ("1,234.56", "grouping"),
            ("1,234", "grouping"),
            ("0,01", "decimal comma: write 0.01"),
            ("12,50", "decimal comma: write 12.50"),
            ("-3,5", "decimal comma: write -3.5"),
            ("12.", "plain decimal"),
            (".5", "plain decimal"),
            ("1 000", "spaces"),
            ("1.2.3", "more than one"),
            ("", "plain decimal"),
            ("-", "plain decimal"),
        ] {
            let (kind, reason) = decimal(v.as_bytes(), b'.').unwrap_err();
            assert_eq!(kind, ErrorKind::Decimal);
            assert!(reason.contains(needle), "{v}: {reason}");
        }
        assert_eq!(decimal(b"-0", b'.').unwrap(), Decimal::ZERO);
        assert_eq!(decimal(b"12.345", b'.').unwrap().scale(), 3);
        assert!(decimal(b"99999999999999999999999999999", b'.').is_err());
        assert!(decimal(b"9999999999999999999999999999", b'.').is_ok());
    }

    #[test]
    fn expiry_formats_and_dates() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        assert_eq!(card_expiry(b"11/26", today).unwrap(), (2026, 11));
        assert_eq!(card_expiry(b"0130", today).unwrap(), (2030, 1));
        assert_eq!(card_expiry(b"2027-02", today).unwrap(), (2027, 2));
        assert_eq!(
            card_expiry(b"10/26", today).unwrap_err().0,
            ErrorKind::Expired
        );
        for bad in ["13/27", "1/27", "2027/02", "ab/cd", "00/30"] {
            assert_eq!(
                card_expiry(bad.as_bytes(), today).unwrap_err().0,
                ErrorKind::ExpiryFormat,
                "{bad}"
            );
        }
    }

    #[test]
    fn tax_numbers_from_python_stdnum_and_a_third_party_list() {
        // python-stdnum's doctest, and valid numbers from a public test list.
        for ok in [
            "4540536920",
            "9029589240",
            "3721052062",
            "1234567890",
            "9876543217",
        ] {
            assert!(tr_tax_number(ok.as_bytes()).is_ok(), "{ok}");
        }
        for bad in ["4540536921", "454053692", "45405369201", "45405369a0"] {
            assert!(tr_tax_number(bad.as_bytes()).is_err(), "{bad}");
        }
        // Every last digit but one fails.
        let valid = (0..10u8)
            .filter(|d| tr_tax_number(format!("454053692{d}").as_bytes()).is_ok())
            .count();
        assert_eq!(valid, 1);
    }

    #[test]
    fn card_parts_are_exact_digit_counts() {
        assert!(card_digits(b"45436012", 8, "first 8 digits").is_ok());
        assert!(card_digits(b"4543601", 8, "first 8 digits").is_err());
        assert!(card_digits(b"12a4", 4, "last 4 digits").is_err());
    }

    #[test]
    fn identity_check_digits_agree_with_the_check() {
        let mut first9 = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        for k in 0..500u32 {
            first9[8] = k % 10;
            first9[4] = (k / 10) % 10;
            let (c10, c11) = tr_identity_check_digits(&first9);
            let s: String = first9
                .iter()
                .chain(&[c10, c11])
                .map(|d| char::from(b'0' + *d as u8))
                .collect();
            assert!(tr_identity(s.as_bytes()).is_ok(), "{s}");
        }
    }

    #[test]
    fn card_numbers() {
        assert!(card_number(b"4111111111111111").is_ok());
        assert_eq!(
            card_number(b"4111111111111112").unwrap_err().0,
            ErrorKind::Luhn
        );
        assert_eq!(
            card_number(b"4111 1111 1111 1111").unwrap_err().0,
            ErrorKind::CardNumber
        );
        assert_eq!(card_number(b"41111").unwrap_err().0, ErrorKind::CardNumber);
    }

    #[test]
    fn decimal_point_in_a_comma_pattern_says_how_to_write_it() {
        let (_, reason) = decimal(b"12.50", b',').unwrap_err();
        assert!(reason.starts_with("decimal point: write 12,50"), "{reason}");
        let (_, reason) = decimal(b"1.234,56", b',').unwrap_err();
        assert!(reason.contains("grouping"), "{reason}");
    }

    #[test]
    fn an_excel_scientific_card_number_shows_its_shape() {
        for (v, shape) in [
            ("4.54E+15", "(4.54E+15)"),
            ("4,54E+15", "(4,54E+15)"),
            ("4.506349116E+15", "(4.50634****E+15)"),
        ] {
            let (kind, reason) = card_number(v.as_bytes()).unwrap_err();
            assert_eq!(kind, ErrorKind::CardNumber);
            assert!(
                reason.starts_with("looks like Excel scientific notation ")
                    && reason.contains(shape),
                "{v}: {reason}"
            );
            assert!(reason.contains("format the column as text"), "{reason}");
        }
    }
}
