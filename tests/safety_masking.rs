//! No card number anywhere (issue 9, item 4): a card number is masked to
//! first 6 / last 4 whatever column it is in and whatever prints it (the
//! terminal, `--report`, `--errors-tsv`, the daemon's `failed/*.report.json`
//! and logs), and the files paydrop writes with full card numbers (retry
//! files, generated files) are created 0600.

mod watch_common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use std::process::Stdio;

use paydrop::validate::{validate_reader, ErrorKind, Hooks, Options};
use paydrop::watch::FAILED;
use watch_common::*;

/// A Luhn-valid card number that is in no generated file.
fn stray_card() -> String {
    let payload = "528939152533253";
    let digit = paydrop::validate::check::luhn_check_digit(payload.as_bytes());
    format!("{payload}{}", char::from(digit))
}

/// What `stray_card` must look like wherever it is printed.
fn masked_stray() -> String {
    paydrop::mask::card(&stray_card())
}

/// Five valid rows of file `seed`, except that row 3's `lineNumber` holds a
/// card number: the validator quotes the line number in its reason.
fn card_in_line_number(seed: u64) -> Vec<u8> {
    let mut out = String::new();
    for n in 1..=5 {
        let mut cells = row_cells(seed, n);
        if n == 3 {
            cells[3] = stray_card();
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

fn assert_masked(text: &str, what: &str) {
    assert!(
        !text.contains(&stray_card()),
        "{what} shows the card number in full:\n{text}"
    );
    assert!(
        text.contains(&masked_stray()),
        "{what} does not show the masked card {}:\n{text}",
        masked_stray()
    );
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_number_in_the_line_number_column_is_masked_in_all_four_outputs() {
    let rig = Rig::start().await;
    let file = rig.staging.join("card-in-linenumber.csv");
    fs::write(&file, card_in_line_number(901)).unwrap();

    // The terminal, --report and --errors-tsv.
    let report = rig.dir.path().join("report.json");
    let tsv = rig.dir.path().join("errors.tsv");
    let out = rig
        .cli()
        .args(["validate", "-p", "1", "--report"])
        .arg(&report)
        .arg("--errors-tsv")
        .arg(&tsv)
        .arg(&file)
        .output()
        .expect("paydrop validate runs");
    let terminal = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{terminal}");
    assert!(terminal.contains("line 3, lineNumber"), "{terminal}");
    assert_masked(&terminal, "the terminal");
    assert_masked(&fs::read_to_string(&report).unwrap(), "--report");
    assert_masked(&fs::read_to_string(&tsv).unwrap(), "--errors-tsv");

    // The daemon's failed/ report, and its log.
    let daemon = rig.daemon(rig.config()).await;
    rig.drop_file("card-in-linenumber.csv", &card_in_line_number(901));
    let filed = rig.wait_filed(FAILED, "card-in-linenumber.csv").await;
    daemon.stop().await;
    let report = fs::read_to_string(sidecar(&filed, "report.json")).unwrap();
    assert_masked(&report, "failed/*.report.json");
    assert!(
        !logs().contains(&stray_card()),
        "the log shows the card:\n{}",
        logs()
    );
    assert_eq!(rig.sandbox.requests(), 0, "nothing was sent");
}

#[test]
fn card_numbers_are_masked_in_every_column_and_shape() {
    let pattern = paydrop::pattern::Registry::load(None)
        .unwrap()
        .get(1)
        .unwrap()
        .clone();
    let card = stray_card();
    let grouped = format!(
        "{} {} {} {}",
        &card[..4],
        &card[4..8],
        &card[8..12],
        &card[12..]
    );
    let dashed = grouped.replace(' ', "-");
    let long_text = format!("pay for {grouped} please {}", "x".repeat(90));
    let long_name = format!("Ayşe {dashed} {}", "y".repeat(100));
    let rows = [
        // A card in groups inside a too long trackingCode.
        (5, long_text.as_str(), ErrorKind::Length),
        // A card number turned into scientific notation by a spreadsheet.
        (0, "4.54E+15", ErrorKind::CardNumber),
        // A dashed card inside a too long name.
        (4, long_name.as_str(), ErrorKind::Length),
    ];
    let mut file = String::new();
    for (n, (col, value, _)) in rows.iter().enumerate() {
        let mut cells = row_cells(902, n as u64 + 1);
        cells[*col] = value.to_string();
        file.push_str(&cells.join(","));
        file.push('\n');
    }
    let opts = Options {
        max_errors: 100,
        ..Options::default()
    };
    let report = validate_reader(file.as_bytes(), &pattern, &opts, Hooks::default()).unwrap();
    let kinds: Vec<ErrorKind> = report.errors.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, rows.map(|r| r.2));
    let shown = serde_json::to_string(&report).unwrap();
    assert!(!shown.contains(&card), "{shown}");
    for shape in [&grouped, &dashed] {
        assert!(!shown.contains(shape.as_str()), "{shape} is shown: {shown}");
    }

    let tracking = &report.errors[0];
    let masked_group = format!("{} {}** **** {}", &card[..4], &card[4..6], &card[12..]);
    assert!(
        tracking.value.as_deref().unwrap().contains(&masked_group),
        "{tracking}"
    );
    let masked_dashed = masked_group.replace(' ', "-");
    assert!(
        report.errors[2]
            .value
            .as_deref()
            .unwrap()
            .contains(&masked_dashed),
        "{}",
        report.errors[2]
    );
    // The spreadsheet's shape stays visible (it explains the mistake); it
    // holds no more than the first three digits.
    assert_eq!(report.errors[1].value.as_deref(), Some("4.54E+15"));
}

#[test]
fn retry_and_generated_files_are_created_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("sent.csv");
    fs::write(&original, payments(903, 4)).unwrap();
    let out = dir.path().join("sent.csv.retry.csv");
    // A leftover temporary file from a crash, world-readable.
    let tmp = out.with_extension("tmp");
    fs::write(&tmp, "old").unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
    let pattern = paydrop::pattern::Registry::load(None)
        .unwrap()
        .get(1)
        .unwrap()
        .clone();
    let mut writer =
        paydrop::results::RetryWriter::create(&original, &pattern, 1, &out, 1 << 20).unwrap();
    for line in [2, 4] {
        writer.push(line).unwrap();
    }
    let tally = writer.finish().unwrap();
    assert_eq!(tally.rows, 2);
    let text = fs::read_to_string(&out).unwrap();
    assert!(
        text.contains(&row_cells(903, 2)[0]),
        "full card numbers, by design"
    );
    assert_eq!(mode(&out), 0o600, "the retry file");

    let generated = dir.path().join("gen.csv");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_paydrop"))
        .args(["gen", "-p", "1", "--rows", "10", "-o"])
        .arg(&generated)
        .env("PAYDROP_PATTERNS", dir.path().join("patterns"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    assert_eq!(mode(&generated), 0o600, "a generated file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_process_masks_card_numbers_in_its_logs_text_and_json() {
    let rig = Rig::start().await;
    let config = rig.write_config_file("");
    for (n, json) in [(1, false), (2, true)] {
        // A card number as a file name: it is in every log line about it.
        let name = format!("{n}-{}.csv", stray_card());
        rig.drop_file(&name, b"not,a,payment\n");
        let log = rig.dir.path().join(format!("daemon-{n}.log"));
        let mut cmd = rig.cli();
        if json {
            cmd.arg("--log-json");
        }
        let mut child = cmd
            .arg("watch")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let filed = rig.wait_filed(FAILED, &name).await;
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_for("the daemon to exit", || child.try_wait().unwrap()).await;

        let text = fs::read_to_string(&log).unwrap();
        assert_masked(&text, "the daemon's log");
        if json {
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            }
        }
        let report = fs::read_to_string(sidecar(&filed, "report.json")).unwrap();
        assert_masked(&report, "the failed/ report");
    }
}
