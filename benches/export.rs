//! Payout export throughput, in MB/s of the (uncompressed) export file.
//!
//! - `parse/csv_sync_bare`: the `csv` crate over the same bytes, reusing one
//!   `ByteRecord`, doing nothing with the rows: the ceiling.
//! - `parse/csv_async_bare`: `csv-async` the same way: what async costs.
//! - `parse/paydrop_summary`: paydrop's reader ([`read_rows`]): header
//!   check, every row checked (decimal amount, dates, UTF-8) and totalled
//!   by status, program, currency and month.
//! - `parse/paydrop_summary_gunzip`: the same from gzip bytes through the
//!   streaming gunzip the download uses ("gzip on the wire").
//! - `download/*`: the whole path from the in-process sandbox over
//!   127.0.0.1 (queue, poll, stream, parse, total), plain, gzip and a zip
//!   (the Partner Center sample's packing). The
//!   sandbox renders (and gzips) the file while it is sent, on the same
//!   machine: these figures include the server's work.
//!
//! `cargo bench --bench export`

use std::hint::black_box;
use std::time::Duration;

use async_compression::tokio::bufread::GzipDecoder;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::TryStreamExt;
use paydrop::config::Secret;
use paydrop::export::rows::read_rows;
use paydrop::export::{ExportClient, Format, PollPolicy, Sink};
use paydrop::transport::RetryPolicy;
use paydrop_sandbox::export::{Content, Encoding, Generated, Schema, TextFormat};
use paydrop_sandbox::SandboxConfig;

const ROWS: u64 = 300_000;
const SEED: u64 = 42;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn export_bytes(rt: &tokio::runtime::Runtime, rows: u64) -> Vec<u8> {
    rt.block_on(async {
        let g = Generated {
            rows,
            seed: SEED,
            schema: Schema::default(),
        };
        let chunks: Vec<bytes::Bytes> = g
            .text(None, TextFormat::Csv, 0, 1)
            .try_collect()
            .await
            .expect("generated");
        chunks.concat()
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn parse(c: &mut Criterion) {
    let rt = runtime();
    let data = export_bytes(&rt, ROWS);
    let packed = gzip(&data);
    println!(
        "export of {ROWS} rows: {} bytes, {} gzipped (gzip -1)",
        data.len(),
        packed.len()
    );
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("csv_sync_bare", |b| {
        b.iter(|| {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .buffer_capacity(256 * 1024)
                .from_reader(&data[..]);
            let mut record = csv::ByteRecord::new();
            let mut n = 0u64;
            while reader.read_byte_record(&mut record).expect("csv") {
                n += record.len() as u64;
            }
            black_box(n)
        })
    });
    g.bench_function("csv_async_bare", |b| {
        b.to_async(&rt).iter(|| async {
            let mut reader = csv_async::AsyncReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .buffer_capacity(256 * 1024)
                .create_reader(&data[..]);
            let mut record = csv_async::ByteRecord::new();
            let mut n = 0u64;
            while reader.read_byte_record(&mut record).await.expect("csv") {
                n += record.len() as u64;
            }
            black_box(n)
        })
    });
    g.bench_function("paydrop_summary", |b| {
        b.to_async(&rt).iter(|| async {
            let s = read_rows(&data[..], Format::Csv, &mut Sink::Discard)
                .await
                .expect("parsed");
            assert_eq!(s.rows, ROWS);
            black_box(s)
        })
    });
    g.bench_function("paydrop_summary_gunzip", |b| {
        b.to_async(&rt).iter(|| async {
            let mut d = GzipDecoder::new(&packed[..]);
            d.multiple_members(true);
            let s = read_rows(d, Format::Csv, &mut Sink::Discard)
                .await
                .expect("parsed");
            black_box(s)
        })
    });
    g.finish();
}

fn download(c: &mut Criterion) {
    let rt = runtime();
    let rows = 100_000;
    let size = export_bytes(&rt, rows).len() as u64;
    let mut g = c.benchmark_group("download");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (name, encoding) in [
        ("plain", Encoding::Plain),
        ("gzip", Encoding::GzipFile),
        ("zip", Encoding::Zip { entries: 1 }),
    ] {
        let mut config = SandboxConfig::default();
        config.export.content = Content::Generated(Generated {
            rows,
            seed: SEED,
            schema: Schema::default(),
        });
        config.export.encoding = encoding;
        config.export.polls = 1;
        let token = config.export.token.clone();
        let sandbox = rt
            .block_on(paydrop_sandbox::spawn(config))
            .expect("sandbox");
        let client = ExportClient::new(
            &sandbox.base_url(),
            Secret::new(token),
            RetryPolicy {
                max_attempts: 3,
                base: Duration::from_millis(5),
                max: Duration::from_millis(50),
            },
            Duration::from_secs(60),
            Duration::from_secs(5),
        )
        .expect("client");
        let poll = PollPolicy {
            first: Duration::from_millis(2),
            max: Duration::from_millis(10),
            timeout: Duration::from_secs(60),
        };
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let queued = client.queue(None, Format::Csv).await.expect("queued");
                let done = client.wait(queued, poll, |_| {}).await.expect("done");
                let (_, s) = client
                    .download(&done, Format::Csv, &mut Sink::Discard)
                    .await
                    .expect("downloaded");
                black_box(s)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, download);
criterion_main!(benches);
