//! Converting an input batch of any accepted physical layout into the ledger's canonical
//! columns, one rejection (at most) per row.
//!
//! Parquet files may carry decimals of any scale, integers, timestamps of any unit, with or
//! without zone; CSV files carry text. Every value is converted exactly or the row is
//! rejected: nothing is rounded, truncated or defaulted on the way in.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use yuanxin_domain::{Uscc, SHANGHAI_OFFSET_SECS, TZ_NAME};

use crate::reason::{Reason, Rejection};
use crate::schema::{ColType, Column, MONEY_PRECISION, RATIO_PRECISION, RATIO_SCALE};

const MS_PER_DAY: i64 = 86_400_000;
const LOCAL_OFFSET_MS: i64 = SHANGHAI_OFFSET_SECS as i64 * 1000;
/// 2000-01-01 00:00 Asia/Shanghai, in ms since the epoch: nothing older is plausible.
pub(crate) const MIN_TS_MS: i64 = 946_684_800_000 - LOCAL_OFFSET_MS;
/// Dates from 1949-10-01 ...
const MIN_DATE: i32 = -7397;
/// ... to 2100-12-31.
const MAX_DATE: i32 = 47_846;
/// Largest money magnitude in fen: 10^18 − 1 fits Decimal128(18, 2).
const MAX_FEN: i128 = 999_999_999_999_999_999;
/// Longest free text accepted.
const MAX_TEXT: usize = 1000;

/// Whether an input column of `data_type` can feed a ledger column of type `ty`. Types that
/// could only convert lossily (binary floats for money, say) make the whole file's schema
/// wrong rather than silently approximating.
pub(crate) fn compatible(ty: ColType, data_type: &DataType) -> bool {
    if matches!(data_type, DataType::Null) || is_text(data_type) {
        return true;
    }
    match ty {
        ColType::Id | ColType::Text | ColType::Code(_) | ColType::KindCode | ColType::Uscc => false,
        ColType::Money | ColType::Ratio => {
            matches!(data_type, DataType::Decimal128(_, _)) || data_type.is_integer()
        }
        ColType::Count => data_type.is_integer(),
        ColType::Bool => matches!(data_type, DataType::Boolean),
        ColType::Timestamp => matches!(data_type, DataType::Timestamp(_, _)),
        ColType::Date => matches!(data_type, DataType::Date32 | DataType::Date64),
    }
}

fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

/// Context of a conversion.
pub(crate) struct Ctx<'a> {
    /// Latest acceptable event time (ms): the batch's knowledge time plus a day of clock skew.
    pub max_ts_ms: i64,
    /// Per-row first rejection; conversion fills empty slots only.
    pub rejections: &'a mut [Option<Rejection>],
}

impl Ctx<'_> {
    fn reject(&mut self, row: usize, rejection: Rejection) {
        if let Some(slot) = self.rejections.get_mut(row) {
            if slot.is_none() {
                *slot = Some(rejection);
            }
        }
    }
}

/// Converts one input column (or its absence) into the canonical ledger array for `spec`.
pub(crate) fn convert(
    spec: &Column,
    input: Option<&ArrayRef>,
    rows: usize,
    ctx: &mut Ctx<'_>,
) -> Result<ArrayRef, String> {
    let input = match input {
        Some(a) if !matches!(a.data_type(), DataType::Null) => a,
        _ => {
            if spec.required {
                for row in 0..rows {
                    ctx.reject(
                        row,
                        Rejection::new(Reason::MissingField, spec.name, "empty"),
                    );
                }
            }
            return Ok(arrow::array::new_null_array(&canonical_type(spec.ty), rows));
        }
    };
    if let Some(out) = fast_path(spec, input, ctx) {
        return Ok(out);
    }
    let out: ArrayRef = match spec.ty {
        ColType::Id | ColType::Text | ColType::Code(_) | ColType::KindCode | ColType::Uscc => {
            Arc::new(convert_text(spec, input, ctx)?)
        }
        ColType::Money => Arc::new(convert_decimal(spec, input, ctx, 2, MONEY_PRECISION)?),
        ColType::Ratio => Arc::new(convert_decimal(
            spec,
            input,
            ctx,
            RATIO_SCALE,
            RATIO_PRECISION,
        )?),
        ColType::Count => Arc::new(convert_count(spec, input, ctx)?),
        ColType::Bool => Arc::new(convert_bool(spec, input, ctx)?),
        ColType::Timestamp => Arc::new(convert_ts(spec, input, ctx)?),
        ColType::Date => Arc::new(convert_date(spec, input, ctx)?),
    };
    Ok(out)
}

/// When the input already has the ledger's physical type and every value passes, the
/// input array is the output (Arrow arrays are shared, not copied): the common case of a
/// clean Parquet export costs one pass of checks per column. Returns `None` when the
/// general path must run (other types, or some value to convert or reject).
fn fast_path(spec: &Column, input: &ArrayRef, ctx: &mut Ctx<'_>) -> Option<ArrayRef> {
    let required = spec.required;
    let ok_nulls = |a: &dyn Array| !required || a.null_count() == 0;
    match (spec.ty, input.data_type()) {
        (
            ColType::Id | ColType::Code(_) | ColType::KindCode | ColType::Uscc | ColType::Text,
            DataType::Utf8,
        ) => {
            let a = input.as_string::<i32>();
            if !ok_nulls(a) {
                return None;
            }
            let clean = a.iter().flatten().all(|t| {
                !t.is_empty()
                    && t.trim().len() == t.len()
                    && match spec.ty {
                        ColType::Id => yuanxin_domain::is_valid_id(t),
                        ColType::Code(list) => list.contains(t),
                        ColType::Uscc => Uscc::parse(t).is_ok(),
                        ColType::Text => t.chars().count() <= MAX_TEXT,
                        _ => true,
                    }
            });
            clean.then(|| input.clone())
        }
        (ColType::Money | ColType::Ratio, DataType::Decimal128(_, s)) => {
            let (scale, precision, max) = match spec.ty {
                ColType::Money => (2, MONEY_PRECISION, MAX_FEN),
                _ => (RATIO_SCALE, RATIO_PRECISION, 10_000),
            };
            if *s != scale {
                return None;
            }
            let a = input.as_primitive::<Decimal128Type>();
            let clean = ok_nulls(a) && a.iter().flatten().all(|v| (0..=max).contains(&v));
            if !clean {
                return None;
            }
            a.clone()
                .with_precision_and_scale(precision, scale)
                .ok()
                .map(|a| Arc::new(a) as ArrayRef)
        }
        (ColType::Count, DataType::Int64) => {
            let a = input.as_primitive::<Int64Type>();
            (ok_nulls(a) && a.iter().flatten().all(|v| v >= 0)).then(|| input.clone())
        }
        (ColType::Bool, DataType::Boolean) => ok_nulls(input.as_ref()).then(|| input.clone()),
        (ColType::Timestamp, DataType::Timestamp(TimeUnit::Millisecond, Some(_))) => {
            let a = input.as_primitive::<TimestampMillisecondType>();
            let max = ctx.max_ts_ms;
            let clean = ok_nulls(a) && a.iter().flatten().all(|v| (MIN_TS_MS..=max).contains(&v));
            clean.then(|| Arc::new(a.clone().with_timezone(TZ_NAME)) as ArrayRef)
        }
        (ColType::Date, DataType::Date32) => {
            let a = input.as_primitive::<Date32Type>();
            let clean = ok_nulls(a)
                && a.iter()
                    .flatten()
                    .all(|v| (MIN_DATE..=MAX_DATE).contains(&v));
            clean.then(|| input.clone())
        }
        _ => None,
    }
}

fn canonical_type(ty: ColType) -> DataType {
    match ty {
        ColType::Id | ColType::Text | ColType::Code(_) | ColType::KindCode | ColType::Uscc => {
            DataType::Utf8
        }
        ColType::Money => DataType::Decimal128(MONEY_PRECISION, 2),
        ColType::Ratio => DataType::Decimal128(RATIO_PRECISION, RATIO_SCALE),
        ColType::Count => DataType::Int64,
        ColType::Bool => DataType::Boolean,
        ColType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some(TZ_NAME.into())),
        ColType::Date => DataType::Date32,
    }
}

fn as_utf8(input: &ArrayRef) -> Result<ArrayRef, String> {
    if matches!(input.data_type(), DataType::Utf8) {
        Ok(input.clone())
    } else {
        arrow::compute::cast(input, &DataType::Utf8).map_err(|e| e.to_string())
    }
}

/// Trims text; empty text is a missing value.
fn text_at(strings: &StringArray, row: usize) -> Option<&str> {
    if strings.is_null(row) {
        return None;
    }
    let t = strings.value(row).trim();
    (!t.is_empty()).then_some(t)
}

fn missing(spec: &Column, row: usize, ctx: &mut Ctx<'_>) {
    if spec.required {
        ctx.reject(
            row,
            Rejection::new(Reason::MissingField, spec.name, "empty"),
        );
    }
}

fn convert_text(spec: &Column, input: &ArrayRef, ctx: &mut Ctx<'_>) -> Result<StringArray, String> {
    let utf8 = as_utf8(input)?;
    let strings = utf8.as_string::<i32>();
    let mut out: Vec<Option<&str>> = Vec::with_capacity(strings.len());
    for row in 0..strings.len() {
        let Some(text) = text_at(strings, row) else {
            missing(spec, row, ctx);
            out.push(None);
            continue;
        };
        let problem = match spec.ty {
            ColType::Id => (!yuanxin_domain::is_valid_id(text)).then(|| {
                Rejection::new(
                    Reason::InvalidId,
                    spec.name,
                    format!("{text:?} is not 1–64 characters of [A-Za-z0-9._-]"),
                )
            }),
            ColType::Code(list) => (!list.contains(text)).then(|| {
                Rejection::new(
                    Reason::UnknownCode,
                    spec.name,
                    format!("{text:?} is not a valid {} code", list.what),
                )
            }),
            ColType::Uscc => Uscc::parse(text)
                .err()
                .map(|e| Rejection::new(Reason::InvalidCreditCode, spec.name, e.to_string())),
            ColType::Text => (text.chars().count() > MAX_TEXT).then(|| {
                Rejection::new(
                    Reason::OutOfRange,
                    spec.name,
                    "text longer than 1000 characters",
                )
            }),
            _ => None,
        };
        if let Some(p) = problem {
            ctx.reject(row, p);
        }
        out.push(Some(text));
    }
    Ok(StringArray::from(out))
}

/// Rescales an integer mantissa at `from` scale to `to` scale, if exact.
fn rescale(mantissa: i128, from: i8, to: i8) -> Option<i128> {
    if from <= to {
        let factor = 10i128.checked_pow(u32::try_from(to - from).ok()?)?;
        mantissa.checked_mul(factor)
    } else {
        let factor = 10i128.checked_pow(u32::try_from(from - to).ok()?)?;
        (mantissa % factor == 0).then(|| mantissa / factor)
    }
}

fn decimal_from_text(text: &str) -> Option<Decimal> {
    let plain = text
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+')));
    if !plain {
        return None;
    }
    Decimal::from_str(text).ok()
}

/// Money (scale 2) and ratios (scale 4) share one path: an exact rescale, then range rules.
fn convert_decimal(
    spec: &Column,
    input: &ArrayRef,
    ctx: &mut Ctx<'_>,
    scale: i8,
    precision: u8,
) -> Result<Decimal128Array, String> {
    let n = input.len();
    let mut out: Vec<Option<i128>> = Vec::with_capacity(n);
    // (mantissa, scale) per row, or None for missing, before range rules.
    let raw: Vec<Option<Result<(i128, i8), Reason>>> = match input.data_type() {
        DataType::Decimal128(_, s) => {
            let s = *s;
            let arr = input.as_primitive::<Decimal128Type>();
            (0..n)
                .map(|r| (!arr.is_null(r)).then(|| Ok((arr.value(r), s))))
                .collect()
        }
        dt if dt.is_integer() => {
            let cast = arrow::compute::cast(input, &DataType::Int64).map_err(|e| e.to_string())?;
            let arr = cast.as_primitive::<Int64Type>();
            (0..n)
                .map(|r| (!arr.is_null(r)).then(|| Ok((i128::from(arr.value(r)), 0))))
                .collect()
        }
        _ => {
            let utf8 = as_utf8(input)?;
            let strings = utf8.as_string::<i32>();
            (0..n)
                .map(|r| {
                    text_at(strings, r).map(|t| match decimal_from_text(t) {
                        Some(d) => {
                            let d = d.normalize();
                            // `scale()` is at most 28, so it fits in i8.
                            Ok((d.mantissa(), i8::try_from(d.scale()).unwrap_or(i8::MAX)))
                        }
                        None => Err(Reason::TypeError),
                    })
                })
                .collect()
        }
    };
    let is_money = matches!(spec.ty, ColType::Money);
    for (row, value) in raw.into_iter().enumerate() {
        let value = match value {
            None => {
                missing(spec, row, ctx);
                out.push(None);
                continue;
            }
            Some(Err(reason)) => {
                ctx.reject(
                    row,
                    Rejection::new(reason, spec.name, "not a plain decimal number"),
                );
                out.push(None);
                continue;
            }
            Some(Ok(v)) => v,
        };
        let (mantissa, from) = value;
        let Some(m) = rescale(mantissa, from, scale) else {
            let (reason, what) = if is_money {
                (Reason::AmountPrecision, "more than 2 decimal places")
            } else {
                (Reason::OutOfRange, "more than 4 decimal places")
            };
            ctx.reject(row, Rejection::new(reason, spec.name, what));
            out.push(None);
            continue;
        };
        let problem = if m < 0 {
            Some(if is_money {
                Rejection::new(Reason::NegativeAmount, spec.name, "amount below zero")
            } else {
                Rejection::new(Reason::OutOfRange, spec.name, "ratio below 0")
            })
        } else if is_money && m > MAX_FEN {
            Some(Rejection::new(
                Reason::OutOfRange,
                spec.name,
                "amount too large",
            ))
        } else if !is_money && m > 10_000 {
            Some(Rejection::new(
                Reason::OutOfRange,
                spec.name,
                "ratio above 1",
            ))
        } else {
            None
        };
        match problem {
            Some(p) => {
                ctx.reject(row, p);
                out.push(None);
            }
            None => out.push(Some(m)),
        }
    }
    Decimal128Array::from(out)
        .with_precision_and_scale(precision, scale)
        .map_err(|e| e.to_string())
}

fn convert_count(spec: &Column, input: &ArrayRef, ctx: &mut Ctx<'_>) -> Result<Int64Array, String> {
    let n = input.len();
    let mut out: Vec<Option<i64>> = Vec::with_capacity(n);
    let dt = input.data_type().clone();
    // Unsigned 64-bit values above i64::MAX are out of range, not wrapped.
    let values: Vec<Option<Result<i64, Reason>>> = if dt.is_integer() {
        macro_rules! ints {
            ($t:ty) => {{
                let arr = input.as_primitive::<$t>();
                (0..n)
                    .map(|r| {
                        (!arr.is_null(r))
                            .then(|| i64::try_from(arr.value(r)).map_err(|_| Reason::OutOfRange))
                    })
                    .collect()
            }};
        }
        match dt {
            DataType::Int8 => ints!(Int8Type),
            DataType::Int16 => ints!(Int16Type),
            DataType::Int32 => ints!(Int32Type),
            DataType::Int64 => ints!(Int64Type),
            DataType::UInt8 => ints!(UInt8Type),
            DataType::UInt16 => ints!(UInt16Type),
            DataType::UInt32 => ints!(UInt32Type),
            _ => ints!(UInt64Type),
        }
    } else {
        let utf8 = as_utf8(input)?;
        let strings = utf8.as_string::<i32>();
        (0..n)
            .map(|r| text_at(strings, r).map(|t| t.parse::<i64>().map_err(|_| Reason::TypeError)))
            .collect()
    };
    for (row, v) in values.into_iter().enumerate() {
        match v {
            None => {
                missing(spec, row, ctx);
                out.push(None);
            }
            Some(Ok(x)) if x >= 0 => out.push(Some(x)),
            Some(Ok(_)) => {
                ctx.reject(
                    row,
                    Rejection::new(Reason::OutOfRange, spec.name, "negative count"),
                );
                out.push(None);
            }
            Some(Err(reason)) => {
                ctx.reject(row, Rejection::new(reason, spec.name, "not a whole number"));
                out.push(None);
            }
        }
    }
    Ok(Int64Array::from(out))
}

fn convert_bool(
    spec: &Column,
    input: &ArrayRef,
    ctx: &mut Ctx<'_>,
) -> Result<BooleanArray, String> {
    let n = input.len();
    let mut out: Vec<Option<bool>> = Vec::with_capacity(n);
    if let DataType::Boolean = input.data_type() {
        let arr = input.as_boolean();
        for row in 0..n {
            if arr.is_null(row) {
                missing(spec, row, ctx);
                out.push(None);
            } else {
                out.push(Some(arr.value(row)));
            }
        }
    } else {
        let utf8 = as_utf8(input)?;
        let strings = utf8.as_string::<i32>();
        for row in 0..n {
            match text_at(strings, row) {
                None => {
                    missing(spec, row, ctx);
                    out.push(None);
                }
                Some(t) => match t.to_ascii_lowercase().as_str() {
                    "true" | "1" => out.push(Some(true)),
                    "false" | "0" => out.push(Some(false)),
                    _ => {
                        ctx.reject(
                            row,
                            Rejection::new(Reason::TypeError, spec.name, "not true/false"),
                        );
                        out.push(None);
                    }
                },
            }
        }
    }
    Ok(BooleanArray::from(out))
}

/// Parses a timestamp: RFC 3339 with an offset, or a naive `YYYY-MM-DD HH:MM:SS[.fff]`
/// (also with `T`) read as Asia/Shanghai wall time. Returns ms since the epoch.
pub(crate) fn parse_ts_text(text: &str) -> Option<Result<i64, &'static str>> {
    let nanos_ok = |nanos: u32| nanos.is_multiple_of(1_000_000);
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(if nanos_ok(dt.timestamp_subsec_nanos()) {
            Ok(dt.timestamp_millis())
        } else {
            Err("sub-millisecond precision")
        });
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, fmt) {
            let utc = naive.and_utc();
            return Some(if nanos_ok(utc.timestamp_subsec_nanos()) {
                Ok(utc.timestamp_millis() - LOCAL_OFFSET_MS)
            } else {
                Err("sub-millisecond precision")
            });
        }
    }
    None
}

fn convert_ts(
    spec: &Column,
    input: &ArrayRef,
    ctx: &mut Ctx<'_>,
) -> Result<TimestampMillisecondArray, String> {
    let n = input.len();
    let values: Vec<Option<Result<i64, &'static str>>> = match input.data_type() {
        DataType::Timestamp(unit, tz) => {
            // Zoned values are UTC instants; naive values are Shanghai wall time.
            let shift = if tz.is_some() { 0 } else { LOCAL_OFFSET_MS };
            macro_rules! ts {
                ($t:ty, $to_ms:expr) => {{
                    let arr = input.as_primitive::<$t>();
                    (0..n)
                        .map(|r| {
                            (!arr.is_null(r))
                                .then(|| $to_ms(arr.value(r)).map(|ms: i64| ms - shift))
                        })
                        .collect()
                }};
            }
            match unit {
                TimeUnit::Second => ts!(TimestampSecondType, |v: i64| v
                    .checked_mul(1000)
                    .ok_or("timestamp overflow")),
                TimeUnit::Millisecond => ts!(TimestampMillisecondType, |v: i64| Ok(v)),
                TimeUnit::Microsecond => ts!(TimestampMicrosecondType, |v: i64| if v % 1000 == 0 {
                    Ok(v / 1000)
                } else {
                    Err("sub-millisecond precision")
                }),
                TimeUnit::Nanosecond => {
                    ts!(TimestampNanosecondType, |v: i64| if v % 1_000_000 == 0 {
                        Ok(v / 1_000_000)
                    } else {
                        Err("sub-millisecond precision")
                    })
                }
            }
        }
        _ => {
            let utf8 = as_utf8(input)?;
            let strings = utf8.as_string::<i32>();
            (0..n)
                .map(|r| {
                    text_at(strings, r).map(|t| parse_ts_text(t).unwrap_or(Err("not a timestamp")))
                })
                .collect()
        }
    };
    let mut out: Vec<Option<i64>> = Vec::with_capacity(n);
    for (row, v) in values.into_iter().enumerate() {
        match v {
            None => {
                missing(spec, row, ctx);
                out.push(None);
            }
            Some(Ok(ms)) if (MIN_TS_MS..=ctx.max_ts_ms).contains(&ms) => out.push(Some(ms)),
            Some(Ok(_)) => {
                ctx.reject(
                    row,
                    Rejection::new(
                        Reason::TimestampOutOfRange,
                        spec.name,
                        "before 2000-01-01 or after the batch's knowledge time",
                    ),
                );
                out.push(None);
            }
            Some(Err(what)) => {
                ctx.reject(row, Rejection::new(Reason::TypeError, spec.name, what));
                out.push(None);
            }
        }
    }
    Ok(TimestampMillisecondArray::from(out).with_timezone(TZ_NAME))
}

fn days_from_text(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((date - epoch).num_days()).ok()
}

fn convert_date(spec: &Column, input: &ArrayRef, ctx: &mut Ctx<'_>) -> Result<Date32Array, String> {
    let n = input.len();
    let values: Vec<Option<Result<i32, &'static str>>> = match input.data_type() {
        DataType::Date32 => {
            let arr = input.as_primitive::<Date32Type>();
            (0..n)
                .map(|r| (!arr.is_null(r)).then(|| Ok(arr.value(r))))
                .collect()
        }
        DataType::Date64 => {
            let arr = input.as_primitive::<Date64Type>();
            (0..n)
                .map(|r| {
                    (!arr.is_null(r)).then(|| {
                        let ms = arr.value(r);
                        if ms % MS_PER_DAY == 0 {
                            i32::try_from(ms / MS_PER_DAY).map_err(|_| "date out of range")
                        } else {
                            Err("date with a time of day")
                        }
                    })
                })
                .collect()
        }
        _ => {
            let utf8 = as_utf8(input)?;
            let strings = utf8.as_string::<i32>();
            (0..n)
                .map(|r| {
                    text_at(strings, r).map(|t| days_from_text(t).ok_or("not a YYYY-MM-DD date"))
                })
                .collect()
        }
    };
    let mut out: Vec<Option<i32>> = Vec::with_capacity(n);
    for (row, v) in values.into_iter().enumerate() {
        match v {
            None => {
                missing(spec, row, ctx);
                out.push(None);
            }
            Some(Ok(days)) if (MIN_DATE..=MAX_DATE).contains(&days) => out.push(Some(days)),
            Some(Ok(_)) => {
                ctx.reject(
                    row,
                    Rejection::new(
                        Reason::TimestampOutOfRange,
                        spec.name,
                        "date outside 1949–2100",
                    ),
                );
                out.push(None);
            }
            Some(Err(what)) => {
                ctx.reject(row, Rejection::new(Reason::TypeError, spec.name, what));
                out.push(None);
            }
        }
    }
    Ok(Date32Array::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_is_exact_or_refused() {
        assert_eq!(rescale(1234, 2, 2), Some(1234));
        assert_eq!(rescale(12, 0, 2), Some(1200));
        assert_eq!(rescale(123_400, 4, 2), Some(1234));
        assert_eq!(rescale(123_456, 4, 2), None);
    }

    #[test]
    fn timestamps_text_forms() {
        // 2024-03-01 08:00 +08:00 == 2024-03-01 00:00 UTC
        let utc_ms = 1_709_251_200_000;
        assert_eq!(parse_ts_text("2024-03-01T08:00:00+08:00"), Some(Ok(utc_ms)));
        assert_eq!(parse_ts_text("2024-03-01T00:00:00Z"), Some(Ok(utc_ms)));
        assert_eq!(parse_ts_text("2024-03-01 08:00:00"), Some(Ok(utc_ms)));
        assert_eq!(parse_ts_text("2024-03-01T08:00:00.000"), Some(Ok(utc_ms)));
        assert!(matches!(
            parse_ts_text("2024-03-01T08:00:00.000001+08:00"),
            Some(Err(_))
        ));
        assert_eq!(parse_ts_text("yesterday"), None);
    }
}
