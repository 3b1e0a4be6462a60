//! Ingestion: validate every incoming row, accept it into the ledger, reject it with a
//! reason into quarantine, or recognise it as a duplicate — then commit atomically.
//!
//! Invariants:
//! - for every input file, rows = accepted + rejected + duplicates;
//! - a batch either commits whole (manifest replaced) or changes nothing;
//! - a row's identity is its table and `event_id`; the same id with the same content is a
//!   duplicate, with different content a rejected conflict (a ledger is append-only).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt32Array, UInt64Array,
};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Int64Type, Schema, TimestampMillisecondType,
    UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, Datelike, Utc};
use parquet::arrow::ArrowWriter;
use serde::Serialize;
use yuanxin_domain::{shanghai, TZ_NAME};

use crate::convert::{convert, Ctx};
use crate::error::LedgerError;
use crate::input::{discover, read_batches, InputFile};
use crate::reason::{Reason, Rejection};
use crate::rules::{check, Canon};
use crate::schema::{ColType, Table, DIGEST_COL};
use crate::store::{
    batch_dir, commit_manifest, data_file_path, index_run_path, ledger_writer_properties,
    read_manifest, remove_orphans, sync_dir, writer_properties, BatchEntry, FileEntry, IndexRun,
    InputEntry, Ledger, LockGuard, Manifest,
};

mod index;
mod pipeline;
mod process;
mod quarantine;
mod repeats;
mod runs;
mod write;

use index::*;
pub use quarantine::quarantine_schema;
use quarantine::*;
use repeats::*;
use runs::*;
use write::*;

/// Options of one ingestion batch.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Knowledge time to stamp on the batch (ms since the epoch); the clock if `None`.
    /// Setting it makes a batch reproducible.
    pub ingested_at_ms: Option<i64>,
    /// How far past the knowledge time a row's timestamp may lie (a source's clock running
    /// ahead), in minutes, 0 to [`MAX_CLOCK_SKEW_MINUTES`]; [`DEFAULT_CLOCK_SKEW_MINUTES`]
    /// if `None`. Rows later than that are rejected as `timestamp_out_of_range`.
    pub max_clock_skew_minutes: Option<u32>,
    /// Memory the duplicate index may hold, in MiB, [`MIN_MEMORY_LIMIT_MIB`] to
    /// [`MAX_MEMORY_LIMIT_MIB`]; [`DEFAULT_MEMORY_LIMIT_MIB`] if `None`. Beyond it, keys
    /// spill to sorted runs on disk: the ledger written is the same whatever the limit.
    pub memory_limit_mib: Option<u64>,
    /// Threads that convert and check rows, 1 to [`MAX_THREADS`]; every core if `None`.
    /// The ledger written is the same whatever the count.
    pub threads: Option<usize>,
}

/// The most threads a batch may use.
pub const MAX_THREADS: usize = 256;

/// The duplicate index's memory limit unless a batch sets another: 2 GiB, so that with the
/// writers' buffers and the reference maps a batch stays within 4 GiB.
pub const DEFAULT_MEMORY_LIMIT_MIB: u64 = 2048;
/// The smallest memory limit (it makes a batch spill every few thousand keys: for tests).
pub const MIN_MEMORY_LIMIT_MIB: u64 = 1;
/// The largest memory limit: 1 TiB.
pub const MAX_MEMORY_LIMIT_MIB: u64 = 1 << 20;

/// The clock skew allowed unless a batch sets another: one hour.
pub const DEFAULT_CLOCK_SKEW_MINUTES: u32 = 60;
/// The most clock skew a batch may allow: one week.
pub const MAX_CLOCK_SKEW_MINUTES: u32 = 7 * 24 * 60;

/// Counts that always reconcile: `rows = accepted + rejected + duplicates`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Rows read.
    pub rows: u64,
    /// Rows written to the ledger.
    pub accepted: u64,
    /// Rows written to quarantine.
    pub rejected: u64,
    /// Rows already in the ledger (or earlier in the batch) with the same id and content,
    /// and rejected rows already in quarantine (`already_quarantined`).
    pub duplicates: u64,
    /// Of the duplicates: rejected rows that an earlier batch (or this one) already
    /// quarantined — the same table, content and reason — and that are not written to
    /// quarantine again, so a re-delivery adds no second copy.
    pub already_quarantined: u64,
    /// Rejected rows by reason.
    pub rejected_by_reason: BTreeMap<Reason, u64>,
}

impl Counts {
    /// Whether the counts reconcile.
    pub fn reconciles(&self) -> bool {
        self.rows == self.accepted + self.rejected + self.duplicates
            && self.rejected == self.rejected_by_reason.values().sum::<u64>()
    }

    fn add(&mut self, other: &Counts) {
        self.rows += other.rows;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
        self.already_quarantined += other.already_quarantined;
        for (r, n) in &other.rejected_by_reason {
            *self.rejected_by_reason.entry(*r).or_default() += n;
        }
    }
}

/// What happened to one input file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Path as given.
    pub path: String,
    /// Table it fed.
    pub table: &'static str,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// What the batch did to the duplicate index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexReport {
    /// Runs written (keys spilled from memory, and the rest at the end of each table).
    pub runs_written: usize,
    /// Runs merged into one because a table had too many.
    pub runs_merged: usize,
    /// Committed rows read to build an index a ledger did not have yet (0 once it has one:
    /// a delivery then costs look-ups of its own keys only).
    pub rows_rebuilt: u64,
    /// Tables whose delivery had more keys than memory holds, so that a pre-pass over their
    /// `event_id`s first found the keys that may repeat, and only those were held.
    pub tables_prescanned: usize,
    /// Of those tables' keys, how many may repeat (real repeats and chance ones).
    pub keys_may_repeat: u64,
}

/// The report of a batch: printed, and written to `batches/<id>/report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// Batch id.
    pub batch: String,
    /// Knowledge time stamped on accepted rows.
    pub ingested_at: String,
    /// Ledger root.
    pub ledger: String,
    /// Per input file.
    pub files: Vec<FileReport>,
    /// Per table.
    pub tables: BTreeMap<&'static str, Counts>,
    /// Whole batch.
    pub totals: Counts,
    /// Data files written.
    pub files_written: usize,
    /// Quarantine file (relative to the ledger), if any row was rejected.
    pub quarantine: Option<String>,
    /// The duplicate index's work.
    pub index: IndexReport,
}

/// Ingests `inputs` (files or folders) into the ledger at `root`.
pub fn ingest(
    root: &Path,
    inputs: &[PathBuf],
    opts: &IngestOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<IngestReport, LedgerError> {
    // Every input is found and its schema checked before anything is written.
    let files = discover(inputs)?;
    let _lock = LockGuard::acquire(root)?;
    let manifest = read_manifest(root)?;
    let removed = remove_orphans(root, &manifest)?;
    if removed > 0 {
        progress(&format!(
            "removed {removed} leftover file(s) of an interrupted batch"
        ));
    }
    let skew = opts
        .max_clock_skew_minutes
        .unwrap_or(DEFAULT_CLOCK_SKEW_MINUTES);
    if skew > MAX_CLOCK_SKEW_MINUTES {
        return Err(LedgerError::Input {
            path: root.to_path_buf(),
            problem: format!(
                "the clock skew allowed must be 0 to {MAX_CLOCK_SKEW_MINUTES} minutes, not {skew}"
            ),
        });
    }
    let limit_mib = opts.memory_limit_mib.unwrap_or(DEFAULT_MEMORY_LIMIT_MIB);
    if !(MIN_MEMORY_LIMIT_MIB..=MAX_MEMORY_LIMIT_MIB).contains(&limit_mib) {
        return Err(LedgerError::Input {
            path: root.to_path_buf(),
            problem: format!(
                "the memory limit must be {MIN_MEMORY_LIMIT_MIB} to {MAX_MEMORY_LIMIT_MIB} MiB, not {limit_mib}"
            ),
        });
    }
    let ingested_at_ms = opts
        .ingested_at_ms
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    let id = format!("b{:06}", manifest.batches.len() + 1);
    let max_ts_ms = ingested_at_ms.saturating_add(i64::from(skew) * 60_000);
    let threads = match opts.threads {
        Some(t) if (1..=MAX_THREADS).contains(&t) => t,
        Some(t) => {
            return Err(LedgerError::Input {
                path: root.to_path_buf(),
                problem: format!("threads must be 1 to {MAX_THREADS}, not {t}"),
            })
        }
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut batch = BatchWriter::new(root, id, ingested_at_ms, max_ts_ms, &manifest)?;
    batch.memory_limit = limit_mib << 20;
    batch.threads = threads;
    match batch.run(&files, progress) {
        Ok(report) => Ok(report),
        Err(e) => {
            batch.abandon();
            Err(e)
        }
    }
}

/// Rows buffered per partition writer before Parquet flushes them; the writers' total
/// in-progress size is also capped (see `MAX_IN_PROGRESS`).
const MAX_IN_PROGRESS: usize = 64 * 1024 * 1024;
/// How often (in rows written) the writers' memory is measured.
const CHECK_EVERY_ROWS: usize = 128 * 1024;

struct PartWriter {
    rel_path: String,
    month: String,
    rows: u64,
    writer: ArrowWriter<File>,
}

struct BatchWriter<'m> {
    root: PathBuf,
    id: String,
    ingested_at_ms: i64,
    /// The latest timestamp a row may carry: the knowledge time plus the clock skew allowed.
    max_ts_ms: i64,
    manifest: &'m Manifest,
    ledger: Ledger,
    ids: IdHasher,
    merchants: DigestMap<()>,
    /// Product and contract digests → owning merchant's digest.
    products: DigestMap<u128>,
    contracts: DigestMap<u128>,
    /// Contract digests → their terms, to refuse an id reused for another contract.
    contract_terms: DigestMap<ContractTerms>,
    refs_loaded: [bool; 4],
    /// For a reference map loaded for one small delivery's ids only, the table it was
    /// loaded for (another table needing it loads its own ids too).
    refs_for: [Option<Table>; 4],
    /// The duplicate index of the table being ingested.
    dup: Option<DupIndex>,
    /// Bytes the duplicate index may hold.
    memory_limit: u64,
    /// Threads preparing batches.
    threads: usize,
    /// Runs written by this batch (numbered across tables), their paths (for `abandon`),
    /// those that join the manifest, and committed ones that leave it.
    index_seq: usize,
    index_files: Vec<String>,
    new_runs: Vec<IndexRun>,
    superseded_runs: Vec<String>,
    index_report: IndexReport,
    /// The partition writers, on their thread.
    writer: Writer,
    written: Vec<FileEntry>,
    quarantine: Option<ArrowWriter<File>>,
    quarantine_rel: String,
    /// Digests of every quarantined row (table, reason, content), loaded from the committed
    /// batches' quarantine files at the first rejection.
    quarantined: Option<DigestMap<()>>,
    created_dirs: Vec<PathBuf>,
}

impl<'m> BatchWriter<'m> {
    fn new(
        root: &Path,
        id: String,
        ingested_at_ms: i64,
        max_ts_ms: i64,
        manifest: &'m Manifest,
    ) -> Result<Self, LedgerError> {
        let ledger = Ledger::open(root)?;
        let quarantine_rel = format!("{}/quarantine.parquet", batch_dir(&id));
        let writer = Writer::start(root, &id, ingested_at_ms);
        Ok(BatchWriter {
            root: root.to_path_buf(),
            id,
            ingested_at_ms,
            max_ts_ms,
            manifest,
            ledger,
            ids: IdHasher::new(),
            merchants: DigestMap::default(),
            products: DigestMap::default(),
            contracts: DigestMap::default(),
            contract_terms: DigestMap::default(),
            refs_loaded: [false; 4],
            refs_for: [None; 4],
            dup: None,
            memory_limit: DEFAULT_MEMORY_LIMIT_MIB << 20,
            threads: 1,
            index_seq: 0,
            index_files: Vec::new(),
            new_runs: Vec::new(),
            superseded_runs: Vec::new(),
            index_report: IndexReport::default(),
            writer,
            written: Vec::new(),
            quarantine: None,
            quarantine_rel,
            quarantined: None,
            created_dirs: Vec::new(),
        })
    }

    /// Deletes whatever this batch wrote (it is not in the manifest, so it was never
    /// visible); a later writer would remove it anyway.
    fn abandon(&mut self) {
        // The writer thread finishes what was queued; closing its files, then every file of
        // this batch goes.
        let _ = self.writer.stop();
        let mut open: Vec<String> = Vec::new();
        if let Writer::Stopped(parts) = &mut self.writer {
            open = parts.close_open();
            open.extend(parts.written.drain(..).map(|f| f.path));
            self.created_dirs.append(&mut parts.created_dirs);
        }
        self.quarantine = None;
        self.dup = None;
        for rel in open
            .iter()
            .chain(self.written.iter().map(|f| &f.path))
            .chain(&self.index_files)
        {
            let _ = fs::remove_file(self.root.join(rel));
        }
        let _ = fs::remove_dir_all(self.root.join(batch_dir(&self.id)));
        for dir in self.created_dirs.iter().rev() {
            // Only empty folders are removed; `remove_dir` refuses the others.
            let _ = fs::remove_dir(dir);
        }
    }

    fn run(
        &mut self,
        files: &[InputFile],
        progress: &mut dyn FnMut(&str),
    ) -> Result<IngestReport, LedgerError> {
        let mut reports = Vec::with_capacity(files.len());
        let mut inputs = Vec::with_capacity(files.len());
        for file in files {
            progress(&format!("{} → {}", file.path.display(), file.table.name()));
            let same_table: Vec<&InputFile> =
                files.iter().filter(|f| f.table == file.table).collect();
            self.load_refs(file.table, &same_table)?;
            // Files come in table order: a table's duplicate index is closed once its
            // files are done, so that memory holds one table's index at a time.
            self.open_index(file.table, &same_table, progress)?;
            let mut counts = Counts::default();
            let ids = self.ids.clone();
            let (workers, max_ts_ms) = (self.threads, self.max_ts_ms);
            pipeline::for_each_prepared(file, workers, max_ts_ms, &ids, &mut |prepared| {
                self.apply(file, prepared, &mut counts)
            })?;
            if !counts.reconciles() {
                return Err(LedgerError::storage(
                    &file.path,
                    format!("internal error: counts do not reconcile: {counts:?}"),
                ));
            }
            inputs.push(InputEntry {
                path: file.path.display().to_string(),
                table: file.table.name().to_string(),
                blake3: file_digest(&file.path)?,
            });
            reports.push(FileReport {
                path: file.path.display().to_string(),
                table: file.table.name(),
                counts,
            });
        }
        self.finish_index()?;
        self.finish_writers()?;
        let quarantine = self.finish_quarantine()?;

        let mut totals = Counts::default();
        let mut tables: BTreeMap<&'static str, Counts> = BTreeMap::new();
        for r in &reports {
            totals.add(&r.counts);
            tables.entry(r.table).or_default().add(&r.counts);
        }
        let ingested_at = DateTime::from_timestamp_millis(self.ingested_at_ms)
            .map(|t| t.with_timezone(&shanghai()).to_rfc3339())
            .unwrap_or_default();
        let report = IngestReport {
            batch: self.id.clone(),
            ingested_at: ingested_at.clone(),
            ledger: self.root.display().to_string(),
            files: reports,
            tables,
            totals: totals.clone(),
            files_written: self.written.len(),
            quarantine,
            index: self.index_report.clone(),
        };
        let dir = self.root.join(batch_dir(&self.id));
        fs::create_dir_all(&dir).map_err(|e| LedgerError::io(&dir, e))?;
        let report_path = dir.join("report.json");
        let json = serde_json::to_vec_pretty(&report)
            .map_err(|e| LedgerError::storage(&report_path, e))?;
        write_synced(&report_path, &json)?;
        sync_dir(&dir)?;

        let mut next = self.manifest.clone();
        next.batches.push(BatchEntry {
            id: self.id.clone(),
            ingested_at,
            ingested_at_ms: self.ingested_at_ms,
            rows: totals.rows,
            accepted: totals.accepted,
            rejected: totals.rejected,
            duplicates: totals.duplicates,
            inputs,
        });
        next.files.extend(self.written.iter().cloned());
        next.index
            .retain(|r| !self.superseded_runs.contains(&r.path));
        next.index.extend(self.new_runs.iter().cloned());
        commit_manifest(&self.root, &next)?;
        // Runs the new manifest no longer lists are read by no one (only the writer holding
        // the lock reads the index); a kill here leaves them to the next writer's sweep.
        for rel in &self.superseded_runs {
            let _ = fs::remove_file(self.root.join(rel));
        }
        Ok(report)
    }
}
