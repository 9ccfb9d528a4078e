//! The `$filter` of the payments export, read and applied to the rows the
//! sandbox serves.
//!
//! Pages: "Create payments export request"
//! (<https://learn.microsoft.com/en-us/partner-center/developer/create-payments-export-request>),
//! the REST reference "Creates a new payments export request"
//! (<https://learn.microsoft.com/en-us/rest/api/partner-center/partner-payouts/creates-a-new-payments-export-request>,
//! which adds `paymentAmount`) and the sample repository
//! microsoft/Partner-Center-Payout-APIs (`README.md`, "Payments filter
//! options"). They show comparisons with `eq`, `le` and `ge` joined by
//! `and`, in parentheses or not, with single-quoted strings and bare dates,
//! timestamps and numbers; nothing else is accepted here.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::Payment;

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Le,
    Ge,
}

/// A value the pages show.
#[derive(Clone, Debug, PartialEq)]
enum Literal {
    Text(String),
    Bare(String),
}

#[derive(Clone, Debug, PartialEq)]
struct Comparison {
    field: String,
    op: Op,
    value: Literal,
}

/// A parsed `$filter`: all of its comparisons must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    all: Vec<Comparison>,
}

/// The fields the pages list for payments.
const FIELDS: [&str; 7] = [
    "payoutStatusUpdateTS",
    "enrollmentParticipantId",
    "programName",
    "payoutOrderType",
    "paymentId",
    "paymentAmount",
    "paymentDate",
];

impl Filter {
    /// Parses `text`; the error says what is wrong (the sandbox answers 400
    /// with it).
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut tokens = tokens(text)?.into_iter().peekable();
        let mut all = Vec::new();
        let mut depth = 0usize;
        loop {
            while tokens.peek().is_some_and(|t| t == "(") {
                tokens.next();
                depth += 1;
            }
            let field = tokens
                .next()
                .ok_or("the filter ends where a field is expected")?;
            let field = FIELDS
                .iter()
                .find(|f| **f == field)
                .ok_or_else(|| format!("'{field}' is not a field of the payments export"))?;
            let op = match tokens.next().as_deref() {
                Some("eq") => Op::Eq,
                Some("le") => Op::Le,
                Some("ge") => Op::Ge,
                other => {
                    return Err(format!(
                        "expected eq, le or ge after {field}, found {other:?}"
                    ))
                }
            };
            let value = tokens
                .next()
                .ok_or("the filter ends where a value is expected")?;
            let value = match value.strip_prefix('\'') {
                Some(quoted) => Literal::Text(quoted.to_string()),
                None => Literal::Bare(value),
            };
            check_type(field, &value)?;
            all.push(Comparison {
                field: field.to_string(),
                op,
                value,
            });
            while tokens.peek().is_some_and(|t| t == ")") {
                tokens.next();
                depth = depth.checked_sub(1).ok_or("')' without '('")?;
            }
            match tokens.next().as_deref() {
                None if depth == 0 => return Ok(Filter { all }),
                None => return Err("'(' not closed".into()),
                Some("and") => {}
                Some(other) => return Err(format!("expected 'and', found '{other}'")),
            }
        }
    }

    /// Whether a row is in the export.
    pub fn matches(&self, p: &Payment) -> bool {
        self.all.iter().all(|c| c.holds(p))
    }
}

/// Words, parentheses and literals; a quoted string is kept with its
/// opening quote so that it is told apart from a bare word.
fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {}
            '(' | ')' => out.push(c.to_string()),
            '\'' => {
                let mut s = String::from("'");
                loop {
                    match chars.next() {
                        None => return Err("a quoted string is not closed".into()),
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            s.push('\'');
                        }
                        Some('\'') => break,
                        Some(ch) => s.push(ch),
                    }
                }
                out.push(s);
            }
            c if c.is_alphanumeric() || matches!(c, '-' | '.' | ':' | '+' | '_') => {
                let mut s = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || matches!(n, '-' | '.' | ':' | '+' | '_') {
                        s.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(s);
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(out)
}

fn check_type(field: &str, value: &Literal) -> Result<(), String> {
    let ok = match (field, value) {
        ("paymentAmount", Literal::Bare(b)) => b.parse::<Decimal>().is_ok(),
        ("paymentDate" | "payoutStatusUpdateTS", Literal::Bare(b)) => instant(b).is_some(),
        ("paymentAmount" | "paymentDate" | "payoutStatusUpdateTS", Literal::Text(_)) => false,
        (_, Literal::Text(_)) => true,
        // The REST reference types paymentId and enrollmentParticipantId
        // as integers: accept them bare too.
        ("paymentId" | "enrollmentParticipantId", Literal::Bare(b)) => {
            b.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{field} cannot be compared with {value:?}"))
    }
}

/// A date (midnight UTC) or an RFC 3339 timestamp.
fn instant(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Comparison {
    fn holds(&self, p: &Payment) -> bool {
        use std::cmp::Ordering;
        let text = match &self.value {
            Literal::Text(t) | Literal::Bare(t) => t.as_str(),
        };
        let order: Option<Ordering> = match self.field.as_str() {
            "paymentAmount" => text
                .parse::<Decimal>()
                .ok()
                .map(|v| p.total_payment.cmp(&v)),
            "paymentDate" => instant(text).map(|v| {
                // A date compares with the day, a timestamp with midnight.
                if text.len() == 10 {
                    p.payment_date.cmp(&v.date_naive())
                } else {
                    p.payment_date
                        .and_hms_opt(0, 0, 0)
                        .map(|d| d.and_utc())
                        .cmp(&Some(v))
                }
            }),
            "payoutStatusUpdateTS" => instant(text).map(|v| p.status_updated.cmp(&v)),
            "paymentId" => Some(p.payment_id.as_str().cmp(text)),
            "enrollmentParticipantId" => Some(p.participant_id.as_str().cmp(text)),
            "programName" => Some(p.program_name.to_lowercase().cmp(&text.to_lowercase())),
            "payoutOrderType" => Some(p.order_type.to_lowercase().cmp(&text.to_lowercase())),
            _ => None,
        };
        order.is_some_and(|o| match self.op {
            Op::Eq => o == Ordering::Equal,
            Op::Le => o != Ordering::Greater,
            Op::Ge => o != Ordering::Less,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_example_parses() {
        let f = Filter::parse(
            "payoutStatusUpdateTS le 2019-09-25T23:11:55.647Z and (programName eq 'CSP Direct \
             Bill Partner') and (payoutOrderType eq 'REBATE')",
        )
        .unwrap();
        assert_eq!(f.all.len(), 3);
        assert!(Filter::parse("paymentAmount ge 100 and paymentAmount le 900.5").is_ok());
        for bad in [
            "programName eq 'x' or paymentId eq '1'",
            "customerName eq 'x'",
            "paymentDate ge 'yesterday'",
            "(programName eq 'x'",
            "programName ne 'x'",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
