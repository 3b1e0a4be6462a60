//! Decisions on the shipped policy and catalogue: the documented examples
//! (docs/decisions.md), and properties over random applicants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::NaiveDate;
use proptest::prelude::*;
use rust_decimal::Decimal;
use yuanxin_domain::Industry;

use yuanxin_decision::*;

const POLICY: &str = include_str!("../../../data/policy.toml");
const CATALOGUE: &str = include_str!("../../../data/catalogue.toml");

fn files() -> (Policy, Catalogue) {
    (
        Policy::from_toml(POLICY).unwrap(),
        Catalogue::from_toml(CATALOGUE).unwrap(),
    )
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// A sound catering merchant: 100,000 yuan a month, five years old, two years on e-CNY.
fn merchant() -> Applicant {
    let f: BTreeMap<String, Option<f64>> = [
        ("rev_total_90d", 300_000.0),
        ("rev_total_30d", 100_000.0),
        ("debt_service_to_revenue_30d", 0.0),
        ("uncovered_liability", 0.0),
        ("months_since_registration", 60.0),
        ("months_on_ecny_platform", 24.0),
        ("loan_current_dpd", 0.0),
        ("abnormal_listed", 0.0),
        ("custody_compliant", 1.0),
        ("stores_open", 2.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Some(v)))
    .collect();
    Applicant {
        merchant_id: "M0001".into(),
        as_of: NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
        industry: Industry::Catering,
        features: f,
        insufficient_data: false,
        model_id: "scorecard-test".into(),
        score: 640,
        pd: 0.008,
        grade: "A".into(),
        model_reasons: vec![ModelReason {
            feature: "escrow_coverage".into(),
            name_zh: "托管覆盖率".into(),
            name_en: "Escrow coverage".into(),
            points_lost: 12.0,
        }],
        gains: Vec::new(),
        open_dispute: false,
        closed_on: None,
    }
}

fn request(amount: &str) -> LoanRequest {
    LoanRequest {
        amount: d(amount),
        term_months: 12,
        purpose: "working_capital".into(),
        product: None,
    }
}

fn codes(dec: &Decision) -> Vec<&str> {
    dec.reasons.iter().map(|r| r.code.as_str()).collect()
}

fn set(app: &mut Applicant, name: &str, v: f64) {
    app.features.insert(name.into(), Some(v));
}

#[test]
fn documented_examples() {
    let (policy, cat) = files();
    type Case = (
        &'static str,
        fn(&mut Applicant, &mut LoanRequest),
        Outcome,
        &'static [&'static str],
    );
    let cases: Vec<Case> = vec![
        ("sound merchant", |_, _| {}, Outcome::Approve, &[]),
        (
            "45 days past due",
            |a, _| set(a, "loan_current_dpd", 45.0),
            Outcome::Decline,
            &["KO_DELINQUENT"],
        ),
        (
            "abnormal listing",
            |a, _| set(a, "abnormal_listed", 1.0),
            Outcome::Decline,
            &["KO_ABNORMAL_LISTING"],
        ),
        (
            "custody below the rule",
            |a, _| set(a, "custody_compliant", 0.0),
            Outcome::Decline,
            &["KO_CUSTODY"],
        ),
        (
            "insufficient data",
            |a, _| a.insufficient_data = true,
            Outcome::Decline,
            &["KO_INSUFFICIENT_DATA"],
        ),
        (
            "grade D1",
            |a, _| a.grade = "D1".into(),
            Outcome::Refer,
            &["GRADE_REFER"],
        ),
        (
            "grade E3",
            |a, _| a.grade = "E3".into(),
            Outcome::Decline,
            &["GRADE_DECLINE"],
        ),
        (
            "asks for more than the limit",
            |_, r| r.amount = d("2000000"),
            Outcome::Approve,
            &["AMOUNT_REDUCED"],
        ),
        (
            "open dispute",
            |a, _| a.open_dispute = true,
            Outcome::Approve,
            &["INFO_OPEN_DISPUTE"],
        ),
        (
            "no revenue",
            |a, _| {
                set(a, "rev_total_90d", 0.0);
                set(a, "rev_total_30d", 0.0)
            },
            Outcome::Decline,
            &["NO_CAPACITY"],
        ),
        (
            "product it does not qualify for",
            |a, r| {
                a.grade = "B3".into();
                r.product = Some("boc-service-sme".into())
            },
            Outcome::Refer,
            &["PRODUCT_NOT_ELIGIBLE"],
        ),
        (
            "uncovered liability eats the limit",
            |a, _| set(a, "uncovered_liability", 10_000_000.0),
            Outcome::Decline,
            &["NO_CAPACITY"],
        ),
    ];
    for (name, change, outcome, want) in cases {
        let mut app = merchant();
        let mut req = request("200000");
        change(&mut app, &mut req);
        let dec = decide(&app, &req, &policy, &cat).unwrap();
        assert_eq!(dec.outcome, outcome, "{name}: {:?}", codes(&dec));
        for w in want {
            assert!(
                codes(&dec).contains(w),
                "{name}: {:?} lacks {w}",
                codes(&dec)
            );
        }
        if outcome == Outcome::Decline {
            assert!(dec.approved_amount.is_zero(), "{name}");
            assert!(
                codes(&dec).contains(&"SCORE_ESCROW_COVERAGE"),
                "{name}: the model's reasons are shown"
            );
        }
    }
}

#[test]
fn a_closed_merchant_is_declined_with_no_grade_and_nothing_offered() {
    let (policy, cat) = files();
    let mut app = merchant();
    let on = NaiveDate::from_ymd_opt(2025, 5, 3).unwrap();
    app.closed_on = Some(on);
    app.open_dispute = true;
    let dec = decide(&app, &request("200000"), &policy, &cat).unwrap();
    assert_eq!(dec.outcome, Outcome::Decline);
    assert_eq!(codes(&dec), ["KO_CLOSED", "INFO_OPEN_DISPUTE"]);
    assert_eq!(dec.closed_on, Some(on));
    assert_eq!((dec.score, dec.pd, dec.grade), (None, None, None));
    assert!(dec.offer.is_none() && dec.offers.is_empty() && dec.near_misses.is_empty());
    assert!(dec.hints.is_empty() && dec.approved_amount.is_zero());
    // The same merchant open is graded and offered products.
    app.closed_on = None;
    let open = decide(&app, &request("200000"), &policy, &cat).unwrap();
    assert_eq!(open.grade.as_deref(), Some(app.grade.as_str()));
    assert!(!open.offers.is_empty());
}

#[test]
fn the_sound_merchant_in_numbers() {
    let (policy, cat) = files();
    let dec = decide(&merchant(), &request("200000"), &policy, &cat).unwrap();
    let o = dec.offer.as_ref().unwrap();
    // Cheapest effective rate first.
    assert!(dec
        .offers
        .windows(2)
        .all(|w| w[0].price.effective_rate <= w[1].price.effective_rate));
    assert_eq!(o.product, dec.offers[0].product);
    // LPR 3.00 (since 2025-05-20) is the reference; the e-CNY subsidy halves the rate.
    assert_eq!(o.price.lpr, d("3.00"));
    assert_eq!(
        dec.lpr_effective,
        NaiveDate::from_ymd_opt(2025, 5, 20).unwrap()
    );
    let subsidised = o
        .support
        .iter()
        .any(|s| s.kind == SupportKind::InterestSubsidy);
    assert!(subsidised);
    assert_eq!(o.price.effective_rate, (o.price.rate / d("2")).round_dp(2));
    // Catering: 2 × 100,000 revenue cap; the debt-service cap is about 96,000 × 12 months' worth.
    assert_eq!(o.limit.revenue_cap, d("200000"));
    assert_eq!(dec.approved_amount, o.amount);
    assert_eq!(
        o.monthly_payment,
        annuity_payment(o.amount, o.price.rate, 12)
    );
    // Near misses say what fails.
    assert!(dec.near_misses.iter().all(|m| !m.failing.is_empty()));
}

#[test]
fn an_as_of_date_before_the_lpr_table_is_an_error() {
    let (policy, cat) = files();
    let mut app = merchant();
    app.as_of = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    let e = decide(&app, &request("1000"), &policy, &cat)
        .unwrap_err()
        .to_string();
    assert!(e.contains("LPR"), "{e}");
}

/// Criteria checked independently of the engine's own code.
fn admits(p: &Product, app: &Applicant, req: &LoanRequest, amount: Decimal) -> bool {
    let c = &p.criteria;
    let f = |n: &str| app.features.get(n).copied().flatten().unwrap_or(0.0);
    // A criterion names grades or public grades: B2 is public grade B.
    let public = app.grade.trim_end_matches(|c: char| c.is_ascii_digit());
    (c.grades.is_empty() || c.grades.iter().any(|g| *g == app.grade || g == public))
        && (c.industries.is_empty()
            || c.industries
                .iter()
                .any(|i| Industry::from_str(i).ok() == Some(app.industry)))
        && f("months_since_registration") >= f64::from(c.min_months_registered)
        && (!c.requires_ecny || f("months_on_ecny_platform") > 0.0)
        && f("months_on_ecny_platform") >= f64::from(c.min_months_on_ecny)
        && (c.purposes.is_empty() || c.purposes.contains(&req.purpose))
        && (p.min_term_months..=p.max_term_months).contains(&req.term_months)
        && amount >= p.min_amount
        && amount <= p.max_amount
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Every decline carries a published reason; no product is offered to a merchant failing
    /// one of its criteria; offers stay within every cap.
    #[test]
    fn decisions_keep_their_promises(
        rev in 0.0f64..3_000_000.0, debt in 0.0f64..0.6, unc in 0.0f64..2_000_000.0,
        registered in 0.0f64..120.0, ecny in prop_oneof![Just(0.0), 0.0f64..40.0],
        grade in prop_oneof![Just("A+"), Just("A"), Just("B2"), Just("C3"), Just("D1"), Just("D3"), Just("E5")],
        industry in 0usize..11, dpd in prop_oneof![Just(0.0), 0.0f64..120.0],
        listed in any::<bool>(), compliant in any::<bool>(), insufficient in any::<bool>(),
        amount in 1_000i64..3_000_000, term in 1u32..48,
        purpose in prop_oneof![Just("working_capital"), Just("equipment"), Just("renovation"), Just("expansion")],
        pd in 0.0001f64..0.5,
    ) {
        let (policy, cat) = files();
        let mut app = merchant();
        app.industry = Industry::ALL[industry];
        set(&mut app, "rev_total_90d", rev);
        set(&mut app, "rev_total_30d", rev / 3.0);
        set(&mut app, "debt_service_to_revenue_30d", debt);
        set(&mut app, "uncovered_liability", unc);
        set(&mut app, "months_since_registration", registered);
        set(&mut app, "months_on_ecny_platform", ecny);
        set(&mut app, "loan_current_dpd", dpd);
        set(&mut app, "abnormal_listed", f64::from(u8::from(listed)));
        set(&mut app, "custody_compliant", f64::from(u8::from(compliant)));
        app.insufficient_data = insufficient;
        app.grade = grade.into();
        app.pd = pd;
        let req = LoanRequest { amount: Decimal::from(amount), term_months: term, purpose: purpose.into(), product: None };
        let dec = decide(&app, &req, &policy, &cat).unwrap();
        if dec.outcome == Outcome::Decline {
            prop_assert!(!dec.reasons.is_empty());
            prop_assert!(dec.reasons.iter().all(|r| reasons::is_published(&r.code)));
            prop_assert!(dec.reasons.iter().any(|r| r.kind != "model" && r.kind != "info"), "a policy reason: {:?}", dec.reasons);
        }
        for o in &dec.offers {
            let p = cat.products.iter().find(|p| p.id == o.product).unwrap();
            prop_assert!(admits(p, &app, &req, o.amount), "{} offered to {:?}", p.id, app);
            prop_assert!(o.amount <= req.amount && o.amount <= o.limit.limit);
            prop_assert!(o.limit.limit <= o.limit.product_cap && o.limit.limit <= o.limit.revenue_cap && o.limit.limit <= o.limit.debt_service_cap);
            prop_assert!(o.price.rate >= p.rate_floor && o.price.rate <= p.rate_cap);
        }
        prop_assert_eq!(dec.approved_amount > Decimal::ZERO, dec.outcome == Outcome::Approve);
        // A riskier merchant never gets a larger limit or a lower price on the same product,
        // and more verified revenue never lowers a limit.
        let mut riskier = app.clone();
        riskier.pd = (pd * 3.0).min(0.99);
        let worse = decide(&riskier, &req, &policy, &cat).unwrap();
        let mut richer = app.clone();
        set(&mut richer, "rev_total_90d", rev * 1.5 + 3000.0);
        let better = decide(&richer, &req, &policy, &cat).unwrap();
        for o in &dec.offers {
            if let Some(w) = worse.offers.iter().find(|w| w.product == o.product) {
                prop_assert!(w.limit.limit <= o.limit.limit && w.price.rate >= o.price.rate);
            }
            if let Some(b) = better.offers.iter().find(|b| b.product == o.product) {
                prop_assert!(b.limit.limit >= o.limit.limit);
            }
        }
    }
}
