//! Operations: liveness, readiness, metrics, the OpenAPI document.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, Code};
use crate::AppState;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health, description = "The process is up")))]
pub(super) async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
    })
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
    /// Entries in the query log (its latest signed head).
    pub log_entries: u64,
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Ready)))]
pub(super) async fn readyz(State(st): State<AppState>) -> Result<axum::Json<Ready>, ApiError> {
    let e = st.engine()?;
    st.db
        .read(|s| Ok(s.ping()?))
        .map_err(|e| ApiError::unavailable(format!("database: {e}")))?;
    Ok(axum::Json(Ready {
        status: "ready".into(),
        model: e.model_id().to_owned(),
        profiles: e.merchants(),
        as_of: e.as_of(),
        log_entries: st.db.head()?.tree_size,
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "application/openmetrics-text", body = String)))]
pub(super) async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
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
    responses((status = 200, description = "This document", body = Object)))]
pub(super) async fn openapi_json(State(st): State<AppState>) -> Result<Response, ApiError> {
    Ok((
        [("content-type", "application/json")],
        st.openapi()?.as_str().to_owned(),
    )
        .into_response())
}

pub(super) async fn no_route() -> ApiError {
    ApiError::new(Code::NoRoute, "no such route")
}
