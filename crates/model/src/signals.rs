//! The signal check: each characteristic's information value against the label and its
//! missing share on a profile panel, so analysts see at a glance which characteristics
//! carry signal (`yuanxin profile --report`). Binning here is deliberately simple (deciles
//! plus a bin for missing values); the IV of those bins is the scorecard's
//! ([`crate::binning`]), with its smoothing of empty cells.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int8Type};
use serde::Serialize;

use yuanxin_domain::vocabulary::{columns, VOCABULARY};

/// One characteristic's signal.
#[derive(Debug, Clone, Serialize)]
pub struct Signal {
    /// Characteristic.
    pub name: &'static str,
    /// Information value against the label (decile bins, missing as its own bin).
    pub iv: f64,
    /// Share of labelled rows where the characteristic is missing.
    pub missing_share: f64,
}

/// Information value of each characteristic against the panel's label (`default_12m`,
/// else `consumer_harm_12m`), on rows with a label.
pub fn signal_report(batch: &RecordBatch) -> Option<Vec<Signal>> {
    let label = [columns::DEFAULT_12M, columns::CONSUMER_HARM_12M]
        .iter()
        .find_map(|c| batch.column_by_name(c))?
        .as_primitive_opt::<Int8Type>()?;
    let rows: Vec<usize> = (0..batch.num_rows())
        .filter(|&i| !label.is_null(i))
        .collect();
    let y: Vec<bool> = rows.iter().map(|&i| label.value(i) == 1).collect();
    let mut out = Vec::with_capacity(VOCABULARY.len());
    for f in VOCABULARY {
        let col = batch
            .column_by_name(f.name)?
            .as_primitive_opt::<Float64Type>()?;
        let x: Vec<Option<f64>> = rows
            .iter()
            .map(|&i| (!col.is_null(i)).then(|| col.value(i)))
            .collect();
        let missing = x.iter().filter(|v| v.is_none()).count() as f64 / x.len().max(1) as f64;
        out.push(Signal {
            name: f.name,
            iv: iv_deciles(&x, &y),
            missing_share: missing,
        });
    }
    Some(out)
}

/// Information value with decile bins (ties kept together) and a missing bin.
pub fn iv_deciles(x: &[Option<f64>], y: &[bool]) -> f64 {
    let mut present: Vec<(f64, bool)> = x
        .iter()
        .zip(y)
        .filter_map(|(v, b)| v.map(|v| (v, *b)))
        .collect();
    present.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut bins: Vec<(u64, u64)> = Vec::new();
    let n = present.len();
    let mut i = 0;
    for k in 1..=10 {
        let target = n * k / 10;
        if i >= target && k < 10 {
            continue;
        }
        let mut j = target.max(i + 1).min(n);
        while j < n && j > 0 && present[j].0 == present[j - 1].0 {
            j += 1;
        }
        if j <= i {
            continue;
        }
        let bad = present[i..j].iter().filter(|p| p.1).count();
        bins.push((bad as u64, (j - i - bad) as u64));
        i = j;
        if i >= n {
            break;
        }
    }
    let miss: Vec<bool> = x
        .iter()
        .zip(y)
        .filter(|(v, _)| v.is_none())
        .map(|(_, b)| *b)
        .collect();
    if !miss.is_empty() {
        let bad = miss.iter().filter(|b| **b).count();
        bins.push((bad as u64, (miss.len() - bad) as u64));
    }
    crate::binning::information_value(&bins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iv_is_zero_without_signal_and_large_with_it() {
        let x: Vec<Option<f64>> = (0..1000).map(|i| Some(f64::from(i % 10))).collect();
        let noise: Vec<bool> = (0..1000).map(|i| (i / 10) % 2 == 0).collect();
        assert!(iv_deciles(&x, &noise) < 0.01);
        let signal: Vec<bool> = (0..1000).map(|i| i % 10 >= 8).collect();
        assert!(iv_deciles(&x, &signal) > 1.0);
    }
}
