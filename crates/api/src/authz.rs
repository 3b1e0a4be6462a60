//! Keys, consents and open disputes held in memory, so that checking a request needs no
//! database read.
//!
//! Consents and disputes are written only by the service, which updates this copy right
//! after each committed write: the copy is exact. Keys are also created and revoked by
//! `yuanxin keys` in another process; every such change bumps a version counter in the
//! database, which the service polls (every 100 ms) to reload the keys, and a key the copy
//! does not know is looked up in the database at once. So a new key works immediately and
//! a revocation takes effect within the polling interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::RwLock;

use crate::store::{Consent, Principal, Store, StoredKey};
use crate::ApiError;

/// The in-memory copy.
#[derive(Debug)]
pub struct Authz {
    secret: [u8; 32],
    keys: RwLock<HashMap<String, StoredKey>>,
    version: AtomicI64,
    consents: RwLock<HashMap<String, Vec<Consent>>>,
    disputes: RwLock<HashMap<String, u32>>,
}

fn poisoned<T>(_: T) -> ApiError {
    ApiError::Internal("authorisation cache lock poisoned".into())
}

impl Authz {
    /// Loads everything from the database.
    pub fn load(store: &Store) -> Result<Authz, ApiError> {
        let a = Authz {
            secret: store.secret(),
            keys: RwLock::new(HashMap::new()),
            version: AtomicI64::new(i64::MIN),
            consents: RwLock::new(HashMap::new()),
            disputes: RwLock::new(store.open_disputes()?.into_iter().collect()),
        };
        a.refresh_keys(store)?;
        {
            let mut c = a.consents.write().map_err(poisoned)?;
            for consent in store.active_consents()? {
                c.entry(consent.merchant_id.clone())
                    .or_default()
                    .push(consent);
            }
        }
        Ok(a)
    }

    /// Reloads the keys if `yuanxin keys` (or anything else) changed them.
    pub fn refresh_keys(&self, store: &Store) -> Result<(), ApiError> {
        let v = store.keys_version()?;
        if v == self.version.load(Ordering::SeqCst) {
            return Ok(());
        }
        let keys = store
            .keys(None)?
            .into_iter()
            .map(|k| (k.principal.key_id.clone(), k))
            .collect();
        *self.keys.write().map_err(poisoned)? = keys;
        self.version.store(v, Ordering::SeqCst);
        Ok(())
    }

    /// The principal of a presented key, if it is known, intact and not revoked. A key id
    /// not in memory is looked up with `lookup` (the database). The digest comparison is
    /// constant-time (`blake3::Hash` equality).
    pub fn authenticate(
        &self,
        key: &str,
        lookup: impl FnOnce(&str) -> Result<Option<StoredKey>, ApiError>,
    ) -> Result<Option<Principal>, ApiError> {
        let Some((key_id, secret)) = key.strip_prefix("yx_").and_then(|r| r.split_once('_')) else {
            return Ok(None);
        };
        let known = self.keys.read().map_err(poisoned)?.get(key_id).cloned();
        let stored = match known {
            Some(k) => k,
            None => match lookup(key_id)? {
                Some(k) => {
                    self.keys
                        .write()
                        .map_err(poisoned)?
                        .insert(key_id.to_owned(), k.clone());
                    k
                }
                None => return Ok(None),
            },
        };
        let Some(digest) = stored.digest else {
            return Ok(None);
        };
        let presented = blake3::keyed_hash(&self.secret, secret.as_bytes());
        if presented != blake3::Hash::from_bytes(digest) || stored.revoked {
            return Ok(None);
        }
        Ok(Some(stored.principal))
    }

    /// The consent in force for a merchant, lender and purpose at `now` (RFC 3339, +08:00),
    /// the latest if several.
    pub fn valid_consent(
        &self,
        merchant: &str,
        lender: &str,
        purpose: &str,
        now: &str,
    ) -> Result<Option<i64>, ApiError> {
        Ok(self
            .consents
            .read()
            .map_err(poisoned)?
            .get(merchant)
            .and_then(|cs| {
                cs.iter()
                    .filter(|c| {
                        c.lender == lender
                            && c.purpose == purpose
                            && c.granted_at.as_str() <= now
                            && c.expires_at.as_str() > now
                    })
                    .map(|c| c.id)
                    .max()
            }))
    }

    /// Whether a merchant has an open dispute.
    pub fn has_open_dispute(&self, merchant: &str) -> Result<bool, ApiError> {
        Ok(self
            .disputes
            .read()
            .map_err(poisoned)?
            .get(merchant)
            .is_some_and(|&n| n > 0))
    }

    /// A consent was committed.
    pub fn granted(&self, c: &Consent) -> Result<(), ApiError> {
        self.consents
            .write()
            .map_err(poisoned)?
            .entry(c.merchant_id.clone())
            .or_default()
            .push(c.clone());
        Ok(())
    }

    /// A merchant's consent was revoked.
    pub fn revoked(&self, merchant: &str, id: i64) -> Result<(), ApiError> {
        if let Some(cs) = self.consents.write().map_err(poisoned)?.get_mut(merchant) {
            cs.retain(|c| c.id != id);
        }
        Ok(())
    }

    /// A dispute was opened (`+1`) or answered (`-1`).
    pub fn dispute(&self, merchant: &str, opened: bool) -> Result<(), ApiError> {
        let mut d = self.disputes.write().map_err(poisoned)?;
        let n = d.entry(merchant.to_owned()).or_default();
        *n = if opened {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_database_and_consents_follow_the_service() -> Result<(), ApiError> {
        let dir = tempfile::tempdir().map_err(|e| ApiError::Internal(e.to_string()))?;
        let store = Store::open(&dir.path().join("db.sqlite"))?;
        let now = "2026-01-01T00:00:00+08:00";
        let (_, early) = store.create_key("lender", "Bank A", None, now)?;
        let authz = Authz::load(&store)?;
        let none = |_: &str| Ok(None);
        assert_eq!(
            authz.authenticate(&early, none)?.map(|p| p.name),
            Some("Bank A".into())
        );
        // A key made after loading is found through the lookup at once.
        let (p, late) = store.create_key("merchant", "M1", Some("M1"), now)?;
        assert!(
            authz.authenticate(&late, none)?.is_none(),
            "not without a lookup"
        );
        let found = authz.authenticate(&late, |id| Ok(store.keys(Some(id))?.into_iter().next()))?;
        assert_eq!(found.map(|p| p.key_id), Some(p.key_id.clone()));
        // A wrong secret for a known id, and a revoked key, are refused.
        let forged = format!("yx_{}_{}", p.key_id, "0".repeat(40));
        assert!(authz.authenticate(&forged, none)?.is_none());
        store.revoke_key(&p.key_id, now)?;
        assert!(
            authz.authenticate(&late, none)?.is_some(),
            "until the next refresh"
        );
        authz.refresh_keys(&store)?;
        assert!(authz.authenticate(&late, none)?.is_none());
        // Consents: in force between grant and expiry, gone when revoked.
        let c = store.grant("M1", "Bank A", "pre_loan", now, "2026-02-01T00:00:00+08:00")?;
        authz.granted(&c)?;
        let at = "2026-01-15T00:00:00+08:00";
        assert_eq!(
            authz.valid_consent("M1", "Bank A", "pre_loan", at)?,
            Some(c.id)
        );
        assert_eq!(authz.valid_consent("M1", "Bank A", "post_loan", at)?, None);
        assert_eq!(
            authz.valid_consent("M1", "Bank A", "pre_loan", "2026-03-01T00:00:00+08:00")?,
            None
        );
        authz.revoked("M1", c.id)?;
        assert_eq!(authz.valid_consent("M1", "Bank A", "pre_loan", at)?, None);
        // Disputes: open until answered; a reload agrees with the running copy.
        authz.dispute("M1", true)?;
        store.open_dispute("M1", "s", "d", now, at)?;
        assert!(authz.has_open_dispute("M1")?);
        assert!(Authz::load(&store)?.has_open_dispute("M1")?);
        authz.dispute("M1", false)?;
        assert!(!authz.has_open_dispute("M1")?);
        Ok(())
    }
}
