//! The service's wire types for the store's records: what lenders, merchants, analysts and
//! admins are sent. Only this crate knows their JSON and OpenAPI form.

use serde::Serialize;
use utoipa::ToSchema;
use yuanxin_store::{hex, Consent, Dispute, LogEntry, Principal, SignedHead, Timestamp};

use crate::{ConsentPurpose, RoleName};

/// A principal: an institution, a merchant, or platform staff.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrincipalView {
    /// Role.
    pub role: RoleName,
    /// Stable public code (an institution code, a merchant id, a login name).
    pub code: String,
    /// Display name.
    pub name: String,
    /// Created (RFC 3339, +08:00).
    pub created_at: String,
}

impl From<&Principal> for PrincipalView {
    fn from(p: &Principal) -> PrincipalView {
        PrincipalView {
            role: p.role.into(),
            code: p.code.clone(),
            name: p.name.clone(),
            created_at: p.created_at.to_string(),
        }
    }
}

/// An institution, by code and name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstitutionView {
    /// Stable code.
    pub code: String,
    /// Name.
    pub name: String,
}

/// A consent from a merchant to a lender institution.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentView {
    /// Id.
    pub id: i64,
    /// Merchant.
    pub merchant_id: String,
    /// The lender institution.
    pub lender: InstitutionView,
    /// Purpose.
    pub purpose: ConsentPurpose,
    /// Granted (RFC 3339, +08:00).
    pub granted_at: String,
    /// Expires.
    pub expires_at: String,
    /// Revoked, if so.
    pub revoked_at: Option<String>,
    /// In force now.
    pub in_force: bool,
}

impl ConsentView {
    /// The view at a time.
    pub fn of(c: &Consent, now: Timestamp) -> ConsentView {
        ConsentView {
            id: c.id,
            merchant_id: c.merchant_id.clone(),
            lender: InstitutionView {
                code: c.lender_code.clone(),
                name: c.lender_name.clone(),
            },
            purpose: c.purpose.into(),
            granted_at: c.granted_at.to_string(),
            expires_at: c.expires_at.to_string(),
            revoked_at: c.revoked_at.map(|t| t.to_string()),
            in_force: c.in_force(now),
        }
    }
}

/// A page of consents.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentPage {
    /// Oldest first.
    pub items: Vec<ConsentView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A merchant's objection (异议), answered within 20 days.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisputeView {
    /// Id.
    pub id: i64,
    /// Merchant.
    pub merchant_id: String,
    /// What is disputed.
    pub subject: String,
    /// The merchant's explanation.
    pub detail: String,
    /// Opened (RFC 3339, +08:00).
    pub opened_at: String,
    /// Answer due by (opened + 20 days).
    pub deadline: String,
    /// The platform's answer.
    pub answer: Option<String>,
    /// Answered at.
    pub answered_at: Option<String>,
    /// Open and past its deadline now.
    pub overdue: bool,
}

impl DisputeView {
    /// The view at a time.
    pub fn of(d: &Dispute, now: Timestamp) -> DisputeView {
        DisputeView {
            id: d.id,
            merchant_id: d.merchant_id.clone(),
            subject: d.subject.clone(),
            detail: d.detail.clone(),
            opened_at: d.opened_at.to_string(),
            deadline: d.deadline.to_string(),
            answer: d.answer.clone(),
            answered_at: d.answered_at.map(|t| t.to_string()),
            overdue: d.overdue(now),
        }
    }
}

/// A page of disputes.
#[derive(Debug, Serialize, ToSchema)]
pub struct DisputePage {
    /// Oldest first.
    pub items: Vec<DisputeView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A signed tree head of the query log: the log's first `tree_size` entries have Merkle
/// root `root_hash` (RFC 9162, SHA-256), signed with Ed25519 over the four lines
/// `yuanxin-query-log-v1`, the tree size, the root hash in hex and the timestamp, each
/// ended by a newline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignedHeadView {
    /// Entries covered.
    pub tree_size: u64,
    /// Merkle root, hex.
    pub root_hash: String,
    /// When it was signed (RFC 3339, +08:00).
    pub timestamp: String,
    /// Ed25519 signature, hex.
    pub signature: String,
}

impl From<&SignedHead> for SignedHeadView {
    fn from(h: &SignedHead) -> SignedHeadView {
        let j = h.to_json();
        SignedHeadView {
            tree_size: j.tree_size,
            root_hash: j.root_hash,
            timestamp: j.timestamp,
            signature: j.signature,
        }
    }
}

/// The log's public key and its latest signed head.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// The first line of every signed message.
    pub origin: String,
    /// The Ed25519 public key, hex.
    pub public_key: String,
    /// The latest signed head.
    pub signed_head: SignedHeadView,
}

/// A query-log entry as the merchant (or the lender who made it) sees it: every field of
/// its leaf, so its leaf hash can be recomputed (see `docs/service.md`), the institution's
/// name, and optionally the inclusion proof.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueryView {
    /// Position in the log (leaf index).
    pub index: u64,
    /// When (RFC 3339, +08:00).
    pub at: String,
    /// The response's id.
    pub request_id: String,
    /// Role of who asked.
    pub role: String,
    /// Who asked: code (in the leaf) and name.
    pub institution: InstitutionView,
    /// The key used.
    pub key_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// `score`, `eligibility`, `batch_score` or `alerts`.
    pub action: String,
    /// The consent purpose stated.
    pub purpose: String,
    /// The consent relied on.
    pub consent_id: Option<i64>,
    /// `served` or `refused`.
    pub outcome: String,
    /// The model.
    pub model_id: String,
    /// BLAKE3 of the response body, hex.
    pub response_digest: String,
    /// SHA-256 leaf hash, hex.
    pub leaf_hash: String,
    /// The inclusion proof against the page's signed head (hex hashes, leaf side first),
    /// when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<Vec<String>>,
}

impl QueryView {
    /// The view of an entry, with the name of the institution.
    pub fn of(e: &LogEntry, name: &str, proof: Option<Vec<[u8; 32]>>) -> QueryView {
        QueryView {
            index: e.index,
            at: e.at.clone(),
            request_id: e.request_id.clone(),
            role: e.role.clone(),
            institution: InstitutionView {
                code: e.principal_code.clone(),
                name: name.to_owned(),
            },
            key_id: e.key_id.clone(),
            merchant_id: e.merchant_id.clone(),
            action: e.action.clone(),
            purpose: e.purpose.clone(),
            consent_id: e.consent_id,
            outcome: e.outcome.clone(),
            model_id: e.model_id.clone(),
            response_digest: e.response_digest.clone(),
            leaf_hash: hex(&e.leaf_hash),
            proof: proof.map(|p| p.iter().map(|h| hex(h)).collect()),
        }
    }
}

/// A page of "who queried me".
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryPage {
    /// Newest first.
    pub items: Vec<QueryView>,
    /// Pass as `cursor` for the next (older) page; null on the last.
    pub next_cursor: Option<String>,
    /// The signed head the entries (and their proofs) are read against.
    pub signed_head: SignedHeadView,
}

/// One entry with its inclusion proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryProof {
    /// The entry.
    pub entry: QueryView,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The Merkle root of that tree, hex (as in the signed head of that size).
    pub root_hash: String,
    /// The inclusion proof (hex hashes, leaf side first).
    pub proof: Vec<String>,
    /// The latest signed head.
    pub signed_head: SignedHeadView,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyView {
    /// The older tree size.
    pub first: u64,
    /// The newer tree size.
    pub second: u64,
    /// Root of the older tree, hex.
    pub first_root: String,
    /// Root of the newer tree, hex.
    pub second_root: String,
    /// RFC 9162 consistency proof (hex hashes).
    pub proof: Vec<String>,
}

/// A page of principals.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalPage {
    /// In creation order.
    pub items: Vec<PrincipalView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A key just created: the full key is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreated {
    /// The public id (revoke by it).
    pub key_id: String,
    /// The key: `Authorization: Bearer <key>`. Not stored; shown once.
    pub key: String,
    /// Whose it is.
    pub principal: PrincipalView,
    /// Created.
    pub created_at: String,
}
