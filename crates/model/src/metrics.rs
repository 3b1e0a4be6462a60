//! Evaluation: discrimination (AUC, Gini, KS), accuracy of the probabilities (Brier score,
//! log loss, calibration table), gains and lift by decile, AUC per segment, and population
//! stability (PSI). Every function takes predicted probabilities of the event (bad) and the
//! observed outcomes; a higher probability means a riskier row.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scale::MasterScale;

/// Headline metrics of a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Rows.
    pub n: u64,
    /// Events (bad) among them.
    pub events: u64,
    /// Area under the ROC curve (ties count one half); NaN (`null` in files) when the
    /// sample has one class only.
    #[serde(with = "nan_as_null")]
    pub auc: f64,
    /// 2·AUC − 1.
    #[serde(with = "nan_as_null")]
    pub gini: f64,
    /// Kolmogorov–Smirnov statistic: the largest gap between the cumulative shares of events
    /// and non-events.
    pub ks: f64,
    /// Mean squared error of the probability.
    pub brier: f64,
    /// Mean negative log-likelihood (probabilities clipped to [1e-15, 1 − 1e-15]).
    pub log_loss: f64,
}

/// JSON has no NaN: write it as `null` and read `null` back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Metrics with the tables an analyst reads next to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Headline metrics.
    pub metrics: Metrics,
    /// Mean predicted against observed event rate, by decile of the prediction.
    pub calibration: Vec<CalibrationRow>,
    /// Gains and lift by decile, riskiest first.
    pub gains: Vec<GainsRow>,
    /// AUC by segment, when a segment column was given.
    pub segments: Vec<SegmentRow>,
    /// Calibration per grade of the master scale: observed bads against the binomial band of
    /// the grade's mean PD (absent in files written before it existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grades: Vec<GradeRow>,
}

/// Calibration of one grade, as the supervisors' traffic light reads it: green when the
/// observed bads lie within the 95 % binomial band of the grade's rows at its mean PD,
/// yellow within the 99.9 % band, red above it — the PD underestimates the risk, which is
/// what a back-test fails on — and `conservative` below it: far fewer bads than the PD
/// says (reported, not a failure: such a grade overstates risk, e.g. when the default rate
/// fell after training).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeRow {
    /// Grade of the master scale.
    pub grade: String,
    /// Rows in the grade.
    pub n: u64,
    /// Their share of the rows.
    pub share: f64,
    /// Mean PD of the rows.
    pub mean_pd: f64,
    /// Bads observed.
    pub events: u64,
    /// The 99.9 % band of bads for `n` rows at the mean PD.
    pub band: (u64, u64),
    /// `green`, `yellow`, `red` or `conservative`.
    pub light: String,
}

impl Evaluation {
    /// Whether no grade is red (no grade's PD underestimates its bads).
    pub fn calibrated(&self) -> bool {
        self.grades.iter().all(|g| g.light != "red")
    }
}

/// One row of a calibration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRow {
    /// Rows in the group.
    pub n: u64,
    /// Mean predicted probability.
    pub predicted: f64,
    /// Observed event rate.
    pub observed: f64,
}

/// One row of a gains table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GainsRow {
    /// Decile, 1 = riskiest.
    pub decile: u32,
    /// Rows.
    pub n: u64,
    /// Events.
    pub events: u64,
    /// Event rate in the decile.
    pub event_rate: f64,
    /// Share of all events captured down to this decile.
    pub cum_events: f64,
    /// Event rate of the decile over the overall event rate.
    pub lift: f64,
}

/// AUC of one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRow {
    /// Segment value.
    pub segment: String,
    /// Rows.
    pub n: u64,
    /// Events.
    pub events: u64,
    /// AUC (`None` when the segment has only one class).
    pub auc: Option<f64>,
}

/// Indices sorted by probability, ascending (stable, so the order is reproducible).
fn order(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    idx
}

/// Area under the ROC curve by the rank-sum (Mann–Whitney) formula with average ranks for
/// ties. `None` when one class is absent.
pub fn auc(p: &[f64], bad: &[bool]) -> Option<f64> {
    let pos = bad.iter().filter(|&&b| b).count() as f64;
    let neg = bad.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    let idx = order(p);
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let mean_rank = (i + j + 2) as f64 / 2.0;
        rank_sum += mean_rank * idx[i..=j].iter().filter(|&&k| bad[k]).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// KS statistic, evaluated between groups of tied probabilities.
pub fn ks(p: &[f64], bad: &[bool]) -> f64 {
    let pos = bad.iter().filter(|&&b| b).count() as f64;
    let neg = bad.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return 0.0;
    }
    let idx = order(p);
    let (mut cp, mut cn, mut best) = (0.0, 0.0, 0.0f64);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && p[idx[j]] == p[idx[i]] {
            if bad[idx[j]] {
                cp += 1.0;
            } else {
                cn += 1.0;
            }
            j += 1;
        }
        best = best.max((cp / pos - cn / neg).abs());
        i = j;
    }
    best
}

/// Brier score.
pub fn brier(p: &[f64], bad: &[bool]) -> f64 {
    if p.is_empty() {
        return 0.0;
    }
    p.iter()
        .zip(bad)
        .map(|(&q, &b)| (q - if b { 1.0 } else { 0.0 }).powi(2))
        .sum::<f64>()
        / p.len() as f64
}

/// Log loss.
pub fn log_loss(p: &[f64], bad: &[bool]) -> f64 {
    if p.is_empty() {
        return 0.0;
    }
    p.iter()
        .zip(bad)
        .map(|(&q, &b)| {
            let q = q.clamp(1e-15, 1.0 - 1e-15);
            -if b { q.ln() } else { (1.0 - q).ln() }
        })
        .sum::<f64>()
        / p.len() as f64
}

/// Headline metrics.
pub fn metrics(p: &[f64], bad: &[bool]) -> Metrics {
    let auc = auc(p, bad).unwrap_or(f64::NAN);
    Metrics {
        n: p.len() as u64,
        events: bad.iter().filter(|&&b| b).count() as u64,
        auc,
        gini: 2.0 * auc - 1.0,
        ks: ks(p, bad),
        brier: brier(p, bad),
        log_loss: log_loss(p, bad),
    }
}

/// Splits the rows, sorted by probability, into `groups` groups of (nearly) equal size.
fn deciles(idx: &[usize], groups: usize) -> Vec<&[usize]> {
    let n = idx.len();
    (0..groups)
        .map(|g| &idx[g * n / groups..(g + 1) * n / groups])
        .filter(|s| !s.is_empty())
        .collect()
}

/// Calibration table by decile of the prediction.
pub fn calibration(p: &[f64], bad: &[bool]) -> Vec<CalibrationRow> {
    let idx = order(p);
    deciles(&idx, 10)
        .into_iter()
        .map(|g| CalibrationRow {
            n: g.len() as u64,
            predicted: g.iter().map(|&i| p[i]).sum::<f64>() / g.len() as f64,
            observed: g.iter().filter(|&&i| bad[i]).count() as f64 / g.len() as f64,
        })
        .collect()
}

/// Gains and lift by decile, riskiest first.
pub fn gains(p: &[f64], bad: &[bool]) -> Vec<GainsRow> {
    let mut idx = order(p);
    idx.reverse();
    let total_events = bad.iter().filter(|&&b| b).count() as f64;
    let rate = if p.is_empty() {
        0.0
    } else {
        total_events / p.len() as f64
    };
    let mut cum = 0u64;
    deciles(&idx, 10)
        .into_iter()
        .enumerate()
        .map(|(d, g)| {
            let events = g.iter().filter(|&&i| bad[i]).count() as u64;
            cum += events;
            let event_rate = events as f64 / g.len() as f64;
            GainsRow {
                decile: d as u32 + 1,
                n: g.len() as u64,
                events,
                event_rate,
                cum_events: if total_events > 0.0 {
                    cum as f64 / total_events
                } else {
                    0.0
                },
                lift: if rate > 0.0 { event_rate / rate } else { 0.0 },
            }
        })
        .collect()
}

/// AUC by segment, segments in sorted order.
pub fn segment_auc(p: &[f64], bad: &[bool], segment: &[String]) -> Vec<SegmentRow> {
    let mut by: BTreeMap<&str, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
    for ((&q, &b), s) in p.iter().zip(bad).zip(segment) {
        let e = by.entry(s.as_str()).or_default();
        e.0.push(q);
        e.1.push(b);
    }
    by.into_iter()
        .map(|(s, (q, b))| SegmentRow {
            segment: s.to_owned(),
            n: q.len() as u64,
            events: b.iter().filter(|&&x| x).count() as u64,
            auc: auc(&q, &b),
        })
        .collect()
}

/// Full evaluation of a sample.
pub fn evaluate(
    p: &[f64],
    bad: &[bool],
    segment: Option<&[String]>,
    scale: &MasterScale,
) -> Evaluation {
    Evaluation {
        metrics: metrics(p, bad),
        calibration: calibration(p, bad),
        gains: gains(p, bad),
        segments: segment.map(|s| segment_auc(p, bad, s)).unwrap_or_default(),
        grades: grade_calibration(p, bad, scale),
    }
}

/// Calibration per grade of the scale, best grade first; grades no row fell in are left out.
pub fn grade_calibration(p: &[f64], bad: &[bool], scale: &MasterScale) -> Vec<GradeRow> {
    let mut acc: Vec<(u64, f64, u64)> = vec![(0, 0.0, 0); scale.0.len()];
    for (&pd, &b) in p.iter().zip(bad) {
        if let Some(a) = acc.get_mut(scale.index(pd)) {
            a.0 += 1;
            a.1 += pd;
            a.2 += u64::from(b);
        }
    }
    let total = p.len().max(1) as f64;
    scale
        .0
        .iter()
        .zip(acc)
        .filter(|(_, (n, _, _))| *n > 0)
        .map(|(g, (n, sum, events))| {
            let mean_pd = sum / n as f64;
            let within = |tail: f64| {
                let (lo, hi) = binomial_band(n, mean_pd, tail);
                (lo..=hi).contains(&events)
            };
            let light = if within(0.025) {
                "green"
            } else if within(0.0005) {
                "yellow"
            } else if events > binomial_band(n, mean_pd, 0.0005).1 {
                "red"
            } else {
                "conservative"
            };
            GradeRow {
                grade: g.name.clone(),
                n,
                share: n as f64 / total,
                mean_pd,
                events,
                band: binomial_band(n, mean_pd, 0.0005),
                light: light.into(),
            }
        })
        .collect()
}

/// The counts between the `tail` and `1 − tail` quantiles of Binomial(n, p): exact sums of
/// the probabilities when the variance is small, the normal approximation with continuity
/// correction otherwise (n·p·(1−p) ≥ 9, where it is accurate to well under one count).
fn binomial_band(n: u64, p: f64, tail: f64) -> (u64, u64) {
    let p = p.clamp(0.0, 1.0);
    let nf = n as f64;
    let var = nf * p * (1.0 - p);
    if var >= 9.0 {
        // The standard normal quantile of 1 − tail, for the two tails used.
        let z = if tail >= 0.02 { 1.959_964 } else { 3.290_527 };
        let sd = var.sqrt();
        let lo = (nf * p - z * sd - 0.5).ceil().max(0.0);
        let hi = (nf * p + z * sd + 0.5).floor().min(nf);
        return (lo as u64, hi as u64);
    }
    // Small variance: sum from the near end (the fewer events or the fewer non-events).
    let flip = p > 0.5;
    let q = if flip { 1.0 - p } else { p };
    let mut pmf = (1.0 - q).powf(nf);
    let mut cdf = 0.0;
    let (mut lo, mut hi) = (None, n);
    for k in 0..=n {
        cdf += pmf;
        if lo.is_none() && cdf >= tail {
            lo = Some(k);
        }
        if cdf >= 1.0 - tail {
            hi = k;
            break;
        }
        let kf = k as f64;
        pmf *= (nf - kf) / (kf + 1.0) * q / (1.0 - q).max(f64::MIN_POSITIVE);
    }
    let lo = lo.unwrap_or(0);
    if flip {
        (n - hi, n - lo)
    } else {
        (lo, hi)
    }
}

/// Population stability index of `actual` against `expected` over `bins` quantile bins of
/// the expected sample. Empty shares are floored at 0.0001 so the index stays finite.
pub fn psi(expected: &[f64], actual: &[f64], bins: usize) -> f64 {
    if expected.is_empty() || actual.is_empty() || bins == 0 {
        return 0.0;
    }
    let mut sorted: Vec<f64> = expected.iter().copied().filter(|x| !x.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let mut cuts: Vec<f64> = Vec::new();
    for q in 1..bins {
        let c = sorted[q * sorted.len() / bins];
        if c > sorted[0] && cuts.last().is_none_or(|&l| c > l) {
            cuts.push(c);
        }
    }
    let share = |xs: &[f64]| {
        let mut counts = vec![0.0f64; cuts.len() + 1];
        let mut n = 0.0f64;
        for &x in xs.iter().filter(|x| !x.is_nan()) {
            counts[cuts.partition_point(|&c| c <= x)] += 1.0;
            n += 1.0;
        }
        counts
            .into_iter()
            .map(|c| if n > 0.0 { (c / n).max(1e-4) } else { 1e-4 })
            .collect::<Vec<f64>>()
    };
    let e = share(expected);
    let a = share(actual);
    e.iter()
        .zip(&a)
        .map(|(&e, &a)| (a - e) * (a / e).ln())
        .sum()
}

/// A sample's distribution in quantile bins: the reference a later population is compared
/// with for stability, small enough to keep in a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Upper-exclusive cut points between bins (bin k holds cuts[k-1] ≤ x < cuts[k]).
    pub cuts: Vec<f64>,
    /// Share of all rows in each bin (`cuts.len() + 1` of them).
    pub shares: Vec<f64>,
    /// Share of rows with no value.
    pub missing: f64,
}

impl Distribution {
    /// The distribution of `values` (NaN = missing) in up to `bins` quantile bins.
    pub fn of(values: &[f64], bins: usize) -> Distribution {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let mut cuts: Vec<f64> = Vec::new();
        if let Some(&lo) = sorted.first() {
            for q in 1..bins.max(1) {
                let c = sorted[q * sorted.len() / bins];
                if c > lo && cuts.last().is_none_or(|&l| c > l) {
                    cuts.push(c);
                }
            }
        }
        let (shares, missing) = Self::shares_of(&cuts, values);
        Distribution {
            cuts,
            shares,
            missing,
        }
    }

    fn shares_of(cuts: &[f64], values: &[f64]) -> (Vec<f64>, f64) {
        let mut counts = vec![0u64; cuts.len() + 1];
        let mut missing = 0u64;
        for &x in values {
            if x.is_nan() {
                missing += 1;
            } else {
                counts[cuts.partition_point(|&c| c <= x)] += 1;
            }
        }
        let n = values.len().max(1) as f64;
        (
            counts.into_iter().map(|c| c as f64 / n).collect(),
            missing as f64 / n,
        )
    }

    /// Population stability index of `actual` against this distribution, over its bins and
    /// the missing bin. Empty shares are floored at 0.0001 so the index stays finite; a bin
    /// empty on both sides adds nothing.
    pub fn psi(&self, actual: &[f64]) -> f64 {
        if actual.is_empty() {
            return 0.0;
        }
        let (shares, missing) = Self::shares_of(&self.cuts, actual);
        self.shares
            .iter()
            .chain(std::iter::once(&self.missing))
            .zip(shares.iter().chain(std::iter::once(&missing)))
            .filter(|(&e, &a)| e > 0.0 || a > 0.0)
            .map(|(&e, &a)| {
                let (e, a) = (e.max(1e-4), a.max(1e-4));
                (a - e) * (a / e).ln()
            })
            .sum()
    }
}

/// The usual reading of a PSI: below 0.1 stable, to 0.25 a shift worth watching, above
/// that a shift that calls for review.
pub fn psi_verdict(v: f64) -> &'static str {
    if v < 0.1 {
        "stable"
    } else if v < 0.25 {
        "watch"
    } else {
        "shifted"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stored_distribution_gives_zero_psi_on_its_own_sample_and_counts_missing() {
        let xs: Vec<f64> = (0..1000).map(|i| f64::from(i % 97)).collect();
        let d = Distribution::of(&xs, 10);
        assert!(d.psi(&xs).abs() < 1e-12);
        assert!((d.shares.iter().sum::<f64>() + d.missing - 1.0).abs() < 1e-9);
        let mut shifted = xs.clone();
        shifted.iter_mut().take(300).for_each(|x| *x = f64::NAN);
        assert!(d.psi(&shifted) > 0.25, "30 % newly missing is a shift");
        let higher: Vec<f64> = xs.iter().map(|x| x + 40.0).collect();
        assert!(d.psi(&higher) > d.psi(&xs) + 0.25);
    }

    use super::*;

    #[test]
    fn auc_and_ks_match_hand_computed_cases() {
        // Perfect ranking.
        let p = [0.1, 0.2, 0.8, 0.9];
        let y = [false, false, true, true];
        assert_eq!(auc(&p, &y), Some(1.0));
        assert_eq!(ks(&p, &y), 1.0);
        // One inversion out of four pairs: AUC 3/4; KS: after 0.1 (neg) 0.5, after 0.3 (pos) 0, ...
        let p = [0.1, 0.3, 0.2, 0.9];
        let y = [false, true, false, true];
        // pairs (pos,neg): (0.3,0.1) ok, (0.3,0.2) ok, (0.9,0.1) ok, (0.9,0.2) ok → 1.0
        assert_eq!(auc(&p, &y), Some(1.0));
        let y = [true, false, false, true];
        // pos 0.1,0.9; neg 0.3,0.2: (0.1 vs 0.3) lose, (0.1 vs 0.2) lose, 0.9 wins twice → 0.5
        assert_eq!(auc(&p, &y), Some(0.5));
        // Ties count one half: all equal → 0.5, KS 0.
        assert_eq!(auc(&[0.5; 4], &[true, false, true, false]), Some(0.5));
        assert_eq!(ks(&[0.5; 4], &[true, false, true, false]), 0.0);
        assert_eq!(auc(&[0.5, 0.6], &[true, true]), None);
        // KS: sorted ascending 0.1(F) 0.2(T) 0.3(F) 0.4(T): cum shares after each:
        // neg 0.5/pos 0 → 0.5; 0.5/0.5 → 0; 1/0.5 → 0.5; 1/1 → 0.
        assert_eq!(ks(&[0.1, 0.2, 0.3, 0.4], &[false, true, false, true]), 0.5);
    }

    #[test]
    fn brier_log_loss_and_gini_by_hand() {
        let p = [0.2, 0.6];
        let y = [false, true];
        assert!((brier(&p, &y) - (0.04 + 0.16) / 2.0).abs() < 1e-15);
        assert!((log_loss(&p, &y) - (-(0.8f64.ln()) - 0.6f64.ln()) / 2.0).abs() < 1e-15);
        let m = metrics(&p, &y);
        assert_eq!((m.auc, m.gini, m.n, m.events), (1.0, 1.0, 2, 1));
    }

    #[test]
    fn gains_lift_and_calibration_tables() {
        let p: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let y: Vec<bool> = (0..100).map(|i| i >= 80).collect();
        let g = gains(&p, &y);
        assert_eq!(g.len(), 10);
        assert_eq!(g[0].events, 10);
        assert_eq!(g[1].cum_events, 1.0);
        assert!((g[0].lift - 5.0).abs() < 1e-12);
        let c = calibration(&p, &y);
        assert_eq!(c[9].observed, 1.0);
        assert!((c[0].predicted - 0.045).abs() < 1e-12);
    }

    #[test]
    fn psi_is_zero_for_the_same_sample_and_matches_by_hand() {
        let e: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        assert!(psi(&e, &e, 10).abs() < 1e-12);
        // Two bins at the median; actual has 80% below.
        let a: Vec<f64> = (0..1000)
            .map(|i| if i < 800 { 1.0 } else { 900.0 })
            .collect();
        let want = (0.8 - 0.5) * (0.8f64 / 0.5).ln() + (0.2 - 0.5) * (0.2f64 / 0.5).ln();
        assert!((psi(&e, &a, 2) - want).abs() < 1e-12);
    }

    #[test]
    fn segments_report_auc_each() {
        let s: Vec<String> = ["a", "a", "b", "b"].iter().map(|s| s.to_string()).collect();
        let rows = segment_auc(&[0.1, 0.9, 0.5, 0.4], &[false, true, false, true], &s);
        assert_eq!(rows[0].auc, Some(1.0));
        assert_eq!(rows[1].auc, Some(0.0));
    }
}
