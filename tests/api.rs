//! The service end to end: the real `yuanxin serve` on a random loopback port, a temporary
//! database, profiles of a small simulated city, the shipped model, policy and catalogue.
//! (The hardening promises — bounds, the signed log, pages, revocation, idempotency —
//! are in `tests/api_hardening.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::service::{
    fixture, http, new_key, other_merchant, request, srv_model, start, start_with_log, value,
};
use common::{run, run_ok, simulate};

#[test]
fn roles_consent_and_the_query_log() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(tmp.path(), &fixture().latest, &[], &[]);
    let a = srv.addr.as_str();
    let m = srv.merchant.as_str();
    let other = other_merchant(&srv);

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
            let r = request(a, method, path, key, *body);
            assert_eq!(r.status, 401, "{method} {path} with {key:?}: {}", r.body);
            assert_eq!(r.ctype, "application/problem+json");
            assert_eq!(value(&r.body)["code"], "unauthorized");
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
    let v = value(&score);
    assert_eq!(v["merchant_id"], m);
    assert!(v["reasons"].as_array().unwrap().len() <= 4);
    let r = request(
        a,
        "GET",
        &format!("/v1/merchants/{other}/score?purpose=pre_loan"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(
        (r.status, value(&r.body)["code"].as_str()),
        (403, Some("no_consent"))
    );
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

    // Malformed bodies and unknown fields are 4xx problem+json, never 5xx.
    for bad in [
        "",
        "{",
        "[]",
        r#"{"amount":"50000"}"#,
        r#"{"amount":"x","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}"#,
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
    assert_eq!(value(&mine)["merchant_id"], m);
    let (s, _, _) = http(a, "GET", "/v1/models", Some(&srv.analyst), None);
    assert_eq!(s, 200);

    // The merchant sees who queried it, newest first, by institution: the two served
    // queries and the refused one on it.
    let (_, _, log) = http(a, "GET", "/v1/me/queries", Some(&srv.merchant_key), None);
    let log = value(&log)["items"].as_array().unwrap().clone();
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
            ("eligibility", "served"),
            ("score", "refused"),
            ("score", "served")
        ]
    );
    assert!(log.iter().all(|e| e["merchant_id"] == m));
    assert!(log
        .iter()
        .all(|e| e["institution"]["name"] == "ICBC (demo)"));
    // Served responses and log entries match one to one, by the digest of the bytes sent.
    assert_eq!(
        log[2]["response_digest"],
        blake3::hash(score.as_bytes()).to_hex().to_string()
    );
    assert_eq!(
        log[0]["response_digest"],
        blake3::hash(decision.as_bytes()).to_hex().to_string()
    );

    // A dispute: opened by the merchant with a 20-day deadline, flagged on the score and
    // on the decision the lender sees, visible to the platform, answered by an analyst.
    let (s, _, d) = http(
        a,
        "POST",
        "/v1/me/disputes",
        Some(&srv.merchant_key),
        Some(r#"{"subject":"escrow_coverage","detail":"our escrow account was migrated"}"#),
    );
    assert_eq!(s, 201, "{d}");
    let d = value(&d);
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
    assert_eq!(value(&sc)["open_dispute"], true);
    let (_, _, dec) = http(
        a,
        "POST",
        &format!("/v1/merchants/{m}/eligibility"),
        Some(&srv.lender),
        Some(
            r#"{"amount":"50000","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}"#,
        ),
    );
    assert!(
        value(&dec)["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "INFO_OPEN_DISPUTE"),
        "the open dispute reaches the lender's decision: {dec}"
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
    assert_eq!(value(&overdue)["items"], serde_json::json!([]));
    let id = value(&all)["items"][0]["id"].as_i64().unwrap();
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
    assert_eq!(value(&sc)["open_dispute"], false);

    // Revoking the merchant's consent stops the lender; a new one for another purpose
    // names the lender institution by its code.
    let (_, _, consents) = http(a, "GET", "/v1/me/consents", Some(&srv.merchant_key), None);
    let consents = value(&consents);
    assert_eq!(consents["items"][0]["lender"]["code"], "ICBC-demo");
    let id = consents["items"][0]["id"].as_i64().unwrap();
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
        Some(r#"{"lender":"ICBC-demo","purpose":"post_loan","days":30}"#),
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
    // Promotion: a damaged file is refused and the champion keeps serving; an unknown one
    // is not found; a valid model is checked, registered and swapped in. (The registry is
    // a copy, not the repository's.)
    let r = request(
        a,
        "POST",
        "/v1/admin/promote",
        Some(&srv.analyst),
        Some(r#"{"id":"broken.json"}"#),
    );
    assert_eq!(
        (r.status, value(&r.body)["code"].as_str()),
        (422, Some("invalid_model")),
        "{}",
        r.body
    );
    let r = request(
        a,
        "POST",
        "/v1/admin/promote",
        Some(&srv.analyst),
        Some(r#"{"id":"nothing.json"}"#),
    );
    assert_eq!(
        (r.status, value(&r.body)["code"].as_str()),
        (404, Some("unknown_model")),
        "{}",
        r.body
    );
    let (_, _, sc) = http(a, "GET", "/v1/me/score", Some(&srv.merchant_key), None);
    assert_eq!(value(&sc)["model_id"], srv_model(&srv));
    let (s, _, body) = http(
        a,
        "POST",
        "/v1/admin/promote",
        Some(&srv.analyst),
        Some(r#"{"id":"second.json"}"#),
    );
    assert_eq!(s, 200, "{body}");
    let (_, _, sc) = http(a, "GET", "/v1/me/score", Some(&srv.merchant_key), None);
    assert_eq!(value(&sc)["model_id"], value(&body)["serving"]);

    // A key revoked from the command line is refused by the very next request.
    let key_id = srv.analyst.split('_').nth(1).unwrap();
    run_ok(&["keys", "revoke", key_id, "--db", srv.db.to_str().unwrap()]);
    assert_eq!(
        http(a, "GET", "/v1/models", Some(&srv.analyst), None).0,
        401
    );

    // The log verifies with the log's key and its checkpoints.
    let out = run_ok(&["audit", "verify", "--db", srv.db.to_str().unwrap()]);
    assert!(out.contains("intact"), "{out}");

    // The store moves to PostgreSQL with its whole log, and the copy verifies with the
    // same key and checkpoint file (issue 20).
    if let Some(url) = yuanxin_store::testing::fresh_postgres("api_migrate") {
        let db = srv.db.to_str().unwrap();
        let out = run_ok(&["store", "migrate", "--from", db, "--to", &url]);
        assert!(out.contains("query log:"), "{out}");
        let (cp, key) = (
            srv.db.with_extension("checkpoints"),
            srv.db.with_extension("key"),
        );
        let out = run_ok(&[
            "audit",
            "verify",
            "--db",
            &url,
            "--checkpoints",
            cp.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ]);
        assert!(out.contains("intact"), "{out}");
        // Only into an empty database.
        let again = run(&["store", "migrate", "--from", db, "--to", &url]);
        assert!(!again.status.success());
    }
}

/// Regulators read the monthly report's figures and watch list through the service: a
/// district regulator sees its district alone through every route, no other role's route
/// answers a regulator, and every access is in the query log (a merchant sees the
/// regulator's look at its watch-list entry among the queries about it).
#[test]
fn regulators_see_only_their_district_and_every_access_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    common::monthly_report_ok(
        &fixture().ledger,
        &reports.join("monthly-2026-06"),
        &["--month", "2026-06", "--no-pdf"],
    );
    let srv = start(
        &tmp.path().join("srv"),
        &fixture().latest,
        &[],
        &[("YUANXIN_REPORTS", reports.to_str().unwrap())],
    );
    let a = srv.addr.as_str();
    // Regulators are principals like any other, with CITY or a district's code.
    let (s, _, body) = http(
        a,
        "POST",
        "/v1/admin/principals",
        Some(&srv.admin),
        Some(r#"{"role":"regulator","code":"MARS","name":"Nowhere"}"#),
    );
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("district"), "{body}");
    // The demo regulator `serve` prints at start is the city's.
    let (s, _, body) = http(
        a,
        "GET",
        "/v1/regulator/reports",
        Some(&srv.regulator),
        None,
    );
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("2026-06"), "{body}");
    let city = new_key(&srv, "regulator", "CITY");
    let futian = new_key(&srv, "regulator", "FUTIAN");
    let get = |key: &str, path: &str| request(a, "GET", path, Some(key), None);

    let whole = get(&city, "/v1/regulator/report?month=2026-06");
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert!(whole.header("yuanxin-log-index").is_some());
    let whole = value(&whole.body);
    let part = get(&futian, "/v1/regulator/report?month=2026-06");
    assert_eq!(part.status, 200, "{}", part.body);
    let part_index: u64 = part.header("yuanxin-log-index").unwrap().parse().unwrap();
    let part = value(&part.body);
    assert_eq!(part["district"], "FUTIAN");
    let districts = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for m in v["figures"]["months"].as_array().unwrap() {
            for c in m["cells"].as_array().unwrap() {
                out.insert(c["district"].as_str().unwrap().to_owned());
            }
            out.extend(m["loans"].as_object().unwrap().keys().cloned());
        }
        out.extend(
            v["figures"]["financing"]
                .as_object()
                .unwrap()
                .keys()
                .cloned(),
        );
        out
    };
    assert!(districts(&whole).len() > 3, "{:?}", districts(&whole));
    assert_eq!(
        districts(&part).into_iter().collect::<Vec<_>>(),
        ["FUTIAN"],
        "a district regulator's figures hold its district alone"
    );
    // The watch list, a page at a time: Futian's entries are the city's Futian entries.
    let pages = |key: &str, limit: u32| -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let r = get(
                key,
                &format!("/v1/regulator/watchlist?month=2026-06&limit={limit}{cursor}"),
            );
            assert_eq!(r.status, 200, "{}", r.body);
            let v = value(&r.body);
            out.extend(v["items"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return out,
            }
        }
    };
    let all = pages(&city, 500);
    let mine = pages(&futian, 7);
    assert_eq!(all.len() as u64, whole["watch_count"].as_u64().unwrap());
    assert_eq!(mine.len() as u64, part["watch_count"].as_u64().unwrap());
    assert!(!mine.is_empty() && mine.len() < all.len());
    assert!(mine.iter().all(|w| w["district"] == "FUTIAN"));
    let theirs: Vec<_> = all
        .iter()
        .filter(|w| w["district"] == "FUTIAN")
        .cloned()
        .collect();
    assert_eq!(mine, theirs);
    // No other role's route answers a regulator.
    for path in [
        format!("/v1/merchants/{}/score?purpose=pre_loan", srv.merchant),
        "/v1/me/score".to_owned(),
        "/v1/models".to_owned(),
        "/v1/admin/principals".to_owned(),
    ] {
        let r = get(&futian, &path);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    for (query, status) in [("", 422), ("?month=2026-13", 422), ("?month=2031-01", 404)] {
        let r = get(&city, &format!("/v1/regulator/report{query}"));
        assert_eq!(r.status, status, "{query}: {}", r.body);
        assert_eq!(r.ctype, "application/problem+json");
    }
    // A merchant on Futian's watch list sees the regulator's look among the queries about it.
    let watched = mine[0]["merchant_id"].as_str().unwrap();
    let key = new_key(&srv, "merchant", watched);
    let (s, _, q) = http(a, "GET", "/v1/me/queries", Some(&key), None);
    assert_eq!(s, 200, "{q}");
    let q = value(&q);
    assert!(
        q["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["role"] == "regulator"
                && e["institution"]["code"] == "FUTIAN"
                && e["action"] == "regulator_watchlist"
                && e["purpose"] == "supervision"),
        "{q}"
    );
    // A regulator reads its own entries' proofs, not another's.
    let r = get(&futian, &format!("/v1/log/entries/{part_index}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(value(&r.body)["entry"]["merchant_id"], "_scope.FUTIAN");
    let r = get(&city, &format!("/v1/log/entries/{part_index}"));
    assert_eq!(r.status, 404, "{}", r.body);
    let out = run_ok(&["audit", "verify", "--db", srv.db.to_str().unwrap()]);
    assert!(out.contains("intact"), "{out}");
}

/// The routes of the OpenAPI document: (method, path template, operation).
fn operations(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

fn tag(op: &serde_json::Value) -> &str {
    op["tags"][0].as_str().unwrap_or("")
}

/// A valid body for each route that takes one.
fn example_body(path: &str, other: &str) -> Option<String> {
    Some(match path {
        "/v1/merchants/{id}/eligibility" => r#"{"amount":"50000","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}"#.to_owned(),
        "/v1/portfolio/score" => format!(r#"{{"purpose":"pre_loan","merchants":["{other}"]}}"#),
        "/v1/me/consents" => r#"{"lender":"ICBC-demo","purpose":"post_loan","days":30}"#.to_owned(),
        "/v1/me/disputes" => r#"{"subject":"escrow_coverage","detail":"wrong"}"#.to_owned(),
        "/v1/disputes/{id}/answer" => r#"{"answer":"checked"}"#.to_owned(),
        "/v1/admin/promote" => r#"{"id":"second.json"}"#.to_owned(),
        "/v1/admin/principals" => r#"{"role":"lender","code":"NEWBANK","name":"New Bank"}"#.to_owned(),
        "/v1/admin/keys" => r#"{"role":"lender","principal":"ICBC-demo"}"#.to_owned(),
        _ => return None,
    })
}

/// The path with its parameters filled in (a merchant, consent, dispute, key or log
/// index) and the required query parameters given.
fn concrete(
    path: &str,
    op: &serde_json::Value,
    merchant: &str,
    consent: i64,
    dispute: i64,
) -> String {
    let mut url = if path.starts_with("/v1/merchants/") {
        path.replace("{id}", merchant)
    } else if path.contains("consents") {
        path.replace("{id}", &consent.to_string())
    } else {
        path.replace("{id}", &dispute.to_string())
    };
    url = url
        .replace("{key_id}", "000000000000")
        .replace("{index}", "0");
    let mut query = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        if p["in"] == "query" && p["required"] == true {
            let name = p["name"].as_str().unwrap();
            let v = match name {
                "purpose" => "pre_loan",
                "amount" => "50000",
                "term_months" => "12",
                "first" | "second" => "1",
                "month" => "2026-06",
                other => panic!("no example for query parameter {other}"),
            };
            query.push(format!("{name}={v}"));
        }
    }
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    url
}

#[test]
fn every_documented_route_checks_keys_and_keeps_merchants_to_their_own_data() {
    let tmp = tempfile::tempdir().unwrap();
    // Every route is tried without a valid key four times: more than the per-address limit
    // on failed authentication allows by default.
    let srv = start(
        tmp.path(),
        &fixture().latest,
        &[],
        &[
            ("YUANXIN_ANONYMOUS_RATE_PER_SECOND", "100000"),
            ("YUANXIN_ANONYMOUS_RATE_BURST", "100000"),
        ],
    );
    let a = srv.addr.as_str();
    let r = request(a, "GET", "/openapi.json", None, None);
    assert_eq!(r.status, 200);
    let doc = value(&r.body);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["components"]["schemas"]["Decision"]["properties"]["approved_amount"].is_object(),
        "the decision's schema is documented"
    );
    let ops = operations(&doc);
    assert!(ops.len() >= 29, "{} operations documented", ops.len());
    // Every operation documents its errors as problem+json; enums and bounds are stated.
    for (method, path, op) in &ops {
        for status in ["404", "422", "429", "500", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    assert_eq!(
        doc["components"]["responses"]["E422"]["content"]["application/problem+json"]["schema"]
            ["$ref"],
        "#/components/schemas/Problem"
    );
    assert_eq!(
        doc["components"]["schemas"]["ConsentPurpose"]["enum"],
        serde_json::json!(["pre_loan", "post_loan"])
    );
    let term = &doc["components"]["schemas"]["EligibilityBody"]["properties"]["term_months"];
    assert_eq!(
        (term["minimum"].as_u64(), term["maximum"].as_u64()),
        (Some(1), Some(36)),
        "the catalogue's terms"
    );

    // Another merchant with its own key, consent and dispute.
    let me = srv.merchant.clone();
    let other = other_merchant(&srv);
    let other_key = new_key(&srv, "merchant", other);
    let (s, _, c) = http(
        a,
        "POST",
        "/v1/me/consents",
        Some(&other_key),
        example_body("/v1/me/consents", other).as_deref(),
    );
    assert_eq!(s, 201, "{c}");
    let consent = value(&c)["id"].as_i64().unwrap();
    let (s, _, d) = http(
        a,
        "POST",
        "/v1/me/disputes",
        Some(&other_key),
        example_body("/v1/me/disputes", other).as_deref(),
    );
    assert_eq!(s, 201, "{d}");
    let dispute = value(&d)["id"].as_i64().unwrap();
    let revoked = new_key(&srv, "lender", "REVOKED");
    run_ok(&[
        "keys",
        "revoke",
        revoked.split('_').nth(1).unwrap(),
        "--db",
        srv.db.to_str().unwrap(),
    ]);
    let unknown = "yx_000000000000_0123456789abcdef0123456789abcdef01234567";

    let mut secured = 0;
    for (method, path, op) in &ops {
        let url = concrete(path, op, other, consent, dispute);
        let body = example_body(path, other);
        if op.get("security").is_some() {
            secured += 1;
            for key in [
                None,
                Some(unknown),
                Some("not-a-key"),
                Some(revoked.as_str()),
            ] {
                let r = request(a, method, &url, key, body.as_deref());
                assert_eq!(r.status, 401, "{method} {url} with {key:?}: {}", r.body);
                assert_eq!(r.ctype, "application/problem+json", "{method} {url}");
            }
        }
        // The merchant's key aimed at the other merchant's data.
        let r = request(a, method, &url, Some(&srv.merchant_key), body.as_deref());
        assert!(
            !r.body.contains(other),
            "{method} {url} with merchant {me}'s key showed {other}: {}",
            r.body
        );
        match tag(op) {
            "lender" | "analyst" | "admin" | "regulator" => {
                assert_eq!(r.status, 403, "{method} {url}: {}", r.body);
                assert_eq!(value(&r.body)["code"], "forbidden_role");
            }
            "merchant" | "log" => assert!(
                r.status < 500 && r.status != 401,
                "{method} {url}: {} {}",
                r.status,
                r.body
            ),
            _ => {}
        }
    }
    let public: Vec<&str> = ops
        .iter()
        .filter(|o| o.2.get("security").is_none())
        .map(|o| o.1.as_str())
        .collect();
    assert_eq!(
        public,
        [
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/readyz",
            "/v1/log/checkpoint"
        ],
        "only operations and the log's public key are public"
    );
    assert_eq!(secured, ops.len() - 5);
    // The other merchant's consent and dispute are untouched.
    let (_, _, c) = http(a, "GET", "/v1/me/consents", Some(&other_key), None);
    let c = value(&c);
    let mine = c["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == consent)
        .unwrap();
    assert!(mine["revoked_at"].is_null(), "{mine}");
    let (_, _, d) = http(a, "GET", "/v1/me/disputes", Some(&other_key), None);
    let d = value(&d);
    assert!(d["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == dispute && x["answer"].is_null()));
}

#[test]
fn generated_bodies_get_problem_json_and_never_a_5xx() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

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
    let doc = value(&http(&a, "GET", "/openapi.json", None, None).2);
    let other = other_merchant(&srv);
    let names = [
        "amount",
        "term_months",
        "loan_purpose",
        "purpose",
        "product",
        "merchants",
        "lender",
        "days",
        "subject",
        "detail",
        "answer",
        "id",
        "role",
        "code",
        "name",
        "principal",
        "extra",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e12f64..1e12).prop_map(serde_json::Value::from),
        "[a-z_0-9]{0,10}".prop_map(serde_json::Value::from),
        "\\PC{0,24}".prop_map(serde_json::Value::from),
    ];
    let json = leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            prop::collection::vec((prop::sample::select(names.to_vec()), inner), 0..6).prop_map(
                |kv| serde_json::Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )
            ),
        ]
    });
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    let mut tried = 0;
    for (method, path, op) in operations(&doc) {
        let Some(valid) = example_body(&path, other) else {
            continue;
        };
        let key = match tag(&op) {
            "lender" => srv.lender.clone(),
            "merchant" => srv.merchant_key.clone(),
            "admin" => srv.admin.clone(),
            _ => srv.analyst.clone(),
        };
        let url = concrete(&path, &op, &srv.merchant, 1, 1);
        let valid: serde_json::Value = value(&valid);
        let fields: Vec<String> = valid.as_object().unwrap().keys().cloned().collect();
        // Whole random documents, random text, and the valid body with one field dropped,
        // replaced by a random value, or joined by an unknown one.
        let mutated = (prop::sample::select(fields), json.clone(), 0..3u8).prop_map({
            let valid = valid.clone();
            move |(field, v, how)| {
                let mut b = valid.clone();
                let o = b.as_object_mut().unwrap();
                match how {
                    0 => {
                        o.remove(&field);
                    }
                    1 => {
                        o.insert(field, v);
                    }
                    _ => {
                        o.insert("unexpected".into(), v);
                    }
                }
                b.to_string()
            }
        });
        let bodies = prop_oneof![
            json.clone().prop_map(|v| v.to_string()),
            "\\PC{0,40}",
            mutated
        ];
        runner
            .run(&bodies, |body| {
                let r = request(&a, &method, &url, Some(&key), Some(&body));
                prop_assert!(
                    r.status < 500,
                    "{method} {url} {body:?} → {} {}",
                    r.status,
                    r.body
                );
                if r.status >= 400 {
                    prop_assert_eq!(&r.ctype, "application/problem+json", "{} {}", method, url);
                    let p = value(&r.body);
                    prop_assert!(
                        p["code"].is_string() && p["title_zh"].is_string(),
                        "{}",
                        r.body
                    );
                    prop_assert!(
                        !r.body.contains("serde") && !r.body.contains("line 1 column"),
                        "{}",
                        r.body
                    );
                }
                Ok(())
            })
            .unwrap();
        tried += 1;
    }
    assert!(tried >= 8, "{tried} routes with bodies fuzzed");
}

#[test]
fn a_model_swap_under_concurrent_requests_fails_none_of_them() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let tmp = tempfile::tempdir().unwrap();
    // Rate limits are not what this test is about.
    let srv = start(
        tmp.path(),
        &fixture().latest,
        &[],
        &[
            ("YUANXIN_RATE_PER_SECOND", "1000000000"),
            ("YUANXIN_RATE_BURST", "1000000000"),
        ],
    );
    // Each round: every worker gets at least one answer in while the round's model serves
    // (a counter the promoting thread waits on, not a sleep), then the next promotion.
    let answered = Arc::new(AtomicUsize::new(0));
    let round = Arc::new(AtomicUsize::new(0));
    let rounds = 6;
    let mut workers = Vec::new();
    for t in 0..4 {
        let (a, answered, round) = (srv.addr.clone(), Arc::clone(&answered), Arc::clone(&round));
        let (path, key) = if t % 2 == 0 {
            (
                format!("/v1/merchants/{}/score?purpose=pre_loan", srv.merchant),
                srv.lender.clone(),
            )
        } else {
            ("/v1/me/score".to_owned(), srv.merchant_key.clone())
        };
        workers.push(std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut counted = usize::MAX;
            while round.load(Ordering::SeqCst) < rounds {
                let r = request(&a, "GET", &path, Some(&key), None);
                seen.push((
                    r.status,
                    value(&r.body)["model_id"].as_str().unwrap_or("").to_owned(),
                    r.body,
                ));
                let now = round.load(Ordering::SeqCst);
                if now != counted {
                    counted = now;
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            }
            seen
        }));
    }
    let mut served = Vec::new();
    for r in 0..rounds {
        let id = if r % 2 == 0 {
            "second.json"
        } else {
            "default-scorecard.json"
        };
        let (s, _, body) = http(
            &srv.addr,
            "POST",
            "/v1/admin/promote",
            Some(&srv.analyst),
            Some(&format!(r#"{{"id":"{id}"}}"#)),
        );
        assert_eq!(s, 200, "{body}");
        served.push(value(&body)["serving"].as_str().unwrap().to_owned());
        // Wait until each of the 4 workers has an answer from this round.
        while answered.load(Ordering::SeqCst) < 4 * (r + 1) {
            std::thread::yield_now();
        }
        round.fetch_add(1, Ordering::SeqCst);
    }
    let results: Vec<(u16, String, String)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    for (s, _, body) in &results {
        assert_eq!(*s, 200, "a request failed during a swap: {body}");
    }
    let models: std::collections::BTreeSet<&str> = results.iter().map(|r| r.1.as_str()).collect();
    assert!(
        models.iter().all(|m| served.iter().any(|s| s == m)),
        "{models:?} vs {served:?}"
    );
    assert_eq!(
        models.len(),
        2,
        "requests were answered by both models: {models:?}"
    );
}

#[test]
fn readiness_rate_limits_concurrency_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let later = tmp.path().join("later.parquet");
    let cfg = tmp.path().join("serve.toml");
    std::fs::write(
        &cfg,
        "rate_per_second = 0.01\nrate_burst = 3.0\nwatch_seconds = 1\nmax_concurrency = 2\n",
    )
    .unwrap();
    let srv = start(
        tmp.path(),
        &later,
        &["--config", cfg.to_str().unwrap()],
        &[],
    );
    let a = srv.addr.as_str();
    // Not ready without profiles; ready once they appear (the watcher loads them).
    let r = request(a, "GET", "/readyz", None, None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.ctype, "application/problem+json");
    assert!(r.headers.contains("retry-after:"));
    assert_eq!(
        request(a, "GET", "/healthz", None, None).status,
        200,
        "alive while not ready"
    );
    std::fs::copy(&fixture().latest, &later).unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if request(a, "GET", "/readyz", None, None).status == 200 {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(ready, "the new profiles were not picked up");

    // Per-key rate limit: a burst of 3, then 429 with Retry-After; other keys unaffected.
    let analyst = new_key(&srv, "analyst", "rate-test");
    for _ in 0..3 {
        assert_eq!(
            request(a, "GET", "/v1/models/stability", Some(&analyst), None).status,
            200
        );
    }
    let r = request(a, "GET", "/v1/models/stability", Some(&analyst), None);
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.ctype, "application/problem+json");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    let other = new_key(&srv, "analyst", "rate-test-2");
    assert_eq!(
        request(a, "GET", "/v1/models/stability", Some(&other), None).status,
        200
    );

    // Concurrency: never more than max_concurrency inside; the rest get 503 + Retry-After.
    let threads: Vec<_> = (0..24)
        .map(|_| {
            let a = a.to_owned();
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| request(&a, "GET", "/v1/log/checkpoint", None, None))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut shed = 0;
    for t in threads {
        for r in t.join().unwrap() {
            match r.status {
                200 => {}
                503 => {
                    assert!(
                        r.body.contains("overloaded") && r.headers.contains("retry-after:"),
                        "{}",
                        r.body
                    );
                    shed += 1;
                }
                s => panic!("{s}: {}", r.body),
            }
        }
    }
    let m = request(a, "GET", "/metrics", None, None);
    assert_eq!(m.status, 200);
    let metric = |name: &str| -> f64 {
        m.body
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    let high = metric("yuanxin_http_in_flight_max ");
    assert!(
        (1.0..=3.0).contains(&high),
        "{high} in flight at once\n{}",
        m.body
    );
    assert_eq!(
        metric("yuanxin_http_in_flight "),
        1.0,
        "only the metrics request itself"
    );
    assert_eq!(
        metric("yuanxin_http_rejected_total{outcome=\"overloaded\"} "),
        f64::from(shed)
    );
    assert!(
        m.body.contains(
            "yuanxin_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"}"
        ),
        "{}",
        m.body
    );
    assert!(m
        .body
        .contains("route=\"/v1/models/stability\",status=\"429\""));
    assert!(
        m.body.contains(
            "yuanxin_http_refusals_total{route=\"/v1/models/stability\",code=\"rate_limited\"} 1"
        ),
        "{}",
        m.body
    );
    assert!(!m.body.contains("M00"), "no merchant ids in metrics");
}

#[test]
fn lender_batches_and_alerts_merchant_profile_and_analyst_stability() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(
        tmp.path(),
        &fixture().latest,
        &[],
        &[("YUANXIN_BATCH_MAX", "40")],
    );
    let a = srv.addr.as_str();
    let m = srv.merchant.as_str();

    // The merchant's own characteristics, with display names.
    let (s, _, p) = http(a, "GET", "/v1/me/profile", Some(&srv.merchant_key), None);
    assert_eq!(s, 200, "{p}");
    let p = value(&p);
    assert_eq!(p["merchant_id"], m);
    let chars = p["characteristics"].as_array().unwrap();
    assert_eq!(chars.len(), yuanxin_domain::vocabulary::VOCABULARY.len());
    assert!(chars
        .iter()
        .all(|c| !c["name_zh"].as_str().unwrap().is_empty()));
    assert!(chars.iter().any(|c| c["in_model"] == true));

    // Forty merchants consent to post-loan monitoring by the demo lender.
    let ids: Vec<String> = (1..=40).map(|i| format!("M{i:07}")).collect();
    let mut keys = Vec::new();
    for id in &ids {
        let k = new_key(&srv, "merchant", id);
        let (s, _, b) = http(
            a,
            "POST",
            "/v1/me/consents",
            Some(&k),
            Some(r#"{"lender":"ICBC-demo","purpose":"post_loan","days":90}"#),
        );
        assert_eq!(s, 201, "{b}");
        keys.push(k);
    }

    // The consents the lender holds, paged: the demo merchant's and the forty; another
    // institution holds none of them, and both are listed for merchants to choose from.
    let mut held = Vec::new();
    let mut path = "/v1/consents?limit=25".to_owned();
    loop {
        let (s, _, b) = http(a, "GET", &path, Some(&srv.lender), None);
        assert_eq!(s, 200, "{b}");
        let page = value(&b);
        held.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/consents?limit=25&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(held.len(), 41);
    assert!(held.iter().all(|c| c["lender"]["code"] == "ICBC-demo"));
    let mut held_ids: Vec<&str> = held
        .iter()
        .filter(|c| c["purpose"] == "post_loan")
        .map(|c| c["merchant_id"].as_str().unwrap())
        .collect();
    held_ids.sort_unstable();
    assert_eq!(held_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let other_lender = new_key(&srv, "lender", "CCB-other");
    let (s, _, b) = http(a, "GET", "/v1/consents", Some(&other_lender), None);
    assert_eq!(
        (s, value(&b)["items"].as_array().unwrap().len()),
        (200, 0),
        "{b}"
    );
    let (s, _, b) = http(a, "GET", "/v1/consents", Some(&keys[0]), None);
    assert_eq!(s, 403, "{b}");
    let (s, _, b) = http(a, "GET", "/v1/institutions", Some(&keys[0]), None);
    assert_eq!(s, 200, "{b}");
    let codes: Vec<String> = value(&b)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes, ["ICBC-demo", "CCB-other"]);

    // A profile file of one date: the history is the latest score alone.
    let (_, _, h) = http(a, "GET", "/v1/me/history", Some(&srv.merchant_key), None);
    let (_, _, sc) = http(a, "GET", "/v1/me/score", Some(&srv.merchant_key), None);
    let (h, sc) = (value(&h), value(&sc));
    assert_eq!(h["points"].as_array().unwrap().len(), 1, "{h}");
    assert_eq!(h["points"][0]["score"], sc["score"]);
    assert_eq!(h["points"][0]["grade"], sc["grade"]);
    assert_eq!(h["points"][0]["public_grade"], sc["public_grade"]);

    // A batch: consenting merchants are served, the rest refused, unknown ones not found;
    // every served and refused one is logged, and the receipt covers them.
    let mut batch: Vec<String> = ids[..5].to_vec();
    batch.push("M0000299".into());
    batch.push("NOSUCHMERCHANT".into());
    let body = serde_json::json!({"purpose": "post_loan", "merchants": batch}).to_string();
    let r = request(
        a,
        "POST",
        "/v1/portfolio/score",
        Some(&srv.lender),
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let results = value(&r.body)["results"].as_array().unwrap().clone();
    let status: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        status,
        [
            "served",
            "served",
            "served",
            "served",
            "served",
            "refused",
            "not_found"
        ]
    );
    let head = value(&r.header("yuanxin-signed-head").unwrap());
    let last_index = results[5]["log_index"].as_u64().unwrap();
    assert!(head["tree_size"].as_u64().unwrap() > last_index);
    assert!(results[6]["log_index"].is_null());
    let (_, _, q) = http(a, "GET", "/v1/me/queries", Some(&keys[0]), None);
    let newest = value(&q)["items"][0].clone();
    assert_eq!(newest["action"], "batch_score");
    assert_eq!(newest["index"], results[0]["log_index"]);
    // The entry holds the digest of the first item's score object, as the bytes sent.
    let b = &r.body;
    let start = b.find(r#""score":{"#).unwrap() + r#""score":"#.len();
    let mut depth = 0;
    let end = start
        + b[start..]
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i + 1)
            })
            .unwrap();
    assert_eq!(
        newest["response_digest"],
        blake3::hash(&b.as_bytes()[start..end]).to_hex().to_string(),
        "the log holds the digest of the item served"
    );
    let too_many =
        serde_json::json!({"purpose": "post_loan", "merchants": vec!["M0000001"; 41]}).to_string();
    let r = request(
        a,
        "POST",
        "/v1/portfolio/score",
        Some(&srv.lender),
        Some(&too_many),
    );
    assert_eq!(
        (r.status, r.ctype.as_str()),
        (422, "application/problem+json"),
        "batch_max comes from the environment"
    );
    assert_eq!(value(&r.body)["field"], "merchants");

    // Alerts: exactly the consenting merchants whose profiles cross a threshold, checked
    // against each merchant's own view of its profile, read a page at a time.
    let mut alerted: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("/v1/alerts?limit=7&cursor={c}"),
            None => "/v1/alerts?limit=7".to_owned(),
        };
        let (s, _, al) = http(a, "GET", &url, Some(&srv.lender), None);
        assert_eq!(s, 200, "{al}");
        let al = value(&al);
        for x in al["items"].as_array().unwrap() {
            let codes = x["alert"]["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["code"].as_str().unwrap().to_owned())
                .collect();
            assert!(x["log_index"].is_u64());
            alerted.insert(
                x["alert"]["merchant_id"].as_str().unwrap().to_owned(),
                codes,
            );
        }
        pages += 1;
        cursor = al["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert!(pages >= 6, "40 consenting merchants in pages of 7: {pages}");
    assert!(!alerted.is_empty(), "no alerts among 40 merchants");
    for (id, k) in ids.iter().zip(&keys) {
        let prof = value(&http(a, "GET", "/v1/me/profile", Some(k), None).2);
        let get = |n: &str| {
            prof["characteristics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == n)
                .unwrap()["value"]
                .as_f64()
        };
        let codes = alerted.get(id).cloned().unwrap_or_default();
        let low = get("escrow_coverage").is_some_and(|c| c < 0.4)
            && get("prepaid_liability").is_some_and(|l| l > 0.0);
        assert_eq!(
            low,
            codes.contains(&"ESCROW_COVERAGE_LOW".to_owned()),
            "{id}: {codes:?}"
        );
        let spike = get("new_prepay_spike_z").is_some_and(|z| z >= 3.0);
        assert_eq!(
            spike,
            codes.contains(&"PREPAID_SALES_SPIKE".to_owned()),
            "{id}: {codes:?}"
        );
        assert!(
            !codes.contains(&"GRADE_DOWNGRADE".to_owned()),
            "nothing seen before"
        );
        // A merchant that has closed is served as closed, with no grade, and its closure
        // is an alert.
        let mine = value(&http(a, "GET", "/v1/me/score", Some(k), None).2);
        let closed = mine["status"] == "closed";
        assert_eq!(
            closed,
            codes.first().map(String::as_str) == Some("MERCHANT_CLOSED"),
            "{id}: {codes:?}"
        );
        assert_eq!(closed, mine["grade"].is_null(), "{id}: {mine}");
        assert_eq!(closed, mine["closed_on"].is_string(), "{id}: {mine}");
    }

    // A closed merchant, as its lender sees it: score, batch, eligibility and alerts.
    let closed: Vec<&String> = ids
        .iter()
        .zip(&keys)
        .filter(|(_, k)| {
            value(&http(a, "GET", "/v1/me/score", Some(k), None).2)["status"] == "closed"
        })
        .map(|(id, _)| id)
        .collect();
    let shut = closed.first().expect("no closed merchant among 40");
    let (s, _, sc) = http(
        a,
        "GET",
        &format!("/v1/merchants/{shut}/score?purpose=post_loan"),
        Some(&srv.lender),
        None,
    );
    assert_eq!(s, 200, "{sc}");
    let sc = value(&sc);
    assert_eq!(sc["status"], "closed");
    assert!(sc["score"].is_null() && sc["pd"].is_null() && sc["grade"].is_null());
    assert!(sc["reasons"].as_array().unwrap().is_empty());
    let closed_on = sc["closed_on"].as_str().unwrap().to_owned();
    assert!(closed_on.as_str() <= sc["as_of"].as_str().unwrap());
    let (s, _, dec) = http(
        a,
        "POST",
        &format!("/v1/merchants/{shut}/eligibility"),
        Some(&srv.lender),
        Some(
            r#"{"amount":"50000","term_months":12,"loan_purpose":"working_capital","purpose":"post_loan"}"#,
        ),
    );
    assert_eq!(s, 200, "{dec}");
    let dec = value(&dec);
    assert_eq!(
        (&dec["outcome"], &dec["status"], &dec["closed_on"]),
        (
            &serde_json::json!("decline"),
            &serde_json::json!("closed"),
            &serde_json::json!(closed_on)
        )
    );
    assert_eq!(dec["reasons"][0]["code"], "KO_CLOSED");
    assert!(dec["grade"].is_null() && dec["offers"].as_array().unwrap().is_empty());
    let body = serde_json::json!({"purpose": "post_loan", "merchants": [shut]}).to_string();
    let r = request(
        a,
        "POST",
        "/v1/portfolio/score",
        Some(&srv.lender),
        Some(&body),
    );
    let item = value(&r.body)["results"][0].clone();
    assert_eq!(item["status"], "served", "{item}");
    assert_eq!(item["score"]["status"], "closed");
    assert!(item["score"]["grade"].is_null());

    // Stability of the served population against the model's training sample: a verdict
    // that follows from the index, and every characteristic's index in [0, ∞).
    let (s, _, st) = http(a, "GET", "/v1/models/stability", Some(&srv.analyst), None);
    assert_eq!(s, 200, "{st}");
    let st = value(&st);
    let psi = st["score_psi"].as_f64().unwrap();
    let verdict = if psi < 0.1 {
        "stable"
    } else if psi < 0.25 {
        "watch"
    } else {
        "shifted"
    };
    assert_eq!(st["verdict"], verdict, "{psi}");
    // The population is the merchants that trade: closed ones have no score.
    let closed_rows: usize = common::read_parquet(&fixture().latest)
        .iter()
        .map(|b| {
            b.column_by_name("closed_on").unwrap().len()
                - b.column_by_name("closed_on").unwrap().null_count()
        })
        .sum();
    let rows: usize = common::read_parquet(&fixture().latest)
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(
        st["current_rows"].as_u64().unwrap() as usize,
        rows - closed_rows
    );

    // `yuanxin score` says the same of the same file: closed rows have no score.
    let scored = tmp.path().join("scored.parquet");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    run_ok(&[
        "score",
        "--model",
        repo.join("models/default-scorecard.json").to_str().unwrap(),
        "--data",
        fixture().latest.to_str().unwrap(),
        "--out",
        scored.to_str().unwrap(),
    ]);
    let out = common::read_parquet(&scored);
    let profiles = common::read_parquet(&fixture().latest);
    let status: Vec<_> = out.iter().flat_map(|b| common::strs(b, "status")).collect();
    let grades: Vec<_> = out.iter().flat_map(|b| common::strs(b, "grade")).collect();
    let closed: Vec<_> = profiles
        .iter()
        .flat_map(|b| common::dates(b, "closed_on"))
        .collect();
    assert_eq!(status.len(), closed.len());
    for ((s, g), c) in status.iter().zip(&grades).zip(&closed) {
        assert_eq!(s.as_deref() == Some("closed"), c.is_some());
        assert_eq!(g.is_none(), c.is_some());
    }
    assert_eq!(closed.iter().filter(|c| c.is_some()).count(), closed_rows);
    let chars = st["characteristics"].as_array().unwrap();
    assert!(!chars.is_empty());
    assert!(
        chars
            .windows(2)
            .all(|w| w[0]["psi"].as_f64() >= w[1]["psi"].as_f64()),
        "largest first"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn newly_ingested_data_rebuilds_the_profiles_and_reloads_the_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    copy_dir(&fixture().ledger, &ledger);
    let latest = tmp.path().join("latest.parquet");
    // No profiles yet: they are built from the ledger before the service listens.
    let srv = start(
        tmp.path(),
        &latest,
        &["--ledger", ledger.to_str().unwrap()],
        &[("YUANXIN_WATCH_SECONDS", "1")],
    );
    let a = srv.addr.as_str();
    let ready = value(&http(a, "GET", "/readyz", None, None).2);
    assert_eq!(
        ready["as_of"], "2026-06-30",
        "the last day of the ledger's last month"
    );
    let built = std::fs::metadata(&latest).unwrap().modified().unwrap();
    let reloads = |body: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix("yuanxin_engine_reloads_total{outcome=\"ok\"} "))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    assert_eq!(reloads(&http(a, "GET", "/metrics", None, None).2), 0.0);
    // New data arrives in the ledger: the profiles are rebuilt and the engine reloads.
    let city = tmp.path().join("city2");
    simulate(&city, 20, 36, 99, &[]);
    run_ok(&[
        "ingest",
        "--ledger",
        ledger.to_str().unwrap(),
        city.to_str().unwrap(),
    ]);
    let mut reloaded = false;
    for _ in 0..100 {
        if reloads(&http(a, "GET", "/metrics", None, None).2) >= 1.0 {
            reloaded = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(reloaded, "the engine did not reload after the ingest");
    assert!(std::fs::metadata(&latest).unwrap().modified().unwrap() > built);
    assert_eq!(http(a, "GET", "/readyz", None, None).0, 200);
    let (s, _, _) = http(a, "GET", "/v1/me/score", Some(&srv.merchant_key), None);
    assert_eq!(s, 200);
}

#[test]
fn the_nightly_refresh_switches_a_running_service_to_its_profiles() {
    let tmp = tempfile::tempdir().unwrap();
    let latest = tmp.path().join("latest.parquet");
    std::fs::copy(&fixture().latest, &latest).unwrap();
    let (srv, log) = start_with_log(tmp.path(), &latest, &[], &[("YUANXIN_WATCH_SECONDS", "1")]);
    let a = srv.addr.as_str();
    let as_of = || value(&http(a, "GET", "/readyz", None, None).2)["as_of"].clone();
    assert_eq!(as_of(), "2026-06-30");
    let reloads = || -> f64 {
        http(a, "GET", "/metrics", None, None)
            .2
            .lines()
            .find_map(|l| l.strip_prefix("yuanxin_engine_reloads_total{outcome=\"ok\"} "))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    assert_eq!(reloads(), 0.0);
    // The refresh rebuilds the served file in place (as of a month earlier here, so that
    // the switch shows); the service notices and reloads.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let snapshots = tmp.path().join("snapshots");
    let report: serde_json::Value = serde_json::from_str(&run_ok(&[
        "refresh",
        "--ledger",
        fixture().ledger.to_str().unwrap(),
        "--profiles",
        latest.to_str().unwrap(),
        "--snapshots",
        snapshots.to_str().unwrap(),
        "--data",
        repo.join("data").to_str().unwrap(),
        "--models",
        tmp.path().join("models").to_str().unwrap(),
        "--today",
        "2026-05-31",
        "--json",
    ]))
    .unwrap();
    assert_eq!(report["as_of"], "2026-05-31");
    // Each engine load writes a log line: the test waits for those, up to a minute.
    let mut switched = false;
    while let Ok(line) = log.recv_timeout(std::time::Duration::from_secs(60)) {
        if line.contains("engine loaded") && reloads() >= 1.0 && as_of() == "2026-05-31" {
            switched = true;
            break;
        }
    }
    assert!(
        switched,
        "the service did not switch to the refreshed profiles"
    );
    // What it serves now is what the snapshot says.
    let snap = &report["snapshot"];
    let (s, _, body) = http(a, "GET", "/v1/me/score", Some(&srv.merchant_key), None);
    assert_eq!(s, 200);
    assert_eq!(value(&body)["as_of"], "2026-05-31");
    assert_eq!(snap["as_of"], "2026-05-31");
}

#[test]
fn json_request_log_and_a_graceful_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    // Checkpoints only at shutdown (and at start), so the last one is shutdown's.
    let mut srv = start(
        tmp.path(),
        &fixture().latest,
        &[],
        &[
            ("YUANXIN_LOG", "json"),
            ("YUANXIN_CHECKPOINT_EVERY", "1000000"),
            ("YUANXIN_CHECKPOINT_SECONDS", "86400"),
        ],
    );
    let a = srv.addr.clone();
    assert_eq!(
        http(&a, "GET", "/v1/me/score", Some(&srv.merchant_key), None).0,
        200
    );
    let path = format!("/v1/merchants/{}/score?purpose=pre_loan", srv.merchant);
    let served = request(&a, "GET", &path, Some(&srv.lender), None);
    assert_eq!(served.status, 200);
    let refused = request(
        &a,
        "GET",
        &format!("/v1/merchants/{}/score?purpose=post_loan", srv.merchant),
        Some(&srv.lender),
        None,
    );
    assert_eq!(refused.status, 403);
    let bad = request(
        &a,
        "GET",
        "/v1/me/eligibility?amount=1&term_months=9999",
        Some(&srv.merchant_key),
        None,
    );
    assert_eq!(bad.status, 422);
    let anonymous = request(
        &a,
        "GET",
        "/v1/me/score",
        Some("yx_0123456789ab_nope"),
        None,
    );
    assert_eq!(anonymous.status, 401);
    // A reload in flight when SIGTERM arrives still gets its answer: the test waits until
    // the reload is inside the handlers (the in-flight gauge says so), then signals.
    let (addr, analyst) = (a.clone(), srv.analyst.clone());
    let in_flight = std::thread::spawn(move || {
        request(&addr, "POST", "/v1/admin/reload", Some(&analyst), None).status
    });
    let inside = |body: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix("yuanxin_http_in_flight "))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    let mut seen_inside = false;
    for _ in 0..10_000 {
        // The metrics request itself counts one.
        if inside(&http(&a, "GET", "/metrics", None, None).2) >= 2.0 {
            seen_inside = true;
            break;
        }
        if in_flight.is_finished() {
            break;
        }
    }
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(in_flight.join().unwrap(), 200);
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    if !seen_inside {
        eprintln!("note: the reload finished before the signal could be sent during it");
    }
    let log = std::fs::read_to_string(tmp.path().join("stderr.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(value)
        .collect();
    let requests: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    assert!(requests
        .iter()
        .any(|l| l["fields"]["route"] == "/v1/me/score"
            && l["fields"]["status"] == 200
            && !l["fields"]["key_id"].as_str().unwrap().is_empty()));
    // Every refusal is in the request log with its code and the key id (claimed, for 401).
    let find = |status: u64, code: &str| {
        requests
            .iter()
            .find(|l| l["fields"]["status"] == status && l["fields"]["code"] == code)
            .unwrap_or_else(|| panic!("no {status} {code} in the request log"))
    };
    assert_eq!(
        find(403, "no_consent")["fields"]["key_id"],
        srv.lender.split('_').nth(1).unwrap()
    );
    assert_eq!(
        find(422, "invalid_field")["fields"]["key_id"],
        srv.merchant_key.split('_').nth(1).unwrap()
    );
    let unauth = find(401, "unauthorized");
    assert_eq!(
        (
            unauth["fields"]["key_id"].as_str(),
            unauth["fields"]["authenticated"].as_bool()
        ),
        (Some("0123456789ab"), Some(false))
    );
    // The response id is in the header, the request log and the query log.
    let rid = served.header("x-request-id").unwrap();
    assert_eq!(rid.len(), 26, "a ULID: {rid}");
    assert!(requests
        .iter()
        .any(|l| l["fields"]["request_id"].as_str() == Some(rid.as_str())));
    assert!(requests
        .iter()
        .any(|l| l["fields"]["route"] == "/v1/merchants/{id}/score"));
    assert!(
        !log.contains(&srv.merchant),
        "no merchant ids in the request log"
    );
    assert!(lines.iter().any(|l| l["fields"]["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("shutting down")));
    // Shutdown wrote a last checkpoint covering every entry.
    let last = std::fs::read_to_string(&srv.checkpoints).unwrap();
    let last = value(last.lines().last().unwrap());
    assert_eq!(last["tree_size"], 2, "the served and the refused query");
    let out = run(&["audit", "verify", "--db", srv.db.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One score request that may fail to connect (a replica being killed): the status, the
/// response's log index and request id, or `None` if nothing came back.
fn try_score(addr: &str, path: &str, key: &str) -> Option<(u16, Option<u64>, String)> {
    scored(addr, path, key).map(|(s, i, r, _)| (s, i, r))
}

/// [`try_score`] with the body.
fn scored(addr: &str, path: &str, key: &str) -> Option<(u16, Option<u64>, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let index = header("yuanxin-log-index").and_then(|v| v.parse().ok());
    Some((
        status,
        index,
        header("x-request-id").unwrap_or_default(),
        body.to_owned(),
    ))
}

/// Two service processes on one PostgreSQL database (issue 20): a consent or a key changed
/// through one holds on the other from its next request; their log entries form one log
/// that verifies against either's checkpoint file; a replica killed under load loses no
/// entry of a response it sent.
#[test]
fn replicas_on_postgres_share_state_and_one_log() {
    let Some(url) = yuanxin_store::testing::fresh_postgres("replicas") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (key, cp_a, cp_b) = (
        path("shared.key"),
        path("a.checkpoints"),
        path("b.checkpoints"),
    );
    let env = |cp: &str| -> Vec<(&'static str, String)> {
        vec![
            ("YUANXIN_KEY_FILE", key.clone()),
            ("YUANXIN_CHECKPOINTS", cp.to_owned()),
            ("YUANXIN_RATE_PER_SECOND", "1000000".into()),
            ("YUANXIN_RATE_BURST", "1000000".into()),
        ]
    };
    let (env_a, env_b) = (env(&cp_a), env(&cp_b));
    fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, x)| (*k, x.as_str())).collect()
    }
    let a = start(
        &tmp.path().join("a"),
        &fixture().latest,
        &["--db", &url],
        &refs(&env_a),
    );
    let mut b = start(
        &tmp.path().join("b"),
        &fixture().latest,
        &["--db", &url, "--no-demo-keys"],
        &refs(&env_b),
    );
    let m = a.merchant.clone();
    let score = |addr: &str, key: &str, purpose: &str| {
        http(
            addr,
            "GET",
            &format!("/v1/merchants/{m}/score?purpose={purpose}"),
            Some(key),
            None,
        )
        .0
    };
    // The consent A's start-up granted holds on B; revoked on A, it is refused on B.
    assert_eq!(score(&b.addr, &a.lender, "pre_loan"), 200);
    let (_, _, consents) = http(
        &a.addr,
        "GET",
        "/v1/me/consents",
        Some(&a.merchant_key),
        None,
    );
    let id = value(&consents)["items"][0]["id"].as_i64().unwrap();
    let (s, _, _) = http(
        &a.addr,
        "DELETE",
        &format!("/v1/me/consents/{id}"),
        Some(&a.merchant_key),
        None,
    );
    assert_eq!(s, 204);
    assert_eq!(score(&b.addr, &a.lender, "pre_loan"), 403);
    // A consent granted on A is honoured on B.
    let (s, _, body) = http(
        &a.addr,
        "POST",
        "/v1/me/consents",
        Some(&a.merchant_key),
        Some(r#"{"lender":"ICBC-demo","purpose":"post_loan","days":30}"#),
    );
    assert_eq!(s, 201, "{body}");
    assert_eq!(score(&b.addr, &a.lender, "post_loan"), 200);
    // A key made on A works on B; revoked on A, it is refused on B.
    let (s, _, made) = http(
        &a.addr,
        "POST",
        "/v1/admin/keys",
        Some(&a.admin),
        Some(r#"{"role":"lender","principal":"ICBC-demo"}"#),
    );
    assert_eq!(s, 201, "{made}");
    let made = value(&made);
    let new_key = made["key"].as_str().unwrap();
    assert_eq!(score(&b.addr, new_key, "post_loan"), 200);
    let (s, _, _) = http(
        &a.addr,
        "DELETE",
        &format!("/v1/admin/keys/{}", made["key_id"].as_str().unwrap()),
        Some(&a.admin),
        None,
    );
    assert_eq!(s, 204);
    assert_eq!(score(&b.addr, new_key, "post_loan"), 401);

    // 10,000 score requests over both replicas: 10,000 entries, each response's own.
    let log = || yuanxin_store::Store::connect(&url, yuanxin_store::OpenMode::ReadOnly).unwrap();
    let before = yuanxin_store::prelude::QueryLog::log_size(&log()).unwrap();
    let target = format!("/v1/merchants/{m}/score?purpose=post_loan");
    let load = |addrs: Vec<String>, n: usize, served: std::sync::mpsc::Sender<()>| {
        let (lender, target) = (a.lender.clone(), target.clone());
        std::thread::spawn(move || {
            let mut got = Vec::new();
            for i in 0..n {
                let addr = &addrs[i % addrs.len()];
                if let Some(r) = try_score(addr, &target, &lender) {
                    got.push(r);
                    let _ = served.send(());
                }
            }
            got
        })
    };
    let (tx, _rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..8)
        .map(|_| load(vec![a.addr.clone(), b.addr.clone()], 1_250, tx.clone()))
        .collect();
    let mut served: Vec<(u16, Option<u64>, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(served.len(), 10_000);
    let odd: Vec<_> = served
        .iter()
        .filter(|(s, i, _)| *s != 200 || i.is_none())
        .take(3)
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    let after = yuanxin_store::prelude::QueryLog::log_size(&log()).unwrap();
    assert_eq!(after - before, 10_000, "one entry per request, no more");

    // B is killed while both are under load: every response that came back has its entry.
    let (tx, rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..4)
        .map(|_| load(vec![a.addr.clone(), b.addr.clone()], 300, tx.clone()))
        .collect();
    drop(tx);
    for _ in 0..300 {
        rx.recv().unwrap();
    }
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let under_kill: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        under_kill.len() < 1_200,
        "B's requests after the kill got nothing"
    );
    served.extend(under_kill);
    let store = log();
    for (status, index, request_id) in &served {
        if *status != 200 {
            continue;
        }
        let e = yuanxin_store::prelude::QueryLog::entry(&store, index.unwrap())
            .unwrap()
            .expect("a served response's entry is in the log");
        assert_eq!(&e.request_id, request_id);
    }
    // One log, verified against each replica's checkpoints.
    drop(a);
    for cp in [&cp_a, &cp_b] {
        let out = run_ok(&[
            "audit",
            "verify",
            "--db",
            &url,
            "--checkpoints",
            cp,
            "--key-file",
            &key,
        ]);
        assert!(out.contains("intact"), "{out}");
    }
}

/// A key's rate limit holds across replicas: its burst is spent once, wherever the requests
/// land, and each replica then refuses it with the time to wait.
#[test]
fn replicas_share_each_keys_rate_limit() {
    let Some(url) = yuanxin_store::testing::fresh_postgres("rates") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let key = path("shared.key");
    let env = |cp: String| {
        vec![
            ("YUANXIN_KEY_FILE", key.clone()),
            ("YUANXIN_CHECKPOINTS", cp),
            ("YUANXIN_RATE_PER_SECOND", "0.01".to_owned()),
            ("YUANXIN_RATE_BURST", "10".to_owned()),
        ]
    };
    let (env_a, env_b) = (env(path("a.checkpoints")), env(path("b.checkpoints")));
    let ea: Vec<(&str, &str)> = env_a.iter().map(|(k, x)| (*k, x.as_str())).collect();
    let eb: Vec<(&str, &str)> = env_b.iter().map(|(k, x)| (*k, x.as_str())).collect();
    let a = start(
        &tmp.path().join("a"),
        &fixture().latest,
        &["--db", &url],
        &ea,
    );
    let b = start(
        &tmp.path().join("b"),
        &fixture().latest,
        &["--db", &url, "--no-demo-keys"],
        &eb,
    );
    let uri = format!("/v1/merchants/{}/score?purpose=pre_loan", a.merchant);
    let mut served = 0;
    for i in 0..14 {
        let addr = if i % 2 == 0 { &a.addr } else { &b.addr };
        let r = request(addr, "GET", &uri, Some(&a.lender), None);
        match r.status {
            200 => served += 1,
            429 => {
                assert!(i >= 10, "refused after {i} requests: {}", r.body);
                assert!(r.body.contains("rate_limited"), "{}", r.body);
                let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=100).contains(&wait), "retry after {wait} s");
            }
            other => panic!("request {i}: {other} {}", r.body),
        }
    }
    assert_eq!(
        served, 10,
        "one burst of 10 across both replicas, not 10 on each"
    );
    // Other keys have their own allowance.
    let (s, _, body) = http(
        &b.addr,
        "GET",
        "/v1/me/eligibility?amount=50000&term_months=12",
        Some(&a.merchant_key),
        None,
    );
    assert_eq!(s, 200, "{body}");
}

/// PostgreSQL stopped under a running replica (issue 20): every request that needs the
/// database is answered 503, none 2xx, the replica reports itself unready, and it recovers
/// by itself as soon as the database is back; every score it served has its log entry.
#[test]
fn a_replica_rides_out_a_database_outage() {
    let Some(cluster) = yuanxin_store::testing::PgCluster::start() else {
        return;
    };
    let url = cluster.database("outage");
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (key, cp) = (path("db.key"), path("db.checkpoints"));
    let srv = start(
        tmp.path(),
        &fixture().latest,
        &["--db", &url],
        &[("YUANXIN_KEY_FILE", &key), ("YUANXIN_CHECKPOINTS", &cp)],
    );
    let target = format!("/v1/merchants/{}/score?purpose=pre_loan", srv.merchant);
    let mut served = Vec::new();
    let mut ask = |expect: u16| {
        let (status, index, request_id, body) = scored(&srv.addr, &target, &srv.lender).unwrap();
        assert_eq!(status, expect, "{body}");
        if status == 200 {
            served.push((index.unwrap(), request_id));
        }
    };
    ask(200);
    cluster.down();
    for _ in 0..20 {
        ask(503);
    }
    assert_eq!(http(&srv.addr, "GET", "/readyz", None, None).0, 503);
    cluster.up();
    // The first request after the database returns is served: connections are remade
    // when next used.
    for _ in 0..5 {
        ask(200);
    }
    assert_eq!(http(&srv.addr, "GET", "/readyz", None, None).0, 200);
    let store = yuanxin_store::Store::connect(&url, yuanxin_store::OpenMode::ReadOnly).unwrap();
    for (index, request_id) in &served {
        let e = yuanxin_store::prelude::QueryLog::entry(&store, *index)
            .unwrap()
            .expect("a served response's entry is in the log");
        assert_eq!(&e.request_id, request_id);
    }
    drop(srv);
    let out = run_ok(&[
        "audit",
        "verify",
        "--db",
        &url,
        "--checkpoints",
        &cp,
        "--key-file",
        &key,
    ]);
    assert!(out.contains("intact"), "{out}");
}
