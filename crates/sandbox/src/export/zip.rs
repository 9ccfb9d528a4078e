//! A zip archive written as it streams out, the way the export's blob is
//! packed: the Partner Center sample (`Utils.cs` `DownloadBlob`, "the export
//! zip file", opened with `ZipArchive`, "csv files in the downloaded zip
//! file") treats the downloaded blob as a zip of CSV files.
//!
//! Each entry is deflated with its sizes and CRC-32 in a data descriptor
//! after the data (general purpose flag bit 3), as a writer that cannot
//! seek back must do (APPNOTE.TXT 4.3.9); the central directory follows the
//! entries. No zip64: a sandbox file stays far below 4 GiB.

use std::io;
use std::sync::{Arc, Mutex};

use async_compression::tokio::bufread::DeflateEncoder;
use async_compression::Level;
use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use tokio_util::io::{ReaderStream, StreamReader};

/// What is known of an entry once its data has been sent.
#[derive(Clone, Debug, Default)]
struct Written {
    name: String,
    crc: u32,
    size: u64,
    compressed: u64,
    offset: u64,
}

#[derive(Default)]
struct Progress {
    crc: crc32fast::Hasher,
    size: u64,
    compressed: u64,
}

const LOCAL: u32 = 0x0403_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
/// Bit 3: sizes in a data descriptor; bit 11: the name is UTF-8.
const FLAGS: u16 = 0x0808;
const DEFLATED: u16 = 8;
const VERSION: u16 = 20;

fn local_header(name: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(30 + name.len());
    b.put_u32_le(LOCAL);
    b.put_u16_le(VERSION);
    b.put_u16_le(FLAGS);
    b.put_u16_le(DEFLATED);
    b.put_u32_le(0); // time and date: 1980-00-00
    b.put_u32_le(0); // CRC-32, in the descriptor
    b.put_u32_le(0); // compressed size, in the descriptor
    b.put_u32_le(0); // size, in the descriptor
    b.put_u16_le(name.len() as u16);
    b.put_u16_le(0);
    b.put_slice(name.as_bytes());
    b.freeze()
}

fn descriptor(w: &Written) -> Bytes {
    let mut b = BytesMut::with_capacity(16);
    b.put_u32_le(DESCRIPTOR);
    b.put_u32_le(w.crc);
    b.put_u32_le(w.compressed as u32);
    b.put_u32_le(w.size as u32);
    b.freeze()
}

fn central(entries: &[Written], start: u64) -> Bytes {
    let mut b = BytesMut::new();
    for w in entries {
        b.put_u32_le(CENTRAL);
        b.put_u16_le(VERSION);
        b.put_u16_le(VERSION);
        b.put_u16_le(FLAGS);
        b.put_u16_le(DEFLATED);
        b.put_u32_le(0);
        b.put_u32_le(w.crc);
        b.put_u32_le(w.compressed as u32);
        b.put_u32_le(w.size as u32);
        b.put_u16_le(w.name.len() as u16);
        b.put_u16_le(0); // extra
        b.put_u16_le(0); // comment
        b.put_u16_le(0); // disk
        b.put_u16_le(0); // internal attributes
        b.put_u32_le(0); // external attributes
        b.put_u32_le(w.offset as u32);
        b.put_slice(w.name.as_bytes());
    }
    let size = b.len() as u64;
    b.put_u32_le(END);
    b.put_u16_le(0);
    b.put_u16_le(0);
    b.put_u16_le(entries.len() as u16);
    b.put_u16_le(entries.len() as u16);
    b.put_u32_le(size as u32);
    b.put_u32_le(start as u32);
    b.put_u16_le(0);
    b.freeze()
}

/// A zip of `entries` (name, content), each content streamed through
/// deflate as the archive is sent.
pub fn archive(
    entries: Vec<(String, BoxStream<'static, io::Result<Bytes>>)>,
) -> BoxStream<'static, io::Result<Bytes>> {
    let written: Arc<Mutex<Vec<Written>>> = Arc::default();
    let offset = Arc::new(Mutex::new(0u64));
    let mut out: BoxStream<'static, io::Result<Bytes>> = stream::empty().boxed();
    for (name, content) in entries {
        let progress: Arc<Mutex<Progress>> = Arc::default();
        let header = {
            let (offset, written, name) = (offset.clone(), written.clone(), name.clone());
            stream::once(async move {
                let h = local_header(&name);
                let mut at = offset.lock().expect("not poisoned");
                written.lock().expect("not poisoned").push(Written {
                    name,
                    offset: *at,
                    ..Written::default()
                });
                *at += h.len() as u64;
                Ok(h)
            })
        };
        let counted = {
            let progress = progress.clone();
            content.map(move |chunk| {
                let chunk = chunk?;
                let mut p = progress.lock().expect("not poisoned");
                p.crc.update(&chunk);
                p.size += chunk.len() as u64;
                Ok::<_, io::Error>(chunk)
            })
        };
        let deflated = {
            let (progress, offset) = (progress.clone(), offset.clone());
            ReaderStream::new(DeflateEncoder::with_quality(
                StreamReader::new(counted),
                Level::Fastest,
            ))
            .map(move |chunk| {
                let chunk = chunk?;
                progress.lock().expect("not poisoned").compressed += chunk.len() as u64;
                *offset.lock().expect("not poisoned") += chunk.len() as u64;
                Ok(chunk)
            })
        };
        let tail = {
            let (written, offset) = (written.clone(), offset.clone());
            stream::once(async move {
                let p = std::mem::take(&mut *progress.lock().expect("not poisoned"));
                let mut all = written.lock().expect("not poisoned");
                let w = all.last_mut().expect("the header came first");
                w.crc = p.crc.finalize();
                w.size = p.size;
                w.compressed = p.compressed;
                let d = descriptor(w);
                *offset.lock().expect("not poisoned") += d.len() as u64;
                Ok(d)
            })
        };
        out = out.chain(header).chain(deflated).chain(tail).boxed();
    }
    let end = stream::once(async move {
        let start = *offset.lock().expect("not poisoned");
        Ok(central(&written.lock().expect("not poisoned"), start))
    });
    out.chain(end).boxed()
}
