//! End-to-end tests of `yuanxin ingest`: every row accounted for, idempotence, atomicity
//! under kill, refusal of malformed files, knowledge time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;
use yuanxin_ledger::{Ledger, Table};

fn ingest_json(ledger: &Path, inputs: &[&Path], extra: &[&str]) -> Value {
    let l = ledger.to_str().unwrap();
    let mut args = vec!["ingest", "--ledger", l, "--json"];
    args.extend_from_slice(extra);
    let paths: Vec<String> = inputs
        .iter()
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    args.extend(paths.iter().map(|s| s.as_str()));
    serde_json::from_str(&run_ok(&args)).unwrap()
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v
}

/// Every file under a folder with a digest of its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, u64> {
    use std::hash::{Hash, Hasher};
    file_bytes(dir)
        .into_iter()
        .map(|(k, v)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            v.hash(&mut h);
            (k, h.finish())
        })
        .collect()
}

/// Every file under a folder with its bytes.
fn file_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn data_files(dir: &Path) -> BTreeMap<String, u64> {
    snapshot(dir)
        .into_iter()
        .filter(|(k, _)| k.starts_with("data/"))
        .collect()
}

fn counts(v: &Value) -> (u64, u64, u64, u64) {
    let t = &v["totals"];
    (
        t["rows"].as_u64().unwrap(),
        t["accepted"].as_u64().unwrap(),
        t["rejected"].as_u64().unwrap(),
        t["duplicates"].as_u64().unwrap(),
    )
}

#[test]
fn a_faulty_export_is_fully_accounted_for_and_yields_the_clean_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let dirty = tmp.path().join("dirty");
    let clean = tmp.path().join("clean");
    let sim = simulate(
        &dirty,
        200,
        10,
        11,
        &["--faults", "0.03", "--format", "both"],
    );
    simulate(&clean, 200, 10, 11, &[]);

    // The folder holds every table in both formats: refused (naming both files), not
    // ingested twice; nothing is written.
    let l0 = tmp.path().join("l0");
    let out = run(&[
        "ingest",
        "--ledger",
        l0.to_str().unwrap(),
        dirty.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("give one format, not both"),
        "{err}"
    );
    assert!(!l0.join("manifest.json").exists());

    // Parquet delivery: counts reconcile and match exactly what was injected.
    let l1 = tmp.path().join("l1");
    let r = ingest_json(
        &l1,
        &parquet_files(&dirty)
            .iter()
            .map(|p| p.as_path())
            .collect::<Vec<_>>(),
        &[],
    );
    let (rows, accepted, rejected, dups) = counts(&r);
    assert_eq!(rows, accepted + rejected + dups);
    assert_eq!(
        rows,
        sim["rows"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    );
    assert_eq!(dups, sim["expected_duplicates"].as_u64().unwrap());
    let expected: BTreeMap<String, u64> =
        serde_json::from_value(sim["expected_rejections"].clone()).unwrap();
    let got: BTreeMap<String, u64> =
        serde_json::from_value(r["totals"]["rejected_by_reason"].clone()).unwrap();
    assert_eq!(got, expected, "rejections by reason");
    for kind in [
        "missing_field",
        "invalid_credit_code",
        "negative_amount",
        "amount_precision",
        "unknown_merchant",
        "unknown_code",
        "timestamp_out_of_range",
    ] {
        assert!(
            expected.get(kind).copied().unwrap_or(0) > 0,
            "the export should contain {kind} faults"
        );
    }
    for f in r["files"].as_array().unwrap() {
        assert_eq!(
            f["rows"].as_u64().unwrap(),
            f["accepted"].as_u64().unwrap()
                + f["rejected"].as_u64().unwrap()
                + f["duplicates"].as_u64().unwrap(),
            "{f}"
        );
    }
    // The quarantine holds every rejected row with its reason.
    let q = read_parquet(&l1.join(r["quarantine"].as_str().unwrap()));
    let q_rows: usize = q.iter().map(|b| b.num_rows()).sum();
    assert_eq!(q_rows as u64, rejected);

    // The late delivery arrives in a second batch and is accepted there.
    let late: u64 = sim["late_rows"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(late > 0);
    let r2 = ingest_json(&l1, &[&dirty.join("_late")], &[]);
    assert_eq!(counts(&r2), (late, late, 0, 0));

    // CSV delivery of the same export gives the same accounting.
    let l2 = tmp.path().join("l2");
    let csvs: Vec<PathBuf> = std::fs::read_dir(&dirty)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    let r3 = ingest_json(
        &l2,
        &csvs.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        &[],
    );
    assert_eq!(counts(&r3), counts(&r));
    assert_eq!(
        r3["totals"]["rejected_by_reason"],
        r["totals"]["rejected_by_reason"]
    );

    // Dirty export + late delivery == the clean export, table by table.
    let l3 = tmp.path().join("l3");
    let r4 = ingest_json(&l3, &[&clean], &[]);
    assert_eq!(r4["totals"]["rejected"].as_u64().unwrap(), 0);
    let a = Ledger::open(&l1).unwrap().row_counts();
    let b = Ledger::open(&l3).unwrap().row_counts();
    assert_eq!(a, b);
    let ids = |l: &Path| {
        let mut v: Vec<String> = Ledger::open(l)
            .unwrap()
            .scan(Table::EscrowEvents, None, Some(&["event_id"]))
            .unwrap()
            .iter()
            .flat_map(|b| strs(b, "event_id").into_iter().map(|s| s.unwrap()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&l1), ids(&l3));
}

#[test]
fn reingesting_the_same_files_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 80, 6, 3, &["--faults", "0.02"]);
    let ledger = tmp.path().join("ledger");
    let first = ingest_json(&ledger, &[&city], &[]);
    let before = data_files(&ledger);
    let rows_before = Ledger::open(&ledger).unwrap().row_counts();
    let quarantined = |l: &Path| {
        snapshot(l)
            .keys()
            .filter(|k| k.ends_with("quarantine.parquet"))
            .count()
    };
    assert_eq!(quarantined(&ledger), 1);
    let second = ingest_json(&ledger, &[&city], &[]);
    let (rows, accepted, rejected, dups) = counts(&second);
    let first_rejected = first["totals"]["rejected"].as_u64().unwrap();
    assert!(first_rejected > 0);
    // Every row is a recognised duplicate: accepted ones of the ledger's rows, rejected
    // ones of the quarantine's, which gets no second copy.
    assert_eq!((accepted, rejected), (0, 0));
    assert_eq!(dups, counts(&first).1 + counts(&first).3 + first_rejected);
    assert_eq!(
        second["totals"]["already_quarantined"].as_u64().unwrap(),
        first_rejected
    );
    assert_eq!(rows, counts(&first).0);
    assert!(second["quarantine"].is_null());
    assert_eq!(
        quarantined(&ledger),
        1,
        "a re-delivery adds no quarantine copy"
    );
    assert_eq!(data_files(&ledger), before, "no data file may change");
    assert_eq!(Ledger::open(&ledger).unwrap().row_counts(), rows_before);
}

/// Re-sends written by [`write_resends`]: as many exact copies as copies with another `ts`.
const RESENDS: u64 = 150;

/// Writes `RESENDS` rows of an escrow file again, spread over it, unchanged, and the same
/// rows with `ts` one second later (another content under the same `event_id`).
fn write_resends(from: &Path, to: &Path) {
    use arrow::array::{AsArray, UInt32Array};
    use arrow::datatypes::TimestampMillisecondType;
    let all = read_whole(from);
    let step = all.num_rows() / RESENDS as usize;
    let picks = UInt32Array::from_iter_values((0..RESENDS as u32).map(|i| i * step as u32));
    let same = arrow::compute::take_record_batch(&all, &picks).unwrap();
    let changed = with_column(&same, "ts", |c| {
        let ts = c.as_primitive::<TimestampMillisecondType>();
        let later = ts
            .unary::<_, TimestampMillisecondType>(|t| t + 1000)
            .with_timezone_opt(ts.timezone().map(|z| z.to_string()));
        std::sync::Arc::new(later)
    });
    write_batches(to, &[&same, &changed]);
}

/// `batch` with the column `name` replaced by `change` of it.
fn with_column(
    batch: &arrow::array::RecordBatch,
    name: &str,
    change: impl Fn(&arrow::array::ArrayRef) -> arrow::array::ArrayRef,
) -> arrow::array::RecordBatch {
    let at = batch.schema().index_of(name).unwrap();
    let mut cols = batch.columns().to_vec();
    cols[at] = change(&cols[at]);
    arrow::array::RecordBatch::try_new(batch.schema(), cols).unwrap()
}

/// Writes batches (of one schema) to a Parquet file.
fn write_batches(to: &Path, batches: &[&arrow::array::RecordBatch]) {
    let file = std::fs::File::create(to).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// The duplicate index's committed runs are exactly the run files on disk, and hold one key
/// per committed row of each table.
fn assert_index_accounts_for_every_row(ledger: &Path) {
    let now = Ledger::open(ledger).unwrap();
    let runs = &now.manifest().index;
    let listed: std::collections::BTreeSet<String> = runs.iter().map(|r| r.path.clone()).collect();
    let on_disk: std::collections::BTreeSet<String> = snapshot(ledger)
        .into_keys()
        .filter(|k| k.starts_with("index/"))
        .collect();
    assert_eq!(listed, on_disk, "index runs on disk are the committed ones");
    for (table, rows) in now.row_counts() {
        let keys: u64 = runs
            .iter()
            .filter(|r| r.table == table)
            .map(|r| r.keys)
            .sum();
        assert_eq!(keys, rows, "{table}: index keys = rows");
    }
}

#[test]
fn the_ledger_written_is_the_same_whatever_the_memory_limit_and_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 300, 6, 11, &["--faults", "0.02"]);
    // A second escrow file in the same delivery, read after the city's own: exact re-sends
    // and re-sends with another timestamp of rows from all over the first, so that most
    // are recognised against keys already spilled to runs.
    let resend = tmp.path().join("resend");
    std::fs::create_dir_all(&resend).unwrap();
    write_resends(
        &city.join("escrow_events.parquet"),
        &resend.join("escrow_events.parquet"),
    );
    let at = ["--ingested-at", "2024-07-01T00:00:00+08:00"];
    let roomy = tmp.path().join("roomy");
    let tight = tmp.path().join("tight");
    // One thread against three (workers preparing batches out of order, taken back in
    // order) as well as 2 GiB against 1 MiB.
    let mut args = at.to_vec();
    args.extend(["--threads", "1"]);
    let a = ingest_json(&roomy, &[&city, &resend], &args);
    let mut args = at.to_vec();
    args.extend(["--memory-limit-mib", "1", "--threads", "3"]);
    let b = ingest_json(&tight, &[&city, &resend], &args);
    assert_eq!(a["tables"], b["tables"], "the same verdict for every row");
    assert!(a["totals"]["duplicates"].as_u64().unwrap() > 0);
    assert!(
        a["totals"]["rejected_by_reason"]["conflicting_duplicate"].as_u64()
            == Some(RESENDS - a["totals"]["already_quarantined"].as_u64().unwrap()),
        "every changed re-send of an accepted row is a conflict (of a rejected one, \
         rejected again): {}",
        a["totals"]
    );
    assert!(a["totals"]["duplicates"].as_u64().unwrap() >= RESENDS);
    let tables_written = a["index"]["runs_written"].as_u64().unwrap();
    assert!(
        b["index"]["runs_written"].as_u64().unwrap() > tables_written + 8,
        "a 1 MiB limit must spill: {} vs {}",
        b["index"],
        a["index"]
    );
    assert!(
        b["index"]["runs_merged"].as_u64().unwrap() > 0,
        "{}",
        b["index"]
    );
    // Over the 1 MiB limit, each large table's repeated ids are found first and only those
    // are held: among them every re-sent one.
    assert_eq!(a["index"]["tables_prescanned"], 0, "{}", a["index"]);
    assert!(
        b["index"]["tables_prescanned"].as_u64().unwrap() >= 2,
        "{}",
        b["index"]
    );
    assert!(
        b["index"]["keys_may_repeat"].as_u64().unwrap() >= RESENDS,
        "{}",
        b["index"]
    );
    assert_eq!(
        file_bytes(&roomy)
            .into_iter()
            .filter(|(k, _)| k.starts_with("data/") || k.ends_with("quarantine.parquet"))
            .collect::<BTreeMap<_, _>>(),
        file_bytes(&tight)
            .into_iter()
            .filter(|(k, _)| k.starts_with("data/") || k.ends_with("quarantine.parquet"))
            .collect::<BTreeMap<_, _>>(),
        "data and quarantine files are byte-identical whatever the limit and threads"
    );
    assert_index_accounts_for_every_row(&roomy);
    assert_index_accounts_for_every_row(&tight);

    // A re-delivery reads the index's runs, not the ledger: every row a duplicate.
    let again = ingest_json(&tight, &[&city, &resend], &["--memory-limit-mib", "1"]);
    assert_eq!(again["totals"]["accepted"], 0);
    assert_eq!(again["index"]["rows_rebuilt"], 0);
    assert_eq!(again["totals"]["rows"], a["totals"]["rows"]);

    // A ledger written before the index existed (no runs in its manifest) gets one built
    // once, from its own rows, by the next batch: the same verdicts.
    let old = tmp.path().join("old");
    copy_dir(&roomy, &old);
    let manifest_path = old.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest.as_object_mut().unwrap().remove("index");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let rebuilt = ingest_json(&old, &[&city, &resend], &["--memory-limit-mib", "1"]);
    let rows: u64 = Ledger::open(&roomy).unwrap().row_counts().values().sum();
    assert_eq!(rebuilt["index"]["rows_rebuilt"], rows);
    assert_eq!(rebuilt["tables"], again["tables"]);
    assert_index_accounts_for_every_row(&old);
    let next = ingest_json(&old, &[&city], &[]);
    assert_eq!(next["index"]["rows_rebuilt"], 0, "built once");
}

#[test]
fn a_killed_ingest_leaves_the_ledger_as_before_or_as_after() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 500, 12, 5, &[]);
    // Baseline: a ledger that already holds one batch.
    let base = tmp.path().join("base");
    ingest_json(&base, &[&city.join("merchants.parquet")], &[]);
    let base_manifest = std::fs::read(base.join("manifest.json")).unwrap();
    // Reference: the same batch run to completion.
    let reference = tmp.path().join("reference");
    copy_dir(&base, &reference);
    ingest_json(&reference, &[&city], &[]);
    let complete = Ledger::open(&reference).unwrap().row_counts();
    let initial = Ledger::open(&base).unwrap().row_counts();

    let mut killed_midway = 0;
    // Ingestion announces each input file on stderr as it starts on it: the kill comes
    // after the k-th announcement (0: at once), an event, not a delay.
    let files = std::fs::read_dir(&city)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "parquet")
        })
        .count();
    for (i, k) in [0, 1, 2, 4, files / 2, files - 1, files]
        .into_iter()
        .enumerate()
    {
        let ledger = tmp.path().join(format!("k{i}"));
        copy_dir(&base, &ledger);
        // Every other run spills its duplicate index to runs on disk as it goes.
        let limit = if i % 2 == 1 { "1" } else { "2048" };
        let mut child = Command::new(bin())
            .args([
                "ingest",
                "--ledger",
                ledger.to_str().unwrap(),
                "--memory-limit-mib",
                limit,
                city.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut announced = BufReader::new(child.stderr.take().unwrap()).lines();
        for _ in 0..k {
            if announced.next().is_none() {
                break;
            }
        }
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL: no destructor, no cleanup
        child.wait().unwrap();
        let now = Ledger::open(&ledger).unwrap();
        let manifest = std::fs::read(ledger.join("manifest.json")).unwrap();
        if manifest == base_manifest {
            assert_eq!(
                now.row_counts(),
                initial,
                "kill after file {k}: ledger must be as before"
            );
            if !finished {
                killed_midway += 1;
            }
        } else {
            assert_eq!(
                now.row_counts(),
                complete,
                "kill after file {k}: ledger must be as after"
            );
        }
        // Every committed file is whole and readable.
        for t in Table::ALL {
            let rows: usize = now
                .scan(t, None, None)
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum();
            assert_eq!(rows as u64, now.row_counts()[t.name()]);
        }
        // The next ingest takes over the dead lock, removes the leftovers and completes.
        ingest_json(&ledger, &[&city], &[]);
        assert_eq!(Ledger::open(&ledger).unwrap().row_counts(), complete);
        let committed: usize = Ledger::open(&ledger).unwrap().manifest().files.len();
        let on_disk = snapshot(&ledger)
            .keys()
            .filter(|k| k.starts_with("data/"))
            .count();
        assert_eq!(on_disk, committed, "no orphan data files after recovery");
        assert_index_accounts_for_every_row(&ledger);
    }
    assert!(
        killed_midway >= 2,
        "the test must kill some ingests mid-batch (did {killed_midway})"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, bytes) in file_bytes(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

#[test]
fn malformed_files_are_refused_by_name_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 30, 3, 9, &["--format", "both"]);
    let ledger = tmp.path().join("ledger");
    ingest_json(&ledger, &[&city.join("merchants.parquet")], &[]);
    let before = snapshot(&ledger);
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();

    // A truncated Parquet file.
    let full = std::fs::read(city.join("escrow_events.parquet")).unwrap();
    let truncated = bad.join("escrow_events.parquet");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    // A CSV with a column the table does not have, one missing a required column.
    let extra = bad.join("wallet_flows.csv");
    std::fs::write(&extra, "event_id,merchant_id,ts,kind,amount,colour\ne1,M0000001,2023-08-01 10:00:00,SPOT_SALE,1.00,red\n").unwrap();
    let missing = bad.join("complaints-missing.csv");
    std::fs::write(
        &missing,
        "event_id,merchant_id,ts,channel\ne1,M0000001,2023-08-01 10:00:00,PLATFORM\n",
    )
    .unwrap();
    // A Parquet file whose money column is a binary float.
    let float_money = bad.join("loans.parquet");
    write_float_money(&float_money);
    // Non-UTF-8 text in a CSV.
    let latin1 = bad.join("complaints.csv");
    let mut bytes = b"event_id,merchant_id,ts,channel,category\ne1,M0000001,2023-08-01 10:00:00,PLATFORM,SERVICE\ne2,M0000001,2023-08-01 10:00:00,PLATFORM,".to_vec();
    bytes.extend_from_slice(&[0xC4, 0xFA, 0xBA, 0xC3]); // GBK, not UTF-8
    bytes.extend_from_slice(b"\n");
    std::fs::write(&latin1, bytes).unwrap();
    // A file named after no table, and an unsupported format.
    let unknown = bad.join("customers.csv");
    std::fs::write(&unknown, "a,b\n1,2\n").unwrap();
    let json = bad.join("escrow_events.json");
    std::fs::write(&json, "{}").unwrap();
    // An empty file.
    let empty = bad.join("operations.csv");
    std::fs::write(&empty, "").unwrap();

    let cases: [(&Path, &str); 8] = [
        (&truncated, "unreadable Parquet"),
        (&extra, "unknown column(s) colour"),
        (&missing, "missing required column(s) category"),
        (&float_money, "cannot hold"),
        (&latin1, "UTF-8"),
        (&unknown, "cannot tell which table"),
        (&json, "unsupported file type"),
        (&empty, "unreadable CSV"),
    ];
    for (path, problem) in cases {
        // Alone, and beside a good file: either way nothing is written.
        for inputs in [
            vec![path.to_path_buf()],
            vec![city.join("store_events.parquet"), path.to_path_buf()],
        ] {
            let mut args = vec![
                "ingest".to_string(),
                "--ledger".into(),
                ledger.display().to_string(),
            ];
            args.extend(inputs.iter().map(|p| p.display().to_string()));
            let out = Command::new(bin()).args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{} should be refused",
                path.display()
            );
            assert!(
                err.contains(path.file_name().unwrap().to_str().unwrap()),
                "error must name the file: {err}"
            );
            assert!(
                err.contains(problem),
                "error for {} should mention {problem:?}: {err}",
                path.display()
            );
            assert_eq!(
                snapshot(&ledger),
                before,
                "{} changed the ledger",
                path.display()
            );
        }
    }
}

fn write_float_money(path: &Path) {
    use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("merchant_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+08:00".into())),
            false,
        ),
        Field::new("loan_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("lender", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["l1"])),
            Arc::new(StringArray::from(vec!["M0000001"])),
            Arc::new(
                TimestampMillisecondArray::from(vec![1_690_000_000_000]).with_timezone("+08:00"),
            ),
            Arc::new(StringArray::from(vec!["L1"])),
            Arc::new(StringArray::from(vec!["REPAYMENT"])),
            Arc::new(StringArray::from(vec!["ICBC"])),
            Arc::new(Float64Array::from(vec![0.1 + 0.2])),
        ],
    )
    .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// One row per rejection reason, written by hand, so that each rule is exercised on
/// purpose and its reason code checked.
#[test]
fn every_rejection_reason_is_reported_for_the_right_row() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let header = "event_id,merchant_id,ts,uscc,name,legal_form,industry,district,registered_on,ecny_onboarded_on,custody_mode,freeze_ratio,owner_group_id";
    let merchants = [
        "m-ok,M1,2023-01-01 10:00:00,9144030071526726XG,甲,ENTERPRISE,FITNESS_ENTERTAINMENT,FUTIAN,2020-01-01,,ECNY_RATIO,0.4,",
        "m-other,M2,2023-01-01 10:00:00,914403001922038216,乙,ENTERPRISE,CATERING,NANSHAN,2020-01-01,,ECNY_RATIO,0.4,",
        "m-badcode,M3,2023-01-01 10:00:00,9144030071526726XA,丙,ENTERPRISE,CATERING,NANSHAN,2020-01-01,,ECNY_RATIO,0.4,",
        "m-ratio,M4,2023-01-01 10:00:00,914403001922038216,丁,ENTERPRISE,CATERING,NANSHAN,2020-01-01,,ECNY_RATIO,1.5,",
        "m-badid,M 5,2023-01-01 10:00:00,914403001922038216,戊,ENTERPRISE,CATERING,NANSHAN,2020-01-01,,ECNY_RATIO,0.4,",
        "m-date,M6,2023-01-01 10:00:00,914403001922038216,己,ENTERPRISE,CATERING,NANSHAN,2020-13-01,,ECNY_RATIO,0.4,",
        "m-noguarantee,M7,2023-01-01 10:00:00,914403001922038216,庚,ENTERPRISE,CATERING,NANSHAN,2020-01-01,,RISK_RESERVE,0,",
    ];
    std::fs::write(
        src.join("merchants.csv"),
        format!("{header}\n{}\n", merchants.join("\n")),
    )
    .unwrap();
    std::fs::write(
        src.join("products.csv"),
        "event_id,merchant_id,ts,product_id,kind,list_price,units,validity_days,release_mode,freeze_ratio,expiry_disposition\n\
         p-ok,M1,2023-01-02 10:00:00,P1,TIME_CARD,2400.00,12,365,PER_MONTH,0.4,REFUND_TO_CONSUMER\n\
         p-zero,M1,2023-01-02 10:00:00,P0,TIME_CARD,2400.00,0,365,PER_MONTH,0.4,REFUND_TO_CONSUMER\n",
    )
    .unwrap();
    std::fs::write(
        src.join("contracts.csv"),
        "event_id,merchant_id,ts,contract_id,product_id,consumer_id,paid_amount,discount,units_total,expires_on\n\
         c-ok,M1,2023-02-01 10:00:00,C1,P1,U1,2400.00,0,12,2024-01-31\n\
         c-noproduct,M1,2023-02-01 10:00:00,C2,P9,U2,2400.00,0,12,2024-01-31\n\
         c-expired,M1,2023-02-01 10:00:00,C3,P1,U3,2400.00,0,12,2023-01-01\n\
         c-wrongowner,M2,2023-02-01 10:00:00,C4,P1,U4,2400.00,0,12,2024-01-31\n\
         c-reuse-consumer,M1,2023-03-01 10:00:00,C1,P1,U9,2400.00,0,12,2024-02-29\n\
         c-reuse-overlap,M1,2023-06-01 10:00:00,C1,P1,U1,2400.00,0,12,2024-05-31\n",
    )
    .unwrap();
    std::fs::write(
        src.join("wallet_flows.csv"),
        "event_id,merchant_id,ts,kind,amount,channel\n\
         w-ok,M1,2023-02-02 22:00:00,SPOT_SALE,4999999.99,ECNY\n\
         w-huge,M1,2023-02-03 22:00:00,SPOT_SALE,9999999999999999.99,ECNY\n",
    )
    .unwrap();
    std::fs::write(
        src.join("escrow_events.csv"),
        "event_id,merchant_id,ts,contract_id,kind,amount,frozen_amount,units,code\n\
         e-ok,M1,2023-02-01 10:01:00,C1,PREPAYMENT,2400.00,960.00,,ECNY_YGJ\n\
         e-dup,M1,2023-02-01 10:01:00,C1,PREPAYMENT,2400.00,960.00,,ECNY_YGJ\n\
         e-dup,M1,2023-02-01 10:01:00,C1,PREPAYMENT,2400.00,960.00,,ECNY_YGJ\n\
         e-conflict,M1,2023-02-28 21:00:00,C1,REDEMPTION,200.00,,1,\n\
         e-conflict,M1,2023-02-28 21:00:00,C1,REDEMPTION,300.00,,1,\n\
         e-type,M1,2023-02-28 21:00:00,C1,REDEMPTION,abc,,1,\n\
         e-neg,M1,2023-02-28 21:00:00,C1,RELEASE,-80.00,,,PER_MONTH\n\
         e-prec,M1,2023-02-28 21:00:00,C1,RELEASE,80.001,,,PER_MONTH\n\
         e-kind,M1,2023-02-28 21:00:00,C1,REFUND,80.00,,,\n\
         e-code,M1,2023-02-28 21:00:00,C1,RELEASE,80.00,,,WHENEVER\n\
         e-nocode,M1,2023-02-28 21:00:00,C1,RELEASE,80.00,,,\n\
         e-frozen,M1,2023-02-01 10:01:00,C1,PREPAYMENT,100.00,960.00,,ECNY_YGJ\n\
         e-future,M1,2099-02-28 21:00:00,C1,RELEASE,80.00,,,PER_MONTH\n\
         e-ancient,M1,1999-12-31 23:59:59,C1,RELEASE,80.00,,,PER_MONTH\n\
         e-nocontract,M1,2023-02-28 21:00:00,C9,RELEASE,80.00,,,PER_MONTH\n\
         e-nomerchant,M9,2023-02-28 21:00:00,C1,RELEASE,80.00,,,PER_MONTH\n\
         e-missing,M1,,C1,RELEASE,80.00,,,PER_MONTH\n\
         e-badts,M1,28/02/2023,C1,RELEASE,80.00,,,PER_MONTH\n\
         e-units,M1,2023-02-28 21:00:00,C1,REDEMPTION,80.00,,,\n",
    )
    .unwrap();
    std::fs::write(
        src.join("operations.csv"),
        "event_id,merchant_id,ts,kind,period,amount,on_time\n\
         o-rent,M1,2023-02-05 11:00:00,RENT,2023-02-01,18000.00,true\n\
         o-rent-late,M1,2023-03-20 11:00:00,RENT,2023-03-01,18000.00,\n",
    )
    .unwrap();
    std::fs::write(
        src.join("bureau_records.csv"),
        "event_id,merchant_id,ts,kind,institution_type,amount,purpose\n\
         b-ok,M1,2023-02-10 10:00:00,INQUIRY,MICROLENDER,50000.00,LOAN_APPLICATION\n\
         b-nopurpose,M1,2023-02-11 10:00:00,INQUIRY,BANK,,\n\
         b-nobalance,M1,2023-02-28 23:00:00,DEBT_BALANCE,LEASING,,\n",
    )
    .unwrap();
    let ledger = tmp.path().join("ledger");
    let r = ingest_json(
        &ledger,
        &[&src],
        &["--ingested-at", "2024-01-01T00:00:00+08:00"],
    );
    let q = read_parquet(&ledger.join(r["quarantine"].as_str().unwrap()));
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    let mut details: BTreeMap<String, String> = BTreeMap::new();
    for b in &q {
        let rows = strs(b, "row_json");
        let reasons = strs(b, "reason");
        let detail = strs(b, "detail");
        for i in 0..b.num_rows() {
            let row: Value = serde_json::from_str(rows[i].as_deref().unwrap()).unwrap();
            let id = row["event_id"].as_str().unwrap().to_string();
            got.insert(id.clone(), reasons[i].clone().unwrap());
            details.insert(id, detail[i].clone().unwrap());
        }
    }
    assert!(
        details["e-kind"].contains("\"REFUND\" is not a valid escrow event kind code"),
        "{}",
        details["e-kind"]
    );
    assert!(
        details["c-reuse-consumer"].contains("contract id C1 is already used for another consumer")
    );
    assert!(details["c-reuse-overlap"].contains("period overlaps"));
    assert_eq!(
        details["m-noguarantee"],
        "required for custody mode RISK_RESERVE"
    );
    assert_eq!(details["o-rent-late"], "required for kind RENT");
    let expected: BTreeMap<String, String> = [
        ("m-badcode", "invalid_credit_code"),
        ("m-ratio", "out_of_range"),
        ("m-badid", "invalid_id"),
        ("m-date", "type_error"),
        ("m-noguarantee", "missing_field"),
        ("o-rent-late", "missing_field"),
        ("b-nopurpose", "missing_field"),
        ("b-nobalance", "missing_field"),
        ("p-zero", "out_of_range"),
        ("c-noproduct", "unknown_product"),
        ("c-expired", "inconsistent"),
        ("c-wrongowner", "inconsistent"),
        ("c-reuse-consumer", "inconsistent"),
        ("c-reuse-overlap", "inconsistent"),
        ("w-huge", "implausible_value"),
        ("e-conflict", "conflicting_duplicate"),
        ("e-type", "type_error"),
        ("e-neg", "negative_amount"),
        ("e-prec", "amount_precision"),
        ("e-kind", "unknown_code"),
        ("e-code", "unknown_code"),
        ("e-nocode", "missing_field"),
        ("e-frozen", "inconsistent"),
        ("e-future", "timestamp_out_of_range"),
        ("e-ancient", "timestamp_out_of_range"),
        ("e-nocontract", "unknown_contract"),
        ("e-nomerchant", "unknown_merchant"),
        ("e-missing", "missing_field"),
        ("e-badts", "type_error"),
        ("e-units", "missing_field"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, expected);
    let (rows, accepted, rejected, dups) = counts(&r);
    assert_eq!((rows, rejected, dups), (41, 30, 1));
    assert_eq!(
        accepted, 10,
        "m-ok, m-other, p-ok, c-ok, e-ok, e-dup, the first e-conflict, w-ok, o-rent, b-ok"
    );
    // Accepted money is exact: the redemption is 200.00, not a float.
    let l = Ledger::open(&ledger).unwrap();
    let esc = l.scan(Table::EscrowEvents, None, None).unwrap();
    let amounts: Vec<i128> = esc
        .iter()
        .flat_map(|b| fen(b, "amount"))
        .map(|v| v.unwrap())
        .collect();
    assert!(amounts.contains(&20_000) && amounts.contains(&240_000));
}

#[test]
fn knowledge_time_separates_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 40, 4, 21, &["--faults", "0.05"]);
    let ledger = tmp.path().join("ledger");
    ingest_json(
        &ledger,
        &[&city],
        &["--ingested-at", "2024-01-01T09:00:00+08:00"],
    );
    ingest_json(
        &ledger,
        &[&city.join("_late")],
        &["--ingested-at", "2024-03-01T09:00:00+08:00"],
    );
    let l = Ledger::open(&ledger).unwrap();
    let t1 = chrono::DateTime::parse_from_rfc3339("2024-02-01T00:00:00+08:00")
        .unwrap()
        .timestamp_millis();
    let before: usize = l
        .scan(Table::EscrowEvents, Some(t1), None)
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    let after: usize = l
        .scan(Table::EscrowEvents, None, None)
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert!(
        after > before,
        "late rows are known only from the second batch"
    );
    // Every row carries its batch and knowledge time.
    for b in l.scan(Table::EscrowEvents, None, None).unwrap() {
        let batch = strs(&b, "_batch");
        let known = ts(&b, "_ingested_at");
        for i in 0..b.num_rows() {
            let expect = if batch[i].as_deref() == Some("b000001") {
                "2024-01-01T09:00:00+08:00"
            } else {
                "2024-03-01T09:00:00+08:00"
            };
            let k = chrono::DateTime::parse_from_rfc3339(expect)
                .unwrap()
                .timestamp_millis();
            assert_eq!(known[i], Some(k));
        }
    }
    // Events dated after the knowledge time (plus a day of clock skew) are refused.
    let early = tmp.path().join("early");
    let r = ingest_json(
        &early,
        &[&city],
        &["--ingested-at", "2023-08-01T00:00:00+08:00"],
    );
    assert!(
        r["totals"]["rejected_by_reason"]["timestamp_out_of_range"]
            .as_u64()
            .unwrap()
            > 0
    );
}

/// A source whose clock runs ahead: rows up to the allowed skew past the knowledge time
/// (one hour unless set) are accepted, later ones rejected; the setting has a range.
#[test]
fn rows_from_the_future_are_refused_beyond_the_allowed_clock_skew() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("merchants.csv"),
        "event_id,merchant_id,ts,uscc,name,legal_form,industry,district,registered_on,ecny_onboarded_on,custody_mode,freeze_ratio,owner_group_id\n\
         m-early,M1,2023-01-01 07:00:00,9144030071526726XG,甲,ENTERPRISE,CATERING,FUTIAN,2020-01-01,,ECNY_RATIO,0.4,\n\
         m-late,M2,2023-01-01 10:00:00,914403001922038216,乙,ENTERPRISE,CATERING,NANSHAN,2020-01-01,,ECNY_RATIO,0.4,\n",
    )
    .unwrap();
    let at = ["--ingested-at", "2023-01-01T06:30:00+08:00"];
    // 30 minutes ahead passes, 3.5 hours ahead does not.
    let r = ingest_json(&tmp.path().join("l1"), &[&src], &at);
    assert_eq!(counts(&r), (2, 1, 1, 0), "{r}");
    // Four hours allowed: both pass.
    let four = [at[0], at[1], "--max-clock-skew-minutes", "240"];
    let r = ingest_json(&tmp.path().join("l2"), &[&src], &four);
    assert_eq!(counts(&r), (2, 2, 0, 0), "{r}");
    // Beyond a week is refused before anything is read.
    let out = run(&[
        "ingest",
        "--ledger",
        tmp.path().join("l3").to_str().unwrap(),
        "--max-clock-skew-minutes",
        "10081",
        src.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(!tmp.path().join("l3").join("manifest.json").exists());
}

/// DuckDB's reading of a ledger: the files the manifest (the commit record) lists, read
/// with their Hive-style partition (`data/<table>/month=<YYYY-MM|all>/<batch>-<n>.parquet`);
/// each table's rows by batch and month. Also what a plain glob over the folders would
/// count, which includes files no batch committed.
const DUCKDB_COUNTS: &str = r#"
import duckdb, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
manifest = json.loads((root / "manifest.json").read_text())
out, globbed = {}, {}
for table in sorted({f["table"] for f in manifest["files"]}):
    files = [str(root / f["path"]) for f in manifest["files"] if f["table"] == table]
    rows = duckdb.execute(
        "SELECT _batch, month, count(*) FROM read_parquet(?, hive_partitioning = true) "
        "GROUP BY ALL ORDER BY ALL",
        [files],
    ).fetchall()
    for batch, month, n in rows:
        out.setdefault(table, {}).setdefault(batch, {})[month] = n
    glob = str(root / "data" / table / "month=*" / "*.parquet")
    globbed[table] = duckdb.execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchone()[0]
print(json.dumps({"rows": out, "globbed": globbed}))
"#;

#[test]
fn another_engine_reads_the_committed_ledger_from_its_files() {
    let python = std::env::var_os("YUANXIN_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/py-venv/bin/python"),
        PathBuf::from,
    );
    assert!(
        python.exists(),
        "no Python with DuckDB at {} (scripts/test makes target/py-venv)",
        python.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 40, 6, 31, &["--faults", "0.05"]);
    let ledger = tmp.path().join("ledger");
    ingest_json(&ledger, &[&city], &[]);
    ingest_json(&ledger, &[&city.join("_late")], &[]);
    // A file no batch committed (as a killed ingestion can leave behind) is not part of
    // the ledger: readers take the manifest's list, not the folder's.
    let part = std::fs::read_dir(ledger.join("data/escrow_events"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .min()
        .unwrap();
    let committed = parquet_files(&part)[0].clone();
    let stray_rows = read_parquet(&committed)
        .iter()
        .map(|b| b.num_rows() as u64)
        .sum::<u64>();
    std::fs::copy(&committed, part.join("b000003-0001.parquet")).unwrap();

    let ours: Value = serde_json::from_str(&run_ok(&[
        "ledger",
        "--ledger",
        ledger.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(ours["batches"].as_array().unwrap().len(), 2);
    let out = Command::new(&python)
        .args(["-c", DUCKDB_COUNTS, ledger.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs["rows"], ours["rows"]);
    // Both batches are there, the first over several months.
    let escrow = ours["rows"]["escrow_events"].as_object().unwrap();
    assert_eq!(escrow.len(), 2, "{escrow:?}");
    assert!(escrow["b000001"].as_object().unwrap().len() > 1);
    // A glob over the folders would have counted the stray file too.
    let committed_escrow: u64 = escrow
        .values()
        .flat_map(|m| m.as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        theirs["globbed"]["escrow_events"].as_u64().unwrap(),
        committed_escrow + stray_rows
    );
}

/// Writes every `step`-th row of a source file again under a new `event_id`: new rows of
/// old merchants and contracts, as a later delivery brings.
fn write_new_rows(from: &Path, to: &Path, step: usize) {
    use arrow::array::{AsArray, StringArray, UInt32Array};
    let all = read_whole(from);
    let picks = UInt32Array::from_iter_values((0..all.num_rows() as u32).step_by(step));
    let some = arrow::compute::take_record_batch(&all, &picks).unwrap();
    let again = with_column(&some, "event_id", |c| {
        let ids: StringArray = c
            .as_string::<i32>()
            .iter()
            .map(|id| id.map(|id| format!("{id}-again")))
            .collect();
        std::sync::Arc::new(ids)
    });
    write_batches(to, &[&again]);
}

/// The profile columns of a file (its metadata, which names the ledger's state, aside).
fn profile_columns(path: &Path) -> Vec<arrow::array::ArrayRef> {
    read_whole(path).columns().to_vec()
}

#[test]
fn compaction_changes_no_answer_whatever_the_knowledge_time() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 120, 8, 21, &["--faults", "0.02"]);
    let more = tmp.path().join("more");
    std::fs::create_dir_all(&more).unwrap();
    write_new_rows(
        &city.join("escrow_events.parquet"),
        &more.join("escrow_events.parquet"),
        7,
    );
    write_new_rows(
        &city.join("wallet_flows.parquet"),
        &more.join("wallet_flows.parquet"),
        5,
    );
    // Three batches, each adding files to the same month partitions.
    let ledger = tmp.path().join("ledger");
    let l = ledger.to_str().unwrap();
    for (input, at) in [
        (city.clone(), "2024-03-02T00:00:00+08:00"),
        (city.join("_late"), "2024-03-05T00:00:00+08:00"),
        (more.clone(), "2024-03-09T00:00:00+08:00"),
    ] {
        let r = ingest_json(&ledger, &[&input], &["--ingested-at", at]);
        assert!(r["totals"]["accepted"].as_u64().unwrap() > 0, "{input:?}");
    }
    let knowledge = [
        Some("2024-03-03T00:00:00+08:00"),
        Some("2024-03-06T00:00:00+08:00"),
        None,
    ];
    let profiles = |tag: &str| -> Vec<Vec<arrow::array::ArrayRef>> {
        knowledge
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let out = tmp.path().join(format!("{tag}-{i}.parquet"));
                let o = out.to_str().unwrap();
                let mut args = vec![
                    "profile",
                    "--ledger",
                    l,
                    "--as-of",
                    "2024-02-29",
                    "--out",
                    o,
                ];
                if let Some(k) = k {
                    args.extend(["--known-at", k]);
                }
                run_ok(&args);
                profile_columns(&out)
            })
            .collect()
    };
    let before = profiles("before");
    assert_ne!(
        before[0], before[2],
        "later batches must change the profiles"
    );
    let listing = || -> Value {
        serde_json::from_str(&run_ok(&["ledger", "--ledger", l, "--json"])).unwrap()
    };
    let listed = listing();
    let pristine = tmp.path().join("pristine");
    copy_dir(&ledger, &pristine);
    let files_before = Ledger::open(&ledger).unwrap().manifest().files.len();

    let report: Value =
        serde_json::from_str(&run_ok(&["ledger", "compact", "--ledger", l, "--json"])).unwrap();
    assert!(report["partitions"].as_u64().unwrap() > 3, "{report}");
    assert!(
        report["files_after"].as_u64() < report["files_before"].as_u64(),
        "{report}"
    );
    let now = Ledger::open(&ledger).unwrap();
    assert!(now.manifest().files.len() < files_before);
    assert_eq!(
        now.manifest().retired.len() as u64,
        report["retired_kept"].as_u64().unwrap()
    );
    // Every answer as before: the rows by table, batch and month, and the profiles as
    // known before the second batch, before the third, and now.
    assert_eq!(listing(), listed);
    assert_eq!(profiles("after"), before);
    // A compacted file's rows are sorted by merchant, each merchant's in ledger order.
    let compacted = now
        .manifest()
        .files
        .iter()
        .find(|f| !f.batches.is_empty())
        .unwrap();
    assert!(compacted.batches.len() > 1, "{compacted:?}");
    // Nothing left to do, and a second run keeps the replaced files for their hour.
    let again: Value =
        serde_json::from_str(&run_ok(&["ledger", "compact", "--ledger", l, "--json"])).unwrap();
    assert!(again["compaction"].is_null(), "{again}");
    assert_eq!(again["retired_removed"], 0);
    // With no retention they go.
    let gone: Value = serde_json::from_str(&run_ok(&[
        "ledger",
        "compact",
        "--ledger",
        l,
        "--retain-minutes",
        "0",
        "--json",
    ]))
    .unwrap();
    assert_eq!(gone["retired_removed"], report["retired_kept"], "{gone}");
    assert!(Ledger::open(&ledger).unwrap().manifest().retired.is_empty());
    let on_disk = data_files(&ledger).len();
    assert_eq!(
        on_disk,
        Ledger::open(&ledger).unwrap().manifest().files.len()
    );
    assert_eq!(profiles("swept"), before);

    // Killed at any point, a compaction leaves the ledger as before or as after, and the
    // next one finishes it.
    let base_manifest = std::fs::read(pristine.join("manifest.json")).unwrap();
    let mut midway = 0;
    // The compaction announces each partition on stderr before merging it: the kill comes
    // after the k-th announcement (0: at once), an event, not a delay.
    let parts = report["partitions"].as_u64().unwrap() as usize;
    for (i, k) in [0, 1, 2, 3, parts / 2, parts - 1, parts]
        .into_iter()
        .enumerate()
    {
        let copy = tmp.path().join(format!("k{i}"));
        copy_dir(&pristine, &copy);
        let c = copy.to_str().unwrap();
        let mut child = Command::new(bin())
            .args([
                "ledger",
                "compact",
                "--ledger",
                c,
                "--memory-limit-mib",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut announced = BufReader::new(child.stderr.take().unwrap()).lines();
        for _ in 0..k {
            if announced.next().is_none() {
                break;
            }
        }
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok();
        child.wait().unwrap();
        let state = Ledger::open(&copy).unwrap();
        if std::fs::read(copy.join("manifest.json")).unwrap() == base_manifest && !finished {
            midway += 1;
        }
        let v: Value = serde_json::from_str(&run_ok(&["ledger", "--ledger", c, "--json"])).unwrap();
        assert_eq!(v, listed, "kill after partition {k}");
        for t in Table::ALL {
            let rows: usize = state
                .scan(t, None, None)
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum();
            assert_eq!(
                rows as u64,
                state.row_counts()[t.name()],
                "kill after partition {k}"
            );
        }
        run_ok(&["ledger", "compact", "--ledger", c, "--retain-minutes", "0"]);
        let done = Ledger::open(&copy).unwrap();
        assert_eq!(
            data_files(&copy).len(),
            done.manifest().files.len(),
            "no orphans"
        );
        assert_eq!(done.row_counts(), now.row_counts());
    }
    assert!(midway >= 1, "some compactions must be killed midway");
}
