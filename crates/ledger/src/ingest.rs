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
    batch_dir, commit_manifest, data_file_path, ledger_writer_properties, read_manifest,
    remove_orphans, sync_dir, writer_properties, BatchEntry, FileEntry, InputEntry, Ledger,
    LockGuard, Manifest,
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

/// Keys of the in-memory id digests: SipHash with two random keys per process, so that
/// nobody can craft ids that collide (the digests never leave the process).
struct IdHasher(std::hash::RandomState, std::hash::RandomState);

impl IdHasher {
    fn new() -> Self {
        IdHasher(std::hash::RandomState::new(), std::hash::RandomState::new())
    }

    /// 128 bits of keyed SipHash of an id: collisions are negligible (p ≈ n²/2¹²⁹, about
    /// 10⁻²³ for 10⁸ rows), so equality of digests stands for equality of ids.
    fn digest(&self, id: &str) -> u128 {
        use std::hash::BuildHasher;
        (u128::from(self.0.hash_one(id)) << 64) | u128::from(self.1.hash_one(id))
    }
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
    manifest: &'m Manifest,
    ledger: Ledger,
    ids: IdHasher,
    merchants: DigestMap<()>,
    /// Product and contract digests → owning merchant's digest.
    products: DigestMap<u128>,
    contracts: DigestMap<u128>,
    refs_loaded: [bool; 3],
    /// Per table: event-id digest → row digest.
    indexes: HashMap<Table, DigestMap<u64>>,
    writers: BTreeMap<(Table, String), PartWriter>,
    file_seq: usize,
    rows_since_check: usize,
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
            ids: IdHasher::new(),
            merchants: DigestMap::default(),
            products: DigestMap::default(),
            contracts: DigestMap::default(),
            refs_loaded: [false; 3],
            indexes: HashMap::new(),
            writers: BTreeMap::new(),
            file_seq: 0,
            rows_since_check: 0,
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
            let ids = &self.ids;
            let (products, contracts, merchants) =
                (&mut self.products, &mut self.contracts, &mut self.merchants);
            for file in self.ledger.files(source, None) {
                self.ledger
                    .scan_file(file, Some(&[key, "merchant_id"]), &mut |b| {
                        let keys = column_str(&b, key);
                        let owners = column_str(&b, "merchant_id");
                        if let (Some(keys), Some(owners)) = (keys, owners) {
                            for i in 0..b.num_rows() {
                                let k = ids.digest(keys.value(i));
                                let o = ids.digest(owners.value(i));
                                match source {
                                    Table::Products => {
                                        products.insert(k, o);
                                    }
                                    Table::Contracts => {
                                        contracts.insert(k, o);
                                    }
                                    _ => {
                                        merchants.insert(k, ());
                                    }
                                }
                            }
                        }
                        Ok(())
                    })?;
            }
        }
        Ok(())
    }

    /// Loads the duplicate index of a table from the committed ledger.
    fn load_index(&mut self, table: Table, incoming: u64) -> Result<(), LedgerError> {
        if self.indexes.contains_key(&table) {
            return Ok(());
        }
        // Sized up front so that loading does not rehash (which doubles the peak): for the
        // larger of the ledger's rows and the batch's, the two common cases being a first
        // delivery and a re-delivery.
        let existing = self
            .ledger
            .row_counts()
            .get(table.name())
            .copied()
            .unwrap_or(0);
        let capacity = usize::try_from(existing.max(incoming)).unwrap_or(0);
        let mut index = DigestMap::with_capacity_and_hasher(capacity, Default::default());
        let ids = &self.ids;
        for file in self.ledger.files(table, None) {
            self.ledger
                .scan_file(file, Some(&["event_id", DIGEST_COL]), &mut |b| {
                    let keys = column_str(&b, "event_id");
                    let digests = b
                        .column_by_name(DIGEST_COL)
                        .and_then(|c| c.as_primitive_opt::<UInt64Type>());
                    if let (Some(keys), Some(digests)) = (keys, digests) {
                        for i in 0..b.num_rows() {
                            index.insert(ids.digest(keys.value(i)), digests.value(i));
                        }
                    }
                    Ok(())
                })?;
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
            max_ts_ms: self.ingested_at_ms + yuanxin_domain::DAY_MS,
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
            let merchant = canon.str("merchant_id", row).map(|m| self.ids.digest(m));
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
                    &self.ids,
                    &canon,
                    row,
                    "product_id",
                    &self.products,
                    merchant,
                    Reason::UnknownProduct,
                ),
                Table::EscrowEvents | Table::Complaints => owned_ref(
                    &self.ids,
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
            let key = self.ids.digest(event_id);
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
                                self.products.insert(self.ids.digest(p), m);
                            }
                        }
                        Table::Contracts => {
                            if let Some(c) = canon.str("contract_id", row) {
                                self.contracts.insert(self.ids.digest(c), m);
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
        // Small reference tables go to one partition per batch; event tables are split by
        // business month of `ts`, so that a profile as of a date reads only the months it
        // needs.
        if !monthly(table) {
            return self.write_part(table, crate::store::UNDATED.to_string(), &full);
        }
        // Group rows by business month of `ts`.
        let ts = full
            .column(2)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| LedgerError::storage(&self.root, "ts column has the wrong type"))?;
        let mut groups: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
        let mut last: Option<(i64, i32)> = None;
        for row in 0..n {
            // Rows of a merchant come in time order: most neighbours share a day.
            let day = yuanxin_domain::business_day_of_ms(ts.value(row));
            let key = match last {
                Some((d, k)) if d == day => k,
                _ => {
                    let k = month_key(day);
                    last = Some((day, k));
                    k
                }
            };
            groups.entry(key).or_default().push(row as u32);
        }
        let groups: BTreeMap<String, Vec<u32>> = groups
            .into_iter()
            .map(|(k, rows)| {
                (
                    format!("{:04}-{:02}", k.div_euclid(12), k.rem_euclid(12) + 1),
                    rows,
                )
            })
            .collect();
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
            let writer = ArrowWriter::try_new(
                f,
                table.ledger_schema(),
                Some(ledger_writer_properties(table)),
            )
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
        // Bound memory: every so many rows, flush the largest in-progress row groups while
        // over budget (measuring every writer on every write would cost more than it saves).
        self.rows_since_check += part.num_rows();
        if self.rows_since_check < CHECK_EVERY_ROWS {
            return Ok(());
        }
        self.rows_since_check = 0;
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
    ids: &IdHasher,
    canon: &Canon<'_>,
    row: usize,
    column: &'static str,
    known: &DigestMap<u128>,
    merchant: Option<u128>,
    reason: Reason,
) -> Option<Rejection> {
    let id = canon.str(column, row)?;
    match known.get(&ids.digest(id)) {
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

/// Whether a table's ledger files are partitioned by business month (the large event
/// tables) or kept in one partition per batch (registrations, stores, products and the
/// other small tables, whose timestamps reach back years).
fn monthly(table: Table) -> bool {
    matches!(
        table,
        Table::Contracts
            | Table::EscrowEvents
            | Table::WalletFlows
            | Table::Operations
            | Table::Loans
    )
}

/// `year × 12 + month0` of a business day (days since 1970-01-01, Asia/Shanghai).
fn month_key(day: i64) -> i32 {
    let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(day)));
    match date {
        Some(d) => d.year() * 12 + d.month0() as i32,
        None => 0,
    }
}

/// A 64-bit digest of each row's canonical source values (BLAKE3, truncated). Used only to
/// tell an exact re-delivery from a conflicting one for the same `event_id`.
fn row_digests(table: Table, cols: &[ArrayRef]) -> Vec<u64> {
    /// A typed view of one canonical column.
    enum View<'a> {
        Str(&'a StringArray),
        Dec(&'a arrow::array::Decimal128Array),
        I64(&'a arrow::array::Int64Array),
        Bool(&'a BooleanArray),
        Ts(&'a TimestampMillisecondArray),
        Date(&'a arrow::array::Date32Array),
        Missing,
    }
    let n = cols.first().map(|c| c.len()).unwrap_or(0);
    let views: Vec<View<'_>> = table
        .columns()
        .iter()
        .zip(cols)
        .map(|(spec, col)| {
            let view = match spec.ty {
                ColType::Id
                | ColType::Text
                | ColType::Code(_)
                | ColType::KindCode
                | ColType::Uscc => col.as_string_opt::<i32>().map(View::Str),
                ColType::Money | ColType::Ratio => {
                    col.as_primitive_opt::<Decimal128Type>().map(View::Dec)
                }
                ColType::Count => col.as_primitive_opt::<Int64Type>().map(View::I64),
                ColType::Bool => col.as_any().downcast_ref::<BooleanArray>().map(View::Bool),
                ColType::Timestamp => col
                    .as_primitive_opt::<TimestampMillisecondType>()
                    .map(View::Ts),
                ColType::Date => col.as_primitive_opt::<Date32Type>().map(View::Date),
            };
            view.unwrap_or(View::Missing)
        })
        .collect();
    // Each row's values are laid out in one buffer (a presence byte, then the value;
    // strings length-prefixed) and hashed in one call.
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(n);
    for row in 0..n {
        buf.clear();
        for (view, col) in views.iter().zip(cols) {
            if col.is_null(row) {
                buf.push(0);
                continue;
            }
            buf.push(1);
            match view {
                View::Str(a) => {
                    let v = a.value(row).as_bytes();
                    buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    buf.extend_from_slice(v);
                }
                View::Dec(a) => buf.extend_from_slice(&a.value(row).to_le_bytes()),
                View::I64(a) => buf.extend_from_slice(&a.value(row).to_le_bytes()),
                View::Bool(a) => buf.push(u8::from(a.value(row))),
                View::Ts(a) => buf.extend_from_slice(&a.value(row).to_le_bytes()),
                View::Date(a) => buf.extend_from_slice(&a.value(row).to_le_bytes()),
                View::Missing => {}
            }
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&blake3::hash(&buf).as_bytes()[..8]);
        out.push(u64::from_le_bytes(b));
    }
    out
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
