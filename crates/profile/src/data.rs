//! The ledger, loaded as compact per-merchant event lists sorted by business day.
//!
//! Only this module reads the ledger (through `yuanxin_ledger::Ledger`, which alone knows
//! its layout). Amounts stay integers in fen; codes become small integers.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    Date32Type, Decimal128Type, Int32Type, Int64Type, TimestampMillisecondType,
};
use yuanxin_ledger::{FileReader, Ledger, Table};

use crate::ProfileError;

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
    }
}

/// Stable sort by day. A merchant's events span a few hundred days at most, so a long list
/// is sorted by counting its days (linear) rather than by comparisons.
fn by_day<T: Dated + Copy>(v: &mut [T]) {
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

/// The loaded city.
#[derive(Debug, Default)]
pub(crate) struct City {
    pub merchants: Vec<Merchant>,
    /// Registration days of every entity of an owner group (to see related openings).
    pub groups: HashMap<u32, Vec<i32>>,
    /// Last business day with any event: label windows beyond it are incomplete.
    pub last_day: i32,
    /// Whether escrow events carry contract ids (read only when a characteristic needs
    /// them); without them the book does not track contracts.
    pub contract_ids: bool,
}

/// FxHash (Firefox's and rustc's) with a finaliser: a fast multiplicative hash for short,
/// trusted keys (ids read from our own ledger; nothing here is exposed to crafted input).
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

impl std::hash::Hasher for Fx {
    /// The state goes through murmur3's finaliser: a multiplicative hash carries low input
    /// bits only upwards, and ids that differ only in their last characters (`M0000681`,
    /// `M0000682`: the high bytes of a little-endian word) would otherwise share the low
    /// bits a hash table indexes by, and pile up in a few buckets.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
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

/// A text column as the ledger gives it: plain strings, or (where the file stores it
/// dictionary-encoded) integer keys into a short list of strings.
enum Text<'a> {
    Plain(&'a arrow::array::StringArray),
    Dict(
        &'a arrow::array::PrimitiveArray<Int32Type>,
        &'a arrow::array::StringArray,
    ),
    Absent,
}

impl<'a> Text<'a> {
    fn of(b: &'a RecordBatch, name: &str) -> Text<'a> {
        let Some(c) = b.column_by_name(name) else {
            return Text::Absent;
        };
        if let Some(s) = c.as_string_opt::<i32>() {
            return Text::Plain(s);
        }
        match c.as_dictionary_opt::<Int32Type>() {
            Some(d) => match d.values().as_string_opt::<i32>() {
                Some(v) => Text::Dict(d.keys(), v),
                None => Text::Absent,
            },
            None => Text::Absent,
        }
    }

    /// `f` of every row's value (`None` for null).
    fn map<T: Copy>(&self, n: usize, f: impl FnMut(Option<&str>) -> T) -> Vec<T> {
        self.values(0..n, true, f)
    }

    /// `f` of the value at each of `rows` (in their order), for the rows of one chunk.
    fn at<T: Copy>(&self, rows: &Rows, f: impl FnMut(Option<&str>) -> T) -> Vec<T> {
        self.values(rows.iter().map(|r| r.0), true, f)
    }

    /// [`Text::at`] for columns whose neighbours rarely repeat (ids): no run check.
    fn at_each<T: Copy>(&self, rows: &Rows, f: impl FnMut(Option<&str>) -> T) -> Vec<T> {
        self.values(rows.iter().map(|r| r.0), false, f)
    }

    /// `f` of the value of each row in `rows` (`None` for null or out of range). A
    /// dictionary column calls `f` once per distinct value; a plain one, with `runs`, once
    /// per run of equal values (rows of a merchant, or of a kind, come in runs).
    fn values<T: Copy>(
        &self,
        rows: impl ExactSizeIterator<Item = usize>,
        runs: bool,
        mut f: impl FnMut(Option<&str>) -> T,
    ) -> Vec<T> {
        match self {
            Text::Absent => vec![f(None); rows.len()],
            Text::Plain(a) => {
                let mut out = Vec::with_capacity(rows.len());
                let mut prev: Option<(Option<&str>, T)> = None;
                for i in rows {
                    let v = (i < a.len() && !a.is_null(i)).then(|| a.value(i));
                    let t = match prev {
                        Some((p, t)) if runs && p == v => t,
                        _ => {
                            let t = f(v);
                            prev = Some((v, t));
                            t
                        }
                    };
                    out.push(t);
                }
                out
            }
            Text::Dict(keys, values) => {
                let none = f(None);
                let table: Vec<T> = (0..values.len())
                    .map(|j| f((!values.is_null(j)).then(|| values.value(j))))
                    .collect();
                rows.map(|i| {
                    if i >= keys.len() || keys.is_null(i) {
                        none
                    } else {
                        usize::try_from(keys.value(i))
                            .ok()
                            .and_then(|k| table.get(k).copied())
                            .unwrap_or(none)
                    }
                })
                .collect()
            }
        }
    }
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

/// Escrow columns; contract ids (the largest column) last, so that they can be left out.
const ESCROW_COLUMNS: &[&str] = &[
    "merchant_id",
    "ts",
    "kind",
    "code",
    "amount",
    "frozen_amount",
    "contract_id",
];

/// Escrow columns when no characteristic needs contract ids.
const ESCROW_WITHOUT_CONTRACTS: &[&str] = ESCROW_COLUMNS.split_at(ESCROW_COLUMNS.len() - 1).0;

/// The columns features read from each table.
fn columns_of(table: Table) -> &'static [&'static str] {
    match table {
        Table::EscrowEvents => ESCROW_COLUMNS,
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

/// Parts of the ledger read only when a selected characteristic (or the label) needs them.
/// Every profile reads escrow events (without contract ids), wallet flows and operations:
/// whether a merchant has enough history depends on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Escrow events' contract ids (contracts with unredeemed value).
    ContractIds,
    /// The contracts table.
    Contracts,
    /// The promotions table.
    Promotions,
    /// The complaints table.
    Complaints,
    /// The public-records table.
    PublicRecords,
    /// The loans table.
    Loans,
    /// Store openings and closures.
    Stores,
}

/// About how many event rows one chunk of merchants holds in memory at once (about 30
/// bytes each as compact events, so some 100 MB). Smaller chunks also run faster, up to a
/// point: a chunk's lists stay warm in the caches and its memory is reused, not faulted in
/// afresh (3 Mi against 8 Mi: 4–6 % faster on the 20,000- and 200,000-merchant cities).
const CHUNK_ROWS: u64 = 3 * 1024 * 1024;

/// Per merchant of a chunk (by its position in the chunk), its events of one table.
type Events<T> = Vec<Vec<T>>;

/// How the city's merchants are split into chunks: by ranges of `merchant_id` (ordered
/// bytewise, as Parquet statistics are). A ledger whose row groups each hold a narrow range
/// of merchants, as merchant-ordered deliveries give, is then read once, a chunk at a time.
struct Plan {
    /// First id of each chunk after the first.
    bounds: Vec<String>,
    /// Per merchant slot: its chunk.
    chunk_of: Vec<usize>,
    /// Per merchant slot: its position among its chunk's members.
    local: Vec<usize>,
    /// Per chunk: its merchants' slots, in slot order.
    members: Vec<Vec<usize>>,
}

impl Plan {
    fn new(merchants: &[Merchant], chunks: usize) -> Plan {
        let n = merchants.len();
        let chunks = chunks.clamp(1, n.max(1));
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| merchants[a].id.as_bytes().cmp(merchants[b].id.as_bytes()));
        let mut chunk_of = vec![0; n];
        let mut bounds = Vec::new();
        for (pos, &slot) in order.iter().enumerate() {
            let k = pos * chunks / n;
            if k > bounds.len() {
                bounds.push(merchants[slot].id.clone());
            }
            chunk_of[slot] = k;
        }
        let mut members = vec![Vec::new(); chunks];
        let mut local = vec![0; n];
        for (slot, &k) in chunk_of.iter().enumerate() {
            local[slot] = members[k].len();
            members[k].push(slot);
        }
        Plan {
            bounds,
            chunk_of,
            local,
            members,
        }
    }

    fn chunks(&self) -> usize {
        self.members.len()
    }

    /// The chunk whose id range holds `id`.
    fn chunk_of_id(&self, id: &[u8]) -> usize {
        self.bounds.partition_point(|b| b.as_bytes() <= id)
    }

    /// First and last chunk a row group may hold merchants of.
    fn span(&self, file: &FileReader, row_group: usize) -> (usize, usize) {
        match file.merchant_range(row_group) {
            Some((lo, hi)) => (self.chunk_of_id(lo), self.chunk_of_id(hi)),
            None => (0, self.chunks() - 1),
        }
    }
}

/// One file of an event table, read a chunk at a time.
struct FileState {
    reader: FileReader,
    /// Per row group: the first and last chunk it may hold merchants of.
    span: Vec<(usize, usize)>,
    /// Row groups decoded for an earlier chunk and kept because they also hold merchants
    /// of later ones: every row group is decoded once.
    kept: Vec<Option<Kept>>,
}

/// A decoded row group, with its rows already sorted out by chunk: for each chunk from
/// `first` on, the rows of its merchants as (row, merchant's place in the chunk, day). Kept
/// between chunks when it holds merchants of later ones, so that each chunk touches only
/// its own rows.
struct Kept {
    batch: RecordBatch,
    first: usize,
    rows: Vec<Vec<ChunkRow>>,
}

impl FileState {
    /// Rows this file has for chunk `k`.
    fn rows_for(&self, k: usize) -> usize {
        self.span
            .iter()
            .enumerate()
            .filter(|(_, &(a, b))| a <= k && k <= b)
            .map(|(rg, _)| self.reader.rows_in(rg))
            .sum()
    }
}

/// Reads the ledger a chunk of merchants at a time. The merchants table (small) is read
/// whole at once; event tables are read chunk by chunk, each row group when the first
/// chunk it covers comes, on all cores, only the columns features use. Within a merchant,
/// events keep ledger order (files in commit order, rows in file order) before the stable
/// sort by day, so the result is the same however the city is chunked or threaded.
pub(crate) struct Loader {
    index: FxMap<String, usize>,
    plan: Plan,
    tables: Vec<(Table, Vec<FileState>)>,
    /// Whether escrow events' contract ids are read (the largest column features use).
    contract_ids: bool,
}

/// Event tables features read.
const EVENT_TABLES: [Table; 9] = [
    Table::EscrowEvents,
    Table::WalletFlows,
    Table::Contracts,
    Table::Operations,
    Table::Promotions,
    Table::Complaints,
    Table::PublicRecords,
    Table::Loans,
    Table::StoreEvents,
];

impl Loader {
    /// Opens the ledger as known at `known_at_ms` (all of it if `None`): the city's
    /// merchants without their events, and a loader for the events.
    pub(crate) fn open(
        ledger: &Ledger,
        known_at_ms: Option<i64>,
        chunks: Option<usize>,
        reads: &[Source],
    ) -> Result<(City, Loader), ProfileError> {
        let (mut city, index) = merchants(ledger, known_at_ms)?;
        city.contract_ids = reads.contains(&Source::ContractIds);
        let mut readers = Vec::new();
        let mut total: u64 = 0;
        let needed = |s: Source| reads.contains(&s);
        for table in EVENT_TABLES {
            let wanted = match table {
                Table::Contracts => needed(Source::Contracts),
                Table::Promotions => needed(Source::Promotions),
                Table::Complaints => needed(Source::Complaints),
                Table::PublicRecords => needed(Source::PublicRecords),
                Table::Loans => needed(Source::Loans),
                Table::StoreEvents => needed(Source::Stores),
                _ => true,
            };
            let mut files = Vec::new();
            for f in ledger.files(table, known_at_ms) {
                let reader = ledger.open_file(f)?;
                // The ledger's last day counts every table, read or not, so that labels'
                // windows do not depend on the characteristics selected.
                match reader.max_ts_ms() {
                    Some(ms) if f.rows > 0 => city.last_day = city.last_day.max(day_of_ms(ms)),
                    _ => {}
                }
                if wanted {
                    total += f.rows;
                    files.push(reader);
                }
            }
            if wanted {
                readers.push((table, files));
            }
        }
        let plan = match chunks {
            Some(n) => Plan::new(&city.merchants, n),
            None => {
                let wanted = usize::try_from(total.div_ceil(CHUNK_ROWS)).unwrap_or(1);
                let plan = Plan::new(&city.merchants, wanted);
                // Row groups spanning a chunk boundary are kept until their last chunk. If
                // the ledger is not clustered by merchant, that would be most of it: then
                // chunks save no memory, and it is read whole.
                if plan.chunks() > 1 && 2 * kept_rows(&plan, &readers) > total {
                    Plan::new(&city.merchants, 1)
                } else {
                    plan
                }
            }
        };
        let tables = readers
            .into_iter()
            .map(|(table, files)| {
                let files = files
                    .into_iter()
                    .map(|reader| {
                        let span: Vec<(usize, usize)> = (0..reader.row_groups())
                            .map(|rg| plan.span(&reader, rg))
                            .collect();
                        let kept = (0..span.len()).map(|_| None).collect();
                        FileState { reader, span, kept }
                    })
                    .collect();
                (table, files)
            })
            .collect();
        Ok((
            city,
            Loader {
                index,
                plan,
                tables,
                contract_ids: needed(Source::ContractIds),
            },
        ))
    }

    /// Chunks the city is read in.
    pub(crate) fn chunks(&self) -> usize {
        self.plan.chunks()
    }

    /// Loads the events of chunk `k`'s merchants into `city` (sorted by day) and raises
    /// `city.last_day`; returns the chunk's merchant slots.
    pub(crate) fn load_chunk(
        &mut self,
        k: usize,
        city: &mut City,
    ) -> Result<Vec<usize>, ProfileError> {
        let members = self.plan.members.get(k).cloned().unwrap_or_default();
        let City {
            merchants,
            last_day,
            ..
        } = city;
        // The chunk's merchants, by their place in the chunk.
        let mut refs: Vec<Option<&mut Merchant>> = (0..members.len()).map(|_| None).collect();
        for (slot, m) in merchants.iter_mut().enumerate() {
            if self.plan.chunk_of[slot] == k {
                refs[self.plan.local[slot]] = Some(m);
            }
        }
        let mut ms: Vec<&mut Merchant> = refs.into_iter().flatten().collect();
        for t in 0..self.tables.len() {
            let (table, files) = &mut self.tables[t];
            let ctx = Ctx {
                plan: &self.plan,
                index: &self.index,
                k,
                columns: match *table {
                    Table::EscrowEvents if !self.contract_ids => ESCROW_WITHOUT_CONTRACTS,
                    t => columns_of(t),
                },
            };
            let last = &mut *last_day;
            let ms = &mut ms;
            match *table {
                Table::EscrowEvents => {
                    ctx.load(files, last, ms, parse_escrow, |m, e| m.escrow = e)?
                }
                Table::WalletFlows => ctx.load(files, last, ms, parse_wallet, |m, e| {
                    for e in e {
                        match e {
                            Ok(spot) => m.spot.push(spot),
                            Err(w) => m.withdrawals.push(w),
                        }
                    }
                })?,
                Table::Contracts => {
                    ctx.load(files, last, ms, parse_contracts, |m, e| m.contracts = e)?
                }
                Table::Operations => {
                    ctx.load(files, last, ms, parse_operations, |m, e| m.operations = e)?
                }
                Table::Promotions => {
                    ctx.load(files, last, ms, parse_promotions, |m, e| m.promotions = e)?
                }
                Table::Complaints => {
                    ctx.load(files, last, ms, parse_complaints, |m, e| m.complaints = e)?
                }
                Table::PublicRecords => {
                    ctx.load(files, last, ms, parse_public, |m, e| m.public = e)?
                }
                Table::Loans => ctx.load(files, last, ms, parse_loans, |m, e| m.loans = e)?,
                Table::StoreEvents => {
                    ctx.load(files, last, ms, parse_stores, |m, e| m.stores = e)?
                }
                Table::Merchants | Table::Products => {}
            }
        }
        on_all_cores(&mut ms, |m| m.sort())?;
        Ok(members)
    }

    /// Drops the events of chunk `k`'s merchants.
    pub(crate) fn release(&self, k: usize, city: &mut City) {
        for &slot in self.plan.members.get(k).map_or(&[][..], |m| &m[..]) {
            let m = &mut city.merchants[slot];
            m.escrow = Vec::new();
            m.spot = Vec::new();
            m.withdrawals = Vec::new();
            m.contracts = Vec::new();
            m.operations = Vec::new();
            m.promotions = Vec::new();
            m.complaints = Vec::new();
            m.public = Vec::new();
            m.loans = Vec::new();
            m.stores = Vec::new();
        }
    }
}

/// Hands each merchant of a chunk its events of one table (`put`), its lists from the
/// loader's runs joined in file order; the merchants are split among the cores.
fn distribute<T: Send>(
    mut parts: Vec<Events<T>>,
    ms: &mut [&mut Merchant],
    put: fn(&mut Merchant, Vec<T>),
) -> Result<(), ProfileError> {
    let per = per_core(ms.len());
    // Cut every run's lists at the same merchant boundaries as `ms`.
    let mut pieces: Vec<Vec<&mut [Vec<T>]>> = Vec::new();
    for part in parts.iter_mut() {
        let mut rest: &mut [Vec<T>] = part.as_mut_slice();
        for t in 0..ms.len().div_ceil(per) {
            let n = per.min(rest.len());
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(n);
            if pieces.len() <= t {
                pieces.push(Vec::new());
            }
            pieces[t].push(mine);
            rest = tail;
        }
    }
    let work: Vec<_> = ms.chunks_mut(per).zip(pieces).collect();
    parallel(work, |(mine, mut pieces)| {
        for (l, m) in mine.iter_mut().enumerate() {
            let mut events: Vec<T> = Vec::new();
            for piece in pieces.iter_mut() {
                if let Some(v) = piece.get_mut(l) {
                    let v = std::mem::take(v);
                    if events.is_empty() {
                        events = v;
                    } else {
                        events.extend(v);
                    }
                }
            }
            put(m, events);
        }
    })
}

/// `f` on every merchant of `ms`, the merchants split among the cores.
fn on_all_cores(ms: &mut [&mut Merchant], f: fn(&mut Merchant)) -> Result<(), ProfileError> {
    let per = per_core(ms.len());
    parallel(ms.chunks_mut(per).collect(), |mine| {
        for m in mine.iter_mut() {
            f(m);
        }
    })
}

/// Items per core when `n` items are split among the cores.
fn per_core(n: usize) -> usize {
    let threads = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1)
        .max(1);
    n.div_ceil(threads).max(1)
}

/// Runs `f` on each work item, one thread per item.
fn parallel<W: Send>(work: Vec<W>, f: impl Fn(W) + Sync) -> Result<(), ProfileError> {
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .into_iter()
            .map(|w| scope.spawn(move || f(w)))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| ProfileError::Output("a loader thread panicked".into()))
        })
    })
}

/// The largest number of rows kept across one chunk boundary under a plan.
fn kept_rows(plan: &Plan, tables: &[(Table, Vec<FileReader>)]) -> u64 {
    let mut across = vec![0u64; plan.chunks()];
    for (_, files) in tables {
        for f in files {
            for rg in 0..f.row_groups() {
                let (a, b) = plan.span(f, rg);
                for c in &mut across[a..b] {
                    *c += f.rows_in(rg) as u64;
                }
            }
        }
    }
    across.into_iter().max().unwrap_or(0)
}

/// A row of a batch that belongs to the chunk: (row, merchant's place in the chunk, day).
type ChunkRow = (usize, usize, i32);

/// Rows of a batch that belong to the chunk.
type Rows = [ChunkRow];

/// What reading one table for one chunk needs.
struct Ctx<'a> {
    plan: &'a Plan,
    index: &'a FxMap<String, usize>,
    k: usize,
    columns: &'static [&'static str],
}

impl Ctx<'_> {
    /// Reads one table's rows of chunk `k` ([`Ctx::read`]) and hands each merchant its
    /// events ([`distribute`] with `put`).
    fn load<T: Send>(
        &self,
        files: &mut [FileState],
        last_day: &mut i32,
        ms: &mut [&mut Merchant],
        parse: fn(&RecordBatch, &Rows, &mut [Vec<T>]),
        put: fn(&mut Merchant, Vec<T>),
    ) -> Result<(), ProfileError> {
        let parts = self.read(files, last_day, parse)?;
        distribute(parts, ms, put)
    }

    /// Reads one table's rows of chunk `k` on all cores: each thread parses a contiguous run
    /// of the files (balanced by rows) into per-merchant event lists; the runs come back in
    /// file order, to be joined by [`distribute`], so the result does not depend on the
    /// number of threads.
    fn read<T: Send>(
        &self,
        files: &mut [FileState],
        last_day: &mut i32,
        parse: fn(&RecordBatch, &Rows, &mut [Vec<T>]),
    ) -> Result<Vec<Events<T>>, ProfileError> {
        let members = self.plan.members.get(self.k).map_or(0, Vec::len);
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .max(1);
        // Cut the files into runs of about equal rows for this chunk.
        let rows: Vec<usize> = files.iter().map(|f| f.rows_for(self.k)).collect();
        let total: usize = rows.iter().sum();
        let mut runs: Vec<&mut [FileState]> = Vec::new();
        let mut rest = files;
        let mut acc = 0;
        let mut start = 0;
        for t in 1..threads {
            let goal = total * t / threads;
            let mut end = start;
            while end < rows.len() && acc + rows[end] <= goal {
                acc += rows[end];
                end += 1;
            }
            let (run, tail) = rest.split_at_mut(end - start);
            runs.push(run);
            rest = tail;
            start = end;
        }
        runs.push(rest);
        let results: Vec<Result<(Events<T>, i32), ProfileError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = runs
                .into_iter()
                .filter(|run| !run.is_empty())
                .map(|run| scope.spawn(move || self.read_run(run, members, parse)))
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
        let mut parts = Vec::with_capacity(results.len());
        for r in results {
            let (part, latest) = r?;
            *last_day = (*last_day).max(latest);
            parts.push(part);
        }
        Ok(parts)
    }

    /// Sorts a freshly decoded row group's rows out by chunk, from chunk `k` (the first
    /// that needs it) to `last`; rows of unknown merchants go nowhere.
    fn sort_out(&self, batch: RecordBatch, k: usize, last: usize) -> Kept {
        let plan = self.plan;
        let n = batch.num_rows();
        let slots = Text::of(&batch, "merchant_id")
            .map(n, |id| id.and_then(|s| self.index.get(s).copied()));
        let day = days(&batch);
        let mut rows: Vec<Vec<ChunkRow>> = vec![Vec::new(); last + 1 - k];
        for (i, slot) in slots.into_iter().enumerate() {
            let Some(slot) = slot else { continue };
            let c = plan.chunk_of[slot];
            if let Some(list) = c.checked_sub(k).and_then(|j| rows.get_mut(j)) {
                list.push((i, plan.local[slot], day.get(i).copied().unwrap_or(0)));
            }
        }
        Kept {
            batch,
            first: k,
            rows,
        }
    }

    fn read_run<T>(
        &self,
        run: &mut [FileState],
        members: usize,
        parse: fn(&RecordBatch, &Rows, &mut [Vec<T>]),
    ) -> Result<(Events<T>, i32), ProfileError> {
        let k = self.k;
        // First every row group the chunk needs, decoded (or kept from an earlier chunk)
        // with the chunk's rows sorted out, and each merchant's count of events: then every
        // list is allocated once at its final size, not grown (and copied) row group by
        // row group.
        // (file in the run, row group, the decoded row group, the chunk's rows of it)
        let mut batches: Vec<(usize, usize, Kept, Vec<ChunkRow>)> = Vec::new();
        let mut sizes = vec![0usize; members];
        let mut latest = i32::MIN;
        for (f, file) in run.iter_mut().enumerate() {
            for rg in 0..file.span.len() {
                let (first, last) = file.span[rg];
                if k < first || k > last {
                    continue;
                }
                let mut kept = match file.kept[rg].take() {
                    Some(kept) => kept,
                    None => self.sort_out(file.reader.read_row_group(rg, self.columns)?, k, last),
                };
                let rows = kept
                    .rows
                    .get_mut(k - kept.first)
                    .map(std::mem::take)
                    .unwrap_or_default();
                for r in &rows {
                    latest = latest.max(r.2);
                    if let Some(n) = sizes.get_mut(r.1) {
                        *n += 1;
                    }
                }
                batches.push((f, rg, kept, rows));
            }
        }
        let mut out: Events<T> = sizes.into_iter().map(Vec::with_capacity).collect();
        for (f, rg, kept, rows) in batches {
            parse(&kept.batch, &rows, &mut out);
            let file = &mut run[f];
            if file.span[rg].1 > k {
                file.kept[rg] = Some(kept);
            }
        }
        Ok((out, latest))
    }
}

/// Reads the merchants table (small) whole: the city without events, and the slot of each
/// merchant id.
fn merchants(
    ledger: &Ledger,
    known_at_ms: Option<i64>,
) -> Result<(City, FxMap<String, usize>), ProfileError> {
    let mut city = City {
        last_day: i32::MIN,
        ..City::default()
    };
    let mut index: FxMap<String, usize> = FxMap::default();
    let mut groups = Interner::default();
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
    Ok((city, index))
}

// Parsers: a batch and its rows of the chunk as (row, merchant's place, business day) in,
// compact events out. Columns are looked up and codes decoded once per batch.

fn parse_escrow(b: &RecordBatch, rows: &Rows, out: &mut [Vec<Escrow>]) {
    let kind = Text::of(b, "kind").at(rows, |k| match k {
        Some("PREPAYMENT") => esc::PREPAYMENT,
        Some("REDEMPTION") => esc::REDEMPTION,
        Some("RELEASE") => esc::RELEASE,
        Some("RELEASE_REJECTED") => esc::RELEASE_REJECTED,
        Some("REFUND_REQUESTED") => esc::REFUND_REQUESTED,
        Some("REFUND_COMPLETED") => esc::REFUND_COMPLETED,
        _ => esc::EXPIRY,
    });
    let code = Text::of(b, "code").at(rows, |c| match c {
        Some("ESCROW") => Code::Escrow,
        Some("MERCHANT_WALLET") => Code::MerchantWallet,
        Some("UNRECOVERED") => Code::Unrecovered,
        Some("RELEASE_TO_MERCHANT") => Code::ReleaseToMerchant,
        Some("SERVICE_FAILURE") => Code::ServiceFailure,
        Some("MERCHANT_CLOSED") => Code::MerchantClosed,
        _ => Code::Other,
    });
    let contract = Text::of(b, "contract_id").at_each(rows, |c| c.map(fx).unwrap_or(0));
    let (amount, frozen) = (decs(b, "amount"), decs(b, "frozen_amount"));
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        out[m].push(Escrow {
            day,
            kind: kind[j],
            code: code[j],
            amount: dec_at(amount, i).unwrap_or(0),
            frozen: dec_at(frozen, i).unwrap_or(0),
            contract: contract[j],
        });
    }
}

fn parse_wallet(b: &RecordBatch, rows: &Rows, out: &mut [Vec<Result<Spot, Withdrawal>>]) {
    let spot = Text::of(b, "kind").at(rows, |k| k == Some("SPOT_SALE"));
    let (amount, changed) = (decs(b, "amount"), bools(b, "dest_account_changed"));
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        let amount = dec_at(amount, i).unwrap_or(0);
        if spot[j] {
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
}

fn parse_contracts(b: &RecordBatch, rows: &Rows, out: &mut [Vec<ContractRow>]) {
    let consumer = Text::of(b, "consumer_id").at_each(rows, |c| c.map(fx).unwrap_or(0));
    let (expires, discount) = (dates(b, "expires_on"), decs(b, "discount"));
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        let expires = date_at(expires, i).unwrap_or(day);
        out[m].push(ContractRow {
            day,
            tenor_days: expires - day + 1,
            discount_bp: dec_at(discount, i).unwrap_or(0),
            consumer: consumer[j],
        });
    }
}

fn parse_operations(b: &RecordBatch, rows: &Rows, out: &mut [Vec<Operation>]) {
    let kind = Text::of(b, "kind").at(rows, |k| match k {
        Some("PAYROLL") => Some(0),
        Some("SOCIAL_INSURANCE") => Some(1),
        _ => None,
    });
    let electricity = Text::of(b, "utility_kind").at(rows, |u| u == Some("ELECTRICITY"));
    let (headcount, on_time, usage) = (ints(b, "headcount"), bools(b, "on_time"), ints(b, "usage"));
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        let kind = kind[j].unwrap_or(if electricity[j] { 2 } else { 3 });
        out[m].push(Operation {
            day,
            kind,
            headcount: int_at(headcount, i).unwrap_or(0),
            on_time: bool_at(on_time, i),
            usage: int_at(usage, i).unwrap_or(0),
        });
    }
}

fn parse_promotions(b: &RecordBatch, rows: &Rows, out: &mut [Vec<Promotion>]) {
    let (discount, bonus, tenor) = (decs(b, "discount"), decs(b, "bonus"), ints(b, "tenor_days"));
    for &(i, m, day) in rows {
        out[m].push(Promotion {
            day,
            discount_bp: dec_at(discount, i).unwrap_or(0),
            bonus_bp: dec_at(bonus, i).unwrap_or(0),
            tenor_days: int_at(tenor, i).unwrap_or(0),
        });
    }
}

fn parse_complaints(b: &RecordBatch, rows: &Rows, out: &mut [Vec<Complaint>]) {
    let channel = Text::of(b, "channel").at(rows, |c| match c {
        Some("HOTLINE_12315" | "HOTLINE_12345") => 0,
        Some("CONSUMER_COUNCIL") => 1,
        _ => 2,
    });
    let closure_or_refund =
        Text::of(b, "category").at(rows, |c| matches!(c, Some("CLOSURE" | "REFUND")));
    for (j, &(_, m, day)) in rows.iter().enumerate() {
        out[m].push(Complaint {
            day,
            channel: channel[j],
            closure_or_refund: closure_or_refund[j],
        });
    }
}

fn parse_public(b: &RecordBatch, rows: &Rows, out: &mut [Vec<PublicRecord>]) {
    let kind = Text::of(b, "kind").at(rows, |k| match k {
        Some("ADMIN_PENALTY") => 0,
        Some("ABNORMAL_LISTED") => 1,
        Some("ABNORMAL_REMOVED") => 2,
        _ => 3,
    });
    for (j, &(_, m, day)) in rows.iter().enumerate() {
        out[m].push(PublicRecord { day, kind: kind[j] });
    }
}

fn parse_loans(b: &RecordBatch, rows: &Rows, out: &mut [Vec<LoanEvent>]) {
    let kind = Text::of(b, "kind").at(rows, |k| match k {
        Some("DISBURSEMENT") => 0,
        Some("SCHEDULED_REPAYMENT") => 1,
        Some("REPAYMENT") => 2,
        _ => 3,
    });
    let loan = Text::of(b, "loan_id").at_each(rows, |l| l.map(fx).unwrap_or(0));
    let (amount, dpd) = (decs(b, "amount"), ints(b, "dpd"));
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        out[m].push(LoanEvent {
            day,
            kind: kind[j],
            amount: dec_at(amount, i).unwrap_or(0),
            dpd: int_at(dpd, i).unwrap_or(0),
            loan: loan[j],
        });
    }
}

fn parse_stores(b: &RecordBatch, rows: &Rows, out: &mut [Vec<StoreEvent>]) {
    let store = Text::of(b, "store_id").at_each(rows, |s| s.map(fx).unwrap_or(0));
    let opened = Text::of(b, "kind").at(rows, |k| k == Some("OPENED"));
    let lease = dates(b, "lease_end_on");
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        out[m].push(StoreEvent {
            day,
            opened: opened[j],
            lease_end: date_at(lease, i),
            store: store[j],
        });
    }
}
