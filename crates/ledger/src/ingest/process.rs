//! One decoded batch: conversion, row rules, references and duplicates, each row accepted,
//! rejected with a reason or recognised as a duplicate.
//!
//! The work is in two steps. [`prepare`] needs nothing but the batch (conversion, row
//! rules, digests and keys), so it runs on worker threads; [`BatchWriter::apply`] checks
//! references and duplicates against what came before, row by row in file order, and
//! writes — on one thread, batches taken in their input order, so the ledger is the same
//! whatever the thread count.

use super::*;

/// A batch converted and checked as far as it can be on its own.
pub(super) struct Prepared {
    /// The batch as read (for the quarantine's `row_json`).
    pub(super) batch: RecordBatch,
    /// Row number of its first row in the file (0-based).
    pub(super) offset: u64,
    pub(super) cols: Vec<ArrayRef>,
    pub(super) rejections: Vec<Option<Rejection>>,
    /// Each row's content digest, its `event_id`'s key and its merchant's digest.
    pub(super) digests: Vec<u64>,
    pub(super) keys: Vec<Option<RowKey>>,
    pub(super) merchants: Vec<Option<u128>>,
    /// The digest of the id each row refers to (its product or contract), if its table
    /// refers to one: hashed here, on the workers, not on the thread that checks it.
    pub(super) refs: Vec<Option<u128>>,
}

/// The column holding the id a row of `table` refers to (besides its merchant).
fn ref_column(table: Table) -> Option<&'static str> {
    match table {
        Table::Contracts | Table::Promotions => Some("product_id"),
        Table::EscrowEvents | Table::Complaints => Some("contract_id"),
        _ => None,
    }
}

/// Converts a batch of `file` and checks every row rule that needs only the row.
pub(super) fn prepare(
    file: &InputFile,
    batch: RecordBatch,
    offset: u64,
    max_ts_ms: i64,
    ids: &IdHasher,
) -> Result<Prepared, LedgerError> {
    let table = file.table;
    let n = batch.num_rows();
    let mut rejections: Vec<Option<Rejection>> = vec![None; n];
    let mut ctx = Ctx {
        max_ts_ms,
        rejections: &mut rejections,
    };
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(table.columns().len());
    for (spec, idx) in table.columns().iter().zip(&file.mapping) {
        let input = idx.map(|i| batch.column(i));
        let col = convert(spec, input, n, &mut ctx).map_err(|problem| LedgerError::Unreadable {
            path: file.path.clone(),
            format: "input",
            problem: format!("column {}: {problem}", spec.name),
        })?;
        cols.push(col);
    }
    let canon = Canon { table, cols: &cols };
    check(&canon, &mut rejections);
    let digests = row_digests(table, &cols);
    let (mut keys, mut merchants) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut refs = Vec::with_capacity(if ref_column(table).is_some() { n } else { 0 });
    for (row, rejection) in rejections.iter().enumerate() {
        if rejection.is_some() {
            keys.push(None);
            merchants.push(None);
            if ref_column(table).is_some() {
                refs.push(None);
            }
            continue;
        }
        keys.push(canon.str("event_id", row).map(|id| RowKey {
            key: stable_key(id),
            probe: ids.probe(id),
        }));
        merchants.push(canon.str("merchant_id", row).map(|m| ids.digest(m)));
        if let Some(col) = ref_column(table) {
            refs.push(canon.str(col, row).map(|r| ids.digest(r)));
        }
    }
    Ok(Prepared {
        batch,
        offset,
        cols,
        rejections,
        digests,
        keys,
        merchants,
        refs,
    })
}

impl BatchWriter<'_> {
    /// References, duplicates and conflicts of a prepared batch, then its rows written.
    pub(super) fn apply(
        &mut self,
        file: &InputFile,
        prepared: Prepared,
        counts: &mut Counts,
    ) -> Result<(), LedgerError> {
        let Prepared {
            batch,
            offset,
            cols,
            mut rejections,
            digests,
            keys,
            merchants,
            refs,
        } = prepared;
        let table = file.table;
        let n = batch.num_rows();
        let canon = Canon { table, cols: &cols };
        if let Some(dup) = &self.dup {
            dup.prefetch(&keys);
        }
        // References, duplicates and conflicts, row by row in file order, so that a row
        // may refer to one accepted earlier in the same batch.
        let mut accepted: Vec<u32> = Vec::new();
        let mut duplicate = vec![false; n];
        for row in 0..n {
            if rejections[row].is_some() {
                continue;
            }
            let merchant = merchants[row];
            let reference = match table {
                Table::Merchants => None,
                _ if merchant.is_some_and(|m| !self.merchants.contains_key(&m)) => {
                    Some(Rejection::new(
                        Reason::UnknownMerchant,
                        "merchant_id",
                        "merchant is not registered",
                    ))
                }
                Table::Contracts | Table::Promotions => owned_ref(
                    &canon,
                    row,
                    ("product_id", refs.get(row).copied().flatten()),
                    &self.products,
                    merchant,
                    Reason::UnknownProduct,
                ),
                Table::EscrowEvents | Table::Complaints => owned_ref(
                    &canon,
                    row,
                    ("contract_id", refs.get(row).copied().flatten()),
                    &self.contracts,
                    merchant,
                    Reason::UnknownContract,
                ),
                _ => None,
            };
            if let Some(r) = reference {
                rejections[row] = Some(r);
                continue;
            }
            let (Some(key), Some(event_id)) = (keys[row], canon.str("event_id", row)) else {
                continue;
            };
            match self.index_get(key)? {
                Some(d) if d == digests[row] => duplicate[row] = true,
                Some(_) => {
                    rejections[row] = Some(Rejection::row(
                        Reason::ConflictingDuplicate,
                        format!(
                            "event_id {event_id} is already in the ledger with different content"
                        ),
                    ))
                }
                None => {
                    if table == Table::Contracts {
                        if let Some(why) =
                            contract_reuse(&self.ids, &self.contract_terms, &canon, row)
                        {
                            rejections[row] = Some(why);
                            continue;
                        }
                    }
                    self.index_insert(key, digests[row])?;
                    accepted.push(row as u32);
                    let m = merchant.unwrap_or_default();
                    match table {
                        Table::Merchants => {
                            self.merchants.insert(m, ());
                        }
                        Table::Products => {
                            if let Some(p) = canon.str("product_id", row) {
                                self.products.insert(self.ids.digest(p), m);
                            }
                        }
                        Table::Contracts => {
                            if let Some(c) = canon.str("contract_id", row) {
                                let c = self.ids.digest(c);
                                self.contracts.insert(c, m);
                                if let Some(t) = terms_of(&self.ids, &canon, row) {
                                    self.contract_terms.insert(c, t);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }

        counts.rows += n as u64;
        counts.accepted += accepted.len() as u64;
        counts.duplicates += duplicate.iter().filter(|d| **d).count() as u64;
        let rejected: Vec<(usize, &Rejection)> = rejections
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
            .collect();
        if !rejected.is_empty() {
            self.quarantine_rows(file, &batch, offset, &rejected, counts)?;
        }
        if !accepted.is_empty() {
            self.writer.write(table, cols, digests, accepted)?;
        }
        Ok(())
    }
}

/// A contract row's terms (consumer, signing day, expiry day), if it has them all.
fn terms_of(ids: &IdHasher, canon: &Canon, row: usize) -> Option<ContractTerms> {
    Some(ContractTerms {
        consumer: ids.digest(canon.str("consumer_id", row)?),
        from: yuanxin_domain::business_day_of_ms(canon.ts("ts", row)?),
        to: i64::from(canon.date("expires_on", row)?),
    })
}

/// Why a new contract row cannot take its id: another contract (another consumer, or an
/// overlapping period) already holds it.
fn contract_reuse(
    ids: &IdHasher,
    held: &DigestMap<ContractTerms>,
    canon: &Canon,
    row: usize,
) -> Option<Rejection> {
    let id = canon.str("contract_id", row)?;
    let held = held.get(&ids.digest(id))?;
    let why = held.conflict(&terms_of(ids, canon, row)?)?;
    Some(Rejection::new(
        Reason::Inconsistent,
        "contract_id",
        format!("contract id {id} {why}"),
    ))
}

/// Checks that a referenced id (its column and digest) exists and belongs to the row's
/// merchant.
pub(super) fn owned_ref(
    canon: &Canon<'_>,
    row: usize,
    (column, digest): (&'static str, Option<u128>),
    known: &DigestMap<u128>,
    merchant: Option<u128>,
    reason: Reason,
) -> Option<Rejection> {
    let id = canon.str(column, row)?;
    match known.get(&digest?) {
        None => Some(Rejection::new(
            reason,
            column,
            format!("{id} is not in the ledger"),
        )),
        Some(owner) if Some(*owner) != merchant => Some(Rejection::new(
            Reason::Inconsistent,
            column,
            format!("{id} belongs to another merchant"),
        )),
        Some(_) => None,
    }
}

/// A 64-bit digest of each row's canonical source values (BLAKE3, truncated). Used only to
/// tell an exact re-delivery from a conflicting one for the same `event_id`.
pub(super) fn row_digests(table: Table, cols: &[ArrayRef]) -> Vec<u64> {
    /// A typed view of one canonical column.
    enum View<'a> {
        Str(&'a StringArray),
        Dec(&'a arrow::array::Decimal128Array),
        I64(&'a arrow::array::Int64Array),
        Bool(&'a BooleanArray),
        Ts(&'a TimestampMillisecondArray),
        Date(&'a arrow::array::Date32Array),
        Missing,
    }
    let n = cols.first().map(|c| c.len()).unwrap_or(0);
    let views: Vec<View<'_>> = table
        .columns()
        .iter()
        .zip(cols)
        .map(|(spec, col)| {
            let view = match spec.ty {
                ColType::Id
                | ColType::Text
                | ColType::Code(_)
                | ColType::KindCode
                | ColType::Uscc => col.as_string_opt::<i32>().map(View::Str),
                ColType::Money | ColType::Ratio => {
                    col.as_primitive_opt::<Decimal128Type>().map(View::Dec)
                }
                ColType::Count => col.as_primitive_opt::<Int64Type>().map(View::I64),
                ColType::Bool => col.as_any().downcast_ref::<BooleanArray>().map(View::Bool),
                ColType::Timestamp => col
                    .as_primitive_opt::<TimestampMillisecondType>()
                    .map(View::Ts),
                ColType::Date => col.as_primitive_opt::<Date32Type>().map(View::Date),
            };
            view.unwrap_or(View::Missing)
        })
        .collect();
    // Each row's values are laid out in one buffer (a presence byte, then the value;
    // strings length-prefixed) and hashed in one call.
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(n);
    for row in 0..n {
        buf.clear();
        for (view, col) in views.iter().zip(cols) {
            if col.is_null(row) {
                buf.push(0);
                continue;
            }
            buf.push(1);
            match view {
                View::Str(a) => {
                    let v = a.value(row).as_bytes();
                    buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    buf.extend_from_slice(v);
                }
                View::Dec(a) => buf.extend_from_slice(&a.value(row).to_le_bytes()),
                View::I64(a) => buf.extend_from_slice(&a.value(row).to_le_bytes()),
                View::Bool(a) => buf.push(u8::from(a.value(row))),
                View::Ts(a) => buf.extend_from_slice(&a.value(row).to_le_bytes()),
                View::Date(a) => buf.extend_from_slice(&a.value(row).to_le_bytes()),
                View::Missing => {}
            }
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&blake3::hash(&buf).as_bytes()[..8]);
        out.push(u64::from_le_bytes(b));
    }
    out
}
