//! The WoE logistic scorecard: bin every candidate, keep the characteristics with enough
//! information value and not too correlated with a stronger one, fit a logistic regression
//! (linfa) on their WoE, and turn the coefficients into a points table.
//!
//! With WoE = ln(%good/%bad), every coefficient on the log-odds of *bad* should be negative;
//! a positive one means the characteristic is standing in for another (collinearity), and
//! the scorecard would reward risk in it. Such characteristics are dropped and the model is
//! refitted, as scorecard practice does.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::binning::{Binning, BinningParams, CheckedBinningParams, Slot, Value};
use crate::frame::Column;
use crate::scale::Scaling;
use crate::{ModelError, Sample};

/// Scorecard settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScorecardParams {
    /// Binning of every candidate.
    pub binning: BinningParams,
    /// Characteristics with a smaller IV are not used (0.02 = "useless" below).
    pub min_iv: f64,
    /// Of two characteristics whose WoE correlate more than this (absolute Pearson), the
    /// one with the smaller IV is dropped.
    pub max_correlation: f64,
    /// L2 penalty of the logistic regression (on the summed log-likelihood).
    pub l2: f64,
    /// Iteration limit of the solver.
    pub max_iterations: u64,
}

impl Default for ScorecardParams {
    fn default() -> ScorecardParams {
        ScorecardParams {
            binning: BinningParams::default(),
            min_iv: 0.02,
            max_correlation: 0.8,
            l2: 1.0,
            max_iterations: 200,
        }
    }
}

/// One characteristic of the scorecard with its points table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Characteristic {
    /// The binning (with its WoE/IV table).
    pub binning: Binning,
    /// Coefficient on the WoE in the log-odds of bad.
    pub coefficient: f64,
    /// Points of each regular bin.
    pub points: Vec<f64>,
    /// Points of the special-value bin.
    pub special_points: Option<f64>,
    /// Points of the missing-value bin.
    pub missing_points: f64,
    /// The most points any bin seen in training gives: reasons are measured from here.
    pub best_points: f64,
}

impl Characteristic {
    /// Points of a slot, or `None` when the slot never occurred in training (a category
    /// never seen, a missing or special value where training had none): such a row is not
    /// scored rather than given a made-up value.
    pub fn points(&self, slot: Slot) -> Option<f64> {
        let stat = self.binning.stat(slot)?;
        if stat.count == 0 {
            return None;
        }
        match slot {
            Slot::Bin(i) => self.points.get(i).copied(),
            Slot::Special => self.special_points,
            Slot::Missing => Some(self.missing_points),
            Slot::Unseen => None,
        }
    }
}

/// Why a candidate characteristic is in or out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Characteristic.
    pub name: String,
    /// Its information value on the training rows.
    pub iv: f64,
    /// Regular bins.
    pub bins: usize,
    /// `selected`, or why not: `iv_below_min`, `correlated`, `wrong_sign`.
    pub status: String,
    /// Details (e.g. which stronger characteristic it correlates with).
    pub note: String,
}

/// A fitted scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// Intercept of the logistic regression (log-odds of bad).
    pub intercept: f64,
    /// Characteristics in the model, by decreasing IV.
    pub characteristics: Vec<Characteristic>,
    /// Every candidate with its IV and status.
    pub candidates: Vec<Candidate>,
    /// Binnings of all candidates (for the report and for analysts).
    pub all_binnings: Vec<Binning>,
}

/// Bins every column of the sample, using both cores.
pub(crate) fn bin_all(
    params: &CheckedBinningParams,
    sample: &Sample,
) -> Result<Vec<Binning>, ModelError> {
    let n = sample.columns.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .clamp(1, 8);
    let mut out: Vec<Option<Result<Binning, ModelError>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let name = &sample.names[i];
                            let r = match &sample.columns[i] {
                                Column::Num(x) => params.fit_numeric(name, x, &sample.bad),
                                Column::Cat(x) => params.fit_categorical(name, x, &sample.bad),
                            };
                            (i, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(v) => {
                    for (i, r) in v {
                        out[i] = Some(r);
                    }
                }
                Err(_) => {
                    // A panicking worker is a bug; report it as an error, not a crash.
                }
            }
        }
    });
    out.into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                Err(ModelError::Data(format!(
                    "binning of {} failed",
                    sample.names[i]
                )))
            })
        })
        .collect()
}

/// WoE of every row for one binning.
pub(crate) fn woe_column(b: &Binning, col: &Column) -> Vec<f64> {
    let w = |slot| b.stat(slot).map_or(0.0, |s| s.woe);
    match col {
        Column::Num(x) => x.iter().map(|&v| w(b.slot(Value::Num(v)))).collect(),
        Column::Cat(x) => x
            .iter()
            .map(|v| w(b.slot(Value::Cat(v.as_deref()))))
            .collect(),
    }
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// Fits a logistic regression of bad on the columns; returns (intercept, coefficients) on
/// the log-odds of bad.
/// `start` is a warm start (intercept, coefficients) on the same scale.
pub(crate) fn logistic(
    cols: &[&[f64]],
    bad: &[bool],
    l2: f64,
    max_iterations: u64,
    start: Option<(f64, &[f64])>,
) -> Result<(f64, Vec<f64>), ModelError> {
    let n = bad.len();
    let m = cols.len();
    let mut x = Array2::<f64>::zeros((n, m));
    for (j, c) in cols.iter().enumerate() {
        for (i, &v) in c.iter().enumerate() {
            x[[i, j]] = v;
        }
    }
    let y: Array1<bool> = bad.iter().copied().collect();
    let data = Dataset::new(x, y);
    // Warm start: each WoE is the univariate log-odds of good, so the joint solution sits
    // near equal shrunken weights with the log-odds of the sample as intercept (or at the
    // previous fit's solution). linfa's parameters are on the log-odds of its positive
    // class, the larger one, i.e. of good in credit data.
    let bads = bad.iter().filter(|&&b| b).count() as f64;
    let goods = n as f64 - bads;
    let sign = if bads > goods { 1.0 } else { -1.0 };
    let init: Array1<f64> = match start {
        Some((b0, b)) if b.len() == m => b.iter().chain([&b0]).map(|v| sign * v).collect(),
        _ => {
            let mut init = Array1::from_elem(m + 1, -sign * 0.7);
            init[m] = sign * (bads.max(1.0) / goods.max(1.0)).ln();
            init
        }
    };
    // The solver's tolerance is on the summed gradient: scale it with the rows so that large
    // samples stop at the same precision per row (1e-5 of the mean gradient, far below what
    // moves a point of score) instead of iterating on noise.
    let fitted = LogisticRegression::default()
        .alpha(l2)
        .gradient_tolerance((1e-5 * n as f64).max(1e-4))
        .initial_params(init)
        .max_iterations(max_iterations)
        .fit(&data)
        .map_err(|e| ModelError::Fit(format!("logistic regression: {e}")))?;
    // linfa labels the larger class positive: turn its parameters into log-odds of bad.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    Ok((
        sign * fitted.intercept(),
        fitted.params().iter().map(|w| sign * w).collect(),
    ))
}

impl ScorecardParams {
    /// Fits the scorecard on the training sample.
    pub fn fit(&self, sample: &Sample, scaling: &Scaling) -> Result<Scorecard, ModelError> {
        let binning = self.binning.clone().check()?;
        if !(self.min_iv >= 0.0 && self.max_correlation > 0.0 && self.max_correlation <= 1.0) {
            return Err(ModelError::Config(format!(
                "min_iv must be ≥ 0 and max_correlation in (0, 1], not {} and {}",
                self.min_iv, self.max_correlation
            )));
        }
        let all = bin_all(&binning, sample)?;
        let mut candidates: Vec<Candidate> = all
            .iter()
            .map(|b| Candidate {
                name: b.name.clone(),
                iv: b.iv,
                bins: b.bins.len(),
                status: String::new(),
                note: if b.iv > 0.5 {
                    "IV above 0.5: review for leakage".into()
                } else {
                    String::new()
                },
            })
            .collect();
        // Strongest first; ties by name so the order never depends on the input's.
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.sort_by(|&a, &b| {
            all[b]
                .iv
                .total_cmp(&all[a].iv)
                .then_with(|| all[a].name.cmp(&all[b].name))
        });
        let mut kept: Vec<(usize, Vec<f64>)> = Vec::new();
        for &i in &order {
            if all[i].iv < self.min_iv || all[i].iv <= 0.0 {
                candidates[i].status = "iv_below_min".into();
                continue;
            }
            let w = woe_column(&all[i], &sample.columns[i]);
            if let Some((j, r)) = kept
                .iter()
                .map(|(j, v)| (*j, pearson(&w, v)))
                .find(|(_, r)| r.abs() > self.max_correlation)
            {
                candidates[i].status = "correlated".into();
                candidates[i].note = format!("WoE correlation {r:.3} with {}", all[j].name);
                continue;
            }
            kept.push((i, w));
        }
        // Fit; drop wrong-signed characteristics one at a time and refit from the last fit.
        let mut start: Option<(f64, Vec<f64>)> = None;
        let (intercept, coefs) = loop {
            if kept.is_empty() {
                return Err(ModelError::Fit(
                    "no characteristic is left after the IV, correlation and sign checks".into(),
                ));
            }
            let cols: Vec<&[f64]> = kept.iter().map(|(_, w)| w.as_slice()).collect();
            let (b0, b) = logistic(
                &cols,
                &sample.bad,
                self.l2,
                self.max_iterations,
                start.as_ref().map(|(a, b)| (*a, b.as_slice())),
            )?;
            let worst = b
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0.0)
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(k, _)| k);
            match worst {
                Some(k) => {
                    let (i, _) = kept.remove(k);
                    candidates[i].status = "wrong_sign".into();
                    candidates[i].note =
                        format!("coefficient {:.4} rewards risk given the others", b[k]);
                    let mut rest = b.clone();
                    rest.remove(k);
                    start = Some((b0, rest));
                }
                None => break (b0, b),
            }
        };
        let m = kept.len() as f64;
        let factor = scaling.factor();
        let share = (scaling.offset() - factor * intercept) / m;
        let characteristics = kept
            .iter()
            .zip(&coefs)
            .map(|((i, _), &c)| {
                candidates[*i].status = "selected".into();
                let b = all[*i].clone();
                let pts = |woe: f64| share - factor * c * woe;
                let points: Vec<f64> = b.bins.iter().map(|s| pts(s.woe)).collect();
                let special_points = b.special.as_ref().map(|s| pts(s.woe));
                let missing_points = pts(b.missing.woe);
                let best_points = b
                    .table()
                    .filter(|s| s.count > 0)
                    .map(|s| pts(s.woe))
                    .fold(f64::NEG_INFINITY, f64::max);
                Characteristic {
                    binning: b,
                    coefficient: c,
                    points,
                    special_points,
                    missing_points,
                    best_points,
                }
            })
            .collect();
        Ok(Scorecard {
            intercept,
            characteristics,
            candidates,
            all_binnings: all,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_add_up_to_the_scaled_log_odds() {
        // x1 carries signal, x2 is noise.
        let n = 4000;
        let x1: Vec<f64> = (0..n).map(|i| (i % 100) as f64).collect();
        let x2: Vec<f64> = (0..n).map(|i| ((i * 7919) % 13) as f64).collect();
        let bad: Vec<bool> = (0..n)
            .map(|i| {
                ((i * 2654435761usize) % 1000) as f64 / 1000.0 < 0.05 + 0.004 * (i % 100) as f64
            })
            .collect();
        let sample = Sample {
            names: vec!["x1".into(), "x2".into()],
            columns: vec![Column::Num(x1.clone()), Column::Num(x2)],
            bad: bad.clone(),
        };
        let scaling = Scaling::default();
        let sc = ScorecardParams::default().fit(&sample, &scaling).unwrap();
        assert_eq!(sc.characteristics.len(), 1, "{:?}", sc.candidates);
        let c = &sc.characteristics[0];
        assert!(c.coefficient < 0.0);
        // Score of a row = Σ points = offset − factor · (b0 + b·woe).
        let slot = c.binning.slot(Value::Num(42.0));
        let woe = c.binning.stat(slot).unwrap().woe;
        let want = scaling.score(sc.intercept + c.coefficient * woe);
        assert!((c.points(slot).unwrap() - want).abs() < 1e-9);
        // Riskier values get fewer points.
        let lo = c.points(c.binning.slot(Value::Num(1.0))).unwrap();
        let hi = c.points(c.binning.slot(Value::Num(99.0))).unwrap();
        assert!(lo > hi);
        assert_eq!(
            sc.candidates
                .iter()
                .find(|c| c.name == "x2")
                .unwrap()
                .status,
            "iv_below_min"
        );
    }
}
