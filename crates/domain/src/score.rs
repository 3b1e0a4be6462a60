//! What a model hands on about one merchant's score beyond the score itself: for a
//! characteristic, the points the merchant could gain by moving it to the nearest bin
//! worth more. Models compute these; decisions turn them into hints. Defined here so
//! that neither needs the other. Also the one rule that relates a grade of the master scale
//! to its public grade.

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

/// The public grade of a master-scale grade: its name without trailing digits, so that the
/// sub-grades B1, B2 and B3 are all public grade B, and A+ or E stay themselves. Lenders'
/// policies may name either; merchants and reports see both.
pub fn public_grade(grade: &str) -> &str {
    let public = grade.trim_end_matches(|c: char| c.is_ascii_digit());
    if public.is_empty() {
        grade
    } else {
        public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_grades_share_their_public_grade() {
        assert_eq!(public_grade("B2"), "B");
        assert_eq!(public_grade("E12"), "E");
        assert_eq!(public_grade("A+"), "A+");
        assert_eq!(public_grade("C"), "C");
        // A name of digits alone is its own public grade.
        assert_eq!(public_grade("7"), "7");
    }
}
