//! Paywall's marketplace manual payout trigger: start and inquiry.
//!
//! Pages (read 2024–2025):
//! - Start: <https://developer.paywall.one/payment-orchestration-integration-document/payment-service/17.-marketplace/4.-manual-trigger/2.-start>
//! - Query: <https://developer.paywall.one/payment-orchestration-integration-document/payment-service/17.-marketplace/4.-manual-trigger/3.-query>
//!
//! | call | answer |
//! |------|--------|
//! | `POST /api/paywall/marketplace/manual/trigger/start`, JSON `{CurrencyId, DateFrom, DateTo, TestMode, SkipExistsControl}` | envelope with `Body {JobId, DateFrom, DateTo, Earning, Count}` |
//! | `GET /api/paywall/marketplace/manual/trigger/inquiry`, header `jobid` | envelope with `Body {JobId, DateFrom, DateTo, Earning, Count, AnySuccess, Results: [{Result, ResultMessage}]}` |
//!
//! Both need the headers `apikeypublic` and `apiclientpublic` (else HTTP
//! 401). The rules of the Start page are enforced: `DateTo` is yesterday at
//! the latest unless `TestMode` ("today's payments are still coming in"),
//! and a range overlapping an order that succeeded is refused unless
//! `SkipExistsControl`. The pages give no error codes for these; the
//! sandbox answers HTTP 200 with `Result: false` and the codes of [`code`],
//! taken from the names in Paywall's public SDK enum. "Today" is
//! [`Config::today`], else the date in Istanbul (Paywall is Turkish; the
//! page names no zone).
//!
//! What one `Results` item stands for is not published; the sandbox gives
//! one per earning record, at most three, as [`Outcome`] says.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Datelike, Days, NaiveDate};
use futures::stream;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::countdown::{Busy, Countdown, Fault};
use crate::{Sandbox, Shared};

/// The Start path (Start page).
pub const START_PATH: &str = "/api/paywall/marketplace/manual/trigger/start";
/// The Query path (Query page).
pub const INQUIRY_PATH: &str = "/api/paywall/marketplace/manual/trigger/inquiry";

/// `ErrorCode`s of the refusals (names from Paywall's SDK enum
/// `ErrorCodes`; the pages list none for the trigger).
pub mod code {
    /// `InvalidData`: `DateFrom` after `DateTo`, or a body that is not an order.
    pub const INVALID_DATA: i64 = 2;
    /// `MarketPlaceInvalidProcessTime`: `DateTo` is today or later.
    pub const INVALID_PROCESS_TIME: i64 = 370;
    /// `MarketPlaceEarningAlreadySuccess`: the range overlaps an order that
    /// succeeded.
    pub const ALREADY_SUCCESS: i64 = 368;
    /// `Unauthorized`.
    pub const UNAUTHORIZED: i64 = 401;
    /// `NotFound`: no job with that `jobid`.
    pub const NOT_FOUND: i64 = 404;
    pub const TOO_MANY_REQUESTS: i64 = 429;
    pub const SERVER_ERROR: i64 = 500;
}

/// What the inquiry reports for the jobs started from now on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Outcome {
    /// Every result succeeded.
    #[default]
    Success,
    /// The first result succeeded, the others failed (`AnySuccess` true).
    Partial,
    /// Every result failed.
    Failed,
    /// Not processed yet: no results, `AnySuccess` false.
    Waiting,
}

/// Settings of this surface.
#[derive(Clone, Debug)]
pub struct Config {
    /// Expected `apikeypublic`.
    pub api_key: String,
    /// Expected `apiclientpublic`.
    pub api_client: String,
    /// The sandbox's today; `None`: today in Istanbul.
    pub today: Option<NaiveDate>,
    pub outcome: Outcome,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_key: "sandbox-key".into(),
            api_client: "sandbox-client".into(),
            today: None,
            outcome: Outcome::Success,
        }
    }
}

/// Fault switches of this surface.
#[derive(Debug, Default)]
pub struct Faults {
    pub busy: Busy,
    /// Start the job and record it, then break the connection without an
    /// answer: the client's answer is lost.
    pub lose_answer: Countdown,
}

/// A job the sandbox started.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub job_id: String,
    pub currency_id: i64,
    pub date_from: NaiveDate,
    pub date_to: NaiveDate,
    pub test_mode: bool,
    pub skip_exists_control: bool,
    pub earning: Decimal,
    pub count: u32,
    pub outcome: Outcome,
}

/// State of this surface while the sandbox runs.
pub(crate) struct State {
    config: Config,
    faults: Arc<Faults>,
    jobs: Mutex<Vec<Job>>,
}

impl State {
    pub(crate) fn new(config: Config) -> Self {
        State {
            config,
            faults: Arc::default(),
            jobs: Mutex::default(),
        }
    }

    fn jobs(&self) -> MutexGuard<'_, Vec<Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sandbox {
    /// Every marketplace job started, in order (what the provider's panel
    /// would show).
    pub fn marketplace_jobs(&self) -> Vec<Job> {
        self.shared.marketplace.jobs().clone()
    }

    pub fn marketplace_faults(&self) -> Arc<Faults> {
        self.shared.marketplace.faults.clone()
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(START_PATH, post(start))
        .route(INQUIRY_PATH, get(inquiry))
}

/// A refusal in Paywall's envelope: `{ErrorCode, Result: false, Message}`.
struct Refusal {
    status: StatusCode,
    code: i64,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A rule broken: HTTP 200, `Result: false`.
    fn rule(code: i64, message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::OK, code, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        info!(code = self.code, message = %self.message, "sandbox marketplace: refused");
        let body =
            json!({"ErrorCode": self.code, "Result": false, "Message": self.message, "Body": null});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(secs));
        }
        response
    }
}

fn success(body: Value) -> Response {
    Json(json!({"ErrorCode": 0, "Result": true, "Message": "", "Body": body})).into_response()
}

/// The busy faults, then the credential headers.
fn admit(state: &State, headers: &HeaderMap) -> Result<(), Refusal> {
    match state.faults.busy.take() {
        Some(Fault::TooMany(secs)) => {
            return Err(Refusal {
                retry_after: Some(secs),
                ..Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    code::TOO_MANY_REQUESTS,
                    "too many requests",
                )
            })
        }
        Some(Fault::ServerError) => {
            return Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                code::SERVER_ERROR,
                "sandbox fault: internal error",
            ))
        }
        None => {}
    }
    let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
    if header("apikeypublic") != Some(state.config.api_key.as_bytes())
        || header("apiclientpublic") != Some(state.config.api_client.as_bytes())
    {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            "apikeypublic / apiclientpublic missing or not valid",
        ));
    }
    Ok(())
}

/// The Start page's request body.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartRequest {
    currency_id: i64,
    date_from: String,
    date_to: String,
    #[serde(default)]
    test_mode: bool,
    #[serde(default)]
    skip_exists_control: bool,
}

fn ymd(name: &str, value: &str) -> Result<NaiveDate, Refusal> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|_| value.len() == 10)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                code::INVALID_DATA,
                format!("{name} '{value}' is not yyyy-MM-dd"),
            )
        })
}

fn today(config: &Config) -> NaiveDate {
    config.today.unwrap_or_else(|| {
        chrono::Utc::now()
            .with_timezone(&chrono_tz::Europe::Istanbul)
            .date_naive()
    })
}

/// The earnings waiting in the pool for a range: made up, but the same for
/// the same days.
fn earnings(from: NaiveDate, to: NaiveDate) -> (Decimal, u32) {
    let mut total = Decimal::ZERO;
    let mut count = 0u32;
    let mut day = from;
    while day <= to {
        let n = day.num_days_from_ce() as i64;
        total += Decimal::new((n % 97 + 3) * 12_345, 4);
        count += 1 + (n % 3) as u32;
        match day.checked_add_days(Days::new(1)) {
            Some(next) => day = next,
            None => break,
        }
    }
    (total, count)
}

/// `yyyy-MM-ddT00:00:00`, as the Restart and Query pages show dates.
fn day_time(d: NaiveDate) -> String {
    format!("{}T00:00:00", d.format("%Y-%m-%d"))
}

fn job_body(job: &Job) -> Value {
    json!({
        "JobId": job.job_id,
        "DateFrom": day_time(job.date_from),
        "DateTo": day_time(job.date_to),
        "Earning": job.earning,
        "Count": job.count,
    })
}

async fn start(
    extract::State(shared): extract::State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match start_job(&shared.marketplace, &headers, &body) {
        Ok(job) => {
            let answer = job_body(&job);
            if shared.marketplace.faults.lose_answer.take() {
                warn!(job_id = %job.job_id, "sandbox fault: the start answer is lost");
                let lost = stream::once(async {
                    Err::<Bytes, std::io::Error>(std::io::Error::other(
                        "sandbox fault: answer lost",
                    ))
                });
                return Response::new(Body::from_stream(lost));
            }
            success(answer)
        }
        Err(refusal) => refusal.into_response(),
    }
}

fn start_job(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<Job, Refusal> {
    admit(state, headers)?;
    let request: StartRequest = serde_json::from_slice(body).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_DATA,
            format!("the body is not a Start request: {e}"),
        )
    })?;
    let from = ymd("DateFrom", &request.date_from)?;
    let to = ymd("DateTo", &request.date_to)?;
    if from > to {
        return Err(Refusal::rule(
            code::INVALID_DATA,
            format!("DateFrom {from} is after DateTo {to}"),
        ));
    }
    let today = today(&state.config);
    // Start page: DateTo may be yesterday at the latest unless TestMode.
    if !request.test_mode && to >= today {
        return Err(Refusal::rule(
            code::INVALID_PROCESS_TIME,
            format!("DateTo {to} must be before today ({today}) unless TestMode"),
        ));
    }
    let mut jobs = state.jobs();
    // Start page: no new order may cover dates of an order that succeeded,
    // unless SkipExistsControl.
    if !request.skip_exists_control {
        if let Some(earlier) = jobs.iter().find(|j| {
            j.currency_id == request.currency_id && j.date_from <= to && from <= j.date_to
        }) {
            return Err(Refusal::rule(
                code::ALREADY_SUCCESS,
                format!(
                    "the earnings of {} to {} were already ordered (JobId {})",
                    earlier.date_from, earlier.date_to, earlier.job_id
                ),
            ));
        }
    }
    let (earning, count) = earnings(from, to);
    let job = Job {
        job_id: uuid::Uuid::new_v4().to_string(),
        currency_id: request.currency_id,
        date_from: from,
        date_to: to,
        test_mode: request.test_mode,
        skip_exists_control: request.skip_exists_control,
        earning,
        count,
        outcome: state.config.outcome,
    };
    info!(job_id = %job.job_id, %from, %to, "sandbox marketplace: job started");
    jobs.push(job.clone());
    Ok(job)
}

async fn inquiry(
    extract::State(shared): extract::State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let state = &shared.marketplace;
    if let Err(refusal) = admit(state, &headers) {
        return refusal.into_response();
    }
    let Some(job_id) = headers.get("jobid").and_then(|v| v.to_str().ok()) else {
        return Refusal::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_DATA,
            "the jobid header is missing",
        )
        .into_response();
    };
    let Some(job) = state.jobs().iter().find(|j| j.job_id == job_id).cloned() else {
        return Refusal::new(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            format!("no job {job_id}"),
        )
        .into_response();
    };
    let n = job.count.clamp(1, 3) as usize;
    let results: Vec<Value> = (0..n)
        .filter_map(|i| {
            let ok = match job.outcome {
                Outcome::Success => true,
                Outcome::Partial => i == 0,
                Outcome::Failed => false,
                Outcome::Waiting => return None,
            };
            let message = if ok { "" } else { "IBAN rejected by the bank" };
            Some(json!({"Result": ok, "ResultMessage": message}))
        })
        .collect();
    let any_success = results.iter().any(|r| r["Result"] == true);
    let mut body = job_body(&job);
    body["AnySuccess"] = any_success.into();
    body["Results"] = results.into();
    success(body)
}
