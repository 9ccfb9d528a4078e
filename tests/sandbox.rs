//! The embedded sandbox provider, driven by a plain reqwest client.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_compression::tokio::write::{BrotliEncoder, GzipEncoder};
use async_compression::Level;
use axum::extract::{Multipart, State};
use chrono::NaiveDate;
use paydrop::api::{
    field, BulkStart, Envelope, CALLBACK_COLUMNS, HEADER_API_CLIENT, HEADER_API_KEY,
};
use paydrop::currency::Currency;
use paydrop::generate::{generate, GenOptions};
use paydrop::pattern::Registry;
use paydrop::sandbox::{self, callback, code, Sandbox, SandboxConfig};
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 15).unwrap()
}

fn config() -> SandboxConfig {
    SandboxConfig {
        as_of: Some(as_of()),
        callback_delay: Duration::ZERO,
        callback_backoff: Duration::from_millis(10),
        ..SandboxConfig::default()
    }
}

/// A sandbox with [`config`], changed by `tweak`.
async fn start(tweak: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
    let mut config = config();
    tweak(&mut config);
    sandbox::spawn(config).await.expect("sandbox starts")
}

/// A valid pattern-1 file and its total.
struct PaymentFile {
    bytes: Vec<u8>,
    total: Decimal,
}

fn payment_file(rows: u64, seed: u64, error_rate: f64) -> PaymentFile {
    let registry = Registry::load(None).unwrap();
    let mut bytes = Vec::new();
    let opts = GenOptions {
        rows,
        seed,
        error_rate,
        as_of: as_of(),
        ..GenOptions::default()
    };
    let g = generate(&mut bytes, registry.get(1).unwrap(), &opts).unwrap();
    let total = g.totals.amount(Currency::lookup("TRY").unwrap());
    PaymentFile { bytes, total }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn encode(codec: &str, data: &[u8]) -> Vec<u8> {
    async fn run<E: AsyncWrite + Unpin>(mut encoder: E, data: &[u8]) -> E {
        encoder.write_all(data).await.unwrap();
        encoder.shutdown().await.unwrap();
        encoder
    }
    match codec {
        "gzip" => run(GzipEncoder::new(Vec::new()), data).await.into_inner(),
        "br" => run(
            BrotliEncoder::with_quality(Vec::new(), Level::Precise(4)),
            data,
        )
        .await
        .into_inner(),
        other => panic!("no encoder for {other}"),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// One `startdirect` request, valid unless changed.
#[derive(Clone)]
struct Req {
    file: Vec<u8>,
    file_name: String,
    file_type: Option<&'static str>,
    fields: Vec<(&'static str, String)>,
    body_encoding: Option<&'static str>,
    auth: Option<(&'static str, &'static str)>,
}

impl Req {
    fn new(file: &[u8]) -> Req {
        Req {
            file: file.to_vec(),
            file_name: "payments.csv".into(),
            file_type: None,
            fields: vec![
                (field::FILE_PATTERN, "1".into()),
                (field::FILE_FORMAT, "5".into()),
                (field::CURRENCY_ID, "1".into()),
                (field::INSTALLMENT, "1".into()),
                (field::CALLBACK_ADDRESS, String::new()),
                (field::HALF_2D, "false".into()),
            ],
            body_encoding: None,
            auth: Some(("sandbox-key", "sandbox-client")),
        }
    }

    fn set(mut self, name: &'static str, value: impl Into<String>) -> Req {
        self.fields.retain(|(n, _)| *n != name);
        self.fields.push((name, value.into()));
        self
    }

    fn without(mut self, name: &'static str) -> Req {
        self.fields.retain(|(n, _)| *n != name);
        self
    }

    fn form(&self) -> Form {
        let mut part = Part::bytes(self.file.clone()).file_name(self.file_name.clone());
        if let Some(t) = self.file_type {
            part = part.mime_str(t).unwrap();
        }
        let form = self
            .fields
            .iter()
            .fold(Form::new(), |f, (n, v)| f.text(*n, v.clone()));
        form.part(field::FILE, part)
    }

    async fn send(&self, sb: &Sandbox) -> reqwest::Result<reqwest::Response> {
        let http = client();
        let mut rb = http.post(sb.startdirect_url());
        if let Some((key, client)) = self.auth {
            rb = rb
                .header(HEADER_API_KEY, key)
                .header(HEADER_API_CLIENT, client);
        }
        let Some(codec) = self.body_encoding else {
            return rb.multipart(self.form()).send().await;
        };
        // The whole multipart body, compressed by hand.
        let mut plain = http
            .post("http://127.0.0.1/")
            .multipart(self.form())
            .build()?;
        let content_type = plain.headers()[CONTENT_TYPE].clone();
        let body = plain.body_mut().take().unwrap();
        let bytes = axum::body::to_bytes(axum::body::Body::new(body), usize::MAX)
            .await
            .unwrap();
        rb.header(CONTENT_TYPE, content_type)
            .header(CONTENT_ENCODING, codec)
            .body(encode(codec, &bytes).await)
            .send()
            .await
    }

    /// Sends and reads the envelope, expecting an HTTP status.
    async fn expect(&self, sb: &Sandbox, status: StatusCode) -> Envelope<BulkStart> {
        let answer = self.send(sb).await.expect("an answer");
        assert_eq!(answer.status(), status);
        answer.json().await.expect("an envelope")
    }

    async fn accepted(&self, sb: &Sandbox) -> BulkStart {
        let e = self.expect(sb, StatusCode::OK).await;
        assert!(e.is_success(), "refused: {:?}", e.message);
        e.body.expect("a body")
    }

    /// Refused with HTTP 200 and a business code; returns the message.
    async fn refused(&self, sb: &Sandbox, code: i64) -> String {
        let e = self.expect(sb, StatusCode::OK).await;
        assert_eq!((e.error_code, e.result), (code, false), "{:?}", e.message);
        e.message.unwrap_or_default()
    }
}

#[tokio::test]
async fn refuses_requests_without_the_right_api_headers() {
    let sb = start(|_| ()).await;
    let file = payment_file(3, 1, 0.0);
    let mut req = Req::new(&file.bytes);
    req.auth = None;
    let e = req.expect(&sb, StatusCode::UNAUTHORIZED).await;
    assert_eq!((e.error_code, e.result), (401, false));
    req.auth = Some(("sandbox-key", "someone-else"));
    req.expect(&sb, StatusCode::UNAUTHORIZED).await;
    assert!(sb.batches().is_empty());
    assert_eq!(sb.requests(), 2);
}

#[tokio::test]
async fn every_body_encoding_stores_the_original_file() {
    let sb = start(|_| ()).await;
    let file = payment_file(500, 2, 0.0);
    for (i, codec) in [None, Some("gzip"), Some("br")].into_iter().enumerate() {
        let mut req = Req::new(&file.bytes).set(field::MERCHANT_UNIQUE_CODE, format!("enc-{i}"));
        req.body_encoding = codec;
        let start = req.accepted(&sb).await;
        assert_eq!(start.bulk_payment_id, 3467 + i as i64);
        assert_eq!((start.total_records, start.is_enqueued), (500, true));
        let batch = sb.batches().pop().unwrap();
        assert_eq!(batch.sha256, sha256(&file.bytes));
        assert_eq!(batch.bytes, file.bytes.len() as u64);
        assert_eq!(batch.content_encoding.as_deref(), codec);
        assert_eq!(batch.file_part_encoding, None);
        assert_eq!((batch.amount, batch.amount_given), (file.total, false));
    }
    assert_eq!(sb.batches().len(), 3);
}

#[tokio::test]
async fn a_compressed_file_part_is_decoded() {
    let sb = start(|_| ()).await;
    let file = payment_file(200, 3, 0.0);
    let gz = encode("gzip", &file.bytes).await;
    let br = encode("br", &file.bytes).await;
    let cases = [
        (&gz, "payments.csv.gz", None, "gzip"),
        (&br, "payments.csv.br", None, "br"),
        // No name or type hint: gzip's magic bytes.
        (&gz, "payments.bin", None, "gzip"),
        (&br, "payments", Some("application/x-brotli"), "br"),
    ];
    for (i, (bytes, name, mime, expected)) in cases.into_iter().enumerate() {
        let mut req = Req::new(bytes).set(field::MERCHANT_UNIQUE_CODE, format!("part-{i}"));
        req.file_name = name.into();
        req.file_type = mime;
        req.accepted(&sb).await;
        let batch = sb.batches().pop().unwrap();
        assert_eq!(batch.sha256, sha256(&file.bytes), "{name}");
        assert_eq!(batch.file_part_encoding.as_deref(), Some(expected));
        assert_eq!(batch.rows, 200);
    }
}

#[tokio::test]
async fn amount_must_equal_the_total_exactly() {
    let sb = start(|_| ()).await;
    let file = payment_file(50, 4, 0.0);
    let wrong = file.total + Decimal::new(1, 2);
    let message = Req::new(&file.bytes)
        .set(field::AMOUNT, wrong.to_string())
        .refused(&sb, code::AMOUNT_MISMATCH)
        .await;
    assert!(message.contains(&wrong.to_string()), "{message}");
    assert!(message.contains(&file.total.to_string()), "{message}");
    assert!(sb.batches().is_empty());

    let e = Req::new(&file.bytes)
        .set(field::AMOUNT, "12,50")
        .expect(&sb, StatusCode::BAD_REQUEST)
        .await;
    assert!(e.message.unwrap().contains(field::AMOUNT));

    // The same value written with another trailing zero is the same amount.
    Req::new(&file.bytes)
        .set(field::AMOUNT, format!("{}0", file.total))
        .accepted(&sb)
        .await;
    let batch = sb.batches().pop().unwrap();
    assert_eq!((batch.amount, batch.amount_given), (file.total, true));
}

#[tokio::test]
async fn more_rows_than_the_limit_are_refused() {
    let sb = start(|c| c.max_rows = 5).await;
    let message = Req::new(&payment_file(6, 5, 0.0).bytes)
        .refused(&sb, code::TOO_MANY_ROWS)
        .await;
    assert!(message.contains("at most 5"), "{message}");
    Req::new(&payment_file(5, 5, 0.0).bytes).accepted(&sb).await;
    assert_eq!(sb.batches().len(), 1);
}

#[tokio::test]
async fn bad_files_and_fields_are_refused() {
    let sb = start(|_| ()).await;
    let file = payment_file(10, 6, 0.0);
    let req = Req::new(&file.bytes);

    let invalid = payment_file(40, 6, 0.25);
    let message = Req::new(&invalid.bytes)
        .refused(&sb, code::INVALID_FILE)
        .await;
    assert!(
        message.contains("rows are invalid; first: line"),
        "{message}"
    );

    let message = req
        .clone()
        .set(field::FILE_FORMAT, "2")
        .refused(&sb, code::FILE_FORMAT)
        .await;
    assert_eq!(message, "FileFormat 2 is not supported yet");
    req.clone()
        .set(field::FILE_PATTERN, "9")
        .refused(&sb, code::UNKNOWN_PATTERN)
        .await;
    req.clone()
        .set(field::CURRENCY_ID, "99")
        .refused(&sb, code::UNKNOWN_CURRENCY)
        .await;

    for (broken, name) in [
        (req.clone().without(field::HALF_2D), field::HALF_2D),
        (req.clone().set(field::HALF_2D, "yes"), field::HALF_2D),
        (
            req.clone().set(field::CURRENCY_ID, "abc"),
            field::CURRENCY_ID,
        ),
        (req.clone().without(field::INSTALLMENT), field::INSTALLMENT),
    ] {
        let e = broken.expect(&sb, StatusCode::BAD_REQUEST).await;
        assert_eq!(e.error_code, code::BAD_REQUEST);
        let message = e.message.unwrap();
        assert!(message.contains(name), "{message}");
    }

    let answer = client()
        .post(sb.startdirect_url())
        .header(HEADER_API_KEY, "sandbox-key")
        .header(HEADER_API_CLIENT, "sandbox-client")
        .header(CONTENT_ENCODING, "deflate")
        .multipart(req.form())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let e: Envelope<BulkStart> = answer.json().await.unwrap();
    assert_eq!(e.error_code, code::UNSUPPORTED_ENCODING);

    // A body that is not the gzip it claims to be.
    let answer = client()
        .post(sb.startdirect_url())
        .header(HEADER_API_KEY, "sandbox-key")
        .header(HEADER_API_CLIENT, "sandbox-client")
        .header(CONTENT_TYPE, "multipart/form-data; boundary=x")
        .header(CONTENT_ENCODING, "gzip")
        .body("definitely not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert!(sb.batches().is_empty());

    // CallbackAddress is optional on the provider's English page.
    req.clone()
        .without(field::CALLBACK_ADDRESS)
        .accepted(&sb)
        .await;
    assert_eq!(sb.batches().len(), 1);
}

#[tokio::test]
async fn the_same_merchant_unique_code_gives_the_same_batch() {
    let sb = start(|_| ()).await;
    let file = payment_file(20, 7, 0.0);
    let req = Req::new(&file.bytes).set(field::MERCHANT_UNIQUE_CODE, "batch-7");
    let first = req.accepted(&sb).await;
    let again = req.accepted(&sb).await;
    assert_eq!(first, again);
    assert_eq!(sb.batches().len(), 1);

    // Concurrent duplicates still make one batch.
    let twin = Req::new(&file.bytes).set(field::MERCHANT_UNIQUE_CODE, "batch-8");
    let (a, b) = tokio::join!(twin.accepted(&sb), twin.accepted(&sb));
    assert_eq!(a.bulk_payment_id, b.bulk_payment_id);
    assert_eq!(a.bulk_payment_id, first.bulk_payment_id + 1);
    assert_eq!(sb.batches().len(), 2);

    // Without a code the sandbox makes one up.
    let generated = Req::new(&file.bytes).accepted(&sb).await;
    uuid::Uuid::parse_str(&generated.merchant_unique_code).expect("a uuid");
    assert_eq!(sb.batches().len(), 3);
    assert_eq!(sb.requests(), 5);
}

#[tokio::test]
async fn fault_switches_count_down() {
    let sb = start(|_| ()).await;
    let faults = sb.faults();
    let file = payment_file(300, 8, 0.0);
    let req = |code: &str| Req::new(&file.bytes).set(field::MERCHANT_UNIQUE_CODE, code);

    faults.too_many.store(2, Ordering::SeqCst);
    faults.retry_after_secs.store(7, Ordering::SeqCst);
    for _ in 0..2 {
        let answer = req("limited").send(&sb).await.unwrap();
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(answer.headers()[RETRY_AFTER], "7");
        let e: Envelope<BulkStart> = answer.json().await.unwrap();
        assert_eq!(e.error_code, code::TOO_MANY_REQUESTS);
    }
    req("limited").accepted(&sb).await;

    faults.server_errors.store(1, Ordering::SeqCst);
    let e = req("errored")
        .expect(&sb, StatusCode::INTERNAL_SERVER_ERROR)
        .await;
    assert_eq!(e.error_code, code::SERVER_ERROR);
    req("errored").accepted(&sb).await;

    faults.drop_mid_body.store(1, Ordering::SeqCst);
    assert!(req("dropped").send(&sb).await.is_err());
    assert_eq!(sb.batches().len(), 2);
    req("dropped").accepted(&sb).await;

    faults.accept_then_crash.store(1, Ordering::SeqCst);
    assert!(req("crashed").send(&sb).await.is_err());
    let recorded = sb.batches().pop().unwrap();
    assert_eq!(recorded.merchant_unique_code, "crashed");
    let retried = req("crashed").accepted(&sb).await;
    assert_eq!(retried.bulk_payment_id, recorded.bulk_payment_id);
    assert_eq!(sb.batches().len(), 4);

    faults.set_delay(Duration::from_millis(20));
    req("delayed").accepted(&sb).await;
    faults.clear();
    assert_eq!(faults.delay(), Duration::ZERO);
    assert_eq!(sb.requests(), 10);
    assert_eq!(sb.batches().len(), 5);
}

/// Waits until the sandbox has seen its callback answered (the receiver
/// hands the file over before it answers).
async fn delivered(sb: &Sandbox) {
    let wait = async {
        while sb.callbacks_delivered() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the callback is answered");
    assert_eq!(sb.callbacks_delivered(), 1);
}

/// What a callback receiver got.
#[derive(Debug, Default)]
struct Received {
    fields: Vec<(String, String)>,
    file_name: Option<String>,
    file: String,
}

/// A callback receiver on 127.0.0.1 that answers the first `fail_first`
/// posts with 503; its URL and what it received.
async fn receiver(fail_first: u32) -> (String, mpsc::Receiver<Received>) {
    let (tx, rx) = mpsc::channel(4);
    let failures = Arc::new(AtomicU32::new(fail_first));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/results", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/results", axum::routing::post(receive))
        .with_state((tx, failures));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

type ReceiverState = (mpsc::Sender<Received>, Arc<AtomicU32>);

async fn receive(State((tx, failures)): State<ReceiverState>, mut form: Multipart) -> StatusCode {
    if failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let mut got = Received::default();
    while let Some(part) = form.next_field().await.unwrap() {
        let name = part.name().unwrap_or_default().to_string();
        if name == "file" {
            got.file_name = part.file_name().map(str::to_string);
            got.file = part.text().await.unwrap();
        } else {
            got.fields.push((name, part.text().await.unwrap()));
        }
    }
    tx.send(got).await.unwrap();
    StatusCode::OK
}

async fn next_callback(rx: &mut mpsc::Receiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("the callback arrives")
        .expect("the receiver runs")
}

#[tokio::test]
async fn the_result_callback_reports_every_row_reproducibly() {
    let (seed, rate) = (11, 0.3);
    let sb = start(|c| {
        c.seed = seed;
        c.decline_rate = rate;
    })
    .await;
    let (url, mut rx) = receiver(0).await;

    let rows = 400;
    let file = payment_file(rows, 9, 0.0);
    let start = Req::new(&file.bytes)
        .set(field::MERCHANT_UNIQUE_CODE, "with-callback")
        .set(field::CALLBACK_ADDRESS, url)
        .set(field::HALF_2D, "true")
        .accepted(&sb)
        .await;
    let got = next_callback(&mut rx).await;

    let id = start.bulk_payment_id;
    assert_eq!(got.file_name, Some(format!("result-{id}.csv")));
    // The published shape: a `file` part and a `data` field of JSON whose
    // Hash is made with the merchant's webhook key.
    let [(name, data)] = got.fields.as_slice() else {
        panic!("one data field: {:?}", got.fields)
    };
    assert_eq!(name, "data");
    let data: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["BulkPaymentId"], id);
    assert_eq!(data["MerchantUniqueCode"], "with-callback");
    assert_eq!(data["HashFormat"], "BulkPayment");
    assert_eq!(data["IsCompressed"], false);
    assert_eq!(data["LineCount"], rows);
    let signed = format!("{}###{id}###with-callback", config().webhook_hash_key);
    assert_eq!(data["Hash"], hex::encode(sha2::Sha256::digest(signed)));

    let column = |name: &str| CALLBACK_COLUMNS.iter().position(|c| *c == name).unwrap();
    let mut uploaded = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(file.bytes.as_slice());
    let mut results = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(got.file.as_bytes());
    let mut lines = 0;
    let mut declined = 0;
    for (row, result) in uploaded.records().zip(results.records()) {
        let (row, result) = (row.unwrap(), result.unwrap());
        assert_eq!(result.len(), CALLBACK_COLUMNS.len());
        let (card, line, muc) = (&row[0], &row[3], &row[9]);
        assert_eq!(&result[column("lineNumber")], line);
        assert_eq!(&result[column("merchantUniqueCode")], muc);
        assert_eq!(&result[column("amount")], &row[2]);
        assert_eq!(result[column("cardNumber")], paydrop::mask::card(card));
        assert_ne!(&result[column("cardNumber")], card);
        assert_eq!(
            result[column("PaymentActivityTypeId")],
            callback::ACTIVITY_PREAUTH.to_string()
        );
        let expected = sandbox::outcome(seed, rate, muc, line);
        let status = &result[column("PaymentStatusId")];
        match expected {
            None => {
                // Half2D: a pre-authorisation, awaiting its capture.
                assert_eq!(status, callback::STATUS_AUTHORISED.to_string());
                assert_eq!(&result[column("paywallErrorCode")], "0");
            }
            Some(d) => {
                declined += 1;
                assert_eq!(status, callback::STATUS_FAILED.to_string());
                assert_eq!(&result[column("bankErrorCode")], d.code);
                assert_eq!(&result[column("bankErrorMessage")], d.message);
            }
        }
        lines += 1;
    }
    assert_eq!(lines, rows);
    assert_eq!(results.records().count(), 0, "no extra lines");
    // 400 rows at 30%: the reproducible choice lands near the rate.
    assert!((60..=180).contains(&declined), "{declined} declined");
    delivered(&sb).await;
    sb.shutdown().await;
}

#[tokio::test]
async fn a_failing_callback_is_retried() {
    let sb = start(|c| c.callback_attempts = 3).await;
    let (url, mut rx) = receiver(2).await;
    let file = payment_file(30, 10, 0.0);
    Req::new(&file.bytes)
        .set(field::CALLBACK_ADDRESS, url)
        .accepted(&sb)
        .await;
    let got = next_callback(&mut rx).await;
    assert_eq!(got.file.lines().count(), 30);
    delivered(&sb).await;
}

#[tokio::test]
async fn a_large_upload_streams_past_the_default_body_limit() {
    let sb = start(|_| ()).await;
    // Well over axum's 2 MB default limit.
    let file = payment_file(30_000, 12, 0.0);
    assert!(file.bytes.len() > 3 << 20);
    let mut req = Req::new(&file.bytes);
    req.body_encoding = Some("gzip");
    // An early answer still arrives whole: the sandbox reads the body first.
    sb.faults().too_many.store(1, Ordering::SeqCst);
    let e = req.expect(&sb, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(e.error_code, code::TOO_MANY_REQUESTS);
    req.body_encoding = None;
    let start = req.accepted(&sb).await;
    assert_eq!(start.total_records, 30_000);
    assert_eq!(sb.batches()[0].sha256, sha256(&file.bytes));
}

#[tokio::test]
async fn listens_only_on_loopback() {
    let outside = "0.0.0.0:0".parse().unwrap();
    let err = sandbox::serve(config(), outside).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
