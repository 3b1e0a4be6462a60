//! Daily deliveries: the tail of a simulated city split into one folder per business day,
//! as the platform receives them night after night, so that `yuanxin refresh` runs on
//! realistic increments.
//!
//! Rows dated (business day of `ts`, Asia/Shanghai) from the first daily day on leave the
//! main files for `_daily/YYYY-MM-DD/<table>.parquet`; earlier rows stay. Every table is
//! split the same way, so a day's contracts arrive with that day's escrow events, and
//! ingesting the main files and then each day in order gives the ledger the whole city
//! gives. The late delivery (`_late/`) and the truth are left as they are.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchReader, UInt32Array};
use arrow::datatypes::TimestampMillisecondType;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use serde::Serialize;
use yuanxin_ledger::{writer_properties, Table};

use crate::SimError;

/// The most days a city may be split into (a quarter): each day of a table has its own
/// writer open while the table is split.
pub const MAX_DAILY_DAYS: i64 = 92;

/// What the split wrote.
#[derive(Debug, Clone, Serialize)]
pub struct DailySummary {
    /// The first daily day.
    pub from: NaiveDate,
    /// Rows per day (all tables), in date order; days without rows are absent.
    pub days: BTreeMap<NaiveDate, u64>,
    /// Rows left in the main files.
    pub kept: u64,
}

/// Splits the city in `out` (Parquet) from `from` to `end` (exclusive, the end of the
/// simulated period) into daily deliveries under `out/_daily/` (its leading underscore keeps it out of an ingest of `out` itself, like `_late/`).
pub fn split_daily(out: &Path, from: NaiveDate, end: NaiveDate) -> Result<DailySummary, SimError> {
    let days = (end - from).num_days();
    if !(1..=MAX_DAILY_DAYS).contains(&days) {
        return Err(SimError::Config(format!(
            "daily deliveries must start within the last {MAX_DAILY_DAYS} days of the period (before {end}), not on {from}"
        )));
    }
    let fail = |path: &Path, problem: String| SimError::Write {
        path: path.to_path_buf(),
        problem,
    };
    let daily = out.join("_daily");
    if daily.exists() {
        fs::remove_dir_all(&daily).map_err(|e| fail(&daily, e.to_string()))?;
    }
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let first = (from - epoch).num_days();
    let mut summary = DailySummary {
        from,
        days: BTreeMap::new(),
        kept: 0,
    };
    // For merchants, products and contracts first seen from `first` on: the day each is
    // first delivered. A row referring to one is delivered no earlier (a refund recorded
    // before its contract's row arrives waits for it), so every delivery's references
    // resolve against what came before.
    let mut born: [HashMap<String, i64>; 3] = Default::default();
    for table in Table::ALL {
        let path = out.join(format!("{}.parquet", table.name()));
        if !path.exists() {
            continue;
        }
        let key = match table {
            Table::Merchants => Some((0, "merchant_id")),
            Table::Products => Some((1, "product_id")),
            Table::Contracts => Some((2, "contract_id")),
            _ => None,
        };
        if let Some((slot, column)) = key {
            // Ids with a row from `first` on, then the first day of those.
            let mut late: HashMap<String, i64> = HashMap::new();
            each_id_day(&path, column, first, &born, &mut |id, day| {
                if day >= first {
                    late.insert(id.to_string(), i64::MAX);
                }
            })?;
            each_id_day(&path, column, first, &born, &mut |id, day| {
                if let Some(d) = late.get_mut(id) {
                    *d = (*d).min(day);
                }
            })?;
            late.retain(|_, d| *d >= first);
            born[slot] = late;
        }
        let reader = reader_of(&path)?;
        let schema = reader.schema();
        let kept_path = out.join(format!("{}.parquet.daily-tmp", table.name()));
        let writer = |p: &Path| -> Result<ArrowWriter<File>, SimError> {
            let f = File::create(p).map_err(|e| fail(p, e.to_string()))?;
            ArrowWriter::try_new(f, schema.clone(), Some(writer_properties()))
                .map_err(|e| fail(p, e.to_string()))
        };
        let mut kept = writer(&kept_path)?;
        let mut by_day: BTreeMap<i64, (PathBuf, ArrowWriter<File>)> = BTreeMap::new();
        for batch in reader {
            let batch = batch.map_err(|e| fail(&path, e.to_string()))?;
            let days = delivery_days(&batch, first, &born, &path)?;
            let mut groups: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
            for (i, day) in days.into_iter().enumerate() {
                groups.entry(day).or_default().push(i as u32);
            }
            for (day, rows) in groups {
                let part = arrow::compute::take_record_batch(&batch, &UInt32Array::from(rows))
                    .map_err(|e| fail(&path, e.to_string()))?;
                let n = part.num_rows() as u64;
                if day < first {
                    summary.kept += n;
                    kept.write(&part)
                        .map_err(|e| fail(&kept_path, e.to_string()))?;
                    continue;
                }
                let date = epoch + chrono::Days::new(u64::try_from(day).unwrap_or(0));
                *summary.days.entry(date).or_default() += n;
                let entry = match by_day.entry(day) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        let dir = daily.join(date.to_string());
                        fs::create_dir_all(&dir).map_err(|e| fail(&dir, e.to_string()))?;
                        let p = dir.join(format!("{}.parquet", table.name()));
                        let w = writer(&p)?;
                        v.insert((p, w))
                    }
                };
                entry
                    .1
                    .write(&part)
                    .map_err(|e| fail(&entry.0, e.to_string()))?;
            }
        }
        kept.close().map_err(|e| fail(&kept_path, e.to_string()))?;
        for (_, (p, w)) in by_day {
            w.close().map_err(|e| fail(&p, e.to_string()))?;
        }
        fs::rename(&kept_path, &path).map_err(|e| fail(&path, e.to_string()))?;
    }
    Ok(summary)
}

fn reader_of(path: &Path) -> Result<ParquetRecordBatchReader, SimError> {
    let file = File::open(path).map_err(|e| SimError::Write {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(64 * 1024).build())
        .map_err(|e| SimError::Write {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })
}

/// Calls `f` with the id in `column` and the delivery day of every row of a file that
/// has an id.
fn each_id_day(
    path: &Path,
    column: &str,
    first: i64,
    born: &[HashMap<String, i64>; 3],
    f: &mut dyn FnMut(&str, i64),
) -> Result<(), SimError> {
    for batch in reader_of(path)? {
        let batch = batch.map_err(|e| SimError::Write {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        let days = delivery_days(&batch, first, born, path)?;
        let Some(ids) = batch
            .column_by_name(column)
            .and_then(|c| c.as_string_opt::<i32>())
        else {
            continue;
        };
        for (i, day) in days.into_iter().enumerate() {
            if ids.is_valid(i) {
                f(ids.value(i), day);
            }
        }
    }
    Ok(())
}

/// The day each row of a batch is delivered: its own business day (before `first`, or
/// without a time, with the main files: `i64::MIN`), but no earlier than the first
/// delivery of the merchant, product and contract it refers to.
fn delivery_days(
    batch: &RecordBatch,
    first: i64,
    born: &[HashMap<String, i64>; 3],
    path: &Path,
) -> Result<Vec<i64>, SimError> {
    let ts = batch
        .column_by_name("ts")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .ok_or_else(|| SimError::Write {
            path: path.to_path_buf(),
            problem: "no millisecond ts column".into(),
        })?;
    let refs: Vec<(&HashMap<String, i64>, &arrow::array::StringArray)> =
        [("merchant_id", 0), ("product_id", 1), ("contract_id", 2)]
            .into_iter()
            .filter(|(_, slot)| !born[*slot].is_empty())
            .filter_map(|(name, slot)| {
                let ids = batch.column_by_name(name)?.as_string_opt::<i32>()?;
                Some((&born[slot], ids))
            })
            .collect();
    Ok((0..batch.num_rows())
        .map(|i| {
            let own = ts
                .is_valid(i)
                .then(|| yuanxin_domain::business_day_of_ms(ts.value(i)))
                .filter(|d| *d >= first)
                .unwrap_or(i64::MIN);
            refs.iter()
                .filter(|(_, ids)| ids.is_valid(i))
                .filter_map(|(map, ids)| map.get(ids.value(i)).copied())
                .fold(own, i64::max)
        })
        .collect())
}
