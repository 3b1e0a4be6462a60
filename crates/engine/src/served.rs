//! The served state and the use cases on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use yuanxin_decision::{
    Alert, Applicant, Catalogue, Decision, LastSeen, LoanRequest, ModelReason, Policy,
};
use yuanxin_domain::vocabulary::columns;
use yuanxin_domain::{known, District, Industry};
use yuanxin_model::metrics::psi_verdict;
use yuanxin_model::registry::Registry;
use yuanxin_model::{Column, Frame, Model, ModelError, Scored};

use crate::EngineError;

/// Where the served state is read from.
#[derive(Debug, Clone)]
pub struct Files {
    /// Registry folder (the champion is served).
    pub models: PathBuf,
    /// Latest profiles (Parquet from `yuanxin profile`).
    pub profiles: PathBuf,
    /// Policy file.
    pub policy: PathBuf,
    /// Catalogue file.
    pub catalogue: PathBuf,
}

/// The numeric ranges a request is checked against, from the loaded catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The shortest term any product offers, months.
    pub term_min: u32,
    /// The longest term any product offers, months.
    pub term_max: u32,
}

impl Bounds {
    /// Before any catalogue is loaded (a service answers nothing that uses them then).
    pub const UNLOADED: Bounds = Bounds {
        term_min: 1,
        term_max: 360,
    };

    /// The terms a catalogue's products offer (1–1 for an empty catalogue).
    pub fn of(catalogue: &Catalogue) -> Bounds {
        let terms = || catalogue.products.iter();
        Bounds {
            term_min: terms().map(|p| p.min_term_months).min().unwrap_or(1).max(1),
            term_max: terms().map(|p| p.max_term_months).max().unwrap_or(1).max(1),
        }
    }
}

/// One merchant's profile row, scored.
#[derive(Debug, Clone)]
pub struct Merchant {
    /// Profile date.
    pub as_of: NaiveDate,
    /// Industry.
    pub industry: Industry,
    /// District (none in a profile file written without it).
    pub district: Option<District>,
    /// Characteristics by name (None = missing).
    pub features: BTreeMap<String, Option<f64>>,
    /// The day the merchant closed (no store open), if it had by `as_of`.
    pub closed_on: Option<NaiveDate>,
    /// The model's scoring, or why it cannot score the row.
    pub scored: Result<Scored, String>,
    /// The merchant's earlier rows of the same file, oldest first, each scored by the same
    /// model: the month-end snapshots a merchant's score history is drawn from.
    pub history: Vec<Point>,
}

/// A merchant's standing at one earlier profile date (no reasons: a history shows the
/// trend, the latest row explains it).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Profile date.
    pub as_of: NaiveDate,
    /// Whether the merchant had closed by then.
    pub closed: bool,
    /// Score, PD and grade; `None` when the merchant had closed or the row is unscorable.
    pub scored: Option<(i64, f64, String)>,
}

/// What is served of a merchant: its scoring, or its closure (a closed merchant is never
/// graded, whatever the model makes of its last profile).
#[derive(Debug, Clone, Copy)]
pub enum Standing<'a> {
    /// Trading, scored.
    Scored(&'a Scored),
    /// Closed on this day.
    Closed(NaiveDate),
}

impl Merchant {
    /// The scoring or the closure, or [`EngineError::Unscorable`].
    pub fn standing(&self, id: &str) -> Result<Standing<'_>, EngineError> {
        if let Some(on) = self.closed_on {
            return Ok(Standing::Closed(on));
        }
        self.scored
            .as_ref()
            .map(Standing::Scored)
            .map_err(|why| EngineError::Unscorable {
                id: id.to_owned(),
                why: why.clone(),
            })
    }

    /// The scoring of a merchant that trades: [`EngineError::Closed`] for a closed one,
    /// [`EngineError::Unscorable`] when the model cannot score it.
    pub fn scored(&self, id: &str) -> Result<&Scored, EngineError> {
        match self.standing(id)? {
            Standing::Scored(s) => Ok(s),
            Standing::Closed(on) => Err(EngineError::Closed {
                id: id.to_owned(),
                on,
            }),
        }
    }
}

/// Which profile rows to take from a file.
#[derive(Debug, Clone, Default)]
pub struct Pick {
    /// Only this merchant.
    pub merchant: Option<String>,
    /// Only rows of this date (else each merchant's latest).
    pub as_of: Option<NaiveDate>,
}

fn text(col: Option<&Column>, i: usize) -> Option<String> {
    match col? {
        Column::Cat(v) => v.get(i).cloned().flatten(),
        Column::Num(v) => v.get(i).filter(|x| !x.is_nan()).map(f64::to_string),
    }
}

/// Each merchant's row of a profile file (its latest, or the one of the date asked for),
/// scored by `model` with reasons.
pub fn latest(
    frame: &Frame,
    path: &Path,
    model: &Model,
    pick: &Pick,
) -> Result<BTreeMap<String, Merchant>, EngineError> {
    let bad = |why: String| EngineError::Profiles {
        path: path.to_path_buf(),
        why,
    };
    for c in [
        columns::MERCHANT_ID,
        columns::AS_OF,
        columns::INDUSTRY,
        columns::CLOSED_ON,
    ] {
        if frame.index(c).is_none() {
            return Err(bad(format!(
                "not a current profile file: it has no {c} column (rebuild it with yuanxin profile)"
            )));
        }
    }
    let (ids, dates, industries, closures, districts) = (
        frame.column(columns::MERCHANT_ID),
        frame.column(columns::AS_OF),
        frame.column(columns::INDUSTRY),
        frame.column(columns::CLOSED_ON),
        frame.column(columns::DISTRICT),
    );
    // Each merchant's rows, by date (a later row of the same date replaces an earlier one).
    let mut rows: BTreeMap<String, BTreeMap<NaiveDate, usize>> = BTreeMap::new();
    for i in 0..frame.rows() {
        let (Some(id), Some(date)) = (text(ids, i), text(dates, i)) else {
            continue;
        };
        if pick.merchant.as_ref().is_some_and(|m| m != &id) {
            continue;
        }
        let date = NaiveDate::from_str(&date).map_err(|e| bad(format!("as_of {date}: {e}")))?;
        if pick.as_of.is_some_and(|d| d != date) {
            continue;
        }
        rows.entry(id).or_default().insert(date, i);
    }
    let latest_rows: std::collections::HashSet<usize> = rows
        .values()
        .filter_map(|dated| dated.last_key_value().map(|(_, i)| *i))
        .collect();
    let mut scored = model.score_frame_where(frame, &|i| latest_rows.contains(&i))?;
    let mut out = BTreeMap::new();
    for (id, mut dated) in rows {
        let Some((as_of, i)) = dated.pop_last() else {
            continue;
        };
        let history = dated
            .into_iter()
            .map(|(as_of, j)| {
                let closed = text(closures, j).is_some();
                let s = scored.get(j).and_then(|s| s.as_ref().ok());
                Point {
                    as_of,
                    closed,
                    scored: s
                        .filter(|_| !closed)
                        .map(|s| (s.score, s.pd, s.grade.clone())),
                }
            })
            .collect();
        let Some(industry) = text(industries, i) else {
            continue;
        };
        let industry =
            Industry::from_str(&industry).map_err(|e| bad(format!("merchant {id}: {e}")))?;
        let scored = scored
            .get_mut(i)
            .map(|s| std::mem::replace(s, Err(String::new())))
            .ok_or_else(|| bad(format!("row {i} was not scored")))?;
        let closed_on = text(closures, i)
            .map(|d| NaiveDate::from_str(&d).map_err(|e| bad(format!("closed_on {d}: {e}"))))
            .transpose()?;
        let district = text(districts, i)
            .map(|d| District::from_str(&d).map_err(|e| bad(format!("merchant {id}: {e}"))))
            .transpose()?;
        let features = frame.numeric_row(i);
        out.insert(
            id,
            Merchant {
                as_of,
                industry,
                district,
                features,
                closed_on,
                scored,
                history,
            },
        );
    }
    Ok(out)
}

/// The applicant a decision sees: the profile, the model's scoring and reasons, the
/// points each characteristic could gain, whether an objection is open, and the closure.
fn applicant(id: &str, m: &Merchant, s: &Scored, model: &Model, open_dispute: bool) -> Applicant {
    let value = |n: &str| m.features.get(n).copied().flatten();
    Applicant {
        closed_on: m.closed_on,
        merchant_id: id.to_owned(),
        as_of: m.as_of,
        industry: m.industry,
        insufficient_data: value(known!("insufficient_data")) == Some(1.0),
        model_id: model.id.clone(),
        score: s.score,
        pd: s.pd,
        grade: s.grade.clone(),
        model_reasons: s
            .reasons
            .iter()
            .map(|r| ModelReason {
                feature: r.feature.clone(),
                name_zh: r.name_zh.clone(),
                name_en: r.name_en.clone(),
                points_lost: r.points_lost,
            })
            .collect(),
        gains: model.gains(s.score, &value),
        open_dispute,
        features: m.features.clone(),
    }
}

/// The decision on a loan request for one merchant.
pub fn decide(
    model: &Model,
    policy: &Policy,
    catalogue: &Catalogue,
    id: &str,
    m: &Merchant,
    req: &LoanRequest,
    open_dispute: bool,
) -> Result<Decision, EngineError> {
    if let Some(p) = &req.product {
        if !catalogue.products.iter().any(|x| &x.id == p) {
            return Err(EngineError::UnknownProduct {
                product: p.clone(),
                catalogue: catalogue.version.clone(),
            });
        }
    }
    let app = match (m.standing(id), &m.scored) {
        (Ok(Standing::Scored(s)), _) => applicant(id, m, s, model, open_dispute),
        // A closed merchant is declined whatever the model made of its profile.
        (Ok(Standing::Closed(_)), Ok(s)) => applicant(id, m, s, model, open_dispute),
        (Ok(Standing::Closed(_)), Err(_)) => {
            let none = Scored {
                score: 0,
                pd: 1.0,
                grade: String::new(),
                reasons: Vec::new(),
            };
            applicant(id, m, &none, model, open_dispute)
        }
        (Err(e), _) => return Err(e),
    };
    yuanxin_decision::decide(&app, req, policy, catalogue).map_err(|source| EngineError::Decision {
        id: id.to_owned(),
        source,
    })
}

/// Checks that the policy places every grade the model gives, and only those
/// ([`Policy::check_scale`]): where a model meets a policy, a mismatch is a configuration
/// error, not a stream of `GRADE_UNKNOWN` decisions.
pub fn check_scale(policy: &Policy, model: &Model) -> Result<(), EngineError> {
    let grades: Vec<&str> = model
        .master_scale
        .0
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    policy
        .check_scale(&grades)
        .map_err(|source| EngineError::Config {
            what: "policy against the model's master scale",
            source,
        })
}

/// The policy file: thresholds, limits, pricing and the alert rules.
pub fn read_policy(path: &Path) -> Result<Policy, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Policy::from_toml(&text).map_err(|source| EngineError::Config {
        what: "policy",
        source,
    })
}

/// The catalogue file: the banks' products and the support schemes.
pub fn read_catalogue(path: &Path) -> Result<Catalogue, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Catalogue::from_toml(&text).map_err(|source| EngineError::Config {
        what: "catalogue",
        source,
    })
}

/// The model a command names: a model file, a registry id, or (none named) the champion.
pub fn open_model(spec: Option<&str>, registry: &Path) -> Result<Model, EngineError> {
    match spec {
        Some(s) if Path::new(s).exists() => Ok(Model::load(Path::new(s))?),
        Some(s) => match Registry::new(registry).find(s) {
            Ok((_, m)) => Ok(m),
            // A path, not an id: say the file is missing, not that the registry lacks it.
            Err(ModelError::NotInRegistry { .. })
                if s.contains(['/', std::path::MAIN_SEPARATOR]) || s.ends_with(".json") =>
            {
                Err(EngineError::NoModelFile(PathBuf::from(s)))
            }
            Err(e) => Err(e.into()),
        },
        None => Registry::new(registry)
            .champion()?
            .map(|(_, m)| m)
            .ok_or_else(|| EngineError::NoChampion(registry.to_path_buf())),
    }
}

/// Population stability of the served merchants against the model's training sample.
#[derive(Debug, Clone)]
pub struct Stability {
    /// Model.
    pub model_id: String,
    /// Training rows behind the baseline.
    pub baseline_rows: u64,
    /// Merchants scored now.
    pub current_rows: u64,
    /// Profile date of the current population.
    pub as_of: Option<NaiveDate>,
    /// PSI of the score.
    pub score_psi: f64,
    /// The verdict on the score ([`psi_verdict`]).
    pub verdict: &'static str,
    /// Each characteristic's name, PSI and verdict, largest PSI first.
    pub characteristics: Vec<(String, f64, &'static str)>,
}

/// What the service serves from: the champion, each merchant's latest profile (scored once
/// at load), the policy and the catalogue. Immutable once loaded.
#[derive(Debug)]
pub struct Served {
    /// The champion.
    pub model: Model,
    /// The policy.
    pub policy: Policy,
    /// The product and support catalogue.
    pub catalogue: Catalogue,
    merchants: BTreeMap<String, Merchant>,
    as_of: Option<NaiveDate>,
    bounds: Bounds,
}

impl Served {
    /// Loads everything named by `files`.
    pub fn load(files: &Files) -> Result<Served, EngineError> {
        let policy = read_policy(&files.policy)?;
        let catalogue = read_catalogue(&files.catalogue)?;
        let model = open_model(None, &files.models)?;
        check_scale(&policy, &model)?;
        let frame = Frame::read(&files.profiles, &model.categorical_features())?;
        let merchants = latest(&frame, &files.profiles, &model, &Pick::default())?;
        Ok(Served {
            as_of: merchants.values().map(|m| m.as_of).max(),
            bounds: Bounds::of(&catalogue),
            merchants,
            model,
            policy,
            catalogue,
        })
    }

    /// Every merchant with a profile.
    pub fn merchants(&self) -> &BTreeMap<String, Merchant> {
        &self.merchants
    }

    /// One merchant's profile, or [`EngineError::UnknownMerchant`].
    pub fn merchant(&self, id: &str) -> Result<&Merchant, EngineError> {
        self.merchants
            .get(id)
            .ok_or_else(|| EngineError::UnknownMerchant(id.to_owned()))
    }

    /// The latest profile date.
    pub fn as_of(&self) -> Option<NaiveDate> {
        self.as_of
    }

    /// The request ranges the catalogue sets.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// The decision on a loan request.
    pub fn decide(
        &self,
        id: &str,
        req: &LoanRequest,
        open_dispute: bool,
    ) -> Result<Decision, EngineError> {
        let m = self.merchant(id)?;
        decide(
            &self.model,
            &self.policy,
            &self.catalogue,
            id,
            m,
            req,
            open_dispute,
        )
    }

    /// Early-warning alerts for a merchant, against what a lender saw last.
    pub fn alerts(&self, id: &str, last: Option<&LastSeen>) -> Result<Vec<Alert>, EngineError> {
        let m = self.merchant(id)?;
        let standing = match m.standing(id)? {
            Standing::Scored(s) => yuanxin_decision::Standing::Graded(&s.grade),
            Standing::Closed(on) => yuanxin_decision::Standing::Closed(on),
        };
        let grades: Vec<String> = self
            .model
            .master_scale
            .0
            .iter()
            .map(|g| g.name.clone())
            .collect();
        Ok(yuanxin_decision::alerts(
            &m.features,
            standing,
            &grades,
            last,
            &self.policy.alerts,
        ))
    }

    /// Population stability of the merchants served now against the training sample.
    pub fn stability(&self) -> Result<Stability, EngineError> {
        let base = self
            .model
            .baseline
            .as_ref()
            .ok_or_else(|| EngineError::NoBaseline(self.model.id.clone()))?;
        // The population served a grade: merchants that trade.
        let open = || self.merchants.values().filter(|m| m.closed_on.is_none());
        let scores: Vec<f64> = open()
            .filter_map(|m| m.scored.as_ref().ok())
            // Scores are whole points when served, as in the baseline.
            .map(|s| s.score as f64)
            .collect();
        let score_psi = base.score.psi(&scores);
        let mut characteristics: Vec<(String, f64, &'static str)> = base
            .characteristics
            .iter()
            .map(|(name, d)| {
                let xs: Vec<f64> = open()
                    .map(|m| m.features.get(name).copied().flatten().unwrap_or(f64::NAN))
                    .collect();
                let psi = d.psi(&xs);
                (name.clone(), psi, psi_verdict(psi))
            })
            .collect();
        characteristics.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(Stability {
            model_id: self.model.id.clone(),
            baseline_rows: base.rows,
            current_rows: scores.len() as u64,
            as_of: self.as_of,
            score_psi,
            verdict: psi_verdict(score_psi),
            characteristics,
        })
    }
}

/// How many month-ends of profiles the served file holds: the latest date and the
/// month-ends before it, so that a merchant sees its score over the last year.
pub const HISTORY_MONTHS: usize = 12;

/// `latest` and the month-ends before it, `n` dates in all, oldest first.
pub fn month_ends(latest: NaiveDate, n: usize) -> Vec<NaiveDate> {
    let mut out = vec![latest];
    let mut d = latest.with_day(1).and_then(|first| first.pred_opt());
    while out.len() < n {
        let Some(end) = d else { break };
        out.push(end);
        d = end.with_day(1).and_then(|first| first.pred_opt());
    }
    out.reverse();
    out
}

/// Builds the latest profiles of a ledger into `out`, atomically, with the month-ends
/// before them ([`HISTORY_MONTHS`] dates). The latest as-of date is the last day of the
/// latest business month with events, or `today` if that is earlier.
pub fn refresh_profiles(
    ledger: &Path,
    out: &Path,
    today: NaiveDate,
) -> Result<NaiveDate, EngineError> {
    refresh_profiles_with_progress(ledger, out, today, &mut |_, _| {})
}

/// [`refresh_profiles`], telling `progress` how many chunks of merchants are done out of
/// how many. The profiles stream to `out` in bounded memory.
pub fn refresh_profiles_with_progress(
    ledger: &Path,
    out: &Path,
    today: NaiveDate,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<NaiveDate, EngineError> {
    let fail = |why: String| EngineError::Refresh {
        path: ledger.to_path_buf(),
        why,
    };
    let l = yuanxin_ledger::Ledger::open(ledger).map_err(|e| fail(e.to_string()))?;
    let as_of = refresh_as_of(&l, today).map_err(fail)?;
    yuanxin_profile::build_to_parquet(
        &l,
        &yuanxin_profile::ProfileOptions::at(month_ends(as_of, HISTORY_MONTHS)),
        out,
        progress,
    )
    .map_err(|e| fail(e.to_string()))?;
    Ok(as_of)
}

/// The refresh's profile date: the last day of the ledger's latest business month with
/// events, or `today` if that is earlier.
fn refresh_as_of(l: &yuanxin_ledger::Ledger, today: NaiveDate) -> Result<NaiveDate, String> {
    let month = l
        .last_event_month()
        .ok_or_else(|| "the ledger has no events".to_string())?;
    let last = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .ok()
        .and_then(|first| first.checked_add_months(chrono::Months::new(1)))
        .and_then(|d| d.pred_opt())
        .ok_or_else(|| format!("month {month} out of range"))?;
    Ok(last.min(today))
}

/// What one shard of a refresh built ([`refresh_part`]): written beside its partial
/// profiles, and checked by [`gather_parts`] against the other shards'.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartInfo {
    /// `i/N`.
    pub shard: String,
    /// The profiles' latest as-of date.
    pub as_of: NaiveDate,
    /// The ledger the shard read: its batches and compactions, and the last batch's id
    /// (every shard must read the same).
    pub ledger: String,
    /// Partial profile rows the shard wrote.
    pub rows: u64,
}

fn part_name(shard: yuanxin_profile::Shard) -> String {
    format!("part-{:04}-of-{:04}", shard.index, shard.count)
}

fn ledger_state(l: &yuanxin_ledger::Ledger) -> String {
    let m = l.manifest();
    format!(
        "{} batches (last {}), {} compactions",
        m.batches.len(),
        m.batches.last().map_or("none", |b| b.id.as_str()),
        m.compactions
    )
}

/// One shard of the refresh's profiles: the partial profiles of its merchants, written to
/// `parts/part-IIII-of-NNNN.parquet` with a `.json` beside it ([`PartInfo`]). Shards run
/// independently (on other machines, given the same ledger); [`gather_parts`] finishes
/// their union into the file [`refresh_profiles`] writes, byte for byte.
pub fn refresh_part(
    ledger: &Path,
    parts: &Path,
    shard: yuanxin_profile::Shard,
    today: NaiveDate,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PartInfo, EngineError> {
    let fail = |why: String| EngineError::Refresh {
        path: ledger.to_path_buf(),
        why,
    };
    let l = yuanxin_ledger::Ledger::open(ledger).map_err(|e| fail(e.to_string()))?;
    let as_of = refresh_as_of(&l, today).map_err(fail)?;
    let mut opts = yuanxin_profile::ProfileOptions::at(month_ends(as_of, HISTORY_MONTHS));
    opts.shard = Some(shard);
    let batch =
        yuanxin_profile::build_partial(&l, &opts, progress).map_err(|e| fail(e.to_string()))?;
    std::fs::create_dir_all(parts).map_err(|e| fail(format!("{}: {e}", parts.display())))?;
    let base = parts.join(part_name(shard));
    // Compressed: a part may travel between machines.
    yuanxin_profile::write_part(
        &batch,
        &base.with_extension("parquet"),
        Some(yuanxin_ledger::writer_properties()),
    )
    .map_err(|e| fail(e.to_string()))?;
    let info = PartInfo {
        shard: shard.to_string(),
        as_of,
        ledger: ledger_state(&l),
        rows: batch.num_rows() as u64,
    };
    let json = serde_json::to_vec_pretty(&info).map_err(|e| fail(e.to_string()))?;
    // The description last: a part without one is not complete.
    let tmp = base.with_extension("json.partial");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, base.with_extension("json")))
        .map_err(|e| fail(format!("{}: {e}", tmp.display())))?;
    Ok(info)
}

/// Finishes the shards' partial profiles under `parts` into `out` (atomically, an as-of
/// date at a time): checks that every shard of one count is there, complete, built from
/// the same ledger for the same date, then finishes the peer characteristics over their
/// union. Returns the
/// profiles' latest as-of date and the shards.
pub fn gather_parts(parts: &Path, out: &Path) -> Result<(NaiveDate, Vec<PartInfo>), EngineError> {
    let fail = |why: String| EngineError::Refresh {
        path: parts.to_path_buf(),
        why,
    };
    let entries = std::fs::read_dir(parts).map_err(|e| fail(e.to_string()))?;
    let mut infos: Vec<PartInfo> = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
            infos.push(
                serde_json::from_slice(&text)
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?,
            );
        }
    }
    let mut shards = Vec::new();
    for info in &infos {
        shards.push(yuanxin_profile::Shard::parse(&info.shard).map_err(|e| fail(e.to_string()))?);
    }
    let Some(first) = infos.first() else {
        return Err(fail("no complete shard parts here".into()));
    };
    let count = shards.first().map_or(1, |s| s.count);
    if let Some(odd) = infos
        .iter()
        .find(|i| i.as_of != first.as_of || i.ledger != first.ledger)
    {
        return Err(fail(format!(
            "shard {} was built as of {} from {}, shard {} as of {} from {}",
            first.shard, first.as_of, first.ledger, odd.shard, odd.as_of, odd.ledger
        )));
    }
    if shards.iter().any(|s| s.count != count) {
        return Err(fail("parts of different shard counts".into()));
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !shards.iter().any(|s| s.index == *i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(fail(format!("shards missing: {}", missing.join(", "))));
    }
    let mut order: Vec<usize> = (0..shards.len()).collect();
    order.sort_by_key(|&k| shards[k].index);
    let paths: Vec<PathBuf> = order
        .iter()
        .map(|&k| parts.join(part_name(shards[k])).with_extension("parquet"))
        .collect();
    yuanxin_profile::finish_parts(&paths, None, out).map_err(|e| fail(e.to_string()))?;
    let as_of = first.as_of;
    let mut sorted: Vec<PartInfo> = order.iter().map(|&k| infos[k].clone()).collect();
    sorted.dedup_by(|a, b| a.shard == b.shard);
    Ok((as_of, sorted))
}

/// The file that changes with every batch committed to the ledger at `root`: watching it
/// is watching the ledger.
pub fn ledger_manifest(root: &Path) -> PathBuf {
    yuanxin_ledger::Ledger::manifest_path(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::from_str(s).unwrap()
    }

    #[test]
    fn month_ends_run_back_from_the_latest_date() {
        assert_eq!(
            month_ends(d("2026-03-15"), 4),
            vec![
                d("2025-12-31"),
                d("2026-01-31"),
                d("2026-02-28"),
                d("2026-03-15")
            ]
        );
        assert_eq!(month_ends(d("2026-06-30"), 1), vec![d("2026-06-30")]);
        let year = month_ends(d("2024-02-29"), 12);
        assert_eq!(year.len(), 12);
        assert_eq!(year[0], d("2023-03-31"));
        assert!(year.windows(2).all(|w| w[0] < w[1]));
    }
}
