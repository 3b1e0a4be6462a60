//! End-to-end tests of `yuanxin profile`: point in time, knowledge time, an independent
//! recomputation of characteristics from the source files, labels against the truth.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int8Type};
use common::*;

const ASOF: &str = "2024-09-30";
/// Last millisecond of 2024-09-30 in Asia/Shanghai.
const ASOF_END_MS: i64 = 1_727_711_999_999;

fn profile(ledger: &Path, out: &Path, extra: &[&str]) -> Vec<RecordBatch> {
    let mut args = vec![
        "profile",
        "--ledger",
        ledger.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
    read_parquet(out)
}

/// Ingests a simulated city into a new ledger; returns the ledger's path.
fn ingest(city: &Path, ledger: &Path) -> std::path::PathBuf {
    run_ok(&[
        "ingest",
        "--ledger",
        ledger.to_str().unwrap(),
        city.to_str().unwrap(),
    ]);
    ledger.to_path_buf()
}

/// merchant → (feature columns as bits or None, missing reasons).
fn rows(batches: &[RecordBatch]) -> BTreeMap<String, (Vec<Option<u64>>, String)> {
    let mut out = BTreeMap::new();
    for b in batches {
        let ids = strs(b, "merchant_id");
        let missing = strs(b, "missing_reasons");
        let feats: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.data_type() == &arrow::datatypes::DataType::Float64)
            .map(|(i, _)| b.column(i).as_primitive::<Float64Type>().clone())
            .collect();
        for i in 0..b.num_rows() {
            let v = feats
                .iter()
                .map(|c| (!c.is_null(i)).then(|| c.value(i).to_bits()))
                .collect();
            out.insert(ids[i].clone().unwrap(), (v, missing[i].clone().unwrap()));
        }
    }
    out
}

/// Copies a simulated city keeping only rows dated up to `end_ms`.
fn truncate(from: &Path, to: &Path, end_ms: i64) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "parquet") {
            continue;
        }
        let batches = read_parquet(&p);
        let schema = batches[0].schema();
        let f = std::fs::File::create(to.join(p.file_name().unwrap())).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
        for b in batches {
            let t = ts(&b, "ts");
            let keep: BooleanArray = t.iter().map(|v| Some(v.unwrap() <= end_ms)).collect();
            w.write(&arrow::compute::filter_record_batch(&b, &keep).unwrap())
                .unwrap();
        }
        w.close().unwrap();
    }
}

#[test]
fn a_snapshot_never_sees_the_future() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 300, 24, 17, &[]);
    let past = tmp.path().join("past");
    truncate(&city, &past, ASOF_END_MS);
    let full_l = ingest(&city, &tmp.path().join("full"));
    let past_l = ingest(&past, &tmp.path().join("past-ledger"));
    let a = rows(&profile(
        &full_l,
        &tmp.path().join("a.parquet"),
        &["--as-of", ASOF],
    ));
    let b = rows(&profile(
        &past_l,
        &tmp.path().join("b.parquet"),
        &["--as-of", ASOF],
    ));
    assert!(a.len() > 250);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (m, row) in &a {
        assert_eq!(
            row, &b[m],
            "merchant {m}: the full ledger's snapshot differs from the truncated one's"
        );
    }
}

/// The merchants table is a dated history: a record issued after the as-of date (here a
/// move to another district with another industry and custody) changes nothing in a
/// profile as of that date, and is what later profiles read.
#[test]
fn a_later_merchant_record_never_changes_an_earlier_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 60, 18, 5, &[]);
    let ledger = ingest(&city, &tmp.path().join("ledger"));
    let before = profile(&ledger, &tmp.path().join("a.parquet"), &["--as-of", ASOF]);
    // M0000001's registration record, re-issued on 2026-01-15 with everything changed.
    let m = read_parquet(&city.join("merchants.parquet"));
    let (ids, usccs) = (strs(&m[0], "merchant_id"), strs(&m[0], "uscc"));
    let k = ids
        .iter()
        .position(|i| i.as_deref() == Some("M0000001"))
        .unwrap();
    let uscc = usccs[k].clone().unwrap();
    let old_district = strs(&m[0], "district")[k].clone().unwrap();
    let district = if old_district == "DAPENG" {
        "YANTIAN"
    } else {
        "DAPENG"
    };
    let delivery = tmp.path().join("change");
    std::fs::create_dir_all(&delivery).unwrap();
    std::fs::write(
        delivery.join("merchants.csv"),
        format!(
            "event_id,merchant_id,ts,uscc,name,legal_form,industry,district,registered_on,ecny_onboarded_on,custody_mode,freeze_ratio,owner_group_id\n\
             moved-1,M0000001,2026-01-15 10:00:00,{uscc},新名,ENTERPRISE,CAR_WASH,{district},2025-12-20,2026-01-10,ECNY_FULL,1.0,G-NEW\n"
        ),
    )
    .unwrap();
    run_ok(&[
        "ingest",
        "--ledger",
        ledger.to_str().unwrap(),
        delivery.to_str().unwrap(),
    ]);
    let after = profile(&ledger, &tmp.path().join("b.parquet"), &["--as-of", ASOF]);
    assert_eq!(
        rows(&before),
        rows(&after),
        "a later record changed a profile"
    );
    for col in ["industry", "district"] {
        let a: Vec<_> = before.iter().flat_map(|b| strs(b, col)).collect();
        let b: Vec<_> = after.iter().flat_map(|b| strs(b, col)).collect();
        assert_eq!(a, b, "{col}");
    }
    // From its date on, the new record is the merchant's.
    let later = profile(
        &ledger,
        &tmp.path().join("c.parquet"),
        &["--as-of", "2026-01-31"],
    );
    let b = &later[0];
    let i = strs(b, "merchant_id")
        .iter()
        .position(|i| i.as_deref() == Some("M0000001"))
        .unwrap();
    assert_eq!(strs(b, "district")[i].as_deref(), Some(district));
    assert_eq!(strs(b, "industry")[i].as_deref(), Some("CAR_WASH"));
    let freeze = b
        .column_by_name("freeze_ratio")
        .unwrap()
        .as_primitive::<Float64Type>()
        .value(i);
    assert_eq!(freeze, 1.0);
}

/// In an export's first year, a year-long window of a merchant that existed before the
/// export began is cut short by the data: the row names it in `truncated_windows`. A
/// merchant registered during the export is not flagged: its window covers its whole life.
#[test]
fn windows_cut_short_by_the_start_of_the_data_are_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 120, 12, 9, &[]);
    let ledger = ingest(&city, &tmp.path().join("ledger"));
    let out = profile(
        &ledger,
        &tmp.path().join("p.parquet"),
        &["--as-of", "2024-03-31"],
    );
    // First registration record of each merchant (days since the epoch).
    let mut registered: HashMap<String, i32> = HashMap::new();
    for b in read_parquet(&city.join("merchants.parquet")) {
        let (ids, reg) = (strs(&b, "merchant_id"), dates(&b, "registered_on"));
        for i in 0..b.num_rows() {
            registered
                .entry(ids[i].clone().unwrap())
                .or_insert(reg[i].unwrap());
        }
    }
    let start = 19_539; // 2023-07-01, the export's first day
    let (mut old, mut new) = (0, 0);
    for b in &out {
        let (ids, cut, rev) = (
            strs(b, "merchant_id"),
            strs(b, "truncated_windows"),
            col(b, "rev_total_365d"),
        );
        for i in 0..b.num_rows() {
            let id = ids[i].as_deref().unwrap();
            let reg = registered[id];
            let names: Vec<&str> = cut[i].as_deref().map_or(vec![], |c| c.split(';').collect());
            if reg < start - 60 && rev[i].is_some_and(|r| r > 0.0) {
                assert!(names.contains(&"rev_total_365d"), "{id}: {names:?}");
                assert!(
                    !names.contains(&"rev_total_30d"),
                    "{id}: a 30-day window is whole"
                );
                old += 1;
            }
            if reg > start + 31 {
                assert!(
                    names.is_empty(),
                    "{id} registered during the export: {names:?}"
                );
                new += 1;
            }
        }
    }
    assert!(old > 50 && new > 5, "{old} incumbents, {new} entrants");
}

#[test]
fn knowledge_time_reproduces_what_was_known() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 150, 18, 23, &["--faults", "0.05"]);
    let both = tmp.path().join("both");
    let first = tmp.path().join("first");
    for (ledger, late) in [(&both, true), (&first, false)] {
        let l = ledger.to_str().unwrap();
        run_ok(&[
            "ingest",
            "--ledger",
            l,
            "--ingested-at",
            "2025-01-01T00:00:00+08:00",
            city.to_str().unwrap(),
        ]);
        if late {
            run_ok(&[
                "ingest",
                "--ledger",
                l,
                "--ingested-at",
                "2025-02-01T00:00:00+08:00",
                city.join("_late").to_str().unwrap(),
            ]);
        }
    }
    let asof = ["--as-of", "2024-12-31"];
    let then = rows(&profile(
        &both,
        &tmp.path().join("t.parquet"),
        &[&asof[..], &["--known-at", "2025-01-15T00:00:00+08:00"]].concat(),
    ));
    let only_first = rows(&profile(&first, &tmp.path().join("f.parquet"), &asof));
    let now = rows(&profile(&both, &tmp.path().join("n.parquet"), &asof));
    assert_eq!(
        then, only_first,
        "--known-at must see exactly the first batch"
    );
    assert_ne!(now, only_first, "the late delivery changes some snapshots");
}

fn col(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let a = b
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Float64Type>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

/// A few characteristics recomputed row by row from the source files, by a path that
/// shares no code with the engine.
#[test]
fn characteristics_match_a_naive_recomputation() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 200, 20, 29, &[]);
    let ledger = ingest(&city, &tmp.path().join("ledger"));
    let out = profile(&ledger, &tmp.path().join("p.parquet"), &["--as-of", ASOF]);
    let d = day_of_ms(ASOF_END_MS);
    let within = |ms: i64, n: i32| {
        let day = day_of_ms(ms);
        day > d - n && day <= d
    };
    #[derive(Default)]
    struct Naive {
        rev90: i128,
        liability: i128,
        frozen: i128,
        complaints90: f64,
        payroll: (f64, f64),
        last_sale: Option<i32>,
        withdrawals30: f64,
        /// Stores open now, and the last closure.
        stores: HashMap<String, bool>,
        last_closure: Option<i32>,
        /// Refund requests of the last 180 days by contract: asked, settled (fen).
        refunds: HashMap<String, (i128, i128)>,
        /// Revenue of the same 90 days a year (360 days) earlier.
        rev_year_before: i128,
        /// Drawn on a risk reserve or bond by the as-of date.
        guarantee_drawn: i128,
        /// Prepaid by consumer, contracts of the last 365 days.
        by_consumer: HashMap<String, i128>,
        /// Rent records of the last 180 days: paid on time, all.
        rent: (f64, f64),
        /// Latest payroll and rent amounts within 45 days: (ts, fen).
        payroll_last: Option<(i64, i128)>,
        rent_last: Option<(i64, i128)>,
        /// Wallet flows up to the as-of date: (day, fen in or out).
        wallet: Vec<(i32, i128)>,
        inquiries90: f64,
        enforced730: i128,
    }
    let year_before = |ms: i64| {
        let day = day_of_ms(ms);
        day > d - 450 && day <= d - 360
    };
    let mut n: HashMap<String, Naive> = HashMap::new();
    for b in read_parquet(&city.join("wallet_flows.parquet")) {
        let (m, t, k, a) = (
            strs(&b, "merchant_id"),
            ts(&b, "ts"),
            strs(&b, "kind"),
            fen(&b, "amount"),
        );
        for i in 0..b.num_rows() {
            let e = n.entry(m[i].clone().unwrap()).or_default();
            let t = t[i].unwrap();
            if t > ASOF_END_MS {
                continue;
            }
            let day = day_of_ms(t);
            e.wallet.push(if k[i].as_deref() == Some("SPOT_SALE") {
                (day, a[i].unwrap())
            } else {
                (day, -a[i].unwrap())
            });
            if k[i].as_deref() == Some("SPOT_SALE") {
                if within(t, 90) {
                    e.rev90 += a[i].unwrap();
                }
                if year_before(t) {
                    e.rev_year_before += a[i].unwrap();
                }
                e.last_sale = e.last_sale.max(Some(day_of_ms(t)));
            } else if within(t, 30) {
                e.withdrawals30 += 1.0;
            }
        }
    }
    for b in read_parquet(&city.join("escrow_events.parquet")) {
        let (m, t, k, a, f, c, contract) = (
            strs(&b, "merchant_id"),
            ts(&b, "ts"),
            strs(&b, "kind"),
            fen(&b, "amount"),
            fen(&b, "frozen_amount"),
            strs(&b, "code"),
            strs(&b, "contract_id"),
        );
        // Requests before settlements: the file is in the order things happened within a
        // contract, which is all the backlog needs.
        for i in 0..b.num_rows() {
            let t = t[i].unwrap();
            if t > ASOF_END_MS {
                continue;
            }
            let e = n.entry(m[i].clone().unwrap()).or_default();
            let a = a[i].unwrap();
            let cid = contract[i].clone().unwrap();
            match k[i].as_deref().unwrap() {
                "REFUND_REQUESTED" if within(t, 180) => {
                    e.refunds.insert(cid, (a, 0));
                }
                "REFUND_COMPLETED" => {
                    if let Some(r) = e.refunds.get_mut(&cid) {
                        r.1 += a;
                    }
                }
                _ => {}
            }
            let day = day_of_ms(t);
            match (k[i].as_deref().unwrap(), c[i].as_deref()) {
                ("PREPAYMENT", _) => e.wallet.push((day, a - f[i].unwrap())),
                ("RELEASE", _) => e.wallet.push((day, a)),
                ("REFUND_COMPLETED", Some("MERCHANT_WALLET")) => e.wallet.push((day, -a)),
                ("REFUND_COMPLETED", Some("RISK_RESERVE" | "INSURER")) => e.guarantee_drawn += a,
                _ => {}
            }
            match (k[i].as_deref().unwrap(), c[i].as_deref()) {
                ("PREPAYMENT", _) => {
                    e.liability += a;
                    e.frozen += f[i].unwrap();
                }
                ("REDEMPTION", _) => e.liability -= a,
                ("RELEASE", _) => {
                    e.frozen -= a;
                    if within(t, 90) {
                        e.rev90 += a;
                    }
                    if year_before(t) {
                        e.rev_year_before += a;
                    }
                }
                ("REFUND_COMPLETED", source) => {
                    e.liability -= a;
                    if source == Some("ESCROW") {
                        e.frozen -= a;
                    }
                }
                ("EXPIRY", Some("RELEASE_TO_MERCHANT")) => e.liability -= a,
                _ => {}
            }
        }
    }
    for b in read_parquet(&city.join("store_events.parquet")) {
        let (m, t, st, k) = (
            strs(&b, "merchant_id"),
            ts(&b, "ts"),
            strs(&b, "store_id"),
            strs(&b, "kind"),
        );
        let mut rows: Vec<usize> = (0..b.num_rows()).collect();
        rows.sort_by_key(|&i| t[i]);
        for i in rows {
            let t = t[i].unwrap();
            if t > ASOF_END_MS {
                continue;
            }
            let e = n.entry(m[i].clone().unwrap()).or_default();
            let opened = k[i].as_deref() == Some("OPENED");
            e.stores.insert(st[i].clone().unwrap(), opened);
            if !opened {
                e.last_closure = e.last_closure.max(Some(day_of_ms(t)));
            }
        }
    }
    for b in read_parquet(&city.join("complaints.parquet")) {
        let (m, t) = (strs(&b, "merchant_id"), ts(&b, "ts"));
        for i in 0..b.num_rows() {
            if within(t[i].unwrap(), 90) {
                n.entry(m[i].clone().unwrap()).or_default().complaints90 += 1.0;
            }
        }
    }
    for b in read_parquet(&city.join("operations.parquet")) {
        let (m, t, k, o, a) = (
            strs(&b, "merchant_id"),
            ts(&b, "ts"),
            strs(&b, "kind"),
            bools(&b, "on_time"),
            fen(&b, "amount"),
        );
        for i in 0..b.num_rows() {
            let (t, e) = (t[i].unwrap(), n.entry(m[i].clone().unwrap()).or_default());
            let on_time = f64::from(u8::from(o[i] == Some(true)));
            let latest = |l: &mut Option<(i64, i128)>| {
                if within(t, 45) && l.is_none_or(|(lt, _)| day_of_ms(lt) <= day_of_ms(t)) {
                    *l = Some((t, a[i].unwrap()));
                }
            };
            match k[i].as_deref() {
                Some("PAYROLL") => {
                    latest(&mut e.payroll_last);
                    if within(t, 180) {
                        e.payroll.0 += on_time;
                        e.payroll.1 += 1.0;
                    }
                }
                Some("RENT") => {
                    latest(&mut e.rent_last);
                    if within(t, 180) {
                        e.rent.0 += on_time;
                        e.rent.1 += 1.0;
                    }
                }
                _ => {}
            }
        }
    }
    for b in read_parquet(&city.join("contracts.parquet")) {
        let (m, t, c, a) = (
            strs(&b, "merchant_id"),
            ts(&b, "ts"),
            strs(&b, "consumer_id"),
            fen(&b, "paid_amount"),
        );
        for i in 0..b.num_rows() {
            if within(t[i].unwrap(), 365) {
                let e = n.entry(m[i].clone().unwrap()).or_default();
                *e.by_consumer.entry(c[i].clone().unwrap()).or_default() += a[i].unwrap();
            }
        }
    }
    for b in read_parquet(&city.join("bureau_records.parquet")) {
        let (m, t, p) = (strs(&b, "merchant_id"), ts(&b, "ts"), strs(&b, "purpose"));
        for i in 0..b.num_rows() {
            if p[i].as_deref() == Some("LOAN_APPLICATION") && within(t[i].unwrap(), 90) {
                n.entry(m[i].clone().unwrap()).or_default().inquiries90 += 1.0;
            }
        }
    }
    for b in read_parquet(&city.join("public_records.parquet")) {
        let (m, t, k, a) = (
            strs(&b, "merchant_id"),
            ts(&b, "ts"),
            strs(&b, "kind"),
            fen(&b, "amount"),
        );
        for i in 0..b.num_rows() {
            if k[i].as_deref() == Some("ENFORCEMENT") && within(t[i].unwrap(), 730) {
                n.entry(m[i].clone().unwrap()).or_default().enforced730 += a[i].unwrap();
            }
        }
    }
    // The merchants' records, by merchant: (ts, guarantee).
    let mut records: HashMap<String, Vec<(i64, Option<i128>)>> = HashMap::new();
    for b in read_parquet(&city.join("merchants.parquet")) {
        let (m, t, g) = (
            strs(&b, "merchant_id"),
            ts(&b, "ts"),
            fen(&b, "guarantee_amount"),
        );
        for i in 0..b.num_rows() {
            records
                .entry(m[i].clone().unwrap())
                .or_default()
                .push((t[i].unwrap(), g[i]));
        }
    }
    let mut checked = 0;
    let mut closed = 0;
    let mut yoy_checked = 0;
    let mut guaranteed = 0;
    let mut uncovered_days = 0.0;
    for b in &out {
        let ids = strs(b, "merchant_id");
        let closed_on = dates(b, "closed_on");
        let backlog = col(b, "refund_backlog");
        let yoy = col(b, "rev_yoy_90d");
        let (protection, top5, rent, inquiries, enforced, uncovered) = (
            col(b, "protection_coverage"),
            col(b, "top_consumer_share_365d"),
            col(b, "rent_on_time_ratio_6m"),
            col(b, "credit_inquiries_90d"),
            col(b, "enforcement_amount_730d"),
            col(b, "payroll_uncovered_days_90d"),
        );
        let (rev, liab, cov, cmp, pay, since, wd) = (
            col(b, "rev_total_90d"),
            col(b, "prepaid_liability"),
            col(b, "escrow_coverage"),
            col(b, "complaints_90d"),
            col(b, "payroll_on_time_ratio_6m"),
            col(b, "days_since_last_sale"),
            col(b, "withdrawals_30d"),
        );
        for i in 0..b.num_rows() {
            let e = n.remove(ids[i].as_deref().unwrap()).unwrap_or_default();
            let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                (None, None) => true,
                _ => false,
            };
            let m = ids[i].as_deref().unwrap();
            assert!(
                close(rev[i], Some(e.rev90 as f64 / 100.0)),
                "{m} rev_total_90d {:?} vs {}",
                rev[i],
                e.rev90
            );
            assert!(
                close(liab[i], Some(e.liability as f64 / 100.0)),
                "{m} prepaid_liability"
            );
            let naive_cov = (e.liability > 0).then(|| e.frozen as f64 / e.liability as f64);
            assert!(
                close(cov[i], naive_cov),
                "{m} escrow_coverage {:?} vs {naive_cov:?}",
                cov[i]
            );
            assert!(close(cmp[i], Some(e.complaints90)), "{m} complaints_90d");
            let naive_pay = (e.payroll.1 > 0.0).then(|| e.payroll.0 / e.payroll.1);
            assert!(close(pay[i], naive_pay), "{m} payroll_on_time_ratio_6m");
            assert!(
                close(since[i], e.last_sale.map(|s| f64::from(d - s))),
                "{m} days_since_last_sale"
            );
            assert!(close(wd[i], Some(e.withdrawals30)), "{m} withdrawals_30d");
            // Year over year: where the profile has it (enough history), the same ratio.
            if let Some(v) = yoy[i] {
                assert!(
                    e.rev_year_before > 0,
                    "{m} rev_yoy_90d without last year's revenue"
                );
                let naive = e.rev90 as f64 / e.rev_year_before as f64;
                assert!(
                    close(Some(v), Some(naive)),
                    "{m} rev_yoy_90d {v} vs {naive}"
                );
                yoy_checked += 1;
            }
            // The record in force: the last issued by the as-of date, else the first.
            let mut recs = records.get(m).cloned().unwrap_or_default();
            recs.sort_by_key(|r| r.0);
            let in_force = recs
                .iter()
                .rev()
                .find(|r| day_of_ms(r.0) <= d)
                .or(recs.first());
            let guarantee = in_force.and_then(|r| r.1).unwrap_or(0);
            guaranteed += usize::from(guarantee > 0);
            let left = (guarantee - e.guarantee_drawn).max(0);
            let naive_protection =
                (e.liability > 0).then(|| (e.frozen + left) as f64 / e.liability as f64);
            assert!(
                close(protection[i], naive_protection),
                "{m} protection_coverage {:?} vs {naive_protection:?}",
                protection[i]
            );
            let mut paid: Vec<i128> = e.by_consumer.values().copied().collect();
            paid.sort_unstable_by(|a, b| b.cmp(a));
            let total: i128 = paid.iter().sum();
            let naive_top5 =
                (total > 0).then(|| paid.iter().take(5).sum::<i128>() as f64 / total as f64);
            assert!(close(top5[i], naive_top5), "{m} top_consumer_share_365d");
            let naive_rent = (e.rent.1 > 0.0).then(|| e.rent.0 / e.rent.1);
            assert!(close(rent[i], naive_rent), "{m} rent_on_time_ratio_6m");
            assert!(
                close(inquiries[i], Some(e.inquiries90)),
                "{m} credit_inquiries_90d"
            );
            assert!(
                close(enforced[i], Some(e.enforced730 as f64 / 100.0)),
                "{m} enforcement_amount_730d"
            );
            // Days of the last 90 whose closing balance fell below payroll plus rent.
            let floor = (e.payroll_last.map_or(0, |p| p.1) + e.rent_last.map_or(0, |r| r.1)) / 4;
            let naive_uncovered = (floor > 0).then(|| {
                (d - 89..=d)
                    .filter(|&day| {
                        let balance: i128 =
                            e.wallet.iter().filter(|w| w.0 <= day).map(|w| w.1).sum();
                        balance < floor
                    })
                    .count() as f64
            });
            assert!(
                close(uncovered[i], naive_uncovered),
                "{m} payroll_uncovered_days_90d {:?} vs {naive_uncovered:?}",
                uncovered[i]
            );
            uncovered_days += naive_uncovered.unwrap_or(0.0);
            let naive_backlog: i128 = e.refunds.values().map(|(a, s)| (a - s).max(0)).sum();
            assert!(
                close(backlog[i], Some(naive_backlog as f64 / 100.0)),
                "{m} refund_backlog {:?} vs {naive_backlog}",
                backlog[i]
            );
            // Closed: store records, none open; the day is the last closure's.
            let naive_closed = (!e.stores.is_empty() && e.stores.values().all(|&o| !o))
                .then_some(e.last_closure)
                .flatten();
            assert_eq!(closed_on[i], naive_closed, "{m} closed_on");
            closed += usize::from(naive_closed.is_some());
            checked += 1;
        }
    }
    assert!(checked > 150, "checked {checked}");
    assert!(closed > 0, "no merchant of the city has closed by {ASOF}");
    assert!(yoy_checked > 50, "rev_yoy_90d on {yoy_checked} rows");
    assert!(guaranteed > 0, "no merchant with a risk reserve or bond");
    assert!(uncovered_days > 0.0, "payroll always covered");
}

#[test]
fn labels_follow_the_truth_and_incomplete_windows_are_marked() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 1500, 30, 31, &[]);
    let ledger = ingest(&city, &tmp.path().join("ledger"));
    let args = [
        "--from",
        "2024-06-30",
        "--to",
        "2025-12-31",
        "--label",
        "default_12m",
        "--oot-from",
        "2025-01-01",
    ];
    let out = profile(&ledger, &tmp.path().join("p.parquet"), &args);
    let mut truth: HashMap<String, Option<i32>> = HashMap::new();
    for b in read_parquet(&city.join("_truth/merchants.parquet")) {
        let (ids, def) = (strs(&b, "merchant_id"), dates(&b, "default_on"));
        for i in 0..b.num_rows() {
            truth.insert(ids[i].clone().unwrap(), def[i]);
        }
    }
    let (mut agree, mut total, mut positives, mut incomplete, mut test_rows) = (0, 0, 0, 0, 0);
    for b in &out {
        let ids = strs(b, "merchant_id");
        let asof = dates(b, "as_of");
        let status = strs(b, "label_status");
        let split = strs(b, "split");
        let label = b
            .column_by_name("default_12m")
            .unwrap()
            .as_primitive::<Int8Type>();
        for i in 0..b.num_rows() {
            let d = asof[i].unwrap();
            test_rows += usize::from(split[i].as_deref() == Some("test"));
            assert_eq!(
                split[i].as_deref() == Some("test"),
                d >= 20_089,
                "split by --oot-from"
            );
            match status[i].as_deref().unwrap() {
                "ok" => {
                    // Every merchant has a truth record (related entities of planned exits
                    // included); a row of one that has none would be skipped.
                    let Some(&t) = truth.get(ids[i].as_deref().unwrap()) else {
                        continue;
                    };
                    let expected = t.is_some_and(|t| t > d && t <= d + 365);
                    let got = label.value(i) == 1;
                    total += 1;
                    positives += usize::from(got);
                    agree += usize::from(expected == got);
                }
                "incomplete_window" => {
                    incomplete += 1;
                    assert!(
                        label.is_null(i) || label.value(i) == 1,
                        "an unseen outcome is unknown, not 0"
                    );
                }
                s => assert!(s.starts_with("excluded_"), "status {s}"),
            }
        }
    }
    assert!(positives > 50, "positives {positives}");
    // The signal check: the generative story's pre-failure signals carry information.
    let panel = arrow::compute::concat_batches(&out[0].schema(), &out).unwrap();
    let signals = yuanxin_model::signals::signal_report(&panel).unwrap();
    let iv = |name: &str| signals.iter().find(|s| s.name == name).unwrap().iv;
    for name in [
        "redemption_to_liability_30d",
        "promo_discount_max_90d",
        "payroll_on_time_ratio_6m",
        "service_failure_refunds_90d",
        "new_contract_tenor_days_90d",
        "release_rejections_90d",
    ] {
        assert!(
            iv(name) > 0.1,
            "{name} should be informative: IV {:.3}",
            iv(name)
        );
    }
    assert!(incomplete > 0 && test_rows > 0);
    let rate = agree as f64 / total as f64;
    assert!(
        rate > 0.98,
        "labels agree with the simulator's truth on {rate:.4} of {total} rows"
    );

    // The consumer-harm label follows the truth's first loss of prepayments the same way
    // (small disputed refunds at healthy merchants included).
    let harm_args = [&args[..4], &["--label", "consumer_harm_12m"], &args[6..]].concat();
    let harm = profile(&ledger, &tmp.path().join("h.parquet"), &harm_args);
    let mut harm_truth: HashMap<String, Option<i32>> = HashMap::new();
    for b in read_parquet(&city.join("_truth/merchants.parquet")) {
        let (ids, h) = (strs(&b, "merchant_id"), dates(&b, "harm_on"));
        for i in 0..b.num_rows() {
            harm_truth.insert(ids[i].clone().unwrap(), h[i]);
        }
    }
    let (mut h_agree, mut h_total, mut h_pos) = (0, 0, 0);
    for b in &harm {
        let (ids, asof, status) = (
            strs(b, "merchant_id"),
            dates(b, "as_of"),
            strs(b, "label_status"),
        );
        let label = b
            .column_by_name("consumer_harm_12m")
            .unwrap()
            .as_primitive::<Int8Type>();
        assert!(b.column_by_name("default_12m").is_none());
        for i in 0..b.num_rows() {
            if status[i].as_deref() != Some("ok") {
                continue;
            }
            let Some(&t) = harm_truth.get(ids[i].as_deref().unwrap()) else {
                continue;
            };
            let d = asof[i].unwrap();
            let got = label.value(i) == 1;
            h_total += 1;
            h_pos += usize::from(got);
            h_agree += usize::from(t.is_some_and(|t| t > d && t <= d + 365) == got);
        }
    }
    assert!(h_pos > 10, "harm {h_pos}, default {positives}");
    let h_rate = h_agree as f64 / h_total as f64;
    assert!(
        h_rate > 0.98,
        "harm labels agree on {h_rate:.4} of {h_total}"
    );

    // Reading the merchants in chunks (by id range, each row group decoded once and kept
    // while later chunks need it) changes nothing, labels' completeness included: the
    // files are the same byte for byte.
    for chunks in ["2", "7"] {
        let chunked = tmp.path().join(format!("p{chunks}.parquet"));
        profile(
            &ledger,
            &chunked,
            &[&args[..], &["--chunks", chunks]].concat(),
        );
        assert!(
            std::fs::read(&chunked).unwrap()
                == std::fs::read(tmp.path().join("p.parquet")).unwrap(),
            "{chunks} chunks give other profiles"
        );
    }
}

#[test]
fn features_catalogue_doc_is_generated_from_code() {
    let generated = run_ok(&["features"]);
    assert!(generated.lines().count() > 41);
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/features.md"
    ))
    .unwrap();
    assert!(
        doc.contains(&generated),
        "docs/features.md is out of date: regenerate it with `yuanxin features`"
    );
}

/// A profile of a few characteristics loads only the parts of the ledger they read (each
/// characteristic declares them). Each one alone must equal its column in a profile of all
/// of them, values and missing reasons: a missing declaration shows up here as a change.
#[test]
fn each_characteristic_alone_matches_the_full_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 300, 24, 37, &[]);
    let ledger = yuanxin_ledger::Ledger::open(&ingest(&city, &tmp.path().join("ledger"))).unwrap();
    let dates = ["2024-12-31", "2025-06-30"]
        .map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap())
        .to_vec();
    let mut all = yuanxin_profile::ProfileOptions::at(dates.clone());
    all.label = Some(yuanxin_profile::Label::Default12m);
    let full = yuanxin_profile::build(&ledger, &all).unwrap();
    // name → per row: the reason it is missing, if it is.
    let reasons = |b: &RecordBatch, name: &str| -> Vec<Option<String>> {
        let prefix = format!("{name}=");
        strs(b, "missing_reasons")
            .into_iter()
            .map(|m| {
                m.unwrap()
                    .split(';')
                    .find_map(|p| p.strip_prefix(&prefix).map(str::to_string))
            })
            .collect()
    };
    let bits = |b: &RecordBatch, name: &str| -> Vec<Option<u64>> {
        col(b, name)
            .into_iter()
            .map(|v| v.map(f64::to_bits))
            .collect()
    };
    for f in yuanxin_profile::FEATURES {
        let mut opts = all.clone();
        opts.features = Some(vec![f.name.to_string()]);
        let alone = yuanxin_profile::build(&ledger, &opts).unwrap();
        assert_eq!(strs(&alone, "merchant_id"), strs(&full, "merchant_id"));
        assert_eq!(
            bits(&alone, f.name),
            bits(&full, f.name),
            "{} alone",
            f.name
        );
        assert_eq!(
            reasons(&alone, f.name),
            reasons(&full, f.name),
            "{} alone",
            f.name
        );
        for c in ["insufficient_data", "default_12m", "label_status"] {
            assert_eq!(
                alone.column_by_name(c).unwrap().to_data(),
                full.column_by_name(c).unwrap().to_data(),
                "{c} with {} alone",
                f.name
            );
        }
    }
}

/// A peer characteristic is the merchant's own value less the median of its peers' at the
/// same as-of date: the same industry in the same district when at least ten there have a
/// value, else the whole city's industry; rows with too little history or closed are not
/// peers. Recomputed here from the profile's own columns.
#[test]
fn peer_characteristics_are_relative_to_the_peers_median() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 1200, 16, 41, &[]);
    let ledger = ingest(&city, &tmp.path().join("ledger"));
    let out = profile(
        &ledger,
        &tmp.path().join("p.parquet"),
        &["--as-of", "2024-06-30", "--as-of", "2024-09-30"],
    );
    let median = |mut v: Vec<f64>| -> Option<f64> {
        (v.len() >= 10).then(|| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        })
    };
    let (mut by_cell, mut by_trade) = (0, 0);
    for (own, relative) in [
        ("rev_change_90d", "rev_change_vs_peers_90d"),
        ("avg_discount_new_90d", "discount_vs_peers_90d"),
    ] {
        // (as_of, industry, district, peer, own value, relative value) per row.
        let mut rows = Vec::new();
        for b in &out {
            let (as_of, ind, dis, closed) = (
                dates(b, "as_of"),
                strs(b, "industry"),
                strs(b, "district"),
                dates(b, "closed_on"),
            );
            let insufficient = bools(b, "insufficient_data");
            let (v, r) = (col(b, own), col(b, relative));
            for i in 0..b.num_rows() {
                let peer = insufficient[i] == Some(false) && closed[i].is_none();
                rows.push((
                    as_of[i].unwrap(),
                    ind[i].clone().unwrap(),
                    dis[i].clone().unwrap(),
                    peer,
                    v[i],
                    r[i],
                ));
            }
        }
        for row in &rows {
            let peers = |same_district: bool| -> Vec<f64> {
                rows.iter()
                    .filter(|o| o.0 == row.0 && o.1 == row.1 && o.3)
                    .filter(|o| !same_district || o.2 == row.2)
                    .filter_map(|o| o.4)
                    .collect()
            };
            let cell = median(peers(true));
            let m = cell.or_else(|| median(peers(false)));
            let expected = row.4.and_then(|v| m.map(|m| v - m));
            assert_eq!(
                row.5.map(f64::to_bits),
                expected.map(f64::to_bits),
                "{relative} {row:?}"
            );
            if expected.is_some() {
                if cell.is_some() {
                    by_cell += 1;
                } else {
                    by_trade += 1;
                }
            }
        }
    }
    eprintln!(
        "peer values against the district's median {by_cell}, the city's industry {by_trade}"
    );
    assert!(by_cell > 50 && by_trade > 50, "{by_cell} / {by_trade}");
}

/// One build, three ways: whole in memory, streamed to a file a chunk and then a date at a
/// time, and as three shards finished together. All give the same rows, peer
/// characteristics included (their medians need every shard's values); a shard alone is
/// refused, and overlapping shards are caught.
#[test]
fn streamed_and_sharded_builds_equal_the_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city");
    simulate(&city, 300, 24, 37, &[]);
    let ledger = yuanxin_ledger::Ledger::open(&ingest(&city, &tmp.path().join("ledger"))).unwrap();
    let dates = ["2024-06-30", "2024-12-31", "2025-06-30"]
        .map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap())
        .to_vec();
    let mut opts = yuanxin_profile::ProfileOptions::at(dates);
    opts.label = Some(yuanxin_profile::Label::Default12m);
    let whole = yuanxin_profile::build(&ledger, &opts).unwrap();
    assert!(whole.num_rows() > 500);
    assert!(whole.column_by_name(yuanxin_profile::ORDER).is_none());
    let peer = col(&whole, "rev_change_vs_peers_90d");
    assert!(
        peer.iter().filter(|v| v.is_some()).count() > 100,
        "peer characteristics are computed"
    );
    let same = |a: &RecordBatch, b: &RecordBatch, how: &str| {
        assert_eq!(a.num_rows(), b.num_rows(), "{how}");
        for f in a.schema().fields() {
            assert_eq!(
                a.column_by_name(f.name()).unwrap().to_data(),
                b.column_by_name(f.name())
                    .unwrap_or_else(|| panic!("{how}: no {}", f.name()))
                    .to_data(),
                "{how}: {}",
                f.name()
            );
        }
        assert_eq!(a.num_columns(), b.num_columns(), "{how}");
    };

    let mut chunked = opts.clone();
    chunked.chunks = Some(7);
    let out = tmp.path().join("streamed.parquet");
    let mut calls = 0;
    let n =
        yuanxin_profile::build_to_parquet(&ledger, &chunked, &out, &mut |_, _| calls += 1).unwrap();
    assert_eq!(calls, 7);
    assert_eq!(n as usize, whole.num_rows());
    same(&whole, &read_whole(&out), "streamed");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("spill") || n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "spill left behind: {left:?}");

    let mut parts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for i in 0..3 {
        let mut o = chunked.clone();
        o.shard = Some(yuanxin_profile::Shard::new(i, 3).unwrap());
        if i == 0 {
            let err = yuanxin_profile::build(&ledger, &o).unwrap_err().to_string();
            assert!(err.contains("shard 0/3"), "{err}");
        }
        let part = yuanxin_profile::build_partial(&ledger, &o, &mut |_, _| {}).unwrap();
        assert!(part.num_rows() > 0);
        for id in strs(&part, "merchant_id").into_iter().flatten() {
            assert_eq!(yuanxin_profile::Shard::of(&id, 3), i, "{id} in shard {i}");
            seen.insert(id);
        }
        parts.push(part);
    }
    assert_eq!(
        seen.len(),
        strs(&whole, "merchant_id")
            .into_iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
    );
    // In any order of parts.
    parts.reverse();
    same(&whole, &yuanxin_profile::finish(&parts).unwrap(), "sharded");
    parts.push(parts[0].clone());
    let err = yuanxin_profile::finish(&parts).unwrap_err().to_string();
    assert!(err.contains("comes twice"), "{err}");
    assert!(yuanxin_profile::Shard::parse("3/3").is_err());
    assert!(yuanxin_profile::Shard::parse("1/0").is_err());
    assert!(yuanxin_profile::Shard::parse("x").is_err());
}
