//! Business time. Events carry an instant; business dates and months are taken in
//! Asia/Shanghai, which has been UTC+08:00 all year since 1991 (no daylight saving), so a
//! fixed offset is exact for every date this system handles.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Offset, TimeZone, Utc};

/// Offset of Asia/Shanghai from UTC, in seconds.
pub const SHANGHAI_OFFSET_SECS: i32 = 8 * 3600;

/// The zone name written into Arrow schemas and documents.
pub const TZ_NAME: &str = "+08:00";

/// The Asia/Shanghai offset.
pub fn shanghai() -> FixedOffset {
    // 8 hours is within ±24 h, so `east_opt` always succeeds; the fallback is unreachable.
    FixedOffset::east_opt(SHANGHAI_OFFSET_SECS).unwrap_or_else(|| Utc.fix())
}

/// The business date (Asia/Shanghai) of an instant.
pub fn business_date(ts: DateTime<Utc>) -> NaiveDate {
    ts.with_timezone(&shanghai()).date_naive()
}

/// A calendar month in Asia/Shanghai, e.g. 2024-02.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusinessMonth {
    /// Calendar year.
    pub year: i32,
    /// Month 1–12.
    pub month: u32,
}

impl std::fmt::Display for BusinessMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The business month (Asia/Shanghai) of an instant.
pub fn business_month(ts: DateTime<Utc>) -> BusinessMonth {
    let d = business_date(ts);
    BusinessMonth {
        year: d.year(),
        month: d.month(),
    }
}

/// The instant a business date begins (00:00 Asia/Shanghai).
pub fn day_start(date: NaiveDate) -> Option<DateTime<Utc>> {
    let local = date.and_hms_opt(0, 0, 0)?;
    shanghai()
        .from_local_datetime(&local)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The business day (Asia/Shanghai) of an instant given in milliseconds since the Unix
/// epoch, as a day number (days since 1970-01-01): the fast form of [`business_date`] for
/// columns of timestamps. Saturates at the ends of the `i64` range instead of overflowing.
pub fn business_day_of_ms(ms: i64) -> i64 {
    ms.saturating_add(i64::from(SHANGHAI_OFFSET_SECS) * 1000)
        .div_euclid(DAY_MS)
}

/// Milliseconds since the Unix epoch to an instant, if representable.
pub fn ts_from_millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_day_numbers_agree_with_business_dates() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for ms in [
            0,
            57_599_999,
            57_600_000,
            -1,
            1_707_496_200_000,
            -86_400_000 * 400,
        ] {
            let date = business_date(ts_from_millis(ms).unwrap());
            assert_eq!(business_day_of_ms(ms), (date - epoch).num_days(), "{ms}");
        }
        assert!(business_day_of_ms(i64::MAX) > 0 && business_day_of_ms(i64::MIN) < 0);
    }

    #[test]
    fn business_dates_are_taken_in_shanghai() {
        // 2024-02-09 16:30 UTC is 2024-02-10 00:30 in Shanghai (Spring Festival day).
        let ts = Utc.with_ymd_and_hms(2024, 2, 9, 16, 30, 0).unwrap();
        assert_eq!(
            business_date(ts),
            NaiveDate::from_ymd_opt(2024, 2, 10).unwrap()
        );
        let ts = Utc.with_ymd_and_hms(2024, 1, 31, 16, 0, 0).unwrap();
        assert_eq!(business_month(ts).to_string(), "2024-02");
        let start = day_start(NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()).unwrap();
        assert_eq!(start, ts);
    }
}
