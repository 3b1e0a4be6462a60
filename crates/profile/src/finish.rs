//! Partial profiles and their finishing: the peer characteristics.
//!
//! A peer characteristic is a merchant's own value less the median of its peers' at the
//! same as-of date, so it needs every merchant's value first. Profiles are therefore built
//! in two steps. The first computes each row with its peer characteristics still raw
//! (a *partial* profile, with the hidden [`ORDER`] column that says where the row goes);
//! it can run a chunk of merchants at a time, or as one of N independent [`Shard`]s. The
//! second ([`finish`], or [`Peers`] by parts) puts the rows in order, takes the medians
//! over all of them and subtracts. Every build goes through both steps, so one built in
//! one piece, one streamed to a file and the union of N shards give the same rows.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{Float64Type, UInt64Type};
use yuanxin_domain::vocabulary::columns;

use crate::{push_reason, ProfileError, FEATURES, MIN_PEERS};

/// Hidden column of a partial profile: the row's place in the finished output, as
/// `as-of date's index << 32 | merchant's slot` (slots number the merchants table's rows,
/// the same in every shard). Finished profiles do not have it.
pub const ORDER: &str = "_order";

/// The row's place in the finished output.
pub(crate) fn order_key(date: usize, slot: usize) -> u64 {
    ((date as u64) << 32) | (slot as u64 & 0xffff_ffff)
}

/// One of `count` disjoint sets of merchants, by a hash of the merchant id: the unit of
/// work a scheduler can fan out. The hash is FNV-1a (64 bits) of the id's UTF-8 bytes,
/// modulo `count`, so any tool can tell which shard a merchant is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u32,
    /// Shards in all, 1 to [`Shard::MAX_COUNT`].
    pub count: u32,
}

impl Shard {
    /// Most shards a run can be split into.
    pub const MAX_COUNT: u32 = 4096;

    /// A shard, checked.
    pub fn new(index: u32, count: u32) -> Result<Shard, ProfileError> {
        if count == 0 || count > Shard::MAX_COUNT || index >= count {
            return Err(ProfileError::Options(format!(
                "shard {index}/{count}: the count must be 1 to {} and the index below it",
                Shard::MAX_COUNT
            )));
        }
        Ok(Shard { index, count })
    }

    /// Parses `i/N`.
    pub fn parse(text: &str) -> Result<Shard, ProfileError> {
        let bad = || ProfileError::Options(format!("shard {text:?} is not of the form i/N"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n)
    }

    /// The shard of `id` among `count`.
    pub fn of(id: &str, count: u32) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        u32::try_from(h % u64::from(count.max(1))).unwrap_or(0)
    }

    /// Whether merchant `id` is in this shard.
    pub fn contains(&self, id: &str) -> bool {
        Shard::of(id, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A peer group: (as-of date's index, industry, district).
type Cell = (u32, String, String);
/// A city-wide industry: (as-of date's index, industry).
type Trade = (u32, String);

/// The peer characteristics' values, gathered from partial profiles a batch at a time
/// ([`Peers::add`]), then their medians ([`Peers::medians`]). Only rows with enough
/// history that have not closed count as peers.
#[derive(Debug, Default)]
pub struct Peers {
    /// Peer characteristics among the columns, in catalogue order.
    names: Vec<&'static str>,
    cells: HashMap<Cell, Vec<Vec<f64>>>,
    trades: HashMap<Trade, Vec<Vec<f64>>>,
}

/// The medians of [`Peers`], ready to finish partial profiles with ([`Medians::apply`]).
#[derive(Debug, Default)]
pub struct Medians {
    names: Vec<&'static str>,
    cells: HashMap<Cell, Vec<Option<f64>>>,
    trades: HashMap<Trade, Vec<Option<f64>>>,
}

fn bad(why: impl std::fmt::Display) -> ProfileError {
    ProfileError::Output(format!("partial profiles: {why}"))
}

fn f64s<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a Float64Array, ProfileError> {
    b.column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Float64Type>())
        .ok_or_else(|| bad(format!("no {name} column of numbers")))
}

fn strings<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a StringArray, ProfileError> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| bad(format!("no {name} column of text")))
}

pub(crate) fn orders(b: &RecordBatch) -> Result<&UInt64Array, ProfileError> {
    b.column_by_name(ORDER)
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .ok_or_else(|| bad(format!("no {ORDER} column")))
}

/// The peer characteristics among a batch's columns, in catalogue order.
fn peer_columns(b: &RecordBatch) -> Vec<&'static str> {
    FEATURES
        .iter()
        .filter(|f| f.peer && b.column_by_name(f.name).is_some())
        .map(|f| f.name)
        .collect()
}

impl Peers {
    /// Adds a partial profile's rows.
    pub fn add(&mut self, b: &RecordBatch) -> Result<(), ProfileError> {
        let names = peer_columns(b);
        if self.cells.is_empty() && self.trades.is_empty() {
            self.names = names;
        } else if names != self.names {
            return Err(bad("parts have different peer characteristics"));
        }
        if self.names.is_empty() {
            return Ok(());
        }
        let order = orders(b)?;
        let industry = strings(b, columns::INDUSTRY)?;
        let district = strings(b, columns::DISTRICT)?;
        let insufficient = b
            .column_by_name(columns::INSUFFICIENT_DATA)
            .and_then(|c| c.as_boolean_opt())
            .ok_or_else(|| bad("no insufficient_data column"))?;
        let closed = b
            .column_by_name(columns::CLOSED_ON)
            .ok_or_else(|| bad("no closed_on column"))?;
        let values = self
            .names
            .iter()
            .map(|n| f64s(b, n))
            .collect::<Result<Vec<_>, _>>()?;
        let k = self.names.len();
        for i in 0..b.num_rows() {
            if insufficient.value(i) || closed.is_valid(i) {
                continue;
            }
            if values.iter().all(|v| v.is_null(i)) {
                continue;
            }
            let date = u32::try_from(order.value(i) >> 32).unwrap_or(u32::MAX);
            let (ind, dist) = (industry.value(i), district.value(i));
            let cell = self
                .cells
                .entry((date, ind.to_string(), dist.to_string()))
                .or_insert_with(|| vec![Vec::new(); k]);
            for (j, v) in values.iter().enumerate() {
                if v.is_valid(i) {
                    cell[j].push(v.value(i));
                }
            }
            let trade = self
                .trades
                .entry((date, ind.to_string()))
                .or_insert_with(|| vec![Vec::new(); k]);
            for (j, v) in values.iter().enumerate() {
                if v.is_valid(i) {
                    trade[j].push(v.value(i));
                }
            }
        }
        Ok(())
    }

    /// The medians of groups with at least [`MIN_PEERS`] values.
    pub fn medians(self) -> Medians {
        fn median(mut v: Vec<f64>) -> Option<f64> {
            if v.len() < MIN_PEERS {
                return None;
            }
            v.sort_by(f64::total_cmp);
            let n = v.len();
            Some(if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            })
        }
        let all = |v: Vec<Vec<f64>>| v.into_iter().map(median).collect::<Vec<_>>();
        Medians {
            names: self.names,
            cells: self.cells.into_iter().map(|(g, v)| (g, all(v))).collect(),
            trades: self.trades.into_iter().map(|(g, v)| (g, all(v))).collect(),
        }
    }
}

impl Medians {
    /// Finishes a partial profile whose rows are in order: each peer characteristic less
    /// its group's median (the district's, or the city's industry where the district has
    /// too few peers; none, with the reason `too_few_peers`, where that has too few too),
    /// without the [`ORDER`] column.
    pub fn apply(&self, b: &RecordBatch) -> Result<RecordBatch, ProfileError> {
        let schema = b.schema();
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        if !self.names.is_empty() {
            let order = orders(b)?;
            let industry = strings(b, columns::INDUSTRY)?;
            let district = strings(b, columns::DISTRICT)?;
            let missing = strings(b, columns::MISSING_REASONS)?;
            let mut reasons: Vec<String> = (0..b.num_rows())
                .map(|i| missing.value(i).to_string())
                .collect();
            for (j, name) in self.names.iter().enumerate() {
                let values = f64s(b, name)?;
                let finished: Float64Array = (0..b.num_rows())
                    .map(|i| {
                        if values.is_null(i) {
                            return None;
                        }
                        let date = u32::try_from(order.value(i) >> 32).unwrap_or(u32::MAX);
                        let ind = industry.value(i);
                        let cell = (date, ind.to_string(), district.value(i).to_string());
                        let m = self.cells.get(&cell).and_then(|m| m[j]).or_else(|| {
                            self.trades.get(&(date, ind.to_string())).and_then(|m| m[j])
                        });
                        match m {
                            Some(m) => Some(values.value(i) - m),
                            None => {
                                push_reason(&mut reasons[i], name, "too_few_peers");
                                None
                            }
                        }
                    })
                    .collect();
                let at = schema.index_of(name).map_err(bad)?;
                cols[at] = Arc::new(finished);
            }
            let at = schema.index_of(columns::MISSING_REASONS).map_err(bad)?;
            cols[at] = Arc::new(StringArray::from(reasons));
        }
        let at = schema.index_of(ORDER).map_err(bad)?;
        cols.remove(at);
        let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
        fields.remove(at);
        RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols).map_err(bad)
    }
}

/// Puts partial profiles' rows in order (checking that no row comes twice: shards must
/// not overlap).
pub fn in_order(parts: &[RecordBatch]) -> Result<RecordBatch, ProfileError> {
    let first = parts.first().ok_or_else(|| bad("none to finish"))?;
    let schema = first.schema();
    if parts.iter().any(|p| p.schema() != schema) {
        return Err(bad(
            "parts have different columns (built with different options)",
        ));
    }
    let all = arrow::compute::concat_batches(&schema, parts).map_err(bad)?;
    let indices = arrow::compute::sort_to_indices(orders(&all)?, None, None).map_err(bad)?;
    let sorted = arrow::compute::take_record_batch(&all, &indices).map_err(bad)?;
    let order = orders(&sorted)?;
    if let Some(i) = (1..order.len()).find(|&i| order.value(i) == order.value(i - 1)) {
        return Err(bad(format!(
            "a row comes twice (merchant {}): do the shards overlap?",
            strings(&sorted, columns::MERCHANT_ID)?.value(i)
        )));
    }
    Ok(sorted)
}

/// Finishes partial profiles — one built whole, or the parts of N shards — into the
/// profiles a single build gives: rows in order, peer characteristics finished.
pub fn finish(parts: &[RecordBatch]) -> Result<RecordBatch, ProfileError> {
    let sorted = in_order(parts)?;
    let mut peers = Peers::default();
    peers.add(&sorted)?;
    peers.medians().apply(&sorted)
}
