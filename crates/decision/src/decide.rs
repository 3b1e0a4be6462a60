//! The decision: knock-outs, the grade's action, products and support schemes the merchant
//! qualifies for (each with its limit, price and payment), the nearest products it does
//! not qualify for and why, and the outcome with its reasons.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::prelude::*;
use serde::{Deserialize, Serialize};
use yuanxin_domain::known;
use yuanxin_domain::{Industry, PointGain};

use crate::calc::{
    annuity_payment, credit_limit, price, total_interest, Limit, LimitInput, Price, PriceInput,
};
use crate::config::{Action, Catalogue, Criteria, Policy, SupportKind};
use crate::hints::Hint;
use crate::reasons::{self, ReasonCode};
use crate::DecisionError;

/// A reason from the model, as the scorer gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReason {
    /// Characteristic.
    pub feature: String,
    /// Chinese display name.
    pub name_zh: String,
    /// English display name.
    pub name_en: String,
    /// Points lost.
    pub points_lost: f64,
}

/// Who is asking, as of when: the profile and the model's view of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applicant {
    /// Merchant.
    pub merchant_id: String,
    /// Profile date; also the date the LPR is read for.
    pub as_of: NaiveDate,
    /// Industry.
    pub industry: Industry,
    /// Characteristics by catalogue name (None = missing).
    pub features: BTreeMap<String, Option<f64>>,
    /// The profile's insufficient-data flag.
    pub insufficient_data: bool,
    /// Model id.
    pub model_id: String,
    /// Score.
    pub score: i64,
    /// PD over the label's horizon.
    pub pd: f64,
    /// Grade.
    pub grade: String,
    /// The model's reasons.
    pub model_reasons: Vec<ModelReason>,
    /// What each characteristic could gain, from the model (hints are worded from these).
    pub gains: Vec<PointGain>,
    /// An objection (异议) is open.
    pub open_dispute: bool,
    /// The day the merchant closed (no store open), if it has: it is declined, and its
    /// decision carries no score, PD or grade.
    pub closed_on: Option<NaiveDate>,
}

/// What is asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoanRequest {
    /// Amount, yuan.
    pub amount: Decimal,
    /// Term, months.
    pub term_months: u32,
    /// Purpose (e.g. `working_capital`, `equipment`, `renovation`, `expansion`).
    pub purpose: String,
    /// A specific product, if any.
    pub product: Option<String>,
}

/// Whether the merchant still trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Trading: graded and decided on.
    Open,
    /// Closed (no store open): declined, with no score, PD or grade.
    Closed,
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Approved (possibly for less than asked).
    Approve,
    /// Manual review.
    Refer,
    /// Declined.
    Decline,
}

/// A support scheme applied to an offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupportApplied {
    /// Scheme id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Name in Chinese.
    pub name_zh: String,
    /// What it gives.
    pub kind: SupportKind,
    /// Share.
    pub share: Decimal,
}

/// A product the merchant qualifies for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Product id.
    pub product: String,
    /// Product name.
    pub name: String,
    /// Product name in Chinese.
    pub name_zh: String,
    /// Institution.
    pub institution: String,
    /// Institution in Chinese.
    pub institution_zh: String,
    /// Amount offered: the request, or the limit when smaller.
    pub amount: Decimal,
    /// The limit and how it was reached.
    pub limit: Limit,
    /// The price.
    pub price: Price,
    /// Monthly payment at the contract rate, yuan.
    pub monthly_payment: Decimal,
    /// Interest over the term at the contract rate (payments less the amount), yuan.
    pub total_interest: Decimal,
    /// Interest the merchant bears over the term at the effective rate after interest
    /// subsidy, yuan: what ranks the offers for the merchant.
    pub total_interest_after_support: Decimal,
    /// Support applied.
    pub support: Vec<SupportApplied>,
}

/// A product the merchant does not qualify for, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearMiss {
    /// Product id.
    pub product: String,
    /// Institution.
    pub institution: String,
    /// Institution in Chinese.
    pub institution_zh: String,
    /// Product name.
    pub name: String,
    /// Product name in Chinese.
    pub name_zh: String,
    /// Failing criteria, e.g. `grade B not in [A+, A]`.
    pub failing: Vec<String>,
    /// The same in Chinese, in the same order.
    pub failing_zh: Vec<String>,
}

/// A failing criterion in English and Chinese.
struct Fail {
    en: String,
    zh: String,
}

impl Fail {
    fn new(en: String, zh: String) -> Fail {
        Fail { en, zh }
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Merchant.
    pub merchant_id: String,
    /// Profile date.
    pub as_of: NaiveDate,
    /// Outcome.
    pub outcome: Outcome,
    /// Amount approved (0 unless approved).
    pub approved_amount: Decimal,
    /// The request.
    pub request: LoanRequest,
    /// Model, score, PD and grade.
    pub model_id: String,
    /// Whether the merchant still trades.
    pub status: Status,
    /// The day the merchant closed, if it has (then there is no score, PD or grade).
    pub closed_on: Option<NaiveDate>,
    /// Score (none for a closed merchant).
    pub score: Option<i64>,
    /// PD (none for a closed merchant).
    pub pd: Option<f64>,
    /// Grade on the model's master scale, e.g. `B2` (none for a closed merchant).
    pub grade: Option<String>,
    /// Its public grade, A+ to E: `B` for B1–B3 (none for a closed merchant).
    #[serde(default)]
    pub public_grade: Option<String>,
    /// The offer the outcome refers to (the requested product's, else the cheapest).
    pub offer: Option<Offer>,
    /// Every product the merchant qualifies for, cheapest effective rate first.
    pub offers: Vec<Offer>,
    /// The nearest products it does not qualify for.
    pub near_misses: Vec<NearMiss>,
    /// Reasons, policy codes first, then the model's.
    pub reasons: Vec<ReasonCode>,
    /// What would raise the score.
    pub hints: Vec<Hint>,
    /// Policy version.
    pub policy_version: String,
    /// Catalogue version.
    pub catalogue_version: String,
    /// The LPR fixing used.
    pub lpr_effective: NaiveDate,
}

fn feature(app: &Applicant, name: &str) -> Option<f64> {
    app.features.get(name).copied().flatten()
}

/// Yuan from a characteristic (exact: profile amounts are whole fen).
fn money(v: f64) -> Decimal {
    Decimal::from_f64(v).map_or(Decimal::ZERO, |d| d.round_dp(2))
}

/// Which criteria fail, in English and Chinese.
fn failing(c: &Criteria, app: &Applicant, req: &LoanRequest) -> Vec<Fail> {
    let mut out = Vec::new();
    let public = yuanxin_domain::public_grade(&app.grade);
    if !c.grades.is_empty() && !c.grades.iter().any(|g| *g == app.grade || g == public) {
        let grades = c.grades.join(", ");
        out.push(Fail::new(
            format!("grade {} not in [{grades}]", app.grade),
            format!("等级 {} 不在 [{grades}] 之内", app.grade),
        ));
    }
    let industry = app.industry.as_str();
    if !c.industries.is_empty() && !c.industries.iter().any(|i| i == industry) {
        out.push(Fail::new(
            format!("industry {industry} not admitted"),
            format!("行业 {} 不在产品准入范围内", app.industry.name_zh()),
        ));
    }
    let registered = feature(app, known!("months_since_registration")).unwrap_or(0.0);
    if registered < f64::from(c.min_months_registered) {
        out.push(Fail::new(
            format!(
                "registered {registered:.0} months, needs {}",
                c.min_months_registered
            ),
            format!(
                "注册 {registered:.0} 个月，需满 {} 个月",
                c.min_months_registered
            ),
        ));
    }
    let ecny = feature(app, known!("months_on_ecny_platform")).unwrap_or(0.0);
    if c.requires_ecny && ecny <= 0.0 {
        out.push(Fail::new(
            "not on the 元管家 e-CNY platform".into(),
            "尚未使用元管家数字人民币平台".into(),
        ));
    }
    if ecny < f64::from(c.min_months_on_ecny) {
        out.push(Fail::new(
            format!(
                "{ecny:.0} months on the e-CNY platform, needs {}",
                c.min_months_on_ecny
            ),
            format!(
                "使用数字人民币平台 {ecny:.0} 个月，需满 {} 个月",
                c.min_months_on_ecny
            ),
        ));
    }
    if !c.purposes.is_empty() && !c.purposes.contains(&req.purpose) {
        out.push(Fail::new(
            format!("purpose {} not admitted", req.purpose),
            format!("贷款用途 {} 不在产品准入范围内", req.purpose),
        ));
    }
    out
}

/// Decides a loan request. Pure: everything it uses is in its arguments.
pub fn decide(
    app: &Applicant,
    req: &LoanRequest,
    policy: &Policy,
    catalogue: &Catalogue,
) -> Result<Decision, DecisionError> {
    if req.amount <= Decimal::ZERO || req.term_months == 0 {
        return Err(DecisionError::Input(
            "the amount and the term must be positive".into(),
        ));
    }
    if let Some(p) = &req.product {
        if !catalogue.products.iter().any(|x| &x.id == p) {
            return Err(DecisionError::Input(format!(
                "no product {p} in catalogue {}",
                catalogue.version
            )));
        }
    }
    let lpr = policy.lpr_on(app.as_of)?;
    let code = |c: &str| {
        reasons::policy(c)
            .ok_or_else(|| DecisionError::Input(format!("reason {c} missing from the catalogue")))
    };
    if let Some(on) = app.closed_on {
        // Nothing to grade or offer: a business that has stopped trading is not lent to.
        let mut reasons = vec![code("KO_CLOSED")?];
        if app.open_dispute {
            reasons.push(code("INFO_OPEN_DISPUTE")?);
        }
        return Ok(Decision {
            merchant_id: app.merchant_id.clone(),
            as_of: app.as_of,
            outcome: Outcome::Decline,
            approved_amount: Decimal::ZERO,
            request: req.clone(),
            model_id: app.model_id.clone(),
            status: Status::Closed,
            closed_on: Some(on),
            score: None,
            pd: None,
            grade: None,
            public_grade: None,
            offer: None,
            offers: Vec::new(),
            near_misses: Vec::new(),
            reasons,
            hints: Vec::new(),
            policy_version: policy.version.clone(),
            catalogue_version: catalogue.version.clone(),
            lpr_effective: lpr.effective,
        });
    }
    let mut reasons: Vec<ReasonCode> = Vec::new();

    // Knock-outs.
    let ko = &policy.knockouts;
    let dpd = feature(app, known!("loan_current_dpd")).unwrap_or(0.0);
    if dpd >= f64::from(ko.max_current_dpd) {
        reasons.push(code("KO_DELINQUENT")?);
    }
    if ko.abnormal_listing && feature(app, known!("abnormal_listed")) == Some(1.0) {
        reasons.push(code("KO_ABNORMAL_LISTING")?);
    }
    if ko.custody_noncompliant && feature(app, known!("custody_compliant")) == Some(0.0) {
        reasons.push(code("KO_CUSTODY")?);
    }
    let revenue_90d = feature(app, known!("rev_total_90d"));
    if ko.insufficient_data && (app.insufficient_data || revenue_90d.is_none()) {
        reasons.push(code("KO_INSUFFICIENT_DATA")?);
    }
    let knocked_out = !reasons.is_empty();
    let action = policy.action(&app.grade);
    match action {
        Some(Action::Decline) => reasons.push(code("GRADE_DECLINE")?),
        Some(Action::Refer) => reasons.push(code("GRADE_REFER")?),
        Some(Action::Approve) => {}
        None => reasons.push(code("GRADE_UNKNOWN")?),
    }

    // Offers.
    let il = policy
        .limit
        .industries
        .get(app.industry.as_str())
        .ok_or_else(|| {
            DecisionError::Input(format!(
                "the policy has no limits for {}",
                app.industry.as_str()
            ))
        })?;
    let monthly_revenue = money(revenue_90d.unwrap_or(0.0) / 3.0);
    let existing = money(
        feature(app, known!("debt_service_to_revenue_30d")).unwrap_or(0.0)
            * feature(app, known!("rev_total_30d")).unwrap_or(0.0),
    );
    let uncovered = money(feature(app, known!("uncovered_liability")).unwrap_or(0.0));
    let pd = Decimal::from_f64(app.pd).map_or(Decimal::ONE, |d| d.round_dp(6));
    let mut offers = Vec::new();
    let mut misses = Vec::new();
    // Whether some product admits the merchant and request before the amount is sized.
    let mut admitted = false;
    for p in &catalogue.products {
        let mut fail = failing(&p.criteria, app, req);
        if req.term_months < p.min_term_months || req.term_months > p.max_term_months {
            fail.push(Fail::new(
                format!(
                    "term {} months outside {}–{}",
                    req.term_months, p.min_term_months, p.max_term_months
                ),
                format!(
                    "期限 {} 个月不在 {}–{} 个月之内",
                    req.term_months, p.min_term_months, p.max_term_months
                ),
            ));
        }
        let support: Vec<&crate::config::Scheme> = catalogue
            .schemes
            .iter()
            .filter(|s| {
                failing(&s.criteria, app, req).is_empty()
                    && req.amount.min(p.max_amount) <= s.max_amount
            })
            .collect();
        let share_of = |k: SupportKind| {
            support
                .iter()
                .filter(|s| s.kind == k)
                .map(|s| s.share)
                .sum::<Decimal>()
        };
        let cover = (p.guarantee_cover
            + share_of(SupportKind::ReGuarantee)
            + share_of(SupportKind::RiskCompensation))
        .min(Decimal::ONE);
        let pr = price(&PriceInput {
            pd,
            lgd: policy.pricing.lgd,
            cover,
            lpr: lpr.one_year,
            opex: policy.pricing.opex,
            capital: policy.pricing.capital,
            margin: policy.pricing.margin,
            floor: p.rate_floor,
            cap: p.rate_cap,
            subsidy: share_of(SupportKind::InterestSubsidy),
        });
        let limit = credit_limit(&LimitInput {
            monthly_revenue,
            existing_debt_service: existing,
            uncovered_liability: uncovered,
            annual_rate: pr.rate,
            term_months: req.term_months,
            revenue_multiple: il.revenue_multiple,
            operating_margin: il.operating_margin,
            dscr_min: policy.limit.dscr_min,
            haircut: policy.limit.uncovered_haircut,
            cap: p.max_amount.min(il.max_amount),
            unit: policy.limit.rounding_unit,
        });
        let amount = req.amount.min(limit.limit);
        if fail.is_empty() {
            admitted = true;
            if amount < p.min_amount {
                fail.push(Fail::new(
                    format!(
                        "limit {} below the product minimum {}",
                        limit.limit, p.min_amount
                    ),
                    format!(
                        "可贷额度 {} 元低于产品起贷金额 {} 元",
                        limit.limit, p.min_amount
                    ),
                ));
            }
        }
        if fail.is_empty() {
            offers.push(Offer {
                product: p.id.clone(),
                name: p.name.clone(),
                name_zh: p.name_zh.clone(),
                institution: p.institution.clone(),
                institution_zh: p.institution_zh.clone(),
                amount,
                monthly_payment: annuity_payment(amount, pr.rate, req.term_months),
                total_interest: total_interest(amount, pr.rate, req.term_months),
                total_interest_after_support: total_interest(
                    amount,
                    pr.effective_rate,
                    req.term_months,
                ),
                limit,
                price: pr,
                support: support
                    .iter()
                    .map(|s| SupportApplied {
                        id: s.id.clone(),
                        name: s.name.clone(),
                        name_zh: s.name_zh.clone(),
                        kind: s.kind,
                        share: s.share,
                    })
                    .collect(),
            });
        } else {
            let (failing, failing_zh) = fail.into_iter().map(|f| (f.en, f.zh)).unzip();
            misses.push(NearMiss {
                product: p.id.clone(),
                institution: p.institution.clone(),
                institution_zh: p.institution_zh.clone(),
                name: p.name.clone(),
                name_zh: p.name_zh.clone(),
                failing,
                failing_zh,
            });
        }
    }
    offers.sort_by(|a, b| {
        a.price
            .effective_rate
            .cmp(&b.price.effective_rate)
            .then_with(|| a.product.cmp(&b.product))
    });
    misses.sort_by(|a, b| {
        a.failing
            .len()
            .cmp(&b.failing.len())
            .then_with(|| a.product.cmp(&b.product))
    });
    misses.truncate(3);

    // The outcome.
    let chosen = match &req.product {
        Some(id) => offers.iter().find(|o| &o.product == id).cloned(),
        None => offers.first().cloned(),
    };
    let outcome = if knocked_out || action == Some(Action::Decline) {
        Outcome::Decline
    } else if offers.is_empty() {
        reasons.push(code(if admitted {
            "NO_CAPACITY"
        } else {
            "NO_PRODUCT"
        })?);
        Outcome::Decline
    } else if chosen.is_none() {
        reasons.push(code("PRODUCT_NOT_ELIGIBLE")?);
        Outcome::Refer
    } else if action != Some(Action::Approve) {
        Outcome::Refer
    } else {
        Outcome::Approve
    };
    let approved_amount = match (&chosen, outcome) {
        (Some(o), Outcome::Approve) => o.amount,
        _ => Decimal::ZERO,
    };
    if outcome == Outcome::Approve && approved_amount < req.amount {
        reasons.push(code("AMOUNT_REDUCED")?);
    }
    if outcome != Outcome::Approve {
        for r in &app.model_reasons {
            reasons.push(reasons::model(&r.feature, &r.name_zh, &r.name_en));
        }
    }
    if app.open_dispute {
        reasons.push(code("INFO_OPEN_DISPUTE")?);
    }
    Ok(Decision {
        merchant_id: app.merchant_id.clone(),
        as_of: app.as_of,
        outcome,
        approved_amount,
        request: req.clone(),
        model_id: app.model_id.clone(),
        status: Status::Open,
        closed_on: None,
        score: Some(app.score),
        pd: Some(app.pd),
        grade: Some(app.grade.clone()),
        public_grade: Some(yuanxin_domain::public_grade(&app.grade).to_owned()),
        offer: chosen,
        offers,
        near_misses: misses,
        reasons,
        hints: crate::hints::hints(&app.gains, 4),
        policy_version: policy.version.clone(),
        catalogue_version: catalogue.version.clone(),
        lpr_effective: lpr.effective,
    })
}
