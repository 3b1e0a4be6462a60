//! The event types a merchant's lists hold, the merchant and the loaded city.

use super::*;

/// Business day (days since 1970-01-01, Asia/Shanghai) of an instant in ms.
pub(crate) fn day_of_ms(ms: i64) -> i32 {
    i32::try_from(yuanxin_domain::business_day_of_ms(ms)).unwrap_or(i32::MAX)
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
    /// A kind this version does not know (the ledger accepts only listed kinds, so only
    /// a ledger written by a later version has them): counted in no characteristic.
    pub const UNKNOWN: u8 = u8::MAX;
}

/// Operation kinds, as small integers.
pub(crate) mod ops {
    pub const PAYROLL: u8 = 0;
    pub const SOCIAL_INSURANCE: u8 = 1;
    pub const ELECTRICITY: u8 = 2;
    pub const OTHER_UTILITY: u8 = 3;
    pub const RENT: u8 = 4;
    pub const UNKNOWN: u8 = u8::MAX;
}

/// Public-record kinds, as small integers.
pub(crate) mod public {
    pub const ADMIN_PENALTY: u8 = 0;
    pub const ABNORMAL_LISTED: u8 = 1;
    pub const ABNORMAL_REMOVED: u8 = 2;
    pub const LAWSUIT: u8 = 3;
    pub const ENFORCEMENT: u8 = 4;
    pub const DISHONEST_LISTED: u8 = 5;
    pub const DISHONEST_REMOVED: u8 = 6;
    pub const UNKNOWN: u8 = u8::MAX;
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
    /// Paid from a risk reserve or by a performance bond's insurer.
    Guarantee,
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
    /// Price paid, fen.
    pub paid: i64,
    /// FxHash of the consumer id (told apart within one merchant).
    pub consumer: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Operation {
    pub day: i32,
    /// One of [`ops`].
    pub kind: u8,
    /// Paid or due, fen (0 when not given).
    pub amount: i64,
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
    /// One of [`public`].
    pub kind: u8,
    /// Fine, claim or sum to enforce, fen (0 when not given).
    pub amount: i64,
}

/// A credit-bureau record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BureauRecord {
    pub day: i32,
    /// A month-end debt balance (else an inquiry).
    pub balance: bool,
    /// An inquiry for a loan application.
    pub application: bool,
    /// Balance or amount applied for, fen (0 when not given).
    pub amount: i64,
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
    /// CLOSED: days of public notice given (0 when none is recorded).
    pub notice: i64,
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
    StoreEvent,
    BureauRecord
);

/// One record of the merchants table: what the registry says of a merchant from the
/// business day the record was issued (`from`) until its next record — a re-registration,
/// a change of custody, of owners or of address.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// Business day of the record's `ts`.
    pub from: i32,
    pub industry: String,
    pub district: String,
    pub registered_on: Option<i32>,
    pub onboarded_on: Option<i32>,
    pub freeze_bp: Option<i64>,
    /// A risk reserve or performance bond's amount (fen).
    pub guarantee: Option<i64>,
    pub group: u32,
}

impl Record {
    /// What is known of a merchant without any record.
    pub const NONE: Record = Record {
        from: i32::MIN,
        industry: String::new(),
        district: String::new(),
        registered_on: None,
        onboarded_on: None,
        freeze_bp: None,
        guarantee: None,
        group: 0,
    };
}

/// Everything known about one merchant.
#[derive(Debug, Clone, Default)]
pub(crate) struct Merchant {
    pub id: String,
    /// Its records in the merchants table, by day issued (ingestion order within a day).
    pub records: Vec<Record>,
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
    pub bureau: Vec<BureauRecord>,
}

impl Merchant {
    /// The record in force at the end of day `d`: the last issued by then. Before its
    /// first record, a merchant is described by that first record (history is read from
    /// where the registry's knowledge of it begins), never by a later one.
    pub fn record(&self, d: i32) -> &Record {
        static NONE: Record = Record::NONE;
        let after = self.records.partition_point(|r| r.from <= d);
        self.records.get(after.saturating_sub(1)).unwrap_or(&NONE)
    }

    /// Sorts every event list by day. Stable sorts: events of one day keep ledger order.
    pub(crate) fn sort(&mut self) {
        by_day(&mut self.escrow);
        by_day(&mut self.spot);
        by_day(&mut self.withdrawals);
        by_day(&mut self.contracts);
        by_day(&mut self.operations);
        by_day(&mut self.promotions);
        by_day(&mut self.complaints);
        by_day(&mut self.public);
        by_day(&mut self.loans);
        by_day(&mut self.stores);
        by_day(&mut self.bureau);
    }
}

/// Stable sort by day. A merchant's events span a few hundred days at most, so a long list
/// is sorted by counting its days (linear) rather than by comparisons.
pub(super) fn by_day<T: Dated + Copy>(v: &mut [T]) {
    if v.is_sorted_by_key(Dated::day) {
        return;
    }
    let (lo, hi) = v.iter().fold((i32::MAX, i32::MIN), |(lo, hi), e| {
        (lo.min(e.day()), hi.max(e.day()))
    });
    let range = usize::try_from(i64::from(hi) - i64::from(lo) + 1).unwrap_or(usize::MAX);
    if v.len() < 64 || range > 4 * v.len() {
        v.sort_by_key(Dated::day);
        return;
    }
    let offset = |e: &T| usize::try_from(e.day() - lo).unwrap_or(0);
    // starts[d]: where events of day lo + d go.
    let mut starts = vec![0usize; range + 1];
    for e in v.iter() {
        starts[offset(e) + 1] += 1;
    }
    for d in 1..=range {
        starts[d] += starts[d - 1];
    }
    let old = v.to_vec();
    for e in old {
        let d = offset(&e);
        v[starts[d]] = e;
        starts[d] += 1;
    }
}

/// An entity's membership of an owner group, from one of its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    /// The entity's slot in the city.
    pub slot: usize,
    /// Its registration day.
    pub registered_on: i32,
    /// The days its record says it belongs to the group: `from..until`.
    pub from: i32,
    pub until: i32,
}

/// The loaded city.
#[derive(Debug, Default)]
pub(crate) struct City {
    pub merchants: Vec<Merchant>,
    /// The entities of each owner group, with when they belonged to it (to see related
    /// openings).
    pub groups: HashMap<u32, Vec<Member>>,
    /// Last business day with any event: label windows beyond it are incomplete.
    pub last_day: i32,
    /// Whether escrow events carry contract ids (read only when a characteristic needs
    /// them); without them the book does not track contracts.
    pub contract_ids: bool,
}
