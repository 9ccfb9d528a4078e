//! File patterns: what the provider's `FilePattern` numbers mean.
//!
//! A pattern is the layout of one kind of payment file: delimiter, header,
//! encoding, decimal separator and the ordered, typed columns. Patterns 1 and
//! 3 are built in exactly as the provider publishes them; every other layout
//! (the provider's unpublished 2 and 4, a bank's own) comes from a TOML file in
//! a patterns folder. This module parses and checks pattern definitions; the
//! per-row checks themselves live in [`crate::validate`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The provider's `FileFormat` for delimited text, the only one it accepts today.
pub const FILE_FORMAT_TXT: u8 = 5;

/// A complete, checked file pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// The provider's `FilePattern` number.
    pub id: u16,
    pub name: String,
    /// The provider's `FileFormat` (5 = delimited text).
    pub file_format: u8,
    pub delimiter: u8,
    pub header: Header,
    pub encoding: Encoding,
    /// `b'.'` or `b','`.
    pub decimal_separator: u8,
    /// Whether the provider reads RFC 4180 quoted fields.
    pub quoting: Quoting,
    pub columns: Vec<Column>,
    /// Where the pattern came from: `built-in` or a file path.
    pub source: String,
}

/// Whether the first row names the columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    Present,
    Absent,
    /// A header is present when the first row's cells equal the column names
    /// (case-insensitively); useful because merchants export both ways.
    Auto,
}

/// How a value holding the delimiter, a quote or a line break can be sent.
///
/// The provider's pages show a row as a plain join of its fields with
/// commas (`{cardNumber},{expiryDate},…`) and document no quoting
/// (<https://developer.paywall.one/payment-orchestration-integration-document/system-data/bulk-payment-file-information>):
/// quoting such a value would shift the provider's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quoting {
    /// No quoting (the default): such a value is refused at validation.
    None,
    /// The provider is known to read RFC 4180 quoting: such values are sent
    /// quoted, a quote doubled. Line breaks inside a value stay refused.
    Rfc4180,
}

/// Text encoding of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8; a leading byte-order mark is accepted and skipped.
    Utf8,
    /// Windows-1254 (Turkish), the default of many Turkish bank exports.
    Windows1254,
}

/// One column of a pattern.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
    /// An empty cell is an error when true.
    pub required: bool,
    /// No two rows may share a value (checked across the whole file).
    pub unique: bool,
    /// This column is the payment amount that is totalled.
    pub amount: bool,
    /// This column names each row's currency; totals are kept per currency.
    pub currency: bool,
    /// This column numbers the data rows 1, 2, 3, …
    pub line_number: bool,
    /// This column identifies one payment (the provider's row
    /// `merchantUniqueCode`): the ledger remembers it for every row sent, so
    /// that the same payment is never sent twice, and the result file is
    /// matched against it.
    pub payment_code: bool,
    /// Values are masked wherever paydrop prints them.
    pub mask: bool,
}

/// The type of a column and its constraints.
#[derive(Clone, Debug)]
pub enum ColumnType {
    String {
        min_len: Option<usize>,
        max_len: Option<usize>,
        regex: Option<Regex>,
    },
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Decimal {
        /// Most decimal places allowed (the currency's minor units apply too).
        scale: Option<u32>,
        min: Option<Decimal>,
        max: Option<Decimal>,
    },
    Date {
        format: String,
    },
    DateTime {
        format: String,
    },
    Boolean,
    Enum {
        values: Vec<String>,
    },
    /// 12–19 digits passing the Luhn check.
    CardNumber,
    /// The card's first 8 digits (pattern 3's `cardNoFirst`).
    CardFirst8,
    /// The card's last 4 digits (pattern 3's `cardNoLast`).
    CardLast4,
    /// `MM/YY`, `MMYY` or `YYYY-MM`, not before the month of the check date.
    CardExpiry,
    /// ISO 13616 IBAN with the country's length.
    Iban,
    /// Turkish national identity number (TCKN): 11 digits, two check digits.
    TrIdentity,
    /// Turkish tax number (VKN): 10 digits, one check digit.
    TrTaxNumber,
    /// A TCKN or a VKN, told apart by length (pattern 3's `identityNumber`).
    TrIdentityOrTaxNumber,
    /// ISO 4217 alphabetic or numeric code.
    Currency,
    Email,
}

impl ColumnType {
    /// Whether values of this type are masked whatever the pattern says: full
    /// card numbers and identity or tax numbers (card parts are partial
    /// already).
    pub fn always_masked(&self) -> bool {
        matches!(
            self,
            ColumnType::CardNumber
                | ColumnType::TrIdentity
                | ColumnType::TrTaxNumber
                | ColumnType::TrIdentityOrTaxNumber
        )
    }

    /// The name used in pattern files.
    pub fn type_name(&self) -> &'static str {
        match self {
            ColumnType::String { .. } => "string",
            ColumnType::Integer { .. } => "integer",
            ColumnType::Decimal { .. } => "decimal",
            ColumnType::Date { .. } => "date",
            ColumnType::DateTime { .. } => "datetime",
            ColumnType::Boolean => "boolean",
            ColumnType::Enum { .. } => "enum",
            ColumnType::CardNumber => "card_number",
            ColumnType::CardFirst8 => "card_first8",
            ColumnType::CardLast4 => "card_last4",
            ColumnType::CardExpiry => "card_expiry",
            ColumnType::Iban => "iban",
            ColumnType::TrIdentity => "tr_identity",
            ColumnType::TrTaxNumber => "tr_tax_number",
            ColumnType::TrIdentityOrTaxNumber => "tr_identity_or_tax_number",
            ColumnType::Currency => "currency",
            ColumnType::Email => "email",
        }
    }
}

impl Pattern {
    /// Index of the column holding the amount, if any.
    pub fn amount_column(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.amount)
    }

    /// Index of the column identifying each payment, if any.
    pub fn payment_code_column(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.payment_code)
    }

    /// The row's card number as paydrop may keep it: its first 6 and last 4
    /// digits ([`crate::mask::card`]), from a card number column or from
    /// pattern 3's two parts (`cardNoFirst` … `cardNoLast`).
    pub fn masked_card(&self, rec: &csv::ByteRecord) -> Option<String> {
        let cell = |is: fn(&ColumnType) -> bool| {
            let i = self.columns.iter().position(|c| is(&c.kind))?;
            rec.get(i).map(|f| self.decode(f))
        };
        if let Some(full) = cell(|k| matches!(k, ColumnType::CardNumber)) {
            return Some(crate::mask::card(&full));
        }
        let first = cell(|k| matches!(k, ColumnType::CardFirst8))?;
        let last = cell(|k| matches!(k, ColumnType::CardLast4))?;
        Some(format!("{}…{last}", first.get(..6).unwrap_or(&first)))
    }

    /// Index of the column numbering the rows, if any.
    pub fn line_number_column(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.line_number)
    }

    /// Index of the column holding the currency, if any.
    pub fn currency_column(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.currency)
    }

    /// A cell as text in the pattern's encoding.
    pub fn decode<'b>(&self, cell: &'b [u8]) -> std::borrow::Cow<'b, str> {
        match self.encoding {
            Encoding::Utf8 => String::from_utf8_lossy(cell),
            Encoding::Windows1254 => {
                encoding_rs::WINDOWS_1254
                    .decode_without_bom_handling(cell)
                    .0
            }
        }
    }

    /// Index of the column named `name` (case-insensitive).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The pattern as TOML, in the format [`Pattern::from_toml`] reads: a
    /// built-in pattern printed this way is a template for a custom one.
    pub fn to_toml(&self) -> String {
        toml::to_string(&RawPattern::from(self)).expect("a pattern always serialises")
    }

    /// Parses and checks a pattern definition. `origin` names the file in
    /// errors.
    ///
    /// ```
    /// let src = r#"
    /// id = 7
    /// name = "Refunds"
    /// delimiter = ";"
    /// decimal_separator = ","
    ///
    /// [[columns]]
    /// name = "card"
    /// type = "card_number"
    ///
    /// [[columns]]
    /// name = "amount"
    /// type = "decimal"
    /// scale = 2
    /// min = "0.01"
    /// amount = true
    /// "#;
    /// let p = paydrop::pattern::Pattern::from_toml(src, "refunds.toml").unwrap();
    /// assert_eq!(p.delimiter, b';');
    /// assert_eq!(p.amount_column(), Some(1));
    /// ```
    pub fn from_toml(src: &str, origin: &str) -> Result<Pattern, PatternError> {
        let raw: RawPattern = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_of(src, s.start));
            PatternError::at(origin, line, e.message().trim_end().to_string())
        })?;
        raw.check(src, origin)
    }

    /// Reads a pattern file.
    pub fn from_file(path: &Path) -> Result<Pattern, PatternError> {
        let origin = path.display().to_string();
        let src = std::fs::read_to_string(path)
            .map_err(|e| PatternError::at(&origin, None, format!("cannot read: {e}")))?;
        Pattern::from_toml(&src, &origin)
    }
}

/// A mistake in a pattern definition, with the file and line it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PatternError {
    pub origin: String,
    pub line: Option<usize>,
    pub message: String,
}

impl PatternError {
    fn at(origin: &str, line: Option<usize>, message: String) -> Self {
        PatternError {
            origin: origin.to_string(),
            line,
            message,
        }
    }
}

fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

// ---------------------------------------------------------------------------
// The file format. Every key is optional in serde's eyes so that the checks
// below can name the key and the line when something is missing or wrong.

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPattern {
    id: Spanned<u16>,
    name: Spanned<String>,
    #[serde(default = "default_file_format")]
    file_format: Spanned<u8>,
    #[serde(default = "default_delimiter")]
    delimiter: Spanned<String>,
    #[serde(default = "default_header")]
    header: Spanned<RawHeader>,
    #[serde(default = "default_encoding")]
    encoding: Spanned<String>,
    #[serde(default = "default_decimal")]
    decimal_separator: Spanned<String>,
    #[serde(default = "default_quoting")]
    quoting: Spanned<String>,
    columns: Vec<Spanned<RawColumn>>,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(untagged)]
enum RawHeader {
    Flag(bool),
    Word(String),
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    required: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    unique: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    amount: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    currency: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    line_number: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    payment_code: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    mask: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scale: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn unspanned<T>(v: T) -> Spanned<T> {
    // Defaults have no place in the source; span 0..0 points at line 1.
    Spanned::new(0..0, v)
}
fn default_file_format() -> Spanned<u8> {
    unspanned(FILE_FORMAT_TXT)
}
fn default_delimiter() -> Spanned<String> {
    unspanned(",".into())
}
fn default_header() -> Spanned<RawHeader> {
    unspanned(RawHeader::Word("auto".into()))
}
fn default_encoding() -> Spanned<String> {
    unspanned("utf-8".into())
}
fn default_decimal() -> Spanned<String> {
    unspanned(".".into())
}
fn default_quoting() -> Spanned<String> {
    unspanned("none".into())
}

impl RawPattern {
    fn check(self, src: &str, origin: &str) -> Result<Pattern, PatternError> {
        let err = |span: std::ops::Range<usize>, key: &str, msg: String| {
            PatternError::at(
                origin,
                Some(line_of(src, span.start)),
                format!("`{key}`: {msg}"),
            )
        };

        let file_format = *self.file_format.get_ref();
        if file_format != FILE_FORMAT_TXT {
            return Err(err(
                self.file_format.span(),
                "file_format",
                format!(
                    "{file_format} is not accepted by the provider yet; only 5 (delimited text) is"
                ),
            ));
        }
        let delimiter = match self.delimiter.get_ref().as_str() {
            "," => b',',
            ";" => b';',
            "\t" | "\\t" | "tab" => b'\t',
            "|" => b'|',
            other => {
                return Err(err(
                    self.delimiter.span(),
                    "delimiter",
                    format!("'{other}' is not one of \",\" \";\" \"\\t\" \"|\""),
                ))
            }
        };
        let header = match self.header.get_ref() {
            RawHeader::Flag(true) => Header::Present,
            RawHeader::Flag(false) => Header::Absent,
            RawHeader::Word(w) if w.eq_ignore_ascii_case("auto") => Header::Auto,
            RawHeader::Word(w) => {
                return Err(err(
                    self.header.span(),
                    "header",
                    format!("'{w}' must be true, false or \"auto\""),
                ))
            }
        };
        let encoding = match self.encoding.get_ref().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Encoding::Utf8,
            "windows-1254" | "cp1254" | "iso-8859-9" => Encoding::Windows1254,
            other => {
                return Err(err(
                    self.encoding.span(),
                    "encoding",
                    format!("'{other}' is not supported; use \"utf-8\" or \"windows-1254\""),
                ))
            }
        };
        let decimal_separator = match self.decimal_separator.get_ref().as_str() {
            "." => b'.',
            "," => b',',
            other => {
                return Err(err(
                    self.decimal_separator.span(),
                    "decimal_separator",
                    format!("'{other}' must be \".\" or \",\""),
                ))
            }
        };
        let quoting = match self.quoting.get_ref().to_ascii_lowercase().as_str() {
            "none" => Quoting::None,
            "rfc4180" => Quoting::Rfc4180,
            other => {
                return Err(err(
                    self.quoting.span(),
                    "quoting",
                    format!(
                        "'{other}' must be \"none\" (the provider's documented plain rows) or \
                         \"rfc4180\" (only if your provider confirmed it reads quoted fields)"
                    ),
                ))
            }
        };
        if self.columns.is_empty() {
            return Err(PatternError::at(
                origin,
                None,
                "`columns`: a pattern needs at least one [[columns]] table".into(),
            ));
        }

        let mut columns = Vec::with_capacity(self.columns.len());
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, spanned) in self.columns.iter().enumerate() {
            let span = spanned.span();
            let raw = spanned.get_ref();
            let col_err =
                |key: &str, msg: String| err(span.clone(), &format!("columns[{i}].{key}"), msg);
            if raw.name.trim().is_empty() {
                return Err(col_err("name", "must not be empty".into()));
            }
            if let Some(prev) = seen.insert(raw.name.to_ascii_lowercase(), i) {
                return Err(col_err(
                    "name",
                    format!("'{}' is already the name of columns[{prev}]", raw.name),
                ));
            }
            let column = raw.to_column().map_err(|(key, msg)| col_err(key, msg))?;
            columns.push(column);
        }
        type Flag = fn(&Column) -> bool;
        let flags: [(Flag, &str); 4] = [
            (|c| c.amount, "amount"),
            (|c| c.currency, "currency"),
            (|c| c.line_number, "line_number"),
            (|c| c.payment_code, "payment_code"),
        ];
        for (flag, what) in flags {
            if columns.iter().filter(|c| flag(c)).count() > 1 {
                return Err(PatternError::at(
                    origin,
                    None,
                    format!("`columns`: only one column may set `{what} = true`"),
                ));
            }
        }

        Ok(Pattern {
            id: *self.id.get_ref(),
            name: self.name.into_inner(),
            file_format,
            delimiter,
            header,
            encoding,
            decimal_separator,
            quoting,
            columns,
            source: origin.to_string(),
        })
    }
}

impl RawColumn {
    /// Builds the typed column; an error names the offending key.
    fn to_column(&self) -> Result<Column, (&'static str, String)> {
        let only = |allowed: &[&str]| -> Result<(), (&'static str, String)> {
            let given: [(&'static str, bool); 7] = [
                ("min_len", self.min_len.is_some()),
                ("max_len", self.max_len.is_some()),
                ("regex", self.regex.is_some()),
                ("min", self.min.is_some()),
                ("max", self.max.is_some()),
                ("scale", self.scale.is_some()),
                ("format", self.format.is_some()),
            ];
            for (key, present) in given {
                if present && !allowed.contains(&key) {
                    return Err((key, format!("does not apply to type '{}'", self.kind)));
                }
            }
            if self.values.is_some() && !allowed.contains(&"values") {
                return Err(("values", format!("does not apply to type '{}'", self.kind)));
            }
            Ok(())
        };
        let kind = match self.kind.as_str() {
            "string" => {
                only(&["min_len", "max_len", "regex"])?;
                if let (Some(lo), Some(hi)) = (self.min_len, self.max_len) {
                    if lo > hi {
                        return Err(("min_len", format!("{lo} is greater than max_len {hi}")));
                    }
                }
                let regex = match &self.regex {
                    Some(r) => Some(
                        // Anchored: a regex describes the whole value.
                        Regex::new(&format!("^(?:{r})$"))
                            .map_err(|e| ("regex", format!("is not a valid regex: {e}")))?,
                    ),
                    None => None,
                };
                ColumnType::String {
                    min_len: self.min_len,
                    max_len: self.max_len,
                    regex,
                }
            }
            "integer" => {
                only(&["min", "max"])?;
                let min = self.min.as_ref().map(|v| int_bound("min", v)).transpose()?;
                let max = self.max.as_ref().map(|v| int_bound("max", v)).transpose()?;
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        return Err(("min", format!("{lo} is greater than max {hi}")));
                    }
                }
                ColumnType::Integer { min, max }
            }
            "decimal" => {
                only(&["min", "max", "scale"])?;
                let min = self.min.as_ref().map(|v| dec_bound("min", v)).transpose()?;
                let max = self.max.as_ref().map(|v| dec_bound("max", v)).transpose()?;
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        return Err(("min", format!("{lo} is greater than max {hi}")));
                    }
                }
                if matches!(self.scale, Some(s) if s > 28) {
                    return Err(("scale", "must be at most 28".into()));
                }
                ColumnType::Decimal {
                    scale: self.scale,
                    min,
                    max,
                }
            }
            "date" | "datetime" => {
                only(&["format"])?;
                let format = self.format.clone().unwrap_or_else(|| {
                    if self.kind == "date" {
                        "%Y-%m-%d".into()
                    } else {
                        "%Y-%m-%dT%H:%M:%S".into()
                    }
                });
                if chrono::format::StrftimeItems::new(&format)
                    .any(|i| matches!(i, chrono::format::Item::Error))
                {
                    return Err((
                        "format",
                        format!("'{format}' is not a valid strftime format"),
                    ));
                }
                if self.kind == "date" {
                    ColumnType::Date { format }
                } else {
                    ColumnType::DateTime { format }
                }
            }
            "enum" => {
                only(&["values"])?;
                match &self.values {
                    Some(v) if !v.is_empty() => ColumnType::Enum { values: v.clone() },
                    _ => return Err(("values", "an enum needs a non-empty `values` list".into())),
                }
            }
            simple => {
                only(&[])?;
                match simple {
                    "boolean" => ColumnType::Boolean,
                    "card_number" => ColumnType::CardNumber,
                    "card_first8" => ColumnType::CardFirst8,
                    "card_last4" => ColumnType::CardLast4,
                    "card_expiry" => ColumnType::CardExpiry,
                    "iban" => ColumnType::Iban,
                    "tr_identity" => ColumnType::TrIdentity,
                    "tr_tax_number" => ColumnType::TrTaxNumber,
                    "tr_identity_or_tax_number" => ColumnType::TrIdentityOrTaxNumber,
                    "currency" => ColumnType::Currency,
                    "email" => ColumnType::Email,
                    other => {
                        return Err((
                            "type",
                            format!(
                                "unknown type '{other}'; use one of string, integer, decimal, \
                                 date, datetime, boolean, enum, card_number, card_first8, \
                                 card_last4, card_expiry, iban, tr_identity, tr_tax_number, \
                                 tr_identity_or_tax_number, currency, email"
                            ),
                        ))
                    }
                }
            }
        };
        if self.amount && !matches!(kind, ColumnType::Decimal { .. }) {
            return Err(("amount", "only a decimal column can be the amount".into()));
        }
        if self.currency && !matches!(kind, ColumnType::Currency) {
            return Err((
                "currency",
                "only a currency column can set the currency".into(),
            ));
        }
        if self.line_number && !matches!(kind, ColumnType::Integer { .. }) {
            return Err((
                "line_number",
                "only an integer column can number lines".into(),
            ));
        }
        if self.payment_code && !(self.unique && self.required) {
            return Err((
                "payment_code",
                "a payment code identifies one payment: set `unique = true` and keep the column \
                 required"
                    .into(),
            ));
        }
        if self.unique && !matches!(kind, ColumnType::String { .. } | ColumnType::Integer { .. }) {
            return Err((
                "unique",
                "only string and integer columns can be unique".into(),
            ));
        }
        let mask = self.mask || kind.always_masked();
        Ok(Column {
            name: self.name.clone(),
            kind,
            required: self.required,
            unique: self.unique,
            amount: self.amount,
            currency: self.currency,
            line_number: self.line_number,
            payment_code: self.payment_code,
            mask,
        })
    }
}

fn int_bound(key: &'static str, v: &toml::Value) -> Result<i64, (&'static str, String)> {
    match v {
        toml::Value::Integer(i) => Ok(*i),
        other => Err((key, format!("must be an integer, not {other}"))),
    }
}

fn dec_bound(key: &'static str, v: &toml::Value) -> Result<Decimal, (&'static str, String)> {
    // Strings keep exact decimals; TOML floats would already have lost them.
    match v {
        toml::Value::String(s) => s
            .parse()
            .map_err(|_| (key, format!("'{s}' is not a decimal number"))),
        toml::Value::Integer(i) => Ok(Decimal::from(*i)),
        other => Err((
            key,
            format!("write decimals as strings (e.g. \"0.01\") to keep them exact, not {other}"),
        )),
    }
}

impl From<&Pattern> for RawPattern {
    fn from(p: &Pattern) -> Self {
        RawPattern {
            id: unspanned(p.id),
            name: unspanned(p.name.clone()),
            file_format: unspanned(p.file_format),
            delimiter: unspanned(match p.delimiter {
                b'\t' => "\\t".to_string(),
                d => (d as char).to_string(),
            }),
            header: unspanned(match p.header {
                Header::Present => RawHeader::Flag(true),
                Header::Absent => RawHeader::Flag(false),
                Header::Auto => RawHeader::Word("auto".into()),
            }),
            encoding: unspanned(
                match p.encoding {
                    Encoding::Utf8 => "utf-8",
                    Encoding::Windows1254 => "windows-1254",
                }
                .into(),
            ),
            decimal_separator: unspanned((p.decimal_separator as char).to_string()),
            quoting: unspanned(
                match p.quoting {
                    Quoting::None => "none",
                    Quoting::Rfc4180 => "rfc4180",
                }
                .into(),
            ),
            columns: p.columns.iter().map(|c| unspanned(c.into())).collect(),
        }
    }
}

impl From<&Column> for RawColumn {
    fn from(c: &Column) -> Self {
        let mut raw = RawColumn {
            name: c.name.clone(),
            kind: c.kind.type_name().into(),
            required: c.required,
            unique: c.unique,
            amount: c.amount,
            currency: c.currency,
            line_number: c.line_number,
            payment_code: c.payment_code,
            // Masking is implied by the card and identity types.
            mask: c.mask && !c.kind.always_masked(),
            ..RawColumn::default()
        };
        match &c.kind {
            ColumnType::String {
                min_len,
                max_len,
                regex,
            } => {
                raw.min_len = *min_len;
                raw.max_len = *max_len;
                raw.regex = regex.as_ref().map(|r| {
                    let s = r.as_str();
                    s["^(?:".len()..s.len() - ")$".len()].to_string()
                });
            }
            ColumnType::Integer { min, max } => {
                raw.min = min.map(toml::Value::Integer);
                raw.max = max.map(toml::Value::Integer);
            }
            ColumnType::Decimal { scale, min, max } => {
                raw.scale = *scale;
                raw.min = min.map(|d| toml::Value::String(d.to_string()));
                raw.max = max.map(|d| toml::Value::String(d.to_string()));
            }
            ColumnType::Date { format } | ColumnType::DateTime { format } => {
                raw.format = Some(format.clone())
            }
            ColumnType::Enum { values } => raw.values = Some(values.clone()),
            _ => {}
        }
        raw
    }
}

// ---------------------------------------------------------------------------
// Built-in patterns and the registry.

const PATTERN_1: &str = include_str!("../patterns/1-open-card-simple.toml");
const PATTERN_3: &str = include_str!("../patterns/3-insurance-simple.toml");

/// The patterns the provider publishes (1 and 3).
pub fn builtin() -> Vec<Pattern> {
    [PATTERN_1, PATTERN_3]
        .iter()
        .map(|src| {
            let mut p = Pattern::from_toml(src, "built-in").expect("built-in patterns are valid");
            p.source = "built-in".into();
            p
        })
        .collect()
}

/// Built-in patterns plus those found in a patterns folder.
///
/// A pattern file that cannot be used (it does not parse, it takes a
/// built-in id, it repeats another file's id) is kept as [`Broken`]: it fails
/// only the commands that ask for the id it claims, and is listed as broken;
/// every other pattern stays usable.
#[derive(Debug, Clone)]
pub struct Registry {
    patterns: BTreeMap<u16, Pattern>,
    broken: Vec<Broken>,
}

/// A pattern file that cannot be used, and the id it claims when that can
/// be read (from its `id = N` line, else from a name like `2-layout.toml`).
#[derive(Debug, Clone)]
pub struct Broken {
    pub id: Option<u16>,
    pub error: PatternError,
}

impl Registry {
    /// The built-in patterns plus every `*.toml` in `dir` (when given and
    /// present). A pattern file may not take the id of a built-in pattern
    /// (the provider's published layouts, which no file silently replaces:
    /// there is deliberately no override), and two files may not share an
    /// id; such files, and files with mistakes, are [`Registry::broken`].
    /// Only a folder that cannot be listed is an error.
    pub fn load(dir: Option<&Path>) -> Result<Registry, PatternError> {
        let mut registry = Registry {
            patterns: builtin().into_iter().map(|p| (p.id, p)).collect(),
            broken: Vec::new(),
        };
        let Some(dir) = dir.filter(|d| d.is_dir()) else {
            return Ok(registry);
        };
        for path in pattern_files(dir)? {
            match Pattern::from_file(&path) {
                Ok(p) => registry.add(p),
                Err(error) => registry.broken.push(Broken {
                    id: claimed_id(&path),
                    error,
                }),
            }
        }
        Ok(registry)
    }

    /// Adds a pattern read from a file, unless its id is taken.
    fn add(&mut self, p: Pattern) {
        let Some(prev) = self.patterns.get(&p.id) else {
            self.patterns.insert(p.id, p);
            return;
        };
        let message = if prev.source == "built-in" {
            format!(
                "pattern id {} is a built-in pattern (the provider's published layout); a \
                 pattern file cannot replace it: give this file another id (copy it with \
                 `paydrop patterns new --id N --from {}`)",
                p.id, p.id
            )
        } else {
            format!(
                "pattern id {} is already defined in {}: give one of the two files another id",
                p.id, prev.source
            )
        };
        self.broken.push(Broken {
            id: Some(p.id),
            error: PatternError::at(&p.source, None, message),
        });
    }

    /// The pattern with this `FilePattern` number.
    pub fn get(&self, id: u16) -> Result<&Pattern, UnknownPattern> {
        let broken: Vec<String> = self
            .broken
            .iter()
            .filter(|b| b.id == Some(id))
            .map(|b| b.error.to_string())
            .collect();
        match self.patterns.get(&id) {
            Some(p) if broken.is_empty() => Ok(p),
            _ => Err(UnknownPattern {
                id,
                known: self.patterns.keys().copied().collect(),
                unreadable: if broken.is_empty() {
                    // Files whose id could not be read may be the one meant.
                    self.broken
                        .iter()
                        .filter(|b| b.id.is_none())
                        .map(|b| b.error.to_string())
                        .collect()
                } else {
                    Vec::new()
                },
                broken,
            }),
        }
    }

    /// All usable patterns by id.
    pub fn iter(&self) -> impl Iterator<Item = &Pattern> {
        self.patterns.values()
    }

    /// The pattern files that cannot be used, in file name order.
    pub fn broken(&self) -> &[Broken] {
        &self.broken
    }

    /// What holds `id` already: a usable pattern's source or a broken
    /// file's name.
    pub fn holder(&self, id: u16) -> Option<String> {
        self.patterns
            .get(&id)
            .map(|p| p.source.clone())
            .or_else(|| {
                self.broken
                    .iter()
                    .find(|b| b.id == Some(id))
                    .map(|b| b.error.origin.clone())
            })
    }
}

/// The `*.toml` files of a patterns folder, sorted; `*.example.toml`
/// documents a layout without activating it.
pub fn pattern_files(dir: &Path) -> Result<Vec<PathBuf>, PatternError> {
    let origin = dir.display().to_string();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| PatternError::at(&origin, None, format!("cannot list folder: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            name.ends_with(".toml") && !name.ends_with(".example.toml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The id a file that does not parse claims: its `id = N` line, else the
/// number its name starts with (`2-my-layout.toml`).
fn claimed_id(path: &Path) -> Option<u16> {
    let from_text = std::fs::read_to_string(path).ok().and_then(|src| {
        src.lines().find_map(|l| {
            let v = l
                .trim()
                .strip_prefix("id")?
                .trim_start()
                .strip_prefix('=')?;
            v.split('#').next()?.trim().parse().ok()
        })
    });
    from_text.or_else(|| {
        let name = path.file_name()?.to_string_lossy().into_owned();
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// A pattern number nobody defined, or whose file cannot be used.
#[derive(Debug, thiserror::Error)]
pub struct UnknownPattern {
    pub id: u16,
    pub known: Vec<u16>,
    /// The errors of the files that claim this id.
    pub broken: Vec<String>,
    /// The errors of files whose id could not be read.
    pub unreadable: Vec<String>,
}

impl fmt::Display for UnknownPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.broken.is_empty() {
            return write!(
                f,
                "pattern {} cannot be used: {}; fix the file (`paydrop patterns check`)",
                self.id,
                self.broken.join("; ")
            );
        }
        let known: Vec<String> = self.known.iter().map(|k| k.to_string()).collect();
        write!(
            f,
            "pattern {} is not defined (known: {}); patterns 2 and 4 are not public: \
             put a pattern file in the patterns folder (`paydrop patterns new --id {} --from 1`)",
            self.id,
            known.join(", "),
            self.id
        )?;
        if !self.unreadable.is_empty() {
            write!(
                f,
                "; these pattern files could not be read: {}",
                self.unreadable.join("; ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_1_has_the_seventeen_published_columns() {
        let p = &builtin()[0];
        let names: Vec<&str> = p.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cardNumber",
                "expiryDate",
                "amount",
                "lineNumber",
                "cardOwnerName",
                "trackingCode",
                "customerId",
                "productCategory",
                "productId",
                "merchantUniqueCode",
                "providerBased",
                "providerKey",
                "routeGroupKey",
                "payRouteByPass",
                "payRouteType",
                "posBased",
                "posId"
            ]
        );
        assert_eq!(p.id, 1);
        assert!(p.columns[9].unique);
        assert_eq!(p.amount_column(), Some(2));
    }

    #[test]
    fn pattern_3_is_the_published_insurance_layout() {
        let p = &builtin()[1];
        assert_eq!(p.id, 3);
        let names: Vec<&str> = p.columns.iter().map(|c| c.name.as_str()).collect();
        // Pattern 1 with `cardNumber, expiryDate` replaced by three columns.
        let open_card = &builtin()[0];
        let rest: Vec<&str> = open_card.columns[2..]
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names[..3], ["cardNoFirst", "cardNoLast", "identityNumber"]);
        assert_eq!(names[3..], rest[..]);
        assert!(matches!(p.columns[0].kind, ColumnType::CardFirst8));
        assert!(matches!(p.columns[1].kind, ColumnType::CardLast4));
        assert!(!p.columns[0].mask && !p.columns[1].mask, "partial already");
        assert!(matches!(
            p.columns[2].kind,
            ColumnType::TrIdentityOrTaxNumber
        ));
        assert!(p.columns[2].mask);
        assert_eq!(p.amount_column(), Some(3));
        assert_eq!(p.line_number_column(), Some(4));
        assert_eq!(p.payment_code_column(), Some(10));
    }

    #[test]
    fn to_toml_round_trips() {
        for p in builtin() {
            let again = Pattern::from_toml(&p.to_toml(), "again").unwrap();
            assert_eq!(again.to_toml(), p.to_toml());
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let src = "id = 9\nname = \"x\"\n\n[[columns]]\nname = \"a\"\ntype = \"integer\"\nregex = \"x\"\n";
        let e = Pattern::from_toml(src, "p.toml").unwrap_err();
        assert_eq!(e.origin, "p.toml");
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("columns[0].regex"), "{e}");

        let src = "id = 9\nname = \"x\"\ndelimiter = \"#\"\n[[columns]]\nname = \"a\"\ntype = \"string\"\n";
        let e = Pattern::from_toml(src, "p.toml").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("`delimiter`"), "{e}");

        let src =
            "id = 9\nname = \"x\"\n[[columns]]\nname = \"a\"\ntype = \"string\"\nrequried = true\n";
        let e = Pattern::from_toml(src, "p.toml").unwrap_err();
        assert!(e.message.contains("requried"), "{e}");
        assert!(e.line.is_some());

        let src = "id = \"nine\"\nname = \"x\"\n[[columns]]\nname = \"a\"\ntype = \"string\"\n";
        let e = Pattern::from_toml(src, "p.toml").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn unknown_pattern_says_how_to_add_one() {
        let r = Registry::load(None).unwrap();
        let e = r.get(2).unwrap_err().to_string();
        assert!(e.contains("pattern 2 is not defined"), "{e}");
        assert!(e.contains("patterns folder"), "{e}");
    }
}
