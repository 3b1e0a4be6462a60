//! The service's own state in SQLite: principals and their API keys (stored only as keyed
//! BLAKE3 digests), consents, and the append-only, hash-chained query log.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::ApiError;

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
     CREATE TABLE principals (
        key_id TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL,
        merchant_id TEXT, key_digest BLOB NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT);
     CREATE TABLE consents (
        id INTEGER PRIMARY KEY, merchant_id TEXT NOT NULL, lender TEXT NOT NULL, purpose TEXT NOT NULL,
        granted_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT);
     CREATE TABLE query_log (
        seq INTEGER PRIMARY KEY, at TEXT NOT NULL, principal TEXT NOT NULL, merchant_id TEXT NOT NULL,
        action TEXT NOT NULL, purpose TEXT NOT NULL, consent_id INTEGER, outcome TEXT NOT NULL,
        model_id TEXT NOT NULL, response_digest TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);",
    "CREATE TABLE disputes (
        id INTEGER PRIMARY KEY, merchant_id TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL,
        opened_at TEXT NOT NULL, deadline TEXT NOT NULL, answer TEXT, answered_at TEXT);",
    // What each lender last saw of each merchant, for early-warning alerts.
    "CREATE TABLE lender_views (
        lender TEXT NOT NULL, merchant_id TEXT NOT NULL, at TEXT NOT NULL, grade TEXT NOT NULL,
        escrow_coverage REAL, PRIMARY KEY (lender, merchant_id));
     CREATE INDEX consents_lender ON consents (lender, purpose);",
    "CREATE INDEX consents_merchant ON consents (merchant_id, lender, purpose);
     CREATE INDEX disputes_merchant ON disputes (merchant_id);",
];

/// A merchant's objection (异议) to its information, to be answered within 20 days.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Dispute {
    /// Id.
    pub id: i64,
    /// Merchant.
    pub merchant_id: String,
    /// What is disputed (e.g. a characteristic or a reason code).
    pub subject: String,
    /// The merchant's explanation.
    pub detail: String,
    /// Opened (RFC 3339).
    pub opened_at: String,
    /// Answer due by (opened + 20 days).
    pub deadline: String,
    /// The platform's answer.
    pub answer: Option<String>,
    /// Answered at.
    pub answered_at: Option<String>,
    /// Open and past its deadline at the time of the query.
    pub overdue: bool,
}

/// A principal: who holds a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    /// Public key id.
    pub key_id: String,
    /// `lender`, `merchant`, `analyst` or `admin`.
    pub role: String,
    /// Institution (lenders) or display name.
    pub name: String,
    /// The merchant a merchant key belongs to.
    pub merchant_id: Option<String>,
}

/// A key as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    /// Whose it is.
    pub principal: Principal,
    /// Keyed digest of its secret (`None` if the stored value is damaged).
    pub digest: Option<[u8; 32]>,
    /// Revoked.
    pub revoked: bool,
}

/// A consent from a merchant to a lender.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Consent {
    /// Id.
    pub id: i64,
    /// Merchant.
    pub merchant_id: String,
    /// Lender institution.
    pub lender: String,
    /// `pre_loan` or `post_loan`.
    pub purpose: String,
    /// Granted (RFC 3339).
    pub granted_at: String,
    /// Expires (RFC 3339).
    pub expires_at: String,
    /// Revoked, if so.
    pub revoked_at: Option<String>,
}

/// BLAKE3 of a response body, as the log keeps it.
pub fn digest(body: &[u8]) -> String {
    blake3::hash(body).to_hex().to_string()
}

/// A query-log entry to write: the caller's side of a [`LogEntry`].
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Time (RFC 3339).
    pub at: String,
    /// Key id of the caller.
    pub principal: String,
    /// Merchant concerned.
    pub merchant_id: String,
    /// `score`, `eligibility`, …
    pub action: String,
    /// Stated purpose.
    pub purpose: String,
    /// Consent relied on.
    pub consent_id: Option<i64>,
    /// `served` or `refused`.
    pub outcome: String,
    /// Model that served.
    pub model_id: String,
    /// BLAKE3 of the response body (hex).
    pub response_digest: String,
    /// What the lender was shown, remembered for early-warning alerts.
    pub seen: Option<Seen>,
}

/// What a lender was last shown of a merchant.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// Lender institution.
    pub lender: String,
    /// Grade served.
    pub grade: String,
    /// Escrow coverage in the profile served.
    pub escrow_coverage: Option<f64>,
}

/// One query-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LogEntry {
    /// Position in the chain.
    pub seq: i64,
    /// Time (RFC 3339).
    pub at: String,
    /// Key id of the caller.
    pub principal: String,
    /// Merchant concerned.
    pub merchant_id: String,
    /// `score`, `eligibility`, …
    pub action: String,
    /// Stated purpose.
    pub purpose: String,
    /// Consent relied on.
    pub consent_id: Option<i64>,
    /// `served` or `refused`.
    pub outcome: String,
    /// Model that served.
    pub model_id: String,
    /// BLAKE3 of the response body.
    pub response_digest: String,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// Hash of this entry (chained).
    pub hash: String,
}

/// The database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    secret: [u8; 32],
}

fn db(e: rusqlite::Error) -> ApiError {
    ApiError::Internal(format!("database: {e}"))
}

/// 32 random bytes from the operating system.
pub fn random32() -> Result<[u8; 32], ApiError> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| ApiError::Internal(format!("randomness: {e}")))?;
    Ok(b)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Keyed with the store's secret, so the chain cannot be recomputed by someone who can
/// only edit the database file.
fn entry_hash(secret: &[u8; 32], e: &LogEntry) -> String {
    let mut h = blake3::Hasher::new_keyed(secret);
    for part in [
        e.seq.to_string().as_str(),
        &e.at,
        &e.principal,
        &e.merchant_id,
        &e.action,
        &e.purpose,
        &e.consent_id.map(|c| c.to_string()).unwrap_or_default(),
        &e.outcome,
        &e.model_id,
        &e.response_digest,
        &e.prev_hash,
    ] {
        h.update(part.as_bytes());
        h.update(&[0x1f]);
    }
    h.finalize().to_hex().to_string()
}

impl Store {
    /// Opens (creating and migrating) the database.
    pub fn open(path: &Path) -> Result<Store, ApiError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ApiError::Internal(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
        )
        .map_err(db)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        for (i, m) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            conn.execute_batch(m).map_err(db)?;
            conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(db)?;
        }
        let secret: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE key = 'key_secret'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        let secret = match secret {
            Some(s) => <[u8; 32]>::try_from(s.as_slice())
                .map_err(|_| ApiError::Internal("the key secret is damaged".into()))?,
            None => {
                let s = random32()?;
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('key_secret', ?1)",
                    params![s.to_vec()],
                )
                .map_err(db)?;
                s
            }
        };
        Ok(Store { conn, secret })
    }

    /// Opens a dispute.
    pub fn open_dispute(
        &self,
        merchant_id: &str,
        subject: &str,
        detail: &str,
        now: &str,
        deadline: &str,
    ) -> Result<Dispute, ApiError> {
        self.conn
            .execute(
                "INSERT INTO disputes (merchant_id, subject, detail, opened_at, deadline) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![merchant_id, subject, detail, now, deadline],
            )
            .map_err(db)?;
        let id = self.conn.last_insert_rowid();
        self.disputes(Some(merchant_id), now)?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| ApiError::Internal("the dispute just written is missing".into()))
    }

    /// Disputes of one merchant, or all, oldest first, with `overdue` as of `now`.
    pub fn disputes(&self, merchant_id: Option<&str>, now: &str) -> Result<Vec<Dispute>, ApiError> {
        let mut st = self
            .conn
            .prepare("SELECT id, merchant_id, subject, detail, opened_at, deadline, answer, answered_at FROM disputes WHERE ?1 IS NULL OR merchant_id = ?1 ORDER BY id")
            .map_err(db)?;
        let rows = st
            .query_map(params![merchant_id], |r| {
                let deadline: String = r.get(5)?;
                let answer: Option<String> = r.get(6)?;
                Ok(Dispute {
                    id: r.get(0)?,
                    merchant_id: r.get(1)?,
                    subject: r.get(2)?,
                    detail: r.get(3)?,
                    opened_at: r.get(4)?,
                    overdue: answer.is_none() && deadline.as_str() < now,
                    deadline,
                    answer,
                    answered_at: r.get(7)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Answers an open dispute; returns its merchant, or `None` if there is no such open
    /// dispute.
    pub fn answer_dispute(
        &self,
        id: i64,
        answer: &str,
        now: &str,
    ) -> Result<Option<String>, ApiError> {
        self.conn
            .query_row(
                "UPDATE disputes SET answer = ?2, answered_at = ?3 WHERE id = ?1 AND answer IS NULL RETURNING merchant_id",
                params![id, answer, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
    }

    /// Merchants with open disputes, and how many each has.
    pub fn open_disputes(&self) -> Result<Vec<(String, u32)>, ApiError> {
        let mut st = self
            .conn
            .prepare("SELECT merchant_id, count(*) FROM disputes WHERE answer IS NULL GROUP BY merchant_id")
            .map_err(db)?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Every consent not revoked (expired ones included: expiry is checked at use).
    pub fn active_consents(&self) -> Result<Vec<Consent>, ApiError> {
        let mut st = self
            .conn
            .prepare("SELECT id, merchant_id, lender, purpose, granted_at, expires_at, revoked_at FROM consents WHERE revoked_at IS NULL ORDER BY id")
            .map_err(db)?;
        let rows = st
            .query_map([], |r| {
                Ok(Consent {
                    id: r.get(0)?,
                    merchant_id: r.get(1)?,
                    lender: r.get(2)?,
                    purpose: r.get(3)?,
                    granted_at: r.get(4)?,
                    expires_at: r.get(5)?,
                    revoked_at: r.get(6)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// The keyed-digest secret (for checking keys held in memory).
    pub fn secret(&self) -> [u8; 32] {
        self.secret
    }

    /// Counter bumped by every key creation and revocation, so a service holding keys in
    /// memory notices changes made by `yuanxin keys`.
    pub fn keys_version(&self) -> Result<i64, ApiError> {
        self.conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'keys_version'")
            .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)).optional())
            .map(Option::unwrap_or_default)
            .map_err(db)
    }

    fn bump_keys_version(&self) -> Result<(), ApiError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('keys_version', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1",
                [],
            )
            .map_err(db)?;
        Ok(())
    }

    /// Every key: its principal, stored digest and whether it is revoked; one key or all.
    pub fn keys(&self, key_id: Option<&str>) -> Result<Vec<StoredKey>, ApiError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT key_id, role, name, merchant_id, key_digest, revoked_at FROM principals WHERE ?1 IS NULL OR key_id = ?1",
            )
            .map_err(db)?;
        let rows = st
            .query_map(params![key_id], |r| {
                let digest: Vec<u8> = r.get(4)?;
                let revoked: Option<String> = r.get(5)?;
                Ok(StoredKey {
                    principal: Principal {
                        key_id: r.get(0)?,
                        role: r.get(1)?,
                        name: r.get(2)?,
                        merchant_id: r.get(3)?,
                    },
                    digest: <[u8; 32]>::try_from(digest.as_slice()).ok(),
                    revoked: revoked.is_some(),
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Checks the database answers.
    pub fn ping(&self) -> Result<(), ApiError> {
        self.conn
            .query_row("SELECT count(*) FROM principals", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(db)?;
        Ok(())
    }

    /// Creates a key; returns the principal and the full key (shown once).
    pub fn create_key(
        &self,
        role: &str,
        name: &str,
        merchant_id: Option<&str>,
        now: &str,
    ) -> Result<(Principal, String), ApiError> {
        if !["lender", "merchant", "analyst", "admin"].contains(&role) {
            return Err(ApiError::BadRequest(format!("unknown role {role}")));
        }
        if (role == "merchant") != merchant_id.is_some() {
            return Err(ApiError::BadRequest(
                "a merchant key needs a merchant id, and only a merchant key has one".into(),
            ));
        }
        let r = random32()?;
        let key_id = hex(&r[..6]);
        let secret = hex(&r[6..26]);
        let digest = blake3::keyed_hash(&self.secret, secret.as_bytes());
        self.conn
            .execute(
                "INSERT INTO principals (key_id, role, name, merchant_id, key_digest, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key_id, role, name, merchant_id, digest.as_bytes().to_vec(), now],
            )
            .map_err(db)?;
        self.bump_keys_version()?;
        let p = Principal {
            key_id: key_id.clone(),
            role: role.into(),
            name: name.into(),
            merchant_id: merchant_id.map(str::to_owned),
        };
        Ok((p, format!("yx_{key_id}_{secret}")))
    }

    /// Revokes a key; false if there is no such active key.
    pub fn revoke_key(&self, key_id: &str, now: &str) -> Result<bool, ApiError> {
        let n = self
            .conn
            .execute(
                "UPDATE principals SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
                params![key_id, now],
            )
            .map_err(db)?;
        self.bump_keys_version()?;
        Ok(n > 0)
    }

    /// Revokes every key of a name (used to reissue the demo keys).
    pub fn revoke_named(&self, name: &str, now: &str) -> Result<(), ApiError> {
        self.conn
            .execute(
                "UPDATE principals SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, now],
            )
            .map_err(db)?;
        self.bump_keys_version()?;
        Ok(())
    }

    /// Records a consent.
    pub fn grant(
        &self,
        merchant_id: &str,
        lender: &str,
        purpose: &str,
        now: &str,
        expires: &str,
    ) -> Result<Consent, ApiError> {
        self.conn
            .execute(
                "INSERT INTO consents (merchant_id, lender, purpose, granted_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![merchant_id, lender, purpose, now, expires],
            )
            .map_err(db)?;
        Ok(Consent {
            id: self.conn.last_insert_rowid(),
            merchant_id: merchant_id.into(),
            lender: lender.into(),
            purpose: purpose.into(),
            granted_at: now.into(),
            expires_at: expires.into(),
            revoked_at: None,
        })
    }

    /// Revokes a merchant's own consent; false if it has no such active consent.
    pub fn revoke_consent(&self, merchant_id: &str, id: i64, now: &str) -> Result<bool, ApiError> {
        let n = self
            .conn
            .execute("UPDATE consents SET revoked_at = ?3 WHERE id = ?1 AND merchant_id = ?2 AND revoked_at IS NULL", params![id, merchant_id, now])
            .map_err(db)?;
        Ok(n > 0)
    }

    /// A merchant's consents.
    pub fn consents(&self, merchant_id: &str) -> Result<Vec<Consent>, ApiError> {
        let mut st = self
            .conn
            .prepare("SELECT id, merchant_id, lender, purpose, granted_at, expires_at, revoked_at FROM consents WHERE merchant_id = ?1 ORDER BY id")
            .map_err(db)?;
        let rows = st
            .query_map(params![merchant_id], |r| {
                Ok(Consent {
                    id: r.get(0)?,
                    merchant_id: r.get(1)?,
                    lender: r.get(2)?,
                    purpose: r.get(3)?,
                    granted_at: r.get(4)?,
                    expires_at: r.get(5)?,
                    revoked_at: r.get(6)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// The consent in force for a lender, merchant and purpose at a time.
    pub fn valid_consent(
        &self,
        merchant_id: &str,
        lender: &str,
        purpose: &str,
        now: &str,
    ) -> Result<Option<i64>, ApiError> {
        self.conn
            .prepare_cached(
                "SELECT id FROM consents WHERE merchant_id = ?1 AND lender = ?2 AND purpose = ?3 AND revoked_at IS NULL
                 AND granted_at <= ?4 AND expires_at > ?4 ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut st| {
                st.query_row(params![merchant_id, lender, purpose, now], |r| r.get(0))
                    .optional()
            })
            .map_err(db)
    }

    /// Appends one query-log entry (see [`Store::log_batch`]).
    pub fn log(&mut self, record: LogRecord) -> Result<LogEntry, ApiError> {
        self.log_batch(vec![record])?
            .pop()
            .ok_or_else(|| ApiError::Internal("the log entry just written is missing".into()))
    }

    /// Appends query-log entries, each chained to the one before, and records what each
    /// lender saw, in one transaction: one durable commit (WAL, `synchronous=FULL`) for the
    /// whole batch. Either every entry is written or none is.
    pub fn log_batch(&mut self, records: Vec<LogRecord>) -> Result<Vec<LogEntry>, ApiError> {
        // IMMEDIATE: take the write lock before reading the chain's head, so the busy
        // timeout applies and the head cannot go stale between the read and the write.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let last: Option<(i64, String)> = tx
            .prepare_cached("SELECT seq, hash FROM query_log ORDER BY seq DESC LIMIT 1")
            .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(db)?;
        let (mut seq, mut prev_hash) = last.map_or((0, "0".repeat(64)), |(s, h)| (s, h));
        let mut out = Vec::with_capacity(records.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO query_log (seq, at, principal, merchant_id, action, purpose, consent_id, outcome, model_id, response_digest, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(db)?;
            let mut view = tx
                .prepare_cached(
                    "INSERT INTO lender_views (lender, merchant_id, at, grade, escrow_coverage) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(lender, merchant_id) DO UPDATE SET at = excluded.at, grade = excluded.grade, escrow_coverage = excluded.escrow_coverage",
                )
                .map_err(db)?;
            for r in records {
                seq += 1;
                let mut e = LogEntry {
                    seq,
                    at: r.at,
                    principal: r.principal,
                    merchant_id: r.merchant_id,
                    action: r.action,
                    purpose: r.purpose,
                    consent_id: r.consent_id,
                    outcome: r.outcome,
                    model_id: r.model_id,
                    response_digest: r.response_digest,
                    prev_hash: std::mem::take(&mut prev_hash),
                    hash: String::new(),
                };
                e.hash = entry_hash(&self.secret, &e);
                insert
                    .execute(params![
                        e.seq,
                        e.at,
                        e.principal,
                        e.merchant_id,
                        e.action,
                        e.purpose,
                        e.consent_id,
                        e.outcome,
                        e.model_id,
                        e.response_digest,
                        e.prev_hash,
                        e.hash
                    ])
                    .map_err(db)?;
                if let Some(v) = &r.seen {
                    view.execute(params![
                        v.lender,
                        e.merchant_id,
                        e.at,
                        v.grade,
                        v.escrow_coverage
                    ])
                    .map_err(db)?;
                }
                prev_hash.clone_from(&e.hash);
                out.push(e);
            }
        }
        // The head of the chain, so a truncated log is detected too.
        tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('log_head', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut st| st.execute(params![format!("{seq}:{prev_hash}").into_bytes()]))
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// What a lender last saw of a merchant.
    pub fn last_seen(&self, lender: &str, merchant_id: &str) -> Result<Option<Seen>, ApiError> {
        self.conn
            .prepare_cached(
                "SELECT grade, escrow_coverage FROM lender_views WHERE lender = ?1 AND merchant_id = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![lender, merchant_id], |r| {
                    Ok(Seen {
                        lender: lender.to_owned(),
                        grade: r.get(0)?,
                        escrow_coverage: r.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(db)
    }

    /// Merchants with a consent in force to a lender for a purpose.
    pub fn consenting(
        &self,
        lender: &str,
        purpose: &str,
        now: &str,
    ) -> Result<Vec<(String, i64)>, ApiError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT merchant_id, max(id) FROM consents WHERE lender = ?1 AND purpose = ?2 AND revoked_at IS NULL
                 AND granted_at <= ?3 AND expires_at > ?3 GROUP BY merchant_id ORDER BY merchant_id",
            )
            .map_err(db)?;
        let rows = st
            .query_map(params![lender, purpose, now], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Log entries, all or about one merchant, in order.
    pub fn entries(&self, merchant_id: Option<&str>) -> Result<Vec<LogEntry>, ApiError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT seq, at, principal, merchant_id, action, purpose, consent_id, outcome, model_id, response_digest, prev_hash, hash
                 FROM query_log WHERE ?1 IS NULL OR merchant_id = ?1 ORDER BY rowid",
            )
            .map_err(db)?;
        let rows = st
            .query_map(params![merchant_id], |r| {
                Ok(LogEntry {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    principal: r.get(2)?,
                    merchant_id: r.get(3)?,
                    action: r.get(4)?,
                    purpose: r.get(5)?,
                    consent_id: r.get(6)?,
                    outcome: r.get(7)?,
                    model_id: r.get(8)?,
                    response_digest: r.get(9)?,
                    prev_hash: r.get(10)?,
                    hash: r.get(11)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Checks the chain: every entry's hash, its link to the previous one, and consecutive
    /// sequence numbers from 1. Returns the number of entries, or what is wrong.
    pub fn verify(&self) -> Result<Result<usize, String>, ApiError> {
        let entries = self.entries(None)?;
        let mut prev = "0".repeat(64);
        for (i, e) in entries.iter().enumerate() {
            let want_seq = i64::try_from(i).unwrap_or(i64::MAX) + 1;
            if e.seq != want_seq {
                return Ok(Err(format!(
                    "entry {} is out of place (expected {want_seq}): deleted or reordered entries",
                    e.seq
                )));
            }
            if e.prev_hash != prev {
                return Ok(Err(format!(
                    "entry {} does not link to the entry before it",
                    e.seq
                )));
            }
            if entry_hash(&self.secret, e) != e.hash {
                return Ok(Err(format!(
                    "entry {} was altered (its hash does not match its content)",
                    e.seq
                )));
            }
            prev = e.hash.clone();
        }
        let head: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'log_head'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        let want = head.map(|h| String::from_utf8_lossy(&h).into_owned());
        let have = entries.last().map(|e| format!("{}:{}", e.seq, e.hash));
        if want != have {
            return Ok(Err(format!(
                "the log ends at {} but its recorded head is {}: entries were removed from the end",
                have.unwrap_or_else(|| "nothing".into()),
                want.unwrap_or_else(|| "nothing".into())
            )));
        }
        Ok(Ok(entries.len()))
    }
}
