//! The startdirect body as it streams in: decoded when the whole body
//! carries `Content-Encoding`, parsed as multipart, the `File` part decoded
//! again when it is compressed itself and spooled to a temporary file while
//! its sha256 is computed. Only the small text fields are kept in memory.
//!
//! The startdirect page recommends GZip or Brotli
//! (https://developer.paywall.one/payment-orchestration-integration-document/payment-service/18.-batch-processing-method/1.-payment/3.-file);
//! its example compresses the `File` part (`application/gzip`, `*.gz`).
//! Whole-body encoding is not documented; the sandbox accepts both and
//! records which it got.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder};
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::io::{ReaderStream, StreamReader};
use tracing::warn;

use super::store::Codec;
use crate::envelope::Refusal;

/// The form field of the payment file (startdirect page).
pub(crate) const FILE_FIELD: &str = "File";

/// Longest text field accepted.
const TEXT_FIELD_LIMIT: u64 = 64 * 1024;

/// The `File` part, stored decoded.
pub(crate) struct Upload {
    pub(crate) path: TempPath,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
    pub(crate) encoding: Option<Codec>,
    pub(crate) file_name: Option<String>,
    pub(crate) content_type: Option<String>,
}

/// The fields of one request, as received.
#[derive(Default)]
pub(crate) struct Form {
    pub(crate) file: Option<Upload>,
    pub(crate) text: HashMap<String, String>,
}

/// The whole body's `Content-Encoding`: gzip, br, or none; 415 otherwise.
pub(crate) fn body_codec(headers: &HeaderMap) -> Result<Option<Codec>, Refusal> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("?").trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(None),
        "gzip" | "x-gzip" => Ok(Some(Codec::Gzip)),
        "br" => Ok(Some(Codec::Brotli)),
        other => Err(Refusal::http(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding '{other}' is not supported; use gzip or br"),
        )),
    }
}

/// The multipart boundary; 400 when the body is not `multipart/form-data`.
pub(crate) fn boundary(headers: &HeaderMap) -> Result<String, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    multer::parse_boundary(content_type).map_err(|_| {
        Refusal::http(
            StatusCode::BAD_REQUEST,
            format!(
                "the body must be multipart/form-data with a boundary, not '{content_type}' \
                 (the File model receives its data via form-data)"
            ),
        )
    })
}

/// Decodes `input` on the fly.
fn decode<'a, R>(codec: Option<Codec>, input: R) -> Box<dyn AsyncRead + Send + Unpin + 'a>
where
    R: AsyncBufRead + Send + Unpin + 'a,
{
    match codec {
        None => Box::new(input),
        Some(Codec::Gzip) => {
            let mut d = GzipDecoder::new(input);
            // Parallel compressors write several members.
            d.multiple_members(true);
            Box::new(d)
        }
        Some(Codec::Brotli) => Box::new(BrotliDecoder::new(input)),
    }
}

/// An error with its causes, for messages (multer hides the cause of
/// "failed to read stream", which is where decoding errors are).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn bad_request(message: String) -> Refusal {
    Refusal::http(StatusCode::BAD_REQUEST, message)
}

/// Reads the whole multipart body into `dir` (the file) and memory (the
/// text fields). After a refusal the remaining parts are only skipped, so
/// that the client has sent everything before it gets the answer.
pub(crate) async fn read_form(
    dir: &Path,
    body: Body,
    codec: Option<Codec>,
    boundary: String,
) -> Result<Form, Refusal> {
    let raw = StreamReader::new(body.into_data_stream().map_err(io::Error::other));
    let decoded: BoxStream<'static, io::Result<Bytes>> =
        ReaderStream::with_capacity(decode(codec, raw), 64 * 1024).boxed();
    let limits = multer::SizeLimit::new()
        .per_field(TEXT_FIELD_LIMIT)
        .for_field(FILE_FIELD, u64::MAX);
    let mut multipart = multer::Multipart::with_constraints(
        decoded,
        boundary,
        multer::Constraints::new().size_limit(limits),
    );
    let garbled = |e: multer::Error| bad_request(format!("bad multipart body: {}", chain(&e)));
    let mut form = Form::default();
    let mut refusal = None;
    while let Some(part) = multipart.next_field().await.map_err(garbled)? {
        if refusal.is_some() {
            continue;
        }
        let name = part.name().unwrap_or_default().to_string();
        let twice = || bad_request(format!("the form field {name} is given more than once"));
        if name == FILE_FIELD {
            match spool(dir, part).await {
                Ok(_) if form.file.is_some() => refusal = Some(twice()),
                Ok(upload) => form.file = Some(upload),
                Err(e) => refusal = Some(e),
            }
        } else if part.file_name().is_some() {
            // A file under another name is not the payment file; skipped.
            continue;
        } else {
            let value = part.text().await.map_err(garbled)?;
            if form.text.insert(name.clone(), value).is_some() {
                refusal = Some(twice());
            }
        }
    }
    refusal.map_or(Ok(form), Err)
}

/// Streams the `File` part to a temporary file in `dir`, decoding it when
/// it is compressed, and hashes the decoded bytes on the way.
async fn spool(dir: &Path, mut part: multer::Field<'static>) -> Result<Upload, Refusal> {
    let unreadable = |what: &str, e: &(dyn std::error::Error + 'static)| {
        bad_request(format!("the File part could not be {what}: {}", chain(e)))
    };
    // The first bytes tell gzip (and, by elimination, brotli) apart even
    // without a name or a type.
    let mut head = BytesMut::new();
    while head.len() < 4 {
        match part.chunk().await.map_err(|e| unreadable("read", &e))? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    let file_name = part.file_name().map(str::to_string);
    let content_type = part.content_type().map(|m| m.to_string());
    let encoding = part_codec(&part, &head);
    let rest = part.map_err(io::Error::other);
    let input = StreamReader::new(stream::iter([Ok(head.freeze())]).chain(rest));
    let mut decoded = decode(encoding, input);
    let what = match encoding {
        Some(c) => format!("decoded as {}", c.name()),
        None => "read".into(),
    };

    let (file, path) = tempfile::Builder::new()
        .prefix("upload-")
        .suffix(".txt")
        .tempfile_in(dir)
        .map_err(|e| server_error("cannot create a temporary file", &e))?
        .into_parts();
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = decoded
            .read(&mut buf)
            .await
            .map_err(|e| unreadable(&what, &e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
        out.write_all(&buf[..n])
            .await
            .map_err(|e| server_error("cannot write the upload", &e))?;
    }
    out.flush()
        .await
        .map_err(|e| server_error("cannot write the upload", &e))?;
    Ok(Upload {
        path,
        bytes,
        sha256: hex::encode(hasher.finalize()),
        encoding,
        file_name,
        content_type,
    })
}

fn server_error(what: &str, e: &io::Error) -> Refusal {
    warn!(error = %e, "{what}");
    Refusal::internal(format!("{what}: {e}"))
}

/// How the `File` part is compressed: by its own `Content-Encoding`, its
/// type, its name, gzip's magic bytes, and, as brotli has no magic number
/// (RFC 7932), by elimination: a part that starts with neither text nor
/// gzip is read as brotli.
fn part_codec(part: &multer::Field<'_>, head: &[u8]) -> Option<Codec> {
    let name = part.file_name().unwrap_or_default().to_ascii_lowercase();
    let mime = part
        .content_type()
        .map(|m| m.essence_str().to_ascii_lowercase())
        .unwrap_or_default();
    let encoding = part
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text_start = |b: u8| b.is_ascii_graphic() || b" \t\r\n\xef".contains(&b);
    if encoding == "gzip"
        || matches!(mime.as_str(), "application/gzip" | "application/x-gzip")
        || name.ends_with(".gz")
        || head.starts_with(&[0x1f, 0x8b])
    {
        Some(Codec::Gzip)
    } else if encoding == "br"
        || matches!(mime.as_str(), "application/x-brotli" | "application/brotli")
        || name.ends_with(".br")
        || head.first().is_some_and(|&b| !text_start(b))
    {
        Some(Codec::Brotli)
    } else {
        None
    }
}
