//! The code behind each characteristic of the domain's vocabulary
//! ([`yuanxin_domain::vocabulary`]), in its order: the vocabulary says what a characteristic
//! is, this file how it is computed from a merchant's ledger events.

use serde::Serialize;
use yuanxin_domain::vocabulary::{characteristic, Characteristic};

use crate::data::{esc, ops, public, Code, Source};
use crate::snapshot::{last, upto, wallet, wallet_flow, SatSum, Snap};

/// Why a characteristic has no value.
pub type Missing = &'static str;

/// A characteristic's value, or why it has none.
pub type Value = Result<f64, Missing>;

/// One characteristic: its words (from the domain's vocabulary) and the code that
/// computes it.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    /// Name, definition, unit, direction and display names.
    pub meta: &'static Characteristic,
    /// Parts of the ledger it reads beyond the ones every profile needs (see [`Source`]),
    /// so that a profile of a few characteristics loads only what they read. A test
    /// checks each characteristic alone against a profile of all of them.
    pub(crate) reads: &'static [Source],
    /// The merchant's own value; for a peer characteristic, the value its peers' median
    /// is taken from and subtracted (see [`Feature::peer`]).
    pub(crate) compute: fn(&Snap<'_>) -> Value,
    /// Whether the characteristic is relative to the merchant's peers: `compute` less the
    /// median of its peers' `compute` at the same as-of date. It needs every merchant's
    /// value first, so it is finished once all rows are computed (`crate::peers`).
    pub(crate) peer: bool,
}

impl std::ops::Deref for Feature {
    type Target = Characteristic;
    fn deref(&self) -> &Characteristic {
        self.meta
    }
}

impl Serialize for Feature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.meta.serialize(s)
    }
}

fn yuan(fen: i64) -> f64 {
    fen as f64 / 100.0
}

fn ratio(num: f64, den: f64, why: Missing) -> Value {
    if den > 0.0 {
        Ok(num / den)
    } else {
        Err(why)
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len().max(1) as f64).sqrt()
}

/// Revenue of the last `n` thirty-day buckets, oldest first, if the merchant has that much
/// history.
fn months(s: &Snap<'_>, n: usize) -> Result<Vec<f64>, Missing> {
    if s.history_days() < 30 * n as i32 {
        return Err("insufficient_history");
    }
    Ok(s.rev.iter().take(n).rev().map(|f| yuan(*f)).collect())
}

/// A refund request of the last 180 days and what was settled of it by the as-of date.
struct RefundRequest {
    day: i32,
    asked: i64,
    settled: i64,
    settled_on: Option<i32>,
}

/// The refund requests of the last 180 days, each with the settlements (escrow, merchant
/// or unrecovered) of its contract that followed it up to the as-of date.
fn refund_requests(s: &Snap<'_>) -> Vec<RefundRequest> {
    let mut open: std::collections::HashMap<u64, usize> = Default::default();
    let mut out: Vec<RefundRequest> = Vec::new();
    for e in last(&s.m.escrow, s.d, 180) {
        if e.kind == esc::REFUND_REQUESTED {
            // A contract's latest request stands for it (a request repeated is not
            // another debt).
            let r = RefundRequest {
                day: e.day,
                asked: e.amount,
                settled: 0,
                settled_on: None,
            };
            match open.get(&e.contract).and_then(|&k| out.get_mut(k)) {
                Some(old) => *old = r,
                None => {
                    open.insert(e.contract, out.len());
                    out.push(r);
                }
            }
        } else if e.kind == esc::REFUND_COMPLETED {
            if let Some(r) = open.get(&e.contract).and_then(|&k| out.get_mut(k)) {
                r.settled = r.settled.saturating_add(e.amount);
                r.settled_on = Some(e.day);
            }
        }
    }
    out
}

fn on_time_ratio(s: &Snap<'_>, kind: u8) -> Value {
    let rows: Vec<bool> = last(&s.m.operations, s.d, 180)
        .iter()
        .filter(|o| o.kind == kind)
        .filter_map(|o| o.on_time)
        .collect();
    if rows.is_empty() {
        return Err("no_records");
    }
    Ok(rows.iter().filter(|x| **x).count() as f64 / rows.len() as f64)
}

fn usage(s: &Snap<'_>, from: i32, to: i32) -> i64 {
    crate::snapshot::between(&s.m.operations, s.d - from, s.d - to)
        .iter()
        .filter(|o| o.kind == ops::ELECTRICITY)
        .map(|o| o.usage)
        .sat_sum()
}

fn headcount_at(s: &Snap<'_>, d: i32) -> Option<i64> {
    upto(&s.m.operations, d)
        .iter()
        .rev()
        .take_while(|o| o.day > d - 45)
        .find(|o| o.kind == ops::PAYROLL)
        .map(|o| o.headcount)
}

/// The amount of the latest record of an operation kind within 45 days of `d` (a month's
/// payroll or rent), if there is one.
fn latest_amount(s: &Snap<'_>, kind: u8) -> Option<i64> {
    last(&s.m.operations, s.d, 45)
        .iter()
        .rev()
        .find(|o| o.kind == kind)
        .map(|o| o.amount)
}

/// Days of the last 90 whose end-of-day wallet balance was below `floor` (fen): the
/// balance 90 days ago, then each day's visible flows in and out.
fn days_below(s: &Snap<'_>, floor: i64) -> usize {
    let start = s.d - 90;
    let mut delta = [0i64; 90];
    let mut put = |day: i32, amount: i64| {
        if let Some(x) = usize::try_from(day - start - 1)
            .ok()
            .and_then(|k| delta.get_mut(k))
        {
            *x = x.saturating_add(amount);
        }
    };
    for e in last(&s.m.spot, s.d, 90) {
        put(e.day, e.amount);
    }
    for e in last(&s.m.withdrawals, s.d, 90) {
        put(e.day, -e.amount);
    }
    for e in last(&s.m.escrow, s.d, 90) {
        put(e.day, wallet_flow(e));
    }
    let mut balance = wallet(s.m, start);
    delta
        .iter()
        .filter(|d| {
            balance = balance.saturating_add(**d);
            balance < floor
        })
        .count()
}

/// 1 if the merchant's latest public record of a list (`listed` or `removed`) at the as-of
/// date is a listing.
fn on_list(s: &Snap<'_>, listed: u8, removed: u8) -> f64 {
    f64::from(u8::from(
        upto(&s.m.public, s.d)
            .iter()
            .rev()
            .find(|p| p.kind == listed || p.kind == removed)
            .is_some_and(|p| p.kind == listed),
    ))
}

/// What is left of the merchant's risk reserve or bond cover at the as-of date: the
/// amount its record in force states, less what has been drawn on it.
fn guarantee_left(s: &Snap<'_>) -> i64 {
    let Some(amount) = s.r.guarantee else {
        return 0;
    };
    let drawn: i64 = upto(&s.m.escrow, s.d)
        .iter()
        .filter(|e| e.kind == esc::REFUND_COMPLETED && e.code == Code::Guarantee)
        .map(|e| e.amount)
        .sat_sum();
    amount.saturating_sub(drawn).max(0)
}

fn open_stores(s: &Snap<'_>) -> Vec<(u64, Option<i32>)> {
    let mut open: std::collections::BTreeMap<u64, Option<i32>> = Default::default();
    for e in upto(&s.m.stores, s.d) {
        if e.opened {
            open.insert(e.store, e.lease_end);
        } else {
            open.remove(&e.store);
        }
    }
    open.into_iter().collect()
}

fn months_between(from: i32, to: i32) -> f64 {
    f64::from(to - from) / 30.4375
}

/// A characteristic's code, under its vocabulary entry: a name missing from the vocabulary
/// does not compile.
macro_rules! f {
    ($name:literal, $reads:expr, $f:expr) => {
        Feature {
            meta: {
                const META: &Characteristic = match characteristic($name) {
                    Some(m) => m,
                    None => panic!(concat!("no characteristic ", $name, " in the vocabulary")),
                };
                META
            },
            reads: $reads,
            compute: $f,
            peer: false,
        }
    };
    (peer $name:literal, $reads:expr, $f:expr) => {
        Feature {
            peer: true,
            ..f!($name, $reads, $f)
        }
    };
}

fn rev_change(s: &Snap<'_>) -> Value {
    months(s, 6)?;
    ratio(
        s.rev_sum(3) as f64,
        s.rev_sum(6).saturating_sub(s.rev_sum(3)) as f64,
        "no_revenue",
    )
}

fn avg_discount(s: &Snap<'_>) -> Value {
    let c = last(&s.m.contracts, s.d, 90);
    if c.is_empty() {
        return Err("no_contracts");
    }
    Ok(c.iter().map(|c| c.discount_bp as f64).sum::<f64>() / c.len() as f64 / 10_000.0)
}

/// Every characteristic's code, in the vocabulary's order (a test checks it).
pub static FEATURES: &[Feature] = &[
    // ---- cash flow ----
    f!("rev_total_30d", &[], |s| Ok(yuan(s.rev_sum(1)))),
    f!("rev_total_90d", &[], |s| Ok(yuan(s.rev_sum(3)))),
    f!("rev_total_365d", &[], |s| Ok(yuan(s.rev_sum(12)))),
    f!("rev_trend_slope_6m", &[], |s| {
        let v = months(s, 6)?;
        let m = mean(&v);
        if m <= 0.0 {
            return Err("no_revenue");
        }
        let xs: Vec<f64> = (0..v.len()).map(|i| i as f64).collect();
        let mx = mean(&xs);
        let cov: f64 = xs.iter().zip(&v).map(|(x, y)| (x - mx) * (y - m)).sum();
        let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        Ok(cov / var / m)
    }),
    f!("rev_change_90d", &[], rev_change),
    f!(peer "rev_change_vs_peers_90d", &[], rev_change),
    f!("rev_yoy_90d", &[], |s| {
        if s.history_days() < 450 {
            return Err("insufficient_history");
        }
        let year_before = (12..15)
            .map(|k| crate::snapshot::revenue_bucket(s.m, s.d, k))
            .sat_sum();
        ratio(
            s.rev_sum(3) as f64,
            year_before as f64,
            "no_revenue_last_year",
        )
    }),
    f!("rev_cv_6m", &[], |s| {
        let v = months(s, 6)?;
        ratio(std(&v), mean(&v), "no_revenue")
    }),
    f!("rev_drawdown_max_6m", &[], |s| {
        let v = months(s, 6)?;
        let mut peak: f64 = 0.0;
        let mut worst: f64 = 0.0;
        for x in v {
            peak = peak.max(x);
            if peak > 0.0 {
                worst = worst.max((peak - x) / peak);
            }
        }
        Ok(worst)
    }),
    f!("days_since_last_sale", &[], |s| upto(&s.m.spot, s.d)
        .last()
        .map(|e| f64::from(s.d - e.day))
        .ok_or("no_sales")),
    f!("active_days_ratio_30d", &[], |s| {
        let mut days: Vec<i32> = last(&s.m.spot, s.d, 30).iter().map(|e| e.day).collect();
        days.dedup();
        Ok(days.len() as f64 / 30.0)
    }),
    f!("wallet_buffer_days", &[], |s| {
        let daily = s.rev_sum(3) as f64 / 90.0;
        ratio(wallet(s.m, s.d) as f64, daily, "no_revenue")
    }),
    f!("withdrawal_sweep_ratio_30d", &[], |s| {
        let out: i64 = last(&s.m.withdrawals, s.d, 30)
            .iter()
            .map(|e| e.amount)
            .sat_sum();
        let immediate: i64 = last(&s.m.escrow, s.d, 30)
            .iter()
            .filter(|e| e.kind == esc::PREPAYMENT)
            .map(|e| e.amount - e.frozen)
            .sat_sum();
        ratio(
            out as f64,
            s.rev_sum(1).saturating_add(immediate) as f64,
            "no_inflow",
        )
    }),
    f!("withdrawals_30d", &[], |s| Ok(
        last(&s.m.withdrawals, s.d, 30).len() as f64
    )),
    f!("payroll_uncovered_days_90d", &[], |s| {
        // A week of the fixed costs: most merchants keep their reserves at the bank, so
        // a month's worth in the wallet is rare; not even a week's is the NSF analogue.
        let month = latest_amount(s, ops::PAYROLL)
            .unwrap_or(0)
            .saturating_add(latest_amount(s, ops::RENT).unwrap_or(0));
        let floor = month / 4;
        if floor <= 0 {
            return Err("no_payroll");
        }
        Ok(days_below(s, floor) as f64)
    }),
    // ---- prepaid liability and escrow ----
    f!("prepaid_liability", &[], |s| Ok(yuan(s.book.liability))),
    f!("liability_to_monthly_rev", &[], |s| ratio(
        s.book.liability as f64,
        s.rev_sum(3) as f64 / 3.0,
        "no_revenue"
    )),
    f!("liability_to_annual_rev", &[], |s| ratio(
        s.book.liability as f64,
        s.rev_sum(12) as f64,
        "no_revenue"
    )),
    f!("escrow_coverage", &[], |s| ratio(
        s.book.frozen as f64,
        s.book.liability as f64,
        "no_liability"
    )),
    f!("uncovered_liability", &[], |s| Ok(yuan(
        s.book.liability.saturating_sub(s.book.frozen).max(0)
    ))),
    f!("protection_coverage", &[], |s| ratio(
        s.book.frozen.saturating_add(guarantee_left(s)) as f64,
        s.book.liability as f64,
        "no_liability"
    )),
    f!("liability_growth_90d", &[], |s| ratio(
        (s.book.liability - s.book_90.liability) as f64,
        s.book_90.liability as f64,
        "no_liability"
    )),
    f!("new_contract_tenor_days_90d", &[Source::Contracts], |s| {
        let c = last(&s.m.contracts, s.d, 90);
        if c.is_empty() {
            return Err("no_contracts");
        }
        Ok(c.iter().map(|c| f64::from(c.tenor_days)).sum::<f64>() / c.len() as f64)
    }),
    f!("long_tenor_share_90d", &[Source::Contracts], |s| {
        let c = last(&s.m.contracts, s.d, 90);
        if c.is_empty() {
            return Err("no_contracts");
        }
        Ok(c.iter().filter(|c| c.tenor_days > 366).count() as f64 / c.len() as f64)
    }),
    f!("prepaid_sales_30d", &[], |s| Ok(yuan(
        s.escrow_sum(esc::PREPAYMENT, 30)
    ))),
    f!("prepaid_to_spot_90d", &[], |s| {
        let spot: i64 = last(&s.m.spot, s.d, 90).iter().map(|e| e.amount).sat_sum();
        ratio(
            s.escrow_sum(esc::PREPAYMENT, 90) as f64,
            spot as f64,
            "no_sales",
        )
    }),
    // ---- redemption and release ----
    f!("redemption_to_liability_30d", &[], |s| ratio(
        s.escrow_sum(esc::REDEMPTION, 30) as f64,
        s.book_30.liability as f64,
        "no_liability"
    )),
    f!("delivery_change_30d", &[], |s| {
        let recent = s.escrow_sum(esc::REDEMPTION, 30) as f64;
        let before = (s.escrow_sum(esc::REDEMPTION, 90) as f64 - recent) / 2.0;
        ratio(recent, before, "no_redemptions")
    }),
    f!("release_to_prepay_90d", &[], |s| ratio(
        s.escrow_sum(esc::RELEASE, 90) as f64,
        s.escrow_sum(esc::PREPAYMENT, 90) as f64,
        "no_prepayments"
    )),
    f!("active_contracts", &[Source::ContractIds], |s| Ok(
        s.book.active_contracts as f64
    )),
    f!("active_contracts_change_90d", &[Source::ContractIds], |s| {
        ratio(
            s.book.active_contracts as f64,
            s.book_90.active_contracts as f64,
            "no_contracts",
        )
    }),
    f!("repeat_customer_share_180d", &[Source::Contracts], |s| {
        let before: std::collections::HashSet<u64> = upto(&s.m.contracts, s.d - 180)
            .iter()
            .map(|c| c.consumer)
            .collect();
        let recent = last(&s.m.contracts, s.d, 180);
        if recent.is_empty() {
            return Err("no_contracts");
        }
        let mut seen = before;
        let mut repeat = 0;
        for c in recent {
            if !seen.insert(c.consumer) {
                repeat += 1;
            }
        }
        Ok(f64::from(repeat) / recent.len() as f64)
    }),
    f!("release_rejections_90d", &[], |s| Ok(
        s.escrow_count(esc::RELEASE_REJECTED, 90) as f64
    )),
    f!("expiry_breakage_365d", &[], |s| {
        let exp = s.escrow_sum(esc::EXPIRY, 365) as f64;
        ratio(
            exp,
            exp + s.escrow_sum(esc::REDEMPTION, 365) as f64,
            "no_redemptions",
        )
    }),
    // ---- promotion pressure ----
    f!("promo_discount_max_90d", &[Source::Promotions], |s| Ok(
        last(&s.m.promotions, s.d, 90)
            .iter()
            .map(|p| p.discount_bp)
            .max()
            .unwrap_or(0) as f64
            / 10_000.0
    )),
    f!("promo_bonus_max_90d", &[Source::Promotions], |s| Ok(
        last(&s.m.promotions, s.d, 90)
            .iter()
            .map(|p| p.bonus_bp)
            .max()
            .unwrap_or(0) as f64
            / 10_000.0
    )),
    f!("promo_long_tenor_90d", &[Source::Promotions], |s| Ok(
        f64::from(u8::from(
            last(&s.m.promotions, s.d, 90)
                .iter()
                .any(|p| p.tenor_days > 730)
        ))
    )),
    f!("avg_discount_new_90d", &[Source::Contracts], avg_discount),
    f!(peer "discount_vs_peers_90d", &[Source::Contracts], avg_discount),
    f!("new_prepay_spike_z", &[], |s| {
        if s.history_days() < 180 {
            return Err("insufficient_history");
        }
        let buckets: Vec<f64> = (1..12)
            .map(|k| {
                crate::snapshot::between(&s.m.escrow, s.d - 30 * (k + 1), s.d - 30 * k)
                    .iter()
                    .filter(|e| e.kind == esc::PREPAYMENT)
                    .map(|e| yuan(e.amount))
                    .sum()
            })
            .collect();
        let sd = std(&buckets);
        let recent = yuan(s.escrow_sum(esc::PREPAYMENT, 30));
        Ok((recent - mean(&buckets)) / sd.max(1.0))
    }),
    f!("prepaid_sales_yoy_90d", &[], |s| {
        if s.history_days() < 450 {
            return Err("insufficient_history");
        }
        let prepaid = |from: i32, to: i32| {
            crate::snapshot::between(&s.m.escrow, from, to)
                .iter()
                .filter(|e| e.kind == esc::PREPAYMENT)
                .map(|e| e.amount)
                .sat_sum()
        };
        ratio(
            prepaid(s.d - 90, s.d) as f64,
            prepaid(s.d - 450, s.d - 360) as f64,
            "no_prepaid_sales_last_year",
        )
    }),
    f!("top_consumer_share_365d", &[Source::Contracts], |s| {
        let mut by: std::collections::HashMap<u64, i64> = Default::default();
        for c in last(&s.m.contracts, s.d, 365) {
            let v = by.entry(c.consumer).or_default();
            *v = v.saturating_add(c.paid);
        }
        let mut paid: Vec<i64> = by.into_values().collect();
        let total = paid.iter().copied().sat_sum();
        paid.sort_unstable_by(|a, b| b.cmp(a));
        let top = paid.iter().take(5).copied().sat_sum();
        ratio(top as f64, total as f64, "no_contracts")
    }),
    // ---- refunds and complaints ----
    f!("refund_rate_90d", &[], |s| ratio(
        s.escrow_sum(esc::REFUND_REQUESTED, 90) as f64,
        s.escrow_sum(esc::PREPAYMENT, 90) as f64,
        "no_prepayments"
    )),
    f!("refund_requests_change_30d", &[], |s| Ok(
        s.escrow_count(esc::REFUND_REQUESTED, 30) as f64 * 2.0
            - s.escrow_count(esc::REFUND_REQUESTED, 60) as f64
    )),
    f!("service_failure_refunds_90d", &[], |s| Ok(
        last(&s.m.escrow, s.d, 90)
            .iter()
            .filter(|e| e.kind == esc::REFUND_REQUESTED && e.code == Code::ServiceFailure)
            .count() as f64
    )),
    f!("unrecovered_refunds_365d", &[], |s| Ok(yuan(
        last(&s.m.escrow, s.d, 365)
            .iter()
            .filter(|e| e.kind == esc::REFUND_COMPLETED && e.code == Code::Unrecovered)
            .map(|e| e.amount)
            .sat_sum()
    ))),
    f!("refund_backlog", &[Source::ContractIds], |s| Ok(yuan(
        refund_requests(s)
            .iter()
            .map(|r| (r.asked - r.settled).max(0))
            .sat_sum()
    ))),
    f!("refund_lag_days_180d", &[Source::ContractIds], |s| {
        let lags: Vec<f64> = refund_requests(s)
            .iter()
            .filter(|r| r.settled >= r.asked)
            .filter_map(|r| r.settled_on.map(|d| f64::from(d - r.day)))
            .collect();
        if lags.is_empty() {
            return Err("no_settled_refunds");
        }
        Ok(mean(&lags))
    }),
    f!("complaints_90d", &[Source::Complaints], |s| Ok(
        last(&s.m.complaints, s.d, 90).len() as f64
    )),
    f!("complaints_hotline_90d", &[Source::Complaints], |s| Ok(
        last(&s.m.complaints, s.d, 90)
            .iter()
            .filter(|c| c.channel == 0)
            .count() as f64
    )),
    f!(
        "complaints_per_100_contracts_90d",
        &[Source::ContractIds, Source::Complaints],
        |s| ratio(
            100.0 * last(&s.m.complaints, s.d, 90).len() as f64,
            s.book.active_contracts as f64,
            "no_contracts"
        )
    ),
    f!(
        "closure_refund_complaints_30d",
        &[Source::Complaints],
        |s| Ok(last(&s.m.complaints, s.d, 30)
            .iter()
            .filter(|c| c.closure_or_refund)
            .count() as f64)
    ),
    // ---- operations ----
    f!("payroll_on_time_ratio_6m", &[], |s| on_time_ratio(
        s,
        ops::PAYROLL
    )),
    f!("social_insurance_on_time_6m", &[], |s| on_time_ratio(
        s,
        ops::SOCIAL_INSURANCE
    )),
    f!("headcount_trend_6m", &[], |s| {
        let now = headcount_at(s, s.d).ok_or("no_payroll")?;
        let then = headcount_at(s, s.d - 180).ok_or("insufficient_history")?;
        ratio(now as f64, then as f64, "no_payroll")
    }),
    f!("utility_usage_trend_3m", &[], |s| ratio(
        usage(s, 90, 0) as f64,
        usage(s, 180, 90) as f64,
        "no_utility_records"
    )),
    f!("stores_open", &[Source::Stores], |s| Ok(
        open_stores(s).len() as f64
    )),
    f!("stores_closed_365d", &[Source::Stores], |s| Ok(
        last(&s.m.stores, s.d, 365)
            .iter()
            .filter(|e| !e.opened)
            .count() as f64
    )),
    f!("lease_remaining_months_min", &[Source::Stores], |s| {
        open_stores(s)
            .iter()
            .filter_map(|(_, l)| *l)
            .min()
            .map(|l| months_between(s.d, l))
            .ok_or("no_lease_data")
    }),
    f!("rent_on_time_ratio_6m", &[], |s| on_time_ratio(
        s,
        ops::RENT
    )),
    f!("rent_to_revenue_90d", &[], |s| {
        let rent: i64 = last(&s.m.operations, s.d, 90)
            .iter()
            .filter(|o| o.kind == ops::RENT)
            .map(|o| o.amount)
            .sat_sum();
        if rent <= 0 {
            return Err("no_rent_records");
        }
        ratio(rent as f64, s.rev_sum(3) as f64, "no_revenue")
    }),
    // ---- tenure, custody, structure ----
    f!("months_since_registration", &[], |s| s
        .r
        .registered_on
        .map(|r| months_between(r, s.d))
        .ok_or("no_registration_date")),
    f!("months_on_ecny_platform", &[], |s| Ok(s
        .r
        .onboarded_on
        .filter(|o| *o <= s.d)
        .map(|o| months_between(o, s.d))
        .unwrap_or(0.0))),
    f!("freeze_ratio", &[], |s| s
        .r
        .freeze_bp
        .map(|b| b as f64 / 10_000.0)
        .ok_or("no_custody_terms")),
    f!("custody_compliant", &[Source::Contracts], |s| {
        if s.book.liability <= 0 {
            return Err("no_liability");
        }
        let protected = s.book.frozen.saturating_add(guarantee_left(s));
        let covered = protected.saturating_mul(10) >= s.book.liability.saturating_mul(4);
        let capped = !s.r.industry.starts_with("EDU_")
            || s.r.industry == "EDU_VOCATIONAL"
            || last(&s.m.contracts, s.d, 180)
                .iter()
                .all(|c| c.tenor_days <= 93);
        Ok(f64::from(u8::from(covered && capped)))
    }),
    f!("account_changes_365d", &[], |s| Ok(
        last(&s.m.withdrawals, s.d, 365)
            .iter()
            .filter(|w| w.changed)
            .count() as f64
    )),
    f!("related_entity_opened_180d", &[], |s| {
        // Another entity of the owners' group as the registry stood on the day.
        let opened = s.city.groups.get(&s.r.group).is_some_and(|v| {
            v.iter().any(|e| {
                (e.from..e.until).contains(&s.d)
                    && e.registered_on > s.d - 180
                    && e.registered_on <= s.d
                    && s.city.merchants.get(e.slot).is_some_and(|o| o.id != s.m.id)
            })
        });
        Ok(f64::from(u8::from(opened)))
    }),
    // ---- public records ----
    f!("admin_penalties_730d", &[Source::PublicRecords], |s| Ok(
        last(&s.m.public, s.d, 730)
            .iter()
            .filter(|p| p.kind == public::ADMIN_PENALTY)
            .count() as f64
    )),
    f!("lawsuits_730d", &[Source::PublicRecords], |s| Ok(
        last(&s.m.public, s.d, 730)
            .iter()
            .filter(|p| p.kind == public::LAWSUIT)
            .count() as f64
    )),
    f!("abnormal_listed", &[Source::PublicRecords], |s| Ok(
        on_list(s, public::ABNORMAL_LISTED, public::ABNORMAL_REMOVED)
    )),
    f!("enforcement_amount_730d", &[Source::PublicRecords], |s| Ok(
        yuan(
            last(&s.m.public, s.d, 730)
                .iter()
                .filter(|p| p.kind == public::ENFORCEMENT)
                .map(|p| p.amount)
                .sat_sum()
        )
    )),
    f!("dishonest_listed", &[Source::PublicRecords], |s| Ok(
        on_list(s, public::DISHONEST_LISTED, public::DISHONEST_REMOVED)
    )),
    // ---- loans ----
    f!("loan_current_dpd", &[Source::Loans], |s| {
        if upto(&s.m.loans, s.d).is_empty() {
            return Err("no_loans");
        }
        Ok(last(&s.m.loans, s.d, 45)
            .iter()
            .filter(|l| l.kind == 3)
            .map(|l| l.dpd)
            .max()
            .unwrap_or(0) as f64)
    }),
    f!("loan_max_dpd_365d", &[Source::Loans], |s| {
        if upto(&s.m.loans, s.d).is_empty() {
            return Err("no_loans");
        }
        Ok(last(&s.m.loans, s.d, 365)
            .iter()
            .filter(|l| l.kind == 3)
            .map(|l| l.dpd)
            .max()
            .unwrap_or(0) as f64)
    }),
    f!("debt_service_to_revenue_30d", &[Source::Loans], |s| {
        let due: i64 = last(&s.m.loans, s.d, 30)
            .iter()
            .filter(|l| l.kind == 1)
            .map(|l| l.amount)
            .sat_sum();
        ratio(due as f64, s.rev_sum(1) as f64, "no_revenue")
    }),
    f!("loans_active", &[Source::Loans], |s| {
        let mut ids: Vec<u64> = last(&s.m.loans, s.d, 45)
            .iter()
            .filter(|l| l.kind == 1)
            .map(|l| l.loan)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids.len() as f64)
    }),
    f!("loans_taken_365d", &[Source::Loans], |s| Ok(
        last(&s.m.loans, s.d, 365)
            .iter()
            .filter(|l| l.kind == 0)
            .count() as f64
    )),
    f!("credit_inquiries_90d", &[Source::Bureau], |s| Ok(
        last(&s.m.bureau, s.d, 90)
            .iter()
            .filter(|b| !b.balance && b.application)
            .count() as f64
    )),
    f!("other_debt_to_annual_rev", &[Source::Bureau], |s| {
        // The latest month-end report within 45 days: per creditor type, its last balance.
        let recent = last(&s.m.bureau, s.d, 45);
        let latest = recent.iter().rev().find(|b| b.balance).map(|b| b.day);
        let owed: i64 = match latest {
            Some(day) => recent
                .iter()
                .filter(|b| b.balance && b.day == day)
                .map(|b| b.amount)
                .sat_sum(),
            None => 0,
        };
        ratio(owed as f64, s.rev_sum(12) as f64, "no_revenue")
    }),
];
