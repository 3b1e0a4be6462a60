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

/// Probability of default from the score: PD = σ(a + b · logit(score)), fitted by maximum
/// likelihood (Newton's method) on the calibration sample. For a logistic scorecard on its
/// own training rows a ≈ 0 and b ≈ 1; boosted trees usually need it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Intercept.
    pub a: f64,
    /// Slope on the score's log-odds.
    pub b: f64,
}

impl Calibration {
    /// The identity calibration.
    pub const IDENTITY: Calibration = Calibration { a: 0.0, b: 1.0 };

    /// Fits the calibration to log-odds `z` and outcomes.
    pub fn fit(z: &[f64], bad: &[bool]) -> Calibration {
        let (mut a, mut b) = (0.0f64, 1.0f64);
        for _ in 0..100 {
            // Gradient and Hessian of the negative log-likelihood.
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
        Calibration { a, b }
    }

    /// PD at a log-odds.
    pub fn pd(&self, z: f64) -> f64 {
        sigmoid(self.a + self.b * z)
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
    /// A+ ≤ 0.5 %, A ≤ 1 %, B ≤ 2 %, C ≤ 5 %, D ≤ 10 %, E above: the six grades of the
    /// Shenzhen convention, with bounds doubling roughly per grade.
    fn default() -> MasterScale {
        let g = |name: &str, pd_max| Grade {
            name: name.into(),
            pd_max,
        };
        MasterScale(vec![
            g("A+", 0.005),
            g("A", 0.01),
            g("B", 0.02),
            g("C", 0.05),
            g("D", 0.10),
            g("E", 1.0),
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
        }
        if self.0.last().map(|g| g.pd_max) != Some(1.0) {
            return bad("the last grade must end at PD 1".into());
        }
        Ok(self)
    }

    /// The grade of a PD.
    pub fn grade(&self, pd: f64) -> &str {
        self.0
            .iter()
            .find(|g| pd <= g.pd_max)
            .or(self.0.last())
            .map_or("", |g| g.name.as_str())
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
        assert_eq!(m.grade(0.5), "E");
        let mut bad = MasterScale::default();
        bad.0[2].pd_max = 0.009;
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("does not exceed"));
        let mut bad = MasterScale::default();
        bad.0[5].pd_max = 0.9;
        assert!(bad.check().is_err());
    }
}
