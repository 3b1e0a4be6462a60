//! How the handlers reach the store. Short indexed reads run inline on the request thread,
//! on that thread's own read connection; longer reads (lists, proofs) run on the blocking
//! pool, also on per-thread read connections: in WAL mode readers never wait for a writer
//! and never hold one up, so a long list cannot delay a consent or a revocation. Writes
//! other than the log go through one writer connection on the blocking pool.
//!
//! On PostgreSQL (a `postgres://` URL for the database) reads take a connection from a
//! small pool instead, on the calling thread with tokio told that it blocks (the client
//! is synchronous); several service processes then share the database, and the log's
//! appends from all of them form one sequence (the store's advisory lock).
//!
//! Query-log entries go through one writer thread that commits whatever has queued up in
//! a single durable transaction ending with a signed tree head (group commit). A request
//! waits for the commit of its own entries and gets that head back as its receipt. The
//! same thread appends a head to the checkpoint file every `checkpoint_every` entries, at
//! least every `checkpoint_seconds` while entries arrive, and when asked at shutdown.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use yuanxin_store::prelude::*;

use tokio::sync::oneshot;
use yuanxin_store::{
    checkpoint, Dialect, LogRecord, OpenMode, Secrets, SecretsSource, SignedHead, Store,
    StoreError, Timestamp,
};

use crate::problem::ApiError;

/// Records one commit takes at most.
const MAX_BATCH: usize = 512;
/// Jobs that may wait for the writer; beyond this, requests wait to enqueue.
const QUEUE: usize = 8192;

/// What a request gets back from the log: the signed head of the commit that holds its
/// entries, with the receipt header made from it once per commit.
#[derive(Debug)]
pub struct Receipt {
    /// The signed head.
    pub head: SignedHead,
    /// `yuanxin-signed-head`: the head as JSON.
    pub header: axum::http::HeaderValue,
}

impl Receipt {
    /// The receipt of a head: its header made once, for every response that carries it.
    pub fn of(head: SignedHead) -> Receipt {
        // Hex, digits and an RFC 3339 time: always a valid header value.
        let header = serde_json::to_string(&head.to_json())
            .ok()
            .and_then(|j| axum::http::HeaderValue::from_str(&j).ok())
            .unwrap_or_else(|| axum::http::HeaderValue::from_static("{}"));
        Receipt { head, header }
    }
}

/// An append's outcome; a failure says whether the database was unreachable (503) or
/// something else went wrong (500).
type Reply = Result<(u64, Arc<Receipt>), (bool, String)>;

/// PostgreSQL read connections kept idle for reuse.
const IDLE_READERS: usize = 16;

enum Job {
    Append(Vec<LogRecord>, oneshot::Sender<Reply>),
    Checkpoint(oneshot::Sender<Result<SignedHead, String>>),
}

/// Where the log's files live and how often heads go to the checkpoint file.
#[derive(Debug, Clone)]
pub struct LogFiles {
    /// The checkpoint file.
    pub checkpoints: PathBuf,
    /// Entries between checkpoints.
    pub every: u64,
    /// Seconds between checkpoints while entries arrive.
    pub seconds: u64,
}

/// A handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    /// The SQLite file, or the PostgreSQL URL (as a path).
    path: PathBuf,
    dialect: Dialect,
    /// PostgreSQL's idle read connections.
    readers: Arc<Mutex<Vec<Store>>>,
    writer: Arc<Mutex<Store>>,
    log: mpsc::SyncSender<Job>,
    /// Held (never sent on) to keep the WAL checkpointer running (SQLite).
    _checkpointer: Option<mpsc::Sender<()>>,
    secrets: Arc<Secrets>,
    latest: Arc<RwLock<Arc<Receipt>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Append(r, _) => write!(f, "Append({} records)", r.len()),
            Job::Checkpoint(_) => f.write_str("Checkpoint"),
        }
    }
}

thread_local! {
    /// Each thread's own read connections, per database file.
    static READERS: RefCell<Vec<(PathBuf, Store)>> = const { RefCell::new(Vec::new()) };
}

/// Opens a store by the path the settings give: an SQLite file, or a PostgreSQL URL.
pub fn open_at(path: &Path, mode: OpenMode) -> Result<Store, ApiError> {
    Ok(Store::open_location(&path.to_string_lossy(), mode)?)
}

/// Runs `f`, which may block on a PostgreSQL round trip, telling tokio first if this is
/// one of its worker threads (the synchronous client may not run its calls on one).
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Opens the database and its secrets for a process that will change it: upgrades an older
/// database, moves an older database's in-file API-key secret to the key file, and signs
/// a head for the log as it stands.
pub fn open_store(
    path: &Path,
    mode: OpenMode,
    secrets: &SecretsSource,
) -> Result<(Store, Secrets), ApiError> {
    let store = open_at(path, mode)?;
    let legacy = store.legacy_secret()?;
    let (secrets, _) = Secrets::load(secrets, legacy)?;
    if legacy.is_some() {
        store.forget_legacy_secret()?;
    }
    Ok((store, secrets))
}

fn stopped() -> ApiError {
    ApiError::internal("the query-log writer has stopped")
}

impl Db {
    /// Opens (creating or upgrading) the database, signs a head for the log as it stands,
    /// writes it to the checkpoint file if the file does not have it yet, and starts the log
    /// writer on its own connection.
    pub fn open(path: &Path, secrets: &SecretsSource, files: LogFiles) -> Result<Db, ApiError> {
        let (mut writer, secrets) = open_store(path, OpenMode::Create, secrets)?;
        let dialect = writer.dialect();
        let head = writer.seal(&secrets, Timestamp::now())?;
        if checkpoint::last(&files.checkpoints)?.as_ref() != Some(&head) {
            checkpoint::append(&files.checkpoints, &head)?;
        }
        let log_store = open_at(path, OpenMode::Existing)?;
        let alive = match dialect {
            Dialect::Sqlite => Some(Self::start_wal_checkpointer(path, &log_store)?),
            Dialect::Postgres => None,
        };
        let secrets = Arc::new(secrets);
        let latest = Arc::new(RwLock::new(Arc::new(Receipt::of(head))));
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (s, l) = (Arc::clone(&secrets), Arc::clone(&latest));
        std::thread::Builder::new()
            .name("query-log".into())
            .spawn(move || write_log(log_store, &s, &l, &files, &rx))
            .map_err(|e| ApiError::internal(format!("starting the log writer: {e}")))?;
        Ok(Db {
            path: path.to_owned(),
            dialect,
            readers: Arc::new(Mutex::new(Vec::new())),
            writer: Arc::new(Mutex::new(writer)),
            log: tx,
            _checkpointer: alive,
            secrets,
            latest,
        })
    }

    /// SQLite: the log writer's commits never copy the WAL into the database themselves
    /// (that would put megabytes of writes and an fsync on some requests' critical path);
    /// a thread of its own does it, passively, every quarter second. It stops when the
    /// returned sender (held by every handle) is dropped.
    fn start_wal_checkpointer(
        path: &Path,
        log_store: &Store,
    ) -> Result<mpsc::Sender<()>, ApiError> {
        log_store.set_wal_autocheckpoint(0)?;
        let wal = Store::open(path, OpenMode::Existing)?;
        let (alive, gone) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    gone.recv_timeout(Duration::from_millis(250))
                {
                    if let Err(e) = wal.checkpoint_wal() {
                        tracing::warn!(target: "yuanxin::log", error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| ApiError::internal(format!("starting the WAL checkpointer: {e}")))?;
        Ok(alive)
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The secrets.
    pub fn secrets(&self) -> &Arc<Secrets> {
        &self.secrets
    }

    /// The receipt of the log as it stands: the latest signed head (after the last commit).
    pub fn receipt(&self) -> Result<Arc<Receipt>, ApiError> {
        self.latest
            .read()
            .map(|r| Arc::clone(&r))
            .map_err(|_| ApiError::internal("head lock poisoned"))
    }

    /// The latest signed head.
    pub fn head(&self) -> Result<SignedHead, ApiError> {
        Ok(self.receipt()?.head.clone())
    }

    /// Runs a short indexed read inline on this thread's own read connection. A hop to the
    /// blocking pool costs more than such a read. Anything longer goes through
    /// [`Db::read_long`].
    pub fn read<T>(&self, f: impl FnOnce(&Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        if self.dialect == Dialect::Postgres {
            return blocking(|| {
                let idle = self
                    .readers
                    .lock()
                    .map_err(|_| ApiError::internal("reader pool lock poisoned"))?
                    .pop();
                let store = match idle {
                    Some(s) => s,
                    None => open_at(&self.path, OpenMode::Existing)?,
                };
                let out = f(&store);
                if let Ok(mut idle) = self.readers.lock() {
                    if idle.len() < IDLE_READERS {
                        idle.push(store);
                    }
                }
                out
            });
        }
        READERS.with(|r| {
            let mut readers = r
                .try_borrow_mut()
                .map_err(|_| ApiError::internal("nested database read"))?;
            let k = match readers.iter().position(|(p, _)| *p == self.path) {
                Some(k) => k,
                None => {
                    readers.push((
                        self.path.clone(),
                        Store::open(&self.path, OpenMode::Existing)?,
                    ));
                    readers.len() - 1
                }
            };
            f(&readers[k].1)
        })
    }

    /// Runs a longer read on the blocking pool, on that thread's read connection.
    pub async fn read_long<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read(f))
            .await
            .map_err(|e| ApiError::internal(format!("database task: {e}")))?
    }

    /// Runs a write on the writer connection, on the blocking pool.
    pub async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store, &Secrets) -> Result<T, ApiError> + Send + 'static,
    {
        let (store, secrets) = (Arc::clone(&self.writer), Arc::clone(&self.secrets));
        tokio::task::spawn_blocking(move || {
            let mut guard = store
                .lock()
                .map_err(|_| ApiError::internal("database lock poisoned"))?;
            f(&mut guard, &secrets)
        })
        .await
        .map_err(|e| ApiError::internal(format!("database task: {e}")))?
    }

    /// Runs a write on the calling thread (start-up).
    pub fn write_now<T>(
        &self,
        f: impl FnOnce(&mut Store, &Secrets) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        blocking(|| {
            let mut guard = self
                .writer
                .lock()
                .map_err(|_| ApiError::internal("database lock poisoned"))?;
            f(&mut guard, &self.secrets)
        })
    }

    /// Appends entries to the query log and returns once they are committed to disk: the
    /// index of the first (the others follow it) and the receipt of the commit.
    pub async fn append(&self, records: Vec<LogRecord>) -> Result<(u64, Arc<Receipt>), ApiError> {
        let (tx, rx) = oneshot::channel();
        match self.log.try_send(Job::Append(records, tx)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(job)) => {
                // The queue is full: wait for room, off the request threads.
                let sender = self.log.clone();
                tokio::task::spawn_blocking(move || sender.send(job).map_err(|_| ()))
                    .await
                    .map_err(|e| ApiError::internal(format!("log queue: {e}")))?
                    .map_err(|()| stopped())?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        rx.await
            .map_err(|_| stopped())?
            .map_err(|(unavailable, e)| {
                if unavailable {
                    ApiError::unavailable(format!("query log: {e}"))
                } else {
                    ApiError::internal(format!("query log: {e}"))
                }
            })
    }

    /// Writes the latest head to the checkpoint file now (at shutdown).
    pub async fn checkpoint(&self) -> Result<SignedHead, ApiError> {
        let (tx, rx) = oneshot::channel();
        let sender = self.log.clone();
        tokio::task::spawn_blocking(move || sender.send(Job::Checkpoint(tx)).map_err(|_| ()))
            .await
            .map_err(|e| ApiError::internal(format!("log queue: {e}")))?
            .map_err(|()| stopped())?;
        rx.await
            .map_err(|_| stopped())?
            .map_err(|e| ApiError::internal(format!("checkpoint: {e}")))
    }
}

/// The log writer: group commits, receipts, checkpoints.
fn write_log(
    mut store: Store,
    secrets: &Secrets,
    latest: &RwLock<Arc<Receipt>>,
    files: &LogFiles,
    rx: &mpsc::Receiver<Job>,
) {
    let head = || latest.read().ok().map(|r| r.head.clone());
    let mut written = head().map_or(0, |h| h.tree_size);
    let mut last_write = Instant::now();
    let every = files.every.max(1);
    let period = Duration::from_secs(files.seconds.max(1));
    let checkpoint = |store_head: &SignedHead, written: &mut u64, last: &mut Instant| {
        let r = checkpoint::append(&files.checkpoints, store_head);
        if r.is_ok() {
            *written = store_head.tree_size;
            *last = Instant::now();
        }
        r
    };
    loop {
        let first = match rx.recv_timeout(period) {
            Ok(j) => j,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(h) = head() {
                    if h.tree_size > written {
                        if let Err(e) = checkpoint(&h, &mut written, &mut last_write) {
                            tracing::error!(target: "yuanxin::log", error = %e, "writing a checkpoint failed");
                        }
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut appends: Vec<(Vec<LogRecord>, oneshot::Sender<Reply>)> = Vec::new();
        let mut flushes = Vec::new();
        let mut n = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append(r, reply) => {
                    n += r.len();
                    appends.push((r, reply));
                }
                Job::Checkpoint(reply) => flushes.push(reply),
            }
            if n < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !appends.is_empty() {
            let sizes: Vec<usize> = appends.iter().map(|(r, _)| r.len()).collect();
            let (records, replies): (Vec<Vec<LogRecord>>, Vec<_>) = appends.into_iter().unzip();
            let all: Vec<LogRecord> = records.into_iter().flatten().collect();
            match store.append(all, secrets, Timestamp::now()) {
                Ok(done) => {
                    let receipt = Arc::new(Receipt::of(done.head));
                    if let Ok(mut g) = latest.write() {
                        *g = Arc::clone(&receipt);
                    }
                    let h = &receipt.head;
                    let mut first = done.first;
                    for (reply, k) in replies.into_iter().zip(sizes) {
                        let _ = reply.send(Ok((first, Arc::clone(&receipt))));
                        first += k as u64;
                    }
                    if h.tree_size >= written + every
                        || (h.tree_size > written && last_write.elapsed() >= period)
                    {
                        if let Err(e) = checkpoint(h, &mut written, &mut last_write) {
                            tracing::error!(target: "yuanxin::log", error = %e, "writing a checkpoint failed");
                        }
                    }
                }
                Err(e) => {
                    let unavailable = matches!(e, StoreError::Unavailable(_));
                    let why = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err((unavailable, why.clone())));
                    }
                }
            }
        }
        for reply in flushes {
            let r = head()
                .ok_or_else(|| "head lock poisoned".to_owned())
                .and_then(|h| {
                    if h.tree_size > written {
                        checkpoint(&h, &mut written, &mut last_write).map_err(|e| e.to_string())?;
                    }
                    Ok(h)
                });
            let _ = reply.send(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yuanxin_store::{Outcome, Principal, Purpose, Role};

    fn record(p: &Principal, i: usize) -> LogRecord {
        LogRecord {
            at: Timestamp::now(),
            request_id: format!("r{i}").into(),
            principal: std::sync::Arc::new(p.clone()),
            key_id: "k".into(),
            merchant_id: yuanxin_domain::MerchantId::parse(&format!("M{i}")).unwrap(),
            action: "score",
            purpose: Purpose::PreLoan,
            consent_id: None,
            outcome: Outcome::Served,
            model_id: "m".into(),
            response_digest: crate::digest(i.to_string().as_bytes()).into(),
            seen: None,
        }
    }

    #[test]
    fn concurrent_appends_form_one_log_with_receipts_and_checkpoints() -> Result<(), ApiError> {
        let dir = tempfile::tempdir().map_err(ApiError::internal)?;
        let path = dir.path().join("db.sqlite");
        let files = LogFiles {
            checkpoints: dir.path().join("db.checkpoints"),
            every: 100,
            seconds: 3600,
        };
        let src = SecretsSource::File(dir.path().join("db.key"));
        let db = Db::open(&path, &src, files.clone())?;
        let bank = db.write_now(|s, _| {
            Ok(s.add_principal(Role::Lender, "B", "Bank", Timestamp::now())?)
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .map_err(ApiError::internal)?;
        let receipts = rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..300 {
                let (db, bank) = (db.clone(), bank.clone());
                tasks.push(tokio::spawn(async move {
                    db.append(vec![record(&bank, i)]).await
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.map_err(ApiError::internal)??);
            }
            db.checkpoint().await?;
            Ok::<_, ApiError>(out)
        })?;
        let mut idx: Vec<u64> = receipts.iter().map(|(i, _)| *i).collect();
        idx.sort_unstable();
        assert_eq!(idx, (0..300).collect::<Vec<u64>>(), "every entry once");
        let key = db.secrets().verifying_key();
        for (i, r) in &receipts {
            assert!(
                r.head.tree_size > *i && r.head.verify(&key),
                "a receipt covers its entry"
            );
        }
        // A head at the start, then one whenever a commit passes 100 entries since the last
        // (commits are batched, so a gap is at most 100 plus one batch), and at the end.
        let heads = checkpoint::read_all(&files.checkpoints)?;
        let sizes: Vec<u64> = heads.iter().map(|h| h.tree_size).collect();
        assert_eq!(
            (sizes.first(), sizes.last()),
            (Some(&0), Some(&300)),
            "{sizes:?}"
        );
        assert!(
            sizes
                .windows(2)
                .all(|w| w[0] < w[1] && w[1] - w[0] <= 100 + MAX_BATCH as u64),
            "{sizes:?}"
        );
        let report =
            yuanxin_store::verify(&path, &files.checkpoints, &key)?.map_err(ApiError::internal)?;
        assert_eq!(report.entries, 300);
        Ok(())
    }
}
