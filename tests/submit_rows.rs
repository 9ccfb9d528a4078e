//! Every payment row is sent once across all files (issue 9): the content
//! identity is the payment rows as sent, so copies of an accepted file with
//! CRLF line ends, without the final newline, with an extra newline or with
//! a header row are the same content; and every row's payment code is
//! checked against the rows of earlier batches, so a prefix of the file, a
//! reordered copy or a file mixing new and sent rows is refused too, naming
//! the rows and the earlier batch. `--force` is the only way past.

mod common_submit;

use std::path::PathBuf;

use common_submit::{default_options, lines_of, Spec, World};
use paydrop::ledger::State;
use paydrop::pattern::Pattern;
use paydrop::submit::SubmitError;

/// A world with an accepted 2,000-row file `a.csv`; its bytes and the
/// accepted BulkPaymentId.
async fn accepted() -> (World, Vec<u8>, i64) {
    let world = World::start().await;
    let (path, _) = world.generate("a.csv", Spec::valid(2_000, 11));
    let done = world
        .submit(&path, &default_options())
        .await
        .expect("first submit");
    let id = done.batch.submissions[0].bulk_payment_id.expect("accepted");
    (world, std::fs::read(&path).unwrap(), id)
}

fn write(world: &World, name: &str, bytes: &[u8]) -> PathBuf {
    let path = world.path(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

const HEADER: &str = "cardNumber,expiryDate,amount,lineNumber,cardOwnerName,trackingCode,\
customerId,productCategory,productId,merchantUniqueCode,providerBased,providerKey,routeGroupKey,\
payRouteByPass,payRouteType,posBased,posId\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_an_accepted_file_are_the_same_content_and_refused() {
    let (world, bytes, id) = accepted().await;
    let crlf: Vec<u8> = bytes
        .iter()
        .flat_map(|&b| {
            if b == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![b]
            }
        })
        .collect();
    let no_final_newline = bytes[..bytes.len() - 1].to_vec();
    let extra_newline = [&bytes[..], b"\n"].concat();
    let with_header = [HEADER.as_bytes(), &bytes[..]].concat();
    for (name, copy) in [
        ("crlf.csv", crlf),
        ("no-final-newline.csv", no_final_newline),
        ("extra-newline.csv", extra_newline),
        ("with-header.csv", with_header),
    ] {
        let path = write(&world, name, &copy);
        match world.submit(&path, &default_options()).await {
            Err(SubmitError::AlreadySubmitted { earlier, .. }) => {
                assert!(
                    earlier.contains(&format!("BulkPaymentId {id}")),
                    "{name}: {earlier}"
                )
            }
            other => panic!("{name}: expected AlreadySubmitted, got {other:?}"),
        }
        let run = world.run(world.cli_submit(&path, &[])).await;
        run.expect_code(3);
        assert!(
            run.stderr.contains("was already submitted"),
            "{}",
            run.all()
        );
    }
    assert_eq!(world.sandbox.batches().len(), 1, "paid once");
    assert_eq!(world.sandbox.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_a_reordered_copy_and_a_mixed_file_are_refused_by_their_rows() {
    let (world, bytes, id) = accepted().await;
    let lines = lines_of(&bytes);
    let prefix = lines[..500].concat();
    // Reordered: the line numbers must still count 1, 2, 3, … so they are
    // rewritten; the payments (codes) are the same.
    let mut reordered_rows: Vec<Vec<String>> = lines
        .iter()
        .rev()
        .map(|l| {
            String::from_utf8_lossy(l)
                .trim_end()
                .split(',')
                .map(str::to_string)
                .collect()
        })
        .collect();
    for (i, cells) in reordered_rows.iter_mut().enumerate() {
        cells[3] = (i + 1).to_string();
    }
    let reordered: String = reordered_rows
        .iter()
        .map(|c| format!("{}\n", c.join(",")))
        .collect();
    // Mixed: 300 new rows, then rows 7 and 9 of a.csv renumbered 301, 302.
    let (fresh, _) = world.generate("fresh.csv", Spec::valid(300, 12));
    let mut mixed = std::fs::read(&fresh).unwrap();
    for (n, line) in [(301, lines[6]), (302, lines[8])] {
        let mut cells: Vec<String> = String::from_utf8_lossy(line)
            .trim_end()
            .split(',')
            .map(str::to_string)
            .collect();
        cells[3] = n.to_string();
        mixed.extend(format!("{}\n", cells.join(",")).into_bytes());
    }

    for (name, copy, sent, total) in [
        ("prefix.csv", prefix, 500, 500),
        ("reordered.csv", reordered.into_bytes(), 2_000, 2_000),
        ("mixed.csv", mixed, 2, 302),
    ] {
        let path = write(&world, name, &copy);
        let err = world
            .submit(&path, &default_options())
            .await
            .expect_err(name);
        let SubmitError::RowsAlreadySent { rows, total: t } = &err else {
            panic!("{name}: expected RowsAlreadySent, got {err:?}")
        };
        assert_eq!((rows.rows, *t), (sent, total), "{name}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "{sent} of the {total} rows of this file were already sent"
            )),
            "{message}"
        );
        assert!(
            message.contains(&format!("BulkPaymentId {id}, accepted")),
            "{message}"
        );
        assert!(message.contains("e.g. PD-11-"), "{message}");
        assert!(message.contains("--force"), "{message}");
        assert_eq!(rows.parts.len(), 1, "{name}");
    }
    // The mixed file's message names its two sent rows.
    let run = world
        .run(world.cli_submit(&world.path("mixed.csv"), &[]))
        .await;
    run.expect_code(3);
    assert!(
        run.stderr
            .contains("e.g. PD-11-00000007 (lineNumber 301), PD-11-00000009 (lineNumber 302)"),
        "{}",
        run.all()
    );
    assert_eq!(world.sandbox.batches().len(), 1, "nothing else was sent");

    // --force is the only way past, and says what it does.
    let forced = world
        .run(world.cli_submit(&world.path("mixed.csv"), &["--force"]))
        .await;
    forced.expect_code(0);
    assert!(
        forced
            .stdout
            .contains("--force: sending 2 rows again that were already sent (batch 1 part 1"),
        "{}",
        forced.all()
    );
    assert_eq!(world.sandbox.batches().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_a_batch_of_unknown_outcome_are_held_too_and_stay_held_once_received() {
    let world = World::start().await;
    let (path, _) = world.generate("a.csv", Spec::valid(200, 13));
    // The upload is cut; the sandbox's bulk inquiry does not have it, and a
    // "not found" so soon is not believed: the part is of unknown outcome.
    world
        .faults()
        .drop_mid_body
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let unsure = paydrop::submit::SubmitOptions {
        inquiry_grace: std::time::Duration::from_secs(600),
        ..default_options()
    };
    let batch = match world.submit(&path, &unsure).await {
        Err(SubmitError::Unknown { batch, .. }) => batch,
        other => panic!("expected Unknown, got {other:?}"),
    };
    let bytes = std::fs::read(&path).unwrap();
    let half = write(&world, "half.csv", &lines_of(&bytes)[..100].concat());
    match world.submit(&half, &unsure).await {
        Err(e @ SubmitError::RowsAlreadySent { .. }) => {
            assert!(e.to_string().contains("OUTCOME UNKNOWN"), "{e}")
        }
        other => panic!("expected RowsAlreadySent, got {other:?}"),
    }
    // The operator's finding (the provider's panel): accepted after all;
    // still refused.
    world
        .run_cli(&["resolve", &batch.to_string(), "1", "--received", "90017"])
        .await
        .expect_code(0);
    assert!(matches!(
        world.submit(&half, &unsure).await,
        Err(SubmitError::RowsAlreadySent { .. })
    ));
    assert_eq!(world.sandbox.requests(), 1);
}

/// Pattern 1 without a payment code: `merchantUniqueCode` is then an
/// ordinary column, and a row is known by all its cells but its line number.
fn pattern_without_code() -> Pattern {
    let toml = common_submit::pattern1()
        .to_toml()
        .replace("payment_code = true\n", "");
    let p = Pattern::from_toml(&toml, "no-code.toml").unwrap();
    assert_eq!(p.payment_code_column(), None);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_payment_code_the_whole_row_identifies_a_payment() {
    let world = World::start().await;
    let pattern = pattern_without_code();
    let (path, _) = world.generate("a.csv", Spec::valid(400, 14));
    let opts = default_options();
    world
        .submit_as(&path, &pattern, &world.client, &opts)
        .await
        .expect("first submit");
    let bytes = std::fs::read(&path).unwrap();
    // The last 100 rows first, renumbered.
    let lines = lines_of(&bytes);
    let moved: String = lines[300..]
        .iter()
        .chain(&lines[..300])
        .enumerate()
        .map(|(i, l)| {
            let mut cells: Vec<String> = String::from_utf8_lossy(l)
                .trim_end()
                .split(',')
                .map(str::to_string)
                .collect();
            cells[3] = (i + 1).to_string();
            format!("{}\n", cells.join(","))
        })
        .collect();
    let moved = write(&world, "moved.csv", moved.as_bytes());
    match world
        .submit_as(&moved, &pattern, &world.client, &opts)
        .await
    {
        Err(e @ SubmitError::RowsAlreadySent { .. }) => {
            let text = e.to_string();
            assert!(text.starts_with("400 of the 400 rows"), "{text}");
            assert!(text.contains("the row with lineNumber 1"), "{text}");
        }
        other => panic!("expected RowsAlreadySent, got {other:?}"),
    }
    // A row that differs in any payment cell is another payment.
    let mut cells: Vec<String> = String::from_utf8_lossy(lines[0])
        .trim_end()
        .split(',')
        .map(str::to_string)
        .collect();
    cells[4].push('A');
    let other = write(
        &world,
        "other.csv",
        format!("{}\n", cells.join(",")).as_bytes(),
    );
    let done = world
        .submit_as(&other, &pattern, &world.client, &opts)
        .await
        .expect("a new payment");
    assert_eq!(done.batch.submissions[0].state, State::Accepted);
}
