//! `yuanxin serve`, `yuanxin keys` and `yuanxin audit`: the service and its operations.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use yuanxin_api::{now_shanghai, AppState, Db, Engine, EngineFiles, ServiceConfig, Store};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Settings file (TOML; see docs/service.md). `YUANXIN_*` environment variables
    /// override it, and these flags override both.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long)]
    addr: Option<String>,
    /// Data folder: policy.toml, catalogue.toml, the database, and demo/ (built when
    /// missing). Default: data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Model registry folder (default: models).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Latest profiles to serve (default: DATA/demo/profiles-latest.parquet, built by the
    /// demo when missing).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// SQLite database (default: DATA/yuanxin.sqlite).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Keep the profiles up to date from this ledger: new ingested data rebuilds them and
    /// reloads the engine (default: DATA/demo/ledger with the demo's profiles).
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Do not issue demo keys and consent.
    #[arg(long)]
    no_demo_keys: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysCmd {
    /// Create a key; it is printed once and stored only as a keyed digest.
    Create {
        /// lender, merchant, analyst or admin.
        #[arg(long)]
        role: String,
        /// Institution (lenders: the name merchants grant consent to) or display name.
        #[arg(long)]
        name: String,
        /// The merchant of a merchant key.
        #[arg(long)]
        merchant: Option<String>,
        /// SQLite database.
        #[arg(long, default_value = "data/yuanxin.sqlite")]
        db: PathBuf,
    },
    /// Revoke a key by its id (the part after `yx_` and before the next `_`).
    Revoke {
        /// Key id.
        key_id: String,
        /// SQLite database.
        #[arg(long, default_value = "data/yuanxin.sqlite")]
        db: PathBuf,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCmd {
    /// Check the query log's hash chain: any edited, deleted or reordered entry is found.
    Verify {
        /// SQLite database.
        #[arg(long, default_value = "data/yuanxin.sqlite")]
        db: PathBuf,
    },
}

const DEMO_LENDER: &str = "ICBC (demo)";

pub fn run_serve(args: &ServeArgs, demo: &dyn Fn(&Path) -> Result<()>) -> Result<()> {
    let mut cfg = ServiceConfig::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if let Some(v) = &args.addr {
        cfg.addr.clone_from(v);
    }
    if let Some(v) = &args.data {
        cfg.data.clone_from(v);
    }
    if let Some(v) = &args.models {
        cfg.models.clone_from(v);
    }
    if args.profiles.is_some() {
        cfg.profiles.clone_from(&args.profiles);
    }
    if args.db.is_some() {
        cfg.db.clone_from(&args.db);
    }
    if args.ledger.is_some() {
        cfg.ledger.clone_from(&args.ledger);
    }
    cfg.check()?;
    if cfg.log == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(false)
            .init();
    }
    let ledger = cfg.ledger_path();
    let ledger_ready = ledger
        .as_ref()
        .is_some_and(|l| l.join("manifest.json").exists());
    if cfg.profiles.is_none() && !cfg.profiles_path().exists() && !ledger_ready {
        eprintln!(
            "no profiles at {}: building the demo city first",
            cfg.profiles_path().display()
        );
        demo(&cfg.data.join("demo"))?;
    }
    let files = EngineFiles {
        models: cfg.models.clone(),
        profiles: cfg.profiles_path(),
        policy: cfg.data.join("policy.toml"),
        catalogue: cfg.data.join("catalogue.toml"),
        ledger: ledger.filter(|_| cfg.watch_seconds > 0),
    };
    if let Some(l) = files.ledger.as_ref().filter(|_| !files.profiles.exists()) {
        eprintln!("building the latest profiles from {}", l.display());
        yuanxin_api::build_latest_profiles(l, &files.profiles)?;
    }
    // A service whose files are not there yet still starts, unready, and loads them when
    // they appear (the watcher) or on an analyst's reload.
    let engine = match Engine::load(&files) {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("not ready: {e}");
            None
        }
    };
    let db = Db::open(&cfg.db_path())?;
    let now = now_shanghai();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let no_demo_keys = args.no_demo_keys;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.addr).await.with_context(|| format!("binding {}", cfg.addr))?;
        let addr = listener.local_addr()?;
        match &engine {
            Some(e) => outln!("Yuanxin serving on http://{addr}  (model {}, {} merchants as of {})", e.model_id(), e.merchants(), e.as_of().map(|d| d.to_string()).unwrap_or_default()),
            None => outln!("Yuanxin serving on http://{addr}  (not ready: waiting for the model and profiles)"),
        }
        if !no_demo_keys {
            if let Some(merchant) = engine.as_ref().and_then(|e| e.merchant_ids().next().cloned()) {
                db.blocking(|store| {
                    for name in [DEMO_LENDER, "analyst (demo)", "merchant (demo)"] {
                        store.revoke_named(name, &now)?;
                    }
                    let (_, lender) = store.create_key("lender", DEMO_LENDER, None, &now)?;
                    let (_, merchant_key) = store.create_key("merchant", "merchant (demo)", Some(&merchant), &now)?;
                    let (_, analyst) = store.create_key("analyst", "analyst (demo)", None, &now)?;
                    if store.valid_consent(&merchant, DEMO_LENDER, "pre_loan", &now)?.is_none() {
                        let expires = (chrono::Utc::now() + chrono::Duration::days(365)).with_timezone(&yuanxin_domain::shanghai()).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
                        store.grant(&merchant, DEMO_LENDER, "pre_loan", &now, &expires)?;
                    }
                    outln!("demo lender key ({DEMO_LENDER}): {lender}");
                    outln!("demo merchant key ({merchant}, consents to {DEMO_LENDER} for pre_loan): {merchant_key}");
                    outln!("demo analyst key: {analyst}");
                    outln!("demo merchant: {merchant}");
                    Ok(())
                })?;
            }
        }
        let state = AppState::new(cfg, files, engine, db)?;
        yuanxin_api::serve(listener, state).await?;
        Ok::<(), anyhow::Error>(())
    })
}

pub fn run_keys(cmd: &KeysCmd) -> Result<()> {
    let now = now_shanghai();
    match cmd {
        KeysCmd::Create {
            role,
            name,
            merchant,
            db,
        } => {
            let store = Store::open(db)?;
            let (p, key) = store.create_key(role, name, merchant.as_deref(), &now)?;
            outln!("{key}");
            eprintln!(
                "key {} for {} {} (shown once; stored as a keyed digest)",
                p.key_id, p.role, p.name
            );
        }
        KeysCmd::Revoke { key_id, db } => {
            if !Store::open(db)?.revoke_key(key_id, &now)? {
                bail!("no active key {key_id}");
            }
            outln!("revoked {key_id}");
        }
    }
    Ok(())
}

pub fn run_audit(cmd: &AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify { db } => match Store::open(db)?.verify()? {
            Ok(n) => outln!("query log intact: {n} entries"),
            Err(why) => bail!("query log damaged: {why}"),
        },
    }
    Ok(())
}
