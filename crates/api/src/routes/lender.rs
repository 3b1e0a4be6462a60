//! Lenders: scores and decisions under the merchant's consent, portfolios, early-warning
//! alerts. Every served answer and every refusal is logged before the response leaves, and
//! the response carries the receipt.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use yuanxin_domain::MerchantId;
use yuanxin_store::prelude::*;
use yuanxin_store::{LogRecord, Outcome, PageRequest, Purpose};

use std::sync::Arc;

use super::{
    consent_or_refuse, cursor, json_bytes, logged, remember, respond, with_receipt, LenderCaller,
    Served,
};
use crate::engine::ScoreView;
use crate::input::{check_id, Fields, FromFields, Json, Path, Query};
use crate::problem::{ApiError, Code};
use crate::{digest, AppState, ConsentPurpose, LoanPurpose};

/// The consent purpose a lender states.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PurposeQuery {
    /// The consent purpose.
    #[param(inline)]
    pub purpose: ConsentPurpose,
}

impl FromFields for PurposeQuery {
    const FIELDS: &'static [&'static str] = &["purpose"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(PurposeQuery {
            purpose: Fields::required(f.choice("purpose")?, "purpose")?,
        })
    }
}

/// A merchant id in the path, checked before anything else is done with it (an id that
/// is not an id is never logged).
fn merchant(id: &str) -> Result<MerchantId, ApiError> {
    check_id("id", id)?;
    MerchantId::parse(id).map_err(ApiError::internal)
}

/// A known merchant, or 404 (not logged: there is no one to tell).
fn known(e: &crate::Engine, id: &str) -> Result<(), ApiError> {
    if e.has(id) {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::UnknownMerchant,
            format!("no merchant {id} has a profile"),
        ))
    }
}

#[utoipa::path(get, path = "/v1/merchants/{id}/score", tag = "lender",
    params(("id" = String, Path, description = "Merchant id"), PurposeQuery),
    security(("api_key" = [])),
    responses((status = 200, body = ScoreView, description = "The score; `yuanxin-log-index` and `yuanxin-signed-head` are the receipt",
        headers(("yuanxin-log-index" = u64, description = "The query-log entry of this response"),
                ("yuanxin-signed-head" = String, description = "The signed tree head covering it (JSON)"))),
        (status = 403, body = crate::problem::Problem, description = "The key is not a lender's, or no consent is in force (the refusal is logged)")))]
pub(super) async fn score(
    State(st): State<AppState>,
    LenderCaller(c): LenderCaller,
    Path(id): Path<String>,
    Query(q): Query<PurposeQuery>,
) -> Result<Response, ApiError> {
    answer(&st, &c, &id, "score", q.purpose, |e, dispute| {
        e.score_body(&id, dispute)
    })
    .await
}

/// A lender's question about one merchant: the id checked and the merchant known before
/// anything is logged, the consent checked (a refusal logged), then the answer logged before
/// it is sent, with its receipt.
async fn answer(
    st: &AppState,
    c: &super::Caller,
    id: &str,
    action: &'static str,
    purpose: ConsentPurpose,
    body: impl FnOnce(&crate::Engine, bool) -> Result<(axum::body::Bytes, Arc<str>), ApiError>,
) -> Result<Response, ApiError> {
    let mid = merchant(id)?;
    let e = st.engine()?;
    known(&e, id)?;
    let served = Served::new(c, &e, &mid, action, purpose.into());
    let (consent, dispute) = consent_or_refuse(st, &served).await?;
    let (bytes, digest) = body(&e, dispute)?;
    logged(
        st,
        Served {
            consent: Some(consent),
            ..served
        },
        bytes,
        digest,
    )
    .await
}

/// An eligibility request.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct EligibilityBody {
    /// Amount, yuan (a decimal string).
    pub amount: String,
    /// Term, months.
    pub term_months: u32,
    /// What the loan is for.
    pub loan_purpose: LoanPurpose,
    /// A specific product of the catalogue.
    pub product: Option<String>,
    /// The consent purpose.
    pub purpose: ConsentPurpose,
}

/// The checked request.
#[derive(Debug)]
pub struct Eligibility {
    amount: Decimal,
    term_months: u32,
    loan_purpose: LoanPurpose,
    product: Option<String>,
    purpose: ConsentPurpose,
}

/// A term within the catalogue's products' terms.
pub(super) fn term(f: &mut Fields, st: &AppState) -> Result<Option<u32>, ApiError> {
    let b = st.bounds();
    Ok(
        f.integer("term_months", i64::from(b.term_min), i64::from(b.term_max))?
            .and_then(|t| u32::try_from(t).ok()),
    )
}

impl FromFields for Eligibility {
    const FIELDS: &'static [&'static str] = &[
        "amount",
        "term_months",
        "loan_purpose",
        "product",
        "purpose",
    ];
    fn from_fields(f: &mut Fields, st: &AppState) -> Result<Self, ApiError> {
        Ok(Eligibility {
            amount: Fields::required(f.amount("amount")?, "amount")?,
            term_months: Fields::required(term(f, st)?, "term_months")?,
            loan_purpose: Fields::required(f.choice("loan_purpose")?, "loan_purpose")?,
            product: f.id("product")?,
            purpose: Fields::required(f.choice("purpose")?, "purpose")?,
        })
    }
}

#[utoipa::path(post, path = "/v1/merchants/{id}/eligibility", tag = "lender",
    params(("id" = String, Path, description = "Merchant id")),
    request_body = EligibilityBody,
    security(("api_key" = [])),
    responses((status = 200, body = crate::views::DecisionView, description = "The decision: outcome, limit, price, offers, near misses, reasons, hints (docs/decisions.md); with the receipt headers",
        headers(("yuanxin-log-index" = u64, description = "The query-log entry of this response"),
                ("yuanxin-signed-head" = String, description = "The signed tree head covering it (JSON)")))))]
pub(super) async fn eligibility(
    State(st): State<AppState>,
    LenderCaller(c): LenderCaller,
    Path(id): Path<String>,
    Json(b, _): Json<Eligibility>,
) -> Result<Response, ApiError> {
    answer(&st, &c, &id, "eligibility", b.purpose, |e, dispute| {
        e.decision(
            &id,
            b.amount,
            b.term_months,
            b.loan_purpose,
            b.product,
            dispute,
        )
    })
    .await
}

/// A portfolio to score.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct BatchBody {
    /// The consent purpose (usually post_loan for a portfolio).
    pub purpose: ConsentPurpose,
    /// Merchant ids (1 to the configured `batch_max`, 500 by default).
    pub merchants: Vec<String>,
}

/// The checked batch.
#[derive(Debug)]
pub struct Batch {
    purpose: ConsentPurpose,
    merchants: Vec<String>,
}

impl FromFields for Batch {
    const FIELDS: &'static [&'static str] = &["purpose", "merchants"];
    fn from_fields(f: &mut Fields, st: &AppState) -> Result<Self, ApiError> {
        Ok(Batch {
            purpose: Fields::required(f.choice("purpose")?, "purpose")?,
            merchants: Fields::required(f.ids("merchants", st.config.batch_max)?, "merchants")?,
        })
    }
}

/// What became of one merchant of a batch.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// Scored (logged).
    Served,
    /// No consent in force (logged).
    Refused,
    /// No such merchant.
    NotFound,
    /// The merchant cannot be scored.
    Unscorable,
}

/// One merchant's result in a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// Merchant.
    pub merchant_id: String,
    /// What became of it.
    pub status: BatchStatus,
    /// The score, when served.
    pub score: Option<ScoreView>,
    /// Why not, otherwise.
    pub detail: Option<String>,
    /// The query-log entry, when served or refused (the entry holds the digest of `score`
    /// as serialised here, or of `detail`).
    pub log_index: Option<u64>,
}

/// A batch's results, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    /// Results.
    pub results: Vec<BatchItem>,
}

#[utoipa::path(post, path = "/v1/portfolio/score", tag = "lender",
    request_body = BatchBody,
    security(("api_key" = [])),
    responses((status = 200, body = BatchView, description = "One result per merchant; every served and refused one is logged, all in one commit whose signed head is in `yuanxin-signed-head`",
        headers(("yuanxin-signed-head" = String, description = "The signed tree head covering every entry of the batch (JSON)")))))]
pub(super) async fn batch_score(
    State(st): State<AppState>,
    LenderCaller(c): LenderCaller,
    Json(b, _): Json<Batch>,
) -> Result<Response, ApiError> {
    let e = st.engine()?;
    let now = (st.now)();
    let purpose: Purpose = b.purpose.into();
    let mut results = Vec::with_capacity(b.merchants.len());
    let mut records: Vec<LogRecord> = Vec::new();
    // Which result each record belongs to.
    let mut owners = Vec::new();
    for id in &b.merchants {
        let mut item = BatchItem {
            merchant_id: id.clone(),
            status: BatchStatus::NotFound,
            score: None,
            detail: None,
            log_index: None,
        };
        if !e.has(id) {
            item.detail = Some(format!("no merchant {id} has a profile"));
            results.push(item);
            continue;
        }
        let consent = st.authz.valid_consent(id, c.principal.id, purpose, now)?;
        // Checked as ids by the body's reader.
        let mid = merchant(id)?;
        let served = Served {
            consent,
            write_shown: true,
            ..Served::new(&c, &e, &mid, "batch_score", purpose)
        };
        match consent {
            None => {
                let detail = format!(
                    "no {purpose} consent from merchant {id} to {} is in force",
                    c.principal.code
                );
                records.push(served.record(
                    Outcome::Refused,
                    now,
                    digest(detail.as_bytes()).into(),
                ));
                owners.push(results.len());
                item.status = BatchStatus::Refused;
                item.detail = Some(detail);
            }
            Some(_) => match e.score(id) {
                Ok(s) => {
                    let s = ScoreView {
                        open_dispute: st.authz.has_open_dispute(id)?,
                        ..s.clone()
                    };
                    records.push(served.record(
                        Outcome::Served,
                        now,
                        digest(&json_bytes(&s)?).into(),
                    ));
                    owners.push(results.len());
                    item.status = BatchStatus::Served;
                    item.score = Some(s);
                }
                Err(err) => {
                    item.status = BatchStatus::Unscorable;
                    item.detail = Some(err.detail);
                }
            },
        }
        results.push(item);
    }
    let served = records
        .iter()
        .filter(|r| r.outcome == Outcome::Served)
        .count() as u64;
    let refused = records.len() as u64 - served;
    let receipt = if records.is_empty() {
        st.db.receipt()?
    } else {
        let (first, receipt) = st.db.append(records.clone()).await?;
        for (i, &k) in owners.iter().enumerate() {
            if let Some(item) = results.get_mut(k) {
                item.log_index = Some(first + i as u64);
            }
        }
        receipt
    };
    remember(&st, &records)?;
    st.metrics.logged("served", served);
    st.metrics.logged("refused", refused);
    Ok(with_receipt(
        respond(StatusCode::OK, json_bytes(&BatchView { results })?),
        None,
        &receipt,
    ))
}

/// Alerts for one merchant.
#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantAlerts {
    /// Merchant.
    pub merchant_id: String,
    /// Grade now (null when the merchant has closed: see `MERCHANT_CLOSED`).
    pub grade: Option<String>,
    /// Grade the lender was last shown, if any.
    pub last_grade: Option<String>,
    /// Alerts (code, texts, value, threshold).
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<yuanxin_decision::Alert>,
}

/// One merchant's alerts and their query-log entry (which holds the digest of `alert` as
/// serialised here).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertItem {
    /// The alerts.
    pub alert: MerchantAlerts,
    /// The query-log entry.
    pub log_index: u64,
}

/// A page of alerts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    /// Merchants with at least one alert, by merchant id.
    pub items: Vec<AlertItem>,
    /// Pass as `cursor` for the next page (the next `limit` consenting merchants); null on
    /// the last.
    pub next_cursor: Option<String>,
}

/// Which consents the alerts cover, and which page.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// The consent purpose (default post_loan).
    #[param(inline)]
    pub purpose: Option<ConsentPurpose>,
    /// Consenting merchants looked at in this page (1–500, default 50).
    pub limit: Option<u32>,
    /// The last merchant of the previous page.
    pub cursor: Option<String>,
}

/// The checked query.
#[derive(Debug)]
pub struct Alerts {
    purpose: ConsentPurpose,
    limit: u32,
    cursor: Option<String>,
}

/// A page size: 1–500, default 50.
pub(super) fn limit(f: &mut Fields) -> Result<u32, ApiError> {
    Ok(f.integer("limit", 1, i64::from(yuanxin_store::MAX_PAGE))?
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(50))
}

impl FromFields for Alerts {
    const FIELDS: &'static [&'static str] = &["purpose", "limit", "cursor"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(Alerts {
            purpose: f.choice("purpose")?.unwrap_or(ConsentPurpose::PostLoan),
            limit: limit(f)?,
            cursor: f.id("cursor")?,
        })
    }
}

#[utoipa::path(get, path = "/v1/alerts", tag = "lender",
    params(AlertQuery),
    security(("api_key" = [])),
    responses((status = 200, body = AlertPage, description = "Of the next `limit` merchants whose consent for the purpose is in force, those with at least one alert; each is logged, and `yuanxin-signed-head` covers them",
        headers(("yuanxin-signed-head" = String, description = "The signed tree head covering every entry of the page (JSON)")))))]
pub(super) async fn alerts(
    State(st): State<AppState>,
    LenderCaller(c): LenderCaller,
    Query(q): Query<Alerts>,
) -> Result<Response, ApiError> {
    let e = st.engine()?;
    let now = (st.now)();
    let purpose: Purpose = q.purpose.into();
    let lender = c.principal.id;
    let page = PageRequest {
        cursor: q.cursor,
        limit: q.limit,
    };
    let (watched, next) = st
        .db
        .read_long(move |s| {
            let p = s.consenting(
                lender,
                purpose,
                now,
                PageRequest {
                    cursor: page.cursor.as_deref(),
                    limit: page.limit,
                },
            )?;
            let watched = p
                .items
                .into_iter()
                .map(|(m, consent)| {
                    let last = s.last_seen(lender, &m)?;
                    Ok((m, consent, last))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            Ok((watched, p.next))
        })
        .await?;
    let mut items = Vec::new();
    let mut records = Vec::new();
    for (id, consent, last) in watched {
        let Ok(alerts) = e.alerts(id.as_str(), last.as_ref()) else {
            continue;
        };
        if alerts.is_empty() {
            continue;
        }
        let served = Served {
            consent: Some(consent),
            write_shown: true,
            ..Served::new(&c, &e, &id, "alerts", purpose)
        };
        let item = MerchantAlerts {
            merchant_id: id.to_string(),
            grade: served.shown.map(|s| s.0.to_owned()),
            last_grade: last.map(|l| l.grade),
            alerts,
        };
        records.push(served.record(Outcome::Served, now, digest(&json_bytes(&item)?).into()));
        items.push(item);
    }
    let (items, receipt) = if records.is_empty() {
        (Vec::new(), st.db.receipt()?)
    } else {
        let (first, receipt) = st.db.append(records.clone()).await?;
        let items = items
            .into_iter()
            .zip(first..)
            .map(|(alert, log_index)| AlertItem { alert, log_index })
            .collect();
        (items, receipt)
    };
    remember(&st, &records)?;
    st.metrics.logged("served", records.len() as u64);
    let body = AlertPage {
        items,
        next_cursor: cursor(next),
    };
    Ok(with_receipt(
        respond(StatusCode::OK, json_bytes(&body)?),
        None,
        &receipt,
    ))
}

#[utoipa::path(get, path = "/v1/consents", tag = "lender",
    params(super::merchant::PageQuery),
    security(("api_key" = [])),
    responses((status = 200, body = crate::views::ConsentPage, description = "The consents merchants granted this institution, oldest first, with whether each is in force")))]
pub(super) async fn consents_held(
    State(st): State<AppState>,
    l: LenderCaller,
    Query(super::merchant::Paging(page)): Query<super::merchant::Paging<yuanxin_store::ConsentId>>,
) -> Result<Response, ApiError> {
    let lender = l.0.principal.id;
    let now = (st.now)();
    let p = st
        .db
        .read_long(move |s| Ok(s.consents_held(lender, page)?))
        .await?;
    let body = crate::views::ConsentPage {
        items: p
            .items
            .iter()
            .map(|c| crate::views::ConsentView::of(c, now))
            .collect(),
        next_cursor: cursor(p.next),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}
