//! The calendar the city lives by: Spring Festival (which moves), school holidays, weekends.
//! Days are counted from 1970-01-01 in Asia/Shanghai.

use chrono::{Datelike, NaiveDate, Weekday};

/// Lunar New Year's Day (春节) by year. Outside this table the festival is placed on
/// 1 February, which is within three weeks of every real date.
const SPRING_FESTIVAL: &[(i32, u32, u32)] = &[
    (2015, 2, 19),
    (2016, 2, 8),
    (2017, 1, 28),
    (2018, 2, 16),
    (2019, 2, 5),
    (2020, 1, 25),
    (2021, 2, 12),
    (2022, 2, 1),
    (2023, 1, 22),
    (2024, 2, 10),
    (2025, 1, 29),
    (2026, 2, 17),
    (2027, 2, 6),
    (2028, 1, 26),
    (2029, 2, 13),
    (2030, 2, 3),
    (2031, 1, 23),
    (2032, 2, 11),
    (2033, 1, 31),
    (2034, 2, 19),
    (2035, 2, 8),
];

/// Day number (days since 1970-01-01) of a date.
pub fn day_of(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from((date - epoch).num_days()).unwrap_or(0)
}

/// Date of a day number.
pub fn date_of(day: i32) -> NaiveDate {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    epoch + chrono::Duration::days(i64::from(day))
}

/// Day number of the Spring Festival of `year`.
pub fn spring_festival(year: i32) -> i32 {
    let (m, d) = SPRING_FESTIVAL
        .iter()
        .find(|(y, _, _)| *y == year)
        .map(|(_, m, d)| (*m, *d))
        .unwrap_or((2, 1));
    day_of(NaiveDate::from_ymd_opt(year, m, d).unwrap_or_default())
}

/// What kind of day it is, for demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayKind {
    /// Saturday or Sunday.
    pub weekend: bool,
    /// The festival week (eve to the sixth day), when most services close.
    pub festival: bool,
    /// The two weeks before the festival: haircuts, car washes, cleaning, gifts.
    pub pre_festival: bool,
    /// School summer holiday (10 July – 31 August) or winter holiday (two weeks either side
    /// of the festival).
    pub school_holiday: bool,
}

/// Classifies a day.
pub fn day_kind(day: i32) -> DayKind {
    let date = date_of(day);
    let sf = spring_festival(date.year());
    let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
    let festival = (sf - 1..=sf + 6).contains(&day);
    let pre_festival = (sf - 14..sf - 1).contains(&day);
    let summer = (date.month() == 7 && date.day() >= 10) || date.month() == 8;
    let winter = (sf - 14..=sf + 14).contains(&day);
    DayKind {
        weekend,
        festival,
        pre_festival,
        school_holiday: summer || winter,
    }
}

/// First day of the month `months` after the month of `start`.
pub fn add_months(start: NaiveDate, months: i32) -> NaiveDate {
    let total = start.year() * 12 + i32::try_from(start.month0()).unwrap_or(0) + months;
    let (y, m0) = (total.div_euclid(12), total.rem_euclid(12));
    NaiveDate::from_ymd_opt(y, u32::try_from(m0).unwrap_or(0) + 1, 1).unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn festival_and_holidays() {
        let sf = spring_festival(2024);
        assert_eq!(date_of(sf), NaiveDate::from_ymd_opt(2024, 2, 10).unwrap());
        assert!(day_kind(sf).festival);
        assert!(day_kind(sf - 5).pre_festival);
        assert!(day_kind(day_of(NaiveDate::from_ymd_opt(2024, 8, 1).unwrap())).school_holiday);
        assert!(!day_kind(day_of(NaiveDate::from_ymd_opt(2024, 5, 8).unwrap())).school_holiday);
        assert_eq!(
            add_months(NaiveDate::from_ymd_opt(2023, 11, 1).unwrap(), 3),
            NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()
        );
    }
}
