//! End-to-end tests of `yuanxin refresh`: the nightly job from deliveries to a versioned
//! snapshot of every merchant's standing, compared with the day before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_nightly_refresh_writes_a_snapshot_and_what_changed_since_the_last() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 200, 14, 31, &["--faults", "0.01"]);
    let ledger = tmp.path().join("ledger");
    let (profiles, snapshots) = (tmp.path().join("profiles.parquet"), tmp.path().join("snap"));
    let refresh = |today: &str, deliveries: &[&Path]| -> Value {
        let (l, p, s) = (
            ledger.to_str().unwrap().to_string(),
            profiles.to_str().unwrap().to_string(),
            snapshots.to_str().unwrap().to_string(),
        );
        let data = repo().join("data");
        let models = repo().join("models");
        let mut args = vec![
            "refresh".to_string(),
            "--ledger".into(),
            l,
            "--profiles".into(),
            p,
            "--snapshots".into(),
            s,
            "--data".into(),
            data.to_str().unwrap().into(),
            "--models".into(),
            models.to_str().unwrap().into(),
            "--today".into(),
            today.into(),
            "--json".into(),
        ];
        for d in deliveries {
            args.extend(["--deliveries".into(), d.to_str().unwrap().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serde_json::from_str(&run_ok(&args)).unwrap()
    };
    // Day one: the city's main delivery, profiles as of a month before its end.
    let first = refresh("2024-07-31", &[&city]);
    assert!(first["ingested"]["totals"]["accepted"].as_u64().unwrap() > 0);
    let snap = &first["snapshot"];
    assert_eq!(snap["as_of"], "2024-07-31");
    assert!(
        snap["changes"].is_null(),
        "nothing to compare the first with"
    );
    let merchants = snap["merchants"].as_u64().unwrap();
    assert!(merchants > 150);
    let parts = ["graded", "closed", "unscorable"].map(|k| snap[k].as_u64().unwrap());
    assert_eq!(parts.iter().sum::<u64>(), merchants);
    let graded: u64 = snap["by_grade"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(graded, parts[0]);
    assert!(snap["offers"].as_u64().unwrap() > 0, "{snap}");
    let name = snap["snapshot"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(snapshots.join("CURRENT"))
            .unwrap()
            .trim(),
        name
    );
    let rows = read_whole(&snapshots.join(&name).join("standing.parquet"));
    assert_eq!(rows.num_rows() as u64, merchants);
    // Every graded merchant has a score and PD; closed ones have none.
    let status = rows.column_by_name("status").unwrap();
    let score = rows.column_by_name("score").unwrap();
    let status = arrow::array::AsArray::as_string::<i32>(status);
    for i in 0..rows.num_rows() {
        assert_eq!(
            status.value(i) == "graded",
            arrow::array::Array::is_valid(score, i),
            "row {i}"
        );
    }

    // Day two: the late delivery, and profiles a month on.
    let second = refresh("2024-08-31", &[&city.join("_late")]);
    let snap2 = &second["snapshot"];
    assert_eq!(snap2["as_of"], "2024-08-31");
    let c = &snap2["changes"];
    assert_eq!(c["previous"], name.as_str());
    let moved = ["upgraded", "downgraded", "unchanged"].map(|k| c[k].as_u64().unwrap());
    assert!(moved[0] + moved[1] > 0, "a month moves some grades: {c}");
    assert!(moved.iter().sum::<u64>() <= snap2["graded"].as_u64().unwrap());
    let name2 = snap2["snapshot"].as_str().unwrap();
    assert_ne!(name2, name);
    assert_eq!(
        std::fs::read_to_string(snapshots.join("CURRENT"))
            .unwrap()
            .trim(),
        name2
    );
    // The first snapshot is kept as it was.
    assert_eq!(
        read_whole(&snapshots.join(&name).join("standing.parquet")),
        rows
    );
    // The run report sits beside the snapshot.
    let run: Value =
        serde_json::from_slice(&std::fs::read(snapshots.join(name2).join("run.json")).unwrap())
            .unwrap();
    assert_eq!(run["snapshot"]["snapshot"], name2);
    assert!(run["timings"]["total_s"].as_f64().unwrap() > 0.0);
}

/// The refresh as N shards, the unit a scheduler fans out: each shard builds its
/// merchants' partial profiles alone, and their gathered union gives the profiles file and
/// the snapshot one run gives, byte for byte. Gathering refuses an incomplete set.
#[test]
fn shards_of_the_refresh_give_the_single_run_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 200, 14, 43, &[]);
    let ledger = tmp.path().join("ledger");
    let (data, models) = (repo().join("data"), repo().join("models"));
    let common = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "refresh",
            "--ledger",
            ledger.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--models",
            models.to_str().unwrap(),
            "--today",
            "2024-07-31",
            "--json",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run_args = |args: Vec<String>| -> String {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok(&args)
    };
    let one = tmp.path().join("one");
    let (p1, s1) = (one.join("profiles.parquet"), one.join("snap"));
    std::fs::create_dir_all(&one).unwrap();
    let single: Value = serde_json::from_str(&run_args(common(&[
        "--deliveries",
        city.to_str().unwrap(),
        "--profiles",
        p1.to_str().unwrap(),
        "--snapshots",
        s1.to_str().unwrap(),
    ])))
    .unwrap();

    let parts = tmp.path().join("parts");
    let mut rows = 0;
    for i in 0..3 {
        let shard = format!("{i}/3");
        let part: Value = serde_json::from_str(&run_args(common(&[
            "--shard",
            &shard,
            "--parts",
            parts.to_str().unwrap(),
        ])))
        .unwrap();
        assert_eq!(part["part"]["shard"], shard.as_str());
        let n = part["part"]["rows"].as_u64().unwrap();
        assert!(n > 0, "shard {shard} has merchants");
        rows += n;
        if i == 1 {
            // Two of three: gathering refuses, and names what is missing.
            let (p, s) = (tmp.path().join("early.parquet"), tmp.path().join("early"));
            let mut args = common(&["--gather", parts.to_str().unwrap()]);
            args.extend(
                [
                    "--profiles",
                    p.to_str().unwrap(),
                    "--snapshots",
                    s.to_str().unwrap(),
                ]
                .map(String::from),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(&args);
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("shards missing: 2/3"), "{err}");
            assert!(!p.exists(), "no profiles from an incomplete set");
        }
    }
    let many = tmp.path().join("many");
    let (p3, s3) = (many.join("profiles.parquet"), many.join("snap"));
    std::fs::create_dir_all(&many).unwrap();
    let gathered: Value = serde_json::from_str(&run_args(common(&[
        "--gather",
        parts.to_str().unwrap(),
        "--profiles",
        p3.to_str().unwrap(),
        "--snapshots",
        s3.to_str().unwrap(),
    ])))
    .unwrap();
    assert_eq!(gathered["shards"].as_array().unwrap().len(), 3);
    assert_eq!(read_whole(&p1).num_rows() as u64, rows);
    assert!(
        std::fs::read(&p1).unwrap() == std::fs::read(&p3).unwrap(),
        "the shards' profiles file differs from the single run's"
    );
    let name = single["snapshot"]["snapshot"].as_str().unwrap();
    assert_eq!(gathered["snapshot"]["snapshot"], name);
    assert!(
        std::fs::read(s1.join(name).join("standing.parquet")).unwrap()
            == std::fs::read(s3.join(name).join("standing.parquet")).unwrap(),
        "the shards' snapshot differs from the single run's"
    );
    assert_eq!(
        single["snapshot"]["by_grade"],
        gathered["snapshot"]["by_grade"]
    );
    // A shard count out of range is refused before any work.
    let out = run(
        &common(&["--shard", "3/3", "--parts", parts.to_str().unwrap()])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard 3/3"));
}
