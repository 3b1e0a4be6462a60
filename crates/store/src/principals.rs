//! Principals (who holds keys), their API keys, and the merchants the service has profiles
//! for (so that keys and consents can only be made for merchants that exist).

use rusqlite::{params, OptionalExtension, Row, Transaction};
use yuanxin_domain::MerchantId;

use crate::secrets::{hex, random32, Secrets};
use crate::types::is_valid_code;
use crate::{
    ApiKey, Created, Idempotency, Page, PageRequest, Principal, PrincipalId, Role, Store,
    StoreError, Timestamp,
};

const PRINCIPAL: &str = "id, role, code, name, created_at";

fn principal(
    r: &Row,
    at: usize,
) -> rusqlite::Result<(PrincipalId, String, String, String, String)> {
    Ok((
        r.get(at)?,
        r.get(at + 1)?,
        r.get(at + 2)?,
        r.get(at + 3)?,
        r.get(at + 4)?,
    ))
}

fn to_principal(
    (id, role, code, name, created): (PrincipalId, String, String, String, String),
) -> Result<Principal, StoreError> {
    Ok(Principal {
        id,
        role: role.parse()?,
        code,
        name,
        created_at: Timestamp::parse(&created)?,
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
        if self.principal(role, code)?.is_some() {
            return Err(StoreError::Conflict(format!(
                "there is already a {role} with code {code}"
            )));
        }
        self.conn.execute(
            "INSERT INTO principals (role, code, name, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![role.as_str(), code, name, now.to_string()],
        )?;
        Ok(Principal {
            id: PrincipalId(self.conn.last_insert_rowid()),
            role,
            code: code.to_owned(),
            name: name.to_owned(),
            created_at: now,
        })
    }

    fn principal(&self, role: Role, code: &str) -> Result<Option<Principal>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {PRINCIPAL} FROM principals WHERE role = ?1 AND code = ?2"
            ))?
            .query_row(params![role.as_str(), code], |r| principal(r, 0))
            .optional()?
            .map(to_principal)
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
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {PRINCIPAL} FROM principals WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = st
            .query_map(
                params![page.cursor.unwrap_or(PrincipalId(0)), page.sql_limit()],
                |r| principal(r, 0),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let items = rows
            .into_iter()
            .map(to_principal)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |p| p.id))
    }

    fn principals_of_role(
        &self,
        role: Role,
        page: PageRequest<PrincipalId>,
    ) -> Result<Page<Principal, PrincipalId>, StoreError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {PRINCIPAL} FROM principals WHERE role = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))?;
        let rows = st
            .query_map(
                params![
                    role.as_str(),
                    page.cursor.unwrap_or(PrincipalId(0)),
                    page.sql_limit()
                ],
                |r| principal(r, 0),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let items = rows
            .into_iter()
            .map(to_principal)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |p| p.id))
    }

    fn register_merchants<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a str>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO merchants (id, registered_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
            )?;
            let at = now.to_string();
            for id in ids {
                check_code(id)?;
                n += st.execute(params![id, at])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    fn merchant_known(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM merchants WHERE id = ?1")?
            .query_row([id], |_| Ok(()))
            .optional()?
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
        let out = self.idempotent(idem, now, render, |tx| {
            let r = random32()?;
            let key_id = hex(&r[..6]);
            let secret = hex(&r[6..26]);
            let digest = blake3::keyed_hash(secrets.api_key_secret(), secret.as_bytes());
            tx.execute(
                "INSERT INTO api_keys (key_id, principal_id, key_digest, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key_id, p.id, digest.as_bytes().to_vec(), now.to_string()],
            )?;
            bump_keys_version(tx)?;
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
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
            params![key_id, now.to_string()],
        )?;
        bump_keys_version(&tx)?;
        tx.commit()?;
        self.touch_keys_stamp()?;
        Ok(n > 0)
    }

    fn revoke_keys_of(
        &mut self,
        principal_id: PrincipalId,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE principal_id = ?1 AND revoked_at IS NULL",
            params![principal_id, now.to_string()],
        )?;
        bump_keys_version(&tx)?;
        tx.commit()?;
        self.touch_keys_stamp()?;
        Ok(n)
    }

    fn keys(&self, key_id: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT k.key_id, k.key_digest, k.created_at, k.revoked_at, p.id, p.role, p.code, p.name, p.created_at
             FROM api_keys k JOIN principals p ON p.id = k.principal_id WHERE ?1 IS NULL OR k.key_id = ?1",
        )?;
        let rows = st
            .query_map(params![key_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    principal(r, 4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(key_id, digest, created, revoked, p)| {
                Ok(ApiKey {
                    key_id,
                    principal: to_principal(p)?,
                    digest: <[u8; 32]>::try_from(digest.as_slice()).ok(),
                    created_at: Timestamp::parse(&created)?,
                    revoked_at: revoked.as_deref().map(Timestamp::parse).transpose()?,
                })
            })
            .collect()
    }

    fn keys_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'keys_version'")?
            .query_row([], |r| r.get::<_, i64>(0))
            .optional()?
            .unwrap_or_default())
    }
}

impl Store {
    /// Rewrites the keys stamp file (see [`keys_stamp_path`]) after a committed key change:
    /// written beside, then renamed, so its identity changes with every change.
    fn touch_keys_stamp(&self) -> Result<(), StoreError> {
        let path = keys_stamp_path(&self.path);
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
        create: impl FnOnce(&Transaction) -> Result<T, StoreError>,
    ) -> Result<Created<T>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(i) = idem {
            let found: Option<(Vec<u8>, Vec<u8>)> = tx
                .prepare_cached(
                    "SELECT fingerprint, body FROM idempotency WHERE principal_id = ?1 AND key = ?2",
                )?
                .query_row(params![i.principal_id, i.key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((fingerprint, body)) = found {
                return if fingerprint == i.fingerprint {
                    Ok(Created::Replayed(body))
                } else {
                    Err(StoreError::IdempotencyMismatch)
                };
            }
        }
        let value = create(&tx)?;
        let body = render(&value).map_err(StoreError::Damaged)?;
        if let Some(i) = idem {
            let expired = now.plus_days(-1).unwrap_or(now).to_string();
            tx.prepare_cached("DELETE FROM idempotency WHERE created_at < ?1")?
                .execute([expired])?;
            tx.prepare_cached(
                "INSERT INTO idempotency (principal_id, key, fingerprint, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                i.principal_id,
                i.key,
                i.fingerprint.to_vec(),
                body,
                now.to_string()
            ])?;
        }
        tx.commit()?;
        Ok(Created::New(value, body))
    }
}

fn bump_keys_version(tx: &Transaction) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('keys_version', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1",
        [],
    )?;
    Ok(())
}
