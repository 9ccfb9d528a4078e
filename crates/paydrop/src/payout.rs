//! The marketplace payout trigger (docs/providers/paywall.md §7): orders
//! payment of the settlements waiting in the marketplace pool for a date
//! range.
//!
//! The provider's rules are checked here by [`check`] before anything is sent
//! (the sandbox crate applies its own reading of them server-side):
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
//! after it, with the `JobId` of the answer (Start page: the Body carries
//! it; the Query page takes it back as the header `jobid`).
//!
//! Never blind: a call is repeated only when the provider cannot have acted
//! on it (no connection was made, or 429). After a 5xx or a lost answer the
//! order is `unknown`, and no order overlapping its dates is sent until it
//! is resolved: when its `JobId` is known (`paydrop payout status JOB
//! --order N` attaches one found in the provider's panel), [`trigger`] asks
//! the inquiry endpoint ([`inquire`]) before anything else; without one it
//! refuses and says how to resolve it.
//!
//! Pages: Start
//! <https://developer.paywall.one/payment-orchestration-integration-document/payment-service/17.-marketplace/4.-manual-trigger/2.-start>,
//! Query
//! <https://developer.paywall.one/payment-orchestration-integration-document/payment-service/17.-marketplace/4.-manual-trigger/3.-query>.

use std::fmt::Display;

use chrono::{Days, NaiveDate};
use reqwest::StatusCode;
use serde_json::Value;

use crate::api::{Envelope, PayoutTrigger, PAYOUT_INQUIRY_PATH, PAYOUT_TRIGGER_PATH};
use crate::currency::Currency;
use crate::ledger::{Ledger, LedgerError, PayoutOrder, State};
use crate::transport::{answered, Effect, Ended, Retry, RetryPolicy, Step};
use crate::upload::{Client, JsonReply, NoReply};

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
         payout. paydrop orders none of these dates again until this is resolved: find the order's \
         JobId in the provider's panel and run `paydrop payout status JOBID --order {id}`",
        id = .order.id
    )]
    Unknown {
        order: Box<PayoutOrder>,
        message: String,
    },
    #[error(
        "{order} has no definite answer and no JobId, so paydrop cannot ask the provider how it \
         ended; no order for these dates is sent blind. Find the order in the provider's panel \
         and run `paydrop payout status JOBID --order {id}`, or, if the panel shows none, \
         `paydrop payout status --order {id} --not-ordered`",
        id = .order.id
    )]
    Unresolved { order: Box<PayoutOrder> },
    #[error("the inquiry of JobId {job_id} failed: {message}")]
    Inquiry { job_id: String, message: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A definite answer to an order.
enum Answer {
    /// Ordered; the `JobId` when the Body carries one.
    Ordered {
        message: String,
        job_id: Option<String>,
    },
    Refused(String),
}

/// The `Body` of a successful Start answer: only `JobId` is relied on (the
/// published sample is cut off after it).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Started {
    job_id: Option<String>,
}

/// The envelope's `Message`, else the start of the text.
fn message_of(envelope: Option<&Envelope<Value>>, text: &str) -> String {
    envelope
        .and_then(|e| e.message.clone())
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| text.chars().take(300).collect::<String>().trim().into())
}

/// Classifies one attempt: repeated only when the provider cannot have
/// acted on it (no connection was made, or 429); a 5xx or a lost or
/// unreadable answer is ambiguous.
fn outcome(reply: Result<JsonReply, NoReply>) -> Step<Answer> {
    let reply = match reply {
        Ok(r) => r,
        Err(e) if e.maybe_received => {
            return Step::Ambiguous {
                why: format!("the answer was lost ({})", e.message),
                retry_after: None,
            }
        }
        Err(e) => {
            return Step::NotTaken {
                why: e.message,
                retry_after: None,
            }
        }
    };
    let envelope: Option<Envelope<Value>> = serde_json::from_str(&reply.text).ok();
    let message = message_of(envelope.as_ref(), &reply.text);
    let status = reply.status;
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Step::NotTaken {
            why: answered(status.as_u16(), "POST", &reply.url, &message),
            retry_after: reply.retry_after,
        };
    }
    let ambiguous = |why: String| Step::Ambiguous {
        why,
        retry_after: None,
    };
    if status.is_server_error() {
        return ambiguous(answered(status.as_u16(), "POST", &reply.url, &message));
    }
    match envelope {
        _ if !status.is_success() => Step::Done(Answer::Refused(answered(
            status.as_u16(),
            "POST",
            &reply.url,
            &message,
        ))),
        Some(e) if e.is_success() => Step::Done(Answer::Ordered {
            job_id: e
                .body
                .and_then(|b| serde_json::from_value::<Started>(b).ok())
                .and_then(|b| b.job_id)
                .filter(|j| !j.trim().is_empty()),
            message,
        }),
        Some(e) => Step::Done(Answer::Refused(format!(
            "ErrorCode {}: {message}",
            e.error_code
        ))),
        None => ambiguous(format!("{status} with an unreadable answer: {message}")),
    }
}

/// One result of an inquiry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobResult {
    pub result: bool,
    #[serde(default)]
    pub result_message: Option<String>,
}

/// What the inquiry says of a job (Query page).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inquiry {
    pub job_id: String,
    #[serde(default)]
    pub date_from: Option<String>,
    #[serde(default)]
    pub date_to: Option<String>,
    #[serde(default)]
    pub earning: Option<rust_decimal::Decimal>,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub any_success: bool,
    #[serde(default)]
    pub results: Vec<JobResult>,
}

/// How a job ended, as far as the inquiry tells. The pages do not say
/// what one `Results` item stands for, nor what `AnySuccess` means with
/// mixed results: "done" needs every result true, and a mix is reported
/// as partial, never as done (`docs/providers/paywall.md` §7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Done,
    Partial,
    Failed,
    /// No results yet.
    Waiting,
}

impl Inquiry {
    pub fn verdict(&self) -> Verdict {
        let ok = self.results.iter().filter(|r| r.result).count();
        match (self.results.len(), ok) {
            (0, _) => Verdict::Waiting,
            (n, k) if k == n => Verdict::Done,
            _ if self.any_success || ok > 0 => Verdict::Partial,
            _ => Verdict::Failed,
        }
    }

    /// One line for the terminal and the ledger.
    pub fn describe(&self) -> String {
        let ok = self.results.iter().filter(|r| r.result).count();
        let failures: Vec<&str> = self
            .results
            .iter()
            .filter(|r| !r.result)
            .filter_map(|r| r.result_message.as_deref())
            .filter(|m| !m.is_empty())
            .collect();
        let mut s = format!(
            "{}: {ok} of {} results succeeded (AnySuccess {})",
            match self.verdict() {
                Verdict::Done => "done",
                Verdict::Partial => "PARTIAL",
                Verdict::Failed => "FAILED",
                Verdict::Waiting => "no results yet",
            },
            self.results.len(),
            self.any_success
        );
        if let Some(e) = self.earning {
            s.push_str(&format!(", Earning {e}"));
        }
        if !failures.is_empty() {
            s.push_str(&format!("; {}", failures.join("; ")));
        }
        s
    }
}

/// Asks the provider how job `job_id` went (Query page: `GET
/// …/marketplace/manual/trigger/inquiry` with the header `jobid`). 429 and
/// refused connections are retried; an inquiry changes nothing at the
/// provider, so 5xx are retried too.
pub async fn inquire(
    client: &Client,
    job_id: &str,
    retry: RetryPolicy,
) -> Result<Inquiry, PayoutError> {
    let failed = |message: String| PayoutError::Inquiry {
        job_id: job_id.to_string(),
        message,
    };
    let what = format!("the inquiry of JobId {job_id}");
    let mut calls = Retry::new(retry, Effect::Idempotent, &what);
    while calls.next().await.is_some() {
        let reply = client
            .get_json(PAYOUT_INQUIRY_PATH, &[("jobid", job_id)])
            .await;
        let step = match reply {
            Ok(r) if r.status == StatusCode::TOO_MANY_REQUESTS || r.status.is_server_error() => {
                Step::Ambiguous {
                    why: format!("{}: {}", r.status, r.text.trim()),
                    retry_after: r.retry_after,
                }
            }
            Ok(r) => Step::Done(r),
            Err(e) => Step::Ambiguous {
                why: e.message,
                retry_after: None,
            },
        };
        if let Some(reply) = calls.judge(step) {
            return read_inquiry(&reply).map_err(failed);
        }
    }
    let Ended { attempts, last, .. } = calls.ended();
    Err(failed(format!("{attempts} attempts; the last: {last}")))
}

/// The inquiry in a definite answer, or what the answer says instead.
fn read_inquiry(reply: &JsonReply) -> Result<Inquiry, String> {
    let envelope: Option<Envelope<Value>> = serde_json::from_str(&reply.text).ok();
    let message = message_of(envelope.as_ref(), &reply.text);
    match envelope {
        Some(e) if reply.status.is_success() && e.is_success() => e
            .body
            .ok_or_else(|| "the answer has no Body".to_string())
            .and_then(|b| serde_json::from_value(b).map_err(|e| e.to_string())),
        Some(e) => Err(format!(
            "HTTP {}, ErrorCode {}: {message}",
            reply.status.as_u16(),
            e.error_code
        )),
        None => Err(format!("HTTP {}: {message}", reply.status.as_u16())),
    }
}

/// Inquires `order`'s job and records what it says: the order is then
/// `Accepted` (the provider knows the job).
pub async fn resolve(
    ledger: &Ledger,
    client: &Client,
    order: &PayoutOrder,
    job_id: &str,
    retry: RetryPolicy,
) -> Result<(PayoutOrder, Inquiry), PayoutError> {
    let inquiry = inquire(client, job_id, retry).await?;
    if order.job_id.as_deref() != Some(job_id) {
        ledger.set_payout_job(order.id, job_id)?;
    }
    if order.state != State::Accepted {
        ledger.settle_payout_order(
            order.id,
            State::Accepted,
            &format!("the provider's inquiry knows JobId {job_id}"),
        )?;
    }
    ledger.set_payout_inquiry(order.id, &inquiry.describe())?;
    let order = ledger
        .payout_order(order.id)?
        .unwrap_or_else(|| order.clone());
    Ok((order, inquiry))
}

/// Checks `order` against the rules and the ledger, records it, and sends
/// it to the provider. Earlier overlapping orders without a definite answer
/// are inquired first (or block the order when they have no `JobId`).
/// `warn` gets what the user must read (the `--skip-exists-control` risk,
/// what an inquiry said) before anything is sent.
pub async fn trigger(
    ledger: &mut Ledger,
    client: &Client,
    order: &Order,
    opts: &TriggerOptions,
    mut warn: impl FnMut(&str),
) -> Result<Triggered, PayoutError> {
    let code = order.currency.code;
    let wire = order.wire();
    // Rules that need no ledger first: nothing is sent, nothing inquired.
    check(
        &wire,
        opts.today,
        std::iter::empty::<(NaiveDate, NaiveDate, String)>(),
    )?;
    for o in ledger.overlapping_payout_orders(code, order.date_from, order.date_to)? {
        if matches!(o.state, State::Accepted | State::Rejected) {
            continue;
        }
        let Some(job_id) = o.job_id.clone() else {
            return Err(PayoutError::Unresolved { order: Box::new(o) });
        };
        let (resolved, inquiry) = resolve(ledger, client, &o, &job_id, opts.retry).await?;
        warn(&format!(
            "{resolved} was inquired first: {}",
            inquiry.describe()
        ));
    }
    let overlapping = ledger.overlapping_payout_orders(code, order.date_from, order.date_to)?;
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
    let what = format!("payout order {}", record.id);
    let mut calls = Retry::new(opts.retry, Effect::Once, &what);
    let answer = loop {
        if calls.next().await.is_none() {
            break Err(calls.ended());
        }
        let reply = client.post_json(PAYOUT_TRIGGER_PATH, &wire).await;
        if let Some(answer) = calls.judge(outcome(reply)) {
            break Ok(answer);
        }
    };
    match answer {
        Ok(Answer::Ordered { message, job_id }) => {
            match &job_id {
                Some(j) => ledger.set_payout_job(record.id, j)?,
                None => warn(
                    "the provider ordered the payout but its answer carries no JobId: its \
                     outcome can only be checked in the provider's panel",
                ),
            }
            let (order, message) = settle(ledger, State::Accepted, message)?;
            tracing::info!(order = order.id, job_id = ?job_id, "payout ordered");
            Ok(Triggered {
                order: *order,
                message,
            })
        }
        Ok(Answer::Refused(message)) => {
            let (order, message) = settle(ledger, State::Rejected, message)?;
            Err(PayoutError::Refused { order, message })
        }
        Err(Ended {
            last,
            ambiguous: true,
            ..
        }) => {
            let message = format!("{last}; not repeated, as the provider may have ordered it");
            let (order, message) = settle(ledger, State::Unknown, message)?;
            Err(PayoutError::Unknown { order, message })
        }
        Err(Ended { attempts, last, .. }) => {
            // Only calls the provider did not take were repeated: nothing
            // was ordered.
            let message =
                format!("{attempts} attempts were not taken by the provider; the last: {last}");
            let (order, message) = settle(ledger, State::Rejected, message)?;
            Err(PayoutError::Refused { order, message })
        }
    }
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
