//! Reads a callback's multipart form with every part bounded: `data` and any
//! other text field are capped (a few KiB), the `file` part is spooled to a
//! private temporary file and capped by the rows it can describe, and bytes
//! the multipart parser would buffer on its own (a preamble or part headers
//! that never end) are capped too. Exceeding a cap stops reading at once.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncWriteExt;

use super::Refusal;

/// What the parser may hold that it has not handed over as field data:
/// boundaries and part headers, plus one network read.
const PARSER_SLACK: u64 = 1 << 20;

/// Most parts in one callback (it has two).
const MAX_PARTS: usize = 16;

/// The caps of one form.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub field: usize,
    pub data: usize,
    /// Cap of a `file` part that comes before `data` says which part it is.
    pub file_before_data: u64,
}

/// A part worth keeping.
pub(crate) enum Part {
    /// The `data` field's bytes.
    Data(Vec<u8>),
    File(Spool),
}

/// The `file` part, on disk (removed when dropped).
pub(crate) struct Spool {
    pub file: tempfile::NamedTempFile,
    pub len: u64,
}

pub(crate) struct FormReader {
    multipart: multer::Multipart<'static>,
    limits: Limits,
    file_cap: u64,
    /// Explains a later cap refusal of the file part.
    file_cap_why: String,
    parts: usize,
    guard: Arc<Guard>,
    spool_dir: PathBuf,
}

impl FormReader {
    pub fn new(body: Body, boundary: String, limits: Limits, spool_dir: &Path) -> FormReader {
        let guard = Arc::new(Guard::default());
        let stream = Guarded {
            inner: body.into_data_stream(),
            guard: guard.clone(),
        };
        FormReader {
            multipart: multer::Multipart::new(stream, boundary),
            limits,
            file_cap: limits.file_before_data,
            file_cap_why: "the largest part paydrop sends".into(),
            parts: 0,
            guard,
            spool_dir: spool_dir.to_path_buf(),
        }
    }

    /// Caps a `file` part still to come.
    pub fn set_file_cap(&mut self, cap: u64, why: String) {
        self.file_cap = cap;
        self.file_cap_why = why;
    }

    /// The next `data` or `file` part; other parts are read (capped) and
    /// dropped.
    pub async fn next(&mut self) -> Result<Option<Part>, Refusal> {
        loop {
            let field = match self.multipart.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.broken(e)),
            };
            self.parts += 1;
            if self.parts > MAX_PARTS {
                return Err(Refusal::too_large(format!(
                    "more than {MAX_PARTS} parts in one callback"
                )));
            }
            let name = field.name().unwrap_or_default().to_ascii_lowercase();
            match name.as_str() {
                "file" => return self.spool(field).await.map(|s| Some(Part::File(s))),
                "data" => {
                    let cap = self.limits.data;
                    return self
                        .text(field, "data", cap)
                        .await
                        .map(|d| Some(Part::Data(d)));
                }
                _ => {
                    let shown: String = name.chars().take(40).collect();
                    self.text(field, &format!("field {shown:?}"), self.limits.field)
                        .await?;
                }
            }
        }
    }

    /// A multer error: a tripped guard is a form too large, anything else a
    /// malformed one.
    fn broken(&self, e: multer::Error) -> Refusal {
        if self.guard.tripped.load(Ordering::SeqCst) {
            Refusal::too_large(format!(
                "the form's boundaries and part headers exceed {PARSER_SLACK} bytes"
            ))
        } else {
            Refusal::bad_request(format!("malformed multipart form: {e}"))
        }
    }

    async fn chunk(
        &mut self,
        field: &mut multer::Field<'static>,
    ) -> Result<Option<Bytes>, Refusal> {
        match field.chunk().await {
            Ok(Some(c)) => {
                self.guard.handed_over(c.len() as u64);
                Ok(Some(c))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.broken(e)),
        }
    }

    async fn text(
        &mut self,
        mut field: multer::Field<'static>,
        what: &str,
        cap: usize,
    ) -> Result<Vec<u8>, Refusal> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk(&mut field).await? {
            if out.len() + c.len() > cap {
                return Err(Refusal::too_large(format!(
                    "{what} is longer than {cap} bytes"
                )));
            }
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    async fn spool(&mut self, mut field: multer::Field<'static>) -> Result<Spool, Refusal> {
        let internal =
            |e: std::io::Error| Refusal::internal(format!("spooling the result file: {e}"));
        // Private (0600) and removed when dropped: a result file may carry
        // card numbers, masked or not.
        let file = tempfile::Builder::new()
            .prefix(".paydrop-callback-")
            .tempfile_in(&self.spool_dir)
            .map_err(internal)?;
        let mut out =
            tokio::io::BufWriter::new(tokio::fs::File::from_std(file.reopen().map_err(internal)?));
        let mut len = 0u64;
        while let Some(c) = self.chunk(&mut field).await? {
            len += c.len() as u64;
            if len > self.file_cap {
                return Err(Refusal::too_large(format!(
                    "the result file is larger than {} bytes ({})",
                    self.file_cap, self.file_cap_why
                )));
            }
            out.write_all(&c).await.map_err(internal)?;
        }
        out.flush().await.map_err(internal)?;
        Ok(Spool { file, len })
    }
}

/// Counts the bytes read off the connection that the parser has not handed
/// over as field data; trips past [`PARSER_SLACK`].
#[derive(Default)]
struct Guard {
    held: AtomicU64,
    tripped: AtomicBool,
}

impl Guard {
    fn handed_over(&self, n: u64) {
        let _ = self
            .held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| {
                Some(h.saturating_sub(n))
            });
    }
}

struct Guarded<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let held = self
                    .guard
                    .held
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                if held + chunk.len() as u64 > PARSER_SLACK {
                    self.guard.tripped.store(true, Ordering::SeqCst);
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::FileTooLarge,
                        "multipart overhead too large",
                    ))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            other => other.map(|o| o.map(|r| r.map_err(std::io::Error::other))),
        }
    }
}
