//! A tiny hand-written stand-in for the provider, for the tests that need
//! answers the sandbox does not give: scripted bulk inquiry answers
//! (docs/providers/paywall.md §6.5), a 503, an answer that never comes, a
//! request held half-way while the test changes the file, a provider that
//! reads RFC 4180 quoting. It is written from the
//! provider's pages, not from paydrop's code: its JSON is typed out here,
//! and it reads the multipart body with axum's own reader.
//!
//! Each `startdirect` request takes the next scripted [`Start`]; each
//! inquiry the next scripted answer. Every request is recorded as [`Seen`].
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Multipart, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Notify;

pub const STARTDIRECT: &str = "/api/paywall/payment/bulk/file/startdirect";
pub const SUMMARY: &str = "/api/paywall/payment/bulk/payment/query/summary";
pub const QUERY: &str = "/api/paywall/payment/bulk/payment/query";

/// How the stub answers one `startdirect` request.
#[derive(Clone, Debug)]
pub enum Start {
    /// Reads the whole request, then answers success with this BulkPaymentId.
    Accept(i64),
    /// Reads the whole request, then answers with this status and body.
    Answer(u16, &'static str),
    /// Reads the whole request, then answers only after a minute (the
    /// client times out first: bytes went out, no answer came).
    Hang,
    /// Reads the first piece of the body, waits for [`Stub::release`], then
    /// reads the rest and accepts with this BulkPaymentId.
    Gated(i64),
}

/// One request as the stub saw it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub query: Option<String>,
    /// Multipart field names in order.
    pub fields: Vec<String>,
    /// Text fields.
    pub text: Vec<(String, String)>,
    /// The `File` part's file name, content type and bytes (decompressed
    /// when its name says `.gz` or `.br`).
    pub file_name: Option<String>,
    pub file_type: Option<String>,
    pub file: Vec<u8>,
    /// The body ended with the final multipart boundary.
    pub complete: bool,
}

impl Seen {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.text
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Script {
    starts: Mutex<VecDeque<Start>>,
    inquiries: Mutex<VecDeque<(u16, String)>>,
    seen: Mutex<Vec<Seen>>,
    gate: Notify,
    gated: Notify,
}

/// A running stub on 127.0.0.1.
pub struct Stub {
    pub addr: SocketAddr,
    script: Arc<Script>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Stub {
    pub async fn start(starts: Vec<Start>, inquiries: Vec<(u16, &str)>) -> Stub {
        let script = Arc::new(Script {
            starts: Mutex::new(starts.into()),
            inquiries: Mutex::new(
                inquiries
                    .into_iter()
                    .map(|(s, b)| (s, b.to_string()))
                    .collect(),
            ),
            ..Script::default()
        });
        let app = Router::new()
            .route(STARTDIRECT, post(startdirect))
            .route(SUMMARY, get(inquiry))
            .route(QUERY, get(inquiry))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Stub {
            addr,
            script,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }

    /// The `startdirect` requests so far.
    pub fn starts(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path == STARTDIRECT)
            .collect()
    }

    /// Resolves once a [`Start::Gated`] request is held.
    pub async fn held(&self) {
        self.script.gated.notified().await
    }

    /// Lets a held [`Start::Gated`] request go on.
    pub fn release(&self) {
        self.script.gate.notify_one();
    }
}

async fn inquiry(
    State(script): State<Arc<Script>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    script.seen.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        headers,
        query,
        ..Seen::default()
    });
    let next = script.inquiries.lock().unwrap().pop_front();
    match next {
        Some((status, body)) => answer(status, body),
        None => answer(
            500,
            r#"{"ErrorCode":500,"Result":false,"Message":"no script"}"#.into(),
        ),
    }
}

fn answer(status: u16, body: String) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

async fn startdirect(
    State(script): State<Arc<Script>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    mut form: Multipart,
) -> Response {
    let start = script
        .starts
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Start::Answer(500, r#"{"ErrorCode":500,"Result":false}"#));
    let mut seen = Seen {
        path: STARTDIRECT.into(),
        headers,
        query,
        ..Seen::default()
    };
    let complete = read_form(&script, &start, &mut form, &mut seen).await;
    seen.complete = complete;
    if let Some(name) = seen.file_name.clone() {
        seen.file = decode(&name, std::mem::take(&mut seen.file)).await;
    }
    let code = seen
        .text("MerchantUniqueCode")
        .unwrap_or_default()
        .to_string();
    script.seen.lock().unwrap().push(seen);
    if !complete {
        return answer(
            400,
            r#"{"ErrorCode":400,"Result":false,"Message":"incomplete"}"#.into(),
        );
    }
    match start {
        Start::Accept(id) | Start::Gated(id) => answer(
            200,
            format!(
                r#"{{"ErrorCodeType":1,"ErrorMessage":null,"ErrorCode":0,"Result":true,"Message":"File-based bulk payment created and enqueued","Body":{{"BulkPaymentId":{id},"MerchantUniqueCode":"{code}","ProcessedRecords":0,"TotalRecords":1,"IsEnqueued":true,"Message":"enqueued"}}}}"#
            ),
        ),
        Start::Answer(status, body) => answer(status, body.to_string()),
        Start::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            answer(200, "{}".into())
        }
    }
}

/// Reads every field; false when the body broke off before its end.
async fn read_form(script: &Script, start: &Start, form: &mut Multipart, seen: &mut Seen) -> bool {
    loop {
        let mut field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return true,
            Err(_) => return false,
        };
        let name = field.name().unwrap_or_default().to_string();
        seen.fields.push(name.clone());
        if name != "File" {
            match field.text().await {
                Ok(v) => seen.text.push((name, v)),
                Err(_) => return false,
            }
            continue;
        }
        seen.file_name = field.file_name().map(str::to_string);
        seen.file_type = field.content_type().map(str::to_string);
        let mut first = true;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => seen.file.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(_) => return false,
            }
            if std::mem::take(&mut first) && matches!(start, Start::Gated(_)) {
                script.gated.notify_one();
                script.gate.notified().await;
            }
        }
    }
}

async fn decode(name: &str, bytes: Vec<u8>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .expect("gzip");
    } else if name.ends_with(".br") {
        async_compression::tokio::bufread::BrotliDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .await
            .expect("brotli");
    } else {
        out = bytes;
    }
    out
}
