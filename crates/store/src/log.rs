//! The query log: one entry per score, decision, batch item or alert served to a lender,
//! and per refusal, appended as leaves of a Merkle tree whose head is signed at every
//! commit.
//!
//! An entry's leaf is `SHA-256(0x00 || leaf_bytes(entry))`, where [`leaf_bytes`] is the
//! line `yuanxin-log-entry-v1` and a newline, then each field as its length (4 bytes, big
//! endian) and its UTF-8 bytes, in this order: `at`, `request_id`, `role`,
//! `principal_code`, `key_id`, `merchant_id`, `action`, `purpose`, `consent_id` (decimal,
//! or empty), `outcome`, `model_id`, `response_digest`. Anyone holding an entry can
//! recompute its leaf.
//!
//! The log is one table, written at its end: each row is an entry, with the interior
//! nodes it completes (levels [`STORED_FROM_LEVEL`] and up, as one blob) and, on the last
//! entry of each commit, that commit's signed head. So a commit touches the pages at the
//! table's end and the merchant index, nothing else, and every head ever signed stays in
//! the database for audits.

use std::collections::HashMap;
use std::sync::Arc;
use yuanxin_domain::MerchantId;

use crate::checkpoint::{SignedHead, SignedHeadJson};
use crate::merkle::{self, leaf_hash, Frontier, Hash, Nodes};
use crate::sql::{args, Arg, Conn, Lock, Row};
use crate::{
    ConsentId, Page, PageRequest, Principal, PrincipalId, Purpose, Secrets, Store, StoreError,
    Timestamp,
};

/// Served or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The score or decision was sent.
    Served,
    /// The query was refused (no consent in force).
    Refused,
}

impl Outcome {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::Refused => "refused",
        }
    }
}

/// What a lender was shown of a merchant, remembered for early-warning alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The lender's principal id.
    pub lender_id: PrincipalId,
    /// Grade served.
    pub grade: String,
    /// Escrow coverage in the profile served.
    pub escrow_coverage: Option<f64>,
}

/// An entry to append. Its text is shared (`Arc<str>`) with the request that logs it, so a
/// record costs the request no copies.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// When it was served or refused.
    pub at: Timestamp,
    /// The response's id (also returned to the caller in a header).
    pub request_id: Arc<str>,
    /// Who asked.
    pub principal: Arc<Principal>,
    /// With which key.
    pub key_id: Arc<str>,
    /// About which merchant.
    pub merchant_id: MerchantId,
    /// `score`, `eligibility`, `batch_score` or `alerts`.
    pub action: &'static str,
    /// The consent purpose stated.
    pub purpose: Purpose,
    /// The consent relied on.
    pub consent_id: Option<ConsentId>,
    /// Served or refused.
    pub outcome: Outcome,
    /// The model that served.
    pub model_id: Arc<str>,
    /// BLAKE3 of the response body (hex).
    pub response_digest: Arc<str>,
    /// What the lender was shown, to remember for alerts (written in the same transaction).
    pub seen: Option<Seen>,
}

/// An entry as stored: every field of its leaf, as text, and the leaf hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in the log (0-based leaf index).
    pub index: u64,
    /// RFC 3339.
    pub at: String,
    /// The response's id (empty for entries older than response ids).
    pub request_id: String,
    /// The role of who asked.
    pub role: String,
    /// The code of who asked (an institution code).
    pub principal_code: String,
    /// The key used.
    pub key_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// What was asked.
    pub action: String,
    /// The consent purpose stated.
    pub purpose: String,
    /// The consent relied on.
    pub consent_id: Option<ConsentId>,
    /// `served` or `refused`.
    pub outcome: String,
    /// The model.
    pub model_id: String,
    /// BLAKE3 of the response body (hex).
    pub response_digest: String,
    /// `SHA-256(0x00 || leaf_bytes)`.
    pub leaf_hash: Hash,
}

/// The bytes an entry's leaf hashes (see the module documentation).
pub fn leaf_bytes(e: &LogEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_leaf(
        &mut out,
        [
            &e.at,
            &e.request_id,
            &e.role,
            &e.principal_code,
            &e.key_id,
            &e.merchant_id,
            &e.action,
            &e.purpose,
        ],
        e.consent_id,
        [&e.outcome, &e.model_id, &e.response_digest],
    );
    out
}

/// Appends the leaf encoding of these fields (in leaf order, the consent between) to `out`.
fn encode_leaf(out: &mut Vec<u8>, before: [&str; 8], consent: Option<ConsentId>, after: [&str; 3]) {
    let consent = consent.map(|c| c.to_string()).unwrap_or_default();
    out.extend_from_slice(b"yuanxin-log-entry-v1\n");
    let fields = before
        .into_iter()
        .chain(std::iter::once(consent.as_str()))
        .chain(after);
    for f in fields {
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
}

const ENTRY: &str = "idx, at, request_id, role, principal_code, key_id, merchant_id, action, purpose, consent_id, outcome, model_id, response_digest, leaf_hash FROM log_entries";

fn entry(r: &Row) -> Result<LogEntry, StoreError> {
    let idx: i64 = r.get(0)?;
    let leaf: Vec<u8> = r.get(13)?;
    Ok(LogEntry {
        index: u64::try_from(idx).unwrap_or(0),
        at: r.get(1)?,
        request_id: r.get(2)?,
        role: r.get(3)?,
        principal_code: r.get(4)?,
        key_id: r.get(5)?,
        merchant_id: r.get(6)?,
        action: r.get(7)?,
        purpose: r.get(8)?,
        consent_id: r.get(9)?,
        outcome: r.get(10)?,
        model_id: r.get(11)?,
        response_digest: r.get(12)?,
        // A damaged hash reads as zeros, which never matches: audit reports the entry.
        leaf_hash: <[u8; 32]>::try_from(leaf.as_slice()).unwrap_or([0; 32]),
    })
}

/// The lowest level of interior nodes kept (in the row of the entry that completes them).
/// Levels 1–3 (subtrees of up to 8 leaves) are recomputed from the leaves when a proof
/// needs them: at most 14 leaf reads a proof, against a node written with nearly every
/// entry if every level were kept (the log's write path is the service's hot path; its
/// proofs are not).
pub const STORED_FROM_LEVEL: u32 = 4;

/// What an append did: the index of its first entry, how many, and the signed head that
/// covers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The first entry's index (the others follow it).
    pub first: u64,
    /// Entries appended.
    pub count: u64,
    /// The signed head of the commit.
    pub head: SignedHead,
}

/// Perfect subtrees read from the database (level 0: the entries' leaf hashes; levels
/// below [`STORED_FROM_LEVEL`] computed from them), memoised for the duration of one proof
/// or page.
pub(crate) struct SqlNodes<'c> {
    conn: &'c Conn,
    memo: HashMap<(u32, u64), Hash>,
}

impl<'c> SqlNodes<'c> {
    pub(crate) fn new(conn: &'c Conn) -> SqlNodes<'c> {
        SqlNodes {
            conn,
            memo: HashMap::new(),
        }
    }
}

impl Nodes for SqlNodes<'_> {
    type Error = StoreError;
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, StoreError> {
        if let Some(h) = self.memo.get(&(level, index)) {
            return Ok(*h);
        }
        let i =
            i64::try_from(index).map_err(|_| StoreError::Invalid("index out of range".into()))?;
        if (1..STORED_FROM_LEVEL).contains(&level) {
            let left = self.node(level - 1, 2 * index)?;
            let right = self.node(level - 1, 2 * index + 1)?;
            let h = merkle::node_hash(&left, &right);
            self.memo.insert((level, index), h);
            return Ok(h);
        }
        let bytes: Option<Vec<u8>> = if level == 0 {
            self.conn
                .row("SELECT leaf_hash FROM log_entries WHERE idx = ?1", args![i])?
                .map(|r| r.get(0))
                .transpose()?
        } else {
            // The node is in the row of the entry that completed it.
            let completer = index
                .checked_add(1)
                .and_then(|k| k.checked_mul(1u64.checked_shl(level)?))
                .and_then(|k| k.checked_sub(1))
                .and_then(|k| i64::try_from(k).ok());
            let blob: Option<Vec<u8>> = match completer {
                Some(k) => self
                    .conn
                    .row("SELECT nodes FROM log_entries WHERE idx = ?1", args![k])?
                    .map(|r| r.get::<Option<Vec<u8>>>(0))
                    .transpose()?
                    .flatten(),
                None => None,
            };
            let at = (level - STORED_FROM_LEVEL) as usize * 32;
            blob.and_then(|b| b.get(at..at + 32).map(<[u8]>::to_vec))
        };
        let h = bytes
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                StoreError::Damaged(format!("the log's tree node ({level}, {index}) is missing"))
            })?;
        self.memo.insert((level, index), h);
        Ok(h)
    }
}

fn size_of(conn: &Conn) -> Result<u64, StoreError> {
    let n: Option<i64> = conn
        .row("SELECT max(idx) FROM log_entries", &[])?
        .map_or(Ok(None), |r| r.get(0))?;
    Ok(n.map_or(0, |i| u64::try_from(i + 1).unwrap_or(0)))
}

/// The query log: appends, sealing with a signed head, entries and their proofs.
pub trait QueryLog {
    /// Appends entries and records what each lender saw, in one transaction that ends with
    /// a signed tree head: one durable commit for the whole batch, all or nothing. Returns
    /// where the entries went and the head that covers them (their receipt).
    fn append(
        &mut self,
        records: Vec<LogRecord>,
        secrets: &Secrets,
        now: Timestamp,
    ) -> Result<Appended, StoreError>;

    /// Signs a head for the log as it stands, if the stored head does not already cover
    /// it (an upgraded or new database), and returns the current head.
    fn seal(&mut self, secrets: &Secrets, now: Timestamp) -> Result<SignedHead, StoreError>;

    /// The latest signed head, as the last commit left it.
    fn head(&self) -> Result<Option<SignedHead>, StoreError>;

    /// Entries in the log.
    fn log_size(&self) -> Result<u64, StoreError>;

    /// One entry.
    fn entry(&self, index: u64) -> Result<Option<LogEntry>, StoreError>;

    /// Entries about a merchant within the first `tree_size` entries, newest first, a page
    /// at a time (the cursor is the last index shown; the next page is below it).
    fn entries_about(
        &self,
        merchant_id: &MerchantId,
        tree_size: u64,
        page: PageRequest<u64>,
    ) -> Result<Page<LogEntry, u64>, StoreError>;

    /// The inclusion proof of entry `index` in the tree of the first `tree_size` entries.
    fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError>;

    /// Inclusion proofs of several entries in one tree, sharing the nodes read.
    fn inclusion_proofs(
        &self,
        indices: &[u64],
        tree_size: u64,
    ) -> Result<Vec<Vec<Hash>>, StoreError>;

    /// The consistency proof from the tree of `old` entries to the tree of `new`.
    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError>;

    /// The root of the tree of the first `tree_size` entries.
    fn root_at(&self, tree_size: u64) -> Result<Hash, StoreError>;
}

impl QueryLog for Store {
    fn append(
        &mut self,
        records: Vec<LogRecord>,
        secrets: &Secrets,
        now: Timestamp,
    ) -> Result<Appended, StoreError> {
        // The log's write lock is taken before the size is read, so it cannot go stale;
        // another writer (a replica on the same PostgreSQL) may have appended since this
        // connection's last append, so the remembered frontier is checked against it.
        let cached = self.frontier.take();
        let (appended, frontier) = self.conn.write(Lock::Log, |tx| {
            let size = size_of(tx)?;
            let frontier = match cached {
                Some(f) if f.size() == size => f,
                _ => Frontier::load(&mut SqlNodes::new(tx), size)?,
            };
            append_rows(tx, frontier, records, secrets, now)
        })?;
        self.frontier = Some(frontier);
        Ok(appended)
    }

    fn seal(&mut self, secrets: &Secrets, now: Timestamp) -> Result<SignedHead, StoreError> {
        self.conn.write(Lock::Log, |tx| {
            let size = size_of(tx)?;
            let current = read_head(tx)?;
            Ok(match current {
                Some(h) if h.tree_size == size && h.verify(&secrets.verifying_key()) => h,
                _ => {
                    let root = Frontier::load(&mut SqlNodes::new(tx), size)?.root();
                    let h = SignedHead::sign(secrets, size, root, now);
                    write_head(tx, &h)?;
                    h
                }
            })
        })
    }

    fn head(&self) -> Result<Option<SignedHead>, StoreError> {
        read_head(&self.conn)
    }

    fn log_size(&self) -> Result<u64, StoreError> {
        size_of(&self.conn)
    }

    fn entry(&self, index: u64) -> Result<Option<LogEntry>, StoreError> {
        let Ok(i) = i64::try_from(index) else {
            return Ok(None);
        };
        self.conn
            .row(&format!("SELECT {ENTRY} WHERE idx = ?1"), args![i])?
            .as_ref()
            .map(entry)
            .transpose()
    }

    fn entries_about(
        &self,
        merchant_id: &MerchantId,
        tree_size: u64,
        page: PageRequest<u64>,
    ) -> Result<Page<LogEntry, u64>, StoreError> {
        let below = page.cursor.map_or(tree_size, |c| c.min(tree_size));
        let below = i64::try_from(below).unwrap_or(i64::MAX);
        let items = self
            .conn
            .rows(
                &format!(
                    "SELECT {ENTRY} WHERE merchant_id = ?1 AND idx < ?2 ORDER BY idx DESC LIMIT ?3"
                ),
                args![merchant_id.as_str(), below, page.sql_limit()],
            )?
            .iter()
            .map(entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |e| e.index))
    }

    fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(tree_size)?;
        merkle::inclusion_proof(&mut SqlNodes::new(&self.conn), index, tree_size)
    }

    fn inclusion_proofs(
        &self,
        indices: &[u64],
        tree_size: u64,
    ) -> Result<Vec<Vec<Hash>>, StoreError> {
        self.check_size(tree_size)?;
        let mut nodes = SqlNodes::new(&self.conn);
        indices
            .iter()
            .map(|&i| merkle::inclusion_proof(&mut nodes, i, tree_size))
            .collect()
    }

    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(new)?;
        merkle::consistency_proof(&mut SqlNodes::new(&self.conn), old, new)
    }

    fn root_at(&self, tree_size: u64) -> Result<Hash, StoreError> {
        self.check_size(tree_size)?;
        merkle::subtree(&mut SqlNodes::new(&self.conn), 0, tree_size)
    }
}

impl Store {
    fn check_size(&self, tree_size: u64) -> Result<(), StoreError> {
        let size = size_of(&self.conn)?;
        if tree_size > size {
            return Err(StoreError::NotFound {
                what: "tree size",
                id: format!("{tree_size} (the log holds {size} entries)"),
            });
        }
        Ok(())
    }
}

fn head_json(head: &SignedHead) -> Result<String, StoreError> {
    serde_json::to_string(&head.to_json()).map_err(|e| StoreError::Damaged(e.to_string()))
}

pub(crate) fn parse_head(text: &str) -> Result<SignedHead, StoreError> {
    let j: SignedHeadJson = serde_json::from_str(text)
        .map_err(|e| StoreError::Damaged(format!("signed tree head: {e}")))?;
    SignedHead::from_json(&j)
}

/// The latest signed head: on the last entry, or, for an empty log, in `meta`.
fn read_head(conn: &Conn) -> Result<Option<SignedHead>, StoreError> {
    let last: Option<Option<String>> = conn
        .row(
            "SELECT head FROM log_entries ORDER BY idx DESC LIMIT 1",
            &[],
        )?
        .map(|r| r.get(0))
        .transpose()?;
    let text = match last {
        Some(h) => h,
        None => conn
            .row(
                "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'signed_head'",
                &[],
            )?
            .map(|r| r.get(0))
            .transpose()?,
    };
    text.as_deref().map(parse_head).transpose()
}

/// Writes a head where [`read_head`] finds it.
fn write_head(conn: &Conn, head: &SignedHead) -> Result<(), StoreError> {
    let json = head_json(head)?;
    match head.tree_size.checked_sub(1) {
        Some(last) => {
            let last = i64::try_from(last).map_err(|_| StoreError::Invalid("tree size".into()))?;
            conn.exec(
                "UPDATE log_entries SET head = ?1 WHERE idx = ?2",
                args![json, last],
            )?;
        }
        None => {
            conn.exec(
                "INSERT INTO meta (key, value) VALUES ('signed_head', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                args![json],
            )?;
        }
    }
    Ok(())
}

/// One row as an audit reads it: the entry, the nodes it stores, the head it carries.
pub(crate) type AuditRow = (LogEntry, Option<Vec<u8>>, Option<String>);

impl Store {
    /// Rows from `start`, in order, up to `limit`, with their stored nodes and heads.
    pub(crate) fn audit_rows(&self, start: u64, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
        let start = i64::try_from(start).unwrap_or(i64::MAX);
        self.conn
            .rows(
                "SELECT idx, at, request_id, role, principal_code, key_id, merchant_id, action, purpose, consent_id, outcome, model_id, response_digest, leaf_hash, nodes, head
                 FROM log_entries WHERE idx >= ?1 ORDER BY idx LIMIT ?2",
                args![start, limit],
            )?
            .iter()
            .map(|r| Ok((entry(r)?, r.get(14)?, r.get(15)?)))
            .collect()
    }
}

/// Columns of a log row.
const LOG_WIDTH: usize = 17;

/// The rows of one append, inside its transaction: the leaves and the nodes each
/// completes, then the head over all of them, then the rows (the last one carrying the
/// head). Nothing is copied: the rows bind the records' own text.
fn append_rows(
    tx: &Conn,
    mut frontier: Frontier,
    records: Vec<LogRecord>,
    secrets: &Secrets,
    now: Timestamp,
) -> Result<(Appended, Frontier), StoreError> {
    let first = frontier.size();
    let count = records.len() as u64;
    let mut rows: Vec<(LogRecord, Hash, Vec<u8>)> = Vec::with_capacity(records.len());
    // Entries of one commit mostly share their second: format it once.
    let mut at_text: Vec<(Timestamp, String)> = Vec::new();
    let mut buf = Vec::with_capacity(320);
    for r in records {
        if at_text.last().is_none_or(|(t, _)| *t != r.at) {
            at_text.push((r.at, r.at.to_string()));
        }
        let at = at_text.last().map_or("", |(_, text)| text.as_str());
        buf.clear();
        encode_leaf(
            &mut buf,
            [
                at,
                &r.request_id,
                r.principal.role.as_str(),
                &r.principal.code,
                &r.key_id,
                r.merchant_id.as_str(),
                r.action,
                r.purpose.as_str(),
            ],
            r.consent_id,
            [r.outcome.as_str(), &r.model_id, &r.response_digest],
        );
        let leaf = leaf_hash(&buf);
        let mut nodes = Vec::new();
        frontier.push(leaf, |level, _, h| {
            if level >= STORED_FROM_LEVEL {
                nodes.extend_from_slice(h);
            }
        });
        rows.push((r, leaf, nodes));
    }
    let head = SignedHead::sign(secrets, frontier.size(), frontier.root(), now);
    let head_json = head_json(&head)?;
    let last = rows.len().saturating_sub(1);
    // Every row's values, then one statement for all (many rows a round trip on
    // PostgreSQL), then the lender views they record.
    let mut values: Vec<Arg<'_>> = Vec::with_capacity(rows.len() * LOG_WIDTH);
    let mut views = Vec::new();
    let mut at_iter = at_text.iter().peekable();
    for (k, (r, leaf, nodes)) in rows.iter().enumerate() {
        while at_iter.peek().is_some_and(|(t, _)| *t != r.at) {
            at_iter.next();
        }
        let at = at_iter.peek().map_or("", |(_, text)| text.as_str());
        let idx = i64::try_from(first + k as u64)
            .map_err(|_| StoreError::Invalid("the log is full".into()))?;
        values.extend([
            Arg::Int(idx),
            Arg::Text(at),
            Arg::Text(&r.request_id),
            Arg::Text(r.principal.role.as_str()),
            Arg::Text(&r.principal.code),
            Arg::Int(r.principal.id.0),
            Arg::Text(&r.key_id),
            Arg::Text(r.merchant_id.as_str()),
            Arg::Text(r.action),
            Arg::Text(r.purpose.as_str()),
            r.consent_id.map_or(Arg::Null, |c| Arg::Int(c.0)),
            Arg::Text(r.outcome.as_str()),
            Arg::Text(&r.model_id),
            Arg::Text(&r.response_digest),
            Arg::Blob(leaf),
            if nodes.is_empty() {
                Arg::Null
            } else {
                Arg::Blob(nodes)
            },
            if k == last {
                Arg::Text(&head_json)
            } else {
                Arg::Null
            },
        ]);
        if let Some(v) = &r.seen {
            views.push((v, r.merchant_id.as_str(), at));
        }
    }
    tx.insert_rows(
        "INSERT INTO log_entries (idx, at, request_id, role, principal_code, principal_id, key_id, merchant_id, action, purpose, consent_id, outcome, model_id, response_digest, leaf_hash, nodes, head)",
        LOG_WIDTH,
        &values,
    )?;
    for (v, merchant, at) in views {
        tx.exec(
            "INSERT INTO lender_views (lender_id, merchant_id, at, grade, escrow_coverage) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (lender_id, merchant_id) DO UPDATE SET at = excluded.at, grade = excluded.grade, escrow_coverage = excluded.escrow_coverage",
            args![v.lender_id, merchant, at, v.grade, v.escrow_coverage],
        )?;
    }
    if rows.is_empty() {
        write_head(tx, &head)?;
    }
    Ok((Appended { first, count, head }, frontier))
}
