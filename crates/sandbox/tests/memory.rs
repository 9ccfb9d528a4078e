//! A 200 MB (decoded) upload does not grow the sandbox's memory: the File
//! part is decoded, hashed and spooled as it streams, then checked and
//! totalled line by line. One test in its own binary, so that no other test
//! shares the process whose peak RSS it reads.

mod common;

use std::io;
use std::time::Duration;

use async_compression::tokio::bufread::GzipEncoder;
use bytes::Bytes;
use common::*;
use futures::{stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio_util::io::{ReaderStream, StreamReader};

const ROWS: usize = 150_000;
/// Wide rows (a long customerId) keep the file within the published
/// 150,000-row limit while making it about 200 MB.
const WIDTH: usize = 1300;

fn wide_row(i: usize) -> String {
    let row = p1_row(i);
    let fields: Vec<&str> = row.split(',').collect();
    let customer = format!("CUST{i:08}{}", "C".repeat(WIDTH));
    let mut fields: Vec<String> = fields.into_iter().map(str::to_string).collect();
    fields[6] = customer;
    fields.join(",") + "\n"
}

/// The file in chunks of 1,000 rows, generated as it is sent.
fn chunks() -> impl futures::Stream<Item = io::Result<Bytes>> {
    stream::iter((0..ROWS).step_by(1000)).map(|start| {
        let chunk: String = (start..(start + 1000).min(ROWS)).map(wide_row).collect();
        Ok(Bytes::from(chunk))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_leaves_the_peak_rss_flat() {
    let mut config = bulk_config();
    config.callback.delay = Duration::ZERO;
    let sb = sandbox(config).await;
    // Warm up the runtime, the client and the sandbox's paths.
    let warm = post(&sb, &Form::payments(&p1_file(100), 1, "warm-up")).await;
    warm.bulk_payment_id();

    let (mut size, mut digest) = (0u64, Sha256::new());
    let mut all = Box::pin(chunks());
    while let Some(chunk) = all.next().await {
        let chunk = chunk.unwrap();
        size += chunk.len() as u64;
        digest.update(&chunk);
    }
    assert!(size > 200_000_000, "{size} bytes");
    let digest = hex::encode(digest.finalize());
    let before = peak_rss();

    // As the provider's example sends it (the File part gzipped), and plain,
    // so that the multipart parser itself sees 200 MB.
    for (name, gzip) in [("big.txt.gz", true), ("big.txt", false)] {
        let body = if gzip {
            reqwest::Body::wrap_stream(ReaderStream::new(GzipEncoder::new(StreamReader::new(
                chunks(),
            ))))
        } else {
            reqwest::Body::wrap_stream(chunks())
        };
        let part = reqwest::multipart::Part::stream(body)
            .file_name(name)
            .mime_str(if gzip {
                "application/gzip"
            } else {
                "text/plain"
            })
            .unwrap();
        let form = reqwest::multipart::Form::new()
            .part("File", part)
            .text("FileFormat", "5")
            .text("FilePattern", "1")
            .text("CurrencyId", "1")
            .text("MerchantUniqueCode", name);
        let response = http()
            .post(sb.startdirect_url())
            .header(KEYS[0].0, KEYS[0].1)
            .header(KEYS[1].0, KEYS[1].1)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let id = answer(response).await.bulk_payment_id();
        wait_until(Duration::from_secs(120), || sb.batch_finished(id)).await;
        let batch = sb
            .batches()
            .into_iter()
            .find(|b| b.bulk_payment_id == id)
            .unwrap();
        assert_eq!((batch.rows, batch.bytes), (ROWS as u64, size), "{name}");
        assert_eq!(batch.sha256, digest, "{name}: decoded to the exact bytes");
    }
    let grown = peak_rss().saturating_sub(before);
    eprintln!(
        "peak RSS {} MB before, grew {} MB for two {} MB uploads",
        before >> 20,
        grown >> 20,
        size >> 20
    );
    assert!(grown < 48 << 20, "peak RSS grew {} MB", grown >> 20);
}
