//! For tests of the store and of its callers: fresh PostgreSQL databases on the test
//! server.
#![allow(clippy::panic)]

/// A fresh, empty PostgreSQL database named after `name` (and this process), on the server
/// named by `YUANXIN_TEST_POSTGRES` (a URL whose user may create databases; `scripts/test`
/// starts a throwaway cluster and sets it); returns its URL. Without that variable the
/// caller's PostgreSQL tests are skipped (`None`, said on stderr), unless
/// `YUANXIN_TESTS_NEED_POSTGRES` is set (the test script sets it): then this panics, so a
/// run that was to test PostgreSQL cannot pass without doing so.
pub fn fresh_postgres(name: &str) -> Option<String> {
    let Ok(server) = std::env::var("YUANXIN_TEST_POSTGRES") else {
        if std::env::var_os("YUANXIN_TESTS_NEED_POSTGRES").is_some() {
            panic!("YUANXIN_TEST_POSTGRES is not set but the PostgreSQL tests are required");
        }
        eprintln!("skipped: YUANXIN_TEST_POSTGRES is not set");
        return None;
    };
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
