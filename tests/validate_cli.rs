//! Issue 2 through the command line: exit codes, the JSON report and the
//! errors TSV, masking in everything printed, `patterns` and `gen`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// A scratch folder; its `patterns` subfolder does not exist unless a test
/// makes it.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, bytes).expect("write");
        path
    }

    fn paydrop(&self) -> std::process::Command {
        paydrop(&self.path("patterns"))
    }

    /// `paydrop validate -p <pattern> --as-of … <file> <extra…>`.
    fn validate(&self, pattern: &str, file: &Path, extra: &[&str]) -> (i32, String, String) {
        let mut cmd = self.paydrop();
        cmd.args(["validate", "-p", pattern, "--as-of", AS_OF_ARG])
            .arg(file)
            .args(extra);
        outcome(&run(&mut cmd))
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).expect("read JSON")).expect("valid JSON")
}

/// A pattern-1 file with five kinds of error among valid rows.
fn file_with_errors() -> String {
    lines(&[
        row1(1),
        row1_with(2, 0, &luhn_broken(&card(2))),
        row1_with(3, 2, "1e5"),
        row1(4),
        row1_cells(5)[..16].join(","),
        row1_with(6, 1, "02/26"),
        row1_with(7, 9, "MUC-1"),
        row1(8),
    ])
}

const FILE_WITH_ERRORS: [(u64, &str); 5] = [
    (2, "luhn"),
    (3, "decimal"),
    (5, "column_count"),
    (6, "expired"),
    (7, "duplicate"),
];

#[test]
fn exit_code_0_for_a_valid_file() {
    let s = Scratch::new();
    let file = s.write("ok.csv", lines(&[row1(1), row1(2), row1(3)]).as_bytes());
    let (code, out, err) = s.validate("1", &file, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "{}: VALID, 3 rows, TRY 301.50 over 3 rows",
            file.display()
        )),
        "{out}"
    );
    assert!(out.contains("rows     3 read, 3 valid, 0 invalid"), "{out}");

    let (code, out, _) = s.validate("1", &file, &["--quiet"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim_end(),
        format!("{}: VALID, 3 rows, TRY 301.50 over 3 rows", file.display())
    );
}

#[test]
fn exit_code_1_for_invalid_rows() {
    let s = Scratch::new();
    let file = s.write("bad.csv", file_with_errors().as_bytes());
    let (code, out, err) = s.validate("1", &file, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "{}: INVALID, 5 of 8 rows have errors (5 errors)",
            file.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("line 3, amount '1e5': uses exponent notation"),
        "{out}"
    );
    assert!(
        out.contains(
            "line 7, merchantUniqueCode 'MUC-1': merchantUniqueCode is also used on line 1"
        ),
        "{out}"
    );
}

#[test]
fn exit_code_2_for_a_missing_file() {
    let s = Scratch::new();
    let missing = s.path("nope.csv");
    let (code, out, err) = s.validate("1", &missing, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!("cannot open {}", missing.display())),
        "{err}"
    );
}

#[test]
fn exit_code_2_for_an_unknown_pattern() {
    let s = Scratch::new();
    let file = s.write("ok.csv", lines(&[row1(1)]).as_bytes());
    let (code, out, err) = s.validate("2", &file, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("pattern 2 is not defined (known: 1, 3)"),
        "{err}"
    );
    assert!(err.contains("patterns folder"), "{err}");
}

#[test]
fn exit_code_2_for_gzip_input() {
    let s = Scratch::new();
    // The gzip magic and method, then garbage: a truncated .gz.
    let file = s.write(
        "payments.csv.gz",
        &[
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xed,
        ],
    );
    let (code, out, err) = s.validate("1", &file, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("the file is gzip-compressed, not delimited text"),
        "{err}"
    );
    assert!(
        err.contains("nothing was validated; the file was not changed"),
        "{err}"
    );
}

#[test]
fn max_line_bytes_turns_a_fatal_error_into_a_row_error() {
    let s = Scratch::new();
    let file = format!("{}\n{}\n", row1(1), row1_with(2, 4, &"a".repeat(10 << 20)));
    let file = s.write("long.csv", file.as_bytes());
    let (code, out, err) = s.validate("1", &file, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("line 2 is longer than 1048576 bytes"), "{err}");

    let (code, out, err) = s.validate("1", &file, &["--max-line-bytes", "16777216"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("has 10485760 characters; at most 100 allowed"),
        "{out}"
    );
}

#[test]
fn json_report_has_counts_errors_totals_and_the_file_hash() {
    let s = Scratch::new();
    let bytes = file_with_errors().into_bytes();
    let file = s.write("bad.csv", &bytes);
    let report_path = s.path("r.json");
    let (code, _, _) = s.validate("1", &file, &["--report", report_path.to_str().unwrap()]);
    assert_eq!(code, 1);
    let r = read_json(&report_path);
    assert_eq!(r["rows_read"], 8);
    assert_eq!(r["rows_valid"], 3);
    assert_eq!(r["rows_invalid"], 5);
    assert_eq!(r["errors_total"], 5);
    assert_eq!(r["pattern"], 1);
    assert_eq!(r["as_of"], AS_OF_ARG);
    assert_eq!(r["bytes"], bytes.len() as u64);
    let errors: Vec<(u64, &str)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(errors, FILE_WITH_ERRORS);
    // Amounts are strings, so that no JSON reader rounds them.
    assert_eq!(
        r["totals"],
        serde_json::json!([{"currency": "TRY", "rows": 3, "amount": "301.50"}])
    );
    assert_eq!(r["sha256"], hex::encode(Sha256::digest(&bytes)));
}

#[test]
fn errors_tsv_has_a_header_and_every_error() {
    let s = Scratch::new();
    let file = s.write("bad.csv", file_with_errors().as_bytes());
    let (tsv_path, report_path) = (s.path("e.tsv"), s.path("r.json"));
    let (code, _, _) = s.validate(
        "1",
        &file,
        &[
            "--errors-tsv",
            tsv_path.to_str().unwrap(),
            "--report",
            report_path.to_str().unwrap(),
            "--max-errors",
            "2",
        ],
    );
    assert_eq!(code, 1);
    let tsv = fs::read_to_string(&tsv_path).unwrap();
    let mut rows = tsv.lines();
    assert_eq!(rows.next(), Some("line\trow\tcolumn\tvalue\tkind\treason"));
    let rows: Vec<Vec<&str>> = rows.map(|l| l.split('\t').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 6), "{tsv}");
    let got: Vec<(u64, &str)> = rows.iter().map(|r| (r[0].parse().unwrap(), r[4])).collect();
    // The TSV is not limited by --max-errors; the JSON report is.
    assert_eq!(got, FILE_WITH_ERRORS);
    assert_eq!(rows[1][2..5], ["amount", "1e5", "decimal"]);
    let r = read_json(&report_path);
    assert_eq!(r["errors"].as_array().unwrap().len(), 2);
    assert_eq!(r["errors_not_shown"], 3);
}

#[test]
fn nothing_printed_or_written_shows_a_full_card_number() {
    let s = Scratch::new();
    // Luhn errors, a card in the wrong column, a quote left open that
    // swallows the following rows, and more errors than the terminal shows.
    let mut rows: Vec<String> = (1..=30)
        .map(|n| row1_with(n, 0, &luhn_broken(&card(n))))
        .collect();
    let mut shifted = row1_cells(31);
    shifted.insert(0, String::new());
    shifted.pop();
    rows.push(shifted.join(","));
    rows.push(row1_with(32, 16, "\""));
    rows.extend((33..=40).map(row1));
    let text = lines(&rows);
    let file = s.write("cards.csv", text.as_bytes());
    let (tsv, json) = (s.path("e.tsv"), s.path("r.json"));
    let (code, out, err) = s.validate(
        "1",
        &file,
        &[
            "--errors-tsv",
            tsv.to_str().unwrap(),
            "--report",
            json.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    let cards = card_numbers(text.as_bytes());
    assert_eq!(cards.len(), 39);
    assert_no_card_in(&out, &cards, "stdout");
    assert_no_card_in(&err, &cards, "stderr");
    assert_no_card_in(&fs::read_to_string(&tsv).unwrap(), &cards, "the errors TSV");
    assert_no_card_in(
        &fs::read_to_string(&json).unwrap(),
        &cards,
        "the JSON report",
    );
    assert!(
        out.contains(&format!(
            "'{}'",
            paydrop::mask::card(&luhn_broken(&card(1)))
        )),
        "{out}"
    );
    assert!(
        out.contains("… 17 more in the --report JSON / --errors-tsv file"),
        "{out}"
    );
}

#[test]
fn patterns_list_shows_the_built_in_patterns() {
    let s = Scratch::new();
    let (code, out, err) = outcome(&run(s.paydrop().args(["patterns", "list"])));
    assert_eq!(code, 0, "{err}");
    let ids: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, ["1", "3"], "{out}");
    assert!(out.contains("Open Card – Simple"), "{out}");
    assert!(out.contains("Insurance – Simple"), "{out}");
    assert!(out.lines().all(|l| l.ends_with("built-in")), "{out}");
}

#[test]
fn patterns_show_prints_toml_that_patterns_check_accepts() {
    let s = Scratch::new();
    for (id, name, columns) in [(1, "Open Card – Simple", 17), (3, "Insurance – Simple", 18)] {
        let (code, toml, err) = outcome(&run(s.paydrop().args([
            "patterns",
            "show",
            &id.to_string(),
        ])));
        assert_eq!(code, 0, "{err}");
        let path = s.write(&format!("{id}.toml"), toml.as_bytes());
        let (code, out, err) = outcome(&run(s.paydrop().args(["patterns", "check"]).arg(&path)));
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out.trim_end(),
            format!(
                "{}: pattern {id} \"{name}\" is valid ({columns} columns)",
                path.display()
            )
        );
    }
}

#[test]
fn a_custom_pattern_in_the_patterns_folder_is_listed_and_used() {
    let s = Scratch::new();
    let (_, toml, _) = outcome(&run(s.paydrop().args(["patterns", "show", "1"])));
    fs::create_dir(s.path("patterns")).unwrap();
    let custom = toml
        .replace("id = 1", "id = 2")
        .replace("delimiter = \",\"", "delimiter = \";\"");
    s.write("patterns/2.toml", custom.as_bytes());
    let (code, out, _) = outcome(&run(s.paydrop().args(["patterns", "list"])));
    assert_eq!(code, 0);
    let ids: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"], "{out}");

    let file = s.write("semi.csv", lines(&[row1(1).replace(',', ";")]).as_bytes());
    let (code, out, err) = s.validate("2", &file, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The line of `needle` in `text` (1-based).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle present")
        + 1
}

#[test]
fn patterns_check_names_file_line_and_key_of_a_mistake() {
    let s = Scratch::new();
    let (_, toml, _) = outcome(&run(s.paydrop().args(["patterns", "show", "1"])));

    let broken = toml.replace("delimiter = \",\"", "delimiter = \"#\"");
    let path = s.write("broken.toml", broken.as_bytes());
    let (code, out, err) = outcome(&run(s.paydrop().args(["patterns", "check"]).arg(&path)));
    assert_eq!(code, 2, "{out}{err}");
    let line = line_of(&broken, "delimiter = \"#\"");
    assert!(
        err.contains(&format!(
            "{}:{line}: `delimiter`: '#' is not one of",
            path.display()
        )),
        "{err}"
    );

    // A misspelt key inside a column.
    let typo = toml.replacen("unique = true", "uniqe = true", 1);
    let path = s.write("typo.toml", typo.as_bytes());
    let (code, _, err) = outcome(&run(s.paydrop().args(["patterns", "check"]).arg(&path)));
    assert_eq!(code, 2);
    let line = line_of(&typo, "uniqe = true");
    assert!(
        err.contains(&format!("{}:{line}: unknown field `uniqe`", path.display())),
        "{err}"
    );

    // A key that does not apply to the column's type.
    let wrong = toml.replacen("type = \"boolean\"", "type = \"boolean\"\nmax_len = 3", 1);
    let path = s.write("wrong.toml", wrong.as_bytes());
    let (code, _, err) = outcome(&run(s.paydrop().args(["patterns", "check"]).arg(&path)));
    assert_eq!(code, 2);
    // Column mistakes point at the column's table.
    let before: Vec<&str> = wrong[..wrong.find("max_len = 3").unwrap()]
        .lines()
        .collect();
    let table = before.iter().rposition(|l| *l == "[[columns]]").unwrap() + 1;
    let column = before.iter().filter(|l| **l == "[[columns]]").count() - 1;
    assert!(
        err.contains(&format!(
            "{}:{table}: `columns[{column}].max_len`: does not apply to type 'boolean'",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn gen_writes_the_planted_errors_to_the_manifest() {
    let s = Scratch::new();
    let (csv, manifest, report) = (s.path("gen.csv"), s.path("m.json"), s.path("r.json"));
    let (code, out, err) = outcome(&run(s
        .paydrop()
        .args([
            "gen",
            "-p",
            "1",
            "--rows",
            "2000",
            "--error-rate",
            "0.01",
            "--seed",
            "5",
        ])
        .arg("--manifest")
        .arg(&manifest)
        .arg("-o")
        .arg(&csv)));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim_end(),
        format!("{}: 2000 rows, 20 with deliberate errors", csv.display())
    );

    let m = read_json(&manifest);
    assert_eq!(m["rows"], 2000);
    let planted: BTreeSet<(u64, String)> = m["planted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap(),
                p["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(planted.len(), 20);
    // The same plan as the library's for the same seed.
    let (_, g) = generate_bytes(&builtin(1), &gen_options(2000, 0.01, 5));
    let library: BTreeSet<(u64, String)> = g
        .planted
        .iter()
        .map(|p| {
            (
                p.line,
                serde_json::to_value(p.kind)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(planted, library);

    // And the validator finds exactly those (both use today's date).
    let mut cmd = s.paydrop();
    cmd.args(["validate", "-p", "1", "--report"])
        .arg(&report)
        .arg(&csv);
    let (code, _, _) = outcome(&run(&mut cmd));
    assert_eq!(code, 1);
    let r = read_json(&report);
    let found: BTreeSet<(u64, String)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(found, planted);
    assert_eq!(r["totals"], m["totals"]);
}

#[test]
fn common_mistakes_get_one_message_each_through_the_binary() {
    let s = Scratch::new();
    // A workbook: exit 2, named as a spreadsheet.
    let mut xlsx = b"PK\x03\x04".to_vec();
    xlsx.extend_from_slice(&[0; 26]);
    xlsx.extend_from_slice(b"xl/workbook.xml");
    let book = s.write("payments.xlsx", &xlsx);
    let (code, out, err) = s.validate("1", &book, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("is an Excel workbook (.xlsx), not a CSV file")
            && err.contains("save it as \"CSV UTF-8\""),
        "{err}"
    );
    assert!(!err.contains("compresses on its own"), "{err}");

    // A semicolon file: the hint once, as a warning and in the first error.
    let rows: Vec<String> = (1..=30).map(|i| row1(i).replace(',', ";")).collect();
    let semi = s.write("semi.csv", lines(&rows).as_bytes());
    let (code, out, _) = s.validate("1", &semi, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.matches("the file looks semicolon-delimited; pattern 1 expects ','")
            .count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("warning  rows have 1 field; with ';' they would have 17"),
        "{out}"
    );

    // A header row of other names: one error, the data rows valid.
    let names = vec!["Kart No"; 17].join(",");
    let headed = s.write("headed.csv", lines(&[names, row1(1), row1(2)]).as_bytes());
    let (code, out, _) = s.validate("1", &headed, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rows     2 read, 2 valid, 0 invalid"), "{out}");
    assert!(out.contains("errors   1 (first 1):"), "{out}");
    assert!(
        out.contains("line 1: looks like a header (its cells hold words and no digits"),
        "{out}"
    );
}
