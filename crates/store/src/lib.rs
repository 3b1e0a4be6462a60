//! The service's state: who holds keys (principals: lender institutions, merchants,
//! analysts, admins) and their API keys, merchants' consents to lenders, disputes (异议),
//! idempotency records, what each lender last saw of each merchant, and the query log.
//!
//! The query log is a Merkle tree as in Certificate Transparency (RFC 9162): every entry is
//! a leaf, every commit ends with a tree head signed by an Ed25519 key that lives outside
//! the database ([`Secrets`]), and heads are also appended to a checkpoint file outside it.
//! Whoever holds only the database file cannot rewrite, truncate or empty the log without
//! `audit verify` noticing; a merchant can check, offline, that an entry shown to it is in
//! the signed log; a lender can cite the receipt it was given.
//!
//! The store is an SQLite file (WAL, `synchronous=FULL`) by default, or a PostgreSQL
//! database that several service replicas share ([`Store::connect`]). Its rules are written
//! once, in SQL both understand (`sql.rs` is the only module that knows which one it is
//! talking to); its interface speaks in the store's own types ([`Role`], [`Purpose`],
//! [`Timestamp`], [`Principal`] …). Times are arguments: the store reads no clock.

pub mod allowance;
mod audit;
pub mod checkpoint;
mod consents;
mod copy;
mod disputes;
mod log;
pub mod merkle;
mod principals;
mod schema;
mod secrets;
mod sql;
pub mod testing;
mod types;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

pub use crate::sql::Dialect;
use crate::sql::{args, Conn};

pub use audit::{verify, verify_store, AuditReport};
pub use checkpoint::{SignedHead, SignedHeadJson};
pub use consents::{Consents, Grant};
pub use copy::{copy_store, CopyReport};
pub use disputes::{DisputeFilter, Disputes, NewDispute};
pub use log::{
    leaf_bytes, Appended, LogEntry, LogRecord, Outcome, QueryLog, Seen, STORED_FROM_LEVEL,
};
pub use principals::{keys_stamp_path, regulator_scope, Principals};
pub use secrets::{hex, random32, unhex, Secrets, SecretsSource};
pub use types::{
    is_valid_code, ApiKey, Consent, ConsentId, Created, Dispute, DisputeId, Idempotency, Page,
    PageRequest, Principal, PrincipalId, Purpose, Role, Timestamp, MAX_PAGE,
};

/// The service's state, whatever holds it. [`Store`] implements it on SQLite and on
/// PostgreSQL; the behaviour every backend must have is one test suite, generic over this
/// trait (`tests/store.rs`), run on both. What is particular to a backend stays outside
/// it: opening and upgrading, WAL checkpoints, how other processes learn of key changes.
pub trait Backend: Principals + Consents + Disputes + QueryLog {}

impl<T: Principals + Consents + Disputes + QueryLog> Backend for T {}

/// The store's traits, for callers: `use yuanxin_store::prelude::*`.
pub mod prelude {
    pub use crate::{Backend, Consents, Disputes, Principals, QueryLog};
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error.
    #[error("database: {0}")]
    Database(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// The database file does not exist (and was not to be created).
    #[error("no database at {0} (nothing was created; give the path of the service's database, or create one)")]
    Missing(PathBuf),
    /// The database was written by a newer Yuanxin.
    #[error("the database is at schema version {found}; this build knows up to {known}")]
    TooNew {
        /// The database's version.
        found: i64,
        /// This build's.
        known: i64,
    },
    /// The database predates this build and was opened read-only, so it cannot be upgraded.
    #[error("the database is at schema version {found} and needs an upgrade to {known}: start the service on it once (it upgrades in place)")]
    TooOld {
        /// The database's version.
        found: i64,
        /// This build's.
        known: i64,
    },
    /// Something the caller asked for does not exist.
    #[error("{what} {id} does not exist")]
    NotFound {
        /// The kind of thing.
        what: &'static str,
        /// Its id or code.
        id: String,
    },
    /// A merchant the store has never been told about (by the service's profiles).
    #[error("merchant {0} is unknown: no loaded profile has it")]
    UnknownMerchant(String),
    /// Creating something that exists.
    #[error("{0}")]
    Conflict(String),
    /// An argument breaks a rule; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// An idempotency key reused for a different request.
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    /// The key file or `YUANXIN_KEY` is wrong.
    #[error("secrets: {0}")]
    Secrets(String),
    /// Stored content is damaged or inconsistent.
    #[error("damaged: {0}")]
    Damaged(String),
    /// The database cannot be reached (a PostgreSQL server down or unreachable); the next
    /// call tries to connect again.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Database(e.to_string())
    }
}

/// How to open a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create it if missing, upgrade it if older (the service).
    Create,
    /// It must exist; upgrade it if older (commands that change it).
    Existing,
    /// It must exist and is not written (audit). An older schema is refused.
    ReadOnly,
}

/// A connection to the store.
#[derive(Debug)]
pub struct Store {
    pub(crate) conn: Conn,
    /// The SQLite file (none on PostgreSQL).
    pub(crate) path: Option<PathBuf>,
    /// The log's frontier as this connection last appended (only the log writer appends);
    /// checked against the database's size in every append transaction.
    pub(crate) frontier: Option<merkle::Frontier>,
}

impl Store {
    /// Opens the database at `path`.
    pub fn open(path: &Path, mode: OpenMode) -> Result<Store, StoreError> {
        let exists = path.exists();
        if !exists && mode != OpenMode::Create {
            return Err(StoreError::Missing(path.to_owned()));
        }
        if !exists {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
            }
        }
        let conn = if mode == OpenMode::ReadOnly {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?
        } else {
            let c = Connection::open(path)?;
            c.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
            )?;
            c
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut conn = conn;
        schema::migrate(&mut conn, mode == OpenMode::ReadOnly)?;
        Ok(Store {
            conn: Conn::Sqlite(conn),
            path: Some(path.to_owned()),
            frontier: None,
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db`, as
    /// libpq takes it; no TLS: a local or private network). [`OpenMode::Create`] and
    /// [`OpenMode::Existing`] bring its schema to this build's version (under an advisory
    /// lock, so replicas starting together upgrade it once); [`OpenMode::ReadOnly`] refuses
    /// a schema that is not this build's.
    pub fn connect(url: &str, mode: OpenMode) -> Result<Store, StoreError> {
        let conn = Conn::Postgres(Box::new(sql::Pg::connect(url)?));
        schema::migrate_postgres(&conn, mode)?;
        Ok(Store {
            conn,
            path: None,
            frontier: None,
        })
    }

    /// Opens the store a location names: `postgres://…` or `postgresql://…` (PostgreSQL,
    /// [`Store::connect`]), `sqlite:PATH` or a plain path (an SQLite file, [`Store::open`]).
    pub fn open_location(location: &str, mode: OpenMode) -> Result<Store, StoreError> {
        if is_postgres_url(location) {
            Store::connect(location, mode)
        } else {
            let path = location.strip_prefix("sqlite:").unwrap_or(location);
            Store::open(Path::new(path), mode)
        }
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    /// The database file (none on PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Sets how many WAL pages a commit on this connection may leave before it copies them
    /// into the database itself (SQLite's default is 1000; 0: never, another connection
    /// does it with [`Store::checkpoint_wal`]).
    pub fn set_wal_autocheckpoint(&self, pages: u32) -> Result<(), StoreError> {
        if let Conn::Sqlite(c) = &self.conn {
            c.query_row(&format!("PRAGMA wal_autocheckpoint = {pages}"), [], |_| {
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Copies what it can of the WAL into the database without waiting for or blocking
    /// anyone (a passive checkpoint); returns the WAL's frames and those copied.
    pub fn checkpoint_wal(&self) -> Result<(i64, i64), StoreError> {
        match &self.conn {
            Conn::Sqlite(c) => Ok(c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })?),
            Conn::Postgres(_) => Ok((0, 0)),
        }
    }

    /// Checks the database answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn
            .row("SELECT count(*) FROM principals WHERE id < 0", &[])?;
        Ok(())
    }

    pub(crate) fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .conn
            .row("SELECT value FROM meta WHERE key = ?1", args![key])?
        {
            Some(r) => r.get(0),
            None => Ok(None),
        }
    }

    /// The API-key secret an older database kept inside itself, if it still does: the
    /// service moves it to the key file on first start, then calls
    /// [`Store::forget_legacy_secret`].
    pub fn legacy_secret(&self) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(self
            .meta("key_secret")?
            .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok()))
    }

    /// Removes the in-database API-key secret of an older database (once the key file
    /// holds it).
    pub fn forget_legacy_secret(&self) -> Result<(), StoreError> {
        self.conn
            .exec("DELETE FROM meta WHERE key = 'key_secret'", &[])?;
        Ok(())
    }
}

/// Whether a database location is a PostgreSQL URL (`postgres://` or `postgresql://`).
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The default places of the key file and the checkpoint file for a database: beside it,
/// `yuanxin.sqlite` → `yuanxin.key` and `yuanxin.checkpoints`.
pub fn beside(db: &Path, extension: &str) -> PathBuf {
    db.with_extension(extension)
}
