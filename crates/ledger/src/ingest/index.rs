//! The duplicate index and the reference maps a delivery is checked against, built from
//! the ledger for the tables it touches.

use super::*;

/// What makes a contract itself: its consumer and its period (business days). A contract
/// id met again with another consumer or an overlapping period is another contract under
/// a reused id, refused; the same consumer after the period ends is a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ContractTerms {
    pub(super) consumer: u128,
    pub(super) from: i64,
    pub(super) to: i64,
}

impl ContractTerms {
    /// Why a contract with these terms cannot take an id that `self` holds, if it cannot.
    pub(super) fn conflict(&self, new: &ContractTerms) -> Option<&'static str> {
        if self.consumer != new.consumer {
            Some("is already used for another consumer's contract")
        } else if new.from <= self.to && self.from <= new.to {
            Some("is already used for a contract whose period overlaps this one")
        } else {
            None
        }
    }
}

pub(super) type DigestMap<V> =
    HashMap<u128, V, BuildHasherDefault<yuanxin_domain::hash::PassThrough>>;

/// Keys of the in-memory id digests: SipHash with two random keys per process, so that
/// nobody can craft ids that collide (the digests never leave the process).
pub(super) struct IdHasher(std::hash::RandomState, std::hash::RandomState);

impl IdHasher {
    pub(super) fn new() -> Self {
        IdHasher(std::hash::RandomState::new(), std::hash::RandomState::new())
    }

    /// 128 bits of keyed SipHash of an id: collisions are negligible (p ≈ n²/2¹²⁹, about
    /// 10⁻²³ for 10⁸ rows), so equality of digests stands for equality of ids.
    pub(super) fn digest(&self, id: &str) -> u128 {
        use std::hash::BuildHasher;
        (u128::from(self.0.hash_one(id)) << 64) | u128::from(self.1.hash_one(id))
    }
}

impl BatchWriter<'_> {
    /// Loads the ids that references of `table` point to, from the committed ledger.
    pub(super) fn load_refs(&mut self, table: Table) -> Result<(), LedgerError> {
        let needs: &[(usize, Table)] = match table {
            Table::Merchants => &[],
            Table::Contracts => &[
                (0, Table::Merchants),
                (1, Table::Products),
                (3, Table::Contracts),
            ],
            Table::Promotions => &[(0, Table::Merchants), (1, Table::Products)],
            Table::EscrowEvents | Table::Complaints => {
                &[(0, Table::Merchants), (2, Table::Contracts)]
            }
            _ => &[(0, Table::Merchants)],
        };
        for &(slot, source) in needs {
            if self.refs_loaded[slot] {
                continue;
            }
            self.refs_loaded[slot] = true;
            if slot == 3 {
                self.load_contract_terms()?;
                continue;
            }
            let key = match source {
                Table::Products => "product_id",
                Table::Contracts => "contract_id",
                _ => "merchant_id",
            };
            let ids = &self.ids;
            let (products, contracts, merchants) =
                (&mut self.products, &mut self.contracts, &mut self.merchants);
            for file in self.ledger.files(source, None) {
                self.ledger
                    .scan_file(file, Some(&[key, "merchant_id"]), &mut |b| {
                        let keys = column_str(&b, key);
                        let owners = column_str(&b, "merchant_id");
                        if let (Some(keys), Some(owners)) = (keys, owners) {
                            for i in 0..b.num_rows() {
                                let k = ids.digest(keys.value(i));
                                let o = ids.digest(owners.value(i));
                                match source {
                                    Table::Products => {
                                        products.insert(k, o);
                                    }
                                    Table::Contracts => {
                                        contracts.insert(k, o);
                                    }
                                    _ => {
                                        merchants.insert(k, ());
                                    }
                                }
                            }
                        }
                        Ok(())
                    })?;
            }
        }
        Ok(())
    }

    /// Loads the duplicate index of a table from the committed ledger.
    pub(super) fn load_index(&mut self, table: Table, incoming: u64) -> Result<(), LedgerError> {
        if self.indexes.contains_key(&table) {
            return Ok(());
        }
        // Sized up front so that loading does not rehash (which doubles the peak): for the
        // larger of the ledger's rows and the batch's, the two common cases being a first
        // delivery and a re-delivery.
        let existing = self
            .ledger
            .row_counts()
            .get(table.name())
            .copied()
            .unwrap_or(0);
        let capacity = usize::try_from(existing.max(incoming)).unwrap_or(0);
        let mut index = DigestMap::with_capacity_and_hasher(capacity, Default::default());
        let ids = &self.ids;
        for file in self.ledger.files(table, None) {
            self.ledger
                .scan_file(file, Some(&["event_id", DIGEST_COL]), &mut |b| {
                    let keys = column_str(&b, "event_id");
                    let digests = b
                        .column_by_name(DIGEST_COL)
                        .and_then(|c| c.as_primitive_opt::<UInt64Type>());
                    if let (Some(keys), Some(digests)) = (keys, digests) {
                        for i in 0..b.num_rows() {
                            index.insert(ids.digest(keys.value(i)), digests.value(i));
                        }
                    }
                    Ok(())
                })?;
        }
        self.indexes.insert(table, index);
        Ok(())
    }

    /// Terms of every contract in the ledger, for the reuse check of new contract rows.
    fn load_contract_terms(&mut self) -> Result<(), LedgerError> {
        let ids = &self.ids;
        let terms = &mut self.contract_terms;
        for file in self.ledger.files(Table::Contracts, None) {
            self.ledger.scan_file(
                file,
                Some(&["contract_id", "consumer_id", "ts", "expires_on"]),
                &mut |b| {
                    let (Some(keys), Some(consumers)) =
                        (column_str(&b, "contract_id"), column_str(&b, "consumer_id"))
                    else {
                        return Ok(());
                    };
                    let ts = b
                        .column_by_name("ts")
                        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>());
                    let exp = b
                        .column_by_name("expires_on")
                        .and_then(|c| c.as_primitive_opt::<Date32Type>());
                    let (Some(ts), Some(exp)) = (ts, exp) else {
                        return Ok(());
                    };
                    for i in 0..b.num_rows() {
                        terms.insert(
                            ids.digest(keys.value(i)),
                            ContractTerms {
                                consumer: ids.digest(consumers.value(i)),
                                from: yuanxin_domain::business_day_of_ms(ts.value(i)),
                                to: i64::from(exp.value(i)),
                            },
                        );
                    }
                    Ok(())
                },
            )?;
        }
        Ok(())
    }
}
