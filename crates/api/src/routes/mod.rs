//! The routes: thin handlers, each annotated for the OpenAPI document, grouped by who calls
//! them; the extractors that authenticate the caller and check its role before any input is
//! read; logging with receipts; and the router with its layers.

mod admin;
mod analyst;
mod lender;
mod log;
mod merchant;
mod ops;
mod regulator;

pub use regulator::ReportCache;

use std::net::SocketAddr;
use std::sync::Arc;
use yuanxin_domain::MerchantId;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yuanxin_store::{ConsentId, LogRecord, Outcome, Principal, Purpose, Role, Seen, Timestamp};

use crate::db::Receipt;
use crate::engine::Bounds;
use crate::input::{not_only_spaces_pattern, AMOUNT_PATTERN, ID_PATTERN};
use crate::problem::{ApiError, Code, Problem};
use crate::{layers, AppState, CallerSlot, Engine, RequestId, BODY_LIMIT};

/// The caller, authenticated by its API key and within its rate limit.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Arc<Principal>,
    /// With which key.
    pub key_id: Arc<str>,
    /// This request's id.
    pub request_id: Arc<str>,
}

/// The key id a presented key claims (`yx_<12 hex>_…`), for the request log of a refusal.
fn claimed_key_id(token: &str) -> Option<String> {
    let id = token.strip_prefix("yx_")?.split('_').next()?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// The token of `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110).
fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map_or_else(|| Arc::from(""), |r| Arc::clone(&r.0));
        let slot = parts.extensions.get::<CallerSlot>().cloned();
        let token = bearer(parts);
        st.authz.sync(&st.db)?;
        let who = match token {
            Some(t) => st.authz.authenticate(t)?,
            // A web page's request: its session's key, and the session's anti-forgery token
            // on anything that changes state.
            None => match crate::pages::session_of(parts, st)? {
                Some(open) => {
                    crate::pages::check_forgery(parts, &open)?;
                    st.authz.active_key(&open.key_id)?
                }
                None => None,
            },
        };
        match who {
            Some(a) => {
                if let Some(slot) = &slot {
                    let _ = slot.0.set((a.key_id.to_string(), true));
                }
                st.limits.keys.take(&a.key_id, &st.db)?;
                Ok(Caller {
                    principal: a.principal,
                    key_id: a.key_id,
                    request_id,
                })
            }
            None => {
                if let (Some(slot), Some(id)) = (&slot, token.and_then(claimed_key_id)) {
                    let _ = slot.0.set((id, false));
                }
                if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
                    st.limits.anonymous.take(&addr.ip())?;
                }
                Err(ApiError::unauthorized())
            }
        }
    }
}

fn forbidden(c: &Caller) -> ApiError {
    ApiError::new(
        Code::ForbiddenRole,
        format!("a {} key cannot use this route", c.principal.role),
    )
}

macro_rules! role_extractor {
    ($(#[$m:meta])* $name:ident, $($role:pat_param)|+) => {
        $(#[$m])*
        #[derive(Debug)]
        #[allow(dead_code)] // some routes only need the role checked
        pub struct $name(pub Caller);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;
            async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
                let c = Caller::from_request_parts(parts, st).await?;
                match c.principal.role {
                    $($role)|+ => Ok($name(c)),
                    _ => Err(forbidden(&c)),
                }
            }
        }
    };
}

role_extractor!(
    /// A lender's key.
    LenderCaller, Role::Lender
);
role_extractor!(
    /// A merchant's key.
    MerchantCaller, Role::Merchant
);
role_extractor!(
    /// An analyst's or admin's key.
    StaffCaller, Role::Analyst | Role::Admin
);
role_extractor!(
    /// An admin's key.
    AdminCaller, Role::Admin
);
role_extractor!(
    /// A regulator's key.
    RegulatorCaller, Role::Regulator
);

impl MerchantCaller {
    /// The merchant this key belongs to.
    pub fn merchant(&self) -> Result<MerchantId, ApiError> {
        // A merchant principal's code is its merchant id, checked when it was created.
        MerchantId::parse(&self.0.principal.code).map_err(ApiError::internal)
    }
}

fn json_bytes<T: Serialize>(body: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(body).map_err(ApiError::internal)
}

fn respond(status: StatusCode, bytes: impl Into<Bytes>) -> Response {
    let bytes: Bytes = bytes.into();
    (status, [("content-type", "application/json")], bytes).into_response()
}

/// Adds the receipt: the log index of the entry (single queries) and the signed head that
/// covers it.
fn with_receipt(mut r: Response, index: Option<u64>, receipt: &Receipt) -> Response {
    if let Some(i) = index {
        r.headers_mut()
            .insert("yuanxin-log-index", HeaderValue::from(i));
    }
    r.headers_mut()
        .insert("yuanxin-signed-head", receipt.header.clone());
    r
}

/// A lender's query about a merchant, to be logged before its response leaves.
struct Served<'a> {
    caller: &'a Caller,
    merchant: &'a MerchantId,
    action: &'static str,
    purpose: Purpose,
    consent: Option<ConsentId>,
    model_id: Arc<str>,
    /// Grade and escrow coverage shown (from the engine).
    shown: Option<(&'a str, Option<f64>)>,
    /// Whether to write `shown` as what the lender last saw.
    write_shown: bool,
}

impl<'a> Served<'a> {
    fn new(
        caller: &'a Caller,
        e: &'a Engine,
        merchant: &'a MerchantId,
        action: &'static str,
        purpose: Purpose,
    ) -> Served<'a> {
        Served {
            caller,
            merchant,
            action,
            purpose,
            consent: None,
            model_id: e.model_id_shared(),
            shown: e.shown(merchant.as_str()),
            write_shown: false,
        }
    }

    fn record(&self, outcome: Outcome, at: Timestamp, response_digest: Arc<str>) -> LogRecord {
        LogRecord {
            at,
            request_id: Arc::clone(&self.caller.request_id),
            principal: Arc::clone(&self.caller.principal),
            key_id: Arc::clone(&self.caller.key_id),
            merchant_id: self.merchant.clone(),
            action: self.action,
            purpose: self.purpose,
            consent_id: self.consent,
            outcome,
            model_id: Arc::clone(&self.model_id),
            response_digest,
            seen: self
                .shown
                .filter(|_| self.write_shown)
                .map(|(grade, escrow_coverage)| Seen {
                    lender_id: self.caller.principal.id,
                    grade: grade.to_owned(),
                    escrow_coverage,
                }),
        }
    }
}

/// Logs a served response (committed before anything is sent) and returns it with its
/// receipt. If the log write fails, the request fails.
async fn logged(
    st: &AppState,
    q: Served<'_>,
    bytes: Bytes,
    response_digest: Arc<str>,
) -> Result<Response, ApiError> {
    // What the lender is shown is written with the entry only when it changed.
    let lender = q.caller.principal.id;
    let write_shown = match q.shown {
        Some(shown) => !st.seen.holds(lender, q.merchant.as_str(), shown)?,
        None => false,
    };
    let q = Served { write_shown, ..q };
    let (index, receipt) = st
        .db
        .append(vec![q.record(Outcome::Served, (st.now)(), response_digest)])
        .await?;
    st.metrics.logged("served", 1);
    if let (true, Some(shown)) = (write_shown, q.shown) {
        st.seen.remember(lender, q.merchant.as_str(), shown)?;
    }
    Ok(with_receipt(
        respond(StatusCode::OK, bytes),
        Some(index),
        &receipt,
    ))
}

/// The views written with these records, to remember once they are committed.
fn remember(st: &AppState, records: &[LogRecord]) -> Result<(), ApiError> {
    for r in records {
        if let Some(s) = &r.seen {
            st.seen.remember(
                s.lender_id,
                r.merchant_id.as_str(),
                (&s.grade, s.escrow_coverage),
            )?;
        }
    }
    Ok(())
}

/// The consent in force and whether the merchant has an open dispute; without a consent,
/// the refusal is logged and the answer is 403.
async fn consent_or_refuse(st: &AppState, q: &Served<'_>) -> Result<(ConsentId, bool), ApiError> {
    let now = (st.now)();
    let consent =
        st.authz
            .valid_consent(q.merchant.as_str(), q.caller.principal.id, q.purpose, now)?;
    let dispute = st.authz.has_open_dispute(q.merchant.as_str())?;
    match consent {
        Some(id) => Ok((id, dispute)),
        None => {
            let detail = format!(
                "no {} consent from merchant {} to {} is in force",
                q.purpose, q.merchant, q.caller.principal.code
            );
            let d = crate::digest(detail.as_bytes()).into();
            st.db
                .append(vec![q.record(Outcome::Refused, now, d)])
                .await?;
            st.metrics.logged("refused", 1);
            Err(ApiError::new(Code::NoConsent, detail))
        }
    }
}

/// A page's cursor as sent.
fn cursor<T: ToString>(c: Option<T>) -> Option<String> {
    c.map(|c| c.to_string())
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
        description = "Credit scores, PDs, grades, reasons and loan decisions for prepaid merchants under e-CNY escrow, with merchants' consent and a signed Merkle query log (RFC 9162): every served score or decision carries a receipt. Errors are RFC 9457 problem+json with a stable `code`."),
    modifiers(&BearerKeys),
    tags((name = "lender", description = "Banks: scores and decisions under the merchant's consent; every query is logged"),
        (name = "merchant", description = "A merchant's own score, profile, eligibility, consents, queries and disputes"),
        (name = "analyst", description = "The credit platform: models, stability, reloads, disputes"),
        (name = "admin", description = "Principals and API keys"),
        (name = "log", description = "The query log's signed heads and proofs"),
        (name = "regulator", description = "Market regulators: the pilot's monthly figures and watch list, limited to a district regulator's district; every access logged"),
        (name = "operations", description = "Health, readiness, metrics and this document")),
    components(schemas(Problem))
)]
struct ApiDoc;

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
        .routes(routes!(lender::score))
        .routes(routes!(lender::eligibility))
        .routes(routes!(lender::batch_score))
        .routes(routes!(lender::alerts))
        .routes(routes!(lender::consents_held))
        .routes(routes!(merchant::institutions))
        .routes(routes!(merchant::my_score))
        .routes(routes!(merchant::my_profile))
        .routes(routes!(merchant::my_history))
        .routes(routes!(merchant::my_eligibility))
        .routes(routes!(merchant::my_queries))
        .routes(routes!(merchant::my_consents, merchant::grant))
        .routes(routes!(merchant::revoke))
        .routes(routes!(merchant::my_disputes, merchant::open_dispute))
        .routes(routes!(analyst::all_disputes))
        .routes(routes!(analyst::answer_dispute))
        .routes(routes!(analyst::models))
        .routes(routes!(analyst::stability))
        .routes(routes!(analyst::reload))
        .routes(routes!(analyst::promote))
        .routes(routes!(admin::principals, admin::add_principal))
        .routes(routes!(admin::create_key))
        .routes(routes!(admin::revoke_key))
        .routes(routes!(log::checkpoint))
        .routes(routes!(log::entry))
        .routes(routes!(log::consistency))
        .routes(routes!(regulator::reports))
        .routes(routes!(regulator::report))
        .routes(routes!(regulator::watchlist))
}

/// Shared error responses, by status.
fn error_responses() -> Value {
    let mut out = serde_json::Map::new();
    for (status, description, retry) in [
        (400, "Malformed JSON", false),
        (401, "No valid API key", false),
        (403, "The key's role may not use this route, or no consent is in force (the refusal is logged)", false),
        (404, "No such merchant, principal, product, model, entry or route", false),
        (405, "The route does not take this method", false),
        (409, "It exists already, or the Idempotency-Key was used for another request", false),
        (413, "The body is larger than 64 KiB", false),
        (414, "The URI is longer than 8 KiB", false),
        (415, "The body is not application/json", false),
        (422, "A field, parameter or header breaks its rule; `field` names it", false),
        (429, "Rate limit exceeded (per key, or per address for failed authentication)", true),
        (431, "The request headers exceed 32 KiB", false),
        (500, "Internal error (logged)", false),
        (503, "Overloaded, timed out or not ready", true),
    ] {
        let mut r = json!({
            "description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        });
        if retry {
            r["headers"] = json!({"Retry-After": {"description": "Seconds after which a retry will be accepted", "schema": {"type": "integer", "minimum": 1}}});
        }
        out.insert(format!("E{status}"), r);
    }
    Value::Object(out)
}

/// Sets a parameter's schema (by route, method and name). Reads with `get_mut` throughout:
/// indexing a `Value` mutably would insert nulls where nothing is.
fn param(doc: &mut Value, path: &str, method: &str, name: &str, schema: Value) {
    let ps = doc
        .get_mut("paths")
        .and_then(|p| p.get_mut(path))
        .and_then(|p| p.get_mut(method))
        .and_then(|o| o.get_mut("parameters"))
        .and_then(Value::as_array_mut);
    for p in ps.into_iter().flatten() {
        if p["name"] == name {
            p["schema"] = schema.clone();
        }
    }
}

/// Sets a body property's schema.
fn property(doc: &mut Value, schema: &str, name: &str, value: Value) {
    let props = doc
        .get_mut("components")
        .and_then(|c| c.get_mut("schemas"))
        .and_then(|s| s.get_mut(schema))
        .and_then(|s| s.get_mut("properties"))
        .and_then(Value::as_object_mut);
    if let Some(props) = props {
        props.insert(name.to_owned(), value);
    }
}

/// The OpenAPI document for a catalogue's bounds: every operation documents its errors as
/// problem+json, every identifier and number states its rule.
pub fn openapi_json(bounds: Bounds, batch_max: usize) -> Result<String, ApiError> {
    let mut doc = serde_json::to_value(api().into_openapi()).map_err(ApiError::internal)?;
    doc["components"]["responses"] = error_responses();
    let id = json!({"type": "string", "pattern": ID_PATTERN});
    let spaced = not_only_spaces_pattern();
    // The demo city's first merchant and lender, so that the documented examples run.
    let merchant_id = json!({"type": "string", "pattern": ID_PATTERN, "example": "M0000000"});
    let amount = json!({"type": "string", "pattern": AMOUNT_PATTERN, "description": "Yuan, 0.01 to 100000000, at most two decimals", "example": "50000"});
    let term = json!({"type": "integer", "minimum": bounds.term_min, "maximum": bounds.term_max, "description": "Months, within the catalogue's products' terms"});
    let positive = json!({"type": "integer", "minimum": 1, "maximum": i64::MAX});
    let index = json!({"type": "integer", "minimum": 0, "maximum": i64::MAX});
    let limit =
        json!({"type": "integer", "minimum": 1, "maximum": yuanxin_store::MAX_PAGE, "default": 50});
    let number_cursor = json!({"type": "string", "pattern": "^[0-9]{1,18}$", "description": "From the previous page's next_cursor"});
    let id_cursor = json!({"type": "string", "pattern": ID_PATTERN, "description": "From the previous page's next_cursor"});
    // Bodies.
    property(&mut doc, "EligibilityBody", "amount", amount.clone());
    property(&mut doc, "EligibilityBody", "term_months", term.clone());
    property(
        &mut doc,
        "EligibilityBody",
        "product",
        json!({"type": ["string", "null"], "pattern": ID_PATTERN}),
    );
    property(
        &mut doc,
        "BatchBody",
        "merchants",
        json!({"type": "array", "items": id.clone(), "minItems": 1, "maxItems": batch_max}),
    );
    property(
        &mut doc,
        "GrantBody",
        "lender",
        json!({"type": "string", "pattern": ID_PATTERN, "example": "ICBC-demo"}),
    );
    property(
        &mut doc,
        "GrantBody",
        "days",
        json!({"type": "integer", "minimum": 1, "maximum": 366}),
    );
    property(
        &mut doc,
        "DisputeBody",
        "subject",
        json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": spaced}),
    );
    property(
        &mut doc,
        "DisputeBody",
        "detail",
        json!({"type": "string", "maxLength": 4000}),
    );
    property(
        &mut doc,
        "AnswerBody",
        "answer",
        json!({"type": "string", "minLength": 1, "maxLength": 4000, "pattern": spaced}),
    );
    property(&mut doc, "PromoteBody", "id", id.clone());
    property(&mut doc, "PrincipalBody", "code", id.clone());
    property(
        &mut doc,
        "PrincipalBody",
        "name",
        json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": spaced}),
    );
    property(&mut doc, "KeyBody", "principal", id.clone());
    for s in [
        "EligibilityBody",
        "BatchBody",
        "GrantBody",
        "DisputeBody",
        "AnswerBody",
        "PromoteBody",
        "PrincipalBody",
        "KeyBody",
    ] {
        if let Some(o) = doc
            .get_mut("components")
            .and_then(|c| c.get_mut("schemas"))
            .and_then(|c| c.get_mut(s))
            .and_then(Value::as_object_mut)
        {
            o.insert("additionalProperties".into(), json!(false));
        }
    }
    // Parameters.
    for (path, method) in [
        ("/v1/merchants/{id}/score", "get"),
        ("/v1/merchants/{id}/eligibility", "post"),
    ] {
        param(&mut doc, path, method, "id", merchant_id.clone());
    }
    param(&mut doc, "/v1/me/eligibility", "get", "amount", amount);
    param(&mut doc, "/v1/me/eligibility", "get", "term_months", term);
    param(&mut doc, "/v1/me/eligibility", "get", "product", id.clone());
    param(
        &mut doc,
        "/v1/me/consents/{id}",
        "delete",
        "id",
        positive.clone(),
    );
    param(&mut doc, "/v1/disputes/{id}/answer", "post", "id", positive);
    param(
        &mut doc,
        "/v1/admin/keys/{key_id}",
        "delete",
        "key_id",
        json!({"type": "string", "pattern": "^[0-9a-f]{12}$"}),
    );
    param(
        &mut doc,
        "/v1/log/entries/{index}",
        "get",
        "index",
        index.clone(),
    );
    param(
        &mut doc,
        "/v1/log/entries/{index}",
        "get",
        "tree_size",
        positive_size(),
    );
    param(
        &mut doc,
        "/v1/log/consistency",
        "get",
        "first",
        positive_size(),
    );
    param(
        &mut doc,
        "/v1/log/consistency",
        "get",
        "second",
        positive_size(),
    );
    for (path, c) in [
        ("/v1/me/queries", &number_cursor),
        ("/v1/me/consents", &number_cursor),
        ("/v1/me/disputes", &number_cursor),
        ("/v1/consents", &number_cursor),
        ("/v1/institutions", &number_cursor),
        ("/v1/disputes", &number_cursor),
        ("/v1/admin/principals", &number_cursor),
        ("/v1/alerts", &id_cursor),
        ("/v1/regulator/watchlist", &number_cursor),
    ] {
        param(&mut doc, path, "get", "limit", limit.clone());
        param(&mut doc, path, "get", "cursor", c.clone());
    }
    // The reports' cursor is a month (its pattern is on the parameter).
    param(
        &mut doc,
        "/v1/regulator/reports",
        "get",
        "limit",
        limit.clone(),
    );
    // Errors on every operation; receipts and request ids on successes.
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(ops) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in ops.iter_mut() {
                let secured = op.get("security").is_some();
                let body = op.get("requestBody").is_some();
                let mut codes = vec![404, 405, 414, 422, 429, 431, 500, 503];
                if secured {
                    codes.extend([401, 403]);
                }
                if body {
                    codes.extend([400, 413, 415]);
                }
                if method == "post" {
                    // A principal that exists, or an idempotency key reused for another
                    // request.
                    codes.push(409);
                }
                if let Some(ps) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                    for p in ps.iter_mut().filter(|p| p["name"] == "Idempotency-Key") {
                        p["schema"] = json!({"type": "string", "pattern": "^[!-~]{1,255}$"});
                    }
                }
                let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                    continue;
                };
                for (status, r) in responses.iter_mut() {
                    // Errors documented by a handler are problem documents too.
                    if !status.starts_with('2') {
                        if let Some(content) = r.get_mut("content").and_then(Value::as_object_mut) {
                            if let Some(schema) = content.remove("application/json") {
                                content.insert("application/problem+json".into(), schema);
                            }
                        }
                    }
                    if status.starts_with('2') {
                        let headers = r
                            .as_object_mut()
                            .map(|o| o.entry("headers").or_insert_with(|| json!({})));
                        if let Some(h) = headers.and_then(Value::as_object_mut) {
                            h.insert(
                                "x-request-id".into(),
                                json!({"description": "The response's id (a ULID), also in the request log and the query log", "schema": {"type": "string"}}),
                            );
                        }
                    }
                }
                for c in codes {
                    responses
                        .entry(c.to_string())
                        .or_insert_with(|| json!({"$ref": format!("#/components/responses/E{c}")}));
                }
            }
        }
    }
    serde_json::to_string_pretty(&doc).map_err(ApiError::internal)
}

fn positive_size() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": i64::MAX})
}

/// The router with every layer: the body limit, the panic catcher, and (outermost) the
/// observing layer.
pub fn router(state: AppState) -> axum::Router {
    let (router, _) = api().split_for_parts();
    router
        .merge(crate::pages::routes())
        .fallback(ops::no_route)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            layers::panicked,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            layers::observe,
        ))
        .with_state(state)
}
