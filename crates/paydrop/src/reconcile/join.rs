//! Joining the sides: the held side in memory with the other streamed past
//! it (hash join), or both sorted on disk and walked together (merge join);
//! every pair or lone row goes to its set, a CSV file staged beside its
//! final name until the whole run succeeded.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use super::sides::Side;
use super::sort::Sorted;
use super::summary::{add, is_failed, Summary, Totals};
use super::{Context, Rec, ReconcileError, Result};

/// An output file written under a temporary name beside its final one.
struct Staged {
    name: &'static str,
    writer: csv::Writer<BufWriter<File>>,
    path: tempfile::TempPath,
}

impl Staged {
    fn create(dir: &Path, name: &'static str, header: &[&str]) -> Result<Staged> {
        let (file, path) = tempfile::Builder::new()
            .prefix(&format!(".{name}-"))
            .tempfile_in(dir)
            .context(|| format!("creating a file in {}", dir.display()))?
            .into_parts();
        let mut writer = csv::Writer::from_writer(BufWriter::with_capacity(256 * 1024, file));
        writer.write_record(header)?;
        Ok(Staged { name, writer, path })
    }

    /// Flushed and synced, ready to be renamed into place.
    fn close(self) -> Result<(&'static str, tempfile::TempPath)> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| {
                io::Error::new(
                    e.error().kind(),
                    format!("writing {}: {}", self.name, e.error()),
                )
            })?
            .into_inner()
            .map_err(|e| ReconcileError::Io(e.into_error()))?;
        file.sync_all()?;
        Ok((self.name, self.path))
    }
}

/// Renames every staged file to its final name in `dir`.
pub(super) fn publish(dir: &Path, files: Vec<(&'static str, tempfile::TempPath)>) -> Result<()> {
    for (name, path) in files {
        let target = dir.join(name);
        path.persist(&target)
            .context(|| format!("moving the result into {}", target.display()))?;
    }
    Ok(())
}

/// A whole text file, staged.
pub(super) fn stage_text(
    dir: &Path,
    name: &'static str,
    text: &[u8],
) -> Result<(&'static str, tempfile::TempPath)> {
    use std::io::Write as _;
    let mut f = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempfile_in(dir)?;
    f.write_all(text)?;
    f.as_file().sync_all()?;
    Ok((name, f.into_temp_path()))
}

/// The five output files and what went into them.
pub(super) struct Sets {
    matched: Staged,
    failed: Staged,
    mismatch: Staged,
    missing: Staged,
    unknown: Staged,
    summary: Summary,
}

/// Names of the output files.
pub const MATCHED_CSV: &str = "matched.csv";
pub const FAILED_CSV: &str = "failed-at-provider.csv";
pub const MISMATCH_CSV: &str = "amount-mismatch.csv";
pub const MISSING_CSV: &str = "missing-at-provider.csv";
pub const UNKNOWN_CSV: &str = "unknown-at-provider.csv";

const PAIR_HEADER: [&str; 8] = [
    "key",
    "currency",
    "amount",
    "sent_at",
    "provider_at",
    "provider_status",
    "card",
    "provider_amount",
];

impl Sets {
    pub(super) fn create(dir: &Path, summary: Summary) -> Result<Sets> {
        Ok(Sets {
            matched: Staged::create(dir, MATCHED_CSV, &PAIR_HEADER[..7])?,
            failed: Staged::create(dir, FAILED_CSV, &PAIR_HEADER)?,
            mismatch: Staged::create(
                dir,
                MISMATCH_CSV,
                &[
                    "key",
                    "sent_currency",
                    "sent_amount",
                    "provider_currency",
                    "provider_amount",
                    "difference",
                    "sent_at",
                    "provider_at",
                    "provider_status",
                    "card",
                ],
            )?,
            missing: Staged::create(
                dir,
                MISSING_CSV,
                &["key", "currency", "amount", "sent_at", "card"],
            )?,
            unknown: Staged::create(
                dir,
                UNKNOWN_CSV,
                &[
                    "key",
                    "currency",
                    "amount",
                    "provider_at",
                    "provider_status",
                    "card",
                ],
            )?,
            summary,
        })
    }

    fn pair(&mut self, s: Rec, p: Rec) -> Result<()> {
        let same_currency =
            s.currency.is_empty() || p.currency.is_empty() || s.currency == p.currency;
        let currency = if s.currency.is_empty() {
            &p.currency
        } else {
            &s.currency
        };
        let card = if s.card.is_empty() { &p.card } else { &s.card };
        let summary = &mut self.summary;
        if is_failed(&p.status) {
            let amount = s.amount.to_string();
            let provider_amount = p.amount.to_string();
            self.failed.writer.write_record([
                &s.key,
                currency,
                &amount,
                &s.at,
                &p.at,
                &p.status,
                card,
                &provider_amount,
            ])?;
            add(&mut summary.failed_at_provider, currency, s.amount)?;
            add(&mut summary.failed_provider_side, &p.currency, p.amount)?;
            let by_status = summary.failed_by_status.entry(p.status.clone());
            add(by_status.or_default(), currency, s.amount)?;
        } else if s.amount == p.amount && same_currency {
            let amount = s.amount.to_string();
            self.matched
                .writer
                .write_record([&s.key, currency, &amount, &s.at, &p.at, &p.status, card])?;
            add(&mut summary.matched, currency, s.amount)?;
            add(&mut summary.matched_at_provider, &p.currency, p.amount)?;
            let by_status = summary.matched_by_status.entry(p.status.clone());
            add(by_status.or_default(), currency, s.amount)?;
        } else {
            let difference = p
                .amount
                .checked_sub(s.amount)
                .ok_or_else(|| ReconcileError::Overflow("the difference of two amounts".into()))?;
            self.mismatch.writer.write_record([
                &s.key,
                &s.currency,
                &s.amount.to_string(),
                &p.currency,
                &p.amount.to_string(),
                &difference.to_string(),
                &s.at,
                &p.at,
                &p.status,
                card,
            ])?;
            let m = summary.amount_mismatch.entry(currency.clone()).or_default();
            let overflow = || ReconcileError::Overflow("the amount mismatch total".into());
            m.rows += 1;
            m.sent = m.sent.checked_add(s.amount).ok_or_else(overflow)?;
            m.provider = m.provider.checked_add(p.amount).ok_or_else(overflow)?;
            add(&mut summary.mismatch_at_provider, &p.currency, p.amount)?;
        }
        Ok(())
    }

    fn missing(&mut self, s: Rec) -> Result<()> {
        let amount = s.amount.to_string();
        self.missing
            .writer
            .write_record([&s.key, &s.currency, &amount, &s.at, &s.card])?;
        add(&mut self.summary.missing_at_provider, &s.currency, s.amount)
    }

    fn unknown(&mut self, p: Rec) -> Result<()> {
        let amount = p.amount.to_string();
        self.unknown.writer.write_record([
            &p.key,
            &p.currency,
            &amount,
            &p.at,
            &p.status,
            &p.card,
        ])?;
        add(&mut self.summary.unknown_at_provider, &p.currency, p.amount)
    }

    /// The row of one side that has no partner.
    fn alone(&mut self, rec: Rec, sent: bool) -> Result<()> {
        if sent {
            self.missing(rec)
        } else {
            self.unknown(rec)
        }
    }

    /// A pair, given as (held, streamed).
    fn pair_held(&mut self, held: Rec, streamed: Rec, held_is_sent: bool) -> Result<()> {
        if held_is_sent {
            self.pair(held, streamed)
        } else {
            self.pair(streamed, held)
        }
    }

    /// The staged files, closed, and the summary.
    pub(super) fn finish(self) -> Result<(Vec<(&'static str, tempfile::TempPath)>, Summary)> {
        let files = [
            self.matched,
            self.failed,
            self.mismatch,
            self.missing,
            self.unknown,
        ]
        .into_iter()
        .map(Staged::close)
        .collect::<Result<Vec<_>>>()?;
        Ok((files, self.summary))
    }
}

/// Reads a side, numbering its rows and totalling them.
pub(super) fn read_side(
    side: &mut dyn Side,
    totals: &mut Totals,
    mut sink: impl FnMut(Rec) -> Result<()>,
) -> Result<()> {
    let mut seq = 0u64;
    side.each(&mut |mut rec: Rec| {
        rec.seq = seq;
        seq += 1;
        add(totals, &rec.currency, rec.amount)?;
        sink(rec)
    })
}

/// The held side in memory, the other streamed past it.
pub(super) fn hash_join(
    mut held: Vec<Rec>,
    held_is_sent: bool,
    streamed: &mut dyn Side,
    totals: &mut Totals,
    sets: &mut Sets,
) -> Result<()> {
    held.sort_unstable_by(|a, b| a.key.cmp(&b.key).then(a.seq.cmp(&b.seq)));
    // Key → (next unpaired, end) in `held`.
    let mut index: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, r) in held.iter().enumerate() {
        index
            .entry(r.key.clone())
            .and_modify(|e| e.1 = i + 1)
            .or_insert((i, i + 1));
    }
    let mut taken = vec![false; held.len()];
    read_side(streamed, totals, |rec| {
        match index.get_mut(&rec.key).filter(|(next, end)| next < end) {
            Some((next, _)) => {
                let partner = std::mem::take(&mut held[*next]);
                taken[*next] = true;
                *next += 1;
                sets.pair_held(partner, rec, held_is_sent)
            }
            None => sets.alone(rec, !held_is_sent),
        }
    })?;
    for (rec, taken) in held.into_iter().zip(taken) {
        if !taken {
            sets.alone(rec, held_is_sent)?;
        }
    }
    Ok(())
}

/// Both sides sorted by key, walked together.
pub(super) fn merge_join(mut sent: Sorted, mut provider: Sorted, sets: &mut Sets) -> Result<()> {
    let mut s = sent.next().transpose()?;
    let mut p = provider.next().transpose()?;
    loop {
        match (s.take(), p.take()) {
            (None, None) => return Ok(()),
            (Some(x), None) => {
                sets.missing(x)?;
                s = sent.next().transpose()?;
            }
            (None, Some(y)) => {
                sets.unknown(y)?;
                p = provider.next().transpose()?;
            }
            (Some(x), Some(y)) => match x.key.cmp(&y.key) {
                std::cmp::Ordering::Equal => {
                    sets.pair(x, y)?;
                    s = sent.next().transpose()?;
                    p = provider.next().transpose()?;
                }
                std::cmp::Ordering::Less => {
                    sets.missing(x)?;
                    s = sent.next().transpose()?;
                    p = Some(y);
                }
                std::cmp::Ordering::Greater => {
                    sets.unknown(y)?;
                    p = provider.next().transpose()?;
                    s = Some(x);
                }
            },
        }
    }
}
