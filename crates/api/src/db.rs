//! The database as the async handlers use it: SQLite calls run on tokio's blocking pool,
//! never on the request threads, and query-log writes go through one writer thread that
//! commits whatever has queued up in a single durable transaction (group commit). A request
//! waits for the commit of its own entry before its response leaves, so the log write stays
//! synchronous for every request while the fsync is shared by all the requests of a batch.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::store::{LogEntry, LogRecord, Store};
use crate::ApiError;

/// Entries one commit takes at most.
const MAX_BATCH: usize = 512;
/// Entries that may wait for the writer; beyond this, requests wait to enqueue.
const QUEUE: usize = 8192;

type Job = (LogRecord, oneshot::Sender<Result<LogEntry, String>>);

/// A handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    path: PathBuf,
    store: Arc<Mutex<Store>>,
    log: mpsc::SyncSender<Job>,
}

thread_local! {
    /// Each thread's own read connection, per database file.
    static READERS: RefCell<Vec<(PathBuf, Store)>> = const { RefCell::new(Vec::new()) };
}

impl Db {
    /// Opens (creating and migrating) the database, and starts the log writer on its own
    /// connection.
    pub fn open(path: &Path) -> Result<Db, ApiError> {
        let store = Store::open(path)?;
        let writer = Store::open(path)?;
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("query-log".into())
            .spawn(move || write_log(writer, &rx))
            .map_err(|e| ApiError::Internal(format!("starting the log writer: {e}")))?;
        Ok(Db {
            path: path.to_owned(),
            store: Arc::new(Mutex::new(store)),
            log: tx,
        })
    }

    /// Runs a short indexed read (a key, a consent, a dispute flag: a few microseconds with
    /// cached statements) on this thread's own connection, inline. A hop to the blocking
    /// pool costs more than such a read, and in WAL mode readers never wait for the log
    /// writer. Anything longer goes through [`Db::call`].
    pub fn read<T>(&self, f: impl FnOnce(&Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        READERS.with(|r| {
            let mut readers = r
                .try_borrow_mut()
                .map_err(|_| ApiError::Internal("nested database read".into()))?;
            let k = match readers.iter().position(|(p, _)| *p == self.path) {
                Some(k) => k,
                None => {
                    readers.push((self.path.clone(), Store::open(&self.path)?));
                    readers.len() - 1
                }
            };
            f(&readers[k].1)
        })
    }

    /// Runs `f` on the store, on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let guard = store
                .lock()
                .map_err(|_| ApiError::Internal("database lock poisoned".into()))?;
            f(&guard)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("database task: {e}")))?
    }

    /// Runs `f` on the store on the calling thread (start-up and command-line use).
    pub fn blocking<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let guard = self
            .store
            .lock()
            .map_err(|_| ApiError::Internal("database lock poisoned".into()))?;
        f(&guard)
    }

    /// Appends an entry to the query log and returns once it is committed to disk.
    pub async fn log(&self, record: LogRecord) -> Result<LogEntry, ApiError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || ApiError::Internal("the query-log writer has stopped".into());
        match self.log.try_send((record, tx)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(job)) => {
                // The queue is full: wait for room, off the request threads.
                let sender = self.log.clone();
                tokio::task::spawn_blocking(move || sender.send(job).map_err(|_| ()))
                    .await
                    .map_err(|e| ApiError::Internal(format!("log queue: {e}")))?
                    .map_err(|_| stopped())?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        rx.await
            .map_err(|_| stopped())?
            .map_err(|e| ApiError::Internal(format!("query log: {e}")))
    }
}

impl Db {
    /// Appends several entries (a batch request's) and returns once all are committed.
    pub async fn log_many(&self, records: Vec<LogRecord>) -> Result<Vec<LogEntry>, ApiError> {
        let mut out = Vec::with_capacity(records.len());
        let mut waits = Vec::with_capacity(records.len());
        for r in records {
            let db = self.clone();
            waits.push(tokio::spawn(async move { db.log(r).await }));
        }
        for w in waits {
            out.push(w.await.map_err(|e| ApiError::Internal(e.to_string()))??);
        }
        Ok(out)
    }
}

fn write_log(mut store: Store, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (records, replies): (Vec<LogRecord>, Vec<_>) = jobs.into_iter().unzip();
        match store.log_batch(records) {
            Ok(entries) => {
                for (reply, e) in replies.into_iter().zip(entries) {
                    let _ = reply.send(Ok(e));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(why.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn record(i: usize) -> LogRecord {
        LogRecord {
            at: "2026-01-01T00:00:00+08:00".into(),
            principal: "k".into(),
            merchant_id: format!("M{i}"),
            action: "score".into(),
            purpose: "pre_loan".into(),
            consent_id: None,
            outcome: "served".into(),
            model_id: "m".into(),
            response_digest: crate::store::digest(i.to_string().as_bytes()),
            seen: None,
        }
    }

    #[test]
    fn concurrent_log_writes_form_one_intact_chain() -> Result<(), ApiError> {
        let dir = tempfile::tempdir().map_err(|e| ApiError::Internal(e.to_string()))?;
        let path = dir.path().join("db.sqlite");
        let db = Db::open(&path)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let seqs = rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..300 {
                let db = db.clone();
                tasks.push(tokio::spawn(async move { db.log(record(i)).await }));
            }
            let mut seqs = Vec::new();
            for t in tasks {
                seqs.push(t.await.map_err(|e| ApiError::Internal(e.to_string()))??.seq);
            }
            Ok::<_, ApiError>(seqs)
        })?;
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=300).collect::<Vec<i64>>(), "every entry once");
        let check = Store::open(&path)?;
        assert_eq!(check.verify()?, Ok(300));
        Ok(())
    }
}
