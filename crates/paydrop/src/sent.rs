//! The bytes paydrop sends for a payment file, and the identities they give
//! it.
//!
//! The provider's pattern page shows a row as a plain join of its fields,
//! `{cardNumber},{expiryDate},…`, with no header row and no quoting rule
//! (<https://developer.paywall.one/payment-orchestration-integration-document/system-data/bulk-payment-file-information;>
//! docs/providers/paywall.md §1.6). So paydrop never sends a user's bytes as
//! they are: each row goes out as its fields joined with the pattern's
//! delimiter and ended by `\n`; a header row and a byte-order mark are
//! dropped. The same payments therefore make the same bytes whether the file
//! had a header, CRLF line ends or a final newline, and the sha256 of these
//! bytes is the file's *content identity*, which the ledger never sends twice.
//!
//! The validator hashes these bytes while it checks the file
//! (`ContentHasher`); the upload makes them again from the file
//! ([`part_stream`]), hashes them as they leave, and fails the request body
//! before its end when they differ from what was checked: the provider then
//! never sees a complete request.

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use csv::ByteRecord;
use futures::Stream;
use sha2::{Digest, Sha256};

use crate::pattern::{Encoding, Pattern, Quoting};

/// Size of the chunks the upload hands to the request body, and of the
/// validator's hashing buffer.
const CHUNK: usize = 64 * 1024;

/// Whether a cell must be quoted to survive a join with `delimiter`.
pub(crate) fn needs_quotes(cell: &[u8], delimiter: u8) -> bool {
    cell.iter()
        .any(|&b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r')
}

/// Appends one row as sent: its fields joined with the pattern's delimiter,
/// then `\n`; field `skip` (if any) is left out. A field that needs quotes
/// is quoted only when the pattern declares RFC 4180 quoting (otherwise the
/// validator refused the row and it is never sent).
pub(crate) fn write_row(
    pattern: &Pattern,
    rec: &ByteRecord,
    skip: Option<usize>,
    out: &mut Vec<u8>,
) {
    let d = pattern.delimiter;
    let mut first = true;
    for (i, f) in rec.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        if !std::mem::take(&mut first) {
            out.push(d);
        }
        if pattern.quoting == Quoting::Rfc4180 && needs_quotes(f, d) {
            out.push(b'"');
            for &b in f {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(f);
        }
    }
    out.push(b'\n');
}

/// Seed of row fingerprints, so that they never equal a payment code's.
const ROW_SEED: u64 = 0x7061_7964_726f_7721;

/// The fingerprint under which the ledger remembers a row: that of its
/// payment code when the pattern has one (see
/// [`crate::ledger::code_fingerprint`]), otherwise that of the row as sent
/// without its line-number column, so that the same payment moved to
/// another line (a reordered or partial copy of a file) is still recognised.
pub(crate) fn row_identity(pattern: &Pattern, rec: &ByteRecord, code: Option<&str>) -> i64 {
    if let Some(code) = code {
        return crate::ledger::code_fingerprint(code);
    }
    let mut row = Vec::with_capacity(rec.as_slice().len() + rec.len());
    write_row(pattern, rec, pattern.line_number_column(), &mut row);
    xxhash_rust::xxh3::xxh3_64_with_seed(&row, ROW_SEED) as i64
}

/// The sha256 of the rows as sent: of the whole file and of each part.
pub(crate) struct ContentHasher {
    whole: Sha256,
    part: Sha256,
    buf: Vec<u8>,
}

impl ContentHasher {
    pub(crate) fn new() -> Self {
        ContentHasher {
            whole: Sha256::new(),
            part: Sha256::new(),
            buf: Vec::with_capacity(CHUNK + 4096),
        }
    }

    pub(crate) fn row(&mut self, pattern: &Pattern, rec: &ByteRecord) {
        write_row(pattern, rec, None, &mut self.buf);
        if self.buf.len() >= CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.whole.update(&self.buf);
        self.part.update(&self.buf);
        self.buf.clear();
    }

    /// The hex sha256 of the part that just ended; the next part starts.
    pub(crate) fn end_part(&mut self) -> String {
        self.flush();
        hex::encode(std::mem::take(&mut self.part).finalize())
    }

    /// The hex sha256 of every row.
    pub(crate) fn finish(mut self) -> String {
        self.flush();
        hex::encode(self.whole.finalize())
    }
}

/// Where one part's rows are in a validated file, and what they hashed to.
#[derive(Clone, Debug)]
pub struct PartSource {
    pub path: PathBuf,
    pub pattern: Pattern,
    /// Where the part's first row starts in the file.
    pub byte_start: u64,
    /// How many rows the part has.
    pub rows: u64,
    /// The hex sha256 of the part's rows as sent, from validation.
    pub content_sha256: String,
}

/// Why an upload was stopped before its end.
pub type Verdict = Arc<Mutex<Option<String>>>;

/// The part's rows as sent, read from the file on a blocking thread while
/// the request streams them, and hashed on the way. When the rows read do
/// not hash to [`PartSource::content_sha256`] (the file changed since it was
/// validated) or cannot be read, the stream ends with an error instead of
/// ending cleanly, so the request body is never completed (no final
/// multipart boundary, no end of the chunked body), and the reason is left
/// in the returned [`Verdict`].
pub fn part_stream(
    source: PartSource,
) -> (
    impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
    Verdict,
) {
    let verdict: Verdict = Arc::default();
    // A few chunks in flight: the file is read as fast as the request goes.
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let stop = verdict.clone();
    tokio::task::spawn_blocking(move || {
        let outcome = produce(&source, &tx);
        if let Err(reason) = outcome {
            *stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
            let _ = tx.blocking_send(Err(io::Error::other(reason)));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (Box::pin(stream), verdict)
}

/// Sends the part's rows through `tx`; `Err` carries why the upload must
/// not complete. A receiver that hung up (the request failed) ends it quietly.
fn produce(
    source: &PartSource,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
) -> Result<(), String> {
    let unreadable = |e: io::Error| {
        format!(
            "{} could not be read again for the upload: {e}",
            source.path.display()
        )
    };
    let mut file = File::open(&source.path).map_err(unreadable)?;
    file.seek(SeekFrom::Start(source.byte_start))
        .map_err(unreadable)?;
    let reader = BufReader::with_capacity(CHUNK, file);
    let mut rdr = crate::read::csv_reader(&source.pattern, reader);
    let mut rec = ByteRecord::new();
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    let mut rows = 0u64;
    let strip_bom = source.byte_start == 0 && source.pattern.encoding == Encoding::Utf8;
    while rows < source.rows {
        let more = rdr
            .read_byte_record(&mut rec)
            .map_err(|e| unreadable(io::Error::other(e)))?;
        if !more {
            break;
        }
        rows += 1;
        if rows == 1 && strip_bom {
            crate::read::strip_bom(&mut rec);
        }
        write_row(&source.pattern, &rec, None, &mut buf);
        if buf.len() >= CHUNK {
            hasher.update(&buf);
            let chunk = Bytes::from(std::mem::replace(
                &mut buf,
                Vec::with_capacity(CHUNK + 4096),
            ));
            if tx.blocking_send(Ok(chunk)).is_err() {
                return Ok(());
            }
        }
    }
    hasher.update(&buf);
    let got = hex::encode(hasher.finalize());
    if rows != source.rows || got != source.content_sha256 {
        return Err(format!(
            "{} changed after it was validated: its part of {} rows now reads as {rows} rows \
             with content sha256 {got}, not {}",
            source.path.display(),
            source.rows,
            source.content_sha256
        ));
    }
    // The last rows go out only now that they are known to be the ones
    // checked: until then the request cannot be complete.
    if !buf.is_empty() {
        let _ = tx.blocking_send(Ok(Bytes::from(buf)));
    }
    Ok(())
}
