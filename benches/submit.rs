//! Compression and end-to-end submission throughput.
//!
//! - `compress/*`: every codec and level on a generated pattern-1 file, in
//!   MB/s of input; the compression ratio of each is printed up front.
//!   Levels up to gzip 9 and brotli 6 run on 1,000,000 rows; brotli 9 and 11
//!   (about 1 MB/s) on the first 100,000 rows, or one sample would take minutes.
//! - `submit_150k/*`: a 150,000-row file submitted to the in-process sandbox
//!   provider (validate, then compress and stream the upload, then the
//!   provider's own decompress-and-check), next to validate alone and
//!   compress alone over the same file, so the overlap can be read off.
//!
//! `cargo bench --bench submit`

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::StreamExt;
use paydrop::compress::{compress_reader, Codec, Compression};
use paydrop::currency::Currency;
use paydrop::generate::{generate, GenOptions};
use paydrop::ledger::Ledger;
use paydrop::pattern::Registry;
use paydrop::sandbox::{self, SandboxConfig};
use paydrop::submit::{submit_file, RetryPolicy, SubmitOptions};
use paydrop::upload::{BodyMode, Client};
use paydrop::validate::{validate_file, Hooks, Options};

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 15).expect("valid date")
}

fn file_of(rows: u64) -> Vec<u8> {
    let registry = Registry::load(None).expect("built-in patterns");
    let mut out = Vec::new();
    let opts = GenOptions {
        rows,
        seed: 42,
        as_of: as_of(),
        ..GenOptions::default()
    };
    generate(&mut out, registry.get(1).expect("pattern 1"), &opts).expect("generated");
    out
}

async fn compressed_len(data: Vec<u8>, c: Compression) -> usize {
    let mut n = 0;
    let mut s = Box::pin(compress_reader(std::io::Cursor::new(data), c));
    while let Some(chunk) = s.next().await {
        n += chunk.expect("compressed").len();
    }
    n
}

fn compression(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let big = file_of(1_000_000);
    let small = big[..nth_line_end(&big, 100_000)].to_vec();
    let levels = [
        (Codec::None, 0),
        (Codec::Gzip, 1),
        (Codec::Gzip, 6),
        (Codec::Gzip, 9),
        (Codec::Brotli, 1),
        (Codec::Brotli, 4),
        (Codec::Brotli, 6),
        (Codec::Brotli, 9),
        (Codec::Brotli, 11),
    ];
    let mut group = c.benchmark_group("compress");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (codec, level) in levels {
        let comp = Compression::new(codec, Some(level)).expect("valid level");
        let data = if codec == Codec::Brotli && level >= 9 {
            &small
        } else {
            &big
        };
        let started = Instant::now();
        let out = rt.block_on(compressed_len(data.clone(), comp));
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{comp:<14} input {:>4} MB  ratio {:>5.2}  {:>7.1} MB/s (single run)",
            data.len() / 1_000_000,
            data.len() as f64 / out as f64,
            data.len() as f64 / 1e6 / secs
        );
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(format!("{codec}-{level}"), |b| {
            b.iter_batched(
                || data.clone(),
                |d| rt.block_on(compressed_len(d, comp)),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Byte offset just past the `n`-th newline.
fn nth_line_end(data: &[u8], n: usize) -> usize {
    memchr::memchr_iter(b'\n', data)
        .nth(n - 1)
        .map_or(data.len(), |i| i + 1)
}

fn submission(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("payments-150k.csv");
    std::fs::write(&path, file_of(150_000)).expect("written");
    let bytes = std::fs::metadata(&path).expect("metadata").len();
    let registry = Registry::load(None).expect("patterns");
    let pattern = registry.get(1).expect("pattern 1").clone();
    let sandbox = rt
        .block_on(sandbox::spawn(SandboxConfig {
            registry: registry.clone(),
            as_of: Some(as_of()),
            ..SandboxConfig::default()
        }))
        .expect("sandbox");
    let client = sandbox.client(Duration::from_secs(120)).expect("client");
    let currency = Currency::lookup("TRY").expect("TRY");
    let compression = Compression::new(Codec::Gzip, None).expect("default level");
    let opts = SubmitOptions {
        currency,
        currency_id: paydrop::api::TRY_CURRENCY_ID,
        installment: 1,
        half_2d: false,
        callback_address: None,
        compression,
        mode: BodyMode::FilePart,
        split_rows: 150_000,
        // Every iteration sends the same content again, as a new batch.
        force: true,
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
        provider_deduplicates: false,
        inquiry_grace: Duration::from_secs(600),
        attempt_timeout: Duration::from_secs(120),
        now: chrono::Utc::now(),
        as_of: as_of(),
    };
    let vopts = Options {
        as_of: as_of(),
        ..Options::default()
    };

    let mut group = c.benchmark_group("submit_150k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("validate", |b| {
        b.iter(|| {
            black_box(validate_file(&path, &pattern, &vopts, Hooks::default()).expect("valid"))
        })
    });
    group.bench_function("compress_gzip1", |b| {
        b.iter(|| {
            rt.block_on(async {
                let f = tokio::fs::File::open(&path).await.expect("open");
                let mut s = Box::pin(compress_reader(f, compression));
                let mut n = 0;
                while let Some(c) = s.next().await {
                    n += c.expect("chunk").len();
                }
                black_box(n)
            })
        })
    });
    let ledger_dir = tempfile::tempdir().expect("ledger dir");
    let mut ledger = Ledger::open(&ledger_dir.path().join("bench.db")).expect("ledger");
    group.bench_function("submit_end_to_end", |b| {
        b.iter(|| rt.block_on(submit(&path, &pattern, &mut ledger, &client, &opts)))
    });
    group.finish();
    rt.block_on(sandbox.shutdown());
}

async fn submit(
    path: &Path,
    pattern: &paydrop::pattern::Pattern,
    ledger: &mut Ledger,
    client: &Client,
    opts: &SubmitOptions,
) -> i64 {
    let done = submit_file(
        path,
        pattern,
        ledger,
        client,
        opts,
        Arc::new(AtomicU64::new(0)),
    )
    .await
    .expect("accepted");
    done.batch.id
}

criterion_group!(benches, compression, submission);
criterion_main!(benches);
