//! The vocabulary every other Yuanxin crate speaks: money, identifiers, the unified social
//! credit code, the pilot industries, Shenzhen's districts, business time, the coded
//! values (kinds, channels, reasons) that appear in the source tables, and the names,
//! units and directions of the profile's characteristics ([`vocabulary`]).
//!
//! This crate does no I/O and reads no clock: everything here is a value with rules, so it
//! can be used unchanged by ingestion, profiling, decisions and the API.

mod codes;
mod district;
mod error;
pub mod hash;
mod ids;
mod industry;
mod money;
mod score;
mod time;
mod uscc;
pub mod vocabulary;

pub use codes::*;
pub use district::District;
pub use error::DomainError;
pub use ids::{is_valid_id, ContractId, MerchantId};
pub use industry::{Industry, ReleaseMode};
pub use money::Money;
pub use score::{public_grade, PointGain};
pub use time::{
    business_date, business_day_of_ms, business_month, day_start, shanghai, ts_from_millis,
    BusinessMonth, DAY_MS, SHANGHAI_OFFSET_SECS, TZ_NAME,
};
pub use uscc::Uscc;
