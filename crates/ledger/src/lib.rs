//! The source-data contract and the ledger.
//!
//! `schema` defines every source table the credit platform receives, as Arrow schemas with
//! validation rules; `ingest` turns Parquet or CSV deliveries into the ledger, accounting
//! for every row; `store` is the only code that knows the ledger's on-disk layout.

mod compact;
mod convert;
mod error;
mod ingest;
mod input;
mod reason;
mod rules;
pub mod schema;
mod store;

pub use compact::{
    compact, CompactOptions, CompactReport, DEFAULT_RETAIN_MINUTES, MAX_RETAIN_MINUTES,
};
pub use error::LedgerError;
pub use ingest::{
    ingest, quarantine_schema, Counts, FileReport, IndexReport, IngestOptions, IngestReport,
    DEFAULT_CLOCK_SKEW_MINUTES, DEFAULT_MEMORY_LIMIT_MIB, MAX_CLOCK_SKEW_MINUTES,
    MAX_MEMORY_LIMIT_MIB, MAX_THREADS, MIN_MEMORY_LIMIT_MIB,
};
pub use input::{discover, InputFile, InputFormat};
pub use reason::{Reason, Rejection};
pub use schema::{ColType, Column, Table};
pub use store::{
    ledger_writer_properties, writer_properties, BatchEntry, FileEntry, FileReader, IndexRun,
    InputEntry, Ledger, Manifest, RetiredFile,
};
