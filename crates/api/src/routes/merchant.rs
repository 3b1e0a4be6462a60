//! Merchants: their own score, profile and eligibility, who queried them (with inclusion
//! proofs against the signed log), their consents and their disputes.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use yuanxin_store::prelude::*;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use utoipa::{IntoParams, ToSchema};
use yuanxin_store::{
    ConsentId, Created, DisputeFilter, DisputeId, Grant, Idempotency, NewDispute, PageRequest,
    PrincipalId, Role,
};

use super::lender::{limit, term};
use super::{cursor, json_bytes, respond, Caller, MerchantCaller};
use crate::engine::{HistoryView, ProfileView, ScoreView};
use crate::input::{path_number, Fields, FromFields, IdempotencyKey, Json, NoQuery, Path, Query};
use crate::problem::{ApiError, Code};
use crate::views::{
    ConsentPage, ConsentView, DisputePage, DisputeView, InstitutionPage, InstitutionView,
    QueryPage, QueryView, SignedHeadView,
};
use crate::{AppState, ConsentPurpose, LoanPurpose};

#[utoipa::path(get, path = "/v1/me/score", tag = "merchant",
    security(("api_key" = [])),
    responses((status = 200, body = ScoreView)))]
pub(super) async fn my_score(
    State(st): State<AppState>,
    m: MerchantCaller,
    Query(NoQuery): Query<NoQuery>,
) -> Result<Response, ApiError> {
    let me = m.merchant()?;
    let body = st
        .engine()?
        .score(me.as_str())?
        .json(st.authz.has_open_dispute(me.as_str())?)?;
    Ok(respond(StatusCode::OK, body))
}

#[utoipa::path(get, path = "/v1/me/profile", tag = "merchant",
    security(("api_key" = [])),
    responses((status = 200, body = ProfileView)))]
pub(super) async fn my_profile(
    State(st): State<AppState>,
    m: MerchantCaller,
    Query(NoQuery): Query<NoQuery>,
) -> Result<Response, ApiError> {
    Ok(respond(
        StatusCode::OK,
        json_bytes(&st.engine()?.profile(m.merchant()?.as_str())?)?,
    ))
}

#[utoipa::path(get, path = "/v1/me/history", tag = "merchant",
    security(("api_key" = [])),
    responses((status = 200, body = HistoryView, description = "The score at the last 12 month-ends, oldest first")))]
pub(super) async fn my_history(
    State(st): State<AppState>,
    m: MerchantCaller,
    Query(NoQuery): Query<NoQuery>,
) -> Result<Response, ApiError> {
    Ok(respond(
        StatusCode::OK,
        json_bytes(&st.engine()?.history(m.merchant()?.as_str())?)?,
    ))
}

#[utoipa::path(get, path = "/v1/institutions", tag = "merchant",
    params(PageQuery),
    security(("api_key" = [])),
    responses((status = 200, body = InstitutionPage, description = "The lender institutions a merchant can consent to")))]
pub(super) async fn institutions(
    State(st): State<AppState>,
    _: Caller,
    Query(Paging(page)): Query<Paging<PrincipalId>>,
) -> Result<Response, ApiError> {
    let p = st
        .db
        .read_long(move |s| Ok(s.principals_of_role(Role::Lender, page)?))
        .await?;
    let body = InstitutionPage {
        items: p
            .items
            .iter()
            .map(|p| InstitutionView {
                code: p.code.clone(),
                name: p.name.clone(),
            })
            .collect(),
        next_cursor: cursor(p.next),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}

/// A merchant's own eligibility question.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MyEligibilityQuery {
    /// Amount, yuan.
    pub amount: String,
    /// Term, months.
    pub term_months: u32,
    /// What the loan is for (default working_capital).
    #[param(inline)]
    pub loan_purpose: Option<LoanPurpose>,
    /// A specific product.
    pub product: Option<String>,
}

/// The checked question.
#[derive(Debug)]
pub struct MyEligibility {
    amount: Decimal,
    term_months: u32,
    loan_purpose: LoanPurpose,
    product: Option<String>,
}

impl FromFields for MyEligibility {
    const FIELDS: &'static [&'static str] = &["amount", "term_months", "loan_purpose", "product"];
    fn from_fields(f: &mut Fields, st: &AppState) -> Result<Self, ApiError> {
        Ok(MyEligibility {
            amount: Fields::required(f.amount("amount")?, "amount")?,
            term_months: Fields::required(term(f, st)?, "term_months")?,
            loan_purpose: f
                .choice("loan_purpose")?
                .unwrap_or(LoanPurpose::WorkingCapital),
            product: f.id("product")?,
        })
    }
}

#[utoipa::path(get, path = "/v1/me/eligibility", tag = "merchant",
    params(MyEligibilityQuery),
    security(("api_key" = [])),
    responses((status = 200, body = crate::views::DecisionView, description = "The decision across products, with improvement hints")))]
pub(super) async fn my_eligibility(
    State(st): State<AppState>,
    m: MerchantCaller,
    Query(q): Query<MyEligibility>,
) -> Result<Response, ApiError> {
    let me = m.merchant()?;
    let dispute = st.authz.has_open_dispute(me.as_str())?;
    let (body, _) = st.engine()?.decision(
        me.as_str(),
        q.amount,
        q.term_months,
        q.loan_purpose,
        q.product,
        dispute,
    )?;
    Ok(respond(StatusCode::OK, body))
}

/// A page request of "who queried me".
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueriesQuery {
    /// Entries per page (1–500, default 50).
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Include each entry's inclusion proof against the page's signed head.
    pub proofs: Option<bool>,
}

/// The checked request.
#[derive(Debug)]
pub struct Queries {
    limit: u32,
    cursor: Option<u64>,
    proofs: bool,
}

/// A numeric cursor.
pub(super) fn number_cursor<C: From<i64>>(f: &mut Fields) -> Result<Option<C>, ApiError> {
    Ok(f.integer("cursor", 0, 999_999_999_999_999_999)?
        .map(C::from))
}

impl FromFields for Queries {
    const FIELDS: &'static [&'static str] = &["limit", "cursor", "proofs"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(Queries {
            limit: limit(f)?,
            cursor: number_cursor::<i64>(f)?.and_then(|c| u64::try_from(c).ok()),
            proofs: f.boolean("proofs")?.unwrap_or(false),
        })
    }
}

#[utoipa::path(get, path = "/v1/me/queries", tag = "merchant",
    params(QueriesQuery),
    security(("api_key" = [])),
    responses((status = 200, body = QueryPage, description = "Every query about me, served or refused, newest first, by institution; with `proofs=true` each entry's inclusion proof against the signed head")))]
pub(super) async fn my_queries(
    State(st): State<AppState>,
    m: MerchantCaller,
    Query(q): Query<Queries>,
) -> Result<Response, ApiError> {
    let me = m.merchant()?;
    let head = st.db.head()?;
    let size = head.tree_size;
    let page = st
        .db
        .read_long(move |s| {
            let page = s.entries_about(
                &me,
                size,
                PageRequest {
                    cursor: q.cursor,
                    limit: q.limit,
                },
            )?;
            let proofs = if q.proofs {
                let idx: Vec<u64> = page.items.iter().map(|e| e.index).collect();
                Some(s.inclusion_proofs(&idx, size)?)
            } else {
                None
            };
            let mut names: HashMap<(String, String), String> = HashMap::new();
            for e in &page.items {
                if let Entry::Vacant(slot) = names.entry((e.role.clone(), e.principal_code.clone()))
                {
                    let name = match e.role.parse::<Role>() {
                        Ok(r) => s.principal(r, &e.principal_code)?.map(|p| p.name),
                        Err(_) => None,
                    };
                    slot.insert(name.unwrap_or_else(|| e.principal_code.clone()));
                }
            }
            let mut proofs = proofs.map(Vec::into_iter);
            let items: Vec<QueryView> = page
                .items
                .iter()
                .map(|e| {
                    let name = names
                        .get(&(e.role.clone(), e.principal_code.clone()))
                        .map_or("", String::as_str);
                    QueryView::of(e, name, proofs.as_mut().and_then(Iterator::next))
                })
                .collect();
            Ok((items, page.next))
        })
        .await?;
    let body = QueryPage {
        items: page.0,
        next_cursor: cursor(page.1),
        signed_head: SignedHeadView::from(&head),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}

/// A page request.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (1–500, default 50).
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// The checked page request, by the kind of id its cursor is.
#[derive(Debug)]
pub struct Paging<C>(pub PageRequest<C>);

impl<C: From<i64>> FromFields for Paging<C> {
    const FIELDS: &'static [&'static str] = &["limit", "cursor"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(Paging(PageRequest {
            limit: limit(f)?,
            cursor: number_cursor(f)?,
        }))
    }
}

#[utoipa::path(get, path = "/v1/me/consents", tag = "merchant",
    params(PageQuery),
    security(("api_key" = [])),
    responses((status = 200, body = ConsentPage)))]
pub(super) async fn my_consents(
    State(st): State<AppState>,
    m: MerchantCaller,
    Query(Paging(page)): Query<Paging<ConsentId>>,
) -> Result<Response, ApiError> {
    let me = m.merchant()?;
    let now = (st.now)();
    let p = st
        .db
        .read_long(move |s| Ok(s.consents_of(&me, page)?))
        .await?;
    let body = ConsentPage {
        items: p.items.iter().map(|c| ConsentView::of(c, now)).collect(),
        next_cursor: cursor(p.next),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}

/// A consent grant.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct GrantBody {
    /// The lender institution's code.
    pub lender: String,
    /// The purpose.
    pub purpose: ConsentPurpose,
    /// Days it lasts (1–366).
    pub days: u32,
}

/// The checked grant.
#[derive(Debug)]
pub struct GrantReq {
    lender: String,
    purpose: ConsentPurpose,
    days: i64,
}

impl FromFields for GrantReq {
    const FIELDS: &'static [&'static str] = &["lender", "purpose", "days"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(GrantReq {
            lender: Fields::required(f.id("lender")?, "lender")?,
            purpose: Fields::required(f.choice("purpose")?, "purpose")?,
            days: Fields::required(f.integer("days", 1, 366)?, "days")?,
        })
    }
}

/// The idempotency record of a creating request: the caller, the key, and a digest of the
/// route and the body.
pub(super) fn idempotency(
    principal_id: PrincipalId,
    key: Option<String>,
    route: &str,
    body: &[u8],
) -> Option<Idempotency> {
    key.map(|key| {
        let mut h = blake3::Hasher::new();
        h.update(route.as_bytes());
        h.update(&[0]);
        h.update(body);
        Idempotency {
            principal_id,
            key,
            fingerprint: *h.finalize().as_bytes(),
        }
    })
}

/// The stored response body of an idempotent request, encrypted: the body of a created
/// key holds the key itself, which must not rest in the database in the clear. The
/// keystream is BLAKE3's extendable output keyed with the API-key secret (outside the
/// database) over the principal and the idempotency key, which name one stored body, so no
/// keystream is ever used for two bodies. The same call decrypts.
pub(super) fn seal(secret: &[u8; 32], idem: &Idempotency, body: &[u8]) -> Vec<u8> {
    let mut h = blake3::Hasher::new_keyed(secret);
    h.update(b"yuanxin idempotent response v1\0");
    h.update(&idem.principal_id.0.to_be_bytes());
    h.update(idem.key.as_bytes());
    let mut stream = vec![0u8; body.len()];
    h.finalize_xof().fill(&mut stream);
    body.iter().zip(stream).map(|(b, s)| b ^ s).collect()
}

/// What the store keeps for a replay: the body, sealed (empty without an idempotency key,
/// since nothing will be replayed).
pub(super) fn stored(
    secret: &[u8; 32],
    idem: Option<&Idempotency>,
    body: Result<Vec<u8>, ApiError>,
) -> Result<Vec<u8>, String> {
    let body = body.map_err(|e| e.to_string())?;
    Ok(idem.map(|i| seal(secret, i, &body)).unwrap_or_default())
}

/// A 201 with the body of what was created, or, for a retry, the first response's body
/// (marked `Idempotent-Replayed: true`).
pub(super) fn created<T>(
    c: &Created<T>,
    secret: &[u8; 32],
    idem: Option<&Idempotency>,
    body: impl Fn(&T) -> Result<Vec<u8>, ApiError>,
) -> Result<Response, ApiError> {
    Ok(match (c, idem) {
        (Created::New(v, _), _) => respond(StatusCode::CREATED, body(v)?),
        (Created::Replayed(sealed), Some(i)) => {
            let mut r = respond(StatusCode::CREATED, seal(secret, i, sealed));
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
        (Created::Replayed(_), None) => {
            return Err(ApiError::internal("a replay without an idempotency key"))
        }
    })
}

/// A creating request, idempotent with a key: `create` runs in the store's write
/// transaction with the record of its response (`view` of what it made, sealed); a retry
/// gets that response back. Returns the answer, and what was made (not on a replay).
pub(super) async fn create_once<T, F, V>(
    st: &AppState,
    idem: Option<Idempotency>,
    view: V,
    create: F,
) -> Result<(Response, Option<T>), ApiError>
where
    T: Send + 'static,
    F: FnOnce(
            &mut yuanxin_store::Store,
            &yuanxin_store::Secrets,
            Option<&Idempotency>,
            &dyn Fn(&T) -> Result<Vec<u8>, String>,
        ) -> Result<Created<T>, ApiError>
        + Send
        + 'static,
    V: Fn(&T) -> Result<Vec<u8>, ApiError> + Copy + Send + 'static,
{
    let secret = *st.db.secrets().api_key_secret();
    let key = idem.clone();
    let made = st
        .db
        .write(move |s, secrets| {
            let seal = |t: &T| stored(&secret, key.as_ref(), view(t));
            create(s, secrets, key.as_ref(), &seal)
        })
        .await?;
    let response = created(&made, &secret, idem.as_ref(), view)?;
    Ok((
        response,
        match made {
            Created::New(t, _) => Some(t),
            Created::Replayed(_) => None,
        },
    ))
}

#[utoipa::path(post, path = "/v1/me/consents", tag = "merchant",
    request_body = GrantBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first response (kept 24 h)")),
    security(("api_key" = [])),
    responses((status = 201, body = ConsentView)))]
pub(super) async fn grant(
    State(st): State<AppState>,
    m: MerchantCaller,
    IdempotencyKey(key): IdempotencyKey,
    Json(b, raw): Json<GrantReq>,
) -> Result<Response, ApiError> {
    let me = m.merchant()?;
    let idem = idempotency(m.0.principal.id, key, "POST /v1/me/consents", &raw);
    let now = (st.now)();
    let expires = now
        .plus_days(b.days)
        .ok_or_else(|| ApiError::internal("date out of range"))?;
    let view = move |c: &yuanxin_store::Consent| json_bytes(&ConsentView::of(c, now));
    let (response, made) = create_once(&st, idem, view, move |s, _, idem, seal| {
        let lender = s.principal(Role::Lender, &b.lender)?.ok_or_else(|| {
            ApiError::new(
                Code::UnknownPrincipal,
                format!("no lender institution {}", b.lender),
            )
            .at("lender")
        })?;
        let g = Grant {
            merchant_id: &me,
            lender: &lender,
            purpose: b.purpose.into(),
            granted_at: now,
            expires_at: expires,
        };
        Ok(s.grant(&g, idem, seal)?)
    })
    .await?;
    if let Some(consent) = made {
        st.authz.granted(&consent)?;
    }
    Ok(response)
}

#[utoipa::path(delete, path = "/v1/me/consents/{id}", tag = "merchant",
    params(("id" = i64, Path, description = "Consent id")),
    security(("api_key" = [])),
    responses((status = 204, description = "Revoked")))]
pub(super) async fn revoke(
    State(st): State<AppState>,
    m: MerchantCaller,
    Path(id): Path<String>,
    Query(NoQuery): Query<NoQuery>,
) -> Result<Response, ApiError> {
    let id = ConsentId(path_number("id", &id, 1)?);
    let me = m.merchant()?;
    let now = (st.now)();
    let merchant = me.clone();
    // Revoking is idempotent: a consent of yours revoked before answers 204 again.
    let exists = st
        .db
        .write(move |s, _| {
            s.revoke_consent(&me, id, now)?;
            Ok(s.consent_of(&me, id)?.is_some())
        })
        .await?;
    st.authz.revoked(merchant.as_str(), id)?;
    if exists {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            Code::NotFound,
            format!("you have no consent {id}"),
        ))
    }
}

/// A dispute to open.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct DisputeBody {
    /// What is disputed (a characteristic, a reason code, a query): 1–200 characters.
    pub subject: String,
    /// Why: up to 4,000 characters.
    pub detail: String,
}

/// The checked dispute.
#[derive(Debug)]
pub struct DisputeReq {
    subject: String,
    detail: String,
}

impl FromFields for DisputeReq {
    const FIELDS: &'static [&'static str] = &["subject", "detail"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(DisputeReq {
            subject: Fields::required(f.text("subject", 200)?, "subject")?,
            detail: Fields::required(f.text_within("detail", 0, 4000)?, "detail")?,
        })
    }
}

/// Days the platform has to answer an objection (征信业管理条例 art. 25).
const DISPUTE_DAYS: i64 = 20;

#[utoipa::path(post, path = "/v1/me/disputes", tag = "merchant",
    request_body = DisputeBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first response (kept 24 h)")),
    security(("api_key" = [])),
    responses((status = 201, body = DisputeView)))]
pub(super) async fn open_dispute(
    State(st): State<AppState>,
    m: MerchantCaller,
    IdempotencyKey(key): IdempotencyKey,
    Json(b, raw): Json<DisputeReq>,
) -> Result<Response, ApiError> {
    let me = m.merchant()?;
    let idem = idempotency(m.0.principal.id, key, "POST /v1/me/disputes", &raw);
    let now = (st.now)();
    let deadline = now
        .plus_days(DISPUTE_DAYS)
        .ok_or_else(|| ApiError::internal("date out of range"))?;
    let view = move |d: &yuanxin_store::Dispute| json_bytes(&DisputeView::of(d, now));
    let (response, made) = create_once(&st, idem, view, move |s, _, idem, seal| {
        let d = NewDispute {
            merchant_id: &me,
            subject: &b.subject,
            detail: &b.detail,
            opened_at: now,
            deadline,
        };
        Ok(s.open_dispute(&d, idem, seal)?)
    })
    .await?;
    if let Some(d) = made {
        st.authz.dispute(d.merchant_id.as_str(), true)?;
    }
    Ok(response)
}

#[utoipa::path(get, path = "/v1/me/disputes", tag = "merchant",
    params(PageQuery),
    security(("api_key" = [])),
    responses((status = 200, body = DisputePage)))]
pub(super) async fn my_disputes(
    State(st): State<AppState>,
    m: MerchantCaller,
    Query(Paging(page)): Query<Paging<DisputeId>>,
) -> Result<Response, ApiError> {
    let me = m.merchant()?;
    let now = (st.now)();
    let p = st
        .db
        .read_long(move |s| Ok(s.disputes(DisputeFilter::Merchant(&me), page)?))
        .await?;
    let body = DisputePage {
        items: p.items.iter().map(|d| DisputeView::of(d, now)).collect(),
        next_cursor: cursor(p.next),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}
