//! One merchant's life, month by month and day by day, written as source-table rows.
//!
//! Every merchant draws from its own random stream, seeded from the city seed and its
//! index, so a merchant's rows do not depend on how the city is chunked or threaded.

use chrono::NaiveDate;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal, Poisson};
use yuanxin_domain::{District, ExpiryDisposition, Industry, ProductKind, ReleaseMode, Uscc};
use yuanxin_ledger::Table;

use crate::calendar::{add_months, day_of};
use crate::params::{industry_params, story, IndustryParams, ProductTemplate, INDUSTRIES};
use crate::rows::{Rows, Val};

mod life;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const LOCAL_OFFSET_MS: i64 = 8 * HOUR_MS;

/// What the simulation knows and the data does not show: the ground truth of a merchant.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub merchant_id: String,
    pub industry: Industry,
    pub district: District,
    /// Registered during the simulated period.
    pub entrant: bool,
    /// Latent health at the start (or at entry).
    pub health0: f64,
    /// Day a distress episode began, if one did.
    pub distress_start: Option<i32>,
    /// `ordinary`, `planned_exit` or `none`.
    pub episode: &'static str,
    /// The episode cured before failure.
    pub cured: bool,
    /// Day of the first default event for a lender (loan 90+ dpd, a closure without
    /// notice, or unrecovered prepayments reaching 5,000 yuan), if any.
    pub default_day: Option<i32>,
    /// `loan_90dpd`, `closure` (escrow repaid the consumers), `closure_unrefunded`,
    /// `unrecovered_prepayments` or `none`.
    pub default_type: &'static str,
    /// Day consumers first lost prepayments (any amount), if they did.
    pub harm_day: Option<i32>,
    /// Day the merchant closed (for any reason).
    pub closed_day: Option<i32>,
    /// The closure was orderly (notice given, refunds paid).
    pub orderly_closure: bool,
    /// Prepayments left unrefunded at closure, fen.
    pub unrecovered_fen: i64,
    /// The merchant had a loan at some point.
    pub had_loan: bool,
}

/// The simulated period.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    /// First day (day number) of the simulated period.
    pub start_day: i32,
    /// First day after it.
    pub end_day: i32,
    /// First month.
    pub start: NaiveDate,
    /// Number of months.
    pub months: i32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Normal,
    Slump {
        until_month: i32,
    },
    Distress {
        start_month: i32,
        length: i32,
        planned: bool,
        cure_month: Option<i32>,
    },
    /// Operating but not paying its loans.
    LoanDefaulted,
    Closed,
}

struct Product {
    id: String,
    tpl: ProductTemplate,
    price_per_unit: i64,
    units: u32,
    validity_days: u32,
    freeze_bp: i64,
    disposition: ExpiryDisposition,
}

struct Contract {
    id: String,
    units_total: i64,
    units_used: i64,
    paid: i64,
    frozen: i64,
    redeemed_value: i64,
    released: i64,
    /// Months of validity (to pace a class pack's use).
    months_total: i64,
    /// The day it was sold.
    sold_day: i32,
    release: ReleaseMode,
    usage: f64,
    expires_day: i32,
    extended: bool,
    disposition: ExpiryDisposition,
    open: bool,
    /// Rows held back while in the warm-up, emitted only if the contract is still open at
    /// the start of the simulated period.
    pending: Option<Vec<(Table, Vec<Val>)>>,
}

impl Contract {
    fn value_left(&self) -> i64 {
        self.paid - self.redeemed_value
    }
    fn frozen_left(&self) -> i64 {
        self.frozen - self.released
    }
}

struct Loan {
    id: String,
    lender: &'static str,
    monthly_due: i64,
    months_left: i64,
    /// Day numbers of unpaid instalments.
    arrears: Vec<i32>,
    /// Months in a row a healthy merchant has let the instalment slip (it pays after three).
    skips: u8,
    charged_off: bool,
    last_status_month: i32,
}

struct Store {
    id: String,
    district: District,
    open: bool,
    /// Monthly rent, fen.
    rent: i64,
}

/// A debt the credit bureau reports outside the loans table.
struct OtherDebt {
    /// Institution type code.
    creditor: &'static str,
    /// Balance owed, fen.
    balance: i64,
    /// Monthly repayment, fen.
    payment: i64,
}

/// Intensities with which a distressed merchant shows each warning sign (0 = not at all).
#[derive(Debug, Clone, Copy)]
struct Signs {
    revenue: f64,
    delivery: f64,
    push: f64,
    sweep: f64,
    payroll: f64,
    refunds: f64,
}

pub(crate) struct MerchantSim<'a> {
    /// The city's seed (a related entity's life is drawn from it too).
    seed: u64,
    rng: ChaCha8Rng,
    /// A second stream for the registry's later records (moves, owner changes,
    /// re-registrations): drawing them leaves every other draw of the merchant as it was.
    registry: ChaCha8Rng,
    /// A third stream for the days deliveries are posted on.
    posting: ChaCha8Rng,
    /// A fourth for what healthy merchants do that looks like trouble (a late instalment
    /// that cures, a deep promotion, a store opened or closed, a lawsuit, a burst of
    /// service-failure refunds).
    quirks: ChaCha8Rng,
    /// A fifth for rent, risk reserves and performance bonds, court enforcement, the credit
    /// bureau's records and corporate buyers.
    later: ChaCha8Rng,
    /// This merchant gets sued more often than most (a landlord, staff, suppliers).
    litigious: bool,
    /// What is left of a risk reserve or a performance bond's cover (fen), and the refund
    /// source that pays from it (`RISK_RESERVE` or `INSURER`).
    guarantee: Option<(i64, &'static str)>,
    /// Debts to other creditors, as the credit bureau reports them.
    other_debts: Vec<OtherDebt>,
    /// Sells memberships and course places to companies for their staff (one consumer id
    /// holding many contracts).
    corporate: bool,
    /// Prepayments consumers have lost so far, fen.
    lost_fen: i64,
    /// The owners' group (`owner_group_id`).
    group: String,
    /// The entity the owners of a planned exit register: its registration day and
    /// district.
    related: Option<(i32, District)>,
    /// The merchant's registration record in force (without its event id).
    record: Vec<Val>,
    p: &'static IndustryParams,
    period: Period,
    idx: u64,
    id: String,
    out: &'a mut Rows,
    seq: [u32; 12],
    products: Vec<Product>,
    contracts: Vec<Contract>,
    /// Contracts sold so far: ids are numbered from it, never from `contracts` (which drops
    /// closed ones), so an id is never given twice.
    contracts_sold: u32,
    stores: Vec<Store>,
    loans: Vec<Loan>,
    consumers: u32,
    health: f64,
    size: f64,
    buffer_days: f64,
    wallet: i64,
    account: u32,
    staff_factor: f64,
    phase: Phase,
    signs: Signs,
    truth: Truth,
    recent_daily_rev: f64,
    /// Promotion running this month: product index, discount, bonus share, tenor days.
    promo: Option<(usize, f64, f64, u32)>,
    registered_day: i32,
    first_day: i32,
    abnormal_listed: bool,
    freeze_bp: i64,
    custody_bank: bool,
    wage: f64,
    insured_share: f64,
    late_base: f64,
    closed_month: Option<i32>,
    /// Days between withdrawals (1, 3, 7 or 14).
    cadence: i32,
    /// How often this merchant's staff ask for early releases (log-normal around 1).
    eager_release: f64,
    /// Whether its promotions sometimes sell two-year cards while healthy.
    long_cards: bool,
}

/// Positions in a merchants-table row (before its event id is put in front).
mod record {
    pub const TS: usize = 1;
    pub const USCC: usize = 2;
    pub const LEGAL_FORM: usize = 4;
    pub const DISTRICT: usize = 6;
    pub const REGISTERED_ON: usize = 7;
    pub const ONBOARDED: usize = 8;
    pub const CUSTODY: usize = 9;
    pub const FREEZE: usize = 10;
    pub const OWNER_GROUP: usize = 11;
    pub const GUARANTEE: usize = 12;
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, weighted: &[(T, f64)]) -> T {
    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen::<f64>() * total;
    for (v, w) in weighted {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    weighted[weighted.len() - 1].0
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u64 {
    if lambda <= 0.0 || !lambda.is_finite() {
        return 0;
    }
    Poisson::new(lambda)
        .map(|d| d.sample(rng) as u64)
        .unwrap_or(0)
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    Normal::new(0.0, 1.0).map(|d| d.sample(rng)).unwrap_or(0.0)
}

fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    LogNormal::new(median.ln(), sigma)
        .map(|d| d.sample(rng))
        .unwrap_or(median)
}

/// Instant of a local time of day on a day, ms since the epoch.
fn at(day: i32, hour: f64) -> i64 {
    i64::from(day) * DAY_MS + (hour * HOUR_MS as f64) as i64 - LOCAL_OFFSET_MS
}

fn fen_of(yuan: f64) -> i64 {
    (yuan * 100.0).round() as i64
}

/// Draws the merchant's district (weights: roughly by population and commerce).
fn district(rng: &mut ChaCha8Rng) -> District {
    use District::*;
    pick(
        rng,
        &[
            (Futian, 0.13),
            (Luohu, 0.09),
            (Nanshan, 0.14),
            (Yantian, 0.02),
            (Baoan, 0.2),
            (Longgang, 0.18),
            (Longhua, 0.12),
            (Pingshan, 0.03),
            (Guangming, 0.04),
            (Dapeng, 0.01),
            (ShenShan, 0.01),
        ],
    )
}

const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// A valid unified social credit code for a merchant registered in a district.
fn credit_code(rng: &mut ChaCha8Rng, district: District, individual: bool) -> String {
    let mut prefix = String::with_capacity(17);
    prefix.push('9');
    prefix.push(if individual { '2' } else { '1' });
    prefix.push_str(district.division_code());
    for _ in 0..9 {
        let c = CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())];
        prefix.push(char::from(c));
    }
    Uscc::from_prefix(&prefix)
        .map(|u| u.as_str().to_string())
        .unwrap_or_default()
}

/// The merchant's id for an index.
pub fn merchant_id(idx: u64) -> String {
    format!("M{idx:07}")
}

impl<'a> MerchantSim<'a> {
    pub(crate) fn new(seed: u64, idx: u64, period: Period, out: &'a mut Rows) -> Self {
        // SplitMix-style mixing keeps neighbouring indices' streams unrelated.
        let mut z = seed ^ idx.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let mut rng = ChaCha8Rng::seed_from_u64(z ^ (z >> 31));
        let mut registry = ChaCha8Rng::seed_from_u64(z ^ (z >> 31));
        registry.set_stream(1);
        let mut posting = ChaCha8Rng::seed_from_u64(z ^ (z >> 31));
        posting.set_stream(2);
        let mut quirks = ChaCha8Rng::seed_from_u64(z ^ (z >> 31));
        quirks.set_stream(3);
        let mut later = ChaCha8Rng::seed_from_u64(z ^ (z >> 31));
        later.set_stream(4);
        let litigious = quirks.gen_bool(0.1);
        let industry = pick(&mut rng, &INDUSTRIES.map(|p| (p.industry, p.weight)));
        let p = industry_params(industry);
        let district = district(&mut rng);
        let health = normal(&mut rng);
        let id = merchant_id(idx);
        let truth = Truth {
            merchant_id: id.clone(),
            industry,
            district,
            entrant: false,
            health0: health,
            distress_start: None,
            episode: "none",
            cured: false,
            default_day: None,
            default_type: "none",
            harm_day: None,
            closed_day: None,
            orderly_closure: false,
            unrecovered_fen: 0,
            had_loan: false,
        };
        MerchantSim {
            seed,
            rng,
            registry,
            posting,
            quirks,
            later,
            guarantee: None,
            other_debts: Vec::new(),
            corporate: false,
            litigious,
            lost_fen: 0,
            group: format!("G-{id}"),
            related: None,
            record: Vec::new(),
            p,
            period,
            idx,
            id,
            out,
            seq: [0; 12],
            products: Vec::new(),
            contracts: Vec::new(),
            contracts_sold: 0,
            stores: Vec::new(),
            loans: Vec::new(),
            consumers: 0,
            health,
            size: 1.0,
            buffer_days: 5.0,
            wallet: 0,
            account: 0,
            staff_factor: 1.0,
            phase: Phase::Normal,
            signs: Signs {
                revenue: 0.0,
                delivery: 0.0,
                push: 0.0,
                sweep: 0.0,
                payroll: 0.0,
                refunds: 0.0,
            },
            truth,
            recent_daily_rev: 0.0,
            promo: None,
            registered_day: 0,
            first_day: 0,
            abnormal_listed: false,
            freeze_bp: 10_000,
            custody_bank: false,
            wage: 6500.0,
            insured_share: 0.9,
            late_base: 0.02,
            closed_month: None,
            cadence: 7,
            eager_release: 1.0,
            long_cards: false,
        }
    }

    fn event_id(&mut self, table: Table) -> Val {
        let prefix = match table {
            Table::Merchants => "mr",
            Table::StoreEvents => "st",
            Table::Products => "pr",
            Table::Contracts => "ct",
            Table::EscrowEvents => "es",
            Table::WalletFlows => "wf",
            Table::Operations => "op",
            Table::Promotions => "pm",
            Table::Complaints => "cp",
            Table::PublicRecords => "pb",
            Table::Loans => "ln",
            Table::BureauRecords => "br",
        };
        let s = &mut self.seq[table as usize];
        *s += 1;
        Val::Eid(prefix, *s)
    }

    fn emit(&mut self, table: Table, mut row: Vec<Val>) {
        if !self.in_period(&row) {
            return;
        }
        let id = self.event_id(table);
        row.insert(0, id);
        self.out.push(table, &row, &self.id);
    }

    /// Emits a contract's row, or holds it while the contract is in the warm-up.
    fn emit_contract_row(&mut self, c: usize, table: Table, mut row: Vec<Val>) {
        if !self.in_period(&row) {
            return;
        }
        let id = self.event_id(table);
        row.insert(0, id);
        match self.contracts.get_mut(c).and_then(|k| k.pending.as_mut()) {
            Some(pending) => pending.push((table, row)),
            None => self.out.push(table, &row, &self.id),
        }
    }

    fn m(&self) -> Val {
        Val::Mid
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn truth_mut(&mut self) -> &mut Truth {
        &mut self.truth
    }

    /// Rows dated at or after the end of the period are not emitted: the export covers the
    /// period only.
    fn in_period(&self, row: &[Val]) -> bool {
        match row.get(1) {
            Some(Val::T(ts)) => *ts < at(self.period.end_day, 0.0),
            _ => true,
        }
    }

    /// The owners of a planned exit register a new entity elsewhere (瑞运动's owners opened
    /// a gym in another city four months earlier); it trades as a merchant of its own
    /// (`run` simulates it after this one).
    fn register_related(&mut self, first: i32) {
        let district = district(&mut self.rng);
        // Drawn as before the related entity had a life of its own, so that the rest of
        // this merchant's draws are unchanged.
        let _uscc = credit_code(&mut self.rng, district, false);
        let day = first + self.rng.gen_range(0..20);
        self.related = Some((day, district));
    }

    /// Runs the merchant's whole life and returns its truth, then (for a planned exit)
    /// the life and truth of the entity its owners registered.
    pub(crate) fn run(mut self) -> Vec<Truth> {
        let period = self.period;
        let entrant = self.rng.gen_bool(story::ENTRANT_SHARE);
        let (first_month, registered_day) = if entrant {
            let m = self.rng.gen_range(0..period.months.max(1));
            let first = day_of(add_months(period.start, m));
            (m, first + self.rng.gen_range(0..28))
        } else {
            let tenure_months = lognormal(&mut self.rng, 36.0, 0.8).clamp(7.0, 240.0);
            let reg = period.start_day - (tenure_months * 30.4) as i32;
            (-story::WARMUP_MONTHS, reg)
        };
        self.live(entrant, first_month, registered_day)
    }

    /// The life from registration on.
    fn live(mut self, entrant: bool, first_month: i32, registered_day: i32) -> Vec<Truth> {
        let period = self.period;
        self.truth.entrant = entrant;
        self.registered_day = registered_day;
        self.first_day = registered_day.max(day_of(add_months(period.start, first_month)));
        self.size = lognormal(&mut self.rng, 1.0, 0.45);
        self.buffer_days = lognormal(&mut self.rng, 6.0, 0.6).clamp(1.0, 40.0);
        self.staff_factor = lognormal(&mut self.rng, 1.0, 0.25);
        self.register();
        self.open_stores();
        self.launch_products();
        self.standing_debts();
        if !entrant && self.rng.gen_bool(story::LOAN_SHARE) {
            let d = period.start_day - self.rng.gen_range(30..330);
            self.take_loan(d.max(self.first_day));
        }
        for month in first_month..period.months {
            self.step_month(month);
            if self.phase == Phase::Closed && self.post_closure_done(month) {
                break;
            }
        }
        self.registry_changes();
        // Contracts of the warm-up still held back were closed before the period began.
        let MerchantSim {
            seed,
            idx,
            id,
            p,
            group,
            related,
            truth,
            out,
            ..
        } = self;
        let mut truths = vec![truth];
        if let Some((day, district)) = related.filter(|(d, _)| *d < period.end_day) {
            // A life of its own (another seed), in the same industry and owners' group.
            let mut r = MerchantSim::new(seed ^ 0x5EED_0F0E_1175_EED5_u64, idx, period, out);
            r.id = format!("{id}R");
            r.truth.merchant_id.clone_from(&r.id);
            r.p = p;
            r.truth.industry = p.industry;
            r.truth.district = district;
            r.group = group;
            let first_month = (0..period.months)
                .take_while(|&m| day_of(add_months(period.start, m)) <= day)
                .last()
                .unwrap_or(0);
            truths.extend(r.live(true, first_month, day));
        }
        truths
    }

    fn register(&mut self) {
        let individual = self.rng.gen_bool(0.3);
        let uscc = credit_code(&mut self.rng, self.truth.district, individual);
        let custody = if self.p.freeze.0 >= 1.0
            || (self.p.industry.is_education() && self.rng.gen_bool(0.5))
        {
            "ECNY_FULL"
        } else if self.rng.gen_bool(0.08) {
            "BANK_CUSTODY"
        } else {
            "ECNY_RATIO"
        };
        let freeze = if custody == "ECNY_FULL" {
            10_000
        } else {
            (self.rng.gen_range(self.p.freeze.0..=self.p.freeze.1) * 20.0).round() as i64 * 500
        };
        let onboarded =
            (self.period.start_day - self.rng.gen_range(0..365)).max(self.registered_day);
        // Instead of freezing a share of each prepayment, some merchants deposit a risk
        // reserve (风险保证金) or buy performance-bond insurance (履约保证保险); no source
        // found a required amount, so it is one to two and a half months of revenue.
        let monthly = self.expected_monthly_revenue();
        let (custody, freeze, guarantee) = match custody {
            "ECNY_RATIO" => {
                let r: f64 = self.later.gen();
                if r < 0.07 {
                    let sum = monthly * self.later.gen_range(0.5..1.5);
                    (
                        "RISK_RESERVE",
                        0,
                        Some((fen_of((sum / 10_000.0).ceil() * 10_000.0), "RISK_RESERVE")),
                    )
                } else if r < 0.12 {
                    let sum = monthly * self.later.gen_range(1.0..2.5);
                    (
                        "PERFORMANCE_BOND",
                        0,
                        Some((fen_of((sum / 10_000.0).ceil() * 10_000.0), "INSURER")),
                    )
                } else {
                    (custody, freeze, None)
                }
            }
            _ => (custody, freeze, None),
        };
        self.guarantee = guarantee;
        self.corporate = matches!(
            self.p.industry,
            Industry::EduVocational
                | Industry::FitnessEntertainment
                | Industry::DrivingSchool
                | Industry::CultureSports
        ) && self.later.gen_bool(0.15);
        let name = format!(
            "{}{}{}",
            self.truth.district.name_zh(),
            self.p.industry.name_zh(),
            self.idx
        );
        let row = vec![
            self.m(),
            Val::T(at(self.registered_day, 10.0)),
            Val::S(uscc),
            Val::S(name),
            Val::C(if individual {
                "INDIVIDUAL"
            } else {
                "ENTERPRISE"
            }),
            Val::C(self.p.industry.as_str()),
            Val::C(self.truth.district.as_str()),
            Val::D(self.registered_day),
            Val::D(onboarded),
            Val::C(custody),
            Val::R(freeze.clamp(0, 10_000)),
            Val::S(self.group.clone()),
            guarantee.map_or(Val::N, |(g, _)| Val::M(g)),
        ];
        if onboarded > self.registered_day {
            // Registered without custody; joining 元管家 is a later record (a custody
            // change), so a profile dated before it never sees the onboarding.
            let mut before = row.clone();
            before[record::ONBOARDED] = Val::N;
            before[record::CUSTODY] = Val::C("NONE");
            before[record::FREEZE] = Val::R(0);
            before[record::GUARANTEE] = Val::N;
            self.emit(Table::Merchants, before);
        }
        let mut row = row;
        row[record::TS] = Val::T(at(onboarded, 10.0));
        self.record = row.clone();
        self.emit(Table::Merchants, row);
        self.freeze_bp = freeze.clamp(0, 10_000);
        self.custody_bank = custody == "BANK_CUSTODY";
        self.wage = lognormal(&mut self.rng, 6500.0, 0.15);
        self.insured_share = self.rng.gen_range(0.6..=1.0);
        // A few healthy merchants pay late habitually: lateness alone is not distress.
        self.late_base = if self.rng.gen_bool(0.06) { 0.35 } else { 0.02 };
        self.cadence = pick(&mut self.rng, &[(1, 0.1), (3, 0.25), (7, 0.45), (14, 0.2)]);
        self.eager_release = lognormal(&mut self.rng, 1.0, 0.8).min(8.0);
        self.long_cards = matches!(
            self.p.industry,
            Industry::FitnessEntertainment | Industry::HairBeauty | Industry::Catering
        ) && self.rng.gen_bool(0.3);
    }

    /// Later records of the registry, each carrying the ones before: a move of the
    /// registered address (about 4 % of merchants over the period), a change of owners
    /// (2 %), and an individual business re-registered as a company (个转企, 3 % of
    /// individual businesses: a new credit code and registration date). None after the
    /// merchant has closed. Drawn from the registry's own stream.
    fn registry_changes(&mut self) {
        let from = self.registered_day.max(self.period.start_day) + 1;
        let until = self
            .truth
            .closed_day
            .unwrap_or(self.period.end_day)
            .min(self.period.end_day);
        if from >= until {
            return;
        }
        let r = &mut self.registry;
        let mut changes: Vec<(i32, u8)> = Vec::new();
        if r.gen_bool(0.04) {
            changes.push((r.gen_range(from..until), 0));
        }
        if r.gen_bool(0.02) {
            changes.push((r.gen_range(from..until), 1));
        }
        let individual = self.record.get(record::LEGAL_FORM) == Some(&Val::C("INDIVIDUAL"));
        if individual && r.gen_bool(0.03) {
            changes.push((r.gen_range(from..until), 2));
        }
        changes.sort_unstable();
        for (day, kind) in changes {
            let mut row = self.record.clone();
            row[record::TS] = Val::T(at(day, 11.0));
            match kind {
                0 => {
                    let now = row.get(record::DISTRICT).cloned();
                    let moved = loop {
                        let d = district(&mut self.registry);
                        if now != Some(Val::C(d.as_str())) {
                            break d;
                        }
                    };
                    row[record::DISTRICT] = Val::C(moved.as_str());
                }
                1 => row[record::OWNER_GROUP] = Val::S(format!("G-{}-{day}", self.id)),
                _ => {
                    let district = match row.get(record::DISTRICT) {
                        Some(Val::C(c)) => c.parse().unwrap_or(self.truth.district),
                        _ => self.truth.district,
                    };
                    row[record::USCC] = Val::S(credit_code(&mut self.registry, district, false));
                    row[record::LEGAL_FORM] = Val::C("ENTERPRISE");
                    row[record::REGISTERED_ON] = Val::D(day);
                }
            }
            self.record = row.clone();
            self.emit(Table::Merchants, row);
        }
    }

    /// Debts some merchants carry from the start: equipment leases (gyms, car washes and
    /// driving schools most), a loan from another bank, supplier credit.
    fn standing_debts(&mut self) {
        let monthly = self.expected_monthly_revenue() * self.stores.len().max(1) as f64;
        let leasing = match self.p.industry {
            Industry::FitnessEntertainment | Industry::CarWash | Industry::DrivingSchool => 0.25,
            _ => 0.08,
        };
        for (creditor, share, months) in [
            ("LEASING", leasing, (24, 48)),
            ("BANK", 0.08, (12, 36)),
            ("FACTORING", 0.04, (6, 12)),
        ] {
            if self.later.gen_bool(share) {
                let balance = fen_of(monthly * self.later.gen_range(1.0..6.0));
                let term: i64 = self.later.gen_range(months.0..=months.1);
                self.other_debts.push(OtherDebt {
                    creditor,
                    balance,
                    payment: (balance / term).max(1),
                });
            }
        }
    }

    fn open_stores(&mut self) {
        let n = pick(
            &mut self.rng,
            &[(1u32, 0.82), (2, 0.1), (3, 0.04), (5, 0.025), (12, 0.015)],
        );
        // Stores beyond the first opened between registration and the period's start.
        let span = (self.period.start_day - self.registered_day).clamp(1, 400);
        for k in 0..n {
            let district = if k == 0 {
                self.truth.district
            } else {
                district(&mut self.rng)
            };
            let day = if k == 0 || self.truth.entrant {
                self.registered_day
            } else {
                self.registered_day + self.rng.gen_range(0..span)
            };
            self.open_store(day, district);
        }
    }

    fn open_store(&mut self, day: i32, district: District) {
        let id = format!("S-{}-{}", self.id, self.stores.len() + 1);
        let lease_end = day + 365 * self.rng.gen_range(2..6);
        let in_mall = self.rng.gen_bool(0.45);
        let area: i64 = self.rng.gen_range(40..600);
        // Rent follows the floor area (less than in proportion) and costs a third more in
        // a mall: about an eighth of a store's revenue, the main fixed cost after wages.
        let monthly = self.expected_monthly_revenue();
        let mall = if in_mall { 1.35 } else { 1.0 };
        let rent = fen_of(
            monthly
                * 0.12
                * (area as f64 / 300.0).powf(0.4)
                * mall
                * lognormal(&mut self.later, 1.0, 0.25),
        );
        let row = vec![
            self.m(),
            Val::T(at(day, 9.0)),
            Val::S(id.clone()),
            Val::C("OPENED"),
            Val::C(district.as_str()),
            Val::B(in_mall),
            Val::I(area),
            Val::D(lease_end),
            Val::N,
        ];
        self.emit(Table::StoreEvents, row);
        self.stores.push(Store {
            id,
            district,
            open: true,
            rent,
        });
    }

    fn close_store(&mut self, s: usize, day: i32, notice: i64) {
        let Some(store) = self.stores.get(s) else {
            return;
        };
        if !store.open {
            return;
        }
        let row = vec![
            self.m(),
            Val::T(at(day, 20.0)),
            Val::S(store.id.clone()),
            Val::C("CLOSED"),
            Val::C(store.district.as_str()),
            Val::N,
            Val::N,
            Val::N,
            Val::I(notice),
        ];
        self.emit(Table::StoreEvents, row);
        if let Some(store) = self.stores.get_mut(s) {
            store.open = false;
        }
    }

    /// A store's expected monthly revenue at this merchant's size (yuan): what loans,
    /// rents, reserves and other debts are sized on.
    fn expected_monthly_revenue(&self) -> f64 {
        (self.p.spot_daily * 26.0 + self.p.contracts_per_store * 3000.0) * self.size
    }

    fn open_stores_count(&self) -> usize {
        self.stores.iter().filter(|s| s.open).count()
    }

    fn launch_products(&mut self) {
        let templates = self.p.products;
        for (k, tpl) in templates.iter().enumerate() {
            self.add_product(*tpl, k, self.registered_day);
        }
    }

    fn add_product(&mut self, tpl: ProductTemplate, k: usize, day: i32) {
        let id = format!("P-{}-{}", self.id, self.products.len() + 1);
        let units = self.rng.gen_range(tpl.units.0..=tpl.units.1);
        let unit_price = self.rng.gen_range(tpl.unit_price.0..=tpl.unit_price.1);
        let price_per_unit = fen_of(unit_price).max(1);
        let validity_days = self
            .rng
            .gen_range(tpl.validity_days.0..=tpl.validity_days.1);
        let disposition = match (tpl.kind, k % 2) {
            (ProductKind::StoredValue, _) => ExpiryDisposition::ReleaseToMerchant,
            (ProductKind::CountCard, 1) => ExpiryDisposition::Extend,
            _ => ExpiryDisposition::RefundToConsumer,
        };
        let list = price_per_unit * i64::from(units);
        let bonus = (list as f64 * tpl.bonus).round() as i64;
        let row = vec![
            self.m(),
            Val::T(at(day, 11.0)),
            Val::S(id.clone()),
            Val::C(tpl.kind.as_str()),
            Val::M(list),
            if bonus > 0 { Val::M(bonus) } else { Val::N },
            Val::I(i64::from(units)),
            Val::I(i64::from(validity_days)),
            Val::C(tpl.release.as_str()),
            Val::R(self.freeze_bp),
            Val::C(disposition.as_str()),
        ];
        self.emit(Table::Products, row);
        self.products.push(Product {
            id,
            tpl,
            price_per_unit,
            units,
            validity_days,
            freeze_bp: self.freeze_bp,
            disposition,
        });
    }
}
