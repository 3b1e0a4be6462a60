//! The monthly step of a merchant's life: phases (normal, slump, distress, failure),
//! sales, escrow, wallet, operations, complaints, public records and loans.

use chrono::Datelike;
use rand::Rng;
use yuanxin_domain::{ExpiryDisposition, ProductKind, ReleaseMode};
use yuanxin_ledger::Table;

use super::*;
use crate::calendar::{add_months, date_of, day_kind, day_of};
use crate::params::story;
use crate::rows::Val;

impl MerchantSim<'_> {
    /// Distress progress in [0, 1] (0 when not distressed) and whether it is a planned exit.
    fn progress(&self, month: i32) -> (f64, bool) {
        match self.phase {
            Phase::Distress {
                start_month,
                length,
                planned,
                ..
            } => {
                let p = f64::from(month - start_month + 1) / f64::from(length.max(1));
                (p.clamp(0.0, 1.0), planned)
            }
            _ => (0.0, false),
        }
    }

    fn revenue_mult(&self, month: i32) -> f64 {
        let (p, planned) = self.progress(month);
        let phase = match self.phase {
            Phase::Distress { .. } if !planned => (1.0 - 0.55 * self.signs.revenue * p).max(0.15),
            Phase::Slump { .. } => 0.75,
            Phase::LoanDefaulted => 0.6,
            _ => 1.0,
        };
        phase * (0.08 * self.health).exp()
    }

    fn delivery_mult(&self, month: i32) -> f64 {
        let (p, planned) = self.progress(month);
        match self.phase {
            Phase::Distress { .. } if !planned => (1.0 - 0.5 * self.signs.delivery * p).max(0.2),
            Phase::LoanDefaulted => 0.8,
            _ => 1.0,
        }
    }

    fn sweep(&self, month: i32) -> f64 {
        let (p, planned) = self.progress(month);
        match self.phase {
            Phase::Distress {
                start_month,
                length,
                ..
            } if planned && month >= start_month + length - 1 => 1.0,
            Phase::Distress { .. } if planned => 0.0,
            Phase::Distress { .. } => (self.signs.sweep * p * 1.5).min(1.0),
            Phase::LoanDefaulted => 0.7,
            _ => 0.0,
        }
    }

    fn sales_mult(&self, month: i32, day: i32) -> f64 {
        let (p, planned) = self.progress(month);
        let opening = if day - self.registered_day < 90 {
            1.4
        } else {
            1.0
        };
        let phase = match self.phase {
            Phase::Distress {
                start_month,
                length,
                ..
            } if planned && month >= start_month + length - 3 => 3.0,
            Phase::Distress { .. } if planned => 1.0,
            Phase::Distress { .. } if p > 0.3 => 1.0 + 1.6 * self.signs.push * (p - 0.3) / 0.7,
            Phase::Slump { .. } => 1.1,
            Phase::LoanDefaulted => 0.7,
            _ => 1.0,
        };
        phase * opening
    }

    pub(crate) fn step_month(&mut self, month: i32) {
        let period = self.period;
        let first = day_of(add_months(period.start, month)).max(self.first_day);
        let next = day_of(add_months(period.start, month + 1));
        if first >= next {
            return;
        }
        let warm = month < 0;
        if month == 0 {
            self.flush_warmup();
        }
        self.health = story::HEALTH_RHO * self.health + story::HEALTH_SIGMA * normal(&mut self.rng);
        if !warm {
            self.transition(month, first, next);
        }
        if self.phase == Phase::Closed {
            self.loans_month(month, first, next, true);
            return;
        }
        self.promotions(month, first, next, warm);
        self.days(month, first, next, warm);
        if self.phase == Phase::Closed {
            self.loans_month(month, first, next, true);
            return;
        }
        self.month_end_escrow(month, first, next);
        if !warm {
            self.stores_change(first, next);
            self.operations(month, first, next);
            self.complaints_and_records(month, first, next);
            self.loans_month(month, first, next, false);
            self.bureau_month(month, first, next);
        }
    }

    /// Emits held-back warm-up rows of contracts still open when the period starts.
    fn flush_warmup(&mut self) {
        for k in 0..self.contracts.len() {
            let keep = self.contracts[k].open;
            if let Some(rows) = self.contracts[k].pending.take() {
                if keep {
                    for (table, row) in rows {
                        self.out.push(table, &row, &self.id);
                    }
                }
            }
        }
        self.contracts.retain(|c| c.open);
        // The wallet's warm-up history is not in the export: it starts the period empty.
        self.wallet = 0;
    }

    fn transition(&mut self, month: i32, first: i32, next: i32) {
        match self.phase {
            Phase::Normal | Phase::Slump { .. } => {
                if let Phase::Slump { until_month } = self.phase {
                    if month >= until_month {
                        self.phase = Phase::Normal;
                    }
                }
                let young = if first - self.registered_day < 365 {
                    story::YOUNG_FACTOR
                } else {
                    1.0
                };
                // A city-wide cycle, so that risk drifts over time (out-of-time checks see it).
                let cycle = 1.0 + 0.25 * (f64::from(month) * std::f64::consts::TAU / 30.0).sin();
                let norm = (story::HEALTH_BETA * story::HEALTH_BETA / 2.0).exp();
                let survive = 1.0 - story::CURE_SHARE * (1.0 - story::PLANNED_EXIT_SHARE);
                let hazard = self.p.distress_hazard * (-story::HEALTH_BETA * self.health).exp()
                    / norm
                    * young
                    * cycle
                    / survive;
                let r: f64 = self.rng.gen();
                if r < hazard.min(0.5) {
                    self.start_distress(month, first);
                } else if r < hazard + story::ORDERLY_CLOSURE {
                    let day = self.rng.gen_range(first..next);
                    self.orderly_closure(month, day);
                } else if self.phase == Phase::Normal
                    && r < hazard + story::ORDERLY_CLOSURE + story::SLUMP_RATE
                {
                    let len = self.rng.gen_range(2..=4);
                    self.phase = Phase::Slump {
                        until_month: month + len,
                    };
                }
            }
            Phase::Distress {
                start_month,
                length,
                cure_month,
                planned,
            } => {
                if cure_month == Some(month) {
                    self.phase = Phase::Normal;
                    self.health += 0.8;
                    self.truth.cured = true;
                } else if month >= start_month + length {
                    let day = self.rng.gen_range(first..next);
                    let has_loan = self
                        .loans
                        .iter()
                        .any(|l| l.months_left > 0 && !l.charged_off);
                    if !planned && has_loan && self.rng.gen_bool(0.35) {
                        self.phase = Phase::LoanDefaulted;
                    } else {
                        self.abrupt_closure(month, day);
                    }
                }
            }
            Phase::LoanDefaulted => {
                if self.rng.gen_bool(0.04) {
                    let day = self.rng.gen_range(first..next);
                    self.abrupt_closure(month, day);
                }
            }
            Phase::Closed => {}
        }
    }

    fn start_distress(&mut self, month: i32, first: i32) {
        let planned = self.rng.gen_bool(story::PLANNED_EXIT_SHARE);
        let length = if planned {
            self.rng.gen_range(2..=5)
        } else {
            self.rng.gen_range(4..=15)
        };
        let cure_month = (!planned && self.rng.gen_bool(story::CURE_SHARE))
            .then(|| month + self.rng.gen_range(1..length.max(2)));
        let sign = |rng: &mut ChaCha8Rng| {
            if rng.gen_bool(story::SIGN_SHARE) {
                rng.gen_range(0.3..1.4)
            } else {
                0.0
            }
        };
        let rng = &mut self.rng;
        let signs = Signs {
            revenue: sign(rng),
            delivery: sign(rng),
            push: sign(rng),
            sweep: sign(rng),
            payroll: sign(rng),
            refunds: sign(rng),
        };
        self.signs = signs;
        self.phase = Phase::Distress {
            start_month: month,
            length,
            planned,
            cure_month,
        };
        self.truth_mut().distress_start.get_or_insert(first);
        self.truth_mut().episode = if planned { "planned_exit" } else { "ordinary" };
        if planned {
            self.register_related(first);
        }
    }

    fn days(&mut self, month: i32, first: i32, next: i32, warm: bool) {
        let season = self.p.season[date_of(first).month0() as usize % 12];
        let rev = self.revenue_mult(month);
        let sweep = self.sweep(month);
        let sales_mult = self.sales_mult(month, first);
        // New contracts this month, on random days.
        let stores = self.open_stores_count() as f64;
        let lambda = self.p.contracts_per_store * stores * self.size * season * sales_mult;
        let n = poisson(&mut self.rng, lambda * f64::from(next - first) / 30.0);
        let mut sale_days: Vec<i32> = (0..n).map(|_| self.rng.gen_range(first..next)).collect();
        sale_days.sort_unstable();
        let mut s = 0;
        for day in first..next {
            while s < sale_days.len() && sale_days[s] == day {
                self.sell_contract(month, day);
                s += 1;
            }
            let kind = day_kind(day);
            let open = self.open_stores_count() as f64;
            if open == 0.0 {
                continue;
            }
            let mut mult = season * rev;
            if kind.festival {
                mult *= self.p.festival;
            } else if kind.pre_festival {
                mult *= self.p.pre_festival;
            }
            if kind.school_holiday {
                mult *= self.p.school_holiday;
            }
            if kind.weekend {
                mult *= self.p.weekend;
            }
            let rest_day = self.rng.gen_bool(0.04);
            let noise = lognormal(&mut self.rng, 1.0, 0.35);
            let amount = fen_of(open * self.p.spot_daily * self.size * mult * noise);
            if !rest_day && amount >= 100 {
                self.wallet += amount;
                self.recent_daily_rev = 0.95 * self.recent_daily_rev + 0.05 * amount as f64;
                if !warm {
                    let ticket = (self.p.spot_daily / 12.0).max(20.0);
                    let tx = ((amount as f64 / 100.0) / ticket).ceil().max(1.0) as i64;
                    let channel = pick(
                        &mut self.rng,
                        &[("QR", 0.55), ("ECNY", 0.2), ("CARD", 0.15), ("CASH", 0.1)],
                    );
                    let row = vec![
                        self.m(),
                        Val::T(at(day, 22.0)),
                        Val::C("SPOT_SALE"),
                        Val::M(amount),
                        Val::I(tx),
                        Val::C(channel),
                        Val::N,
                        Val::N,
                    ];
                    self.emit(Table::WalletFlows, row);
                }
            } else {
                self.recent_daily_rev *= 0.95;
            }
            // Each merchant withdraws on its own cadence (daily to fortnightly); sweeping
            // halves it. The level says little, the change says more.
            let cadence = if sweep > 0.3 {
                (self.cadence / 2).max(1)
            } else {
                self.cadence
            };
            let phase = i32::try_from(self.idx % 14).unwrap_or(0);
            let withdraw_day = (day + phase).rem_euclid(cadence) == 0;
            if withdraw_day && !warm {
                self.withdraw(day, sweep, month);
            }
            if self.phase == Phase::Closed {
                break;
            }
        }
    }

    fn withdraw(&mut self, day: i32, sweep: f64, month: i32) {
        let target = (self.buffer_days * self.recent_daily_rev * (1.0 - sweep)) as i64;
        let amount = self.wallet - target;
        if amount < 50_000 {
            return;
        }
        let (p, planned) = self.progress(month);
        let change_p = if planned && sweep >= 1.0 {
            0.3
        } else if sweep > 0.5 && p > 0.5 {
            0.06
        } else {
            0.002
        };
        let changed = self.rng.gen_bool(change_p);
        if changed {
            self.account += 1;
        }
        self.wallet -= amount;
        let row = vec![
            self.m(),
            Val::T(at(day, 15.0)),
            Val::C("WITHDRAWAL"),
            Val::M(amount),
            Val::N,
            Val::N,
            Val::S(format!("A-{}-{}", self.id(), self.account)),
            Val::B(changed),
        ];
        self.emit(Table::WalletFlows, row);
    }

    fn promotions(&mut self, month: i32, first: i32, next: i32, warm: bool) {
        self.promo = None;
        let (p, planned) = self.progress(month);
        let young = first - self.registered_day < 60;
        let (chance, discount, bonus, long) = match self.phase {
            Phase::Distress {
                start_month,
                length,
                ..
            } if planned => {
                if month >= start_month + length - 3 {
                    (0.85, (0.3, 0.5), (0.2, 0.33), true)
                } else {
                    (0.05, (0.05, 0.15), (0.0, 0.1), false)
                }
            }
            Phase::Distress { .. } if p > 0.35 => (
                0.6 * self.signs.push.min(1.0),
                (0.3, 0.5),
                (0.2, 0.33),
                self.signs.push > 0.6,
            ),
            Phase::Slump { .. } => (0.35, (0.15, 0.3), (0.05, 0.2), false),
            _ if young => (0.7, (0.2, 0.4), (0.1, 0.2), false),
            // An anniversary or festival sale as deep as a distressed merchant's.
            Phase::Normal if self.quirks.gen_bool(story::DEEP_PROMOTION) => {
                (1.0, (0.3, 0.5), (0.2, 0.33), false)
            }
            // Some healthy gyms, salons and restaurants sell two-year cards too.
            _ => (0.07, (0.05, 0.15), (0.0, 0.1), self.long_cards),
        };
        if !self.rng.gen_bool(chance.clamp(0.0, 1.0)) || self.products.is_empty() {
            return;
        }
        let k = self.rng.gen_range(0..self.products.len());
        let d: f64 = self.rng.gen_range(discount.0..=discount.1);
        let b: f64 = self.rng.gen_range(bonus.0..=bonus.1);
        let base_validity = self.products[k].validity_days;
        let tenor = if long {
            self.rng.gen_range(730..=3650)
        } else {
            base_validity
        };
        let day = first;
        self.promo = Some((k, d, b, tenor));
        if warm {
            return;
        }
        let row = vec![
            self.m(),
            Val::T(at(day, 9.5)),
            Val::S(self.products[k].id.clone()),
            Val::R((d * 10_000.0).round() as i64),
            Val::R((b * 10_000.0).round() as i64),
            Val::I(i64::from(tenor)),
            Val::D(next - 1),
        ];
        self.emit(Table::Promotions, row);
    }

    /// Healthy and slumping merchants open stores (chains more often) and close one that
    /// does not pay, with the notice the rules require; distress closes stores elsewhere.
    fn stores_change(&mut self, first: i32, next: i32) {
        if !matches!(self.phase, Phase::Normal | Phase::Slump { .. }) {
            return;
        }
        let open = self.open_stores_count();
        let chain = if open > 1 { 2.0 } else { 1.0 };
        if self.quirks.gen_bool(story::STORE_OPENING * chain) {
            let day = self.quirks.gen_range(first..next);
            let district = district(&mut self.quirks);
            self.open_store(day, district);
        } else if open > 1 && self.quirks.gen_bool(story::STORE_CLOSING) {
            let day = self.quirks.gen_range(first..next);
            let notice = self.quirks.gen_range(30..60);
            let s = (0..self.stores.len())
                .filter(|&s| self.stores[s].open)
                .nth(self.quirks.gen_range(0..open));
            if let Some(s) = s {
                self.close_store(s, day, notice);
            }
        }
    }

    fn sell_contract(&mut self, month: i32, day: i32) {
        if self.products.is_empty() || self.open_stores_count() == 0 {
            return;
        }
        let promo = self.promo;
        let k = match promo {
            Some((k, ..)) if self.rng.gen_bool(0.7) => k,
            _ => self.rng.gen_range(0..self.products.len()),
        };
        let (discount, bonus_share, tenor) = match promo {
            Some((pk, d, b, t)) if pk == k => (d, b, t),
            _ => (
                if self.rng.gen_bool(0.25) { 0.05 } else { 0.0 },
                0.0,
                self.products[k].validity_days,
            ),
        };
        let product = &self.products[k];
        let kind = product.tpl.kind;
        let release = product.tpl.release;
        let usage = product.tpl.usage;
        let base_validity = product.validity_days.max(1);
        let mut units = i64::from(product.units);
        if tenor != base_validity {
            let scale = f64::from(tenor) / f64::from(base_validity);
            units = match kind {
                ProductKind::TimeCard => ((f64::from(tenor) / 30.4).round() as i64).max(1),
                ProductKind::StoredValue => units,
                _ => ((units as f64) * scale.min(4.0)).round() as i64,
            };
        }
        let list = product.price_per_unit * units;
        let paid = ((list as f64 * (1.0 - discount)) / 100.0).round() as i64 * 100;
        let bonus =
            ((paid as f64 * (bonus_share + product.tpl.bonus)) / 100.0).round() as i64 * 100;
        let units_total = match kind {
            ProductKind::StoredValue => ((paid + bonus) / 100).max(1),
            _ => units.max(1),
        };
        let frozen = paid * product.freeze_bp / 10_000;
        let months_total = (f64::from(tenor) / 30.4).ceil().max(1.0) as i64;
        let product_id = product.id.clone();
        let disposition = product.disposition;
        let expires = day + i32::try_from(tenor).unwrap_or(365);
        let renewal = self.consumers > 0 && {
            let (p, _) = self.progress(month);
            let share = 0.3 + 0.3 * p;
            self.rng.gen_bool(share)
        };
        let consumer = if renewal {
            self.rng.gen_range(1..=self.consumers)
        } else {
            self.consumers += 1;
            self.consumers
        };
        // A company buys places for its staff (one buyer, many contracts); a merchant
        // pushing prepaid sales leans on its best regulars to top up again and again.
        let (p, planned) = self.progress(month);
        let pushing = matches!(self.phase, Phase::Distress { .. }) && !planned;
        let consumer = if self.corporate && self.later.gen_bool(0.12) {
            let k = self.later.gen_range(1..=2);
            format!("U-{}-B{k}", self.id())
        } else if pushing
            && self.consumers > 5
            && self.later.gen_bool((0.35 * self.signs.push * p).min(1.0))
        {
            let k = self.later.gen_range(1..=5);
            format!("U-{}-{k}", self.id())
        } else {
            format!("U-{}-{}", self.id(), consumer)
        };
        let stores: Vec<usize> = (0..self.stores.len())
            .filter(|s| self.stores[*s].open)
            .collect();
        let store = stores[self.rng.gen_range(0..stores.len())];
        self.contracts_sold += 1;
        let cid = format!("C-{}-{}", self.id(), self.contracts_sold);
        let warm = day < self.period.start_day;
        self.contracts.push(Contract {
            id: cid.clone(),
            units_total,
            units_used: 0,
            paid,
            frozen,
            redeemed_value: 0,
            released: 0,
            months_total,
            sold_day: day,
            release,
            usage,
            expires_day: expires,
            extended: false,
            disposition,
            open: true,
            pending: warm.then(Vec::new),
        });
        let c = self.contracts.len() - 1;
        let hour = self.rng.gen_range(10.0..21.0);
        let ts = at(day, hour);
        let row = vec![
            self.m(),
            Val::T(ts),
            Val::S(cid.clone()),
            Val::S(product_id),
            Val::S(self.stores[store].id.clone()),
            Val::S(consumer),
            Val::M(paid),
            Val::R((discount * 10_000.0).round() as i64),
            if bonus > 0 { Val::M(bonus) } else { Val::N },
            Val::I(units_total),
            Val::D(expires - 1),
        ];
        self.emit_contract_row(c, Table::Contracts, row);
        let channel = if self.custody_bank {
            "BANK_CUSTODY"
        } else {
            "ECNY_YGJ"
        };
        let row = vec![
            self.m(),
            Val::T(ts + 60_000),
            Val::S(cid),
            Val::C("PREPAYMENT"),
            Val::M(paid),
            Val::M(frozen),
            Val::N,
            Val::C(channel),
        ];
        self.emit_contract_row(c, Table::EscrowEvents, row);
        self.wallet += paid - frozen;
    }

    /// An escrow-event row of contract `c` (units are set by the caller for redemptions).
    fn escrow_row(
        &self,
        ts: i64,
        c: usize,
        kind: &'static str,
        amount: i64,
        code: Option<&'static str>,
    ) -> Vec<Val> {
        vec![
            self.m(),
            Val::T(ts),
            Val::S(self.contracts[c].id.clone()),
            Val::C(kind),
            Val::M(amount),
            Val::N,
            Val::N,
            code.map_or(Val::N, Val::C),
        ]
    }

    fn month_end_escrow(&mut self, month: i32, first: i32, next: i32) {
        let delivery = self.delivery_mult(month);
        let (p, planned) = self.progress(month);
        let distressed = matches!(self.phase, Phase::Distress { .. }) && !planned;
        let refund_failure = if distressed {
            0.03 * self.signs.refunds * p
        } else {
            0.0
        };
        let late_unpaid = distressed && p > 0.8;
        // A teacher or coach leaves and their classes stop: a burst of service-failure
        // refunds at a healthy merchant too.
        let burst = if !distressed && self.quirks.gen_bool(story::STAFF_LOSS) {
            self.quirks.gen_range(0.03..0.12)
        } else {
            0.0
        };
        let refund_failure = refund_failure + burst;
        for c in 0..self.contracts.len() {
            if !self.contracts[c].open {
                continue;
            }
            // Expiry within this month.
            let expires = self.contracts[c].expires_day;
            if expires < next {
                self.expire(c, expires.max(first));
                continue;
            }
            // Refund requests.
            let change_of_mind = 0.0025;
            // Healthy merchants fail to deliver now and then too (a teacher leaves).
            let refund_failure = refund_failure + 0.0008;
            let r: f64 = self.rng.gen();
            if r < change_of_mind + refund_failure {
                let reason = if r < change_of_mind {
                    "CHANGE_OF_MIND"
                } else {
                    "SERVICE_FAILURE"
                };
                let day = self.rng.gen_range(first..next);
                let unpaid = late_unpaid && self.rng.gen_bool(0.5);
                self.refund(c, day, reason, unpaid);
                continue;
            }
            // Redemption (核销) and release.
            let (months_total, left, release_mode, units_total, usage) = {
                let k = &self.contracts[c];
                (
                    k.months_total.max(1),
                    k.units_total - k.units_used,
                    k.release,
                    k.units_total,
                    k.usage,
                )
            };
            let expected = match release_mode {
                ReleaseMode::PerMonth => 1.0,
                ReleaseMode::PerUnit => units_total as f64 / months_total as f64 * usage,
            } * delivery;
            let used = match release_mode {
                ReleaseMode::PerMonth => i64::from(self.rng.gen_bool(expected.clamp(0.0, 1.0))),
                ReleaseMode::PerUnit => poisson(&mut self.rng, expected) as i64,
            }
            .min(left);
            if used > 0 {
                self.deliver(c, used, first, next);
            }
            let k = &mut self.contracts[c];
            if k.units_used >= k.units_total && k.released >= k.frozen {
                k.open = false;
            }
        }
        // A release request the contract refuses: asking for money not yet earned.
        let reject_p = if distressed {
            0.05 + 0.5 * p
        } else {
            0.04 * self.eager_release
        };
        if self.rng.gen_bool(reject_p.min(1.0)) {
            let open: Vec<usize> = (0..self.contracts.len())
                .filter(|&c| self.contracts[c].open && self.contracts[c].frozen_left() > 0)
                .collect();
            if !open.is_empty() {
                let c = open[self.rng.gen_range(0..open.len())];
                let amount = self.contracts[c].frozen_left().max(1);
                let day = self.rng.gen_range(first..next);
                let row = self.escrow_row(
                    at(day, 11.0),
                    c,
                    "RELEASE_REJECTED",
                    amount,
                    Some("NOT_DELIVERED"),
                );
                self.emit_contract_row(c, Table::EscrowEvents, row);
            }
        }
        if month >= 0 {
            self.contracts.retain(|c| c.open || c.pending.is_some());
        }
    }

    /// `used` units of contract `c` delivered in the month `first..next`, on the days
    /// the service happens: a time card's month on the anniversary of its sale, classes
    /// and visits on one to four days of the month. Each delivery is a redemption (核销)
    /// and, right after it, the release of the frozen share of what it redeemed
    /// (一课一释: releases follow redemptions unit for unit, whatever the card's validity, so
    /// a contract's frozen funds are all released exactly when it is all redeemed). The
    /// days come from the posting stream, so the month's other draws are unchanged.
    fn deliver(&mut self, c: usize, used: i64, first: i32, next: i32) {
        let (sold, mode) = (self.contracts[c].sold_day, self.contracts[c].release);
        let lo = first.max(sold + 1).min(next - 1);
        let mut days: Vec<i32> = match mode {
            ReleaseMode::PerMonth => {
                // The day of the month it was sold on (the month's last when shorter).
                let want = date_of(sold).day();
                let month_len = u32::try_from(next - first).unwrap_or(28);
                let day = first + i32::try_from(want.min(month_len)).unwrap_or(1) - 1;
                vec![day.clamp(lo, next - 1)]
            }
            ReleaseMode::PerUnit => {
                let visits = used.min(self.posting.gen_range(1..=4));
                (0..visits)
                    .map(|_| self.posting.gen_range(lo..next))
                    .collect()
            }
        };
        days.sort_unstable();
        let visits = days.len() as i64;
        for (v, &day) in days.iter().enumerate() {
            // Units split as evenly as the count allows, the first days taking the rest.
            let n = used / visits + i64::from((v as i64) < used % visits);
            let hour = self.posting.gen_range(9.0..21.0);
            let k = &mut self.contracts[c];
            k.units_used += n;
            let cum = k.paid * k.units_used / k.units_total.max(1);
            let value = cum - k.redeemed_value;
            k.redeemed_value = cum;
            let target = k.frozen * k.units_used / k.units_total.max(1);
            let release = target - k.released;
            k.released = target;
            let mut row = self.escrow_row(at(day, hour), c, "REDEMPTION", value, None);
            row[6] = Val::I(n);
            self.emit_contract_row(c, Table::EscrowEvents, row);
            if release > 0 {
                let trigger = match mode {
                    ReleaseMode::PerUnit => "PER_UNIT",
                    ReleaseMode::PerMonth => "PER_MONTH",
                };
                self.wallet += release;
                let row =
                    self.escrow_row(at(day, hour + 0.25), c, "RELEASE", release, Some(trigger));
                self.emit_contract_row(c, Table::EscrowEvents, row);
            }
        }
    }

    fn expire(&mut self, c: usize, day: i32) {
        let k = &self.contracts[c];
        let value_left = k.value_left();
        let frozen_left = k.frozen_left();
        let disposition = if k.extended && k.disposition == ExpiryDisposition::Extend {
            ExpiryDisposition::ReleaseToMerchant
        } else {
            k.disposition
        };
        if value_left > 0 {
            let row = self.escrow_row(
                at(day, 23.0),
                c,
                "EXPIRY",
                value_left,
                Some(disposition.as_str()),
            );
            self.emit_contract_row(c, Table::EscrowEvents, row);
        }
        match disposition {
            ExpiryDisposition::Extend => {
                let k = &mut self.contracts[c];
                k.extended = true;
                k.expires_day += 90;
                return;
            }
            ExpiryDisposition::ReleaseToMerchant => {
                if frozen_left > 0 {
                    self.wallet += frozen_left;
                    let row =
                        self.escrow_row(at(day, 23.5), c, "RELEASE", frozen_left, Some("EXPIRY"));
                    self.emit_contract_row(c, Table::EscrowEvents, row);
                }
            }
            ExpiryDisposition::RefundToConsumer => {
                if value_left > 0 {
                    self.pay_refund(c, day + 1, value_left, frozen_left, i64::MAX, true);
                }
            }
        }
        let k = &mut self.contracts[c];
        k.released = k.frozen;
        k.redeemed_value = k.paid;
        k.open = false;
    }

    fn refund(&mut self, c: usize, day: i32, reason: &'static str, unpaid: bool) {
        let value_left = self.contracts[c].value_left();
        let frozen_left = self.contracts[c].frozen_left();
        if value_left > 0 {
            let row = self.escrow_row(
                at(day, 12.0),
                c,
                "REFUND_REQUESTED",
                value_left,
                Some(reason),
            );
            self.emit_contract_row(c, Table::EscrowEvents, row);
            let paid_day = day + self.rng.gen_range(1..10);
            // A healthy merchant now and then refuses a change-of-mind refund beyond what
            // escrow holds, and the consumer gives up (a dispute, not a failure).
            let disputed = !unpaid
                && reason == "CHANGE_OF_MIND"
                && value_left - frozen_left.min(value_left) < 400_000
                && self.quirks.gen_bool(story::REFUND_DISPUTE);
            let wallet_pays = if unpaid || disputed { 0 } else { i64::MAX };
            self.pay_refund(c, paid_day, value_left, frozen_left, wallet_pays, !disputed);
        }
        let k = &mut self.contracts[c];
        k.released = k.frozen;
        k.redeemed_value = k.paid;
        k.open = false;
    }

    /// Pays a refund: the frozen part from escrow, the rest from the merchant up to
    /// `wallet_pays` (0 when it will not pay, its balance when it has closed); what is left
    /// is unrecovered. Returns the unrecovered amount.
    fn pay_refund(
        &mut self,
        c: usize,
        day: i32,
        value_left: i64,
        frozen_left: i64,
        wallet_pays: i64,
        guaranteed: bool,
    ) -> i64 {
        let from_escrow = frozen_left.min(value_left).max(0);
        if from_escrow > 0 {
            let row = self.escrow_row(
                at(day, 14.0),
                c,
                "REFUND_COMPLETED",
                from_escrow,
                Some("ESCROW"),
            );
            self.emit_contract_row(c, Table::EscrowEvents, row);
        }
        let rest = value_left - from_escrow;
        if rest <= 0 {
            return 0;
        }
        let from_wallet = rest.min(wallet_pays.max(0));
        if from_wallet > 0 {
            self.wallet = (self.wallet - from_wallet).max(0);
            let row = self.escrow_row(
                at(day, 14.5),
                c,
                "REFUND_COMPLETED",
                from_wallet,
                Some("MERCHANT_WALLET"),
            );
            self.emit_contract_row(c, Table::EscrowEvents, row);
        }
        let mut lost = rest - from_wallet;
        // What the merchant does not pay, its risk reserve or its insurer does, up to what
        // is left of it (not a refund the merchant disputes).
        if let Some((left, source)) = self.guarantee.filter(|_| guaranteed && lost > 0) {
            let paid = lost.min(left);
            if paid > 0 {
                self.guarantee = Some((left - paid, source));
                lost -= paid;
                let row = self.escrow_row(at(day, 14.8), c, "REFUND_COMPLETED", paid, Some(source));
                self.emit_contract_row(c, Table::EscrowEvents, row);
            }
        }
        if lost > 0 {
            // Consumers are harmed from the first fen lost; a lender's default from 5,000
            // yuan in all (yuanxin_profile::MATERIAL_UNRECOVERED_FEN).
            let before = self.lost_fen;
            self.lost_fen = before.saturating_add(lost);
            let material = before < 500_000 && self.lost_fen >= 500_000;
            let t = self.truth_mut();
            if t.harm_day.is_none_or(|d| d > day) {
                t.harm_day = Some(day);
            }
            if material && t.default_day.is_none_or(|d| d > day) {
                t.default_day = Some(day);
                t.default_type = "unrecovered_prepayments";
            }
            let row = self.escrow_row(
                at(day, 15.0),
                c,
                "REFUND_COMPLETED",
                lost,
                Some("UNRECOVERED"),
            );
            self.emit_contract_row(c, Table::EscrowEvents, row);
        }
        lost
    }

    fn abrupt_closure(&mut self, month: i32, day: i32) {
        for s in 0..self.stores.len() {
            self.close_store(s, day, 0);
        }
        // Consumers find the doors shut and ask for their money; escrow pays the frozen
        // part, the swept wallet pays what it still holds, the rest is lost.
        let mut lost_total = 0;
        let open: Vec<usize> = (0..self.contracts.len())
            .filter(|&c| self.contracts[c].open)
            .collect();
        let active = open.len();
        for c in open {
            let value_left = self.contracts[c].value_left();
            let frozen_left = self.contracts[c].frozen_left();
            if value_left <= 0 {
                continue;
            }
            let ask = day + self.rng.gen_range(0..45);
            let row = self.escrow_row(
                at(ask, 12.0),
                c,
                "REFUND_REQUESTED",
                value_left,
                Some("MERCHANT_CLOSED"),
            );
            self.emit_contract_row(c, Table::EscrowEvents, row);
            let paid_day = ask + self.rng.gen_range(7..30);
            let wallet = self.wallet;
            lost_total += self.pay_refund(c, paid_day, value_left, frozen_left, wallet, true);
            let k = &mut self.contracts[c];
            k.open = false;
        }
        self.phase = Phase::Closed;
        self.closed_month = Some(month);
        let t = self.truth_mut();
        t.closed_day = Some(day);
        t.unrecovered_fen = lost_total;
        // Stopping trade without notice is a lender's default whether or not escrow
        // repaid the consumers.
        if t.default_day.is_none_or(|d| d >= day) {
            t.default_day = Some(day);
            t.default_type = if lost_total > 0 {
                "closure_unrefunded"
            } else {
                "closure"
            };
        }
        // Complaints mostly arrive after the end; then lawsuits and the abnormal listing.
        let surge = poisson(&mut self.rng, 0.4 * active as f64 + 2.0);
        for _ in 0..surge {
            let d = day + self.rng.gen_range(0..60);
            let category = if self.rng.gen_bool(0.6) {
                "CLOSURE"
            } else {
                "REFUND"
            };
            self.complaint(d, category);
        }
        if self.rng.gen_bool(0.4) {
            let d = day + self.rng.gen_range(30..120);
            self.lawsuit(d, lost_total.max(100_000));
        }
        if self.rng.gen_bool(0.6) {
            let d = day + self.rng.gen_range(60..120);
            self.public_record(d, "ABNORMAL_LISTED", None);
        }
    }

    fn orderly_closure(&mut self, month: i32, day: i32) {
        for s in 0..self.stores.len() {
            let notice = self.rng.gen_range(30..75);
            self.close_store(s, day, notice);
        }
        let open: Vec<usize> = (0..self.contracts.len())
            .filter(|&c| self.contracts[c].open)
            .collect();
        for c in open {
            let ask = day - self.rng.gen_range(0..25);
            self.refund(c, ask.max(self.period.start_day), "MERCHANT_CLOSED", false);
        }
        // Loans are repaid in full.
        for l in 0..self.loans.len() {
            let (due, left, charged) = (
                self.loans[l].monthly_due,
                self.loans[l].months_left,
                self.loans[l].charged_off,
            );
            if left > 0 && !charged {
                let owed = due * (left + self.loans[l].arrears.len() as i64);
                self.loan_row(l, day, "REPAYMENT", Some(owed), None, None);
                self.loans[l].months_left = 0;
                self.loans[l].arrears.clear();
            }
        }
        self.phase = Phase::Closed;
        self.closed_month = Some(month);
        let t = self.truth_mut();
        t.closed_day = Some(day);
        t.orderly_closure = true;
    }

    pub(crate) fn post_closure_done(&self, month: i32) -> bool {
        let loans_done = self
            .loans
            .iter()
            .all(|l| l.charged_off || (l.months_left == 0 && l.arrears.is_empty()));
        loans_done && self.closed_month.is_some_and(|c| month > c + 1)
    }

    fn operations(&mut self, month: i32, first: i32, next: i32) {
        let open = self.open_stores_count();
        if open == 0 {
            return;
        }
        let (p, planned) = self.progress(month);
        let distressed = matches!(self.phase, Phase::Distress { .. }) && !planned;
        let shrink = if distressed {
            1.0 - 0.4 * self.signs.payroll.min(1.0) * p
        } else {
            1.0
        };
        let staff = (self.p.staff_per_store * open as f64 * self.staff_factor * shrink)
            .round()
            .max(1.0) as i64;
        let staff = (staff + self.rng.gen_range(-1..=1)).max(1);
        let late_distress = if distressed {
            0.85 * self.signs.payroll.min(1.0) * ((p - 0.4) / 0.6).max(0.0)
        } else {
            0.0
        };
        let late_p = match self.phase {
            Phase::LoanDefaulted => 0.4,
            _ => (self.late_base + late_distress).min(0.95),
        };
        let period = Val::D(first);
        let due = first + 9;
        let late = self.rng.gen_bool(late_p);
        let pay_day = if late {
            due + self.rng.gen_range(3..25)
        } else {
            due - self.rng.gen_range(0..3)
        };
        let payroll = fen_of(staff as f64 * self.wage * lognormal(&mut self.rng, 1.0, 0.05));
        let row = vec![
            self.m(),
            Val::T(at(pay_day.min(next + 20), 16.0)),
            Val::C("PAYROLL"),
            period.clone(),
            Val::M(payroll),
            Val::I(staff),
            Val::B(!late),
            Val::N,
            Val::N,
        ];
        self.emit(Table::Operations, row);
        let insured = ((staff as f64) * self.insured_share).round().max(1.0) as i64;
        let si_late = self.rng.gen_bool((late_p * 0.8).min(1.0));
        let si_day = first
            + 14
            + if si_late {
                self.rng.gen_range(5..30)
            } else {
                0
            };
        let row = vec![
            self.m(),
            Val::T(at(si_day, 10.0)),
            Val::C("SOCIAL_INSURANCE"),
            period.clone(),
            Val::M(insured * 110_000),
            Val::I(insured),
            Val::B(!si_late),
            Val::N,
            Val::N,
        ];
        self.emit(Table::Operations, row);
        // Rent of the open stores, due on the 5th. A cash-strapped merchant pays the
        // landlord late, then not at all, before it pays staff late (梵羽's arrears).
        let rent: i64 = self.stores.iter().filter(|s| s.open).map(|s| s.rent).sum();
        let rent_late_p = match self.phase {
            Phase::LoanDefaulted => 0.5,
            _ if distressed => (0.5 * self.late_base + 1.2 * late_distress).min(0.95),
            _ => 0.5 * self.late_base,
        };
        let rent_late = self.later.gen_bool(rent_late_p);
        let rent_due = first + 4;
        let rent_day = if rent_late {
            rent_due + self.later.gen_range(5..40)
        } else {
            rent_due - self.later.gen_range(0..4)
        };
        let row = vec![
            self.m(),
            Val::T(at(rent_day, 11.0)),
            Val::C("RENT"),
            period.clone(),
            Val::M(rent),
            Val::N,
            Val::B(!rent_late),
            Val::N,
            Val::N,
        ];
        self.emit(Table::Operations, row);
        let activity = self.revenue_mult(month) * self.delivery_mult(month);
        // Shenzhen's summers (May–October) run air conditioning: electricity follows the
        // season as much as the business.
        let summer = match crate::calendar::date_of(first).month() {
            5 | 10 => 1.15,
            6..=9 => 1.35,
            _ => 1.0,
        };
        let kwh = (open as f64 * 2500.0 * summer * activity * lognormal(&mut self.rng, 1.0, 0.25))
            .round() as i64;
        let water =
            (open as f64 * 50.0 * activity * lognormal(&mut self.rng, 1.0, 0.2)).round() as i64;
        let bill_day = next - 2;
        let row = vec![
            self.m(),
            Val::T(at(bill_day, 8.0)),
            Val::C("UTILITY"),
            period.clone(),
            Val::M(kwh * 90),
            Val::N,
            Val::N,
            Val::C("ELECTRICITY"),
            Val::I(kwh),
        ];
        self.emit(Table::Operations, row);
        let row = vec![
            self.m(),
            Val::T(at(bill_day, 8.5)),
            Val::C("UTILITY"),
            period,
            Val::M(water * 450),
            Val::N,
            Val::N,
            Val::C("WATER"),
            Val::I(water),
        ];
        self.emit(Table::Operations, row);
        // Distressed chains close stores one by one, without notice.
        if distressed && p > 0.5 && open > 1 {
            for s in 0..self.stores.len() {
                if self.stores[s].open && self.open_stores_count() > 1 && self.rng.gen_bool(0.2) {
                    let d = self.rng.gen_range(first..next);
                    self.close_store(s, d, 0);
                }
            }
        }
    }

    /// A complaint on `day`, unless that falls after the simulated period.
    fn complaint(&mut self, day: i32, category: &'static str) {
        if day >= self.period.end_day {
            return;
        }
        let channel = pick(
            &mut self.rng,
            &[
                ("HOTLINE_12315", 0.35),
                ("HOTLINE_12345", 0.3),
                ("CONSUMER_COUNCIL", 0.15),
                ("PLATFORM", 0.2),
            ],
        );
        let contract = if matches!(category, "REFUND" | "CLOSURE")
            && !self.contracts.is_empty()
            && self.rng.gen_bool(0.5)
        {
            let n = self.contracts.len();
            let c = self.rng.gen_range(0..n);
            self.contracts[c]
                .pending
                .is_none()
                .then(|| self.contracts[c].id.clone())
        } else {
            None
        };
        let amount = if category == "SERVICE" {
            None
        } else {
            Some(self.rng.gen_range(20_000..1_500_000))
        };
        let hour = self.rng.gen_range(9.0..20.0);
        let row = vec![
            self.m(),
            Val::T(at(day, hour)),
            Val::C(channel),
            Val::C(category),
            amount.map_or(Val::N, Val::M),
            contract.map_or(Val::N, Val::S),
        ];
        self.emit(Table::Complaints, row);
    }

    fn public_record(&mut self, day: i32, kind: &'static str, amount: Option<i64>) {
        if day >= self.period.end_day {
            return;
        }
        let (authority, case_type) = match kind {
            "ADMIN_PENALTY" => ("深圳市市场监督管理局", "价格违法"),
            "LAWSUIT_DEFENDANT" => ("深圳市人民法院", "服务合同纠纷"),
            "ENFORCEMENT" => ("深圳市中级人民法院", "执行案件"),
            "DISHONEST_LISTED" | "DISHONEST_REMOVED" => ("深圳市中级人民法院", "失信被执行人"),
            _ => ("深圳市市场监督管理局", "经营异常名录"),
        };
        let row = vec![
            self.m(),
            Val::T(at(day, 10.0)),
            Val::C(kind),
            amount.map_or(Val::N, Val::M),
            Val::C(authority),
            Val::C(case_type),
        ];
        self.emit(Table::PublicRecords, row);
    }

    /// A lawsuit against the merchant, and what may follow: a merchant in trouble often
    /// does not pay the judgment, so the court enforces it (被执行人) and, when that finds
    /// nothing, lists it as a dishonest debtor (失信被执行人); a sound merchant that loses
    /// sometimes pays only once enforced, and is rarely listed (and then soon removed).
    fn lawsuit(&mut self, day: i32, claim: i64) {
        self.public_record(day, "LAWSUIT_DEFENDANT", Some(claim));
        let troubled = match self.phase {
            Phase::Distress { planned, .. } => !planned,
            Phase::LoanDefaulted | Phase::Closed => true,
            _ => false,
        };
        let (enforced, listed) = if troubled { (0.7, 0.6) } else { (0.12, 0.05) };
        if !self.later.gen_bool(enforced) {
            return;
        }
        let e = day + self.later.gen_range(60..180);
        let sum = fen_of(claim as f64 / 100.0 * self.later.gen_range(0.5..1.0));
        self.public_record(e, "ENFORCEMENT", Some(sum.max(100)));
        if self.later.gen_bool(listed) {
            let l = e + self.later.gen_range(30..120);
            self.public_record(l, "DISHONEST_LISTED", None);
            if !troubled {
                let r = l + self.later.gen_range(20..90);
                self.public_record(r, "DISHONEST_REMOVED", None);
            }
        }
    }

    /// The credit bureau's month: other debts repaid (or not, in distress) and reported at
    /// month end; credit inquiries. A merchant in trouble shops for credit — applications
    /// to banks and microlenders, some granted at high cost — before it fails; sound ones
    /// apply now and then, take supplier credit, and their lenders check on them.
    fn bureau_month(&mut self, month: i32, first: i32, next: i32) {
        let (p, planned) = self.progress(month);
        let troubled = matches!(self.phase, Phase::Distress { .. }) && !planned;
        let strain = if troubled {
            self.signs
                .push
                .max(self.signs.sweep)
                .max(self.signs.payroll)
                * p
        } else {
            0.0
        };
        let monthly = self.expected_monthly_revenue() * self.stores.len().max(1) as f64;
        let applications = poisson(&mut self.later, 0.05 + 0.8 * strain);
        for _ in 0..applications {
            let d = self.later.gen_range(first..next);
            let who = pick(
                &mut self.later,
                &[("BANK", 0.55), ("MICROLENDER", 0.35), ("FACTORING", 0.1)],
            );
            let amount =
                fen_of((monthly * self.later.gen_range(0.5..3.0) / 1000.0).round() * 1000.0);
            self.inquiry(d, who, "LOAN_APPLICATION", Some(amount));
        }
        let new_debt = if troubled { 0.25 * strain } else { 0.004 };
        if self.later.gen_bool(new_debt.min(1.0)) {
            let creditor = if troubled { "MICROLENDER" } else { "FACTORING" };
            let balance = fen_of(monthly * self.later.gen_range(0.5..2.0));
            let term: i64 = if troubled { 6 } else { 12 };
            self.other_debts.push(OtherDebt {
                creditor,
                balance,
                payment: (balance / term).max(1),
            });
        }
        // Lenders of loans being repaid check on the merchant each quarter.
        if month.rem_euclid(3) == 0 {
            let active = self
                .loans
                .iter()
                .filter(|l| l.months_left > 0 && !l.charged_off)
                .count();
            for _ in 0..active {
                let d = self.later.gen_range(first..next);
                self.inquiry(d, "BANK", "POST_LOAN", None);
            }
        }
        let pays = !(troubled && p > 0.6 && self.later.gen_bool(0.6))
            && self.phase != Phase::LoanDefaulted;
        let month_end = next - 1;
        let mut owed: Vec<(&'static str, i64)> = Vec::new();
        for debt in &mut self.other_debts {
            if pays {
                debt.balance = (debt.balance - debt.payment).max(0);
            }
            match owed.iter_mut().find(|(c, _)| *c == debt.creditor) {
                Some((_, b)) => *b += debt.balance,
                None => owed.push((debt.creditor, debt.balance)),
            }
        }
        self.other_debts.retain(|d| d.balance > 0);
        // Reported while owed, and once more at zero in the month it is paid off.
        for (creditor, balance) in owed {
            let row = vec![
                self.m(),
                Val::T(at(month_end, 23.0)),
                Val::C("DEBT_BALANCE"),
                Val::C(creditor),
                Val::M(balance),
                Val::N,
            ];
            self.emit(Table::BureauRecords, row);
        }
    }

    fn inquiry(&mut self, day: i32, who: &'static str, purpose: &'static str, amount: Option<i64>) {
        let row = vec![
            self.m(),
            Val::T(at(day, self.later.gen_range(9.0..18.0))),
            Val::C("INQUIRY"),
            Val::C(who),
            amount.map_or(Val::N, Val::M),
            Val::C(purpose),
        ];
        self.emit(Table::BureauRecords, row);
    }

    fn complaints_and_records(&mut self, month: i32, first: i32, next: i32) {
        let (p, planned) = self.progress(month);
        let distressed = matches!(self.phase, Phase::Distress { .. }) && !planned;
        let open = self.open_stores_count() as f64;
        let surge = if distressed {
            1.0 + 4.0 * self.signs.refunds * p
        } else {
            1.0
        };
        let lambda = self.p.complaint_rate * open * (-0.3 * self.health).exp() * surge;
        let n = poisson(&mut self.rng, lambda);
        for _ in 0..n {
            let d = self.rng.gen_range(first..next);
            let category = if distressed {
                pick(
                    &mut self.rng,
                    &[("REFUND", 0.5), ("SERVICE", 0.4), ("FALSE_AD", 0.1)],
                )
            } else {
                pick(
                    &mut self.rng,
                    &[
                        ("SERVICE", 0.4),
                        ("REFUND", 0.3),
                        ("PRICE", 0.15),
                        ("FALSE_AD", 0.15),
                    ],
                )
            };
            self.complaint(d, category);
        }
        let stress = if distressed { 3.0 } else { 1.0 };
        if self.rng.gen_bool(0.002 * stress) {
            let d = self.rng.gen_range(first..next);
            let fine = self.rng.gen_range(200_000..5_000_000);
            self.public_record(d, "ADMIN_PENALTY", Some(fine));
        }
        let litigious = if self.litigious { 6.0 } else { 1.0 };
        if self
            .rng
            .gen_bool((0.0015 * stress * stress * litigious).min(1.0))
        {
            let d = self.rng.gen_range(first..next);
            let claim = self.rng.gen_range(500_000..20_000_000);
            self.lawsuit(d, claim);
        }
        if !self.abnormal_listed && self.rng.gen_bool(0.001) {
            // A missed annual report: listed, then removed once filed.
            let d = self.rng.gen_range(first..next);
            self.public_record(d, "ABNORMAL_LISTED", None);
            let removed = d + self.rng.gen_range(30..100);
            self.public_record(removed, "ABNORMAL_REMOVED", None);
        }
    }

    pub(crate) fn take_loan(&mut self, day: i32) {
        let monthly_rev = self.expected_monthly_revenue() * self.stores.len().max(1) as f64;
        let principal = ((monthly_rev * self.rng.gen_range(1.5..5.0)) / 1000.0)
            .round()
            .max(10.0)
            * 1000.0;
        let term = if self.rng.gen_bool(0.7) { 12 } else { 24 };
        let rate = self.rng.gen_range(0.035..0.08);
        let r = rate / 12.0;
        let due = principal * r / (1.0 - (1.0 + r).powi(-term));
        let lender = pick(
            &mut self.rng,
            &[
                ("ICBC", 0.12),
                ("ABC", 0.1),
                ("BOC", 0.1),
                ("CCB", 0.14),
                ("BOCOM", 0.08),
                ("PSBC", 0.1),
                ("CMB", 0.12),
                ("CIB", 0.08),
                ("WEBANK", 0.16),
            ],
        );
        let id = format!("L-{}-{}", self.id(), self.loans.len() + 1);
        self.loans.push(Loan {
            id,
            lender,
            monthly_due: fen_of(due),
            months_left: i64::from(term),
            arrears: Vec::new(),
            skips: 0,
            charged_off: false,
            last_status_month: i32::MIN,
        });
        self.truth_mut().had_loan = true;
        let l = self.loans.len() - 1;
        let row = vec![
            self.m(),
            Val::T(at(day, 10.0)),
            Val::S(self.loans[l].id.clone()),
            Val::C("DISBURSEMENT"),
            Val::C(lender),
            Val::M(fen_of(principal)),
            Val::I(i64::from(term)),
            Val::R((rate * 10_000.0).round() as i64),
            Val::N,
            Val::N,
        ];
        self.emit(Table::Loans, row);
        // The bank that lends, and often one or two others asked at the same time,
        // inquire in the weeks before.
        let asked = self.later.gen_range(1..=3);
        for _ in 0..asked {
            let d = day - self.later.gen_range(3..40);
            self.inquiry(d, "BANK", "LOAN_APPLICATION", Some(fen_of(principal)));
        }
    }

    fn loan_row(
        &mut self,
        l: usize,
        day: i32,
        kind: &'static str,
        amount: Option<i64>,
        due_on: Option<i32>,
        dpd: Option<i64>,
    ) {
        let row = vec![
            self.m(),
            Val::T(at(day, 17.0)),
            Val::S(self.loans[l].id.clone()),
            Val::C(kind),
            Val::C(self.loans[l].lender),
            amount.map_or(Val::N, Val::M),
            Val::N,
            Val::N,
            due_on.map_or(Val::N, Val::D),
            dpd.map_or(Val::N, Val::I),
        ];
        self.emit(Table::Loans, row);
    }

    fn loans_month(&mut self, month: i32, first: i32, next: i32, closed: bool) {
        let (p, planned) = self.progress(month);
        let active = self
            .loans
            .iter()
            .any(|l| l.months_left > 0 && !l.charged_off);
        if !closed && !active && self.phase != Phase::LoanDefaulted {
            let takeup = match self.phase {
                Phase::Distress { .. } if !planned => story::LOAN_TAKEUP * 4.0,
                _ => story::LOAN_TAKEUP,
            };
            if self.rng.gen_bool(takeup) {
                let d = self.rng.gen_range(first..next);
                self.take_loan(d);
            }
        }
        let month_end = next - 1;
        for l in 0..self.loans.len() {
            if self.loans[l].charged_off || self.loans[l].last_status_month == month {
                continue;
            }
            let due_day = first + 19;
            let scheduled = self.loans[l].months_left > 0;
            if scheduled {
                let due = self.loans[l].monthly_due;
                self.loan_row(
                    l,
                    first,
                    "SCHEDULED_REPAYMENT",
                    Some(due),
                    Some(due_day),
                    None,
                );
                self.loans[l].months_left -= 1;
                self.loans[l].arrears.push(due_day);
            }
            let cannot_pay = closed
                || self.phase == Phase::LoanDefaulted
                || (matches!(self.phase, Phase::Distress { .. }) && !planned && p > 0.6 && {
                    let s = self.signs.payroll.max(self.signs.sweep);
                    self.rng.gen_bool((0.6 * s).min(1.0))
                });
            // Healthy merchants let an instalment slip now and then (a habitual late payer
            // more often) and catch up: one month late, sometimes two (30+ days past due),
            // rarely three (60+), never four.
            let troubled = matches!(self.phase, Phase::Distress { .. }) && !planned;
            let slips = !cannot_pay && !troubled && !self.loans[l].arrears.is_empty() && {
                let habit = if self.late_base > 0.3 { 3.0 } else { 1.0 };
                let p = match self.loans[l].skips {
                    0 => story::INSTALMENT_SLIP * habit,
                    1 => story::SECOND_SLIP,
                    2 => story::THIRD_SLIP,
                    _ => 0.0,
                };
                self.quirks.gen_bool(p.min(1.0))
            };
            if slips {
                self.loans[l].skips += 1;
            } else {
                self.loans[l].skips = 0;
            }
            if !cannot_pay && !slips && !self.loans[l].arrears.is_empty() {
                let owed = self.loans[l].monthly_due * self.loans[l].arrears.len() as i64;
                let late = self.rng.gen_bool(0.03);
                let pay_day = if late {
                    due_day + self.rng.gen_range(3..9)
                } else {
                    due_day - self.rng.gen_range(0..3)
                };
                self.loan_row(
                    l,
                    pay_day.min(month_end),
                    "REPAYMENT",
                    Some(owed),
                    None,
                    None,
                );
                self.loans[l].arrears.clear();
            }
            let dpd = self.loans[l]
                .arrears
                .first()
                .map(|d| i64::from((month_end - d).max(0)))
                .unwrap_or(0);
            if scheduled || dpd > 0 {
                self.loan_row(l, month_end, "STATUS", None, None, Some(dpd));
            }
            self.loans[l].last_status_month = month;
            if dpd >= 90 {
                let oldest = self.loans[l].arrears.first().copied().unwrap_or(month_end);
                let day = oldest + 90;
                let t = self.truth_mut();
                if t.default_day.is_none_or(|d| d > day) {
                    t.default_day = Some(day);
                    t.default_type = "loan_90dpd";
                }
            }
            if dpd >= 180 {
                self.loans[l].charged_off = true;
            }
        }
    }
}
