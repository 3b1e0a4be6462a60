//! Champion and challenger: how each model does on the same out-of-time rows
//! (discrimination, calibration per grade) and how far the current population has moved
//! from its training sample (PSI), and the gate a challenger must pass to become champion.
//! The numbers come from the same functions as training's evaluation, so a comparison and
//! a training report never disagree.

use serde::{Deserialize, Serialize};

use yuanxin_domain::vocabulary::columns;

use crate::frame::{split_column, Column, Frame, Set};
use crate::metrics::{evaluate, Evaluation};
use crate::model::{Method, Model};
use crate::train::{max_as_of, unusable_labels, Predictions};
use crate::ModelError;

/// One model measured on a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Model id.
    pub model: String,
    /// Its method.
    pub method: Method,
    /// Which rows were measured: `test` (the table's split) or `all`.
    pub set: String,
    /// Rows it could not score.
    pub unscorable: u64,
    /// Metrics, calibration and calibration per grade on those rows.
    pub evaluation: Evaluation,
    /// PSI of the scores of the current population (the table's latest as-of date, or
    /// every row of a table without one) against the model's training sample; `None` for
    /// a model file without a baseline.
    pub psi: Option<f64>,
    /// Rows of the current population.
    pub current_rows: u64,
}

impl Assessment {
    /// Gini (2·AUC − 1).
    pub fn gini(&self) -> f64 {
        self.evaluation.metrics.gini
    }
}

/// Measures a model on a table: the out-of-time rows (`split`, else the table's own
/// `split` column; its test rows, or every row when it names none), and the PSI of the
/// current population. Rows whose label window is not `ok` are left out, as in training.
pub fn assess(
    model: &Model,
    frame: &Frame,
    split: Option<Vec<Option<Set>>>,
) -> Result<(Assessment, Predictions), ModelError> {
    let target = frame.target(&model.target)?;
    let sets = split.or_else(|| split_column(frame));
    let has_test = sets.as_ref().is_some_and(|s| s.contains(&Some(Set::Test)));
    let measured = |i: usize| !has_test || sets.as_ref().is_some_and(|s| s[i] == Some(Set::Test));
    let unusable = unusable_labels(frame, None);
    let logits = model.logits(frame)?;
    let mut p = Predictions {
        set: if has_test { "test" } else { "all" }.into(),
        score: Vec::new(),
        pd: Vec::new(),
        bad: Vec::new(),
    };
    let mut unscorable = 0u64;
    for (i, z) in logits.iter().enumerate() {
        if !measured(i) || unusable[i].is_some() {
            continue;
        }
        match (z, target[i]) {
            (Ok(z), Some(y)) => {
                p.score.push(model.scaling.score(*z));
                p.pd.push(model.calibration.pd(*z));
                p.bad.push(y);
            }
            (Err(_), Some(_)) => unscorable += 1,
            (_, None) => {}
        }
    }
    if p.bad.is_empty() {
        return Err(ModelError::Data(format!(
            "no row of the table has both a score from {} and an outcome in {}",
            model.id, model.target
        )));
    }
    // The current population: the latest as-of date of a panel.
    let latest = max_as_of(frame);
    let current: Vec<f64> = logits
        .iter()
        .enumerate()
        .filter(|(i, _)| match (&latest, frame.column(columns::AS_OF)) {
            (Some(l), Some(Column::Cat(v))) => v[*i].as_ref() == Some(l),
            _ => true,
        })
        .filter_map(|(_, z)| z.as_ref().ok().map(|&z| model.scaling.score(z)))
        .collect();
    let psi = model.baseline.as_ref().map(|b| b.score.psi(&current));
    let evaluation = evaluate(&p.pd, &p.bad, None, &model.master_scale);
    Ok((
        Assessment {
            model: model.id.clone(),
            method: model.method,
            set: p.set.clone(),
            unscorable,
            evaluation,
            psi,
            current_rows: current.len() as u64,
        },
        p,
    ))
}

/// What a challenger must show to become champion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// The most out-of-time Gini it may lose against the champion.
    pub max_gini_drop: f64,
    /// The highest PSI of the current population against its training sample.
    pub max_psi: f64,
}

impl Default for Gate {
    /// Two points of Gini (about the noise of a test set of a few thousand rows with a few
    /// hundred bads), and the trade's 0.25 for a population that has shifted.
    fn default() -> Gate {
        Gate {
            max_gini_drop: 0.02,
            max_psi: 0.25,
        }
    }
}

impl Gate {
    /// Why the challenger may not become champion (empty: it may). The champion is `None`
    /// when there is none yet; then only calibration and stability are checked.
    pub fn check(&self, champion: Option<&Assessment>, challenger: &Assessment) -> Vec<String> {
        let mut why = Vec::new();
        if let Some(c) = champion {
            if challenger.gini() < c.gini() - self.max_gini_drop {
                why.push(format!(
                    "out-of-time Gini {:.4} is more than {} below the champion's {:.4} ({})",
                    challenger.gini(),
                    self.max_gini_drop,
                    c.gini(),
                    c.model
                ));
            }
        }
        let red: Vec<&str> = challenger
            .evaluation
            .grades
            .iter()
            .filter(|g| g.light == "red")
            .map(|g| g.grade.as_str())
            .collect();
        if !red.is_empty() {
            why.push(format!(
                "calibration fails in grade {}: more bads than the 99.9 % binomial band of its PD allows",
                red.join(", ")
            ));
        }
        match challenger.psi {
            Some(psi) if psi > self.max_psi => why.push(format!(
                "PSI {psi:.4} of the current population against its training sample exceeds {}",
                self.max_psi
            )),
            Some(_) => {}
            None => {
                why.push("the model file has no training baseline to measure PSI against".into())
            }
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{GradeRow, Metrics};

    fn side(gini: f64, light: &str, psi: Option<f64>) -> Assessment {
        Assessment {
            model: "m".into(),
            method: Method::Scorecard,
            set: "test".into(),
            unscorable: 0,
            evaluation: Evaluation {
                metrics: Metrics {
                    n: 100,
                    events: 10,
                    auc: (gini + 1.0) / 2.0,
                    gini,
                    ks: 0.0,
                    brier: 0.0,
                    log_loss: 0.0,
                },
                calibration: Vec::new(),
                gains: Vec::new(),
                segments: Vec::new(),
                grades: vec![GradeRow {
                    grade: "B1".into(),
                    n: 100,
                    share: 1.0,
                    mean_pd: 0.1,
                    events: 10,
                    band: (2, 20),
                    light: light.into(),
                }],
            },
            psi,
            current_rows: 100,
        }
    }

    #[test]
    fn the_gate_names_every_failure() {
        let gate = Gate::default();
        let champion = side(0.60, "green", Some(0.01));
        assert!(gate
            .check(Some(&champion), &side(0.59, "yellow", Some(0.2)))
            .is_empty());
        assert!(gate
            .check(None, &side(0.10, "green", Some(0.01)))
            .is_empty());
        let why = gate.check(Some(&champion), &side(0.57, "red", Some(0.3)));
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].contains("Gini") && why[1].contains("grade B1") && why[2].contains("PSI"));
        assert_eq!(gate.check(None, &side(0.6, "green", None)).len(), 1);
    }
}
