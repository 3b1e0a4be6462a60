//! The service's settings: defaults, then a TOML file, then `YUANXIN_*` environment
//! variables, then command-line flags (applied by the binary), each overriding the one
//! before. Unknown keys in the file are errors, so a misspelt setting is never silently
//! ignored.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::problem::{ApiError, Code};

/// Everything `yuanxin serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address to listen on (loopback by default; port 0 picks a free one).
    pub addr: String,
    /// Data folder: policy.toml, catalogue.toml, the database and demo/.
    pub data: PathBuf,
    /// Model registry folder.
    pub models: PathBuf,
    /// Latest profiles (default: DATA/demo/profiles-latest.parquet).
    pub profiles: Option<PathBuf>,
    /// The service's database: an SQLite file (default: DATA/yuanxin.sqlite) or a
    /// PostgreSQL URL (`postgres://user@host:port/db`), which several service processes
    /// can share.
    pub db: Option<PathBuf>,
    /// A ledger to rebuild the profiles from whenever new data is ingested into it
    /// (default: DATA/demo/ledger when the profiles are the demo's, else none).
    pub ledger: Option<PathBuf>,
    /// The regulators' monthly reports, as `yuanxin report monthly` writes them (default:
    /// DATA/reports).
    pub reports: Option<PathBuf>,
    /// Seconds a request may take before it is answered 503.
    pub timeout_seconds: u64,
    /// Requests handled at once; more are answered 503 with `Retry-After`.
    pub max_concurrency: usize,
    /// Requests per second each API key may make on average.
    pub rate_per_second: f64,
    /// Requests each API key may make in a burst.
    pub rate_burst: f64,
    /// Merchants one batch-scoring request may name.
    pub batch_max: usize,
    /// Seconds between checks of the profiles, registry, policy and catalogue files for
    /// changes (0: no watching; reload by the analyst call only).
    pub watch_seconds: u64,
    /// Request log: `json` (one JSON object per line on standard error) or `off`.
    pub log: String,
    /// The key file (API-key secret and the log's signing key; created at first start,
    /// owner-only). Default: the database path with `.key`. `YUANXIN_KEY` (128 hex
    /// digits) replaces the file.
    pub key_file: Option<PathBuf>,
    /// The checkpoint file (signed tree heads, append-only). Default: the database path
    /// with `.checkpoints`.
    pub checkpoints: Option<PathBuf>,
    /// Entries between heads written to the checkpoint file (1–1,000,000).
    pub checkpoint_every: u64,
    /// Seconds between heads written to the checkpoint file while entries arrive (1–86,400).
    pub checkpoint_seconds: u64,
    /// Requests a second one client address may make that fail authentication, on average.
    pub anonymous_rate_per_second: f64,
    /// Requests failing authentication one address may make in a burst.
    pub anonymous_rate_burst: f64,
    /// Minutes a web page session lasts without use (1–1440); a session ends after 12
    /// hours whatever its use.
    pub session_minutes: u64,
    /// Mark session cookies `Secure` (set it when a TLS proxy is in front; a request
    /// forwarded with `X-Forwarded-Proto: https` gets it anyway).
    pub secure_cookies: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            addr: "127.0.0.1:8080".into(),
            data: "data".into(),
            models: "models".into(),
            profiles: None,
            db: None,
            ledger: None,
            reports: None,
            timeout_seconds: 10,
            max_concurrency: 512,
            rate_per_second: 1000.0,
            rate_burst: 2000.0,
            batch_max: 500,
            watch_seconds: 5,
            log: "json".into(),
            key_file: None,
            checkpoints: None,
            checkpoint_every: 1000,
            checkpoint_seconds: 60,
            anonymous_rate_per_second: 10.0,
            anonymous_rate_burst: 50.0,
            session_minutes: 30,
            secure_cookies: false,
        }
    }
}

fn bad(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::InvalidField, format!("configuration: {what}"))
}

fn parse<T: FromStr>(name: &str, v: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e| bad(format!("{name}={v:?}: {e}")))
}

impl ServiceConfig {
    /// Defaults, overridden by the file (if any), overridden by the environment as read by
    /// `env` (the real one is `|k| std::env::var(k).ok()`).
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServiceConfig, ApiError> {
        let mut c = match file {
            Some(f) => {
                let text =
                    std::fs::read_to_string(f).map_err(|e| bad(format!("{}: {e}", f.display())))?;
                toml::from_str(&text).map_err(|e| bad(format!("{}: {e}", f.display())))?
            }
            None => ServiceConfig::default(),
        };
        let get = |k: &str| env(&format!("YUANXIN_{k}")).filter(|v| !v.is_empty());
        if let Some(v) = get("ADDR") {
            c.addr = v;
        }
        if let Some(v) = get("DATA") {
            c.data = v.into();
        }
        if let Some(v) = get("MODELS") {
            c.models = v.into();
        }
        if let Some(v) = get("PROFILES") {
            c.profiles = Some(v.into());
        }
        if let Some(v) = get("DB") {
            c.db = Some(v.into());
        }
        if let Some(v) = get("LEDGER") {
            c.ledger = Some(v.into());
        }
        if let Some(v) = get("REPORTS") {
            c.reports = Some(v.into());
        }
        if let Some(v) = get("TIMEOUT_SECONDS") {
            c.timeout_seconds = parse("YUANXIN_TIMEOUT_SECONDS", &v)?;
        }
        if let Some(v) = get("MAX_CONCURRENCY") {
            c.max_concurrency = parse("YUANXIN_MAX_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("RATE_PER_SECOND") {
            c.rate_per_second = parse("YUANXIN_RATE_PER_SECOND", &v)?;
        }
        if let Some(v) = get("RATE_BURST") {
            c.rate_burst = parse("YUANXIN_RATE_BURST", &v)?;
        }
        if let Some(v) = get("BATCH_MAX") {
            c.batch_max = parse("YUANXIN_BATCH_MAX", &v)?;
        }
        if let Some(v) = get("WATCH_SECONDS") {
            c.watch_seconds = parse("YUANXIN_WATCH_SECONDS", &v)?;
        }
        if let Some(v) = get("LOG") {
            c.log = v;
        }
        if let Some(v) = get("KEY_FILE") {
            c.key_file = Some(v.into());
        }
        if let Some(v) = get("CHECKPOINTS") {
            c.checkpoints = Some(v.into());
        }
        if let Some(v) = get("CHECKPOINT_EVERY") {
            c.checkpoint_every = parse("YUANXIN_CHECKPOINT_EVERY", &v)?;
        }
        if let Some(v) = get("CHECKPOINT_SECONDS") {
            c.checkpoint_seconds = parse("YUANXIN_CHECKPOINT_SECONDS", &v)?;
        }
        if let Some(v) = get("ANONYMOUS_RATE_PER_SECOND") {
            c.anonymous_rate_per_second = parse("YUANXIN_ANONYMOUS_RATE_PER_SECOND", &v)?;
        }
        if let Some(v) = get("ANONYMOUS_RATE_BURST") {
            c.anonymous_rate_burst = parse("YUANXIN_ANONYMOUS_RATE_BURST", &v)?;
        }
        if let Some(v) = get("SESSION_MINUTES") {
            c.session_minutes = parse("YUANXIN_SESSION_MINUTES", &v)?;
        }
        if let Some(v) = get("SECURE_COOKIES") {
            c.secure_cookies = parse("YUANXIN_SECURE_COOKIES", &v)?;
        }
        Ok(c)
    }

    /// Checks every value is within its documented range.
    pub fn check(&self) -> Result<(), ApiError> {
        if !(1..=3600).contains(&self.timeout_seconds) {
            return Err(bad("timeout_seconds must be 1–3600"));
        }
        if !(1..=100_000).contains(&self.max_concurrency) {
            return Err(bad("max_concurrency must be 1–100000"));
        }
        for (name, rate, burst) in [
            ("rate", self.rate_per_second, self.rate_burst),
            (
                "anonymous_rate",
                self.anonymous_rate_per_second,
                self.anonymous_rate_burst,
            ),
        ] {
            if !(rate.is_finite() && (0.001..=1e9).contains(&rate)) {
                return Err(bad(format!("{name}_per_second must be 0.001–1e9")));
            }
            if !(burst.is_finite() && (1.0..=1e9).contains(&burst)) {
                return Err(bad(format!("{name}_burst must be 1–1e9")));
            }
        }
        if !(1..=1_000_000).contains(&self.checkpoint_every) {
            return Err(bad("checkpoint_every must be 1–1000000"));
        }
        if !(1..=86_400).contains(&self.checkpoint_seconds) {
            return Err(bad("checkpoint_seconds must be 1–86400"));
        }
        if self.watch_seconds > 86_400 {
            return Err(bad("watch_seconds must be 0–86400"));
        }
        if !(1..=1440).contains(&self.session_minutes) {
            return Err(bad("session_minutes must be 1–1440"));
        }
        if !(1..=10_000).contains(&self.batch_max) {
            return Err(bad("batch_max must be 1–10000"));
        }
        if !["json", "off"].contains(&self.log.as_str()) {
            return Err(bad(format!("log must be json or off, not {:?}", self.log)));
        }
        Ok(())
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.db
            .clone()
            .unwrap_or_else(|| self.data.join("yuanxin.sqlite"))
    }

    /// Whether the database is a PostgreSQL server.
    pub fn db_is_postgres(&self) -> bool {
        yuanxin_store::is_postgres_url(&self.db_path().to_string_lossy())
    }

    /// Where the secrets come from: `YUANXIN_KEY` if set (read by the caller), else the
    /// key file (default: beside an SQLite database; DATA/yuanxin.key with PostgreSQL).
    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.beside_db("key"))
    }

    /// The checkpoint file (default: beside an SQLite database; DATA/yuanxin.checkpoints
    /// with PostgreSQL — each process writes its own).
    pub fn checkpoints_path(&self) -> PathBuf {
        self.checkpoints
            .clone()
            .unwrap_or_else(|| self.beside_db("checkpoints"))
    }

    fn beside_db(&self, extension: &str) -> PathBuf {
        if self.db_is_postgres() {
            self.data.join(format!("yuanxin.{extension}"))
        } else {
            yuanxin_store::beside(&self.db_path(), extension)
        }
    }

    /// The ledger the profiles are kept up to date from, if any.
    pub fn ledger_path(&self) -> Option<PathBuf> {
        match (&self.ledger, &self.profiles) {
            (Some(l), _) => Some(l.clone()),
            (None, None) => Some(self.data.join("demo/ledger")),
            (None, Some(_)) => None,
        }
    }

    /// The profiles file.
    pub fn profiles_path(&self) -> PathBuf {
        self.profiles
            .clone()
            .unwrap_or_else(|| self.data.join("demo/profiles-latest.parquet"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_the_defaults() -> Result<(), ApiError> {
        let dir = tempfile::tempdir().map_err(ApiError::internal)?;
        let f = dir.path().join("serve.toml");
        std::fs::write(
            &f,
            "addr = \"127.0.0.1:9000\"\nrate_per_second = 5.0\nbatch_max = 20\n",
        )
        .map_err(ApiError::internal)?;
        let c = ServiceConfig::load(Some(&f), |k| {
            (k == "YUANXIN_BATCH_MAX").then(|| "30".to_owned())
        })?;
        assert_eq!(c.addr, "127.0.0.1:9000");
        assert_eq!(c.rate_per_second, 5.0);
        assert_eq!(c.batch_max, 30, "the environment wins over the file");
        assert_eq!(c.timeout_seconds, 10, "unset keys keep their defaults");
        c.check()
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() -> Result<(), ApiError> {
        let dir = tempfile::tempdir().map_err(ApiError::internal)?;
        let f = dir.path().join("serve.toml");
        std::fs::write(&f, "adr = \"x\"\n").map_err(ApiError::internal)?;
        let e = ServiceConfig::load(Some(&f), |_| None);
        assert!(
            matches!(&e, Err(ApiError { detail, .. }) if detail.contains("adr")),
            "{e:?}"
        );
        let e = ServiceConfig::load(None, |k| {
            (k == "YUANXIN_MAX_CONCURRENCY").then(|| "many".to_owned())
        });
        assert!(
            matches!(&e, Err(ApiError { detail, .. }) if detail.contains("YUANXIN_MAX_CONCURRENCY")),
            "{e:?}"
        );
        let c = ServiceConfig {
            max_concurrency: 0,
            ..ServiceConfig::default()
        };
        assert!(c.check().is_err());
        Ok(())
    }
}
