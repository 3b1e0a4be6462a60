//! Why a row was rejected: a closed list of machine-readable reasons.

use std::fmt;

use serde::Serialize;

/// A machine-readable rejection reason. Codes are stable: reports, quarantine files and
/// tests match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A required field is empty.
    MissingField,
    /// A value cannot be read as the column's type (text in a number column, bad date, ...).
    TypeError,
    /// An identifier breaks the id rule (1–64 characters of `[A-Za-z0-9._-]`).
    InvalidId,
    /// A value outside the column's code list.
    UnknownCode,
    /// A unified social credit code with a wrong length, character or check character.
    InvalidCreditCode,
    /// A money amount below zero.
    NegativeAmount,
    /// A money amount with more than 2 decimal places.
    AmountPrecision,
    /// A number outside the column's range (ratio outside 0–1, amount too large, ...).
    OutOfRange,
    /// A timestamp or date before 2000 or in the future.
    TimestampOutOfRange,
    /// Fields of the row contradict each other (frozen part larger than the payment, a
    /// field required for this kind is missing, ...).
    Inconsistent,
    /// The merchant is not registered in the ledger or in this batch.
    UnknownMerchant,
    /// The contract is not in the ledger or in this batch.
    UnknownContract,
    /// The product is not in the ledger or in this batch.
    UnknownProduct,
    /// The `event_id` is already in the ledger with different content.
    ConflictingDuplicate,
    /// A value beyond the documented plausibility bound of its table and column.
    ImplausibleValue,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 15] = [
        Reason::MissingField,
        Reason::TypeError,
        Reason::InvalidId,
        Reason::UnknownCode,
        Reason::InvalidCreditCode,
        Reason::NegativeAmount,
        Reason::AmountPrecision,
        Reason::OutOfRange,
        Reason::TimestampOutOfRange,
        Reason::Inconsistent,
        Reason::UnknownMerchant,
        Reason::UnknownContract,
        Reason::UnknownProduct,
        Reason::ConflictingDuplicate,
        Reason::ImplausibleValue,
    ];

    /// The stable code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::MissingField => "missing_field",
            Reason::TypeError => "type_error",
            Reason::InvalidId => "invalid_id",
            Reason::UnknownCode => "unknown_code",
            Reason::InvalidCreditCode => "invalid_credit_code",
            Reason::NegativeAmount => "negative_amount",
            Reason::AmountPrecision => "amount_precision",
            Reason::OutOfRange => "out_of_range",
            Reason::TimestampOutOfRange => "timestamp_out_of_range",
            Reason::Inconsistent => "inconsistent",
            Reason::UnknownMerchant => "unknown_merchant",
            Reason::UnknownContract => "unknown_contract",
            Reason::UnknownProduct => "unknown_product",
            Reason::ConflictingDuplicate => "conflicting_duplicate",
            Reason::ImplausibleValue => "implausible_value",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rejected row's reason, with the column and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: Reason,
    /// Which column, where one is to blame.
    pub column: Option<&'static str>,
    /// What exactly was wrong, for a person.
    pub detail: String,
}

impl Rejection {
    pub(crate) fn new(reason: Reason, column: &'static str, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            column: Some(column),
            detail: detail.into(),
        }
    }

    pub(crate) fn row(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            column: None,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_serialises_as_its_stable_code() {
        for r in Reason::ALL {
            assert_eq!(
                serde_json::to_string(&r).ok(),
                Some(format!("\"{}\"", r.as_str()))
            );
        }
    }
}
