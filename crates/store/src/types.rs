//! The store's values: roles, consent purposes, timestamps and the records it keeps.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use yuanxin_domain::MerchantId;

use crate::StoreError;

/// What a principal may do. Lenders query merchants under consent, merchants see their own
/// data, analysts run the models and answer disputes, admins also manage principals and
/// keys, regulators read the pilot's aggregate figures and watch list (a regulator whose
/// code is a district's, e.g. `FUTIAN`, only its district's; code `CITY`, the whole city).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A lender institution (a bank of the plan's finance group).
    Lender,
    /// A merchant, for its own data.
    Merchant,
    /// A credit-platform analyst.
    Analyst,
    /// A credit-platform administrator.
    Admin,
    /// A market regulator: the city's task force or a district's.
    Regulator,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 5] = [
        Role::Lender,
        Role::Merchant,
        Role::Analyst,
        Role::Admin,
        Role::Regulator,
    ];

    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lender => "lender",
            Role::Merchant => "merchant",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
            Role::Regulator => "regulator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Role, StoreError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "unknown role {s:?}: lender, merchant, analyst, admin or regulator"
                ))
            })
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why a query is made: what a merchant consents to a lender's queries for, or a
/// regulator's supervision (which needs no consent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// Before a loan: the application.
    PreLoan,
    /// During a loan: monitoring.
    PostLoan,
    /// A regulator's supervision of the pilot (task 七 of the plan): logged, never consented.
    Supervision,
}

impl Purpose {
    /// The purposes a consent can name (supervision is not one).
    pub const ALL: [Purpose; 2] = [Purpose::PreLoan, Purpose::PostLoan];

    /// The purpose's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::PreLoan => "pre_loan",
            Purpose::PostLoan => "post_loan",
            Purpose::Supervision => "supervision",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Purpose {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Purpose, StoreError> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                StoreError::Invalid(format!("unknown purpose {s:?}: pre_loan or post_loan"))
            })
    }
}

impl Serialize for Purpose {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An instant, to the second, shown in Asia/Shanghai (RFC 3339 with `+08:00`). Stored as
/// that text: with one offset and a fixed width, text order is time order, so the database
/// can compare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<FixedOffset>);

impl Timestamp {
    /// Now, from the system clock.
    pub fn now() -> Timestamp {
        Timestamp::from_utc(Utc::now())
    }

    /// An instant, truncated to the second.
    pub fn from_utc(t: DateTime<Utc>) -> Timestamp {
        let secs = t.timestamp();
        let whole = DateTime::from_timestamp(secs, 0).unwrap_or(t);
        Timestamp(whole.with_timezone(&yuanxin_domain::shanghai()))
    }

    /// Parses RFC 3339 (any offset; kept as the same instant in Asia/Shanghai).
    pub fn parse(text: &str) -> Result<Timestamp, StoreError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| Timestamp::from_utc(t.with_timezone(&Utc)))
            .map_err(|e| StoreError::Damaged(format!("timestamp {text:?}: {e}")))
    }

    /// This instant plus whole days, if representable.
    pub fn plus_days(self, days: i64) -> Option<Timestamp> {
        self.0
            .checked_add_signed(chrono::Duration::try_days(days)?)
            .map(Timestamp)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, false))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether `text` is a well-formed principal code: 1–64 characters of `[A-Za-z0-9._-]`,
/// the rule of every identifier in the project.
pub fn is_valid_code(text: &str) -> bool {
    yuanxin_domain::is_valid_id(text)
}

/// A merchant id read back from the database: written only from checked ids, so one
/// that does not parse means the file was changed behind the store's back.
pub(crate) fn stored_merchant(text: &str) -> Result<MerchantId, StoreError> {
    MerchantId::parse(text).map_err(|e| StoreError::Damaged(format!("stored {e}")))
}

/// Row ids of the store's tables, one type each, so that a consent id is never passed
/// where a principal id is expected. Stored as integers; serialised as bare numbers.
macro_rules! row_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<i64> for $name {
            fn from(id: i64) -> $name {
                $name(id)
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                i64::column_result(v).map($name)
            }
        }
    };
}

row_id!(
    /// A principal's id.
    PrincipalId
);
row_id!(
    /// A consent's id.
    ConsentId
);
row_id!(
    /// A dispute's id.
    DisputeId
);

/// Who holds keys: a lender institution, a merchant, an analyst or an admin. `code` is the
/// stable public identifier (an institution code such as `CCB`, the merchant id for a
/// merchant, a login name for platform staff), unique within the role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Internal id.
    pub id: PrincipalId,
    /// Role.
    pub role: Role,
    /// Stable public code, unique within the role.
    pub code: String,
    /// Display name (an institution's name).
    pub name: String,
    /// Created.
    pub created_at: Timestamp,
}

impl Principal {
    /// The merchant a merchant principal is.
    pub fn merchant_id(&self) -> Option<&str> {
        (self.role == Role::Merchant).then_some(self.code.as_str())
    }
}

/// An API key as stored: only a keyed digest of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The public part (`yx_<key id>_<secret>`).
    pub key_id: String,
    /// Whose it is.
    pub principal: Principal,
    /// Keyed BLAKE3 digest of the secret (`None` if the stored value is damaged).
    pub digest: Option<[u8; 32]>,
    /// Created.
    pub created_at: Timestamp,
    /// Revoked, if so.
    pub revoked_at: Option<Timestamp>,
}

/// A consent from a merchant to a lender institution, for one purpose, for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consent {
    /// Id.
    pub id: ConsentId,
    /// Merchant.
    pub merchant_id: MerchantId,
    /// The lender's principal id.
    pub lender_id: PrincipalId,
    /// The lender's code.
    pub lender_code: String,
    /// The lender's name.
    pub lender_name: String,
    /// Purpose.
    pub purpose: Purpose,
    /// Granted.
    pub granted_at: Timestamp,
    /// Expires.
    pub expires_at: Timestamp,
    /// Revoked, if so.
    pub revoked_at: Option<Timestamp>,
}

impl Consent {
    /// In force at `now`: granted, not expired, not revoked.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.granted_at <= now && now < self.expires_at
    }
}

/// A merchant's objection (异议) to its information, to be answered within 20 days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispute {
    /// Id.
    pub id: DisputeId,
    /// Merchant.
    pub merchant_id: MerchantId,
    /// What is disputed (a characteristic, a reason code, a query).
    pub subject: String,
    /// The merchant's explanation.
    pub detail: String,
    /// Opened.
    pub opened_at: Timestamp,
    /// Answer due by.
    pub deadline: Timestamp,
    /// The platform's answer.
    pub answer: Option<String>,
    /// Answered at.
    pub answered_at: Option<Timestamp>,
}

impl Dispute {
    /// Open and past its deadline at `now`.
    pub fn overdue(&self, now: Timestamp) -> bool {
        self.answer.is_none() && self.deadline < now
    }
}

/// One page of a list, and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, C> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Cursor of the next page.
    pub next: Option<C>,
}

/// Where a page starts and how long it is. Lists are read with `LIMIT limit + 1` on an
/// index, so a page costs the same however long the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest<C> {
    /// Continue after (or, for lists that run newest first, before) this position.
    pub cursor: Option<C>,
    /// Items at most (1–500).
    pub limit: u32,
}

/// The most items a page may hold.
pub const MAX_PAGE: u32 = 500;

impl<C> PageRequest<C> {
    /// The limit, clamped to 1–[`MAX_PAGE`].
    pub(crate) fn sql_limit(&self) -> i64 {
        i64::from(self.limit.clamp(1, MAX_PAGE)) + 1
    }

    /// Cuts the one extra row read off and derives the next cursor from the last item.
    pub(crate) fn finish<T, D>(&self, mut items: Vec<T>, cursor: impl Fn(&T) -> D) -> Page<T, D> {
        let limit = self.limit.clamp(1, MAX_PAGE) as usize;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor)
        } else {
            None
        };
        Page { items, next }
    }
}

/// An `Idempotency-Key` presented with a request that creates something, and a digest of
/// the request, so that a retry with the same key returns the first result and a different
/// request under the same key is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// Who sent it (keys are per principal).
    pub principal_id: PrincipalId,
    /// The key as sent (1–255 printable ASCII characters, checked by the caller).
    pub key: String,
    /// BLAKE3 of the route and the request body.
    pub fingerprint: [u8; 32],
}

/// What a creating call did: created now, or replayed the stored response of the first
/// request with the same idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Created<T> {
    /// Created by this call; the response body stored for replays.
    New(T, Vec<u8>),
    /// A retry: the first response's body.
    Replayed(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_shanghai_seconds_and_order_as_text() {
        let a = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(a.to_string(), "2026-01-01T08:00:00+08:00");
        let b = Timestamp::parse("2026-01-01T08:00:01.9+08:00").unwrap();
        assert_eq!(b.to_string(), "2026-01-01T08:00:01+08:00");
        assert!(a < b && a.to_string() < b.to_string());
        assert_eq!(
            a.plus_days(20).unwrap().to_string(),
            "2026-01-21T08:00:00+08:00"
        );
        assert!(a.plus_days(i64::MAX).is_none());
        assert_eq!("post_loan".parse::<Purpose>().unwrap(), Purpose::PostLoan);
        assert!("Lender".parse::<Role>().is_err());
    }
}
