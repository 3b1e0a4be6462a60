//! Merchants' consents to lender institutions, and what each lender last saw of each
//! merchant (for early-warning alerts).

use crate::prelude::*;
use yuanxin_domain::MerchantId;

use crate::log::Seen;
use crate::sql::{args, Lock, Row};
use crate::types::stored_merchant;
use crate::{
    Consent, ConsentId, Created, Idempotency, Page, PageRequest, Principal, PrincipalId, Purpose,
    Role, Store, StoreError, Timestamp,
};

const CONSENT: &str = "c.id, c.merchant_id, c.lender_id, p.code, p.name, c.purpose, c.granted_at, c.expires_at, c.revoked_at
    FROM consents c JOIN principals p ON p.id = c.lender_id";

fn consent(r: &Row) -> Result<Consent, StoreError> {
    Ok(Consent {
        id: r.get(0)?,
        merchant_id: stored_merchant(&r.get::<String>(1)?)?,
        lender_id: r.get(2)?,
        lender_code: r.get(3)?,
        lender_name: r.get(4)?,
        purpose: r.get::<String>(5)?.parse()?,
        granted_at: Timestamp::parse(&r.get::<String>(6)?)?,
        expires_at: Timestamp::parse(&r.get::<String>(7)?)?,
        revoked_at: r
            .get::<Option<String>>(8)?
            .as_deref()
            .map(Timestamp::parse)
            .transpose()?,
    })
}

/// A consent to record.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// The merchant granting it.
    pub merchant_id: &'a MerchantId,
    /// The lender institution it is granted to.
    pub lender: &'a Principal,
    /// For what.
    pub purpose: Purpose,
    /// From.
    pub granted_at: Timestamp,
    /// Until.
    pub expires_at: Timestamp,
}

/// Merchants' consents to lenders, and what each lender last saw of each merchant.
pub trait Consents {
    /// Records a consent (idempotently, with a key). The lender must be a lender principal
    /// and the merchant registered.
    fn grant(
        &mut self,
        g: &Grant<'_>,
        idem: Option<&Idempotency>,
        render: impl FnOnce(&Consent) -> Result<Vec<u8>, String>,
    ) -> Result<Created<Consent>, StoreError>;

    /// Revokes a merchant's own consent; false if it has no such active consent.
    fn revoke_consent(
        &self,
        merchant_id: &MerchantId,
        id: ConsentId,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// One consent of a merchant (revoked or not).
    fn consent_of(
        &self,
        merchant_id: &MerchantId,
        id: ConsentId,
    ) -> Result<Option<Consent>, StoreError>;

    /// A merchant's consents, oldest first, a page at a time.
    fn consents_of(
        &self,
        merchant_id: &MerchantId,
        page: PageRequest<ConsentId>,
    ) -> Result<Page<Consent, ConsentId>, StoreError>;

    /// The consents granted to a lender institution, oldest first (revoked and expired ones
    /// too, which the view marks), a page at a time.
    fn consents_held(
        &self,
        lender_id: PrincipalId,
        page: PageRequest<ConsentId>,
    ) -> Result<Page<Consent, ConsentId>, StoreError>;

    /// Every consent not revoked (expired ones too: expiry is checked at use).
    fn active_consents(&self) -> Result<Vec<Consent>, StoreError>;

    /// The consent in force for a merchant, lender and purpose at a time (the latest).
    fn valid_consent(
        &self,
        merchant_id: &MerchantId,
        lender_id: PrincipalId,
        purpose: Purpose,
        now: Timestamp,
    ) -> Result<Option<ConsentId>, StoreError>;

    /// Merchants with a consent in force to a lender for a purpose, by merchant id, a page at
    /// a time: (merchant, the latest consent in force).
    fn consenting(
        &self,
        lender_id: PrincipalId,
        purpose: Purpose,
        now: Timestamp,
        page: PageRequest<&str>,
    ) -> Result<Page<(MerchantId, ConsentId), String>, StoreError>;

    /// What a lender last saw of a merchant.
    fn last_seen(
        &self,
        lender_id: PrincipalId,
        merchant_id: &MerchantId,
    ) -> Result<Option<Seen>, StoreError>;
}

impl Consents for Store {
    fn grant(
        &mut self,
        g: &Grant<'_>,
        idem: Option<&Idempotency>,
        render: impl FnOnce(&Consent) -> Result<Vec<u8>, String>,
    ) -> Result<Created<Consent>, StoreError> {
        if g.lender.role != Role::Lender {
            return Err(StoreError::Invalid(format!(
                "{} is a {}, not a lender",
                g.lender.code, g.lender.role
            )));
        }
        if !self.merchant_known(g.merchant_id.as_str())? {
            return Err(StoreError::UnknownMerchant(g.merchant_id.to_string()));
        }
        if g.expires_at <= g.granted_at {
            return Err(StoreError::Invalid(
                "a consent must expire after it is granted".into(),
            ));
        }
        self.idempotent(idem, g.granted_at, render, |c| {
            let id: ConsentId = c
                .row(
                    "INSERT INTO consents (merchant_id, lender_id, purpose, granted_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                    args![
                        g.merchant_id.as_str(),
                        g.lender.id,
                        g.purpose.as_str(),
                        g.granted_at.to_string(),
                        g.expires_at.to_string()
                    ],
                )?
                .ok_or_else(|| StoreError::Database("an insert returned no id".into()))?
                .get(0)?;
            Ok(Consent {
                id,
                merchant_id: g.merchant_id.to_owned(),
                lender_id: g.lender.id,
                lender_code: g.lender.code.clone(),
                lender_name: g.lender.name.clone(),
                purpose: g.purpose,
                granted_at: g.granted_at,
                expires_at: g.expires_at,
                revoked_at: None,
            })
        })
    }

    fn revoke_consent(
        &self,
        merchant_id: &MerchantId,
        id: ConsentId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = self.conn.write(Lock::State, |c| {
            let n = c.exec(
                "UPDATE consents SET revoked_at = ?3 WHERE id = ?1 AND merchant_id = ?2 AND revoked_at IS NULL",
                args![id, merchant_id.as_str(), now.to_string()],
            )?;
            crate::principals::bump(c, "state_version")?;
            Ok(n)
        })?;
        Ok(n > 0)
    }

    fn consent_of(
        &self,
        merchant_id: &MerchantId,
        id: ConsentId,
    ) -> Result<Option<Consent>, StoreError> {
        self.conn
            .row(
                &format!("SELECT {CONSENT} WHERE c.merchant_id = ?1 AND c.id = ?2"),
                args![merchant_id.as_str(), id],
            )?
            .as_ref()
            .map(consent)
            .transpose()
    }

    fn consents_of(
        &self,
        merchant_id: &MerchantId,
        page: PageRequest<ConsentId>,
    ) -> Result<Page<Consent, ConsentId>, StoreError> {
        let items = self
            .conn
            .rows(
                &format!(
                    "SELECT {CONSENT} WHERE c.merchant_id = ?1 AND c.id > ?2 ORDER BY c.id LIMIT ?3"
                ),
                args![
                    merchant_id.as_str(),
                    page.cursor.unwrap_or(ConsentId(0)),
                    page.sql_limit()
                ],
            )?
            .iter()
            .map(consent)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |c| c.id))
    }

    fn consents_held(
        &self,
        lender_id: PrincipalId,
        page: PageRequest<ConsentId>,
    ) -> Result<Page<Consent, ConsentId>, StoreError> {
        let items = self
            .conn
            .rows(
                &format!(
                    "SELECT {CONSENT} WHERE c.lender_id = ?1 AND c.id > ?2 ORDER BY c.id LIMIT ?3"
                ),
                args![
                    lender_id,
                    page.cursor.unwrap_or(ConsentId(0)),
                    page.sql_limit()
                ],
            )?
            .iter()
            .map(consent)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |c| c.id))
    }

    fn active_consents(&self) -> Result<Vec<Consent>, StoreError> {
        self.conn
            .rows(
                &format!("SELECT {CONSENT} WHERE c.revoked_at IS NULL ORDER BY c.id"),
                &[],
            )?
            .iter()
            .map(consent)
            .collect()
    }

    fn valid_consent(
        &self,
        merchant_id: &MerchantId,
        lender_id: PrincipalId,
        purpose: Purpose,
        now: Timestamp,
    ) -> Result<Option<ConsentId>, StoreError> {
        self.conn
            .row(
                "SELECT id FROM consents WHERE merchant_id = ?1 AND lender_id = ?2 AND purpose = ?3 AND revoked_at IS NULL
                 AND granted_at <= ?4 AND expires_at > ?4 ORDER BY id DESC LIMIT 1",
                args![merchant_id.as_str(), lender_id, purpose.as_str(), now.to_string()],
            )?
            .map(|r| r.get(0))
            .transpose()
    }

    fn consenting(
        &self,
        lender_id: PrincipalId,
        purpose: Purpose,
        now: Timestamp,
        page: PageRequest<&str>,
    ) -> Result<Page<(MerchantId, ConsentId), String>, StoreError> {
        let items = self
            .conn
            .rows(
                "SELECT merchant_id, max(id) FROM consents WHERE lender_id = ?1 AND purpose = ?2 AND revoked_at IS NULL
                 AND granted_at <= ?3 AND expires_at > ?3 AND merchant_id > ?4 GROUP BY merchant_id ORDER BY merchant_id LIMIT ?5",
                args![
                    lender_id,
                    purpose.as_str(),
                    now.to_string(),
                    page.cursor.unwrap_or(""),
                    page.sql_limit()
                ],
            )?
            .iter()
            .map(|r| Ok((stored_merchant(&r.get::<String>(0)?)?, r.get(1)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(page.finish(items, |(m, _): &(MerchantId, ConsentId)| m.to_string()))
    }

    fn last_seen(
        &self,
        lender_id: PrincipalId,
        merchant_id: &MerchantId,
    ) -> Result<Option<Seen>, StoreError> {
        self.conn
            .row(
                "SELECT grade, escrow_coverage FROM lender_views WHERE lender_id = ?1 AND merchant_id = ?2",
                args![lender_id, merchant_id.as_str()],
            )?
            .map(|r| {
                Ok(Seen {
                    lender_id,
                    grade: r.get(0)?,
                    escrow_coverage: r.get(1)?,
                })
            })
            .transpose()
    }
}
