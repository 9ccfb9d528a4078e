//! Masking of card numbers and identity numbers for everything paydrop prints
//! or writes, except the file it submits to the provider.
//!
//! PCI DSS allows at most the first six and last four digits of a card number
//! to be shown; values too short to keep that many hidden are masked whole.
//! [`card_numbers`] is the one function every printed or written text goes
//! through (error reasons and values, reports, TSV, file reports, logs via
//! [`MaskingWriter`]): it finds card numbers by their shape wherever they are,
//! whatever the column.

use std::io::{self, Write};

use crate::validate::check::luhn;

/// Masks a card number to first 6 / last 4: `4506349116543210` →
/// `450634******3210`. Works on malformed values too (they are what error
/// messages show), keeping only as much as is safe. A number that a
/// spreadsheet turned into scientific notation keeps its shape (it shows at
/// most the six leading digits), so that the user recognises what happened.
///
/// ```
/// use paydrop::mask::card;
/// assert_eq!(card("4506349116543210"), "450634******3210");
/// assert_eq!(card("12345"), "*****");
/// assert_eq!(card("4.54E+15"), "4.54E+15");
/// assert_eq!(card("4.50634911E+15"), "4.50634***E+15");
/// ```
pub fn card(value: &str) -> String {
    let b = value.as_bytes();
    match b.iter().position(u8::is_ascii_digit) {
        Some(start) if scientific(b, start) == Some(b.len()) => {
            let mut out = value[..start].to_string();
            push_scientific(&mut out, &value[start..]);
            out
        }
        _ => keep_ends(value, 6, 4, 12),
    }
}

/// Whether the whole value is a number in scientific notation (`4.54E+15`,
/// `4,54E+15`): what a spreadsheet shows of a long number.
///
/// ```
/// assert!(paydrop::mask::is_scientific("4,54E+15"));
/// assert!(!paydrop::mask::is_scientific("4506349116543218"));
/// ```
pub fn is_scientific(value: &str) -> bool {
    let b = value.as_bytes();
    b.first().is_some_and(u8::is_ascii_digit) && scientific(b, 0) == Some(b.len())
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

/// Masks every card number in free text, to first 6 / last 4 of its digits,
/// whatever its column or context: a card pasted into the wrong column, the
/// lines swallowed by a quote left open, a provider's message.
///
/// What counts as a card number:
/// - any run of 12 or more digits (a card number with a typo, which fails the
///   Luhn check, is still a card number), except a date-time stamp
///   `20YYMMDDhhmm…` (no card scheme issues numbers starting with 20: such
///   names as `EXTRE_20261125143000.csv` stay readable) and a run inside a
///   hexadecimal digest of 32, 40 or 64 characters (a sha256, a
///   MerchantUniqueCode `pd-<32 hex>-…`) or a UUID;
/// - 12 to 19 digits in groups separated by single spaces or dashes
///   (`4506 3491 1654 3218`, `4506-3491-1654-3218`) that pass the Luhn check
///   and stand apart from letters (not the digit groups of a UUID);
/// - the mantissa of a number in scientific notation (`4.506349116E+15`, as a
///   spreadsheet shows a card number) beyond its sixth digit.
///
/// Masking is idempotent, keeps every other character, and never changes the
/// length of the text.
///
/// ```
/// use paydrop::mask::card_numbers;
/// assert_eq!(card_numbers("Ayşe\n4506349116543218,12/30"), "Ayşe\n450634******3218,12/30");
/// assert_eq!(
///     card_numbers("is 5289391525332536 but this is data row 3"),
///     "is 528939******2536 but this is data row 3"
/// );
/// assert_eq!(card_numbers("card 4506 3491 1654 3218."), "card 4506 34** **** 3218.");
/// assert_eq!(card_numbers("4155659970585567.59"), "415565******5567.59");
/// assert_eq!(card_numbers("MUC-00000001, 2026-11-25 20:00"), "MUC-00000001, 2026-11-25 20:00");
/// ```
pub fn card_numbers(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // `i` starts a run of digits: the byte before it is not a digit.
        out.push_str(&text[copied..i]);
        if let Some(end) = scientific(b, i) {
            push_scientific(&mut out, &text[i..end]);
            copied = end;
            i = end;
            continue;
        }
        let groups = digit_groups(b, i);
        let mut g = 0;
        while g < groups.len() {
            if g > 0 {
                out.push_str(&text[groups[g - 1].1..groups[g].0]);
            }
            if let Some(last) = grouped_card(b, &groups, g) {
                let (start, end) = (groups[g].0, groups[last].1);
                if !in_identifier(b, start, end) {
                    out.push_str(&mask_digits(&text[start..end]));
                    g = last + 1;
                    continue;
                }
            }
            let (start, end) = groups[g];
            if end - start >= 12 && !date_time(&b[start..end]) && !in_identifier(b, start, end) {
                out.push_str(&mask_digits(&text[start..end]));
            } else {
                out.push_str(&text[start..end]);
            }
            g += 1;
        }
        copied = groups.last().map_or(i, |g| g.1);
        i = copied;
    }
    out.push_str(&text[copied..]);
    out
}

/// Whether digits start with a date-time `20YYMMDDhhmm` (no card number
/// starts with 20: Mastercard's 2-series begins at 2221).
fn date_time(d: &[u8]) -> bool {
    let n = |i: usize| u32::from(d[i] - b'0') * 10 + u32::from(d[i + 1] - b'0');
    d.len() >= 12
        && d.starts_with(b"20")
        && (1..=12).contains(&n(4))
        && (1..=31).contains(&n(6))
        && n(8) <= 23
        && n(10) <= 59
}

/// Whether `start..end` lies in a hexadecimal digest (a token of 32, 40 or
/// 64 hex characters with a letter: md5 or our codes, sha1, sha256) or in a
/// UUID (8-4-4-4-12 hex characters).
fn in_identifier(b: &[u8], start: usize, end: usize) -> bool {
    let token = |part: fn(&u8) -> bool| {
        let from = start - b[..start].iter().rev().take_while(|c| part(c)).count();
        let to = end + b[end..].iter().take_while(|c| part(c)).count();
        &b[from..to]
    };
    let hex = token(u8::is_ascii_hexdigit);
    let digest = matches!(hex.len(), 32 | 40 | 64) && hex.iter().any(u8::is_ascii_alphabetic);
    let uuid = token(|c| c.is_ascii_hexdigit() || *c == b'-')
        .split(|c| *c == b'-')
        .map(<[u8]>::len)
        .eq([8, 4, 4, 4, 12]);
    digest || uuid
}

/// The runs of digits from `start` on that are joined by a single space or
/// dash, as (start, end) byte ranges.
fn digit_groups(b: &[u8], start: usize) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let mut s = start;
    loop {
        let e = s + b[s..].iter().take_while(|c| c.is_ascii_digit()).count();
        groups.push((s, e));
        let joined =
            matches!(b.get(e), Some(b' ' | b'-')) && b.get(e + 1).is_some_and(u8::is_ascii_digit);
        if !joined {
            return groups;
        }
        s = e + 1;
    }
}

/// The most groups from group `first` on, at least two, that together are a
/// card number (12–19 digits passing Luhn) standing apart from letters and
/// digits; as the index of the last group.
fn grouped_card(b: &[u8], groups: &[(usize, usize)], first: usize) -> Option<usize> {
    let apart = |at: Option<&u8>| !at.is_some_and(u8::is_ascii_alphanumeric);
    let starts_apart = first > 0 || apart(groups[0].0.checked_sub(1).and_then(|i| b.get(i)));
    if !starts_apart {
        return None;
    }
    let mut digits = [0u8; 19];
    let mut n = 0;
    let mut best = None;
    for (k, &(s, e)) in groups.iter().enumerate().skip(first) {
        if n + (e - s) > digits.len() {
            break;
        }
        digits[n..n + (e - s)].copy_from_slice(&b[s..e]);
        n += e - s;
        let ends_apart = k + 1 < groups.len() || apart(b.get(e));
        if k > first && n >= 12 && ends_apart && luhn(&digits[..n]) {
            best = Some(k);
        }
    }
    best
}

/// Masks the digits of `s` except its first six and last four, leaving every
/// other character.
fn mask_digits(s: &str) -> String {
    let total = s.bytes().filter(u8::is_ascii_digit).count();
    let mut seen = 0;
    s.chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            seen += 1;
            if seen <= 6 || seen > total.saturating_sub(4) {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// The end of a number in scientific notation starting at `start`
/// (`4.54E+15`, `4,54E+15`, `5E15`), if there is one.
fn scientific(b: &[u8], start: usize) -> Option<usize> {
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = start + digits(start);
    if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1 + digits(i + 1);
    }
    if !matches!(b.get(i), Some(b'e' | b'E')) {
        return None;
    }
    i += 1;
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    match digits(i) {
        1..=3 if !b.get(i + digits(i)).is_some_and(u8::is_ascii_alphanumeric) => {
            Some(i + digits(i))
        }
        _ => None,
    }
}

/// A number in scientific notation with its mantissa cut to six digits: the
/// leading digits of a card are the ones that may be shown.
fn push_scientific(out: &mut String, number: &str) {
    let mut seen = 0;
    let mut in_mantissa = true;
    for c in number.chars() {
        in_mantissa &= !matches!(c, 'e' | 'E');
        if in_mantissa && c.is_ascii_digit() {
            seen += 1;
            out.push(if seen <= 6 { c } else { '*' });
        } else {
            out.push(c);
        }
    }
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

/// A writer that masks card numbers ([`card_numbers`]) in everything written
/// through it, for the log output. It holds what it is given until it is
/// flushed or dropped, so that a number split over two writes is still found;
/// a log line is one write followed by a drop. With `json`, only the text
/// inside JSON strings is masked, so that the output stays valid JSON.
pub struct MaskingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
    json: bool,
}

impl<W: Write> MaskingWriter<W> {
    pub fn new(inner: W, json: bool) -> Self {
        MaskingWriter {
            inner,
            buf: Vec::new(),
            json,
        }
    }

    fn write_masked(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        let masked = if self.json {
            mask_json_strings(&text)
        } else {
            card_numbers(&text)
        };
        self.buf.clear();
        self.inner.write_all(masked.as_bytes())
    }
}

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_masked()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for MaskingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write.
        let _ = self.flush();
    }
}

/// Masks card numbers inside the string literals of JSON text only: numbers
/// and punctuation stay as they are.
fn mask_json_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end] != b'"' {
            end += if b[end] == b'\\' { 2 } else { 1 };
        }
        // An escape at the very end, or before a multi-byte character.
        let mut end = end.min(b.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push_str(&text[copied..start]);
        out.push_str(&card_numbers(&text[start..end]));
        copied = end;
        i = end + 1;
    }
    out.push_str(&text[copied..]);
    out
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

    /// Digits of the card that the masked text still shows.
    fn shown_digits(masked: &str) -> usize {
        masked.bytes().filter(u8::is_ascii_digit).count()
    }

    #[test]
    fn finds_cards_in_any_shape_and_context() {
        let card16 = "4506349116543218";
        for (text, expected) in [
            (card16, "450634******3218"),
            ("4506 3491 1654 3218", "4506 34** **** 3218"),
            ("4506-3491-1654-3218", "4506-34**-****-3218"),
            (
                "line 3: is 5289391525332536 but",
                "line 3: is 528939******2536 but",
            ),
            ("x5289391525332536y", "x528939******2536y"),
            ("Amex 3782 822463 10005 paid", "Amex 3782 82**** *0005 paid"),
            // A card after a short number, and a year after a card.
            ("3 4506 3491 1654 3218", "3 4506 34** **** 3218"),
            ("4506 3491 1654 3218 2030", "4506 34** **** 3218 2030"),
            // Not Luhn but 12+ digits in one run: masked all the same.
            ("4506349116543211", "450634******3211"),
            ("4155659970585567.59", "415565******5567.59"),
            // Not a date-time (month 13), not a digest (too short).
            ("2026132514300012", "202613******0012"),
            ("ab4506349116543218cd", "ab450634******3218cd"),
        ] {
            assert_eq!(card_numbers(text), expected, "{text}");
            assert_eq!(card_numbers(expected), expected, "idempotent: {expected}");
        }
        assert_eq!(shown_digits(&card_numbers(card16)), 10);
    }

    #[test]
    fn leaves_ordinary_numbers_alone() {
        for text in [
            "MUC-00000001",
            "PD-11-00000001",
            "2026-11-25 20:00:00",
            "rows 1, 2, 3, …",
            "TRY 1034038048.60 over 150000 rows",
            "0532 123 45 67",
            "has 16 fields; pattern 1 has 17 columns",
            "EXTRE_20261125143000.csv",
            "20261125143000123",
            "sha256 5b1ae2527031c1e36da389def4d06c0bbdf42aae889abe8397120d48c2a9f9bd",
            "sha256 5b1ae252703111136281234567890c0bbdf42aae889abe8397120d48c2a9f9bd",
            "pd-5b1ae2527031c1e3628123456789f0bb-1of2",
            // UUIDs, whose digit groups may pass Luhn or run to 12 digits.
            "a9277a1c-80db-4868-a072-481799038a00",
            "a9277a1c-80db-4868-4072-481799038100",
            "a9277a1c-80db-4868-4506-349116543218",
        ] {
            assert_eq!(card_numbers(text), text);
        }
        // Grouped digits that fail Luhn are not a card.
        assert_eq!(card_numbers("4506 3491 1654 3211"), "4506 3491 1654 3211");
    }

    #[test]
    fn scientific_notation_keeps_its_shape() {
        assert_eq!(card("4.54E+15"), "4.54E+15");
        assert_eq!(card("4,54E+15"), "4,54E+15");
        assert_eq!(card("4.506349116E+15"), "4.50634****E+15");
        assert_eq!(
            card_numbers("'4.506349116543E+15' is not a card"),
            "'4.50634*******E+15' is not a card"
        );
        assert_eq!(card_numbers("amount 1e5"), "amount 1e5");
        // A number that only looks like it: letters after the exponent.
        assert_eq!(card_numbers("4506349116543218e5x"), "450634******3218e5x");
    }

    #[test]
    fn the_log_writer_masks_whole_lines_and_keeps_json_valid() {
        let mut out = Vec::new();
        {
            let mut w = MaskingWriter::new(&mut out, false);
            w.write_all(b"refused: 45063491").unwrap();
            w.write_all(b"16543218\n").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "refused: 450634******3218\n"
        );

        let mut out = Vec::new();
        {
            let mut w = MaskingWriter::new(&mut out, true);
            w.write_all(br#"{"bytes":123456789012345,"msg":"card \"4506349116543218\""}"#)
                .unwrap();
        }
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            r#"{"bytes":123456789012345,"msg":"card \"450634******3218\""}"#
        );
        serde_json::from_str::<serde_json::Value>(&line).unwrap();
    }
}
