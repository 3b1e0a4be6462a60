//! Disputes (异议): a merchant's objection to its information, answered by the platform.

use crate::prelude::*;
use crate::sql::{args, Lock, Row};
use yuanxin_domain::MerchantId;

use crate::{
    Created, Dispute, DisputeId, Idempotency, Page, PageRequest, Store, StoreError, Timestamp,
};

const DISPUTE: &str =
    "id, merchant_id, subject, detail, opened_at, deadline, answer, answered_at FROM disputes";

fn dispute(r: &Row) -> Result<Dispute, StoreError> {
    Ok(Dispute {
        id: r.get(0)?,
        merchant_id: crate::types::stored_merchant(&r.get::<String>(1)?)?,
        subject: r.get(2)?,
        detail: r.get(3)?,
        opened_at: Timestamp::parse(&r.get::<String>(4)?)?,
        deadline: Timestamp::parse(&r.get::<String>(5)?)?,
        answer: r.get(6)?,
        answered_at: r
            .get::<Option<String>>(7)?
            .as_deref()
            .map(Timestamp::parse)
            .transpose()?,
    })
}

/// A dispute to open.
#[derive(Debug, Clone, Copy)]
pub struct NewDispute<'a> {
    /// The merchant objecting.
    pub merchant_id: &'a MerchantId,
    /// What is disputed.
    pub subject: &'a str,
    /// Why.
    pub detail: &'a str,
    /// Now.
    pub opened_at: Timestamp,
    /// Answer due by.
    pub deadline: Timestamp,
}

/// Which disputes to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeFilter<'a> {
    /// One merchant's.
    Merchant(&'a MerchantId),
    /// Everyone's.
    All,
    /// Open and past their deadline at this time.
    OverdueAt(Timestamp),
}

/// Disputes (异议): opened by merchants, answered by the platform.
pub trait Disputes {
    /// Opens a dispute (idempotently, with a key); the merchant must be registered.
    fn open_dispute(
        &mut self,
        d: &NewDispute<'_>,
        idem: Option<&Idempotency>,
        render: impl FnOnce(&Dispute) -> Result<Vec<u8>, String>,
    ) -> Result<Created<Dispute>, StoreError>;

    /// Disputes, oldest first, a page at a time.
    fn disputes(
        &self,
        filter: DisputeFilter<'_>,
        page: PageRequest<DisputeId>,
    ) -> Result<Page<Dispute, DisputeId>, StoreError>;

    /// Answers an open dispute; returns its merchant, or `None` if there is no such open
    /// dispute.
    fn answer_dispute(
        &self,
        id: DisputeId,
        answer: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError>;

    /// Merchants with open disputes, and how many each has.
    fn open_disputes(&self) -> Result<Vec<(String, u32)>, StoreError>;
}

impl Disputes for Store {
    fn open_dispute(
        &mut self,
        d: &NewDispute<'_>,
        idem: Option<&Idempotency>,
        render: impl FnOnce(&Dispute) -> Result<Vec<u8>, String>,
    ) -> Result<Created<Dispute>, StoreError> {
        let NewDispute {
            merchant_id,
            subject,
            detail,
            opened_at: now,
            deadline,
        } = *d;
        if !self.merchant_known(merchant_id.as_str())? {
            return Err(StoreError::UnknownMerchant(merchant_id.to_string()));
        }
        self.idempotent(idem, now, render, |c| {
            let id: DisputeId = c
                .row(
                    "INSERT INTO disputes (merchant_id, subject, detail, opened_at, deadline) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                    args![merchant_id.as_str(), subject, detail, now.to_string(), deadline.to_string()],
                )?
                .ok_or_else(|| StoreError::Database("an insert returned no id".into()))?
                .get(0)?;
            Ok(Dispute {
                id,
                merchant_id: merchant_id.to_owned(),
                subject: subject.to_owned(),
                detail: detail.to_owned(),
                opened_at: now,
                deadline,
                answer: None,
                answered_at: None,
            })
        })
    }

    fn disputes(
        &self,
        filter: DisputeFilter<'_>,
        page: PageRequest<DisputeId>,
    ) -> Result<Page<Dispute, DisputeId>, StoreError> {
        let after = page.cursor.unwrap_or(DisputeId(0));
        let limit = page.sql_limit();
        let rows = match filter {
            DisputeFilter::Merchant(m) => self.conn.rows(
                &format!("SELECT {DISPUTE} WHERE merchant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"),
                args![m.as_str(), after, limit],
            )?,
            DisputeFilter::All => self.conn.rows(
                &format!("SELECT {DISPUTE} WHERE id > ?1 ORDER BY id LIMIT ?2"),
                args![after, limit],
            )?,
            DisputeFilter::OverdueAt(now) => self.conn.rows(
                &format!(
                    "SELECT {DISPUTE} WHERE answer IS NULL AND deadline < ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ),
                args![now.to_string(), after, limit],
            )?,
        };
        let items = rows.iter().map(dispute).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |d| d.id))
    }

    fn answer_dispute(
        &self,
        id: DisputeId,
        answer: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        self.conn.write(Lock::State, |c| {
            let merchant = c
                .row(
                    "UPDATE disputes SET answer = ?2, answered_at = ?3 WHERE id = ?1 AND answer IS NULL RETURNING merchant_id",
                    args![id, answer, now.to_string()],
                )?
                .map(|r| r.get(0))
                .transpose()?;
            crate::principals::bump(c, "state_version")?;
            Ok(merchant)
        })
    }

    fn open_disputes(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.conn
            .rows(
                "SELECT merchant_id, count(*) FROM disputes WHERE answer IS NULL GROUP BY merchant_id",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
    }
}
