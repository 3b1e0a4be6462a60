//! Improvement hints for a merchant, computed from the scorecard's points table: for a
//! characteristic where the merchant sits in a bin with fewer points, the nearest bin that
//! gives more, the value that reaches it, and what it is worth in points (and in PD and
//! grade). Nothing here is canned text: every figure comes from the model.

use serde::{Deserialize, Serialize};
use yuanxin_model::binning::{Rule, Slot, Value};
use yuanxin_model::{Model, Predictor};

/// One hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hint {
    /// Characteristic.
    pub feature: String,
    /// Chinese display name.
    pub name_zh: String,
    /// English display name.
    pub name_en: String,
    /// The merchant's value, formatted with its unit.
    pub from: String,
    /// The value to reach, formatted (`≥ 60%` or `< 3`).
    pub to: String,
    /// Points gained.
    pub points: f64,
    /// PD after the change alone.
    pub pd_after: f64,
    /// Grade after the change alone.
    pub grade_after: String,
    /// The hint in Chinese.
    pub text_zh: String,
    /// The hint in English.
    pub text_en: String,
}

fn unit_of(feature: &str) -> &'static str {
    yuanxin_profile::FEATURES
        .iter()
        .find(|f| f.name == feature)
        .map_or("", |f| f.unit)
}

/// A value as people read it, by the catalogue's unit.
fn show(v: f64, unit: &str) -> String {
    match unit {
        "share" => format!("{:.0}%", v * 100.0),
        "yuan" => format!("{v:.0} yuan"),
        "count" | "days" | "months" | "flag" => format!("{v:.0}"),
        _ => format!("{v:.2}"),
    }
}

fn show_zh(v: f64, unit: &str) -> String {
    match unit {
        "yuan" => format!("{v:.0}元"),
        "days" => format!("{v:.0}天"),
        "months" => format!("{v:.0}个月"),
        _ => show(v, unit),
    }
}

/// Up to `max` hints for a merchant whose characteristics are given by `value` (None =
/// missing), best first. Empty for models without a points table.
pub fn hints(
    model: &Model,
    score: i64,
    value: &dyn Fn(&str) -> Option<f64>,
    max: usize,
) -> Vec<Hint> {
    let Predictor::Scorecard(card) = &model.predictor else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (c, f) in card.characteristics.iter().zip(&model.features) {
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
        // Only moves the catalogue agrees lower risk: down for "higher is riskier", up for
        // "higher is safer"; none for characteristics without a direction.
        let direction = yuanxin_profile::FEATURES
            .iter()
            .find(|x| x.name == f.name)
            .map(|x| x.direction);
        let allowed = |i: usize| match direction {
            Some(yuanxin_profile::Direction::Up) => i < cur,
            Some(yuanxin_profile::Direction::Down) => i > cur,
            Some(yuanxin_profile::Direction::Either) => false,
            None => true,
        };
        // The nearest such bin (in value order) with more points; ties go to the larger gain.
        let target = (0..c.points.len())
            .filter(|&i| allowed(i) && c.binning.bins[i].count > 0 && c.points[i] > here + 0.5)
            .min_by(|&a, &b| {
                a.abs_diff(cur)
                    .cmp(&b.abs_diff(cur))
                    .then(c.points[b].total_cmp(&c.points[a]))
            });
        let Some(t) = target else { continue };
        let gain = c.points[t] - here;
        let unit = unit_of(&f.name);
        let (to, to_zh, verb_en, verb_zh) = if t > cur {
            let edge = cuts[t - 1];
            (
                format!("≥ {}", show(edge, unit)),
                format!("不低于{}", show_zh(edge, unit)),
                "Raise",
                "提高",
            )
        } else {
            let edge = cuts[t];
            (
                format!("< {}", show(edge, unit)),
                format!("低于{}", show_zh(edge, unit)),
                "Lower",
                "降低",
            )
        };
        let new_score = score as f64 + gain;
        let pd_after = model.calibration.pd(model.scaling.logit(new_score));
        let grade_after = model.master_scale.grade(pd_after).to_owned();
        let pts = gain.round();
        out.push(Hint {
            feature: f.name.clone(),
            name_zh: f.name_zh.clone(),
            name_en: f.name_en.clone(),
            from: show(x, unit),
            to: to.clone(),
            points: (gain * 100.0).round() / 100.0,
            text_zh: format!("将{}从{}{}到{}：约+{pts:.0}分（违约概率{:.2}%，等级{grade_after}）", f.name_zh, show_zh(x, unit), verb_zh, to_zh, pd_after * 100.0),
            text_en: format!("{verb_en} {} from {} to {to}: about +{pts:.0} points (PD {:.2}%, grade {grade_after})", f.name_en.to_lowercase(), show(x, unit), pd_after * 100.0),
            pd_after,
            grade_after,
        });
    }
    out.sort_by(|a, b| {
        b.points
            .total_cmp(&a.points)
            .then_with(|| a.feature.cmp(&b.feature))
    });
    out.truncate(max);
    out
}
