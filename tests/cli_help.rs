//! The binary's self-description: exit codes in `--help` and the README
//! alike, shell completions, the man page, and a closed stdout pipe that
//! ends quietly.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};

fn paydrop(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_paydrop"))
        .current_dir(dir.path())
        .env_remove("PAYDROP_CONFIG")
        .args(args)
        .output()
        .expect("paydrop runs")
}

/// The exit-code block of `paydrop --help`: from "Exit codes:" on.
fn help_exit_codes() -> String {
    let out = paydrop(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let start = help
        .find("Exit codes:")
        .expect("--help lists the exit codes");
    help[start..].trim_end().to_string()
}

#[test]
fn the_readme_lists_the_exit_codes_of_help() {
    let table = help_exit_codes();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&format!("```text\n{table}\n```")),
        "the README's exit-code block differs from --help:\n{table}"
    );
    // Short help points at it too.
    let short = String::from_utf8(paydrop(&["-h"]).stdout).unwrap();
    assert!(short.contains("--help"), "{short}");
}

#[test]
fn completions_name_the_subcommands() {
    let out = paydrop(&["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    for sub in [
        "validate",
        "submit",
        "results",
        "doctor",
        "ledger",
        "completions",
    ] {
        assert!(script.contains(sub), "no {sub} in the bash completions");
    }
    for shell in ["zsh", "fish"] {
        let out = paydrop(&["completions", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    assert!(!paydrop(&["completions", "cmd.exe"]).status.success());
}

#[test]
fn man_renders_roff() {
    let out = paydrop(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.contains(".TH paydrop"),
        "{}",
        &page[..page.len().min(300)]
    );
    assert!(page.contains("doctor"), "the subcommands are listed");
}

/// A pipe whose reading end is already closed: every write gets EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two new descriptors into fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both are fresh descriptors this function owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["patterns", "show", "1"][..],
        &["patterns", "list"],
        &["completions", "bash"],
        &["man"],
        &["--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_paydrop"))
            .current_dir(dir.path())
            .env_remove("PAYDROP_CONFIG")
            .args(args)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .expect("paydrop runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.to_lowercase().contains("broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// `-q` on a command that prints a summary: nothing on stdout, the same
/// exit status (reconcile: 1 when anything needs attention).
#[test]
fn quiet_reconcile_prints_nothing_and_keeps_its_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let sent = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/pattern1-valid.csv");
    let against = dir.path().join("against.csv");
    std::fs::write(&against, "merchantUniqueCode,amount\nNOT-SENT-1,10.00\n").unwrap();
    let run = |quiet: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_paydrop"));
        cmd.current_dir(dir.path())
            .env("PAYDROP_PATTERNS", dir.path().join("patterns"))
            .env("PAYDROP_LEDGER", dir.path().join("ledger.db"))
            .arg("reconcile")
            .arg("--sent")
            .arg(&sent)
            .args(["-p", "1", "--against"])
            .arg(&against)
            .arg("-o")
            .arg(dir.path().join(if quiet { "q" } else { "loud" }));
        if quiet {
            cmd.arg("-q");
        }
        cmd.output().unwrap()
    };
    let loud = run(false);
    let quiet = run(true);
    assert_eq!(loud.status.code(), Some(1), "{loud:?}");
    assert_eq!(quiet.status.code(), Some(1), "{quiet:?}");
    assert!(!loud.stdout.is_empty());
    assert!(
        quiet.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stdout)
    );
    assert!(dir.path().join("q").is_dir(), "the sets are still written");
}
