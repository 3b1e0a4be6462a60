//! The arithmetic of an offer, in `rust_decimal`: annuities, the credit limit and the
//! risk-based price. Rates are percent a year; shares are between 0 and 1.

use rust_decimal::prelude::*;
use serde::{Deserialize, Serialize};

/// Monthly rate as a fraction from an annual rate in percent.
fn monthly(annual_pct: Decimal) -> Decimal {
    annual_pct / Decimal::from(1200)
}

/// (1 + r)^n by squaring: O(log n) multiplications whatever the term, `None` when it
/// overflows `Decimal` (a rate and term no loan has; the callers then use the limit the
/// formula tends to).
fn growth(r: Decimal, n: u32) -> Option<Decimal> {
    let mut base = Decimal::ONE.checked_add(r)?;
    let mut acc = Decimal::ONE;
    let mut e = n;
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.checked_mul(base)?;
        }
        e >>= 1;
        if e > 0 {
            base = base.checked_mul(base)?;
        }
    }
    Some(acc)
}

/// Level monthly payment of an annuity loan, rounded to the fen. Work does not grow with
/// the term, and no input panics: where (1 + r)^n overflows, the payment is the interest
/// alone (its limit as the term grows), and an overflowing product saturates.
pub fn annuity_payment(principal: Decimal, annual_pct: Decimal, months: u32) -> Decimal {
    if months == 0 || principal <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    let r = monthly(annual_pct);
    if r.is_zero() {
        return (principal / Decimal::from(months)).round_dp(2);
    }
    let interest_only = principal.checked_mul(r).unwrap_or(Decimal::MAX);
    let payment = growth(r, months).and_then(|g| {
        interest_only
            .checked_mul(g)?
            .checked_div(g.checked_sub(Decimal::ONE)?)
    });
    payment.unwrap_or(interest_only).round_dp(2)
}

/// Interest paid over the term of an annuity loan: the level payments less the principal,
/// never negative, saturating rather than overflowing (bounded work, as
/// [`annuity_payment`]).
pub fn total_interest(principal: Decimal, annual_pct: Decimal, months: u32) -> Decimal {
    let paid = annuity_payment(principal, annual_pct, months)
        .checked_mul(Decimal::from(months))
        .unwrap_or(Decimal::MAX);
    (paid - principal.min(paid)).max(Decimal::ZERO)
}

/// Principal that a level monthly payment repays over the term. As for
/// [`annuity_payment`]: bounded work, and the limit payment / r where (1 + r)^n overflows.
pub fn annuity_principal(payment: Decimal, annual_pct: Decimal, months: u32) -> Decimal {
    if months == 0 || payment <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    let r = monthly(annual_pct);
    if r.is_zero() {
        return payment
            .checked_mul(Decimal::from(months))
            .unwrap_or(Decimal::MAX);
    }
    let perpetuity = payment.checked_div(r).unwrap_or(Decimal::MAX);
    growth(r, months)
        .and_then(|g| {
            payment
                .checked_mul(g.checked_sub(Decimal::ONE)?)?
                .checked_div(r.checked_mul(g)?)
        })
        .unwrap_or(perpetuity)
}

/// What the limit is computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitInput {
    /// Escrow-verified monthly revenue (spot sales plus escrow releases), yuan.
    pub monthly_revenue: Decimal,
    /// Existing loans' monthly instalments, yuan.
    pub existing_debt_service: Decimal,
    /// Prepaid liability not covered by escrow, yuan.
    pub uncovered_liability: Decimal,
    /// Annual rate quoted, %.
    pub annual_rate: Decimal,
    /// Term, months.
    pub term_months: u32,
    /// Limit as a multiple of monthly revenue.
    pub revenue_multiple: Decimal,
    /// Share of revenue available for debt service.
    pub operating_margin: Decimal,
    /// Minimum debt-service coverage.
    pub dscr_min: Decimal,
    /// Share of uncovered liability taken off.
    pub haircut: Decimal,
    /// Product (and industry) cap, yuan.
    pub cap: Decimal,
    /// Rounding unit, yuan.
    pub unit: Decimal,
}

/// A credit limit with its parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    /// revenue_multiple × monthly revenue.
    pub revenue_cap: Decimal,
    /// The principal whose instalment keeps the coverage ratio after existing debt service.
    pub debt_service_cap: Decimal,
    /// The product or industry cap.
    pub product_cap: Decimal,
    /// haircut × uncovered liability.
    pub haircut: Decimal,
    /// min(caps) − haircut, never negative, rounded down to the unit.
    pub limit: Decimal,
    /// Which cap bound: `revenue`, `debt_service` or `product`.
    pub binding: String,
}

/// The credit limit: the smallest of the revenue, debt-service and product caps, less the
/// haircut on uncovered prepaid liability; never negative; rounded down to the unit.
pub fn credit_limit(i: &LimitInput) -> Limit {
    let zero = Decimal::ZERO;
    let revenue = i.monthly_revenue.max(zero);
    let revenue_cap = (i.revenue_multiple * revenue).round_dp(2);
    let available = if i.dscr_min > zero {
        revenue * i.operating_margin / i.dscr_min
    } else {
        zero
    };
    let payment = (available - i.existing_debt_service.max(zero)).max(zero);
    let debt_service_cap = annuity_principal(payment, i.annual_rate, i.term_months).round_dp(2);
    let product_cap = i.cap.max(zero);
    let (mut low, mut binding) = (revenue_cap, "revenue");
    if debt_service_cap < low {
        (low, binding) = (debt_service_cap, "debt_service");
    }
    if product_cap < low {
        (low, binding) = (product_cap, "product");
    }
    let haircut = (i.haircut * i.uncovered_liability.max(zero)).round_dp(2);
    let raw = (low - haircut).max(zero);
    let limit = if i.unit > zero {
        (raw / i.unit).floor() * i.unit
    } else {
        raw
    };
    Limit {
        revenue_cap,
        debt_service_cap,
        product_cap,
        haircut,
        limit,
        binding: binding.into(),
    }
}

/// What the price is computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceInput {
    /// Probability of default over the horizon (share).
    pub pd: Decimal,
    /// Loss given default before cover (share).
    pub lgd: Decimal,
    /// Share of the loss covered by guarantees and risk compensation (0–1).
    pub cover: Decimal,
    /// Reference rate (1-year LPR), %.
    pub lpr: Decimal,
    /// Operating cost, %.
    pub opex: Decimal,
    /// Capital charge, %.
    pub capital: Decimal,
    /// Margin, %.
    pub margin: Decimal,
    /// Product floor, %.
    pub floor: Decimal,
    /// Product cap, %.
    pub cap: Decimal,
    /// Share of interest paid by a subsidy (0–1).
    pub subsidy: Decimal,
}

/// A risk-based price, % a year.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Reference rate.
    pub lpr: Decimal,
    /// PD × LGD × (1 − cover), in %.
    pub expected_loss: Decimal,
    /// Operating cost.
    pub opex: Decimal,
    /// Capital charge.
    pub capital: Decimal,
    /// Margin.
    pub margin: Decimal,
    /// LGD after cover (share).
    pub lgd_after_cover: Decimal,
    /// The lender's rate: the sum, floored and capped by the product.
    pub rate: Decimal,
    /// The merchant's effective rate after interest subsidy.
    pub effective_rate: Decimal,
}

/// Reference rate + expected loss + operating cost + capital + margin, floored and capped;
/// the merchant's effective rate after subsidy shown separately.
pub fn price(i: &PriceInput) -> Price {
    let cover = i.cover.clamp(Decimal::ZERO, Decimal::ONE);
    let lgd_after_cover = (i.lgd * (Decimal::ONE - cover)).round_dp(4);
    let expected_loss =
        (i.pd.clamp(Decimal::ZERO, Decimal::ONE) * lgd_after_cover * Decimal::ONE_HUNDRED)
            .round_dp(2);
    let raw = i.lpr + expected_loss + i.opex + i.capital + i.margin;
    let rate = raw.max(i.floor).min(i.cap.max(i.floor)).round_dp(2);
    let effective_rate =
        (rate * (Decimal::ONE - i.subsidy.clamp(Decimal::ZERO, Decimal::ONE))).round_dp(2);
    Price {
        lpr: i.lpr,
        expected_loss,
        opex: i.opex,
        capital: i.capital,
        margin: i.margin,
        lgd_after_cover,
        rate,
        effective_rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn base() -> LimitInput {
        LimitInput {
            monthly_revenue: d("100000"),
            existing_debt_service: d("2000"),
            uncovered_liability: d("40000"),
            annual_rate: d("6.00"),
            term_months: 12,
            revenue_multiple: d("1.5"),
            operating_margin: d("0.15"),
            dscr_min: d("1.25"),
            haircut: d("0.5"),
            cap: d("1000000"),
            unit: d("1000"),
        }
    }

    #[test]
    fn total_interest_is_the_payments_less_the_principal() {
        // 8,606.64 × 12 − 100,000 = 3,279.68.
        assert_eq!(total_interest(d("100000"), d("6.00"), 12), d("3279.68"));
        assert_eq!(total_interest(d("120000"), d("0"), 12), d("0"));
        assert_eq!(total_interest(d("100000"), d("6.00"), 0), d("0"));
        assert!(total_interest(Decimal::MAX, d("36"), u32::MAX) >= Decimal::ZERO);
    }

    #[test]
    fn annuities_match_the_textbook() {
        // 100,000 over 12 months at 6 %: 8,606.64 a month.
        assert_eq!(annuity_payment(d("100000"), d("6"), 12), d("8606.64"));
        let p = annuity_principal(d("8606.64"), d("6"), 12);
        assert!((p - d("100000")).abs() < d("0.05"), "{p}");
        assert_eq!(annuity_payment(d("1200"), d("0"), 12), d("100.00"));
    }

    #[test]
    fn any_term_is_answered_at_once_without_a_panic() {
        // The service once panicked at 12,126 months and looped u32::MAX times at the
        // integer maximum; now the work is logarithmic and overflow has a limit.
        let start = std::time::Instant::now();
        for months in [12_126, 1_000_000, u32::MAX] {
            let p = annuity_payment(d("100000"), d("6"), months);
            assert_eq!(
                p,
                d("500.00"),
                "interest only in the limit ({months} months)"
            );
            let q = annuity_principal(d("500"), d("6"), months);
            assert!((q - d("100000")).abs() < d("0.01"), "{q}");
        }
        assert!(annuity_payment(Decimal::MAX, Decimal::MAX, u32::MAX) > Decimal::ZERO);
        assert!(annuity_principal(Decimal::MAX, d("0"), u32::MAX) > Decimal::ZERO);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_worked_limit() {
        // Revenue cap 150,000. Cash for debt service 100,000 × 0.15 / 1.25 = 12,000, less
        // 2,000 existing = 10,000 a month: about 116,189 over 12 months at 6 %. Product cap
        // 1,000,000. The debt-service cap binds; less half of 40,000 uncovered = 96,189,
        // rounded down to 96,000.
        let l = credit_limit(&base());
        assert_eq!(l.revenue_cap, d("150000"));
        assert_eq!(l.binding, "debt_service");
        assert!(
            (l.debt_service_cap - d("116189.32")).abs() < d("0.5"),
            "{}",
            l.debt_service_cap
        );
        assert_eq!(l.haircut, d("20000"));
        assert_eq!(l.limit, d("96000"));
    }

    #[test]
    fn a_worked_price() {
        // LPR 3.00 + PD 2 % × LGD 0.6 × (1 − 0.5 cover) = 0.60 + 0.8 + 1.0 + 0.5 = 5.90 %;
        // half the interest subsidised: 2.95 %.
        let p = price(&PriceInput {
            pd: d("0.02"),
            lgd: d("0.6"),
            cover: d("0.5"),
            lpr: d("3.00"),
            opex: d("0.8"),
            capital: d("1.0"),
            margin: d("0.5"),
            floor: d("3.2"),
            cap: d("8"),
            subsidy: d("0.5"),
        });
        assert_eq!(p.expected_loss, d("0.60"));
        assert_eq!(p.rate, d("5.90"));
        assert_eq!(p.effective_rate, d("2.95"));
    }

    fn dec(lo: i64, hi: i64) -> impl Strategy<Value = Decimal> {
        (lo..hi).prop_map(|v| Decimal::new(v, 2))
    }

    proptest! {
        /// The limit never exceeds a cap, never goes negative, is a multiple of the unit, and
        /// grows with revenue and shrinks as the rate (i.e. the PD) rises.
        #[test]
        fn limit_properties(
            rev in dec(0, 100_000_000), debt in dec(0, 5_000_000), unc in dec(0, 50_000_000),
            rate in dec(100, 2000), term in 1u32..60, cap in dec(0, 300_000_000),
            more in dec(0, 10_000_000), rate_up in dec(0, 1000),
        ) {
            let i = LimitInput { monthly_revenue: rev, existing_debt_service: debt, uncovered_liability: unc,
                annual_rate: rate, term_months: term, cap, ..base() };
            let l = credit_limit(&i);
            prop_assert!(l.limit >= Decimal::ZERO);
            prop_assert!(l.limit <= l.revenue_cap && l.limit <= l.debt_service_cap && l.limit <= l.product_cap);
            prop_assert!((l.limit / i.unit).fract().is_zero());
            let richer = credit_limit(&LimitInput { monthly_revenue: rev + more, ..i.clone() });
            prop_assert!(richer.limit >= l.limit);
            let dearer = credit_limit(&LimitInput { annual_rate: rate + rate_up, ..i.clone() });
            prop_assert!(dearer.limit <= l.limit);
        }

        /// The price never falls as the PD rises, stays within the product's floor and cap,
        /// and the subsidised rate never exceeds it.
        #[test]
        fn price_properties(pd in 0u32..10_000, up in 0u32..10_000, cover in 0u32..100, sub in 0u32..100) {
            let mk = |pd: u32| PriceInput {
                pd: Decimal::new(i64::from(pd), 4), lgd: d("0.6"), cover: Decimal::new(i64::from(cover), 2),
                lpr: d("3.0"), opex: d("0.8"), capital: d("1.0"), margin: d("0.5"), floor: d("3.2"), cap: d("12"),
                subsidy: Decimal::new(i64::from(sub), 2),
            };
            let a = price(&mk(pd));
            let b = price(&mk((pd + up).min(10_000)));
            prop_assert!(b.rate >= a.rate);
            prop_assert!(a.rate >= d("3.2") && a.rate <= d("12"));
            prop_assert!(a.effective_rate <= a.rate);
        }
    }
}
