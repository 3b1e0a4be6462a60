//! The engine the service serves from: the champion model, the latest profile of every
//! merchant (scored once at load), the policy and the catalogue. Immutable once built; a
//! reload builds a new one and swaps it in.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use yuanxin_decision::{
    alerts, decide, reasons, Alert, Applicant, Catalogue, Decision, LastSeen, LoanRequest, Policy,
};
use yuanxin_domain::Industry;
use yuanxin_model::metrics::psi_verdict;
use yuanxin_model::registry::Registry;
use yuanxin_model::{Column, Frame, Model, Scored};

use crate::problem::{ApiError, Code};
use crate::{digest, LoanPurpose};
use axum::body::Bytes;
use yuanxin_store::Seen;

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

/// The numeric ranges a request is checked against, from the loaded catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The shortest term any product offers, months.
    pub term_min: u32,
    /// The longest term any product offers, months.
    pub term_max: u32,
}

impl Bounds {
    /// Before any catalogue is loaded (no route that uses them answers then).
    pub const UNLOADED: Bounds = Bounds {
        term_min: 1,
        term_max: 360,
    };
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

#[derive(Debug)]
struct Row {
    as_of: NaiveDate,
    industry: Industry,
    features: BTreeMap<String, Option<f64>>,
    scored: Result<Scored, String>,
    /// The score as served, built once at load, with the response body (no open dispute)
    /// and its digest.
    view: Option<(ScoreView, Bytes, Arc<str>)>,
}

/// A loaded engine.
#[derive(Debug)]
pub struct Engine {
    files: EngineFiles,
    model: Model,
    policy: Policy,
    catalogue: Catalogue,
    rows: BTreeMap<String, Row>,
    as_of: Option<NaiveDate>,
    stamp: Vec<Option<(std::time::SystemTime, u64)>>,
    bounds: Bounds,
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

/// A score as lenders and merchants see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScoreView {
    /// Merchant.
    pub merchant_id: String,
    /// Profile date.
    pub as_of: NaiveDate,
    /// Score.
    pub score: i64,
    /// PD over 12 months.
    pub pd: f64,
    /// Grade.
    pub grade: String,
    /// Up to four reasons.
    pub reasons: Vec<ReasonView>,
    /// Model.
    pub model_id: String,
    /// Whether the merchant has an open objection (异议).
    pub open_dispute: bool,
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
    /// Points lost.
    pub points_lost: f64,
}

fn view(id: &str, as_of: NaiveDate, s: &Scored, model_id: &str) -> ScoreView {
    ScoreView {
        merchant_id: id.to_owned(),
        as_of,
        score: s.score,
        pd: s.pd,
        grade: s.grade.clone(),
        reasons: s
            .reasons
            .iter()
            .map(|r| ReasonView {
                code: reasons::model_code(&r.feature),
                feature: r.feature.clone(),
                name_zh: r.name_zh.clone(),
                name_en: r.name_en.clone(),
                points_lost: r.points_lost,
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
    score: i64,
    pd: f64,
    grade: &'a str,
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
            score: self.score,
            pd: self.pd,
            grade: &self.grade,
            reasons: &self.reasons,
            model_id: &self.model_id,
            open_dispute,
        })
        .map_err(ApiError::internal)
    }
}

fn bad(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("{what}: {e}"))
}

impl Engine {
    /// Loads everything; any failure leaves the caller's current engine in place.
    pub fn load(files: &EngineFiles) -> Result<Engine, ApiError> {
        // Taken before reading, so a file changed during the load is loaded again.
        let stamp = stamp(files);
        let read =
            |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| bad(&p.display().to_string(), e));
        let policy = Policy::from_toml(&read(&files.policy)?).map_err(|e| bad("policy", e))?;
        let catalogue =
            Catalogue::from_toml(&read(&files.catalogue)?).map_err(|e| bad("catalogue", e))?;
        let (_, model) = Registry::new(&files.models)
            .champion()
            .map_err(|e| bad("model registry", e))?
            .ok_or_else(|| bad("model registry", "no champion"))?;
        let cats = model.categorical_features();
        let frame = Frame::read(&files.profiles, &cats).map_err(|e| bad("profiles", e))?;
        let scored = model
            .score_frame(&frame, true)
            .map_err(|e| bad("scoring", e))?;
        let text = |name: &str, i: usize| match frame.column(name) {
            Some(Column::Cat(v)) => v[i].clone(),
            _ => None,
        };
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        for (i, s) in scored.into_iter().enumerate() {
            let (Some(id), Some(date), Some(ind)) = (
                text("merchant_id", i),
                text("as_of", i),
                text("industry", i),
            ) else {
                continue;
            };
            let as_of = NaiveDate::from_str(&date).map_err(|e| bad("profiles: as_of", e))?;
            if rows.get(&id).is_some_and(|r| r.as_of >= as_of) {
                continue;
            }
            let industry = Industry::from_str(&ind).map_err(|e| bad("profiles: industry", e))?;
            let features = frame.numeric_row(i);
            let view = match s.as_ref() {
                Ok(s) => {
                    let v = view(&id, as_of, s, &model.id);
                    let body = Bytes::from(v.json(false).map_err(|e| bad("scoring", e))?);
                    let d: Arc<str> = digest(&body).into();
                    Some((v, body, d))
                }
                Err(_) => None,
            };
            rows.insert(
                id,
                Row {
                    as_of,
                    industry,
                    features,
                    scored: s,
                    view,
                },
            );
        }
        let as_of = rows.values().map(|r| r.as_of).max();
        let bounds = Bounds {
            term_min: catalogue
                .products
                .iter()
                .map(|p| p.min_term_months)
                .min()
                .unwrap_or(1)
                .max(1),
            term_max: catalogue
                .products
                .iter()
                .map(|p| p.max_term_months)
                .max()
                .unwrap_or(1)
                .max(1),
        };
        Ok(Engine {
            files: files.clone(),
            model_id: model.id.as_str().into(),
            model,
            policy,
            catalogue,
            rows,
            as_of,
            stamp,
            bounds,
            decisions: Mutex::new(HashMap::new()),
        })
    }

    /// The request ranges this engine's catalogue sets.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Whether a merchant has a profile.
    pub fn has(&self, id: &str) -> bool {
        self.rows.contains_key(id)
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
        self.rows.len()
    }

    /// Latest profile date.
    pub fn as_of(&self) -> Option<NaiveDate> {
        self.as_of
    }

    /// Some merchant ids (for the demo credentials).
    pub fn merchant_ids(&self) -> impl Iterator<Item = &String> {
        self.rows.keys()
    }

    fn row(&self, id: &str) -> Result<&Row, ApiError> {
        self.rows.get(id).ok_or_else(|| {
            ApiError::new(
                Code::UnknownMerchant,
                format!("no profile for merchant {id}"),
            )
        })
    }

    fn scored<'a>(&self, id: &str, row: &'a Row) -> Result<&'a Scored, ApiError> {
        row.scored.as_ref().map_err(|why| {
            ApiError::new(
                Code::Unscorable,
                format!("merchant {id} cannot be scored: {why}"),
            )
        })
    }

    /// A merchant's score.
    pub fn score(&self, id: &str) -> Result<&ScoreView, ApiError> {
        let row = self.row(id)?;
        let s = self.scored(id, row)?;
        row.view.as_ref().map(|v| &v.0).ok_or_else(|| {
            ApiError::internal(format!("merchant {id} scored {} without a view", s.score))
        })
    }

    /// The score's response body with the merchant's dispute flag, and its digest: built
    /// once at load for the usual case of no open dispute.
    pub fn score_body(&self, id: &str, open_dispute: bool) -> Result<(Bytes, Arc<str>), ApiError> {
        let row = self.row(id)?;
        self.scored(id, row)?;
        let (v, body, d) = row
            .view
            .as_ref()
            .ok_or_else(|| ApiError::internal(format!("merchant {id} has no score view")))?;
        if open_dispute {
            let body = Bytes::from(v.json(true)?);
            let d = digest(&body).into();
            Ok((body, d))
        } else {
            Ok((body.clone(), Arc::clone(d)))
        }
    }

    /// The grade and escrow coverage a lender is shown of a merchant, remembered for alerts.
    pub fn shown(&self, id: &str) -> Option<(&str, Option<f64>)> {
        let row = self.rows.get(id)?;
        let s = row.scored.as_ref().ok()?;
        Some((
            s.grade.as_str(),
            row.features.get("escrow_coverage").copied().flatten(),
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
        let row = self.row(id)?;
        let s = self.scored(id, row)?;
        if let Some(p) = &product {
            if !self.catalogue.products.iter().any(|x| &x.id == p) {
                return Err(ApiError::new(
                    Code::UnknownProduct,
                    format!("no product {p} in catalogue {}", self.catalogue.version),
                )
                .at("product"));
            }
        }
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
        let app = Applicant::from_profile(
            id,
            row.as_of,
            row.industry,
            row.features.clone(),
            &self.model,
            s,
            open_dispute,
        );
        let req = LoanRequest {
            amount,
            term_months,
            purpose: purpose.as_str().to_owned(),
            product: ask.product.clone(),
        };
        let d: Decision = decide(&app, &req, &self.policy, &self.catalogue)
            .map_err(|e| ApiError::internal(format!("deciding for {id}: {e}")))?;
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
        let row = self.row(id)?;
        let s = self.scored(id, row)?;
        let grades: Vec<String> = self
            .model
            .master_scale
            .0
            .iter()
            .map(|g| g.name.clone())
            .collect();
        let last = last.map(|l: &Seen| LastSeen {
            grade: l.grade.clone(),
            escrow_coverage: l.escrow_coverage,
        });
        Ok(alerts(
            &row.features,
            &s.grade,
            &grades,
            last.as_ref(),
            &self.policy.alerts,
        ))
    }

    /// A merchant's characteristics with display names.
    pub fn profile(&self, id: &str) -> Result<ProfileView, ApiError> {
        let row = self.row(id)?;
        let characteristics = yuanxin_profile::FEATURES
            .iter()
            .map(|f| CharacteristicView {
                name: f.name.to_owned(),
                name_zh: f.name_zh.to_owned(),
                name_en: f.name_en.to_owned(),
                group: format!("{:?}", f.group),
                unit: f.unit.to_owned(),
                value: row.features.get(f.name).copied().flatten(),
                in_model: self.model.features.iter().any(|m| m.name == f.name),
            })
            .collect();
        Ok(ProfileView {
            merchant_id: id.to_owned(),
            as_of: row.as_of,
            industry: row.industry.to_string(),
            characteristics,
        })
    }

    /// Population stability of the merchants served now against the training sample.
    pub fn stability(&self) -> Result<StabilityView, ApiError> {
        let base = self.model.baseline.as_ref().ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                format!(
                    "model {} carries no training baseline (retrain it to measure stability)",
                    self.model.id
                ),
            )
        })?;
        let scores: Vec<f64> = self
            .rows
            .values()
            .filter_map(|r| r.scored.as_ref().ok())
            // Scores are whole points when served, as in the baseline.
            .map(|s| s.score as f64)
            .collect();
        let score_psi = base.score.psi(&scores);
        let mut characteristics: Vec<CharacteristicPsi> = base
            .characteristics
            .iter()
            .map(|(name, d)| {
                let xs: Vec<f64> = self
                    .rows
                    .values()
                    .map(|r| r.features.get(name).copied().flatten().unwrap_or(f64::NAN))
                    .collect();
                let psi = d.psi(&xs);
                CharacteristicPsi {
                    name: name.clone(),
                    psi,
                    verdict: psi_verdict(psi).to_owned(),
                }
            })
            .collect();
        characteristics.sort_by(|a, b| b.psi.total_cmp(&a.psi).then(a.name.cmp(&b.name)));
        Ok(StabilityView {
            model_id: self.model.id.clone(),
            baseline_rows: base.rows,
            current_rows: scores.len() as u64,
            as_of: self.as_of,
            score_psi,
            verdict: psi_verdict(score_psi).to_owned(),
            characteristics,
        })
    }

    /// The registry's models.
    pub fn models(&self) -> Result<serde_json::Value, ApiError> {
        let (entries, invalid) = Registry::new(&self.files.models)
            .list()
            .map_err(ApiError::internal)?;
        Ok(serde_json::json!({"serving": self.model.id, "models": entries, "invalid": invalid}))
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
