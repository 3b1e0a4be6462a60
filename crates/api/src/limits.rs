//! Rate limits (governor's keyed GCRA limiters): per API key for every authenticated
//! request, refusals included, and per client address for requests that fail
//! authentication, so that neither a key nor an anonymous client can flood the service or
//! its logs.
//!
//! On PostgreSQL several replicas serve the same keys, so a key's limit is kept in the
//! database ([`yuanxin_store::allowance`]): each replica leases a few requests' allowance
//! at a time ([`Leases`]) and spends it from memory. A key never gets more than its quota
//! across all replicas; allowance a replica leased and did not spend within
//! [`LEASE_LIFE`] is lost, so a key spread over `r` replicas may be refused up to
//! `r` leases early (a lease's size follows the key's traffic, see [`Leases`]). The per-address limit on failed authentications stays per
//! replica: asking the database about every anonymous request would hand a flood the
//! database.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use yuanxin_store::allowance::Quota as SharedQuota;

use crate::problem::ApiError;

/// One keyed limiter.
pub struct Limiter<K: Hash + Eq + Clone> {
    inner: RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>,
    clock: DefaultClock,
    whose: &'static str,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Limiter({}, {} keys)", self.whose, self.inner.len())
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `rate` requests a second on average, bursts of `burst` (both checked positive by the
    /// configuration).
    pub fn new(rate: f64, burst: f64, whose: &'static str) -> Limiter<K> {
        let period = Duration::from_secs_f64((1.0 / rate).clamp(1e-9, 86_400.0));
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let burst = NonZeroU32::new(burst.clamp(1.0, f64::from(u32::MAX)) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Limiter {
            inner: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            whose,
        }
    }

    /// Takes one request's allowance for `key`, or says how long to wait (429).
    pub fn take(&self, key: &K) -> Result<(), ApiError> {
        self.inner.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::rate_limited(wait.as_secs_f64().ceil() as u64, self.whose)
        })
    }

    /// Forgets keys whose allowance is full again (bounds the memory of per-address state).
    pub fn forget_idle(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// How long leased allowance stays spendable.
pub const LEASE_LIFE: Duration = Duration::from_millis(100);

/// Allowance leased from the store's shared buckets, per key.
#[derive(Debug)]
pub struct Leases {
    quota: SharedQuota,
    /// The most requests asked for per lease: what the rate earns in [`LEASE_LIFE`], at
    /// least one, at most an eighth of the burst (so that a few replicas cannot lease it all
    /// away).
    most: u32,
    held: Mutex<HashMap<Arc<str>, Arc<Mutex<Lease>>>>,
    whose: &'static str,
}

/// One key's lease on this replica. Its size follows the key's traffic: doubled when a
/// lease is spent before it expires, halved when one expires unspent, so a quiet key
/// leases one request at a time and wastes little, and a busy one asks the database
/// rarely.
#[derive(Debug)]
struct Lease {
    left: u32,
    until: Instant,
    size: u32,
}

impl Leases {
    /// Leases of `rate` requests a second on average, bursts of `burst` (both checked
    /// positive by the configuration).
    pub fn new(rate: f64, burst: f64, whose: &'static str) -> Leases {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (period_us, burst, most) = (
            (1e6 / rate).clamp(1.0, 8.64e10) as i64,
            burst.clamp(1.0, f64::from(u32::MAX)) as u32,
            (rate * LEASE_LIFE.as_secs_f64()).clamp(1.0, (burst / 8.0).max(1.0)) as u32,
        );
        Leases {
            quota: SharedQuota { period_us, burst },
            most,
            held: Mutex::new(HashMap::new()),
            whose,
        }
    }

    /// Takes one request's allowance for `key`: from this replica's lease while it lasts,
    /// else from the shared bucket (one short transaction, while the key's other requests
    /// on this replica wait for it rather than lease too), or says how long to wait (429).
    pub fn take(&self, key: &Arc<str>, db: &crate::Db) -> Result<(), ApiError> {
        let cell = {
            let mut held = self.held.lock().map_err(lease_poisoned)?;
            Arc::clone(held.entry(Arc::clone(key)).or_insert_with(|| {
                Arc::new(Mutex::new(Lease {
                    left: 0,
                    until: Instant::now(),
                    size: 1,
                }))
            }))
        };
        let mut lease = cell.lock().map_err(lease_poisoned)?;
        let now = Instant::now();
        if now < lease.until {
            if lease.left > 0 {
                lease.left -= 1;
                return Ok(());
            }
            lease.size = lease.size.saturating_mul(2).min(self.most);
        } else if lease.left > 0 {
            lease.size = (lease.size / 2).max(1);
        }
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let bucket = format!("key:{key}");
        let got = db.read(|s| Ok(s.take_allowance(&bucket, lease.size, self.quota, now_us)?))?;
        if got.granted == 0 {
            lease.left = 0;
            #[allow(clippy::cast_sign_loss)]
            let seconds = (got.retry_after_us.max(0) as u64).div_ceil(1_000_000);
            return Err(ApiError::rate_limited(seconds, self.whose));
        }
        lease.left = got.granted - 1;
        lease.until = Instant::now() + LEASE_LIFE;
        Ok(())
    }

    /// Forgets keys idle for a second or more.
    fn forget_idle(&self) {
        if let Ok(mut held) = self.held.lock() {
            let now = Instant::now();
            held.retain(|_, cell| {
                cell.try_lock()
                    .map_or(true, |l| now < l.until + Duration::from_secs(1))
            });
        }
    }
}

fn lease_poisoned<T>(_: T) -> ApiError {
    ApiError::internal("rate lease lock poisoned")
}

/// The per-key limit: in this process's memory (SQLite: one process serves), or leased
/// from the database's shared buckets (PostgreSQL: replicas share the keys).
#[derive(Debug)]
pub enum KeyLimits {
    /// One process.
    Local(Limiter<Arc<str>>),
    /// Replicas.
    Shared(Leases),
}

impl KeyLimits {
    /// Takes one request's allowance for `key`, or says how long to wait (429).
    pub fn take(&self, key: &Arc<str>, db: &crate::Db) -> Result<(), ApiError> {
        match self {
            KeyLimits::Local(l) => l.take(key),
            KeyLimits::Shared(l) => l.take(key, db),
        }
    }

    /// Forgets keys whose allowance is full again, or whose lease expired.
    pub fn forget_idle(&self) {
        match self {
            KeyLimits::Local(l) => l.forget_idle(),
            KeyLimits::Shared(l) => l.forget_idle(),
        }
    }
}

/// The service's limiters.
#[derive(Debug)]
pub struct Limits {
    /// Per API key id.
    pub keys: KeyLimits,
    /// Per client address, for failed authentications.
    pub anonymous: Limiter<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate_and_say_when_to_retry() {
        let l: Limiter<std::sync::Arc<str>> = Limiter::new(1.0, 2.0, "this API key");
        let a: std::sync::Arc<str> = "a".into();
        assert!(l.take(&a).is_ok());
        assert!(l.take(&a).is_ok());
        let e = l.take(&a).unwrap_err();
        assert_eq!(e.retry_after, Some(1));
        assert!(e.detail.contains("this API key"));
        assert!(l.take(&"b".into()).is_ok(), "keys have their own buckets");
    }
}
