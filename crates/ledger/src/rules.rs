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
