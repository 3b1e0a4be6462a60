//! `yuanxin serve`, `yuanxin keys` and `yuanxin audit`: the service and its operations.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{bail, Context, Result};
use yuanxin_api::{now_shanghai, AppState, Engine, EngineFiles, Store};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Data folder: policy.toml, catalogue.toml, the database, and demo/ (built when
    /// missing).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Model registry folder.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Latest profiles to serve (default: DATA/demo/profiles-latest.parquet, built by the
    /// demo when missing).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// SQLite database (default: DATA/yuanxin.sqlite).
    #[arg(long)]
    db: Option<PathBuf>,
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
    let profiles = match &args.profiles {
        Some(p) => p.clone(),
        None => {
            let p = args.data.join("demo/profiles-latest.parquet");
            if !p.exists() {
                eprintln!(
                    "no profiles at {}: building the demo city first",
                    p.display()
                );
                demo(&args.data.join("demo"))?;
            }
            p
        }
    };
    let files = EngineFiles {
        models: args.models.clone(),
        profiles,
        policy: args.data.join("policy.toml"),
        catalogue: args.data.join("catalogue.toml"),
    };
    let engine = Engine::load(&files)?;
    let store = Store::open(
        &args
            .db
            .clone()
            .unwrap_or_else(|| args.data.join("yuanxin.sqlite")),
    )?;
    let now = now_shanghai();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr).await.with_context(|| format!("binding {}", args.addr))?;
        let addr = listener.local_addr()?;
        outln!("Yuanxin serving on http://{addr}  (model {}, {} merchants as of {})", engine.model_id(), engine.merchants(), engine.as_of().map(|d| d.to_string()).unwrap_or_default());
        if !args.no_demo_keys {
            let merchant = engine.merchant_ids().next().cloned().context("no merchant to issue a demo key for")?;
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
        }
        let state = AppState {
            engine: Arc::new(RwLock::new(Some(Arc::new(engine)))),
            store: Arc::new(Mutex::new(store)),
            now: now_shanghai,
        };
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
