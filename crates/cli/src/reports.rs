//! `yuanxin report`: the regulators' monthly report.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use yuanxin_domain::District;
use yuanxin_engine::monitor::{monthly_report, MonthlyOptions};

/// Reports for regulators.
#[derive(clap::Subcommand, Debug)]
pub enum ReportCmd {
    /// The month's report to the task force: pilot coverage, risk monitoring by district
    /// and industry, trends and the watch list, as HTML with SVG charts, CSV tables and
    /// (where Chromium is installed) a PDF.
    Monthly(MonthlyArgs),
}

#[derive(clap::Args, Debug)]
pub struct MonthlyArgs {
    /// The month, YYYY-MM.
    #[arg(long)]
    month: String,
    /// Ledger folder.
    #[arg(long, default_value = "data/demo/ledger")]
    ledger: PathBuf,
    /// Only this district (its code, e.g. FUTIAN, or its Chinese name).
    #[arg(long)]
    district: Option<String>,
    /// Reproduce the report as it could have been written at this instant (RFC 3339): only
    /// data ingested by then. Default: the ledger's last batch.
    #[arg(long)]
    known_at: Option<String>,
    /// Months of trend, the report's month included (1–36).
    #[arg(long, default_value_t = 12)]
    months: usize,
    /// Data folder with policy.toml (alert rules, credit policy) and catalogue.toml.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Model registry.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// A model file or registry id (default: the champion).
    #[arg(long)]
    model: Option<String>,
    /// Output folder (default: DATA/reports/monthly-YYYY-MM[-DISTRICT], where the service's
    /// regulator routes read the city's reports).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not print a PDF even where Chromium is installed.
    #[arg(long)]
    no_pdf: bool,
}

fn district_of(text: &str) -> Result<District> {
    if let Ok(d) = District::from_str(&text.to_ascii_uppercase()) {
        return Ok(d);
    }
    District::ALL
        .iter()
        .copied()
        .find(|d| d.name_zh() == text)
        .with_context(|| {
            let known: Vec<&str> = District::ALL.iter().map(|d| d.as_str()).collect();
            format!(
                "--district {text:?}: not a district (one of {})",
                known.join(", ")
            )
        })
}

/// Runs a report command.
pub fn run(cmd: &ReportCmd) -> Result<()> {
    match cmd {
        ReportCmd::Monthly(a) => run_monthly(a),
    }
}

fn run_monthly(a: &MonthlyArgs) -> Result<()> {
    let month = NaiveDate::parse_from_str(&format!("{}-01", a.month), "%Y-%m-%d")
        .ok()
        .filter(|_| a.month.len() == 7)
        .with_context(|| format!("--month {:?} is not YYYY-MM", a.month))?;
    if !(1..=36).contains(&a.months) {
        bail!("--months must be 1–36, not {}", a.months);
    }
    let district = a.district.as_deref().map(district_of).transpose()?;
    let known_at_ms = crate::parse_instant(a.known_at.as_deref(), "--known-at")?;
    let model = yuanxin_engine::open_model(a.model.as_deref(), &a.models)?;
    let policy = yuanxin_engine::read_policy(&a.data.join("policy.toml"))?;
    let catalogue = yuanxin_engine::read_catalogue(&a.data.join("catalogue.toml"))?;
    yuanxin_engine::check_scale(&policy, &model)?;
    let out = a.out.clone().unwrap_or_else(|| {
        yuanxin_engine::monitor::report_folder(&a.data.join("reports"), &a.month, district)
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let scratch = out.join(".profiles.parquet");
    let started = std::time::Instant::now();
    let report = monthly_report(
        &a.ledger,
        &model,
        &policy,
        &catalogue,
        &MonthlyOptions {
            month,
            months: a.months,
            district,
            known_at_ms,
        },
        &scratch,
    )?;
    let mut files = yuanxin_engine::report::write_monthly(&report, &out)?;
    if !a.no_pdf {
        if let Some(pdf) = print_pdf(&out)? {
            files.push(pdf);
        }
    }
    let now = report.current();
    outln!(
        "monthly report {} ({}), as of {}, known at {}: {} merchants trading, {} on the watch list ({:.1} s)",
        report.month,
        district.map_or("all districts", |d| d.as_str()),
        now.map(|m| m.as_of.to_string()).unwrap_or_default(),
        report.known_at,
        now.map_or(0, |m| m.total(|_, _| true).merchants),
        report.watch.len(),
        started.elapsed().as_secs_f64()
    );
    for f in files {
        outln!("  {}", f.display());
    }
    Ok(())
}

/// Prints `report.html` to `report.pdf` with headless Chromium, when one is installed.
fn print_pdf(out: &Path) -> Result<Option<PathBuf>> {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(which)
    else {
        return Ok(None);
    };
    let html = std::fs::canonicalize(out.join("report.html"))?;
    let pdf = std::fs::canonicalize(out)?.join("report.pdf");
    let profile = tempfile_dir(out)?;
    let status = std::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {}", chromium.display()));
    let _ = std::fs::remove_dir_all(&profile);
    if !status?.success() || !pdf.exists() {
        bail!("{} could not print {}", chromium.display(), html.display());
    }
    Ok(Some(pdf))
}

fn tempfile_dir(out: &Path) -> Result<PathBuf> {
    let dir = out.join(".chromium-profile");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
