//! The service's Prometheus metrics. Labels carry route templates
//! (`/v1/merchants/{id}/score`) and problem codes, never merchant ids or keys.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::problem::ApiError;
use crate::Engine;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    route: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
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
    inside: AtomicI64,
    high: AtomicI64,
    refusals: Family<RefusalLabels, Counter>,
    rejected: Family<OutcomeLabels, Counter>,
    log_entries: Family<OutcomeLabels, Counter>,
    reloads: Family<OutcomeLabels, Counter>,
    model: Family<ModelLabels, Gauge>,
    profiles: Gauge,
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
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "http_refusals",
            "Requests refused, by route template and problem code (unauthorized, forbidden_role, no_consent, invalid_field, rate_limited, …)",
            refusals.clone(),
        );
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
            inside: AtomicI64::new(0),
            high: AtomicI64::new(0),
            refusals,
            rejected,
            log_entries,
            reloads,
            model,
            profiles,
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
                outcome: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// Counts committed log entries.
    pub fn logged(&self, outcome: &'static str, n: u64) {
        self.log_entries
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(n);
    }

    /// Counts a request turned away before a handler.
    pub(crate) fn reject(&self, why: &'static str) {
        self.rejected
            .get_or_create(&OutcomeLabels { outcome: why })
            .inc();
    }

    /// Counts an answered request.
    pub(crate) fn answered(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        secs: f64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(secs);
    }

    /// Counts a refusal by its problem code.
    pub(crate) fn refused(&self, route: &'static str, code: &'static str) {
        self.refusals
            .get_or_create(&RefusalLabels { route, code })
            .inc();
    }

    /// A request entered the handlers; the guard leaves when dropped, whatever happens to
    /// the request (answered, timed out, its client gone, a panic), so the gauge cannot
    /// leak.
    pub(crate) fn enter(self: &std::sync::Arc<Self>) -> InFlight {
        let n = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight.set(n);
        self.high.fetch_max(n, Ordering::SeqCst);
        InFlight(std::sync::Arc::clone(self))
    }

    /// Requests inside the handlers now.
    pub fn in_flight(&self) -> i64 {
        self.inside.load(Ordering::SeqCst)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Result<String, ApiError> {
        self.in_flight_max.set(self.high.load(Ordering::SeqCst));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(ApiError::internal)?;
        Ok(out)
    }
}

/// A route template as a `&'static str`, so that labelling a request allocates nothing.
/// Templates come from the router (a fixed, small set) or are `unmatched`, so the strings
/// interned once and kept are bounded by the number of routes.
pub(crate) fn route_label(template: Option<&str>) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{OnceLock, RwLock};
    static ROUTES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let Some(t) = template else {
        return "unmatched";
    };
    let set = ROUTES.get_or_init(|| RwLock::new(HashSet::new()));
    if let Some(found) = set.read().ok().and_then(|s| s.get(t).copied()) {
        return found;
    }
    match set.write() {
        Ok(mut s) => match s.get(t) {
            Some(found) => found,
            None => {
                let leaked: &'static str = Box::leak(t.to_owned().into_boxed_str());
                s.insert(leaked);
                leaked
            }
        },
        Err(_) => "unmatched",
    }
}

/// An HTTP method as a `&'static str` (the standard ones; anything else is `OTHER`).
pub(crate) fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// A request inside the handlers (see [`Metrics::enter`]).
#[derive(Debug)]
pub(crate) struct InFlight(std::sync::Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let n = self.0.inside.fetch_sub(1, Ordering::SeqCst) - 1;
        self.0.in_flight.set(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_without_merchant_ids_and_the_gauge_follows_guards() -> Result<(), ApiError> {
        let m = std::sync::Arc::new(Metrics::new());
        m.answered("GET", "/v1/merchants/{id}/score", 200, 0.001);
        let text = m.render()?;
        assert!(text.contains("yuanxin_http_requests_total{method=\"GET\",route=\"/v1/merchants/{id}/score\",status=\"200\"} 1"), "{text}");
        let a = m.enter();
        let b = m.enter();
        assert_eq!(m.in_flight(), 2);
        drop(a);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _b = b;
            panic!("a handler panics holding its guard");
        }));
        assert!(panicked.is_err());
        assert_eq!(m.in_flight(), 0, "released on drop, also when unwinding");
        Ok(())
    }
}
