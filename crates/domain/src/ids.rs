use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::DomainError;

/// Longest identifier we accept; real platform ids are far shorter.
const MAX_ID_LEN: usize = 64;

/// Whether `text` is a well-formed identifier: 1–64 characters of `[A-Za-z0-9._-]`. The
/// rule every id in the source tables follows; checked without allocating.
pub fn is_valid_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn check_id(what: &'static str, text: &str) -> Result<(), DomainError> {
    if is_valid_id(text) {
        Ok(())
    } else {
        Err(DomainError::InvalidId {
            what,
            text: text.to_string(),
        })
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates an identifier: 1–64 characters of `[A-Za-z0-9._-]`.
            pub fn parse(text: &str) -> Result<Self, DomainError> {
                check_id($what, text)?;
                Ok($name(text.to_string()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Maps keyed by the id can be searched with a `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A merchant's opaque platform identifier (not its credit code, which is personal-ish
    /// registration data and stays in the merchant table).
    MerchantId, "merchant"
);
id_type!(
    /// A consumer contract (one prepayment into one smart-contract wallet).
    ContractId, "contract"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(MerchantId::parse("M000123").is_ok());
        assert!(MerchantId::parse("").is_err());
        assert!(MerchantId::parse("M 1").is_err());
        assert!(MerchantId::parse(&"x".repeat(65)).is_err());
        assert!(ContractId::parse("C-1.2_3").is_ok());
    }
}
