//! The loan-eligibility service: an axum HTTP API over the engine (champion model, latest
//! profiles, policy, catalogue) with API keys per principal, merchants' consents, and a
//! hash-chained query log in SQLite written before any score or decision leaves.
//!
//! Handlers are thin: authenticate, check the role and consent, call one engine function,
//! log, respond. Every error is RFC 9457 problem+json. The engine sits behind a lock
//! holding an `Arc`, so a reload swaps it atomically: requests in flight keep the engine
//! they started with.

mod engine;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use engine::{Engine, EngineFiles};
pub use store::{Consent, Dispute, LogEntry, Principal, Store};

/// Errors, each rendered as problem+json with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 401.
    #[error("a valid API key is required (Authorization: Bearer yx_…)")]
    Unauthorized,
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 503.
    #[error("{0}")]
    Unavailable(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Problem {
    r#type: String,
    title: &'static str,
    status: u16,
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, title, slug) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request", "bad-request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized", "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden", "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found", "not-found"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Not ready", "not-ready"),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "internal",
            ),
        };
        let body = Problem {
            r#type: format!("https://yuanxin.example/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        (
            status,
            [("content-type", "application/problem+json")],
            bytes,
        )
            .into_response()
    }
}

/// JSON bodies whose rejections (malformed JSON, unknown fields, wrong types) become
/// 400 problem+json.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::BadRequest(match e {
                JsonRejection::JsonDataError(e) => {
                    format!("the body does not match the schema: {}", e.body_text())
                }
                JsonRejection::JsonSyntaxError(e) => {
                    format!("the body is not valid JSON: {}", e.body_text())
                }
                other => other.body_text(),
            })),
        }
    }
}

/// Shared state.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine, swapped atomically on reload.
    pub engine: Arc<RwLock<Option<Arc<Engine>>>>,
    /// The database.
    pub store: Arc<Mutex<Store>>,
    /// Clock (RFC 3339, +08:00); a function so tests could fix it.
    pub now: fn() -> String,
}

/// Now, in Asia/Shanghai, RFC 3339.
pub fn now_shanghai() -> String {
    chrono::Utc::now()
        .with_timezone(&yuanxin_domain::shanghai())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

impl AppState {
    fn engine(&self) -> Result<Arc<Engine>, ApiError> {
        self.engine
            .read()
            .map_err(|_| ApiError::Internal("engine lock poisoned".into()))?
            .clone()
            .ok_or_else(|| ApiError::Unavailable("the engine is not loaded".into()))
    }

    fn store(&self) -> Result<std::sync::MutexGuard<'_, Store>, ApiError> {
        self.store
            .lock()
            .map_err(|_| ApiError::Internal("database lock poisoned".into()))
    }

    fn principal(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let key = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        self.store()?
            .authenticate(key.trim())?
            .ok_or(ApiError::Unauthorized)
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

/// Serialises, logs (before anything is sent) and returns the response. If the log write
/// fails, the request fails.
#[allow(clippy::too_many_arguments)]
fn logged<T: Serialize>(
    st: &AppState,
    p: &Principal,
    merchant: &str,
    action: &str,
    purpose: &str,
    consent: Option<i64>,
    model_id: &str,
    body: &T,
) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    st.store
        .lock()
        .map_err(|_| ApiError::Internal("database lock poisoned".into()))?
        .log(
            &(st.now)(),
            &p.key_id,
            merchant,
            action,
            purpose,
            consent,
            "served",
            model_id,
            &bytes,
        )?;
    Ok(([("content-type", "application/json")], bytes).into_response())
}

/// The lender's consent for this merchant and purpose, or 403 — and the refusal is logged.
fn consent_or_refuse(
    st: &AppState,
    p: &Principal,
    merchant: &str,
    action: &str,
    purpose: &str,
    model_id: &str,
) -> Result<i64, ApiError> {
    check_purpose(purpose)?;
    let now = (st.now)();
    let mut store = st.store()?;
    match store.valid_consent(merchant, &p.name, purpose, &now)? {
        Some(id) => Ok(id),
        None => {
            let detail = format!(
                "no valid {purpose} consent from merchant {merchant} to {}",
                p.name
            );
            store.log(
                &now,
                &p.key_id,
                merchant,
                action,
                purpose,
                None,
                "refused",
                model_id,
                detail.as_bytes(),
            )?;
            Err(ApiError::Forbidden(detail))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposeQuery {
    purpose: String,
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let e = st.engine()?;
    st.store()?.ping()?;
    Ok(axum::Json(
        serde_json::json!({"status": "ready", "model": e.model_id(), "profiles": e.merchants(), "as_of": e.as_of()}),
    ))
}

async fn lender_score(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PurposeQuery>,
) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    role(&p, &["lender"])?;
    let e = st.engine()?;
    let consent = consent_or_refuse(&st, &p, &id, "score", &q.purpose, e.model_id())?;
    let mut score = e.score(&id)?;
    score.open_dispute = st.store()?.has_open_dispute(&id)?;
    logged(
        &st,
        &p,
        &id,
        "score",
        &q.purpose,
        Some(consent),
        e.model_id(),
        &score,
    )
}

/// An eligibility request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EligibilityBody {
    /// Amount, yuan.
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

async fn lender_eligibility(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(b): Body<EligibilityBody>,
) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    role(&p, &["lender"])?;
    let e = st.engine()?;
    let consent = consent_or_refuse(&st, &p, &id, "eligibility", &b.purpose, e.model_id())?;
    let d = e.decide(
        &id,
        b.amount,
        b.term_months,
        &b.loan_purpose,
        b.product.clone(),
    )?;
    logged(
        &st,
        &p,
        &id,
        "eligibility",
        &b.purpose,
        Some(consent),
        e.model_id(),
        &d,
    )
}

fn own(p: &Principal) -> Result<String, ApiError> {
    role(p, &["merchant"])?;
    p.merchant_id
        .clone()
        .ok_or_else(|| ApiError::Forbidden("this key has no merchant".into()))
}

async fn my_score(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    let me = own(&p)?;
    let e = st.engine()?;
    let mut score = e.score(&me)?;
    score.open_dispute = st.store()?.has_open_dispute(&me)?;
    Ok(axum::Json(score).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MyEligibility {
    amount: Decimal,
    term_months: u32,
    #[serde(default = "working_capital")]
    loan_purpose: String,
}

fn working_capital() -> String {
    "working_capital".into()
}

async fn my_eligibility(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<MyEligibility>,
) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    let me = own(&p)?;
    let e = st.engine()?;
    Ok(axum::Json(e.decide(&me, q.amount, q.term_months, &q.loan_purpose, None)?).into_response())
}

async fn my_queries(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    let me = own(&p)?;
    let entries = st.store()?.entries(Some(&me))?;
    Ok(axum::Json(entries).into_response())
}

/// A consent grant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// Lender institution (as named on its key).
    pub lender: String,
    /// pre_loan or post_loan.
    pub purpose: String,
    /// Days it lasts (1–366).
    pub days: u32,
}

async fn grant(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(b): Body<GrantBody>,
) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    let me = own(&p)?;
    check_purpose(&b.purpose)?;
    if !(1..=366).contains(&b.days) || b.lender.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "days must be 1–366 and the lender named".into(),
        ));
    }
    let now = (st.now)();
    let expires = chrono::DateTime::parse_from_rfc3339(&now)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .checked_add_signed(chrono::Duration::days(i64::from(b.days)))
        .ok_or_else(|| ApiError::BadRequest("expiry out of range".into()))?
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let c = st
        .store()?
        .grant(&me, &b.lender, &b.purpose, &now, &expires)?;
    Ok((StatusCode::CREATED, axum::Json(c)).into_response())
}

async fn my_consents(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    let me = own(&p)?;
    Ok(axum::Json(st.store()?.consents(&me)?).into_response())
}

async fn revoke(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    let me = own(&p)?;
    if st.store()?.revoke_consent(&me, id, &(st.now)())? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "no active consent {id} of yours"
        )))
    }
}

/// A dispute to open.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisputeBody {
    /// What is disputed.
    pub subject: String,
    /// Why.
    pub detail: String,
}

/// Days the platform has to answer an objection (征信业管理条例 art. 25).
const DISPUTE_DAYS: i64 = 20;

fn plus_days(now: &str, days: i64) -> Result<String, ApiError> {
    Ok(chrono::DateTime::parse_from_rfc3339(now)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .checked_add_signed(chrono::Duration::days(days))
        .ok_or_else(|| ApiError::BadRequest("date out of range".into()))?
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
}

async fn open_dispute(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(b): Body<DisputeBody>,
) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    let me = own(&p)?;
    if b.subject.trim().is_empty() || b.subject.len() > 200 || b.detail.len() > 4000 {
        return Err(ApiError::BadRequest(
            "a subject (up to 200 bytes) and a detail (up to 4000) are needed".into(),
        ));
    }
    let now = (st.now)();
    let d = st.store()?.open_dispute(
        &me,
        &b.subject,
        &b.detail,
        &now,
        &plus_days(&now, DISPUTE_DAYS)?,
    )?;
    Ok((StatusCode::CREATED, axum::Json(d)).into_response())
}

async fn my_disputes(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    let me = own(&p)?;
    Ok(axum::Json(st.store()?.disputes(Some(&me), &(st.now)())?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisputeFilter {
    #[serde(default)]
    overdue: bool,
}

async fn all_disputes(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(f): Query<DisputeFilter>,
) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    role(&p, &["analyst", "admin"])?;
    let mut all = st.store()?.disputes(None, &(st.now)())?;
    if f.overdue {
        all.retain(|d| d.overdue);
    }
    Ok(axum::Json(all).into_response())
}

/// The platform's answer to a dispute.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// The answer.
    pub answer: String,
}

async fn answer_dispute(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Body(b): Body<AnswerBody>,
) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    role(&p, &["analyst", "admin"])?;
    if b.answer.trim().is_empty() {
        return Err(ApiError::BadRequest("an answer is needed".into()));
    }
    if st.store()?.answer_dispute(id, &b.answer, &(st.now)())? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("no open dispute {id}")))
    }
}

async fn models(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    role(&p, &["analyst", "admin"])?;
    let e = st.engine()?;
    Ok(axum::Json(e.models()?).into_response())
}

async fn reload(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    role(&p, &["analyst", "admin"])?;
    let current = st.engine()?;
    // Build the new engine off the request path's lock; a failure keeps the old one.
    let files = current.files().clone();
    let fresh = tokio::task::spawn_blocking(move || Engine::load(&files))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let body = serde_json::json!({"model": fresh.model_id(), "profiles": fresh.merchants(), "as_of": fresh.as_of()});
    *st.engine
        .write()
        .map_err(|_| ApiError::Internal("engine lock poisoned".into()))? = Some(Arc::new(fresh));
    Ok(axum::Json(body).into_response())
}

/// A model to promote.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// Model id (or file name) in the registry.
    pub id: String,
}

async fn promote(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(b): Body<PromoteBody>,
) -> Result<Response, ApiError> {
    let p = st.principal(&headers)?;
    role(&p, &["analyst", "admin"])?;
    let current = st.engine()?;
    let files = current.files().clone();
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
    let body = serde_json::json!({"serving": fresh.model_id(), "previous": current.model_id()});
    *st.engine
        .write()
        .map_err(|_| ApiError::Internal("engine lock poisoned".into()))? = Some(Arc::new(fresh));
    Ok(axum::Json(body).into_response())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/merchants/{id}/score", get(lender_score))
        .route("/v1/merchants/{id}/eligibility", post(lender_eligibility))
        .route("/v1/me/score", get(my_score))
        .route("/v1/me/eligibility", get(my_eligibility))
        .route("/v1/me/queries", get(my_queries))
        .route("/v1/me/consents", get(my_consents).post(grant))
        .route("/v1/me/consents/{id}", delete(revoke))
        .route("/v1/me/disputes", get(my_disputes).post(open_dispute))
        .route("/v1/disputes", get(all_disputes))
        .route("/v1/disputes/{id}/answer", post(answer_dispute))
        .route("/v1/models", get(models))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/admin/promote", post(promote))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// Serves until Ctrl-C, draining requests in flight.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> Result<(), ApiError> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))
}
