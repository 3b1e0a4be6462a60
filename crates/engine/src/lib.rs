//! The application layer: what Yuanxin does, once, for both front ends. The service
//! (`api`) and the command line (`cli`) parse their input, call one function here and
//! render what it returns; neither loads profiles, picks rows, scores, builds applicants or
//! words a stability verdict itself.
//!
//! - [`Served`]: the champion model, each merchant's latest profile (scored once at load),
//!   the policy and the catalogue; a merchant's score (or closure), decision and alerts;
//!   the served population's stability. A merchant that has closed is served as closed
//!   everywhere, never with a grade.
//! - [`latest`]: each merchant's latest (or chosen) profile row of a profile file, scored.
//! - [`decide`]: a decision for one merchant, with the open-dispute flag and the model's
//!   point gains (hints) passed on.
//! - [`open_model`], [`refresh_profiles`]: the model a command names; the latest profiles
//!   of a ledger, written atomically.

pub mod monitor;
pub mod report;
mod served;
mod snapshot;

use std::path::PathBuf;

pub use served::{
    check_scale, decide, gather_parts, latest, ledger_manifest, month_ends, open_model,
    read_catalogue, read_policy, refresh_part, refresh_profiles, refresh_profiles_with_progress,
    Bounds, Files, Merchant, PartInfo, Pick, Point, Served, Stability, Standing, HISTORY_MONTHS,
};
pub use snapshot::{
    current as current_snapshot, standard_request, write_snapshot, write_snapshot_with_progress,
    Changes, SnapshotReport,
};

/// Errors of the application layer, by what went wrong for the caller.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file the engine reads could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A policy or catalogue file is wrong.
    #[error("{what}: {source}")]
    Config {
        /// `policy` or `catalogue`.
        what: &'static str,
        /// Why.
        source: yuanxin_decision::DecisionError,
    },
    /// The model registry, a model file or scoring failed.
    #[error("{0}")]
    Model(#[from] yuanxin_model::ModelError),
    /// A model named by a path (it has a folder or ends in `.json`) that is not there, and
    /// no registry model has that id.
    #[error("no model file at {0} (and no model of that id in the registry)")]
    NoModelFile(PathBuf),
    /// The registry has no champion to serve.
    #[error("no champion in {0} (give a model, or run scripts/train-default-model)")]
    NoChampion(PathBuf),
    /// A profile file is not usable.
    #[error("profiles {path}: {why}")]
    Profiles {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The ledger or the profile build failed.
    #[error("profiles from {path}: {why}")]
    Refresh {
        /// The ledger.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// No profile for this merchant.
    #[error("no profile for merchant {0}")]
    UnknownMerchant(String),
    /// The model cannot score the merchant's profile.
    #[error("merchant {id} cannot be scored: {why}")]
    Unscorable {
        /// Merchant.
        id: String,
        /// Why.
        why: String,
    },
    /// The merchant has closed: it has no score, PD or grade to serve.
    #[error("merchant {id} closed on {on}: no store is open")]
    Closed {
        /// Merchant.
        id: String,
        /// The day its last store closed.
        on: chrono::NaiveDate,
    },
    /// The request names a product the catalogue does not have.
    #[error("no product {product} in catalogue {catalogue}")]
    UnknownProduct {
        /// The product asked for.
        product: String,
        /// The catalogue's version.
        catalogue: String,
    },
    /// The decision could not be made.
    #[error("deciding for {id}: {source}")]
    Decision {
        /// Merchant.
        id: String,
        /// Why.
        source: yuanxin_decision::DecisionError,
    },
    /// The serving model has no training baseline to measure stability against.
    #[error("model {0} carries no training baseline (retrain it to measure stability)")]
    NoBaseline(String),
}
