//! The command line describes itself: every subcommand and argument has a
//! help text, and the parser's own consistency checks pass.

use clap::CommandFactory;

use super::Cli;

/// Every subcommand and argument (but clap's own help and version) without
/// a description, as `paydrop sub sub --arg`.
fn undescribed(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            missing.push(format!("{path} <{id}>"));
        }
    }
    for sub in cmd.get_subcommands() {
        let name = format!("{path} {}", sub.get_name());
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            missing.push(name.clone());
        }
        undescribed(sub, &name, missing);
    }
}

#[test]
fn every_subcommand_and_argument_has_a_description() {
    let mut missing = Vec::new();
    undescribed(&Cli::command(), "paydrop", &mut missing);
    assert!(missing.is_empty(), "without a description: {missing:#?}");
}

#[test]
fn the_parser_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn long_help_lists_the_exit_codes() {
    let help = Cli::command().render_long_help().to_string();
    assert!(help.contains(super::exit_codes::TABLE), "{help}");
    // Every code a command returns has its line.
    for code in [
        super::EXIT_INVALID,
        super::EXIT_UNUSABLE,
        super::EXIT_ALREADY_SUBMITTED,
        super::EXIT_REJECTED,
        super::EXIT_UNKNOWN,
        super::EXIT_NOT_SENT,
    ] {
        assert!(
            super::exit_codes::TABLE.contains(&format!("\n  {code}  ")),
            "{code}"
        );
    }
}
