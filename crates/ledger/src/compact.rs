//! Compaction: each partition's files merged into merchant-clustered ones, atomically.
//!
//! Every daily batch adds a file to each month partition it touches; a reader then opens
//! hundreds of small files whose row groups each span every merchant. Compaction rewrites
//! a partition's files as few files sorted by `merchant_id`, so that a row group holds a
//! narrow range of merchants (what the profile loader reads chunk by chunk).
//!
//! Invariants:
//! - every row keeps its values, `_batch`, `_ingested_at` and `_row_digest`; a compacted
//!   file records its rows per batch and its earliest and latest knowledge time, and
//!   readers asking for the ledger as known at a time filter its rows by `_ingested_at`,
//!   so every `--known-at` answer is the same before and after;
//! - within a merchant, rows keep ledger order (files in commit order, rows in file
//!   order: the sort is stable), the order the profile loader's stable sort by day relies
//!   on; the merchants table keeps ledger order altogether (it is not sorted), since the
//!   order merchants first appear in it is the order of the profiles' rows;
//! - a compaction commits by the one atomic manifest rename, like a batch: killed at any
//!   point, the ledger is as before or as after, and its unlisted files are removed by the
//!   next writer;
//! - the files it replaces stay on disk, listed as retired, for `retain_minutes`, so that
//!   a reader that opened the manifest before the commit can finish; a later compaction
//!   removes them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::datatypes::TimestampMillisecondType;
use parquet::arrow::ArrowWriter;
use serde::Serialize;

use crate::error::LedgerError;
use crate::schema::{Table, BATCH_COL, INGESTED_AT_COL};
use crate::store::{
    commit_manifest, ledger_writer_properties, read_manifest, remove_orphans, sync_dir, FileEntry,
    FileReader, Ledger, LockGuard, RetiredFile,
};

/// Options of a compaction.
#[derive(Debug, Clone, Default)]
pub struct CompactOptions {
    /// How long replaced files stay on disk for readers still using them, in minutes,
    /// 0 to [`MAX_RETAIN_MINUTES`]; [`DEFAULT_RETAIN_MINUTES`] if `None`.
    pub retain_minutes: Option<u64>,
    /// Memory for one pass over a partition, in MiB (1 to 1,048,576; 2048 if `None`):
    /// a partition larger than that is compacted a range of merchants at a time.
    pub memory_limit_mib: Option<u64>,
    /// The clock (ms since the epoch), for tests; the system clock if `None`.
    pub now_ms: Option<i64>,
}

/// Replaced files are kept this long unless set otherwise: an hour.
pub const DEFAULT_RETAIN_MINUTES: u64 = 60;
/// The longest retention: a week.
pub const MAX_RETAIN_MINUTES: u64 = 7 * 24 * 60;

/// Bytes a row costs while a partition is merged (decoded, then copied in merchant order).
const BYTES_PER_ROW: u64 = 512;

/// What a compaction did.
#[derive(Debug, Clone, Serialize)]
pub struct CompactReport {
    /// The compaction's id (`c000001`, …), or `None` if no partition needed it.
    pub compaction: Option<String>,
    /// Partitions rewritten.
    pub partitions: usize,
    /// Their files before and after.
    pub files_before: usize,
    pub files_after: usize,
    /// Rows rewritten.
    pub rows: u64,
    /// Files replaced by earlier compactions and removed now, their retention over.
    pub retired_removed: usize,
    /// Files replaced now, kept for readers until their retention is over.
    pub retired_kept: usize,
}

/// Compacts every partition of the ledger at `root` that has more than one file.
pub fn compact(
    root: &Path,
    opts: &CompactOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<CompactReport, LedgerError> {
    let retain = opts.retain_minutes.unwrap_or(DEFAULT_RETAIN_MINUTES);
    if retain > MAX_RETAIN_MINUTES {
        return Err(LedgerError::Input {
            path: root.to_path_buf(),
            problem: format!(
                "the retention must be 0 to {MAX_RETAIN_MINUTES} minutes, not {retain}"
            ),
        });
    }
    let limit_mib = opts.memory_limit_mib.unwrap_or(2048);
    if !(1..=1 << 20).contains(&limit_mib) {
        return Err(LedgerError::Input {
            path: root.to_path_buf(),
            problem: format!("the memory limit must be 1 to 1048576 MiB, not {limit_mib}"),
        });
    }
    let budget_rows = ((limit_mib << 20) / BYTES_PER_ROW).max(1024);
    let now = opts
        .now_ms
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let _lock = LockGuard::acquire(root)?;
    let manifest = read_manifest(root)?;
    let removed = remove_orphans(root, &manifest)?;
    if removed > 0 {
        progress(&format!(
            "removed {removed} leftover file(s) of an interrupted batch or compaction"
        ));
    }
    let ledger = Ledger::open(root)?;
    let id = format!("c{:06}", manifest.compactions + 1);

    // Partitions with more than one file, their files in commit order.
    let mut partitions: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, f) in manifest.files.iter().enumerate() {
        partitions
            .entry((f.table.as_str(), f.month.as_str()))
            .or_default()
            .push(i);
    }
    let mut outputs: BTreeMap<usize, Vec<FileEntry>> = BTreeMap::new();
    let mut replaced: BTreeSet<usize> = BTreeSet::new();
    let mut written: Vec<PathBuf> = Vec::new();
    let mut report = CompactReport {
        compaction: None,
        partitions: 0,
        files_before: 0,
        files_after: 0,
        rows: 0,
        retired_removed: 0,
        retired_kept: 0,
    };
    let mut seq = 0usize;
    for ((table, month), members) in &partitions {
        let (Some(table), true) = (Table::from_name(table), members.len() > 1) else {
            continue;
        };
        let files: Vec<&FileEntry> = members.iter().map(|&i| &manifest.files[i]).collect();
        progress(&format!(
            "{} month={month}: {} files, {} rows",
            table.name(),
            files.len(),
            files.iter().map(|f| f.rows).sum::<u64>()
        ));
        let merged = match merge_partition(
            &ledger,
            table,
            month,
            &files,
            &id,
            &mut seq,
            budget_rows,
            &mut written,
        ) {
            Ok(m) => m,
            Err(e) => {
                for p in &written {
                    let _ = fs::remove_file(p);
                }
                return Err(e);
            }
        };
        report.partitions += 1;
        report.files_before += files.len();
        report.files_after += merged.len();
        report.rows += merged.iter().map(|f| f.rows).sum::<u64>();
        replaced.extend(members.iter().copied());
        outputs.insert(members[0], merged);
    }

    // Retired files whose retention is over leave the manifest (and then the disk).
    let mut next = manifest.clone();
    let (mut expired, kept): (Vec<RetiredFile>, Vec<RetiredFile>) = next
        .retired
        .drain(..)
        .partition(|r| now.saturating_sub(r.retired_at_ms) >= (retain as i64) * 60_000);
    next.retired = kept;
    report.retired_removed = expired.len();
    if replaced.is_empty() && expired.is_empty() {
        return Ok(report);
    }
    if !replaced.is_empty() {
        // The merged files take the place of their partition's first file, so that files
        // stay in commit order (a later batch's files come after).
        next.files = Vec::with_capacity(manifest.files.len());
        for (i, f) in manifest.files.iter().enumerate() {
            if let Some(merged) = outputs.remove(&i) {
                next.files.extend(merged);
            } else if !replaced.contains(&i) {
                next.files.push(f.clone());
            }
        }
        let retired = replaced.iter().map(|&i| RetiredFile {
            path: manifest.files[i].path.clone(),
            retired_at_ms: now,
        });
        if retain == 0 {
            // Nobody is to be waited for: the replaced files go right after the commit.
            report.retired_removed += replaced.len();
            expired.extend(retired);
        } else {
            report.retired_kept = replaced.len();
            next.retired.extend(retired);
        }
        next.compactions += 1;
        report.compaction = Some(id);
    }
    if let Err(e) = commit_manifest(root, &next) {
        for p in &written {
            let _ = fs::remove_file(p);
        }
        return Err(e);
    }
    // Files the manifest no longer lists are read by no one new; a kill here leaves them
    // to the next writer's sweep.
    for r in &expired {
        let _ = fs::remove_file(root.join(&r.path));
    }
    Ok(report)
}

/// Rewrites one partition's files (in commit order) as merchant-sorted files, one per
/// range of merchants that fits the budget.
#[allow(clippy::too_many_arguments)]
fn merge_partition(
    ledger: &Ledger,
    table: Table,
    month: &str,
    files: &[&FileEntry],
    id: &str,
    seq: &mut usize,
    budget_rows: u64,
    written: &mut Vec<PathBuf>,
) -> Result<Vec<FileEntry>, LedgerError> {
    let readers = files
        .iter()
        .map(|f| ledger.open_file(f))
        .collect::<Result<Vec<FileReader>, _>>()?;
    let mut out = Vec::new();
    // The merchants table is merged in ledger order, not sorted: the order merchants first
    // appear in it is the order profiles list them in. It is small (a row per merchant and
    // registry change), so it takes one pass.
    let sorted = table != Table::Merchants;
    let ranges = if sorted {
        passes(&readers, budget_rows)
    } else {
        vec![(None, None)]
    };
    for (low, high) in ranges {
        let mut parts: Vec<RecordBatch> = Vec::new();
        for reader in &readers {
            for rg in 0..reader.row_groups() {
                if let Some((min, max)) = reader.merchant_range(rg) {
                    let below = high.as_deref().is_some_and(|h| min >= h);
                    let above = low.as_deref().is_some_and(|l| max < l);
                    if below || above {
                        continue;
                    }
                }
                let batch = reader.read_row_group_as_stored(rg)?;
                parts.push(in_range(
                    batch,
                    low.as_deref(),
                    high.as_deref(),
                    reader.path(),
                )?);
            }
        }
        let schema = table.ledger_schema();
        let all = arrow::compute::concat_batches(&schema, &parts)
            .map_err(|e| LedgerError::storage(ledger.root(), e))?;
        drop(parts);
        if all.num_rows() == 0 {
            continue;
        }
        let sorted = if sorted {
            by_merchant(all, ledger.root())?
        } else {
            all
        };
        *seq += 1;
        let rel = format!(
            "data/{}/month={month}/{id}-{:04}.parquet",
            table.name(),
            *seq
        );
        let path = ledger.root().join(&rel);
        written.push(path.clone());
        let file = File::create(&path).map_err(|e| LedgerError::io(&path, e))?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(ledger_writer_properties(table)))
            .map_err(|e| LedgerError::storage(&path, e))?;
        writer
            .write(&sorted)
            .map_err(|e| LedgerError::storage(&path, e))?;
        let file = writer
            .into_inner()
            .map_err(|e| LedgerError::storage(&path, e))?;
        file.sync_all().map_err(|e| LedgerError::io(&path, e))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let (batches, first, last) = knowledge(&sorted, &path)?;
        out.push(FileEntry {
            table: table.name().to_string(),
            month: month.to_string(),
            path: rel,
            rows: sorted.num_rows() as u64,
            batch: id.to_string(),
            ingested_at_ms: last,
            batches,
            first_ingested_at_ms: Some(first),
        });
    }
    Ok(out)
}

/// A range of `merchant_id`, `[low, high)`, each end open when `None`.
type Range = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Ranges of merchants each holding about `budget_rows` rows, from the row groups'
/// statistics; one range if the partition fits (or a row group has no statistics).
fn passes(readers: &[FileReader], budget_rows: u64) -> Vec<Range> {
    let mut groups: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut total = 0u64;
    for r in readers {
        for rg in 0..r.row_groups() {
            let rows = r.rows_in(rg) as u64;
            total += rows;
            match r.merchant_range(rg) {
                Some((min, _)) => groups.push((min.to_vec(), rows)),
                None => return vec![(None, None)],
            }
        }
    }
    if total <= budget_rows {
        return vec![(None, None)];
    }
    groups.sort();
    let mut cuts: Vec<Vec<u8>> = Vec::new();
    let mut acc = 0u64;
    for (min, rows) in groups {
        if acc >= budget_rows && cuts.last() != Some(&min) {
            cuts.push(min);
            acc = 0;
        }
        acc += rows;
    }
    let mut ranges = Vec::with_capacity(cuts.len() + 1);
    let mut low: Option<Vec<u8>> = None;
    for cut in cuts {
        ranges.push((low.take(), Some(cut.clone())));
        low = Some(cut);
    }
    ranges.push((low, None));
    ranges
}

/// The rows of `batch` whose merchant lies in `[low, high)`.
fn in_range(
    batch: RecordBatch,
    low: Option<&[u8]>,
    high: Option<&[u8]>,
    path: &Path,
) -> Result<RecordBatch, LedgerError> {
    if low.is_none() && high.is_none() {
        return Ok(batch);
    }
    let merchants = batch
        .column_by_name("merchant_id")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| LedgerError::storage(path, "merchant_id is missing or not text"))?;
    let keep: BooleanArray = (0..merchants.len())
        .map(|i| {
            let m = merchants.value(i).as_bytes();
            Some(low.is_none_or(|l| m >= l) && high.is_none_or(|h| m < h))
        })
        .collect();
    arrow::compute::filter_record_batch(&batch, &keep).map_err(|e| LedgerError::storage(path, e))
}

/// The rows in `merchant_id` order, keeping their order within a merchant.
fn by_merchant(batch: RecordBatch, root: &Path) -> Result<RecordBatch, LedgerError> {
    let merchants = batch
        .column_by_name("merchant_id")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| LedgerError::storage(root, "merchant_id is missing or not text"))?;
    let mut order: Vec<u32> = (0..merchants.len() as u32).collect();
    // `sort_by` is stable.
    order.sort_by(|&a, &b| merchants.value(a as usize).cmp(merchants.value(b as usize)));
    arrow::compute::take_record_batch(&batch, &UInt32Array::from(order))
        .map_err(|e| LedgerError::storage(root, e))
}

/// Rows per batch, and the earliest and latest knowledge time, of a compacted file.
fn knowledge(
    batch: &RecordBatch,
    path: &Path,
) -> Result<(BTreeMap<String, u64>, i64, i64), LedgerError> {
    let batches = batch
        .column_by_name(BATCH_COL)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| LedgerError::storage(path, "_batch is missing"))?;
    let times = batch
        .column_by_name(INGESTED_AT_COL)
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .ok_or_else(|| LedgerError::storage(path, "_ingested_at is missing"))?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for b in batches.iter().flatten() {
        match counts.get_mut(b) {
            Some(n) => *n += 1,
            None => {
                counts.insert(b.to_string(), 1);
            }
        }
    }
    let first = arrow::compute::min(times)
        .ok_or_else(|| LedgerError::storage(path, "_ingested_at is empty"))?;
    let last = arrow::compute::max(times)
        .ok_or_else(|| LedgerError::storage(path, "_ingested_at is empty"))?;
    Ok((counts, first, last))
}
