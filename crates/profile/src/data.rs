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
    pub contract: u32,
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
    pub consumer: u32,
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
    pub loan: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreEvent {
    pub day: i32,
    pub opened: bool,
    pub lease_end: Option<i32>,
    pub store: u32,
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

/// Interns strings to dense integers.
#[derive(Default)]
struct Interner(HashMap<String, u32>);

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

fn fen(b: &RecordBatch, name: &str, i: usize) -> Option<i64> {
    let a = b
        .column_by_name(name)?
        .as_primitive_opt::<Decimal128Type>()?;
    (!a.is_null(i)).then(|| i64::try_from(a.value(i)).unwrap_or(i64::MAX))
}

fn int(b: &RecordBatch, name: &str, i: usize) -> Option<i64> {
    let a = b.column_by_name(name)?.as_primitive_opt::<Int64Type>()?;
    (!a.is_null(i)).then(|| a.value(i))
}

fn date(b: &RecordBatch, name: &str, i: usize) -> Option<i32> {
    let a = b.column_by_name(name)?.as_primitive_opt::<Date32Type>()?;
    (!a.is_null(i)).then(|| a.value(i))
}

fn boolean(b: &RecordBatch, name: &str, i: usize) -> Option<bool> {
    let a = b.column_by_name(name)?.as_boolean_opt()?;
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

/// Loads the ledger as known at `known_at_ms` (all of it if `None`).
pub(crate) fn load(ledger: &Ledger, known_at_ms: Option<i64>) -> Result<City, ProfileError> {
    let mut city = City::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups = Interner::default();
    let mut contracts = Interner::default();
    let mut consumers = Interner::default();
    let mut loans = Interner::default();
    let mut stores = Interner::default();
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

    // Each table is streamed file by file, reading only the columns features use; rows
    // become compact events at once, so Arrow batches never pile up in memory.
    let mut each = |table: Table,
                    f: &mut dyn FnMut(&RecordBatch, usize, usize, i32)|
     -> Result<(), ProfileError> {
        let columns = columns_of(table);
        for file in ledger.files(table, known_at_ms) {
            ledger.scan_file(file, Some(columns), &mut |b| {
                let ids = strs(&b, "merchant_id");
                let day = days(&b);
                for i in 0..b.num_rows() {
                    let Some(&slot) = opt_str(ids, i).and_then(|m| index.get(m)) else {
                        continue;
                    };
                    let d = day.get(i).copied().unwrap_or(0);
                    last_day = last_day.max(d);
                    f(&b, i, slot, d);
                }
                Ok(())
            })?;
        }
        Ok(())
    };

    let ms = &mut city.merchants;
    each(Table::EscrowEvents, &mut |b, i, m, day| {
        let kind = match opt_str(strs(b, "kind"), i) {
            Some("PREPAYMENT") => esc::PREPAYMENT,
            Some("REDEMPTION") => esc::REDEMPTION,
            Some("RELEASE") => esc::RELEASE,
            Some("RELEASE_REJECTED") => esc::RELEASE_REJECTED,
            Some("REFUND_REQUESTED") => esc::REFUND_REQUESTED,
            Some("REFUND_COMPLETED") => esc::REFUND_COMPLETED,
            _ => esc::EXPIRY,
        };
        let code = match opt_str(strs(b, "code"), i) {
            Some("ESCROW") => Code::Escrow,
            Some("MERCHANT_WALLET") => Code::MerchantWallet,
            Some("UNRECOVERED") => Code::Unrecovered,
            Some("RELEASE_TO_MERCHANT") => Code::ReleaseToMerchant,
            Some("SERVICE_FAILURE") => Code::ServiceFailure,
            Some("MERCHANT_CLOSED") => Code::MerchantClosed,
            _ => Code::Other,
        };
        let contract = opt_str(strs(b, "contract_id"), i)
            .map(|c| contracts.id(c))
            .unwrap_or(0);
        ms[m].escrow.push(Escrow {
            day,
            kind,
            code,
            amount: fen(b, "amount", i).unwrap_or(0),
            frozen: fen(b, "frozen_amount", i).unwrap_or(0),
            contract,
        });
    })?;
    each(Table::WalletFlows, &mut |b, i, m, day| {
        let amount = fen(b, "amount", i).unwrap_or(0);
        if opt_str(strs(b, "kind"), i) == Some("SPOT_SALE") {
            ms[m].spot.push(Spot { day, amount });
        } else {
            let changed = boolean(b, "dest_account_changed", i).unwrap_or(false);
            ms[m].withdrawals.push(Withdrawal {
                day,
                amount,
                changed,
            });
        }
    })?;
    each(Table::Contracts, &mut |b, i, m, day| {
        let expires = date(b, "expires_on", i).unwrap_or(day);
        let discount_bp = b
            .column_by_name("discount")
            .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
            .and_then(|a| (!a.is_null(i)).then(|| i64::try_from(a.value(i)).unwrap_or(0)))
            .unwrap_or(0);
        let consumer = opt_str(strs(b, "consumer_id"), i)
            .map(|c| consumers.id(c))
            .unwrap_or(0);
        ms[m].contracts.push(ContractRow {
            day,
            tenor_days: expires - day + 1,
            discount_bp,
            consumer,
        });
    })?;
    each(Table::Operations, &mut |b, i, m, day| {
        let kind = match (
            opt_str(strs(b, "kind"), i),
            opt_str(strs(b, "utility_kind"), i),
        ) {
            (Some("PAYROLL"), _) => 0,
            (Some("SOCIAL_INSURANCE"), _) => 1,
            (_, Some("ELECTRICITY")) => 2,
            _ => 3,
        };
        ms[m].operations.push(Operation {
            day,
            kind,
            headcount: int(b, "headcount", i).unwrap_or(0),
            on_time: boolean(b, "on_time", i),
            usage: int(b, "usage", i).unwrap_or(0),
        });
    })?;
    each(Table::Promotions, &mut |b, i, m, day| {
        let ratio = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
                .and_then(|a| (!a.is_null(i)).then(|| i64::try_from(a.value(i)).unwrap_or(0)))
                .unwrap_or(0)
        };
        ms[m].promotions.push(Promotion {
            day,
            discount_bp: ratio("discount"),
            bonus_bp: ratio("bonus"),
            tenor_days: int(b, "tenor_days", i).unwrap_or(0),
        });
    })?;
    each(Table::Complaints, &mut |b, i, m, day| {
        let channel = match opt_str(strs(b, "channel"), i) {
            Some("HOTLINE_12315" | "HOTLINE_12345") => 0,
            Some("CONSUMER_COUNCIL") => 1,
            _ => 2,
        };
        let cat = opt_str(strs(b, "category"), i);
        ms[m].complaints.push(Complaint {
            day,
            channel,
            closure_or_refund: matches!(cat, Some("CLOSURE" | "REFUND")),
        });
    })?;
    each(Table::PublicRecords, &mut |b, i, m, day| {
        let kind = match opt_str(strs(b, "kind"), i) {
            Some("ADMIN_PENALTY") => 0,
            Some("ABNORMAL_LISTED") => 1,
            Some("ABNORMAL_REMOVED") => 2,
            _ => 3,
        };
        ms[m].public.push(PublicRecord { day, kind });
    })?;
    each(Table::Loans, &mut |b, i, m, day| {
        let kind = match opt_str(strs(b, "kind"), i) {
            Some("DISBURSEMENT") => 0,
            Some("SCHEDULED_REPAYMENT") => 1,
            Some("REPAYMENT") => 2,
            _ => 3,
        };
        let loan = opt_str(strs(b, "loan_id"), i)
            .map(|l| loans.id(l))
            .unwrap_or(0);
        ms[m].loans.push(LoanEvent {
            day,
            kind,
            amount: fen(b, "amount", i).unwrap_or(0),
            dpd: int(b, "dpd", i).unwrap_or(0),
            loan,
        });
    })?;
    each(Table::StoreEvents, &mut |b, i, m, day| {
        let store = opt_str(strs(b, "store_id"), i)
            .map(|s| stores.id(s))
            .unwrap_or(0);
        ms[m].stores.push(StoreEvent {
            day,
            opened: opt_str(strs(b, "kind"), i) == Some("OPENED"),
            lease_end: date(b, "lease_end_on", i),
            store,
        });
    })?;
    for m in city.merchants.iter_mut() {
        m.sort();
    }
    city.last_day = last_day;
    Ok(city)
}
