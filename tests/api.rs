//! The service end to end: the real `yuanxin serve` on a random loopback port, a temporary
//! database, profiles of a small simulated city, the shipped model, policy and catalogue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{bin, run, run_ok, simulate};

struct Server {
    child: Child,
    addr: String,
    lender: String,
    merchant_key: String,
    analyst: String,
    merchant: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The served model's id, from its readiness report.
fn srv_model(srv: &Server) -> serde_json::Value {
    let (_, _, r) = http(&srv.addr, "GET", "/readyz", None, None);
    serde_json::from_str::<serde_json::Value>(&r).unwrap()["model"].clone()
}

fn start(tmp: &Path, profiles: &Path) -> Server {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // A registry of our own: the shipped champion, a second valid model (the same scorecard
    // with another creation time) and a damaged file.
    let models = tmp.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for f in ["default-scorecard.json", "registry.json"] {
        std::fs::copy(repo.join("models").join(f), models.join(f)).unwrap();
    }
    let shipped = std::fs::read_to_string(repo.join("models/default-scorecard.json")).unwrap();
    std::fs::write(models.join("broken.json"), &shipped[..shipped.len() / 3]).unwrap();
    let panel = tmp.join("panel.parquet");
    run_ok(&[
        "profile",
        "--ledger",
        tmp.join("ledger").to_str().unwrap(),
        "--from",
        "2024-06-30",
        "--to",
        "2025-06-30",
        "--label",
        "default_12m",
        "--oot-from",
        "2025-01-01",
        "--out",
        panel.to_str().unwrap(),
    ]);
    run_ok(&[
        "train",
        "--data",
        panel.to_str().unwrap(),
        "--target",
        "default_12m",
        "--out",
        models.join("second.json").to_str().unwrap(),
        "--quiet",
    ]);
    let mut child = Command::new(bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(repo.join("data"))
        .arg("--models")
        .arg(&models)
        .arg("--profiles")
        .arg(profiles)
        .arg("--db")
        .arg(tmp.join("db.sqlite"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut get = |prefix: &str| -> String {
        let l = lines.next().expect("server output").unwrap();
        assert!(l.starts_with(prefix), "{l}");
        l
    };
    let first = get("Yuanxin serving on http://");
    let addr = first["Yuanxin serving on http://".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let last = |l: String| l.split_whitespace().last().unwrap().to_owned();
    let lender = last(get("demo lender key"));
    let merchant_key = last(get("demo merchant key"));
    let analyst = last(get("demo analyst key"));
    let merchant = last(get("demo merchant:"));
    Server {
        child,
        addr,
        lender,
        merchant_key,
        analyst,
        merchant,
    }
}

/// One HTTP/1.1 request; returns (status, content type, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, ctype, body.to_owned())
}

#[test]
fn roles_consent_and_the_query_log() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 300, 36, 11, &[]);
    let ledger = tmp.path().join("ledger");
    run_ok(&[
        "ingest",
        "--ledger",
        ledger.to_str().unwrap(),
        city.to_str().unwrap(),
    ]);
    let latest = tmp.path().join("latest.parquet");
    run_ok(&[
        "profile",
        "--ledger",
        ledger.to_str().unwrap(),
        "--as-of",
        "2026-06-30",
        "--out",
        latest.to_str().unwrap(),
    ]);
    let srv = start(tmp.path(), &latest);
    let a = srv.addr.as_str();
    let m = srv.merchant.as_str();
    let other = if m == "M0000001" {
        "M0000002"
    } else {
        "M0000001"
    };

    let (s, _, body) = http(a, "GET", "/readyz", None, None);
    assert_eq!(s, 200, "{body}");

    // Every route refuses a missing, unknown or malformed key with problem+json.
    let routes: [(&str, String, Option<&str>); 11] = [
        (
            "GET",
            format!("/v1/merchants/{m}/score?purpose=pre_loan"),
            None,
        ),
        (
            "POST",
            format!("/v1/merchants/{m}/eligibility"),
            Some(
                r#"{"amount":"50000","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}"#,
            ),
        ),
        ("GET", "/v1/me/score".into(), None),
        (
            "GET",
            "/v1/me/eligibility?amount=50000&term_months=12".into(),
            None,
        ),
        ("GET", "/v1/me/queries".into(), None),
        ("GET", "/v1/me/consents".into(), None),
        ("GET", "/v1/models".into(), None),
        ("POST", "/v1/admin/reload".into(), None),
        ("GET", "/v1/me/disputes".into(), None),
        ("GET", "/v1/disputes".into(), None),
        (
            "POST",
            "/v1/disputes/1/answer".into(),
            Some(r#"{"answer":"x"}"#),
        ),
    ];
    let unknown = "yx_000000000000_0123456789abcdef0123456789abcdef01234567";
    for (method, path, body) in &routes {
        for key in [None, Some(unknown), Some("not-a-key")] {
            let (s, ct, b) = http(a, method, path, key, *body);
            assert_eq!(s, 401, "{method} {path} with {key:?}: {b}");
            assert_eq!(ct, "application/problem+json");
        }
    }

    // With consent: the lender's score is served and logged; without: 403, logged too.
    let (s, _, score) = http(
        a,
        "GET",
        &format!("/v1/merchants/{m}/score?purpose=pre_loan"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(s, 200, "{score}");
    let v: serde_json::Value = serde_json::from_str(&score).unwrap();
    assert_eq!(v["merchant_id"], m);
    assert!(v["reasons"].as_array().unwrap().len() <= 4);
    let (s, _, _) = http(
        a,
        "GET",
        &format!("/v1/merchants/{other}/score?purpose=pre_loan"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(s, 403);
    let (s, _, _) = http(
        a,
        "GET",
        &format!("/v1/merchants/{m}/score?purpose=post_loan"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(s, 403, "consent is per purpose");
    let (s, _, decision) = http(
        a,
        "POST",
        &format!("/v1/merchants/{m}/eligibility"),
        Some(&srv.lender),
        Some(
            r#"{"amount":"50000","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}"#,
        ),
    );
    assert_eq!(s, 200, "{decision}");

    // Malformed bodies and unknown fields are 400 problem+json, never 5xx.
    for bad in [
        "",
        "{",
        "[]",
        r#"{"amount":"50000"}"#,
        r#"{"amount":"x","term_months":12,"loan_purpose":"a","purpose":"pre_loan"}"#,
        r#"{"amount":"50000","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan","extra":1}"#,
    ] {
        let (s, ct, b) = http(
            a,
            "POST",
            &format!("/v1/merchants/{m}/eligibility"),
            Some(&srv.lender),
            Some(bad),
        );
        assert!((400..500).contains(&s), "{bad:?} → {s} {b}");
        assert_eq!(ct, "application/problem+json", "{bad:?}");
    }

    // Roles: a merchant key cannot use lender or analyst routes, and sees only itself.
    let (s, _, _) = http(
        a,
        "GET",
        &format!("/v1/merchants/{other}/score?purpose=pre_loan"),
        Some(&srv.merchant_key),
        None,
    );
    assert_eq!(s, 403);
    let (s, _, _) = http(a, "GET", "/v1/models", Some(&srv.merchant_key), None);
    assert_eq!(s, 403);
    let (s, _, mine) = http(a, "GET", "/v1/me/score", Some(&srv.merchant_key), None);
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&mine).unwrap()["merchant_id"],
        m
    );
    let (s, _, _) = http(a, "GET", "/v1/models", Some(&srv.analyst), None);
    assert_eq!(s, 200);

    // The merchant sees who queried it: the two served queries and the refused one on it.
    let (_, _, log) = http(a, "GET", "/v1/me/queries", Some(&srv.merchant_key), None);
    let log: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    let outcomes: Vec<(&str, &str)> = log
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("score", "served"),
            ("score", "refused"),
            ("eligibility", "served")
        ]
    );
    assert!(log.iter().all(|e| e["merchant_id"] == m));
    // Served responses and log entries match one to one, by the digest of the bytes sent.
    assert_eq!(
        log[0]["response_digest"],
        blake3::hash(score.as_bytes()).to_hex().to_string()
    );
    assert_eq!(
        log[2]["response_digest"],
        blake3::hash(decision.as_bytes()).to_hex().to_string()
    );

    // A dispute: opened by the merchant with a 20-day deadline, flagged on the score the
    // lender sees, visible to the platform, answered by an analyst.
    let (s, _, d) = http(
        a,
        "POST",
        "/v1/me/disputes",
        Some(&srv.merchant_key),
        Some(r#"{"subject":"escrow_coverage","detail":"our escrow account was migrated"}"#),
    );
    assert_eq!(s, 201, "{d}");
    let d: serde_json::Value = serde_json::from_str(&d).unwrap();
    let (opened, deadline) = (
        d["opened_at"].as_str().unwrap(),
        d["deadline"].as_str().unwrap(),
    );
    let days = chrono::DateTime::parse_from_rfc3339(deadline).unwrap()
        - chrono::DateTime::parse_from_rfc3339(opened).unwrap();
    assert_eq!(days.num_days(), 20);
    let (_, _, sc) = http(
        a,
        "GET",
        &format!("/v1/merchants/{m}/score?purpose=pre_loan"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sc).unwrap()["open_dispute"],
        true
    );
    let (s, _, all) = http(a, "GET", "/v1/disputes", Some(&srv.analyst), None);
    assert_eq!(s, 200);
    let (_, _, overdue) = http(
        a,
        "GET",
        "/v1/disputes?overdue=true",
        Some(&srv.analyst),
        None,
    );
    assert_eq!(overdue, "[]");
    let id = serde_json::from_str::<serde_json::Value>(&all).unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    let (s, _, _) = http(
        a,
        "POST",
        &format!("/v1/disputes/{id}/answer"),
        Some(&srv.merchant_key),
        Some(r#"{"answer":"x"}"#),
    );
    assert_eq!(s, 403, "merchants do not answer disputes");
    let (s, _, _) = http(
        a,
        "POST",
        &format!("/v1/disputes/{id}/answer"),
        Some(&srv.analyst),
        Some(r#"{"answer":"Verified with the escrow bank; corrected."}"#),
    );
    assert_eq!(s, 204);
    let (_, _, sc) = http(
        a,
        "GET",
        &format!("/v1/merchants/{m}/score?purpose=pre_loan"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sc).unwrap()["open_dispute"],
        false
    );

    // Revoking the merchant's consent stops the lender; revoking a key stops its holder.
    let (_, _, consents) = http(a, "GET", "/v1/me/consents", Some(&srv.merchant_key), None);
    let id = serde_json::from_str::<serde_json::Value>(&consents).unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    let (s, _, _) = http(
        a,
        "DELETE",
        &format!("/v1/me/consents/{id}"),
        Some(&srv.merchant_key),
        None,
    );
    assert_eq!(s, 204);
    let (s, _, _) = http(
        a,
        "GET",
        &format!("/v1/merchants/{m}/score?purpose=pre_loan"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(s, 403);
    let (s, _, granted) = http(
        a,
        "POST",
        "/v1/me/consents",
        Some(&srv.merchant_key),
        Some(r#"{"lender":"ICBC (demo)","purpose":"post_loan","days":30}"#),
    );
    assert_eq!(s, 201, "{granted}");
    let (s, _, _) = http(
        a,
        "GET",
        &format!("/v1/merchants/{m}/score?purpose=post_loan"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(s, 200);
    // An analyst reload swaps the engine atomically; the service keeps answering.
    let (s, _, body) = http(a, "POST", "/v1/admin/reload", Some(&srv.analyst), None);
    assert_eq!(s, 200, "{body}");
    let (s, _, _) = http(a, "GET", "/v1/me/score", Some(&srv.merchant_key), None);
    assert_eq!(s, 200);
    let (s, _, _) = http(a, "GET", "/readyz", None, None);
    assert_eq!(s, 200);
    // Promotion: a damaged file is refused and the champion keeps serving; a valid model
    // is checked, registered and swapped in. (The registry is a copy, not the repository's.)
    let (s, _, body) = http(
        a,
        "POST",
        "/v1/admin/promote",
        Some(&srv.analyst),
        Some(r#"{"id":"broken.json"}"#),
    );
    assert_eq!(s, 400, "{body}");
    let (_, _, sc) = http(a, "GET", "/v1/me/score", Some(&srv.merchant_key), None);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sc).unwrap()["model_id"],
        srv_model(&srv)
    );
    let (s, _, body) = http(
        a,
        "POST",
        "/v1/admin/promote",
        Some(&srv.analyst),
        Some(r#"{"id":"second.json"}"#),
    );
    assert_eq!(s, 200, "{body}");
    let (_, _, sc) = http(a, "GET", "/v1/me/score", Some(&srv.merchant_key), None);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sc).unwrap()["model_id"],
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["serving"]
    );

    let db = tmp.path().join("db.sqlite");
    let key_id = srv.analyst.split('_').nth(1).unwrap();
    run_ok(&["keys", "revoke", key_id, "--db", db.to_str().unwrap()]);
    let (s, _, _) = http(a, "GET", "/v1/models", Some(&srv.analyst), None);
    assert_eq!(s, 401, "a revoked key is refused");

    // The log verifies; any edit, deletion or reordering is found.
    assert!(run_ok(&["audit", "verify", "--db", db.to_str().unwrap()]).contains("intact"));
    drop(srv);
    let tamper = |sql: &str| {
        let copy = tmp.path().join("tampered.sqlite");
        std::fs::copy(&db, &copy).unwrap();
        // The database is in WAL mode: its recent pages are in the -wal file.
        let wal = tmp.path().join("db.sqlite-wal");
        if wal.exists() {
            std::fs::copy(&wal, tmp.path().join("tampered.sqlite-wal")).unwrap();
        }
        let _ = std::fs::remove_file(tmp.path().join("tampered.sqlite-shm"));
        let c = rusqlite::Connection::open(&copy).unwrap();
        c.execute_batch(sql).unwrap();
        drop(c);
        let out = run(&["audit", "verify", "--db", copy.to_str().unwrap()]);
        assert!(!out.status.success(), "{sql} went unnoticed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(tamper("UPDATE query_log SET purpose = 'post_loan' WHERE seq = 2").contains("altered"));
    assert!(tamper("DELETE FROM query_log WHERE seq = 2").contains("out of place"));
    tamper("DELETE FROM query_log WHERE seq = (SELECT max(seq) FROM query_log)");
    tamper("UPDATE query_log SET seq = 100 WHERE seq = 1; UPDATE query_log SET seq = 1 WHERE seq = 2; UPDATE query_log SET seq = 2 WHERE seq = 100;");
}
