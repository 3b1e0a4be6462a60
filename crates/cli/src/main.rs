//! `yuanxin`: the command-line face of the engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDate};
use clap::{Parser, Subcommand, ValueEnum};
use yuanxin_ledger::{ingest, IngestOptions, IngestReport, Ledger};
use yuanxin_simulate::{simulate, OutputFormat, SimConfig, SimSummary};

/// mimalloc instead of the system allocator. Training and profiling build and drop many
/// short-lived vectors (event lists, WoE columns, pattern tables), and glibc's malloc
/// spends much of that time in its own bookkeeping: the gmsc scorecard fit takes 44 ms
/// instead of 57. Transparent huge pages are off (`no_thp`): on this kind of virtual machine
/// the kernel's zeroing and compacting of 2 MiB pages cost more than they save.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "yuanxin",
    version,
    about = "元信 Yuanxin: credit profiles, scores and financing for prepaid merchants"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate a city of prepaid merchants and write its source tables.
    Simulate(SimulateArgs),
    /// Validate files of source tables and commit them to a ledger.
    Ingest(IngestArgs),
    /// The nightly job: ingest the day's deliveries, rebuild every merchant's latest
    /// profile (a running service switches to it), score, decide standing offers, check
    /// early-warning rules, and write it all as one versioned snapshot with a run report.
    Refresh(RefreshArgs),
    /// Show what a ledger holds (`ledger compact`: merge its partitions' files).
    #[command(args_conflicts_with_subcommands = true)]
    Ledger {
        #[command(subcommand)]
        action: Option<LedgerAction>,
        /// Ledger folder.
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Print JSON: the batches, and the committed rows of each table by batch and
        /// business month (what another engine reading the files should count).
        #[arg(long)]
        json: bool,
    },
    /// Print the source-data model (tables, columns, rules).
    Schema,
    /// Build point-in-time credit profiles (one row per merchant and as-of date).
    Profile(ProfileArgs),
    /// Print the feature catalogue.
    Features {
        /// As JSON instead of Markdown.
        #[arg(long)]
        json: bool,
    },
    /// The main job on embedded defaults: simulate the demo city, ingest it, and build the
    /// merchants' latest credit profiles.
    Demo {
        /// Working folder (the city goes to DIR/city, the ledger to DIR/ledger).
        #[arg(long, default_value = "data/demo")]
        dir: PathBuf,
        /// Merchants in the demo city.
        #[arg(long, default_value_t = 2000)]
        merchants: u64,
        /// Months simulated.
        #[arg(long, default_value_t = 36)]
        months: u32,
        /// Random seed.
        #[arg(long, default_value_t = 2023)]
        seed: u64,
    },
    /// Train a scorecard or boosted trees on a profile panel or any CSV/Parquet table.
    Train(models::TrainArgs),
    /// Score a table with a model: one output row per input row, in input order.
    Score(models::ScoreArgs),
    /// Evaluate a model on a table with outcomes (and its stability against a baseline).
    Evaluate(models::EvaluateArgs),
    /// The model registry: list models, promote a champion or challengers.
    #[command(subcommand)]
    Models(models::ModelsCmd),
    /// Decide a loan request for a merchant (or every merchant) of a profile file: outcome,
    /// limit, price, matching products and support, reasons and hints, as JSON.
    Decide(Box<decisions::DecideArgs>),
    /// Print the catalogue of reason codes (zh/en).
    Reasons {
        /// As JSON instead of Markdown.
        #[arg(long)]
        json: bool,
    },
    /// Print the catalogue of the service's problem codes (status, en/zh titles).
    Problems,
    /// Run the loan-eligibility API (builds the demo city first if there is none).
    Serve(service::ServeArgs),
    /// Principals: lender institutions, analysts and admins, by stable code.
    #[command(subcommand)]
    Principals(service::PrincipalsCmd),
    /// API keys of principals: create or revoke.
    #[command(subcommand)]
    Keys(service::KeysCmd),
    /// The query log: verify its entries, Merkle tree and signed checkpoints (read-only).
    #[command(subcommand)]
    Audit(service::AuditCmd),
    /// The service's state store: move it from its SQLite file to PostgreSQL.
    #[command(subcommand)]
    Store(service::StoreCmd),
    /// Regulators' reports: `report monthly --month YYYY-MM`.
    #[command(subcommand)]
    Report(reports::ReportCmd),
}

#[derive(clap::Args, Debug)]
struct SimulateArgs {
    /// Number of merchants.
    #[arg(long, default_value_t = 2000)]
    merchants: u64,
    /// Number of months.
    #[arg(long, default_value_t = 36)]
    months: u32,
    /// Random seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 2023)]
    seed: u64,
    /// First day of the simulated period (YYYY-MM-01).
    #[arg(long, default_value = "2023-07-01")]
    start: NaiveDate,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Share of rows given a realistic fault (0–0.5), to exercise ingestion.
    #[arg(long, default_value_t = 0.0)]
    faults: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Parquet)]
    format: Format,
    /// Worker threads (0 = all cores); the output does not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Merchants simulated per chunk (bounds memory); the output does not depend on it.
    #[arg(long, default_value_t = 256)]
    chunk: u64,
    /// Split the period's last days, from this date (YYYY-MM-DD, within the last 92
    /// days), into daily deliveries under OUT/_daily/YYYY-MM-DD/ (Parquet only): what the
    /// nightly `yuanxin refresh` ingests day by day.
    #[arg(long)]
    daily_from: Option<NaiveDate>,
}

#[derive(clap::Args, Debug)]
struct IngestArgs {
    /// Ledger folder (created if missing).
    #[arg(long)]
    ledger: PathBuf,
    /// Files or folders of Parquet/CSV source tables.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Knowledge time to stamp (RFC 3339); defaults to now. Fixing it makes a batch
    /// reproducible.
    #[arg(long)]
    ingested_at: Option<String>,
    /// How many minutes past the knowledge time a row's timestamp may lie (a source's
    /// clock running ahead), 0 to 10080; later rows are rejected.
    #[arg(long, default_value_t = yuanxin_ledger::DEFAULT_CLOCK_SKEW_MINUTES,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(yuanxin_ledger::MAX_CLOCK_SKEW_MINUTES)))]
    max_clock_skew_minutes: u32,
    /// Memory the duplicate index may hold, in MiB (1 to 1048576); beyond it, keys spill to
    /// sorted runs on disk and the ledger written is the same.
    #[arg(long, default_value_t = yuanxin_ledger::DEFAULT_MEMORY_LIMIT_MIB,
          value_parser = clap::value_parser!(u64).range(yuanxin_ledger::MIN_MEMORY_LIMIT_MIB..=yuanxin_ledger::MAX_MEMORY_LIMIT_MIB))]
    memory_limit_mib: u64,
    /// Threads that convert and check rows (1 to 256; default: every core). The ledger
    /// written is the same whatever the count.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct RefreshArgs {
    /// Ledger folder.
    #[arg(long)]
    ledger: PathBuf,
    /// The day's deliveries (files or folders of source tables), ingested first as one
    /// batch; none to refresh from the ledger as it is.
    #[arg(long)]
    deliveries: Vec<PathBuf>,
    /// Knowledge time to stamp on the deliveries (RFC 3339); the clock if not given.
    #[arg(long)]
    ingested_at: Option<String>,
    /// Data folder with policy.toml and catalogue.toml.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Model registry (its champion scores).
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// The profiles file to rebuild — the one `yuanxin serve` serves, which it reloads
    /// when the file is replaced (default: DATA/demo/profiles-latest.parquet).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Folder of snapshots (default: DATA/snapshots).
    #[arg(long)]
    snapshots: Option<PathBuf>,
    /// Today's date (YYYY-MM-DD, Asia/Shanghai): profiles are as of the last day of the
    /// ledger's latest month, or today if earlier. Default: today.
    #[arg(long)]
    today: Option<NaiveDate>,
    /// Build only this shard's partial profiles (`i/N`: the merchants whose id hashes to
    /// shard i of N) into --parts, for a scheduler to fan out; the ledger must already hold
    /// the day's deliveries. `--gather` then finishes the union.
    #[arg(long, requires = "parts", conflicts_with_all = ["deliveries", "gather"])]
    shard: Option<String>,
    /// Folder a shard writes its part to (`part-IIII-of-NNNN.parquet` and `.json`).
    #[arg(long)]
    parts: Option<PathBuf>,
    /// Finish the shards' parts in this folder into the profiles (instead of building
    /// them), then score and snapshot as usual: byte for byte what one run gives.
    #[arg(long, conflicts_with = "deliveries")]
    gather: Option<PathBuf>,
    /// Print the run report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand, Debug)]
enum LedgerAction {
    /// Merge each partition's files into merchant-sorted ones, atomically; every row keeps
    /// its batch and knowledge time, so `--known-at` answers do not change.
    Compact(CompactArgs),
}

#[derive(clap::Args, Debug)]
struct CompactArgs {
    /// Ledger folder.
    #[arg(long)]
    ledger: PathBuf,
    /// Minutes the replaced files stay on disk for readers still using them (0 to 10080);
    /// a later compaction removes them.
    #[arg(long, default_value_t = yuanxin_ledger::DEFAULT_RETAIN_MINUTES,
          value_parser = clap::value_parser!(u64).range(0..=yuanxin_ledger::MAX_RETAIN_MINUTES))]
    retain_minutes: u64,
    /// Memory for one pass over a partition, in MiB (1 to 1048576); a larger partition is
    /// merged a range of merchants at a time.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    memory_limit_mib: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct ProfileArgs {
    /// Ledger folder.
    #[arg(long)]
    ledger: PathBuf,
    /// As-of date (YYYY-MM-DD); repeat for several.
    #[arg(long = "as-of")]
    as_of: Vec<NaiveDate>,
    /// A monthly panel: month-end as-of dates from this date ...
    #[arg(long, requires = "to")]
    from: Option<NaiveDate>,
    /// ... to this date.
    #[arg(long, requires = "from")]
    to: Option<NaiveDate>,
    /// Use only rows ingested by this time (RFC 3339): reproduce a past decision.
    #[arg(long)]
    known_at: Option<String>,
    /// Add an outcome label.
    #[arg(long, value_enum)]
    label: Option<LabelArg>,
    /// Out-of-time split: as-of dates from this date on are `test`, earlier ones `train`.
    #[arg(long)]
    oot_from: Option<NaiveDate>,
    /// Only these characteristics (comma-separated catalogue names); all by default.
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// Read merchants in this many chunks (by merchant id range), one at a time. By default
    /// the chunks are sized to hold about 8 Mi event rows each when the ledger is clustered
    /// by merchant, which bounds memory; the output is the same for any number.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    chunks: Option<u32>,
    /// Output Parquet file.
    #[arg(long)]
    out: PathBuf,
    /// Print each characteristic's information value and missing share (needs --label).
    #[arg(long, requires = "label")]
    report: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LabelArg {
    /// The lender's default (docs/features.md).
    #[value(name = "default_12m")]
    Default12m,
    /// Consumers lose prepayments.
    #[value(name = "consumer_harm_12m")]
    ConsumerHarm12m,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Parquet,
    Csv,
    Both,
}

/// `println!` that treats a closed pipe (`yuanxin features | head`) as the end of output
/// rather than an error.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// `print!` with the same treatment of closed pipes.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write;
        if let Err(e) = write!(std::io::stdout().lock(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod decisions;
mod models;
mod reports;
mod service;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Train(args) => models::run_train(&args)?,
        Command::Score(args) => models::run_score(&args)?,
        Command::Evaluate(args) => models::run_evaluate(&args)?,
        Command::Models(cmd) => models::run_models(&cmd)?,
        Command::Decide(args) => decisions::run_decide(&args)?,
        Command::Reasons { json } => decisions::run_reasons(json)?,
        Command::Problems => out!("{}", yuanxin_api::problem::catalogue_markdown()),
        Command::Serve(args) => service::run_serve(&args, &|dir| run_demo(dir, 2000, 36, 2023))?,
        Command::Keys(cmd) => service::run_keys(&cmd)?,
        Command::Principals(cmd) => service::run_principals(&cmd)?,
        Command::Audit(cmd) => service::run_audit(&cmd)?,
        Command::Store(cmd) => service::run_store(&cmd)?,
        Command::Simulate(args) => {
            let cfg = SimConfig {
                merchants: args.merchants,
                months: args.months,
                seed: args.seed,
                start: args.start,
                faults: args.faults,
                format: match args.format {
                    Format::Parquet => OutputFormat::Parquet,
                    Format::Csv => OutputFormat::Csv,
                    Format::Both => OutputFormat::Both,
                },
                threads: args.threads,
                chunk: args.chunk,
            };
            run_simulate(&cfg, &args.out)?;
            if let Some(from) = args.daily_from {
                if !matches!(args.format, Format::Parquet) {
                    bail!("--daily-from needs --format parquet");
                }
                let end = cfg
                    .start
                    .checked_add_months(chrono::Months::new(cfg.months))
                    .context("the period ends out of range")?;
                let daily = yuanxin_simulate::split_daily(&args.out, from, end)?;
                outln!(
                    "daily deliveries: {} days from {} under {} ({} rows; {} rows stay in the main files)",
                    daily.days.len(),
                    daily.from,
                    args.out.join("_daily").display(),
                    daily.days.values().sum::<u64>(),
                    daily.kept
                );
            }
        }
        Command::Ingest(args) => {
            let ingested_at_ms = parse_instant(args.ingested_at.as_deref(), "--ingested-at")?;
            let report = run_ingest(
                &args.ledger,
                &args.paths,
                ingested_at_ms,
                Some(args.max_clock_skew_minutes),
                Some(args.memory_limit_mib),
                args.threads.map(usize::from),
                args.json,
            )?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            }
        }
        Command::Refresh(args) => run_refresh(&args)?,
        Command::Report(cmd) => reports::run(&cmd)?,
        Command::Ledger {
            action: Some(LedgerAction::Compact(args)),
            ..
        } => run_compact(&args)?,
        Command::Ledger {
            action: None,
            ledger,
            json,
        } => match ledger {
            Some(ledger) => print_ledger(&ledger, json)?,
            None => bail!("--ledger is required: yuanxin ledger --ledger DIR"),
        },
        Command::Schema => out!("{}", yuanxin_ledger::schema::markdown()),
        Command::Features { json } => {
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(yuanxin_domain::vocabulary::VOCABULARY)?
                );
            } else {
                out!("{}", yuanxin_domain::vocabulary::markdown());
            }
        }
        Command::Profile(args) => run_profile(&args)?,
        Command::Demo {
            dir,
            merchants,
            months,
            seed,
        } => run_demo(&dir, merchants, months, seed)?,
    }
    Ok(())
}

fn run_simulate(cfg: &SimConfig, out: &Path) -> Result<SimSummary> {
    let t0 = Instant::now();
    eprintln!(
        "simulating {} merchants × {} months from {} (seed {}) into {}",
        cfg.merchants,
        cfg.months,
        cfg.start,
        cfg.seed,
        out.display()
    );
    let mut last = Instant::now();
    let summary = simulate(cfg, out, &mut |done, total| {
        if last.elapsed().as_secs_f64() >= 2.0 || done == total {
            eprintln!("  {done}/{total} merchants");
            last = Instant::now();
        }
    })
    .with_context(|| format!("simulating into {}", out.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    let rows = summary.total_rows() + summary.late_rows.values().sum::<u64>();
    outln!(
        "simulated {} rows in {secs:.2} s ({:.0} rows/s, peak memory {})",
        rows,
        rows as f64 / secs.max(1e-9),
        peak_memory()
    );
    for (table, n) in &summary.rows {
        outln!("  {table:<16} {n:>12}");
    }
    if !summary.late_rows.is_empty() {
        outln!(
            "  late delivery in {}/_late: {:?}",
            out.display(),
            summary.late_rows
        );
    }
    outln!(
        "  merchants defaulting during the period: {}",
        summary.defaults
    );
    Ok(summary)
}

fn run_ingest(
    ledger: &Path,
    paths: &[PathBuf],
    ingested_at_ms: Option<i64>,
    max_clock_skew_minutes: Option<u32>,
    memory_limit_mib: Option<u64>,
    threads: Option<usize>,
    quiet: bool,
) -> Result<IngestReport> {
    let t0 = Instant::now();
    let opts = IngestOptions {
        ingested_at_ms,
        max_clock_skew_minutes,
        memory_limit_mib,
        threads,
    };
    let report = ingest(ledger, paths, &opts, &mut |msg| eprintln!("  {msg}"))
        .with_context(|| format!("ingesting into {}", ledger.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    if !report.totals.reconciles() {
        bail!("internal error: ingestion counts do not reconcile");
    }
    if !quiet {
        print_report(&report, secs);
    }
    Ok(report)
}

fn print_report(r: &IngestReport, secs: f64) {
    outln!("batch {} at {} into {}", r.batch, r.ingested_at, r.ledger);
    outln!(
        "  {:<16} {:>12} {:>12} {:>10} {:>10}",
        "table",
        "input",
        "accepted",
        "rejected",
        "duplicate"
    );
    for (table, c) in &r.tables {
        outln!(
            "  {table:<16} {:>12} {:>12} {:>10} {:>10}",
            c.rows,
            c.accepted,
            c.rejected,
            c.duplicates
        );
    }
    let t = &r.totals;
    outln!(
        "  {:<16} {:>12} {:>12} {:>10} {:>10}",
        "total",
        t.rows,
        t.accepted,
        t.rejected,
        t.duplicates
    );
    outln!(
        "  input = accepted + rejected + duplicates: {} = {} + {} + {} ({})",
        t.rows,
        t.accepted,
        t.rejected,
        t.duplicates,
        if t.reconciles() {
            "reconciled"
        } else {
            "NOT RECONCILED"
        }
    );
    for (reason, n) in &t.rejected_by_reason {
        outln!("  rejected {reason}: {n}");
    }
    if let Some(q) = &r.quarantine {
        outln!("  quarantine: {}/{}", r.ledger, q);
    }
    outln!(
        "  {:.2} s, {:.0} rows/s, peak memory {}",
        secs,
        t.rows as f64 / secs.max(1e-9),
        peak_memory()
    );
}

/// An RFC 3339 option as ms since the epoch.
pub(crate) fn parse_instant(text: Option<&str>, option: &str) -> Result<Option<i64>> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_millis())
            .with_context(|| format!("{option} {t:?} is not an RFC 3339 time"))
    })
    .transpose()
}

fn run_profile(args: &ProfileArgs) -> Result<()> {
    let mut as_of = args.as_of.clone();
    if let (Some(from), Some(to)) = (args.from, args.to) {
        as_of.extend(yuanxin_profile::monthly_as_of(from, to));
    }
    as_of.sort();
    as_of.dedup();
    if as_of.is_empty() {
        bail!("give --as-of DATE (repeatable) or --from DATE --to DATE");
    }
    let known_at_ms = parse_instant(args.known_at.as_deref(), "--known-at")?;
    let opts = yuanxin_profile::ProfileOptions {
        as_of,
        known_at_ms,
        label: args.label.map(|l| match l {
            LabelArg::Default12m => yuanxin_profile::Label::Default12m,
            LabelArg::ConsumerHarm12m => yuanxin_profile::Label::ConsumerHarm12m,
        }),
        oot_from: args.oot_from,
        features: args.features.clone(),
        chunks: args.chunks.map(|n| n as usize),
        shard: None,
    };
    let t0 = Instant::now();
    let ledger = Ledger::open(&args.ledger)
        .with_context(|| format!("opening ledger {}", args.ledger.display()))?;
    let bar = progress_bar("profiles (chunks)");
    let rows = yuanxin_profile::build_to_parquet(&ledger, &opts, &args.out, &mut advance(&bar))
        .context("building profiles")?;
    bar.finish_and_clear();
    outln!(
        "{} profile rows ({} characteristics, {} as-of dates) → {} in {:.2} s; peak memory {}",
        rows,
        opts.features
            .as_ref()
            .map_or(yuanxin_profile::FEATURES.len(), Vec::len),
        opts.as_of.len(),
        args.out.display(),
        t0.elapsed().as_secs_f64(),
        peak_memory()
    );
    if args.report {
        let batch = yuanxin_profile::read_parquet(&args.out)?;
        let signals = yuanxin_model::signals::signal_report(&batch)
            .context("no labelled rows to report on")?;
        let mut signals = signals;
        signals.sort_by(|a, b| b.iv.total_cmp(&a.iv));
        outln!("{:<34} {:>8} {:>9}", "characteristic", "IV", "missing");
        for s in signals {
            outln!(
                "{:<34} {:>8.3} {:>8.1}%",
                s.name,
                s.iv,
                100.0 * s.missing_share
            );
        }
    }
    Ok(())
}

fn print_ledger(path: &Path, json: bool) -> Result<()> {
    let ledger =
        Ledger::open(path).with_context(|| format!("opening ledger {}", path.display()))?;
    let m = ledger.manifest();
    if json {
        // table → batch → month → rows, from the manifest (the commit record).
        let mut rows: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, u64>>> = BTreeMap::new();
        for f in &m.files {
            for (batch, n) in f.rows_by_batch() {
                *rows
                    .entry(f.table.as_str())
                    .or_default()
                    .entry(batch)
                    .or_default()
                    .entry(f.month.as_str())
                    .or_default() += n;
            }
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "batches": m.batches,
                "rows": rows,
            }))?
        );
        return Ok(());
    }
    outln!(
        "ledger {}: {} batch(es), {} data file(s)",
        path.display(),
        m.batches.len(),
        m.files.len()
    );
    for b in &m.batches {
        outln!(
            "  {} at {}: {} rows → {} accepted, {} rejected, {} duplicates",
            b.id,
            b.ingested_at,
            b.rows,
            b.accepted,
            b.rejected,
            b.duplicates
        );
    }
    let mut total = 0;
    for (table, n) in ledger.row_counts() {
        outln!("  {table:<16} {n:>12}");
        total += n;
    }
    outln!("  {:<16} {total:>12}", "total");
    let keys: u64 = m.index.iter().map(|r| r.keys).sum();
    outln!(
        "  duplicate index: {} run(s), {keys} keys; {} compaction(s), {} replaced file(s) awaiting removal",
        m.index.len(),
        m.compactions,
        m.retired.len()
    );
    Ok(())
}

fn run_compact(args: &CompactArgs) -> Result<()> {
    let t0 = Instant::now();
    let opts = yuanxin_ledger::CompactOptions {
        retain_minutes: Some(args.retain_minutes),
        memory_limit_mib: Some(args.memory_limit_mib),
        now_ms: None,
    };
    let report = yuanxin_ledger::compact(&args.ledger, &opts, &mut |msg| eprintln!("  {msg}"))
        .with_context(|| format!("compacting {}", args.ledger.display()))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    match &report.compaction {
        Some(id) => outln!(
            "compaction {id}: {} partition(s), {} files → {}, {} rows, in {:.1} s; {} replaced file(s) kept {} min for readers, {} older removed",
            report.partitions,
            report.files_before,
            report.files_after,
            report.rows,
            t0.elapsed().as_secs_f64(),
            report.retired_kept,
            args.retain_minutes,
            report.retired_removed
        ),
        None => outln!(
            "nothing to compact (every partition has one file); {} replaced file(s) removed",
            report.retired_removed
        ),
    }
    Ok(())
}

fn run_refresh(args: &RefreshArgs) -> Result<()> {
    let t0 = Instant::now();
    let mut timings: BTreeMap<&str, f64> = BTreeMap::new();
    let ingested = if args.deliveries.is_empty() {
        None
    } else {
        let at = parse_instant(args.ingested_at.as_deref(), "--ingested-at")?;
        let t = Instant::now();
        let report = run_ingest(
            &args.ledger,
            &args.deliveries,
            at,
            None,
            None,
            None,
            args.json,
        )?;
        timings.insert("ingest_s", t.elapsed().as_secs_f64());
        Some(report)
    };
    let profiles = args
        .profiles
        .clone()
        .unwrap_or_else(|| args.data.join("demo/profiles-latest.parquet"));
    let today = args.today.unwrap_or_else(|| {
        chrono::Utc::now()
            .with_timezone(&yuanxin_domain::shanghai())
            .date_naive()
    });
    let t = Instant::now();
    if let Some(shard) = &args.shard {
        let shard = yuanxin_profile::Shard::parse(shard)?;
        let parts = args.parts.as_deref().context("--shard needs --parts DIR")?;
        let bar = progress_bar("profiles (chunks)");
        let info =
            yuanxin_engine::refresh_part(&args.ledger, parts, shard, today, &mut advance(&bar))?;
        bar.finish_and_clear();
        let report = serde_json::json!({
            "part": info,
            "parts": parts,
            "seconds": t.elapsed().as_secs_f64(),
            "peak_memory": peak_memory(),
        });
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            outln!(
                "shard {} as of {}: {} partial profile rows → {} in {:.1} s; peak memory {}",
                info.shard,
                info.as_of,
                info.rows,
                parts.display(),
                t.elapsed().as_secs_f64(),
                peak_memory()
            );
        }
        return Ok(());
    }
    let (as_of, shards) = match &args.gather {
        Some(dir) => {
            let (as_of, infos) = yuanxin_engine::gather_parts(dir, &profiles)?;
            (as_of, Some(infos))
        }
        None => {
            let bar = progress_bar("profiles (chunks)");
            let as_of = yuanxin_engine::refresh_profiles_with_progress(
                &args.ledger,
                &profiles,
                today,
                &mut advance(&bar),
            )?;
            bar.finish_and_clear();
            (as_of, None)
        }
    };
    timings.insert("profiles_s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let served = yuanxin_engine::Served::load(&yuanxin_engine::Files {
        models: args.models.clone(),
        profiles: profiles.clone(),
        policy: args.data.join("policy.toml"),
        catalogue: args.data.join("catalogue.toml"),
    })?;
    timings.insert("scoring_s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let snapshots = args
        .snapshots
        .clone()
        .unwrap_or_else(|| args.data.join("snapshots"));
    let bar = progress_bar("standing (merchants)");
    let snapshot =
        yuanxin_engine::write_snapshot_with_progress(&served, &snapshots, &mut advance(&bar))?;
    bar.finish_and_clear();
    timings.insert("snapshot_s", t.elapsed().as_secs_f64());
    timings.insert("total_s", t0.elapsed().as_secs_f64());
    let report = serde_json::json!({
        "as_of": as_of,
        "profiles": profiles,
        "snapshots": snapshots,
        "ingested": ingested.as_ref().map(|r| serde_json::json!({"batch": r.batch, "totals": r.totals})),
        "shards": shards,
        "snapshot": snapshot,
        "timings": timings,
        "peak_memory": peak_memory(),
    });
    let path = snapshots.join(&snapshot.snapshot).join("run.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    outln!(
        "snapshot {} as of {as_of}: {} merchants ({} graded, {} closed, {} unscorable) by model {}",
        snapshot.snapshot,
        snapshot.merchants,
        snapshot.graded,
        snapshot.closed,
        snapshot.unscorable,
        snapshot.model_id
    );
    let grades: Vec<String> = snapshot
        .by_grade
        .iter()
        .map(|(g, n)| format!("{g} {n}"))
        .collect();
    outln!("  grades: {}", grades.join(", "));
    outln!(
        "  standing offers (100,000 yuan, 12 months): {} approved, {} yuan in all",
        snapshot.offers,
        snapshot.offered_total
    );
    let alerts: Vec<String> = snapshot
        .alerts
        .iter()
        .map(|(a, n)| format!("{a} {n}"))
        .collect();
    outln!(
        "  alerts: {}",
        if alerts.is_empty() {
            "none".to_string()
        } else {
            alerts.join(", ")
        }
    );
    match &snapshot.changes {
        Some(c) => {
            let new: Vec<String> = c
                .new_alerts
                .iter()
                .map(|(a, n)| format!("{a} {n}"))
                .collect();
            outln!(
                "  since {}: {} up, {} down, {} same grade, {} new merchants; new alerts: {}",
                c.previous,
                c.upgraded,
                c.downgraded,
                c.unchanged,
                c.new_merchants,
                if new.is_empty() {
                    "none".to_string()
                } else {
                    new.join(", ")
                }
            );
        }
        None => outln!("  first snapshot: nothing to compare with"),
    }
    let times: Vec<String> = timings.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    outln!(
        "  timings: {}; peak memory {}",
        times.join(", "),
        peak_memory()
    );
    Ok(())
}

/// A progress bar on stderr; indicatif hides it when stderr is not a terminal, so logs and
/// tests see none.
fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("  {msg:<22} [{bar:32}] {pos}/{len} {elapsed}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// A progress callback (done, total) moving `bar`.
fn advance(bar: &indicatif::ProgressBar) -> impl FnMut(usize, usize) + '_ {
    |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

/// Peak resident memory of this process (Linux), for benchmark lines.
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.0} MiB", kb / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

/// The main job: simulate the demo city, ingest it, build the latest profiles.
fn run_demo(dir: &Path, merchants: u64, months: u32, seed: u64) -> Result<()> {
    let cfg = SimConfig {
        merchants,
        months,
        seed,
        ..SimConfig::demo()
    };
    let city = dir.join("city");
    let ledger = dir.join("ledger");
    if ledger.exists() {
        std::fs::remove_dir_all(&ledger)
            .with_context(|| format!("removing the previous demo ledger {}", ledger.display()))?;
    }
    let summary = run_simulate(&cfg, &city)?;
    run_ingest(&ledger, &[city], None, None, None, None, false)?;
    print_ledger(&ledger, false)?;
    // The latest credit profiles: as of the last day of the simulated period.
    let last_day = NaiveDate::parse_from_str(&summary.end, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.pred_opt())
        .context("simulation end date")?;
    // With the month-ends before it: the service shows each merchant its score history.
    let profiles = dir.join("profiles-latest.parquet");
    let as_of = yuanxin_engine::refresh_profiles(&ledger, &profiles, last_day)?;
    outln!(
        "profiles as of {as_of} and the {} month-ends before ({} characteristics) → {}",
        yuanxin_engine::HISTORY_MONTHS - 1,
        yuanxin_profile::FEATURES.len(),
        profiles.display()
    );
    Ok(())
}
