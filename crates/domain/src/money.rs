use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::DomainError;

/// An amount of renminbi in yuan, exact to the fen (0.01 yuan).
///
/// Money is a `rust_decimal::Decimal` held at scale 2, never a float: amounts are summed,
/// compared and reconciled exactly from ingestion to the API. It serialises as a string
/// (`"1234.50"`) so that no JSON reader can turn it into a binary float on the way.
///
/// Amounts may be negative (a difference, a net flow); whether a *field* may be negative is
/// a rule of the table it appears in, checked at ingestion.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    /// Zero yuan.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Builds an amount from a whole number of fen (1 yuan = 100 fen).
    pub fn from_fen(fen: i64) -> Money {
        Money(Decimal::new(fen, 2))
    }

    /// Builds an amount from a decimal, refusing anything finer than a fen.
    pub fn from_decimal(value: Decimal) -> Result<Money, DomainError> {
        let normalized = value.normalize();
        if normalized.scale() > 2 {
            return Err(DomainError::MoneyPrecision {
                text: value.to_string(),
            });
        }
        let mut exact = normalized;
        exact.rescale(2);
        Ok(Money(exact))
    }

    /// Rounds a decimal to the fen, half away from zero (the usual rule for CNY amounts).
    pub fn round_from(value: Decimal) -> Money {
        let mut rounded = value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        rounded.rescale(2);
        Money(rounded)
    }

    /// The amount as a decimal with exactly two decimal places.
    pub fn as_decimal(&self) -> Decimal {
        self.0
    }

    /// The amount in whole fen, if it fits in an `i64`.
    pub fn to_fen(&self) -> Option<i64> {
        let mantissa = self.0.mantissa();
        i64::try_from(mantissa).ok()
    }

    /// True for amounts below zero.
    pub fn is_negative(&self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    /// True for exactly zero.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// `self + other`, or an error if the result leaves `Decimal`'s range.
    pub fn checked_add(self, other: Money) -> Result<Money, DomainError> {
        self.0
            .checked_add(other.0)
            .map(Money)
            .ok_or(DomainError::MoneyOverflow)
    }

    /// `self - other`, or an error if the result leaves `Decimal`'s range.
    pub fn checked_sub(self, other: Money) -> Result<Money, DomainError> {
        self.0
            .checked_sub(other.0)
            .map(Money)
            .ok_or(DomainError::MoneyOverflow)
    }

    /// `self × ratio`, rounded to the fen (for shares such as a 40 % frozen part).
    pub fn mul_ratio(self, ratio: Decimal) -> Result<Money, DomainError> {
        self.0
            .checked_mul(ratio)
            .map(Money::round_from)
            .ok_or(DomainError::MoneyOverflow)
    }

    /// The sum of many amounts, or an error on overflow.
    pub fn try_sum<I: IntoIterator<Item = Money>>(items: I) -> Result<Money, DomainError> {
        items
            .into_iter()
            .try_fold(Money::ZERO, |acc, m| acc.checked_add(m))
    }
}

impl FromStr for Money {
    type Err = DomainError;

    /// Parses a plain decimal such as `1234.5` or `-0.01`. Thousands separators, currency
    /// signs and exponents are refused: source systems must export plain numbers.
    fn from_str(text: &str) -> Result<Money, DomainError> {
        let trimmed = text.trim();
        let plain = !trimmed.is_empty()
            && trimmed
                .chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+')));
        if !plain {
            return Err(DomainError::MoneyParse {
                text: text.to_string(),
            });
        }
        let value = Decimal::from_str(trimmed).map_err(|_| DomainError::MoneyParse {
            text: text.to_string(),
        })?;
        Money::from_decimal(value).map_err(|_| DomainError::MoneyPrecision {
            text: text.to_string(),
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({})", self.0)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Money {
    /// Accepts only strings: a JSON number would already have passed through a float.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let text = String::deserialize(deserializer)?;
        Money::from_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_at_fen_precision() {
        assert_eq!(Money::from_str("12.3").unwrap().to_string(), "12.30");
        assert_eq!(Money::from_str("12").unwrap().to_string(), "12.00");
        assert_eq!(Money::from_str("0.01").unwrap().to_fen(), Some(1));
        assert_eq!(Money::from_str("12.300").unwrap().to_string(), "12.30");
        assert_eq!(Money::from_str("-5.5").unwrap().to_fen(), Some(-550));
    }

    #[test]
    fn refuses_sub_fen_and_non_plain_text() {
        assert!(matches!(
            Money::from_str("12.345"),
            Err(DomainError::MoneyPrecision { .. })
        ));
        for bad in ["", "abc", "1,000.00", "¥12", "1e3", "12.3.4", " ", "--1"] {
            assert!(Money::from_str(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn arithmetic_is_exact() {
        let a = Money::from_str("0.10").unwrap();
        let b = Money::from_str("0.20").unwrap();
        assert_eq!(a.checked_add(b).unwrap(), Money::from_str("0.30").unwrap());
        assert_eq!(b.checked_sub(a).unwrap(), a);
        let total = Money::try_sum((0..10).map(|_| a)).unwrap();
        assert_eq!(total, Money::from_fen(100));
    }

    #[test]
    fn ratio_rounds_half_away_from_zero() {
        let price = Money::from_str("10.01").unwrap();
        // 10.01 × 0.5 = 5.005 → 5.01
        assert_eq!(
            price.mul_ratio(Decimal::new(5, 1)).unwrap(),
            Money::from_str("5.01").unwrap()
        );
        assert_eq!(
            Money::from_fen(-1001)
                .mul_ratio(Decimal::new(5, 1))
                .unwrap(),
            Money::from_fen(-501)
        );
    }

    #[test]
    fn serialises_as_string_and_refuses_numbers() {
        let m = Money::from_str("1234.5").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"1234.50\"");
        let back: Money = serde_json::from_str("\"1234.50\"").unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<Money>("1234.5").is_err());
        assert!(serde_json::from_str::<Money>("\"1234.567\"").is_err());
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let big = Money::from_decimal(Decimal::MAX.trunc()).unwrap_or(Money::from_fen(i64::MAX));
        let huge = Money(Decimal::MAX);
        assert!(huge.checked_add(big).is_err() || big.checked_add(big).is_err());
    }

    proptest! {
        #[test]
        fn fen_round_trip(fen in -10_000_000_000_i64..10_000_000_000_i64) {
            let m = Money::from_fen(fen);
            prop_assert_eq!(m.to_fen(), Some(fen));
            let parsed = Money::from_str(&m.to_string()).unwrap();
            prop_assert_eq!(parsed, m);
        }

        #[test]
        fn addition_matches_integer_fen(a in -1_000_000_000_i64..1_000_000_000, b in -1_000_000_000_i64..1_000_000_000) {
            let sum = Money::from_fen(a).checked_add(Money::from_fen(b)).unwrap();
            prop_assert_eq!(sum.to_fen(), Some(a + b));
        }
    }
}
