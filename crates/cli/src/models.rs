//! `yuanxin train | score | evaluate | models`: the analysts' model commands.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use yuanxin_model::compare::{assess, Assessment, Gate};
use yuanxin_model::frame::{read_split, write_table, OutColumn};
use yuanxin_model::metrics::{evaluate, psi, psi_verdict};
use yuanxin_model::registry::{Promotion, Registry};
use yuanxin_model::{train, Frame, Method, Model, Set, TrainConfig};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training table: a profile panel or any CSV (.csv, .csv.gz) or Parquet file.
    #[arg(long)]
    data: PathBuf,
    /// Target column: 1 = bad, 0 = good, empty = not usable.
    #[arg(long)]
    target: String,
    /// scorecard (WoE logistic) or boost (gradient-boosted trees).
    #[arg(long, value_enum, default_value_t = MethodArg::Scorecard)]
    method: MethodArg,
    /// Columns to treat as categories (comma-separated).
    #[arg(long, value_delimiter = ',')]
    categorical: Vec<String>,
    /// Use only these columns (comma-separated); default: all but the target and ids.
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// Columns never to use (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// Refuse a CSV numeric column with values that are not numbers, instead of reading
    /// them as missing (at most 1 % of a column's values; more make it categorical).
    #[arg(long)]
    strict: bool,
    /// On a profile panel, let the model use these descriptive columns: `industry`,
    /// `district` (comma-separated); by default it uses neither.
    #[arg(long, value_delimiter = ',')]
    descriptive: Vec<String>,
    /// Fixed split in the `row,set` format; default: the table's `split` column, if any.
    #[arg(long)]
    split: Option<PathBuf>,
    /// Column to report AUC by segment (e.g. industry).
    #[arg(long)]
    segment: Option<String>,
    /// Label statuses whose rows train and test on a profile panel (comma-separated);
    /// default: `ok` only (incomplete or excluded label windows never count).
    #[arg(long, value_delimiter = ',')]
    label_status: Vec<String>,
    /// Monotone constraints for boost, e.g. `age=-1,debt=1`; `none` drops the catalogue's
    /// directions that profile characteristics otherwise get (named ones still apply).
    #[arg(long, value_delimiter = ',')]
    monotone: Vec<String>,
    /// Seed of every random choice [default: the configuration's, else 2023].
    #[arg(long)]
    seed: Option<u64>,
    /// Creation time to record (default: the panel's latest as-of date; never the clock).
    #[arg(long)]
    created_at: Option<String>,
    /// JSON file of further settings (binning, scorecard, boost, scaling, master scale), in
    /// the shape of a model file's `config`; command-line options override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model file to write.
    #[arg(long)]
    out: PathBuf,
    /// HTML report to write (default: the model file with .html).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Threads for binning (0 = all cores); the model does not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print the summary as JSON (with the fit time).
    #[arg(long)]
    json: bool,
    /// No progress messages.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MethodArg {
    Scorecard,
    Boost,
}

#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    /// Model file, or a model id in the registry (--models).
    #[arg(long)]
    model: String,
    /// Registry folder for model ids.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Table to score.
    #[arg(long)]
    data: PathBuf,
    /// Output file (.csv or .parquet): one row per input row, in input order.
    #[arg(long)]
    out: PathBuf,
    /// Columns to copy from the input (comma-separated; merchant_id and as_of by default
    /// when present).
    #[arg(long, value_delimiter = ',')]
    keep: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// Model file, or a model id in the registry (--models).
    #[arg(long)]
    model: String,
    /// Registry folder for model ids.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Table with outcomes.
    #[arg(long)]
    data: PathBuf,
    /// Target column (default: the model's).
    #[arg(long)]
    target: Option<String>,
    /// Evaluate only the rows of this set of a `row,set` file ...
    #[arg(long, requires = "set")]
    split: Option<PathBuf>,
    /// ... train or test.
    #[arg(long, requires = "split")]
    set: Option<String>,
    /// Column to report AUC by segment.
    #[arg(long)]
    segment: Option<String>,
    /// A second table: population stability (PSI) of the scores and of each characteristic
    /// from it (the expected) to --data (the actual).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum ModelsCmd {
    /// List the models in the registry with their role and headline metrics.
    List {
        /// Registry folder.
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a model the champion (or a challenger) after checking its file. A champion must
    /// pass the gate on out-of-time data: Gini at most 0.02 below the champion's,
    /// calibration per grade without a red grade, PSI of the current population ≤ 0.25.
    Promote {
        /// Model id or file name.
        id: String,
        /// Registry folder.
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        /// Add as a challenger instead (no gate: a challenger does not serve).
        #[arg(long)]
        challenger: bool,
        /// Out-of-time data to check the gate on: a profile panel (its test rows, its latest
        /// as-of date as the current population) or any table with the models' target.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Fixed split of --data in the `row,set` format (default: its `split` column).
        #[arg(long)]
        split: Option<PathBuf>,
        /// Promote although the gate refuses, for this reason (kept in the history).
        #[arg(long = "override", value_name = "REASON")]
        override_reason: Option<String>,
        /// Why the model is promoted (kept in the history).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who promotes (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Two models side by side on the same out-of-time rows: AUC, KS, Gini, calibration per
    /// grade and PSI, as an HTML page with charts (and JSON with --json), with what the
    /// gate says about the second replacing the first.
    Compare {
        /// The champion (model file, or id in --dir).
        a: String,
        /// The challenger.
        b: String,
        /// The table to compare them on (a profile panel: its test rows).
        #[arg(long)]
        data: PathBuf,
        /// Fixed split of --data in the `row,set` format (default: its `split` column).
        #[arg(long)]
        split: Option<PathBuf>,
        /// Registry folder for model ids.
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        /// HTML page to write.
        #[arg(long, default_value = "compare.html")]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every promotion: when, who, which model, the champion it replaced, why, what the
    /// gate found and any override.
    History {
        /// Registry folder.
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Two models measured on one table (read with the categories either needs).
fn assess_both(
    models: [&Model; 2],
    data: &std::path::Path,
    split: Option<&std::path::Path>,
) -> Result<[(Assessment, yuanxin_model::Predictions); 2]> {
    let mut cats = models[0].categorical_features();
    for c in models[1].categorical_features() {
        if !cats.contains(&c) {
            cats.push(c);
        }
    }
    let frame = Frame::read(data, &cats)?;
    let sets = split.map(|p| read_split(p, frame.rows())).transpose()?;
    let [a, b] = models;
    Ok([assess(a, &frame, sets.clone())?, assess(b, &frame, sets)?])
}

/// One line per model of what the gate looked at.
fn findings(x: &Assessment) -> String {
    format!(
        "{}: {} rows ({}), Gini {:.4}, AUC {:.4}, KS {:.4}, calibration per grade {}, PSI {}",
        x.model,
        x.evaluation.metrics.n,
        x.set,
        x.gini(),
        x.evaluation.metrics.auc,
        x.evaluation.metrics.ks,
        if x.evaluation.calibrated() {
            "passes"
        } else {
            "fails"
        },
        x.psi.map_or("–".into(), |p| format!("{p:.4}"))
    )
}

/// A model by file path or registry id; without either, the registry's champion.
pub fn run_train(args: &TrainArgs) -> Result<()> {
    let started = Instant::now();
    let mut cfg: TrainConfig = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not a valid training configuration", p.display()))?
        }
        None => TrainConfig::default(),
    };
    cfg.method = match args.method {
        MethodArg::Scorecard => Method::Scorecard,
        MethodArg::Boost => Method::Boost,
    };
    cfg.target.clone_from(&args.target);
    if !args.categorical.is_empty() {
        cfg.categorical.clone_from(&args.categorical);
    }
    if !args.features.is_empty() {
        cfg.features.clone_from(&args.features);
    }
    if !args.descriptive.is_empty() {
        cfg.descriptive.clone_from(&args.descriptive);
    }
    if !args.exclude.is_empty() {
        cfg.exclude.clone_from(&args.exclude);
    }
    if args.segment.is_some() {
        cfg.segment.clone_from(&args.segment);
    }
    if !args.label_status.is_empty() {
        cfg.label_statuses = Some(args.label_status.clone());
    }
    if args.created_at.is_some() {
        cfg.created_at.clone_from(&args.created_at);
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    for m in &args.monotone {
        if m == "none" {
            cfg.catalogue_monotone = false;
            continue;
        }
        let (name, dir) = m
            .split_once('=')
            .with_context(|| format!("--monotone {m}: expected name=+1 or name=-1"))?;
        let d: i8 = dir
            .trim_start_matches('+')
            .parse()
            .with_context(|| format!("--monotone {m}: direction must be 1, -1 or 0"))?;
        if !(-1..=1).contains(&d) {
            bail!("--monotone {m}: direction must be 1, -1 or 0");
        }
        cfg.monotone.retain(|(n, _)| n != name);
        cfg.monotone.push((name.to_owned(), d));
    }
    let quiet = args.quiet;
    let mut progress = |m: &str| {
        if !quiet {
            eprintln!("[{:6.2}s] {m}", started.elapsed().as_secs_f64());
        }
    };
    progress(&format!("reading {}", args.data.display()));
    let frame = Frame::read(&args.data, &cfg.categorical)?;
    // Typing choices are said on the console, whatever --quiet says.
    for c in frame.coerced() {
        eprintln!(
            "column {}: {} values that are not numbers (e.g. {}) read as missing; the column is numeric",
            c.column,
            c.values,
            c.examples.join(", ")
        );
    }
    if args.strict && !frame.coerced().is_empty() {
        bail!("--strict: a numeric column holds values that are not numbers (above); fix the data or leave out --strict");
    }
    let split = match &args.split {
        Some(p) => Some(read_split(p, frame.rows())?),
        None => None,
    };
    let source = args
        .data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let trained = train(&frame, split, &cfg, &source, args.threads, &mut progress)?;
    let model = &trained.model;
    model.save(&args.out)?;
    for (column, why) in &model.training.skipped_columns {
        eprintln!("column {column} not used: {why}");
    }
    if model.training.test == 0 {
        // Said even with --quiet or --json: the numbers would otherwise pass for a test.
        eprintln!(
            "warning: no test rows (no --split and no split column), so every metric is \
             in-sample: measured on the rows the model was fitted on"
        );
    }
    let report = args
        .report
        .clone()
        .unwrap_or_else(|| args.out.with_extension("html"));
    // Written beside, then renamed: a reader never sees half a report.
    let partial = report.with_extension("html.partial");
    std::fs::write(
        &partial,
        yuanxin_model::report::html(model, &trained.sets, &trained.importance),
    )
    .and_then(|()| std::fs::rename(&partial, &report))
    .with_context(|| format!("writing {}", report.display()))?;
    if args.json {
        let v = serde_json::json!({
            "id": model.id, "method": model.method, "file": args.out, "report": report,
            "characteristics": model.features.iter().map(|f| &f.name).collect::<Vec<_>>(),
            "fit_seconds": trained.fit_seconds, "training": model.training,
            "metrics": model.evaluation.iter().map(|e| (e.set.clone(), e.evaluation.metrics.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!(
        "model {} ({}, {} characteristics) → {}",
        model.id,
        model.method,
        model.features.len(),
        args.out.display()
    );
    outln!("report → {}", report.display());
    let t = &model.training;
    outln!(
        "rows: {} train, {} validation, {} test; excluded: {:?}",
        t.train,
        t.validation,
        t.test,
        t.excluded
    );
    for e in &model.evaluation {
        let m = &e.evaluation.metrics;
        outln!(
            "{:<10} n={:<7} bad={:<6} AUC {:.4}  Gini {:.4}  KS {:.4}  Brier {:.4}  log loss {:.4}",
            e.set,
            m.n,
            m.events,
            m.auc,
            m.gini,
            m.ks,
            m.brier,
            m.log_loss
        );
    }
    outln!(
        "fit in {:.3} s; {:.2} s in all",
        trained.fit_seconds,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run_score(args: &ScoreArgs) -> Result<()> {
    let started = Instant::now();
    let model = yuanxin_engine::open_model(Some(&args.model), &args.models)?;
    let cats = model.categorical_features();
    let frame = Frame::read(&args.data, &cats)?;
    let mut results = model.score_frame(&frame, true)?;
    // A profile row of a merchant that has closed gets no score: the status says so.
    let mut closed = vec![false; results.len()];
    if let Some(yuanxin_model::Column::Cat(on)) =
        frame.column(yuanxin_domain::vocabulary::columns::CLOSED_ON)
    {
        for ((r, c), on) in results.iter_mut().zip(closed.iter_mut()).zip(on) {
            if let Some(on) = on {
                *r = Err(format!("closed on {on}"));
                *c = true;
            }
        }
    }
    let n = results.len();
    let mut cols: Vec<(String, OutColumn)> = vec![(
        "row".into(),
        OutColumn::Int((0..n as i64).map(Some).collect()),
    )];
    let keep: Vec<String> = if args.keep.is_empty() {
        [
            yuanxin_domain::vocabulary::columns::MERCHANT_ID,
            yuanxin_domain::vocabulary::columns::AS_OF,
        ]
        .iter()
        .filter(|c| frame.index(c).is_some())
        .map(|c| c.to_string())
        .collect()
    } else {
        args.keep.clone()
    };
    for k in &keep {
        let col = frame
            .column(k)
            .with_context(|| format!("--keep {k}: no such column"))?;
        cols.push((
            k.clone(),
            OutColumn::Str(match col {
                yuanxin_model::Column::Cat(v) => v.clone(),
                yuanxin_model::Column::Num(v) => v
                    .iter()
                    .map(|x| (!x.is_nan()).then(|| x.to_string()))
                    .collect(),
            }),
        ));
    }
    let get = |f: &dyn Fn(&yuanxin_model::Scored) -> Option<String>| {
        results
            .iter()
            .map(|r| r.as_ref().ok().and_then(f))
            .collect::<Vec<_>>()
    };
    cols.push((
        "status".into(),
        OutColumn::Str(
            results
                .iter()
                .zip(&closed)
                .map(|(r, &c)| {
                    Some(
                        match (c, r.is_ok()) {
                            (true, _) => "closed",
                            (false, true) => "ok",
                            (false, false) => "unscorable",
                        }
                        .to_owned(),
                    )
                })
                .collect(),
        ),
    ));
    cols.push((
        "score".into(),
        OutColumn::Int(
            results
                .iter()
                .map(|r| r.as_ref().ok().map(|s| s.score))
                .collect(),
        ),
    ));
    cols.push((
        "pd".into(),
        OutColumn::Float(
            results
                .iter()
                .map(|r| r.as_ref().ok().map(|s| s.pd))
                .collect(),
        ),
    ));
    cols.push((
        "grade".into(),
        OutColumn::Str(get(&|s| Some(s.grade.clone()))),
    ));
    // Each reason as an adverse-action notice states it: the characteristic, the value,
    // the bin (scorecards) and the points lost against the best bin.
    for k in 0..4 {
        let n = k + 1;
        cols.push((
            format!("reason_{n}"),
            OutColumn::Str(get(&|s| s.reasons.get(k).map(|r| r.feature.clone()))),
        ));
        cols.push((
            format!("reason_{n}_value"),
            OutColumn::Str(get(&|s| s.reasons.get(k).map(|r| r.value.clone()))),
        ));
        cols.push((
            format!("reason_{n}_bin"),
            OutColumn::Str(get(&|s| s.reasons.get(k).and_then(|r| r.bin.clone()))),
        ));
        cols.push((
            format!("reason_{n}_points"),
            OutColumn::Float(
                results
                    .iter()
                    .map(|r| {
                        r.as_ref()
                            .ok()
                            .and_then(|s| s.reasons.get(k).map(|r| r.points_lost))
                    })
                    .collect(),
            ),
        ));
    }
    cols.push((
        "unscorable_reason".into(),
        OutColumn::Str(results.iter().map(|r| r.as_ref().err().cloned()).collect()),
    ));
    write_table(&args.out, cols)?;
    let bad = results.iter().filter(|r| r.is_err()).count();
    let shut = closed.iter().filter(|&&c| c).count();
    outln!(
        "{} rows scored, {} of closed merchants, {} unscorable, by {} → {} in {:.2} s",
        n - bad,
        shut,
        bad - shut,
        model.id,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run_evaluate(args: &EvaluateArgs) -> Result<()> {
    let model = yuanxin_engine::open_model(Some(&args.model), &args.models)?;
    let cats = model.categorical_features();
    let frame = Frame::read(&args.data, &cats)?;
    let target = frame.target(args.target.as_deref().unwrap_or(&model.target))?;
    let rows: Vec<bool> = match (&args.split, &args.set) {
        (Some(p), Some(set)) => {
            let want = match set.as_str() {
                "train" => Set::Train,
                "test" => Set::Test,
                s => bail!("--set {s}: expected train or test"),
            };
            read_split(p, frame.rows())?
                .into_iter()
                .map(|s| s == Some(want))
                .collect()
        }
        _ => vec![true; frame.rows()],
    };
    // Timed: from parsed rows to PDs, one thread.
    let timer = Instant::now();
    let logits = model.logits(&frame)?;
    let pds: Vec<Option<f64>> = logits
        .iter()
        .map(|z| z.as_ref().ok().map(|&z| model.calibration.pd(z)))
        .collect();
    let score_seconds = timer.elapsed().as_secs_f64();
    let seg_col = match &args.segment {
        Some(s) => Some(
            frame
                .column(s)
                .with_context(|| format!("segment column {s} is not in the table"))?,
        ),
        None => None,
    };
    let (mut pd, mut bad, mut seg) = (Vec::new(), Vec::new(), Vec::new());
    let (mut unscorable, mut no_target) = (0, 0);
    let unusable = yuanxin_model::unusable_labels(&frame, None);
    let mut unusable_labels = 0u64;
    for i in 0..frame.rows() {
        if !rows[i] {
            continue;
        }
        if unusable[i].is_some() {
            unusable_labels += 1;
            continue;
        }
        match (pds[i], target[i]) {
            (None, _) => unscorable += 1,
            (_, None) => no_target += 1,
            (Some(p), Some(y)) => {
                pd.push(p);
                bad.push(y);
                if let Some(c) = seg_col {
                    seg.push(match c {
                        yuanxin_model::Column::Cat(v) => {
                            v[i].clone().unwrap_or_else(|| "missing".into())
                        }
                        yuanxin_model::Column::Num(v) => v[i].to_string(),
                    });
                }
            }
        }
    }
    let ev = evaluate(
        &pd,
        &bad,
        seg_col.map(|_| seg.as_slice()),
        &model.master_scale,
    );
    let stability = match &args.baseline {
        Some(b) => Some(stability(&model, &Frame::read(b, &cats)?, &frame)?),
        None => None,
    };
    if args.json {
        let v = serde_json::json!({
            "model": model.id, "rows": pd.len(), "unscorable": unscorable, "target_missing": no_target, "label_unusable": unusable_labels,
            "scored_rows": frame.rows(), "score_seconds": score_seconds,
            "evaluation": ev, "stability": stability.as_ref().map(|s| serde_json::json!({"score_psi": s.0, "characteristics": s.1})),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let m = &ev.metrics;
    outln!(
        "model {}: {} rows evaluated ({} unscorable, {} without outcome, {} whose label window is incomplete or excluded)",
        model.id,
        m.n,
        unscorable,
        no_target,
        unusable_labels
    );
    outln!(
        "scored {} rows in {:.4} s ({:.0} rows/s, one thread)",
        frame.rows(),
        score_seconds,
        frame.rows() as f64 / score_seconds.max(1e-9)
    );
    outln!(
        "AUC {:.4}  Gini {:.4}  KS {:.4}  Brier {:.4}  log loss {:.4}  bad rate {:.4}",
        m.auc,
        m.gini,
        m.ks,
        m.brier,
        m.log_loss,
        m.events as f64 / m.n.max(1) as f64
    );
    outln!("\ndecile  rows    bad   bad rate  cum. bads  lift");
    for g in &ev.gains {
        outln!(
            "{:>6} {:>6} {:>6}   {:>7.4}   {:>7.3}  {:>5.2}",
            g.decile,
            g.n,
            g.events,
            g.event_rate,
            g.cum_events,
            g.lift
        );
    }
    outln!("\ncalibration: predicted vs observed by decile");
    for c in &ev.calibration {
        outln!(
            "  {:>6} rows  predicted {:.4}  observed {:.4}",
            c.n,
            c.predicted,
            c.observed
        );
    }
    outln!(
        "\ncalibration per grade: bads against the 99.9 % binomial band at the mean PD ({})",
        if ev.calibrated() { "passes" } else { "FAILS" }
    );
    outln!("grade    rows   share  mean PD    bads   band          light");
    for g in &ev.grades {
        outln!(
            "{:<6} {:>6}  {:>5.1}%  {:>7.4}  {:>6}   {:>5}–{:<6} {}",
            g.grade,
            g.n,
            g.share * 100.0,
            g.mean_pd,
            g.events,
            g.band.0,
            g.band.1,
            g.light
        );
    }
    if !ev.segments.is_empty() {
        outln!("\nAUC by segment");
        for s in &ev.segments {
            outln!(
                "  {:<24} {:>6} rows {:>5} bad  AUC {}",
                s.segment,
                s.n,
                s.events,
                s.auc.map_or("–".into(), |a| format!("{a:.4}"))
            );
        }
    }
    if let Some((score_psi, chars)) = stability {
        outln!(
            "\npopulation stability (baseline → data): score PSI {score_psi:.4} ({})",
            psi_verdict(score_psi)
        );
        for (name, v) in chars {
            outln!("  {name:<32} PSI {v:.4} ({})", psi_verdict(v));
        }
    }
    Ok(())
}

/// PSI of the scores and of each numeric characteristic between two tables.
fn stability(model: &Model, expected: &Frame, actual: &Frame) -> Result<(f64, Vec<(String, f64)>)> {
    let scores = |f: &Frame| -> Result<Vec<f64>> {
        Ok(model
            .logits(f)?
            .into_iter()
            .filter_map(|z| z.ok().map(|z| model.scaling.score(z)))
            .collect())
    };
    let score_psi = psi(&scores(expected)?, &scores(actual)?, 10);
    let mut chars = Vec::new();
    for f in &model.features {
        if let (Some(yuanxin_model::Column::Num(e)), Some(yuanxin_model::Column::Num(a))) =
            (expected.column(&f.name), actual.column(&f.name))
        {
            chars.push((f.name.clone(), psi(e, a, 10)));
        }
    }
    Ok((score_psi, chars))
}

pub fn run_models(cmd: &ModelsCmd) -> Result<()> {
    match cmd {
        ModelsCmd::List { dir, json } => {
            let (entries, bad) = Registry::new(dir).list()?;
            if *json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"models": entries, "invalid": bad})
                    )?
                );
                return Ok(());
            }
            if entries.is_empty() && bad.is_empty() {
                outln!("no models in {}", dir.display());
            }
            for e in &entries {
                outln!(
                    "{:<11} {:<24} {:<9} {:>3} chars  {} AUC {:.4} KS {:.4}  created {}  {}",
                    if e.role.is_empty() { "-" } else { &e.role },
                    e.id,
                    e.method.to_string(),
                    e.features,
                    e.set,
                    e.auc,
                    e.ks,
                    e.created_at.as_deref().unwrap_or("-"),
                    e.file
                );
            }
            for (f, why) in &bad {
                outln!("invalid     {f}: {why}");
            }
        }
        ModelsCmd::Promote {
            id,
            dir,
            challenger,
            data,
            split,
            override_reason,
            reason,
            by,
        } => {
            let registry = Registry::new(dir);
            let by = by
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let mut record = Promotion::new(at, by, reason.clone());
            if !*challenger {
                let (_, model) = registry.find(id)?;
                let champion = registry.champion()?.map(|(_, m)| m);
                let failures = match data {
                    None => vec![
                        "no out-of-time data to check the gate on (give --data PANEL)".to_owned(),
                    ],
                    Some(data) => {
                        let champ = champion.as_ref().unwrap_or(&model);
                        let [(a, _), (b, _)] =
                            assess_both([champ, &model], data, split.as_deref())?;
                        let a = champion.as_ref().map(|_| a);
                        record.checks = a.iter().chain([&b]).map(findings).collect();
                        Gate::default().check(a.as_ref(), &b)
                    }
                };
                if !failures.is_empty() {
                    match override_reason {
                        None => bail!(
                            "the gate refuses {} as champion:\n  - {}\n(promote with --override REASON to go ahead; it is kept in the history)",
                            model.id,
                            failures.join("\n  - ")
                        ),
                        Some(why) => {
                            for f in &failures {
                                eprintln!("gate overridden: {f}");
                            }
                            record.overridden = Some(yuanxin_model::registry::Override {
                                reason: why.clone(),
                                failures,
                            });
                        }
                    }
                }
            }
            let roles = registry.promote(id, *challenger, record)?;
            outln!("champion: {}", roles.champion.as_deref().unwrap_or("-"));
            outln!(
                "challengers: {}",
                if roles.challengers.is_empty() {
                    "-".into()
                } else {
                    roles.challengers.join(", ")
                }
            );
        }
        ModelsCmd::Compare {
            a,
            b,
            data,
            split,
            dir,
            out,
            json,
        } => {
            let ma = yuanxin_engine::open_model(Some(a), dir)?;
            let mb = yuanxin_engine::open_model(Some(b), dir)?;
            let [(xa, pa), (xb, pb)] = assess_both([&ma, &mb], data, split.as_deref())?;
            let gate = Gate::default().check(Some(&xa), &xb);
            std::fs::write(
                out,
                yuanxin_model::report::comparison([(&xa, &pa), (&xb, &pb)], &gate),
            )
            .with_context(|| format!("writing {}", out.display()))?;
            if *json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "models": [xa, xb], "gate": {"passes": gate.is_empty(), "failures": gate}, "report": out,
                    }))?
                );
                return Ok(());
            }
            for x in [&xa, &xb] {
                outln!("{}", findings(x));
            }
            if gate.is_empty() {
                outln!("gate: {} may become champion", xb.model);
            } else {
                outln!(
                    "gate: {} may not become champion without --override:",
                    xb.model
                );
                for f in &gate {
                    outln!("  - {f}");
                }
            }
            outln!("report → {}", out.display());
        }
        ModelsCmd::History { dir, json } => {
            let history = Registry::new(dir).history()?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(&history)?);
                return Ok(());
            }
            if history.is_empty() {
                outln!("no promotions recorded in {}", dir.display());
            }
            for p in &history {
                outln!(
                    "{}  {:<10} {:<24} by {}{}{}",
                    p.at,
                    p.role,
                    p.id,
                    p.by,
                    p.previous
                        .as_deref()
                        .map_or(String::new(), |x| format!(", replacing {x}")),
                    if p.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", p.reason)
                    }
                );
                for c in &p.checks {
                    outln!("    {c}");
                }
                if let Some(o) = &p.overridden {
                    outln!("    OVERRIDDEN ({}): {}", o.reason, o.failures.join("; "));
                }
            }
        }
    }
    Ok(())
}
