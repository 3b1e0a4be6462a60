//! `yuanxin decide` and `yuanxin reasons`: financing decisions from a profile file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use yuanxin_decision::{decide, reasons, Applicant, Catalogue, LoanRequest, Policy};
use yuanxin_domain::Industry;
use yuanxin_model::{Column, Frame};

#[derive(clap::Args, Debug)]
pub struct DecideArgs {
    /// Profile file (from `yuanxin profile`).
    #[arg(long)]
    profile: PathBuf,
    /// Merchant id; without it, every merchant in the file (one JSON line each).
    #[arg(long)]
    merchant: Option<String>,
    /// Profile date to use when the file has several (default: each merchant's latest).
    #[arg(long)]
    as_of: Option<NaiveDate>,
    /// Amount asked for, yuan.
    #[arg(long)]
    amount: Decimal,
    /// Term, months.
    #[arg(long, default_value_t = 12)]
    term: u32,
    /// Purpose: working_capital, equipment, renovation, expansion.
    #[arg(long, default_value = "working_capital")]
    purpose: String,
    /// A specific product id from the catalogue.
    #[arg(long)]
    product: Option<String>,
    /// Model file or registry id (default: the registry's champion).
    #[arg(long)]
    model: Option<String>,
    /// Registry folder.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Policy file.
    #[arg(long, default_value = "data/policy.toml")]
    policy: PathBuf,
    /// Product and support catalogue.
    #[arg(long, default_value = "data/catalogue.toml")]
    catalogue: PathBuf,
    /// The merchant has an open objection (shown, changes nothing).
    #[arg(long)]
    open_dispute: bool,
    /// Indented JSON (single merchant only).
    #[arg(long)]
    pretty: bool,
}

fn text(col: Option<&Column>, i: usize) -> Option<String> {
    match col? {
        Column::Cat(v) => v[i].clone(),
        Column::Num(v) => (!v[i].is_nan()).then(|| v[i].to_string()),
    }
}

pub fn run_decide(args: &DecideArgs) -> Result<()> {
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let policy = Policy::from_toml(&read(&args.policy)?)?;
    let catalogue = Catalogue::from_toml(&read(&args.catalogue)?)?;
    let model = crate::models::open_model(args.model.as_deref(), &args.models)?;
    let cats = model.categorical_features();
    let frame = Frame::read(&args.profile, &cats)?;
    for c in ["merchant_id", "as_of", "industry"] {
        if frame.index(c).is_none() {
            bail!(
                "{} is not a profile file: it has no {c} column",
                args.profile.display()
            );
        }
    }
    let (ids, dates, inds) = (
        frame.column("merchant_id"),
        frame.column("as_of"),
        frame.column("industry"),
    );
    // The row per merchant: the asked date, else the latest.
    let mut pick: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for i in 0..frame.rows() {
        let (Some(id), Some(date)) = (text(ids, i), text(dates, i)) else {
            continue;
        };
        if args.merchant.as_ref().is_some_and(|m| m != &id) {
            continue;
        }
        if args.as_of.is_some_and(|d| d.to_string() != date) {
            continue;
        }
        let e = pick.entry(id).or_insert((date.clone(), i));
        if date > e.0 {
            *e = (date, i);
        }
    }
    if pick.is_empty() {
        bail!("no matching merchant row in {}", args.profile.display());
    }
    let scored = model.score_frame(&frame, true)?;
    let request = LoanRequest {
        amount: args.amount,
        term_months: args.term,
        purpose: args.purpose.clone(),
        product: args.product.clone(),
    };
    for (id, (date, i)) in &pick {
        let s = match &scored[*i] {
            Ok(s) => s,
            Err(why) => bail!("merchant {id}: the model cannot score its profile: {why}"),
        };
        let features = frame.numeric_row(*i);
        let industry = text(inds, *i).unwrap_or_default();
        let app = Applicant::from_profile(
            id,
            NaiveDate::from_str(date).with_context(|| format!("as_of {date}"))?,
            Industry::from_str(&industry).map_err(|e| anyhow::anyhow!("merchant {id}: {e}"))?,
            features,
            &model,
            s,
            args.open_dispute,
        );
        let decision = decide(&app, &request, &policy, &catalogue)?;
        if args.pretty && pick.len() == 1 {
            outln!("{}", serde_json::to_string_pretty(&decision)?);
        } else {
            outln!("{}", serde_json::to_string(&decision)?);
        }
    }
    Ok(())
}

pub fn run_reasons(json: bool) -> Result<()> {
    let all = reasons::catalogue();
    if json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    outln!("| code | kind | 中文 | English |");
    outln!("|---|---|---|---|");
    for r in all {
        outln!("| `{}` | {} | {} | {} |", r.code, r.kind, r.zh, r.en);
    }
    Ok(())
}
