use thiserror::Error;

/// Why a domain value could not be built from its raw form.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// The text is not a decimal number at all.
    #[error("not a decimal amount: {text:?}")]
    MoneyParse { text: String },
    /// The amount has more decimal places than fen (0.01 yuan) allow.
    #[error("amount {text} has more than 2 decimal places (fen precision)")]
    MoneyPrecision { text: String },
    /// Arithmetic left the representable range.
    #[error("money arithmetic overflowed")]
    MoneyOverflow,
    /// A unified social credit code of the wrong length.
    #[error("credit code must be 18 characters, got {len}")]
    UsccLength { len: usize },
    /// A character outside the GB 32100-2015 alphabet (which excludes I, O, S, V, Z).
    #[error("credit code has invalid character {ch:?} at position {pos}")]
    UsccCharacter { ch: char, pos: usize },
    /// The 18th character does not match the GB 32100-2015 check computation.
    #[error("credit code check character is {found:?}, expected {expected:?}")]
    UsccCheck { found: char, expected: char },
    /// A coded value (industry, district, event kind, ...) outside its published list.
    #[error("unknown {what} code {code:?}")]
    UnknownCode { what: &'static str, code: String },
    /// An identifier that is empty, too long or contains characters we do not accept.
    #[error("invalid {what} identifier {text:?}")]
    InvalidId { what: &'static str, text: String },
}
