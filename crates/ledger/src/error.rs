use std::path::PathBuf;

use thiserror::Error;

/// Everything that can stop a ledger operation. Row-level problems are not errors: they are
/// rejections, counted in the report and written to quarantine. These are the problems that
/// stop a whole batch, which then changes nothing.
#[derive(Debug, Error)]
pub enum LedgerError {
    /// The file's name does not say which source table it holds.
    #[error("{path}: cannot tell which table this file holds; name it after a table (e.g. escrow_events.parquet or escrow_events-2024.csv) or put it in a folder named after one. Tables: {tables}")]
    UnknownTable { path: PathBuf, tables: String },
    /// Neither Parquet nor CSV.
    #[error("{path}: unsupported file type (expected .parquet or .csv)")]
    UnsupportedFormat { path: PathBuf },
    /// The file's columns do not match its table's contract.
    #[error("{path}: wrong schema for table {table}: {problem}")]
    WrongSchema {
        path: PathBuf,
        table: &'static str,
        problem: String,
    },
    /// The file cannot be read as what it claims to be (truncated Parquet, non-UTF-8 CSV, ...).
    #[error("{path}: unreadable {format} file: {problem}")]
    Unreadable {
        path: PathBuf,
        format: &'static str,
        problem: String,
    },
    /// A path given on the command line does not exist or holds no input files.
    #[error("{path}: {problem}")]
    Input { path: PathBuf, problem: String },
    /// Another process holds the ledger's lock.
    #[error("ledger {path} is locked by process {pid} (another ingest is running); if it is not, remove {path}/.lock")]
    Locked { path: PathBuf, pid: String },
    /// The manifest exists but cannot be understood.
    #[error("ledger manifest {path} is corrupt: {problem}")]
    CorruptManifest { path: PathBuf, problem: String },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Arrow or Parquet failed while writing or reading the ledger's own files.
    #[error("{path}: {problem}")]
    Storage { path: PathBuf, problem: String },
}

impl LedgerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LedgerError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn storage(path: impl Into<PathBuf>, problem: impl ToString) -> Self {
        LedgerError::Storage {
            path: path.into(),
            problem: problem.to_string(),
        }
    }
}
