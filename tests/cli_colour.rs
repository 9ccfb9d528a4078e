//! Log colour is for a person at a terminal: on a real terminal (a
//! pseudo-terminal from util-linux `script`) the log lines are coloured,
//! and `NO_COLOR` turns that off; pipes never get colour (tested with every
//! command whose stderr the other tests read).

use std::process::Command;

/// The sandbox's start-up log lines as a terminal shows them, with
/// `NO_COLOR` set or not; `None` when `script` is not installed.
fn terminal_log(no_color: bool) -> Option<String> {
    let bin = env!("CARGO_BIN_EXE_paydrop");
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("timeout 2 {bin} sandbox --port 0 --receiving-port 0"),
        "/dev/null",
    ])
    .env("PAYDROP_LOG", "info")
    .env_remove("NO_COLOR");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    let Some(coloured) = terminal_log(false) else {
        eprintln!("SKIPPED: util-linux `script` is not installed, no pseudo-terminal to test on");
        return;
    };
    assert!(
        coloured.contains("sandbox listening"),
        "no log line on the terminal: {coloured}"
    );
    assert!(
        coloured.contains('\u{1b}'),
        "a terminal gets coloured logs: {coloured}"
    );
    let plain = terminal_log(true).expect("script ran once already");
    assert!(plain.contains("sandbox listening"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "NO_COLOR still coloured: {plain}"
    );
}
