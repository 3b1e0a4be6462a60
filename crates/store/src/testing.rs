//! For tests of the store and of its callers: fresh PostgreSQL databases on the test
//! server.
#![allow(clippy::panic)]

/// The test server's URL, if the PostgreSQL tests run here (see [`fresh_postgres`]).
fn test_server() -> Option<String> {
    let Ok(server) = std::env::var("YUANXIN_TEST_POSTGRES") else {
        if std::env::var_os("YUANXIN_TESTS_NEED_POSTGRES").is_some() {
            panic!("YUANXIN_TEST_POSTGRES is not set but the PostgreSQL tests are required");
        }
        eprintln!("skipped: YUANXIN_TEST_POSTGRES is not set");
        return None;
    };
    Some(server)
}

/// A fresh, empty PostgreSQL database named after `name` (and this process), on the server
/// named by `YUANXIN_TEST_POSTGRES` (a URL whose user may create databases; `scripts/test`
/// starts a throwaway cluster and sets it); returns its URL. Without that variable the
/// caller's PostgreSQL tests are skipped (`None`, said on stderr), unless
/// `YUANXIN_TESTS_NEED_POSTGRES` is set (the test script sets it): then this panics, so a
/// run that was to test PostgreSQL cannot pass without doing so.
pub fn fresh_postgres(name: &str) -> Option<String> {
    let server = test_server()?;
    let db = format!("yx_{name}_{}", std::process::id());
    let mut admin = postgres::Client::connect(&server, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to {server}: {e}"));
    // Two statements, two calls: CREATE DATABASE cannot share a transaction.
    for sql in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        admin
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // The server URL with its database replaced (a query string kept).
    let (path, query) = server
        .split_once('?')
        .map_or((server.as_str(), ""), |(p, q)| (p, q));
    let base = path.rsplit_once('/').map_or(path, |(b, _)| b);
    Some(if query.is_empty() {
        format!("{base}/{db}")
    } else {
        format!("{base}/{db}?{query}")
    })
}

/// A PostgreSQL cluster of a test's own, to stop and start (a database outage): made with
/// the server binaries of Debian's package (`/usr/lib/postgresql/*/bin`) in a temporary
/// folder, on a free loopback port, run as the `postgres` user when this is root (initdb
/// refuses root). Removed when dropped.
#[derive(Debug)]
pub struct PgCluster {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    as_postgres: bool,
    /// A URL of its maintenance database (user `yuanxin`, trusted).
    pub url: String,
}

impl PgCluster {
    /// Makes and starts one, if the PostgreSQL tests run here (see [`fresh_postgres`]).
    pub fn start() -> Option<PgCluster> {
        test_server()?;
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()?;
        let dir = std::env::temp_dir().join(format!(
            "yuanxin-pg-own-{}-{}",
            std::process::id(),
            crate::secrets::hex(&crate::random32().ok()?[..4])
        ));
        std::fs::create_dir_all(&dir).ok()?;
        // As root, the server runs as `postgres`.
        let as_postgres = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if as_postgres {
            std::process::Command::new("chown")
                .arg("postgres")
                .arg(&dir)
                .status()
                .ok()?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let c = PgCluster {
            bin,
            dir,
            as_postgres,
            url: format!("postgres://yuanxin@127.0.0.1:{port}/postgres"),
        };
        let data = c.dir.join("data");
        c.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "yuanxin",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
        );
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
            c.dir.display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap_or_else(|e| panic!("postgresql.conf: {e}"));
        std::io::Write::write_all(&mut f, conf.as_bytes())
            .unwrap_or_else(|e| panic!("postgresql.conf: {e}"));
        c.up();
        Some(c)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server and waits until it accepts connections.
    pub fn up(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server (fast: open connections are cut).
    pub fn down(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "fast", "-w", "stop"],
        );
    }

    /// A fresh, empty database on this cluster; its URL.
    pub fn database(&self, name: &str) -> String {
        let mut admin = postgres::Client::connect(&self.url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url.replace("/postgres", &format!("/{name}"))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        let _ = cmd
            .args(["-D", &data.to_string_lossy(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
