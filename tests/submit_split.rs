//! A file over the provider's 150,000-row limit becomes several submissions
//! whose rows and amounts add up exactly.

mod common_submit;

use common_submit::{
    amount_sum, assert_notices, default_options, expected_parts, sha256_hex, try_currency, Spec,
    World,
};
use paydrop::ledger::State;
use rust_decimal::Decimal;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_200k_row_file_is_sent_as_150k_and_50k_whose_amounts_add_up() {
    let world = World::start().await;
    let (path, generated) = world.generate("big.csv", Spec::valid(200_000, 2026));
    let bytes = std::fs::read(&path).unwrap();
    let parts = expected_parts(&bytes, false, 150_000);
    let opts = default_options();

    let done = world.submit(&path, &opts).await.expect("submitted");

    let try_ = try_currency();
    let total = done.report.totals.amount(try_);
    assert_eq!(done.report.rows_read, 200_000);
    assert_eq!(done.report.rows_invalid, 0);
    assert_eq!(
        total,
        generated.totals.amount(try_),
        "validator vs generator"
    );
    assert_eq!(
        total,
        amount_sum(&bytes, false),
        "validator vs the file's cells"
    );
    assert_eq!(done.report.sha256, sha256_hex(&bytes));

    // The ledger: one batch of two accepted parts.
    let batch = &done.batch;
    assert_eq!(batch.id, world.only_batch_for(&done.report.sha256).id);
    assert_eq!(
        (batch.rows, batch.amount, batch.generation),
        (200_000, total, 0)
    );
    assert!(batch.is_accepted());
    let subs = &batch.submissions;
    assert_eq!(subs.len(), 2);
    assert_eq!(subs.iter().map(|s| s.part).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        subs.iter().map(|s| s.rows).collect::<Vec<_>>(),
        [150_000, 50_000]
    );
    assert!(subs
        .iter()
        .all(|s| s.state == State::Accepted && s.attempts == 1));
    assert_eq!(subs.iter().map(|s| s.amount).sum::<Decimal>(), total);
    for (s, part) in subs.iter().zip(&parts) {
        assert_eq!(s.amount, amount_sum(part, false), "part {}", s.part);
        assert_eq!(
            s.merchant_unique_code,
            paydrop::submit::merchant_unique_code(&done.report.sha256, s.part, 2, 0)
        );
    }
    assert_notices(
        &done,
        &opts,
        &["200000 rows sent as 2 parts of at most 150000 rows"],
    );

    // The sandbox: two batches, each exactly its part of the file.
    let got = world.sandbox.batches();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(world.sandbox.requests(), 2);
    assert_eq!(
        got.iter().map(|b| b.rows).collect::<Vec<_>>(),
        [150_000, 50_000]
    );
    assert_eq!(got.iter().map(|b| b.amount).sum::<Decimal>(), total);
    for ((b, s), part) in got.iter().zip(subs).zip(&parts) {
        assert_eq!(b.merchant_unique_code, s.merchant_unique_code);
        assert_eq!(Some(b.bulk_payment_id), s.bulk_payment_id);
        assert_eq!(b.amount, s.amount);
        assert!(b.amount_given, "Amount is sent");
        assert_eq!((b.bytes, &b.sha256), (part.len() as u64, &sha256_hex(part)));
        assert_eq!(b.content_encoding, None);
        assert_eq!(b.file_part_encoding.map(|c| c.name()), Some("gzip"));
    }
    assert_ne!(got[0].bulk_payment_id, got[1].bulk_payment_id);

    // The ledger remembers every row sent, in its part, exactly as written:
    // lineNumber, merchantUniqueCode and amount.
    let ledger = world.ledger();
    for (s, part) in subs.iter().zip(&parts) {
        let mut expected = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&part[..]);
        let mut n = 0u64;
        let mut records = expected.records();
        ledger
            .each_sent_row(s.id, |row| {
                let cells = records.next().expect("a row per sent row").unwrap();
                assert_eq!(row.line_number.to_string(), cells[3].to_string());
                assert_eq!(row.amount.to_string(), cells[2].to_string());
                assert_eq!(row.code.as_deref(), Some(&cells[9]));
                n += 1;
                Ok::<_, paydrop::ledger::LedgerError>(())
            })
            .unwrap();
        assert!(records.next().is_none(), "part {}: rows missing", s.part);
        assert_eq!((n, ledger.sent_row_count(s.id).unwrap()), (s.rows, s.rows));
    }
}
