//! The ledger, loaded as compact per-merchant event lists sorted by business day.
//!
//! Only this module reads the ledger (through `yuanxin_ledger::Ledger`, which alone knows
//! its layout). Amounts stay integers in fen; codes become small integers.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type, TimestampMillisecondType};
use yuanxin_domain::SHANGHAI_OFFSET_SECS;
use yuanxin_ledger::{Ledger, Table};

use crate::ProfileError;

const DAY_MS: i64 = 86_400_000;
const LOCAL_MS: i64 = SHANGHAI_OFFSET_SECS as i64 * 1000;

/// Business day (days since 1970-01-01, Asia/Shanghai) of an instant in ms.
pub(crate) fn day_of_ms(ms: i64) -> i32 {
    i32::try_from((ms + LOCAL_MS).div_euclid(DAY_MS)).unwrap_or(i32::MAX)
}

/// Something that happened on a business day.
pub(crate) trait Dated {
    fn day(&self) -> i32;
}

macro_rules! dated {
    ($($t:ty),*) => { $(impl Dated for $t { fn day(&self) -> i32 { self.day } })* };
}

/// Escrow-event kinds, as small integers.
pub(crate) mod esc {
    pub const PREPAYMENT: u8 = 0;
    pub const REDEMPTION: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const RELEASE_REJECTED: u8 = 3;
    pub const REFUND_REQUESTED: u8 = 4;
    pub const REFUND_COMPLETED: u8 = 5;
    pub const EXPIRY: u8 = 6;
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Escrow {
    pub day: i32,
    pub kind: u8,
    /// `code` as text is kept only where features need it.
    pub code: Code,
    pub amount: i64,
    pub frozen: i64,
    /// 64-bit FxHash of the contract id: contracts only need telling apart within one
    /// merchant (a collision among its n contracts has probability about n²/2⁶⁵).
    pub contract: u64,
}

/// The escrow `code` values features distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    Other,
    Escrow,
    MerchantWallet,
    Unrecovered,
    ReleaseToMerchant,
    ServiceFailure,
    MerchantClosed,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Spot {
    pub day: i32,
    pub amount: i64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Withdrawal {
    pub day: i32,
    pub amount: i64,
    pub changed: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ContractRow {
    pub day: i32,
    pub tenor_days: i32,
    pub discount_bp: i64,
    /// FxHash of the consumer id (told apart within one merchant).
    pub consumer: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Operation {
    pub day: i32,
    /// 0 payroll, 1 social insurance, 2 electricity, 3 other utility.
    pub kind: u8,
    pub headcount: i64,
    pub on_time: Option<bool>,
    pub usage: i64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Promotion {
    pub day: i32,
    pub discount_bp: i64,
    pub bonus_bp: i64,
    pub tenor_days: i64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Complaint {
    pub day: i32,
    /// 0 hotline (12315/12345), 1 consumer council, 2 platform.
    pub channel: u8,
    /// Closure or refund.
    pub closure_or_refund: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct PublicRecord {
    pub day: i32,
    /// 0 penalty, 1 listed, 2 removed, 3 lawsuit.
    pub kind: u8,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LoanEvent {
    pub day: i32,
    /// 0 disbursement, 1 scheduled, 2 repayment, 3 status.
    pub kind: u8,
    pub amount: i64,
    pub dpd: i64,
    /// FxHash of the loan id.
    pub loan: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreEvent {
    pub day: i32,
    pub opened: bool,
    pub lease_end: Option<i32>,
    /// FxHash of the store id.
    pub store: u64,
}

dated!(
    Escrow,
    Spot,
    Withdrawal,
    ContractRow,
    Operation,
    Promotion,
    Complaint,
    PublicRecord,
    LoanEvent,
    StoreEvent
);

/// Everything known about one merchant.
#[derive(Debug, Clone, Default)]
pub(crate) struct Merchant {
    pub id: String,
    pub industry: String,
    pub district: String,
    pub registered_on: Option<i32>,
    pub onboarded_on: Option<i32>,
    pub freeze_bp: Option<i64>,
    pub group: u32,
    /// Day the registration record became known (its `ts`).
    pub known_day: i32,
    pub escrow: Vec<Escrow>,
    pub spot: Vec<Spot>,
    pub withdrawals: Vec<Withdrawal>,
    pub contracts: Vec<ContractRow>,
    pub operations: Vec<Operation>,
    pub promotions: Vec<Promotion>,
    pub complaints: Vec<Complaint>,
    pub public: Vec<PublicRecord>,
    pub loans: Vec<LoanEvent>,
    pub stores: Vec<StoreEvent>,
}

impl Merchant {
    /// Sorts every event list by day. Stable sorts: events of one day keep ledger order.
    pub(crate) fn sort(&mut self) {
        self.escrow.sort_by_key(|e| e.day);
        self.spot.sort_by_key(|e| e.day);
        self.withdrawals.sort_by_key(|e| e.day);
        self.contracts.sort_by_key(|e| e.day);
        self.operations.sort_by_key(|e| e.day);
        self.promotions.sort_by_key(|e| e.day);
        self.complaints.sort_by_key(|e| e.day);
        self.public.sort_by_key(|e| e.day);
        self.loans.sort_by_key(|e| e.day);
        self.stores.sort_by_key(|e| e.day);
    }
}

/// The loaded city.
#[derive(Debug, Default)]
pub(crate) struct City {
    pub merchants: Vec<Merchant>,
    /// Registration days of every entity of an owner group (to see related openings).
    pub groups: HashMap<u32, Vec<i32>>,
    /// Last business day with any event: label windows beyond it are incomplete.
    pub last_day: i32,
}

/// FxHash (Firefox's and rustc's): a fast multiplicative hash for short, trusted keys
/// (ids read from our own ledger; nothing here is exposed to crafted input).
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

/// FxHash of a string.
pub(crate) fn fx(text: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = Fx::default();
    h.write(text.as_bytes());
    h.finish()
}

pub(crate) type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fx>>;

/// Interns strings to dense integers.
#[derive(Default)]
struct Interner(FxMap<String, u32>);

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.0.get(s) {
            return i;
        }
        let i = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        self.0.insert(s.to_string(), i);
        i
    }
}

fn strs<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a arrow::array::StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
}

fn opt_str(a: Option<&arrow::array::StringArray>, i: usize) -> Option<&str> {
    a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
}

type Decs = arrow::array::Decimal128Array;
type Ints = arrow::array::Int64Array;
type Dates = arrow::array::Date32Array;
type Bools = arrow::array::BooleanArray;

fn decs<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Decs> {
    b.column_by_name(name)?.as_primitive_opt::<Decimal128Type>()
}

fn ints<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Ints> {
    b.column_by_name(name)?.as_primitive_opt::<Int64Type>()
}

fn dates<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Dates> {
    b.column_by_name(name)?.as_primitive_opt::<Date32Type>()
}

fn bools<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Bools> {
    b.column_by_name(name)?.as_boolean_opt()
}

/// A decimal's mantissa (fen for money, basis points for ratios).
fn dec_at(a: Option<&Decs>, i: usize) -> Option<i64> {
    a.and_then(|a| (!a.is_null(i)).then(|| i64::try_from(a.value(i)).unwrap_or(i64::MAX)))
}

fn int_at(a: Option<&Ints>, i: usize) -> Option<i64> {
    a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
}

fn date_at(a: Option<&Dates>, i: usize) -> Option<i32> {
    a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
}

fn bool_at(a: Option<&Bools>, i: usize) -> Option<bool> {
    a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
}

fn date(b: &RecordBatch, name: &str, i: usize) -> Option<i32> {
    let a = b.column_by_name(name)?.as_primitive_opt::<Date32Type>()?;
    (!a.is_null(i)).then(|| a.value(i))
}

fn days(b: &RecordBatch) -> Vec<i32> {
    b.column_by_name("ts")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .map(|a| (0..a.len()).map(|i| day_of_ms(a.value(i))).collect())
        .unwrap_or_default()
}

/// The columns features read from each table.
fn columns_of(table: Table) -> &'static [&'static str] {
    match table {
        Table::EscrowEvents => &[
            "merchant_id",
            "ts",
            "kind",
            "code",
            "amount",
            "frozen_amount",
            "contract_id",
        ],
        Table::WalletFlows => &[
            "merchant_id",
            "ts",
            "kind",
            "amount",
            "dest_account_changed",
        ],
        Table::Contracts => &["merchant_id", "ts", "expires_on", "discount", "consumer_id"],
        Table::Operations => &[
            "merchant_id",
            "ts",
            "kind",
            "utility_kind",
            "headcount",
            "on_time",
            "usage",
        ],
        Table::Promotions => &["merchant_id", "ts", "discount", "bonus", "tenor_days"],
        Table::Complaints => &["merchant_id", "ts", "channel", "category"],
        Table::PublicRecords => &["merchant_id", "ts", "kind"],
        Table::Loans => &["merchant_id", "ts", "kind", "amount", "dpd", "loan_id"],
        Table::StoreEvents => &["merchant_id", "ts", "kind", "lease_end_on", "store_id"],
        Table::Merchants | Table::Products => &["merchant_id", "ts"],
    }
}

/// What one loader thread returns: per merchant slot, its events; and the latest day seen.
type Part<T> = (Vec<Vec<T>>, i32);

/// Reads one table on all cores: each thread parses a contiguous run of the table's files
/// into per-merchant event lists, and the runs are joined in file order, so the result is
/// the same whatever the number of threads. Also raises `last_day` to the latest event day.
fn load_table<T: Send>(
    ledger: &Ledger,
    known_at_ms: Option<i64>,
    table: Table,
    index: &FxMap<String, usize>,
    last_day: &mut i32,
    parse: impl Fn(&RecordBatch, &[(usize, usize, i32)], &mut [Vec<T>]) + Sync,
) -> Result<Vec<Vec<T>>, ProfileError> {
    let files = ledger.files(table, known_at_ms);
    let columns = columns_of(table);
    let merchants = index.len();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let per = files.len().div_ceil(threads).max(1);
    let parse = &parse;
    let results: Vec<Result<Part<T>, ProfileError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|mine| {
                scope.spawn(move || -> Result<Part<T>, ProfileError> {
                    let mut out: Vec<Vec<T>> = (0..merchants).map(|_| Vec::new()).collect();
                    let mut rows: Vec<(usize, usize, i32)> = Vec::new();
                    let mut latest = i32::MIN;
                    for file in mine {
                        ledger.scan_file(file, Some(columns), &mut |b| {
                            let ids = strs(&b, "merchant_id");
                            let day = days(&b);
                            rows.clear();
                            // A merchant's rows come in runs: look the id up once per run.
                            let mut prev: Option<(&str, usize)> = None;
                            for i in 0..b.num_rows() {
                                let Some(id) = opt_str(ids, i) else { continue };
                                let slot = match prev {
                                    Some((p, slot)) if p == id => slot,
                                    _ => {
                                        let Some(&slot) = index.get(id) else { continue };
                                        prev = Some((id, slot));
                                        slot
                                    }
                                };
                                let d = day.get(i).copied().unwrap_or(0);
                                latest = latest.max(d);
                                rows.push((i, slot, d));
                            }
                            parse(&b, &rows, &mut out);
                            Ok(())
                        })?;
                    }
                    Ok((out, latest))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ProfileError::Output("a loader thread panicked".into()))
                })
            })
            .collect()
    });
    let mut all: Vec<Vec<T>> = (0..merchants).map(|_| Vec::new()).collect();
    for r in results {
        let (part, latest) = r?;
        *last_day = (*last_day).max(latest);
        for (mine, theirs) in all.iter_mut().zip(part) {
            if mine.is_empty() {
                *mine = theirs;
            } else {
                mine.extend(theirs);
            }
        }
    }
    Ok(all)
}

/// Loads the ledger as known at `known_at_ms` (all of it if `None`).
pub(crate) fn load(ledger: &Ledger, known_at_ms: Option<i64>) -> Result<City, ProfileError> {
    let mut city = City::default();
    let mut index: FxMap<String, usize> = FxMap::default();
    let mut groups = Interner::default();
    let mut last_day = i32::MIN;

    for b in ledger.scan(Table::Merchants, known_at_ms, None)? {
        let ids = strs(&b, "merchant_id");
        let day = days(&b);
        for i in 0..b.num_rows() {
            let Some(id) = opt_str(ids, i) else { continue };
            let group = opt_str(strs(&b, "owner_group_id"), i).map(|g| groups.id(g));
            let registered = date(&b, "registered_on", i);
            let slot = *index.entry(id.to_string()).or_insert_with(|| {
                city.merchants.push(Merchant {
                    id: id.to_string(),
                    ..Merchant::default()
                });
                city.merchants.len() - 1
            });
            let m = &mut city.merchants[slot];
            m.industry = opt_str(strs(&b, "industry"), i)
                .unwrap_or_default()
                .to_string();
            m.district = opt_str(strs(&b, "district"), i)
                .unwrap_or_default()
                .to_string();
            m.registered_on = registered;
            m.onboarded_on = date(&b, "ecny_onboarded_on", i);
            m.freeze_bp = b
                .column_by_name("freeze_ratio")
                .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
                .and_then(|a| (!a.is_null(i)).then(|| i64::try_from(a.value(i)).unwrap_or(0)));
            m.known_day = day.get(i).copied().unwrap_or(0);
            let g = group.unwrap_or_else(|| groups.id(&format!("self:{id}")));
            m.group = g;
            if let Some(r) = registered {
                city.groups.entry(g).or_default().push(r);
            }
        }
    }

    // Each table is streamed file by file on all cores, reading only the columns features
    // use; rows become compact events at once, so Arrow batches never pile up in memory.
    // Parsers get a batch and its rows as (row, merchant slot, business day), so that
    // columns are looked up once per batch, not per row.
    let index = &index;
    for (m, evs) in load_table(
        ledger,
        known_at_ms,
        Table::EscrowEvents,
        index,
        &mut last_day,
        |b, rows, out| {
            let (kind, code, contract) = (strs(b, "kind"), strs(b, "code"), strs(b, "contract_id"));
            let (amount, frozen) = (decs(b, "amount"), decs(b, "frozen_amount"));
            for &(i, m, day) in rows {
                let kind = match opt_str(kind, i) {
                    Some("PREPAYMENT") => esc::PREPAYMENT,
                    Some("REDEMPTION") => esc::REDEMPTION,
                    Some("RELEASE") => esc::RELEASE,
                    Some("RELEASE_REJECTED") => esc::RELEASE_REJECTED,
                    Some("REFUND_REQUESTED") => esc::REFUND_REQUESTED,
                    Some("REFUND_COMPLETED") => esc::REFUND_COMPLETED,
                    _ => esc::EXPIRY,
                };
                let code = match opt_str(code, i) {
                    Some("ESCROW") => Code::Escrow,
                    Some("MERCHANT_WALLET") => Code::MerchantWallet,
                    Some("UNRECOVERED") => Code::Unrecovered,
                    Some("RELEASE_TO_MERCHANT") => Code::ReleaseToMerchant,
                    Some("SERVICE_FAILURE") => Code::ServiceFailure,
                    Some("MERCHANT_CLOSED") => Code::MerchantClosed,
                    _ => Code::Other,
                };
                let contract = opt_str(contract, i).map(fx).unwrap_or(0);
                out[m].push(Escrow {
                    day,
                    kind,
                    code,
                    amount: dec_at(amount, i).unwrap_or(0),
                    frozen: dec_at(frozen, i).unwrap_or(0),
                    contract,
                });
            }
        },
    )?
    .into_iter()
    .enumerate()
    {
        city.merchants[m].escrow = evs;
    }
    for (m, evs) in load_table(
        ledger,
        known_at_ms,
        Table::WalletFlows,
        index,
        &mut last_day,
        |b, rows, out| {
            let (kind, amount, changed) = (
                strs(b, "kind"),
                decs(b, "amount"),
                bools(b, "dest_account_changed"),
            );
            for &(i, m, day) in rows {
                let amount = dec_at(amount, i).unwrap_or(0);
                if opt_str(kind, i) == Some("SPOT_SALE") {
                    out[m].push(Ok(Spot { day, amount }));
                } else {
                    let changed = bool_at(changed, i).unwrap_or(false);
                    out[m].push(Err(Withdrawal {
                        day,
                        amount,
                        changed,
                    }));
                }
            }
        },
    )?
    .into_iter()
    .enumerate()
    {
        for e in evs {
            match e {
                Ok(spot) => city.merchants[m].spot.push(spot),
                Err(w) => city.merchants[m].withdrawals.push(w),
            }
        }
    }
    for (m, evs) in load_table(
        ledger,
        known_at_ms,
        Table::Contracts,
        index,
        &mut last_day,
        |b, rows, out| {
            let (expires, discount, consumer) = (
                dates(b, "expires_on"),
                decs(b, "discount"),
                strs(b, "consumer_id"),
            );
            for &(i, m, day) in rows {
                let expires = date_at(expires, i).unwrap_or(day);
                let consumer = opt_str(consumer, i).map(fx).unwrap_or(0);
                out[m].push(ContractRow {
                    day,
                    tenor_days: expires - day + 1,
                    discount_bp: dec_at(discount, i).unwrap_or(0),
                    consumer,
                });
            }
        },
    )?
    .into_iter()
    .enumerate()
    {
        city.merchants[m].contracts = evs;
    }
    for (m, evs) in load_table(
        ledger,
        known_at_ms,
        Table::Operations,
        index,
        &mut last_day,
        |b, rows, out| {
            let (kind, utility, headcount) = (
                strs(b, "kind"),
                strs(b, "utility_kind"),
                ints(b, "headcount"),
            );
            let (on_time, usage) = (bools(b, "on_time"), ints(b, "usage"));
            for &(i, m, day) in rows {
                let kind = match (opt_str(kind, i), opt_str(utility, i)) {
                    (Some("PAYROLL"), _) => 0,
                    (Some("SOCIAL_INSURANCE"), _) => 1,
                    (_, Some("ELECTRICITY")) => 2,
                    _ => 3,
                };
                out[m].push(Operation {
                    day,
                    kind,
                    headcount: int_at(headcount, i).unwrap_or(0),
                    on_time: bool_at(on_time, i),
                    usage: int_at(usage, i).unwrap_or(0),
                });
            }
        },
    )?
    .into_iter()
    .enumerate()
    {
        city.merchants[m].operations = evs;
    }
    for (m, evs) in load_table(
        ledger,
        known_at_ms,
        Table::Promotions,
        index,
        &mut last_day,
        |b, rows, out| {
            let (discount, bonus, tenor) =
                (decs(b, "discount"), decs(b, "bonus"), ints(b, "tenor_days"));
            for &(i, m, day) in rows {
                out[m].push(Promotion {
                    day,
                    discount_bp: dec_at(discount, i).unwrap_or(0),
                    bonus_bp: dec_at(bonus, i).unwrap_or(0),
                    tenor_days: int_at(tenor, i).unwrap_or(0),
                });
            }
        },
    )?
    .into_iter()
    .enumerate()
    {
        city.merchants[m].promotions = evs;
    }
    for (m, evs) in load_table(
        ledger,
        known_at_ms,
        Table::Complaints,
        index,
        &mut last_day,
        |b, rows, out| {
            let (channel, category) = (strs(b, "channel"), strs(b, "category"));
            for &(i, m, day) in rows {
                let channel = match opt_str(channel, i) {
                    Some("HOTLINE_12315" | "HOTLINE_12345") => 0,
                    Some("CONSUMER_COUNCIL") => 1,
                    _ => 2,
                };
                let closure_or_refund = matches!(opt_str(category, i), Some("CLOSURE" | "REFUND"));
                out[m].push(Complaint {
                    day,
                    channel,
                    closure_or_refund,
                });
            }
        },
    )?
    .into_iter()
    .enumerate()
    {
        city.merchants[m].complaints = evs;
    }
    for (m, evs) in load_table(
        ledger,
        known_at_ms,
        Table::PublicRecords,
        index,
        &mut last_day,
        |b, rows, out| {
            let kind = strs(b, "kind");
            for &(i, m, day) in rows {
                let kind = match opt_str(kind, i) {
                    Some("ADMIN_PENALTY") => 0,
                    Some("ABNORMAL_LISTED") => 1,
                    Some("ABNORMAL_REMOVED") => 2,
                    _ => 3,
                };
                out[m].push(PublicRecord { day, kind });
            }
        },
    )?
    .into_iter()
    .enumerate()
    {
        city.merchants[m].public = evs;
    }
    for (m, evs) in load_table(
        ledger,
        known_at_ms,
        Table::Loans,
        index,
        &mut last_day,
        |b, rows, out| {
            let (kind, amount, dpd, loan) = (
                strs(b, "kind"),
                decs(b, "amount"),
                ints(b, "dpd"),
                strs(b, "loan_id"),
            );
            for &(i, m, day) in rows {
                let kind = match opt_str(kind, i) {
                    Some("DISBURSEMENT") => 0,
                    Some("SCHEDULED_REPAYMENT") => 1,
                    Some("REPAYMENT") => 2,
                    _ => 3,
                };
                let loan = opt_str(loan, i).map(fx).unwrap_or(0);
                out[m].push(LoanEvent {
                    day,
                    kind,
                    amount: dec_at(amount, i).unwrap_or(0),
                    dpd: int_at(dpd, i).unwrap_or(0),
                    loan,
                });
            }
        },
    )?
    .into_iter()
    .enumerate()
    {
        city.merchants[m].loans = evs;
    }
    for (m, evs) in load_table(
        ledger,
        known_at_ms,
        Table::StoreEvents,
        index,
        &mut last_day,
        |b, rows, out| {
            let (store, kind, lease) = (
                strs(b, "store_id"),
                strs(b, "kind"),
                dates(b, "lease_end_on"),
            );
            for &(i, m, day) in rows {
                let store = opt_str(store, i).map(fx).unwrap_or(0);
                out[m].push(StoreEvent {
                    day,
                    opened: opt_str(kind, i) == Some("OPENED"),
                    lease_end: date_at(lease, i),
                    store,
                });
            }
        },
    )?
    .into_iter()
    .enumerate()
    {
        city.merchants[m].stores = evs;
    }
    for m in city.merchants.iter_mut() {
        m.sort();
    }
    city.last_day = last_day;
    Ok(city)
}
