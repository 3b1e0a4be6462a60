//! The schema and its migrations. Versions 1–4 are the first service's tables (a
//! hash-chained query log keyed with a secret inside the database, consents naming lenders
//! by free text); version 5 is this layout, reached from 4 by [`upgrade_v5`], which checks
//! the old chain before moving it into the Merkle log, so an upgrade never launders a
//! tampered log.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Transaction};

use crate::log::leaf_bytes;
use crate::merkle::{leaf_hash, Frontier};
use crate::sql::{args, Conn, MIGRATION_LOCK};
use crate::{LogEntry, OpenMode, StoreError};

/// The first service's migrations, kept so that any older database can be brought up.
const LEGACY: &[&str] = &[
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
    "CREATE TABLE lender_views (
        lender TEXT NOT NULL, merchant_id TEXT NOT NULL, at TEXT NOT NULL, grade TEXT NOT NULL,
        escrow_coverage REAL, PRIMARY KEY (lender, merchant_id));
     CREATE INDEX consents_lender ON consents (lender, purpose);",
    "CREATE INDEX consents_merchant ON consents (merchant_id, lender, purpose);
     CREATE INDEX disputes_merchant ON disputes (merchant_id);",
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = 6;

/// Version 5 → 6 on SQLite: the shared rate allowances ([`crate::allowance`]).
const V6_SQLITE: &str =
    "CREATE TABLE allowances (bucket TEXT PRIMARY KEY, tat_us INTEGER NOT NULL) WITHOUT ROWID;";

/// The steps from version 5 (the first schema on PostgreSQL) on, in order: the step at
/// index `i` takes version `5 + i` to `6 + i`.
const POSTGRES_UPGRADES: &[&str] =
    &[r#"CREATE TABLE allowances (bucket TEXT COLLATE "C" PRIMARY KEY, tat_us BIGINT NOT NULL);"#];

const V5_TABLES: &str = "
    CREATE TABLE principals5 (
        id INTEGER PRIMARY KEY, role TEXT NOT NULL, code TEXT NOT NULL, name TEXT NOT NULL,
        created_at TEXT NOT NULL, UNIQUE (role, code));
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY, principal_id INTEGER NOT NULL REFERENCES principals5 (id),
        key_digest BLOB NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT);
    CREATE INDEX api_keys_by_principal ON api_keys (principal_id);
    CREATE TABLE merchants (id TEXT PRIMARY KEY, registered_at TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE consents5 (
        id INTEGER PRIMARY KEY, merchant_id TEXT NOT NULL,
        lender_id INTEGER NOT NULL REFERENCES principals5 (id), purpose TEXT NOT NULL,
        granted_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT);
    CREATE INDEX consents_by_merchant ON consents5 (merchant_id, id);
    CREATE INDEX consents_by_lender ON consents5 (lender_id, purpose, merchant_id);
    CREATE TABLE lender_views5 (
        lender_id INTEGER NOT NULL, merchant_id TEXT NOT NULL, at TEXT NOT NULL, grade TEXT NOT NULL,
        escrow_coverage REAL, PRIMARY KEY (lender_id, merchant_id)) WITHOUT ROWID;
    CREATE TABLE idempotency (
        principal_id INTEGER NOT NULL, key TEXT NOT NULL, fingerprint BLOB NOT NULL, body BLOB NOT NULL,
        created_at TEXT NOT NULL, PRIMARY KEY (principal_id, key)) WITHOUT ROWID;
    CREATE INDEX idempotency_by_age ON idempotency (created_at);
    CREATE TABLE log_entries (
        idx INTEGER PRIMARY KEY, at TEXT NOT NULL, request_id TEXT NOT NULL, role TEXT NOT NULL,
        principal_code TEXT NOT NULL, principal_id INTEGER, key_id TEXT NOT NULL,
        merchant_id TEXT NOT NULL, action TEXT NOT NULL, purpose TEXT NOT NULL, consent_id INTEGER,
        outcome TEXT NOT NULL, model_id TEXT NOT NULL, response_digest TEXT NOT NULL,
        leaf_hash BLOB NOT NULL, nodes BLOB, head TEXT);
    CREATE INDEX log_by_merchant ON log_entries (merchant_id, idx);
    CREATE INDEX disputes_open ON disputes (id) WHERE answer IS NULL;";

const V5_RENAMES: &str = "
    DROP TABLE query_log;
    DROP TABLE consents;
    DROP TABLE lender_views;
    DROP TABLE principals;
    ALTER TABLE principals5 RENAME TO principals;
    ALTER TABLE consents5 RENAME TO consents;
    ALTER TABLE lender_views5 RENAME TO lender_views;";

/// Brings the database to [`VERSION`], each step in its own transaction.
pub(crate) fn migrate(conn: &mut rusqlite::Connection, read_only: bool) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(StoreError::TooNew {
            found: version,
            known: VERSION,
        });
    }
    if version == VERSION {
        return Ok(());
    }
    if read_only {
        return Err(StoreError::TooOld {
            found: version,
            known: VERSION,
        });
    }
    for v in version..VERSION {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        match v {
            4 => upgrade_v5(&tx)?,
            5 => tx.execute_batch(V6_SQLITE)?,
            _ => match usize::try_from(v).ok().and_then(|i| LEGACY.get(i)) {
                Some(sql) => tx.execute_batch(sql)?,
                None => {
                    return Err(StoreError::Damaged(format!(
                        "no migration from schema version {v}"
                    )))
                }
            },
        }
        tx.execute_batch(&format!("PRAGMA user_version = {}", v + 1))?;
        tx.commit()?;
    }
    Ok(())
}

/// This build's schema on PostgreSQL: the SQLite layout of [`VERSION`] in PostgreSQL's
/// types (ids `BIGSERIAL`, blobs `BYTEA`). Every text column compares bytewise
/// (`COLLATE "C"`), as SQLite's do: ids, cursors and RFC 3339 times are compared and
/// ordered as text, and a locale's collation would order them otherwise.
const POSTGRES_TABLES: &str = r#"
    CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value TEXT COLLATE "C" NOT NULL);
    CREATE TABLE principals (
        id BIGSERIAL PRIMARY KEY, role TEXT COLLATE "C" NOT NULL, code TEXT COLLATE "C" NOT NULL,
        name TEXT NOT NULL, created_at TEXT COLLATE "C" NOT NULL, UNIQUE (role, code));
    CREATE TABLE api_keys (
        key_id TEXT COLLATE "C" PRIMARY KEY, principal_id BIGINT NOT NULL REFERENCES principals (id),
        key_digest BYTEA NOT NULL, created_at TEXT COLLATE "C" NOT NULL, revoked_at TEXT COLLATE "C");
    CREATE INDEX api_keys_by_principal ON api_keys (principal_id);
    CREATE TABLE merchants (id TEXT COLLATE "C" PRIMARY KEY, registered_at TEXT COLLATE "C" NOT NULL);
    CREATE TABLE consents (
        id BIGSERIAL PRIMARY KEY, merchant_id TEXT COLLATE "C" NOT NULL,
        lender_id BIGINT NOT NULL REFERENCES principals (id), purpose TEXT COLLATE "C" NOT NULL,
        granted_at TEXT COLLATE "C" NOT NULL, expires_at TEXT COLLATE "C" NOT NULL,
        revoked_at TEXT COLLATE "C");
    CREATE INDEX consents_by_merchant ON consents (merchant_id, id);
    CREATE INDEX consents_by_lender ON consents (lender_id, purpose, merchant_id);
    CREATE TABLE lender_views (
        lender_id BIGINT NOT NULL, merchant_id TEXT COLLATE "C" NOT NULL, at TEXT COLLATE "C" NOT NULL,
        grade TEXT COLLATE "C" NOT NULL, escrow_coverage DOUBLE PRECISION,
        PRIMARY KEY (lender_id, merchant_id));
    CREATE TABLE idempotency (
        principal_id BIGINT NOT NULL, key TEXT COLLATE "C" NOT NULL, fingerprint BYTEA NOT NULL,
        body BYTEA NOT NULL, created_at TEXT COLLATE "C" NOT NULL, PRIMARY KEY (principal_id, key));
    CREATE INDEX idempotency_by_age ON idempotency (created_at);
    CREATE TABLE disputes (
        id BIGSERIAL PRIMARY KEY, merchant_id TEXT COLLATE "C" NOT NULL, subject TEXT NOT NULL,
        detail TEXT NOT NULL, opened_at TEXT COLLATE "C" NOT NULL, deadline TEXT COLLATE "C" NOT NULL,
        answer TEXT, answered_at TEXT COLLATE "C");
    CREATE INDEX disputes_merchant ON disputes (merchant_id);
    CREATE INDEX disputes_open ON disputes (id) WHERE answer IS NULL;
    CREATE TABLE log_entries (
        idx BIGINT PRIMARY KEY, at TEXT COLLATE "C" NOT NULL, request_id TEXT COLLATE "C" NOT NULL,
        role TEXT COLLATE "C" NOT NULL, principal_code TEXT COLLATE "C" NOT NULL, principal_id BIGINT,
        key_id TEXT COLLATE "C" NOT NULL, merchant_id TEXT COLLATE "C" NOT NULL,
        action TEXT COLLATE "C" NOT NULL, purpose TEXT COLLATE "C" NOT NULL, consent_id BIGINT,
        outcome TEXT COLLATE "C" NOT NULL, model_id TEXT COLLATE "C" NOT NULL,
        response_digest TEXT COLLATE "C" NOT NULL, leaf_hash BYTEA NOT NULL, nodes BYTEA,
        head TEXT COLLATE "C");
    CREATE INDEX log_by_merchant ON log_entries (merchant_id, idx);
    CREATE TABLE allowances (bucket TEXT COLLATE "C" PRIMARY KEY, tat_us BIGINT NOT NULL);
    CREATE TABLE schema_version (version BIGINT NOT NULL);"#;

/// Brings a PostgreSQL database to [`VERSION`] (an empty one gets this build's tables),
/// holding a session advisory lock meanwhile, so that replicas starting at once migrate
/// it once and none sees it half-made.
pub(crate) fn migrate_postgres(conn: &Conn, mode: OpenMode) -> Result<(), StoreError> {
    conn.exec("SELECT pg_advisory_lock(?1)", args![MIGRATION_LOCK])?;
    let done = migrate_postgres_locked(conn, mode);
    let unlocked = conn.exec("SELECT pg_advisory_unlock(?1)", args![MIGRATION_LOCK]);
    done.and(unlocked.map(|_| ()))
}

fn migrate_postgres_locked(conn: &Conn, mode: OpenMode) -> Result<(), StoreError> {
    let made: i64 = conn
        .row(
            "SELECT CAST(to_regclass('schema_version') IS NOT NULL AS INT)",
            &[],
        )?
        .map_or(Ok(0), |r| r.get(0))?;
    let version: i64 = if made == 1 {
        conn.row("SELECT max(version) FROM schema_version", &[])?
            .map_or(Ok(None), |r| r.get(0))?
            .unwrap_or(0)
    } else {
        0
    };
    if version > VERSION {
        return Err(StoreError::TooNew {
            found: version,
            known: VERSION,
        });
    }
    if version == VERSION {
        return Ok(());
    }
    if mode == OpenMode::ReadOnly {
        return Err(StoreError::TooOld {
            found: version,
            known: VERSION,
        });
    }
    if version == 0 {
        // Only a process told to create a store makes one in an empty database.
        if mode != OpenMode::Create {
            return Err(StoreError::TooOld {
                found: 0,
                known: VERSION,
            });
        }
        return in_transaction(conn, || {
            conn.batch(POSTGRES_TABLES)?;
            conn.exec(
                "INSERT INTO schema_version (version) VALUES (?1)",
                args![VERSION],
            )
            .map(|_| ())
        });
    }
    for v in version..VERSION {
        let step = usize::try_from(v - 5)
            .ok()
            .and_then(|i| POSTGRES_UPGRADES.get(i))
            .ok_or_else(|| StoreError::Damaged(format!("no migration from schema version {v}")))?;
        in_transaction(conn, || {
            conn.batch(step)?;
            conn.exec(
                "INSERT INTO schema_version (version) VALUES (?1)",
                args![v + 1],
            )
            .map(|_| ())
        })?;
    }
    Ok(())
}

/// Runs `f` in one transaction: committed if it returns `Ok`, rolled back otherwise.
fn in_transaction(
    conn: &Conn,
    f: impl FnOnce() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    conn.batch("BEGIN")?;
    match f() {
        Ok(()) => conn.batch("COMMIT"),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// A principal code from an old free-text name: the id alphabet, other characters folded
/// to `-`, made unique with a suffix.
fn code_for(name: &str, taken: &mut HashMap<String, ()>) -> String {
    let mut code = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            code.push(c);
        } else if !code.ends_with('-') {
            code.push('-');
        }
    }
    let base: String = code.trim_matches('-').chars().take(56).collect();
    let base = if base.is_empty() { "p".into() } else { base };
    let mut candidate = base.clone();
    let mut n = 2;
    while taken.contains_key(&candidate) {
        candidate = format!("{base}-{n}");
        n += 1;
    }
    taken.insert(candidate.clone(), ());
    candidate
}

/// Version 4 → 5: principals with stable codes and keys apart from them, consents and
/// views naming lender principals, and the query log moved into the Merkle tree after its
/// old keyed chain is checked.
fn upgrade_v5(tx: &Transaction) -> Result<(), StoreError> {
    tx.execute_batch(V5_TABLES)?;
    // Principals: one per (role, identity); keys move to api_keys.
    let mut by_identity: HashMap<(String, String), i64> = HashMap::new();
    let mut taken: HashMap<(String, String), ()> = HashMap::new();
    let mut codes: HashMap<String, HashMap<String, ()>> = HashMap::new();
    let mut key_principal: HashMap<String, (String, String, i64)> = HashMap::new();
    {
        let mut old = tx.prepare(
            "SELECT key_id, role, name, merchant_id, key_digest, created_at, revoked_at FROM principals ORDER BY created_at, key_id",
        )?;
        let rows = old.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        for row in rows {
            let (key_id, role, name, merchant, digest, created, revoked) = row?;
            let identity = merchant.clone().unwrap_or_else(|| name.clone());
            let id = match by_identity.get(&(role.clone(), identity.clone())) {
                Some(&id) => id,
                None => {
                    let code = match &merchant {
                        Some(m) => m.clone(),
                        None => code_for(&name, codes.entry(role.clone()).or_default()),
                    };
                    taken.insert((role.clone(), code.clone()), ());
                    tx.execute(
                        "INSERT INTO principals5 (role, code, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![role, code, name, created],
                    )?;
                    let id = tx.last_insert_rowid();
                    by_identity.insert((role.clone(), identity), id);
                    id
                }
            };
            let code: String =
                tx.query_row("SELECT code FROM principals5 WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
            key_principal.insert(key_id.clone(), (role.clone(), code, id));
            tx.execute(
                "INSERT INTO api_keys (key_id, principal_id, key_digest, created_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key_id, id, digest, created, revoked],
            )?;
        }
    }
    // Lenders named only in consents or views become lender principals too.
    let mut lender_id = |tx: &Transaction, name: &str, at: &str| -> Result<i64, StoreError> {
        let key = ("lender".to_owned(), name.to_owned());
        if let Some(&id) = by_identity.get(&key) {
            return Ok(id);
        }
        let code = code_for(name, codes.entry("lender".into()).or_default());
        tx.execute(
            "INSERT INTO principals5 (role, code, name, created_at) VALUES ('lender', ?1, ?2, ?3)",
            params![code, name, at],
        )?;
        let id = tx.last_insert_rowid();
        by_identity.insert(key, id);
        Ok(id)
    };
    {
        let mut old = tx.prepare(
            "SELECT id, merchant_id, lender, purpose, granted_at, expires_at, revoked_at FROM consents ORDER BY id",
        )?;
        type OldConsent = (i64, String, String, String, String, String, Option<String>);
        let rows: Vec<OldConsent> = old
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        for (id, merchant, lender, purpose, granted, expires, revoked) in rows {
            let l = lender_id(tx, &lender, &granted)?;
            tx.execute(
                "INSERT INTO consents5 (id, merchant_id, lender_id, purpose, granted_at, expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, merchant, l, purpose, granted, expires, revoked],
            )?;
        }
        let mut old =
            tx.prepare("SELECT lender, merchant_id, at, grade, escrow_coverage FROM lender_views")?;
        let rows: Vec<(String, String, String, String, Option<f64>)> = old
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        for (lender, merchant, at, grade, coverage) in rows {
            let l = lender_id(tx, &lender, &at)?;
            tx.execute(
                "INSERT INTO lender_views5 (lender_id, merchant_id, at, grade, escrow_coverage) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![l, merchant, at, grade, coverage],
            )?;
        }
    }
    move_log(tx, &key_principal)?;
    tx.execute_batch(V5_RENAMES)?;
    Ok(())
}

/// Checks the old chain (keyed with the secret the old database held) and moves every entry
/// into the Merkle log, in order, with its perfect subtrees.
fn move_log(
    tx: &Transaction,
    key_principal: &HashMap<String, (String, String, i64)>,
) -> Result<(), StoreError> {
    let secret: Option<Vec<u8>> = tx
        .query_row("SELECT value FROM meta WHERE key = 'key_secret'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let mut old = tx.prepare(
        "SELECT seq, at, principal, merchant_id, action, purpose, consent_id, outcome, model_id, response_digest, prev_hash, hash FROM query_log ORDER BY seq",
    )?;
    let mut rows = old.query([])?;
    let mut insert = tx.prepare(
        "INSERT INTO log_entries (idx, at, request_id, role, principal_code, principal_id, key_id, merchant_id, action, purpose, consent_id, outcome, model_id, response_digest, leaf_hash, nodes)
         VALUES (?1, ?2, '', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?;
    let mut frontier = Frontier::default();
    let mut prev = "0".repeat(64);
    let mut n: i64 = 0;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        n += 1;
        let fields: [String; 7] = [
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(7)?,
            r.get(8)?,
        ];
        let consent: Option<i64> = r.get(6)?;
        let (digest, prev_hash, hash): (String, String, String) =
            (r.get(9)?, r.get(10)?, r.get(11)?);
        let [at, principal, merchant, action, purpose, outcome, model] = fields;
        // The old chain: seq from 1, each entry keyed-hashed with the one before.
        let intact = seq == n && prev_hash == prev && {
            let Some(secret) = secret.as_deref().and_then(|s| <[u8; 32]>::try_from(s).ok()) else {
                return Err(StoreError::Damaged(
                    "the old query log cannot be checked: its key is missing".into(),
                ));
            };
            let mut h = blake3::Hasher::new_keyed(&secret);
            let consent_text = consent.map(|c| c.to_string()).unwrap_or_default();
            for part in [
                seq.to_string().as_str(),
                &at,
                &principal,
                &merchant,
                &action,
                &purpose,
                &consent_text,
                &outcome,
                &model,
                &digest,
                &prev_hash,
            ] {
                h.update(part.as_bytes());
                h.update(&[0x1f]);
            }
            h.finalize().to_hex().as_str() == hash
        };
        if !intact {
            return Err(StoreError::Damaged(format!(
                "the old query log is not intact at entry {seq}; it was not upgraded (the database is unchanged)"
            )));
        }
        prev = hash;
        let (role, code, pid) = key_principal
            .get(&principal)
            .cloned()
            .unwrap_or_else(|| ("lender".into(), principal.clone(), 0));
        let mut e = LogEntry {
            index: u64::try_from(seq - 1).unwrap_or(0),
            at,
            request_id: String::new(),
            role,
            principal_code: code,
            key_id: principal,
            merchant_id: merchant,
            action,
            purpose,
            consent_id: consent.map(crate::ConsentId),
            outcome,
            model_id: model,
            response_digest: digest,
            leaf_hash: [0; 32],
        };
        e.leaf_hash = leaf_hash(&leaf_bytes(&e));
        let mut nodes = Vec::new();
        frontier.push(e.leaf_hash, |level, _, h| {
            if level >= crate::STORED_FROM_LEVEL {
                nodes.extend_from_slice(h);
            }
        });
        insert.execute(params![
            seq - 1,
            e.at,
            e.role,
            e.principal_code,
            (pid != 0).then_some(pid),
            e.key_id,
            e.merchant_id,
            e.action,
            e.purpose,
            e.consent_id,
            e.outcome,
            e.model_id,
            e.response_digest,
            e.leaf_hash.to_vec(),
            (!nodes.is_empty()).then_some(nodes)
        ])?;
    }
    // The old chain's head, if recorded, must be the last entry (no truncation).
    let head: Option<Vec<u8>> = tx
        .query_row("SELECT value FROM meta WHERE key = 'log_head'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(h) = head {
        let want = String::from_utf8_lossy(&h).into_owned();
        if want != format!("{n}:{prev}") && !(n == 0 && want.is_empty()) {
            return Err(StoreError::Damaged(format!(
                "the old query log ends at entry {n} but its recorded head is {want}: entries were removed; it was not upgraded"
            )));
        }
        tx.execute("DELETE FROM meta WHERE key = 'log_head'", [])?;
    }
    Ok(())
}
