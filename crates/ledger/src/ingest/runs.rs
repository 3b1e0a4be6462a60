//! Sorted runs: the on-disk form of the duplicate index.
//!
//! A run is an immutable file of fixed-size records `(key, digest)` sorted by key, each key
//! once, followed by a fence (every [`FENCE`]-th key) and a trailer:
//!
//! ```text
//! records   n × (key: u128 LE, digest: u64 LE)      sorted by key, unique
//! fence     ceil(n / FENCE) × key: u128 LE          records 0, FENCE, 2·FENCE, …
//! trailer   n: u64 LE, FENCE: u32 LE, version: u32 LE, magic "YXRUN\0\0\x01"
//! ```
//!
//! Opening a run reads its trailer and fence only (16 bytes per 256 keys), so a delivery of
//! a thousand rows into a ledger of a billion costs a thousand look-ups of one 6 KB block
//! each, not a load of the billion. Runs are written once, fsynced, and listed in the
//! manifest by the batch that wrote them; the LSM-style merge of small runs happens at the
//! end of a batch (see `index.rs`).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::LedgerError;

/// Records per fence entry: one look-up reads at most this many records (6 KiB).
pub(super) const FENCE: usize = 256;
/// Records read around a key's estimated place in its block.
const WINDOW: usize = 64;

/// Where a key stands against the records read.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    Found(u64),
    /// Within their range, and not among them.
    Absent,
    Before,
    After,
}
const RECORD: usize = 24;
const TRAILER: usize = 24;
const MAGIC: [u8; 8] = *b"YXRUN\0\0\x01";
const VERSION: u32 = 1;

/// A key's digest in a run: 128 bits of BLAKE3 of the `event_id`. Unkeyed, so that the
/// persisted index means the same to every process; finding two ids with one digest takes
/// about 2⁶⁴ BLAKE3 evaluations, out of reach for a data provider trying to pass a
/// conflicting row as a duplicate.
pub(super) fn stable_key(id: &str) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&blake3::hash(id.as_bytes()).as_bytes()[..16]);
    u128::from_le_bytes(b)
}

/// Writes a run from records already sorted by key (each key once), and fsyncs it.
pub(super) fn write_run(
    path: &Path,
    records: impl Iterator<Item = (u128, u64)>,
) -> Result<u64, LedgerError> {
    let file = File::create(path).map_err(|e| LedgerError::io(path, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut fence: Vec<u128> = Vec::new();
    let mut n: u64 = 0;
    let mut last: Option<u128> = None;
    for (key, digest) in records {
        if last.is_some_and(|l| l >= key) {
            return Err(LedgerError::storage(
                path,
                "internal error: index run records out of order",
            ));
        }
        last = Some(key);
        if n.is_multiple_of(FENCE as u64) {
            fence.push(key);
        }
        out.write_all(&key.to_le_bytes())
            .and_then(|_| out.write_all(&digest.to_le_bytes()))
            .map_err(|e| LedgerError::io(path, e))?;
        n += 1;
    }
    for key in &fence {
        out.write_all(&key.to_le_bytes())
            .map_err(|e| LedgerError::io(path, e))?;
    }
    let mut trailer = Vec::with_capacity(TRAILER);
    trailer.extend_from_slice(&n.to_le_bytes());
    trailer.extend_from_slice(&(FENCE as u32).to_le_bytes());
    trailer.extend_from_slice(&VERSION.to_le_bytes());
    trailer.extend_from_slice(&MAGIC);
    out.write_all(&trailer)
        .map_err(|e| LedgerError::io(path, e))?;
    let file = out
        .into_inner()
        .map_err(|e| LedgerError::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| LedgerError::io(path, e))?;
    Ok(n)
}

/// An open run: its trailer checked and its fence in memory.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) path: PathBuf,
    file: File,
    pub(super) keys: u64,
    fence: Vec<u128>,
}

impl Run {
    pub(super) fn open(path: &Path) -> Result<Run, LedgerError> {
        let file = File::open(path).map_err(|e| LedgerError::io(path, e))?;
        let len = file.metadata().map_err(|e| LedgerError::io(path, e))?.len();
        let corrupt = |what: &str| LedgerError::storage(path, format!("index run {what}"));
        if len < TRAILER as u64 {
            return Err(corrupt("is truncated"));
        }
        let mut trailer = [0u8; TRAILER];
        file.read_exact_at(&mut trailer, len - TRAILER as u64)
            .map_err(|e| LedgerError::io(path, e))?;
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&trailer[at..at + 8]);
            u64::from_le_bytes(b)
        };
        if trailer[16..24] != MAGIC {
            return Err(corrupt("has no valid trailer"));
        }
        let n = word(0);
        let fence_every = word(8) & 0xffff_ffff;
        if fence_every != FENCE as u64 {
            return Err(corrupt("has an unsupported fence interval"));
        }
        let fences = n.div_ceil(FENCE as u64);
        let expected = n
            .checked_mul(RECORD as u64)
            .and_then(|r| r.checked_add(fences.checked_mul(16)?))
            .and_then(|r| r.checked_add(TRAILER as u64));
        if expected != Some(len) {
            return Err(corrupt("has the wrong length for its record count"));
        }
        let fence_bytes = usize::try_from(fences * 16).map_err(|_| corrupt("is too large"))?;
        let mut raw = vec![0u8; fence_bytes];
        file.read_exact_at(&mut raw, n * RECORD as u64)
            .map_err(|e| LedgerError::io(path, e))?;
        let fence = raw.chunks_exact(16).map(key_of).collect();
        Ok(Run {
            path: path.to_path_buf(),
            file,
            keys: n,
            fence,
        })
    }

    /// The digest stored for `key`, if the run holds it. The fence finds the key's block;
    /// keys are uniform (BLAKE3), so its position within the block is estimated from the
    /// fence keys on either side and only a [`WINDOW`] of records around it is read
    /// (1.5 KB; the key falls outside it about once in a thousand look-ups, and then the
    /// whole block is read).
    pub(super) fn get(&self, key: u128, scratch: &mut Vec<u8>) -> Result<Option<u64>, LedgerError> {
        let block = self.fence.partition_point(|f| *f <= key);
        if block == 0 {
            return Ok(None);
        }
        let first = (block - 1) * FENCE;
        let count = FENCE.min(self.keys as usize - first);
        if let (Some(&low), Some(&high)) = (self.fence.get(block - 1), self.fence.get(block)) {
            if count == FENCE && high > low {
                let share = (key - low) as f64 / (high - low) as f64;
                let guess = (share * FENCE as f64) as usize;
                let start = guess.saturating_sub(WINDOW / 2).min(FENCE - WINDOW);
                let found = self.search(first + start, WINDOW, key, scratch)?;
                let below = start > 0 && found == Probe::Before;
                let above = start + WINDOW < FENCE && found == Probe::After;
                if !below && !above {
                    return Ok(match found {
                        Probe::Found(d) => Some(d),
                        _ => None,
                    });
                }
            }
        }
        Ok(match self.search(first, count, key, scratch)? {
            Probe::Found(d) => Some(d),
            _ => None,
        })
    }

    /// Asks the kernel to start reading the block where `key` would be, without waiting:
    /// a delivery's look-ups, each a random read in a run larger than the page cache, then
    /// overlap their reads instead of waiting for each in turn. Only advice: a failure
    /// changes nothing but the speed.
    pub(super) fn prefetch(&self, key: u128) {
        let block = self.fence.partition_point(|f| *f <= key);
        if block == 0 {
            return;
        }
        let first = (block - 1) * FENCE;
        let count = FENCE.min(self.keys as usize - first);
        let _ = rustix::fs::fadvise(
            &self.file,
            (first * RECORD) as u64,
            std::num::NonZeroU64::new((count * RECORD) as u64),
            rustix::fs::Advice::WillNeed,
        );
    }

    /// Reads records `from..from + count` and looks for `key` among them.
    fn search(
        &self,
        from: usize,
        count: usize,
        key: u128,
        scratch: &mut Vec<u8>,
    ) -> Result<Probe, LedgerError> {
        scratch.resize(count * RECORD, 0);
        self.file
            .read_exact_at(scratch, (from * RECORD) as u64)
            .map_err(|e| LedgerError::io(&self.path, e))?;
        let key_at = |i: usize| key_of(&scratch[i * RECORD..i * RECORD + 16]);
        if count == 0 || key < key_at(0) {
            return Ok(Probe::Before);
        }
        if key > key_at(count - 1) {
            return Ok(Probe::After);
        }
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match key_at(mid).cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let at = mid * RECORD + 16;
                    return Ok(Probe::Found(digest_of(&scratch[at..at + 8])));
                }
            }
        }
        Ok(Probe::Absent)
    }

    /// Streams the run's records in key order.
    pub(super) fn records(&self) -> Result<RunReader, LedgerError> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| LedgerError::io(&self.path, e))?;
        Ok(RunReader {
            path: self.path.clone(),
            input: BufReader::with_capacity(1 << 20, file),
            left: self.keys,
        })
    }
}

/// Records of a run, in key order.
pub(super) struct RunReader {
    path: PathBuf,
    input: BufReader<File>,
    left: u64,
}

impl RunReader {
    pub(super) fn next_record(&mut self) -> Result<Option<(u128, u64)>, LedgerError> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut r = [0u8; RECORD];
        self.input
            .read_exact(&mut r)
            .map_err(|e| LedgerError::io(&self.path, e))?;
        self.left -= 1;
        Ok(Some((key_of(&r[..16]), digest_of(&r[16..]))))
    }
}

/// Merges runs whose keys are disjoint (as a duplicate index's are) into one, streaming:
/// memory is one buffer per run whatever their size, and each record costs a heap step.
pub(super) fn merge_runs(runs: &[&Run], out: &Path) -> Result<u64, LedgerError> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut readers = runs
        .iter()
        .map(|r| r.records())
        .collect::<Result<Vec<_>, _>>()?;
    // (key, run, digest): the smallest key on top.
    let mut heads: BinaryHeap<Reverse<(u128, usize, u64)>> = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        if let Some((k, d)) = r.next_record()? {
            heads.push(Reverse((k, i, d)));
        }
    }
    let mut failure: Option<LedgerError> = None;
    let merged = std::iter::from_fn(|| {
        let Reverse((key, i, digest)) = heads.pop()?;
        match readers[i].next_record() {
            Ok(Some((k, d))) => heads.push(Reverse((k, i, d))),
            Ok(None) => {}
            Err(e) => {
                failure = Some(e);
                return None;
            }
        }
        Some((key, digest))
    });
    let n = write_run(out, merged)?;
    match failure {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

fn key_of(b: &[u8]) -> u128 {
    let mut k = [0u8; 16];
    k.copy_from_slice(&b[..16]);
    u128::from_le_bytes(k)
}

fn digest_of(b: &[u8]) -> u64 {
    let mut d = [0u8; 8];
    d.copy_from_slice(&b[..8]);
    u64::from_le_bytes(d)
}

/// A blocked Bloom filter over the keys a batch has spilled to runs: one 64-byte line per
/// key, 7 bits in it, about 1 % false positives at 10 bits per key. Keys are BLAKE3
/// digests already, so their own bits choose the line and the bits.
pub(super) struct Bloom {
    lines: Vec<[u64; 8]>,
}

impl Bloom {
    /// A filter for about `keys` keys, within `max_bytes`.
    pub(super) fn new(keys: u64, max_bytes: u64) -> Bloom {
        let bytes = keys
            .saturating_mul(10)
            .div_ceil(8)
            .clamp(64, max_bytes.max(64));
        let lines = usize::try_from(bytes / 64).unwrap_or(1).max(1);
        Bloom {
            lines: vec![[0u64; 8]; lines],
        }
    }

    fn bits(&self, key: u128) -> (usize, [u32; 7]) {
        let line = ((key as u64) % self.lines.len() as u64) as usize;
        let mut high = (key >> 64) as u64;
        let mut bits = [0u32; 7];
        for b in &mut bits {
            *b = (high & 511) as u32;
            high >>= 9;
        }
        (line, bits)
    }

    pub(super) fn insert(&mut self, key: u128) {
        let (line, bits) = self.bits(key);
        let l = &mut self.lines[line];
        for b in bits {
            l[(b / 64) as usize] |= 1 << (b % 64);
        }
    }

    pub(super) fn may_contain(&self, key: u128) -> bool {
        let (line, bits) = self.bits(key);
        let l = &self.lines[line];
        bits.iter()
            .all(|b| l[(b / 64) as usize] & (1 << (b % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_finds_every_key_it_holds_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys: Vec<u128> = (0..50_000u32)
            .map(|i| stable_key(&format!("e{i}")))
            .collect();
        keys.sort_unstable();
        let path = dir.path().join("r.run");
        let n = write_run(&path, keys.iter().map(|k| (*k, (*k as u64) ^ 7))).unwrap();
        assert_eq!(n, 50_000);
        let run = Run::open(&path).unwrap();
        let mut scratch = Vec::new();
        for k in &keys {
            assert_eq!(run.get(*k, &mut scratch).unwrap(), Some((*k as u64) ^ 7));
        }
        for i in 0..50_000u32 {
            let k = stable_key(&format!("other{i}"));
            assert_eq!(run.get(k, &mut scratch).unwrap(), None);
        }
        assert_eq!(run.get(0, &mut scratch).unwrap(), None);
        assert_eq!(run.get(u128::MAX, &mut scratch).unwrap(), None);
    }

    #[test]
    fn merged_runs_hold_the_union_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut all: Vec<u128> = (0..3000u32).map(|i| stable_key(&i.to_string())).collect();
        let mut runs = Vec::new();
        for (j, part) in all.chunks(1000).enumerate() {
            let mut part = part.to_vec();
            part.sort_unstable();
            let path = dir.path().join(format!("{j}.run"));
            write_run(&path, part.iter().map(|k| (*k, 1))).unwrap();
            runs.push(Run::open(&path).unwrap());
        }
        let out = dir.path().join("m.run");
        let refs: Vec<&Run> = runs.iter().collect();
        assert_eq!(merge_runs(&refs, &out).unwrap(), 3000);
        all.sort_unstable();
        let merged = Run::open(&out).unwrap();
        let mut reader = merged.records().unwrap();
        for k in &all {
            assert_eq!(reader.next_record().unwrap(), Some((*k, 1)));
        }
        assert_eq!(reader.next_record().unwrap(), None);
    }

    #[test]
    fn a_damaged_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.run");
        write_run(&path, (1..100u128).map(|k| (k, 0))).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 30]).unwrap();
        assert!(Run::open(&path).is_err());
        std::fs::write(&path, b"short").unwrap();
        assert!(Run::open(&path).is_err());
    }

    #[test]
    fn the_bloom_filter_has_no_false_negatives_and_few_false_positives() {
        let mut bloom = Bloom::new(10_000, u64::MAX);
        for i in 0..10_000u32 {
            bloom.insert(stable_key(&format!("in{i}")));
        }
        for i in 0..10_000u32 {
            assert!(bloom.may_contain(stable_key(&format!("in{i}"))));
        }
        let false_positives = (0..10_000u32)
            .filter(|i| bloom.may_contain(stable_key(&format!("out{i}"))))
            .count();
        assert!(false_positives < 300, "{false_positives} false positives");
    }
}
