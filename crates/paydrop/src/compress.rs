//! Streaming compression of upload bodies: GZip or Brotli at an explicit level.
//!
//! Levels are always explicit because brotli's library default (quality 11)
//! runs at about 1 MB/s. The defaults below come from the measured table in
//! the README (`cargo bench --bench submit`): they are the fastest levels
//! whose ratio is within a few percent of the slow ones.

mod parallel;

use std::fmt;
use std::io;
use std::num::NonZeroUsize;
use std::str::FromStr;

use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder};
use async_compression::Level;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, BufReader};
use tokio_util::io::{ReaderStream, StreamReader};

/// Chunk size of compressed output handed to the HTTP body.
const CHUNK: usize = 64 * 1024;

/// A compression codec for request bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Brotli,
}

impl Codec {
    /// The `Content-Encoding` token, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Codec::None => None,
            Codec::Gzip => Some("gzip"),
            Codec::Brotli => Some("br"),
        }
    }

    /// File-name suffix for a compressed file part.
    pub fn suffix(self) -> &'static str {
        match self {
            Codec::None => "",
            Codec::Gzip => ".gz",
            Codec::Brotli => ".br",
        }
    }

    /// The level used when none is given (see the README's table).
    pub fn default_level(self) -> u32 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Brotli => 1,
        }
    }

    /// Levels the codec accepts.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Codec::None => 0..=0,
            Codec::Gzip => 1..=9,
            Codec::Brotli => 0..=11,
        }
    }
}

impl FromStr for Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "identity" => Ok(Codec::None),
            "gzip" | "gz" => Ok(Codec::Gzip),
            "br" | "brotli" => Ok(Codec::Brotli),
            other => Err(format!(
                "unknown compression '{other}': use gzip, br or none"
            )),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Brotli => "br",
        })
    }
}

/// A codec with its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    pub codec: Codec,
    pub level: u32,
}

impl Compression {
    /// `codec` at `level`, or at its default level; an out-of-range level is
    /// an error naming the valid range.
    pub fn new(codec: Codec, level: Option<u32>) -> Result<Self, String> {
        let level = level.unwrap_or(codec.default_level());
        if !codec.levels().contains(&level) {
            let r = codec.levels();
            return Err(format!(
                "{codec} level {level} is out of range {}–{}",
                r.start(),
                r.end()
            ));
        }
        Ok(Compression { codec, level })
    }

    pub fn none() -> Self {
        Compression {
            codec: Codec::None,
            level: 0,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.codec {
            Codec::None => write!(f, "none"),
            c => write!(f, "{c} level {}", self.level),
        }
    }
}

/// A compressed stream of `reader`'s bytes, produced as the reader is read:
/// nothing is buffered beyond the codec's window and a few blocks.
///
/// GZip uses every core the machine has (see `parallel`); one core keeps
/// async-compression's single stream.
pub fn compress_reader<R>(
    reader: R,
    compression: Compression,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    if compression.codec == Codec::Gzip && cores > 1 {
        return parallel::gzip(reader, compression.level, cores).boxed();
    }
    let reader = BufReader::with_capacity(CHUNK, reader);
    let level = Level::Precise(compression.level as i32);
    let boxed: Box<dyn AsyncRead + Send + Unpin> = match compression.codec {
        Codec::None => Box::new(reader),
        Codec::Gzip => Box::new(GzipEncoder::with_quality(reader, level)),
        Codec::Brotli => Box::new(BrotliEncoder::with_quality(reader, level)),
    };
    ReaderStream::with_capacity(boxed, CHUNK).boxed()
}

/// Compresses a stream of bytes (e.g. a whole multipart body).
pub fn compress_stream<S, E>(
    stream: S,
    compression: Compression,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    compress_reader(
        StreamReader::new(stream.map_err(io::Error::other)),
        compression,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder};
    use futures::StreamExt;
    use tokio::io::AsyncReadExt;

    async fn roundtrip(codec: Codec) {
        let data: Vec<u8> = (0..400_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let c = Compression::new(codec, None).unwrap();
        let compressed: Vec<u8> = compress_reader(std::io::Cursor::new(data.clone()), c)
            .map(|b| b.unwrap().to_vec())
            .concat()
            .await;
        let mut out = Vec::new();
        match codec {
            Codec::None => out = compressed,
            Codec::Gzip => {
                GzipDecoder::new(&compressed[..])
                    .read_to_end(&mut out)
                    .await
                    .unwrap();
            }
            Codec::Brotli => {
                BrotliDecoder::new(&compressed[..])
                    .read_to_end(&mut out)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(out, data, "{codec}");
    }

    #[tokio::test]
    async fn round_trips_every_codec() {
        for codec in [Codec::None, Codec::Gzip, Codec::Brotli] {
            roundtrip(codec).await;
        }
    }

    /// Output must leave the encoder before the input ends, or an upload is
    /// a buffer in disguise (PITFALLS.md: some versions never flushed).
    #[tokio::test]
    async fn output_flows_before_input_ends() {
        for codec in [Codec::Gzip, Codec::Brotli] {
            let (mut tx, rx) = tokio::io::duplex(64 * 1024);
            let mut stream = Box::pin(compress_reader(rx, Compression::new(codec, None).unwrap()));
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                // Incompressible-ish data so the encoder must emit output.
                let mut x = 0x9E3779B97F4A7C15u64;
                for _ in 0..64 {
                    let chunk: Vec<u8> = (0..16 * 1024)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            x as u8
                        })
                        .collect();
                    tx.write_all(&chunk).await.unwrap();
                }
                // Dropping `tx` ends the input.
            });
            // A deadlock guard, not a timing assertion: an encoder that holds
            // output until EOF never yields while the writer is blocked.
            let first = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
                .await
                .expect("encoder produced no output before its input ended")
                .unwrap()
                .unwrap();
            assert!(!first.is_empty(), "{codec}");
            // 1 MiB cannot fit in the 64 KiB pipe and the reader's buffer:
            // output flowed while the input was still being written.
            assert!(
                !writer.is_finished(),
                "{codec}: the whole input was consumed first"
            );
            let mut rest = 0;
            while let Some(chunk) = stream.next().await {
                rest += chunk.unwrap().len();
            }
            writer.await.unwrap();
            assert!(rest > 0, "{codec}: trailer written");
        }
    }

    #[test]
    fn levels_are_checked() {
        assert!(Compression::new(Codec::Gzip, Some(10)).is_err());
        assert_eq!(Compression::new(Codec::Brotli, None).unwrap().level, 1);
        assert_eq!("br".parse::<Codec>().unwrap(), Codec::Brotli);
    }
}
