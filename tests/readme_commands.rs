//! Every `sh` block of the README runs as written: the blocks are turned into
//! one bash script, run in a scratch folder holding a copy of `samples/`, with
//! the `paydrop` under test first on `PATH`.
//!
//! What the runner changes, and why (everything else runs verbatim):
//! - `cargo run --release -- ARGS` becomes `paydrop ARGS`, and `cargo test` is
//!   skipped: it is the command running this test.
//! - The documented ports (sandbox 8080 and 8081, callback listener 8090,
//!   metrics 9464) become free ephemeral ports,
//!   in the commands and in the copied `samples/paydrop.toml`, so a busy port
//!   on the machine cannot fail the suite.
//! - A command put in the background (`… &`) is waited for until its ports
//!   answer, and stopped when the script ends; a background sandbox is told
//!   its receiving port, which would otherwise be the default 8081.
//! - `paydrop … watch` runs for a few seconds under `timeout` (a daemon does
//!   not end by itself): it must still be running then.
//! - A line's expected exit status is 0 unless its comment says `exit N`.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// The README's `sh` blocks: (line number, command) with `\` continuations
/// joined.
fn sh_commands(readme: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in readme.lines().enumerate() {
        let number = i + 1;
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((number, String::new()));
        text.push_str(line);
        if let Some(stripped) = text.strip_suffix('\\') {
            pending = Some((start, stripped.to_string()));
            continue;
        }
        let trimmed = text.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push((start, trimmed.to_string()));
        }
    }
    out
}

/// The expected exit status a comment such as `# refused: exit 3` names.
fn expected_status(command: &str) -> i32 {
    let Some((_, comment)) = command.split_once(" #") else {
        return 0;
    };
    comment
        .split_once("exit ")
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// The bash script for the README's commands, ports already replaced.
fn script(commands: &[(usize, String)], receiving: u16) -> String {
    let mut s = String::from(
        "set -u\n\
         trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT\n\
         wait_port() { for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo \"port $1 never answered\" >&2; exit 1; }\n",
    );
    for (line, command) in commands {
        if command.starts_with("cargo test") {
            continue;
        }
        let command = command.replacen("cargo run --release -- ", "paydrop ", 1);
        let expected = expected_status(&command);
        let code = command.split(" #").next().unwrap_or_default().trim();
        s.push_str(&format!("echo '+ README:{line}' >&2\n"));
        if let Some(background) = code.strip_suffix('&') {
            let background = with_receiving_port(background, receiving);
            s.push_str(&format!("{background} &\n"));
            for port in ports_of(&background) {
                s.push_str(&format!("wait_port {port}\n"));
            }
            continue;
        }
        let (run, expected) = if code.starts_with("paydrop") && code.ends_with(" watch") {
            // A daemon: still running after five seconds is the success.
            (format!("timeout 5 {code}"), 124)
        } else {
            (code.to_string(), expected)
        };
        s.push_str(&format!(
            "{run}\nrc=$?; if [ $rc -ne {expected} ]; then echo \"README line {line}: exit $rc, expected {expected}\" >&2; exit 1; fi\n"
        ));
    }
    s
}

/// A sandbox started without `--receiving-port` serves its receiving side on
/// the default 8081, which the README's later commands name: the replaced
/// port is passed explicitly.
fn with_receiving_port(command: &str, receiving: u16) -> String {
    if command.contains(" sandbox") && !command.contains("--receiving-port") {
        format!("{} --receiving-port {receiving} ", command.trim_end())
    } else {
        command.to_string()
    }
}

/// The ports a background command listens on.
fn ports_of(command: &str) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "--port" || w[0] == "--receiving-port")
        .map(|w| w[1].to_string())
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create folder");
    for entry in fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

#[test]
fn every_readme_command_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).expect("README.md");
    let commands = sh_commands(&readme);
    assert!(
        commands.iter().any(|(_, c)| c.contains("paydrop submit")),
        "the README's examples were not found"
    );

    let (bulk, receiving, callback, metrics) = (free_port(), free_port(), free_port(), free_port());
    let with_ports = |text: &str| {
        text.replace("8080", &bulk.to_string())
            .replace("8081", &receiving.to_string())
            .replace("8090", &callback.to_string())
            .replace("9464", &metrics.to_string())
    };
    let commands: Vec<(usize, String)> = commands
        .into_iter()
        .map(|(line, c)| (line, with_ports(&c)))
        .collect();

    let scratch = tempfile::tempdir().expect("scratch folder");
    copy_dir(&root.join("samples"), &scratch.path().join("samples"));
    let config = scratch.path().join("samples/paydrop.toml");
    let text = fs::read_to_string(&config).expect("samples/paydrop.toml");
    fs::write(&config, with_ports(&text)).expect("rewrite config");

    let bin = Path::new(env!("CARGO_BIN_EXE_paydrop"));
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = script(&commands, receiving);
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(scratch.path())
        .env("PATH", path)
        .env("EDITOR", "true")
        .env("NO_COLOR", "1")
        .env_remove("PAYDROP_LOG")
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a README command failed\n--- script\n{script}\n--- stderr\n{stderr}\n--- stdout\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_runner_reads_exit_statuses_and_continuations() {
    let readme = "text\n```sh\npaydrop a \\\n  --b   # refused: exit 3\n# note\n\npaydrop c\n```\n```\nnot sh\n```\n";
    let commands = sh_commands(readme);
    assert_eq!(
        commands,
        vec![
            (3, "paydrop a   --b   # refused: exit 3".to_string()),
            (7, "paydrop c".to_string())
        ]
    );
    assert_eq!(expected_status(&commands[0].1), 3);
    assert_eq!(expected_status(&commands[1].1), 0);
}
