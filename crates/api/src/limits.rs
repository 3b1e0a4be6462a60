//! Rate limits (governor's keyed GCRA limiters): per API key for every authenticated
//! request, refusals included, and per client address for requests that fail
//! authentication, so that neither a key nor an anonymous client can flood the service or
//! its logs.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

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

/// The service's limiters.
#[derive(Debug)]
pub struct Limits {
    /// Per API key id.
    pub keys: Limiter<std::sync::Arc<str>>,
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
