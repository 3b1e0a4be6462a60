//! End-to-end tests of the model commands on a real public credit dataset and on a
//! simulated city's profile panel: train → score → evaluate → registry, determinism of the
//! model file, and refusal of damaged or foreign model files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::{read_parquet, run, run_ok, simulate, strs};

/// A public dataset kept under tests/data (see its README).
fn dataset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

fn german_train(out: &Path, method: &str) -> String {
    german_train_with(out, method, &[])
}

fn german_train_with(out: &Path, method: &str, extra: &[&str]) -> String {
    let d = dataset("german");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("meta.json")).unwrap()).unwrap();
    let cats: Vec<&str> = meta["categorical"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let cats = cats.join(",");
    let mut args = vec![
        "train",
        "--data",
        d.join("data.csv").to_str().unwrap(),
        "--target",
        "creditability",
        "--categorical",
        &cats,
        "--split",
        d.join("split.csv").to_str().unwrap(),
        "--method",
        method,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The test-set AUC a model file recorded at training (`model` is its `model` object).
fn recorded_test_auc(model: &serde_json::Value) -> f64 {
    model["evaluation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["set"] == "test")
        .unwrap()["evaluation"]["metrics"]["auc"]
        .as_f64()
        .unwrap()
}

/// `yuanxin evaluate --json` of a model on german's test rows.
fn evaluate_german_test(model: &Path) -> serde_json::Value {
    let d = dataset("german");
    let ev = run_ok(&[
        "evaluate",
        "--model",
        model.to_str().unwrap(),
        "--data",
        d.join("data.csv").to_str().unwrap(),
        "--split",
        d.join("split.csv").to_str().unwrap(),
        "--set",
        "test",
        "--json",
    ]);
    serde_json::from_str(&ev).unwrap()
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

#[test]
fn scorecard_trains_scores_and_evaluates_on_german_credit() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("models/german.json");
    let out = german_train(&model, "scorecard");
    assert!(out.contains("test "), "{out}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(m["format"], "yuanxin-model");
    // A table without a catalogue lets the data choose each WoE shape and keeps every
    // characteristic with information above the floor; the model file records what was
    // used, and why each characteristic left out was left out, with what keeping it gave.
    let sc = &m["model"]["config"]["scorecard"];
    assert_eq!(sc["binning"]["trend"], "auto_shape");
    assert_eq!(sc["min_iv"], 0.001);
    let candidates = m["model"]["predictor"]["candidates"].as_array().unwrap();
    for c in candidates {
        let kept = c["status"] == "selected";
        assert_eq!(c["auc_if_kept"].is_f64(), !kept, "{c}");
    }
    assert!(
        candidates.iter().any(|c| c["status"] == "iv_below_min"),
        "german has columns with next to no information: {candidates:?}"
    );
    let auc = recorded_test_auc(&m["model"]);
    // The best Python scorecard tool reaches 0.806 on this split.
    assert!(auc > 0.78, "test AUC {auc}");
    assert!(
        tmp.path().join("models/german.html").exists(),
        "the report is written"
    );
    let html = std::fs::read_to_string(tmp.path().join("models/german.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Points table") && html.contains("ROC"));

    // Scoring: one row per input row, in input order, with score, PD, grade and reasons.
    let d = dataset("german");
    let scored = tmp.path().join("scored.csv");
    run_ok(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--data",
        d.join("data.csv").to_str().unwrap(),
        "--out",
        scored.to_str().unwrap(),
    ]);
    let rows = csv_rows(&scored);
    let header = &rows[0];
    assert_eq!(&header[..5], ["row", "status", "score", "pd", "grade"]);
    assert_eq!(rows.len(), 1001);
    let scale: Vec<&str> = m["model"]["master_scale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    let mut per_grade = std::collections::BTreeMap::<String, usize>::new();
    for (i, r) in rows[1..].iter().enumerate() {
        assert_eq!(r[0], i.to_string());
        assert_eq!(r[1], "ok");
        let pd: f64 = r[3].parse().unwrap();
        assert!(pd > 0.0 && pd < 1.0);
        assert!(scale.contains(&r[4].as_str()), "{}", r[4]);
        *per_grade.entry(r[4].clone()).or_default() += 1;
    }
    // The default master scale resolves the whole PD range: with 30 % bads, no grade holds
    // more than 35 % of the rows (one E held more than half of them).
    assert!(
        per_grade.values().all(|&n| n * 100 <= 35 * 1000),
        "{per_grade:?}"
    );
    // Riskier rows get lower scores: the mean score of bads is below that of goods.
    let data = std::fs::read_to_string(d.join("data.csv")).unwrap();
    let target_col = data
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "creditability")
        .unwrap();
    let (mut sb, mut nb, mut sg, mut ng) = (0.0, 0.0, 0.0, 0.0);
    for (line, r) in data.lines().skip(1).zip(&rows[1..]) {
        let s: f64 = r[2].parse().unwrap();
        if line.split(',').nth(target_col).unwrap() == "1" {
            sb += s;
            nb += 1.0;
        } else {
            sg += s;
            ng += 1.0;
        }
    }
    assert!(
        sb / nb + 20.0 < sg / ng,
        "bads {} goods {}",
        sb / nb,
        sg / ng
    );

    // Evaluate on the test rows only reproduces the training report's test AUC.
    let ev = evaluate_german_test(&model);
    assert_eq!(ev["evaluation"]["metrics"]["n"], 300);
    assert!((ev["evaluation"]["metrics"]["auc"].as_f64().unwrap() - auc).abs() < 1e-12);
}

#[test]
fn boost_trains_on_german_credit_with_category_splits_and_trees_its_size_supports() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("german-boost.json");
    german_train(&model, "boost");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    let m = &m["model"];
    // 700 training rows support trees of 5 leaves; the model records the size used.
    assert_eq!(m["config"]["boost"]["max_leaves"], 5);
    let trees = m["predictor"]["boost"]["trees"].as_array().unwrap();
    let mut category_splits = 0;
    for t in trees {
        let nodes = t["nodes"].as_array().unwrap();
        let leaves = nodes
            .iter()
            .filter(|n| n["left"] == 0 && n["right"] == 0)
            .count();
        assert!(leaves <= 5, "{leaves} leaves");
        category_splits += nodes
            .iter()
            .filter(|n| n.get("categories").is_some())
            .count();
    }
    assert!(category_splits > 0, "no category splits");
    let html = std::fs::read_to_string(tmp.path().join("german-boost.html")).unwrap();
    assert!(html.contains("trees of at most 5 leaves") && html.contains("by category set"));
    // Characteristics in order of their mean contribution: the checking account's status,
    // german's strongest characteristic by any measure (its IV is the largest), first.
    let table = &html[html.find("mean |contribution|").unwrap()..];
    let first = table.find("<td class=l>").unwrap() + "<td class=l>".len();
    assert!(
        table[first..].starts_with("status_of_existing_checking_account"),
        "{}",
        &table[..600]
    );
    // Category splits came with schema version 2: the file says so, so that builds reading
    // only version 1 refuse it by its version, and a file claiming 1 is refused.
    let text = std::fs::read_to_string(&model).unwrap();
    assert!(text.contains("\"schema_version\":2,"), "{}", &text[..80]);
    let claimed = tmp.path().join("claims-v1.json");
    std::fs::write(
        &claimed,
        text.replacen("\"schema_version\":2,", "\"schema_version\":1,", 1),
    )
    .unwrap();
    let out = run(&[
        "score",
        "--model",
        claimed.to_str().unwrap(),
        "--data",
        dataset("german").join("data.csv").to_str().unwrap(),
        "--out",
        tmp.path().join("x.csv").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schema version 1 does not match"), "{err}");
    let auc = recorded_test_auc(m);
    // XGBoost with its native categories reaches 0.8075 on this split; before category
    // splits and sample-sized trees, ours reached 0.776.
    assert!(auc > 0.795, "test AUC {auc}");
    // Every row scores through the category splits, the model file read back from disk.
    let scored = tmp.path().join("scored.csv");
    run_ok(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--data",
        dataset("german").join("data.csv").to_str().unwrap(),
        "--out",
        scored.to_str().unwrap(),
    ]);
    let rows = csv_rows(&scored);
    assert_eq!(rows.len(), 1001);
    assert!(rows[1..].iter().all(|r| r[1] == "ok"));
    let ev = evaluate_german_test(&model);
    assert!((ev["evaluation"]["metrics"]["auc"].as_f64().unwrap() - auc).abs() < 1e-12);
}

#[test]
fn training_is_reproducible_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    for method in ["scorecard", "boost"] {
        let a = tmp.path().join(format!("a-{method}.json"));
        let b = tmp.path().join(format!("b-{method}.json"));
        german_train(&a, method);
        german_train(&b, method);
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{method}"
        );
    }
    // The seed comes from the configuration file unless `--seed` is given, and it picks the
    // early-stopping rows, so another seed gives another model.
    let config = tmp.path().join("seed.json");
    std::fs::write(&config, r#"{"seed": 7}"#).unwrap();
    let model = |path: &Path| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(path).unwrap()).unwrap()["model"]
            .clone()
    };
    let c = tmp.path().join("c.json");
    german_train_with(&c, "boost", &["--config", config.to_str().unwrap()]);
    assert_eq!(model(&c)["seed"], 7);
    assert_ne!(
        model(&c)["id"],
        model(&tmp.path().join("a-boost.json"))["id"]
    );
    let d = tmp.path().join("d.json");
    german_train_with(
        &d,
        "boost",
        &["--config", config.to_str().unwrap(), "--seed", "9"],
    );
    assert_eq!(model(&d)["seed"], 9);
}

#[test]
fn a_weaker_challenger_is_refused_by_the_gate_then_overridden_with_a_recorded_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let dir = models.to_str().unwrap();
    let id_of = |p: &Path| {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap()["model"]
            ["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let champion = models.join("champion.json");
    german_train(&champion, "scorecard");
    // A challenger on two weak characteristics: its out-of-time Gini is far below.
    let weak = models.join("weak.json");
    german_train_with(&weak, "scorecard", &["--features", "telephone,job"]);
    let d = dataset("german");
    let (data, split) = (d.join("data.csv"), d.join("split.csv"));
    let gate_data = [
        "--data",
        data.to_str().unwrap(),
        "--split",
        split.to_str().unwrap(),
    ];
    // Without evidence, not even the first champion is promoted.
    let out = run(&["models", "promote", &id_of(&champion), "--dir", dir]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data"));
    run_ok(
        &[
            &[
                "models",
                "promote",
                &id_of(&champion),
                "--dir",
                dir,
                "--by",
                "analyst-1",
                "--reason",
                "first model",
            ][..],
            &gate_data,
        ]
        .concat(),
    );

    // Side by side: HTML with charts, JSON with both models and the gate.
    let page = tmp.path().join("compare.html");
    let cmp = run_ok(
        &[
            &[
                "models",
                "compare",
                &id_of(&champion),
                &id_of(&weak),
                "--dir",
                dir,
                "--out",
                page.to_str().unwrap(),
                "--json",
            ][..],
            &gate_data,
        ]
        .concat(),
    );
    let v: serde_json::Value = serde_json::from_str(&cmp).unwrap();
    assert_eq!(v["gate"]["passes"], false, "{v}");
    let ginis: Vec<f64> = (0..2)
        .map(|k| {
            v["models"][k]["evaluation"]["metrics"]["gini"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(ginis[1] < ginis[0] - 0.02, "{ginis:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg") && html.contains("Calibration per grade"));

    // The gate refuses it, naming the Gini; the champion stays.
    let out = run(&[
        &["models", "promote", &id_of(&weak), "--dir", dir][..],
        &gate_data,
    ]
    .concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Gini") && err.contains("--override"), "{err}");
    let roles: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.join("registry.json")).unwrap()).unwrap();
    assert_eq!(roles["champion"], id_of(&champion).as_str());

    // Overridden, with a reason the history keeps beside what the gate found.
    run_ok(
        &[
            &[
                "models",
                "promote",
                &id_of(&weak),
                "--dir",
                dir,
                "--by",
                "analyst-2",
                "--override",
                "regulator asked for a two-characteristic card",
            ][..],
            &gate_data,
        ]
        .concat(),
    );
    let history: serde_json::Value =
        serde_json::from_str(&run_ok(&["models", "history", "--dir", dir, "--json"])).unwrap();
    let h = history.as_array().unwrap();
    assert_eq!(h.len(), 2, "{history}");
    assert_eq!(
        (h[0]["by"].as_str(), h[0]["reason"].as_str()),
        (Some("analyst-1"), Some("first model"))
    );
    assert!(h[0]["overridden"].is_null());
    assert_eq!(h[1]["id"], id_of(&weak).as_str());
    assert_eq!(h[1]["previous"], id_of(&champion).as_str());
    assert_eq!(
        h[1]["overridden"]["reason"],
        "regulator asked for a two-characteristic card"
    );
    assert!(h[1]["overridden"]["failures"][0]
        .as_str()
        .unwrap()
        .contains("Gini"));
    assert_eq!(h[1]["checks"].as_array().unwrap().len(), 2);
}

#[test]
fn damaged_or_foreign_model_files_are_refused_and_the_champion_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let good = models.join("good.json");
    german_train(&good, "scorecard");
    let id = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&good).unwrap()).unwrap()
        ["model"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = dataset("german");
    let (data, split) = (d.join("data.csv"), d.join("split.csv"));
    let gate_data = [
        "--data",
        data.to_str().unwrap(),
        "--split",
        split.to_str().unwrap(),
    ];
    run_ok(
        &[
            &["models", "promote", &id, "--dir", models.to_str().unwrap()][..],
            &gate_data,
        ]
        .concat(),
    );

    let text = std::fs::read_to_string(&good).unwrap();
    // A changed coefficient: valid JSON, valid schema, wrong digest.
    let pos = text.find("\"coefficient\": -").unwrap() + "\"coefficient\": -".len();
    let mut altered = text.clone();
    let digit = altered.as_bytes()[pos + 2];
    altered.replace_range(pos + 2..pos + 3, if digit == b'1' { "2" } else { "1" });
    let cases = [
        ("altered.json", altered, "digest mismatch"),
        (
            "truncated.json",
            text[..text.len() / 2].to_owned(),
            "not valid JSON",
        ),
        (
            "future.json",
            text.replace("\"schema_version\": 1", "\"schema_version\": 99"),
            "schema version 99",
        ),
        (
            "foreign.json",
            "{\"format\": \"something-else\"}".to_owned(),
            "format is",
        ),
    ];
    for (name, body, why) in &cases {
        let p = models.join(name);
        std::fs::write(&p, body).unwrap();
        let out = run(&[
            "score",
            "--model",
            p.to_str().unwrap(),
            "--data",
            dataset("german").join("data.csv").to_str().unwrap(),
            "--out",
            tmp.path().join("x.csv").to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{name} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{name}: {err}");
        let out = run(&[
            &["models", "promote", name, "--dir", models.to_str().unwrap()][..],
            &gate_data,
        ]
        .concat());
        assert!(!out.status.success(), "{name} was promoted");
    }
    let list = run_ok(&[
        "models",
        "list",
        "--dir",
        models.to_str().unwrap(),
        "--json",
    ]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let entries = list["models"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["role"], "champion");
    assert_eq!(entries[0]["id"], id.as_str());
    assert_eq!(list["invalid"].as_array().unwrap().len(), 4);
}

#[test]
fn rows_that_cannot_be_scored_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.json");
    german_train(&model, "scorecard");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    let chars = m["model"]["predictor"]["characteristics"]
        .as_array()
        .unwrap();
    // A categorical characteristic — one with an "other" bin of rare categories if there is
    // one: a category never seen in training must not land there by accident — and a
    // numeric one that had no missing values in training.
    let categorical = |c: &&serde_json::Value| c["binning"]["rule"]["type"] == "categorical";
    let cat = chars
        .iter()
        .filter(categorical)
        .find(|c| !c["binning"]["rule"]["other"].is_null())
        .or_else(|| chars.iter().find(categorical))
        .expect("a categorical characteristic")["binning"]["name"]
        .as_str()
        .unwrap();
    let num = chars
        .iter()
        .find(|c| {
            c["binning"]["rule"]["type"] == "numeric" && c["binning"]["missing"]["count"] == 0
        })
        .expect("a numeric characteristic")["binning"]["name"]
        .as_str()
        .unwrap();
    let data = std::fs::read_to_string(dataset("german").join("data.csv")).unwrap();
    let mut lines: Vec<String> = data.lines().take(4).map(str::to_owned).collect();
    let header: Vec<String> = lines[0].split(',').map(str::to_owned).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut r1: Vec<String> = lines[1].split(',').map(str::to_owned).collect();
    r1[col(cat)] = "space travel".into();
    lines[1] = r1.join(",");
    let mut r2: Vec<String> = lines[2].split(',').map(str::to_owned).collect();
    r2[col(num)] = String::new();
    lines[2] = r2.join(",");
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = tmp.path().join("out.parquet");
    let said = run_ok(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--data",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(said.contains("2 unscorable"), "{said}");
    let b = &read_parquet(&out)[0];
    let status = strs(b, "status");
    let why = strs(b, "unscorable_reason");
    assert_eq!(b.num_rows(), 3);
    assert_eq!(status[0].as_deref(), Some("unscorable"));
    let w0 = why[0].as_deref().unwrap();
    assert!(w0.contains("space travel") && w0.contains(cat), "{w0}");
    assert_eq!(status[1].as_deref(), Some("unscorable"));
    let w1 = why[1].as_deref().unwrap();
    assert!(w1.contains("missing") && w1.contains(num), "{w1}");
    assert_eq!(status[2].as_deref(), Some("ok"));
    assert_eq!(why[2], None);
    // Configured so, the unseen category gets the riskiest bin's points instead: scored,
    // and that characteristic's loss is the largest it can be.
    let config = tmp.path().join("conservative.json");
    std::fs::write(&config, r#"{"unseen_category": "most_conservative"}"#).unwrap();
    let conservative = tmp.path().join("c.json");
    german_train_with(
        &conservative,
        "scorecard",
        &["--config", config.to_str().unwrap()],
    );
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&conservative).unwrap()).unwrap();
    assert_eq!(c["model"]["config"]["unseen_category"], "most_conservative");
    run_ok(&[
        "score",
        "--model",
        conservative.to_str().unwrap(),
        "--data",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let b = &read_parquet(&out)[0];
    assert_eq!(strs(b, "status")[0].as_deref(), Some("ok"));
    let card = c["model"]["predictor"]["characteristics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["binning"]["name"] == cat)
        .unwrap();
    let points: Vec<f64> = card["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    let worst = points.iter().copied().fold(f64::INFINITY, f64::min);
    let best = card["best_points"].as_f64().unwrap();
    let reasons: Vec<Option<String>> = (1..=4)
        .map(|k| strs(b, &format!("reason_{k}"))[0].clone())
        .collect();
    let lost = |k: usize| {
        b.column_by_name(&format!("reason_{k}_points"))
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap()
            .value(0)
    };
    match reasons.iter().position(|r| r.as_deref() == Some(cat)) {
        Some(k) => assert!(
            (lost(k + 1) - (best - worst)).abs() < 0.006,
            "{} vs {}",
            lost(k + 1),
            best - worst
        ),
        // Not among the four largest losses: then four others lost at least as much.
        None => assert!(
            best - worst < 1.0 || (1..=4).all(|k| lost(k) >= best - worst - 0.006),
            "{cat}: {reasons:?}"
        ),
    }
}

#[test]
fn a_profile_panel_trains_with_catalogue_names_in_the_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 1200, 36, 7, &[]);
    let ledger = tmp.path().join("ledger");
    run_ok(&[
        "ingest",
        "--ledger",
        ledger.to_str().unwrap(),
        city.to_str().unwrap(),
    ]);
    let panel = tmp.path().join("panel.parquet");
    run_ok(&[
        "profile",
        "--ledger",
        ledger.to_str().unwrap(),
        "--from",
        "2024-03-31",
        "--to",
        "2025-06-30",
        "--label",
        "default_12m",
        "--oot-from",
        "2025-01-01",
        "--out",
        panel.to_str().unwrap(),
    ]);
    let model = tmp.path().join("models/panel.json");
    let out = run_ok(&[
        "train",
        "--data",
        panel.to_str().unwrap(),
        "--target",
        "default_12m",
        "--segment",
        "industry",
        "--out",
        model.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.contains("excluded"), "{out}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    let m = &m["model"];
    // The panel's own split and descriptive columns are honoured.
    assert!(m["training"]["test"].as_u64().unwrap() > 0);
    assert!(m["features"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["name"] != "merchant_id" && f["name"] != "as_of"));
    assert_eq!(m["created_at"], "2025-06-30");
    // Industry and district are candidates only when the analyst names them.
    let candidate_names = |m: &serde_json::Value| -> Vec<String> {
        m["predictor"]["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let names = candidate_names(m);
    assert!(
        !names.iter().any(|n| n == "industry" || n == "district"),
        "{names:?}"
    );
    assert!(m["config"].get("descriptive").is_none());
    let with = tmp.path().join("models/with.json");
    run_ok(&[
        "train",
        "--data",
        panel.to_str().unwrap(),
        "--target",
        "default_12m",
        "--descriptive",
        "industry,district",
        "--out",
        with.to_str().unwrap(),
        "--quiet",
    ]);
    let w: serde_json::Value = serde_json::from_slice(&std::fs::read(&with).unwrap()).unwrap();
    let names = candidate_names(&w["model"]);
    assert!(
        names.iter().any(|n| n == "industry") && names.iter().any(|n| n == "district"),
        "{names:?}"
    );
    assert_eq!(
        w["model"]["config"]["descriptive"],
        serde_json::json!(["industry", "district"])
    );
    let o = run(&[
        "train",
        "--data",
        panel.to_str().unwrap(),
        "--target",
        "default_12m",
        "--descriptive",
        "merchant_id",
        "--out",
        with.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not one of industry, district"));
    // A panel keeps the trade's conventions: monotonic WoE, IV of at least 0.02, and every
    // characteristic with a catalogue direction binned along it.
    let sc = &m["config"]["scorecard"];
    assert_eq!(sc["binning"]["trend"], "auto");
    assert_eq!(sc["min_iv"], 0.02);
    let bins = m["predictor"]["all_binnings"].as_array().unwrap();
    assert!(bins
        .iter()
        .all(|b| ["ascending", "descending"].contains(&b["trend"].as_str().unwrap())));
    assert!(m["predictor"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "selected")
        .all(|c| c["iv"].as_f64().unwrap() >= 0.02));
    let test = m["evaluation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["set"] == "test")
        .unwrap();
    assert!(
        test["evaluation"]["metrics"]["auc"].as_f64().unwrap() > 0.6,
        "{}",
        test["evaluation"]["metrics"]
    );
    assert!(!test["evaluation"]["segments"]
        .as_array()
        .unwrap()
        .is_empty());

    // Latest profiles scored with reasons in the catalogue's display names.
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
    let scored = tmp.path().join("scored.parquet");
    run_ok(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--data",
        latest.to_str().unwrap(),
        "--out",
        scored.to_str().unwrap(),
    ]);
    let b = &read_parquet(&scored)[0];
    let ids = strs(b, "merchant_id");
    assert!(ids.iter().all(Option::is_some), "merchant ids are kept");
    let reasons = strs(b, "reason_1");
    let names: Vec<&str> = yuanxin_profile_names();
    let with_reason: Vec<&String> = reasons.iter().flatten().collect();
    assert!(!with_reason.is_empty());
    // Each reason with the merchant's value, the bin and at least a point lost.
    let (values, bins) = (strs(b, "reason_1_value"), strs(b, "reason_1_bin"));
    let points = b
        .column_by_name("reason_1_points")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap();
    for i in 0..b.num_rows() {
        assert_eq!(reasons[i].is_some(), values[i].is_some(), "row {i}");
        assert_eq!(reasons[i].is_some(), bins[i].is_some(), "row {i}");
        if reasons[i].is_some() {
            assert!(points.value(i) >= 1.0, "row {i}: {}", points.value(i));
        }
    }
    assert!(
        with_reason.iter().all(|r| names.contains(&r.as_str())),
        "{with_reason:?}"
    );
    let json = std::fs::read_to_string(&model).unwrap();
    assert!(json.contains("name_zh"), "display names are stored");

    // Decisions for every merchant on the shipped policy and catalogue.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let out = run_ok(&[
        "decide",
        "--profile",
        latest.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--policy",
        data.join("policy.toml").to_str().unwrap(),
        "--catalogue",
        data.join("catalogue.toml").to_str().unwrap(),
        "--amount",
        "100000",
        "--term",
        "12",
    ]);
    let decisions: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let merchants: usize = read_parquet(&latest).iter().map(|b| b.num_rows()).sum();
    assert_eq!(decisions.len(), merchants, "one decision per merchant");
    let mut outcomes = std::collections::BTreeMap::new();
    for d in &decisions {
        *outcomes
            .entry(d["outcome"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        let codes: Vec<&str> = d["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap())
            .collect();
        match d["outcome"].as_str().unwrap() {
            "decline" => assert!(!codes.is_empty(), "{d}"),
            "approve" => {
                let amount: f64 = d["approved_amount"].as_str().unwrap().parse().unwrap();
                assert!(amount > 0.0 && amount <= 100_000.0, "{d}");
                assert_eq!(d["offer"]["product"], d["offers"][0]["product"]);
            }
            _ => {}
        }
        assert_eq!(d["lpr_effective"], "2025-05-20");
    }
    assert!(
        outcomes.get("approve").copied().unwrap_or(0) > 0
            && outcomes.get("decline").copied().unwrap_or(0) > 0,
        "{outcomes:?}"
    );
    // Boosted trees on a panel follow the catalogue's directions of risk, unless told
    // `--monotone none`; the model file records the choice.
    let short = tmp.path().join("short.json");
    std::fs::write(&short, r#"{"boost": {"max_trees": 20}}"#).unwrap();
    for constrained in [true, false] {
        let path = tmp.path().join(format!("boost-{constrained}.json"));
        let mut args = vec![
            "train",
            "--data",
            panel.to_str().unwrap(),
            "--target",
            "default_12m",
            "--method",
            "boost",
            "--config",
            short.to_str().unwrap(),
            "--out",
            path.to_str().unwrap(),
            "--quiet",
        ];
        if !constrained {
            args.extend(["--monotone", "none"]);
        }
        run_ok(&args);
        let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let signs = b["model"]["predictor"]["boost"]["monotone"]
            .as_array()
            .unwrap();
        let constraints = signs.iter().filter(|v| v.as_i64() != Some(0)).count();
        assert_eq!(constraints > 0, constrained, "{constraints} constraints");
        assert_eq!(
            b["model"]["config"].get("catalogue_monotone").is_none(),
            constrained
        );
    }
    // A bad policy file is refused with its problem named.
    let bad = tmp.path().join("policy.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(data.join("policy.toml"))
            .unwrap()
            .replace("dscr_min", "dscr_mín"),
    )
    .unwrap();
    let o = run(&[
        "decide",
        "--profile",
        latest.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--policy",
        bad.to_str().unwrap(),
        "--catalogue",
        data.join("catalogue.toml").to_str().unwrap(),
        "--amount",
        "1000",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("dscr_mín"));
    // A policy that places only some of the model's grades is refused where it meets the
    // model, naming the grade, instead of deciding every grade-E1 merchant as
    // GRADE_UNKNOWN.
    let partial = tmp.path().join("partial.toml");
    let text = std::fs::read_to_string(data.join("policy.toml")).unwrap();
    assert!(text.contains("grades = [\"D3\", \"E\"]"));
    std::fs::write(
        &partial,
        text.replace("grades = [\"D3\", \"E\"]", "grades = [\"D3\"]"),
    )
    .unwrap();
    let o = run(&[
        "decide",
        "--profile",
        latest.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--policy",
        partial.to_str().unwrap(),
        "--catalogue",
        data.join("catalogue.toml").to_str().unwrap(),
        "--amount",
        "1000",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("grade E1 of the model's master scale is in no grade band"),
        "{err}"
    );
}

/// Catalogue names from `yuanxin features --json`, plus the descriptive categorical columns.
fn yuanxin_profile_names() -> Vec<&'static str> {
    let out = run_ok(&["features", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut names: Vec<&'static str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &*Box::leak(f["name"].as_str().unwrap().to_owned().into_boxed_str()))
        .collect();
    names.extend(["industry", "district", "insufficient_data"]);
    names
}

#[test]
fn the_shipped_default_model_is_a_valid_champion() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let list = run_ok(&[
        "models",
        "list",
        "--dir",
        models.to_str().unwrap(),
        "--json",
    ]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["invalid"].as_array().unwrap().len(), 0, "{list}");
    let champion = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "champion")
        .expect("a champion");
    assert_eq!(champion["file"], "default-scorecard.json");
    assert_eq!(champion["created_at"], "2025-06-30");
    assert!(champion["auc"].as_f64().unwrap() > 0.7);
}

/// Metrics measured on the rows a model was fitted on are said to be in-sample.
#[test]
fn training_without_a_test_set_warns_that_metrics_are_in_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dataset("german");
    let out = tmp.path().join("m.json");
    let o = run(&[
        "train",
        "--data",
        d.join("data.csv").to_str().unwrap(),
        "--target",
        "creditability",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in-sample"));
    let o = run(&[
        "train",
        "--data",
        d.join("data.csv").to_str().unwrap(),
        "--target",
        "creditability",
        "--split",
        d.join("split.csv").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("in-sample"));
}

/// A model named by a path that is not there is a missing file, not a registry miss.
#[test]
fn a_missing_model_path_is_reported_as_a_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere/model.json");
    let o = run(&[
        "score",
        "--model",
        missing.to_str().unwrap(),
        "--data",
        dataset("german").join("data.csv").to_str().unwrap(),
        "--out",
        tmp.path().join("x.csv").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no model file at") && err.contains("nowhere"),
        "{err}"
    );
    // An id that is not in the registry is still said to be missing from it.
    let o = run(&[
        "score",
        "--model",
        "scorecard-000000000000",
        "--data",
        dataset("german").join("data.csv").to_str().unwrap(),
        "--out",
        tmp.path().join("x.csv").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no model scorecard-000000000000"));
}

/// A numeric column with a few values that are not numbers is numeric, the values are
/// missing, and the choice is said on the console and kept in the model file; `--strict`
/// refuses it instead.
#[test]
fn a_few_values_that_are_not_numbers_are_said_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("t.csv");
    let mut text = String::from("x,z,y\n");
    for i in 0..400u32 {
        let x = if i == 17 {
            "n/a".to_owned()
        } else {
            (i % 97).to_string()
        };
        let y = u32::from((i * 7919) % 100 < 20 + (i % 97) / 3);
        text.push_str(&format!("{x},{},{y}\n", (i * 31) % 50));
    }
    std::fs::write(&data, text).unwrap();
    let out = tmp.path().join("m.json");
    let args = |strict: bool| {
        let mut a = vec![
            "train".to_owned(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--target".into(),
            "y".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--quiet".into(),
        ];
        if strict {
            a.push("--strict".into());
        }
        a
    };
    let o = run(&args(false).iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("column x: 1 values that are not numbers (e.g. n/a) read as missing"),
        "{err}"
    );
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        m["model"]["training"]["coerced_columns"],
        serde_json::json!([{"column": "x", "values": 1, "examples": ["n/a"]}])
    );
    let o = run(&args(true).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--strict"));
}
