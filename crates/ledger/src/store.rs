//! The ledger's on-disk layout. Only this module knows it:
//!
//! ```text
//! LEDGER/
//!   manifest.json                      the committed state (the only source of truth)
//!   .lock                              held by the one process ingesting, with its pid
//!   data/<table>/month=YYYY-MM/<batch>-<n>.parquet   (event tables; small tables: month=all)
//!   batches/<batch>/report.json        what the batch received and what became of it
//!   batches/<batch>/quarantine.parquet rejected rows with their reasons
//!   index/<table>/<batch>-<n>.run      the duplicate index: sorted runs of event-id digests
//! ```
//!
//! A batch writes new files only, never rewriting a committed one, then commits by
//! atomically replacing `manifest.json` (write a temporary file, fsync, rename, fsync the
//! directory). Readers see only files listed in the manifest, so a batch killed at any
//! point before the rename leaves the ledger exactly as it was; its stray files are removed
//! by the next writer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::schema::{ColType, Table, BATCH_COL, INGESTED_AT_COL};

/// Version of the manifest format; bumped on incompatible changes.
pub const MANIFEST_FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const LOCK: &str = ".lock";

/// Parquet settings shared by every file Yuanxin writes: zstd level 1 (small and fast),
/// row groups of at most 128 Ki rows (bounded memory for writers and readers), and no
/// dictionary encoding: measured on the simulated city, zstd alone gives files as small,
/// while dictionaries cost a third of ingestion's time and memory (BENCHMARKS.md).
pub fn writer_properties() -> WriterProperties {
    base_properties().build()
}

fn base_properties() -> parquet::file::properties::WriterPropertiesBuilder {
    let level = ZstdLevel::try_new(1).unwrap_or_default();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_dictionary_enabled(false)
}

/// The writer settings of a ledger table: [`writer_properties`], plus dictionary encoding
/// for its low-cardinality text columns (`merchant_id`, code lists, `_batch`). A file holds
/// rows of a few thousand merchants at most per row group and a handful of codes, so these
/// dictionaries stay small; readers can then take such a column as integer keys into a
/// short list instead of one string per row ([`FileReader::read_row_group`]).
pub fn ledger_writer_properties(table: Table) -> WriterProperties {
    let mut props = base_properties();
    for name in dictionary_columns(table) {
        props = props.set_column_dictionary_enabled(ColumnPath::from(name), true);
    }
    props.build()
}

/// The ledger columns of a table stored dictionary-encoded.
fn dictionary_columns(table: Table) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = table
        .columns()
        .iter()
        .filter(|c| c.name == "merchant_id" || matches!(c.ty, ColType::Code(_) | ColType::KindCode))
        .map(|c| c.name)
        .collect();
    names.push(BATCH_COL);
    names
}

/// One committed data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Table name.
    pub table: String,
    /// Business month of the rows' `ts` (YYYY-MM), or `all` for the small tables kept in
    /// one partition per batch.
    pub month: String,
    /// Path relative to the ledger root.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Batch that wrote it.
    pub batch: String,
    /// When that batch was committed, in ms since the epoch (its knowledge time). For a
    /// compacted file, the latest knowledge time among its rows.
    pub ingested_at_ms: i64,
    /// For a compacted file (rows of several batches, `batch` naming the compaction): rows
    /// per batch. Empty for a file a batch wrote, all of whose rows are `batch`'s.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub batches: BTreeMap<String, u64>,
    /// For a compacted file: the earliest knowledge time among its rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ingested_at_ms: Option<i64>,
}

impl FileEntry {
    /// Whether any of its rows were known at `known_at_ms`.
    pub fn known_at(&self, known_at_ms: i64) -> bool {
        self.first_ingested_at_ms.unwrap_or(self.ingested_at_ms) <= known_at_ms
    }

    /// The knowledge time its rows must be filtered by (on `_ingested_at`) to read it as
    /// known at `known_at_ms`: only a compacted file can be partly known.
    pub fn partly_known(&self, known_at_ms: Option<i64>) -> Option<i64> {
        known_at_ms.filter(|k| self.ingested_at_ms > *k)
    }

    /// Its rows by batch.
    pub fn rows_by_batch(&self) -> Vec<(&str, u64)> {
        if self.batches.is_empty() {
            vec![(self.batch.as_str(), self.rows)]
        } else {
            self.batches.iter().map(|(b, n)| (b.as_str(), *n)).collect()
        }
    }
}

/// A data file replaced by a compaction, kept until no reader can still be reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredFile {
    /// Path relative to the ledger root.
    pub path: String,
    /// When the compaction that replaced it committed (ms since the epoch).
    pub retired_at_ms: i64,
}

/// One ingestion batch, committed or a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEntry {
    /// Batch id (`b000001`, ...).
    pub id: String,
    /// Knowledge time, RFC 3339 in +08:00.
    pub ingested_at: String,
    /// Knowledge time in ms since the epoch.
    pub ingested_at_ms: i64,
    /// Rows received.
    pub rows: u64,
    /// Rows accepted into the ledger.
    pub accepted: u64,
    /// Rows rejected to quarantine.
    pub rejected: u64,
    /// Rows recognised as duplicates of rows already accepted.
    pub duplicates: u64,
    /// Input files with their BLAKE3 digests.
    pub inputs: Vec<InputEntry>,
}

/// One input file of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputEntry {
    /// Path as given.
    pub path: String,
    /// Table it fed.
    pub table: String,
    /// BLAKE3 digest of the file's bytes.
    pub blake3: String,
}

/// The committed state of a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// Every batch, in commit order.
    pub batches: Vec<BatchEntry>,
    /// Every data file, in commit order.
    pub files: Vec<FileEntry>,
    /// The duplicate index's runs (absent in ledgers written before it existed, whose
    /// index is then built once, by the next batch that needs it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index: Vec<IndexRun>,
    /// Compactions committed (they name their files `c000001-…`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compactions: u64,
    /// Files compactions replaced, not yet removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredFile>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One committed run of the duplicate index: the `event_id` digests (with row digests) of
/// some of a table's rows. A table's runs hold disjoint keys, and together exactly as many
/// keys as the table has rows; a ledger whose runs do not add up has its index rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRun {
    /// Table name.
    pub table: String,
    /// Path relative to the ledger root.
    pub path: String,
    /// Keys in the run.
    pub keys: u64,
    /// Batch that wrote it.
    pub batch: String,
}

/// The partition name of reference tables, which are not split by business month.
pub(crate) const UNDATED: &str = "all";

/// A read-only view of a committed ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    root: PathBuf,
    manifest: Manifest,
}

impl Ledger {
    /// Opens a ledger. A folder without a manifest is an empty ledger.
    pub fn open(root: &Path) -> Result<Ledger, LedgerError> {
        let manifest = read_manifest(root)?;
        Ok(Ledger {
            root: root.to_path_buf(),
            manifest,
        })
    }

    /// The manifest file of a ledger at `root`: it changes with every committed batch, so
    /// watching it is watching the ledger.
    pub fn manifest_path(root: &Path) -> PathBuf {
        root.join(MANIFEST)
    }

    /// The ledger's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The committed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Committed files of a table, optionally only those known at `known_at_ms` (ingested
    /// at or before it), in commit order.
    pub fn files(&self, table: Table, known_at_ms: Option<i64>) -> Vec<&FileEntry> {
        self.manifest
            .files
            .iter()
            .filter(|f| f.table == table.name())
            .filter(|f| known_at_ms.is_none_or(|k| f.known_at(k)))
            .collect()
    }

    /// The latest business month (`YYYY-MM`) holding events, if any: the partitions of
    /// reference tables, which are not split by month, do not count.
    pub fn last_event_month(&self) -> Option<&str> {
        self.manifest
            .files
            .iter()
            .filter(|f| f.month != UNDATED)
            .map(|f| f.month.as_str())
            .max()
    }

    /// Rows per table.
    pub fn row_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts: BTreeMap<&'static str, u64> =
            Table::ALL.iter().map(|t| (t.name(), 0)).collect();
        for f in &self.manifest.files {
            if let Some(t) = Table::from_name(&f.table) {
                *counts.entry(t.name()).or_default() += f.rows;
            }
        }
        counts
    }

    /// Reads every committed row of a table (optionally as known at a time), batch by batch,
    /// optionally only some columns.
    pub fn scan(
        &self,
        table: Table,
        known_at_ms: Option<i64>,
        columns: Option<&[&str]>,
    ) -> Result<Vec<RecordBatch>, LedgerError> {
        let mut out = Vec::new();
        for f in self.files(table, known_at_ms) {
            self.scan_file_as_of(f, known_at_ms, columns, &mut |b| {
                out.push(b);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Streams one committed file's batches into `sink`.
    pub fn scan_file(
        &self,
        file: &FileEntry,
        columns: Option<&[&str]>,
        sink: &mut dyn FnMut(RecordBatch) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        self.scan_file_as_of(file, None, columns, sink)
    }

    /// Streams the rows of one committed file that were known at `known_at_ms` (all of
    /// them if `None`) into `sink`.
    pub fn scan_file_as_of(
        &self,
        file: &FileEntry,
        known_at_ms: Option<i64>,
        columns: Option<&[&str]>,
        sink: &mut dyn FnMut(RecordBatch) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let path = self.root.join(&file.path);
        let cutoff = file.partly_known(known_at_ms);
        // A partly known file is read with its knowledge times, to filter by.
        let extra = cutoff.is_some() && columns.is_some_and(|c| !c.contains(&INGESTED_AT_COL));
        let with_time: Vec<&str>;
        let columns = match columns {
            Some(cols) if extra => {
                with_time = cols.iter().copied().chain([INGESTED_AT_COL]).collect();
                Some(&with_time[..])
            }
            other => other,
        };
        let handle = File::open(&path).map_err(|e| LedgerError::io(&path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(handle)
            .map_err(|e| LedgerError::storage(&path, e))?;
        let builder = match columns {
            Some(cols) => {
                let schema = builder.parquet_schema();
                let indices: Vec<usize> = cols
                    .iter()
                    .filter_map(|name| schema.columns().iter().position(|c| c.name() == *name))
                    .collect();
                let mask = parquet::arrow::ProjectionMask::leaves(schema, indices);
                builder.with_projection(mask)
            }
            None => builder,
        };
        let reader = builder
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| LedgerError::storage(&path, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| LedgerError::storage(&path, e))?;
            match cutoff {
                Some(k) => sink(known_rows(batch, k, extra, &path)?)?,
                None => sink(batch)?,
            }
        }
        Ok(())
    }
}

/// The rows of `batch` known at `known_at_ms` (by `_ingested_at`), without that column if
/// it was read only to filter by.
fn known_rows(
    batch: RecordBatch,
    known_at_ms: i64,
    drop_time: bool,
    path: &Path,
) -> Result<RecordBatch, LedgerError> {
    let at = batch
        .schema()
        .index_of(INGESTED_AT_COL)
        .map_err(|e| LedgerError::storage(path, e))?;
    let times = batch
        .column(at)
        .as_primitive_opt::<arrow::datatypes::TimestampMillisecondType>()
        .ok_or_else(|| LedgerError::storage(path, "_ingested_at has the wrong type"))?;
    let keep: arrow::array::BooleanArray = times
        .iter()
        .map(|t| Some(t.is_some_and(|t| t <= known_at_ms)))
        .collect();
    let mut kept = arrow::compute::filter_record_batch(&batch, &keep)
        .map_err(|e| LedgerError::storage(path, e))?;
    if drop_time {
        kept.remove_column(at);
    }
    Ok(kept)
}

/// One committed file, opened for reading with its footer parsed once, so that a reader
/// can take its row groups one at a time (as the profile loader does, merchant range by
/// merchant range) without parsing the footer again.
#[derive(Debug)]
pub struct FileReader {
    path: PathBuf,
    file: File,
    /// The file's metadata as stored.
    plain: ArrowReaderMetadata,
    /// The same, with text columns that are dictionary-encoded in every row group read as
    /// Arrow dictionaries (`None` if there are none).
    dictionary: Option<ArrowReaderMetadata>,
    /// Index of `merchant_id` among the file's columns, when it has one.
    merchant_column: Option<usize>,
    /// For a compacted file read as known at a time it was only partly known: that time
    /// (rows are filtered by `_ingested_at`).
    cutoff: Option<i64>,
}

impl Ledger {
    /// Opens one committed file for reading by row group.
    pub fn open_file(&self, file: &FileEntry) -> Result<FileReader, LedgerError> {
        self.open_file_as_of(file, None)
    }

    /// Opens one committed file for reading by row group, only its rows known at
    /// `known_at_ms` (all of them if `None`).
    pub fn open_file_as_of(
        &self,
        file: &FileEntry,
        known_at_ms: Option<i64>,
    ) -> Result<FileReader, LedgerError> {
        let path = self.root.join(&file.path);
        let handle = File::open(&path).map_err(|e| LedgerError::io(&path, e))?;
        let plain = ArrowReaderMetadata::load(&handle, ArrowReaderOptions::new())
            .map_err(|e| LedgerError::storage(&path, e))?;
        let meta = plain.metadata();
        let columns = meta.file_metadata().schema_descr().columns();
        let merchant_column = columns.iter().position(|c| c.name() == "merchant_id");
        let encoded = |i: usize| {
            meta.row_groups()
                .iter()
                .all(|rg| rg.column(i).dictionary_page_offset().is_some())
        };
        let fields: Vec<Field> = plain
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let i = columns.iter().position(|c| c.name() == f.name());
                match (f.data_type(), i) {
                    (DataType::Utf8, Some(i)) if meta.num_row_groups() > 0 && encoded(i) => {
                        Field::new(
                            f.name(),
                            DataType::Dictionary(
                                Box::new(DataType::Int32),
                                Box::new(DataType::Utf8),
                            ),
                            f.is_nullable(),
                        )
                    }
                    _ => f.as_ref().clone(),
                }
            })
            .collect();
        let dictionary = if fields
            .iter()
            .zip(plain.schema().fields())
            .any(|(a, b)| a != b.as_ref())
        {
            let schema = Arc::new(Schema::new_with_metadata(
                fields,
                plain.schema().metadata().clone(),
            ));
            Some(
                ArrowReaderMetadata::try_new(
                    Arc::clone(plain.metadata()),
                    ArrowReaderOptions::new().with_schema(schema),
                )
                .map_err(|e| LedgerError::storage(&path, e))?,
            )
        } else {
            None
        };
        Ok(FileReader {
            path,
            file: handle,
            plain,
            dictionary,
            merchant_column,
            cutoff: file.partly_known(known_at_ms),
        })
    }
}

impl FileReader {
    /// Row groups in the file.
    pub fn row_groups(&self) -> usize {
        self.plain.metadata().num_row_groups()
    }

    /// Rows in a row group.
    pub fn rows_in(&self, row_group: usize) -> usize {
        self.plain
            .metadata()
            .row_groups()
            .get(row_group)
            .map_or(0, |rg| usize::try_from(rg.num_rows()).unwrap_or(0))
    }

    /// The least and greatest `merchant_id` in a row group (bytewise, as `str` orders),
    /// from its statistics; `None` when they were not recorded, in which case the row
    /// group may hold any merchant.
    pub fn merchant_range(&self, row_group: usize) -> Option<(&[u8], &[u8])> {
        let rg = self.plain.metadata().row_groups().get(row_group)?;
        let stats = rg.column(self.merchant_column?).statistics()?;
        Some((stats.min_bytes_opt()?, stats.max_bytes_opt()?))
    }

    /// The latest `ts` in the file (ms since the epoch), from its row groups' statistics;
    /// `None` if the file has no `ts` column or a row group lacks them.
    pub fn max_ts_ms(&self) -> Result<Option<i64>, LedgerError> {
        if self.cutoff.is_some() {
            // Statistics cover rows not known yet: the known rows' own `ts` decide.
            let mut latest: Option<i64> = None;
            for rg in 0..self.row_groups() {
                let batch = self.read_row_group(rg, &["ts"])?;
                let ts = batch.column_by_name("ts").and_then(|c| {
                    c.as_primitive_opt::<arrow::datatypes::TimestampMillisecondType>()
                });
                if let Some(max) = ts.and_then(arrow::compute::max) {
                    latest = Some(latest.map_or(max, |l| l.max(max)));
                }
            }
            return Ok(latest);
        }
        Ok(self.max_ts_from_statistics())
    }

    fn max_ts_from_statistics(&self) -> Option<i64> {
        let meta = self.plain.metadata();
        let column = meta
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == "ts")?;
        let mut latest: Option<i64> = None;
        for rg in meta.row_groups() {
            let max = match rg.column(column).statistics()? {
                parquet::file::statistics::Statistics::Int64(s) => *s.max_opt()?,
                _ => return None,
            };
            latest = Some(latest.map_or(max, |l| l.max(max)));
        }
        latest
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads one row group whole, every column as stored (text as `Utf8`, whatever its
    /// encoding on disk) and every row, known or not: for rewriting the file.
    pub(crate) fn read_row_group_as_stored(
        &self,
        row_group: usize,
    ) -> Result<RecordBatch, LedgerError> {
        self.read(&self.plain, row_group, &|_| None)
    }

    /// One row group read with `meta`, the leaves `mask` picks from the file's Parquet
    /// schema (all of them for `None`), as one batch.
    fn read(
        &self,
        meta: &ArrowReaderMetadata,
        row_group: usize,
        mask: &dyn Fn(
            &parquet::schema::types::SchemaDescriptor,
        ) -> Option<parquet::arrow::ProjectionMask>,
    ) -> Result<RecordBatch, LedgerError> {
        let handle = self
            .file
            .try_clone()
            .map_err(|e| LedgerError::io(&self.path, e))?;
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, meta.clone());
        if let Some(mask) = mask(builder.parquet_schema()) {
            builder = builder.with_projection(mask);
        }
        let reader = builder
            .with_row_groups(vec![row_group])
            .with_batch_size(self.rows_in(row_group).max(1))
            .build()
            .map_err(|e| LedgerError::storage(&self.path, e))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LedgerError::storage(&self.path, e))?;
        arrow::compute::concat_batches(&schema, &batches)
            .map_err(|e| LedgerError::storage(&self.path, e))
    }

    /// Reads one row group, only the named columns (names the file lacks are skipped), as
    /// one batch. Text columns stored dictionary-encoded come as `Dictionary(Int32, Utf8)`
    /// arrays; readers must accept both that and `Utf8`.
    pub fn read_row_group(
        &self,
        row_group: usize,
        columns: &[&str],
    ) -> Result<RecordBatch, LedgerError> {
        let meta = self.dictionary.as_ref().unwrap_or(&self.plain);
        let extra = self.cutoff.is_some() && !columns.contains(&INGESTED_AT_COL);
        let batch = self.read(meta, row_group, &|schema| {
            let indices: Vec<usize> = columns
                .iter()
                .chain(extra.then_some(&INGESTED_AT_COL))
                .filter_map(|name| schema.columns().iter().position(|c| c.name() == *name))
                .collect();
            Some(parquet::arrow::ProjectionMask::leaves(schema, indices))
        })?;
        match self.cutoff {
            Some(k) => known_rows(batch, k, extra, &self.path),
            None => Ok(batch),
        }
    }
}

pub(crate) fn read_manifest(root: &Path) -> Result<Manifest, LedgerError> {
    let path = root.join(MANIFEST);
    match fs::read(&path) {
        Ok(bytes) => {
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| LedgerError::CorruptManifest {
                    path: path.clone(),
                    problem: e.to_string(),
                })?;
            if manifest.format != MANIFEST_FORMAT {
                return Err(LedgerError::CorruptManifest {
                    path,
                    problem: format!(
                        "format {} is not the supported format {MANIFEST_FORMAT}",
                        manifest.format
                    ),
                });
            }
            Ok(manifest)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
            format: MANIFEST_FORMAT,
            ..Manifest::default()
        }),
        Err(e) => Err(LedgerError::io(path, e)),
    }
}

/// Atomically replaces the manifest: temporary file, fsync, rename, fsync of the folder.
pub(crate) fn commit_manifest(root: &Path, manifest: &Manifest) -> Result<(), LedgerError> {
    let tmp = root.join("manifest.json.tmp");
    let bytes = serde_json::to_vec_pretty(manifest).map_err(|e| LedgerError::storage(&tmp, e))?;
    {
        let mut f = File::create(&tmp).map_err(|e| LedgerError::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| LedgerError::io(&tmp, e))?;
        f.sync_all().map_err(|e| LedgerError::io(&tmp, e))?;
    }
    let target = root.join(MANIFEST);
    fs::rename(&tmp, &target).map_err(|e| LedgerError::io(&target, e))?;
    sync_dir(root)
}

/// Flushes a folder's entries (new or renamed files) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LedgerError::io(dir, e))
}

/// Path of a new data file, relative to the root.
pub(crate) fn data_file_path(table: Table, month: &str, batch: &str, n: usize) -> String {
    format!("data/{}/month={month}/{batch}-{n:04}.parquet", table.name())
}

/// Path of a new run of a table's duplicate index, relative to the root.
pub(crate) fn index_run_path(table: Table, batch: &str, n: usize) -> String {
    format!("index/{}/{batch}-{n:04}.run", table.name())
}

/// Folder of a batch's report and quarantine, relative to the root.
pub(crate) fn batch_dir(batch: &str) -> String {
    format!("batches/{batch}")
}

/// Removes files that no committed batch owns: leftovers of a batch that was killed before
/// its commit. Only called while holding the lock.
pub(crate) fn remove_orphans(root: &Path, manifest: &Manifest) -> Result<usize, LedgerError> {
    let committed_files: BTreeSet<PathBuf> = manifest
        .files
        .iter()
        .map(|f| &f.path)
        .chain(manifest.index.iter().map(|r| &r.path))
        .chain(manifest.retired.iter().map(|r| &r.path))
        .map(|p| root.join(p))
        .collect();
    let committed_batches: BTreeSet<PathBuf> = manifest
        .batches
        .iter()
        .map(|b| root.join(batch_dir(&b.id)))
        .collect();
    let mut removed = 0;
    let mut stack: Vec<PathBuf> = ["data", "index"]
        .iter()
        .map(|d| root.join(d))
        .filter(|d| d.is_dir())
        .collect();
    {
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).map_err(|e| LedgerError::io(&dir, e))? {
                let path = entry.map_err(|e| LedgerError::io(&dir, e))?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if !committed_files.contains(&path) {
                    fs::remove_file(&path).map_err(|e| LedgerError::io(&path, e))?;
                    removed += 1;
                }
            }
        }
    }
    let batches = root.join("batches");
    if batches.is_dir() {
        for entry in fs::read_dir(&batches).map_err(|e| LedgerError::io(&batches, e))? {
            let path = entry.map_err(|e| LedgerError::io(&batches, e))?.path();
            if !committed_batches.contains(&path) {
                fs::remove_dir_all(&path).map_err(|e| LedgerError::io(&path, e))?;
                removed += 1;
            }
        }
    }
    let tmp = root.join("manifest.json.tmp");
    if tmp.exists() {
        fs::remove_file(&tmp).map_err(|e| LedgerError::io(&tmp, e))?;
    }
    Ok(removed)
}

/// The writer's lock: a file created exclusively, holding our pid, removed on drop. A lock
/// left by a process that no longer exists (killed) is taken over.
#[derive(Debug)]
pub(crate) struct LockGuard {
    path: PathBuf,
}

impl LockGuard {
    pub(crate) fn acquire(root: &Path) -> Result<LockGuard, LedgerError> {
        fs::create_dir_all(root).map_err(|e| LedgerError::io(root, e))?;
        let path = root.join(LOCK);
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(std::process::id().to_string().as_bytes())
                        .map_err(|e| LedgerError::io(&path, e))?;
                    return Ok(LockGuard { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = fs::read_to_string(&path).unwrap_or_default();
                    let pid = pid.trim().to_string();
                    if process_is_gone(&pid) {
                        fs::remove_file(&path).map_err(|e| LedgerError::io(&path, e))?;
                        continue;
                    }
                    return Err(LedgerError::Locked {
                        path: root.to_path_buf(),
                        pid,
                    });
                }
                Err(e) => return Err(LedgerError::io(&path, e)),
            }
        }
        Err(LedgerError::Locked {
            path: root.to_path_buf(),
            pid: "unknown".into(),
        })
    }
}

/// True only when we can tell that the pid is not a live process (Linux `/proc`).
fn process_is_gone(pid: &str) -> bool {
    let Ok(n) = pid.parse::<u32>() else {
        // An empty or garbled lock file: the writer died between create and write.
        return true;
    };
    if n == std::process::id() {
        return false;
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return false;
    }
    match fs::read_to_string(proc.join(n.to_string()).join("stat")) {
        // A zombie (state Z) is dead for our purposes.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => true,
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
