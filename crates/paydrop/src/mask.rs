//! Masking of card numbers and identity numbers for everything paydrop prints
//! or writes, except the file it submits to the provider.
//!
//! PCI DSS allows at most the first six and last four digits of a card number
//! to be shown; values too short to keep that many hidden are masked whole.

/// Masks a card number to first 6 / last 4: `4506349116543210` →
/// `450634******3210`. Works on malformed values too (they are what error
/// messages show), keeping only as much as is safe.
///
/// ```
/// use paydrop::mask::card;
/// assert_eq!(card("4506349116543210"), "450634******3210");
/// assert_eq!(card("12345"), "*****");
/// ```
pub fn card(value: &str) -> String {
    keep_ends(value, 6, 4, 12)
}

/// Masks a Turkish identity number (or any other personal id) to its first
/// two and last two characters: `10000000146` → `10*******46`.
///
/// ```
/// assert_eq!(paydrop::mask::identity("10000000146"), "10*******46");
/// ```
pub fn identity(value: &str) -> String {
    keep_ends(value, 2, 2, 8)
}

/// Masks, in free text, every run of 12 or more digits as a card number: a
/// card pasted into the wrong column, or the lines swallowed by a quote left
/// open, must not be printed whole either.
///
/// ```
/// assert_eq!(
///     paydrop::mask::card_numbers("Ayşe\n4506349116543218,12/30"),
///     "Ayşe\n450634******3218,12/30"
/// );
/// assert_eq!(paydrop::mask::card_numbers("MUC-00000001"), "MUC-00000001");
/// ```
pub fn card_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let len = rest[start..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - start);
        let digits = &rest[start..start + len];
        out.push_str(&rest[..start]);
        if len >= 12 {
            out.push_str(&card(digits));
        } else {
            out.push_str(digits);
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// Keeps `head` and `tail` characters when the value has at least `min_len`
/// characters, otherwise masks every character.
fn keep_ends(value: &str, head: usize, tail: usize, min_len: usize) -> String {
    let n = value.chars().count();
    if n < min_len {
        return "*".repeat(n);
    }
    value
        .chars()
        .enumerate()
        .map(|(i, c)| if i < head || i >= n - tail { c } else { '*' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_reveals_more_than_ten_digits_of_a_card() {
        for len in 0..=25 {
            let v: String = "1234567890123456789012345".chars().take(len).collect();
            let m = card(&v);
            assert_eq!(m.chars().count(), len);
            let shown = m.chars().filter(|c| *c != '*').count();
            assert!(shown <= 10 && (len < 12 || shown == 10), "{len}: {m}");
        }
    }
}
