//! The web pages: a merchant's page, a lender's console and a regulator's dashboard, in
//! Chinese and English.
//!
//! The pages are static files compiled into the binary (`crates/api/pages/`): HTML, one
//! style sheet and plain JavaScript, nothing fetched from anywhere else and no build step.
//! They show what the JSON API returns, by calling it with the session cookie: no number
//! is computed twice. This module serves the files with a strict Content-Security-Policy
//! and exchanges an API key for a session (see [`crate::sessions`]).

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use yuanxin_store::Role;

use crate::problem::{ApiError, Code};
use crate::sessions::{self, Open, COOKIE, CSRF_HEADER, SIGNIN_HEADER};
use crate::AppState;

/// The policy every page and asset is served with: only this origin's scripts, styles,
/// images and API; no inline script or style; no framing; forms post nowhere else.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A file served: path, content type, bytes.
type Asset = (&'static str, &'static str, &'static [u8]);

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every page and asset, compiled in.
const ASSETS: &[Asset] = &[
    ("/signin", HTML, include_bytes!("../pages/signin.html")),
    ("/merchant", HTML, include_bytes!("../pages/merchant.html")),
    ("/lender", HTML, include_bytes!("../pages/lender.html")),
    (
        "/regulator",
        HTML,
        include_bytes!("../pages/regulator.html"),
    ),
    ("/assets/app.css", CSS, include_bytes!("../pages/app.css")),
    (
        "/assets/common.js",
        JS,
        include_bytes!("../pages/common.js"),
    ),
    (
        "/assets/signin.js",
        JS,
        include_bytes!("../pages/signin.js"),
    ),
    (
        "/assets/merchant.js",
        JS,
        include_bytes!("../pages/merchant.js"),
    ),
    (
        "/assets/lender.js",
        JS,
        include_bytes!("../pages/lender.js"),
    ),
    (
        "/assets/regulator.js",
        JS,
        include_bytes!("../pages/regulator.js"),
    ),
];

fn headers(ctype: &'static str) -> [(header::HeaderName, HeaderValue); 6] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

/// The page routes: the files, and the session (`POST` signs in, `GET` tells the page who
/// it is and its anti-forgery token, `DELETE` signs out).
pub fn routes() -> Router<AppState> {
    let mut r = Router::new().route(
        "/",
        get(|| async { (StatusCode::SEE_OTHER, [(header::LOCATION, "/signin")]) }),
    );
    for &(path, ctype, bytes) in ASSETS {
        r = r.route(
            path,
            get(move || async move { (headers(ctype), Bytes::from_static(bytes)) }),
        );
    }
    r.route("/session", get(whoami).post(sign_in).delete(sign_out))
}

/// The live session of a request's cookie, if any.
pub fn session_of(parts: &Parts, st: &AppState) -> Result<Option<Open>, ApiError> {
    session_in(&parts.headers, st)
}

fn session_in(h: &HeaderMap, st: &AppState) -> Result<Option<Open>, ApiError> {
    match token(h) {
        Some(t) => st.sessions.get(t, Instant::now()),
        None => Ok(None),
    }
}

fn token(h: &HeaderMap) -> Option<&str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| sessions::cookie(v, COOKIE))
        .filter(|t| !t.is_empty())
}

/// A request through a session that changes something must carry the session's
/// anti-forgery token, and, when the browser names its origin, come from this one.
pub fn check_forgery(parts: &Parts, open: &Open) -> Result<(), ApiError> {
    forgery(&parts.method, &parts.headers, open)
}

fn forgery(method: &Method, h: &HeaderMap, open: &Open) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    same_origin(h)?;
    let presented = h
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if sessions::same_token(presented, &open.csrf) {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::CsrfFailed,
            "a page's request that changes something needs the X-CSRF-Token of its session",
        ))
    }
}

/// `Origin`, when present, names this host (a browser sends it on every POST and DELETE).
fn same_origin(h: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = h.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = origin.to_str().ok();
    let ok = match (origin, host) {
        (Some(o), Some(host)) => o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .is_some_and(|rest| rest == host),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::CsrfFailed,
            "a request from another origin cannot use this session",
        ))
    }
}

fn secure(st: &AppState, h: &HeaderMap) -> bool {
    st.config.secure_cookies
        || h.get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The page a role signs in to.
fn home(role: Role) -> Option<&'static str> {
    match role {
        Role::Merchant => Some("/merchant"),
        Role::Lender => Some("/lender"),
        Role::Regulator => Some("/regulator"),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Exchanges an API key for a session cookie.
async fn sign_in(
    State(st): State<AppState>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if h.get(SIGNIN_HEADER).is_none() {
        return Err(ApiError::new(
            Code::CsrfFailed,
            format!("signing in needs the {SIGNIN_HEADER} header (sent by the sign-in page)"),
        ));
    }
    same_origin(h)?;
    let body = axum::body::to_bytes(body, crate::BODY_LIMIT)
        .await
        .map_err(|e| ApiError::new(Code::PayloadTooLarge, e.to_string()))?;
    let SignIn { key } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(Code::MalformedJson, format!("{{\"key\": …}}: {e}")))?;
    st.authz.sync(&st.db)?;
    let Some(who) = st.authz.authenticate(key.trim())? else {
        if let Some(ip) = ip {
            st.limits.anonymous.take(&ip)?;
        }
        return Err(ApiError::unauthorized());
    };
    st.limits.keys.take(&who.key_id, &st.db)?;
    let Some(home) = home(who.principal.role) else {
        return Err(ApiError::new(
            Code::ForbiddenRole,
            format!(
                "there are no pages for a {} key yet: use the JSON API",
                who.principal.role
            ),
        ));
    };
    let (token, _) = st.sessions.open(who.key_id, Instant::now())?;
    let cookie = sessions::set_cookie(
        &token,
        std::time::Duration::from_secs(st.config.session_minutes * 60),
        secure(&st, h),
    );
    let mut r = json(
        StatusCode::OK,
        &json!({"role": who.principal.role.to_string(), "home": home}),
    );
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(ApiError::internal)?,
    );
    Ok(r)
}

/// Who the session is, and its anti-forgery token (readable by this origin's scripts only:
/// no CORS is ever granted).
async fn whoami(State(st): State<AppState>, h: HeaderMap) -> Result<Response, ApiError> {
    let open = session_in(&h, &st)?.ok_or_else(ApiError::unauthorized)?;
    let who = st
        .authz
        .active_key(&open.key_id)?
        .ok_or_else(ApiError::unauthorized)?;
    let p = &who.principal;
    Ok(json(
        StatusCode::OK,
        &json!({
            "role": p.role.to_string(),
            "code": p.code,
            "name": p.name,
            "home": home(p.role),
            "csrf_token": &*open.csrf,
            "idle_seconds": st.config.session_minutes * 60,
        }),
    ))
}

/// Ends the session (its anti-forgery token required) and clears the cookie.
async fn sign_out(
    State(st): State<AppState>,
    method: Method,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(open) = session_in(&h, &st)? {
        forgery(&method, &h, &open)?;
        if let Some(t) = token(&h) {
            st.sessions.end(t)?;
        }
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&sessions::set_cookie(
            "",
            std::time::Duration::ZERO,
            secure(&st, &h),
        ))
        .map_err(ApiError::internal)?,
    );
    Ok(r)
}
