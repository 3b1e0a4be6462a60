//! The characteristics' vocabulary: every characteristic's name, group, definition, unit,
//! window, direction of risk, display names, and whether the merchant can act on it. One
//! list, light enough for every crate that needs only the words (decisions, reason codes,
//! hints, the service), while `profile` holds the code that computes each one, in this
//! order (the profile's column order).

use serde::Serialize;

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

impl Direction {
    /// The name used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Either => "either",
        }
    }
}

/// One characteristic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Characteristic {
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
    /// Whether the merchant can change it by what it does (stores open, complaints, escrow
    /// coverage) rather than only by waiting (months since registration, penalties of the
    /// last two years). Improvement hints name only these.
    pub actionable: bool,
}

#[allow(clippy::too_many_arguments)]
const fn c(
    name: &'static str,
    group: Group,
    window_days: u32,
    direction: Direction,
    unit: &'static str,
    name_zh: &'static str,
    name_en: &'static str,
    actionable: bool,
    definition: &'static str,
) -> Characteristic {
    Characteristic {
        name,
        group,
        definition,
        unit,
        window_days,
        direction,
        name_zh,
        name_en,
        actionable,
    }
}

use Direction::{Down, Either, Up};
use Group::*;

/// Every characteristic, in profile column order.
#[rustfmt::skip]
pub const VOCABULARY: &[Characteristic] = &[
    c("rev_total_30d", CashFlow, 30, Down, "yuan", "近30天营业收入", "Revenue, last 30 days", true,
      "Spot sales plus escrow releases to the merchant over the last 30 days."),
    c("rev_total_90d", CashFlow, 90, Down, "yuan", "近90天营业收入", "Revenue, last 90 days", true,
      "Spot sales plus escrow releases to the merchant over the last 90 days."),
    c("rev_total_365d", CashFlow, 365, Down, "yuan", "近一年营业收入", "Revenue, last 365 days", true,
      "Spot sales plus escrow releases over the last 12 thirty-day months."),
    c("rev_trend_slope_6m", CashFlow, 180, Down, "share per month", "收入趋势", "Revenue trend", true,
      "OLS slope of the last six 30-day revenues divided by their mean (growth per month)."),
    c("rev_change_90d", CashFlow, 180, Down, "ratio", "收入环比", "Revenue change, 90 days", true,
      "Revenue of the last 90 days divided by revenue of the 90 days before."),
    c("rev_change_vs_peers_90d", CashFlow, 180, Down, "ratio", "收入环比（相对同业）", "Revenue change against peers", true,
      "rev_change_90d less the median of the merchant's peers at the same as-of date: the same industry in the same district, or the whole city's industry where the district has fewer than 10 peers with a value (a change the whole trade shares, a season or a downturn, cancels out)."),
    c("rev_yoy_90d", CashFlow, 450, Down, "ratio", "收入同比", "Revenue, year over year", true,
      "Revenue of the last three 30-day months divided by that of the same three months a year (twelve 30-day months) earlier: the season cancels out."),
    c("rev_cv_6m", CashFlow, 180, Up, "ratio", "收入波动率", "Revenue volatility", true,
      "Coefficient of variation of the last six 30-day revenues."),
    c("rev_drawdown_max_6m", CashFlow, 180, Up, "share", "收入最大回撤", "Largest revenue drawdown", true,
      "Largest fall from a running peak among the last six 30-day revenues, as a share of the peak."),
    c("days_since_last_sale", CashFlow, 0, Up, "days", "距最近一笔销售天数", "Days since last sale", true,
      "Days from the last day with spot sales to the as-of date."),
    c("active_days_ratio_30d", CashFlow, 30, Down, "share", "近30天经营天数占比", "Active days, last 30 days", true,
      "Days with spot sales in the last 30 days, divided by 30."),
    c("wallet_buffer_days", CashFlow, 90, Down, "days", "钱包资金缓冲天数", "Wallet buffer", true,
      "Merchant-wallet balance at the as-of date (from visible flows) divided by average daily revenue over 90 days."),
    c("withdrawal_sweep_ratio_30d", CashFlow, 30, Up, "ratio", "资金提取率", "Wallet sweep ratio", true,
      "Withdrawals over the last 30 days divided by wallet inflows (spot sales, immediate prepayment share, releases)."),
    c("withdrawals_30d", CashFlow, 30, Up, "count", "近30天提现次数", "Withdrawals, last 30 days", true,
      "Number of withdrawals from the merchant wallet in the last 30 days."),
    c("payroll_uncovered_days_90d", CashFlow, 90, Up, "days", "工资房租覆盖不足天数", "Days payroll and rent not covered", true,
      "Days of the last 90 on which the wallet's end-of-day balance (from visible flows) was below a week of fixed costs: a quarter of the latest month's payroll and rent."),
    c("prepaid_liability", PrepaidLiability, 0, Up, "yuan", "预付负债", "Prepaid liability", true,
      "Unredeemed value of prepaid contracts at the as-of date: prepayments less redemptions, completed refunds and expiries released to the merchant."),
    c("liability_to_monthly_rev", PrepaidLiability, 90, Up, "months", "预付负债/月收入", "Liability to monthly revenue", true,
      "Prepaid liability divided by average 30-day revenue over the last 90 days: months of service owed."),
    c("liability_to_annual_rev", PrepaidLiability, 365, Up, "ratio", "预付负债/年收入", "Liability to annual revenue", true,
      "Prepaid liability divided by revenue of the last 365 days (Shanghai's 20 %-of-revenue threshold)."),
    c("escrow_coverage", PrepaidLiability, 0, Down, "share", "资金存管覆盖率", "Escrow coverage", true,
      "Funds frozen in escrow divided by prepaid liability."),
    c("uncovered_liability", PrepaidLiability, 0, Up, "yuan", "未覆盖预付负债", "Uncovered liability", true,
      "Prepaid liability not covered by frozen escrow funds."),
    c("protection_coverage", PrepaidLiability, 0, Down, "share", "预付资金保障覆盖率", "Protection coverage", true,
      "Frozen escrow funds plus what is left of a risk reserve (风险保证金) or performance-bond cover (履约保证保险), divided by prepaid liability."),
    c("liability_growth_90d", PrepaidLiability, 90, Up, "ratio", "预付负债增长", "Liability growth, 90 days", true,
      "Change in prepaid liability over 90 days divided by the liability 90 days ago."),
    c("new_contract_tenor_days_90d", PrepaidLiability, 90, Up, "days", "新签合约平均期限", "Tenor of new contracts", true,
      "Average validity in days of contracts signed in the last 90 days."),
    c("long_tenor_share_90d", PrepaidLiability, 90, Up, "share", "长期卡占比", "Long-tenor share", true,
      "Share of contracts signed in the last 90 days valid for more than a year."),
    c("prepaid_sales_30d", PrepaidLiability, 30, Either, "yuan", "近30天预付销售额", "Prepaid sales, last 30 days", true,
      "Prepayments received in the last 30 days."),
    c("prepaid_to_spot_90d", PrepaidLiability, 90, Up, "ratio", "预付/现售比", "Prepaid to spot sales", true,
      "Prepayments received divided by spot sales, last 90 days."),
    c("redemption_to_liability_30d", Redemption, 30, Down, "share", "核销率", "Redemption rate", true,
      "Value redeemed (核销) in the last 30 days divided by the prepaid liability 30 days ago."),
    c("delivery_change_30d", Redemption, 90, Down, "ratio", "交付量变化", "Delivery change", true,
      "Value redeemed in the last 30 days divided by the 30-day average of the 60 days before."),
    c("release_to_prepay_90d", Redemption, 90, Down, "ratio", "释放/新增预付比", "Releases to new prepayments", true,
      "Escrow released to the merchant divided by new prepayments, last 90 days."),
    c("active_contracts", Redemption, 0, Either, "count", "有效合约数", "Active contracts", true,
      "Contracts with unredeemed value at the as-of date."),
    c("active_contracts_change_90d", Redemption, 90, Either, "ratio", "有效合约数变化", "Change in active contracts", true,
      "Active contracts now divided by active contracts 90 days ago."),
    c("repeat_customer_share_180d", Redemption, 180, Either, "share", "老客续费占比", "Repeat customers", true,
      "Share of contracts signed in the last 180 days by consumers who had signed before."),
    c("release_rejections_90d", Redemption, 90, Up, "count", "释放申请被拒次数", "Rejected release requests", true,
      "Merchant release requests the smart contract refused in the last 90 days."),
    c("expiry_breakage_365d", Redemption, 365, Either, "share", "过期未消费占比", "Breakage at expiry", true,
      "Value unredeemed at expiry divided by value redeemed plus expired, last 365 days."),
    c("promo_discount_max_90d", Promotion, 90, Up, "share", "最大促销折扣", "Deepest discount", true,
      "Deepest discount of promotions launched in the last 90 days (0 when none)."),
    c("promo_bonus_max_90d", Promotion, 90, Up, "share", "最大充值赠送比例", "Largest top-up bonus", true,
      "Largest bonus (充送) of promotions launched in the last 90 days (0 when none)."),
    c("promo_long_tenor_90d", Promotion, 90, Up, "flag", "长期卡促销", "Long-tenor promotion", true,
      "1 if a promotion in the last 90 days sold contracts valid for more than two years."),
    c("avg_discount_new_90d", Promotion, 90, Up, "share", "新签合约平均折扣", "Average discount of new contracts", true,
      "Average discount on the list price of contracts signed in the last 90 days."),
    c("discount_vs_peers_90d", Promotion, 90, Up, "share", "折扣深度（相对同业）", "Discount against peers", true,
      "avg_discount_new_90d less the median of the merchant's peers at the same as-of date (peers as for rev_change_vs_peers_90d): a price cut deeper than the trade's."),
    c("new_prepay_spike_z", Promotion, 360, Up, "z", "预付销售突增", "Prepaid sales spike", true,
      "z-score of the last 30 days' prepaid sales against the 11 thirty-day periods before."),
    c("prepaid_sales_yoy_90d", Promotion, 450, Up, "ratio", "预付销售同比", "Prepaid sales, year over year", true,
      "Prepayments received in the last three 30-day months divided by those of the same three months a year earlier: a run-up the season does not explain."),
    c("top_consumer_share_365d", Promotion, 365, Up, "share", "前五大客户预付占比", "Top-five consumers' share", true,
      "Share of the prepayments of contracts signed in the last 365 days paid by the merchant's five largest consumers."),
    c("refund_rate_90d", RefundsComplaints, 90, Up, "ratio", "退款率", "Refund rate", true,
      "Refunds requested divided by prepayments received, last 90 days."),
    c("refund_requests_change_30d", RefundsComplaints, 60, Up, "count", "退款申请增量", "Change in refund requests", true,
      "Refund requests in the last 30 days minus those in the 30 days before."),
    c("service_failure_refunds_90d", RefundsComplaints, 90, Up, "count", "服务未履约退款", "Service-failure refunds", true,
      "Refund requests for failure to deliver the service, last 90 days."),
    c("unrecovered_refunds_365d", RefundsComplaints, 365, Up, "yuan", "未能退还的预付款", "Unrecovered refunds", true,
      "Refunds consumers could not recover (neither escrow nor merchant paid), last 365 days."),
    c("refund_backlog", RefundsComplaints, 180, Up, "yuan", "待退款余额", "Refund backlog", true,
      "Refunds requested in the last 180 days and not settled by the as-of date (paid from escrow or by the merchant, or written off as unrecovered)."),
    c("refund_lag_days_180d", RefundsComplaints, 180, Up, "days", "退款办理天数", "Refund lag", true,
      "Average days from a refund request to its settlement, over the requests of the last 180 days settled in full."),
    c("complaints_90d", RefundsComplaints, 90, Up, "count", "近90天投诉数", "Complaints, last 90 days", true,
      "Consumer complaints on all channels, last 90 days."),
    c("complaints_hotline_90d", RefundsComplaints, 90, Up, "count", "12315/12345投诉数", "Hotline complaints", true,
      "Complaints through the 12315 and 12345 hotlines, last 90 days."),
    c("complaints_per_100_contracts_90d", RefundsComplaints, 90, Up, "per 100", "每百份合约投诉数", "Complaints per 100 contracts", true,
      "Complaints in the last 90 days per 100 active contracts."),
    c("closure_refund_complaints_30d", RefundsComplaints, 30, Up, "count", "闭店/退款类投诉", "Closure and refund complaints", true,
      "Complaints about closure or refunds, last 30 days."),
    c("payroll_on_time_ratio_6m", Operations, 180, Down, "share", "工资按时发放率", "Payroll on time", true,
      "Share of payroll records paid by the due date, last 180 days."),
    c("social_insurance_on_time_6m", Operations, 180, Down, "share", "社保按时缴纳率", "Social insurance on time", true,
      "Share of social-insurance contributions paid on time, last 180 days."),
    c("headcount_trend_6m", Operations, 180, Down, "ratio", "用工人数变化", "Headcount trend", true,
      "Latest payroll headcount divided by the headcount six months earlier."),
    c("utility_usage_trend_3m", Operations, 180, Down, "ratio", "用电量变化", "Electricity use trend", true,
      "Electricity used in the last 90 days divided by the 90 days before."),
    c("stores_open", Operations, 0, Down, "count", "在营门店数", "Open stores", true,
      "Stores open at the as-of date."),
    c("stores_closed_365d", Operations, 365, Up, "count", "近一年关闭门店数", "Stores closed, last year", false,
      "Stores closed in the last 365 days."),
    c("lease_remaining_months_min", Operations, 0, Down, "months", "最短剩余租期", "Shortest remaining lease", true,
      "Months until the earliest lease end among open stores."),
    c("rent_on_time_ratio_6m", Operations, 180, Down, "share", "房租按时支付率", "Rent paid on time", true,
      "Share of monthly rent paid by the due date, last 180 days."),
    c("rent_to_revenue_90d", Operations, 90, Up, "ratio", "租金收入比", "Rent to revenue", true,
      "Rent due for the last three months divided by revenue of the last 90 days."),
    c("months_since_registration", TenureCompliance, 0, Down, "months", "注册月数", "Months since registration", false,
      "Months from business registration to the as-of date."),
    c("months_on_ecny_platform", TenureCompliance, 0, Down, "months", "接入元管家月数", "Months on 元管家", false,
      "Months since the merchant joined the 元管家 e-CNY platform (0 if it has not)."),
    c("freeze_ratio", TenureCompliance, 0, Down, "share", "资金冻结比例", "Freeze ratio", true,
      "Default share of each prepayment frozen in escrow."),
    c("custody_compliant", TenureCompliance, 180, Down, "flag", "资金监管合规", "Custody compliance", true,
      "1 if escrow, a risk reserve or a performance bond together cover at least 40 % of prepaid liability (Beijing and Shanghai's general rule) and, for after-school training, no contract signed in the last 180 days runs over three months."),
    c("account_changes_365d", TenureCompliance, 365, Up, "count", "收款账户变更次数", "Collection-account changes", false,
      "Withdrawals to a changed destination account in the last 365 days."),
    c("related_entity_opened_180d", TenureCompliance, 180, Up, "flag", "关联主体新设", "Related entity opened", false,
      "1 if another entity of the same owner group registered in the last 180 days."),
    c("admin_penalties_730d", PublicRecords, 730, Up, "count", "行政处罚次数", "Administrative penalties", false,
      "Administrative penalties in the last 24 months."),
    c("lawsuits_730d", PublicRecords, 730, Up, "count", "被诉案件数", "Lawsuits as defendant", false,
      "Lawsuits with the merchant as defendant in the last 24 months."),
    c("abnormal_listed", PublicRecords, 0, Up, "flag", "经营异常名录", "On the abnormal-operation list", true,
      "1 if the merchant's latest abnormal-operation record at the as-of date is a listing."),
    c("enforcement_amount_730d", PublicRecords, 730, Up, "yuan", "被执行金额", "Sums under court enforcement", false,
      "Sums of court enforcement cases (被执行人) against the merchant filed in the last 24 months."),
    c("dishonest_listed", PublicRecords, 0, Up, "flag", "失信被执行人", "Listed as a dishonest debtor", true,
      "1 if the merchant's latest dishonest-debtor record (失信被执行人) at the as-of date is a listing."),
    c("loan_current_dpd", Loans, 45, Up, "days", "当前逾期天数", "Days past due now", true,
      "Highest days past due in loan statuses of the last 45 days (0 with loans and no arrears)."),
    c("loan_max_dpd_365d", Loans, 365, Up, "days", "近一年最大逾期天数", "Worst days past due, last year", false,
      "Highest days past due in loan statuses of the last 365 days."),
    c("debt_service_to_revenue_30d", Loans, 30, Up, "ratio", "偿债收入比", "Debt service to revenue", true,
      "Loan instalments scheduled in the last 30 days divided by revenue of the last 30 days."),
    c("loans_active", Loans, 45, Up, "count", "在还贷款笔数", "Loans being repaid", true,
      "Distinct loans with an instalment scheduled in the last 45 days."),
    c("loans_taken_365d", Loans, 365, Up, "count", "近一年新增贷款笔数", "New loans, last year", true,
      "Loans disbursed in the last 365 days."),
    c("credit_inquiries_90d", Loans, 90, Up, "count", "近90天贷款审批查询次数", "Credit inquiries, 90 days", false,
      "Credit inquiries for loan applications in the last 90 days, as the credit bureau reports them."),
    c("other_debt_to_annual_rev", Loans, 45, Up, "ratio", "其他负债收入比", "Other debts to revenue", true,
      "Debts the bureau reports outside the loans table (other banks, microlenders, leasing, factoring) at the latest month end within 45 days, divided by revenue of the last 365 days."),
];

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A characteristic by name; usable in constants, so that code naming a characteristic
/// can be checked when it is compiled.
pub const fn characteristic(name: &str) -> Option<&'static Characteristic> {
    let mut i = 0;
    while i < VOCABULARY.len() {
        if same(VOCABULARY[i].name, name) {
            return Some(&VOCABULARY[i]);
        }
        i += 1;
    }
    None
}

/// A profile column's name (a characteristic or a descriptive column), checked against the
/// vocabulary when the code is compiled: a rule that reads a characteristic (a knock-out, an alert) can never name one that does
/// not exist and silently read nothing.
///
/// ```
/// assert_eq!(yuanxin_domain::known!("escrow_coverage"), "escrow_coverage");
/// ```
///
/// ```compile_fail
/// let _ = yuanxin_domain::known!("escrow_coverage_typo");
/// ```
#[macro_export]
macro_rules! known {
    ($name:literal) => {{
        const NAME: &str = if $crate::vocabulary::is_column($name) {
            $name
        } else {
            panic!(concat!("no profile column `", $name, "` in the vocabulary"))
        };
        NAME
    }};
}

/// The columns of a profile file besides the characteristics: one definition, written by
/// `profile` and read by `model` (training panels) and `engine` (served profiles).
pub mod columns {
    /// The merchant.
    pub const MERCHANT_ID: &str = "merchant_id";
    /// The as-of date.
    pub const AS_OF: &str = "as_of";
    /// The merchant's industry code.
    pub const INDUSTRY: &str = "industry";
    /// The merchant's district code.
    pub const DISTRICT: &str = "district";
    /// Whether the merchant has too little history to profile.
    pub const INSUFFICIENT_DATA: &str = "insufficient_data";
    /// Why, when it has.
    pub const INSUFFICIENT_REASON: &str = "insufficient_reason";
    /// The day the merchant closed (its last open store closed), if it had by the as-of
    /// date: a closed merchant is served as closed, with no grade.
    pub const CLOSED_ON: &str = "closed_on";
    /// Why each null characteristic is null (`name=reason;…`).
    pub const MISSING_REASONS: &str = "missing_reasons";
    /// Characteristics whose window reaches back before the data covering a merchant that
    /// existed then (`name;…`), null when none: the first year of an export.
    pub const TRUNCATED_WINDOWS: &str = "truncated_windows";
    /// The lender's default label of a training panel.
    pub const DEFAULT_12M: &str = "default_12m";
    /// The consumer-harm label of a training panel.
    pub const CONSUMER_HARM_12M: &str = "consumer_harm_12m";
    /// Whether the label's window is complete (`ok`) or why not.
    pub const LABEL_STATUS: &str = "label_status";
    /// `train` or `test` (out of time).
    pub const SPLIT: &str = "split";
    /// Columns that describe the row rather than the merchant: never a characteristic of a
    /// model.
    pub const ROW_META: [&str; 10] = [
        MERCHANT_ID,
        AS_OF,
        INSUFFICIENT_REASON,
        CLOSED_ON,
        TRUNCATED_WINDOWS,
        DEFAULT_12M,
        CONSUMER_HARM_12M,
        MISSING_REASONS,
        LABEL_STATUS,
        SPLIT,
    ];
}

/// The descriptive profile columns a model may use beside the characteristics, with their
/// display names: none of them is actionable.
pub const DESCRIPTIVE: &[(&str, &str, &str)] = &[
    (columns::INDUSTRY, "行业", "Industry"),
    (columns::DISTRICT, "所在区", "District"),
    (
        columns::INSUFFICIENT_DATA,
        "经营数据不足",
        "Insufficient data",
    ),
];

/// The Chinese and English display names of a profile column (a characteristic or a
/// descriptive column), if the vocabulary has it.
pub fn display_names(name: &str) -> Option<(&'static str, &'static str)> {
    characteristic(name)
        .map(|c| (c.name_zh, c.name_en))
        .or_else(|| DESCRIPTIVE.iter().find(|d| d.0 == name).map(|d| (d.1, d.2)))
}

/// Whether a profile column has this name: a characteristic or a descriptive column.
pub const fn is_column(name: &str) -> bool {
    if characteristic(name).is_some() {
        return true;
    }
    let mut i = 0;
    while i < DESCRIPTIVE.len() {
        if same(DESCRIPTIVE[i].0, name) {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether a merchant can act on a column: a characteristic marked so. Descriptive columns
/// and names outside the vocabulary (models trained on other tables) are not.
pub fn is_actionable(name: &str) -> bool {
    characteristic(name).is_some_and(|c| c.actionable)
}

/// The vocabulary as a Markdown table (for `yuanxin features` and docs/features.md).
pub fn markdown() -> String {
    let mut out = String::from(
        "| name | group | definition | unit | window (days) | risk when higher | merchant can act | 中文 | English |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in VOCABULARY {
        out.push_str(&format!(
            "| `{}` | {:?} | {} | {} | {} | {} | {} | {} | {} |\n",
            f.name,
            f.group,
            f.definition,
            f.unit,
            f.window_days,
            f.direction.as_str(),
            if f.actionable { "yes" } else { "no" },
            f.name_zh,
            f.name_en
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lookup_finds_each() {
        for (i, c) in VOCABULARY.iter().enumerate() {
            assert_eq!(characteristic(c.name), Some(c));
            assert!(
                VOCABULARY[..i].iter().all(|d| d.name != c.name),
                "{}",
                c.name
            );
        }
        assert_eq!(characteristic("no_such_thing"), None);
        assert_eq!(characteristic("rev_total_30"), None);
    }

    #[test]
    fn what_only_time_changes_is_not_actionable() {
        assert!(!is_actionable("months_since_registration"));
        assert!(!is_actionable("district"));
        assert!(!is_actionable("industry"));
        assert!(is_actionable("escrow_coverage"));
        assert!(is_actionable("complaints_90d"));
        assert!(is_actionable("stores_open"));
    }
}
