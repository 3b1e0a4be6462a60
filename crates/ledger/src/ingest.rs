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
use std::hash::{BuildHasherDefault, Hasher};
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
    batch_dir, commit_manifest, data_file_path, read_manifest, remove_orphans, sync_dir,
    writer_properties, BatchEntry, FileEntry, InputEntry, Ledger, LockGuard, Manifest,
};

/// Options of one ingestion batch.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Knowledge time to stamp on the batch (ms since the epoch); the clock if `None`.
    /// Setting it makes a batch reproducible.
    pub ingested_at_ms: Option<i64>,
}

/// Counts that always reconcile: `rows = accepted + rejected + duplicates`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Rows read.
    pub rows: u64,
    /// Rows written to the ledger.
    pub accepted: u64,
    /// Rows written to quarantine.
    pub rejected: u64,
    /// Rows already in the ledger (or earlier in the batch) with the same id and content.
    pub duplicates: u64,
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

/// A hasher for keys that already are uniformly random (BLAKE3 digests): it just keeps the
/// low 64 bits, saving a second hash per lookup.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        // Truncation intended: the low half of a uniform digest is uniform.
        self.0 = v as u64;
    }
}

type DigestMap<V> = HashMap<u128, V, BuildHasherDefault<PassThrough>>;

/// 128 bits of BLAKE3 of an id: collisions are negligible (p ≈ n²/2¹²⁹, about 10⁻²³ for
/// 10⁸ rows), so equality of digests stands for equality of ids.
fn id_digest(id: &str) -> u128 {
    let h = blake3::hash(id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    u128::from_le_bytes(b)
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
    let ingested_at_ms = opts
        .ingested_at_ms
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    let id = format!("b{:06}", manifest.batches.len() + 1);
    let mut batch = BatchWriter::new(root, id, ingested_at_ms, &manifest)?;
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
const MAX_IN_PROGRESS: usize = 256 * 1024 * 1024;

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
    manifest: &'m Manifest,
    ledger: Ledger,
    merchants: DigestMap<()>,
    /// Product and contract digests → owning merchant's digest.
    products: DigestMap<u128>,
    contracts: DigestMap<u128>,
    refs_loaded: [bool; 3],
    /// Per table: event-id digest → row digest.
    indexes: HashMap<Table, DigestMap<u64>>,
    writers: BTreeMap<(Table, String), PartWriter>,
    file_seq: usize,
    written: Vec<FileEntry>,
    quarantine: Option<ArrowWriter<File>>,
    quarantine_rel: String,
    created_dirs: Vec<PathBuf>,
}

impl<'m> BatchWriter<'m> {
    fn new(
        root: &Path,
        id: String,
        ingested_at_ms: i64,
        manifest: &'m Manifest,
    ) -> Result<Self, LedgerError> {
        let ledger = Ledger::open(root)?;
        let quarantine_rel = format!("{}/quarantine.parquet", batch_dir(&id));
        Ok(BatchWriter {
            root: root.to_path_buf(),
            id,
            ingested_at_ms,
            manifest,
            ledger,
            merchants: DigestMap::default(),
            products: DigestMap::default(),
            contracts: DigestMap::default(),
            refs_loaded: [false; 3],
            indexes: HashMap::new(),
            writers: BTreeMap::new(),
            file_seq: 0,
            written: Vec::new(),
            quarantine: None,
            quarantine_rel,
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
            self.load_index(file.table)?;
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

    /// Loads the ids that references of `table` point to, from the committed ledger.
    fn load_refs(&mut self, table: Table) -> Result<(), LedgerError> {
        let needs: &[(usize, Table)] = match table {
            Table::Merchants => &[],
            Table::Contracts | Table::Promotions => &[(0, Table::Merchants), (1, Table::Products)],
            Table::EscrowEvents | Table::Complaints => {
                &[(0, Table::Merchants), (2, Table::Contracts)]
            }
            _ => &[(0, Table::Merchants)],
        };
        for &(slot, source) in needs {
            if self.refs_loaded[slot] {
                continue;
            }
            self.refs_loaded[slot] = true;
            let key = match source {
                Table::Products => "product_id",
                Table::Contracts => "contract_id",
                _ => "merchant_id",
            };
            for b in self
                .ledger
                .scan(source, None, Some(&[key, "merchant_id"]))?
            {
                let keys = column_str(&b, key);
                let owners = column_str(&b, "merchant_id");
                if let (Some(keys), Some(owners)) = (keys, owners) {
                    for i in 0..b.num_rows() {
                        let k = id_digest(keys.value(i));
                        let o = id_digest(owners.value(i));
                        match source {
                            Table::Products => {
                                self.products.insert(k, o);
                            }
                            Table::Contracts => {
                                self.contracts.insert(k, o);
                            }
                            _ => {
                                self.merchants.insert(k, ());
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Loads the duplicate index of a table from the committed ledger.
    fn load_index(&mut self, table: Table) -> Result<(), LedgerError> {
        if self.indexes.contains_key(&table) {
            return Ok(());
        }
        let mut index = DigestMap::default();
        for b in self
            .ledger
            .scan(table, None, Some(&["event_id", DIGEST_COL]))?
        {
            let ids = column_str(&b, "event_id");
            let digests = b
                .column_by_name(DIGEST_COL)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>());
            if let (Some(ids), Some(digests)) = (ids, digests) {
                for i in 0..b.num_rows() {
                    index.insert(id_digest(ids.value(i)), digests.value(i));
                }
            }
        }
        self.indexes.insert(table, index);
        Ok(())
    }

    fn process(
        &mut self,
        file: &InputFile,
        batch: &RecordBatch,
        offset: u64,
        counts: &mut Counts,
    ) -> Result<(), LedgerError> {
        let table = file.table;
        let n = batch.num_rows();
        let mut rejections: Vec<Option<Rejection>> = vec![None; n];
        let mut ctx = Ctx {
            max_ts_ms: self.ingested_at_ms + 86_400_000,
            rejections: &mut rejections,
        };
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(table.columns().len());
        for (spec, idx) in table.columns().iter().zip(&file.mapping) {
            let input = idx.map(|i| batch.column(i));
            let col =
                convert(spec, input, n, &mut ctx).map_err(|problem| LedgerError::Unreadable {
                    path: file.path.clone(),
                    format: "input",
                    problem: format!("column {}: {problem}", spec.name),
                })?;
            cols.push(col);
        }
        let canon = Canon { table, cols: &cols };
        check(&canon, &mut rejections);

        // References, duplicates and conflicts, row by row in file order, so that a row
        // may refer to one accepted earlier in the same batch.
        let digests = row_digests(table, &cols);
        let mut accepted: Vec<u32> = Vec::new();
        let mut duplicate = vec![false; n];
        let index = self.indexes.entry(table).or_default();
        for row in 0..n {
            if rejections[row].is_some() {
                continue;
            }
            let merchant = canon.str("merchant_id", row).map(id_digest);
            let reference = match table {
                Table::Merchants => None,
                _ if merchant.is_some_and(|m| !self.merchants.contains_key(&m)) => {
                    Some(Rejection::new(
                        Reason::UnknownMerchant,
                        "merchant_id",
                        "merchant is not registered",
                    ))
                }
                Table::Contracts | Table::Promotions => owned_ref(
                    &canon,
                    row,
                    "product_id",
                    &self.products,
                    merchant,
                    Reason::UnknownProduct,
                ),
                Table::EscrowEvents | Table::Complaints => owned_ref(
                    &canon,
                    row,
                    "contract_id",
                    &self.contracts,
                    merchant,
                    Reason::UnknownContract,
                ),
                _ => None,
            };
            if let Some(r) = reference {
                rejections[row] = Some(r);
                continue;
            }
            let Some(event_id) = canon.str("event_id", row) else {
                continue;
            };
            let key = id_digest(event_id);
            match index.get(&key) {
                Some(&d) if d == digests[row] => duplicate[row] = true,
                Some(_) => {
                    rejections[row] = Some(Rejection::row(
                        Reason::ConflictingDuplicate,
                        format!(
                            "event_id {event_id} is already in the ledger with different content"
                        ),
                    ))
                }
                None => {
                    index.insert(key, digests[row]);
                    accepted.push(row as u32);
                    let m = merchant.unwrap_or_default();
                    match table {
                        Table::Merchants => {
                            self.merchants.insert(m, ());
                        }
                        Table::Products => {
                            if let Some(p) = canon.str("product_id", row) {
                                self.products.insert(id_digest(p), m);
                            }
                        }
                        Table::Contracts => {
                            if let Some(c) = canon.str("contract_id", row) {
                                self.contracts.insert(id_digest(c), m);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }

        counts.rows += n as u64;
        counts.accepted += accepted.len() as u64;
        counts.duplicates += duplicate.iter().filter(|d| **d).count() as u64;
        let rejected: Vec<(usize, &Rejection)> = rejections
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
            .collect();
        counts.rejected += rejected.len() as u64;
        for (_, r) in &rejected {
            *counts.rejected_by_reason.entry(r.reason).or_default() += 1;
        }
        if !rejected.is_empty() {
            self.quarantine_rows(file, batch, offset, &rejected)?;
        }
        if !accepted.is_empty() {
            self.write_accepted(table, cols, &digests, &accepted)?;
        }
        Ok(())
    }

    fn write_accepted(
        &mut self,
        table: Table,
        cols: Vec<ArrayRef>,
        digests: &[u64],
        accepted: &[u32],
    ) -> Result<(), LedgerError> {
        // Keep accepted rows only: rejected rows may hold nulls in required columns.
        let idx = UInt32Array::from(accepted.to_vec());
        let mut kept: Vec<ArrayRef> = cols
            .iter()
            .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
            .collect::<Result<_, _>>()
            .map_err(|e| LedgerError::storage(&self.root, e))?;
        let n = accepted.len();
        kept.push(Arc::new(StringArray::from(vec![self.id.as_str(); n])));
        kept.push(Arc::new(
            TimestampMillisecondArray::from(vec![self.ingested_at_ms; n]).with_timezone(TZ_NAME),
        ));
        kept.push(Arc::new(UInt64Array::from_iter_values(
            accepted.iter().map(|&r| digests[r as usize]),
        )));
        let full = RecordBatch::try_new(table.ledger_schema(), kept)
            .map_err(|e| LedgerError::storage(&self.root, e))?;
        // Group rows by business month of `ts`.
        let ts = full
            .column(2)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| LedgerError::storage(&self.root, "ts column has the wrong type"))?;
        let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for row in 0..n {
            groups
                .entry(month_of(ts.value(row)))
                .or_default()
                .push(row as u32);
        }
        if groups.len() == 1 {
            if let Some((month, _)) = groups.into_iter().next() {
                self.write_part(table, month, &full)?;
            }
            return Ok(());
        }
        for (month, rows) in groups {
            let idx = UInt32Array::from(rows);
            let part = arrow::compute::take_record_batch(&full, &idx)
                .map_err(|e| LedgerError::storage(&self.root, e))?;
            self.write_part(table, month, &part)?;
        }
        Ok(())
    }

    fn write_part(
        &mut self,
        table: Table,
        month: String,
        part: &RecordBatch,
    ) -> Result<(), LedgerError> {
        let key = (table, month.clone());
        if !self.writers.contains_key(&key) {
            self.file_seq += 1;
            let rel = data_file_path(table, &month, &self.id, self.file_seq);
            let path = self.root.join(&rel);
            if let Some(dir) = path.parent() {
                if !dir.exists() {
                    fs::create_dir_all(dir).map_err(|e| LedgerError::io(dir, e))?;
                    self.created_dirs.push(dir.to_path_buf());
                }
            }
            let f = File::create(&path).map_err(|e| LedgerError::io(&path, e))?;
            let writer = ArrowWriter::try_new(f, table.ledger_schema(), Some(writer_properties()))
                .map_err(|e| LedgerError::storage(&path, e))?;
            self.writers.insert(
                key.clone(),
                PartWriter {
                    rel_path: rel,
                    month,
                    rows: 0,
                    writer,
                },
            );
        }
        if let Some(w) = self.writers.get_mut(&key) {
            w.writer
                .write(part)
                .map_err(|e| LedgerError::storage(&w.rel_path, e))?;
            w.rows += part.num_rows() as u64;
        }
        // Bound memory: flush the largest in-progress row groups while over budget.
        let mut total: usize = self
            .writers
            .values()
            .map(|w| w.writer.in_progress_size())
            .sum();
        while total > MAX_IN_PROGRESS {
            let Some(largest) = self
                .writers
                .values_mut()
                .max_by_key(|w| w.writer.in_progress_size())
            else {
                break;
            };
            let size = largest.writer.in_progress_size();
            if size == 0 {
                break;
            }
            largest
                .writer
                .flush()
                .map_err(|e| LedgerError::storage(&largest.rel_path, e))?;
            total -= size;
        }
        Ok(())
    }

    fn finish_writers(&mut self) -> Result<(), LedgerError> {
        let writers = std::mem::take(&mut self.writers);
        for ((table, _), w) in writers {
            let path = self.root.join(&w.rel_path);
            let f = w
                .writer
                .into_inner()
                .map_err(|e| LedgerError::storage(&path, e))?;
            f.sync_all().map_err(|e| LedgerError::io(&path, e))?;
            self.written.push(FileEntry {
                table: table.name().to_string(),
                month: w.month,
                path: w.rel_path,
                rows: w.rows,
                batch: self.id.clone(),
                ingested_at_ms: self.ingested_at_ms,
            });
        }
        for dir in &self.created_dirs {
            sync_dir(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }

    fn quarantine_rows(
        &mut self,
        file: &InputFile,
        batch: &RecordBatch,
        offset: u64,
        rows: &[(usize, &Rejection)],
    ) -> Result<(), LedgerError> {
        let options = FormatOptions::default();
        let formatters: Vec<ArrayFormatter<'_>> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|e| LedgerError::storage(&file.path, e))?;
        let schema = batch.schema();
        let mut source_rows = Vec::with_capacity(rows.len());
        let mut reasons = Vec::with_capacity(rows.len());
        let mut columns = Vec::with_capacity(rows.len());
        let mut details = Vec::with_capacity(rows.len());
        let mut raws = Vec::with_capacity(rows.len());
        for (row, rejection) in rows {
            let mut obj = serde_json::Map::new();
            for (field, fmt) in schema.fields().iter().zip(&formatters) {
                let value = if batch
                    .column(schema.index_of(field.name()).unwrap_or(0))
                    .is_null(*row)
                {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(fmt.value(*row).to_string())
                };
                obj.insert(field.name().clone(), value);
            }
            // Rows are numbered from 1, as a person counts data rows (header excluded).
            source_rows.push(offset + *row as u64 + 1);
            reasons.push(rejection.reason.as_str());
            columns.push(rejection.column);
            details.push(rejection.detail.clone());
            raws.push(serde_json::Value::Object(obj).to_string());
        }
        let k = rows.len();
        let out = RecordBatch::try_new(
            quarantine_schema(),
            vec![
                Arc::new(StringArray::from(vec![self.id.as_str(); k])),
                Arc::new(StringArray::from(vec![file.path.display().to_string(); k])),
                Arc::new(UInt64Array::from(source_rows)),
                Arc::new(StringArray::from(vec![file.table.name(); k])),
                Arc::new(StringArray::from(reasons)),
                Arc::new(StringArray::from(columns)),
                Arc::new(StringArray::from(details)),
                Arc::new(StringArray::from(raws)),
            ],
        )
        .map_err(|e| LedgerError::storage(&file.path, e))?;
        if self.quarantine.is_none() {
            let path = self.root.join(&self.quarantine_rel);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| LedgerError::io(dir, e))?;
            }
            let f = File::create(&path).map_err(|e| LedgerError::io(&path, e))?;
            let w = ArrowWriter::try_new(f, quarantine_schema(), Some(writer_properties()))
                .map_err(|e| LedgerError::storage(&path, e))?;
            self.quarantine = Some(w);
        }
        if let Some(w) = self.quarantine.as_mut() {
            w.write(&out)
                .map_err(|e| LedgerError::storage(&self.quarantine_rel, e))?;
        }
        Ok(())
    }

    fn finish_quarantine(&mut self) -> Result<Option<String>, LedgerError> {
        let Some(w) = self.quarantine.take() else {
            return Ok(None);
        };
        let path = self.root.join(&self.quarantine_rel);
        let f = w.into_inner().map_err(|e| LedgerError::storage(&path, e))?;
        f.sync_all().map_err(|e| LedgerError::io(&path, e))?;
        Ok(Some(self.quarantine_rel.clone()))
    }
}

/// Checks that a referenced id exists and belongs to the row's merchant.
fn owned_ref(
    canon: &Canon<'_>,
    row: usize,
    column: &'static str,
    known: &DigestMap<u128>,
    merchant: Option<u128>,
    reason: Reason,
) -> Option<Rejection> {
    let id = canon.str(column, row)?;
    match known.get(&id_digest(id)) {
        None => Some(Rejection::new(
            reason,
            column,
            format!("{id} is not in the ledger"),
        )),
        Some(owner) if Some(*owner) != merchant => Some(Rejection::new(
            Reason::Inconsistent,
            column,
            format!("{id} belongs to another merchant"),
        )),
        Some(_) => None,
    }
}

/// The quarantine file's schema.
pub fn quarantine_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("batch", DataType::Utf8, false),
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_row", DataType::UInt64, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("column", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, false),
        Field::new("row_json", DataType::Utf8, false),
    ]))
}

fn column_str<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
}

/// Business month (Asia/Shanghai) of an instant in ms, as `YYYY-MM`.
fn month_of(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| {
            let local = t.with_timezone(&shanghai());
            format!("{:04}-{:02}", local.year(), local.month())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A 64-bit digest of each row's canonical source values (BLAKE3, truncated). Used only to
/// tell an exact re-delivery from a conflicting one for the same `event_id`.
fn row_digests(table: Table, cols: &[ArrayRef]) -> Vec<u64> {
    let n = cols.first().map(|c| c.len()).unwrap_or(0);
    let mut hashers: Vec<blake3::Hasher> = (0..n).map(|_| blake3::Hasher::new()).collect();
    for (spec, col) in table.columns().iter().zip(cols) {
        for (row, h) in hashers.iter_mut().enumerate() {
            if col.is_null(row) {
                h.update(&[0]);
                continue;
            }
            h.update(&[1]);
            match spec.ty {
                ColType::Id
                | ColType::Text
                | ColType::Code(_)
                | ColType::KindCode
                | ColType::Uscc => {
                    if let Some(s) = col.as_string_opt::<i32>() {
                        let v = s.value(row).as_bytes();
                        h.update(&(v.len() as u64).to_le_bytes());
                        h.update(v);
                    }
                }
                ColType::Money | ColType::Ratio => {
                    if let Some(a) = col.as_primitive_opt::<Decimal128Type>() {
                        h.update(&a.value(row).to_le_bytes());
                    }
                }
                ColType::Count => {
                    if let Some(a) = col.as_primitive_opt::<Int64Type>() {
                        h.update(&a.value(row).to_le_bytes());
                    }
                }
                ColType::Bool => {
                    if let Some(a) = col.as_any().downcast_ref::<BooleanArray>() {
                        h.update(&[u8::from(a.value(row))]);
                    }
                }
                ColType::Timestamp => {
                    if let Some(a) = col.as_primitive_opt::<TimestampMillisecondType>() {
                        h.update(&a.value(row).to_le_bytes());
                    }
                }
                ColType::Date => {
                    if let Some(a) = col.as_primitive_opt::<Date32Type>() {
                        h.update(&a.value(row).to_le_bytes());
                    }
                }
            }
        }
    }
    hashers
        .iter()
        .map(|h| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h.finalize().as_bytes()[..8]);
            u64::from_le_bytes(b)
        })
        .collect()
}

fn file_digest(path: &Path) -> Result<String, LedgerError> {
    let mut hasher = blake3::Hasher::new();
    let mut f = File::open(path).map_err(|e| LedgerError::io(path, e))?;
    std::io::copy(&mut f, &mut hasher).map_err(|e| LedgerError::io(path, e))?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    use std::io::Write;
    let mut f = File::create(path).map_err(|e| LedgerError::io(path, e))?;
    f.write_all(bytes).map_err(|e| LedgerError::io(path, e))?;
    f.sync_all().map_err(|e| LedgerError::io(path, e))
}
