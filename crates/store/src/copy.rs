//! Copying a whole store into an empty one: how a service moves from its SQLite file to
//! PostgreSQL (`yuanxin store migrate`). Every row is copied as it is — ids, the log's
//! entries with their stored nodes and signed heads — so the copy's log is the same tree,
//! its heads verify with the same key, and the checkpoint file written so far stays valid
//! for it.

use crate::sql::{args, Arg, Conn, Lock};
use crate::{QueryLog, Store, StoreError};

/// The tables, in an order that satisfies their references, with the columns copied and
/// the column that orders them.
const TABLES: &[(&str, &str, &str)] = &[
    ("merchants", "id, registered_at", "id"),
    ("principals", "id, role, code, name, created_at", "id"),
    (
        "api_keys",
        "key_id, principal_id, key_digest, created_at, revoked_at",
        "key_id",
    ),
    (
        "consents",
        "id, merchant_id, lender_id, purpose, granted_at, expires_at, revoked_at",
        "id",
    ),
    (
        "disputes",
        "id, merchant_id, subject, detail, opened_at, deadline, answer, answered_at",
        "id",
    ),
    (
        "lender_views",
        "lender_id, merchant_id, at, grade, escrow_coverage",
        "lender_id, merchant_id",
    ),
    (
        "idempotency",
        "principal_id, key, fingerprint, body, created_at",
        "principal_id, key",
    ),
];

const LOG_COLUMNS: &str = "idx, at, request_id, role, principal_code, principal_id, key_id, merchant_id, action, purpose, consent_id, outcome, model_id, response_digest, leaf_hash, nodes, head";

/// Tables whose ids come from a sequence on PostgreSQL.
const SEQUENCED: &[&str] = &["principals", "consents", "disputes"];

/// Entries copied per statement round.
const LOG_PAGE: i64 = 5_000;

/// What a copy moved: rows per table, in [`TABLES`] order, then the log's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// `(table, rows)`.
    pub tables: Vec<(&'static str, u64)>,
    /// Entries of the query log.
    pub log_entries: u64,
}

/// Copies everything in `from` into `to`, which must be empty, in one transaction of
/// `to`'s (all or nothing). The API-key secret of an old SQLite database is not copied:
/// secrets live outside databases.
pub fn copy_store(from: &Store, to: &Store) -> Result<CopyReport, StoreError> {
    let source = &from.conn;
    // One read transaction on the source: a consistent snapshot even if a service is
    // still writing to it.
    source.batch(match source.dialect() {
        crate::Dialect::Sqlite => "BEGIN",
        crate::Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    })?;
    let copied = copy_in(source, to);
    let _ = source.batch("COMMIT");
    copied?;
    let (a, b) = (from.log_size()?, to.log_size()?);
    if a > b {
        return Err(StoreError::Damaged(format!(
            "the copy's log holds {b} entries, the original's {a}"
        )));
    }
    Ok(CopyReport {
        tables: TABLES
            .iter()
            .map(|(t, _, _)| Ok((*t, count(to, t)?)))
            .collect::<Result<_, StoreError>>()?,
        log_entries: b,
    })
}

fn copy_in(source: &Conn, to: &Store) -> Result<(), StoreError> {
    to.conn.write(Lock::Log, |dest| {
        let taken: i64 = dest
            .row(
                "SELECT (SELECT count(*) FROM principals) + (SELECT count(*) FROM merchants) + (SELECT count(*) FROM log_entries)",
                &[],
            )?
            .map_or(Ok(0), |r| r.get(0))?;
        if taken > 0 {
            return Err(StoreError::Conflict(
                "the destination already holds a store: copy only into an empty one".into(),
            ));
        }
        for &(table, columns, order) in TABLES {
            let rows = source.rows(&format!("SELECT {columns} FROM {table} ORDER BY {order}"), &[])?;
            let insert = insert_sql(table, columns);
            for r in &rows {
                let cells: Vec<Arg<'_>> = r.cells().iter().map(|c| c.as_arg()).collect();
                dest.exec(&insert, &cells)?;
            }
        }
        for (key, value) in [
            ("keys_version", "CAST(value AS BIGINT)"),
            ("state_version", "CAST(value AS BIGINT)"),
            ("signed_head", "CAST(value AS TEXT)"),
        ] {
            if let Some(r) = source.row(&format!("SELECT {value} FROM meta WHERE key = ?1"), args![key])? {
                let cells: Vec<Arg<'_>> = r.cells().iter().map(|c| c.as_arg()).collect();
                let mut bound = vec![Arg::Text(key)];
                bound.extend(cells);
                dest.exec("INSERT INTO meta (key, value) VALUES (?1, ?2)", &bound)?;
            }
        }
        let log_entries = copy_log(source, dest)?;
        if dest.dialect() == crate::Dialect::Postgres {
            for table in SEQUENCED {
                dest.row(
                    &format!("SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(max(id), 0) + 1, false) FROM {table}"),
                    &[],
                )?;
            }
        }
        if log_entries != source_size(source)? {
            return Err(StoreError::Damaged(
                "the source's log changed during the copy".into(),
            ));
        }
        Ok(())
    })
}

fn source_size(source: &Conn) -> Result<u64, StoreError> {
    let n: i64 = source
        .row("SELECT count(*) FROM log_entries", &[])?
        .map_or(Ok(0), |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn count(store: &Store, table: &str) -> Result<u64, StoreError> {
    let n: i64 = store
        .conn
        .row(&format!("SELECT count(*) FROM {table}"), &[])?
        .map_or(Ok(0), |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn insert_sql(table: &str, columns: &str) -> String {
    let n = columns.split(',').count();
    let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({columns}) VALUES ({})",
        marks.join(", ")
    )
}

/// The log, a page of entries at a time (it may hold millions).
fn copy_log(source: &Conn, dest: &Conn) -> Result<u64, StoreError> {
    let insert = insert_sql("log_entries", LOG_COLUMNS);
    let mut next = 0i64;
    let mut copied = 0u64;
    loop {
        let rows = source.rows(
            &format!("SELECT {LOG_COLUMNS} FROM log_entries WHERE idx >= ?1 ORDER BY idx LIMIT ?2"),
            args![next, LOG_PAGE],
        )?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        next = last.get::<i64>(0)? + 1;
        for r in &rows {
            let cells: Vec<Arg<'_>> = r.cells().iter().map(|c| c.as_arg()).collect();
            dest.exec(&insert, &cells)?;
        }
        copied += rows.len() as u64;
    }
}
