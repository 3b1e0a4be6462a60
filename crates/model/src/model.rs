//! The model file: everything needed to score, explain and audit a model in one
//! self-describing JSON document, with a format name, a schema version and a BLAKE3 digest
//! of its content, so a damaged, foreign or too-new file is refused with a clear error.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::binning::{Binning, Slot, Value};
use crate::boost::Boost;
use crate::frame::{Column, Frame};
use crate::metrics::Evaluation;
use crate::scale::{Calibration, MasterScale, Scaling};
use crate::scorecard::Scorecard;
use crate::train::TrainConfig;
use crate::ModelError;

/// Most rows [`Model::importance`] reads.
pub const IMPORTANCE_ROWS: usize = 20_000;

/// The format name written in every model file.
pub const FORMAT: &str = "yuanxin-model";
/// The newest schema version this build writes; it reads every version from 1 on.
///
/// Version 2 added category splits to boosted trees and the switch that drops the
/// catalogue's monotone constraints (`catalogue_monotone`). A model is written as the
/// oldest version that holds it, so a model that uses neither is still version 1 (the same
/// bytes as before) and builds that know only version 1 keep reading it; one that uses
/// either is version 2, which those builds refuse by its version.
pub const SCHEMA_VERSION: u32 = 2;

/// Which kind of model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// WoE logistic scorecard.
    #[default]
    Scorecard,
    /// Gradient-boosted trees.
    Boost,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Scorecard => "scorecard",
            Method::Boost => "boost",
        })
    }
}

/// A characteristic the model reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureInfo {
    /// Column name.
    pub name: String,
    /// Read as categories.
    pub categorical: bool,
    /// Chinese display name (the column name when the catalogue has none).
    pub name_zh: String,
    /// English display name.
    pub name_en: String,
}

/// The scoring engine of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Predictor {
    /// A scorecard.
    Scorecard(Scorecard),
    /// Boosted trees over the features in order; categorical features enter as the WoE of
    /// their binning in `encoders` (same order as the features, `None` for numeric ones).
    Boost {
        /// The trees.
        boost: Boost,
        /// WoE encoders of categorical features.
        encoders: Vec<Option<Binning>>,
    },
}

/// Where the training data came from and how it was used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    /// File name of the table.
    pub source: String,
    /// BLAKE3 of the rows used (values, outcomes and sets), independent of file layout.
    pub fingerprint: String,
    /// Rows in the table.
    pub rows: u64,
    /// Rows used to fit.
    pub train: u64,
    /// Of the training rows, those held out to choose the number of trees (early stopping)
    /// before the final fit on all training rows.
    pub validation: u64,
    /// Rows held out for testing.
    pub test: u64,
    /// Rows not used, by reason.
    pub excluded: Vec<(String, u64)>,
    /// Candidate columns left out, with the reason.
    pub skipped_columns: Vec<(String, String)>,
    /// CSV columns read as numbers although a few values are not numbers (those are
    /// missing). Written only when there are some, so older files keep their digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coerced_columns: Vec<crate::frame::Coerced>,
    /// Latest `as_of` in the table, for profile panels.
    pub as_of_max: Option<String>,
}

/// Evaluation on one part of the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetEvaluation {
    /// `train` or `test`.
    pub set: String,
    /// The evaluation.
    pub evaluation: Evaluation,
}

/// A trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Identifier: the method and the first 12 hex digits of the content digest.
    pub id: String,
    /// Kind of model.
    pub method: Method,
    /// Creation time, from the `--created-at` option or the data (never the clock).
    pub created_at: Option<String>,
    /// Target column (1 = bad).
    pub target: String,
    /// Seed of every random choice.
    pub seed: u64,
    /// Characteristics read, in model order.
    pub features: Vec<FeatureInfo>,
    /// Configuration used.
    pub config: TrainConfig,
    /// Score scaling.
    pub scaling: Scaling,
    /// From score to PD.
    pub calibration: Calibration,
    /// From PD to grade.
    pub master_scale: MasterScale,
    /// The engine.
    pub predictor: Predictor,
    /// Training data.
    pub training: TrainingData,
    /// Evaluation per set.
    pub evaluation: Vec<SetEvaluation>,
    /// The training rows' distributions of score and characteristics, the reference for
    /// population stability (absent in files written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// The training sample's distributions, kept with the model so stability can be measured
/// wherever the model serves, without the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Rows it was taken from (the training set).
    pub rows: u64,
    /// Scores, in deciles.
    pub score: crate::metrics::Distribution,
    /// Each numeric characteristic the model reads, in model order.
    pub characteristics: Vec<(String, crate::metrics::Distribution)>,
}

/// A reason code: a characteristic that cost the row points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// Characteristic.
    pub feature: String,
    /// Chinese display name.
    pub name_zh: String,
    /// English display name.
    pub name_en: String,
    /// Points lost: against the best bin (scorecard), or the points equivalent of the
    /// characteristic's contribution to the risk (boosted trees). At least
    /// [`MIN_REASON_POINTS`].
    pub points_lost: f64,
    /// The applicant's value, as shown (`missing` when it has none).
    pub value: String,
    /// The scorecard bin the value fell in (its label); none for boosted trees, whose
    /// loss is the trees' contribution rather than a bin's points.
    pub bin: Option<String>,
}

/// The smallest loss that is a reason: a characteristic that cost the applicant less than
/// a point did not hold its score down in any sense an adverse-action notice could state.
pub const MIN_REASON_POINTS: f64 = 1.0;

/// A scored row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Score (higher = safer), rounded to a whole point.
    pub score: i64,
    /// Probability of the event over the label's horizon.
    pub pd: f64,
    /// Master-scale grade.
    pub grade: String,
    /// Up to four reasons, largest loss first.
    pub reasons: Vec<Reason>,
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    format: String,
    schema_version: u32,
    digest: String,
    model: Model,
}

/// A column of the frame matched to a model feature.
enum Input<'a> {
    Num(&'a [f64]),
    Cat(&'a [Option<String>]),
}

impl Input<'_> {
    fn value(&self, i: usize) -> Value<'_> {
        match self {
            Input::Num(v) => Value::Num(v[i]),
            Input::Cat(v) => Value::Cat(v[i].as_deref()),
        }
    }
    fn show(&self, i: usize) -> String {
        match self {
            Input::Num(v) if v[i].is_nan() => "missing".into(),
            Input::Num(v) => crate::binning::num_label(v[i]),
            Input::Cat(v) => v[i].clone().unwrap_or_else(|| "missing".into()),
        }
    }
}

impl Model {
    /// The oldest schema version that holds this model (see [`SCHEMA_VERSION`]).
    fn schema_version(&self) -> u32 {
        let category_splits = match &self.predictor {
            Predictor::Boost { boost, .. } => boost
                .trees
                .iter()
                .any(|t| t.nodes.iter().any(|n| !n.categories.is_empty())),
            Predictor::Scorecard(_) => false,
        };
        if category_splits || !self.config.catalogue_monotone {
            2
        } else {
            1
        }
    }

    fn digest(&self) -> Result<String, ModelError> {
        let bytes = serde_json::to_vec(self)
            .map_err(|e| ModelError::Fit(format!("serialising the model: {e}")))?;
        Ok(blake3::hash(&bytes).to_hex().to_string())
    }

    /// Sets `id` from the content (method + first 12 hex digits of the digest).
    pub(crate) fn assign_id(&mut self) -> Result<(), ModelError> {
        self.id = String::new();
        let d = self.digest()?;
        self.id = format!("{}-{}", self.method, &d[..12]);
        Ok(())
    }

    /// The model file's bytes (JSON; deterministic).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let body = FileBody {
            format: FORMAT.into(),
            schema_version: self.schema_version(),
            digest: self.digest()?,
            model: self.clone(),
        };
        // Scorecards are read by people: indent them. Tree ensembles are thousands of
        // nodes: keep them compact (a quarter of the size).
        let out = match self.method {
            Method::Scorecard => serde_json::to_vec_pretty(&body),
            Method::Boost => serde_json::to_vec(&body),
        };
        let mut out = out.map_err(|e| ModelError::Fit(format!("serialising the model: {e}")))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Writes the model file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let bytes = self.to_bytes()?;
        let io = |e| ModelError::Io(path.display().to_string(), e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads and checks a model file.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let bytes =
            std::fs::read(path).map_err(|e| ModelError::Io(path.display().to_string(), e))?;
        Model::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses and checks a model file's bytes.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Model, ModelError> {
        let bad = |why: String| ModelError::BadModel {
            path: name.to_owned(),
            why,
        };
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            bad(format!(
                "not valid JSON ({e}); the file is damaged or not a model"
            ))
        })?;
        match v.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => return Err(bad(format!("format is {other:?}, not {FORMAT:?}"))),
            None => return Err(bad(format!("no format field: not a {FORMAT} file"))),
        }
        match v.get("schema_version").and_then(|s| s.as_u64()) {
            Some(s) if (1..=u64::from(SCHEMA_VERSION)).contains(&s) => {}
            Some(s) => {
                return Err(bad(format!(
                    "schema version {s}; this build reads versions 1 to {SCHEMA_VERSION}"
                )))
            }
            None => return Err(bad("no schema_version".into())),
        }
        let body: FileBody = serde_json::from_value(v)
            .map_err(|e| bad(format!("content does not match its schema: {e}")))?;
        let needs = body.model.schema_version();
        if body.schema_version != needs {
            return Err(bad(format!(
                "schema version {} does not match the content, which is version {needs}",
                body.schema_version
            )));
        }
        let digest = body.model.digest()?;
        if digest != body.digest {
            return Err(bad(format!("digest mismatch (file says {}, content is {digest}): the file was altered or damaged", body.digest)));
        }
        body.model.validate().map_err(|e| bad(e.to_string()))?;
        Ok(body.model)
    }

    /// Internal consistency checks beyond the schema.
    fn validate(&self) -> Result<(), ModelError> {
        self.scaling.check()?;
        self.master_scale.clone().check()?;
        let bad = |m: String| Err(ModelError::Data(m));
        match &self.predictor {
            Predictor::Scorecard(s) => {
                if s.characteristics.len() != self.features.len() {
                    return bad(
                        "the scorecard's characteristics and the feature list differ".into(),
                    );
                }
                for (c, f) in s.characteristics.iter().zip(&self.features) {
                    if c.binning.name != f.name || c.points.len() != c.binning.bins.len() {
                        return bad(format!("characteristic {} is inconsistent", f.name));
                    }
                }
            }
            Predictor::Boost { boost, encoders } => {
                if encoders.len() != self.features.len()
                    || boost.monotone.len() != self.features.len()
                {
                    return bad("the trees' feature list is inconsistent".into());
                }
                for t in &boost.trees {
                    for (i, n) in t.nodes.iter().enumerate() {
                        let (l, r) = (n.left as usize, n.right as usize);
                        if (l != 0 || r != 0)
                            && (l >= t.nodes.len()
                                || r >= t.nodes.len()
                                || n.feature as usize >= self.features.len())
                        {
                            return bad("a tree node points outside its tree".into());
                        }
                        // Training appends children after their parent; a file where a
                        // child comes first could send a row round in circles.
                        if (l != 0 || r != 0) && (l <= i || r <= i) {
                            return bad("a tree node points back up its tree".into());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn inputs<'a>(&self, frame: &'a Frame) -> Result<Vec<Input<'a>>, ModelError> {
        let missing: Vec<&str> = self
            .features
            .iter()
            .filter(|f| frame.column(&f.name).is_none())
            .map(|f| f.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(ModelError::Data(format!(
                "the table lacks the model's columns: {}",
                missing.join(", ")
            )));
        }
        Ok(self
            .features
            .iter()
            .filter_map(|f| frame.column(&f.name))
            .map(|c| match c {
                Column::Num(v) => Input::Num(v),
                Column::Cat(v) => Input::Cat(v),
            })
            .collect())
    }

    /// Log-odds of bad for every row, or why the row cannot be scored.
    pub fn logits(&self, frame: &Frame) -> Result<Vec<Result<f64, String>>, ModelError> {
        let inputs = self.inputs(frame)?;
        let n = frame.rows();
        match &self.predictor {
            Predictor::Scorecard(s) => {
                // Column by column: a few comparisons per value.
                let mut total: Vec<Result<f64, String>> = vec![Ok(0.0); n];
                for (c, input) in s.characteristics.iter().zip(&inputs) {
                    for (i, t) in total.iter_mut().enumerate() {
                        if let Ok(acc) = t {
                            let slot = self.place(&c.binning, input.value(i));
                            match c.points(slot) {
                                Some(p) => *acc += p,
                                None => *t = Err(unscorable(&c.binning, slot, &input.show(i))),
                            }
                        }
                    }
                }
                Ok(total
                    .into_iter()
                    .map(|t| t.map(|pts| self.scaling.logit(pts)))
                    .collect())
            }
            Predictor::Boost { boost, encoders } => {
                let cols = encode(&inputs, encoders, n, self.conservative());
                let x: Vec<&[f64]> = cols.iter().map(|c| c.0.as_slice()).collect();
                let margins = boost.margins(&x, n);
                Ok(margins
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| {
                        match cols.iter().find_map(|c| c.1.get(i).and_then(Option::clone)) {
                            Some(why) => Err(why),
                            None => Ok(m),
                        }
                    })
                    .collect())
            }
        }
    }

    /// Scores every row, in input order, with reasons when asked.
    pub fn score_frame(
        &self,
        frame: &Frame,
        with_reasons: bool,
    ) -> Result<Vec<Result<Scored, String>>, ModelError> {
        self.score_frame_where(frame, &|_| with_reasons)
    }

    /// [`Self::score_frame`], with reasons for the rows `reasons_for` names only: a
    /// merchant's earlier month-ends need their score and grade, not their reasons (which
    /// would cost more memory than the rest of the scoring for a city's history).
    pub fn score_frame_where(
        &self,
        frame: &Frame,
        reasons_for: &dyn Fn(usize) -> bool,
    ) -> Result<Vec<Result<Scored, String>>, ModelError> {
        let logits = self.logits(frame)?;
        let inputs = self.inputs(frame)?;
        let any_reasons = (0..frame.rows()).any(reasons_for);
        let encoded = match &self.predictor {
            Predictor::Boost { encoders, .. } if any_reasons => {
                Some(encode(&inputs, encoders, frame.rows(), self.conservative()))
            }
            _ => None,
        };
        Ok(logits
            .into_iter()
            .enumerate()
            .map(|(i, z)| {
                let z = z?;
                let score = self.scaling.score(z);
                let pd = self.calibration.pd(z);
                let reasons = if reasons_for(i) {
                    self.reasons(&inputs, encoded.as_deref(), i)
                } else {
                    Vec::new()
                };
                Ok(Scored {
                    score: score.round() as i64,
                    pd,
                    grade: self.master_scale.grade(pd).to_owned(),
                    reasons,
                })
            })
            .collect())
    }

    fn reasons(&self, inputs: &[Input<'_>], encoded: Option<&[Encoded]>, i: usize) -> Vec<Reason> {
        let mut lost: Vec<(usize, f64, Option<String>)> = match (&self.predictor, encoded) {
            (Predictor::Scorecard(s), _) => s
                .characteristics
                .iter()
                .zip(inputs)
                .enumerate()
                .filter_map(|(k, (c, input))| {
                    let slot = self.place(&c.binning, input.value(i));
                    let p = c.points(slot)?;
                    let label = c.binning.stat(slot).map(|s| s.label.clone());
                    Some((k, c.best_points - p, label))
                })
                .collect(),
            (Predictor::Boost { boost, .. }, Some(cols)) => {
                let factor = self.scaling.factor();
                boost
                    .contributions(&|f| cols[f].0[i], self.features.len())
                    .into_iter()
                    .enumerate()
                    .map(|(k, c)| (k, c * factor, None))
                    .collect()
            }
            (Predictor::Boost { .. }, None) => Vec::new(),
        };
        // Rounded as shown: a loss that reads 1.00 is a reason.
        lost.retain(|l| (l.1 * 100.0).round() / 100.0 >= MIN_REASON_POINTS);
        lost.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        lost.truncate(4);
        lost.into_iter()
            .map(|(k, pts, bin)| {
                let f = &self.features[k];
                Reason {
                    feature: f.name.clone(),
                    name_zh: f.name_zh.clone(),
                    name_en: f.name_en.clone(),
                    points_lost: (pts * 100.0).round() / 100.0,
                    value: inputs
                        .get(k)
                        .map_or_else(|| "missing".into(), |x| x.show(i)),
                    bin,
                }
            })
            .collect()
    }

    /// Boosted trees: each characteristic's mean absolute contribution to the log-odds
    /// over the rows of `frame` (at most [`IMPORTANCE_ROWS`] of them, evenly spaced, in
    /// row order), what drives the trees where split counts only say how often a
    /// characteristic was used. Rows that cannot be scored are left out. Empty for
    /// scorecards, whose points tables say it directly.
    pub fn importance(&self, frame: &Frame) -> Result<Vec<f64>, ModelError> {
        let Predictor::Boost { boost, encoders } = &self.predictor else {
            return Ok(Vec::new());
        };
        let inputs = self.inputs(frame)?;
        let n = frame.rows();
        let cols = encode(&inputs, encoders, n, self.conservative());
        let features = self.features.len();
        let step = n.div_ceil(IMPORTANCE_ROWS).max(1);
        let mut sum = vec![0.0; features];
        let mut rows = 0usize;
        for i in (0..n).step_by(step) {
            if cols.iter().any(|c| c.1.get(i).is_some_and(Option::is_some)) {
                continue;
            }
            let c = boost.contributions(&|f| cols[f].0[i], features);
            for (s, v) in sum.iter_mut().zip(c) {
                *s += v.abs();
            }
            rows += 1;
        }
        Ok(sum.into_iter().map(|s| s / rows.max(1) as f64).collect())
    }

    /// Whether unseen categories go to the riskiest bin ([`crate::UnseenCategory`]).
    fn conservative(&self) -> bool {
        self.config.unseen_category == crate::UnseenCategory::MostConservative
    }

    /// [`place`] under this model's rule for unseen categories.
    fn place(&self, b: &Binning, v: Value<'_>) -> Slot {
        place(b, v, self.conservative())
    }

    /// The characteristics read as categories: tables to score are read with these.
    pub fn categorical_features(&self) -> Vec<String> {
        self.features
            .iter()
            .filter(|f| f.categorical)
            .map(|f| f.name.clone())
            .collect()
    }

    /// Test-set evaluation if there is one, else the last evaluation recorded.
    pub fn headline(&self) -> Option<&SetEvaluation> {
        self.evaluation
            .iter()
            .find(|e| e.set == "test")
            .or(self.evaluation.last())
    }
}

fn unscorable(b: &Binning, slot: Slot, shown: &str) -> String {
    match slot {
        Slot::Unseen => format!("{}: value {shown:?} was not seen in training", b.name),
        Slot::Missing => format!("{}: missing, and training had no missing values", b.name),
        Slot::Special => format!("{}: special value {shown}, and training had none", b.name),
        Slot::Bin(_) => format!("{}: value {shown} falls in a bin empty in training", b.name),
    }
}

/// The bin a value falls in; a category never seen in training goes to the riskiest bin
/// when the model says so (`UnseenCategory::MostConservative`), else stays unseen.
fn place(b: &Binning, v: Value<'_>, conservative: bool) -> Slot {
    match b.slot(v) {
        Slot::Unseen if conservative => b.riskiest().unwrap_or(Slot::Unseen),
        slot => slot,
    }
}

/// A column encoded for the trees, with why each row's value could not be (if so).
type Encoded = (Vec<f64>, Vec<Option<String>>);

/// Numeric columns for the trees: numbers as they are, categories as their WoE; the second
/// vector holds, per row, why the value cannot be encoded (an unseen category).
fn encode(
    inputs: &[Input<'_>],
    encoders: &[Option<Binning>],
    n: usize,
    conservative: bool,
) -> Vec<Encoded> {
    inputs
        .iter()
        .zip(encoders)
        .map(|(input, enc)| match (input, enc) {
            (Input::Num(v), None) => (v.to_vec(), vec![None; n]),
            (input, Some(b)) => {
                let mut x = Vec::with_capacity(n);
                let mut why = Vec::with_capacity(n);
                for i in 0..n {
                    let slot = place(b, input.value(i), conservative);
                    match b.stat(slot) {
                        Some(s) if slot == Slot::Missing && s.count == 0 => {
                            x.push(f64::NAN);
                            why.push(None);
                        }
                        Some(s) if s.count > 0 => {
                            x.push(s.woe);
                            why.push(None);
                        }
                        _ => {
                            x.push(f64::NAN);
                            why.push(Some(unscorable(b, slot, &input.show(i))));
                        }
                    }
                }
                (x, why)
            }
            (Input::Cat(v), None) => (
                v.iter()
                    .map(|s| {
                        s.as_deref()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(f64::NAN)
                    })
                    .collect(),
                v.iter()
                    .map(|s| {
                        s.as_deref()
                            .filter(|s| s.parse::<f64>().is_err())
                            .map(|s| format!("value {s:?} is not a number"))
                    })
                    .collect(),
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{train, TrainConfig};

    /// A boosted model written before schema version 2 reads back, and writes back the
    /// same bytes: the fields added since are left out when unused.
    #[test]
    fn files_written_before_category_splits_read_and_write_back_unchanged() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data/models/german-boost-schema-v1.json");
        let bytes = std::fs::read(&path).unwrap();
        let model = Model::from_bytes(&bytes, "v1").unwrap();
        assert_eq!(model.schema_version(), 1);
        assert_eq!(model.config.boost.max_leaves, Some(31));
        assert_eq!(model.to_bytes().unwrap(), bytes);
        // Claiming version 2 without category splits is refused.
        let text = String::from_utf8(bytes).unwrap();
        let claimed = text.replacen("\"schema_version\":1,", "\"schema_version\":2,", 1);
        let err = Model::from_bytes(claimed.as_bytes(), "v2").unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    /// Six characteristics, each adding risk as it grows.
    fn frame(n: usize) -> Frame {
        let mut cols: Vec<(String, Column)> = (0..6)
            .map(|k| (format!("x{k}"), Column::Num(Vec::new())))
            .collect();
        let mut y = Vec::new();
        for i in 0..n {
            let mut z = -2.5;
            for (k, (_, c)) in cols.iter_mut().enumerate() {
                let v = ((i * (k * 2 + 3) + k * 7) % 101) as f64 / 100.0;
                z += (0.4 + 0.2 * k as f64) * v;
                if let Column::Num(c) = c {
                    c.push(v);
                }
            }
            let u =
                ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
            y.push(if u < crate::scale::sigmoid(z) {
                1.0
            } else {
                0.0
            });
        }
        cols.push(("y".into(), Column::Num(y)));
        Frame::new(cols).unwrap()
    }

    #[test]
    fn reason_codes_are_the_largest_point_losses_against_the_best_bin() {
        let f = frame(20_000);
        let cfg = TrainConfig {
            target: "y".into(),
            ..TrainConfig::default()
        };
        let model = train(&f, None, &cfg, "synthetic", 1, &mut |_| {})
            .unwrap()
            .model;
        let Predictor::Scorecard(card) = &model.predictor else {
            panic!("scorecard")
        };
        assert!(card.characteristics.len() >= 5, "{:?}", card.candidates);
        // A risky row: every value high.
        let row = Frame::new(
            (0..6)
                .map(|k| (format!("x{k}"), Column::Num(vec![0.99])))
                .collect(),
        )
        .unwrap();
        let scored = model.score_frame(&row, true).unwrap().remove(0).unwrap();
        assert!(scored.reasons.len() == 4, "{:?}", scored.reasons);
        for w in scored.reasons.windows(2) {
            assert!(w[0].points_lost >= w[1].points_lost);
        }
        // Each loss is best points minus the row's points for that characteristic, and no
        // characteristic left out lost more than the last one reported.
        let losses: Vec<(String, f64)> = card
            .characteristics
            .iter()
            .map(|c| {
                (
                    c.binning.name.clone(),
                    c.best_points - c.points(c.binning.slot(Value::Num(0.99))).unwrap(),
                )
            })
            .collect();
        for r in &scored.reasons {
            let l = losses.iter().find(|l| l.0 == r.feature).unwrap().1;
            assert!(
                (l - r.points_lost).abs() < 0.006,
                "{} {l} {}",
                r.feature,
                r.points_lost
            );
            assert_eq!(
                r.name_en, r.feature,
                "no catalogue entry: the column name is shown"
            );
        }
        let last = scored.reasons[3].points_lost;
        assert!(losses
            .iter()
            .filter(|l| !scored.reasons.iter().any(|r| r.feature == l.0))
            .all(|l| l.1 <= last + 0.006));
        // Each reason states the value and the bin it fell in.
        for r in &scored.reasons {
            assert_eq!(r.value, crate::binning::num_label(0.99));
            assert!(r.bin.as_deref().is_some_and(|b| !b.is_empty()), "{r:?}");
        }
        // A characteristic that cost less than a point is no reason: the safest row (every
        // value at the best bin) has none, and a row between has only losses of a point
        // or more.
        let safest: Vec<(String, Column)> = card
            .characteristics
            .iter()
            .map(|c| {
                let best = (0..200)
                    .map(|k| f64::from(k) / 200.0)
                    .min_by(|a, b| {
                        let p = |x: f64| {
                            c.best_points - c.points(c.binning.slot(Value::Num(x))).unwrap()
                        };
                        p(*a).total_cmp(&p(*b))
                    })
                    .unwrap();
                (c.binning.name.clone(), Column::Num(vec![best]))
            })
            .collect();
        let safe = model
            .score_frame(&Frame::new(safest).unwrap(), true)
            .unwrap()
            .remove(0)
            .unwrap();
        assert!(safe.reasons.is_empty(), "{:?}", safe.reasons);
        for x in [0.3, 0.5, 0.7] {
            let row = Frame::new(
                (0..6)
                    .map(|k| (format!("x{k}"), Column::Num(vec![x])))
                    .collect(),
            )
            .unwrap();
            let s = model.score_frame(&row, true).unwrap().remove(0).unwrap();
            assert!(
                s.reasons.iter().all(|r| r.points_lost >= MIN_REASON_POINTS),
                "{:?}",
                s.reasons
            );
        }
        // The score is the sum of points, and the PD and grade follow from it.
        let total: f64 = card
            .characteristics
            .iter()
            .map(|c| c.points(c.binning.slot(Value::Num(0.99))).unwrap())
            .sum();
        assert_eq!(scored.score, total.round() as i64);
        assert_eq!(scored.grade, model.master_scale.grade(scored.pd));
        // A safe row loses nothing worth reporting on most characteristics.
        let safe = Frame::new(
            (0..6)
                .map(|k| (format!("x{k}"), Column::Num(vec![0.0])))
                .collect(),
        )
        .unwrap();
        let s = model.score_frame(&safe, true).unwrap().remove(0).unwrap();
        assert!(s.score > scored.score && s.pd < scored.pd);
    }

    #[test]
    fn a_model_survives_the_round_trip_through_its_file() {
        let f = frame(5000);
        for method in [Method::Scorecard, Method::Boost] {
            let cfg = TrainConfig {
                target: "y".into(),
                method,
                boost: crate::boost::BoostParams {
                    max_trees: 30,
                    ..Default::default()
                },
                ..TrainConfig::default()
            };
            let model = train(&f, None, &cfg, "synthetic", 1, &mut |_| {})
                .unwrap()
                .model;
            let bytes = model.to_bytes().unwrap();
            let back = Model::from_bytes(&bytes, "mem").unwrap();
            assert_eq!(back, model);
            assert_eq!(back.to_bytes().unwrap(), bytes);
            assert_eq!(back.logits(&f).unwrap(), model.logits(&f).unwrap());
            // What drives the trees: every characteristic adds risk here, the last most.
            let importance = model.importance(&f).unwrap();
            if method == Method::Boost {
                assert_eq!(importance.len(), 6);
                assert!(importance.iter().all(|&v| v > 0.0), "{importance:?}");
                assert!(importance[5] > importance[0], "{importance:?}");
            } else {
                assert!(importance.is_empty());
            }
            // A tree whose node points back up it (a walk that would never end) is refused
            // even with a correct digest.
            if let Predictor::Boost { boost, .. } = &model.predictor {
                let mut looped = model.clone();
                let Predictor::Boost { boost: b, .. } = &mut looped.predictor else {
                    unreachable!()
                };
                let t = b.trees.iter_mut().find(|t| t.nodes.len() > 3).unwrap();
                let inner = (1..t.nodes.len()).find(|&i| t.nodes[i].left != 0).unwrap();
                t.nodes[inner].left = inner as u32;
                let err = Model::from_bytes(&looped.to_bytes().unwrap(), "looped").unwrap_err();
                assert!(err.to_string().contains("points back up"), "{err}");
                assert!(!boost.trees.is_empty());
            }
        }
    }
}
