//! End-to-end tests of `yuanxin simulate`: determinism and realism of the simulated city.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::Datelike;

use common::*;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_gives_identical_bytes_whatever_the_threading() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let c = tmp.path().join("c");
    simulate(
        &a,
        150,
        8,
        7,
        &[
            "--faults",
            "0.02",
            "--format",
            "both",
            "--threads",
            "1",
            "--chunk",
            "16",
        ],
    );
    simulate(
        &b,
        150,
        8,
        7,
        &[
            "--faults",
            "0.02",
            "--format",
            "both",
            "--threads",
            "2",
            "--chunk",
            "100",
        ],
    );
    simulate(&c, 150, 8, 8, &["--faults", "0.02", "--format", "both"]);
    let fa = files(&a);
    let fb = files(&b);
    assert!(
        fa.len() >= 24,
        "expected Parquet, CSV and truth files, got {:?}",
        fa.keys()
    );
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(
            bytes == &fb[name],
            "{name} differs between runs with the same seed"
        );
    }
    let fc = files(&c);
    assert_ne!(
        fa["escrow_events.parquet"], fc["escrow_events.parquet"],
        "different seeds must differ"
    );
    assert_ne!(fa["merchants.csv"], fc["merchants.csv"]);
}

/// Monthly observables of one merchant, from the exported tables only.
#[derive(Default, Clone)]
struct Month {
    spot: f64,
    prepaid: f64,
    withdrawals: f64,
    payroll_late: f64,
    payroll_n: f64,
    complaints: f64,
}

struct City {
    /// merchant → month index → observables
    months: HashMap<String, BTreeMap<i32, Month>>,
    truth: Vec<TruthRow>,
}

struct TruthRow {
    id: String,
    industry: String,
    episode: String,
    default_day: Option<i32>,
    closed_day: Option<i32>,
    registered_month: i32,
}

fn load_city(dir: &Path) -> City {
    let mut months: HashMap<String, BTreeMap<i32, Month>> = HashMap::new();
    let at = |m: &str, ms: i64| -> (String, i32) { (m.to_string(), month_of_day(day_of_ms(ms))) };
    for b in read_parquet(&dir.join("wallet_flows.parquet")) {
        let (ids, t, kind, amount) = (
            strs(&b, "merchant_id"),
            ts(&b, "ts"),
            strs(&b, "kind"),
            fen(&b, "amount"),
        );
        for i in 0..b.num_rows() {
            let (m, mo) = at(ids[i].as_deref().unwrap(), t[i].unwrap());
            let e = months.entry(m).or_default().entry(mo).or_default();
            match kind[i].as_deref() {
                Some("SPOT_SALE") => e.spot += amount[i].unwrap() as f64 / 100.0,
                _ => e.withdrawals += 1.0,
            }
        }
    }
    for b in read_parquet(&dir.join("escrow_events.parquet")) {
        let (ids, t, kind, amount) = (
            strs(&b, "merchant_id"),
            ts(&b, "ts"),
            strs(&b, "kind"),
            fen(&b, "amount"),
        );
        for i in 0..b.num_rows() {
            if kind[i].as_deref() == Some("PREPAYMENT") {
                let (m, mo) = at(ids[i].as_deref().unwrap(), t[i].unwrap());
                months.entry(m).or_default().entry(mo).or_default().prepaid +=
                    amount[i].unwrap() as f64 / 100.0;
            }
        }
    }
    for b in read_parquet(&dir.join("operations.parquet")) {
        let (ids, kind, period, on_time) = (
            strs(&b, "merchant_id"),
            strs(&b, "kind"),
            dates(&b, "period"),
            bools(&b, "on_time"),
        );
        for i in 0..b.num_rows() {
            if kind[i].as_deref() == Some("PAYROLL") {
                let mo = month_of_day(period[i].unwrap());
                let e = months
                    .entry(ids[i].clone().unwrap())
                    .or_default()
                    .entry(mo)
                    .or_default();
                e.payroll_n += 1.0;
                e.payroll_late += if on_time[i] == Some(false) { 1.0 } else { 0.0 };
            }
        }
    }
    for b in read_parquet(&dir.join("complaints.parquet")) {
        let (ids, t) = (strs(&b, "merchant_id"), ts(&b, "ts"));
        for i in 0..b.num_rows() {
            let (m, mo) = at(ids[i].as_deref().unwrap(), t[i].unwrap());
            months
                .entry(m)
                .or_default()
                .entry(mo)
                .or_default()
                .complaints += 1.0;
        }
    }
    let mut registered: HashMap<String, i32> = HashMap::new();
    for b in read_parquet(&dir.join("merchants.parquet")) {
        let (ids, reg) = (strs(&b, "merchant_id"), dates(&b, "registered_on"));
        for i in 0..b.num_rows() {
            // The first record's: a later one may re-register the business (个转企).
            registered
                .entry(ids[i].clone().unwrap())
                .or_insert(month_of_day(reg[i].unwrap()));
        }
    }
    let mut truth = Vec::new();
    for b in read_parquet(&yuanxin_simulate_truth(dir)) {
        let (ids, ind, ep, def, closed) = (
            strs(&b, "merchant_id"),
            strs(&b, "industry"),
            strs(&b, "episode"),
            dates(&b, "default_on"),
            dates(&b, "closed_on"),
        );
        for i in 0..b.num_rows() {
            let id = ids[i].clone().unwrap();
            truth.push(TruthRow {
                registered_month: registered[&id],
                id,
                industry: ind[i].clone().unwrap(),
                episode: ep[i].clone().unwrap(),
                default_day: def[i],
                closed_day: closed[i],
            });
        }
    }
    City { months, truth }
}

fn yuanxin_simulate_truth(dir: &Path) -> std::path::PathBuf {
    dir.join("_truth").join("merchants.parquet")
}

fn mean<I: Iterator<Item = f64>>(it: I) -> f64 {
    let v: Vec<f64> = it.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Sum of a field over months `from..=to` relative to `anchor`.
fn window(m: &BTreeMap<i32, Month>, anchor: i32, from: i32, to: i32, f: fn(&Month) -> f64) -> f64 {
    (from..=to)
        .map(|r| m.get(&(anchor + r)).map(f).unwrap_or(0.0))
        .sum()
}

#[test]
fn the_city_is_realistic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("city");
    let months = 24;
    let summary = simulate(&dir, 3000, months, 2023, &[]);
    let city = load_city(&dir);
    let start_month = 2023 * 12 + 6;
    let years = f64::from(months) / 12.0;

    // 0. A contract id names one contract: never given twice (closed contracts included).
    let mut ids = std::collections::HashSet::new();
    let mut rows = 0;
    for b in read_parquet(&dir.join("contracts.parquet")) {
        for id in strs(&b, "contract_id") {
            rows += 1;
            assert!(ids.insert(id.unwrap()), "a contract id is reused");
        }
    }
    assert!(rows > 10_000, "{rows} contracts");

    // 0a. Escrow reconciles per contract: what was paid is redeemed, refunded, forfeited
    // at expiry (released to the merchant) or still outstanding, never less than nothing;
    // what was frozen is released or refunded from escrow, never more, and the frozen
    // part left never exceeds the value left (no coverage above 100 %). A contract that
    // ended well before the period did (expired, with any extension, or its merchant
    // closed) has nothing left of either.
    let end_day = day_of_ms(
        chrono::NaiveDate::parse_from_str(summary["end"].as_str().unwrap(), "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis(),
    );
    #[derive(Default)]
    struct Book {
        paid: i128,
        frozen: i128,
        redeemed: i128,
        refunded: i128,
        forfeited: i128,
        released: i128,
        escrow_refunds: i128,
    }
    let mut books: HashMap<String, Book> = HashMap::new();
    for b in read_parquet(&dir.join("escrow_events.parquet")) {
        let (c, k, a, f, code) = (
            strs(&b, "contract_id"),
            strs(&b, "kind"),
            fen(&b, "amount"),
            fen(&b, "frozen_amount"),
            strs(&b, "code"),
        );
        for i in 0..b.num_rows() {
            let e = books.entry(c[i].clone().unwrap()).or_default();
            let a = a[i].unwrap();
            match (k[i].as_deref().unwrap(), code[i].as_deref()) {
                ("PREPAYMENT", _) => {
                    e.paid += a;
                    e.frozen += f[i].unwrap();
                }
                ("REDEMPTION", _) => e.redeemed += a,
                ("RELEASE", _) => e.released += a,
                ("REFUND_COMPLETED", source) => {
                    e.refunded += a;
                    if source == Some("ESCROW") {
                        e.escrow_refunds += a;
                    }
                }
                ("EXPIRY", Some("RELEASE_TO_MERCHANT")) => e.forfeited += a,
                _ => {}
            }
        }
    }
    let closed_on: HashMap<&str, i32> = city
        .truth
        .iter()
        .filter_map(|t| Some((t.id.as_str(), t.closed_day?)))
        .collect();
    let (mut settled, mut checked) = (0, 0);
    for b in read_parquet(&dir.join("contracts.parquet")) {
        let (c, m, exp) = (
            strs(&b, "contract_id"),
            strs(&b, "merchant_id"),
            dates(&b, "expires_on"),
        );
        for i in 0..b.num_rows() {
            let id = c[i].clone().unwrap();
            let e = &books[&id];
            let outstanding = e.paid - e.redeemed - e.refunded - e.forfeited;
            let frozen_left = e.frozen - e.released - e.escrow_refunds;
            assert!(
                outstanding >= 0,
                "{id}: {outstanding} fen redeemed beyond paid"
            );
            assert!(
                frozen_left >= 0,
                "{id}: {frozen_left} fen released beyond frozen"
            );
            assert!(
                frozen_left <= outstanding,
                "{id}: {frozen_left} fen frozen for {outstanding} fen of value left"
            );
            // Expired, after any 90-day extension, in a month that was stepped through, and
            // any refund paid (asked up to 45 days after, paid up to 30 after that); or
            // the merchant closed long enough ago for its refunds to be paid.
            let ended = exp[i].unwrap() + 90 + 31 + 75 < end_day
                || closed_on
                    .get(m[i].as_deref().unwrap())
                    .is_some_and(|&d| d + 76 < end_day);
            if ended {
                assert_eq!((outstanding, frozen_left), (0, 0), "{id}: left in escrow");
                settled += 1;
            }
            checked += 1;
        }
    }
    assert!(
        settled > checked / 4,
        "{settled} of {checked} contracts settled"
    );
    // Deliveries happen on the days the service does, not at month ends (a month-end share
    // near 1/30; it was every redemption).
    let mut month_end = [0usize; 2];
    let mut all = [0usize; 2];
    for b in read_parquet(&dir.join("escrow_events.parquet")) {
        let (k, t) = (strs(&b, "kind"), ts(&b, "ts"));
        for i in 0..b.num_rows() {
            let j = match k[i].as_deref() {
                Some("REDEMPTION") => 0,
                Some("RELEASE") => 1,
                _ => continue,
            };
            let day =
                chrono::NaiveDate::from_num_days_from_ce_opt(day_of_ms(t[i].unwrap()) + 719_163)
                    .unwrap();
            all[j] += 1;
            month_end[j] += usize::from(day.succ_opt().unwrap().day0() == 0);
        }
    }
    for j in 0..2 {
        let share = month_end[j] as f64 / all[j] as f64;
        assert!(
            share < 0.08,
            "{:.3} of {} on month ends",
            share,
            ["redemptions", "releases"][j]
        );
    }

    // 0b. The merchants table is a dated history: onboarding to 元管家 is a record of its
    // own after registration, and some merchants move, change owners or re-register as a
    // company during the period, each record carrying the previous ones' facts.
    // Per merchant: (ts, the columns above) of each record.
    type Records = Vec<(i64, Vec<Option<String>>)>;
    let mut history: BTreeMap<String, Records> = BTreeMap::new();
    for b in read_parquet(&dir.join("merchants.parquet")) {
        let t = ts(&b, "ts");
        let cols: Vec<Vec<Option<String>>> = [
            "district",
            "owner_group_id",
            "legal_form",
            "uscc",
            "custody_mode",
            "ecny_onboarded_on",
        ]
        .iter()
        .map(|c| {
            if *c == "ecny_onboarded_on" {
                dates(&b, c)
                    .into_iter()
                    .map(|d| d.map(|d| d.to_string()))
                    .collect()
            } else {
                strs(&b, c)
            }
        })
        .collect();
        let ids = strs(&b, "merchant_id");
        for i in 0..b.num_rows() {
            history
                .entry(ids[i].clone().unwrap())
                .or_default()
                .push((t[i].unwrap(), cols.iter().map(|c| c[i].clone()).collect()));
        }
    }
    let mut changed = [0usize; 4];
    for (id, recs) in &mut history {
        recs.sort_by_key(|r| r.0);
        for w in recs.windows(2) {
            let (a, b) = (&w[0].1, &w[1].1);
            if a[5].is_none() && b[5].is_some() {
                assert_eq!(
                    a[4].as_deref(),
                    Some("NONE"),
                    "{id}: custody before onboarding"
                );
                changed[0] += 1;
            }
            changed[1] += usize::from(a[0] != b[0]);
            changed[2] += usize::from(a[1] != b[1]);
            if a[2] != b[2] {
                assert_eq!(
                    (a[2].as_deref(), b[2].as_deref()),
                    (Some("INDIVIDUAL"), Some("ENTERPRISE")),
                    "{id}"
                );
                assert_ne!(a[3], b[3], "{id}: a re-registration has a new credit code");
                changed[3] += 1;
            }
        }
    }
    eprintln!("registry changes (onboarding, move, owners, re-registration): {changed:?}");
    let n = history.len() as f64;
    assert!(changed[0] as f64 > 0.3 * n, "onboardings {changed:?}");
    for (k, lo, hi) in [(1, 0.015, 0.07), (2, 0.005, 0.04), (3, 0.002, 0.03)] {
        let share = changed[k] as f64 / n;
        assert!(
            (lo..=hi).contains(&share),
            "change {k}: {share:.4} of merchants"
        );
    }

    // 0c. Healthy merchants (those that never default) do the things that look like
    // trouble too: pay a loan instalment late and cure, even past 30 days; run deep
    // promotions; open and close stores. And a loan 30+ days past due rolls to 90+ about
    // as often as small-business loans do (docs/simulator.md), not almost always.
    let healthy: std::collections::HashSet<&str> = city
        .truth
        .iter()
        .filter(|t| t.default_day.is_none() && t.closed_day.is_none())
        .map(|t| t.id.as_str())
        .collect();
    let mut worst: HashMap<String, (bool, i64, i64)> = HashMap::new();
    for b in read_parquet(&dir.join("loans.parquet")) {
        let (m, l, k, dpd) = (
            strs(&b, "merchant_id"),
            strs(&b, "loan_id"),
            strs(&b, "kind"),
            ints(&b, "dpd"),
        );
        for i in 0..b.num_rows() {
            if k[i].as_deref() != Some("STATUS") {
                continue;
            }
            let e = worst.entry(l[i].clone().unwrap()).or_insert((
                healthy.contains(m[i].as_deref().unwrap()),
                0,
                0,
            ));
            let d = dpd[i].unwrap();
            e.1 = e.1.max(d);
            // Cured: back to current after having been past due.
            if d == 0 && e.1 > 0 {
                e.2 += 1;
            }
        }
    }
    let healthy_late = worst.values().filter(|w| w.0 && w.1 > 0 && w.2 > 0).count();
    let healthy_30 = worst.values().filter(|w| w.0 && w.1 >= 30).count();
    let reached_30 = worst.values().filter(|w| w.1 >= 30).count();
    let reached_90 = worst.values().filter(|w| w.1 >= 90).count();
    let roll = reached_90 as f64 / reached_30.max(1) as f64;
    eprintln!(
        "healthy loans late and cured {healthy_late}, healthy 30+ dpd {healthy_30}; \
         roll 30+ → 90+ {roll:.2} ({reached_90} of {reached_30})"
    );
    assert!(healthy_late >= 20 && healthy_30 >= 5, "healthy late payers");
    assert!(
        (0.15..=0.6).contains(&roll),
        "roll rate 30+ → 90+ {roll:.2}"
    );
    let mut deep = 0;
    for b in read_parquet(&dir.join("promotions.parquet")) {
        let m = strs(&b, "merchant_id");
        let (d, bo) = (
            b.column_by_name("discount").unwrap(),
            b.column_by_name("bonus").unwrap(),
        );
        let cast = |a: &arrow::array::ArrayRef| {
            arrow::compute::cast(a, &arrow::datatypes::DataType::Float64).unwrap()
        };
        let (d, bo) = (cast(d), cast(bo));
        let (d, bo) = (
            d.as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .unwrap(),
            bo.as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .unwrap(),
        );
        for (i, id) in m.iter().enumerate() {
            deep += usize::from(
                healthy.contains(id.as_deref().unwrap()) && (d.value(i) > 0.4 || bo.value(i) > 0.2),
            );
        }
    }
    let (mut opened, mut closed) = (0, 0);
    let start_ms = 1_688_140_800_000; // 2023-07-01T00:00+08:00
                                      // Merchants there before the period: their stores opened during it are new ones.
    let incumbent: std::collections::HashSet<&str> = city
        .truth
        .iter()
        .filter(|t| t.registered_month < start_month && healthy.contains(t.id.as_str()))
        .map(|t| t.id.as_str())
        .collect();
    for b in read_parquet(&dir.join("store_events.parquet")) {
        let (m, t, k) = (strs(&b, "merchant_id"), ts(&b, "ts"), strs(&b, "kind"));
        for i in 0..b.num_rows() {
            if incumbent.contains(m[i].as_deref().unwrap()) && t[i].unwrap() > start_ms {
                match k[i].as_deref() {
                    Some("OPENED") => opened += 1,
                    Some("CLOSED") => closed += 1,
                    _ => {}
                }
            }
        }
    }
    eprintln!("healthy merchants: {deep} deep promotions, {opened} stores opened, {closed} closed");
    assert!(deep >= 20 && opened >= 20 && closed >= 5);

    // 0d. The entities the owners of planned exits register trade as merchants of their
    // own, in the owners' group, with a truth record each.
    let related: Vec<&TruthRow> = city.truth.iter().filter(|t| t.id.ends_with('R')).collect();
    let planned = city
        .truth
        .iter()
        .filter(|t| t.episode == "planned_exit")
        .count();
    assert!(
        !related.is_empty() && related.len() <= planned,
        "{} related",
        related.len()
    );
    let active = related
        .iter()
        .filter(|t| city.months.get(&t.id).is_some_and(|m| !m.is_empty()))
        .count();
    assert!(
        active * 10 >= related.len() * 9,
        "{active} of {} trade",
        related.len()
    );

    // 0e. Costs, guarantees, courts and the bureau. Rent is paid every month for every
    // open store, late now and then by sound merchants and far more often in the half
    // year before a default; some merchants protect prepayments with a risk reserve or a
    // performance bond (no freeze), and those funds pay consumers when the merchant does
    // not; lawsuits lead to enforcement and dishonest-debtor listings, which a sound
    // merchant clears; sound merchants apply for credit and owe other creditors too, and
    // merchants heading for default apply far more; companies buy for their staff.
    let default_day: HashMap<&str, i32> = city
        .truth
        .iter()
        .filter_map(|t| Some((t.id.as_str(), t.default_day?)))
        .collect();
    // Per group (healthy, the 180 days before a default): [records, late or inquiries].
    let mut rent = [[0usize; 2]; 2];
    for b in read_parquet(&dir.join("operations.parquet")) {
        let (m, k, t, on_time, amount) = (
            strs(&b, "merchant_id"),
            strs(&b, "kind"),
            ts(&b, "ts"),
            bools(&b, "on_time"),
            fen(&b, "amount"),
        );
        for i in 0..b.num_rows() {
            if k[i].as_deref() != Some("RENT") {
                continue;
            }
            assert!(amount[i].unwrap() > 0, "rent of nothing");
            let id = m[i].as_deref().unwrap();
            let day = day_of_ms(t[i].unwrap());
            let g = if healthy.contains(id) {
                0
            } else if default_day
                .get(id)
                .is_some_and(|&d| (d - 180..d).contains(&day))
            {
                1
            } else {
                continue;
            };
            rent[g][0] += 1;
            rent[g][1] += usize::from(on_time[i] == Some(false));
        }
    }
    let late = |g: [usize; 2]| g[1] as f64 / g[0].max(1) as f64;
    eprintln!(
        "rent paid late: healthy {:.3} of {}, before default {:.3} of {}",
        late(rent[0]),
        rent[0][0],
        late(rent[1]),
        rent[1][0]
    );
    assert!(
        rent[0][0] > 10_000 && rent[0][1] > 50,
        "healthy rent {rent:?}"
    );
    assert!(late(rent[0]) < 0.05 && late(rent[1]) > 3.0 * late(rent[0]));

    let mut guaranteed: HashMap<String, &'static str> = HashMap::new();
    for b in read_parquet(&dir.join("merchants.parquet")) {
        let (m, mode, g) = (
            strs(&b, "merchant_id"),
            strs(&b, "custody_mode"),
            fen(&b, "guarantee_amount"),
        );
        for i in 0..b.num_rows() {
            let mode = match mode[i].as_deref() {
                Some("RISK_RESERVE") => "RISK_RESERVE",
                Some("PERFORMANCE_BOND") => "INSURER",
                _ => {
                    assert!(g[i].is_none(), "a guarantee without the custody mode");
                    continue;
                }
            };
            assert!(g[i].unwrap() > 0);
            guaranteed.insert(m[i].clone().unwrap(), mode);
        }
    }
    let mut drawn: HashMap<String, usize> = HashMap::new();
    for b in read_parquet(&dir.join("escrow_events.parquet")) {
        let (m, k, code, frozen) = (
            strs(&b, "merchant_id"),
            strs(&b, "kind"),
            strs(&b, "code"),
            fen(&b, "frozen_amount"),
        );
        for i in 0..b.num_rows() {
            let id = m[i].as_deref().unwrap();
            match (k[i].as_deref(), code[i].as_deref()) {
                (Some("PREPAYMENT"), _) if guaranteed.contains_key(id) => {
                    assert_eq!(frozen[i], Some(0), "{id}: frozen under a guarantee")
                }
                (Some("REFUND_COMPLETED"), Some(source @ ("RISK_RESERVE" | "INSURER"))) => {
                    assert_eq!(guaranteed.get(id).copied(), Some(source), "{id}");
                    *drawn.entry(source.to_string()).or_default() += 1;
                }
                _ => {}
            }
        }
    }
    eprintln!(
        "guarantees: {} merchants, refunds paid from them {drawn:?}",
        guaranteed.len()
    );
    let share = guaranteed.len() as f64 / history.len() as f64;
    assert!((0.02..=0.2).contains(&share), "{share:.3} guaranteed");
    assert!(drawn.values().sum::<usize>() >= 1, "no guarantee ever paid");

    // Public records by merchant: (day, kind).
    let mut public: HashMap<String, Vec<(i32, String)>> = HashMap::new();
    for b in read_parquet(&dir.join("public_records.parquet")) {
        let (m, t, k) = (strs(&b, "merchant_id"), ts(&b, "ts"), strs(&b, "kind"));
        for i in 0..b.num_rows() {
            public
                .entry(m[i].clone().unwrap())
                .or_default()
                .push((day_of_ms(t[i].unwrap()), k[i].clone().unwrap()));
        }
    }
    // Never in distress at all (a cured episode is trouble while it lasts).
    let sound: std::collections::HashSet<&str> = city
        .truth
        .iter()
        .filter(|t| t.episode == "none" && healthy.contains(t.id.as_str()))
        .map(|t| t.id.as_str())
        .collect();
    let (mut enforced, mut listed, mut healthy_listed) = (0, 0, 0);
    for (id, recs) in &mut public {
        recs.sort();
        enforced += recs.iter().filter(|r| r.1 == "ENFORCEMENT").count();
        listed += recs.iter().filter(|r| r.1 == "DISHONEST_LISTED").count();
        if sound.contains(id.as_str()) {
            // A sound merchant listed pays and is removed (within the period).
            let last = recs
                .iter()
                .rev()
                .find(|r| r.1.starts_with("DISHONEST_"))
                .map(|r| r.1.as_str());
            if recs.iter().any(|r| r.1 == "DISHONEST_LISTED") {
                healthy_listed += 1;
                assert!(
                    last == Some("DISHONEST_REMOVED")
                        || recs.last().is_some_and(|r| r.0 > end_day - 120),
                    "{id}: listed for good while healthy"
                );
            }
        }
    }
    eprintln!(
        "enforcement cases {enforced}, dishonest listings {listed} ({healthy_listed} healthy)"
    );
    assert!(enforced >= 10 && listed >= 3, "courts");

    let mut inquiries = [[0usize; 2]; 2];
    let mut healthy_debtors = std::collections::HashSet::new();
    for b in read_parquet(&dir.join("bureau_records.parquet")) {
        let (m, t, k, purpose) = (
            strs(&b, "merchant_id"),
            ts(&b, "ts"),
            strs(&b, "kind"),
            strs(&b, "purpose"),
        );
        for i in 0..b.num_rows() {
            let id = m[i].as_deref().unwrap();
            if k[i].as_deref() == Some("DEBT_BALANCE") {
                if healthy.contains(id) {
                    healthy_debtors.insert(id.to_string());
                }
                continue;
            }
            if purpose[i].as_deref() != Some("LOAN_APPLICATION") {
                continue;
            }
            let day = day_of_ms(t[i].unwrap());
            let g = if healthy.contains(id) {
                0
            } else if default_day
                .get(id)
                .is_some_and(|&d| (d - 180..d).contains(&day))
            {
                1
            } else {
                continue;
            };
            inquiries[g][1] += 1;
        }
    }
    // Per merchant-month: healthy merchants over the whole period, defaulters over the
    // half year before default.
    inquiries[0][0] = healthy.len() * months as usize;
    inquiries[1][0] = default_day.len() * 6;
    let rate = |g: [usize; 2]| g[1] as f64 / g[0].max(1) as f64;
    eprintln!(
        "loan-application inquiries per month: healthy {:.3}, before default {:.3}; {} healthy merchants owe other creditors",
        rate(inquiries[0]),
        rate(inquiries[1]),
        healthy_debtors.len()
    );
    assert!(inquiries[0][1] >= 100 && healthy_debtors.len() * 20 >= healthy.len());
    assert!(rate(inquiries[1]) > 3.0 * rate(inquiries[0]));

    let mut buyers: HashMap<String, usize> = HashMap::new();
    for b in read_parquet(&dir.join("contracts.parquet")) {
        for c in strs(&b, "consumer_id").into_iter().flatten() {
            if c.contains("-B") {
                *buyers.entry(c).or_default() += 1;
            }
        }
    }
    let big = buyers.values().filter(|n| **n >= 10).count();
    eprintln!(
        "corporate buyers {}, {big} with 10+ contracts",
        buyers.len()
    );
    assert!(big >= 5, "corporate buyers");

    // 1. Yearly default rates of a few percent, varying by industry (docs/simulator.md).
    let mut by_industry: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for t in &city.truth {
        let e = by_industry.entry(&t.industry).or_default();
        e.0 += 1.0;
        e.1 += f64::from(u8::from(t.default_day.is_some()));
    }
    let total: f64 = by_industry.values().map(|v| v.0).sum();
    let defaults: f64 = by_industry.values().map(|v| v.1).sum();
    let city_rate = defaults / total / years;
    eprintln!(
        "yearly default rate {city_rate:.4}; by industry {:?}",
        by_industry
            .iter()
            .map(|(k, (n, d))| (k.to_string(), (d / n / years * 1000.0).round() / 10.0))
            .collect::<Vec<_>>()
    );
    assert!(
        (0.015..=0.05).contains(&city_rate),
        "city-wide yearly default rate {city_rate:.4}"
    );
    assert_eq!(summary["defaults"].as_u64().unwrap() as f64, defaults);
    let rates: Vec<f64> = by_industry.values().map(|(n, d)| d / n / years).collect();
    for (ind, (n, d)) in &by_industry {
        let r = d / n / years;
        assert!(r <= 0.08, "{ind}: yearly default rate {r:.4} above 8 %");
    }
    assert!(
        rates.iter().filter(|r| **r >= 0.005).count() >= 8,
        "rates {rates:?}"
    );
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), r| (a.min(*r), b.max(*r)));
    assert!(
        hi >= 2.0 * lo.max(0.001),
        "rates should vary by industry: {rates:?}"
    );

    // 2. Distressed merchants show the documented pre-failure sequence, on average: the
    //    last three months before default against months 12–7 before it, relative to the
    //    same ratio among merchants that never default (which removes seasonality).
    let mut baseline: HashMap<i32, (f64, f64)> = HashMap::new();
    for anchor in start_month + 12..start_month + months as i32 + 1 {
        let (mut sl, mut sb, mut pl, mut pb) = (0.0, 0.0, 0.0, 0.0);
        for t in city
            .truth
            .iter()
            .filter(|t| t.default_day.is_none() && t.closed_day.is_none())
        {
            if t.registered_month > anchor - 13 {
                continue;
            }
            let Some(m) = city.months.get(&t.id) else {
                continue;
            };
            sl += window(m, anchor, -3, -1, |x| x.spot) / 3.0;
            sb += window(m, anchor, -12, -7, |x| x.spot) / 6.0;
            pl += window(m, anchor, -3, -1, |x| x.prepaid) / 3.0;
            pb += window(m, anchor, -12, -7, |x| x.prepaid) / 6.0;
        }
        baseline.insert(anchor, (sl / sb, pl / pb));
    }
    // Ratios of sums (observed over expected from the survivors' seasonal ratio): robust to
    // small merchants whose single-month ratios explode.
    let mut spot = (0.0, 0.0);
    let mut prepaid = (0.0, 0.0);
    let mut planned_prepaid = (0.0, 0.0);
    let mut planned_spot = (0.0, 0.0);
    let mut defaulters = 0;
    let mut planned = 0;
    let mut withdrawals = Vec::new();
    let mut late_recent = Vec::new();
    let mut late_base = Vec::new();
    let mut complaints = Vec::new();
    for t in &city.truth {
        let Some(day) = t.default_day else { continue };
        let dm = month_of_day(day);
        if dm < start_month + 12 || t.registered_month > dm - 13 {
            continue;
        }
        let Some(m) = city.months.get(&t.id) else {
            continue;
        };
        let base = |f: fn(&Month) -> f64| window(m, dm, -12, -7, f) / 6.0;
        let last = |f: fn(&Month) -> f64| window(m, dm, -3, -1, f) / 3.0;
        let (bs, bp) = baseline[&dm];
        let add = |acc: &mut (f64, f64), f: fn(&Month) -> f64, b: f64| {
            acc.0 += last(f);
            acc.1 += base(f) * b;
        };
        if t.episode == "ordinary" {
            defaulters += 1;
            add(&mut spot, |x| x.spot, bs);
            add(&mut prepaid, |x| x.prepaid, bp);
            withdrawals.push(last(|x| x.withdrawals) / base(|x| x.withdrawals).max(0.5));
            late_recent.push(last(|x| x.payroll_late) / last(|x| x.payroll_n).max(1.0));
            late_base.push(base(|x| x.payroll_late) / base(|x| x.payroll_n).max(1.0));
            complaints.push(last(|x| x.complaints) - base(|x| x.complaints));
        } else if t.episode == "planned_exit" {
            planned += 1;
            add(&mut planned_prepaid, |x| x.prepaid, bp);
            add(&mut planned_spot, |x| x.spot, bs);
        }
    }
    assert!(
        defaulters >= 40,
        "too few defaulters with history: {defaulters}"
    );
    let (s, p, w) = (
        spot.0 / spot.1,
        prepaid.0 / prepaid.1,
        mean(withdrawals.into_iter()),
    );
    let (lr, lb) = (mean(late_recent.into_iter()), mean(late_base.into_iter()));
    let c = mean(complaints.into_iter());
    eprintln!("pre-failure ratios: spot {s:.3}, prepaid {p:.3}, withdrawals {w:.3}, payroll late {lr:.3} vs {lb:.3}, complaints +{c:.3}");
    assert!(
        s < 0.9,
        "spot revenue should fall before default: ratio {s:.3}"
    );
    assert!(
        p > 1.3,
        "prepaid sales should be pushed before default: ratio {p:.3}"
    );
    assert!(
        w > 1.15,
        "the wallet should be swept more often: ratio {w:.3}"
    );
    assert!(
        lr > 0.2 && lr > 3.0 * lb,
        "payroll should turn late: {lr:.3} vs {lb:.3}"
    );
    assert!(c > 0.0, "complaints should rise: {c:.3}");
    eprintln!(
        "planned exits: prepaid {:.3}, spot {:.3} (n = {planned})",
        planned_prepaid.0 / planned_prepaid.1,
        planned_spot.0 / planned_spot.1
    );
    assert!(planned >= 5, "planned exits: {planned}");
    let (pp, ps) = (
        planned_prepaid.0 / planned_prepaid.1,
        planned_spot.0 / planned_spot.1,
    );
    assert!(
        pp > 1.5 && ps > 0.9,
        "planned exits spike prepaid sales without decline: {pp:.2}, {ps:.2}"
    );

    // 3. No single observable separates good from bad: at an as-of date, univariate AUCs
    //    for default in the next 12 months stay well below 0.99 (and signal exists).
    let asof = start_month + 12;
    let mut feats: Vec<[f64; 4]> = Vec::new();
    let mut labels = Vec::new();
    for t in &city.truth {
        let alive = t.closed_day.is_none_or(|d| month_of_day(d) >= asof)
            && t.default_day.is_none_or(|d| month_of_day(d) >= asof);
        if !alive || t.registered_month > asof - 7 {
            continue;
        }
        let Some(m) = city.months.get(&t.id) else {
            continue;
        };
        let w = |a, b, f: fn(&Month) -> f64| window(m, asof, a, b, f);
        feats.push([
            w(-3, -1, |x| x.spot) / w(-6, -4, |x| x.spot).max(1.0),
            w(-3, -1, |x| x.prepaid) / (w(-12, -4, |x| x.prepaid) / 3.0).max(1.0),
            w(-6, -1, |x| x.payroll_late),
            w(-6, -1, |x| x.complaints),
        ]);
        labels.push(t.default_day.is_some_and(|d| month_of_day(d) < asof + 12));
    }
    let positives = labels.iter().filter(|l| **l).count();
    assert!(positives >= 30, "positives {positives}");
    let mut best: f64 = 0.5;
    for k in 0..4 {
        let scores: Vec<f64> = feats.iter().map(|f| f[k]).collect();
        let a = auc(&scores, &labels);
        let a = a.max(1.0 - a);
        eprintln!("observable {k}: univariate AUC {a:.3}");
        assert!(
            a < 0.85,
            "observable {k} alone separates defaulters too well: AUC {a:.3}"
        );
        best = best.max(a);
    }
    assert!(
        best > 0.6,
        "observables should carry some signal: best AUC {best:.3}"
    );
}

#[test]
fn daily_deliveries_add_up_to_the_whole_city() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    simulate(&whole, 120, 6, 41, &[]);
    simulate(&split, 120, 6, 41, &["--daily-from", "2023-12-20"]);
    let days: Vec<std::path::PathBuf> = {
        let mut v: Vec<_> = std::fs::read_dir(split.join("_daily"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert!(days.len() >= 10, "{days:?}");
    assert_eq!(days[0].file_name().unwrap(), "2023-12-20");
    let ledger = |dir: &Path, inputs: &[&Path]| {
        let l = dir.to_str().unwrap();
        for input in inputs {
            // Each day's delivery is known the morning after; the main files the morning
            // the daily ones start. Every row must be dated before its delivery.
            let day = input
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| chrono::NaiveDate::parse_from_str(n, "%Y-%m-%d").ok())
                .unwrap_or(if input.ends_with("split") {
                    chrono::NaiveDate::from_ymd_opt(2023, 12, 19).unwrap()
                } else {
                    chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
                });
            let at = format!("{}T08:00:00+08:00", day.succ_opt().unwrap());
            let out = run_ok(&[
                "ingest",
                "--ledger",
                l,
                "--json",
                "--ingested-at",
                &at,
                input.to_str().unwrap(),
            ]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["totals"]["rejected"], 0, "{input:?}: {}", v["totals"]);
            assert_eq!(v["totals"]["duplicates"], 0, "{input:?}");
        }
        yuanxin_ledger::Ledger::open(dir).unwrap().row_counts()
    };
    let mut inputs: Vec<&Path> = vec![&split];
    inputs.extend(days.iter().map(|d| d.as_path()));
    let by_day = ledger(&tmp.path().join("l-split"), &inputs);
    let at_once = ledger(&tmp.path().join("l-whole"), &[&whole]);
    assert_eq!(by_day, at_once, "main files then each day = the whole city");
    // The main files hold nothing dated from the first daily day on.
    for batch in read_parquet(&split.join("escrow_events.parquet")) {
        let ts = batch.column_by_name("ts").unwrap();
        let ts =
            arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampMillisecondType>(ts);
        let last = arrow::compute::max(ts).unwrap();
        let first = chrono::NaiveDate::from_ymd_opt(2023, 12, 20).unwrap();
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        assert!(yuanxin_domain::business_day_of_ms(last) < (first - epoch).num_days());
    }
}
