//! The OData `$filter` of the payouts export (docs/providers/receiving.md
//! §1.2): a typed builder and a parser for raw expressions, both producing
//! the same [`Filter`], which prints as canonical OData.
//!
//! The grammar is the subset the export documents:
//!
//! ```text
//! filter     := term ("and" term)*
//! term       := "(" filter ")" | comparison
//! comparison := FIELD ("eq" | "le" | "ge") VALUE
//! VALUE      := 'quoted string' ('' inside is one ')  |  2023-03-01  |  2019-09-25T23:11:55.647Z
//! ```
//!
//! Text fields take quoted strings; `paymentDate` and `payoutStatusUpdateTS`
//! take an ISO date or an ISO timestamp (with `Z` or an offset, shown in UTC);
//! `paymentAmount` (a double in the REST reference "Creates a new payments
//! export request",
//! <https://learn.microsoft.com/en-us/rest/api/partner-center/partner-payouts/creates-a-new-payments-export-request>)
//! takes an unquoted decimal number.
//! Unknown fields, other operators (`or`, `ne`, …), a value of the wrong type
//! and unbalanced parentheses are refused with the column where the problem
//! is, before any request is sent.
//!
//! ```
//! use paydrop::export::filter::{Field, Filter};
//! let f = Filter::all(vec![
//!     Filter::ge(Field::PaymentDate, "2023-03-01".parse::<chrono::NaiveDate>().unwrap()),
//!     Filter::eq(Field::EnrollmentParticipantId, "O'Brien"),
//! ]);
//! assert_eq!(
//!     f.to_string(),
//!     "paymentDate ge 2023-03-01 and (enrollmentParticipantId eq 'O''Brien')"
//! );
//! assert_eq!(Filter::parse(&f.to_string()).unwrap(), f);
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;

/// A field the export can be filtered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    ProgramName,
    EnrollmentParticipantId,
    PayoutOrderType,
    PaymentId,
    PaymentDate,
    PayoutStatusUpdateTS,
    PaymentAmount,
}

/// What a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    /// A date or a timestamp.
    Temporal,
    Number,
}

impl Field {
    pub const ALL: [Field; 7] = [
        Field::ProgramName,
        Field::EnrollmentParticipantId,
        Field::PayoutOrderType,
        Field::PaymentId,
        Field::PaymentDate,
        Field::PayoutStatusUpdateTS,
        Field::PaymentAmount,
    ];

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Field::ProgramName => "programName",
            Field::EnrollmentParticipantId => "enrollmentParticipantId",
            Field::PayoutOrderType => "payoutOrderType",
            Field::PaymentId => "paymentId",
            Field::PaymentDate => "paymentDate",
            Field::PayoutStatusUpdateTS => "payoutStatusUpdateTS",
            Field::PaymentAmount => "paymentAmount",
        }
    }

    pub fn kind(self) -> FieldKind {
        match self {
            Field::PaymentDate | Field::PayoutStatusUpdateTS => FieldKind::Temporal,
            Field::PaymentAmount => FieldKind::Number,
            _ => FieldKind::Text,
        }
    }

    fn lookup(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Le,
    Ge,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Le => "le",
            Op::Ge => "ge",
        }
    }
}

/// A literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
    Number(Decimal),
}

impl From<Decimal> for Value {
    fn from(d: Decimal) -> Self {
        Value::Number(d)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<NaiveDate> for Value {
    fn from(d: NaiveDate) -> Self {
        Value::Date(d)
    }
}

impl From<DateTime<Utc>> for Value {
    fn from(t: DateTime<Utc>) -> Self {
        Value::Timestamp(t)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Value::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Value::Timestamp(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Value::Number(d) => write!(f, "{d}"),
        }
    }
}

/// A filter expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Cmp {
        field: Field,
        op: Op,
        value: Value,
    },
    /// All of these (printed joined by `and`; nested conjunctions and
    /// comparisons after the first in parentheses, as in the provider's
    /// examples).
    And(Vec<Filter>),
}

impl Filter {
    /// `field op value`; panics when the value's type does not suit the
    /// field (a programming error: [`Filter::parse`] reports it instead).
    pub fn cmp(field: Field, op: Op, value: impl Into<Value>) -> Filter {
        let value = value.into();
        assert!(
            suits(field, &value),
            "{field} cannot be compared with {value}"
        );
        Filter::Cmp { field, op, value }
    }

    pub fn eq(field: Field, value: impl Into<Value>) -> Filter {
        Filter::cmp(field, Op::Eq, value)
    }

    pub fn le(field: Field, value: impl Into<Value>) -> Filter {
        Filter::cmp(field, Op::Le, value)
    }

    pub fn ge(field: Field, value: impl Into<Value>) -> Filter {
        Filter::cmp(field, Op::Ge, value)
    }

    /// The conjunction of `parts`; `None` when there are none, the part
    /// itself when there is one.
    pub fn all_of(mut parts: Vec<Filter>) -> Option<Filter> {
        match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Filter::And(parts)),
        }
    }

    /// [`Filter::all_of`] for at least one part.
    pub fn all(parts: Vec<Filter>) -> Filter {
        Filter::all_of(parts).expect("at least one part")
    }

    /// Parses a raw `$filter` expression.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let tokens = tokenize(text)?;
        let mut p = Parser {
            tokens,
            at: 0,
            end: text.chars().count() + 1,
        };
        let filter = p.conjunction()?;
        match p.peek() {
            None => Ok(filter),
            Some(t) if t.kind == Kind::Close => Err(p.error(t.pos, "')' without a matching '('")),
            Some(t) => Err(p.error(
                t.pos,
                format!("expected 'and' or the end, found {}", t.kind.describe()),
            )),
        }
    }

    fn fmt_term(&self, f: &mut fmt::Formatter<'_>, nested: bool) -> fmt::Result {
        match self {
            Filter::Cmp { field, op, value } if nested => {
                write!(f, "({field} {} {value})", op.name())
            }
            Filter::Cmp { field, op, value } => write!(f, "{field} {} {value}", op.name()),
            Filter::And(parts) => {
                if nested {
                    f.write_str("(")?;
                }
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    part.fmt_term(f, i > 0 || matches!(part, Filter::And(_)))?;
                }
                if nested {
                    f.write_str(")")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_term(f, false)
    }
}

impl FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

fn suits(field: Field, value: &Value) -> bool {
    match field.kind() {
        FieldKind::Text => matches!(value, Value::Text(_)),
        FieldKind::Temporal => matches!(value, Value::Date(_) | Value::Timestamp(_)),
        FieldKind::Number => matches!(value, Value::Number(_)),
    }
}

/// A raw expression that cannot be used; `column` is 1-based, in characters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("$filter column {column}: {message}")]
pub struct FilterError {
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Open,
    Close,
    /// A name or keyword.
    Word(String),
    /// A quoted string, unescaped.
    Text(String),
    /// An unquoted literal starting with a digit (a date or timestamp).
    Bare(String),
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Open => "'('".into(),
            Kind::Close => "')'".into(),
            Kind::Word(w) => format!("'{w}'"),
            Kind::Text(t) => format!("the string '{t}'"),
            Kind::Bare(b) => format!("'{b}'"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    /// 1-based character column.
    pos: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let err = |column: usize, message: String| FilterError { column, message };
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            let kind = if c == '(' { Kind::Open } else { Kind::Close };
            tokens.push(Token { kind, pos });
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(pos, "string not closed: a ' is missing".into())),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            tokens.push(Token {
                kind: Kind::Text(s),
                pos,
            });
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            let bare = c.is_ascii_digit();
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '_'
                    || (bare && matches!(chars[i], '-' | ':' | '.' | '+')))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let kind = if bare {
                Kind::Bare(word)
            } else {
                Kind::Word(word)
            };
            tokens.push(Token { kind, pos });
        } else {
            let hint = match c {
                '"' | '’' | '‘' => ": quote strings with ' (and write ' inside as '')",
                '=' | '<' | '>' | '!' => ": compare with eq, le or ge",
                _ => "",
            };
            return Err(err(pos, format!("unexpected character '{c}'{hint}")));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Column just past the end, for "ends too early" errors.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self, expected: &str) -> Result<Token, FilterError> {
        let t = self.tokens.get(self.at).cloned().ok_or_else(|| {
            self.error(
                self.end,
                format!("the expression ends where {expected} is expected"),
            )
        })?;
        self.at += 1;
        Ok(t)
    }

    fn error(&self, column: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            column,
            message: message.into(),
        }
    }

    fn conjunction(&mut self) -> Result<Filter, FilterError> {
        let mut parts = vec![self.term()?];
        while matches!(self.peek(), Some(Token { kind: Kind::Word(w), .. }) if w == "and") {
            self.at += 1;
            parts.push(self.term()?);
        }
        Ok(Filter::all(parts))
    }

    fn term(&mut self) -> Result<Filter, FilterError> {
        let t = self.next("a field name or '('")?;
        match t.kind {
            Kind::Open => {
                let inner = self.conjunction()?;
                let close = self.next("')'")?;
                if close.kind != Kind::Close {
                    return Err(self.error(
                        close.pos,
                        format!(
                            "expected 'and' or ')' closing the '(' at column {}, found {}",
                            t.pos,
                            close.kind.describe()
                        ),
                    ));
                }
                Ok(inner)
            }
            Kind::Word(name) => self.comparison(&name, t.pos),
            other => Err(self.error(
                t.pos,
                format!("expected a field name or '(', found {}", other.describe()),
            )),
        }
    }

    fn comparison(&mut self, name: &str, pos: usize) -> Result<Filter, FilterError> {
        let field = Field::lookup(name).ok_or_else(|| {
            let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
            let hint = Field::ALL
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(name))
                .map_or_else(String::new, |f| format!(" (did you mean {f}?)"));
            self.error(
                pos,
                format!(
                    "unknown field '{name}'{hint}; the export can be filtered by {}",
                    known.join(", ")
                ),
            )
        })?;
        let op_token = self.next("eq, le or ge")?;
        let op = match &op_token.kind {
            Kind::Word(w) if w == "eq" => Op::Eq,
            Kind::Word(w) if w == "le" => Op::Le,
            Kind::Word(w) if w == "ge" => Op::Ge,
            other => {
                return Err(self.error(
                    op_token.pos,
                    format!(
                        "expected eq, le or ge after {field}, found {} (the export supports only \
                         these operators)",
                        other.describe()
                    ),
                ))
            }
        };
        let v = self.next("a value")?;
        let value = match (&v.kind, field.kind()) {
            (Kind::Text(s), FieldKind::Text) => Value::Text(s.clone()),
            (Kind::Bare(b), FieldKind::Temporal) => temporal(b).ok_or_else(|| {
                self.error(
                    v.pos,
                    format!(
                        "'{b}' is not an ISO date (2023-03-01) or timestamp \
                         (2019-09-25T23:11:55.647Z)"
                    ),
                )
            })?,
            (Kind::Bare(b), FieldKind::Number) => b
                .parse::<Decimal>()
                .map(Value::Number)
                .map_err(|_| self.error(v.pos, format!("'{b}' is not a number like 250.75")))?,
            (Kind::Text(s), FieldKind::Temporal) => {
                return Err(self.error(
                    v.pos,
                    format!(
                        "{field} takes an unquoted ISO date or timestamp, not the string '{s}'"
                    ),
                ))
            }
            (Kind::Text(s), FieldKind::Number) => {
                return Err(self.error(
                    v.pos,
                    format!("{field} takes an unquoted number, not the string '{s}'"),
                ))
            }
            (other, FieldKind::Text) => {
                return Err(self.error(
                    v.pos,
                    format!(
                        "{field} takes a quoted string like '{}', found {}",
                        match other {
                            Kind::Bare(b) | Kind::Word(b) => b.as_str(),
                            _ => "value",
                        },
                        other.describe()
                    ),
                ))
            }
            (other, FieldKind::Temporal) => {
                return Err(self.error(
                    v.pos,
                    format!(
                        "{field} takes an ISO date or timestamp, found {}",
                        other.describe()
                    ),
                ))
            }
            (other, FieldKind::Number) => {
                return Err(self.error(
                    v.pos,
                    format!("{field} takes a number, found {}", other.describe()),
                ))
            }
        };
        Ok(Filter::Cmp { field, op, value })
    }
}

/// An ISO date, or an RFC 3339 timestamp (shown in UTC).
fn temporal(s: &str) -> Option<Value> {
    if s.len() == 10 {
        return NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(Value::Date);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| Value::Timestamp(t.with_timezone(&Utc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_example_round_trips() {
        let raw = "payoutStatusUpdateTS le 2019-09-25T23:11:55.647Z and \
                   (enrollmentParticipantId eq 'XXXXXXX') and (programName eq 'CSP Direct Bill \
                   Partner') and (payoutOrderType eq 'REBATE') and (paymentId eq '000000000000')";
        let f = Filter::parse(raw).unwrap();
        assert_eq!(f.to_string(), raw);
    }

    #[test]
    fn payment_amount_takes_numbers() {
        let f = Filter::parse("paymentAmount ge 100 and paymentAmount le 900.50").unwrap();
        assert_eq!(
            f.to_string(),
            "paymentAmount ge 100 and (paymentAmount le 900.50)"
        );
    }

    #[test]
    fn nested_parentheses_keep_their_grouping() {
        let f = Filter::parse("((paymentId eq '1') and paymentDate ge 2023-01-01)").unwrap();
        assert_eq!(
            f.to_string(),
            "paymentId eq '1' and (paymentDate ge 2023-01-01)"
        );
        let g = Filter::parse(
            "paymentId eq '1' and (paymentDate ge 2023-01-01 and paymentDate le 2023-02-01)",
        )
        .unwrap();
        assert_eq!(
            g.to_string(),
            "paymentId eq '1' and (paymentDate ge 2023-01-01 and (paymentDate le 2023-02-01))"
        );
        assert_eq!(Filter::parse(&g.to_string()).unwrap(), g);
    }

    #[test]
    fn errors_point_at_the_column() {
        let e = Filter::parse("paymentId eq '1' or paymentId eq '2'").unwrap_err();
        assert_eq!(e.column, 18, "{e}");
        let e = Filter::parse("(paymentId eq '1'").unwrap_err();
        assert_eq!(e.column, 18, "{e}");
        assert!(e.message.contains("')'"), "{e}");
        let e = Filter::parse("paymentId eq '1')").unwrap_err();
        assert_eq!(e.column, 17, "{e}");
        let e = Filter::parse("paymentDate ge '2023-01-01'").unwrap_err();
        assert_eq!(e.column, 16, "{e}");
        let e = Filter::parse("paymentId eq 12").unwrap_err();
        assert!(e.message.contains("quoted"), "{e}");
        let e = Filter::parse("programName = 'x'").unwrap_err();
        assert!(e.message.contains("eq, le or ge"), "{e}");
        let e = Filter::parse("paymentAmount ge '100'").unwrap_err();
        assert!(e.message.contains("unquoted number"), "{e}");
        let e = Filter::parse("").unwrap_err();
        assert_eq!(e.column, 1, "{e}");
    }
}
