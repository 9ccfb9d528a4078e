//! Inbox hygiene (issue 9, item 6): a file name with CR/LF cannot forge log
//! lines or reports; symbolic links, folders and FIFOs in the inbox are
//! skipped with one WARN each and not counted as waiting; a file the daemon
//! cannot read goes to failed/ with a report saying why (or, when it cannot
//! be moved, stays in the inbox with one ERROR per rescan period), and is
//! never claimed, not even after a restart; `validate` refuses a FIFO, a
//! folder or a device at once.

mod watch_common;

use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use paydrop::watch::{DONE, FAILED, PROCESSING};
use watch_common::*;

/// The user the daemon runs as when the tests run as root (for whom
/// permission bits do not stop a read).
const NOBODY: u32 = 65534;

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Makes `path` unreadable for the daemon: mode 000. Under root the daemon
/// runs as nobody (see [`spawn_daemon`]), for whom root's 000 file is as
/// unreadable as it is for any user.
fn make_unreadable(path: &Path) {
    chmod(path, 0o000);
    if !running_as_root() {
        assert!(
            File::open(path).is_err(),
            "mode 000 stops this user's reads"
        );
    }
}

/// `paydrop watch --config {config}` as a process, logging to `log`; as
/// nobody when the tests run as root (the rig's folder is opened up for it).
/// `None` (with a loud message) only if root cannot switch users here.
fn spawn_daemon(rig: &Rig, config: &Path, log: &Path) -> Option<Child> {
    let mut cmd = rig.cli();
    cmd.arg("watch")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(log).unwrap()));
    if running_as_root() {
        for dir in [rig.dir.path(), &rig.inbox] {
            chmod(dir, 0o777);
        }
        cmd.uid(NOBODY).gid(NOBODY);
    }
    match cmd.spawn() {
        Ok(child) => Some(child),
        Err(e) if running_as_root() => {
            eprintln!(
                "\n!!! SKIPPED: running as root, and the daemon cannot be started as uid \
                 {NOBODY} ({e}); a mode-000 file is readable by root, so this test cannot make \
                 a file unreadable here !!!\n"
            );
            None
        }
        Err(e) => panic!("paydrop watch starts: {e}"),
    }
}

/// SIGTERM, then waits for the exit.
async fn stop(mut child: Child) {
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_for("the daemon to exit", || child.try_wait().expect("try_wait")).await;
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Drops a valid file and waits until it is in done/: proof that the daemon
/// scanned the inbox several times since anything dropped before.
async fn scans_went_by(rig: &Rig, name: &str, seed: u64) {
    rig.drop_file(name, &payments(seed, 2));
    rig.wait_filed(DONE, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_name_with_cr_lf_forges_no_log_line_and_no_report_field() {
    let rig = Rig::start().await;
    let daemon = rig.daemon(rig.config()).await;
    let name = "evil\r\n2026-01-01T00:00:00Z  INFO paydrop::watch: forged line.csv";
    // Invalid rows: it goes to failed/ without being sent.
    rig.drop_file(name, b"not,a,payment\n");
    let filed = rig.wait_filed(FAILED, name).await;
    daemon.stop().await;

    let shown = "evil??2026-01-01T00:00:00Z  INFO paydrop::watch: forged line.csv";
    let report = read_json(&sidecar(&filed, "report.json"));
    assert_eq!(report["file"], shown);
    let claimed_as = report["claimed_as"].as_str().unwrap();
    assert!(claimed_as.ends_with(shown), "{claimed_as}");
    assert!(
        filed.to_string_lossy().ends_with(name),
        "the file keeps its real name on disk"
    );

    let logs = logs();
    let mentions: Vec<&str> = logs.lines().filter(|l| l.contains("forged line")).collect();
    assert!(!mentions.is_empty(), "the file is logged");
    for line in mentions {
        assert!(line.contains("evil??2026"), "a forged log line: {line:?}");
    }
    assert!(!logs.contains("evil\r"), "a raw CR in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_folders_and_fifos_are_skipped_with_one_warning_each() {
    let rig = Rig::start().await;
    let target = rig.staging.join("elsewhere.csv");
    fs::write(&target, payments(951, 3)).unwrap();
    let link = rig.inbox.join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dangling = rig.inbox.join("dangling.csv");
    std::os::unix::fs::symlink(rig.staging.join("nothing.csv"), &dangling).unwrap();
    let folder = rig.inbox.join("archive");
    fs::create_dir(&folder).unwrap();
    let fifo = rig.inbox.join("pipe.csv");
    mkfifo(&fifo);

    let daemon = rig.daemon(rig.config()).await;
    scans_went_by(&rig, "marker-1.csv", 952).await;
    scans_went_by(&rig, "marker-2.csv", 953).await;
    daemon.stop().await;

    for (path, kind) in [
        (&link, "a symbolic link"),
        (&dangling, "a symbolic link"),
        (&folder, "a folder"),
        (&fifo, "a FIFO (named pipe)"),
    ] {
        let shown = path.display().to_string();
        let warnings = log_lines(&["WARN", "skipped", &format!("file={shown} ")]);
        assert_eq!(warnings.len(), 1, "one WARN for {shown}:\n{}", logs());
        assert!(warnings[0].contains(kind), "{}", warnings[0]);
        assert!(
            path.symlink_metadata().is_ok(),
            "{shown} is left where it is"
        );
    }
    assert_eq!(
        fs::read(&target).unwrap(),
        payments(951, 3),
        "the link's target is untouched"
    );
    assert!(rig.filed_as(DONE, "link.csv").is_empty());
    assert!(entries(&rig.sub(PROCESSING)).is_empty());
    assert_eq!(
        rig.sandbox_batches_of(&sha256_hex(&payments(951, 3))).len(),
        0
    );

    let out = rig.status(&rig.write_config_file(""));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let counts = format!(
        "inbox {}: 0 waiting, 0 processing, 2 done, 0 failed",
        rig.inbox.display()
    );
    assert!(
        stdout.contains(&counts),
        "expected '{counts}' in:\n{stdout}"
    );
    for (path, kind) in [(&link, "a symbolic link"), (&fifo, "a FIFO (named pipe)")] {
        let line = format!("  skipped {} ({kind})", path.display());
        assert!(stdout.contains(&line), "expected '{line}' in:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_goes_to_failed_with_its_reason_and_never_comes_back() {
    let rig = Rig::start().await;
    let locked = rig.drop_file("locked.csv", &payments(961, 3));
    make_unreadable(&locked);
    let config = rig.write_config_file("");
    let log = rig.dir.path().join("first.log");
    let Some(child) = spawn_daemon(&rig, &config, &log) else {
        return;
    };
    let filed = rig.wait_filed(FAILED, "locked.csv").await;
    let report = read_json(&sidecar(&filed, "report.json"));
    let reason = report["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Permission denied") && reason.contains("nothing was sent"),
        "{reason}"
    );
    assert!(reason.contains("chmod"), "says what to do: {reason}");
    assert!(entries(&rig.sub(PROCESSING)).is_empty(), "never claimed");
    scans_went_by(&rig, "marker-1.csv", 962).await;
    stop(child).await;
    let first = read(&log);
    assert!(
        first.contains("ERROR") && first.contains("locked.csv"),
        "the error is logged:\n{first}"
    );

    // A restart does not pick it up again. An unreadable file left in
    // processing/ (claimed by an older version) is filed in failed/ too.
    let left = rig
        .sub(PROCESSING)
        .join("20260101T000000000Z-000001-left.csv");
    fs::write(&left, payments(964, 3)).unwrap();
    make_unreadable(&left);
    let log = rig.dir.path().join("second.log");
    let child = spawn_daemon(&rig, &config, &log).expect("started before");
    let left_filed = rig.wait_filed(FAILED, "left.csv").await;
    scans_went_by(&rig, "marker-2.csv", 963).await;
    stop(child).await;
    let second = read(&log);
    assert!(!second.contains("locked.csv"), "seen again:\n{second}");
    assert_eq!(rig.filed_as(FAILED, "locked.csv"), [filed]);
    let reason = read_json(&sidecar(&left_filed, "report.json"))["reason"].to_string();
    assert!(reason.contains("Permission denied"), "{reason}");
    assert!(entries(&rig.sub(PROCESSING)).is_empty());
    assert_eq!(
        rig.sandbox_batches_of(&sha256_hex(&payments(961, 3))).len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_that_cannot_be_moved_stays_with_one_error_per_rescan_period() {
    let rig = Rig::start().await;
    // failed/ exists but the daemon may not write into it.
    let failed = rig.sub(FAILED);
    fs::create_dir_all(&failed).unwrap();
    chmod(&failed, 0o555);
    let locked = rig.drop_file("stuck.csv", &payments(971, 3));
    make_unreadable(&locked);
    // Scans every 100 ms (quiet 200 ms), but a full rescan period of a minute.
    let config = rig.write_config_file("");
    let text = read(&config).replace("rescan_ms = 100", "rescan_ms = 60000");
    fs::write(&config, text).unwrap();
    let log = rig.dir.path().join("stuck.log");
    let Some(child) = spawn_daemon(&rig, &config, &log) else {
        chmod(&failed, 0o755);
        return;
    };
    let started = Instant::now();
    scans_went_by(&rig, "marker-1.csv", 972).await;
    // Over a second of scans, at least five of them with the file stable.
    tokio::time::sleep(Duration::from_millis(1200).saturating_sub(started.elapsed())).await;
    scans_went_by(&rig, "marker-2.csv", 973).await;
    stop(child).await;
    chmod(&failed, 0o755);

    let text = read(&log);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("stuck.csv"))
        .collect();
    assert_eq!(errors.len(), 1, "one ERROR per rescan period:\n{text}");
    assert!(errors[0].contains("stays in the inbox"), "{}", errors[0]);
    assert!(locked.symlink_metadata().is_ok(), "left in the inbox");
    assert!(entries(&rig.sub(PROCESSING)).is_empty(), "never claimed");
    assert!(entries(&failed).is_empty(), "no stray report");
}

/// Runs `paydrop` with a deadline: a hang fails the test instead of
/// blocking it.
fn run_with_deadline(mut cmd: std::process::Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("paydrop hung on a non-regular file");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn validate_and_submit_refuse_a_fifo_a_folder_and_a_device_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.csv");
    mkfifo(&fifo);
    let folder = dir.path().join("folder.csv");
    fs::create_dir(&folder).unwrap();
    let cases: [(PathBuf, &str); 3] = [
        (fifo, "a FIFO (named pipe)"),
        (folder, "a folder"),
        (PathBuf::from("/dev/zero"), "a device"),
    ];
    for (path, kind) in &cases {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_paydrop"));
        cmd.args(["validate", "-p", "1"])
            .arg(path)
            .env("PAYDROP_PATTERNS", dir.path().join("patterns"));
        let (code, out) = run_with_deadline(cmd);
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains(&format!("is {kind}, not a regular file")),
            "{out}"
        );
    }
    // submit validates first: the same refusal, nothing sent.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_paydrop"));
    cmd.args(["submit", "-p", "1", "--base", "http://127.0.0.1:9"])
        .arg(&cases[0].0)
        .current_dir(dir.path())
        .env("PAYDROP_PATTERNS", dir.path().join("patterns"))
        .env("PAYDROP_LEDGER", dir.path().join("ledger.db"))
        .env("PAYDROP_API_KEY", "k")
        .env("PAYDROP_API_CLIENT", "c");
    let (code, out) = run_with_deadline(cmd);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not a regular file"), "{out}");
}
