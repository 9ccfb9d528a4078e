//! What the provider decodes is byte for byte the payment rows as the
//! provider's pages define them (docs/providers/paywall.md §1, §6): for every
//! codec, compressing only the `File` part (the default) or the whole body,
//! for parts of a split file, with no header row in any part, and with CRLF
//! line ends, a byte-order mark or a missing final newline made plain. The
//! expected bytes are computed from the file's lines alone.

mod common_stub;
mod common_submit;

use std::sync::atomic::Ordering;

use common_stub::{Start, Stub};
use common_submit::{
    client_for, credentials, default_options, expected_parts, generate_to, options, sha256_hex,
    Spec, World, API_CLIENT, API_KEY,
};
use paydrop::compress::Codec;
use paydrop::ledger::State;
use paydrop::pattern::{Pattern, Registry};
use paydrop::submit::SubmitError;
use paydrop::upload::BodyMode;
use paydrop::validate::ErrorKind;

/// How the sandbox must have seen the request.
fn expected_encodings(
    codec: Codec,
    mode: BodyMode,
) -> (Option<&'static str>, Option<&'static str>) {
    match mode {
        BodyMode::WholeBody => (codec.content_encoding(), None),
        BodyMode::FilePart => (None, codec.content_encoding()),
    }
}

/// Submits a file of `rows` rows with `codec`/`mode`, `split_rows` per part,
/// and checks that every part arrived as exactly its bytes.
async fn delivers_exact_bytes(codec: Codec, mode: BodyMode, spec: Spec, split_rows: u64) {
    let world = World::start().await;
    let (path, _) = world.generate("payments.csv", spec);
    let bytes = std::fs::read(&path).unwrap();
    let parts = expected_parts(&bytes, spec.header, split_rows as usize);
    let mut opts = options(codec, mode);
    opts.validate.split_rows = split_rows;

    let done = world.submit(&path, &opts).await.expect("submitted");

    assert_eq!(done.report.header_row, spec.header);
    assert_eq!(done.report.parts.len(), parts.len());
    assert_eq!(done.batch.compression, opts.compression.to_string());
    let got = world.sandbox.batches();
    assert_eq!(got.len(), parts.len(), "{got:#?}");
    assert_eq!(
        world.sandbox.requests(),
        parts.len() as u64,
        "no retries needed"
    );
    let (content_encoding, file_part_encoding) = expected_encodings(codec, mode);
    let file_name = match mode {
        BodyMode::FilePart => format!("payments.csv{}", codec.suffix()),
        BodyMode::WholeBody => "payments.csv".to_string(),
    };
    for (i, ((b, s), part)) in got
        .iter()
        .zip(&done.batch.submissions)
        .zip(&parts)
        .enumerate()
    {
        let what = format!("{codec} {mode:?} part {}", i + 1);
        assert_eq!(
            b.sha256,
            sha256_hex(part),
            "{what}: decoded content differs"
        );
        assert_eq!(b.bytes, part.len() as u64, "{what}");
        let data_rows = part.split(|&c| c == b'\n').count() as u64 - 1;
        assert!(!part.starts_with(b"cardNumber,"), "{what}: no header row");
        assert_eq!((b.rows, s.rows), (data_rows, data_rows), "{what}");
        assert_eq!(
            b.content_encoding.map(|c| c.name()),
            content_encoding,
            "{what}"
        );
        assert_eq!(
            b.file_part_encoding.map(|c| c.name()),
            file_part_encoding,
            "{what}"
        );
        assert_eq!(b.file_name.as_deref(), Some(file_name.as_str()), "{what}");
        assert_eq!(b.merchant_unique_code, s.merchant_unique_code, "{what}");
        assert_eq!(
            (s.state, s.bulk_payment_id),
            (State::Accepted, Some(b.bulk_payment_id))
        );
    }
    let part_bytes: usize = parts.iter().map(Vec::len).sum();
    assert_eq!(
        world.sent.load(Ordering::SeqCst),
        part_bytes as u64,
        "progress counts each part's bytes once"
    );
    if parts.len() == 1 {
        assert_eq!(got[0].sha256, done.report.content_sha256);
        if !spec.header {
            assert_eq!(parts[0], bytes, "a plain file is sent as it is");
            assert_eq!(got[0].sha256, done.report.sha256);
        }
    }
    let rows: Vec<u8> = parts.concat();
    assert_eq!(done.report.content_sha256, sha256_hex(&rows));
    for (p, part) in done.report.parts.iter().zip(&parts) {
        assert_eq!(p.content_sha256, sha256_hex(part));
    }
}

/// A single-part file of 1,500 rows without a header.
async fn whole_file(codec: Codec, mode: BodyMode) {
    delivers_exact_bytes(codec, mode, Spec::valid(1_500, 11), 150_000).await;
}

/// 2,500 rows after a header row, sent as 1,000 + 1,000 + 500 rows without
/// the header.
async fn split_with_header(codec: Codec, mode: BodyMode) {
    let spec = Spec {
        header: true,
        ..Spec::valid(2_500, 12)
    };
    delivers_exact_bytes(codec, mode, spec, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_whole_body_is_byte_identical() {
    whole_file(Codec::Gzip, BodyMode::WholeBody).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brotli_whole_body_is_byte_identical() {
    whole_file(Codec::Brotli, BodyMode::WholeBody).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_whole_body_is_byte_identical() {
    whole_file(Codec::None, BodyMode::WholeBody).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_file_part_is_byte_identical() {
    whole_file(Codec::Gzip, BodyMode::FilePart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brotli_file_part_is_byte_identical() {
    whole_file(Codec::Brotli, BodyMode::FilePart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_file_part_is_byte_identical() {
    whole_file(Codec::None, BodyMode::FilePart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_parts_carry_no_header_gzip_whole_body() {
    split_with_header(Codec::Gzip, BodyMode::WholeBody).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_parts_carry_no_header_brotli_file_part() {
    split_with_header(Codec::Brotli, BodyMode::FilePart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_parts_carry_no_header_uncompressed() {
    split_with_header(Codec::None, BodyMode::WholeBody).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_parts_carry_no_header_gzip_file_part() {
    split_with_header(Codec::Gzip, BodyMode::FilePart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bom_crlf_file_without_final_newline_is_sent_as_plain_rows() {
    let world = World::start().await;
    let spec = Spec {
        header: true,
        ..Spec::valid(2_500, 13)
    };
    let (path, _) = world.generate("windows.csv", spec);
    let lf = std::fs::read(&path).unwrap();
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    for &b in &lf[..lf.len() - 1] {
        if b == b'\n' {
            bytes.push(b'\r');
        }
        bytes.push(b);
    }
    std::fs::write(&path, &bytes).unwrap();
    let parts = expected_parts(&bytes, true, 1_000);
    assert_eq!(parts.concat(), expected_parts(&lf, true, 2_500)[0]);
    assert!(parts
        .iter()
        .all(|p| !p.contains(&b'\r') && p.ends_with(b"\n")));
    let mut opts = options(Codec::Gzip, BodyMode::FilePart);
    opts.validate.split_rows = 1_000;

    let done = world.submit(&path, &opts).await.expect("submitted");

    assert_eq!(done.report.sha256, sha256_hex(&bytes));
    assert_eq!(done.report.content_sha256, sha256_hex(&parts.concat()));
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 3, "{got:#?}");
    for (b, part) in got.iter().zip(&parts) {
        assert_eq!(b.sha256, sha256_hex(part), "{}", b.merchant_unique_code);
    }
    assert_eq!(
        got.iter().map(|b| b.rows).collect::<Vec<_>>(),
        [1_000, 1_000, 500]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bom_file_without_header_arrives_without_the_bom() {
    let world = World::start().await;
    let (path, _) = world.generate("bom.csv", Spec::valid(300, 14));
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend(std::fs::read(&path).unwrap());
    std::fs::write(&path, &bytes).unwrap();

    let done = world
        .submit(&path, &options(Codec::Brotli, BodyMode::FilePart))
        .await
        .expect("submitted");

    assert!(!done.report.header_row);
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].sha256, sha256_hex(&bytes[3..]), "the rows, no BOM");
    assert_eq!(got[0].rows, 300);
}

/// `bytes` (a pattern-1 file) with the cardOwnerName of data rows 1 and 2
/// replaced by cells written exactly as given.
fn with_names(bytes: &[u8], first: &str, second: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let mut cells: Vec<&str> = line.split(',').collect();
            match i {
                0 => cells[4] = first,
                1 => cells[4] = second,
                _ => {}
            }
            format!("{}\n", cells.join(","))
        })
        .collect::<String>()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_holding_the_delimiter_or_a_quote_is_refused_naming_column_and_character() {
    let world = World::start().await;
    let (path, _) = world.generate("quoted.csv", Spec::valid(20, 15));
    let bytes = with_names(&std::fs::read(&path).unwrap(), "\"Doe, John\"", "Ay\"se");
    std::fs::write(&path, &bytes).unwrap();

    let err = world
        .submit(&path, &default_options())
        .await
        .expect_err("refused");
    let SubmitError::Invalid(report) = err else {
        panic!("expected Invalid, got {err:?}")
    };
    let errors: Vec<_> = report
        .errors
        .iter()
        .map(|e| (e.line, e.kind, e.column.as_deref()))
        .collect();
    assert_eq!(
        errors,
        [
            (1, ErrorKind::Quoting, Some("cardOwnerName")),
            (2, ErrorKind::Quoting, Some("cardOwnerName"))
        ]
    );
    assert!(
        report.errors[0]
            .reason
            .starts_with("contains the delimiter ','"),
        "{}",
        report.errors[0]
    );
    assert!(
        report.errors[1]
            .reason
            .starts_with("contains a quote character (\")"),
        "{}",
        report.errors[1]
    );
    assert!(report.errors[0].reason.contains("quoting = \"rfc4180\""));
    assert_eq!(world.sandbox.requests(), 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quoted_plain_value_is_sent_without_its_quotes() {
    let world = World::start().await;
    let (path, _) = world.generate("plain.csv", Spec::valid(20, 16));
    let original = std::fs::read(&path).unwrap();
    let plain = with_names(&original, "Ayşe Yılmaz", "Ali Veli");
    let quoted = with_names(&original, "\"Ayşe Yılmaz\"", "\"Ali Veli\"");
    std::fs::write(&path, &quoted).unwrap();

    let done = world.submit(&path, &default_options()).await.expect("sent");

    assert_eq!(done.report.content_sha256, sha256_hex(&plain));
    assert_eq!(world.sandbox.batches()[0].sha256, sha256_hex(&plain));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_declaring_rfc4180_quoting_sends_such_values_quoted() {
    // No page documents quoting, so the sandbox (a reading of the pages)
    // refuses a quote; a provider the merchant knows to read RFC 4180 is
    // played by the stub, which records the File part as received.
    let dir = tempfile::tempdir().unwrap();
    let toml = common_submit::pattern1()
        .to_toml()
        .replace("quoting = \"none\"", "quoting = \"rfc4180\"")
        .replacen("id = 1\n", "id = 2\n", 1);
    assert!(toml.contains("rfc4180"));
    // A pattern file may not replace built-in pattern 1: the same layout
    // under its own id.
    std::fs::write(dir.path().join("2-quoted.toml"), &toml).unwrap();
    let registry = Registry::load(Some(dir.path())).unwrap();
    let pattern: Pattern = registry.get(2).unwrap().clone();
    let stub = Stub::start(vec![Start::Accept(4101)], vec![]).await;
    let world = World::start().await;
    let client = client_for(&stub.base_url(), credentials(API_KEY, API_CLIENT));
    let (path, _) = world.generate("rfc.csv", Spec::valid(20, 17));
    let original = std::fs::read(&path).unwrap();
    let written = with_names(&original, "\"Doe, John\"", "\"Ay\"\"se\"");
    std::fs::write(&path, &written).unwrap();

    world
        .submit_as(&path, &pattern, &client, &default_options())
        .await
        .expect("sent quoted");

    // Written quoted where needed, as RFC 4180 has it.
    let starts = stub.starts();
    assert_eq!(starts.len(), 1);
    assert_eq!(sha256_hex(&starts[0].file), sha256_hex(&written));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_3_file_validates_and_is_sent_as_its_rows() {
    let world = World::start().await;
    let pattern = Registry::load(None).unwrap().get(3).unwrap().clone();
    let path = world.path("insurance.csv");
    let generated = generate_to(&path, &pattern, Spec::valid(1_000, 18));
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes
            .split(|&b| b == b'\n')
            .next()
            .unwrap()
            .split(|&b| b == b',')
            .count()
            == 18
    );

    let done = world
        .submit_as(&path, &pattern, &world.client, &default_options())
        .await
        .expect("accepted");

    assert_eq!(done.report.rows_valid, 1_000);
    assert_eq!(done.batch.pattern, 3);
    assert_eq!(
        done.batch.amount,
        generated.totals.amount(common_submit::try_currency())
    );
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].file_pattern, got[0].rows), (3, 1_000));
    assert_eq!(got[0].sha256, sha256_hex(&bytes));
    assert_eq!(got[0].file_part_encoding.map(|c| c.name()), Some("gzip"));

    // A pattern-3 file with planted errors is refused, nothing sent.
    let broken = world.path("insurance-broken.csv");
    generate_to(
        &broken,
        &pattern,
        Spec {
            error_rate: 0.05,
            ..Spec::valid(400, 19)
        },
    );
    assert!(matches!(
        world
            .submit_as(&broken, &pattern, &world.client, &default_options())
            .await,
        Err(SubmitError::Invalid(_))
    ));
    assert_eq!(world.sandbox.requests(), 1);
}
