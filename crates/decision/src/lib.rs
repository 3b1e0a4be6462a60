//! Financing decisions for prepaid merchants: approve, refer or decline a loan request,
//! with a credit limit, a risk-based price, the bank products and government support the
//! merchant qualifies for, the nearest ones it does not and why, reason codes and
//! improvement hints.
//!
//! Pure: no I/O and no clock. The as-of date, the profile, the model's view, the policy and
//! the catalogue all come in as arguments (the CLI and the API read the files), so the same
//! inputs always give the same decision. Money is `rust_decimal` throughout; the PD enters
//! as a float from the model and is rounded to six decimals at the boundary.

mod alerts;
mod calc;
mod config;
mod decide;
mod hints;
pub mod reasons;

pub use alerts::{alerts, Alert, AlertRules, LastSeen, Standing};
pub use calc::{
    annuity_payment, annuity_principal, credit_limit, price, Limit, LimitInput, Price, PriceInput,
};
pub use config::{
    Action, Catalogue, Criteria, GradeBand, IndustryLimit, Knockouts, LimitPolicy, LprFixing,
    Policy, PricingPolicy, Product, Scheme, SupportKind,
};
pub use decide::{
    decide, Applicant, Decision, LoanRequest, ModelReason, NearMiss, Offer, Outcome, Status,
    SupportApplied,
};
pub use hints::{hints, Hint};

/// Errors of the decision crate.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    /// A policy or catalogue file is wrong; the message names the problem.
    #[error("configuration: {0}")]
    Config(String),
    /// The request or the applicant cannot be decided as given.
    #[error("input: {0}")]
    Input(String),
}
