//! The daemon as a real process (`paydrop watch --config X`): killed with
//! SIGKILL in the middle of an upload and started again, stopped with
//! SIGTERM while a file is in flight; and `paydrop status` on its inbox.

mod watch_common;

use std::fs::{self, File};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use paydrop::watch::{DONE, FAILED, PROCESSING};
use watch_common::*;

/// Starts `paydrop watch --config {config}`, its log in `log`.
fn spawn_watch(rig: &Rig, config: &Path, log: &Path) -> Child {
    let log = File::create(log).expect("log file");
    rig.cli()
        .arg("watch")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("paydrop watch starts")
}

/// Waits for the process to end; its exit status.
async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    wait_for("the process to exit", || {
        child.try_wait().expect("try_wait")
    })
    .await
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Sends SIGTERM as an operator (or systemd) would.
fn sigterm(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
}

/// Waits until the ledger shows an attempt that started and has not ended.
async fn wait_attempt_in_flight(rig: &Rig) {
    wait_until("an attempt in flight", || {
        rig.ledger()
            .open_submissions()
            .is_ok_and(|open| open.iter().any(|s| s.interrupted))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_holds_the_file_until_resolved_then_sends_it_once() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let faults = rig.sandbox.faults();
    faults.set_delay(Duration::from_secs(60));
    let config = rig.write_config_file("");
    let log1 = rig.dir.path().join("watch-1.log");
    let mut child = spawn_watch(&rig, &config, &log1);
    let bytes = payments(71, 40);
    rig.drop_file("killed.csv", &bytes);
    wait_attempt_in_flight(&rig).await;
    // The request is at the provider (held there) when the daemon dies.
    wait_until("the request at the sandbox", || rig.sandbox.requests() == 1).await;

    child.kill().expect("SIGKILL");
    let status = wait_exit(&mut child).await;
    assert_eq!(status.code(), None, "killed by a signal");
    let processing = payment_files(&rig.sub(PROCESSING));
    assert_eq!(processing.len(), 1, "{processing:?}");
    assert_eq!(original_of(&processing[0]), "killed.csv");
    assert!(rig.sandbox.batches().is_empty());

    // Restarted with a short request timeout, so that the killed attempt
    // soon counts as interrupted rather than possibly still running. The
    // sandbox's bulk inquiry does not have it, and its "not found" is
    // believed only 10 minutes after the attempt: the outcome stays unknown,
    // the file stays in processing/ and nothing is sent again.
    faults.set_delay(Duration::ZERO);
    let short = fs::read_to_string(&config)
        .unwrap()
        .replace("timeout_secs = 60", "timeout_secs = 2")
        .replace("inquiry_grace_secs = 0", "inquiry_grace_secs = 600");
    fs::write(&config, short).unwrap();
    let log2 = rig.dir.path().join("watch-2.log");
    let mut child = spawn_watch(&rig, &config, &log2);
    wait_until("the part held as unknown", || {
        read_log(&log2).contains("outcome unknown; the file stays in processing/")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(payment_files(&rig.sub(PROCESSING)), processing);
    assert_eq!(rig.sandbox.requests(), 1, "not sent again");
    let sub = rig.ledger_batches()[0].submissions[0].clone();
    assert!(sub.outcome_unknown(), "{sub:#?}");
    let status = rig
        .cli()
        .args(["--config".as_ref(), config.as_os_str(), "status".as_ref()])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(5));
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("OUTCOME UNKNOWN"), "{shown}");

    // The operator finds it was not received: the daemon sends it once.
    let resolved = rig
        .cli()
        .args(["--config".as_ref(), config.as_os_str(), "resolve".as_ref()])
        .args([&sub.batch_id.to_string(), "1", "--not-received"])
        .output()
        .unwrap();
    assert!(resolved.status.success(), "{resolved:?}");
    let filed = rig.wait_filed(DONE, "killed.csv").await;
    assert_eq!(fs::read(&filed).unwrap(), bytes);
    rig.assert_inbox_and_processing_empty();
    assert_eq!(entries(&rig.sub(FAILED)), Vec::<String>::new());
    let at_sandbox = rig.sandbox_batches_of(&sha256_hex(&bytes));
    assert_eq!(at_sandbox.len(), 1, "exactly one batch");
    assert_eq!(rig.sandbox.batches().len(), 1);
    let ledger = rig.ledger_batches();
    assert_eq!(ledger.len(), 1);
    assert!(ledger[0].is_accepted());
    assert_eq!(
        ledger[0].submissions[0].merchant_unique_code,
        at_sandbox[0].merchant_unique_code
    );
    let log = read_log(&log2);
    assert!(log.contains("resuming files left in processing/"), "{log}");
    // Nothing secret in the logs.
    for log in [read_log(&log1), log] {
        assert!(!log.contains(API_KEY) && !log.contains(SECRET), "{log}");
    }

    sigterm(&child);
    let status = wait_exit(&mut child).await;
    assert_eq!(status.code(), Some(0), "{}", read_log(&log2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_file_in_flight_finish_and_exits_0() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let faults = rig.sandbox.faults();
    // The provider takes 1.5 s to answer: SIGTERM arrives meanwhile.
    faults.set_delay(Duration::from_millis(1500));
    let config = rig.write_config_file("");
    let log = rig.dir.path().join("watch.log");
    let mut child = spawn_watch(&rig, &config, &log);
    let bytes = payments(72, 40);
    rig.drop_file("in-flight.csv", &bytes);
    wait_attempt_in_flight(&rig).await;

    sigterm(&child);
    wait_until("the daemon to stop taking files", || {
        read_log(&log).contains("stopping: no new files are taken")
    })
    .await;
    // Dropped after the stop: left for the next run.
    let late = payments(73, 5);
    rig.drop_file("late.csv", &late);

    let status = wait_exit(&mut child).await;
    assert_eq!(status.code(), Some(0), "{}", read_log(&log));
    let filed = rig.wait_filed(DONE, "in-flight.csv").await;
    assert_eq!(fs::read(&filed).unwrap(), bytes);
    assert_eq!(entries(&rig.sub(PROCESSING)), Vec::<String>::new());
    assert_eq!(fs::read(rig.inbox.join("late.csv")).unwrap(), late);
    assert_eq!(rig.sandbox.batches().len(), 1);
    assert_eq!(rig.sandbox.batches()[0].sha256, sha256_hex(&bytes));
    let ledger = rig.ledger_batches();
    assert_eq!(ledger.len(), 1);
    assert!(ledger[0].is_accepted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_inbox_counts() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let daemon = rig.daemon(rig.config()).await;
    rig.drop_file("good.csv", &payments(74, 3));
    rig.drop_file("good-too.csv", &payments(75, 3));
    rig.drop_file("empty.csv", b"");
    rig.wait_filed(DONE, "good.csv").await;
    rig.wait_filed(DONE, "good-too.csv").await;
    rig.wait_filed(FAILED, "empty.csv").await;
    daemon.stop().await;

    // Waiting: two files (a .part being written does not count); one left
    // in processing/ as by a crash.
    fs::write(rig.inbox.join("waiting.csv"), payments(76, 3)).unwrap();
    fs::write(rig.inbox.join("waiting-too.csv"), payments(77, 3)).unwrap();
    fs::write(rig.inbox.join("still-writing.csv.part"), b"4543").unwrap();
    fs::write(
        rig.sub(PROCESSING)
            .join("20260101T000000000Z-000001-stuck.csv"),
        payments(78, 3),
    )
    .unwrap();

    let out = rig.status(&rig.write_config_file(""));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = format!(
        "inbox {}: 2 waiting, 1 processing, 2 done, 1 failed",
        rig.inbox.display()
    );
    assert_eq!(
        stdout.lines().filter(|l| *l == line).count(),
        1,
        "expected '{line}' in:\n{stdout}"
    );
    assert!(stdout.contains(&format!("ledger {}", rig.ledger_path.display())));
    assert!(
        stdout.contains("no submission is waiting or of unknown outcome"),
        "{stdout}"
    );
}

/// User plus system CPU time of a process so far (Linux: /proc/PID/stat).
fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    // Fields after the command name, which is in parentheses and may hold
    // spaces: utime and stime are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')').expect("stat has a command") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_sec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemon_uses_almost_no_cpu() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    // The default timings, not the tests' fast ones.
    let config = rig.write_config_file("");
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("quiet_ms = 200\n", "")
        .replace("rescan_ms = 100\n", "");
    fs::write(&config, text).unwrap();
    let log = rig.dir.path().join("watch.log");
    let mut child = spawn_watch(&rig, &config, &log);
    wait_until("the daemon to start", || {
        read_log(&log).contains("watching")
    })
    .await;
    // Its own scans must not wake it up again (they did, ~1,800 a second).
    let before = cpu_time(child.id());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let used = cpu_time(child.id()) - before;
    assert!(
        used <= Duration::from_millis(100),
        "an idle daemon used {used:?} of CPU in 10 s\n{}",
        read_log(&log)
    );
    // Still awake for real files.
    let bytes = payments(91, 3);
    rig.drop_file("after-idle.csv", &bytes);
    rig.wait_filed(DONE, "after-idle.csv").await;
    // Logs into a file carry no colour codes.
    assert!(!read_log(&log).contains('\u{1b}'), "{}", read_log(&log));
    sigterm(&child);
    assert_eq!(
        wait_exit(&mut child).await.code(),
        Some(0),
        "{}",
        read_log(&log)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_open_to_other_machines_needs_the_path_secret() {
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let config = rig.write_config_file("");
    let open = fs::read_to_string(&config)
        .unwrap()
        .replace(
            "callback_bind = \"127.0.0.1:0\"",
            "callback_bind = \"0.0.0.0:0\"",
        )
        .replace(&format!("callback_secret = \"{SECRET}\"\n"), "");
    fs::write(&config, open).unwrap();
    let log = rig.dir.path().join("watch.log");
    let mut child = spawn_watch(&rig, &config, &log);
    let status = wait_exit(&mut child).await;
    assert_eq!(status.code(), Some(2), "{}", read_log(&log));
    assert!(
        read_log(&log).contains("callback_secret is not set"),
        "{}",
        read_log(&log)
    );
}
