//! The parameters of the generative story, per industry. Values marked "found" come from
//! the domain reference (`shared/domain/prepaid-merchant-credit.md` §A.3 and §2); the rest
//! are proposals, documented in `docs/simulator.md`.

use yuanxin_domain::{Industry, ProductKind, ReleaseMode};

/// A prepaid product a merchant of an industry may sell.
#[derive(Debug, Clone, Copy)]
pub struct ProductTemplate {
    /// Kind of product.
    pub kind: ProductKind,
    /// Units sold per contract (classes, visits, months; yuan for stored value).
    pub units: (u32, u32),
    /// Price per unit in yuan (for stored value: 1).
    pub unit_price: (f64, f64),
    /// Validity in days.
    pub validity_days: (u32, u32),
    /// How frozen funds are released.
    pub release: ReleaseMode,
    /// Typical bonus granted (充送) as a share of the price.
    pub bonus: f64,
    /// Share of units a consumer actually uses before expiry (breakage is 1 − this); gyms
    /// are about 50 % (found: 4.3 visits a month against about 9 planned).
    pub usage: f64,
}

/// An industry's parameters.
#[derive(Debug, Clone, Copy)]
pub struct IndustryParams {
    /// The industry.
    pub industry: Industry,
    /// Share of the city's merchants in this industry.
    pub weight: f64,
    /// Monthly probability that a merchant of average health enters distress (proposal,
    /// after the base default hazards of §A.3).
    pub distress_hazard: f64,
    /// Median spot (non-prepaid) sales per store per open day, yuan.
    pub spot_daily: f64,
    /// Mean new prepaid contracts per store per month.
    pub contracts_per_store: f64,
    /// Staff per store.
    pub staff_per_store: f64,
    /// Monthly demand multipliers, January to December.
    pub season: [f64; 12],
    /// Demand multiplier in the Spring Festival week.
    pub festival: f64,
    /// Demand multiplier in the two weeks before it.
    pub pre_festival: f64,
    /// Demand multiplier on school holidays.
    pub school_holiday: f64,
    /// Demand multiplier at weekends.
    pub weekend: f64,
    /// Typical share frozen in escrow, as (low, high).
    pub freeze: (f64, f64),
    /// Consumer complaints per store per month, healthy merchant (Guangzhou H1 2025 mix:
    /// education, fitness, culture, beauty, catering lead).
    pub complaint_rate: f64,
    /// Products it sells.
    pub products: &'static [ProductTemplate],
}

const fn tpl(
    kind: ProductKind,
    units: (u32, u32),
    unit_price: (f64, f64),
    validity_days: (u32, u32),
    release: ReleaseMode,
    bonus: f64,
    usage: f64,
) -> ProductTemplate {
    ProductTemplate {
        kind,
        units,
        unit_price,
        validity_days,
        release,
        bonus,
        usage,
    }
}

use ProductKind::{ClassPack, CountCard, StoredValue, TimeCard};
use ReleaseMode::{PerMonth, PerUnit};

/// The pilot industries' parameters.
pub const INDUSTRIES: [IndustryParams; 11] = [
    IndustryParams {
        industry: Industry::EduSubject,
        weight: 0.12,
        distress_hazard: 0.00455,
        spot_daily: 250.0,
        contracts_per_store: 1.95,
        staff_per_store: 6.0,
        season: [0.8, 1.3, 1.1, 0.9, 0.9, 1.1, 1.5, 1.2, 1.3, 0.8, 0.7, 0.7],
        festival: 0.1,
        pre_festival: 0.9,
        school_holiday: 1.4,
        weekend: 1.5,
        freeze: (1.0, 1.0),
        complaint_rate: 0.06,
        // ≤ 3 months or 60 class hours per charge (found: 教监管函〔2021〕2号 and local rules).
        products: &[
            tpl(
                ClassPack,
                (24, 60),
                (80.0, 200.0),
                (90, 90),
                PerUnit,
                0.0,
                0.92,
            ),
            tpl(
                ClassPack,
                (12, 36),
                (120.0, 260.0),
                (90, 90),
                PerUnit,
                0.0,
                0.9,
            ),
        ],
    },
    IndustryParams {
        industry: Industry::EduNonSubject,
        weight: 0.12,
        distress_hazard: 0.00520,
        spot_daily: 350.0,
        contracts_per_store: 1.95,
        staff_per_store: 5.0,
        season: [0.9, 1.2, 1.0, 0.9, 0.9, 1.1, 1.5, 1.4, 1.1, 0.9, 0.8, 0.8],
        festival: 0.1,
        pre_festival: 0.9,
        school_holiday: 1.4,
        weekend: 1.5,
        freeze: (0.6, 1.0),
        complaint_rate: 0.06,
        // Sports training: 2,999 yuan for 2 months, 7,999 for 6 months (found, case figures).
        products: &[
            tpl(
                ClassPack,
                (20, 48),
                (100.0, 250.0),
                (90, 90),
                PerUnit,
                0.0,
                0.88,
            ),
            tpl(
                TimeCard,
                (2, 3),
                (1000.0, 1500.0),
                (60, 90),
                PerMonth,
                0.0,
                0.85,
            ),
        ],
    },
    IndustryParams {
        industry: Industry::EduVocational,
        weight: 0.05,
        distress_hazard: 0.00390,
        spot_daily: 400.0,
        contracts_per_store: 1.30,
        staff_per_store: 5.0,
        season: [0.8, 1.0, 1.2, 1.1, 1.0, 1.0, 1.1, 1.0, 1.1, 1.0, 0.9, 0.8],
        festival: 0.1,
        pre_festival: 0.8,
        school_holiday: 1.1,
        weekend: 1.3,
        freeze: (0.4, 1.0),
        complaint_rate: 0.04,
        products: &[tpl(
            ClassPack,
            (10, 40),
            (150.0, 400.0),
            (180, 365),
            PerUnit,
            0.0,
            0.85,
        )],
    },
    IndustryParams {
        industry: Industry::Catering,
        weight: 0.16,
        distress_hazard: 0.00390,
        spot_daily: 3500.0,
        contracts_per_store: 1.95,
        staff_per_store: 8.0,
        season: [
            1.2, 1.1, 0.9, 0.95, 1.0, 0.95, 1.0, 1.0, 1.0, 1.1, 0.95, 1.1,
        ],
        festival: 1.2,
        pre_festival: 1.3,
        school_holiday: 1.0,
        weekend: 1.25,
        freeze: (0.2, 0.4),
        complaint_rate: 0.03,
        // Stored value with bonus (found: "充3000送1000" in a failure case).
        products: &[tpl(
            StoredValue,
            (500, 5000),
            (1.0, 1.0),
            (365, 365),
            PerUnit,
            0.1,
            0.9,
        )],
    },
    IndustryParams {
        industry: Industry::Housekeeping,
        weight: 0.06,
        distress_hazard: 0.00325,
        spot_daily: 700.0,
        contracts_per_store: 1.30,
        staff_per_store: 10.0,
        season: [
            1.4, 0.9, 0.9, 0.95, 1.0, 0.95, 0.95, 0.95, 1.0, 1.0, 1.0, 1.1,
        ],
        festival: 0.3,
        pre_festival: 1.6,
        school_holiday: 1.0,
        weekend: 0.9,
        freeze: (0.3, 0.6),
        complaint_rate: 0.03,
        products: &[tpl(
            CountCard,
            (10, 40),
            (60.0, 120.0),
            (365, 365),
            PerUnit,
            0.05,
            0.9,
        )],
    },
    IndustryParams {
        industry: Industry::FitnessEntertainment,
        weight: 0.12,
        distress_hazard: 0.00650,
        spot_daily: 600.0,
        contracts_per_store: 2.27,
        staff_per_store: 6.0,
        season: [1.1, 1.2, 1.3, 1.1, 1.0, 1.1, 1.0, 0.9, 1.0, 0.9, 0.8, 0.8],
        festival: 0.3,
        pre_festival: 0.8,
        school_holiday: 1.0,
        weekend: 1.3,
        freeze: (0.3, 0.6),
        complaint_rate: 0.07,
        // Year cards 1,000–3,500 yuan; personal training 200–330 yuan a class (found).
        products: &[
            tpl(
                TimeCard,
                (12, 12),
                (100.0, 290.0),
                (365, 365),
                PerMonth,
                0.0,
                0.5,
            ),
            tpl(
                ClassPack,
                (20, 60),
                (200.0, 330.0),
                (365, 365),
                PerUnit,
                0.0,
                0.75,
            ),
        ],
    },
    IndustryParams {
        industry: Industry::CultureSports,
        weight: 0.07,
        distress_hazard: 0.00455,
        spot_daily: 500.0,
        contracts_per_store: 1.62,
        staff_per_store: 4.0,
        season: [0.9, 1.1, 1.0, 1.0, 1.0, 1.1, 1.4, 1.3, 1.0, 1.0, 0.8, 0.8],
        festival: 0.2,
        pre_festival: 0.9,
        school_holiday: 1.3,
        weekend: 1.5,
        freeze: (0.4, 0.8),
        complaint_rate: 0.05,
        products: &[
            tpl(
                ClassPack,
                (20, 48),
                (100.0, 200.0),
                (180, 365),
                PerUnit,
                0.0,
                0.85,
            ),
            tpl(
                TimeCard,
                (3, 3),
                (300.0, 600.0),
                (90, 90),
                PerMonth,
                0.0,
                0.8,
            ),
        ],
    },
    IndustryParams {
        industry: Industry::PetServices,
        weight: 0.06,
        distress_hazard: 0.00390,
        spot_daily: 1000.0,
        contracts_per_store: 1.62,
        staff_per_store: 4.0,
        season: [
            1.1, 1.0, 0.95, 1.0, 1.0, 1.05, 1.1, 1.1, 0.95, 1.0, 0.9, 1.0,
        ],
        festival: 0.6,
        pre_festival: 1.3,
        school_holiday: 1.0,
        weekend: 1.3,
        freeze: (0.3, 0.6),
        complaint_rate: 0.03,
        products: &[
            tpl(
                CountCard,
                (5, 20),
                (80.0, 200.0),
                (365, 365),
                PerUnit,
                0.05,
                0.85,
            ),
            tpl(
                StoredValue,
                (500, 3000),
                (1.0, 1.0),
                (365, 365),
                PerUnit,
                0.1,
                0.9,
            ),
        ],
    },
    IndustryParams {
        industry: Industry::HairBeauty,
        weight: 0.12,
        distress_hazard: 0.00520,
        spot_daily: 1200.0,
        contracts_per_store: 2.27,
        staff_per_store: 6.0,
        season: [
            1.4, 0.9, 0.95, 1.0, 1.0, 0.95, 0.95, 0.95, 1.0, 1.0, 0.95, 1.0,
        ],
        festival: 0.3,
        pre_festival: 1.8,
        school_holiday: 1.0,
        weekend: 1.3,
        freeze: (0.2, 0.5),
        complaint_rate: 0.05,
        products: &[
            tpl(
                StoredValue,
                (1000, 10000),
                (1.0, 1.0),
                (365, 730),
                PerUnit,
                0.15,
                0.85,
            ),
            tpl(
                CountCard,
                (10, 10),
                (100.0, 500.0),
                (365, 365),
                PerUnit,
                0.0,
                0.8,
            ),
        ],
    },
    IndustryParams {
        industry: Industry::DrivingSchool,
        weight: 0.04,
        distress_hazard: 0.00260,
        spot_daily: 150.0,
        contracts_per_store: 3.90,
        staff_per_store: 12.0,
        season: [0.7, 0.9, 1.1, 1.1, 1.1, 1.0, 1.4, 1.3, 1.0, 1.0, 0.8, 0.7],
        festival: 0.1,
        pre_festival: 0.6,
        school_holiday: 1.3,
        weekend: 1.2,
        freeze: (0.5, 1.0),
        complaint_rate: 0.03,
        // A course paid per milestone (subjects 1–4).
        products: &[tpl(
            ClassPack,
            (4, 4),
            (750.0, 2000.0),
            (365, 730),
            PerUnit,
            0.0,
            0.95,
        )],
    },
    IndustryParams {
        industry: Industry::CarWash,
        weight: 0.08,
        distress_hazard: 0.00390,
        spot_daily: 1200.0,
        contracts_per_store: 1.95,
        staff_per_store: 4.0,
        season: [1.4, 0.9, 1.0, 1.0, 0.85, 0.8, 0.8, 0.85, 1.0, 1.1, 1.0, 1.1],
        festival: 0.4,
        pre_festival: 1.8,
        school_holiday: 1.0,
        weekend: 1.4,
        freeze: (0.2, 0.5),
        complaint_rate: 0.02,
        products: &[tpl(
            CountCard,
            (10, 30),
            (25.0, 50.0),
            (365, 365),
            PerUnit,
            0.05,
            0.85,
        )],
    },
];

/// The parameters of one industry.
pub fn industry_params(industry: Industry) -> &'static IndustryParams {
    INDUSTRIES
        .iter()
        .find(|p| p.industry == industry)
        .unwrap_or(&INDUSTRIES[0])
}

/// Story-wide parameters (proposals; see `docs/simulator.md`).
pub mod story {
    /// Months of history simulated before the start date, so that merchants begin with a
    /// book of open contracts; only contracts still open at the start are emitted from it.
    pub const WARMUP_MONTHS: i32 = 6;
    /// Share of merchants that register during the simulated period.
    pub const ENTRANT_SHARE: f64 = 0.2;
    /// Monthly persistence of latent health (AR(1) coefficient) and its monthly shock.
    pub const HEALTH_RHO: f64 = 0.97;
    pub const HEALTH_SIGMA: f64 = 0.18;
    /// How strongly latent health scales the distress hazard: hazard ∝ exp(−β·h).
    pub const HEALTH_BETA: f64 = 0.9;
    /// Hazard multiplier in a merchant's first year (Shanghai's stricter rule for firms
    /// under one year old reflects the same risk).
    pub const YOUNG_FACTOR: f64 = 1.6;
    /// Share of distress episodes that cure before failure.
    pub const CURE_SHARE: f64 = 0.3;
    /// Monthly chance that a healthy merchant lets a loan instalment slip a month (×3 for
    /// habitual late payers).
    pub const INSTALMENT_SLIP: f64 = 0.02;
    /// Chance it slips a second month too (30+ days past due).
    pub const SECOND_SLIP: f64 = 0.5;
    /// Chance it slips a third (60+ days past due), then pays.
    pub const THIRD_SLIP: f64 = 0.2;
    /// Monthly chance of an anniversary or festival sale as deep as a failing merchant's.
    pub const DEEP_PROMOTION: f64 = 0.006;
    /// Monthly chance that a teacher or coach leaves (a burst of service-failure refunds).
    pub const STAFF_LOSS: f64 = 0.004;
    /// Chance that a merchant refuses a change-of-mind refund under 4,000 yuan beyond the
    /// escrowed part, and the consumer gives up.
    pub const REFUND_DISPUTE: f64 = 0.02;
    /// Monthly chance that a healthy merchant opens a store (×2 for chains).
    pub const STORE_OPENING: f64 = 0.003;
    /// Monthly chance that a healthy chain closes one of its stores.
    pub const STORE_CLOSING: f64 = 0.004;
    /// Chance that a distressed merchant shows each warning sign (revenue, delivery,
    /// prepaid push, wallet sweep, payroll, refunds); each shown one has an intensity
    /// between 0.3 and 1.4.
    pub const SIGN_SHARE: f64 = 0.9;
    /// Share of failures that are planned exits (瑞运动, 职业闭店人; §A.3 proposes 10–20 %).
    pub const PLANNED_EXIT_SHARE: f64 = 0.15;
    /// Monthly probability of an orderly closure with notice and full refunds (not a default).
    pub const ORDERLY_CLOSURE: f64 = 0.0012;
    /// Monthly probability that a healthy merchant hits a temporary slump (noise: a slump
    /// looks like the start of distress but passes).
    pub const SLUMP_RATE: f64 = 0.012;
    /// Share of merchants with a bank loan at the start; monthly take-up otherwise.
    pub const LOAN_SHARE: f64 = 0.25;
    pub const LOAN_TAKEUP: f64 = 0.008;
}
