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
    batch_dir, commit_manifest, data_file_path, ledger_writer_properties, read_manifest,
    remove_orphans, sync_dir, writer_properties, BatchEntry, FileEntry, InputEntry, Ledger,
    LockGuard, Manifest,
};

mod index;
mod process;
mod quarantine;
mod write;

use index::*;
pub use quarantine::quarantine_schema;
use quarantine::*;
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
}

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
    let ingested_at_ms = opts
        .ingested_at_ms
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    let id = format!("b{:06}", manifest.batches.len() + 1);
    let max_ts_ms = ingested_at_ms.saturating_add(i64::from(skew) * 60_000);
    let mut batch = BatchWriter::new(root, id, ingested_at_ms, max_ts_ms, &manifest)?;
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
    /// Per table: event-id digest → row digest.
    indexes: HashMap<Table, DigestMap<u64>>,
    writers: BTreeMap<(Table, String), PartWriter>,
    file_seq: usize,
    rows_since_check: usize,
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
            indexes: HashMap::new(),
            writers: BTreeMap::new(),
            file_seq: 0,
            rows_since_check: 0,
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
        let open: Vec<String> = self.writers.values().map(|w| w.rel_path.clone()).collect();
        // Dropping the writers closes their files; then every file of this batch goes.
        self.writers.clear();
        self.quarantine = None;
        for rel in open.iter().chain(self.written.iter().map(|f| &f.path)) {
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
            self.load_refs(file.table)?;
            // Files come in table order: a table's duplicate index is dropped once its
            // files are done, so that memory holds one table's index at a time.
            self.indexes.retain(|t, _| *t == file.table);
            let incoming = files
                .iter()
                .filter(|f| f.table == file.table)
                .map(|f| f.rows_hint)
                .sum();
            self.load_index(file.table, incoming)?;
            let mut counts = Counts::default();
            let mut offset = 0u64;
            read_batches(file, &mut |batch| {
                let n = batch.num_rows() as u64;
                self.process(file, &batch, offset, &mut counts)?;
                offset += n;
                Ok(())
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
        commit_manifest(&self.root, &next)?;
        Ok(report)
    }
}
