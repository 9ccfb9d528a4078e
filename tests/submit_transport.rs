//! What went over the wire decides what paydrop may do next. Nothing
//! reached the provider (connection refused, an invalid URL): the part is
//! retried and shown as not sent, never as unknown. The file changed between
//! validation and upload: the request is stopped before its final multipart
//! boundary, nothing is accepted, and the ledger keeps what was validated.

mod common_stub;
mod common_submit;

use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common_stub::{Start, Stub};
use common_submit::{
    client_for, credentials, default_options, fast_retry, guard, options, Spec, World, API_CLIENT,
    API_KEY,
};
use paydrop::compress::Codec;
use paydrop::ledger::State;
use paydrop::submit::SubmitError;
use paydrop::upload::{BodyMode, Client};

/// A 127.0.0.1 port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_and_shown_as_not_sent_never_unknown() {
    let world = World::start().await;
    let (path, _) = world.generate("refused.csv", Spec::valid(50, 71));
    let base = format!("http://127.0.0.1:{}", closed_port());
    let client = client_for(&base, credentials(API_KEY, API_CLIENT));
    let mut opts = default_options();
    opts.retry = fast_retry(3);

    let err = world
        .submit_as(&path, &world.pattern, &client, &opts)
        .await
        .expect_err("nothing listens");
    let SubmitError::NotSent {
        attempts: 3,
        message,
        ..
    } = &err
    else {
        panic!("expected NotSent after 3 attempts, got {err:?}")
    };
    assert!(message.contains("never reached the provider"), "{message}");
    let batch = world.ledger().recent_batches(1).unwrap().remove(0);
    let sub = &batch.submissions[0];
    assert_eq!(sub.state, State::Pending);
    assert!(!sub.outcome_unknown(), "{sub:#?}");
    let attempts = world.ledger().attempts(sub.id).unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(attempts
        .iter()
        .all(|a| a.outcome.as_deref() == Some("not_sent")));

    // The command line says so, and `status` does not call it unknown.
    let mut cmd = world.cli(["submit".as_ref(), path.as_os_str()]);
    cmd.args(["--pattern", "1", "--base", &base]);
    let run = world.run(cmd).await;
    run.expect_code(6);
    assert!(
        run.stderr.contains("was not taken by the provider"),
        "{}",
        run.all()
    );
    assert!(!run.all().contains("UNKNOWN"), "{}", run.all());
    let status = world.run_cli(&["status"]).await;
    status.expect_code(0);
    assert!(
        status
            .stdout
            .contains("pending, not sent yet: never reached the provider"),
        "{}",
        status.all()
    );
    assert!(!status.stdout.contains("UNKNOWN"), "{}", status.all());

    // The provider comes back: sent once, under the same code.
    let done = world.submit(&path, &opts).await.expect("sent");
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].merchant_unique_code, sub.merchant_unique_code);
    assert_eq!(done.batch.submissions[0].state, State::Accepted);
}

#[test]
fn an_invalid_url_is_refused_before_anything_is_sent() {
    let e = match Client::new(
        "http://[::1",
        credentials(API_KEY, API_CLIENT),
        Duration::from_secs(5),
        Duration::from_secs(5),
    ) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a client for an unusable address"),
    };
    assert!(e.contains("is not an absolute URL"), "{e}");
}

/// Card numbers of the last two rows swapped in place: same size, same
/// total, other payments.
fn swap_last_two_cards(path: &std::path::Path) {
    let bytes = std::fs::read(path).unwrap();
    let ends: Vec<usize> = memchr::memchr_iter(b'\n', &bytes).collect();
    let (a, b) = (ends[ends.len() - 3] + 1, ends[ends.len() - 2] + 1);
    let card_a = bytes[a..a + 16].to_vec();
    let card_b = bytes[b..b + 16].to_vec();
    assert_ne!(card_a, card_b);
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(a as u64)).unwrap();
    f.write_all(&card_b).unwrap();
    f.seek(SeekFrom::Start(b as u64)).unwrap();
    f.write_all(&card_a).unwrap();
    f.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_between_validation_and_upload_is_never_completed() {
    let world = World::start().await;
    // Far more than the pipe between paydrop and the stub holds, so that the
    // end of the file is still unread while the stub holds the request.
    let (path, _) = world.generate("swapped.csv", Spec::valid(300_000, 73));
    let size = std::fs::metadata(&path).unwrap().len();
    let stub = Stub::start(vec![Start::Gated(4242), Start::Accept(4243)], vec![]).await;
    let client = client_for(&stub.base_url(), credentials(API_KEY, API_CLIENT));
    let mut opts = options(Codec::None, BodyMode::FilePart);
    opts.validate.split_rows = 300_000;

    let submit = {
        let (path, pattern, ledger_path, sent) = (
            path.clone(),
            world.pattern.clone(),
            world.ledger_path.clone(),
            world.sent.clone(),
        );
        let (client, opts) = (client.clone(), opts.clone());
        tokio::spawn(async move {
            let mut ledger = paydrop::ledger::Ledger::open(&ledger_path).unwrap();
            paydrop::submit::submit_file(&path, &pattern, &mut ledger, &client, &opts, sent).await
        })
    };
    guard("the stub to hold the upload", stub.held()).await;
    // Wait until paydrop stops reading: it is blocked on the full pipe.
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = world.sent.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    assert!(
        last < size - (4 << 20),
        "read {last} of {size} bytes already"
    );
    swap_last_two_cards(&path);
    stub.release();

    let err = guard("the submit", submit)
        .await
        .unwrap()
        .expect_err("stopped");
    let SubmitError::FileChanged {
        part: 1, message, ..
    } = &err
    else {
        panic!("expected FileChanged, got {err:?}")
    };
    assert!(
        message.contains("changed after it was validated"),
        "{message}"
    );
    assert!(err.to_string().contains("cannot have accepted it"), "{err}");
    let starts = stub.starts();
    assert_eq!(starts.len(), 1);
    assert!(
        !starts[0].complete,
        "the final multipart boundary was never sent"
    );

    // The ledger: the validated content, refused by paydrop, nothing paid.
    let ledger = world.ledger();
    let batch = ledger.recent_batches(1).unwrap().remove(0);
    let sub = &batch.submissions[0];
    assert_eq!(sub.state, State::Rejected);
    assert!(!sub.outcome_unknown());
    assert_eq!(ledger.sent_row_count(sub.id).unwrap(), 300_000);
    let attempts = ledger.attempts(sub.id).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("aborted"));

    // The changed file is new content with the same payment codes: the
    // rejected batch holds none of them, so it goes through, checked again.
    let done = world
        .submit_as(&path, &world.pattern, &client, &opts)
        .await
        .expect("the changed file, validated and sent");
    assert_ne!(done.batch.sha256, batch.sha256);
    assert_eq!(done.batch.submissions[0].bulk_payment_id, Some(4243));
    let starts = stub.starts();
    assert!(starts[1].complete);
    assert_eq!(starts[1].file, std::fs::read(&path).unwrap());
}
