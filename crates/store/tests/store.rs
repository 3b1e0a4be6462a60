//! The store's behaviour on a real SQLite file: principals and keys, consents, disputes,
//! idempotency, pages, the Merkle log, audits of tampered copies, and the upgrade of a
//! database written by the first service; the same rules on PostgreSQL, replicas appending
//! to one log, and a store moved from SQLite to PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use rusqlite::{params, Connection};
use yuanxin_store::merkle::{self, leaf_hash, verify_inclusion};
use yuanxin_store::testing::fresh_postgres;
use yuanxin_store::*;

fn at(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn secrets() -> Secrets {
    Secrets::from_parts([1; 32], [2; 32])
}

fn record(p: &Principal, merchant: &str, i: usize) -> LogRecord {
    LogRecord {
        at: at("2026-01-01T10:00:00+08:00"),
        request_id: format!("01J{i:023}").into(),
        principal: std::sync::Arc::new(p.clone()),
        key_id: "abcdef012345".into(),
        merchant_id: merchant_of(merchant),
        action: "score",
        purpose: Purpose::PreLoan,
        consent_id: Some(ConsentId(1)),
        outcome: Outcome::Served,
        model_id: "m".into(),
        response_digest: hex(blake3::hash(&i.to_be_bytes()).as_bytes()).into(),
        seen: None,
    }
}

fn json(v: &impl serde::Serialize) -> Result<Vec<u8>, String> {
    serde_json::to_vec(v).map_err(|e| e.to_string())
}

/// Principals, keys, consents, disputes and idempotency: the rules every backend keeps.
fn state_rules<S: Backend>(s: &mut S) {
    let sec = secrets();
    let now = at("2026-01-01T09:00:00+08:00");
    s.register_merchants(["M1", "M2"], now).unwrap();
    // Institutions have unique codes; merchants must exist.
    let ccb = s
        .add_principal(Role::Lender, "CCB", "China Construction Bank", now)
        .unwrap();
    assert!(matches!(
        s.add_principal(Role::Lender, "CCB", "Another", now),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.merchant_principal(&merchant_of("M9"), now),
        Err(StoreError::UnknownMerchant(_))
    ));
    let m1 = s.merchant_principal(&merchant_of("M1"), now).unwrap();
    assert_eq!(m1.merchant_id(), Some("M1"));
    assert!(s.add_principal(Role::Lender, "bad code", "x", now).is_err());
    // Keys belong to principals; a second key of the institution is the same principal.
    let k1 = match s
        .create_key(&ccb, &sec, now, None, |_| Ok(Vec::new()))
        .unwrap()
    {
        Created::New((k, full), _) => {
            assert!(full.starts_with(&format!("yx_{}_", k.key_id)));
            k
        }
        Created::Replayed(_) => unreachable!(),
    };
    assert!(s.revoke_key(&k1.key_id, now).unwrap());
    assert!(!s.revoke_key(&k1.key_id, now).unwrap(), "already revoked");
    assert!(s.keys(Some(&k1.key_id)).unwrap()[0].revoked_at.is_some());
    // Consents name lender principals; idempotent retries return the first response.
    let later = now.plus_days(30).unwrap();
    let g = Grant {
        merchant_id: &merchant_of("M1"),
        lender: &ccb,
        purpose: Purpose::PostLoan,
        granted_at: now,
        expires_at: later,
    };
    let idem = Idempotency {
        principal_id: m1.id,
        key: "retry-1".into(),
        fingerprint: [9; 32],
    };
    let first = s.grant(&g, Some(&idem), json).unwrap();
    let Created::New(c, body) = first else {
        panic!("first grant replayed")
    };
    assert_eq!(
        s.grant(&g, Some(&idem), json).unwrap(),
        Created::Replayed(body)
    );
    let other = Idempotency {
        fingerprint: [8; 32],
        ..idem.clone()
    };
    assert!(matches!(
        s.grant(&g, Some(&other), json),
        Err(StoreError::IdempotencyMismatch)
    ));
    assert_eq!(
        s.consents_of(
            &merchant_of("M1"),
            PageRequest {
                cursor: None,
                limit: 10
            }
        )
        .unwrap()
        .items
        .len(),
        1
    );
    assert!(matches!(
        s.grant(
            &Grant {
                lender: &m1,
                ..g.clone()
            },
            None,
            json
        ),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.grant(
            &Grant {
                merchant_id: &merchant_of("M9"),
                ..g.clone()
            },
            None,
            json
        ),
        Err(StoreError::UnknownMerchant(_))
    ));
    let mid = at("2026-01-15T00:00:00+08:00");
    assert_eq!(
        s.valid_consent(&merchant_of("M1"), ccb.id, Purpose::PostLoan, mid)
            .unwrap(),
        Some(c.id)
    );
    assert_eq!(
        s.valid_consent(&merchant_of("M1"), ccb.id, Purpose::PreLoan, mid)
            .unwrap(),
        None
    );
    assert_eq!(
        s.valid_consent(&merchant_of("M1"), ccb.id, Purpose::PostLoan, later)
            .unwrap(),
        None
    );
    let page = s
        .consenting(
            ccb.id,
            Purpose::PostLoan,
            mid,
            PageRequest {
                cursor: None,
                limit: 5,
            },
        )
        .unwrap();
    assert_eq!(page.items, vec![(merchant_of("M1"), c.id)]);
    assert!(s.revoke_consent(&merchant_of("M1"), c.id, mid).unwrap());
    assert_eq!(
        s.valid_consent(&merchant_of("M1"), ccb.id, Purpose::PostLoan, mid)
            .unwrap(),
        None
    );
    // Disputes, pages of them, and the overdue filter.
    for i in 0..5 {
        let d = NewDispute {
            merchant_id: &merchant_of("M2"),
            subject: "s",
            detail: "d",
            opened_at: now,
            deadline: now.plus_days(20 + i).unwrap(),
        };
        s.open_dispute(&d, None, json).unwrap();
    }
    let p1 = s
        .disputes(
            DisputeFilter::All,
            PageRequest {
                cursor: None,
                limit: 2,
            },
        )
        .unwrap();
    assert_eq!(p1.items.len(), 2);
    let p2 = s
        .disputes(
            DisputeFilter::All,
            PageRequest {
                cursor: p1.next,
                limit: 2,
            },
        )
        .unwrap();
    let p3 = s
        .disputes(
            DisputeFilter::All,
            PageRequest {
                cursor: p2.next,
                limit: 2,
            },
        )
        .unwrap();
    assert_eq!((p3.items.len(), p3.next), (1, None));
    let overdue = s
        .disputes(
            DisputeFilter::OverdueAt(now.plus_days(22).unwrap()),
            PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!(
        overdue.items.len(),
        2,
        "deadlines at +20 and +21 days have passed"
    );
    assert_eq!(
        s.answer_dispute(p1.items[0].id, "ok", now)
            .unwrap()
            .as_deref(),
        Some("M2")
    );
    assert_eq!(
        s.answer_dispute(p1.items[0].id, "again", now).unwrap(),
        None
    );
    assert_eq!(s.open_disputes().unwrap(), vec![("M2".to_owned(), 4)]);
}

/// Shared rate allowances: buckets made on first use, never overdrawn, refilled at the
/// rate; two connections (two replicas) draw on one bucket.
fn allowance_rules(a: &Store, b: &Store) {
    use yuanxin_store::allowance::Quota;
    let q = Quota {
        period_us: 1_000_000,
        burst: 10,
    };
    let t = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    let first = a.take_allowance("key:k1", 4, q, t).unwrap();
    assert_eq!((first.granted, first.retry_after_us), (4, 0));
    let mut total = first.granted;
    for i in 0..10 {
        let from = if i % 2 == 0 { b } else { a };
        total += from.take_allowance("key:k1", 3, q, t).unwrap().granted;
    }
    assert_eq!(total, 10, "one burst across both connections");
    let refused = b.take_allowance("key:k1", 1, q, t + 250_000).unwrap();
    assert_eq!((refused.granted, refused.retry_after_us), (0, 750_000));
    assert_eq!(
        a.take_allowance("key:k2", 10, q, t).unwrap().granted,
        10,
        "buckets are apart"
    );
    assert_eq!(
        a.take_allowance("key:k1", 5, q, t + 2_000_000)
            .unwrap()
            .granted,
        2,
        "refilled at the rate"
    );
}

#[test]
fn sqlite_shares_rate_allowances_between_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let a = Store::open(&path, OpenMode::Create).unwrap();
    let b = Store::open(&path, OpenMode::Existing).unwrap();
    allowance_rules(&a, &b);
}

#[test]
fn postgres_shares_rate_allowances_between_replicas() {
    let Some(url) = fresh_postgres("allowance") else {
        return;
    };
    let a = Store::connect(&url, OpenMode::Create).unwrap();
    let b = Store::connect(&url, OpenMode::Existing).unwrap();
    allowance_rules(&a, &b);
}

#[test]
fn postgres_upgrades_an_older_schema_in_place() {
    let Some(url) = fresh_postgres("upgrade") else {
        return;
    };
    drop(Store::connect(&url, OpenMode::Create).unwrap());
    // Back to version 5, as the first PostgreSQL build made it.
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute("DROP TABLE allowances; UPDATE schema_version SET version = 5")
        .unwrap();
    assert!(matches!(
        Store::connect(&url, OpenMode::ReadOnly),
        Err(StoreError::TooOld { found: 5, .. })
    ));
    let s = Store::connect(&url, OpenMode::Existing).unwrap();
    let q = yuanxin_store::allowance::Quota {
        period_us: 1,
        burst: 1,
    };
    assert_eq!(s.take_allowance("b", 1, q, 0).unwrap().granted, 1);
    assert!(Store::connect(&url, OpenMode::ReadOnly).is_ok());
}

#[test]
fn sqlite_keeps_the_state_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    assert!(matches!(
        Store::open(&path, OpenMode::Existing),
        Err(StoreError::Missing(_))
    ));
    assert!(!path.exists(), "nothing is created when asked not to");
    let mut s = Store::open(&path, OpenMode::Create).unwrap();
    state_rules(&mut s);
    // Particular to SQLite: other processes learn of key changes through a stamp file.
    let now = at("2026-02-01T09:00:00+08:00");
    let p = s
        .add_principal(Role::Lender, "STAMP", "Stamp test", now)
        .unwrap();
    let Created::New((k, _), _) = s
        .create_key(&p, &secrets(), now, None, |_| Ok(Vec::new()))
        .unwrap()
    else {
        panic!("a new key")
    };
    let stamp = keys_stamp_path(&path);
    let before = std::fs::read_to_string(&stamp).unwrap();
    assert!(s.revoke_key(&k.key_id, now).unwrap());
    assert_ne!(
        std::fs::read_to_string(&stamp).unwrap(),
        before,
        "the stamp moves"
    );
}

/// The query log: appends in commits, each sealed with a signed head (passed to `on_head`
/// at the start and every sixth commit), pages of a merchant's entries with inclusion
/// proofs, proofs against older heads and consistency between heads.
fn log_rules<S: Backend>(
    s: &mut S,
    sec: &Secrets,
    on_head: &mut dyn FnMut(&SignedHead),
) -> Vec<SignedHead> {
    let key = sec.verifying_key();
    let now = at("2026-01-01T09:00:00+08:00");
    s.register_merchants(["M1", "M2"], now).unwrap();
    let bank = s.add_principal(Role::Lender, "B", "Bank", now).unwrap();
    let empty = s.seal(sec, now).unwrap();
    assert_eq!(empty.tree_size, 0);
    on_head(&empty);
    let mut heads = Vec::new();
    for batch in 0..20 {
        let recs = (0..7)
            .map(|i| record(&bank, if i % 3 == 0 { "M1" } else { "M2" }, batch * 7 + i))
            .collect();
        let done = s.append(recs, sec, now).unwrap();
        let head = done.head;
        assert_eq!((done.first, done.count), (batch as u64 * 7, 7));
        assert_eq!(head.tree_size, done.first + done.count);
        assert!(head.verify(&key));
        if batch % 6 == 0 {
            on_head(&head);
        }
        heads.push(head);
    }
    let head = s.head().unwrap().unwrap();
    assert_eq!(head.tree_size, 140);
    // Every entry of M1, newest first, in pages, with a proof against the latest head.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .entries_about(
                &merchant_of("M1"),
                head.tree_size,
                PageRequest { cursor, limit: 9 },
            )
            .unwrap();
        let idx: Vec<u64> = page.items.iter().map(|e| e.index).collect();
        let proofs = s.inclusion_proofs(&idx, head.tree_size).unwrap();
        for (e, p) in page.items.iter().zip(&proofs) {
            assert_eq!(leaf_hash(&leaf_bytes(e)), e.leaf_hash);
            assert!(verify_inclusion(
                e.index,
                head.tree_size,
                &e.leaf_hash,
                p,
                &head.root_hash
            ));
        }
        seen.extend(idx);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 60, "i = 0, 3, 6 of every batch of 7");
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    // A proof against an older head, and consistency between heads.
    let old = &heads[3];
    assert_eq!(s.root_at(old.tree_size).unwrap(), old.root_hash);
    let c = s.consistency_proof(old.tree_size, head.tree_size).unwrap();
    assert!(merkle::verify_consistency(
        old.tree_size,
        head.tree_size,
        &old.root_hash,
        &head.root_hash,
        &c
    ));
    heads
}

#[test]
fn the_log_proves_inclusion_and_audits_find_forgeries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let cp = dir.path().join("db.checkpoints");
    let sec = secrets();
    let key = sec.verifying_key();
    let mut s = Store::open(&path, OpenMode::Create).unwrap();
    let now = at("2026-01-01T09:00:00+08:00");
    let heads = log_rules(&mut s, &sec, &mut |h| checkpoint::append(&cp, h).unwrap());
    drop(s);

    let report = verify(&path, &cp, &key).unwrap().unwrap();
    assert_eq!((report.entries, report.checkpoints), (140, 5));
    // Tampering with a copy, as someone holding only the database file could.
    let tamper = |sql: &str| -> String {
        let copy = dir.path().join("copy.sqlite");
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", copy.display()));
        }
        std::fs::copy(&path, &copy).unwrap();
        let wal = format!("{}-wal", path.display());
        if Path::new(&wal).exists() {
            std::fs::copy(&wal, format!("{}-wal", copy.display())).unwrap();
        }
        let c = Connection::open(&copy).unwrap();
        c.execute_batch(sql).unwrap();
        drop(c);
        verify(&copy, &cp, &key).unwrap().unwrap_err()
    };
    // Edit one entry.
    assert!(
        tamper("UPDATE log_entries SET purpose = 'post_loan' WHERE idx = 5").contains("altered")
    );
    // Edit and recompute its leaf hash and every node above it (the hash is public).
    let rehash = {
        let s = Store::open(&path, OpenMode::ReadOnly).unwrap();
        let mut e = s.entry(5).unwrap().unwrap();
        e.purpose = "post_loan".into();
        let leaf = leaf_hash(&leaf_bytes(&e));
        let mut f = merkle::Frontier::default();
        let mut sql = format!(
            "UPDATE log_entries SET purpose = 'post_loan', leaf_hash = x'{}' WHERE idx = 5;",
            hex(&leaf)
        );
        for i in 0..140u64 {
            let h = if i == 5 {
                leaf
            } else {
                s.entry(i).unwrap().unwrap().leaf_hash
            };
            let mut nodes = Vec::new();
            f.push(h, |level, _, h| {
                if level >= STORED_FROM_LEVEL {
                    nodes.extend_from_slice(h);
                }
            });
            if !nodes.is_empty() {
                sql.push_str(&format!(
                    "UPDATE log_entries SET nodes = x'{}' WHERE idx = {i};",
                    hex(&nodes)
                ));
            }
        }
        sql
    };
    let why = tamper(&rehash);
    assert!(
        why.contains("no longer have the root") || why.contains("not the log's"),
        "{why}"
    );
    // Truncate back to an older commit (its row carries an older, validly signed head):
    // the checkpoints outside show the loss.
    let why = tamper(&format!(
        "DELETE FROM log_entries WHERE idx >= {};",
        heads[2].tree_size
    ));
    assert!(why.contains("removed"), "{why}");
    // Delete everything.
    let why = tamper("DELETE FROM log_entries; DELETE FROM meta WHERE key = 'signed_head';");
    assert!(why.contains("no signed tree head"), "{why}");
    // Forge a head with another key.
    let forged = SignedHead::sign(&Secrets::from_parts([1; 32], [3; 32]), 140, [0; 32], now);
    let forged = serde_json::to_string(&forged.to_json()).unwrap();
    let why = tamper(&format!(
        "UPDATE log_entries SET head = '{forged}' WHERE idx = 139;"
    ));
    assert!(why.contains("forged"), "{why}");
    // Reorder two entries.
    let why = tamper("UPDATE log_entries SET idx = 1000 WHERE idx = 1; UPDATE log_entries SET idx = 1 WHERE idx = 2; UPDATE log_entries SET idx = 2 WHERE idx = 1000;");
    assert!(
        why.contains("no longer have the root") || why.contains("not the log's"),
        "{why}"
    );
    // A missing database is refused, not created.
    let missing = dir.path().join("none.sqlite");
    assert!(matches!(
        verify(&missing, &cp, &key),
        Err(StoreError::Missing(_))
    ));
    assert!(!missing.exists());
}

#[test]
fn a_first_service_database_is_upgraded_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    // The first service's schema (versions 1–4) and content, chain keyed with its secret.
    let secret = [5u8; 32];
    {
        let c = Connection::open(&path).unwrap();
        for sql in schema_legacy() {
            c.execute_batch(sql).unwrap();
            c.execute_batch("PRAGMA user_version = 4").unwrap();
        }
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('key_secret', ?1)",
            [secret.to_vec()],
        )
        .unwrap();
        let t = "2026-01-01T09:00:00+08:00";
        c.execute(
            "INSERT INTO principals (key_id, role, name, merchant_id, key_digest, created_at) VALUES ('k1', 'lender', 'ICBC (demo)', NULL, ?1, ?2), ('k2', 'merchant', 'M1', 'M1', ?1, ?2)",
            params![vec![0u8; 32], t],
        )
        .unwrap();
        c.execute(
            "INSERT INTO consents (merchant_id, lender, purpose, granted_at, expires_at) VALUES ('M1', 'ICBC (demo)', 'pre_loan', ?1, '2027-01-01T00:00:00+08:00')",
            [t],
        )
        .unwrap();
        let mut prev = "0".repeat(64);
        for seq in 1..=3i64 {
            let fields = [
                seq.to_string(),
                t.into(),
                "k1".into(),
                "M1".into(),
                "score".into(),
                "pre_loan".into(),
                "1".into(),
                "served".into(),
                "m".into(),
                "d".into(),
                prev.clone(),
            ];
            let mut h = blake3::Hasher::new_keyed(&secret);
            for f in &fields {
                h.update(f.as_bytes());
                h.update(&[0x1f]);
            }
            let hash = h.finalize().to_hex().to_string();
            c.execute(
                "INSERT INTO query_log (seq, at, principal, merchant_id, action, purpose, consent_id, outcome, model_id, response_digest, prev_hash, hash) VALUES (?1, ?2, 'k1', 'M1', 'score', 'pre_loan', 1, 'served', 'm', 'd', ?3, ?4)",
                params![seq, t, prev, hash],
            )
            .unwrap();
            prev = hash;
        }
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('log_head', ?1)",
            [format!("3:{prev}").into_bytes()],
        )
        .unwrap();
    }
    // Read-only commands refuse it; the service upgrades it.
    assert!(matches!(
        Store::open(&path, OpenMode::ReadOnly),
        Err(StoreError::TooOld { .. })
    ));
    let mut s = Store::open(&path, OpenMode::Existing).unwrap();
    assert_eq!(s.legacy_secret().unwrap(), Some(secret));
    let lender = s.principal(Role::Lender, "ICBC-demo").unwrap().unwrap();
    assert_eq!(lender.name, "ICBC (demo)");
    assert_eq!(s.keys(Some("k1")).unwrap()[0].principal, lender);
    let consents = s.active_consents().unwrap();
    assert_eq!(
        (consents[0].lender_id, consents[0].lender_code.as_str()),
        (lender.id, "ICBC-demo")
    );
    assert_eq!(s.log_size().unwrap(), 3);
    let e = s.entry(2).unwrap().unwrap();
    assert_eq!(
        (
            e.principal_code.as_str(),
            e.key_id.as_str(),
            e.role.as_str()
        ),
        ("ICBC-demo", "k1", "lender")
    );
    let sec = Secrets::from_parts(secret, [2; 32]);
    s.forget_legacy_secret().unwrap();
    s.seal(&sec, at("2026-02-01T00:00:00+08:00")).unwrap();
    drop(s);
    let r = verify(
        &path,
        &dir.path().join("none.checkpoints"),
        &sec.verifying_key(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(r.entries, 3);

    // A tampered old log is not upgraded, and the database is left as it was.
    let bad = dir.path().join("bad.sqlite");
    {
        let c = Connection::open(&bad).unwrap();
        for sql in schema_legacy() {
            c.execute_batch(sql).unwrap();
            c.execute_batch("PRAGMA user_version = 4").unwrap();
        }
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('key_secret', ?1)",
            [secret.to_vec()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO query_log (seq, at, principal, merchant_id, action, purpose, consent_id, outcome, model_id, response_digest, prev_hash, hash) VALUES (1, 't', 'k', 'M1', 'score', 'pre_loan', NULL, 'served', 'm', 'd', ?1, 'forged')",
            ["0".repeat(64)],
        )
        .unwrap();
    }
    let e = Store::open(&bad, OpenMode::Existing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not intact"), "{e}");
    let v: i64 = Connection::open(&bad)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 4, "left at its version");
}

/// The first service's schema (versions 1–4), one migration at a time.
fn schema_legacy() -> Vec<&'static str> {
    let sql = include_str!("../../../tests/data/v4-schema.sql");
    vec![sql.trim_end().trim_end_matches("PRAGMA user_version = 4;")]
}

fn merchant_of(id: &str) -> yuanxin_domain::MerchantId {
    yuanxin_domain::MerchantId::parse(id).unwrap()
}

#[test]
fn postgres_keeps_the_state_rules() {
    let Some(url) = fresh_postgres("state") else {
        return;
    };
    assert!(
        matches!(
            Store::connect(&url, OpenMode::ReadOnly),
            Err(StoreError::TooOld { found: 0, .. })
        ),
        "an empty database is not read as a store"
    );
    assert!(matches!(
        Store::connect(&url, OpenMode::Existing),
        Err(StoreError::TooOld { found: 0, .. })
    ));
    let mut s = Store::connect(&url, OpenMode::Create).unwrap();
    assert_eq!(s.dialect(), Dialect::Postgres);
    let v = s.state_version().unwrap();
    state_rules(&mut s);
    assert!(
        s.state_version().unwrap() > v,
        "keys, consents and disputes changed"
    );
    // A second connection (another replica) sees every change at once, and its schema
    // check finds this build's version.
    let other = Store::connect(&url, OpenMode::ReadOnly).unwrap();
    let key_id = s.keys(None).unwrap()[0].key_id.clone();
    assert_eq!(other.keys(Some(&key_id)).unwrap().len(), 1);
    assert_eq!(other.keys_version().unwrap(), s.keys_version().unwrap());
    assert_eq!(other.open_disputes().unwrap(), s.open_disputes().unwrap());
}

#[test]
fn postgres_replicas_migrate_once_and_append_one_log() {
    let Some(url) = fresh_postgres("log") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("db.checkpoints");
    let sec = secrets();
    let key = sec.verifying_key();
    // Four replicas start at once on an empty database: one makes the schema.
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Store::connect(&url, OpenMode::Create).map(|_| ()))
        })
        .collect();
    for t in starts {
        t.join().unwrap().unwrap();
    }
    let mut s = Store::connect(&url, OpenMode::Create).unwrap();
    log_rules(&mut s, &sec, &mut |h| checkpoint::append(&cp, h).unwrap());
    let report = verify_store(&s, &cp, &key).unwrap().unwrap();
    assert_eq!((report.entries, report.checkpoints), (140, 5));
    // Two replicas append at once, each on its own connection, each having cached its
    // frontier: their commits interleave into one gap-free log that verifies.
    let bank = s.principal(Role::Lender, "B").unwrap().unwrap();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (url, bank, sec) = (url.clone(), bank.clone(), secrets());
            std::thread::spawn(move || {
                let mut r = Store::connect(&url, OpenMode::Existing).unwrap();
                let mut firsts = Vec::new();
                for c in 0..25 {
                    let recs = (0..4)
                        .map(|i| record(&bank, "M2", 10_000 + w * 1_000 + c * 4 + i))
                        .collect();
                    let done = r
                        .append(recs, &sec, at("2026-01-02T09:00:00+08:00"))
                        .unwrap();
                    assert!(done.head.verify(&sec.verifying_key()));
                    firsts.push(done.first);
                }
                firsts
            })
        })
        .collect();
    let mut firsts: Vec<u64> = writers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    firsts.sort_unstable();
    let want: Vec<u64> = (0..50).map(|k| 140 + 4 * k).collect();
    assert_eq!(firsts, want, "every commit in its own place, no gaps");
    let head = s.head().unwrap().unwrap();
    assert_eq!(head.tree_size, 340);
    checkpoint::append(&cp, &head).unwrap();
    let report = verify_store(&s, &cp, &key).unwrap().unwrap();
    assert_eq!(report.entries, 340);
    // Someone holding the database edits an entry: the audit finds it.
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute("UPDATE log_entries SET purpose = 'post_loan' WHERE idx = 200")
        .unwrap();
    let why = verify_store(&s, &cp, &key).unwrap().unwrap_err();
    assert!(why.contains("altered"), "{why}");
}

#[test]
fn an_sqlite_store_moves_to_postgres_with_its_log() {
    let Some(url) = fresh_postgres("copy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("db.checkpoints");
    let sec = secrets();
    let key = sec.verifying_key();
    let mut lite = Store::open(&dir.path().join("db.sqlite"), OpenMode::Create).unwrap();
    state_rules(&mut lite);
    log_rules(&mut lite, &sec, &mut |h| {
        checkpoint::append(&cp, h).unwrap()
    });
    // An entry that records what the lender was shown.
    let bank = lite.principal(Role::Lender, "B").unwrap().unwrap();
    let seen = Seen {
        lender_id: bank.id,
        grade: "B".into(),
        escrow_coverage: Some(0.75),
    };
    let shown = LogRecord {
        seen: Some(seen.clone()),
        ..record(&bank, "M2", 500)
    };
    let done = lite
        .append(vec![shown], &sec, at("2026-01-03T09:00:00+08:00"))
        .unwrap();
    checkpoint::append(&cp, &done.head).unwrap();
    let mut pg = Store::connect(&url, OpenMode::Create).unwrap();
    let report = copy_store(&lite, &pg).unwrap();
    assert_eq!(report.log_entries, 141);
    assert!(report.tables.iter().all(|(_, n)| *n > 0), "{report:?}");
    // The same log, verified against the checkpoints the SQLite service wrote.
    let audit = verify_store(&pg, &cp, &key).unwrap().unwrap();
    assert_eq!((audit.entries, audit.checkpoints), (141, 6));
    assert_eq!(
        pg.last_seen(bank.id, &merchant_of("M2")).unwrap(),
        Some(seen)
    );
    assert_eq!(pg.head().unwrap(), lite.head().unwrap());
    // The same state.
    assert_eq!(pg.keys(None).unwrap(), lite.keys(None).unwrap());
    assert_eq!(
        pg.active_consents().unwrap(),
        lite.active_consents().unwrap()
    );
    assert_eq!(pg.open_disputes().unwrap(), lite.open_disputes().unwrap());
    assert_eq!(pg.keys_version().unwrap(), lite.keys_version().unwrap());
    // Only into an empty store.
    assert!(matches!(
        copy_store(&lite, &pg),
        Err(StoreError::Conflict(_))
    ));
    // New rows on the copy take fresh ids, and its log goes on from where it was.
    let now = at("2026-03-01T09:00:00+08:00");
    let (a, b) = (
        pg.add_principal(Role::Lender, "NEW", "New bank", now)
            .unwrap(),
        lite.add_principal(Role::Lender, "NEW", "New bank", now)
            .unwrap(),
    );
    assert_eq!(a.id, b.id);
    let done = pg.append(vec![record(&a, "M1", 999)], &sec, now).unwrap();
    assert_eq!(done.first, 141);
    checkpoint::append(&cp, &done.head).unwrap();
    assert_eq!(verify_store(&pg, &cp, &key).unwrap().unwrap().entries, 142);
}
