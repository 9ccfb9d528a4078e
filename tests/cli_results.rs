//! `paydrop results`, `status --json` and `ledger show` after a sandbox run
//! whose result callbacks the daemon recorded: every row listed with the
//! provider's outcome, the declined and paid filters, CSV to a file, exact
//! totals per outcome, no card number anywhere.

mod watch_common;

use std::collections::BTreeMap;
use std::process::Output;

use paydrop::results::Outcome;
use paydrop::watch::DONE;
use rust_decimal::Decimal;
use serde_json::Value;
use watch_common::*;

fn run(rig: &Rig, args: &[&str]) -> Output {
    rig.cli()
        .env("PAYDROP_LEDGER", &rig.ledger_path)
        .args(args)
        .output()
        .expect("paydrop runs")
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_list_every_row_with_exact_totals_and_no_card() {
    let rig = Rig::start_with(|s| s.bulk.decline_rate = 0.3).await;
    let daemon = rig.daemon(rig.config()).await;
    let rows = 120;
    let bytes = payments(71, rows);
    let cards: Vec<String> = (1..=rows).map(|n| row_cells(71, n)[0].clone()).collect();
    rig.drop_file("r.csv", &bytes);
    let filed = rig.wait_filed(DONE, "r.csv").await;
    rig.wait_sidecar(&filed, "results.json").await;
    daemon.stop().await;
    let batch = rig.ledger_batches().pop().expect("a batch");
    // What the ledger recorded, read through the library.
    let recorded = rig.ledger().results_of_batch(batch.id).unwrap();
    assert_eq!(recorded.len() as u64, rows);
    let mut want: BTreeMap<&str, (u64, Decimal)> = BTreeMap::new();
    for l in &recorded {
        let e = want.entry(l.outcome.as_str()).or_default();
        e.0 += 1;
        e.1 += l.amount;
    }
    assert!(want.get("declined").is_some_and(|d| d.0 > 0), "{want:?}");
    assert!(want.get("paid").is_some_and(|d| d.0 > 0), "{want:?}");

    let id = batch.id.to_string();
    let all = stdout_json(&run(&rig, &["results", &id, "--json"]));
    assert_eq!(all["batch"], batch.id);
    assert_eq!(all["currency"], "TRY");
    let listed = all["rows"].as_array().unwrap();
    assert_eq!(listed.len() as u64, rows);
    for (row, l) in listed.iter().zip(&recorded) {
        assert_eq!(row["row"], l.line_number);
        // The row's card, masked to its first 6 and last 4 digits.
        let card = &cards[l.line_number as usize - 1];
        assert_eq!(
            row["card"],
            format!(
                "{}{}{}",
                &card[..6],
                "*".repeat(card.len() - 10),
                &card[card.len() - 4..]
            )
            .as_str(),
            "{row}"
        );
        assert_eq!(row["code"], l.merchant_unique_code.as_str());
        assert_eq!(row["status"], l.outcome.as_str());
        assert_eq!(json_dec(&row["amount"]), l.amount);
        assert_eq!(row["part"], 1);
        if l.outcome == Outcome::Declined {
            assert!(!row["message"].as_str().unwrap().is_empty(), "{row}");
        }
    }
    for (outcome, (n, amount)) in &want {
        assert_eq!(all["totals"][outcome]["rows"], *n, "{outcome}");
        assert_eq!(json_dec(&all["totals"][outcome]["amount"]), *amount);
    }
    assert_eq!(all["totals"]["without_result"], 0);
    let sum: Decimal = want.values().map(|v| v.1).sum();
    assert_eq!(sum, total(71, rows), "paid and declined add up to the file");

    for (flag, outcome) in [("--declined", "declined"), ("--paid", "paid")] {
        let only = stdout_json(&run(&rig, &["results", &id, flag, "--json"]));
        let only = only["rows"].as_array().unwrap();
        assert_eq!(only.len() as u64, want[outcome].0, "{flag}");
        assert!(only.iter().all(|r| r["status"] == outcome), "{flag}");
    }

    // CSV into a file, the totals line on stdout.
    let csv_path = rig.dir.path().join("declined.csv");
    let out = run(
        &rig,
        &[
            "results",
            &id,
            "--declined",
            "-o",
            csv_path.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "declined {} (TRY {})",
            want["declined"].0, want["declined"].1
        )),
        "{said}"
    );
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "part",
            "row",
            "code",
            "card",
            "amount",
            "currency",
            "status",
            "error_code",
            "message"
        ]
    );
    let csv_rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(csv_rows.len() as u64, want["declined"].0);
    let csv_sum: Decimal = csv_rows.iter().map(|r| dec(&r[4])).sum();
    assert_eq!(csv_sum, want["declined"].1);

    // ledger show and status carry the same counts.
    let show = stdout_json(&run(&rig, &["ledger", "show", &id, "--json"]));
    assert_eq!(show["results"], all["totals"]);
    let status = stdout_json(&run(&rig, &["status", "--json"]));
    let recent = status["recent"].as_array().unwrap();
    assert_eq!(recent[0]["batch"]["id"], batch.id);
    assert_eq!(recent[0]["results"], all["totals"]);
    let text = run(&rig, &["ledger", "show", &id]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("paid {} (TRY {})", want["paid"].0, want["paid"].1)),
        "{text}"
    );

    // No card number in anything printed or written.
    let csv_text = std::fs::read_to_string(&csv_path).unwrap();
    let printed = format!("{all}{show}{status}{text}{csv_text}");
    for card in &cards {
        assert!(!printed.contains(card.as_str()), "card {card} printed");
    }
}
