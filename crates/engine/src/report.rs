//! The monthly report to the task force (plan section 四(四): every district and department
//! reports the month's progress by the 25th): one self-contained HTML page with SVG charts,
//! in Chinese with English headings, and its tables as CSV files beside it. Rendered from
//! a [`MonthlyReport`] alone, with nothing from the clock, so the same figures give the
//! same bytes (a report reproduced with `--known-at` is the report written that day).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use yuanxin_domain::{District, Industry};

use crate::monitor::{
    Cell, Financing, Loans, Month, MonthlyReport, ALERT_CODES, LISTED, TRAINING, TRAINING_TARGET,
};
use crate::EngineError;

/// Writes `report.html` and the CSV tables into `out` (made if missing); returns the
/// files written, in order.
pub fn write_monthly(report: &MonthlyReport, out: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let io = |path: &Path, e: std::io::Error| EngineError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let files = [
        ("report.html", html(report)),
        ("coverage.csv", coverage_csv(report)),
        ("training.csv", training_csv(report)),
        ("gaps.csv", gaps_csv(report)),
        ("risk.csv", risk_csv(report)),
        ("watchlist.csv", watch_csv(report)),
        ("financing.csv", financing_csv(report)),
        ("loans.csv", loans_csv(report)),
        ("report.json", json(report)?),
    ];
    let mut written = Vec::new();
    for (name, body) in files {
        let path = out.join(name);
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// The figures as JSON (what the service's regulator routes read).
fn json(report: &MonthlyReport) -> Result<String, EngineError> {
    serde_json::to_string(report).map_err(|e| EngineError::Profiles {
        path: PathBuf::from("report.json"),
        why: e.to_string(),
    })
}

// ---- numbers as shown ----

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), |v| format!("{:.1}%", v * 100.0))
}

fn pd(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), |v| format!("{:.2}%", v * 100.0))
}

fn ratio_csv(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| format!("{v:.6}"))
}

/// Yuan with thousands separators, whole yuan in tables (the CSV keeps the fen).
fn money(d: Decimal) -> String {
    let whole = d.round_dp(0).to_string();
    let (sign, digits) = whole
        .strip_prefix('-')
        .map_or(("", whole.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn delta_count(now: u64, before: Option<u64>) -> String {
    match before {
        None => String::new(),
        Some(b) if now >= b => format!("+{}", now - b),
        Some(b) => format!("−{}", b - now),
    }
}

fn delta_money(now: Decimal, before: Option<Decimal>) -> String {
    match before {
        None => String::new(),
        Some(b) if now >= b => format!("+{}", money(now - b)),
        Some(b) => format!("−{}", money(b - now)),
    }
}

fn delta_points(now: Option<f64>, before: Option<f64>, scale: f64, unit: &str) -> String {
    match (now, before) {
        (Some(a), Some(b)) => {
            let d = (a - b) * scale;
            let sign = if d < 0.0 { "−" } else { "+" };
            format!("{sign}{:.2}{unit}", d.abs())
        }
        _ => String::new(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

// ---- CSV ----

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_line(out: &mut String, fields: &[String]) {
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&line.join(","));
    out.push('\n');
}

fn cell_of(m: &Month, d: District, i: Industry) -> Cell {
    m.cells.get(&(d, i)).cloned().unwrap_or_default()
}

fn coverage_csv(r: &MonthlyReport) -> String {
    let mut out = String::new();
    csv_line(
        &mut out,
        &[
            "as_of",
            "district",
            "district_zh",
            "industry",
            "industry_zh",
            "merchants",
            "on_escrow",
            "coverage_rate",
            "active_contracts",
            "prepaid_liability",
            "escrow_frozen",
            "uncovered_liability",
            "escrow_coverage",
        ]
        .map(str::to_owned),
    );
    let Some(m) = r.current() else { return out };
    for d in r.districts() {
        for i in Industry::ALL {
            let c = cell_of(m, d, *i);
            csv_line(
                &mut out,
                &[
                    m.as_of.to_string(),
                    d.as_str().to_owned(),
                    d.name_zh().to_owned(),
                    i.as_str().to_owned(),
                    i.name_zh().to_owned(),
                    c.merchants.to_string(),
                    c.on_escrow.to_string(),
                    ratio_csv(c.coverage_rate()),
                    c.active_contracts.to_string(),
                    c.prepaid_liability.to_string(),
                    c.escrow_frozen.to_string(),
                    c.uncovered_liability.to_string(),
                    ratio_csv(c.escrow_coverage()),
                ],
            );
        }
    }
    out
}

/// Training institutions on 元管家, per district and for the report's scope.
fn training_rows(r: &MonthlyReport) -> Vec<(String, String, Cell)> {
    let Some(m) = r.current() else {
        return Vec::new();
    };
    let mut rows: Vec<(String, String, Cell)> = r
        .districts()
        .into_iter()
        .map(|d| {
            let c = m.total(|dd, i| dd == d && TRAINING.contains(&i));
            (d.as_str().to_owned(), d.name_zh().to_owned(), c)
        })
        .collect();
    if r.district.is_none() {
        let c = m.total(|_, i| TRAINING.contains(&i));
        rows.push(("ALL".into(), "全市".into(), c));
    }
    rows
}

fn training_csv(r: &MonthlyReport) -> String {
    let mut out = String::new();
    csv_line(
        &mut out,
        &[
            "district",
            "district_zh",
            "training_merchants",
            "on_escrow",
            "coverage_rate",
            "target",
            "met",
        ]
        .map(str::to_owned),
    );
    for (code, zh, c) in training_rows(r) {
        let rate = c.coverage_rate();
        csv_line(
            &mut out,
            &[
                code,
                zh,
                c.merchants.to_string(),
                c.on_escrow.to_string(),
                ratio_csv(rate),
                format!("{TRAINING_TARGET:.2}"),
                rate.map_or(String::new(), |x| (x >= TRAINING_TARGET).to_string()),
            ],
        );
    }
    out
}

fn gaps_csv(r: &MonthlyReport) -> String {
    let mut out = String::new();
    csv_line(
        &mut out,
        &[
            "district",
            "district_zh",
            "industry",
            "industry_zh",
            "merchants",
        ]
        .map(str::to_owned),
    );
    let current = r.current();
    for (d, i) in r.gaps() {
        let n = current.map_or(0, |m| cell_of(m, d, i).merchants);
        csv_line(
            &mut out,
            &[
                d.as_str().to_owned(),
                d.name_zh().to_owned(),
                i.as_str().to_owned(),
                i.name_zh().to_owned(),
                n.to_string(),
            ],
        );
    }
    out
}

fn risk_csv(r: &MonthlyReport) -> String {
    let mut out = String::new();
    let mut head: Vec<String> = ["as_of", "district", "industry", "merchants", "graded"]
        .map(str::to_owned)
        .to_vec();
    head.extend(r.grade_names.iter().map(|g| format!("grade_{g}")));
    head.extend(
        [
            "mean_pd",
            "prepaid_liability",
            "uncovered_liability",
            "escrow_coverage",
            "on_escrow",
            "complaints_90d",
            "closure_refund_complaints_30d",
            "refund_backlog",
            "refund_requests",
            "closed_in_month",
            "closed_with_liability",
            "closed_liability",
        ]
        .map(str::to_owned),
    );
    head.extend(ALERT_CODES.iter().map(|c| format!("alerts_{c}")));
    csv_line(&mut out, &head);
    for m in &r.months {
        for ((d, i), c) in &m.cells {
            if c.merchants == 0 && c.closed_in_month == 0 && c.refund_requests == 0 {
                continue;
            }
            let mut row = vec![
                m.as_of.to_string(),
                d.as_str().to_owned(),
                i.as_str().to_owned(),
                c.merchants.to_string(),
                c.graded().to_string(),
            ];
            row.extend(c.grades.iter().map(u64::to_string));
            row.extend([
                ratio_csv(c.mean_pd()),
                c.prepaid_liability.to_string(),
                c.uncovered_liability.to_string(),
                ratio_csv(c.escrow_coverage()),
                c.on_escrow.to_string(),
                c.complaints_90d.to_string(),
                c.closure_refund_complaints_30d.to_string(),
                c.refund_backlog.to_string(),
                c.refund_requests.to_string(),
                c.closed_in_month.to_string(),
                c.closed_with_liability.to_string(),
                c.closed_liability.to_string(),
            ]);
            row.extend(
                ALERT_CODES
                    .iter()
                    .map(|a| c.alerts.get(*a).copied().unwrap_or(0).to_string()),
            );
            csv_line(&mut out, &row);
        }
    }
    out
}

fn watch_csv(r: &MonthlyReport) -> String {
    let mut out = String::new();
    csv_line(
        &mut out,
        &[
            "merchant_id",
            "district",
            "industry",
            "grade",
            "pd",
            "closed_on",
            "prepaid_liability",
            "uncovered_liability",
            "alerts",
            "evidence_zh",
            "evidence_en",
        ]
        .map(str::to_owned),
    );
    for w in &r.watch {
        let join = |f: &dyn Fn(&crate::monitor::Evidence) -> String| {
            w.evidence.iter().map(f).collect::<Vec<_>>().join("; ")
        };
        csv_line(
            &mut out,
            &[
                w.merchant_id.clone(),
                w.district.as_str().to_owned(),
                w.industry.as_str().to_owned(),
                w.grade.clone().unwrap_or_default(),
                ratio_csv(w.pd),
                w.closed_on.map(|d| d.to_string()).unwrap_or_default(),
                w.prepaid_liability.to_string(),
                w.uncovered_liability.to_string(),
                join(&|e| e.code.clone()),
                join(&|e| e.text_zh.clone()),
                join(&|e| e.text_en.clone()),
            ],
        );
    }
    out
}

/// The standing offers and the month's loans, per district and for the report's scope.
fn financing_rows(r: &MonthlyReport) -> Vec<(String, String, Cell, Financing, Loans)> {
    let Some(m) = r.current() else {
        return Vec::new();
    };
    let mut rows: Vec<_> = r
        .districts()
        .into_iter()
        .map(|d| {
            (
                d.as_str().to_owned(),
                d.name_zh().to_owned(),
                m.total(|dd, _| dd == d),
                r.financing_total(|dd| dd == d),
                m.loans_total(|dd| dd == d),
            )
        })
        .collect();
    if r.district.is_none() {
        rows.push((
            "ALL".into(),
            "全市".into(),
            m.total(|_, _| true),
            r.financing_total(|_| true),
            m.loans_total(|_| true),
        ));
    }
    rows
}

fn dec_csv(x: Option<Decimal>) -> String {
    x.map_or_else(String::new, |d| d.to_string())
}

fn financing_csv(r: &MonthlyReport) -> String {
    let mut out = String::new();
    csv_line(
        &mut out,
        &[
            "district",
            "district_zh",
            "trading",
            "decided",
            "approved",
            "referred",
            "declined",
            "undecided",
            "matched",
            "offered_amount",
            "mean_rate",
            "mean_rate_after_support",
            "support_interest",
            "loans",
            "borrowers",
            "loan_amount",
            "loan_mean_rate",
        ]
        .map(str::to_owned),
    );
    for (code, zh, c, f, l) in financing_rows(r) {
        let rates = f.mean_rates();
        csv_line(
            &mut out,
            &[
                code,
                zh,
                c.merchants.to_string(),
                f.decided.to_string(),
                f.approved.to_string(),
                f.referred.to_string(),
                f.declined.to_string(),
                f.undecided.to_string(),
                f.matched.to_string(),
                f.offered_amount.to_string(),
                dec_csv(rates.map(|x| x.0)),
                dec_csv(rates.map(|x| x.1)),
                f.support_interest.to_string(),
                l.loans.to_string(),
                l.merchants.to_string(),
                l.amount.to_string(),
                dec_csv(l.mean_rate()),
            ],
        );
    }
    out
}

fn loans_csv(r: &MonthlyReport) -> String {
    let mut out = String::new();
    csv_line(
        &mut out,
        &["as_of", "district", "lender", "loans", "amount"].map(str::to_owned),
    );
    for m in &r.months {
        for (d, l) in &m.loans {
            for (lender, (n, amount)) in &l.by_lender {
                csv_line(
                    &mut out,
                    &[
                        m.as_of.to_string(),
                        d.as_str().to_owned(),
                        lender.clone(),
                        n.to_string(),
                        amount.to_string(),
                    ],
                );
            }
        }
    }
    out
}

// ---- SVG charts ----

const PALETTE: [&str; 8] = [
    "#1a7f37", "#4d9f3a", "#9fbf3b", "#e3b341", "#e8793a", "#cf3a2b", "#8e1b1b", "#555555",
];

/// Horizontal bars, one per label, with an optional target line.
fn bars(title: &str, items: &[(String, f64, String)], max: f64, target: Option<f64>) -> String {
    let (row, left, width) = (22.0, 150.0, 360.0);
    let height = 30.0 + row * items.len() as f64;
    let max = if max > 0.0 { max } else { 1.0 };
    let mut s = format!(
        r#"<svg class="chart" role="img" aria-label="{t}" viewBox="0 0 620 {height}" width="620" height="{height}"><text x="0" y="14" class="ct">{t}</text>"#,
        t = esc(title)
    );
    for (k, (label, v, shown)) in items.iter().enumerate() {
        let y = 24.0 + row * k as f64;
        let w = (v / max).clamp(0.0, 1.0) * width;
        let _ = write!(
            s,
            r##"<text x="{lx}" y="{ty}" text-anchor="end">{l}</text><rect x="{left}" y="{y}" width="{w:.1}" height="14" fill="#2f6fb3"/><text x="{vx:.1}" y="{ty}">{v}</text>"##,
            lx = left - 6.0,
            ty = y + 11.0,
            l = esc(label),
            vx = left + w + 4.0,
            v = esc(shown),
        );
    }
    if let Some(t) = target {
        let x = left + (t / max).clamp(0.0, 1.0) * width;
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="20" x2="{x:.1}" y2="{y2}" stroke="#cf3a2b" stroke-dasharray="4 3"/><text x="{x:.1}" y="{y3}" fill="#cf3a2b" text-anchor="middle">{p}</text>"##,
            y2 = height - 6.0,
            y3 = height,
            p = pct(Some(t)),
        );
    }
    s.push_str("</svg>");
    s
}

/// One stacked bar per label (shares of each part), with a legend.
fn stacked(title: &str, rows: &[(String, Vec<u64>)], names: &[String]) -> String {
    let (row, left, width) = (22.0, 150.0, 400.0);
    let height = 50.0 + row * rows.len() as f64;
    let mut s = format!(
        r#"<svg class="chart" role="img" aria-label="{t}" viewBox="0 0 620 {height}" width="620" height="{height}"><text x="0" y="14" class="ct">{t}</text>"#,
        t = esc(title)
    );
    for (k, n) in names.iter().enumerate() {
        let x = left + 50.0 * k as f64;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="22" width="12" height="12" fill="{c}"/><text x="{tx}" y="32">{n}</text>"#,
            c = PALETTE[k.min(PALETTE.len() - 1)],
            tx = x + 16.0,
            n = esc(n),
        );
    }
    for (k, (label, parts)) in rows.iter().enumerate() {
        let y = 44.0 + row * k as f64;
        let total: u64 = parts.iter().sum();
        let _ = write!(
            s,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{l}</text>"#,
            lx = left - 6.0,
            ty = y + 11.0,
            l = esc(label)
        );
        let mut x = left;
        for (j, p) in parts.iter().enumerate() {
            if total == 0 || *p == 0 {
                continue;
            }
            let w = *p as f64 / total as f64 * width;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="14" fill="{c}"><title>{n}: {p}</title></rect>"#,
                c = PALETTE[j.min(PALETTE.len() - 1)],
                n = esc(names.get(j).map_or("", String::as_str)),
            );
            x += w;
        }
    }
    s.push_str("</svg>");
    s
}

/// A line over the trend months, on the axis `domain` (or the values' own range).
fn line(
    title: &str,
    points: &[(String, Option<f64>)],
    shown: &dyn Fn(f64) -> String,
    domain: Option<(f64, f64)>,
) -> String {
    let (left, top, width, height) = (70.0, 24.0, 520.0, 140.0);
    let vals: Vec<f64> = points.iter().filter_map(|p| p.1).collect();
    let (lo, hi) = vals
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let (lo, hi) = match domain {
        Some((a, b)) => (a.min(lo), b.max(hi)),
        None if vals.is_empty() => (0.0, 1.0),
        None if hi - lo < 1e-12 => {
            let pad = (lo.abs() * 0.1).max(1e-6);
            (lo - pad, hi + pad)
        }
        None => (lo, hi),
    };
    let n = points.len().max(2) - 1;
    let xy = |k: usize, v: f64| {
        (
            left + width * k as f64 / n as f64,
            top + height * (1.0 - (v - lo) / (hi - lo)),
        )
    };
    let mut s = format!(
        r##"<svg class="chart" role="img" aria-label="{t}" viewBox="0 0 620 200" width="620" height="200"><text x="0" y="14" class="ct">{t}</text><line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><text x="{lx}" y="{ty}" text-anchor="end">{hi_s}</text><text x="{lx}" y="{b}" text-anchor="end">{lo_s}</text>"##,
        t = esc(title),
        b = top + height,
        r = left + width,
        lx = left - 4.0,
        ty = top + 4.0,
        hi_s = esc(&shown(hi)),
        lo_s = esc(&shown(lo)),
    );
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .filter_map(|(k, (_, v))| v.map(|v| xy(k, v)))
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = write!(
        s,
        r##"<polyline fill="none" stroke="#2f6fb3" stroke-width="2" points="{}"/>"##,
        path.join(" ")
    );
    for (k, (label, v)) in points.iter().enumerate() {
        let (x, _) = xy(k, lo);
        if k % 2 == n % 2 {
            let _ = write!(
                s,
                r#"<text x="{x:.1}" y="{y}" text-anchor="middle">{l}</text>"#,
                y = top + height + 16.0,
                l = esc(label.get(..7).unwrap_or(label)),
            );
        }
        if let Some(v) = v {
            let (x, y) = xy(k, *v);
            let _ = write!(
                s,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="#2f6fb3"><title>{l}: {v}</title></circle>"##,
                l = esc(label),
                v = esc(&shown(*v)),
            );
        }
    }
    s.push_str("</svg>");
    s
}

// ---- the page ----

const STYLE: &str = "body{font-family:'Noto Sans CJK SC','Noto Sans SC','Source Han Sans SC','PingFang SC','Microsoft YaHei',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:2px solid #2f6fb3;padding-bottom:.2em;margin-top:2em}
h2 small,h3 small,h1 small,th small{color:#666;font-weight:normal;font-size:.7em;display:block}
table{border-collapse:collapse;margin:1em 0;font-size:.8em}th,td{border:1px solid #ccc;padding:.25em .4em;text-align:right}td{white-space:nowrap}
th{background:#eef3f8}td:first-child,th:first-child{text-align:left}
.kpi{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}.kpi div{border:1px solid #ccc;border-radius:6px;padding:.5em .8em;min-width:150px}
.kpi b{display:block;font-size:1.3em}.kpi small{color:#666}.meta{color:#555;font-size:.9em}
svg.chart{font-size:11px;display:block;margin:1em 0}svg .ct{font-weight:bold;font-size:12px}
.bad{color:#cf3a2b}.good{color:#1a7f37}
@media print{body{margin:0;max-width:none}h2{break-before:auto}table,svg{break-inside:avoid}}";

fn th(zh: &str, en: &str) -> String {
    format!("<th>{}<small>{}</small></th>", esc(zh), esc(en))
}

fn kpi(out: &mut String, zh: &str, en: &str, value: &str, change: &str) {
    let _ = write!(
        out,
        "<div><small>{} · {}</small><b>{}</b><small>{}</small></div>",
        esc(zh),
        esc(en),
        esc(value),
        if change.is_empty() {
            String::new()
        } else {
            format!("环比 MoM {}", esc(change))
        }
    );
}

/// The report page.
pub fn html(r: &MonthlyReport) -> String {
    let mut o = String::new();
    let scope_zh = r.district.map_or("全市", District::name_zh);
    let scope_en = r
        .district
        .map_or("Shenzhen, all districts", District::as_str);
    let Some(now) = r.current() else {
        return String::from("<!doctype html><p>No month to report.</p>");
    };
    let before = r.previous();
    let (y, mo) = r.month.split_once('-').unwrap_or((&r.month, ""));
    let _ = write!(
        o,
        r#"<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>预付式经营数字人民币试点月度报告 {month} · {scope_zh}</title><style>{STYLE}</style></head><body>
<h1>深圳市预付式经营数字人民币试点 · 月度报告<small>Monthly report of the e-CNY prepaid-consumption pilot</small></h1>
<p class="meta">{y}年{mo}月 · {scope_zh} ({scope_en}) · 数据截至 as of {as_of} · 知识时点 known at {known} · 评分模型 model {model} · 报送截止 due {due}</p>"#,
        month = esc(&r.month),
        scope_zh = esc(scope_zh),
        scope_en = esc(scope_en),
        as_of = now.as_of,
        known = esc(&r.known_at),
        model = esc(&r.model_id),
        due = due_date(&r.month),
    );
    // Headline figures.
    let all = |m: &Month| m.total(|_, _| true);
    let (t, p) = (all(now), before.map(all));
    o.push_str(r#"<div class="kpi">"#);
    kpi(
        &mut o,
        "在营预付式经营主体",
        "Trading merchants",
        &t.merchants.to_string(),
        &delta_count(t.merchants, p.as_ref().map(|c| c.merchants)),
    );
    kpi(
        &mut o,
        "接入元管家",
        "On 元管家",
        &format!("{} ({})", t.on_escrow, pct(t.coverage_rate())),
        &delta_count(t.on_escrow, p.as_ref().map(|c| c.on_escrow)),
    );
    kpi(
        &mut o,
        "预付负债 (元)",
        "Prepaid liability (yuan)",
        &money(t.prepaid_liability),
        &delta_money(t.prepaid_liability, p.as_ref().map(|c| c.prepaid_liability)),
    );
    kpi(
        &mut o,
        "未被存管覆盖 (元)",
        "Not covered by escrow (yuan)",
        &money(t.uncovered_liability),
        &delta_money(
            t.uncovered_liability,
            p.as_ref().map(|c| c.uncovered_liability),
        ),
    );
    kpi(
        &mut o,
        "平均违约概率",
        "Mean PD",
        &pd(t.mean_pd()),
        &delta_points(
            t.mean_pd(),
            p.as_ref().and_then(Cell::mean_pd),
            100.0,
            " pp",
        ),
    );
    kpi(
        &mut o,
        "本月闭店且尚欠预付款",
        "Closed this month owing prepayments",
        &format!(
            "{} · {} 元",
            t.closed_with_liability,
            money(t.closed_liability)
        ),
        &delta_count(
            t.closed_with_liability,
            p.as_ref().map(|c| c.closed_with_liability),
        ),
    );
    kpi(
        &mut o,
        "风险监测名单",
        "Watch list",
        &r.watch.len().to_string(),
        "",
    );
    o.push_str("</div>");

    coverage_section(&mut o, r, now, before);
    risk_section(&mut o, r, now, before);
    trend_section(&mut o, r);
    watch_section(&mut o, r);
    financing_section(&mut o, r);

    let _ = write!(
        o,
        r#"<h2>口径说明<small>Method</small></h2><p class="meta">每月数据取自月末(或知识时点当日,取较早者)的信用画像,只使用知识时点前已入账的数据;评级与违约概率来自在用模型 {model};预警规则与放贷机构所见预警同一实现(不含需上次查看记录的“评级下调”)。“接入元管家”指该日前已开通数字人民币预付资金管理的主体;预付负债为已预付未履约未退款的金额;“未被存管覆盖”为预付负债减去冻结资金。闭店指已无在营门店。表格数据见同目录 CSV 文件。<br>Each month is read from credit profiles at its last day (or the knowledge time's date, if earlier), using only data ingested by the knowledge time; grades and PDs from model {model}; alerts by the same rules lenders see (except the grade downgrade, which needs a lender's last look). On 元管家: joined before the date. Prepaid liability: paid in advance, not yet delivered or refunded; not covered: liability less frozen escrow funds. Closed: no store open. The tables are in the CSV files beside this page.</p>"#,
        model = esc(&r.model_id)
    );
    if r.unplaced > 0 {
        let _ = write!(
            o,
            r#"<p class="meta">{} 户主体画像缺少所属区,未计入。{} merchants without a district in their profile are not counted.</p>"#,
            r.unplaced, r.unplaced
        );
    }
    o.push_str("</body></html>\n");
    o
}

/// The report's due date: the plan has each month's progress reported by the 25th of that
/// month.
fn due_date(month: &str) -> String {
    format!("{month}-25")
}

fn coverage_section(o: &mut String, r: &MonthlyReport, now: &Month, before: Option<&Month>) {
    let _ = write!(
        o,
        "<h2>一、试点覆盖<small>1. Pilot coverage (tasks 一 and 二)</small></h2><table><tr>{}{}{}{}{}{}{}{}</tr>",
        th("区", "District"),
        th("在营主体", "Trading"),
        th("接入元管家", "On 元管家"),
        th("覆盖率", "Coverage"),
        th("环比", "MoM"),
        th("有效合约", "Active contracts"),
        th("预付负债(元)", "Prepaid liability"),
        th("存管覆盖率", "Escrow coverage"),
    );
    let mut chart = Vec::new();
    for d in r.districts() {
        let c = now.total(|dd, _| dd == d);
        let b = before.map(|m| m.total(|dd, _| dd == d));
        let _ = write!(
            o,
            "<tr><td>{} <small>{}</small></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            d.name_zh(),
            d.as_str(),
            c.merchants,
            c.on_escrow,
            pct(c.coverage_rate()),
            delta_count(c.on_escrow, b.as_ref().map(|x| x.on_escrow)),
            c.active_contracts,
            money(c.prepaid_liability),
            pct(c.escrow_coverage()),
        );
        chart.push((
            d.name_zh().to_owned(),
            c.coverage_rate().unwrap_or(0.0),
            pct(c.coverage_rate()),
        ));
    }
    o.push_str("</table>");
    o.push_str(&bars(
        "各区接入元管家的在营主体占比 · Share of trading merchants on 元管家, by district",
        &chart,
        1.0,
        None,
    ));
    // Training institutions against the 30 % target.
    let _ = write!(
        o,
        "<h3>校外培训机构覆盖率(目标 {t})<small>After-school training institutions on 元管家 (target {t})</small></h3><table><tr>{}{}{}{}{}</tr>",
        th("区", "District"),
        th("培训机构", "Institutions"),
        th("接入元管家", "On 元管家"),
        th("覆盖率", "Coverage"),
        th("达标", "Target met"),
        t = pct(Some(TRAINING_TARGET)),
    );
    let mut chart = Vec::new();
    for (_, zh, c) in training_rows(r) {
        let rate = c.coverage_rate();
        let met = match rate {
            Some(x) if x >= TRAINING_TARGET => r#"<span class="good">是 yes</span>"#,
            Some(_) => r#"<span class="bad">否 no</span>"#,
            None => "—",
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{met}</td></tr>",
            esc(&zh),
            c.merchants,
            c.on_escrow,
            pct(rate),
        );
        chart.push((zh, rate.unwrap_or(0.0), pct(rate)));
    }
    o.push_str("</table>");
    o.push_str(&bars(
        "校外培训机构覆盖率与 30% 目标 · Training coverage against the 30 % target",
        &chart,
        1.0,
        Some(TRAINING_TARGET),
    ));
    // Listed industries without a pilot merchant.
    let gaps = r.gaps();
    let _ = write!(
        o,
        "<h3>尚无试点主体的区 × 重点行业({n} 项)<small>Districts × listed industries with no merchant on 元管家 yet ({n})</small></h3>",
        n = gaps.len()
    );
    if gaps.is_empty() {
        o.push_str("<p>各区九个重点行业均已有试点主体。Every district has a pilot merchant in each of the nine listed industries.</p>");
    } else {
        let _ = write!(o, "<table><tr>{}", th("区", "District"));
        for i in LISTED {
            o.push_str(&th(i.name_zh(), i.name_en()));
        }
        o.push_str("</tr>");
        for d in r.districts() {
            let _ = write!(o, "<tr><td>{}</td>", d.name_zh());
            for i in LISTED {
                let c = cell_of(now, d, i);
                let mark = if gaps.contains(&(d, i)) {
                    format!(r#"<span class="bad">✗ ({})</span>"#, c.merchants)
                } else {
                    format!(r#"<span class="good">✓ {}</span>"#, c.on_escrow)
                };
                let _ = write!(o, "<td>{mark}</td>");
            }
            o.push_str("</tr>");
        }
        o.push_str("</table><p class=\"meta\">✓ n:已接入元管家的主体数;✗ (n):尚无接入,括号内为该行业在营主体数。✓ n: merchants on 元管家; ✗ (n): none yet, with the industry's trading merchants.</p>");
    }
}

fn risk_table(
    o: &mut String,
    r: &MonthlyReport,
    rows: &[(String, Cell, Option<Cell>)],
    first_zh: &str,
    first_en: &str,
) {
    let _ = write!(
        o,
        "<table><tr>{}{}{}{}{}{}{}{}{}{}",
        th(first_zh, first_en),
        th("在营主体", "Trading"),
        th("平均PD", "Mean PD"),
        th("环比", "MoM"),
        th("预付负债(元)", "Prepaid liability"),
        th("未覆盖(元)", "Not covered"),
        th("存管覆盖率", "Escrow coverage"),
        th("近90天投诉", "Complaints 90 d"),
        th("本月退款申请", "Refund requests"),
        th("本月闭店欠款户", "Closed owing"),
    );
    for code in ALERT_CODES {
        let (zh, en) = alert_names(code);
        o.push_str(&th(zh, en));
    }
    o.push_str("</tr>");
    for (label, c, b) in rows {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(label),
            c.merchants,
            pd(c.mean_pd()),
            delta_points(c.mean_pd(), b.as_ref().and_then(Cell::mean_pd), 100.0, " pp"),
            money(c.prepaid_liability),
            money(c.uncovered_liability),
            pct(c.escrow_coverage()),
            c.complaints_90d,
            c.refund_requests,
            c.closed_with_liability,
        );
        for code in ALERT_CODES {
            let _ = write!(o, "<td>{}</td>", c.alerts.get(code).copied().unwrap_or(0));
        }
        o.push_str("</tr>");
    }
    o.push_str("</table>");
    let _ = r;
}

/// Short column names of the alert rules (the rules' own texts are in the watch list).
fn alert_names(code: &str) -> (&'static str, &'static str) {
    match code {
        "MERCHANT_CLOSED" => ("本月闭店", "Closed"),
        "ESCROW_COVERAGE_LOW" => ("存管覆盖不足", "Low escrow"),
        "PREPAID_SALES_SPIKE" => ("预付销售激增", "Prepaid spike"),
        "COMPLAINT_SURGE" => ("投诉激增", "Complaints"),
        "REFUND_REQUESTS_RISING" => ("退款申请上升", "Refunds rising"),
        _ => ("预警", "Alert"),
    }
}

/// The public grades (B1, B2, B3 → B) of the master scale, in order, and where each
/// grade of the scale goes among them: the charts show public grades, the CSV every grade.
fn public_grades(r: &MonthlyReport) -> (Vec<String>, Vec<usize>) {
    let mut names: Vec<String> = Vec::new();
    let mut place = Vec::with_capacity(r.grade_names.len());
    for g in &r.grade_names {
        let p = yuanxin_domain::public_grade(g);
        if names.last().map(String::as_str) != Some(p) {
            names.push(p.to_owned());
        }
        place.push(names.len() - 1);
    }
    (names, place)
}

fn to_public(parts: &[u64], place: &[usize], n: usize) -> Vec<u64> {
    let mut out = vec![0; n];
    for (count, &p) in parts.iter().zip(place) {
        if let Some(slot) = out.get_mut(p) {
            *slot += count;
        }
    }
    out
}

fn risk_section(o: &mut String, r: &MonthlyReport, now: &Month, before: Option<&Month>) {
    let (public, place) = public_grades(r);
    o.push_str("<h2>二、风险监测<small>2. Risk monitoring (task 七)</small></h2><h3>按区<small>By district</small></h3>");
    let rows: Vec<(String, Cell, Option<Cell>)> = r
        .districts()
        .into_iter()
        .map(|d| {
            (
                d.name_zh().to_owned(),
                now.total(|dd, _| dd == d),
                before.map(|m| m.total(|dd, _| dd == d)),
            )
        })
        .collect();
    risk_table(o, r, &rows, "区", "District");
    let grades: Vec<(String, Vec<u64>)> = rows
        .iter()
        .map(|(l, c, _)| (l.clone(), to_public(&c.grades, &place, public.len())))
        .collect();
    o.push_str(&stacked(
        "各区在营主体的评级分布 · Grades of trading merchants, by district",
        &grades,
        &public,
    ));
    o.push_str("<h3>按行业<small>By industry</small></h3>");
    let rows: Vec<(String, Cell, Option<Cell>)> = Industry::ALL
        .iter()
        .map(|i| {
            (
                i.name_zh().to_owned(),
                now.total(|_, ii| ii == *i),
                before.map(|m| m.total(|_, ii| ii == *i)),
            )
        })
        .filter(|(_, c, _)| c.merchants > 0 || c.closed_in_month > 0)
        .collect();
    risk_table(o, r, &rows, "行业", "Industry");
    let grades: Vec<(String, Vec<u64>)> = rows
        .iter()
        .map(|(l, c, _)| (l.clone(), to_public(&c.grades, &place, public.len())))
        .collect();
    o.push_str(&stacked(
        "各行业在营主体的评级分布 · Grades of trading merchants, by industry",
        &grades,
        &public,
    ));
}

fn trend_section(o: &mut String, r: &MonthlyReport) {
    let _ = write!(
        o,
        "<h2>三、月度趋势<small>3. Trends, last {} months</small></h2>",
        r.months.len()
    );
    let totals: Vec<(String, Cell)> = r
        .months
        .iter()
        .map(|m| (m.as_of.to_string(), m.total(|_, _| true)))
        .collect();
    let series = |f: &dyn Fn(&Cell) -> Option<f64>| -> Vec<(String, Option<f64>)> {
        totals.iter().map(|(d, c)| (d.clone(), f(c))).collect()
    };
    o.push_str(&line(
        "平均违约概率 · Mean PD",
        &series(&Cell::mean_pd),
        &|v| pd(Some(v)),
        None,
    ));
    o.push_str(&line(
        "接入元管家的在营主体占比 · Share on 元管家",
        &series(&Cell::coverage_rate),
        &|v| pct(Some(v)),
        Some((0.0, 1.0)),
    ));
    o.push_str(&line(
        "未被存管覆盖的预付负债(万元) · Prepaid liability not covered by escrow (10k yuan)",
        &series(&|c: &Cell| {
            rust_decimal::prelude::ToPrimitive::to_f64(&c.uncovered_liability).map(|v| v / 1e4)
        }),
        &|v| format!("{v:.1}"),
        Some((0.0, 0.0)),
    ));
    let _ = write!(
        o,
        "<table><tr>{}{}{}{}{}{}{}</tr>",
        th("月末", "Month-end"),
        th("在营主体", "Trading"),
        th("接入元管家", "On 元管家"),
        th("平均PD", "Mean PD"),
        th("未覆盖(元)", "Not covered"),
        th("本月闭店欠款户", "Closed owing"),
        th("欠款金额(元)", "Owed"),
    );
    for (d, c) in &totals {
        let _ = write!(
            o,
            "<tr><td>{d}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.merchants,
            c.on_escrow,
            pd(c.mean_pd()),
            money(c.uncovered_liability),
            c.closed_with_liability,
            money(c.closed_liability),
        );
    }
    o.push_str("</table>");
}

fn rate(x: Option<Decimal>) -> String {
    x.and_then(|d| rust_decimal::prelude::ToPrimitive::to_f64(&d))
        .map_or_else(|| "—".into(), |v| format!("{:.2}%", v * 100.0))
}

fn financing_section(o: &mut String, r: &MonthlyReport) {
    let _ = write!(
        o,
        "<h2>五、融资支持<small>5. Financing support</small></h2><p class=\"meta\">常备授信:每户在营主体按标准申请(流动资金 10 万元、12 个月)由现行政策与产品目录决策;放款:银行贷款数据中本月的放款。Standing offers: every trading merchant decided on the standard request (100,000 yuan of working capital over 12 months) by the current policy and catalogue. Loans: the banks' disbursements this month, from the loans table.</p><table><tr>{}{}{}{}{}{}{}{}{}{}{}{}</tr>",
        th("区", "District"),
        th("在营主体", "Trading"),
        th("匹配产品", "Matched"),
        th("核准", "Approved"),
        th("转人工", "Referred"),
        th("拒绝", "Declined"),
        th("核准额度(元)", "Offered"),
        th("平均利率", "Mean rate"),
        th("贴息后", "After support"),
        th("贴息总额(元)", "Support over term"),
        th("本月放款笔数/户数", "Loans / borrowers"),
        th("本月放款(元)", "Disbursed"),
    );
    for (_, zh, c, f, l) in financing_rows(r) {
        let rates = f.mean_rates();
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{} <small>{}</small></td></tr>",
            esc(&zh),
            c.merchants,
            f.matched,
            pct((f.decided > 0).then(|| f.matched as f64 / f.decided as f64)),
            f.approved,
            f.referred,
            f.declined,
            money(f.offered_amount),
            rate(rates.map(|x| x.0)),
            rate(rates.map(|x| x.1)),
            money(f.support_interest),
            l.loans,
            l.merchants,
            money(l.amount),
            rate(l.mean_rate()),
        );
    }
    o.push_str("</table>");
    let all = r.financing_total(|_| true);
    if !all.schemes.is_empty() || !all.institutions.is_empty() {
        let _ = write!(
            o,
            "<table><tr>{}{}</tr>",
            th("支持政策", "Support scheme"),
            th("核准授信数", "Approved offers")
        );
        for (k, v) in &all.schemes {
            let _ = write!(o, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
        }
        let _ = write!(
            o,
            "</table><table><tr>{}{}</tr>",
            th("授信机构", "Institution"),
            th("核准授信数", "Approved offers")
        );
        for (k, v) in &all.institutions {
            let _ = write!(o, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
        }
        o.push_str("</table>");
    }
    if let Some(m) = r.current() {
        let l = m.loans_total(|_| true);
        if !l.by_lender.is_empty() {
            let _ = write!(
                o,
                "<table><tr>{}{}{}</tr>",
                th("放款银行", "Lender"),
                th("本月放款笔数", "Loans"),
                th("金额(元)", "Yuan")
            );
            for (k, (n, a)) in &l.by_lender {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{n}</td><td>{}</td></tr>",
                    esc(k),
                    money(*a)
                );
            }
            o.push_str("</table>");
        }
    }
    let series: Vec<(String, Option<f64>)> = r
        .months
        .iter()
        .map(|m| {
            let amount = m.loans_total(|_| true).amount;
            (
                m.as_of.to_string(),
                rust_decimal::prelude::ToPrimitive::to_f64(&amount).map(|v| v / 1e4),
            )
        })
        .collect();
    o.push_str(&line(
        "每月放款金额(万元) · Loans disbursed per month (10k yuan)",
        &series,
        &|v| format!("{v:.1}"),
        Some((0.0, 0.0)),
    ));
}

/// Entries shown on the page (all of them are in `watchlist.csv`).
const WATCH_SHOWN: usize = 50;

fn watch_section(o: &mut String, r: &MonthlyReport) {
    let _ = write!(
        o,
        "<h2>四、风险监测名单<small>4. Watch list ({n} merchants; the first {k} shown, all in watchlist.csv)</small></h2><table><tr>{}{}{}{}{}{}{}</tr>",
        th("主体", "Merchant"),
        th("区", "District"),
        th("行业", "Industry"),
        th("评级/状态", "Grade or status"),
        th("预付负债(元)", "Prepaid liability"),
        th("未覆盖(元)", "Not covered"),
        th("依据", "Evidence"),
        n = r.watch.len(),
        k = WATCH_SHOWN.min(r.watch.len()),
    );
    for w in r.watch.iter().take(WATCH_SHOWN) {
        let status = match (&w.closed_on, &w.grade, w.pd) {
            (Some(d), _, _) => format!("闭店 closed {d}"),
            (None, Some(g), Some(p)) => format!("{g} · PD {}", pd(Some(p))),
            _ => "—".into(),
        };
        let evidence: Vec<String> = w
            .evidence
            .iter()
            .map(|e| format!("{}<br><small>{}</small>", esc(&e.text_zh), esc(&e.text_en)))
            .collect();
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left;white-space:normal\">{}</td></tr>",
            esc(&w.merchant_id),
            w.district.name_zh(),
            w.industry.name_zh(),
            esc(&status),
            money(w.prepaid_liability),
            money(w.uncovered_liability),
            evidence.join("<br>"),
        );
    }
    o.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands_and_csv_quotes_what_it_must() {
        assert_eq!(money(Decimal::new(123_456_789, 2)), "1,234,568");
        assert_eq!(money(Decimal::new(-100_000, 2)), "-1,000");
        assert_eq!(money(Decimal::ZERO), "0");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(esc("<a & b>"), "&lt;a &amp; b&gt;");
    }

    #[test]
    fn the_report_is_due_on_the_25th_of_its_month() {
        assert_eq!(due_date("2026-03"), "2026-03-25");
    }
}
