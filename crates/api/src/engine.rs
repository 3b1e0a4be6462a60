//! The engine the service serves from: the champion model, the latest profile of every
//! merchant (scored once at load), the policy and the catalogue. Immutable once built; a
//! reload builds a new one and swaps it in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use yuanxin_decision::{decide, reasons, Applicant, Catalogue, Decision, LoanRequest, Policy};
use yuanxin_domain::Industry;
use yuanxin_model::registry::Registry;
use yuanxin_model::{Column, Frame, Model, Scored};

use crate::ApiError;

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
}

#[derive(Debug)]
struct Row {
    as_of: NaiveDate,
    industry: Industry,
    features: BTreeMap<String, Option<f64>>,
    scored: Result<Scored, String>,
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
}

/// A score as lenders and merchants see it.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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

fn bad(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("{what}: {e}"))
}

impl Engine {
    /// Loads everything; any failure leaves the caller's current engine in place.
    pub fn load(files: &EngineFiles) -> Result<Engine, ApiError> {
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
            rows.insert(
                id,
                Row {
                    as_of,
                    industry,
                    features,
                    scored: s,
                },
            );
        }
        let as_of = rows.values().map(|r| r.as_of).max();
        Ok(Engine {
            files: files.clone(),
            model,
            policy,
            catalogue,
            rows,
            as_of,
        })
    }

    /// Where it was loaded from.
    pub fn files(&self) -> &EngineFiles {
        &self.files
    }

    /// The serving model's id.
    pub fn model_id(&self) -> &str {
        &self.model.id
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
        self.rows
            .get(id)
            .ok_or_else(|| ApiError::NotFound(format!("no profile for merchant {id}")))
    }

    fn scored<'a>(&self, id: &str, row: &'a Row) -> Result<&'a Scored, ApiError> {
        row.scored
            .as_ref()
            .map_err(|why| ApiError::BadRequest(format!("merchant {id} cannot be scored: {why}")))
    }

    /// A merchant's score.
    pub fn score(&self, id: &str) -> Result<ScoreView, ApiError> {
        let row = self.row(id)?;
        let s = self.scored(id, row)?;
        Ok(ScoreView {
            merchant_id: id.to_owned(),
            as_of: row.as_of,
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
            model_id: self.model.id.clone(),
            open_dispute: false,
        })
    }

    /// A decision on a loan request.
    pub fn decide(
        &self,
        id: &str,
        amount: Decimal,
        term_months: u32,
        purpose: &str,
        product: Option<String>,
    ) -> Result<Decision, ApiError> {
        let row = self.row(id)?;
        let s = self.scored(id, row)?;
        let app = Applicant::from_profile(
            id,
            row.as_of,
            row.industry,
            row.features.clone(),
            &self.model,
            s,
            false,
        );
        let req = LoanRequest {
            amount,
            term_months,
            purpose: purpose.to_owned(),
            product,
        };
        decide(&app, &req, &self.policy, &self.catalogue)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// The registry's models.
    pub fn models(&self) -> Result<serde_json::Value, ApiError> {
        let (entries, invalid) = Registry::new(&self.files.models)
            .list()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(serde_json::json!({"serving": self.model.id, "models": entries, "invalid": invalid}))
    }
}
