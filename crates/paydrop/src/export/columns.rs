//! Which column of an export holds what: found by name in the header the
//! file brings, never by position, because the export's columns are not
//! published with the API.
//!
//! The names looked for are those of Partner Center's two published
//! payments schemas (`docs/providers/receiving.md` §1.5): "Payments
//! download" (MicrosoftDocs partner-center-pr.fr-fr
//! `partner-center/payout-statement.md`: `paymentId`, `totalPayment`,
//! `currencyCode`, `paymentStatus`, `paymentDate`, `programName`) and the
//! "Earnings – Payments report"
//! (<https://learn.microsoft.com/en-us/partner-center/earnings/earnings-payments>:
//! `paymentID`, `paymentCurrencyCode`, …), then the API's `$filter` names
//! (`paymentAmount`). Matching ignores case. A user mapping
//! (`[export.columns]` in `paydrop.toml`) replaces the aliases of a role.
//!
//! Only what the summary needs is required: an id, an amount, a currency,
//! a date and a status. `programName` is used when present; every other
//! column passes through to `-o` untouched.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// What a column is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Id,
    Amount,
    Currency,
    Date,
    Status,
    /// Optional: totals by program when present.
    Program,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Id,
        Role::Amount,
        Role::Currency,
        Role::Date,
        Role::Status,
        Role::Program,
    ];

    /// The key of `[export.columns]`.
    pub fn key(self) -> &'static str {
        match self {
            Role::Id => "id",
            Role::Amount => "amount",
            Role::Currency => "currency",
            Role::Date => "date",
            Role::Status => "status",
            Role::Program => "program",
        }
    }

    pub fn required(self) -> bool {
        self != Role::Program
    }

    /// Published names, in order of preference.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            // paymentId (payout statement), paymentID (Earnings report).
            Role::Id => &["paymentId", "paymentID"],
            // totalPayment: what was paid, net of withholding (payout
            // statement); paymentAmount: the REST reference's filter name.
            // earned / earnedUSD are not the paid amount.
            Role::Amount => &["totalPayment", "paymentAmount"],
            // currencyCode (payout statement), paymentCurrencyCode (Earnings
            // report: the currency of totalPayment). earnedCurrencyCode is
            // earned's, not totalPayment's.
            Role::Currency => &["paymentCurrencyCode", "currencyCode"],
            Role::Date => &["paymentDate"],
            Role::Status => &["paymentStatus"],
            Role::Program => &["programName"],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// `[export.columns]`: a header name per role, replacing the aliases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub id: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub date: Option<String>,
    pub status: Option<String>,
    pub program: Option<String>,
}

impl Mapping {
    fn get(&self, role: Role) -> Option<&str> {
        match role {
            Role::Id => self.id.as_deref(),
            Role::Amount => self.amount.as_deref(),
            Role::Currency => self.currency.as_deref(),
            Role::Date => self.date.as_deref(),
            Role::Status => self.status.as_deref(),
            Role::Program => self.program.as_deref(),
        }
    }

    /// The names looked for, for `role`.
    pub fn candidates(&self, role: Role) -> Vec<&str> {
        match self.get(role) {
            Some(name) => vec![name],
            None => role.aliases().to_vec(),
        }
    }
}

/// A role the header lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub role: Role,
    /// The names looked for.
    pub tried: Vec<String>,
    /// Whether they came from `[export.columns]`.
    pub configured: bool,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = if self.configured {
            "as configured in [export.columns]"
        } else {
            "the published names"
        };
        write!(
            f,
            "no {} column: looked for {} ({from}); name the column with `{} = \"…\"` under \
             [export.columns] in paydrop.toml",
            self.role,
            self.tried.join(" / "),
            self.role.key()
        )
    }
}

/// Where each role is in one header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub at: BTreeMap<Role, usize>,
}

impl Found {
    /// The column of a required role.
    pub fn index(&self, role: Role) -> usize {
        self.at[&role]
    }

    pub fn optional(&self, role: Role) -> Option<usize> {
        self.at.get(&role).copied()
    }

    /// Whether column `i` is used by a role.
    pub fn uses(&self, i: usize) -> bool {
        self.at.values().any(|&c| c == i)
    }
}

/// Finds every role in `header`; the required ones that are missing.
pub fn find(header: &[String], mapping: &Mapping) -> Result<Found, Vec<Missing>> {
    let mut at = BTreeMap::new();
    let mut missing = Vec::new();
    for role in Role::ALL {
        let names = mapping.candidates(role);
        let i = names
            .iter()
            .find_map(|n| header.iter().position(|h| h.trim().eq_ignore_ascii_case(n)));
        match i {
            Some(i) => {
                at.insert(role, i);
            }
            None if role.required() => missing.push(Missing {
                role,
                tried: names.iter().map(|n| n.to_string()).collect(),
                configured: mapping.get(role).is_some(),
            }),
            None => {}
        }
    }
    if missing.is_empty() {
        Ok(Found { at })
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    #[test]
    fn both_published_schemas_are_found() {
        let a = header(
            "participantID,participantIDType,participantName,programName,earned,earnedUSD,\
             withheldTax,salesTax,serviceFeeTax,totalPayment,currencyCode,paymentMethod,paymentId,\
             paymentStatus,paymentStatusDescription,paymentDate",
        );
        let f = find(&a, &Mapping::default()).unwrap();
        assert_eq!(f.index(Role::Amount), 9);
        assert_eq!(f.index(Role::Currency), 10);
        let b = header(
            "CIReferenceNumber,earned,earnedCurrencyCode,earnedUSD,participantID,paymentCurrencyCode,\
             paymentDate,paymentID,paymentStatus,programName,totalPayment",
        );
        let f = find(&b, &Mapping::default()).unwrap();
        assert_eq!(f.index(Role::Currency), 5, "not earnedCurrencyCode");
        assert_eq!(f.index(Role::Id), 7);
    }

    #[test]
    fn a_missing_amount_names_the_aliases_and_the_key() {
        let e = find(
            &header("paymentId,currencyCode,paymentDate,paymentStatus,earned"),
            &Mapping::default(),
        )
        .unwrap_err();
        assert_eq!(e.len(), 1);
        let text = e[0].to_string();
        assert!(
            text.contains("no amount column: looked for totalPayment / paymentAmount"),
            "{text}"
        );
        assert!(
            text.contains("amount = \"…\"` under [export.columns]"),
            "{text}"
        );
        let mapped = Mapping {
            amount: Some("earned".into()),
            ..Mapping::default()
        };
        assert!(find(
            &header("paymentId,currencyCode,paymentDate,paymentStatus,earned"),
            &mapped
        )
        .is_ok());
    }
}
