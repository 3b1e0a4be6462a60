//! The service's wire types for the store's records and the decisions: what lenders,
//! merchants, analysts and admins are sent. Only this crate knows their JSON and OpenAPI form.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use yuanxin_decision::{Decision, Hint, Offer, Outcome};
use yuanxin_store::{hex, Consent, Dispute, LogEntry, Principal, SignedHead, Timestamp};

use crate::{ConsentPurpose, RoleName};

/// A principal: an institution, a merchant, or platform staff.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrincipalView {
    /// Role.
    pub role: RoleName,
    /// Stable public code (an institution code, a merchant id, a login name).
    pub code: String,
    /// Display name.
    pub name: String,
    /// Created (RFC 3339, +08:00).
    pub created_at: String,
}

impl From<&Principal> for PrincipalView {
    fn from(p: &Principal) -> PrincipalView {
        PrincipalView {
            role: p.role.into(),
            code: p.code.clone(),
            name: p.name.clone(),
            created_at: p.created_at.to_string(),
        }
    }
}

/// An institution, by code and name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstitutionView {
    /// Stable code.
    pub code: String,
    /// Name.
    pub name: String,
}

/// A page of lender institutions.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstitutionPage {
    /// In the order they were registered.
    pub items: Vec<InstitutionView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A consent from a merchant to a lender institution.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentView {
    /// Id.
    pub id: i64,
    /// Merchant.
    pub merchant_id: String,
    /// The lender institution.
    pub lender: InstitutionView,
    /// Purpose.
    pub purpose: ConsentPurpose,
    /// Granted (RFC 3339, +08:00).
    pub granted_at: String,
    /// Expires.
    pub expires_at: String,
    /// Revoked, if so.
    pub revoked_at: Option<String>,
    /// In force now.
    pub in_force: bool,
}

impl ConsentView {
    /// The view at a time.
    pub fn of(c: &Consent, now: Timestamp) -> ConsentView {
        ConsentView {
            id: c.id.0,
            merchant_id: c.merchant_id.to_string(),
            lender: InstitutionView {
                code: c.lender_code.clone(),
                name: c.lender_name.clone(),
            },
            purpose: c.purpose.into(),
            granted_at: c.granted_at.to_string(),
            expires_at: c.expires_at.to_string(),
            revoked_at: c.revoked_at.map(|t| t.to_string()),
            in_force: c.in_force(now),
        }
    }
}

/// A page of consents.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentPage {
    /// Oldest first.
    pub items: Vec<ConsentView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A merchant's objection (异议), answered within 20 days.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisputeView {
    /// Id.
    pub id: i64,
    /// Merchant.
    pub merchant_id: String,
    /// What is disputed.
    pub subject: String,
    /// The merchant's explanation.
    pub detail: String,
    /// Opened (RFC 3339, +08:00).
    pub opened_at: String,
    /// Answer due by (opened + 20 days).
    pub deadline: String,
    /// The platform's answer.
    pub answer: Option<String>,
    /// Answered at.
    pub answered_at: Option<String>,
    /// Open and past its deadline now.
    pub overdue: bool,
}

impl DisputeView {
    /// The view at a time.
    pub fn of(d: &Dispute, now: Timestamp) -> DisputeView {
        DisputeView {
            id: d.id.0,
            merchant_id: d.merchant_id.to_string(),
            subject: d.subject.clone(),
            detail: d.detail.clone(),
            opened_at: d.opened_at.to_string(),
            deadline: d.deadline.to_string(),
            answer: d.answer.clone(),
            answered_at: d.answered_at.map(|t| t.to_string()),
            overdue: d.overdue(now),
        }
    }
}

/// A page of disputes.
#[derive(Debug, Serialize, ToSchema)]
pub struct DisputePage {
    /// Oldest first.
    pub items: Vec<DisputeView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A signed tree head of the query log: the log's first `tree_size` entries have Merkle
/// root `root_hash` (RFC 9162, SHA-256), signed with Ed25519 over the four lines
/// `yuanxin-query-log-v1`, the tree size, the root hash in hex and the timestamp, each
/// ended by a newline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignedHeadView {
    /// Entries covered.
    pub tree_size: u64,
    /// Merkle root, hex.
    pub root_hash: String,
    /// When it was signed (RFC 3339, +08:00).
    pub timestamp: String,
    /// Ed25519 signature, hex.
    pub signature: String,
}

impl From<&SignedHead> for SignedHeadView {
    fn from(h: &SignedHead) -> SignedHeadView {
        let j = h.to_json();
        SignedHeadView {
            tree_size: j.tree_size,
            root_hash: j.root_hash,
            timestamp: j.timestamp,
            signature: j.signature,
        }
    }
}

/// The log's public key and its latest signed head.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// The first line of every signed message.
    pub origin: String,
    /// The Ed25519 public key, hex.
    pub public_key: String,
    /// The latest signed head.
    pub signed_head: SignedHeadView,
}

/// A query-log entry as the merchant (or the lender who made it) sees it: every field of
/// its leaf, so its leaf hash can be recomputed (see `docs/service.md`), the institution's
/// name, and optionally the inclusion proof.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueryView {
    /// Position in the log (leaf index).
    pub index: u64,
    /// When (RFC 3339, +08:00).
    pub at: String,
    /// The response's id.
    pub request_id: String,
    /// Role of who asked.
    pub role: String,
    /// Who asked: code (in the leaf) and name.
    pub institution: InstitutionView,
    /// The key used.
    pub key_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// `score`, `eligibility`, `batch_score` or `alerts`.
    pub action: String,
    /// The consent purpose stated.
    pub purpose: String,
    /// The consent relied on.
    pub consent_id: Option<i64>,
    /// `served` or `refused`.
    pub outcome: String,
    /// The model.
    pub model_id: String,
    /// BLAKE3 of the response body, hex.
    pub response_digest: String,
    /// SHA-256 leaf hash, hex.
    pub leaf_hash: String,
    /// The inclusion proof against the page's signed head (hex hashes, leaf side first),
    /// when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<Vec<String>>,
}

impl QueryView {
    /// The view of an entry, with the name of the institution.
    pub fn of(e: &LogEntry, name: &str, proof: Option<Vec<[u8; 32]>>) -> QueryView {
        QueryView {
            index: e.index,
            at: e.at.clone(),
            request_id: e.request_id.clone(),
            role: e.role.clone(),
            institution: InstitutionView {
                code: e.principal_code.clone(),
                name: name.to_owned(),
            },
            key_id: e.key_id.clone(),
            merchant_id: e.merchant_id.clone(),
            action: e.action.clone(),
            purpose: e.purpose.clone(),
            consent_id: e.consent_id.map(|c| c.0),
            outcome: e.outcome.clone(),
            model_id: e.model_id.clone(),
            response_digest: e.response_digest.clone(),
            leaf_hash: hex(&e.leaf_hash),
            proof: proof.map(|p| p.iter().map(|h| hex(h)).collect()),
        }
    }
}

/// A page of "who queried me".
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryPage {
    /// Newest first.
    pub items: Vec<QueryView>,
    /// Pass as `cursor` for the next (older) page; null on the last.
    pub next_cursor: Option<String>,
    /// The signed head the entries (and their proofs) are read against.
    pub signed_head: SignedHeadView,
}

/// One entry with its inclusion proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryProof {
    /// The entry.
    pub entry: QueryView,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The Merkle root of that tree, hex (as in the signed head of that size).
    pub root_hash: String,
    /// The inclusion proof (hex hashes, leaf side first).
    pub proof: Vec<String>,
    /// The latest signed head.
    pub signed_head: SignedHeadView,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyView {
    /// The older tree size.
    pub first: u64,
    /// The newer tree size.
    pub second: u64,
    /// Root of the older tree, hex.
    pub first_root: String,
    /// Root of the newer tree, hex.
    pub second_root: String,
    /// RFC 9162 consistency proof (hex hashes).
    pub proof: Vec<String>,
}

/// A page of principals.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalPage {
    /// In creation order.
    pub items: Vec<PrincipalView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A key just created: the full key is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreated {
    /// The public id (revoke by it).
    pub key_id: String,
    /// The key: `Authorization: Bearer <key>`. Not stored; shown once.
    pub key: String,
    /// Whose it is.
    pub principal: PrincipalView,
    /// Created.
    pub created_at: String,
}

/// The decision as lenders and merchants are sent it (docs/decisions.md): the same fields,
/// in the same order, as the decision crate's `Decision`, described for the OpenAPI
/// document here so that the decision crate stays free of HTTP.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Decision)]
pub struct DecisionView {
    /// Merchant.
    pub merchant_id: String,
    /// Profile date.
    pub as_of: NaiveDate,
    /// Outcome.
    pub outcome: OutcomeView,
    /// Amount approved, yuan (0 unless approved).
    pub approved_amount: Decimal,
    /// The request.
    pub request: RequestView,
    /// Model.
    pub model_id: String,
    /// Whether the merchant still trades (a closed one is declined with `KO_CLOSED`).
    pub status: StatusView,
    /// The day it closed, when closed.
    pub closed_on: Option<NaiveDate>,
    /// Score (null when closed).
    pub score: Option<i64>,
    /// PD over the label's horizon (null when closed).
    pub pd: Option<f64>,
    /// Grade on the model's master scale, e.g. `B2` (null when closed).
    pub grade: Option<String>,
    /// Its public grade, A+ to E: `B` for B1–B3 (null when closed).
    pub public_grade: Option<String>,
    /// The offer the outcome refers to (the requested product's, else the cheapest).
    pub offer: Option<OfferView>,
    /// Every product the merchant qualifies for, cheapest effective rate first.
    pub offers: Vec<OfferView>,
    /// The nearest products it does not qualify for.
    pub near_misses: Vec<NearMissView>,
    /// Reasons, policy codes first, then the model's.
    pub reasons: Vec<ReasonCodeView>,
    /// What would raise the score, on characteristics the merchant can act on.
    pub hints: Vec<HintView>,
    /// Policy version.
    pub policy_version: String,
    /// Catalogue version.
    pub catalogue_version: String,
    /// The LPR fixing used.
    pub lpr_effective: NaiveDate,
}

/// Whether a merchant still trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = MerchantStatus)]
pub enum StatusView {
    /// Trading: graded.
    Open,
    /// Closed (no store open): no score, PD or grade.
    Closed,
}

impl From<yuanxin_decision::Status> for StatusView {
    fn from(s: yuanxin_decision::Status) -> StatusView {
        match s {
            yuanxin_decision::Status::Open => StatusView::Open,
            yuanxin_decision::Status::Closed => StatusView::Closed,
        }
    }
}

/// A decision's outcome.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Outcome)]
pub enum OutcomeView {
    /// Approved (possibly for less than asked).
    Approve,
    /// Manual review.
    Refer,
    /// Declined.
    Decline,
}

/// The request a decision answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = LoanRequest)]
pub struct RequestView {
    /// Amount, yuan.
    pub amount: Decimal,
    /// Term, months.
    pub term_months: u32,
    /// Purpose.
    pub purpose: String,
    /// The product asked for, if any.
    pub product: Option<String>,
}

/// A product the merchant qualifies for.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Offer)]
pub struct OfferView {
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
    pub limit: LimitView,
    /// The price.
    pub price: PriceView,
    /// Monthly payment at the contract rate, yuan.
    pub monthly_payment: Decimal,
    /// Interest over the term at the contract rate, yuan.
    pub total_interest: Decimal,
    /// Interest the merchant bears over the term after interest subsidy, yuan.
    pub total_interest_after_support: Decimal,
    /// Support applied.
    pub support: Vec<SupportView>,
}

/// A credit limit with its parts, yuan.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Limit)]
pub struct LimitView {
    /// revenue_multiple × monthly revenue.
    pub revenue_cap: Decimal,
    /// The principal whose instalment keeps the coverage ratio after existing debt service.
    pub debt_service_cap: Decimal,
    /// The product or industry cap.
    pub product_cap: Decimal,
    /// haircut × uncovered prepaid liability.
    pub haircut: Decimal,
    /// min(caps) − haircut, never negative, rounded down to the unit.
    pub limit: Decimal,
    /// Which cap bound: `revenue`, `debt_service` or `product`.
    pub binding: String,
}

/// A risk-based price, % a year.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Price)]
pub struct PriceView {
    /// Reference rate (1-year LPR).
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

/// A support scheme applied to an offer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SupportApplied)]
pub struct SupportView {
    /// Scheme id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Name in Chinese.
    pub name_zh: String,
    /// What it gives: `interest_subsidy`, `re_guarantee` or `risk_compensation`.
    pub kind: SupportKind,
    /// Share.
    pub share: Decimal,
}

/// A product the merchant does not qualify for, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = NearMiss)]
pub struct NearMissView {
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

/// A reason code with its texts.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReasonCode)]
pub struct ReasonCodeView {
    /// Stable code (`yuanxin reasons`).
    pub code: String,
    /// `knockout`, `grade`, `capacity`, `product`, `model` or `info`.
    pub kind: String,
    /// Chinese text.
    pub zh: String,
    /// English text.
    pub en: String,
}

/// An improvement hint.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Hint)]
pub struct HintView {
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

impl From<Decision> for DecisionView {
    fn from(d: Decision) -> DecisionView {
        DecisionView {
            merchant_id: d.merchant_id,
            as_of: d.as_of,
            outcome: match d.outcome {
                Outcome::Approve => OutcomeView::Approve,
                Outcome::Refer => OutcomeView::Refer,
                Outcome::Decline => OutcomeView::Decline,
            },
            approved_amount: d.approved_amount,
            request: RequestView {
                amount: d.request.amount,
                term_months: d.request.term_months,
                purpose: d.request.purpose,
                product: d.request.product,
            },
            model_id: d.model_id,
            status: d.status.into(),
            closed_on: d.closed_on,
            score: d.score,
            pd: d.pd,
            public_grade: d.public_grade,
            grade: d.grade,
            offer: d.offer.map(OfferView::from),
            offers: d.offers.into_iter().map(OfferView::from).collect(),
            near_misses: d
                .near_misses
                .into_iter()
                .map(|m| NearMissView {
                    product: m.product,
                    institution: m.institution,
                    institution_zh: m.institution_zh,
                    name: m.name,
                    name_zh: m.name_zh,
                    failing: m.failing,
                    failing_zh: m.failing_zh,
                })
                .collect(),
            reasons: d
                .reasons
                .into_iter()
                .map(|r| ReasonCodeView {
                    code: r.code,
                    kind: r.kind,
                    zh: r.zh,
                    en: r.en,
                })
                .collect(),
            hints: d.hints.into_iter().map(HintView::from).collect(),
            policy_version: d.policy_version,
            catalogue_version: d.catalogue_version,
            lpr_effective: d.lpr_effective,
        }
    }
}

impl From<Offer> for OfferView {
    fn from(o: Offer) -> OfferView {
        let (l, p) = (o.limit, o.price);
        OfferView {
            product: o.product,
            name: o.name,
            name_zh: o.name_zh,
            institution: o.institution,
            institution_zh: o.institution_zh,
            amount: o.amount,
            limit: LimitView {
                revenue_cap: l.revenue_cap,
                debt_service_cap: l.debt_service_cap,
                product_cap: l.product_cap,
                haircut: l.haircut,
                limit: l.limit,
                binding: l.binding,
            },
            price: PriceView {
                lpr: p.lpr,
                expected_loss: p.expected_loss,
                opex: p.opex,
                capital: p.capital,
                margin: p.margin,
                lgd_after_cover: p.lgd_after_cover,
                rate: p.rate,
                effective_rate: p.effective_rate,
            },
            monthly_payment: o.monthly_payment,
            total_interest: o.total_interest,
            total_interest_after_support: o.total_interest_after_support,
            support: o
                .support
                .into_iter()
                .map(|s| SupportView {
                    id: s.id,
                    name: s.name,
                    name_zh: s.name_zh,
                    kind: match s.kind {
                        yuanxin_decision::SupportKind::InterestSubsidy => {
                            SupportKind::InterestSubsidy
                        }
                        yuanxin_decision::SupportKind::ReGuarantee => SupportKind::ReGuarantee,
                        yuanxin_decision::SupportKind::RiskCompensation => {
                            SupportKind::RiskCompensation
                        }
                    },
                    share: s.share,
                })
                .collect(),
        }
    }
}

/// What a support scheme gives.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SupportKind {
    /// Pays `share` of the interest: lowers the merchant's effective rate.
    InterestSubsidy,
    /// Re-guarantees `share` of the loss: lowers the lender's LGD.
    ReGuarantee,
    /// Compensates `share` of non-performing principal: lowers the lender's LGD.
    RiskCompensation,
}

impl From<Hint> for HintView {
    fn from(h: Hint) -> HintView {
        HintView {
            feature: h.feature,
            name_zh: h.name_zh,
            name_en: h.name_en,
            from: h.from,
            to: h.to,
            points: h.points,
            pd_after: h.pd_after,
            grade_after: h.grade_after,
            text_zh: h.text_zh,
            text_en: h.text_en,
        }
    }
}
