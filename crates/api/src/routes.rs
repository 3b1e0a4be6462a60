//! The routes: thin handlers (authenticate, check role and consent, call one engine
//! function, log, respond), each annotated for the OpenAPI document, and the router with
//! its layers.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::{ProfileView, ScoreView, StabilityView};
use crate::store::{digest, Consent, Dispute, LogEntry, LogRecord, Principal, Seen};
use crate::{ops, ApiError, AppState, Body, CallerSlot, Engine, Path, Problem, Query};

/// The caller, authenticated by its API key and within its rate limit.
#[derive(Debug)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| k.trim().to_owned())
            .ok_or(ApiError::Unauthorized)?;
        let p = st
            .authz
            .authenticate(&key, |id| {
                st.db.read(|s| Ok(s.keys(Some(id))?.into_iter().next()))
            })?
            .ok_or(ApiError::Unauthorized)?;
        if let Some(slot) = parts.extensions.get::<CallerSlot>() {
            let _ = slot.0.set(p.key_id.clone());
        }
        st.limiter.take(&p.key_id)?;
        Ok(Caller(p))
    }
}

fn role(p: &Principal, roles: &[&str]) -> Result<(), ApiError> {
    if roles.contains(&p.role.as_str()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "a {} key cannot use this route",
            p.role
        )))
    }
}

fn own(p: &Principal) -> Result<String, ApiError> {
    role(p, &["merchant"])?;
    p.merchant_id
        .clone()
        .ok_or_else(|| ApiError::Forbidden("this key has no merchant".into()))
}

const PURPOSES: [&str; 2] = ["pre_loan", "post_loan"];

fn check_purpose(p: &str) -> Result<(), ApiError> {
    if PURPOSES.contains(&p) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "purpose must be pre_loan or post_loan, not {p:?}"
        )))
    }
}

fn json<T: Serialize>(body: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))
}

fn respond(status: StatusCode, bytes: impl Into<Bytes>) -> Response {
    let bytes: Bytes = bytes.into();
    (status, [("content-type", "application/json")], bytes).into_response()
}

/// A served query, to be logged before its response leaves.
struct Served<'a> {
    lender: &'a Principal,
    merchant: &'a str,
    action: &'a str,
    purpose: &'a str,
    consent: Option<i64>,
    model_id: &'a str,
    /// Grade and escrow coverage shown (from the engine).
    shown: Option<(&'a str, Option<f64>)>,
    /// Whether to write `shown` as what the lender last saw.
    write_shown: bool,
}

impl<'a> Served<'a> {
    /// A query of `lender` about `merchant`, before its consent is known; what the lender
    /// is shown comes from the engine and is written only if it changed.
    fn new(
        lender: &'a Principal,
        e: &'a Engine,
        merchant: &'a str,
        action: &'a str,
        purpose: &'a str,
    ) -> Served<'a> {
        Served {
            lender,
            merchant,
            action,
            purpose,
            consent: None,
            model_id: e.model_id(),
            shown: e.shown(merchant),
            write_shown: false,
        }
    }

    fn record(&self, outcome: &str, at: String, response: &[u8]) -> LogRecord {
        self.record_digest(outcome, at, digest(response))
    }

    fn record_digest(&self, outcome: &str, at: String, response_digest: String) -> LogRecord {
        LogRecord {
            at,
            principal: self.lender.key_id.clone(),
            merchant_id: self.merchant.to_owned(),
            action: self.action.to_owned(),
            purpose: self.purpose.to_owned(),
            consent_id: self.consent,
            outcome: outcome.to_owned(),
            model_id: self.model_id.to_owned(),
            response_digest,
            seen: self
                .shown
                .filter(|_| self.write_shown)
                .map(|(grade, escrow_coverage)| Seen {
                    lender: self.lender.name.clone(),
                    grade: grade.to_owned(),
                    escrow_coverage,
                }),
        }
    }
}

/// Logs the response (committed before anything is sent) and returns it. If the log write
/// fails, the request fails.
async fn logged(st: &AppState, q: Served<'_>, bytes: Vec<u8>) -> Result<Response, ApiError> {
    let d = digest(&bytes);
    logged_with(st, q, Bytes::from(bytes), d).await
}

/// [`logged`] for a body whose digest is known.
async fn logged_with(
    st: &AppState,
    q: Served<'_>,
    bytes: Bytes,
    response_digest: String,
) -> Result<Response, ApiError> {
    // What the lender is shown is written with the entry only when it changed.
    let write_shown = match q.shown {
        Some(shown) => !st.seen.holds(&q.lender.name, q.merchant, shown)?,
        None => false,
    };
    let q = Served { write_shown, ..q };
    st.db
        .log(q.record_digest("served", (st.now)(), response_digest))
        .await?;
    st.metrics.logged("served", 1);
    if let (true, Some(shown)) = (write_shown, q.shown) {
        st.seen.remember(&q.lender.name, q.merchant, shown)?;
    }
    Ok(respond(StatusCode::OK, bytes))
}

/// The views written with these records, to remember once they are committed.
fn shown_in(records: &[LogRecord]) -> Vec<(String, Seen)> {
    records
        .iter()
        .filter_map(|r| Some((r.merchant_id.clone(), r.seen.clone()?)))
        .collect()
}

fn remember(st: &AppState, shown: Vec<(String, Seen)>) -> Result<(), ApiError> {
    for (merchant, s) in shown {
        st.seen
            .remember(&s.lender, &merchant, (&s.grade, s.escrow_coverage))?;
    }
    Ok(())
}

/// The consent in force and whether the merchant has an open dispute; without a consent,
/// the refusal is logged and the answer is 403.
async fn consent_or_refuse(st: &AppState, q: &Served<'_>) -> Result<(i64, bool), ApiError> {
    check_purpose(q.purpose)?;
    let now = (st.now)();
    let consent = st
        .authz
        .valid_consent(q.merchant, &q.lender.name, q.purpose, &now)?;
    let dispute = st.authz.has_open_dispute(q.merchant)?;
    match consent {
        Some(id) => Ok((id, dispute)),
        None => {
            let detail = format!(
                "no valid {} consent from merchant {} to {}",
                q.purpose, q.merchant, q.lender.name
            );
            st.db
                .log(q.record("refused", now, detail.as_bytes()))
                .await?;
            st.metrics.logged("refused", 1);
            Err(ApiError::Forbidden(detail))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Operations.

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up")))]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the engine (model and profiles) and the database answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: String,
    /// The model serving.
    pub model: String,
    /// Merchants with a profile.
    pub profiles: usize,
    /// Latest profile date.
    pub as_of: Option<chrono::NaiveDate>,
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Ready), (status = 503, body = Problem, description = "Model, profiles or database not ready")))]
async fn readyz(State(st): State<AppState>) -> Result<axum::Json<Ready>, ApiError> {
    let e = st.engine()?;
    st.db
        .call(|s| s.ping())
        .await
        .map_err(|e| ApiError::Unavailable(format!("database: {e}")))?;
    Ok(axum::Json(Ready {
        status: "ready".into(),
        model: e.model_id().to_owned(),
        profiles: e.merchants(),
        as_of: e.as_of(),
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    Ok((
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render()?,
    )
        .into_response())
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document")))]
async fn openapi_json(State(st): State<AppState>) -> Response {
    (
        [("content-type", "application/json")],
        st.openapi.as_str().to_owned(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// Lenders.

/// The consent purpose a lender states.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PurposeQuery {
    /// `pre_loan` or `post_loan`.
    pub purpose: String,
}

#[utoipa::path(get, path = "/v1/merchants/{id}/score", tag = "lender",
    params(("id" = String, Path, description = "Merchant id"), PurposeQuery),
    security(("api_key" = [])),
    responses((status = 200, body = ScoreView), (status = 403, body = Problem, description = "No consent in force (the refusal is logged)"), (status = 404, body = Problem)))]
async fn lender_score(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Query(q): Query<PurposeQuery>,
) -> Result<Response, ApiError> {
    role(&p, &["lender"])?;
    let e = st.engine()?;
    let served = Served::new(&p, &e, &id, "score", &q.purpose);
    let (consent, dispute) = consent_or_refuse(&st, &served).await?;
    let (body, d) = e.score_body(&id, dispute)?;
    logged_with(
        &st,
        Served {
            consent: Some(consent),
            ..served
        },
        body,
        d,
    )
    .await
}

/// An eligibility request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EligibilityBody {
    /// Amount, yuan.
    #[schema(value_type = String, example = "300000")]
    pub amount: Decimal,
    /// Term, months.
    pub term_months: u32,
    /// Loan purpose (working_capital, equipment, renovation, expansion).
    pub loan_purpose: String,
    /// A specific product.
    #[serde(default)]
    pub product: Option<String>,
    /// Consent purpose (pre_loan or post_loan).
    pub purpose: String,
}

#[utoipa::path(post, path = "/v1/merchants/{id}/eligibility", tag = "lender",
    params(("id" = String, Path, description = "Merchant id")),
    request_body = EligibilityBody,
    security(("api_key" = [])),
    responses((status = 200, body = yuanxin_decision::Decision, description = "The decision: outcome, limit, price, offers, near misses, reasons, hints (docs/decisions.md)"),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn lender_eligibility(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(b): Body<EligibilityBody>,
) -> Result<Response, ApiError> {
    role(&p, &["lender"])?;
    let e = st.engine()?;
    let served = Served::new(&p, &e, &id, "eligibility", &b.purpose);
    let (consent, _) = consent_or_refuse(&st, &served).await?;
    let d = e.decide(
        &id,
        b.amount,
        b.term_months,
        &b.loan_purpose,
        b.product.clone(),
    )?;
    logged(
        &st,
        Served {
            consent: Some(consent),
            ..served
        },
        json(&d)?,
    )
    .await
}

/// A portfolio to score.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// Consent purpose (usually post_loan for a portfolio).
    pub purpose: String,
    /// Merchant ids (at most the configured `batch_max`, 500 by default).
    pub merchants: Vec<String>,
}

/// One merchant's result in a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// Merchant.
    pub merchant_id: String,
    /// `served`, `refused` (no consent), `not_found` or `unscorable`.
    pub status: String,
    /// The score, when served.
    pub score: Option<ScoreView>,
    /// Why not, otherwise.
    pub detail: Option<String>,
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
    responses((status = 200, body = BatchView, description = "One result per merchant; every served and refused one is logged"),
        (status = 400, body = Problem)))]
async fn batch_score(
    State(st): State<AppState>,
    Caller(p): Caller,
    Body(b): Body<BatchBody>,
) -> Result<Response, ApiError> {
    role(&p, &["lender"])?;
    check_purpose(&b.purpose)?;
    if b.merchants.is_empty() || b.merchants.len() > st.config.batch_max {
        return Err(ApiError::BadRequest(format!(
            "a batch names 1–{} merchants, not {}",
            st.config.batch_max,
            b.merchants.len()
        )));
    }
    let e = st.engine()?;
    let now = (st.now)();
    let checks = b
        .merchants
        .iter()
        .map(|id| {
            Ok((
                st.authz.valid_consent(id, &p.name, &b.purpose, &now)?,
                st.authz.has_open_dispute(id)?,
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let mut results = Vec::with_capacity(b.merchants.len());
    let mut records = Vec::new();
    for (id, (consent, dispute)) in b.merchants.iter().zip(checks) {
        let served = Served {
            consent,
            write_shown: true,
            ..Served::new(&p, &e, id, "batch_score", &b.purpose)
        };
        let item = match consent {
            None => {
                let detail = format!(
                    "no valid {} consent from merchant {id} to {}",
                    b.purpose, p.name
                );
                records.push(served.record("refused", now.clone(), detail.as_bytes()));
                BatchItem {
                    merchant_id: id.clone(),
                    status: "refused".into(),
                    score: None,
                    detail: Some(detail),
                }
            }
            Some(_) => match e.score(id) {
                Ok(s) => {
                    let s = ScoreView {
                        open_dispute: dispute,
                        ..s.clone()
                    };
                    records.push(served.record("served", now.clone(), &json(&s)?));
                    BatchItem {
                        merchant_id: id.clone(),
                        status: "served".into(),
                        score: Some(s),
                        detail: None,
                    }
                }
                Err(ApiError::NotFound(d)) => BatchItem {
                    merchant_id: id.clone(),
                    status: "not_found".into(),
                    score: None,
                    detail: Some(d),
                },
                Err(err) => BatchItem {
                    merchant_id: id.clone(),
                    status: "unscorable".into(),
                    score: None,
                    detail: Some(err.to_string()),
                },
            },
        };
        results.push(item);
    }
    let served = records.iter().filter(|r| r.outcome == "served").count() as u64;
    let refused = records.len() as u64 - served;
    let shown = shown_in(&records);
    st.db.log_many(records).await?;
    remember(&st, shown)?;
    st.metrics.logged("served", served);
    st.metrics.logged("refused", refused);
    Ok(respond(StatusCode::OK, json(&BatchView { results })?))
}

/// Alerts for one merchant.
#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantAlerts {
    /// Merchant.
    pub merchant_id: String,
    /// Grade now.
    pub grade: String,
    /// Grade the lender was last shown, if any.
    pub last_grade: Option<String>,
    /// Alerts (code, texts, value, threshold).
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<yuanxin_decision::Alert>,
}

/// Which consents the alerts cover.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Consent purpose (default post_loan).
    #[serde(default = "post_loan")]
    pub purpose: String,
}

fn post_loan() -> String {
    "post_loan".into()
}

#[utoipa::path(get, path = "/v1/alerts", tag = "lender",
    params(AlertQuery),
    security(("api_key" = [])),
    responses((status = 200, body = Vec<MerchantAlerts>, description = "Merchants with at least one alert, among those whose consent for the purpose is in force; each is logged")))]
async fn lender_alerts(
    State(st): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<AlertQuery>,
) -> Result<Response, ApiError> {
    role(&p, &["lender"])?;
    check_purpose(&q.purpose)?;
    let e = st.engine()?;
    let now = (st.now)();
    let (lender, purpose, at) = (p.name.clone(), q.purpose.clone(), now.clone());
    let watched = st
        .db
        .call(move |s| {
            s.consenting(&lender, &purpose, &at)?
                .into_iter()
                .map(|(m, c)| {
                    let last = s.last_seen(&lender, &m)?;
                    Ok((m, c, last))
                })
                .collect::<Result<Vec<_>, ApiError>>()
        })
        .await?;
    let mut out = Vec::new();
    let mut records = Vec::new();
    for (id, consent, last) in watched {
        let Ok(alerts) = e.alerts(&id, last.as_ref()) else {
            continue;
        };
        if alerts.is_empty() {
            continue;
        }
        let served = Served {
            consent: Some(consent),
            write_shown: true,
            ..Served::new(&p, &e, &id, "alerts", &q.purpose)
        };
        let item = MerchantAlerts {
            merchant_id: id.clone(),
            grade: served.shown.map(|s| s.0.to_owned()).unwrap_or_default(),
            last_grade: last.map(|l| l.grade),
            alerts,
        };
        records.push(served.record("served", now.clone(), &json(&item)?));
        out.push(item);
    }
    let n = records.len() as u64;
    let shown = shown_in(&records);
    st.db.log_many(records).await?;
    remember(&st, shown)?;
    st.metrics.logged("served", n);
    Ok(respond(StatusCode::OK, json(&out)?))
}

// ---------------------------------------------------------------------------------------
// Merchants.

#[utoipa::path(get, path = "/v1/me/score", tag = "merchant",
    security(("api_key" = [])),
    responses((status = 200, body = ScoreView)))]
async fn my_score(State(st): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    let me = own(&p)?;
    let e = st.engine()?;
    let body = e.score(&me)?.json(st.authz.has_open_dispute(&me)?)?;
    Ok(respond(StatusCode::OK, body))
}

#[utoipa::path(get, path = "/v1/me/profile", tag = "merchant",
    security(("api_key" = [])),
    responses((status = 200, body = ProfileView)))]
async fn my_profile(State(st): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    let me = own(&p)?;
    Ok(respond(StatusCode::OK, json(&st.engine()?.profile(&me)?)?))
}

/// A merchant's own eligibility question.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MyEligibility {
    /// Amount, yuan.
    #[param(value_type = String)]
    pub amount: Decimal,
    /// Term, months.
    pub term_months: u32,
    /// Loan purpose (default working_capital).
    #[serde(default = "working_capital")]
    pub loan_purpose: String,
}

fn working_capital() -> String {
    "working_capital".into()
}

#[utoipa::path(get, path = "/v1/me/eligibility", tag = "merchant",
    params(MyEligibility),
    security(("api_key" = [])),
    responses((status = 200, body = yuanxin_decision::Decision, description = "The decision across products, with improvement hints")))]
async fn my_eligibility(
    State(st): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<MyEligibility>,
) -> Result<Response, ApiError> {
    let me = own(&p)?;
    let e = st.engine()?;
    let d = e.decide(&me, q.amount, q.term_months, &q.loan_purpose, None)?;
    Ok(respond(StatusCode::OK, json(&d)?))
}

#[utoipa::path(get, path = "/v1/me/queries", tag = "merchant",
    security(("api_key" = [])),
    responses((status = 200, body = Vec<LogEntry>, description = "Every query about me, served or refused")))]
async fn my_queries(State(st): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    let me = own(&p)?;
    let entries = st.db.call(move |s| s.entries(Some(&me))).await?;
    Ok(respond(StatusCode::OK, json(&entries)?))
}

/// A consent grant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// Lender institution (as named on its key).
    pub lender: String,
    /// pre_loan or post_loan.
    pub purpose: String,
    /// Days it lasts (1–366).
    pub days: u32,
}

fn plus_days(now: &str, days: i64) -> Result<String, ApiError> {
    Ok(chrono::DateTime::parse_from_rfc3339(now)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .checked_add_signed(chrono::Duration::days(days))
        .ok_or_else(|| ApiError::BadRequest("date out of range".into()))?
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
}

#[utoipa::path(post, path = "/v1/me/consents", tag = "merchant",
    request_body = GrantBody,
    security(("api_key" = [])),
    responses((status = 201, body = Consent), (status = 400, body = Problem)))]
async fn grant(
    State(st): State<AppState>,
    Caller(p): Caller,
    Body(b): Body<GrantBody>,
) -> Result<Response, ApiError> {
    let me = own(&p)?;
    check_purpose(&b.purpose)?;
    if !(1..=366).contains(&b.days) || b.lender.trim().is_empty() || b.lender.len() > 200 {
        return Err(ApiError::BadRequest(
            "days must be 1–366 and the lender named (up to 200 bytes)".into(),
        ));
    }
    let now = (st.now)();
    let expires = plus_days(&now, i64::from(b.days))?;
    let c = st
        .db
        .call(move |s| s.grant(&me, &b.lender, &b.purpose, &now, &expires))
        .await?;
    st.authz.granted(&c)?;
    Ok(respond(StatusCode::CREATED, json(&c)?))
}

#[utoipa::path(get, path = "/v1/me/consents", tag = "merchant",
    security(("api_key" = [])),
    responses((status = 200, body = Vec<Consent>)))]
async fn my_consents(State(st): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    let me = own(&p)?;
    let c = st.db.call(move |s| s.consents(&me)).await?;
    Ok(respond(StatusCode::OK, json(&c)?))
}

#[utoipa::path(delete, path = "/v1/me/consents/{id}", tag = "merchant",
    params(("id" = i64, Path, description = "Consent id")),
    security(("api_key" = [])),
    responses((status = 204, description = "Revoked"), (status = 404, body = Problem, description = "No active consent of yours with that id")))]
async fn revoke(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let me = own(&p)?;
    let now = (st.now)();
    let merchant = me.clone();
    if st.db.call(move |s| s.revoke_consent(&me, id, &now)).await? {
        st.authz.revoked(&merchant, id)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "no active consent {id} of yours"
        )))
    }
}

/// A dispute to open.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisputeBody {
    /// What is disputed (a characteristic, a reason code, a query).
    pub subject: String,
    /// Why.
    pub detail: String,
}

/// Days the platform has to answer an objection (征信业管理条例 art. 25).
const DISPUTE_DAYS: i64 = 20;

#[utoipa::path(post, path = "/v1/me/disputes", tag = "merchant",
    request_body = DisputeBody,
    security(("api_key" = [])),
    responses((status = 201, body = Dispute), (status = 400, body = Problem)))]
async fn open_dispute(
    State(st): State<AppState>,
    Caller(p): Caller,
    Body(b): Body<DisputeBody>,
) -> Result<Response, ApiError> {
    let me = own(&p)?;
    if b.subject.trim().is_empty() || b.subject.len() > 200 || b.detail.len() > 4000 {
        return Err(ApiError::BadRequest(
            "a subject (up to 200 bytes) and a detail (up to 4000) are needed".into(),
        ));
    }
    let now = (st.now)();
    let deadline = plus_days(&now, DISPUTE_DAYS)?;
    let d = st
        .db
        .call(move |s| s.open_dispute(&me, &b.subject, &b.detail, &now, &deadline))
        .await?;
    st.authz.dispute(&d.merchant_id, true)?;
    Ok(respond(StatusCode::CREATED, json(&d)?))
}

#[utoipa::path(get, path = "/v1/me/disputes", tag = "merchant",
    security(("api_key" = [])),
    responses((status = 200, body = Vec<Dispute>)))]
async fn my_disputes(State(st): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    let me = own(&p)?;
    let now = (st.now)();
    let d = st.db.call(move |s| s.disputes(Some(&me), &now)).await?;
    Ok(respond(StatusCode::OK, json(&d)?))
}

// ---------------------------------------------------------------------------------------
// Analysts.

/// Which disputes to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DisputeFilter {
    /// Only the open ones past their deadline.
    #[serde(default)]
    pub overdue: bool,
}

#[utoipa::path(get, path = "/v1/disputes", tag = "analyst",
    params(DisputeFilter),
    security(("api_key" = [])),
    responses((status = 200, body = Vec<Dispute>)))]
async fn all_disputes(
    State(st): State<AppState>,
    Caller(p): Caller,
    Query(f): Query<DisputeFilter>,
) -> Result<Response, ApiError> {
    role(&p, &["analyst", "admin"])?;
    let now = (st.now)();
    let mut all = st.db.call(move |s| s.disputes(None, &now)).await?;
    if f.overdue {
        all.retain(|d| d.overdue);
    }
    Ok(respond(StatusCode::OK, json(&all)?))
}

/// The platform's answer to a dispute.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// The answer.
    pub answer: String,
}

#[utoipa::path(post, path = "/v1/disputes/{id}/answer", tag = "analyst",
    params(("id" = i64, Path, description = "Dispute id")),
    request_body = AnswerBody,
    security(("api_key" = [])),
    responses((status = 204, description = "Answered"), (status = 404, body = Problem)))]
async fn answer_dispute(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<i64>,
    Body(b): Body<AnswerBody>,
) -> Result<Response, ApiError> {
    role(&p, &["analyst", "admin"])?;
    if b.answer.trim().is_empty() || b.answer.len() > 4000 {
        return Err(ApiError::BadRequest(
            "an answer (up to 4000 bytes) is needed".into(),
        ));
    }
    let now = (st.now)();
    match st
        .db
        .call(move |s| s.answer_dispute(id, &b.answer, &now))
        .await?
    {
        Some(merchant) => {
            st.authz.dispute(&merchant, false)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(ApiError::NotFound(format!("no open dispute {id}"))),
    }
}

#[utoipa::path(get, path = "/v1/models", tag = "analyst",
    security(("api_key" = [])),
    responses((status = 200, description = "The registry: champion, challengers, their metrics, and files that fail validation")))]
async fn models(State(st): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    role(&p, &["analyst", "admin"])?;
    let e = st.engine()?;
    let m = tokio::task::spawn_blocking(move || e.models())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(respond(StatusCode::OK, json(&m)?))
}

#[utoipa::path(get, path = "/v1/models/stability", tag = "analyst",
    security(("api_key" = [])),
    responses((status = 200, body = StabilityView), (status = 404, body = Problem, description = "The model carries no training baseline")))]
async fn stability(State(st): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    role(&p, &["analyst", "admin"])?;
    Ok(respond(StatusCode::OK, json(&st.engine()?.stability()?)?))
}

#[utoipa::path(post, path = "/v1/admin/reload", tag = "analyst",
    security(("api_key" = [])),
    responses((status = 200, description = "The engine now serving"), (status = 503, body = Problem, description = "The new files cannot serve; the old engine keeps serving")))]
async fn reload(State(st): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    role(&p, &["analyst", "admin"])?;
    let fresh = ops::reload(&st).await?;
    let body = serde_json::json!({"model": fresh.model_id(), "profiles": fresh.merchants(), "as_of": fresh.as_of()});
    Ok(respond(StatusCode::OK, json(&body)?))
}

/// A model to promote.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// Model id (or file name) in the registry.
    pub id: String,
}

#[utoipa::path(post, path = "/v1/admin/promote", tag = "analyst",
    request_body = PromoteBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Serving the promoted model"), (status = 400, body = Problem, description = "Refused; the champion keeps serving")))]
async fn promote(
    State(st): State<AppState>,
    Caller(p): Caller,
    Body(b): Body<PromoteBody>,
) -> Result<Response, ApiError> {
    role(&p, &["analyst", "admin"])?;
    let current = st.engine()?;
    let files = st.files.clone();
    let previous = current.model_id().to_owned();
    let id = b.id.clone();
    // Validate and register, then build the new engine; if it cannot serve, the registry
    // goes back to the old champion and the old engine keeps serving.
    let fresh = tokio::task::spawn_blocking(move || -> Result<Engine, ApiError> {
        let registry = yuanxin_model::registry::Registry::new(&files.models);
        registry
            .promote(&id, false)
            .map_err(|e| ApiError::BadRequest(format!("cannot promote {id}: {e}")))?;
        Engine::load(&files).inspect_err(|_| {
            let _ = registry.promote(&previous, false);
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    st.metrics.reloaded(true);
    let fresh = st.swap(fresh)?;
    let body = serde_json::json!({"serving": fresh.model_id(), "previous": current.model_id()});
    Ok(respond(StatusCode::OK, json(&body)?))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("yx_<key id>_<secret>")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Yuanxin (元信) loan-eligibility API",
        description = "Credit scores, PDs, grades, reasons and loan decisions for prepaid merchants under e-CNY escrow, with merchants' consent and a hash-chained query log. Errors are RFC 9457 problem+json."),
    modifiers(&BearerKeys),
    tags((name = "lender", description = "Banks: scores and decisions under the merchant's consent; every query is logged"),
        (name = "merchant", description = "A merchant's own score, profile, eligibility, consents, queries and disputes"),
        (name = "analyst", description = "The credit platform: models, stability, reloads, disputes"),
        (name = "operations", description = "Health, readiness, metrics and this document")),
    components(schemas(Problem))
)]
struct ApiDoc;

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(lender_score))
        .routes(routes!(lender_eligibility))
        .routes(routes!(batch_score))
        .routes(routes!(lender_alerts))
        .routes(routes!(my_score))
        .routes(routes!(my_profile))
        .routes(routes!(my_eligibility))
        .routes(routes!(my_queries))
        .routes(routes!(my_consents, grant))
        .routes(routes!(revoke))
        .routes(routes!(my_disputes, open_dispute))
        .routes(routes!(all_disputes))
        .routes(routes!(answer_dispute))
        .routes(routes!(models))
        .routes(routes!(stability))
        .routes(routes!(reload))
        .routes(routes!(promote))
}

/// The OpenAPI document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// The router with every layer: body limit, then (outermost) the observing layer with the
/// request log, metrics, concurrency limit and timeout.
pub fn router(state: AppState) -> axum::Router {
    let (router, _) = api().split_for_parts();
    router
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::observe,
        ))
        .with_state(state)
}
