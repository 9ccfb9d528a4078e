//! The bytes under the records: [`Input`] wraps any reader and, as the CSV
//! parser pulls bytes through it,
//! hashes them (sha256 of the exact file bytes, for the report and the ledger),
//! counts them (for progress), refuses files that are obviously not delimited
//! text (gzip, zip, UTF-16) and bounds the length of a line so that a file
//! without line breaks cannot make the parser buffer it whole. Nothing is kept
//! but a 32-byte hash state.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Why a file cannot be read as delimited text at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error(
        "the file is {0}-compressed, not delimited text; paydrop compresses on its own: \
         pass the uncompressed file"
    )]
    Compressed(&'static str),
    #[error("the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8")]
    Utf16,
    #[error(
        "line {line} is longer than {limit} bytes; this is not a payment file \
         (or raise --max-line-bytes)"
    )]
    LineTooLong { line: u64, limit: usize },
    #[error(
        "the quote opened on line {line} is not closed within {limit} bytes: close it (a quote \
         inside a quoted value is written twice, \"\")"
    )]
    OpenQuote { line: u64, limit: usize },
}

/// Counters shared between an [`Input`] and whoever reports on it.
#[derive(Debug, Default)]
pub struct Tally {
    bytes: AtomicU64,
    sha256: Mutex<Option<[u8; 32]>>,
}

impl Tally {
    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Hex sha256 of all bytes, once the end of the input was reached.
    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256.lock().unwrap().map(hex::encode)
    }
}

/// A reader that hashes, counts and sanity-checks what passes through it.
pub struct Input<R> {
    inner: R,
    hasher: Hashing,
    tally: Arc<Tally>,
    first: bool,
    /// Newlines seen so far, to name the line of an over-long one.
    lines: u64,
    /// Bytes since the last newline.
    run: usize,
    max_line: usize,
    /// Inside a quoted value: since which line, and how many bytes so far.
    /// An unclosed quote would make the parser buffer the rest of the file.
    quote: Option<(u64, usize)>,
}

impl<R: Read> Input<R> {
    pub fn new(inner: R, max_line_bytes: usize) -> (Self, Arc<Tally>) {
        let tally = Arc::new(Tally::default());
        let input = Input {
            inner,
            hasher: Hashing::Inline(Sha256::new(), 0),
            tally: tally.clone(),
            first: true,
            lines: 0,
            run: 0,
            max_line: max_line_bytes,
            quote: None,
        };
        (input, tally)
    }

    fn check_chunk(&mut self, chunk: &[u8]) -> Result<(), InputError> {
        if std::mem::take(&mut self.first) {
            if chunk.starts_with(&[0x1f, 0x8b]) {
                return Err(InputError::Compressed("gzip"));
            }
            if chunk.starts_with(b"PK\x03\x04") {
                return Err(InputError::Compressed("zip (or XLSX)"));
            }
            if chunk.starts_with(b"BZh") && chunk.get(3).is_some_and(u8::is_ascii_digit) {
                return Err(InputError::Compressed("bzip2"));
            }
            if chunk.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
                return Err(InputError::Compressed("xz"));
            }
            if chunk.starts_with(&[0xff, 0xfe]) || chunk.starts_with(&[0xfe, 0xff]) {
                return Err(InputError::Utf16);
            }
        }
        self.track_quotes(chunk)?;
        // A line longer than the limit must cross a chunk end unless the chunk
        // itself is longer than the limit; only then is every gap measured.
        // `\r` ends a line too (old Mac exports); lines are counted by `\n`.
        let mut start = 0;
        if chunk.len() > self.max_line {
            for nl in memchr::memchr2_iter(b'\n', b'\r', chunk) {
                if self.run + (nl - start) > self.max_line {
                    return Err(self.too_long());
                }
                self.lines += u64::from(chunk[nl] == b'\n');
                self.run = 0;
                start = nl + 1;
            }
            self.run += chunk.len() - start;
        } else {
            match memchr::memchr2(b'\n', b'\r', chunk) {
                None => self.run += chunk.len(),
                Some(first) => {
                    if self.run + first > self.max_line {
                        return Err(self.too_long());
                    }
                    self.lines += memchr::memchr_iter(b'\n', chunk).count() as u64;
                    let last = memchr::memrchr2(b'\n', b'\r', chunk).unwrap_or(first);
                    self.run = chunk.len() - last - 1;
                }
            }
        }
        if self.run > self.max_line {
            return Err(self.too_long());
        }
        Ok(())
    }

    /// Follows quote state (a doubled quote toggles twice, so it nets out)
    /// and refuses a quoted value longer than the line limit.
    fn track_quotes(&mut self, chunk: &[u8]) -> Result<(), InputError> {
        let mut last = 0;
        let mut line = self.lines + 1;
        for q in memchr::memchr_iter(b'"', chunk) {
            let segment = &chunk[last..q];
            line += memchr::memchr_iter(b'\n', segment).count() as u64;
            match self.quote.take() {
                Some((opened, len)) if len + segment.len() > self.max_line => {
                    return Err(self.open_quote(opened));
                }
                Some(_) => {}
                None => self.quote = Some((line, 0)),
            }
            last = q;
        }
        if let Some((opened, len)) = self.quote.as_mut() {
            *len += chunk.len() - last;
            if *len > self.max_line {
                let opened = *opened;
                return Err(self.open_quote(opened));
            }
        }
        Ok(())
    }

    fn open_quote(&self, line: u64) -> InputError {
        InputError::OpenQuote {
            line,
            limit: self.max_line,
        }
    }

    fn too_long(&self) -> InputError {
        InputError::LineTooLong {
            line: self.lines + 1,
            limit: self.max_line,
        }
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if let Some(digest) = self.hasher.finish()? {
                *self.tally.sha256.lock().unwrap() = Some(digest);
            }
            return Ok(0);
        }
        let chunk = &buf[..n];
        self.hasher.update(chunk)?;
        self.tally.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.check_chunk(chunk)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }
}

/// Where the sha256 of the input is computed.
///
/// Hashing costs about as much as a tenth of validating, so past the first
/// MiB the hasher moves to a thread of its own, fed copies of the chunks
/// through a bounded channel (copying is ~20× cheaper than hashing); the
/// emptied buffers come back for reuse. If no thread can be started the
/// hashing simply stays inline.
enum Hashing {
    /// On the reading thread, with the bytes hashed so far.
    Inline(Sha256, u64),
    Thread {
        /// Bytes gathered for the next send (one wake-up per batch).
        batch: Vec<u8>,
        chunks: SyncSender<Vec<u8>>,
        spare: Receiver<Vec<u8>>,
        done: JoinHandle<Sha256>,
    },
    /// The digest was taken (end of input reached).
    Finished,
}

/// Bytes hashed inline before a hashing thread is worth starting.
const HASH_THREAD_AFTER: u64 = 1 << 20;

/// Bytes sent to the hashing thread at a time, and batches in flight: a few
/// MiB at most, and a wake-up per 512 KiB rather than per 64 KiB read.
const HASH_BATCH: usize = 512 << 10;
const HASH_QUEUE: usize = 4;

impl Hashing {
    fn update(&mut self, chunk: &[u8]) -> io::Result<()> {
        match self {
            Hashing::Inline(h, n) => {
                h.update(chunk);
                *n += chunk.len() as u64;
                if *n >= HASH_THREAD_AFTER {
                    self.start_thread();
                }
                Ok(())
            }
            Hashing::Thread {
                batch,
                chunks,
                spare,
                ..
            } => {
                batch.extend_from_slice(chunk);
                if batch.len() < HASH_BATCH {
                    return Ok(());
                }
                let mut next = spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(HASH_BATCH + (64 << 10)));
                next.clear();
                chunks
                    .send(std::mem::replace(batch, next))
                    .map_err(|_| stopped())
            }
            Hashing::Finished => Ok(()),
        }
    }

    fn start_thread(&mut self) {
        let Hashing::Inline(h, _) = std::mem::replace(self, Hashing::Finished) else {
            return;
        };
        let keep = h.clone();
        let (chunks, rx) = sync_channel::<Vec<u8>>(HASH_QUEUE);
        let (back, spare) = sync_channel::<Vec<u8>>(HASH_QUEUE + 2);
        let spawned = std::thread::Builder::new()
            .name("paydrop-sha256".into())
            .spawn(move || {
                let mut h = h;
                for chunk in rx {
                    h.update(&chunk);
                    let _ = back.try_send(chunk);
                }
                h
            });
        *self = match spawned {
            Ok(done) => Hashing::Thread {
                batch: Vec::with_capacity(HASH_BATCH + (64 << 10)),
                chunks,
                spare,
                done,
            },
            // No thread to be had: go on inline, and try again a MiB later.
            Err(_) => Hashing::Inline(keep, 0),
        };
    }

    /// The digest of everything hashed; `None` if it was already taken.
    fn finish(&mut self) -> io::Result<Option<[u8; 32]>> {
        match std::mem::replace(self, Hashing::Finished) {
            Hashing::Inline(h, _) => Ok(Some(h.finalize().into())),
            Hashing::Thread {
                batch,
                chunks,
                done,
                ..
            } => {
                if !batch.is_empty() {
                    chunks.send(batch).map_err(|_| stopped())?;
                }
                drop(chunks);
                let h = done.join().map_err(|_| stopped())?;
                Ok(Some(h.finalize().into()))
            }
            Hashing::Finished => Ok(None),
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the sha256 thread stopped")
}

/// The [`InputError`] inside an I/O error raised by [`Input`], if any.
pub fn input_error(e: &io::Error) -> Option<&InputError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<InputError>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], max_line: usize) -> Result<Arc<Tally>, InputError> {
        let (mut input, tally) = Input::new(bytes, max_line);
        let mut sink = Vec::new();
        input
            .read_to_end(&mut sink)
            .map_err(|e| input_error(&e).cloned().unwrap())?;
        assert_eq!(sink, bytes);
        Ok(tally)
    }

    #[test]
    fn hashes_and_counts() {
        let t = read_all(b"abc", 10).unwrap();
        assert_eq!(t.bytes(), 3);
        assert_eq!(
            t.sha256_hex().unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn refuses_gzip_and_utf16() {
        assert_eq!(
            read_all(&[0x1f, 0x8b, 8, 0], 10).unwrap_err(),
            InputError::Compressed("gzip")
        );
        assert_eq!(
            read_all(&[0xff, 0xfe, b'a', 0], 10).unwrap_err(),
            InputError::Utf16
        );
    }

    #[test]
    fn an_unclosed_quote_cannot_swallow_the_file() {
        let mut file = b"a,b\nc,\"never closed\n".to_vec();
        file.extend(std::iter::repeat_n(b"x,y\n".as_slice(), 10).flatten());
        assert_eq!(
            read_all(&file, 20).unwrap_err(),
            InputError::OpenQuote { line: 2, limit: 20 }
        );
        // Closed quotes, doubled quotes and quoted line breaks are fine.
        assert!(read_all(b"a,\"q \"\"x\"\" \n z\",b\nc,d\n", 20).is_ok());
    }

    #[test]
    fn a_carriage_return_ends_a_line() {
        assert!(read_all(&b"0123456789\r".repeat(10), 10).is_ok());
    }

    #[test]
    fn names_the_over_long_line() {
        let e = read_all(b"short\nshort\nthis one is too long\nok\n", 10).unwrap_err();
        assert_eq!(e, InputError::LineTooLong { line: 3, limit: 10 });
        assert!(read_all(b"0123456789\n0123456789", 10).is_ok());
    }
}
