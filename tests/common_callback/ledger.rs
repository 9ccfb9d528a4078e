//! A batch put straight into a ledger, as `submit` leaves it once the
//! provider accepted every part: its file in an inbox's `done/`, its parts,
//! every row sent. Lets the receiver's tests start from any state (accepted
//! or not yet, thousands of rows) without an upload.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use paydrop::ledger::{
    Batch, BatchInfo, Ledger, LedgerError, NewBatch, NewSubmission, SentRow, State,
};
use rust_decimal::Decimal;

/// How the seeded file's rows look: row `n`'s text (no newline), and its
/// payment code and amount (asked for again when the rows sent are recorded).
pub struct Rows<'a> {
    pub text: &'a dyn Fn(u64) -> String,
    pub sent: &'a dyn Fn(u64) -> (String, Decimal),
}

/// A seeded batch.
pub struct Seeded {
    pub batch: Batch,
    pub file: PathBuf,
}

impl Seeded {
    /// `(BulkPaymentId, MerchantUniqueCode)` of part `i` (0-based).
    pub fn part(&self, i: usize) -> (i64, String) {
        let s = &self.batch.submissions[i];
        (
            s.bulk_payment_id.unwrap_or(self.bulk_id(i)),
            s.merchant_unique_code.clone(),
        )
    }

    /// The BulkPaymentId part `i` has (or will have, once accepted).
    pub fn bulk_id(&self, i: usize) -> i64 {
        10_000 + self.batch.id * 100 + i as i64
    }
}

/// Writes rows `1..=rows` into `dir/name` and records a batch of parts of
/// at most `split` rows with every row sent; parts are accepted (with
/// BulkPaymentIds `Seeded::bulk_id`) when `accepted`.
pub fn seed(
    ledger: &Path,
    dir: &Path,
    name: &str,
    rows: u64,
    split: u64,
    accepted: bool,
    row: Rows<'_>,
) -> Seeded {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(name);
    let mut w = BufWriter::new(std::fs::File::create(&file).unwrap());
    let mut total = Decimal::ZERO;
    let mut parts = Vec::new();
    for n in 1..=rows {
        writeln!(w, "{}", (row.text)(n)).unwrap();
        let (_, amount) = (row.sent)(n);
        total += amount;
        if (n - 1) % split == 0 {
            parts.push(NewSubmission {
                part: parts.len() as u32 + 1,
                first_row: n,
                merchant_unique_code: String::new(),
                rows: 0,
                amount: Decimal::ZERO,
            });
        }
        let p = parts.last_mut().unwrap();
        p.rows += 1;
        p.amount += amount;
    }
    w.flush().unwrap();
    let count = parts.len();
    for p in &mut parts {
        p.merchant_unique_code = format!("pd-{name}-{}of{count}", p.part);
    }
    let mut l = Ledger::open(ledger).unwrap();
    let batch = l
        .create_batch(&NewBatch {
            info: BatchInfo {
                sha256: format!("seeded-{name}"),
                file: file.display().to_string(),
                rows,
                amount: total,
                ..BatchInfo::default()
            },
            parts,
        })
        .unwrap();
    for s in &batch.submissions {
        let sent = (s.first_row..s.first_row + s.rows).map(|n| {
            let (code, amount) = (row.sent)(n);
            Ok::<_, LedgerError>(SentRow::with_code(n as i64, code, amount))
        });
        l.record_sent_rows(s.id, sent).unwrap();
    }
    let mut seeded = Seeded { batch, file };
    if accepted {
        for i in 0..count {
            accept(ledger, &seeded, i);
        }
        seeded.batch = l.batch(seeded.batch.id).unwrap().unwrap();
    }
    seeded
}

/// Records part `i` as accepted by the provider, as `submit` does when the
/// answer to its upload arrives.
pub fn accept(ledger: &Path, seeded: &Seeded, i: usize) {
    let id = seeded.bulk_id(i);
    Ledger::open(ledger)
        .unwrap()
        .settle(
            seeded.batch.submissions[i].id,
            State::Accepted,
            Some(id),
            &format!("accepted as BulkPaymentId {id}"),
            None,
        )
        .unwrap();
}
