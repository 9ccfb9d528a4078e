//! Finishing an accepted batch: after the configured delay the outcome of
//! every row is fixed (a pure function of the seed, so only the totals are
//! kept), the inquiry shows them, and the result callback starts when the
//! batch has a `CallbackAddress`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::callback;
use super::clock;
use super::outcome::outcome;
use super::pattern::Tail;
use super::store::{Batch, Totals};
use crate::Shared;

pub(crate) async fn finish(shared: Arc<Shared>, batch: Arc<Batch>) {
    let bulk = &shared.bulk;
    if !sleep_or_cancel(&shared.cancel, bulk.config.callback.delay).await {
        return;
    }
    let (seed, rate) = (bulk.config.seed, bulk.config.decline_rate);
    let b = batch.clone();
    let totals = tokio::task::spawn_blocking(move || tally(&b, seed, rate))
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
    match totals {
        Ok(totals) => {
            let _ = batch.finished.set((clock::now(), totals));
        }
        Err(e) => {
            return warn!(
                bulk_payment_id = batch.record.bulk_payment_id,
                error = %e,
                "sandbox: cannot finish the batch"
            )
        }
    }
    if batch.record.callback_address.is_some() {
        let gzip = bulk.gzip_callback(batch.record.callback_compression);
        callback::deliver(&shared, &batch, gzip, false).await;
    }
}

/// Counts and sums the approved and declined payments of a batch.
fn tally(batch: &Batch, seed: u64, decline_rate: f64) -> io::Result<Totals> {
    let mut t = Totals::default();
    batch.each_row(0, batch.record.rows, |_, row| {
        let code = row.tail(Tail::MerchantUniqueCode);
        let amount = Decimal::from_str_exact(row.tail(Tail::Amount))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let (count, sum) = match outcome(seed, decline_rate, code) {
            None => (&mut t.success_count, &mut t.success_amount),
            Some(_) => (&mut t.failed_count, &mut t.failed_amount),
        };
        *count += 1;
        // The file's total was checked for overflow; a part of it fits.
        *sum += amount;
        Ok(())
    })?;
    Ok(t)
}

/// Sleeps; false when the sandbox stopped meanwhile.
pub(crate) async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    if d.is_zero() {
        return !cancel.is_cancelled();
    }
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
