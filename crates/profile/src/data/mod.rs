//! The ledger, loaded as compact per-merchant event lists sorted by business day.
//!
//! Only this module reads the ledger (through `yuanxin_ledger::Ledger`, which alone knows
//! its layout). Amounts stay integers in fen; codes become small integers.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    Date32Type, Decimal128Type, Int32Type, Int64Type, TimestampMillisecondType,
};
use yuanxin_ledger::{FileReader, Ledger, Table};

use crate::ProfileError;

mod columns;
mod events;
mod hash;
mod load;
mod parse;
mod threads;

use columns::*;
pub(crate) use events::*;
pub(crate) use hash::*;
pub(crate) use load::*;
use parse::*;
use threads::*;
