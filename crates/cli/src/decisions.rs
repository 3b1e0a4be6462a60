//! `yuanxin decide` and `yuanxin reasons`: financing decisions from a profile file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use yuanxin_decision::{reasons, Catalogue, LoanRequest, Policy};
use yuanxin_engine::{decide, latest, Pick};
use yuanxin_model::Frame;

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

pub fn run_decide(args: &DecideArgs) -> Result<()> {
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let policy = Policy::from_toml(&read(&args.policy)?)?;
    let catalogue = Catalogue::from_toml(&read(&args.catalogue)?)?;
    let model = yuanxin_engine::open_model(args.model.as_deref(), &args.models)?;
    yuanxin_engine::check_scale(&policy, &model)?;
    let frame = Frame::read(&args.profile, &model.categorical_features())?;
    let pick = Pick {
        merchant: args.merchant.clone(),
        as_of: args.as_of,
    };
    let merchants = latest(&frame, &args.profile, &model, &pick)?;
    if merchants.is_empty() {
        bail!("no matching merchant row in {}", args.profile.display());
    }
    let request = LoanRequest {
        amount: args.amount,
        term_months: args.term,
        purpose: args.purpose.clone(),
        product: args.product.clone(),
    };
    for (id, m) in &merchants {
        let decision = decide(
            &model,
            &policy,
            &catalogue,
            id,
            m,
            &request,
            args.open_dispute,
        )?;
        if args.pretty && merchants.len() == 1 {
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
