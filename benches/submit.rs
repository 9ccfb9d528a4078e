//! Compression and end-to-end submission throughput.
//!
//! - `compress/*`: every codec and level on a generated pattern-1 file, in
//!   MB/s of input; the compression ratio of each is printed up front.
//!   Levels up to gzip 9 and brotli 6 run on 1,000,000 rows; brotli 9 and 11
//!   (about 1 MB/s) on the first 100,000 rows, or one sample would take minutes.
//! - `submit_150k/*`: a 150,000-row file submitted to the in-process sandbox
//!   provider (`paydrop-sandbox`) (validate, then compress and stream the upload, then the
//!   provider's own decompress-and-check), next to validate alone and
//!   compress alone over the same file, so the overlap can be read off.
//! - `sent_rows_150k/*`: the ledger's row-level check before a batch is
//!   recorded: 150,000 rows looked up (one index lookup each) in a ledger
//!   already holding 1,500,000 sent rows, then either refused (every row
//!   sent before) or recorded (every row new).
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
use paydrop::ledger::{
    BatchInfo, Claim, Ledger, LedgerError, NewBatch, NewSubmission, SentRow, State,
};
use paydrop::pattern::Registry;
use paydrop::submit::{submit_file, SubmitOptions};
use paydrop::transport::RetryPolicy;
use paydrop::upload::{BodyMode, Client, Credentials};
use paydrop::validate::{validate_file, Hooks, Options};
use paydrop_generate::{generate, GenOptions};
use paydrop_sandbox::SandboxConfig;

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
    let mut config = SandboxConfig::default();
    config.bulk.today = Some(as_of());
    let keys = config.bulk.keys.clone();
    let sandbox = rt
        .block_on(paydrop_sandbox::spawn(config))
        .expect("sandbox");
    let client = Client::new(
        &sandbox.base_url(),
        Credentials {
            api_key: paydrop::config::Secret::new(keys.api_key.expose()),
            api_client: paydrop::config::Secret::new(keys.api_client.expose()),
        },
        Duration::from_secs(120),
        Duration::from_secs(5),
    )
    .expect("client");
    let currency = Currency::lookup("TRY").expect("TRY");
    let compression = Compression::new(Codec::Gzip, None).expect("default level");
    let opts = SubmitOptions {
        validate: Options {
            currency,
            split_rows: 150_000,
            as_of: as_of(),
            ..Options::default()
        },
        currency_id: paydrop::api::TRY_CURRENCY_ID,
        installment: 1,
        half_2d: false,
        callback_address: None,
        compression,
        mode: BodyMode::FilePart,
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

/// A one-part batch of `rows` rows whose codes are `{prefix}-{n}`.
fn claim_rows(prefix: &str, rows: u64) -> (NewBatch, Vec<SentRow>) {
    let sent: Vec<SentRow> = (1..=rows)
        .map(|n| {
            let code = format!("{prefix}-{n:08}");
            SentRow::with_code(
                n as i64,
                code,
                rust_decimal::Decimal::new(12_345 + n as i64, 2),
            )
        })
        .collect();
    let batch = NewBatch {
        info: BatchInfo {
            sha256: format!("{prefix}-content"),
            file: format!("{prefix}.csv"),
            compression: "gzip level 1".into(),
            rows,
            amount: rust_decimal::Decimal::ONE,
            ..BatchInfo::default()
        },
        parts: vec![NewSubmission {
            part: 1,
            first_row: 1,
            merchant_unique_code: format!("{prefix}-code"),
            rows,
            amount: rust_decimal::Decimal::ONE,
        }],
    };
    (batch, sent)
}

fn claim(ledger: &mut Ledger, batch: &NewBatch, rows: &[SentRow]) -> Claim {
    ledger
        .create_batch_claiming_rows(
            batch,
            || Ok::<_, LedgerError>(rows.iter().cloned().map(|r| Ok((1, r)))),
            false,
        )
        .expect("ledger")
}

fn sent_rows(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("ledger dir");
    let mut ledger = Ledger::open(&dir.path().join("bench.db")).expect("ledger");
    // 1,500,000 rows of ten accepted batches already in the ledger.
    for i in 0..10 {
        let (batch, rows) = claim_rows(&format!("old{i}"), 150_000);
        let Claim::Created { batch, .. } = claim(&mut ledger, &batch, &rows) else {
            panic!("new rows")
        };
        ledger
            .settle(
                batch.submissions[0].id,
                State::Accepted,
                Some(i),
                "ok",
                None,
            )
            .expect("settled");
    }
    let (_, sent_before) = claim_rows("old3", 150_000);
    let mut group = c.benchmark_group("sent_rows_150k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(150_000));
    group.bench_function("refused_all_sent_before", |b| {
        let (batch, _) = claim_rows("again", 150_000);
        b.iter(|| match claim(&mut ledger, &batch, &sent_before) {
            Claim::Refused(r) => black_box(r.rows),
            Claim::Created { .. } => panic!("must be refused"),
        })
    });
    let mut n = 0;
    group.bench_function("recorded_all_new", |b| {
        b.iter_batched(
            || {
                n += 1;
                claim_rows(&format!("new{n}"), 150_000)
            },
            |(batch, rows)| {
                black_box(matches!(
                    claim(&mut ledger, &batch, &rows),
                    Claim::Created { .. }
                ))
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, compression, submission, sent_rows);
criterion_main!(benches);
