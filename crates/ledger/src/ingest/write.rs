//! Accepted rows into the ledger's partitions (by business month for event tables), on a
//! thread of their own: Parquet encoding and compression are the heaviest part of the work
//! that must follow the rows' order, so they run beside the row checks rather than after
//! them. Jobs are taken in the order they were sent, so the files are the same bytes as if
//! the checks wrote them themselves.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use super::*;

/// Input batches' accepted rows queued between the row checks and the writer thread.
const QUEUED: usize = 4;

/// Accepted rows of one input batch, to be written.
pub(super) struct Job {
    table: Table,
    cols: Vec<ArrayRef>,
    digests: Vec<u64>,
    accepted: Vec<u32>,
}

/// The batch's partition writers.
pub(super) struct Parts {
    root: PathBuf,
    id: String,
    ingested_at_ms: i64,
    writers: BTreeMap<(Table, String), PartWriter>,
    file_seq: usize,
    rows_since_check: usize,
    /// Files finished, for the manifest.
    pub(super) written: Vec<FileEntry>,
    /// Folders created, to be synced (or removed if the batch is abandoned).
    pub(super) created_dirs: Vec<PathBuf>,
}

/// The writer thread while it runs, and its writers once it has stopped.
pub(super) enum Writer {
    Running {
        tx: SyncSender<Job>,
        handle: JoinHandle<(Parts, Result<(), LedgerError>)>,
    },
    Stopped(Box<Parts>),
    /// The thread panicked: what it wrote is left to the next writer's sweep of orphans.
    Lost,
}

impl Writer {
    pub(super) fn start(root: &Path, id: &str, ingested_at_ms: i64) -> Writer {
        let mut parts = Parts {
            root: root.to_path_buf(),
            id: id.to_string(),
            ingested_at_ms,
            writers: BTreeMap::new(),
            file_seq: 0,
            rows_since_check: 0,
            written: Vec::new(),
            created_dirs: Vec::new(),
        };
        let (tx, rx) = sync_channel::<Job>(QUEUED);
        let handle = std::thread::spawn(move || {
            for job in rx.iter() {
                if let Err(e) = parts.write_accepted(job) {
                    // Dropping the receiver refuses the jobs still to come.
                    return (parts, Err(e));
                }
            }
            (parts, Ok(()))
        });
        Writer::Running { tx, handle }
    }

    /// Queues an input batch's accepted rows. The thread stops at its first error, which
    /// comes back from the next call.
    pub(super) fn write(
        &mut self,
        table: Table,
        cols: Vec<ArrayRef>,
        digests: Vec<u64>,
        accepted: Vec<u32>,
    ) -> Result<(), LedgerError> {
        if let Writer::Running { tx, .. } = self {
            let job = Job {
                table,
                cols,
                digests,
                accepted,
            };
            if tx.send(job).is_ok() {
                return Ok(());
            }
        }
        self.stop()?;
        Err(LedgerError::storage(
            Path::new(table.name()),
            "internal error: the ledger writer stopped",
        ))
    }

    /// Waits for the thread to write everything queued and takes its writers back.
    pub(super) fn stop(&mut self) -> Result<&mut Parts, LedgerError> {
        let mut result = Ok(());
        if let Writer::Running { .. } = self {
            if let Writer::Running { tx, handle } = std::mem::replace(self, Writer::Lost) {
                drop(tx);
                if let Ok((parts, r)) = handle.join() {
                    *self = Writer::Stopped(Box::new(parts));
                    result = r;
                }
            }
        }
        result?;
        match self {
            Writer::Stopped(parts) => Ok(parts),
            _ => Err(LedgerError::storage(
                Path::new("."),
                "internal error: the ledger writer failed",
            )),
        }
    }
}

impl Parts {
    fn write_accepted(&mut self, job: Job) -> Result<(), LedgerError> {
        let Job {
            table,
            cols,
            digests,
            accepted,
        } = job;
        // Keep accepted rows only: rejected rows may hold nulls in required columns. (When
        // every row is accepted, as in most batches, the columns are kept as they are.)
        let n = accepted.len();
        let mut kept: Vec<ArrayRef> = if cols.first().is_some_and(|c| c.len() == n) {
            cols
        } else {
            let idx = UInt32Array::from(accepted.to_vec());
            cols.iter()
                .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
                .collect::<Result<_, _>>()
                .map_err(|e| LedgerError::storage(&self.root, e))?
        };
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

    /// Closes and fsyncs every file, listing it for the manifest.
    pub(super) fn finish(&mut self) -> Result<(), LedgerError> {
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
                batches: BTreeMap::new(),
                first_ingested_at_ms: None,
            });
        }
        Ok(())
    }

    /// Paths of the files still open (for `abandon`); dropping the writers closes them.
    pub(super) fn close_open(&mut self) -> Vec<String> {
        std::mem::take(&mut self.writers)
            .into_values()
            .map(|w| w.rel_path)
            .collect()
    }
}

impl BatchWriter<'_> {
    /// Waits for the writer thread, closes its files and syncs every folder the batch made.
    pub(super) fn finish_writers(&mut self) -> Result<(), LedgerError> {
        let parts = self.writer.stop()?;
        parts.finish()?;
        self.written = std::mem::take(&mut parts.written);
        self.created_dirs.extend(parts.created_dirs.iter().cloned());
        for dir in &self.created_dirs {
            sync_dir(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }
}

/// Whether a table's ledger files are partitioned by business month (the large event
/// tables) or kept in one partition per batch (registrations, stores, products and the
/// other small tables, whose timestamps reach back years).
pub(super) fn monthly(table: Table) -> bool {
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
pub(super) fn month_key(day: i64) -> i32 {
    let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(day)));
    match date {
        Some(d) => d.year() * 12 + d.month0() as i32,
        None => 0,
    }
}

pub(super) fn file_digest(path: &Path) -> Result<String, LedgerError> {
    let mut hasher = blake3::Hasher::new();
    let mut f = File::open(path).map_err(|e| LedgerError::io(path, e))?;
    std::io::copy(&mut f, &mut hasher).map_err(|e| LedgerError::io(path, e))?;
    Ok(hasher.finalize().to_hex().to_string())
}

pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    use std::io::Write;
    let mut f = File::create(path).map_err(|e| LedgerError::io(path, e))?;
    f.write_all(bytes).map_err(|e| LedgerError::io(path, e))?;
    f.sync_all().map_err(|e| LedgerError::io(path, e))
}
