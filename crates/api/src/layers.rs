//! The layers every request passes. Outermost, [`observe`]: the response id (a ULID), the
//! URI and header size limits, the concurrency limit (a semaphore taken without waiting;
//! the probes are never shed), the timeout, the in-flight gauge (a guard released on drop,
//! so neither a client that goes away nor a panic can leak it), problem documents for
//! axum's own errors, the metrics and the JSON request log. Inside it, a panic in a
//! handler becomes a logged 500 problem instead of a dropped connection.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::{method_label, route_label};
use crate::problem::{render, Answered, ApiError, Code};
use crate::{AppState, CallerSlot, RequestId};

/// Longest URI served (longer: 414).
pub const MAX_URI: usize = 8 * 1024;
/// Most header bytes served (more: 431).
pub const MAX_HEADERS: usize = 32 * 1024;

/// Routes that are never shed: an orchestrator must always be able to ask.
fn is_probe(route: &str) -> bool {
    route == "/healthz" || route == "/readyz"
}

/// A fresh ULID: 48 bits of milliseconds since the epoch, 80 random bits.
pub fn ulid() -> String {
    let ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(0);
    ulid::Ulid::from_parts(ms, rand::random::<u128>()).to_string()
}

/// The outermost layer.
pub(crate) async fn observe(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = ulid();
    let method = method_label(req.method());
    let route = route_label(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let slot = CallerSlot::default();
    req.extensions_mut().insert(slot.clone());
    req.extensions_mut().insert(RequestId(id.as_str().into()));
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    let resp = if uri_len > MAX_URI {
        render(&ApiError::new(
            Code::UriTooLong,
            format!("the URI is longer than {} KiB", MAX_URI / 1024),
        ))
    } else if header_bytes > MAX_HEADERS {
        render(&ApiError::new(
            Code::HeadersTooLarge,
            format!("the request headers exceed {} KiB", MAX_HEADERS / 1024),
        ))
    } else if is_probe(route) {
        let _inside = st.metrics.enter();
        next.run(req).await
    } else {
        match Arc::clone(&st.concurrency).try_acquire_owned() {
            Err(_) => {
                st.metrics.reject("overloaded");
                render(&ApiError::new(
                    Code::Overloaded,
                    format!(
                        "the service is at its limit of {} requests at once",
                        st.config.max_concurrency
                    ),
                ))
            }
            Ok(_permit) => {
                let _inside = st.metrics.enter();
                let timeout = Duration::from_secs(st.config.timeout_seconds);
                match tokio::time::timeout(timeout, next.run(req)).await {
                    Ok(r) => r,
                    Err(_) => {
                        st.metrics.reject("timeout");
                        render(&ApiError::new(
                            Code::Timeout,
                            format!(
                                "the request took longer than {} s",
                                st.config.timeout_seconds
                            ),
                        ))
                    }
                }
            }
        }
    };
    let mut resp = as_problem(resp);
    let status = resp.status().as_u16();
    let code = resp.extensions().get::<Answered>().map(|a| a.0);
    if status == 429 {
        st.metrics.reject("rate_limited");
    }
    if let Some(c) = code.filter(|_| (400..500).contains(&status)) {
        st.metrics.refused(route, c.as_str());
    }
    let secs = start.elapsed().as_secs_f64();
    st.metrics.answered(method, route, status, secs);
    if st.config.log == "json" {
        let (key_id, authenticated) = slot.0.get().map_or(("", false), |(k, a)| (k.as_str(), *a));
        tracing::info!(
            target: "yuanxin::http",
            request_id = %id,
            method = %method,
            route = %route,
            status,
            code = code.map_or("", Code::as_str),
            ms = secs * 1000.0,
            key_id,
            authenticated,
            "request"
        );
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// axum answers some errors itself (404 without a route, 405, 413, 415 …) with plain text
/// or nothing: each becomes the problem document of its code, keeping headers such as
/// `Allow`.
fn as_problem(resp: Response) -> Response {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if status.as_u16() < 400 || is_problem {
        return resp;
    }
    let code = match status {
        StatusCode::NOT_FOUND => Code::NoRoute,
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        StatusCode::URI_TOO_LONG => Code::UriTooLong,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::UnsupportedMediaType,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Code::HeadersTooLarge,
        s if s.is_client_error() => Code::InvalidField,
        _ => Code::Internal,
    };
    let detail = match code {
        Code::NoRoute => "no such route".to_owned(),
        _ => code.title_en().to_owned(),
    };
    let mut out = render(&ApiError::new(code, detail));
    for (k, v) in resp.headers() {
        if k != "content-type" && k != "content-length" {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// A panic in a handler: logged with its message, answered 500.
pub(crate) fn panicked(err: Box<dyn Any + Send + 'static>) -> Response {
    let why = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    render(&ApiError::internal(format!("a handler panicked: {why}")))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::{Db, EngineFiles, LogFiles, ServiceConfig};

    /// A router with a slow route, a panicking route and the probes behind the real layers,
    /// served on loopback. The slow route waits for the test to release it.
    async fn server(
        cfg: ServiceConfig,
        release: Arc<tokio::sync::Notify>,
        entered: Arc<tokio::sync::Notify>,
    ) -> Result<(String, AppState, tempfile::TempDir), ApiError> {
        let dir = tempfile::tempdir().map_err(ApiError::internal)?;
        let db = Db::open(
            &dir.path().join("db.sqlite"),
            &yuanxin_store::SecretsSource::File(dir.path().join("db.key")),
            LogFiles {
                checkpoints: dir.path().join("db.checkpoints"),
                every: 1000,
                seconds: 60,
            },
        )?;
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
                axum::routing::get(move || async move {
                    entered.notify_one();
                    release.notified().await;
                    "done"
                }),
            )
            .route(
                "/panic",
                axum::routing::get(|| async {
                    let v: Vec<u8> = Vec::new();
                    #[allow(clippy::indexing_slicing)]
                    let x = v[3];
                    x.to_string()
                }),
            )
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
            .layer(axum::middleware::from_fn_with_state(st.clone(), observe))
            .with_state(st.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(ApiError::internal)?;
        let addr = listener
            .local_addr()
            .map_err(ApiError::internal)?
            .to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((addr, st, dir))
    }

    fn get(addr: &str, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn panics_timeouts_shedding_and_the_in_flight_gauge() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let release = Arc::new(tokio::sync::Notify::new());
        let entered = Arc::new(tokio::sync::Notify::new());
        let (addr, st, _dir) = rt
            .block_on(server(
                ServiceConfig {
                    max_concurrency: 1,
                    timeout_seconds: 3600,
                    ..ServiceConfig::default()
                },
                Arc::clone(&release),
                Arc::clone(&entered),
            ))
            .unwrap();
        // A panic is a logged 500 problem, not a dropped connection; the gauge is released.
        let r = get(&addr, "/panic");
        assert!(r.starts_with("HTTP/1.1 500"), "{r}");
        assert!(
            r.contains("application/problem+json") && r.contains("\"code\":\"internal\""),
            "{r}"
        );
        assert_eq!(st.metrics.in_flight(), 0);
        // One request at a time: while one is inside (the test knows, it entered), another
        // is shed at once with Retry-After, and the probe is still answered.
        let first = {
            let addr = addr.clone();
            std::thread::spawn(move || get(&addr, "/slow"))
        };
        rt.block_on(entered.notified());
        let second = get(&addr, "/slow");
        assert!(second.starts_with("HTTP/1.1 503"), "{second}");
        assert!(
            second.contains("overloaded") && second.to_lowercase().contains("retry-after: 1"),
            "{second}"
        );
        let probe = get(&addr, "/healthz");
        assert!(
            probe.starts_with("HTTP/1.1 200"),
            "probes are never shed: {probe}"
        );
        release.notify_one();
        let first = first.join().unwrap();
        assert!(
            first.starts_with("HTTP/1.1 200") && first.ends_with("done"),
            "{first}"
        );
        // A client that goes away mid-request releases its place.
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        rt.block_on(entered.notified());
        assert_eq!(st.metrics.in_flight(), 1);
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(10);
        while st.metrics.in_flight() != 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(
            st.metrics.in_flight(),
            0,
            "the gauge does not leak on disconnect"
        );
        // Oversized URIs and headers get problems too.
        let r = get(&addr, &format!("/slow?{}", "a".repeat(MAX_URI)));
        assert!(
            r.starts_with("HTTP/1.1 414") && r.contains("uri_too_long"),
            "{r}"
        );
    }

    #[test]
    fn a_slow_request_times_out() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let release = Arc::new(tokio::sync::Notify::new());
        let entered = Arc::new(tokio::sync::Notify::new());
        let (addr, st, _dir) = rt
            .block_on(server(
                ServiceConfig {
                    timeout_seconds: 1,
                    ..ServiceConfig::default()
                },
                release,
                entered,
            ))
            .unwrap();
        let r = get(&addr, "/slow");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(
            r.contains("\"code\":\"timeout\"") && r.contains("longer than 1 s"),
            "{r}"
        );
        assert_eq!(st.metrics.in_flight(), 0);
    }
}
