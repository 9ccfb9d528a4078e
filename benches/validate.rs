//! Validator throughput against the bare CSV parsers it sits on.
//!
//! One group, one input (a 1,000,000-row pattern-1 file generated in memory,
//! no errors), three passes over the same bytes:
//!
//! - `csv_bare`: the sync `csv` reader with a reused `ByteRecord`, counting
//!   records: the ceiling for anything built on it;
//! - `csv_async_bare`: the same with `csv-async` on a tokio runtime, to justify
//!   running the sync reader on a blocking thread instead;
//! - `validate`: `paydrop::validate::validate_reader` (every check, exact
//!   totals, uniqueness index and the sha256 of the bytes).
//!
//! Besides criterion's MB/s, each variant is timed once up front and its rows/s
//! printed, so that both figures can be quoted side by side.
//!
//! `cargo bench --bench validate`

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;
use paydrop::pattern::Registry;
use paydrop::validate::{validate_reader, Hooks, Options};
use paydrop_generate::{generate, GenOptions};

const ROWS: u64 = 1_000_000;

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 15).expect("valid date")
}

fn csv_bare(data: &[u8]) -> u64 {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut rec = csv::ByteRecord::new();
    let mut n = 0u64;
    while rdr.read_byte_record(&mut rec).expect("valid csv") {
        n += 1;
    }
    n
}

fn csv_async_bare(rt: &tokio::runtime::Runtime, data: &[u8]) -> u64 {
    rt.block_on(async {
        let mut rdr = csv_async::AsyncReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .create_reader(data);
        let mut rec = csv_async::ByteRecord::new();
        let mut n = 0u64;
        while rdr.read_byte_record(&mut rec).await.expect("valid csv") {
            n += 1;
        }
        n
    })
}

fn csv_async_records(rt: &tokio::runtime::Runtime, data: &[u8]) -> u64 {
    // The stream API allocates a record per row; kept out of the criterion
    // group, printed only, because it is what naive csv-async code uses.
    rt.block_on(async {
        let mut rdr = csv_async::AsyncReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .create_reader(data);
        let mut records = rdr.byte_records();
        let mut n = 0u64;
        while let Some(r) = records.next().await {
            r.expect("valid csv");
            n += 1;
        }
        n
    })
}

fn validate(data: &[u8], pattern: &paydrop::pattern::Pattern, opts: &Options) -> u64 {
    let report = validate_reader(data, pattern, opts, Hooks::default()).expect("validates");
    assert_eq!(report.rows_invalid, 0);
    report.rows_read
}

fn report_rate(name: &str, bytes: usize, f: impl FnOnce() -> u64) {
    let start = Instant::now();
    let rows = f();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{name:>16}: {rows} rows in {secs:.3} s = {:.0} rows/s, {:.1} MB/s",
        rows as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

fn bench(c: &mut Criterion) {
    let registry = Registry::load(None).expect("built-in patterns");
    let pattern = registry.get(1).expect("pattern 1");
    let mut data = Vec::with_capacity(160 * 1024 * 1024);
    let gen = GenOptions {
        rows: ROWS,
        error_rate: 0.0,
        seed: 42,
        as_of: as_of(),
        ..GenOptions::default()
    };
    generate(&mut data, pattern, &gen).expect("generates");
    let opts = Options {
        as_of: as_of(),
        ..Options::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");

    eprintln!(
        "input: pattern 1, {ROWS} rows, {} bytes ({:.1} MB)",
        data.len(),
        data.len() as f64 / 1e6
    );
    assert_eq!(csv_bare(&data), ROWS);
    assert_eq!(csv_async_bare(&rt, &data), ROWS);
    assert_eq!(validate(&data, pattern, &opts), ROWS);
    report_rate("csv_bare", data.len(), || csv_bare(&data));
    report_rate("csv_async_bare", data.len(), || csv_async_bare(&rt, &data));
    report_rate("csv_async_stream", data.len(), || {
        csv_async_records(&rt, &data)
    });
    report_rate("validate", data.len(), || validate(&data, pattern, &opts));

    let mut group = c.benchmark_group("validate_1m_rows");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("csv_bare", |b| b.iter(|| csv_bare(black_box(&data))));
    group.bench_function("csv_async_bare", |b| {
        b.iter(|| csv_async_bare(&rt, black_box(&data)))
    });
    group.bench_function("validate", |b| {
        b.iter(|| validate(black_box(&data), pattern, &opts))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
