//! Training: from a table and a configuration to a [`Model`], with every row and column
//! accounted for (used to fit, held out, or excluded with a reason).

use serde::{Deserialize, Serialize};

use crate::binning::{BinningParams, Trend, Value};
use crate::boost::{self, BoostParams};
use crate::frame::{split_column, Column, Frame, Set};
use crate::metrics::{evaluate, Distribution};
use crate::model::{Baseline, FeatureInfo, Method, Model, Predictor, SetEvaluation, TrainingData};
use crate::scale::{Calibration, MasterScale, Scaling};
use crate::scorecard::ScorecardParams;
use crate::{take, ModelError, Sample};
use yuanxin_domain::vocabulary::{self, columns, Direction};

/// Everything that decides a model, stored in the model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Scorecard or boosted trees.
    pub method: Method,
    /// Target column: 1 = bad, 0 = good, empty = not usable.
    pub target: String,
    /// Candidate characteristics; empty = every column but the target, the split and a
    /// profile panel's descriptive columns.
    pub features: Vec<String>,
    /// Columns to read as categories even if they hold numbers.
    pub categorical: Vec<String>,
    /// Columns never to use.
    pub exclude: Vec<String>,
    /// On a profile panel, the descriptive columns (`industry`, `district`) the model may
    /// use; none unless named. A merchant can change neither, and a lender must be able to
    /// justify each reason it gives: where a trade or a place carries no risk of its own,
    /// a chance difference in its bad rate would become points (the simulated city gives
    /// district no effect, yet the scorecard fitted with it took 63 points from the demo
    /// merchant for its district). Written to a model file only when set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub descriptive: Vec<String>,
    /// Seed of every random choice (the validation sample).
    pub seed: u64,
    /// Share of the training rows held out for early stopping (boosted trees).
    pub validation_share: f64,
    /// Monotone constraints for boosted trees (+1: risk rises with the value, −1: falls).
    /// Profile characteristics default to their catalogue direction.
    pub monotone: Vec<(String, i8)>,
    /// Whether profile characteristics get their catalogue direction as a monotone
    /// constraint (boosted trees). The constraints keep every score change explainable in
    /// the catalogue's terms, at a cost in accuracy (BENCHMARKS.md measures it). Written
    /// to a model file only when off, so files from before this setting keep their digest.
    #[serde(skip_serializing_if = "crate::boost::is_true")]
    pub catalogue_monotone: bool,
    /// When the table has a `label_status` column (a profile panel), the statuses whose
    /// rows may train and test; default `ok` only, so a row whose label window is
    /// incomplete (where only a default already seen gives a label, which would teach the
    /// model that such rows are all bad) or excluded never counts. Written to a model file
    /// only when set, so files from before this setting keep their digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_statuses: Option<Vec<String>>,
    /// Column whose values split the evaluation into segments (e.g. `industry`).
    pub segment: Option<String>,
    /// Creation time to record (default: the panel's latest `as_of`).
    pub created_at: Option<String>,
    /// Scorecard settings.
    pub scorecard: ScorecardParams,
    /// Boosting settings.
    pub boost: BoostParams,
    /// Score scaling.
    pub scaling: Scaling,
    /// Grades.
    pub master_scale: MasterScale,
    /// What a category never seen in training gets at scoring. Written to a model file
    /// only when not the default, so older files keep their digest.
    #[serde(skip_serializing_if = "UnseenCategory::is_default")]
    pub unseen_category: UnseenCategory,
}

/// What a category never seen in training gets when a row is scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnseenCategory {
    /// The row is not scored, with the category named as why (the default: a score is
    /// never made up).
    #[default]
    Unscorable,
    /// The riskiest bin of the training data: a conservative score rather than none.
    MostConservative,
}

impl UnseenCategory {
    fn is_default(&self) -> bool {
        *self == UnseenCategory::default()
    }
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            method: Method::Scorecard,
            target: String::new(),
            features: Vec::new(),
            categorical: Vec::new(),
            exclude: Vec::new(),
            descriptive: Vec::new(),
            seed: 2023,
            validation_share: 0.2,
            monotone: Vec::new(),
            catalogue_monotone: true,
            label_statuses: None,
            segment: None,
            created_at: None,
            scorecard: ScorecardParams::default(),
            boost: BoostParams::default(),
            scaling: Scaling::default(),
            master_scale: MasterScale::default(),
            unseen_category: UnseenCategory::default(),
        }
    }
}

fn display_names(name: &str) -> (String, String) {
    vocabulary::display_names(name).map_or_else(
        || (name.to_owned(), name.to_owned()),
        |(zh, en)| (zh.to_owned(), en.to_owned()),
    )
}

/// The IV floor of a scorecard on a profile panel unless the configuration sets one: the
/// trade's line under which a characteristic is "useless" for explaining a score.
const PANEL_MIN_IV: f64 = 0.02;

fn catalogue_monotone(name: &str) -> i8 {
    match vocabulary::characteristic(name).map(|f| f.direction) {
        Some(Direction::Up) => 1,
        Some(Direction::Down) => -1,
        _ => 0,
    }
}

/// The rows `idx` of a frame, in that order.
fn sub_frame(frame: &Frame, idx: &[usize]) -> Result<Frame, ModelError> {
    Frame::new(
        frame
            .names()
            .iter()
            .filter_map(|n| frame.column(n).map(|c| (n.clone(), take(c, idx))))
            .collect(),
    )
}

/// Trains a model on `frame`. `split` assigns rows to train/test (e.g. from a `row,set`
/// file); without it a panel's own `split` column is used, and failing that every row with
/// an outcome trains. `source` is recorded as the data's name. `threads` (0 = all cores)
/// changes the speed, never the model.
pub fn train(
    frame: &Frame,
    split: Option<Vec<Option<Set>>>,
    cfg: &TrainConfig,
    source: &str,
    threads: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Trained, ModelError> {
    let scaling = cfg.scaling.check()?;
    let master_scale = cfg.master_scale.clone().check()?;
    if !(0.0..0.9).contains(&cfg.validation_share) {
        return Err(ModelError::Config(format!(
            "validation_share must be in [0, 0.9), not {}",
            cfg.validation_share
        )));
    }
    if let Some(d) = cfg
        .descriptive
        .iter()
        .find(|d| !GATED.contains(&d.as_str()))
    {
        return Err(ModelError::Config(format!(
            "descriptive column {d:?} is not one of {}",
            GATED.join(", ")
        )));
    }
    let target = frame.target(&cfg.target)?;
    let sets = match split {
        Some(s) => s,
        None => split_column(frame).unwrap_or_else(|| vec![Some(Set::Train); frame.rows()]),
    };
    let unusable = unusable_labels(frame, cfg.label_statuses.as_deref());
    let (train_rows, test_rows, excluded) = split_rows(&target, &sets, &unusable);
    let is_panel =
        frame.index(columns::MERCHANT_ID).is_some() && frame.index(columns::AS_OF).is_some();
    let (names, skipped) = candidates(frame, cfg, is_panel, &train_rows)?;
    let bad: Vec<bool> = target.iter().map(|t| t.unwrap_or(false)).collect();
    let all = Sample {
        names: names.clone(),
        columns: names
            .iter()
            .filter_map(|n| frame.column(n).cloned())
            .collect(),
        bad,
    };
    let train_sample = all.take(&train_rows);
    let events = train_sample.bad.iter().filter(|&&b| b).count();
    if events == 0 || events == train_sample.bad.len() {
        return Err(ModelError::Data(format!(
            "the training rows need both outcomes: {} rows, {events} bad",
            train_sample.bad.len()
        )));
    }
    let fingerprint = fingerprint(&all, &train_rows, &test_rows);

    let cfg = &conventions(cfg, is_panel, &names, train_rows.len());
    let mut validation_rows: Vec<usize> = Vec::new();
    let fit_started = std::time::Instant::now();
    let mut train_logits: Vec<f64> = Vec::new();
    let mut boost_calibration: Option<Calibration> = None;
    let (predictor, features) = match cfg.method {
        Method::Scorecard => {
            progress(&format!(
                "binning {} characteristics on {} rows",
                names.len(),
                train_rows.len()
            ));
            let later = if is_panel {
                later_half(frame, &train_rows)
            } else {
                None
            };
            let (sc, z) = cfg
                .scorecard
                .fit(&train_sample, &scaling, threads, later.as_deref())?;
            train_logits = z;
            progress(&format!(
                "scorecard: {} characteristics selected",
                sc.characteristics.len()
            ));
            let features = sc
                .characteristics
                .iter()
                .map(|c| feature_info(frame, &c.binning.name))
                .collect();
            (Predictor::Scorecard(sc), features)
        }
        Method::Boost => {
            // A panel's rows are held out merchant by merchant.
            let groups: Option<Vec<String>> = match frame.column(columns::MERCHANT_ID) {
                Some(Column::Cat(v)) if is_panel => Some(
                    train_rows
                        .iter()
                        .map(|&r| v[r].clone().unwrap_or_default())
                        .collect(),
                ),
                _ => None,
            };
            let (b, encoders, validation, calibration) = fit_boost(
                cfg,
                &names,
                is_panel,
                &train_rows,
                &train_sample,
                groups.as_deref(),
                progress,
            )?;
            validation_rows = validation;
            boost_calibration = Some(calibration);
            let features = names.iter().map(|n| feature_info(frame, n)).collect();
            (Predictor::Boost { boost: b, encoders }, features)
        }
    };
    let mut model = Model {
        id: String::new(),
        method: cfg.method,
        created_at: cfg.created_at.clone().or_else(|| max_as_of(frame)),
        target: cfg.target.clone(),
        seed: cfg.seed,
        features,
        config: cfg.clone(),
        scaling,
        calibration: Calibration::IDENTITY,
        master_scale,
        predictor,
        training: TrainingData {
            source: source.to_owned(),
            fingerprint,
            rows: frame.rows() as u64,
            train: train_rows.len() as u64,
            validation: validation_rows.len() as u64,
            test: test_rows.len() as u64,
            excluded,
            skipped_columns: skipped,
            coerced_columns: frame.coerced().to_vec(),
            as_of_max: if is_panel { max_as_of(frame) } else { None },
        },
        evaluation: Vec::new(),
        baseline: None,
    };
    // The scorecard's PD is calibrated on its training rows: a logistic regression on a
    // few WoE columns hardly overfits them, but its log-odds are linear in the points, and
    // on large samples the bad rate bends away from that line at both ends, which the
    // isotonic curve follows where cross-validation says it should. Boosted trees are
    // calibrated on the rows held out of their fit (`fit_boost`).
    model.calibration = match boost_calibration {
        Some(c) => c,
        None => Calibration::choose(&train_logits, &train_sample.bad, "training rows"),
    };
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    progress("evaluating");
    if let Predictor::Scorecard(card) = &mut model.predictor {
        let eval_rows = if test_rows.is_empty() {
            &train_rows
        } else {
            &test_rows
        };
        card.what_if(&train_sample, &all.take(eval_rows), cfg.scorecard.l2);
    }
    let (sets, importance) =
        evaluate_sets(&mut model, frame, cfg, &train_rows, &test_rows, &all.bad)?;
    model.assign_id()?;
    Ok(Trained {
        model,
        sets,
        importance,
        fit_seconds,
    })
}

/// Training and test rows by the split, and what is left out with why.
fn split_rows(
    target: &[Option<bool>],
    sets: &[Option<Set>],
    unusable: &[Option<String>],
) -> (Vec<usize>, Vec<usize>, Vec<(String, u64)>) {
    let mut excluded: Vec<(String, u64)> = Vec::new();
    let (mut train_rows, mut test_rows) = (Vec::new(), Vec::new());
    let (mut no_target, mut no_set) = (0u64, 0u64);
    let mut by_status: std::collections::BTreeMap<String, u64> = Default::default();
    for (i, (t, s)) in target.iter().zip(sets).enumerate() {
        if let Some(Some(status)) = unusable.get(i) {
            *by_status
                .entry(format!("label_status_{status}"))
                .or_default() += 1;
            continue;
        }
        match (t, s) {
            (None, _) => no_target += 1,
            (_, None) => no_set += 1,
            (Some(_), Some(Set::Train)) => train_rows.push(i),
            (Some(_), Some(Set::Test)) => test_rows.push(i),
        }
    }
    if no_target > 0 {
        excluded.push(("target_missing".into(), no_target));
    }
    if no_set > 0 {
        excluded.push(("not_in_split".into(), no_set));
    }
    excluded.extend(by_status);
    (train_rows, test_rows, excluded)
}

/// For each row, the label status that makes its label unusable, if any: none unless the
/// table has a `label_status` column (a profile panel), where every status but the allowed
/// ones (default `ok`) does. Training and evaluation both leave these rows out.
pub fn unusable_labels(frame: &Frame, allowed: Option<&[String]>) -> Vec<Option<String>> {
    let ok = ["ok".to_owned()];
    let allowed = allowed.unwrap_or(&ok);
    match frame.column(columns::LABEL_STATUS) {
        Some(Column::Cat(v)) => v
            .iter()
            .map(|s| {
                let s = s.as_deref().unwrap_or("");
                (!allowed.iter().any(|a| a == s)).then(|| s.to_owned())
            })
            .collect(),
        _ => vec![None; frame.rows()],
    }
}

/// The descriptive panel columns a model uses only when the configuration names them
/// ([`TrainConfig::descriptive`]).
const GATED: [&str; 2] = [columns::INDUSTRY, columns::DISTRICT];

/// Columns left out of the candidates, with why.
type Skipped = Vec<(String, String)>;

/// The candidate characteristics: the configuration's, or every column but the target,
/// the split and a panel's metadata; a text column that looks like an identifier is
/// skipped with the reason.
fn candidates(
    frame: &Frame,
    cfg: &TrainConfig,
    is_panel: bool,
    train_rows: &[usize],
) -> Result<(Vec<String>, Skipped), ModelError> {
    let mut skipped: Vec<(String, String)> = Vec::new();
    let candidates: Vec<String> = if cfg.features.is_empty() {
        frame
            .names()
            .iter()
            .filter(|n| {
                **n != cfg.target && n.as_str() != columns::SPLIT && !cfg.exclude.contains(n)
            })
            .filter(|n| !(is_panel && columns::ROW_META.contains(&n.as_str())))
            .filter(|n| !(is_panel && GATED.contains(&n.as_str()) && !cfg.descriptive.contains(n)))
            .cloned()
            .collect()
    } else {
        for f in &cfg.features {
            if frame.index(f).is_none() {
                return Err(ModelError::Data(format!("feature {f} is not in the table")));
            }
        }
        cfg.features.clone()
    };
    let mut names = Vec::new();
    for n in candidates {
        // One value (missing counts as one) on every training row: nothing to learn from.
        let constant = match frame.column(&n) {
            Some(Column::Num(v)) => {
                let mut values = train_rows.iter().map(|&i| v[i]);
                let first = values.next();
                first.is_none_or(|f| {
                    values.all(|x| x.to_bits() == f.to_bits() || (x.is_nan() && f.is_nan()))
                })
            }
            Some(Column::Cat(v)) => {
                let mut values = train_rows.iter().map(|&i| v[i].as_deref());
                let first = values.next();
                first.is_none_or(|f| values.all(|x| x == f))
            }
            None => false,
        };
        if constant {
            skipped.push((n, "constant on the training rows".into()));
            continue;
        }
        if let Some(Column::Cat(v)) = frame.column(&n) {
            let mut distinct: Vec<&str> =
                train_rows.iter().filter_map(|&i| v[i].as_deref()).collect();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() > 50 && distinct.len() * 2 > train_rows.len() {
                skipped.push((
                    n,
                    format!(
                        "looks like an identifier ({} distinct values)",
                        distinct.len()
                    ),
                ));
                continue;
            }
        }
        names.push(n);
    }
    if names.is_empty() {
        return Err(ModelError::Data("no candidate characteristics".into()));
    }
    Ok((names, skipped))
}

/// A digest of exactly the data used: every candidate column's values on the training and
/// test rows, and their outcomes.
fn fingerprint(all: &Sample, train_rows: &[usize], test_rows: &[usize]) -> String {
    let mut h = blake3::Hasher::new();
    for (name, col) in all.names.iter().zip(&all.columns) {
        h.update(name.as_bytes());
        h.update(&[0]);
        for &(rows, tag) in &[(train_rows, 1u8), (test_rows, 2u8)] {
            h.update(&[tag]);
            for &i in rows {
                match col {
                    Column::Num(v) => h.update(&v[i].to_bits().to_le_bytes()),
                    Column::Cat(v) => h
                        .update(v[i].as_deref().unwrap_or("\u{0}").as_bytes())
                        .update(&[0]),
                };
            }
        }
    }
    for &i in train_rows.iter().chain(test_rows) {
        h.update(&[u8::from(all.bad[i])]);
    }
    h.finalize().to_hex().to_string()
}

fn feature_info(frame: &Frame, n: &str) -> FeatureInfo {
    let (zh, en) = display_names(n);
    FeatureInfo {
        name: n.to_owned(),
        categorical: matches!(frame.column(n), Some(Column::Cat(_))),
        name_zh: zh,
        name_en: en,
    }
}

/// The configuration as used, with every default it leaves open settled (and recorded in
/// the model).
fn conventions(
    cfg: &TrainConfig,
    is_panel: bool,
    names: &[String],
    train_rows: usize,
) -> TrainConfig {
    // Profile panels keep the trade's conventions unless the configuration says otherwise:
    // monotonic WoE along each characteristic's catalogue direction of risk (the better
    // direction where the catalogue says either) and an IV floor of 0.02. The model records
    // the settings it used.
    let mut cfg = cfg.clone();
    if is_panel {
        cfg.scorecard.binning.trend = cfg.scorecard.binning.trend.or(Some(Trend::Auto));
        for n in names {
            let trend = match catalogue_monotone(n) {
                1 => Trend::Ascending,
                -1 => Trend::Descending,
                _ => continue,
            };
            if !cfg.scorecard.trends.iter().any(|(m, _)| m == n) {
                cfg.scorecard.trends.push((n.clone(), trend));
            }
        }
        cfg.scorecard.min_iv = cfg.scorecard.min_iv.or(Some(PANEL_MIN_IV));
    } else {
        cfg.scorecard.binning.trend = Some(cfg.scorecard.binning.trend());
        cfg.scorecard.min_iv = Some(cfg.scorecard.min_iv());
    }
    // Trees as large as the sample supports (recorded, like the binning's trend). Other
    // methods record the fixed default, as files did before the setting could be unset.
    cfg.boost.max_leaves = Some(cfg.boost.max_leaves.unwrap_or_else(|| {
        if cfg.method == Method::Boost {
            boost::leaves_for_rows(train_rows)
        } else {
            boost::MAX_LEAVES
        }
    }));
    cfg
}

/// Boosted trees, their category encoders, and the rows held out for early stopping.
type BoostFit = (
    boost::Boost,
    Vec<Option<crate::binning::Binning>>,
    Vec<usize>,
    Calibration,
);

/// For each training row of a panel, whether its as-of date lies in the later half of the
/// training period's dates (`None` with fewer than two dates: there is no "over time").
fn later_half(frame: &Frame, rows: &[usize]) -> Option<Vec<bool>> {
    let Some(Column::Cat(as_of)) = frame.column(columns::AS_OF) else {
        return None;
    };
    let mut dates: Vec<&str> = rows.iter().filter_map(|&r| as_of[r].as_deref()).collect();
    dates.sort_unstable();
    dates.dedup();
    if dates.len() < 2 {
        return None;
    }
    let first_late = dates[dates.len().div_ceil(2)];
    Some(
        rows.iter()
            .map(|&r| as_of[r].as_deref().is_some_and(|d| d >= first_late))
            .collect(),
    )
}

/// The rows held out for early stopping and calibration: `share` of the bads and `share`
/// of the goods (stratified, so that a rare outcome is not left to chance), chosen by a
/// seeded hash of each row's values rather than its position, so that the same training
/// rows give the same choice whether they came as one file with a split or as two files.
/// On a panel (`groups`: each row's merchant) whole merchants are held out: a merchant's
/// rows a month apart are nearly the same row, and holding out some of them would measure
/// the trees on what they were fitted on. Returns the rows to fit on and the rows held out,
/// each in input order.
fn validation_split(
    sample: &Sample,
    groups: Option<&[String]>,
    seed: u64,
    share: f64,
) -> (Vec<usize>, Vec<usize>) {
    let n = sample.bad.len();
    let mut held = vec![false; n];
    for units in by_outcome_and_key(sample, groups, seed) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let take = (share * units.len() as f64).round() as usize;
        for unit in units.iter().take(take) {
            for &i in unit {
                held[i] = true;
            }
        }
    }
    (0..n).partition(|&i| !held[i])
}

/// Each row's fold of `k`, stratified, keyed and grouped as [`validation_split`] holds rows
/// out.
fn folds(sample: &Sample, groups: Option<&[String]>, seed: u64, k: usize) -> Vec<usize> {
    let mut fold = vec![0; sample.bad.len()];
    for units in by_outcome_and_key(sample, groups, seed) {
        for (rank, unit) in units.iter().enumerate() {
            for &i in unit {
                fold[i] = rank % k;
            }
        }
    }
    fold
}

/// The units that are held out together — each row, or each group's rows — with a bad
/// among them, and those without, each ordered by a seeded hash of the rows' values (of the
/// group's name for groups).
fn by_outcome_and_key(
    sample: &Sample,
    groups: Option<&[String]>,
    seed: u64,
) -> [Vec<Vec<usize>>; 2] {
    let n = sample.bad.len();
    let mix = |h: u64, v: u64| {
        let mut z = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^ (z >> 27)
    };
    let text = |h: u64, t: &str| t.bytes().fold(mix(h, 1), |h, b| mix(h, u64::from(b)));
    let seed = seed ^ 0x243F_6A88_85A3_08D3;
    let mut units: Vec<(u64, Vec<usize>)> = match groups {
        Some(g) => {
            let mut by: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
            for (i, name) in g.iter().enumerate().take(n) {
                by.entry(name.as_str()).or_default().push(i);
            }
            by.into_iter()
                .map(|(name, rows)| (text(seed, name), rows))
                .collect()
        }
        None => {
            let mut keys: Vec<u64> = vec![seed; n];
            for col in &sample.columns {
                match col {
                    Column::Num(v) => {
                        for (h, x) in keys.iter_mut().zip(v) {
                            // One NaN for every missing value, whatever its bits.
                            let bits = if x.is_nan() {
                                f64::NAN.to_bits()
                            } else {
                                x.to_bits()
                            };
                            *h = mix(*h, bits);
                        }
                    }
                    Column::Cat(v) => {
                        for (h, x) in keys.iter_mut().zip(v) {
                            *h = match x {
                                Some(t) => text(*h, t),
                                None => mix(*h, 0),
                            };
                        }
                    }
                }
            }
            keys.into_iter()
                .enumerate()
                .map(|(i, k)| (k, vec![i]))
                .collect()
        }
    };
    units.sort_by_key(|(k, rows)| (*k, rows.first().copied()));
    let (bad, good): (Vec<_>, Vec<_>) = units
        .into_iter()
        .map(|(_, rows)| rows)
        .partition(|rows| rows.iter().any(|&i| sample.bad[i]));
    [bad, good]
}

/// Below this many bads in the training rows, the number of trees is chosen by k-fold
/// cross-validation rather than on one held-out share: a fifth of 200 bads is too few to
/// place the optimum (it moved by ±0.005 of AUC with the seed alone).
const CV_MAX_BADS: usize = 500;

/// Folds of that cross-validation.
const CV_FOLDS: usize = 5;

/// The number of trees by k-fold cross-validation: each fold's ensemble grows on the other
/// folds with early stopping on its own (and keeps its trees past the best round), the
/// folds' validation log-losses are averaged tree by tree, and the size with the lowest
/// mean wins. Also returns that mean curve and every row's out-of-fold log-odds at the
/// chosen size (for calibration).
#[allow(clippy::too_many_arguments)]
fn cross_validate(
    params: &BoostParams,
    x: &[Vec<f64>],
    bad: &[bool],
    fold: &[usize],
    monotone: &[i8],
    categorical: &[bool],
    progress: &mut dyn FnMut(&str),
) -> Result<(usize, Vec<f64>, Vec<f64>), ModelError> {
    let pick = |rows: &[usize]| -> (Vec<Vec<f64>>, Vec<bool>) {
        (
            x.iter()
                .map(|c| rows.iter().map(|&i| c[i]).collect())
                .collect(),
            rows.iter().map(|&i| bad[i]).collect(),
        )
    };
    // Each fold waits three times as long for an improvement as early stopping does, and
    // a fold that stopped counts at its last loss from there on: a curve is not cut at the
    // shortest fold's end, which would choose too few trees.
    let params = &BoostParams {
        early_stopping_rounds: params.early_stopping_rounds.saturating_mul(3),
        ..params.clone()
    };
    let mut fits = Vec::new();
    for f in 0..CV_FOLDS {
        let (inside, outside): (Vec<usize>, Vec<usize>) =
            (0..bad.len()).partition(|&i| fold[i] != f);
        let (xt, bt) = pick(&inside);
        let (xv, bv) = pick(&outside);
        progress(&format!(
            "  fold {}/{CV_FOLDS}: {} rows, {} held out",
            f + 1,
            inside.len(),
            outside.len()
        ));
        let b = boost::fit_untruncated(params, &xt, &bt, &xv, &bv, monotone, categorical)?;
        fits.push((outside, xv, b));
    }
    let len = fits
        .iter()
        .map(|(_, _, b)| b.validation_loss.len())
        .max()
        .unwrap_or(0);
    let curve: Vec<f64> = (0..len)
        .map(|t| {
            fits.iter()
                .map(|(_, _, b)| {
                    let v = &b.validation_loss;
                    v.get(t).or(v.last()).copied().unwrap_or(0.0)
                })
                .sum::<f64>()
                / CV_FOLDS as f64
        })
        .collect();
    let best = curve
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map_or(1, |(t, _)| t + 1);
    let mut oof = vec![0.0; bad.len()];
    for (rows, xv, b) in &fits {
        let at_best = boost::Boost {
            trees: b.trees[..best.min(b.trees.len())].to_vec(),
            ..b.clone()
        };
        let cols: Vec<&[f64]> = xv.iter().map(Vec::as_slice).collect();
        for (&i, m) in rows.iter().zip(at_best.margins(&cols, rows.len())) {
            oof[i] = m;
        }
    }
    Ok((best, curve, oof))
}

/// The boosted trees: early stopping on a seeded share of the training rows, then (unless
/// configured otherwise) a refit on every training row with the number of trees chosen.
/// Returns the trees, the category encoders and the rows held out for early stopping.
fn fit_boost(
    cfg: &TrainConfig,
    names: &[String],
    is_panel: bool,
    train_rows: &[usize],
    train_sample: &Sample,
    groups: Option<&[String]>,
    progress: &mut dyn FnMut(&str),
) -> Result<BoostFit, ModelError> {
    let bads = train_sample.bad.iter().filter(|&&b| b).count();
    // Few bads: the number of trees by cross-validation over every training row, and the
    // categories encoded on all of them; else early stopping on a held-out share.
    let cv = cfg.boost.refit && cfg.validation_share > 0.0 && bads < CV_MAX_BADS;
    let (fit_idx, val_idx) = if cv {
        ((0..train_sample.bad.len()).collect(), Vec::new())
    } else {
        validation_split(train_sample, groups, cfg.seed, cfg.validation_share)
    };
    let validation_rows: Vec<usize> = val_idx.iter().map(|&k| train_rows[k]).collect();
    let fit_sample = train_sample.take(&fit_idx);
    let val_sample = train_sample.take(&val_idx);
    // Categories are told apart for the trees' category splits: each its own value,
    // except rare ones (pooled as "other") and those the binning must pool to have both
    // outcomes. A category unseen in training is unscorable, or goes to the riskiest bin
    // (`unseen_category`).
    let cat_params = BinningParams {
        max_bins: 50,
        min_bin_share: (1.0 / fit_sample.bad.len().max(2) as f64).min(0.5),
        ..cfg.scorecard.binning.clone()
    }
    .check()?;
    let mut encoders = Vec::new();
    for (name, col) in fit_sample.names.iter().zip(&fit_sample.columns) {
        encoders.push(match col {
            Column::Cat(v) => Some(cat_params.fit_categorical(name, v, &fit_sample.bad)?),
            Column::Num(_) => None,
        });
    }
    let to_x = |s: &Sample| -> Vec<Vec<f64>> {
        s.columns
            .iter()
            .zip(&encoders)
            .map(|(c, e)| match (c, e) {
                (Column::Num(v), _) => v.clone(),
                (Column::Cat(v), Some(b)) => v
                    .iter()
                    .map(|s| {
                        b.stat(b.slot(Value::Cat(s.as_deref())))
                            .filter(|s| s.count > 0)
                            .map_or(f64::NAN, |s| s.woe)
                    })
                    .collect(),
                (Column::Cat(v), None) => vec![f64::NAN; v.len()],
            })
            .collect()
    };
    let monotone: Vec<i8> = names
        .iter()
        .map(|n| {
            cfg.monotone.iter().find(|(m, _)| m == n).map_or_else(
                || {
                    if is_panel && cfg.catalogue_monotone {
                        catalogue_monotone(n)
                    } else {
                        0
                    }
                },
                |(_, d)| d.signum(),
            )
        })
        .collect();
    for (m, _) in &cfg.monotone {
        if !names.contains(m) {
            return Err(ModelError::Config(format!(
                "monotone constraint on {m}, which is not a characteristic"
            )));
        }
    }
    let categorical: Vec<bool> = encoders.iter().map(Option::is_some).collect();
    // The final ensemble: the number of trees chosen, grown on every training row.
    let fit_all = |trees: usize, x: &[Vec<f64>]| {
        let params = BoostParams {
            max_trees: trees,
            ..cfg.boost.clone()
        };
        boost::fit(
            &params,
            x,
            &train_sample.bad,
            &[],
            &[],
            &monotone,
            &categorical,
            &mut |_, _| {},
        )
    };
    if cv {
        progress(&format!(
            "{bads} bads: choosing the number of trees by {CV_FOLDS}-fold cross-validation on {} rows, {} characteristics",
            train_sample.bad.len(),
            names.len()
        ));
        let x = to_x(train_sample);
        let fold = folds(train_sample, groups, cfg.seed, CV_FOLDS);
        let (best, curve, oof) = cross_validate(
            &cfg.boost,
            &x,
            &train_sample.bad,
            &fold,
            &monotone,
            &categorical,
            progress,
        )?;
        let calibration = Calibration::choose(
            &oof,
            &train_sample.bad,
            &format!("out-of-fold rows of {CV_FOLDS}-fold cross-validation"),
        );
        progress(&format!(
            "fitting {best} trees on all {} training rows",
            train_rows.len()
        ));
        let b = boost::Boost {
            validation_loss: curve,
            best_trees: best,
            ..fit_all(best, &x)?
        };
        return Ok((b, encoders, Vec::new(), calibration));
    }
    progress(&format!(
        "boosting on {} rows ({} for early stopping{}), {} characteristics",
        fit_idx.len(),
        val_idx.len(),
        if groups.is_some() {
            ": whole merchants held out"
        } else {
            ""
        },
        names.len()
    ));
    let mut last = 0usize;
    let b = boost::fit(
        &cfg.boost,
        &to_x(&fit_sample),
        &fit_sample.bad,
        &to_x(&val_sample),
        &val_sample.bad,
        &monotone,
        &categorical,
        &mut |k, of| {
            if k >= last + 50 {
                last = k;
                progress(&format!("  {k}/{of} trees"));
            }
        },
    )?;
    // The held-out rows' log-odds, from trees that never saw them, calibrate the PD: trees
    // refitted on every row fit those rows too closely to calibrate on.
    let calibration = if val_idx.is_empty() {
        Calibration {
            fitted: "none: no rows were held out".into(),
            ..Calibration::IDENTITY
        }
    } else {
        let x = to_x(&val_sample);
        let cols: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
        Calibration::choose(
            &b.margins(&cols, val_sample.bad.len()),
            &val_sample.bad,
            if groups.is_some() {
                "rows of merchants held out of the fit"
            } else {
                "rows held out of the fit"
            },
        )
    };
    // Early stopping chose the number of trees; refit on every training row with it,
    // so that the held-out rows are not lost to the model (small samples need them).
    let b = if val_idx.is_empty() || !cfg.boost.refit {
        b
    } else {
        progress(&format!(
            "refitting {} trees on all {} training rows",
            b.best_trees,
            train_rows.len()
        ));
        boost::Boost {
            validation_loss: b.validation_loss,
            ..fit_all(b.best_trees, &to_x(train_sample))?
        }
    };
    progress(&format!("boost: {} trees", b.trees.len()));
    Ok((b, encoders, validation_rows, calibration))
}

/// Scores the training and test rows, evaluates each set (by segment if asked), and keeps
/// the training sample's baseline and the characteristics' importance.
fn evaluate_sets(
    model: &mut Model,
    frame: &Frame,
    cfg: &TrainConfig,
    train_rows: &[usize],
    test_rows: &[usize],
    bad: &[bool],
) -> Result<(Vec<Predictions>, Vec<f64>), ModelError> {
    let mut sets = Vec::new();
    let mut importance = Vec::new();
    for (set, rows) in [("train", train_rows), ("test", test_rows)] {
        if rows.is_empty() {
            continue;
        }
        let (z, y) = logits_of(model, frame, rows, bad)?;
        let pd: Vec<f64> = z.iter().map(|&z| model.calibration.pd(z)).collect();
        let score: Vec<f64> = z.iter().map(|&z| model.scaling.score(z)).collect();
        let seg: Option<Vec<String>> =
            match cfg.segment.as_deref().map(|s| frame.column(s).ok_or(s)) {
                None => None,
                Some(Err(s)) => {
                    return Err(ModelError::Data(format!(
                        "segment column {s} is not in the table"
                    )))
                }
                Some(Ok(c)) => Some(
                    rows.iter()
                        .map(|&i| match c {
                            Column::Num(v) => crate::binning::num_label(v[i]),
                            Column::Cat(v) => v[i].clone().unwrap_or_else(|| "missing".into()),
                        })
                        .collect(),
                ),
            };
        model.evaluation.push(SetEvaluation {
            set: set.into(),
            evaluation: evaluate(&pd, &y, seg.as_deref(), &model.master_scale),
        });
        if set == "train" {
            model.baseline = Some(baseline(model, frame, rows, &score));
            importance = model.importance(&sub_frame(frame, rows)?)?;
        }
        sets.push(Predictions {
            set: set.into(),
            score,
            pd,
            bad: y,
        });
    }
    Ok((sets, importance))
}

/// A trained model with its predictions on each set and what drives it (for the report).
#[derive(Debug, Clone)]
pub struct Trained {
    /// The model.
    pub model: Model,
    /// Predictions per set, in the order train, test.
    pub sets: Vec<Predictions>,
    /// Boosted trees: each characteristic's mean absolute contribution on the training
    /// rows ([`Model::importance`]); empty for scorecards.
    pub importance: Vec<f64>,
    /// Wall time of the fit itself (binning, selection, regression or boosting, and
    /// calibration), without reading or evaluating.
    pub fit_seconds: f64,
}

/// Scores, PDs and outcomes of the scored rows of one set.
#[derive(Debug, Clone)]
pub struct Predictions {
    /// `train`, `validation` or `test`.
    pub set: String,
    /// Unrounded scores.
    pub score: Vec<f64>,
    /// PDs.
    pub pd: Vec<f64>,
    /// Outcomes.
    pub bad: Vec<bool>,
}

/// Log-odds and outcomes of the given rows (rows the model cannot score are left out).
fn logits_of(
    model: &Model,
    frame: &Frame,
    rows: &[usize],
    bad: &[bool],
) -> Result<(Vec<f64>, Vec<bool>), ModelError> {
    let f = sub_frame(frame, rows)?;
    let mut z = Vec::with_capacity(rows.len());
    let mut y = Vec::with_capacity(rows.len());
    for (k, r) in model.logits(&f)?.into_iter().enumerate() {
        if let Ok(v) = r {
            z.push(v);
            y.push(bad[rows[k]]);
        }
    }
    Ok((z, y))
}

/// The training rows' score deciles and each numeric characteristic's deciles.
fn baseline(model: &Model, frame: &Frame, rows: &[usize], score: &[f64]) -> Baseline {
    let characteristics = model
        .features
        .iter()
        .filter(|f| !f.categorical)
        .filter_map(|f| match frame.column(&f.name) {
            Some(Column::Num(v)) => {
                let xs: Vec<f64> = rows.iter().map(|&i| v[i]).collect();
                Some((f.name.clone(), Distribution::of(&xs, 10)))
            }
            _ => None,
        })
        .collect();
    // Whole points, as scores are served.
    let score: Vec<f64> = score.iter().map(|s| s.round()).collect();
    Baseline {
        rows: score.len() as u64,
        score: Distribution::of(&score, 10),
        characteristics,
    }
}

pub(crate) fn max_as_of(frame: &Frame) -> Option<String> {
    match frame.column(columns::AS_OF)? {
        Column::Cat(v) => v.iter().flatten().max().cloned(),
        Column::Num(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_whose_label_window_is_not_ok_neither_train_nor_test() {
        let status = |s: &str| Some(s.to_owned());
        let frame = Frame::new(vec![(
            columns::LABEL_STATUS.to_owned(),
            Column::Cat(vec![
                status("ok"),
                status("incomplete_window"),
                status("ok"),
                status("incomplete_window"),
                status("excluded_closed"),
            ]),
        )])
        .unwrap();
        let unusable = unusable_labels(&frame, None);
        // An incomplete window is labelled only when a default was already seen: all bad.
        let target = [Some(false), Some(true), Some(true), Some(true), None];
        let sets = [
            Some(Set::Train),
            Some(Set::Train),
            Some(Set::Test),
            Some(Set::Test),
            Some(Set::Train),
        ];
        let (train, test, excluded) = split_rows(&target, &sets, &unusable);
        assert_eq!((train, test), (vec![0], vec![2]));
        assert_eq!(
            excluded,
            vec![
                ("label_status_excluded_closed".to_owned(), 1),
                ("label_status_incomplete_window".to_owned(), 2)
            ]
        );
        // Asked for, incomplete windows count.
        let wider = ["ok".to_owned(), "incomplete_window".to_owned()];
        let (train, test, _) = split_rows(&target, &sets, &unusable_labels(&frame, Some(&wider)));
        assert_eq!((train, test), (vec![0, 1], vec![2, 3]));
        // A table without the column keeps every labelled row.
        let plain = Frame::new(vec![("x".to_owned(), Column::Num(vec![1.0; 5]))]).unwrap();
        assert!(unusable_labels(&plain, None).iter().all(Option::is_none));
    }

    /// A table of `n` rows with 2 % bads driven by `x`, and noise `y`.
    fn rare(n: usize) -> Frame {
        let u = |i: usize, k: u64| {
            let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let x: Vec<f64> = (0..n).map(|i| u(i, 1)).collect();
        let y: Vec<f64> = (0..n).map(|i| u(i, 2)).collect();
        // PD from 0.5 % to about 5 %: 2 % on average.
        let bad: Vec<f64> = (0..n)
            .map(|i| f64::from(u8::from(u(i, 3) < 0.005 + 0.045 * x[i] * x[i])))
            .collect();
        Frame::new(vec![
            ("x".to_owned(), Column::Num(x)),
            ("y".to_owned(), Column::Num(y)),
            ("bad".to_owned(), Column::Num(bad)),
        ])
        .unwrap()
    }

    fn boost_config() -> TrainConfig {
        TrainConfig {
            method: Method::Boost,
            target: "bad".into(),
            created_at: Some("2025-01-01".into()),
            ..TrainConfig::default()
        }
    }

    #[test]
    fn rare_events_size_the_trees_by_cross_validation_and_calibrate_out_of_fold() {
        let frame = rare(16_000);
        let sets: Vec<Option<Set>> = (0..frame.rows())
            .map(|i| Some(if i % 4 == 0 { Set::Test } else { Set::Train }))
            .collect();
        let mut log = Vec::new();
        let t = train(&frame, Some(sets), &boost_config(), "rare", 1, &mut |m| {
            log.push(m.to_owned())
        })
        .unwrap();
        assert!(
            log.iter().any(|m| m.contains("5-fold cross-validation")),
            "{log:?}"
        );
        let cal = &t.model.calibration;
        assert!(cal.fitted.contains("out-of-fold"), "{cal:?}");
        // Out-of-fold calibration keeps the PDs honest on new rows.
        let ev = &t
            .model
            .evaluation
            .iter()
            .find(|e| e.set == "test")
            .unwrap()
            .evaluation;
        assert!(ev.calibrated(), "{:?}", ev.grades);
        let mean_pd: f64 = ev
            .grades
            .iter()
            .map(|g| g.mean_pd * g.n as f64)
            .sum::<f64>()
            / ev.metrics.n as f64;
        let rate = ev.metrics.events as f64 / ev.metrics.n as f64;
        assert!((mean_pd - rate).abs() < 0.3 * rate, "{mean_pd} vs {rate}");
    }

    #[test]
    fn held_out_rows_follow_the_rows_not_their_positions() {
        // The same training rows as part of a split table and as a table of their own give
        // the same trees (early stopping on a held-out share: many bads).
        let frame = rare(40_000);
        let n = frame.rows();
        let sets: Vec<Option<Set>> = (0..n)
            .map(|i| Some(if i % 3 == 0 { Set::Test } else { Set::Train }))
            .collect();
        let cfg = boost_config();
        let split = train(&frame, Some(sets.clone()), &cfg, "t", 1, &mut |_| {}).unwrap();
        let keep: Vec<usize> = (0..n).filter(|i| i % 3 != 0).collect();
        let alone = train(
            &sub_frame(&frame, &keep).unwrap(),
            None,
            &cfg,
            "t",
            1,
            &mut |_| {},
        )
        .unwrap();
        let trees = |m: &Model| match &m.predictor {
            Predictor::Boost { boost, .. } => boost.trees.clone(),
            Predictor::Scorecard(_) => Vec::new(),
        };
        assert!(split.model.calibration.fitted.contains("held out"));
        assert!(!trees(&split.model).is_empty());
        assert_eq!(trees(&split.model), trees(&alone.model));
        assert_eq!(split.model.calibration, alone.model.calibration);
    }

    #[test]
    fn a_merchants_rows_are_held_out_together_and_folds_keep_them_together() {
        let frame = rare(3_000);
        let sample = Sample {
            names: vec!["x".into()],
            columns: vec![frame.column("x").unwrap().clone()],
            bad: frame
                .target("bad")
                .unwrap()
                .into_iter()
                .map(|b| b.unwrap_or(false))
                .collect(),
        };
        // 300 merchants with ten rows each.
        let groups: Vec<String> = (0..3_000).map(|i| format!("M{:04}", i % 300)).collect();
        let (fit, held) = validation_split(&sample, Some(&groups), 7, 0.2);
        let held_merchants: std::collections::BTreeSet<&str> =
            held.iter().map(|&i| groups[i].as_str()).collect();
        assert!(fit
            .iter()
            .all(|&i| !held_merchants.contains(groups[i].as_str())));
        assert!(
            (50..=70).contains(&held_merchants.len()),
            "{}",
            held_merchants.len()
        );
        let fold = folds(&sample, Some(&groups), 7, 5);
        for (i, g) in groups.iter().enumerate() {
            let first = groups.iter().position(|h| h == g).unwrap();
            assert_eq!(fold[i], fold[first]);
        }
        // Without groups every row is its own unit.
        let (_, rows) = validation_split(&sample, None, 7, 0.2);
        assert_eq!(rows.len(), 600);
    }
}
