//! Helpers shared by the end-to-end tests: run the real `yuanxin` binary and read the
//! Parquet files it writes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type, TimestampMillisecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_yuanxin"))
}

/// Runs `yuanxin` with arguments; returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run yuanxin")
}

/// Runs `yuanxin` and insists on success.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "yuanxin {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The repository's root (its `data` and `models` hold the policy, the catalogue and the
/// shipped champion).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The arguments of `yuanxin report monthly` on `ledger` into `out` with the repository's
/// policy, catalogue and champion, then `extra` (the month, `--no-pdf` …).
fn monthly_report_args(ledger: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let (data, models) = (repo().join("data"), repo().join("models"));
    let mut args: Vec<String> = ["report", "monthly", "--ledger"].map(String::from).to_vec();
    args.push(ledger.display().to_string());
    args.extend(["--data".into(), data.display().to_string()]);
    args.extend(["--models".into(), models.display().to_string()]);
    args.extend(["--out".into(), out.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `yuanxin report monthly` ([`monthly_report_args`]); returns its output.
pub fn monthly_report(ledger: &Path, out: &Path, extra: &[&str]) -> Output {
    let args = monthly_report_args(ledger, out, extra);
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// [`monthly_report`], insisting on success; returns its standard output.
pub fn monthly_report_ok(ledger: &Path, out: &Path, extra: &[&str]) -> String {
    let args = monthly_report_args(ledger, out, extra);
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Simulates a city into `dir` and returns its `simulation.json`.
pub fn simulate(
    dir: &Path,
    merchants: u64,
    months: u32,
    seed: u64,
    extra: &[&str],
) -> serde_json::Value {
    let d = dir.to_str().unwrap();
    let m = merchants.to_string();
    let mo = months.to_string();
    let s = seed.to_string();
    let mut args = vec![
        "simulate",
        "--merchants",
        &m,
        "--months",
        &mo,
        "--seed",
        &s,
        "--out",
        d,
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
    serde_json::from_slice(&std::fs::read(dir.join("simulation.json")).unwrap()).unwrap()
}

/// Reads all batches of a Parquet file.
pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Every row of a Parquet file, as one batch.
pub fn read_whole(path: &Path) -> RecordBatch {
    let batches = read_parquet(path);
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// Column accessors by name.
pub fn strs(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(name).unwrap().as_string::<i32>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
        .collect()
}

pub fn ts(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let a = b
        .column_by_name(name)
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

pub fn dates(b: &RecordBatch, name: &str) -> Vec<Option<i32>> {
    let a = b.column_by_name(name).unwrap().as_primitive::<Date32Type>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

pub fn ints(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let a = b.column_by_name(name).unwrap().as_primitive::<Int64Type>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

pub fn bools(b: &RecordBatch, name: &str) -> Vec<Option<bool>> {
    let a = b.column_by_name(name).unwrap().as_boolean();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

/// Money as fen (assumes scale 2).
pub fn fen(b: &RecordBatch, name: &str) -> Vec<Option<i128>> {
    let a = b
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Decimal128Type>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

/// Business day number (Asia/Shanghai) of an instant in ms.
pub fn day_of_ms(ms: i64) -> i32 {
    ((ms + 8 * 3_600_000).div_euclid(86_400_000)) as i32
}

/// Month index (year × 12 + month0) of a day number.
pub fn month_of_day(day: i32) -> i32 {
    use chrono::Datelike;
    let d =
        chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(day as i64);
    d.year() * 12 + d.month0() as i32
}

/// Area under the ROC curve of `scores` for binary `labels` (ties count half).
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].partial_cmp(&scores[b]).unwrap());
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    let sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    (sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}
pub mod service;
