//! `POST /api/paywall/payment/bulk/file/startdirect`: a payment file and its
//! form fields in, a `BulkPaymentId` out, or a refusal in the envelope.
//!
//! Fields and rules from the page
//! (https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/1.-payment/3.-file,
//! the English one, newer where it differs from the Turkish one):
//! `FileFormat` (required; 5 = TXT is the only live type), `File`
//! (required), `FilePattern` (required), `CurrencyId` (TRY when absent),
//! `Installment` (optional: single payment), `CallbackAddress` (optional),
//! `Half2D` (required on the Turkish page, cut off on the English one: the
//! sandbox takes absent as false), `Amount` (optional: computed from the
//! file), `MerchantUniqueCode` (optional: generated). `CallbackBodyCompression`
//! is read too (named on the callback-retry page).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use tracing::info;

use super::config::{Config, Currency, DuplicateCode};
use super::file::{self, CheckError, Checked, Rules};
use super::pattern::FilePattern;
use super::store::{Batch, BatchRecord, Codec, NewBatch, Recorded};
use super::upload::{self, Form, Upload, FILE_FIELD};
use super::{clock, fields, finish};
use crate::conn::Cut;
use crate::envelope::{code, Envelope, Refusal};
use crate::{faults, Shared};

pub(crate) const PATH: &str = "/api/paywall/payment/bulk/file/startdirect";

/// `Body` of an accepted startdirect, field for field as the page's
/// example answer (seed 002) has them.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BulkStart {
    bulk_payment_id: i64,
    merchant_unique_code: String,
    processed_records: u64,
    total_records: u64,
    is_enqueued: bool,
    message: String,
}

impl BulkStart {
    fn of(batch: &Batch) -> BulkStart {
        BulkStart {
            bulk_payment_id: batch.record.bulk_payment_id,
            merchant_unique_code: batch.record.merchant_unique_code.clone(),
            processed_records: 0,
            total_records: batch.record.rows,
            is_enqueued: true,
            message: "Queued; results follow at the CallbackAddress".into(),
        }
    }
}

pub(crate) async fn handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(cut): ConnectInfo<Cut>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    shared.bulk.requests.fetch_add(1, Ordering::SeqCst);
    faults::guard(&shared.faults, cut, body, |body| async {
        match accept(&shared, &headers, body).await {
            Ok(start) => Json(Envelope::ok("Bulk payment file accepted", start)).into_response(),
            Err(refusal) => {
                info!(code = refusal.code, message = %refusal.message, "sandbox: startdirect refused");
                refusal.into_response()
            }
        }
    })
    .await
}

/// Everything after the faults: keys, body, fields, file, record.
async fn accept(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
) -> Result<BulkStart, Refusal> {
    let bulk = &shared.bulk;
    let config = &bulk.config;
    let prelude = config
        .keys
        .check(headers)
        .and_then(|()| Ok((upload::body_codec(headers)?, upload::boundary(headers)?)));
    let (codec, boundary) = match prelude {
        Ok(prelude) => prelude,
        Err(refusal) => {
            faults::drain(body).await;
            return Err(refusal);
        }
    };
    let form = upload::read_form(bulk.dir.path(), body, codec, boundary).await?;
    let request = Request::from_form(form, config)?;
    let refuse = |code, message: String| Refusal::content(config.refusal_status, code, message);

    if let Some(earlier) = bulk.store.first_with_code(&request.code) {
        match config.duplicate_code {
            DuplicateCode::Reject => return Err(duplicate(config, earlier.record.bulk_payment_id)),
            DuplicateCode::Dedupe => return Ok(BulkStart::of(&earlier)),
            DuplicateCode::PayAgain => {}
        }
    }
    let rules = Rules {
        pattern: request.pattern,
        today: bulk.today(),
        minor_units: request.currency.minor_units,
        max_rows: config.max_rows,
    };
    let spooled = request.file.path.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || file::check(&spooled, &rules))
        .await
        .map_err(|e| Refusal::internal(format!("the file check failed: {e}")))?
        .map_err(|e| match e {
            CheckError::Bad(bad) => refuse(bad.code, bad.message),
            CheckError::Io(e) => Refusal::internal(format!("cannot read the stored file: {e}")),
        })?;
    if let Some(given) = request.amount {
        if given != checked.total {
            return Err(refuse(
                code::PAYMENT_AMOUNT_NOT_CONVENIENT,
                format!(
                    "Amount {given} does not equal the total of the file, {} {}",
                    checked.total, request.currency.code
                ),
            ));
        }
    }

    let new = new_batch(request, checked, codec, bulk.today());
    match bulk.store.record(new, config.duplicate_code) {
        Recorded::Created(batch) => {
            info!(
                bulk_payment_id = batch.record.bulk_payment_id,
                rows = batch.record.rows,
                amount = %batch.record.amount,
                "sandbox: bulk payment accepted"
            );
            tokio::spawn(finish::finish(shared.clone(), batch.clone()));
            Ok(BulkStart::of(&batch))
        }
        Recorded::Earlier(batch) => Ok(BulkStart::of(&batch)),
        Recorded::Refused(earlier) => Err(duplicate(config, earlier)),
    }
}

/// The batch to record from a request whose file passed the checks.
fn new_batch(
    request: Request,
    checked: Checked,
    codec: Option<Codec>,
    today: NaiveDate,
) -> NewBatch {
    NewBatch {
        record: BatchRecord {
            bulk_payment_id: 0,
            merchant_unique_code: request.code,
            code_generated: request.code_generated,
            file_pattern: request.pattern.id(),
            currency_id: request.currency.id,
            installment: request.installment,
            half_2d: request.half_2d,
            amount: checked.total,
            amount_given: request.amount.is_some(),
            rows: checked.rows,
            bytes: request.file.bytes,
            sha256: request.file.sha256.clone(),
            content_encoding: codec,
            file_part_encoding: request.file.encoding,
            file_name: request.file.file_name.clone(),
            file_content_type: request.file.content_type.clone(),
            callback_address: request.callback_address,
            callback_compression: request.callback_compression,
            file: request.file.path.to_path_buf(),
        },
        pattern: request.pattern,
        spool: request.file.path,
        index: checked.index,
        created_at: clock::now(),
        accepted_on: today,
    }
}

/// A batch code seen before, under [`DuplicateCode::Reject`]:
/// `MerchantUniqueCodeAlreadyExist` (119, SDK).
fn duplicate(config: &Config, earlier: i64) -> Refusal {
    Refusal::content(
        config.refusal_status,
        code::MERCHANT_UNIQUE_CODE_ALREADY_EXIST,
        format!("MerchantUniqueCode was already used by bulk payment {earlier}"),
    )
}

/// The typed fields of one request.
struct Request {
    file: Upload,
    pattern: FilePattern,
    currency: Currency,
    installment: Option<u32>,
    callback_address: Option<String>,
    half_2d: bool,
    amount: Option<Decimal>,
    code: String,
    code_generated: bool,
    callback_compression: bool,
}

impl Request {
    /// Field refusals carry `InvalidData` (2) unless the SDK has a closer
    /// code; the choice of code is the sandbox's (docs §8.2).
    fn from_form(mut form: Form, config: &Config) -> Result<Request, Refusal> {
        let refuse = |code, message: String| Refusal::content(config.refusal_status, code, message);
        let required = |name: &str| {
            refuse(
                code::INVALID_DATA,
                format!("the form field {name} is required"),
            )
        };
        let file = form.file.take().ok_or_else(|| required(FILE_FIELD))?;
        let text = |name: &str| {
            form.text
                .get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str, v: &str| {
            v.parse::<u32>().map_err(|_| {
                refuse(
                    code::INVALID_DATA,
                    format!(
                        "the form field {name} must be a whole number, not '{}'",
                        fields::shown(v)
                    ),
                )
            })
        };
        let boolean = |name: &str| match text(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(refuse(
                code::INVALID_DATA,
                format!(
                    "the form field {name} must be true or false, not '{}'",
                    fields::shown(v)
                ),
            )),
        };

        let format = text("FileFormat").ok_or_else(|| required("FileFormat"))?;
        match number("FileFormat", format)? {
            5 => {}
            n @ 1..=4 => {
                return Err(refuse(
                    code::INVALID_DATA,
                    format!("FileFormat {n} is announced as coming soon; only 5 (TXT) is accepted"),
                ))
            }
            n => {
                return Err(refuse(
                    code::INVALID_DATA,
                    format!("FileFormat {n} is not a file type; use 5 (TXT)"),
                ))
            }
        }
        let pattern_id = number(
            "FilePattern",
            text("FilePattern").ok_or_else(|| required("FilePattern"))?,
        )?;
        let pattern = u16::try_from(pattern_id)
            .ok()
            .and_then(FilePattern::from_id)
            .ok_or_else(|| {
                refuse(
                    code::INVALID_DATA,
                    format!(
                        "FilePattern {pattern_id} cannot be read: only 1 (Open Card - Simple) and \
                         3 (Insurance - Simple) have published columns"
                    ),
                )
            })?;
        let currency_id = text("CurrencyId").map_or(Ok(1), |v| number("CurrencyId", v))?;
        let currency = config
            .currencies
            .iter()
            .find(|c| c.id == currency_id)
            .cloned()
            .ok_or_else(|| {
                refuse(
                    code::INVALID_CURRENCY,
                    format!("CurrencyId {currency_id} is not a known currency"),
                )
            })?;
        let installment = text("Installment")
            .map(|v| number("Installment", v))
            .transpose()?;
        if let Some(n) = installment.filter(|n| !(1..=255).contains(n)) {
            return Err(refuse(
                code::INVALID_INSTALLMENT,
                format!("Installment {n} is not an installment count (1 to 255)"),
            ));
        }
        let callback_address = text("CallbackAddress").map(str::to_string);
        if let Some(url) = &callback_address {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(refuse(
                    code::INVALID_CALLBACK_ADDRESS,
                    "CallbackAddress is not an absolute http(s) URL".into(),
                ));
            }
        }
        let amount = text("Amount")
            .map(|v| {
                fields::amount(v, currency.minor_units).map_err(|reason| {
                    refuse(
                        code::AMOUNT,
                        format!("Amount '{}' {reason}", fields::shown(v)),
                    )
                })
            })
            .transpose()?;
        let given_code = text("MerchantUniqueCode").map(str::to_string);
        if given_code
            .as_ref()
            .is_some_and(|c| c.chars().count() > file::MAX_CODE_CHARS)
        {
            // The page gives no limit for the batch code; the row's 250 is
            // the sandbox's choice.
            return Err(refuse(
                code::UNEXPECTED_MERCHANT_UNIQUE_CODE,
                "MerchantUniqueCode is longer than 250 characters".into(),
            ));
        }
        let half_2d = boolean("Half2D")?;
        let callback_compression = boolean("CallbackBodyCompression")?;
        let code_generated = given_code.is_none();
        Ok(Request {
            file,
            pattern,
            currency,
            installment,
            callback_address,
            half_2d,
            amount,
            code: given_code.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            code_generated,
            callback_compression,
        })
    }
}
