//! The service's hardening promises, through the real binary: numeric bounds checked before
//! any work, a query log that whoever holds only the database file cannot forge (checked
//! with an independent implementation of RFC 9162 and the log's public key), pages over a
//! long history in bounded memory, revocation that holds from the next request under load,
//! serialised promotions, idempotent creation, principals with stable codes, status codes
//! and problem documents for every refusal, and no log flooding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::service::{
    fixture, http, new_key, other_merchant, request, request_with, start, value, Server,
};
use common::{run, run_ok};
use sha2::{Digest, Sha256};

/// The log's size, from its public checkpoint.
fn log_size(srv: &Server) -> u64 {
    value(&http(&srv.addr, "GET", "/v1/log/checkpoint", None, None).2)["signed_head"]["tree_size"]
        .as_u64()
        .unwrap()
}

fn eligibility(term: &str) -> String {
    format!(
        r#"{{"amount":"100000","term_months":{term},"loan_purpose":"working_capital","purpose":"pre_loan"}}"#
    )
}

#[test]
fn huge_numbers_are_refused_before_any_work_and_never_stall_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(
        tmp.path(),
        &fixture().latest,
        &[],
        &[
            ("YUANXIN_RATE_PER_SECOND", "1000000"),
            ("YUANXIN_RATE_BURST", "1000000"),
        ],
    );
    let a = srv.addr.clone();
    let path = format!("/v1/merchants/{}/eligibility", srv.merchant);
    let before = log_size(&srv);
    // The terms that once panicked (12,126) or looped for minutes (the integer maximum),
    // and every other out-of-range number: 422 naming the field, nothing logged.
    for term in [
        "12126",
        "4294967295",
        "0",
        "-1",
        "37",
        "1e9",
        "99999999999999999999",
        "12.5",
    ] {
        let r = request(
            &a,
            "POST",
            &path,
            Some(&srv.lender),
            Some(&eligibility(term)),
        );
        assert_eq!(r.status, 422, "{term}: {}", r.body);
        let p = value(&r.body);
        assert_eq!(
            (p["code"].as_str(), p["field"].as_str()),
            (Some("invalid_field"), Some("term_months")),
            "{term}"
        );
        assert!(
            p["detail"].as_str().unwrap().contains("1 to 36"),
            "{}",
            r.body
        );
    }
    for (field, body) in [
        (
            "amount",
            r#"{"amount":"1e30","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}"#,
        ),
        (
            "amount",
            r#"{"amount":"100000000.01","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}"#,
        ),
        (
            "amount",
            r#"{"amount":"0.001","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}"#,
        ),
        (
            "amount",
            r#"{"amount":50000,"term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}"#,
        ),
        (
            "loan_purpose",
            r#"{"amount":"5","term_months":12,"loan_purpose":"yacht","purpose":"pre_loan"}"#,
        ),
    ] {
        let r = request(&a, "POST", &path, Some(&srv.lender), Some(body));
        assert_eq!(
            (r.status, value(&r.body)["field"].as_str()),
            (422, Some(field)),
            "{body}: {}",
            r.body
        );
    }
    for (url, field) in [
        (
            "/v1/me/eligibility?amount=100&term_months=4294967295",
            "term_months",
        ),
        ("/v1/me/queries?limit=501", "limit"),
        ("/v1/me/queries?limit=0", "limit"),
        ("/v1/me/queries?cursor=-5", "cursor"),
        ("/v1/me/consents?limit=99999999999999999999", "limit"),
    ] {
        let r = request(&a, "GET", url, Some(&srv.merchant_key), None);
        assert_eq!(
            (r.status, value(&r.body)["field"].as_str()),
            (422, Some(field)),
            "{url}: {}",
            r.body
        );
    }
    let r = request(
        &a,
        "POST",
        "/v1/me/consents",
        Some(&srv.merchant_key),
        Some(r#"{"lender":"ICBC-demo","purpose":"pre_loan","days":100000}"#),
    );
    assert_eq!(
        (r.status, value(&r.body)["field"].as_str()),
        (422, Some("days"))
    );
    assert_eq!(
        log_size(&srv),
        before,
        "nothing refused for its input is logged"
    );

    // Answered at once: the median of ten sequential refusals, in this debug build.
    let mut took: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            let r = request(
                &a,
                "POST",
                &path,
                Some(&srv.lender),
                Some(&eligibility("4294967295")),
            );
            assert_eq!(r.status, 422);
            t.elapsed()
        })
        .collect();
    took.sort();
    assert!(took[5] < Duration::from_millis(10), "median {:?}", took[5]);

    // Ten such requests in flight at once do not hold up the probe: the probes start once
    // every worker has had an answer (a barrier, not a sleep), and run while they go on.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(std::sync::Barrier::new(11));
    let workers: Vec<_> = (0..10)
        .map(|_| {
            let (a, path, key, stop, started) = (
                a.clone(),
                path.clone(),
                srv.lender.clone(),
                Arc::clone(&stop),
                Arc::clone(&started),
            );
            std::thread::spawn(move || {
                let huge = || {
                    let r = request(
                        &a,
                        "POST",
                        &path,
                        Some(&key),
                        Some(&eligibility("4294967295")),
                    );
                    assert_eq!(r.status, 422);
                };
                huge();
                started.wait();
                while !stop.load(Ordering::SeqCst) {
                    huge();
                }
            })
        })
        .collect();
    started.wait();
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(request(&a, "GET", "/healthz", None, None).status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "/healthz took {:?}",
            t.elapsed()
        );
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    // A real request with the longest term the catalogue has is decided.
    let r = request(
        &a,
        "POST",
        &path,
        Some(&srv.lender),
        Some(&eligibility("36")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

// ---------------------------------------------------------------------------------------
// An independent implementation of what a merchant or a lender checks offline: RFC 9162
// leaves, inclusion and consistency by recursion on the tree's definition (not the
// service's iterative algorithms), and Ed25519 signatures of the signed heads.

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn h32(s: &str) -> [u8; 32] {
    unhex(s).try_into().unwrap()
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(l)
        .chain_update(r)
        .finalize()
        .into()
}

/// The leaf of an entry as shown to merchants and lenders (docs/service.md).
fn leaf_of(e: &serde_json::Value) -> [u8; 32] {
    let s = |k: &str| e[k].as_str().unwrap().to_owned();
    let consent = e["consent_id"]
        .as_i64()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let fields = [
        s("at"),
        s("request_id"),
        s("role"),
        e["institution"]["code"].as_str().unwrap().to_owned(),
        s("key_id"),
        s("merchant_id"),
        s("action"),
        s("purpose"),
        consent,
        s("outcome"),
        s("model_id"),
        s("response_digest"),
    ];
    let mut bytes = b"yuanxin-log-entry-v1\n".to_vec();
    for f in fields {
        bytes.extend_from_slice(&(f.len() as u32).to_be_bytes());
        bytes.extend_from_slice(f.as_bytes());
    }
    Sha256::new()
        .chain_update([0u8])
        .chain_update(&bytes)
        .finalize()
        .into()
}

fn split(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root that an audit path gives for leaf `m` of `n` (None if the path's length is
/// wrong), by the definition PATH(m, D[n]).
fn root_from_path(m: u64, n: u64, leaf: [u8; 32], path: &[[u8; 32]]) -> Option<[u8; 32]> {
    if n == 1 {
        return path.is_empty().then_some(leaf);
    }
    let (last, rest) = path.split_last()?;
    let k = split(n);
    Some(if m < k {
        node(&root_from_path(m, k, leaf, rest)?, last)
    } else {
        node(last, &root_from_path(m - k, n - k, leaf, rest)?)
    })
}

/// The (old, new) roots a consistency proof gives, by the definition SUBPROOF(m, D[n], b).
fn roots_from_consistency(
    m: u64,
    n: u64,
    complete: bool,
    old: [u8; 32],
    proof: &[[u8; 32]],
) -> Option<([u8; 32], [u8; 32])> {
    if m == n {
        return if complete {
            proof.is_empty().then_some((old, old))
        } else {
            (proof.len() == 1).then(|| (proof[0], proof[0]))
        };
    }
    let (last, rest) = proof.split_last()?;
    let k = split(n);
    if m <= k {
        let (o, nw) = roots_from_consistency(m, k, complete, old, rest)?;
        Some((o, node(&nw, last)))
    } else {
        let (o, nw) = roots_from_consistency(m - k, n - k, false, old, rest)?;
        Some((node(last, &o), node(last, &nw)))
    }
}

/// Checks a signed head's signature with the log's public key.
fn signed(head: &serde_json::Value, public_key: &str) -> bool {
    let msg = format!(
        "yuanxin-query-log-v1\n{}\n{}\n{}\n",
        head["tree_size"],
        head["root_hash"].as_str().unwrap(),
        head["timestamp"].as_str().unwrap()
    );
    let key = ed25519_dalek::VerifyingKey::from_bytes(&h32(public_key)).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(
        &unhex(head["signature"].as_str().unwrap())
            .try_into()
            .unwrap(),
    );
    use ed25519_dalek::Verifier;
    key.verify(msg.as_bytes(), &sig).is_ok()
}

fn hashes(v: &serde_json::Value) -> Vec<[u8; 32]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h32(h.as_str().unwrap()))
        .collect()
}

#[test]
fn receipts_and_proofs_check_offline_and_forged_logs_are_found() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(
        tmp.path(),
        &fixture().latest,
        &[],
        &[
            ("YUANXIN_CHECKPOINT_EVERY", "5"),
            ("YUANXIN_RATE_PER_SECOND", "100000"),
            ("YUANXIN_RATE_BURST", "100000"),
        ],
    );
    let a = srv.addr.as_str();
    let m = srv.merchant.as_str();
    let public_key = value(&http(a, "GET", "/v1/log/checkpoint", None, None).2)["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    // A lender's queries; each answer carries a receipt.
    let mut receipts = Vec::new();
    for i in 0..13 {
        let r = if i % 4 == 3 {
            request(
                a,
                "POST",
                &format!("/v1/merchants/{m}/eligibility"),
                Some(&srv.lender),
                Some(&eligibility("12")),
            )
        } else {
            request(
                a,
                "GET",
                &format!("/v1/merchants/{m}/score?purpose=pre_loan"),
                Some(&srv.lender),
                None,
            )
        };
        assert_eq!(r.status, 200, "{}", r.body);
        let index: u64 = r.header("yuanxin-log-index").unwrap().parse().unwrap();
        let head = value(&r.header("yuanxin-signed-head").unwrap());
        assert!(
            signed(&head, &public_key),
            "the receipt is signed by the log's key"
        );
        assert!(head["tree_size"].as_u64().unwrap() > index);
        receipts.push((index, head, r.header("x-request-id").unwrap(), r.body));
    }
    // The lender cites a receipt: the entry and its proof against the receipt's head.
    let (index, head, rid, body) = &receipts[3];
    let size = head["tree_size"].as_u64().unwrap();
    let (s, _, p) = http(
        a,
        "GET",
        &format!("/v1/log/entries/{index}?tree_size={size}"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(s, 200, "{p}");
    let p = value(&p);
    let e = &p["entry"];
    assert_eq!(
        e["request_id"],
        rid.as_str(),
        "the entry carries the response id"
    );
    assert_eq!(
        e["response_digest"],
        blake3::hash(body.as_bytes()).to_hex().to_string()
    );
    let root = root_from_path(*index, size, leaf_of(e), &hashes(&p["proof"])).unwrap();
    assert_eq!(
        root,
        h32(head["root_hash"].as_str().unwrap()),
        "included in the signed head the lender holds"
    );
    // Another lender, or another merchant, cannot read the entry.
    let stranger = new_key(&srv, "lender", "STRANGER");
    assert_eq!(
        http(
            a,
            "GET",
            &format!("/v1/log/entries/{index}"),
            Some(&stranger),
            None
        )
        .0,
        404
    );
    // The later log is consistent with the receipt's head.
    let latest = value(&http(a, "GET", "/v1/log/checkpoint", None, None).2)["signed_head"].clone();
    let n = latest["tree_size"].as_u64().unwrap();
    let (s, _, c) = http(
        a,
        "GET",
        &format!("/v1/log/consistency?first={size}&second={n}"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(s, 200, "{c}");
    let c = value(&c);
    let (old, new) = roots_from_consistency(
        size,
        n,
        true,
        h32(head["root_hash"].as_str().unwrap()),
        &hashes(&c["proof"]),
    )
    .unwrap();
    assert_eq!(old, h32(head["root_hash"].as_str().unwrap()));
    assert_eq!(new, h32(latest["root_hash"].as_str().unwrap()));

    // The merchant checks every entry about it offline, page by page.
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let url = format!("/v1/me/queries?proofs=true&limit=4{cursor}");
        let page = value(&http(a, "GET", &url, Some(&srv.merchant_key), None).2);
        let head = &page["signed_head"];
        assert!(signed(head, &public_key));
        let n = head["tree_size"].as_u64().unwrap();
        for e in page["items"].as_array().unwrap() {
            let leaf = leaf_of(e);
            assert_eq!(leaf, h32(e["leaf_hash"].as_str().unwrap()));
            assert_eq!(
                e["institution"]["name"], "ICBC (demo)",
                "institutions by name, not key ids"
            );
            let root = root_from_path(e["index"].as_u64().unwrap(), n, leaf, &hashes(&e["proof"]))
                .unwrap();
            assert_eq!(root, h32(head["root_hash"].as_str().unwrap()));
            seen += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, 13);

    // Stop the service (it writes a last checkpoint), then play the attacker who holds the
    // database file but neither the key file nor the checkpoint file.
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut srv = srv;
    assert!(srv.child.wait().unwrap().success());
    let verify = |db: &std::path::Path| {
        run(&[
            "audit",
            "verify",
            "--db",
            db.to_str().unwrap(),
            "--checkpoints",
            srv.checkpoints.to_str().unwrap(),
            "--public-key",
            &public_key,
        ])
    };
    let ok = verify(&srv.db);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("13 entries"));
    let checkpoints = std::fs::read_to_string(&srv.checkpoints).unwrap();
    assert!(
        checkpoints.lines().count() >= 3,
        "at start, every 5 entries, at shutdown:\n{checkpoints}"
    );
    {
        let c = rusqlite::Connection::open(&srv.db).unwrap();
        let secrets: i64 = c
            .query_row(
                "SELECT count(*) FROM meta WHERE key LIKE '%secret%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(secrets, 0, "no secret inside the database");
    }
    let tamper = |sql: &str| -> String {
        let copy = tmp.path().join("tampered.sqlite");
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", copy.display()));
        }
        std::fs::copy(&srv.db, &copy).unwrap();
        let c = rusqlite::Connection::open(&copy).unwrap();
        c.execute_batch(sql).unwrap();
        drop(c);
        let out = verify(&copy);
        assert!(!out.status.success(), "{sql} went unnoticed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Truncate back to an older commit, whose last row carries an older head the attacker
    // could not have signed anew: the checkpoints outside show the loss.
    let keep = receipts[4].1["tree_size"].as_u64().unwrap();
    let why = tamper(&format!("DELETE FROM log_entries WHERE idx >= {keep};"));
    assert!(why.contains("removed"), "{why}");
    // Delete everything.
    let why = tamper("DELETE FROM log_entries; DELETE FROM meta WHERE key = 'signed_head';");
    assert!(why.contains("no signed tree head"), "{why}");
    // Edit an entry and re-hash everything above it (the hash is public; the key is not).
    let rehash = {
        let c = rusqlite::Connection::open(&srv.db).unwrap();
        let mut leaves: Vec<[u8; 32]> = Vec::new();
        let mut st = c
            .prepare("SELECT idx, leaf_hash FROM log_entries ORDER BY idx")
            .unwrap();
        for row in st.query_map([], |r| r.get::<_, Vec<u8>>(1)).unwrap() {
            leaves.push(row.unwrap().try_into().unwrap());
        }
        // Entry 2's purpose becomes post_loan: rebuild its leaf from its fields.
        let e: String = c
            .query_row(
                "SELECT json_object('at', at, 'request_id', request_id, 'role', role, 'institution', json_object('code', principal_code),
                   'key_id', key_id, 'merchant_id', merchant_id, 'action', action, 'purpose', 'post_loan', 'consent_id', consent_id,
                   'outcome', outcome, 'model_id', model_id, 'response_digest', response_digest) FROM log_entries WHERE idx = 2",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let e = value(&e);
        leaves[2] = leaf_of(&e);
        let mut sql = format!(
            "UPDATE log_entries SET purpose = 'post_loan', leaf_hash = x'{}' WHERE idx = 2;",
            blake3_hex(&leaves[2])
        );
        // Every perfect subtree the log stores (levels 4 and up, with the entry that
        // completes it), recomputed.
        let mut stored: std::collections::BTreeMap<usize, Vec<u8>> = Default::default();
        let mut level = leaves.clone();
        let mut l = 0;
        while level.len() > 1 {
            l += 1;
            level = level
                .chunks(2)
                .filter(|p| p.len() == 2)
                .map(|p| node(&p[0], &p[1]))
                .collect();
            if l >= yuanxin_store::STORED_FROM_LEVEL {
                for (i, h) in level.iter().enumerate() {
                    stored
                        .entry(((i + 1) << l) - 1)
                        .or_default()
                        .extend_from_slice(h);
                }
            }
        }
        for (idx, nodes) in stored {
            let hex: String = nodes.iter().map(|b| format!("{b:02x}")).collect();
            sql.push_str(&format!(
                "UPDATE log_entries SET nodes = x'{hex}' WHERE idx = {idx};"
            ));
        }
        sql
    };
    let why = tamper(&rehash);
    assert!(
        why.contains("no longer have the root") || why.contains("not the log's"),
        "{why}"
    );
    // `audit verify` refuses a missing database and creates nothing; it changes nothing.
    let missing = tmp.path().join("missing.sqlite");
    let out = verify(&missing);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no database"));
    assert!(!missing.exists());
    let before = std::fs::read(&srv.db).unwrap();
    assert!(verify(&srv.db).status.success());
    assert_eq!(std::fs::read(&srv.db).unwrap(), before, "read-only");
    srv.child.kill().ok();
}

fn blake3_hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_hundred_thousand_queries_page_in_bounded_memory() {
    use yuanxin_store::prelude::*;
    use yuanxin_store::{
        LogRecord, OpenMode, Outcome, Purpose, Role, Secrets, SecretsSource, Store, Timestamp,
    };
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.sqlite");
    // 100,000 queries about the demo merchant, written through the store the service uses.
    let merchant = "M0000000";
    {
        let (secrets, _) =
            Secrets::load(&SecretsSource::File(tmp.path().join("db.key")), None).unwrap();
        let mut s = Store::open(&db, OpenMode::Create).unwrap();
        let now = Timestamp::now();
        s.register_merchants([merchant], now).unwrap();
        let bank = s
            .add_principal(Role::Lender, "BIG", "Big Bank", now)
            .unwrap();
        for batch in 0..20 {
            let records = (0..5000)
                .map(|i| LogRecord {
                    at: now,
                    request_id: format!("R{:08}", batch * 5000 + i).into(),
                    principal: std::sync::Arc::new(bank.clone()),
                    key_id: "000000000000".into(),
                    merchant_id: yuanxin_domain::MerchantId::parse(merchant).unwrap(),
                    action: "score",
                    purpose: Purpose::PostLoan,
                    consent_id: Some(yuanxin_store::ConsentId(1)),
                    outcome: Outcome::Served,
                    model_id: "m".into(),
                    response_digest: "d".repeat(64).into(),
                    seen: None,
                })
                .collect();
            s.append(records, &secrets, now).unwrap();
        }
    }
    let srv = start(
        tmp.path(),
        &fixture().latest,
        &[],
        &[
            ("YUANXIN_RATE_PER_SECOND", "100000"),
            ("YUANXIN_RATE_BURST", "100000"),
        ],
    );
    assert_eq!(srv.merchant, merchant);
    let hwm = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .parse()
            .unwrap()
    };
    // Warm up (first page, with proofs), then measure the peak over the whole history.
    let first = value(
        &http(
            &srv.addr,
            "GET",
            "/v1/me/queries?limit=500&proofs=true",
            Some(&srv.merchant_key),
            None,
        )
        .2,
    );
    assert_eq!(first["items"].as_array().unwrap().len(), 500);
    let start_hwm = hwm(srv.child.id());
    // Writes are not held up by the reads: a consent granted from another thread meanwhile.
    let (a, key) = (srv.addr.clone(), srv.merchant_key.clone());
    let writer = std::thread::spawn(move || {
        (0..20)
            .map(|_| {
                let t = Instant::now();
                let s = http(
                    &a,
                    "POST",
                    "/v1/me/consents",
                    Some(&key),
                    Some(r#"{"lender":"ICBC-demo","purpose":"post_loan","days":5}"#),
                )
                .0;
                (s, t.elapsed())
            })
            .collect::<Vec<_>>()
    });
    let mut seen = std::collections::HashSet::new();
    let mut cursor = String::new();
    let mut pages = 0;
    let mut largest = 0;
    let mut last_index = u64::MAX;
    loop {
        let r = request(
            &srv.addr,
            "GET",
            &format!("/v1/me/queries?limit=500{cursor}"),
            Some(&srv.merchant_key),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        largest = largest.max(r.body.len());
        let page = value(&r.body);
        for e in page["items"].as_array().unwrap() {
            let i = e["index"].as_u64().unwrap();
            assert!(i < last_index, "newest first");
            last_index = i;
            assert!(seen.insert(i));
        }
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (100_000, 200));
    assert!(largest < 512 * 1024, "a page is {largest} bytes");
    let grew = hwm(srv.child.id()).saturating_sub(start_hwm);
    eprintln!("peak memory grew by {grew} kB while paging 100,000 entries");
    assert!(
        grew < 16 * 1024,
        "the peak memory grew by {grew} kB while paging 100,000 entries"
    );
    for (s, took) in writer.join().unwrap() {
        assert_eq!(s, 201);
        assert!(
            took < Duration::from_secs(2),
            "a write took {took:?} during the reads"
        );
    }
}

#[test]
fn revocation_holds_from_the_next_request_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(
        tmp.path(),
        &fixture().latest,
        &[],
        &[
            ("YUANXIN_RATE_PER_SECOND", "1000000"),
            ("YUANXIN_RATE_BURST", "1000000"),
            ("YUANXIN_ANONYMOUS_RATE_PER_SECOND", "1000000"),
            ("YUANXIN_ANONYMOUS_RATE_BURST", "1000000"),
        ],
    );
    let a = srv.addr.clone();
    // Two more keys of the demo lender (the same institution: its consents hold for both).
    let k_api = new_key(&srv, "lender", "ICBC-demo");
    let k_cli = new_key(&srv, "lender", "ICBC-demo");
    let path = format!("/v1/merchants/{}/score?purpose=pre_loan", srv.merchant);
    for (key, how) in [(k_api, "api"), (k_cli, "cli")] {
        assert_eq!(
            http(&a, "GET", &path, Some(&key), None).0,
            200,
            "a second key of the institution shares its consents"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let log: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (a, path, key, stop, log) = (
                    a.clone(),
                    path.clone(),
                    key.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&log),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let sent = Instant::now();
                        let s = request(&a, "GET", &path, Some(&key), None).status;
                        log.lock().unwrap().push((sent, s));
                    }
                })
            })
            .collect();
        // Let the load build up: wait for 50 answers.
        while log.lock().unwrap().len() < 50 {
            std::thread::yield_now();
        }
        let key_id = key.split('_').nth(1).unwrap().to_owned();
        match how {
            "api" => {
                let r = request(
                    &a,
                    "DELETE",
                    &format!("/v1/admin/keys/{key_id}"),
                    Some(&srv.admin),
                    None,
                );
                assert_eq!(r.status, 204, "{}", r.body);
            }
            _ => {
                run_ok(&["keys", "revoke", &key_id, "--db", srv.db.to_str().unwrap()]);
            }
        }
        let revoked = Instant::now();
        let n = log.lock().unwrap().len();
        while log.lock().unwrap().len() < n + 50 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        let log = log.lock().unwrap();
        let after: Vec<u16> = log
            .iter()
            .filter(|(t, _)| *t > revoked)
            .map(|(_, s)| *s)
            .collect();
        assert!(
            after.len() >= 40,
            "{how}: {} requests after the revocation",
            after.len()
        );
        assert!(
            after.iter().all(|&s| s == 401),
            "{how}: served after the revocation returned: {after:?}"
        );
        assert!(!after.contains(&200));
        assert!(log.iter().any(|(_, s)| *s == 200), "{how}: served before");
    }
}

#[test]
fn concurrent_promotions_leave_the_registry_and_the_engine_agreeing() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(
        tmp.path(),
        &fixture().latest,
        &[],
        &[
            ("YUANXIN_RATE_PER_SECOND", "100000"),
            ("YUANXIN_RATE_BURST", "100000"),
        ],
    );
    let registry = tmp.path().join("models/registry.json");
    for round in 0..4 {
        let go = Arc::new(std::sync::Barrier::new(2));
        let pair: Vec<_> = ["second.json", "default-scorecard.json"]
            .into_iter()
            .map(|id| {
                let (a, key, go) = (srv.addr.clone(), srv.analyst.clone(), Arc::clone(&go));
                std::thread::spawn(move || {
                    go.wait();
                    let (s, _, b) = http(
                        &a,
                        "POST",
                        "/v1/admin/promote",
                        Some(&key),
                        Some(&format!(r#"{{"id":"{id}"}}"#)),
                    );
                    assert_eq!(s, 200, "{b}");
                    value(&b)
                })
            })
            .collect();
        let results: Vec<serde_json::Value> = pair.into_iter().map(|t| t.join().unwrap()).collect();
        // Serialised: one promotion's "previous" is the other's "serving".
        assert!(
            results[0]["previous"] == results[1]["serving"]
                || results[1]["previous"] == results[0]["serving"],
            "round {round}: {results:?}"
        );
        let champion = value(&std::fs::read_to_string(&registry).unwrap())["champion"].clone();
        let serving = value(&http(&srv.addr, "GET", "/readyz", None, None).2)["model"].clone();
        assert_eq!(
            champion, serving,
            "round {round}: the registry and the serving engine agree"
        );
    }
}

#[test]
fn idempotent_creation_principals_status_codes_and_no_log_flooding() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(
        tmp.path(),
        &fixture().latest,
        &[],
        &[
            ("YUANXIN_ANONYMOUS_RATE_PER_SECOND", "0.01"),
            ("YUANXIN_ANONYMOUS_RATE_BURST", "20"),
        ],
    );
    let a = srv.addr.as_str();
    let m = srv.merchant.as_str();
    let count = |key: &str, url: &str| {
        value(&http(a, "GET", url, Some(key), None).2)["items"]
            .as_array()
            .unwrap()
            .len()
    };

    // Idempotency: a retried consent, dispute or key returns the first response.
    let grant = r#"{"lender":"ICBC-demo","purpose":"post_loan","days":30}"#;
    let auth = format!("Bearer {}", srv.merchant_key);
    let send = |key: &str, body: &str, url: &str, auth: &str| {
        request_with(
            a,
            "POST",
            url,
            &[("Authorization", auth), ("Idempotency-Key", key)],
            Some(body),
        )
    };
    let before = count(&srv.merchant_key, "/v1/me/consents");
    let first = send("grant-1", grant, "/v1/me/consents", &auth);
    let again = send("grant-1", grant, "/v1/me/consents", &auth);
    assert_eq!((first.status, again.status), (201, 201), "{}", again.body);
    assert_eq!(first.body, again.body);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(
        count(&srv.merchant_key, "/v1/me/consents"),
        before + 1,
        "one consent, not two"
    );
    let other = send(
        "grant-1",
        r#"{"lender":"ICBC-demo","purpose":"pre_loan","days":30}"#,
        "/v1/me/consents",
        &auth,
    );
    assert_eq!(
        (other.status, value(&other.body)["code"].as_str()),
        (409, Some("idempotency_mismatch"))
    );
    let d1 = send(
        "d-1",
        r#"{"subject":"s","detail":"x"}"#,
        "/v1/me/disputes",
        &auth,
    );
    let d2 = send(
        "d-1",
        r#"{"subject":"s","detail":"x"}"#,
        "/v1/me/disputes",
        &auth,
    );
    assert_eq!((d1.status, d1.body.clone()), (201, d2.body));
    assert_eq!(count(&srv.merchant_key, "/v1/me/disputes"), 1);
    let admin = format!("Bearer {}", srv.admin);
    let k1 = send(
        "k-1",
        r#"{"role":"lender","principal":"ICBC-demo"}"#,
        "/v1/admin/keys",
        &admin,
    );
    let k2 = send(
        "k-1",
        r#"{"role":"lender","principal":"ICBC-demo"}"#,
        "/v1/admin/keys",
        &admin,
    );
    assert_eq!(k1.status, 201, "{}", k1.body);
    assert_eq!(k1.body, k2.body);
    let key = value(&k1.body)["key"].as_str().unwrap().to_owned();
    assert_eq!(
        http(
            a,
            "GET",
            &format!("/v1/merchants/{m}/score?purpose=pre_loan"),
            Some(&key),
            None
        )
        .0,
        200
    );
    // The key is not in the database in the clear (the stored replay is sealed).
    let c = rusqlite::Connection::open(&srv.db).unwrap();
    let bodies: Vec<Vec<u8>> = c
        .prepare("SELECT body FROM idempotency")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!bodies.is_empty());
    assert!(
        bodies
            .iter()
            .all(|b| !String::from_utf8_lossy(b).contains(&key[3..15])),
        "sealed"
    );
    drop(c);

    // Principals: consents name institutions by code; unknown ones and unknown merchants
    // are refused; an institution's name is not its identity.
    let r = request(
        a,
        "POST",
        "/v1/me/consents",
        Some(&srv.merchant_key),
        Some(r#"{"lender":"NOBANK","purpose":"post_loan","days":30}"#),
    );
    assert_eq!(
        (
            r.status,
            value(&r.body)["code"].as_str(),
            value(&r.body)["field"].as_str()
        ),
        (404, Some("unknown_principal"), Some("lender"))
    );
    let out = run(&[
        "principals",
        "add",
        "--role",
        "lender",
        "--code",
        "ICBC-demo2",
        "--name",
        "ICBC (demo)",
        "--db",
        srv.db.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let twin = run_ok(&[
        "keys",
        "create",
        "--role",
        "lender",
        "--principal",
        "ICBC-demo2",
        "--db",
        srv.db.to_str().unwrap(),
    ])
    .trim()
    .to_owned();
    assert_eq!(
        http(
            a,
            "GET",
            &format!("/v1/merchants/{m}/score?purpose=pre_loan"),
            Some(&twin),
            None
        )
        .0,
        403,
        "same name, another institution: no consent"
    );
    let out = run(&[
        "keys",
        "create",
        "--role",
        "merchant",
        "--principal",
        "M9999999",
        "--db",
        srv.db.to_str().unwrap(),
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown"));
    let r = request(
        a,
        "POST",
        "/v1/admin/keys",
        Some(&srv.admin),
        Some(r#"{"role":"lender","principal":"NOBANK"}"#),
    );
    assert_eq!(
        (r.status, value(&r.body)["code"].as_str()),
        (404, Some("unknown_principal"))
    );
    // Commands refuse a database that does not exist, and say which one they used.
    let nowhere = tmp.path().join("elsewhere/db.sqlite");
    let out = run(&[
        "keys",
        "create",
        "--role",
        "lender",
        "--principal",
        "ICBC-demo",
        "--db",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no database"));
    assert!(!nowhere.exists());
    let out = run(&["principals", "list", "--db", srv.db.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!(
        "database: {}",
        std::fs::canonicalize(&srv.db).unwrap().display()
    )));

    // Status codes: 413, 415, 414, 431, 405 with Allow; Bearer in any case.
    let huge = format!(r#"{{"subject":"s","detail":"{}"}}"#, "x".repeat(70_000));
    let r = request(
        a,
        "POST",
        "/v1/me/disputes",
        Some(&srv.merchant_key),
        Some(&huge),
    );
    assert_eq!(
        (r.status, value(&r.body)["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let r = request_with(
        a,
        "POST",
        "/v1/me/disputes",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        Some("{}"),
    );
    assert_eq!(
        (r.status, value(&r.body)["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let r = request(
        a,
        "GET",
        &format!("/v1/me/queries?cursor={}", "1".repeat(9000)),
        Some(&srv.merchant_key),
        None,
    );
    assert_eq!(
        (r.status, r.ctype.as_str()),
        (414, "application/problem+json")
    );
    let big = "x".repeat(40_000);
    let r = request_with(
        a,
        "GET",
        "/v1/me/score",
        &[("Authorization", &auth), ("X-Padding", &big)],
        None,
    );
    assert_eq!(
        (r.status, r.ctype.as_str()),
        (431, "application/problem+json")
    );
    let r = request(a, "PATCH", "/v1/me/consents", Some(&srv.merchant_key), None);
    assert_eq!(
        (r.status, value(&r.body)["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert!(
        r.header("allow")
            .is_some_and(|v| v.contains("GET") && v.contains("POST")),
        "{}",
        r.head
    );
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let h = format!("{scheme} {}", srv.merchant_key);
        assert_eq!(
            request_with(a, "GET", "/v1/me/score", &[("Authorization", &h)], None).status,
            200,
            "{scheme}"
        );
    }
    let r = request(
        a,
        "GET",
        "/v1/me/queries?limit=5&limit=6",
        Some(&srv.merchant_key),
        None,
    );
    assert_eq!(
        (r.status, value(&r.body)["field"].as_str()),
        (422, Some("limit"))
    );
    let r = request(
        a,
        "GET",
        "/v1/me/score?extra=1",
        Some(&srv.merchant_key),
        None,
    );
    assert_eq!(
        (r.status, value(&r.body)["code"].as_str()),
        (422, Some("unknown_field"))
    );

    // Log flooding: ids that are not ids are refused before anything is logged; so are
    // merchants that do not exist.
    let before = log_size(&srv);
    let long = "M".repeat(60_000);
    for id in [long.as_str(), "M%01%02", "M%0A1", "%E4%B8%AD", "M0000000.."] {
        let r = request(
            a,
            "GET",
            &format!("/v1/merchants/{id}/score?purpose=pre_loan"),
            Some(&srv.lender),
            None,
        );
        assert!(
            matches!(r.status, 404 | 414 | 422),
            "{id}: {} {}",
            r.status,
            r.body
        );
    }
    let r = request(
        a,
        "GET",
        "/v1/merchants/M7777777/score?purpose=pre_loan",
        Some(&srv.lender),
        None,
    );
    assert_eq!(
        (r.status, value(&r.body)["code"].as_str()),
        (404, Some("unknown_merchant"))
    );
    assert_eq!(log_size(&srv), before, "nothing logged");
    // Requests without a valid key are limited per address: 20, then 429.
    let statuses: Vec<u16> = (0..25)
        .map(|i| {
            request(
                a,
                "GET",
                "/v1/me/score",
                Some(&format!("yx_0000000000{i:02}_x")),
                None,
            )
            .status
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 401).count(),
        20,
        "{statuses:?}"
    );
    let r = request(a, "GET", "/v1/me/score", None, None);
    assert_eq!(
        (r.status, value(&r.body)["code"].as_str()),
        (429, Some("rate_limited"))
    );
    assert!(r.header("retry-after").is_some());
    // Keys that work are not held back by that.
    assert_eq!(
        http(a, "GET", "/v1/me/score", Some(&srv.merchant_key), None).0,
        200
    );
}

#[test]
fn a_first_service_database_is_upgraded_in_place() {
    // The first service kept its API-key secret inside the database and chained its log
    // with it; the service moves the secret to the key file and the log into the tree.
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.sqlite");
    let secret = [7u8; 32];
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(include_str!("data/v4-schema.sql")).unwrap();
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('key_secret', ?1)",
            [secret.to_vec()],
        )
        .unwrap();
        // A lender key `yx_aaaaaaaaaaaa_<secret>` and a consent to that lender by name.
        let digest = blake3::keyed_hash(&secret, b"0123456789abcdef0123456789abcdef01234567");
        c.execute(
            "INSERT INTO principals (key_id, role, name, merchant_id, key_digest, created_at) VALUES ('aaaaaaaaaaaa', 'lender', 'Old Bank', NULL, ?1, '2026-01-01T00:00:00+08:00')",
            [digest.as_bytes().to_vec()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO consents (merchant_id, lender, purpose, granted_at, expires_at) VALUES ('M0000000', 'Old Bank', 'pre_loan', '2026-01-01T00:00:00+08:00', '2036-01-01T00:00:00+08:00')",
            [],
        )
        .unwrap();
    }
    let srv = start(tmp.path(), &fixture().latest, &[], &[]);
    assert!(
        !value(&std::fs::read_to_string(&srv.key_file).unwrap())["api_key_secret"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let old_key = "yx_aaaaaaaaaaaa_0123456789abcdef0123456789abcdef01234567";
    let r = request(
        &srv.addr,
        "GET",
        "/v1/merchants/M0000000/score?purpose=pre_loan",
        Some(old_key),
        None,
    );
    assert_eq!(
        r.status, 200,
        "the old key and its consent still work: {}",
        r.body
    );
    let c = rusqlite::Connection::open(&srv.db).unwrap();
    let left: i64 = c
        .query_row(
            "SELECT count(*) FROM meta WHERE key = 'key_secret'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "the secret left the database");
    let _ = other_merchant(&srv);
}
