//! What runs beside the requests: the watcher that rebuilds the profiles when new data is
//! ingested and reloads the engine when its files change, reloads themselves (serialised
//! with promotions), the memory of what lenders were last shown, the clean-up of idle
//! rate-limit state, and shutdown signals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use yuanxin_store::PrincipalId;

use crate::engine::stamp;
use crate::problem::ApiError;
use crate::{AppState, Engine};

/// What each lender was last shown of each merchant, as written to the database: lets a
/// served query skip rewriting an unchanged view. Updated only after a successful commit,
/// so it never claims more than the database holds.
#[derive(Debug, Default)]
pub struct SeenCache(Mutex<HashMap<PrincipalId, HashMap<String, SeenView>>>);

/// Grade and escrow coverage (as bits, to compare exactly).
type SeenView = (String, Option<u64>);

impl SeenCache {
    /// Whether the database already holds this view (grade, escrow coverage).
    pub fn holds(
        &self,
        lender: PrincipalId,
        merchant: &str,
        (grade, coverage): (&str, Option<f64>),
    ) -> Result<bool, ApiError> {
        let map = self
            .0
            .lock()
            .map_err(|_| ApiError::internal("seen cache poisoned"))?;
        Ok(map
            .get(&lender)
            .and_then(|m| m.get(merchant))
            .is_some_and(|(g, c)| g == grade && *c == coverage.map(f64::to_bits)))
    }

    /// Records a view the database now holds.
    pub fn remember(
        &self,
        lender: PrincipalId,
        merchant: &str,
        (grade, coverage): (&str, Option<f64>),
    ) -> Result<(), ApiError> {
        self.0
            .lock()
            .map_err(|_| ApiError::internal("seen cache poisoned"))?
            .entry(lender)
            .or_default()
            .insert(
                merchant.to_owned(),
                (grade.to_owned(), coverage.map(f64::to_bits)),
            );
        Ok(())
    }
}

/// Loads a fresh engine from the files, off the async threads, and swaps it in; one change
/// of engine at a time (reloads and promotions wait for each other).
pub(crate) async fn reload(st: &AppState) -> Result<Arc<Engine>, ApiError> {
    let _change = st.engine_change.lock().await;
    let files = st.files.clone();
    let fresh = tokio::task::spawn_blocking(move || Engine::load(&files))
        .await
        .map_err(ApiError::internal)?;
    match fresh {
        Ok(e) => {
            st.metrics.reloaded(true);
            let e = st.swap(e).await?;
            tracing::info!(target: "yuanxin::engine", model = e.model_id(), profiles = e.merchants(), "engine loaded");
            Ok(e)
        }
        Err(err) => {
            st.metrics.reloaded(false);
            tracing::warn!(target: "yuanxin::engine", error = %err, "engine load failed; the current one keeps serving");
            Err(err)
        }
    }
}

fn modified(p: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Builds the latest profiles from a ledger into `out` (atomically), as of the last day of
/// the latest business month with events or today in Shanghai if that is earlier.
pub fn build_latest_profiles(
    ledger: &std::path::Path,
    out: &std::path::Path,
) -> Result<chrono::NaiveDate, ApiError> {
    let today = chrono::Utc::now()
        .with_timezone(&yuanxin_domain::shanghai())
        .date_naive();
    Ok(yuanxin_engine::refresh_profiles(ledger, out, today)?)
}

/// Every `every`: rebuilds the profiles if new data was ingested into the ledger (when the
/// service keeps them up to date), then reloads the engine if its files changed since it
/// was loaded (or if none is loaded yet). A load that fails leaves the serving engine in
/// place and is retried at the next change.
pub(crate) async fn watch(st: AppState, every: Duration) {
    let mut seen = None;
    if let Ok(e) = st.engine() {
        seen = Some(e.stamp().clone());
    }
    // The ledger's manifest changes with every committed batch; profiles older than it
    // (or missing) are rebuilt.
    let manifest = st
        .files
        .ledger
        .as_ref()
        .map(|l| yuanxin_engine::ledger_manifest(l));
    let mut ledger_seen = match &manifest {
        Some(m) if modified(&st.files.profiles) >= modified(m) => modified(m),
        _ => None,
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let (Some(ledger), Some(m)) = (&st.files.ledger, &manifest) {
            let now = modified(m);
            if now.is_some() && now != ledger_seen {
                ledger_seen = now;
                let (ledger, out) = (ledger.clone(), st.files.profiles.clone());
                match tokio::task::spawn_blocking(move || build_latest_profiles(&ledger, &out))
                    .await
                {
                    Ok(Ok(as_of)) => {
                        tracing::info!(target: "yuanxin::engine", %as_of, "profiles rebuilt from the ledger")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(target: "yuanxin::engine", error = %e, "rebuilding the profiles failed")
                    }
                    Err(e) => {
                        tracing::warn!(target: "yuanxin::engine", error = %e, "rebuilding the profiles failed")
                    }
                }
            }
        }
        let now = stamp(&st.files);
        if seen.as_ref() == Some(&now) {
            continue;
        }
        // Wait for writers to finish: act only once the stamp holds still for a tick.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stamp(&st.files) != now {
            continue;
        }
        seen = Some(now);
        let _ = reload(&st).await;
    }
}

/// Every minute, forgets the rate-limit state of idle keys and addresses, so that memory
/// follows the clients active now, not every address ever seen.
pub(crate) async fn forget_idle_clients(st: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        st.limits.anonymous.forget_idle();
        st.limits.keys.forget_idle();
    }
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!(target: "yuanxin::http", "shutting down: draining requests in flight");
}
