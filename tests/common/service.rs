//! The service under test: a small city's profiles and a second model built once per test
//! binary, the real `yuanxin serve` on a random loopback port, plain HTTP/1.1 requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use super::{bin, run_ok, simulate};

/// A small city's ledger, its latest profiles and a second model.
pub struct Fixture {
    pub ledger: PathBuf,
    pub latest: PathBuf,
    pub second: PathBuf,
}

/// Built once for all the tests of a binary (each binary has its own folder).
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fixture-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let city = dir.join("city");
        simulate(&city, 300, 36, 11, &[]);
        let ledger = dir.join("ledger");
        run_ok(&[
            "ingest",
            "--ledger",
            ledger.to_str().unwrap(),
            city.to_str().unwrap(),
        ]);
        let latest = dir.join("latest.parquet");
        run_ok(&[
            "profile",
            "--ledger",
            ledger.to_str().unwrap(),
            "--as-of",
            "2026-06-30",
            "--out",
            latest.to_str().unwrap(),
        ]);
        let panel = dir.join("panel.parquet");
        run_ok(&[
            "profile",
            "--ledger",
            ledger.to_str().unwrap(),
            "--from",
            "2024-06-30",
            "--to",
            "2025-06-30",
            "--label",
            "default_12m",
            "--oot-from",
            "2025-01-01",
            "--out",
            panel.to_str().unwrap(),
        ]);
        let second = dir.join("second.json");
        run_ok(&[
            "train",
            "--data",
            panel.to_str().unwrap(),
            "--target",
            "default_12m",
            "--out",
            second.to_str().unwrap(),
            "--quiet",
        ]);
        Fixture {
            ledger,
            latest,
            second,
        }
    })
}

/// A running service and its demo keys.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub lender: String,
    pub merchant_key: String,
    pub analyst: String,
    pub admin: String,
    /// The city's regulator (code `CITY`).
    pub regulator: String,
    pub merchant: String,
    pub db: PathBuf,
    pub key_file: PathBuf,
    pub checkpoints: PathBuf,
    /// The sign-in links `serve` prints for the web pages (lender, merchant, regulator).
    pub signin: [String; 3],
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The `--db` argument pair for commands on this server's database.
    pub fn db_arg(&self) -> [&str; 2] {
        ["--db", self.db.to_str().unwrap()]
    }
}

/// The serving model's id, from its readiness report.
pub fn srv_model(srv: &Server) -> serde_json::Value {
    let (_, _, r) = http(&srv.addr, "GET", "/readyz", None, None);
    serde_json::from_str::<serde_json::Value>(&r).unwrap()["model"].clone()
}

/// Starts `yuanxin serve` with its own registry (the shipped champion, the fixture's second
/// model and a damaged file) and database under `tmp`. `extra` adds arguments; the demo
/// keys are read when the profiles exist.
pub fn start(tmp: &Path, profiles: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    launch(tmp, profiles, extra, env, false).0
}

/// Starts the server as [`start`] does, its log (JSON lines) sent to the returned channel,
/// so that a test can wait for the line an event writes instead of polling.
pub fn start_with_log(
    tmp: &Path,
    profiles: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Server, std::sync::mpsc::Receiver<String>) {
    let (srv, log) = launch(tmp, profiles, extra, env, true);
    (srv, log.unwrap())
}

fn launch(
    tmp: &Path,
    profiles: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    logged: bool,
) -> (Server, Option<std::sync::mpsc::Receiver<String>>) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let models = tmp.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for f in ["default-scorecard.json", "registry.json"] {
        std::fs::copy(repo.join("models").join(f), models.join(f)).unwrap();
    }
    std::fs::copy(&fixture().second, models.join("second.json")).unwrap();
    let shipped = std::fs::read_to_string(repo.join("models/default-scorecard.json")).unwrap();
    std::fs::write(models.join("broken.json"), &shipped[..shipped.len() / 3]).unwrap();
    // `extra` may name another database (a PostgreSQL URL).
    let db = match extra.iter().position(|a| *a == "--db") {
        Some(i) => PathBuf::from(extra[i + 1]),
        None => tmp.join("db.sqlite"),
    };
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(repo.join("data"))
        .arg("--models")
        .arg(&models)
        .arg("--profiles")
        .arg(profiles);
    if !extra.contains(&"--db") {
        cmd.arg("--db").arg(&db);
    }
    cmd.args(extra)
        .env("YUANXIN_LOG", if logged { "json" } else { "off" })
        .env_remove("YUANXIN_KEY")
        .stdout(Stdio::piped());
    if logged {
        cmd.stderr(Stdio::piped());
    } else {
        cmd.stderr(std::fs::File::create(tmp.join("stderr.log")).unwrap());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let log = child.stderr.take().map(|stderr| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut get = |prefix: &str| -> String {
        let l = lines.next().expect("server output").unwrap();
        assert!(l.starts_with(prefix), "{l}");
        l
    };
    let first = get("Yuanxin serving on http://");
    let addr = first["Yuanxin serving on http://".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let last = |l: String| l.split_whitespace().last().unwrap().to_owned();
    let ready = !first.contains("not ready") && !extra.contains(&"--no-demo-keys");
    let mut key = |p: &str| if ready { last(get(p)) } else { String::new() };
    let lender = key("demo lender key");
    let merchant_key = key("demo merchant key");
    let analyst = key("demo analyst key");
    let admin = key("demo admin key");
    let regulator = key("demo regulator key");
    let merchant = key("demo merchant:");
    let signin = [
        key("sign in as the lender: "),
        key("sign in as the merchant: "),
        key("sign in as the regulator: "),
    ];
    let srv = Server {
        child,
        addr,
        lender,
        merchant_key,
        analyst,
        admin,
        regulator,
        merchant,
        key_file: env
            .iter()
            .find(|(k, _)| *k == "YUANXIN_KEY_FILE")
            .map_or_else(|| tmp.join("db.key"), |(_, v)| PathBuf::from(v)),
        checkpoints: env
            .iter()
            .find(|(k, _)| *k == "YUANXIN_CHECKPOINTS")
            .map_or_else(|| tmp.join("db.checkpoints"), |(_, v)| PathBuf::from(v)),
        db,
        signin,
    };
    (srv, log)
}

/// A response.
pub struct Resp {
    pub status: u16,
    pub ctype: String,
    /// The head, lower-cased.
    pub headers: String,
    /// The head as sent.
    pub head: String,
    pub body: String,
}

impl Resp {
    /// A header's value as sent (names match case-insensitively).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// One HTTP/1.1 request with any extra headers.
pub fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {raw:?}"));
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = head.to_ascii_lowercase();
    let ctype = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    Resp {
        status,
        ctype,
        headers,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// One HTTP/1.1 request with an optional bearer key.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request_with(addr, method, path, &headers, body)
}

/// One HTTP/1.1 request; returns (status, content type, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let r = request(addr, method, path, key, body);
    (r.status, r.ctype, r.body)
}

pub fn value(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// A new key from the command line, against the running server's database. Lenders,
/// analysts and admins get a principal of that code first if there is none.
pub fn new_key(srv: &Server, role: &str, code: &str) -> String {
    if role != "merchant" {
        let out = super::run(&[
            "principals",
            "add",
            "--role",
            role,
            "--code",
            code,
            "--name",
            code,
            "--db",
            srv.db.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || err.contains("already"), "{err}");
    }
    run_ok(&[
        "keys",
        "create",
        "--role",
        role,
        "--principal",
        code,
        "--db",
        srv.db.to_str().unwrap(),
    ])
    .trim()
    .to_owned()
}

/// Another merchant than the demo's.
pub fn other_merchant(srv: &Server) -> &'static str {
    if srv.merchant == "M0000001" {
        "M0000002"
    } else {
        "M0000001"
    }
}
