//! The nightly refresh's output: every merchant's standing — score, PD, grade, standing
//! offer and early-warning alerts — as one versioned snapshot, compared with the one
//! before it.
//!
//! ```text
//! SNAPSHOTS/
//!   CURRENT                       the name of the latest complete snapshot
//!   000001-2026-06-30/standing.parquet   one row per merchant
//!   000001-2026-06-30/report.json        counts, and what changed since the one before
//! ```
//!
//! A snapshot is written into a temporary folder, fsynced, renamed into place, and only
//! then named in `CURRENT` (itself replaced by a rename), so a reader of `CURRENT` never
//! sees a half-written snapshot, and a killed refresh leaves the previous one current.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use yuanxin_decision::{LastSeen, LoanRequest, Outcome};

use crate::served::{Served, Standing};
use crate::EngineError;

/// The request a standing offer answers: 100,000 yuan of working capital over 12 months,
/// a typical prepaid merchant's ask. The offer is what the merchant would be granted for
/// it today (possibly less than asked), at the cheapest product's price.
pub fn standard_request() -> LoanRequest {
    LoanRequest {
        amount: Decimal::new(100_000, 0),
        term_months: 12,
        purpose: "working_capital".into(),
        product: None,
    }
}

/// What a snapshot holds, in numbers, and what changed since the previous one.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    /// Folder name (`000001-2026-06-30`).
    pub snapshot: String,
    /// Profile date.
    pub as_of: Option<NaiveDate>,
    /// Model that scored it.
    pub model_id: String,
    /// Merchants with a profile.
    pub merchants: u64,
    /// Of them: trading and graded, closed, and unscorable.
    pub graded: u64,
    pub closed: u64,
    pub unscorable: u64,
    /// Graded merchants by grade.
    pub by_grade: BTreeMap<String, u64>,
    /// Standing offers: approved for the standard request, and the lines' total (yuan).
    pub offers: u64,
    pub offered_total: Decimal,
    /// Alerts by rule.
    pub alerts: BTreeMap<String, u64>,
    /// Against the previous snapshot, if there was one.
    pub changes: Option<Changes>,
}

/// What moved since the previous snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Changes {
    /// The previous snapshot.
    pub previous: String,
    /// Merchants graded in both: better, worse, same grade.
    pub upgraded: u64,
    pub downgraded: u64,
    pub unchanged: u64,
    /// Merchants new to this snapshot.
    pub new_merchants: u64,
    /// Alerts a merchant did not have in the previous snapshot, by rule.
    pub new_alerts: BTreeMap<String, u64>,
}

/// One merchant's row of a snapshot.
struct Row {
    id: String,
    as_of: NaiveDate,
    status: &'static str,
    score: Option<i64>,
    pd: Option<f64>,
    grade: Option<String>,
    outcome: Option<&'static str>,
    line: Option<Decimal>,
    product: Option<String>,
    rate: Option<Decimal>,
    alerts: Vec<&'static str>,
}

/// Writes the standing of every merchant `served` holds as the next snapshot under
/// `root`, and makes it current.
pub fn write_snapshot(served: &Served, root: &Path) -> Result<SnapshotReport, EngineError> {
    write_snapshot_with_progress(served, root, &mut |_, _| {})
}

/// [`write_snapshot`], telling `progress` how many merchants are done out of how many.
pub fn write_snapshot_with_progress(
    served: &Served,
    root: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SnapshotReport, EngineError> {
    let io = |path: &Path, e: std::io::Error| EngineError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    fs::create_dir_all(root).map_err(|e| io(root, e))?;
    let previous = current(root)?;
    let before = match &previous {
        Some(name) => Some(read_grades(&root.join(name).join("standing.parquet"))?),
        None => None,
    };
    let grades: Vec<String> = served
        .model
        .master_scale
        .0
        .iter()
        .map(|g| g.name.clone())
        .collect();
    let rank = |g: &str| grades.iter().position(|x| x == g);
    let request = standard_request();
    let mut rows = Vec::with_capacity(served.merchants().len());
    for (id, m) in served.merchants() {
        let last = before.as_ref().and_then(|b| b.get(id)).and_then(|(g, _)| {
            g.as_ref().map(|g| LastSeen {
                grade: g.clone(),
                escrow_coverage: None,
            })
        });
        let alerts: Vec<&'static str> = served
            .alerts(id, last.as_ref())
            .map(|a| a.into_iter().map(|a| a.code).collect())
            .unwrap_or_default();
        let mut row = Row {
            id: id.clone(),
            as_of: m.as_of,
            status: "unscorable",
            score: None,
            pd: None,
            grade: None,
            outcome: None,
            line: None,
            product: None,
            rate: None,
            alerts,
        };
        match m.standing(id) {
            Ok(Standing::Closed(_)) => row.status = "closed",
            Ok(Standing::Scored(s)) => {
                row.status = "graded";
                row.score = Some(s.score);
                row.pd = Some(s.pd);
                row.grade = Some(s.grade.clone());
                if let Ok(d) = served.decide(id, &request, false) {
                    row.outcome = Some(match d.outcome {
                        Outcome::Approve => "approve",
                        Outcome::Refer => "refer",
                        Outcome::Decline => "decline",
                    });
                    if d.outcome == Outcome::Approve {
                        row.line = Some(d.approved_amount);
                        row.product = d.offer.as_ref().map(|o| o.product.clone());
                        row.rate = d.offer.as_ref().map(|o| o.price.rate);
                    }
                }
            }
            Err(_) => {}
        }
        rows.push(row);
        if rows.len() % 1024 == 0 {
            progress(rows.len(), served.merchants().len());
        }
    }
    progress(rows.len(), served.merchants().len());

    let seq = next_seq(root)?;
    let as_of = served.as_of();
    let name = format!(
        "{seq:06}-{}",
        as_of.map_or("none".to_string(), |d| d.to_string())
    );
    let mut report = SnapshotReport {
        snapshot: name.clone(),
        as_of,
        model_id: served.model.id.clone(),
        merchants: rows.len() as u64,
        graded: 0,
        closed: 0,
        unscorable: 0,
        by_grade: BTreeMap::new(),
        offers: 0,
        offered_total: Decimal::ZERO,
        alerts: BTreeMap::new(),
        changes: None,
    };
    for r in &rows {
        match r.status {
            "graded" => report.graded += 1,
            "closed" => report.closed += 1,
            _ => report.unscorable += 1,
        }
        if let Some(g) = &r.grade {
            *report.by_grade.entry(g.clone()).or_default() += 1;
        }
        if let Some(line) = r.line {
            report.offers += 1;
            report.offered_total += line;
        }
        for a in &r.alerts {
            *report.alerts.entry((*a).to_string()).or_default() += 1;
        }
    }
    if let (Some(previous), Some(before)) = (&previous, &before) {
        let mut c = Changes {
            previous: previous.clone(),
            upgraded: 0,
            downgraded: 0,
            unchanged: 0,
            new_merchants: 0,
            new_alerts: BTreeMap::new(),
        };
        for r in &rows {
            let Some((grade, alerts)) = before.get(&r.id) else {
                c.new_merchants += 1;
                continue;
            };
            if let (Some(now), Some(then)) = (
                r.grade.as_deref().and_then(rank),
                grade.as_deref().and_then(rank),
            ) {
                // Earlier on the master scale is better.
                match now.cmp(&then) {
                    std::cmp::Ordering::Less => c.upgraded += 1,
                    std::cmp::Ordering::Greater => c.downgraded += 1,
                    std::cmp::Ordering::Equal => c.unchanged += 1,
                }
            }
            for a in &r.alerts {
                if !alerts.iter().any(|x| x == a) {
                    *c.new_alerts.entry((*a).to_string()).or_default() += 1;
                }
            }
        }
        report.changes = Some(c);
    }

    // Written aside, then renamed into place, then made current.
    let tmp = root.join(format!(".tmp-{name}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    write_rows(&rows, &tmp.join("standing.parquet"))?;
    let json = serde_json::to_vec_pretty(&report).map_err(|e| EngineError::Refresh {
        path: tmp.clone(),
        why: e.to_string(),
    })?;
    write_synced(&tmp.join("report.json"), &json)?;
    sync(&tmp)?;
    let dir = root.join(&name);
    fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
    sync(root)?;
    let pointer = root.join("CURRENT.tmp");
    write_synced(&pointer, name.as_bytes())?;
    fs::rename(&pointer, root.join("CURRENT")).map_err(|e| io(root, e))?;
    sync(root)?;
    Ok(report)
}

/// The current snapshot's folder name, if any.
pub fn current(root: &Path) -> Result<Option<String>, EngineError> {
    let path = root.join("CURRENT");
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EngineError::Read { path, source }),
    }
}

/// One more than the highest sequence number of a snapshot folder under `root`.
fn next_seq(root: &Path) -> Result<u64, EngineError> {
    let entries = fs::read_dir(root).map_err(|source| EngineError::Read {
        path: root.to_path_buf(),
        source,
    })?;
    let mut top = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let n = name
            .to_str()
            .and_then(|s| s.split('-').next())
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(n) = n {
            top = top.max(n);
        }
    }
    Ok(top + 1)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let io = |source| EngineError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

fn sync(dir: &Path) -> Result<(), EngineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| EngineError::Read {
            path: dir.to_path_buf(),
            source,
        })
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("merchant_id", DataType::Utf8, false),
        Field::new("as_of", DataType::Date32, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("score", DataType::Int64, true),
        Field::new("pd", DataType::Float64, true),
        Field::new("grade", DataType::Utf8, true),
        Field::new("standing_outcome", DataType::Utf8, true),
        Field::new("standing_line", DataType::Decimal128(18, 2), true),
        Field::new("standing_product", DataType::Utf8, true),
        Field::new("standing_rate", DataType::Decimal128(18, 6), true),
        Field::new("alerts", DataType::Utf8, false),
    ]))
}

/// Yuan (or a rate) as a fixed-point integer at `scale` decimals.
fn fixed(d: Option<Decimal>, scale: u32) -> Option<i128> {
    let mut d = d?.round_dp(scale);
    d.rescale(scale);
    Some(d.mantissa())
}

fn write_rows(rows: &[Row], path: &Path) -> Result<(), EngineError> {
    let fail = |why: String| EngineError::Refresh {
        path: path.to_path_buf(),
        why,
    };
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.id))),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| {
            i32::try_from((r.as_of - epoch).num_days()).unwrap_or(0)
        }))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.status))),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.score))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.pd))),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.grade.as_deref()),
        )),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.outcome))),
        Arc::new(
            Decimal128Array::from_iter(rows.iter().map(|r| fixed(r.line, 2)))
                .with_precision_and_scale(18, 2)
                .map_err(|e| fail(e.to_string()))?,
        ),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.product.as_deref()),
        )),
        Arc::new(
            Decimal128Array::from_iter(rows.iter().map(|r| fixed(r.rate, 6)))
                .with_precision_and_scale(18, 6)
                .map_err(|e| fail(e.to_string()))?,
        ),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.alerts.join(",")),
        )),
    ];
    let batch = RecordBatch::try_new(schema(), columns).map_err(|e| fail(e.to_string()))?;
    let file = File::create(path).map_err(|source| EngineError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema(), None)
        .map_err(|e| fail(e.to_string()))?;
    w.write(&batch).map_err(|e| fail(e.to_string()))?;
    let file = w.into_inner().map_err(|e| fail(e.to_string()))?;
    file.sync_all().map_err(|source| EngineError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Each merchant's grade and alerts in a snapshot's standing file.
type Before = BTreeMap<String, (Option<String>, Vec<String>)>;
fn read_grades(path: &PathBuf) -> Result<Before, EngineError> {
    let fail = |why: String| EngineError::Refresh {
        path: path.clone(),
        why,
    };
    let file = File::open(path).map_err(|source| EngineError::Read {
        path: path.clone(),
        source,
    })?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| fail(e.to_string()))?;
    let mut out = Before::new();
    for batch in reader {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| fail(format!("no column {name}")))
        };
        let (ids, grades, alerts) = (text("merchant_id")?, text("grade")?, text("alerts")?);
        for i in 0..batch.num_rows() {
            let grade = (!grades.is_null(i)).then(|| grades.value(i).to_string());
            let codes = alerts
                .value(i)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            out.insert(ids.value(i).to_string(), (grade, codes));
        }
    }
    Ok(out)
}
