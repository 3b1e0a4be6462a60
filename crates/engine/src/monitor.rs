//! The regulators' view of the pilot (深市监联〔2023〕15号): coverage against the plan's
//! targets (tasks 一 and 二), and the risk-bearing capacity of pilot merchants by district ×
//! industry and month (task 七), with a watch list — all computed from the ledger as known
//! at one instant, through the same profiles, model and alert rules the lenders see, so a
//! figure here and a lender's alert can never disagree.
//!
//! A month is read at its last day (or at the knowledge time's business date, if that is
//! earlier): the merchants trading then, their escrow and prepaid liability, their grade
//! and PD from the champion, and the early-warning rules of the policy. Money is summed in
//! `Decimal` at fen precision (each merchant's characteristic, an exact number of fen, is
//! rounded back from the profile's float to the fen before it is added).

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Decimal128Type, TimestampMillisecondType};
use chrono::{Datelike, NaiveDate};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use yuanxin_decision::{Catalogue, Outcome, Policy};
use yuanxin_domain::{known, District, Industry};
use yuanxin_ledger::{Ledger, Table};
use yuanxin_model::{Frame, Model};

use crate::served::{decide, latest, month_ends, Merchant, Pick};
use crate::snapshot::standard_request;
use crate::EngineError;

/// Task 一's industries: after-school training in school subjects and in sports, arts and
/// technology (学科类及非学科类校外培训机构), which the plan asks to bring to 30 % on 元管家.
pub const TRAINING: [Industry; 2] = [Industry::EduSubject, Industry::EduNonSubject];

/// Task 一's target share of training institutions on 元管家 (by the end of 2023).
pub const TRAINING_TARGET: f64 = 0.30;

/// Task 二's listed industries: every district is to have at least one pilot merchant in
/// each.
pub const LISTED: [Industry; 9] = [
    Industry::Catering,
    Industry::Housekeeping,
    Industry::FitnessEntertainment,
    Industry::EduVocational,
    Industry::CultureSports,
    Industry::PetServices,
    Industry::HairBeauty,
    Industry::DrivingSchool,
    Industry::CarWash,
];

/// The alert codes a regulator's tables count, in the order they are shown (the lenders'
/// rules; `GRADE_DOWNGRADE` needs a lender's last look and so is not among them).
pub const ALERT_CODES: [&str; 5] = [
    "MERCHANT_CLOSED",
    "ESCROW_COVERAGE_LOW",
    "PREPAID_SALES_SPIKE",
    "COMPLAINT_SURGE",
    "REFUND_REQUESTS_RISING",
];

/// One district × industry (or a total of several) at one date.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Merchants registered and trading (at least one store open).
    pub merchants: u64,
    /// Of them, on 元管家 (joined before the date).
    pub on_escrow: u64,
    /// Consumer contracts with unredeemed value.
    pub active_contracts: u64,
    /// Prepaid liability: value paid in advance and not yet delivered or refunded.
    pub prepaid_liability: Decimal,
    /// The part of it frozen in escrow.
    pub escrow_frozen: Decimal,
    /// The part not covered by frozen escrow funds.
    pub uncovered_liability: Decimal,
    /// Trading merchants per grade, in the master scale's order.
    pub grades: Vec<u64>,
    /// Sum of the graded merchants' PDs (the mean is this over the graded count).
    pub pd_sum: f64,
    /// Complaints on all channels in the 90 days to the date.
    pub complaints_90d: u64,
    /// Complaints about closure or refunds in the 30 days to the date.
    pub closure_refund_complaints_30d: u64,
    /// Refunds requested in the last 180 days and not settled by the date.
    pub refund_backlog: Decimal,
    /// Refund requests consumers made in the month (to the date), from the escrow ledger,
    /// by the merchants of the cell whether trading or closed.
    #[serde(default)]
    pub refund_requests: u64,
    /// Merchants that closed (no store open any more) during the month.
    pub closed_in_month: u64,
    /// Of them, those that closed owing consumers prepaid value: the harm the plan exists
    /// to prevent.
    pub closed_with_liability: u64,
    /// What those owed at the date.
    pub closed_liability: Decimal,
    /// Merchants with each alert (codes of [`ALERT_CODES`]).
    pub alerts: BTreeMap<String, u64>,
}

impl Cell {
    fn empty(grades: usize) -> Cell {
        Cell {
            grades: vec![0; grades],
            ..Cell::default()
        }
    }

    /// Adds another cell's counts and sums (for district and city totals).
    pub fn add(&mut self, o: &Cell) {
        self.merchants += o.merchants;
        self.on_escrow += o.on_escrow;
        self.active_contracts += o.active_contracts;
        self.prepaid_liability += o.prepaid_liability;
        self.escrow_frozen += o.escrow_frozen;
        self.uncovered_liability += o.uncovered_liability;
        if self.grades.len() < o.grades.len() {
            self.grades.resize(o.grades.len(), 0);
        }
        for (a, b) in self.grades.iter_mut().zip(&o.grades) {
            *a += b;
        }
        self.pd_sum += o.pd_sum;
        self.complaints_90d += o.complaints_90d;
        self.closure_refund_complaints_30d += o.closure_refund_complaints_30d;
        self.refund_backlog += o.refund_backlog;
        self.refund_requests += o.refund_requests;
        self.closed_in_month += o.closed_in_month;
        self.closed_with_liability += o.closed_with_liability;
        self.closed_liability += o.closed_liability;
        for (k, v) in &o.alerts {
            *self.alerts.entry(k.clone()).or_default() += v;
        }
    }

    /// Merchants graded.
    pub fn graded(&self) -> u64 {
        self.grades.iter().sum()
    }

    /// Mean PD of the graded merchants (none when there are none).
    pub fn mean_pd(&self) -> Option<f64> {
        let n = self.graded();
        (n > 0).then(|| self.pd_sum / n as f64)
    }

    /// Share of trading merchants on 元管家.
    pub fn coverage_rate(&self) -> Option<f64> {
        ratio(self.on_escrow, self.merchants)
    }

    /// Frozen escrow funds over prepaid liability.
    pub fn escrow_coverage(&self) -> Option<f64> {
        if self.prepaid_liability.is_zero() {
            return None;
        }
        rust_decimal::prelude::ToPrimitive::to_f64(&(self.escrow_frozen / self.prepaid_liability))
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// One month: every district × industry cell with merchants, at the month's date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Month {
    /// The date the month is read at.
    pub as_of: NaiveDate,
    /// The cells.
    #[serde(serialize_with = "cells_as_list", deserialize_with = "cells_from_list")]
    pub cells: BTreeMap<(District, Industry), Cell>,
    /// Loans disbursed in the month (to its date), by the borrower's district.
    pub loans: BTreeMap<District, Loans>,
}

/// Loans banks disbursed (the ledger's `loans` table), in a month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Loans {
    /// Disbursements.
    pub loans: u64,
    /// Merchants that borrowed.
    pub merchants: u64,
    /// Yuan disbursed.
    pub amount: Decimal,
    /// Σ amount × annual rate (the amount-weighted mean rate is this over `amount`).
    pub rate_amount: Decimal,
    /// Disbursements and yuan by lender.
    pub by_lender: BTreeMap<String, (u64, Decimal)>,
}

impl Loans {
    /// Adds another district's (merchants are distinct across districts).
    pub fn add(&mut self, o: &Loans) {
        self.loans += o.loans;
        self.merchants += o.merchants;
        self.amount += o.amount;
        self.rate_amount += o.rate_amount;
        for (k, (n, a)) in &o.by_lender {
            let e = self.by_lender.entry(k.clone()).or_default();
            e.0 += n;
            e.1 += a;
        }
    }

    /// The amount-weighted mean annual rate.
    pub fn mean_rate(&self) -> Option<Decimal> {
        (!self.amount.is_zero()).then(|| (self.rate_amount / self.amount).round_dp(6))
    }
}

/// What Yuanxin's decisions offer the trading merchants of a district at the report's
/// date: each decided on the standard request ([`standard_request`]: 100,000 yuan of working
/// capital over 12 months), as a standing offer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Financing {
    /// Trading merchants decided.
    pub decided: u64,
    /// Approved (possibly for less than asked).
    pub approved: u64,
    /// Referred to manual review.
    pub referred: u64,
    /// Declined.
    pub declined: u64,
    /// Trading merchants that could not be decided (an unscorable profile).
    pub undecided: u64,
    /// Decided merchants that qualify for at least one bank product.
    pub matched: u64,
    /// Yuan the approvals offer.
    pub offered_amount: Decimal,
    /// Σ of the approved offers' annual rates, as shares (the mean is this over `approved`).
    pub rate_sum: Decimal,
    /// Σ of their rates after support schemes.
    pub effective_rate_sum: Decimal,
    /// Interest the support schemes would pay over the approved offers' terms.
    pub support_interest: Decimal,
    /// Approved offers carrying each support scheme.
    pub schemes: BTreeMap<String, u64>,
    /// Approved offers by lending institution.
    pub institutions: BTreeMap<String, u64>,
}

impl Financing {
    /// Adds another district's.
    pub fn add(&mut self, o: &Financing) {
        self.decided += o.decided;
        self.approved += o.approved;
        self.referred += o.referred;
        self.declined += o.declined;
        self.undecided += o.undecided;
        self.matched += o.matched;
        self.offered_amount += o.offered_amount;
        self.rate_sum += o.rate_sum;
        self.effective_rate_sum += o.effective_rate_sum;
        self.support_interest += o.support_interest;
        for (k, v) in &o.schemes {
            *self.schemes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.institutions {
            *self.institutions.entry(k.clone()).or_default() += v;
        }
    }

    /// Mean annual rate of the approved offers, before and after support.
    pub fn mean_rates(&self) -> Option<(Decimal, Decimal)> {
        (self.approved > 0).then(|| {
            let n = Decimal::from(self.approved);
            (
                (self.rate_sum / n).round_dp(6),
                (self.effective_rate_sum / n).round_dp(6),
            )
        })
    }
}

/// The cells as a list of rows with their district and industry (JSON has no tuple keys).
fn cells_as_list<S: serde::Serializer>(
    cells: &BTreeMap<(District, Industry), Cell>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(Serialize)]
    struct Row<'a> {
        district: District,
        industry: Industry,
        #[serde(flatten)]
        cell: &'a Cell,
    }
    let mut seq = s.serialize_seq(Some(cells.len()))?;
    for ((district, industry), cell) in cells {
        seq.serialize_element(&Row {
            district: *district,
            industry: *industry,
            cell,
        })?;
    }
    seq.end()
}

fn cells_from_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<(District, Industry), Cell>, D::Error> {
    #[derive(Deserialize)]
    struct Row {
        district: District,
        industry: Industry,
        #[serde(flatten)]
        cell: Cell,
    }
    let rows: Vec<Row> = Vec::deserialize(d)?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.district, r.industry), r.cell))
        .collect())
}

impl Month {
    /// The loans of the districts `keep` selects.
    pub fn loans_total(&self, keep: impl Fn(District) -> bool) -> Loans {
        let mut t = Loans::default();
        for (d, l) in &self.loans {
            if keep(*d) {
                t.add(l);
            }
        }
        t
    }

    /// The total of the cells `keep` selects.
    pub fn total(&self, keep: impl Fn(District, Industry) -> bool) -> Cell {
        let mut t = Cell::default();
        for ((d, i), c) in &self.cells {
            if keep(*d, *i) {
                t.add(c);
            }
        }
        t
    }
}

/// One alert of a watch-list entry: the rule, in words, with the value that crossed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Rule code.
    pub code: String,
    /// Chinese.
    pub text_zh: String,
    /// English.
    pub text_en: String,
    /// The merchant's value.
    pub value: f64,
    /// The rule's threshold.
    pub threshold: f64,
}

/// A merchant on the watch list: trading with at least one alert at the report's date, or
/// closed during the month owing consumers prepaid value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEntry {
    /// Merchant id.
    pub merchant_id: String,
    /// District.
    pub district: District,
    /// Industry.
    pub industry: Industry,
    /// Grade, when graded.
    pub grade: Option<String>,
    /// PD, when graded.
    pub pd: Option<f64>,
    /// The day it closed, when it has.
    pub closed_on: Option<NaiveDate>,
    /// Prepaid liability at the date.
    pub prepaid_liability: Decimal,
    /// The part not covered by escrow.
    pub uncovered_liability: Decimal,
    /// Why it is on the list.
    pub evidence: Vec<Evidence>,
}

/// What a monthly report covers.
#[derive(Debug, Clone)]
pub struct MonthlyOptions {
    /// The report's month (any day of it).
    pub month: NaiveDate,
    /// Months of trend, the report's month included (1–36).
    pub months: usize,
    /// Only this district's merchants (a district's own report, or a district
    /// regulator's view).
    pub district: Option<District>,
    /// Only what the ledger knew at this instant (ms since the epoch); by default, the
    /// last batch's knowledge time, so a report of an unchanged ledger is the same report.
    pub known_at_ms: Option<i64>,
}

/// The regulators' monthly figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthlyReport {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The knowledge time the figures are as of (RFC 3339, +08:00).
    pub known_at: String,
    /// The district the report is limited to.
    pub district: Option<District>,
    /// The model that graded the merchants.
    pub model_id: String,
    /// The master scale's grades, best first.
    pub grade_names: Vec<String>,
    /// The trend months, oldest first; the last is the report's month.
    pub months: Vec<Month>,
    /// The watch list at the report's date.
    pub watch: Vec<WatchEntry>,
    /// Standing offers at the report's date, by district.
    pub financing: BTreeMap<District, Financing>,
    /// Merchants left out because their profile names no district.
    pub unplaced: u64,
}

impl MonthlyReport {
    /// The report's month.
    pub fn current(&self) -> Option<&Month> {
        self.months.last()
    }

    /// The month before it, when the trend has one.
    pub fn previous(&self) -> Option<&Month> {
        self.months
            .len()
            .checked_sub(2)
            .and_then(|i| self.months.get(i))
    }

    /// The districts the report covers.
    pub fn districts(&self) -> Vec<District> {
        match self.district {
            Some(d) => vec![d],
            None => District::ALL.to_vec(),
        }
    }

    /// The watch-list entries of one district (all of them for `None`).
    pub fn watch_in(&self, district: Option<District>) -> impl Iterator<Item = &WatchEntry> {
        self.watch
            .iter()
            .filter(move |w| district.is_none_or(|d| w.district == d))
    }

    /// The report limited to one district (a district regulator's view: its cells, loans
    /// and standing offers; `None` keeps every district), without the watch list, which can
    /// be long and is paged through [`MonthlyReport::watch_in`] rather than copied.
    pub fn figures(&self, district: Option<District>) -> MonthlyReport {
        let keep = |d: &District| district.is_none_or(|x| x == *d);
        MonthlyReport {
            district: district.or(self.district),
            months: self
                .months
                .iter()
                .map(|m| Month {
                    as_of: m.as_of,
                    cells: m
                        .cells
                        .iter()
                        .filter(|((d, _), _)| keep(d))
                        .map(|(k, c)| (*k, c.clone()))
                        .collect(),
                    loans: m
                        .loans
                        .iter()
                        .filter(|(d, _)| keep(d))
                        .map(|(k, l)| (*k, l.clone()))
                        .collect(),
                })
                .collect(),
            financing: self
                .financing
                .iter()
                .filter(|(d, _)| keep(d))
                .map(|(k, f)| (*k, f.clone()))
                .collect(),
            ..self.clone_without_rows()
        }
    }

    /// The report's header fields, with no rows.
    fn clone_without_rows(&self) -> MonthlyReport {
        MonthlyReport {
            month: self.month.clone(),
            known_at: self.known_at.clone(),
            district: self.district,
            model_id: self.model_id.clone(),
            grade_names: self.grade_names.clone(),
            months: Vec::new(),
            watch: Vec::new(),
            financing: BTreeMap::new(),
            unplaced: self.unplaced,
        }
    }

    /// The standing offers of the districts `keep` selects.
    pub fn financing_total(&self, keep: impl Fn(District) -> bool) -> Financing {
        let mut t = Financing::default();
        for (d, f) in &self.financing {
            if keep(*d) {
                t.add(f);
            }
        }
        t
    }

    /// Districts × listed industries with no merchant on 元管家 at the report's date.
    pub fn gaps(&self) -> Vec<(District, Industry)> {
        let Some(m) = self.current() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for d in self.districts() {
            for i in LISTED {
                if m.cells.get(&(d, i)).is_none_or(|c| c.on_escrow == 0) {
                    out.push((d, i));
                }
            }
        }
        out
    }
}

fn yuan(x: Option<f64>) -> Decimal {
    x.filter(|v| v.is_finite())
        .and_then(Decimal::from_f64)
        .map(|d| d.round_dp(2))
        .unwrap_or_default()
}

fn count(x: Option<f64>) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    x.filter(|v| v.is_finite() && *v > 0.0)
        .map_or(0, |v| v.round() as u64)
}

/// The folder a city-wide monthly report is written to under a reports folder (the
/// service reads `report.json` there).
pub fn report_folder(
    reports: &Path,
    month: &str,
    district: Option<District>,
) -> std::path::PathBuf {
    let mut name = format!("monthly-{month}");
    if let Some(d) = district {
        name.push('-');
        name.push_str(d.as_str());
    }
    reports.join(name)
}

/// The city-wide report of `month` (`YYYY-MM`) written under `reports`, if there is one.
pub fn read_report(reports: &Path, month: &str) -> Result<Option<MonthlyReport>, EngineError> {
    let path = report_folder(reports, month, None).join("report.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(EngineError::Read { path, source }),
    };
    let report: MonthlyReport =
        serde_json::from_slice(&bytes).map_err(|e| EngineError::Profiles {
            path: path.clone(),
            why: format!("not a monthly report: {e}"),
        })?;
    if report.district.is_some() {
        return Err(EngineError::Profiles {
            path,
            why: "a district's report where the city's was expected".into(),
        });
    }
    Ok(Some(report))
}

/// The last day of `d`'s month.
pub fn month_end(d: NaiveDate) -> Option<NaiveDate> {
    d.with_day(1)?
        .checked_add_months(chrono::Months::new(1))?
        .pred_opt()
}

/// Adds one merchant to its month's cells, and to the watch list and the standing offers
/// when asked (the report's month).
struct Tally<'a> {
    grades: &'a [String],
    model: &'a Model,
    policy: &'a Policy,
    catalogue: &'a Catalogue,
}

/// What the report's month adds beyond the cells.
struct Extra<'a> {
    watch: &'a mut Vec<WatchEntry>,
    financing: &'a mut BTreeMap<District, Financing>,
}

impl Tally<'_> {
    fn add(&self, id: &str, m: &Merchant, month: &mut Month, extra: Option<&mut Extra>) -> bool {
        let Some(district) = m.district else {
            return false;
        };
        let f = |n: &str| m.features.get(n).copied().flatten();
        let cell = month
            .cells
            .entry((district, m.industry))
            .or_insert_with(|| Cell::empty(self.grades.len()));
        let liability = yuan(f(known!("prepaid_liability")));
        let uncovered = yuan(f(known!("uncovered_liability")));
        let standing = match m.closed_on {
            Some(on) => {
                // Closed: counted in the month it closed, and only then.
                if (on.year(), on.month()) != (month.as_of.year(), month.as_of.month()) {
                    return true;
                }
                cell.closed_in_month += 1;
                if liability > Decimal::ZERO {
                    cell.closed_with_liability += 1;
                    cell.closed_liability += liability;
                }
                yuanxin_decision::Standing::Closed(on)
            }
            None => {
                cell.merchants += 1;
                if f(known!("months_on_ecny_platform")).is_some_and(|x| x > 0.0) {
                    cell.on_escrow += 1;
                }
                cell.active_contracts += count(f(known!("active_contracts")));
                cell.prepaid_liability += liability;
                cell.uncovered_liability += uncovered;
                cell.escrow_frozen += (liability - uncovered).max(Decimal::ZERO);
                cell.complaints_90d += count(f(known!("complaints_90d")));
                cell.closure_refund_complaints_30d +=
                    count(f(known!("closure_refund_complaints_30d")));
                cell.refund_backlog += yuan(f(known!("refund_backlog")));
                match &m.scored {
                    Ok(s) => {
                        if let Some(g) = self.grades.iter().position(|g| *g == s.grade) {
                            cell.grades[g] += 1;
                            cell.pd_sum += s.pd;
                        }
                        yuanxin_decision::Standing::Graded(&s.grade)
                    }
                    Err(_) => yuanxin_decision::Standing::Graded(""),
                }
            }
        };
        let alerts = yuanxin_decision::alerts(
            &m.features,
            standing,
            self.grades,
            None,
            &self.policy.alerts,
        );
        for a in &alerts {
            *cell.alerts.entry(a.code.to_owned()).or_default() += 1;
        }
        let closed_owing = m.closed_on.is_some() && liability > Decimal::ZERO;
        if let Some(Extra { watch, financing }) = extra {
            if m.closed_on.is_none() {
                self.offer(id, m, financing.entry(district).or_default());
            }
            if (m.closed_on.is_none() && !alerts.is_empty()) || closed_owing {
                let scored = m.scored.as_ref().ok().filter(|_| m.closed_on.is_none());
                watch.push(WatchEntry {
                    merchant_id: id.to_owned(),
                    district,
                    industry: m.industry,
                    grade: scored.map(|s| s.grade.clone()),
                    pd: scored.map(|s| s.pd),
                    closed_on: m.closed_on,
                    prepaid_liability: liability,
                    uncovered_liability: uncovered,
                    evidence: alerts
                        .into_iter()
                        .map(|a| Evidence {
                            code: a.code.to_owned(),
                            text_zh: a.text_zh,
                            text_en: a.text_en,
                            value: a.value,
                            threshold: a.threshold,
                        })
                        .collect(),
                });
            }
        }
        true
    }

    /// A trading merchant's standing offer, into its district's figures.
    fn offer(&self, id: &str, m: &Merchant, f: &mut Financing) {
        let Ok(d) = decide(
            self.model,
            self.policy,
            self.catalogue,
            id,
            m,
            &standard_request(),
            false,
        ) else {
            f.undecided += 1;
            return;
        };
        f.decided += 1;
        if !d.offers.is_empty() {
            f.matched += 1;
        }
        match d.outcome {
            Outcome::Approve => f.approved += 1,
            Outcome::Refer => f.referred += 1,
            Outcome::Decline => f.declined += 1,
        }
        if let (Outcome::Approve, Some(o)) = (d.outcome, &d.offer) {
            f.offered_amount += d.approved_amount;
            // Prices are % a year; the report's rates are shares, as the loans table's.
            f.rate_sum += o.price.rate / Decimal::ONE_HUNDRED;
            f.effective_rate_sum += o.price.effective_rate / Decimal::ONE_HUNDRED;
            f.support_interest +=
                (o.total_interest - o.total_interest_after_support).max(Decimal::ZERO);
            for s in &o.support {
                *f.schemes.entry(s.id.clone()).or_default() += 1;
            }
            *f.institutions.entry(o.institution.clone()).or_default() += 1;
        }
    }
}

/// One disbursement of the `loans` table.
struct Disbursement {
    merchant: String,
    day: NaiveDate,
    lender: String,
    amount: Decimal,
    rate: Decimal,
}

/// Every disbursement the ledger knew at `known_at_ms`.
fn disbursements(l: &Ledger, known_at_ms: i64) -> Result<Vec<Disbursement>, String> {
    let columns = [
        "merchant_id",
        "ts",
        "kind",
        "lender",
        "amount",
        "annual_rate",
    ];
    let batches = l
        .scan(Table::Loans, Some(known_at_ms), Some(&columns))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for b in batches {
        let col = |name: &str| column(&b, "loans", name);
        let text = |name: &str| text_column(&b, "loans", name);
        let (ids, kinds, lenders) = (text("merchant_id")?, text("kind")?, text("lender")?);
        let (ids, kinds, lenders) = (
            ids.as_string::<i32>(),
            kinds.as_string::<i32>(),
            lenders.as_string::<i32>(),
        );
        let ts = ts_column(&b, "loans")?;
        let amounts = col("amount")?
            .as_primitive_opt::<Decimal128Type>()
            .ok_or("loans: amount is not a decimal")?;
        let rates = col("annual_rate")?
            .as_primitive_opt::<Decimal128Type>()
            .ok_or("loans: annual_rate is not a decimal")?;
        let (amount_scale, rate_scale) = (decimal_scale(amounts), decimal_scale(rates));
        for i in 0..b.num_rows() {
            if kinds.is_null(i)
                || kinds.value(i) != "DISBURSEMENT"
                || ts.is_null(i)
                || amounts.is_null(i)
            {
                continue;
            }
            let Some(day) =
                yuanxin_domain::ts_from_millis(ts.value(i)).map(yuanxin_domain::business_date)
            else {
                continue;
            };
            out.push(Disbursement {
                merchant: ids.value(i).to_owned(),
                day,
                lender: lenders.value(i).to_owned(),
                amount: Decimal::from_i128_with_scale(amounts.value(i), amount_scale),
                rate: if rates.is_null(i) {
                    Decimal::ZERO
                } else {
                    Decimal::from_i128_with_scale(rates.value(i), rate_scale)
                },
            });
        }
    }
    Ok(out)
}

/// Refund requests by merchant in each of `months` (`YYYY-MM`, up to the day given), read
/// from those months' partitions of the escrow ledger only (two columns), as the ledger
/// knew them at `known_at_ms`.
fn refund_requests(
    l: &Ledger,
    known_at_ms: i64,
    months: &[(String, NaiveDate)],
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, String> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let columns = ["merchant_id", "ts", "kind"];
    for f in l.files(Table::EscrowEvents, Some(known_at_ms)) {
        let Some((month, to)) = months.iter().find(|(m, _)| *m == f.month) else {
            continue;
        };
        let counts = out.entry(month.clone()).or_default();
        let path = l.root().join(&f.path);
        l.scan_file_as_of(f, Some(known_at_ms), Some(&columns), &mut |b| {
            let fail = |problem: String| yuanxin_ledger::LedgerError::Storage {
                path: path.clone(),
                problem,
            };
            let text = |name: &str| text_column(&b, "escrow_events", name).map_err(fail);
            let (ids, kinds) = (text("merchant_id")?, text("kind")?);
            let (ids, kinds) = (ids.as_string::<i32>(), kinds.as_string::<i32>());
            let ts = ts_column(&b, "escrow_events").map_err(fail)?;
            for i in 0..b.num_rows() {
                if kinds.is_null(i) || kinds.value(i) != "REFUND_REQUESTED" || ts.is_null(i) {
                    continue;
                }
                let day =
                    yuanxin_domain::ts_from_millis(ts.value(i)).map(yuanxin_domain::business_date);
                if day.is_some_and(|d| d <= *to) {
                    *counts.entry(ids.value(i).to_owned()).or_default() += 1;
                }
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A column of a ledger table's batch, by name.
fn column<'b>(
    b: &'b arrow::record_batch::RecordBatch,
    table: &str,
    name: &str,
) -> Result<&'b arrow::array::ArrayRef, String> {
    b.column_by_name(name)
        .ok_or_else(|| format!("{table}: no column {name}"))
}

/// A column as text (ids and kinds may be stored dictionary-encoded).
fn text_column(
    b: &arrow::record_batch::RecordBatch,
    table: &str,
    name: &str,
) -> Result<arrow::array::ArrayRef, String> {
    arrow::compute::cast(column(b, table, name)?, &DataType::Utf8).map_err(|e| e.to_string())
}

/// The `ts` column, milliseconds.
fn ts_column<'b>(
    b: &'b arrow::record_batch::RecordBatch,
    table: &str,
) -> Result<&'b arrow::array::TimestampMillisecondArray, String> {
    column(b, table, "ts")?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| format!("{table}: ts is not a millisecond timestamp"))
}

fn decimal_scale(a: &arrow::array::Decimal128Array) -> u32 {
    match a.data_type() {
        DataType::Decimal128(_, s) => u32::try_from(*s).unwrap_or(0),
        _ => 0,
    }
}

/// Builds the monthly figures from a ledger: profiles of every merchant at the trend's
/// month-ends as the ledger knew them at the knowledge time (written to `scratch`, a file
/// removed afterwards), graded by `model`, alerts by the policy's rules, standing offers
/// by the policy and the catalogue, and the loans the ledger records.
pub fn monthly_report(
    ledger: &Path,
    model: &Model,
    policy: &Policy,
    catalogue: &Catalogue,
    opts: &MonthlyOptions,
    scratch: &Path,
) -> Result<MonthlyReport, EngineError> {
    let fail = |why: String| EngineError::Refresh {
        path: ledger.to_path_buf(),
        why,
    };
    if !(1..=36).contains(&opts.months) {
        return Err(fail(format!(
            "months of trend must be 1–36, not {}",
            opts.months
        )));
    }
    let l = Ledger::open(ledger).map_err(|e| fail(e.to_string()))?;
    let known_at_ms = match opts.known_at_ms {
        Some(t) => t,
        None => l
            .manifest()
            .batches
            .last()
            .map(|b| b.ingested_at_ms)
            .ok_or_else(|| fail("the ledger has no batches".into()))?,
    };
    let known = yuanxin_domain::ts_from_millis(known_at_ms)
        .ok_or_else(|| fail(format!("knowledge time {known_at_ms} ms is out of range")))?;
    let known_day = yuanxin_domain::business_date(known);
    let first = opts
        .month
        .with_day(1)
        .ok_or_else(|| fail("bad month".into()))?;
    if known_day < first {
        return Err(fail(format!(
            "{} had not begun by the knowledge time {}",
            first.format("%Y-%m"),
            known
                .with_timezone(&yuanxin_domain::shanghai())
                .to_rfc3339()
        )));
    }
    let end = month_end(first).ok_or_else(|| fail("bad month".into()))?;
    let dates = month_ends(end.min(known_day), opts.months);
    let mut options = yuanxin_profile::ProfileOptions::at(dates.clone());
    options.known_at_ms = Some(known_at_ms);
    let built = yuanxin_profile::build_to_parquet(&l, &options, scratch, &mut |_, _| {})
        .map_err(|e| fail(e.to_string()));
    let frame = built.and_then(|_| {
        Frame::read(scratch, &model.categorical_features()).map_err(|e| fail(e.to_string()))
    });
    let _ = std::fs::remove_file(scratch);
    let frame = frame?;
    let grade_names: Vec<String> = model
        .master_scale
        .0
        .iter()
        .map(|g| g.name.clone())
        .collect();
    let tally = Tally {
        grades: &grade_names,
        model,
        policy,
        catalogue,
    };
    let loans = disbursements(&l, known_at_ms).map_err(fail)?;
    let mut months = Vec::with_capacity(dates.len());
    let mut watch = Vec::new();
    let mut financing = BTreeMap::new();
    let mut unplaced = 0;
    // Where each merchant's latest profile with a district places it: the cell its refund
    // requests and the district its loans count in.
    let mut place: BTreeMap<String, (District, Industry)> = BTreeMap::new();
    for (k, &date) in dates.iter().enumerate() {
        let pick = Pick {
            merchant: None,
            as_of: Some(date),
        };
        let merchants = latest(&frame, scratch, model, &pick)?;
        let mut month = Month {
            as_of: date,
            cells: BTreeMap::new(),
            loans: BTreeMap::new(),
        };
        let last = k + 1 == dates.len();
        for (id, m) in &merchants {
            if let Some(d) = m.district {
                place.insert(id.clone(), (d, m.industry));
            }
            if opts.district.is_some() && m.district != opts.district {
                continue;
            }
            let mut extra = Extra {
                watch: &mut watch,
                financing: &mut financing,
            };
            if !tally.add(id, m, &mut month, last.then_some(&mut extra)) && last {
                unplaced += 1;
            }
        }
        months.push(month);
    }
    // Refund requests, each in its month, in the requesting merchant's cell.
    let wanted: Vec<(String, NaiveDate)> = months
        .iter()
        .map(|m| (m.as_of.format("%Y-%m").to_string(), m.as_of))
        .collect();
    let refunds = refund_requests(&l, known_at_ms, &wanted).map_err(fail)?;
    for (month, (key, _)) in months.iter_mut().zip(&wanted) {
        let Some(counts) = refunds.get(key) else {
            continue;
        };
        for (id, n) in counts {
            let Some(&(d, i)) = place.get(id) else {
                continue;
            };
            if opts.district.is_some_and(|x| x != d) {
                continue;
            }
            month
                .cells
                .entry((d, i))
                .or_insert_with(|| Cell::empty(grade_names.len()))
                .refund_requests += n;
        }
    }
    // Disbursements, each in its month, by the borrower's district (as its latest profile
    // places it).
    for month in &mut months {
        let (y, mo, to) = (month.as_of.year(), month.as_of.month(), month.as_of);
        let mut borrowers: BTreeMap<District, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for d in loans
            .iter()
            .filter(|d| d.day <= to && d.day.year() == y && d.day.month() == mo)
        {
            let Some(&(district, _)) = place.get(&d.merchant) else {
                continue;
            };
            if opts.district.is_some_and(|x| x != district) {
                continue;
            }
            let t = month.loans.entry(district).or_default();
            t.loans += 1;
            t.amount += d.amount;
            t.rate_amount += d.amount * d.rate;
            let e = t.by_lender.entry(d.lender.clone()).or_default();
            e.0 += 1;
            e.1 += d.amount;
            borrowers.entry(district).or_default().insert(&d.merchant);
        }
        for (district, set) in borrowers {
            if let Some(t) = month.loans.get_mut(&district) {
                t.merchants = set.len() as u64;
            }
        }
    }
    // Closures first, then the most alerts, then the most uncovered liability.
    watch.sort_by(|a, b| {
        b.closed_on
            .is_some()
            .cmp(&a.closed_on.is_some())
            .then(b.evidence.len().cmp(&a.evidence.len()))
            .then(b.uncovered_liability.cmp(&a.uncovered_liability))
            .then(a.merchant_id.cmp(&b.merchant_id))
    });
    Ok(MonthlyReport {
        month: first.format("%Y-%m").to_string(),
        known_at: known
            .with_timezone(&yuanxin_domain::shanghai())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        district: opts.district,
        model_id: model.id.clone(),
        grade_names,
        months,
        watch,
        financing,
        unplaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_add_up_and_ratios_need_a_denominator() {
        let mut a = Cell::empty(2);
        a.merchants = 4;
        a.on_escrow = 1;
        a.prepaid_liability = Decimal::new(10_000, 2);
        a.escrow_frozen = Decimal::new(2_500, 2);
        a.grades = vec![1, 3];
        a.pd_sum = 0.4;
        a.alerts.insert("COMPLAINT_SURGE".into(), 2);
        let mut t = Cell::default();
        assert_eq!(t.mean_pd(), None);
        assert_eq!(t.coverage_rate(), None);
        assert_eq!(t.escrow_coverage(), None);
        t.add(&a);
        t.add(&a);
        assert_eq!(t.merchants, 8);
        assert_eq!(t.grades, vec![2, 6]);
        assert_eq!(t.alerts["COMPLAINT_SURGE"], 4);
        assert_eq!(t.coverage_rate(), Some(0.25));
        assert_eq!(t.escrow_coverage(), Some(0.25));
        assert!((t.mean_pd().unwrap() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn yuan_rounds_profile_floats_back_to_the_fen() {
        assert_eq!(yuan(Some(1234.56)), Decimal::new(123_456, 2));
        assert_eq!(yuan(Some(0.1 + 0.2)), Decimal::new(30, 2));
        assert_eq!(yuan(Some(f64::NAN)), Decimal::ZERO);
        assert_eq!(yuan(None), Decimal::ZERO);
    }

    #[test]
    fn month_ends_are_the_last_day() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(month_end(d("2024-02-10")), Some(d("2024-02-29")));
        assert_eq!(month_end(d("2025-12-31")), Some(d("2025-12-31")));
    }
}
