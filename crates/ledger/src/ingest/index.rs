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
#[derive(Clone)]
pub(super) struct IdHasher(std::hash::RandomState, std::hash::RandomState);

impl IdHasher {
    pub(super) fn new() -> Self {
        IdHasher(std::hash::RandomState::new(), std::hash::RandomState::new())
    }

    /// 64 bits of keyed SipHash of an `event_id`: what the pre-pass flags repeated ids by
    /// (see `repeats.rs`). Cheaper than the persisted key, and a collision there costs
    /// nothing but one more id held in memory.
    pub(super) fn probe(&self, id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.0.hash_one(id)
    }

    /// 128 bits of keyed SipHash of an id: collisions are negligible (p ≈ n²/2¹²⁹, about
    /// 10⁻²³ for 10⁸ rows), so equality of digests stands for equality of ids.
    pub(super) fn digest(&self, id: &str) -> u128 {
        use std::hash::BuildHasher;
        (u128::from(self.0.hash_one(id)) << 64) | u128::from(self.1.hash_one(id))
    }
}

/// A row's identity for the duplicate index: its `event_id`'s persisted key, and its probe
/// (see [`IdHasher::probe`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct RowKey {
    pub(super) key: u128,
    pub(super) probe: u64,
}

/// Bytes of memory per row a small delivery's set of wanted ids may cost: a delivery is
/// small (loads only the products and contracts it names, not the ledger's all) when that
/// set fits in a sixteenth of the memory limit — 3.3 M rows at the default 2 GiB.
const WANTED_BYTES_PER_ROW: u64 = 40;

/// Committed runs of at least this many keys (96 MB) have their blocks prefetched before a
/// batch's look-ups; smaller ones stay in the page cache anyway.
const PREFETCH_FROM_KEYS: u64 = 4 << 20;

/// Runs a table may have before the smallest are merged, and how many remain after.
const MAX_RUNS: usize = 8;
const MERGED_RUNS: usize = 4;

/// Bytes of memory one key held by the duplicate index costs: the hash map's entry at its
/// load factor, and its copy while being sorted for a spill.
pub(super) const BYTES_PER_KEY: u64 = 64;
/// Bytes of one key known to occur once, collected for a run (a `(u128, u64)`).
const FRESH_BYTES: u64 = 32;

/// The duplicate index of the table being ingested: the ledger's committed runs, this
/// batch's spilled runs (with a Bloom filter over them), and the keys accepted since the
/// last spill, in memory. Keys are disjoint across all three, since a key is inserted only
/// when absent.
pub(super) struct DupIndex {
    pub(super) table: Table,
    mem: DigestMap<u64>,
    /// Keys held in memory before they are spilled.
    cap: usize,
    /// Keys this batch may add (for the Bloom filter's size), and the filter's budget.
    expected: u64,
    bloom_bytes: u64,
    bloom: Option<Bloom>,
    spilled: Vec<Run>,
    committed: Vec<Run>,
    /// Committed runs replaced by this batch (rebuilt or merged), as paths.
    superseded: Vec<String>,
    scratch: Vec<u8>,
    /// For a delivery too large for memory, the keys that may repeat in it (see
    /// `repeats.rs`): only those are held and looked up in memory; every other key occurs
    /// once, so it is checked against the committed runs only and collected in `fresh`.
    repeats: Option<Repeats>,
    /// Keys known to occur once in the delivery, accepted, waiting to be sorted into a run.
    fresh: Vec<(u128, u64)>,
    /// How many `fresh` may hold before they are sorted and written (on another thread,
    /// while the next ones come).
    fresh_cap: usize,
    sorting: Option<std::thread::JoinHandle<Result<Run, LedgerError>>>,
}

impl DupIndex {
    /// An empty index for `table`, within `memory_limit` bytes: half for the keys in
    /// memory, an eighth for the Bloom filter.
    fn new(table: Table, memory_limit: u64, expected: u64) -> DupIndex {
        let cap = usize::try_from(memory_limit / 2 / BYTES_PER_KEY)
            .unwrap_or(usize::MAX)
            .max(1024);
        DupIndex {
            table,
            mem: DigestMap::with_capacity_and_hasher(
                usize::try_from(expected).unwrap_or(cap).min(cap),
                Default::default(),
            ),
            cap,
            expected,
            bloom_bytes: memory_limit / 8,
            bloom: None,
            spilled: Vec::new(),
            committed: Vec::new(),
            superseded: Vec::new(),
            scratch: Vec::new(),
            repeats: None,
            fresh: Vec::new(),
            // An eighth of the memory each: one buffer filling while the one before is sorted.
            fresh_cap: usize::try_from(memory_limit / 8 / FRESH_BYTES)
                .unwrap_or(usize::MAX)
                .max(1024),
            sorting: None,
        }
    }

    /// Starts reading, in the committed runs, the blocks that `keys` will be looked up in
    /// (see [`Run::prefetch`]); worth it when the runs are large, as a city's are.
    pub(super) fn prefetch(&self, keys: &[Option<RowKey>]) {
        for run in self
            .committed
            .iter()
            .filter(|r| r.keys >= PREFETCH_FROM_KEYS)
        {
            for k in keys.iter().flatten() {
                run.prefetch(k.key);
            }
        }
    }

    /// Whether `key` may have been met earlier in this delivery.
    fn may_repeat(&self, probe: u64) -> bool {
        self.repeats.as_ref().is_none_or(|r| r.contains_key(&probe))
    }

    fn get(&mut self, RowKey { key, probe }: RowKey) -> Result<Option<u64>, LedgerError> {
        if self.may_repeat(probe) {
            if let Some(d) = self.mem.get(&key) {
                return Ok(Some(*d));
            }
            if self.bloom.as_ref().is_some_and(|b| b.may_contain(key)) {
                for run in self.spilled.iter().rev() {
                    if let Some(d) = run.get(key, &mut self.scratch)? {
                        return Ok(Some(d));
                    }
                }
            }
        }
        for run in &self.committed {
            if let Some(d) = run.get(key, &mut self.scratch)? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }
}

impl BatchWriter<'_> {
    /// Loads the ids that references of `table` (coming in `files`) point to, from the
    /// committed ledger. A small delivery loads only the products and contracts its rows
    /// name: a thousand escrow events need a thousand contracts, not the city's millions.
    pub(super) fn load_refs(
        &mut self,
        table: Table,
        files: &[&InputFile],
    ) -> Result<(), LedgerError> {
        if table != Table::Contracts && self.refs_loaded[3] {
            // Contract terms serve the contracts table only, whose files are done (files
            // come in table order): their memory goes before the events'.
            self.contract_terms = DigestMap::default();
            self.refs_loaded[3] = false;
            self.refs_for[3] = None;
        }
        let rows: u64 = files.iter().map(|f| f.rows_hint).sum();
        let small = rows <= self.memory_limit / 16 / WANTED_BYTES_PER_ROW
            && files.iter().all(|f| f.rows_hint > 0);
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
            let loaded_for_another = self.refs_for[slot].is_some_and(|t| t != table);
            if self.refs_loaded[slot] && !loaded_for_another {
                continue;
            }
            let key = match source {
                Table::Products => "product_id",
                Table::Contracts => "contract_id",
                _ => "merchant_id",
            };
            // Merchants are few; products and contracts are filtered for a small delivery.
            let wanted = if small && slot != 0 {
                Some(self.wanted_ids(table, files, key)?)
            } else {
                None
            };
            self.refs_loaded[slot] = true;
            self.refs_for[slot] = wanted.as_ref().map(|_| table);
            if slot == 3 {
                self.load_contract_terms(wanted.as_ref())?;
                continue;
            }
            let ids = &self.ids;
            let wanted = wanted.as_ref();
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
                                if wanted.is_some_and(|w| !w.contains_key(&k)) {
                                    continue;
                                }
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
        if table == Table::Contracts {
            // Room for every incoming contract at once: a map growing by doubling holds
            // its old table and its new one together, half again its size at the peak.
            let incoming = usize::try_from(rows).unwrap_or(0);
            self.contracts.reserve(incoming);
            self.contract_terms.reserve(incoming);
        }
        Ok(())
    }

    /// Opens the duplicate index of `table`: the committed runs, or — for a ledger whose
    /// runs do not account for every row of the table (written before the index existed)
    /// — a new index built from the ledger's own `event_id`s and row digests, once.
    pub(super) fn open_index(
        &mut self,
        table: Table,
        files: &[&InputFile],
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LedgerError> {
        if self.dup.as_ref().is_some_and(|d| d.table == table) {
            return Ok(());
        }
        self.finish_index()?;
        let incoming: u64 = files.iter().map(|f| f.rows_hint).sum();
        let rows = self
            .ledger
            .row_counts()
            .get(table.name())
            .copied()
            .unwrap_or(0);
        let runs: Vec<&IndexRun> = self
            .manifest
            .index
            .iter()
            .filter(|r| r.table == table.name())
            .collect();
        let indexed: u64 = runs.iter().map(|r| r.keys).sum();
        let rebuild = indexed != rows;
        let mut dup = DupIndex::new(
            table,
            self.memory_limit,
            incoming + if rebuild { rows } else { 0 },
        );
        if rebuild {
            dup.superseded = runs.iter().map(|r| r.path.clone()).collect();
        } else {
            for r in runs {
                dup.committed.push(Run::open(&self.root.join(&r.path))?);
            }
            // The largest first: a re-delivered row is most likely there.
            dup.committed.sort_by_key(|r| std::cmp::Reverse(r.keys));
        }
        // A delivery whose keys would not fit in memory (by its files' row counts; a CSV
        // file's are unknown, and it takes the general path) first finds its repeated keys.
        // Not while rebuilding: the rebuilt keys are not in committed runs yet.
        if !rebuild && incoming > dup.cap as u64 && files.iter().all(|f| f.rows_hint > 0) {
            dup.repeats = find_repeats(
                files,
                incoming,
                self.memory_limit,
                self.threads,
                &self.ids,
                progress,
            )?;
            if let Some(r) = &dup.repeats {
                // Only the repeats are held: the map is sized for them (a map sized for the
                // memory limit would have its pages touched all over by a few keys), and
                // the others' buffer once, for its fill.
                dup.mem = DigestMap::with_capacity_and_hasher(r.len(), Default::default());
                dup.fresh = Vec::with_capacity(dup.fresh_cap);
                self.index_report.tables_prescanned += 1;
                self.index_report.keys_may_repeat += r.len() as u64;
                progress(&format!(
                    "{} of {incoming} ids may repeat: only those are held in memory",
                    r.len()
                ));
            }
        }
        self.dup = Some(dup);
        if rebuild && rows > 0 {
            self.rebuild_index(table, rows, progress)?;
        }
        Ok(())
    }

    /// Fills the open index with the keys of every committed row of `table`.
    fn rebuild_index(
        &mut self,
        table: Table,
        rows: u64,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LedgerError> {
        progress(&format!(
            "building the duplicate index of {} from its {rows} committed rows (once)",
            table.name()
        ));
        let files: Vec<FileEntry> = self
            .ledger
            .files(table, None)
            .into_iter()
            .cloned()
            .collect();
        for file in &files {
            let mut keys: Vec<(u128, u64)> = Vec::new();
            self.ledger
                .scan_file(file, Some(&["event_id", DIGEST_COL]), &mut |b| {
                    let ids = column_str(&b, "event_id");
                    let digests = b
                        .column_by_name(DIGEST_COL)
                        .and_then(|c| c.as_primitive_opt::<UInt64Type>());
                    if let (Some(ids), Some(digests)) = (ids, digests) {
                        for i in 0..b.num_rows() {
                            keys.push((stable_key(ids.value(i)), digests.value(i)));
                        }
                    }
                    Ok(())
                })?;
            for (key, digest) in keys {
                self.index_insert(RowKey { key, probe: 0 }, digest)?;
            }
            self.index_report.rows_rebuilt += file.rows;
        }
        Ok(())
    }

    /// The row digest the index holds for `key`, if any.
    pub(super) fn index_get(&mut self, key: RowKey) -> Result<Option<u64>, LedgerError> {
        match self.dup.as_mut() {
            Some(dup) => dup.get(key),
            None => Ok(None),
        }
    }

    /// Records an accepted row's key, spilling the keys held to a run when they reach the
    /// memory limit's share.
    pub(super) fn index_insert(
        &mut self,
        RowKey { key, probe }: RowKey,
        digest: u64,
    ) -> Result<(), LedgerError> {
        let Some(dup) = self.dup.as_mut() else {
            return Ok(());
        };
        if !dup.may_repeat(probe) {
            dup.fresh.push((key, digest));
            if dup.fresh.len() >= dup.fresh_cap {
                self.spill_fresh()?;
            }
            return Ok(());
        }
        dup.mem.insert(key, digest);
        if dup.mem.len() >= dup.cap {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorts the keys known to occur once into a run of this batch, on a thread of its
    /// own so that the next keys keep coming (after waiting for the run before).
    fn spill_fresh(&mut self) -> Result<(), LedgerError> {
        self.wait_for_sorting()?;
        let Some(dup) = self.dup.as_mut() else {
            return Ok(());
        };
        if dup.fresh.is_empty() {
            return Ok(());
        }
        let mut records = std::mem::replace(&mut dup.fresh, Vec::with_capacity(dup.fresh_cap));
        let table = dup.table;
        let path = self.new_run_path(table)?;
        let handle = std::thread::spawn(move || {
            records.sort_unstable_by_key(|r| r.0);
            write_run(&path, records.into_iter())?;
            Run::open(&path)
        });
        if let Some(dup) = self.dup.as_mut() {
            dup.sorting = Some(handle);
        }
        self.index_report.runs_written += 1;
        Ok(())
    }

    /// Waits for the run being sorted, if any, and adds it to the batch's runs.
    fn wait_for_sorting(&mut self) -> Result<(), LedgerError> {
        let Some(dup) = self.dup.as_mut() else {
            return Ok(());
        };
        if let Some(handle) = dup.sorting.take() {
            let run = handle.join().unwrap_or_else(|_| {
                Err(LedgerError::storage(&self.root, "sorting a run failed"))
            })?;
            dup.spilled.push(run);
        }
        Ok(())
    }

    /// A new run file's path for this batch (its folder created), listed for `abandon`.
    fn new_run_path(&mut self, table: Table) -> Result<PathBuf, LedgerError> {
        self.index_seq += 1;
        let rel = index_run_path(table, &self.id, self.index_seq);
        let path = self.root.join(&rel);
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                fs::create_dir_all(dir).map_err(|e| LedgerError::io(dir, e))?;
                self.created_dirs.push(dir.to_path_buf());
            }
        }
        self.index_files.push(rel);
        Ok(path)
    }

    /// Writes the keys held in memory as a new run of this batch.
    fn spill(&mut self) -> Result<(), LedgerError> {
        let Some(dup) = self.dup.as_mut() else {
            return Ok(());
        };
        if dup.mem.is_empty() {
            return Ok(());
        }
        let mut records: Vec<(u128, u64)> = dup.mem.drain().collect();
        records.sort_unstable_by_key(|r| r.0);
        let bloom = dup
            .bloom
            .get_or_insert_with(|| Bloom::new(dup.expected, dup.bloom_bytes));
        for (k, _) in &records {
            bloom.insert(*k);
        }
        let table = dup.table;
        let path = self.new_run_path(table)?;
        write_run(&path, records.into_iter())?;
        let run = Run::open(&path)?;
        if let Some(dup) = self.dup.as_mut() {
            dup.spilled.push(run);
        }
        self.index_report.runs_written += 1;
        Ok(())
    }

    /// Closes the open index: the keys still in memory become a run, and when the table
    /// has more than [`MAX_RUNS`] runs, the smallest are merged (streaming) so that a
    /// look-up never reads more than a few. The batch's runs join the manifest at commit.
    pub(super) fn finish_index(&mut self) -> Result<(), LedgerError> {
        if self.dup.is_none() {
            return Ok(());
        }
        self.spill_fresh()?;
        self.wait_for_sorting()?;
        self.spill()?;
        let Some(mut dup) = self.dup.take() else {
            return Ok(());
        };
        dup.mem = DigestMap::default();
        dup.bloom = None;
        dup.repeats = None;
        let table = dup.table;
        // A batch that spilled leaves one run, not one per spill: a later look-up then
        // reads one run for a key, whichever it is (their key ranges all overlap). The
        // merge streams, in time proportional to the batch.
        let mut spilled = dup.spilled;
        if spilled.len() > 1 {
            let merged =
                self.merge_into_run(table, spilled.into_iter().map(|r| (r, false)).collect())?;
            spilled = vec![merged];
        }
        // (run, whether it is a committed one)
        let mut runs: Vec<(Run, bool)> = dup
            .committed
            .into_iter()
            .map(|r| (r, true))
            .chain(spilled.into_iter().map(|r| (r, false)))
            .collect();
        if runs.len() > MAX_RUNS {
            runs.sort_by_key(|(r, _)| r.keys);
            let take = runs.len() - MERGED_RUNS + 1;
            let small: Vec<(Run, bool)> = runs.drain(..take).collect();
            runs.push((self.merge_into_run(table, small)?, false));
        }
        for (run, committed) in runs {
            if !committed {
                self.new_runs.push(IndexRun {
                    table: table.name().to_string(),
                    path: self.rel_path(&run.path),
                    keys: run.keys,
                    batch: self.id.clone(),
                });
            }
        }
        self.superseded_runs.extend(dup.superseded);
        Ok(())
    }

    /// Merges runs into a new run of this batch; committed ones among them leave the
    /// manifest at commit, this batch's own are deleted now.
    fn merge_into_run(
        &mut self,
        table: Table,
        small: Vec<(Run, bool)>,
    ) -> Result<Run, LedgerError> {
        let path = self.new_run_path(table)?;
        let inputs: Vec<&Run> = small.iter().map(|(r, _)| r).collect();
        merge_runs(&inputs, &path)?;
        self.index_report.runs_merged += small.len();
        for (run, committed) in small {
            let rel = self.rel_path(&run.path);
            if committed {
                self.superseded_runs.push(rel);
            } else {
                // A run of this batch, never committed: it goes now.
                drop(run);
                let _ = fs::remove_file(self.root.join(&rel));
                self.index_files.retain(|f| *f != rel);
            }
        }
        Run::open(&path)
    }

    fn rel_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Digests of the ids in column `column` of `files` (a small delivery of `table`):
    /// the only products or contracts its rows can refer to.
    fn wanted_ids(
        &self,
        table: Table,
        files: &[&InputFile],
        column: &str,
    ) -> Result<DigestMap<()>, LedgerError> {
        let mut wanted = DigestMap::default();
        let Some((at, spec)) = table.column(column) else {
            return Ok(wanted);
        };
        for file in files {
            let Some(index) = file.mapping.get(at).copied().flatten() else {
                continue;
            };
            crate::input::read_column(file, index, &mut |batch| {
                let n = batch.num_rows();
                let mut rejections: Vec<Option<Rejection>> = vec![None; n];
                let mut ctx = Ctx {
                    max_ts_ms: i64::MAX,
                    rejections: &mut rejections,
                };
                let values =
                    convert(spec, Some(batch.column(0)), n, &mut ctx).map_err(|problem| {
                        LedgerError::Unreadable {
                            path: file.path.clone(),
                            format: "input",
                            problem: format!("column {column}: {problem}"),
                        }
                    })?;
                if let Some(values) = values.as_string_opt::<i32>() {
                    for v in values.iter().flatten() {
                        wanted.insert(self.ids.digest(v), ());
                    }
                }
                Ok(())
            })?;
        }
        Ok(wanted)
    }

    /// Terms of the ledger's contracts (those `wanted`, if given), for the reuse check of
    /// new contract rows.
    fn load_contract_terms(&mut self, wanted: Option<&DigestMap<()>>) -> Result<(), LedgerError> {
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
                        let k = ids.digest(keys.value(i));
                        if wanted.is_some_and(|w| !w.contains_key(&k)) {
                            continue;
                        }
                        terms.insert(
                            k,
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
