//! Point gains for a merchant, from the scorecard's points table: for a characteristic
//! where the merchant sits in a bin with fewer points, the nearest bin that gives more (in
//! the direction the vocabulary says lowers risk), the edge that reaches it, and what it is
//! worth in points, PD and grade. Decisions turn these into hints; nothing here is text.

use yuanxin_domain::vocabulary::{characteristic, Direction};
use yuanxin_domain::PointGain;

use crate::binning::{Rule, Slot, Value};
use crate::{Model, Predictor};

impl Model {
    /// One gain per characteristic that has one, for a merchant scored `score` whose
    /// characteristics are given by `value` (None = missing). Empty for models without a
    /// points table.
    pub fn gains(&self, score: i64, value: &dyn Fn(&str) -> Option<f64>) -> Vec<PointGain> {
        let Predictor::Scorecard(card) = &self.predictor else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (c, f) in card.characteristics.iter().zip(&self.features) {
            let Rule::Numeric { cuts, .. } = &c.binning.rule else {
                continue;
            };
            let Some(x) = value(&f.name) else { continue };
            let Slot::Bin(cur) = c.binning.slot(Value::Num(x)) else {
                continue;
            };
            let Some(here) = c.points(Slot::Bin(cur)) else {
                continue;
            };
            // Only moves the vocabulary agrees lower risk: down for "higher is riskier", up
            // for "higher is safer"; none for characteristics without a direction.
            let direction = characteristic(&f.name).map(|x| x.direction);
            let allowed = |i: usize| match direction {
                Some(Direction::Up) => i < cur,
                Some(Direction::Down) => i > cur,
                Some(Direction::Either) => false,
                None => true,
            };
            // The nearest such bin (in value order) with more points; ties go to the
            // larger gain.
            let target = (0..c.points.len())
                .filter(|&i| allowed(i) && c.binning.bins[i].count > 0 && c.points[i] > here + 0.5)
                .min_by(|&a, &b| {
                    a.abs_diff(cur)
                        .cmp(&b.abs_diff(cur))
                        .then(c.points[b].total_cmp(&c.points[a]))
                });
            let Some(t) = target else { continue };
            let raise = t > cur;
            let Some(&edge) = cuts.get(if raise { t - 1 } else { t }) else {
                continue;
            };
            let gain = c.points[t] - here;
            let pd_after = self.calibration.pd(self.scaling.logit(score as f64 + gain));
            out.push(PointGain {
                feature: f.name.clone(),
                name_zh: f.name_zh.clone(),
                name_en: f.name_en.clone(),
                value: x,
                edge,
                raise,
                points: gain,
                pd_after,
                grade_after: self.master_scale.grade(pd_after).to_owned(),
            });
        }
        out
    }
}
