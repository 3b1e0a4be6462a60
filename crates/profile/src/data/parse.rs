//! The parsers: one per event table, from Arrow rows to a merchant's event list.

use super::*;

/// A row of a batch that belongs to the chunk: (row, merchant's place in the chunk, day).
pub(super) type ChunkRow = (usize, usize, i32);

/// Rows of a batch that belong to the chunk.
pub(super) type Rows = [ChunkRow];

/// What reading one table for one chunk needs.
pub(super) struct Ctx<'a> {
    pub(super) plan: &'a Plan,
    pub(super) index: &'a FxMap<String, usize>,
    pub(super) k: usize,
    pub(super) columns: &'static [&'static str],
}

impl Ctx<'_> {
    /// Reads one table's rows of chunk `k` ([`Ctx::read`]) and hands each merchant its
    /// events ([`distribute`] with `put`).
    pub(super) fn load<T: Send>(
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
    pub(super) fn read<T: Send>(
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
    pub(super) fn sort_out(&self, batch: RecordBatch, k: usize, last: usize) -> Kept {
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

    pub(super) fn read_run<T>(
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
pub(super) fn merchants(
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
            let group = match opt_str(strs(&b, "owner_group_id"), i) {
                Some(g) => groups.id(g),
                None => groups.id(&format!("self:{id}")),
            };
            let slot = *index.entry(id.to_string()).or_insert_with(|| {
                city.merchants.push(Merchant {
                    id: id.to_string(),
                    ..Merchant::default()
                });
                city.merchants.len() - 1
            });
            city.merchants[slot].records.push(Record {
                from: day.get(i).copied().unwrap_or(i32::MIN),
                industry: opt_str(strs(&b, "industry"), i)
                    .unwrap_or_default()
                    .to_string(),
                district: opt_str(strs(&b, "district"), i)
                    .unwrap_or_default()
                    .to_string(),
                registered_on: date(&b, "registered_on", i),
                onboarded_on: date(&b, "ecny_onboarded_on", i),
                freeze_bp: b
                    .column_by_name("freeze_ratio")
                    .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
                    .and_then(|a| (!a.is_null(i)).then(|| i64::try_from(a.value(i)).unwrap_or(0))),
                guarantee: dec_at(decs(&b, "guarantee_amount"), i),
                group,
            });
        }
    }
    for (slot, m) in city.merchants.iter_mut().enumerate() {
        // Stable: records of one day stay in ingestion order, the last one winning.
        m.records.sort_by_key(|r| r.from);
        for (k, r) in m.records.iter().enumerate() {
            let Some(registered_on) = r.registered_on else {
                continue;
            };
            // The first record also describes the time before it (see `Merchant::record`).
            let from = if k == 0 { i32::MIN } else { r.from };
            let until = m.records.get(k + 1).map_or(i32::MAX, |n| n.from);
            city.groups.entry(r.group).or_default().push(Member {
                slot,
                registered_on,
                from,
                until,
            });
        }
    }
    Ok((city, index))
}

// Parsers: a batch and its rows of the chunk as (row, merchant's place, business day) in,
// compact events out. Columns are looked up and codes decoded once per batch.

pub(super) fn parse_escrow(b: &RecordBatch, rows: &Rows, out: &mut [Vec<Escrow>]) {
    let kind = Text::of(b, "kind").at(rows, |k| match k {
        Some("PREPAYMENT") => esc::PREPAYMENT,
        Some("REDEMPTION") => esc::REDEMPTION,
        Some("RELEASE") => esc::RELEASE,
        Some("RELEASE_REJECTED") => esc::RELEASE_REJECTED,
        Some("REFUND_REQUESTED") => esc::REFUND_REQUESTED,
        Some("REFUND_COMPLETED") => esc::REFUND_COMPLETED,
        Some("EXPIRY") => esc::EXPIRY,
        _ => esc::UNKNOWN,
    });
    let code = Text::of(b, "code").at(rows, |c| match c {
        Some("ESCROW") => Code::Escrow,
        Some("MERCHANT_WALLET") => Code::MerchantWallet,
        Some("RISK_RESERVE" | "INSURER") => Code::Guarantee,
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

pub(super) fn parse_wallet(
    b: &RecordBatch,
    rows: &Rows,
    out: &mut [Vec<Result<Spot, Withdrawal>>],
) {
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

pub(super) fn parse_contracts(b: &RecordBatch, rows: &Rows, out: &mut [Vec<ContractRow>]) {
    let consumer = Text::of(b, "consumer_id").at_each(rows, |c| c.map(fx).unwrap_or(0));
    let (expires, discount) = (dates(b, "expires_on"), decs(b, "discount"));
    let paid = decs(b, "paid_amount");
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        let expires = date_at(expires, i).unwrap_or(day);
        out[m].push(ContractRow {
            day,
            tenor_days: expires - day + 1,
            discount_bp: dec_at(discount, i).unwrap_or(0),
            paid: dec_at(paid, i).unwrap_or(0),
            consumer: consumer[j],
        });
    }
}

pub(super) fn parse_operations(b: &RecordBatch, rows: &Rows, out: &mut [Vec<Operation>]) {
    let kind = Text::of(b, "kind").at(rows, |k| match k {
        Some("PAYROLL") => Some(ops::PAYROLL),
        Some("SOCIAL_INSURANCE") => Some(ops::SOCIAL_INSURANCE),
        Some("RENT") => Some(ops::RENT),
        Some("UTILITY") => None,
        _ => Some(ops::UNKNOWN),
    });
    let electricity = Text::of(b, "utility_kind").at(rows, |u| u == Some("ELECTRICITY"));
    let (headcount, on_time, usage) = (ints(b, "headcount"), bools(b, "on_time"), ints(b, "usage"));
    let amount = decs(b, "amount");
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        let kind = kind[j].unwrap_or(if electricity[j] {
            ops::ELECTRICITY
        } else {
            ops::OTHER_UTILITY
        });
        out[m].push(Operation {
            day,
            kind,
            amount: dec_at(amount, i).unwrap_or(0),
            headcount: int_at(headcount, i).unwrap_or(0),
            on_time: bool_at(on_time, i),
            usage: int_at(usage, i).unwrap_or(0),
        });
    }
}

pub(super) fn parse_promotions(b: &RecordBatch, rows: &Rows, out: &mut [Vec<Promotion>]) {
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

pub(super) fn parse_complaints(b: &RecordBatch, rows: &Rows, out: &mut [Vec<Complaint>]) {
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

pub(super) fn parse_public(b: &RecordBatch, rows: &Rows, out: &mut [Vec<PublicRecord>]) {
    let kind = Text::of(b, "kind").at(rows, |k| match k {
        Some("ADMIN_PENALTY") => public::ADMIN_PENALTY,
        Some("ABNORMAL_LISTED") => public::ABNORMAL_LISTED,
        Some("ABNORMAL_REMOVED") => public::ABNORMAL_REMOVED,
        Some("LAWSUIT_DEFENDANT") => public::LAWSUIT,
        Some("ENFORCEMENT") => public::ENFORCEMENT,
        Some("DISHONEST_LISTED") => public::DISHONEST_LISTED,
        Some("DISHONEST_REMOVED") => public::DISHONEST_REMOVED,
        _ => public::UNKNOWN,
    });
    let amount = decs(b, "amount");
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        out[m].push(PublicRecord {
            day,
            kind: kind[j],
            amount: dec_at(amount, i).unwrap_or(0),
        });
    }
}

pub(super) fn parse_bureau(b: &RecordBatch, rows: &Rows, out: &mut [Vec<BureauRecord>]) {
    let balance = Text::of(b, "kind").at(rows, |k| k == Some("DEBT_BALANCE"));
    let application = Text::of(b, "purpose").at(rows, |p| p == Some("LOAN_APPLICATION"));
    let amount = decs(b, "amount");
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        out[m].push(BureauRecord {
            day,
            balance: balance[j],
            application: application[j],
            amount: dec_at(amount, i).unwrap_or(0),
        });
    }
}

pub(super) fn parse_loans(b: &RecordBatch, rows: &Rows, out: &mut [Vec<LoanEvent>]) {
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

pub(super) fn parse_stores(b: &RecordBatch, rows: &Rows, out: &mut [Vec<StoreEvent>]) {
    let store = Text::of(b, "store_id").at_each(rows, |s| s.map(fx).unwrap_or(0));
    let opened = Text::of(b, "kind").at(rows, |k| k == Some("OPENED"));
    let lease = dates(b, "lease_end_on");
    let notice = ints(b, "announced_days_ahead");
    for (j, &(i, m, day)) in rows.iter().enumerate() {
        out[m].push(StoreEvent {
            day,
            opened: opened[j],
            notice: int_at(notice, i).unwrap_or(0),
            lease_end: date_at(lease, i),
            store: store[j],
        });
    }
}
