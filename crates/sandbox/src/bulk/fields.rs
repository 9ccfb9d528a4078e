//! The checks of single values of a payment row, and how a value is shown
//! in a message or a result line (card and identity numbers masked).

use rust_decimal::Decimal;

/// Whether `s` is all ASCII digits (and not empty).
pub(crate) fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The Luhn check (ISO/IEC 7812-1 annex B) of a full card number.
pub(crate) fn luhn(number: &str) -> bool {
    if !digits(number) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A card number the pages accept: 12 to 19 digits (ISO/IEC 7812 lengths
/// in use) that pass Luhn.
pub(crate) fn card_number(number: &str) -> bool {
    (12..=19).contains(&number.len()) && luhn(number)
}

/// A TCKN: 11 digits, not starting with 0, whose 10th digit is
/// `(7 × (d1+d3+d5+d7+d9) − (d2+d4+d6+d8)) mod 10` and whose 11th is the
/// sum of the first ten mod 10. The algorithm as python-stdnum implements it
/// (https://github.com/arthurdejong/python-stdnum/blob/master/stdnum/tr/tckimlik.py);
/// the insurance pattern's `identityNumber` is "TCKN/VKN"
/// (https://developer.paywall.one/payment-orchestration-integration-document/system-data/bulk-payment-file-information).
pub(crate) fn tckn(number: &str) -> bool {
    if number.len() != 11 || !digits(number) || number.starts_with('0') {
        return false;
    }
    let d: Vec<i32> = number.bytes().map(|b| i32::from(b - b'0')).collect();
    let odd = d[0] + d[2] + d[4] + d[6] + d[8];
    let even = d[1] + d[3] + d[5] + d[7];
    let tenth = (7 * odd - even).rem_euclid(10);
    let eleventh = d[..10].iter().sum::<i32>() % 10;
    d[9] == tenth && d[10] == eleventh
}

/// A VKN: 10 digits whose last is the check digit of the first nine: for
/// the digit `n` at position `i` counted from the right of the nine (1–9),
/// `c1 = (n + i) mod 10`, and when `c1` is not 0, `c2 = c1 × 2^i mod 9`
/// (9 when that is 0); the check digit is `(10 − Σc2 mod 10) mod 10`.
/// The algorithm as python-stdnum implements it
/// (https://github.com/arthurdejong/python-stdnum/blob/master/stdnum/tr/vkn.py,
/// after https://www.turkiye.gov.tr/gib-intvrg-vergi-kimlik-numarasi-dogrulama).
pub(crate) fn vkn(number: &str) -> bool {
    if number.len() != 10 || !digits(number) {
        return false;
    }
    let d: Vec<u32> = number.bytes().map(|b| u32::from(b - b'0')).collect();
    let sum: u32 = d[..9]
        .iter()
        .rev()
        .zip(1u32..)
        .map(|(&n, i)| {
            let c1 = (n + i) % 10;
            match c1 {
                0 => 0,
                _ => match (c1 * (1 << i)) % 9 {
                    0 => 9,
                    c2 => c2,
                },
            }
        })
        .sum();
    d[9] == (10 - sum % 10) % 10
}

/// An amount: a plain positive decimal with `.` and at most `minor_units`
/// decimals, no sign, no thousands separator, no exponent. The pages give
/// no format (docs/providers/paywall.md §1.6); this is the safe reading.
pub(crate) fn amount(text: &str, minor_units: u32) -> Result<Decimal, String> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err("must be a plain decimal with '.' like 125.50".into());
    }
    let decimals = fraction.map_or(0, str::len);
    if decimals > minor_units as usize {
        return Err(format!(
            "has {decimals} decimals; the currency has {minor_units}"
        ));
    }
    let value = Decimal::from_str_exact(text).map_err(|_| "is out of range".to_string())?;
    if value <= Decimal::ZERO {
        return Err("must be more than zero".into());
    }
    Ok(value)
}

/// A card expiry as `(year, month)`, read from `MM/YY`, `MM/YYYY`, `MMYY`
/// or `MMYYYY`. The pages give no format (docs §1.6); these are the
/// spellings the sandbox reads.
pub(crate) fn expiry(text: &str) -> Option<(i32, u32)> {
    let (month, year) = match text.split_once('/') {
        Some((m, y)) => (m, y),
        None if text.len() >= 4 && digits(text) => text.split_at(2),
        None => return None,
    };
    if month.len() != 2 || !digits(month) || !digits(year) {
        return None;
    }
    let month: u32 = month.parse().ok()?;
    let year: i32 = match year.len() {
        2 => 2000 + year.parse::<i32>().ok()?,
        4 => year.parse().ok()?,
        _ => return None,
    };
    (1..=12).contains(&month).then_some((year, month))
}

/// A card number as a provider shows it: the first 6 and last 4 digits,
/// the rest `*` (PCI DSS 3.4's display masking; the result pages do not
/// say how they mask, docs §2.5). `first` and `last` are what is known of
/// the card (an insurance row carries only its first 8 and last 4 digits,
/// and its length is unknown: 16 is assumed).
pub(crate) fn masked_card(first: &str, last: &str, len: usize) -> String {
    let shown_first = &first[..first.len().min(6)];
    let stars = len.saturating_sub(shown_first.len() + last.len());
    format!("{shown_first}{}{last}", "*".repeat(stars))
}

/// A value as a refusal message shows it: card-like digit runs masked to
/// their first 6 and last 4 digits, identity-like ones (10 or 11 digits)
/// to their first and last 2, long values cut.
pub(crate) fn shown(value: &str) -> String {
    let len = value.len();
    if digits(value) && len >= 12 {
        return masked_card(&value[..6], &value[len - 4..], len);
    }
    if digits(value) && len >= 10 {
        return format!(
            "{}{}{}",
            &value[..2],
            "*".repeat(len - 4),
            &value[len - 2..]
        );
    }
    let cut: String = value.chars().take(40).collect();
    if cut.len() < value.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_numbers() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("5528790000000008"));
        assert!(!luhn("4111111111111112"));
        assert!(!card_number("4111 1111 1111 1111"));
    }

    #[test]
    fn tckn_vectors() {
        // python-stdnum's doctest vectors and the docs' example.
        assert!(tckn("17291716060"));
        assert!(tckn("10000000146"));
        assert!(!tckn("17291716050"));
        assert!(!tckn("07291716092"));
        assert!(!tckn("1729171606"));
    }

    #[test]
    fn vkn_vectors() {
        // python-stdnum's doctest vectors.
        assert!(vkn("4540536920"));
        assert!(!vkn("4540536921"));
        assert!(!vkn("454053692"));
    }

    #[test]
    fn amounts() {
        assert_eq!(amount("125.50", 2).unwrap().to_string(), "125.50");
        assert_eq!(amount("7", 2).unwrap().to_string(), "7");
        for bad in [
            "", "1,50", "-1", "+1", "1.505", "1e3", "0.00", " 1", "1.", ".5",
        ] {
            assert!(amount(bad, 2).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiries() {
        assert_eq!(expiry("12/30"), Some((2030, 12)));
        assert_eq!(expiry("01/2031"), Some((2031, 1)));
        assert_eq!(expiry("0930"), Some((2030, 9)));
        assert_eq!(expiry("092030"), Some((2030, 9)));
        for bad in ["13/30", "1/30", "2030-09", "", "12/3"] {
            assert_eq!(expiry(bad), None, "{bad}");
        }
    }

    #[test]
    fn masking() {
        assert_eq!(
            masked_card("4111111111111111", "1111", 16),
            "411111******1111"
        );
        assert_eq!(masked_card("45431234", "9876", 16), "454312******9876");
        assert_eq!(shown("4111111111111111"), "411111******1111");
        assert_eq!(shown("12345678951"), "12*******51");
        assert_eq!(shown("Doe"), "Doe");
    }
}
