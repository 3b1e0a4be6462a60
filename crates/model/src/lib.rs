//! Credit models for Yuanxin: the WoE/logistic scorecard with exact monotonic optimal
//! binning, a boosted-trees challenger, calibration to a PD and a master-scale grade,
//! evaluation, and the versioned model file and registry.
//!
//! Pipeline: a [`Frame`] (any CSV/Parquet table, e.g. a profile panel) → [`train`] with a
//! [`TrainConfig`] → a [`Model`] that scores frames ([`Model::score_frame`]) and saves to a
//! self-describing, digest-checked JSON file ([`Model::save`], [`Model::load`]). Training is
//! deterministic: the same data, configuration and seed give the same file byte for byte.

// Settings are checked with negated comparisons (`!(x > 0.0)`) on purpose: they reject NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod binning;
pub mod boost;
pub mod compare;
pub mod frame;
mod gains;
pub mod metrics;
mod model;
pub mod registry;
pub mod report;
pub mod scale;
pub mod scorecard;
pub mod signals;
mod train;

pub use frame::{Column, Frame, Set};
pub use model::{
    Baseline, FeatureInfo, Method, Model, Predictor, Reason, Scored, SetEvaluation, TrainingData,
    FORMAT, MIN_REASON_POINTS, SCHEMA_VERSION,
};
pub use train::{train, unusable_labels, Predictions, TrainConfig, Trained, UnseenCategory};

/// Errors of model training, scoring and model files.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The data cannot be used as asked.
    #[error("data: {0}")]
    Data(String),
    /// A setting is out of range.
    #[error("configuration: {0}")]
    Config(String),
    /// Fitting failed.
    #[error("fit: {0}")]
    Fit(String),
    /// A model file is damaged, of another format or of an unsupported version.
    #[error("model file {path}: {why}")]
    BadModel {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The model registry is inconsistent, or a file in it is not a valid model.
    #[error("registry: {0}")]
    Registry(String),
    /// No model of that id or file name is in the registry.
    #[error("registry: no model {id} in {dir}")]
    NotInRegistry {
        /// The id asked for.
        id: String,
        /// The registry folder.
        dir: String,
    },
}

/// Training rows: the candidate characteristics' values and the outcome, row-aligned.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Characteristic names.
    pub names: Vec<String>,
    /// Their values.
    pub columns: Vec<Column>,
    /// Outcome: true = bad.
    pub bad: Vec<bool>,
}

impl Sample {
    /// The rows at `idx`, in that order.
    pub fn take(&self, idx: &[usize]) -> Sample {
        Sample {
            names: self.names.clone(),
            columns: self.columns.iter().map(|c| take(c, idx)).collect(),
            bad: idx.iter().map(|&i| self.bad[i]).collect(),
        }
    }
}

pub(crate) fn take(c: &Column, idx: &[usize]) -> Column {
    match c {
        Column::Num(v) => Column::Num(idx.iter().map(|&i| v[i]).collect()),
        Column::Cat(v) => Column::Cat(idx.iter().map(|&i| v[i].clone()).collect()),
    }
}
