//! Issue 2, fuzz-style: random bytes and random damage to valid pattern-1
//! files never make the validator panic, and whatever it reports is
//! consistent (counts add up, every error names a real line and a reason, no
//! card number of the file is printed in full).

mod common;

use common::*;
use paydrop::pattern::Pattern;
use paydrop::validate::Options;
use proptest::prelude::*;
use proptest::sample::Index;

/// Bytes that matter to a delimited file, mixed with arbitrary ones.
const INTERESTING: &[u8] = b",;\"\0\r\n\t .-+0123456789eE/aZ\xef\xbb\xbf\xff\xfe\x80\xc5\x1f\x8b";

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), proptest::sample::select(INTERESTING)]
}

#[derive(Clone, Debug)]
enum Mutation {
    Insert(Index, u8),
    Delete(Index),
    Replace(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Insert(i, b) => {
            let at = i.index(bytes.len() + 1);
            bytes.insert(at, *b);
        }
        Mutation::Delete(i) if !bytes.is_empty() => {
            bytes.remove(i.index(bytes.len()));
        }
        Mutation::Replace(i, b) if !bytes.is_empty() => {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
        _ => {}
    }
}

/// Valid pattern-1 files: a header or not, 1–6 rows, LF or CRLF.
fn valid_file() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), 1..=6u64, any::<bool>()).prop_map(|(header_row, rows, crlf)| {
        let mut lines_: Vec<String> = Vec::new();
        if header_row {
            lines_.push(header(&builtin(1)));
        }
        lines_.extend((1..=rows).map(row1));
        let text = lines(&lines_);
        if crlf {
            text.replace('\n', "\r\n").into_bytes()
        } else {
            text.into_bytes()
        }
    })
}

/// Options that sometimes keep few errors, split small and limit lines.
fn opts() -> impl Strategy<Value = Options> {
    (
        prop_oneof![Just(1_000_000usize), 0..4usize],
        1..4u64,
        prop_oneof![Just(1usize << 20), 16..512usize],
    )
        .prop_map(|(max_errors, split_rows, max_line_bytes)| Options {
            max_errors,
            split_rows,
            max_line_bytes,
            ..options()
        })
}

/// Physical lines in `bytes` (line breaks `\n`, `\r\n` or `\r`).
fn line_count(bytes: &[u8]) -> u64 {
    let breaks = (0..bytes.len())
        .filter(|&i| bytes[i] == b'\r' || (bytes[i] == b'\n' && (i == 0 || bytes[i - 1] != b'\r')))
        .count();
    breaks as u64 + 1
}

/// Validates and checks everything that must hold for any input.
fn check(
    bytes: &[u8],
    pattern: &Pattern,
    opts: &Options,
    cards: &[String],
) -> Result<(), TestCaseError> {
    match validate_bytes(bytes, pattern, opts) {
        Ok(r) => {
            prop_assert!(r.rows_read >= 1);
            prop_assert_eq!(r.rows_valid + r.rows_invalid, r.rows_read);
            prop_assert_eq!(r.errors.len() as u64 + r.errors_not_shown, r.errors_total);
            prop_assert!(r.errors.len() <= opts.max_errors);
            prop_assert!(r.errors_total >= r.rows_invalid);
            prop_assert_eq!(r.bytes, bytes.len() as u64);
            // Pattern 1 requires an amount: every valid row is totalled.
            prop_assert_eq!(r.totals.rows(), r.rows_valid);
            let parts_rows: u64 = r.parts.iter().map(|p| p.rows).sum();
            prop_assert_eq!(parts_rows, r.rows_read);
            let lines_in_file = line_count(bytes);
            for e in &r.errors {
                prop_assert!(
                    e.line >= 1 && e.line <= lines_in_file,
                    "line {} of {}: {}",
                    e.line,
                    lines_in_file,
                    e
                );
                prop_assert!(!e.reason.trim().is_empty(), "{:?}", e);
                prop_assert!(e.row <= r.rows_read);
            }
            let json = serde_json::to_string(&r).expect("report serialises");
            for c in cards {
                prop_assert!(!json.contains(c.as_str()), "full card {} in {}", c, json);
            }
        }
        Err(e) => prop_assert!(!e.to_string().trim().is_empty(), "{:?}", e),
    }
    Ok(())
}

/// 256 cases, or `PROPTEST_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), opts in opts()) {
        check(&bytes, &builtin(1), &opts, &[])?;
    }

    #[test]
    fn random_delimited_noise_never_panics(bytes in proptest::collection::vec(byte(), 0..2048), opts in opts()) {
        check(&bytes, &builtin(1), &opts, &[])?;
    }

    #[test]
    fn damaged_valid_files_never_panic_or_leak_cards(
        file in valid_file(),
        mutations in proptest::collection::vec(mutation(), 1..16),
        opts in opts(),
    ) {
        let cards: Vec<String> = (1..=6).map(card).collect();
        let mut bytes = file;
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check(&bytes, &builtin(1), &opts, &cards)?;
    }

    #[test]
    fn damaged_valid_files_on_disk_never_panic(
        file in valid_file(),
        mutations in proptest::collection::vec(mutation(), 1..8),
    ) {
        // validate_file takes a second pass for duplicates: damage a copy
        // of a row so that there are some.
        let mut bytes = file.clone();
        bytes.extend_from_slice(&file[file.len() / 2..]);
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let f = temp_file(&bytes);
        let r = paydrop::validate::validate_file(
            f.path(),
            &builtin(1),
            &options(),
            paydrop::validate::Hooks::default(),
        );
        match r {
            Ok(r) => {
                prop_assert_eq!(r.rows_valid + r.rows_invalid, r.rows_read);
                let lines_in_file = line_count(&bytes);
                for e in &r.errors {
                    prop_assert!(e.line >= 1 && e.line <= lines_in_file);
                    prop_assert!(!e.reason.is_empty());
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
