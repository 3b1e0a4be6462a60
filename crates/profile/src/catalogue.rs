//! The feature catalogue: every characteristic's name, group, definition, unit, window,
//! direction of risk, display names, and the code that computes it. One list, so the
//! documentation (`yuanxin features`), the profile columns and later the reason codes can
//! never disagree.

use serde::Serialize;

use crate::data::{esc, Code, Source};
use crate::snapshot::{last, upto, wallet, Snap};

/// Groups of characteristics (proposal B of the domain reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    CashFlow,
    PrepaidLiability,
    Redemption,
    Promotion,
    RefundsComplaints,
    Operations,
    TenureCompliance,
    PublicRecords,
    Loans,
}

/// How a characteristic relates to risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher values mean higher risk.
    Up,
    /// Higher values mean lower risk.
    Down,
    /// No monotone expectation.
    Either,
}

/// Why a characteristic has no value.
pub type Missing = &'static str;

/// A characteristic's value, or why it has none.
pub type Value = Result<f64, Missing>;

/// One characteristic.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Feature {
    /// Column name.
    pub name: &'static str,
    /// Group.
    pub group: Group,
    /// Exact definition.
    pub definition: &'static str,
    /// Unit of the value.
    pub unit: &'static str,
    /// Window, in days (0 for a state at the as-of date).
    pub window_days: u32,
    /// Expected direction of risk.
    pub direction: Direction,
    /// Chinese display name.
    pub name_zh: &'static str,
    /// English display name.
    pub name_en: &'static str,
    /// Parts of the ledger it reads beyond the ones every profile needs (see [`Source`]),
    /// so that a profile of a few characteristics loads only what they read. A test
    /// checks each characteristic alone against a profile of all of them.
    #[serde(skip)]
    pub(crate) reads: &'static [Source],
    #[serde(skip)]
    pub(crate) compute: fn(&Snap<'_>) -> Value,
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
        .filter(|o| o.kind == 2)
        .map(|o| o.usage)
        .sum()
}

fn headcount_at(s: &Snap<'_>, d: i32) -> Option<i64> {
    upto(&s.m.operations, d)
        .iter()
        .rev()
        .take_while(|o| o.day > d - 45)
        .find(|o| o.kind == 0)
        .map(|o| o.headcount)
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

macro_rules! f {
    ($name:literal, $group:ident, $window:expr, $dir:ident, $unit:literal, $zh:literal, $en:literal, $def:literal, $reads:expr, $f:expr) => {
        Feature {
            name: $name,
            group: Group::$group,
            definition: $def,
            unit: $unit,
            window_days: $window,
            direction: Direction::$dir,
            name_zh: $zh,
            name_en: $en,
            reads: $reads,
            compute: $f,
        }
    };
}

/// Every characteristic, in profile column order.
pub static FEATURES: &[Feature] = &[
    // ---- cash flow ----
    f!("rev_total_30d", CashFlow, 30, Down, "yuan", "近30天营业收入", "Revenue, last 30 days",
       "Spot sales plus escrow releases to the merchant over the last 30 days.",
       &[],
       |s| Ok(yuan(s.rev_sum(1)))),
    f!("rev_total_90d", CashFlow, 90, Down, "yuan", "近90天营业收入", "Revenue, last 90 days",
       "Spot sales plus escrow releases to the merchant over the last 90 days.",
       &[],
       |s| Ok(yuan(s.rev_sum(3)))),
    f!("rev_total_365d", CashFlow, 365, Down, "yuan", "近一年营业收入", "Revenue, last 365 days",
       "Spot sales plus escrow releases over the last 12 thirty-day months.",
       &[],
       |s| Ok(yuan(s.rev_sum(12)))),
    f!("rev_trend_slope_6m", CashFlow, 180, Down, "share per month", "收入趋势", "Revenue trend",
       "OLS slope of the last six 30-day revenues divided by their mean (growth per month).",
       &[],
       |s| {
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
    f!("rev_change_90d", CashFlow, 180, Down, "ratio", "收入环比", "Revenue change, 90 days",
       "Revenue of the last 90 days divided by revenue of the 90 days before.",
       &[],
       |s| {
           months(s, 6)?;
           ratio(s.rev_sum(3) as f64, (s.rev_sum(6) - s.rev_sum(3)) as f64, "no_revenue")
       }),
    f!("rev_cv_6m", CashFlow, 180, Up, "ratio", "收入波动率", "Revenue volatility",
       "Coefficient of variation of the last six 30-day revenues.",
       &[],
       |s| {
           let v = months(s, 6)?;
           ratio(std(&v), mean(&v), "no_revenue")
       }),
    f!("rev_drawdown_max_6m", CashFlow, 180, Up, "share", "收入最大回撤", "Largest revenue drawdown",
       "Largest fall from a running peak among the last six 30-day revenues, as a share of the peak.",
       &[],
       |s| {
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
    f!("days_since_last_sale", CashFlow, 0, Up, "days", "距最近一笔销售天数", "Days since last sale",
       "Days from the last day with spot sales to the as-of date.",
       &[],
       |s| upto(&s.m.spot, s.d).last().map(|e| f64::from(s.d - e.day)).ok_or("no_sales")),
    f!("active_days_ratio_30d", CashFlow, 30, Down, "share", "近30天经营天数占比", "Active days, last 30 days",
       "Days with spot sales in the last 30 days, divided by 30.",
       &[],
       |s| {
           let mut days: Vec<i32> = last(&s.m.spot, s.d, 30).iter().map(|e| e.day).collect();
           days.dedup();
           Ok(days.len() as f64 / 30.0)
       }),
    f!("wallet_buffer_days", CashFlow, 90, Down, "days", "钱包资金缓冲天数", "Wallet buffer",
       "Merchant-wallet balance at the as-of date (from visible flows) divided by average daily revenue over 90 days.",
       &[],
       |s| {
           let daily = s.rev_sum(3) as f64 / 90.0;
           ratio(wallet(s.m, s.d) as f64, daily, "no_revenue")
       }),
    f!("withdrawal_sweep_ratio_30d", CashFlow, 30, Up, "ratio", "资金提取率", "Wallet sweep ratio",
       "Withdrawals over the last 30 days divided by wallet inflows (spot sales, immediate prepayment share, releases).",
       &[],
       |s| {
           let out: i64 = last(&s.m.withdrawals, s.d, 30).iter().map(|e| e.amount).sum();
           let immediate: i64 = last(&s.m.escrow, s.d, 30)
               .iter()
               .filter(|e| e.kind == esc::PREPAYMENT)
               .map(|e| e.amount - e.frozen)
               .sum();
           ratio(out as f64, (s.rev_sum(1) + immediate) as f64, "no_inflow")
       }),
    f!("withdrawals_30d", CashFlow, 30, Up, "count", "近30天提现次数", "Withdrawals, last 30 days",
       "Number of withdrawals from the merchant wallet in the last 30 days.",
       &[],
       |s| Ok(last(&s.m.withdrawals, s.d, 30).len() as f64)),
    // ---- prepaid liability and escrow ----
    f!("prepaid_liability", PrepaidLiability, 0, Up, "yuan", "预付负债", "Prepaid liability",
       "Unredeemed value of prepaid contracts at the as-of date: prepayments less redemptions, completed refunds and expiries released to the merchant.",
       &[],
       |s| Ok(yuan(s.book.liability))),
    f!("liability_to_monthly_rev", PrepaidLiability, 90, Up, "months", "预付负债/月收入", "Liability to monthly revenue",
       "Prepaid liability divided by average 30-day revenue over the last 90 days: months of service owed.",
       &[],
       |s| ratio(s.book.liability as f64, s.rev_sum(3) as f64 / 3.0, "no_revenue")),
    f!("liability_to_annual_rev", PrepaidLiability, 365, Up, "ratio", "预付负债/年收入", "Liability to annual revenue",
       "Prepaid liability divided by revenue of the last 365 days (Shanghai's 20 %-of-revenue threshold).",
       &[],
       |s| ratio(s.book.liability as f64, s.rev_sum(12) as f64, "no_revenue")),
    f!("escrow_coverage", PrepaidLiability, 0, Down, "share", "资金存管覆盖率", "Escrow coverage",
       "Funds frozen in escrow divided by prepaid liability.",
       &[],
       |s| ratio(s.book.frozen as f64, s.book.liability as f64, "no_liability")),
    f!("uncovered_liability", PrepaidLiability, 0, Up, "yuan", "未覆盖预付负债", "Uncovered liability",
       "Prepaid liability not covered by frozen escrow funds.",
       &[],
       |s| Ok(yuan((s.book.liability - s.book.frozen).max(0)))),
    f!("liability_growth_90d", PrepaidLiability, 90, Up, "ratio", "预付负债增长", "Liability growth, 90 days",
       "Change in prepaid liability over 90 days divided by the liability 90 days ago.",
       &[],
       |s| ratio((s.book.liability - s.book_90.liability) as f64, s.book_90.liability as f64, "no_liability")),
    f!("new_contract_tenor_days_90d", PrepaidLiability, 90, Up, "days", "新签合约平均期限", "Tenor of new contracts",
       "Average validity in days of contracts signed in the last 90 days.",
       &[Source::Contracts],
       |s| {
           let c = last(&s.m.contracts, s.d, 90);
           if c.is_empty() {
               return Err("no_contracts");
           }
           Ok(c.iter().map(|c| f64::from(c.tenor_days)).sum::<f64>() / c.len() as f64)
       }),
    f!("long_tenor_share_90d", PrepaidLiability, 90, Up, "share", "长期卡占比", "Long-tenor share",
       "Share of contracts signed in the last 90 days valid for more than a year.",
       &[Source::Contracts],
       |s| {
           let c = last(&s.m.contracts, s.d, 90);
           if c.is_empty() {
               return Err("no_contracts");
           }
           Ok(c.iter().filter(|c| c.tenor_days > 366).count() as f64 / c.len() as f64)
       }),
    f!("prepaid_sales_30d", PrepaidLiability, 30, Either, "yuan", "近30天预付销售额", "Prepaid sales, last 30 days",
       "Prepayments received in the last 30 days.",
       &[],
       |s| Ok(yuan(s.escrow_sum(esc::PREPAYMENT, 30)))),
    f!("prepaid_to_spot_90d", PrepaidLiability, 90, Up, "ratio", "预付/现售比", "Prepaid to spot sales",
       "Prepayments received divided by spot sales, last 90 days.",
       &[],
       |s| {
           let spot: i64 = last(&s.m.spot, s.d, 90).iter().map(|e| e.amount).sum();
           ratio(s.escrow_sum(esc::PREPAYMENT, 90) as f64, spot as f64, "no_sales")
       }),
    // ---- redemption and release ----
    f!("redemption_to_liability_30d", Redemption, 30, Down, "share", "核销率", "Redemption rate",
       "Value redeemed (核销) in the last 30 days divided by the prepaid liability 30 days ago.",
       &[],
       |s| ratio(s.escrow_sum(esc::REDEMPTION, 30) as f64, s.book_30.liability as f64, "no_liability")),
    f!("delivery_change_30d", Redemption, 90, Down, "ratio", "交付量变化", "Delivery change",
       "Value redeemed in the last 30 days divided by the 30-day average of the 60 days before.",
       &[],
       |s| {
           let recent = s.escrow_sum(esc::REDEMPTION, 30) as f64;
           let before = (s.escrow_sum(esc::REDEMPTION, 90) as f64 - recent) / 2.0;
           ratio(recent, before, "no_redemptions")
       }),
    f!("release_to_prepay_90d", Redemption, 90, Down, "ratio", "释放/新增预付比", "Releases to new prepayments",
       "Escrow released to the merchant divided by new prepayments, last 90 days.",
       &[],
       |s| ratio(s.escrow_sum(esc::RELEASE, 90) as f64, s.escrow_sum(esc::PREPAYMENT, 90) as f64, "no_prepayments")),
    f!("active_contracts", Redemption, 0, Either, "count", "有效合约数", "Active contracts",
       "Contracts with unredeemed value at the as-of date.",
       &[Source::ContractIds],
       |s| Ok(s.book.active_contracts as f64)),
    f!("active_contracts_change_90d", Redemption, 90, Either, "ratio", "有效合约数变化", "Change in active contracts",
       "Active contracts now divided by active contracts 90 days ago.",
       &[Source::ContractIds],
       |s| ratio(s.book.active_contracts as f64, s.book_90.active_contracts as f64, "no_contracts")),
    f!("repeat_customer_share_180d", Redemption, 180, Either, "share", "老客续费占比", "Repeat customers",
       "Share of contracts signed in the last 180 days by consumers who had signed before.",
       &[Source::Contracts],
       |s| {
           let before: std::collections::HashSet<u64> = upto(&s.m.contracts, s.d - 180).iter().map(|c| c.consumer).collect();
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
    f!("release_rejections_90d", Redemption, 90, Up, "count", "释放申请被拒次数", "Rejected release requests",
       "Merchant release requests the smart contract refused in the last 90 days.",
       &[],
       |s| Ok(s.escrow_count(esc::RELEASE_REJECTED, 90) as f64)),
    f!("expiry_breakage_365d", Redemption, 365, Either, "share", "过期未消费占比", "Breakage at expiry",
       "Value unredeemed at expiry divided by value redeemed plus expired, last 365 days.",
       &[],
       |s| {
           let exp = s.escrow_sum(esc::EXPIRY, 365) as f64;
           ratio(exp, exp + s.escrow_sum(esc::REDEMPTION, 365) as f64, "no_redemptions")
       }),
    // ---- promotion pressure ----
    f!("promo_discount_max_90d", Promotion, 90, Up, "share", "最大促销折扣", "Deepest discount",
       "Deepest discount of promotions launched in the last 90 days (0 when none).",
       &[Source::Promotions],
       |s| Ok(last(&s.m.promotions, s.d, 90).iter().map(|p| p.discount_bp).max().unwrap_or(0) as f64 / 10_000.0)),
    f!("promo_bonus_max_90d", Promotion, 90, Up, "share", "最大充值赠送比例", "Largest top-up bonus",
       "Largest bonus (充送) of promotions launched in the last 90 days (0 when none).",
       &[Source::Promotions],
       |s| Ok(last(&s.m.promotions, s.d, 90).iter().map(|p| p.bonus_bp).max().unwrap_or(0) as f64 / 10_000.0)),
    f!("promo_long_tenor_90d", Promotion, 90, Up, "flag", "长期卡促销", "Long-tenor promotion",
       "1 if a promotion in the last 90 days sold contracts valid for more than two years.",
       &[Source::Promotions],
       |s| Ok(f64::from(u8::from(last(&s.m.promotions, s.d, 90).iter().any(|p| p.tenor_days > 730))))),
    f!("avg_discount_new_90d", Promotion, 90, Up, "share", "新签合约平均折扣", "Average discount of new contracts",
       "Average discount on the list price of contracts signed in the last 90 days.",
       &[Source::Contracts],
       |s| {
           let c = last(&s.m.contracts, s.d, 90);
           if c.is_empty() {
               return Err("no_contracts");
           }
           Ok(c.iter().map(|c| c.discount_bp as f64).sum::<f64>() / c.len() as f64 / 10_000.0)
       }),
    f!("new_prepay_spike_z", Promotion, 360, Up, "z", "预付销售突增", "Prepaid sales spike",
       "z-score of the last 30 days' prepaid sales against the 11 thirty-day periods before.",
       &[],
       |s| {
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
    // ---- refunds and complaints ----
    f!("refund_rate_90d", RefundsComplaints, 90, Up, "ratio", "退款率", "Refund rate",
       "Refunds requested divided by prepayments received, last 90 days.",
       &[],
       |s| ratio(s.escrow_sum(esc::REFUND_REQUESTED, 90) as f64, s.escrow_sum(esc::PREPAYMENT, 90) as f64, "no_prepayments")),
    f!("refund_requests_change_30d", RefundsComplaints, 60, Up, "count", "退款申请增量", "Change in refund requests",
       "Refund requests in the last 30 days minus those in the 30 days before.",
       &[],
       |s| Ok(s.escrow_count(esc::REFUND_REQUESTED, 30) as f64 * 2.0 - s.escrow_count(esc::REFUND_REQUESTED, 60) as f64)),
    f!("service_failure_refunds_90d", RefundsComplaints, 90, Up, "count", "服务未履约退款", "Service-failure refunds",
       "Refund requests for failure to deliver the service, last 90 days.",
       &[],
       |s| Ok(last(&s.m.escrow, s.d, 90).iter().filter(|e| e.kind == esc::REFUND_REQUESTED && e.code == Code::ServiceFailure).count() as f64)),
    f!("unrecovered_refunds_365d", RefundsComplaints, 365, Up, "yuan", "未能退还的预付款", "Unrecovered refunds",
       "Refunds consumers could not recover (neither escrow nor merchant paid), last 365 days.",
       &[],
       |s| Ok(yuan(last(&s.m.escrow, s.d, 365).iter().filter(|e| e.kind == esc::REFUND_COMPLETED && e.code == Code::Unrecovered).map(|e| e.amount).sum()))),
    f!("complaints_90d", RefundsComplaints, 90, Up, "count", "近90天投诉数", "Complaints, last 90 days",
       "Consumer complaints on all channels, last 90 days.",
       &[Source::Complaints],
       |s| Ok(last(&s.m.complaints, s.d, 90).len() as f64)),
    f!("complaints_hotline_90d", RefundsComplaints, 90, Up, "count", "12315/12345投诉数", "Hotline complaints",
       "Complaints through the 12315 and 12345 hotlines, last 90 days.",
       &[Source::Complaints],
       |s| Ok(last(&s.m.complaints, s.d, 90).iter().filter(|c| c.channel == 0).count() as f64)),
    f!("complaints_per_100_contracts_90d", RefundsComplaints, 90, Up, "per 100", "每百份合约投诉数", "Complaints per 100 contracts",
       "Complaints in the last 90 days per 100 active contracts.",
       &[Source::ContractIds, Source::Complaints],
       |s| ratio(100.0 * last(&s.m.complaints, s.d, 90).len() as f64, s.book.active_contracts as f64, "no_contracts")),
    f!("closure_refund_complaints_30d", RefundsComplaints, 30, Up, "count", "闭店/退款类投诉", "Closure and refund complaints",
       "Complaints about closure or refunds, last 30 days.",
       &[Source::Complaints],
       |s| Ok(last(&s.m.complaints, s.d, 30).iter().filter(|c| c.closure_or_refund).count() as f64)),
    // ---- operations ----
    f!("payroll_on_time_ratio_6m", Operations, 180, Down, "share", "工资按时发放率", "Payroll on time",
       "Share of payroll records paid by the due date, last 180 days.",
       &[],
       |s| on_time_ratio(s, 0)),
    f!("social_insurance_on_time_6m", Operations, 180, Down, "share", "社保按时缴纳率", "Social insurance on time",
       "Share of social-insurance contributions paid on time, last 180 days.",
       &[],
       |s| on_time_ratio(s, 1)),
    f!("headcount_trend_6m", Operations, 180, Down, "ratio", "用工人数变化", "Headcount trend",
       "Latest payroll headcount divided by the headcount six months earlier.",
       &[],
       |s| {
           let now = headcount_at(s, s.d).ok_or("no_payroll")?;
           let then = headcount_at(s, s.d - 180).ok_or("insufficient_history")?;
           ratio(now as f64, then as f64, "no_payroll")
       }),
    f!("utility_usage_trend_3m", Operations, 180, Down, "ratio", "用电量变化", "Electricity use trend",
       "Electricity used in the last 90 days divided by the 90 days before.",
       &[],
       |s| ratio(usage(s, 90, 0) as f64, usage(s, 180, 90) as f64, "no_utility_records")),
    f!("stores_open", Operations, 0, Down, "count", "在营门店数", "Open stores",
       "Stores open at the as-of date.",
       &[Source::Stores],
       |s| Ok(open_stores(s).len() as f64)),
    f!("stores_closed_365d", Operations, 365, Up, "count", "近一年关闭门店数", "Stores closed, last year",
       "Stores closed in the last 365 days.",
       &[Source::Stores],
       |s| Ok(last(&s.m.stores, s.d, 365).iter().filter(|e| !e.opened).count() as f64)),
    f!("lease_remaining_months_min", Operations, 0, Down, "months", "最短剩余租期", "Shortest remaining lease",
       "Months until the earliest lease end among open stores.",
       &[Source::Stores],
       |s| {
           open_stores(s)
               .iter()
               .filter_map(|(_, l)| *l)
               .min()
               .map(|l| months_between(s.d, l))
               .ok_or("no_lease_data")
       }),
    // ---- tenure, custody, structure ----
    f!("months_since_registration", TenureCompliance, 0, Down, "months", "注册月数", "Months since registration",
       "Months from business registration to the as-of date.",
       &[],
       |s| s.m.registered_on.map(|r| months_between(r, s.d)).ok_or("no_registration_date")),
    f!("months_on_ecny_platform", TenureCompliance, 0, Down, "months", "接入元管家月数", "Months on 元管家",
       "Months since the merchant joined the 元管家 e-CNY platform (0 if it has not).",
       &[],
       |s| Ok(s.m.onboarded_on.filter(|o| *o <= s.d).map(|o| months_between(o, s.d)).unwrap_or(0.0))),
    f!("freeze_ratio", TenureCompliance, 0, Down, "share", "资金冻结比例", "Freeze ratio",
       "Default share of each prepayment frozen in escrow.",
       &[],
       |s| s.m.freeze_bp.map(|b| b as f64 / 10_000.0).ok_or("no_custody_terms")),
    f!("custody_compliant", TenureCompliance, 180, Down, "flag", "资金监管合规", "Custody compliance",
       "1 if escrow covers at least 40 % of prepaid liability (Beijing and Shanghai's general rule) and, for after-school training, no contract signed in the last 180 days runs over three months.",
       &[Source::Contracts],
       |s| {
           if s.book.liability <= 0 {
               return Err("no_liability");
           }
           let covered = s.book.frozen * 10 >= s.book.liability * 4;
           let capped = !s.m.industry.starts_with("EDU_") || s.m.industry == "EDU_VOCATIONAL"
               || last(&s.m.contracts, s.d, 180).iter().all(|c| c.tenor_days <= 93);
           Ok(f64::from(u8::from(covered && capped)))
       }),
    f!("account_changes_365d", TenureCompliance, 365, Up, "count", "收款账户变更次数", "Collection-account changes",
       "Withdrawals to a changed destination account in the last 365 days.",
       &[],
       |s| Ok(last(&s.m.withdrawals, s.d, 365).iter().filter(|w| w.changed).count() as f64)),
    f!("related_entity_opened_180d", TenureCompliance, 180, Up, "flag", "关联主体新设", "Related entity opened",
       "1 if another entity of the same owner group registered in the last 180 days.",
       &[],
       |s| {
           let own = s.m.registered_on;
           let n = s.city.groups.get(&s.m.group).map(|v| {
               v.iter().filter(|r| Some(**r) != own && **r > s.d - 180 && **r <= s.d).count()
           });
           Ok(f64::from(u8::from(n.unwrap_or(0) > 0)))
       }),
    // ---- public records ----
    f!("admin_penalties_730d", PublicRecords, 730, Up, "count", "行政处罚次数", "Administrative penalties",
       "Administrative penalties in the last 24 months.",
       &[Source::PublicRecords],
       |s| Ok(last(&s.m.public, s.d, 730).iter().filter(|p| p.kind == 0).count() as f64)),
    f!("lawsuits_730d", PublicRecords, 730, Up, "count", "被诉案件数", "Lawsuits as defendant",
       "Lawsuits with the merchant as defendant in the last 24 months.",
       &[Source::PublicRecords],
       |s| Ok(last(&s.m.public, s.d, 730).iter().filter(|p| p.kind == 3).count() as f64)),
    f!("abnormal_listed", PublicRecords, 0, Up, "flag", "经营异常名录", "On the abnormal-operation list",
       "1 if the merchant's latest abnormal-operation record at the as-of date is a listing.",
       &[Source::PublicRecords],
       |s| Ok(f64::from(u8::from(upto(&s.m.public, s.d).iter().rev().find(|p| p.kind == 1 || p.kind == 2).is_some_and(|p| p.kind == 1))))),
    // ---- loans ----
    f!("loan_current_dpd", Loans, 45, Up, "days", "当前逾期天数", "Days past due now",
       "Highest days past due in loan statuses of the last 45 days (0 with loans and no arrears).",
       &[Source::Loans],
       |s| {
           if upto(&s.m.loans, s.d).is_empty() {
               return Err("no_loans");
           }
           Ok(last(&s.m.loans, s.d, 45).iter().filter(|l| l.kind == 3).map(|l| l.dpd).max().unwrap_or(0) as f64)
       }),
    f!("loan_max_dpd_365d", Loans, 365, Up, "days", "近一年最大逾期天数", "Worst days past due, last year",
       "Highest days past due in loan statuses of the last 365 days.",
       &[Source::Loans],
       |s| {
           if upto(&s.m.loans, s.d).is_empty() {
               return Err("no_loans");
           }
           Ok(last(&s.m.loans, s.d, 365).iter().filter(|l| l.kind == 3).map(|l| l.dpd).max().unwrap_or(0) as f64)
       }),
    f!("debt_service_to_revenue_30d", Loans, 30, Up, "ratio", "偿债收入比", "Debt service to revenue",
       "Loan instalments scheduled in the last 30 days divided by revenue of the last 30 days.",
       &[Source::Loans],
       |s| {
           let due: i64 = last(&s.m.loans, s.d, 30).iter().filter(|l| l.kind == 1).map(|l| l.amount).sum();
           ratio(due as f64, s.rev_sum(1) as f64, "no_revenue")
       }),
    f!("loans_active", Loans, 45, Up, "count", "在还贷款笔数", "Loans being repaid",
       "Distinct loans with an instalment scheduled in the last 45 days.",
       &[Source::Loans],
       |s| {
           let mut ids: Vec<u64> = last(&s.m.loans, s.d, 45).iter().filter(|l| l.kind == 1).map(|l| l.loan).collect();
           ids.sort_unstable();
           ids.dedup();
           Ok(ids.len() as f64)
       }),
    f!("loans_taken_365d", Loans, 365, Up, "count", "近一年新增贷款笔数", "New loans, last year",
       "Loans disbursed in the last 365 days.",
       &[Source::Loans],
       |s| Ok(last(&s.m.loans, s.d, 365).iter().filter(|l| l.kind == 0).count() as f64)),
];
