//! Reading requests: JSON bodies and query strings checked field by field against the
//! documented rules before any work, every refusal naming the field and the rule in plain
//! words (422), malformed JSON 400, other media types 415, oversized bodies 413.
//!
//! Each request type lists its fields once ([`FromFields`]); unknown fields are refused, a
//! query parameter given twice is refused, and no number is accepted outside its range.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::problem::{ApiError, Code};
use crate::AppState;

/// Where the fields come from, for the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Body,
    Query,
}

/// The fields of a request, taken one at a time by their readers.
#[derive(Debug)]
pub struct Fields {
    source: Source,
    /// Few fields each: a list searched in order costs less than a hash map.
    map: Vec<(String, Value)>,
}

/// The smallest and largest amount a request may name, yuan.
pub const AMOUNT_MIN: &str = "0.01";
/// The largest amount a request may name: 100 million yuan.
pub const AMOUNT_MAX: i64 = 100_000_000;
/// The amount rule as a pattern: 0.01 to 100,000,000 with at most two decimals.
pub const AMOUNT_PATTERN: &str =
    r"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,7}(\.[0-9]{1,2})?|100000000(\.0{1,2})?)$";
/// Identifiers: merchants, institution codes, products.
pub const ID_PATTERN: &str = r"^[A-Za-z0-9._-]{1,64}$";

/// The characters Rust's `char::is_whitespace` calls spaces (Unicode `White_Space`), as
/// inclusive ranges. Text that must say something has to hold a character outside them;
/// the schema's pattern is written from the same list, so a fuzzer's idea of "a space"
/// (Python's and JavaScript's `\s` both differ from Unicode's) never disagrees with ours.
const SPACES: &[(char, char)] = &[
    ('\u{9}', '\u{d}'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

fn is_space(c: char) -> bool {
    SPACES.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// The schema pattern for text that is not only spaces: one character outside [`SPACES`],
/// with `\uXXXX` escapes that ECMA-262 and Python regular expressions read alike.
pub fn not_only_spaces_pattern() -> String {
    let mut p = String::from("[^");
    for &(lo, hi) in SPACES {
        p.push_str(&format!("\\u{:04x}", u32::from(lo)));
        if hi != lo {
            p.push_str(&format!("-\\u{:04x}", u32::from(hi)));
        }
    }
    p.push(']');
    p
}

/// A choice among named values.
pub trait Choice: Sized + Copy + 'static {
    /// The values and their names.
    const NAMES: &'static [(&'static str, Self)];
}

fn names<C: Choice>() -> String {
    C::NAMES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Fields {
    /// A JSON body, which must be an object.
    pub fn body(bytes: &[u8]) -> Result<Fields, ApiError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(
                Code::MalformedJson,
                format!(
                    "the body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        match v {
            Value::Object(m) => Ok(Fields {
                source: Source::Body,
                map: m.into_iter().collect(),
            }),
            _ => Err(ApiError::new(
                Code::InvalidField,
                "the body must be a JSON object",
            )),
        }
    }

    /// A query string (percent-decoded); each parameter at most once.
    pub fn query(raw: Option<&str>) -> Result<Fields, ApiError> {
        let mut map: Vec<(String, Value)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if map.iter().any(|(n, _)| *n == k) {
                return Err(ApiError::invalid(&k, "is given more than once"));
            }
            map.push((k.into_owned(), Value::String(v.into_owned())));
        }
        Ok(Fields {
            source: Source::Query,
            map,
        })
    }

    /// Refuses any field not read.
    pub fn finish(self, accepted: &[&str]) -> Result<(), ApiError> {
        let mut left: Vec<&String> = self.map.iter().map(|(k, _)| k).collect();
        left.sort();
        match left.first() {
            None => Ok(()),
            Some(k) => {
                let what = if self.source == Source::Body {
                    "field"
                } else {
                    "parameter"
                };
                let takes = if accepted.is_empty() {
                    "none".to_owned()
                } else {
                    accepted.join(", ")
                };
                Err(ApiError {
                    field: Some((*k).clone()),
                    ..ApiError::new(
                        Code::UnknownField,
                        format!("unknown {what} `{k}`: this route takes {takes}"),
                    )
                })
            }
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let at = self.map.iter().position(|(k, _)| k == name)?;
        match Some(self.map.swap_remove(at).1) {
            Some(Value::Null) if self.source == Source::Body => None,
            other => other,
        }
    }

    /// A required value.
    pub fn required<T>(value: Option<T>, name: &str) -> Result<T, ApiError> {
        value.ok_or_else(|| ApiError {
            field: Some(name.to_owned()),
            ..ApiError::new(Code::MissingField, format!("`{name}` is required"))
        })
    }

    /// Text of 1–`max` characters containing something other than spaces.
    pub fn text(&mut self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        self.text_within(name, 1, max)
    }

    /// Text of `min`–`max` characters (with `min` ≥ 1, not only spaces).
    pub fn text_within(
        &mut self,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<String>, ApiError> {
        let Some(v) = self.take(name) else {
            return Ok(None);
        };
        let Value::String(s) = v else {
            return Err(ApiError::invalid(name, "must be a string"));
        };
        let n = s.chars().count();
        if n < min || n > max || (min > 0 && s.chars().all(is_space)) {
            return Err(ApiError::invalid(
                name,
                if min == 0 {
                    format!("must be at most {max} characters")
                } else {
                    format!("must be {min} to {max} characters, not only spaces")
                },
            ));
        }
        Ok(Some(s))
    }

    /// An identifier: 1–64 letters, digits, `.`, `_` or `-`.
    pub fn id(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        let Some(v) = self.take(name) else {
            return Ok(None);
        };
        match v {
            Value::String(s) => check_id(name, &s).map(|()| Some(s)),
            _ => Err(ApiError::invalid(name, "must be a string")),
        }
    }

    /// A whole number within `lo..=hi`.
    pub fn integer(&mut self, name: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.take(name) else {
            return Ok(None);
        };
        let rule = || format!("must be a whole number from {lo} to {hi}");
        let n = match (&v, self.source) {
            (Value::Number(n), Source::Body) => whole(n),
            (Value::String(s), Source::Query) => parse_int(s),
            _ => None,
        };
        match n {
            Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid(name, rule())),
        }
    }

    /// An amount of yuan, as a decimal string: 0.01 to 100,000,000, at most two decimals.
    pub fn amount(&mut self, name: &str) -> Result<Option<Decimal>, ApiError> {
        let Some(v) = self.take(name) else {
            return Ok(None);
        };
        let rule = || {
            format!(
                "must be a decimal string of yuan from {AMOUNT_MIN} to {AMOUNT_MAX} with at most two decimals, like \"50000\" or \"1234.50\""
            )
        };
        let Value::String(s) = v else {
            return Err(ApiError::invalid(name, rule()));
        };
        match parse_amount(&s) {
            Some(d) => Ok(Some(d)),
            None => Err(ApiError::invalid(name, rule())),
        }
    }

    /// One of a set of names.
    pub fn choice<C: Choice>(&mut self, name: &str) -> Result<Option<C>, ApiError> {
        let Some(v) = self.take(name) else {
            return Ok(None);
        };
        let found = match &v {
            Value::String(s) => C::NAMES.iter().find(|(n, _)| n == s).map(|(_, c)| *c),
            _ => None,
        };
        found
            .map(Some)
            .ok_or_else(|| ApiError::invalid(name, format!("must be one of {}", names::<C>())))
    }

    /// `true` or `false`.
    pub fn boolean(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        let Some(v) = self.take(name) else {
            return Ok(None);
        };
        match (&v, self.source) {
            (Value::Bool(b), Source::Body) => Ok(Some(*b)),
            (Value::String(s), Source::Query) if s == "true" => Ok(Some(true)),
            (Value::String(s), Source::Query) if s == "false" => Ok(Some(false)),
            _ => Err(ApiError::invalid(name, "must be true or false")),
        }
    }

    /// A list of 1–`max` identifiers.
    pub fn ids(&mut self, name: &str, max: usize) -> Result<Option<Vec<String>>, ApiError> {
        let Some(v) = self.take(name) else {
            return Ok(None);
        };
        let rule = || format!("must list 1 to {max} merchant ids");
        let Value::Array(items) = v else {
            return Err(ApiError::invalid(name, rule()));
        };
        if items.is_empty() || items.len() > max {
            return Err(ApiError::invalid(
                name,
                format!("{}, not {}", rule(), items.len()),
            ));
        }
        items
            .into_iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) => check_id(&format!("{name}[{i}]"), &s).map(|()| s),
                _ => Err(ApiError::invalid(
                    &format!("{name}[{i}]"),
                    "must be a string",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// A JSON number that is a whole number (JSON Schema counts 22.0 as the integer 22).
fn whole(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        // Within ±2^53 every whole f64 is exact; beyond, the range checks refuse it anyway.
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an amount by [`AMOUNT_PATTERN`]'s rule, checking the text before converting it.
pub fn parse_amount(s: &str) -> Option<Decimal> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    let ok_whole = !whole.is_empty()
        && whole.len() <= 9
        && whole.bytes().all(|b| b.is_ascii_digit())
        && (whole == "0" || !whole.starts_with('0'));
    let ok_frac =
        frac.is_none_or(|f| (1..=2).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()));
    if !ok_whole || !ok_frac {
        return None;
    }
    let d = Decimal::from_str(s).ok()?;
    (d >= Decimal::new(1, 2) && d <= Decimal::from(AMOUNT_MAX)).then_some(d)
}

/// Checks an identifier (a path parameter or a field).
pub fn check_id(name: &str, s: &str) -> Result<(), ApiError> {
    if yuanxin_domain::is_valid_id(s) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            name,
            "must be 1 to 64 letters, digits, '.', '_' or '-'",
        ))
    }
}

/// A positive whole-number path parameter (an id or an index).
pub fn path_number(name: &str, s: &str, lo: i64) -> Result<i64, ApiError> {
    parse_int(s)
        .filter(|n| *n >= lo)
        .ok_or_else(|| ApiError::invalid(name, format!("must be a whole number from {lo}")))
}

/// A request type read from fields.
pub trait FromFields: Sized {
    /// The fields it takes, in documentation order (for the unknown-field message).
    const FIELDS: &'static [&'static str];
    /// Reads and checks every field.
    fn from_fields(f: &mut Fields, st: &AppState) -> Result<Self, ApiError>;
}

fn read<T: FromFields>(mut f: Fields, st: &AppState) -> Result<T, ApiError> {
    let v = T::from_fields(&mut f, st)?;
    f.finish(T::FIELDS)?;
    Ok(v)
}

/// A JSON body of type `T`.
#[derive(Debug)]
pub struct Json<T>(pub T, pub Bytes);

impl<T: FromFields> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, st: &AppState) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !json {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                "the body must be sent as Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, st).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    Code::PayloadTooLarge,
                    format!("the body is larger than {} KiB", crate::BODY_LIMIT / 1024),
                )
            } else {
                ApiError::new(Code::MalformedJson, "the body could not be read")
            }
        })?;
        let v = read(Fields::body(&bytes)?, st)?;
        Ok(Json(v, bytes))
    }
}

/// A query string of type `T`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: FromFields> FromRequestParts<AppState> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        read(Fields::query(parts.uri.query())?, st).map(Query)
    }
}

/// A route without parameters refuses any it is sent.
#[derive(Debug)]
pub struct NoQuery;

impl FromFields for NoQuery {
    const FIELDS: &'static [&'static str] = &[];
    fn from_fields(_: &mut Fields, _: &AppState) -> Result<NoQuery, ApiError> {
        Ok(NoQuery)
    }
}

/// The raw path parameters, checked by the handler.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<AppState> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, st)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|_| ApiError::invalid("path", "cannot be read"))
    }
}

/// An `Idempotency-Key` header (1–255 visible ASCII characters), if sent.
#[derive(Debug)]
pub struct IdempotencyKey(pub Option<String>);

impl FromRequestParts<AppState> for IdempotencyKey {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let s = v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic()));
        match s {
            Some(s) => Ok(IdempotencyKey(Some(s.to_owned()))),
            None => Err(ApiError::invalid(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_are_unicode_white_space_and_the_pattern_says_the_same() {
        let pattern = regex::Regex::new(&format!("^{}$", not_only_spaces_pattern()))
            .expect("the pattern compiles");
        for c in (0..=0x10ffff_u32).filter_map(char::from_u32) {
            assert_eq!(is_space(c), c.is_whitespace(), "{:?}", c);
            let mut buf = [0; 4];
            assert_eq!(
                pattern.is_match(c.encode_utf8(&mut buf)),
                !c.is_whitespace(),
                "{:?}",
                c
            );
        }
    }

    #[test]
    fn amounts_follow_their_pattern_exactly() {
        let re_ok = |s: &str| parse_amount(s).is_some();
        for ok in [
            "0.01",
            "0.1",
            "0.10",
            "1",
            "50000",
            "1234.5",
            "1234.50",
            "99999999.99",
            "100000000",
            "100000000.00",
        ] {
            assert!(re_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "0",
            "0.00",
            "0.001",
            "-1",
            "01",
            "1.",
            ".5",
            "1e5",
            "100000000.01",
            "100000001",
            " 1",
            "1,000",
            "１",
        ] {
            assert!(!re_ok(bad), "{bad}");
        }
    }

    #[test]
    fn fields_name_what_is_wrong() {
        let mut w = Fields::body(br#"{"a": 22.0, "b": 22.5, "c": 1e300}"#).unwrap();
        assert_eq!(
            w.integer("a", 1, 36).unwrap(),
            Some(22),
            "22.0 is a whole number"
        );
        assert!(w.integer("b", 1, 36).is_err());
        assert!(w.integer("c", 1, 36).is_err());
        let mut f = Fields::body(br#"{"a": 5, "b": "x", "c": [], "z": 1}"#).unwrap();
        assert_eq!(
            f.integer("a", 1, 3).unwrap_err().detail,
            "`a` must be a whole number from 1 to 3"
        );
        assert_eq!(
            f.integer("b", 1, 3).unwrap_err().field.as_deref(),
            Some("b")
        );
        assert!(f.ids("c", 5).unwrap_err().detail.contains("1 to 5"));
        let e = f.finish(&["a", "b", "c"]).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (Code::UnknownField, Some("z"))
        );
        assert_eq!(Fields::body(b"{").unwrap_err().code, Code::MalformedJson);
        assert_eq!(Fields::body(b"[]").unwrap_err().code, Code::InvalidField);
        let e = Fields::query(Some("a=1&a=2")).unwrap_err();
        assert!(e.detail.contains("more than once"));
        let mut q = Fields::query(Some("n=12&t=true&m=%4D1")).unwrap();
        assert_eq!(q.integer("n", 1, 36).unwrap(), Some(12));
        assert_eq!(q.boolean("t").unwrap(), Some(true));
        assert_eq!(q.id("m").unwrap().as_deref(), Some("M1"));
        assert_eq!(
            Fields::required::<i64>(None, "x").unwrap_err().code,
            Code::MissingField
        );
    }
}
