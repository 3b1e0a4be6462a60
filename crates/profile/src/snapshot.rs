//! A merchant as of a business day: windows over its event lists and the running state of
//! its escrow, wallet and contracts, computed from events dated on or before that day only.

use crate::data::{esc, City, Code, Dated, Escrow, FxMap, Merchant, Record};

/// Events dated on or before `d`.
pub(crate) fn upto<T: Dated>(v: &[T], d: i32) -> &[T] {
    &v[..v.partition_point(|e| e.day() <= d)]
}

/// Events dated in `(from, to]`.
pub(crate) fn between<T: Dated>(v: &[T], from: i32, to: i32) -> &[T] {
    let a = v.partition_point(|e| e.day() <= from);
    let b = v.partition_point(|e| e.day() <= to);
    &v[a..b.max(a)]
}

/// Events of the `n` days ending on `d` (inclusive).
pub(crate) fn last<T: Dated>(v: &[T], d: i32, n: i32) -> &[T] {
    between(v, d - n, d)
}

/// Escrow and wallet state at the end of a day.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Book {
    /// Unredeemed value of prepaid contracts (fen).
    pub liability: i64,
    /// Frozen funds still held by the smart contracts (fen).
    pub frozen: i64,
    /// Contracts with unredeemed value.
    pub active_contracts: i64,
}

/// Folds escrow events up to `d` into the book, noting it also at the end of each earlier
/// day in `marks` (ascending): one pass gives the book at several dates.
/// Contracts are tracked only if `contracts` (their ids were read).
pub(crate) fn books<const N: usize>(
    m: &Merchant,
    marks: [i32; N],
    d: i32,
    contracts: bool,
) -> ([Book; N], Book) {
    let mut b = Book::default();
    let mut left: FxMap<u64, i64> = FxMap::default();
    let mut at = [Book::default(); N];
    let mut next = 0;
    let active = |left: &FxMap<u64, i64>| left.values().filter(|v| **v > 0).count() as i64;
    for e in upto(&m.escrow, d) {
        while next < N && e.day > marks[next] {
            at[next] = Book {
                active_contracts: active(&left),
                ..b
            };
            next += 1;
        }
        let delta = match e.kind {
            esc::PREPAYMENT => {
                b.frozen = b.frozen.saturating_add(e.frozen);
                e.amount
            }
            esc::REDEMPTION => -e.amount,
            esc::RELEASE => {
                b.frozen = b.frozen.saturating_sub(e.amount);
                0
            }
            esc::REFUND_COMPLETED => {
                if e.code == Code::Escrow {
                    b.frozen = b.frozen.saturating_sub(e.amount);
                }
                -e.amount
            }
            esc::EXPIRY if e.code == Code::ReleaseToMerchant => -e.amount,
            _ => 0,
        };
        if delta != 0 && contracts {
            let l = left.entry(e.contract).or_default();
            *l = l.saturating_add(delta);
        }
        b.liability = b.liability.saturating_add(delta);
    }
    b.active_contracts = active(&left);
    for slot in at.iter_mut().skip(next) {
        *slot = b;
    }
    (at, b)
}

/// Sums of fen that saturate instead of wrapping: ingestion bounds each amount, not their
/// sum, so a delivery of absurd amounts must give a huge value, never a negative one (a
/// wrapped `i64` sum would turn twelve huge sales into a revenue of −6e16).
pub(crate) trait SatSum: Iterator<Item = i64> + Sized {
    fn sat_sum(self) -> i64 {
        self.fold(0, i64::saturating_add)
    }
}

impl<I: Iterator<Item = i64>> SatSum for I {}

/// What an escrow event moves into (+) or out of (−) the merchant's own wallet (fen): the
/// unfrozen part of a prepayment, a release, a refund the merchant paid.
pub(crate) fn wallet_flow(e: &Escrow) -> i64 {
    match e.kind {
        esc::PREPAYMENT => e.amount - e.frozen,
        esc::RELEASE => e.amount,
        esc::REFUND_COMPLETED if e.code == Code::MerchantWallet => -e.amount,
        _ => 0,
    }
}

/// The merchant's wallet balance at the end of `d`, reconstructed from visible flows.
pub(crate) fn wallet(m: &Merchant, d: i32) -> i64 {
    let spot: i64 = upto(&m.spot, d).iter().map(|e| e.amount).sat_sum();
    let out: i64 = upto(&m.withdrawals, d).iter().map(|e| e.amount).sat_sum();
    let escrow: i64 = upto(&m.escrow, d).iter().map(wallet_flow).sat_sum();
    spot.saturating_add(escrow).saturating_sub(out)
}

/// Revenue (spot sales plus escrow releases, fen) of the 30-day bucket `k` before `d`
/// (bucket 0 ends on `d`).
pub(crate) fn revenue_bucket(m: &Merchant, d: i32, k: i32) -> i64 {
    let to = d - 30 * k;
    let from = to - 30;
    let spot: i64 = between(&m.spot, from, to)
        .iter()
        .map(|e| e.amount)
        .sat_sum();
    let rel: i64 = between(&m.escrow, from, to)
        .iter()
        .filter(|e| e.kind == esc::RELEASE)
        .map(|e| e.amount)
        .sat_sum();
    spot.saturating_add(rel)
}

/// The merchant as of a day, with what features need.
pub(crate) struct Snap<'a> {
    pub m: &'a Merchant,
    /// The merchant's registry record in force at the end of day `d`.
    pub r: &'a Record,
    pub city: &'a City,
    pub d: i32,
    pub book: Book,
    pub book_90: Book,
    pub book_30: Book,
    /// Revenue of the last 12 thirty-day buckets, most recent first (fen).
    pub rev: [i64; 12],
    /// First business day with any visible activity.
    pub first_day: Option<i32>,
}

impl<'a> Snap<'a> {
    pub fn new(city: &'a City, m: &'a Merchant, d: i32) -> Snap<'a> {
        let mut rev = [0i64; 12];
        for (k, r) in rev.iter_mut().enumerate() {
            *r = revenue_bucket(m, d, k as i32);
        }
        let first_day = [
            m.spot.first().map(|e| e.day),
            m.escrow.first().map(|e| e.day),
            m.operations.first().map(|e| e.day),
        ]
        .into_iter()
        .flatten()
        .min()
        .filter(|f| *f <= d);
        let ([book_90, book_30], book) = books(m, [d - 90, d - 30], d, city.contract_ids);
        Snap {
            m,
            r: m.record(d),
            city,
            d,
            book,
            book_90,
            book_30,
            rev,
            first_day,
        }
    }

    /// Days of visible history before `d` (0 if none).
    pub fn history_days(&self) -> i32 {
        self.first_day.map(|f| self.d - f + 1).unwrap_or(0)
    }

    /// Sum of revenue buckets `0..n` (fen).
    pub fn rev_sum(&self, n: usize) -> i64 {
        self.rev.iter().take(n).copied().sat_sum()
    }

    /// Escrow amounts of a kind over the last `n` days (fen).
    pub fn escrow_sum(&self, kind: u8, n: i32) -> i64 {
        last(&self.m.escrow, self.d, n)
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.amount)
            .sat_sum()
    }

    /// Count of escrow events of a kind over the last `n` days.
    pub fn escrow_count(&self, kind: u8, n: i32) -> usize {
        last(&self.m.escrow, self.d, n)
            .iter()
            .filter(|e| e.kind == kind)
            .count()
    }
}
