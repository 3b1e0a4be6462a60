//! Improvement hints: the model's point gains ([`PointGain`]) on characteristics a merchant
//! can act on, worded in Chinese and English with the vocabulary's units. Every figure
//! comes from the model; this file only words them.

use serde::{Deserialize, Serialize};
use yuanxin_domain::vocabulary::{characteristic, is_actionable};
use yuanxin_domain::PointGain;

/// One hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    characteristic(feature).map_or("", |f| f.unit)
}

/// A value as people read it, by the vocabulary's unit.
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

/// Up to `max` hints from a model's gains, best first: only on characteristics the
/// merchant can act on, and only where the target reads differently from the value now
/// (never "from 23 to ≥ 23").
pub fn hints(gains: &[PointGain], max: usize) -> Vec<Hint> {
    let mut out: Vec<Hint> = gains
        .iter()
        .filter(|g| is_actionable(&g.feature))
        .filter_map(|g| {
            let unit = unit_of(&g.feature);
            let (from, edge) = (show(g.value, unit), show(g.edge, unit));
            if from == edge {
                return None;
            }
            let (to, to_zh, verb_en, verb_zh) = if g.raise {
                (
                    format!("≥ {edge}"),
                    format!("不低于{}", show_zh(g.edge, unit)),
                    "Raise",
                    "提高",
                )
            } else {
                (
                    format!("< {edge}"),
                    format!("低于{}", show_zh(g.edge, unit)),
                    "Lower",
                    "降低",
                )
            };
            let pts = g.points.round();
            let (pd, grade) = (g.pd_after * 100.0, &g.grade_after);
            Some(Hint {
                feature: g.feature.clone(),
                name_zh: g.name_zh.clone(),
                name_en: g.name_en.clone(),
                text_zh: format!("将{}从{}{}到{}：约+{pts:.0}分（违约概率{pd:.2}%，等级{grade}）", g.name_zh, show_zh(g.value, unit), verb_zh, to_zh),
                text_en: format!("{verb_en} {} from {from} to {to}: about +{pts:.0} points (PD {pd:.2}%, grade {grade})", g.name_en.to_lowercase()),
                from,
                to,
                points: (g.points * 100.0).round() / 100.0,
                pd_after: g.pd_after,
                grade_after: g.grade_after.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.points
            .total_cmp(&a.points)
            .then_with(|| a.feature.cmp(&b.feature))
    });
    out.truncate(max);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gain(feature: &str, value: f64, edge: f64, points: f64) -> PointGain {
        PointGain {
            feature: feature.into(),
            name_zh: "名".into(),
            name_en: "Name".into(),
            value,
            edge,
            raise: true,
            points,
            pd_after: 0.01,
            grade_after: "A".into(),
        }
    }

    #[test]
    fn hints_name_only_what_the_merchant_can_change_and_a_target_not_yet_reached() {
        let got = hints(
            &[
                gain("months_since_registration", 10.0, 24.0, 30.0),
                gain("stores_open", 1.0, 2.0, 5.0),
                gain("complaints_90d", 22.6, 23.0, 9.0),
                gain("escrow_coverage", 0.4, 0.6, 12.0),
            ],
            4,
        );
        let names: Vec<&str> = got.iter().map(|h| h.feature.as_str()).collect();
        assert_eq!(names, ["escrow_coverage", "stores_open"]);
        assert_eq!(got[0].from, "40%");
        assert_eq!(got[0].to, "≥ 60%");
    }
}
