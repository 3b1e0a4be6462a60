//! The keys that may repeat among a large delivery's rows, found before its rows are read.
//!
//! The duplicate check needs, for every incoming key, whether it was met before: in the
//! ledger (the committed runs answer that) or earlier in the same delivery. Holding every
//! key of the delivery in memory does not scale (a city's first load is hundreds of
//! millions of rows), and looking keys up in runs spilled to disk costs random reads for
//! every row. But a key that occurs once in the delivery needs neither: only keys that
//! repeat must be remembered. So, for a delivery too large for memory, a pre-pass reads the
//! `event_id` column alone and a Bloom filter flags every key it may have met already —
//! each real repeat, and about one key in a thousand by chance. The main pass then holds
//! those few keys in memory and writes every other key straight to a sorted run, with no
//! look-up at all. The decisions (and so the ledger) are exactly those of holding every
//! key: a key outside the set is known to occur once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Mutex;

use super::*;
use crate::input::read_column;

/// Bits of filter per key: with eight bits set in one 64-bit word per key, about one key
/// in a thousand is flagged by chance.
const BITS_PER_KEY: u64 = 16;
/// Most passes over the `event_id` column (each takes one range of keys) before the
/// pre-pass gives up and ingestion holds every key instead.
const MAX_PASSES: u64 = 16;

/// Probes (see [`IdHasher::probe`]) of the ids that may occur more than once among the
/// rows of a table's files in one batch.
pub(super) type Repeats = HashMap<u64, (), BuildHasherDefault<yuanxin_domain::hash::PassThrough>>;

/// A Bloom filter blocked to one 64-bit word per key, so that testing and setting a key is
/// one atomic `fetch_or`: of two threads meeting the same key, the later one always sees
/// it, whatever the interleaving.
struct WordBloom {
    words: Vec<AtomicU64>,
}

impl WordBloom {
    fn new(words: usize) -> WordBloom {
        WordBloom {
            words: (0..words.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A probe's word and its bits in it. Probes are keyed SipHash values, so their own
    /// bits pick the word (high bits) and the eight bits in it (the low 48).
    fn place(&self, probe: u64) -> (usize, u64) {
        let word = ((u128::from(probe) * self.words.len() as u128) >> 64) as usize;
        let mut low = probe;
        let mut mask = 0u64;
        for _ in 0..8 {
            mask |= 1 << (low & 63);
            low >>= 6;
        }
        (word, mask)
    }

    /// Sets a probe's bits; whether they were all set already.
    #[cfg(test)]
    fn test_and_set(&self, probe: u64) -> bool {
        let (word, mask) = self.place(probe);
        self.words[word].fetch_or(mask, Ordering::Relaxed) & mask == mask
    }

    /// [`Self::test_and_set`] for many probes, pushing those already set to `found`. The
    /// words are first read with plain loads, whose cache misses overlap (a locked
    /// `fetch_or` waits for each in turn); a probe whose bits were all set then needs no
    /// write, and the others are set from a warm cache.
    fn test_and_set_all(&self, probes: &[u64], found: &mut Vec<u64>) {
        let places: Vec<(usize, u64)> = probes.iter().map(|p| self.place(*p)).collect();
        let seen: Vec<u64> = places
            .iter()
            .map(|(w, _)| self.words[*w].load(Ordering::Relaxed))
            .collect();
        for ((probe, (word, mask)), seen) in probes.iter().zip(places).zip(seen) {
            if seen & mask == mask
                || self.words[word].fetch_or(mask, Ordering::Relaxed) & mask == mask
            {
                found.push(*probe);
            }
        }
    }
}

/// The keys among `files`' rows (one table's files of a batch, `rows` in all) that may
/// repeat, within `memory` bytes; `None` when they are too many to hold in that memory (a
/// delivery made mostly of repeats), in which case ingestion holds every key instead.
pub(super) fn find_repeats(
    files: &[&InputFile],
    rows: u64,
    memory: u64,
    workers: usize,
    ids: &IdHasher,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<Repeats>, LedgerError> {
    let Some(table) = files.first().map(|f| f.table) else {
        return Ok(Some(Repeats::default()));
    };
    let Some(spec_at) = table.columns().iter().position(|c| c.name == "event_id") else {
        return Ok(None);
    };
    let spec = &table.columns()[spec_at];
    // Three quarters of the memory for the filter (nothing else of the index is held yet),
    // a quarter for the keys found.
    let filter_bytes = (memory / 4 * 3).max(1 << 16);
    let needed = rows.saturating_mul(BITS_PER_KEY) / 8;
    let passes = needed.div_ceil(filter_bytes).max(1);
    if passes > MAX_PASSES {
        return Ok(None);
    }
    let cap = usize::try_from(memory / 4 / BYTES_PER_KEY).unwrap_or(usize::MAX);
    let words = usize::try_from(rows.div_ceil(passes) * BITS_PER_KEY / 64).unwrap_or(usize::MAX);
    let mut repeats = Repeats::default();
    for pass in 0..passes {
        progress(&format!(
            "finding repeated ids among {rows} {} rows (pass {} of {passes})",
            table.name(),
            pass + 1
        ));
        let bloom = WordBloom::new(words);
        let found = Mutex::new(Vec::<u64>::new());
        let count = AtomicUsize::new(0);
        let over = AtomicBool::new(false);
        for file in files {
            let Some(column) = file.mapping.get(spec_at).copied().flatten() else {
                continue;
            };
            let keep = |probe: u64| passes == 1 || (probe >> 48) % passes == pass;
            for_each_column_batch(file, column, workers, &|batch: RecordBatch| {
                if over.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let n = batch.num_rows();
                let mut rejections: Vec<Option<Rejection>> = vec![None; n];
                let mut ctx = Ctx {
                    max_ts_ms: i64::MAX,
                    rejections: &mut rejections,
                };
                let values =
                    convert(spec, Some(batch.column(0)), n, &mut ctx).map_err(|problem| {
                        LedgerError::Unreadable {
                            path: file.path.clone(),
                            format: "input",
                            problem: format!("column event_id: {problem}"),
                        }
                    })?;
                let Some(values) = values.as_string_opt::<i32>() else {
                    return Ok(());
                };
                let probes: Vec<u64> = values
                    .iter()
                    .flatten()
                    .map(|id| ids.probe(id))
                    .filter(|p| keep(*p))
                    .collect();
                let mut local = Vec::new();
                bloom.test_and_set_all(&probes, &mut local);
                if !local.is_empty() {
                    if count.fetch_add(local.len(), Ordering::Relaxed) + local.len() > cap {
                        over.store(true, Ordering::Relaxed);
                        return Ok(());
                    }
                    if let Ok(mut f) = found.lock() {
                        f.extend(local);
                    }
                }
                Ok(())
            })?;
            if over.load(Ordering::Relaxed) {
                return Ok(None);
            }
        }
        let found = found.into_inner().unwrap_or_default();
        repeats.reserve(found.len());
        for key in found {
            repeats.insert(key, ());
        }
    }
    Ok(Some(repeats))
}

/// Reads one column of `file` on a reader thread and hands its batches to `workers`
/// threads, in no particular order.
fn for_each_column_batch(
    file: &InputFile,
    column: usize,
    workers: usize,
    work: &(dyn Fn(RecordBatch) -> Result<(), LedgerError> + Sync),
) -> Result<(), LedgerError> {
    if workers <= 1 {
        return read_column(file, column, &mut |b| work(b));
    }
    let (tx, rx) = sync_channel::<RecordBatch>(workers * 2);
    let rx = Mutex::new(rx);
    let failure: Mutex<Option<LedgerError>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stop = &stop;
        let reader = scope.spawn(move || {
            read_column(file, column, &mut |b| {
                if stop.load(Ordering::Relaxed) || tx.send(b).is_err() {
                    return Err(LedgerError::storage(&file.path, "ingestion stopped"));
                }
                Ok(())
            })
            // Returning drops the sender: the workers drain the channel and stop.
        });
        for _ in 0..workers {
            let (rx, failure) = (&rx, &failure);
            scope.spawn(move || loop {
                let next = rx.lock().ok().and_then(|r| r.recv().ok());
                let Some(batch) = next else { break };
                if stop.load(Ordering::Relaxed) {
                    continue;
                }
                if let Err(e) = work(batch) {
                    if let Ok(mut f) = failure.lock() {
                        f.get_or_insert(e);
                    }
                    stop.store(true, Ordering::Relaxed);
                }
            });
        }
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(LedgerError::storage(&file.path, "the reader failed")));
        let failed = failure.lock().ok().and_then(|mut f| f.take());
        match failed {
            Some(e) => Err(e),
            None => read,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_filter_always_sees_a_key_met_before_and_rarely_another() {
        // Sized for 20,000 keys, as a pre-pass sizes it for all the rows it will read: the
        // first 10,000, met again, are always seen; the next 10,000 (filling it) rarely.
        let bloom = WordBloom::new(20_000 * BITS_PER_KEY as usize / 64);
        let ids = IdHasher::new();
        for i in 0..10_000u32 {
            bloom.test_and_set(ids.probe(&format!("k{i}")));
        }
        for i in 0..10_000u32 {
            assert!(bloom.test_and_set(ids.probe(&format!("k{i}"))));
        }
        let flagged = (0..10_000u32)
            .filter(|i| bloom.test_and_set(ids.probe(&format!("other{i}"))))
            .count();
        assert!(flagged < 100, "{flagged} keys flagged by chance");
    }
}
