//! Typed access to the ledger's Arrow columns, and which columns each table is read with.

use super::*;

pub(super) fn strs<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a arrow::array::StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
}

pub(super) fn opt_str(a: Option<&arrow::array::StringArray>, i: usize) -> Option<&str> {
    a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
}

/// A text column as the ledger gives it: plain strings, or (where the file stores it
/// dictionary-encoded) integer keys into a short list of strings.
pub(super) enum Text<'a> {
    Plain(&'a arrow::array::StringArray),
    Dict(
        &'a arrow::array::PrimitiveArray<Int32Type>,
        &'a arrow::array::StringArray,
    ),
    Absent,
}

impl<'a> Text<'a> {
    pub(super) fn of(b: &'a RecordBatch, name: &str) -> Text<'a> {
        let Some(c) = b.column_by_name(name) else {
            return Text::Absent;
        };
        if let Some(s) = c.as_string_opt::<i32>() {
            return Text::Plain(s);
        }
        match c.as_dictionary_opt::<Int32Type>() {
            Some(d) => match d.values().as_string_opt::<i32>() {
                Some(v) => Text::Dict(d.keys(), v),
                None => Text::Absent,
            },
            None => Text::Absent,
        }
    }

    /// `f` of every row's value (`None` for null).
    pub(super) fn map<T: Copy>(&self, n: usize, f: impl FnMut(Option<&str>) -> T) -> Vec<T> {
        self.values(0..n, true, f)
    }

    /// `f` of the value at each of `rows` (in their order), for the rows of one chunk.
    pub(super) fn at<T: Copy>(&self, rows: &Rows, f: impl FnMut(Option<&str>) -> T) -> Vec<T> {
        self.values(rows.iter().map(|r| r.0), true, f)
    }

    /// [`Text::at`] for columns whose neighbours rarely repeat (ids): no run check.
    pub(super) fn at_each<T: Copy>(&self, rows: &Rows, f: impl FnMut(Option<&str>) -> T) -> Vec<T> {
        self.values(rows.iter().map(|r| r.0), false, f)
    }

    /// `f` of the value of each row in `rows` (`None` for null or out of range). A
    /// dictionary column calls `f` once per distinct value; a plain one, with `runs`, once
    /// per run of equal values (rows of a merchant, or of a kind, come in runs).
    pub(super) fn values<T: Copy>(
        &self,
        rows: impl ExactSizeIterator<Item = usize>,
        runs: bool,
        mut f: impl FnMut(Option<&str>) -> T,
    ) -> Vec<T> {
        match self {
            Text::Absent => vec![f(None); rows.len()],
            Text::Plain(a) => {
                let mut out = Vec::with_capacity(rows.len());
                let mut prev: Option<(Option<&str>, T)> = None;
                for i in rows {
                    let v = (i < a.len() && !a.is_null(i)).then(|| a.value(i));
                    let t = match prev {
                        Some((p, t)) if runs && p == v => t,
                        _ => {
                            let t = f(v);
                            prev = Some((v, t));
                            t
                        }
                    };
                    out.push(t);
                }
                out
            }
            Text::Dict(keys, values) => {
                let none = f(None);
                let table: Vec<T> = (0..values.len())
                    .map(|j| f((!values.is_null(j)).then(|| values.value(j))))
                    .collect();
                rows.map(|i| {
                    if i >= keys.len() || keys.is_null(i) {
                        none
                    } else {
                        usize::try_from(keys.value(i))
                            .ok()
                            .and_then(|k| table.get(k).copied())
                            .unwrap_or(none)
                    }
                })
                .collect()
            }
        }
    }
}

pub(super) type Decs = arrow::array::Decimal128Array;
pub(super) type Ints = arrow::array::Int64Array;
pub(super) type Dates = arrow::array::Date32Array;
pub(super) type Bools = arrow::array::BooleanArray;

pub(super) fn decs<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Decs> {
    b.column_by_name(name)?.as_primitive_opt::<Decimal128Type>()
}

pub(super) fn ints<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Ints> {
    b.column_by_name(name)?.as_primitive_opt::<Int64Type>()
}

pub(super) fn dates<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Dates> {
    b.column_by_name(name)?.as_primitive_opt::<Date32Type>()
}

pub(super) fn bools<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Bools> {
    b.column_by_name(name)?.as_boolean_opt()
}

/// A decimal's mantissa (fen for money, basis points for ratios).
pub(super) fn dec_at(a: Option<&Decs>, i: usize) -> Option<i64> {
    a.and_then(|a| (!a.is_null(i)).then(|| i64::try_from(a.value(i)).unwrap_or(i64::MAX)))
}

pub(super) fn int_at(a: Option<&Ints>, i: usize) -> Option<i64> {
    a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
}

pub(super) fn date_at(a: Option<&Dates>, i: usize) -> Option<i32> {
    a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
}

pub(super) fn bool_at(a: Option<&Bools>, i: usize) -> Option<bool> {
    a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
}

pub(super) fn date(b: &RecordBatch, name: &str, i: usize) -> Option<i32> {
    let a = b.column_by_name(name)?.as_primitive_opt::<Date32Type>()?;
    (!a.is_null(i)).then(|| a.value(i))
}

pub(super) fn days(b: &RecordBatch) -> Vec<i32> {
    b.column_by_name("ts")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .map(|a| (0..a.len()).map(|i| day_of_ms(a.value(i))).collect())
        .unwrap_or_default()
}

/// Escrow columns; contract ids (the largest column) last, so that they can be left out.
pub(super) const ESCROW_COLUMNS: &[&str] = &[
    "merchant_id",
    "ts",
    "kind",
    "code",
    "amount",
    "frozen_amount",
    "contract_id",
];

/// Escrow columns when no characteristic needs contract ids.
pub(super) const ESCROW_WITHOUT_CONTRACTS: &[&str] =
    ESCROW_COLUMNS.split_at(ESCROW_COLUMNS.len() - 1).0;

/// The columns features read from each table.
pub(super) fn columns_of(table: Table) -> &'static [&'static str] {
    match table {
        Table::EscrowEvents => ESCROW_COLUMNS,
        Table::WalletFlows => &[
            "merchant_id",
            "ts",
            "kind",
            "amount",
            "dest_account_changed",
        ],
        Table::Contracts => &[
            "merchant_id",
            "ts",
            "expires_on",
            "discount",
            "paid_amount",
            "consumer_id",
        ],
        Table::Operations => &[
            "merchant_id",
            "ts",
            "kind",
            "amount",
            "utility_kind",
            "headcount",
            "on_time",
            "usage",
        ],
        Table::Promotions => &["merchant_id", "ts", "discount", "bonus", "tenor_days"],
        Table::Complaints => &["merchant_id", "ts", "channel", "category"],
        Table::PublicRecords => &["merchant_id", "ts", "kind", "amount"],
        Table::BureauRecords => &["merchant_id", "ts", "kind", "amount", "purpose"],
        Table::Loans => &["merchant_id", "ts", "kind", "amount", "dpd", "loan_id"],
        Table::StoreEvents => &[
            "merchant_id",
            "ts",
            "kind",
            "lease_end_on",
            "store_id",
            "announced_days_ahead",
        ],
        Table::Merchants | Table::Products => &["merchant_id", "ts"],
    }
}
