//! Early-warning alerts for lenders watching merchants they lend to: escrow coverage
//! falling or below the custody floor, a spike in prepaid sales (the classic run-up to a
//! "卷款跑路" closure), a surge in complaints or refund requests, a grade downgrade since
//! the lender last looked, and the merchant's closure itself. Pure: the profile, the grade
//! now (or the closure) and what the lender saw last time come in as arguments.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use serde::{Deserialize, Serialize};
use yuanxin_domain::{known, public_grade};

/// Thresholds, from `[alerts]` in the policy file (every key optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// Escrow coverage (frozen funds / prepaid liability) below this is an alert.
    pub coverage_floor: f64,
    /// A fall in escrow coverage of at least this much since the lender's last look.
    pub coverage_drop: f64,
    /// z-score of the last 30 days' prepaid sales against the 11 periods before.
    pub prepaid_spike_z: f64,
    /// Complaints about closure or refunds in the last 30 days.
    pub closure_complaints_30d: f64,
    /// Rise in refund requests, last 30 days against the 30 before.
    pub refund_requests_rise_30d: f64,
}

impl Default for AlertRules {
    /// Coverage below 40 % (Beijing's and Shanghai's custody rule) or down 10 points, a
    /// prepaid-sales z-score of 3, three closure or refund complaints in a month, five more
    /// refund requests than the month before.
    fn default() -> AlertRules {
        AlertRules {
            coverage_floor: 0.4,
            coverage_drop: 0.10,
            prepaid_spike_z: 3.0,
            closure_complaints_30d: 3.0,
            refund_requests_rise_30d: 5.0,
        }
    }
}

/// What the lender was shown last time.
#[derive(Debug, Clone, PartialEq)]
pub struct LastSeen {
    /// Grade then.
    pub grade: String,
    /// Escrow coverage then.
    pub escrow_coverage: Option<f64>,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Stable code.
    pub code: &'static str,
    /// Chinese.
    pub text_zh: String,
    /// English.
    pub text_en: String,
    /// The value that triggered it.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
}

/// Where a merchant stands now: graded, or closed (and so not graded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing<'a> {
    /// Trading, with this grade.
    Graded(&'a str),
    /// Closed on this day (no store open).
    Closed(NaiveDate),
}

fn get(f: &BTreeMap<String, Option<f64>>, name: &str) -> Option<f64> {
    f.get(name).copied().flatten().filter(|v| v.is_finite())
}

/// The alerts a merchant's current profile and standing raise. `grades` lists the master
/// scale's grades from best to worst, to tell a downgrade of public grade. A closure is always an alert
/// (the first), for as long as the merchant stays closed: a lender holding its consent has
/// a loan or an application to act on.
pub fn alerts(
    features: &BTreeMap<String, Option<f64>>,
    standing: Standing<'_>,
    grades: &[String],
    last: Option<&LastSeen>,
    rules: &AlertRules,
) -> Vec<Alert> {
    let mut out = Vec::new();
    let grade = match standing {
        Standing::Graded(g) => Some(g),
        Standing::Closed(on) => {
            out.push(Alert {
                code: "MERCHANT_CLOSED",
                text_zh: format!("商户已于 {on} 停业（无营业中的门店）"),
                text_en: format!("The merchant closed on {on}: no store is open"),
                value: get(features, known!("stores_open")).unwrap_or(0.0),
                threshold: 1.0,
            });
            None
        }
    };
    let coverage = get(features, known!("escrow_coverage"));
    let liability = get(features, known!("prepaid_liability")).unwrap_or(0.0);
    if let Some(c) = coverage.filter(|_| liability > 0.0) {
        if c < rules.coverage_floor {
            out.push(Alert {
                code: "ESCROW_COVERAGE_LOW",
                text_zh: format!(
                    "资金存管覆盖率 {:.0}%，低于 {:.0}%",
                    c * 100.0,
                    rules.coverage_floor * 100.0
                ),
                text_en: format!(
                    "Escrow covers {:.0} % of prepaid liability, below {:.0} %",
                    c * 100.0,
                    rules.coverage_floor * 100.0
                ),
                value: c,
                threshold: rules.coverage_floor,
            });
        }
        if let Some(before) = last.and_then(|l| l.escrow_coverage) {
            if before - c >= rules.coverage_drop {
                out.push(Alert {
                    code: "ESCROW_COVERAGE_FALLING",
                    text_zh: format!(
                        "资金存管覆盖率由 {:.0}% 降至 {:.0}%",
                        before * 100.0,
                        c * 100.0
                    ),
                    text_en: format!(
                        "Escrow coverage fell from {:.0} % to {:.0} % since the last query",
                        before * 100.0,
                        c * 100.0
                    ),
                    value: before - c,
                    threshold: rules.coverage_drop,
                });
            }
        }
    }
    if let Some(z) =
        get(features, known!("new_prepay_spike_z")).filter(|&z| z >= rules.prepaid_spike_z)
    {
        out.push(Alert {
            code: "PREPAID_SALES_SPIKE",
            text_zh: format!("近30天预付销售额异常激增（z = {z:.1}）"),
            text_en: format!("Prepaid sales in the last 30 days spiked (z = {z:.1})"),
            value: z,
            threshold: rules.prepaid_spike_z,
        });
    }
    if let Some(n) = get(features, known!("closure_refund_complaints_30d"))
        .filter(|&n| n >= rules.closure_complaints_30d)
    {
        out.push(Alert {
            code: "COMPLAINT_SURGE",
            text_zh: format!("近30天闭店/退款类投诉 {n:.0} 起"),
            text_en: format!("{n:.0} complaints about closure or refunds in the last 30 days"),
            value: n,
            threshold: rules.closure_complaints_30d,
        });
    }
    if let Some(n) = get(features, known!("refund_requests_change_30d"))
        .filter(|&n| n >= rules.refund_requests_rise_30d)
    {
        out.push(Alert {
            code: "REFUND_REQUESTS_RISING",
            text_zh: format!("退款申请较上月增加 {n:.0} 笔"),
            text_en: format!("{n:.0} more refund requests than the month before"),
            value: n,
            threshold: rules.refund_requests_rise_30d,
        });
    }
    if let (Some(l), Some(grade)) = (last, grade) {
        // A downgrade is a move to a worse public grade (B to C), not between sub-grades
        // (B1 to B2), which a month's noise can cross.
        let mut publics: Vec<&str> = grades.iter().map(|g| public_grade(g)).collect();
        publics.dedup();
        let rank = |g: &str| publics.iter().position(|x| *x == public_grade(g));
        if let (Some(now), Some(then)) = (rank(grade), rank(&l.grade)) {
            if now > then {
                out.push(Alert {
                    code: "GRADE_DOWNGRADE",
                    text_zh: format!("评级由 {} 下调至 {grade}", l.grade),
                    text_en: format!(
                        "Grade downgraded from {} to {grade} since the last query",
                        l.grade
                    ),
                    #[allow(clippy::cast_precision_loss)]
                    value: (now - then) as f64,
                    threshold: 1.0,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grades() -> Vec<String> {
        ["A+", "A", "B1", "B2", "B3", "C1", "C2", "C3", "D1", "E1"]
            .map(String::from)
            .to_vec()
    }

    fn profile(pairs: &[(&str, f64)]) -> BTreeMap<String, Option<f64>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some(*v)))
            .collect()
    }

    #[test]
    fn a_healthy_merchant_raises_nothing() {
        let f = profile(&[
            ("escrow_coverage", 0.9),
            ("prepaid_liability", 10_000.0),
            ("new_prepay_spike_z", 0.5),
            ("closure_refund_complaints_30d", 0.0),
            ("refund_requests_change_30d", -1.0),
        ]);
        let last = LastSeen {
            grade: "B1".into(),
            escrow_coverage: Some(0.92),
        };
        assert!(alerts(
            &f,
            Standing::Graded("A"),
            &grades(),
            Some(&last),
            &AlertRules::default()
        )
        .is_empty());
    }

    #[test]
    fn each_rule_fires_at_its_threshold() {
        let f = profile(&[
            ("escrow_coverage", 0.35),
            ("prepaid_liability", 10_000.0),
            ("new_prepay_spike_z", 3.0),
            ("closure_refund_complaints_30d", 3.0),
            ("refund_requests_change_30d", 5.0),
        ]);
        let last = LastSeen {
            grade: "B3".into(),
            escrow_coverage: Some(0.45),
        };
        let codes: Vec<&str> = alerts(
            &f,
            Standing::Graded("C1"),
            &grades(),
            Some(&last),
            &AlertRules::default(),
        )
        .iter()
        .map(|a| a.code)
        .collect();
        assert_eq!(
            codes,
            [
                "ESCROW_COVERAGE_LOW",
                "ESCROW_COVERAGE_FALLING",
                "PREPAID_SALES_SPIKE",
                "COMPLAINT_SURGE",
                "REFUND_REQUESTS_RISING",
                "GRADE_DOWNGRADE"
            ]
        );
        // Without a previous look there is nothing to compare with.
        let codes: Vec<&str> = alerts(
            &f,
            Standing::Graded("C1"),
            &grades(),
            None,
            &AlertRules::default(),
        )
        .iter()
        .map(|a| a.code)
        .collect();
        assert!(!codes.contains(&"GRADE_DOWNGRADE") && !codes.contains(&"ESCROW_COVERAGE_FALLING"));
        // A move between sub-grades of one public grade is not a downgrade.
        let within = LastSeen {
            grade: "C1".into(),
            escrow_coverage: None,
        };
        let codes: Vec<&str> = alerts(
            &f,
            Standing::Graded("C3"),
            &grades(),
            Some(&within),
            &AlertRules::default(),
        )
        .iter()
        .map(|a| a.code)
        .collect();
        assert!(!codes.contains(&"GRADE_DOWNGRADE"), "{codes:?}");
    }

    #[test]
    fn no_liability_means_no_coverage_alert() {
        let f = profile(&[("escrow_coverage", 0.0), ("prepaid_liability", 0.0)]);
        assert!(alerts(
            &f,
            Standing::Graded("A"),
            &grades(),
            None,
            &AlertRules::default()
        )
        .is_empty());
    }

    #[test]
    fn a_closure_is_an_alert_and_nothing_is_graded() {
        let f = profile(&[("stores_open", 0.0), ("closure_refund_complaints_30d", 4.0)]);
        let last = LastSeen {
            grade: "A".into(),
            escrow_coverage: None,
        };
        let on = NaiveDate::from_ymd_opt(2025, 3, 9).unwrap();
        let got = alerts(
            &f,
            Standing::Closed(on),
            &grades(),
            Some(&last),
            &AlertRules::default(),
        );
        let codes: Vec<&str> = got.iter().map(|a| a.code).collect();
        assert_eq!(codes, ["MERCHANT_CLOSED", "COMPLAINT_SURGE"]);
        assert!(got[0].text_en.contains("2025-03-09"));
    }
}
