//! The published catalogue of reason codes. Codes are stable: a lender's system and a
//! merchant's page can key on them. Policy codes are listed here; every characteristic of
//! the feature catalogue also has a model code, `SCORE_<NAME>`, used when a scorecard or
//! the trees say that characteristic held the score down.

use serde::{Deserialize, Serialize};
use yuanxin_domain::vocabulary::{DESCRIPTIVE, VOCABULARY};

/// One reason code with its texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCode {
    /// Stable code.
    pub code: String,
    /// `knockout`, `grade`, `capacity`, `product`, `model` or `info`.
    pub kind: String,
    /// Chinese text.
    pub zh: String,
    /// English text.
    pub en: String,
}

/// Policy codes: (code, kind, zh, en).
pub const POLICY_CODES: &[(&str, &str, &str, &str)] = &[
    (
        "KO_DELINQUENT",
        "knockout",
        "现有贷款逾期",
        "An existing loan is past due",
    ),
    (
        "KO_ABNORMAL_LISTING",
        "knockout",
        "被列入经营异常名录且未移出",
        "Listed for abnormal operation and not yet removed",
    ),
    (
        "KO_CUSTODY",
        "knockout",
        "预收资金存管未达要求",
        "Escrow custody of prepayments is below the required level",
    ),
    (
        "KO_INSUFFICIENT_DATA",
        "knockout",
        "经营数据不足，无法形成信用画像",
        "Too little history to build a credit profile",
    ),
    (
        "KO_CLOSED",
        "knockout",
        "已停业：无营业中的门店",
        "The merchant has closed: no store is open",
    ),
    (
        "GRADE_DECLINE",
        "grade",
        "信用等级低于准入要求",
        "Credit grade is below the lending threshold",
    ),
    (
        "GRADE_REFER",
        "grade",
        "信用等级需人工审核",
        "Credit grade requires manual review",
    ),
    (
        "GRADE_UNKNOWN",
        "grade",
        "信用等级不在授信政策中",
        "The credit grade is not covered by the policy",
    ),
    (
        "NO_CAPACITY",
        "capacity",
        "按收入、偿债能力与未托管预收款测算无可用额度",
        "No credit capacity after revenue, debt-service and uncovered-prepayment limits",
    ),
    (
        "AMOUNT_REDUCED",
        "capacity",
        "申请金额超过可用额度，按额度批准",
        "The amount asked exceeds the limit; approved at the limit",
    ),
    (
        "NO_PRODUCT",
        "product",
        "没有符合条件的信贷产品",
        "No credit product fits the request and the merchant",
    ),
    (
        "PRODUCT_NOT_ELIGIBLE",
        "product",
        "所选产品的准入条件未满足",
        "The product asked for does not admit this request",
    ),
    (
        "INFO_OPEN_DISPUTE",
        "info",
        "存在未结异议（不影响决策）",
        "An objection is open (it does not change the decision)",
    ),
];

/// The code of a model reason on a characteristic.
pub fn model_code(feature: &str) -> String {
    format!("SCORE_{}", feature.to_uppercase())
}

/// A policy reason by code.
pub fn policy(code: &str) -> Option<ReasonCode> {
    POLICY_CODES
        .iter()
        .find(|c| c.0 == code)
        .map(|c| ReasonCode {
            code: c.0.into(),
            kind: c.1.into(),
            zh: c.2.into(),
            en: c.3.into(),
        })
}

/// A model reason: the characteristic held the score down.
pub fn model(feature: &str, name_zh: &str, name_en: &str) -> ReasonCode {
    ReasonCode {
        code: model_code(feature),
        kind: "model".into(),
        zh: format!("{name_zh}拉低了评分"),
        en: format!("{name_en} held the score down"),
    }
}

/// The whole catalogue: policy codes, then one model code per catalogue characteristic and
/// per descriptive profile column a model can use.
pub fn catalogue() -> Vec<ReasonCode> {
    POLICY_CODES
        .iter()
        .filter_map(|c| policy(c.0))
        .chain(
            VOCABULARY
                .iter()
                .map(|f| model(f.name, f.name_zh, f.name_en)),
        )
        // Descriptive profile columns a model can use.
        .chain(DESCRIPTIVE.iter().map(|&(n, zh, en)| model(n, zh, en)))
        .collect()
}

/// Whether a code is in the catalogue (model codes of non-catalogue columns included:
/// models trained on other tables name their own columns).
pub fn is_published(code: &str) -> bool {
    POLICY_CODES.iter().any(|c| c.0 == code) || code.starts_with("SCORE_")
}
