//! The two versioned configuration files a decision reads: the **policy** (knock-outs,
//! actions per grade, limits per industry, pricing, the dated LPR table) and the
//! **catalogue** (banks' credit products and government support schemes). Both are TOML,
//! parsed with unknown fields refused and then checked, so a mistake is reported by name
//! at load time instead of surfacing as a strange decision.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use yuanxin_domain::{public_grade, Industry};

use crate::DecisionError;

/// What a grade leads to before the other rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Approve if the rest allows.
    Approve,
    /// Send to manual review.
    Refer,
    /// Decline.
    Decline,
}

/// A set of grades and what they lead to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeBand {
    /// Grades in the band: master-scale grades (`B2`) or public grades (`B`, for all of
    /// its sub-grades).
    pub grades: Vec<String>,
    /// What they lead to.
    pub action: Action,
}

/// Knock-out rules: any one declines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knockouts {
    /// Decline at or above this many days past due on a current loan.
    pub max_current_dpd: u32,
    /// Decline while the merchant is listed for abnormal operation.
    pub abnormal_listing: bool,
    /// Decline when escrow custody does not meet the rule (`custody_compliant` = 0).
    pub custody_noncompliant: bool,
    /// Decline when the profile is flagged `insufficient_data`. (A merchant that has
    /// closed is always declined: there is no switch for that.)
    pub insufficient_data: bool,
}

/// Limit settings of one industry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndustryLimit {
    /// Limit as a multiple of escrow-verified monthly revenue.
    pub revenue_multiple: Decimal,
    /// Share of revenue taken as cash available for debt service (an EBITDA proxy).
    pub operating_margin: Decimal,
    /// Largest limit in this industry, in yuan.
    pub max_amount: Decimal,
}

/// Limit settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitPolicy {
    /// Minimum debt-service coverage ratio.
    pub dscr_min: Decimal,
    /// Share of prepaid liability not covered by escrow taken off the limit.
    pub uncovered_haircut: Decimal,
    /// Limits are rounded down to a multiple of this, in yuan.
    pub rounding_unit: Decimal,
    /// Per-industry settings, keyed by industry code; every industry must be present.
    pub industries: BTreeMap<String, IndustryLimit>,
}

/// Pricing settings, in percent a year.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingPolicy {
    /// Loss given default before any guarantee or risk-compensation cover (share).
    pub lgd: Decimal,
    /// Operating cost, % a year.
    pub opex: Decimal,
    /// Capital charge, % a year.
    pub capital: Decimal,
    /// Margin, % a year.
    pub margin: Decimal,
}

/// One LPR fixing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LprFixing {
    /// First day the fixing applies.
    pub effective: NaiveDate,
    /// One-year LPR, %.
    pub one_year: Decimal,
    /// Over-five-year LPR, %.
    pub five_year: Decimal,
}

/// The credit policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Version label, quoted in every decision.
    pub version: String,
    /// Knock-outs.
    pub knockouts: Knockouts,
    /// Action per grade; each grade in exactly one band.
    pub grade_bands: Vec<GradeBand>,
    /// Limits.
    pub limit: LimitPolicy,
    /// Pricing.
    pub pricing: PricingPolicy,
    /// LPR fixings by effective date.
    pub lpr: Vec<LprFixing>,
    /// Early-warning thresholds (defaults when absent).
    #[serde(default)]
    pub alerts: crate::AlertRules,
}

/// Where a product or scheme applies: all lists empty = no restriction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Criteria {
    /// Grades admitted: master-scale grades (`B2`) or public grades (`B`, for all of its
    /// sub-grades).
    pub grades: Vec<String>,
    /// Industry codes admitted.
    pub industries: Vec<String>,
    /// Fewest months since registration.
    pub min_months_registered: u32,
    /// Must be on the 元管家 e-CNY platform.
    pub requires_ecny: bool,
    /// Fewest months on the e-CNY platform.
    pub min_months_on_ecny: u32,
    /// Loan purposes admitted.
    pub purposes: Vec<String>,
}

/// A bank's credit product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Stable id.
    pub id: String,
    /// Institution (one of the plan's finance group).
    pub institution: String,
    /// Institution in Chinese.
    pub institution_zh: String,
    /// Product name.
    pub name: String,
    /// Product name in Chinese.
    pub name_zh: String,
    /// Smallest loan, yuan.
    pub min_amount: Decimal,
    /// Largest loan, yuan (the product cap of the limit).
    pub max_amount: Decimal,
    /// Shortest term, months.
    pub min_term_months: u32,
    /// Longest term, months.
    pub max_term_months: u32,
    /// Lowest annual rate, %.
    pub rate_floor: Decimal,
    /// Highest annual rate, %.
    pub rate_cap: Decimal,
    /// Share of the loss a guarantee on this product covers (lowers LGD).
    #[serde(default)]
    pub guarantee_cover: Decimal,
    /// Who qualifies.
    pub criteria: Criteria,
}

/// What a support scheme gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupportKind {
    /// Pays `share` of the interest: lowers the merchant's effective rate.
    InterestSubsidy,
    /// Re-guarantees `share` of the loss: lowers the lender's LGD.
    ReGuarantee,
    /// Compensates `share` of non-performing principal: lowers the lender's LGD.
    RiskCompensation,
}

/// A government support scheme.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheme {
    /// Stable id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Name in Chinese.
    pub name_zh: String,
    /// What it gives.
    pub kind: SupportKind,
    /// Share (0–1).
    pub share: Decimal,
    /// Largest loan it covers, yuan.
    pub max_amount: Decimal,
    /// Who qualifies.
    pub criteria: Criteria,
}

/// The product and support catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Version label, quoted in every decision.
    pub version: String,
    /// What the catalogue is (the demo's products are illustrative).
    pub note: String,
    /// Products.
    pub products: Vec<Product>,
    /// Support schemes.
    pub schemes: Vec<Scheme>,
}

fn bad(what: &str, m: String) -> DecisionError {
    DecisionError::Config(format!("{what}: {m}"))
}

fn share(what: &str, name: &str, v: Decimal) -> Result<(), DecisionError> {
    if v < Decimal::ZERO || v > Decimal::ONE {
        return Err(bad(
            what,
            format!("{name} = {v} is not a share between 0 and 1"),
        ));
    }
    Ok(())
}

fn industries(what: &str, list: &[String]) -> Result<(), DecisionError> {
    for i in list {
        Industry::from_str(i).map_err(|_| bad(what, format!("unknown industry {i:?}")))?;
    }
    Ok(())
}

impl Policy {
    /// Parses and checks a policy file's text.
    pub fn from_toml(text: &str) -> Result<Policy, DecisionError> {
        let p: Policy =
            toml::from_str(text).map_err(|e| DecisionError::Config(format!("policy: {e}")))?;
        p.check()?;
        Ok(p)
    }

    /// Checks the rules that the types cannot express.
    pub fn check(&self) -> Result<(), DecisionError> {
        let w = "policy";
        if self.grade_bands.is_empty() {
            return Err(bad(w, "no grade bands".into()));
        }
        let mut seen = BTreeSet::new();
        for band in &self.grade_bands {
            for g in &band.grades {
                if !seen.insert(g.clone()) {
                    return Err(bad(
                        w,
                        format!("grade bands overlap: grade {g} is in two bands"),
                    ));
                }
            }
        }
        let l = &self.limit;
        if l.dscr_min < Decimal::ONE {
            return Err(bad(
                w,
                format!("limit.dscr_min = {} is below 1", l.dscr_min),
            ));
        }
        share(w, "limit.uncovered_haircut", l.uncovered_haircut)?;
        if l.rounding_unit <= Decimal::ZERO {
            return Err(bad(w, "limit.rounding_unit must be positive".into()));
        }
        for code in Industry::CODES {
            if !l.industries.contains_key(*code) {
                return Err(bad(w, format!("limit.industries has no entry for {code}")));
            }
        }
        for (code, il) in &l.industries {
            Industry::from_str(code)
                .map_err(|_| bad(w, format!("limit.industries: unknown industry {code:?}")))?;
            if il.revenue_multiple < Decimal::ZERO || il.max_amount < Decimal::ZERO {
                return Err(bad(
                    w,
                    format!("limit.industries.{code}: negative multiple or amount"),
                ));
            }
            share(
                w,
                &format!("limit.industries.{code}.operating_margin"),
                il.operating_margin,
            )?;
        }
        share(w, "pricing.lgd", self.pricing.lgd)?;
        if self.lpr.is_empty() {
            return Err(bad(w, "the LPR table is empty".into()));
        }
        let mut dates: Vec<NaiveDate> = self.lpr.iter().map(|f| f.effective).collect();
        dates.sort();
        if dates.windows(2).any(|d| d[0] == d[1]) {
            return Err(bad(w, "two LPR fixings share an effective date".into()));
        }
        Ok(())
    }

    /// The LPR fixing in force on a day.
    pub fn lpr_on(&self, day: NaiveDate) -> Result<&LprFixing, DecisionError> {
        self.lpr
            .iter()
            .filter(|f| f.effective <= day)
            .max_by_key(|f| f.effective)
            .ok_or_else(|| {
                DecisionError::Input(format!(
                    "no LPR fixing is in force on {day} (the table starts later)"
                ))
            })
    }

    /// Checks the grade bands against a model's master scale (its grades, best first):
    /// every grade the model can give is in exactly one band, named itself or by its public
    /// grade (a band naming B places B1, B2 and B3), and a band names only grades or public
    /// grades the model gives — so a model with another scale is refused where it meets the
    /// policy (loading, promotion), rather than every applicant getting `GRADE_UNKNOWN`.
    pub fn check_scale(&self, grades: &[&str]) -> Result<(), DecisionError> {
        let w = "policy";
        for g in grades {
            let bands: Vec<&GradeBand> = self.grade_bands.iter().filter(|b| b.places(g)).collect();
            match bands.len() {
                0 => {
                    return Err(bad(
                        w,
                        format!("grade {g} of the model's master scale is in no grade band"),
                    ))
                }
                1 => {}
                _ => {
                    return Err(bad(
                        w,
                        format!("grade bands overlap: grade {g} is placed by two bands (by its name and by its public grade {})", public_grade(g)),
                    ))
                }
            }
        }
        for band in &self.grade_bands {
            if let Some(g) = band.grades.iter().find(|g| {
                !grades
                    .iter()
                    .any(|m| *m == g.as_str() || public_grade(m) == g.as_str())
            }) {
                return Err(bad(
                    w,
                    format!(
                        "grade band names grade {g}, which the model's master scale ({}) does not have",
                        grades.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The action of a grade, if the policy places it (by name, else by its public grade).
    pub fn action(&self, grade: &str) -> Option<Action> {
        self.grade_bands
            .iter()
            .find(|b| b.places(grade))
            .map(|b| b.action)
    }
}

impl GradeBand {
    /// Whether the band names the grade or its public grade.
    fn places(&self, grade: &str) -> bool {
        self.grades
            .iter()
            .any(|g| g == grade || g == public_grade(grade))
    }
}

impl Catalogue {
    /// Parses and checks a catalogue file's text.
    pub fn from_toml(text: &str) -> Result<Catalogue, DecisionError> {
        let c: Catalogue =
            toml::from_str(text).map_err(|e| DecisionError::Config(format!("catalogue: {e}")))?;
        c.check()?;
        Ok(c)
    }

    /// Checks ranges, ids and codes.
    pub fn check(&self) -> Result<(), DecisionError> {
        let mut ids = BTreeSet::new();
        for p in &self.products {
            let w = format!("catalogue: product {}", p.id);
            if !ids.insert(p.id.clone()) {
                return Err(bad(&w, "id used twice".into()));
            }
            if p.min_amount > p.max_amount || p.min_amount < Decimal::ZERO {
                return Err(bad(
                    &w,
                    "min_amount must be between 0 and max_amount".into(),
                ));
            }
            if p.min_term_months == 0 || p.min_term_months > p.max_term_months {
                return Err(bad(
                    &w,
                    "terms must satisfy 1 ≤ min_term_months ≤ max_term_months".into(),
                ));
            }
            if p.rate_floor > p.rate_cap || p.rate_floor < Decimal::ZERO {
                return Err(bad(&w, "rate_floor must be between 0 and rate_cap".into()));
            }
            share(&w, "guarantee_cover", p.guarantee_cover)?;
            industries(&w, &p.criteria.industries)?;
        }
        for s in &self.schemes {
            let w = format!("catalogue: scheme {}", s.id);
            if !ids.insert(s.id.clone()) {
                return Err(bad(&w, "id used twice".into()));
            }
            share(&w, "share", s.share)?;
            industries(&w, &s.criteria.industries)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = include_str!("../../../data/policy.toml");
    const CATALOGUE: &str = include_str!("../../../data/catalogue.toml");

    #[test]
    fn grade_bands_must_match_the_master_scale() {
        let p = Policy::from_toml(POLICY).unwrap();
        let scale = [
            "A+", "A", "B1", "B2", "B3", "C1", "C2", "C3", "D1", "D2", "D3", "E1", "E2", "E3",
            "E4", "E5",
        ];
        p.check_scale(&scale).unwrap();
        // Public grades place their sub-grades; the shipped policy names sub-grades of D.
        assert_eq!(p.action("B2"), Some(Action::Approve));
        assert_eq!(p.action("D1"), Some(Action::Refer));
        assert_eq!(p.action("D3"), Some(Action::Decline));
        assert_eq!(p.action("E5"), Some(Action::Decline));
        // A scale the policy does not place, and a coarser one it names too much of.
        let e = p
            .check_scale(&["A+", "A", "B", "C", "D", "E"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("grade D of the model's master scale is in no grade band"),
            "{e}"
        );
        let e = p.check_scale(&scale[1..]).unwrap_err().to_string();
        assert!(e.contains("names grade A+"), "{e}");
        // A grade placed by its name and by its public grade is placed twice.
        let twice = POLICY.replacen(
            "grades = [\"D1\", \"D2\"]",
            "grades = [\"D1\", \"D2\", \"E2\"]",
            1,
        );
        let e = Policy::from_toml(&twice)
            .unwrap()
            .check_scale(&scale)
            .unwrap_err()
            .to_string();
        assert!(e.contains("grade E2 is placed by two bands"), "{e}");
    }

    #[test]
    fn the_shipped_files_load() {
        let p = Policy::from_toml(POLICY).unwrap();
        assert_eq!(
            p.lpr_on(NaiveDate::from_ymd_opt(2025, 6, 1).unwrap())
                .unwrap()
                .one_year,
            Decimal::new(300, 2)
        );
        assert!(p
            .lpr_on(NaiveDate::from_ymd_opt(2019, 1, 1).unwrap())
            .is_err());
        let c = Catalogue::from_toml(CATALOGUE).unwrap();
        assert!(c.products.len() >= 9);
    }

    #[test]
    fn mistakes_are_named() {
        let unknown = POLICY.replace("dscr_min =", "dscr_minimum =");
        let e = Policy::from_toml(&unknown).unwrap_err().to_string();
        assert!(e.contains("dscr_minimum"), "{e}");
        let overlap = POLICY.replacen(
            "grades = [\"D1\", \"D2\"]",
            "grades = [\"D1\", \"D2\", \"C\"]",
            1,
        );
        let e = Policy::from_toml(&overlap).unwrap_err().to_string();
        assert!(e.contains("overlap") && e.contains("grade C"), "{e}");
        let no_date = POLICY.replacen("effective = \"2025-05-20\"\n", "", 1);
        let e = Policy::from_toml(&no_date).unwrap_err().to_string();
        assert!(e.contains("effective"), "{e}");
        let no_industry = POLICY.replacen(
            "[limit.industries.CAR_WASH]",
            "[limit.industries.CAR_WASHING]",
            1,
        );
        let e = Policy::from_toml(&no_industry).unwrap_err().to_string();
        assert!(e.contains("CAR_WASH"), "{e}");
        let bad_product = CATALOGUE.replacen("min_term_months = 6", "min_term_months = 0", 1);
        assert!(Catalogue::from_toml(&bad_product)
            .unwrap_err()
            .to_string()
            .contains("terms"));
        let unknown_field = CATALOGUE.replacen("rate_cap =", "rate_ceiling =", 1);
        assert!(Catalogue::from_toml(&unknown_field)
            .unwrap_err()
            .to_string()
            .contains("rate_ceiling"));
    }
}
