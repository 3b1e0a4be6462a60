//! Operations: the layers every request passes (request log, metrics, concurrency limit,
//! timeout, problem+json for axum's own errors), per-key rate limits, Prometheus metrics,
//! the watcher that reloads the engine when its files change, and shutdown signals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::{problem, ApiError, AppState, CallerSlot, Engine};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The service's metrics. Labels carry routes as templates (`/v1/merchants/{id}/score`),
/// never merchant ids or keys.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    in_flight_max: Gauge,
    inside: std::sync::atomic::AtomicI64,
    high: std::sync::atomic::AtomicI64,
    rejected: Family<OutcomeLabels, Counter>,
    log_entries: Family<OutcomeLabels, Counter>,
    reloads: Family<OutcomeLabels, Counter>,
    model: Family<ModelLabels, Gauge>,
    profiles: Gauge,
    next_id: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("yuanxin");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let in_flight = Gauge::default();
        let in_flight_max = Gauge::default();
        let rejected = Family::<OutcomeLabels, Counter>::default();
        let log_entries = Family::<OutcomeLabels, Counter>::default();
        let reloads = Family::<OutcomeLabels, Counter>::default();
        let model = Family::<ModelLabels, Gauge>::default();
        let profiles = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by route template",
            latency.clone(),
        );
        registry.register(
            "http_in_flight",
            "Requests being handled now",
            in_flight.clone(),
        );
        registry.register(
            "http_in_flight_max",
            "Most requests ever inside the handlers at once (never above max_concurrency)",
            in_flight_max.clone(),
        );
        registry.register(
            "http_rejected",
            "Requests turned away before a handler: overloaded, timeout, rate_limited",
            rejected.clone(),
        );
        registry.register(
            "query_log_entries",
            "Query-log entries committed, by outcome (served, refused)",
            log_entries.clone(),
        );
        registry.register(
            "engine_reloads",
            "Engine loads after start-up, by result (ok, failed)",
            reloads.clone(),
        );
        registry.register(
            "model_serving",
            "1 for the model serving now",
            model.clone(),
        );
        registry.register(
            "profiles_loaded",
            "Merchants with a profile in the serving engine",
            profiles.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            in_flight,
            in_flight_max,
            inside: std::sync::atomic::AtomicI64::new(0),
            high: std::sync::atomic::AtomicI64::new(0),
            rejected,
            log_entries,
            reloads,
            model,
            profiles,
            next_id: AtomicU64::new(1),
        }
    }

    /// Records that an engine now serves.
    pub fn engine_loaded(&self, e: &Engine) {
        self.model.clear();
        self.model
            .get_or_create(&ModelLabels {
                model: e.model_id().to_owned(),
            })
            .set(1);
        self.profiles
            .set(i64::try_from(e.merchants()).unwrap_or(i64::MAX));
    }

    /// Counts a reload.
    pub fn reloaded(&self, ok: bool) {
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: if ok { "ok" } else { "failed" }.into(),
            })
            .inc();
    }

    /// Counts committed log entries.
    pub fn logged(&self, outcome: &str, n: u64) {
        self.log_entries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc_by(n);
    }

    fn reject(&self, why: &str) {
        self.rejected
            .get_or_create(&OutcomeLabels {
                outcome: why.into(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Result<String, ApiError> {
        self.in_flight_max.set(self.high.load(Ordering::SeqCst));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(out)
    }
}

/// What each lender was last shown of each merchant, as written to the database: lets a
/// served query skip rewriting an unchanged view. Updated only after a successful commit,
/// so it never claims more than the database holds.
#[derive(Debug, Default)]
pub struct SeenCache(Mutex<HashMap<String, HashMap<String, SeenView>>>);

/// Grade and escrow coverage (as bits, to compare exactly).
type SeenView = (String, Option<u64>);

impl SeenCache {
    /// Whether the database already holds this view (grade, escrow coverage).
    pub fn holds(
        &self,
        lender: &str,
        merchant: &str,
        (grade, coverage): (&str, Option<f64>),
    ) -> Result<bool, ApiError> {
        let map = self
            .0
            .lock()
            .map_err(|_| ApiError::Internal("seen cache poisoned".into()))?;
        Ok(map
            .get(lender)
            .and_then(|m| m.get(merchant))
            .is_some_and(|(g, c)| g == grade && *c == coverage.map(f64::to_bits)))
    }

    /// Records a view the database now holds.
    pub fn remember(
        &self,
        lender: &str,
        merchant: &str,
        (grade, coverage): (&str, Option<f64>),
    ) -> Result<(), ApiError> {
        self.0
            .lock()
            .map_err(|_| ApiError::Internal("seen cache poisoned".into()))?
            .entry(lender.to_owned())
            .or_default()
            .insert(
                merchant.to_owned(),
                (grade.to_owned(), coverage.map(f64::to_bits)),
            );
        Ok(())
    }
}

/// Token buckets per API key: `rate` tokens a second up to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter.
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how many whole seconds until one is there.
    pub fn take(&self, key: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut b = self
            .buckets
            .lock()
            .map_err(|_| ApiError::Internal("rate-limit lock poisoned".into()))?;
        if !b.contains_key(key) {
            b.insert(key.to_owned(), (self.burst, now));
        }
        let Some((tokens, last)) = b.get_mut(key) else {
            return Err(ApiError::Internal("rate-limit bucket missing".into()));
        };
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.rate).ceil();
            // `wait` is positive and finite (rate > 0 is checked with the configuration).
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err(ApiError::TooManyRequests((wait as u64).max(1)))
        }
    }
}

/// The outermost layer: request id, JSON request log, metrics, the concurrency limit and
/// the timeout. The limit is a semaphore with `max_concurrency` permits taken without
/// waiting, so no more requests than that are ever inside the handlers at once; the rest
/// are answered 503 with `Retry-After`.
pub(crate) async fn observe(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = st.metrics.next_id.fetch_add(1, Ordering::Relaxed);
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let slot = CallerSlot::default();
    req.extensions_mut().insert(slot.clone());
    let permit = Arc::clone(&st.concurrency).try_acquire_owned();
    let mut resp = match permit {
        Err(_) => {
            st.metrics.reject("overloaded");
            ApiError::Overloaded(format!(
                "the service is at its limit of {} requests at once",
                st.config.max_concurrency
            ))
            .into_response()
        }
        Ok(permit) => {
            let n = st.metrics.inside.fetch_add(1, Ordering::SeqCst) + 1;
            st.metrics.in_flight.set(n);
            st.metrics.high.fetch_max(n, Ordering::SeqCst);
            let timeout = Duration::from_secs(st.config.timeout_seconds);
            let r = match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(r) => r,
                Err(_) => {
                    st.metrics.reject("timeout");
                    ApiError::Overloaded(format!(
                        "the request took longer than {} s",
                        st.config.timeout_seconds
                    ))
                    .into_response()
                }
            };
            let n = st.metrics.inside.fetch_sub(1, Ordering::SeqCst) - 1;
            st.metrics.in_flight.set(n);
            drop(permit);
            r
        }
    };
    resp = as_problem(resp);
    let status = resp.status().as_u16();
    if status == 429 {
        st.metrics.reject("rate_limited");
    }
    let secs = start.elapsed().as_secs_f64();
    st.metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    st.metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(secs);
    if st.config.log == "json" {
        tracing::info!(
            target: "yuanxin::http",
            request_id = id,
            method = %method,
            route = %route,
            status,
            ms = secs * 1000.0,
            key_id = slot.0.get().map_or("", String::as_str),
            "request"
        );
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&id.to_string()) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// axum answers some errors itself (405, 413, 415 …) with plain text or nothing: turn
/// every error that is not problem+json yet into problem+json.
fn as_problem(resp: Response) -> Response {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if status.as_u16() < 400 || is_problem {
        return resp;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method",
        StatusCode::PAYLOAD_TOO_LARGE => "the body is larger than 64 KiB",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "the body must be application/json",
        _ => "the request cannot be served",
    };
    let slug = status
        .canonical_reason()
        .unwrap_or("error")
        .to_lowercase()
        .replace(' ', "-");
    let mut out = problem(status, &slug, detail.to_owned(), None);
    for (k, v) in resp.headers() {
        if k != "content-type" && k != "content-length" {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// The modification stamp of the engine's files, to notice a change.
pub(crate) fn stamp(files: &crate::EngineFiles) -> Vec<Option<(std::time::SystemTime, u64)>> {
    let registry = files.models.join("registry.json");
    [&files.profiles, &registry, &files.policy, &files.catalogue]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Loads a fresh engine from the files, off the async threads, and swaps it in.
pub(crate) async fn reload(st: &AppState) -> Result<Arc<Engine>, ApiError> {
    let files = st.files.clone();
    let fresh = tokio::task::spawn_blocking(move || Engine::load(&files))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match fresh {
        Ok(e) => {
            st.metrics.reloaded(true);
            let e = st.swap(e)?;
            tracing::info!(target: "yuanxin::engine", model = e.model_id(), profiles = e.merchants(), "engine loaded");
            Ok(e)
        }
        Err(err) => {
            st.metrics.reloaded(false);
            tracing::warn!(target: "yuanxin::engine", error = %err, "engine load failed; the current one keeps serving");
            Err(err)
        }
    }
}

fn modified(p: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Builds the latest profiles from a ledger into `out` (written beside it, then renamed
/// over it, so a reader never sees half a file). The as-of date is the last day of the
/// latest business month with events, or today in Shanghai if that is earlier.
pub fn build_latest_profiles(
    ledger: &std::path::Path,
    out: &std::path::Path,
) -> Result<chrono::NaiveDate, ApiError> {
    let fail = |e: &dyn std::fmt::Display| {
        ApiError::Unavailable(format!("profiles from {}: {e}", ledger.display()))
    };
    let l = yuanxin_ledger::Ledger::open(ledger).map_err(|e| fail(&e))?;
    let month = l
        .manifest()
        .files
        .iter()
        .filter(|f| f.month != "all")
        .map(|f| f.month.as_str())
        .max()
        .ok_or_else(|| fail(&"the ledger has no events"))?;
    let first = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .map_err(|e| fail(&e))?;
    let last = first
        .checked_add_months(chrono::Months::new(1))
        .and_then(|d| d.pred_opt())
        .ok_or_else(|| fail(&"month out of range"))?;
    let today = chrono::Utc::now()
        .with_timezone(&yuanxin_domain::shanghai())
        .date_naive();
    let as_of = last.min(today);
    let batch = yuanxin_profile::build(&l, &yuanxin_profile::ProfileOptions::at(vec![as_of]))
        .map_err(|e| fail(&e))?;
    let tmp = out.with_extension("parquet.building");
    yuanxin_profile::write_parquet(&batch, &tmp).map_err(|e| fail(&e))?;
    std::fs::rename(&tmp, out).map_err(|e| fail(&e))?;
    Ok(as_of)
}

/// Every `every`: rebuilds the profiles if new data was ingested into the ledger (when the
/// service keeps them up to date), then reloads the engine if its files changed since it
/// was loaded (or if none is loaded yet). A load that fails leaves the serving engine in
/// place and is retried at the next change.
pub(crate) async fn watch(st: AppState, every: Duration) {
    let mut seen = None;
    if let Ok(e) = st.engine() {
        seen = Some(e.stamp().clone());
    }
    // The ledger's manifest changes with every committed batch; profiles older than it
    // (or missing) are rebuilt.
    let manifest = st.files.ledger.as_ref().map(|l| l.join("manifest.json"));
    let mut ledger_seen = match &manifest {
        Some(m) if modified(&st.files.profiles) >= modified(m) => modified(m),
        _ => None,
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let (Some(ledger), Some(m)) = (&st.files.ledger, &manifest) {
            let now = modified(m);
            if now.is_some() && now != ledger_seen {
                ledger_seen = now;
                let (ledger, out) = (ledger.clone(), st.files.profiles.clone());
                match tokio::task::spawn_blocking(move || build_latest_profiles(&ledger, &out))
                    .await
                {
                    Ok(Ok(as_of)) => {
                        tracing::info!(target: "yuanxin::engine", %as_of, "profiles rebuilt from the ledger")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(target: "yuanxin::engine", error = %e, "rebuilding the profiles failed")
                    }
                    Err(e) => {
                        tracing::warn!(target: "yuanxin::engine", error = %e, "rebuilding the profiles failed")
                    }
                }
            }
        }
        let now = stamp(&st.files);
        if seen.as_ref() == Some(&now) {
            continue;
        }
        // Wait for writers to finish: act only once the stamp holds still for a tick.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stamp(&st.files) != now {
            continue;
        }
        seen = Some(now);
        let _ = reload(&st).await;
    }
}

/// Every 100 ms, reloads the keys held in memory if `yuanxin keys` changed them: a
/// revocation takes effect within that interval.
pub(crate) async fn refresh_keys(st: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let authz = Arc::clone(&st.authz);
        if let Err(e) = st.db.call(move |s| authz.refresh_keys(s)).await {
            tracing::warn!(target: "yuanxin::keys", error = %e, "reloading keys failed");
        }
    }
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!(target: "yuanxin::http", "shutting down: draining requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate_and_say_when_to_retry() {
        let l = RateLimiter::new(1.0, 2.0);
        assert!(l.take("a").is_ok());
        assert!(l.take("a").is_ok());
        assert!(matches!(l.take("a"), Err(ApiError::TooManyRequests(1))));
        assert!(l.take("b").is_ok(), "keys have their own buckets");
    }

    #[test]
    fn metrics_render_without_merchant_ids() -> Result<(), ApiError> {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                method: "GET".into(),
                route: "/v1/merchants/{id}/score".into(),
                status: 200,
            })
            .inc();
        let text = m.render()?;
        assert!(text.contains("yuanxin_http_requests_total{method=\"GET\",route=\"/v1/merchants/{id}/score\",status=\"200\"} 1"), "{text}");
        Ok(())
    }
}

#[cfg(test)]
mod layer_tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::{Db, EngineFiles, ServiceConfig};

    /// A router with one slow route behind the real outer layer, served on loopback.
    async fn slow_server(cfg: ServiceConfig) -> Result<(String, tempfile::TempDir), ApiError> {
        let dir = tempfile::tempdir().map_err(|e| ApiError::Internal(e.to_string()))?;
        let db = Db::open(&dir.path().join("db.sqlite"))?;
        let files = EngineFiles {
            models: dir.path().into(),
            profiles: dir.path().join("none.parquet"),
            policy: dir.path().join("none.toml"),
            catalogue: dir.path().join("none.toml"),
            ledger: None,
        };
        let st = AppState::new(cfg, files, None, db)?;
        let app = axum::Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    "done"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(st.clone(), observe))
            .with_state(st);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((addr, dir))
    }

    fn get(addr: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_slow_request_times_out_and_the_concurrency_limit_holds() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Timeout: 1 s against a 1.5 s handler.
        let (addr, _dir) = rt
            .block_on(slow_server(ServiceConfig {
                timeout_seconds: 1,
                ..ServiceConfig::default()
            }))
            .unwrap();
        let r = get(&addr);
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(
            r.contains("application/problem+json") && r.contains("longer than 1 s"),
            "{r}"
        );
        // One request at a time: of two overlapping slow requests, one is shed at once.
        let (addr, _dir2) = rt
            .block_on(slow_server(ServiceConfig {
                max_concurrency: 1,
                ..ServiceConfig::default()
            }))
            .unwrap();
        let first = {
            let addr = addr.clone();
            std::thread::spawn(move || get(&addr))
        };
        std::thread::sleep(Duration::from_millis(300));
        let second = get(&addr);
        assert!(second.starts_with("HTTP/1.1 503"), "{second}");
        assert!(
            second.contains("overloaded") && second.to_lowercase().contains("retry-after: 1"),
            "{second}"
        );
        let first = first.join().unwrap();
        assert!(
            first.starts_with("HTTP/1.1 200") && first.ends_with("done"),
            "{first}"
        );
    }
}
