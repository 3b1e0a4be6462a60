//! End-to-end tests of `yuanxin report monthly`, the regulators' monthly report: its
//! coverage and closure figures against the simulator's hidden truth and a recomputation
//! straight from the source files, its totals against its own cells, district scoping,
//! `--known-at` reproducing an earlier report byte for byte after more data came in, the
//! PDF, and refusals of bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow::array::RecordBatch;

use common::*;

/// The knowledge time of the city's main delivery.
const T0: &str = "2025-06-20T22:00:00+08:00";

struct City {
    dir: PathBuf,
}

impl City {
    fn city(&self) -> PathBuf {
        self.dir.join("city")
    }
    fn ledger(&self) -> PathBuf {
        self.dir.join("ledger")
    }
}

/// A small city of two years (2023-07 to 2025-06) whose last ten days are held back as
/// daily deliveries; the rest ingested at [`T0`]. Built once per test binary.
fn city() -> &'static City {
    static C: OnceLock<City> = OnceLock::new();
    C.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fixture-report");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let c = City { dir };
        simulate(&c.city(), 300, 24, 17, &["--daily-from", "2025-06-21"]);
        run_ok(&[
            "ingest",
            "--ledger",
            c.ledger().to_str().unwrap(),
            "--ingested-at",
            T0,
            c.city().to_str().unwrap(),
        ]);
        c
    })
}

/// Runs the report into `out` (no PDF unless asked); returns stdout.
fn report(ledger: &Path, out: &Path, extra: &[&str]) -> String {
    common::monthly_report_ok(ledger, out, extra)
}

/// A CSV file as rows of named fields (the report's CSVs quote no field these tests read).
fn csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    lines
        .map(|l| {
            head.iter()
                .cloned()
                .zip(l.split(',').map(str::to_owned))
                .collect()
        })
        .collect()
}

fn num(row: &BTreeMap<String, String>, k: &str) -> u64 {
    row[k]
        .parse()
        .unwrap_or_else(|e| panic!("{k}={:?}: {e}", row[k]))
}

fn day(s: &str) -> i32 {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

/// The rows of a source table of this `kind` on a business day of March 2025 (the month
/// the report test reports).
fn march_rows(b: &RecordBatch, kind: &str) -> Vec<usize> {
    let (kinds, at_ms) = (strs(b, "kind"), ts(b, "ts"));
    (0..b.num_rows())
        .filter(|&i| {
            let on = day_of_ms(at_ms[i].unwrap());
            kinds[i].as_deref() == Some(kind)
                && (day("2025-03-01")..=day("2025-03-31")).contains(&on)
        })
        .collect()
}

/// Per district × industry at the day `at`, recomputed from the source merchants table
/// (each merchant's record in force that day) and the simulator's hidden closures:
/// (trading, on 元管家), and the merchants that closed in `[from, at]`.
type Recount = (BTreeMap<(String, String), (u64, u64)>, u64);

fn recount(city: &Path, from: i32, at: i32) -> Recount {
    let m = read_whole(&city.join("merchants.parquet"));
    let (ids, at_ms, district, industry, registered, onboarded) = (
        strs(&m, "merchant_id"),
        ts(&m, "ts"),
        strs(&m, "district"),
        strs(&m, "industry"),
        dates(&m, "registered_on"),
        dates(&m, "ecny_onboarded_on"),
    );
    // The record in force: the latest at or before the day.
    let mut in_force: BTreeMap<String, (i64, usize)> = BTreeMap::new();
    for i in 0..m.num_rows() {
        let t = at_ms[i].unwrap();
        if day_of_ms(t) > at {
            continue;
        }
        let id = ids[i].clone().unwrap();
        if in_force.get(&id).is_none_or(|(u, _)| t >= *u) {
            in_force.insert(id, (t, i));
        }
    }
    let truth = read_whole(&city.join("_truth/merchants.parquet"));
    let closed: BTreeMap<String, Option<i32>> = strs(&truth, "merchant_id")
        .into_iter()
        .zip(dates(&truth, "closed_on"))
        .map(|(id, c)| (id.unwrap(), c))
        .collect();
    let mut cells: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut closed_in = 0;
    for (id, (_, i)) in &in_force {
        let c = closed[id];
        if c.is_some_and(|c| c >= from && c <= at) {
            closed_in += 1;
        }
        if registered[*i].unwrap() > at || c.is_some_and(|c| c <= at) {
            continue;
        }
        let cell = cells
            .entry((district[*i].clone().unwrap(), industry[*i].clone().unwrap()))
            .or_default();
        cell.0 += 1;
        if onboarded[*i].is_some_and(|o| o < at) {
            cell.1 += 1;
        }
    }
    (cells, closed_in)
}

#[test]
fn coverage_and_closures_agree_with_the_simulators_truth_and_the_totals_with_the_cells() {
    let c = city();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("2025-03");
    let said = report(&c.ledger(), &out, &["--month", "2025-03", "--months", "6"]);
    assert!(said.contains("as of 2025-03-31"), "{said}");
    let (truth, closed_in) = recount(&c.city(), day("2025-03-01"), day("2025-03-31"));
    assert!(truth.values().map(|v| v.0).sum::<u64>() > 200);
    // Coverage: every district × industry, zeros included.
    let coverage = csv(&out.join("coverage.csv"));
    assert_eq!(coverage.len(), 11 * 11);
    for row in &coverage {
        let key = (row["district"].clone(), row["industry"].clone());
        let want = truth.get(&key).copied().unwrap_or_default();
        assert_eq!(
            (num(row, "merchants"), num(row, "on_escrow")),
            want,
            "{key:?}"
        );
    }
    // Risk: six months, the report's last; closures in the month as the truth has them;
    // each month's cells add up to the coverage table's at the report's date.
    let risk = csv(&out.join("risk.csv"));
    let months: std::collections::BTreeSet<&str> =
        risk.iter().map(|r| r["as_of"].as_str()).collect();
    assert_eq!(months.len(), 6);
    assert_eq!(months.last(), Some(&"2025-03-31"));
    let now: Vec<_> = risk.iter().filter(|r| r["as_of"] == "2025-03-31").collect();
    assert_eq!(
        now.iter().map(|r| num(r, "closed_in_month")).sum::<u64>(),
        closed_in
    );
    assert_eq!(
        now.iter().map(|r| num(r, "merchants")).sum::<u64>(),
        coverage.iter().map(|r| num(r, "merchants")).sum::<u64>()
    );
    for r in &now {
        let graded = num(r, "graded");
        let by_grade: u64 = r
            .iter()
            .filter(|(k, _)| k.starts_with("grade_"))
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .sum();
        assert_eq!(by_grade, graded);
        assert!(graded <= num(r, "merchants"));
        assert!(num(r, "closed_with_liability") <= num(r, "closed_in_month"));
    }
    // The training institutions' coverage is the two training industries' cells.
    let training = csv(&out.join("training.csv"));
    let all = training.iter().find(|r| r["district"] == "ALL").unwrap();
    let edu = |k: usize| -> u64 {
        truth
            .iter()
            .filter(|((_, i), _)| i == "EDU_SUBJECT" || i == "EDU_NON_SUBJECT")
            .map(|(_, v)| if k == 0 { v.0 } else { v.1 })
            .sum()
    };
    assert_eq!(num(all, "training_merchants"), edu(0));
    assert_eq!(num(all, "on_escrow"), edu(1));
    // Gaps: exactly the listed industries' cells with no merchant on 元管家.
    let listed = [
        "CATERING",
        "HOUSEKEEPING",
        "FITNESS_ENTERTAINMENT",
        "EDU_VOCATIONAL",
        "CULTURE_SPORTS",
        "PET_SERVICES",
        "HAIR_BEAUTY",
        "DRIVING_SCHOOL",
        "CAR_WASH",
    ];
    let mut gaps: Vec<(String, String)> = csv(&out.join("gaps.csv"))
        .into_iter()
        .map(|r| (r["district"].clone(), r["industry"].clone()))
        .collect();
    let mut want: Vec<(String, String)> = coverage
        .iter()
        .filter(|r| listed.contains(&r["industry"].as_str()) && num(r, "on_escrow") == 0)
        .map(|r| (r["district"].clone(), r["industry"].clone()))
        .collect();
    gaps.sort();
    want.sort();
    assert_eq!(gaps, want);
    assert!(
        !gaps.is_empty(),
        "a 300-merchant city leaves some cells empty"
    );
    // The watch list: every entry has evidence or closed owing consumers.
    let watch = csv(&out.join("watchlist.csv"));
    assert!(!watch.is_empty());
    for w in &watch {
        assert!(
            !w["alerts"].is_empty() || !w["closed_on"].is_empty(),
            "{w:?}"
        );
    }
    // Financing: every trading merchant decided on the standard request; the month's loans
    // as the source loans table has them (each disbursement in its borrower's district).
    let financing = csv(&out.join("financing.csv"));
    let loans = read_whole(&c.city().join("loans.parquet"));
    let m = read_whole(&c.city().join("merchants.parquet"));
    let home: BTreeMap<String, String> = strs(&m, "merchant_id")
        .into_iter()
        .zip(strs(&m, "district"))
        .map(|(id, d)| (id.unwrap(), d.unwrap()))
        .collect();
    let mut want: BTreeMap<String, (u64, i128)> = BTreeMap::new();
    let (who, amount) = (strs(&loans, "merchant_id"), fen(&loans, "amount"));
    for i in march_rows(&loans, "DISBURSEMENT") {
        let e = want
            .entry(home[who[i].as_ref().unwrap()].clone())
            .or_default();
        e.0 += 1;
        e.1 += amount[i].unwrap();
    }
    assert!(!want.is_empty(), "the city's banks lent that month");
    for f in &financing {
        let (decided, trading) = (num(f, "decided"), num(f, "trading"));
        assert_eq!(decided + num(f, "undecided"), trading, "{f:?}");
        assert_eq!(
            num(f, "approved") + num(f, "referred") + num(f, "declined"),
            decided
        );
        assert!(num(f, "matched") <= decided);
        if f["district"] == "ALL" {
            continue;
        }
        let (n, yuan_fen) = want.get(&f["district"]).copied().unwrap_or_default();
        assert_eq!(num(f, "loans"), n, "{f:?}");
        let got: f64 = f["loan_amount"].parse().unwrap();
        assert_eq!((got * 100.0).round() as i128, yuan_fen, "{f:?}");
    }
    // Refund requests in the month, by the requesting merchant's cell, as the source
    // escrow table has them.
    let escrow = read_whole(&c.city().join("escrow_events.parquet"));
    let cell_of: BTreeMap<String, (String, String)> = strs(&m, "merchant_id")
        .into_iter()
        .zip(strs(&m, "district").into_iter().zip(strs(&m, "industry")))
        .map(|(id, (d, i))| (id.unwrap(), (d.unwrap(), i.unwrap())))
        .collect();
    let mut asked: BTreeMap<(String, String), u64> = BTreeMap::new();
    let who = strs(&escrow, "merchant_id");
    for i in march_rows(&escrow, "REFUND_REQUESTED") {
        *asked
            .entry(cell_of[who[i].as_ref().unwrap()].clone())
            .or_default() += 1;
    }
    assert!(
        asked.values().sum::<u64>() > 0,
        "consumers asked for refunds that month"
    );
    let got: BTreeMap<(String, String), u64> = now
        .iter()
        .map(|r| {
            (
                (r["district"].clone(), r["industry"].clone()),
                num(r, "refund_requests"),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(got, asked);
    // The page: the headline figure and the five sections.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let trading: u64 = coverage.iter().map(|r| num(r, "merchants")).sum();
    assert!(html.contains(&format!("<b>{trading}</b>")));
    for h in [
        "一、试点覆盖",
        "二、风险监测",
        "三、月度趋势",
        "四、风险监测名单",
    ] {
        assert!(html.contains(h), "{h}");
    }
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
}

#[test]
fn a_report_known_at_an_instant_is_reproduced_byte_for_byte_after_more_data() {
    let c = city();
    let tmp = tempfile::tempdir().unwrap();
    // A ledger of its own, so that ingesting more does not disturb the other tests.
    let ledger = tmp.path().join("ledger");
    run_ok(&[
        "ingest",
        "--ledger",
        ledger.to_str().unwrap(),
        "--ingested-at",
        T0,
        c.city().to_str().unwrap(),
    ]);
    let first = tmp.path().join("first");
    let said = report(&ledger, &first, &["--month", "2025-06", "--no-pdf"]);
    assert!(said.contains("as of 2025-06-20"), "{said}");
    // The last ten days arrive, each a day later.
    let daily = c.city().join("_daily");
    let mut days: Vec<PathBuf> = std::fs::read_dir(&daily)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    days.sort();
    assert_eq!(days.len(), 10);
    for (k, d) in days.iter().enumerate() {
        let at = format!("2025-06-{:02}T22:00:00+08:00", 21 + k);
        run_ok(&[
            "ingest",
            "--ledger",
            ledger.to_str().unwrap(),
            "--ingested-at",
            &at,
            d.to_str().unwrap(),
        ]);
    }
    let again = tmp.path().join("again");
    report(
        &ledger,
        &again,
        &["--month", "2025-06", "--known-at", T0, "--no-pdf"],
    );
    let later = tmp.path().join("later");
    let said = report(&ledger, &later, &["--month", "2025-06", "--no-pdf"]);
    assert!(said.contains("as of 2025-06-30"), "{said}");
    for f in [
        "report.html",
        "coverage.csv",
        "training.csv",
        "gaps.csv",
        "risk.csv",
        "watchlist.csv",
        "financing.csv",
        "loans.csv",
    ] {
        let (a, b) = (
            std::fs::read(first.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
        );
        assert!(a == b, "{f} differs when reproduced at {T0}");
    }
    assert_ne!(
        std::fs::read(first.join("risk.csv")).unwrap(),
        std::fs::read(later.join("risk.csv")).unwrap(),
        "ten more days of data change the month's figures"
    );
}

#[test]
fn a_district_report_holds_its_district_alone() {
    let c = city();
    let tmp = tempfile::tempdir().unwrap();
    let (whole, futian) = (tmp.path().join("city"), tmp.path().join("futian"));
    report(&c.ledger(), &whole, &["--month", "2025-05", "--no-pdf"]);
    let said = report(
        &c.ledger(),
        &futian,
        &["--month", "2025-05", "--district", "福田区", "--no-pdf"],
    );
    assert!(said.contains("FUTIAN"), "{said}");
    for f in [
        "coverage.csv",
        "risk.csv",
        "watchlist.csv",
        "gaps.csv",
        "loans.csv",
    ] {
        let rows = csv(&futian.join(f));
        assert!(rows.iter().all(|r| r["district"] == "FUTIAN"), "{f}");
        let from_city: Vec<_> = csv(&whole.join(f))
            .into_iter()
            .filter(|r| r["district"] == "FUTIAN")
            .collect();
        assert_eq!(
            rows, from_city,
            "{f}: the district's rows of the city's report"
        );
    }
    let html = std::fs::read_to_string(futian.join("report.html")).unwrap();
    assert!(html.contains("福田区"));
    for other in ["罗湖区", "南山区", "宝安区", "全市"] {
        assert!(!html.contains(other), "{other} in Futian's report");
    }
}

#[test]
fn the_report_prints_to_pdf_where_chromium_is_installed() {
    let has_chromium = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("chromium").is_file()));
    if !has_chromium {
        if std::env::var_os("YUANXIN_TESTS_NEED_CHROMIUM").is_some() {
            panic!("chromium is not installed but the PDF test is required");
        }
        eprintln!("skipped: no chromium");
        return;
    }
    let c = city();
    let tmp = tempfile::tempdir().unwrap();
    let said = report(
        &c.ledger(),
        tmp.path(),
        &["--month", "2025-04", "--months", "3"],
    );
    assert!(said.contains("report.pdf"), "{said}");
    let pdf = std::fs::read(tmp.path().join("report.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    assert!(pdf.len() > 10_000);
}

#[test]
fn bad_requests_are_refused_with_the_reason() {
    let c = city();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = c.ledger();
    let refused = |extra: &[&str], why: &str| {
        let mut args = vec!["--no-pdf"];
        args.extend_from_slice(extra);
        let out = common::monthly_report(&ledger, tmp.path(), &args);
        assert!(!out.status.success(), "{extra:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{extra:?}: {err}");
    };
    refused(&["--month", "2025-13"], "is not YYYY-MM");
    refused(&["--month", "2025-3"], "is not YYYY-MM");
    refused(
        &["--month", "2025-03", "--district", "MARS"],
        "not a district",
    );
    refused(&["--month", "2025-03", "--months", "0"], "1–36");
    refused(&["--month", "2025-07"], "had not begun");
    refused(
        &["--month", "2025-03", "--known-at", "yesterday"],
        "RFC 3339",
    );
}
