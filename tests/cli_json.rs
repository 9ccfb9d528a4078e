//! `--json` on validate, submit, status and ledger list/show, parsed (never
//! grepped), and the hint of a submit without a callback address.

mod common_submit;

use common_submit::{Spec, World};
use serde_json::Value;

fn parse(run: &common_submit::Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", run.all()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_submit_status_and_ledger_speak_json() {
    let world = World::start().await;
    let (good, _) = world.generate("good.csv", Spec::valid(40, 3));
    let (bad, planted) = world.generate(
        "bad.csv",
        Spec {
            error_rate: 0.2,
            ..Spec::valid(50, 4)
        },
    );
    assert!(!planted.planted.is_empty());

    // validate: the report on stdout.
    let run = world
        .run_cli(&["validate", good.to_str().unwrap(), "-p", "1", "--json"])
        .await;
    run.expect_code(0);
    let report = parse(&run);
    assert_eq!(report["rows_read"], 40);
    assert_eq!(report["rows_invalid"], 0);
    let run = world
        .run_cli(&["validate", bad.to_str().unwrap(), "-p", "1", "--json"])
        .await;
    run.expect_code(1);
    let report = parse(&run);
    assert!(report["errors_total"].as_u64().unwrap() > 0);
    assert!(report["errors"].as_array().is_some_and(|e| !e.is_empty()));

    // submit: the batch, and the notice that no results will come back.
    let run = world.run(world.cli_submit(&good, &["--json"])).await;
    run.expect_code(0);
    let done = parse(&run);
    assert_eq!(done["accepted"], true);
    let batch_id = done["batch"]["id"].as_i64().expect("a batch id");
    assert_eq!(done["batch"]["rows"], 40);
    assert_eq!(done["batch"]["submissions"][0]["state"], "accepted");
    let notices: Vec<&str> = done["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notices.iter().any(|n| n.starts_with("no --callback")
            && n.contains("bulk/payment/query")
            && n.contains("paydrop watch")),
        "{notices:?}"
    );
    // The same file again: refused (exit 3), still one JSON document.
    let run = world.run(world.cli_submit(&good, &["--json"])).await;
    run.expect_code(3);
    let refused = parse(&run);
    assert_eq!(refused["accepted"], false);
    assert_eq!(refused["exit_code"], 3);
    assert!(refused["error"].as_str().unwrap().contains("already"));
    // Invalid rows: the report inside.
    let run = world.run(world.cli_submit(&bad, &["--json"])).await;
    run.expect_code(1);
    let invalid = parse(&run);
    assert_eq!(invalid["accepted"], false);
    assert!(invalid["invalid"]["rows_invalid"].as_u64().unwrap() > 0);
    // -q: nothing on stdout for a success.
    let (other, _) = world.generate("other.csv", Spec::valid(5, 9));
    let run = world.run(world.cli_submit(&other, &["-q"])).await;
    run.expect_code(0);
    assert_eq!(run.stdout, "");

    // ledger list / show and status.
    let run = world.run_cli(&["ledger", "list", "--json"]).await;
    run.expect_code(0);
    let list = parse(&run);
    let ids: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&batch_id), "{ids:?}");
    let run = world
        .run_cli(&["ledger", "show", &batch_id.to_string(), "--json"])
        .await;
    run.expect_code(0);
    let show = parse(&run);
    assert_eq!(show["batch"]["id"], batch_id);
    // No callback: nothing recorded, every row still without a result.
    assert_eq!(show["results"]["without_result"], 40);
    assert_eq!(show["results"]["paid"]["rows"], 0);
    let run = world.run_cli(&["status", "--json"]).await;
    run.expect_code(0);
    let status = parse(&run);
    assert!(status["ledger"].as_str().unwrap().starts_with('/'));
    assert_eq!(status["open"].as_array().unwrap().len(), 0);
    assert!(status["recent"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["batch"]["id"] == batch_id));
}
