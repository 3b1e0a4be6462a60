//! The web pages in a real browser: Debian's headless Chromium, driven over chromedriver
//! (WebDriver), against the real `yuanxin serve` on a small simulated city whose profile
//! file holds 12 month-ends. Every number a page shows is checked against the JSON API's
//! answer for the same merchant and request; screenshots of each page at a phone's and a
//! desktop's size are kept under `target/browser-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (the test command installs them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::run_ok;
use common::service::{fixture, http, new_key, request_with, start, value, Server};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let exe = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromedriver is not installed: scripts/test installs Debian's chromium-driver");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Ready when it says so.
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        let l = lines.next().expect("chromedriver exited").unwrap();
        if l.contains("started successfully") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver, profile: &Path, downloads: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--window-size=1366,768",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads.to_str().unwrap(),
                "download.prompt_for_download": false,
            },
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Waits until a script's condition holds in the page: the page checks it now and at every
/// change of its document (a MutationObserver), and answers when it holds or after 20 s.
async fn until(c: &Client, what: &str, condition: &str) {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         const holds = () => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }};
         if (holds()) {{ done(true); return; }}
         const watch = new MutationObserver(() => {{
           if (holds()) {{ watch.disconnect(); clearTimeout(timer); done(true); }}
         }});
         const timer = setTimeout(() => {{ watch.disconnect(); done(holds()); }}, 20000);
         watch.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});"
    );
    if c.execute_async(&script, vec![]).await.unwrap() != json!(true) {
        let status = js(
            c,
            "return [...document.querySelectorAll('[role=status]')].map(e => e.id + ': ' + e.textContent).join(' | ');",
        )
        .await;
        panic!("timed out waiting for {what} ({condition}); status: {status}");
    }
}

/// Waits for the browser to arrive at a page of the service (a script's navigation), then
/// for the page's data (`body[data-ready]`) when it sets it.
async fn arrive(c: &Client, path: &str, ready: bool) {
    let url = c.current_url().await.unwrap().join(path).unwrap();
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_url(&url)
        .await
        .unwrap_or_else(|e| panic!("never reached {url}: {e}"));
    if ready {
        until(c, path, "document.body.dataset.ready === '1'").await;
    }
}

/// Clicks the element `css` selects.
async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Chooses `value` in the select `css`.
async fn select(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .select_by_value(value)
        .await
        .unwrap();
}

/// Types `text` into the input `css`.
async fn type_in(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

async fn raw(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .attr("data-raw")
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn text(c: &Client, css: &str) -> String {
    js(
        c,
        &format!("return document.querySelector({css:?}).textContent.trim();"),
    )
    .await
    .as_str()
    .unwrap()
    .to_owned()
}

/// The raw values of one column of a table's body rows.
async fn column(c: &Client, table: &str, col: usize) -> Vec<String> {
    let v = js(
        c,
        &format!(
            "return [...document.querySelectorAll('{table} tbody tr')].filter(r => r.cells.length > 1)\
             .map(r => r.cells[{col}].dataset.raw);"
        ),
    )
    .await;
    serde_json::from_value(v).unwrap()
}

fn api(srv: &Server, key: &str, method: &str, path: &str, body: Option<&str>) -> Value {
    let (status, _, b) = http(&srv.addr, method, path, Some(key), body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {b}"
    );
    value(&b)
}

fn pct(pd: f64) -> String {
    format!("{:.2}%", (pd * 10000.0).round() / 100.0)
}

/// The page's view of a score against the API's.
async fn check_score(c: &Client, s: &Value) {
    assert_eq!(raw(c, "#score").await, s["score"].to_string());
    assert_eq!(text(c, "#score").await, s["score"].to_string());
    assert_eq!(raw(c, "#grade").await, s["grade"].as_str().unwrap());
    assert_eq!(
        raw(c, "#public-grade").await,
        s["public_grade"].as_str().unwrap()
    );
    let pd: f64 = raw(c, "#pd").await.parse().unwrap();
    assert_eq!(pd, s["pd"].as_f64().unwrap());
    assert_eq!(text(c, "#pd").await, pct(pd));
    assert_eq!(raw(c, "#as-of").await, s["as_of"].as_str().unwrap());
    let reasons = s["reasons"].as_array().unwrap();
    let features: Vec<String> = reasons
        .iter()
        .map(|r| r["feature"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(column(c, "#reasons", 0).await, features);
    let values: Vec<String> = reasons
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(column(c, "#reasons", 1).await, values);
    let points: Vec<f64> = column(c, "#reasons", 3)
        .await
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let want: Vec<f64> = reasons
        .iter()
        .map(|r| r["points_lost"].as_f64().unwrap())
        .collect();
    assert_eq!(points, want);
    // Bands and values are shown rounded, never in the model's exponent notation.
    let shown = js(
        c,
        "return [...document.querySelectorAll('#reasons tbody td:nth-child(2), #reasons tbody td:nth-child(3)')].map(td => td.textContent).join(' ');",
    )
    .await;
    let shown = shown.as_str().unwrap();
    assert!(!shown.contains("e-") && !shown.contains("e+"), "{shown}");
}

/// The page's offers against the API's decision.
async fn check_offers(c: &Client, d: &Value) {
    assert_eq!(raw(c, "#outcome").await, d["outcome"].as_str().unwrap());
    let codes: Vec<String> = d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect();
    let shown: Vec<String> = serde_json::from_value(
        js(
            c,
            "return [...document.querySelectorAll('#decision-reasons li')].map(l => l.dataset.code);",
        )
        .await,
    )
    .unwrap();
    assert_eq!(shown, codes);
    let offers = d["offers"].as_array().unwrap();
    let col = |f: &dyn Fn(&Value) -> String| offers.iter().map(f).collect::<Vec<_>>();
    assert_eq!(
        column(c, "#offers", 0).await,
        col(&|o| o["product"].as_str().unwrap().to_owned())
    );
    assert_eq!(
        column(c, "#offers", 2).await,
        col(&|o| o["amount"].as_str().unwrap().to_owned())
    );
    assert_eq!(
        column(c, "#offers", 3).await,
        col(&|o| o["price"]["rate"].as_str().unwrap().to_owned())
    );
    assert_eq!(
        column(c, "#offers", 5).await,
        col(&|o| o["monthly_payment"].as_str().unwrap().to_owned())
    );
    assert_eq!(
        column(c, "#offers", 6).await,
        col(&|o| o["total_interest"].as_str().unwrap().to_owned())
    );
}

/// Accessibility basics: labelled inputs, charts with text alternatives, text contrast of
/// at least 4.5:1 (WCAG 2 relative luminance) against the first opaque background behind
/// it. Returns the violations.
const A11Y: &str = r#"
const out = [];
document.querySelectorAll('input, select, textarea').forEach(e => {
  if (e.type === 'hidden') return;
  if (!(e.labels && e.labels.length) && !e.getAttribute('aria-label')) out.push('unlabelled ' + (e.id || e.name));
});
document.querySelectorAll('svg, img').forEach(e => {
  const alt = e.getAttribute('alt') || e.getAttribute('aria-label');
  if (!alt) out.push('no text alternative: ' + e.outerHTML.slice(0, 60));
});
const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const bg = e => {
  for (; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.99)) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
document.querySelectorAll('body *').forEach(e => {
  const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own || !e.offsetParent && getComputedStyle(e).position !== 'fixed') return;
  const fg = rgb(getComputedStyle(e).color).slice(0, 3);
  const a = lum(fg), b = lum(bg(e));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) out.push('contrast ' + ratio.toFixed(2) + ' ' + e.tagName + ' ' + e.textContent.trim().slice(0, 30));
});
return out;
"#;

async fn accessible(c: &Client, page: &str) {
    let v = js(c, A11Y).await;
    assert_eq!(v, json!([]), "{page}: accessibility");
}

/// Every resource the page loaded came from the service itself.
async fn same_origin_only(c: &Client, srv: &Server) {
    let v = js(
        c,
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);",
    )
    .await;
    let origin = format!("http://{}/", srv.addr);
    for u in v.as_array().unwrap() {
        let u = u.as_str().unwrap();
        assert!(u.starts_with(&origin), "a request to another origin: {u}");
    }
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn screenshots(c: &Client, name: &str) {
    // The smallest phone the pages are made for, a common one, and a desktop.
    for (w, h) in [(360, 740), (390, 844), (1366, 768)] {
        c.set_window_size(w, h).await.unwrap();
        // Wide content would scroll the page sideways on a phone.
        let overflow = js(
            c,
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        )
        .await;
        if overflow.as_i64().unwrap() > 1 {
            let wide = js(
                c,
                "const w = document.documentElement.clientWidth; \
                 return [...document.querySelectorAll('body *')].filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > w + 1) \
                 .map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 8);",
            )
            .await;
            panic!("{name} at {w}×{h}: page wider than the screen by {overflow}px: {wide}");
        }
        let png = c.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(shots_dir().join(format!("{name}-{w}x{h}.png")), png).unwrap();
    }
    c.set_window_size(1366, 768).await.unwrap();
}

/// Presses Tab until the element of `id` has the focus: it is reachable by keyboard.
async fn tab_to(c: &Client, id: &str) {
    for _ in 0..60 {
        if js(
            c,
            "return document.activeElement && document.activeElement.id;",
        )
        .await
            == json!(id)
        {
            return;
        }
        c.active_element()
            .await
            .unwrap()
            .send_keys("\u{e004}")
            .await
            .unwrap();
    }
    panic!("#{id} cannot be reached with the Tab key");
}

/// Profiles of the fixture city at 12 month-ends, as the demo's serve file holds them.
fn monthly_profiles(dir: &Path) -> PathBuf {
    let out = dir.join("monthly.parquet");
    run_ok(&[
        "profile",
        "--ledger",
        fixture().ledger.to_str().unwrap(),
        "--from",
        "2025-07-31",
        "--to",
        "2026-06-30",
        "--out",
        out.to_str().unwrap(),
    ]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_the_apis_numbers_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = monthly_profiles(tmp.path());
    let srv = start(tmp.path(), &profiles, &[], &[]);
    let base = format!("http://{}", srv.addr);
    assert_eq!(
        srv.signin[1],
        format!("{base}/signin#key={}", srv.merchant_key)
    );
    assert_eq!(srv.signin[0], format!("{base}/signin#key={}", srv.lender));
    assert_eq!(
        srv.signin[2],
        format!("{base}/signin#key={}", srv.regulator)
    );

    // The pages' own headers: a strict policy, no inline script.
    let r = request_with(&srv.addr, "GET", "/merchant", &[], None);
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!r.body.contains("<script>") && !r.body.contains(" style="));

    // Signing in needs the page's header; a cross-site form cannot send it.
    let body = format!(r#"{{"key":"{}"}}"#, srv.merchant_key);
    let forged = request_with(&srv.addr, "POST", "/session", &[], Some(&body));
    assert_eq!(forged.status, 403, "{}", forged.body);

    let driver = chromedriver();
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let c = browser(&driver, &tmp.path().join("chromium"), &downloads).await;

    // ---- The merchant ------------------------------------------------------------------
    c.goto(&srv.signin[1]).await.unwrap();
    arrive(&c, "/merchant", true).await;
    assert_eq!(c.current_url().await.unwrap().path(), "/merchant");
    // The key never stays in the address bar.
    assert!(!c.current_url().await.unwrap().as_str().contains("yx_"));
    let mk = srv.merchant_key.as_str();
    let score = api(&srv, mk, "GET", "/v1/me/score", None);
    check_score(&c, &score).await;
    assert_eq!(score["merchant_id"], json!(srv.merchant));

    // The history: one dot per scored month-end, the same scores.
    let history = api(&srv, mk, "GET", "/v1/me/history", None);
    let want: Vec<(String, i64)> = history["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["score"].is_i64())
        .map(|p| {
            (
                p["as_of"].as_str().unwrap().to_owned(),
                p["score"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(history["points"].as_array().unwrap().len(), 12);
    let dots: Vec<(String, i64)> = serde_json::from_value::<Vec<(String, String)>>(
        js(
            &c,
            "return [...document.querySelectorAll('#chart circle')].map(d => [d.dataset.asOf, d.dataset.score]);",
        )
        .await,
    )
    .unwrap()
    .into_iter()
    .map(|(d, s)| (d, s.parse().unwrap()))
    .collect();
    assert_eq!(dots, want);
    assert_eq!(dots.last().unwrap().1, score["score"].as_i64().unwrap());

    // Can I borrow: the page's default request against the API's answer to it.
    let decision = api(
        &srv,
        mk,
        "GET",
        "/v1/me/eligibility?amount=200000&term_months=12&loan_purpose=working_capital",
        None,
    );
    check_offers(&c, &decision).await;
    let misses: Vec<(String, String)> = decision["near_misses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["product"].as_str().unwrap().to_owned(),
                n["failing_zh"][0].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let shown: Vec<(String, String)> = serde_json::from_value(
        js(
            &c,
            "return [...document.querySelectorAll('#misses li[data-product]')].map(l => [l.dataset.product, l.textContent]);",
        )
        .await,
    )
    .unwrap();
    assert_eq!(shown.len(), misses.len());
    for ((p, text), (want, why)) in shown.iter().zip(&misses) {
        assert_eq!(p, want);
        assert!(text.contains(why.as_str()), "{text} / {why}");
    }
    let hints: Vec<String> = decision["hints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text_zh"].as_str().unwrap().to_owned())
        .collect();
    let shown: Vec<String> = serde_json::from_value(
        js(
            &c,
            "return [...document.querySelectorAll('#hints li[data-feature]')].map(l => l.textContent);",
        )
        .await,
    )
    .unwrap();
    assert_eq!(shown, hints);

    // Chinese first, English on the switch.
    assert_eq!(
        js(&c, "return document.documentElement.lang;").await,
        "zh-CN"
    );
    assert_eq!(text(&c, "h1").await, "元信 · 我的融资");
    let public = score["public_grade"].as_str().unwrap();
    assert!(text(&c, "#meaning").await.contains('信'));
    accessible(&c, "merchant (zh)").await;
    screenshots(&c, "merchant-zh").await;
    // The whole page, for the README.
    let height = js(&c, "return document.documentElement.scrollHeight;").await;
    let height = u32::try_from(height.as_u64().unwrap().min(6000)).unwrap();
    c.set_window_size(1366, height).await.unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots_dir().join("merchant-zh-full.png"), png).unwrap();
    c.set_window_size(1366, 768).await.unwrap();
    click(&c, "#lang").await;
    until(&c, "English", "document.documentElement.lang === 'en'").await;
    assert_eq!(text(&c, "h1").await, "Yuanxin · My financing");
    assert!(text(&c, "#h-reasons").await.contains("holds my score down"));
    assert!(
        !text(&c, "#meaning").await.is_empty() && text(&c, "#meaning").await.is_ascii(),
        "grade {public} explained in English"
    );
    check_score(&c, &score).await;
    accessible(&c, "merchant (en)").await;
    screenshots(&c, "merchant-en").await;

    // By keyboard: Tab to the amount, type another, Enter submits.
    tab_to(&c, "amount").await;
    let amount = c.find(Locator::Id("amount")).await.unwrap();
    amount.clear().await.unwrap();
    amount.send_keys("50000\u{e007}").await.unwrap();
    let small = api(
        &srv,
        mk,
        "GET",
        "/v1/me/eligibility?amount=50000&term_months=12&loan_purpose=working_capital",
        None,
    );
    let first = small["offers"][0]["amount"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    until(
        &c,
        "the answer for 50,000",
        &format!(
            "document.querySelector('#borrow-status').textContent === '' && \
             (document.querySelector('#offers tbody tr td') || {{}}).dataset?.raw !== undefined && \
             ({first:?} === '' || document.querySelector('#offers tbody tr').cells[2].dataset.raw === {first:?})"
        ),
    )
    .await;
    check_offers(&c, &small).await;

    // Consents: grant one through the page, see it through the API, revoke it.
    select(&c, "#grant-purpose", "post_loan").await;
    let days = c.find(Locator::Id("grant-days")).await.unwrap();
    days.clear().await.unwrap();
    days.send_keys("30").await.unwrap();
    let before = api(&srv, mk, "GET", "/v1/me/consents", None)["items"]
        .as_array()
        .unwrap()
        .len();
    click(&c, "#grant button[type=submit]").await;
    until(
        &c,
        "the new consent",
        &format!(
            "document.querySelectorAll('#consents tbody tr[data-consent]').length === {}",
            before + 1
        ),
    )
    .await;
    let consents = api(&srv, mk, "GET", "/v1/me/consents", None);
    let new = consents["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(new["purpose"], "post_loan");
    assert_eq!(new["lender"]["code"], "ICBC-demo");
    assert_eq!(new["in_force"], true);
    let ids: Vec<String> = consents["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["lender"]["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(column(&c, "#consents", 0).await, ids);
    click(&c, &format!("button[data-consent='{}']", new["id"])).await;
    until(
        &c,
        "the revocation",
        &format!(
            "document.querySelector(\"tr[data-consent='{}']\").cells[4].dataset.raw === 'false'",
            new["id"]
        ),
    )
    .await;
    let after = api(&srv, mk, "GET", "/v1/me/consents", None);
    let revoked = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == new["id"])
        .unwrap();
    assert_eq!(revoked["in_force"], false);
    assert!(revoked["revoked_at"].is_string());

    // An objection through the page, seen through the API with its deadline.
    type_in(&c, "#dispute-subject", "credit_inquiries_90d").await;
    type_in(
        &c,
        "#dispute-detail",
        "Two of these inquiries were one application.",
    )
    .await;
    click(&c, "#dispute button[type=submit]").await;
    until(
        &c,
        "the objection",
        "document.querySelectorAll('#disputes tbody tr[data-dispute]').length === 1",
    )
    .await;
    let disputes = api(&srv, mk, "GET", "/v1/me/disputes", None);
    let d = &disputes["items"][0];
    assert_eq!(d["subject"], "credit_inquiries_90d");
    assert_eq!(
        raw(&c, "#disputes tbody tr td:nth-child(3)").await,
        d["deadline"].as_str().unwrap()
    );

    // A merchant's session reaches only its own data, and changes need the session's token.
    let other = if srv.merchant == "M0000001" {
        "M0000002"
    } else {
        "M0000001"
    };
    let probe = js(
        &c,
        &format!(
            "return (async () => {{
               const a = await fetch('/v1/merchants/{other}/score?purpose=pre_loan');
               const b = await fetch('/v1/me/consents', {{method: 'POST', headers: {{'Content-Type': 'application/json'}},
                 body: JSON.stringify({{lender: 'ICBC-demo', purpose: 'pre_loan', days: 5}})}});
               const me = await (await fetch('/v1/me/score')).json();
               return [a.status, b.status, (await b.json()).code, me.merchant_id];
             }})();"
        ),
    )
    .await;
    assert_eq!(probe, json!([403, 403, "csrf_failed", srv.merchant]));
    same_origin_only(&c, &srv).await;

    // Sign out: the cookie no longer opens anything.
    click(&c, "#signout").await;
    arrive(&c, "/signin", false).await;
    let after = js(&c, "return fetch('/v1/me/score').then(r => r.status);").await;
    assert_eq!(after, json!(401));
    accessible(&c, "sign-in").await;
    screenshots(&c, "signin").await;

    // ---- The lender --------------------------------------------------------------------
    c.goto(&srv.signin[0]).await.unwrap();
    arrive(&c, "/lender", true).await;
    assert_eq!(c.current_url().await.unwrap().path(), "/lender");
    let lk = srv.lender.as_str();
    let held = api(&srv, lk, "GET", "/v1/consents", None);
    let held_ids: Vec<String> = held["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["merchant_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(held_ids.contains(&srv.merchant));
    assert_eq!(column(&c, "#consents", 0).await, held_ids);

    // Look up the consenting merchant: the same score, and the receipt names its entry.
    type_in(&c, "#merchant", &srv.merchant).await;
    click(&c, "#lookup button[type=submit]").await;
    until(&c, "the score", "!document.querySelector('#result').hidden").await;
    let lender_score = api(
        &srv,
        lk,
        "GET",
        &format!("/v1/merchants/{}/score?purpose=pre_loan", srv.merchant),
        None,
    );
    check_score(&c, &lender_score).await;
    let index = raw(&c, "#log-index").await;
    let entry = api(&srv, lk, "GET", &format!("/v1/log/entries/{index}"), None);
    assert_eq!(
        entry["entry"]["merchant_id"],
        json!(srv.merchant),
        "{entry}"
    );
    assert_eq!(entry["entry"]["action"], "score");

    // Eligibility through the console, against the API's answer to the same request.
    click(&c, "#eligibility button[type=submit]").await;
    until(
        &c,
        "the decision",
        "document.querySelector('#outcome').dataset.raw",
    )
    .await;
    let body = r#"{"amount":"200000","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}"#;
    let decision = api(
        &srv,
        lk,
        "POST",
        &format!("/v1/merchants/{}/eligibility", srv.merchant),
        Some(body),
    );
    check_offers(&c, &decision).await;

    // A merchant without consent is refused, on the page as through the API.
    let input = c.find(Locator::Id("merchant")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(other).await.unwrap();
    click(&c, "#lookup button[type=submit]").await;
    until(
        &c,
        "the refusal",
        "document.querySelector('#lookup-status').className === 'error'",
    )
    .await;
    assert!(document_hidden(&c, "#result").await);
    let (status, _, _) = http(
        &srv.addr,
        "GET",
        &format!("/v1/merchants/{other}/score?purpose=pre_loan"),
        Some(lk),
        None,
    );
    assert_eq!(status, 403);

    // A portfolio file in, the results as the API gives them, and a CSV out.
    let csv = tmp.path().join("portfolio.csv");
    std::fs::write(&csv, format!("merchant_id\n{}\n{other}\n", srv.merchant)).unwrap();
    select(&c, "#portfolio-purpose", "pre_loan").await;
    type_in(&c, "#portfolio-file", csv.to_str().unwrap()).await;
    click(&c, "#portfolio button[type=submit]").await;
    until(
        &c,
        "the portfolio",
        "!document.querySelector('#download').hidden",
    )
    .await;
    let batch = api(
        &srv,
        lk,
        "POST",
        "/v1/portfolio/score",
        Some(&format!(
            r#"{{"purpose":"pre_loan","merchants":["{}","{other}"]}}"#,
            srv.merchant
        )),
    );
    let statuses: Vec<String> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(column(&c, "#portfolio-results", 1).await, statuses);
    assert_eq!(
        column(&c, "#portfolio-results", 2).await[0],
        batch["results"][0]["score"]["score"].to_string()
    );
    click(&c, "#download").await;
    // Chromium tells no one but the file system that a download has finished (it renames
    // the partial file): the test looks for the file, up to a deadline.
    let file = downloads.join("portfolio-scores.csv");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !file.exists() {
        assert!(
            Instant::now() < deadline,
            "no download at {}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let download = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = download.lines().collect();
    assert_eq!(lines.len(), 3, "{download}");
    assert!(lines[1].starts_with(&format!(
        "{},served,{},",
        srv.merchant, batch["results"][0]["score"]["score"]
    )));

    // Alerts with their evidence, as the API lists them.
    select(&c, "#alerts-purpose", "pre_loan").await;
    click(&c, "#alerts-form button[type=submit]").await;
    let alerts = api(
        &srv,
        lk,
        "GET",
        "/v1/alerts?purpose=pre_loan&limit=500",
        None,
    );
    let codes: Vec<String> = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["alert"]["alerts"].as_array().unwrap().clone())
        .map(|a| a["code"].as_str().unwrap().to_owned())
        .collect();
    until(
        &c,
        "the alerts",
        &format!(
            "document.querySelectorAll('#alerts tbody tr[data-code]').length === {}",
            codes.len()
        ),
    )
    .await;
    assert_eq!(column(&c, "#alerts", 2).await, codes);

    // The language chosen on the merchant's page is remembered by the browser.
    assert_eq!(js(&c, "return document.documentElement.lang;").await, "en");
    assert_eq!(text(&c, "h1").await, "Yuanxin · Loan officer console");
    accessible(&c, "lender (en)").await;
    same_origin_only(&c, &srv).await;
    screenshots(&c, "lender-en").await;
    click(&c, "#lang").await;
    until(&c, "Chinese", "document.documentElement.lang === 'zh-CN'").await;
    assert_eq!(text(&c, "h1").await, "元信 · 信贷员工作台");
    // The refused merchant's lookup left nothing of the earlier one on screen.
    assert!(document_hidden(&c, "#result").await);
    let input = c.find(Locator::Id("merchant")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(&srv.merchant).await.unwrap();
    click(&c, "#lookup button[type=submit]").await;
    until(&c, "the score", "!document.querySelector('#result').hidden").await;
    check_score(&c, &lender_score).await;
    accessible(&c, "lender (zh)").await;
    screenshots(&c, "lender-zh").await;

    // The merchant sees the lender's queries on its page.
    c.goto(&srv.signin[1]).await.unwrap();
    arrive(&c, "/merchant", true).await;
    let queries = api(&srv, mk, "GET", "/v1/me/queries?limit=20", None);
    let who: Vec<String> = queries["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["institution"]["code"].as_str().unwrap().to_owned())
        .collect();
    assert!(!who.is_empty());
    assert_eq!(column(&c, "#queries", 1).await, who);
    c.close().await.unwrap();
}

async fn document_hidden(c: &Client, css: &str) -> bool {
    js(
        c,
        &format!("return document.querySelector({css:?}).hidden;"),
    )
    .await
    .as_bool()
    .unwrap()
}

/// The regulator's dashboard shows the report's figures for the key's district alone, a
/// month chosen from those reported, and the district's watch list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_regulators_dashboard_shows_its_districts_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    for month in ["2026-05", "2026-06"] {
        common::monthly_report_ok(
            &fixture().ledger,
            &reports.join(format!("monthly-{month}")),
            &["--month", month, "--months", "6", "--no-pdf"],
        );
    }
    let srv = start(
        &tmp.path().join("srv"),
        &fixture().latest,
        &[],
        &[("YUANXIN_REPORTS", reports.to_str().unwrap())],
    );
    let key = new_key(&srv, "regulator", "NANSHAN");
    let report = api(
        &srv,
        &key,
        "GET",
        "/v1/regulator/report?month=2026-06",
        None,
    );
    let now = report["figures"]["months"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let cells: Vec<&Value> = now["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["merchants"].as_u64() > Some(0) || c["closed_in_month"].as_u64() > Some(0))
        .collect();
    let trading: u64 = cells.iter().map(|c| c["merchants"].as_u64().unwrap()).sum();

    let driver = chromedriver();
    let c = browser(
        &driver,
        &tmp.path().join("chromium"),
        &tmp.path().join("dl"),
    )
    .await;
    c.goto(&format!("http://{}/signin#key={key}", srv.addr))
        .await
        .unwrap();
    arrive(&c, "/regulator", true).await;
    // The newest month is shown first; both are offered.
    let months = js(
        &c,
        "return [...document.querySelectorAll('#month option')].map(o => o.value);",
    )
    .await;
    assert_eq!(months, json!(["2026-06", "2026-05"]));
    assert_eq!(raw(&c, "#scope").await, "NANSHAN");
    assert_eq!(raw(&c, "#k-trading").await, trading.to_string());
    assert_eq!(raw(&c, "#k-watch").await, report["watch_count"].to_string());
    let districts = column(&c, "#cells", 0).await;
    assert_eq!(districts.len(), cells.len());
    assert!(districts.iter().all(|d| d == "NANSHAN"), "{districts:?}");
    let watched = column(&c, "#watch", 1).await;
    assert_eq!(
        watched.len() as u64,
        report["watch_count"].as_u64().unwrap().min(50)
    );
    assert!(watched.iter().all(|d| d == "NANSHAN"));
    let dots = js(
        &c,
        "return document.querySelectorAll('#trend-pd circle').length;",
    )
    .await;
    assert_eq!(dots, json!(6), "one dot per month of the trend");
    accessible(&c, "regulator").await;
    same_origin_only(&c, &srv).await;
    screenshots(&c, "regulator").await;
    // The other month, chosen.
    select(&c, "#month", "2026-05").await;
    click(&c, "#pick button[type=submit]").await;
    until(
        &c,
        "the May report",
        "document.getElementById('as-of').dataset.raw === '2026-05-31'",
    )
    .await;
    c.close().await.unwrap();
}

fn session_cookie(r: &common::service::Resp) -> String {
    let c = r.header("set-cookie").expect("a session cookie");
    c.split(';').next().unwrap().to_owned()
}

#[test]
fn sessions_follow_their_key_and_their_cookies_suit_the_transport() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(tmp.path(), &fixture().latest, &[], &[]);
    let a = srv.addr.as_str();
    let body = format!(r#"{{"key":"{}"}}"#, srv.merchant_key);
    let signin = |extra: &[(&str, &str)]| {
        let mut h = vec![("X-Yuanxin-Signin", "1")];
        h.extend_from_slice(extra);
        request_with(a, "POST", "/session", &h, Some(&body))
    };

    // Plain HTTP: HttpOnly and SameSite=Strict, not Secure; behind a TLS proxy, Secure.
    let r = signin(&[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "{set}");
    let r = signin(&[("X-Forwarded-Proto", "https")]);
    assert!(r.header("set-cookie").unwrap().contains("; Secure"));

    // A wrong key, or an origin that is not this one, opens nothing.
    let wrong = request_with(
        a,
        "POST",
        "/session",
        &[("X-Yuanxin-Signin", "1")],
        Some(r#"{"key":"yx_000000000000_nope"}"#),
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let elsewhere = signin(&[("Origin", "https://evil.example")]);
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.body);
    assert!(elsewhere.body.contains("csrf_failed"));
    // An analyst has no pages (yet): refused with a reason, not a session.
    let analyst = request_with(
        a,
        "POST",
        "/session",
        &[("X-Yuanxin-Signin", "1")],
        Some(&format!(r#"{{"key":"{}"}}"#, srv.analyst)),
    );
    assert_eq!(analyst.status, 403, "{}", analyst.body);
    assert!(analyst.header("set-cookie").is_none());

    // The session answers as its key does; the anti-forgery token comes from /session.
    let cookie = session_cookie(&signin(&[]));
    let get = |path: &str| request_with(a, "GET", path, &[("Cookie", &cookie)], None);
    let me = get("/session");
    assert_eq!(me.status, 200);
    let me = value(&me.body);
    assert_eq!(me["role"], "merchant");
    assert_eq!(me["code"], json!(srv.merchant));
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(get("/v1/me/score").status, 200);
    let grant = r#"{"lender":"ICBC-demo","purpose":"post_loan","days":7}"#;
    let with = |token: &str| {
        request_with(
            a,
            "POST",
            "/v1/me/consents",
            &[("Cookie", &cookie), ("X-CSRF-Token", token)],
            Some(grant),
        )
    };
    assert_eq!(with("0".repeat(64).as_str()).status, 403);
    assert_eq!(with(&csrf).status, 201);

    // Revoking the key ends its sessions from the next request.
    let key_id = srv.merchant_key.split('_').nth(1).unwrap();
    let (s, _, b) = http(
        a,
        "DELETE",
        &format!("/v1/admin/keys/{key_id}"),
        Some(&srv.admin),
        None,
    );
    assert!((200..300).contains(&s), "{s} {b}");
    assert_eq!(get("/v1/me/score").status, 401);
    assert_eq!(get("/session").status, 401);

    // Signing out ends a session; bearer keys never needed one.
    let lender = request_with(
        a,
        "POST",
        "/session",
        &[("X-Yuanxin-Signin", "1")],
        Some(&format!(r#"{{"key":"{}"}}"#, srv.lender)),
    );
    let cookie = session_cookie(&lender);
    let token = value(&request_with(a, "GET", "/session", &[("Cookie", &cookie)], None).body)
        ["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = request_with(
        a,
        "DELETE",
        "/session",
        &[("Cookie", &cookie), ("X-CSRF-Token", &token)],
        None,
    );
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = request_with(a, "GET", "/v1/consents", &[("Cookie", &cookie)], None);
    assert_eq!(after.status, 401);
    let (s, _, _) = http(a, "GET", "/v1/consents", Some(&srv.lender), None);
    assert_eq!(s, 200);
}
