//! Hints for the common mistakes behind a bad file: a header row in a
//! headerless pattern, a file written with another delimiter, a spreadsheet
//! passed instead of its CSV export. Each looks at one record or the first
//! bytes of the file, while the validator streams, so that the cause is said
//! once instead of as a cascade of per-cell errors.

use std::io::{self, Read};
use std::path::Path;

use crate::mask;
use crate::pattern::Pattern;

/// Delimiters a payment file is commonly written with, and their names.
const DELIMITERS: [(u8, &str); 4] = [
    (b';', "semicolon"),
    (b'\t', "tab"),
    (b'|', "pipe"),
    (b',', "comma"),
];

/// What a single-field row would be with another common delimiter: the
/// delimiter that splits it into exactly the pattern's column count.
pub fn other_delimiter(field: &[u8], pattern: &Pattern) -> Option<u8> {
    let want = pattern.columns.len();
    DELIMITERS
        .iter()
        .map(|&(d, _)| d)
        .filter(|&d| d != pattern.delimiter)
        .find(|&d| memchr::memchr_iter(d, field).count() + 1 == want)
}

/// `';'`, `tab`, … as a person reads them.
pub fn shown(delimiter: u8) -> String {
    match delimiter {
        b'\t' => "tab".into(),
        d => format!("'{}'", (d as char).escape_default()),
    }
}

/// "semicolon", "tab", …
fn name(delimiter: u8) -> String {
    DELIMITERS
        .iter()
        .find(|(d, _)| *d == delimiter)
        .map_or_else(|| shown(delimiter), |(_, n)| (*n).to_string())
}

/// The file-wide hint for rows of one field that `delimiter` would split into
/// the pattern's columns.
pub fn delimiter_message(delimiter: u8, pattern: &Pattern) -> String {
    format!(
        "rows have 1 field; with {} they would have {}: the file looks {}-delimited; pattern \
         {} expects {} (save the file with {}, or use a pattern with delimiter = \"{}\")",
        shown(delimiter),
        pattern.columns.len(),
        name(delimiter),
        pattern.id,
        shown(pattern.delimiter),
        shown(pattern.delimiter),
        (delimiter as char).escape_default()
    )
}

/// Whether a first record that the pattern does not take for a header still
/// looks like one: it fails as a payment row (`fails`) and either holds some
/// of the pattern's column names or no digit at all (every payment row has a
/// card number and an amount). Returns the message to report in place of its
/// per-cell errors.
pub fn header_message(cells: &[&[u8]], fails: bool, pattern: &Pattern) -> Option<String> {
    if !fails {
        return None;
    }
    let text = |f: &[u8]| mask::card_numbers(String::from_utf8_lossy(f.trim_ascii()).as_ref());
    let named: Vec<String> = cells
        .iter()
        .filter(|f| pattern.columns.iter().any(|c| same_name(&c.name, f)))
        .map(|f| text(f))
        .collect();
    let filled: Vec<&[u8]> = cells
        .iter()
        .copied()
        .filter(|f| !f.trim_ascii().is_empty())
        .collect();
    let digit_free = filled.len() >= 2 && filled.iter().all(|f| !f.iter().any(u8::is_ascii_digit));
    let what = if !named.is_empty() {
        format!("it holds the column names {}", list(&named))
    } else if digit_free {
        let cells: Vec<String> = filled.iter().map(|f| text(f)).collect();
        format!(
            "its cells hold words and no digits: {}; none is a column name of pattern {}",
            list(&cells),
            pattern.id
        )
    } else {
        return None;
    };
    Some(format!(
        "looks like a header ({what}), but pattern {} reads no header row: remove \
         the line, or use a pattern with header = true; the line was not checked as a payment",
        pattern.id
    ))
}

/// A column name in a cell, ignoring case, spaces, `_` and `-`
/// ("Card Number" is `card_number`).
fn same_name(column: &str, cell: &[u8]) -> bool {
    let key = |b: &[u8]| -> Vec<u8> {
        b.iter()
            .filter(|&&c| !matches!(c, b' ' | b'_' | b'-'))
            .map(u8::to_ascii_lowercase)
            .collect()
    };
    let cell = key(cell);
    !cell.is_empty() && key(column.as_bytes()) == cell
}

/// At most six items, comma-separated, each cut to a readable length.
fn list(items: &[String]) -> String {
    let cut = |s: &String| match s.char_indices().nth(30) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.clone(),
    };
    let mut shown: Vec<String> = items.iter().take(6).map(cut).collect();
    if items.len() > 6 {
        shown.push(format!("… ({} in all)", items.len()));
    }
    shown.join(", ")
}

/// What kind of spreadsheet a file is, from its first bytes (zip or OLE
/// container) and its name; `None` for anything else. A zip that is not a
/// spreadsheet is left to the reader, which refuses it as compressed.
pub fn spreadsheet(head: &[u8], path: &Path) -> Option<&'static str> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let contains = |needle: &[u8]| memchr::memmem::find(head, needle).is_some();
    if head.starts_with(b"PK\x03\x04") {
        if contains(b"application/vnd.oasis.opendocument.spreadsheet") || ext == "ods" {
            return Some("an OpenDocument spreadsheet (.ods)");
        }
        if contains(b"xl/") || ext == "xlsx" || ext == "xlsm" {
            return Some("an Excel workbook (.xlsx)");
        }
    }
    // The OLE2 compound-file signature of .xls (and other old Office files).
    if head.starts_with(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        return Some("an Excel 97–2003 workbook (.xls)");
    }
    None
}

/// The first bytes of a file, enough to tell a spreadsheet by.
pub fn head(mut file: impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(4096);
    file.by_ref().take(4096).read_to_end(&mut head)?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Registry;

    fn pattern_1() -> Pattern {
        Registry::load(None).unwrap().get(1).unwrap().clone()
    }

    #[test]
    fn a_semicolon_file_is_named_once_with_the_count_it_would_have() {
        let p = pattern_1();
        let row = vec!["x"; p.columns.len()].join(";");
        assert_eq!(other_delimiter(row.as_bytes(), &p), Some(b';'));
        let tabbed = vec!["x"; p.columns.len()].join("\t");
        assert_eq!(other_delimiter(tabbed.as_bytes(), &p), Some(b'\t'));
        assert_eq!(other_delimiter(b"a;b", &p), None);
        let m = delimiter_message(b';', &p);
        assert!(
            m.contains(&format!(
                "rows have 1 field; with ';' they would have {}",
                p.columns.len()
            )) && m.contains("semicolon-delimited")
                && m.contains("expects ','"),
            "{m}"
        );
    }

    #[test]
    fn a_header_is_recognised_by_names_or_by_having_no_digits() {
        let p = pattern_1();
        let names: Vec<&[u8]> = p.columns.iter().map(|c| c.name.as_bytes()).collect();
        let m = header_message(&names, true, &p).unwrap();
        assert!(m.starts_with("looks like a header"), "{m}");
        assert!(m.contains(&p.columns[0].name) && m.contains("header = true"));
        let bytes = |cells: &[&'static str]| -> Vec<&'static [u8]> {
            cells.iter().map(|c| c.as_bytes()).collect()
        };
        let words = bytes(&["Kart No", "Son Kullanma", "Tutar"]);
        let m = header_message(&words, true, &p).unwrap();
        assert!(m.contains("no digits: Kart No, Son Kullanma, Tutar"), "{m}");
        // A bad payment row is not a header, and neither is a valid row.
        let row = bytes(&["4506349116543218", "12/30", "abc"]);
        assert_eq!(header_message(&row, true, &p), None);
        assert_eq!(header_message(&names, false, &p), None);
        assert!(same_name("card_number", b" Card Number "));
    }

    #[test]
    fn spreadsheets_are_told_by_their_first_bytes_and_name() {
        let csv = Path::new("x.csv");
        let mut xlsx = b"PK\x03\x04".to_vec();
        xlsx.extend_from_slice(&[0; 26]);
        xlsx.extend_from_slice(b"xl/workbook.xml");
        assert_eq!(spreadsheet(&xlsx, csv), Some("an Excel workbook (.xlsx)"));
        assert_eq!(
            spreadsheet(b"PK\x03\x04....", Path::new("pay.XLSX")),
            Some("an Excel workbook (.xlsx)")
        );
        assert_eq!(spreadsheet(b"PK\x03\x04....data.csv", csv), None);
        let ole = [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, 0, 0];
        assert_eq!(
            spreadsheet(&ole, Path::new("x.xls")),
            Some("an Excel 97–2003 workbook (.xls)")
        );
        let ods = b"PK\x03\x04mimetypeapplication/vnd.oasis.opendocument.spreadsheet";
        assert_eq!(
            spreadsheet(ods, csv),
            Some("an OpenDocument spreadsheet (.ods)")
        );
        assert_eq!(
            spreadsheet(b"4506349116543218,12/30", Path::new("x.xlsx")),
            None
        );
    }
}
