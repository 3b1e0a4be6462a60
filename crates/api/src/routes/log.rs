//! The query log's public face: the public key and the latest signed head (no key needed),
//! an entry with its inclusion proof (for the lender who made it, the merchant it is about,
//! or the platform), and consistency proofs between tree sizes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa::IntoParams;
use yuanxin_store::prelude::*;
use yuanxin_store::{checkpoint::LOG_ORIGIN, hex, Role};

use super::{json_bytes, respond, Caller};
use crate::input::{path_number, Fields, FromFields, Path, Query};
use crate::problem::{ApiError, Code};
use crate::views::{CheckpointView, ConsistencyView, EntryProof, QueryView, SignedHeadView};
use crate::AppState;

#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "log",
    responses((status = 200, body = CheckpointView, description = "The log's Ed25519 public key and its latest signed head")))]
pub(super) async fn checkpoint(State(st): State<AppState>) -> Result<Response, ApiError> {
    let head = st.db.head()?;
    let body = CheckpointView {
        origin: LOG_ORIGIN.to_owned(),
        public_key: hex(&st.db.secrets().public_key()),
        signed_head: SignedHeadView::from(&head),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}

/// Which tree the proof is for.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TreeQuery {
    /// The tree size of a signed head held (a receipt); default the latest.
    pub tree_size: Option<u64>,
}

/// The checked query.
#[derive(Debug)]
pub struct Tree(Option<u64>);

impl FromFields for Tree {
    const FIELDS: &'static [&'static str] = &["tree_size"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        Ok(Tree(
            f.integer("tree_size", 1, i64::MAX)?
                .and_then(|n| u64::try_from(n).ok()),
        ))
    }
}

#[utoipa::path(get, path = "/v1/log/entries/{index}", tag = "log",
    params(("index" = u64, Path, description = "The entry's log index (from a receipt or a page of queries)"), TreeQuery),
    security(("api_key" = [])),
    responses((status = 200, body = EntryProof, description = "The entry and its inclusion proof; a lender sees the entries it made, a merchant the entries about it, platform staff all")))]
pub(super) async fn entry(
    State(st): State<AppState>,
    c: Caller,
    Path(index): Path<String>,
    Query(Tree(size)): Query<Tree>,
) -> Result<Response, ApiError> {
    let index = u64::try_from(path_number("index", &index, 0)?).unwrap_or(0);
    let head = st.db.head()?;
    let size = size.unwrap_or(head.tree_size);
    let hidden = || {
        ApiError::new(
            Code::NotFound,
            format!("no entry {index} of yours in the log's first {size} entries"),
        )
    };
    if index >= size || size > head.tree_size {
        return Err(if size > head.tree_size {
            ApiError::new(
                Code::NotFound,
                format!(
                    "the log has no signed head of size {size} yet (latest {})",
                    head.tree_size
                ),
            )
            .at("tree_size")
        } else {
            hidden()
        });
    }
    let (e, proof, root) = st
        .db
        .read_long(move |s| {
            let e = s.entry(index)?;
            let proof = s.inclusion_proof(index, size)?;
            let root = s.root_at(size)?;
            let name = match &e {
                Some(e) => e
                    .role
                    .parse::<Role>()
                    .ok()
                    .map(|r| s.principal(r, &e.principal_code))
                    .transpose()?
                    .flatten()
                    .map(|p| p.name),
                None => None,
            };
            Ok((e.map(|e| (e, name)), proof, root))
        })
        .await?;
    let Some((e, name)) = e else {
        return Err(hidden());
    };
    let p = &c.principal;
    let visible = match p.role {
        Role::Lender => e.role == "lender" && e.principal_code == p.code,
        Role::Merchant => e.merchant_id == p.code,
        Role::Analyst | Role::Admin => true,
        Role::Regulator => e.role == "regulator" && e.principal_code == p.code,
    };
    if !visible {
        return Err(hidden());
    }
    let name = name.unwrap_or_else(|| e.principal_code.clone());
    let body = EntryProof {
        entry: QueryView::of(&e, &name, None),
        tree_size: size,
        root_hash: hex(&root),
        proof: proof.iter().map(|h| hex(h)).collect(),
        signed_head: SignedHeadView::from(&head),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}

/// Two tree sizes.
// Documentation only: the schema of what `FromFields` reads.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older tree size.
    pub first: u64,
    /// The newer tree size.
    pub second: u64,
}

/// The checked query.
#[derive(Debug)]
pub struct Sizes(u64, u64);

impl FromFields for Sizes {
    const FIELDS: &'static [&'static str] = &["first", "second"];
    fn from_fields(f: &mut Fields, _: &AppState) -> Result<Self, ApiError> {
        let a = Fields::required(f.integer("first", 1, i64::MAX)?, "first")?;
        let b = Fields::required(f.integer("second", 1, i64::MAX)?, "second")?;
        let (a, b) = (u64::try_from(a).unwrap_or(1), u64::try_from(b).unwrap_or(1));
        Ok(Sizes(a.min(b), a.max(b)))
    }
}

#[utoipa::path(get, path = "/v1/log/consistency", tag = "log",
    params(ConsistencyQuery),
    security(("api_key" = [])),
    responses((status = 200, body = ConsistencyView, description = "The proof that the smaller tree is a prefix of the larger (RFC 9162); `first` is the smaller in the answer")))]
pub(super) async fn consistency(
    State(st): State<AppState>,
    _: Caller,
    Query(Sizes(first, second)): Query<Sizes>,
) -> Result<Response, ApiError> {
    let latest = st.db.head()?.tree_size;
    if second > latest {
        return Err(ApiError::new(
            Code::NotFound,
            format!("the log has no signed head of size {second} yet (latest {latest})"),
        )
        .at("second"));
    }
    let (proof, a, b) = st
        .db
        .read_long(move |s| {
            Ok((
                s.consistency_proof(first, second)?,
                s.root_at(first)?,
                s.root_at(second)?,
            ))
        })
        .await?;
    let body = ConsistencyView {
        first,
        second,
        first_root: hex(&a),
        second_root: hex(&b),
        proof: proof.iter().map(|h| hex(h)).collect(),
    };
    Ok(respond(StatusCode::OK, json_bytes(&body)?))
}
