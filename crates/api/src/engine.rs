//! The engine the service serves from: the champion model, the latest profile of every
//! merchant (scored once at load), the policy and the catalogue. Immutable once built; a
//! reload builds a new one and swaps it in.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use yuanxin_decision::{reasons, Alert, LastSeen, LoanRequest};
use yuanxin_domain::known;
use yuanxin_domain::vocabulary::VOCABULARY;
use yuanxin_engine::{EngineError, Served, Standing};
use yuanxin_model::registry::Registry;
use yuanxin_store::Seen;

use crate::problem::{ApiError, Code};
use crate::views::{DecisionView, StatusView};
use crate::{digest, LoanPurpose};

pub use yuanxin_engine::Bounds;

/// Where the engine's inputs live.
#[derive(Debug, Clone)]
pub struct EngineFiles {
    /// Registry folder (the champion is served).
    pub models: PathBuf,
    /// Latest profiles (Parquet from `yuanxin profile`).
    pub profiles: PathBuf,
    /// Policy file.
    pub policy: PathBuf,
    /// Catalogue file.
    pub catalogue: PathBuf,
    /// The ledger the profiles come from, if the service keeps them up to date itself:
    /// new ingested data rebuilds the profiles, which reloads the engine.
    pub ledger: Option<PathBuf>,
}

impl EngineFiles {
    fn served(&self) -> yuanxin_engine::Files {
        yuanxin_engine::Files {
            models: self.models.clone(),
            profiles: self.profiles.clone(),
            policy: self.policy.clone(),
            catalogue: self.catalogue.clone(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let detail = e.to_string();
        match e {
            EngineError::UnknownMerchant(_) => ApiError::new(Code::UnknownMerchant, detail),
            EngineError::Unscorable { .. } | EngineError::Closed { .. } => {
                ApiError::new(Code::Unscorable, detail)
            }
            EngineError::UnknownProduct { .. } => {
                ApiError::new(Code::UnknownProduct, detail).at("product")
            }
            EngineError::NoBaseline(_) => ApiError::new(Code::NotFound, detail),
            EngineError::Decision { .. } => ApiError::internal(detail),
            _ => ApiError::unavailable(detail),
        }
    }
}

/// A decision request's shape: the cache key of its response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Ask {
    merchant: String,
    amount: Decimal,
    term_months: u32,
    purpose: LoanPurpose,
    product: Option<String>,
    open_dispute: bool,
}

/// Decisions kept per engine (they depend only on the profile, the model, the policy, the
/// catalogue and the request, all fixed for an engine's life); beyond this many (a few KiB
/// each, so at most some tens of MiB) the cache starts over.
const DECISION_CACHE: usize = 4096;

/// A loaded engine: the application's served state, with each merchant's score response
/// built once at load and the decisions asked for so far.
#[derive(Debug)]
pub struct Engine {
    files: EngineFiles,
    served: Served,
    /// The score as served (no open dispute), its response body and its digest.
    views: BTreeMap<String, (ScoreView, Bytes, Arc<str>)>,
    stamp: Vec<Option<(std::time::SystemTime, u64)>>,
    decisions: Mutex<HashMap<Ask, (Bytes, Arc<str>)>>,
    model_id: Arc<str>,
}

/// A merchant's own profile, as the merchant sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProfileView {
    /// Merchant.
    pub merchant_id: String,
    /// Profile date.
    pub as_of: NaiveDate,
    /// Industry code.
    pub industry: String,
    /// Every characteristic of the catalogue, with its names and value (null when it
    /// cannot be computed).
    pub characteristics: Vec<CharacteristicView>,
}

/// One characteristic.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CharacteristicView {
    /// Name.
    pub name: String,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// Group.
    pub group: String,
    /// Unit.
    pub unit: String,
    /// Value.
    pub value: Option<f64>,
    /// Whether the serving model uses it.
    pub in_model: bool,
}

/// Population stability of the served population against the model's training sample.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StabilityView {
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
    /// stable (< 0.1), watch (< 0.25) or shifted.
    pub verdict: String,
    /// PSI of each characteristic, largest first.
    pub characteristics: Vec<CharacteristicPsi>,
}

/// One characteristic's PSI.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CharacteristicPsi {
    /// Name.
    pub name: String,
    /// PSI.
    pub psi: f64,
    /// stable, watch or shifted.
    pub verdict: String,
}

/// A score as lenders and merchants see it; a merchant that has closed is served as
/// `closed`, with the day it closed and no score, PD, grade or reasons.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScoreView {
    /// Merchant.
    pub merchant_id: String,
    /// Profile date.
    pub as_of: NaiveDate,
    /// Whether the merchant still trades.
    pub status: StatusView,
    /// The day it closed (its last store closed), when closed.
    pub closed_on: Option<NaiveDate>,
    /// Score (null when closed).
    pub score: Option<i64>,
    /// PD over 12 months (null when closed).
    pub pd: Option<f64>,
    /// Grade on the model's master scale, e.g. `B2` (null when closed).
    pub grade: Option<String>,
    /// Its public grade, A+ to E: `B` for B1–B3 (null when closed).
    pub public_grade: Option<String>,
    /// Up to four reasons (none when closed).
    pub reasons: Vec<ReasonView>,
    /// Model.
    pub model_id: String,
    /// Whether the merchant has an open objection (异议).
    pub open_dispute: bool,
}

/// A merchant's score at the month-ends before its latest profile and at that profile,
/// oldest first, all by the serving model.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    /// Merchant.
    pub merchant_id: String,
    /// Model.
    pub model_id: String,
    /// One point per profile date (at most 12).
    pub points: Vec<HistoryPoint>,
}

/// One point of a score history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryPoint {
    /// Profile date.
    pub as_of: NaiveDate,
    /// `open`, `closed`, or `unscorable` (no score at that date).
    pub status: String,
    /// Score.
    pub score: Option<i64>,
    /// PD over 12 months.
    pub pd: Option<f64>,
    /// Grade on the master scale.
    pub grade: Option<String>,
    /// Public grade.
    pub public_grade: Option<String>,
}

impl HistoryPoint {
    fn of(as_of: NaiveDate, status: &str, scored: Option<(i64, f64, &str)>) -> HistoryPoint {
        HistoryPoint {
            as_of,
            status: status.to_owned(),
            score: scored.map(|s| s.0),
            pd: scored.map(|s| s.1),
            grade: scored.map(|s| s.2.to_owned()),
            public_grade: scored.map(|s| yuanxin_domain::public_grade(s.2).to_owned()),
        }
    }
}

/// A reason code with its texts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReasonView {
    /// Stable code.
    pub code: String,
    /// Characteristic.
    pub feature: String,
    /// Chinese.
    pub name_zh: String,
    /// English.
    pub name_en: String,
    /// Points lost against the characteristic's best bin (at least 1).
    pub points_lost: f64,
    /// The merchant's value, as shown (`missing` when it has none).
    pub value: String,
    /// The scorecard bin the value fell in; null for boosted trees.
    pub bin: Option<String>,
}

fn view(id: &str, as_of: NaiveDate, standing: Standing<'_>, model_id: &str) -> ScoreView {
    let closed = |on| ScoreView {
        merchant_id: id.to_owned(),
        as_of,
        status: StatusView::Closed,
        closed_on: Some(on),
        score: None,
        pd: None,
        grade: None,
        public_grade: None,
        reasons: Vec::new(),
        model_id: model_id.to_owned(),
        open_dispute: false,
    };
    let s = match standing {
        Standing::Scored(s) => s,
        Standing::Closed(on) => return closed(on),
    };
    ScoreView {
        merchant_id: id.to_owned(),
        as_of,
        status: StatusView::Open,
        closed_on: None,
        score: Some(s.score),
        pd: Some(s.pd),
        grade: Some(s.grade.clone()),
        public_grade: Some(yuanxin_domain::public_grade(&s.grade).to_owned()),
        reasons: s
            .reasons
            .iter()
            .map(|r| ReasonView {
                code: reasons::model_code(&r.feature),
                feature: r.feature.clone(),
                name_zh: r.name_zh.clone(),
                name_en: r.name_en.clone(),
                points_lost: r.points_lost,
                value: r.value.clone(),
                bin: r.bin.clone(),
            })
            .collect(),
        model_id: model_id.to_owned(),
        open_dispute: false,
    }
}

/// A [`ScoreView`] with its dispute flag, serialised without copying the view: the same
/// fields in the same order, so the bytes are those of the view with the flag set.
#[derive(Serialize)]
struct ScoreJson<'a> {
    merchant_id: &'a str,
    as_of: NaiveDate,
    status: StatusView,
    closed_on: Option<NaiveDate>,
    score: Option<i64>,
    pd: Option<f64>,
    grade: Option<&'a str>,
    public_grade: Option<&'a str>,
    reasons: &'a [ReasonView],
    model_id: &'a str,
    open_dispute: bool,
}

impl ScoreView {
    /// The JSON served, with the merchant's dispute flag.
    pub fn json(&self, open_dispute: bool) -> Result<Vec<u8>, ApiError> {
        serde_json::to_vec(&ScoreJson {
            merchant_id: &self.merchant_id,
            as_of: self.as_of,
            status: self.status,
            closed_on: self.closed_on,
            score: self.score,
            pd: self.pd,
            grade: self.grade.as_deref(),
            public_grade: self.public_grade.as_deref(),
            reasons: &self.reasons,
            model_id: &self.model_id,
            open_dispute,
        })
        .map_err(ApiError::internal)
    }
}

impl Engine {
    /// Loads everything; any failure leaves the caller's current engine in place.
    pub fn load(files: &EngineFiles) -> Result<Engine, ApiError> {
        // Taken before reading, so a file changed during the load is loaded again.
        let stamp = stamp(files);
        let served = Served::load(&files.served())?;
        let model_id: Arc<str> = served.model.id.as_str().into();
        let mut views = BTreeMap::new();
        for (id, m) in served.merchants() {
            if let Ok(standing) = m.standing(id) {
                let v = view(id, m.as_of, standing, &model_id);
                let body = Bytes::from(v.json(false)?);
                let d: Arc<str> = digest(&body).into();
                views.insert(id.clone(), (v, body, d));
            }
        }
        Ok(Engine {
            files: files.clone(),
            served,
            views,
            stamp,
            decisions: Mutex::new(HashMap::new()),
            model_id,
        })
    }

    /// The request ranges this engine's catalogue sets.
    pub fn bounds(&self) -> Bounds {
        self.served.bounds()
    }

    /// Whether a merchant has a profile.
    pub fn has(&self, id: &str) -> bool {
        self.served.merchants().contains_key(id)
    }

    /// The files' modification stamp when they were read.
    pub fn stamp(&self) -> &Vec<Option<(std::time::SystemTime, u64)>> {
        &self.stamp
    }

    /// Where it was loaded from.
    pub fn files(&self) -> &EngineFiles {
        &self.files
    }

    /// The serving model's id.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The serving model's id, shared (for log records).
    pub fn model_id_shared(&self) -> Arc<str> {
        Arc::clone(&self.model_id)
    }

    /// Merchants with a profile.
    pub fn merchants(&self) -> usize {
        self.served.merchants().len()
    }

    /// Latest profile date.
    pub fn as_of(&self) -> Option<NaiveDate> {
        self.served.as_of()
    }

    /// Some merchant ids (for the demo credentials).
    pub fn merchant_ids(&self) -> impl Iterator<Item = &String> {
        self.served.merchants().keys()
    }

    /// A merchant's score history: the earlier month-ends of the profile file, then the
    /// latest profile.
    pub fn history(&self, id: &str) -> Result<HistoryView, ApiError> {
        let m = self.served.merchant(id)?;
        let mut points: Vec<HistoryPoint> = m
            .history
            .iter()
            .map(|p| {
                let s = p.scored.as_ref().map(|(a, b, c)| (*a, *b, c.as_str()));
                let status = match (p.closed, s.is_some()) {
                    (true, _) => "closed",
                    (false, true) => "open",
                    (false, false) => "unscorable",
                };
                HistoryPoint::of(p.as_of, status, s)
            })
            .collect();
        points.push(match m.standing(id) {
            Ok(Standing::Scored(s)) => {
                HistoryPoint::of(m.as_of, "open", Some((s.score, s.pd, s.grade.as_str())))
            }
            Ok(Standing::Closed(_)) => HistoryPoint::of(m.as_of, "closed", None),
            Err(_) => HistoryPoint::of(m.as_of, "unscorable", None),
        });
        Ok(HistoryView {
            merchant_id: id.to_owned(),
            model_id: self.model_id.to_string(),
            points,
        })
    }

    /// A merchant's score view, with its body and digest (no open dispute).
    fn scored(&self, id: &str) -> Result<&(ScoreView, Bytes, Arc<str>), ApiError> {
        // One lookup on the served path; the reason only when there is no view.
        if let Some(v) = self.views.get(id) {
            return Ok(v);
        }
        self.served.merchant(id)?.standing(id)?;
        Err(ApiError::internal(format!(
            "merchant {id} has no score view"
        )))
    }

    /// A merchant's score.
    pub fn score(&self, id: &str) -> Result<&ScoreView, ApiError> {
        self.scored(id).map(|v| &v.0)
    }

    /// The score's response body with the merchant's dispute flag, and its digest: built
    /// once at load for the usual case of no open dispute.
    pub fn score_body(&self, id: &str, open_dispute: bool) -> Result<(Bytes, Arc<str>), ApiError> {
        let (v, body, d) = self.scored(id)?;
        if open_dispute {
            let body = Bytes::from(v.json(true)?);
            let d = digest(&body).into();
            Ok((body, d))
        } else {
            Ok((body.clone(), Arc::clone(d)))
        }
    }

    /// The grade and escrow coverage a lender is shown of a merchant, remembered for alerts
    /// (none for a closed merchant: it has no grade).
    pub fn shown(&self, id: &str) -> Option<(&str, Option<f64>)> {
        let m = self.served.merchants().get(id)?;
        let Ok(Standing::Scored(s)) = m.standing(id) else {
            return None;
        };
        Some((
            s.grade.as_str(),
            m.features.get(known!("escrow_coverage")).copied().flatten(),
        ))
    }

    /// The decision on a loan request, as the JSON served and its digest. A request's
    /// shape is decided once per engine: the same merchant, amount, term, purpose, product
    /// and dispute flag give the same decision until the next reload.
    pub fn decision(
        &self,
        id: &str,
        amount: Decimal,
        term_months: u32,
        purpose: LoanPurpose,
        product: Option<String>,
        open_dispute: bool,
    ) -> Result<(Bytes, Arc<str>), ApiError> {
        let ask = Ask {
            merchant: id.to_owned(),
            amount,
            term_months,
            purpose,
            product,
            open_dispute,
        };
        let cache = |e| ApiError::internal(format!("decision cache: {e}"));
        if let Some(hit) = self.decisions.lock().map_err(cache)?.get(&ask) {
            return Ok(hit.clone());
        }
        let req = LoanRequest {
            amount,
            term_months,
            purpose: purpose.as_str().to_owned(),
            product: ask.product.clone(),
        };
        let d = DecisionView::from(self.served.decide(id, &req, open_dispute)?);
        let body = Bytes::from(serde_json::to_vec(&d).map_err(ApiError::internal)?);
        let out: (Bytes, Arc<str>) = (body.clone(), digest(&body).into());
        let mut c = self.decisions.lock().map_err(cache)?;
        if c.len() >= DECISION_CACHE {
            c.clear();
        }
        c.insert(ask, out.clone());
        Ok(out)
    }

    /// Early-warning alerts for a merchant, against what the lender saw last.
    pub fn alerts(&self, id: &str, last: Option<&Seen>) -> Result<Vec<Alert>, ApiError> {
        let last = last.map(|l: &Seen| LastSeen {
            grade: l.grade.clone(),
            escrow_coverage: l.escrow_coverage,
        });
        Ok(self.served.alerts(id, last.as_ref())?)
    }

    /// A merchant's characteristics with display names.
    pub fn profile(&self, id: &str) -> Result<ProfileView, ApiError> {
        let m = self.served.merchant(id)?;
        let model = &self.served.model;
        let characteristics = VOCABULARY
            .iter()
            .map(|f| CharacteristicView {
                name: f.name.to_owned(),
                name_zh: f.name_zh.to_owned(),
                name_en: f.name_en.to_owned(),
                group: format!("{:?}", f.group),
                unit: f.unit.to_owned(),
                value: m.features.get(f.name).copied().flatten(),
                in_model: model.features.iter().any(|x| x.name == f.name),
            })
            .collect();
        Ok(ProfileView {
            merchant_id: id.to_owned(),
            as_of: m.as_of,
            industry: m.industry.to_string(),
            characteristics,
        })
    }

    /// Population stability of the merchants served now against the training sample.
    pub fn stability(&self) -> Result<StabilityView, ApiError> {
        let s = self.served.stability()?;
        Ok(StabilityView {
            model_id: s.model_id,
            baseline_rows: s.baseline_rows,
            current_rows: s.current_rows,
            as_of: s.as_of,
            score_psi: s.score_psi,
            verdict: s.verdict.to_owned(),
            characteristics: s
                .characteristics
                .into_iter()
                .map(|(name, psi, verdict)| CharacteristicPsi {
                    name,
                    psi,
                    verdict: verdict.to_owned(),
                })
                .collect(),
        })
    }

    /// The registry's models.
    pub fn models(&self) -> Result<serde_json::Value, ApiError> {
        let (entries, invalid) = Registry::new(&self.files.models)
            .list()
            .map_err(ApiError::internal)?;
        Ok(serde_json::json!({"serving": &*self.model_id, "models": entries, "invalid": invalid}))
    }
}

/// The modification stamp of the engine's files, to notice a change.
pub(crate) fn stamp(files: &EngineFiles) -> Vec<Option<(std::time::SystemTime, u64)>> {
    let registry = yuanxin_model::registry::Registry::new(&files.models).path();
    [&files.profiles, &registry, &files.policy, &files.catalogue]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}
