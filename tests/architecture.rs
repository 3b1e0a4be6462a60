//! The layering of ARCHITECTURE.md, enforced over `cargo metadata`: a forbidden
//! dependency, direct or transitive, fails this test. The rules are checked on a synthetic
//! graph too, so that a rule that could never fire is caught.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

/// Normal (non-dev, non-build) dependencies by package name.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// What each crate must not reach: (crate, forbidden crates, transitive?).
const WORKSPACE_PREFIX: &str = "yuanxin-";
const HTTP: &[&str] = &["axum", "utoipa", "utoipa-axum", "tower-http", "hyper"];
const DATA_STACK: &[&str] = &["arrow", "parquet", "linfa", "linfa-logistic"];
const DATABASES: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "postgres",
    "tokio-postgres",
    "sqlx",
];

fn closure(g: &Graph, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(n) = todo.pop() {
        for d in g.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

/// Every broken rule, as `crate → dependency (rule)`.
fn violations(g: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    let mut forbid =
        |krate: &str, reach: &BTreeSet<String>, bad: &dyn Fn(&str) -> bool, rule: &str| {
            for d in reach {
                if bad(d) {
                    out.push(format!("{krate} → {d} ({rule})"));
                }
            }
        };
    let ours = |d: &str| d.starts_with(WORKSPACE_PREFIX);
    for krate in g.keys().filter(|k| ours(k)) {
        let reach = closure(g, krate);
        let direct = g.get(krate).cloned().unwrap_or_default();
        match krate.as_str() {
            "yuanxin-domain" => forbid(
                krate,
                &reach,
                &ours,
                "domain depends on no crate of the workspace",
            ),
            "yuanxin-decision" => {
                forbid(
                    krate,
                    &reach,
                    &|d| ours(d) && d != "yuanxin-domain",
                    "decision depends on domain only",
                );
                forbid(
                    krate,
                    &reach,
                    &|d| DATA_STACK.contains(&d) || HTTP.contains(&d),
                    "decision is free of the data stack and HTTP",
                );
            }
            "yuanxin-model" => forbid(
                krate,
                &reach,
                &|d| ours(d) && d != "yuanxin-domain",
                "model depends on domain only: it reads any table, not the ledger",
            ),
            "yuanxin-profile" => forbid(
                krate,
                &reach,
                &|d| d == "yuanxin-model",
                "profile does not know models",
            ),
            "yuanxin-simulate" => forbid(
                krate,
                &reach,
                &|d| ["yuanxin-profile", "yuanxin-model"].contains(&d),
                "the simulator does not know profiles or models",
            ),
            "yuanxin-engine" | "yuanxin-store" => forbid(
                krate,
                &reach,
                &|d| ["yuanxin-api", "yuanxin-cli"].contains(&d),
                "the application and the store sit below the front ends",
            ),
            _ => {}
        }
        // HTTP: only api names it, and nothing below api reaches it.
        if krate != "yuanxin-api" && !reach.contains("yuanxin-api") {
            forbid(krate, &reach, &|d| HTTP.contains(&d), "only api knows HTTP");
        }
        if krate != "yuanxin-api" {
            forbid(
                krate,
                &direct,
                &|d| HTTP.contains(&d),
                "only api knows HTTP",
            );
        }
        if krate != "yuanxin-store" {
            forbid(
                krate,
                &direct,
                &|d| DATABASES.contains(&d),
                "only store talks to databases",
            );
        }
    }
    out
}

/// The workspace's graph from `cargo metadata`.
fn workspace_graph() -> Graph {
    // The host's dependencies only: other platforms' crates need not be downloaded.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let version = String::from_utf8(version.stdout).unwrap();
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc names its host");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            host,
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut g = Graph::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let name = names[node["id"].as_str().unwrap()].to_owned();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| names[d["pkg"].as_str().unwrap()].to_owned());
        g.entry(name).or_default().extend(deps);
    }
    g
}

#[test]
fn the_workspace_keeps_its_layering() {
    let g = workspace_graph();
    for k in [
        "yuanxin-domain",
        "yuanxin-decision",
        "yuanxin-engine",
        "yuanxin-store",
        "yuanxin-api",
    ] {
        assert!(g.contains_key(k), "{k} is in the graph");
    }
    let broken = violations(&g);
    assert!(
        broken.is_empty(),
        "forbidden dependencies:\n{}",
        broken.join("\n")
    );
}

#[test]
fn each_rule_fires_on_a_graph_that_breaks_it() {
    let g = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry((*a).to_owned())
                .or_default()
                .insert((*b).to_owned());
            g.entry((*b).to_owned()).or_default();
        }
        g
    };
    let clean = g(&[
        ("yuanxin-decision", "yuanxin-domain"),
        ("yuanxin-model", "yuanxin-domain"),
        ("yuanxin-profile", "yuanxin-ledger"),
        ("yuanxin-engine", "yuanxin-model"),
        ("yuanxin-engine", "yuanxin-decision"),
        ("yuanxin-store", "rusqlite"),
        ("yuanxin-api", "yuanxin-engine"),
        ("yuanxin-api", "axum"),
        ("yuanxin-cli", "yuanxin-api"),
    ]);
    assert_eq!(violations(&clean), Vec::<String>::new());
    for (edge, rule) in [
        (
            ("yuanxin-domain", "yuanxin-ledger"),
            "domain depends on no crate",
        ),
        (
            ("yuanxin-decision", "yuanxin-model"),
            "decision depends on domain only",
        ),
        (("yuanxin-domain", "arrow"), ""),
        (
            ("yuanxin-model", "yuanxin-engine"),
            "model depends on domain only",
        ),
        (
            ("yuanxin-model", "yuanxin-profile"),
            "model depends on domain only",
        ),
        (
            ("yuanxin-profile", "yuanxin-model"),
            "profile does not know models",
        ),
        (("yuanxin-simulate", "yuanxin-profile"), "simulator"),
        (("yuanxin-engine", "yuanxin-api"), "below the front ends"),
        (("yuanxin-engine", "utoipa"), "only api knows HTTP"),
        (("yuanxin-api", "rusqlite"), "only store talks to databases"),
    ] {
        let mut bad = clean.clone();
        bad.entry(edge.0.to_owned())
            .or_default()
            .insert(edge.1.to_owned());
        bad.entry(edge.1.to_owned()).or_default();
        let v = violations(&bad);
        if edge == ("yuanxin-domain", "arrow") {
            // Not a rule by itself; but decision reaches arrow through domain then.
            assert!(
                v.iter()
                    .any(|x| x.contains("decision is free of the data stack")),
                "{v:?}"
            );
        } else {
            assert!(v.iter().any(|x| x.contains(rule)), "{edge:?}: {v:?}");
        }
    }
    // Transitive: decision → domain → (a crate that reaches) parquet.
    let mut bad = clean.clone();
    bad.entry("yuanxin-domain".into())
        .or_default()
        .insert("helper".into());
    bad.entry("helper".into())
        .or_default()
        .insert("parquet".into());
    bad.entry("parquet".into()).or_default();
    assert!(violations(&bad)
        .iter()
        .any(|x| x == "yuanxin-decision → parquet (decision is free of the data stack and HTTP)"));
}
