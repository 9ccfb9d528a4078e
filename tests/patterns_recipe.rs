//! Issue 11, item 8: the custom-pattern recipe through the binary (`patterns
//! new` → edit → `check` → `gen` and `validate` with the new pattern), the
//! refusal of ids that are taken, and a broken pattern file failing only
//! the commands that use its id.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

/// `paydrop` run in `dir` with `dir/paydrop.toml`, which points at
/// `mypatterns`: the folder the config names is the one used.
fn in_dir(dir: &Path) -> Command {
    fs::write(dir.join("paydrop.toml"), "patterns_dir = \"mypatterns\"\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paydrop"));
    cmd.current_dir(dir)
        .env_remove("PAYDROP_PATTERNS")
        .env_remove("PAYDROP_LOG")
        .env_remove("PAYDROP_CONFIG")
        .args(["--config", "paydrop.toml"]);
    cmd
}

fn go(dir: &Path, args: &[&str]) -> (i32, String, String) {
    outcome(&run(in_dir(dir).args(args)))
}

fn validate(dir: &Path, pattern: &str, file: &str) -> (i32, String, String) {
    go(
        dir,
        &["validate", "-p", pattern, "--as-of", AS_OF_ARG, file],
    )
}

#[test]
fn the_readme_recipe_runs_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out_file = "mypatterns/2-my-layout.toml";
    let (code, out, err) = go(
        dir,
        &[
            "patterns", "new", "--id", "2", "--from", "1", "-o", out_file,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains("note:"),
        "the config's folder is the one written to: {out}"
    );
    let text = fs::read_to_string(dir.join(out_file)).unwrap();
    assert!(
        text.starts_with("# Pattern 2 \"Custom 2 (from Open Card – Simple)\""),
        "{text}"
    );
    assert!(
        text.contains("\nid = 2\n") && text.contains("# Each [[columns]]"),
        "{text}"
    );

    // The edit of the recipe: another delimiter.
    let edited = text.replace("delimiter = \",\"", "delimiter = \";\"");
    assert_ne!(edited, text);
    fs::write(dir.join(out_file), edited).unwrap();
    let (code, out, err) = go(dir, &["patterns", "check", out_file]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pattern 2 \"Custom 2 (from Open Card – Simple)\" is valid (17 columns)"));
    let (code, out, err) = go(dir, &["patterns", "check"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = go(dir, &["patterns", "list"]);
    assert_eq!(code, 0, "{out}");
    let ids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids, ["1", "2", "3"], "{out}");

    let (code, out, err) = go(
        dir,
        &[
            "gen", "-p", "2", "--rows", "40", "--as-of", AS_OF_ARG, "-o", "gen.csv",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let generated = fs::read_to_string(dir.join("gen.csv")).unwrap();
    assert!(
        generated.lines().all(|l| l.split(';').count() == 17),
        "{generated}"
    );
    let (code, out, err) = validate(dir, "2", "gen.csv");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("VALID, 40 rows"), "{out}");

    // Running it again: the id is taken and the file exists.
    let (code, _, err) = go(
        dir,
        &[
            "patterns", "new", "--id", "2", "--from", "1", "-o", out_file,
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("pattern id 2 is taken (by ") && err.contains("2-my-layout.toml"),
        "{err}"
    );
    let (code, _, err) = go(
        dir,
        &[
            "patterns", "new", "--id", "5", "--from", "2", "-o", out_file,
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("2-my-layout.toml exists") && err.contains("--force"),
        "{err}"
    );
    let (code, out, err) = go(
        dir,
        &[
            "patterns", "new", "--id", "5", "--from", "2", "-o", out_file, "--force",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(fs::read_to_string(dir.join(out_file))
        .unwrap()
        .contains("\nid = 5\n"));

    // Without -o: into the configured folder.
    let (code, out, err) = go(dir, &["patterns", "new", "--id", "6", "--from", "5"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(dir.join("mypatterns/6-custom.toml").is_file());
}

#[test]
fn an_id_that_is_taken_is_refused_naming_its_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (id, from, holder) in [("1", "3", "built-in"), ("3", "1", "built-in")] {
        let (code, _, err) = go(dir, &["patterns", "new", "--id", id, "--from", from]);
        assert_ne!(code, 0);
        assert!(
            err.contains(&format!("pattern id {id} is taken (by {holder})")),
            "{err}"
        );
    }
    assert!(
        !dir.join("mypatterns").exists(),
        "nothing written on a refusal"
    );

    // A file that takes a built-in id by hand replaces nothing: pattern 1
    // fails, naming both, while pattern 3 keeps working.
    let (_, toml, _) = go(dir, &["patterns", "show", "1"]);
    fs::create_dir(dir.join("mypatterns")).unwrap();
    fs::write(
        dir.join("mypatterns/mine.toml"),
        toml.replace("Open Card", "Mine"),
    )
    .unwrap();
    fs::write(dir.join("p1.csv"), lines(&[row1(1)])).unwrap();
    let (code, out, err) = validate(dir, "1", "p1.csv");
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("mine.toml: pattern id 1 is a built-in pattern")
            && err.contains("cannot replace it"),
        "{err}"
    );
    let (code, out, err) = go(
        dir,
        &[
            "gen", "-p", "3", "--rows", "5", "--as-of", AS_OF_ARG, "-o", "p3.csv",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = validate(dir, "3", "p3.csv");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = go(dir, &["patterns", "list"]);
    assert_eq!(code, 2);
    assert!(
        out.contains("  1  BROKEN  ") && out.contains("mine.toml"),
        "{out}"
    );

    // Two files with one id: both named, the id unusable.
    fs::remove_file(dir.join("mypatterns/mine.toml")).unwrap();
    let two = toml.replace("id = 1", "id = 2");
    fs::write(dir.join("mypatterns/a.toml"), &two).unwrap();
    fs::write(dir.join("mypatterns/b.toml"), &two).unwrap();
    let (code, _, err) = go(dir, &["gen", "-p", "2", "--rows", "5", "-o", "x.csv"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("b.toml: pattern id 2 is already defined in") && err.contains("a.toml"),
        "{err}"
    );
    let (code, _, err) = go(dir, &["patterns", "check"]);
    assert_eq!(code, 2);
    assert!(err.contains("already defined"), "{err}");
}

#[test]
fn a_broken_pattern_file_fails_only_the_commands_that_use_its_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, toml, _) = go(dir, &["patterns", "show", "1"]);
    fs::create_dir(dir.join("mypatterns")).unwrap();
    let good = toml
        .replace("id = 1", "id = 2")
        .replace("delimiter = \",\"", "delimiter = \";\"");
    fs::write(dir.join("mypatterns/2-good.toml"), good).unwrap();
    let bad = toml
        .replace("id = 1", "id = 4")
        .replace("delimiter = \",\"", "delimiter = \"#\"");
    fs::write(dir.join("mypatterns/4-bad.toml"), &bad).unwrap();
    let bad_line = bad.lines().position(|l| l == "delimiter = \"#\"").unwrap() + 1;
    // What `patterns show 1 > mypatterns/x.toml` leaves when the shell
    // creates the file before paydrop runs.
    fs::write(dir.join("mypatterns/x.toml"), "").unwrap();

    fs::write(dir.join("p1.csv"), lines(&[row1(1)])).unwrap();
    let (code, out, err) = validate(dir, "1", "p1.csv");
    assert_eq!(code, 0, "{out}{err}");
    fs::write(dir.join("p2.csv"), lines(&[row1(1).replace(',', ";")])).unwrap();
    let (code, out, err) = validate(dir, "2", "p2.csv");
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = validate(dir, "4", "p1.csv");
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("pattern 4 cannot be used: ")
            && err.contains(&format!("4-bad.toml:{bad_line}: `delimiter`")),
        "{err}"
    );
    // An id nobody defines names the file whose id is unknown.
    let (code, _, err) = validate(dir, "7", "p1.csv");
    assert_eq!(code, 2);
    assert!(
        err.contains("pattern 7 is not defined") && err.contains("x.toml"),
        "{err}"
    );

    let (code, out, _) = go(dir, &["patterns", "list"]);
    assert_eq!(code, 2);
    assert!(
        out.contains("  4  BROKEN  ") && out.contains("  ?  BROKEN  "),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("  2  ")), "{out}");
    let (code, out, err) = go(dir, &["patterns", "check"]);
    assert_eq!(code, 2);
    assert!(out.contains("2-good.toml: pattern 2"), "{out}");
    assert!(
        err.contains(&format!("4-bad.toml:{bad_line}: `delimiter`")) && err.contains("x.toml"),
        "{err}"
    );
    let (code, out, err) = go(dir, &["patterns", "show", "2"]);
    assert_eq!(code, 0, "{out}{err}");
}
