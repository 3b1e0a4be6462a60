//! The training report: one self-contained HTML page (inline SVG, no scripts, no external
//! assets) with what an analyst checks before promoting a model: metrics per set, ROC, KS,
//! calibration, score distributions, gains, per-segment AUC, the characteristics' IV and
//! every binning with its WoE and points.

use std::fmt::Write;

use crate::compare::Assessment;
use crate::model::{Model, Predictor};
use crate::train::Predictions;

const COLORS: [&str; 3] = ["#1f77b4", "#ff7f0e", "#2ca02c"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart: series of (x, y) points in data units.
fn lines(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[(String, Vec<(f64, f64)>)],
    diagonal: bool,
) -> String {
    let (w, h, l, b, t, r) = (440.0, 320.0, 50.0, 40.0, 30.0, 120.0);
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if diagonal {
        x0 = x0.min(0.0);
        y0 = y0.min(0.0);
        x1 = x1.max(x0 + 1e-9);
        y1 = y1.max(y0 + 1e-9);
        let m = x1.max(y1);
        x1 = m;
        y1 = m;
    }
    if !(x1 > x0) {
        x1 = x0 + 1.0;
    }
    if !(y1 > y0) {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| h - b - (y - y0) / (y1 - y0) * (h - b - t);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="16" font-size="13" font-weight="bold">{}</text>"#,
        l,
        esc(title)
    );
    let _ = write!(
        s,
        r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        w - l - r,
        h - b - t
    );
    for k in 0..=4 {
        let fx = x0 + (x1 - x0) * k as f64 / 4.0;
        let fy = y0 + (y1 - y0) * k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            px(fx),
            h - b + 14.0,
            tick(fx)
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            l - 4.0,
            py(fy) + 4.0,
            tick(fy)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (l + w - r) / 2.0,
        h - 6.0,
        esc(xlabel)
    );
    let _ = write!(
        s,
        r#"<text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"#,
        (t + h - b) / 2.0,
        (t + h - b) / 2.0,
        esc(ylabel)
    );
    if diagonal {
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="4 3"/>"##,
            px(x0),
            py(y0),
            px(x1),
            py(y1)
        );
    }
    for (i, (name, p)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = p
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.8" points="{}"/>"#,
            path.join(" ")
        );
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{c}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            w - r + 10.0,
            t + 16.0 * i as f64,
            w - r + 24.0,
            t + 16.0 * i as f64 + 9.0,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

fn tick(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn roc(p: &Predictions) -> Vec<(f64, f64)> {
    let mut idx: Vec<usize> = (0..p.pd.len()).collect();
    idx.sort_by(|&a, &b| p.pd[b].total_cmp(&p.pd[a]));
    let pos = p.bad.iter().filter(|&&b| b).count().max(1) as f64;
    let neg = (p.bad.len() as f64 - pos).max(1.0);
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = vec![(0.0, 0.0)];
    let step = (idx.len() / 200).max(1);
    for (k, &i) in idx.iter().enumerate() {
        if p.bad[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if k % step == 0 || k + 1 == idx.len() {
            out.push((fp / neg, tp / pos));
        }
    }
    out
}

/// Cumulative shares of bads and goods by score.
fn ks_curves(p: &Predictions) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut idx: Vec<usize> = (0..p.score.len()).collect();
    idx.sort_by(|&a, &b| p.score[a].total_cmp(&p.score[b]));
    let pos = p.bad.iter().filter(|&&b| b).count().max(1) as f64;
    let neg = (p.bad.len() as f64 - pos).max(1.0);
    let (mut cb, mut cg) = (0.0, 0.0);
    let (mut bads, mut goods) = (Vec::new(), Vec::new());
    let step = (idx.len() / 200).max(1);
    for (k, &i) in idx.iter().enumerate() {
        if p.bad[i] {
            cb += 1.0;
        } else {
            cg += 1.0;
        }
        if k % step == 0 || k + 1 == idx.len() {
            bads.push((p.score[i], cb / pos));
            goods.push((p.score[i], cg / neg));
        }
    }
    vec![("bad".into(), bads), ("good".into(), goods)]
}

/// Histogram of scores for goods and bads (share of each class per bin).
fn distribution(p: &Predictions) -> Vec<(String, Vec<(f64, f64)>)> {
    let lo = p.score.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = p.score.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let bins = 30usize;
    let width = ((hi - lo) / bins as f64).max(1e-9);
    let mut hb = vec![0.0; bins];
    let mut hg = vec![0.0; bins];
    for (&s, &b) in p.score.iter().zip(&p.bad) {
        let k = (((s - lo) / width) as usize).min(bins - 1);
        if b {
            hb[k] += 1.0;
        } else {
            hg[k] += 1.0;
        }
    }
    let nb: f64 = hb.iter().sum::<f64>().max(1.0);
    let ng: f64 = hg.iter().sum::<f64>().max(1.0);
    let pts = |h: &[f64], n: f64| {
        h.iter()
            .enumerate()
            .map(|(k, c)| (lo + width * (k as f64 + 0.5), c / n))
            .collect()
    };
    vec![("bad".into(), pts(&hb, nb)), ("good".into(), pts(&hg, ng))]
}

/// The report page.
/// The page's head with its style, up to the opening of the body and a title.
fn head(title: &str) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{t}</title><style>
body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}} table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:13px}} th{{background:#f3f3f3}} td.l,th.l{{text-align:left}}
.charts{{display:flex;flex-wrap:wrap;gap:12px}} h2{{border-bottom:1px solid #ddd;padding-bottom:3px}} .note{{color:#666;font-size:13px}}
</style></head><body><h1>{t}</h1>"#,
        t = esc(title)
    )
}

/// The calibration-per-grade table of an evaluation.
fn grade_table(s: &mut String, grades: &[crate::metrics::GradeRow]) {
    s.push_str("<table><tr><th class=l>grade</th><th>rows</th><th>share</th><th>mean PD</th><th>bads</th><th>expected</th><th>99.9 % band</th><th class=l>light</th></tr>");
    for g in grades {
        let _ = write!(s, "<tr><td class=l>{}</td><td>{}</td><td>{:.1}%</td><td>{:.4}</td><td>{}</td><td>{:.1}</td><td>{}–{}</td><td class=l>{}</td></tr>", esc(&g.grade), g.n, g.share * 100.0, g.mean_pd, g.events, g.mean_pd * g.n as f64, g.band.0, g.band.1, g.light);
    }
    s.push_str("</table>");
}

/// Two models side by side on the same rows: metrics, ROC, calibration per grade, PSI, and
/// the gate's findings for the second becoming champion (`gate`: why not, empty if it may).
pub fn comparison(sides: [(&Assessment, &Predictions); 2], gate: &[String]) -> String {
    let [(a, pa), (b, pb)] = sides;
    let mut s = head(&format!("{} against {}", b.model, a.model));
    let _ = write!(
        s,
        "<p>Both measured on the same table: {} rows ({} set); PSI of each model's scores on the current population (the table's latest as-of date) against its own training sample.</p>",
        a.evaluation.metrics.n, esc(&a.set)
    );
    s.push_str("<table><tr><th class=l>model</th><th class=l>method</th><th>rows</th><th>bad</th><th>unscorable</th><th>AUC</th><th>Gini</th><th>KS</th><th>Brier</th><th>log loss</th><th class=l>calibration per grade</th><th>PSI</th></tr>");
    for side in [a, b] {
        let m = &side.evaluation.metrics;
        let _ = write!(
            s,
            "<tr><td class=l>{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td class=l>{}</td><td>{}</td></tr>",
            esc(&side.model),
            side.method,
            m.n,
            m.events,
            side.unscorable,
            m.auc,
            m.gini,
            m.ks,
            m.brier,
            m.log_loss,
            if side.evaluation.calibrated() { "passes" } else { "fails" },
            side.psi.map_or("–".into(), |p| format!("{p:.4}"))
        );
    }
    s.push_str("</table>");
    if gate.is_empty() {
        let _ = write!(
            s,
            "<p><b>Gate:</b> {} may become champion.</p>",
            esc(&b.model)
        );
    } else {
        let _ = write!(
            s,
            "<p><b>Gate:</b> {} may not become champion without an override:</p><ul>",
            esc(&b.model)
        );
        for why in gate {
            let _ = write!(s, "<li>{}</li>", esc(why));
        }
        s.push_str("</ul>");
    }
    s.push_str("<div class=charts>");
    s.push_str(&lines(
        "ROC",
        "false positive rate",
        "true positive rate",
        &[(a.model.clone(), roc(pa)), (b.model.clone(), roc(pb))],
        true,
    ));
    let per_grade = |x: &Assessment| -> Vec<(f64, f64)> {
        x.evaluation
            .grades
            .iter()
            .map(|g| (g.mean_pd, g.events as f64 / g.n.max(1) as f64))
            .collect()
    };
    s.push_str(&lines(
        "Calibration per grade",
        "mean PD of the grade",
        "observed bad rate",
        &[
            (a.model.clone(), per_grade(a)),
            (b.model.clone(), per_grade(b)),
        ],
        true,
    ));
    s.push_str("</div>");
    for side in [a, b] {
        let _ = write!(s, "<h2>Calibration per grade: {}</h2>", esc(&side.model));
        grade_table(&mut s, &side.evaluation.grades);
    }
    s.push_str("</body></html>\n");
    s
}

pub fn html(model: &Model, sets: &[Predictions], importance: &[f64]) -> String {
    let mut s = head(&format!("Model {}", model.id));
    let t = &model.training;
    let _ = write!(
        s,
        "<p>{} on <b>{}</b>, target <code>{}</code>, seed {}, created {}. {} rows: {} train, {} validation, {} test. Data fingerprint <code>{}</code>.</p>",
        model.method,
        esc(&t.source),
        esc(&model.target),
        model.seed,
        esc(model.created_at.as_deref().unwrap_or("(not recorded)")),
        t.rows,
        t.train,
        t.validation,
        t.test,
        &t.fingerprint[..16.min(t.fingerprint.len())]
    );
    if !t.excluded.is_empty() || !t.skipped_columns.is_empty() || !t.coerced_columns.is_empty() {
        s.push_str("<p class=note>Not used: ");
        let parts: Vec<String> = t
            .excluded
            .iter()
            .map(|(r, n)| format!("{n} rows ({})", esc(r)))
            .chain(
                t.skipped_columns
                    .iter()
                    .map(|(c, r)| format!("column {} ({})", esc(c), esc(r))),
            )
            .collect();
        let parts: Vec<String> = parts
            .into_iter()
            .chain(t.coerced_columns.iter().map(|c| {
                format!(
                    "{} values of column {} that are not numbers, read as missing (e.g. {})",
                    c.values,
                    esc(&c.column),
                    esc(&c.examples.join(", "))
                )
            }))
            .collect();
        s.push_str(&parts.join("; "));
        s.push_str("</p>");
    }
    let sc = &model.scaling;
    let _ = write!(
        s,
        "<p>Scaling: {} points at {}:1 good:bad odds, {} points to double the odds (factor {:.4}, offset {:.3}). Calibration: {}.</p>",
        sc.base_score,
        sc.base_odds,
        sc.pdo,
        sc.factor(),
        sc.offset(),
        esc(&model.calibration.describe())
    );
    s.push_str("<h2>Performance</h2><table><tr><th class=l>set</th><th>rows</th><th>bad</th><th>AUC</th><th>Gini</th><th>KS</th><th>Brier</th><th>log loss</th></tr>");
    for e in &model.evaluation {
        let m = &e.evaluation.metrics;
        let _ = write!(s, "<tr><td class=l>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td></tr>", e.set, m.n, m.events, m.auc, m.gini, m.ks, m.brier, m.log_loss);
    }
    s.push_str("</table>");
    let main = sets.iter().find(|p| p.set == "test").or(sets.first());
    s.push_str("<div class=charts>");
    let rocs: Vec<(String, Vec<(f64, f64)>)> =
        sets.iter().map(|p| (p.set.clone(), roc(p))).collect();
    s.push_str(&lines(
        "ROC",
        "false positive rate",
        "true positive rate",
        &rocs,
        true,
    ));
    if let Some(p) = main {
        s.push_str(&lines(
            &format!("KS ({})", p.set),
            "score",
            "cumulative share",
            &ks_curves(p),
            false,
        ));
        s.push_str(&lines(
            &format!("Score distribution ({})", p.set),
            "score",
            "share of class",
            &distribution(p),
            false,
        ));
    }
    if let Some(e) = model.headline() {
        let cal: Vec<(f64, f64)> = e
            .evaluation
            .calibration
            .iter()
            .map(|r| (r.predicted, r.observed))
            .collect();
        s.push_str(&lines(
            &format!("Calibration ({})", e.set),
            "mean predicted PD",
            "observed bad rate",
            &[("deciles".into(), cal)],
            true,
        ));
    }
    s.push_str("</div>");
    for e in &model.evaluation {
        let ev = &e.evaluation;
        if ev.grades.is_empty() {
            continue;
        }
        let _ = write!(s, "<h2>Calibration per grade ({}): {}</h2><p class=note>Bads observed against the binomial band of the grade's rows at their mean PD: green within the 95 % band, yellow within the 99.9 % band, red above it (the PD underestimates the risk: the evaluation fails), conservative below it (far fewer bads than the PD says).</p>", e.set, if ev.calibrated() { "passes" } else { "fails" });
        grade_table(&mut s, &ev.grades);
    }
    if let Some(e) = model.headline() {
        let _ = write!(s, "<h2>Gains ({})</h2><table><tr><th>decile</th><th>rows</th><th>bad</th><th>bad rate</th><th>cum. share of bads</th><th>lift</th></tr>", e.set);
        for g in &e.evaluation.gains {
            let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.3}</td><td>{:.2}</td></tr>", g.decile, g.n, g.events, g.event_rate, g.cum_events, g.lift);
        }
        s.push_str("</table>");
        if !e.evaluation.segments.is_empty() {
            let _ = write!(s, "<h2>AUC by segment ({})</h2><table><tr><th class=l>segment</th><th>rows</th><th>bad</th><th>AUC</th></tr>", e.set);
            for g in &e.evaluation.segments {
                let auc = g.auc.map_or("–".into(), |a| format!("{a:.4}"));
                let _ = write!(
                    s,
                    "<tr><td class=l>{}</td><td>{}</td><td>{}</td><td>{auc}</td></tr>",
                    esc(&g.segment),
                    g.n,
                    g.events
                );
            }
            s.push_str("</table>");
        }
    }
    match &model.predictor {
        Predictor::Scorecard(card) => {
            let own = ["test", "train"].iter().find_map(|set| {
                let e = model.evaluation.iter().find(|e| e.set == *set)?;
                Some((*set, e.evaluation.metrics.auc))
            });
            s.push_str("<h2>Characteristics</h2>");
            if let Some((set, auc)) = own {
                let _ = write!(s, "<p class=note>AUC if kept: the AUC on the {set} rows of a logistic regression refitted on the selected characteristics and that one, without the sign constraint. This model's AUC there: {auc:.4}.</p>");
            }
            s.push_str("<table><tr><th class=l>characteristic</th><th class=l>display name</th><th>IV</th><th>bins</th><th class=l>status</th><th class=l>note</th><th>AUC if kept</th></tr>");
            let mut cands = card.candidates.clone();
            cands.sort_by(|a, b| b.iv.total_cmp(&a.iv));
            for c in &cands {
                let disp = model
                    .features
                    .iter()
                    .find(|f| f.name == c.name)
                    .map_or(String::new(), |f| format!("{} / {}", f.name_zh, f.name_en));
                let _ = write!(s, "<tr><td class=l>{}</td><td class=l>{}</td><td>{:.4}</td><td>{}</td><td class=l>{}</td><td class=l>{}</td><td>{}</td></tr>", esc(&c.name), esc(&disp), c.iv, c.bins, esc(&c.status), esc(&c.note), c.auc_if_kept.map_or(String::new(), |a| format!("{a:.4}")));
            }
            s.push_str("</table>");
            let _ = write!(s, "<h2>Points table</h2><p class=note>Intercept {:.4}. Points per bin; a row's score is the sum over characteristics.</p>", card.intercept);
            for c in &card.characteristics {
                let b = &c.binning;
                let total: u64 = b.table().map(|x| x.count).sum();
                let _ = write!(s, "<h3>{} — IV {:.4}, trend {:?}, coefficient {:.4}</h3><table><tr><th class=l>bin</th><th>rows</th><th>share</th><th>bad</th><th>bad rate</th><th>WoE</th><th>IV</th><th>points</th></tr>", esc(&b.name), b.iv, b.trend, c.coefficient);
                let points: Vec<Option<f64>> = c
                    .points
                    .iter()
                    .map(|&p| Some(p))
                    .chain([c.special_points])
                    .chain([Some(c.missing_points)])
                    .collect();
                let stats: Vec<_> = b
                    .bins
                    .iter()
                    .map(Some)
                    .chain([b.special.as_ref()])
                    .chain([Some(&b.missing)])
                    .collect();
                for (st, pt) in stats.into_iter().zip(points) {
                    let Some(st) = st else { continue };
                    let share = if total > 0 {
                        st.count as f64 / total as f64
                    } else {
                        0.0
                    };
                    let pt = if st.count == 0 {
                        "–".into()
                    } else {
                        pt.map_or("–".into(), |p| format!("{p:.1}"))
                    };
                    let _ = write!(s, "<tr><td class=l>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{pt}</td></tr>", esc(&st.label), st.count, share, st.events, st.event_rate, st.woe, st.iv);
                }
                s.push_str("</table>");
            }
        }
        Predictor::Boost { boost, .. } => {
            let _ = write!(
                s,
                "<h2>Trees</h2><p>{} trees of at most {} leaves{}.</p>",
                boost.trees.len(),
                model.config.boost.max_leaves(),
                if boost.validation_loss.is_empty() {
                    ""
                } else {
                    ", as many as the best validation round"
                }
            );
            if !boost.validation_loss.is_empty() {
                let v: Vec<(f64, f64)> = boost
                    .validation_loss
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| ((i + 1) as f64, l))
                    .collect();
                s.push_str(&lines(
                    "Validation log loss",
                    "trees",
                    "log loss",
                    &[("validation".into(), v)],
                    false,
                ));
            }
            // Per characteristic: its mean absolute contribution on the training rows,
            // its splits, and how many of them send a set of categories one way (the rest
            // are thresholds). Strongest first.
            let mut splits = vec![(0usize, 0usize); model.features.len()];
            for t in &boost.trees {
                for n in t.nodes.iter().filter(|n| n.left != 0) {
                    if let Some(c) = splits.get_mut(n.feature as usize) {
                        c.0 += 1;
                        c.1 += usize::from(!n.categories.is_empty());
                    }
                }
            }
            let weight = |i: usize| importance.get(i).copied().unwrap_or(0.0);
            s.push_str(
                "<table><tr><th class=l>characteristic</th>\
                 <th>mean |contribution| (log-odds, training rows)</th><th>splits</th>\
                 <th>by category set</th><th>monotone</th></tr>",
            );
            let mut order: Vec<usize> = (0..splits.len()).collect();
            order.sort_by(|&a, &b| {
                weight(b)
                    .total_cmp(&weight(a))
                    .then(splits[b].0.cmp(&splits[a].0))
                    .then(a.cmp(&b))
            });
            for i in order {
                let _ = write!(
                    s,
                    "<tr><td class=l>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&model.features[i].name),
                    weight(i),
                    splits[i].0,
                    splits[i].1,
                    boost.monotone.get(i).copied().unwrap_or(0)
                );
            }
            s.push_str("</table>");
        }
    }
    s.push_str("<h2>Master scale</h2><table><tr><th class=l>grade</th><th class=l>public grade</th><th>PD up to</th></tr>");
    for g in &model.master_scale.0 {
        let _ = write!(
            s,
            "<tr><td class=l>{}</td><td class=l>{}</td><td>{:.2}%</td></tr>",
            esc(&g.name),
            esc(yuanxin_domain::public_grade(&g.name)),
            g.pd_max * 100.0
        );
    }
    s.push_str("</table></body></html>\n");
    s
}
