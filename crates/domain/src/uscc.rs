use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::DomainError;

/// The 31-character alphabet of GB 32100-2015: digits and upper-case letters without
/// I, O, S, V and Z (too easily confused with 1, 0, 5, U and 2).
const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Position weights 3^(i-1) mod 31 for the first 17 characters.
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn value_of(byte: u8) -> Option<u32> {
    ALPHABET
        .iter()
        .position(|&a| a == byte)
        .and_then(|p| u32::try_from(p).ok())
}

/// A unified social credit code (统一社会信用代码), validated with its GB 32100-2015 check
/// character.
///
/// Layout: registration authority (1), entity type (1), administrative division (6),
/// organisation code (9), check character (1). Only the alphabet and the check character are
/// verified here: the division and organisation parts are not checkable without registries.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uscc(String);

impl Uscc {
    /// Computes the check character for the first 17 characters of a code.
    pub fn check_char(first17: &[u8]) -> Result<char, DomainError> {
        if first17.len() != 17 {
            return Err(DomainError::UsccLength {
                len: first17.len() + 1,
            });
        }
        let mut sum = 0u32;
        for (pos, (&byte, weight)) in first17.iter().zip(WEIGHTS).enumerate() {
            let v = value_of(byte).ok_or(DomainError::UsccCharacter {
                ch: char::from(byte),
                pos: pos + 1,
            })?;
            sum += v * weight;
        }
        let check = (31 - sum % 31) % 31;
        // `check` < 31 by construction, so the index is in range.
        Ok(char::from(ALPHABET[check as usize]))
    }

    /// Completes a 17-character prefix with its check character.
    pub fn from_prefix(first17: &str) -> Result<Uscc, DomainError> {
        let check = Uscc::check_char(first17.as_bytes())?;
        let mut code = String::with_capacity(18);
        code.push_str(first17);
        code.push(check);
        Ok(Uscc(code))
    }

    /// Parses and validates a code: 18 characters of the alphabet with the right check.
    pub fn parse(text: &str) -> Result<Uscc, DomainError> {
        let chars = text.chars().count();
        if chars != 18 || text.len() != 18 {
            return Err(DomainError::UsccLength { len: chars });
        }
        let bytes = text.as_bytes();
        if let Some((pos, &b)) = bytes
            .iter()
            .enumerate()
            .find(|(_, &b)| value_of(b).is_none())
        {
            return Err(DomainError::UsccCharacter {
                ch: char::from(b),
                pos: pos + 1,
            });
        }
        let expected = Uscc::check_char(&bytes[..17])?;
        let found = char::from(bytes[17]);
        if found != expected {
            return Err(DomainError::UsccCheck { found, expected });
        }
        Ok(Uscc(text.to_string()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The six-digit administrative division code inside the credit code.
    pub fn division_code(&self) -> &str {
        &self.0[2..8]
    }
}

impl FromStr for Uscc {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Uscc, DomainError> {
        Uscc::parse(s)
    }
}

impl fmt::Display for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uscc({})", self.0)
    }
}

impl Serialize for Uscc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Uscc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Uscc, D::Error> {
        let text = String::deserialize(d)?;
        Uscc::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Published codes of real companies (public business registrations).
    const REAL: [&str; 4] = [
        "9144030071526726XG", // 深圳市腾讯计算机系统有限公司
        "914403001922038216", // 平安银行股份有限公司
        "91350100M000100Y43", // the specification's worked example
        "91110000600037341L",
    ];

    #[test]
    fn accepts_real_codes() {
        for code in REAL {
            let uscc = Uscc::parse(code).unwrap();
            assert_eq!(uscc.as_str(), code);
        }
        assert_eq!(Uscc::parse(REAL[0]).unwrap().division_code(), "440300");
    }

    #[test]
    fn rejects_wrong_check_character() {
        let err = Uscc::parse("9144030071526726XA").unwrap_err();
        assert_eq!(
            err,
            DomainError::UsccCheck {
                found: 'A',
                expected: 'G'
            }
        );
    }

    #[test]
    fn rejects_forbidden_letters_length_and_lowercase() {
        assert!(matches!(
            Uscc::parse("9144030071526726IG"),
            Err(DomainError::UsccCharacter { ch: 'I', pos: 17 })
        ));
        assert!(matches!(
            Uscc::parse("9144030071526726xg"),
            Err(DomainError::UsccCharacter { .. })
        ));
        assert!(matches!(
            Uscc::parse("9144030071526726X"),
            Err(DomainError::UsccLength { len: 17 })
        ));
        assert!(matches!(
            Uscc::parse("9144030071526726XGG"),
            Err(DomainError::UsccLength { len: 19 })
        ));
        assert!(Uscc::parse("91440300715267２6XG").is_err());
        assert!(Uscc::parse("").is_err());
    }

    #[test]
    fn from_prefix_builds_valid_codes() {
        let code = Uscc::from_prefix("9144030071526726X").unwrap();
        assert_eq!(code.as_str(), REAL[0]);
    }

    proptest! {
        /// Any single-character substitution is caught: the weights are non-zero modulo the
        /// prime 31, so changing one character always changes the checksum.
        #[test]
        fn every_single_substitution_is_detected(pos in 0usize..18, replacement in 0usize..31, which in 0usize..4) {
            let code = REAL[which];
            let mut bytes = code.as_bytes().to_vec();
            let new = ALPHABET[replacement];
            prop_assume!(bytes[pos] != new);
            bytes[pos] = new;
            let corrupted = String::from_utf8(bytes).unwrap();
            prop_assert!(Uscc::parse(&corrupted).is_err());
        }

        #[test]
        fn generated_codes_round_trip(body in proptest::collection::vec(0usize..31, 17)) {
            let prefix: String = body.iter().map(|&i| char::from(ALPHABET[i])).collect();
            let code = Uscc::from_prefix(&prefix).unwrap();
            prop_assert_eq!(Uscc::parse(code.as_str()).unwrap(), code);
        }
    }
}
