//! File names as paydrop shows them: in logs, reports and request headers.
//!
//! A file name is chosen by whoever drops the file. One with a line break can
//! forge log lines ("…\n2026-01-01 INFO filed") or, in a header, add a header
//! of its own; one with bidirectional controls can show a different name than
//! it has. Everything that prints or sends a name passes it through
//! [`sanitise`] first; the file on disk keeps its real name.

use std::borrow::Cow;
use std::path::Path;

/// Replaces every character that could break a line, a header or the reading
/// order with `?` (as `ls -q` does): control characters (CR, LF, tab, NUL,
/// ESC, DEL, C1), Unicode line and paragraph separators, and the invisible
/// format characters that reorder or hide text (bidi overrides and isolates,
/// zero-width characters, BOM). Everything else, Turkish letters included,
/// is kept. Borrows when there is nothing to replace.
///
/// ```
/// use paydrop::names::sanitise;
/// assert_eq!(sanitise("pay\r\nments.csv"), "pay??ments.csv");
/// assert_eq!(sanitise("ödemeler-Şubat.csv"), "ödemeler-Şubat.csv");
/// assert_eq!(sanitise("invoice\u{202e}vsc.exe"), "invoice?vsc.exe");
/// ```
pub fn sanitise(name: &str) -> Cow<'_, str> {
    if !name.chars().any(unsafe_char) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(
        name.chars()
            .map(|c| if unsafe_char(c) { '?' } else { c })
            .collect(),
    )
}

/// A path for a log line or a report: lossily decoded (bytes that are not
/// UTF-8 become U+FFFD) and [`sanitise`]d.
///
/// ```
/// use std::path::Path;
/// assert_eq!(paydrop::names::path(Path::new("/in/a\nb.csv")), "/in/a?b.csv");
/// ```
pub fn path(path: &Path) -> String {
    sanitise(&path.to_string_lossy()).into_owned()
}

/// The last component of a path, [`sanitise`]d ("" when there is none).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| sanitise(&n.to_string_lossy()).into_owned())
        .unwrap_or_default()
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_that_breaks_a_line_or_a_header_survives() {
        let nasty = "a\rb\nc\td\0e\u{1b}[31mf\u{7f}g\u{85}h\u{2028}i\u{2066}j\u{200b}k\u{feff}.csv";
        let clean = sanitise(nasty);
        assert_eq!(clean, "a?b?c?d?e?[31mf?g?h?i?j?k?.csv");
        assert!(clean.chars().all(|c| !c.is_control()));
        assert!(matches!(sanitise("plain.csv"), Cow::Borrowed(_)));
    }
}
