//! Generated rows, stored column by column as they are produced (so that a chunk of the
//! city costs a few bytes per value, not an allocation per value), and converted to Arrow
//! batches of the source schemas.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::error::ArrowError;
use yuanxin_domain::TZ_NAME;
use yuanxin_ledger::schema::{ColType, MONEY_PRECISION, RATIO_PRECISION, RATIO_SCALE};
use yuanxin_ledger::Table;

/// One generated value. Money is in fen (or, for injected faults, in ten-thousandths of a
/// yuan), never a float.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// Empty.
    N,
    /// Text or id.
    S(String),
    /// A code or other static text.
    C(&'static str),
    /// The id of the merchant whose rows these are.
    Mid,
    /// An event id: `{prefix}-{merchant id}-{sequence}`.
    Eid(&'static str, u32),
    /// Money in fen.
    M(i64),
    /// Money in ten-thousandths of a yuan (over-precise amounts of injected faults).
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

#[derive(Debug, Clone)]
enum ColBuf {
    Str {
        data: Vec<u8>,
        offsets: Vec<i32>,
        valid: Vec<bool>,
    },
    /// Money in ten-thousandths of a yuan, ratios in basis points.
    Dec {
        vals: Vec<i128>,
        valid: Vec<bool>,
    },
    /// Counts and timestamps.
    I64 {
        vals: Vec<i64>,
        valid: Vec<bool>,
    },
    Bool {
        vals: Vec<bool>,
        valid: Vec<bool>,
    },
    Date {
        vals: Vec<i32>,
        valid: Vec<bool>,
    },
}

/// The rows of one table, column by column.
#[derive(Debug, Clone)]
pub struct TableRows {
    /// Which table.
    pub table: Table,
    len: usize,
    cols: Vec<ColBuf>,
}

impl TableRows {
    /// An empty buffer for a table.
    pub fn new(table: Table) -> TableRows {
        let cols = table
            .columns()
            .iter()
            .map(|c| match c.ty {
                ColType::Id
                | ColType::Text
                | ColType::Code(_)
                | ColType::KindCode
                | ColType::Uscc => ColBuf::Str {
                    data: Vec::new(),
                    offsets: vec![0],
                    valid: Vec::new(),
                },
                ColType::Money | ColType::Ratio => ColBuf::Dec {
                    vals: Vec::new(),
                    valid: Vec::new(),
                },
                ColType::Count | ColType::Timestamp => ColBuf::I64 {
                    vals: Vec::new(),
                    valid: Vec::new(),
                },
                ColType::Bool => ColBuf::Bool {
                    vals: Vec::new(),
                    valid: Vec::new(),
                },
                ColType::Date => ColBuf::Date {
                    vals: Vec::new(),
                    valid: Vec::new(),
                },
            })
            .collect();
        TableRows {
            table,
            len: 0,
            cols,
        }
    }

    /// Number of rows.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends a row given in column order; `Mid` and `Eid` expand with `merchant`.
    pub fn push(&mut self, row: &[Val], merchant: &str) {
        for (k, col) in self.cols.iter_mut().enumerate() {
            let v = row.get(k).unwrap_or(&Val::N);
            match col {
                ColBuf::Str {
                    data,
                    offsets,
                    valid,
                } => {
                    let ok = match v {
                        Val::S(s) => {
                            data.extend_from_slice(s.as_bytes());
                            true
                        }
                        Val::C(s) => {
                            data.extend_from_slice(s.as_bytes());
                            true
                        }
                        Val::Mid => {
                            data.extend_from_slice(merchant.as_bytes());
                            true
                        }
                        Val::Eid(prefix, seq) => write!(data, "{prefix}-{merchant}-{seq}").is_ok(),
                        _ => false,
                    };
                    offsets.push(i32::try_from(data.len()).unwrap_or(i32::MAX));
                    valid.push(ok);
                }
                ColBuf::Dec { vals, valid } => {
                    let x = match v {
                        Val::M(f) => Some(i128::from(*f) * 100),
                        Val::MoneyExact(x) | Val::R(x) => Some(i128::from(*x)),
                        _ => None,
                    };
                    vals.push(x.unwrap_or(0));
                    valid.push(x.is_some());
                }
                ColBuf::I64 { vals, valid } => {
                    let x = match v {
                        Val::I(x) | Val::T(x) => Some(*x),
                        _ => None,
                    };
                    vals.push(x.unwrap_or(0));
                    valid.push(x.is_some());
                }
                ColBuf::Bool { vals, valid } => {
                    let x = match v {
                        Val::B(x) => Some(*x),
                        _ => None,
                    };
                    vals.push(x.unwrap_or(false));
                    valid.push(x.is_some());
                }
                ColBuf::Date { vals, valid } => {
                    let x = match v {
                        Val::D(x) => Some(*x),
                        _ => None,
                    };
                    vals.push(x.unwrap_or(0));
                    valid.push(x.is_some());
                }
            }
        }
        self.len += 1;
    }

    /// Appends row `i` of another buffer of the same table.
    pub fn copy_row(&mut self, other: &TableRows, i: usize) {
        for (mine, theirs) in self.cols.iter_mut().zip(&other.cols) {
            match (mine, theirs) {
                (
                    ColBuf::Str {
                        data,
                        offsets,
                        valid,
                    },
                    ColBuf::Str {
                        data: d,
                        offsets: o,
                        valid: v,
                    },
                ) => {
                    let (a, b) = (o[i] as usize, o[i + 1] as usize);
                    data.extend_from_slice(&d[a..b]);
                    offsets.push(i32::try_from(data.len()).unwrap_or(i32::MAX));
                    valid.push(v[i]);
                }
                (ColBuf::Dec { vals, valid }, ColBuf::Dec { vals: x, valid: v }) => {
                    vals.push(x[i]);
                    valid.push(v[i]);
                }
                (ColBuf::I64 { vals, valid }, ColBuf::I64 { vals: x, valid: v }) => {
                    vals.push(x[i]);
                    valid.push(v[i]);
                }
                (ColBuf::Bool { vals, valid }, ColBuf::Bool { vals: x, valid: v }) => {
                    vals.push(x[i]);
                    valid.push(v[i]);
                }
                (ColBuf::Date { vals, valid }, ColBuf::Date { vals: x, valid: v }) => {
                    vals.push(x[i]);
                    valid.push(v[i]);
                }
                _ => {}
            }
        }
        self.len += 1;
    }

    /// Moves every row of another buffer of the same table to the end of this one.
    pub fn append(&mut self, other: TableRows) {
        for (mine, theirs) in self.cols.iter_mut().zip(other.cols) {
            match (mine, theirs) {
                (
                    ColBuf::Str {
                        data,
                        offsets,
                        valid,
                    },
                    ColBuf::Str {
                        data: d,
                        offsets: o,
                        valid: v,
                    },
                ) => {
                    let base = i32::try_from(data.len()).unwrap_or(i32::MAX);
                    data.extend_from_slice(&d);
                    offsets.extend(o.iter().skip(1).map(|x| x.saturating_add(base)));
                    valid.extend(v);
                }
                (ColBuf::Dec { vals, valid }, ColBuf::Dec { vals: x, valid: v }) => {
                    vals.extend(x);
                    valid.extend(v);
                }
                (ColBuf::I64 { vals, valid }, ColBuf::I64 { vals: x, valid: v }) => {
                    vals.extend(x);
                    valid.extend(v);
                }
                (ColBuf::Bool { vals, valid }, ColBuf::Bool { vals: x, valid: v }) => {
                    vals.extend(x);
                    valid.extend(v);
                }
                (ColBuf::Date { vals, valid }, ColBuf::Date { vals: x, valid: v }) => {
                    vals.extend(x);
                    valid.extend(v);
                }
                _ => {}
            }
        }
        self.len += other.len;
    }

    /// Row `i` as values (for fault injection, which spoils copies of rows).
    pub fn row(&self, i: usize) -> Vec<Val> {
        self.cols
            .iter()
            .zip(self.table.columns())
            .map(|(col, spec)| match col {
                ColBuf::Str {
                    data,
                    offsets,
                    valid,
                } => {
                    if valid[i] {
                        let (a, b) = (offsets[i] as usize, offsets[i + 1] as usize);
                        Val::S(String::from_utf8_lossy(&data[a..b]).into_owned())
                    } else {
                        Val::N
                    }
                }
                ColBuf::Dec { vals, valid } if valid[i] => match spec.ty {
                    ColType::Money if vals[i] % 100 == 0 => {
                        Val::M(i64::try_from(vals[i] / 100).unwrap_or(0))
                    }
                    ColType::Money => Val::MoneyExact(i64::try_from(vals[i]).unwrap_or(0)),
                    _ => Val::R(i64::try_from(vals[i]).unwrap_or(0)),
                },
                ColBuf::I64 { vals, valid } if valid[i] => match spec.ty {
                    ColType::Timestamp => Val::T(vals[i]),
                    _ => Val::I(vals[i]),
                },
                ColBuf::Bool { vals, valid } if valid[i] => Val::B(vals[i]),
                ColBuf::Date { vals, valid } if valid[i] => Val::D(vals[i]),
                _ => Val::N,
            })
            .collect()
    }

    /// The Arrow batch of these rows, with money at `money_scale` decimals (2 for a clean
    /// export, 4 when faults are injected).
    pub fn into_batch(self, money_scale: i8) -> Result<RecordBatch, ArrowError> {
        let schema = self.table.source_schema(money_scale);
        let nulls = |valid: Vec<bool>| -> Option<NullBuffer> {
            (!valid.iter().all(|v| *v)).then(|| NullBuffer::from(valid))
        };
        let mut out: Vec<ArrayRef> = Vec::with_capacity(self.cols.len());
        for (col, spec) in self.cols.into_iter().zip(self.table.columns()) {
            let array: ArrayRef = match col {
                ColBuf::Str {
                    data,
                    offsets,
                    valid,
                } => Arc::new(StringArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    Buffer::from_vec(data),
                    nulls(valid),
                )?),
                ColBuf::Dec { vals, valid } => {
                    let (values, precision, scale) = match spec.ty {
                        ColType::Money => {
                            let div =
                                10i128.pow(u32::try_from(4 - money_scale.clamp(0, 4)).unwrap_or(0));
                            (
                                vals.iter().map(|v| v / div).collect::<Vec<_>>(),
                                MONEY_PRECISION,
                                money_scale,
                            )
                        }
                        _ => (vals, RATIO_PRECISION, RATIO_SCALE),
                    };
                    Arc::new(
                        Decimal128Array::try_new(ScalarBuffer::from(values), nulls(valid))?
                            .with_precision_and_scale(precision, scale)?,
                    )
                }
                ColBuf::I64 { vals, valid } => match spec.ty {
                    ColType::Timestamp => Arc::new(
                        TimestampMillisecondArray::try_new(ScalarBuffer::from(vals), nulls(valid))?
                            .with_timezone(TZ_NAME),
                    ),
                    _ => Arc::new(Int64Array::try_new(ScalarBuffer::from(vals), nulls(valid))?),
                },
                ColBuf::Bool { vals, valid } => {
                    Arc::new(BooleanArray::new(vals.into_iter().collect(), nulls(valid)))
                }
                ColBuf::Date { vals, valid } => Arc::new(Date32Array::try_new(
                    ScalarBuffer::from(vals),
                    nulls(valid),
                )?),
            };
            out.push(array);
        }
        RecordBatch::try_new(schema, out)
    }
}

/// Generated rows of every table.
#[derive(Debug, Clone)]
pub struct Rows {
    /// Per table (indexed like `Table::ALL`).
    pub tables: Vec<TableRows>,
}

impl Default for Rows {
    fn default() -> Self {
        Rows {
            tables: Table::ALL.iter().map(|t| TableRows::new(*t)).collect(),
        }
    }
}

impl Rows {
    /// Appends a row to a table; `merchant` expands `Val::Mid` and `Val::Eid`.
    pub fn push(&mut self, table: Table, row: &[Val], merchant: &str) {
        if let Some(t) = self.tables.get_mut(table as usize) {
            t.push(row, merchant);
        }
    }

    /// Moves all rows of another buffer to the end of this one.
    pub fn append(&mut self, other: Rows) {
        for (a, b) in self.tables.iter_mut().zip(other.tables) {
            a.append(b);
        }
    }
}
