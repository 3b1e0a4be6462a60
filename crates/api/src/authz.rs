//! Keys, consents and open disputes held in memory, so that checking a request reads no
//! database.
//!
//! Consents and disputes are written only by the service, which updates this copy right
//! after each committed write: the copy is exact. Keys are also created and revoked by
//! `yuanxin keys` in another process. Every key change, from either side, rewrites a small
//! stamp file beside the database after its commit ([`yuanxin_store::keys_stamp_path`]);
//! each authentication compares the stamp's identity (one `stat`) and reloads the keys when
//! it moved. So a key revoked through the API is refused from the next request (the copy
//! is updated as part of the revocation), and one revoked by the command line from the
//! first request after the command returns.
//!
//! On PostgreSQL several service processes share the database, and each keeps its own
//! copy. Every change of keys, consents or disputes bumps a counter in the same
//! transaction ([`yuanxin_store::Principals::state_version`]); each request compares it
//! (one indexed read) and reloads the copy when it moved, so a consent granted or a key
//! revoked through one replica holds on every other from its next request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use yuanxin_store::prelude::*;

use yuanxin_store::{ApiKey, Consent, ConsentId, Principal, PrincipalId, Purpose, Timestamp};

use crate::problem::ApiError;

/// The identity of the stamp file: inode, length and modification time.
type Stamp = Option<(u64, u64, std::time::SystemTime)>;

fn stamp_of(path: &std::path::Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((ino, m.len(), m.modified().ok()?))
}

/// An authenticated caller: the principal and the key it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Who (shared: a request holds it without copying).
    pub principal: Arc<Principal>,
    /// With which key.
    pub key_id: Arc<str>,
}

/// A key as held in memory: as stored, with its principal and id shared with the requests
/// that use it.
type KnownKey = (ApiKey, Arc<Principal>, Arc<str>);

/// The in-memory copy.
#[derive(Debug)]
pub struct Authz {
    secret: [u8; 32],
    /// SQLite: the keys stamp file beside the database.
    stamp_path: Option<PathBuf>,
    stamp: Mutex<Stamp>,
    /// PostgreSQL: the store's state version the copy was loaded at.
    version: Option<Mutex<i64>>,
    /// PostgreSQL: the version reads shared by the requests waiting for one.
    gate: VersionGate,
    keys: RwLock<HashMap<String, KnownKey>>,
    consents: RwLock<HashMap<String, Vec<Consent>>>,
    disputes: RwLock<HashMap<String, u32>>,
}

fn poisoned<T>(_: T) -> ApiError {
    ApiError::internal("authorisation cache lock poisoned")
}

impl Authz {
    /// Loads everything from the store.
    pub fn load(store: &yuanxin_store::Store, secret: [u8; 32]) -> Result<Authz, ApiError> {
        let stamp_path = store.path().map(yuanxin_store::keys_stamp_path);
        // Read before the records: the copy is then at least as new as the version.
        let version = match stamp_path {
            Some(_) => None,
            None => Some(Mutex::new(store.state_version()?)),
        };
        let a = Authz {
            secret,
            stamp: Mutex::new(stamp_path.as_deref().and_then(stamp_of)),
            stamp_path,
            version,
            gate: VersionGate::default(),
            keys: RwLock::new(HashMap::new()),
            consents: RwLock::new(HashMap::new()),
            disputes: RwLock::new(HashMap::new()),
        };
        a.set_all(store)?;
        Ok(a)
    }

    /// Replaces the whole copy with the store's records.
    fn set_all(&self, store: &yuanxin_store::Store) -> Result<(), ApiError> {
        let keys = store.keys(None)?;
        let mut consents: HashMap<String, Vec<Consent>> = HashMap::new();
        for consent in store.active_consents()? {
            consents
                .entry(consent.merchant_id.to_string())
                .or_default()
                .push(consent);
        }
        let disputes = store.open_disputes()?.into_iter().collect();
        self.set_keys(keys)?;
        *self.consents.write().map_err(poisoned)? = consents;
        *self.disputes.write().map_err(poisoned)? = disputes;
        Ok(())
    }

    /// Brings the copy up to date before a request: on SQLite the keys, when the stamp
    /// file moved; on PostgreSQL everything, when the store's state version moved.
    pub fn sync(&self, db: &crate::Db) -> Result<(), ApiError> {
        let Some(seen) = &self.version else {
            return self.refresh(|| db.read(|s| Ok(s.keys(None)?)));
        };
        let now = self.gate.fresh(|| db.read(|s| Ok(s.state_version()?)))?;
        let mut seen = seen.lock().map_err(poisoned)?;
        if *seen != now {
            db.read(|s| self.set_all(s))?;
            *seen = now;
        }
        Ok(())
    }

    fn set_keys(&self, keys: Vec<ApiKey>) -> Result<(), ApiError> {
        *self.keys.write().map_err(poisoned)? = keys
            .into_iter()
            .map(|k| {
                let p = Arc::new(k.principal.clone());
                let id: Arc<str> = k.key_id.as_str().into();
                (k.key_id.clone(), (k, p, id))
            })
            .collect();
        Ok(())
    }

    /// Reloads the keys if the stamp moved since they were loaded (another process changed
    /// them); `load` reads them from the database.
    pub fn refresh(
        &self,
        load: impl FnOnce() -> Result<Vec<ApiKey>, ApiError>,
    ) -> Result<(), ApiError> {
        let now = self.stamp_path.as_deref().and_then(stamp_of);
        let mut seen = self.stamp.lock().map_err(poisoned)?;
        if *seen != now {
            self.set_keys(load()?)?;
            *seen = now;
        }
        Ok(())
    }

    /// The principal of a presented key, if it is known, intact and not revoked. The digest
    /// comparison is constant-time (`blake3::Hash` equality).
    pub fn authenticate(&self, key: &str) -> Result<Option<Authenticated>, ApiError> {
        let Some((key_id, secret)) = key.strip_prefix("yx_").and_then(|r| r.split_once('_')) else {
            return Ok(None);
        };
        let keys = self.keys.read().map_err(poisoned)?;
        let Some((stored, principal, shared_id)) = keys.get(key_id) else {
            return Ok(None);
        };
        let Some(digest) = stored.digest else {
            return Ok(None);
        };
        let presented = blake3::keyed_hash(&self.secret, secret.as_bytes());
        if presented != blake3::Hash::from_bytes(digest) || stored.revoked_at.is_some() {
            return Ok(None);
        }
        Ok(Some(Authenticated {
            principal: Arc::clone(principal),
            key_id: Arc::clone(shared_id),
        }))
    }

    /// The principal of a key known by its id, if it is not revoked: a web session's key,
    /// checked again at every request the session makes.
    pub fn active_key(&self, key_id: &str) -> Result<Option<Authenticated>, ApiError> {
        let keys = self.keys.read().map_err(poisoned)?;
        Ok(keys
            .get(key_id)
            .filter(|(k, _, _)| k.revoked_at.is_none() && k.digest.is_some())
            .map(|(_, principal, id)| Authenticated {
                principal: Arc::clone(principal),
                key_id: Arc::clone(id),
            }))
    }

    /// A key was created by this process.
    pub fn key_created(&self, k: &ApiKey) -> Result<(), ApiError> {
        self.keys.write().map_err(poisoned)?.insert(
            k.key_id.clone(),
            (
                k.clone(),
                Arc::new(k.principal.clone()),
                k.key_id.as_str().into(),
            ),
        );
        Ok(())
    }

    /// A key was revoked by this process: refused from now on.
    pub fn key_revoked(&self, key_id: &str, at: Timestamp) -> Result<(), ApiError> {
        if let Some((k, _, _)) = self.keys.write().map_err(poisoned)?.get_mut(key_id) {
            k.revoked_at = Some(at);
        }
        Ok(())
    }

    /// The consent in force for a merchant, lender and purpose at `now`, the latest if
    /// several.
    pub fn valid_consent(
        &self,
        merchant: &str,
        lender_id: PrincipalId,
        purpose: Purpose,
        now: Timestamp,
    ) -> Result<Option<ConsentId>, ApiError> {
        Ok(self
            .consents
            .read()
            .map_err(poisoned)?
            .get(merchant)
            .and_then(|cs| {
                cs.iter()
                    .filter(|c| c.lender_id == lender_id && c.purpose == purpose && c.in_force(now))
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
            .entry(c.merchant_id.to_string())
            .or_default()
            .push(c.clone());
        Ok(())
    }

    /// A merchant's consent was revoked.
    pub fn revoked(&self, merchant: &str, id: ConsentId) -> Result<(), ApiError> {
        if let Some(cs) = self.consents.write().map_err(poisoned)?.get_mut(merchant) {
            cs.retain(|c| c.id != id);
        }
        Ok(())
    }

    /// A dispute was opened (`true`) or answered (`false`).
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

/// Reads of the store's state version shared between requests, as a group commit shares
/// a commit: a request needs a read that *started after it arrived* (so it sees every
/// change committed before it came), and every request that arrived while one read was in
/// flight shares the next one. Under load that is one round trip per round-trip time
/// instead of one per request, and no request relies on a read older than itself.
#[derive(Debug, Default)]
struct VersionGate {
    state: Mutex<Gate>,
    done: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct Gate {
    /// Reads started (numbered from 1).
    started: u64,
    /// The latest read finished, and what it found.
    finished: u64,
    value: Option<Result<i64, String>>,
    running: bool,
}

impl VersionGate {
    /// The version, from a read that started after this call.
    fn fresh(&self, read: impl FnOnce() -> Result<i64, ApiError>) -> Result<i64, ApiError> {
        crate::db::blocking(|| {
            let mut g = self.state.lock().map_err(poisoned)?;
            let need = g.started + 1;
            let mut read = Some(read);
            loop {
                if g.finished >= need {
                    return match &g.value {
                        Some(Ok(v)) => Ok(*v),
                        Some(Err(e)) => Err(ApiError::unavailable(e.clone())),
                        None => Err(ApiError::internal("a version read left no value")),
                    };
                }
                if !g.running && g.started < need {
                    let Some(f) = read.take() else {
                        return Err(ApiError::internal("a version read was led twice"));
                    };
                    g.running = true;
                    g.started = need;
                    drop(g);
                    let got = f();
                    let mut g = self.state.lock().map_err(poisoned)?;
                    g.running = false;
                    g.finished = need;
                    g.value = Some(got.as_ref().map(|v| *v).map_err(ToString::to_string));
                    self.done.notify_all();
                    return got;
                }
                g = self.done.wait(g).map_err(poisoned)?;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yuanxin_store::{Created, Grant, OpenMode, Role, Secrets, Store};

    /// A request never takes the version from a read that was already in flight when it
    /// came: it waits for one that starts after it.
    #[test]
    fn a_version_read_older_than_the_request_is_never_used() -> Result<(), ApiError> {
        let gate = std::sync::Arc::new(VersionGate::default());
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let first = {
            let gate = std::sync::Arc::clone(&gate);
            std::thread::spawn(move || {
                gate.fresh(|| {
                    started_tx.send(()).map_err(ApiError::internal)?;
                    release_rx.recv().map_err(ApiError::internal)?;
                    Ok(1)
                })
            })
        };
        started_rx.recv().map_err(ApiError::internal)?;
        // The first read is in flight: this request must not get its value.
        let second = {
            let gate = std::sync::Arc::clone(&gate);
            std::thread::spawn(move || gate.fresh(|| Ok(2)))
        };
        release_tx.send(()).map_err(ApiError::internal)?;
        let joined = |t: std::thread::JoinHandle<Result<i64, ApiError>>| {
            t.join()
                .map_err(|_| ApiError::internal("a thread panicked"))?
        };
        assert_eq!(joined(first)?, 1);
        assert_eq!(joined(second)?, 2, "a read that started after the request");
        // With nothing in flight, the next request starts its own read.
        assert_eq!(gate.fresh(|| Ok(3))?, 3);
        Ok(())
    }

    #[test]
    fn keys_follow_the_stamp_and_consents_follow_the_service() -> Result<(), ApiError> {
        let dir = tempfile::tempdir().map_err(ApiError::internal)?;
        let path = dir.path().join("db.sqlite");
        let mut store = Store::open(&path, OpenMode::Create)?;
        let sec = Secrets::from_parts([1; 32], [2; 32]);
        let now = Timestamp::now();
        store.register_merchants(["M1"], now)?;
        let bank = store.add_principal(Role::Lender, "A", "Bank A", now)?;
        let key = |s: &mut Store, p: &Principal| -> Result<(ApiKey, String), ApiError> {
            match s.create_key(p, &sec, now, None, |_| Ok(Vec::new()))? {
                Created::New(k, _) => Ok(k),
                Created::Replayed(_) => Err(ApiError::internal("replayed")),
            }
        };
        let (_, early) = key(&mut store, &bank)?;
        let authz = Authz::load(&store, *sec.api_key_secret())?;
        assert_eq!(
            authz
                .authenticate(&early)?
                .map(|a| a.principal.code.clone()),
            Some("A".into())
        );
        // A key made by another process after loading works once the stamp is seen.
        let m1_id = yuanxin_domain::MerchantId::parse("M1").map_err(ApiError::internal)?;
        let m1 = store.merchant_principal(&m1_id, now)?;
        let (k, late) = key(&mut store, &m1)?;
        assert!(authz.authenticate(&late)?.is_none(), "not before a refresh");
        authz.refresh(|| Ok(store.keys(None)?))?;
        assert_eq!(
            authz.authenticate(&late)?.map(|a| a.key_id),
            Some(k.key_id.as_str().into())
        );
        // A wrong secret for a known id is refused; a revocation elsewhere moves the stamp.
        assert!(authz
            .authenticate(&format!("yx_{}_{}", k.key_id, "0".repeat(40)))?
            .is_none());
        store.revoke_key(&k.key_id, now)?;
        authz.refresh(|| Ok(store.keys(None)?))?;
        assert!(authz.authenticate(&late)?.is_none());
        // A revocation in this process takes effect at once.
        authz.key_revoked(&early["yx_".len()..15], now)?;
        assert!(authz.authenticate(&early)?.is_none());
        // Consents: in force between grant and expiry, gone when revoked.
        let g = Grant {
            merchant_id: &m1_id,
            lender: &bank,
            purpose: Purpose::PreLoan,
            granted_at: now,
            expires_at: now
                .plus_days(30)
                .ok_or_else(|| ApiError::internal("date"))?,
        };
        let Created::New(c, _) = store.grant(&g, None, |_| Ok(Vec::new()))? else {
            return Err(ApiError::internal("replayed"));
        };
        authz.granted(&c)?;
        let mid = now
            .plus_days(15)
            .ok_or_else(|| ApiError::internal("date"))?;
        assert_eq!(
            authz.valid_consent("M1", bank.id, Purpose::PreLoan, mid)?,
            Some(c.id)
        );
        assert_eq!(
            authz.valid_consent("M1", bank.id, Purpose::PostLoan, mid)?,
            None
        );
        assert_eq!(
            authz.valid_consent("M1", PrincipalId(bank.id.0 + 1), Purpose::PreLoan, mid)?,
            None
        );
        authz.revoked("M1", c.id)?;
        assert_eq!(
            authz.valid_consent("M1", bank.id, Purpose::PreLoan, mid)?,
            None
        );
        authz.dispute("M1", true)?;
        assert!(authz.has_open_dispute("M1")?);
        authz.dispute("M1", false)?;
        assert!(!authz.has_open_dispute("M1")?);
        Ok(())
    }
}
