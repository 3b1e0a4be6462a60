//! Realistic faults injected into an export, so that ingestion can be exercised on dirty
//! data. Faults never alter the clean city: each one is an extra row (a copy of a real row,
//! spoiled) or a real row delivered late, so ingesting a faulty export yields exactly the
//! clean ledger, and every injected fault is counted.

use std::collections::BTreeMap;

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use yuanxin_ledger::schema::ColType;
use yuanxin_ledger::Table;

use crate::rows::{Rows, TableRows, Val};

/// Kinds of injected faults, with the ingestion outcome each must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The same row delivered twice (→ a recognised duplicate).
    Duplicate,
    /// A required field left empty (→ `missing_field`).
    MissingField,
    /// A merchant registration with a mistyped credit code (→ `invalid_credit_code`).
    CorruptedCreditCode,
    /// An amount with a minus sign (→ `negative_amount`).
    NegativeAmount,
    /// An amount with more than two decimals (→ `amount_precision`).
    OverPreciseAmount,
    /// A row for a merchant the platform never registered (→ `unknown_merchant`).
    UnknownMerchant,
    /// A code outside its list (→ `unknown_code`).
    UnknownCode,
    /// A timestamp from a broken clock, before 2000 (→ `timestamp_out_of_range`).
    BadTimestamp,
    /// A real row that arrives in a later delivery (`_late/`), accepted there.
    LateArrival,
}

impl Fault {
    /// The rejection reason ingestion must give, if the fault is a rejection.
    pub fn expected_reason(self) -> Option<&'static str> {
        match self {
            Fault::Duplicate | Fault::LateArrival => None,
            Fault::MissingField => Some("missing_field"),
            Fault::CorruptedCreditCode => Some("invalid_credit_code"),
            Fault::NegativeAmount => Some("negative_amount"),
            Fault::OverPreciseAmount => Some("amount_precision"),
            Fault::UnknownMerchant => Some("unknown_merchant"),
            Fault::UnknownCode => Some("unknown_code"),
            Fault::BadTimestamp => Some("timestamp_out_of_range"),
        }
    }
}

/// Counts of injected faults, per table and kind.
pub type FaultCounts = BTreeMap<&'static str, BTreeMap<Fault, u64>>;

fn applicable(table: Table, row: &[Val]) -> Vec<Fault> {
    let cols = table.columns();
    let mut out = vec![Fault::Duplicate, Fault::MissingField, Fault::BadTimestamp];
    let has_money = cols
        .iter()
        .zip(row)
        .any(|(c, v)| c.ty == ColType::Money && matches!(v, Val::M(_)));
    if has_money {
        out.push(Fault::NegativeAmount);
        out.push(Fault::OverPreciseAmount);
    }
    if table == Table::Merchants {
        out.push(Fault::CorruptedCreditCode);
    } else {
        out.push(Fault::UnknownMerchant);
    }
    if cols
        .iter()
        .zip(row)
        .any(|(c, v)| matches!(c.ty, ColType::Code(_)) && matches!(v, Val::S(_)))
    {
        out.push(Fault::UnknownCode);
    }
    if !matches!(table, Table::Merchants | Table::Products | Table::Contracts) {
        out.push(Fault::LateArrival);
    }
    out
}

const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// SplitMix64: a cheap, well-mixed hash of a row's position, so that whether a row gets a
/// fault depends only on the seed, the table and the row's index in it — not on chunking.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Injects faults into a chunk of clean rows: with probability `share` per row, one fault.
/// `offsets` holds, per table, the index of the chunk's first row in the whole export, and
/// is advanced. Returns the rows that arrive late.
pub fn inject(
    rows: &mut Rows,
    share: f64,
    seed: u64,
    offsets: &mut [u64; Table::ALL.len()],
    counts: &mut FaultCounts,
) -> Rows {
    let mut late = Rows::default();
    if share <= 0.0 {
        return late;
    }
    let threshold = (share.min(1.0) * (u64::MAX as f64)) as u64;
    for table in Table::ALL {
        let t = table as usize;
        let clean = std::mem::replace(&mut rows.tables[t], TableRows::new(table));
        let out = &mut rows.tables[t];
        let cols = table.columns();
        let base = offsets[t];
        offsets[t] += clean.len() as u64;
        for i in 0..clean.len() {
            let n = base + i as u64;
            let key = mix(seed ^ mix((table as u64) << 56 ^ n));
            if key >= threshold {
                out.copy_row(&clean, i);
                continue;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(key);
            let row = clean.row(i);
            let kinds = applicable(table, &row);
            let fault = kinds[rng.gen_range(0..kinds.len())];
            *counts
                .entry(table.name())
                .or_default()
                .entry(fault)
                .or_default() += 1;
            let mut copy = row;
            if let Some(Val::S(id)) = copy.first_mut() {
                id.push_str(&format!("-x{n}"));
            }
            match fault {
                Fault::Duplicate => {
                    out.copy_row(&clean, i);
                    out.copy_row(&clean, i);
                    continue;
                }
                Fault::LateArrival => {
                    late.tables[t].copy_row(&clean, i);
                    continue;
                }
                Fault::MissingField => {
                    let required: Vec<usize> =
                        (1..cols.len()).filter(|&i| cols[i].required).collect();
                    let i = required[rng.gen_range(0..required.len())];
                    copy[i] = Val::N;
                }
                Fault::CorruptedCreditCode => {
                    if let Some(Val::S(m)) = copy.get_mut(1) {
                        *m = format!("MX{n}{}", rng.gen_range(0..1_000_000));
                    }
                    if let Some(Val::S(code)) = copy.get_mut(3) {
                        let mut bytes = code.clone().into_bytes();
                        let pos = rng.gen_range(0..bytes.len().max(1));
                        let old = bytes.get(pos).copied().unwrap_or(b'0');
                        let mut new = old;
                        while new == old {
                            new = CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())];
                        }
                        if let Some(b) = bytes.get_mut(pos) {
                            *b = new;
                        }
                        *code = String::from_utf8(bytes).unwrap_or_default();
                    }
                }
                Fault::NegativeAmount | Fault::OverPreciseAmount => {
                    let money: Vec<usize> = (0..cols.len())
                        .filter(|&i| cols[i].ty == ColType::Money && matches!(copy[i], Val::M(_)))
                        .collect();
                    let i = money[rng.gen_range(0..money.len())];
                    if let Val::M(f) = copy[i] {
                        copy[i] = if fault == Fault::NegativeAmount {
                            Val::M(-f.max(1))
                        } else {
                            Val::MoneyExact(f * 100 + rng.gen_range(1..100))
                        };
                    }
                }
                Fault::UnknownMerchant => {
                    copy[1] = Val::S(format!("MX{n}{}", rng.gen_range(0..1_000_000)));
                }
                Fault::UnknownCode => {
                    let codes: Vec<usize> = (0..cols.len())
                        .filter(|&i| {
                            matches!(cols[i].ty, ColType::Code(_)) && matches!(copy[i], Val::S(_))
                        })
                        .collect();
                    if let Some(&i) = codes.get(rng.gen_range(0..codes.len().max(1))) {
                        copy[i] = Val::S("NOT_A_CODE".into());
                    }
                }
                Fault::BadTimestamp => {
                    // 1990-01-01 00:00 UTC.
                    copy[2] = Val::T(631_152_000_000);
                }
            }
            out.copy_row(&clean, i);
            out.push(&copy, "");
        }
    }
    late
}
