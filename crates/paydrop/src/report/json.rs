//! A small pull reader for the JSON the report endpoints send: it walks a
//! byte stream one token at a time, so a caller can step into a huge
//! envelope and take the elements of one array one by one, holding only the
//! element being read (at most [`Reader::new`]'s `limit` bytes of it).
//!
//! It is deliberately forgiving in one way the published Payzee sample needs:
//! a number that is an object member's value may use a comma as its decimal
//! separator (`"netAmount": 0,00`). Inside an object a `,` after a number
//! followed *directly* by a digit cannot be a member separator (member names
//! are strings), so it is taken as part of the number; inside an array the
//! comma keeps its JSON meaning (`[1,5]` is two numbers). Numbers are kept as
//! their text ([`Value::Number`]) and turned into exact decimals by
//! [`decimal`], never through a float.

use std::io::{self, Read};

use rust_decimal::Decimal;

use crate::validate::check;

/// A JSON value; numbers keep their text.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A string, number or boolean as text; `None` for null, arrays, objects
    /// and empty strings.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.clone()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// A stream that is not the JSON expected.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("not valid JSON at byte {offset}: {reason}")]
    Syntax { offset: u64, reason: String },
    #[error("a value starting at byte {offset} is larger than {limit} bytes")]
    TooLarge { offset: u64, limit: usize },
    #[error("the answer ended early, at byte {offset} (cut off in transit?)")]
    Truncated { offset: u64 },
    #[error("reading the answer: {0}")]
    Io(#[from] io::Error),
}

type Result<T> = std::result::Result<T, JsonError>;

/// Deepest nesting accepted (a report element is two or three levels deep).
const MAX_DEPTH: usize = 64;

/// The pull reader.
pub struct Reader<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes consumed before `buf[start]`.
    offset: u64,
    limit: usize,
    /// Where the value being read started, while one is read.
    value_start: Option<u64>,
}

impl<R: Read> Reader<R> {
    /// A reader that refuses any single value (see [`Reader::value`]) larger
    /// than `limit` bytes.
    pub fn new(inner: R, limit: usize) -> Self {
        Reader {
            inner,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            limit,
            value_start: None,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn syntax<T>(&self, reason: impl Into<String>) -> Result<T> {
        Err(JsonError::Syntax {
            offset: self.offset,
            reason: reason.into(),
        })
    }

    /// The byte `k` places ahead, without skipping anything.
    fn peek_at(&mut self, k: usize) -> Result<Option<u8>> {
        while self.end - self.start <= k {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.end += n;
        }
        Ok(Some(self.buf[self.start + k]))
    }

    fn bump(&mut self) -> Result<()> {
        self.start += 1;
        self.offset += 1;
        match self.value_start {
            Some(at) if self.offset - at > self.limit as u64 => Err(JsonError::TooLarge {
                offset: at,
                limit: self.limit,
            }),
            _ => Ok(()),
        }
    }

    /// The next byte that is not whitespace (not consumed).
    pub fn peek(&mut self) -> Result<Option<u8>> {
        while let Some(b) = self.peek_at(0)? {
            if !b.is_ascii_whitespace() {
                return Ok(Some(b));
            }
            self.bump()?;
        }
        Ok(None)
    }

    fn need(&mut self) -> Result<u8> {
        match self.peek()? {
            Some(b) => Ok(b),
            None => Err(JsonError::Truncated {
                offset: self.offset,
            }),
        }
    }

    fn expect(&mut self, want: u8) -> Result<()> {
        let b = self.need()?;
        if b != want {
            return self.syntax(format!(
                "expected '{}', found '{}'",
                want as char, b as char
            ));
        }
        self.bump()
    }

    /// True when only whitespace is left.
    pub fn at_end(&mut self) -> Result<bool> {
        Ok(self.peek()?.is_none())
    }

    /// Consumes `{`.
    pub fn begin_object(&mut self) -> Result<()> {
        self.expect(b'{')
    }

    /// The next member name of the object being walked (consuming the `:`),
    /// or `None` after its `}`. `first` is true before the first member.
    pub fn next_key(&mut self, first: &mut bool) -> Result<Option<String>> {
        if self.need()? == b'}' {
            self.bump()?;
            return Ok(None);
        }
        if !std::mem::take(first) {
            self.expect(b',')?;
        }
        // A member name outside a value is bounded like a value.
        let outside = self.value_start.is_none();
        if outside {
            self.value_start = Some(self.offset);
        }
        let key = self.string();
        if outside {
            self.value_start = None;
        }
        let key = key?;
        self.expect(b':')?;
        Ok(Some(key))
    }

    /// Consumes `[`.
    pub fn begin_array(&mut self) -> Result<()> {
        self.expect(b'[')
    }

    /// Whether another element follows in the array being walked (consuming
    /// the `,` before it); false after its `]`.
    pub fn next_element(&mut self, first: &mut bool) -> Result<bool> {
        if self.need()? == b']' {
            self.bump()?;
            return Ok(false);
        }
        if !std::mem::take(first) {
            self.expect(b',')?;
        }
        Ok(true)
    }

    /// Reads one whole value, at most `limit` bytes of input.
    pub fn value(&mut self) -> Result<Value> {
        self.need()?;
        self.value_start = Some(self.offset);
        let v = self.any(0, false);
        self.value_start = None;
        v
    }

    fn any(&mut self, depth: usize, member: bool) -> Result<Value> {
        if depth > MAX_DEPTH {
            return self.syntax(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match self.need()? {
            b'{' => {
                self.bump()?;
                let mut members = Vec::new();
                let mut first = true;
                while let Some(key) = self.next_key(&mut first)? {
                    members.push((key, self.any(depth + 1, true)?));
                }
                Ok(Value::Object(members))
            }
            b'[' => {
                self.bump()?;
                let mut items = Vec::new();
                let mut first = true;
                while self.next_element(&mut first)? {
                    items.push(self.any(depth + 1, false)?);
                }
                Ok(Value::Array(items))
            }
            b'"' => Ok(Value::String(self.string()?)),
            b'-' | b'0'..=b'9' => self.number(member),
            b't' => self.literal("true", Value::Bool(true)),
            b'f' => self.literal("false", Value::Bool(false)),
            b'n' => self.literal("null", Value::Null),
            other => self.syntax(format!("unexpected '{}'", other as char)),
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value> {
        for &w in word.as_bytes() {
            if self.peek_at(0)? != Some(w) {
                return self.syntax(format!("expected {word}"));
            }
            self.bump()?;
        }
        Ok(v)
    }

    /// A number's text; see the module documentation for the comma.
    fn number(&mut self, member: bool) -> Result<Value> {
        let mut text = String::new();
        loop {
            match self.peek_at(0)? {
                Some(b @ (b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) => {
                    text.push(b as char);
                    self.bump()?;
                }
                Some(b',') if member && self.peek_at(1)?.is_some_and(|b| b.is_ascii_digit()) => {
                    text.push(',');
                    self.bump()?;
                }
                _ => return Ok(Value::Number(text)),
            }
        }
    }

    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek_at(0)? else {
                return Err(JsonError::Truncated {
                    offset: self.offset,
                });
            };
            self.bump()?;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek_at(0)? else {
                        return Err(JsonError::Truncated {
                            offset: self.offset,
                        });
                    };
                    self.bump()?;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        other => return self.syntax(format!("bad escape '\\{}'", other as char)),
                    };
                    let mut tmp = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
                _ => out.push(b),
            }
        }
        String::from_utf8(out).or_else(|_| self.syntax("a string is not valid UTF-8"))
    }

    fn hex4(&mut self) -> Result<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = self
                .peek_at(0)?
                .and_then(|b| (b as char).to_digit(16))
                .map_or_else(|| self.syntax("bad \\u escape"), Ok)?;
            self.bump()?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if self.peek_at(0)? != Some(b'\\') || self.peek_at(1)? != Some(b'u') {
                return self.syntax("a lone surrogate in a \\u escape");
            }
            self.bump()?;
            self.bump()?;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return self.syntax("a lone surrogate in a \\u escape");
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).map_or_else(|| self.syntax("a lone surrogate in a \\u escape"), Ok)
    }
}

/// Parses a number as the report endpoints write them, exactly:
///
/// * JSON numbers: `12`, `-0.5`, `1.5e3` (exponents only without commas);
/// * a single `,` or a single `.` is the decimal separator: `0,00` = 0.00,
///   `1,5` = 1.5, `1.234` = 1.234;
/// * with both, the last one is the decimal separator and the other groups
///   thousands (groups of exactly three digits): `1.234,56` = `1,234.56` =
///   1234.56;
/// * the same separator more than once groups thousands of a whole number:
///   `1.234.567` = `1,234,567` = 1234567.
///
/// Anything else is refused with the reason. Numbers given as JSON strings
/// go through the same rules.
///
/// ```
/// use paydrop::report::json::decimal;
/// assert_eq!(decimal("1.234,56").unwrap().to_string(), "1234.56");
/// assert_eq!(decimal("0,00").unwrap().to_string(), "0.00");
/// assert!(decimal("1.23,4").is_err());
/// ```
pub fn decimal(raw: &str) -> std::result::Result<Decimal, String> {
    let s = raw.trim();
    let refuse = |why: &str| Err(format!("'{raw}' {why}"));
    if s.contains(['e', 'E']) {
        if s.contains(',') {
            return refuse("mixes an exponent with a decimal comma");
        }
        return Decimal::from_scientific(s).or_else(|_| refuse("is not a number"));
    }
    let dots = s.matches('.').count();
    let commas = s.matches(',').count();
    let (sep, group) = match (dots, commas) {
        (0 | 1, 0) => (b'.', None),
        (0, 1) => (b',', None),
        (_, 0) => (b'.', Some(b'.')),
        (0, _) => (b',', Some(b',')),
        _ if s.rfind('.') > s.rfind(',') => (b'.', Some(b',')),
        _ => (b',', Some(b'.')),
    };
    let Some(group) = group else {
        return check::decimal(s.as_bytes(), sep).map_err(|(_, r)| format!("'{raw}' {r}"));
    };
    let unsigned = s.trim_start_matches(['-', '+']);
    // A whole number grouped with the decimal separator (`1.234.567`).
    let (int, frac) = if group == sep {
        (unsigned, None)
    } else {
        match unsigned.split_once(sep as char) {
            Some((i, f)) if !f.contains(sep as char) => (i, Some(f)),
            _ => return refuse("has more than one decimal separator"),
        }
    };
    let groups: Vec<&str> = int.split(group as char).collect();
    let well_grouped = groups.iter().enumerate().all(|(i, g)| {
        if i == 0 {
            (1..=3).contains(&g.len())
        } else {
            g.len() == 3
        }
    });
    if !well_grouped {
        return refuse("groups digits in something other than threes");
    }
    let mut plain: String = s[..s.len() - unsigned.len()].to_string();
    plain.extend(groups);
    if let Some(f) = frac {
        plain.push('.');
        plain.push_str(f);
    }
    check::decimal(plain.as_bytes(), b'.').map_err(|(_, r)| format!("'{raw}' {r}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(src: &str) -> Value {
        Reader::new(src.as_bytes(), 1 << 20).value().unwrap()
    }

    #[test]
    fn sloppy_member_numbers_and_strict_arrays() {
        let v =
            read(r#"{"a": 0,00, "b":1.234,56,"c": [1,5], "d": "x\u00e7\ud83d\ude00", "e": null}"#);
        assert_eq!(v.get("a"), Some(&Value::Number("0,00".into())));
        assert_eq!(v.get("b"), Some(&Value::Number("1.234,56".into())));
        assert_eq!(
            v.get("c"),
            Some(&Value::Array(vec![
                Value::Number("1".into()),
                Value::Number("5".into())
            ]))
        );
        assert_eq!(v.get("d").unwrap().text().unwrap(), "xç😀");
        assert_eq!(v.get("e").unwrap().text(), None);
    }

    #[test]
    fn decimals_are_exact() {
        for (raw, want) in [
            ("0,00", "0.00"),
            ("0,0", "0.0"),
            ("1.234,56", "1234.56"),
            ("1,234.56", "1234.56"),
            ("-12.345.678,9", "-12345678.9"),
            ("1.234.567", "1234567"),
            ("0.1", "0.1"),
            ("12", "12"),
            ("1.5e3", "1500"),
            ("99999999999999999.99", "99999999999999999.99"),
        ] {
            assert_eq!(decimal(raw).unwrap().to_string(), want, "{raw}");
        }
        for bad in ["1.23,4", "12,34,5", "1,2.3,4", "abc", "", "1,5e3", "1..2"] {
            assert!(decimal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_truncation_and_offsets() {
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(100));
        let e = Reader::new(big.as_bytes(), 50).value().unwrap_err();
        assert!(matches!(e, JsonError::TooLarge { offset: 0, .. }), "{e}");
        let e = Reader::new(&b"{\"a\": [1, 2"[..], 1 << 20)
            .value()
            .unwrap_err();
        assert!(matches!(e, JsonError::Truncated { offset: 11 }), "{e}");
        let e = Reader::new(&b"{\"a\" 1}"[..], 1 << 20).value().unwrap_err();
        assert!(e.to_string().contains("byte 5"), "{e}");
    }

    #[test]
    fn a_token_split_across_reads_is_whole() {
        // One byte per read: every look-ahead crosses a refill.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let src = br#"{"n": 1.234,56, "s": "a\"b"}"#;
        let v = Reader::new(Trickle(src), 1 << 20).value().unwrap();
        assert_eq!(v.get("n"), Some(&Value::Number("1.234,56".into())));
        assert_eq!(v.get("s").unwrap().text().unwrap(), "a\"b");
    }
}
