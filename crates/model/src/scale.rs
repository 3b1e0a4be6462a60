//! From a model's log-odds to what a lender reads: points (points-to-double-the-odds
//! scaling), a calibrated probability of default over the label's horizon, and a grade on a
//! six-step master scale.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Points-to-double-the-odds scaling: score = offset + factor · ln(odds good:bad), with
/// factor = PDO / ln 2 and offset = base_score − factor · ln(base_odds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    /// Score at the base odds (default 600).
    pub base_score: f64,
    /// Good:bad odds at the base score (default 50, i.e. 50:1).
    pub base_odds: f64,
    /// Points to double the odds (default 20).
    pub pdo: f64,
}

impl Default for Scaling {
    fn default() -> Scaling {
        Scaling {
            base_score: 600.0,
            base_odds: 50.0,
            pdo: 20.0,
        }
    }
}

impl Scaling {
    /// Checks the settings.
    pub fn check(self) -> Result<Scaling, ModelError> {
        if !(self.base_odds > 0.0 && self.base_odds.is_finite()) {
            return Err(ModelError::Config(format!(
                "base odds must be positive, not {}",
                self.base_odds
            )));
        }
        if !(self.pdo > 0.0 && self.pdo.is_finite()) {
            return Err(ModelError::Config(format!(
                "PDO must be positive, not {}",
                self.pdo
            )));
        }
        if !self.base_score.is_finite() {
            return Err(ModelError::Config(
                "base score must be a finite number".into(),
            ));
        }
        Ok(self)
    }

    /// Points per unit of log-odds.
    pub fn factor(&self) -> f64 {
        self.pdo / std::f64::consts::LN_2
    }

    /// Score at even odds.
    pub fn offset(&self) -> f64 {
        self.base_score - self.factor() * self.base_odds.ln()
    }

    /// Score of a log-odds of the event (bad): higher score, lower risk.
    pub fn score(&self, logit_bad: f64) -> f64 {
        self.offset() - self.factor() * logit_bad
    }

    /// Log-odds of the event at a score.
    pub fn logit(&self, score: f64) -> f64 {
        (self.offset() - score) / self.factor()
    }
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Probability of default from the score's log-odds `z`: Platt's PD = σ(a + b·z), fitted by
/// maximum likelihood (Newton's method), or an isotonic (monotone) curve through the bad
/// rates of the pooled-adjacent-violators blocks, interpolated between their mean log-odds.
/// For a logistic scorecard on its own training rows a ≈ 0 and b ≈ 1; boosted trees fit
/// their training rows too closely, so they are calibrated on rows held out of the fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Intercept.
    pub a: f64,
    /// Slope on the score's log-odds.
    pub b: f64,
    /// Isotonic points (log-odds, PD), ascending; when present they replace Platt's curve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isotonic: Vec<(f64, f64)>,
    /// How it was fitted and chosen, for the model's readers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fitted: String,
}

/// PDs are kept this far from 0 and 1: no finite evidence makes a default certain or
/// impossible, and a log loss must stay finite.
const PD_EDGE: f64 = 1e-6;

impl Calibration {
    /// The identity calibration.
    pub const IDENTITY: Calibration = Calibration {
        a: 0.0,
        b: 1.0,
        isotonic: Vec::new(),
        fitted: String::new(),
    };

    /// Chooses between Platt's curve and the isotonic one fitted to held-out log-odds `z`
    /// and outcomes, by their log loss in 5-fold cross-validation over these rows (each
    /// fitted on four folds, measured on the fifth; folds are rows `i % 5`), then fits the
    /// chosen one on all of them. `what` names the rows, for the record.
    ///
    /// The rows are sorted once and tallied by distinct log-odds, with each fold's counts
    /// apart: a scorecard's log-odds take far fewer values than it has rows, so the ten fits
    /// and five measurements run over the distinct values, not the rows.
    pub fn choose(z: &[f64], bad: &[bool], what: &str) -> Calibration {
        const FOLDS: usize = 5;
        let folds = Tally::by_fold(z, bad, FOLDS);
        let all = Tally::sum(&folds);
        // Platt's fit on all rows first: the folds' fits start from it, a step or two away.
        let on_all = Calibration::platt(&all, (0.0, 1.0));
        let (mut platt, mut iso) = (0.0, 0.0);
        for fold in &folds {
            let train = all.minus(fold);
            platt += fold.log_loss(&Calibration::platt(&train, (on_all.a, on_all.b)));
            iso += fold.log_loss(&Calibration::pav(&train));
        }
        let n = z.len().max(1) as f64;
        let (platt, iso) = (platt / n, iso / n);
        let mut c = if iso < platt {
            Calibration::pav(&all)
        } else {
            on_all
        };
        let chosen = if iso < platt { "isotonic" } else { "Platt" };
        c.fitted = format!(
            "{chosen} on {} {what} (cross-validated log loss: Platt {platt:.5}, isotonic {iso:.5})",
            z.len()
        );
        c
    }

    /// The isotonic calibration: pooled adjacent violators over the rows sorted by log-odds
    /// (ties pooled first), blocks merged until each has ten bads and ten goods, each
    /// block's bad rate at its mean log-odds.
    pub fn isotonic(z: &[f64], bad: &[bool]) -> Calibration {
        Calibration::pav(&Tally::of(z, bad))
    }

    /// [`Calibration::isotonic`] on tallied rows.
    fn pav(t: &Tally) -> Calibration {
        // Blocks of (sum of z, bads, rows); each distinct log-odds enters as one block.
        let mut blocks: Vec<(f64, f64, f64)> = Vec::with_capacity(t.z.len());
        for ((&z, &b), &n) in t.z.iter().zip(&t.bads).zip(&t.rows) {
            if n <= 0.0 {
                continue;
            }
            blocks.push((z * n, b, n));
            while blocks.len() > 1 {
                let k = blocks.len();
                let (p, q) = (blocks[k - 2], blocks[k - 1]);
                if p.1 / p.2 < q.1 / q.2 {
                    break;
                }
                blocks.truncate(k - 2);
                blocks.push((p.0 + q.0, p.1 + q.1, p.2 + q.2));
            }
        }
        // Blocks of at least ten bads and ten goods: at the ends PAV leaves small blocks
        // with no bad (or no good) at all, whose PD of 0 no new sample bears out, while ten
        // outcomes of each kind pin a block's rate to about a third. Runs of a monotone
        // sequence have monotone means, so merging keeps the curve isotonic.
        const MIN_OUTCOMES: f64 = 10.0;
        let mut merged: Vec<(f64, f64, f64)> = Vec::new();
        let mut run = (0.0, 0.0, 0.0);
        for b in blocks {
            run = (run.0 + b.0, run.1 + b.1, run.2 + b.2);
            if run.1 >= MIN_OUTCOMES && run.2 - run.1 >= MIN_OUTCOMES {
                merged.push(run);
                run = (0.0, 0.0, 0.0);
            }
        }
        if run.2 > 0.0 {
            match merged.last_mut() {
                Some(l) => *l = (l.0 + run.0, l.1 + run.1, l.2 + run.2),
                None => merged.push(run),
            }
        }
        let blocks = merged;
        Calibration {
            isotonic: blocks
                .iter()
                .map(|&(sz, b, n)| (sz / n, (b / n).clamp(PD_EDGE, 1.0 - PD_EDGE)))
                .collect(),
            ..Calibration::IDENTITY
        }
    }

    /// Fits Platt's calibration to log-odds `z` and outcomes.
    pub fn fit(z: &[f64], bad: &[bool]) -> Calibration {
        Calibration::platt(&Tally::of(z, bad), (0.0, 1.0))
    }

    /// [`Calibration::fit`] on tallied rows: Newton's method on the weighted likelihood.
    fn platt(t: &Tally, start: (f64, f64)) -> Calibration {
        let (mut a, mut b) = start;
        for _ in 0..100 {
            // Gradient and Hessian of the negative log-likelihood.
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for ((&x, &bads), &n) in t.z.iter().zip(&t.bads).zip(&t.rows) {
                if n <= 0.0 {
                    continue;
                }
                let p = sigmoid(a + b * x);
                let r = p * n - bads;
                let w = (p * (1.0 - p)).max(1e-12) * n;
                ga += r;
                gb += r * x;
                haa += w;
                hab += w * x;
                hbb += w * x * x;
            }
            let det = haa * hbb - hab * hab;
            if !(det.abs() > 1e-12) {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            a -= da;
            b -= db;
            if !(a.is_finite() && b.is_finite()) {
                return Calibration::IDENTITY;
            }
            if da.abs() < 1e-10 && db.abs() < 1e-10 {
                break;
            }
        }
        Calibration {
            a,
            b,
            ..Calibration::IDENTITY
        }
    }

    /// PD at a log-odds.
    pub fn pd(&self, z: f64) -> f64 {
        let pts = &self.isotonic;
        let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
            return sigmoid(self.a + self.b * z);
        };
        if !(z > first.0) {
            return first.1;
        }
        if z >= last.0 {
            return last.1;
        }
        // The first point at or above z, and the one before it.
        let k = pts.partition_point(|p| p.0 < z);
        let (lo, hi) = (pts[k - 1], pts[k]);
        let t = (z - lo.0) / (hi.0 - lo.0);
        lo.1 + t * (hi.1 - lo.1)
    }

    /// In words, for reports.
    pub fn describe(&self) -> String {
        let curve = if self.isotonic.is_empty() {
            format!("PD = σ({:.4} + {:.4}·log-odds)", self.a, self.b)
        } else {
            format!(
                "PD = an isotonic curve through {} points of log-odds",
                self.isotonic.len()
            )
        };
        if self.fitted.is_empty() {
            curve
        } else {
            format!("{curve}: {}", self.fitted)
        }
    }
}

/// Summed log loss of a calibration on rows.
/// Rows tallied by distinct log-odds, ascending: bads and rows at each value.
#[derive(Debug, Clone, Default)]
struct Tally {
    z: Vec<f64>,
    bads: Vec<f64>,
    rows: Vec<f64>,
}

impl Tally {
    /// All rows.
    fn of(z: &[f64], bad: &[bool]) -> Tally {
        Tally::sum(&Tally::by_fold(z, bad, 1))
    }

    /// The rows of each fold (row `i` in fold `i % folds`), every fold over the same
    /// distinct values (a value a fold lacks has zero rows there).
    fn by_fold(z: &[f64], bad: &[bool], folds: usize) -> Vec<Tally> {
        let folds = folds.max(1);
        // Sorted by log-odds in `f64::total_cmp`'s order, then by row: the keys are the
        // bits that order sorts by, as unsigned integers, so the sort compares integers.
        let mut keys: Vec<(u64, usize)> = (0..z.len().min(bad.len()))
            .map(|i| {
                let bits = z[i].to_bits();
                let key = if bits >> 63 == 1 {
                    !bits
                } else {
                    bits | 1 << 63
                };
                (key, i)
            })
            .collect();
        keys.sort_unstable();
        // Each sorted row's distinct value, then every fold's counts over all of them.
        let mut values: Vec<f64> = Vec::new();
        let mut rank: Vec<u32> = Vec::with_capacity(keys.len());
        let mut last: Option<u64> = None;
        for &(key, i) in &keys {
            if last != Some(key) {
                values.push(z[i]);
                last = Some(key);
            }
            rank.push(values.len() as u32 - 1);
        }
        let mut out: Vec<Tally> = (0..folds)
            .map(|_| Tally {
                z: values.clone(),
                bads: vec![0.0; values.len()],
                rows: vec![0.0; values.len()],
            })
            .collect();
        for (&(_, i), &k) in keys.iter().zip(&rank) {
            let t = &mut out[i % folds];
            t.rows[k as usize] += 1.0;
            if bad[i] {
                t.bads[k as usize] += 1.0;
            }
        }
        out
    }

    /// The folds together (counts are whole numbers: the sums are exact).
    fn sum(folds: &[Tally]) -> Tally {
        let mut all = folds.first().cloned().unwrap_or_default();
        for f in folds.iter().skip(1) {
            for (k, (&b, &n)) in f.bads.iter().zip(&f.rows).enumerate() {
                all.bads[k] += b;
                all.rows[k] += n;
            }
        }
        all
    }

    /// These rows without a fold's (over the same values).
    fn minus(&self, fold: &Tally) -> Tally {
        Tally {
            z: self.z.clone(),
            bads: self
                .bads
                .iter()
                .zip(&fold.bads)
                .map(|(a, b)| a - b)
                .collect(),
            rows: self
                .rows
                .iter()
                .zip(&fold.rows)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }

    /// Summed log loss of a calibration on these rows.
    fn log_loss(&self, c: &Calibration) -> f64 {
        let mut sum = 0.0;
        // The values ascend, so the isotonic curve is walked, not searched: `k` is its
        // first point at or above the value (as `pd` finds it).
        let pts = &c.isotonic;
        let mut k = 0;
        for ((&x, &b), &n) in self.z.iter().zip(&self.bads).zip(&self.rows) {
            if n <= 0.0 {
                continue;
            }
            let p = match (pts.first(), pts.last()) {
                (Some(first), Some(last)) if x > first.0 && x < last.0 => {
                    while pts[k].0 < x {
                        k += 1;
                    }
                    let (lo, hi) = (pts[k - 1], pts[k]);
                    let t = (x - lo.0) / (hi.0 - lo.0);
                    lo.1 + t * (hi.1 - lo.1)
                }
                _ => c.pd(x),
            };
            let p = p.clamp(PD_EDGE, 1.0 - PD_EDGE);
            // Most values hold one row: one of the two terms is then 0, and its log is skipped.
            if b > 0.0 {
                sum -= b * p.ln();
            }
            if n - b > 0.0 {
                sum -= (n - b) * (1.0 - p).ln();
            }
        }
        sum
    }
}

/// One grade of the master scale: PDs up to and including `pd_max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grade {
    /// Grade name.
    pub name: String,
    /// Upper PD bound (inclusive).
    pub pd_max: f64,
}

/// The master scale: grades from best to worst, with increasing PD bounds, the last at 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MasterScale(pub Vec<Grade>);

impl Default for MasterScale {
    /// The six public grades of the Shenzhen convention — A+ ≤ 0.5 %, A ≤ 1 %, B ≤ 2 %,
    /// C ≤ 5 %, D ≤ 10 %, E above — with B, C and D split in three sub-grades each and E
    /// in five (E1 ≤ 15 %, E2 ≤ 22 %, E3 ≤ 32 %, E4 ≤ 50 %, E5 above), bounds growing by
    /// about a third per sub-grade: a scale that still tells applicants apart where bads
    /// are common (on the shared datasets, no grade holds more than about a third of the
    /// rows, where one E held 50–78 %).
    fn default() -> MasterScale {
        let g = |name: &str, pd_max| Grade {
            name: name.into(),
            pd_max,
        };
        MasterScale(vec![
            g("A+", 0.005),
            g("A", 0.01),
            g("B1", 0.013),
            g("B2", 0.016),
            g("B3", 0.02),
            g("C1", 0.027),
            g("C2", 0.037),
            g("C3", 0.05),
            g("D1", 0.065),
            g("D2", 0.08),
            g("D3", 0.10),
            g("E1", 0.15),
            g("E2", 0.22),
            g("E3", 0.32),
            g("E4", 0.50),
            g("E5", 1.0),
        ])
    }
}

impl MasterScale {
    /// Checks that the bounds increase strictly, end at 1 and the names are distinct.
    pub fn check(self) -> Result<MasterScale, ModelError> {
        let bad = |m: String| Err(ModelError::Config(format!("master scale: {m}")));
        if self.0.is_empty() {
            return bad("no grades".into());
        }
        for (i, g) in self.0.iter().enumerate() {
            if !(g.pd_max > 0.0 && g.pd_max <= 1.0) {
                return bad(format!(
                    "grade {} bound {} is not in (0, 1]",
                    g.name, g.pd_max
                ));
            }
            if i > 0 && g.pd_max <= self.0[i - 1].pd_max {
                return bad(format!(
                    "grade {} bound {} does not exceed the previous grade's",
                    g.name, g.pd_max
                ));
            }
            if self.0[..i].iter().any(|h| h.name == g.name) {
                return bad(format!("grade {} appears twice", g.name));
            }
            // The sub-grades of a public grade are neighbours: B1, B2, C1, not B1, C1, B2.
            let public = yuanxin_domain::public_grade(&g.name);
            if i > 0
                && yuanxin_domain::public_grade(&self.0[i - 1].name) != public
                && self.0[..i]
                    .iter()
                    .any(|h| yuanxin_domain::public_grade(&h.name) == public)
            {
                return bad(format!(
                    "grade {} is apart from the other grades of public grade {public}",
                    g.name
                ));
            }
        }
        if self.0.last().map(|g| g.pd_max) != Some(1.0) {
            return bad("the last grade must end at PD 1".into());
        }
        Ok(self)
    }

    /// The public grades, best first, each once.
    pub fn public_grades(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for g in &self.0 {
            let p = yuanxin_domain::public_grade(&g.name);
            if out.last() != Some(&p) {
                out.push(p);
            }
        }
        out
    }

    /// The grade of a PD.
    pub fn grade(&self, pd: f64) -> &str {
        self.0.get(self.index(pd)).map_or("", |g| g.name.as_str())
    }

    /// The position of a PD's grade on the scale (the last grade for a PD above every
    /// bound).
    pub fn index(&self, pd: f64) -> usize {
        self.0
            .iter()
            .position(|g| pd <= g.pd_max)
            .unwrap_or(self.0.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_600_at_50_to_1_with_pdo_20() {
        let s = Scaling::default();
        assert!((s.factor() - 28.8539).abs() < 1e-4, "{}", s.factor());
        assert!((s.offset() - 487.123).abs() < 1e-3, "{}", s.offset());
        // At 50:1 good:bad the score is 600; doubling the odds adds 20 points.
        assert!((s.score(-(50f64.ln())) - 600.0).abs() < 1e-9);
        assert!((s.score(-(100f64.ln())) - 620.0).abs() < 1e-9);
        assert!((s.logit(s.score(0.3)) - 0.3).abs() < 1e-12);
        assert!(Scaling { pdo: 0.0, ..s }.check().is_err());
    }

    /// Platt's fit and the log loss row by row, as they were before the rows were tallied.
    fn platt_by_rows(z: &[f64], bad: &[bool]) -> (f64, f64) {
        let (mut a, mut b) = (0.0f64, 1.0f64);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (&x, &y) in z.iter().zip(bad) {
                let p = sigmoid(a + b * x);
                let r = p - if y { 1.0 } else { 0.0 };
                let w = (p * (1.0 - p)).max(1e-12);
                ga += r;
                gb += r * x;
                haa += w;
                hab += w * x;
                hbb += w * x * x;
            }
            let det = haa * hbb - hab * hab;
            let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
            a -= da;
            b -= db;
            if da.abs() < 1e-10 && db.abs() < 1e-10 {
                break;
            }
        }
        (a, b)
    }

    /// The isotonic points from the rows: each run of equal log-odds pooled into one block
    /// (summed row by row), then pooled adjacent violators, then the ten-and-ten merge.
    fn pav_by_rows(z: &[f64], bad: &[bool]) -> Vec<(f64, f64)> {
        let mut idx: Vec<usize> = (0..z.len()).collect();
        idx.sort_by(|&a, &b| z[a].total_cmp(&z[b]));
        let mut ties: Vec<(f64, f64, f64)> = Vec::new();
        let mut last = f64::NAN;
        for &i in &idx {
            let y = if bad[i] { 1.0 } else { 0.0 };
            match ties.last_mut() {
                Some(b) if z[i] == last => *b = (b.0 + z[i], b.1 + y, b.2 + 1.0),
                _ => ties.push((z[i], y, 1.0)),
            }
            last = z[i];
        }
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        for t in ties {
            blocks.push(t);
            while blocks.len() > 1 {
                let k = blocks.len();
                let (p, q) = (blocks[k - 2], blocks[k - 1]);
                if p.1 / p.2 < q.1 / q.2 {
                    break;
                }
                blocks.truncate(k - 2);
                blocks.push((p.0 + q.0, p.1 + q.1, p.2 + q.2));
            }
        }
        let mut merged: Vec<(f64, f64, f64)> = Vec::new();
        let mut run = (0.0, 0.0, 0.0);
        for b in blocks {
            run = (run.0 + b.0, run.1 + b.1, run.2 + b.2);
            if run.1 >= 10.0 && run.2 - run.1 >= 10.0 {
                merged.push(run);
                run = (0.0, 0.0, 0.0);
            }
        }
        if run.2 > 0.0 {
            match merged.last_mut() {
                Some(l) => *l = (l.0 + run.0, l.1 + run.1, l.2 + run.2),
                None => merged.push(run),
            }
        }
        merged
            .iter()
            .map(|&(sz, b, n)| (sz / n, (b / n).clamp(PD_EDGE, 1.0 - PD_EDGE)))
            .collect()
    }

    fn loss_by_rows(c: &Calibration, z: &[f64], bad: &[bool]) -> f64 {
        z.iter()
            .zip(bad)
            .map(|(&x, &y)| {
                let p = c.pd(x).clamp(PD_EDGE, 1.0 - PD_EDGE);
                -if y { p.ln() } else { (1.0 - p).ln() }
            })
            .sum()
    }

    #[test]
    fn tallied_calibration_is_the_row_by_row_one() {
        // A scorecard's log-odds: few distinct values, many ties, in no order.
        let n = 6000;
        let z: Vec<f64> = (0..n)
            .map(|i| -3.0 + 0.25 * ((i * 7919) % 23) as f64)
            .collect();
        let bad: Vec<bool> = (0..n)
            .map(|i| ((i * 104_729) % 1000) as f64 / 1000.0 < sigmoid(0.3 + 0.9 * z[i]))
            .collect();
        let (a, b) = platt_by_rows(&z, &bad);
        let c = Calibration::fit(&z, &bad);
        assert!(
            (c.a - a).abs() < 1e-9 && (c.b - b).abs() < 1e-9,
            "{c:?} vs {a} {b}"
        );
        // Each fold measured on its own rows, as row by row.
        let folds = Tally::by_fold(&z, &bad, 5);
        let all = Tally::sum(&folds);
        assert_eq!(all.rows.iter().sum::<f64>(), n as f64);
        assert_eq!(all.z.len(), 23);
        for (f, fold) in folds.iter().enumerate() {
            let pick = |keep: bool| -> (Vec<f64>, Vec<bool>) {
                (0..n)
                    .filter(|i| (i % 5 == f) == keep)
                    .map(|i| (z[i], bad[i]))
                    .unzip()
            };
            let (zt, bt) = pick(false);
            let (zv, bv) = pick(true);
            let (a, b) = platt_by_rows(&zt, &bt);
            let by_rows = [
                Calibration {
                    a,
                    b,
                    ..Calibration::IDENTITY
                },
                Calibration {
                    isotonic: pav_by_rows(&zt, &bt),
                    ..Calibration::IDENTITY
                },
            ];
            let iso = Calibration::pav(&all.minus(fold));
            assert_eq!(iso.isotonic.len(), by_rows[1].isotonic.len());
            for (p, q) in iso.isotonic.iter().zip(&by_rows[1].isotonic) {
                assert!(
                    (p.0 - q.0).abs() < 1e-12 && (p.1 - q.1).abs() < 1e-12,
                    "{p:?} {q:?}"
                );
            }
            for (tallied, rows) in [Calibration::platt(&all.minus(fold), (0.0, 1.0)), iso]
                .iter()
                .zip(&by_rows)
            {
                let (x, y) = (fold.log_loss(tallied), loss_by_rows(rows, &zv, &bv));
                assert!((x - y).abs() < 1e-9 * y, "fold {f}: {x} vs {y}");
            }
        }
        let chosen = Calibration::choose(&z, &bad, "rows");
        assert!(chosen.fitted.contains("6000 rows"), "{}", chosen.fitted);
    }

    #[test]
    fn calibration_recovers_a_known_curve() {
        let z: Vec<f64> = (0..400).map(|i| -4.0 + i as f64 * 0.02).collect();
        // Outcomes with PD = σ(0.5 + 2z) exactly in proportion: 400 rows per z-step.
        let mut zz = Vec::new();
        let mut yy = Vec::new();
        for &x in &z {
            let p = sigmoid(0.5 + 2.0 * x);
            for k in 0..400 {
                zz.push(x);
                yy.push((k as f64 + 0.5) / 400.0 < p);
            }
        }
        let c = Calibration::fit(&zz, &yy);
        assert!(
            (c.a - 0.5).abs() < 0.02 && (c.b - 2.0).abs() < 0.02,
            "{c:?}"
        );
    }

    #[test]
    fn master_scale_grades_and_checks() {
        let m = MasterScale::default().check().unwrap();
        assert_eq!(m.grade(0.001), "A+");
        assert_eq!(m.grade(0.005), "A+");
        assert_eq!(m.grade(0.0051), "A");
        assert_eq!(m.grade(0.015), "B2");
        assert_eq!(m.grade(0.5), "E4");
        assert_eq!(m.grade(0.51), "E5");
        assert_eq!(m.public_grades(), ["A+", "A", "B", "C", "D", "E"]);
        // The public grades keep the bounds of the six-grade convention.
        for (public, bound) in [("A", 0.01), ("B", 0.02), ("C", 0.05), ("D", 0.10)] {
            let last =
                m.0.iter()
                    .rev()
                    .find(|g| yuanxin_domain::public_grade(&g.name) == public);
            assert_eq!(last.map(|g| g.pd_max), Some(bound));
        }
        let mut apart = MasterScale::default();
        apart.0.swap(3, 5);
        apart.0[3].pd_max = 0.016;
        apart.0[5].pd_max = 0.027;
        assert!(
            apart
                .clone()
                .check()
                .unwrap_err()
                .to_string()
                .contains("apart"),
            "{apart:?}"
        );
        let mut bad = MasterScale::default();
        bad.0[2].pd_max = 0.009;
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("does not exceed"));
        let mut bad = MasterScale::default();
        bad.0[15].pd_max = 0.9;
        assert!(bad.check().is_err());
    }
}
