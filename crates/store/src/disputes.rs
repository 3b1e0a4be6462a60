//! Disputes (异议): a merchant's objection to its information, answered by the platform.

use crate::prelude::*;
use rusqlite::{params, Row};
use yuanxin_domain::MerchantId;

use crate::{
    Created, Dispute, DisputeId, Idempotency, Page, PageRequest, Store, StoreError, Timestamp,
};

const DISPUTE: &str =
    "id, merchant_id, subject, detail, opened_at, deadline, answer, answered_at FROM disputes";

type DisputeRow = (
    DisputeId,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn row(r: &Row) -> rusqlite::Result<DisputeRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn dispute(
    (id, merchant_id, subject, detail, opened, deadline, answer, answered): DisputeRow,
) -> Result<Dispute, StoreError> {
    Ok(Dispute {
        id,
        merchant_id: crate::types::stored_merchant(&merchant_id)?,
        subject,
        detail,
        opened_at: Timestamp::parse(&opened)?,
        deadline: Timestamp::parse(&deadline)?,
        answer,
        answered_at: answered.as_deref().map(Timestamp::parse).transpose()?,
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
        self.idempotent(idem, now, render, |tx| {
            tx.prepare_cached(
                "INSERT INTO disputes (merchant_id, subject, detail, opened_at, deadline) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![merchant_id.as_str(), subject, detail, now.to_string(), deadline.to_string()])?;
            Ok(Dispute {
                id: DisputeId(tx.last_insert_rowid()),
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
            DisputeFilter::Merchant(m) => self
                .conn
                .prepare_cached(&format!(
                    "SELECT {DISPUTE} WHERE merchant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ))?
                .query_map(params![m.as_str(), after, limit], row)?
                .collect::<Result<Vec<_>, _>>()?,
            DisputeFilter::All => self
                .conn
                .prepare_cached(&format!("SELECT {DISPUTE} WHERE id > ?1 ORDER BY id LIMIT ?2"))?
                .query_map(params![after, limit], row)?
                .collect::<Result<Vec<_>, _>>()?,
            DisputeFilter::OverdueAt(now) => self
                .conn
                .prepare_cached(&format!(
                    "SELECT {DISPUTE} WHERE answer IS NULL AND deadline < ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ))?
                .query_map(params![now.to_string(), after, limit], row)?
                .collect::<Result<Vec<_>, _>>()?,
        };
        let items = rows
            .into_iter()
            .map(dispute)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |d| d.id))
    }

    fn answer_dispute(
        &self,
        id: DisputeId,
        answer: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "UPDATE disputes SET answer = ?2, answered_at = ?3 WHERE id = ?1 AND answer IS NULL RETURNING merchant_id",
                params![id, answer, now.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn open_disputes(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT merchant_id, count(*) FROM disputes WHERE answer IS NULL GROUP BY merchant_id",
        )?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}
