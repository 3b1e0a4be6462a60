//! The loan-eligibility service: an axum HTTP API over the engine (champion model, latest
//! profiles, policy, catalogue) with API keys per principal, merchants' consents, and a
//! hash-chained query log in SQLite written before any score or decision leaves.
//!
//! Handlers are thin: authenticate, check the role and consent, call one engine function,
//! log, respond. Every error is RFC 9457 problem+json, including the ones axum produces
//! itself (405, 413, …), which a last layer rewrites. The engine sits behind a lock holding
//! an `Arc`, so a reload swaps it atomically: requests in flight keep the engine they
//! started with. The OpenAPI 3.1 document is generated from the handlers' annotations and
//! served at `/openapi.json`.

mod authz;
mod config;
mod db;
mod engine;
mod ops;
mod routes;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub use authz::Authz;
pub use config::ServiceConfig;
pub use db::Db;
pub use engine::{Engine, EngineFiles};
pub use ops::{build_latest_profiles, Metrics};
pub use store::{Consent, Dispute, LogEntry, LogRecord, Principal, Seen, Store, StoredKey};

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
    /// 429, with the seconds after which a retry will be accepted.
    #[error("rate limit of this API key exceeded; retry after {0} s")]
    TooManyRequests(u64),
    /// 503 because the service is at its concurrency limit or a request took too long.
    #[error("{0}")]
    Overloaded(String),
    /// 503 because the engine or database is not ready.
    #[error("{0}")]
    Unavailable(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    r#type: String,
    /// Short summary of the kind.
    title: String,
    /// HTTP status.
    status: u16,
    /// What went wrong in this case.
    detail: String,
}

/// Renders a problem+json response.
fn problem(status: StatusCode, slug: &str, detail: String, retry_after: Option<u64>) -> Response {
    let body = Problem {
        r#type: format!("https://yuanxin.example/problems/{slug}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = (
        status,
        [("content-type", "application/problem+json")],
        bytes,
    )
        .into_response();
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(s.max(1)));
    }
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, retry) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", None),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", None),
            ApiError::TooManyRequests(s) => {
                (StatusCode::TOO_MANY_REQUESTS, "rate-limited", Some(*s))
            }
            ApiError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", Some(1)),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "not-ready", Some(5)),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        };
        if let ApiError::Internal(why) = &self {
            tracing::error!(target: "yuanxin::http", error = %why, "internal error");
        }
        let mut r = problem(status, slug, self.to_string(), retry);
        if matches!(self, ApiError::Unauthorized) {
            r.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        r
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

/// Query strings whose rejections become 400 problem+json.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e: QueryRejection| ApiError::BadRequest(e.body_text()))
    }
}

/// Path parameters whose rejections become 400 problem+json.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e: PathRejection| ApiError::BadRequest(e.body_text()))
    }
}

/// Shared state: one `Arc`, so the per-request clones axum makes of it are one atomic
/// increment each.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Shared {
    /// The engine, swapped atomically on reload; `None` until one has loaded.
    pub engine: Arc<RwLock<Option<Arc<Engine>>>>,
    /// Where the engine loads from.
    pub files: EngineFiles,
    /// The database.
    pub db: Db,
    /// Keys, consents and open disputes, in memory.
    pub authz: Arc<Authz>,
    /// Settings.
    pub config: Arc<ServiceConfig>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Per-key rate limits.
    pub limiter: Arc<ops::RateLimiter>,
    /// What lenders were last shown, as the database holds it.
    pub seen: Arc<ops::SeenCache>,
    /// Requests in flight, bounded by the configuration.
    pub concurrency: Arc<tokio::sync::Semaphore>,
    /// The OpenAPI document, serialised once.
    pub openapi: Arc<String>,
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
    /// State for a configuration, with the engine given (or not yet loaded).
    pub fn new(
        config: ServiceConfig,
        files: EngineFiles,
        engine: Option<Engine>,
        db: Db,
    ) -> Result<AppState, ApiError> {
        config.check()?;
        let metrics = Arc::new(Metrics::new());
        if let Some(e) = &engine {
            metrics.engine_loaded(e);
        }
        let openapi = serde_json::to_string_pretty(&routes::openapi())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let authz = Arc::new(db.blocking(Authz::load)?);
        Ok(AppState(Arc::new(Shared {
            engine: Arc::new(RwLock::new(engine.map(Arc::new))),
            files,
            db,
            authz,
            limiter: Arc::new(ops::RateLimiter::new(
                config.rate_per_second,
                config.rate_burst,
            )),
            seen: Arc::new(ops::SeenCache::default()),
            concurrency: Arc::new(tokio::sync::Semaphore::new(config.max_concurrency)),
            config: Arc::new(config),
            metrics,
            openapi: Arc::new(openapi),
            now: now_shanghai,
        })))
    }

    /// The engine serving now.
    pub fn engine(&self) -> Result<Arc<Engine>, ApiError> {
        self.engine
            .read()
            .map_err(|_| ApiError::Internal("engine lock poisoned".into()))?
            .clone()
            .ok_or_else(|| ApiError::Unavailable("the engine is not loaded yet".into()))
    }

    /// Swaps in a new engine; requests in flight finish on the one they hold.
    pub fn swap(&self, fresh: Engine) -> Result<Arc<Engine>, ApiError> {
        let fresh = Arc::new(fresh);
        self.metrics.engine_loaded(&fresh);
        *self
            .engine
            .write()
            .map_err(|_| ApiError::Internal("engine lock poisoned".into()))? =
            Some(Arc::clone(&fresh));
        Ok(fresh)
    }
}

/// The key id of the caller, filled in by authentication for the request log.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallerSlot(Arc<OnceLock<String>>);

/// The router with every layer.
pub fn router(state: AppState) -> axum::Router {
    routes::router(state)
}

/// Serves until Ctrl-C or SIGTERM, draining requests in flight; watches the engine's files
/// for changes when configured to.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> Result<(), ApiError> {
    tokio::spawn(ops::refresh_keys(state.clone()));
    if state.config.watch_seconds > 0 {
        tokio::spawn(ops::watch(
            state.clone(),
            Duration::from_secs(state.config.watch_seconds),
        ));
    }
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(ops::shutdown_signal())
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))
}
