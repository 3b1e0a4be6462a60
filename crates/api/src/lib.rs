//! The loan-eligibility service: an axum HTTP API over the engine (champion model, latest
//! profiles, policy, catalogue) with API keys per principal, merchants' consents, and the
//! query log (a signed Merkle tree, in the store) written before any score or decision
//! leaves.
//!
//! Handlers are thin: authenticate, check the role, read and check the input, check the
//! consent, call one engine function, log, respond with the log's receipt. Every error is
//! an RFC 9457 problem with a stable code ([`problem`]), including the ones axum and hyper
//! produce themselves (404, 405, 413, 414, 415, 431), which the outer layer rewrites. The
//! engine sits behind a lock holding an `Arc`, so a reload swaps it atomically: requests in
//! flight keep the engine they started with. The OpenAPI 3.1 document is generated from
//! the handlers' annotations, its bounds patched from the loaded catalogue.

mod authz;
mod config;
mod db;
mod engine;
mod input;
mod layers;
mod limits;
mod metrics;
mod pages;
pub mod problem;
mod routes;
pub mod sessions;
mod views;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use yuanxin_store::prelude::*;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use authz::{Authenticated, Authz};
pub use config::ServiceConfig;
pub use db::{open_store, Db, LogFiles};
pub use engine::{Bounds, Engine, EngineFiles};
pub use metrics::Metrics;
pub use problem::{ApiError, Code};
pub use watch::build_latest_profiles;

/// Bodies larger than this are refused (413).
pub const BODY_LIMIT: usize = 64 * 1024;

/// BLAKE3 of a response body (hex), as the log keeps it.
pub fn digest(body: &[u8]) -> String {
    blake3::hash(body).to_hex().to_string()
}

/// What a loan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoanPurpose {
    /// Working capital.
    WorkingCapital,
    /// Equipment.
    Equipment,
    /// Renovation.
    Renovation,
    /// Opening stores.
    Expansion,
}

impl LoanPurpose {
    /// The name the catalogue uses.
    pub fn as_str(self) -> &'static str {
        match self {
            LoanPurpose::WorkingCapital => "working_capital",
            LoanPurpose::Equipment => "equipment",
            LoanPurpose::Renovation => "renovation",
            LoanPurpose::Expansion => "expansion",
        }
    }
}

impl input::Choice for LoanPurpose {
    const NAMES: &'static [(&'static str, LoanPurpose)] = &[
        ("working_capital", LoanPurpose::WorkingCapital),
        ("equipment", LoanPurpose::Equipment),
        ("renovation", LoanPurpose::Renovation),
        ("expansion", LoanPurpose::Expansion),
    ];
}

/// What a merchant consents to a lender's queries for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentPurpose {
    /// Before a loan: the application.
    PreLoan,
    /// During a loan: monitoring.
    PostLoan,
}

impl From<ConsentPurpose> for yuanxin_store::Purpose {
    fn from(p: ConsentPurpose) -> yuanxin_store::Purpose {
        match p {
            ConsentPurpose::PreLoan => yuanxin_store::Purpose::PreLoan,
            ConsentPurpose::PostLoan => yuanxin_store::Purpose::PostLoan,
        }
    }
}

impl From<yuanxin_store::Purpose> for ConsentPurpose {
    fn from(p: yuanxin_store::Purpose) -> ConsentPurpose {
        match p {
            yuanxin_store::Purpose::PreLoan => ConsentPurpose::PreLoan,
            yuanxin_store::Purpose::PostLoan => ConsentPurpose::PostLoan,
            // Consents are stored only with a consent purpose (`Purpose::ALL`, checked when
            // read): a consent never holds supervision, the regulators' logged purpose.
            yuanxin_store::Purpose::Supervision => ConsentPurpose::PostLoan,
        }
    }
}

impl input::Choice for ConsentPurpose {
    const NAMES: &'static [(&'static str, ConsentPurpose)] = &[
        ("pre_loan", ConsentPurpose::PreLoan),
        ("post_loan", ConsentPurpose::PostLoan),
    ];
}

/// A principal's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    /// A lender institution.
    Lender,
    /// A merchant.
    Merchant,
    /// A credit-platform analyst.
    Analyst,
    /// A credit-platform administrator.
    Admin,
    /// A market regulator (code `CITY`, or a district's code for its district only).
    Regulator,
}

impl From<RoleName> for yuanxin_store::Role {
    fn from(r: RoleName) -> yuanxin_store::Role {
        match r {
            RoleName::Lender => yuanxin_store::Role::Lender,
            RoleName::Merchant => yuanxin_store::Role::Merchant,
            RoleName::Analyst => yuanxin_store::Role::Analyst,
            RoleName::Admin => yuanxin_store::Role::Admin,
            RoleName::Regulator => yuanxin_store::Role::Regulator,
        }
    }
}

impl From<yuanxin_store::Role> for RoleName {
    fn from(r: yuanxin_store::Role) -> RoleName {
        match r {
            yuanxin_store::Role::Lender => RoleName::Lender,
            yuanxin_store::Role::Merchant => RoleName::Merchant,
            yuanxin_store::Role::Analyst => RoleName::Analyst,
            yuanxin_store::Role::Admin => RoleName::Admin,
            yuanxin_store::Role::Regulator => RoleName::Regulator,
        }
    }
}

impl input::Choice for RoleName {
    const NAMES: &'static [(&'static str, RoleName)] = &[
        ("lender", RoleName::Lender),
        ("merchant", RoleName::Merchant),
        ("analyst", RoleName::Analyst),
        ("admin", RoleName::Admin),
        ("regulator", RoleName::Regulator),
    ];
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
    pub engine: RwLock<Option<Arc<Engine>>>,
    /// Held while the engine or the registry changes (reloads, promotions), so that the
    /// registry and the serving engine always change together.
    pub engine_change: tokio::sync::Mutex<()>,
    /// Where the engine loads from.
    pub files: EngineFiles,
    /// The database.
    pub db: Db,
    /// Keys, consents and open disputes, in memory.
    pub authz: Authz,
    /// Settings.
    pub config: ServiceConfig,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Rate limits.
    pub limits: limits::Limits,
    /// What lenders were last shown, as the database holds it.
    pub seen: watch::SeenCache,
    /// Requests in flight, bounded by the configuration.
    pub concurrency: Arc<tokio::sync::Semaphore>,
    /// The OpenAPI document for the serving engine's bounds, serialised.
    pub openapi: RwLock<Arc<String>>,
    /// Clock; a function so tests could fix it.
    pub now: fn() -> yuanxin_store::Timestamp,
    /// Web page sessions.
    pub sessions: sessions::Sessions,
    /// The regulators' monthly reports read lately.
    pub reports: routes::ReportCache,
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
            db.write_now(|s, _| {
                Ok(s.register_merchants(e.merchant_ids().map(String::as_str), (now)())?)
            })?;
        }
        let bounds = engine.as_ref().map_or(Bounds::UNLOADED, Engine::bounds);
        let openapi = routes::openapi_json(bounds, config.batch_max)?;
        let authz = db.read(|s| Authz::load(s, *db.secrets().api_key_secret()))?;
        let idle = std::time::Duration::from_secs(config.session_minutes * 60);
        let keys = if db.dialect() == yuanxin_store::Dialect::Postgres {
            limits::KeyLimits::Shared(limits::Leases::new(
                config.rate_per_second,
                config.rate_burst,
                "this API key",
            ))
        } else {
            limits::KeyLimits::Local(limits::Limiter::new(
                config.rate_per_second,
                config.rate_burst,
                "this API key",
            ))
        };
        Ok(AppState(Arc::new(Shared {
            engine: RwLock::new(engine.map(Arc::new)),
            engine_change: tokio::sync::Mutex::new(()),
            files,
            db,
            authz,
            limits: limits::Limits {
                keys,
                anonymous: limits::Limiter::new(
                    config.anonymous_rate_per_second,
                    config.anonymous_rate_burst,
                    "this address's unauthenticated requests",
                ),
            },
            seen: watch::SeenCache::default(),
            concurrency: Arc::new(tokio::sync::Semaphore::new(config.max_concurrency)),
            config,
            metrics,
            openapi: RwLock::new(Arc::new(openapi)),
            now,
            sessions: sessions::Sessions::new(idle),
            reports: routes::ReportCache::default(),
        })))
    }

    /// The engine serving now.
    pub fn engine(&self) -> Result<Arc<Engine>, ApiError> {
        self.engine
            .read()
            .map_err(|_| ApiError::internal("engine lock poisoned"))?
            .clone()
            .ok_or_else(|| ApiError::unavailable("the engine is not loaded yet"))
    }

    /// Swaps in a new engine (the caller holds `engine_change`); requests in flight finish
    /// on the one they hold. The merchants it has profiles for are registered first, so
    /// consents and keys can name them.
    pub async fn swap(&self, fresh: Engine) -> Result<Arc<Engine>, ApiError> {
        let fresh = Arc::new(fresh);
        let ids: Vec<String> = fresh.merchant_ids().cloned().collect();
        let at = (self.now)();
        self.db
            .write(move |s, _| Ok(s.register_merchants(ids.iter().map(String::as_str), at)?))
            .await?;
        let doc = routes::openapi_json(fresh.bounds(), self.config.batch_max)?;
        self.metrics.engine_loaded(&fresh);
        *self
            .engine
            .write()
            .map_err(|_| ApiError::internal("engine lock poisoned"))? = Some(Arc::clone(&fresh));
        *self
            .openapi
            .write()
            .map_err(|_| ApiError::internal("openapi lock poisoned"))? = Arc::new(doc);
        Ok(fresh)
    }

    /// The OpenAPI document.
    pub fn openapi(&self) -> Result<Arc<String>, ApiError> {
        self.openapi
            .read()
            .map(|d| Arc::clone(&d))
            .map_err(|_| ApiError::internal("openapi lock poisoned"))
    }

    /// The request bounds of the serving engine.
    pub fn bounds(&self) -> Bounds {
        self.engine().map_or(Bounds::UNLOADED, |e| e.bounds())
    }
}

/// Now, in Asia/Shanghai.
pub fn now() -> yuanxin_store::Timestamp {
    yuanxin_store::Timestamp::now()
}

/// The caller's key id (and whether it authenticated), filled in by authentication for the
/// request log.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallerSlot(Arc<OnceLock<(String, bool)>>);

/// The response id, a ULID: unique across restarts, sortable by time. Returned in
/// `x-request-id`, written in the request log and in every query-log entry the request
/// makes.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// The router with every layer.
pub fn router(state: AppState) -> axum::Router {
    routes::router(state)
}

/// Serves until Ctrl-C or SIGTERM, draining requests in flight, then writes a last
/// checkpoint; watches the engine's files for changes when configured to.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> Result<(), ApiError> {
    tokio::spawn(watch::forget_idle_clients(state.clone()));
    if state.config.watch_seconds > 0 {
        tokio::spawn(watch::watch(
            state.clone(),
            Duration::from_secs(state.config.watch_seconds),
        ));
    }
    axum::serve(
        listener,
        router(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(watch::shutdown_signal())
    .await
    .map_err(ApiError::internal)?;
    let head = state.db.checkpoint().await?;
    tracing::info!(target: "yuanxin::log", tree_size = head.tree_size, "last checkpoint written");
    Ok(())
}
