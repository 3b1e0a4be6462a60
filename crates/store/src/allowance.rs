//! Rate allowances shared by every process on one store: a generic cell rate algorithm
//! (GCRA, as the `governor` crate runs in memory) whose one number per bucket — the
//! theoretical arrival time of the next request — lives in the database.
//!
//! Replicas of the service on one PostgreSQL database take allowance from the same buckets,
//! so a key's rate limit holds across all of them. A replica takes several requests'
//! allowance at once (a lease) and spends it from memory, so the database is asked once per
//! lease, not once per request. Allowance is taken before it is spent: the buckets are
//! never overdrawn; a lease that expires unspent is lost, which can only refuse early.

use crate::sql::{args, Lock};
use crate::{Store, StoreError};

/// The rate of a bucket: one request per `period_us` on average, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Microseconds between requests at the sustained rate (≥ 1).
    pub period_us: i64,
    /// Requests allowed at once after a quiet spell (≥ 1).
    pub burst: u32,
}

/// What one take granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Requests granted (0 ..= the number asked for).
    pub granted: u32,
    /// When nothing was granted, microseconds until one request will be (else 0).
    pub retry_after_us: i64,
}

/// The arithmetic of one take, apart from the database: `tat` is the bucket's stored
/// theoretical arrival time (none for a new bucket), `now` the caller's clock; returns the
/// allowance and the new arrival time to store (none when nothing was granted).
fn take(tat: Option<i64>, now: i64, want: u32, q: Quota) -> (Allowance, Option<i64>) {
    let period = q.period_us.max(1);
    let tolerance = period.saturating_mul(i64::from(q.burst.max(1)));
    let base = tat.map_or(now, |t| t.max(now));
    // Requests that fit: base + n × period − tolerance ≤ now.
    let room = now.saturating_add(tolerance).saturating_sub(base) / period;
    let granted = u32::try_from(room.clamp(0, i64::from(want))).unwrap_or(0);
    if granted == 0 {
        let retry = base
            .saturating_add(period)
            .saturating_sub(tolerance)
            .saturating_sub(now);
        return (
            Allowance {
                granted: 0,
                retry_after_us: retry.max(1),
            },
            None,
        );
    }
    let next = base.saturating_add(period.saturating_mul(i64::from(granted)));
    (
        Allowance {
            granted,
            retry_after_us: 0,
        },
        Some(next),
    )
}

impl Store {
    /// Takes up to `want` requests' allowance from `bucket` at time `now_us` (microseconds
    /// since the Unix epoch, by the caller's clock: replicas' clocks are assumed to agree to
    /// well within a period). One short transaction; buckets are made on first use.
    pub fn take_allowance(
        &self,
        bucket: &str,
        want: u32,
        quota: Quota,
        now_us: i64,
    ) -> Result<Allowance, StoreError> {
        self.conn.write(Lock::Allowance, |c| {
            let tat: Option<i64> = c
                .row(
                    "SELECT tat_us FROM allowances WHERE bucket = ?1",
                    args![bucket],
                )?
                .map(|r| r.get(0))
                .transpose()?;
            let (allowance, next) = take(tat, now_us, want, quota);
            if let Some(next) = next {
                c.exec(
                    "INSERT INTO allowances (bucket, tat_us) VALUES (?1, ?2)
                     ON CONFLICT (bucket) DO UPDATE SET tat_us = excluded.tat_us",
                    args![bucket, next],
                )?;
            }
            Ok(allowance)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quota = Quota {
        period_us: 1_000,
        burst: 5,
    };

    #[test]
    fn a_new_bucket_grants_its_burst_and_then_the_rate() {
        let (a, tat) = take(None, 0, 3, Q);
        assert_eq!(a.granted, 3);
        let (b, tat) = take(tat, 0, 10, Q);
        assert_eq!(b.granted, 2, "five in all at once");
        let (c, none) = take(tat, 0, 1, Q);
        assert_eq!((c.granted, c.retry_after_us, none), (0, 1_000, None));
        let (d, _) = take(tat, 1_000, 10, Q);
        assert_eq!(d.granted, 1, "one more a period later");
        let (e, _) = take(tat, 1_000_000, 10, Q);
        assert_eq!(e.granted, 5, "a quiet spell refills only the burst");
    }

    #[test]
    fn extreme_clocks_and_quotas_neither_panic_nor_overgrant() {
        for now in [i64::MIN, -1, 0, i64::MAX] {
            for tat in [None, Some(i64::MIN), Some(0), Some(i64::MAX)] {
                let q = Quota {
                    period_us: i64::MAX,
                    burst: u32::MAX,
                };
                let (a, _) = take(tat, now, u32::MAX, q);
                assert!(a.granted == 0 || a.retry_after_us == 0);
                let (b, _) = take(tat, now, 7, Q);
                assert!(b.granted <= 7);
            }
        }
    }
}
