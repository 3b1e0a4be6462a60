//! Admins: principals (institutions with stable codes, platform staff) and API keys. A key
//! revoked here is refused from the next request on: the in-memory copy changes as part of
//! the revocation.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa::ToSchema;
use yuanxin_domain::MerchantId;
use yuanxin_store::prelude::*;
use yuanxin_store::{PrincipalId, Role, StoreError};

use super::merchant::{create_once, idempotency, PageQuery, Paging};
use super::{cursor, json_bytes, respond, AdminCaller};
use crate::input::{Fields, FromFields, IdempotencyKey, Json, NoQuery, Path, Query};
use crate::problem::{ApiError, Code};
use crate::views::{KeyCreated, PrincipalPage, PrincipalView};
use crate::{AppState, RoleName};

#[utoipa::path(get, path = "/v1/admin/principals", tag = "admin",
    params(PageQuery),
    security(("api_key" = [])),
    responses((status = 200, body = PrincipalPage)))]
pub(super) async fn principals(
    State(st): State<AppState>,
    _: AdminCaller,
    Query(Paging(page)): Query<Paging<PrincipalId>>,
) -> Result<Response, ApiError> {
    let p = st.db.read_long(move |s| Ok(s.principals(page)?)).await?;
    let body = PrincipalPage {
        items: p.items.iter().map(PrincipalView::from).collect(),
        next_cursor: cursor(p.next),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}

/// A principal to add.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct PrincipalBody {
    /// Role.
    pub role: RoleName,
    /// Stable code, unique within the role (a merchant's is its merchant id).
    pub code: String,
    /// Display name.
    pub name: String,
}

/// The checked request.
#[derive(Debug)]
pub struct NewPrincipal {
    role: RoleName,
    code: String,
    name: String,
}

impl FromFields for NewPrincipal {
    const FIELDS: &'static [&'static str] = &["role", "code", "name"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(NewPrincipal {
            role: Fields::required(f.choice("role")?, "role")?,
            code: Fields::required(f.id("code")?, "code")?,
            name: Fields::required(f.text("name", 200)?, "name")?,
        })
    }
}

#[utoipa::path(post, path = "/v1/admin/principals", tag = "admin",
    request_body = PrincipalBody,
    security(("api_key" = [])),
    responses((status = 201, body = PrincipalView)))]
pub(super) async fn add_principal(
    State(st): State<AppState>,
    _: AdminCaller,
    Json(b, _): Json<NewPrincipal>,
) -> Result<Response, ApiError> {
    let now = (st.now)();
    let p = st
        .db
        .write(move |s, _| Ok(s.add_principal(b.role.into(), &b.code, &b.name, now)?))
        .await?;
    Ok(respond(
        StatusCode::CREATED,
        json_bytes(&PrincipalView::from(&p))?,
    ))
}

/// A key to create.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct KeyBody {
    /// The principal's role.
    pub role: RoleName,
    /// The principal's code (a merchant's principal is made on first use).
    pub principal: String,
}

/// The checked request.
#[derive(Debug)]
pub struct NewKey {
    role: RoleName,
    principal: String,
}

impl FromFields for NewKey {
    const FIELDS: &'static [&'static str] = &["role", "principal"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(NewKey {
            role: Fields::required(f.choice("role")?, "role")?,
            principal: Fields::required(f.id("principal")?, "principal")?,
        })
    }
}

#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin",
    request_body = KeyBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first response (kept 24 h)")),
    security(("api_key" = [])),
    responses((status = 201, body = KeyCreated, description = "The key, shown this once")))]
pub(super) async fn create_key(
    State(st): State<AppState>,
    a: AdminCaller,
    IdempotencyKey(key): IdempotencyKey,
    Json(b, raw): Json<NewKey>,
) -> Result<Response, ApiError> {
    let idem = idempotency(a.0.principal.id, key, "POST /v1/admin/keys", &raw);
    let now = (st.now)();
    let view = |(k, full): &(yuanxin_store::ApiKey, String)| {
        json_bytes(&KeyCreated {
            key_id: k.key_id.clone(),
            key: full.clone(),
            principal: PrincipalView::from(&k.principal),
            created_at: k.created_at.to_string(),
        })
    };
    let (response, made) = create_once(&st, idem, view, move |s, secrets, idem, seal| {
        let role: Role = b.role.into();
        let p = if role == Role::Merchant {
            let id = MerchantId::parse(&b.principal)
                .map_err(|e| ApiError::from(StoreError::Invalid(e.to_string())))?;
            s.merchant_principal(&id, now)?
        } else {
            s.principal(role, &b.principal)?.ok_or_else(|| {
                ApiError::new(
                    Code::UnknownPrincipal,
                    format!("no {role} with code {}", b.principal),
                )
                .at("principal")
            })?
        };
        Ok(s.create_key(&p, secrets, now, idem, seal)?)
    })
    .await?;
    if let Some((k, _)) = made {
        st.authz.key_created(&k)?;
    }
    Ok(response)
}

#[utoipa::path(delete, path = "/v1/admin/keys/{key_id}", tag = "admin",
    params(("key_id" = String, Path, description = "The key's public id")),
    security(("api_key" = [])),
    responses((status = 204, description = "Revoked: refused from the next request on")))]
pub(super) async fn revoke_key(
    State(st): State<AppState>,
    _: AdminCaller,
    Path(key_id): Path<String>,
    Query(NoQuery): Query<NoQuery>,
) -> Result<Response, ApiError> {
    if key_id.len() != 12
        || !key_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ApiError::invalid(
            "key_id",
            "must be 12 lowercase hex digits",
        ));
    }
    let now = (st.now)();
    let id = key_id.clone();
    // Revoking is idempotent: a key revoked before answers 204 again; only a key that was
    // never issued is not found.
    let exists = st
        .db
        .write(move |s, _| {
            s.revoke_key(&id, now)?;
            Ok(!s.keys(Some(&id))?.is_empty())
        })
        .await?;
    // The copy in memory refuses the key from now on, whatever the database said.
    st.authz.key_revoked(&key_id, now)?;
    if exists {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            Code::NotFound,
            format!("no key {key_id} was ever issued"),
        ))
    }
}
