//! Column buffers for generated rows, converted to Arrow batches of the source schemas.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::error::ArrowError;
use yuanxin_domain::TZ_NAME;
use yuanxin_ledger::schema::{ColType, MONEY_PRECISION, RATIO_PRECISION, RATIO_SCALE};
use yuanxin_ledger::Table;

/// One generated value. Money is in fen (or, for injected faults, in ten-thousandths of a
/// yuan: see `MoneyExact`), never a float.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// Empty.
    N,
    /// Text, id or code.
    S(String),
    /// Money in fen.
    M(i64),
    /// Money with four decimals (ten-thousandths of a yuan), used only by fault injection
    /// to write over-precise amounts.
    MoneyExact(i64),
    /// A ratio in basis points (1 = 0.0001).
    R(i64),
    /// A count.
    I(i64),
    /// A flag.
    B(bool),
    /// An instant, ms since the epoch.
    T(i64),
    /// A date, days since 1970-01-01.
    D(i32),
}

/// Generated rows of every table, in column order of the source schemas.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    /// Per table (indexed like `Table::ALL`), the rows.
    pub tables: [Vec<Vec<Val>>; 11],
}

impl Rows {
    /// Appends a row to a table.
    pub fn push(&mut self, table: Table, row: Vec<Val>) {
        self.tables[table as usize].push(row);
    }

    /// Appends all rows of another buffer.
    pub fn append(&mut self, other: &mut Rows) {
        for (a, b) in self.tables.iter_mut().zip(other.tables.iter_mut()) {
            a.append(b);
        }
    }
}

/// Builds the Arrow batch of a table's rows, with money at `money_scale` decimals (2 for a
/// clean export, 4 when faults are injected).
pub fn to_batch(
    table: Table,
    rows: &[Vec<Val>],
    money_scale: i8,
) -> Result<RecordBatch, ArrowError> {
    let schema = table.source_schema(money_scale);
    let money_factor: i128 = if money_scale >= 2 {
        10i128.pow(u32::try_from(money_scale - 2).unwrap_or(0))
    } else {
        1
    };
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(table.columns().len());
    for (i, spec) in table.columns().iter().enumerate() {
        let cell = |r: &Vec<Val>| r.get(i).cloned().unwrap_or(Val::N);
        let col: ArrayRef = match spec.ty {
            ColType::Id | ColType::Text | ColType::Code(_) | ColType::KindCode | ColType::Uscc => {
                Arc::new(StringArray::from_iter(rows.iter().map(
                    |r| match r.get(i) {
                        Some(Val::S(s)) => Some(s.as_str()),
                        _ => None,
                    },
                )))
            }
            ColType::Money => Arc::new(
                Decimal128Array::from_iter(rows.iter().map(|r| match cell(r) {
                    Val::M(f) => Some(i128::from(f) * money_factor),
                    Val::MoneyExact(x) => Some(i128::from(x) * money_factor / 100),
                    _ => None,
                }))
                .with_precision_and_scale(MONEY_PRECISION, money_scale)?,
            ),
            ColType::Ratio => Arc::new(
                Decimal128Array::from_iter(rows.iter().map(|r| match r.get(i) {
                    Some(Val::R(bp)) => Some(i128::from(*bp)),
                    _ => None,
                }))
                .with_precision_and_scale(RATIO_PRECISION, RATIO_SCALE)?,
            ),
            ColType::Count => {
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| match r.get(i) {
                    Some(Val::I(x)) => Some(*x),
                    _ => None,
                })))
            }
            ColType::Bool => Arc::new(BooleanArray::from_iter(rows.iter().map(
                |r| match r.get(i) {
                    Some(Val::B(x)) => Some(*x),
                    _ => None,
                },
            ))),
            ColType::Timestamp => Arc::new(
                TimestampMillisecondArray::from_iter(rows.iter().map(|r| match r.get(i) {
                    Some(Val::T(x)) => Some(*x),
                    _ => None,
                }))
                .with_timezone(TZ_NAME),
            ),
            ColType::Date => Arc::new(Date32Array::from_iter(rows.iter().map(
                |r| match r.get(i) {
                    Some(Val::D(x)) => Some(*x),
                    _ => None,
                },
            ))),
        };
        cols.push(col);
    }
    RecordBatch::try_new(schema, cols)
}
