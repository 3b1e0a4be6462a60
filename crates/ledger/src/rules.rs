//! Row rules that span several columns of one table (a field required only for some kinds,
//! a frozen part larger than the payment, ...), applied to canonical columns.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type, TimestampMillisecondType};

use crate::reason::{Reason, Rejection};
use crate::schema::{escrow_code_list, Table};

/// Typed access to a canonical batch by column name.
pub(crate) struct Canon<'a> {
    pub table: Table,
    pub cols: &'a [ArrayRef],
}

impl<'a> Canon<'a> {
    fn col(&self, name: &str) -> Option<&'a ArrayRef> {
        self.table.column(name).and_then(|(i, _)| self.cols.get(i))
    }

    pub fn str(&self, name: &str, row: usize) -> Option<&'a str> {
        let a = self.col(name)?.as_string_opt::<i32>()?;
        (!a.is_null(row)).then(|| a.value(row))
    }

    pub fn int(&self, name: &str, row: usize) -> Option<i64> {
        let a = self.col(name)?.as_primitive_opt::<Int64Type>()?;
        (!a.is_null(row)).then(|| a.value(row))
    }

    pub fn dec(&self, name: &str, row: usize) -> Option<i128> {
        let a = self.col(name)?.as_primitive_opt::<Decimal128Type>()?;
        (!a.is_null(row)).then(|| a.value(row))
    }

    pub fn ts(&self, name: &str, row: usize) -> Option<i64> {
        let a = self
            .col(name)?
            .as_primitive_opt::<TimestampMillisecondType>()?;
        (!a.is_null(row)).then(|| a.value(row))
    }

    pub fn date(&self, name: &str, row: usize) -> Option<i32> {
        let a = self.col(name)?.as_primitive_opt::<Date32Type>()?;
        (!a.is_null(row)).then(|| a.value(row))
    }

    pub fn present(&self, name: &str, row: usize) -> bool {
        self.col(name).is_some_and(|a| !a.is_null(row))
    }
}

fn need(c: &Canon<'_>, row: usize, col: &'static str, kind: &str) -> Option<Rejection> {
    (!c.present(col, row)).then(|| {
        Rejection::new(
            Reason::MissingField,
            col,
            format!("required for kind {kind}"),
        )
    })
}

/// A plausibility bound: the most a column may hold in a row of a table (of one kind, where
/// given). Values beyond it are rejected as `implausible_value`: they are not what a
/// prepaid merchant's feeds can carry (a typo in the unit, a test row, a corrupted export),
/// and accepting them would distort every profile sum they enter.
pub struct Plausible {
    /// The table.
    pub table: Table,
    /// The row kind it applies to (every kind when `None`).
    pub kind: Option<&'static str>,
    /// The column.
    pub column: &'static str,
    /// The largest plausible value: yuan for money columns, else the count itself.
    pub max: i64,
    /// Why that much, for the documentation.
    pub why: &'static str,
}

const fn bound(
    table: Table,
    kind: Option<&'static str>,
    column: &'static str,
    max: i64,
    why: &'static str,
) -> Plausible {
    Plausible {
        table,
        kind,
        column,
        max,
        why,
    }
}

/// Every plausibility bound, documented with the table's rules (`yuanxin schema`).
pub const PLAUSIBLE: &[Plausible] = &[
    bound(
        Table::WalletFlows,
        Some("SPOT_SALE"),
        "amount",
        5_000_000,
        "a day's settlement of one merchant's stores",
    ),
    bound(
        Table::WalletFlows,
        Some("WITHDRAWAL"),
        "amount",
        50_000_000,
        "one transfer out of the merchant's wallet",
    ),
    bound(
        Table::EscrowEvents,
        None,
        "amount",
        1_000_000,
        "one consumer's prepayment and its parts",
    ),
    bound(
        Table::EscrowEvents,
        None,
        "units",
        2_000_000,
        "units of one contract: a stored-value card counts yuan",
    ),
    bound(
        Table::Contracts,
        None,
        "paid_amount",
        1_000_000,
        "one consumer's prepayment",
    ),
    bound(
        Table::Contracts,
        None,
        "units_total",
        2_000_000,
        "units of one contract: a stored-value card counts yuan, bonus included",
    ),
    bound(
        Table::Products,
        None,
        "list_price",
        1_000_000,
        "one prepaid product",
    ),
    bound(
        Table::Products,
        None,
        "units",
        2_000_000,
        "units of one product: a stored-value card counts yuan, bonus included",
    ),
    bound(Table::Products, None, "validity_days", 3_650, "ten years"),
    bound(
        Table::Operations,
        None,
        "amount",
        50_000_000,
        "one month's payroll or utility bill",
    ),
    bound(
        Table::Operations,
        None,
        "headcount",
        100_000,
        "staff of one merchant",
    ),
    bound(
        Table::Loans,
        None,
        "amount",
        100_000_000,
        "the largest loan any product offers",
    ),
    bound(Table::Loans, None, "term_months", 360, "thirty years"),
    bound(Table::Loans, None, "dpd", 3_650, "ten years past due"),
    bound(
        Table::Merchants,
        None,
        "guarantee_amount",
        100_000_000,
        "a risk reserve or bond cover of one merchant",
    ),
    bound(
        Table::BureauRecords,
        None,
        "amount",
        100_000_000,
        "the debts of one merchant to one kind of creditor, or one application",
    ),
];

impl Plausible {
    /// The bound as one line of the table's documented rules.
    pub fn describe(&self) -> String {
        let kind = self.kind.map_or(String::new(), |k| format!(" ({k} rows)"));
        let max = self.max.to_string();
        let mut grouped = String::new();
        for (i, ch) in max.chars().enumerate() {
            if i > 0 && (max.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        let unit = match self.table.column(self.column) {
            Some((_, c)) if c.ty == crate::schema::ColType::Money => " yuan",
            _ => "",
        };
        format!(
            "`{}`{kind} at most {grouped}{unit} ({}); more is rejected as `implausible_value`.",
            self.column, self.why
        )
    }
}

fn implausible(c: &Canon<'_>, row: usize, kind: &str) -> Option<Rejection> {
    for b in PLAUSIBLE
        .iter()
        .filter(|b| b.table == c.table && b.kind.is_none_or(|k| k == kind))
    {
        // Money is fen in the ledger; counts are themselves.
        let (value, max) = match c.dec(b.column, row) {
            Some(fen) => (fen, i128::from(b.max) * 100),
            None => match c.int(b.column, row) {
                Some(n) => (i128::from(n), i128::from(b.max)),
                None => continue,
            },
        };
        if value > max {
            return Some(Rejection::new(
                Reason::ImplausibleValue,
                b.column,
                format!("more than {} ({})", b.max, b.why),
            ));
        }
    }
    None
}

/// Applies the table's row rules to every row that has no rejection yet.
pub(crate) fn check(c: &Canon<'_>, rejections: &mut [Option<Rejection>]) {
    for (row, slot) in rejections.iter_mut().enumerate() {
        if slot.is_none() {
            *slot = check_row(c, row);
        }
    }
}

fn check_row(c: &Canon<'_>, row: usize) -> Option<Rejection> {
    let kind = c.str("kind", row).unwrap_or("");
    if let Some(r) = implausible(c, row, kind) {
        return Some(r);
    }
    match c.table {
        Table::EscrowEvents => {
            match escrow_code_list(kind) {
                Some(list) => {
                    if let Some(r) = need(c, row, "code", kind) {
                        return Some(r);
                    }
                    let code = c.str("code", row).unwrap_or("");
                    if !list.contains(code) {
                        return Some(Rejection::new(
                            Reason::UnknownCode,
                            "code",
                            format!("{code:?} is not a valid {} code", list.what),
                        ));
                    }
                }
                None => {
                    if c.present("code", row) {
                        return Some(Rejection::new(
                            Reason::Inconsistent,
                            "code",
                            format!("kind {kind} takes no code"),
                        ));
                    }
                }
            }
            match kind {
                "PREPAYMENT" => {
                    if let Some(r) = need(c, row, "frozen_amount", kind) {
                        return Some(r);
                    }
                    if c.dec("frozen_amount", row) > c.dec("amount", row) {
                        return Some(Rejection::new(
                            Reason::Inconsistent,
                            "frozen_amount",
                            "frozen part exceeds the prepayment",
                        ));
                    }
                }
                "REDEMPTION" => return need(c, row, "units", kind),
                _ => {}
            }
            None
        }
        Table::WalletFlows => match kind {
            "SPOT_SALE" => need(c, row, "channel", kind),
            "WITHDRAWAL" => need(c, row, "dest_account", kind),
            _ => None,
        },
        Table::Operations => match kind {
            "PAYROLL" | "SOCIAL_INSURANCE" => {
                need(c, row, "headcount", kind).or_else(|| need(c, row, "on_time", kind))
            }
            "UTILITY" => need(c, row, "utility_kind", kind).or_else(|| need(c, row, "usage", kind)),
            "RENT" => need(c, row, "amount", kind).or_else(|| need(c, row, "on_time", kind)),
            _ => None,
        },
        Table::BureauRecords => match kind {
            "DEBT_BALANCE" => need(c, row, "amount", kind),
            "INQUIRY" => need(c, row, "purpose", kind),
            _ => None,
        },
        Table::Merchants => match c.str("custody_mode", row) {
            Some(mode @ ("RISK_RESERVE" | "PERFORMANCE_BOND"))
                if !c.present("guarantee_amount", row) =>
            {
                Some(Rejection::new(
                    Reason::MissingField,
                    "guarantee_amount",
                    format!("required for custody mode {mode}"),
                ))
            }
            _ => None,
        },
        Table::Loans => match kind {
            "STATUS" => need(c, row, "dpd", kind),
            "DISBURSEMENT" => {
                need(c, row, "amount", kind).or_else(|| need(c, row, "term_months", kind))
            }
            _ => need(c, row, "amount", kind),
        },
        Table::Contracts => {
            let signed_day = c.ts("ts", row).map(yuanxin_domain::business_day_of_ms);
            match (signed_day, c.date("expires_on", row)) {
                (Some(s), Some(e)) if i64::from(e) < s => Some(Rejection::new(
                    Reason::Inconsistent,
                    "expires_on",
                    "contract expires before it was signed",
                )),
                _ => None,
            }
        }
        Table::Products => match c.int("units", row) {
            Some(0) => Some(Rejection::new(
                Reason::OutOfRange,
                "units",
                "a product sells at least one unit",
            )),
            _ => None,
        },
        _ => None,
    }
}
