//! startdirect through hand-built multipart requests: what is accepted and
//! recorded, every refusal, compression of the File part and of the whole
//! body, the row limit and the duplicate-code modes.

mod common;

use common::*;
use paydrop_sandbox::bulk::{Codec, Currency, DuplicateCode};
use rust_decimal::Decimal;

#[tokio::test]
async fn a_plain_upload_is_recorded_field_by_field() {
    let sb = sandbox(bulk_config()).await;
    let file = p1_file(4);
    let form = Form::payments(&file, 1, "batch-rec")
        .set("Half2D", "True")
        .text("Installment", "3")
        .text("Amount", &p1_total(4).to_string())
        .text("CallbackAddress", "http://127.0.0.1:9/unused")
        .text("CallbackBodyCompression", "true");
    let a = post(&sb, &form).await;
    let id = a.bulk_payment_id();
    assert_eq!(a.json["Body"]["MerchantUniqueCode"], "batch-rec");
    assert_eq!(
        (
            &a.json["Body"]["ProcessedRecords"],
            &a.json["Body"]["IsEnqueued"]
        ),
        (&0.into(), &true.into())
    );
    let b = &sb.batches()[0];
    assert_eq!(b.bulk_payment_id, id);
    assert_eq!(
        (b.file_pattern, b.currency_id, b.installment, b.half_2d),
        (1, 1, Some(3), true)
    );
    assert_eq!(
        (b.amount, b.amount_given, b.rows, b.bytes),
        (p1_total(4), true, 4, file.len() as u64)
    );
    assert_eq!((b.content_encoding, b.file_part_encoding), (None, None));
    assert_eq!(b.file_name.as_deref(), Some("payments.txt"));
    assert_eq!(b.file_content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        b.callback_address.as_deref(),
        Some("http://127.0.0.1:9/unused")
    );
    assert!(b.callback_compression && !b.code_generated);
    assert_eq!(std::fs::read(&b.file).unwrap(), file);
    assert_eq!(sb.requests(), 1);
}

#[tokio::test]
async fn optional_fields_take_their_published_defaults() {
    let sb = sandbox(bulk_config()).await;
    let form = Form::default()
        .file("File", "p.txt", "text/plain", &p1_file(2))
        .text("FileFormat", "5")
        .text("FilePattern", "1");
    let a = post(&sb, &form).await;
    a.bulk_payment_id();
    let code = a.json["Body"]["MerchantUniqueCode"].as_str().unwrap();
    assert_eq!(code.len(), 36, "a generated code: {code}");
    let b = &sb.batches()[0];
    assert_eq!(
        (b.currency_id, b.installment, b.half_2d, b.amount_given),
        (1, None, false, false)
    );
    assert!(b.code_generated && b.callback_address.is_none() && !b.callback_compression);
}

/// One refusal: the form, the code, a piece of the message.
struct Case {
    what: &'static str,
    form: Form,
    code: i64,
    says: &'static str,
}

fn case(what: &'static str, form: Form, code: i64, says: &'static str) -> Case {
    Case {
        what,
        form,
        code,
        says,
    }
}

fn with_file(file: &str) -> Form {
    Form::payments(file.as_bytes(), 1, "batch-x")
}

fn with_p3_file(file: &str) -> Form {
    Form::payments(file.as_bytes(), 3, "batch-x")
}

/// A valid row with column `i` replaced.
fn p1_with(i: usize, value: &str) -> String {
    let mut f: Vec<String> = p1_row(0).split(',').map(str::to_string).collect();
    f[i] = value.into();
    f.join(",") + "\n"
}

const P3_OK: &str = "45436012,7890,12345678950,250.00,1,AYSE DEMIR,POLICY-1,,,,ins-1,,,,,,,\n";

fn refusals() -> Vec<Case> {
    let ok = p1_file(2);
    let ok_form = || Form::payments(&ok, 1, "batch-x");
    let long = "x".repeat(251);
    let header = "cardNumber,expiryDate,amount,lineNumber,cardOwnerName,trackingCode,customerId,productCategory,productId,merchantUniqueCode,providerBased,providerKey,routeGroupKey,payRouteByPass,payRouteType,posBased,posId\n".to_string() + &p1_row(0) + "\n";
    vec![
        case("no File", ok_form().without("File"), 2, "File is required"),
        case(
            "no FileFormat",
            ok_form().without("FileFormat"),
            2,
            "FileFormat is required",
        ),
        case(
            "FileFormat 2",
            ok_form().set("FileFormat", "2"),
            2,
            "coming soon",
        ),
        case(
            "FileFormat 9",
            ok_form().set("FileFormat", "9"),
            2,
            "not a file type",
        ),
        case(
            "FileFormat text",
            ok_form().set("FileFormat", "TXT"),
            2,
            "whole number",
        ),
        case(
            "no FilePattern",
            ok_form().without("FilePattern"),
            2,
            "FilePattern is required",
        ),
        case(
            "FilePattern 2",
            ok_form().set("FilePattern", "2"),
            2,
            "published columns",
        ),
        case(
            "FilePattern 4",
            ok_form().set("FilePattern", "4"),
            2,
            "published columns",
        ),
        case(
            "CurrencyId 99",
            ok_form().set("CurrencyId", "99"),
            53,
            "CurrencyId 99",
        ),
        case(
            "Installment 0",
            ok_form().text("Installment", "0"),
            52,
            "Installment 0",
        ),
        case(
            "CallbackAddress",
            ok_form().text("CallbackAddress", "results please"),
            166,
            "CallbackAddress",
        ),
        case(
            "CallbackAddress ftp",
            ok_form().text("CallbackAddress", "ftp://127.0.0.1/x"),
            166,
            "http",
        ),
        case(
            "Half2D yes",
            ok_form().set("Half2D", "yes"),
            2,
            "true or false",
        ),
        case(
            "Amount comma",
            ok_form().text("Amount", "21,50"),
            51,
            "plain decimal",
        ),
        case(
            "Amount mismatch",
            ok_form().text("Amount", "1.00"),
            112,
            "does not equal the total",
        ),
        case(
            "batch code long",
            ok_form().set("MerchantUniqueCode", &long),
            101,
            "250",
        ),
        case("empty file", with_file(""), 3, "empty"),
        case("only a newline", with_file("\n"), 3, "empty"),
        case("header row", with_file(&header), 2, "no header row"),
        case("quote", with_file(&p1_with(4, "\"DOE JOHN\"")), 2, "quote"),
        case(
            "quoted comma",
            with_file(&p1_with(4, "\"DOE, JOHN\"")),
            2,
            "quote",
        ),
        case(
            "comma in a value",
            with_file(&p1_with(4, "DOE, JOHN")),
            2,
            "18 fields",
        ),
        case(
            "too few columns",
            with_file("4543600000000006,12/39,1.00\n"),
            2,
            "3 fields",
        ),
        case(
            "empty line",
            with_file(&format!("{}\n\n{}\n", p1_row(0), p1_row(1))),
            2,
            "line 2 is empty",
        ),
        case(
            "carriage return",
            with_file(&p1_with(4, "A\rB")),
            2,
            "carriage return",
        ),
        case(
            "Luhn",
            with_file(&p1_with(0, "4543600000000001")),
            50,
            "454360******0001",
        ),
        case(
            "card letters",
            with_file(&p1_with(0, "4543-6000-0000")),
            50,
            "Luhn",
        ),
        case("expired", with_file(&p1_with(1, "01/20")), 106, "expired"),
        case(
            "expiry format",
            with_file(&p1_with(1, "2039-12")),
            2,
            "MM/YY",
        ),
        case(
            "amount zero",
            with_file(&p1_with(2, "0.00")),
            51,
            "more than zero",
        ),
        case(
            "amount decimals",
            with_file(&p1_with(2, "1.005")),
            51,
            "3 decimals",
        ),
        case(
            "amount comma",
            with_file(&p1_with(2, "1,5")),
            2,
            "18 fields",
        ),
        case(
            "line number",
            with_file(&p1_with(3, "first")),
            2,
            "whole number",
        ),
        case(
            "owner missing",
            with_file(&p1_with(4, "")),
            2,
            "is required",
        ),
        case(
            "tracking missing",
            with_file(&p1_with(5, "")),
            2,
            "is required",
        ),
        case(
            "row code missing",
            with_file(&p1_with(9, "")),
            101,
            "is required",
        ),
        case("row code long", with_file(&p1_with(9, &long)), 101, "250"),
        case(
            "row code twice",
            with_file(&(p1_row(0) + "\n" + &p1_row(0) + "\n")),
            119,
            "line 2",
        ),
        case(
            "boolean",
            with_file(&p1_with(10, "yes")),
            2,
            "true, false or empty",
        ),
        case(
            "posId",
            with_file(&p1_with(16, "POS-1")),
            2,
            "whole number or empty",
        ),
        case(
            "not UTF-8",
            Form::payments(
                b"4543600000000006,12/39,1.00,1,\xfe\xff,T,,,,c,,,,,,,\n",
                1,
                "batch-x",
            ),
            2,
            "UTF-8",
        ),
        case(
            "p3 first digits",
            with_p3_file(&P3_OK.replacen("45436012", "4543601", 1)),
            50,
            "first 8 digits",
        ),
        case(
            "p3 last digits",
            with_p3_file(&P3_OK.replacen(",7890,", ",78901,", 1)),
            50,
            "last 4 digits",
        ),
        case(
            "p3 bad TCKN",
            with_p3_file(&P3_OK.replacen("12345678950", "12345678951", 1)),
            2,
            "TCKN",
        ),
        case(
            "p3 TCKN from 0",
            with_p3_file(&P3_OK.replacen("12345678950", "02345678950", 1)),
            2,
            "TCKN",
        ),
        case(
            "p3 bad VKN",
            with_p3_file(&P3_OK.replacen("12345678950", "1234567891", 1)),
            2,
            "VKN",
        ),
        case(
            "p3 with a pattern 1 row",
            with_p3_file(&p1_row(0)),
            2,
            "17 fields",
        ),
    ]
}

#[tokio::test]
async fn every_content_refusal_carries_its_code_and_a_reason() {
    let sb = sandbox(bulk_config()).await;
    for c in refusals() {
        let a = post(&sb, &c.form).await;
        let message = a.refused(c.code);
        assert!(message.contains(c.says), "{}: {message}", c.what);
        assert!(
            !message.contains("4543600000000001"),
            "{}: a full card number: {message}",
            c.what
        );
    }
    assert!(sb.batches().is_empty(), "nothing refused is recorded");
}

#[tokio::test]
async fn the_refusal_status_is_configurable() {
    let mut config = bulk_config();
    config.refusal_status = axum::http::StatusCode::BAD_REQUEST;
    let sb = sandbox(config).await;
    let a = post(&sb, &Form::payments(b"", 1, "c")).await;
    assert_eq!(
        (a.status, a.error_code(), a.json["Result"].as_bool()),
        (400, 3, Some(false))
    );
}

#[tokio::test]
async fn transport_refusals_get_their_http_status() {
    let sb = sandbox(bulk_config()).await;
    let body = Form::payments(&p1_file(1), 1, "t").encode();
    let none = post_raw(&sb, body.clone(), &[]).await;
    assert_eq!((none.status, none.error_code()), (401, 4));
    let wrong = post_raw(
        &sb,
        body.clone(),
        &[("apikeypublic", "sandbox-key"), ("apiclientpublic", "nope")],
    )
    .await;
    assert_eq!((wrong.status, wrong.error_code()), (401, 401));
    assert!(
        !wrong.raw.contains("sandbox-key"),
        "a key in an answer: {}",
        wrong.raw
    );
    let zstd = post_raw(
        &sb,
        body.clone(),
        &[KEYS[0], KEYS[1], ("content-encoding", "zstd")],
    )
    .await;
    assert_eq!((zstd.status, zstd.error_code()), (415, 415));
    let json = http()
        .post(format!("{}{STARTDIRECT}", sb.base_url()))
        .header(KEYS[0].0, KEYS[0].1)
        .header(KEYS[1].0, KEYS[1].1)
        .json(&serde_json::json!({"FileFormat": 5}))
        .send()
        .await
        .unwrap();
    let json = answer(json).await;
    assert_eq!((json.status, json.error_code()), (400, 400));
    assert!(
        json.message().contains("multipart/form-data"),
        "{}",
        json.raw
    );
    let twice = Form::payments(&p1_file(1), 1, "t").text("FilePattern", "1");
    let twice = post(&sb, &twice).await;
    assert_eq!((twice.status, twice.error_code()), (400, 400));
    assert!(twice.message().contains("more than once"));
    let bad_gzip = Form::payments(b"not gzip at all", 1, "t")
        .without("File")
        .file("File", "p.txt.gz", "application/gzip", b"not gzip at all");
    let bad_gzip = post(&sb, &bad_gzip).await;
    assert_eq!((bad_gzip.status, bad_gzip.error_code()), (400, 400));
    assert!(bad_gzip.message().contains("gzip"), "{}", bad_gzip.raw);
    assert!(sb.batches().is_empty());
    assert_eq!(sb.requests(), 6);
}

/// The File part compressed every way the sandbox detects, decoded to the
/// exact bytes sent.
#[tokio::test]
async fn a_compressed_file_part_is_decoded_to_the_exact_bytes() {
    let sb = sandbox(bulk_config()).await;
    let file = p1_file(300);
    let gz = gzip(&file);
    let br = brotli(&file).await;
    let cases: [(&str, &str, &[u8], Codec); 5] = [
        ("payments.txt.gz", "application/gzip", &gz, Codec::Gzip),
        ("payments.txt", "application/octet-stream", &gz, Codec::Gzip),
        (
            "payments.txt.br",
            "application/octet-stream",
            &br,
            Codec::Brotli,
        ),
        ("payments.txt", "application/x-brotli", &br, Codec::Brotli),
        (
            "payments.bin",
            "application/octet-stream",
            &br,
            Codec::Brotli,
        ),
    ];
    for (i, (name, mime, bytes, codec)) in cases.into_iter().enumerate() {
        let form = Form::payments(b"", 1, &format!("batch-c{i}"))
            .without("File")
            .file("File", name, mime, bytes);
        let id = post(&sb, &form).await.bulk_payment_id();
        assert_eq!(sb.batch_file_bytes(id).unwrap(), file, "{name} {mime}");
        let b = sb
            .batches()
            .into_iter()
            .find(|b| b.bulk_payment_id == id)
            .unwrap();
        assert_eq!(
            (b.file_part_encoding, b.content_encoding),
            (Some(codec), None),
            "{name} {mime}"
        );
        assert_eq!(b.file_name.as_deref(), Some(name));
        assert_eq!(b.rows, 300);
    }
}

#[tokio::test]
async fn a_whole_body_content_encoding_is_decoded_and_recorded() {
    let sb = sandbox(bulk_config()).await;
    let file = p1_file(50);
    for (i, (codec, token)) in [(Codec::Gzip, "gzip"), (Codec::Brotli, "br")]
        .into_iter()
        .enumerate()
    {
        let body = Form::payments(&file, 1, &format!("batch-b{i}")).encode();
        let body = match codec {
            Codec::Gzip => gzip(&body),
            Codec::Brotli => brotli(&body).await,
        };
        let a = post_raw(&sb, body, &[KEYS[0], KEYS[1], ("content-encoding", token)]).await;
        let id = a.bulk_payment_id();
        assert_eq!(sb.batch_file_bytes(id).unwrap(), file);
        let b = sb
            .batches()
            .into_iter()
            .find(|b| b.bulk_payment_id == id)
            .unwrap();
        assert_eq!(
            (b.content_encoding, b.file_part_encoding),
            (Some(codec), None)
        );
    }
    // Both at once: a brotli File part inside a gzip body.
    let form = Form::payments(b"", 1, "batch-both").without("File").file(
        "File",
        "p.txt.br",
        "application/octet-stream",
        &brotli(&file).await,
    );
    let a = post_raw(
        &sb,
        gzip(&form.encode()),
        &[KEYS[0], KEYS[1], ("content-encoding", "gzip")],
    )
    .await;
    let id = a.bulk_payment_id();
    assert_eq!(sb.batch_file_bytes(id).unwrap(), file);
    let b = sb
        .batches()
        .into_iter()
        .find(|b| b.bulk_payment_id == id)
        .unwrap();
    assert_eq!(
        (b.content_encoding, b.file_part_encoding),
        (Some(Codec::Gzip), Some(Codec::Brotli))
    );
}

#[tokio::test]
async fn crlf_lines_and_a_byte_order_mark_are_read() {
    let sb = sandbox(bulk_config()).await;
    let mut file = b"\xef\xbb\xbf".to_vec();
    file.extend((0..3).flat_map(|i| (p1_row(i) + "\r\n").into_bytes()));
    let id = post(&sb, &Form::payments(&file, 1, "batch-crlf"))
        .await
        .bulk_payment_id();
    assert_eq!(sb.batches()[0].rows, 3);
    assert_eq!(sb.batch_file_bytes(id).unwrap(), file, "stored as sent");
    // The last line may also end without a newline.
    let file = p1_file(2);
    let a = post(
        &sb,
        &Form::payments(&file[..file.len() - 1], 1, "batch-nolf"),
    )
    .await;
    assert_eq!(a.json["Body"]["TotalRecords"], 2);
}

#[tokio::test]
async fn pattern_3_accepts_tckn_and_vkn() {
    let sb = sandbox(bulk_config()).await;
    let file = format!(
        "{P3_OK}54006100,1231,7341029584,75.25,2,ACME SIGORTA AS,POLICY-2,,,,ins-2,,,,,,,\n"
    );
    let a = post(&sb, &Form::payments(file.as_bytes(), 3, "batch-p3")).await;
    a.bulk_payment_id();
    let b = &sb.batches()[0];
    assert_eq!(
        (b.file_pattern, b.rows, b.amount),
        (3, 2, Decimal::new(32525, 2))
    );
}

#[tokio::test]
async fn the_row_limit_is_kept_with_a_small_configured_limit() {
    let mut config = bulk_config();
    config.max_rows = 5;
    let sb = sandbox(config).await;
    post(&sb, &Form::payments(&p1_file(5), 1, "batch-5"))
        .await
        .bulk_payment_id();
    let message = post(&sb, &Form::payments(&p1_file(6), 1, "batch-6"))
        .await
        .refused(2);
    assert!(message.contains("more than 5 transactions"), "{message}");
    assert_eq!(sb.batches().len(), 1);
    assert_eq!(paydrop_sandbox::bulk::Config::default().max_rows, 150_000);
}

#[tokio::test]
async fn currencies_come_from_the_configured_table() {
    let mut config = bulk_config();
    config.currencies = vec![
        Currency {
            id: 1,
            code: "TRY".into(),
            minor_units: 2,
        },
        Currency {
            id: 9,
            code: "JPY".into(),
            minor_units: 0,
        },
    ];
    let sb = sandbox(config).await;
    // GBP is 7 in the SDK's table, not in this one.
    post(
        &sb,
        &Form::payments(&p1_file(1), 1, "c-gbp").set("CurrencyId", "7"),
    )
    .await
    .refused(53);
    let yen = p1_with(2, "1500");
    post(
        &sb,
        &Form::payments(yen.as_bytes(), 1, "c-jpy").set("CurrencyId", "9"),
    )
    .await
    .bulk_payment_id();
    let sen = p1_with(2, "1500.5");
    let message = post(
        &sb,
        &Form::payments(sen.as_bytes(), 1, "c-jpy2").set("CurrencyId", "9"),
    )
    .await
    .refused(51);
    assert!(message.contains("the currency has 0"), "{message}");
    assert_eq!(sb.batches()[0].currency_id, 9);
}

#[tokio::test]
async fn an_amount_equal_to_the_total_is_accepted_however_written() {
    let sb = sandbox(bulk_config()).await;
    let file = p1_file(2); // 10.25 + 11.25
    post(&sb, &Form::payments(&file, 1, "a-1").text("Amount", "21.5"))
        .await
        .bulk_payment_id();
    post(
        &sb,
        &Form::payments(&file, 1, "a-2").text("Amount", "21.50"),
    )
    .await
    .bulk_payment_id();
    assert!(sb
        .batches()
        .iter()
        .all(|b| b.amount == Decimal::new(2150, 2) && b.amount_given));
}

#[tokio::test]
async fn a_repeated_batch_code_is_refused_by_default() {
    let sb = sandbox(bulk_config()).await;
    let first = post(&sb, &Form::payments(&p1_file(2), 1, "dup"))
        .await
        .bulk_payment_id();
    let message = post(&sb, &Form::payments(&p1_file(3), 1, "dup"))
        .await
        .refused(119);
    assert!(message.contains(&first.to_string()), "{message}");
    assert_eq!(sb.batches().len(), 1);
}

#[tokio::test]
async fn dedupe_answers_with_the_earlier_batch() {
    let mut config = bulk_config();
    config.duplicate_code = DuplicateCode::Dedupe;
    let sb = sandbox(config).await;
    let first = post(&sb, &Form::payments(&p1_file(2), 1, "dup"))
        .await
        .bulk_payment_id();
    let again = post(&sb, &Form::payments(&p1_file(3), 1, "dup")).await;
    assert_eq!(again.bulk_payment_id(), first);
    assert_eq!(again.json["Body"]["TotalRecords"], 2, "the earlier batch's");
    assert_eq!(sb.batches().len(), 1);
}

#[tokio::test]
async fn pay_again_creates_a_second_batch_under_the_same_code() {
    let mut config = bulk_config();
    config.duplicate_code = DuplicateCode::PayAgain;
    let sb = sandbox(config).await;
    let first = post(&sb, &Form::payments(&p1_file(2), 1, "dup"))
        .await
        .bulk_payment_id();
    let second = post(&sb, &Form::payments(&p1_file(2), 1, "dup"))
        .await
        .bulk_payment_id();
    assert_ne!(first, second);
    let batches = sb.batches();
    assert_eq!(batches.len(), 2);
    assert!(batches.iter().all(|b| b.merchant_unique_code == "dup"));
    let summary = get(&sb, SUMMARY, &[("merchantuniquecode", "dup")]).await;
    assert_eq!(
        summary.json["TotalPaymentCount"], 4,
        "both batches: {}",
        summary.raw
    );
}

#[tokio::test]
async fn racing_uploads_with_one_code_record_one_batch() {
    let sb = sandbox(bulk_config()).await;
    let form = Form::payments(&p1_file(200), 1, "race");
    let answers = futures::future::join_all((0..4).map(|_| post(&sb, &form))).await;
    assert_eq!(answers.iter().filter(|a| a.accepted()).count(), 1);
    assert_eq!(answers.iter().filter(|a| a.error_code() == 119).count(), 3);
    assert_eq!(sb.batches().len(), 1);
}
