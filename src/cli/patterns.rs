//! `paydrop patterns …`: list the patterns (broken files included), print
//! one, check pattern files, and start a custom pattern as a commented copy
//! of an existing one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::EXIT_UNUSABLE;
use paydrop::pattern::{pattern_files, Pattern, Registry};

#[derive(Subcommand)]
pub(super) enum PatternsCommand {
    /// List the built-in and custom patterns, and the pattern files that
    /// cannot be used (exit 2 when there is one).
    List,
    /// Print a pattern as TOML.
    Show {
        /// The pattern's id (its FilePattern number).
        id: u16,
    },
    /// Check a pattern file, or every file of the patterns folder when none
    /// is given, and report each mistake with its file and line (exit 2 on
    /// any).
    Check {
        /// The pattern file [default: every *.toml of the patterns folder].
        file: Option<PathBuf>,
    },
    /// Start a custom pattern: write a commented copy of an existing one
    /// under a new id, then edit it (the folder is created when needed).
    New(NewArgs),
}

#[derive(Args)]
pub(super) struct NewArgs {
    /// The new pattern's id (the provider's FilePattern number it stands
    /// for); no built-in or loaded pattern may have it.
    #[arg(long)]
    id: u16,
    /// The pattern to copy (built-in or custom).
    #[arg(long, default_value_t = 1)]
    from: u16,
    /// The new pattern's name [default: "Custom <id> (from <name>)"].
    #[arg(long)]
    name: Option<String>,
    /// Where to write it [default: <patterns folder>/<id>-custom.toml].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
}

pub(super) fn patterns_cmd(dir: &Path, command: &PatternsCommand) -> Result<ExitCode> {
    let registry = Registry::load(Some(dir))?;
    // Written, not printed: a closed pipe (`| head`) is an error to end on
    // quietly, not a panic.
    let mut out = std::io::stdout().lock();
    match command {
        PatternsCommand::List => {
            for p in registry.iter() {
                writeln!(
                    out,
                    "{:>3}  {:<28} {:>2} columns  delimiter '{}'  {}",
                    p.id,
                    p.name,
                    p.columns.len(),
                    (p.delimiter as char).escape_default(),
                    p.source
                )?;
            }
            for b in registry.broken() {
                let id = b.id.map_or_else(|| "?".to_string(), |id| id.to_string());
                writeln!(out, "{id:>3}  BROKEN  {}", b.error)?;
            }
            if !registry.broken().is_empty() {
                return Ok(ExitCode::from(EXIT_UNUSABLE));
            }
        }
        PatternsCommand::Show { id } => {
            write!(out, "{}", registry.get(*id)?.to_toml())?;
        }
        PatternsCommand::Check { file: Some(file) } => return check(std::slice::from_ref(file)),
        PatternsCommand::Check { file: None } => {
            let files = if dir.is_dir() {
                pattern_files(dir)?
            } else {
                Vec::new()
            };
            if files.is_empty() {
                writeln!(out, "{}: no pattern files", dir.display())?;
                return Ok(ExitCode::SUCCESS);
            }
            // Each file alone, then the folder as a whole (ids taken twice).
            let alone = check(&files)?;
            let clashes: Vec<_> = registry
                .broken()
                .iter()
                .filter(|b| files.iter().any(|f| Path::new(&b.error.origin) == f))
                .filter(|b| Pattern::from_file(Path::new(&b.error.origin)).is_ok())
                .collect();
            for b in &clashes {
                eprintln!("error: {}", b.error);
            }
            if !clashes.is_empty() {
                return Ok(ExitCode::from(EXIT_UNUSABLE));
            }
            return Ok(alone);
        }
        PatternsCommand::New(args) => new(dir, &registry, args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks each file on its own; exit 2 when any has a mistake.
fn check(files: &[PathBuf]) -> Result<ExitCode> {
    let mut failed = false;
    for file in files {
        match Pattern::from_file(file) {
            Ok(p) => writeln!(
                std::io::stdout().lock(),
                "{}: pattern {} \"{}\" is valid ({} columns)",
                file.display(),
                p.id,
                p.name,
                p.columns.len()
            )?,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_UNUSABLE)
    } else {
        ExitCode::SUCCESS
    })
}

fn new(dir: &Path, registry: &Registry, args: &NewArgs) -> Result<()> {
    let from = registry.get(args.from)?;
    if let Some(holder) = registry.holder(args.id) {
        bail!(
            "pattern id {} is taken (by {holder}): choose another id, or edit that file",
            args.id
        );
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| dir.join(format!("{}-custom.toml", args.id)));
    let mut copy = from.clone();
    copy.id = args.id;
    copy.name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("Custom {} (from {})", args.id, from.name));
    let text = template(&copy, from);
    // The written file must load as it is: a template that does not is a bug
    // here, not a mistake of the user's.
    Pattern::from_toml(&text, "the new pattern").context("the generated pattern does not load")?;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the folder {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(&output).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} exists: choose another file, or pass --force to replace it",
                output.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("creating {}", output.display()))
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", output.display()))?;
    writeln!(
        std::io::stdout().lock(),
        "{}: pattern {} \"{}\", a copy of pattern {} to edit; check it with `paydrop patterns \
         check {}`",
        output.display(),
        copy.id,
        copy.name,
        from.id,
        output.display()
    )?;
    if !output.parent().is_some_and(|p| same_folder(p, dir)) {
        writeln!(
            std::io::stdout().lock(),
            "note: paydrop reads patterns from {}; move the file there (or point \
             --patterns-dir / patterns_dir at its folder)",
            dir.display()
        )?;
    }
    Ok(())
}

fn same_folder(a: &Path, b: &Path) -> bool {
    let a = if a.as_os_str().is_empty() {
        Path::new(".")
    } else {
        a
    };
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A pattern as TOML with comments on what each key means.
fn template(p: &Pattern, from: &Pattern) -> String {
    format!(
        "# Pattern {id} \"{name}\": a copy of pattern {from_id} \"{from_name}\" ({from_source}).
# Edit it to describe your file; `paydrop patterns check FILE` names each
# mistake with its line. Keys:
#   id                the provider's FilePattern number this file stands for;
#                     it may not be a built-in id (1, 3) or another file's
#   delimiter         \",\", \";\", \"|\" or \"\\t\"
#   header            true, false or \"auto\" (a first row of column names)
#   encoding          \"utf-8\" or \"windows-1254\"
#   decimal_separator \".\" or \",\"
#   quoting           \"none\" (the provider documents none) or \"rfc4180\"
# Each [[columns]] in file order: name, type (string, integer, decimal,
# date, datetime, boolean, enum, card_number, card_first8, card_last4,
# card_expiry, iban, tr_identity, tr_tax_number, tr_identity_or_tax_number,
# currency, email), required (default true), unique, mask, min_len, max_len,
# regex, min, max, scale, format, values; and the roles amount, currency,
# line_number, payment_code (one column each).

{body}",
        id = p.id,
        name = p.name.replace(['\n', '\r'], " "),
        from_id = from.id,
        from_name = from.name.replace(['\n', '\r'], " "),
        from_source = from.source,
        body = p.to_toml()
    )
}
