//! `yuanxin serve`, `yuanxin principals`, `yuanxin keys`, `yuanxin audit` and `yuanxin
//! store`: the service and its operations.

use std::path::{Path, PathBuf};
use yuanxin_store::prelude::*;

use anyhow::{bail, Context, Result};
use yuanxin_api::{open_store, AppState, Db, Engine, EngineFiles, LogFiles, ServiceConfig};
use yuanxin_store::{
    hex, unhex, Created, Grant, OpenMode, Purpose, Role, SecretsSource, Timestamp,
};

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
    /// The service's database: an SQLite file (default: DATA/yuanxin.sqlite) or a
    /// PostgreSQL URL (`postgres://user@host:port/db`) that several service processes
    /// share; also `YUANXIN_DB`.
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

/// Which database a command works on, and where its secrets and checkpoints are.
#[derive(clap::Args, Debug, Clone)]
pub struct DbArgs {
    /// The service's database. Default: `YUANXIN_DB`, else `YUANXIN_DATA`/yuanxin.sqlite,
    /// else data/yuanxin.sqlite. It must exist (see --create).
    #[arg(long)]
    db: Option<PathBuf>,
    /// The key file (default: the database path with .key; `YUANXIN_KEY` replaces it).
    #[arg(long)]
    key_file: Option<PathBuf>,
}

impl DbArgs {
    fn config(&self) -> Result<ServiceConfig> {
        let mut cfg = ServiceConfig::load(None, |k| std::env::var(k).ok())?;
        if let Some(db) = &self.db {
            cfg.db = Some(db.clone());
        }
        if let Some(k) = &self.key_file {
            cfg.key_file = Some(k.clone());
        }
        Ok(cfg)
    }
}

fn secrets_source(cfg: &ServiceConfig) -> SecretsSource {
    match std::env::var("YUANXIN_KEY").ok().filter(|v| !v.is_empty()) {
        Some(v) => SecretsSource::Env(v),
        None => SecretsSource::File(cfg.key_path()),
    }
}

/// Says which database a command used (the path as given, and where that is; a URL as
/// given).
fn announce(db: &Path) {
    let shown = std::fs::canonicalize(db).unwrap_or_else(|_| db.to_owned());
    eprintln!("database: {}", shown.display());
}

/// Opens the database a command changes: it must exist, and so must its key file, unless
/// `create` (then both are made).
fn open_for_change(
    args: &DbArgs,
    create: bool,
) -> Result<(yuanxin_store::Store, yuanxin_store::Secrets)> {
    let cfg = args.config()?;
    let db = cfg.db_path();
    let src = secrets_source(&cfg);
    if !create {
        // A PostgreSQL database is checked by connecting (an empty one is refused).
        if !cfg.db_is_postgres() && !db.exists() {
            bail!(
                "no database at {} (nothing was created): give the service's database with --db, or pass --create to make a new one",
                db.display()
            );
        }
        if let SecretsSource::File(k) = &src {
            if !k.exists() {
                bail!(
                    "no key file at {}: the service creates it beside its database at first start; give it with --key-file (or YUANXIN_KEY)",
                    k.display()
                );
            }
        }
    }
    let mode = if create {
        OpenMode::Create
    } else {
        OpenMode::Existing
    };
    let (store, secrets) = open_store(&db, mode, &src)?;
    announce(&db);
    Ok((store, secrets))
}

#[derive(clap::Subcommand, Debug)]
pub enum PrincipalsCmd {
    /// Add a lender institution, an analyst or an admin (merchants' principals are made
    /// when a key is first created for them).
    Add {
        /// lender, analyst or admin.
        #[arg(long)]
        role: String,
        /// Stable code, unique within the role (e.g. the institution code `CCB`).
        #[arg(long)]
        code: String,
        /// Display name (e.g. "China Construction Bank").
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
        /// Create the database (and its key file) if it does not exist.
        #[arg(long)]
        create: bool,
    },
    /// List principals.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysCmd {
    /// Create a key for a principal; it is printed once and stored only as a keyed digest.
    Create {
        /// lender, merchant, analyst or admin.
        #[arg(long)]
        role: String,
        /// The principal's code: an institution code, a merchant id (a merchant the
        /// service has a profile for), a login name.
        #[arg(long)]
        principal: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key by its id (the part after `yx_` and before the next `_`). A running
    /// service refuses it from its next request.
    Revoke {
        /// Key id.
        key_id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCmd {
    /// Check the query log, read-only: every entry against its leaf hash, the Merkle tree,
    /// the database's signed head, and every signed head in the checkpoint file (and the
    /// consistency between them). Any edited, deleted, reordered, truncated or emptied log
    /// is found.
    Verify {
        /// The service's database (must exist; never created): a path, or a PostgreSQL
        /// URL (then --checkpoints and --key-file or --public-key are needed).
        #[arg(long)]
        db: Option<PathBuf>,
        /// The checkpoint file (default: the database path with .checkpoints).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The key file to take the log's public key from (default: the database path with
        /// .key; `YUANXIN_KEY` replaces it).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The log's public key (64 hex digits), as published by `/v1/log/checkpoint`,
        /// instead of a key file: what an auditor without the secrets uses.
        #[arg(long)]
        public_key: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy a whole store — principals, keys, consents, disputes, idempotency records and
    /// the query log with its nodes and signed heads — into an empty PostgreSQL database
    /// (which gets this build's schema first), in one transaction. The key file and the
    /// checkpoint file stay valid for the copy: `yuanxin audit verify --db postgres://…
    /// --checkpoints FILE --key-file FILE` passes on it.
    Migrate {
        /// The store to copy: `sqlite:PATH` or a path (it must exist; it is only read).
        #[arg(long)]
        from: String,
        /// The empty database to copy into: `postgres://user@host:port/db`.
        #[arg(long)]
        to: String,
    },
}

pub fn run_store(cmd: &StoreCmd) -> Result<()> {
    match cmd {
        StoreCmd::Migrate { from, to } => {
            if !yuanxin_store::is_postgres_url(to) {
                bail!("--to must be a PostgreSQL URL (postgres://user@host:port/db), not {to}");
            }
            if yuanxin_store::is_postgres_url(from) {
                bail!("--from is the service's SQLite file (sqlite:PATH or a path)");
            }
            let source = yuanxin_store::Store::open_location(from, OpenMode::ReadOnly)
                .with_context(|| format!("opening {from}"))?;
            let dest = yuanxin_store::Store::connect(to, OpenMode::Create)
                .context("connecting to the PostgreSQL database")?;
            let report = yuanxin_store::copy_store(&source, &dest)?;
            for (table, n) in &report.tables {
                outln!("{table}: {n} rows");
            }
            outln!(
                "query log: {} entries, head {}",
                report.log_entries,
                dest.head()?
                    .map(|h| format!("of {} entries signed at {}", h.tree_size, h.timestamp))
                    .unwrap_or_else(|| "none".into())
            );
        }
    }
    Ok(())
}

const DEMO_LENDER: (&str, &str) = ("ICBC-demo", "ICBC (demo)");
const DEMO_ANALYST: (&str, &str) = ("analyst-demo", "analyst (demo)");
const DEMO_ADMIN: (&str, &str) = ("admin-demo", "admin (demo)");
/// The city-wide regulator (code `CITY`: every district).
const DEMO_REGULATOR: (&str, &str) = ("CITY", "city regulator (demo)");

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
        .is_some_and(|l| yuanxin_ledger::Ledger::manifest_path(l).exists());
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
    if let Some(l) = files.ledger.as_ref() {
        let why = if files.profiles.exists() {
            yuanxin_profile::outdated(&files.profiles)?
        } else {
            Some("there are none".to_owned())
        };
        if let Some(why) = why {
            eprintln!(
                "building the latest profiles from {} ({}: {why})",
                l.display(),
                files.profiles.display()
            );
            yuanxin_api::build_latest_profiles(l, &files.profiles)?;
        }
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
    let db = Db::open(
        &cfg.db_path(),
        &secrets_source(&cfg),
        LogFiles {
            checkpoints: cfg.checkpoints_path(),
            every: cfg.checkpoint_every,
            seconds: cfg.checkpoint_seconds,
        },
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let no_demo_keys = args.no_demo_keys;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.addr)
            .await
            .with_context(|| format!("binding {}", cfg.addr))?;
        let addr = listener.local_addr()?;
        match &engine {
            Some(e) => outln!(
                "Yuanxin serving on http://{addr}  (model {}, {} merchants as of {})",
                e.model_id(),
                e.merchants(),
                e.as_of().map(|d| d.to_string()).unwrap_or_default()
            ),
            None => outln!(
                "Yuanxin serving on http://{addr}  (not ready: waiting for the model and profiles)"
            ),
        }
        let demo_merchant = engine
            .as_ref()
            .and_then(|e| e.merchant_ids().next().cloned());
        if let (false, Some(merchant)) = (no_demo_keys, demo_merchant) {
            demo_keys(&db, &merchant, &addr.to_string())?;
        }
        let state = AppState::new(cfg, files, engine, db)?;
        yuanxin_api::serve(listener, state).await?;
        Ok::<(), anyhow::Error>(())
    })
}

/// Fresh demo keys at each start (the previous ones revoked) for a lender institution, a
/// merchant (who consents to that lender for pre-loan checks), an analyst, an admin and
/// the city's regulator.
fn demo_keys(db: &Db, merchant: &str, addr: &str) -> Result<()> {
    let now = Timestamp::now();
    let merchant_id = yuanxin_domain::MerchantId::parse(merchant)?;
    let keys = db.write_now(|s, secrets| {
        s.register_merchants([merchant], now)?;
        let mut principal = |role: Role, (code, name): (&str, &str)| {
            Ok::<_, yuanxin_store::StoreError>(match s.principal(role, code)? {
                Some(p) => p,
                None => s.add_principal(role, code, name, now)?,
            })
        };
        let lender = principal(Role::Lender, DEMO_LENDER)?;
        let analyst = principal(Role::Analyst, DEMO_ANALYST)?;
        let admin = principal(Role::Admin, DEMO_ADMIN)?;
        let regulator = principal(Role::Regulator, DEMO_REGULATOR)?;
        let merchant_p = s.merchant_principal(&merchant_id, now)?;
        let mut out = Vec::new();
        for p in [&lender, &merchant_p, &analyst, &admin, &regulator] {
            s.revoke_keys_of(p.id, now)?;
            match s.create_key(p, secrets, now, None, |_| Ok(Vec::new()))? {
                Created::New((_, full), _) => out.push(full),
                Created::Replayed(_) => {}
            }
        }
        if s.valid_consent(&merchant_id, lender.id, Purpose::PreLoan, now)?
            .is_none()
        {
            let expires = now.plus_days(365).unwrap_or(now);
            s.grant(
                &Grant {
                    merchant_id: &merchant_id,
                    lender: &lender,
                    purpose: Purpose::PreLoan,
                    granted_at: now,
                    expires_at: expires,
                },
                None,
                |_| Ok(Vec::new()),
            )?;
        }
        Ok(out)
    })?;
    let [lender, merchant_key, analyst, admin, regulator] = keys.as_slice() else {
        bail!("the demo keys were not all created");
    };
    outln!(
        "demo lender key ({} {}): {lender}",
        DEMO_LENDER.0,
        DEMO_LENDER.1
    );
    outln!(
        "demo merchant key ({merchant}, consents to {} for pre_loan): {merchant_key}",
        DEMO_LENDER.0
    );
    outln!("demo analyst key: {analyst}");
    outln!("demo admin key: {admin}");
    outln!(
        "demo regulator key ({}, every district): {regulator}",
        DEMO_REGULATOR.0
    );
    outln!("demo merchant: {merchant}");
    // The key rides in the fragment, which the browser never sends: it stays out of
    // request logs and proxies.
    outln!("sign in as the lender: http://{addr}/signin#key={lender}");
    outln!("sign in as the merchant: http://{addr}/signin#key={merchant_key}");
    outln!("sign in as the regulator: http://{addr}/signin#key={regulator}");
    Ok(())
}

pub fn run_principals(cmd: &PrincipalsCmd) -> Result<()> {
    let now = Timestamp::now();
    match cmd {
        PrincipalsCmd::Add {
            role,
            code,
            name,
            db,
            create,
        } => {
            let role: Role = role.parse()?;
            if role == Role::Merchant {
                bail!("merchants' principals are made with their first key: yuanxin keys create --role merchant --principal MERCHANT_ID");
            }
            let (mut store, _) = open_for_change(db, *create)?;
            let p = store.add_principal(role, code, name, now)?;
            outln!("{} {} ({})", p.role, p.code, p.name);
        }
        PrincipalsCmd::List { db } => {
            let (store, _) = open_for_change(db, false)?;
            let mut cursor = None;
            loop {
                let page = store.principals(yuanxin_store::PageRequest { cursor, limit: 500 })?;
                for p in &page.items {
                    outln!("{}\t{}\t{}\t{}", p.role, p.code, p.name, p.created_at);
                }
                cursor = page.next;
                if cursor.is_none() {
                    break;
                }
            }
        }
    }
    Ok(())
}

pub fn run_keys(cmd: &KeysCmd) -> Result<()> {
    let now = Timestamp::now();
    match cmd {
        KeysCmd::Create {
            role,
            principal,
            db,
        } => {
            let role: Role = role.parse()?;
            let (mut store, secrets) = open_for_change(db, false)?;
            let p = if role == Role::Merchant {
                store.merchant_principal(&yuanxin_domain::MerchantId::parse(principal)?, now)?
            } else {
                store.principal(role, principal)?.with_context(|| {
                    format!("no {role} with code {principal}: add it first with `yuanxin principals add --role {role} --code {principal} --name NAME`")
                })?
            };
            let Created::New((k, full), _) =
                store.create_key(&p, &secrets, now, None, |_| Ok(Vec::new()))?
            else {
                bail!("the key was not created");
            };
            outln!("{full}");
            eprintln!(
                "key {} for {} {} ({}); shown once, stored as a keyed digest",
                k.key_id, p.role, p.code, p.name
            );
        }
        KeysCmd::Revoke { key_id, db } => {
            let (mut store, _) = open_for_change(db, false)?;
            if !store.revoke_key(key_id, now)? {
                bail!("no active key {key_id}");
            }
            outln!("revoked {key_id}");
        }
    }
    Ok(())
}

pub fn run_audit(cmd: &AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify {
            db,
            checkpoints,
            key_file,
            public_key,
        } => {
            let args = DbArgs {
                db: db.clone(),
                key_file: key_file.clone(),
            };
            let cfg = args.config()?;
            let db = cfg.db_path();
            let url = db
                .to_str()
                .filter(|d| yuanxin_store::is_postgres_url(d))
                .map(str::to_owned);
            if url.is_some() {
                // Nothing lies beside a URL: the files are named.
                if checkpoints.is_none() || (key_file.is_none() && public_key.is_none()) {
                    bail!("with a PostgreSQL database, give --checkpoints and --key-file (or --public-key)");
                }
            } else if !db.exists() {
                bail!("no database at {} (nothing was created)", db.display());
            } else {
                announce(&db);
            }
            let key = match public_key {
                Some(h) => {
                    let bytes: [u8; 32] = unhex(h).context("--public-key must be 64 hex digits")?;
                    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                        .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?
                }
                None => {
                    let src = secrets_source(&cfg);
                    if let SecretsSource::File(k) = &src {
                        if !k.exists() {
                            bail!("no key file at {} to take the log's public key from: give --key-file or --public-key", k.display());
                        }
                    }
                    yuanxin_store::Secrets::load(&src, None)?.0.verifying_key()
                }
            };
            let checkpoints = checkpoints
                .clone()
                .unwrap_or_else(|| cfg.checkpoints_path());
            let verdict = match &url {
                Some(url) => {
                    let store = yuanxin_store::Store::connect(url, OpenMode::ReadOnly)?;
                    yuanxin_store::verify_store(&store, &checkpoints, &key)?
                }
                None => yuanxin_store::verify(&db, &checkpoints, &key)?,
            };
            match verdict {
                Ok(r) => {
                    outln!(
                        "query log intact: {} entries, root {}, signed head at {}; {} checkpoints verified{}",
                        r.entries,
                        hex(&r.root),
                        r.head.timestamp,
                        r.checkpoints,
                        r.last_checkpoint
                            .map(|c| format!(" (the last of {} entries at {})", c.tree_size, c.timestamp))
                            .unwrap_or_default()
                    );
                }
                Err(why) => bail!("query log damaged: {why}"),
            }
        }
    }
    Ok(())
}
