//! What to read for a profile (`Source`), chunk planning and the loader that keeps row
//! groups across chunk boundaries.

use super::*;

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
    /// The credit bureau's records.
    Bureau,
}

/// About how many event rows one chunk of merchants holds in memory at once (about 30
/// bytes each as compact events, so some 100 MB). Smaller chunks also run faster, up to a
/// point: a chunk's lists stay warm in the caches and its memory is reused, not faulted in
/// afresh (3 Mi against 8 Mi: 4–6 % faster on the 20,000- and 200,000-merchant cities).
pub(super) const CHUNK_ROWS: u64 = 3 * 1024 * 1024;

/// Per merchant of a chunk (by its position in the chunk), its events of one table.
pub(super) type Events<T> = Vec<Vec<T>>;

/// How the city's merchants are split into chunks: by ranges of `merchant_id` (ordered
/// bytewise, as Parquet statistics are). A ledger whose row groups each hold a narrow range
/// of merchants, as merchant-ordered deliveries give, is then read once, a chunk at a time.
pub(super) struct Plan {
    /// First id of each chunk after the first.
    pub(super) bounds: Vec<String>,
    /// Per merchant slot: its chunk.
    pub(super) chunk_of: Vec<usize>,
    /// Per merchant slot: its position among its chunk's members.
    pub(super) local: Vec<usize>,
    /// Per chunk: its merchants' slots, in slot order.
    pub(super) members: Vec<Vec<usize>>,
}

impl Plan {
    pub(super) fn new(merchants: &[Merchant], chunks: usize) -> Plan {
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

    pub(super) fn chunks(&self) -> usize {
        self.members.len()
    }

    /// The chunk whose id range holds `id`.
    pub(super) fn chunk_of_id(&self, id: &[u8]) -> usize {
        self.bounds.partition_point(|b| b.as_bytes() <= id)
    }

    /// First and last chunk a row group may hold merchants of.
    pub(super) fn span(&self, file: &FileReader, row_group: usize) -> (usize, usize) {
        match file.merchant_range(row_group) {
            Some((lo, hi)) => (self.chunk_of_id(lo), self.chunk_of_id(hi)),
            None => (0, self.chunks() - 1),
        }
    }
}

/// One file of an event table, read a chunk at a time.
pub(super) struct FileState {
    pub(super) reader: FileReader,
    /// Per row group: the first and last chunk it may hold merchants of.
    pub(super) span: Vec<(usize, usize)>,
    /// Row groups decoded for an earlier chunk and kept because they also hold merchants
    /// of later ones: every row group is decoded once.
    pub(super) kept: Vec<Option<Kept>>,
}

/// A decoded row group, with its rows already sorted out by chunk: for each chunk from
/// `first` on, the rows of its merchants as (row, merchant's place in the chunk, day). Kept
/// between chunks when it holds merchants of later ones, so that each chunk touches only
/// its own rows.
pub(super) struct Kept {
    pub(super) batch: RecordBatch,
    pub(super) first: usize,
    pub(super) rows: Vec<Vec<ChunkRow>>,
}

impl FileState {
    /// Rows this file has for chunk `k`.
    pub(super) fn rows_for(&self, k: usize) -> usize {
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
    pub(super) index: FxMap<String, usize>,
    pub(super) plan: Plan,
    pub(super) tables: Vec<(Table, Vec<FileState>)>,
    /// Whether escrow events' contract ids are read (the largest column features use).
    pub(super) contract_ids: bool,
}

/// Event tables features read.
pub(super) const EVENT_TABLES: [Table; 10] = [
    Table::EscrowEvents,
    Table::WalletFlows,
    Table::Contracts,
    Table::Operations,
    Table::Promotions,
    Table::Complaints,
    Table::PublicRecords,
    Table::Loans,
    Table::StoreEvents,
    Table::BureauRecords,
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
                Table::BureauRecords => needed(Source::Bureau),
                _ => true,
            };
            let mut files = Vec::new();
            for f in ledger.files(table, known_at_ms) {
                let reader = ledger.open_file_as_of(f, known_at_ms)?;
                // The ledger's last day counts every table, read or not, so that labels'
                // windows do not depend on the characteristics selected.
                match reader.max_ts_ms()? {
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

    /// Reads only the events of merchants whose id passes `keep` (a shard's): the others'
    /// rows are skipped as rows of unknown merchants are.
    pub(crate) fn keep_only(&mut self, keep: impl Fn(&str) -> bool) {
        self.index.retain(|id, _| keep(id));
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
                Table::BureauRecords => {
                    ctx.load(files, last, ms, parse_bureau, |m, e| m.bureau = e)?
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
            m.bureau = Vec::new();
        }
    }
}

/// The largest number of rows kept across one chunk boundary under a plan.
pub(super) fn kept_rows(plan: &Plan, tables: &[(Table, Vec<FileReader>)]) -> u64 {
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
