//! Helpers of the sandbox's tests: hand-built startdirect requests (plain
//! reqwest, no paydrop code), a tiny callback receiver, the key order of a
//! JSON text, valid payment rows, and the transcribed fixtures.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::routing;
use axum::Router;
use paydrop_sandbox::bulk;
use paydrop_sandbox::{Sandbox, SandboxConfig};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

pub const STARTDIRECT: &str = "/api/paywall/payment/bulk/file/startdirect";
pub const QUERY: &str = "/api/paywall/payment/bulk/payment/query";
pub const SUMMARY: &str = "/api/paywall/payment/bulk/payment/query/summary";
pub const SEND_CALLBACK: &str = "/api/paywall/payment/bulk/send/callback";

/// A file of `tests/fixtures/paywall/` at the repository's root.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/paywall")
        .join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture_bytes(name)).unwrap()
}

/// The bulk settings of most tests: fast callbacks and retries.
pub fn bulk_config() -> bulk::Config {
    let mut c = bulk::Config::default();
    c.callback.delay = Duration::from_millis(30);
    c.callback.backoff = Duration::from_millis(20);
    c.callback.timeout = Duration::from_secs(10);
    c
}

pub async fn sandbox(bulk: bulk::Config) -> Sandbox {
    paydrop_sandbox::spawn(SandboxConfig {
        bulk,
        ..SandboxConfig::default()
    })
    .await
    .expect("the sandbox starts")
}

/// One part of a hand-built multipart body.
#[derive(Clone)]
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// A multipart form written byte by byte, so that a test controls every
/// name, type and repetition.
#[derive(Clone, Default)]
pub struct Form {
    pub parts: Vec<Part>,
}

pub const BOUNDARY: &str = "sandbox-test-boundary-7d1f";

impl Form {
    /// The fields of a plain pattern 1 upload of `file` (no Amount, no
    /// callback, a fixed batch code).
    pub fn payments(file: &[u8], pattern: u8, code: &str) -> Form {
        Form::default()
            .file("File", "payments.txt", "text/plain", file)
            .text("FileFormat", "5")
            .text("FilePattern", &pattern.to_string())
            .text("CurrencyId", "1")
            .text("Half2D", "false")
            .text("MerchantUniqueCode", code)
    }

    pub fn text(mut self, name: &str, value: &str) -> Form {
        self.parts.push(Part {
            name: name.into(),
            file_name: None,
            content_type: None,
            body: value.as_bytes().to_vec(),
        });
        self
    }

    pub fn file(mut self, name: &str, file_name: &str, content_type: &str, body: &[u8]) -> Form {
        self.parts.push(Part {
            name: name.into(),
            file_name: Some(file_name.into()),
            content_type: Some(content_type.into()),
            body: body.to_vec(),
        });
        self
    }

    /// Without every part named `name`.
    pub fn without(mut self, name: &str) -> Form {
        self.parts.retain(|p| p.name != name);
        self
    }

    /// With the value of the text field `name` replaced.
    pub fn set(self, name: &str, value: &str) -> Form {
        self.without(name).text(name, value)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.parts {
            out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", p.name);
            if let Some(f) = &p.file_name {
                disposition.push_str(&format!("; filename=\"{f}\""));
            }
            out.extend_from_slice(disposition.as_bytes());
            out.extend_from_slice(b"\r\n");
            if let Some(t) = &p.content_type {
                out.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&p.body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        out
    }
}

/// An answer: HTTP status, the raw body and its JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub raw: String,
    pub json: Value,
}

impl Answer {
    pub fn error_code(&self) -> i64 {
        self.json["ErrorCode"].as_i64().expect("an ErrorCode")
    }

    pub fn message(&self) -> &str {
        self.json["Message"].as_str().unwrap_or_default()
    }

    pub fn accepted(&self) -> bool {
        self.status == 200 && self.json["Result"] == true && self.error_code() == 0
    }

    pub fn bulk_payment_id(&self) -> i64 {
        assert!(self.accepted(), "refused: {}", self.raw);
        self.json["Body"]["BulkPaymentId"].as_i64().unwrap()
    }

    /// Refused with `code`, HTTP 200 and `Result` false (the default
    /// refusal status); the message for more checks.
    pub fn refused(&self, code: i64) -> String {
        assert_eq!(
            (
                self.status,
                self.json["Result"].as_bool(),
                self.error_code()
            ),
            (200, Some(false), code),
            "{}",
            self.raw
        );
        assert!(self.json["Body"].is_null(), "{}", self.raw);
        self.message().to_string()
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub const KEYS: [(&str, &str); 2] = [
    ("apikeypublic", "sandbox-key"),
    ("apiclientpublic", "sandbox-client"),
];

/// A startdirect request carrying `body` (already encoded, maybe
/// compressed) and `headers`.
pub fn startdirect(
    sb: &Sandbox,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let mut request = http()
        .post(format!("{}{STARTDIRECT}", sb.base_url()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request
}

/// Posts `body` to startdirect; the answer.
pub async fn post_raw(sb: &Sandbox, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    answer(
        startdirect(sb, body, headers)
            .send()
            .await
            .expect("the sandbox answers"),
    )
    .await
}

/// Posts a form with the right keys.
pub async fn post(sb: &Sandbox, form: &Form) -> Answer {
    post_raw(sb, form.encode(), &KEYS).await
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let raw = response.text().await.unwrap();
    let json = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Answer { status, raw, json }
}

/// GET on an inquiry route with the keys and the given headers.
pub async fn get(sb: &Sandbox, path_and_query: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = http().get(format!("{}{path_and_query}", sb.base_url()));
    for (k, v) in KEYS.iter().chain(headers) {
        request = request.header(*k, *v);
    }
    answer(request.send().await.unwrap()).await
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

pub async fn brotli(bytes: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut e = async_compression::tokio::bufread::BrotliEncoder::with_quality(
        bytes,
        async_compression::Level::Precise(4),
    );
    let mut out = Vec::new();
    e.read_to_end(&mut out).await.unwrap();
    out
}

/// Completes `prefix` with its Luhn check digit.
pub fn luhn(prefix: &str) -> String {
    let sum: u32 = prefix
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d = d * 2;
                if d > 9 {
                    d - 9
                } else {
                    d
                }
            } else {
                d
            }
        })
        .sum();
    format!("{prefix}{}", (10 - sum % 10) % 10)
}

/// A valid pattern 1 row (17 columns): payment `i`, amount `10.00 + i`.
pub fn p1_row(i: usize) -> String {
    format!(
        "{},12/39,{}.25,{},CARD OWNER {i},TRK-{i},,,,pay-{i},,,,,,,",
        luhn(&format!("454360{:09}", i)),
        10 + i,
        i + 1
    )
}

/// A pattern 1 file of `n` rows, LF-terminated.
pub fn p1_file(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| p1_row(i) + "\n")
        .collect::<String>()
        .into_bytes()
}

/// The total of [`p1_file`]`(n)`.
pub fn p1_total(n: usize) -> rust_decimal::Decimal {
    (0..n)
        .map(|i| rust_decimal::Decimal::new((10 + i as i64) * 100 + 25, 2))
        .sum()
}

/// Waits until `done` holds, for at most `limit`.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One callback the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub data_raw: String,
    pub data: Value,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    /// The `file` part as received (gzip when `IsCompressed`).
    pub file: Vec<u8>,
    /// Which part came first.
    pub data_first: bool,
    /// Every part name, in order.
    pub part_names: Vec<String>,
}

impl Received {
    pub fn page(&self) -> u64 {
        self.data["PageNumber"].as_u64().unwrap_or(1)
    }

    /// The result file's text, gunzipped when `IsCompressed`.
    pub fn text(&self) -> String {
        let bytes = if self.data["IsCompressed"] == true {
            gunzip(&self.file)
        } else {
            self.file.clone()
        };
        String::from_utf8(bytes).unwrap()
    }

    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_string).collect()
    }
}

/// A tiny callback receiver on 127.0.0.1: stores every callback, and can
/// answer 500 to the next few.
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ReceiverState {
    got: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicU32>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = ReceiverState {
            got: Arc::default(),
            failing: Arc::default(),
        };
        let app = Router::new()
            .route("/results/{secret}", routing::post(receive))
            .layer(DefaultBodyLimit::disable())
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/results/s3cr3t", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            got: state.got,
            failing: state.failing,
            task,
        }
    }

    /// Answer 500 to the next `n` callbacks (after reading them).
    pub fn fail_next(&self, n: u32) {
        self.failing.store(n, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` callbacks were stored.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        wait_until(Duration::from_secs(30), || {
            self.got.lock().unwrap().len() >= n
        })
        .await;
        self.received()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(state): State<ReceiverState>, mut form: Multipart) -> StatusCode {
    let mut got = Received {
        data_raw: String::new(),
        data: Value::Null,
        file_name: None,
        content_type: None,
        file: Vec::new(),
        data_first: false,
        part_names: Vec::new(),
    };
    while let Some(field) = form.next_field().await.unwrap() {
        let name = field.name().unwrap_or_default().to_string();
        if got.part_names.is_empty() {
            got.data_first = name == "data";
        }
        got.part_names.push(name.clone());
        match name.as_str() {
            "data" => got.data_raw = field.text().await.unwrap(),
            "file" => {
                got.file_name = field.file_name().map(str::to_string);
                got.content_type = field.content_type().map(str::to_string);
                got.file = field.bytes().await.unwrap().to_vec();
            }
            _ => {
                field.bytes().await.unwrap();
            }
        }
    }
    let failing = state
        .failing
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    got.data = serde_json::from_str(&got.data_raw).unwrap();
    state.got.lock().unwrap().push(got);
    StatusCode::OK
}

/// The keys of a JSON text, in their order, nested (arrays: their first
/// element), so that a test compares field order, which `serde_json::Value`
/// does not keep.
#[derive(Debug, PartialEq)]
pub enum Shape {
    Map(Vec<(String, Shape)>),
    Seq(Option<Box<Shape>>),
    Scalar,
}

impl Shape {
    pub fn of(json: &str) -> Shape {
        serde_json::from_str(json).expect("JSON")
    }

    pub fn keys(&self) -> Vec<&str> {
        match self {
            Shape::Map(m) => m.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    pub fn get(&self, key: &str) -> &Shape {
        match self {
            Shape::Map(m) => m
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or(&Shape::Scalar),
            _ => &Shape::Scalar,
        }
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    keys.push((k, map.next_value::<Shape>()?));
                }
                Ok(Shape::Map(keys))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                let first = seq.next_element::<Shape>()?.map(Box::new);
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Shape::Seq(first))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_none<E>(self) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
        }
        d.deserialize_any(V)
    }
}

/// Peak resident memory of this process (VmHWM), in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}
