//! External sort of reconcile records with bounded memory: records are
//! gathered until their estimated size reaches the budget, sorted by
//! (key, input order) and written to a run file; the runs are then merged
//! (in several passes when there are more than [`FAN_IN`]) into one sorted
//! stream. A side that never reaches the budget stays in memory.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use tempfile::TempPath;

use super::Rec;

/// Most runs merged at once (each holds a file handle and a buffer).
pub const FAN_IN: usize = 64;

impl Rec {
    /// Estimated bytes this record holds in memory: the struct plus each
    /// string's heap block with allocator overhead.
    pub fn weight(&self) -> usize {
        let heap = |s: &String| match s.capacity() {
            0 => 0,
            n => n.next_multiple_of(16) + 16,
        };
        std::mem::size_of::<Rec>()
            + [
                &self.key,
                &self.currency,
                &self.card,
                &self.at,
                &self.status,
            ]
            .into_iter()
            .map(heap)
            .sum::<usize>()
    }

    fn order(&self, other: &Rec) -> Ordering {
        self.key.cmp(&other.key).then(self.seq.cmp(&other.seq))
    }

    fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        for s in [
            &self.key,
            &self.currency,
            &self.card,
            &self.at,
            &self.status,
        ] {
            let len = u32::try_from(s.len()).map_err(io::Error::other)?;
            w.write_all(&len.to_le_bytes())?;
            w.write_all(s.as_bytes())?;
        }
        w.write_all(&self.amount.serialize())?;
        w.write_all(&self.seq.to_le_bytes())
    }

    /// The next record of a run; `None` at its end.
    fn read_from(r: &mut impl Read) -> io::Result<Option<Rec>> {
        let mut strings: [String; 5] = Default::default();
        for (i, s) in strings.iter_mut().enumerate() {
            let mut len = [0u8; 4];
            if i == 0 {
                // A clean end of the run is only possible here.
                let n = r.read(&mut len[..1])?;
                if n == 0 {
                    return Ok(None);
                }
                r.read_exact(&mut len[1..])?;
            } else {
                r.read_exact(&mut len)?;
            }
            let mut bytes = vec![0; u32::from_le_bytes(len) as usize];
            r.read_exact(&mut bytes)?;
            *s = String::from_utf8(bytes).map_err(io::Error::other)?;
        }
        let mut amount = [0u8; 16];
        r.read_exact(&mut amount)?;
        let mut seq = [0u8; 8];
        r.read_exact(&mut seq)?;
        let [key, currency, card, at, status] = strings;
        Ok(Some(Rec {
            key,
            amount: Decimal::deserialize(amount),
            currency,
            card,
            at,
            status,
            seq: u64::from_le_bytes(seq),
        }))
    }
}

/// Gathers records and spills sorted runs to `dir`.
pub struct Sorter {
    budget: usize,
    used: usize,
    buf: Vec<Rec>,
    runs: Vec<TempPath>,
    dir: PathBuf,
}

impl Sorter {
    pub fn new(budget: usize, dir: &Path) -> Sorter {
        Sorter {
            budget,
            used: 0,
            buf: Vec::new(),
            runs: Vec::new(),
            dir: dir.to_path_buf(),
        }
    }

    pub fn push(&mut self, rec: Rec) -> io::Result<()> {
        // The vector's spare capacity counts too: it can be half the size.
        self.used += rec.weight() + std::mem::size_of::<Rec>();
        self.buf.push(rec);
        if self.used > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Whether any run was written.
    pub fn spilled(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Runs written so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> io::Result<()> {
        self.buf.sort_unstable_by(Rec::order);
        let records = std::mem::take(&mut self.buf);
        self.used = 0;
        let run = write_run(&self.dir, records.into_iter().map(Ok))?;
        self.runs.push(run);
        Ok(())
    }

    /// The records in memory, in input order, when nothing was spilled.
    pub fn into_memory(self) -> Result<Vec<Rec>, Sorter> {
        if self.spilled() {
            Err(self)
        } else {
            Ok(self.buf)
        }
    }

    /// Every record, sorted by key then input order.
    pub fn finish(mut self) -> io::Result<Sorted> {
        if !self.spilled() {
            self.buf.sort_unstable_by(Rec::order);
            return Ok(Sorted::Memory(self.buf.into_iter()));
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        let mut runs = std::mem::take(&mut self.runs);
        while runs.len() > FAN_IN {
            let group: Vec<TempPath> = runs.drain(..FAN_IN).collect();
            let merged = write_run(&self.dir, Merge::new(group)?)?;
            runs.push(merged);
        }
        Ok(Sorted::Runs(Merge::new(runs)?))
    }
}

fn write_run(dir: &Path, records: impl Iterator<Item = io::Result<Rec>>) -> io::Result<TempPath> {
    let (file, path) = tempfile::Builder::new()
        .prefix("run-")
        .tempfile_in(dir)?
        .into_parts();
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    for rec in records {
        rec?.write_to(&mut w)?;
    }
    w.flush()?;
    Ok(path)
}

/// One run's next record, ordered for a min-heap.
struct Head {
    rec: Rec,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rec.order(&other.rec)
    }
}

/// A k-way merge of sorted runs (deleted when it is dropped).
pub struct Merge {
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<Head>>,
    _runs: Vec<TempPath>,
}

impl Merge {
    fn new(runs: Vec<TempPath>) -> io::Result<Merge> {
        let mut merge = Merge {
            readers: Vec::with_capacity(runs.len()),
            heap: BinaryHeap::with_capacity(runs.len()),
            _runs: Vec::new(),
        };
        for (run, path) in runs.iter().enumerate() {
            let mut r = BufReader::with_capacity(64 * 1024, File::open(path)?);
            if let Some(rec) = Rec::read_from(&mut r)? {
                merge.heap.push(Reverse(Head { rec, run }));
            }
            merge.readers.push(r);
        }
        merge._runs = runs;
        Ok(merge)
    }
}

impl Iterator for Merge {
    type Item = io::Result<Rec>;

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse(Head { rec, run }) = self.heap.pop()?;
        match Rec::read_from(&mut self.readers[run]) {
            Ok(Some(next)) => self.heap.push(Reverse(Head { rec: next, run })),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(rec))
    }
}

/// A sorted side: in memory, or merged from runs.
pub enum Sorted {
    Memory(std::vec::IntoIter<Rec>),
    Runs(Merge),
}

impl Iterator for Sorted {
    type Item = io::Result<Rec>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Sorted::Memory(it) => it.next().map(Ok),
            Sorted::Runs(merge) => merge.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, seq: u64) -> Rec {
        Rec {
            key: key.into(),
            amount: Decimal::new(seq as i64 * 101, 2),
            currency: "TRY".into(),
            card: "454360******0001".into(),
            at: format!("line {seq}"),
            status: String::new(),
            seq,
        }
    }

    #[test]
    fn many_runs_merge_in_several_passes_into_key_order() {
        let dir = tempfile::tempdir().unwrap();
        // A budget of about one record: every push spills, more runs than FAN_IN.
        let mut s = Sorter::new(1, dir.path());
        let keys: Vec<String> = (0..200u64)
            .map(|i| format!("K{:03}", (i * 37) % 100))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            s.push(rec(k, i as u64)).unwrap();
        }
        assert!(s.runs() > FAN_IN);
        let out: Vec<Rec> = s.finish().unwrap().collect::<io::Result<_>>().unwrap();
        assert_eq!(out.len(), 200);
        assert!(out.windows(2).all(|w| w[0].order(&w[1]) == Ordering::Less));
        let again = &out[17];
        assert_eq!(again.amount, Decimal::new(again.seq as i64 * 101, 2));
        assert_eq!(again.at, format!("line {}", again.seq));
    }
}
