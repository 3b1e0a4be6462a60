//! What a model hands on about one merchant's score beyond the score itself: for a
//! characteristic, the points the merchant could gain by moving it to the nearest bin
//! worth more. Models compute these; decisions turn them into hints. Defined here so
//! that neither needs the other.

use serde::{Deserialize, Serialize};

/// The points one characteristic could gain, and where the score would land.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointGain {
    /// Characteristic.
    pub feature: String,
    /// Chinese display name.
    pub name_zh: String,
    /// English display name.
    pub name_en: String,
    /// The merchant's value now.
    pub value: f64,
    /// The edge of the better bin: reached at or above it when `raise`, below it otherwise.
    pub edge: f64,
    /// Whether the value has to go up (else down).
    pub raise: bool,
    /// Points gained.
    pub points: f64,
    /// PD after this change alone.
    pub pd_after: f64,
    /// Grade after this change alone.
    pub grade_after: String,
}
