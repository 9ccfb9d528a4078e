//! Issue 2: every kind of bad input gets a precise error (kind, line, column,
//! masked value, reason) and never a panic; good-but-unusual input (BOM,
//! header, CRLF, Windows-1254, JPY) is accepted with exact totals.

mod common;

use std::str::FromStr;

use common::*;
use paydrop::currency::Currency;
use paydrop::pattern::Pattern;
use paydrop::read::InputError;
use paydrop::validate::{validate_file, ErrorKind, Fatal, Hooks, Options};
use paydrop_generate::GenOptions;
use rust_decimal::Decimal;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

fn try_() -> Currency {
    Currency::lookup("TRY").expect("TRY")
}

#[test]
fn test_cards_are_luhn_valid_and_broken_ones_are_not() {
    for n in [0, 1, 2, 99, 123_456_789] {
        assert!(
            paydrop::validate::check::luhn(card(n).as_bytes()),
            "{}",
            card(n)
        );
        assert!(!paydrop::validate::check::luhn(
            luhn_broken(&card(n)).as_bytes()
        ));
    }
    let report = validate1(lines(&[row1(1), row1(2)]).as_bytes()).unwrap();
    assert!(report.is_valid(), "{:#?}", report.errors);
}

#[test]
fn empty_file_is_fatal_empty() {
    let e = validate1(b"").unwrap_err();
    assert!(matches!(e, Fatal::Empty), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the file is empty (0 bytes): there is nothing to submit"
    );
    // The same through a file on disk.
    let f = temp_file(b"");
    let e = validate_file(f.path(), &builtin(1), &options(), Hooks::default()).unwrap_err();
    assert!(matches!(e, Fatal::Empty), "{e:?}");
}

#[test]
fn header_only_is_fatal_no_rows() {
    for terminator in ["\n", "\r\n", ""] {
        let file = format!("{}{terminator}", header(&builtin(1)));
        let e = validate1(file.as_bytes()).unwrap_err();
        assert!(
            matches!(e, Fatal::NoRows { header: true }),
            "{terminator:?}: {e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the file has no payment rows (only a header row)"
        );
    }
}

#[test]
fn too_few_and_too_many_columns_name_their_lines() {
    let short = row1_cells(2)[..16].join(",");
    let long = format!("{},extra", row1(4));
    let file = lines(&[row1(1), short, row1(3), long, row1(5)]);
    let report = validate1(file.as_bytes()).unwrap();
    assert_eq!(
        error_list(&report),
        [(2, ErrorKind::ColumnCount), (4, ErrorKind::ColumnCount)]
    );
    let (few, many) = (&report.errors[0], &report.errors[1]);
    assert_eq!(few.row, 2);
    assert_eq!(few.column, None);
    assert_eq!(few.value, None);
    assert_eq!(
        few.reason,
        "has 16 fields; pattern 1 has 17 columns (check the delimiter ',' and that quotes are \
         closed)"
    );
    assert_eq!(many.row, 4);
    assert!(
        many.reason
            .starts_with("has 18 fields; pattern 1 has 17 columns"),
        "{many}"
    );
    assert_eq!(
        (report.rows_read, report.rows_valid, report.rows_invalid),
        (5, 3, 2)
    );
    // Only the valid rows are totalled.
    assert_eq!(report.totals.amount(try_()), dec("301.50"));
}

#[test]
fn quote_left_open_in_a_middle_column_is_a_column_count_error_on_its_line() {
    // The quote opens in cardOwnerName on line 2 and is never closed: the
    // parser swallows the rest of the file into that cell, so row 2 has 5
    // fields and rows 3 and 4 disappear.
    let open = row1_with(2, 4, "\"Ayşe Yılmaz");
    let file = lines(&[row1(1), open, row1(3), row1(4)]);
    let report = validate1(file.as_bytes()).unwrap();
    let e = single_error(&report);
    assert_eq!((e.line, e.row, e.kind), (2, 2, ErrorKind::ColumnCount));
    assert_eq!(
        e.reason,
        "has 5 fields; pattern 1 has 17 columns (check the delimiter ',' and that quotes are \
         closed)"
    );
    assert_eq!(
        (report.rows_read, report.rows_valid, report.rows_invalid),
        (2, 1, 1)
    );
    assert_no_card_in(
        &serde_json::to_string(&report).unwrap(),
        &card_numbers(file.as_bytes()),
        "the report",
    );
}

#[test]
fn quote_left_open_in_the_last_column_is_a_control_char_error_on_its_line() {
    // Opened in posId (the last column), the swallowed lines stay inside one
    // cell: 17 fields, and the cell holds line breaks.
    let open = row1_with(2, 16, "\"");
    let file = lines(&[row1(1), open, row1(3), row1(4)]);
    let report = validate1(file.as_bytes()).unwrap();
    let e = single_error(&report);
    assert_eq!((e.line, e.row, e.kind), (2, 2, ErrorKind::ControlChar));
    assert_eq!(e.column.as_deref(), Some("posId"));
    assert_eq!(
        e.reason,
        "contains a line break: a quote opened here is probably not closed (it swallowed 2 \
         following line(s))"
    );
    // The value shows what was swallowed, with the cards in it masked.
    let value = e.value.as_deref().unwrap();
    let masked3 = paydrop::mask::card(&card(3));
    assert!(
        value.starts_with(&format!("\\n{masked3},12/30,100.50,3,")),
        "{value}"
    );
    assert!(value.ends_with('…'), "long values are cut: {value}");
    assert_eq!(
        (report.rows_read, report.rows_valid, report.rows_invalid),
        (2, 1, 1)
    );
    assert_no_card_in(
        &serde_json::to_string(&report).unwrap(),
        &card_numbers(file.as_bytes()),
        "the report",
    );
}

#[test]
fn nul_byte_is_a_control_char_error() {
    let file = lines(&[row1(1), row1_with(2, 4, "Ay\0şe"), row1(3)]);
    let report = validate1(file.as_bytes()).unwrap();
    let e = single_error(&report);
    assert_eq!((e.line, e.row, e.kind), (2, 2, ErrorKind::ControlChar));
    assert_eq!(e.column.as_deref(), Some("cardOwnerName"));
    assert_eq!(e.value.as_deref(), Some("Ay\\0şe"));
    assert_eq!(
        e.reason,
        "contains a NUL byte (0x00): the file is damaged or not text"
    );
    assert_eq!((report.rows_valid, report.rows_invalid), (2, 1));
}

#[test]
fn invalid_utf8_in_a_utf8_pattern_is_fatal_naming_line_and_column() {
    // "Ay\xDEe": a Windows-1254 'Ş' in a UTF-8 file.
    let mut file = lines(&[row1(1), row1(2)]).into_bytes();
    let row3 = row1_with(3, 4, "Ay?e");
    file.extend(row3.bytes().map(|b| if b == b'?' { 0xDE } else { b }));
    file.push(b'\n');
    let e = validate1(&file).unwrap_err();
    match &e {
        Fatal::Encoding {
            line,
            column,
            detail,
        } => {
            assert_eq!(*line, 3);
            assert_eq!(column, "cardOwnerName");
            assert_eq!(detail, "byte 0xDE");
        }
        other => panic!("expected Fatal::Encoding, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.starts_with("line 3, column cardOwnerName: not valid UTF-8 (byte 0xDE)"),
        "{msg}"
    );
    assert!(msg.contains("encoding = \"windows-1254\""), "{msg}");
}

#[test]
fn a_delimiter_inside_a_utf8_character_is_an_encoding_error() {
    // "Ayşe" with a comma between the two bytes of 'ş' (C5 9F): the record
    // as a whole is valid UTF-8, its cells are not.
    let mut file = lines(&[row1(1)]).into_bytes();
    let row2 = row1(2).replace("Ayşe Yılmaz,", "Ay\u{1},\u{2}e Yılmaz");
    file.extend(row2.bytes().map(|b| match b {
        1 => 0xC5,
        2 => 0x9F,
        b => b,
    }));
    file.push(b'\n');
    match validate1(&file).unwrap_err() {
        Fatal::Encoding {
            line,
            column,
            detail,
        } => assert_eq!(
            (line, column.as_str(), detail.as_str()),
            (2, "cardOwnerName", "byte 0xC5")
        ),
        other => panic!("expected Fatal::Encoding, got {other:?}"),
    }
}

/// A file with a header, CRLF and LF rows, a blank line and no final line
/// break, and the line each data row starts on.
fn mixed_line_endings(rows: &[String]) -> (String, Vec<u64>) {
    assert_eq!(rows.len(), 5);
    let file = format!(
        "{}\r\n{}\r\n{}\n{}\r\n\r\n{}\n{}",
        header(&builtin(1)),
        rows[0],
        rows[1],
        rows[2],
        rows[3],
        rows[4]
    );
    (file, vec![2, 3, 4, 6, 7])
}

#[test]
fn crlf_and_lf_mixed_are_all_valid_with_the_right_line_numbers() {
    let rows: Vec<String> = (1..=5).map(row1).collect();
    let (file, starts) = mixed_line_endings(&rows);
    // One row per part: each part says where its row starts.
    let opts = Options {
        split_rows: 1,
        ..options()
    };
    let report = validate_bytes(file.as_bytes(), &builtin(1), &opts).unwrap();
    assert!(report.is_valid(), "{:#?}", report.errors);
    assert!(report.header_row);
    assert_eq!(report.rows_read, 5);
    assert_eq!(report.header_bytes, header(&builtin(1)).len() as u64 + 2);
    let first_lines: Vec<u64> = report.parts.iter().map(|p| p.first_line).collect();
    assert_eq!(first_lines, starts);
    // Each part's bytes are its row and its line break(s), nothing else.
    let bytes = file.as_bytes();
    let slices: Vec<&str> = report
        .parts
        .iter()
        .map(|p| std::str::from_utf8(&bytes[p.byte_start as usize..p.byte_end as usize]).unwrap())
        .collect();
    let expected = [
        format!("{}\r\n", rows[0]),
        format!("{}\n", rows[1]),
        format!("{}\r\n\r\n", rows[2]),
        format!("{}\n", rows[3]),
        rows[4].clone(),
    ];
    assert_eq!(slices, expected);
    assert_eq!(report.totals.amount(try_()), dec("502.50"));
}

#[test]
fn crlf_and_lf_mixed_errors_and_duplicates_name_the_right_lines() {
    let mut rows: Vec<String> = (1..=5).map(row1).collect();
    rows[3] = row1_with(4, 2, "x");
    rows[4] = row1_with(5, 9, "MUC-2");
    let (file, _) = mixed_line_endings(&rows);
    // On disk, so that the duplicate's first occurrence is looked up.
    let f = temp_file(file.as_bytes());
    let report = validate_file(f.path(), &builtin(1), &options(), Hooks::default()).unwrap();
    assert_eq!(
        error_list(&report),
        [(6, ErrorKind::Decimal), (7, ErrorKind::Duplicate)]
    );
    assert_eq!(report.errors[1].row, 5);
    assert_eq!(
        report.errors[1].reason,
        "merchantUniqueCode is also used on line 3; it must be unique"
    );
}

#[test]
fn lone_cr_line_breaks_count_as_lines() {
    // Old Mac exports end lines with a bare CR.
    let file = format!("{}\r{}\r{}\r", row1(1), row1_with(2, 2, "1e5"), row1(3));
    let report = validate1(file.as_bytes()).unwrap();
    assert_eq!(error_list(&report), [(2, ErrorKind::Decimal)]);
    assert_eq!(report.rows_valid, 2);
}

#[test]
fn ten_megabyte_line_is_refused_unless_the_limit_is_raised() {
    // A whole file on one line: nothing is buffered beyond the limit.
    let huge = "a".repeat(10 << 20);
    let file = format!("{}\n{}\n", row1(1), row1_with(2, 4, &huge));
    let e = validate1(file.as_bytes()).unwrap_err();
    match &e {
        Fatal::Input(InputError::LineTooLong { line, limit }) => {
            assert_eq!((*line, *limit), (2, 1 << 20));
        }
        other => panic!("expected LineTooLong, got {other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "line 2 is longer than 1048576 bytes; this is not a payment file (or raise \
         --max-line-bytes)"
    );

    // With the limit raised it is an ordinary row error.
    let opts = Options {
        max_line_bytes: 16 << 20,
        ..options()
    };
    let report = validate_bytes(file.as_bytes(), &builtin(1), &opts).unwrap();
    let e = single_error(&report);
    assert_eq!((e.line, e.kind), (2, ErrorKind::Length));
    assert_eq!(e.column.as_deref(), Some("cardOwnerName"));
    assert_eq!(e.reason, "has 10485760 characters; at most 100 allowed");
    assert_eq!(
        e.value.as_deref(),
        Some(format!("{}…", &huge[..80]).as_str())
    );
    assert_eq!((report.rows_valid, report.rows_invalid), (1, 1));
}

#[test]
fn a_file_without_line_breaks_is_refused_at_line_one() {
    let file = "x".repeat(3 << 20);
    let e = validate1(file.as_bytes()).unwrap_err();
    assert!(
        matches!(
            e,
            Fatal::Input(InputError::LineTooLong {
                line: 1,
                limit: 1048576
            })
        ),
        "{e:?}"
    );
}

/// A CSV cell holding `v` (quoted when it holds the delimiter).
fn quoted(v: &str) -> String {
    if v.contains(',') {
        format!("\"{v}\"")
    } else {
        v.to_string()
    }
}

#[test]
fn malformed_amounts_get_their_own_kinds() {
    let cases = [
        ("1e5", ErrorKind::Decimal, "uses exponent notation; write the number in plain digits (100000, not 1e5)"),
        ("-0", ErrorKind::Range, "must not be negative (minimum 0.01)"),
        ("12.345", ErrorKind::Scale, "has 3 decimal places; at most 2 allowed"),
        ("1.234,56", ErrorKind::Decimal, "contains ',': this pattern's decimal separator is '.' and numbers must not contain thousands grouping"),
        ("NaN", ErrorKind::Decimal, "is not a number"),
    ];
    let mut rows = vec![row1(1)];
    rows.extend(
        cases
            .iter()
            .enumerate()
            .map(|(i, (amount, _, _))| row1_with(i as u64 + 2, 2, &quoted(amount))),
    );
    let report = validate1(lines(&rows).as_bytes()).unwrap();
    assert_eq!(report.errors.len(), cases.len(), "{:#?}", report.errors);
    for (i, ((amount, kind, reason), e)) in cases.iter().zip(&report.errors).enumerate() {
        assert_eq!((e.line, e.kind), (i as u64 + 2, *kind), "{amount}");
        assert_eq!(e.column.as_deref(), Some("amount"));
        assert_eq!(e.value.as_deref(), Some(*amount));
        assert_eq!(e.reason, *reason, "{amount}");
    }
    assert_eq!(report.totals.amount(try_()), dec("100.50"));
    assert_eq!(report.totals.rows(), 1);
}

#[test]
fn duplicate_one_hundred_thousand_rows_apart_names_the_first_line() {
    let pattern = builtin(1);
    let opts = GenOptions {
        header: Some(true),
        ..gen_options(100_001, 0.0, 11)
    };
    let (bytes, generated) = generate_bytes(&pattern, &opts);
    assert!(generated.planted.is_empty());
    // Row 100,001 (line 100,002) reuses row 1's code (line 2).
    let text = String::from_utf8(bytes).unwrap();
    let (first, last) = ("PD-11-00000001", "PD-11-00100001");
    assert_eq!(text.matches(last).count(), 1);
    let text = text.replace(last, first);
    let f = temp_file(text.as_bytes());

    let report = validate_file(f.path(), &pattern, &options(), Hooks::default()).unwrap();
    let e = single_error(&report);
    assert_eq!(
        (e.line, e.row, e.kind),
        (100_002, 100_001, ErrorKind::Duplicate)
    );
    assert_eq!(e.column.as_deref(), Some("merchantUniqueCode"));
    assert_eq!(e.value.as_deref(), Some(first));
    assert_eq!(
        e.reason,
        "merchantUniqueCode is also used on line 2; it must be unique"
    );
    assert_eq!((report.rows_valid, report.rows_invalid), (100_000, 1));

    // A reader cannot be read twice: the reason then names no line.
    let report = validate_bytes(text.as_bytes(), &pattern, &options()).unwrap();
    assert_eq!(
        single_error(&report).reason,
        "merchantUniqueCode is already used by an earlier row; it must be unique"
    );
}

#[test]
fn luhn_failure_is_masked_everywhere() {
    let bad = luhn_broken(&card(2));
    let file = lines(&[row1(1), row1_with(2, 0, &bad), row1(3)]);
    let report = validate1(file.as_bytes()).unwrap();
    let e = single_error(&report);
    assert_eq!((e.line, e.kind), (2, ErrorKind::Luhn));
    assert_eq!(e.column.as_deref(), Some("cardNumber"));
    let masked = format!("{}******{}", &bad[..6], &bad[12..]);
    assert_eq!(e.value.as_deref(), Some(masked.as_str()));
    assert_eq!(
        e.reason,
        "card number fails the Luhn check: a digit is mistyped"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "line 2, cardNumber '{masked}': card number fails the Luhn check: a digit is mistyped"
        )
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains(&masked));
    assert_no_card_in(&json, &card_numbers(file.as_bytes()), "the report JSON");
}

#[test]
fn card_number_in_the_wrong_column_is_masked_too() {
    // A row shifted by one cell puts the card number in expiryDate.
    let mut cells = row1_cells(2);
    cells.insert(0, String::new());
    cells.pop();
    let file = lines(&[row1(1), cells.join(",")]);
    let report = validate1(file.as_bytes()).unwrap();
    let expiry = report
        .errors
        .iter()
        .find(|e| e.kind == ErrorKind::ExpiryFormat)
        .expect("expiry error");
    assert_eq!(expiry.value, Some(paydrop::mask::card(&card(2))));
    assert_no_card_in(
        &serde_json::to_string(&report).unwrap(),
        &[card(2)],
        "the report JSON",
    );
}

#[test]
fn expiry_before_the_payment_month_is_expired() {
    // as_of is 2026-03-15: 03/26 is still good, 02/26 is not.
    let file = lines(&[row1_with(1, 1, "03/26"), row1_with(2, 1, "02/26")]);
    let report = validate1(file.as_bytes()).unwrap();
    let e = single_error(&report);
    assert_eq!((e.line, e.kind), (2, ErrorKind::Expired));
    assert_eq!(e.value.as_deref(), Some("02/26"));
    assert_eq!(
        e.reason,
        "card expired at the end of 02/2026; the payment date is 2026-03-15"
    );
    // A month later the first card has expired too.
    let opts = Options {
        as_of: chrono::NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
        ..options()
    };
    let report = validate_bytes(file.as_bytes(), &builtin(1), &opts).unwrap();
    assert_eq!(
        error_list(&report),
        [(1, ErrorKind::Expired), (2, ErrorKind::Expired)]
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut out = Vec::new();
        async_compression::tokio::bufread::GzipEncoder::new(bytes)
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    })
}

#[test]
fn truncated_gzip_file_is_refused_as_compressed() {
    let rows: Vec<String> = (1..=200).map(row1).collect();
    let gz = gzip(lines(&rows).as_bytes());
    let f = temp_file(&gz[..gz.len() / 2]);
    let e = validate_file(f.path(), &builtin(1), &options(), Hooks::default()).unwrap_err();
    assert!(
        matches!(e, Fatal::Input(InputError::Compressed("gzip"))),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "the file is gzip-compressed, not delimited text; paydrop compresses on its own: pass \
         the uncompressed file"
    );
}

#[test]
fn utf8_byte_order_mark_is_accepted() {
    let with_header = format!(
        "\u{feff}{}\n{}",
        header(&builtin(1)),
        lines(&[row1(1), row1(2)])
    );
    let report = validate1(with_header.as_bytes()).unwrap();
    assert!(report.is_valid(), "{:#?}", report.errors);
    assert!(report.header_row);
    assert_eq!(
        report.header_bytes,
        3 + header(&builtin(1)).len() as u64 + 1
    );
    assert_eq!(report.rows_read, 2);

    let without_header = format!("\u{feff}{}", lines(&[row1(1), row1_with(2, 2, "x")]));
    let report = validate1(without_header.as_bytes()).unwrap();
    assert!(!report.header_row);
    // The first card number is read without the mark in front of it.
    assert_eq!(error_list(&report), [(2, ErrorKind::Decimal)]);
}

#[test]
fn pattern_1_header_is_detected_and_counted_as_line_1() {
    let body = [row1(1), row1_with(2, 4, ""), row1(3)];
    let mut with = vec![header(&builtin(1)).to_uppercase()];
    with.extend(body.iter().cloned());
    let report = validate1(lines(&with).as_bytes()).unwrap();
    assert!(report.header_row);
    let e = single_error(&report);
    assert_eq!((e.line, e.row, e.kind), (3, 2, ErrorKind::Required));
    assert_eq!(e.reason, "is required but empty");
    assert_eq!(report.rows_read, 3);

    let report = validate1(lines(&body).as_bytes()).unwrap();
    assert!(!report.header_row);
    assert_eq!(report.header_bytes, 0);
    assert_eq!(error_list(&report), [(2, ErrorKind::Required)]);
}

const BANK_PATTERN: &str = r#"
id = 41
name = "Bank export (Windows-1254)"
delimiter = ";"
header = true
encoding = "windows-1254"
decimal_separator = ","

[[columns]]
name = "kart"
type = "card_number"

[[columns]]
name = "ad"
type = "string"
min_len = 2
max_len = 12

[[columns]]
name = "tutar"
type = "decimal"
scale = 2
min = "0.01"
amount = true
"#;

#[test]
fn windows_1254_pattern_with_semicolons_and_decimal_commas_totals_exactly() {
    let pattern = Pattern::from_toml(BANK_PATTERN, "bank.toml").unwrap();
    let text = format!(
        "kart;ad;tutar\r\n{};Şükrü Çağlar;1234,56\r\n{};İbrahim Işık;0,01\r\n{};Gülşen Öğüt;99999999,99\r\n{};Ömer Şahinoğlu;5,00\r\n{};Ayşe;1.234,56\r\n",
        card(1),
        card(2),
        card(3),
        card(4),
        card(5)
    );
    let (encoded, _, unmappable) = encoding_rs::WINDOWS_1254.encode(&text);
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&encoded).is_err(),
        "the bytes are not UTF-8"
    );
    assert!(encoded.contains(&0xDE), "'Ş' is one byte");

    // 99,999,999.99 is above the default bound of a row.
    let report = validate_bytes(&encoded, &pattern, &unbounded_options()).unwrap();
    assert!(report.header_row);
    assert_eq!(
        error_list(&report),
        [(5, ErrorKind::Length), (6, ErrorKind::Decimal)]
    );
    // Lengths count letters (one byte each), and values print as Unicode.
    let long = &report.errors[0];
    assert_eq!(long.value.as_deref(), Some("Ömer Şahinoğlu"));
    assert_eq!(long.reason, "has 14 characters; at most 12 allowed");
    assert_eq!(
        report.errors[1].reason,
        "contains '.': this pattern's decimal separator is ',' and numbers must not contain \
         thousands grouping"
    );
    assert_eq!(report.totals.amount(try_()), dec("100001234.56"));
    assert_eq!(report.totals.rows(), 3);

    // The same bytes under a UTF-8 pattern are refused at the first 'Ş'.
    let utf8 = BANK_PATTERN.replace("windows-1254", "utf-8");
    let pattern = Pattern::from_toml(&utf8, "bank-utf8.toml").unwrap();
    match validate_bytes(&encoded, &pattern, &options()).unwrap_err() {
        Fatal::Encoding { line, column, .. } => assert_eq!((line, column.as_str()), (2, "ad")),
        other => panic!("expected Fatal::Encoding, got {other:?}"),
    }
}

#[test]
fn jpy_refuses_minor_units() {
    let opts = Options {
        currency: Currency::lookup("JPY").unwrap(),
        ..options()
    };
    let file = lines(&[
        row1_with(1, 2, "1250"),
        row1_with(2, 2, "12.50"),
        row1_with(3, 2, "7"),
    ]);
    let report = validate_bytes(file.as_bytes(), &builtin(1), &opts).unwrap();
    let e = single_error(&report);
    assert_eq!((e.line, e.kind), (2, ErrorKind::Scale));
    assert_eq!(e.column.as_deref(), Some("amount"));
    assert_eq!(e.value.as_deref(), Some("12.50"));
    assert_eq!(
        e.reason,
        "JPY has no minor unit: amounts must be whole numbers"
    );
    let jpy = report.totals.iter().collect::<Vec<_>>();
    assert_eq!(jpy.len(), 1);
    assert_eq!(
        (jpy[0].currency, jpy[0].rows, jpy[0].amount),
        ("JPY", 2, dec("1257"))
    );
}

#[test]
fn total_overflow_is_a_row_error_not_a_panic() {
    let src = r#"
id = 42
name = "Unbounded"
header = false

[[columns]]
name = "ref"
type = "string"

[[columns]]
name = "amount"
type = "decimal"
amount = true
"#;
    let pattern = Pattern::from_toml(src, "unbounded.toml").unwrap();
    let big = "50000000000000000000000000000";
    let file = format!("a,{big}\nb,{big}\nc,1\n");
    let report = validate_bytes(file.as_bytes(), &pattern, &unbounded_options()).unwrap();
    let e = single_error(&report);
    assert_eq!((e.line, e.row, e.kind), (2, 2, ErrorKind::Overflow));
    assert_eq!(e.column.as_deref(), Some("amount"));
    // Masked like any run of 12 or more digits: it could be a card number.
    let shown = "500000*******************0000";
    assert_eq!(
        e.reason,
        format!("adding {shown} to the TRY total {shown} overflows; split the file")
    );
    assert_eq!((report.rows_valid, report.rows_invalid), (2, 1));
    assert_eq!(report.totals.amount(try_()), dec(big) + Decimal::ONE);
}

#[test]
fn more_rows_than_one_submission_are_split_into_parts_that_add_up() {
    let pattern = builtin(1);
    let (bytes, generated) = generate_bytes(&pattern, &gen_options(200_001, 0.0, 5));
    let report = validate_bytes(&bytes, &pattern, &options()).unwrap();
    assert!(report.is_valid());
    assert_eq!(report.split_rows, 150_000);
    assert_eq!(report.totals, generated.totals);

    let parts: Vec<(u32, u64, u64, u64)> = report
        .parts
        .iter()
        .map(|p| (p.index, p.first_row, p.first_line, p.rows))
        .collect();
    assert_eq!(parts, [(1, 1, 1, 150_000), (2, 150_001, 150_001, 50_001)]);
    // The parts cover the file's bytes exactly, and part 2 starts on a row.
    assert_eq!(report.parts[0].byte_start, 0);
    assert_eq!(report.parts[0].byte_end, report.parts[1].byte_start);
    assert_eq!(report.parts[1].byte_end, bytes.len() as u64);
    assert_eq!(bytes[report.parts[1].byte_start as usize - 1], b'\n');

    for t in report.totals.iter() {
        let currency = Currency::lookup(t.currency).unwrap();
        let sum: Decimal = report.parts.iter().map(|p| p.totals.amount(currency)).sum();
        assert_eq!(sum, t.amount, "{}", t.currency);
    }
    let rows: u64 = report.parts.iter().map(|p| p.totals.rows()).sum();
    assert_eq!(rows, 200_001);
    assert_eq!(
        report.warnings,
        [
            "200001 rows is more than 150000 per submission: the file will be submitted as 2 \
          parts (rows 1–150000, 150001–200001)"
        ]
    );
}

#[test]
fn a_missing_required_header_is_reported_without_showing_the_card() {
    let src = r#"
id = 43
name = "Header required"
header = true

[[columns]]
name = "card"
type = "card_number"

[[columns]]
name = "amount"
type = "decimal"
amount = true
"#;
    let pattern = Pattern::from_toml(src, "header.toml").unwrap();
    let file = format!("{},10.00\n{},5.00\n", card(1), card(2));
    let report = validate_bytes(file.as_bytes(), &pattern, &options()).unwrap();
    let e = single_error(&report);
    assert_eq!((e.line, e.row, e.kind), (1, 0, ErrorKind::Header));
    assert_eq!(
        e.reason,
        format!(
            "header does not match pattern 43: expected card,amount, found {},10.00",
            paydrop::mask::card(&card(1))
        )
    );
    assert_eq!(report.rows_read, 1);
    assert_no_card_in(
        &serde_json::to_string(&report).unwrap(),
        &[card(1), card(2)],
        "the report JSON",
    );
}

/// Pattern 1 with `header = false`.
fn headerless_1() -> Pattern {
    let toml = builtin(1)
        .to_toml()
        .replace("header = \"auto\"", "header = false");
    let p = Pattern::from_toml(&toml, "headerless.toml").unwrap();
    assert_eq!(p.header, paydrop::pattern::Header::Absent);
    p
}

#[test]
fn a_header_row_in_a_headerless_pattern_is_one_error_not_a_cascade() {
    let p = headerless_1();
    let file = lines(&[
        header(&p),
        row1(1),
        row1(2),
        row1_with(3, 0, &luhn_broken(&card(3))),
    ]);
    let report = validate_bytes(file.as_bytes(), &p, &options()).unwrap();
    assert_eq!(
        error_list(&report),
        [(1, ErrorKind::Header), (4, ErrorKind::Luhn)],
        "{:#?}",
        report.errors
    );
    let reason = &report.errors[0].reason;
    assert!(
        reason.starts_with("looks like a header (it holds the column names cardNumber, expiryDate"),
        "{reason}"
    );
    assert!(
        reason.contains("remove the line, or use a pattern with header = true"),
        "{reason}"
    );
    // The rows after it are validated and numbered as data rows 1, 2, 3.
    assert_eq!((report.rows_read, report.rows_valid), (3, 2));
    assert_eq!(report.errors[1].row, 3);
}

#[test]
fn a_header_of_other_names_is_recognised_by_having_no_digits() {
    let names = [
        "Kart No", "SKT", "Tutar", "Sira", "Ad Soyad", "Takip", "", "", "", "Kod", "", "", "", "",
        "", "", "",
    ];
    let file = lines(&[names.join(","), row1(1)]);
    let report = validate1(file.as_bytes()).unwrap();
    assert_eq!(
        error_list(&report),
        [(1, ErrorKind::Header)],
        "{:#?}",
        report.errors
    );
    let reason = &report.errors[0].reason;
    assert!(
        reason.contains("no digits: Kart No, SKT, Tutar, Sira, Ad Soyad, Takip"),
        "{reason}"
    );
    assert_eq!((report.rows_read, report.rows_valid), (1, 1));

    // A first data row with mistakes is not taken for a header.
    let file = lines(&[row1_with(1, 2, "abc"), row1(2)]);
    let report = validate1(file.as_bytes()).unwrap();
    assert_eq!(error_list(&report), [(1, ErrorKind::Decimal)]);
}

#[test]
fn a_semicolon_file_gets_one_delimiter_hint() {
    let rows: Vec<String> = (1..=30).map(|i| row1(i).replace(',', ";")).collect();
    let opts = Options {
        max_errors: 10,
        ..options()
    };
    let report = validate_bytes(lines(&rows).as_bytes(), &builtin(1), &opts).unwrap();
    assert_eq!((report.errors_total, report.errors_not_shown), (30, 20));
    assert!(report
        .errors
        .iter()
        .all(|e| e.kind == ErrorKind::ColumnCount));
    let hint = "rows have 1 field; with ';' they would have 17: the file looks \
                semicolon-delimited; pattern 1 expects ','";
    assert!(
        report.errors[0].reason.starts_with(hint),
        "{}",
        report.errors[0].reason
    );
    let full: Vec<_> = report
        .errors
        .iter()
        .filter(|e| e.reason.contains("semicolon-delimited"))
        .collect();
    assert_eq!(full.len(), 1, "{:#?}", report.errors);
    assert!(
        report.errors[1]
            .reason
            .starts_with("has 1 field; with ';' it would have 17"),
        "{}",
        report.errors[1].reason
    );
    let warned: Vec<_> = report
        .warnings
        .iter()
        .filter(|w| w.contains("semicolon-delimited"))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", report.warnings);

    // One field that no other delimiter explains keeps the plain message.
    let report = validate1(b"just-one-cell\n").unwrap();
    assert!(
        single_error(&report)
            .reason
            .starts_with("has 1 field; pattern 1 has 17 columns (check the delimiter ','"),
        "{}",
        single_error(&report).reason
    );
}

#[test]
fn a_decimal_comma_is_named_and_thousands_grouping_keeps_its_message() {
    for (amount, needle) in [
        ("\"0,01\"", "decimal comma: write 0.01"),
        ("\"12,50\"", "decimal comma: write 12.50"),
        ("\"1,234.56\"", "thousands grouping"),
    ] {
        let report = validate1(lines(&[row1_with(1, 2, amount)]).as_bytes()).unwrap();
        let e = single_error(&report);
        assert_eq!(e.kind, ErrorKind::Decimal, "{amount}");
        assert!(e.reason.contains(needle), "{amount}: {}", e.reason);
        if needle.starts_with("decimal") {
            assert!(!e.reason.contains("grouping"), "{}", e.reason);
        }
    }
}

#[test]
fn an_excel_scientific_card_number_shows_its_shape_not_a_masked_blank() {
    for (cell, shape) in [("4.54E+15", "4.54E+15"), ("\"4,54E+15\"", "4,54E+15")] {
        let report = validate1(lines(&[row1_with(1, 0, cell)]).as_bytes()).unwrap();
        let e = single_error(&report);
        assert_eq!(e.kind, ErrorKind::CardNumber);
        assert_eq!(e.value.as_deref(), Some(shape));
        assert!(
            e.reason.starts_with(&format!(
                "looks like Excel scientific notation ({shape}): the card number was lost when \
                 the file was saved from Excel; format the column as text"
            )),
            "{}",
            e.reason
        );
    }
    // A mantissa with more digits than a card may show is cut to six.
    let report = validate1(lines(&[row1_with(1, 0, "4.506349116E+15")]).as_bytes()).unwrap();
    let e = single_error(&report);
    assert_eq!(e.value.as_deref(), Some("4.50634****E+15"));
    assert!(e.reason.contains("(4.50634****E+15)"), "{}", e.reason);
}

#[test]
fn a_spreadsheet_is_named_as_one_not_as_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let mut xlsx = b"PK\x03\x04".to_vec();
    xlsx.extend_from_slice(&[0; 26]);
    xlsx.extend_from_slice(b"xl/workbook.xml");
    let ole = vec![0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, 0, 0, 0, 0];
    for (name, bytes, kind) in [
        ("payments.csv", &xlsx, "an Excel workbook (.xlsx)"),
        ("payments.xls", &ole, "an Excel 97–2003 workbook (.xls)"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = validate_file(&path, &builtin(1), &options(), Hooks::default()).unwrap_err();
        assert!(
            matches!(e, Fatal::Spreadsheet { kind: k, .. } if k == kind),
            "{e:?}"
        );
        let m = e.to_string();
        assert!(m.contains("save it as \"CSV UTF-8\""), "{m}");
        assert!(!m.contains("compresses on its own"), "{m}");
    }
    // A zip that is not a workbook is still refused as compressed.
    let path = dir.path().join("payments.zip");
    std::fs::write(&path, b"PK\x03\x04\0\0\0\0payments.csv").unwrap();
    let e = validate_file(&path, &builtin(1), &options(), Hooks::default()).unwrap_err();
    assert!(
        matches!(e, Fatal::Input(InputError::Compressed(_))),
        "{e:?}"
    );
}
