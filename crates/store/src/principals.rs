//! Principals (who holds keys), their API keys, and the merchants the service has profiles
//! for (so that keys and consents can only be made for merchants that exist).

use yuanxin_domain::MerchantId;

use crate::secrets::{hex, random32, Secrets};
use crate::sql::{args, Conn, Lock, Row};
use crate::types::is_valid_code;
use crate::{
    ApiKey, Created, Idempotency, Page, PageRequest, Principal, PrincipalId, Role, Store,
    StoreError, Timestamp,
};

const PRINCIPAL: &str = "id, role, code, name, created_at";

fn principal(r: &Row, at: usize) -> Result<Principal, StoreError> {
    Ok(Principal {
        id: r.get(at)?,
        role: r.get::<String>(at + 1)?.parse()?,
        code: r.get(at + 2)?,
        name: r.get(at + 3)?,
        created_at: Timestamp::parse(&r.get::<String>(at + 4)?)?,
    })
}

fn check_code(code: &str) -> Result<(), StoreError> {
    if is_valid_code(code) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "code {code:?} must be 1–64 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// A file beside the database that every key change rewrites: the service compares its
/// identity (inode and length) on each request, so a key revoked by another process is
/// refused from the next request on, without a database read per request.
pub fn keys_stamp_path(db: &std::path::Path) -> std::path::PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-keys");
    p.into()
}

/// Principals, the merchant registry and API keys.
pub trait Principals {
    /// Adds a principal. Codes are unique within a role; a merchant principal's code is its
    /// merchant id, which must be registered.
    fn add_principal(
        &mut self,
        role: Role,
        code: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<Principal, StoreError>;

    /// A principal by role and code.
    fn principal(&self, role: Role, code: &str) -> Result<Option<Principal>, StoreError>;

    /// The principal of a merchant, created on first use if the merchant is registered.
    fn merchant_principal(
        &mut self,
        merchant_id: &MerchantId,
        now: Timestamp,
    ) -> Result<Principal, StoreError>;

    /// Principals in id order, a page at a time.
    fn principals(
        &self,
        page: PageRequest<PrincipalId>,
    ) -> Result<Page<Principal, PrincipalId>, StoreError>;

    /// Principals of one role in id order, a page at a time (the lender institutions a
    /// merchant can consent to).
    fn principals_of_role(
        &self,
        role: Role,
        page: PageRequest<PrincipalId>,
    ) -> Result<Page<Principal, PrincipalId>, StoreError>;

    /// Records merchants the service has profiles for (new ones only).
    fn register_merchants<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a str>,
        now: Timestamp,
    ) -> Result<usize, StoreError>;

    /// Whether the service has ever had a profile for this merchant.
    fn merchant_known(&self, id: &str) -> Result<bool, StoreError>;

    /// Creates a key for a principal; returns it and the full key `yx_<id>_<secret>`,
    /// which is shown once and stored only as a digest keyed with the API-key secret.
    fn create_key(
        &mut self,
        principal: &Principal,
        secrets: &Secrets,
        now: Timestamp,
        idem: Option<&Idempotency>,
        render: impl FnOnce(&(ApiKey, String)) -> Result<Vec<u8>, String>,
    ) -> Result<Created<(ApiKey, String)>, StoreError>;

    /// Revokes a key; false if there is no such active key.
    fn revoke_key(&mut self, key_id: &str, now: Timestamp) -> Result<bool, StoreError>;

    /// Revokes every key of a principal (reissuing the demo keys); returns how many.
    fn revoke_keys_of(
        &mut self,
        principal_id: PrincipalId,
        now: Timestamp,
    ) -> Result<usize, StoreError>;

    /// Keys with their principals: one key, or all.
    fn keys(&self, key_id: Option<&str>) -> Result<Vec<ApiKey>, StoreError>;

    /// Counter bumped by every key creation and revocation.
    fn keys_version(&self) -> Result<i64, StoreError>;

    /// Counter bumped by every change of keys, consents or disputes (in the transaction
    /// that makes it): a service replica that keeps them in memory compares it before
    /// each request and reloads when another replica has changed them.
    fn state_version(&self) -> Result<i64, StoreError>;
}

impl Principals for Store {
    fn add_principal(
        &mut self,
        role: Role,
        code: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<Principal, StoreError> {
        check_code(code)?;
        if name.trim().is_empty() || name.chars().count() > 200 {
            return Err(StoreError::Invalid(
                "a principal's name is 1–200 characters".into(),
            ));
        }
        if role == Role::Merchant && !self.merchant_known(code)? {
            return Err(StoreError::UnknownMerchant(code.to_owned()));
        }
        // A regulator's code names what it oversees: the city, or a district that must
        // exist (as a merchant's code must name a registered merchant).
        if role == Role::Regulator && regulator_scope(code).is_none() {
            return Err(StoreError::NotFound {
                what: "district",
                id: format!(
                    "{code} (a regulator's code is CITY or a district's code, e.g. FUTIAN)"
                ),
            });
        }
        let conflict =
            || StoreError::Conflict(format!("there is already a {role} with code {code}"));
        if self.principal(role, code)?.is_some() {
            return Err(conflict());
        }
        let id: PrincipalId = self
            .conn
            .write(Lock::State, |c| {
                // Checked again inside: another process may have added it meanwhile.
                if c.row(
                    "SELECT id FROM principals WHERE role = ?1 AND code = ?2",
                    args![role.as_str(), code],
                )?
                .is_some()
                {
                    return Err(conflict());
                }
                c.row(
                    "INSERT INTO principals (role, code, name, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                    args![role.as_str(), code, name, now.to_string()],
                )
            })?
            .ok_or_else(|| StoreError::Database("an insert returned no id".into()))?
            .get(0)?;
        Ok(Principal {
            id,
            role,
            code: code.to_owned(),
            name: name.to_owned(),
            created_at: now,
        })
    }

    fn principal(&self, role: Role, code: &str) -> Result<Option<Principal>, StoreError> {
        self.conn
            .row(
                &format!("SELECT {PRINCIPAL} FROM principals WHERE role = ?1 AND code = ?2"),
                args![role.as_str(), code],
            )?
            .map(|r| principal(&r, 0))
            .transpose()
    }

    fn merchant_principal(
        &mut self,
        merchant_id: &MerchantId,
        now: Timestamp,
    ) -> Result<Principal, StoreError> {
        match self.principal(Role::Merchant, merchant_id.as_str())? {
            Some(p) => Ok(p),
            None => self.add_principal(
                Role::Merchant,
                merchant_id.as_str(),
                merchant_id.as_str(),
                now,
            ),
        }
    }

    fn principals(
        &self,
        page: PageRequest<PrincipalId>,
    ) -> Result<Page<Principal, PrincipalId>, StoreError> {
        let items = self
            .conn
            .rows(
                &format!("SELECT {PRINCIPAL} FROM principals WHERE id > ?1 ORDER BY id LIMIT ?2"),
                args![page.cursor.unwrap_or(PrincipalId(0)), page.sql_limit()],
            )?
            .iter()
            .map(|r| principal(r, 0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |p| p.id))
    }

    fn principals_of_role(
        &self,
        role: Role,
        page: PageRequest<PrincipalId>,
    ) -> Result<Page<Principal, PrincipalId>, StoreError> {
        let items = self
            .conn
            .rows(
                &format!(
                    "SELECT {PRINCIPAL} FROM principals WHERE role = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ),
                args![
                    role.as_str(),
                    page.cursor.unwrap_or(PrincipalId(0)),
                    page.sql_limit()
                ],
            )?
            .iter()
            .map(|r| principal(r, 0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |p| p.id))
    }

    fn register_merchants<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a str>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let at = now.to_string();
        self.conn.write(Lock::State, |c| {
            let mut n = 0;
            for id in ids {
                check_code(id)?;
                n += c.exec(
                    "INSERT INTO merchants (id, registered_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
                    args![id, at],
                )?;
            }
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn merchant_known(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .row("SELECT 1 FROM merchants WHERE id = ?1", args![id])?
            .is_some())
    }

    fn create_key(
        &mut self,
        principal: &Principal,
        secrets: &Secrets,
        now: Timestamp,
        idem: Option<&Idempotency>,
        render: impl FnOnce(&(ApiKey, String)) -> Result<Vec<u8>, String>,
    ) -> Result<Created<(ApiKey, String)>, StoreError> {
        let p = principal.clone();
        let out = self.idempotent(idem, now, render, |c| {
            let r = random32()?;
            let key_id = hex(&r[..6]);
            let secret = hex(&r[6..26]);
            let digest = blake3::keyed_hash(secrets.api_key_secret(), secret.as_bytes());
            c.exec(
                "INSERT INTO api_keys (key_id, principal_id, key_digest, created_at) VALUES (?1, ?2, ?3, ?4)",
                args![key_id, p.id, digest.as_bytes(), now.to_string()],
            )?;
            bump(c, "keys_version")?;
            Ok((
                ApiKey {
                    key_id: key_id.clone(),
                    principal: p,
                    digest: Some(*digest.as_bytes()),
                    created_at: now,
                    revoked_at: None,
                },
                format!("yx_{key_id}_{secret}"),
            ))
        })?;
        self.touch_keys_stamp()?;
        Ok(out)
    }

    fn revoke_key(&mut self, key_id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let n = self.conn.write(Lock::State, |c| {
            let n = c.exec(
                "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
                args![key_id, now.to_string()],
            )?;
            bump(c, "keys_version")?;
            bump(c, "state_version")?;
            Ok(n)
        })?;
        self.touch_keys_stamp()?;
        Ok(n > 0)
    }

    fn revoke_keys_of(
        &mut self,
        principal_id: PrincipalId,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let n = self.conn.write(Lock::State, |c| {
            let n = c.exec(
                "UPDATE api_keys SET revoked_at = ?2 WHERE principal_id = ?1 AND revoked_at IS NULL",
                args![principal_id, now.to_string()],
            )?;
            bump(c, "keys_version")?;
            bump(c, "state_version")?;
            Ok(n)
        })?;
        self.touch_keys_stamp()?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn keys(&self, key_id: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        self.conn
            .rows(
                "SELECT k.key_id, k.key_digest, k.created_at, k.revoked_at, p.id, p.role, p.code, p.name, p.created_at
                 FROM api_keys k JOIN principals p ON p.id = k.principal_id
                 WHERE CAST(?1 AS TEXT) IS NULL OR k.key_id = ?1",
                args![key_id],
            )?
            .iter()
            .map(|r| {
                let digest: Vec<u8> = r.get(1)?;
                Ok(ApiKey {
                    key_id: r.get(0)?,
                    principal: principal(r, 4)?,
                    digest: <[u8; 32]>::try_from(digest.as_slice()).ok(),
                    created_at: Timestamp::parse(&r.get::<String>(2)?)?,
                    revoked_at: r
                        .get::<Option<String>>(3)?
                        .as_deref()
                        .map(Timestamp::parse)
                        .transpose()?,
                })
            })
            .collect()
    }

    fn keys_version(&self) -> Result<i64, StoreError> {
        counter(&self.conn, "keys_version")
    }

    fn state_version(&self) -> Result<i64, StoreError> {
        counter(&self.conn, "state_version")
    }
}

impl Store {
    /// Rewrites the keys stamp file (see [`keys_stamp_path`]) after a committed key change:
    /// written beside, then renamed, so its identity changes with every change. (An SQLite
    /// file's only; PostgreSQL's replicas learn of changes from the database.)
    fn touch_keys_stamp(&self) -> Result<(), StoreError> {
        let Some(db) = &self.path else {
            return Ok(());
        };
        let path = keys_stamp_path(db);
        let tmp = {
            let mut p = path.as_os_str().to_owned();
            p.push(".tmp");
            std::path::PathBuf::from(p)
        };
        let v = self.keys_version()?;
        std::fs::write(&tmp, format!("{v}\n"))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| StoreError::io(&path, e))
    }

    /// Runs `create` in one write transaction with its idempotency record: a retry with the
    /// same key and request gets the first response's body back (nothing is created
    /// again); the same key with another request is refused. Records are kept 24 hours.
    pub(crate) fn idempotent<T>(
        &mut self,
        idem: Option<&Idempotency>,
        now: Timestamp,
        render: impl FnOnce(&T) -> Result<Vec<u8>, String>,
        create: impl FnOnce(&Conn) -> Result<T, StoreError>,
    ) -> Result<Created<T>, StoreError> {
        self.conn.write(Lock::State, |c| {
            if let Some(i) = idem {
                let found = c.row(
                    "SELECT fingerprint, body FROM idempotency WHERE principal_id = ?1 AND key = ?2",
                    args![i.principal_id, i.key],
                )?;
                if let Some(r) = found {
                    let fingerprint: Vec<u8> = r.get(0)?;
                    return if fingerprint == i.fingerprint {
                        Ok(Created::Replayed(r.get(1)?))
                    } else {
                        Err(StoreError::IdempotencyMismatch)
                    };
                }
            }
            let value = create(c)?;
            bump(c, "state_version")?;
            let body = render(&value).map_err(StoreError::Damaged)?;
            if let Some(i) = idem {
                let expired = now.plus_days(-1).unwrap_or(now).to_string();
                c.exec("DELETE FROM idempotency WHERE created_at < ?1", args![expired])?;
                c.exec(
                    "INSERT INTO idempotency (principal_id, key, fingerprint, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![i.principal_id, i.key, i.fingerprint, body, now.to_string()],
                )?;
            }
            Ok(Created::New(value, body))
        })
    }
}

/// What a regulator's code gives it to see: `Some(None)` for the city (`CITY`),
/// `Some(Some(district))` for a district's code, `None` for any other code.
pub fn regulator_scope(code: &str) -> Option<Option<yuanxin_domain::District>> {
    if code == "CITY" {
        return Some(None);
    }
    code.parse::<yuanxin_domain::District>().ok().map(Some)
}

/// Adds one to a counter in `meta` (inside the caller's transaction).
pub(crate) fn bump(c: &Conn, counter: &str) -> Result<(), StoreError> {
    // The value is text on PostgreSQL, an integer on SQLite: the casts read and write both.
    c.exec(
        "INSERT INTO meta (key, value) VALUES (?1, '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT)",
        args![counter],
    )?;
    Ok(())
}

fn counter(c: &Conn, counter: &str) -> Result<i64, StoreError> {
    Ok(c.row(
        "SELECT CAST(value AS BIGINT) FROM meta WHERE key = ?1",
        args![counter],
    )?
    .map(|r| r.get(0))
    .transpose()?
    .unwrap_or_default())
}
