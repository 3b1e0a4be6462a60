//! The credit platform's analysts: the models, population stability, reloads, promotions,
//! and the platform's side of disputes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use yuanxin_model::registry::{Promotion, Registry};
use yuanxin_model::ModelError;
use yuanxin_store::Disputes as _;
use yuanxin_store::{DisputeFilter, DisputeId, PageRequest};

use super::lender::limit;
use super::merchant::number_cursor;
use super::{cursor, json_bytes, respond, StaffCaller};
use crate::engine::StabilityView;
use crate::input::{path_number, Fields, FromFields, Json, NoQuery, Path, Query};
use crate::problem::{ApiError, Code};
use crate::views::DisputePage;
use crate::views::DisputeView;
use crate::{watch, AppState, Engine};

/// Which disputes to list.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DisputeQuery {
    /// Only the open ones past their deadline.
    pub overdue: Option<bool>,
    /// Items per page (1–500, default 50).
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// The checked query.
#[derive(Debug)]
pub struct Disputes {
    overdue: bool,
    page: PageRequest<DisputeId>,
}

impl FromFields for Disputes {
    const FIELDS: &'static [&'static str] = &["overdue", "limit", "cursor"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(Disputes {
            overdue: f.boolean("overdue")?.unwrap_or(false),
            page: PageRequest {
                limit: limit(f)?,
                cursor: number_cursor(f)?,
            },
        })
    }
}

#[utoipa::path(get, path = "/v1/disputes", tag = "analyst",
    params(DisputeQuery),
    security(("api_key" = [])),
    responses((status = 200, body = DisputePage)))]
pub(super) async fn all_disputes(
    State(st): State<AppState>,
    _: StaffCaller,
    Query(q): Query<Disputes>,
) -> Result<Response, ApiError> {
    let now = (st.now)();
    let filter = if q.overdue {
        DisputeFilter::OverdueAt(now)
    } else {
        DisputeFilter::All
    };
    let p = st
        .db
        .read_long(move |s| Ok(s.disputes(filter, q.page)?))
        .await?;
    let body = DisputePage {
        items: p.items.iter().map(|d| DisputeView::of(d, now)).collect(),
        next_cursor: cursor(p.next),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}

/// The platform's answer to a dispute.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct AnswerBody {
    /// The answer: 1–4,000 characters.
    pub answer: String,
}

/// The checked answer.
#[derive(Debug)]
pub struct Answer(String);

impl FromFields for Answer {
    const FIELDS: &'static [&'static str] = &["answer"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(Answer(Fields::required(f.text("answer", 4000)?, "answer")?))
    }
}

#[utoipa::path(post, path = "/v1/disputes/{id}/answer", tag = "analyst",
    params(("id" = i64, Path, description = "Dispute id")),
    request_body = AnswerBody,
    security(("api_key" = [])),
    responses((status = 204, description = "Answered")))]
pub(super) async fn answer_dispute(
    State(st): State<AppState>,
    _: StaffCaller,
    Path(id): Path<String>,
    Json(Answer(answer), _): Json<Answer>,
) -> Result<Response, ApiError> {
    let id = DisputeId(path_number("id", &id, 1)?);
    let now = (st.now)();
    match st
        .db
        .write(move |s, _| Ok(s.answer_dispute(id, &answer, now)?))
        .await?
    {
        Some(merchant) => {
            st.authz.dispute(&merchant, false)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(ApiError::new(
            Code::NotFound,
            format!("no open dispute {id}"),
        )),
    }
}

#[utoipa::path(get, path = "/v1/models", tag = "analyst",
    security(("api_key" = [])),
    responses((status = 200, body = Object, description = "The registry: champion, challengers, their metrics, and files that fail validation")))]
pub(super) async fn models(
    State(st): State<AppState>,
    _: StaffCaller,
    Query(NoQuery): Query<NoQuery>,
) -> Result<Response, ApiError> {
    let e = st.engine()?;
    let m = tokio::task::spawn_blocking(move || e.models())
        .await
        .map_err(ApiError::internal)??;
    Ok(respond(StatusCode::OK, json_bytes(&m)?))
}

#[utoipa::path(get, path = "/v1/models/stability", tag = "analyst",
    security(("api_key" = [])),
    responses((status = 200, body = StabilityView)))]
pub(super) async fn stability(
    State(st): State<AppState>,
    _: StaffCaller,
    Query(NoQuery): Query<NoQuery>,
) -> Result<Response, ApiError> {
    Ok(respond(
        StatusCode::OK,
        json_bytes(&st.engine()?.stability()?)?,
    ))
}

/// The engine serving after a reload.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// The model serving.
    pub model: String,
    /// Merchants with a profile.
    pub profiles: usize,
    /// Latest profile date.
    pub as_of: Option<chrono::NaiveDate>,
}

#[utoipa::path(post, path = "/v1/admin/reload", tag = "analyst",
    security(("api_key" = [])),
    responses((status = 200, body = Reloaded, description = "The engine now serving; if the files cannot serve, 503 and the old engine keeps serving")))]
pub(super) async fn reload(
    State(st): State<AppState>,
    _: StaffCaller,
    Query(NoQuery): Query<NoQuery>,
) -> Result<Response, ApiError> {
    let fresh = watch::reload(&st).await?;
    let body = Reloaded {
        model: fresh.model_id().to_owned(),
        profiles: fresh.merchants(),
        as_of: fresh.as_of(),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}

/// A model to promote.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct PromoteBody {
    /// Model id or file name in the registry.
    pub id: String,
}

/// The checked request.
#[derive(Debug)]
pub struct Promote(String);

impl FromFields for Promote {
    const FIELDS: &'static [&'static str] = &["id"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(Promote(Fields::required(f.id("id")?, "id")?))
    }
}

/// The result of a promotion.
#[derive(Debug, Serialize, ToSchema)]
pub struct Promoted {
    /// The model serving now.
    pub serving: String,
    /// The model that served before.
    pub previous: String,
}

#[utoipa::path(post, path = "/v1/admin/promote", tag = "analyst",
    request_body = PromoteBody,
    security(("api_key" = [])),
    responses((status = 200, body = Promoted, description = "Serving the promoted model; a refused model (404 unknown, 422 invalid) leaves the champion serving")))]
pub(super) async fn promote(
    State(st): State<AppState>,
    caller: StaffCaller,
    Json(Promote(id), _): Json<Promote>,
) -> Result<Response, ApiError> {
    let by = caller.0.principal.code.clone();
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // One change of engine at a time: the registry and the serving engine change together.
    let _change = st.engine_change.lock().await;
    let current = st.engine()?;
    let files = st.files.clone();
    let previous = current.model_id().to_owned();
    // Validate and register, then build the new engine; if it cannot serve, the registry
    // goes back to the old champion and the old engine keeps serving. A failed rollback is
    // reported, never ignored.
    let fresh = tokio::task::spawn_blocking(move || -> Result<Engine, ApiError> {
        let registry = Registry::new(&files.models);
        // The service has no out-of-time data to gate on; `yuanxin models promote --data`
        // does. The history says which way a model came in.
        let record = |why: String| Promotion::new(at.clone(), by.clone(), why);
        registry
            .promote(&id, false, record("promoted through the service (ungated)".into()))
            .map_err(|e| match e {
            ModelError::NotInRegistry { .. } => {
                ApiError::new(Code::UnknownModel, e.to_string()).at("id")
            }
            ModelError::Io(..) => ApiError::internal(e),
            other => ApiError::new(Code::InvalidModel, format!("cannot promote {id}: {other}"))
                .at("id"),
        })?;
        Engine::load(&files).map_err(|load| match registry.promote(
            &previous,
            false,
            record(format!("restored: {id} could not serve ({load})")),
        ) {
            Ok(_) => ApiError::new(
                Code::InvalidModel,
                format!("{id} cannot serve ({load}); {previous} stays champion"),
            ),
            Err(rollback) => ApiError::internal(format!(
                "{id} cannot serve ({load}) and the registry could not be set back to {previous} ({rollback}); the old engine keeps serving but the registry names {id}"
            )),
        })
    })
    .await
    .map_err(ApiError::internal)??;
    st.metrics.reloaded(true);
    let fresh = st.swap(fresh).await?;
    let body = Promoted {
        serving: fresh.model_id().to_owned(),
        previous: current.model_id().to_owned(),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}
