//! The marketplace payout trigger (`../shared/SPEC.md` §2): orders payment
//! of the settlements waiting in the marketplace pool for a date range.
//!
//! The provider's rules are checked here before anything is sent, by the
//! same [`check`] the sandbox applies server-side:
//!
//! - `DateTo` is yesterday at the latest, in Istanbul (today's payments are
//!   still coming in), unless `TestMode`;
//! - `DateFrom <= DateTo`;
//! - a range that overlaps one already ordered successfully is refused,
//!   naming the earlier order, unless `SkipExistsControl`: then a warning
//!   says that the merchant carries the risk of paying twice. paydrop
//!   remembers successful orders in the ledger, per currency (settlements
//!   are pooled per currency); test-mode orders count like the others, as
//!   the provider documents no exception for them.
//!
//! An order is recorded `pending` in the ledger before the call and settled
//! after it. 429 and 5xx answers and dropped connections are retried with
//! backoff — except that with `SkipExistsControl`, once the provider may
//! have received the order (anything but a refused connection or a 429), a
//! retry could pay twice: paydrop stops and reports the outcome as unknown.

use std::fmt::Display;

use chrono::{Days, NaiveDate};
use reqwest::StatusCode;
use serde_json::Value;

use crate::api::{Envelope, PayoutTrigger, PAYOUT_TRIGGER_PATH};
use crate::currency::Currency;
use crate::ledger::{Ledger, LedgerError, PayoutOrder, State};
use crate::submit::RetryPolicy;
use crate::upload::{Client, JsonReply, NoReply};

/// `ErrorCode`s of the rules (the sandbox answers with them).
pub mod code {
    /// `DateTo` is today or later and `TestMode` is off.
    pub const DATE_TO_NOT_PAST: i64 = 1101;
    /// `DateFrom` is after `DateTo`.
    pub const RANGE_REVERSED: i64 = 1102;
    /// The range overlaps an order that succeeded.
    pub const ALREADY_ORDERED: i64 = 1103;
}

/// A rule of the provider that an order breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "DateTo {to} is not in the past: it is {today} in Istanbul, and today's payments are \
         still coming in; the latest DateTo is {yesterday} (--test-mode lifts this rule on a test \
         account)",
        yesterday = yesterday(*.today)
    )]
    DateToNotPast { to: NaiveDate, today: NaiveDate },
    #[error("DateFrom {from} is after DateTo {to}: swap them")]
    RangeReversed { from: NaiveDate, to: NaiveDate },
    #[error(
        "{from} to {to} overlaps {earlier}, which was ordered successfully: a new order for any \
         of those dates may pay the same settlements twice. Order only dates after the earlier \
         range, or pass --skip-exists-control to order anyway; the merchant then carries the risk \
         of paying twice"
    )]
    AlreadyOrdered {
        from: NaiveDate,
        to: NaiveDate,
        earlier: String,
    },
}

impl RuleError {
    /// The provider's `ErrorCode` for this rule.
    pub fn code(&self) -> i64 {
        match self {
            RuleError::DateToNotPast { .. } => code::DATE_TO_NOT_PAST,
            RuleError::RangeReversed { .. } => code::RANGE_REVERSED,
            RuleError::AlreadyOrdered { .. } => code::ALREADY_ORDERED,
        }
    }
}

fn yesterday(today: NaiveDate) -> NaiveDate {
    today.checked_sub_days(Days::new(1)).unwrap_or(today)
}

/// The warning printed for `--skip-exists-control`.
pub fn skip_warning(overlapping: &[String]) -> String {
    let mut w = String::from(
        "--skip-exists-control: the provider will not check whether these dates were ordered \
         before; the merchant carries the risk of paying twice",
    );
    if !overlapping.is_empty() {
        w.push_str(&format!(". This range overlaps {}", overlapping.join("; ")));
    }
    w
}

/// Checks `order` against the provider's rules, `today` being the Istanbul
/// date and `ordered` the ranges already ordered successfully (for the
/// same currency), each with how to name it. On success, the warnings to
/// show (the `SkipExistsControl` one).
pub fn check<D: Display>(
    order: &PayoutTrigger,
    today: NaiveDate,
    ordered: impl IntoIterator<Item = (NaiveDate, NaiveDate, D)>,
) -> Result<Vec<String>, RuleError> {
    let (from, to) = (order.date_from, order.date_to);
    if from > to {
        return Err(RuleError::RangeReversed { from, to });
    }
    if !order.test_mode && to >= today {
        return Err(RuleError::DateToNotPast { to, today });
    }
    let overlapping: Vec<String> = ordered
        .into_iter()
        .filter(|(f, t, _)| *f <= to && from <= *t)
        .map(|(_, _, name)| name.to_string())
        .collect();
    if order.skip_exists_control {
        return Ok(vec![skip_warning(&overlapping)]);
    }
    match overlapping.into_iter().next() {
        Some(earlier) => Err(RuleError::AlreadyOrdered { from, to, earlier }),
        None => Ok(Vec::new()),
    }
}

/// What to order.
#[derive(Clone, Debug)]
pub struct Order {
    pub currency: Currency,
    pub currency_id: u32,
    pub date_from: NaiveDate,
    pub date_to: NaiveDate,
    pub test_mode: bool,
    pub skip_exists_control: bool,
}

impl Order {
    fn wire(&self) -> PayoutTrigger {
        PayoutTrigger {
            currency_id: self.currency_id,
            date_from: self.date_from,
            date_to: self.date_to,
            test_mode: self.test_mode,
            skip_exists_control: self.skip_exists_control,
        }
    }
}

/// How to order.
#[derive(Clone, Copy, Debug)]
pub struct TriggerOptions {
    /// The provider's today (Istanbul); injectable for tests.
    pub today: NaiveDate,
    pub retry: RetryPolicy,
}

/// An order the provider accepted.
#[derive(Clone, Debug)]
pub struct Triggered {
    pub order: PayoutOrder,
    /// The provider's `Message`.
    pub message: String,
}

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error("{0}; nothing was sent")]
    Rule(#[from] RuleError),
    #[error("{order} was refused by the provider: {message}")]
    Refused {
        order: Box<PayoutOrder>,
        message: String,
    },
    #[error(
        "{order}: no definite answer ({message}); the provider may or may not have ordered the \
         payout. Check its panel before ordering these dates again"
    )]
    Unknown {
        order: Box<PayoutOrder>,
        message: String,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// How one attempt ended.
enum Outcome {
    Ordered(String),
    Refused(String),
    /// Worth another attempt; `maybe_processed` when the provider may have
    /// acted on this one.
    Retry {
        message: String,
        maybe_processed: bool,
        retry_after: Option<std::time::Duration>,
    },
    /// A 2xx that cannot be read: it may mean "ordered".
    Unreadable(String),
}

fn outcome(reply: Result<JsonReply, NoReply>) -> Outcome {
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                message: e.message,
                maybe_processed: e.maybe_received,
                retry_after: None,
            }
        }
    };
    let envelope: Option<Envelope<Value>> = serde_json::from_str(&reply.text).ok();
    let message = envelope
        .as_ref()
        .and_then(|e| e.message.clone())
        .unwrap_or_else(|| {
            reply
                .text
                .chars()
                .take(300)
                .collect::<String>()
                .trim()
                .into()
        });
    let status = reply.status;
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Outcome::Retry {
            message: format!("{status}: {message}"),
            maybe_processed: status != StatusCode::TOO_MANY_REQUESTS,
            retry_after: reply.retry_after,
        };
    }
    match envelope {
        _ if !status.is_success() => Outcome::Refused(format!("{status}: {message}")),
        Some(e) if e.is_success() => Outcome::Ordered(message),
        Some(e) => Outcome::Refused(format!("ErrorCode {}: {message}", e.error_code)),
        None => Outcome::Unreadable(format!("{status} with an unreadable answer: {message}")),
    }
}

/// Checks `order` against the rules and the ledger, records it, and sends
/// it to the provider. `warn` gets what the user must read (the
/// `--skip-exists-control` risk, an earlier order of unknown outcome)
/// before anything is sent.
pub async fn trigger(
    ledger: &mut Ledger,
    client: &Client,
    order: &Order,
    opts: &TriggerOptions,
    mut warn: impl FnMut(&str),
) -> Result<Triggered, PayoutError> {
    let code = order.currency.code;
    let overlapping = ledger.overlapping_payout_orders(code, order.date_from, order.date_to)?;
    let wire = order.wire();
    let warnings = check(
        &wire,
        opts.today,
        overlapping
            .iter()
            .filter(|o| o.state == State::Accepted)
            .map(|o| (o.date_from, o.date_to, o)),
    )?;
    for w in &warnings {
        warn(w);
    }
    for o in overlapping.iter().filter(|o| o.state == State::Unknown) {
        warn(&format!(
            "{o} has no definite answer; if it went through, the provider's own check refuses \
             overlapping dates{}",
            if order.skip_exists_control {
                ", but not with --skip-exists-control: this order may pay twice"
            } else {
                ""
            }
        ));
    }
    let record = ledger.begin_payout_order(
        code,
        order.currency_id,
        order.date_from,
        order.date_to,
        order.test_mode,
        order.skip_exists_control,
    )?;
    tracing::info!(order = record.id, currency = code, from = %order.date_from, to = %order.date_to, "ordering payout");
    let settle = |ledger: &Ledger, state: State, message: String| -> Result<_, PayoutError> {
        ledger.settle_payout_order(record.id, state, &message)?;
        let order = ledger
            .payout_order(record.id)?
            .unwrap_or_else(|| record.clone());
        Ok((Box::new(order), message))
    };
    // Once an attempt may have been acted on, a later refusal ("already
    // ordered") may be the echo of that attempt's success.
    let mut maybe_ordered = false;
    let mut last = String::new();
    for n in 0..opts.retry.max_attempts.max(1) {
        match outcome(client.post_json(PAYOUT_TRIGGER_PATH, &wire).await) {
            Outcome::Ordered(message) => {
                let (order, message) = settle(ledger, State::Accepted, message)?;
                tracing::info!(order = order.id, "payout ordered");
                return Ok(Triggered {
                    order: *order,
                    message,
                });
            }
            Outcome::Refused(message) if maybe_ordered => {
                let message = format!(
                    "an earlier attempt may have gone through, and the provider now refuses: \
                     {message}"
                );
                let (order, message) = settle(ledger, State::Unknown, message)?;
                return Err(PayoutError::Unknown { order, message });
            }
            Outcome::Refused(message) => {
                let (order, message) = settle(ledger, State::Rejected, message)?;
                return Err(PayoutError::Refused { order, message });
            }
            Outcome::Unreadable(message) => {
                let (order, message) = settle(ledger, State::Unknown, message)?;
                return Err(PayoutError::Unknown { order, message });
            }
            Outcome::Retry {
                message,
                maybe_processed,
                retry_after,
            } => {
                maybe_ordered |= maybe_processed;
                last = message;
                if maybe_processed && order.skip_exists_control {
                    let message =
                        format!("{last}; not retried, as with --skip-exists-control a retry could pay twice");
                    let (order, message) = settle(ledger, State::Unknown, message)?;
                    return Err(PayoutError::Unknown { order, message });
                }
                if n + 1 < opts.retry.max_attempts {
                    let delay = opts.retry.delay(n, retry_after);
                    tracing::warn!(order = record.id, error = %last, retry_in = ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    let message = format!(
        "{} attempts failed; the last: {last}",
        opts.retry.max_attempts
    );
    let (order, message) = settle(ledger, State::Unknown, message)?;
    Err(PayoutError::Unknown { order, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn wire(from: &str, to: &str) -> PayoutTrigger {
        PayoutTrigger {
            currency_id: 1,
            date_from: d(from),
            date_to: d(to),
            test_mode: false,
            skip_exists_control: false,
        }
    }

    #[test]
    fn ranges_touching_an_order_overlap_and_neighbours_do_not() {
        let today = d("2024-06-01");
        let ordered = || [(d("2024-05-01"), d("2024-05-10"), "#1")];
        for (from, to) in [
            ("2024-05-10", "2024-05-12"),
            ("2024-04-01", "2024-05-01"),
            ("2024-05-03", "2024-05-04"),
        ] {
            let e = check(&wire(from, to), today, ordered()).unwrap_err();
            assert!(matches!(e, RuleError::AlreadyOrdered { ref earlier, .. } if earlier == "#1"));
        }
        assert!(check(&wire("2024-05-11", "2024-05-31"), today, ordered()).is_ok());
        assert!(check(&wire("2024-04-01", "2024-04-30"), today, ordered()).is_ok());
    }
}
