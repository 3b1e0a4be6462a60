//! The whole city: merchants simulated in chunks on all cores, written table by table as
//! Parquet (and optionally CSV), in bounded memory.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use serde::Serialize;
use yuanxin_ledger::{writer_properties, Table};

use crate::calendar::{add_months, day_of};
use crate::faults::{inject, Fault, FaultCounts};
use crate::merchant::{MerchantSim, Period, Truth};
use crate::rows::{Rows, TableRows};
use crate::SimError;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Parquet only (the default).
    Parquet,
    /// CSV only.
    Csv,
    /// Both.
    Both,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of merchants.
    pub merchants: u64,
    /// Months simulated.
    pub months: u32,
    /// Random seed: same seed, same bytes.
    pub seed: u64,
    /// First day of the first month.
    pub start: NaiveDate,
    /// Share of rows that get an injected fault (0 for a clean export).
    pub faults: f64,
    /// Output formats.
    pub format: OutputFormat,
    /// Worker threads (0: all cores). The output does not depend on it.
    pub threads: usize,
    /// Merchants per chunk: bounds memory; the output does not depend on it.
    pub chunk: u64,
}

impl SimConfig {
    /// The defaults of the demo city: 2,000 merchants over 36 months from July 2023 (when
    /// the Shenzhen plan was published), seed 2023.
    pub fn demo() -> SimConfig {
        SimConfig {
            merchants: 2000,
            months: 36,
            seed: 2023,
            start: NaiveDate::from_ymd_opt(2023, 7, 1).unwrap_or_default(),
            faults: 0.0,
            format: OutputFormat::Parquet,
            threads: 0,
            chunk: 256,
        }
    }
}

/// What a run produced; also written as `simulation.json` (without timings, so that the
/// file is as reproducible as the data).
#[derive(Debug, Clone, Serialize)]
pub struct SimSummary {
    /// Generator version.
    pub generator: &'static str,
    pub seed: u64,
    pub merchants: u64,
    pub months: u32,
    pub start: String,
    pub end: String,
    pub fault_share: f64,
    /// Rows per table in the main delivery (faulty rows included).
    pub rows: BTreeMap<&'static str, u64>,
    /// Rows per table in the late delivery (`_late/`).
    pub late_rows: BTreeMap<&'static str, u64>,
    /// Injected faults per table and kind.
    pub faults: FaultCounts,
    /// What ingesting the main delivery must report: rejections by reason.
    pub expected_rejections: BTreeMap<&'static str, u64>,
    /// ... and recognised duplicates.
    pub expected_duplicates: u64,
    /// Merchants that defaulted (any type) during the period.
    pub defaults: u64,
}

impl SimSummary {
    /// Total rows in the main delivery.
    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }
}

struct TableSink {
    table: Table,
    parquet: Option<ArrowWriter<File>>,
    csv: Option<arrow::csv::Writer<File>>,
    late: Option<ArrowWriter<File>>,
    rows: u64,
    late_rows: u64,
    /// The chunk's new rows, main and late delivery.
    fresh: Option<TableRows>,
    fresh_late: Option<TableRows>,
    /// Rows waiting for a full slice, main and late delivery.
    carry: Option<RecordBatch>,
    carry_late: Option<RecordBatch>,
}

fn io_err(path: &Path, e: impl ToString) -> SimError {
    SimError::Write {
        path: path.to_path_buf(),
        problem: e.to_string(),
    }
}

/// Where a file is written until the whole city is: every output file is created under
/// this name and renamed to its own only once all of them are complete (see
/// [`publish`]), so an interrupted run never leaves a file that looks whole.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}

/// Renames (or, with `discard`, removes) every `.partial` file directly in `dir`.
fn publish(dir: &Path, discard: bool) -> Result<(), SimError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry.map_err(|e| io_err(dir, e))?.path();
        let Some(done) = path
            .to_str()
            .and_then(|p| p.strip_suffix(".partial"))
            .map(PathBuf::from)
        else {
            continue;
        };
        if discard {
            fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        } else {
            fs::rename(&path, &done).map_err(|e| io_err(&done, e))?;
        }
    }
    Ok(())
}

fn csv_writer(path: &Path) -> Result<arrow::csv::Writer<File>, SimError> {
    let f = File::create(partial(path)).map_err(|e| io_err(path, e))?;
    Ok(arrow::csv::WriterBuilder::new()
        .with_header(true)
        .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.3f%:z".to_string())
        .build(f))
}

/// Simulates a city into `out`.
pub fn simulate(
    cfg: &SimConfig,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SimSummary, SimError> {
    if cfg.merchants == 0 || cfg.months == 0 {
        return Err(SimError::Config(
            "need at least one merchant and one month".into(),
        ));
    }
    if !(0.0..=0.5).contains(&cfg.faults) {
        return Err(SimError::Config(
            "fault share must be between 0 and 0.5".into(),
        ));
    }
    let months =
        i32::try_from(cfg.months).map_err(|_| SimError::Config("too many months".into()))?;
    let end = add_months(cfg.start, months);
    let period = Period {
        start_day: day_of(cfg.start),
        end_day: day_of(end),
        start: cfg.start,
        months,
    };
    fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let truth_dir = out.join("_truth");
    fs::create_dir_all(&truth_dir).map_err(|e| io_err(&truth_dir, e))?;
    // What an interrupted run left half-written goes.
    publish(out, true)?;
    publish(&truth_dir, true)?;
    let late_dir = out.join("_late");
    if late_dir.exists() {
        fs::remove_dir_all(&late_dir).map_err(|e| io_err(&late_dir, e))?;
    }
    let money_scale: i8 = if cfg.faults > 0.0 { 4 } else { 2 };
    let mut sinks: Vec<TableSink> = Vec::with_capacity(Table::ALL.len());
    for table in Table::ALL {
        let schema = table.source_schema(money_scale);
        let parquet = if cfg.format != OutputFormat::Csv {
            let path = out.join(format!("{}.parquet", table.name()));
            let f = File::create(partial(&path)).map_err(|e| io_err(&path, e))?;
            Some(
                ArrowWriter::try_new(f, schema, Some(writer_properties()))
                    .map_err(|e| io_err(&path, e))?,
            )
        } else {
            None
        };
        let csv = if cfg.format != OutputFormat::Parquet {
            Some(csv_writer(&out.join(format!("{}.csv", table.name())))?)
        } else {
            None
        };
        sinks.push(TableSink {
            table,
            parquet,
            csv,
            late: None,
            rows: 0,
            late_rows: 0,
            fresh: None,
            fresh_late: None,
            carry: None,
            carry_late: None,
        });
    }
    let truth_path = truth_dir.join("merchants.parquet");
    let truth_file = File::create(partial(&truth_path)).map_err(|e| io_err(&truth_path, e))?;
    let mut truth_writer =
        ArrowWriter::try_new(truth_file, truth_schema(), Some(writer_properties()))
            .map_err(|e| io_err(&truth_path, e))?;

    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cfg.threads
    };
    let chunk = cfg.chunk.max(1);
    let mut faults = FaultCounts::new();
    let mut offsets = [0u64; Table::ALL.len()];
    let mut defaults = 0u64;
    // Generation of the next chunk overlaps with encoding and writing of the current one.
    // Rows reach the writers in slices of a fixed size on a global grid, so that the
    // files' bytes do not depend on the chunk size or thread count.
    std::thread::scope(|scope| -> Result<(), SimError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Rows, Vec<Truth>)>(1);
        scope.spawn(move || {
            let mut start = 0u64;
            while start < cfg.merchants {
                let stop = (start + chunk).min(cfg.merchants);
                let (rows, truths) = simulate_chunk(cfg.seed, period, start, stop, threads);
                if tx.send((stop, rows, truths)).is_err() {
                    return;
                }
                start = stop;
            }
        });
        for (stop, mut rows, truths) in rx {
            defaults += truths.iter().filter(|t| t.default_day.is_some()).count() as u64;
            let mut late = inject(
                &mut rows,
                cfg.faults,
                cfg.seed ^ 0xFA17_5EED,
                &mut offsets,
                &mut faults,
            );
            for sink in sinks.iter_mut() {
                let t = sink.table as usize;
                sink.fresh = Some(std::mem::replace(
                    &mut rows.tables[t],
                    TableRows::new(sink.table),
                ));
                sink.fresh_late = Some(std::mem::replace(
                    &mut late.tables[t],
                    TableRows::new(sink.table),
                ));
            }
            let last = stop == cfg.merchants;
            write_slices(&mut sinks, money_scale, last, out, &late_dir)?;
            let tb = truth_batch(&truths).map_err(|e| io_err(&truth_path, e))?;
            truth_writer
                .write(&tb)
                .map_err(|e| io_err(&truth_path, e))?;
            progress(stop, cfg.merchants);
        }
        Ok(())
    })?;
    finish(
        cfg,
        out,
        end,
        sinks,
        truth_writer,
        &truth_path,
        faults,
        defaults,
    )
}

/// Rows per write: the grid on which rows reach the file writers.
const SLICE: usize = 16 * 1024;

/// Writes full slices of every table (and the rest, on the last chunk). The escrow table,
/// the largest, is encoded on one thread while the others share a second.
fn write_slices(
    sinks: &mut [TableSink],
    money_scale: i8,
    last: bool,
    out: &Path,
    late_dir: &Path,
) -> Result<(), SimError> {
    let (big, rest): (Vec<&mut TableSink>, Vec<&mut TableSink>) = sinks
        .iter_mut()
        .partition(|s| s.table == Table::EscrowEvents);
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || -> Result<(), SimError> {
            for sink in big {
                write_sink(sink, money_scale, last, out, late_dir)?;
            }
            Ok(())
        });
        let mine = rest
            .into_iter()
            .try_for_each(|sink| write_sink(sink, money_scale, last, out, late_dir));
        let theirs = handle
            .join()
            .unwrap_or_else(|_| Err(SimError::Config("writer thread panicked".into())));
        mine.and(theirs)
    })
}

fn write_sink(
    sink: &mut TableSink,
    money_scale: i8,
    last: bool,
    out: &Path,
    late_dir: &Path,
) -> Result<(), SimError> {
    let table = sink.table;
    let fresh = sink
        .fresh
        .take()
        .map(|r| r.into_batch(money_scale))
        .transpose();
    let fresh = fresh.map_err(|e| io_err(out, e))?;
    let pending = join(sink.carry.take(), fresh).map_err(|e| io_err(out, e))?;
    sink.carry = write_grid(pending, last, out, &mut |batch| {
        sink.rows += batch.num_rows() as u64;
        if let Some(w) = sink.parquet.as_mut() {
            w.write(batch).map_err(|e| io_err(out, e))?;
        }
        if let Some(w) = sink.csv.as_mut() {
            w.write(batch).map_err(|e| io_err(out, e))?;
        }
        Ok(())
    })?;
    let fresh = sink
        .fresh_late
        .take()
        .map(|r| r.into_batch(money_scale))
        .transpose();
    let fresh = fresh.map_err(|e| io_err(out, e))?;
    let pending = join(sink.carry_late.take(), fresh).map_err(|e| io_err(out, e))?;
    let late = &mut sink.late;
    let late_rows = &mut sink.late_rows;
    sink.carry_late = write_grid(pending, last, out, &mut |batch| {
        if late.is_none() {
            fs::create_dir_all(late_dir).map_err(|e| io_err(late_dir, e))?;
            let path = late_dir.join(format!("{}.parquet", table.name()));
            let f = File::create(partial(&path)).map_err(|e| io_err(&path, e))?;
            let schema = table.source_schema(money_scale);
            let w = ArrowWriter::try_new(f, schema, Some(writer_properties()))
                .map_err(|e| io_err(&path, e))?;
            *late = Some(w);
        }
        *late_rows += batch.num_rows() as u64;
        if let Some(w) = late.as_mut() {
            w.write(batch).map_err(|e| io_err(out, e))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Concatenates what was carried over with the new rows.
fn join(
    carry: Option<RecordBatch>,
    fresh: Option<RecordBatch>,
) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
    match (carry, fresh) {
        (Some(a), Some(b)) => arrow::compute::concat_batches(&a.schema(), [&a, &b]).map(Some),
        (a, b) => Ok(a.or(b)),
    }
}

/// Writes `pending` in slices of `SLICE` rows; returns the remainder (or writes it too on
/// the last chunk).
fn write_grid(
    pending: Option<RecordBatch>,
    last: bool,
    out: &Path,
    write: &mut dyn FnMut(&RecordBatch) -> Result<(), SimError>,
) -> Result<Option<RecordBatch>, SimError> {
    let Some(batch) = pending else {
        return Ok(None);
    };
    let mut offset = 0;
    let n = batch.num_rows();
    while n - offset >= SLICE || (last && offset < n) {
        let len = (n - offset).min(SLICE);
        // A copy of the slice, not a view: the Parquet writer's page splits can depend on
        // the size of the buffers behind an array, and those differ with the chunking.
        let indices = arrow::array::UInt32Array::from_iter_values(
            (offset..offset + len).filter_map(|i| u32::try_from(i).ok()),
        );
        let part =
            arrow::compute::take_record_batch(&batch, &indices).map_err(|e| io_err(out, e))?;
        write(&part)?;
        offset += len;
    }
    Ok((offset < n).then(|| batch.slice(offset, n - offset)))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    cfg: &SimConfig,
    out: &Path,
    end: NaiveDate,
    sinks: Vec<TableSink>,
    truth_writer: ArrowWriter<File>,
    truth_path: &Path,
    faults: FaultCounts,
    defaults: u64,
) -> Result<SimSummary, SimError> {
    let mut rows = BTreeMap::new();
    let mut late_rows = BTreeMap::new();
    for sink in sinks {
        let table = sink.table;
        if let Some(w) = sink.parquet {
            w.close().map_err(|e| io_err(out, e))?;
        }
        if let Some(w) = sink.csv {
            drop(w.into_inner());
        }
        if let Some(w) = sink.late {
            w.close().map_err(|e| io_err(out, e))?;
        }
        rows.insert(table.name(), sink.rows);
        if sink.late_rows > 0 {
            late_rows.insert(table.name(), sink.late_rows);
        }
    }
    truth_writer.close().map_err(|e| io_err(truth_path, e))?;
    // Every file is complete: all take their names.
    for dir in [out, &out.join("_truth"), &out.join("_late")] {
        publish(dir, false)?;
    }
    let mut expected_rejections: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut expected_duplicates = 0;
    for per_table in faults.values() {
        for (fault, n) in per_table {
            match fault.expected_reason() {
                Some(reason) => *expected_rejections.entry(reason).or_default() += n,
                None if *fault == Fault::Duplicate => expected_duplicates += n,
                None => {}
            }
        }
    }
    let summary = SimSummary {
        generator: concat!("yuanxin-simulate ", env!("CARGO_PKG_VERSION")),
        seed: cfg.seed,
        merchants: cfg.merchants,
        months: cfg.months,
        start: cfg.start.to_string(),
        end: end.to_string(),
        fault_share: cfg.faults,
        rows,
        late_rows,
        faults,
        expected_rejections,
        expected_duplicates,
        defaults,
    };
    let json_path = out.join("simulation.json");
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| io_err(&json_path, e))?;
    fs::write(partial(&json_path), json).map_err(|e| io_err(&json_path, e))?;
    publish(out, false)?;
    Ok(summary)
}

/// Simulates merchants `start..stop` on `threads` threads; rows come back in merchant order
/// whatever the threading.
fn simulate_chunk(
    seed: u64,
    period: Period,
    start: u64,
    stop: u64,
    threads: usize,
) -> (Rows, Vec<Truth>) {
    let n = stop - start;
    let per = n.div_ceil(threads.max(1) as u64).max(1);
    let ranges: Vec<(u64, u64)> = (0..threads as u64)
        .map(|t| (start + t * per, (start + (t + 1) * per).min(stop)))
        .filter(|(a, b)| a < b)
        .collect();
    let parts: Vec<(Rows, Vec<Truth>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(a, b)| {
                scope.spawn(move || {
                    let mut rows = Rows::default();
                    let mut truths = Vec::with_capacity((b - a) as usize);
                    for idx in a..b {
                        truths.extend(MerchantSim::new(seed, idx, period, &mut rows).run());
                    }
                    (rows, truths)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut rows = Rows::default();
    let mut truths = Vec::with_capacity(n as usize);
    for (r, t) in parts {
        rows.append(r);
        truths.extend(t);
    }
    (rows, truths)
}

/// Schema of `_truth/merchants.parquet`: the hidden state, for checking realism and models.
pub fn truth_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("merchant_id", DataType::Utf8, false),
        Field::new("industry", DataType::Utf8, false),
        Field::new("district", DataType::Utf8, false),
        Field::new("entrant", DataType::Boolean, false),
        Field::new("health0", DataType::Float64, false),
        Field::new("distress_start", DataType::Date32, true),
        Field::new("episode", DataType::Utf8, false),
        Field::new("cured", DataType::Boolean, false),
        Field::new("default_on", DataType::Date32, true),
        Field::new("default_type", DataType::Utf8, false),
        Field::new("harm_on", DataType::Date32, true),
        Field::new("closed_on", DataType::Date32, true),
        Field::new("orderly_closure", DataType::Boolean, false),
        Field::new("unrecovered_fen", DataType::Int64, false),
        Field::new("had_loan", DataType::Boolean, false),
    ]))
}

fn truth_batch(truths: &[Truth]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            truths.iter().map(|t| t.merchant_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            truths.iter().map(|t| t.industry.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            truths.iter().map(|t| t.district.as_str()),
        )),
        Arc::new(BooleanArray::from_iter(
            truths.iter().map(|t| Some(t.entrant)),
        )),
        Arc::new(Float64Array::from_iter_values(
            truths.iter().map(|t| t.health0),
        )),
        Arc::new(Date32Array::from_iter(
            truths.iter().map(|t| t.distress_start),
        )),
        Arc::new(StringArray::from_iter_values(
            truths.iter().map(|t| t.episode),
        )),
        Arc::new(BooleanArray::from_iter(
            truths.iter().map(|t| Some(t.cured)),
        )),
        Arc::new(Date32Array::from_iter(truths.iter().map(|t| t.default_day))),
        Arc::new(StringArray::from_iter_values(
            truths.iter().map(|t| t.default_type),
        )),
        Arc::new(Date32Array::from_iter(truths.iter().map(|t| t.harm_day))),
        Arc::new(Date32Array::from_iter(truths.iter().map(|t| t.closed_day))),
        Arc::new(BooleanArray::from_iter(
            truths.iter().map(|t| Some(t.orderly_closure)),
        )),
        Arc::new(Int64Array::from_iter_values(
            truths.iter().map(|t| t.unrecovered_fen),
        )),
        Arc::new(BooleanArray::from_iter(
            truths.iter().map(|t| Some(t.had_loan)),
        )),
    ];
    RecordBatch::try_new(truth_schema(), cols)
}

/// Paths of a simulation's outputs.
pub fn truth_path(out: &Path) -> PathBuf {
    out.join("_truth").join("merchants.parquet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_take_their_names_only_when_published_and_leftovers_go() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("loans.parquet");
        fs::write(partial(&done), b"half").unwrap();
        publish(dir.path(), true).unwrap();
        assert!(
            !partial(&done).exists() && !done.exists(),
            "a leftover is removed"
        );
        fs::write(partial(&done), b"whole").unwrap();
        fs::write(dir.path().join("keep.csv"), b"x").unwrap();
        publish(dir.path(), false).unwrap();
        assert_eq!(fs::read(&done).unwrap(), b"whole");
        assert!(!partial(&done).exists());
        assert!(dir.path().join("keep.csv").exists());
    }
}
